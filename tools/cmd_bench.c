/*
 * fvmsnap bench: load a snapshot into fresh anonymous memory N times per
 * configuration (cache state x backend) and compare the median with the
 * reference of the same cache state: one plain sequential read() pass of
 * the whole file, 1 MiB at a time, into fresh anonymous memory of the
 * file's size. Runs are interleaved (reference, then each backend, N
 * times) so that drift of the machine hits every configuration alike.
 * Also measures the loader's memory beyond the destination in a child.
 * A compressed file has only the copying loads (the mmap and lazy ones map
 * plain runs): the others are left out with a note, not failed. So has an
 * authenticated one (--key), which is never mapped (its lazy loads go
 * through userfaultfd, each page checked as it is installed): its loads
 * are timed with the key given (the MAC checked at each open, every tag
 * on the way), the reference reads it as it reads any file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "common/escape.h"
#include "common/util.h"

#define REF_READ (1u << 20)
#define MAX_RUNS 1000
#define WARM_TARGET 1.15
#define COLD_TARGET 1.10
#define MEM_TARGET (16ull << 20)

enum { CACHE_WARM, CACHE_COLD };
/*
 * CFG_URING is the default load (reads handed to io_uring's workers),
 * CFG_INLINE the same with FVM_TUNE_INLINE (copies in the calling thread).
 * CFG_MMAP maps the runs (no copy, FVM_BACKEND_MMAP); CFG_MMAP_WRITE then
 * writes one byte into every data page, so the copy-on-write cost that
 * mapping defers is shown beside it, not hidden. CFG_LAZY maps without
 * populating (FVM_LOAD_LAZY: the time to resume); CFG_LAZY_WRITE then
 * writes every data page, which reads each from the file and copies it.
 * CFG_LAZY_PF is the lazy map followed by fvm_prefetch_start (the time to
 * resume with prefetch); the same run goes on into fvm_prefetch_wait, whose
 * end (every run read into the page cache) is CFG_LAZY_PF_WAIT's time.
 */
enum { CFG_REF, CFG_URING, CFG_INLINE, CFG_PREAD, CFG_MMAP, CFG_MMAP_WRITE, CFG_LAZY,
       CFG_LAZY_WRITE, CFG_LAZY_PF, CFG_LAZY_PF_WAIT, N_CFG };

struct bench {
	const char *path;
	int fd;                  /* for fadvise and the reference reads */
	uint64_t file_size, payload_bytes, index_bytes;
	uint64_t stored_bytes;   /* payload bytes in the file (compressed or not) */
	uint32_t codec;          /* enum fvm_codec of the file */
	unsigned runs;
	int cfg_on[N_CFG];
	int thp;                 /* destinations (and the reference) MADV_HUGEPAGE */
	fvm_load_options lo;     /* lo.tuning is set per load, from tu */
	fvm_load_tuning tu;      /* --qd, --chunk, --willneed, FVM_WILLNEED */
	const struct cli_key *key; /* --key: an authenticated file's */
	int authenticated;       /* the file is: every load gives it the key */
};

struct result {
	int done;
	uint64_t ns[MAX_RUNS];
	unsigned n;
	double median_ms, min_ms, max_ms, ratio;
	fvm_load_stats st;       /* of the last run */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: fvmsnap bench IN.fvm [-n N] [--warm | --cold | --both]\n"
		"                    [--backend uring|inline|pread|mmap|lazy|lazy-map|both|all[,...]]\n"
		"                    [--qd N] [--chunk SIZE]\n"
		"                    [--willneed N] [--thp] [--prefetch] [--threads N]\n"
		"                    [--direct] [--verify] [--no-memory] [--key KEYFILE] [--json]\n"
		"\n"
		"Load the snapshot into fresh anonymous memory N times per configuration\n"
		"and compare the median time with a plain sequential read() of the file\n"
		"(1 MiB reads) into fresh memory, with a warm and a cold page cache\n"
		"(POSIX_FADV_DONTNEED before each cold run). IN.fvm must be a file, not\n"
		"'-': the loads are timed from the file's storage.\n"
		"\n"
		"  -n, --runs N        runs per configuration (default 5)\n"
		"      --warm          warm page cache only\n"
		"      --cold          cold page cache only\n"
		"      --both          both (default)\n"
		"      --backend B     uring, inline (io_uring, copies in the calling\n"
		"                      thread), pread, mmap, lazy, both (uring and\n"
		"                      pread), all (default), lazy-map (lazy without\n"
		"                      lazy+write) or a list: uring,lazy-map; mmap and lazy also\n"
		"                      time the load followed by one write into every\n"
		"                      data page (mmap+write, lazy+write); a compressed\n"
		"                      file skips mmap and lazy with a note\n"
		"      --prefetch      also lazy+prefetch: the lazy load and\n"
		"                      fvm_prefetch_start, then until the prefetch has\n"
		"                      read every run (prefetch wait)\n"
		"      --threads N     decoding threads of a compressed file (default:\n"
		"                      one per CPU)\n"
		"      --qd N          reads in flight (io_uring queue depth)\n"
		"      --chunk SIZE    bytes per read request\n"
		"      --willneed N    POSIX_FADV_WILLNEED N x qd x chunk ahead (default 0,\n"
		"                      or FVM_WILLNEED)\n"
		"      --thp           destination and reference memory MADV_HUGEPAGE, as\n"
		"                      QEMU allocates guest RAM (default: the system's)\n"
		"      --direct        O_DIRECT reads\n"
		"      --verify        check payload CRCs while loading\n"
		"      --no-memory     skip the loader memory measurement\n"
		"      --key KEYFILE   the key of an authenticated file (required for one):\n"
		"                      each load opens the file and checks its MAC and tags;\n"
		"                      the file is never mapped, so mmap is left out\n"
		"                      (refused when --backend names it); lazy loads go\n"
		"                      through userfaultfd, every page checked\n"
		"  -j, --json          machine-readable output (see fvmsnap(1))\n"
		"  -h, --help          this help\n");
}

static void drop_cache(const struct bench *b)
{
	/* Clean pages only; the file is not being written. */
	posix_fadvise(b->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static int warm_cache(const struct bench *b)
{
	static char buf[REF_READ];
	off_t off = 0;
	ssize_t n;

	while ((n = pread(b->fd, buf, sizeof(buf), off)) > 0)
		off += n;
	return n < 0 ? -errno : 0;
}

/* One reference pass: open, fresh memory, read() to EOF. 0 or -errno. */
static int run_reference(const struct bench *b, uint64_t *ns)
{
	uint64_t t0 = util_now_ns(), off = 0;
	size_t len = b->file_size ? (size_t)b->file_size : 1;
	char *mem;
	int fd, err = 0;

	fd = open(b->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		close(fd);
		return -errno;
	}
	if (b->thp)
		madvise(mem, len, MADV_HUGEPAGE);
	for (;;) {
		size_t want = b->file_size - off < REF_READ ? (size_t)(b->file_size - off)
							    : REF_READ;
		ssize_t n;

		if (!want)
			break;
		n = read(fd, mem + off, want);
		if (n < 0 && errno == EINTR && !util_interrupted())
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		off += (uint64_t)n;
	}
	*ns = util_now_ns() - t0;
	munmap(mem, len);
	close(fd);
	return err;
}

struct dest {
	fvm_mapping *maps;
	uint32_t n;
};

static void dest_free(struct dest *d)
{
	uint32_t i;

	for (i = 0; d->maps && i < d->n; i++)
		if (d->maps[i].addr)
			munmap(d->maps[i].addr, (size_t)d->maps[i].length);
	free(d->maps);
	d->maps = NULL;
}

/* Fresh anonymous memory for every block of r. 0 or an FVM_E code. */
static int dest_map(fvm_reader *r, struct dest *d, int no_thp, int thp)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint32_t i;
	int ret;

	memset(d, 0, sizeof(*d));
	if ((ret = fvm_reader_info(r, &fi)))
		return ret;
	d->maps = calloc(fi.block_count ? fi.block_count : 1, sizeof(*d->maps));
	if (!d->maps)
		return FVM_ENOMEM;
	d->n = fi.block_count;
	for (i = 0; i < fi.block_count; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		void *p;

		if ((ret = fvm_reader_block(r, i, &bi)))
			return ret;
		if (bi.length > SIZE_MAX)
			return FVM_EUNSUPPORTED;
		p = mmap(NULL, (size_t)bi.length, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return FVM_ENOMEM;
		/* Memory measurement: count 4 KiB pages, not whole huge pages. */
		if (no_thp)
			madvise(p, (size_t)bi.length, MADV_NOHUGEPAGE);
		else if (thp) /* QEMU's guest RAM is MADV_HUGEPAGE */
			madvise(p, (size_t)bi.length, MADV_HUGEPAGE);
		d->maps[i] = (fvm_mapping)FVM_MAPPING_INIT;
		d->maps[i].name = bi.name;
		d->maps[i].addr = p;
		d->maps[i].length = bi.length;
	}
	return 0;
}

/* One load: open, fresh memory, fvm_load; the time covers all three. */
/* Write one byte into every data page (after an mmap load: each a COW copy). */
static int write_data_pages(fvm_reader *r, const struct dest *d)
{
	uint64_t n = fvm_reader_run_count(r);

	for (uint64_t i = 0; i < n; i++) {
		fvm_run_info ri = FVM_RUN_INFO_INIT;
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		volatile unsigned char *p;
		int ret;

		if ((ret = fvm_reader_run(r, i, &ri)) || (ret = fvm_reader_block(r, ri.block_id, &bi)))
			return ret;
		if (ri.kind != FVM_RUN_DATA)
			continue;
		p = (volatile unsigned char *)d->maps[ri.block_id].addr + ri.first_page * bi.page_size;
		for (uint64_t k = 0; k < ri.page_count; k++)
			p[k * bi.page_size] = p[k * bi.page_size];
	}
	return 0;
}

/* Each configuration: its table name, JSON key, backend, extra load flags,
 * extra tuning flags, and whether every data page is written after the load. */
static const struct cfg {
	const char *name, *key;
	int backend;
	uint32_t flags, tune;
	int write;
} cfgs[N_CFG] = {
	[CFG_REF] = { "read() 1 MiB", "reference", 0, 0, 0, 0 },
	[CFG_URING] = { "load uring", "uring", FVM_BACKEND_URING, 0, 0, 0 },
	[CFG_INLINE] = { "uring inline", "uring_inline", FVM_BACKEND_URING, 0, FVM_TUNE_INLINE, 0 },
	[CFG_PREAD] = { "load pread", "pread", FVM_BACKEND_PREAD, 0, 0, 0 },
	[CFG_MMAP] = { "load mmap", "mmap", FVM_BACKEND_MMAP, 0, 0, 0 },
	[CFG_MMAP_WRITE] = { "mmap+write", "mmap_write", FVM_BACKEND_MMAP, 0, 0, 1 },
	[CFG_LAZY] = { "load lazy", "lazy", FVM_BACKEND_MMAP, FVM_LOAD_LAZY, 0, 0 },
	[CFG_LAZY_WRITE] = { "lazy+write", "lazy_write", FVM_BACKEND_MMAP, FVM_LOAD_LAZY, 0, 1 },
	[CFG_LAZY_PF] = { "lazy+prefetch", "lazy_prefetch", FVM_BACKEND_MMAP, FVM_LOAD_LAZY, 0, 0 },
	[CFG_LAZY_PF_WAIT] = { "prefetch wait", "prefetch_wait", FVM_BACKEND_MMAP, FVM_LOAD_LAZY,
			       0, 0 },
};

/* The load options of configuration cfg; *tu must live as long as *lo. */
static void cfg_options(const struct bench *b, int cfg, fvm_load_options *lo,
			fvm_load_tuning *tu)
{
	*lo = b->lo;
	*tu = b->tu;
	lo->backend = cfgs[cfg].backend;
	lo->flags |= cfgs[cfg].flags;
	tu->flags |= cfgs[cfg].tune;
	lo->tuning = tu;
}

/*
 * One load; with CFG_LAZY_PF, *ns ends when the prefetch has started and
 * *wait_ns when it has read every run (both from the same start).
 */
static int run_load(const struct bench *b, int cfg, uint64_t *ns, uint64_t *wait_ns,
		    fvm_load_stats *st)
{
	fvm_load_options lo;
	fvm_load_tuning tu;
	uint64_t t0 = util_now_ns();
	struct dest d = { NULL, 0 };
	fvm_prefetch *pf = NULL;
	fvm_reader *r;
	int ret;

	cfg_options(b, cfg, &lo, &tu);
	if ((ret = fvm_reader_open(&r, b->path)))
		return ret;
	/* an authenticated load: the MAC is part of it, so it is timed */
	ret = b->authenticated ? fvm_reader_set_key(r, b->key->key, sizeof(b->key->key)) : 0;
	if (!ret)
		ret = dest_map(r, &d, 0, b->thp);
	if (!ret)
		ret = fvm_load(r, d.maps, d.n, &lo, st);
	if (!ret && cfg == CFG_LAZY_PF)
		ret = fvm_prefetch_start(r, 0, &pf);
	if (!ret && cfgs[cfg].write)
		ret = write_data_pages(r, &d);
	*ns = util_now_ns() - t0;
	if (pf) {
		ret = fvm_prefetch_wait(pf);
		*wait_ns = util_now_ns() - t0;
		fvm_prefetch_free(pf);
	}
	dest_free(&d);
	fvm_reader_free(r);
	return ret;
}

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

/*
 * Peak RSS growth of a load in a fresh child, minus the destination pages
 * it must touch (the payload: zero pages stay untouched with ZERO_LEAVE).
 * The child starts its own high-water mark at fork (and resets it through
 * clear_refs where allowed), so the parent's history does not count.
 * Returns 0 or an FVM_E code.
 */
static int measure_memory(const struct bench *b, int cfg, int64_t *out)
{
	int pfd[2], status;
	int64_t msg[2] = { 0, 0 };
	pid_t pid;

	if (pipe(pfd) < 0)
		return FVM_EIO;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return FVM_EIO;
	}
	if (pid == 0) {
		fvm_load_options lo;
		fvm_load_tuning tu;
		struct dest d;
		fvm_reader *r;
		long h0, h1;
		int fd, ret;

		close(pfd[0]);
		fd = open("/proc/self/clear_refs", O_WRONLY);
		if (fd >= 0) {
			if (write(fd, "5", 1) < 0) { /* best effort */ }
			close(fd);
		}
		h0 = vm_hwm_kb();
		cfg_options(b, cfg, &lo, &tu);
		lo.progress = NULL;
		ret = fvm_reader_open(&r, b->path);
		if (!ret && b->authenticated)
			ret = fvm_reader_set_key(r, b->key->key, sizeof(b->key->key));
		if (!ret) {
			ret = dest_map(r, &d, 1, 0);
			if (!ret)
				ret = fvm_load(r, d.maps, d.n, &lo, NULL);
		}
		h1 = vm_hwm_kb();
		msg[0] = ret ? ret : (h0 < 0 || h1 < 0) ? FVM_EUNSUPPORTED : 0;
		msg[1] = (int64_t)(h1 - h0) * 1024 - (int64_t)b->payload_bytes;
		if (write(pfd[1], msg, sizeof(msg)) < 0) { /* parent sees EOF */ }
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		msg[0] = FVM_EIO;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (msg[0])
		return (int)msg[0];
	*out = msg[1];
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void finish_result(struct result *res)
{
	uint64_t s[MAX_RUNS];

	memcpy(s, res->ns, res->n * sizeof(s[0]));
	qsort(s, res->n, sizeof(s[0]), cmp_u64);
	/* Median: the middle run, or the mean of the two middle ones. */
	res->median_ms = res->n % 2 ? (double)s[res->n / 2] / 1e6
		: ((double)s[res->n / 2 - 1] + (double)s[res->n / 2]) / 2e6;
	res->min_ms = (double)s[0] / 1e6;
	res->max_ms = (double)s[res->n - 1] / 1e6;
	res->done = 1;
}


/* N interleaved rounds of every enabled configuration in one cache state. */
static int run_state(struct bench *b, int cold, struct result *res)
{
	unsigned i;
	int c, ret;

	for (i = 0; i < b->runs; i++) {
		for (c = 0; c < N_CFG; c++) {
			uint64_t ns = 0;

			/* timed by the CFG_LAZY_PF run */
			if (!b->cfg_on[c] || c == CFG_LAZY_PF_WAIT)
				continue;
			if (util_interrupted())
				return cli_exit_code(FVM_ECANCELED);
			if (cold)
				drop_cache(b);
			else if ((ret = warm_cache(b)))
				return cli_fail_sys(b->path, -ret);
			if (c == CFG_REF) {
				if ((ret = run_reference(b, &ns)))
					return cli_fail_sys(b->path, -ret);
			} else {
				uint64_t wait_ns = 0;

				res[c].st = (fvm_load_stats)FVM_LOAD_STATS_INIT;
				ret = run_load(b, c, &ns, &wait_ns, &res[c].st);
				/* A forced backend this system lacks: report, go on. */
				if (ret == FVM_EUNSUPPORTED && c != CFG_REF) {
					cli_fail(cfgs[c].name, ret);
					b->cfg_on[c] = 0;
					if (c == CFG_LAZY_PF)
						b->cfg_on[CFG_LAZY_PF_WAIT] = 0;
					continue;
				}
				if (ret)
					return cli_fail(b->path, ret);
				if (c == CFG_LAZY_PF) {
					res[CFG_LAZY_PF_WAIT].st = res[c].st;
					res[CFG_LAZY_PF_WAIT].ns[res[CFG_LAZY_PF_WAIT].n++] = wait_ns;
				}
			}
			res[c].ns[res[c].n++] = ns;
		}
	}
	for (c = 0; c < N_CFG; c++) {
		if (!b->cfg_on[c])
			continue;
		finish_result(&res[c]);
		res[c].ratio = res[c].median_ms / res[CFG_REF].median_ms;
	}
	return 0;
}

static void backend_text(char *buf, size_t len, const fvm_load_stats *st)
{
	snprintf(buf, len, "%s%s%s%s%s", st->backend_name ? st->backend_name : "?",
		 st->direct ? " O_DIRECT" : "",
		 st->fallback_reason ? " (fallback: " : "",
		 st->fallback_reason ? st->fallback_reason : "",
		 st->fallback_reason ? ")" : "");
}

static double mbps(uint64_t bytes, double ms)
{
	return ms > 0 ? (double)bytes / (ms / 1e3) / 1e6 : 0;
}

static void print_table(const struct bench *b, struct result res[2][N_CFG])
{
	char be[256];
	int s, c;

	printf("%-5s %-13s %10s %10s %10s %7s %9s  %s\n", "cache", "config", "median ms",
	       "payload", "file", "ratio", "requests", "backend");
	printf("%-5s %-13s %10s %10s %10s %7s %9s\n", "", "", "", "MB/s", "MB/s", "", "");
	for (s = 0; s < 2; s++) {
		for (c = 0; c < N_CFG; c++) {
			const struct result *r = &res[s][c];

			if (!r->done)
				continue;
			if (c == CFG_REF)
				snprintf(be, sizeof(be), "read()");
			else
				backend_text(be, sizeof(be), &r->st);
			printf("%-5s %-13s %10.1f %10.1f %10.1f %6.3fx %9llu  %s\n",
			       s ? "cold" : "warm", cfgs[c].name, r->median_ms,
			       mbps(b->payload_bytes, r->median_ms),
			       mbps(b->file_size, r->median_ms), r->ratio,
			       c == CFG_REF ? (unsigned long long)((b->file_size + REF_READ - 1) / REF_READ)
					    : (unsigned long long)r->st.requests, be);
		}
	}
}

static void print_json(const struct bench *b, struct result res[2][N_CFG],
		       const int64_t *mem, const int *mem_ok, int primary)
{
	int s, c, first = 1;

	printf("{\n  \"schema\": \"fvmsnap-bench/1\",\n  \"file\": ");
	json_str(stdout, b->path);
	printf(",\n  \"file_size\": %llu,\n  \"payload_bytes\": %llu,\n  \"stored_bytes\": %llu,\n"
	       "  \"codec\": ",
	       (unsigned long long)b->file_size, (unsigned long long)b->payload_bytes,
	       (unsigned long long)b->stored_bytes);
	json_str(stdout, fvm_codec_name((int)b->codec) ? fvm_codec_name((int)b->codec) : "?");
	printf(",\n  \"runs\": %u,\n", b->runs);
	printf("  \"tuning\": {\"queue_depth\": %u, \"chunk_bytes\": %llu, \"willneed_window\": %u, "
	       "\"threads\": %u},\n",
	       b->tu.queue_depth, (unsigned long long)b->tu.chunk_bytes, b->tu.willneed_window,
	       b->tu.threads);
	printf("  \"results\": [");
	for (s = 0; s < 2; s++) {
		for (c = 0; c < N_CFG; c++) {
			const struct result *r = &res[s][c];

			if (!r->done)
				continue;
			printf("%s\n    {\"cache\": \"%s\", \"config\": \"%s\", \"median_ms\": %.3f, "
			       "\"min_ms\": %.3f, \"max_ms\": %.3f, \"payload_mb_s\": %.1f, "
			       "\"file_mb_s\": %.1f, \"ratio\": %.4f, \"requests\": %llu, \"backend\": ",
			       first ? "" : ",", s ? "cold" : "warm", cfgs[c].key, r->median_ms,
			       r->min_ms, r->max_ms, mbps(b->payload_bytes, r->median_ms),
			       mbps(b->file_size, r->median_ms), r->ratio,
			       c == CFG_REF ? (unsigned long long)((b->file_size + REF_READ - 1) / REF_READ)
					    : (unsigned long long)r->st.requests);
			json_str(stdout, c == CFG_REF ? "read" : r->st.backend_name ? r->st.backend_name : "?");
			printf(", \"fallback_reason\": ");
			if (c != CFG_REF && r->st.fallback_reason)
				json_str(stdout, r->st.fallback_reason);
			else
				printf("null");
			printf(", \"direct\": %s}", c != CFG_REF && r->st.direct ? "true" : "false");
			first = 0;
		}
	}
	printf("\n  ],\n  \"memory\": [");
	first = 1;
	for (c = CFG_URING; c < N_CFG; c++) {
		if (!mem_ok[c])
			continue;
		printf("%s\n    {\"config\": \"%s\", \"bytes_beyond_destination\": %lld}",
		       first ? "" : ",", cfgs[c].key, (long long)mem[c]);
		first = 0;
	}
	printf("%s],\n  \"verdict\": {\"config\": \"%s\"", first ? "" : "\n  ", cfgs[primary].key);
	if (res[CACHE_WARM][primary].done)
		printf(", \"warm_ratio\": %.4f, \"warm_target\": %.2f, \"warm_pass\": %s",
		       res[CACHE_WARM][primary].ratio, WARM_TARGET,
		       res[CACHE_WARM][primary].ratio <= WARM_TARGET ? "true" : "false");
	if (res[CACHE_COLD][primary].done)
		printf(", \"cold_ratio\": %.4f, \"cold_target\": %.2f, \"cold_pass\": %s",
		       res[CACHE_COLD][primary].ratio, COLD_TARGET,
		       res[CACHE_COLD][primary].ratio <= COLD_TARGET ? "true" : "false");
	if (mem_ok[primary])
		printf(", \"memory_bytes\": %lld, \"memory_target\": %llu, \"memory_pass\": %s",
		       (long long)mem[primary], (unsigned long long)(MEM_TARGET + b->index_bytes),
		       mem[primary] <= (int64_t)(MEM_TARGET + b->index_bytes) ? "true" : "false");
	printf("}\n}\n");
}

static void print_verdict(const struct bench *b, struct result res[2][N_CFG],
			  const int64_t *mem, const int *mem_ok, int primary)
{
	const struct result *w = &res[CACHE_WARM][primary], *c = &res[CACHE_COLD][primary];

	if (b->thp) {
		/* the reference fills dense memory; a load touches every huge
		 * page a run lands in, so the targets do not compare here */
		printf("verdict: none with --thp (the targets compare against a read into "
		       "dense memory; run without --thp)\n");
		return;
	}
	printf("verdict (%s):", cfgs[primary].name);
	if (w->done)
		printf(" warm %.3fx (target <= %.2fx) %s;", w->ratio, WARM_TARGET,
		       w->ratio <= WARM_TARGET ? "PASS" : "FAIL");
	if (c->done)
		printf(" cold %.3fx (target <= %.2fx) %s;", c->ratio, COLD_TARGET,
		       c->ratio <= COLD_TARGET ? "PASS" : "FAIL");
	if (mem_ok[primary])
		printf(" memory %.2f MiB (target <= 16 MiB + index %.2f MiB) %s",
		       (double)mem[primary] / 1048576.0, (double)b->index_bytes / 1048576.0,
		       mem[primary] <= (int64_t)(MEM_TARGET + b->index_bytes) ? "PASS" : "FAIL");
	printf("\n");
}

/* Facts of the file: sizes and an estimate of the index the reader holds. */
static int describe(struct bench *b)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_reader *r;
	int ret;

	if ((ret = fvm_reader_open(&r, b->path)))
		return cli_fail(b->path, ret);
	if ((ret = fvm_reader_info(r, &fi))) {
		fvm_reader_free(r);
		return cli_fail(b->path, ret);
	}
	/* the key checked once here, so that a wrong one fails before any timing */
	if ((ret = cli_key_reader(r, b->path, b->key))) {
		fvm_reader_free(r);
		return ret;
	}
	b->authenticated = fi.authenticated;
	b->file_size = fi.file_size;
	b->payload_bytes = fi.payload_bytes;
	b->codec = fi.codec;
	b->stored_bytes = fi.codec != FVM_CODEC_NONE ? fi.stored_bytes : fi.payload_bytes;
	/* FORMAT.md 5: 24 + 8 per record offset + 40 per extent. */
	b->index_bytes = 24 + 8ull * (fi.block_count + fi.meta_count + fi.devstate_count) +
			 40ull * (fi.data_runs + fi.zero_runs);
	fvm_reader_free(r);
	return 0;
}

/*
 * A compressed file is only ever copied (the mmap and lazy loads refuse its
 * runs): leave those configurations out, saying so once, so that one bench
 * command covers plain and compressed files alike.
 */
static void skip_mapped(struct bench *b, int json)
{
	static const int mapped[] = { CFG_MMAP, CFG_MMAP_WRITE, CFG_LAZY, CFG_LAZY_WRITE,
				      CFG_LAZY_PF, CFG_LAZY_PF_WAIT };
	int skipped = 0;
	size_t i;

	for (i = 0; i < sizeof(mapped) / sizeof(mapped[0]); i++) {
		skipped |= b->cfg_on[mapped[i]];
		b->cfg_on[mapped[i]] = 0;
	}
	if (skipped && !json)
		printf("bench: %s: compressed (%s): mmap and lazy loads skipped, they map "
		       "plain runs only\n", b->path,
		       fvm_codec_name((int)b->codec) ? fvm_codec_name((int)b->codec) : "?");
}

/*
 * One load of configuration cfg, as the timed ones do it, to see whether
 * the library takes it: 0 or its FVM_E code. fill: a lazy load, whose
 * prefetch then installs (and checks) every page, so that a chunk that
 * does not verify fails here instead of leaving a timed run that writes
 * every page waiting on it for ever.
 */
static int try_load(struct bench *b, int cfg, int fill)
{
	fvm_prefetch *pf;
	fvm_load_options lo;
	fvm_load_tuning tu;
	struct dest d;
	fvm_reader *r;
	int ret;

	cfg_options(b, cfg, &lo, &tu);
	lo.progress = NULL;
	if ((ret = fvm_reader_open(&r, b->path)))
		return ret;
	ret = fvm_reader_set_key(r, b->key->key, sizeof(b->key->key));
	if (!ret && !(ret = dest_map(r, &d, 0, 0))) {
		ret = fvm_load(r, d.maps, d.n, &lo, NULL);
		if (!ret && fill && !(ret = fvm_prefetch_start(r, 0, &pf))) {
			ret = fvm_prefetch_wait(pf);
			fvm_prefetch_free(pf);
		}
		dest_free(&d);
	}
	fvm_reader_free(r);
	return ret;
}

/*
 * An authenticated file is never mapped: mmap loads are refused, lazy ones
 * go through userfaultfd (each page checked as it is installed), which a
 * system may refuse. Configurations the library refuses are left out with
 * a note unless named (--backend; --prefetch names the lazy ones), then
 * refused with the library's own reason, which one such load gives before
 * it reads anything; a chunk that does not verify fails the bench. 0 or an
 * exit code.
 */
static int authenticated_mapped(struct bench *b, int backend_given, int prefetch, int json)
{
	static const int eager[] = { CFG_MMAP, CFG_MMAP_WRITE, -1 };
	static const int lazy[] = { CFG_LAZY, CFG_LAZY_WRITE, CFG_LAZY_PF, CFG_LAZY_PF_WAIT, -1 };
	const int *kinds[2] = { eager, lazy };

	for (int k = 0; k < 2; k++) {
		int named = k ? backend_given || prefetch : backend_given;
		int cfg = -1, ret;

		for (const int *c = kinds[k]; *c >= 0; c++)
			if (b->cfg_on[*c] && cfg < 0)
				cfg = *c;
		if (cfg < 0 || !(ret = try_load(b, cfg, k)))
			continue;
		if (named || ret == FVM_EAUTH || ret == FVM_EIO)
			return cli_fail(b->path, ret);
		for (const int *c = kinds[k]; *c >= 0; c++)
			b->cfg_on[*c] = 0;
		if (!json)
			printf("bench: %s: authenticated: %s loads skipped (%s)\n", b->path,
			       k ? "lazy" : "mmap", fvm_error_detail());
	}
	return 0;
}

/* --backend: a comma-separated list of backend names; the last one wins. */
static int parse_backends(struct bench *b, const char *arg)
{
	static const struct { const char *name; int cfg[3]; } names[] = {
		{ "uring", { CFG_URING } }, { "io_uring", { CFG_URING } },
		{ "inline", { CFG_INLINE } }, { "pread", { CFG_PREAD } },
		{ "mmap", { CFG_MMAP, CFG_MMAP_WRITE } },
		{ "lazy", { CFG_LAZY, CFG_LAZY_WRITE } }, { "lazy-map", { CFG_LAZY } },
		{ "both", { CFG_URING, CFG_PREAD } },
	};
	const char *p = arg;
	int c;

	for (c = CFG_URING; c < CFG_LAZY_PF; c++)
		b->cfg_on[c] = 0;
	while (*p) {
		size_t len = strcspn(p, ","), i, k;

		if (len == 3 && !strncmp(p, "all", 3)) {
			for (c = CFG_URING; c < CFG_LAZY_PF; c++)
				b->cfg_on[c] = 1;
		} else {
			for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
				if (strlen(names[i].name) == len && !strncmp(p, names[i].name, len))
					break;
			if (i == sizeof(names) / sizeof(names[0]))
				return cli_usage_error("--backend: expected uring, inline, pread, mmap, "
						       "lazy, lazy-map, both or all (or a list of "
						       "them with commas), not '%.*s'", (int)len, p);
			for (k = 0; k < 3 && names[i].cfg[k]; k++)
				b->cfg_on[names[i].cfg[k]] = 1;
		}
		p += len;
		if (*p == ',' && *++p == '\0')
			return cli_usage_error("--backend: '%s' ends with a comma", arg);
	}
	if (p == arg)
		return cli_usage_error("--backend: empty");
	return 0;
}

enum { OPT_WARM = 256, OPT_COLD, OPT_BOTH, OPT_BACKEND, OPT_QD, OPT_CHUNK, OPT_WILLNEED, OPT_THP,
       OPT_DIRECT, OPT_VERIFY, OPT_NO_MEMORY, OPT_PREFETCH, OPT_THREADS, OPT_KEY };

int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "runs", required_argument, NULL, 'n' },
		{ "warm", no_argument, NULL, OPT_WARM },
		{ "cold", no_argument, NULL, OPT_COLD },
		{ "both", no_argument, NULL, OPT_BOTH },
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "qd", required_argument, NULL, OPT_QD },
		{ "chunk", required_argument, NULL, OPT_CHUNK },
		{ "willneed", required_argument, NULL, OPT_WILLNEED },
		{ "thp", no_argument, NULL, OPT_THP },
		{ "direct", no_argument, NULL, OPT_DIRECT },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "no-memory", no_argument, NULL, OPT_NO_MEMORY },
		{ "prefetch", no_argument, NULL, OPT_PREFETCH },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static struct result res[2][N_CFG];
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning tu = FVM_LOAD_TUNING_INIT;
	struct bench b;
	int64_t mem[N_CFG] = { 0 };
	int mem_ok[N_CFG] = { 0 };
	int c, ret = 0, warm = 1, cold = 1, json = 0, memory = 1, prefetch = 0, primary;
	int backend_given = 0;
	uint64_t v;

	memset(&b, 0, sizeof(b));
	b.runs = 5;
	for (c = 0; c < CFG_LAZY_PF; c++)
		b.cfg_on[c] = 1;
	while ((c = getopt_long(argc, argv, "n:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_parse_uint(optarg, MAX_RUNS, &v) || !v)
				return cli_usage_error("-n: expected 1..%d, not '%s'", MAX_RUNS, optarg);
			b.runs = (unsigned)v;
			break;
		case OPT_WARM: warm = 1; cold = 0; break;
		case OPT_COLD: warm = 0; cold = 1; break;
		case OPT_BOTH: warm = cold = 1; break;
		case OPT_BACKEND:
			if ((ret = parse_backends(&b, optarg)))
				return ret;
			backend_given = 1;
			break;
		case OPT_QD:
			if (cli_parse_uint(optarg, 65536, &v) || !v)
				return cli_usage_error("--qd: expected 1..65536, not '%s'", optarg);
			tu.queue_depth = (unsigned)v;
			break;
		case OPT_CHUNK:
			if (cli_parse_size(optarg, &tu.chunk_bytes) || !tu.chunk_bytes)
				return cli_usage_error("--chunk: bad size '%s'", optarg);
			break;
		case OPT_WILLNEED:
			if (cli_parse_uint(optarg, 64, &v))
				return cli_usage_error("--willneed: expected 0..64, not '%s'", optarg);
			tu.willneed_window = (unsigned)v;
			break;
		case OPT_THP: b.thp = 1; break;
		case OPT_DIRECT: lo.flags |= FVM_LOAD_DIRECT; break;
		case OPT_VERIFY: lo.flags |= FVM_LOAD_VERIFY; break;
		case OPT_NO_MEMORY: memory = 0; break;
		case OPT_PREFETCH: prefetch = 1; break;
		case OPT_THREADS:
			if (cli_parse_uint(optarg, 1024, &v) || !v)
				return cli_usage_error("--threads: expected 1..1024, not '%s'", optarg);
			tu.threads = (unsigned)v;
			break;
		case 'j': json = 1; break;
		case OPT_KEY:
			if ((ret = cli_key_load(optarg, &b.key)))
				return ret;
			break;
		case 'h': usage(stdout); return EXIT_OK;
		default: return cli_try_help();
		}
	}
	if ((c = cli_one_operand(argc, argv, "input file", &b.path)))
		return c;
	/*
	 * A benchmark times loads of a file from its storage, cold and warm,
	 * against read() of the same file: a pipe has neither, and a copy in
	 * $TMPDIR (often RAM) would time the copy's storage instead.
	 */
	if (!strcmp(b.path, "-"))
		return cli_usage_error("bench needs a file, not standard input: it times loads "
				       "from the file's storage, with a cold and a warm page cache");
	/* FVM_BACKEND picks nothing here: every configuration names its backend. */
	if ((c = cli_load_env(&lo, &tu)))
		return c;
	lo.tuning = NULL; /* set per configuration (cfg_options) */
	lo.zero_policy = FVM_ZERO_LEAVE;
	b.cfg_on[CFG_LAZY_PF] = b.cfg_on[CFG_LAZY_PF_WAIT] = prefetch;
	if (lo.flags & FVM_LOAD_VERIFY) { /* verifying reads every page: nothing is lazy */
		if (prefetch)
			return cli_usage_error("--prefetch: a lazy load, which --verify excludes");
		b.cfg_on[CFG_LAZY] = b.cfg_on[CFG_LAZY_WRITE] = 0;
	}
	b.lo = lo;
	b.tu = tu;
	if ((ret = describe(&b)))
		return ret;
	if (b.authenticated &&
	    (ret = authenticated_mapped(&b, backend_given, prefetch, json)))
		return ret;
	if (b.codec != FVM_CODEC_NONE) {
		skip_mapped(&b, json);
		if (!b.cfg_on[CFG_URING] && !b.cfg_on[CFG_INLINE] && !b.cfg_on[CFG_PREAD])
			return cli_usage_error("%s is compressed (%s): the mmap and lazy loads map "
					       "plain runs only; use --backend uring, inline or pread",
					       b.path, fvm_codec_name((int)b.codec) ?
					       fvm_codec_name((int)b.codec) : "?");
	}
	b.fd = open(b.path, O_RDONLY | O_CLOEXEC);
	if (b.fd < 0)
		return cli_fail_sys(b.path, errno);

	if (!json) {
		printf("bench: %s: %llu bytes, %llu payload bytes, %u run%s per configuration",
		       b.path, (unsigned long long)b.file_size,
		       (unsigned long long)b.payload_bytes, b.runs, b.runs == 1 ? "" : "s");
		if (tu.queue_depth)
			printf(", qd %u", tu.queue_depth);
		if (tu.chunk_bytes)
			printf(", chunk %llu", (unsigned long long)tu.chunk_bytes);
		if (tu.willneed_window)
			printf(", willneed %u", tu.willneed_window);
		printf("\n");
	}
	fflush(stdout);
	if (warm && (ret = run_state(&b, 0, res[CACHE_WARM])))
		goto out;
	if (cold && (ret = run_state(&b, 1, res[CACHE_COLD])))
		goto out;
	primary = b.cfg_on[CFG_URING] ? CFG_URING : b.cfg_on[CFG_INLINE] ? CFG_INLINE
		: b.cfg_on[CFG_PREAD] ? CFG_PREAD : b.cfg_on[CFG_MMAP] ? CFG_MMAP : CFG_LAZY;
	for (c = CFG_URING; memory && c < N_CFG; c++) {
		int err;

		/* the writes are timing only; a lazy load touches no page */
		if (!b.cfg_on[c] || cfgs[c].write || (cfgs[c].flags & FVM_LOAD_LAZY))
			continue;
		err = measure_memory(&b, c, &mem[c]);
		if (err == 0)
			mem_ok[c] = 1;
		else if (!json)
			cli_msg("memory measurement (%s): %s", cfgs[c].key,
				fvm_strerror(err));
	}
	if (json) {
		print_json(&b, res, mem, mem_ok, primary);
	} else {
		print_table(&b, res);
		for (c = CFG_URING; c < N_CFG; c++)
			if (mem_ok[c])
				printf("loader memory beyond destination (%s): %.2f MiB\n",
				       cfgs[c].key, (double)mem[c] / 1048576.0);
		print_verdict(&b, res, mem, mem_ok, primary);
	}
out:
	close(b.fd);
	return ret;
}
