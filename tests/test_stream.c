/*
 * Unit tests of the QEMU migration stream reader (tools/stock/stream.c) on
 * streams built here record by record, so that each rule of doc/QEMU.md is
 * hit on purpose: what a good stream yields (blocks, data and zero runs,
 * compressed pages, the kept bytes around the ram sections), each hostile
 * variant's error code, and truncation at every offset. Streams of real
 * QEMU are the business of tests/test_stream.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "source.h"
#include "stream.h"

/* ------------------------------------------------------------ builder */

struct sb {
	uint8_t *d;
	size_t len, cap;
};

static void put(struct sb *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->d = realloc(b->d, b->cap);
		assert_non_null(b->d);
	}
	memcpy(b->d + b->len, p, n);
	b->len += n;
}

static void be(struct sb *b, uint64_t v, int n)
{
	uint8_t t[8];
	int i;

	for (i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	put(b, t, (size_t)n);
}

static void str8(struct sb *b, const char *s)
{
	be(b, strlen(s), 1);
	put(b, s, strlen(s));
}

/* What to break in the good stream. */
enum variant {
	V_GOOD, V_MAGIC, V_VERSION2, V_UNKNOWN_TYPE, V_IDSTR0, V_IDSTR255,
	V_PAGE_PAST_END, V_UNKNOWN_BLOCK, V_COMPRESS_SHORT, V_COMPRESS_GARBAGE,
	V_ZERO_FILL, V_XBZRLE, V_HOOK, V_UNKNOWN_FLAG, V_OTHER_ITERABLE,
	V_FULL_BEFORE_END, V_FOOTER_MISMATCH, V_BLOCK_PAST_TOTAL, V_CONTINUE_FIRST,
	V_CMD_LEN, V_NO_END, V_TAIL_TRUNCATED, V_SUBSECTION_UNKNOWN,
	V_RAM_VERSION, V_COUNT,
	V_EXTRAS = 100,                      /* good, with the optional fields */
	V_EXTRAS_BOTH,                       /* ... and postcopy: refused */
	V_POSTCOPY                           /* good: postcopy page-size field */
};

static const int expect[V_COUNT] = {
	[V_GOOD] = 0, [V_MAGIC] = FVM_EMAGIC, [V_VERSION2] = FVM_EVERSION,
	[V_UNKNOWN_TYPE] = FVM_ECORRUPT, [V_IDSTR0] = FVM_ECORRUPT,
	[V_IDSTR255] = FVM_ECORRUPT, [V_PAGE_PAST_END] = FVM_ERANGE,
	[V_UNKNOWN_BLOCK] = FVM_ECORRUPT, [V_COMPRESS_SHORT] = FVM_ECORRUPT,
	[V_COMPRESS_GARBAGE] = FVM_ECORRUPT, [V_ZERO_FILL] = FVM_ECORRUPT,
	[V_XBZRLE] = FVM_EUNSUPPORTED, [V_HOOK] = FVM_EUNSUPPORTED,
	[V_UNKNOWN_FLAG] = FVM_ECORRUPT, [V_OTHER_ITERABLE] = FVM_EUNSUPPORTED,
	[V_FULL_BEFORE_END] = FVM_EUNSUPPORTED, [V_FOOTER_MISMATCH] = FVM_ECORRUPT,
	[V_BLOCK_PAST_TOTAL] = FVM_ECORRUPT, [V_CONTINUE_FIRST] = FVM_ECORRUPT,
	[V_CMD_LEN] = FVM_ECORRUPT, [V_NO_END] = FVM_ETRUNCATED,
	[V_TAIL_TRUNCATED] = FVM_ETRUNCATED, [V_SUBSECTION_UNKNOWN] = FVM_EUNSUPPORTED,
	[V_RAM_VERSION] = FVM_EUNSUPPORTED,
};

#define RAM_PAGES 16
#define ROM_PAGES 4
#define PAGE STOCK_PAGE_SIZE

static uint8_t pattern(uint64_t page, size_t i)
{
	return (uint8_t)(page * 7 + i % 251 + 1);
}

static void page_rec(struct sb *b, const char *block, uint64_t page, uint64_t flag)
{
	be(b, page * PAGE | flag | (block ? 0 : RAM_SAVE_FLAG_CONTINUE), 8);
	if (block)
		str8(b, block);
}

static void data_page(struct sb *b, const char *block, uint64_t page)
{
	uint8_t buf[PAGE];
	size_t i;

	page_rec(b, block, page, RAM_SAVE_FLAG_PAGE);
	for (i = 0; i < PAGE; i++)
		buf[i] = pattern(page, i);
	put(b, buf, PAGE);
}

static void compressed_page(struct sb *b, const char *block, uint64_t page, size_t n,
			    int garbage)
{
	uint8_t buf[PAGE], z[PAGE + 64];
	uLongf zlen = sizeof(z);
	size_t i;

	for (i = 0; i < PAGE; i++)
		buf[i] = pattern(page, i);
	assert_int_equal(compress2(z, &zlen, buf, n, 1), Z_OK);
	if (garbage)
		memset(z + 2, 0xff, zlen - 2);
	page_rec(b, block, page, RAM_SAVE_FLAG_COMPRESS_PAGE);
	be(b, zlen, 4);
	put(b, z, zlen);
}

static void footer(struct sb *b, uint32_t id)
{
	be(b, QEMU_VM_SECTION_FOOTER, 1);
	be(b, id, 4);
}

static const char post_bytes[] = "\x04\x00\x00\x00\x05\x05timer\x00\x00\x00\x00\x00\x00\x00\x02"
				 "\x11\x22\x33\x44\x7e\x00\x00\x00\x05";
static const char vmdesc[] = "{\"page_size\": 4096, \"devices\": []}";

/* The good stream, or one with variant v broken; *pre_len, *post_off out. */
static struct sb build(enum variant v, size_t *pre_len, size_t *post_off)
{
	struct sb b = { 0 };

	be(&b, v == V_MAGIC ? 0x5145564e : STOCK_QEVM_MAGIC, 4);
	be(&b, v == V_VERSION2 ? 2 : 3, 4);
	be(&b, QEMU_VM_CONFIGURATION, 1);
	be(&b, 13, 4);
	put(&b, "pc-i440fx-7.2", 13);
	be(&b, QEMU_VM_SUBSECTION, 1);
	str8(&b, v == V_SUBSECTION_UNKNOWN ? "configuration/new" : "configuration/uuid");
	be(&b, 1, 4);
	put(&b, "0123456789abcdef", 16);
	if (v == V_EXTRAS || v == V_EXTRAS_BOTH) {
		/* x-ignore-shared: every block entry carries mr->addr */
		be(&b, QEMU_VM_SUBSECTION, 1);
		str8(&b, "configuration/capabilities");
		be(&b, 1, 4);
		be(&b, 1, 4);
		str8(&b, "x-ignore-shared");
	}
	if (v == V_POSTCOPY || v == V_EXTRAS_BOTH) {
		/* POSTCOPY_ADVISE: blocks with a non-host page size carry it */
		be(&b, QEMU_VM_COMMAND, 1);
		be(&b, 3, 2);
		be(&b, 16, 2);
		be(&b, 4096, 8);
		be(&b, 4096, 8);
	}
	be(&b, QEMU_VM_COMMAND, 1);          /* OPEN_RETURN_PATH */
	be(&b, 1, 2);
	be(&b, v == V_CMD_LEN ? 3 : 0, 2);
	if (v == V_CMD_LEN)
		put(&b, "abc", 3);
	if (v == V_UNKNOWN_TYPE)
		be(&b, 0x09, 1);
	if (v == V_OTHER_ITERABLE) {
		be(&b, QEMU_VM_SECTION_START, 1);
		be(&b, 1, 4);
		str8(&b, "block");
		be(&b, 0, 4);
		be(&b, 1, 4);
	}
	*pre_len = b.len;

	/* START: block list */
	be(&b, QEMU_VM_SECTION_START, 1);
	be(&b, 2, 4);
	str8(&b, "ram");
	be(&b, 0, 4);
	be(&b, v == V_RAM_VERSION ? 5 : 4, 4);
	be(&b, (RAM_PAGES + ROM_PAGES) * PAGE | RAM_SAVE_FLAG_MEM_SIZE, 8);
	str8(&b, "pc.ram");
	be(&b, RAM_PAGES * PAGE, 8);
	if (v == V_POSTCOPY || v == V_EXTRAS_BOTH)
		be(&b, 2u << 20, 8);          /* page size of a hugepage block */
	if (v == V_EXTRAS || v == V_EXTRAS_BOTH)
		be(&b, 0, 8);                 /* mr->addr */
	str8(&b, "rom");
	be(&b, (v == V_BLOCK_PAST_TOTAL ? ROM_PAGES + 1 : ROM_PAGES) * PAGE, 8);
	if (v == V_EXTRAS || v == V_EXTRAS_BOTH)
		be(&b, 0xfffc0000, 8);        /* mr->addr */
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	footer(&b, 2);

	/* PART: data, zero, compressed, another block */
	be(&b, QEMU_VM_SECTION_PART, 1);
	be(&b, 2, 4);
	if (v == V_CONTINUE_FIRST)
		data_page(&b, NULL, 0);
	data_page(&b, "pc.ram", 0);
	data_page(&b, NULL, 1);
	data_page(&b, NULL, 2);
	page_rec(&b, NULL, 3, RAM_SAVE_FLAG_ZERO);
	be(&b, v == V_ZERO_FILL ? 0x5a : 0, 1);
	page_rec(&b, NULL, 4, RAM_SAVE_FLAG_ZERO);
	be(&b, 0, 1);
	compressed_page(&b, NULL, 5, v == V_COMPRESS_SHORT ? PAGE / 2 : PAGE,
			v == V_COMPRESS_GARBAGE);
	data_page(&b, NULL, 6);
	if (v == V_PAGE_PAST_END)
		data_page(&b, NULL, RAM_PAGES);
	if (v == V_XBZRLE)
		page_rec(&b, NULL, 7, RAM_SAVE_FLAG_XBZRLE);
	if (v == V_HOOK)
		be(&b, RAM_SAVE_FLAG_HOOK, 8);
	if (v == V_UNKNOWN_FLAG)
		be(&b, 0x400, 8);
	if (v == V_IDSTR0)
		be(&b, 7 * PAGE | RAM_SAVE_FLAG_PAGE, 8), be(&b, 0, 1);
	if (v == V_IDSTR255) {
		char name[256];

		memset(name, 'x', 255);
		name[255] = 0;
		page_rec(&b, name, 7, RAM_SAVE_FLAG_ZERO);
		be(&b, 0, 1);
	}
	if (v == V_UNKNOWN_BLOCK) {
		page_rec(&b, "vga.vram", 0, RAM_SAVE_FLAG_ZERO);
		be(&b, 0, 1);
	}
	data_page(&b, "rom", 0);
	be(&b, RAM_SAVE_FLAG_MULTIFD_FLUSH, 8);
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	footer(&b, v == V_FOOTER_MISMATCH ? 3 : 2);

	if (v == V_FULL_BEFORE_END) {
		be(&b, QEMU_VM_SECTION_FULL, 1);
		be(&b, 5, 4);
		str8(&b, "timer");
		be(&b, 0, 4);
		be(&b, 2, 4);
	}
	/* a command between the ram sections, kept in mid_ram */
	be(&b, QEMU_VM_COMMAND, 1);
	be(&b, 11, 2);                        /* SWITCHOVER_START */
	be(&b, 0, 2);
	if (v == V_NO_END) {
		*post_off = b.len;
		return b;
	}
	/* END: a zero page, then a page sent again (the last copy wins) */
	be(&b, QEMU_VM_SECTION_END, 1);
	be(&b, 2, 4);
	page_rec(&b, "rom", 1, RAM_SAVE_FLAG_ZERO);
	be(&b, 0, 1);
	page_rec(&b, "pc.ram", 6, RAM_SAVE_FLAG_ZERO);
	be(&b, 0, 1);
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	footer(&b, 2);
	*post_off = b.len;

	put(&b, post_bytes, sizeof(post_bytes) - 1);
	be(&b, QEMU_VM_EOF, 1);
	be(&b, QEMU_VM_VMDESCRIPTION, 1);
	be(&b, strlen(vmdesc), 4);
	put(&b, vmdesc, strlen(vmdesc) - (v == V_TAIL_TRUNCATED ? 3 : 0));
	return b;
}

/* ------------------------------------------------------------ collector */

enum { S_ABSENT, S_ZERO, S_DATA_OK, S_DATA_BAD };

struct col {
	uint32_t nblocks;
	uint64_t len[4];
	uint8_t state[4][RAM_PAGES + 8];
	unsigned page_calls, zero_calls;
};

static int c_block(void *ctx, uint32_t index, const struct stock_ram_block *b)
{
	struct col *c = ctx;

	assert_true(index < 4);
	c->len[index] = b->length;
	c->nblocks = index + 1;
	return 0;
}

static int c_pages(void *ctx, uint32_t block, uint64_t first, uint64_t count,
		   const void *data)
{
	struct col *c = ctx;
	const uint8_t *d = data;
	uint64_t p;
	size_t i;

	c->page_calls++;
	assert_true(block < c->nblocks);
	assert_true(first + count <= c->len[block] / PAGE);
	for (p = 0; p < count; p++) {
		int ok = 1;

		for (i = 0; i < PAGE; i++)
			ok &= d[p * PAGE + i] == pattern(first + p, i);
		c->state[block][first + p] = ok ? S_DATA_OK : S_DATA_BAD;
	}
	return 0;
}

static int c_zero(void *ctx, uint32_t block, uint64_t first, uint64_t count)
{
	struct col *c = ctx;

	c->zero_calls++;
	assert_true(block < c->nblocks);
	assert_true(first + count <= c->len[block] / PAGE);
	memset(&c->state[block][first], S_ZERO, count);
	return 0;
}

static int parse(const uint8_t *d, size_t len, struct col *c, struct stock_stream *st)
{
	struct stock_stream_ops ops = { c, c_block, c_pages, c_zero, NULL };
	struct stock_source *src;
	int err;

	memset(c, 0, sizeof(*c));
	memset(st, 0, sizeof(*st));
	st->batch_pages = 2;
	assert_int_equal(stock_source_open_mem(&src, d, len, "test.mig"), 0);
	err = stock_stream_parse(src, &ops, st);
	stock_source_free(src);
	return err;
}

/* ------------------------------------------------------------ tests */

static void test_good(void **state)
{
	size_t pre, post;
	struct sb b = build(V_GOOD, &pre, &post);
	struct stock_stream st;
	struct col c;
	int i;

	(void)state;
	assert_int_equal(parse(b.d, b.len, &c, &st), 0);
	assert_string_equal(st.machine, "pc-i440fx-7.2");
	assert_int_equal(st.nblocks, 2);
	assert_string_equal(st.blocks[0].name, "pc.ram");
	assert_int_equal(st.blocks[1].length, ROM_PAGES * PAGE);
	assert_int_equal(st.section_id, 2);
	assert_int_equal(st.version_id, 4);
	assert_true(st.footers);
	assert_int_equal(st.ram_sections, 3);
	assert_int_equal(st.page_records, 5);
	assert_int_equal(st.compressed_records, 1);
	assert_int_equal(st.zero_records, 4);
	/* pc.ram 0..2 data, 3..4 zero, 5 compressed data, 6 zero (resent) */
	for (i = 0; i < 3; i++)
		assert_int_equal(c.state[0][i], S_DATA_OK);
	assert_int_equal(c.state[0][3], S_ZERO);
	assert_int_equal(c.state[0][4], S_ZERO);
	assert_int_equal(c.state[0][5], S_DATA_OK);
	assert_int_equal(c.state[0][6], S_ZERO);
	assert_int_equal(c.state[0][7], S_ABSENT);
	assert_int_equal(c.state[1][0], S_DATA_OK);
	assert_int_equal(c.state[1][1], S_ZERO);
	/* pages 0..2 arrive in batches of 2: two calls, not three */
	assert_true(c.page_calls <= 5);
	/* kept bytes, byte for byte */
	assert_int_equal(st.pre_ram.len, pre);
	assert_memory_equal(st.pre_ram.data, b.d, pre);
	assert_int_equal(st.mid_ram.len, 5);
	assert_int_equal(st.post_ram.len, b.len - post);
	assert_memory_equal(st.post_ram.data, b.d + post, b.len - post);
	assert_int_equal(st.vmdesc_len, strlen(vmdesc));
	stock_stream_release(&st);
	free(b.d);
}

static void test_ram_desc_roundtrip(void **state)
{
	size_t pre, post;
	struct sb b = build(V_GOOD, &pre, &post);
	struct stock_stream st, back;
	struct stock_buf d = { 0 };
	struct col c;
	uint32_t i;

	(void)state;
	assert_int_equal(parse(b.d, b.len, &c, &st), 0);
	assert_int_equal(stock_ram_desc_encode(&st, &d), 0);
	memset(&back, 0, sizeof(back));
	assert_int_equal(stock_ram_desc_decode(d.data, d.len, "t", &back), 0);
	assert_int_equal(back.nblocks, st.nblocks);
	assert_int_equal(back.section_id, st.section_id);
	assert_int_equal(back.footers, st.footers);
	assert_int_equal(back.total_bytes, st.total_bytes);
	for (i = 0; i < st.nblocks; i++) {
		assert_string_equal(back.blocks[i].name, st.blocks[i].name);
		assert_int_equal(back.blocks[i].length, st.blocks[i].length);
	}
	stock_stream_release(&back);
	/* every truncation and a flipped magic of the record are refused */
	for (i = 0; i < d.len; i++) {
		memset(&back, 0, sizeof(back));
		assert_true(stock_ram_desc_decode(d.data, i, "t", &back) < 0);
		stock_stream_release(&back);
	}
	d.data[0] ^= 1;
	memset(&back, 0, sizeof(back));
	assert_int_equal(stock_ram_desc_decode(d.data, d.len, "t", &back), FVM_ECORRUPT);
	stock_stream_release(&back);
	stock_buf_release(&d);
	stock_stream_release(&st);
	free(b.d);
}

static void test_extras(void **state)
{
	struct stock_stream st, back;
	struct stock_buf d = { 0 };
	struct col c;
	size_t pre, post;
	struct sb b;
	int v;

	(void)state;
	for (v = V_EXTRAS; v <= V_POSTCOPY; v++) {
		int shared = v != V_POSTCOPY, postcopy = v != V_EXTRAS;

		b = build((enum variant)v, &pre, &post);
		if (v == V_EXTRAS_BOTH) {
			assert_int_equal(parse(b.d, b.len, &c, &st), FVM_EUNSUPPORTED);
			stock_stream_release(&st);
			free(b.d);
			continue;
		}
		assert_int_equal(parse(b.d, b.len, &c, &st), 0);
		assert_int_equal(st.ignore_shared, shared);
		assert_int_equal(st.postcopy_advised, postcopy);
		assert_int_equal(st.blocks[0].has_page_size, postcopy);
		assert_int_equal(st.blocks[0].page_size, postcopy ? 2u << 20 : 0);
		assert_int_equal(st.blocks[0].has_addr, shared);
		assert_false(st.blocks[1].has_page_size);
		assert_int_equal(st.blocks[1].addr, shared ? 0xfffc0000 : 0);
		assert_int_equal(c.state[0][0], S_DATA_OK);
		assert_int_equal(c.state[1][0], S_DATA_OK);
		assert_int_equal(stock_ram_desc_encode(&st, &d), 0);
		memset(&back, 0, sizeof(back));
		assert_int_equal(stock_ram_desc_decode(d.data, d.len, "t", &back), 0);
		assert_int_equal(back.ignore_shared, shared);
		assert_int_equal(back.postcopy_advised, postcopy);
		assert_int_equal(back.blocks[0].has_page_size, postcopy);
		assert_int_equal(back.blocks[0].has_addr, shared);
		assert_int_equal(back.blocks[1].addr, st.blocks[1].addr);
		stock_stream_release(&back);
		stock_buf_release(&d);
		stock_stream_release(&st);
		free(b.d);
	}
}

/* ------------------------------------------------------------ mapped-ram */

enum mr_variant {
	MR_GOOD, MR_VERSION, MR_PAGE_SIZE, MR_BITMAP_PAST_END, MR_PAGES_PAST_END,
	MR_OVERLAP, MR_TRUNCATED_HEADER, MR_SKIPPED, MR_COUNT
};

static const int mr_expect[MR_COUNT] = {
	[MR_GOOD] = 0, [MR_VERSION] = FVM_EVERSION, [MR_PAGE_SIZE] = FVM_EUNSUPPORTED,
	[MR_BITMAP_PAST_END] = FVM_ETRUNCATED, [MR_PAGES_PAST_END] = FVM_ETRUNCATED,
	[MR_OVERLAP] = FVM_ECORRUPT, [MR_TRUNCATED_HEADER] = FVM_ETRUNCATED,
	[MR_SKIPPED] = 0,
};

/*
 * A QEMU 9+ mapped-ram file: one block of RAM_PAGES pages; pages 0, 1 and
 * 5 written (bitmap bits), the rest not; the stream goes on after the
 * pages region.
 */
static struct sb build_mapped(enum mr_variant v)
{
	struct sb b = { 0 };
	uint8_t page[PAGE];
	uint64_t bm_off, pages_off, i;
	size_t k;

	be(&b, STOCK_QEVM_MAGIC, 4);
	be(&b, 3, 4);
	be(&b, QEMU_VM_CONFIGURATION, 1);
	be(&b, 14, 4);
	put(&b, "pc-i440fx-10.0", 14);
	be(&b, QEMU_VM_SUBSECTION, 1);
	str8(&b, "configuration/capabilities");
	be(&b, 1, 4);
	be(&b, 1, 4);
	str8(&b, "mapped-ram");
	be(&b, QEMU_VM_SECTION_START, 1);
	be(&b, 1, 4);
	str8(&b, "ram");
	be(&b, 0, 4);
	be(&b, 4, 4);
	be(&b, RAM_PAGES * PAGE | RAM_SAVE_FLAG_MEM_SIZE, 8);
	str8(&b, "pc.ram");
	be(&b, RAM_PAGES * PAGE, 8);
	if (v == MR_TRUNCATED_HEADER) {
		be(&b, 1, 4);
		return b;
	}
	bm_off = b.len + 28;
	pages_off = bm_off + 8;
	be(&b, v == MR_VERSION ? 2 : 1, 4);
	be(&b, v == MR_PAGE_SIZE ? 8192 : PAGE, 8);
	be(&b, v == MR_SKIPPED ? 0 : v == MR_BITMAP_PAST_END ? 1u << 30 : bm_off, 8);
	be(&b, v == MR_SKIPPED ? 0 : v == MR_PAGES_PAST_END ? 1u << 30 :
	       v == MR_OVERLAP ? bm_off : pages_off, 8);
	if (v != MR_SKIPPED) {
		/* bitmap: little-endian 64-bit word, bits 0, 1, 5 */
		uint8_t w[8] = { 0x23, 0, 0, 0, 0, 0, 0, 0 };

		put(&b, w, 8);
		for (i = 0; i < RAM_PAGES; i++) {
			for (k = 0; k < PAGE; k++)
				page[k] = (i == 0 || i == 1 || i == 5) ? pattern(i, k) : 0;
			put(&b, page, PAGE);
		}
	}
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	footer(&b, 1);
	be(&b, QEMU_VM_SECTION_END, 1);
	be(&b, 1, 4);
	be(&b, RAM_SAVE_FLAG_EOS, 8);
	footer(&b, 1);
	be(&b, QEMU_VM_EOF, 1);
	return b;
}

static void test_mapped_ram(void **state)
{
	struct stock_stream st;
	struct col c;
	int v, err, i;

	(void)state;
	for (v = 0; v < MR_COUNT; v++) {
		struct sb b = build_mapped((enum mr_variant)v);

		err = parse(b.d, b.len, &c, &st);
		if (err != mr_expect[v])
			fail_msg("mapped-ram variant %d: got %d, expected %d (%s)", v, err,
				 mr_expect[v], fvm_error_detail());
		if (v == MR_GOOD) {
			assert_true(st.mapped_ram);
			assert_int_equal(st.mapped_data_pages, 3);
			for (i = 0; i < RAM_PAGES; i++)
				assert_int_equal(c.state[0][i],
						 (i == 0 || i == 1 || i == 5) ? S_DATA_OK : S_ZERO);
			assert_int_equal(st.mapped_cap_len, 11);
			assert_memory_equal(st.pre_ram.data + st.mapped_cap_off, "\x0amapped-ram", 11);
		}
		if (v == MR_SKIPPED)
			for (i = 0; i < RAM_PAGES; i++)
				assert_int_equal(c.state[0][i], S_ABSENT);
		stock_stream_release(&st);
		free(b.d);
	}
}

/* mapped-ram pages lie at file offsets: a pipe cannot serve them. */
static void test_mapped_ram_pipe(void **state)
{
	struct stock_stream_ops ops = { NULL, c_block, c_pages, c_zero, NULL };
	struct sb b = build_mapped(MR_GOOD);
	struct stock_source *src;
	struct stock_stream st;
	struct col c;
	int fds[2];

	(void)state;
	ops.ctx = &c;
	memset(&c, 0, sizeof(c));
	memset(&st, 0, sizeof(st));
	assert_int_equal(pipe(fds), 0);
	/* The refusal comes at the first block's header: 4 KiB of the file
	 * are enough, and fit the pipe's buffer. */
	assert_int_equal(write(fds[1], b.d, 4096), 4096);
	close(fds[1]);
	assert_int_equal(stock_source_open_fd(&src, fds[0], "pipe"), 0);
	assert_int_equal(stock_stream_parse(src, &ops, &st), FVM_EUNSUPPORTED);
	assert_non_null(strstr(fvm_error_detail(), "seekable"));
	stock_source_free(src);
	stock_stream_release(&st);
	close(fds[0]);
	free(b.d);
}

static void test_hostile(void **state)
{
	struct stock_stream st;
	struct col c;
	size_t pre, post;
	int v, err;

	(void)state;
	for (v = V_MAGIC; v < V_COUNT; v++) {
		struct sb b = build((enum variant)v, &pre, &post);

		err = parse(b.d, b.len, &c, &st);
		if (err != expect[v])
			fail_msg("variant %d: got %d, expected %d (%s)", v, err, expect[v],
				 fvm_error_detail());
		/* the detail names the input */
		assert_non_null(strstr(fvm_error_detail(), "test.mig"));
		stock_stream_release(&st);
		free(b.d);
	}
}

/*
 * Every strict prefix up to the end of the ram END section fails. Inside the
 * kept device bytes only the tail check can tell: a prefix fails unless it
 * happens to end in 0x00 (which could be QEMU's EOF byte).
 */
static void test_truncation(void **state)
{
	size_t pre, post, n;
	struct sb b = build(V_GOOD, &pre, &post);
	struct stock_stream st;
	struct col c;
	int err;

	(void)state;
	for (n = 0; n < b.len; n++) {
		err = parse(b.d, n, &c, &st);
		if (err >= 0 && (n < post || b.d[n - 1] != 0))
			fail_msg("prefix of %zu of %zu bytes accepted", n, b.len);
		stock_stream_release(&st);
	}
	free(b.d);
}

/* Single-byte corruption anywhere: no crash, no callback out of bounds. */
static void test_bitflips(void **state)
{
	size_t pre, post, i;
	struct sb b = build(V_GOOD, &pre, &post);
	struct stock_stream st;
	struct col c;

	(void)state;
	for (i = 0; i < b.len; i += 7) {
		b.d[i] ^= 0x41;
		(void)parse(b.d, b.len, &c, &st);
		stock_stream_release(&st);
		b.d[i] ^= 0x41;
	}
	free(b.d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_ram_desc_roundtrip),
		cmocka_unit_test(test_extras),
		cmocka_unit_test(test_mapped_ram),
		cmocka_unit_test(test_mapped_ram_pipe),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_bitflips),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
