/*
 * Live extents: the RAM state that results from applying segment entries in
 * file order, where a later entry replaces the pages of an earlier one
 * (FORMAT.md 4.4). The writer builds its index with this, and the stream
 * reader and verify rebuild it to compare with the index (R68).
 */
#ifndef FVM_EXTENTS_H
#define FVM_EXTENTS_H

#include "format.h"

struct fvm_extlist {
	struct fvm_extent *v;
	uint64_t n;
	size_t cap;
};

/* Append one extent (file order). */
int fvm_extlist_push(struct fvm_extlist *l, const struct fvm_extent *e);
void fvm_extlist_free(struct fvm_extlist *l);

/*
 * Replace l by the live extents: pages covered by a later extent are cut out
 * of earlier ones (DATA extents keep payload and crc offsets of the pages that
 * remain). Order stays file order. *rewrites tells whether anything was cut.
 * page_shift[block_id] gives each block's page size.
 */
int fvm_extents_resolve(struct fvm_extlist *l, const struct fvm_blockdesc *blocks,
			int *rewrites);

#endif
