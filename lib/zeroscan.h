/*
 * Zero-page detection for the writer.
 */
#ifndef FVM_ZEROSCAN_H
#define FVM_ZEROSCAN_H

#include <stddef.h>

/*
 * 1 when all n bytes at p are zero. n must be a multiple of 256 (every page
 * size is); p needs no alignment.
 */
int fvm_is_zero(const void *p, size_t n);

/*
 * Length in pages of the run starting at page 0 of p (count pages of
 * page_size bytes) whose pages are all zero (want_zero) or all non-zero.
 */
size_t fvm_run_length(const unsigned char *p, size_t count, size_t page_size,
		      int want_zero);

#endif
