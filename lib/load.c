/*
 * fvm_load: options and mappings as the caller laid them out, the plan,
 * page-cache hints, the choice of executor (io_uring, else pread, with the
 * reason recorded), O_DIRECT and its fallback, CRC checks as reads
 * complete, the fused reads and tag checks of an authenticated file
 * (pass_fused), the zero policy and the stats. Read top to bottom with plan.c
 * and exec_uring.c, this is the whole seekable load. Streams are loaded
 * by stream_load.c.
 *
 * Defaults (DEFAULT_QUEUE_DEPTH, DEFAULT_CHUNK below) were measured on a
 * quiet machine; a first round under heavy load (other jobs at load 4-8)
 * had favoured 4 x 2 MiB, which a quiet re-run showed to be the slowest
 * cold setting.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "abi.h"
#include "auth.h"
#include "error.h"
#include "exec.h"
#include "fastvm/experimental.h"
#include "io.h"
#include "load.h"
#include "pool.h"
#include "uffd.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

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
#define MAP_KNOWN                                                                  \
	(uint32_t)(FVM_MAP_SHARED | FVM_MAP_HUGETLB | FVM_MAP_ZERO | FVM_MAP_HUGEPAGE |    \
		   FVM_MAP_DONTDUMP | FVM_MAP_MERGEABLE | FVM_MAP_LOCKED | FVM_MAP_DONTFORK)
#define DEFAULT_QUEUE_DEPTH 16
#define DEFAULT_CHUNK (256u << 10)
/*
 * WILLNEED window ahead of the reads, in units of queue depth x chunk.
 * Off by default: measured on a 509 MiB file after POSIX_FADV_DONTNEED,
 * windows of 1, 2 and 4 units made the load 1.2-1.8x slower than without
 * (the hint's readahead runs in the submitting thread and competes with
 * the reads it was meant to help); SEQUENTIAL alone already doubles the
 * kernel's readahead. fvm_load_tuning.willneed_window turns it on, to
 * measure on other devices (fvmsnap bench --willneed N).
 */
#define WILLNEED_DEFAULT 0

int fvm_load_cfg_check(const struct fvm_load_cfg *c)
{
	if (c->flags & ~(uint32_t)(FVM_LOAD_VERIFY | FVM_LOAD_DIRECT | FVM_LOAD_PARTIAL |
				   FVM_LOAD_LAZY))
		return fvm_err(FVM_EINVAL, "fvm_load: unknown flags 0x%x", c->flags);
	if (c->backend < FVM_BACKEND_AUTO || c->backend > FVM_BACKEND_MMAP)
		return fvm_err(FVM_EINVAL, "fvm_load: unknown backend %d", c->backend);
	if ((c->flags & FVM_LOAD_LAZY) && c->backend != FVM_BACKEND_MMAP)
		return fvm_err(FVM_EINVAL, "fvm_load: FVM_LOAD_LAZY needs FVM_BACKEND_MMAP");
	if ((c->flags & FVM_LOAD_LAZY) && (c->flags & FVM_LOAD_VERIFY))
		return fvm_err(FVM_EINVAL, "fvm_load: FVM_LOAD_LAZY and FVM_LOAD_VERIFY exclude "
			       "each other (verifying reads every page)");
	if (c->zero_policy < FVM_ZERO_LEAVE || c->zero_policy > FVM_ZERO_DONTNEED)
		return fvm_err(FVM_EINVAL, "fvm_load: unknown zero policy %d", c->zero_policy);
	return 0;
}

/* ------------------------------------------------------------ CRC checks */

struct lctx {
	struct fvm_reader *r;
	const char *file;
	const struct fvm_plan *p;
	unsigned chk;           /* bytes per chunk in chk_raw: 4 (CRC32C) or 16 (tag) */
	uint8_t *chk_raw;       /* expected chunk CRCs or tags of all plan extents */
	uint64_t *crc_base;     /* first chunk of each plan extent in chk_raw */
	fvm_progress_fn progress;
	void *pctx;
	uint64_t done;
};

/* The chunk CRCs (or tags) of every planned extent, read before the first payload byte. */
static int read_checks(struct lctx *c)
{
	const struct fvm_plan *p = c->p;
	uint64_t n = p->total / FVM_CHUNK, k = 0;
	int rc = 0;

	c->chk_raw = malloc((n ? n : 1) * c->chk);
	c->crc_base = malloc((p->next ? p->next : 1) * sizeof(*c->crc_base));
	if (!c->chk_raw || !c->crc_base)
		return fvm_err(FVM_ENOMEM, "%s: %" PRIu64 " chunk %s", c->file, n,
			       c->chk == FVM_CHK_TAG ? "tags" : "CRCs");
	for (size_t i = 0; i < p->next && !rc; i++) {
		uint64_t m = p->ext[i].bytes / FVM_CHUNK;

		c->crc_base[i] = k;
		rc = fvm_pread_full(c->r->fd, c->chk_raw + k * c->chk, m * c->chk,
				    p->ext[i].crc_offset, c->file,
				    c->chk == FVM_CHK_TAG ? "chunk tags" : "chunk CRCs");
		k += m;
	}
	return rc;
}

/* Each piece of request q that lies in one extent: its chunks' CRCs or tags (R102). */
static int check_req(struct lctx *c, size_t q)
{
	const struct fvm_plan_req *rq = &c->p->req[q];
	const struct fvm_model *m = &c->r->m;
	uint64_t end = rq->file_off + rq->len;
	size_t i = rq->ext;

	for (uint64_t f = rq->file_off; f < end;) {
		const struct fvm_plan_ext *e;
		uint64_t in, piece, n, idx;
		int64_t bad;

		while (f >= c->p->ext[i].file_off + c->p->ext[i].bytes)
			i++;
		e = &c->p->ext[i];
		in = f - e->file_off;
		piece = (end < e->file_off + e->bytes ? end : e->file_off + e->bytes) - f;
		n = piece / FVM_CHUNK;
		idx = c->crc_base[i] + in / FVM_CHUNK;
		bad = fvm_chunks_bad(m->keys, f, e->dst + in, (size_t)n, c->chk_raw + idx * c->chk);
		if (bad == FVM_CHUNKS_FAILED)
			return FVM_ENOMEM;
		if (bad >= 0) {
			uint64_t at = in + (uint64_t)bad * FVM_CHUNK;
			char note[48];

			snprintf(note, sizeof(note), " (read request %zu)", q);
			return fvm_model_chunk_error(m, e->block_id, e->first_page +
						     (at >> m->blocks[e->block_id].page_shift),
						     e->file_off + at, note);
		}
		f += piece;
	}
	return 0;
}

/* The progress callback with done of the plan's bytes; non-zero cancels. */
static int report(struct lctx *c, uint64_t done)
{
	int rc;

	if (!c->progress)
		return 0;
	fvm_err_clear();
	rc = c->progress(c->pctx, done, c->p->total);
	return rc ? fvm_err_callback(rc, "%s: load canceled by the progress callback after %"
				     PRIu64 " of %" PRIu64 " bytes", c->file, done,
				     c->p->total) : 0;
}

static int on_done(struct fvm_exec *x, size_t q)
{
	struct lctx *c = x->ctx;
	int rc;

	if (c->chk_raw) {
		rc = check_req(c, q);
		if (rc)
			return rc;
	}
	c->done += c->p->req[q].len;
	return report(c, c->done);
}

/* ------------------------------------------------------------ load */

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

/*
 * A map over the caller's memory replaced its mapping, and with it what the
 * caller had set there: make those settings again over each whole mapping
 * (the parts not mapped over keep theirs; setting them twice is harmless).
 *
 * Except MADV_HUGEPAGE after a lazy map: over a file mapping it makes every
 * first fault in a 2 MiB range read that range whole, and start reading the
 * next one (4 MiB from one touch here, whatever the device's read_ahead_kb),
 * where a fault should cost the page and the device's readahead. On the
 * emulated 137 MB/s eMMC, QEMU's two touches of guest RAM before its VM is
 * paused read 4 MiB of the snapshot with it and 256 KiB without (BENCHMARKS
 * 9, session 7). The parts not mapped over keep the caller's setting.
 */
static int keep_settings(const struct fvm_map *maps, size_t n, const char *file, int lazy)
{
	for (size_t k = 0; k < n; k++) {
		const struct fvm_map *mp = &maps[k];
		uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t a = (uintptr_t)mp->addr & ~(pg - 1);
		size_t len = (size_t)((uintptr_t)mp->addr + mp->length - a);

		if (!mp->length || (mp->flags & (FVM_MAP_SHARED | FVM_MAP_HUGETLB)))
			continue; /* never mapped over */
		if ((mp->flags & FVM_MAP_HUGEPAGE) && !lazy)
			(void)madvise((void *)a, len, MADV_HUGEPAGE);
		if (mp->flags & FVM_MAP_MERGEABLE)
			(void)madvise((void *)a, len, MADV_MERGEABLE);
		if ((mp->flags & FVM_MAP_DONTDUMP) && madvise((void *)a, len, MADV_DONTDUMP) < 0)
			return fvm_err_sys(errno, "%s: mapping %s: madvise(MADV_DONTDUMP) after "
					   "mapping runs over it", file, mp->name);
		if ((mp->flags & FVM_MAP_DONTFORK) && madvise((void *)a, len, MADV_DONTFORK) < 0)
			return fvm_err_sys(errno, "%s: mapping %s: madvise(MADV_DONTFORK) after "
					   "mapping runs over it", file, mp->name);
		if ((mp->flags & FVM_MAP_LOCKED) && mlock((void *)a, len) < 0)
			return fvm_err_sys(errno == EAGAIN ? ENOMEM : errno, "%s: mapping %s: mlock "
					   "of %zu bytes after mapping runs over it", file, mp->name,
					   len);
	}
	return 0;
}

/*
 * A COMPRESSED file (FORMAT.md 4.5): the same plan, whose extents' offsets
 * are in the plain payload space, carried out by the frame executor. Runs
 * cannot be mapped: their bytes are not in the file as they are in memory.
 */
static int load_frames(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		       const struct fvm_load_cfg *o, fvm_load_stats *st)
{
	const struct fvm_model *m = &r->m;
	struct fvm_plan p;
	struct fvm_fexec x;
	int rc;

	if (o->backend == FVM_BACKEND_MMAP)
		return fvm_err(FVM_EUNSUPPORTED, "%s: its runs are compressed (%s) and cannot "
			       "be mapped%s; load it with another backend, or write it without "
			       "compression (fvmsnap recompress --compress none)", m->file,
			       fvm_codec_name(m->hdr.codec),
			       o->flags & FVM_LOAD_LAZY ? " lazily" : "");
	rc = fvm_plan_build(&p, m->file, m->blocks, m->nblocks, m->ext, m->next, maps, n_maps,
			    !!(o->flags & FVM_LOAD_PARTIAL), 0);
	if (rc)
		return rc;
	(void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	x = (struct fvm_fexec){ .fd = r->fd, .file = m->file, .frames = m->frames,
				.nframes = m->nframes, .codec = m->hdr.codec,
				.fshift = m->hdr.frame_shift, .plan = &p,
				.threads = o->threads, .bufs = o->queue_depth,
				.no_uring = o->backend == FVM_BACKEND_PREAD,
				.check_plain = !!(o->flags & FVM_LOAD_VERIFY),
				.progress = o->progress, .progress_ctx = o->progress_ctx };
	fvm_plan_small_pages(&p, 1);
	rc = fvm_exec_frames(&x);
	fvm_plan_small_pages(&p, 0);
	st->requests = x.requests;
	st->bytes_read = x.bytes;
	st->backend = x.backend && !strcmp(x.backend, "io_uring") ? FVM_BACKEND_URING
								   : FVM_BACKEND_PREAD;
	st->backend_name = x.backend ? x.backend : "pread";
	st->extents = p.next;
	if (!rc) {
		rc = fvm_plan_apply_zero(p.zero, p.nzero, o->zero_policy);
		st->zero_bytes = o->zero_policy == FVM_ZERO_LEAVE ? 0 : p.zero_bytes;
	}
	fvm_plan_free(&p);
	return rc;
}

/* The reads of a seekable load, with the O_DIRECT fallback. */
struct lrun {
	struct fvm_reader *r;
	const struct fvm_load_cfg *o;
	struct fvm_plan *p;
	fvm_load_stats *st;
	struct lctx *c;
	int dfd;
	unsigned qd;
	uint64_t window;
	int backend;
	unsigned threads;       /* of a fused load */
};

/*
 * One pass over every request, from fd (the O_DIRECT one or the reader's);
 * *sys_errno: the errno of a failed read.
 */
typedef int (*read_pass)(struct lrun *l, int fd, int *sys_errno);

/*
 * Run pass; when the file system refuses O_DIRECT at read time (EINVAL:
 * it took the open), start over buffered, progress included: the reads are
 * idempotent. A buffered pass reads sequentially (POSIX_FADV_SEQUENTIAL).
 */
static int read_with_fallback(struct lrun *l, read_pass pass)
{
	fvm_load_stats *st = l->st;
	struct fvm_reader *r = l->r;

	for (;;) {
		int sys_errno = 0, rc;

		if (!st->direct && l->p->nreq)
			(void)posix_fadvise(r->fd, (off_t)l->p->lo, (off_t)(l->p->hi - l->p->lo),
					    POSIX_FADV_SEQUENTIAL);
		rc = pass(l, st->direct ? l->dfd : r->fd, &sys_errno);
		if (rc == FVM_EIO && st->direct && sys_errno == EINVAL) {
			st->direct = 0;
			continue;
		}
		return rc;
	}
}

static int pass_exec(struct lrun *l, int fd, int *sys_errno)
{
	const struct fvm_load_cfg *o = l->o;
	fvm_load_stats *st = l->st;
	struct fvm_exec x = { .fd = fd, .file = l->r->m.file, .plan = l->p,
			      .queue_depth = l->qd, .async = !st->direct && !o->inline_reads,
			      .lazy = !!(o->flags & FVM_LOAD_LAZY), .done = on_done, .ctx = l->c };
	int rc;

	if (!st->direct && l->p->nreq)
		x.window = l->window;
	l->c->done = 0;
	rc = run(&x, &l->backend, st);
	st->requests += x.requests;
	st->bytes_read += x.bytes;
	st->mapped_bytes = x.mapped;
	*sys_errno = x.sys_errno;
	return rc;
}

/*
 * An authenticated eager load (FORMAT.md R102): every chunk's tag checked
 * before the load returns. GMAC costs about what the copy costs
 * (doc/BENCHMARKS.md 11), so copies and checks both run on every CPU,
 * fused: each thread claims the next request, preadv()s it whole into its
 * destination and checks its tags at once, while the bytes are still hot
 * in its L2 (requests of DEFAULT_CHUNK, 256 KiB, against 2 MiB of L2 per
 * core here; measured in section 12: 512 KiB and 1 MiB were slower, 128 KiB
 * no faster). With the copies in one thread and the checks on a pool, as
 * before, the load was bound by that thread whatever the MAC cost.
 *
 * The first failure stops the other threads after their current request;
 * its detail is set again on the caller's thread. Progress is reported on
 * the caller's thread only (thread 0), after each of its requests and at
 * the end, with the bytes every thread has read and checked.
 */
struct fused {
	struct lctx *c;
	int fd;
	size_t next;            /* the next request to claim (atomic) */
	uint64_t done;          /* bytes read and checked (atomic) */
	uint64_t reported;      /* done as last reported (thread 0 only) */
	int stop;               /* set by the first failure (atomic) */
	pthread_mutex_t mu;     /* over the rest */
	int sys_errno;          /* of the failed read (the O_DIRECT restart) */
	struct fvm_err_kept err; /* the first failure, with its thread's detail */
	uint64_t requests, bytes;
};

static void fused_fail(struct fused *f, int rc, int sys_errno)
{
	pthread_mutex_lock(&f->mu);
	if (!f->err.rc)
		f->sys_errno = sys_errno;
	fvm_err_keep(&f->err, rc);
	pthread_mutex_unlock(&f->mu);
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
}

static void fused_one(void *ctx, unsigned i)
{
	struct fused *f = ctx;
	struct lctx *c = f->c;
	const struct fvm_plan *p = c->p;
	struct fvm_exec x = { .fd = f->fd, .file = c->file, .plan = p };
	struct iovec *fix = malloc(IOV_MAX * sizeof(*fix));
	int rc = fix ? 0 : fvm_err(FVM_ENOMEM, "%s: read loop", c->file);

	while (!rc && !__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		size_t q = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED);
		uint64_t done;

		if (q >= p->nreq)
			break;
		rc = fvm_exec_read_req(&x, q, fix);
		if (!rc)
			rc = check_req(c, q); /* hot in this core's cache */
		if (rc)
			break;
		done = __atomic_add_fetch(&f->done, p->req[q].len, __ATOMIC_RELAXED);
		if (i == 0 && c->progress) {
			f->reported = done;
			rc = report(c, done);
		}
	}
	if (rc)
		fused_fail(f, rc, x.sys_errno);
	pthread_mutex_lock(&f->mu);
	f->requests += x.requests;
	f->bytes += x.bytes;
	pthread_mutex_unlock(&f->mu);
	free(fix);
}

/* One fused pass on l->threads threads. */
static int pass_fused(struct lrun *l, int fd, int *sys_errno)
{
	struct fused f = { .c = l->c, .fd = fd };

	pthread_mutex_init(&f.mu, NULL);
	fvm_parallel(l->threads, fused_one, &f, NULL);
	pthread_mutex_destroy(&f.mu);
	l->st->requests += f.requests;
	l->st->bytes_read += f.bytes;
	*sys_errno = f.sys_errno;
	if (f.err.rc) /* set again: the detail is the failing thread's */
		return fvm_err_raise(&f.err);
	return f.reported != f.done ? report(l->c, f.done) : 0;
}

static int load_seekable(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
			 const struct fvm_load_cfg *o, fvm_load_stats *st)
{
	const struct fvm_model *m = &r->m;
	uint64_t chunk = o->chunk_bytes ? o->chunk_bytes : DEFAULT_CHUNK;
	unsigned qd = o->queue_depth ? o->queue_depth : DEFAULT_QUEUE_DEPTH;
	uint64_t window = (o->willneed_window > 64 ? 64 : o->willneed_window) *
			  (uint64_t)qd * chunk;
	struct fvm_plan p;
	struct lctx c = { r, m->file, &p, m->chk, NULL, NULL, o->progress, o->progress_ctx, 0 };
	int backend = o->backend;
	int dfd = -1, rc, copying;

	rc = fvm_plan_build(&p, m->file, m->blocks, m->nblocks, m->ext, m->next, maps,
			    n_maps, !!(o->flags & FVM_LOAD_PARTIAL), chunk);
	if (rc)
		return rc;
	/* an authenticated file is always checked (FORMAT.md R102) */
	if (((o->flags & FVM_LOAD_VERIFY) && m->with_crc) || m->auth)
		rc = read_checks(&c);
	/* mmap maps the page cache: O_DIRECT has no meaning there */
	if (!rc && (o->flags & FVM_LOAD_DIRECT) && backend != FVM_BACKEND_MMAP && p.aligned &&
	    p.nreq)
		dfd = fvm_reader_reopen(r, O_DIRECT); /* -1: refused */
	st->direct = dfd >= 0;
	copying = backend != FVM_BACKEND_MMAP;
	if (copying)
		fvm_plan_small_pages(&p, 1);
	if (!rc) {
		unsigned n = o->threads ? o->threads : fvm_cpus();
		struct lrun l = { r, o, &p, st, &c, dfd, qd, window, backend, n > 8 ? 8 : n };

		if (c.chk == FVM_CHK_TAG && copying && l.threads > 1 && p.nreq > 1) {
			rc = read_with_fallback(&l, pass_fused);
			l.backend = FVM_BACKEND_PREAD;
			st->fallback_reason = "authenticated: preadv and tag checks on every CPU "
					      "(io_uring not used: the checks run where each "
					      "request was copied)";
		} else {
			rc = read_with_fallback(&l, pass_exec);
		}
		backend = l.backend;
	}
	if (dfd >= 0)
		close(dfd);
	if (copying)
		fvm_plan_small_pages(&p, 0);
	if (st->mapped_bytes) {
		int k = keep_settings(maps, n_maps, m->file, !!(o->flags & FVM_LOAD_LAZY));

		if (!rc)
			rc = k;
	}
	st->backend = backend;
	st->backend_name = backend == FVM_BACKEND_URING ? "io_uring" :
			   backend == FVM_BACKEND_MMAP ? "mmap" : "pread";
	st->extents = p.next;
	if (!rc) {
		rc = fvm_plan_apply_zero(p.zero, p.nzero, o->zero_policy);
		st->zero_bytes = o->zero_policy == FVM_ZERO_LEAVE ? 0 : p.zero_bytes;
	}
	free(c.chk_raw);
	free(c.crc_base);
	fvm_plan_free(&p);
	return rc;
}

/*
 * The lazy load of an authenticated file (uffd.c): the destinations are
 * registered with userfaultfd and every page is installed by its handler
 * after its tag verified; this returns once they are registered. Memory it
 * cannot register safely (shared or hugetlbfs, locked, not 4 KiB-aligned)
 * is loaded eagerly instead, checked, as the plain lazy load copies it.
 */
static int load_uffd(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		     const struct fvm_load_cfg *o, fvm_load_stats *st)
{
	const struct fvm_model *m = &r->m;
	struct fvm_load_cfg eager = *o;
	const char *why = NULL;
	struct fvm_plan p;
	int rc;

	rc = fvm_plan_build(&p, m->file, m->blocks, m->nblocks, m->ext, m->next, maps, n_maps,
			    !!(o->flags & FVM_LOAD_PARTIAL), 0);
	if (rc)
		return rc;
	if (!p.aligned)
		why = "userfaultfd: a destination is not 4 KiB-aligned";
	else if (p.shared)
		why = "userfaultfd: a destination is shared or hugetlbfs memory";
	for (size_t k = 0; k < n_maps && !why; k++)
		if (maps[k].flags & FVM_MAP_LOCKED)
			why = "userfaultfd: a destination is locked (FVM_MAP_LOCKED)";
		else if (maps[k].length % FVM_CHUNK)
			why = "userfaultfd: a destination's length is not a multiple of 4 KiB";
	if (why) {
		fvm_plan_free(&p);
		eager.flags &= ~(uint32_t)FVM_LOAD_LAZY;
		eager.backend = FVM_BACKEND_AUTO;
		rc = load_seekable(r, maps, n_maps, &eager, st);
		st->fallback_reason = why;
		return rc;
	}
	st->extents = p.next;
	st->mapped_bytes = 0;
	for (size_t k = 0; k < n_maps; k++)
		st->mapped_bytes += maps[k].length;
	/* before the registration: a page it drops then faults to zeros */
	rc = fvm_plan_apply_zero(p.zero, p.nzero, o->zero_policy);
	st->zero_bytes = o->zero_policy == FVM_ZERO_LEAVE ? 0 : p.zero_bytes;
	if (!rc)
		rc = fvm_uffd_start(r, &p, maps, n_maps, &why);
	fvm_plan_free(&p); /* moved on success: empty */
	st->backend = FVM_BACKEND_MMAP;
	st->backend_name = "userfaultfd";
	if (rc)
		st->mapped_bytes = 0;
	return rc;
}

int fvm_load_maps(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		  const struct fvm_load_cfg *c, fvm_load_stats *st)
{
	uint64_t t0 = fvm_now_ns();
	int rc;

	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	rc = fvm_load_cfg_check(c);
	if (!rc)
		rc = fvm_reader_auth_ready(r, "fvm_load");
	if (!rc && r->m.auth && c->backend == FVM_BACKEND_MMAP && !(c->flags & FVM_LOAD_LAZY))
		rc = fvm_err(FVM_EUNSUPPORTED, "%s: an authenticated snapshot cannot be mapped: "
			     "the kernel would hand its pages to the guest without checking their "
			     "tags; load it with another backend, or lazily (FVM_LOAD_LAZY: "
			     "through userfaultfd, each page checked)", r->m.file);
	if (!rc && r->m.auth && c->backend == FVM_BACKEND_MMAP)
		rc = load_uffd(r, maps, n_maps, c, st);
	else if (!rc)
		rc = r->streamed ? fvm_stream_load(r, maps, n_maps, c, st)
		     : r->m.compressed ? load_frames(r, maps, n_maps, c, st)
				       : load_seekable(r, maps, n_maps, c, st);
	st->elapsed_ns = fvm_now_ns() - t0;
	return rc;
}

/* ------------------------------------------------------------ the public call */

int fvm_load_options_init(fvm_load_options *opts, size_t size)
{
	const fvm_load_options def = FVM_LOAD_OPTIONS_INIT;

	fvm_api_begin();
	return fvm_api_end(fvm_abi_init(opts, size, &def, sizeof(def), "fvm_load_options_init"));
}

/* The oldest layouts this library reads (0.2, when the size rules began). */
#define OPTIONS_MIN sizeof(fvm_load_options)
#define MAPPING_MIN sizeof(fvm_mapping)
#define TUNING_MIN (2 * sizeof(uint32_t))

static int get_cfg(const fvm_load_options *in, struct fvm_load_cfg *c)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	int rc;

	if (in && (rc = fvm_abi_in(&o, sizeof(o), in, OPTIONS_MIN, "fvm_load: options")))
		return rc;
	if (o.tuning && (rc = fvm_abi_in(&t, sizeof(t), o.tuning, TUNING_MIN,
					  "fvm_load: tuning")))
		return rc;
	if (t.flags & ~(uint32_t)FVM_TUNE_INLINE)
		return fvm_err(FVM_EINVAL, "fvm_load: unknown tuning flags 0x%x", t.flags);
	*c = (struct fvm_load_cfg){ o.flags, o.backend, o.zero_policy, o.progress,
				    o.progress_ctx, o.devstate, o.devstate_ctx, t.queue_depth,
				    t.chunk_bytes, t.willneed_window,
				    !!(t.flags & FVM_TUNE_INLINE), t.threads };
	return 0;
}

/* The caller's array: elements of maps[0].size bytes, each read by the size rules. */
static int get_maps(const fvm_mapping *maps, size_t n, struct fvm_map **out)
{
	const unsigned char *base = (const unsigned char *)maps;
	struct fvm_map *v;
	uint32_t stride;
	int rc = 0;

	*out = NULL;
	if (!n)
		return 0;
	if (!maps)
		return fvm_err(FVM_EINVAL, "fvm_load: %zu mappings but no array", n);
	stride = maps[0].size;
	if (stride < MAPPING_MIN)
		return fvm_err(FVM_EINVAL, "fvm_load: mapping size %u, expected %zu (set it with "
			       "FVM_MAPPING_INIT)", stride, sizeof(fvm_mapping));
	v = calloc(n, sizeof(*v));
	if (!v)
		return fvm_err(FVM_ENOMEM, "fvm_load: %zu mappings", n);
	for (size_t k = 0; k < n && !rc; k++) {
		const unsigned char *e = base + k * stride;
		fvm_mapping m = FVM_MAPPING_INIT;
		uint32_t size;

		memcpy(&size, e, sizeof(size));
		if (size != stride)
			rc = fvm_err(FVM_EINVAL, "fvm_load: mapping %zu has size %u, mapping 0 "
				     "has %u: all must be the same", k, size, stride);
		if (!rc)
			rc = fvm_abi_in(&m, sizeof(m), e, MAPPING_MIN, "fvm_load: mapping");
		if (!rc && (m.flags & ~MAP_KNOWN))
			rc = fvm_err(FVM_EINVAL, "fvm_load: mapping %zu: unknown flags 0x%x", k,
				     m.flags);
		v[k] = (struct fvm_map){ m.name, m.addr, m.length, m.page_size, m.flags };
	}
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	return 0;
}

FVM_DEFAULT_0_2(fvm_load)(fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
	     const fvm_load_options *opts, fvm_load_stats *stats)
{
	struct fvm_load_cfg c;
	struct fvm_map *v = NULL;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	int rc;

	fvm_api_begin();
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_load: NULL reader");
	if (stats && stats->size < sizeof(uint32_t))
		return fvm_err(FVM_EINVAL, "fvm_load: stats size %u; set it with "
			       "FVM_LOAD_STATS_INIT", stats->size);
	rc = get_cfg(opts, &c);
	if (!rc)
		rc = get_maps(maps, n_maps, &v);
	if (!rc)
		rc = fvm_load_maps(r, v, n_maps, &c, &st);
	free(v);
	if (stats)
		(void)fvm_abi_out(stats, &st, sizeof(st), "fvm_load: stats");
	return fvm_api_end(rc);
}
FVM_SAME_TYPE(fvm_load);
