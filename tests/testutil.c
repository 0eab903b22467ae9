/*
 * Test helpers (see testutil.h): guarded memory, random layouts, scratch
 * files and the listing consistency check shared by tests and fuzzers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define GUARD 4096u

/* ---------------------------------------------------------------- random */

void tu_rng_seed(struct tu_rng *r, uint64_t seed)
{
	r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
	if (!r->s)
		r->s = 1;
}

uint64_t tu_rand(struct tu_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1Dull;
}

uint64_t tu_below(struct tu_rng *r, uint64_t n)
{
	/* the high bits: xorshift's low bits are linear and repeat with the page fill */
	return (uint64_t)(((unsigned __int128)tu_rand(r) * n) >> 64);
}

void tu_fill_random(struct tu_rng *r, void *p, size_t n)
{
	uint8_t *b = p;

	while (n >= 8) {
		uint64_t x = tu_rand(r);
		memcpy(b, &x, 8);
		b += 8;
		n -= 8;
	}
	while (n--)
		*b++ = (uint8_t)tu_rand(r);
}

void tu_fill_page(struct tu_rng *r, void *p, size_t page_size)
{
	tu_fill_random(r, p, page_size);
	((uint8_t *)p)[tu_below(r, page_size)] |= 1;
}

void tu_shuffle(struct tu_rng *r, void *base, size_t n, size_t size)
{
	uint8_t *b = base, tmp[64];

	if (size > sizeof(tmp))
		abort();
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)tu_below(r, i);
		memcpy(tmp, b + (i - 1) * size, size);
		memcpy(b + (i - 1) * size, b + j * size, size);
		memcpy(b + j * size, tmp, size);
	}
}

/* ---------------------------------------------------------------- guarded memory */

uint8_t *tu_guard_alloc(size_t len, int fill)
{
	uint8_t *base;

	if (len % GUARD)
		return NULL;
	base = mmap(NULL, len + 2 * GUARD, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	if (mprotect(base, GUARD, PROT_NONE) || mprotect(base + GUARD + len, GUARD, PROT_NONE)) {
		munmap(base, len + 2 * GUARD);
		return NULL;
	}
	if (fill >= 0)
		memset(base + GUARD, fill, len);
	return base + GUARD;
}

void tu_guard_free(uint8_t *addr, size_t len)
{
	if (addr)
		munmap(addr - GUARD, len + 2 * GUARD);
}

/* ---------------------------------------------------------------- layouts */

/* Length of the next run for the guest-like pattern: many short, a few long. */
static uint64_t guest_run(struct tu_rng *r, int data)
{
	uint64_t x = tu_below(r, 100);

	if (data)
		return x < 25 ? 1 : x < 65 ? 2 + tu_below(r, 7) : x < 95 ? 9 + tu_below(r, 120)
								  : 128 + tu_below(r, 1024);
	return x < 30 ? 1 + tu_below(r, 4) : x < 80 ? 5 + tu_below(r, 60) : 64 + tu_below(r, 1500);
}

int tu_layout_add(struct tu_layout *l, const char *name, uint64_t length,
		  uint64_t page_size, enum tu_pattern p, struct tu_rng *r)
{
	struct tu_block *b;
	uint64_t pages = length / page_size, i = 0;

	if (l->n >= TU_MAX_BLOCKS || strlen(name) > FVM_MAX_NAME)
		return -1;
	b = &l->b[l->n];
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->length = length;
	b->page_size = page_size;
	b->mem = calloc(1, length);
	if (!b->mem)
		return -1;
	l->n++;
	switch (p) {
	case TU_ALL_ZERO:
		break;
	case TU_ALL_DATA:
		for (i = 0; i < pages; i++)
			tu_fill_page(r, b->mem + i * page_size, page_size);
		break;
	case TU_ALTERNATE:
		for (i = 0; i < pages; i += 2)
			tu_fill_page(r, b->mem + i * page_size, page_size);
		break;
	case TU_RANDOM_RUNS:
		while (i < pages) {
			int data = (int)tu_below(r, 2);
			uint64_t n = 1 + tu_below(r, tu_below(r, 4) ? 8 : 64);

			for (; n && i < pages; n--, i++)
				if (data)
					tu_fill_page(r, b->mem + i * page_size, page_size);
		}
		break;
	case TU_LAST_BYTE:
		for (i = 0; i < pages; i += 2)
			b->mem[(i + 1) * page_size - 1] = (uint8_t)(1 + tu_below(r, 255));
		break;
	case TU_FIRST_BYTE:
		for (i = 0; i < pages; i += 3)
			b->mem[i * page_size] = 0x80;
		break;
	case TU_GUEST_LIKE: {
		int data = 0;

		while (i < pages) {
			uint64_t n = guest_run(r, data);

			for (; n && i < pages; n--, i++)
				if (data)
					tu_fill_page(r, b->mem + i * page_size, page_size);
			data = !data;
		}
		break;
	}
	}
	return 0;
}

void tu_layout_free(struct tu_layout *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->b[i].mem);
	memset(l, 0, sizeof(*l));
}

uint64_t tu_layout_bytes(const struct tu_layout *l)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < l->n; i++)
		t += l->b[i].length;
	return t;
}

int tu_page_nonzero(const struct tu_block *b, uint64_t i)
{
	const uint8_t *p = b->mem + i * b->page_size;

	/* all bytes equal to their neighbour and the first zero: one fast memcmp */
	return p[0] || memcmp(p, p + 1, b->page_size - 1) != 0;
}

uint64_t tu_data_pages(const struct tu_block *b)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < b->length / b->page_size; i++)
		n += (uint64_t)tu_page_nonzero(b, i);
	return n;
}

uint64_t tu_data_runs(const struct tu_block *b)
{
	uint64_t n = 0;
	int prev = 0;

	for (uint64_t i = 0; i < b->length / b->page_size; i++) {
		int d = tu_page_nonzero(b, i);
		n += (uint64_t)(d && !prev);
		prev = d;
	}
	return n;
}

/* ---------------------------------------------------------------- files */

static char tmpdir[4096], diskdir[4096];

static const char *make_dir(char *buf, size_t size, const char *parent)
{
	snprintf(buf, size, "%s/fvmtest.XXXXXX", parent);
	if (!mkdtemp(buf)) {
		perror("mkdtemp");
		abort();
	}
	return buf;
}

static const char *disk_parent(void)
{
	const char *t = getenv("TMPDIR");

	return t && *t ? t : "/tmp";
}

const char *tu_tmpdir(void)
{
	const char *t = getenv("FVM_TEST_TMPDIR");

	if (tmpdir[0])
		return tmpdir;
	/*
	 * Scratch files are written, loaded and deleted by the hundred: on a
	 * disk file system each delete waits for writeback (tens of ms), so
	 * use memory when there is some.
	 */
	if (!(t && *t))
		t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : disk_parent();
	return make_dir(tmpdir, sizeof(tmpdir), t);
}

const char *tu_diskdir(void)
{
	if (!diskdir[0])
		make_dir(diskdir, sizeof(diskdir), disk_parent());
	return diskdir;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

void tu_tmpdir_remove(void)
{
	char *dirs[2] = { tmpdir, diskdir };

	for (int i = 0; i < 2; i++) {
		/* FVM_TEST_KEEP=1 keeps the files for a look after a failure */
		if (dirs[i][0] && getenv("FVM_TEST_KEEP"))
			fprintf(stderr, "test files kept in %s\n", dirs[i]);
		else if (dirs[i][0])
			nftw(dirs[i], rm_one, 16, FTW_DEPTH | FTW_PHYS);
		dirs[i][0] = '\0';
	}
}

const char *tu_path(const char *name)
{
	static char buf[4][4096 + 256];
	static unsigned slot;
	char *p = buf[slot++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tu_tmpdir(), name);
	return p;
}

const char *tu_disk_path(const char *name)
{
	static char buf[2][4096 + 256];
	static unsigned slot;
	char *p = buf[slot++ % 2];

	snprintf(p, sizeof(buf[0]), "%s/%s", tu_diskdir(), name);
	return p;
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st)) {
		close(fd);
		return NULL;
	}
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	while (p && done < (size_t)st.st_size) {
		ssize_t n = read(fd, p + done, (size_t)st.st_size - done);
		if (n <= 0) {
			free(p);
			p = NULL;
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	*len = done;
	return p;
}

int tu_write_file(const char *path, const void *p, size_t len)
{
	const uint8_t *b = p;
	int fd;

	/* a new inode: truncating one with dirty pages makes ext4 flush them first */
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0)
		return -1;
	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -1;
		}
		b += n;
		len -= (size_t)n;
	}
	return close(fd);
}

/* ---------------------------------------------------------------- consistency */

struct span {
	uint32_t block;
	uint64_t first, end;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static char why[512];
#define BAD(...) do { snprintf(why, sizeof(why), __VA_ARGS__); goto out; } while (0)

const char *tu_check_consistent(fvm_reader *r)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t n, dp = 0, zp = 0, dr = 0, zr = 0, payload = 0;
	struct span *sp = NULL;
	int compressed;
	const char *res = why;

	if (fvm_reader_info(r, &fi))
		BAD("fvm_reader_info failed: %s", fvm_error_detail());
	if (fi.version_major != 1)
		BAD("version %u", fi.version_major);
	compressed = !!(fi.incompat_features & 2);
	for (uint32_t i = 0; i < fi.block_count; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint32_t id;

		if (fvm_reader_block(r, i, &bi))
			BAD("block %u: %s", i, fvm_error_detail());
		if (!bi.name || !bi.name[0] || strlen(bi.name) > FVM_MAX_NAME)
			BAD("block %u: bad name", i);
		if (bi.page_size < 4096 || bi.page_size > (1u << 30) ||
		    (bi.page_size & (bi.page_size - 1)) || !bi.length || bi.length % bi.page_size)
			BAD("block %u: length %llu page size %llu", i,
			    (unsigned long long)bi.length, (unsigned long long)bi.page_size);
		if (bi.data_pages + bi.zero_pages > bi.length / bi.page_size ||
		    bi.data_pages < bi.data_runs || bi.zero_pages < bi.zero_runs)
			BAD("block %u: page counts exceed the block", i);
		if (fvm_reader_find_block(r, bi.name, &id) || id != i)
			BAD("block %u: find_block(%s) does not return it", i, bi.name);
		dp += bi.data_pages;
		zp += bi.zero_pages;
		dr += bi.data_runs;
		zr += bi.zero_runs;
		payload += bi.data_pages * bi.page_size;
	}
	if (fvm_reader_block(r, fi.block_count, &(fvm_block_info)FVM_BLOCK_INFO_INIT) == 0)
		BAD("block %u past the end is listed", fi.block_count);
	if (dp != fi.data_pages || zp != fi.zero_pages || dr != fi.data_runs ||
	    zr != fi.zero_runs || payload != fi.payload_bytes)
		BAD("file counters do not add up over the blocks");

	n = fvm_reader_run_count(r);
	if (n != fi.data_runs + fi.zero_runs)
		BAD("run_count %llu, info says %llu + %llu", (unsigned long long)n,
		    (unsigned long long)fi.data_runs, (unsigned long long)fi.zero_runs);
	sp = calloc(n ? n : 1, sizeof(*sp));
	if (!sp)
		BAD("out of memory");
	dp = zp = dr = zr = 0;
	for (uint64_t i = 0; i < n; i++) {
		fvm_run_info ri = FVM_RUN_INFO_INIT;
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;

		if (fvm_reader_run(r, i, &ri))
			BAD("run %llu: %s", (unsigned long long)i, fvm_error_detail());
		if (ri.block_id >= fi.block_count || fvm_reader_block(r, ri.block_id, &bi))
			BAD("run %llu: block %u", (unsigned long long)i, ri.block_id);
		if (!ri.page_count || ri.first_page > bi.length / bi.page_size ||
		    ri.page_count > bi.length / bi.page_size - ri.first_page)
			BAD("run %llu: pages %llu+%llu outside block %s", (unsigned long long)i,
			    (unsigned long long)ri.first_page, (unsigned long long)ri.page_count,
			    bi.name);
		if (ri.kind == FVM_RUN_DATA) {
			uint64_t bytes = ri.page_count * bi.page_size;

			/* COMPRESSED (FORMAT.md 5.1): an offset in the plain payload
			 * space, which starts at 0; else a file offset past the header */
			if (ri.file_offset % 4096 || (!compressed && ri.file_offset < 64))
				BAD("run %llu: payload offset 0x%llx", (unsigned long long)i,
				    (unsigned long long)ri.file_offset);
			if (!compressed && fi.file_size && (ri.file_offset > fi.file_size ||
					     bytes > fi.file_size - ri.file_offset))
				BAD("run %llu: payload past the end of the file",
				    (unsigned long long)i);
			dp += ri.page_count;
			dr++;
		} else if (ri.kind == FVM_RUN_ZERO) {
			if (ri.file_offset)
				BAD("zero run %llu has a file offset", (unsigned long long)i);
			zp += ri.page_count;
			zr++;
		} else {
			BAD("run %llu: kind %d", (unsigned long long)i, ri.kind);
		}
		sp[i] = (struct span){ ri.block_id, ri.first_page, ri.first_page + ri.page_count };
	}
	if (fvm_reader_run(r, n, &(fvm_run_info)FVM_RUN_INFO_INIT) == 0)
		BAD("run %llu past the end is listed", (unsigned long long)n);
	if (dp != fi.data_pages || zp != fi.zero_pages || dr != fi.data_runs || zr != fi.zero_runs)
		BAD("runs do not add up to the counters");
	qsort(sp, n, sizeof(*sp), span_cmp);
	for (uint64_t i = 1; i < n; i++)
		if (sp[i].block == sp[i - 1].block && sp[i].first < sp[i - 1].end)
			BAD("two runs cover page %llu of block %u", (unsigned long long)sp[i].first,
			    sp[i].block);

	for (uint32_t i = 0; i < fi.devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if (fvm_reader_devstate(r, i, &di) || !di.name)
			BAD("devstate %u: %s", i, fvm_error_detail());
		if (fi.file_size && (di.file_offset > fi.file_size ||
				     di.length > fi.file_size - di.file_offset))
			BAD("devstate %u past the end of the file", i);
	}
	for (uint32_t i = 0; i < fi.meta_count; i++) {
		const char *k, *v;

		if (fvm_reader_meta(r, i, &k, &v) || !k || !v || !k[0])
			BAD("meta %u: %s", i, fvm_error_detail());
		if (!fvm_reader_meta_get(r, k))
			BAD("meta key %s not found", k);
	}
	res = NULL;
out:
	free(sp);
	return res;
}
