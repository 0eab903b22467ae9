/*
 * Unit tests of the fvmsnap helpers in tools/cli.c and, below it, in
 * tools/common/: size parsing, the exit-code table, the one error format,
 * safe file names, escaping for the terminal and for JSON, the histogram
 * buckets, atomic small files, standard input (peeked at, spooled) and the
 * load environment.
 */
#include <errno.h>
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

#include "cli.h"
#include "escape.h"
#include "hist.h"

static void test_parse_size(void **state)
{
	static const struct { const char *s; uint64_t v; } good[] = {
		{ "0", 0 }, { "4096", 4096 }, { "4K", 4096 }, { "4k", 4096 },
		{ "4KiB", 4096 }, { "4KB", 4096 }, { "2M", 2u << 20 },
		{ "1G", 1u << 30 }, { "3T", 3ull << 40 },
		{ "16777215T", 16777215ull << 40 },
		{ "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "K", "-1", "4 K", "4X", "4KX", "4KiBB", "1.5M", " 4",
		"16777216T", "18446744073709551616", "4Ki B",
	};
	uint64_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		assert_int_equal(cli_parse_size(good[i].s, &v), 0);
		assert_true(v == good[i].v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cli_parse_size(bad[i], &v), -1);
	assert_int_equal(cli_parse_size(NULL, &v), -1);
}

static void test_parse_uint(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(cli_parse_uint("5", 10, &v), 0);
	assert_true(v == 5);
	assert_int_equal(cli_parse_uint("11", 10, &v), -1);
	assert_int_equal(cli_parse_uint("", 10, &v), -1);
	assert_int_equal(cli_parse_uint("1x", 10, &v), -1);
	assert_int_equal(cli_parse_uint("99999999999999999999", UINT64_MAX, &v), -1);
}

static void test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(cli_exit_code(FVM_OK), EXIT_OK);
	assert_int_equal(cli_exit_code(FVM_EINVAL), EXIT_USAGE);
	assert_int_equal(cli_exit_code(FVM_EMAGIC), EXIT_INVALID);
	assert_int_equal(cli_exit_code(FVM_ETRUNCATED), EXIT_INVALID);
	assert_int_equal(cli_exit_code(FVM_ECHECKSUM), EXIT_INVALID);
	assert_int_equal(cli_exit_code(FVM_ECORRUPT), EXIT_INVALID);
	assert_int_equal(cli_exit_code(FVM_ERANGE), EXIT_INVALID);
	assert_int_equal(cli_exit_code(FVM_EIO), EXIT_SYSTEM);
	assert_int_equal(cli_exit_code(FVM_ENOMEM), EXIT_SYSTEM);
	assert_int_equal(cli_exit_code(FVM_EVERSION), EXIT_UNSUPPORTED);
	assert_int_equal(cli_exit_code(FVM_EFEATURE), EXIT_UNSUPPORTED);
	assert_int_equal(cli_exit_code(FVM_EMAPPING), EXIT_UNSUPPORTED);
	assert_int_equal(cli_exit_code(FVM_EUNSUPPORTED), EXIT_UNSUPPORTED);
	assert_int_equal(cli_exit_code(FVM_ECANCELED), EXIT_INTERRUPTED);
	assert_int_equal(cli_exit_code(-99), EXIT_SYSTEM);
}

static void test_safe_name(void **state)
{
	char buf[201], name[300];

	(void)state;
	cli_safe_name("pc.ram", buf);
	assert_string_equal(buf, "pc.ram");
	cli_safe_name("/rom@etc/acpi/tables", buf);
	assert_string_equal(buf, "_rom_etc_acpi_tables");
	cli_safe_name("..", buf);
	assert_string_equal(buf, "_.");
	cli_safe_name(".hidden", buf);
	assert_string_equal(buf, "_hidden");
	cli_safe_name("", buf);
	assert_string_equal(buf, "unnamed");
	cli_safe_name("a b\xff+-_", buf);
	assert_string_equal(buf, "a_b_+-_");
	memset(name, 'x', 255);
	name[255] = '\0';
	cli_safe_name(name, buf);
	assert_int_equal(strlen(buf), 200);
}

static void test_escape(void **state)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	(void)state;
	assert_non_null(f);
	text_escaped(f, "a\tb\nc\\d\x01\xc3\xa9");
	fclose(f);
	assert_string_equal(out, "a\\tb\\nc\\\\d\\x01\\xc3\\xa9");
	free(out);
}

static void test_run_buckets(void **state)
{
	char buf[48];

	(void)state;
	assert_int_equal(hist_bucket(1), 0);
	assert_int_equal(hist_bucket(2), 1);
	assert_int_equal(hist_bucket(3), 1);
	assert_int_equal(hist_bucket(4), 2);
	assert_int_equal(hist_bucket(~0ull), 63);
	assert_int_equal(hist_bucket_max(0), 1);
	assert_int_equal(hist_bucket_max(2), 7);
	assert_true(hist_bucket_max(63) == ~0ull);
	for (unsigned k = 0; k < HIST_BUCKETS; k++) {
		/* every bucket's bounds fall in it, and the next starts above */
		assert_int_equal(hist_bucket(1ull << k), k);
		assert_int_equal(hist_bucket(hist_bucket_max(k)), k);
	}
	hist_bucket_label(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1");
	hist_bucket_label(buf, sizeof(buf), 3);
	assert_string_equal(buf, "8-15");
	hist_bucket_label(buf, sizeof(buf), 63);
	assert_string_equal(buf, "9223372036854775808-18446744073709551615");
}

static void test_atomic(void **state)
{
	char dir[] = "/tmp/test_cli.XXXXXX", path[64], buf[16];
	struct cli_atomic a;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("old", f);
	fclose(f);

	/* Aborted: the old content stays, no temporary file is left. */
	assert_int_equal(cli_atomic_open(&a, path), 0);
	assert_int_equal(cli_write_all(a.fd, "new!", 4), 0);
	cli_atomic_abort(&a);
	f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "old");

	/* Committed: replaced. */
	assert_int_equal(cli_atomic_open(&a, path), 0);
	assert_int_equal(cli_write_all(a.fd, "new!", 4), 0);
	assert_int_equal(cli_atomic_commit(&a), 0);
	f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "new!");

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0); /* fails if a temporary file is left */
}

/* What f holds, as a string the caller frees (f is closed). */
static char *drain(FILE *f, char **out)
{
	fclose(f);
	return *out;
}

static void test_json_and_text(void **state)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	(void)state;
	assert_non_null(f);
	/* quotes, controls, valid UTF-8 kept, an invalid byte as Latin-1, NUL */
	json_mem(f, "a\"b\\\n\x01\x7f\xc3\xa9\xff\0z", 12);
	assert_string_equal(drain(f, &out), "\"a\\\"b\\\\\\n\\u0001\\u007f\xc3\xa9\\u00ff\\u0000z\"");
	free(out);
	f = open_memstream(&out, &len);
	json_str(f, "\xed\xa0\x80"); /* a surrogate is not UTF-8 */
	assert_string_equal(drain(f, &out), "\"\\u00ed\\u00a0\\u0080\"");
	free(out);
	f = open_memstream(&out, &len);
	/* controls, C1 controls and invalid bytes become '?'; padded to 8 */
	assert_int_equal(text_safe(f, "a\x1b[\xc2\x85\xc3\xa9\xff", 8), 6);
	assert_string_equal(drain(f, &out), "a?[?\xc3\xa9?  ");
	free(out);
}

/* cli_fail's one line, with stderr caught in a file. */
static void caught_fail(const char *what, int code, const char *not_what, char *buf, size_t len)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(f);
	assert_true(saved >= 0);
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	cli_fail_as(what, code, not_what);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_fail_format(void **state)
{
	char buf[512];

	(void)state;
	/* the detail's leading name is the one the message starts with: once */
	fvm_error_set(FVM_ETRUNCATED, 0, "standard input: stream ends at offset 0x%x", 0x1000);
	caught_fail(CLI_STDIN_NAME, FVM_ETRUNCATED, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "fvmsnap: standard input: file is truncated: "
			    "stream ends at offset 0x1000\n");
	/* another name stays, and errno's text is appended by the library */
	fvm_error_set(FVM_EIO, ENOSPC, "out.fvm: write at offset %d", 5);
	caught_fail("in.mig", FVM_EIO, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "fvmsnap: in.mig: I/O error: out.fvm: write at offset 5: "
			    "No space left on device\n");
	assert_int_equal(fvm_error_errno(), ENOSPC);
	/* what the input is not replaces "not a libfastvm snapshot" */
	fvm_error_set(FVM_EMAGIC, 0, "x.bin: offset 0: magic 00000000");
	caught_fail("x.bin", FVM_EMAGIC, "not a qcow2 image", buf, sizeof(buf));
	assert_string_equal(buf, "fvmsnap: x.bin: not a qcow2 image: offset 0: magic 00000000\n");
	/* a prefix that is not followed by ": " is no name */
	fvm_error_set(FVM_ECORRUPT, 0, "device state 3: bad");
	caught_fail("device state", FVM_ECORRUPT, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "fvmsnap: device state: corrupt structure: device state 3: bad\n");
	assert_string_equal(cli_input_name("-"), "standard input");
	assert_string_equal(cli_input_name("a.fvm"), "a.fvm");
}

/* Standard input replaced by the read end of a pipe holding data. */
struct piped {
	int saved;  /* the real standard input */
	int writer; /* the pipe's write end, or -1 when closed */
};

static struct piped stdin_from_pipe(const void *data, size_t len, int keep_writer)
{
	struct piped p = { dup(STDIN_FILENO), -1 };
	int fds[2];

	assert_true(p.saved >= 0);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], data, len), (ssize_t)len);
	dup2(fds[0], STDIN_FILENO);
	close(fds[0]);
	if (keep_writer)
		p.writer = fds[1];
	else
		close(fds[1]);
	return p;
}

static void restore_stdin(struct piped *p)
{
	if (p->writer >= 0)
		close(p->writer);
	dup2(p->saved, STDIN_FILENO);
	close(p->saved);
}

static void test_stdin(void **state)
{
	static const char data[] = "FVMSNAP\x1a and the rest of a snapshot";
	const size_t dlen = sizeof(data) - 1;
	struct piped p;
	const char *dir;
	char buf[64];
	size_t got;
	pid_t pid;
	int fd, status;

	(void)state;
	/* peek: the bytes stay in the pipe for the reader that comes next */
	p = stdin_from_pipe(data, dlen, 0);
	assert_int_equal(cli_stdin_seekable(), 0);
	assert_int_equal(cli_peek_stdin(buf, 8, &got), 0);
	assert_int_equal(got, 8);
	assert_memory_equal(buf, "FVMSNAP\x1a", 8);
	assert_int_equal(read(STDIN_FILENO, buf, sizeof(buf)), (ssize_t)dlen);
	assert_memory_equal(buf, data, dlen);
	restore_stdin(&p);

	/* a short input whose writer is gone: fewer bytes, no waiting */
	p = stdin_from_pipe("FV", 2, 0);
	assert_int_equal(cli_peek_stdin(buf, 8, &got), 0);
	assert_int_equal(got, 2);
	restore_stdin(&p);

	/* a writer that starts with a short write: the peek waits for the rest */
	p = stdin_from_pipe("FVM", 3, 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		usleep(20000);
		_exit(write(p.writer, "SNAP\x1a", 5) == 5 ? 0 : 1);
	}
	close(p.writer);
	p.writer = -1;
	assert_int_equal(cli_peek_stdin(buf, 8, &got), 0);
	assert_int_equal(got, 8);
	assert_memory_equal(buf, "FVMSNAP\x1a", 8);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	restore_stdin(&p);

	/* spool: the pipe's content in an unnamed file, at offset 0 */
	p = stdin_from_pipe(data, dlen, 0);
	setenv("TMPDIR", "/tmp", 1);
	assert_int_equal(cli_spool_stdin(&fd, &dir), 0);
	assert_string_equal(dir, "/tmp");
	assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)dlen);
	assert_memory_equal(buf, data, dlen);
	close(fd);
	restore_stdin(&p);

	/* a seekable input is peeked at with pread */
	p.saved = dup(STDIN_FILENO);
	p.writer = -1;
	fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	dup2(fd, STDIN_FILENO);
	close(fd);
	assert_int_equal(cli_stdin_seekable(), 1);
	assert_int_equal(cli_peek_stdin(buf, 4, &got), 0);
	assert_int_equal(got, 4);
	assert_memory_equal(buf, "\x7f" "ELF", 4);
	restore_stdin(&p);
}

static void test_load_env(void **state)
{
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);

	(void)state;
	/* the usage errors go to /dev/null */
	assert_true(saved >= 0 && null >= 0);
	dup2(null, STDERR_FILENO);
	close(null);
	unsetenv("FVM_BACKEND");
	unsetenv("FVM_WILLNEED");
	assert_int_equal(cli_load_env(&lo, &tu), 0);
	assert_int_equal(lo.backend, FVM_BACKEND_AUTO);
	assert_int_equal(tu.willneed_window, 0);
	assert_ptr_equal(lo.tuning, &tu);
	setenv("FVM_BACKEND", "pread", 1);
	setenv("FVM_WILLNEED", "3", 1);
	assert_int_equal(cli_load_env(&lo, &tu), 0);
	assert_int_equal(lo.backend, FVM_BACKEND_PREAD);
	assert_int_equal(tu.willneed_window, 3);
	/* only the automatic choice and a window of 0 are the environment's */
	setenv("FVM_BACKEND", "uring", 1);
	setenv("FVM_WILLNEED", "5", 1);
	lo.backend = FVM_BACKEND_MMAP;
	assert_int_equal(cli_load_env(&lo, &tu), 0);
	assert_int_equal(lo.backend, FVM_BACKEND_MMAP);
	assert_int_equal(tu.willneed_window, 3);
	lo.backend = FVM_BACKEND_AUTO;
	setenv("FVM_BACKEND", "io_uring", 1);
	assert_int_equal(cli_load_env(&lo, &tu), 0);
	assert_int_equal(lo.backend, FVM_BACKEND_URING);
	/* a value that means nothing is an error, not ignored */
	lo.backend = FVM_BACKEND_AUTO;
	setenv("FVM_BACKEND", "mmap", 1);
	assert_int_equal(cli_load_env(&lo, &tu), EXIT_USAGE);
	unsetenv("FVM_BACKEND");
	tu.willneed_window = 0;
	setenv("FVM_WILLNEED", "65", 1);
	assert_int_equal(cli_load_env(&lo, &tu), EXIT_USAGE);
	setenv("FVM_WILLNEED", "2x", 1);
	assert_int_equal(cli_load_env(&lo, &tu), EXIT_USAGE);
	unsetenv("FVM_WILLNEED");
	dup2(saved, STDERR_FILENO);
	close(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_safe_name),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_run_buckets),
		cmocka_unit_test(test_atomic),
		cmocka_unit_test(test_json_and_text),
		cmocka_unit_test(test_fail_format),
		cmocka_unit_test(test_stdin),
		cmocka_unit_test(test_load_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
