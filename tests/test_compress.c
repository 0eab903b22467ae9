/*
 * Compressed payload (doc/FORMAT.md 4.5, 5.1) through the public API:
 * every codec this build has, frame sizes 64 KiB and 1 MiB, blocks of
 * compressible, incompressible (stored frames) and zero pages, written
 * with write_block and with put_pages (pages delivered twice, so frames
 * hold dead bytes). Each file is loaded with io_uring and with pread, on
 * one and on three threads, into guarded memory, read back with
 * read_pages, verified, streamed through a pipe; the mmap backend is
 * refused with a reason; and damaged frames (a stored byte, a CRC, a
 * stored_len) are refused naming the frame, by load, verify and stream.
 * A larger file is loaded from the disk with two reads in flight, on one
 * thread and on two.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 1200u /* 4.7 MiB: several 1 MiB frames, many 64 KiB ones */

static char dir[256];

/* Text-like pages (compress well), random pages (stored), zero runs. */
static void fill(uint8_t *mem, uint64_t pages, struct tu_rng *r)
{
	static const char *words[] = { "qemu ", "snapshot ", "page ", "kernel ", "0x1000 ",
				       "libc.so.6 ", "\n", "memory ", "the ", "run " };

	for (uint64_t p = 0; p < pages; p++) {
		uint8_t *pg = mem + p * PAGE;
		uint64_t kind = (p / 37) % 4;

		if (kind == 0) {
			memset(pg, 0, PAGE);
		} else if (kind == 3) {
			tu_fill_page(r, pg, PAGE);
		} else {
			size_t at = 0;

			while (at < PAGE) {
				const char *w = words[tu_below(r, 10)];
				size_t n = strlen(w) < PAGE - at ? strlen(w) : PAGE - at;

				memcpy(pg + at, w, n);
				at += n;
			}
		}
	}
}

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* Write mem as block "pc.ram" (plus a 2-page "rom") with codec c. */
static void write_file(const char *path, int codec, uint32_t frame, int streaming,
		       const uint8_t *mem, const uint8_t *rom)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b, rb;

	o.codec = (uint32_t)codec;
	o.frame_bytes = frame;
	o.flags = FVM_WRITE_NO_FSYNC;
	o.threads = 3;
	o.segment_bytes = 2u << 20; /* several segments */
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_add_block(w, "rom", 2 * PAGE, PAGE, &rb), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "dev", "state", 5), 0);
	if (!streaming) {
		assert_int_equal(fvm_writer_write_block(w, b, mem), 0);
	} else {
		/* first a wrong copy of pages 100..399, then everything in
		 * pieces: the first copy's frames are partly dead */
		uint8_t *junk = malloc(300 * PAGE);
		struct tu_rng r;

		tu_rng_seed(&r, 99);
		tu_fill_random(&r, junk, 300 * PAGE);
		assert_int_equal(fvm_writer_put_pages(w, b, 100, 300, junk), 0);
		free(junk);
		for (uint64_t p = 0; p < PAGES; p += 97) {
			uint64_t n = PAGES - p < 97 ? PAGES - p : 97;

			assert_int_equal(fvm_writer_put_pages(w, b, p, n, mem + p * PAGE), 0);
		}
	}
	assert_int_equal(fvm_writer_write_block(w, rb, rom), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

static uint32_t load_flags; /* FVM_LOAD_* of load() */

static int load(fvm_reader *r, uint8_t *ram, uint8_t *rom, int backend, unsigned threads,
		uint64_t *read)
{
	fvm_mapping m[2] = { FVM_MAPPING_INIT, FVM_MAPPING_INIT };
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	int rc;

	m[0].name = "pc.ram";
	m[0].addr = ram;
	m[0].length = (uint64_t)PAGES * PAGE;
	m[1].name = "rom";
	m[1].addr = rom;
	m[1].length = 2 * PAGE;
	lo.backend = backend;
	lo.flags = load_flags;
	lo.zero_policy = FVM_ZERO_MEMSET;
	tu.threads = threads;
	lo.tuning = &tu;
	rc = fvm_load(r, m, 2, &lo, &st);
	if (read)
		*read = st.bytes_read;
	return rc;
}

static void check_file(const char *path, const uint8_t *mem, const uint8_t *rom, int codec)
{
	uint64_t len = (uint64_t)PAGES * PAGE;
	uint8_t *ram = tu_guard_alloc(len, 0xa5), *r2 = tu_guard_alloc(2 * PAGE, 0xa5);
	uint8_t *buf = malloc(len);
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r;
	uint64_t got = 0;
	static const int backends[] = { FVM_BACKEND_AUTO, FVM_BACKEND_PREAD };

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_true(fi.incompat_features & 2);
	assert_int_equal(fi.version_minor, 2);
	for (int bi = 0; bi < 2; bi++)
		for (unsigned th = 1; th <= 3; th += 2) {
			memset(ram, 0xa5, len);
			memset(r2, 0xa5, 2 * PAGE);
			assert_int_equal(load(r, ram, r2, backends[bi], th, &got), 0);
			assert_memory_equal(ram, mem, len);
			assert_memory_equal(r2, rom, 2 * PAGE);
			assert_true(got > 0 && got < len); /* fewer bytes than plain */
		}
	/* the lazy map and the mmap backend refuse, saying why */
	{
		fvm_mapping m[2] = { FVM_MAPPING_INIT, FVM_MAPPING_INIT };
		fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;

		m[0].name = "pc.ram"; m[0].addr = ram; m[0].length = len;
		m[1].name = "rom"; m[1].addr = r2; m[1].length = 2 * PAGE;
		lo.backend = FVM_BACKEND_MMAP;
		lo.flags = FVM_LOAD_LAZY;
		assert_int_equal(fvm_load(r, m, 2, &lo, NULL), FVM_EUNSUPPORTED);
		assert_non_null(strstr(fvm_error_detail(), "compressed"));
		assert_non_null(strstr(fvm_error_detail(), fvm_codec_name(codec)));
	}
	/* read_pages: all at once, and in odd pieces */
	assert_int_equal(fvm_reader_read_pages(r, 0, 0, PAGES, buf), 0);
	assert_memory_equal(buf, mem, len);
	for (uint64_t p = 0; p < PAGES; p += 13) {
		uint64_t n = PAGES - p < 13 ? PAGES - p : 13;

		assert_int_equal(fvm_reader_read_pages(r, 0, p, n, buf), 0);
		assert_memory_equal(buf, mem + p * PAGE, n * PAGE);
	}
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);

	/* through a pipe: the walker decodes the frames */
	{
		int fds[2];
		pid_t pid;
		fvm_reader *s;

		assert_int_equal(pipe(fds), 0);
		pid = fork();
		if (pid == 0) {
			int fd = open(path, O_RDONLY);
			char b[65536];
			ssize_t n;

			close(fds[0]);
			while ((n = read(fd, b, sizeof(b))) > 0)
				if (write(fds[1], b, (size_t)n) != n)
					_exit(1);
			_exit(0);
		}
		close(fds[1]);
		assert_int_equal(fvm_reader_open_stream(&s, fds[0], "pipe"), 0);
		memset(ram, 0xa5, len);
		memset(r2, 0xa5, 2 * PAGE);
		assert_int_equal(load(s, ram, r2, FVM_BACKEND_AUTO, 0, NULL), 0);
		assert_memory_equal(ram, mem, len);
		assert_memory_equal(r2, rom, 2 * PAGE);
		fvm_reader_free(s);
		close(fds[0]);
		waitpid(pid, NULL, 0);
	}
	free(buf);
	tu_guard_free(ram, len);
	tu_guard_free(r2, 2 * PAGE);
}

static void run_codec(int codec)
{
	uint64_t len = (uint64_t)PAGES * PAGE;
	uint8_t *mem = malloc(len), rom[2 * PAGE];
	struct tu_rng r;
	char path[512];

	if (!fvm_codec_available(codec)) {
		print_message("codec %s not in this build: skipped\n", fvm_codec_name(codec));
		free(mem);
		return;
	}
	tu_rng_seed(&r, 7 + (uint64_t)codec);
	fill(mem, PAGES, &r);
	memset(rom, 0, sizeof(rom));
	memcpy(rom + 100, "rom bytes", 9);
	for (uint32_t frame = 64u << 10; frame <= (1u << 20); frame <<= 4)
		for (int streaming = 0; streaming < 2; streaming++) {
			path_of(path, sizeof(path), "c.fvm");
			write_file(path, codec, frame, streaming, mem, rom);
			check_file(path, mem, rom, codec);
		}
	free(mem);
}

static void test_zstd(void **state)
{
	(void)state;
	run_codec(FVM_CODEC_ZSTD);
}

static void test_lz4(void **state)
{
	(void)state;
	run_codec(FVM_CODEC_LZ4);
}

static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long sz;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)sz);
	assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	*n = (size_t)sz;
	return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Damage the first compressed frame: load, verify and stream refuse it. */
/* CRC32C, bit by bit: the test's own, not the library's */
static uint32_t crc32c(uint32_t c, const uint8_t *p, size_t n)
{
	c = ~c;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

static void test_damage(void **state)
{
	uint64_t len = (uint64_t)PAGES * PAGE;
	uint8_t *mem = malloc(len), rom[2 * PAGE] = { 0 }, *f, *ram, *r2;
	char path[512], bad[512];
	struct tu_rng r;
	size_t n, frames_at;
	uint64_t index_off, file_off = 0;
	fvm_reader *rd;
	int codec = fvm_codec_available(FVM_CODEC_ZSTD) ? FVM_CODEC_ZSTD : FVM_CODEC_LZ4;

	(void)state;
	if (!fvm_codec_available(codec))
		skip();
	tu_rng_seed(&r, 3);
	fill(mem, PAGES, &r);
	path_of(path, sizeof(path), "d.fvm");
	path_of(bad, sizeof(bad), "bad.fvm");
	write_file(path, codec, 64u << 10, 0, mem, rom);
	f = slurp(path, &n);
	/* the index: the footer names it; its frame list follows the extents */
	index_off = ld64(f + n - 32);
	{
		const uint8_t *b = f + index_off + 16;
		uint32_t nb = (uint32_t)ld64(b) & 0xffffffffu, nm = (uint32_t)(ld64(b + 4) & 0xffffffffu);
		uint32_t nd = (uint32_t)(ld64(b + 8) & 0xffffffffu);
		uint64_t ne = ld64(b + 16);

		frames_at = (size_t)(index_off + 16 + 24 + 8 * ((uint64_t)nb + nm + nd) + 40 * ne);
	}
	assert_true(ld64(f + frames_at) > 10);
	/* first compressed frame (stored_len < plain_len) */
	for (uint64_t k = 0; k < ld64(f + frames_at); k++) {
		const uint8_t *e = f + frames_at + 8 + 32 * k;

		if ((ld64(e + 16) & 0xffffffffu) != (ld64(e + 20) & 0xffffffffu)) {
			file_off = ld64(e + 8);
			break;
		}
	}
	assert_true(file_off > 0);

	/*
	 * crc_plain of that frame wrong, the INDX record's CRC made right: a
	 * load checks it with FVM_LOAD_VERIFY (as it checks an uncompressed
	 * run's CRCs); a load without VERIFY checks only
	 * crc_stored, which holds, and the bytes it gives are the writer's.
	 */
	{
		uint8_t *g = malloc(n);
		size_t k_at = 0;
		uint32_t c;

		assert_non_null(g);
		memcpy(g, f, n);
		for (uint64_t k = 0; k < ld64(f + frames_at); k++)
			if (ld64(f + frames_at + 8 + 32 * k + 8) == file_off)
				k_at = (size_t)(frames_at + 8 + 32 * k);
		assert_true(k_at > 0);
		g[k_at + 28] ^= 1;
		c = crc32c(0, g + index_off, 4);
		c = crc32c(c, g + index_off + 8, 8);
		c = crc32c(c, g + index_off + 16, ld64(g + index_off + 8));
		memcpy(g + index_off + 4, &c, 4);
		spit(bad, g, n);
		free(g);
		ram = tu_guard_alloc(len, 0);
		r2 = tu_guard_alloc(2 * PAGE, 0);
		assert_int_equal(fvm_reader_open(&rd, bad), 0);
		assert_int_equal(load(rd, ram, r2, FVM_BACKEND_AUTO, 2, NULL), 0);
		assert_memory_equal(ram, mem, len);
		load_flags = FVM_LOAD_VERIFY;
		assert_int_equal(load(rd, ram, r2, FVM_BACKEND_AUTO, 2, NULL), FVM_ECHECKSUM);
		assert_non_null(strstr(fvm_error_detail(), "plain crc"));
		assert_int_equal(load(rd, ram, r2, FVM_BACKEND_PREAD, 1, NULL), FVM_ECHECKSUM);
		load_flags = 0;
		/* verify finds the index and the segment's frame table disagree (R68) */
		assert_int_equal(fvm_verify(rd, NULL, NULL), FVM_ECORRUPT);
		assert_non_null(strstr(fvm_error_detail(), "frame"));
		fvm_reader_free(rd);
		tu_guard_free(ram, len);
		tu_guard_free(r2, 2 * PAGE);
	}

	f[file_off + 5] ^= 0x40;
	spit(bad, f, n);
	ram = tu_guard_alloc(len, 0);
	r2 = tu_guard_alloc(2 * PAGE, 0);
	assert_int_equal(fvm_reader_open(&rd, bad), 0); /* the structure is intact */
	assert_int_equal(load(rd, ram, r2, FVM_BACKEND_AUTO, 2, NULL), FVM_ECHECKSUM);
	assert_non_null(strstr(fvm_error_detail(), "frame"));
	assert_non_null(strstr(fvm_error_detail(), "stored crc"));
	assert_int_equal(load(rd, ram, r2, FVM_BACKEND_PREAD, 1, NULL), FVM_ECHECKSUM);
	assert_int_equal(fvm_verify(rd, NULL, NULL), FVM_ECHECKSUM);
	assert_non_null(strstr(fvm_error_detail(), "frame"));
	fvm_reader_free(rd);
	free(f);
	free(mem);
	tu_guard_free(ram, len);
	tu_guard_free(r2, 2 * PAGE);
}

/*
 * Several spans, two reads in flight, read from the disk (the file's pages
 * dropped from the page cache first), on one thread and on two: the
 * reading thread decodes a span that arrives while its other read is in
 * flight (take_spare) or once both have arrived, as the timing goes; every
 * byte lands where it belongs either way.
 */
static void test_spans_in_flight(void **state)
{
	const uint64_t pages = 6144; /* 24 MiB: several 2 MiB spans */
	const uint64_t len = pages * PAGE;
	uint8_t *mem = malloc(len), *ram = tu_guard_alloc(len, 0xa5);
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	struct tu_rng rng;
	fvm_writer *w;
	fvm_reader *r;
	char path[512];
	uint32_t b;
	int codec = fvm_codec_available(FVM_CODEC_ZSTD) ? FVM_CODEC_ZSTD : FVM_CODEC_LZ4;

	(void)state;
	assert_non_null(mem);
	tu_rng_seed(&rng, 11);
	fill(mem, pages, &rng);
	path_of(path, sizeof(path), "spans.fvm");
	o.codec = (uint32_t)codec;
	o.frame_bytes = 1u << 20;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0); /* fsynced: clean pages */
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", len, PAGE, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, b, mem), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	for (unsigned th = 1; th <= 2; th++) {
		fvm_mapping m = FVM_MAPPING_INIT;
		fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
		fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
		fvm_load_stats st = FVM_LOAD_STATS_INIT;
		int fd = open(path, O_RDONLY);

		assert_true(fd >= 0);
		assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		close(fd);
		assert_int_equal(fvm_reader_open(&r, path), 0);
		memset(ram, 0xa5, len);
		m.name = "pc.ram";
		m.addr = ram;
		m.length = len;
		lo.zero_policy = FVM_ZERO_MEMSET;
		tu.threads = th;
		tu.queue_depth = 2;
		lo.tuning = &tu;
		assert_int_equal(fvm_load(r, &m, 1, &lo, &st), 0);
		assert_memory_equal(ram, mem, len);
		assert_true(st.bytes_read > 0 && st.bytes_read < len);
		fvm_reader_free(r);
	}
	free(mem);
	tu_guard_free(ram, len);
}

/* Options that make no sense are refused before anything is written. */
static void test_options(void **state)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w = NULL;
	char path[512];

	(void)state;
	path_of(path, sizeof(path), "o.fvm");
	o.codec = 9;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), FVM_EINVAL);
	assert_non_null(strstr(fvm_error_detail(), "codec"));
	o.codec = FVM_CODEC_ZSTD;
	o.frame_bytes = 3u << 16;
	assert_int_equal(fvm_writer_open_path(&w, path, &o),
			 fvm_codec_available(FVM_CODEC_ZSTD) ? FVM_EINVAL : FVM_EUNSUPPORTED);
	o.frame_bytes = 0;
	o.level = 40;
	assert_int_equal(fvm_writer_open_path(&w, path, &o),
			 fvm_codec_available(FVM_CODEC_ZSTD) ? FVM_EINVAL : FVM_EUNSUPPORTED);
	assert_int_equal(access(path, F_OK), -1);
	assert_string_equal(fvm_codec_name(FVM_CODEC_NONE), "none");
	assert_null(fvm_codec_name(7));
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/fvm-compress-XXXXXX");
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
	if (!fvm_codec_available(FVM_CODEC_ZSTD) && !fvm_codec_available(FVM_CODEC_LZ4)) {
		printf("SKIP: this libfastvm has no codec (libzstd-dev, liblz4-dev)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zstd),
		cmocka_unit_test(test_lz4),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_spans_in_flight),
		cmocka_unit_test(test_options),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
