/*
 * Growing arrays: one helper for every list the library builds as it
 * reads or writes (extents, records, entries, iovecs, plan requests).
 */
#ifndef FVM_ARRAY_H
#define FVM_ARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fastvm/fastvm.h"

/*
 * Make *v hold at least need elements of size bytes, doubling *cap (from
 * 16). FVM_ENOMEM, *v untouched, when memory runs out or the size would
 * overflow; the caller adds the detail.
 */
static inline int fvm_grow(void **v, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return FVM_ENOMEM;
		c *= 2;
	}
	if (c > SIZE_MAX / size)
		return FVM_ENOMEM;
	p = realloc(*v, c * size);
	if (!p)
		return FVM_ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

#endif
