/*
 * The run-length histogram of both inspects (a snapshot's index, a stock
 * stream's pages): bucket k holds runs of 2^k .. 2^(k+1)-1 pages, so the
 * two reports of one guest line up row for row.
 */
#ifndef FVMSNAP_COMMON_HIST_H
#define FVMSNAP_COMMON_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_BUCKETS 64
unsigned hist_bucket(uint64_t pages);     /* pages >= 1 */
uint64_t hist_bucket_max(unsigned k);
/* "1" or "MIN-MAX", for the text tables */
void hist_bucket_label(char *buf, size_t len, unsigned k);

#endif
