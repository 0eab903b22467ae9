/*
 * The lazy load of an authenticated snapshot (FORMAT.md 4.6, SECURITY.md):
 * a MAP_PRIVATE file mapping would let the kernel hand file pages to the
 * guest unchecked, so instead the destinations stay private anonymous
 * memory, registered with userfaultfd (MISSING mode), and one handler
 * thread per load installs every page itself, after its chunk's tag has
 * verified:
 *
 *   fault on a data page   read the aligned WINDOW of its run that holds
 *                          it (and the window's tags), check every chunk,
 *                          UFFDIO_COPY the good ones that are missing;
 *   fault elsewhere        UFFDIO_ZEROPAGE (the snapshot has zeros there);
 *   a chunk that fails     never installed: its state is BAD, the first
 *                          error is kept for fvm_prefetch_status/wait, and
 *                          a thread that faulted on it is not woken (a VM
 *                          must not run on memory that was not checked);
 *   fill (prefetch)        between faults, every remaining data page in
 *                          file order, FILL bytes a read; when all are in
 *                          and none failed, the registration is removed and
 *                          the thread ends.
 *
 * Faults come first: a fill step is taken only when no fault is waiting,
 * so a fault waits for at most one FILL read. Only the handler thread
 * touches the per-chunk state (1 byte per 4 KiB); the caller's threads see
 * the counters and the error under mu. Lifetimes: the session lives in the
 * reader (r->uffd) and uses its fd, model and keys, so it ends before the
 * reader does (fvm_reader_free calls fvm_uffd_end, which installs what is
 * still missing first). A page the guest dropped after it was installed
 * (MADV_DONTNEED, a balloon) faults again and gets zeros, as anonymous
 * memory would. A destination the caller unmaps is forgotten (unmap
 * events), so that nothing is installed or sealed at an address that may
 * hold another mapping by then.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "auth.h"
#include "error.h"
#include "format.h"
#include "io.h"
#include "uffd.h"

/*
 * Bytes read for one fault: the aligned window of the run holding the
 * page. Measured on a 256 MiB authenticated snapshot of data pages, warm
 * cache, 2 cores with another job running, two rounds: one thread touching
 * every page in order took 0.73-0.79 s with 32 KiB windows, 0.43-0.48 s
 * with 64 KiB, 0.31-0.34 s with 128 KiB and 0.24-0.25 s (1.1 GB/s) with
 * 256 KiB, while 4000 random touches cost 60-75 us each whatever the
 * window (the wake-up of the handler, not the read and the tag check,
 * dominates a lone fault). So 256 KiB.
 */
#define WINDOW (256u << 10)
#define FILL (1u << 20)   /* bytes a fill step reads */
#define PG 4096u

/* GONE: the caller unmapped the destination; nothing to install or seal there */
enum { MISSING = 0, INSTALLED = 1, BAD = 2, GONE = 3 };

struct reg {
	uintptr_t addr;
	uint64_t len;
};

struct by_addr {
	uintptr_t dst;
	size_t ext;
};

struct fvm_uffd {
	struct fvm_reader *r;
	int fd, evfd;
	struct fvm_plan p;
	uint64_t *base;         /* first chunk of each plan extent in state */
	uint8_t *state;         /* per 4 KiB chunk: MISSING, INSTALLED, BAD */
	struct by_addr *by_addr; /* plan extents sorted by destination */
	struct reg *reg;
	size_t nreg;
	uint8_t *buf, tags[FILL / PG * FVM_TAG_LEN];
	size_t fill_ext;        /* the fill's cursor: extent, bytes into it */
	uint64_t fill_at;
	int registered;         /* the handler's: registration still in place */
	uint64_t left;          /* the handler's: chunks MISSING or BAD */
	pthread_t t;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fill, stop, ended, done_thread, handles;
	struct fvm_err_kept err; /* the first error, with the handler's detail */
	atomic_uint_fast64_t done;
};

/* ------------------------------------------------------------ errors */

/* Keep the first error (the handler's thread detail) for status and wait. */
static void keep_error(struct fvm_uffd *u, int rc)
{
	pthread_mutex_lock(&u->mu);
	fvm_err_keep(&u->err, rc);
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

/* ------------------------------------------------------------ installing */

/*
 * Install len bytes at dst, from src (UFFDIO_COPY) or zeros (src NULL,
 * UFFDIO_ZEROPAGE), waking what waits on them. A page already there
 * (EEXIST) is skipped and its waiters woken; a destination gone (the
 * caller unmapped it: ENOENT, or the process is exiting: ESRCH) ends it
 * quietly. 0, 1 when gone, or an errno.
 */
static int install(int fd, uintptr_t dst, const uint8_t *src, uint64_t len)
{
	while (len) {
		int64_t did;
		int rc;

		if (src) {
			struct uffdio_copy c = { .dst = dst, .src = (uintptr_t)src, .len = len };

			rc = ioctl(fd, UFFDIO_COPY, &c);
			did = c.copy;
		} else {
			struct uffdio_zeropage z = { .range = { dst, len } };

			rc = ioctl(fd, UFFDIO_ZEROPAGE, &z);
			did = z.zeropage;
		}
		if (!rc)
			return 0;
		if (errno == EAGAIN && did > 0) {
			dst += (uint64_t)did;
			src = src ? src + did : NULL;
			len -= (uint64_t)did;
		} else if (errno == EEXIST) {
			struct uffdio_range w = { dst, PG };

			(void)ioctl(fd, UFFDIO_WAKE, &w);
			dst += PG;
			src = src ? src + PG : NULL;
			len -= PG;
		} else if (errno == EINTR || errno == EAGAIN) {
			continue;
		} else {
			return errno == ENOENT || errno == ESRCH ? 1 : errno;
		}
	}
	return 0;
}

static int read_full(struct fvm_uffd *u, void *buf, uint64_t n, uint64_t off, const char *what)
{
	return fvm_pread_full(u->r->fd, buf, (size_t)n, off, u->r->m.file, what);
}

/*
 * Bytes [lo, hi) of plan extent i (chunk-aligned): read them and their
 * tags, check every chunk, install the good ones still missing. A chunk
 * that fails becomes BAD, its error kept; a read error is kept too and
 * leaves the span missing.
 */
static void span(struct fvm_uffd *u, size_t i, uint64_t lo, uint64_t hi)
{
	const struct fvm_plan_ext *e = &u->p.ext[i];
	const struct fvm_model *m = &u->r->m;
	uint8_t *st = u->state + u->base[i];
	uint64_t a = lo / PG, b = hi / PG, n;
	int rc;

	while (a < b && st[a] != MISSING)
		a++;
	while (b > a && st[b - 1] != MISSING)
		b--;
	if (a == b)
		return;
	n = b - a;
	rc = read_full(u, u->buf, n * PG, e->file_off + a * PG, "payload");
	if (!rc)
		rc = read_full(u, u->tags, n * FVM_TAG_LEN, e->crc_offset + a * FVM_TAG_LEN,
			       "chunk tags");
	if (rc) {
		keep_error(u, rc);
		return;
	}
	for (uint64_t k = 0; k < n;) {
		int64_t bad = fvm_chunks_bad(m->keys, e->file_off + (a + k) * PG, u->buf + k * PG,
					     (size_t)(n - k), u->tags + k * FVM_TAG_LEN);
		uint64_t good;

		if (bad == FVM_CHUNKS_FAILED) { /* nothing was checked: install nothing */
			keep_error(u, FVM_ENOMEM);
			return;
		}
		good = bad < 0 ? n - k : (uint64_t)bad;

		/* install the verified chunks before the bad one, in runs of missing */
		for (uint64_t j = k; j < k + good;) {
			uint64_t s = j;
			int gone;

			while (j < k + good && st[a + j] == MISSING)
				j++;
			if (j > s) {
				gone = install(u->fd, (uintptr_t)e->dst + (a + s) * PG,
					       u->buf + s * PG, (j - s) * PG);
				if (gone > 1) {
					keep_error(u, fvm_err_sys(gone, "%s: UFFDIO_COPY to block %s",
								  m->file,
								  m->blocks[e->block_id].name));
					return;
				}
				memset(st + a + s, gone ? GONE : INSTALLED, (size_t)(j - s));
				u->left -= j - s;
				if (!gone)
					atomic_fetch_add(&u->done, (j - s) * PG);
			}
			while (j < k + good && st[a + j] != MISSING)
				j++;
		}
		k += good;
		if (bad >= 0) {
			uint64_t at = (a + k) * PG;

			st[a + k] = BAD;
			keep_error(u, fvm_model_chunk_error(m, e->block_id, e->first_page +
							    (at >> m->blocks[e->block_id].page_shift),
							    e->file_off + at,
							    " (lazy load: the page is not installed)"));
			k++;
		}
	}
}

/*
 * The plan extent whose destination holds addr, or (size_t)-1; *gap_lo and
 * *gap_hi: the end of the extent before addr and the start of the one
 * after (the gap of zeros holding addr, when no extent does).
 */
static size_t find(const struct fvm_uffd *u, uintptr_t addr, uintptr_t *gap_lo,
		   uintptr_t *gap_hi)
{
	size_t lo = 0, hi = u->p.next;

	while (lo < hi) { /* the first extent starting after addr */
		size_t mid = lo + (hi - lo) / 2;

		if (u->by_addr[mid].dst <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	*gap_hi = lo < u->p.next ? u->by_addr[lo].dst : UINTPTR_MAX;
	*gap_lo = 0;
	if (lo) {
		const struct fvm_plan_ext *e = &u->p.ext[u->by_addr[lo - 1].ext];

		if (addr < (uintptr_t)e->dst + e->bytes)
			return u->by_addr[lo - 1].ext;
		*gap_lo = (uintptr_t)e->dst + e->bytes;
	}
	return (size_t)-1;
}

static void zero(struct fvm_uffd *u, uintptr_t a, uintptr_t z)
{
	int rc = install(u->fd, a, NULL, z - a);

	if (rc > 1)
		keep_error(u, fvm_err_sys(rc, "%s: UFFDIO_ZEROPAGE at %p", u->r->m.file,
					  (void *)a));
}

/* Serve a fault at addr (page-aligned). */
static void fault(struct fvm_uffd *u, uintptr_t addr)
{
	uintptr_t w = addr & ~(uintptr_t)(WINDOW - 1), glo, ghi;
	size_t i = find(u, addr, &glo, &ghi);

	if (i != (size_t)-1) {
		const struct fvm_plan_ext *e = &u->p.ext[i];
		uint64_t in = addr - (uintptr_t)e->dst, lo = in & ~(uint64_t)(WINDOW - 1);
		uint8_t s = u->state[u->base[i] + in / PG];

		if (s == MISSING)
			span(u, i, lo, lo + WINDOW < e->bytes ? lo + WINDOW : e->bytes);
		else if (s == INSTALLED) /* installed, dropped since (or a stale message) */
			zero(u, addr, addr + PG);
		/* BAD: the thread stays blocked, never on wrong memory */
		return;
	}
	/* a page the snapshot has as zero: the aligned window of its gap */
	for (size_t k = 0; k < u->nreg; k++) {
		uintptr_t a = u->reg[k].addr, z = a + u->reg[k].len;

		if (addr < a || addr >= z)
			continue;
		a = a > glo ? a : glo;
		a = a > w ? a : w;
		z = z < ghi ? z : ghi;
		z = z < w + WINDOW ? z : w + WINDOW;
		zero(u, a, z);
		return;
	}
	zero(u, addr, addr + PG); /* not ours: cannot happen, but never leave it waiting */
}

/*
 * The caller unmapped [a, z) of a destination: nothing is installed or
 * sealed there from now on (whatever is mapped there next is not ours).
 */
static void unmapped(struct fvm_uffd *u, uintptr_t a, uintptr_t z)
{
	for (size_t i = 0; i < u->p.next; i++) {
		uintptr_t d = (uintptr_t)u->p.ext[i].dst, e = d + u->p.ext[i].bytes;
		uintptr_t lo = a > d ? a : d, hi = z < e ? z : e;

		for (uintptr_t p = lo; p < hi; p += PG) {
			uint8_t *s = &u->state[u->base[i] + (p - d) / PG];

			if (*s == MISSING || *s == BAD)
				u->left--;
			*s = GONE;
		}
	}
	for (size_t k = 0; k < u->nreg; k++) { /* what stays registered */
		uintptr_t d = u->reg[k].addr, e = d + u->reg[k].len;

		if (a <= d && z >= e)
			u->reg[k].len = 0;
		else if (a <= d && z > d)
			u->reg[k] = (struct reg){ z, e - z };
		else if (a < e && z >= e)
			u->reg[k].len = a - d;
		/* a hole in the middle: the range stays, unregistering it is harmless */
	}
}

/* Read and serve the faults waiting now; -1 when the fd failed. */
static int serve(struct fvm_uffd *u)
{
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n = read(u->fd, msg, sizeof(msg));

		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		for (size_t k = 0; k < (size_t)n / sizeof(msg[0]); k++)
			if (msg[k].event == UFFD_EVENT_PAGEFAULT)
				fault(u, (uintptr_t)msg[k].arg.pagefault.address & ~(uintptr_t)(PG - 1));
			else if (msg[k].event == UFFD_EVENT_UNMAP)
				unmapped(u, (uintptr_t)msg[k].arg.remove.start,
					 (uintptr_t)msg[k].arg.remove.end);
	}
}

/* One fill step; 1 when every extent has been gone through. */
static int fill_step(struct fvm_uffd *u)
{
	while (u->fill_ext < u->p.next) {
		const struct fvm_plan_ext *e = &u->p.ext[u->fill_ext];
		uint64_t lo = u->fill_at, hi = lo + FILL < e->bytes ? lo + FILL : e->bytes;

		if (lo >= e->bytes) {
			u->fill_ext++;
			u->fill_at = 0;
			continue;
		}
		u->fill_at = hi;
		span(u, u->fill_ext, lo, hi);
		return 0;
	}
	return 1;
}

/*
 * Remove the registration, then wake every fault still waiting in it. The
 * kernel's UFFDIO_UNREGISTER wakes the waiters it finds, but a fault that
 * holds the VMA's own lock (per-VMA lock faults, Linux 6.4 on) can queue
 * itself after that wake and before the VMA is changed; it then sleeps
 * until the fd is closed. Seen here: one touching thread in about 60 runs
 * of test_lazy_auth on Linux 6.18 stayed in handle_userfault with the
 * prefetch ended and the range no longer registered. Once UNREGISTER has
 * returned, every such fault is queued (it queues before dropping the VMA
 * lock, which the change waited for), so this UFFDIO_WAKE reaches it: it
 * retries on an ordinary mapping.
 */
static void unregister(struct fvm_uffd *u)
{
	for (size_t k = 0; k < u->nreg; k++) {
		struct uffdio_range rg = { u->reg[k].addr, u->reg[k].len };

		if (rg.len)
			(void)ioctl(u->fd, UFFDIO_UNREGISTER, &rg);
	}
	for (size_t k = 0; k < u->nreg; k++) {
		struct uffdio_range rg = { u->reg[k].addr, u->reg[k].len };

		if (rg.len)
			(void)ioctl(u->fd, UFFDIO_WAKE, &rg);
	}
	u->registered = 0;
}

/*
 * Ending with pages not installed (a chunk failed, a read failed): those
 * pages fault for good (PROT_NONE), then the registration goes. Without
 * this, removing it would let the kernel fill them with zeros.
 */
static void seal(struct fvm_uffd *u)
{
	for (size_t i = 0; i < u->p.next && u->left; i++)
		for (uint64_t c = 0; c < u->p.ext[i].bytes / PG; c++) {
			uint8_t *s = &u->state[u->base[i] + c];

			if (*s == MISSING || *s == BAD)
				(void)mprotect(u->p.ext[i].dst + c * PG, PG, PROT_NONE);
		}
	unregister(u);
}

static void *handler(void *arg)
{
	struct fvm_uffd *u = arg;

	for (;;) {
		struct pollfd pf[2] = { { u->fd, POLLIN, 0 }, { u->evfd, POLLIN, 0 } };
		int fill, stop, ended, finished;

		pthread_mutex_lock(&u->mu);
		fill = u->fill && !u->ended;
		stop = u->stop;
		pthread_mutex_unlock(&u->mu);
		if (poll(pf, 2, fill ? 0 : -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN) {
			uint64_t v;

			(void)!read(u->evfd, &v, sizeof(v));
		}
		if ((pf[0].revents & (POLLIN | POLLERR)) && serve(u) < 0)
			break;
		if (!fill)
			continue;
		ended = fill_step(u);
		finished = ended && (!u->left || stop);
		if (finished)
			seal(u);
		if (ended) {
			pthread_mutex_lock(&u->mu);
			u->ended = 1;
			pthread_cond_broadcast(&u->cv);
			pthread_mutex_unlock(&u->mu);
		}
		if (finished)
			break;
	}
	if (u->registered) /* the fd failed: nothing more can be served */
		seal(u);
	pthread_mutex_lock(&u->mu);
	u->ended = 1;
	u->done_thread = 1;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* ------------------------------------------------------------ the session */

static void kick(struct fvm_uffd *u)
{
	uint64_t one = 1;

	(void)!write(u->evfd, &one, sizeof(one));
}

/* A userfaultfd: the syscall, else /dev/userfaultfd (Linux 6.1); -1 and errno. */
static int open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int e = errno;

#ifdef USERFAULTFD_IOC_NEW
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
		if (fd < 0)
			errno = e; /* the syscall's reason is the one to report */
	}
#endif
	return fd;
}

static int by_dst(const void *a, const void *b)
{
	uintptr_t x = ((const struct by_addr *)a)->dst, y = ((const struct by_addr *)b)->dst;

	return x < y ? -1 : x > y;
}

static void session_free(struct fvm_uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	if (u->evfd >= 0)
		close(u->evfd);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	fvm_plan_free(&u->p);
	free(u->base);
	free(u->state);
	free(u->by_addr);
	free(u->reg);
	free(u->buf);
	free(u);
}

/*
 * Register the destinations, then drop what their data pages held, which
 * then fault; the other pages keep what the zero policy left there (and
 * fault to zeros where nothing is), as in any load.
 */
static int attach(struct fvm_uffd *u, const struct fvm_map *maps, size_t n, const char **why)
{
	const char *file = u->r->m.file;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_UNMAP };

	if (ioctl(u->fd, UFFDIO_API, &api) < 0) {
		/* without unmap events (a kernel before 4.11): a new fd, none asked */
		close(u->fd);
		u->fd = open_uffd();
		api = (struct uffdio_api){ .api = UFFD_API, .features = 0 };
		if (u->fd < 0 || ioctl(u->fd, UFFDIO_API, &api) < 0) {
			*why = "userfaultfd: UFFDIO_API refused";
			return fvm_err(FVM_EUNSUPPORTED, "%s: %s: %s", file, *why, strerror(errno));
		}
	}
	for (size_t k = 0; k < n; k++) {
		struct uffdio_register rg = { .range = { (uintptr_t)maps[k].addr, maps[k].length },
					      .mode = UFFDIO_REGISTER_MODE_MISSING };
		const uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);

		if (!maps[k].length)
			continue;
		if (ioctl(u->fd, UFFDIO_REGISTER, &rg) < 0 || (rg.ioctls & need) != need) {
			int e = errno;

			if (!(rg.ioctls & need) && e == 0)
				e = EINVAL;
			unregister(u);
			*why = "userfaultfd: the destination cannot be registered";
			return fvm_err(FVM_EUNSUPPORTED, "%s: %s (mapping %s, %" PRIu64 " bytes at "
				       "%p): %s", file, *why, maps[k].name ? maps[k].name : "?",
				       maps[k].length, maps[k].addr, strerror(e));
		}
		u->reg[u->nreg++] = (struct reg){ (uintptr_t)maps[k].addr, maps[k].length };
		u->registered = 1;
	}
	for (size_t i = 0; i < u->p.next; i++)
		if (madvise(u->p.ext[i].dst, u->p.ext[i].bytes, MADV_DONTNEED) < 0) {
			int e = errno;

			unregister(u);
			return fvm_err_sys(e, "%s: madvise(MADV_DONTNEED) of block %s before its "
					   "lazy load", file, u->r->m.blocks[u->p.ext[i].block_id].name);
		}
	return 0;
}

int fvm_uffd_start(struct fvm_reader *r, struct fvm_plan *p, const struct fvm_map *maps,
		   size_t n, const char **why)
{
	const char *file = r->m.file;
	struct fvm_uffd *u;
	uint64_t chunks = 0;
	int rc;

	if (r->uffd) {
		int busy;

		pthread_mutex_lock(&r->uffd->mu);
		busy = !r->uffd->done_thread || r->uffd->handles;
		pthread_mutex_unlock(&r->uffd->mu);
		if (busy)
			return fvm_err(FVM_ESTATE, "%s: the reader still serves an earlier lazy load "
				       "(fvm_prefetch_wait, or free the reader first)", file);
		fvm_uffd_end(r->uffd);
		r->uffd = NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return fvm_err(FVM_ENOMEM, "%s: lazy load", file);
	u->r = r;
	u->fd = u->evfd = -1;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	u->p = *p;
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < u->p.next; i++)
		chunks += u->p.ext[i].bytes / PG;
	u->base = malloc((u->p.next ? u->p.next : 1) * sizeof(*u->base));
	u->by_addr = malloc((u->p.next ? u->p.next : 1) * sizeof(*u->by_addr));
	u->state = calloc(chunks ? chunks : 1, 1);
	u->reg = calloc(n ? n : 1, sizeof(*u->reg));
	u->buf = malloc(FILL);
	if (!u->base || !u->by_addr || !u->state || !u->reg || !u->buf) {
		session_free(u);
		return fvm_err(FVM_ENOMEM, "%s: lazy load state of %" PRIu64 " pages", file, chunks);
	}
	u->left = chunks;
	chunks = 0;
	for (size_t i = 0; i < u->p.next; i++) {
		u->base[i] = chunks;
		u->by_addr[i] = (struct by_addr){ (uintptr_t)u->p.ext[i].dst, i };
		chunks += u->p.ext[i].bytes / PG;
	}
	qsort(u->by_addr, u->p.next, sizeof(*u->by_addr), by_dst);

	u->fd = open_uffd();
	if (u->fd < 0) {
		int e = errno;

		session_free(u);
		*why = "userfaultfd refused";
		return fvm_err(FVM_EUNSUPPORTED, "%s: an authenticated snapshot is loaded lazily "
			       "through userfaultfd, which this system refuses (%s%s); load it "
			       "eagerly", file, strerror(e),
			       e == EPERM ? ": vm.unprivileged_userfaultfd is 0 and the process "
			       "lacks CAP_SYS_PTRACE, nor may it open /dev/userfaultfd" : "");
	}
	u->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->evfd < 0) {
		rc = fvm_err_sys(errno, "%s: eventfd for the lazy load", file);
		session_free(u);
		return rc;
	}
	rc = attach(u, maps, n, why);
	if (rc) {
		session_free(u);
		return rc;
	}
	if (pthread_create(&u->t, NULL, handler, u)) {
		unregister(u);
		session_free(u);
		*why = "userfaultfd: no handler thread";
		return fvm_err(FVM_EUNSUPPORTED, "%s: %s", file, *why);
	}
	r->uffd = u;
	r->uffd_end = fvm_uffd_end;
	return 0;
}

int fvm_uffd_prefetch(struct fvm_uffd *u)
{
	pthread_mutex_lock(&u->mu);
	if (u->handles) {
		pthread_mutex_unlock(&u->mu);
		return fvm_err(FVM_ESTATE, "%s: a prefetch of this lazy load is running",
			       u->r->m.file);
	}
	u->handles = 1;
	u->fill = 1;
	pthread_mutex_unlock(&u->mu);
	kick(u);
	return 0;
}

int fvm_uffd_status(struct fvm_uffd *u, uint64_t *done, uint64_t *total, int *ended)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	if (done)
		*done = atomic_load(&u->done);
	if (total)
		*total = u->p.total;
	if (ended)
		*ended = u->ended;
	rc = fvm_err_raise(&u->err);
	pthread_mutex_unlock(&u->mu);
	return rc;
}

int fvm_uffd_wait(struct fvm_uffd *u)
{
	int rc;

	pthread_mutex_lock(&u->mu);
	while (!u->ended)
		pthread_cond_wait(&u->cv, &u->mu);
	rc = fvm_err_raise(&u->err);
	pthread_mutex_unlock(&u->mu);
	return rc;
}

void fvm_uffd_cancel(struct fvm_uffd *u)
{
	pthread_mutex_lock(&u->mu);
	u->handles = 0;
	if (!u->stop)
		u->fill = 0;
	pthread_mutex_unlock(&u->mu);
}

void fvm_uffd_end(struct fvm_uffd *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->mu);
	u->stop = 1;
	u->fill = 1;
	u->ended = 0; /* a fill that ended with failures goes on to seal */
	pthread_mutex_unlock(&u->mu);
	kick(u);
	pthread_join(u->t, NULL);
	session_free(u);
}
