/*
 * The preadv executor: one request at a time, in file order. It is the
 * fallback when io_uring cannot be set up and the path FVM_BACKEND=pread
 * forces. Its read of one request is also what the threads of an
 * authenticated load run (load.c). Also home of the WILLNEED window both
 * executors share.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "error.h"
#include "exec.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

void fvm_exec_hint(struct fvm_exec *x, uint64_t pos)
{
	uint64_t end, start;

	if (!x->window)
		return;
	/* renew when half the window is used: one fadvise per half window */
	if (x->hinted > pos && x->hinted - pos > x->window / 2)
		return;
	end = pos + x->window < x->plan->hi ? pos + x->window : x->plan->hi;
	start = x->hinted > pos ? x->hinted : pos;
	if (end <= start)
		return;
	/* advice only: a failure costs speed, never correctness */
	(void)posix_fadvise(x->fd, (off_t)start, (off_t)(end - start), POSIX_FADV_WILLNEED);
	x->hinted = end;
}

/* Skip k bytes of *iov (copied into fix first, the plan is read-only). */
static void advance(struct iovec **iov, int *n, struct iovec *fix, size_t k)
{
	if (*iov != fix) {
		memcpy(fix, *iov, (size_t)*n * sizeof(*fix));
		*iov = fix;
	}
	while (k && k >= (*iov)[0].iov_len) {
		k -= (*iov)[0].iov_len;
		(*iov)++;
		(*n)--;
	}
	if (k) {
		(*iov)[0].iov_base = (uint8_t *)(*iov)[0].iov_base + k;
		(*iov)[0].iov_len -= k;
	}
}

int fvm_exec_read_req(struct fvm_exec *x, size_t q, struct iovec *fix)
{
	const struct fvm_plan_req *r = &x->plan->req[q];
	struct iovec *iov = &x->plan->iov[r->iov];
	int n = (int)r->niov;
	uint64_t off = r->file_off, left = r->len;

	while (left) {
		ssize_t k;

		x->requests++;
		k = preadv(x->fd, iov, n, (off_t)off);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0) {
			x->sys_errno = errno;
			return fvm_err_sys(errno, "%s: read request %zu: %" PRIu64 " bytes at "
					   "file offset 0x%" PRIx64, x->file, q, left, off);
		}
		if (k == 0)
			return fvm_err(FVM_ETRUNCATED, "%s: read request %zu: file ends at "
				       "offset 0x%" PRIx64, x->file, q, off);
		x->bytes += (uint64_t)k;
		off += (uint64_t)k;
		left -= (uint64_t)k;
		if (left) /* short read: go on with the remainder */
			advance(&iov, &n, fix, (size_t)k);
	}
	return 0;
}

int fvm_exec_pread(struct fvm_exec *x)
{
	const struct fvm_plan *p = x->plan;
	struct iovec *fix;
	int rc = 0;

	if (!p->nreq)
		return 0;
	fix = malloc(IOV_MAX * sizeof(*fix));
	if (!fix)
		return fvm_err(FVM_ENOMEM, "%s: read loop", x->file);
	for (size_t q = 0; q < p->nreq && !rc; q++) {
		fvm_exec_hint(x, p->req[q].file_off);
		rc = fvm_exec_read_req(x, q, fix);
		if (!rc && x->done)
			rc = x->done(x, q);
	}
	free(fix);
	return rc;
}
