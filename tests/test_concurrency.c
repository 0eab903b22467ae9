/*
 * Concurrency (issue 10), through the public API, in threads (so that the
 * ThreadSanitizer build sees every access):
 *  A. writers of different content racing for one path (fvm_writer_open_path
 *     ... finish): each round ends with exactly one complete candidate,
 *     byte for byte, that fvm_verify accepts, and no temporary file;
 *  B. readers of a file that a writer keeps replacing: a reader opened on one
 *     version keeps loading that version (io_uring, pread, mmap eager and
 *     lazy; mapped memory of the replaced inode stays valid), read_pages and
 *     devstate_pread too, and a reader opened after a replacement sees it;
 *  C. one reader handle shared by several threads calling fvm_load (each
 *     into its own memory), read_pages, devstate_pread, fvm_verify, the
 *     listing calls and fvm_prefetch_start at once, on an uncompressed and
 *     a compressed file, and the error detail of each thread is its own;
 *  D. several threads, each with readers of its own on one file;
 *  E. files other threads create while writers are opened get the mode the
 *     process's umask gives (a writer never changes it, even for a moment).
 * Not cmocka: its asserts longjmp, which a failing thread cannot do.
 * Usage: test_concurrency [SCALE] (rounds and iterations times SCALE, >= 1)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fastvm/fastvm.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 640u              /* 2.5 MiB of RAM per version */
#define DEVLEN ((1u << 20) + 300000u) /* two DEVS parts (1 MiB each at most) */

static atomic_int failures;
static char dir[4096];
static unsigned scale = 1;

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	atomic_fetch_add(&failures, 1);
}

/* 1 when rc is 0, else the failure reported with this thread's detail. */
static int check(int rc, const char *what)
{
	if (!rc)
		return 1;
	fail("%s: %s (%s)", what, fvm_strerror(rc), fvm_error_detail());
	return 0;
}

/* ---------------------------------------------------------------- content */

/* Version v's page p: zero for about a quarter of the pages (which ones
 * depends on v, so versions differ in their runs too), else random. */
static int page_zero(unsigned v, uint64_t p)
{
	return ((p * 2654435761u + v * 40503u) >> 7) % 4 == 0;
}

static void fill_ram(unsigned v, uint8_t *m)
{
	struct tu_rng r;

	for (uint64_t p = 0; p < PAGES; p++) {
		if (page_zero(v, p)) {
			memset(m + p * PAGE, 0, PAGE);
			continue;
		}
		tu_rng_seed(&r, (uint64_t)v * 1000003u + p + 1);
		tu_fill_page(&r, m + p * PAGE, PAGE);
		memcpy(m + p * PAGE, &v, sizeof(v)); /* the version, readable in a dump */
	}
}

static size_t dev_len(unsigned v)
{
	return DEVLEN + (v % 7) * 1000u;
}

static void fill_dev(unsigned v, uint8_t *d)
{
	struct tu_rng r;

	tu_rng_seed(&r, v + 7777u);
	tu_fill_random(&r, d, dev_len(v));
}

struct version {
	unsigned v;
	uint8_t *ram, *dev;
};

static int version_make(struct version *x, unsigned v)
{
	x->v = v;
	x->ram = malloc((size_t)PAGES * PAGE);
	x->dev = malloc(DEVLEN + 7000u);
	if (!x->ram || !x->dev) {
		free(x->ram);
		free(x->dev);
		return -1;
	}
	fill_ram(v, x->ram);
	fill_dev(v, x->dev);
	return 0;
}

static void version_free(struct version *x)
{
	free(x->ram);
	free(x->dev);
}

/* Write version x to path; codec 0 or a codec of the build. */
static int write_version(const char *path, const struct version *x, unsigned codec)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w = NULL;
	char val[32];
	uint32_t b;
	size_t len = dev_len(x->v);
	int rc;

	o.flags = FVM_WRITE_NO_FSYNC;
	o.segment_bytes = 512 * 1024; /* several segments: the write thread works */
	o.codec = codec;
	o.frame_bytes = 64 * 1024;
	o.threads = 2;
	snprintf(val, sizeof(val), "%u", x->v);
	rc = fvm_writer_open_path(&w, path, &o);
	if (!rc)
		rc = fvm_writer_add_meta(w, "version", val);
	if (!rc)
		rc = fvm_writer_add_block(w, "ram", (uint64_t)PAGES * PAGE, PAGE, &b);
	if (!rc)
		rc = fvm_writer_write_block(w, b, x->ram);
	if (!rc)
		rc = fvm_writer_devstate_begin(w, "dev");
	for (size_t at = 0; !rc && at < len; at += 100000) /* pieces of odd size */
		rc = fvm_writer_devstate_write(w, x->dev + at, len - at < 100000 ? len - at : 100000);
	if (!rc)
		rc = fvm_writer_devstate_end(w);
	if (!rc)
		rc = fvm_writer_add_devstate(w, "small", "tiny", 4);
	if (!rc)
		rc = fvm_writer_finish(w);
	fvm_writer_free(w);
	return rc;
}

/* The version a reader's file says it holds, 0 if none. */
static unsigned reader_version(fvm_reader *r)
{
	const char *v = fvm_reader_meta_get(r, "version");

	return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

static const char *backend_name(int b, uint32_t flags)
{
	return b == FVM_BACKEND_AUTO ? "auto" : b == FVM_BACKEND_URING ? "io_uring" : b == FVM_BACKEND_PREAD ? "pread"
	       : flags & FVM_LOAD_LAZY ? "mmap lazy" : "mmap";
}

/*
 * Load r into fresh guarded memory with backend b (and flags): returned for
 * the caller to check and free, NULL after reporting a failure.
 */
static uint8_t *load(fvm_reader *r, int b, uint32_t flags, const char *what)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = FVM_MAPPING_INIT;
	uint8_t *mem = tu_guard_alloc((size_t)PAGES * PAGE, -1);
	char msg[160];
	int rc;

	fvm_file_info info = FVM_FILE_INFO_INIT;

	if (!mem) {
		fail("%s: no memory", what);
		return NULL;
	}
	/* compressed runs cannot be mapped: the frame decoders' load instead */
	if (b == FVM_BACKEND_MMAP && fvm_reader_info(r, &info) == 0 && info.codec) {
		b = FVM_BACKEND_AUTO;
		flags &= ~(uint32_t)FVM_LOAD_LAZY;
	}
	o.backend = b;
	o.flags = flags;
	m.name = "ram";
	m.addr = mem;
	m.length = (uint64_t)PAGES * PAGE;
	m.flags = FVM_MAP_ZERO;
	rc = fvm_load(r, &m, 1, &o, NULL);
	snprintf(msg, sizeof(msg), "%s: load (%s)", what, backend_name(b, flags));
	if (!check(rc, msg)) {
		tu_guard_free(mem, (size_t)PAGES * PAGE);
		return NULL;
	}
	return mem;
}

static int same_ram(const uint8_t *got, const struct version *x, uint64_t first,
		    uint64_t count, const char *what)
{
	if (memcmp(got, x->ram + first * PAGE, count * PAGE) == 0)
		return 1;
	for (uint64_t p = 0; p < count; p++)
		if (memcmp(got + p * PAGE, x->ram + (first + p) * PAGE, PAGE)) {
			unsigned seen;

			memcpy(&seen, got + p * PAGE, sizeof(seen));
			fail("%s: page %llu is not version %u's (it starts with %u)", what,
			     (unsigned long long)(first + p), x->v, seen);
			break;
		}
	return 0;
}

/* Only name in dir (a finished writer leaves no temporary). */
static void only_file(const char *name, const char *what)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d) {
		fail("%s: opendir %s: %s", what, dir, strerror(errno));
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, name) &&
		    strncmp(e->d_name, "cand", 4) && strncmp(e->d_name, "shared", 6))
			fail("%s: left behind: %s", what, e->d_name);
	closedir(d);
}

static unsigned codec_of_build(void)
{
	return fvm_codec_available(FVM_CODEC_ZSTD) ? FVM_CODEC_ZSTD
	       : fvm_codec_available(FVM_CODEC_LZ4) ? FVM_CODEC_LZ4 : 0;
}

/* ------------------------------------------------------- A: racing writers */

#define NWRITERS 3

struct racer {
	pthread_t t;
	pthread_barrier_t *start;
	const char *path;
	const struct version *x;
	unsigned codec;
	int rounds;
};

static void *race_thread(void *arg)
{
	struct racer *a = arg;
	char msg[64];

	for (int i = 0; i < a->rounds; i++) {
		pthread_barrier_wait(a->start); /* all start together */
		snprintf(msg, sizeof(msg), "race round %d: writer of version %u", i, a->x->v);
		check(write_version(a->path, a->x, a->codec), msg);
		pthread_barrier_wait(a->start); /* all done: main checks */
		pthread_barrier_wait(a->start);
	}
	return NULL;
}

static void test_race(void)
{
	struct version x[NWRITERS];
	struct racer a[NWRITERS];
	uint8_t *cand[NWRITERS];
	size_t cand_len[NWRITERS];
	char path[4200], cpath[4200];
	pthread_barrier_t start;
	unsigned seen = 0, codec = codec_of_build();
	int rounds = 20 * (int)scale;

	snprintf(path, sizeof(path), "%s/race.fvm", dir);
	pthread_barrier_init(&start, NULL, NWRITERS + 1);
	for (int i = 0; i < NWRITERS; i++) {
		if (version_make(&x[i], 100 + (unsigned)i)) {
			fail("race: no memory");
			return;
		}
		a[i] = (struct racer){ .start = &start, .path = path, .x = &x[i],
				       .codec = i == 1 ? codec : 0, .rounds = rounds };
		snprintf(cpath, sizeof(cpath), "%s/cand%d.fvm", dir, i);
		if (!check(write_version(cpath, &x[i], a[i].codec), "race: a candidate alone"))
			return;
		cand[i] = tu_read_file(cpath, &cand_len[i]);
		unlink(cpath);
	}
	for (int i = 0; i < NWRITERS; i++)
		pthread_create(&a[i].t, NULL, race_thread, &a[i]);
	for (int r = 0; r < rounds; r++) {
		size_t len;
		uint8_t *got;
		fvm_reader *rd = NULL;
		int hit = -1;

		pthread_barrier_wait(&start);
		pthread_barrier_wait(&start);
		got = tu_read_file(path, &len);
		for (int i = 0; got && i < NWRITERS; i++)
			if (cand[i] && len == cand_len[i] && !memcmp(got, cand[i], len))
				hit = i;
		if (hit < 0)
			fail("race round %d: %s is none of the %d candidates (%zu bytes)", r, path,
			     NWRITERS, got ? len : 0);
		else
			seen |= 1u << hit;
		free(got);
		if (check(fvm_reader_open(&rd, path), "race: open the result"))
			check(fvm_verify(rd, NULL, NULL), "race: verify the result");
		fvm_reader_free(rd);
		only_file("race.fvm", "race");
		pthread_barrier_wait(&start);
	}
	for (int i = 0; i < NWRITERS; i++) {
		pthread_join(a[i].t, NULL);
		version_free(&x[i]);
		free(cand[i]);
	}
	pthread_barrier_destroy(&start);
	unlink(path);
	printf("A: %d rounds of %d writers racing for one path: one complete file each time "
	       "(winners seen: mask %#x)\n", rounds, NWRITERS, seen);
}

/* -------------------------------------------- B: readers during replacement */

struct replace {
	const char *path;
	unsigned versions;
	atomic_uint published;  /* last version renamed over path */
	atomic_int done;
};

static void *replacer(void *arg)
{
	struct replace *s = arg;
	struct version x;

	/* uncompressed: the mmap backend maps no compressed runs */
	for (unsigned v = 2; v <= s->versions && !atomic_load(&failures); v++) {
		if (version_make(&x, v)) {
			fail("replace: no memory");
			break;
		}
		if (check(write_version(s->path, &x, 0), "replace: write"))
			atomic_store(&s->published, v);
		version_free(&x);
	}
	atomic_store(&s->done, 1);
	return NULL;
}

struct watcher {
	pthread_t t;
	struct replace *s;
	int backend;
	uint32_t flags;
	unsigned loads, outlived;
};

/* Wait until the file was replaced after version v was opened, or the end. */
static void wait_replaced(struct replace *s, unsigned v)
{
	while (atomic_load(&s->published) <= v && !atomic_load(&s->done))
		usleep(1000);
}

static void *watch_thread(void *arg)
{
	struct watcher *w = arg;
	struct replace *s = w->s;
	struct version x = { 0 };
	uint8_t *dev = malloc(DEVLEN + 7000u), *pages = malloc(64 * PAGE);
	char what[96];

	while (!atomic_load(&s->done) && dev && pages) {
		unsigned before = atomic_load(&s->published), v;
		fvm_reader *r = NULL;
		uint8_t *m1, *m2;
		uint32_t di;
		size_t got;

		if (!check(fvm_reader_open(&r, s->path), "replace: open"))
			break;
		v = reader_version(r);
		snprintf(what, sizeof(what), "reader of version %u (%s)", v,
			 backend_name(w->backend, w->flags));
		if (v < before)
			fail("%s opened after version %u was renamed over the path", what, before);
		if (x.v != v) {
			version_free(&x);
			if (version_make(&x, v)) {
				fail("replace: no memory");
				fvm_reader_free(r);
				break;
			}
		}
		m1 = load(r, w->backend, w->flags, what);
		if (m1 && same_ram(m1, &x, 0, PAGES, what))
			w->loads++;
		/* the path now names another file: this reader keeps its own */
		wait_replaced(s, v);
		m2 = load(r, w->backend, w->flags, what);
		if (m2 && same_ram(m2, &x, 0, PAGES, what))
			w->loads++;
		if (m1 && same_ram(m1, &x, 0, PAGES, what)) /* mapped: still the old inode */
			w->outlived++;
		if (check(fvm_reader_read_pages(r, 0, 100, 64, pages), "replace: read_pages"))
			same_ram(pages, &x, 100, 64, what);
		if (check(fvm_reader_find_devstate(r, "dev", &di), "replace: find dev") &&
		    check(fvm_reader_devstate_pread(r, di, dev, dev_len(v), 0, &got),
			  "replace: devstate_pread") &&
		    (got != dev_len(v) || memcmp(dev, x.dev, got)))
			fail("%s: device state is not version %u's", what, v);
		if (m1)
			tu_guard_free(m1, (size_t)PAGES * PAGE);
		if (m2)
			tu_guard_free(m2, (size_t)PAGES * PAGE);
		fvm_reader_free(r);
	}
	version_free(&x);
	free(dev);
	free(pages);
	return NULL;
}

static void test_replace(void)
{
	static const struct { int backend; uint32_t flags; } kinds[] = {
		{ FVM_BACKEND_URING, 0 }, { FVM_BACKEND_PREAD, 0 },
		{ FVM_BACKEND_MMAP, 0 }, { FVM_BACKEND_MMAP, FVM_LOAD_LAZY },
	};
	enum { NW = sizeof(kinds) / sizeof(kinds[0]) };
	struct watcher w[NW];
	struct replace s = { .versions = 1 + 30 * scale };
	struct version x;
	char path[4200];
	pthread_t t;
	unsigned loads = 0, outlived = 0;

	snprintf(path, sizeof(path), "%s/replaced.fvm", dir);
	s.path = path;
	if (version_make(&x, 1) || !check(write_version(path, &x, 0), "replace: version 1"))
		return;
	version_free(&x);
	atomic_store(&s.published, 1);
	for (int i = 0; i < NW; i++) {
		w[i] = (struct watcher){ .s = &s, .backend = kinds[i].backend,
					 .flags = kinds[i].flags };
		pthread_create(&w[i].t, NULL, watch_thread, &w[i]);
	}
	pthread_create(&t, NULL, replacer, &s);
	pthread_join(t, NULL);
	for (int i = 0; i < NW; i++) {
		pthread_join(w[i].t, NULL);
		loads += w[i].loads;
		outlived += w[i].outlived;
		if (!w[i].loads)
			fail("replace: the %s reader loaded nothing",
			     backend_name(w[i].backend, w[i].flags));
	}
	only_file("replaced.fvm", "replace");
	unlink(path);
	printf("B: %u versions renamed over one path; %u loads by readers opened on an older "
	       "version gave that version (io_uring, pread, mmap, mmap lazy), %u loaded "
	       "copies checked again after the replacement\n", s.versions, loads, outlived);
}

/* ------------------------------------------------- C: one reader, threads */

struct sharer {
	pthread_t t;
	fvm_reader *r;
	const struct version *x;
	int id, iters;
	pthread_barrier_t *start;
	unsigned ops[6];
};

/* A failing call in this thread leaves this thread's detail, whatever the
 * others are doing. */
static void own_errors(struct sharer *a, int i)
{
	char name[64], want[64];
	uint32_t id;
	uint8_t page[PAGE];
	fvm_file_info info = FVM_FILE_INFO_INIT;
	int rc;

	snprintf(name, sizeof(name), "absent-%d-%d", a->id, i);
	rc = fvm_reader_find_block(a->r, name, &id);
	if (rc != FVM_ENOTFOUND || !strstr(fvm_error_detail(), name))
		fail("thread %d: find_block %s: %d, detail \"%s\"", a->id, name, rc,
		     fvm_error_detail());
	rc = fvm_reader_read_pages(a->r, 100u + (uint32_t)a->id, 0, 1, page);
	snprintf(want, sizeof(want), "no block %u ", 100u + (unsigned)a->id);
	if (rc != FVM_ENOTFOUND || !strstr(fvm_error_detail(), want))
		fail("thread %d: read_pages of block %u: %d, detail \"%s\"", a->id,
		     100u + (unsigned)a->id, rc, fvm_error_detail());
	if (check(fvm_reader_info(a->r, &info), "shared: info") && fvm_error_detail()[0])
		fail("thread %d: a successful call left the detail \"%s\"", a->id,
		     fvm_error_detail());
}

static void listings(struct sharer *a)
{
	fvm_file_info info = FVM_FILE_INFO_INIT;
	fvm_block_info b = FVM_BLOCK_INFO_INIT;
	fvm_devstate_info d = FVM_DEVSTATE_INFO_INIT;
	uint64_t n = fvm_reader_run_count(a->r), pages = 0;
	uint32_t id;

	if (!check(fvm_reader_info(a->r, &info), "shared: info") ||
	    !check(fvm_reader_block(a->r, 0, &b), "shared: block") ||
	    !check(fvm_reader_find_block(a->r, "ram", &id), "shared: find_block") ||
	    !check(fvm_reader_devstate(a->r, 0, &d), "shared: devstate"))
		return;
	for (uint64_t i = 0; i < n; i++) {
		fvm_run_info run = FVM_RUN_INFO_INIT;

		if (!check(fvm_reader_run(a->r, i, &run), "shared: run"))
			return;
		pages += run.page_count;
	}
	if (pages != PAGES || b.length != (uint64_t)PAGES * PAGE || d.length != dev_len(a->x->v) ||
	    reader_version(a->r) != a->x->v)
		fail("thread %d: listings disagree (%llu pages in runs)", a->id,
		     (unsigned long long)pages);
	if (!info.codec) { /* it checks uncompressed payload's places in the file */
		const char *msg = tu_check_consistent(a->r);

		if (msg)
			fail("thread %d: %s", a->id, msg);
	}
}

static void *share_thread(void *arg)
{
	struct sharer *a = arg;
	struct tu_rng rng;
	uint8_t *buf = malloc(DEVLEN + 7000u);
	uint32_t di;

	tu_rng_seed(&rng, 99u + (unsigned)a->id);
	if (!buf || !check(fvm_reader_find_devstate(a->r, "dev", &di), "shared: find dev"))
		goto out;
	pthread_barrier_wait(a->start);
	for (int i = 0; i < a->iters && !atomic_load(&failures); i++) {
		int op = (a->id + i) % 6;
		static const int backends[] = { FVM_BACKEND_URING, FVM_BACKEND_PREAD,
						FVM_BACKEND_MMAP };

		a->ops[op]++;
		switch (op) {
		case 0: { /* a whole load into this thread's memory */
			int b = backends[(i / 5) % 3];
			uint8_t *m = load(a->r, b, b == FVM_BACKEND_MMAP && i % 2 ? FVM_LOAD_LAZY
					  : b == FVM_BACKEND_MMAP ? 0 : FVM_LOAD_VERIFY, "shared");

			if (m) {
				same_ram(m, a->x, 0, PAGES, "shared load");
				tu_guard_free(m, (size_t)PAGES * PAGE);
			}
			break;
		}
		case 1: /* pages, here and there: the frame cache is contended */
			for (int k = 0; k < 8; k++) {
				uint64_t first = tu_below(&rng, PAGES), n = 1 + tu_below(&rng, 48);

				if (n > PAGES - first)
					n = PAGES - first;
				if (!check(fvm_reader_read_pages(a->r, 0, first, n, buf),
					   "shared: read_pages") ||
				    !same_ram(buf, a->x, first, n, "shared read_pages"))
					break;
			}
			break;
		case 2: /* device state in small pieces: the part cache is contended */
			for (int k = 0; k < 16; k++) {
				size_t len = dev_len(a->x->v), got;
				uint64_t off = tu_below(&rng, len), n = 1 + tu_below(&rng, 200000);

				if (!check(fvm_reader_devstate_pread(a->r, di, buf, n, off, &got),
					   "shared: devstate_pread"))
					break;
				if (got != (n < len - off ? n : len - off) ||
				    memcmp(buf, a->x->dev + off, got)) {
					fail("thread %d: devstate_pread %llu+%llu: wrong bytes", a->id,
					     (unsigned long long)off, (unsigned long long)n);
					break;
				}
			}
			break;
		case 3:
			check(fvm_verify(a->r, NULL, NULL), "shared: verify");
			break;
		case 4:
			listings(a);
			break;
		case 5: { /* a prefetch thread on the same reader */
			fvm_file_info info = FVM_FILE_INFO_INIT;
			fvm_prefetch *pf = NULL;
			int rc = fvm_prefetch_start(a->r, 0, &pf);

			if (check(fvm_reader_info(a->r, &info), "shared: info") && info.codec) {
				if (rc != FVM_EUNSUPPORTED) /* compressed runs are never mapped */
					fail("thread %d: prefetch of a compressed file: %d", a->id, rc);
			} else if (check(rc, "shared: prefetch_start")) {
				check(fvm_prefetch_wait(pf), "shared: prefetch_wait");
			}
			fvm_prefetch_free(pf);
			break;
		}
		}
		own_errors(a, i);
	}
out:
	free(buf);
	return NULL;
}

static void test_shared(unsigned codec)
{
	enum { NT = 4 };
	struct sharer a[NT];
	struct version x;
	fvm_reader *r = NULL;
	pthread_barrier_t start;
	char path[4200];
	unsigned ops[6] = { 0 };

	snprintf(path, sizeof(path), "%s/shared-%u.fvm", dir, codec);
	if (version_make(&x, 500 + codec))
		return;
	if (!check(write_version(path, &x, codec), "shared: write") ||
	    !check(fvm_reader_open(&r, path), "shared: open")) {
		version_free(&x);
		return;
	}
	pthread_barrier_init(&start, NULL, NT);
	for (int i = 0; i < NT; i++) {
		a[i] = (struct sharer){ .r = r, .x = &x, .id = i, .iters = 40 * (int)scale,
					.start = &start };
		pthread_create(&a[i].t, NULL, share_thread, &a[i]);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(a[i].t, NULL);
		for (int k = 0; k < 6; k++)
			ops[k] += a[i].ops[k];
	}
	pthread_barrier_destroy(&start);
	fvm_reader_free(r);
	version_free(&x);
	unlink(path);
	printf("C: one reader of a %s file shared by %d threads: %u loads, %u read_pages "
	       "rounds, %u devstate_pread rounds, %u verifies, %u listings, %u prefetches\n",
	       codec ? fvm_codec_name((int)codec) : "uncompressed", NT, ops[0], ops[1], ops[2],
	       ops[3], ops[4], ops[5]);
}

/* ------------------------------------------------------- D: many readers */

struct own_reader {
	pthread_t t;
	const char *path;
	const struct version *x;
	int id;
};

static void *own_reader_thread(void *arg)
{
	struct own_reader *a = arg;

	for (int i = 0; i < 6 * (int)scale && !atomic_load(&failures); i++) {
		static const int backends[] = { FVM_BACKEND_URING, FVM_BACKEND_PREAD,
						FVM_BACKEND_MMAP };
		fvm_reader *r = NULL;
		uint8_t *m, page[4 * PAGE];

		if (!check(fvm_reader_open(&r, a->path), "readers: open"))
			break;
		m = load(r, backends[(a->id + i) % 3], 0, "readers");
		if (m) {
			same_ram(m, a->x, 0, PAGES, "readers load");
			tu_guard_free(m, (size_t)PAGES * PAGE);
		}
		if (check(fvm_reader_read_pages(r, 0, (uint64_t)i * 7, 4, page), "readers: read_pages"))
			same_ram(page, a->x, (uint64_t)i * 7, 4, "readers read_pages");
		check(fvm_verify(r, NULL, NULL), "readers: verify");
		fvm_reader_free(r);
	}
	return NULL;
}

static void test_readers(void)
{
	enum { NT = 4 };
	struct own_reader a[NT];
	struct version x;
	char path[4200];
	unsigned codec = codec_of_build();

	snprintf(path, sizeof(path), "%s/shared-readers.fvm", dir);
	if (version_make(&x, 900) || !check(write_version(path, &x, codec), "readers: write"))
		return;
	for (int i = 0; i < NT; i++) {
		a[i] = (struct own_reader){ .path = path, .x = &x, .id = i };
		pthread_create(&a[i].t, NULL, own_reader_thread, &a[i]);
	}
	for (int i = 0; i < NT; i++)
		pthread_join(a[i].t, NULL);
	version_free(&x);
	unlink(path);
	printf("D: %d threads, each with readers of its own on one file: %d opens, loads, "
	       "read_pages and verifies each\n", NT, 6 * (int)scale);
}

/* -------------------------------------------- E: the process's umask */

/*
 * The umask is the process's: a writer that changed it, even for a moment,
 * would give files other threads create meanwhile the wrong mode (QEMU's
 * threads create files while a snapshot is written).
 */
struct umask_opener {
	atomic_int stop;
	unsigned opens;
};

static void *umask_writer_thread(void *arg)
{
	struct umask_opener *u = arg;
	char path[4200];

	snprintf(path, sizeof(path), "%s/umask.fvm", dir);
	while (!atomic_load(&u->stop)) {
		fvm_writer *w = NULL;

		if (!check(fvm_writer_open_path(&w, path, NULL), "umask: writer"))
			break;
		fvm_writer_free(w); /* unfinished: leaves nothing */
		u->opens++;
	}
	return NULL;
}

static void test_umask(void)
{
	struct umask_opener u = { 0 };
	mode_t old = umask(022);
	char path[4200];
	unsigned files = 0, wrong = 0;
	pthread_t t;
	struct stat st;

	snprintf(path, sizeof(path), "%s/umask-probe", dir);
	pthread_create(&t, NULL, umask_writer_thread, &u);
	for (int i = 0; i < 20000 * (int)scale; i++) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);

		if (fd < 0) {
			fail("umask: create %s: %s", path, strerror(errno));
			break;
		}
		if (fstat(fd, &st) == 0 && (st.st_mode & 0777) != 0644 && !wrong++)
			fail("umask: a file created while writers open has mode %03o, not 644",
			     (unsigned)(st.st_mode & 0777));
		close(fd);
		unlink(path);
		files++;
	}
	atomic_store(&u.stop, 1);
	pthread_join(t, NULL);
	umask(old);
	only_file("", "umask");
	printf("E: %u files created beside %u writers being opened: %u with a wrong mode\n",
	       files, u.opens, wrong);
}

int main(int argc, char **argv)
{
	unsigned codec = codec_of_build();

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1)
		scale = (unsigned)strtoul(argv[1], NULL, 10);
	if (scale < 1)
		scale = 1;
	snprintf(dir, sizeof(dir), "%s/concurrency", tu_tmpdir());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return 1;
	}
	test_race();
	test_replace();
	test_shared(0);
	if (codec)
		test_shared(codec);
	else
		printf("C: no codec in this build: the compressed file's frame cache not tried\n");
	test_readers();
	test_umask();
	rmdir(dir);
	tu_tmpdir_remove();
	if (atomic_load(&failures)) {
		fprintf(stderr, "%d failure(s)\n", atomic_load(&failures));
		return 1;
	}
	printf("all concurrency checks passed\n");
	return 0;
}
