/*
 * The mmap backend: runs mapped copy-on-write over the destination. The
 * loaded memory equals the source, a write changes the memory and never the
 * file, a destination that cannot be mapped falls back to copying with the
 * reason said, and the pages around the destination stay untouched. Eager,
 * every data page is present in the page table on return; lazy
 * (FVM_LOAD_LAZY), none is until touched (/proc/self/pagemap says which).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <fastvm/fastvm.h>

#define PAGE 4096u
#define PAGES 300u

static char path[] = "/tmp/fvm-test-mmap-XXXXXX";
static unsigned char *src;

static int setup(void **state)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b;
	int fd = mkstemp(path);

	(void)state;
	if (fd < 0)
		return -1;
	close(fd);
	src = calloc(PAGES, PAGE);
	for (unsigned p = 0; p < PAGES; p++)
		if (p % 7 < 4) /* runs of 4 data pages, 3 zero pages */
			memset(src + p * PAGE, (int)(p % 251) + 1, PAGE);
	o.flags = FVM_WRITE_NO_FSYNC;
	o.segment_bytes = 64 * PAGE; /* several segments, so several runs per read */
	if (fvm_writer_open_path(&w, path, &o) || fvm_writer_add_block(w, "ram", PAGES * PAGE, PAGE, &b) ||
	    fvm_writer_write_block(w, b, src) || fvm_writer_finish(w))
		return -1;
	fvm_writer_free(w);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	free(src);
	return 0;
}

/* PAGES pages between two PROT_NONE guard pages. */
static unsigned char *guarded(void)
{
	unsigned char *m = mmap(NULL, (PAGES + 2) * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(m != MAP_FAILED);
	assert_int_equal(mprotect(m, PAGE, PROT_NONE), 0);
	assert_int_equal(mprotect(m + (PAGES + 1) * PAGE, PAGE, PROT_NONE), 0);
	return m + PAGE;
}

/* Whether the page at p is present in this process's page table (pagemap
 * bit 63); -1 when pagemap cannot be read. */
static int present(const void *p)
{
	uint64_t e;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / PAGE * sizeof(e)));
	close(fd);
	return n == (ssize_t)sizeof(e) ? (int)(e >> 63) : -1;
}

/* How many data pages (as laid out in setup) of dst are present. */
static unsigned present_data_pages(const unsigned char *dst)
{
	unsigned n = 0;

	for (unsigned p = 0; p < PAGES; p++) {
		int k = present(dst + p * PAGE);

		if (k < 0)
			skip();
		if (p % 7 < 4)
			n += (unsigned)k;
	}
	return n;
}

static unsigned data_pages(void)
{
	unsigned n = 0;

	for (unsigned p = 0; p < PAGES; p++)
		n += p % 7 < 4;
	return n;
}

static void load(unsigned char *dst, uint32_t flags, fvm_load_stats *st)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = { sizeof(fvm_mapping), 0, "ram", dst, PAGES * PAGE, 0 };
	fvm_reader *r;

	o.backend = FVM_BACKEND_MMAP;
	o.flags = flags;
	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_load(r, &m, 1, &o, st), 0);
	fvm_reader_free(r);
}

/* The file still holds the source's page p (writes to the memory stay there). */
static void assert_file_page(unsigned p)
{
	unsigned char page[PAGE];
	fvm_reader *r;

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_read_pages(r, 0, p, 1, page), 0);
	fvm_reader_free(r);
	assert_memory_equal(page, src + (size_t)p * PAGE, PAGE);
}

static void maps_copy_on_write(void **state)
{
	unsigned char *dst = guarded();
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	(void)state;
	load(dst, FVM_LOAD_VERIFY, &st);
	assert_int_equal(st.backend, FVM_BACKEND_MMAP);
	assert_string_equal(st.backend_name, "mmap");
	assert_null(st.fallback_reason);
	assert_memory_equal(dst, src, PAGES * PAGE);
	/* the guards are still there: the mapping stayed inside the range */
	assert_int_equal(mprotect(dst - PAGE, PAGE, PROT_NONE), 0);
	/* a write lands in memory only */
	memset(dst, 0xab, PAGE);
	assert_int_equal(dst[0], 0xab);
	assert_file_page(0);
	munmap(dst - PAGE, (PAGES + 2) * PAGE);
}

static void eager_pages_present(void **state)
{
	unsigned char *dst = guarded();
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	(void)state;
	load(dst, 0, &st);
	assert_int_equal(st.backend, FVM_BACKEND_MMAP);
	assert_int_equal(present_data_pages(dst), data_pages());
	munmap(dst - PAGE, (PAGES + 2) * PAGE);
}

static void lazy_maps_without_reading(void **state)
{
	unsigned char *dst = guarded();
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	(void)state;
	load(dst, FVM_LOAD_LAZY, &st);
	assert_int_equal(st.backend, FVM_BACKEND_MMAP);
	assert_null(st.fallback_reason);
	assert_int_equal(st.bytes_read, 0);
	assert_int_equal(present_data_pages(dst), 0);
	/* reading faults each page in from the file */
	assert_memory_equal(dst, src, PAGES * PAGE);
	assert_int_equal(present_data_pages(dst), data_pages());
	assert_int_equal(mprotect(dst - PAGE, PAGE, PROT_NONE), 0);
	assert_int_equal(mprotect(dst + PAGES * PAGE, PAGE, PROT_NONE), 0);
	/* a write copies the page; the file keeps its bytes */
	memset(dst + 8 * PAGE, 0xcd, PAGE);
	assert_int_equal(dst[8 * PAGE + 17], 0xcd);
	assert_file_page(8);
	munmap(dst - PAGE, (PAGES + 2) * PAGE);
}

static void lazy_write_first(void **state)
{
	unsigned char *dst = guarded();
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	(void)state;
	load(dst, FVM_LOAD_LAZY, &st);
	/* the first touch of a page is a write: it must still see the file's
	 * bytes around the written one */
	dst[15 * PAGE + 100] = 0x5a;
	assert_int_equal(dst[15 * PAGE + 100], 0x5a);
	assert_memory_equal(dst + 15 * PAGE, src + 15 * PAGE, 100);
	assert_memory_equal(dst + 15 * PAGE + 101, src + 15 * PAGE + 101, PAGE - 101);
	munmap(dst - PAGE, (PAGES + 2) * PAGE);
}

static void lazy_refused_where_meaningless(void **state)
{
	unsigned char *dst = guarded();
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = { sizeof(fvm_mapping), 0, "ram", dst, PAGES * PAGE, 0 };
	fvm_reader *r;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, path), 0);
	o.flags = FVM_LOAD_LAZY;
	o.backend = FVM_BACKEND_URING; /* lazy needs the mmap backend */
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EINVAL);
	assert_non_null(strstr(fvm_error_detail(), "FVM_LOAD_LAZY"));
	o.backend = FVM_BACKEND_MMAP; /* verifying would read every page */
	o.flags = FVM_LOAD_LAZY | FVM_LOAD_VERIFY;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EINVAL);
	assert_non_null(strstr(fvm_error_detail(), "FVM_LOAD_VERIFY"));
	o.flags = 1u << 5; /* the next flag is unknown */
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EINVAL);
	fvm_reader_free(r);
	/* nothing was written */
	for (unsigned i = 0; i < PAGES * PAGE; i++)
		if (dst[i])
			fail_msg("byte %u written by a refused load", i);
	munmap(dst - PAGE, (PAGES + 2) * PAGE);
}

/*
 * The VmFlags of every mapping that overlaps [p, p + len) in
 * /proc/self/smaps, each followed by a space; NULL when it cannot be read.
 */
static char *vm_flags(const void *p, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	static char out[8192];
	char line[512];
	uintptr_t lo = 0, hi = 0, a = (uintptr_t)p, e = a + len;

	if (!f)
		return NULL;
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long x, y;

		if (sscanf(line, "%lx-%lx ", &x, &y) == 2) {
			lo = x;
			hi = y;
		} else if (!strncmp(line, "VmFlags:", 8) && lo < e && hi > a &&
			   strlen(out) + strlen(line) < sizeof(out)) {
			line[strcspn(line, "\n")] = ' ';
			strcat(out, line + 8);
			strcat(out, "|");
		}
	}
	fclose(f);
	return out;
}

/* every mapping over [dst, dst + len) carries flag (a two-letter VmFlags code) */
static int all_have_len(const unsigned char *dst, size_t len, const char *flag)
{
	char *v = vm_flags(dst, len), *seg;
	char want[8];

	if (!v)
		skip();
	snprintf(want, sizeof(want), " %s ", flag);
	for (seg = v; *seg; seg = strchr(seg, '|') + 1) {
		char one[512];
		size_t n = (size_t)(strchr(seg, '|') - seg);

		memcpy(one, seg, n);
		one[n] = 0;
		if (!strstr(one, want))
			return 0;
	}
	return v[0] != 0;
}

static int all_have(const unsigned char *dst, const char *flag)
{
	return all_have_len(dst, PAGES * PAGE, flag);
}

static void settings_kept(void **state)
{
	static const struct { uint32_t flag; const char *vm; } kept[] = {
		{ FVM_MAP_HUGEPAGE, "hg" }, { FVM_MAP_DONTDUMP, "dd" },
		{ FVM_MAP_MERGEABLE, "mg" }, { FVM_MAP_LOCKED, "lo" },
		{ FVM_MAP_DONTFORK, "dc" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		for (int lazy = 0; lazy < 2; lazy++) {
			unsigned char *dst = guarded();
			fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
			fvm_mapping m = { sizeof(fvm_mapping), kept[i].flag, "ram", dst,
					  PAGES * PAGE, 0 };
			fvm_load_stats st = FVM_LOAD_STATS_INIT;
			fvm_reader *r;
			int rc;

			/* the caller's setting, as QEMU makes it on guest RAM */
			if (kept[i].flag == FVM_MAP_LOCKED)
				rc = mlock(dst, PAGES * PAGE);
			else
				rc = madvise(dst, PAGES * PAGE,
					     kept[i].flag == FVM_MAP_HUGEPAGE ? MADV_HUGEPAGE
					     : kept[i].flag == FVM_MAP_DONTDUMP ? MADV_DONTDUMP
					     : kept[i].flag == FVM_MAP_DONTFORK ? MADV_DONTFORK
					     : MADV_MERGEABLE);
			if (rc < 0 || !all_have(dst, kept[i].vm)) {
				print_message("kernel does not set %s here: not checked\n",
					      kept[i].vm);
				munmap(dst - PAGE, (PAGES + 2) * PAGE);
				continue;
			}
			o.backend = FVM_BACKEND_MMAP;
			o.flags = lazy ? FVM_LOAD_LAZY : 0;
			assert_int_equal(fvm_reader_open(&r, path), 0);
			assert_int_equal(fvm_load(r, &m, 1, &o, &st), 0);
			fvm_reader_free(r);
			assert_int_equal(st.backend, FVM_BACKEND_MMAP);
			if (lazy && kept[i].flag == FVM_MAP_HUGEPAGE) {
				/* off the mapped runs (2 MiB reads per fault), kept elsewhere:
				 * page 0 holds data, page 4 zeros (setup) */
				if (!all_have_len(dst + 4 * PAGE, PAGE, "hg") ||
				    all_have_len(dst, PAGE, "hg"))
					fail_msg("hg after a lazy map: on a data page (%s), on a "
						 "zero page (%s)", vm_flags(dst, PAGE),
						 vm_flags(dst + 4 * PAGE, PAGE));
			} else if (!all_have(dst, kept[i].vm)) {
				fail_msg("%s lost by a%s map over the memory: %s", kept[i].vm,
					 lazy ? " lazy" : "n eager", vm_flags(dst, PAGES * PAGE));
			}
			if (kept[i].flag == FVM_MAP_LOCKED) /* mlock reads what it locks */
				assert_int_equal(present_data_pages(dst), data_pages());
			assert_memory_equal(dst, src, PAGES * PAGE);
			munmap(dst - PAGE, (PAGES + 2) * PAGE);
		}
	}
	/* without the flag the setting is gone: the map over is what drops it */
	{
		unsigned char *dst = guarded();
		fvm_load_stats st = FVM_LOAD_STATS_INIT;

		assert_int_equal(madvise(dst, PAGES * PAGE, MADV_DONTDUMP), 0);
		load(dst, FVM_LOAD_LAZY, &st);
		assert_false(all_have(dst, "dd"));
		munmap(dst - PAGE, (PAGES + 2) * PAGE);
	}
}

/* kB of AnonHugePages over the mappings overlapping [p, p + len), -1 unknown. */
static long huge_kb(const void *p, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	uintptr_t lo = 0, hi = 0, a = (uintptr_t)p, e = a + len;
	long kb = 0, v;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long x, y;

		if (sscanf(line, "%lx-%lx ", &x, &y) == 2) {
			lo = x;
			hi = y;
		} else if (lo < e && hi > a && sscanf(line, "AnonHugePages: %ld kB", &v) == 1) {
			kb += v;
		}
	}
	fclose(f);
	return kb;
}

#define THP_MIB 64u
#define THP_PAGES (THP_MIB * 256u)

/* A 64 MiB block, data in every page (dense) or in one page of each 2 MiB. */
static void write_thp_file(const char *p, int dense)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	unsigned char *m = calloc(THP_PAGES, PAGE);
	fvm_writer *w;
	uint32_t b;

	assert_non_null(m);
	for (unsigned i = 0; i < THP_PAGES; i++)
		if (dense || i % 512 == 7)
			memset(m + (size_t)i * PAGE, (int)(i % 200) + 1, PAGE);
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, p, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "ram", (uint64_t)THP_PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, b, m), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	free(m);
}

/* Copy-load into THP memory, as QEMU's guest RAM: huge pages in kB after. */
static long thp_load(const char *p, uint32_t flags)
{
	size_t len = (size_t)THP_PAGES * PAGE, al = 2u << 20;
	unsigned char *raw = mmap(NULL, len + al, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *dst = (unsigned char *)(((uintptr_t)raw + al - 1) & ~(uintptr_t)(al - 1));
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = { sizeof(fvm_mapping), flags, "ram", dst, len, 0 };
	fvm_reader *r;
	long kb;

	assert_true(raw != MAP_FAILED);
	assert_int_equal(madvise(dst, len, MADV_HUGEPAGE), 0);
	o.backend = FVM_BACKEND_PREAD;
	assert_int_equal(fvm_reader_open(&r, p), 0);
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
	fvm_reader_free(r);
	kb = huge_kb(dst, len);
	/* the caller's setting is back */
	if (!all_have_len(dst, len, "hg"))
		fail_msg("MADV_HUGEPAGE not set again after the load");
	/* and a region the load did not touch gets a huge page from the guest */
	munmap(raw, len + al);
	return kb;
}

static void thp_sparse_loads_small_pages(void **state)
{
	char sparse[] = "/tmp/fvm-test-thp-s-XXXXXX", dense[] = "/tmp/fvm-test-thp-d-XXXXXX";
	int fs = mkstemp(sparse), fd = mkstemp(dense);
	FILE *e = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char mode[128] = "";
	long plain, kept, full;

	(void)state;
	assert_true(fs >= 0 && fd >= 0);
	close(fs);
	close(fd);
	if (e) {
		if (!fgets(mode, sizeof(mode), e))
			mode[0] = 0;
		fclose(e);
	}
	if (!strstr(mode, "[madvise]") && !strstr(mode, "[always]")) {
		unlink(sparse);
		unlink(dense);
		print_message("no transparent huge pages here (%s): not checked\n", mode);
		return;
	}
	write_thp_file(sparse, 0);
	write_thp_file(dense, 1);
	plain = thp_load(sparse, 0);                /* the caller's THP, untouched */
	kept = thp_load(sparse, FVM_MAP_HUGEPAGE);  /* sparse: small pages */
	full = thp_load(dense, FVM_MAP_HUGEPAGE);   /* dense: huge pages kept */
	unlink(sparse);
	unlink(dense);
	if (plain <= 0) {
		print_message("no huge page faulted in here (%ld kB): not checked\n", plain);
		return;
	}
	assert_int_equal(kept, 0);
	assert_true(full > 0);
}

static void unaligned_falls_back(void **state)
{
	unsigned char *buf = malloc(PAGES * PAGE + 1), *dst = buf + 1;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;

	(void)state;
	memset(dst, 0, PAGES * PAGE);
	load(dst, 0, &st);
	assert_int_not_equal(st.backend, FVM_BACKEND_MMAP);
	assert_non_null(st.fallback_reason);
	assert_non_null(strstr(st.fallback_reason, "mmap"));
	assert_memory_equal(dst, src, PAGES * PAGE);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(maps_copy_on_write),
		cmocka_unit_test(eager_pages_present),
		cmocka_unit_test(lazy_maps_without_reading),
		cmocka_unit_test(lazy_write_first),
		cmocka_unit_test(lazy_refused_where_meaningless),
		cmocka_unit_test(settings_kept),
		cmocka_unit_test(thp_sparse_loads_small_pages),
		cmocka_unit_test(unaligned_falls_back),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
