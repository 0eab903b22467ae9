/*
 * fvmsnap verify: fvm_verify over the whole file, or over a snapshot on
 * standard input ("-", a pipe read front to back). Exit 0 only when every
 * checksum and structural rule holds; a damaged file exits 2 with the
 * library's detail (structure and offset).
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap verify IN.fvm [--key KEYFILE] [--quiet | --progress]\n"
		"\n"
		"Read the whole snapshot and check every checksum and structural rule\n"
		"of doc/FORMAT.md. Exit status 0 only when all hold, 2 when not.\n"
		"IN.fvm may be '-': a snapshot on standard input (a pipe is read once,\n"
		"front to back; an authenticated snapshot cannot be read so).\n"
		"\n"
		"      --key KEYFILE  the key of an authenticated snapshot: its MAC and every\n"
		"                   tag are checked too (required for such a file)\n"
		"  -q, --quiet      no progress bar, no 'ok' line\n"
		"      --progress   progress bar even when stderr is not a TTY\n"
		"  -h, --help       this help\n");
}

enum { OPT_PROGRESS = 256, OPT_KEY };

/* The progress bar, and the payload bytes checked: a stream has no file size. */
struct vprogress {
	struct progress pg;
	uint64_t done;
};

static int verify_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct vprogress *v = ctx;

	v->done = done;
	return progress_cb(&v->pg, done, total);
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vprogress vp = { .done = 0 };
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r;
	const struct cli_key *key = NULL;
	const char *in, *name;
	uint64_t t0;
	int c, mode = PROGRESS_AUTO;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case OPT_KEY:
			if ((c = cli_key_load(optarg, &key)))
				return c;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input file", &in)) ||
	    (c = cli_refuse_terminal(in, "a snapshot")))
		return c;
	name = cli_input_name(in);
	t0 = util_now_ns();
	if ((c = cli_open_snapshot(in, &r)))
		return cli_fail(name, c);
	if ((c = cli_key_reader(r, name, key))) {
		fvm_reader_free(r);
		return c;
	}
	progress_init(&vp.pg, "verifying", mode);
	c = fvm_verify(r, verify_progress, &vp);
	progress_done(&vp.pg);
	if (!c)
		c = fvm_reader_info(r, &fi);
	if (c) {
		int ret = cli_fail(name, c);

		fvm_reader_free(r);
		return ret;
	}
	if (mode != PROGRESS_NEVER)
		printf("ok: %s: %u block%s, %llu data pages in %llu runs, %llu zero pages, "
		       "%u device-state section%s, %llu %sbytes checked in %.2f s%s%s\n",
		       name, fi.block_count, fi.block_count == 1 ? "" : "s",
		       (unsigned long long)fi.data_pages, (unsigned long long)fi.data_runs,
		       (unsigned long long)fi.zero_pages, fi.devstate_count,
		       fi.devstate_count == 1 ? "" : "s",
		       (unsigned long long)(fi.streamed ? vp.done : fi.file_size),
		       fi.streamed ? "payload " : "", (double)(util_now_ns() - t0) / 1e9,
		       fi.streamed ? " (read as a stream)" : "",
		       fi.key_checked ? "; authenticated: key and MAC verified, every tag too" : "");
	fvm_reader_free(r);
	return EXIT_OK;
}
