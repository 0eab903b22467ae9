/*
 * Reading one record from a source (io.h) and checking it (format.h): a
 * DEVS record, whose body may be up to 1 GiB, is read through a bounded
 * buffer with its CRC computed piecewise (R11); or read whole, for a
 * stream that must keep it or hand it on.
 */
#ifndef FVM_RECORD_H
#define FVM_RECORD_H

#include <stdint.h>

#include "format.h"
#include "io.h"

/*
 * Body of the DEVS record at rec_off (its header rh already decoded; s at
 * the body): streamed through a bounded buffer, CRC checked (R11) and then
 * decoded; head keeps the first bytes so d->name points into it (d->data
 * is not valid).
 */
int fvm_rec_devs_scan(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		      uint8_t head[FVM_DEVS_HEAD], struct fvm_devs_rec *d);

/*
 * The same, read whole into *body (malloc'd, the caller's on success): d
 * points into it, data included.
 */
int fvm_rec_devs_read(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		      uint8_t **body, struct fvm_devs_rec *d);

#endif
