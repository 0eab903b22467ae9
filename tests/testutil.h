/*
 * Helpers shared by the round-trip and bad-input tests and the fuzz targets:
 * destination memory fenced by PROT_NONE guard pages (any write outside a
 * mapping faults), a seeded random generator, RAM layout generators, whole
 * file I/O and a scratch directory. Uses only the public API.
 */
#ifndef FVM_TESTUTIL_H
#define FVM_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "fastvm/fastvm.h"

/* ---- random: xorshift64*, reproducible from the seed */
struct tu_rng {
	uint64_t s;
};
void tu_rng_seed(struct tu_rng *r, uint64_t seed);
uint64_t tu_rand(struct tu_rng *r);
/* Uniform in [0, n), n > 0. */
uint64_t tu_below(struct tu_rng *r, uint64_t n);
void tu_fill_random(struct tu_rng *r, void *p, size_t n);
/* Fill a page with random bytes, at least one of them non-zero. */
void tu_fill_page(struct tu_rng *r, void *p, size_t page_size);
void tu_shuffle(struct tu_rng *r, void *base, size_t n, size_t size);

/*
 * Guarded memory: len bytes (a multiple of 4096) at a page-aligned address,
 * with one PROT_NONE page right before and right after. fill: byte value
 * to fill with, or -1 to leave the fresh (zero) anonymous pages untouched.
 * Private anonymous, so MADV_DONTNEED reads back zero. NULL on failure.
 */
uint8_t *tu_guard_alloc(size_t len, int fill);
void tu_guard_free(uint8_t *addr, size_t len);

/* ---- layouts */
#define TU_MAX_BLOCKS 8

struct tu_block {
	char name[FVM_MAX_NAME + 1];
	uint64_t length, page_size;
	uint8_t *mem;            /* expected contents, malloc'd */
};

struct tu_layout {
	unsigned n;
	struct tu_block b[TU_MAX_BLOCKS];
};

enum tu_pattern {
	TU_ALL_ZERO,
	TU_ALL_DATA,
	TU_ALTERNATE,     /* data, zero, data, ... single pages */
	TU_RANDOM_RUNS,   /* random run lengths of data and zero pages */
	TU_LAST_BYTE,     /* every other page zero except its very last byte */
	TU_FIRST_BYTE,    /* every third page zero except its very first byte */
	TU_GUEST_LIKE,    /* mostly zero; runs sized like real guest memory */
};

/* Add a block filled with pattern; 0 or -1 on allocation failure. */
int tu_layout_add(struct tu_layout *l, const char *name, uint64_t length,
		  uint64_t page_size, enum tu_pattern p, struct tu_rng *r);
void tu_layout_free(struct tu_layout *l);
uint64_t tu_layout_bytes(const struct tu_layout *l);
/* 1 if page i of block b holds a non-zero byte. */
int tu_page_nonzero(const struct tu_block *b, uint64_t i);
/* Non-zero pages of a block, and maximal runs of them. */
uint64_t tu_data_pages(const struct tu_block *b);
uint64_t tu_data_runs(const struct tu_block *b);

/* ---- files */
/*
 * Scratch directories, removed with their files by tu_tmpdir_remove (kept
 * when FVM_TEST_KEEP is set). tu_tmpdir: $FVM_TEST_TMPDIR, else /dev/shm when
 * writable (fast to create and delete), else $TMPDIR or /tmp. tu_diskdir:
 * always $TMPDIR or /tmp, for tests that want a disk file system.
 */
const char *tu_tmpdir(void);
const char *tu_diskdir(void);
void tu_tmpdir_remove(void);
/* name in the scratch directory (static buffers: up to 4, and 2, live at once) */
const char *tu_path(const char *name);
const char *tu_disk_path(const char *name);
/* Whole file into malloc'd memory; NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);
int tu_write_file(const char *path, const void *p, size_t len);

/*
 * Listings of an open reader agree with each other: block and file counters
 * add up over the runs, every run lies inside its block (and its payload
 * inside the file, 4096-aligned), no two runs share a page, names resolve.
 * NULL when they agree, else a static message saying what does not.
 */
const char *tu_check_consistent(fvm_reader *r);

#endif
