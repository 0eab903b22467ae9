/*
 * Round-trip properties: generated RAM layouts are written with fvm_writer
 * (whole blocks, or streamed page ranges in shuffled order, with rewrites
 * and with pages never delivered), read back with fvm_reader and fvm_load
 * (both backends, every zero policy, with and without payload CRC checks,
 * from a file and through a pipe) into guard-paged memory, and compared
 * byte for byte. Also device state and metadata, progress and cancel, and
 * the file overhead for a guest-like layout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "testutil.h"

#define TUNE_INLINE (1u << 31) /* load_compare: FVM_TUNE_INLINE */

#define KiB 1024ull
#define MiB (1024ull * 1024)

/* ---------------------------------------------------------------- layouts */

enum layout_kind {
	L_ALL_ZERO, L_ALL_DATA, L_ALTERNATE, L_RANDOM, L_SEVERAL, L_HUGE, L_EDGE_BYTES,
	L_COUNT
};

static const char *layout_name[L_COUNT] = {
	"all-zero", "all-data", "alternate", "random-runs", "several-blocks",
	"2MiB-pages", "edge-bytes",
};

static void make_layout(struct tu_layout *l, int kind, uint64_t seed)
{
	struct tu_rng r;
	char longname[FVM_MAX_NAME + 1];
	int rc = 0;

	tu_rng_seed(&r, seed);
	memset(l, 0, sizeof(*l));
	switch (kind) {
	case L_ALL_ZERO:
		rc = tu_layout_add(l, "pc.ram", 1 * MiB, 4096, TU_ALL_ZERO, &r);
		break;
	case L_ALL_DATA:
		rc = tu_layout_add(l, "pc.ram", 1 * MiB, 4096, TU_ALL_DATA, &r);
		break;
	case L_ALTERNATE: /* odd page count: the last page is data */
		rc = tu_layout_add(l, "pc.ram", 1 * MiB + 4096, 4096, TU_ALTERNATE, &r);
		break;
	case L_RANDOM:
		rc = tu_layout_add(l, "pc.ram", 2 * MiB, 4096, TU_RANDOM_RUNS, &r);
		break;
	case L_SEVERAL:
		memset(longname, 'n', FVM_MAX_NAME);
		longname[FVM_MAX_NAME] = '\0';
		rc = tu_layout_add(l, "pc.ram", 2 * MiB, 4096, TU_RANDOM_RUNS, &r) ||
		     tu_layout_add(l, "vga.vram", 256 * KiB, 4096, TU_ALTERNATE, &r) ||
		     tu_layout_add(l, "/rom@etc/acpi/tables", 128 * KiB, 4096, TU_ALL_DATA, &r) ||
		     tu_layout_add(l, longname, 4096, 4096, TU_ALL_ZERO, &r) ||
		     tu_layout_add(l, "x", 64 * KiB, 16 * KiB, TU_LAST_BYTE, &r) ||
		     tu_layout_add(l, "y", 64 * KiB, 8 * KiB, TU_ALL_DATA, &r) ||
		     tu_layout_add(l, "pc.bios", 4096, 4096, TU_ALL_DATA, &r);
		break;
	case L_HUGE: /* 2 MiB pages beside 4 KiB pages */
		rc = tu_layout_add(l, "mem-huge", 8 * MiB, 2 * MiB, TU_ALTERNATE, &r) ||
		     tu_layout_add(l, "mem-huge2", 6 * MiB, 2 * MiB, TU_LAST_BYTE, &r) ||
		     tu_layout_add(l, "pc.ram", 512 * KiB, 4096, TU_RANDOM_RUNS, &r);
		break;
	case L_EDGE_BYTES: /* pages zero except their last (or first) byte */
		rc = tu_layout_add(l, "last", 1 * MiB, 4096, TU_LAST_BYTE, &r) ||
		     tu_layout_add(l, "first", 512 * KiB, 4096, TU_FIRST_BYTE, &r);
		break;
	}
	assert_int_equal(rc, 0);
}

/* ---------------------------------------------------------------- writing */

enum write_mode {
	W_BLOCK,          /* fvm_writer_write_block, blocks in reverse order */
	W_STREAM,         /* put_pages/put_zero chunks in shuffled order */
	W_REWRITE,        /* garbage first, then the real pages, then some again */
	W_SPARSE,         /* only chunks holding data; the rest never delivered */
	W_COUNT
};

static const char *mode_name[W_COUNT] = { "write_block", "stream", "rewrite", "sparse" };

struct chunk {
	uint32_t blk;
	uint64_t first, count;
};

static int range_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return 0;
	return 1;
}

static struct chunk *make_chunks(const struct tu_layout *l, struct tu_rng *r, size_t *n)
{
	size_t cap = 0, k = 0;
	struct chunk *c;

	for (unsigned b = 0; b < l->n; b++)
		cap += l->b[b].length / l->b[b].page_size;
	c = calloc(cap, sizeof(*c));
	assert_non_null(c);
	for (unsigned b = 0; b < l->n; b++) {
		uint64_t pages = l->b[b].length / l->b[b].page_size;

		for (uint64_t i = 0; i < pages;) {
			uint64_t cnt = 1 + tu_below(r, 16);

			if (cnt > pages - i)
				cnt = pages - i;
			c[k++] = (struct chunk){ b, i, cnt };
			i += cnt;
		}
	}
	tu_shuffle(r, c, k, sizeof(*c));
	*n = k;
	return c;
}

/* Deliver a chunk's real pages; all-zero chunks sometimes as put_zero. */
static int put_real(fvm_writer *w, const struct tu_layout *l, const uint32_t *ids,
		    const struct chunk *c, struct tu_rng *r)
{
	const struct tu_block *b = &l->b[c->blk];
	const uint8_t *p = b->mem + c->first * b->page_size;

	if (range_zero(p, c->count * b->page_size) && tu_below(r, 2))
		return fvm_writer_put_zero(w, ids[c->blk], c->first, c->count);
	return fvm_writer_put_pages(w, ids[c->blk], c->first, c->count, p);
}

/* Deliver a random range with content that a later delivery replaces. */
static int put_garbage(fvm_writer *w, const struct tu_layout *l, const uint32_t *ids,
		       struct tu_rng *r)
{
	uint32_t bi = (uint32_t)tu_below(r, l->n);
	const struct tu_block *b = &l->b[bi];
	uint64_t pages = b->length / b->page_size;
	uint64_t first = tu_below(r, pages);
	uint64_t count = 1 + tu_below(r, pages - first < 20 ? pages - first : 20);
	uint8_t *g;
	int rc;

	if (tu_below(r, 3) == 0)
		return fvm_writer_put_zero(w, ids[bi], first, count);
	g = malloc(count * b->page_size);
	assert_non_null(g);
	for (uint64_t i = 0; i < count; i++)
		tu_fill_page(r, g + i * b->page_size, b->page_size);
	rc = fvm_writer_put_pages(w, ids[bi], first, count, g);
	free(g);
	return rc;
}

#define CK(x) do { int rc_ = (x); if (rc_) { rc = rc_; goto out; } } while (0)

/*
 * Write layout l in the given mode to path (atomically) or, with fd >= 0, to
 * fd. Adds one metadata pair. Returns the writer's code.
 */
static int write_snapshot(const struct tu_layout *l, int mode, const fvm_write_options *o,
			  const char *path, int fd, uint64_t seed)
{
	fvm_writer *w = NULL;
	uint32_t ids[TU_MAX_BLOCKS];
	struct chunk *c = NULL;
	size_t nc = 0;
	struct tu_rng r;
	int rc = 0;

	tu_rng_seed(&r, seed ^ 0x5eed);
	CK(fd >= 0 ? fvm_writer_open_fd(&w, fd, o) : fvm_writer_open_path(&w, path, o));
	CK(fvm_writer_add_meta(w, "creator", "test_roundtrip"));
	for (unsigned i = 0; i < l->n; i++) {
		CK(fvm_writer_add_block(w, l->b[i].name, l->b[i].length, l->b[i].page_size,
					&ids[i]));
	}
	if (mode == W_BLOCK) {
		for (unsigned i = l->n; i-- > 0;)
			CK(fvm_writer_write_block(w, ids[i], l->b[i].mem));
	} else {
		c = make_chunks(l, &r, &nc);
		if (mode == W_REWRITE)
			for (size_t i = 0; i < nc / 3 + 1; i++)
				CK(put_garbage(w, l, ids, &r));
		for (size_t i = 0; i < nc; i++) {
			const struct tu_block *b = &l->b[c[i].blk];

			if (mode == W_SPARSE &&
			    range_zero(b->mem + c[i].first * b->page_size, c[i].count * b->page_size))
				continue;
			CK(put_real(w, l, ids, &c[i], &r));
		}
		if (mode == W_REWRITE) { /* the same pages again: last (identical) copy wins */
			tu_shuffle(&r, c, nc, sizeof(*c));
			for (size_t i = 0; i < nc / 5; i++)
				CK(put_real(w, l, ids, &c[i], &r));
		}
	}
	CK(fvm_writer_finish(w));
out:
	free(c);
	fvm_writer_free(w);
	return rc;
}

/* ---------------------------------------------------------------- checking */

static unsigned rot;          /* rotates load options across files */
static int uring_note_printed;

static void check_listing(fvm_reader *r, const struct tu_layout *l, int mode,
			  const fvm_write_options *o)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	const char *why = tu_check_consistent(r);

	if (why)
		fail_msg("inconsistent listing: %s", why);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.block_count, l->n);
	assert_int_equal(fi.version_major, 1);
	assert_string_equal(fvm_reader_meta_get(r, "creator"), "test_roundtrip");
	assert_null(fvm_reader_meta_get(r, "no-such-key"));
	for (unsigned i = 0; i < l->n; i++) {
		const struct tu_block *b = &l->b[i];
		uint64_t pages = b->length / b->page_size, dp = tu_data_pages(b);
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint32_t id;

		assert_int_equal(fvm_reader_block(r, i, &bi), 0);
		assert_string_equal(bi.name, b->name);
		assert_true(bi.length == b->length);
		assert_true(bi.page_size == b->page_size);
		assert_int_equal(fvm_reader_find_block(r, b->name, &id), 0);
		assert_int_equal(id, i);
		if (bi.data_pages != dp)
			fail_msg("block %s: %llu data pages, layout has %llu", b->name,
				 (unsigned long long)bi.data_pages, (unsigned long long)dp);
		if (mode == W_SPARSE)
			assert_true(bi.zero_pages <= pages - dp);
		else
			assert_true(bi.zero_pages == pages - dp);
		/*
		 * Whole blocks: adjacent non-zero pages coalesce into one run; the
		 * writer scans a block a segment (16 MiB) at a time, so a run may
		 * be cut where such a round ends, nowhere else.
		 */
		if (mode == W_BLOCK && !o->max_run_bytes && !o->segment_bytes) {
			uint64_t want = tu_data_runs(b);

			if (bi.data_runs < want || bi.data_runs > want + b->length / (16 * MiB))
				fail_msg("block %s: %llu data runs for %llu runs of non-zero pages",
					 b->name, (unsigned long long)bi.data_runs,
					 (unsigned long long)want);
		}
	}
	/* runs respect max_run_bytes */
	if (o->max_run_bytes)
		for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
			fvm_run_info ri = FVM_RUN_INFO_INIT;
			fvm_block_info bi = FVM_BLOCK_INFO_INIT;

			assert_int_equal(fvm_reader_run(r, i, &ri), 0);
			assert_int_equal(fvm_reader_block(r, ri.block_id, &bi), 0);
			if (ri.kind == FVM_RUN_DATA && bi.page_size <= o->max_run_bytes)
				assert_true(ri.page_count * bi.page_size <= o->max_run_bytes);
		}
	assert_int_equal(fvm_reader_find_block(r, "no-such-block", &(uint32_t){ 0 }),
			 FVM_ENOTFOUND);
}

static void fail_diff(const char *what, const struct tu_block *b, const uint8_t *got)
{
	for (uint64_t k = 0; k < b->length; k++)
		if (got[k] != b->mem[k])
			fail_msg("%s: block %s differs at byte 0x%llx (page %llu): got 0x%02x, "
				 "want 0x%02x", what, b->name, (unsigned long long)k,
				 (unsigned long long)(k / b->page_size), got[k], b->mem[k]);
}

/*
 * Load every block into fresh guarded memory and compare. For zero
 * policies other than LEAVE the memory starts as 0xAA, so a zero page that
 * the policy misses shows.
 */
static void load_compare(fvm_reader *r, const struct tu_layout *l, int backend, int policy,
			 uint32_t flags, unsigned qd, uint64_t chunk, const char *what)
{
	fvm_mapping maps[TU_MAX_BLOCKS];
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t total = 0;
	int rc;

	for (unsigned i = 0; i < l->n; i++) {
		maps[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, l->b[i].name,
					 tu_guard_alloc(l->b[i].length, policy == FVM_ZERO_LEAVE ? -1 : 0xAA),
					 l->b[i].length, (i & 1) ? l->b[i].page_size : 0 };
		assert_non_null(maps[i].addr);
		total += l->b[i].length;
	}
	o.backend = backend;
	o.zero_policy = policy;
	o.flags = flags & ~TUNE_INLINE;
	t.flags = flags & TUNE_INLINE ? FVM_TUNE_INLINE : 0;
	t.queue_depth = qd;
	t.chunk_bytes = chunk;
	o.tuning = &t;
	/* mappings in reverse order: matching is by name */
	for (unsigned i = 0; i < l->n / 2; i++) {
		fvm_mapping t = maps[i];
		maps[i] = maps[l->n - 1 - i];
		maps[l->n - 1 - i] = t;
	}
	rc = fvm_load(r, maps, l->n, &o, &st);
	if (rc)
		fail_msg("%s: fvm_load(backend %d, zero policy %d, flags 0x%x, qd %u, chunk %llu): "
			 "%s: %s", what, backend, policy, flags, qd, (unsigned long long)chunk,
			 fvm_strerror(rc), fvm_error_detail());
	for (unsigned i = 0; i < l->n; i++) {
		const struct tu_block *b = &l->b[l->n - 1 - i];

		assert_ptr_equal(maps[i].name, b->name);
		if (memcmp(maps[i].addr, b->mem, b->length))
			fail_diff(what, b, maps[i].addr);
		tu_guard_free(maps[i].addr, b->length);
	}
	assert_non_null(st.backend_name);
	/*
	 * The library reads no environment: run with FVM_BACKEND=pread (meson
	 * test roundtrip-env), an AUTO load still takes io_uring unless the
	 * system refused it (then the reason says so).
	 */
	if (backend == FVM_BACKEND_AUTO && st.backend == FVM_BACKEND_PREAD)
		assert_non_null(st.fallback_reason);
	if (backend == FVM_BACKEND_MMAP) {
		/* the test memory is private anonymous and page-aligned: no fallback */
		assert_int_equal(st.backend, FVM_BACKEND_MMAP);
		assert_null(st.fallback_reason);
	} else if (backend != FVM_BACKEND_AUTO && st.backend != backend) {
		/* io_uring may be refused by the system; then the fallback must say why */
		assert_int_equal(backend, FVM_BACKEND_URING);
		assert_int_equal(st.backend, FVM_BACKEND_PREAD);
		assert_non_null(st.fallback_reason);
		if (!uring_note_printed++)
			print_message("note: io_uring not available here (%s); pread used\n",
				      st.fallback_reason);
	}
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	if (st.backend == FVM_BACKEND_MMAP && (flags & FVM_LOAD_LAZY))
		assert_int_equal(st.bytes_read, 0); /* nothing read until touched */
	else
		assert_true(st.bytes_read >= fi.payload_bytes);
	if (policy == FVM_ZERO_MEMSET)
		assert_true(st.zero_bytes == total - fi.payload_bytes);
}

/* Random piecewise reads must give the layout's bytes (zeros where no data). */
static void read_pages_compare(fvm_reader *r, const struct tu_layout *l, uint64_t seed)
{
	struct tu_rng g;

	tu_rng_seed(&g, seed);
	for (unsigned i = 0; i < l->n; i++) {
		const struct tu_block *b = &l->b[i];
		uint64_t pages = b->length / b->page_size;

		for (int k = 0; k < 4; k++) {
			uint64_t first = tu_below(&g, pages);
			uint64_t count = 1 + tu_below(&g, pages - first < 40 ? pages - first : 40);
			uint8_t *buf = malloc(count * b->page_size);
			int rc;

			assert_non_null(buf);
			memset(buf, 0xAA, count * b->page_size);
			rc = fvm_reader_read_pages(r, i, first, count, buf);
			if (rc)
				fail_msg("read_pages(%s, %llu, %llu): %s", b->name,
					 (unsigned long long)first, (unsigned long long)count,
					 fvm_error_detail());
			assert_memory_equal(buf, b->mem + first * b->page_size, count * b->page_size);
			free(buf);
		}
	}
}

/* Everything a reader of a seekable file offers, against the layout. */
static void check_file(const char *path, const struct tu_layout *l, int mode,
		       const fvm_write_options *wo, uint64_t seed, const char *what)
{
	static const int policies[3] = { FVM_ZERO_LEAVE, FVM_ZERO_MEMSET, FVM_ZERO_DONTNEED };
	static const unsigned qds[4] = { 0, 1, 2, 64 };
	static const uint64_t chunks[4] = { 0, 4096, 12288, 1 * MiB };
	fvm_reader *r = NULL;
	int rc;

	rc = fvm_reader_open(&r, path);
	if (rc)
		fail_msg("%s: fvm_reader_open: %s", what, fvm_error_detail());
	check_listing(r, l, mode, wo);
	rc = fvm_verify(r, NULL, NULL);
	if (rc)
		fail_msg("%s: fvm_verify: %s", what, fvm_error_detail());
	rot++;
	load_compare(r, l, FVM_BACKEND_PREAD, policies[rot % 3], rot & 1 ? FVM_LOAD_VERIFY : 0,
		     qds[rot % 4], chunks[(rot / 3) % 4], what);
	load_compare(r, l, FVM_BACKEND_URING, policies[(rot + 1) % 3],
		     (rot & 1 ? 0 : FVM_LOAD_VERIFY) | (rot & 2 ? TUNE_INLINE : 0),
		     qds[(rot + 1) % 4], chunks[(rot / 4) % 4], what);
	/* no copy: runs mapped over the destination (copy on write) */
	load_compare(r, l, FVM_BACKEND_MMAP, policies[(rot + 2) % 3], rot & 2 ? FVM_LOAD_VERIFY : 0,
		     0, chunks[(rot / 2) % 4], what);
	/* mapped without populating: each page read when the compare touches it */
	load_compare(r, l, FVM_BACKEND_MMAP, policies[rot % 3], FVM_LOAD_LAZY, 0, 0, what);
	/* the same reader loads again, with O_DIRECT asked for (it may fall back) */
	load_compare(r, l, FVM_BACKEND_AUTO, FVM_ZERO_LEAVE, FVM_LOAD_VERIFY | FVM_LOAD_DIRECT,
		     0, 0, what);
	read_pages_compare(r, l, seed);
	fvm_reader_free(r);
}

static const fvm_write_options *wopts(int i)
{
	static fvm_write_options o[5];

	for (int k = 0; k < 5; k++)
		o[k] = (fvm_write_options)FVM_WRITE_OPTIONS_INIT;
	for (int k = 0; k < 5; k++)
		o[k].flags = FVM_WRITE_NO_FSYNC;
	o[1].max_run_bytes = 12288; /* not a multiple of every page size */
	o[1].segment_bytes = 64 * KiB;
	o[2].segment_bytes = 4096;
	o[2].flags |= FVM_WRITE_NO_CRC;
	o[3].max_run_bytes = 4096;
	o[4].flags = 0; /* with fsync */
	return &o[i];
}
#define N_WOPTS 5

/* ---------------------------------------------------------------- tests */

static void run_layouts(int mode)
{
	char what[256];

	for (int kind = 0; kind < L_COUNT; kind++) {
		int seeds = kind == L_RANDOM || kind == L_SEVERAL ? 3 : 1;

		for (int s = 0; s < seeds; s++) {
			uint64_t seed = 1000 * (uint64_t)kind + (uint64_t)s + 17 * (uint64_t)mode;
			struct tu_layout l;

			make_layout(&l, kind, seed);
			for (int oi = 0; oi < N_WOPTS; oi++) {
				const fvm_write_options *o = wopts(oi);
				const char *path = tu_path("rt.fvm");
				int rc;

				/* fsync costs; once per mode is enough */
				if (oi == 4 && kind != L_SEVERAL)
					continue;
				snprintf(what, sizeof(what), "%s, %s, seed %llu, options %d",
					 layout_name[kind], mode_name[mode],
					 (unsigned long long)seed, oi);
				if (oi == 3 && s == 0) { /* writer to a caller's fd */
					int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

					assert_true(fd >= 0);
					rc = write_snapshot(&l, mode, o, NULL, fd, seed);
					assert_int_equal(close(fd), 0);
				} else {
					rc = write_snapshot(&l, mode, o, path, -1, seed);
				}
				if (rc)
					fail_msg("%s: write: %s: %s", what, fvm_strerror(rc),
						 fvm_error_detail());
				check_file(path, &l, mode, o, seed, what);
				unlink(path);
			}
			tu_layout_free(&l);
		}
	}
}

static void test_write_block(void **state) { (void)state; run_layouts(W_BLOCK); }
static void test_stream_put(void **state) { (void)state; run_layouts(W_STREAM); }
static void test_stream_rewrite(void **state) { (void)state; run_layouts(W_REWRITE); }
static void test_stream_sparse(void **state) { (void)state; run_layouts(W_SPARSE); }

/* ---- stream mode: writer -> pipe -> fvm_reader_open_stream -> fvm_load */

struct wjob {
	const struct tu_layout *l;
	int mode;
	const fvm_write_options *o;
	int fd;
	uint64_t seed;
	int rc;
	char detail[1024];
};

static void *writer_thread(void *arg)
{
	struct wjob *j = arg;

	j->rc = write_snapshot(j->l, j->mode, j->o, NULL, j->fd, j->seed);
	if (j->rc)
		snprintf(j->detail, sizeof(j->detail), "%s", fvm_error_detail());
	close(j->fd);
	return NULL;
}

static void stream_one(const struct tu_layout *l, int mode, const fvm_write_options *o,
		       int policy, uint32_t flags, uint64_t seed, const char *what)
{
	int p[2], rc;
	pthread_t t;
	struct wjob j = { l, mode, o, -1, seed, 0, "" };
	fvm_reader *r = NULL;
	fvm_file_info fi = FVM_FILE_INFO_INIT;

	assert_int_equal(pipe(p), 0);
	j.fd = p[1];
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &j), 0);
	rc = fvm_reader_open_stream(&r, p[0], "pipe");
	if (rc)
		fail_msg("%s: open_stream: %s", what, fvm_error_detail());
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.streamed, 1);
	assert_int_equal(fi.file_size, 0);
	assert_int_equal(fi.block_count, l->n);
	load_compare(r, l, FVM_BACKEND_AUTO, policy, flags, 0, 0, what);
	close(p[0]);
	pthread_join(t, NULL);
	if (j.rc)
		fail_msg("%s: writer: %s", what, j.detail);
	/* listings are complete after the load */
	check_listing(r, l, mode, o);
	/* a stream is consumed by its load: a second one is refused, memory untouched */
	{
		fvm_mapping m[TU_MAX_BLOCKS];

		for (unsigned i = 0; i < l->n; i++) {
			m[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, l->b[i].name, tu_guard_alloc(l->b[i].length, 0x55),
					      l->b[i].length, 0 };
			assert_non_null(m[i].addr);
		}
		assert_int_equal(fvm_load(r, m, l->n, NULL, NULL), FVM_ESTATE);
		for (unsigned i = 0; i < l->n; i++) {
			for (uint64_t k = 0; k < l->b[i].length; k += 512)
				assert_int_equal(((uint8_t *)m[i].addr)[k], 0x55);
			tu_guard_free(m[i].addr, l->b[i].length);
		}
	}
	fvm_reader_free(r);
}

static void test_stream_mode(void **state)
{
	static const int policies[3] = { FVM_ZERO_LEAVE, FVM_ZERO_MEMSET, FVM_ZERO_DONTNEED };
	char what[256];
	int n = 0;

	(void)state;
	for (int kind = 0; kind < L_COUNT; kind++)
		for (int mode = 0; mode < W_COUNT; mode++) {
			struct tu_layout l;
			uint64_t seed = 7000 + 10 * (uint64_t)kind + (uint64_t)mode;

			make_layout(&l, kind, seed);
			for (int oi = 0; oi < 4; oi++, n++) {
				snprintf(what, sizeof(what), "stream: %s, %s, options %d",
					 layout_name[kind], mode_name[mode], oi);
				stream_one(&l, mode, wopts(oi), policies[n % 3],
					   n & 1 ? FVM_LOAD_VERIFY : 0, seed, what);
			}
			tu_layout_free(&l);
		}
}

/* ---- device state and metadata */

struct ds {
	const char *name;
	size_t len;
	uint8_t *data;
};

static void check_devstate_meta(fvm_reader *r, struct ds *d, size_t nd)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;

	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.devstate_count, nd);
	for (uint32_t i = 0; i < nd; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
		uint8_t *buf = malloc(d[i].len + 1);

		assert_int_equal(fvm_reader_devstate(r, i, &di), 0);
		assert_string_equal(di.name, d[i].name);
		assert_true(di.length == d[i].len);
		assert_int_equal(fvm_reader_devstate_read(r, i, buf, d[i].len + 1), 0);
		assert_memory_equal(buf, d[i].data, d[i].len);
		if (d[i].len)
			assert_true(fvm_reader_devstate_read(r, i, buf, d[i].len - 1) < 0);
		free(buf);
	}
	assert_true(fvm_reader_devstate(r, (uint32_t)nd, &(fvm_devstate_info)FVM_DEVSTATE_INFO_INIT) < 0);
	/* a later pair with the same key replaces the value */
	assert_string_equal(fvm_reader_meta_get(r, "source"), "second");
	assert_string_equal(fvm_reader_meta_get(r, "machine"), "pc-i440fx-7.2");
	assert_string_equal(fvm_reader_meta_get(r, "creator"), "test_roundtrip");
	assert_string_equal(fvm_reader_meta_get(r, "empty"), "");
	assert_null(fvm_reader_meta_get(r, "sourc"));
	for (uint32_t i = 0; i < fi.meta_count; i++) {
		const char *k, *v;
		assert_int_equal(fvm_reader_meta(r, i, &k, &v), 0);
	}
	assert_true(fvm_reader_meta(r, fi.meta_count, &(const char *){ 0 },
				    &(const char *){ 0 }) < 0);
}

static int write_ds(int fd, const char *path, const struct tu_layout *l, struct ds *d, size_t nd)
{
	fvm_writer *w = NULL;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	uint32_t id;
	int rc = 0;

	o.flags = FVM_WRITE_NO_FSYNC;
	CK(fd >= 0 ? fvm_writer_open_fd(&w, fd, &o) : fvm_writer_open_path(&w, path, &o));
	CK(fvm_writer_add_meta(w, "source", "first"));
	CK(fvm_writer_add_devstate(w, d[0].name, d[0].data, d[0].len)); /* before RAM */
	CK(fvm_writer_add_block(w, l->b[0].name, l->b[0].length, l->b[0].page_size, &id));
	CK(fvm_writer_add_devstate(w, d[1].name, d[1].data, d[1].len));
	CK(fvm_writer_write_block(w, id, l->b[0].mem));
	CK(fvm_writer_add_meta(w, "creator", "test_roundtrip"));
	for (size_t i = 2; i < nd; i++) /* after RAM */
		CK(fvm_writer_add_devstate(w, d[i].name, d[i].data, d[i].len));
	CK(fvm_writer_add_meta(w, "machine", "pc-i440fx-7.2"));
	CK(fvm_writer_add_meta(w, "empty", ""));
	CK(fvm_writer_add_meta(w, "source", "second"));
	CK(fvm_writer_finish(w));
out:
	fvm_writer_free(w);
	return rc;
}

struct dsjob {
	int fd;
	const struct tu_layout *l;
	struct ds *d;
	size_t nd;
	int rc;
};

static void *ds_thread(void *a)
{
	struct dsjob *j = a;

	j->rc = write_ds(j->fd, NULL, j->l, j->d, j->nd);
	close(j->fd);
	return NULL;
}

static void test_devstate_meta(void **state)
{
	struct tu_rng g;
	struct tu_layout l;
	struct ds d[5] = {
		{ "", 100, NULL },             /* empty name is allowed */
		{ "qemu.config", 37, NULL },
		{ "qemu.devices", 3 * MiB + 5, NULL },
		{ "empty", 0, NULL },
		{ "json", 4096, NULL },
	};
	const char *path = tu_path("ds.fvm");
	fvm_reader *r = NULL;
	int rc;

	(void)state;
	tu_rng_seed(&g, 99);
	for (int i = 0; i < 5; i++) {
		d[i].data = malloc(d[i].len + 1);
		tu_fill_random(&g, d[i].data, d[i].len);
	}
	make_layout(&l, L_RANDOM, 5);

	rc = write_ds(-1, path, &l, d, 5);
	if (rc)
		fail_msg("write: %s", fvm_error_detail());
	assert_int_equal(fvm_reader_open(&r, path), 0);
	check_devstate_meta(r, d, 5);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);

	{ /* the same through a pipe: sections after RAM are read by the load */
		int p[2];
		pthread_t t;
		struct dsjob j = { -1, &l, d, 5, 0 };
		fvm_mapping m;
		uint8_t *mem = tu_guard_alloc(l.b[0].length, -1);

		assert_int_equal(pipe(p), 0);
		j.fd = p[1];
		assert_int_equal(pthread_create(&t, NULL, ds_thread, &j), 0);
		assert_int_equal(fvm_reader_open_stream(&r, p[0], "pipe"), 0);
		m = (fvm_mapping){ sizeof(fvm_mapping), 0, l.b[0].name, mem, l.b[0].length, 0 };
		rc = fvm_load(r, &m, 1, NULL, NULL);
		if (rc)
			fail_msg("stream load: %s", fvm_error_detail());
		close(p[0]);
		pthread_join(t, NULL);
		assert_int_equal(j.rc, 0);
		assert_memory_equal(mem, l.b[0].mem, l.b[0].length);
		check_devstate_meta(r, d, 5);
		fvm_reader_free(r);
		tu_guard_free(mem, l.b[0].length);
	}
	for (int i = 0; i < 5; i++)
		free(d[i].data);
	tu_layout_free(&l);
	unlink(path);
}

/* ---- progress and cancel */

struct prog {
	uint64_t last, total, calls;
	int cancel_at;   /* cancel on this call (1-based), 0 = never */
	int bad;
};

static int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct prog *p = ctx;

	p->calls++;
	if (done < p->last || done > total || (p->total && total != p->total))
		p->bad = 1;
	p->last = done;
	p->total = total;
	return p->cancel_at && p->calls >= (uint64_t)p->cancel_at;
}

/* Files in the scratch directory other than keep. */
static int count_other_files(const char *keep)
{
	DIR *d = opendir(tu_diskdir());
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, keep))
			n++;
	closedir(d);
	return n;
}

static void test_progress_cancel(void **state)
{
	struct tu_layout l;
	const char *path = tu_disk_path("prog.fvm"), *tmp;
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning lt = FVM_LOAD_TUNING_INIT;
	struct prog p = { 0 };
	fvm_writer *w;
	fvm_reader *r;
	uint32_t id;
	fvm_mapping m;
	uint8_t *mem;
	int rc;

	(void)state;
	make_layout(&l, L_ALL_DATA, 3);
	wo.flags = FVM_WRITE_NO_FSYNC;
	wo.progress = progress_cb;
	wo.progress_ctx = &p;
	wo.segment_bytes = 64 * KiB;
	assert_int_equal(write_snapshot(&l, W_BLOCK, &wo, path, -1, 1), 0);
	assert_true(p.calls > 0);
	assert_false(p.bad);
	assert_true(p.last == p.total);

	/* a canceled path writer leaves neither the file nor a temporary behind */
	tmp = tu_disk_path("cancel.fvm");
	p = (struct prog){ .cancel_at = 1 };
	assert_int_equal(fvm_writer_open_path(&w, tmp, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", l.b[0].length, 4096, &id), 0);
	rc = fvm_writer_write_block(w, id, l.b[0].mem);
	if (rc == 0)
		rc = fvm_writer_finish(w);
	assert_int_equal(rc, FVM_ECANCELED);
	fvm_writer_free(w);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(count_other_files("prog.fvm"), 0);

	/* load progress, then cancel */
	assert_int_equal(fvm_reader_open(&r, path), 0);
	mem = tu_guard_alloc(l.b[0].length, -1);
	m = (fvm_mapping){ sizeof(fvm_mapping), 0, "pc.ram", mem, l.b[0].length, 0 };
	for (int backend = FVM_BACKEND_URING; backend <= FVM_BACKEND_PREAD; backend++) {
		p = (struct prog){ 0 };
		lo.progress = progress_cb;
		lo.progress_ctx = &p;
		lo.backend = backend;
		lo.tuning = &lt;
		lt.chunk_bytes = 64 * KiB;
		assert_int_equal(fvm_load(r, &m, 1, &lo, NULL), 0);
		assert_true(p.calls > 0);
		assert_false(p.bad);
		assert_true(p.last == p.total);
		assert_memory_equal(mem, l.b[0].mem, l.b[0].length);

		p = (struct prog){ .cancel_at = 1 };
		assert_int_equal(fvm_load(r, &m, 1, &lo, NULL), FVM_ECANCELED);
		assert_true(fvm_error_detail()[0] != '\0');
	}
	p = (struct prog){ 0 };
	assert_int_equal(fvm_verify(r, progress_cb, &p), 0);
	assert_false(p.bad);
	p = (struct prog){ .cancel_at = 1 };
	assert_int_equal(fvm_verify(r, progress_cb, &p), FVM_ECANCELED);
	fvm_reader_free(r);
	tu_guard_free(mem, l.b[0].length);
	tu_layout_free(&l);
	unlink(path);
}

/* ---- overhead: guest-like memory costs at most 1% over its non-zero pages */

static void test_overhead(void **state)
{
	struct tu_layout l;
	struct tu_rng g;
	const char *path = tu_disk_path("guest.fvm");
	struct stat st;
	uint64_t nz = 0;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;

	(void)state;
	tu_rng_seed(&g, 4242);
	memset(&l, 0, sizeof(l));
	assert_int_equal(tu_layout_add(&l, "pc.ram", 96 * MiB, 4096, TU_GUEST_LIKE, &g), 0);
	assert_int_equal(tu_layout_add(&l, "vga.vram", 8 * MiB, 4096, TU_GUEST_LIKE, &g), 0);
	for (unsigned i = 0; i < l.n; i++)
		nz += tu_data_pages(&l.b[i]) * l.b[i].page_size;
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(write_snapshot(&l, W_BLOCK, &o, path, -1, 1), 0);
	assert_int_equal(stat(path, &st), 0);
	print_message("guest-like: %llu non-zero bytes of %llu, file %llu bytes, overhead %.3f%%\n",
		      (unsigned long long)nz, (unsigned long long)tu_layout_bytes(&l),
		      (unsigned long long)st.st_size,
		      100.0 * ((double)st.st_size - (double)nz) / (double)nz);
	assert_true((uint64_t)st.st_size >= nz);
	assert_true((uint64_t)st.st_size - nz <= nz / 100);
	check_file(path, &l, W_BLOCK, &o, 1, "guest-like");
	unlink(path);
	tu_layout_free(&l);
}

/* ---- an fd reader of a seekable file reads like a path reader */

static void test_open_fd(void **state)
{
	struct tu_layout l;
	const char *path = tu_disk_path("fd.fvm");
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_reader *r;
	int fd;

	(void)state;
	make_layout(&l, L_SEVERAL, 77);
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(write_snapshot(&l, W_BLOCK, &o, path, -1, 77), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fvm_reader_open_fd(&r, fd, "fd.fvm"), 0);
	check_listing(r, &l, W_BLOCK, &o);
	load_compare(r, &l, FVM_BACKEND_PREAD, FVM_ZERO_MEMSET, FVM_LOAD_VERIFY, 0, 0, "open_fd");
	load_compare(r, &l, FVM_BACKEND_URING, FVM_ZERO_LEAVE, 0, 0, 0, "open_fd");
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);
	/* the reader does not close a caller's fd */
	assert_true(fcntl(fd, F_GETFD) != -1);
	assert_int_equal(close(fd), 0);
	unlink(path);
	tu_layout_free(&l);
}

/* The library the test runs against is the one its header describes. */
static void test_version(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", FVM_VERSION_MAJOR, FVM_VERSION_MINOR,
		 FVM_VERSION_PATCH);
	assert_int_equal(fvm_version(), FVM_VERSION_NUMBER);
	assert_string_equal(fvm_version_string(), want);
}

static int teardown(void **state)
{
	(void)state;
	tu_tmpdir_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_write_block),
		cmocka_unit_test(test_stream_put),
		cmocka_unit_test(test_stream_rewrite),
		cmocka_unit_test(test_stream_sparse),
		cmocka_unit_test(test_stream_mode),
		cmocka_unit_test(test_devstate_meta),
		cmocka_unit_test(test_progress_cancel),
		cmocka_unit_test(test_overhead),
		cmocka_unit_test(test_open_fd),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, teardown);
}
