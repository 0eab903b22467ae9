/*
 * fvmsnap hot: the working set of a VM restored lazily from a snapshot
 * (QEMU -incoming fvm-lazy:, or fvm_load with FVM_LOAD_LAZY): the pages of
 * the snapshot the running process has touched so far. Runs mapped over
 * guest RAM are private mappings of the snapshot file, so /proc/PID/maps
 * lists them with their file offsets, and /proc/PID/pagemap says which of
 * their pages are present (faulted in by a read or copied by a write; the
 * prefetch thread populates its own mappings, not these). A read fault
 * also maps the neighbours the page cache holds (the kernel's fault-around,
 * 64 KiB): the set is the pages touched and those, which is the grain a
 * prefetch reads at anyway. File offsets are turned into block pages
 * through the snapshot's runs.
 *
 * Output, one range per line: "BLOCK FIRST_PAGE PAGE_COUNT", merged, in
 * block order; `fvmsnap recompress --hot FILE` writes those pages first,
 * so that a prefetch in file order reads them first (REAP, FaaSnap).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap hot --pid PID SNAP.fvm [-o HOT.txt]\n"
		"\n"
		"List the pages of SNAP.fvm that process PID (a QEMU restored with\n"
		"-incoming fvm-lazy:SNAP.fvm) has touched so far: its working set, one\n"
		"\"BLOCK FIRST_PAGE PAGE_COUNT\" range per line. Run it a few seconds after\n"
		"the VM resumed, then `fvmsnap recompress SNAP.fvm -o OUT.fvm --hot HOT.txt\n"
		"--compress none` writes those pages first, for a prefetch that reads them\n"
		"first. Needs the right to read /proc/PID/pagemap (root, or the same user\n"
		"with CAP_SYS_ADMIN for the page frame bits, which are not used here).\n"
		"\n"
		"  -p, --pid PID       the process\n"
		"  -o, --output FILE   where the list goes (default: standard output)\n"
		"  -q, --quiet         no summary line on standard error\n"
		"  -h, --help          this help\n");
}

struct drun {
	uint64_t off, bytes;    /* file range of a data run */
	uint32_t block;
	uint64_t first, page;   /* first page, page size */
};

static int drun_cmp(const void *a, const void *b)
{
	const struct drun *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The data run holding file offset off, or NULL. */
static const struct drun *find(const struct drun *v, size_t n, uint64_t off)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].off + v[mid].bytes <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo].off <= off ? &v[lo] : NULL;
}

struct hot {
	uint32_t block;
	uint64_t page;
};

static int hot_cmp(const void *a, const void *b)
{
	const struct hot *x = a, *y = b;

	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

int cmd_hot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "output", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *snap = NULL, *out = NULL;
	uint64_t pid = 0, data_pages = 0;
	int c, quiet = 0, ret = EXIT_OK, pm = -1;
	struct drun *runs = NULL;
	struct hot *hot = NULL;
	size_t nruns = 0, nhot = 0, cap = 0, maps_seen = 0;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r = NULL;
	char path[64], line[4096];
	struct stat st;
	FILE *maps = NULL, *o = stdout;

	while ((c = getopt_long(argc, argv, "p:o:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (cli_parse_uint(optarg, 1u << 30, &pid) || !pid)
				return cli_usage_error("--pid '%s': not a process id", optarg);
			break;
		case 'o': out = optarg; break;
		case 'q': quiet = 1; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "snapshot", &snap)))
		return c;
	if (!pid)
		return cli_usage_error("no process given (--pid PID)");
	if (stat(snap, &st))
		return cli_fail_sys(snap, errno);
	if ((c = fvm_reader_open(&r, snap)))
		return cli_fail(snap, c);
	(void)fvm_reader_info(r, &fi);
	if (fi.codec) {
		fvm_reader_free(r);
		cli_msg("%s: compressed runs are never mapped lazily: no working set to see", snap);
		return EXIT_USAGE;
	}
	if (fi.authenticated) {
		/* FVM_LOAD_LAZY, fvm-lazy: with a key go through userfaultfd */
		fvm_reader_free(r);
		cli_msg("%s: an authenticated snapshot is never mapped: a lazy restore installs "
			"its pages, each checked, into anonymous memory (userfaultfd), so the "
			"process maps no run of it and there is no working set to see", snap);
		return EXIT_UNSUPPORTED;
	}
	runs = calloc(fvm_reader_run_count(r) + 1, sizeof(*runs));
	if (!runs) {
		ret = cli_fail_sys("allocating", ENOMEM);
		goto out;
	}
	for (uint64_t i = 0; i < fvm_reader_run_count(r); i++) {
		fvm_run_info ri = FVM_RUN_INFO_INIT;
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;

		if ((c = fvm_reader_run(r, i, &ri)) || (c = fvm_reader_block(r, ri.block_id, &bi))) {
			ret = cli_fail(snap, c);
			goto out;
		}
		if (ri.kind != FVM_RUN_DATA)
			continue;
		runs[nruns++] = (struct drun){ ri.file_offset, ri.page_count * bi.page_size,
					       ri.block_id, ri.first_page, bi.page_size };
		data_pages += ri.page_count;
	}
	qsort(runs, nruns, sizeof(*runs), drun_cmp);

	snprintf(path, sizeof(path), "/proc/%" PRIu64 "/maps", pid);
	maps = fopen(path, "r");
	snprintf(path, sizeof(path), "/proc/%" PRIu64 "/pagemap", pid);
	pm = open(path, O_RDONLY | O_CLOEXEC);
	if (!maps || pm < 0) {
		ret = cli_fail_sys(path, errno);
		goto out;
	}
	while (fgets(line, sizeof(line), maps)) {
		unsigned long long lo, hi, off, ino;
		unsigned maj, mnr;
		char perms[8];
		long psz = sysconf(_SC_PAGESIZE);

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, perms, &off, &maj, &mnr,
			   &ino) != 7 || ino != (unsigned long long)st.st_ino ||
		    makedev(maj, mnr) != st.st_dev)
			continue;
		maps_seen++;
		for (unsigned long long v = lo; v < hi;) {
			uint64_t e[512];
			size_t k = (hi - v) / (unsigned long long)psz < 512 ?
				   (size_t)((hi - v) / (unsigned long long)psz) : 512;
			ssize_t got = pread(pm, e, k * 8, (off_t)(v / (unsigned long long)psz * 8));

			if (got != (ssize_t)(k * 8)) {
				ret = cli_fail_sys(path, got < 0 ? errno : EIO);
				goto out;
			}
			for (size_t i = 0; i < k; i++) {
				uint64_t foff = off + (v - lo) + i * (uint64_t)psz;
				const struct drun *d;

				if (!(e[i] >> 62 & 3)) /* neither present nor swapped */
					continue;
				d = find(runs, nruns, foff);
				if (!d)
					continue; /* the index, a header: not guest memory */
				if (nhot == cap) {
					struct hot *nh = realloc(hot, (cap = cap ? 2 * cap : 4096) *
								 sizeof(*hot));
					if (!nh) {
						ret = cli_fail_sys("allocating", ENOMEM);
						goto out;
					}
					hot = nh;
				}
				hot[nhot++] = (struct hot){ d->block,
							    d->first + (foff - d->off) / d->page };
			}
			v += (unsigned long long)k * (unsigned long long)psz;
		}
	}
	if (!maps_seen) {
		cli_msg("%s: process %" PRIu64 " has no mapping of it (restored with fvm-lazy:? "
			"the same file?)", snap, pid);
		ret = EXIT_USAGE;
		goto out;
	}
	if (nhot)
		qsort(hot, nhot, sizeof(*hot), hot_cmp);
	if (out && !(o = fopen(out, "w"))) {
		ret = cli_fail_sys(out, errno);
		goto out;
	}
	{
		uint64_t pages = 0;

		for (size_t i = 0; i < nhot;) {
			size_t j = i + 1;
			fvm_block_info bi = FVM_BLOCK_INFO_INIT;

			/* huge pages count once per base page; merge and dedupe */
			while (j < nhot && hot[j].block == hot[i].block &&
			       hot[j].page <= hot[j - 1].page + 1)
				j++;
			(void)fvm_reader_block(r, hot[i].block, &bi);
			fprintf(o, "%s %" PRIu64 " %" PRIu64 "\n", bi.name, hot[i].page,
				hot[j - 1].page - hot[i].page + 1);
			pages += hot[j - 1].page - hot[i].page + 1;
			i = j;
		}
		if (o != stdout && fclose(o)) {
			o = stdout;
			ret = cli_fail_sys(out, errno);
			goto out;
		}
		o = stdout;
		if (!quiet)
			fprintf(stderr, "hot: %" PRIu64 " of %" PRIu64 " data pages of %s touched by "
				"process %" PRIu64 " (%.1f%%)\n", pages, data_pages, snap, pid,
				data_pages ? 100.0 * (double)pages / (double)data_pages : 0.0);
	}
out:
	if (o != stdout)
		fclose(o);
	if (maps)
		fclose(maps);
	if (pm >= 0)
		close(pm);
	free(hot);
	free(runs);
	fvm_reader_free(r);
	return ret;
}
