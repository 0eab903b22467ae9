/*
 * codecs: the codec measurement of issue 9 (doc/BENCHMARKS.md, "Codec
 * choice"). Owns: reading a RAM image (a raw image such as pc.ram.raw, or
 * every RAM block of an .fvm snapshot loaded through the public API),
 * dropping its all-zero 4 KiB pages (the format stores none of them),
 * cutting the rest into independent frames of a fixed uncompressed size, and
 * timing each codec and level on those frames, one thread, as a loader
 * decoding frames on one core would: ratio, compress and decode MB/s per
 * core (medians of N runs, clock_gettime of the thread's CPU time, wall
 * time beside it in the JSON), and the share of frames that do
 * not shrink (a writer stores those uncompressed). Every decoded frame is
 * compared with its original after each run: a codec that does not round
 * trip byte for byte fails the program (exit 1), which the meson test
 * relies on (--inject-fault proves that check can fail).
 *
 * Ratio is original / stored bytes, where a frame that does not shrink is
 * counted at its original size (stored raw), so it is what a file would
 * save. MB = 10^6 bytes, of uncompressed data for both directions; decode
 * speed covers the frames that are stored compressed.
 *
 * Output: a Markdown table on stdout, JSON with --json FILE (written
 * atomically). Not part of the library: a benchmark, linked with libzstd,
 * liblz4 and zlib.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lz4.h>
#include <lz4hc.h>
#include <zlib.h>
#include <zstd.h>

#include <fastvm/fastvm.h>

#define PAGE 4096u
#define MAX_FRAME_SIZES 8
#define MAX_RUNS 15

enum codec_id { C_ZSTD, C_LZ4, C_LZ4HC, C_ZLIB };

struct codec {
	enum codec_id id;
	const char *name;
	int level;
	int slow;  /* a reference: one run, on a sample of the frames */
};

static const struct codec codecs[] = {
	{ C_ZSTD, "zstd", 1, 0 },
	{ C_ZSTD, "zstd", 3, 0 },
	{ C_ZSTD, "zstd", 6, 0 },
	{ C_ZSTD, "zstd", 9, 0 },
	{ C_ZSTD, "zstd", 19, 1 },
	{ C_LZ4, "lz4", 1, 0 },     /* LZ4_compress_default (acceleration 1) */
	{ C_LZ4HC, "lz4hc", 9, 0 },
	{ C_ZLIB, "zlib", 1, 0 },
	{ C_ZLIB, "zlib", 6, 0 },
};
#define N_CODECS (sizeof(codecs) / sizeof(codecs[0]))

/* Per-codec state reused across frames: no allocation per frame. */
struct coder {
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	void *lz4hc_state;
	z_stream def, inf;
	int def_level; /* level def was set up with, -1 none */
	int inf_ready;
};

struct frame {
	size_t off, len;     /* in the data buffer (uncompressed) */
	size_t slot;         /* offset of its compressed slot */
	size_t clen;         /* compressed length; 0 = does not shrink */
};

struct result {
	const struct codec *c;
	size_t frame_size;
	size_t frames, frames_measured, raw_frames;
	uint64_t in_bytes, stored_bytes, dec_bytes;
	double comp_s, dec_s;  /* medians, thread CPU time */
	double comp_wall_s, dec_wall_s; /* medians, wall */
	int runs;
};

static const char *prog = "codecs";

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * A span timed twice: wall (CLOCK_MONOTONIC) and this thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID). On a quiet machine they agree; on a shared
 * one the CPU time is what the work costs one core, so the per-core
 * speeds are taken from it and the wall speeds are kept beside them.
 */
struct span {
	double wall, cpu;
};

static struct span span_start(void)
{
	struct span s = { clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_THREAD_CPUTIME_ID) };

	return s;
}

static struct span span_end(struct span t0)
{
	struct span s = { clock_s(CLOCK_MONOTONIC) - t0.wall,
			  clock_s(CLOCK_THREAD_CPUTIME_ID) - t0.cpu };

	return s;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *big_alloc(size_t n)
{
	void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static int page_is_zero(const unsigned char *p)
{
	static const unsigned char zero[PAGE];

	return memcmp(p, zero, PAGE) == 0;
}

/* Appends the non-zero pages of [src, src + len) to data; returns pages kept. */
static size_t keep_nonzero(unsigned char *data, size_t *fill,
			   const unsigned char *src, size_t len)
{
	size_t kept = 0;

	for (size_t o = 0; o + PAGE <= len; o += PAGE) {
		if (page_is_zero(src + o))
			continue;
		memcpy(data + *fill, src + o, PAGE);
		*fill += PAGE;
		kept++;
	}
	return kept;
}

struct image {
	unsigned char *data;   /* non-zero pages, back to back */
	size_t len;
	uint64_t total_pages, nonzero_pages;
	const char *kind;
};

static void read_raw(const char *path, struct image *im)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	unsigned char *buf;
	size_t fill = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("cannot open %s", path);
	if (st.st_size < (off_t)PAGE)
		die("%s: smaller than one 4 KiB page", path);
	buf = big_alloc((size_t)st.st_size);
	im->data = big_alloc((size_t)st.st_size);
	if (!buf || !im->data)
		die("%s: out of memory", path);
	for (size_t got = 0; got < (size_t)st.st_size;) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("%s: read failed or file shrank", path);
		got += (size_t)n;
	}
	close(fd);
	im->total_pages = (uint64_t)st.st_size / PAGE;
	im->nonzero_pages = keep_nonzero(im->data, &fill, buf, (size_t)st.st_size);
	im->len = fill;
	im->kind = "raw image";
	munmap(buf, (size_t)st.st_size);
}

/* Every RAM block of the snapshot, loaded with fvm_load into fresh memory. */
static int read_fvm(const char *path, struct image *im)
{
	fvm_reader *r = NULL;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_mapping *maps;
	uint64_t total = 0;
	size_t fill = 0;
	int rc = fvm_reader_open(&r, path);

	if (rc == FVM_EMAGIC)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, fvm_error_detail());
		exit(1);
	}
	if (fvm_reader_info(r, &fi) < 0 || fi.block_count == 0)
		die("%s: no RAM block", path);
	maps = calloc(fi.block_count, sizeof(*maps));
	if (!maps)
		die("%s: out of memory", path);
	for (uint32_t i = 0; i < fi.block_count; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		fvm_mapping m = FVM_MAPPING_INIT;

		if (fvm_reader_block(r, i, &bi) < 0)
			die("%s: cannot list a block", path);
		m.name = bi.name;
		m.length = bi.length;
		m.flags = FVM_MAP_ZERO;
		m.addr = big_alloc(bi.length);
		if (!m.addr)
			die("%s: out of memory", path);
		maps[i] = m;
		total += bi.length;
	}
	rc = fvm_load(r, maps, fi.block_count, NULL, NULL);
	if (rc < 0) {
		fprintf(stderr, "%s: loading %s: %s\n", prog, path, fvm_error_detail());
		exit(1);
	}
	im->data = big_alloc(total);
	if (!im->data)
		die("%s: out of memory", path);
	im->total_pages = 0;
	im->nonzero_pages = 0;
	for (uint32_t i = 0; i < fi.block_count; i++) {
		/* Blocks smaller than a page (none in practice) add nothing. */
		im->total_pages += maps[i].length / PAGE;
		im->nonzero_pages += keep_nonzero(im->data, &fill, maps[i].addr,
						  maps[i].length);
		munmap(maps[i].addr, maps[i].length);
	}
	free(maps);
	fvm_reader_free(r);
	im->len = fill;
	im->kind = "fvm snapshot (all blocks)";
	return 1;
}

/* ---- codecs ---------------------------------------------------------- */

static size_t bound(const struct codec *c, size_t n)
{
	switch (c->id) {
	case C_ZSTD: return ZSTD_compressBound(n);
	case C_LZ4:
	case C_LZ4HC: return (size_t)LZ4_compressBound((int)n);
	case C_ZLIB: return compressBound((uLong)n);
	}
	return 0;
}

static void coder_init(struct coder *k)
{
	memset(k, 0, sizeof(*k));
	k->zc = ZSTD_createCCtx();
	k->zd = ZSTD_createDCtx();
	k->lz4hc_state = malloc((size_t)LZ4_sizeofStateHC());
	k->def_level = -1;
	if (!k->zc || !k->zd || !k->lz4hc_state)
		die("%s", "out of memory for codec state");
}

static void coder_free(struct coder *k)
{
	ZSTD_freeCCtx(k->zc);
	ZSTD_freeDCtx(k->zd);
	free(k->lz4hc_state);
	if (k->def_level >= 0)
		deflateEnd(&k->def);
	if (k->inf_ready)
		inflateEnd(&k->inf);
}

/* Compressed size, or 0 on error. */
static size_t compress1(struct coder *k, const struct codec *c, void *dst,
			size_t cap, const void *src, size_t n)
{
	switch (c->id) {
	case C_ZSTD: {
		size_t r = ZSTD_compressCCtx(k->zc, dst, cap, src, n, c->level);

		return ZSTD_isError(r) ? 0 : r;
	}
	case C_LZ4: {
		int r = LZ4_compress_default(src, dst, (int)n, (int)cap);

		return r > 0 ? (size_t)r : 0;
	}
	case C_LZ4HC: {
		int r = LZ4_compress_HC_extStateHC(k->lz4hc_state, src, dst, (int)n,
						   (int)cap, c->level);

		return r > 0 ? (size_t)r : 0;
	}
	case C_ZLIB:
		if (k->def_level != c->level) {
			if (k->def_level >= 0)
				deflateEnd(&k->def);
			memset(&k->def, 0, sizeof(k->def));
			if (deflateInit(&k->def, c->level) != Z_OK)
				die("%s", "deflateInit failed");
			k->def_level = c->level;
		} else if (deflateReset(&k->def) != Z_OK) {
			return 0;
		}
		k->def.next_in = (Bytef *)src;
		k->def.avail_in = (uInt)n;
		k->def.next_out = dst;
		k->def.avail_out = (uInt)cap;
		if (deflate(&k->def, Z_FINISH) != Z_STREAM_END)
			return 0;
		return cap - k->def.avail_out;
	}
	return 0;
}

/* Decoded size, or (size_t)-1 on error. */
static size_t decompress1(struct coder *k, const struct codec *c, void *dst,
			  size_t cap, const void *src, size_t n)
{
	switch (c->id) {
	case C_ZSTD: {
		size_t r = ZSTD_decompressDCtx(k->zd, dst, cap, src, n);

		return ZSTD_isError(r) ? (size_t)-1 : r;
	}
	case C_LZ4:
	case C_LZ4HC: {
		int r = LZ4_decompress_safe(src, dst, (int)n, (int)cap);

		return r >= 0 ? (size_t)r : (size_t)-1;
	}
	case C_ZLIB:
		if (!k->inf_ready) {
			memset(&k->inf, 0, sizeof(k->inf));
			if (inflateInit(&k->inf) != Z_OK)
				die("%s", "inflateInit failed");
			k->inf_ready = 1;
		} else if (inflateReset(&k->inf) != Z_OK) {
			return (size_t)-1;
		}
		k->inf.next_in = (Bytef *)src;
		k->inf.avail_in = (uInt)n;
		k->inf.next_out = dst;
		k->inf.avail_out = (uInt)cap;
		if (inflate(&k->inf, Z_FINISH) != Z_STREAM_END)
			return (size_t)-1;
		return cap - k->inf.avail_out;
	}
	return (size_t)-1;
}

/* ---- measurement ------------------------------------------------------- */

struct opts {
	int runs;
	size_t sample_every;  /* slow codecs: every Nth frame */
	int inject_fault;
	int quiet;
};

/*
 * One codec at one frame size: compress every measured frame `runs` times
 * (the last run's output is kept), decode the compressed ones into out at
 * their own offsets `runs` times, and compare out with the data after each
 * decode run. Frames that do not shrink are not decoded (stored raw: a
 * loader reads them in place) but must still be in out for the compare,
 * so they are copied once, untimed.
 */
static void measure(const struct image *im, const struct codec *c, size_t fsz,
		    const struct opts *o, unsigned char *arena, unsigned char *out,
		    struct result *res)
{
	size_t nf = (im->len + fsz - 1) / fsz, step = c->slow ? o->sample_every : 1;
	size_t slot = bound(c, fsz);
	int runs = c->slow ? 1 : o->runs;
	double ct[MAX_RUNS], dt[MAX_RUNS], cw[MAX_RUNS], dw[MAX_RUNS];
	struct frame *fr = calloc(nf ? nf : 1, sizeof(*fr));
	struct coder k;
	size_t m = 0;

	if (!fr)
		die("%s", "out of memory for the frame table");
	coder_init(&k);
	for (size_t i = 0; i < nf; i += step) {
		fr[m].off = i * fsz;
		fr[m].len = im->len - fr[m].off < fsz ? im->len - fr[m].off : fsz;
		fr[m].slot = m * slot;
		m++;
	}
	memset(res, 0, sizeof(*res));
	res->c = c;
	res->frame_size = fsz;
	res->frames = nf;
	res->frames_measured = m;
	res->runs = runs;
	for (int r = 0; r < runs; r++) {
		struct span t0 = span_start(), t;

		for (size_t i = 0; i < m; i++) {
			size_t z = compress1(&k, c, arena + fr[i].slot, slot,
					     im->data + fr[i].off, fr[i].len);

			if (z == 0) {
				fprintf(stderr, "%s: %s level %d: frame %zu (data offset %zu) failed to compress\n",
					prog, c->name, c->level, i, fr[i].off);
				exit(1);
			}
			fr[i].clen = z < fr[i].len ? z : 0;
		}
		t = span_end(t0);
		ct[r] = t.cpu;
		cw[r] = t.wall;
	}
	for (size_t i = 0; i < m; i++) {
		res->in_bytes += fr[i].len;
		res->stored_bytes += fr[i].clen ? fr[i].clen : fr[i].len;
		if (fr[i].clen)
			res->dec_bytes += fr[i].len;
		else
			res->raw_frames++;
	}
	for (int r = 0; r < runs; r++) {
		struct span t0, t;

		/* Untimed: stale bytes from the last run must not pass the compare. */
		for (size_t i = 0; i < m; i++)
			memset(out + fr[i].off, 0xa5, fr[i].len);
		t0 = span_start();
		for (size_t i = 0; i < m; i++) {
			size_t d;

			if (!fr[i].clen)
				continue;
			d = decompress1(&k, c, out + fr[i].off, fr[i].len,
					arena + fr[i].slot, fr[i].clen);
			if (d != fr[i].len) {
				fprintf(stderr, "%s: %s level %d, %zu KiB frames: frame %zu (data offset %zu) decoded to %zd bytes, expected %zu\n",
					prog, c->name, c->level, fsz >> 10, i, fr[i].off,
					(ssize_t)d, fr[i].len);
				exit(1);
			}
		}
		t = span_end(t0);
		dt[r] = t.cpu;
		dw[r] = t.wall;
		for (size_t i = 0; i < m; i++)
			if (!fr[i].clen)
				memcpy(out + fr[i].off, im->data + fr[i].off, fr[i].len);
		if (o->inject_fault && m > 0)
			out[fr[m / 2].off + fr[m / 2].len / 2] ^= 0x01;
		for (size_t i = 0; i < m; i++) {
			if (memcmp(out + fr[i].off, im->data + fr[i].off, fr[i].len) == 0)
				continue;
			fprintf(stderr, "%s: %s level %d, %zu KiB frames: frame %zu (data offset %zu) does not round-trip\n",
				prog, c->name, c->level, fsz >> 10, i, fr[i].off);
			exit(1);
		}
	}
	res->comp_s = median(ct, runs);
	res->dec_s = median(dt, runs);
	res->comp_wall_s = median(cw, runs);
	res->dec_wall_s = median(dw, runs);
	coder_free(&k);
	free(fr);
	/* Drop the compressed bytes: the next codec starts from clean pages. */
	madvise(arena, m * slot, MADV_DONTNEED);
}

static double mbps(uint64_t bytes, double s)
{
	return s > 0 ? (double)bytes / s / 1e6 : 0;
}

static void print_row(FILE *f, const struct result *r)
{
	char dec[32];

	if (r->dec_bytes)
		snprintf(dec, sizeof(dec), "%.0f", mbps(r->dec_bytes, r->dec_s));
	else
		snprintf(dec, sizeof(dec), "-");
	fprintf(f, "| %s %d%s | %zu KiB | %.3f | %.1f | %s | %.1f%% |\n",
		r->c->name, r->c->level, r->c->slow ? "*" : "", r->frame_size >> 10,
		r->stored_bytes ? (double)r->in_bytes / (double)r->stored_bytes : 0,
		mbps(r->in_bytes, r->comp_s), dec,
		r->frames_measured ? 100.0 * (double)r->raw_frames / (double)r->frames_measured : 0);
}

/* s as a JSON string (quotes, backslashes and controls escaped). */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void write_json(const char *path, const char *input, const struct image *im,
		       const struct result *res, size_t n, const struct opts *o)
{
	size_t plen = strlen(path) + 16;
	char *tmp = malloc(plen);
	FILE *f;

	if (!tmp)
		die("%s", "out of memory");
	snprintf(tmp, plen, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		die("cannot write %s", tmp);
	fprintf(f, "{\n  \"input\": ");
	json_str(f, input);
	fprintf(f, ",\n  \"kind\": \"%s\",\n", im->kind);
	fprintf(f, "  \"total_pages\": %llu,\n  \"nonzero_pages\": %llu,\n  \"data_bytes\": %zu,\n",
		(unsigned long long)im->total_pages, (unsigned long long)im->nonzero_pages, im->len);
	fprintf(f, "  \"runs\": %d,\n  \"zstd\": \"%s\",\n  \"lz4\": \"%s\",\n  \"zlib\": \"%s\",\n",
		o->runs, ZSTD_versionString(), LZ4_versionString(), zlibVersion());
	fprintf(f, "  \"results\": [\n");
	for (size_t i = 0; i < n; i++) {
		const struct result *r = &res[i];

		fprintf(f, "    {\"codec\": \"%s\", \"level\": %d, \"frame_size\": %zu, "
			"\"frames\": %zu, \"frames_measured\": %zu, \"runs\": %d, "
			"\"in_bytes\": %llu, \"stored_bytes\": %llu, \"ratio\": %.4f, "
			"\"compress_mbps\": %.2f, \"decode_mbps\": %.2f, "
			"\"compress_wall_mbps\": %.2f, \"decode_wall_mbps\": %.2f, "
			"\"frames_not_shrinking\": %.4f}%s\n",
			r->c->name, r->c->level, r->frame_size, r->frames, r->frames_measured,
			r->runs, (unsigned long long)r->in_bytes,
			(unsigned long long)r->stored_bytes,
			r->stored_bytes ? (double)r->in_bytes / (double)r->stored_bytes : 0,
			mbps(r->in_bytes, r->comp_s),
			r->dec_bytes ? mbps(r->dec_bytes, r->dec_s) : 0,
			mbps(r->in_bytes, r->comp_wall_s),
			r->dec_bytes ? mbps(r->dec_bytes, r->dec_wall_s) : 0,
			r->frames_measured ? (double)r->raw_frames / (double)r->frames_measured : 0,
			i + 1 < n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		die("cannot write %s", tmp);
	if (rename(tmp, path) != 0)
		die("cannot rename into %s", path);
	free(tmp);
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		die("bad size '%s'", s);
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || v < PAGE || v > (64u << 20) || v % PAGE)
		die("frame size '%s': a multiple of 4K, at most 64M", s);
	return (size_t)v;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: codecs [options] IMAGE\n"
		"\n"
		"Measure zstd 1/3/6/9 (19 once, sampled), lz4, lz4hc 9 and zlib 1/6 on\n"
		"the non-zero 4 KiB pages of IMAGE (a raw RAM image, or an .fvm\n"
		"snapshot: all its RAM blocks), cut into independent frames.\n"
		"\n"
		"  -f, --frame SIZE    frame size (repeatable; default 256K and 1M)\n"
		"  -r, --runs N        timed runs per codec, median taken (default 3)\n"
		"      --sample N      slow reference (zstd 19): every Nth frame (default 8)\n"
		"  -c, --codec NAME    only codecs whose name is NAME (zstd, lz4, lz4hc, zlib)\n"
		"  -j, --json FILE     also write the results as JSON (atomically)\n"
		"      --inject-fault  flip one decoded byte (proves the check fails)\n"
		"  -q, --quiet         no progress on stderr\n"
		"  -h, --help          this help\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "frame", required_argument, NULL, 'f' },
		{ "runs", required_argument, NULL, 'r' },
		{ "sample", required_argument, NULL, 's' },
		{ "codec", required_argument, NULL, 'c' },
		{ "json", required_argument, NULL, 'j' },
		{ "inject-fault", no_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 3, 8, 0, 0 };
	size_t fsz[MAX_FRAME_SIZES], nfsz = 0, nres = 0, maxslots = 0;
	const char *json = NULL, *only = NULL;
	struct image im = { 0 };
	struct result *res;
	unsigned char *arena, *out;
	int ch;

	while ((ch = getopt_long(argc, argv, "f:r:c:j:qh", lo, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (nfsz == MAX_FRAME_SIZES)
				die("%s", "too many --frame sizes");
			fsz[nfsz++] = parse_size(optarg);
			break;
		case 'r':
			o.runs = atoi(optarg);
			if (o.runs < 1 || o.runs > MAX_RUNS)
				die("--runs '%s': 1 to 15", optarg);
			break;
		case 's':
			o.sample_every = (size_t)atoi(optarg);
			if (o.sample_every < 1)
				die("--sample '%s': at least 1", optarg);
			break;
		case 'c': only = optarg; break;
		case 'j': json = optarg; break;
		case 'F': o.inject_fault = 1; break;
		case 'q': o.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (nfsz == 0) {
		fsz[nfsz++] = 256u << 10;
		fsz[nfsz++] = 1u << 20;
	}
	if (!read_fvm(argv[optind], &im))
		read_raw(argv[optind], &im);
	if (im.len == 0)
		die("%s: every page is zero, nothing to compress", argv[optind]);

	for (size_t s = 0; s < nfsz; s++)
		for (size_t c = 0; c < N_CODECS; c++) {
			size_t need = ((im.len + fsz[s] - 1) / fsz[s]) * bound(&codecs[c], fsz[s]);

			maxslots = need > maxslots ? need : maxslots;
		}
	arena = big_alloc(maxslots);
	out = big_alloc(im.len);
	res = calloc(nfsz * N_CODECS, sizeof(*res));
	if (!arena || !out || !res)
		die("%s", "out of memory for the frames");

	printf("Input: %s (%s): %llu pages, %llu non-zero (%.1f%%), %.1f MiB of data\n\n",
	       argv[optind], im.kind, (unsigned long long)im.total_pages,
	       (unsigned long long)im.nonzero_pages,
	       im.total_pages ? 100.0 * (double)im.nonzero_pages / (double)im.total_pages : 0,
	       (double)im.len / 1048576.0);
	printf("| codec level | frame | ratio | compress MB/s | decode MB/s | frames not shrinking |\n");
	printf("|---|---|---|---|---|---|\n");
	fflush(stdout);
	for (size_t s = 0; s < nfsz; s++)
		for (size_t c = 0; c < N_CODECS; c++) {
			if (only && strcmp(only, codecs[c].name) != 0)
				continue;
			if (!o.quiet)
				fprintf(stderr, "%s: %s %d, %zu KiB frames...\n", prog,
					codecs[c].name, codecs[c].level, fsz[s] >> 10);
			measure(&im, &codecs[c], fsz[s], &o, arena, out, &res[nres]);
			print_row(stdout, &res[nres]);
			fflush(stdout);
			nres++;
		}
	if (nres == 0)
		die("no codec named '%s'", only);
	printf("\n* one run on every %zuth frame (a reference, too slow to run whole).\n"
	       "Ratio: data bytes / stored bytes (frames that do not shrink stored raw).\n"
	       "MB/s: 10^6 uncompressed bytes per second of one thread's CPU time\n"
	       "(CLOCK_THREAD_CPUTIME_ID; the JSON also has wall-clock speeds); decode\n"
	       "over the frames stored compressed. libzstd %s, liblz4 %s, zlib %s.\n",
	       o.sample_every, ZSTD_versionString(), LZ4_versionString(), zlibVersion());
	if (json)
		write_json(json, argv[optind], &im, res, nres, &o);
	free(res);
	return 0;
}
