/*
 * fvm_prefetch behind a lazy load: a snapshot whose page cache was dropped
 * is mapped lazily, the prefetch reads its runs, and afterwards every data
 * page of the file is resident (mincore) and the memory holds the
 * snapshot's bytes, also while this thread faults the pages in from the
 * other end and when half of the file is cached already; a prefetch freed
 * at once is cancelled cleanly; a compressed file and a stream reader are
 * refused.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 8192u /* 32 MiB */

static char path[256], cpath[256];
static uint8_t *want;

static void write_snap(const char *p, uint32_t codec)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b;

	o.codec = codec;
	assert_int_equal(fvm_writer_open_path(&w, p, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, b, want), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

/* Resident pages of the file's data, by mincore over a mapping of it. */
static uint64_t resident(const char *p, uint64_t *pages)
{
	int fd = open(p, O_RDONLY);
	off_t size = lseek(fd, 0, SEEK_END);
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	size_t n = ((size_t)size + PAGE - 1) / PAGE;
	unsigned char *v = malloc(n);
	uint64_t r = 0;

	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, (size_t)size, v), 0);
	for (size_t i = 0; i < n; i++)
		r += v[i] & 1;
	munmap(m, (size_t)size);
	close(fd);
	free(v);
	*pages = n;
	return r;
}

static void drop_cache(const char *p)
{
	int fd = open(p, O_RDONLY);

	assert_true(fd >= 0);
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* The snapshot mapped lazily over dst, its prefetch started. */
static fvm_reader *lazy_prefetch(uint8_t *dst, fvm_prefetch **p)
{
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_reader *r;

	assert_int_equal(fvm_reader_open(&r, path), 0);
	m.name = "pc.ram";
	m.addr = dst;
	m.length = (uint64_t)PAGES * PAGE;
	m.flags = FVM_MAP_ZERO;
	lo.backend = FVM_BACKEND_MMAP;
	lo.flags = FVM_LOAD_LAZY;
	assert_int_equal(fvm_load(r, &m, 1, &lo, NULL), 0);
	assert_int_equal(fvm_prefetch_start(r, 0, p), 0);
	return r;
}

/*
 * Wait for the prefetch p and check that it read every run: every data page
 * of the file is in the page cache now (index and headers may not be) and
 * dst holds the snapshot's bytes. Returns the data bytes; *after (when
 * not NULL): the resident file pages.
 */
static uint64_t all_read(fvm_prefetch *p, const uint8_t *dst, uint64_t *after)
{
	uint64_t done = 0, total = 0, n, pages;
	int ended = 0;

	assert_int_equal(fvm_prefetch_wait(p), 0);
	assert_int_equal(fvm_prefetch_status(p, &done, &total, &ended), 0);
	assert_true(ended);
	assert_true(total > 0);
	assert_int_equal(done, total);
	pages = resident(path, &n);
	assert_true(pages * PAGE >= total);
	assert_memory_equal(dst, want, (size_t)PAGES * PAGE);
	if (after)
		*after = pages;
	return total;
}

static void test_prefetch(void **state)
{
	uint8_t *dst = tu_guard_alloc((size_t)PAGES * PAGE, -1);
	uint64_t total, before, after, n;
	fvm_prefetch *p;
	fvm_reader *r;

	(void)state;
	drop_cache(path);
	before = resident(path, &n);
	r = lazy_prefetch(dst, &p);
	total = all_read(p, dst, &after);
	print_message("resident file pages: %llu before, %llu after the prefetch, of %llu; "
		      "%llu data bytes\n", (unsigned long long)before, (unsigned long long)after,
		      (unsigned long long)n, (unsigned long long)total);
	fvm_prefetch_free(p);
	fvm_reader_free(r);
	tu_guard_free(dst, (size_t)PAGES * PAGE);
}

/*
 * The guest faulting while the prefetch runs: this thread touches the
 * lazily mapped pages from the last one back (each a major fault while
 * the page cache lacks it), so the prefetch's thread sees another thread's
 * major faults and waits between its reads (yield_to_faults); it still
 * reads every run, and every byte is the snapshot's.
 */
static void test_faulting(void **state)
{
	uint8_t *dst = tu_guard_alloc((size_t)PAGES * PAGE, -1);
	uint64_t sum = 0;
	fvm_prefetch *p;
	fvm_reader *r;

	(void)state;
	drop_cache(path);
	r = lazy_prefetch(dst, &p);
	for (uint64_t i = PAGES; i-- > 0;)
		sum += ((volatile uint8_t *)dst)[i * PAGE + i % PAGE];
	(void)all_read(p, dst, NULL);
	print_message("touched %u pages backwards while the prefetch ran (sum %llu)\n", PAGES,
		      (unsigned long long)sum);
	fvm_prefetch_free(p);
	fvm_reader_free(r);
	tu_guard_free(dst, (size_t)PAGES * PAGE);
}

/*
 * Half of the file already in the page cache (its first half read, the
 * rest dropped), as when the guest's faults or an earlier run brought part
 * of it in: the paced reads of the cached half come in at page-cache speed,
 * and the prefetch must still read the rest; afterwards every data page is
 * resident and every byte is the snapshot's.
 */
static void test_half_cached(void **state)
{
	uint8_t *dst = tu_guard_alloc((size_t)PAGES * PAGE, -1);
	uint64_t total, before, after, n;
	fvm_prefetch *p;
	fvm_reader *r;
	int fd;
	off_t size;
	uint8_t *buf;

	(void)state;
	drop_cache(path);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	size = lseek(fd, 0, SEEK_END);
	buf = malloc((size_t)size / 2);
	assert_non_null(buf);
	/* no readahead: an asynchronous one still in flight would survive
	 * the DONTNEED below and bring in more than the half */
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
	assert_int_equal(pread(fd, buf, (size_t)size / 2, 0), size / 2);
	assert_int_equal(posix_fadvise(fd, size / 2 + PAGE, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	free(buf);
	before = resident(path, &n);
	print_message("resident file pages after reading the first half: %llu of %llu\n",
		      (unsigned long long)before, (unsigned long long)n);
	assert_true(before * 2 + 32 >= n && before * 2 <= n + 32); /* half, within 16 pages */
	r = lazy_prefetch(dst, &p);
	total = all_read(p, dst, &after);
	print_message("resident file pages after the prefetch: %llu; %llu data bytes\n",
		      (unsigned long long)after, (unsigned long long)total);
	fvm_prefetch_free(p);
	fvm_reader_free(r);
	tu_guard_free(dst, (size_t)PAGES * PAGE);
}

static void test_cancel(void **state)
{
	fvm_prefetch *p;
	fvm_reader *r;
	uint64_t done, total;
	int ended;

	(void)state;
	for (int i = 0; i < 20; i++) {
		drop_cache(path);
		assert_int_equal(fvm_reader_open(&r, path), 0);
		assert_int_equal(fvm_prefetch_start(r, 0, &p), 0);
		if (i & 1) {
			usleep(500);
			assert_int_equal(fvm_prefetch_status(p, &done, &total, &ended), 0);
			assert_true(done <= total);
		}
		fvm_prefetch_free(p); /* cancels, joins */
		fvm_reader_free(r);
	}
	fvm_prefetch_free(NULL);
}

static void test_refused(void **state)
{
	fvm_prefetch *p = (fvm_prefetch *)&p;
	fvm_reader *r;
	int fd;

	(void)state;
	assert_int_equal(fvm_prefetch_start(NULL, 0, &p), FVM_EINVAL);
	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_prefetch_start(r, 1, &p), FVM_EINVAL);
	assert_null(p);
	fvm_reader_free(r);
	if (fvm_codec_available(FVM_CODEC_ZSTD)) {
		assert_int_equal(fvm_reader_open(&r, cpath), 0);
		assert_int_equal(fvm_prefetch_start(r, 0, &p), FVM_EUNSUPPORTED);
		assert_non_null(strstr(fvm_error_detail(), "compressed"));
		fvm_reader_free(r);
	}
	fd = open(path, O_RDONLY);
	assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
	assert_int_equal(fvm_prefetch_start(r, 0, &p), FVM_EINVAL);
	fvm_reader_free(r);
	close(fd);
}

static int setup(void **state)
{
	struct tu_rng rng;
	char dir[] = "/var/tmp/fvm-prefetch-XXXXXX";

	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/p.fvm", dir);
	snprintf(cpath, sizeof(cpath), "%s/c.fvm", dir);
	want = malloc((size_t)PAGES * PAGE);
	tu_rng_seed(&rng, 5);
	for (uint64_t i = 0; i < PAGES; i++) /* runs of data, holes of zeros */
		if ((i / 300) % 3)
			tu_fill_page(&rng, want + i * PAGE, PAGE);
		else
			memset(want + i * PAGE, 0, PAGE);
	write_snap(path, 0);
	if (fvm_codec_available(FVM_CODEC_ZSTD))
		write_snap(cpath, FVM_CODEC_ZSTD);
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf \"$(dirname '%s')\"", path);
	free(want);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_faulting),
		cmocka_unit_test(test_half_cached),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
