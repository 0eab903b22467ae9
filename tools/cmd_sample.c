/*
 * fvmsnap sample: a synthetic raw RAM image with the run structure of a
 * real 512 MiB guest (doc/fvmsnap.1, sample): 131072 pages of which about
 * 24% are non-zero, in about 192 runs; 95% of the non-zero pages lie in a
 * few large runs of 512 KiB or more (sizes drawn from a heavy-tailed law),
 * the rest in a tail of small runs and single pages. Page contents mix
 * random bytes, text-like bytes and pages that are zero except for one
 * byte (anywhere, including the last byte), so a zero scan must look at
 * whole pages. Layout and contents depend only on the seed; run counts
 * scale with the size.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/progress.h"
#include "common/util.h"

#define PAGE 4096u
#define REAL_PAGES 131072.0  /* the measured guest: 512 MiB */
#define REAL_LARGE 22.0      /* its runs of >= 512 KiB, about */
#define REAL_SMALL 170.0     /* and the tail of small runs */
#define LARGE_MIN 128u       /* pages: 512 KiB */
#define SMALL_SHARE 0.05     /* of non-zero pages outside large runs */
#define BUF_PAGES 256u       /* 1 MiB write buffer */

struct run {
	uint64_t first, count;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap sample -o IMAGE [--size SIZE] [--seed N]\n"
		"                      [--nonzero-share F] [--quiet | --progress]\n"
		"\n"
		"Generate a synthetic raw RAM image (4 KiB pages) with the run\n"
		"structure of a real 512 MiB guest: a few very large non-zero runs, a\n"
		"tail of small runs and single pages. Deterministic for a seed;\n"
		"written atomically.\n"
		"\n"
		"  -o, --output IMAGE     file to write\n"
		"  -s, --size SIZE        image size, multiple of 4K (default 512M)\n"
		"      --seed N           layout and contents seed (default 1)\n"
		"      --nonzero-share F  share of non-zero pages, 0..1 (default 0.24)\n"
		"  -q, --quiet            no progress bar, no summary line\n"
		"      --progress         progress bar even when stderr is not a TTY\n"
		"  -h, --help             this help\n");
}

/* splitmix64: tiny, fast, good enough for layout and filler bytes. */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double unit(uint64_t *s)
{
	return (double)(mix(s) >> 11) / 9007199254740992.0;
}

/* Content of one page: depends only on seed and page index. */
static void fill_page(unsigned char *p, uint64_t seed, uint64_t page)
{
	static const char words[] = "the of and to in is it for on that with as "
		"kernel page memory guest virtio block qemu 0123456789 ";
	uint64_t s = seed ^ (page * 0xd1342543de82ef95ull), r;
	unsigned kind = (unsigned)(mix(&s) % 100), i;

	if (kind < 4) {
		/* Zero except one byte: position anywhere, often at the ends. */
		unsigned pos = (unsigned)(mix(&s) % (PAGE + 2));

		memset(p, 0, PAGE);
		pos = pos >= PAGE ? (pos == PAGE ? 0 : PAGE - 1) : pos;
		p[pos] = (unsigned char)(mix(&s) | 1);
	} else if (kind < 45) {
		for (i = 0; i < PAGE; i += 8) {
			r = mix(&s);
			memcpy(p + i, &r, 8);
		}
	} else {
		/* Text-like: words from a small vocabulary, lines of ~70. */
		unsigned col = 0;

		for (i = 0; i < PAGE;) {
			unsigned start = (unsigned)(mix(&s) % (sizeof(words) - 12));

			while (start && words[start - 1] != ' ')
				start--;
			while (i < PAGE && words[start] && words[start] != ' ')
				p[i++] = (unsigned char)words[start++], col++;
			if (i < PAGE)
				p[i++] = col > 70 ? (col = 0, '\n') : ' ';
		}
	}
}

static void shuffle(struct run *v, size_t n, uint64_t *s)
{
	size_t i;

	for (i = n; i > 1; i--) {
		size_t j = (size_t)(mix(s) % i);
		struct run t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

/*
 * Choose run lengths and places. Returns the number of runs in *v (caller
 * frees), or -1 on allocation failure.
 */
static long layout(uint64_t pages, uint64_t data, uint64_t seed, struct run **out)
{
	double scale = (double)pages / REAL_PAGES;
	uint64_t s = seed, small_pages, large_pages, n_large, n_small, i, rest;
	uint64_t zero = pages - data, n, inner, pos;
	double *w = NULL, wsum = 0;
	struct run *v;

	*out = NULL;
	if (!data)
		return 0;
	small_pages = (uint64_t)llround((double)data * SMALL_SHARE);
	large_pages = data - small_pages;
	n_large = (uint64_t)fmax(1, llround(REAL_LARGE * scale));
	if (n_large > large_pages / LARGE_MIN)
		n_large = large_pages / LARGE_MIN ? large_pages / LARGE_MIN : 1;
	n_small = (uint64_t)fmax(1, llround(REAL_SMALL * scale));
	if (n_small > small_pages)
		n_small = small_pages;
	if (!large_pages) {
		n_large = 0;
	}
	n = n_large + n_small;
	/* Too few zero pages to keep every run apart: one run. */
	if (zero < n - 1) {
		n_large = 1, n_small = 0, n = 1;
		large_pages = data, small_pages = 0;
	}
	v = calloc(n, sizeof(*v));
	w = calloc(n + 1, sizeof(*w));
	if (!v || !w) {
		free(v);
		free(w);
		return -1;
	}
	/* Large runs: LARGE_MIN each, the rest by heavy-tailed weights. */
	if (n_large) {
		rest = large_pages >= LARGE_MIN * n_large ? large_pages - LARGE_MIN * n_large : 0;
		for (i = 0; i < n_large; i++)
			wsum += (w[i] = exp(4.0 * unit(&s)));
		for (i = 0; i < n_large; i++)
			v[i].count = (large_pages < LARGE_MIN * n_large ? large_pages / n_large : LARGE_MIN) +
				     (uint64_t)((double)rest * w[i] / wsum);
		/* Rounding leftovers go to the first (a large) run. */
		for (i = 0, pos = 0; i < n_large; i++)
			pos += v[i].count;
		v[0].count += large_pages - pos;
	}
	/* Small runs: one page each, then random growth up to 127 pages. */
	for (i = 0; i < n_small; i++)
		v[n_large + i].count = 1;
	rest = small_pages - n_small;
	while (rest) {
		/* Two in five stay single pages; the others grow. */
		uint64_t k = n_small * 2 / 5 + mix(&s) % (n_small - n_small * 2 / 5);
		struct run *r = &v[n_large + k];

		if (r->count < LARGE_MIN - 1) {
			r->count++;
			rest--;
		} else if (mix(&s) % 64 == 0) {
			v[0].count += rest; /* everything full: rare, tiny images */
			rest = 0;
		}
	}
	shuffle(v, n, &s);
	/* Zero gaps: at least one page between runs, the rest by weights. */
	inner = n - 1;
	wsum = 0;
	for (i = 0; i <= n; i++)
		wsum += (w[i] = -log(1.0 - unit(&s)));
	rest = zero - inner;
	pos = 0;
	for (i = 0; i < n; i++) {
		uint64_t gap = (uint64_t)((double)rest * w[i] / wsum) + (i ? 1 : 0);

		pos += gap;
		v[i].first = pos;
		pos += v[i].count;
	}
	free(w);
	*out = v;
	return (long)n;
}

static int write_image(int fd, const struct run *v, long n, uint64_t seed,
		       uint64_t data, struct progress *pg)
{
	unsigned char *buf = malloc((size_t)BUF_PAGES * PAGE);
	uint64_t done = 0;
	long i;
	int err = 0;

	if (!buf)
		return -ENOMEM;
	for (i = 0; i < n && !err; i++) {
		uint64_t p = v[i].first, end = v[i].first + v[i].count;

		while (p < end && !err) {
			uint64_t k, cnt = end - p < BUF_PAGES ? end - p : BUF_PAGES;
			size_t len = (size_t)cnt * PAGE;
			off_t off = (off_t)(p * PAGE);
			size_t w = 0;

			for (k = 0; k < cnt; k++)
				fill_page(buf + k * PAGE, seed, p + k);
			while (w < len) {
				ssize_t r = pwrite(fd, buf + w, len - w, off + (off_t)w);

				if (r < 0 && errno == EINTR && !util_interrupted())
					continue;
				if (r <= 0) {
					err = r < 0 ? -errno : -EIO;
					break;
				}
				w += (size_t)r;
			}
			p += cnt;
			done += len;
			if (progress_cb(pg, done, data * PAGE))
				err = -EINTR;
		}
	}
	free(buf);
	return err;
}

enum { OPT_SEED = 256, OPT_SHARE, OPT_PROGRESS };

int cmd_sample(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "nonzero-share", required_argument, NULL, OPT_SHARE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint64_t size = 512ull << 20, seed = 1, pages, data, large = 0;
	double share = 0.24;
	const char *out = NULL;
	struct cli_atomic at;
	struct progress pg;
	struct run *v = NULL;
	long n, i;
	int c, err, mode = PROGRESS_AUTO;
	char *end, b1[32];

	while ((c = getopt_long(argc, argv, "o:s:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 's':
			if (cli_parse_size(optarg, &size) || !size || size % PAGE)
				return cli_usage_error("--size: expected a non-zero multiple of 4K, not '%s'",
						       optarg);
			break;
		case OPT_SEED:
			if (cli_parse_uint(optarg, UINT64_MAX, &seed))
				return cli_usage_error("--seed: expected a number, not '%s'", optarg);
			break;
		case OPT_SHARE:
			errno = 0;
			share = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(share >= 0 && share <= 1))
				return cli_usage_error("--nonzero-share: expected 0..1, not '%s'", optarg);
			break;
		case 'q': mode = PROGRESS_NEVER; break;
		case OPT_PROGRESS: mode = PROGRESS_ALWAYS; break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if (optind < argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!out)
		return cli_usage_error("no output given (-o IMAGE)");
	pages = size / PAGE;
	data = (uint64_t)llround(share * (double)pages);
	if (data > pages)
		data = pages;
	n = layout(pages, data, seed, &v);
	if (n < 0)
		return cli_fail_sys("layout", ENOMEM);
	if ((err = cli_atomic_open(&at, out))) {
		free(v);
		return cli_fail_sys(out, -err);
	}
	progress_init(&pg, "sample", mode);
	/* The file starts as one hole; only non-zero pages are written. */
	if (ftruncate(at.fd, (off_t)size) < 0)
		err = -errno;
	if (!err)
		err = write_image(at.fd, v, n, seed, data, &pg);
	progress_done(&pg);
	if (!err)
		err = cli_atomic_commit(&at);
	if (err) {
		cli_atomic_abort(&at);
		free(v);
		return cli_fail_sys(out, -err);
	}
	for (i = 0; i < n; i++)
		if (v[i].count >= LARGE_MIN)
			large += v[i].count;
	if (mode != PROGRESS_NEVER)
		printf("sample: %s: %s, %llu pages, %llu non-zero (%.1f%%) in %ld runs, "
		       "%.1f%% of them in runs >= 512 KiB, seed %llu\n",
		       out, util_fmt_bytes(b1, sizeof(b1), size), (unsigned long long)pages,
		       (unsigned long long)data, pages ? 100.0 * (double)data / (double)pages : 0.0,
		       n, data ? 100.0 * (double)large / (double)data : 0.0,
		       (unsigned long long)seed);
	free(v);
	return EXIT_OK;
}
