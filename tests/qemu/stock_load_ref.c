/*
 * stock_load_ref: a QEMU-like loader of a stock migration stream, the
 * reference the fast loader is measured against, and an independent oracle
 * for the integration tests (it knows nothing of libfastvm or fvmsnap).
 *
 * It reads the stream the way QEMU 7.2's loader does: through a 32 KiB
 * buffer refilled with read() (QEMUFile, IO_BUF_SIZE 32768), one memcpy per
 * PAGE record from that buffer into freshly mmap'd block memory
 * (qemu_get_buffer), ZERO records checked against the destination
 * (ram_handle_compressed: memset only when not already zero), COMPRESS_PAGE
 * records inflated in place. It parses the header, the configuration section
 * (capabilities, uuid and target-page-bits subsections), START/PART/END
 * sections of "ram" with their footers, and commands; it stops at the first
 * FULL section (device state, which only its vmstate description can walk)
 * or at EOF. Other iterable sections are refused.
 *
 * Usage:
 *   stock_load_ref [--repeat N] [--cold] [--thp] [--counts] [--dump BLOCK=FILE]... STREAM|-
 * --counts prints, per block, the records seen and the zero/non-zero pages of
 * the loaded memory as one line "block NAME pages P zero Z nonzero N
 * page_records R zero_records Q compressed_records C".
 * Timing lines: "run K: S s" and "median: S s, MB/s" over the stream bytes.
 * Exit 0 on success, 1 on a malformed stream or I/O error (message on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define IO_BUF_SIZE	32768
#define PAGE		4096u
#define MAX_BLOCKS	64

#define F_ZERO		0x02
#define F_MEM_SIZE	0x04
#define F_PAGE		0x08
#define F_EOS		0x10
#define F_CONTINUE	0x20
#define F_XBZRLE	0x40
#define F_HOOK		0x80
#define F_COMPRESS	0x100
#define F_MFD_FLUSH	0x200

struct block {
	char name[256];
	uint64_t len;
	uint8_t *mem;
	uint64_t page_rec, zero_rec, comp_rec;
};

struct qf {
	int fd;
	uint8_t buf[IO_BUF_SIZE];
	size_t pos, len;
	uint64_t off;		/* stream offset of buf[pos] */
	int ignore_shared;
	struct block blk[MAX_BLOCKS];
	int nblk;
	struct block *cur;	/* CONTINUE spans sections, as QEMU's static block */
	z_stream z;
	int z_init;
};

/* --thp: guest memory with MADV_HUGEPAGE, as QEMU allocates it */
static int use_thp;

static void fail(struct qf *f, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "stock_load_ref: stream offset %" PRIu64 ": ", f->off);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* qemu_fill_buffer: keep the unread tail, top up with one read(). */
static int fill(struct qf *f)
{
	ssize_t n;

	if (f->pos > 0) {
		memmove(f->buf, f->buf + f->pos, f->len - f->pos);
		f->len -= f->pos;
		f->pos = 0;
	}
	do
		n = read(f->fd, f->buf + f->len, IO_BUF_SIZE - f->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fail(f, "read: %s", strerror(errno));
	f->len += (size_t)n;
	return n > 0;
}

/* qemu_get_buffer: copy out of the 32 KiB buffer, refilling as needed. */
static void get(struct qf *f, void *dst, size_t n)
{
	uint8_t *d = dst;

	while (n > 0) {
		size_t avail = f->len - f->pos, k;

		if (avail == 0) {
			if (!fill(f))
				fail(f, "truncated (%zu bytes missing)", n);
			continue;
		}
		k = avail < n ? avail : n;
		memcpy(d, f->buf + f->pos, k);
		f->pos += k;
		f->off += k;
		d += k;
		n -= k;
	}
}

static uint8_t get8(struct qf *f)
{
	uint8_t v;

	get(f, &v, 1);
	return v;
}

static int peek8(struct qf *f)
{
	if (f->pos == f->len && !fill(f))
		return -1;
	return f->buf[f->pos];
}

static uint16_t get16(struct qf *f)
{
	uint8_t b[2];

	get(f, b, 2);
	return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(struct qf *f)
{
	uint8_t b[4];

	get(f, b, 4);
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint64_t get64(struct qf *f)
{
	uint64_t hi = get32(f);

	return hi << 32 | get32(f);
}

static void getstr(struct qf *f, char out[256])
{
	uint8_t n = get8(f);

	get(f, out, n);
	out[n] = 0;
}

static void config_section(struct qf *f)
{
	char name[256];
	uint32_t len = get32(f), i, n;

	if (len > 255)
		fail(f, "configuration machine name length %u", len);
	get(f, name, len);
	name[len] = 0;
	while (peek8(f) == 0x05) {
		get8(f);
		getstr(f, name);
		get32(f);		/* subsection version */
		if (!strcmp(name, "configuration/capabilities")) {
			n = get32(f);
			for (i = 0; i < n; i++) {
				char cap[256];

				getstr(f, cap);
				if (!strcmp(cap, "x-ignore-shared"))
					f->ignore_shared = 1;
				if (!strcmp(cap, "mapped-ram"))
					fail(f, "mapped-ram files are not streams");
			}
		} else if (!strcmp(name, "configuration/uuid")) {
			uint8_t uuid[16];

			get(f, uuid, sizeof(uuid));
		} else if (!strcmp(name, "configuration/target-page-bits")) {
			get32(f);
		} else {
			fail(f, "unknown configuration subsection '%s'", name);
		}
	}
}

static void mem_size(struct qf *f, uint64_t total)
{
	uint64_t sum = 0;

	while (sum < total) {
		struct block *b;

		if (f->nblk == MAX_BLOCKS)
			fail(f, "too many blocks");
		b = &f->blk[f->nblk];
		getstr(f, b->name);
		b->len = get64(f);
		if (b->len % PAGE || b->len > total - sum)
			fail(f, "block '%s' length %" PRIu64 " bad", b->name, b->len);
		if (f->ignore_shared)
			get64(f);	/* mr->addr */
		b->mem = mmap(NULL, b->len ? b->len : PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b->mem == MAP_FAILED)
			fail(f, "mmap %" PRIu64 ": %s", b->len, strerror(errno));
		if (use_thp) /* as QEMU does for guest RAM */
			madvise(b->mem, b->len ? b->len : PAGE, MADV_HUGEPAGE);
		sum += b->len;
		f->nblk++;
	}
}

static int is_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < n / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static void inflate_page(struct qf *f, uint8_t *dst, uint32_t clen)
{
	static uint8_t cbuf[PAGE * 2 + 64];
	int r;

	if (clen > sizeof(cbuf))
		fail(f, "compressed page of %u bytes", clen);
	get(f, cbuf, clen);
	if (!f->z_init) {
		if (inflateInit(&f->z) != Z_OK)
			fail(f, "inflateInit");
		f->z_init = 1;
	} else if (inflateReset(&f->z) != Z_OK) {
		fail(f, "inflateReset");
	}
	f->z.next_in = cbuf;
	f->z.avail_in = clen;
	f->z.next_out = dst;
	f->z.avail_out = PAGE;
	r = inflate(&f->z, Z_FINISH);
	if (r != Z_STREAM_END || f->z.avail_out != 0)
		fail(f, "compressed page does not inflate to one page (%d)", r);
}

/* One "ram" section body up to its EOS (ram_load_precopy). */
static void ram_body(struct qf *f)
{
	for (;;) {
		uint64_t rec = f->off, v = get64(f);
		uint64_t flags = v & (PAGE - 1), addr = v & ~(uint64_t)(PAGE - 1);
		uint8_t *host = NULL;

		if (flags & F_MEM_SIZE) {
			mem_size(f, addr);
			continue;
		}
		if (flags & (F_ZERO | F_PAGE | F_COMPRESS | F_XBZRLE)) {
			if (!(flags & F_CONTINUE)) {
				char name[256];
				int i;

				getstr(f, name);
				for (f->cur = NULL, i = 0; i < f->nblk; i++)
					if (!strcmp(f->blk[i].name, name))
						f->cur = &f->blk[i];
				if (!f->cur)
					fail(f, "page for unknown block '%s'", name);
			}
			if (!f->cur)
				fail(f, "CONTINUE without a block");
			if (addr >= f->cur->len)
				fail(f, "page 0x%" PRIx64 " past block '%s'", addr, f->cur->name);
			host = f->cur->mem + addr;
		}
		switch (flags & ~(uint64_t)F_CONTINUE) {
		case F_ZERO: {
			uint8_t ch = get8(f);

			if (ch != 0 || !is_zero(host, PAGE))
				memset(host, ch, PAGE);
			f->cur->zero_rec++;
			break;
		}
		case F_PAGE:
			get(f, host, PAGE);
			f->cur->page_rec++;
			break;
		case F_COMPRESS:
			inflate_page(f, host, get32(f));
			f->cur->comp_rec++;
			break;
		case F_EOS:
			return;
		case F_MFD_FLUSH:
			break;
		default:
			f->off = rec;
			fail(f, "unsupported ram record flags 0x%" PRIx64, flags);
		}
	}
}

static void footer(struct qf *f, uint32_t id)
{
	if (get8(f) != 0x7e || get32(f) != id)
		fail(f, "bad section footer for section %u", id);
}

static void load(struct qf *f)
{
	uint32_t ram_id = UINT32_MAX;

	if (get32(f) != 0x5145564d)
		fail(f, "not a QEVM stream");
	if (get32(f) != 3)
		fail(f, "stream version not 3");
	for (;;) {
		int t = peek8(f);
		uint32_t id;
		char name[256];

		if (t < 0)
			return;		/* a stream cut after the RAM is fine here */
		get8(f);
		switch (t) {
		case 0x00:
			return;
		case 0x07:
			config_section(f);
			break;
		case 0x08:
			get16(f);
			for (id = get16(f); id > 0; id--)
				get8(f);
			break;
		case 0x01:
			id = get32(f);
			getstr(f, name);
			get32(f);
			get32(f);
			if (strcmp(name, "ram"))
				fail(f, "iterable section '%s' not supported", name);
			ram_id = id;
			ram_body(f);
			footer(f, id);
			break;
		case 0x02:
		case 0x03:
			id = get32(f);
			if (id != ram_id)
				fail(f, "PART/END of section %u (not ram)", id);
			ram_body(f);
			footer(f, id);
			break;
		case 0x04:
			return;		/* device state: RAM is complete */
		default:
			fail(f, "section type 0x%02x", t);
		}
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void release(struct qf *f)
{
	int i;

	for (i = 0; i < f->nblk; i++)
		munmap(f->blk[i].mem, f->blk[i].len ? f->blk[i].len : PAGE);
	if (f->z_init)
		inflateEnd(&f->z);
}

int main(int argc, char **argv)
{
	int repeat = 1, cold = 0, counts = 0, ndump = 0, i, r;
	char *dump[16];
	const char *path = NULL;
	double t[64];
	uint64_t bytes = 0;
	static struct qf f;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--cold"))
			cold = 1;
		else if (!strcmp(argv[i], "--counts"))
			counts = 1;
		else if (!strcmp(argv[i], "--thp"))
			use_thp = 1;
		else if (!strcmp(argv[i], "--dump") && i + 1 < argc && ndump < 16)
			dump[ndump++] = argv[++i];
		else if (argv[i][0] == '-' && argv[i][1])
			goto usage;
		else
			path = argv[i];
	}
	if (!path || repeat < 1 || repeat > 64)
		goto usage;
	if (!strcmp(path, "-"))
		repeat = 1;
	for (r = 0; r < repeat; r++) {
		double t0;

		memset(&f, 0, sizeof(f));
		f.fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
		if (f.fd < 0) {
			fprintf(stderr, "stock_load_ref: %s: %s\n", path, strerror(errno));
			return 1;
		}
		if (cold) {
			fdatasync(f.fd);
			posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED);
		}
		t0 = now();
		load(&f);
		t[r] = now() - t0;
		bytes = f.off;
		if (f.fd)
			close(f.fd);
		if (repeat > 1)
			printf("run %d: %.4f s\n", r + 1, t[r]);
		if (r + 1 < repeat)
			release(&f);
	}
	qsort(t, (size_t)repeat, sizeof(t[0]), cmp_d);
	printf("stream %" PRIu64 " bytes read, median %.4f s, %.0f MB/s\n",
	       bytes, t[repeat / 2], bytes / 1e6 / t[repeat / 2]);
	for (i = 0; counts && i < f.nblk; i++) {
		struct block *b = &f.blk[i];
		uint64_t p, z = 0, n = b->len / PAGE;

		for (p = 0; p < n; p++)
			z += is_zero(b->mem + p * PAGE, PAGE);
		printf("block %s pages %" PRIu64 " zero %" PRIu64 " nonzero %" PRIu64
		       " page_records %" PRIu64 " zero_records %" PRIu64
		       " compressed_records %" PRIu64 "\n", b->name, n, z, n - z,
		       b->page_rec, b->zero_rec, b->comp_rec);
	}
	for (i = 0; i < ndump; i++) {
		char *eq = strchr(dump[i], '=');
		int j, fd;

		if (!eq)
			goto usage;
		*eq = 0;
		for (j = 0; j < f.nblk && strcmp(f.blk[j].name, dump[i]); j++)
			;
		if (j == f.nblk) {
			fprintf(stderr, "stock_load_ref: no block '%s'\n", dump[i]);
			return 1;
		}
		fd = open(eq + 1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, f.blk[j].mem, f.blk[j].len) != (ssize_t)f.blk[j].len ||
		    close(fd) != 0) {
			fprintf(stderr, "stock_load_ref: writing %s: %s\n", eq + 1, strerror(errno));
			return 1;
		}
	}
	return 0;
usage:
	fprintf(stderr, "usage: stock_load_ref [--repeat N] [--cold] [--thp] [--counts] "
		"[--dump BLOCK=FILE]... STREAM|-\n");
	return 2;
}
