/*
 * Unit tests of lib/format.c and lib/crc.c: every encoder round-trips
 * through its decoder, and every rule of doc/FORMAT.md that format.c checks
 * is broken once and must fail with the rule's code and a detail naming the
 * structure and its offset. CRC32C is checked against its check value and a
 * bitwise reference; meson runs this program twice, once with
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
#include "error.h"
#include "format.h"

#define FILE_NAME "t.fvm"

static struct fvm_where at(uint64_t off)
{
	return (struct fvm_where){ FILE_NAME, off };
}

/*
 * The failure must carry the rule's code and a detail that names the file,
 * the structure and (where given) the offset, so a user can find it.
 */
static void check_err_(int rc, int code, const char *structure, const char *offset,
		       const char *file, int line)
{
	const char *d = fvm_error_detail();

	if (rc != code)
		fail_msg("%s:%d: got %d (%s), expected %d (%s); detail: %s", file, line,
			 rc, fvm_strerror(rc), code, fvm_strerror(code), d);
	if (!d[0])
		fail_msg("%s:%d: empty error detail", file, line);
	if (!strstr(d, FILE_NAME))
		fail_msg("%s:%d: detail does not name the file: %s", file, line, d);
	if (structure && !strstr(d, structure))
		fail_msg("%s:%d: detail does not name '%s': %s", file, line, structure, d);
	if (offset && !strstr(d, offset))
		fail_msg("%s:%d: detail does not name offset '%s': %s", file, line, offset, d);
	fvm_err_clear();
}
#define check_err(rc, code, st, off) check_err_((rc), (code), (st), (off), __FILE__, __LINE__)

/* ---------------------------------------------------------------- CRC32C */

/* Bit-at-a-time CRC32C straight from the definition in FORMAT.md 2. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
	uint32_t c = ~crc;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static void test_crc_check_value(void **state)
{
	(void)state;
	/* FORMAT.md 2 and RFC 3720 B.4 */
	assert_int_equal(fvm_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(fvm_crc32c(0, "", 0), 0);
	/* 32 bytes of zeros: iSCSI test vector */
	uint8_t z[32] = { 0 };
	assert_int_equal(fvm_crc32c(0, z, 32), 0x8A9136AAu);
	memset(z, 0xff, sizeof(z));
	assert_int_equal(fvm_crc32c(0, z, 32), 0x62A8AB43u);
}

/* Every alignment and length mix of both paths against the bitwise reference. */
static void test_crc_reference(void **state)
{
	uint8_t buf[1024 + 16];
	uint32_t x = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (size_t off = 0; off < 16; off++)
		for (size_t n = 0; n <= 80; n++)
			assert_int_equal(fvm_crc32c(0, buf + off, n), crc_ref(0, buf + off, n));
	assert_int_equal(fvm_crc32c(0, buf + 3, 1024), crc_ref(0, buf + 3, 1024));
	/* Continuation: crc(a || b) == crc(crc(a), b) for every split. */
	for (size_t s = 0; s <= 100; s++)
		assert_int_equal(fvm_crc32c(fvm_crc32c(0, buf, s), buf + s, 100 - s),
				 crc_ref(0, buf, 100));
}

/*
 * Long inputs: the hardware path splits them into blocks of three
 * interleaved lanes joined by shift tables; cover every length around the
 * block size (3 x 1360 bytes), several blocks, odd tails and alignments.
 */
static void test_crc_long(void **state)
{
	static uint8_t buf[64 * 1024 + 16];
	static const size_t lens[] = { 4079, 4080, 4081, 4088, 4095, 4096, 4097, 4103,
				       8159, 8160, 8161, 8192, 12240, 12241, 12345, 16384,
				       65536 };
	uint32_t x = 777;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			if (fvm_crc32c(0, buf + off, lens[i]) != crc_ref(0, buf + off, lens[i]))
				fail_msg("crc of %zu bytes at alignment %zu differs from the "
					 "reference", lens[i], off);
	/* a seed other than 0 goes through the lanes too */
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_int_equal(fvm_crc32c(0x12345678u, buf + 1, lens[i]),
				 crc_ref(0x12345678u, buf + 1, lens[i]));
	/* continuation over long pieces */
	for (size_t s = 0; s <= 12345; s += 1111)
		assert_int_equal(fvm_crc32c(fvm_crc32c(0, buf, s), buf + s, 12345 - s),
				 crc_ref(0, buf, 12345));
	/* all zeros and all ones, one chunk: what zero-heavy payload looks like */
	memset(buf, 0, 4096);
	assert_int_equal(fvm_crc32c(0, buf, 4096), crc_ref(0, buf, 4096));
	memset(buf, 0xff, 4096);
	assert_int_equal(fvm_crc32c(0, buf, 4096), crc_ref(0, buf, 4096));
}

/* Report which path this run exercises, so the log shows both ran. */
static void test_crc_path(void **state)
{
	(void)state;
	print_message("crc path: %s\n", getenv("FVM_CRC_SOFT") ? "table (FVM_CRC_SOFT)"
							       : "hardware if available");
}

/* ---------------------------------------------------------------- header */

static void header_good(uint8_t h[FVM_HEADER_SIZE])
{
	struct fvm_header hd = { 1, 0, FVM_INCOMPAT_PAYLOAD_CRC, 0x8000000000000001ull, 0, 0, 0, { 0 }, 0 };

	fvm_header_encode(h, &hd);
}

static void header_recrc(uint8_t h[FVM_HEADER_SIZE])
{
	fvm_st32(h + 60, fvm_crc32c(0, h, 60));
}

static void test_header_roundtrip(void **state)
{
	uint8_t h[FVM_HEADER_SIZE];
	struct fvm_header in = { 1, 7, FVM_INCOMPAT_PAYLOAD_CRC, 0xf0f0f0f0f0f0f0f0ull, 0, 0, 0, { 0 }, 0 }, out;

	(void)state;
	fvm_header_encode(h, &in);
	assert_memory_equal(h, FVM_MAGIC, 8);
	assert_int_equal(fvm_ld32(h + 12), FVM_HEADER_SIZE);
	assert_int_equal(fvm_header_decode(h, &out, FILE_NAME), 0);
	assert_int_equal(out.major, 1);
	assert_int_equal(out.minor, 7);
	assert_true(out.incompat == in.incompat);
	/* unknown compatible bits are ignored (FORMAT.md 3) */
	assert_true(out.compat == in.compat);
	for (int i = 32; i < 60; i++)
		assert_int_equal(h[i], 0);
}

static void test_header_rules(void **state)
{
	uint8_t h[FVM_HEADER_SIZE];
	struct fvm_header out;

	(void)state;
	header_good(h); /* R1 */
	h[0] = 'X';
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EMAGIC, "file header", "offset 0");
	header_good(h); /* R1: the \x1a byte matters too */
	h[7] = 0;
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EMAGIC, "file header", NULL);

	header_good(h); /* R2 */
	fvm_st16(h + 8, 2);
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EVERSION, "file header", NULL);
	header_good(h);
	fvm_st16(h + 8, 0);
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EVERSION, "version", NULL);

	header_good(h); /* R3 */
	fvm_st32(h + 12, 128);
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECORRUPT, "header_size", NULL);

	header_good(h); /* R4 */
	fvm_st64(h + 16, FVM_INCOMPAT_PAYLOAD_CRC | 1ull << 63);
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EFEATURE, "file header", "0x10");
	header_good(h);
	fvm_st64(h + 16, 8);
	header_recrc(h);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_EFEATURE, "incompatible", NULL);

	/* R7..R9: COMPRESSED and its codec, level and frame size */
	{
		static const struct { uint64_t incompat; uint8_t codec, shift, extra; int rc;
				      const char *word; } c[] = {
			{ FVM_INCOMPAT_COMPRESSED, 1, 18, 0, 0, NULL },
			{ FVM_INCOMPAT_COMPRESSED, 2, 16, 0, 0, NULL },
			{ FVM_INCOMPAT_COMPRESSED, 0, 18, 0, FVM_EFEATURE, "codec 0" },
			{ FVM_INCOMPAT_COMPRESSED, 3, 18, 0, FVM_EFEATURE, "codec 3" },
			{ FVM_INCOMPAT_COMPRESSED, 1, 15, 0, FVM_ECORRUPT, "frame_shift 15" },
			{ FVM_INCOMPAT_COMPRESSED, 1, 21, 0, FVM_ECORRUPT, "frame_shift 21" },
			{ FVM_INCOMPAT_COMPRESSED | FVM_INCOMPAT_PAYLOAD_CRC, 1, 18, 0,
			  FVM_ECORRUPT, "PAYLOAD_CRC" },
			{ FVM_INCOMPAT_COMPRESSED, 1, 18, 1, FVM_ECORRUPT, "reserved" },
			{ FVM_INCOMPAT_PAYLOAD_CRC, 1, 0, 0, FVM_ECORRUPT, "reserved" },
		};
		for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
			header_good(h);
			fvm_st64(h + 16, c[i].incompat);
			h[32] = c[i].codec;
			h[33] = 5;
			h[34] = c[i].shift;
			h[35] = c[i].extra;
			header_recrc(h);
			if (!c[i].rc) {
				assert_int_equal(fvm_header_decode(h, &out, FILE_NAME), 0);
				assert_int_equal(out.codec, c[i].codec);
				assert_int_equal(out.level, 5);
				assert_int_equal(out.frame_shift, c[i].shift);
			} else {
				check_err(fvm_header_decode(h, &out, FILE_NAME), c[i].rc, c[i].word,
					  NULL);
			}
		}
		/* and the encoder writes them only with COMPRESSED */
		struct fvm_header hc = { 1, 2, FVM_INCOMPAT_COMPRESSED, 0, 2, 9, 17, { 0 }, 0 }, back;
		fvm_header_encode(h, &hc);
		assert_int_equal(fvm_header_decode(h, &back, FILE_NAME), 0);
		assert_int_equal(back.codec, 2);
		assert_int_equal(back.level, 9);
		assert_int_equal(back.frame_shift, 17);
		hc.incompat = 0;
		fvm_header_encode(h, &hc);
		assert_int_equal(fvm_header_decode(h, &back, FILE_NAME), 0);
		assert_int_equal(back.codec, 0);
	}

	{ /* AUTHENTICATED: salt and tag_alg kept (R9b: only 1), bytes 57..59 reserved (R5) */
		struct fvm_header ha = { 1, 3, FVM_INCOMPAT_AUTH, 0, 0, 0, 0, { 0 }, FVM_TAG_ALG_GMAC },
				  back;

		for (int i = 0; i < 16; i++)
			ha.salt[i] = (uint8_t)(0xa0 + i);
		fvm_header_encode(h, &ha);
		assert_int_equal(h[56], 1);
		assert_int_equal(fvm_header_decode(h, &back, FILE_NAME), 0);
		assert_int_equal(back.tag_alg, 1);
		assert_memory_equal(back.salt, ha.salt, 16);
		for (int alg = 0; alg < 256; alg += 85) { /* 0, 85, 170, 255 */
			h[56] = (uint8_t)alg;
			header_recrc(h);
			check_err(fvm_header_decode(h, &back, FILE_NAME), FVM_EUNSUPPORTED,
				  "offset 0x38: tag algorithm", NULL);
		}
		for (int i = 57; i < 60; i++) {
			fvm_header_encode(h, &ha);
			h[i] = 1;
			header_recrc(h);
			check_err(fvm_header_decode(h, &back, FILE_NAME), FVM_ECORRUPT, "reserved",
				  NULL);
		}
		ha.incompat = 0; /* the encoder writes them only with AUTHENTICATED */
		fvm_header_encode(h, &ha);
		assert_int_equal(h[56], 0);
		assert_int_equal(h[40], 0);
	}

	for (int i = 32; i < 60; i++) { /* R5: each reserved byte */
		header_good(h);
		h[i] = 1;
		header_recrc(h);
		check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECORRUPT, "reserved", NULL);
	}

	header_good(h); /* R6 */
	h[59] ^= 1;
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECHECKSUM, "header_crc", NULL);
	header_good(h);
	h[63] ^= 0x80;
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECHECKSUM, "file header", NULL);

	/* R6 before R2..R5: a damaged header reads as damaged, not as "version 2" */
	header_good(h);
	fvm_st16(h + 8, 2);
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECHECKSUM, "file header", NULL);
	header_good(h);
	h[40] = 1;
	check_err(fvm_header_decode(h, &out, FILE_NAME), FVM_ECHECKSUM, "file header", NULL);

	/* every single-bit flip of a good header is refused */
	for (int bit = 0; bit < FVM_HEADER_SIZE * 8; bit++) {
		header_good(h);
		h[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_true(fvm_header_decode(h, &out, FILE_NAME) < 0);
	}
}

/* ---------------------------------------------------------------- record header */

static void test_rechdr_roundtrip(void **state)
{
	static const uint32_t types[] = { FVM_REC_BLCK, FVM_REC_META, FVM_REC_DEVS,
					  FVM_REC_SEGM, FVM_REC_INDX };
	uint8_t body[64], hdr[FVM_RECHDR_SIZE];
	struct fvm_rechdr rh;

	(void)state;
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 7 + 1);
	for (size_t t = 0; t < 5; t++) {
		fvm_rechdr_encode(hdr, types[t], body, 40);
		assert_int_equal(fvm_ld32(hdr), types[t]);
		assert_int_equal(fvm_rechdr_decode(hdr, &rh, 4096, at(0x40)), 0);
		assert_int_equal(rh.type, types[t]);
		assert_int_equal(rh.body_len, 40);
		assert_int_equal(fvm_rechdr_check_crc(&rh, body, at(0x40)), 0);
		/* unknown limit (pipe) */
		assert_int_equal(fvm_rechdr_decode(hdr, &rh, UINT64_MAX, at(0x40)), 0);
		assert_non_null(strstr(fvm_rec_name(types[t]), "record"));
	}
	/* tag spelling: "BLCK" as bytes */
	fvm_rechdr_encode(hdr, FVM_REC_BLCK, body, 0);
	assert_memory_equal(hdr, "BLCK", 4);
	fvm_rechdr_encode(hdr, FVM_REC_INDX, body, 0);
	assert_memory_equal(hdr, "INDX", 4);
	/* crc covers bytes 0..3, 8..15 and the body, not the crc field itself */
	fvm_rechdr_encode(hdr, FVM_REC_META, body, 10);
	{
		uint32_t c = fvm_crc32c(0, hdr, 4);
		c = fvm_crc32c(c, hdr + 8, 8);
		c = fvm_crc32c(c, body, 10);
		assert_int_equal(fvm_ld32(hdr + 4), c);
	}
	/* a body in two parts has the header and crc of the joined body */
	{
		uint8_t h2[FVM_RECHDR_SIZE];

		for (uint64_t split = 0; split <= 40; split += 8) {
			fvm_rechdr_encode(hdr, FVM_REC_DEVS, body, 40);
			fvm_rechdr_encode2(h2, FVM_REC_DEVS, body, split, body + split, 40 - split);
			assert_memory_equal(h2, hdr, FVM_RECHDR_SIZE);
		}
	}
}

static void test_rechdr_rules(void **state)
{
	uint8_t body[64] = { 1, 2, 3 }, hdr[FVM_RECHDR_SIZE];
	struct fvm_rechdr rh;

	(void)state;
	/* R10 */
	fvm_rechdr_encode(hdr, FVM_TAG('J', 'U', 'N', 'K'), body, 8);
	check_err(fvm_rechdr_decode(hdr, &rh, 4096, at(0x1238)), FVM_ECORRUPT,
		  "unknown record type", "0x1238");
	fvm_rechdr_encode(hdr, FVM_TAG('b', 'l', 'c', 'k'), body, 8);
	check_err(fvm_rechdr_decode(hdr, &rh, 4096, at(0x40)), FVM_ECORRUPT, "record", "0x40");

	/* R11: header byte, length byte and body byte each matter; type too */
	fvm_rechdr_encode(hdr, FVM_REC_DEVS, body, 20);
	assert_int_equal(fvm_rechdr_decode(hdr, &rh, 4096, at(0x48)), 0);
	body[19] ^= 1;
	check_err(fvm_rechdr_check_crc(&rh, body, at(0x48)), FVM_ECHECKSUM, "DEVS record", "0x48");
	body[19] ^= 1;
	hdr[4] ^= 1;
	assert_int_equal(fvm_rechdr_decode(hdr, &rh, 4096, at(0x48)), 0);
	check_err(fvm_rechdr_check_crc(&rh, body, at(0x48)), FVM_ECHECKSUM, "crc", NULL);
	fvm_rechdr_encode(hdr, FVM_REC_DEVS, body, 20);
	hdr[8] = 21; /* body_len 21 with the crc of 20 */
	assert_int_equal(fvm_rechdr_decode(hdr, &rh, 4096, at(0x48)), 0);
	check_err(fvm_rechdr_check_crc(&rh, body, at(0x48)), FVM_ECHECKSUM, "DEVS record", NULL);
	fvm_rechdr_encode(hdr, FVM_REC_DEVS, body, 20);
	fvm_st32(hdr, FVM_REC_META); /* type changed after the crc */
	assert_int_equal(fvm_rechdr_decode(hdr, &rh, 4096, at(0x48)), 0);
	check_err(fvm_rechdr_check_crc(&rh, body, at(0x48)), FVM_ECHECKSUM, "META record", NULL);

	/* R12: body past the limit; exactly at the limit is fine */
	fvm_rechdr_encode(hdr, FVM_REC_META, body, 48);
	assert_int_equal(fvm_rechdr_decode(hdr, &rh, 0x100 + 16 + 48, at(0x100)), 0);
	check_err(fvm_rechdr_decode(hdr, &rh, 0x100 + 16 + 47, at(0x100)), FVM_ETRUNCATED,
		  "META record", "0x100");
	/* header itself past the limit, and a huge body_len that would wrap */
	check_err(fvm_rechdr_decode(hdr, &rh, 0x108, at(0x100)), FVM_ETRUNCATED, "META record", NULL);
	fvm_st64(hdr + 8, UINT64_MAX - 8);
	check_err(fvm_rechdr_decode(hdr, &rh, 4096, at(0x100)), FVM_ECORRUPT, "body_len", NULL);
	fvm_rechdr_encode(hdr, FVM_REC_INDX, body, 0);
	fvm_st64(hdr + 8, UINT64_MAX - 8);
	check_err(fvm_rechdr_decode(hdr, &rh, 4096, at(0x100)), FVM_ETRUNCATED, "INDX record", NULL);
	fvm_st64(hdr + 8, 4096);
	check_err(fvm_rechdr_decode(hdr, &rh, 4096, at(8)), FVM_ETRUNCATED, "INDX record", NULL);

	/* R13: each type's limit, accepted at the limit and refused past it */
	static const struct { uint32_t type; uint64_t max; } lim[] = {
		{ FVM_REC_BLCK, 17 + 255 }, { FVM_REC_META, 1ull << 24 },
		{ FVM_REC_DEVS, 1ull << 30 }, { FVM_REC_SEGM, 1ull << 26 },
	};
	for (size_t i = 0; i < 4; i++) {
		fvm_st32(hdr, lim[i].type);
		fvm_st64(hdr + 8, lim[i].max);
		assert_int_equal(fvm_rechdr_decode(hdr, &rh, UINT64_MAX, at(0x40)), 0);
		fvm_st64(hdr + 8, lim[i].max + 1);
		check_err(fvm_rechdr_decode(hdr, &rh, UINT64_MAX, at(0x40)), FVM_ECORRUPT,
			  fvm_rec_name(lim[i].type), "0x40");
	}
}

/* ---------------------------------------------------------------- BLCK */

static size_t block_good(uint8_t *b, const char *name, uint32_t id)
{
	struct fvm_block_rec r = { id, 12, 1 << 20, (uint8_t)strlen(name), { 0 } };

	memcpy(r.name, name, r.name_len);
	return fvm_block_encode(b, &r);
}

static void test_block_roundtrip(void **state)
{
	uint8_t body[17 + 255];
	struct fvm_block_rec in = { 3, 21, 1ull << 40, 255, { 0 } }, out;

	(void)state;
	memset(in.name, 'n', 255);
	in.name[0] = 'p';
	assert_int_equal(fvm_block_encode(body, &in), 17 + 255);
	assert_int_equal(fvm_block_decode(body, 17 + 255, 3, &out, at(0x40)), 0);
	assert_int_equal(out.id, 3);
	assert_int_equal(out.page_shift, 21);
	assert_true(out.length == 1ull << 40);
	assert_int_equal(out.name_len, 255);
	assert_int_equal(strlen(out.name), 255);
	assert_memory_equal(out.name, in.name, 255);

	/* extremes: 1 GiB pages, 2^48 bytes, one-byte name */
	struct fvm_block_rec g = { 0, 30, 1ull << 48, 1, "x" };
	size_t n = fvm_block_encode(body, &g);
	assert_int_equal(n, 18);
	assert_int_equal(fvm_block_decode(body, n, 0, &out, at(0x40)), 0);
	assert_string_equal(out.name, "x");
	assert_int_equal(out.page_shift, 30);
}

static void test_block_rules(void **state)
{
	uint8_t b[17 + 255];
	struct fvm_block_rec out;
	size_t n;

	(void)state;
	n = block_good(b, "pc.ram", 0);
	assert_int_equal(fvm_block_decode(b, n, 0, &out, at(0x40)), 0);
	check_err(fvm_block_decode(b, 16, 0, &out, at(0x40)), FVM_ECORRUPT, "BLCK record", "0x40");

	check_err(fvm_block_decode(b, n, 1, &out, at(0x58)), FVM_ECORRUPT, "block_id", "0x58"); /* R20 */

	for (uint32_t s = 0; s < 64; s++) { /* R21 */
		n = block_good(b, "pc.ram", 0);
		fvm_st32(b + 4, s);
		fvm_st64(b + 8, 1ull << 30); /* a multiple of every valid page size */
		if (s >= 12 && s <= 30)
			assert_int_equal(fvm_block_decode(b, n, 0, &out, at(0x40)), 0);
		else
			check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT,
				  "page_shift", "0x40");
	}
	fvm_st32(b + 4, 0x8000000c); /* 12 in the low bits must not pass */
	check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT, "page_shift", NULL);

	static const uint64_t bad_len[] = { 0, 4095, 4097, (1ull << 48) + 4096, UINT64_MAX,
					    1ull << 63 };
	for (size_t i = 0; i < sizeof(bad_len) / sizeof(bad_len[0]); i++) { /* R22 */
		n = block_good(b, "pc.ram", 0);
		fvm_st64(b + 8, bad_len[i]);
		check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT, "length", NULL);
	}
	n = block_good(b, "pc.ram", 0); /* R22 with 2 MiB pages: 1 MiB is not a multiple */
	fvm_st32(b + 4, 21);
	check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT, "length", NULL);

	n = block_good(b, "pc.ram", 0); /* R23 */
	b[16] = 0;
	check_err(fvm_block_decode(b, 17, 0, &out, at(0x40)), FVM_ECORRUPT, "empty block name", NULL);

	n = block_good(b, "pc.ram", 0); /* R24: NUL in the name */
	b[17 + 2] = 0;
	check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT, "NUL", "0x40");
	n = block_good(b, "pc.ram", 0);
	b[n - 1] = 0;
	check_err(fvm_block_decode(b, n, 0, &out, at(0x40)), FVM_ECORRUPT, "NUL", NULL);

	n = block_good(b, "pc.ram", 0); /* R25: body_len != 17 + name_len both ways */
	check_err(fvm_block_decode(b, n - 1, 0, &out, at(0x40)), FVM_ECORRUPT, "body_len", NULL);
	b[n] = 'x';
	check_err(fvm_block_decode(b, n + 1, 0, &out, at(0x40)), FVM_ECORRUPT, "body_len", NULL);
}

/* ---------------------------------------------------------------- META */

static void test_meta_roundtrip(void **state)
{
	uint8_t body[8 + 255 + 300];
	struct fvm_meta_rec in = { "creator", 7, "fvmsnap 0.1.0", 13 }, out;
	char key[255];

	(void)state;
	assert_int_equal(fvm_meta_size(7, 13), 28);
	fvm_meta_encode(body, &in);
	assert_int_equal(fvm_meta_decode(body, 28, &out, at(0x80)), 0);
	assert_int_equal(out.key_len, 7);
	assert_int_equal(out.value_len, 13);
	assert_memory_equal(out.key, "creator", 7);
	assert_memory_equal(out.value, "fvmsnap 0.1.0", 13);
	assert_ptr_equal(out.key, (const char *)body + 8);

	/* empty value, longest key */
	memset(key, 'k', sizeof(key));
	in = (struct fvm_meta_rec){ key, 255, "", 0 };
	fvm_meta_encode(body, &in);
	assert_int_equal(fvm_meta_decode(body, fvm_meta_size(255, 0), &out, at(0x80)), 0);
	assert_int_equal(out.key_len, 255);
	assert_int_equal(out.value_len, 0);
}

static void test_meta_rules(void **state)
{
	uint8_t b[64];
	struct fvm_meta_rec m = { "source", 6, "vm.mig", 6 }, out;
	size_t n = fvm_meta_size(6, 6);

	(void)state;
	fvm_meta_encode(b, &m);
	check_err(fvm_meta_decode(b, 7, &out, at(0x90)), FVM_ECORRUPT, "META record", "0x90");
	b[0] = 0; /* R30 */
	check_err(fvm_meta_decode(b, n, &out, at(0x90)), FVM_ECORRUPT, "empty key", "0x90");
	for (int i = 1; i < 4; i++) { /* reserved */
		fvm_meta_encode(b, &m);
		b[i] = 1;
		check_err(fvm_meta_decode(b, n, &out, at(0x90)), FVM_ECORRUPT, "reserved", NULL);
	}
	fvm_meta_encode(b, &m); /* R31 */
	check_err(fvm_meta_decode(b, n + 1, &out, at(0x90)), FVM_ECORRUPT, "META record", NULL);
	check_err(fvm_meta_decode(b, n - 1, &out, at(0x90)), FVM_ECORRUPT, "body_len", NULL);
	fvm_st32(b + 4, UINT32_MAX); /* value_len that would wrap a 32-bit sum */
	check_err(fvm_meta_decode(b, n, &out, at(0x90)), FVM_ECORRUPT, "META record", NULL);
	fvm_meta_encode(b, &m); /* R32: NUL in key, NUL in value */
	b[8 + 1] = 0;
	check_err(fvm_meta_decode(b, n, &out, at(0x90)), FVM_ECORRUPT, "NUL", NULL);
	fvm_meta_encode(b, &m);
	b[n - 1] = 0;
	check_err(fvm_meta_decode(b, n, &out, at(0x90)), FVM_ECORRUPT, "NUL", NULL);
}

/* ---------------------------------------------------------------- DEVS */

static void test_devs_roundtrip(void **state)
{
	uint8_t b[8 + 255 + 100];
	struct fvm_devs_rec out;
	size_t h;

	(void)state;
	h = fvm_devs_encode_head(b, "qemu.vmstate", 12, 0);
	assert_int_equal(h, 20);
	memset(b + h, 0xab, 100);
	assert_int_equal(fvm_devs_decode(b, h + 100, &out, at(0xa0)), 0);
	assert_int_equal(out.name_len, 12);
	assert_memory_equal(out.name, "qemu.vmstate", 12);
	assert_ptr_equal(out.data, b + 20);
	assert_int_equal(out.data_len, 100);

	/* empty name and empty data are allowed */
	h = fvm_devs_encode_head(b, "", 0, 0);
	assert_int_equal(h, 8);
	assert_int_equal(fvm_devs_decode(b, 8, &out, at(0xa0)), 0);
	assert_int_equal(out.name_len, 0);
	assert_int_equal(out.data_len, 0);
}

/* R43, R44: a section continued over several DEVS records. */
static void test_devs_parts(void **state)
{
	uint8_t a[64], b[64];
	struct fvm_devs_rec ra, rb;
	struct fvm_devs_prev prev = { 0 };

	(void)state;
	fvm_devs_encode_head(a, "vfio", 4, FVM_DEVS_CONTINUES);
	assert_int_equal(fvm_devs_decode(a, 12 + 10, &ra, at(0x100)), 0);
	assert_int_equal(fvm_devs_follows(&prev, &ra, at(0x100)), 0);
	assert_int_equal(fvm_devs_check_end(&prev, FILE_NAME), 0);
	fvm_devs_prev_set(&prev, &ra, 0x100);
	/* R44: the file may not end inside a section */
	check_err(fvm_devs_check_end(&prev, FILE_NAME), FVM_ECORRUPT, "no DEVS record follows",
		  "0x100");
	/* R43: the next record is the same section */
	fvm_devs_encode_head(b, "vfiO", 4, 0);
	assert_int_equal(fvm_devs_decode(b, 12, &rb, at(0x200)), 0);
	check_err(fvm_devs_follows(&prev, &rb, at(0x200)), FVM_ECORRUPT, "continues", "0x100");
	fvm_devs_encode_head(b, "vfi", 3, 0);
	assert_int_equal(fvm_devs_decode(b, 11, &rb, at(0x200)), 0);
	check_err(fvm_devs_follows(&prev, &rb, at(0x200)), FVM_ECORRUPT, "continues", "0x200");
	fvm_devs_encode_head(b, "vfio", 4, 0);
	assert_int_equal(fvm_devs_decode(b, 12, &rb, at(0x200)), 0);
	assert_int_equal(fvm_devs_follows(&prev, &rb, at(0x200)), 0);
	fvm_devs_prev_set(&prev, &rb, 0x200);
	assert_int_equal(fvm_devs_check_end(&prev, FILE_NAME), 0);
}

static void test_devs_rules(void **state)
{
	uint8_t b[64];
	struct fvm_devs_rec out;
	size_t h;

	(void)state;
	h = fvm_devs_encode_head(b, "dev", 3, 0); /* R41: body too short for the name */
	check_err(fvm_devs_decode(b, 7, &out, at(0xb0)), FVM_ECORRUPT, "DEVS record", "0xb0");
	check_err(fvm_devs_decode(b, h - 1, &out, at(0xb0)), FVM_ECORRUPT, "too short", NULL);
	assert_int_equal(fvm_devs_decode(b, h, &out, at(0xb0)), 0);
	for (int i = 2; i < 8; i++) { /* reserved */
		fvm_devs_encode_head(b, "dev", 3, 0);
		b[i] = 0x80;
		check_err(fvm_devs_decode(b, h, &out, at(0xb0)), FVM_ECORRUPT, "reserved", NULL);
	}
	for (int bit = 1; bit < 8; bit++) { /* R42: flags other than CONTINUES */
		fvm_devs_encode_head(b, "dev", 3, (uint8_t)(1u << bit));
		check_err(fvm_devs_decode(b, h, &out, at(0xb0)), FVM_ECORRUPT, "unknown flags",
			  "0xb0");
	}
	fvm_devs_encode_head(b, "dev", 3, FVM_DEVS_CONTINUES);
	assert_int_equal(fvm_devs_decode(b, h, &out, at(0xb0)), 0);
	assert_int_equal(out.flags, FVM_DEVS_CONTINUES);
	fvm_devs_encode_head(b, "dev", 3, 0); /* R40 */
	b[9] = 0;
	check_err(fvm_devs_decode(b, h, &out, at(0xb0)), FVM_ECORRUPT, "NUL", "0xb0");
}

/* ---------------------------------------------------------------- SEGM */

/* Blocks used by the segment and index tests: 16 pages of 4 KiB, 4 of 2 MiB. */
static const struct fvm_blockdesc blocks2[2] = { { 16, 12 }, { 4, 21 } };

static size_t seg_build(uint8_t *b, const struct fvm_entry *e, uint32_t n, int with_crc)
{
	uint64_t payload = 0;
	struct fvm_seghdr sh;

	for (uint32_t i = 0; i < n; i++)
		if (e[i].flags & FVM_RUN_FLAG_DATA)
			payload += e[i].page_count << blocks2[e[i].block_id].page_shift;
	sh = (struct fvm_seghdr){ n, payload };
	fvm_seghdr_encode(b, &sh);
	for (uint32_t i = 0; i < n; i++)
		fvm_entry_encode(b + FVM_SEGHDR_SIZE + i * FVM_ENTRY_SIZE, &e[i]);
	size_t len = (size_t)fvm_seg_body_len(n, payload, with_crc * FVM_CHK_CRC);
	memset(b + FVM_SEGHDR_SIZE + n * FVM_ENTRY_SIZE, 0x5a,
	       len - FVM_SEGHDR_SIZE - n * FVM_ENTRY_SIZE);
	return len;
}

static const struct fvm_entry seg_entries[3] = {
	{ 0, FVM_RUN_FLAG_DATA, 0, 3 },
	{ 0, 0, 3, 13 },
	{ 1, FVM_RUN_FLAG_DATA, 2, 2 },
};

static void test_seg_roundtrip(void **state)
{
	static uint8_t b[16 + 24 * 3 + 4 * 2048];
	struct fvm_entry out[3];
	struct fvm_seghdr sh;

	(void)state;
	for (int crc = 0; crc < 2; crc++) {
		size_t n = seg_build(b, seg_entries, 3, crc);
		uint64_t payload = 3 * 4096 + 2 * (2u << 20);

		assert_int_equal(n, 16 + 72 + (crc ? payload / 4096 * 4 : 0));
		assert_int_equal(fvm_seg_entry_count(b, n), 3);
		assert_int_equal(fvm_seg_decode(b, n, crc * FVM_CHK_CRC, blocks2, 2, &sh, out, at(0x1000)), 0);
		assert_int_equal(sh.entry_count, 3);
		assert_true(sh.payload_len == payload);
		assert_memory_equal(out, seg_entries, sizeof(out));
	}
	assert_int_equal(fvm_seg_entry_count(b, 15), 0);
	/* payload offset: next 4096 boundary after the body */
	assert_int_equal(fvm_seg_payload_offset(0x40, 88), 0x1000);
	assert_int_equal(fvm_seg_payload_offset(0x1000 - 16 - 88, 88), 0x1000);
	assert_int_equal(fvm_seg_payload_offset(0x1000 - 16 - 87, 88), 0x2000);
	assert_int_equal(fvm_rec_next(0x40, 17), 0x68);
	assert_int_equal(fvm_rec_next(0x40, 16), 0x60);
	assert_int_equal(fvm_rec_next(0x40, 9), 0x60);
}

#define SEG_DECODE(b, n, crc, sh, out, off) \
	fvm_seg_decode((b), (n), (crc) * FVM_CHK_CRC, blocks2, 2, (sh), (out), at(off))

static void test_seg_rules(void **state)
{
	static uint8_t b[16 + 24 * 8 + 4 * 4096];
	struct fvm_entry e[3], out[8];
	struct fvm_seghdr sh;
	size_t n;

	(void)state;
	n = seg_build(b, seg_entries, 3, 0);
	check_err(SEG_DECODE(b, 15, 0, &sh, out, 0x2000), FVM_ECORRUPT, "SEGM record", "0x2000");

	fvm_st32(b, 0); /* R50 */
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "entry_count", "0x2000");
	fvm_st32(b, 65537);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "entry_count", NULL);

	n = seg_build(b, seg_entries, 3, 0); /* reserved */
	b[5] = 1;
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "reserved", NULL);

	/* R51: payload_len that does not match the DATA entries (more and less) */
	n = seg_build(b, seg_entries, 3, 0);
	fvm_st64(b + 8, fvm_ld64(b + 8) + 4096);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "payload_len", NULL);
	n = seg_build(b, seg_entries, 3, 0);
	fvm_st64(b + 8, fvm_ld64(b + 8) - 4096);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "DATA entries", NULL);
	/* R51 with the crc area sized for the wrong payload_len, so R52 holds */
	memcpy(e, seg_entries, sizeof(e));
	e[2].flags = 0;
	n = seg_build(b, e, 3, 1); /* payload 3 pages */
	e[2].flags = FVM_RUN_FLAG_DATA;
	fvm_entry_encode(b + 16 + 2 * 24, &e[2]); /* now claims 2 MiB pages more */
	check_err(SEG_DECODE(b, n, 1, &sh, out, 0x2000), FVM_ECORRUPT, "payload_len", NULL);

	/* R52: body_len other than 16 + 24n (+ crcs) */
	n = seg_build(b, seg_entries, 3, 0);
	check_err(SEG_DECODE(b, n + 8, 0, &sh, out, 0x2000), FVM_ECORRUPT, "body_len", NULL);
	check_err(SEG_DECODE(b, n - 24, 0, &sh, out, 0x2000), FVM_ECORRUPT, "body_len", NULL);
	check_err(SEG_DECODE(b, n, 1, &sh, out, 0x2000), FVM_ECORRUPT, "body_len", NULL); /* crcs missing */
	n = seg_build(b, seg_entries, 3, 1);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "body_len", NULL);
	check_err(SEG_DECODE(b, n - 4, 1, &sh, out, 0x2000), FVM_ECORRUPT, "body_len", NULL);

	/* R53 */
	memcpy(e, seg_entries, sizeof(e));
	e[1].block_id = 2;
	n = seg_build(b, e, 2, 0);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "block_id", "entry 1");
	e[1].block_id = UINT32_MAX;
	n = seg_build(b, e, 2, 0);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "not declared", NULL);

	/* R54 */
	for (int bit = 1; bit < 32; bit++) {
		memcpy(e, seg_entries, sizeof(e));
		e[1].flags = 1u << bit;
		n = seg_build(b, e, 2, 0);
		check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "flags", NULL);
	}

	/* R55: count 0, first past the end, range past the end, wrapping sum */
	static const struct { uint64_t first, count; } bad[] = {
		{ 0, 0 }, { 16, 1 }, { 15, 2 }, { 0, 17 }, { 1, UINT64_MAX },
		{ UINT64_MAX, 2 }, { 8, UINT64_MAX - 7 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fvm_entry z = { 0, 0, bad[i].first, bad[i].count };

		n = seg_build(b, &z, 1, 0);
		check_err(SEG_DECODE(b, n, 0, &sh, out, 0x3000), FVM_ERANGE, "SEGM record", "0x3000");
		/* as a DATA entry, with payload_len set as if it fitted */
		z.flags = FVM_RUN_FLAG_DATA;
		fvm_seghdr_encode(b, &(struct fvm_seghdr){ 1, 4096 });
		fvm_entry_encode(b + 16, &z);
		check_err(SEG_DECODE(b, 16 + 24, 0, &sh, out, 0x3000), FVM_ERANGE, "pages", NULL);
	}
	{ /* exactly up to the end is fine; in the 2 MiB block too */
		struct fvm_entry z[2] = { { 0, 0, 15, 1 }, { 1, 0, 0, 4 } };
		n = seg_build(b, z, 2, 0);
		assert_int_equal(SEG_DECODE(b, n, 0, &sh, out, 0x3000), 0);
		z[1].first_page = 1;
		n = seg_build(b, z, 2, 0);
		check_err(SEG_DECODE(b, n, 0, &sh, out, 0x3000), FVM_ERANGE, "entry 1", NULL);
	}

	/* R56 (the part format.c checks): payload_len a multiple of 4096, at most 2^32 */
	n = seg_build(b, seg_entries, 3, 0);
	fvm_st64(b + 8, fvm_ld64(b + 8) + 1);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "payload_len", NULL);
	fvm_st64(b + 8, (1ull << 32) + 4096);
	check_err(SEG_DECODE(b, n, 0, &sh, out, 0x2000), FVM_ECORRUPT, "payload_len", NULL);
	/* a payload_len that would overflow the crc-area size must not pass R52 */
	fvm_st64(b + 8, UINT64_MAX & ~4095ull);
	check_err(SEG_DECODE(b, n, 1, &sh, out, 0x2000), FVM_ECORRUPT, "SEGM record", NULL);
}

/* ---------------------------------------------------------------- INDX */

static void test_index_roundtrip(void **state)
{
	uint8_t b[FVM_INDEXHDR_SIZE], x[FVM_EXTENT_SIZE];
	struct fvm_indexhdr ih = { 2, 3, 4, 5, 0, 0, 0 }, oh;
	struct fvm_extent e = { 1, FVM_RUN_FLAG_DATA, 1, 2, 0x200000, 0x1010 }, oe;

	(void)state;
	assert_int_equal(fvm_index_body_len(&ih), 24 + 8 * 9 + 40 * 5);
	fvm_indexhdr_encode(b, &ih);
	assert_int_equal(fvm_indexhdr_decode(b, 24 + 8 * 9 + 40 * 5, &oh, at(0x9000)), 0);
	assert_int_equal(oh.block_count, 2);
	assert_int_equal(oh.meta_count, 3);
	assert_int_equal(oh.devstate_count, 4);
	assert_int_equal(oh.extent_count, 5);

	fvm_extent_encode(x, &e);
	assert_int_equal(fvm_extent_decode(x, &oe, blocks2, 2, FVM_CHK_CRC, 0x600000, 0, at(0x9000)), 0);
	assert_memory_equal(&oe, &e, sizeof(e));
	e = (struct fvm_extent){ 0, 0, 4, 12, 0, 0 };
	fvm_extent_encode(x, &e);
	assert_int_equal(fvm_extent_decode(x, &oe, blocks2, 2, FVM_CHK_CRC, 0x600000, 0, at(0x9000)), 0);
	assert_memory_equal(&oe, &e, sizeof(e));
	/* without PAYLOAD_CRC the crc_offset is 0 */
	e = (struct fvm_extent){ 0, FVM_RUN_FLAG_DATA, 0, 16, 0x1000, 0 };
	fvm_extent_encode(x, &e);
	assert_int_equal(fvm_extent_decode(x, &oe, blocks2, 2, 0, 0x11000, 0, at(0x9000)), 0);

	/* empty index */
	ih = (struct fvm_indexhdr){ 0, 0, 0, 0, 0, 0, 0 };
	fvm_indexhdr_encode(b, &ih);
	assert_int_equal(fvm_indexhdr_decode(b, 24, &oh, at(0x40)), 0);
	assert_int_equal(oh.extent_count, 0);
}

static void test_index_rules(void **state)
{
	uint8_t b[FVM_INDEXHDR_SIZE];
	struct fvm_indexhdr ih = { 1, 0, 0, 2, 0, 0, 0 }, oh;

	(void)state;
	fvm_indexhdr_encode(b, &ih);
	check_err(fvm_indexhdr_decode(b, 23, &oh, at(0x7000)), FVM_ECORRUPT, "INDX record", "0x7000");
	b[12] = 1; /* reserved */
	check_err(fvm_indexhdr_decode(b, 24 + 8 + 80, &oh, at(0x7000)), FVM_ECORRUPT, "reserved", NULL);

	ih = (struct fvm_indexhdr){ 65537, 0, 0, 0, 0, 0, 0 }; /* R26 */
	fvm_indexhdr_encode(b, &ih);
	check_err(fvm_indexhdr_decode(b, fvm_index_body_len(&ih), &oh, at(0x7000)), FVM_ECORRUPT,
		  "block_count", "0x7000");
	ih.block_count = 65536;
	fvm_indexhdr_encode(b, &ih);
	assert_int_equal(fvm_indexhdr_decode(b, fvm_index_body_len(&ih), &oh, at(0x7000)), 0);

	/* R60: body_len other than the counts say, including counts that would wrap */
	ih = (struct fvm_indexhdr){ 1, 2, 3, 4, 0, 0, 0 };
	fvm_indexhdr_encode(b, &ih);
	check_err(fvm_indexhdr_decode(b, fvm_index_body_len(&ih) + 8, &oh, at(0x7000)),
		  FVM_ECORRUPT, "INDX record", NULL);
	check_err(fvm_indexhdr_decode(b, fvm_index_body_len(&ih) - 40, &oh, at(0x7000)),
		  FVM_ECORRUPT, "body_len", NULL);
	ih.meta_count = UINT32_MAX;
	fvm_indexhdr_encode(b, &ih);
	check_err(fvm_indexhdr_decode(b, 4096, &oh, at(0x7000)), FVM_ECORRUPT, "INDX record", NULL);
	/* extent_count * 40 wrapping to the real body length */
	ih = (struct fvm_indexhdr){ 0, 0, 0, 0, 0, 0, 0 };
	fvm_indexhdr_encode(b, &ih);
	fvm_st64(b + 16, (UINT64_MAX / 40) + 2); /* 40 * this wraps to a small number */
	check_err(fvm_indexhdr_decode(b, 24 + (uint64_t)(40 * ((UINT64_MAX / 40) + 2)), &oh,
				      at(0x7000)), FVM_ECORRUPT, "INDX record", NULL);
}

static int ext_decode(const struct fvm_extent *e, int with_crc, uint64_t index_offset)
{
	uint8_t x[FVM_EXTENT_SIZE];
	struct fvm_extent o;

	fvm_extent_encode(x, e);
	return fvm_extent_decode(x, &o, blocks2, 2, with_crc * FVM_CHK_CRC, index_offset, 7, at(0x8000));
}
#define EXT_DECODE ext_decode

static void test_extent_rules(void **state)
{
	const uint64_t idx = 0x600000; /* index offset */
	struct fvm_extent e;

	(void)state;
	e = (struct fvm_extent){ 2, 0, 0, 1, 0, 0 }; /* R62 */
	check_err(EXT_DECODE(&e, 0, idx), FVM_ECORRUPT, "block_id", "extent 7");
	for (int bit = 1; bit < 32; bit++) { /* R63 */
		e = (struct fvm_extent){ 0, 1u << bit, 0, 1, 0, 0 };
		check_err(EXT_DECODE(&e, 0, idx), FVM_ECORRUPT, "flags", "0x8000");
	}
	/* R64 */
	static const struct { uint32_t blk; uint64_t first, count; } bad[] = {
		{ 0, 0, 0 }, { 0, 16, 1 }, { 0, 10, 7 }, { 1, 4, 1 }, { 1, 0, 5 },
		{ 0, 1, UINT64_MAX }, { 0, UINT64_MAX, 1 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (struct fvm_extent){ bad[i].blk, 0, bad[i].first, bad[i].count, 0, 0 };
		check_err(EXT_DECODE(&e, 0, idx), FVM_ERANGE, "INDX record", "extent 7");
		e.flags = FVM_RUN_FLAG_DATA;
		e.payload_offset = 0x1000;
		check_err(EXT_DECODE(&e, 0, idx), FVM_ERANGE, "pages", NULL);
	}
	/* R65: payload unaligned, inside the header, past the index, ending past it */
	static const uint64_t badoff[] = { 0x1001, 0x1800, 0, idx, idx - 0x1000, UINT64_MAX & ~4095ull,
					   idx + 0x1000 };
	for (size_t i = 0; i < sizeof(badoff) / sizeof(badoff[0]); i++) {
		e = (struct fvm_extent){ 0, FVM_RUN_FLAG_DATA, 0, 2, badoff[i], 0 };
		check_err(EXT_DECODE(&e, 0, idx), FVM_ERANGE, "payload", "0x8000");
	}
	e = (struct fvm_extent){ 0, FVM_RUN_FLAG_DATA, 0, 2, idx - 0x2000, 0 }; /* ends at the index */
	assert_int_equal(EXT_DECODE(&e, 0, idx), 0);
	e = (struct fvm_extent){ 1, FVM_RUN_FLAG_DATA, 0, 1, idx - 0x1000, 0 }; /* 2 MiB past */
	check_err(EXT_DECODE(&e, 0, idx), FVM_ERANGE, "payload", NULL);
	/* R65 crc_offset: required inside the file with PAYLOAD_CRC, 0 without */
	e = (struct fvm_extent){ 0, FVM_RUN_FLAG_DATA, 0, 2, 0x1000, 0 };
	check_err(EXT_DECODE(&e, 1, idx), FVM_ERANGE, "crc_offset", "extent 7");
	e.crc_offset = idx - 4; /* 2 CRCs need 8 bytes */
	check_err(EXT_DECODE(&e, 1, idx), FVM_ERANGE, "crc_offset", NULL);
	e.crc_offset = UINT64_MAX;
	check_err(EXT_DECODE(&e, 1, idx), FVM_ERANGE, "crc_offset", NULL);
	e.crc_offset = idx - 8;
	assert_int_equal(EXT_DECODE(&e, 1, idx), 0);
	check_err(EXT_DECODE(&e, 0, idx), FVM_ERANGE, "crc_offset", NULL);
	/* zero runs carry neither offset */
	e = (struct fvm_extent){ 0, 0, 0, 2, 0x1000, 0 };
	check_err(EXT_DECODE(&e, 0, idx), FVM_ECORRUPT, "zero run", "extent 7");
	e = (struct fvm_extent){ 0, 0, 0, 2, 0, 0x1000 };
	check_err(EXT_DECODE(&e, 1, idx), FVM_ECORRUPT, "zero run", NULL);
}

static void test_extent_overlap(void **state)
{
	struct fvm_extent e[4] = {
		{ 0, FVM_RUN_FLAG_DATA, 0, 4, 0x1000, 0 },
		{ 0, 0, 4, 12, 0, 0 },
		{ 1, FVM_RUN_FLAG_DATA, 0, 1, 0x200000, 0 },
		{ 1, FVM_RUN_FLAG_DATA, 3, 1, 0x400000, 0 },
	};
	const struct fvm_blockdesc *bl = blocks2;

	(void)state;
	assert_int_equal(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), 0);
	assert_int_equal(fvm_extents_check_overlap(e, 0, bl, at(0x9000)), 0);
	assert_int_equal(fvm_extents_check_overlap(e, 1, bl, at(0x9000)), 0);

	/* R66: one page in two extents (zero vs data, data vs data, other block same pages ok) */
	e[1].first_page = 3;
	e[1].page_count = 13;
	check_err(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), FVM_ECORRUPT, "page 3", "0x9000");
	e[1].first_page = 4;
	e[1].page_count = 12;
	e[3].first_page = 0;
	check_err(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), FVM_ECORRUPT, "block 1", NULL);
	e[3].first_page = 3;
	/* same page ranges in different blocks do not overlap */
	e[2].first_page = 0;
	assert_int_equal(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), 0);

	/* R67: two DATA extents sharing payload bytes */
	e[3].payload_offset = 0x200000 + 0x1ff000; /* inside e[2]'s 2 MiB */
	check_err(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), FVM_ECORRUPT, "payload",
		  "0x3ff000");
	e[3].payload_offset = 0x400000;
	e[0].payload_offset = 0x200000 + 0x1000 * 0; /* e[0] and e[2] start together */
	check_err(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), FVM_ECORRUPT, "payload", NULL);
	e[0].payload_offset = 0x1fc000; /* ends exactly where e[2] starts: fine */
	assert_int_equal(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), 0);
	e[0].payload_offset = 0x1fd000;
	check_err(fvm_extents_check_overlap(e, 4, bl, at(0x9000)), FVM_ECORRUPT, "payload", NULL);
}

/* ---------------------------------------------------------------- footer */

static void footer_recrc(uint8_t f[FVM_FOOTER_SIZE])
{
	fvm_st32(f + 24, fvm_crc32c(0, f, 24));
}

static void test_footer_roundtrip(void **state)
{
	uint8_t f[FVM_FOOTER_SIZE];
	struct fvm_footer in = { 0x3000, 16 + 24 + 8, 0x3000 + 48 + 32 }, out;

	(void)state;
	fvm_footer_encode(f, &in);
	assert_memory_equal(f + 28, "FVME", 4);
	assert_int_equal(fvm_footer_decode(f, &out, in.file_size, FILE_NAME), 0);
	assert_memory_equal(&out, &in, sizeof(in));
	/* index_len not a multiple of 8: the index is padded up to the footer */
	in = (struct fvm_footer){ 0x3000, 16 + 24 + 8 + 40 - 4, 0x3000 + 88 + 32 };
	fvm_footer_encode(f, &in);
	assert_int_equal(fvm_footer_decode(f, &out, in.file_size, FILE_NAME), 0);
	assert_memory_equal(&out, &in, sizeof(in));
}

static void test_footer_rules(void **state)
{
	uint8_t f[FVM_FOOTER_SIZE];
	const uint64_t size = 0x3000 + 48 + 32;
	struct fvm_footer good = { 0x3000, 48, size }, out, t;

	(void)state;
	fvm_footer_encode(f, &good); /* R74 */
	f[31] = 'X';
	check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ETRUNCATED, "footer", "0x3030");
	memset(f, 0, sizeof(f)); /* a file cut inside zero padding */
	check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ETRUNCATED, "footer magic", NULL);

	fvm_footer_encode(f, &good); /* R73 */
	f[3] ^= 4;
	check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ECHECKSUM, "footer_crc", "0x3030");
	fvm_footer_encode(f, &good);
	f[25] ^= 4;
	check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ECHECKSUM, "footer", NULL);

	/* R72: the footer's file_size must be the real size (cut or appended) */
	fvm_footer_encode(f, &good);
	check_err(fvm_footer_decode(f, &out, size + 8, FILE_NAME), FVM_ETRUNCATED, "file_size", NULL);
	check_err(fvm_footer_decode(f, &out, size - 8, FILE_NAME), FVM_ETRUNCATED, "file_size", NULL);

	/* R70: unaligned, inside the header, at or past the footer */
	static const uint64_t badoff[] = { 0x3001, 0x3004, 0, 56, size - 32, size, UINT64_MAX & ~7ull };
	for (size_t i = 0; i < sizeof(badoff) / sizeof(badoff[0]); i++) {
		t = good;
		t.index_offset = badoff[i];
		fvm_footer_encode(f, &t);
		check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ERANGE, "index_offset",
			  "0x3030");
	}
	/* R71: index_len too short for an INDX record, not ending at the footer, huge */
	static const uint64_t badlen[] = { 0, 39, 40, 56, 47 - 8, 100, UINT64_MAX, UINT64_MAX - 7 };
	for (size_t i = 0; i < sizeof(badlen) / sizeof(badlen[0]); i++) {
		t = good;
		t.index_len = badlen[i];
		fvm_footer_encode(f, &t);
		check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ERANGE, "index_len", NULL);
	}
	/* 41..48 all end at the footer after padding */
	for (uint64_t l = 41; l <= 48; l++) {
		t = good;
		t.index_len = l;
		fvm_footer_encode(f, &t);
		assert_int_equal(fvm_footer_decode(f, &out, size, FILE_NAME), 0);
	}
	/* an otherwise valid footer with a recomputed crc but stale fields */
	fvm_footer_encode(f, &good);
	fvm_st64(f + 16, size + 4096);
	footer_recrc(f);
	check_err(fvm_footer_decode(f, &out, size, FILE_NAME), FVM_ETRUNCATED, "file_size", NULL);
}

/* ---------------------------------------------------------------- errors */

static void test_strerror(void **state)
{
	(void)state;
	for (int c = 0; c >= -15; c--) {
		assert_non_null(fvm_strerror(c));
		assert_string_not_equal(fvm_strerror(c), "unknown error");
	}
	assert_string_equal(fvm_strerror(-1000), "unknown error");
	assert_string_equal(fvm_strerror(1), "unknown error");
	fvm_err_clear();
	assert_string_equal(fvm_error_detail(), "");
	assert_int_equal(fvm_err(FVM_ERANGE, "x %d", 5), FVM_ERANGE);
	assert_string_equal(fvm_error_detail(), "x 5");
	assert_int_equal(fvm_err_sys(2 /* ENOENT */, "open %s", "f"), FVM_EIO);
	assert_non_null(strstr(fvm_error_detail(), "open f: "));
	assert_int_equal(fvm_err_sys(12 /* ENOMEM */, "alloc"), FVM_ENOMEM);
	/* a detail longer than the buffer is cut, not overflowed */
	char big[4000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	fvm_err(FVM_EIO, "%s", big);
	assert_true(strlen(fvm_error_detail()) < sizeof(big) - 1);
	fvm_err_sys(5, "%s", big);
	assert_true(strlen(fvm_error_detail()) < sizeof(big) - 1);
	fvm_err_clear();
}

int main(void)
{
	if (getenv("FVM_CRC_SOFT")) /* the tests pick the path; the library reads no environment */
		fvm_crc_force_soft();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_path),
		cmocka_unit_test(test_crc_check_value),
		cmocka_unit_test(test_crc_reference),
		cmocka_unit_test(test_crc_long),
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_rechdr_roundtrip),
		cmocka_unit_test(test_rechdr_rules),
		cmocka_unit_test(test_block_roundtrip),
		cmocka_unit_test(test_block_rules),
		cmocka_unit_test(test_meta_roundtrip),
		cmocka_unit_test(test_meta_rules),
		cmocka_unit_test(test_devs_roundtrip),
		cmocka_unit_test(test_devs_rules),
		cmocka_unit_test(test_devs_parts),
		cmocka_unit_test(test_seg_roundtrip),
		cmocka_unit_test(test_seg_rules),
		cmocka_unit_test(test_index_roundtrip),
		cmocka_unit_test(test_index_rules),
		cmocka_unit_test(test_extent_rules),
		cmocka_unit_test(test_extent_overlap),
		cmocka_unit_test(test_footer_roundtrip),
		cmocka_unit_test(test_footer_rules),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
