/*
 * The io_uring executor: queue_depth reads in flight, submitted in file
 * order, each a READ (one iovec) or READV (scatter over several runs) of
 * up to chunk_bytes. Buffered reads carry IOSQE_ASYNC unless the caller
 * asked for FVM_LOAD_INLINE: io_uring's kernel workers then copy out of
 * the page cache on every CPU at once, where inline completion would copy
 * everything in the submitting thread. Short reads are resubmitted for the remainder, EAGAIN
 * and EINTR completions retried. On any error nothing new is submitted and
 * the reads in flight are reaped before returning: they write into the
 * caller's memory (should waiting fail as well, by polling the CQ ring).
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "exec.h"

struct slot {
	size_t req;
	uint64_t off, left;
	struct iovec *iov;      /* plan iovecs, or fix after a short read */
	int niov;
	struct iovec *fix;      /* allocated on the first short read */
};

static const char *setup_reason(int err)
{
	switch (err) {
	case ENOSYS: return "io_uring_setup: ENOSYS (kernel without io_uring)";
	case EPERM: return "io_uring_setup: EPERM (io_uring disabled by sysctl or seccomp)";
	case EACCES: return "io_uring_setup: EACCES (not permitted)";
	case ENOMEM: return "io_uring_setup: ENOMEM (locked memory limit)";
	case EINVAL: return "io_uring_setup: EINVAL (kernel too old)";
	case EMFILE: case ENFILE: return "io_uring_setup: out of file descriptors";
	}
	return "io_uring_setup failed";
}

static void prep(struct io_uring *ring, const struct fvm_exec *x, struct slot *s)
{
	int fd = x->fd;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	/* never NULL: at most queue_depth slots, one SQE each, SQ emptied by
	 * every submit */
	if (s->niov == 1)
		io_uring_prep_read(sqe, fd, s->iov[0].iov_base, (unsigned)s->iov[0].iov_len,
				   s->off);
	else
		io_uring_prep_readv(sqe, fd, s->iov, (unsigned)s->niov, s->off);
	if (x->async)
		sqe->flags |= IOSQE_ASYNC;
	io_uring_sqe_set_data(sqe, s);
}

/* Skip k bytes of the slot's iovecs after a short read. */
static int advance(struct slot *s, size_t k)
{
	if (!s->fix) {
		s->fix = malloc((size_t)s->niov * sizeof(*s->fix));
		if (!s->fix)
			return FVM_ENOMEM;
		memcpy(s->fix, s->iov, (size_t)s->niov * sizeof(*s->fix));
		s->iov = s->fix;
	}
	while (k && k >= s->iov[0].iov_len) {
		k -= s->iov[0].iov_len;
		s->iov++;
		s->niov--;
	}
	if (k) {
		s->iov[0].iov_base = (uint8_t *)s->iov[0].iov_base + k;
		s->iov[0].iov_len -= k;
	}
	return 0;
}

static void start(struct fvm_exec *x, struct slot *s, size_t q)
{
	const struct fvm_plan_req *r = &x->plan->req[q];

	free(s->fix);
	*s = (struct slot){ q, r->file_off, r->len, &x->plan->iov[r->iov], (int)r->niov, NULL };
}

/*
 * One completion. Returns 1 when the slot is free again, 0 when it was
 * resubmitted; *err receives the first error.
 */
static int complete(struct fvm_exec *x, struct io_uring *ring, struct slot *s, int res,
		    int *err)
{
	if (res == -EAGAIN || res == -EINTR) {
		if (*err)
			return 1;
		x->requests++;
		prep(ring, x, s);
		return 0;
	}
	if (res < 0) {
		if (!*err) {
			x->sys_errno = -res;
			*err = fvm_err_sys(-res, "%s: read request %zu: %" PRIu64 " bytes at "
					   "file offset 0x%" PRIx64, x->file, s->req, s->left,
					   s->off);
		}
		return 1;
	}
	if (res == 0) {
		if (!*err)
			*err = fvm_err(FVM_ETRUNCATED, "%s: read request %zu: file ends at "
				       "offset 0x%" PRIx64, x->file, s->req, s->off);
		return 1;
	}
	x->bytes += (uint64_t)res;
	s->off += (uint64_t)res;
	s->left -= (uint64_t)res;
	if (s->left) { /* short read: the remainder goes back in */
		if (*err)
			return 1;
		if (advance(s, (size_t)res)) {
			*err = fvm_err(FVM_ENOMEM, "%s: read request %zu", x->file, s->req);
			return 1;
		}
		x->requests++;
		prep(ring, x, s);
		return 0;
	}
	if (!*err && x->done)
		*err = x->done(x, s->req);
	return 1;
}

int fvm_exec_uring(struct fvm_exec *x, const char **why)
{
	const struct fvm_plan *p = x->plan;
	unsigned qd = x->queue_depth ? x->queue_depth : 1;
	struct slot *slots, **freel;
	struct io_uring ring;
	size_t next = 0;
	unsigned inflight = 0, nfree, idle = 0;
	int rc, err = 0, broken = 0, deaf = 0;

	if (!p->nreq)
		return 0;
	if (qd > p->nreq)
		qd = (unsigned)p->nreq;
	if (qd > 4096)
		qd = 4096;
	rc = io_uring_queue_init(qd, &ring, 0);
	if (rc < 0) {
		*why = setup_reason(-rc);
		return fvm_err(FVM_EUNSUPPORTED, "%s: %s", x->file, *why);
	}
	slots = calloc(qd, sizeof(*slots));
	freel = calloc(qd, sizeof(*freel));
	if (!slots || !freel) {
		free(slots);
		free(freel);
		io_uring_queue_exit(&ring);
		return fvm_err(FVM_ENOMEM, "%s: io_uring slots", x->file);
	}
	for (nfree = 0; nfree < qd; nfree++)
		freel[nfree] = &slots[nfree];

	while ((next < p->nreq && !err) || inflight) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		while (!err && next < p->nreq && nfree) {
			struct slot *s = freel[--nfree];

			fvm_exec_hint(x, p->req[next].file_off);
			start(x, s, next++);
			x->requests++;
			prep(&ring, x, s);
			inflight++;
		}
		if (deaf) {
			/*
			 * Waiting failed too, but the kernel still posts each
			 * completion to the CQ ring: poll it, for the reads write
			 * into the caller's memory. Given up after 10 s without
			 * one (completions the kernel dropped never come).
			 */
			if (!io_uring_cq_ready(&ring)) {
				if (++idle > 100000)
					break;
				nanosleep(&(struct timespec){ 0, 100000 }, NULL);
				continue;
			}
			idle = 0;
			rc = 0;
		} else {
			rc = broken ? io_uring_wait_cqe(&ring, &cqe) : io_uring_submit_and_wait(&ring, 1);
		}
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			unsigned lost = io_uring_sq_ready(&ring);

			if (broken) {
				deaf = 1;
				continue;
			}
			/* submitting failed: submit nothing more, but reap the
			 * reads the kernel took (they write into caller memory) */
			broken = 1;
			if (!err)
				err = fvm_err_sys(-rc, "%s: io_uring_submit", x->file);
			inflight -= lost < inflight ? lost : inflight;
			continue;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			struct slot *s = io_uring_cqe_get_data(cqe);

			seen++;
			if (complete(x, &ring, s, cqe->res, &err)) {
				inflight--;
				freel[nfree++] = s;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	/* inflight is 0 here unless the kernel dropped completions */
	io_uring_queue_exit(&ring);
	for (unsigned i = 0; i < qd; i++)
		free(slots[i].fix);
	free(slots);
	free(freel);
	return err;
}
