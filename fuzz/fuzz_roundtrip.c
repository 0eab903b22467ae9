/*
 * Round-trip fuzz target: the input describes blocks, page contents and
 * (in streaming mode) a sequence of put_pages/put_zero deliveries, rewrites
 * included. The snapshot is written with fvm_writer into a memfd, read back
 * seekable and as a stream, loaded into guard-paged memory and compared
 * with the expected RAM (and with fvm_reader_read_pages); any difference,
 * or any error for valid input, aborts. Bits of [1] make it a compressed
 * file (FORMAT.md 4.5): zstd or lz4, frames of 64 KiB to 1 MiB, one or
 * three compressing threads; it is then loaded with io_uring and with
 * pread, on one and on three threads, the mmap backend must refuse it
 * with a reason, and verify and the stream reader go through the frames.
 *
 * Input layout:
 *   [0] flags: bit0 NO_CRC (ignored with a codec), bit1 streaming,
 *              bit2 small segments, bit3 max_run_bytes, bits4-7 size parameter
 *   [1] bits0-1 block count - 1; bits2-3 codec: 0 none, 1 zstd, 2 lz4,
 *       3 lz4 HC level 9 (none when this build lacks it); bits4-5 frame
 *       size 64 KiB << n (n = 3: 1 MiB); bit6 three compressing threads;
 *       bit7 the io_uring load on three threads and the pread one on one
 *       (else the other way round)
 *   per block 2 bytes: page size selector (4K, 8K, 16K, 2M), page count
 *   rest: whole-block mode: one byte per page (0 zero, else content seed);
 *         streaming: 4-byte ops (block, first, count, content seed; 0 = put_zero)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "testutil.h"

struct blk {
	char name[16];
	uint64_t page_size, pages, length;
	uint8_t *want;
	uint32_t id;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_roundtrip: %s (detail: %s)\n", what, fvm_error_detail());
	abort();
}

/* Page contents from a seed byte: dense random, one byte at an edge, or zero. */
static void gen_page(uint8_t *p, uint64_t ps, uint8_t seed, uint64_t salt)
{
	struct tu_rng g;

	memset(p, 0, ps);
	if (seed == 0 || seed == 0x40)
		return;
	if (seed & 0x80) { /* a single non-zero byte: first, last or inside */
		uint64_t where = (seed & 3) == 0 ? 0 : (seed & 3) == 1 ? ps - 1
			       : ((uint64_t)(seed & 0x7c) * ps / 128) + 7;
		p[where] = (uint8_t)(seed | 1);
		return;
	}
	tu_rng_seed(&g, seed * 1000003ull + salt);
	tu_fill_page(&g, p, ps);
}

static int memfd_new(void)
{
	int fd = memfd_create("fuzz-rt", MFD_CLOEXEC);

	if (fd < 0)
		die("memfd_create");
	return fd;
}

static void check_load(fvm_reader *r, struct blk *b, unsigned nb, int backend, unsigned threads,
		       const char *what)
{
	fvm_mapping m[4];
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	int rc;

	for (unsigned i = 0; i < nb; i++) {
		m[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, b[i].name, tu_guard_alloc(b[i].length, 0xAA), b[i].length, 0 };
		if (!m[i].addr)
			die("mmap");
	}
	o.flags = FVM_LOAD_VERIFY;
	o.zero_policy = FVM_ZERO_MEMSET;
	o.backend = backend;
	t.threads = threads;
	o.tuning = &t;
	rc = fvm_load(r, m, nb, &o, NULL);
	if (rc) {
		fprintf(stderr, "%s: ", what);
		die("load of a valid snapshot failed");
	}
	for (unsigned i = 0; i < nb; i++) {
		if (memcmp(m[i].addr, b[i].want, b[i].length)) {
			fprintf(stderr, "%s: block %s differs\n", what, b[i].name);
			abort();
		}
		tu_guard_free(m[i].addr, b[i].length);
	}
}

/* read_pages gives the same bytes as the load, from a page into the block on */
static void check_read_pages(fvm_reader *r, struct blk *b, unsigned nb)
{
	for (unsigned i = 0; i < nb; i++) {
		uint64_t first = b[i].pages > 1 ? 1 : 0, n = b[i].pages - first;
		uint8_t *buf = tu_guard_alloc(n * b[i].page_size, 0x5A);

		if (!buf)
			die("mmap");
		if (fvm_reader_read_pages(r, b[i].id, first, n, buf))
			die("read_pages of a valid snapshot failed");
		if (memcmp(buf, b[i].want + first * b[i].page_size, n * b[i].page_size)) {
			fprintf(stderr, "read_pages: block %s differs\n", b[i].name);
			abort();
		}
		tu_guard_free(buf, n * b[i].page_size);
	}
}

/* A compressed file cannot be mapped: the mmap load refuses it, saying why. */
static void check_mmap_refused(fvm_reader *r, struct blk *b, unsigned nb)
{
	fvm_mapping m[4];
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	int rc;

	for (unsigned i = 0; i < nb; i++) {
		m[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, b[i].name, tu_guard_alloc(b[i].length, 0xAA), b[i].length, 0 };
		if (!m[i].addr)
			die("mmap");
	}
	o.backend = FVM_BACKEND_MMAP;
	rc = fvm_load(r, m, nb, &o, NULL);
	if (rc != FVM_EUNSUPPORTED || !strstr(fvm_error_detail(), "compressed"))
		die("mmap load of a compressed file not refused with a reason");
	for (unsigned i = 0; i < nb; i++)
		tu_guard_free(m[i].addr, b[i].length);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t psel[4] = { 4096, 8192, 16384, 2u << 20 };
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	struct blk b[4];
	unsigned nb;
	size_t pos;
	uint8_t flags, *page;
	fvm_writer *w = NULL;
	fvm_reader *r = NULL;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t want_data = 0;
	int fd, rc, codec;
	unsigned uring_threads;

	if (size < 4)
		return 0;
	flags = data[0];
	nb = 1 + (data[1] & 3);
	pos = 2;
	if (size < pos + 2 * nb)
		return 0;
	for (unsigned i = 0; i < nb; i++, pos += 2) {
		b[i].page_size = psel[data[pos] & 3];
		b[i].pages = 1 + data[pos + 1] % (b[i].page_size > 16384 ? 2 : 48);
		b[i].length = b[i].pages * b[i].page_size;
		snprintf(b[i].name, sizeof(b[i].name), "blk%u", i);
		b[i].want = calloc(1, b[i].length);
		if (!b[i].want)
			die("calloc");
	}
	page = malloc(2u << 20);
	if (!page)
		die("malloc");

	codec = data[1] >> 2 & 3;
	if (codec == 3) {
		codec = FVM_CODEC_LZ4;
		wo.level = 9;
	}
	if (!fvm_codec_available(codec)) {
		codec = FVM_CODEC_NONE;
		wo.level = 0;
	}
	uring_threads = data[1] & 0x80 ? 3 : 1;
	wo.codec = (uint32_t)codec;
	if (codec) {
		wo.frame_bytes = (64u << 10) << (data[1] >> 4 & 3);
		if ((data[1] >> 4 & 3) == 3)
			wo.frame_bytes = 1u << 20;
		wo.threads = data[1] & 0x40 ? 3 : 1;
		flags &= (uint8_t)~1; /* frames always carry CRCs */
	}
	wo.flags = FVM_WRITE_NO_FSYNC | (flags & 1 ? FVM_WRITE_NO_CRC : 0);
	if (flags & 4)
		wo.segment_bytes = 4096ull << (flags >> 4 & 7);
	if (flags & 8)
		wo.max_run_bytes = 4096ull * (1 + (flags >> 4));
	fd = memfd_new();
	if ((rc = fvm_writer_open_fd(&w, fd, &wo)))
		die("writer_open_fd");
	if (fvm_writer_add_meta(w, "creator", "fuzz_roundtrip") ||
	    fvm_writer_add_devstate(w, "input", data, size))
		die("meta/devstate");
	for (unsigned i = 0; i < nb; i++)
		if (fvm_writer_add_block(w, b[i].name, b[i].length, b[i].page_size, &b[i].id))
			die("add_block");

	if (!(flags & 2)) { /* whole blocks from memory */
		for (unsigned i = 0; i < nb; i++) {
			for (uint64_t k = 0; k < b[i].pages; k++) {
				uint8_t seed = pos < size ? data[pos++] : 0;
				gen_page(b[i].want + k * b[i].page_size, b[i].page_size, seed, k);
			}
			if (fvm_writer_write_block(w, b[i].id, b[i].want))
				die("write_block");
		}
	} else { /* deliveries in input order; later ones replace earlier ones */
		for (; pos + 4 <= size; pos += 4) {
			struct blk *t = &b[data[pos] % nb];
			uint64_t first = data[pos + 1] % t->pages;
			uint64_t count = 1 + data[pos + 2] % (t->pages - first);
			uint8_t seed = data[pos + 3];
			uint8_t *buf;

			if (seed == 0) {
				if (fvm_writer_put_zero(w, t->id, first, count))
					die("put_zero");
				memset(t->want + first * t->page_size, 0, count * t->page_size);
				continue;
			}
			buf = count * t->page_size <= (2u << 20) ? page : malloc(count * t->page_size);
			if (!buf)
				die("malloc");
			for (uint64_t k = 0; k < count; k++)
				gen_page(buf + k * t->page_size, t->page_size, seed, first + k);
			if (fvm_writer_put_pages(w, t->id, first, count, buf))
				die("put_pages");
			memcpy(t->want + first * t->page_size, buf, count * t->page_size);
			if (buf != page)
				free(buf);
		}
	}
	if (fvm_writer_finish(w))
		die("finish");
	fvm_writer_free(w);

	for (unsigned i = 0; i < nb; i++) {
		struct tu_block tb = { "", b[i].length, b[i].page_size, b[i].want };
		want_data += tu_data_pages(&tb);
	}

	/* seekable */
	lseek(fd, 0, SEEK_SET);
	if (fvm_reader_open_fd(&r, fd, "fuzz-rt"))
		die("open of a valid snapshot failed");
	{
		const char *why = tu_check_consistent(r);
		if (why) {
			fprintf(stderr, "listing: %s\n", why);
			abort();
		}
	}
	if (fvm_reader_info(r, &fi) || fi.block_count != nb || fi.data_pages != want_data ||
	    fi.devstate_count != 1)
		die("file info does not match what was written");
	if (!codec) {
		check_load(r, b, nb, flags & 0x10 ? FVM_BACKEND_URING : FVM_BACKEND_PREAD, 1,
			   "seekable");
	} else {
		check_load(r, b, nb, FVM_BACKEND_URING, uring_threads, "seekable io_uring");
		check_load(r, b, nb, FVM_BACKEND_PREAD, 4 - uring_threads, "seekable pread");
		check_mmap_refused(r, b, nb);
	}
	check_read_pages(r, b, nb);
	if (fvm_verify(r, NULL, NULL))
		die("verify of a valid snapshot failed");
	fvm_reader_free(r);

	/* stream */
	lseek(fd, 0, SEEK_SET);
	if (fvm_reader_open_stream(&r, fd, "fuzz-rt-stream"))
		die("open_stream of a valid snapshot failed");
	check_load(r, b, nb, FVM_BACKEND_AUTO, 1, "stream");
	fvm_reader_free(r);

	close(fd);
	free(page);
	for (unsigned i = 0; i < nb; i++)
		free(b[i].want);
	return 0;
}
