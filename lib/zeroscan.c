/*
 * Finding zero pages fast: OR 256 bytes of 64-bit words together and test
 * once per block, so a non-zero page usually costs one block (its first
 * bytes are rarely all zero) and a zero page costs one pass at memory speed,
 * vectorised by the compiler. No memcmp against a zero page.
 */
#include <stdint.h>
#include <string.h>

#include "zeroscan.h"

int fvm_is_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i += 256) {
		uint64_t acc = 0;

		for (size_t j = 0; j < 256; j += 8) {
			uint64_t w;

			memcpy(&w, c + i + j, 8); /* unaligned-safe; compiles to a load */
			acc |= w;
		}
		if (acc)
			return 0;
	}
	return 1;
}

size_t fvm_run_length(const unsigned char *p, size_t count, size_t page_size,
		      int want_zero)
{
	size_t k = 0;

	while (k < count && fvm_is_zero(p + k * page_size, page_size) == !!want_zero)
		k++;
	return k;
}
