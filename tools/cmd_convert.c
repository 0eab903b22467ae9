/*
 * fvmsnap convert: a stock QEMU snapshot (migration stream file or pipe,
 * mapped-ram file, qcow2 internal snapshot) to the fast format. The work is
 * in tools/stock/convert.c; this file owns the command line, the progress
 * bar and the final line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
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
		"Usage: fvmsnap convert INPUT -o OUT.fvm [--snapshot NAME|ID] [options]\n"
		"\n"
		"Convert a stock QEMU snapshot to the fast format. INPUT is a migration\n"
		"stream file (migrate \"exec:cat > FILE\", migrate file:FILE, also with the\n"
		"mapped-ram capability), '-' for a stream on standard input, or a qcow2\n"
		"image holding internal snapshots (savevm). RAM goes into the large-page\n"
		"layout; everything else of the VM state is kept byte for byte as device\n"
		"state (doc/QEMU.md). OUT is replaced atomically, only on success.\n"
		"\n"
		"  -o, --output OUT.fvm      the snapshot to write\n"
		"  -s, --snapshot NAME|ID    qcow2: the internal snapshot (by id, then by\n"
		"                            name); optional when the image has exactly one\n"
		"  -U, --force-share         qcow2: read an image a running QEMU holds\n"
		"                            locked (its state may be changing)\n"
		"      --no-crc              omit payload checksums\n"
		"      --no-fsync            skip fsync (scratch files, tests)\n"
		"      --compress CODEC[:LEVEL]  zstd (1-19, default 3), lz4 (1-12) or none:\n"
		"                            RAM runs as compressed frames (slow flash)\n"
		"      --frame-size SIZE     plain bytes per frame, 64K..1M (default 1M)\n"
		"      --key KEYFILE         an authenticated snapshot (fvmsnap keygen; not\n"
		"                            with --compress): readers need the same --key\n"
		"  -q, --quiet               no progress bar, no summary line\n"
		"      --progress            progress bar even when stderr is not a TTY\n"
		"  -h, --help                this help\n");
}

enum { OPT_NO_CRC = 256, OPT_NO_FSYNC, OPT_PROGRESS, OPT_COMPRESS, OPT_FRAME, OPT_KEY };

/*
 * The live page counts of the snapshot written: a live stream sends a page
 * again when the guest dirties it, so the records converted can exceed the
 * pages. Read from the output's index when it is a regular file; otherwise
 * the record counts stand. Returns the number of records sent again.
 */
static uint64_t live_counts(const char *output, struct stock_convert_result *res)
{
	uint64_t records = res->data_pages + res->zero_pages, again = 0;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r;
	struct stat st;

	if (stat(output, &st) || !S_ISREG(st.st_mode) || fvm_reader_open(&r, output))
		return 0;
	if (!fvm_reader_info(r, &fi) && fi.data_pages + fi.zero_pages <= records) {
		again = records - fi.data_pages - fi.zero_pages;
		res->data_pages = fi.data_pages;
		res->zero_pages = fi.zero_pages;
	}
	fvm_reader_free(r);
	return again;
}

int cmd_convert(int argc, char **argv)
{
	fvm_disk_info disk = FVM_DISK_INFO_INIT;
	const char *disks[2] = { NULL, NULL };
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "no-crc", no_argument, NULL, OPT_NO_CRC },
		{ "no-fsync", no_argument, NULL, OPT_NO_FSYNC },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ "frame-size", required_argument, NULL, OPT_FRAME },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct stock_convert_opts o = { 0 };
	struct stock_convert_result res;
	struct progress pg;
	const struct cli_key *key = NULL;
	char creator[64], created[64], b1[32], b2[32], b3[32], b4[32], b5[48];
	int c, mode = PROGRESS_AUTO, err, force_share = 0, lock_fd = -1;
	uint64_t t0, ns, again;
	struct stat st;
	double secs;

	while ((c = getopt_long(argc, argv, "o:s:Uqh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': o.output = optarg; break;
		case 's': o.snapshot = optarg; break;
		case 'U': force_share = 1; break;
		case OPT_NO_CRC: o.write_flags |= FVM_WRITE_NO_CRC; break;
		case OPT_NO_FSYNC: o.write_flags |= FVM_WRITE_NO_FSYNC; break;
		case OPT_COMPRESS:
		case OPT_FRAME: {
			fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
			int e;

			wo.codec = o.codec;
			wo.level = o.level;
			wo.frame_bytes = o.frame_bytes;
			e = c == OPT_COMPRESS ? cli_parse_compress(optarg, &wo)
					      : cli_parse_frame_size(optarg, &wo);
			if (e)
				return e;
			o.codec = wo.codec;
			o.level = wo.level;
			o.frame_bytes = wo.frame_bytes;
			break;
		}
		case OPT_KEY:
			if ((c = cli_key_load(optarg, &key)))
				return c;
			break;
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input", &o.input)))
		return c;
	{
		fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;

		wo.codec = o.codec;
		if ((c = cli_key_writer(key, &wo)))
			return c;
		o.key = wo.key;
	}
	if (!o.output)
		return cli_usage_error("no output given (-o OUT.fvm)");
	if (!strcmp(o.output, "-"))
		return cli_usage_error("convert writes a file (atomically); use -o PATH");
	if (!strcmp(o.input, "-") && isatty(STDIN_FILENO))
		return cli_usage_error("refusing to read a migration stream from a terminal");
	if ((c = cli_refuse_same_file(o.input, o.output)))
		return c;
	/*
	 * A device or FIFO (/dev/null, a pipe) is written in place: renaming a
	 * temporary file over it would replace the device node.
	 */
	o.out_fd = -1;
	if (stat(o.output, &st) == 0 && !S_ISREG(st.st_mode)) {
		o.out_fd = open(o.output, O_WRONLY | O_CLOEXEC);
		if (o.out_fd < 0)
			return cli_fail_sys(o.output, errno);
	}
	snprintf(creator, sizeof(creator), "fvmsnap %s", fvm_version_string());
	cli_utc_now(created, sizeof(created));
	o.creator = creator;
	o.created = created;
	/* a qcow2 image's savevm: the image is the VM's disk (disk_id.h) */
	if (strcmp(o.input, "-") && fvm_disk_identify(o.input, &disk) == 0 &&
	    !strcmp(disk.kind, "qcow2")) {
		disks[0] = o.input;
		o.disks = disks;
		/* held while its snapshot is read, as qemu-img would */
		if ((c = cli_image_lock(o.input, force_share, &lock_fd))) {
			if (o.out_fd >= 0)
				close(o.out_fd);
			return c;
		}
	}
	cli_output = o.output;
	progress_init(&pg, "converting", mode);
	o.progress = progress_cb;
	o.progress_ctx = &pg;
	t0 = util_now_ns();
	err = stock_convert(&o, &res);
	progress_done(&pg);
	if (lock_fd >= 0)
		close(lock_fd);
	if (o.out_fd >= 0)
		close(o.out_fd);
	if (err)
		return cli_fail_as(cli_input_name(o.input), err, CLI_NOT_STOCK_INPUT);
	if (mode == PROGRESS_NEVER)
		return EXIT_OK;
	ns = util_now_ns() - t0;
	secs = (double)ns / 1e9;
	again = live_counts(o.output, &res);
	snprintf(b5, sizeof(b5), ", %llu sent again", (unsigned long long)again);
	printf("converted %s: %u block%s, %s RAM (%llu data pages, %llu zero pages%s), "
	       "%s device state; %s in, %s out, %.2f s, %.1f MB/s\n",
	       cli_input_name(o.input), res.blocks, res.blocks == 1 ? "" : "s",
	       util_fmt_bytes(b1, sizeof(b1), res.ram_bytes),
	       (unsigned long long)res.data_pages, (unsigned long long)res.zero_pages,
	       again ? b5 : "",
	       util_fmt_bytes(b2, sizeof(b2), res.devstate_bytes),
	       util_fmt_bytes(b3, sizeof(b3), res.input_bytes),
	       stat(o.output, &st) == 0 && S_ISREG(st.st_mode) ? util_fmt_bytes(b4, sizeof(b4), (uint64_t)st.st_size) : "n/a",
	       secs, secs > 0 ? (double)res.input_bytes / secs / 1e6 : 0.0);
	return EXIT_OK;
}
