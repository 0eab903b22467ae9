/*
 * A qcow2 image builder for the qcow2 reader's tests and fuzz seeds: builds
 * images QEMU's savevm never writes (compressed or zero-flagged VM state,
 * extended L2 subclusters, 512-byte clusters, >4 GiB sparse VM state) and
 * reports where each structure landed so tests can corrupt it precisely.
 *
 * Images are correct for reading (QEMU reads them read-only: the tests check
 * the active disk with qemu-img when it is installed); refcounts are not
 * maintained (the refcount table is one cluster of zeros), so never open
 * them read-write with QEMU.
 */
#ifndef QCOW2_GEN_H
#define QCOW2_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How one cluster is stored. */
enum gen_mode {
	GEN_NORMAL,     /* allocated data cluster */
	GEN_COMPRESSED, /* raw deflate, byte-packed, unaligned */
	GEN_ZERO,       /* v3 zero flag, no host cluster (ext L2: all zero bits) */
	GEN_ZERO_ALLOC, /* v3 zero flag with a host cluster holding 0xee garbage */
	GEN_UNALLOC,    /* L2 entry 0 */
	GEN_SUB,        /* ext L2: host cluster; zero subclusters alternately zero-bit or unallocated */
};

/*
 * Storage policy: mode for guest cluster `index` whose bytes are `data`
 * (cluster_size bytes; `zero` says whether all are zero). The builder falls
 * back to GEN_NORMAL where a mode cannot hold the data (zero modes for
 * non-zero data, compression that does not shrink, zero flag in v2).
 */
typedef enum gen_mode (*gen_policy)(uint64_t index, bool zero, void *ctx);

struct gen_snap {
	const char *id, *name;
	const uint8_t *vm;     /* vmstate bytes, or NULL: fill, or all zero */
	/*
	 * Sparse vmstate: writes the n bytes at vmstate offset off into dst
	 * (zeroed) and returns true, or returns false leaving them zero.
	 */
	bool (*fill)(uint64_t off, uint8_t *dst, size_t n, void *ctx);
	void *fill_ctx;
	uint64_t vm_len;
	uint32_t extra_size;   /* 0, 8, 16, 24, or more (unknown bytes follow) */
	uint64_t date_sec, vm_clock_nsec, icount;
};

struct gen_opts {
	uint32_t version;      /* 2 or 3 */
	uint32_t cluster_bits;
	bool extl2;
	uint64_t disk_size;
	const uint8_t *disk;   /* disk_len bytes of active guest data at offset 0 */
	uint64_t disk_len;
	gen_policy policy;     /* NULL: GEN_NORMAL for data, GEN_UNALLOC for zeros */
	void *ctx;
	const struct gen_snap *snaps;
	unsigned nsnaps;
};

/* Where things went, for targeted corruption. */
struct gen_layout {
	uint64_t l1_off;               /* active L1 */
	uint64_t snap_table_off;
	uint64_t snap_entry_off[8];    /* first 8 snapshot entries */
	uint64_t snap_l1_off[8];
	uint64_t first_vm_l2_off;      /* L2 table holding snapshot 0's first vmstate cluster */
	uint64_t first_vm_l2_entry;    /* file offset of that L2 entry */
	uint64_t first_compressed_l2_entry; /* file offset of the first compressed L2 entry, 0 if none */
	uint64_t refcount_off;
};

/* Build the image into a malloc'd buffer. 0, or -1 on a bad request / ENOMEM. */
int gen_qcow2(const struct gen_opts *o, uint8_t **img, size_t *len, struct gen_layout *lay);

/* Ready-made policies. */
enum gen_mode gen_policy_mixed(uint64_t index, bool zero, void *ctx);      /* every mode in turn */
enum gen_mode gen_policy_compressed(uint64_t index, bool zero, void *ctx); /* all compressed */

#endif
