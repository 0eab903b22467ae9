/*
 * Seed corpus generator: `make_corpus DIR` writes small valid snapshots to
 * DIR/reader/ (one per feature: CRCs on and off, several blocks and
 * segments, rewrites, absent pages, 2 MiB pages, device state, metadata)
 * and layout descriptions for fuzz_roundtrip.c to DIR/roundtrip/; with
 * the codecs this build has, compressed files too (FORMAT.md 4.5, 5.1):
 * zstd and lz4, compressed and stored frames, several segments, frames
 * of 64 KiB and 1 MiB, rewritten pages (dead bytes in live frames). Every
 * seed stays under 64 KiB. The output is committed as fuzz/corpus/; rerun
 * after a format change:
 *   build/fuzz/make_corpus fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fastvm/fastvm.h"
#include "reseal.h"
#include "testutil.h"
#include "writer.h"

static const char *root;

static void die(const char *what)
{
	fprintf(stderr, "make_corpus: %s: %s\n", what, fvm_error_detail());
	exit(1);
}

#define CK(x) do { if (x) die(#x); } while (0)

static fvm_writer *start_codec(const char *name, uint32_t flags, uint64_t seg, uint64_t maxrun,
			       int codec, int level, uint32_t frame)
{
	char path[4096];
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;

	snprintf(path, sizeof(path), "%s/reader/%s.fvm", root, name);
	o.flags = FVM_WRITE_NO_FSYNC | flags;
	o.segment_bytes = seg;
	o.max_run_bytes = maxrun;
	o.codec = (uint32_t)codec;
	o.level = level;
	o.frame_bytes = frame;
	o.threads = 2;
	CK(fvm_writer_open_path(&w, path, &o));
	return w;
}

/* An authenticated seed, with the key the targets give (reseal.c). */
static fvm_writer *start_key(const char *name, uint64_t seg)
{
	char path[4096];
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;

	snprintf(path, sizeof(path), "%s/reader/%s.fvm", root, name);
	o.flags = FVM_WRITE_NO_FSYNC;
	o.segment_bytes = seg;
	o.key = fuzz_key;
	CK(fvm_writer_open_path(&w, path, &o));
	return w;
}

static fvm_writer *start(const char *name, uint32_t flags, uint64_t seg, uint64_t maxrun)
{
	return start_codec(name, flags, seg, maxrun, FVM_CODEC_NONE, 0, 0);
}

static void finish(fvm_writer *w)
{
	CK(fvm_writer_finish(w));
	fvm_writer_free(w);
}

/* n pages of 4 KiB: bit i of mask set = page i non-zero. */
static uint8_t *pages(unsigned n, uint32_t mask, uint64_t seed)
{
	struct tu_rng g;
	uint8_t *p = calloc(n, 4096);

	tu_rng_seed(&g, seed);
	for (unsigned i = 0; i < n; i++)
		if (mask >> i & 1) {
			/* mostly small values so the fuzzer's dictionary stays useful */
			for (unsigned k = 0; k < 4096; k += 1 + (unsigned)tu_below(&g, 512))
				p[i * 4096 + k] = (uint8_t)(1 + tu_below(&g, 255));
		}
	return p;
}

static void reader_corpus(void)
{
	fvm_writer *w;
	uint32_t id, id2, id3;
	uint8_t *p;

	w = start("minimal-zero", 0, 0, 0); /* one zero page: no payload at all */
	p = pages(1, 0, 1);
	CK(fvm_writer_add_block(w, "pc.ram", 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);

	if (fvm_auth_available()) {
		w = start_key("auth-alternate", 0);
		p = pages(4, 0x5, 2);
		CK(fvm_writer_add_block(w, "pc.ram", 4 * 4096, 4096, &id));
		CK(fvm_writer_add_meta(w, "machine", "pc"));
		CK(fvm_writer_add_devstate(w, "dev", "state", 5));
		CK(fvm_writer_write_block(w, id, p));
		finish(w);
		free(p);
		w = start_key("auth-stream-rewrites", 4096);
		p = pages(6, 0x3b, 9);
		CK(fvm_writer_add_block(w, "pc.ram", 6 * 4096, 4096, &id));
		CK(fvm_writer_put_pages(w, id, 1, 3, p + 3 * 4096));
		CK(fvm_writer_put_pages(w, id, 0, 6, p));
		CK(fvm_writer_add_devstate(w, "cpu", "regs", 4));
		finish(w);
		free(p);
	} else {
		fprintf(stderr, "make_corpus: no libgcrypt in this build: no authenticated seeds\n");
	}

	w = start("alternate-crc", 0, 0, 0);
	p = pages(4, 0x5, 2);
	CK(fvm_writer_add_block(w, "pc.ram", 4 * 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);

	w = start("alternate-nocrc", FVM_WRITE_NO_CRC, 0, 0);
	p = pages(4, 0xa, 3);
	CK(fvm_writer_add_block(w, "pc.ram", 4 * 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);

	w = start("several-blocks", 0, 0, 0);
	p = pages(6, 0x33, 4);
	CK(fvm_writer_add_meta(w, "creator", "make_corpus"));
	CK(fvm_writer_add_meta(w, "machine", "pc-i440fx-7.2"));
	CK(fvm_writer_add_devstate(w, "qemu.config", "\x01\x02\x03", 3));
	CK(fvm_writer_add_block(w, "pc.ram", 4 * 4096, 4096, &id));
	CK(fvm_writer_add_block(w, "vga.vram", 8192, 4096, &id2));
	CK(fvm_writer_add_block(w, "/rom@etc/acpi/tables", 8192, 8192, &id3));
	CK(fvm_writer_write_block(w, id, p));
	CK(fvm_writer_write_block(w, id2, p + 4 * 4096));
	CK(fvm_writer_write_block(w, id3, p + 2 * 4096));
	CK(fvm_writer_add_devstate(w, "qemu.devices", "{\"a\":1}", 7));
	CK(fvm_writer_add_meta(w, "source", "generated"));
	finish(w);
	free(p);

	w = start("small-segments", 0, 4096, 0);
	p = pages(8, 0xef, 5);
	CK(fvm_writer_add_block(w, "pc.ram", 8 * 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);

	w = start("max-run", 0, 0, 4096);
	p = pages(5, 0x1f, 6);
	CK(fvm_writer_add_block(w, "pc.ram", 5 * 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);

	w = start("rewrites", 0, 8192, 0); /* pages delivered twice, and zeroed later */
	p = pages(6, 0x3f, 7);
	CK(fvm_writer_add_block(w, "pc.ram", 6 * 4096, 4096, &id));
	CK(fvm_writer_put_pages(w, id, 2, 3, p));
	CK(fvm_writer_put_pages(w, id, 0, 2, p + 3 * 4096));
	CK(fvm_writer_put_pages(w, id, 3, 1, p + 5 * 4096));
	CK(fvm_writer_put_zero(w, id, 1, 1));
	CK(fvm_writer_put_zero(w, id, 5, 1));
	finish(w);
	free(p);

	w = start("sparse", 0, 0, 0); /* pages never delivered */
	p = pages(2, 0x3, 8);
	CK(fvm_writer_add_block(w, "pc.ram", 16 * 4096, 4096, &id));
	CK(fvm_writer_put_pages(w, id, 9, 1, p));
	CK(fvm_writer_put_pages(w, id, 3, 1, p + 4096));
	CK(fvm_writer_put_zero(w, id, 12, 2));
	finish(w);
	free(p);

	w = start("hugepages-zero", 0, 0, 0); /* a 2 MiB-page block that is all zero */
	p = pages(2, 0x2, 9);
	CK(fvm_writer_add_block(w, "mem-huge", 4u << 20, 2u << 20, &id));
	CK(fvm_writer_add_block(w, "pc.ram", 8192, 4096, &id2));
	CK(fvm_writer_put_zero(w, id, 0, 2));
	CK(fvm_writer_write_block(w, id2, p));
	finish(w);
	free(p);

	w = start("devstate-only", 0, 0, 0);
	CK(fvm_writer_add_devstate(w, "", "", 0));
	CK(fvm_writer_add_devstate(w, "x", "\0\0\0\1", 4));
	CK(fvm_writer_add_meta(w, "empty", ""));
	finish(w);

	/* sections in parts (FORMAT.md 4.3), cut small: 40-byte parts */
	w = start("devstate-parts", 0, 0, 0);
	p = pages(2, 0x1, 10);
	CK(fvm_writer_set_devs_part(w, 40));
	CK(fvm_writer_add_block(w, "pc.ram", 8192, 4096, &id));
	CK(fvm_writer_devstate_begin(w, "vmstate"));
	for (unsigned i = 0; i < 7; i++)
		CK(fvm_writer_devstate_write(w, p + 31 * i, 31));
	CK(fvm_writer_devstate_end(w));
	CK(fvm_writer_write_block(w, id, p));
	CK(fvm_writer_devstate_begin(w, "vfio"));
	CK(fvm_writer_devstate_write(w, p + 100, 80)); /* exactly two parts */
	CK(fvm_writer_devstate_end(w));
	finish(w);
	free(p);
}

/*
 * n pages of 4 KiB by kind: 't' text (compresses well), 'r' random (a
 * frame of them is stored), 's' sparse small values, '0' zero.
 */
static uint8_t *kinds(const char *k, uint64_t seed)
{
	static const char *words[] = { "qemu ", "page ", "kernel ", "0x1000 ", "the " };
	size_t n = strlen(k);
	uint8_t *p = calloc(n, 4096);
	struct tu_rng g;

	tu_rng_seed(&g, seed);
	for (size_t i = 0; i < n; i++) {
		uint8_t *pg = p + i * 4096;

		if (k[i] == 'r') {
			tu_fill_page(&g, pg, 4096);
		} else if (k[i] == 's') {
			for (unsigned j = 0; j < 4096; j += 1 + (unsigned)tu_below(&g, 512))
				pg[j] = (uint8_t)(1 + tu_below(&g, 255));
		} else if (k[i] == 't') {
			for (size_t at = 0; at < 4096;) {
				const char *w = words[tu_below(&g, 5)];
				size_t len = strlen(w) < 4096 - at ? strlen(w) : 4096 - at;

				memcpy(pg + at, w, len);
				at += len;
			}
		}
	}
	return p;
}

static void compressed_one(int codec, const char *cname)
{
	char name[64];
	fvm_writer *w;
	uint32_t id, id2;
	uint8_t *p;

	/* several segments of 16 KiB: text frames compressed, a segment of
	 * random pages stored (4096-aligned), zero runs, a second block */
	snprintf(name, sizeof(name), "%s-segments", cname);
	w = start_codec(name, 0, 16u << 10, 0, codec, 0, 64u << 10);
	p = kinds("tttt0000rrrr00tt0sst", 11);
	CK(fvm_writer_add_meta(w, "creator", "make_corpus"));
	CK(fvm_writer_add_block(w, "pc.ram", 20 * 4096, 4096, &id));
	CK(fvm_writer_add_block(w, "vga.vram", 2 * 4096, 4096, &id2));
	CK(fvm_writer_write_block(w, id, p));
	CK(fvm_writer_write_block(w, id2, p + 14 * 4096));
	CK(fvm_writer_add_devstate(w, "qemu.devices", "{\"a\":1}", 7));
	finish(w);
	free(p);

	/* rewrites: pages delivered twice and zeroed later, so live frames
	 * hold dead bytes and one frame is dead entirely; 8 KiB pages */
	snprintf(name, sizeof(name), "%s-rewrites", cname);
	w = start_codec(name, 0, 32u << 10, 0, codec, 0, 64u << 10);
	p = kinds("ttrrttsst0tt", 12);
	CK(fvm_writer_add_block(w, "pc.ram", 6 * 8192, 8192, &id));
	CK(fvm_writer_put_pages(w, id, 0, 3, p));
	CK(fvm_writer_put_pages(w, id, 2, 2, p + 8192));
	CK(fvm_writer_put_zero(w, id, 0, 1));
	CK(fvm_writer_put_pages(w, id, 4, 2, p + 3 * 8192));
	CK(fvm_writer_put_pages(w, id, 1, 1, p + 5 * 8192));
	CK(fvm_writer_put_zero(w, id, 5, 1));
	finish(w);
	free(p);

	/* one 1 MiB frame at the codec's highest level, entries that it spans */
	snprintf(name, sizeof(name), "%s-bigframe", cname);
	w = start_codec(name, 0, 0, 8192, codec, codec == FVM_CODEC_ZSTD ? 19 : 12, 1u << 20);
	p = kinds("tt0ttst0s", 13);
	CK(fvm_writer_add_block(w, "pc.ram", 9 * 4096, 4096, &id));
	CK(fvm_writer_write_block(w, id, p));
	finish(w);
	free(p);
}

static void compressed_corpus(void)
{
	if (fvm_codec_available(FVM_CODEC_ZSTD))
		compressed_one(FVM_CODEC_ZSTD, "zstd");
	else
		fprintf(stderr, "make_corpus: no zstd in this build: no zstd seeds\n");
	if (fvm_codec_available(FVM_CODEC_LZ4))
		compressed_one(FVM_CODEC_LZ4, "lz4");
	else
		fprintf(stderr, "make_corpus: no lz4 in this build: no lz4 seeds\n");
}

static void seed(const char *name, const uint8_t *d, size_t n)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/roundtrip/%s", root, name);
	if (tu_write_file(path, d, n))
		die(path);
}

static void roundtrip_corpus(void)
{
	/* whole blocks: one block of 4 pages: zero, dense, last byte, first byte */
	static const uint8_t a[] = { 0x00, 0x00, 0x00, 3, 0x00, 0x11, 0x81, 0x80 };
	/* two blocks (4K and 8K pages), no CRC, small segments */
	static const uint8_t b[] = { 0x05, 0x01, 0x00, 5, 0x01, 2, 1, 2, 3, 0, 0, 0x7f, 0x85,
				     0x90, 0 };
	/* streaming with rewrites and put_zero */
	static const uint8_t c[] = { 0x02, 0x00, 0x00, 15,
				     0, 2, 3, 0x21, 0, 0, 1, 0x22, 0, 3, 0, 0x00,
				     0, 2, 3, 0x23, 0, 10, 5, 0x81, 0, 1, 0, 0x40 };
	/* 2 MiB pages, whole blocks */
	static const uint8_t d[] = { 0x10, 0x01, 0x03, 1, 0x00, 0, 0x07, 0x81, 0x82 };
	/* [1] bits 2-7 pick a codec, frame size and threads (fuzz_roundtrip.c) */
	/* zstd, 64 KiB frames, two blocks of dense, text-like and zero pages */
	static const uint8_t f[] = { 0x00, 0x05, 0x00, 20, 0x01, 6,
				     0x01, 0x02, 0x00, 0x03, 0x81, 0x04, 0x05, 0x06, 0x07, 0x00,
				     0x08, 0x09, 0x0a, 0x0b, 0x00, 0x00, 0x0c, 0x0d, 0x0e, 0x82,
				     0x11, 0x00, 0x12, 0x13, 0x14, 0x15 };
	/* lz4, 1 MiB frames, three threads each way, streaming rewrites, small segments */
	static const uint8_t g[] = { 0x26, 0xf8, 0x00, 30,
				     0, 0, 20, 0x21, 0, 5, 3, 0x22, 0, 4, 2, 0x00,
				     0, 25, 4, 0x23, 0, 1, 1, 0x81, 0, 0, 0, 0x40 };
	/* lz4 HC, 128 KiB frames, streaming, two blocks, max_run_bytes */
	static const uint8_t h[] = { 0x1a, 0x1d, 0x00, 40, 0x01, 3,
				     0, 0, 40, 0x31, 1, 1, 2, 0x32, 0, 10, 5, 0x00,
				     0, 12, 3, 0x33, 1, 0, 1, 0x84 };
	/* zstd, 256 KiB frames, a block of 2 MiB pages and a 4 KiB one */
	static const uint8_t i[] = { 0x00, 0x65, 0x03, 1, 0x00, 4, 0x07, 0x00, 0x11, 0x12,
				     0x00, 0x13 };
	/* streaming, four blocks, max_run_bytes, sparse deliveries */
	static const uint8_t e[] = { 0x2a, 0x03, 0x00, 20, 0x01, 9, 0x02, 3, 0x00, 4,
				     0, 5, 9, 0x31, 1, 2, 3, 0x32, 3, 1, 1, 0x33, 2, 0, 1, 0x34,
				     0, 0, 30, 0x35 };

	seed("whole-blocks", a, sizeof(a));
	seed("zstd-two-blocks", f, sizeof(f));
	seed("lz4-stream-rewrites", g, sizeof(g));
	seed("lz4hc-stream-two-blocks", h, sizeof(h));
	seed("zstd-hugepages", i, sizeof(i));
	seed("two-blocks-nocrc", b, sizeof(b));
	seed("stream-rewrites", c, sizeof(c));
	seed("hugepages", d, sizeof(d));
	seed("stream-sparse", e, sizeof(e));
}

int main(int argc, char **argv)
{
	char path[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: make_corpus DIR\n");
		return 2;
	}
	root = argv[1];
	snprintf(path, sizeof(path), "%s/reader", root);
	mkdir(root, 0755);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/roundtrip", root);
	mkdir(path, 0755);
	reader_corpus();
	compressed_corpus();
	roundtrip_corpus();
	return 0;
}
