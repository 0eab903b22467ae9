/*
 * fvm_load: options, the plan, page-cache hints, the choice of executor
 * (io_uring, else pread, with the reason recorded), O_DIRECT and its
 * fallback, CRC checks as reads complete, the zero policy and the stats.
 * Streams are loaded by walk.c.
 *
 * Defaults (DEFAULT_QUEUE_DEPTH, DEFAULT_CHUNK below) were measured on a
 * quiet machine; a first round under heavy load (other jobs at load 4-8)
 * had favoured 4 x 2 MiB, which a quiet re-run showed to be the slowest
 * cold setting.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc.h"
#include "error.h"
#include "exec.h"
#include "plan.h"
#include "reader.h"

/*
 * 16 reads of 256 KiB in flight. Measured with fvmsnap bench on a 512 MiB
 * guest-like snapshot (123 MiB payload), cold cache, three alternating
 * rounds of 9 runs, ratio to a plain read() of the file: 16 x 256K 1.01,
 * 1.05, 1.04; 8 x 1M 1.00, 1.11, 1.03; 32 x 128K 1.04, 1.04, 1.05;
 * 4 x 2M 1.21, 1.06, 1.15; 4 x 8M about 1.4. Warm cache every setting was
 * within 1% of the reference while reads completed in the submitting
 * thread; handed to io_uring's workers (exec_uring.c) they copy on every
 * CPU, 1.7x faster on 2 cores. Large single reads
 * on a cold cache wait for their whole readahead; many smaller ones keep
 * the device and the copy busy at once. doc/BENCHMARKS.md has the table.
 */
#define DEFAULT_QUEUE_DEPTH 16
#define DEFAULT_CHUNK (256u << 10)
/*
 * WILLNEED window ahead of the reads, in units of queue depth x chunk.
 * Off by default: measured on a 509 MiB file after POSIX_FADV_DONTNEED,
 * windows of 1, 2 and 4 units made the load 1.2-1.8x slower than without
 * (the hint's readahead runs in the submitting thread and competes with
 * the reads it was meant to help); SEQUENTIAL alone already doubles the
 * kernel's readahead. fvm_load_options.willneed_window (or FVM_WILLNEED=<units>)
 * turns it on, to measure on other devices (fvmsnap bench --willneed N).
 */
#define WILLNEED_DEFAULT 0

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int get_options(const fvm_load_options *in, fvm_load_options *o)
{
	const fvm_load_options def = FVM_LOAD_OPTIONS_INIT;

	*o = def;
	if (!in)
		return 0;
	/* a newer caller's larger struct is fine: we read the fields we know */
	if (in->size < sizeof(*in))
		return fvm_err(FVM_EINVAL, "fvm_load: options size %u, expected %zu "
			       "(use FVM_LOAD_OPTIONS_INIT)", in->size, sizeof(*in));
	*o = *in;
	o->size = sizeof(*o);
	if (o->flags & ~(uint32_t)(FVM_LOAD_VERIFY | FVM_LOAD_DIRECT | FVM_LOAD_PARTIAL |
				   FVM_LOAD_INLINE | FVM_LOAD_LAZY))
		return fvm_err(FVM_EINVAL, "fvm_load: unknown flags 0x%x", o->flags);
	if (o->backend < FVM_BACKEND_AUTO || o->backend > FVM_BACKEND_MMAP)
		return fvm_err(FVM_EINVAL, "fvm_load: unknown backend %d", o->backend);
	if ((o->flags & FVM_LOAD_LAZY) && o->backend != FVM_BACKEND_MMAP)
		return fvm_err(FVM_EINVAL, "fvm_load: FVM_LOAD_LAZY needs FVM_BACKEND_MMAP");
	if ((o->flags & FVM_LOAD_LAZY) && (o->flags & FVM_LOAD_VERIFY))
		return fvm_err(FVM_EINVAL, "fvm_load: FVM_LOAD_LAZY and FVM_LOAD_VERIFY exclude "
			       "each other (verifying reads every page)");
	if (o->zero_policy < FVM_ZERO_LEAVE || o->zero_policy > FVM_ZERO_DONTNEED)
		return fvm_err(FVM_EINVAL, "fvm_load: unknown zero policy %d", o->zero_policy);
	return 0;
}

/* ------------------------------------------------------------ zero policy */

int fvm_apply_zero(const struct fvm_plan_zero *z, size_t n, int policy)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (policy == FVM_ZERO_LEAVE)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)z[i].addr, e = a + z[i].len;
		uintptr_t s = (a + pg - 1) & ~(pg - 1), t = e & ~(pg - 1);

		if (policy == FVM_ZERO_MEMSET || s >= t) {
			memset(z[i].addr, 0, z[i].len);
			continue;
		}
		/* whole pages are released; the edges of a partial page are not
		 * ours alone to release, so they are cleared */
		memset((void *)a, 0, s - a);
		memset((void *)t, 0, e - t);
		if (madvise((void *)s, t - s, MADV_DONTNEED) < 0)
			memset((void *)s, 0, t - s); /* e.g. locked or hugetlb: still zero */
	}
	return 0;
}

/* ------------------------------------------------------------ CRC checks */

struct lctx {
	struct fvm_reader *r;
	const struct fvm_plan *p;
	uint32_t *crc;          /* expected chunk CRCs of all plan extents */
	uint64_t *crc_base;     /* first CRC of each plan extent */
	fvm_progress_fn progress;
	void *pctx;
	uint64_t done;
};

/* The chunk CRCs of every planned extent, read before the first payload byte. */
static int read_crcs(struct lctx *c)
{
	const struct fvm_plan *p = c->p;
	uint64_t n = p->total / FVM_CHUNK, k = 0;
	int rc = 0;

	c->crc = malloc((n ? n : 1) * sizeof(*c->crc));
	c->crc_base = malloc((p->next ? p->next : 1) * sizeof(*c->crc_base));
	if (!c->crc || !c->crc_base)
		return fvm_err(FVM_ENOMEM, "%s: %" PRIu64 " chunk CRCs", c->r->file, n);
	for (size_t i = 0; i < p->next && !rc; i++) {
		uint64_t m = p->ext[i].bytes / FVM_CHUNK;
		uint8_t *raw = (uint8_t *)(c->crc + k);

		c->crc_base[i] = k;
		rc = fvm_pread_full(c->r->fd, raw, m * 4, p->ext[i].crc_offset, c->r->file,
				    "chunk CRCs");
		for (uint64_t j = 0; j < m && !rc; j++)
			c->crc[k + j] = fvm_ld32(raw + 4 * j); /* in place: LE to host */
		k += m;
	}
	return rc;
}

static int check_req(struct lctx *c, size_t q)
{
	const struct fvm_plan_req *rq = &c->p->req[q];
	size_t i = rq->ext;

	for (uint64_t f = rq->file_off; f < rq->file_off + rq->len; f += FVM_CHUNK) {
		const struct fvm_plan_ext *e;
		uint64_t in;

		while (f >= c->p->ext[i].file_off + c->p->ext[i].bytes)
			i++;
		e = &c->p->ext[i];
		in = f - e->file_off;
		if (fvm_crc32c(0, e->dst + in, FVM_CHUNK) != c->crc[c->crc_base[i] + in / FVM_CHUNK])
			return fvm_err(FVM_ECHECKSUM, "%s: block %s page %" PRIu64 ": payload "
				       "crc mismatch at file offset 0x%" PRIx64 " (read request %zu)",
				       c->r->file, c->r->blocks[e->block_id].name,
				       e->first_page + (in >> c->r->blocks[e->block_id].page_shift),
				       f, q);
	}
	return 0;
}

static int on_done(struct fvm_exec *x, size_t q)
{
	struct lctx *c = x->ctx;
	int rc;

	if (c->crc) {
		rc = check_req(c, q);
		if (rc)
			return rc;
	}
	c->done += c->p->req[q].len;
	if (c->progress && c->progress(c->pctx, c->done, c->p->total))
		return fvm_err(FVM_ECANCELED, "%s: load canceled by the progress callback "
			       "after %" PRIu64 " of %" PRIu64 " bytes", c->r->file, c->done,
			       c->p->total);
	return 0;
}

/* ------------------------------------------------------------ O_DIRECT */

/* Reopen the same file with O_DIRECT; -1 when refused. */
static int open_direct(struct fvm_reader *r)
{
	struct stat a, b;
	char proc[64];
	int fd;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", r->fd);
	fd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 && r->path)
		fd = open(r->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* through a path, make sure it is still the file we opened */
	if (fstat(fd, &a) < 0 || fstat(r->fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------ load */

static uint64_t willneed_units(const fvm_load_options *o)
{
	const char *env = getenv("FVM_WILLNEED");
	unsigned long v;
	char *end;

	if (o->willneed_window)
		return o->willneed_window > 64 ? 64 : o->willneed_window;
	if (!env || !*env)
		return WILLNEED_DEFAULT;
	v = strtoul(env, &end, 10);
	return *end || v > 64 ? WILLNEED_DEFAULT : v;
}

static int pick_backend(int backend)
{
	const char *env = getenv("FVM_BACKEND");

	if (backend != FVM_BACKEND_AUTO || !env)
		return backend;
	if (!strcmp(env, "pread"))
		return FVM_BACKEND_PREAD;
	if (!strcmp(env, "uring") || !strcmp(env, "io_uring"))
		return FVM_BACKEND_URING;
	return FVM_BACKEND_AUTO;
}

static int run(struct fvm_exec *x, int *backend, fvm_load_stats *st)
{
	const char *why = NULL;
	int rc;

	if (*backend == FVM_BACKEND_MMAP) {
		rc = fvm_exec_mmap(x, &why);
		if (rc != FVM_EUNSUPPORTED)
			return rc;
		st->fallback_reason = why;
		x->requests = x->bytes = 0;
		((struct lctx *)x->ctx)->done = 0; /* progress starts over */
	}
	if (*backend != FVM_BACKEND_PREAD) {
		rc = fvm_exec_uring(x, &why);
		if (rc != FVM_EUNSUPPORTED) {
			*backend = FVM_BACKEND_URING;
			return rc;
		}
		st->fallback_reason = why;
	}
	*backend = FVM_BACKEND_PREAD;
	return fvm_exec_pread(x);
}

static int load_seekable(struct fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
			 const fvm_load_options *o, fvm_load_stats *st)
{
	uint64_t chunk = o->chunk_bytes ? o->chunk_bytes : DEFAULT_CHUNK;
	unsigned qd = o->queue_depth ? o->queue_depth : DEFAULT_QUEUE_DEPTH;
	struct fvm_plan p;
	struct lctx c = { r, &p, NULL, NULL, o->progress, o->progress_ctx, 0 };
	struct fvm_exec x;
	int backend = pick_backend(o->backend);
	int dfd = -1, rc;

	rc = fvm_plan_build(&p, r->file, r->blocks, r->nblocks, r->ext, r->next, maps,
			    n_maps, !!(o->flags & FVM_LOAD_PARTIAL), chunk);
	if (rc)
		return rc;
	if ((o->flags & FVM_LOAD_VERIFY) && r->with_crc)
		rc = read_crcs(&c);
	/* mmap maps the page cache: O_DIRECT has no meaning there */
	if (!rc && (o->flags & FVM_LOAD_DIRECT) && backend != FVM_BACKEND_MMAP && p.aligned &&
	    p.nreq)
		dfd = open_direct(r);
	st->direct = dfd >= 0;
	for (;;) {
		if (rc)
			break;
		x = (struct fvm_exec){ .fd = st->direct ? dfd : r->fd, .file = r->file,
				       .plan = &p, .queue_depth = qd,
				       .async = !st->direct && !(o->flags & FVM_LOAD_INLINE),
				       .lazy = !!(o->flags & FVM_LOAD_LAZY),
				       .done = on_done, .ctx = &c };
		if (!st->direct && p.nreq) {
			(void)posix_fadvise(r->fd, (off_t)p.lo, (off_t)(p.hi - p.lo),
					    POSIX_FADV_SEQUENTIAL);
			x.window = willneed_units(o) * (uint64_t)qd * chunk;
		}
		c.done = 0;
		rc = run(&x, &backend, st);
		st->requests += x.requests;
		st->bytes_read += x.bytes;
		/* O_DIRECT refused by the file system at read time: start over
		 * buffered (the reads are idempotent) */
		if (rc == FVM_EIO && st->direct && x.sys_errno == EINVAL) {
			st->direct = 0;
			rc = 0;
			continue;
		}
		break;
	}
	if (dfd >= 0)
		close(dfd);
	st->backend = backend;
	st->backend_name = backend == FVM_BACKEND_URING ? "io_uring" :
			   backend == FVM_BACKEND_MMAP ? "mmap" : "pread";
	st->extents = p.next;
	if (!rc) {
		rc = fvm_apply_zero(p.zero, p.nzero, o->zero_policy);
		st->zero_bytes = o->zero_policy == FVM_ZERO_LEAVE ? 0 : p.zero_bytes;
	}
	free(c.crc);
	free(c.crc_base);
	fvm_plan_free(&p);
	return rc;
}

int fvm_load(fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
	     const fvm_load_options *opts, fvm_load_stats *stats)
{
	uint64_t t0 = now_ns();
	fvm_load_stats st;
	fvm_load_options o;
	int rc;

	memset(&st, 0, sizeof(st));
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_load: NULL reader");
	rc = get_options(opts, &o);
	if (!rc)
		rc = r->streamed ? fvm_stream_load(r, maps, n_maps, &o, &st)
				 : load_seekable(r, maps, n_maps, &o, &st);
	st.elapsed_ns = now_ns() - t0;
	if (stats)
		*stats = st;
	return rc;
}
