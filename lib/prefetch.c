/*
 * fvm_prefetch (fastvm.h): the page cache filled in file order behind a
 * lazy load. The payload ranges of the index's DATA extents are sorted by
 * file offset and merged where they touch (or nearly: a gap of a segment
 * header is read through), then read by one thread, which checks for
 * cancellation between pieces.
 *
 * The guest's faults must not queue behind the prefetch: on slow flash
 * every byte the prefetch has in flight when a fault comes is read before
 * that fault's own pages (with the kernel's readahead driving the
 * prefetch, a plain-order snapshot on the emulated 137 MB/s eMMC reached
 * its first heartbeat up to twice as late as without any prefetch;
 * doc/BENCHMARKS.md 9, session 8). So the thread starts paced: reads of PACED bytes,
 * one at a time, through a file description of its own with readahead off
 * (POSIX_FADV_RANDOM: a read is the bytes asked for, no more in flight),
 * and before each read it waits while the process's other threads are
 * taking major faults (a vCPU reading guest pages from the device), at
 * most YIELD_MAX steps of 1 ms per read, so that it always moves on. When
 * the paced reads of a PROBE window come in at FAST_RATE or more (a fast
 * device, or the page cache already holds them), faults are cheap and
 * the thread goes fast: pieces of FAST bytes of the reader's own fd
 * mapped and populated (MADV_POPULATE_READ, Linux 5.14), the kernel's
 * readahead keeping the device busy, without a copy; older kernels read
 * them with pread into a buffer. (readahead(2) and WILLNEED only start
 * reads, capped by the device's readahead size: the pages are not
 * resident when they return, as tests/test_prefetch.c saw.) Without a
 * file description of its own (fvm_reader_reopen failed)
 * it is fast from the start. Memory: the list of ranges (16 bytes per
 * merged range), and one buffer of FAST bytes on the pread paths.
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "io.h"
#include "reader.h"
#include "uffd.h"

#define FAST (2u << 20)
#define PACED (256u << 10)
#define PROBE (8u << 20)
#define FAST_RATE 400000000u /* bytes per second: faults are cheap from here on */
#define YIELD_MAX 20
#define GAP (64u << 10)

struct range {
	uint64_t off, len;
};

struct fvm_prefetch {
	struct fvm_uffd *u;     /* an authenticated lazy load's fill, or NULL */
	int fd;
	int pfd;                /* the paced reads' own file description, or -1 */
	int fast, no_populate;
	long flt;               /* major faults of the other threads, last seen */
	uint8_t *buf;
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

static int read_all(struct fvm_prefetch *p, int fd, uint64_t off, uint64_t k)
{
	if (!p->buf && !(p->buf = malloc(FAST)))
		return ENOMEM;
	while (k) {
		ssize_t r = pread(fd, p->buf, (size_t)k, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		off += (uint64_t)r;
		k -= (uint64_t)r;
	}
	return 0;
}

/* Bring k (<= FAST) bytes at off into the page cache; 0 or an errno. */
static int read_piece(struct fvm_prefetch *p, uint64_t off, uint64_t k)
{
	void *m;
	int e;

	if (!p->fast)
		return read_all(p, p->pfd, off, k);
	if (p->no_populate)
		return read_all(p, p->fd, off, k);
	m = mmap(NULL, (size_t)k, PROT_READ, MAP_SHARED, p->fd, (off_t)off);
	if (m != MAP_FAILED) {
		e = madvise(m, (size_t)k, MADV_POPULATE_READ) ? errno : 0;
		munmap(m, (size_t)k);
		if (e != EINVAL && e != ENOSYS)
			return e == EFAULT ? EIO : e; /* EFAULT: the file is shorter */
	}
	p->no_populate = 1; /* a kernel before 5.14: read it */
	return read_all(p, p->fd, off, k);
}

/* Major faults of the process's threads other than this one. */
static long others_faults(void)
{
	struct rusage all, me;

	if (getrusage(RUSAGE_SELF, &all) || getrusage(RUSAGE_THREAD, &me))
		return 0;
	return all.ru_majflt - me.ru_majflt;
}

/* Wait while other threads take major faults: 1 ms steps, YIELD_MAX at most. */
static void yield_to_faults(struct fvm_prefetch *p)
{
	for (int i = 0; i < YIELD_MAX && !atomic_load(&p->cancel); i++) {
		long f = others_faults();
		struct timespec ms = { 0, 1000000 };

		if (f == p->flt)
			return;
		p->flt = f;
		nanosleep(&ms, NULL);
	}
}

static void *run(void *arg)
{
	struct fvm_prefetch *p = arg;
	uint64_t probed = 0, spent = 0;

	p->flt = others_faults();
	for (size_t i = 0; i < p->n && !atomic_load(&p->cancel); i++)
		for (uint64_t at = 0; at < p->r[i].len && !atomic_load(&p->cancel);) {
			uint64_t piece = p->fast ? FAST : PACED;
			uint64_t k = p->r[i].len - at < piece ? p->r[i].len - at : piece;
			uint64_t t;
			int e;

			yield_to_faults(p);
			t = fvm_now_ns();
			e = read_piece(p, p->r[i].off + at, k);
			if (e == EINTR || e == EAGAIN)
				continue;
			if (e) {
				p->err = e;
				p->err_off = p->r[i].off + at;
				goto out;
			}
			if (!p->fast) { /* judge the device on each PROBE window */
				probed += k;
				spent += fvm_now_ns() - t;
				if (probed >= PROBE) {
					if (probed * 1000000000u / (spent ? spent : 1) >= FAST_RATE) {
						p->fast = 1;
						(void)posix_fadvise(p->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
					}
					probed = spent = 0;
				}
			}
			at += k;
			atomic_fetch_add(&p->done, k);
		}
out:
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
	p->pfd = fvm_reader_reopen(r, 0); /* the paced reads' own, readahead off */
	if (p->pfd >= 0) {
		(void)posix_fadvise(p->pfd, 0, 0, POSIX_FADV_RANDOM);
	} else {
		p->fast = 1;
		(void)posix_fadvise(p->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	if (pthread_create(&p->t, NULL, run, p)) {
		if (p->pfd >= 0)
			close(p->pfd);
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
	if (p->pfd >= 0)
		close(p->pfd);
	free(p->buf);
	free(p->r);
	free(p);
}
