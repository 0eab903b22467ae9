/*
 * The load plan: plain data saying which file bytes go where. Built once
 * from the index and the caller's mappings; every destination is checked
 * here to lie inside its mapping, so the executors (exec_uring.c,
 * exec_pread.c) trust it and do no bounds checks of their own.
 */
#ifndef FVM_PLAN_H
#define FVM_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "reader.h"

/* A DATA extent of a mapped block; the plan keeps them in payload order. */
struct fvm_plan_ext {
	uint64_t file_off, bytes;
	uint8_t *dst;
	uint32_t block_id;
	uint64_t first_page;
	uint64_t crc_offset;    /* file offset of its chunk CRCs, 0 if none */
};

/* One read: len bytes from file_off scattered over iov[iov .. iov + niov). */
struct fvm_plan_req {
	uint64_t file_off, len;
	size_t iov, niov;
	size_t ext;             /* plan extent holding file_off */
};

/* Destination bytes that no DATA extent covers: the zero policy's work. */
struct fvm_plan_zero {
	uint8_t *addr;
	uint64_t len;
};

struct fvm_plan {
	struct fvm_plan_ext *ext;
	size_t next;
	struct fvm_plan_req *req;
	size_t nreq;
	struct iovec *iov;
	size_t niov;
	struct fvm_plan_zero *zero;
	size_t nzero;
	uint64_t total;         /* payload bytes to read */
	uint64_t zero_bytes;
	uint64_t lo, hi;        /* file range of the payload read, for hints */
	int aligned;            /* every destination 4096-aligned (O_DIRECT) */
};

/*
 * Match maps to blocks: map_of[block] receives the mapping of each block or
 * NULL. Checks: names known (unless allow_unknown: a stream may declare the
 * block later), each block mapped once, length and page size equal, every
 * block mapped unless partial, mappings disjoint. FVM_EMAPPING with detail.
 */
int fvm_plan_maps(const char *file, const struct fvm_rblock *blocks, uint32_t nblocks,
		  const fvm_mapping *maps, size_t n_maps, int partial, int allow_unknown,
		  const fvm_mapping **map_of);

/* Check one block against its mapping (length, page size). */
int fvm_plan_check_map(const char *file, const struct fvm_rblock *b,
		       const fvm_mapping *m);

/*
 * Build the plan for the extents ext[0..n) (already checked against the
 * blocks): reads of at most chunk_bytes and IOV_MAX iovecs, file order.
 */
int fvm_plan_build(struct fvm_plan *p, const char *file,
		   const struct fvm_rblock *blocks, uint32_t nblocks,
		   const struct fvm_extent *ext, uint64_t n,
		   const fvm_mapping *maps, size_t n_maps, int partial,
		   uint64_t chunk_bytes);

/*
 * Fill p->zero for the mapped blocks: every page no DATA extent covers, or
 * (zero_extents) only the pages of ZERO extents. The stream loader uses the
 * latter to clear pages an earlier copy wrote when a later one is zero.
 */
int fvm_plan_zero_ranges(struct fvm_plan *p, const char *file,
			 const struct fvm_rblock *blocks, uint32_t nblocks,
			 const struct fvm_extent *ext, uint64_t n,
			 const fvm_mapping *const *map_of, int zero_extents);

void fvm_plan_free(struct fvm_plan *p);

#endif
