/*
 * fvmsnap inspect: what a snapshot holds, as text or as JSON with the
 * stable keys of doc/fvmsnap-json.md. Everything comes from the reader's
 * listings (header, index); no payload is read from a file. A snapshot on a
 * pipe ("-") has its index at the end, so it is read through with
 * fvm_verify first (every checksum checked on the way). Stock QEMU inputs,
 * files or "-", are handed to tools/stock/inspect.c; for "-" the first
 * bytes, peeked at without consuming them, say which.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/escape.h"
#include "common/hist.h"
#include "common/progress.h"
#include "common/util.h"
#include "stock/stock.h"


struct bucket {
	uint64_t runs[2], pages[2], bytes[2]; /* [FVM_RUN_ZERO], [FVM_RUN_DATA] */
};

struct summary {
	fvm_file_info fi;
	fvm_block_info *blocks;
	struct bucket hist[HIST_BUCKETS];
	uint64_t length, pages, data_pages, zero_pages, data_bytes;
	uint64_t data_runs, zero_runs;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap inspect IN [--json] [--runs] [--snapshot NAME|ID] [--key KEYFILE]\n"
		"\n"
		"Show the header, blocks, run counts and run-length histogram, zero\n"
		"share, overhead, device-state sections and metadata of a snapshot.\n"
		"IN may also be a stock QEMU input (migration stream, mapped-ram file,\n"
		"qcow2 image): inspect then shows what convert would make of it.\n"
		"IN '-' reads either a snapshot or a migration stream from standard\n"
		"input; a snapshot on a pipe is read to its end and verified first.\n"
		"\n"
		"  -j, --json     machine-readable output (schema: fvmsnap(1), JSON OUTPUT)\n"
		"  -r, --runs     also list every run (block, kind, pages, file offset)\n"
		"  -s, --snapshot NAME|ID\n"
		"                 qcow2: the internal snapshot (by id, then by name)\n"
		"      --key KEYFILE\n"
		"                 an authenticated snapshot's key: its key id and the MAC over\n"
		"                 header, blocks, metadata and index are checked (without it,\n"
		"                 such a file is listed unauthenticated, with its key id)\n"
		"  -h, --help     this help\n");
}

static int collect(fvm_reader *r, const char *in, struct summary *s)
{
	uint64_t i, n;
	int ret;

	s->fi = (fvm_file_info)FVM_FILE_INFO_INIT;
	if ((ret = fvm_reader_info(r, &s->fi)))
		return cli_fail(in, ret);
	s->blocks = calloc(s->fi.block_count ? s->fi.block_count : 1,
			   sizeof(*s->blocks));
	if (!s->blocks)
		return cli_fail_sys("allocating", ENOMEM);
	for (i = 0; i < s->fi.block_count; i++) {
		fvm_block_info *b = &s->blocks[i];

		*b = (fvm_block_info)FVM_BLOCK_INFO_INIT;
		if ((ret = fvm_reader_block(r, (uint32_t)i, b)))
			return cli_fail(in, ret);
		s->length += b->length;
		s->pages += b->length / b->page_size;
		s->data_pages += b->data_pages;
		s->zero_pages += b->zero_pages;
		s->data_bytes += b->data_pages * b->page_size;
		s->data_runs += b->data_runs;
		s->zero_runs += b->zero_runs;
	}
	n = fvm_reader_run_count(r);
	for (i = 0; i < n; i++) {
		fvm_run_info run = FVM_RUN_INFO_INIT;
		struct bucket *bk;
		int k;

		if ((ret = fvm_reader_run(r, i, &run)))
			return cli_fail(in, ret);
		if (run.block_id >= s->fi.block_count || !run.page_count)
			continue; /* the reader already refused such files */
		k = run.kind == FVM_RUN_DATA;
		bk = &s->hist[hist_bucket(run.page_count)];
		bk->runs[k]++;
		bk->pages[k] += run.page_count;
		bk->bytes[k] += run.page_count * s->blocks[run.block_id].page_size;
	}
	return 0;
}

/* Names of the feature bits FORMAT.md defines, by bit; NULL past them. */
static const char *const feature_names[2][3] = {
	{ "PAYLOAD_CRC", "COMPRESSED", "AUTHENTICATED" }, /* incompatible bits 0..2 */
	{ "REWRITES", NULL, NULL },                       /* compatible bit 0 */
};

static const char *feature_name(int compat, int b)
{
	return b < 3 ? feature_names[compat][b] : NULL;
}

/* ------------------------------------------------------------ text */

static void print_features(uint64_t bits, int compat)
{
	int b, first = 1;

	printf("0x%llx", (unsigned long long)bits);
	for (b = 0; b < 64; b++) {
		if (!(bits >> b & 1))
			continue;
		printf(first ? " (" : ", ");
		if (feature_name(compat, b))
			printf("%s", feature_name(compat, b));
		else
			printf("bit %d", b);
		first = 0;
	}
	if (!first)
		printf(")");
}

static double zero_share(const struct summary *s)
{
	return s->length ? 1.0 - (double)s->data_bytes / (double)s->length : 0;
}

static void print_runs_text(fvm_reader *r)
{
	uint64_t i, n = fvm_reader_run_count(r);

	printf("\nruns: %llu\n  %-6s %-4s %14s %14s %14s\n", (unsigned long long)n,
	       "block", "kind", "first page", "pages", "file offset");
	for (i = 0; i < n; i++) {
		fvm_run_info run = FVM_RUN_INFO_INIT;

		if (fvm_reader_run(r, i, &run))
			continue;
		printf("  %-6u %-4s %14llu %14llu %#14llx\n", run.block_id,
		       run.kind == FVM_RUN_DATA ? "data" : "zero",
		       (unsigned long long)run.first_page,
		       (unsigned long long)run.page_count,
		       (unsigned long long)run.file_offset);
	}
}

static void print_runs_json(fvm_reader *r)
{
	uint64_t i, n = fvm_reader_run_count(r);

	printf(",\n  \"runs\": [");
	for (i = 0; i < n; i++) {
		fvm_run_info run = FVM_RUN_INFO_INIT;

		if (fvm_reader_run(r, i, &run))
			continue;
		printf("%s\n    {\"block\": %u, \"kind\": \"%s\", \"first_page\": %llu, "
		       "\"page_count\": %llu, \"file_offset\": %llu}", i ? "," : "",
		       run.block_id, run.kind == FVM_RUN_DATA ? "data" : "zero",
		       (unsigned long long)run.first_page,
		       (unsigned long long)run.page_count,
		       (unsigned long long)run.file_offset);
	}
	printf("%s]", n ? "\n  " : "");
}

static void print_text(fvm_reader *r, const char *in, const struct summary *s)
{
	const fvm_file_info *fi = &s->fi;
	char b1[32], b2[32], b3[32];
	uint32_t i;
	int k;

	printf("file:         %s%s\n", cli_input_name(in),
	       fi->streamed ? " (read as a stream, every checksum verified)" : "");
	if (fi->streamed) /* a pipe says no size; the reader counts no bytes */
		printf("file size:    n/a (a stream)\n");
	else
		printf("file size:    %s (%llu bytes)\n",
		       util_fmt_bytes(b1, sizeof(b1), fi->file_size),
		       (unsigned long long)fi->file_size);
	printf("format:       %u.%u, incompat features ", fi->version_major, fi->version_minor);
	print_features(fi->incompat_features, 0);
	printf(", compat features ");
	print_features(fi->compat_features, 1);
	printf("\n");
	if (fi->authenticated)
		printf("authenticated: yes, key id %016llx; %s\n", (unsigned long long)fi->key_id,
		       fi->key_checked ? "key verified: key id and the MAC over header, blocks, "
					 "metadata and index (verify checks every tag)"
				       : "no key given: listed unauthenticated (--key KEYFILE checks it)");
	else
		printf("authenticated: no\n");
	printf("blocks:       %u, %s, %llu pages\n", fi->block_count,
	       util_fmt_bytes(b1, sizeof(b1), s->length), (unsigned long long)s->pages);
	printf("data:         %llu pages in %llu runs, %s payload\n",
	       (unsigned long long)s->data_pages, (unsigned long long)s->data_runs,
	       util_fmt_bytes(b2, sizeof(b2), fi->payload_bytes));
	printf("zero:         %llu pages in %llu runs, %llu pages without a run\n",
	       (unsigned long long)s->zero_pages, (unsigned long long)s->zero_runs,
	       (unsigned long long)(s->pages - s->data_pages - s->zero_pages));
	printf("zero share:   %.2f%% of the bytes\n", 100.0 * zero_share(s));
	if (fi->codec)
		printf("compression:  %s level %u, %llu frames of %s, %s stored for %s: "
		       "ratio %.3f\n", fvm_codec_name((int)fi->codec), fi->level,
		       (unsigned long long)fi->frame_count,
		       util_fmt_bytes(b1, sizeof(b1), fi->frame_bytes),
		       util_fmt_bytes(b2, sizeof(b2), fi->stored_bytes),
		       util_fmt_bytes(b3, sizeof(b3), fi->payload_bytes),
		       fi->stored_bytes ? (double)fi->payload_bytes / (double)fi->stored_bytes : 0.0);
	if (fi->payload_bytes && !fi->streamed)
		printf("overhead:     %.3f%% (file size over non-zero page bytes)\n",
		       100.0 * ((double)fi->file_size / (double)fi->payload_bytes - 1.0));
	else
		printf("overhead:     n/a (%s)\n", fi->streamed ? "no file size" : "no non-zero pages");

	printf("\nblocks:\n  %-4s %-24s %12s %9s %10s %10s %9s %9s\n", "id", "name",
	       "length", "page", "data pg", "zero pg", "data runs", "zero runs");
	for (i = 0; i < fi->block_count; i++) {
		const fvm_block_info *b = &s->blocks[i];

		printf("  %-4u ", i);
		text_escaped(stdout, b->name);
		printf("%*s", (int)(strlen(b->name) < 24 ? 24 - strlen(b->name) : 0), "");
		printf(" %12s %9s %10llu %10llu %9llu %9llu\n",
		       util_fmt_bytes(b1, sizeof(b1), b->length),
		       util_fmt_bytes(b2, sizeof(b2), b->page_size),
		       (unsigned long long)b->data_pages, (unsigned long long)b->zero_pages,
		       (unsigned long long)b->data_runs, (unsigned long long)b->zero_runs);
	}

	printf("\nrun lengths (pages; power-of-two buckets):\n");
	printf("  %-23s %9s %10s %11s %9s %10s %11s\n", "pages", "data runs",
	       "data pages", "data bytes", "zero runs", "zero pages", "zero bytes");
	for (k = 0; k < HIST_BUCKETS; k++) {
		const struct bucket *bk = &s->hist[k];
		char range[48];

		if (!bk->runs[0] && !bk->runs[1])
			continue;
		hist_bucket_label(range, sizeof(range), k);
		printf("  %-23s %9llu %10llu %11s", range,
		       (unsigned long long)bk->runs[1], (unsigned long long)bk->pages[1],
		       util_fmt_bytes(b1, sizeof(b1), bk->bytes[1]));
		printf(" %9llu %10llu %11s\n", (unsigned long long)bk->runs[0],
		       (unsigned long long)bk->pages[0],
		       util_fmt_bytes(b2, sizeof(b2), bk->bytes[0]));
	}

	printf("\ndevice state: %u section%s\n", fi->devstate_count,
	       fi->devstate_count == 1 ? "" : "s");
	for (i = 0; i < fi->devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if (fvm_reader_devstate(r, i, &di))
			continue;
		printf("  %-4u ", i);
		text_escaped(stdout, di.name);
		printf("  %llu bytes", (unsigned long long)di.length);
		if (di.parts > 1)
			printf(" in %u records", di.parts);
		printf("\n");
	}
	printf("\nmetadata: %u entr%s\n", fi->meta_count, fi->meta_count == 1 ? "y" : "ies");
	for (i = 0; i < fi->meta_count; i++) {
		const char *key, *value;

		if (fvm_reader_meta(r, i, &key, &value))
			continue;
		printf("  ");
		text_escaped(stdout, key);
		printf(" = ");
		text_escaped(stdout, value);
		printf("\n");
	}
}

/* ------------------------------------------------------------ JSON */

static void json_features(uint64_t bits, int compat, int *first)
{
	int b;

	for (b = 0; b < 64; b++) {
		char name[32];

		if (!(bits >> b & 1))
			continue;
		if (feature_name(compat, b))
			snprintf(name, sizeof(name), "%s", feature_name(compat, b));
		else
			snprintf(name, sizeof(name), "%s_BIT%d", compat ? "COMPAT" : "INCOMPAT", b);
		printf("%s", *first ? "" : ", ");
		json_str(stdout, name);
		*first = 0;
	}
}

#define U(x) ((unsigned long long)(x))

static void print_json(fvm_reader *r, const char *in, const struct summary *s)
{
	const fvm_file_info *fi = &s->fi;
	uint32_t i;
	int k, first = 1;

	printf("{\n  \"schema\": \"fvmsnap-inspect/1\",\n  \"file\": ");
	json_str(stdout, in);
	printf(",\n  \"file_size\": %llu,\n  \"streamed\": %s,\n", U(fi->file_size),
	       fi->streamed ? "true" : "false");
	printf("  \"authenticated\": %s,\n  \"key_id\": ", fi->authenticated ? "true" : "false");
	if (fi->authenticated)
		printf("\"%016llx\"", U(fi->key_id));
	else
		printf("null");
	printf(",\n  \"key_checked\": %s,\n", fi->key_checked ? "true" : "false");
	printf("  \"format\": {\"version\": \"%u.%u\", \"version_major\": %u, \"version_minor\": %u, "
	       "\"incompat_features\": %llu, \"compat_features\": %llu, \"features\": [",
	       fi->version_major, fi->version_minor, fi->version_major, fi->version_minor,
	       U(fi->incompat_features), U(fi->compat_features));
	json_features(fi->incompat_features, 0, &first);
	json_features(fi->compat_features, 1, &first);
	printf("]},\n");
	printf("  \"totals\": {\"blocks\": %u, \"length\": %llu, \"pages\": %llu, "
	       "\"data_pages\": %llu, \"zero_pages\": %llu, \"absent_pages\": %llu, "
	       "\"data_runs\": %llu, \"zero_runs\": %llu, \"payload_bytes\": %llu, "
	       "\"zero_share\": %.6f, \"overhead_percent\": ",
	       fi->block_count, U(s->length), U(s->pages), U(s->data_pages),
	       U(s->zero_pages), U(s->pages - s->data_pages - s->zero_pages),
	       U(s->data_runs), U(s->zero_runs), U(fi->payload_bytes), zero_share(s));
	if (fi->payload_bytes && !fi->streamed)
		printf("%.4f", 100.0 * ((double)fi->file_size / (double)fi->payload_bytes - 1.0));
	else
		printf("null");
	printf(", \"devstate_sections\": %u, \"meta_entries\": %u},\n",
	       fi->devstate_count, fi->meta_count);
	if (fi->codec)
		printf("  \"compression\": {\"codec\": \"%s\", \"level\": %u, \"frame_bytes\": %u, "
		       "\"frames\": %llu, \"stored_bytes\": %llu, \"ratio\": %.4f},\n",
		       fvm_codec_name((int)fi->codec), fi->level, fi->frame_bytes,
		       U(fi->frame_count), U(fi->stored_bytes),
		       fi->stored_bytes ? (double)fi->payload_bytes / (double)fi->stored_bytes : 0.0);
	else
		printf("  \"compression\": null,\n");

	printf("  \"blocks\": [");
	for (i = 0; i < fi->block_count; i++) {
		const fvm_block_info *b = &s->blocks[i];
		uint64_t pages = b->length / b->page_size;

		printf("%s\n    {\"id\": %u, \"name\": ", i ? "," : "", i);
		json_str(stdout, b->name);
		printf(", \"length\": %llu, \"page_size\": %llu, \"pages\": %llu, "
		       "\"data_pages\": %llu, \"zero_pages\": %llu, \"absent_pages\": %llu, "
		       "\"data_runs\": %llu, \"zero_runs\": %llu}",
		       U(b->length), U(b->page_size), U(pages), U(b->data_pages),
		       U(b->zero_pages), U(pages - b->data_pages - b->zero_pages),
		       U(b->data_runs), U(b->zero_runs));
	}
	printf("%s],\n", fi->block_count ? "\n  " : "");

	printf("  \"run_histogram\": [");
	first = 1;
	for (k = 0; k < HIST_BUCKETS; k++) {
		const struct bucket *bk = &s->hist[k];

		if (!bk->runs[0] && !bk->runs[1])
			continue;
		printf("%s\n    {\"min_pages\": %llu, \"max_pages\": %llu, "
		       "\"data_runs\": %llu, \"data_pages\": %llu, \"data_bytes\": %llu, "
		       "\"zero_runs\": %llu, \"zero_pages\": %llu, \"zero_bytes\": %llu}",
		       first ? "" : ",", 1ull << k, U(hist_bucket_max(k)),
		       U(bk->runs[1]), U(bk->pages[1]), U(bk->bytes[1]),
		       U(bk->runs[0]), U(bk->pages[0]), U(bk->bytes[0]));
		first = 0;
	}
	printf("%s],\n", first ? "" : "\n  ");

	printf("  \"devstate\": [");
	for (i = 0; i < fi->devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if (fvm_reader_devstate(r, i, &di))
			di.name = "";
		printf("%s\n    {\"index\": %u, \"name\": ", i ? "," : "", i);
		json_str(stdout, di.name);
		printf(", \"size\": %llu, \"file_offset\": %llu, \"parts\": %u}",
		       U(di.length), U(di.file_offset), di.parts);
	}
	printf("%s],\n", fi->devstate_count ? "\n  " : "");

	printf("  \"meta\": [");
	for (i = 0; i < fi->meta_count; i++) {
		const char *key = "", *value = "";

		fvm_reader_meta(r, i, &key, &value);
		printf("%s\n    {\"key\": ", i ? "," : "");
		json_str(stdout, key);
		printf(", \"value\": ");
		json_str(stdout, value);
		printf("}");
	}
	printf("%s]", fi->meta_count ? "\n  " : "");
}

/* What an input of the wrong kind is not: inspect reads all four kinds. */
#define NOT_ANY_INPUT "not a libfastvm snapshot, QEMU migration stream, " \
	"mapped-ram file or qcow2 image"

/*
 * Standard input: 1 when it starts like a libfastvm snapshot (FORMAT.md,
 * "FVMSNAP\x1a"), 0 for anything else (a stock stream, or junk the stock
 * reader then names), or minus an exit code after a message.
 */
static int stdin_is_snapshot(void)
{
	unsigned char magic[8];
	size_t got;
	int err = cli_peek_stdin(magic, sizeof(magic), &got);

	if (err == -ENOTSUP) /* neither pipe nor file: a stream, as before */
		return 0;
	if (err)
		return -cli_fail_sys(CLI_STDIN_NAME, -err);
	return got == sizeof(magic) && !memcmp(magic, "FVMSNAP\x1a", sizeof(magic));
}

static int inspect_stock(const char *in, const char *snapshot, int json,
			 const struct cli_key *key)
{
	int c;

	if (key)
		return cli_usage_error("--key applies to libfastvm snapshots, not to %s (a stock "
				       "QEMU input)", cli_input_name(in));
	c = stock_inspect(in, snapshot, json, stdout);

	if (c)
		return cli_fail_as(cli_input_name(in), c, NOT_ANY_INPUT);
	if (fflush(stdout) || ferror(stdout))
		return cli_fail_sys("stdout", errno ? errno : EIO);
	return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "runs", no_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct summary s;
	struct progress pg;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r;
	const struct cli_key *key = NULL;
	const char *in, *name, *snapshot = NULL;
	int c, json = 0, runs = 0, ret;

	while ((c = getopt_long(argc, argv, "jrs:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 's': snapshot = optarg; break;
		case 'r': runs = 1; break;
		case 'k':
			if ((c = cli_key_load(optarg, &key)))
				return c;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input file", &in)) ||
	    (c = cli_refuse_terminal(in, "a snapshot or a migration stream")))
		return c;
	name = cli_input_name(in);
	/* Stock QEMU inputs (stream, mapped-ram, qcow2): tools/stock/inspect.c. */
	if (!strcmp(in, "-")) {
		if ((c = stdin_is_snapshot()) < 0)
			return -c;
		if (!c)
			return inspect_stock(in, snapshot, json, key);
	} else if (stock_input_probe(in)) {
		return inspect_stock(in, snapshot, json, key);
	}
	if (snapshot)
		return cli_usage_error("--snapshot applies to qcow2 images only");
	if (key && !strcmp(in, "-"))
		return cli_usage_error("--key: an authenticated snapshot is not read from standard "
				       "input (its MAC is at its end); give the file");
	/* Neither QEVM nor QFI\xfb: a bad magic here is also not a stock input. */
	if ((c = cli_open_snapshot(in, &r)))
		return cli_fail_as(name, c, NOT_ANY_INPUT);
	/* the MAC over what is listed, before it is listed */
	if (key && (c = fvm_reader_set_key(r, key->key, sizeof(key->key)))) {
		ret = cli_fail(name, c);
		fvm_reader_free(r);
		return ret;
	}
	/* A stream lists its runs and device state once read to its end. */
	if (!(c = fvm_reader_info(r, &fi)) && fi.streamed) {
		progress_init(&pg, "reading", PROGRESS_AUTO);
		c = fvm_verify(r, progress_cb, &pg);
		progress_done(&pg);
	}
	if (c) {
		ret = cli_fail(name, c);
		fvm_reader_free(r);
		return ret;
	}
	memset(&s, 0, sizeof(s));
	ret = collect(r, name, &s);
	if (!ret) {
		if (json) {
			print_json(r, in, &s);
			if (runs)
				print_runs_json(r);
			printf("\n}\n");
		} else {
			print_text(r, in, &s);
			if (runs)
				print_runs_text(r);
		}
		if (fflush(stdout) || ferror(stdout))
			ret = cli_fail_sys("stdout", errno ? errno : EIO);
	}
	free(s.blocks);
	fvm_reader_free(r);
	return ret;
}
