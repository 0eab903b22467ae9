/*
 * Destination-safety fuzz target: for any bytes the reader accepts (as
 * they are, and with their checksums recomputed, reseal.c), load the file
 * into memory where every block's mapping (named after the block) sits
 * between PROT_NONE guard pages, with every backend: AUTO (io_uring, and
 * for a compressed file the frame executor), PREAD (frames decoded by
 * pread, on three threads), MMAP (runs mapped over the destination, odd
 * blocks flagged SHARED so they are copied into) and MMAP with
 * FVM_LOAD_LAZY, after which every page is read. Checked after each load,
 * whether it succeeded or failed:
 *  - a write before or after a mapping faults on a guard page (the
 *    fuzzer reports the crash); an mmap backend that mapped a run over a
 *    guard would make it readable: the guards must still be unreadable;
 *  - with FVM_ZERO_LEAVE nothing but the data runs the index lists may
 *    change: every other page keeps its fill byte;
 * and after a successful load every backend gives the bytes the PREAD
 * load gave (a lazy load once its pages are read). A lazy load of an
 * authenticated file (userfaultfd: a page whose chunk fails is never
 * installed, and a thread reading it waits) is filled by fvm_prefetch
 * before its pages are read; its failure must be one the PREAD load met
 * too (corpus/reader/auth-lazy-bad-chunk.fvm, which dest shares: a
 * tampered chunk that hung here).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "reseal.h"
#include "testutil.h"

/* Blocks larger than this are left unmapped (FVM_LOAD_PARTIAL). */
#define MAX_MAP (8u << 20)
#define MAX_TOTAL (24u << 20)
#define MAX_MAPS 32
#define FILL 0xA5
#define GUARD 4096

struct maps {
	fvm_mapping m[MAX_MAPS];
	uint32_t id[MAX_MAPS];
	uint64_t ps[MAX_MAPS];
	uint8_t *data[MAX_MAPS]; /* per page: 1 when a DATA run covers it */
	size_t n;
};

static int probe[2] = { -1, -1 };

static void die(const char *what)
{
	fprintf(stderr, "fuzz_dest: %s (detail: %s)\n", what, fvm_error_detail());
	abort();
}

/* 1 when the byte at p can be read (write(2) says EFAULT, without a signal). */
static int readable(const void *p)
{
	char c;

	if (probe[0] < 0 && pipe(probe))
		die("pipe");
	if (write(probe[1], p, 1) == 1) {
		if (read(probe[0], &c, 1) != 1)
			die("read from the probe pipe");
		return 1;
	}
	if (errno != EFAULT)
		die("write to the probe pipe");
	return 0;
}

static void maps_make(fvm_reader *r, struct maps *mp, uint32_t flags_odd)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t total = 0;

	mp->n = 0;
	if (fvm_reader_info(r, &fi))
		die("info of an open reader");
	for (uint32_t i = 0; i < fi.block_count && mp->n < MAX_MAPS; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint8_t *p;

		if (fvm_reader_block(r, i, &bi))
			die("block listing");
		if (bi.length > MAX_MAP || total + bi.length > MAX_TOTAL || bi.page_size < 4096)
			continue;
		p = tu_guard_alloc(bi.length, FILL);
		if (!p)
			die("mmap");
		total += bi.length;
		mp->id[mp->n] = i;
		mp->ps[mp->n] = bi.page_size;
		mp->data[mp->n] = calloc(bi.length / bi.page_size, 1);
		if (!mp->data[mp->n])
			die("calloc");
		mp->m[mp->n++] = (fvm_mapping){ sizeof(fvm_mapping), (i & 1) ? flags_odd : 0, bi.name,
						p, bi.length, 0 };
	}
	for (uint64_t k = 0; k < fi.data_runs + fi.zero_runs; k++) {
		fvm_run_info ri = FVM_RUN_INFO_INIT;

		if (fvm_reader_run(r, k, &ri))
			break; /* a stream reader lists no runs */
		if (ri.kind != FVM_RUN_DATA)
			continue;
		for (size_t j = 0; j < mp->n; j++)
			if (mp->id[j] == ri.block_id) {
				uint64_t pages = mp->m[j].length / mp->ps[j];

				if (ri.first_page > pages || ri.page_count > pages - ri.first_page)
					die("listed run outside its block");
				memset(mp->data[j] + ri.first_page, 1, ri.page_count);
			}
	}
}

static void maps_free(struct maps *mp)
{
	for (size_t i = 0; i < mp->n; i++) {
		tu_guard_free(mp->m[i].addr, mp->m[i].length);
		free(mp->data[i]);
	}
	mp->n = 0;
}

/* Guards unreadable, pages outside the data runs untouched. */
static void maps_check(const struct maps *mp, const char *what)
{
	for (size_t i = 0; i < mp->n; i++) {
		const uint8_t *a = mp->m[i].addr;
		uint64_t ps = mp->ps[i], pages = mp->m[i].length / ps;

		if (readable(a - GUARD) || readable(a + mp->m[i].length)) {
			fprintf(stderr, "%s: a guard page of block %s was mapped over\n", what,
				mp->m[i].name);
			abort();
		}
		for (uint64_t p = 0; p < pages; p++) {
			if (mp->data[i][p])
				continue;
			for (uint64_t k = 0; k < ps; k++)
				if (a[p * ps + k] != FILL) {
					fprintf(stderr, "%s: block %s page %llu is no data run's, "
						"but byte %llu changed\n", what, mp->m[i].name,
						(unsigned long long)p, (unsigned long long)k);
					abort();
				}
		}
	}
}

/* Read every page, as a guest touching its RAM would. */
static void touch_all(const struct maps *mp)
{
	volatile uint8_t sink = 0;

	for (size_t i = 0; i < mp->n; i++)
		for (uint64_t off = 0; off < mp->m[i].length; off += 4096)
			sink ^= ((const volatile uint8_t *)mp->m[i].addr)[off];
	(void)sink;
}

static int memfd_with(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-dest", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		die("memfd_create");
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);

		if (n <= 0)
			die("write");
		done += (size_t)n;
	}
	return fd;
}

struct variant {
	const char *name;
	int backend;
	uint32_t flags;        /* FVM_LOAD_* besides PARTIAL */
	uint32_t map_flags;    /* FVM_MAP_* for odd blocks */
	unsigned threads;
};

static const struct variant variants[] = {
	{ "pread", FVM_BACKEND_PREAD, 0, 0, 3 }, /* the reference: first */
	{ "auto", FVM_BACKEND_AUTO, 0, 0, 1 },
	{ "auto-verify", FVM_BACKEND_AUTO, FVM_LOAD_VERIFY, 0, 2 },
	{ "mmap", FVM_BACKEND_MMAP, 0, FVM_MAP_SHARED, 1 },
	{ "mmap-lazy", FVM_BACKEND_MMAP, FVM_LOAD_LAZY, 0, 1 },
};

static void one_input(const uint8_t *data, size_t size)
{
	fvm_reader *r = NULL;
	uint8_t *ref[MAX_MAPS] = { NULL };
	size_t nref = 0;
	int fd = memfd_with(data, size);
	int authenticated;

	if (fvm_reader_open_fd(&r, fd, "fuzz-dest")) {
		close(fd);
		return;
	}
	(void)fvm_reader_set_key(r, fuzz_key, sizeof(fuzz_key)); /* AUTHENTICATED seeds */
	{
		fvm_file_info info = FVM_FILE_INFO_INIT;

		authenticated = fvm_reader_info(r, &info) == 0 && info.authenticated;
	}
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		const struct variant *x = &variants[v];
		fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
		fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
		struct maps mp;
		int rc;

		maps_make(r, &mp, x->map_flags);
		o.flags = FVM_LOAD_PARTIAL | x->flags;
		o.zero_policy = FVM_ZERO_LEAVE;
		o.backend = x->backend;
		t.threads = x->threads;
		o.tuning = &t;
		rc = fvm_load(r, mp.m, mp.n, &o, NULL);
		if (rc && !fvm_error_detail()[0])
			die("load failed without a detail");
		if (rc == 0 && (x->flags & FVM_LOAD_LAZY) && authenticated) {
			/*
			 * A lazy authenticated load serves faults through
			 * userfaultfd: a page whose chunk fails is never
			 * installed and a thread touching it waits, as a
			 * vCPU would until its VMM stops. Fill everything
			 * first: a failure must be one the reference met too.
			 */
			fvm_prefetch *p = NULL;

			if (fvm_prefetch_start(r, 0, &p))
				die("prefetch of a lazy authenticated load refused");
			rc = fvm_prefetch_wait(p);
			fvm_prefetch_free(p);
			if (rc && !fvm_error_detail()[0])
				die("prefetch failed without a detail");
			if (rc && nref) {
				fprintf(stderr, "%s: the lazy load found a bad chunk the pread load "
					"accepted: %s\n", x->name, fvm_error_detail());
				abort();
			}
		}
		if (rc == 0 && (x->flags & FVM_LOAD_LAZY))
			touch_all(&mp);
		maps_check(&mp, x->name);
		if (rc == 0 && v == 0) {
			for (size_t i = 0; i < mp.n; i++) {
				ref[i] = malloc(mp.m[i].length);
				if (!ref[i])
					die("malloc");
				memcpy(ref[i], mp.m[i].addr, mp.m[i].length);
			}
			nref = mp.n;
		} else if (rc == 0 && nref == mp.n) {
			for (size_t i = 0; i < mp.n; i++)
				if (memcmp(ref[i], mp.m[i].addr, mp.m[i].length)) {
					fprintf(stderr, "%s: block %s differs from the pread load\n",
						x->name, mp.m[i].name);
					abort();
				}
		}
		maps_free(&mp);
	}
	for (size_t i = 0; i < nref; i++)
		free(ref[i]);
	fvm_reader_free(r);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_as_is_and_resealed(data, size, one_input);
	return 0;
}
