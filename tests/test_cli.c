/*
 * Unit tests of the fvmsnap helpers in tools/cli.c: size parsing, the
 * exit-code table, safe file names and escaping, atomic small files.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

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
	cli_print_escaped(f, "a\tb\nc\\d\x01\xc3\xa9");
	fclose(f);
	assert_string_equal(out, "a\\tb\\nc\\\\d\\x01\\xc3\\xa9");
	free(out);
}

static void test_run_buckets(void **state)
{
	char buf[48];

	(void)state;
	assert_int_equal(cli_run_bucket(1), 0);
	assert_int_equal(cli_run_bucket(2), 1);
	assert_int_equal(cli_run_bucket(3), 1);
	assert_int_equal(cli_run_bucket(4), 2);
	assert_int_equal(cli_run_bucket(~0ull), 63);
	assert_int_equal(cli_run_bucket_max(0), 1);
	assert_int_equal(cli_run_bucket_max(2), 7);
	assert_true(cli_run_bucket_max(63) == ~0ull);
	for (unsigned k = 0; k < CLI_RUN_BUCKETS; k++) {
		/* every bucket's bounds fall in it, and the next starts above */
		assert_int_equal(cli_run_bucket(1ull << k), k);
		assert_int_equal(cli_run_bucket(cli_run_bucket_max(k)), k);
	}
	cli_run_bucket_label(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1");
	cli_run_bucket_label(buf, sizeof(buf), 3);
	assert_string_equal(buf, "8-15");
	cli_run_bucket_label(buf, sizeof(buf), 63);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
