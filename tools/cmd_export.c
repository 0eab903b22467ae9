/*
 * fvmsnap export: a converted snapshot back to a QEMU migration stream that
 * stock QEMU restores with -incoming (to a file, or to standard output for
 * -incoming "exec:fvmsnap export IN.fvm"). The work is in
 * tools/stock/export.c; this file owns the command line and the output:
 * a file is written atomically, so a failed export leaves no partial file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"
#include "stock/stock.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap export IN.fvm [-o OUT.mig | -o -] [options]\n"
		"\n"
		"Write a QEMU migration stream equivalent to the one the snapshot was\n"
		"converted from, for qemu-system-* -incoming \"exec:cat OUT.mig\" or\n"
		"directly -incoming \"exec:fvmsnap export IN.fvm\". Without -o, or with\n"
		"-o -, the stream goes to standard output. IN.fvm may be '-': a snapshot\n"
		"on standard input, copied to a temporary file in $TMPDIR first (export\n"
		"reads it in another order than it was written).\n"
		"\n"
		"  -o, --output OUT    file to write (atomically), or '-' for stdout\n"
		"      --key KEYFILE   the key of an authenticated snapshot (required for one):\n"
		"                      every page and device-state record is checked with it\n"
		"                      before it is written to the stream\n"
		"  -q, --quiet         no progress bar, no summary line\n"
		"      --progress      progress bar even when stderr is not a TTY\n"
		"  -h, --help          this help\n");
}

/*
 * IN "-": export writes the pages in block order after device state the
 * file holds last, which a pipe read front to back cannot give; standard
 * input is copied to an unnamed temporary file first (cli_spool_stdin),
 * unless it is a file already. 0 or an exit code.
 */
static int open_stdin(fvm_reader **r, int *spool)
{
	const char *dir;
	int fd = STDIN_FILENO, err;

	if (!cli_stdin_seekable()) {
		if ((err = cli_spool_stdin(&fd, &dir))) {
			cli_msg("%s: copying to a temporary file in %s: %s", CLI_STDIN_NAME,
				dir, strerror(-err));
			return err == -EINTR ? EXIT_INTERRUPTED : EXIT_SYSTEM;
		}
		*spool = fd; /* read by the reader until it is freed */
	}
	if ((err = fvm_reader_open_fd(r, fd, CLI_STDIN_NAME)))
		return cli_fail(CLI_STDIN_NAME, err);
	return 0;
}

enum { OPT_PROGRESS = 256, OPT_KEY };

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct stock_export_opts o = { 0 };
	struct stock_export_result res;
	struct cli_atomic at = { .fd = -1 };
	struct progress pg;
	const char *out = NULL;
	const struct cli_key *key = NULL;
	int c, mode = PROGRESS_AUTO, err, to_stdout, direct = -1, spool = -1;
	struct stat st;
	uint64_t t0;
	double secs;
	char b1[32];

	while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
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
	if ((c = cli_one_operand(argc, argv, "input", &o.input)) ||
	    (c = cli_refuse_terminal(o.input, "a snapshot")))
		return c;
	to_stdout = !out || !strcmp(out, "-");
	if (to_stdout && isatty(STDOUT_FILENO))
		return cli_usage_error("refusing to write a migration stream to a terminal");
	if ((c = cli_refuse_same_file(o.input, out)))
		return c;
	/* The input first: a missing or broken one creates no output. */
	if (!strcmp(o.input, "-")) {
		if ((err = open_stdin(&o.reader, &spool))) {
			if (spool >= 0)
				close(spool);
			return err;
		}
		o.input = CLI_STDIN_NAME; /* only a name now, in messages */
	} else if ((err = fvm_reader_open(&o.reader, o.input))) {
		return cli_fail(o.input, err);
	}
	/* an authenticated snapshot: its key before any page is read */
	if ((err = cli_key_reader(o.reader, cli_input_name(o.input), key)))
		goto close_input;
	if (to_stdout) {
		o.out_fd = STDOUT_FILENO;
		o.out_name = "stdout";
	} else if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* A device or FIFO is written in place, never renamed over. */
		direct = open(out, O_WRONLY | O_CLOEXEC);
		if (direct < 0) {
			err = cli_fail_sys(out, errno);
			goto close_input;
		}
		o.out_fd = direct;
		o.out_name = out;
	} else {
		if ((err = cli_atomic_open(&at, out))) {
			err = cli_fail_sys(out, -err);
			goto close_input;
		}
		o.out_fd = at.fd;
		o.out_name = out;
	}
	cli_output = to_stdout ? NULL : out;
	progress_init(&pg, "exporting", mode);
	o.progress = progress_cb;
	o.progress_ctx = &pg;
	t0 = util_now_ns();
	err = stock_export(&o, &res);
	progress_done(&pg);
	if (err)
		err = cli_fail(cli_input_name(o.input), err);
	fvm_reader_free(o.reader);
	if (spool >= 0)
		close(spool);
	if (direct >= 0 && close(direct) < 0 && !err)
		return cli_fail_sys(out, errno);
	if (err) {
		if (!to_stdout && direct < 0)
			cli_atomic_abort(&at);
		return err;
	}
	if (!to_stdout && direct < 0 && (err = cli_atomic_commit(&at))) {
		cli_atomic_abort(&at);
		return cli_fail_sys(out, -err);
	}
	if (mode == PROGRESS_NEVER)
		return EXIT_OK;
	secs = (double)(util_now_ns() - t0) / 1e9;
	/* stdout may be the stream: the summary goes to stderr then. */
	fprintf(to_stdout ? stderr : stdout,
		"exported %s: %llu data pages, %llu zero pages, %s stream, %.2f s, %.1f MB/s\n",
		cli_input_name(o.input), (unsigned long long)res.data_pages,
		(unsigned long long)res.zero_pages,
		util_fmt_bytes(b1, sizeof(b1), res.output_bytes), secs,
		secs > 0 ? (double)res.output_bytes / secs / 1e6 : 0.0);
	return EXIT_OK;
close_input:
	fvm_reader_free(o.reader);
	if (spool >= 0)
		close(spool);
	return err;
}
