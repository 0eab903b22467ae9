/*
 * The mmap executor: no read and no copy. Every run of the plan is mapped
 * MAP_PRIVATE | MAP_FIXED over its place in the caller's memory, with
 * MAP_POPULATE, so when this returns every data page is present and
 * readable, backed by the page cache; a page the guest writes is copied
 * then (copy on write). The format puts every payload at a 4 KiB-aligned
 * file offset, which is what makes this possible.
 *
 * Lazy (FVM_LOAD_LAZY): no MAP_POPULATE, so this returns once every run is
 * mapped and each page is read when first touched (a minor fault from the
 * page cache, or a major one with the kernel's read-around from the
 * device): the time to resume no longer grows with the RAM.
 *
 * Costs moved, not removed: a write to a mapped page pays a 4 KiB copy
 * later (fvmsnap bench shows it as "mmap+write"); the file must not change
 * while mapped (pages not yet written follow the file); the caller's range
 * becomes a file mapping (not for shared or hugetlbfs guest memory).
 * Any mmap failure returns FVM_EUNSUPPORTED with the reason, and the loader
 * then copies everything with a reading executor: a copy into a range
 * already mapped here is correct too (it writes the private copy).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>

#include "error.h"
#include "exec.h"

int fvm_exec_mmap(struct fvm_exec *x, const char **why)
{
	const struct fvm_plan *p = x->plan;

	if (!p->aligned) {
		*why = "mmap: a destination is not 4 KiB-aligned";
		return fvm_err(FVM_EUNSUPPORTED, "%s: %s", x->file, *why);
	}
	if (p->shared) {
		/* a private file mapping over shared memory would detach it
		 * from whoever shares it (vhost-user, a file backend) */
		*why = "mmap: a destination is shared or hugetlbfs memory";
		return fvm_err(FVM_EUNSUPPORTED, "%s: %s (mapping %s)", x->file, *why, p->shared);
	}
	for (size_t q = 0; q < p->nreq; q++) {
		const struct fvm_plan_req *r = &p->req[q];
		uint64_t off = r->file_off;
		int rc;

		for (size_t k = 0; k < r->niov; k++) {
			const struct iovec *v = &p->iov[r->iov + k];
			/*
			 * Read-only first: MAP_POPULATE of a writable private
			 * mapping would break copy-on-write at once (a copy of
			 * every page); populated read-only, the pages are the page
			 * cache's, and making them writable afterwards faults
			 * nothing in.
			 */
			void *m = x->lazy
				  ? mmap(v->iov_base, v->iov_len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_FIXED, x->fd, (off_t)off)
				  : mmap(v->iov_base, v->iov_len, PROT_READ,
					 MAP_PRIVATE | MAP_FIXED | MAP_POPULATE, x->fd, (off_t)off);

			if (m != MAP_FAILED && !x->lazy &&
			    mprotect(m, v->iov_len, PROT_READ | PROT_WRITE) < 0)
				m = MAP_FAILED;
			if (m == MAP_FAILED) {
				*why = errno == ENODEV ? "mmap: the file system cannot map files"
				       : errno == EINVAL ? "mmap: refused (EINVAL)"
				       : "mmap: failed";
				return fvm_err(FVM_EUNSUPPORTED, "%s: %s: %s at file offset 0x%" PRIx64,
					       x->file, *why, strerror(errno), off);
			}
			off += v->iov_len;
			x->mapped += v->iov_len;
		}
		x->requests++;
		if (!x->lazy) /* populated: every byte came through the page cache */
			x->bytes += r->len;
		if (x->done && (rc = x->done(x, q)))
			return rc;
	}
	return 0;
}
