/*
 * The writer's pipelined writes (lib/writer.c write_thread): segments
 * written by a thread while the next is scanned, within a write_pages call
 * and, with FVM_WRITE_STABLE_MEM, across calls. A block of data runs and
 * zero holes is written in calls of odd sizes, mixed with put_pages (the
 * segment buffer the thread may still be writing from), put_zero, device
 * state and a second block, with and without the flag, to a path and to a
 * pipe (no pipelining there); each file is loaded back and compared, and
 * verified. Memory is scribbled over after fvm_writer_finish() returns:
 * the file must not change.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 16384u /* 64 MiB: four default segments and more */

static char dir[256];

static void fill(uint8_t *m, struct tu_rng *r)
{
	for (uint64_t p = 0; p < PAGES;) {
		uint64_t n = 1 + tu_below(r, 700);
		int data = tu_below(r, 3) != 0;

		for (uint64_t k = 0; k < n && p < PAGES; k++, p++)
			if (data)
				tu_fill_page(r, m + p * PAGE, PAGE);
			else
				memset(m + p * PAGE, 0, PAGE);
	}
}

static void write_it(fvm_writer *w, uint8_t *m, const uint8_t *small, struct tu_rng *r)
{
	uint32_t b, s;

	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_add_block(w, "small", 64 * PAGE, PAGE, &s), 0);
	for (uint64_t p = 0; p < PAGES;) {
		uint64_t n = 1 + tu_below(r, 3000);

		if (n > PAGES - p)
			n = PAGES - p;
		switch (tu_below(r, 5)) {
		case 0: /* a zero range given as such */
			assert_int_equal(fvm_writer_put_zero(w, b, p, n), 0);
			memset(m + p * PAGE, 0, n * PAGE);
			break;
		case 1: /* copied into the segment buffer */
			assert_int_equal(fvm_writer_put_pages(w, b, p, n, m + p * PAGE), 0);
			break;
		default:
			assert_int_equal(fvm_writer_write_pages(w, b, p, n, m + p * PAGE), 0);
		}
		if (tu_below(r, 7) == 0)
			assert_int_equal(fvm_writer_put_pages(w, s, tu_below(r, 60), 4, small), 0);
		p += n;
	}
	assert_int_equal(fvm_writer_put_pages(w, s, 0, 64, small), 0); /* the last copy */
	assert_int_equal(fvm_writer_add_devstate(w, "dev", "x", 1), 0);
}

static void check(const char *path, const uint8_t *m, const uint8_t *small)
{
	fvm_mapping maps[2] = { FVM_MAPPING_INIT, FVM_MAPPING_INIT };
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	uint8_t *got = tu_guard_alloc((size_t)PAGES * PAGE, 0x5a), *gs = tu_guard_alloc(64 * PAGE, 0x5a);
	fvm_reader *r;

	maps[0].name = "pc.ram"; maps[0].addr = got; maps[0].length = (uint64_t)PAGES * PAGE;
	maps[1].name = "small"; maps[1].addr = gs; maps[1].length = 64 * PAGE;
	lo.zero_policy = FVM_ZERO_MEMSET;
	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	assert_int_equal(fvm_load(r, maps, 2, &lo, NULL), 0);
	assert_memory_equal(got, m, (size_t)PAGES * PAGE);
	assert_memory_equal(gs, small, 64 * PAGE);
	fvm_reader_free(r);
	tu_guard_free(got, (size_t)PAGES * PAGE);
	tu_guard_free(gs, 64 * PAGE);
}

static void run(uint32_t flags, int to_pipe)
{
	uint8_t *m = malloc((size_t)PAGES * PAGE), small[64 * PAGE];
	char path[300];
	struct tu_rng r;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;

	tu_rng_seed(&r, 11 + flags + (uint64_t)to_pipe);
	fill(m, &r);
	tu_fill_random(&r, small, sizeof(small));
	snprintf(path, sizeof(path), "%s/p.fvm", dir);
	o.flags = flags | FVM_WRITE_NO_FSYNC;
	o.segment_bytes = (1u + (unsigned)tu_below(&r, 4)) << 20;
	if (!to_pipe) {
		uint8_t *copy = malloc((size_t)PAGES * PAGE);

		assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
		write_it(w, m, small, &r);
		/* after flush the memory is the caller's again: the file keeps
		 * what was given (QEMU resumes the VM here) */
		assert_int_equal(fvm_writer_flush(w), 0);
		memcpy(copy, m, (size_t)PAGES * PAGE);
		memset(m, 0xdd, (size_t)PAGES * PAGE);
		assert_int_equal(fvm_writer_finish(w), 0);
		assert_int_equal(fvm_writer_flush(w), FVM_ESTATE);
		fvm_writer_free(w);
		memcpy(m, copy, (size_t)PAGES * PAGE);
		free(copy);
	} else {
		int fds[2], fd;
		pid_t pid;

		assert_int_equal(pipe(fds), 0);
		pid = fork();
		if (pid == 0) { /* the pipe's reader copies it to the file */
			char b[65536];
			ssize_t n;

			close(fds[1]);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			while ((n = read(fds[0], b, sizeof(b))) > 0)
				if (write(fd, b, (size_t)n) != n)
					_exit(1);
			_exit(close(fd) ? 1 : 0);
		}
		close(fds[0]);
		assert_int_equal(fvm_writer_open_fd(&w, fds[1], &o), 0);
		write_it(w, m, small, &r);
		assert_int_equal(fvm_writer_finish(w), 0);
		fvm_writer_free(w);
		close(fds[1]);
		{
			int st;

			assert_int_equal(waitpid(pid, &st, 0), pid);
			assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	{ /* the file is complete: scribbling over the memory now changes nothing */
		uint8_t *copy = malloc((size_t)PAGES * PAGE);

		memcpy(copy, m, (size_t)PAGES * PAGE);
		memset(m, 0xee, (size_t)PAGES * PAGE);
		check(path, copy, small);
		free(copy);
	}
	free(m);
}

static void test_path_plain(void **s) { (void)s; run(0, 0); }
static void test_path_stable(void **s) { (void)s; run(FVM_WRITE_STABLE_MEM, 0); }
static void test_path_stable_sync(void **s)
{
	(void)s;
	run(FVM_WRITE_STABLE_MEM | FVM_WRITE_SYNC_AT_FINISH, 0);
}
static void test_pipe_stable(void **s) { (void)s; run(FVM_WRITE_STABLE_MEM, 1); }
static void test_path_nocrc(void **s) { (void)s; run(FVM_WRITE_STABLE_MEM | FVM_WRITE_NO_CRC, 0); }

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/fvm-pipeline-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_plain),
		cmocka_unit_test(test_path_stable),
		cmocka_unit_test(test_path_stable_sync),
		cmocka_unit_test(test_pipe_stable),
		cmocka_unit_test(test_path_nocrc),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
