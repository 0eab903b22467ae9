/*
 * fvmsnap verify: fvm_verify over the whole file. Exit 0 only when every
 * checksum and structural rule holds; a damaged file exits 2 with the
 * library's detail (structure and offset).
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "progress.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap verify IN.fvm [--quiet | --progress]\n"
		"\n"
		"Read the whole snapshot and check every checksum and structural rule\n"
		"of doc/FORMAT.md. Exit status 0 only when all hold, 2 when not.\n"
		"\n"
		"  -q, --quiet      no progress bar, no 'ok' line\n"
		"      --progress   progress bar even when stderr is not a TTY\n"
		"  -h, --help       this help\n");
}

enum { OPT_PROGRESS = 256 };

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct progress pg;
	fvm_file_info fi;
	fvm_reader *r;
	const char *in;
	uint64_t t0;
	int c, mode = PROGRESS_AUTO;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input file", &in)))
		return c;
	t0 = cli_now_ns();
	if ((c = fvm_reader_open(&r, in)))
		return cli_fail(in, c);
	progress_init(&pg, "verifying", mode);
	c = fvm_verify(r, progress_cb, &pg);
	progress_done(&pg);
	if (!c)
		c = fvm_reader_info(r, &fi);
	if (c) {
		int ret = cli_fail(in, c);

		fvm_reader_free(r);
		return ret;
	}
	if (mode != PROGRESS_NEVER)
		printf("ok: %s: %u block%s, %llu data pages in %llu runs, %llu zero pages, "
		       "%u device-state section%s, %llu bytes checked in %.2f s\n",
		       in, fi.block_count, fi.block_count == 1 ? "" : "s",
		       (unsigned long long)fi.data_pages, (unsigned long long)fi.data_runs,
		       (unsigned long long)fi.zero_pages, fi.devstate_count,
		       fi.devstate_count == 1 ? "" : "s",
		       (unsigned long long)fi.file_size,
		       (double)(cli_now_ns() - t0) / 1e9);
	fvm_reader_free(r);
	return EXIT_OK;
}
