/*
 * A sequential byte source for the stock QEMU readers: the migration stream
 * comes from a file, a pipe (stdin), a qcow2 snapshot's VM state or memory
 * (fuzzing, tests). Small reads are served from one bounded buffer; large
 * reads (page payload) go straight into the caller's buffer. The offset of
 * the next byte is kept for error messages. Seekable sources (files, qcow2,
 * memory) also offer pread and seek, which mapped-ram files need.
 *
 * Errors are FVM_E* codes with a fvm_error_detail() naming the source and
 * the offset: FVM_ETRUNCATED when the source ends inside a requested read.
 */
#ifndef STOCK_SOURCE_H
#define STOCK_SOURCE_H

#include <stddef.h>
#include <stdint.h>

struct stock_qcow2;
struct stock_source;

/* A growable byte buffer that refuses to grow past max (FVM_ERANGE). */
struct stock_buf {
	uint8_t *data;
	size_t len, cap, max;
};

int stock_buf_append(struct stock_buf *b, const void *data, size_t len);
void stock_buf_release(struct stock_buf *b);

/*
 * From an fd (not closed by the source): regular files are seekable,
 * pipes and sockets are read sequentially. name is used in messages.
 */
int stock_source_open_fd(struct stock_source **out, int fd, const char *name);
/* From memory (not copied: buf must outlive the source). */
int stock_source_open_mem(struct stock_source **out, const void *buf,
			  size_t len, const char *name);
/* The VM state of snapshot index of a qcow2 image (q must outlive it). */
int stock_source_open_qcow2(struct stock_source **out, struct stock_qcow2 *q,
			    size_t index, const char *name);
void stock_source_free(struct stock_source *s);

const char *stock_source_name(const struct stock_source *s);
/* Offset of the next byte read. */
uint64_t stock_source_offset(const struct stock_source *s);
int stock_source_seekable(const struct stock_source *s);
/* Total size when known (seekable sources), else UINT64_MAX. */
uint64_t stock_source_size(const struct stock_source *s);

/* Exactly len bytes, or FVM_ETRUNCATED naming what (e.g. "ram record"). */
int stock_source_read(struct stock_source *s, void *buf, size_t len,
		      const char *what);
/* The next byte without consuming it: 0 with *byte 0..255, or *byte -1 at
 * the end of the source; a negative FVM_E* code on an I/O error. */
int stock_source_peek(struct stock_source *s, int *byte);
/* Up to 16 bytes ahead without consuming them; FVM_ETRUNCATED if fewer remain. */
int stock_source_peek_bytes(struct stock_source *s, void *buf, size_t len,
			    const char *what);
/* Up to len bytes (at least 1 unless at the end): *got 0 means the end. */
int stock_source_read_some(struct stock_source *s, void *buf, size_t len,
			   size_t *got);
int stock_source_u8(struct stock_source *s, uint8_t *v, const char *what);
int stock_source_be16(struct stock_source *s, uint16_t *v, const char *what);
int stock_source_be32(struct stock_source *s, uint32_t *v, const char *what);
int stock_source_be64(struct stock_source *s, uint64_t *v, const char *what);

/*
 * Capture: while set, every byte consumed is also appended to b (which
 * enforces its max). NULL stops capturing.
 */
void stock_source_capture(struct stock_source *s, struct stock_buf *b);

/* Seekable sources only (FVM_EUNSUPPORTED otherwise). */
int stock_source_seek(struct stock_source *s, uint64_t off);
int stock_source_pread(struct stock_source *s, void *buf, size_t len,
		       uint64_t off, const char *what);

#endif
