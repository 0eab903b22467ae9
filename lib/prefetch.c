/*
 * fvm_prefetch (fastvm.h): the page cache filled in file order behind a
 * lazy load. The payload ranges of the index's DATA extents are sorted by
 * file offset and merged where they touch (or nearly: a gap of a segment
 * header is read through), then read in pieces of PIECE bytes by one
 * thread, which checks for cancellation between pieces. A piece is mapped
 * and populated (MADV_POPULATE_READ, Linux 5.14): the kernel reads it into
 * the page cache and the call returns when it is there, without a copy;
 * older kernels read it with pread into a buffer. (readahead(2) and
 * WILLNEED only start reads, capped by the device's readahead size: the
 * pages are not resident when they return, as tests/test_prefetch.c saw.)
 * The faults of the lazily mapped guest memory then find their pages in
 * the page cache. Memory: the list of ranges (16 bytes per merged range),
 * and PIECE bytes on the pread path.
 *
 * After the lazy load of an authenticated file the pages are not the page
 * cache's but installed one by one, checked, by that load's handler
 * (uffd.c): a prefetch is then only a handle on it, asking it to install
 * every remaining page and reporting how far it got and the first failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "reader.h"
#include "uffd.h"

#define PIECE (2u << 20)
#define GAP (64u << 10)

struct range {
	uint64_t off, len;
};

struct fvm_prefetch {
	struct fvm_uffd *u;     /* an authenticated lazy load's fill, or NULL */
	int fd;
	const char *file;
	struct range *r;
	size_t n;
	uint64_t total;
	atomic_uint_fast64_t done;
	atomic_int cancel, ended;
	int err;                /* errno of a failed read */
	uint64_t err_off;
	pthread_t t;
	int joined;
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Bring k bytes at off into the page cache; 0 or an errno. */
static int populate(struct fvm_prefetch *p, uint64_t off, uint64_t k, uint8_t **buf)
{
	void *m;
	int e = 0;

	if (!*buf) {
		m = mmap(NULL, (size_t)k, PROT_READ, MAP_SHARED, p->fd, (off_t)off);
		if (m != MAP_FAILED) {
			e = madvise(m, (size_t)k, MADV_POPULATE_READ) ? errno : 0;
			munmap(m, (size_t)k);
			if (e != EINVAL && e != ENOSYS)
				return e == EFAULT ? EIO : e; /* EFAULT: the file is shorter */
		}
		*buf = malloc(PIECE); /* a kernel before 5.14: read it */
		if (!*buf)
			return ENOMEM;
	}
	while (k) {
		ssize_t r = pread(p->fd, *buf, (size_t)k, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		off += (uint64_t)r;
		k -= (uint64_t)r;
	}
	return 0;
}

static void *run(void *arg)
{
	struct fvm_prefetch *p = arg;
	uint8_t *buf = NULL;

	for (size_t i = 0; i < p->n && !atomic_load(&p->cancel); i++)
		for (uint64_t at = 0; at < p->r[i].len && !atomic_load(&p->cancel);) {
			uint64_t k = p->r[i].len - at < PIECE ? p->r[i].len - at : PIECE;
			int e = populate(p, p->r[i].off + at, k, &buf);

			if (e == EINTR || e == EAGAIN)
				continue;
			if (e) {
				p->err = e;
				p->err_off = p->r[i].off + at;
				goto out;
			}
			at += k;
			atomic_fetch_add(&p->done, k);
		}
out:
	free(buf);
	atomic_store(&p->ended, 1);
	return NULL;
}

int fvm_prefetch_start(fvm_reader *r, uint32_t flags, fvm_prefetch **out)
{
	struct fvm_prefetch *p;
	const struct fvm_model *m;
	size_t k = 0;

	fvm_api_begin();
	if (!r || !out)
		return fvm_err(FVM_EINVAL, "fvm_prefetch_start: NULL argument");
	*out = NULL;
	m = &r->m;
	if (flags)
		return fvm_err(FVM_EINVAL, "fvm_prefetch_start: unknown flags 0x%x", flags);
	if (r->streamed)
		return fvm_err(FVM_EINVAL, "%s: a stream is not read again", m->file);
	if (r->uffd) {
		int rc;

		p = calloc(1, sizeof(*p));
		if (!p)
			return fvm_err(FVM_ENOMEM, "%s: prefetch", m->file);
		rc = fvm_uffd_prefetch(r->uffd);
		if (rc) {
			free(p);
			return rc;
		}
		p->u = r->uffd;
		p->joined = 1;
		*out = p;
		return 0;
	}
	if (m->compressed)
		return fvm_err(FVM_EUNSUPPORTED, "%s: compressed runs are never lazily mapped; "
			       "fvm_load reads them", m->file);
	p = calloc(1, sizeof(*p));
	if (!p || !(p->r = malloc((m->next ? m->next : 1) * sizeof(*p->r)))) {
		free(p);
		return fvm_err(FVM_ENOMEM, "%s: prefetch of %" PRIu64 " runs", m->file, m->next);
	}
	for (uint64_t i = 0; i < m->next; i++) {
		const struct fvm_extent *e = &m->ext[i];

		if (e->flags & FVM_RUN_FLAG_DATA)
			p->r[k++] = (struct range){ e->payload_offset,
						    e->page_count << m->blocks[e->block_id].page_shift };
	}
	if (k)
		qsort(p->r, k, sizeof(*p->r), range_cmp);
	p->n = 0;
	for (size_t i = 0; i < k; i++) { /* merge neighbours in the file */
		struct range *last = p->n ? &p->r[p->n - 1] : NULL;

		if (last && p->r[i].off >= last->off + last->len &&
		    p->r[i].off - (last->off + last->len) <= GAP) {
			last->len = p->r[i].off + p->r[i].len - last->off;
		} else {
			p->r[p->n++] = p->r[i];
		}
	}
	for (size_t i = 0; i < p->n; i++) /* what is read: gaps read through included */
		p->total += p->r[i].len;
	p->fd = r->fd;
	p->file = m->file;
	(void)posix_fadvise(p->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (pthread_create(&p->t, NULL, run, p)) {
		free(p->r);
		free(p);
		return fvm_err(FVM_EUNSUPPORTED, "%s: prefetch: no thread", m->file);
	}
	*out = p;
	return 0;
}

int fvm_prefetch_status(const fvm_prefetch *p, uint64_t *done, uint64_t *total, int *ended)
{
	fvm_api_begin();
	if (!p)
		return fvm_err(FVM_EINVAL, "fvm_prefetch_status: NULL prefetch");
	if (p->u)
		return fvm_api_end(fvm_uffd_status(p->u, done, total, ended));
	if (done)
		*done = atomic_load(&((struct fvm_prefetch *)p)->done);
	if (total)
		*total = p->total;
	if (ended)
		*ended = atomic_load(&((struct fvm_prefetch *)p)->ended);
	return 0;
}

int fvm_prefetch_wait(fvm_prefetch *p)
{
	fvm_api_begin();
	if (!p)
		return fvm_err(FVM_EINVAL, "fvm_prefetch_wait: NULL prefetch");
	if (p->u)
		return fvm_api_end(fvm_uffd_wait(p->u));
	if (!p->joined) {
		pthread_join(p->t, NULL);
		p->joined = 1;
	}
	if (p->err)
		return fvm_err_sys(p->err, "%s: prefetch: reading at offset 0x%" PRIx64,
				   p->file, p->err_off);
	return 0;
}

void fvm_prefetch_free(fvm_prefetch *p)
{
	if (!p)
		return;
	if (p->u) {
		fvm_uffd_cancel(p->u);
		free(p);
		return;
	}
	atomic_store(&p->cancel, 1);
	if (!p->joined)
		pthread_join(p->t, NULL);
	free(p->r);
	free(p);
}
