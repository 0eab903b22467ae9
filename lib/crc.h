/*
 * CRC32C (Castagnoli), as defined in doc/FORMAT.md section 2.
 * fvm_crc32c(0, p, n) gives the CRC of p[0..n); pass a previous result as
 * crc to continue over more bytes.
 */
#ifndef FVM_CRC_H
#define FVM_CRC_H

#include <stddef.h>
#include <stdint.h>

uint32_t fvm_crc32c(uint32_t crc, const void *p, size_t n);
/* Copy n bytes from src to dst (not overlapping) and return
 * fvm_crc32c(crc, src, n), in one pass over the bytes. */
uint32_t fvm_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t n);

/*
 * Tests only: use the table path even where the CPU has CRC32C. Takes
 * effect if called before the first CRC of the process.
 */
void fvm_crc_force_soft(void);

#endif
