/*
 * fvmsnap list: the internal snapshots of a qcow2 image (what `savevm`
 * made), like `qemu-img snapshot -l`: id, name, date (UTC), VM clock, VM
 * state size and disk size; --json for scripts. The table comes from
 * tools/stock/qcow2.c; nothing here reads the image itself.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "cli.h"
#include "common/escape.h"
#include "common/util.h"
#include "stock/qcow2.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap list DISK.qcow2 [--json] [-U]\n"
		"\n"
		"List the internal snapshots (savevm) of a qcow2 image: id, name, date\n"
		"(UTC), VM clock, VM state size and disk size. Snapshots are chosen for\n"
		"'fvmsnap convert --snapshot' by id first, then by name, like loadvm.\n"
		"\n"
		"  -j, --json   machine-readable output\n"
		"  -U, --force-share\n"
		"               read an image another process (a running QEMU) holds\n"
		"               locked; what it reads may be changing\n"
		"  -h, --help   this help\n");
}

static void fmt_date(char *buf, size_t len, uint64_t sec, int iso)
{
	struct tm tm;
	time_t t = (time_t)sec;

	if (!gmtime_r(&t, &tm) ||
	    !strftime(buf, len, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "%" PRIu64, sec);
}

/* hh:mm:ss.mmm, hours unbounded (QEMU prints the same). */
static void fmt_clock(char *buf, size_t len, uint64_t ns)
{
	uint64_t ms = ns / 1000000, s = ms / 1000;

	snprintf(buf, len, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64,
		 s / 3600, s / 60 % 60, s % 60, ms % 1000);
}

static void print_table(const struct stock_qcow2 *q, const char *in)
{
	size_t i, n = stock_qcow2_snapshot_count(q);
	char date[64], clock[64], vm[32], disk[32];

	/* Neither the path nor the names from the image may drive the terminal. */
	text_safe(stdout, in, 0);
	printf(": qcow2 v%" PRIu32 ", %s clusters, %zu snapshot%s\n",
	       stock_qcow2_version(q),
	       util_fmt_bytes(vm, sizeof(vm), 1ull << stock_qcow2_cluster_bits(q)),
	       n, n == 1 ? "" : "s");
	if (!n)
		return;
	printf("%-9s %-17s %12s %12s  %-19s  %s\n", "ID", "NAME", "VM STATE", "DISK SIZE",
	       "DATE (UTC)", "VM CLOCK");
	for (i = 0; i < n; i++) {
		const struct stock_qcow2_snapshot *sn = stock_qcow2_snapshot(q, i);

		fmt_date(date, sizeof(date), sn->date_sec, 0);
		fmt_clock(clock, sizeof(clock), sn->vm_clock_nsec);
		text_safe(stdout, sn->id, 9);
		putchar(' ');
		text_safe(stdout, sn->name, 17);
		printf(" %12s %12s  %-19s  %s\n",
		       util_fmt_bytes(vm, sizeof(vm), sn->vm_state_size),
		       util_fmt_bytes(disk, sizeof(disk), sn->disk_size), date, clock);
	}
}

static void print_json(const struct stock_qcow2 *q, const char *in)
{
	size_t i, n = stock_qcow2_snapshot_count(q);
	char date[64];

	printf("{\n  \"schema\": \"fvmsnap-list/1\",\n  \"file\": ");
	json_str(stdout, in);
	printf(",\n  \"format\": \"qcow2\",\n  \"version\": %" PRIu32 ",\n"
	       "  \"cluster_size\": %" PRIu64 ",\n  \"snapshots\": [",
	       stock_qcow2_version(q), (uint64_t)1 << stock_qcow2_cluster_bits(q));
	for (i = 0; i < n; i++) {
		const struct stock_qcow2_snapshot *sn = stock_qcow2_snapshot(q, i);

		fmt_date(date, sizeof(date), sn->date_sec, 1);
		printf("%s\n    {\"id\": ", i ? "," : "");
		json_str(stdout, sn->id);
		printf(", \"name\": ");
		json_str(stdout, sn->name);
		printf(", \"date\": \"%s\", \"date_sec\": %" PRIu64 ", \"date_nsec\": %" PRIu32
		       ", \"vm_clock_nsec\": %" PRIu64 ", \"vm_state_size\": %" PRIu64
		       ", \"disk_size\": %" PRIu64 ", \"icount\": ",
		       date, sn->date_sec, sn->date_nsec, sn->vm_clock_nsec,
		       sn->vm_state_size, sn->disk_size);
		if (sn->icount == UINT64_MAX)
			printf("null");
		else
			printf("%" PRIu64, sn->icount);
		printf("}");
	}
	printf("%s]\n}\n", n ? "\n  " : "");
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct stock_qcow2 *q;
	const char *in;
	int c, json = 0, force_share = 0, lock_fd;

	while ((c = getopt_long(argc, argv, "jUh", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'U': force_share = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "qcow2 image", &in)))
		return c;
	if (!strcmp(in, "-"))
		return cli_usage_error("list reads a qcow2 image by its path, not from standard input");
	if ((c = cli_image_lock(in, force_share, &lock_fd)))
		return c;
	c = stock_qcow2_open(&q, in);
	if (lock_fd >= 0)
		close(lock_fd); /* the table is read: QEMU may have the image back */
	if (c)
		return cli_fail_as(in, c, "not a qcow2 image"); /* list reads qcow2 only */
	if (json)
		print_json(q, in);
	else
		print_table(q, in);
	stock_qcow2_close(q);
	if (fflush(stdout) == EOF || ferror(stdout))
		return cli_fail_sys("stdout", errno ? errno : EIO);
	return EXIT_OK;
}
