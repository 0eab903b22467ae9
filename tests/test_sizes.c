/*
 * Hostile declared sizes (issue 10, "Hostile files"): inputs whose sizes
 * would need huge allocations, or per-page work, if believed. Each case
 * runs in a child process that reports its error code, detail and the
 * growth of its peak resident set (getrusage ru_maxrss after the case less
 * before it; the child starts from the parent's resident set) and of its
 * peak address space (VmPeak). The bounds: MEM_BOUND_MIB (64 MiB; 128 MiB
 * under ASan, whose quarantine this test turns off) of resident memory for
 * every case, however large the size it declares, and VM_BOUND_MIB (1 GiB)
 * of address space for every case but the two that map a 1 TiB
 * destination themselves:
 *  - a block of 1 TiB (2^40 bytes, 2^28 pages), plain and zstd-compressed,
 *    two data pages in it: opened, listed, verified, read_pages, loaded
 *    with pread, io_uring and mmap into a 1 TiB MAP_NORESERVE mapping and
 *    through a stream; a block of 2^48 bytes (the format's limit) opened
 *    and verified;
 *  - an index claiming 2^32 extents (counts that do not fill its body,
 *    and a body_len of 24 + 40 x 2^32 bytes), seekable and as a stream;
 *  - a compressed index claiming 2^40 frames, likewise;
 *  - 65536 blocks named by 255-byte names (the format's limits) accepted,
 *    65537 refused (R26), seekable and as a stream; a migration stream
 *    whose MEM_SIZE list names 65536 blocks by 255-byte idstrs (refused
 *    after 4096, the tool's limit), and one with 65536 page records each
 *    naming its block by a 255-byte idstr (accepted);
 *  - a qcow2 header claiming an L1 table of 2^31 entries (refused, QEMU's
 *    32 MiB limit) and a snapshot table of 65536 entries (accepted, QEMU's
 *    limit) and of 65537 (refused).
 * Uses the public API and the tool's readers (tools/stock).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "qcow2.h"
#include "qcow2_gen.h"
#include "source.h"
#include "stream.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define FVM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FVM_TEST_ASAN 1
#endif
#endif

#ifdef FVM_TEST_ASAN
/*
 * ASan keeps freed memory in a quarantine (256 MiB) and adds redzones and
 * shadow: with the quarantine off, twice the plain build's bound holds.
 * ASAN_OPTIONS from the environment still apply on top of this.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "quarantine_size_mb=0";
}
#define MEM_BOUND_MIB 128
#else
#define MEM_BOUND_MIB 64
#endif
/* address space (VmPeak): threads' stacks and the codecs' contexts fit */
#define VM_BOUND_MIB 1024
#define TIB (1ull << 40)
#define PAGE 4096u

/* ------------------------------------------------------------ helpers */

static uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;

	crc = ~crc;
	while (n--) {
		crc ^= *b++;
		for (int k = 0; k < 8; k++)
			crc = crc >> 1 ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void st64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void st32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static long maxrss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* VmPeak of /proc/self/status, KiB (0 when it cannot be read) */
static long vmpeak_kib(void)
{
	char line[256];
	long v = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPeak: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

struct result {
	int rc;
	long grew_kib, vm_grew_kib;
	char detail[400];
};

/*
 * Run fn in a child; its return code, fvm_error_detail() and peak RSS
 * growth come back through a pipe. A crash in the child fails the test.
 */
static struct result bounded_vm(int (*fn)(void *), void *arg, const char *what, int check_vm)
{
	struct result res = { 0 };
	struct timespec t0, t1;
	int fds[2], status;
	pid_t pid;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		long before = maxrss_kib(), vm_before = vmpeak_kib();

		close(fds[0]);
		res.rc = fn(arg);
		res.grew_kib = maxrss_kib() - before;
		res.vm_grew_kib = vmpeak_kib() - vm_before;
		snprintf(res.detail, sizeof(res.detail), "%s", res.rc ? fvm_error_detail() : "");
		if (write(fds[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], &res, sizeof(res)) != (ssize_t)sizeof(res))
		res.rc = 1000;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || res.rc == 1000)
		fail_msg("%s: the child died (status 0x%x)", what, status);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("  %-52s rc %3d  peak RSS +%6ld KiB  VmPeak +%8ld KiB  %.2f s  %s\n", what,
	       res.rc, res.grew_kib, res.vm_grew_kib,
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, res.detail);
	if (res.grew_kib > MEM_BOUND_MIB * 1024l)
		fail_msg("%s: peak RSS grew by %ld KiB, over the %d MiB bound", what, res.grew_kib,
			 MEM_BOUND_MIB);
	if (check_vm && res.vm_grew_kib > VM_BOUND_MIB * 1024l)
		fail_msg("%s: peak address space grew by %ld KiB, over the %d MiB bound", what,
			 res.vm_grew_kib, VM_BOUND_MIB);
	return res;
}

static struct result bounded(int (*fn)(void *), void *arg, const char *what)
{
	return bounded_vm(fn, arg, what, 1);
}

static void expect(const struct result *r, int rc, const char *word)
{
	assert_int_equal(r->rc, rc);
	if (word && !strstr(r->detail, word))
		fail_msg("detail \"%s\" does not name \"%s\"", r->detail, word);
}

/* ------------------------------------------------------------ 1 TiB blocks */

struct tib {
	const char *path;
	uint64_t length, page_size;
	uint8_t a[PAGE], b[PAGE];  /* first and last page */
};

static void write_big(struct tib *t, int codec)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t id;
	uint64_t pages = t->length / t->page_size;

	o.flags = FVM_WRITE_NO_FSYNC;
	o.codec = (uint32_t)codec;
	assert_int_equal(fvm_writer_open_path(&w, t->path, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", t->length, t->page_size, &id), 0);
	assert_int_equal(fvm_writer_put_pages(w, id, 0, 1, t->a), 0);
	assert_int_equal(fvm_writer_put_pages(w, id, pages - 1, 1, t->b), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

static int load_into(fvm_reader *r, uint8_t *mem, uint64_t len, int backend)
{
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;

	m.name = "pc.ram";
	m.addr = mem;
	m.length = len;
	m.flags = FVM_MAP_ZERO;
	o.backend = backend;
	o.zero_policy = FVM_ZERO_LEAVE;
	return fvm_load(r, &m, 1, &o, NULL);
}

/* Open, list, verify, read the last page, load three ways, stream it. */
static int tib_case(void *arg)
{
	const struct tib *t = arg;
	static const int backends[] = { FVM_BACKEND_PREAD, FVM_BACKEND_URING, FVM_BACKEND_MMAP };
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	fvm_reader *r;
	uint8_t *mem, page[PAGE];
	int rc, fd;

	if ((rc = fvm_reader_open(&r, t->path)))
		return rc;
	if ((rc = fvm_reader_info(r, &fi)) || (rc = fvm_reader_block(r, 0, &bi)))
		return rc;
	if (bi.length != t->length || fi.data_pages != 2)
		return fvm_reader_free(r), -100;
	if ((rc = fvm_verify(r, NULL, NULL)) ||
	    (rc = fvm_reader_read_pages(r, 0, t->length / PAGE - 1, 1, page)))
		return rc;
	if (memcmp(page, t->b, PAGE))
		return -101;
	mem = mmap(NULL, t->length, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		return -102; /* no 1 TiB of address space: reported by the caller */
	for (size_t k = 0; k < sizeof(backends) / sizeof(backends[0]); k++) {
		rc = load_into(r, mem, t->length, backends[k]);
		if (rc == FVM_EUNSUPPORTED && backends[k] == FVM_BACKEND_MMAP && fi.incompat_features & 2)
			continue; /* compressed runs cannot be mapped */
		if (rc)
			return rc;
		if (memcmp(mem, t->a, PAGE) || memcmp(mem + t->length - PAGE, t->b, PAGE))
			return -103;
		/* give the two pages back so the next load starts from zero */
		madvise(mem, PAGE, MADV_DONTNEED);
		madvise(mem + t->length - PAGE, PAGE, MADV_DONTNEED);
	}
	fvm_reader_free(r);
	/* a stream of it */
	fd = open(t->path, O_RDONLY);
	if (fd < 0)
		return -104;
	if ((rc = fvm_reader_open_stream(&r, fd, t->path)) ||
	    (rc = load_into(r, mem, t->length, FVM_BACKEND_AUTO)))
		return rc;
	if (memcmp(mem, t->a, PAGE) || memcmp(mem + t->length - PAGE, t->b, PAGE))
		return -105;
	fvm_reader_free(r);
	close(fd);
	munmap(mem, t->length);
	return 0;
}

static int open_verify_case(void *arg)
{
	fvm_reader *r;
	int rc;

	if ((rc = fvm_reader_open(&r, arg)))
		return rc;
	rc = fvm_verify(r, NULL, NULL);
	fvm_reader_free(r);
	return rc;
}

static void test_tib_block(void **state)
{
	struct tib t = { .path = tu_path("tib.fvm"), .length = TIB, .page_size = PAGE };
	struct result res;

	(void)state;
	memset(t.a, 0x11, PAGE);
	memset(t.b, 0x22, PAGE);
	write_big(&t, FVM_CODEC_NONE);
	/* the case maps 1 TiB itself: its address space is not bounded */
	res = bounded_vm(tib_case, &t, "1 TiB block, plain", 0);
	if (res.rc == -102)
		skip();
	expect(&res, 0, NULL);
	if (fvm_codec_available(FVM_CODEC_ZSTD)) {
		t.path = tu_path("tib-zstd.fvm");
		write_big(&t, FVM_CODEC_ZSTD);
		res = bounded_vm(tib_case, &t, "1 TiB block, zstd frames", 0);
		expect(&res, 0, NULL);
	}
	/* the format's largest block: 2^48 bytes; no mapping that large here */
	t.path = tu_path("256tib.fvm");
	t.length = 1ull << 48;
	write_big(&t, FVM_CODEC_NONE);
	res = bounded(open_verify_case, (void *)t.path, "2^48-byte block: open, verify");
	expect(&res, 0, NULL);
}

/* ------------------------------------------------------------ indexes */

struct file {
	uint8_t *b;
	size_t len;
	uint64_t index_off;
};

static void small_file(struct file *f, const char *path, int codec)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t id;
	static uint8_t pages[64 * PAGE];

	memset(pages, 0x33, 4 * PAGE); /* 4 data pages, then zeros */
	memset(pages + PAGE, 0, PAGE);
	o.flags = FVM_WRITE_NO_FSYNC;
	o.codec = (uint32_t)codec;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", 64 * PAGE, PAGE, &id), 0);
	assert_int_equal(fvm_writer_write_block(w, id, pages), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	f->b = tu_read_file(path, &f->len);
	assert_non_null(f->b);
	f->index_off = ld64(f->b + f->len - 32);
}

/* Record CRC (FORMAT.md 4): header bytes 0..3, 8..15, then the body. */
static void reseal_index(struct file *f)
{
	uint8_t *h = f->b + f->index_off;
	uint64_t body_len = ld64(h + 8);
	uint32_t c = crc32c(crc32c(0, h, 4), h + 8, 8);

	st32(h + 4, crc32c(c, h + 16, body_len));
}

struct open_arg {
	const char *path;
	int stream;
};

/* Open (seekable or as a stream), then verify and load what opened. */
static int open_case(void *arg)
{
	const struct open_arg *a = arg;
	fvm_reader *r;
	int rc, fd = open(a->path, O_RDONLY);

	if (fd < 0)
		return -100;
	rc = a->stream ? fvm_reader_open_stream(&r, fd, a->path) : fvm_reader_open_fd(&r, fd, a->path);
	if (rc == 0) {
		uint8_t *mem = tu_guard_alloc(64 * PAGE, 0);

		rc = load_into(r, mem, 64 * PAGE, FVM_BACKEND_AUTO);
		if (rc == 0 && !a->stream)
			rc = fvm_verify(r, NULL, NULL);
		tu_guard_free(mem, 64 * PAGE);
		fvm_reader_free(r);
	}
	close(fd);
	return rc;
}

static struct result try_both(const struct file *f, const char *name, const char *what,
			      struct result *stream)
{
	char label[128];
	struct open_arg a = { tu_path(name), 0 };
	struct result res;

	assert_int_equal(tu_write_file(a.path, f->b, f->len), 0);
	snprintf(label, sizeof(label), "%s (seekable)", what);
	res = bounded(open_case, &a, label);
	a.stream = 1;
	snprintf(label, sizeof(label), "%s (stream)", what);
	*stream = bounded(open_case, &a, label);
	return res;
}

/* The extent count and the body's length, at the index: (block, meta, devstate counts, 0, extent_count). */
static uint8_t *extent_count_at(struct file *f)
{
	return f->b + f->index_off + 16 + 16;
}

static void test_index_2_32_runs(void **state)
{
	struct file f;
	struct result s, st;
	uint8_t *ec;

	(void)state;
	small_file(&f, tu_path("idx.fvm"), FVM_CODEC_NONE);
	ec = extent_count_at(&f);
	/* the counts claim 2^32 extents; body_len is what the file has */
	st64(ec, 1ull << 32);
	reseal_index(&f);
	s = try_both(&f, "idx-2-32.fvm", "index: extent_count 2^32", &st);
	expect(&s, FVM_ECORRUPT, "INDX record");
	assert_true(st.rc == FVM_ECORRUPT || st.rc == FVM_ERANGE);
	free(f.b);

	/* a body_len that would hold 2^32 extents (160 GiB): not in the file */
	small_file(&f, tu_path("idx.fvm"), FVM_CODEC_NONE);
	ec = extent_count_at(&f);
	st64(ec, 1ull << 32);
	st64(f.b + f.index_off + 8, 24 + 8 + 40ull * (1ull << 32));
	s = try_both(&f, "idx-2-32-body.fvm", "index: body_len for 2^32 extents", &st);
	assert_true(s.rc == FVM_ETRUNCATED || s.rc == FVM_ERANGE || s.rc == FVM_ECORRUPT);
	assert_non_null(strstr(s.detail, "INDX"));
	assert_true(st.rc == FVM_ETRUNCATED || st.rc == FVM_ECORRUPT);
	free(f.b);
}

static void test_index_2_40_frames(void **state)
{
	struct file f;
	struct result s, st;
	uint8_t *ib;
	uint64_t at, nofs;

	(void)state;
	if (!fvm_codec_available(FVM_CODEC_ZSTD))
		skip();
	small_file(&f, tu_path("fr.fvm"), FVM_CODEC_ZSTD);
	ib = f.b + f.index_off + 16;
	nofs = (uint64_t)(ib[0] | ib[1] << 8) + (ib[4] | ib[5] << 8) + (ib[8] | ib[9] << 8);
	at = 24 + 8 * nofs + 40 * ld64(ib + 16);
	assert_true(ld64(ib + at) >= 1); /* frame_count */
	st64(ib + at, 1ull << 40);
	reseal_index(&f);
	s = try_both(&f, "fr-2-40.fvm", "compressed index: frame_count 2^40", &st);
	expect(&s, FVM_ECORRUPT, "INDX record");
	assert_true(st.rc == FVM_ECORRUPT || st.rc == FVM_ERANGE);
	free(f.b);
}

/* ------------------------------------------------------------ 255-byte names */

static void name255(char *out, unsigned i)
{
	memset(out, 'n', 255);
	snprintf(out + 247, 9, "%08x", i);
}

/*
 * A file of n blocks of one page named by 255-byte names, no runs, built
 * record by record (FORMAT.md 3, 4.1, 5, 6): the writer's duplicate-name
 * check is quadratic in the block count, this is not.
 */
static void put_rec(uint8_t *b, size_t *at, uint32_t tag, const uint8_t *body, uint64_t len)
{
	uint8_t *h = b + *at;

	st32(h, tag);
	st64(h + 8, len);
	memcpy(h + 16, body, len);
	st32(h + 4, crc32c(crc32c(crc32c(0, h, 4), h + 8, 8), body, len));
	*at = (*at + 16 + len + 7) & ~(size_t)7;
}

static void names_file(const char *path, uint32_t n)
{
	size_t cap = 64 + (size_t)n * (16 + 272) + 16 + 24 + 8ull * n + 32, at = 64;
	uint8_t *b = calloc(1, cap), body[272];
	char nm[256];
	uint8_t *idx = calloc(1, 24 + 8ull * n);
	uint64_t index_off, index_len;

	assert_true(b && idx);
	memcpy(b, "FVMSNAP\x1a", 8);
	b[8] = 1;  /* version 1.1 */
	b[10] = 1;
	b[12] = 64;
	st32(b + 60, crc32c(0, b, 60));
	for (uint32_t i = 0; i < n; i++) {
		st64(idx + 24 + 8ull * i, at);
		st32(body, i);
		st32(body + 4, 12);
		st64(body + 8, PAGE);
		body[16] = 255;
		name255(nm, i);
		memcpy(body + 17, nm, 255);
		put_rec(b, &at, 0x4b434c42u /* BLCK */, body, 272);
	}
	st32(idx, n);
	index_off = at;
	index_len = 16 + 24 + 8ull * n;
	put_rec(b, &at, 0x58444e49u /* INDX */, idx, 24 + 8ull * n);
	st64(b + at, index_off);
	st64(b + at + 8, index_len);
	st64(b + at + 16, at + 32);
	st32(b + at + 24, crc32c(0, b + at, 24));
	memcpy(b + at + 28, "FVME", 4);
	assert_int_equal(tu_write_file(path, b, at + 32), 0);
	free(idx);
	free(b);
}

static void test_names_255(void **state)
{
	const char *path = tu_path("names.fvm");
	struct result res;
	struct open_arg a = { path, 0 };

	(void)state;
	names_file(path, 65536);
	res = bounded(open_verify_case, (void *)path, "65536 blocks, 255-byte names: open, verify");
	expect(&res, 0, NULL);
	a.stream = 1;
	res = bounded(open_case, &a, "65536 blocks, 255-byte names: stream");
	/* the stream opens; the load maps only one block */
	expect(&res, FVM_EMAPPING, "has no mapping");
	/* one more than the format allows (R26) */
	names_file(path, 65537);
	a.stream = 0;
	res = bounded(open_case, &a, "65537 blocks, 255-byte names (seekable)");
	expect(&res, FVM_ECORRUPT, "65536");
	a.stream = 1;
	res = bounded(open_case, &a, "65537 blocks, 255-byte names (stream)");
	expect(&res, FVM_ECORRUPT, "65536");
}

/* ---- QEMU migration streams (tools/stock/stream.c) */

struct sb {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct sb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void be(struct sb *b, uint64_t v, int n)
{
	uint8_t t[8];

	for (int i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	put(b, t, (size_t)n);
}

static void str8(struct sb *b, const char *s)
{
	be(b, strlen(s), 1);
	put(b, s, strlen(s));
}

static int s_block(void *ctx, uint32_t i, const struct stock_ram_block *b)
{
	(void)ctx, (void)i, (void)b;
	return 0;
}

static int s_pages(void *ctx, uint32_t block, uint64_t first, uint64_t count, const void *d)
{
	(void)block, (void)first, (void)d;
	*(uint64_t *)ctx += count;
	return 0;
}

static int s_zero(void *ctx, uint32_t block, uint64_t first, uint64_t count)
{
	(void)block, (void)first;
	*(uint64_t *)ctx += count;
	return 0;
}

static int stream_case(void *arg)
{
	const struct sb *b = arg;
	uint64_t pages = 0;
	struct stock_stream_ops ops = { &pages, s_block, s_pages, s_zero, NULL };
	struct stock_stream st;
	struct stock_source *src;
	int rc;

	memset(&st, 0, sizeof(st));
	if ((rc = stock_source_open_mem(&src, b->p, b->len, "hostile.mig")))
		return rc;
	rc = stock_stream_parse(src, &ops, &st);
	stock_source_free(src);
	stock_stream_release(&st);
	if (rc == 0 && pages != 65536)
		return -100;
	return rc;
}

/* A stream: nblocks blocks of one page named by 255-byte idstrs, then
 * npages zero-page records, each naming its block in full. */
static struct sb hostile_stream(unsigned nblocks, unsigned npages)
{
	static const char post[] = "\x04\x00\x00\x00\x05\x05timer\x00\x00\x00\x00\x00\x00\x00\x02"
				   "\x11\x22\x33\x44\x7e\x00\x00\x00\x05";
	static const char vmdesc[] = "{\"page_size\": 4096, \"devices\": []}";
	struct sb b = { 0 };
	char name[256];

	be(&b, STOCK_QEVM_MAGIC, 4);
	be(&b, 3, 4);
	be(&b, QEMU_VM_CONFIGURATION, 1);
	be(&b, 13, 4);
	put(&b, "pc-i440fx-7.2", 13);
	be(&b, QEMU_VM_SECTION_START, 1);
	be(&b, 2, 4);
	str8(&b, "ram");
	be(&b, 0, 4);
	be(&b, 4, 4);
	be(&b, (uint64_t)nblocks * PAGE | RAM_SAVE_FLAG_MEM_SIZE, 8);
	for (unsigned i = 0; i < nblocks; i++) {
		name255(name, i);
		str8(&b, name);
		be(&b, PAGE, 8);
	}
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	be(&b, QEMU_VM_SECTION_FOOTER, 1);
	be(&b, 2, 4);
	be(&b, QEMU_VM_SECTION_PART, 1);
	be(&b, 2, 4);
	for (unsigned i = 0; i < npages; i++) {
		name255(name, i % nblocks);
		be(&b, RAM_SAVE_FLAG_ZERO, 8);
		str8(&b, name);
		be(&b, 0, 1);
	}
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	be(&b, QEMU_VM_SECTION_FOOTER, 1);
	be(&b, 2, 4);
	be(&b, QEMU_VM_SECTION_END, 1);
	be(&b, 2, 4);
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	be(&b, QEMU_VM_SECTION_FOOTER, 1);
	be(&b, 2, 4);
	put(&b, post, sizeof(post) - 1);
	be(&b, QEMU_VM_EOF, 1);
	be(&b, QEMU_VM_VMDESCRIPTION, 1);
	be(&b, strlen(vmdesc), 4);
	put(&b, vmdesc, strlen(vmdesc));
	return b;
}

static void test_stream_idstrs(void **state)
{
	struct sb b;
	struct result res;

	(void)state;
	b = hostile_stream(65536, 0);
	res = bounded(stream_case, &b, "stream: MEM_SIZE names 65536 blocks (255-byte idstrs)");
	expect(&res, FVM_ERANGE, "more than 4096 RAM blocks");
	free(b.p);
	/* 256 blocks: the tool finds a record's block by comparing names one
	 * by one, so 4096 of them make this case slow, not large */
	b = hostile_stream(256, 65536);
	res = bounded(stream_case, &b, "stream: 65536 records name their 255-byte idstr");
	expect(&res, 0, NULL);
	free(b.p);
}

/* ------------------------------------------------------------ qcow2 */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static int qcow2_case(void *arg)
{
	struct stock_qcow2 *q;
	int rc = stock_qcow2_open(&q, arg);

	if (rc)
		return rc;
	rc = stock_qcow2_snapshot_count(q) == 65536 ? 0 : -100;
	if (rc == 0)
		rc = stock_qcow2_vmstate_check(q, 65535);
	stock_qcow2_close(q);
	return rc;
}

static void test_qcow2_tables(void **state)
{
	uint8_t vm[3000], *img, *big;
	struct gen_snap snap = { .id = "1", .name = "s1", .vm = vm, .vm_len = sizeof(vm),
				 .extra_size = 24, .date_sec = 1700000000 };
	struct gen_opts o = { .version = 3, .cluster_bits = 16, .disk_size = 1u << 20,
			      .snaps = &snap, .nsnaps = 1 };
	struct gen_layout lay;
	const char *path = tu_path("t.qcow2");
	size_t len, elen, table_off, at;
	struct result res;
	const uint8_t *e;

	(void)state;
	memset(vm, 0x5a, sizeof(vm));
	memcpy(vm, "QEVM\0\0\0\3", 8);
	assert_int_equal(gen_qcow2(&o, &img, &len, &lay), 0);

	/* active L1 of 2^31 entries: 16 GiB of table */
	big = malloc(len);
	memcpy(big, img, len);
	put_be(big + 36, 1u << 31, 4);
	assert_int_equal(tu_write_file(path, big, len), 0);
	res = bounded(qcow2_case, (void *)path, "qcow2: L1 table of 2^31 entries");
	expect(&res, FVM_ECORRUPT, "active L1 table");
	free(big);

	/* 65536 snapshot table entries, all copies of entry 0 but for their ids */
	e = img + lay.snap_entry_off[0];
	elen = 40 + be32(e + 36) + (size_t)(e[12] << 8 | e[13]) + (size_t)(e[14] << 8 | e[15]);
	table_off = (len + 0xffff) & ~(size_t)0xffff;
	big = calloc(1, table_off + 65537 * (elen + 16));
	assert_non_null(big);
	memcpy(big, img, len);
	at = table_off;
	for (unsigned i = 0; i < 65537; i++) {
		char id[16];
		size_t n = (size_t)snprintf(id, sizeof(id), "%u", i + 1);

		memcpy(big + at, e, 40 + be32(e + 36));
		put_be(big + at + 12, n, 2);
		put_be(big + at + 14, 2, 2);
		memcpy(big + at + 40 + be32(e + 36), id, n);
		memcpy(big + at + 40 + be32(e + 36) + n, "sN", 2);
		at = (at + 40 + be32(e + 36) + n + 2 + 7) & ~(size_t)7;
	}
	put_be(big + 60, 65536, 4);
	put_be(big + 64, table_off, 8);
	assert_int_equal(tu_write_file(path, big, at), 0);
	res = bounded(qcow2_case, (void *)path, "qcow2: snapshot table of 65536 entries");
	expect(&res, 0, NULL);
	put_be(big + 60, 65537, 4);
	assert_int_equal(tu_write_file(path, big, at), 0);
	res = bounded(qcow2_case, (void *)path, "qcow2: snapshot table of 65537 entries");
	expect(&res, FVM_ECORRUPT, "65536");
	free(big);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tib_block),
		cmocka_unit_test(test_index_2_32_runs),
		cmocka_unit_test(test_index_2_40_frames),
		cmocka_unit_test(test_names_255),
		cmocka_unit_test(test_stream_idstrs),
		cmocka_unit_test(test_qcow2_tables),
	};
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("peak RSS growth bound per case: %d MiB\n", MEM_BOUND_MIB);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	tu_tmpdir_remove();
	return rc;
}
