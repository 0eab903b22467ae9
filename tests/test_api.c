/*
 * The public API's contracts, against the shared library: sized structs
 * (options read by the caller's size, output written no further than it,
 * mapping arrays of any element size), errno of the failed system call, a
 * detail cleared on success (after an io_uring fallback too, with io_uring
 * refused by seccomp), callbacks that set their own error, and device state
 * written and read in pieces (several DEVS records, found by name, read at
 * any offset, handed to a stream load's callback, damage found per part).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 64u
#define MiB (1u << 20)

static char snap[512], parts[512];
static uint8_t ram[PAGES * PAGE];

/* Section sizes: one across three parts, one small, one empty. */
#define BIG (2 * MiB + 300 * 1024 + 7)
static uint8_t *big;
static const char small_data[] = "cpu state, a few bytes";

static void write_snap(void)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	struct tu_rng rng;
	fvm_writer *w;
	uint32_t id;
	size_t at = 0, step = 1;

	tu_rng_seed(&rng, 7);
	for (unsigned p = 0; p < PAGES; p += 2)
		tu_fill_page(&rng, ram + p * PAGE, PAGE);
	big = malloc(BIG);
	assert_non_null(big);
	tu_fill_random(&rng, big, BIG);
	snprintf(snap, sizeof(snap), "%s", tu_path("api.fvm"));
	snprintf(parts, sizeof(parts), "%s", tu_path("parts.fvm"));
	wo.flags = FVM_WRITE_NO_FSYNC;

	assert_int_equal(fvm_writer_open_path(&w, snap, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", sizeof(ram), PAGE, &id), 0);
	assert_int_equal(fvm_writer_write_block(w, id, ram), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "cpu", small_data, sizeof(small_data)), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);

	/* the pieces a vmstate writer makes: odd sizes, some larger than a part */
	assert_int_equal(fvm_writer_open_path(&w, parts, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", sizeof(ram), PAGE, &id), 0);
	assert_int_equal(fvm_writer_write_block(w, id, ram), 0);
	assert_int_equal(fvm_writer_devstate_begin(w, "vfio"), 0);
	/* only devstate_write and end while a section is open */
	assert_int_equal(fvm_writer_add_meta(w, "k", "v"), FVM_ESTATE);
	assert_int_equal(fvm_writer_devstate_begin(w, "x"), FVM_ESTATE);
	assert_int_equal(fvm_writer_finish(w), FVM_ESTATE);
	while (at < BIG) {
		size_t n = step < BIG - at ? step : BIG - at;

		assert_int_equal(fvm_writer_devstate_write(w, big + at, n), 0);
		at += n;
		step = step < MiB ? step * 5 + 3 : 1300 * 1024;
	}
	assert_int_equal(fvm_writer_devstate_end(w), 0);
	assert_int_equal(fvm_writer_devstate_end(w), FVM_ESTATE);
	assert_int_equal(fvm_writer_devstate_write(w, "x", 1), FVM_ESTATE);
	assert_int_equal(fvm_writer_devstate_begin(w, "empty"), 0);
	assert_int_equal(fvm_writer_devstate_end(w), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "cpu", small_data, sizeof(small_data)), 0);
	assert_int_equal(fvm_writer_devstate_begin(w, NULL), FVM_EINVAL);
	assert_int_equal(fvm_writer_add_devstate(w, NULL, "", 0), FVM_EINVAL);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

static int setup(void **state)
{
	(void)state;
	write_snap();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(big);
	tu_tmpdir_remove();
	return 0;
}

static fvm_mapping ram_map(uint8_t *dst)
{
	fvm_mapping m = FVM_MAPPING_INIT;

	m.name = "pc.ram";
	m.addr = dst;
	m.length = sizeof(ram);
	return m;
}

static uint8_t *anon(void)
{
	void *p = mmap(NULL, sizeof(ram), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* ------------------------------------------------------------ sized structs */

struct big_options {
	fvm_load_options o;
	uint64_t future[3];     /* fields of a newer header */
};

static void test_option_sizes(void **state)
{
	const fvm_load_options def = FVM_LOAD_OPTIONS_INIT;
	fvm_load_options o;
	struct big_options bo;
	fvm_write_options wo;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_reader *r;
	uint8_t *dst = anon();
	fvm_mapping m = ram_map(dst);

	(void)state;
	memset(&o, 0x77, sizeof(o));
	assert_int_equal(fvm_load_options_init(&o, sizeof(o)), 0);
	assert_memory_equal(&o, &def, sizeof(o));
	assert_int_equal(fvm_load_options_init(NULL, sizeof(o)), FVM_EINVAL);
	assert_int_equal(fvm_load_options_init(&o, 4), FVM_EINVAL);
	memset(&wo, 0x77, sizeof(wo));
	assert_int_equal(fvm_write_options_init(&wo, sizeof(wo)), 0);
	assert_int_equal(wo.size, sizeof(wo));
	assert_int_equal(wo.flags, 0);
	assert_null(wo.progress);
	/* the INIT macros of the other structs, as functions */
	{
		static const fvm_mapping mm = FVM_MAPPING_INIT;
		static const fvm_file_info fm = FVM_FILE_INFO_INIT;
		static const fvm_load_stats sm = FVM_LOAD_STATS_INIT;
		static const fvm_devstate_info dm = FVM_DEVSTATE_INFO_INIT;
		fvm_mapping mi;
		fvm_file_info fi;
		fvm_load_stats si;
		fvm_devstate_info di;

		memset(&mi, 0x77, sizeof(mi));
		memset(&fi, 0x77, sizeof(fi));
		memset(&si, 0x77, sizeof(si));
		memset(&di, 0x77, sizeof(di));
		assert_int_equal(fvm_mapping_init(&mi, sizeof(mi)), 0);
		assert_int_equal(fvm_file_info_init(&fi, sizeof(fi)), 0);
		assert_int_equal(fvm_load_stats_init(&si, sizeof(si)), 0);
		assert_int_equal(fvm_devstate_info_init(&di, sizeof(di)), 0);
		assert_memory_equal(&mi, &mm, sizeof(mi));
		assert_memory_equal(&fi, &fm, sizeof(fi));
		assert_memory_equal(&si, &sm, sizeof(si));
		assert_memory_equal(&di, &dm, sizeof(di));
		assert_int_equal(fvm_block_info_init(NULL, 64), FVM_EINVAL);
		assert_int_equal(fvm_run_info_init((fvm_run_info *)&fi, 4), FVM_EINVAL);
	}

	assert_int_equal(fvm_reader_open(&r, snap), 0);
	/* a newer caller's struct: fine while the fields we do not know are 0 */
	assert_int_equal(fvm_load_options_init(&bo.o, sizeof(bo)), 0);
	assert_int_equal(bo.o.size, sizeof(bo));
	assert_int_equal(bo.future[2], 0);
	assert_int_equal(fvm_load(r, &m, 1, &bo.o, NULL), 0);
	assert_memory_equal(dst, ram, sizeof(ram));
	bo.future[1] = 1;
	assert_int_equal(fvm_load(r, &m, 1, &bo.o, NULL), FVM_EINVAL);
	assert_non_null(strstr(fvm_error_detail(), "does not know"));
	/* smaller than any layout */
	o = def;
	o.size = 8;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EINVAL);
	/* tuning: an old, shorter one takes defaults for the rest */
	o = def;
	t.size = offsetof(fvm_load_tuning, chunk_bytes);
	t.queue_depth = 2;
	t.chunk_bytes = 12345; /* past size: ignored */
	o.tuning = &t;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
	t.size = sizeof(t);
	t.flags = 1u << 7;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EINVAL);
	/* write options larger than known with a non-zero tail */
	{
		struct { fvm_write_options w; uint32_t x[2]; } bw = { FVM_WRITE_OPTIONS_INIT, { 0, 9 } };
		fvm_writer *w;

		bw.w.size = sizeof(bw);
		assert_int_equal(fvm_writer_open_fd(&w, 1, &bw.w), FVM_EINVAL);
	}
	fvm_reader_free(r);
	munmap(dst, sizeof(ram));
}

/* An output struct as an older, smaller caller has it, with a canary after. */
static void test_output_sizes(void **state)
{
	union {
		fvm_file_info fi;
		fvm_load_stats st;
		fvm_block_info bi;
		unsigned char b[256];
	} u;
	size_t cut = offsetof(fvm_file_info, file_size);
	uint8_t *dst = anon();
	fvm_mapping m = ram_map(dst);
	fvm_reader *r;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	memset(&u, 0xEE, sizeof(u));
	u.fi.size = (uint32_t)cut;
	assert_int_equal(fvm_reader_info(r, &u.fi), 0);
	assert_int_equal(u.fi.size, cut);
	assert_int_equal(u.fi.version_major, 1);
	for (size_t i = cut; i < sizeof(u); i++)
		assert_int_equal(u.b[i], 0xEE);
	u.fi.size = 0;
	assert_int_equal(fvm_reader_info(r, &u.fi), FVM_EINVAL);

	cut = offsetof(fvm_load_stats, bytes_read);
	memset(&u, 0xEE, sizeof(u));
	u.st.size = (uint32_t)cut;
	assert_int_equal(fvm_load(r, &m, 1, NULL, &u.st), 0);
	assert_non_null(u.st.backend_name);
	for (size_t i = cut; i < sizeof(u); i++)
		assert_int_equal(u.b[i], 0xEE);

	cut = offsetof(fvm_block_info, length);
	memset(&u, 0xEE, sizeof(u));
	u.bi.size = (uint32_t)cut;
	assert_int_equal(fvm_reader_block(r, 0, &u.bi), 0);
	assert_string_equal(u.bi.name, "pc.ram");
	for (size_t i = cut; i < sizeof(u); i++)
		assert_int_equal(u.b[i], 0xEE);
	fvm_reader_free(r);
	munmap(dst, sizeof(ram));
}

/* Mapping arrays: the element size is maps[0].size, the same for all. */
struct big_mapping {
	fvm_mapping m;
	uint64_t future;
};

static void test_mapping_sizes(void **state)
{
	struct big_mapping bm[1];
	fvm_mapping m;
	uint8_t *dst = anon();
	fvm_reader *r;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	bm[0].m = ram_map(dst);
	bm[0].m.size = sizeof(bm[0]);
	bm[0].future = 0;
	assert_int_equal(fvm_load(r, &bm[0].m, 1, NULL, NULL), 0);
	assert_memory_equal(dst, ram, sizeof(ram));
	bm[0].future = 5;
	assert_int_equal(fvm_load(r, &bm[0].m, 1, NULL, NULL), FVM_EINVAL);
	m = ram_map(dst);
	m.size = 16;
	assert_int_equal(fvm_load(r, &m, 1, NULL, NULL), FVM_EINVAL);
	m = ram_map(dst);
	m.flags = 1u << 9;
	assert_int_equal(fvm_load(r, &m, 1, NULL, NULL), FVM_EINVAL);
	/* the caller's zero handling: FVM_MAP_ZERO means no zero work */
	{
		fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
		fvm_load_stats st = FVM_LOAD_STATS_INIT;

		memset(dst, 0xAB, sizeof(ram));
		m = ram_map(dst);
		o.zero_policy = FVM_ZERO_MEMSET;
		assert_int_equal(fvm_load(r, &m, 1, &o, &st), 0);
		assert_memory_equal(dst, ram, sizeof(ram));
		assert_int_equal(st.zero_bytes, PAGES / 2 * PAGE);
		memset(dst, 0xAB, sizeof(ram));
		m.flags = FVM_MAP_ZERO;
		assert_int_equal(fvm_load(r, &m, 1, &o, &st), 0);
		assert_int_equal(dst[PAGE], 0xAB); /* a zero page, left alone */
		assert_int_equal(st.zero_bytes, 0);
		/* SHARED: never mapped over, DONTNEED becomes zeros written */
		m.flags = FVM_MAP_SHARED;
		o.backend = FVM_BACKEND_MMAP;
		o.zero_policy = FVM_ZERO_DONTNEED;
		assert_int_equal(fvm_load(r, &m, 1, &o, &st), 0);
		assert_int_not_equal(st.backend, FVM_BACKEND_MMAP);
		assert_non_null(strstr(st.fallback_reason, "shared"));
		assert_memory_equal(dst, ram, sizeof(ram));
	}
	fvm_reader_free(r);
	munmap(dst, sizeof(ram));
}

/* write_pages: a block written as parts of memory, the rest as zero runs. */
static void test_write_pages(void **state)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	char path[512];
	uint8_t *back = malloc(sizeof(ram));
	fvm_writer *w;
	fvm_reader *r;
	uint32_t id;

	(void)state;
	snprintf(path, sizeof(path), "%s", tu_path("pages.fvm"));
	wo.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, path, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", sizeof(ram), PAGE, &id), 0);
	assert_int_equal(fvm_writer_write_pages(w, id, 0, 10, ram), 0);
	assert_int_equal(fvm_writer_put_zero(w, id, 10, 6), 0);
	assert_int_equal(fvm_writer_write_pages(w, id, 16, PAGES - 16, ram + 16 * PAGE), 0);
	assert_int_equal(fvm_writer_write_pages(w, id, PAGES - 1, 2, ram), FVM_EINVAL);
	assert_int_equal(fvm_writer_write_pages(w, id, 0, 1, NULL), FVM_EINVAL);
	assert_int_equal(fvm_writer_write_pages(w, id, 3, 0, NULL), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_read_pages(r, 0, 0, PAGES, back), 0);
	/* pages 10..15 were given as zero: even pages of ram hold data there */
	assert_memory_equal(back, ram, 10 * PAGE);
	for (size_t i = 10 * PAGE; i < 16 * PAGE; i++)
		assert_int_equal(back[i], 0);
	assert_memory_equal(back + 16 * PAGE, ram + 16 * PAGE, (PAGES - 16) * PAGE);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);
	free(back);
}

/* ------------------------------------------------------------ errors */

static void test_errno(void **state)
{
	fvm_writer *w = NULL;
	fvm_reader *r;
	uint32_t id;
	int fd, rc;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, tu_path("no-such.fvm")), FVM_EIO);
	assert_int_equal(fvm_error_errno(), ENOENT);
	assert_non_null(strstr(fvm_error_detail(), "no-such.fvm"));
	/* a successful call clears detail and errno */
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	assert_string_equal(fvm_error_detail(), "");
	assert_int_equal(fvm_error_errno(), 0);
	/* not a system call's error: errno 0 */
	assert_int_equal(fvm_reader_find_block(r, "nope", &id), FVM_ENOTFOUND);
	assert_int_equal(fvm_error_errno(), 0);
	assert_true(fvm_error_detail()[0] != '\0');
	/* free cannot fail and leaves the error for the caller to report */
	fvm_reader_free(r);
	assert_true(fvm_error_detail()[0] != '\0');

	/* a full device: ENOSPC, as QEMU would return it */
	fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		skip();
	rc = fvm_writer_open_fd(&w, fd, NULL);
	if (!rc)
		rc = fvm_writer_add_block(w, "pc.ram", sizeof(ram), PAGE, &id);
	if (!rc)
		rc = fvm_writer_write_block(w, id, ram);
	if (!rc)
		rc = fvm_writer_finish(w);
	assert_int_equal(rc, FVM_EIO);
	assert_int_equal(fvm_error_errno(), ENOSPC);
	fvm_writer_free(w);
	close(fd);

	assert_int_equal(fvm_error_set(FVM_ECORRUPT, 0, "%s %d", "x", 1), FVM_ECORRUPT);
	assert_string_equal(fvm_error_detail(), "x 1");
	assert_int_equal(fvm_error_set(FVM_EIO, EACCES, "y"), FVM_EIO);
	assert_int_equal(fvm_error_errno(), EACCES);
	assert_non_null(strstr(fvm_error_detail(), strerror(EACCES)));
}

/* A progress callback that stops the load with its own reason. */
static int refuse(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)done;
	(void)total;
	return fvm_error_set(FVM_EIO, ENOSPC, "the guest's disk is full");
}

static int stop_plain(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)done;
	(void)total;
	return 1;
}

static void test_callback_error(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	uint8_t *dst = anon();
	fvm_mapping m = ram_map(dst);
	fvm_reader *r;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	o.progress = refuse;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_EIO);
	assert_string_equal(fvm_error_detail(), "the guest's disk is full: No space left on device");
	assert_int_equal(fvm_error_errno(), ENOSPC);
	o.progress = stop_plain;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), FVM_ECANCELED);
	assert_non_null(strstr(fvm_error_detail(), "canceled"));
	assert_int_equal(fvm_verify(r, refuse, NULL), FVM_EIO);
	assert_int_equal(fvm_error_errno(), ENOSPC);
	fvm_reader_free(r);
	munmap(dst, sizeof(ram));
}

/*
 * io_uring refused (as seccomp or a sysctl refuses it): the load falls back
 * to pread, says why in the stats, and leaves no stale detail behind.
 */
static int deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void test_fallback_clears_detail(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
		fvm_load_stats st = FVM_LOAD_STATS_INIT;
		uint8_t *dst = anon();
		fvm_mapping m = ram_map(dst);
		fvm_reader *r;

		if (deny_io_uring())
			_exit(77);
		if (fvm_reader_open(&r, snap))
			_exit(2);
		o.backend = FVM_BACKEND_URING;
		if (fvm_load(r, &m, 1, &o, &st))
			_exit(3);
		if (st.backend != FVM_BACKEND_PREAD || !st.fallback_reason ||
		    !strstr(st.fallback_reason, "EPERM"))
			_exit(4);
		if (fvm_error_detail()[0] || fvm_error_errno())
			_exit(5); /* the refused setup's message must not survive */
		if (memcmp(dst, ram, sizeof(ram)))
			_exit(6);
		fvm_reader_free(r);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------ device state */

static void test_devstate_pieces(void **state)
{
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint8_t *buf = malloc(BIG + 1);
	fvm_reader *r;
	uint32_t i;
	size_t got;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(fvm_reader_open(&r, parts), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.devstate_count, 3);
	assert_int_equal(fvm_reader_find_devstate(r, "vfio", &i), 0);
	assert_int_equal(i, 0);
	assert_int_equal(fvm_reader_devstate(r, i, &di), 0);
	assert_int_equal(di.length, BIG);
	assert_int_equal(di.parts, 3); /* 1 MiB parts */
	assert_int_equal(fvm_reader_find_devstate(r, "empty", &i), 0);
	assert_int_equal(fvm_reader_devstate(r, i, &di), 0);
	assert_int_equal(di.length, 0);
	assert_int_equal(fvm_reader_devstate_pread(r, i, buf, 10, 0, &got), 0);
	assert_int_equal(got, 0);
	assert_int_equal(fvm_reader_find_devstate(r, "none", &i), FVM_ENOTFOUND);

	/* front to back in QEMUFile-sized pieces */
	memset(buf, 0, BIG);
	for (uint64_t off = 0; off < BIG; off += got) {
		assert_int_equal(fvm_reader_devstate_pread(r, 0, buf + off, 32768, off, &got), 0);
		assert_true(got > 0);
	}
	assert_memory_equal(buf, big, BIG);
	/* any range, across part ends, and past the end */
	{
		static const uint64_t offs[] = { 0, MiB - 5, MiB, 2 * MiB - 1, BIG - 3, BIG, BIG + 9 };

		for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
			size_t want = offs[k] >= BIG ? 0 : (BIG - offs[k] < 100 ? BIG - offs[k] : 100);

			assert_int_equal(fvm_reader_devstate_pread(r, 0, buf, 100, offs[k], &got), 0);
			assert_int_equal(got, want);
			assert_memory_equal(buf, big + (offs[k] < BIG ? offs[k] : 0), want);
		}
	}
	memset(buf, 0, BIG);
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, BIG), 0);
	assert_memory_equal(buf, big, BIG);
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, BIG - 1), FVM_EINVAL);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);
	free(buf);
}

/* The file changes under an open reader: each part is checked as it is read. */
static void test_devstate_damage(void **state)
{
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	uint8_t buf[100];
	fvm_reader *r;
	size_t got;
	int fd;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, parts), 0);
	assert_int_equal(fvm_reader_devstate(r, 0, &di), 0);
	fd = open(parts, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	/* a data byte of the second part (its header and name come first) */
	assert_int_equal(pwrite(fd, "\xff\x00", 1, (off_t)(di.file_offset + MiB + 100)), 1);
	close(fd);
	assert_int_equal(fvm_reader_devstate_pread(r, 0, buf, sizeof(buf), 10, &got), 0);
	assert_memory_equal(buf, big + 10, sizeof(buf));
	assert_int_equal(fvm_reader_devstate_pread(r, 0, buf, sizeof(buf), MiB + 500, &got),
			 FVM_ECHECKSUM);
	assert_int_equal(got, 0);
	assert_non_null(strstr(fvm_error_detail(), "DEVS record"));
	assert_int_equal(fvm_verify(r, NULL, NULL), FVM_ECHECKSUM);
	fvm_reader_free(r);
	/* and opening it again refuses it */
	assert_int_equal(fvm_reader_open(&r, parts), FVM_ECHECKSUM);
	free(big);
	write_snap(); /* put the good file back for the tests after this one */
}

/* A stream load hands each part to the callback, in order, and keeps none. */
struct pieces {
	uint8_t *dst;
	uint64_t next;
	uint32_t section, calls, lasts;
};

static int on_piece(void *ctx, uint32_t section, const char *name, uint64_t offset,
		    const void *data, size_t len, int last)
{
	struct pieces *p = ctx;

	p->calls++;
	if (!strcmp(name, "vfio")) {
		if (section != 0 || offset != p->next || len > MiB)
			return fvm_error_set(FVM_EINVAL, 0, "piece out of order");
		memcpy(p->dst + offset, data, len);
		p->next += len;
		p->lasts += last ? 1 : 0;
	}
	return 0;
}

static void test_stream_devstate(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	struct pieces p = { malloc(BIG), 0, 0, 0, 0 };
	uint8_t *dst = anon(), small[64];
	fvm_mapping m = ram_map(dst);
	fvm_reader *r;
	size_t got;
	int fd;

	(void)state;
	assert_non_null(p.dst);
	/* with a callback: pieces delivered, not kept */
	fd = open(parts, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
	o.devstate = on_piece;
	o.devstate_ctx = &p;
	assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
	assert_memory_equal(dst, ram, sizeof(ram));
	assert_int_equal(p.next, BIG);
	assert_memory_equal(p.dst, big, BIG);
	assert_int_equal(p.lasts, 1);
	assert_int_equal(p.calls, 3 + 1 + 1); /* vfio's parts, empty, cpu */
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.devstate_count, 3);
	assert_int_equal(fvm_reader_devstate_read(r, 2, small, sizeof(small)), FVM_ESTATE);
	assert_int_equal(fvm_reader_devstate_pread(r, 0, small, 8, 0, &got), FVM_ESTATE);
	fvm_reader_free(r);
	close(fd);

	/* without one: kept, and readable after the load, in pieces too */
	fd = open(parts, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
	assert_int_equal(fvm_load(r, &m, 1, NULL, NULL), 0);
	assert_int_equal(fvm_reader_devstate_read(r, 2, small, sizeof(small)), 0);
	assert_string_equal((char *)small, small_data);
	assert_int_equal(fvm_reader_devstate_pread(r, 0, p.dst, BIG, MiB - 1, &got), 0);
	assert_int_equal(got, BIG - (MiB - 1));
	assert_memory_equal(p.dst, big + MiB - 1, got);
	fvm_reader_free(r);
	close(fd);
	free(p.dst);
	munmap(dst, sizeof(ram));
}

/* A qcow2-shaped image: version 3 header of 104 bytes, L1 table of 8
 * entries at 0x10000 (what the fingerprint reads), 0x20000 bytes long. */
static void write_qcow2(const char *path)
{
	uint8_t h[104] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
	uint8_t l1[64];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	h[39] = 8;                 /* l1_size (be32 at 36) */
	h[45] = 0x01;              /* l1_table_offset (be64 at 40) = 0x10000 */
	h[103] = 104;              /* header_length (be32 at 100) */
	for (unsigned i = 0; i < sizeof(l1); i++)
		l1[i] = (uint8_t)i;
	assert_int_equal(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	assert_int_equal(pwrite(fd, l1, sizeof(l1), 0x10000), (ssize_t)sizeof(l1));
	assert_int_equal(ftruncate(fd, 0x20000), 0);
	close(fd);
}

static void poke(const char *path, off_t off, uint8_t v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &v, 1, off), 1);
	close(fd);
}

static void test_disks(void **state)
{
	char disk[512], raw[512], other[512], fvm[512];
	fvm_disk_info d = FVM_DISK_INFO_INIT, d2 = FVM_DISK_INFO_INIT;
	fvm_writer *w;
	fvm_reader *r;
	uint32_t id;

	(void)state;
	snprintf(disk, sizeof(disk), "%s", tu_path("disk.qcow2"));
	snprintf(raw, sizeof(raw), "%s", tu_path("disk.raw"));
	snprintf(other, sizeof(other), "%s", tu_path("other.qcow2"));
	snprintf(fvm, sizeof(fvm), "%s", tu_path("disks.fvm"));
	write_qcow2(disk);
	write_qcow2(other);
	assert_int_equal(tu_write_file(raw, "raw disk bytes", 14), 0);

	assert_int_equal(fvm_disk_identify(disk, &d), 0);
	assert_string_equal(d.kind, "qcow2");
	assert_int_equal(d.length, 0x20000);
	/* the L1 table is part of it, bytes elsewhere are not */
	poke(disk, 0x18000, 0x77);
	assert_int_equal(fvm_disk_identify(disk, &d2), 0);
	assert_true(d2.fingerprint == d.fingerprint);
	poke(disk, 0x10003, 0x77);
	assert_int_equal(fvm_disk_identify(disk, &d2), 0);
	assert_true(d2.fingerprint != d.fingerprint);
	write_qcow2(disk);
	assert_int_equal(fvm_disk_identify(raw, &d2), 0);
	assert_string_equal(d2.kind, "file");

	assert_int_equal(fvm_writer_open_path(&w, fvm, NULL), 0);
	assert_int_equal(fvm_writer_add_block(w, "ram", PAGE, PAGE, &id), 0);
	assert_int_equal(fvm_writer_add_disk(w, disk), 0);
	assert_int_equal(fvm_writer_add_disk(w, raw), 0);
	assert_int_equal(fvm_writer_add_disk(w, tu_path("no-such-disk")), FVM_EIO);
	assert_int_equal(fvm_error_errno(), ENOENT);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);

	assert_int_equal(fvm_reader_open(&r, fvm), 0);
	assert_string_equal(fvm_reader_meta_get(r, "disk.0.kind"), "qcow2");
	assert_string_equal(fvm_reader_meta_get(r, "disk.0.size"), "131072");
	assert_string_equal(fvm_reader_meta_get(r, "disk.1.kind"), "file");
	assert_null(fvm_reader_meta_get(r, "disk.2.path"));
	assert_int_equal(fvm_reader_check_disk(r, disk), 0);
	assert_int_equal(fvm_reader_check_disk(r, raw), 0);
	/* the same content at another path is another disk */
	assert_int_equal(fvm_reader_check_disk(r, other), FVM_ENOTFOUND);
	/* a write that changes the L1 table */
	poke(disk, 0x10020, 0xee);
	assert_int_equal(fvm_reader_check_disk(r, disk), FVM_ECHANGED);
	assert_non_null(strstr(fvm_error_detail(), "qcow2 header and L1 table hash"));
	assert_non_null(strstr(fvm_error_detail(), "disk.qcow2"));
	/* a grown image */
	write_qcow2(disk);
	assert_int_equal(fvm_reader_check_disk(r, disk), 0);
	assert_int_equal(truncate(disk, 0x30000), 0);
	assert_int_equal(fvm_reader_check_disk(r, disk), FVM_ECHANGED);
	assert_non_null(strstr(fvm_error_detail(), "131072 bytes then, 196608 now"));
	/* a raw file rewritten */
	assert_int_equal(tu_write_file(raw, "RAW DISK BYTES", 14), 0);
	{
		struct timespec ts[2] = { { 1, 0 }, { 1, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, raw, ts, 0), 0);
	}
	assert_int_equal(fvm_reader_check_disk(r, raw), FVM_ECHANGED);
	assert_non_null(strstr(fvm_error_detail(), "modification time"));
	fvm_reader_free(r);

	/* hostile images: a header length out of bounds, an L1 past the end */
	write_qcow2(other);
	poke(other, 102, 0x10);   /* 0x1068 bytes */
	assert_int_equal(fvm_disk_identify(other, &d2), FVM_ECORRUPT);
	assert_non_null(strstr(fvm_error_detail(), "header length 4200"));
	write_qcow2(other);
	poke(other, 44, 0x7f);     /* L1 at 0x7f010000 */
	assert_int_equal(fvm_disk_identify(other, &d2), FVM_ETRUNCATED);
	assert_non_null(strstr(fvm_error_detail(), "inside qcow2 L1 table at offset 0x7f010000"));
	assert_int_equal(fvm_disk_identify(NULL, &d2), FVM_EINVAL);
	memset(&d2, 0xff, sizeof(d2));
	assert_int_equal(fvm_disk_info_init(&d2, sizeof(d2)), 0);
	assert_int_equal(d2.size, sizeof(d2));
	assert_null(d2.kind);
	assert_int_equal(d2.length, 0);
	assert_string_equal(fvm_strerror(FVM_ECHANGED), "disk changed since the snapshot");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option_sizes),
		cmocka_unit_test(test_output_sizes),
		cmocka_unit_test(test_mapping_sizes),
		cmocka_unit_test(test_write_pages),
		cmocka_unit_test(test_errno),
		cmocka_unit_test(test_callback_error),
		cmocka_unit_test(test_fallback_clears_detail),
		cmocka_unit_test(test_devstate_pieces),
		cmocka_unit_test(test_devstate_damage),
		cmocka_unit_test(test_stream_devstate),
		cmocka_unit_test(test_disks),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
