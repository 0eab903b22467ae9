/*
 * libFuzzer target: the QEMU migration stream reader (tools/stock/stream.c)
 * over an in-memory source. Checks on every input: no crash, no read or
 * write outside buffers (ASan), every page run the parser reports lies
 * inside a declared block, and a successful parse's qemu.ram-section
 * record decodes back to the same block list. Seeds (fuzz/corpus/stream/):
 * prefixes and the tail of real streams of QEMU 7.2 (plain, zlib pages)
 * and 10.0, cut small; whole streams made by the builder of
 * tests/test_stream.c (plain, x-ignore-shared, postcopy page sizes) and a
 * small mapped-ram file with the same layout as QEMU's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/stock/source.h"
#include "../tools/stock/stream.h"

struct fctx {
	uint64_t lengths[STOCK_MAX_BLOCKS];
	uint32_t n;
};

static int f_block(void *ctx, uint32_t index, const struct stock_ram_block *b)
{
	struct fctx *c = ctx;

	if (index != c->n || index >= STOCK_MAX_BLOCKS || b->length % STOCK_PAGE_SIZE)
		abort();
	c->lengths[c->n++] = b->length;
	return 0;
}

static void check_run(struct fctx *c, uint32_t block, uint64_t first, uint64_t count)
{
	if (block >= c->n || count == 0 ||
	    first > c->lengths[block] / STOCK_PAGE_SIZE ||
	    count > c->lengths[block] / STOCK_PAGE_SIZE - first)
		abort();
}

static int f_pages(void *ctx, uint32_t block, uint64_t first, uint64_t count,
		   const void *data)
{
	const volatile uint8_t *d = data;

	check_run(ctx, block, first, count);
	(void)d[count * STOCK_PAGE_SIZE - 1]; /* the whole batch is readable */
	return 0;
}

static int f_zero(void *ctx, uint32_t block, uint64_t first, uint64_t count)
{
	check_run(ctx, block, first, count);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stock_stream_ops ops = { NULL, f_block, f_pages, f_zero, NULL };
	struct stock_stream st, back;
	struct stock_source *src;
	struct stock_buf desc = { 0 };
	struct fctx c = { .n = 0 };
	uint32_t i;

	ops.ctx = &c;
	memset(&st, 0, sizeof(st));
	st.batch_pages = 8;              /* cross batch boundaries often */
	st.keep_max = 1 << 20;
	if (stock_source_open_mem(&src, data, size, "fuzz"))
		return 0;
	if (!stock_stream_parse(src, &ops, &st)) {
		memset(&back, 0, sizeof(back));
		if (stock_ram_desc_encode(&st, &desc) ||
		    stock_ram_desc_decode(desc.data, desc.len, "fuzz", &back) ||
		    back.nblocks != st.nblocks)
			abort();
		for (i = 0; i < st.nblocks; i++)
			if (strcmp(back.blocks[i].name, st.blocks[i].name) ||
			    back.blocks[i].length != st.blocks[i].length)
				abort();
		stock_stream_release(&back);
	}
	stock_buf_release(&desc);
	stock_stream_release(&st);
	stock_source_free(src);
	return 0;
}
