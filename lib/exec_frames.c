/*
 * The compressed executor (FORMAT.md 4.5, 5.1): the frames that hold live
 * bytes of the plan, read in file order as spans of up to SPAN bytes into
 * a few buffers (io_uring keeps them all in flight, else pread one at a
 * time) and decoded by a pool of threads straight into the destination.
 * A frame whose plain bytes all go to one place is decoded there; one
 * that feeds several runs (or holds dead bytes a later segment replaced)
 * goes through the decoding thread's frame buffer and is copied out.
 *
 * Threads: the caller's thread drives the reads and calls progress; the
 * others decode. While its reads are in flight, the reading thread decodes
 * a buffer that every other decoder is too busy to take (take_spare); when
 * every buffer waits to be decoded and nothing is in flight, it decodes
 * too, so the load finishes even when no thread could be made. Memory
 * beyond the destination: bufs x SPAN
 * plus one frame (at most 1 MiB) per thread, which the defaults keep
 * within 16 MiB (6 buffers, fewer with many threads; at most 8 threads
 * unless asked), plus the plan (a few dozen bytes per frame).
 *
 * Errors raised on a decoding thread are carried back to the caller's
 * thread with their detail. Nothing returns while a read is in flight.
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "array.h"
#include "error.h"
#include "exec.h"
#include "io.h"
#include "pool.h"
#include "unframe.h"

#define SPAN (2u << 20)
#define DEFAULT_BUFS 6
#define MAX_DEFAULT_THREADS 8 /* 8 x ~2 GB/s of zstd decoding: any device's rate */
#define MEM_BOUND (16u << 20)
#define GAP (64u << 10) /* read through gaps this small (segment headers) */

struct piece {
	uint32_t in, len;       /* in the frame's plain bytes */
	uint8_t *dst;
};

struct fjob {
	uint64_t k;             /* frame number */
	uint8_t *direct;        /* the whole frame goes here, or NULL: pieces */
	size_t piece, npieces;
};

struct span {
	uint64_t off, len;
	size_t job, njobs;
};

struct buf {
	uint8_t *p;
	size_t span;
	uint64_t done;          /* bytes read so far (short reads) */
};

struct fx {
	struct fvm_fexec *x;
	struct fjob *jobs;
	size_t njobs;
	struct piece *pieces;
	size_t npieces;
	struct span *spans;
	size_t nspans;
	struct buf *bufs;
	unsigned nbufs;
	struct fvm_codec_ctx *cx; /* one per thread */
	uint8_t **scratch;        /* one frame per thread, made on first use */
	unsigned nthreads;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned *ready, nready;  /* buffers read, waiting to be decoded */
	unsigned *freel, nfree;   /* buffers to read into */
	unsigned idle;            /* decoders waiting for a ready buffer */
	int io_done;
	struct fvm_err_kept err;  /* the first error, with its thread's detail */
};

/* ------------------------------------------------------------ the plan */

static int push(void **v, size_t *cap, size_t n, size_t size)
{
	return fvm_grow(v, cap, n + 1, size);
}

/* Frames, pieces and spans from the plan's extents (in payload order). */
static int build(struct fx *f)
{
	const struct fvm_fexec *x = f->x;
	const struct fvm_plan *p = x->plan;
	size_t jcap = 0, pcap = 0, scap = 0, e = 0;

	for (uint64_t k = 0; k < x->nframes; k++) {
		const struct fvm_frame *fr = &x->frames[k];
		uint64_t lo = fr->plain_offset, hi = lo + fr->plain_len;
		size_t first = f->npieces;

		while (e < p->next && p->ext[e].file_off + p->ext[e].bytes <= lo)
			e++;
		for (size_t t = e; t < p->next && p->ext[t].file_off < hi; t++) {
			const struct fvm_plan_ext *pe = &p->ext[t];
			uint64_t s = pe->file_off > lo ? pe->file_off : lo;
			uint64_t end = pe->file_off + pe->bytes < hi ? pe->file_off + pe->bytes : hi;

			if (push((void **)&f->pieces, &pcap, f->npieces, sizeof(*f->pieces)))
				return fvm_err(FVM_ENOMEM, "%s: load plan", x->file);
			f->pieces[f->npieces++] = (struct piece){ (uint32_t)(s - lo),
								  (uint32_t)(end - s),
								  pe->dst + (s - pe->file_off) };
		}
		if (f->npieces == first)
			continue; /* nothing of it is live or mapped */
		if (push((void **)&f->jobs, &jcap, f->njobs, sizeof(*f->jobs)))
			return fvm_err(FVM_ENOMEM, "%s: load plan", x->file);
		f->jobs[f->njobs] = (struct fjob){ k, NULL, first, f->npieces - first };
		if (f->npieces - first == 1 && f->pieces[first].in == 0 &&
		    f->pieces[first].len == fr->plain_len)
			f->jobs[f->njobs].direct = f->pieces[first].dst;
		/* join the span before when it is near and has room */
		if (f->nspans) {
			struct span *s = &f->spans[f->nspans - 1];
			uint64_t end = fr->file_offset + fr->stored_len;

			if (fr->file_offset >= s->off + s->len &&
			    fr->file_offset - (s->off + s->len) <= GAP && end - s->off <= SPAN) {
				s->len = end - s->off;
				s->njobs++;
				f->njobs++;
				continue;
			}
		}
		if (push((void **)&f->spans, &scap, f->nspans, sizeof(*f->spans)))
			return fvm_err(FVM_ENOMEM, "%s: load plan", x->file);
		f->spans[f->nspans++] = (struct span){ fr->file_offset, fr->stored_len, f->njobs, 1 };
		f->njobs++;
	}
	return 0;
}

/* ------------------------------------------------------------ decoding */

static void set_err(struct fx *f, int rc)
{
	pthread_mutex_lock(&f->mu);
	fvm_err_keep(&f->err, rc);
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/*
 * The destination pages of a frame decoded in place, made present and
 * writable in one call (MADV_POPULATE_WRITE, Linux 5.14) before the
 * decoder writes them: a fresh guest page otherwise costs one fault each,
 * a quarter of a warm load of 1 GiB on this path (doc/BENCHMARKS.md 9).
 * Only the pages the frame covers whole; contents are never changed.
 * Refusals (older kernel, a range the kernel cannot populate) leave the
 * decoder's own faults to do it, as before.
 */
static void populate(uint8_t *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
	uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
	uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)4095;

	if (b > a)
		(void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
	(void)p;
	(void)n;
#endif
}

/* Decode every frame of the span in buffer b on thread t. */
static int decode_span(struct fx *f, unsigned b, unsigned t)
{
	const struct fvm_fexec *x = f->x;
	const struct span *s = &f->spans[f->bufs[b].span];

	for (size_t j = s->job; j < s->job + s->njobs; j++) {
		const struct fjob *jb = &f->jobs[j];
		const struct fvm_frame *fr = &x->frames[jb->k];
		const uint8_t *stored = f->bufs[b].p + (fr->file_offset - s->off);
		int rc;

		if (jb->direct) {
			populate(jb->direct, fr->plain_len);
			rc = fvm_unframe(&f->cx[t], fr, jb->k, stored, jb->direct, x->file,
					 x->check_plain);
		} else {
			if (!f->scratch[t] && !(f->scratch[t] = malloc(1u << x->fshift)))
				return fvm_err(FVM_ENOMEM, "%s: frame buffer", x->file);
			rc = fvm_unframe(&f->cx[t], fr, jb->k, stored, f->scratch[t], x->file,
					 x->check_plain);
			for (size_t i = 0; !rc && i < jb->npieces; i++) {
				const struct piece *pc = &f->pieces[jb->piece + i];

				memcpy(pc->dst, f->scratch[t] + pc->in, pc->len);
			}
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* Decode b, then give the buffer back. */
static void decode_and_free(struct fx *f, unsigned b, unsigned t)
{
	int rc = 0;

	pthread_mutex_lock(&f->mu);
	rc = f->err.rc;
	pthread_mutex_unlock(&f->mu);
	if (!rc && (rc = decode_span(f, b, t)))
		set_err(f, rc);
	pthread_mutex_lock(&f->mu);
	f->freel[f->nfree++] = b;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* A decoding thread: spans as they are read, until reading is over. */
static void decoder(struct fx *f, unsigned t)
{
	for (;;) {
		unsigned b;

		pthread_mutex_lock(&f->mu);
		while (!f->nready && !f->io_done) {
			f->idle++;
			pthread_cond_wait(&f->cv, &f->mu);
			f->idle--;
		}
		if (!f->nready) {
			pthread_mutex_unlock(&f->mu);
			return;
		}
		b = f->ready[--f->nready];
		pthread_mutex_unlock(&f->mu);
		decode_and_free(f, b, t);
	}
}

/* ------------------------------------------------------------ reading */

static void make_ready(struct fx *f, unsigned b)
{
	pthread_mutex_lock(&f->mu);
	f->ready[f->nready++] = b;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/*
 * A free buffer, or UINT32_MAX when there is none and the caller must
 * wait for a read to complete (inflight > 0); with nothing in flight,
 * decode a ready span here or wait until a decoder frees a buffer.
 */
static unsigned take_free(struct fx *f, unsigned inflight)
{
	unsigned b = UINT32_MAX;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		if (f->nfree) {
			b = f->freel[--f->nfree];
			break;
		}
		if (inflight || f->err.rc)
			break;
		if (f->nready) {
			unsigned r = f->ready[--f->nready];

			pthread_mutex_unlock(&f->mu);
			decode_and_free(f, r, 0);
			pthread_mutex_lock(&f->mu);
			continue;
		}
		pthread_cond_wait(&f->cv, &f->mu);
	}
	pthread_mutex_unlock(&f->mu);
	return b;
}

/*
 * A ready buffer that no waiting decoder will take (every decoder is busy),
 * for the reading thread to decode while its reads are in flight; else
 * UINT32_MAX. With one decoder per CPU and the caller's thread among them,
 * the caller's thread would otherwise only wait on the ring, and a 2-CPU
 * machine decode on one core while the device is read.
 */
static unsigned take_spare(struct fx *f)
{
	unsigned b = UINT32_MAX;

	pthread_mutex_lock(&f->mu);
	if (f->nready > f->idle && !f->err.rc)
		b = f->ready[--f->nready];
	pthread_mutex_unlock(&f->mu);
	return b;
}

static int failed(struct fx *f)
{
	int rc;

	pthread_mutex_lock(&f->mu);
	rc = f->err.rc;
	pthread_mutex_unlock(&f->mu);
	return rc;
}

static int progress(struct fx *f, uint64_t done)
{
	struct fvm_fexec *x = f->x;
	int rc;

	if (!x->progress)
		return 0;
	fvm_err_clear();
	rc = x->progress(x->progress_ctx, done, x->stored_bytes);
	return rc ? fvm_err_callback(rc, "%s: load canceled", x->file) : 0;
}

static void read_pread(struct fx *f)
{
	struct fvm_fexec *x = f->x;
	uint64_t done = 0;

	for (size_t i = 0; i < f->nspans && !failed(f); i++) {
		unsigned b = take_free(f, 0);
		int rc;

		if (b == UINT32_MAX)
			break;
		f->bufs[b].span = i;
		rc = fvm_pread_full(x->fd, f->bufs[b].p, f->spans[i].len, f->spans[i].off,
				    x->file, "frames");
		x->requests++;
		if (!rc) {
			x->bytes += f->spans[i].len;
			done += f->spans[i].len;
			rc = progress(f, done);
		}
		if (rc) {
			set_err(f, rc);
			pthread_mutex_lock(&f->mu);
			f->freel[f->nfree++] = b;
			pthread_mutex_unlock(&f->mu);
			break;
		}
		make_ready(f, b);
	}
}

static void prep(struct io_uring *ring, struct fx *f, unsigned b)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring); /* <= nbufs in flight */
	const struct span *s = &f->spans[f->bufs[b].span];

	io_uring_prep_read(sqe, f->x->fd, f->bufs[b].p + f->bufs[b].done,
			   (unsigned)(s->len - f->bufs[b].done), s->off + f->bufs[b].done);
	io_uring_sqe_set_data(sqe, &f->bufs[b]);
}

static void read_uring(struct fx *f, struct io_uring *ring)
{
	struct fvm_fexec *x = f->x;
	unsigned inflight = 0, wait_errors = 0;
	size_t next = 0;
	uint64_t done = 0;

	for (;;) {
		int queued = 0, rc;
		struct io_uring_cqe *cqe;
		struct buf *bf;

		while (next < f->nspans && !failed(f)) {
			unsigned b = take_free(f, inflight + (unsigned)queued);

			if (b == UINT32_MAX)
				break;
			f->bufs[b].span = next++;
			f->bufs[b].done = 0;
			prep(ring, f, b);
			queued++;
			x->requests++;
		}
		if (queued) {
			rc = io_uring_submit(ring);
			if (rc < 0) /* none of them went: stop, reap what is in flight */
				set_err(f, fvm_err_sys(-rc, "%s: io_uring_submit", x->file));
			else
				inflight += (unsigned)rc;
		}
		if (!inflight)
			break;
		rc = io_uring_peek_cqe(ring, &cqe);
		if (rc == -EAGAIN) {
			unsigned b = take_spare(f);

			if (b != UINT32_MAX) {
				decode_and_free(f, b, 0);
				continue;
			}
			rc = io_uring_wait_cqe(ring, &cqe);
		}
		if (rc < 0) {
			/* reads in flight write into the caller's memory: keep
			 * waiting for them (EINTR), whatever else failed */
			if (rc != -EINTR && !failed(f))
				set_err(f, fvm_err_sys(-rc, "%s: io_uring_wait_cqe", x->file));
			if (rc != -EINTR && ++wait_errors > 1000)
				return;
			continue;
		}
		bf = io_uring_cqe_get_data(cqe);
		rc = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		inflight--;
		if (rc == -EINTR || rc == -EAGAIN) {
			if (!failed(f)) {
				prep(ring, f, (unsigned)(bf - f->bufs));
				inflight += io_uring_submit(ring) > 0;
			}
			continue;
		}
		if (rc <= 0 && !failed(f))
			set_err(f, rc < 0 ? fvm_err_sys(-rc, "%s: frames at offset 0x%" PRIx64,
							x->file, f->spans[bf->span].off + bf->done)
				      : fvm_err(FVM_ETRUNCATED, "%s: frames at offset 0x%" PRIx64
						": end of file", x->file,
						f->spans[bf->span].off + bf->done));
		if (rc > 0) {
			bf->done += (uint64_t)rc;
			x->bytes += (uint64_t)rc;
			done += (uint64_t)rc;
		}
		if (rc > 0 && bf->done < f->spans[bf->span].len && !failed(f)) {
			prep(ring, f, (unsigned)(bf - f->bufs)); /* short: the rest */
			inflight += io_uring_submit(ring) > 0;
			continue;
		}
		if (failed(f)) {
			pthread_mutex_lock(&f->mu);
			f->freel[f->nfree++] = (unsigned)(bf - f->bufs);
			pthread_mutex_unlock(&f->mu);
			continue;
		}
		make_ready(f, (unsigned)(bf - f->bufs));
		if ((rc = progress(f, done)))
			set_err(f, rc);
	}
}

struct run_arg {
	struct fx *f;
	struct io_uring *ring;
};

static void thread_main(void *ctx, unsigned t)
{
	struct run_arg *a = ctx;
	struct fx *f = a->f;

	if (t) {
		decoder(f, t);
		return;
	}
	if (a->ring)
		read_uring(f, a->ring);
	else
		read_pread(f);
	pthread_mutex_lock(&f->mu);
	f->io_done = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	decoder(f, 0); /* help with what is left */
}

/* ------------------------------------------------------------ the call */

int fvm_exec_frames(struct fvm_fexec *x)
{
	struct fx f;
	struct io_uring ring;
	struct run_arg a = { &f, NULL };
	uint64_t F = 1ull << x->fshift;
	size_t bufsize = SPAN > F ? SPAN : F;
	int rc;

	memset(&f, 0, sizeof(f));
	f.x = x;
	x->requests = x->bytes = 0;
	rc = build(&f);
	for (size_t i = 0; !rc && i < f.nspans; i++)
		x->stored_bytes += f.spans[i].len;
	/*
	 * Defaults keep the memory beyond the destination within MEM_BOUND:
	 * bufs x bufsize + threads x frame (a thread's frame buffer is made
	 * only when it decodes a frame that is not all one run's).
	 */
	f.nthreads = x->threads ? (x->threads > 64 ? 64 : x->threads)
				: (fvm_cpus() > MAX_DEFAULT_THREADS ? MAX_DEFAULT_THREADS : fvm_cpus());
	if (f.nthreads > f.nspans)
		f.nthreads = f.nspans ? (unsigned)f.nspans : 1;
	if (x->bufs) {
		f.nbufs = x->bufs;
	} else {
		uint64_t left = MEM_BOUND > (uint64_t)f.nthreads * F ? MEM_BOUND - f.nthreads * F : 0;

		f.nbufs = (unsigned)(left / bufsize);
		f.nbufs = f.nbufs < 2 ? 2 : f.nbufs > DEFAULT_BUFS ? DEFAULT_BUFS : f.nbufs;
	}
	if (f.nbufs > f.nspans)
		f.nbufs = f.nspans ? (unsigned)f.nspans : 1;
	if (!rc) {
		f.bufs = calloc(f.nbufs, sizeof(*f.bufs));
		f.ready = calloc(f.nbufs, sizeof(*f.ready));
		f.freel = calloc(f.nbufs, sizeof(*f.freel));
		f.cx = calloc(f.nthreads, sizeof(*f.cx));
		f.scratch = calloc(f.nthreads, sizeof(*f.scratch));
		if (!f.bufs || !f.ready || !f.freel || !f.cx || !f.scratch)
			rc = fvm_err(FVM_ENOMEM, "%s: load buffers", x->file);
	}
	for (unsigned i = 0; !rc && i < f.nbufs; i++) {
		if (!(f.bufs[i].p = malloc(bufsize)))
			rc = fvm_err(FVM_ENOMEM, "%s: %u read buffers of %zu bytes", x->file,
				     f.nbufs, bufsize);
		f.freel[f.nfree++] = i;
	}
	if (!rc && f.nspans) {
		for (unsigned i = 0; i < f.nthreads; i++)
			fvm_codec_ctx_init(&f.cx[i], x->codec, 0);
		x->backend = "pread";
		if (!x->no_uring) {
			int q = io_uring_queue_init(f.nbufs, &ring, 0);

			if (q == 0) {
				a.ring = &ring;
				x->backend = "io_uring";
			} else {
				x->why = "io_uring_setup failed";
			}
		}
		pthread_mutex_init(&f.mu, NULL);
		pthread_cond_init(&f.cv, NULL);
		fvm_parallel(f.nthreads, thread_main, &a, &x->threads_run);
		pthread_mutex_destroy(&f.mu);
		pthread_cond_destroy(&f.cv);
		if (a.ring)
			io_uring_queue_exit(&ring);
		if (f.err.rc)
			rc = fvm_err_raise(&f.err);
	}
	for (unsigned i = 0; f.bufs && i < f.nbufs; i++)
		free(f.bufs[i].p);
	for (unsigned i = 0; f.cx && i < f.nthreads; i++) {
		fvm_codec_ctx_free(&f.cx[i]);
		free(f.scratch[i]);
	}
	free(f.bufs);
	free(f.ready);
	free(f.freel);
	free(f.cx);
	free(f.scratch);
	free(f.jobs);
	free(f.pieces);
	free(f.spans);
	return rc;
}
