/*
 * fvmsnap unpack: write each block of a snapshot back as a raw image,
 * sparse where zero. Each image is a temporary file of the block's length
 * (a hole), mapped MAP_SHARED and so flagged FVM_MAP_SHARED (never mapped
 * over) and FVM_MAP_ZERO (a new file reads as zero); fvm_load writes the
 * data pages into the mappings and never touches the zero pages, so they
 * stay holes. Nothing in DIR is replaced until every block loaded, and then
 * only by rename.
 *
 * A page stored through a shared mapping of a file on a full filesystem
 * cannot fail like a write: the fault fails, and the loader's read into the
 * mapping returns EFAULT naming the input. So where the runs are known
 * before loading (a seekable input) the data pages' ranges are allocated
 * first with fallocate, which fails with ENOSPC naming the output; the
 * zero pages stay holes. A stream's runs are known only after the load: an
 * EFAULT there with no space left in DIR is reported as ENOSPC of DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli.h"
#include "common/escape.h"
#include "common/progress.h"
#include "common/util.h"

struct out_block {
	char file[256];          /* "<safe-name>.raw" */
	struct cli_atomic at;
	void *map;
	uint64_t length;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap unpack IN.fvm -o DIR [--key KEYFILE] [--no-verify]\n"
		"                      [--quiet | --progress]\n"
		"\n"
		"Write each RAM block back as a raw image DIR/<name>.raw (sparse where\n"
		"zero), device-state sections as DIR/devstate-<n>-<name>.bin, and the\n"
		"lists DIR/blocks.txt, DIR/devstate.txt, DIR/meta.txt. IN may be '-'\n"
		"(a snapshot on standard input, e.g. a pipe). FVM_BACKEND and\n"
		"FVM_WILLNEED choose the loader's I/O path and read-ahead (fvmsnap(1)).\n"
		"\n"
		"  -o, --output DIR   directory to write into (created if missing)\n"
		"      --key KEYFILE  the key of an authenticated snapshot (required for one;\n"
		"                     its tags are always checked)\n"
		"      --no-verify    skip the payload checksums while loading\n"
		"  -q, --quiet        no progress bar, no summary line\n"
		"      --progress     progress bar even when stderr is not a TTY\n"
		"  -h, --help         this help\n");
}

/* dir + "/" + name, in a static-free caller buffer of PATH_MAX-ish size. */
static int join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Give every block a distinct file name: "<safe>.raw", "<safe>~<id>.raw". */
static void name_blocks(struct out_block *ob, const fvm_block_info *bi, uint32_t n)
{
	char safe[201];
	uint32_t i, j;

	for (i = 0; i < n; i++) {
		cli_safe_name(bi[i].name, safe);
		snprintf(ob[i].file, sizeof(ob[i].file), "%s.raw", safe);
		for (j = 0; j < i; j++)
			if (!strcmp(ob[j].file, ob[i].file))
				break;
		if (j < i)
			snprintf(ob[i].file, sizeof(ob[i].file), "%s~%u.raw", safe, i);
	}
}

/* Create, size and map the temporary file of one block. */
static int prepare_block(struct out_block *ob, const char *dir)
{
	char path[4096];
	int err;

	if ((err = join(path, sizeof(path), dir, ob->file)) ||
	    (err = cli_atomic_open(&ob->at, path)))
		return cli_fail_sys(path, -err);
	if (ob->length > SIZE_MAX) {
		cli_msg("%s: block too large for this system", path);
		return EXIT_UNSUPPORTED;
	}
	/* A file of holes: pages the loader does not write stay unallocated. */
	if (ftruncate(ob->at.fd, (off_t)ob->length) < 0)
		return cli_fail_sys(ob->at.path, errno);
	ob->map = mmap(NULL, (size_t)ob->length, PROT_READ | PROT_WRITE,
		       MAP_SHARED, ob->at.fd, 0);
	if (ob->map == MAP_FAILED) {
		ob->map = NULL;
		return cli_fail_sys(ob->at.path, errno);
	}
	return 0;
}

/*
 * Allocate the byte ranges of every data run in the block files (adjacent
 * runs merged), so that a full filesystem fails here, as ENOSPC of the file,
 * rather than as a fault in the loader. Nothing to do for a stream (runs
 * unknown yet) or where the filesystem has no fallocate.
 */
static int reserve_data(fvm_reader *r, const fvm_block_info *bi, struct out_block *ob,
			uint32_t nb)
{
	uint64_t i, n = fvm_reader_run_count(r), start = 0, end = 0;
	uint32_t blk = UINT32_MAX;

	for (i = 0; i <= n; i++) {
		fvm_run_info ri = FVM_RUN_INFO_INIT;
		uint64_t s = 0, e = 0;

		if (i < n) {
			if (fvm_reader_run(r, i, &ri))
				return 0; /* a stream: listed only after the load */
			if (ri.kind != FVM_RUN_DATA || ri.block_id >= nb)
				continue;
			s = ri.first_page * bi[ri.block_id].page_size;
			e = s + ri.page_count * bi[ri.block_id].page_size;
			if (ri.block_id == blk && s == end) {
				end = e;
				continue;
			}
		}
		if (blk != UINT32_MAX && end > start) {
			if (end > ob[blk].length)
				end = ob[blk].length;
			if (fallocate(ob[blk].at.fd, 0, (off_t)start, (off_t)(end - start)) < 0) {
				if (errno == EOPNOTSUPP || errno == ENOSYS)
					return 0;
				return cli_fail_sys(ob[blk].at.path, errno);
			}
		}
		blk = ri.block_id;
		start = s;
		end = e;
	}
	return 0;
}

/*
 * The loader failed: when it could not store a page into a mapping (EFAULT)
 * and DIR has no space left, that is what to report, naming DIR.
 */
static int load_failed(const char *name, const char *dir, int code)
{
	struct statvfs sv;

	if (fvm_error_errno() == EFAULT && statvfs(dir, &sv) == 0 && sv.f_bavail == 0)
		return cli_fail_sys(dir, ENOSPC);
	return cli_fail(name, code);
}

/* Write a small text file atomically from a memory stream's buffer. */
static int write_text(const char *dir, const char *name, const char *text,
		      size_t len, struct cli_atomic *at)
{
	char path[4096];
	int err;

	if ((err = join(path, sizeof(path), dir, name)) ||
	    (err = cli_atomic_open(at, path)))
		return cli_fail_sys(path, -err);
	if ((err = cli_write_all(at->fd, text, len)) ||
	    (err = cli_atomic_sync(at)))
		return cli_fail_sys(path, -err);
	return 0;
}

static int write_lists(fvm_reader *r, const char *dir, const fvm_block_info *bi,
		       const struct out_block *ob, uint32_t nb,
		       struct cli_atomic *at, char **devfiles, uint32_t nd)
{
	char *buf[3] = { NULL, NULL, NULL };
	size_t len[3];
	FILE *f[3];
	const char *key, *value;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint32_t i;
	int ret = 0, k;

	for (k = 0; k < 3; k++) {
		f[k] = open_memstream(&buf[k], &len[k]);
		if (!f[k]) {
			while (k--) {
				fclose(f[k]);
				free(buf[k]);
			}
			return cli_fail_sys("memory stream", ENOMEM);
		}
	}
	/* One line per item: file, escaped name, sizes; tab-separated. */
	for (i = 0; i < nb; i++) {
		fprintf(f[0], "%s\t", ob[i].file);
		text_escaped(f[0], bi[i].name);
		fprintf(f[0], "\t%llu\t%llu\n", (unsigned long long)bi[i].length,
			(unsigned long long)bi[i].page_size);
	}
	for (i = 0; i < nd; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if (fvm_reader_devstate(r, i, &di) == 0) {
			fprintf(f[1], "%s\t", devfiles[i]);
			text_escaped(f[1], di.name);
			fprintf(f[1], "\t%llu\n", (unsigned long long)di.length);
		}
	}
	if (fvm_reader_info(r, &fi) == 0) {
		for (i = 0; i < fi.meta_count; i++) {
			if (fvm_reader_meta(r, i, &key, &value))
				continue;
			text_escaped(f[2], key);
			fputc('\t', f[2]);
			text_escaped(f[2], value);
			fputc('\n', f[2]);
		}
	}
	for (k = 0; k < 3; k++)
		if (fclose(f[k]) && !ret)
			ret = cli_fail_sys("memory stream", ENOMEM);
	if (!ret)
		ret = write_text(dir, "blocks.txt", buf[0], len[0], &at[0]);
	if (!ret)
		ret = write_text(dir, "devstate.txt", buf[1], len[1], &at[1]);
	if (!ret)
		ret = write_text(dir, "meta.txt", buf[2], len[2], &at[2]);
	for (k = 0; k < 3; k++)
		free(buf[k]);
	return ret;
}

/* Read every device-state section into its temporary file. */
static int write_devstate(fvm_reader *r, const char *dir, uint32_t nd,
			  struct cli_atomic *at, char **files)
{
	uint32_t i;
	int ret;

	for (i = 0; i < nd; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
		char safe[201], name[256], path[4096];
		void *buf;

		if ((ret = fvm_reader_devstate(r, i, &di)))
			return cli_fail("device state", ret);
		cli_safe_name(di.name, safe);
		if (*di.name)
			snprintf(name, sizeof(name), "devstate-%u-%s.bin", i, safe);
		else
			snprintf(name, sizeof(name), "devstate-%u.bin", i);
		files[i] = strdup(name);
		if (!files[i] || di.length > SIZE_MAX)
			return cli_fail_sys(name, ENOMEM);
		buf = malloc(di.length ? (size_t)di.length : 1);
		if (!buf)
			return cli_fail_sys(name, ENOMEM);
		ret = fvm_reader_devstate_read(r, i, buf, (size_t)di.length);
		if (ret) {
			free(buf);
			return cli_fail(name, ret);
		}
		if ((ret = join(path, sizeof(path), dir, name)) ||
		    (ret = cli_atomic_open(&at[i], path))) {
			free(buf);
			return cli_fail_sys(path, -ret);
		}
		ret = cli_write_all(at[i].fd, buf, (size_t)di.length);
		if (!ret)
			ret = cli_atomic_sync(&at[i]);
		free(buf);
		if (ret)
			return cli_fail_sys(path, -ret);
	}
	return 0;
}

/* *made: 1 when DIR was created here (removed again if nothing lands in it). */
static int make_dir(const char *dir, int *made)
{
	struct stat st;

	*made = 0;
	if (mkdir(dir, 0777) == 0) {
		*made = 1;
		return 0;
	}
	if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		errno = ENOTDIR;
	return cli_fail_sys(dir, errno);
}

enum { OPT_PROGRESS = 256, OPT_NO_VERIFY, OPT_KEY };

int cmd_unpack(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "no-verify", no_argument, NULL, OPT_NO_VERIFY },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r = NULL;
	fvm_block_info *bi = NULL;
	fvm_mapping *maps = NULL;
	struct out_block *ob = NULL;
	struct cli_atomic *dat = NULL, lists[3];
	char **devfiles = NULL;
	struct progress pg;
	const struct cli_key *key = NULL;
	const char *in, *name, *dir = NULL;
	int c, ret = EXIT_OK, mode = PROGRESS_AUTO, verify = 1, made = 0;
	uint64_t t0;
	uint32_t i, nb = 0, nd = 0;

	for (i = 0; i < 3; i++)
		lists[i].fd = -1, lists[i].tmp = lists[i].path = NULL;
	while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': dir = optarg; break;
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case OPT_NO_VERIFY: verify = 0; break;
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
	if (!dir)
		return cli_usage_error("no output directory given (-o DIR)");
	if ((c = cli_load_env(&lo, &tu)))
		return c;
	name = cli_input_name(in);

	t0 = util_now_ns();
	if ((c = cli_open_snapshot(in, &r)))
		return cli_fail(name, c);
	if ((c = fvm_reader_info(r, &fi))) {
		ret = cli_fail(name, c);
		goto out;
	}
	if ((ret = cli_key_reader(r, name, key)))
		goto out;
	if ((ret = make_dir(dir, &made)))
		goto out;
	nb = fi.block_count;
	bi = calloc(nb ? nb : 1, sizeof(*bi));
	maps = calloc(nb ? nb : 1, sizeof(*maps));
	ob = calloc(nb ? nb : 1, sizeof(*ob));
	for (i = 0; ob && i < nb; i++)
		ob[i].at.fd = -1; /* before any exit path that aborts them */
	if (!bi || !maps || !ob) {
		ret = cli_fail_sys("allocating", ENOMEM);
		goto out;
	}
	for (i = 0; i < nb; i++) {
		bi[i] = (fvm_block_info)FVM_BLOCK_INFO_INIT;
		if ((c = fvm_reader_block(r, i, &bi[i]))) {
			ret = cli_fail(name, c);
			nb = i;
			goto out;
		}
		ob[i].length = bi[i].length;
	}
	name_blocks(ob, bi, nb);
	for (i = 0; i < nb; i++) {
		if ((ret = prepare_block(&ob[i], dir)))
			goto out;
		maps[i] = (fvm_mapping)FVM_MAPPING_INIT;
		/* MAP_SHARED over a new sparse file: written through, reads zero */
		maps[i].flags = FVM_MAP_SHARED | FVM_MAP_ZERO;
		maps[i].name = bi[i].name;
		maps[i].addr = ob[i].map;
		maps[i].length = bi[i].length;
	}

	if ((ret = reserve_data(r, bi, ob, nb)))
		goto out;

	progress_init(&pg, "unpacking", mode);
	lo.zero_policy = FVM_ZERO_LEAVE;
	lo.flags = verify ? FVM_LOAD_VERIFY : 0;
	lo.progress = progress_cb;
	lo.progress_ctx = &pg;
	c = fvm_load(r, maps, nb, &lo, &st);
	progress_done(&pg);
	if (c) {
		ret = load_failed(name, dir, c);
		goto out;
	}
	for (i = 0; i < nb; i++) {
		if (msync(ob[i].map, (size_t)ob[i].length, MS_SYNC) < 0) {
			ret = cli_fail_sys(ob[i].at.path, errno);
			goto out;
		}
		munmap(ob[i].map, (size_t)ob[i].length);
		ob[i].map = NULL;
		if ((c = cli_atomic_sync(&ob[i].at))) {
			ret = cli_fail_sys(ob[i].at.path, -c);
			goto out;
		}
	}

	/* A stream's device state and metadata are complete only now. */
	if ((c = fvm_reader_info(r, &fi))) {
		ret = cli_fail(name, c);
		goto out;
	}
	nd = fi.devstate_count;
	dat = calloc(nd ? nd : 1, sizeof(*dat));
	devfiles = calloc(nd ? nd : 1, sizeof(*devfiles));
	for (i = 0; dat && i < nd; i++)
		dat[i].fd = -1;
	if (!dat || !devfiles) {
		ret = cli_fail_sys("allocating", ENOMEM);
		goto out;
	}
	if ((ret = write_devstate(r, dir, nd, dat, devfiles)) ||
	    (ret = write_lists(r, dir, bi, ob, nb, lists, devfiles, nd)))
		goto out;

	/* Everything is written and synced: now replace, file by file. */
	for (i = 0; i < nb && !ret; i++)
		if ((c = cli_atomic_commit(&ob[i].at)))
			ret = cli_fail_sys(ob[i].file, -c);
	for (i = 0; i < nd && !ret; i++)
		if ((c = cli_atomic_commit(&dat[i])))
			ret = cli_fail_sys(devfiles[i], -c);
	for (i = 0; i < 3 && !ret; i++)
		if ((c = cli_atomic_commit(&lists[i])))
			ret = cli_fail_sys("list file", -c);
	if (!ret && mode != PROGRESS_NEVER) {
		char b1[32];
		double secs = (double)(util_now_ns() - t0) / 1e9;

		printf("unpacked %u block%s (%s of data, %u device-state section%s) into %s in %.2f s (%s)\n",
		       nb, nb == 1 ? "" : "s",
		       util_fmt_bytes(b1, sizeof(b1), st.bytes_read), nd,
		       nd == 1 ? "" : "s", dir, secs,
		       st.backend_name ? st.backend_name : "?");
	}
out:
	/* Whatever was not committed is removed; existing files stay. */
	for (i = 0; ob && i < nb; i++) {
		if (ob[i].map)
			munmap(ob[i].map, (size_t)ob[i].length);
		cli_atomic_abort(&ob[i].at);
	}
	for (i = 0; dat && i < nd; i++)
		cli_atomic_abort(&dat[i]);
	for (i = 0; devfiles && i < nd; i++)
		free(devfiles[i]);
	for (i = 0; i < 3; i++)
		cli_atomic_abort(&lists[i]);
	if (ret && made)
		rmdir(dir); /* only when empty: a failed unpack leaves no new directory */
	free(devfiles);
	free(dat);
	free(ob);
	free(maps);
	free(bi);
	fvm_reader_free(r);
	return ret;
}
