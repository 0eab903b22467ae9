/*
 * A program built against libfastvm 0.1, run against the library under test.
 *
 * Compiled only against the verbatim 0.1 header in tests/abi/v0.1 and linked
 * against a stub libfastvm.so.0 that carries the 0.1 version node, so every
 * reference is bound to fvm_*@LIBFASTVM_0 exactly as in a binary built
 * against 0.1; at run time LD_LIBRARY_PATH puts the real library first.
 *
 * It uses the 0.1 API the way a 0.1 caller did: writes a snapshot (two
 * blocks with data and zero pages, metadata, two device-state sections),
 * lists it with 0.1 output structs that are followed by canary bytes (the
 * values must be right and no byte past the 0.1 struct may change), loads it
 * with arrays of 0.1 fvm_mapping (32-byte stride) and 0.1 fvm_load_options
 * (queue_depth, chunk_bytes, willneed_window, FVM_LOAD_INLINE) into 0.1
 * fvm_load_stats, from a file and from a pipe, verifies it and reads a
 * corrupted copy. A library that writes past an old struct, reads an old
 * struct with the new layout or lost a 0.1 symbol version fails here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <fastvm/fastvm.h>

#if FVM_VERSION_MAJOR != 0 || FVM_VERSION_MINOR != 1
#error "old_caller.c must be compiled against the 0.1 header (-I tests/abi/v0.1)"
#endif

/* The 0.1 layouts on x86-64 (and every LP64 ABI), as old binaries have them. */
_Static_assert(sizeof(fvm_mapping) == 32, "0.1 fvm_mapping");
_Static_assert(sizeof(fvm_load_options) == 56, "0.1 fvm_load_options");
_Static_assert(sizeof(fvm_load_stats) == 72, "0.1 fvm_load_stats");
_Static_assert(sizeof(fvm_file_info) == 88, "0.1 fvm_file_info");
_Static_assert(sizeof(fvm_block_info) == 56, "0.1 fvm_block_info");
_Static_assert(sizeof(fvm_run_info) == 32, "0.1 fvm_run_info");
_Static_assert(sizeof(fvm_devstate_info) == 24, "0.1 fvm_devstate_info");
_Static_assert(sizeof(fvm_write_options) == 40, "0.1 fvm_write_options");

#define CANARY 0xa5
#define TAIL 64   /* canary bytes after each output struct */
#define GUARD 65536 /* canary bytes around each load destination */

/* ------------------------------------------------------------ the snapshot */

/* Block 0 "pc.ram": 16 pages of 4 KiB, written whole (fvm_writer_write_block). */
#define A_PAGE 4096u
#define A_PAGES 16u
static const char a_data[A_PAGES + 1] = "DDDD____DD_____D"; /* D = data page */
/* Block 1 "vga.vram": 8 pages of 8 KiB, delivered page by page (put_pages/put_zero). */
#define B_PAGE 8192u
#define B_PAGES 8u
static const char b_data[B_PAGES + 1] = "_DD____D";

#define N_META 2
static const char *const meta[N_META][2] = { { "creator", "abi old_caller" },
					     { "machine", "pc-q35-7.2" } };
#define N_DEVS 2
static const char *const dev_name[N_DEVS] = { "cpu0", "0000:00:02.0/virtio-net" };
static const size_t dev_len[N_DEVS] = { 123, 5000 };

static unsigned char *src_a, *src_b, *src_dev[N_DEVS];
static char dir[] = "/tmp/fvm-abi-old-caller-XXXXXX";
static char path[sizeof(dir) + 32], bad_path[sizeof(dir) + 32];
static int write_progress_calls;

static uint64_t count_kind(const char *map, unsigned n, char kind)
{
	uint64_t c = 0;

	for (unsigned i = 0; i < n; i++)
		c += map[i] == kind;
	return c;
}

static const uint64_t data_pages = 7 + 3, zero_pages = 9 + 5;
static const uint64_t payload = 7 * A_PAGE + 3 * B_PAGE;
static const uint64_t zero_bytes = 9 * A_PAGE + 5 * B_PAGE;

static void fill_sources(void)
{
	src_a = calloc(A_PAGES, A_PAGE);
	src_b = calloc(B_PAGES, B_PAGE);
	assert_non_null(src_a);
	assert_non_null(src_b);
	for (unsigned p = 0; p < A_PAGES; p++)
		for (unsigned i = 0; a_data[p] == 'D' && i < A_PAGE; i++)
			src_a[p * A_PAGE + i] = (unsigned char)(p * 131 + i * 7 + 1);
	/* a data page whose only non-zero byte is its last: zero scans stop early */
	memset(src_a + 9 * A_PAGE, 0, A_PAGE);
	src_a[10 * A_PAGE - 1] = 0x42;
	for (unsigned p = 0; p < B_PAGES; p++)
		for (unsigned i = 0; b_data[p] == 'D' && i < B_PAGE; i++)
			src_b[p * B_PAGE + i] = (unsigned char)(p * 29 + i * 3 + 5);
	for (int d = 0; d < N_DEVS; d++) {
		src_dev[d] = malloc(dev_len[d]);
		assert_non_null(src_dev[d]);
		for (size_t i = 0; i < dev_len[d]; i++)
			src_dev[d][i] = (unsigned char)(d * 77 + i * 13 + 3);
	}
	assert_int_equal(count_kind(a_data, A_PAGES, 'D') + count_kind(b_data, B_PAGES, 'D'),
			 data_pages);
}

static int on_write_progress(void *ctx, uint64_t done, uint64_t total)
{
	assert_ptr_equal(ctx, &write_progress_calls);
	assert_true(done <= total);
	write_progress_calls++;
	return 0;
}

/* The same calls whether the writer goes to a path or to a pipe. */
static void write_snapshot(fvm_writer *w)
{
	static const unsigned char junk[B_PAGE] = { 1, 2, 3 };
	uint32_t a, b;

	for (int m = 0; m < N_META; m++)
		assert_int_equal(fvm_writer_add_meta(w, meta[m][0], meta[m][1]), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", A_PAGES * A_PAGE, A_PAGE, &a), 0);
	assert_int_equal(fvm_writer_add_block(w, "vga.vram", B_PAGES * B_PAGE, B_PAGE, &b), 0);
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(fvm_writer_add_devstate(w, dev_name[0], src_dev[0], dev_len[0]), 0);
	assert_int_equal(fvm_writer_write_block(w, a, src_a), 0);
	assert_int_equal(fvm_writer_put_zero(w, b, 0, 1), 0);
	assert_int_equal(fvm_writer_put_pages(w, b, 7, 1, junk), 0); /* replaced below */
	assert_int_equal(fvm_writer_put_pages(w, b, 1, 2, src_b + 1 * B_PAGE), 0);
	assert_int_equal(fvm_writer_put_zero(w, b, 3, 4), 0);
	assert_int_equal(fvm_writer_put_pages(w, b, 7, 1, src_b + 7 * B_PAGE), 0);
	assert_int_equal(fvm_writer_add_devstate(w, dev_name[1], src_dev[1], dev_len[1]), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

static int read_file(const char *p, unsigned char **buf, size_t *len)
{
	struct stat st;
	int fd = open(p, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) || !(*buf = malloc((size_t)st.st_size)) ||
	    pread(fd, *buf, (size_t)st.st_size, 0) != st.st_size)
		return -1;
	*len = (size_t)st.st_size;
	close(fd);
	return 0;
}

static int write_file(const char *p, const unsigned char *buf, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

static int setup(void **state)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w = NULL;

	(void)state;
	fill_sources();
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/old.fvm", dir);
	snprintf(bad_path, sizeof(bad_path), "%s/bad.fvm", dir);
	o.flags = FVM_WRITE_NO_FSYNC;
	o.progress = on_write_progress;
	o.progress_ctx = &write_progress_calls;
	if (fvm_writer_open_path(&w, path, &o)) {
		fprintf(stderr, "fvm_writer_open_path: %s\n", fvm_error_detail());
		return -1;
	}
	write_snapshot(w);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	unlink(bad_path);
	rmdir(dir);
	return 0;
}

/* ------------------------------------------------------------ helpers */

static fvm_reader *open_file(void)
{
	fvm_reader *r = NULL;
	int rc = fvm_reader_open(&r, path);

	if (rc)
		fail_msg("fvm_reader_open: %d %s", rc, fvm_error_detail());
	return r;
}

/*
 * An output struct of `size` bytes at the start of buf, then TAIL canary
 * bytes. The struct itself starts as `fill` (0: a zeroed struct; CANARY: the
 * garbage of an uninitialised one, as 0.1 callers never set anything in it).
 */
static void *prepare(unsigned char *buf, size_t size, int fill)
{
	memset(buf, fill, size);
	memset(buf + size, CANARY, TAIL);
	return buf;
}

static void check_tail(const unsigned char *buf, size_t size, const char *what)
{
	for (size_t i = 0; i < TAIL; i++)
		if (buf[size + i] != CANARY)
			fail_msg("%s wrote byte %zu past the end of the 0.1 struct (%zu bytes): "
				 "0x%02x", what, i, size, buf[size + i]);
}

static const int fills[2] = { 0, CANARY };

/* Destination memory with GUARD canary bytes either side. */
struct dest {
	unsigned char *base, *mem;
	size_t len;
};

static void dest_alloc(struct dest *d, size_t len, int fill)
{
	d->len = len;
	d->base = mmap(NULL, len + 2 * GUARD, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(d->base != MAP_FAILED);
	d->mem = d->base + GUARD;
	memset(d->base, CANARY, GUARD);
	memset(d->mem + len, CANARY, GUARD);
	if (fill)
		memset(d->mem, fill, len);
}

static void dest_check(struct dest *d, const unsigned char *want, const char *what)
{
	for (size_t i = 0; i < GUARD; i++)
		if (d->base[i] != CANARY || d->mem[d->len + i] != CANARY)
			fail_msg("%s: the load wrote outside its destination", what);
	for (size_t i = 0; i < d->len; i++)
		if (d->mem[i] != want[i])
			fail_msg("%s: byte %zu (page %zu) is 0x%02x, source has 0x%02x", what, i,
				 i / 4096, d->mem[i], want[i]);
}

static void dest_free(struct dest *d)
{
	munmap(d->base, d->len + 2 * GUARD);
}

/* 0.1 mappings, deliberately in the reverse of the file's block order. */
static void set_maps(fvm_mapping maps[2], struct dest *a, struct dest *b)
{
	maps[0] = (fvm_mapping){ "vga.vram", b->mem, B_PAGES * B_PAGE, B_PAGE };
	maps[1] = (fvm_mapping){ "pc.ram", a->mem, A_PAGES * A_PAGE, 0 };
}

/* ------------------------------------------------------------ tests */

/* Every call below goes to the symbol a 0.1 binary is bound to. */
static void test_bound_to_0_1_versions(void **state)
{
	static const struct {
		const char *name;
		void *addr;
	} fn[] = {
		{ "fvm_load", (void *)fvm_load },
		{ "fvm_reader_info", (void *)fvm_reader_info },
		{ "fvm_reader_block", (void *)fvm_reader_block },
		{ "fvm_reader_run", (void *)fvm_reader_run },
		{ "fvm_reader_devstate", (void *)fvm_reader_devstate },
		{ "fvm_reader_open", (void *)fvm_reader_open },
		{ "fvm_writer_open_path", (void *)fvm_writer_open_path },
		{ "fvm_verify", (void *)fvm_verify },
	};
	Dl_info where;

	(void)state;
	assert_true(dladdr((void *)fvm_load, &where));
	printf("# libfastvm %s (%u) from %s\n", fvm_version_string(), fvm_version(),
	       where.dli_fname);
	assert_int_equal(fvm_version() / 10000, 0); /* same SONAME: major 0 */
	assert_true(fvm_version() >= 100);
	for (size_t i = 0; i < sizeof(fn) / sizeof(fn[0]); i++) {
		void *v0 = dlvsym(RTLD_DEFAULT, fn[i].name, "LIBFASTVM_0");
		void *v02 = dlvsym(RTLD_DEFAULT, fn[i].name, "LIBFASTVM_0.2");

		if (!v0)
			fail_msg("%s@LIBFASTVM_0 is not in the library", fn[i].name);
		if (v0 != fn[i].addr)
			fail_msg("%s: the program calls %p, not %s@LIBFASTVM_0 (%p)", fn[i].name,
				 fn[i].addr, fn[i].name, v0);
		printf("# %s -> @LIBFASTVM_0%s\n", fn[i].name,
		       v02 && v02 != v0 ? " (a separate @@LIBFASTVM_0.2 exists)" : "");
	}
}

static void test_errors(void **state)
{
	fvm_reader *r = (fvm_reader *)1;
	char missing[sizeof(dir) + 32];

	(void)state;
	assert_string_equal(fvm_strerror(FVM_OK), fvm_strerror(0));
	assert_true(strlen(fvm_strerror(FVM_ECHECKSUM)) > 0);
	snprintf(missing, sizeof(missing), "%s/missing.fvm", dir);
	assert_int_equal(fvm_reader_open(&r, missing), FVM_EIO);
	assert_true(strlen(fvm_error_detail()) > 0);
	assert_int_equal(fvm_reader_info(NULL, NULL), FVM_EINVAL);
}

static void check_file_info(const fvm_file_info *fi, int streamed)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(fi->version_major, 1);
	assert_int_equal(fi->file_size, streamed ? 0 : (uint64_t)st.st_size);
	assert_int_equal(fi->payload_bytes, payload);
	assert_int_equal(fi->data_pages, data_pages);
	assert_int_equal(fi->zero_pages, zero_pages);
	assert_true(fi->data_runs >= 5); /* [0,4) [8,10) [15] of A, [1,3) [7] of B */
	assert_true(fi->zero_runs >= 4);
	assert_true(fi->data_runs <= data_pages && fi->zero_runs <= zero_pages);
	assert_int_equal(fi->block_count, 2);
	assert_int_equal(fi->devstate_count, N_DEVS);
	assert_int_equal(fi->meta_count, N_META);
	assert_int_equal(fi->streamed, streamed);
}

static void check_block_info(const fvm_reader *r, const fvm_file_info *fi)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_block_info) + TAIL];
	uint64_t runs[2] = { 0, 0 };

	for (int f = 0; f < 2; f++)
		for (uint32_t i = 0; i < 2; i++) {
			fvm_block_info *bi = prepare(buf, sizeof(*bi), fills[f]);
			const char *kinds = i ? b_data : a_data;
			unsigned n = i ? B_PAGES : A_PAGES;
			uint32_t id = 99;

			assert_int_equal(fvm_reader_block(r, i, bi), 0);
			check_tail(buf, sizeof(*bi), "fvm_reader_block");
			assert_string_equal(bi->name, i ? "vga.vram" : "pc.ram");
			assert_int_equal(bi->page_size, i ? B_PAGE : A_PAGE);
			assert_int_equal(bi->length, (uint64_t)n * bi->page_size);
			assert_int_equal(bi->data_pages, count_kind(kinds, n, 'D'));
			assert_int_equal(bi->zero_pages, count_kind(kinds, n, '_'));
			assert_true(bi->data_runs >= 1 && bi->zero_runs >= 1);
			if (f == 0) {
				runs[0] += bi->data_runs;
				runs[1] += bi->zero_runs;
			}
			assert_int_equal(fvm_reader_find_block(r, bi->name, &id), 0);
			assert_int_equal(id, i);
		}
	assert_int_equal(runs[0], fi->data_runs);
	assert_int_equal(runs[1], fi->zero_runs);
	prepare(buf, sizeof(fvm_block_info), CANARY);
	assert_int_equal(fvm_reader_block(r, 2, (fvm_block_info *)buf), FVM_ENOTFOUND);
	check_tail(buf, sizeof(fvm_block_info), "fvm_reader_block (no such block)");
}

/* The runs cover each block page by page with the source's kinds. */
static void check_runs(const fvm_reader *r, const fvm_file_info *fi, const unsigned char *file,
		       size_t file_len)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_run_info) + TAIL];
	uint64_t n = fvm_reader_run_count(r);
	char seen[2][A_PAGES + 1];

	assert_int_equal(n, fi->data_runs + fi->zero_runs);
	memset(seen, '?', sizeof(seen));
	for (int f = 0; f < 2; f++)
		for (uint64_t i = 0; i < n; i++) {
			fvm_run_info *ri = prepare(buf, sizeof(*ri), fills[f]);
			const char *kinds;
			unsigned pages;
			uint64_t ps;

			assert_int_equal(fvm_reader_run(r, i, ri), 0);
			check_tail(buf, sizeof(*ri), "fvm_reader_run");
			assert_true(ri->block_id < 2);
			assert_true(ri->kind == FVM_RUN_DATA || ri->kind == FVM_RUN_ZERO);
			kinds = ri->block_id ? b_data : a_data;
			pages = ri->block_id ? B_PAGES : A_PAGES;
			ps = ri->block_id ? B_PAGE : A_PAGE;
			assert_true(ri->page_count >= 1);
			assert_true(ri->first_page + ri->page_count <= pages);
			for (uint64_t p = ri->first_page; p < ri->first_page + ri->page_count; p++) {
				if (kinds[p] != (ri->kind == FVM_RUN_DATA ? 'D' : '_'))
					fail_msg("run %llu: page %llu of block %u listed as %s",
						 (unsigned long long)i, (unsigned long long)p,
						 ri->block_id, ri->kind ? "data" : "zero");
				if (f == 0) {
					if (seen[ri->block_id][p] != '?')
						fail_msg("page %llu of block %u in two runs",
							 (unsigned long long)p, ri->block_id);
					seen[ri->block_id][p] = kinds[p];
				}
			}
			if (ri->kind == FVM_RUN_ZERO) {
				assert_int_equal(ri->file_offset, 0);
			} else if (file) {
				const unsigned char *want = (ri->block_id ? src_b : src_a) +
							    ri->first_page * ps;

				assert_int_equal(ri->file_offset % 4096, 0);
				assert_true(ri->file_offset + ri->page_count * ps <= file_len);
				assert_memory_equal(file + ri->file_offset, want, ri->page_count * ps);
			}
		}
	assert_memory_equal(seen[0], a_data, A_PAGES);
	assert_memory_equal(seen[1], b_data, B_PAGES);
	prepare(buf, sizeof(fvm_run_info), CANARY);
	assert_int_equal(fvm_reader_run(r, n, (fvm_run_info *)buf), FVM_ENOTFOUND);
	check_tail(buf, sizeof(fvm_run_info), "fvm_reader_run (no such run)");
}

static void check_devstate(fvm_reader *r, const unsigned char *file, size_t file_len)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_devstate_info) + TAIL];

	for (int f = 0; f < 2; f++)
		for (uint32_t i = 0; i < N_DEVS; i++) {
			fvm_devstate_info *di = prepare(buf, sizeof(*di), fills[f]);
			unsigned char *data = malloc(dev_len[i] + 1);

			assert_non_null(data);
			assert_int_equal(fvm_reader_devstate(r, i, di), 0);
			check_tail(buf, sizeof(*di), "fvm_reader_devstate");
			assert_string_equal(di->name, dev_name[i]);
			assert_int_equal(di->size, dev_len[i]);
			if (!file && f == 0)
				printf("# stream: section %u file_offset %llu\n", i,
				       (unsigned long long)di->file_offset);
			if (file) {
				assert_true(di->file_offset > 0);
				assert_true(di->file_offset + di->size <= file_len);
				assert_memory_equal(file + di->file_offset, src_dev[i], dev_len[i]);
			}
			data[dev_len[i]] = CANARY;
			assert_int_equal(fvm_reader_devstate_read(r, i, data, dev_len[i]), 0);
			assert_memory_equal(data, src_dev[i], dev_len[i]);
			assert_int_equal(data[dev_len[i]], CANARY);
			free(data);
		}
	prepare(buf, sizeof(fvm_devstate_info), CANARY);
	assert_int_equal(fvm_reader_devstate(r, N_DEVS, (fvm_devstate_info *)buf), FVM_ENOTFOUND);
	check_tail(buf, sizeof(fvm_devstate_info), "fvm_reader_devstate (no such section)");
}

static void check_meta(const fvm_reader *r)
{
	for (uint32_t i = 0; i < N_META; i++) {
		const char *k = NULL, *v = NULL;

		assert_int_equal(fvm_reader_meta(r, i, &k, &v), 0);
		assert_string_equal(k, meta[i][0]);
		assert_string_equal(v, meta[i][1]);
		assert_string_equal(fvm_reader_meta_get(r, meta[i][0]), meta[i][1]);
	}
	assert_null(fvm_reader_meta_get(r, "no-such-key"));
}

static void test_listing(void **state)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_file_info) + TAIL];
	fvm_reader *r = open_file();
	unsigned char *file;
	size_t len;

	(void)state;
	assert_true(write_progress_calls > 0);
	assert_int_equal(read_file(path, &file, &len), 0);
	for (int f = 0; f < 2; f++) {
		fvm_file_info *fi = prepare(buf, sizeof(*fi), fills[f]);

		assert_int_equal(fvm_reader_info(r, fi), 0);
		check_tail(buf, sizeof(*fi), "fvm_reader_info");
		check_file_info(fi, 0);
	}
	check_block_info(r, (fvm_file_info *)buf);
	check_runs(r, (fvm_file_info *)buf, file, len);
	check_devstate(r, file, len);
	check_meta(r);
	free(file);
	fvm_reader_free(r);
}

static void test_read_pages(void **state)
{
	fvm_reader *r = open_file();
	unsigned char *buf = malloc(4 * B_PAGE);

	(void)state;
	assert_non_null(buf);
	assert_int_equal(fvm_reader_read_pages(r, 0, 7, 4, buf), 0);
	assert_memory_equal(buf, src_a + 7 * A_PAGE, 4 * A_PAGE);
	assert_int_equal(fvm_reader_read_pages(r, 1, 0, 4, buf), 0);
	assert_memory_equal(buf, src_b, 4 * B_PAGE);
	free(buf);
	fvm_reader_free(r);
}

struct progress {
	unsigned calls;
	uint64_t done, total;
};

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;

	assert_non_null(p); /* progress_ctx was read at its 0.1 offset */
	assert_true(done <= total || total == 0); /* 0: a stream's size is unknown */
	p->calls++;
	p->done = done;
	p->total = total;
	return 0;
}

/* A 0.1 fvm_load_stats followed by canaries, as an old caller passes it. */
struct stats_buf {
	_Alignas(16) unsigned char b[sizeof(fvm_load_stats) + TAIL];
};

static fvm_load_stats *stats_prepare(struct stats_buf *s, int fill)
{
	return prepare(s->b, sizeof(fvm_load_stats), fill);
}

static void check_stats(struct stats_buf *s, uint64_t want_zero_bytes, const char *what)
{
	const fvm_load_stats *st = (const fvm_load_stats *)s->b;

	check_tail(s->b, sizeof(fvm_load_stats), what);
	printf("# %s: backend %d %s%s%s, direct %d, %llu bytes read in %llu requests, "
	       "%llu extents, %llu zero bytes\n", what, st->backend,
	       st->backend_name ? st->backend_name : "(null)",
	       st->fallback_reason ? ", fallback: " : "",
	       st->fallback_reason ? st->fallback_reason : "", st->direct,
	       (unsigned long long)st->bytes_read, (unsigned long long)st->requests,
	       (unsigned long long)st->extents, (unsigned long long)st->zero_bytes);
	assert_true(st->backend >= FVM_BACKEND_URING && st->backend <= FVM_BACKEND_MMAP);
	assert_non_null(st->backend_name);
	assert_string_equal(st->backend_name, st->backend == FVM_BACKEND_URING ? "io_uring" :
					      st->backend == FVM_BACKEND_PREAD ? "pread" : "mmap");
	assert_true(st->direct == 0 || st->direct == 1);
	assert_true(st->extents >= 5 && st->extents <= payload / 4096);
	assert_int_equal(st->zero_bytes, want_zero_bytes);
	if (st->backend != FVM_BACKEND_MMAP)
		assert_int_equal(st->bytes_read, payload);
	assert_true(st->requests <= data_pages * (B_PAGE / 4096));
}

struct load_case {
	const char *what;
	int with_opts;     /* else opts NULL */
	uint32_t flags;
	int backend, zero_policy, dest_fill;
	unsigned queue_depth, willneed_window;
	uint64_t chunk_bytes;
	int with_stats;
};

static void run_load(fvm_reader *r, const struct load_case *c)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	struct progress pr = { 0, 0, 0 };
	struct stats_buf sb;
	struct dest a, b;
	fvm_mapping maps[2];
	int rc;

	dest_alloc(&a, A_PAGES * A_PAGE, c->dest_fill);
	dest_alloc(&b, B_PAGES * B_PAGE, c->dest_fill);
	set_maps(maps, &a, &b);
	o.flags = c->flags;
	o.backend = c->backend;
	o.zero_policy = c->zero_policy;
	o.queue_depth = c->queue_depth;
	o.chunk_bytes = c->chunk_bytes;
	o.willneed_window = c->willneed_window;
	o.progress = on_progress;
	o.progress_ctx = &pr;
	rc = fvm_load(r, maps, 2, c->with_opts ? &o : NULL,
		      c->with_stats ? stats_prepare(&sb, CANARY) : NULL);
	if (rc)
		fail_msg("%s: fvm_load: %d %s", c->what, rc, fvm_error_detail());
	dest_check(&a, src_a, c->what);
	dest_check(&b, src_b, c->what);
	if (c->with_opts) {
		assert_true(pr.calls > 0);
		assert_int_equal(pr.done, pr.total);
	}
	if (c->with_stats) {
		const fvm_load_stats *st = (const fvm_load_stats *)sb.b;

		check_stats(&sb, c->with_opts && c->zero_policy != FVM_ZERO_LEAVE ? zero_bytes : 0,
			    c->what);
		/* chunk_bytes was read from its 0.1 offset: one read per page */
		if (c->chunk_bytes == 4096 && st->backend != FVM_BACKEND_MMAP)
			assert_int_equal(st->requests, payload / 4096);
		if (c->backend == FVM_BACKEND_PREAD)
			assert_int_equal(st->backend, FVM_BACKEND_PREAD);
		if (c->backend == FVM_BACKEND_MMAP && st->backend != FVM_BACKEND_MMAP)
			assert_non_null(st->fallback_reason);
		if (c->backend == FVM_BACKEND_MMAP && (c->flags & FVM_LOAD_LAZY) &&
		    st->backend == FVM_BACKEND_MMAP)
			assert_int_equal(st->bytes_read, 0);
	}
	dest_free(&a);
	dest_free(&b);
}

static const struct load_case load_cases[] = {
	{ "opts NULL, stats NULL", 0, 0, 0, 0, 0, 0, 0, 0, 0 },
	{ "opts NULL", 0, 0, 0, 0, 0, 0, 0, 0, 1 },
	{ "default options", 1, 0, FVM_BACKEND_AUTO, FVM_ZERO_LEAVE, 0, 0, 0, 0, 1 },
	{ "io_uring, INLINE|VERIFY, qd 2, 4 KiB reads, willneed 1, memset zeros", 1,
	  FVM_LOAD_INLINE | FVM_LOAD_VERIFY, FVM_BACKEND_URING, FVM_ZERO_MEMSET, 0xee, 2, 1,
	  4096, 1 },
	{ "io_uring, qd 1, 8 KiB reads, willneed 3, DONTNEED zeros", 1, 0, FVM_BACKEND_URING,
	  FVM_ZERO_DONTNEED, 0xee, 1, 3, 8192, 1 },
	{ "pread, VERIFY, 4 KiB reads, memset zeros", 1, FVM_LOAD_VERIFY, FVM_BACKEND_PREAD,
	  FVM_ZERO_MEMSET, 0x77, 3, 0, 4096, 1 },
	/* 0.1 took any depth and clamped the window to 64 */
	{ "pread, qd 1000, willneed 1000", 1, 0, FVM_BACKEND_PREAD, FVM_ZERO_LEAVE, 0, 1000,
	  1000, 0, 1 },
	{ "mmap", 1, 0, FVM_BACKEND_MMAP, FVM_ZERO_LEAVE, 0, 0, 0, 0, 1 },
	{ "mmap, LAZY", 1, FVM_LOAD_LAZY, FVM_BACKEND_MMAP, FVM_ZERO_LEAVE, 0, 0, 0, 0, 1 },
	{ "mmap, DONTNEED zeros, INLINE", 1, FVM_LOAD_INLINE, FVM_BACKEND_MMAP,
	  FVM_ZERO_DONTNEED, 0x33, 4, 0, 0, 1 },
};

static void test_load(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
		fvm_reader *r = open_file();

		run_load(r, &load_cases[i]);
		fvm_reader_free(r);
	}
}

/* The mappings' lengths and page sizes are read at their 0.1 offsets. */
static void test_load_mapping_checks(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	struct stats_buf sb;
	struct dest a, b;
	fvm_mapping maps[2];
	fvm_reader *r = open_file();

	(void)state;
	dest_alloc(&a, A_PAGES * A_PAGE, 0);
	dest_alloc(&b, B_PAGES * B_PAGE, 0);
	set_maps(maps, &a, &b);
	maps[1].length -= A_PAGE;
	assert_int_equal(fvm_load(r, maps, 2, NULL, NULL), FVM_EMAPPING);
	assert_true(strlen(fvm_error_detail()) > 0);
	set_maps(maps, &a, &b);
	maps[0].page_size = A_PAGE; /* vga.vram has 8 KiB pages */
	assert_int_equal(fvm_load(r, maps, 2, NULL, NULL), FVM_EMAPPING);
	set_maps(maps, &a, &b);
	assert_true(fvm_load(r, maps, 1, NULL, NULL) < 0); /* pc.ram has no mapping */
	/* PARTIAL: only vga.vram, the second element read at stride 32 */
	maps[0] = maps[1];
	maps[1] = (fvm_mapping){ "vga.vram", b.mem, B_PAGES * B_PAGE, B_PAGE };
	maps[0].name = "not-in-the-file";
	o.flags = FVM_LOAD_PARTIAL;
	assert_true(fvm_load(r, maps, 2, &o, NULL) < 0); /* unknown name is an error */
	maps[0] = maps[1];
	assert_int_equal(fvm_load(r, maps, 1, &o, stats_prepare(&sb, 0)), 0);
	check_tail(sb.b, sizeof(fvm_load_stats), "fvm_load (PARTIAL)");
	dest_check(&b, src_b, "PARTIAL load of vga.vram");
	for (size_t i = 0; i < a.len; i++)
		assert_int_equal(a.mem[i], 0);
	/* 0.1 refused an options struct smaller than its own */
	o.size = sizeof(o) - 8;
	o.flags = 0;
	assert_int_equal(fvm_load(r, maps, 1, &o, NULL), FVM_EINVAL);
	dest_free(&a);
	dest_free(&b);
	fvm_reader_free(r);
}

static void *stream_writer(void *arg)
{
	int fd = *(int *)arg;
	fvm_writer *w = NULL;

	if (fvm_writer_open_fd(&w, fd, NULL))
		fail_msg("fvm_writer_open_fd: %s", fvm_error_detail());
	write_snapshot(w);
	close(fd);
	return NULL;
}

static void test_stream(void **state)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_file_info) + TAIL];
	fvm_file_info *fi = prepare(buf, sizeof(*fi), CANARY);
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	struct progress pr = { 0, 0, 0 };
	struct stats_buf sb;
	struct dest a, b;
	fvm_mapping maps[2];
	fvm_reader *r = NULL;
	pthread_t t;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pthread_create(&t, NULL, stream_writer, &p[1]), 0);
	if (fvm_reader_open_stream(&r, p[0], "pipe"))
		fail_msg("fvm_reader_open_stream: %s", fvm_error_detail());
	assert_int_equal(fvm_reader_info(r, fi), 0);
	check_tail(buf, sizeof(*fi), "fvm_reader_info (stream)");
	assert_int_equal(fi->streamed, 1);
	assert_int_equal(fi->file_size, 0);
	assert_int_equal(fi->block_count, 2);
	dest_alloc(&a, A_PAGES * A_PAGE, 0x11);
	dest_alloc(&b, B_PAGES * B_PAGE, 0x11);
	set_maps(maps, &a, &b);
	o.flags = FVM_LOAD_VERIFY | FVM_LOAD_INLINE;
	o.zero_policy = FVM_ZERO_MEMSET;
	o.queue_depth = 2;
	o.chunk_bytes = 8192;
	o.willneed_window = 2;
	o.progress = on_progress;
	o.progress_ctx = &pr;
	if (fvm_load(r, maps, 2, &o, stats_prepare(&sb, CANARY)))
		fail_msg("fvm_load (stream): %s", fvm_error_detail());
	assert_int_equal(pthread_join(t, NULL), 0);
	close(p[0]);
	check_tail(sb.b, sizeof(fvm_load_stats), "fvm_load (stream)");
	assert_true(pr.calls > 0);
	dest_check(&a, src_a, "stream load of pc.ram");
	dest_check(&b, src_b, "stream load of vga.vram");
	fi = prepare(buf, sizeof(*fi), 0);
	assert_int_equal(fvm_reader_info(r, fi), 0);
	check_tail(buf, sizeof(*fi), "fvm_reader_info (stream, after the load)");
	check_file_info(fi, 1);
	check_block_info(r, fi);
	check_runs(r, fi, NULL, 0);
	check_devstate(r, NULL, 0);
	check_meta(r);
	dest_free(&a);
	dest_free(&b);
	fvm_reader_free(r);
}

static void test_verify(void **state)
{
	struct progress pr = { 0, 0, 0 };
	fvm_reader *r = open_file();

	(void)state;
	if (fvm_verify(r, on_progress, &pr))
		fail_msg("fvm_verify: %s", fvm_error_detail());
	assert_true(pr.calls > 0);
	assert_int_equal(pr.done, pr.total);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);
}

/* One byte of page data changed: the open succeeds, verify and a VERIFY load fail. */
static void test_corrupt(void **state)
{
	_Alignas(16) unsigned char buf[sizeof(fvm_run_info) + TAIL];
	fvm_run_info *ri = prepare(buf, sizeof(*ri), CANARY);
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	unsigned char *file;
	struct dest a, b;
	fvm_mapping maps[2];
	fvm_reader *r = open_file();
	size_t len;
	int rc;

	(void)state;
	assert_int_equal(read_file(path, &file, &len), 0);
	for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
		assert_int_equal(fvm_reader_run(r, i, ri), 0);
		if (ri->kind == FVM_RUN_DATA)
			break;
	}
	assert_int_equal(ri->kind, FVM_RUN_DATA);
	fvm_reader_free(r);
	file[ri->file_offset + 100] ^= 0x01;
	assert_int_equal(write_file(bad_path, file, len), 0);

	assert_int_equal(fvm_reader_open(&r, bad_path), 0);
	rc = fvm_verify(r, NULL, NULL);
	printf("# corrupted payload: fvm_verify %d (%s): %s\n", rc, fvm_strerror(rc),
	       fvm_error_detail());
	assert_int_equal(rc, FVM_ECHECKSUM);
	assert_true(strlen(fvm_error_detail()) > 0);
	dest_alloc(&a, A_PAGES * A_PAGE, 0);
	dest_alloc(&b, B_PAGES * B_PAGE, 0);
	set_maps(maps, &a, &b);
	o.flags = FVM_LOAD_VERIFY;
	o.backend = FVM_BACKEND_PREAD;
	assert_int_equal(fvm_load(r, maps, 2, &o, NULL), FVM_ECHECKSUM);
	assert_true(strlen(fvm_error_detail()) > 0);
	fvm_reader_free(r);

	/* and a file that is not a snapshot at all */
	file[ri->file_offset + 100] ^= 0x01;
	file[0] ^= 0xff;
	assert_int_equal(write_file(bad_path, file, len), 0);
	r = NULL;
	rc = fvm_reader_open(&r, bad_path);
	printf("# corrupted magic: fvm_reader_open %d (%s): %s\n", rc, fvm_strerror(rc),
	       fvm_error_detail());
	assert_int_equal(rc, FVM_EMAGIC);
	assert_true(strlen(fvm_error_detail()) > 0);
	dest_free(&a);
	dest_free(&b);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bound_to_0_1_versions),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_listing),
		cmocka_unit_test(test_read_pages),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_load_mapping_checks),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_corrupt),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
