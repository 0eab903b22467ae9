/*
 * Raw I/O, the bottom layer: reading exactly n bytes at an offset, and a
 * byte source read front to back (a seekable file or a pipe). Errors name
 * the file, the structure being read and the offset. And the monotonic
 * clock that times reads.
 */
#ifndef FVM_IO_H
#define FVM_IO_H

#include <stddef.h>
#include <stdint.h>

/* pread exactly n bytes at off; what names the structure. */
int fvm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *file,
		   const char *what);

/*
 * A byte source read front to back: pread at pos when seekable, else read()
 * (pos then only counts bytes, for details and the footer's file_size).
 */
struct fvm_src {
	int fd;
	int seekable;
	uint64_t pos;
	const char *file;
};

/* Read exactly n bytes at s->pos and advance. */
int fvm_src_read(struct fvm_src *s, void *buf, size_t n, const char *what);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t fvm_now_ns(void);

#endif
