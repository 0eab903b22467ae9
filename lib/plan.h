/*
 * The load plan: plain data saying which file bytes go where. Built once
 * from the index and the caller's mappings; every destination is checked
 * here to lie inside its mapping, so the executors (exec_uring.c,
 * exec_pread.c, exec_mmap.c) trust it and do no bounds checks of their own.
 * The zero policy, which works on the plan's zero ranges, lives here too.
 */
#ifndef FVM_PLAN_H
#define FVM_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "model.h"

/* A caller's mapping, whatever the layout of its fvm_mapping (load.c, compat.c). */
struct fvm_map {
	const char *name;
	void *addr;
	uint64_t length;
	uint64_t page_size;
	uint32_t flags;         /* FVM_MAP_* */
};

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
	uint32_t map_flags;     /* of the mapping it lies in */
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
	const char *shared;     /* a mapping flagged SHARED or HUGETLB, or NULL */
	/* mappings flagged HUGEPAGE less than half of which is data: a copy
	 * goes in small pages (fvm_plan_small_pages) */
	const struct fvm_map **sparse;
	size_t nsparse;
};

/*
 * Match maps to blocks: map_of[block] receives the mapping of each block or
 * NULL. Checks: names known (unless allow_unknown: a stream may declare the
 * block later), each block mapped once, length and page size equal, every
 * block mapped unless partial, mappings disjoint. FVM_EMAPPING with detail.
 */
int fvm_plan_maps(const char *file, const struct fvm_rblock *blocks, uint32_t nblocks,
		  const struct fvm_map *maps, size_t n_maps, int partial, int allow_unknown,
		  const struct fvm_map **map_of);

/* Check one block against its mapping (length, page size). */
int fvm_plan_check_map(const char *file, const struct fvm_rblock *b,
		       const struct fvm_map *m);

/*
 * Build the plan for the extents ext[0..n) (already checked against the
 * blocks): reads of at most chunk_bytes and IOV_MAX iovecs, file order.
 * chunk_bytes 0: no reads (a COMPRESSED file, whose extents' offsets are in
 * the plain payload space: exec_frames.c reads its frames instead).
 */
int fvm_plan_build(struct fvm_plan *p, const char *file,
		   const struct fvm_rblock *blocks, uint32_t nblocks,
		   const struct fvm_extent *ext, uint64_t n,
		   const struct fvm_map *maps, size_t n_maps, int partial,
		   uint64_t chunk_bytes);

/*
 * Fill p->zero for the mapped blocks: every page no DATA extent covers, or
 * (zero_extents) only the pages of ZERO extents. The stream loader uses the
 * latter to clear pages an earlier copy wrote when a later one is zero.
 */
int fvm_plan_zero_ranges(struct fvm_plan *p, const char *file,
			 const struct fvm_rblock *blocks, uint32_t nblocks,
			 const struct fvm_extent *ext, uint64_t n,
			 const struct fvm_map *const *map_of, int zero_extents);

void fvm_plan_free(struct fvm_plan *p);

/*
 * The zero policy over zero ranges: LEAVE does nothing, MEMSET writes
 * zeros, DONTNEED releases whole private pages (zeros elsewhere, and in
 * mappings flagged SHARED or HUGETLB).
 */
int fvm_plan_apply_zero(const struct fvm_plan_zero *z, size_t n, int policy);

/*
 * Before a copy (on): MADV_NOHUGEPAGE over p->sparse; after it (off):
 * MADV_HUGEPAGE again. Every 2 MiB page a copy faults in is zeroed whole
 * first, which a sparse guest pays for most of its RAM (doc/BENCHMARKS.md
 * series D); regions the copy does not touch stay huge-page backed, and
 * dense mappings keep huge pages (fewer faults).
 */
void fvm_plan_small_pages(const struct fvm_plan *p, int on);

#endif
