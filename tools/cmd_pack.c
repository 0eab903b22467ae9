/*
 * fvmsnap pack: build a snapshot from raw RAM images. Each image is mapped
 * read-only and handed to fvm_writer_write_block, so its pages go from the
 * page cache to the output without a copy here. Every input is opened and
 * checked before the writer is created: a bad argument never touches the
 * output, and the path writer replaces an existing file only on success.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"

struct input {
	char *name;          /* block or section name (points into arg copy) */
	const char *file;
	uint64_t page_size;  /* blocks only */
	uint64_t size;
	void *map;           /* MAP_FAILED/NULL when empty */
	uint32_t id;
};

struct pack_args {
	struct input *blocks, *devs;
	size_t n_blocks, n_devs;
	char **meta;         /* "KEY=VALUE" as given */
	size_t n_meta;
	const char *out;
	int progress_mode;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap pack --block NAME=FILE[,pagesize=N] [--block ...] -o OUT\n"
		"                    [--meta KEY=VALUE]... [--devstate NAME=FILE]...\n"
		"                    [--no-crc] [--max-run SIZE] [--segment-size SIZE]\n"
		"                    [--compress CODEC[:LEVEL]] [--frame-size SIZE]\n"
		"                    [--key KEYFILE] [--no-fsync] [--quiet | --progress]\n"
		"\n"
		"Build a snapshot from raw RAM images (e.g. QEMU pmemsave output).\n"
		"\n"
		"  -b, --block NAME=FILE[,pagesize=N]  add a RAM block from a raw image;\n"
		"                         page size 4K (default) up to 1G, power of two;\n"
		"                         the image size must be a non-zero multiple of it\n"
		"  -o, --output OUT       snapshot to write (atomically); '-' = stdout\n"
		"  -m, --meta KEY=VALUE   add metadata (after creator, created, source)\n"
		"  -d, --devstate NAME=FILE  add a device-state section from a file\n"
		"      --no-crc           no per-chunk payload checksums\n"
		"      --max-run SIZE     split data runs longer than SIZE bytes\n"
		"      --segment-size SIZE  payload bytes per segment (default 16M)\n"
		"      --no-fsync         do not fsync the output (scratch files)\n"
		"      --compress CODEC[:LEVEL]  zstd (level 1-19, default 3), lz4 (1-12, 3 and\n"
		"                         up HC; default 1) or none: runs stored as compressed\n"
		"                         frames (for slow flash; fvmsnap recompress undoes it)\n"
		"      --frame-size SIZE  plain bytes per frame, 64K..1M (default 1M)\n"
		"      --key KEYFILE      authenticated snapshot (fvmsnap keygen makes the key):\n"
		"                         keyed tags instead of CRCs, a MAC over the rest;\n"
		"                         readers then need the same --key (not with --compress)\n"
		"  -q, --quiet            no progress bar, no summary line\n"
		"      --progress         progress bar even when stderr is not a TTY\n"
		"  -h, --help             this help\n"
		"\n"
		"SIZE: bytes, or with a suffix K, M, G, T (binary).\n");
}

/* "NAME=FILE[,pagesize=N]": split in place; 0 or a usage exit code. */
static int parse_block(char *arg, struct input *in)
{
	char *eq = strchr(arg, '='), *comma;

	memset(in, 0, sizeof(*in));
	in->page_size = 4096;
	if (!eq || eq == arg || !eq[1])
		return cli_usage_error("--block '%s': expected NAME=FILE[,pagesize=N]", arg);
	*eq = '\0';
	in->name = arg;
	in->file = eq + 1;
	/* The last ",pagesize=" is an option; anything else is the file name. */
	comma = strrchr(eq + 1, ',');
	if (comma && !strncmp(comma + 1, "pagesize=", 9)) {
		uint64_t ps;

		*comma = '\0';
		if (cli_parse_size(comma + 10, &ps) || ps < 4096 ||
		    ps > (1ull << 30) || (ps & (ps - 1)))
			return cli_usage_error("--block %s: page size '%s' is not a power of two from 4K to 1G",
					       arg, comma + 10);
		in->page_size = ps;
	}
	if (!*in->file)
		return cli_usage_error("--block %s: missing file name", arg);
	if (strlen(in->name) > FVM_MAX_NAME)
		return cli_usage_error("--block: name longer than %d bytes", FVM_MAX_NAME);
	return 0;
}

static int parse_devstate(char *arg, struct input *in)
{
	char *eq = strchr(arg, '=');

	memset(in, 0, sizeof(*in));
	if (!eq || !eq[1])
		return cli_usage_error("--devstate '%s': expected NAME=FILE", arg);
	*eq = '\0';
	in->name = arg;
	in->file = eq + 1;
	if (strlen(in->name) > FVM_MAX_NAME)
		return cli_usage_error("--devstate: name longer than %d bytes", FVM_MAX_NAME);
	return 0;
}

/* Map one input read-only; 0 or an exit code (message printed). */
static int map_input(struct input *in, int is_block)
{
	struct stat st;
	int fd = open(in->file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return cli_fail_sys(in->file, errno);
	if (fstat(fd, &st) < 0) {
		int err = errno;

		close(fd);
		return cli_fail_sys(in->file, err);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		cli_msg("%s: not a regular file", in->file);
		return EXIT_USAGE;
	}
	in->size = (uint64_t)st.st_size;
	if (is_block && (in->size == 0 || in->size % in->page_size)) {
		close(fd);
		cli_msg("%s: size %llu is not a non-zero multiple of the page size %llu (block %s)",
			in->file, (unsigned long long)in->size,
			(unsigned long long)in->page_size, in->name);
		return EXIT_USAGE;
	}
	if (in->size > SIZE_MAX) {
		close(fd);
		cli_msg("%s: too large to map", in->file);
		return EXIT_SYSTEM;
	}
	in->map = NULL;
	if (in->size) {
		in->map = mmap(NULL, (size_t)in->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (in->map == MAP_FAILED) {
			int err = errno;

			in->map = NULL;
			close(fd);
			return cli_fail_sys(in->file, err);
		}
		/* The writer reads each image once, front to back. */
		madvise(in->map, (size_t)in->size, MADV_SEQUENTIAL);
		cli_watch_mapping(in->map, in->size, in->file);
	}
	close(fd);
	return 0;
}

static void unmap_inputs(struct input *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i].map) {
			cli_unwatch_mapping(v[i].map);
			munmap(v[i].map, (size_t)v[i].size);
		}
}

static void add_source(char *buf, size_t len, const struct pack_args *a)
{
	size_t i, used;

	used = (size_t)snprintf(buf, len, "pack:");
	for (i = 0; i < a->n_blocks && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, " %s", a->blocks[i].file);
}

static int write_snapshot(struct pack_args *a, fvm_writer *w, const char *what)
{
	char created[64], creator[64], source[4096];
	size_t i;
	int ret;

	snprintf(creator, sizeof(creator), "fvmsnap %s", fvm_version_string());
	cli_utc_now(created, sizeof(created));
	add_source(source, sizeof(source), a);
	if ((ret = fvm_writer_add_meta(w, "creator", creator)) ||
	    (ret = fvm_writer_add_meta(w, "created", created)) ||
	    (ret = fvm_writer_add_meta(w, "source", source)))
		return cli_fail(what, ret);
	for (i = 0; i < a->n_meta; i++) {
		char *eq = strchr(a->meta[i], '=');

		*eq = '\0';
		ret = fvm_writer_add_meta(w, a->meta[i], eq + 1);
		*eq = '=';
		if (ret)
			return cli_fail(a->meta[i], ret);
	}
	for (i = 0; i < a->n_blocks; i++) {
		struct input *b = &a->blocks[i];

		ret = fvm_writer_add_block(w, b->name, b->size, b->page_size, &b->id);
		if (ret)
			return cli_fail(b->file, ret);
	}
	for (i = 0; i < a->n_devs; i++) {
		struct input *d = &a->devs[i];

		ret = fvm_writer_add_devstate(w, d->name, d->map ? d->map : "",
					      (size_t)d->size);
		if (ret)
			return cli_fail(d->file, ret);
	}
	for (i = 0; i < a->n_blocks; i++) {
		ret = fvm_writer_write_block(w, a->blocks[i].id, a->blocks[i].map);
		if (ret)
			return cli_fail(a->blocks[i].file, ret);
	}
	ret = fvm_writer_finish(w);
	if (ret)
		return cli_fail(what, ret);
	return 0;
}

static void summary(const struct pack_args *a, int to_stdout, uint64_t ns)
{
	FILE *f = to_stdout ? stderr : stdout;
	uint64_t in = 0, out = 0;
	char b1[32], b2[32], zero[48] = "zero share n/a";
	double secs = (double)ns / 1e9;
	struct stat st;
	size_t i;

	for (i = 0; i < a->n_blocks; i++)
		in += a->blocks[i].size;
	for (i = 0; i < a->n_devs; i++)
		in += a->devs[i].size;
	if (!to_stdout) {
		fvm_reader *r;
		fvm_file_info fi = FVM_FILE_INFO_INIT;

		if (stat(a->out, &st) == 0)
			out = (uint64_t)st.st_size;
		/* The writer found the zero pages; read its count back. */
		if (fvm_reader_open(&r, a->out) == 0) {
			uint64_t total = 0;

			for (i = 0; i < a->n_blocks; i++)
				total += a->blocks[i].size;
			if (fvm_reader_info(r, &fi) == 0 && total)
				snprintf(zero, sizeof(zero), "zero share %.1f%%",
					 100.0 * (1.0 - (double)fi.payload_bytes / (double)total));
			fvm_reader_free(r);
		}
	} else if (fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
		out = (uint64_t)st.st_size;
	}
	fprintf(f, "packed %zu block%s: %s in, %s out, %s, %.2f s, %.1f MB/s\n",
		a->n_blocks, a->n_blocks == 1 ? "" : "s",
		util_fmt_bytes(b1, sizeof(b1), in),
		out ? util_fmt_bytes(b2, sizeof(b2), out) : "n/a",
		zero, secs, secs > 0 ? (double)in / secs / 1e6 : 0.0);
}

enum { OPT_NO_CRC = 256, OPT_MAX_RUN, OPT_SEGMENT, OPT_PROGRESS, OPT_NO_FSYNC, OPT_COMPRESS,
       OPT_FRAME, OPT_KEY };

int cmd_pack(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "block", required_argument, NULL, 'b' },
		{ "output", required_argument, NULL, 'o' },
		{ "meta", required_argument, NULL, 'm' },
		{ "devstate", required_argument, NULL, 'd' },
		{ "no-crc", no_argument, NULL, OPT_NO_CRC },
		{ "max-run", required_argument, NULL, OPT_MAX_RUN },
		{ "segment-size", required_argument, NULL, OPT_SEGMENT },
		{ "no-fsync", no_argument, NULL, OPT_NO_FSYNC },
		{ "compress", required_argument, NULL, OPT_COMPRESS },
		{ "frame-size", required_argument, NULL, OPT_FRAME },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct pack_args a;
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	struct progress pg;
	fvm_writer *w = NULL;
	const struct cli_key *key = NULL;
	uint64_t t0;
	size_t i;
	int c, ret = EXIT_OK, to_stdout;

	memset(&a, 0, sizeof(a));
	a.blocks = calloc((size_t)argc, sizeof(*a.blocks));
	a.devs = calloc((size_t)argc, sizeof(*a.devs));
	a.meta = calloc((size_t)argc, sizeof(*a.meta));
	if (!a.blocks || !a.devs || !a.meta) {
		ret = cli_fail_sys("allocating", ENOMEM);
		goto out;
	}
	while ((c = getopt_long(argc, argv, "b:o:m:d:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if ((ret = parse_block(optarg, &a.blocks[a.n_blocks++])))
				goto out;
			break;
		case 'd':
			if ((ret = parse_devstate(optarg, &a.devs[a.n_devs++])))
				goto out;
			break;
		case 'm': {
			char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg) {
				ret = cli_usage_error("--meta '%s': expected KEY=VALUE", optarg);
				goto out;
			}
			a.meta[a.n_meta++] = optarg;
			break;
		}
		case 'o':
			a.out = optarg;
			break;
		case OPT_NO_CRC:
			wo.flags |= FVM_WRITE_NO_CRC;
			break;
		case OPT_NO_FSYNC:
			wo.flags |= FVM_WRITE_NO_FSYNC;
			break;
		case OPT_COMPRESS:
			if ((ret = cli_parse_compress(optarg, &wo)))
				goto out;
			break;
		case OPT_FRAME:
			if ((ret = cli_parse_frame_size(optarg, &wo)))
				goto out;
			break;
		case OPT_KEY:
			if ((ret = cli_key_load(optarg, &key)))
				goto out;
			break;
		case OPT_MAX_RUN:
			if (cli_parse_size(optarg, &wo.max_run_bytes)) {
				ret = cli_usage_error("--max-run: bad size '%s'", optarg);
				goto out;
			}
			break;
		case OPT_SEGMENT:
			if (cli_parse_size(optarg, &wo.segment_bytes)) {
				ret = cli_usage_error("--segment-size: bad size '%s'", optarg);
				goto out;
			}
			break;
		case 'q':
			a.progress_mode = PROGRESS_NEVER;
			break;
		case OPT_PROGRESS:
			a.progress_mode = PROGRESS_ALWAYS;
			break;
		case 'h':
			usage(stdout);
			goto out;
		default:
			ret = cli_try_help();
			goto out;
		}
	}
	if (optind < argc) {
		ret = cli_usage_error("unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if ((ret = cli_key_writer(key, &wo)))
		goto out;
	if (!a.n_blocks) {
		ret = cli_usage_error("no --block given");
		goto out;
	}
	if (!a.out) {
		ret = cli_usage_error("no output given (-o OUT)");
		goto out;
	}
	to_stdout = !strcmp(a.out, "-");
	if (to_stdout && isatty(STDOUT_FILENO)) {
		ret = cli_usage_error("refusing to write a snapshot to a terminal");
		goto out;
	}
	for (i = 0; i < a.n_blocks; i++)
		if ((ret = cli_refuse_same_file(a.blocks[i].file, a.out)))
			goto out;
	for (i = 0; i < a.n_devs; i++)
		if ((ret = cli_refuse_same_file(a.devs[i].file, a.out)))
			goto out;
	for (i = 0; i < a.n_blocks; i++)
		if ((ret = map_input(&a.blocks[i], 1)))
			goto out;
	for (i = 0; i < a.n_devs; i++)
		if ((ret = map_input(&a.devs[i], 0)))
			goto out;

	cli_output = to_stdout ? NULL : a.out;
	progress_init(&pg, "packing", a.progress_mode);
	wo.progress = progress_cb;
	wo.progress_ctx = &pg;
	t0 = util_now_ns();
	c = to_stdout ? fvm_writer_open_fd(&w, STDOUT_FILENO, &wo)
		      : fvm_writer_open_path(&w, a.out, &wo);
	if (c) {
		ret = cli_fail(a.out, c);
		goto out;
	}
	ret = write_snapshot(&a, w, to_stdout ? "stdout" : a.out);
	progress_done(&pg);
	/* Unfinished path writers remove their temporary file here. */
	fvm_writer_free(w);
	if (!ret && a.progress_mode != PROGRESS_NEVER)
		summary(&a, to_stdout, util_now_ns() - t0);
out:
	if (a.blocks)
		unmap_inputs(a.blocks, a.n_blocks);
	if (a.devs)
		unmap_inputs(a.devs, a.n_devs);
	free(a.blocks);
	free(a.devs);
	free(a.meta);
	return ret;
}
