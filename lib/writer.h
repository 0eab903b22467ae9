/*
 * Writer internals (not in the public API): for tests and fuzz seeds, the
 * size of the DEVS parts a section written in pieces is cut into, so that a
 * small file can hold a section of many parts; for disk.c, the number of
 * the next disk recorded.
 */
#ifndef FVM_WRITER_H
#define FVM_WRITER_H

#include <stddef.h>

#include "fastvm/fastvm.h"

/* Default 1 MiB; bytes from 1 to 1 MiB. Before the first devstate_begin. */
int fvm_writer_set_devs_part(fvm_writer *w, size_t bytes);

/* The N of the next disk.N.* metadata (0, 1, ...), counted up. */
unsigned fvm_writer_next_disk(fvm_writer *w);

#endif
