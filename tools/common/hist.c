/*
 * Run-length histogram buckets (see hist.h).
 */
#include <stdio.h>

#include "hist.h"

unsigned hist_bucket(uint64_t pages)
{
	return 63u - (unsigned)__builtin_clzll(pages);
}

uint64_t hist_bucket_max(unsigned k)
{
	return k == 63 ? ~0ull : (2ull << k) - 1;
}

void hist_bucket_label(char *buf, size_t len, unsigned k)
{
	if (k == 0)
		snprintf(buf, len, "1");
	else
		snprintf(buf, len, "%llu-%llu", 1ull << k,
			 (unsigned long long)hist_bucket_max(k));
}
