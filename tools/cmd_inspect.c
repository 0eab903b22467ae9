/*
 * fvmsnap inspect: what a snapshot holds, as text or as JSON with the
 * stable keys of doc/fvmsnap-json.md. Everything comes from the reader's
 * listings (header, index); no payload is read. Stock QEMU inputs (also a
 * stream on standard input, "-") are handed to tools/stock/inspect.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"
#include "stock/stock.h"
#include "stock/stock_error.h"


struct bucket {
	uint64_t runs[2], pages[2], bytes[2]; /* [FVM_RUN_ZERO], [FVM_RUN_DATA] */
};

struct summary {
	fvm_file_info fi;
	fvm_block_info *blocks;
	struct bucket hist[CLI_RUN_BUCKETS];
	uint64_t length, pages, data_pages, zero_pages, data_bytes;
	uint64_t data_runs, zero_runs;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap inspect IN [--json] [--runs] [--snapshot NAME|ID]\n"
		"\n"
		"Show the header, blocks, run counts and run-length histogram, zero\n"
		"share, overhead, device-state sections and metadata of a snapshot.\n"
		"IN may also be a stock QEMU input (migration stream, mapped-ram file,\n"
		"qcow2 image, or '-' for a stream on standard input): inspect then\n"
		"shows what convert would make of it.\n"
		"\n"
		"  -j, --json     machine-readable output (schema: fvmsnap(1), JSON OUTPUT)\n"
		"  -r, --runs     also list every run (block, kind, pages, file offset)\n"
		"  -s, --snapshot NAME|ID\n"
		"                 qcow2: the internal snapshot (by id, then by name)\n"
		"  -h, --help     this help\n");
}

static int collect(fvm_reader *r, const char *in, struct summary *s)
{
	uint64_t i, n;
	int ret;

	if ((ret = fvm_reader_info(r, &s->fi)))
		return cli_fail(in, ret);
	s->blocks = calloc(s->fi.block_count ? s->fi.block_count : 1,
			   sizeof(*s->blocks));
	if (!s->blocks)
		return cli_fail_sys("allocating", ENOMEM);
	for (i = 0; i < s->fi.block_count; i++) {
		fvm_block_info *b = &s->blocks[i];

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
		fvm_run_info run;
		struct bucket *bk;
		int k;

		if ((ret = fvm_reader_run(r, i, &run)))
			return cli_fail(in, ret);
		if (run.block_id >= s->fi.block_count || !run.page_count)
			continue; /* the reader already refused such files */
		k = run.kind == FVM_RUN_DATA;
		bk = &s->hist[cli_run_bucket(run.page_count)];
		bk->runs[k]++;
		bk->pages[k] += run.page_count;
		bk->bytes[k] += run.page_count * s->blocks[run.block_id].page_size;
	}
	return 0;
}

static const char *const feature_names[2][1] = {
	{ "PAYLOAD_CRC" }, /* incompatible bit 0 */
	{ "REWRITES" },    /* compatible bit 0 */
};

/* ------------------------------------------------------------ text */

static void print_features(uint64_t bits, int compat)
{
	int b, first = 1;

	printf("0x%llx", (unsigned long long)bits);
	for (b = 0; b < 64; b++) {
		if (!(bits >> b & 1))
			continue;
		printf(first ? " (" : ", ");
		if (b == 0)
			printf("%s", feature_names[compat][0]);
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
		fvm_run_info run;

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
		fvm_run_info run;

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
	char b1[32], b2[32];
	uint32_t i;
	int k;

	printf("file:         %s\n", in);
	printf("file size:    %s (%llu bytes)\n", cli_fmt_bytes(b1, sizeof(b1), fi->file_size),
	       (unsigned long long)fi->file_size);
	printf("format:       %u.%u, incompat features ", fi->version_major, fi->version_minor);
	print_features(fi->incompat_features, 0);
	printf(", compat features ");
	print_features(fi->compat_features, 1);
	printf("\n");
	printf("blocks:       %u, %s, %llu pages\n", fi->block_count,
	       cli_fmt_bytes(b1, sizeof(b1), s->length), (unsigned long long)s->pages);
	printf("data:         %llu pages in %llu runs, %s payload\n",
	       (unsigned long long)s->data_pages, (unsigned long long)s->data_runs,
	       cli_fmt_bytes(b2, sizeof(b2), fi->payload_bytes));
	printf("zero:         %llu pages in %llu runs, %llu pages without a run\n",
	       (unsigned long long)s->zero_pages, (unsigned long long)s->zero_runs,
	       (unsigned long long)(s->pages - s->data_pages - s->zero_pages));
	printf("zero share:   %.2f%% of the bytes\n", 100.0 * zero_share(s));
	if (fi->payload_bytes)
		printf("overhead:     %.3f%% (file size over non-zero page bytes)\n",
		       100.0 * ((double)fi->file_size / (double)fi->payload_bytes - 1.0));
	else
		printf("overhead:     n/a (no non-zero pages)\n");

	printf("\nblocks:\n  %-4s %-24s %12s %9s %10s %10s %9s %9s\n", "id", "name",
	       "length", "page", "data pg", "zero pg", "data runs", "zero runs");
	for (i = 0; i < fi->block_count; i++) {
		const fvm_block_info *b = &s->blocks[i];

		printf("  %-4u ", i);
		cli_print_escaped(stdout, b->name);
		printf("%*s", (int)(strlen(b->name) < 24 ? 24 - strlen(b->name) : 0), "");
		printf(" %12s %9s %10llu %10llu %9llu %9llu\n",
		       cli_fmt_bytes(b1, sizeof(b1), b->length),
		       cli_fmt_bytes(b2, sizeof(b2), b->page_size),
		       (unsigned long long)b->data_pages, (unsigned long long)b->zero_pages,
		       (unsigned long long)b->data_runs, (unsigned long long)b->zero_runs);
	}

	printf("\nrun lengths (pages; power-of-two buckets):\n");
	printf("  %-23s %9s %10s %11s %9s %10s %11s\n", "pages", "data runs",
	       "data pages", "data bytes", "zero runs", "zero pages", "zero bytes");
	for (k = 0; k < CLI_RUN_BUCKETS; k++) {
		const struct bucket *bk = &s->hist[k];
		char range[48];

		if (!bk->runs[0] && !bk->runs[1])
			continue;
		cli_run_bucket_label(range, sizeof(range), k);
		printf("  %-23s %9llu %10llu %11s", range,
		       (unsigned long long)bk->runs[1], (unsigned long long)bk->pages[1],
		       cli_fmt_bytes(b1, sizeof(b1), bk->bytes[1]));
		printf(" %9llu %10llu %11s\n", (unsigned long long)bk->runs[0],
		       (unsigned long long)bk->pages[0],
		       cli_fmt_bytes(b2, sizeof(b2), bk->bytes[0]));
	}

	printf("\ndevice state: %u section%s\n", fi->devstate_count,
	       fi->devstate_count == 1 ? "" : "s");
	for (i = 0; i < fi->devstate_count; i++) {
		fvm_devstate_info di;

		if (fvm_reader_devstate(r, i, &di))
			continue;
		printf("  %-4u ", i);
		cli_print_escaped(stdout, di.name);
		printf("  %llu bytes\n", (unsigned long long)di.size);
	}
	printf("\nmetadata: %u entr%s\n", fi->meta_count, fi->meta_count == 1 ? "y" : "ies");
	for (i = 0; i < fi->meta_count; i++) {
		const char *key, *value;

		if (fvm_reader_meta(r, i, &key, &value))
			continue;
		printf("  ");
		cli_print_escaped(stdout, key);
		printf(" = ");
		cli_print_escaped(stdout, value);
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
		if (b == 0)
			snprintf(name, sizeof(name), "%s", feature_names[compat][0]);
		else
			snprintf(name, sizeof(name), "%s_BIT%d", compat ? "COMPAT" : "INCOMPAT", b);
		printf("%s", *first ? "" : ", ");
		cli_json_str(stdout, name);
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
	cli_json_str(stdout, in);
	printf(",\n  \"file_size\": %llu,\n", U(fi->file_size));
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
	if (fi->payload_bytes)
		printf("%.4f", 100.0 * ((double)fi->file_size / (double)fi->payload_bytes - 1.0));
	else
		printf("null");
	printf(", \"devstate_sections\": %u, \"meta_entries\": %u},\n",
	       fi->devstate_count, fi->meta_count);

	printf("  \"blocks\": [");
	for (i = 0; i < fi->block_count; i++) {
		const fvm_block_info *b = &s->blocks[i];
		uint64_t pages = b->length / b->page_size;

		printf("%s\n    {\"id\": %u, \"name\": ", i ? "," : "", i);
		cli_json_str(stdout, b->name);
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
	for (k = 0; k < CLI_RUN_BUCKETS; k++) {
		const struct bucket *bk = &s->hist[k];

		if (!bk->runs[0] && !bk->runs[1])
			continue;
		printf("%s\n    {\"min_pages\": %llu, \"max_pages\": %llu, "
		       "\"data_runs\": %llu, \"data_pages\": %llu, \"data_bytes\": %llu, "
		       "\"zero_runs\": %llu, \"zero_pages\": %llu, \"zero_bytes\": %llu}",
		       first ? "" : ",", 1ull << k, U(cli_run_bucket_max(k)),
		       U(bk->runs[1]), U(bk->pages[1]), U(bk->bytes[1]),
		       U(bk->runs[0]), U(bk->pages[0]), U(bk->bytes[0]));
		first = 0;
	}
	printf("%s],\n", first ? "" : "\n  ");

	printf("  \"devstate\": [");
	for (i = 0; i < fi->devstate_count; i++) {
		fvm_devstate_info di;

		if (fvm_reader_devstate(r, i, &di))
			memset(&di, 0, sizeof(di)), di.name = "";
		printf("%s\n    {\"index\": %u, \"name\": ", i ? "," : "", i);
		cli_json_str(stdout, di.name);
		printf(", \"size\": %llu, \"file_offset\": %llu}", U(di.size), U(di.file_offset));
	}
	printf("%s],\n", fi->devstate_count ? "\n  " : "");

	printf("  \"meta\": [");
	for (i = 0; i < fi->meta_count; i++) {
		const char *key = "", *value = "";

		fvm_reader_meta(r, i, &key, &value);
		printf("%s\n    {\"key\": ", i ? "," : "");
		cli_json_str(stdout, key);
		printf(", \"value\": ");
		cli_json_str(stdout, value);
		printf("}");
	}
	printf("%s]", fi->meta_count ? "\n  " : "");
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "runs", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct summary s;
	fvm_reader *r;
	const char *in, *snapshot = NULL;
	int c, json = 0, runs = 0, ret;

	while ((c = getopt_long(argc, argv, "jrs:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 's': snapshot = optarg; break;
		case 'r': runs = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input file", &in)))
		return c;
	/*
	 * Stock QEMU inputs (stream, mapped-ram, qcow2): tools/stock/inspect.c.
	 * "-" is a migration stream on standard input, as for convert: the
	 * libfastvm reader needs a file, a stream is read front to back.
	 */
	if (!strcmp(in, "-") && isatty(STDIN_FILENO))
		return cli_usage_error("refusing to read a migration stream from a terminal");
	if (!strcmp(in, "-") || stock_input_probe(in)) {
		c = stock_inspect(in, snapshot, json, stdout);
		if (!c && (fflush(stdout) || ferror(stdout)))
			return cli_fail_sys("stdout", errno ? errno : EIO);
		if (c)
			return cli_fail_detail(in, c, stock_error_detail(),
					       CLI_NOT_STOCK_INPUT);
		return EXIT_OK;
	}
	if (snapshot)
		return cli_usage_error("--snapshot applies to qcow2 images only");
	/* Neither QEVM nor QFI\xfb: a bad magic here is also not a stock input. */
	if ((c = fvm_reader_open(&r, in)))
		return cli_fail_detail(in, c, fvm_error_detail(),
				       "not a libfastvm snapshot, QEMU migration stream, "
				       "mapped-ram file or qcow2 image");
	memset(&s, 0, sizeof(s));
	ret = collect(r, in, &s);
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
