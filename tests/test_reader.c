/*
 * Unit tests of the reader, the load plan, both executors, stream mode and
 * verify (lib/reader.c, walk.c, plan.c, load.c, exec_*.c). Files are made
 * with the writer; loaded memory is compared byte for byte with what was
 * written.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "fastvm/experimental.h"
#include "format.h"
#include "plan.h"

#define PAGE 4096u
#define RAM_PAGES 1024u          /* pc.ram: 4 MiB */
#define VGA_PAGES 64u            /* vga.ram: 256 KiB */

static char tmpdir[] = "/tmp/fvm-test-reader-XXXXXX";
static char snap[256], flipped[256];

/* Expected contents, built once. */
static uint8_t *ram, *vga;
static const char devdata[] = "cpu state: rip=0xfff0 and more";
static uint64_t ram_data_pages, vga_data_pages;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

/* Runs of 1..48 data pages and 1..48 zero pages, like guest memory. */
static uint64_t fill_runs(uint8_t *mem, uint64_t pages)
{
	uint64_t p = 0, data = 0;
	int is_data = 1;

	memset(mem, 0, pages * PAGE);
	while (p < pages) {
		uint64_t n = 1 + rnd() % 48;

		if (n > pages - p)
			n = pages - p;
		if (is_data) {
			for (uint64_t i = 0; i < n * PAGE / 8; i++) {
				uint64_t v = rnd() | 1;

				memcpy(mem + p * PAGE + i * 8, &v, 8);
			}
			data += n;
		}
		p += n;
		is_data = !is_data;
	}
	return data;
}

static void *anon(size_t len, int fill)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	if (fill >= 0)
		memset(p, fill, len);
	return p;
}

static void write_snapshot(fvm_writer *w)
{
	uint32_t a, b;

	assert_int_equal(fvm_writer_add_meta(w, "creator", "test_reader"), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", RAM_PAGES * PAGE, PAGE, &a), 0);
	assert_int_equal(fvm_writer_add_block(w, "vga.ram", VGA_PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, a, ram), 0);
	assert_int_equal(fvm_writer_write_block(w, b, vga), 0);
	/* after the segments: stream mode must collect them at the end */
	assert_int_equal(fvm_writer_add_devstate(w, "cpu", devdata, sizeof(devdata)), 0);
	assert_int_equal(fvm_writer_add_meta(w, "machine", "pc-i440fx"), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

static int setup(void **state)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;

	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	snprintf(snap, sizeof(snap), "%s/snap.fvm", tmpdir);
	snprintf(flipped, sizeof(flipped), "%s/flipped.fvm", tmpdir);
	ram = malloc(RAM_PAGES * PAGE);
	vga = malloc(VGA_PAGES * PAGE);
	assert_true(ram && vga);
	ram_data_pages = fill_runs(ram, RAM_PAGES);
	vga_data_pages = fill_runs(vga, VGA_PAGES);
	wo.flags = FVM_WRITE_NO_FSYNC;
	wo.segment_bytes = 1 << 20; /* several segments */
	assert_int_equal(fvm_writer_open_path(&w, snap, &wo), 0);
	write_snapshot(w);
	fvm_writer_free(w);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	free(ram);
	free(vga);
	return 0;
}

struct dest {
	uint8_t *ram, *vga;
	fvm_mapping maps[2];
};

static void dest_new(struct dest *d, int fill)
{
	d->ram = anon(RAM_PAGES * PAGE, fill);
	d->vga = anon(VGA_PAGES * PAGE, fill);
	d->maps[0] = (fvm_mapping){ sizeof(fvm_mapping), 0, "pc.ram", d->ram, RAM_PAGES * PAGE, 0 };
	d->maps[1] = (fvm_mapping){ sizeof(fvm_mapping), 0, "vga.ram", d->vga, VGA_PAGES * PAGE, PAGE };
}

static void dest_free(struct dest *d)
{
	munmap(d->ram, RAM_PAGES * PAGE);
	munmap(d->vga, VGA_PAGES * PAGE);
}

static void assert_loaded(const struct dest *d)
{
	assert_memory_equal(d->ram, ram, RAM_PAGES * PAGE);
	assert_memory_equal(d->vga, vga, VGA_PAGES * PAGE);
}

/* ------------------------------------------------------------ open, list */

static void test_open_list(void **state)
{
	fvm_reader *r;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	fvm_run_info ri = FVM_RUN_INFO_INIT;
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	uint32_t id;
	uint64_t data = 0, zero = 0, prev_end = 0;
	const char *k, *v;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.version_major, 1);
	assert_int_equal(fi.block_count, 2);
	assert_int_equal(fi.meta_count, 2);
	assert_int_equal(fi.devstate_count, 1);
	assert_int_equal(fi.streamed, 0);
	assert_true(fi.file_size > fi.payload_bytes);
	assert_int_equal(fvm_reader_find_block(r, "vga.ram", &id), 0);
	assert_int_equal(id, 1);
	assert_int_equal(fvm_reader_find_block(r, "nope", &id), FVM_ENOTFOUND);
	assert_int_equal(fvm_reader_block(r, 0, &bi), 0);
	assert_string_equal(bi.name, "pc.ram");
	assert_int_equal(bi.length, RAM_PAGES * PAGE);
	assert_int_equal(bi.page_size, PAGE);
	assert_int_equal(bi.data_pages, ram_data_pages);
	assert_int_equal(fvm_reader_block(r, 2, &bi), FVM_ENOTFOUND);
	assert_int_equal(fvm_reader_run_count(r), fi.data_runs + fi.zero_runs);
	for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
		assert_int_equal(fvm_reader_run(r, i, &ri), 0);
		assert_true(ri.block_id < 2);
		if (ri.kind == FVM_RUN_DATA) {
			data += ri.page_count;
			assert_int_equal(ri.file_offset % 4096, 0);
			/* writers emit extents in file order */
			assert_true(ri.file_offset >= prev_end);
			prev_end = ri.file_offset + ri.page_count * PAGE;
		} else {
			zero += ri.page_count;
			assert_int_equal(ri.file_offset, 0);
		}
	}
	assert_int_equal(data, fi.data_pages);
	assert_int_equal(zero, fi.zero_pages);
	assert_int_equal(fi.payload_bytes, data * PAGE);
	assert_int_equal(fvm_reader_run(r, fvm_reader_run_count(r), &ri), FVM_ENOTFOUND);
	assert_string_equal(fvm_reader_meta_get(r, "creator"), "test_reader");
	assert_string_equal(fvm_reader_meta_get(r, "machine"), "pc-i440fx");
	assert_null(fvm_reader_meta_get(r, "none"));
	assert_int_equal(fvm_reader_meta(r, 0, &k, &v), 0);
	assert_string_equal(k, "creator");
	assert_int_equal(fvm_reader_devstate(r, 0, &di), 0);
	assert_string_equal(di.name, "cpu");
	assert_int_equal(di.length, sizeof(devdata));
	if (fvm_verify(r, NULL, NULL))
		fail_msg("verify: %s", fvm_error_detail());
	fvm_reader_free(r);
	fvm_reader_free(NULL);
}

static void test_open_fd(void **state)
{
	fvm_reader *r;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	int fd = open(snap, O_RDONLY);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(fvm_reader_open_fd(&r, fd, "snap via fd"), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.streamed, 0);
	fvm_reader_free(r);
	/* the reader does not close a caller's fd */
	assert_int_equal(fcntl(fd, F_GETFD), 0);
	close(fd);
	assert_int_equal(fvm_reader_open(&r, "/nonexistent/x.fvm"), FVM_EIO);
	assert_non_null(strstr(fvm_error_detail(), "/nonexistent/x.fvm"));
}

/* ------------------------------------------------------------ loading */

#define TUNE_INLINE (1u << 31) /* load_with: FVM_TUNE_INLINE */

static void load_with(int backend, unsigned qd, uint64_t chunk, uint32_t flags)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r;
	struct dest d;

	assert_int_equal(fvm_reader_open(&r, snap), 0);
	dest_new(&d, -1);
	o.backend = backend;
	t.queue_depth = qd;
	t.chunk_bytes = chunk;
	t.flags = flags & TUNE_INLINE ? FVM_TUNE_INLINE : 0;
	o.tuning = &t;
	o.flags = flags & ~TUNE_INLINE;
	assert_int_equal(fvm_load(r, d.maps, 2, &o, &st), 0);
	assert_loaded(&d);
	if (backend == FVM_BACKEND_PREAD) {
		assert_int_equal(st.backend, FVM_BACKEND_PREAD);
		assert_string_equal(st.backend_name, "pread");
	} else if (st.backend == FVM_BACKEND_PREAD) {
		/* io_uring refused here: the fallback must say why */
		assert_non_null(st.fallback_reason);
	} else {
		assert_string_equal(st.backend_name, "io_uring");
		assert_null(st.fallback_reason);
	}
	assert_int_equal(st.bytes_read, (ram_data_pages + vga_data_pages) * PAGE);
	assert_true(st.requests >= 1);
	assert_true(st.extents >= 1);
	if (chunk && chunk < (1u << 20))
		assert_true(st.requests >= st.bytes_read / chunk);
	dest_free(&d);
	fvm_reader_free(r);
}

static void test_load_pread(void **state)
{
	(void)state;
	load_with(FVM_BACKEND_PREAD, 0, 0, 0);
	load_with(FVM_BACKEND_PREAD, 1, 8192, FVM_LOAD_VERIFY);
}

static void test_load_uring(void **state)
{
	(void)state;
	load_with(FVM_BACKEND_URING, 0, 0, 0);
	load_with(FVM_BACKEND_URING, 3, 12288, FVM_LOAD_VERIFY);
	load_with(FVM_BACKEND_URING, 64, 65536, 0);
	load_with(FVM_BACKEND_URING, 2, 8192, TUNE_INLINE);
	load_with(FVM_BACKEND_URING, 0, 0, TUNE_INLINE | FVM_LOAD_VERIFY);
	load_with(FVM_BACKEND_AUTO, 0, 0, FVM_LOAD_DIRECT);
}

/* Whether this file system takes O_DIRECT opens and aligned reads. */
static int direct_works(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT);
	void *buf = NULL;
	int ok;

	if (fd < 0)
		return 0;
	assert_int_equal(posix_memalign(&buf, PAGE, PAGE), 0);
	ok = pread(fd, buf, PAGE, 0) == PAGE;
	free(buf);
	close(fd);
	return ok;
}

static void test_load_direct(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r;
	struct dest d;
	char path[300];
	fvm_writer *w;
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	int can_direct;

	(void)state;
	/* /tmp is often tmpfs, which refuses O_DIRECT: try a disk-backed dir too */
	snprintf(path, sizeof(path), "./test_reader_direct.fvm");
	wo.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, path, &wo), 0);
	write_snapshot(w);
	fvm_writer_free(w);
	can_direct = direct_works(path);
	assert_int_equal(fvm_reader_open(&r, path), 0);
	for (int b = FVM_BACKEND_URING; b <= FVM_BACKEND_PREAD; b++) {
		dest_new(&d, -1);
		o.backend = b;
		o.flags = FVM_LOAD_DIRECT | FVM_LOAD_VERIFY;
		assert_int_equal(fvm_load(r, d.maps, 2, &o, &st), 0);
		assert_loaded(&d);
		assert_int_equal(st.direct, can_direct);
		dest_free(&d);
	}
	/* the mmap backend maps the page cache: never O_DIRECT */
	dest_new(&d, -1);
	o.backend = FVM_BACKEND_MMAP;
	assert_int_equal(fvm_load(r, d.maps, 2, &o, &st), 0);
	assert_loaded(&d);
	assert_int_equal(st.direct, 0);
	dest_free(&d);
	o.backend = FVM_BACKEND_PREAD; /* as the loop left it */
	/* an unaligned destination cannot take O_DIRECT: buffered, same bytes */
	{
		uint8_t *m = anon(VGA_PAGES * PAGE + PAGE, -1);
		fvm_mapping mp = { sizeof(fvm_mapping), 0, "vga.ram", m + 512, VGA_PAGES * PAGE, 0 };

		o.flags = FVM_LOAD_DIRECT | FVM_LOAD_PARTIAL;
		assert_int_equal(fvm_load(r, &mp, 1, &o, &st), 0);
		assert_int_equal(st.direct, 0);
		assert_memory_equal(m + 512, vga, VGA_PAGES * PAGE);
		munmap(m, VGA_PAGES * PAGE + PAGE);
	}
	fvm_reader_free(r);
	unlink(path);
}

static void zero_policy(int policy)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r;
	struct dest d;

	assert_int_equal(fvm_reader_open(&r, snap), 0);
	dest_new(&d, 0xAA);
	o.zero_policy = policy;
	assert_int_equal(fvm_load(r, d.maps, 2, &o, &st), 0);
	if (policy == FVM_ZERO_LEAVE) {
		assert_int_equal(st.zero_bytes, 0);
		for (uint64_t p = 0; p < RAM_PAGES; p++) {
			const uint8_t *want = ram + p * PAGE;
			int is_zero = !want[0] && !memcmp(want, want + 1, PAGE - 1);

			if (is_zero)
				assert_int_equal(d.ram[p * PAGE + 17], 0xAA);
			else
				assert_memory_equal(d.ram + p * PAGE, want, PAGE);
		}
	} else {
		assert_int_equal(st.zero_bytes, (RAM_PAGES - ram_data_pages +
						 VGA_PAGES - vga_data_pages) * PAGE);
		assert_loaded(&d);
	}
	dest_free(&d);
	fvm_reader_free(r);
}

static void test_zero_leave(void **state) { (void)state; zero_policy(FVM_ZERO_LEAVE); }
static void test_zero_memset(void **state) { (void)state; zero_policy(FVM_ZERO_MEMSET); }
static void test_zero_dontneed(void **state) { (void)state; zero_policy(FVM_ZERO_DONTNEED); }

/* Offset of the first DATA run's payload of pc.ram. */
static uint64_t first_data_offset(fvm_reader *r)
{
	fvm_run_info ri = FVM_RUN_INFO_INIT;

	for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
		assert_int_equal(fvm_reader_run(r, i, &ri), 0);
		if (ri.kind == FVM_RUN_DATA && ri.block_id == 0)
			return ri.file_offset + (ri.page_count - 1) * PAGE + 123;
	}
	fail();
	return 0;
}

static void test_verify_flipped(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_reader *r;
	struct dest d;
	uint64_t off;
	uint8_t byte;
	int fd;
	uint8_t *page = malloc(RAM_PAGES * PAGE);

	(void)state;
	copy_file(snap, flipped);
	assert_int_equal(fvm_reader_open(&r, flipped), 0);
	off = first_data_offset(r);
	fvm_reader_free(r);
	fd = open(flipped, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, (off_t)off), 1);
	byte ^= 0x10;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)off), 1);
	close(fd);

	/* the index is intact: open succeeds, a plain load does not look */
	assert_int_equal(fvm_reader_open(&r, flipped), 0);
	dest_new(&d, -1);
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, NULL), 0);
	for (int b = FVM_BACKEND_URING; b <= FVM_BACKEND_PREAD; b++) {
		o.backend = b;
		o.flags = FVM_LOAD_VERIFY;
		assert_int_equal(fvm_load(r, d.maps, 2, &o, NULL), FVM_ECHECKSUM);
		assert_non_null(strstr(fvm_error_detail(), "pc.ram"));
		assert_non_null(strstr(fvm_error_detail(), "file offset"));
	}
	assert_int_equal(fvm_verify(r, NULL, NULL), FVM_ECHECKSUM);
	assert_non_null(strstr(fvm_error_detail(), "flipped.fvm"));
	assert_int_equal(fvm_reader_read_pages(r, 0, 0, RAM_PAGES, page), FVM_ECHECKSUM);
	dest_free(&d);
	fvm_reader_free(r);
	free(page);
}

/* ------------------------------------------------------------ mappings */

static void test_mapping_errors(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_reader *r;
	struct dest d;
	fvm_mapping m[3];

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	dest_new(&d, 0x55);

	memcpy(m, d.maps, sizeof(d.maps));
	m[1].name = "vga.rom";
	assert_int_equal(fvm_load(r, m, 2, NULL, NULL), FVM_EMAPPING);
	assert_non_null(strstr(fvm_error_detail(), "vga.rom"));

	memcpy(m, d.maps, sizeof(d.maps));
	m[0].length -= PAGE;
	assert_int_equal(fvm_load(r, m, 2, NULL, NULL), FVM_EMAPPING);
	assert_non_null(strstr(fvm_error_detail(), "length"));

	memcpy(m, d.maps, sizeof(d.maps));
	m[1].page_size = 2u << 20;
	assert_int_equal(fvm_load(r, m, 2, NULL, NULL), FVM_EMAPPING);

	/* a missing block is an error unless PARTIAL */
	assert_int_equal(fvm_load(r, d.maps, 1, NULL, NULL), FVM_EMAPPING);
	assert_non_null(strstr(fvm_error_detail(), "vga.ram"));

	/* two blocks in one place */
	memcpy(m, d.maps, sizeof(d.maps));
	m[1].addr = d.ram + PAGE;
	assert_int_equal(fvm_load(r, m, 2, NULL, NULL), FVM_EMAPPING);

	memcpy(m, d.maps, sizeof(d.maps));
	m[2] = m[1];
	assert_int_equal(fvm_load(r, m, 3, NULL, NULL), FVM_EMAPPING);

	/* nothing was written by any refused load */
	for (size_t i = 0; i < RAM_PAGES * PAGE; i += 997)
		assert_int_equal(d.ram[i], 0x55);

	o.flags = FVM_LOAD_PARTIAL;
	o.zero_policy = FVM_ZERO_MEMSET;
	assert_int_equal(fvm_load(r, &d.maps[1], 1, &o, NULL), 0);
	assert_memory_equal(d.vga, vga, VGA_PAGES * PAGE);
	for (size_t i = 0; i < RAM_PAGES * PAGE; i += 997)
		assert_int_equal(d.ram[i], 0x55);

	o.size = 8;
	assert_int_equal(fvm_load(r, d.maps, 2, &o, NULL), FVM_EINVAL);
	dest_free(&d);
	fvm_reader_free(r);
}

static int cancel_after(void *ctx, uint64_t done, uint64_t total)
{
	int *calls = ctx;

	assert_true(done <= total || total == 0);
	return ++*calls >= 2;
}

static void test_cancel(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_reader *r;
	struct dest d;
	int calls;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	for (int b = FVM_BACKEND_URING; b <= FVM_BACKEND_PREAD; b++) {
		dest_new(&d, -1);
		calls = 0;
		o.backend = b;
		t.chunk_bytes = 64 * 1024;
		o.tuning = &t;
		o.progress = cancel_after;
		o.progress_ctx = &calls;
		assert_int_equal(fvm_load(r, d.maps, 2, &o, NULL), FVM_ECANCELED);
		assert_int_equal(calls, 2);
		dest_free(&d);
	}
	calls = 0;
	assert_int_equal(fvm_verify(r, cancel_after, &calls), FVM_ECANCELED);
	fvm_reader_free(r);
}

/* ------------------------------------------------------------ stream mode */

/* A child writes a snapshot into the pipe with the streaming writer. */
static pid_t stream_writer(int *rfd, int rewrite)
{
	int fds[2];
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
		fvm_writer *w;

		close(fds[0]);
		wo.segment_bytes = 256 * 1024;
		if (fvm_writer_open_fd(&w, fds[1], &wo))
			_exit(1);
		if (rewrite) {
			uint32_t id;
			uint8_t *junk = malloc(8 * PAGE);

			memset(junk, 0x77, 8 * PAGE);
			if (fvm_writer_add_block(w, "pc.ram", RAM_PAGES * PAGE, PAGE, &id) ||
			    fvm_writer_put_pages(w, id, 100, 8, junk) ||
			    fvm_writer_put_pages(w, id, 0, RAM_PAGES, ram) ||
			    fvm_writer_put_pages(w, id, 900, 8, junk) ||
			    fvm_writer_put_zero(w, id, 900, 8) ||
			    fvm_writer_finish(w))
				_exit(2);
			free(junk);
		} else {
			write_snapshot(w);
		}
		fvm_writer_free(w);
		_exit(0);
	}
	close(fds[1]);
	*rfd = fds[0];
	return pid;
}

static void reap(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_stream(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	fvm_run_info ri = FVM_RUN_INFO_INIT;
	fvm_reader *r;
	struct dest d;
	char buf[64];
	int fd;
	pid_t pid;

	(void)state;
	pid = stream_writer(&fd, 0);
	assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.streamed, 1);
	assert_int_equal(fi.file_size, 0);
	assert_int_equal(fi.block_count, 2);
	assert_int_equal(fvm_reader_run_count(r), 0);
	assert_int_equal(fvm_reader_run(r, 0, &ri), FVM_ESTATE);
	assert_int_equal(fvm_reader_read_pages(r, 0, 0, 1, buf), FVM_ESTATE);

	dest_new(&d, 0xAA);
	/* a refused mapping consumes nothing: the load can be retried */
	assert_int_equal(fvm_load(r, d.maps, 1, NULL, NULL), FVM_EMAPPING);
	o.zero_policy = FVM_ZERO_MEMSET;
	o.flags = FVM_LOAD_VERIFY;
	assert_int_equal(fvm_load(r, d.maps, 2, &o, &st), 0);
	reap(pid);
	assert_loaded(&d);
	assert_true(st.zero_bytes > 0);
	assert_int_equal(st.bytes_read, (ram_data_pages + vga_data_pages) * PAGE);

	/* after the load the listings are complete */
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.devstate_count, 1);
	assert_int_equal(fi.meta_count, 2);
	assert_int_equal(fi.data_pages * PAGE, fi.payload_bytes);
	assert_true(fvm_reader_run_count(r) > 0);
	assert_int_equal(fvm_reader_run(r, 0, &ri), 0);
	assert_string_equal(fvm_reader_meta_get(r, "machine"), "pc-i440fx");
	assert_int_equal(fvm_reader_devstate(r, 0, &di), 0);
	assert_int_equal(di.length, sizeof(devdata));
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, devdata, sizeof(devdata));
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, NULL), FVM_ESTATE);
	dest_free(&d);
	fvm_reader_free(r);
	close(fd);
}

static void test_stream_verify(void **state)
{
	fvm_reader *r;
	int fd;
	pid_t pid;

	(void)state;
	pid = stream_writer(&fd, 0);
	/* open_fd on a pipe reads it as a stream */
	assert_int_equal(fvm_reader_open_fd(&r, fd, "pipe"), 0);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	reap(pid);
	assert_true(fvm_reader_run_count(r) > 0);
	assert_int_equal(fvm_verify(r, NULL, NULL), FVM_ESTATE);
	fvm_reader_free(r);
	close(fd);
}

/* PARTIAL in stream mode: pages of unmapped blocks are read and dropped. */
static void test_stream_partial(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r;
	struct dest d;
	int fd;
	pid_t pid;

	(void)state;
	pid = stream_writer(&fd, 0);
	assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
	dest_new(&d, 0x55);
	o.flags = FVM_LOAD_PARTIAL | FVM_LOAD_VERIFY;
	o.zero_policy = FVM_ZERO_MEMSET;
	assert_int_equal(fvm_load(r, &d.maps[1], 1, &o, &st), 0);
	reap(pid);
	assert_memory_equal(d.vga, vga, VGA_PAGES * PAGE);
	for (size_t i = 0; i < RAM_PAGES * PAGE; i += 997)
		assert_int_equal(d.ram[i], 0x55);
	assert_int_equal(st.zero_bytes, (VGA_PAGES - vga_data_pages) * PAGE);
	dest_free(&d);
	fvm_reader_free(r);
	close(fd);
}

/* Pages stored twice: the last copy wins, in stream and indexed loads alike. */
static void test_rewrites(void **state)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	uint8_t *want = malloc(RAM_PAGES * PAGE);
	char path[300];
	fvm_reader *r;
	uint8_t *mem;
	int fd, out;
	pid_t pid;
	ssize_t n;
	char buf[65536];

	(void)state;
	memcpy(want, ram, RAM_PAGES * PAGE);
	memset(want + 900 * PAGE, 0, 8 * PAGE);

	/* keep a copy of the stream in a file for the indexed reader */
	pid = stream_writer(&fd, 1);
	snprintf(path, sizeof(path), "%s/rewrites.fvm", tmpdir);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(out >= 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(out);
	close(fd);
	reap(pid);

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	for (int policy = FVM_ZERO_LEAVE; policy <= FVM_ZERO_MEMSET; policy++) {
		fvm_mapping m = { sizeof(fvm_mapping), 0, "pc.ram", NULL, RAM_PAGES * PAGE, 0 };

		m.addr = mem = anon(RAM_PAGES * PAGE, -1);
		o.zero_policy = policy;
		assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
		assert_memory_equal(mem, want, RAM_PAGES * PAGE);
		munmap(mem, RAM_PAGES * PAGE);
	}
	fvm_reader_free(r);

	/* the stream applies every copy in order; LEAVE must still clear the
	 * pages a later zero run replaced */
	for (int policy = FVM_ZERO_LEAVE; policy <= FVM_ZERO_DONTNEED; policy++) {
		fvm_mapping m = { sizeof(fvm_mapping), 0, "pc.ram", NULL, RAM_PAGES * PAGE, 0 };

		pid = stream_writer(&fd, 1);
		assert_int_equal(fvm_reader_open_stream(&r, fd, "pipe"), 0);
		m.addr = mem = anon(RAM_PAGES * PAGE, -1);
		o.zero_policy = policy;
		o.flags = FVM_LOAD_VERIFY;
		assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
		reap(pid);
		assert_memory_equal(mem, want, RAM_PAGES * PAGE);
		munmap(mem, RAM_PAGES * PAGE);
		fvm_reader_free(r);
		close(fd);
	}
	free(want);
}

static void test_stream_truncated(void **state)
{
	int fds[2];
	uint8_t *all;
	struct stat sb;
	fvm_reader *r;
	struct dest d;
	int fd;
	pid_t pid;

	(void)state;
	fd = open(snap, O_RDONLY);
	assert_int_equal(fstat(fd, &sb), 0);
	all = malloc((size_t)sb.st_size);
	assert_int_equal(read(fd, all, (size_t)sb.st_size), sb.st_size);
	close(fd);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		/* cut inside the payload of the last segment */
		close(fds[0]);
		if (write(fds[1], all, (size_t)sb.st_size - 8192) < 0)
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(fvm_reader_open_stream(&r, fds[0], "cut"), 0);
	dest_new(&d, -1);
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, NULL), FVM_ETRUNCATED);
	assert_non_null(strstr(fvm_error_detail(), "cut"));
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, NULL), FVM_ESTATE);
	reap(pid);
	dest_free(&d);
	fvm_reader_free(r);
	close(fds[0]);
	free(all);
}

/* ------------------------------------------------------------ piecewise */

static void test_read_pages(void **state)
{
	fvm_reader *r;
	uint8_t *buf = malloc(RAM_PAGES * PAGE);

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	memset(buf, 0xEE, RAM_PAGES * PAGE);
	assert_int_equal(fvm_reader_read_pages(r, 0, 0, RAM_PAGES, buf), 0);
	assert_memory_equal(buf, ram, RAM_PAGES * PAGE);
	for (int i = 0; i < 50; i++) {
		uint64_t first = rnd() % RAM_PAGES, count = 1 + rnd() % (RAM_PAGES - first);

		memset(buf, 0xEE, count * PAGE);
		assert_int_equal(fvm_reader_read_pages(r, 0, first, count, buf), 0);
		assert_memory_equal(buf, ram + first * PAGE, count * PAGE);
	}
	assert_int_equal(fvm_reader_read_pages(r, 1, 3, VGA_PAGES - 3, buf), 0);
	assert_memory_equal(buf, vga + 3 * PAGE, (VGA_PAGES - 3) * PAGE);
	assert_int_equal(fvm_reader_read_pages(r, 1, 0, VGA_PAGES + 1, buf), FVM_ERANGE);
	assert_int_equal(fvm_reader_read_pages(r, 1, VGA_PAGES + 1, 0, buf), FVM_ERANGE);
	assert_int_equal(fvm_reader_read_pages(r, 2, 0, 1, buf), FVM_ENOTFOUND);
	fvm_reader_free(r);
	free(buf);
}

static void test_devstate_read(void **state)
{
	fvm_reader *r;
	char buf[64];

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, devdata, sizeof(devdata));
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, 3), FVM_EINVAL);
	assert_int_equal(fvm_reader_devstate_read(r, 1, buf, sizeof(buf)), FVM_ENOTFOUND);
	fvm_reader_free(r);
}

/* ------------------------------------------------------------ plan */

static void test_plan(void **state)
{
	struct fvm_rblock b[2] = {
		{ "a", 64 * PAGE, 64, 12, 0, 0, 0, 0, 0 },
		{ "b", 16 * PAGE, 16, 12, 0, 0, 0, 0, 0 },
	};
	/* a: pages 0-3 and 10-11 back to back in the file, then b: 0-1 right
	 * after, then a: 20 far away; a zero run in a */
	struct fvm_extent e[5] = {
		{ 0, 1, 10, 2, 0x5000, 0 },
		{ 0, 1, 0, 4, 0x1000, 0 },
		{ 1, 1, 0, 2, 0x7000, 0 },
		{ 0, 1, 20, 1, 0x20000, 0 },
		{ 0, 0, 30, 4, 0, 0 },
	};
	uint8_t *ma = anon(64 * PAGE, -1), *mb = anon(16 * PAGE, -1);
	struct fvm_map maps[2] = { { "b", mb, 16 * PAGE, 0, 0 }, { "a", ma, 64 * PAGE, 0, 0 } };
	struct fvm_plan p;

	(void)state;
	assert_int_equal(fvm_plan_build(&p, "t", b, 2, e, 5, maps, 2, 0, 1 << 20), 0);
	assert_int_equal(p.next, 4);
	assert_int_equal(p.total, 9 * PAGE);
	/* one scatter read for the adjacent extents, one for the far one */
	assert_int_equal(p.nreq, 2);
	assert_int_equal(p.req[0].file_off, 0x1000);
	assert_int_equal(p.req[0].len, 8 * PAGE);
	assert_int_equal(p.req[0].niov, 3);
	assert_ptr_equal(p.iov[p.req[0].iov].iov_base, ma);
	assert_ptr_equal(p.iov[p.req[0].iov + 1].iov_base, ma + 10 * PAGE);
	assert_ptr_equal(p.iov[p.req[0].iov + 2].iov_base, mb);
	assert_int_equal(p.req[1].len, PAGE);
	/* zero ranges: a minus its data pages (7 of 64), all of b but 2 pages */
	assert_int_equal(p.zero_bytes, (64 - 7 + 16 - 2) * PAGE);
	assert_true(p.aligned);
	assert_null(p.shared);
	fvm_plan_free(&p);

	/* the caller's zero handling: FVM_MAP_ZERO leaves b out of the zero
	 * work; SHARED marks the plan (no map over it, no DONTNEED in it) */
	maps[0].flags = FVM_MAP_ZERO;
	maps[1].flags = FVM_MAP_SHARED;
	assert_int_equal(fvm_plan_build(&p, "t", b, 2, e, 5, maps, 2, 0, 1 << 20), 0);
	assert_int_equal(p.zero_bytes, (64 - 7) * PAGE);
	assert_string_equal(p.shared, "a");
	for (size_t i = 0; i < p.nzero; i++)
		assert_int_equal(p.zero[i].map_flags, FVM_MAP_SHARED);
	fvm_plan_free(&p);
	maps[0].flags = maps[1].flags = 0;

	/* chunks of 3 pages: the first run splits, pieces stay in order */
	assert_int_equal(fvm_plan_build(&p, "t", b, 2, e, 5, maps, 2, 0, 3 * PAGE + 100), 0);
	assert_int_equal(p.nreq, 4);
	for (size_t i = 0; i + 1 < p.nreq; i++)
		assert_true(p.req[i].file_off + p.req[i].len <= p.req[i + 1].file_off);
	assert_int_equal(p.req[0].len, 3 * PAGE);
	fvm_plan_free(&p);

	/* destination contiguous too: iovecs merge */
	{
		struct fvm_extent c[2] = { { 0, 1, 4, 2, 0x1000, 0 }, { 0, 1, 0, 4, 0x3000, 0 } };
		struct fvm_extent d[2] = { { 0, 1, 0, 4, 0x1000, 0 }, { 0, 1, 4, 2, 0x5000, 0 } };

		assert_int_equal(fvm_plan_build(&p, "t", b, 2, c, 2, maps, 2, 1, 1 << 20), 0);
		assert_int_equal(p.nreq, 1);
		assert_int_equal(p.req[0].niov, 2); /* file order != memory order */
		fvm_plan_free(&p);
		assert_int_equal(fvm_plan_build(&p, "t", b, 2, d, 2, maps, 2, 1, 1 << 20), 0);
		assert_int_equal(p.nreq, 1);
		assert_int_equal(p.req[0].niov, 1);
		assert_int_equal(p.iov[0].iov_len, 6 * PAGE);
		fvm_plan_free(&p);
	}

	/* an extent past its block never reaches an executor */
	e[3].first_page = 64;
	assert_int_equal(fvm_plan_build(&p, "t", b, 2, e, 5, maps, 2, 0, 1 << 20), FVM_ERANGE);
	munmap(ma, 64 * PAGE);
	munmap(mb, 16 * PAGE);
}

/* A block of 2 MiB pages: offsets scale with the page size, CRCs stay 4 KiB. */
static void test_huge_pages(void **state)
{
	const uint64_t hp = 2u << 20, len = 8 * hp;
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	uint8_t *mem = anon(len, 0), *dst, *buf = malloc(2 * hp);
	char path[300];
	fvm_writer *w;
	fvm_reader *r;
	uint32_t id;

	(void)state;
	/* pages 1, 2 and 6 hold data; 2 only in its last byte */
	memset(mem + 1 * hp, 0x31, hp);
	mem[3 * hp - 1] = 0x32;
	for (uint64_t i = 0; i < hp; i++)
		mem[6 * hp + i] = (uint8_t)(i * 7 + 1);
	snprintf(path, sizeof(path), "%s/huge.fvm", tmpdir);
	wo.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, path, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "huge", len, hp, &id), 0);
	assert_int_equal(fvm_writer_write_block(w, id, mem), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	for (int b = FVM_BACKEND_URING; b <= FVM_BACKEND_PREAD; b++) {
		fvm_mapping m = { sizeof(fvm_mapping), 0, "huge", NULL, len, hp };

		m.addr = dst = anon(len, 0x5A);
		o.backend = b;
		o.flags = FVM_LOAD_VERIFY;
		o.zero_policy = FVM_ZERO_DONTNEED;
		o.tuning = &t;
		t.chunk_bytes = 768 * 1024; /* splits each huge page */
		assert_int_equal(fvm_load(r, &m, 1, &o, NULL), 0);
		assert_memory_equal(dst, mem, len);
		munmap(dst, len);
	}
	assert_int_equal(fvm_reader_read_pages(r, 0, 2, 2, buf), 0);
	assert_memory_equal(buf, mem + 2 * hp, 2 * hp);
	fvm_reader_free(r);
	munmap(mem, len);
	free(buf);
}

/*
 * An index that is consistent in itself but is not what the segments give
 * (a zero extent left out): open and load trust it, verify and a streamed
 * load compare and refuse it (R68).
 */
static void test_index_mismatch(void **state)
{
	uint8_t *all, *out, foot[FVM_FOOTER_SIZE];
	struct fvm_footer f;
	struct stat sb;
	char path[300];
	uint64_t n, body_len, drop = UINT64_MAX, at;
	size_t len;
	fvm_reader *r;
	struct dest d;
	int fd, fds[2];
	pid_t pid;

	(void)state;
	fd = open(snap, O_RDONLY);
	assert_int_equal(fstat(fd, &sb), 0);
	len = (size_t)sb.st_size;
	all = malloc(len);
	out = malloc(len);
	assert_int_equal(read(fd, all, len), (ssize_t)len);
	close(fd);
	assert_int_equal(fvm_footer_decode(all + len - FVM_FOOTER_SIZE, &f, len, "t"), 0);

	/* the INDX body: header, offsets, extents; find a zero extent */
	body_len = fvm_ld64(all + f.index_offset + 8);
	{
		uint8_t *b = all + f.index_offset + FVM_RECHDR_SIZE;
		uint64_t lists = 8 * ((uint64_t)fvm_ld32(b) + fvm_ld32(b + 4) + fvm_ld32(b + 8));

		n = fvm_ld64(b + 16);
		for (uint64_t i = 0; i < n && drop == UINT64_MAX; i++)
			if (!(fvm_ld32(b + FVM_INDEXHDR_SIZE + lists + 40 * i + 4) & 1))
				drop = FVM_INDEXHDR_SIZE + lists + 40 * i;
		assert_true(drop != UINT64_MAX);
		memcpy(out, all, f.index_offset + FVM_RECHDR_SIZE);
		memcpy(out + f.index_offset + FVM_RECHDR_SIZE, b, drop);
		memcpy(out + f.index_offset + FVM_RECHDR_SIZE + drop, b + drop + 40,
		       body_len - drop - 40);
		body_len -= 40;
		fvm_st64(out + f.index_offset + FVM_RECHDR_SIZE + 16, n - 1);
		fvm_rechdr_encode(out + f.index_offset, FVM_REC_INDX,
				  out + f.index_offset + FVM_RECHDR_SIZE, body_len);
	}
	at = fvm_align(f.index_offset + FVM_RECHDR_SIZE + body_len, 8);
	memset(out + f.index_offset + FVM_RECHDR_SIZE + body_len, 0,
	       at - (f.index_offset + FVM_RECHDR_SIZE + body_len));
	f.index_len = FVM_RECHDR_SIZE + body_len;
	f.file_size = at + FVM_FOOTER_SIZE;
	fvm_footer_encode(foot, &f);
	memcpy(out + at, foot, sizeof(foot));
	snprintf(path, sizeof(path), "%s/mismatch.fvm", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, out, f.file_size), (ssize_t)f.file_size);
	close(fd);

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_run_count(r), n - 1);
	assert_int_equal(fvm_verify(r, NULL, NULL), FVM_ECORRUPT);
	assert_non_null(strstr(fvm_error_detail(), "INDX record"));
	fvm_reader_free(r);

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(write(fds[1], out, f.file_size) == (ssize_t)f.file_size ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(fvm_reader_open_stream(&r, fds[0], "pipe"), 0);
	dest_new(&d, -1);
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, NULL), FVM_ECORRUPT);
	reap(pid);
	dest_free(&d);
	fvm_reader_free(r);
	close(fds[0]);
	free(all);
	free(out);
}

/* No RAM at all: the whole stream is read at open; load and verify still work. */
static void test_stream_no_segments(void **state)
{
	fvm_reader *r;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	int fds[2];
	char buf[64];
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		fvm_writer *w;

		close(fds[0]);
		if (fvm_writer_open_fd(&w, fds[1], NULL) ||
		    fvm_writer_add_devstate(w, "cpu", devdata, sizeof(devdata)) ||
		    fvm_writer_finish(w))
			_exit(1);
		fvm_writer_free(w);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(fvm_reader_open_stream(&r, fds[0], "pipe"), 0);
	reap(pid);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.block_count, 0);
	/* open pauses at the first section: it goes to the load or verify */
	assert_int_equal(fi.devstate_count, 0);
	assert_int_equal(fvm_load(r, NULL, 0, NULL, NULL), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_int_equal(fi.devstate_count, 1);
	/* read to its end: neither verify nor load can read it again */
	assert_int_equal(fvm_verify(r, NULL, NULL), FVM_ESTATE);
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, devdata, sizeof(devdata));
	fvm_reader_free(r);
	close(fds[0]);
}

/* The library reads no environment: FVM_BACKEND (read by 0.1) changes nothing. */
static void test_env_ignored(void **state)
{
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r;
	struct dest d;

	(void)state;
	assert_int_equal(fvm_reader_open(&r, snap), 0);
	dest_new(&d, -1);
	setenv("FVM_BACKEND", "pread", 1);
	setenv("FVM_WILLNEED", "4", 1);
	assert_int_equal(fvm_load(r, d.maps, 2, NULL, &st), 0);
	unsetenv("FVM_BACKEND");
	unsetenv("FVM_WILLNEED");
	if (st.backend == FVM_BACKEND_PREAD) /* only when io_uring was refused */
		assert_non_null(st.fallback_reason);
	else
		assert_int_equal(st.backend, FVM_BACKEND_URING);
	assert_loaded(&d);
	dest_free(&d);
	fvm_reader_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_list),
		cmocka_unit_test(test_open_fd),
		cmocka_unit_test(test_load_pread),
		cmocka_unit_test(test_load_uring),
		cmocka_unit_test(test_load_direct),
		cmocka_unit_test(test_zero_leave),
		cmocka_unit_test(test_zero_memset),
		cmocka_unit_test(test_zero_dontneed),
		cmocka_unit_test(test_verify_flipped),
		cmocka_unit_test(test_mapping_errors),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_stream_verify),
		cmocka_unit_test(test_stream_partial),
		cmocka_unit_test(test_stream_truncated),
		cmocka_unit_test(test_rewrites),
		cmocka_unit_test(test_read_pages),
		cmocka_unit_test(test_devstate_read),
		cmocka_unit_test(test_plan),
		cmocka_unit_test(test_huge_pages),
		cmocka_unit_test(test_index_mismatch),
		cmocka_unit_test(test_stream_no_segments),
		cmocka_unit_test(test_env_ignored),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
