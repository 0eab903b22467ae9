/*
 * fvmsnap recompress: a snapshot rewritten with another payload encoding
 * (doc/FORMAT.md 4.5): compressed with a codec and level, or back to plain
 * runs with --compress none. Blocks, runs, device state and metadata are
 * kept; the live pages are read through the reader (every CRC checked) in
 * pieces of PIECE bytes and handed to a writer, which finds zero pages
 * again. The output is written atomically (temporary file, fsync, rename)
 * and may not be the input.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"

#define PIECE (4u << 20)

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap recompress IN.fvm -o OUT.fvm [--compress CODEC[:LEVEL]]\n"
		"                          [--frame-size SIZE] [--key KEYFILE [--no-auth]]\n"
		"                          [options]\n"
		"\n"
		"Rewrite a snapshot with its RAM runs compressed (for slow flash, where\n"
		"fewer bytes load faster) or, with --compress none, stored plain again\n"
		"(mmap-able: fvm-lazy: and FVM_BACKEND_MMAP need that). Blocks, device\n"
		"state and metadata are kept; every checksum of IN is checked on the way.\n"
		"\n"
		"  -o, --output OUT.fvm      the snapshot to write (atomically; not IN)\n"
		"      --compress CODEC[:LEVEL]  zstd (1-19, default 3), lz4 (1-12, 3 and up\n"
		"                            HC), or none (default: zstd)\n"
		"      --frame-size SIZE     plain bytes per frame, 64K..1M (default 1M)\n"
		"      --key KEYFILE         the key of an authenticated IN, and OUT is\n"
		"                            authenticated with it (then not compressed: the\n"
		"                            default becomes --compress none); a plain IN is\n"
		"                            read as it is and authenticated by this\n"
		"      --no-auth             with --key: OUT is not authenticated (IN is read\n"
		"                            with the key; OUT may be compressed again)\n"
		"      --hot FILE            write the pages FILE lists (fvmsnap hot: a restored\n"
		"                            VM's working set) first, so that a prefetch in\n"
		"                            file order reads them first\n"
		"      --no-fsync            skip fsync (scratch files, tests)\n"
		"  -q, --quiet               no progress bar, no summary line\n"
		"      --progress            progress bar even when stderr is not a TTY\n"
		"  -h, --help                this help\n");
}

enum { OPT_COMPRESS = 256, OPT_FRAME, OPT_NO_FSYNC, OPT_PROGRESS, OPT_HOT, OPT_KEY, OPT_NO_AUTH };

/*
 * The working set (fvmsnap hot): one bit per page of each block, set for
 * the pages listed in FILE ("BLOCK FIRST COUNT" lines). NULL bits[b]: none
 * of block b. 0 or an exit code.
 */
static int read_hot(const char *file, fvm_reader *r, uint8_t ***bits, uint64_t *pages)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	char name[FVM_MAX_NAME + 2], line[512];
	unsigned long long first, count;
	unsigned lineno = 0;
	FILE *f = fopen(file, "r");

	*pages = 0;
	if (!f)
		return cli_fail_sys(file, errno);
	(void)fvm_reader_info(r, &fi);
	*bits = calloc(fi.block_count ? fi.block_count : 1, sizeof(**bits));
	if (!*bits) {
		fclose(f);
		return cli_fail_sys("allocating", ENOMEM);
	}
	while (fgets(line, sizeof(line), f)) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint32_t b;

		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%256s %llu %llu", name, &first, &count) != 3 ||
		    fvm_reader_find_block(r, name, &b) || fvm_reader_block(r, b, &bi) ||
		    !count || first >= bi.length / bi.page_size ||
		    count > bi.length / bi.page_size - first) {
			fclose(f);
			return cli_usage_error("--hot %s: line %u: not \"BLOCK FIRST COUNT\" of a "
					       "block of the snapshot, inside it", file, lineno);
		}
		if (!(*bits)[b] && !((*bits)[b] = calloc((bi.length / bi.page_size + 7) / 8, 1))) {
			fclose(f);
			return cli_fail_sys("allocating", ENOMEM);
		}
		for (uint64_t p = first; p < first + count; p++) {
			*pages += !((*bits)[b][p / 8] >> (p % 8) & 1);
			(*bits)[b][p / 8] |= (uint8_t)(1u << (p % 8));
		}
	}
	fclose(f);
	return 0;
}

static int is_hot(uint8_t **bits, uint32_t b, uint64_t p)
{
	return bits && bits[b] && (bits[b][p / 8] >> (p % 8) & 1);
}

/*
 * The data pages of run (pass 0: those in the working set, pass 1: the
 * others) from r into w, in pieces of at most PIECE bytes.
 */
static int copy_run(fvm_reader *r, fvm_writer *w, const fvm_run_info *run, uint64_t psz,
		    uint8_t **bits, int pass, uint8_t *buf, struct progress *pg,
		    uint64_t *done, uint64_t total)
{
	uint64_t per = PIECE / psz ? PIECE / psz : 1;
	int err;

	for (uint64_t p = run->first_page; p < run->first_page + run->page_count;) {
		uint64_t q = p;

		if (bits && is_hot(bits, run->block_id, p) != !pass) {
			p++;
			continue;
		}
		while (q < run->first_page + run->page_count && q - p < per &&
		       (!bits || is_hot(bits, run->block_id, q) == !pass))
			q++;
		if ((err = fvm_reader_read_pages(r, run->block_id, p, q - p, buf)) ||
		    (err = fvm_writer_put_pages(w, run->block_id, p, q - p, buf)))
			return err;
		*done += (q - p) * psz;
		if (progress_cb(pg, *done, total))
			return fvm_error_set(FVM_ECANCELED, 0, "interrupted");
		p = q;
	}
	return 0;
}

/* Metadata, blocks, pages, device state: r into w. 0 or an fvm error. */
static int copy(fvm_reader *r, fvm_writer *w, uint8_t *buf, struct progress *pg,
		uint64_t total, uint8_t **bits)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	const char *key, *value;
	uint64_t done = 0;
	int err;

	if ((err = fvm_reader_info(r, &fi)))
		return err;
	for (uint32_t i = 0; i < fi.meta_count; i++)
		if ((err = fvm_reader_meta(r, i, &key, &value)) ||
		    (err = fvm_writer_add_meta(w, key, value)))
			return err;
	for (uint32_t b = 0; b < fi.block_count; b++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint32_t id;

		if ((err = fvm_reader_block(r, b, &bi)) ||
		    (err = fvm_writer_add_block(w, bi.name, bi.length, bi.page_size, &id)))
			return err;
	}
	/* with a working set, its pages first (pass 0), then the rest */
	for (int pass = bits ? 0 : 1; pass < 2; pass++)
		for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
			fvm_run_info run = FVM_RUN_INFO_INIT;
			fvm_block_info bi = FVM_BLOCK_INFO_INIT;

			if ((err = fvm_reader_run(r, i, &run)) ||
			    (err = fvm_reader_block(r, run.block_id, &bi)))
				return err;
			if (run.kind != FVM_RUN_DATA) {
				if (pass == 1 && (err = fvm_writer_put_zero(w, run.block_id,
									    run.first_page,
									    run.page_count)))
					return err;
				continue;
			}
			if ((err = copy_run(r, w, &run, bi.page_size, bits, pass, buf, pg, &done,
					    total)))
				return err;
		}
	for (uint32_t i = 0; i < fi.devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if ((err = fvm_reader_devstate(r, i, &di)) ||
		    (err = fvm_writer_devstate_begin(w, di.name)))
			return err;
		for (uint64_t off = 0; off < di.length;) {
			size_t got;

			if ((err = fvm_reader_devstate_pread(r, i, buf, PIECE, off, &got)) ||
			    (err = fvm_writer_devstate_write(w, buf, got)))
				return err;
			off += got;
		}
		if ((err = fvm_writer_devstate_end(w)))
			return err;
	}
	return 0;
}

int cmd_recompress(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ "frame-size", required_argument, NULL, OPT_FRAME },
		{ "no-fsync", no_argument, NULL, OPT_NO_FSYNC },
		{ "hot", required_argument, NULL, OPT_HOT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "no-auth", no_argument, NULL, OPT_NO_AUTH },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT, fo = FVM_FILE_INFO_INIT;
	const char *in = NULL, *out = NULL, *hot = NULL;
	uint8_t **hot_bits = NULL;
	uint64_t hot_pages = 0;
	fvm_reader *r = NULL, *check = NULL;
	fvm_writer *w = NULL;
	const struct cli_key *key = NULL;
	struct progress pg;
	int c, mode = PROGRESS_AUTO, err, ret, codec_given = 0, no_auth = 0;
	uint8_t *buf = NULL;
	uint64_t t0;
	char b1[32], b2[32];

	wo.codec = FVM_CODEC_ZSTD;
	while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case OPT_COMPRESS:
			if ((ret = cli_parse_compress(optarg, &wo)))
				return ret;
			codec_given = 1;
			break;
		case OPT_FRAME:
			if ((ret = cli_parse_frame_size(optarg, &wo)))
				return ret;
			break;
		case OPT_NO_FSYNC: wo.flags |= FVM_WRITE_NO_FSYNC; break;
		case OPT_HOT: hot = optarg; break;
		case OPT_KEY:
			if ((ret = cli_key_load(optarg, &key)))
				return ret;
			break;
		case OPT_NO_AUTH: no_auth = 1; break;
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input", &in)))
		return c;
	if (!out)
		return cli_usage_error("no output given (-o OUT.fvm)");
	if (!strcmp(in, "-") || !strcmp(out, "-"))
		return cli_usage_error("recompress reads and writes files, not standard input "
				       "or output");
	if ((c = cli_refuse_same_file(in, out)))
		return c;
	if (no_auth && !key)
		return cli_usage_error("--no-auth: without --key the output is not authenticated "
				       "anyway (--no-auth is for an authenticated input)");
	if (key && !no_auth) {
		/* authenticated output: plain runs, in this format version */
		if (!codec_given)
			wo.codec = FVM_CODEC_NONE;
		if ((ret = cli_key_writer(key, &wo)))
			return ret;
	}
	if (wo.codec == FVM_CODEC_NONE)
		wo.frame_bytes = 0;
	/* The input first: a missing or broken one creates no output. */
	if ((err = fvm_reader_open(&r, in)))
		return cli_fail(in, err);
	(void)fvm_reader_info(r, &fi);
	/* the key reads an authenticated IN; a plain one is read as it is */
	if ((ret = cli_key_reader(r, in, fi.authenticated ? key : NULL))) {
		fvm_reader_free(r);
		return ret;
	}
	buf = malloc(PIECE);
	if (!buf) {
		fvm_reader_free(r);
		return cli_fail_sys("allocating", ENOMEM);
	}
	(void)fvm_reader_info(r, &fi);
	if (hot && (ret = read_hot(hot, r, &hot_bits, &hot_pages)))
		goto done;
	cli_output = out;
	if ((err = fvm_writer_open_path(&w, out, &wo))) {
		ret = cli_fail(out, err);
		goto done;
	}
	progress_init(&pg, "recompressing", mode);
	t0 = util_now_ns();
	err = copy(r, w, buf, &pg, fi.payload_bytes, hot_bits);
	if (!err)
		err = fvm_writer_finish(w);
	progress_done(&pg);
	if (err) {
		/* the detail names what failed: the input's pages, or the output */
		ret = cli_fail(fvm_error_detail()[0] && strstr(fvm_error_detail(), in) ? in : out,
			       err);
		goto done;
	}
	ret = EXIT_OK;
	if (mode != PROGRESS_NEVER && !fvm_reader_open(&check, out) &&
	    !fvm_reader_info(check, &fo)) {
		double secs = (double)(util_now_ns() - t0) / 1e9;

		if (hot)
			printf("working set first: %llu pages of %s\n",
			       (unsigned long long)hot_pages, hot);
		printf("recompressed %s -> %s (%s%s): %s payload in %s of file (was %s), %.2f s\n",
		       in, out, fvm_codec_name((int)wo.codec),
		       fo.authenticated ? ", authenticated" : "",
		       util_fmt_bytes(b1, sizeof(b1), fo.payload_bytes),
		       util_fmt_bytes(b2, sizeof(b2), fo.file_size),
		       util_fmt_bytes((char[32]){ 0 }, 32, fi.file_size), secs);
	}
	fvm_reader_free(check);
done:
	for (uint32_t b = 0; hot_bits && b < fi.block_count; b++)
		free(hot_bits[b]);
	free(hot_bits);
	fvm_writer_free(w);
	fvm_reader_free(r);
	free(buf);
	return ret;
}
