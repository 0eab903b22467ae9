/*
 * Unit tests of lib/crc.c's long-input paths: the three-lane interleaved
 * crc32 (inputs of 3 * 1360 bytes and more, every 4 KiB payload chunk) and
 * fvm_crc32c_copy, against a bitwise reference, at every alignment, at the
 * lane-block boundaries and across continuations. test_format checks the
 * check value and short inputs. meson runs this program twice, once with
 * FVM_CRC_SOFT=1, so both the SSE4.2 and the table path are covered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc.h"

#define BUF 20000

/* Bit-at-a-time CRC32C straight from the definition in FORMAT.md 2. */
static uint32_t crc_ref(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static uint8_t *random_buf(void)
{
	uint8_t *b = malloc(BUF + 64);
	uint32_t x = 987654321;

	assert_non_null(b);
	for (size_t i = 0; i < BUF + 64; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 16);
	}
	return b;
}

/* Lengths around one and several three-lane blocks (4080 bytes each). */
static const size_t lens[] = { 4072, 4079, 4080, 4081, 4088, 4095, 4096, 4097,
			       8159, 8160, 8161, 8192, 12240, 12288, 16383, BUF };

static void test_long_inputs(void **state)
{
	uint8_t *b = random_buf();

	(void)state;
	for (size_t off = 0; off < 16; off++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			assert_int_equal(fvm_crc32c(0, b + off, lens[i]),
					 crc_ref(b + off, lens[i]));
	free(b);
}

/* crc(a || b) == crc(crc(a), b), with a lane block on either side of the split. */
static void test_long_continuation(void **state)
{
	uint8_t *b = random_buf();
	uint32_t want = crc_ref(b + 1, 12345);

	(void)state;
	for (size_t s = 0; s <= 12345; s += 101)
		assert_int_equal(fvm_crc32c(fvm_crc32c(0, b + 1, s), b + 1 + s, 12345 - s), want);
	free(b);
}

/* All-zero and all-ones chunks: the lane join must not depend on the data. */
static void test_constant_chunks(void **state)
{
	uint8_t b[4096];

	(void)state;
	memset(b, 0, sizeof(b));
	assert_int_equal(fvm_crc32c(0, b, sizeof(b)), crc_ref(b, sizeof(b)));
	memset(b, 0xff, sizeof(b));
	assert_int_equal(fvm_crc32c(0, b, sizeof(b)), crc_ref(b, sizeof(b)));
}

/* The fused copy: same CRC as fvm_crc32c, exact bytes, nothing written past n. */
static void test_copy(void **state)
{
	uint8_t *b = random_buf();
	uint8_t *d = malloc(BUF + 64);

	(void)state;
	assert_non_null(d);
	for (size_t off = 0; off < 8; off++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			size_t n = lens[i] < BUF ? lens[i] : BUF - 16;

			memset(d, 0xa5, BUF + 64);
			assert_int_equal(fvm_crc32c_copy(0, d + 3 + off, b + off, n),
					 crc_ref(b + off, n));
			assert_memory_equal(d + 3 + off, b + off, n);
			assert_int_equal(d[2 + off], 0xa5);
			assert_int_equal(d[3 + off + n], 0xa5);
		}
	for (size_t n = 0; n < 100; n++)
		assert_int_equal(fvm_crc32c_copy(0x12345678u, d, b, n),
				 fvm_crc32c(0x12345678u, b, n));
	free(d);
	free(b);
}

static void test_crc_path(void **state)
{
	(void)state;
	print_message("crc path: %s\n", getenv("FVM_CRC_SOFT") ? "table (FVM_CRC_SOFT)"
							       : "hardware if available");
}

int main(void)
{
	if (getenv("FVM_CRC_SOFT")) /* the tests pick the path; the library reads no environment */
		fvm_crc_force_soft();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_path),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_long_continuation),
		cmocka_unit_test(test_constant_chunks),
		cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
