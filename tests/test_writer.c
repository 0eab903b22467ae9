/*
 * Writer, zero scan and live-extent resolution, checked without the reader:
 * each file is walked record by record with the format.c decoders and the
 * RAM it describes is rebuilt by applying segments in file order, then
 * compared with what was written and with the index the writer produced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crc.h"
#include "extents.h"
#include "format.h"
#include "zeroscan.h"

#define PAGE 4096u

static char tmpdir[] = "/tmp/fvm-test-writer-XXXXXX";

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* What a walk of a file found. */
struct walked {
	unsigned char *ram[4];     /* rebuilt blocks (zeroed, then applied) */
	uint64_t len[4];
	uint32_t shift[4];
	uint32_t nblocks;
	unsigned metas, devs, segments;
	struct fvm_extlist ext;    /* every entry in file order */
	struct fvm_extlist index;  /* the INDX extents */
	char devname[64];
	unsigned char devdata[256];
	size_t devlen;
};

static void walk(const unsigned char *f, size_t size, struct walked *wk)
{
	struct fvm_where w = { "test", 0 };
	struct fvm_header h;
	struct fvm_blockdesc desc[4];
	struct fvm_footer ft;
	uint64_t off = FVM_HEADER_SIZE, index_off;

	memset(wk, 0, sizeof(*wk));
	assert_int_equal(fvm_header_decode(f, &h, "test"), 0);
	assert_int_equal(fvm_footer_decode(f + size - FVM_FOOTER_SIZE, &ft, size, "test"), 0);
	index_off = ft.index_offset;
	while (off < index_off) {
		struct fvm_rechdr rh;
		const unsigned char *body = f + off + FVM_RECHDR_SIZE;

		w.offset = off;
		assert_int_equal(fvm_rechdr_decode(f + off, &rh, index_off, w), 0);
		assert_int_equal(fvm_rechdr_check_crc(&rh, body, w), 0);
		if (rh.type == FVM_REC_BLCK) {
			struct fvm_block_rec b;
			assert_int_equal(fvm_block_decode(body, rh.body_len, wk->nblocks, &b, w), 0);
			wk->len[b.id] = b.length;
			wk->shift[b.id] = b.page_shift;
			wk->ram[b.id] = calloc(1, b.length);
			desc[b.id] = (struct fvm_blockdesc){ b.length >> b.page_shift, b.page_shift };
			wk->nblocks++;
			off = fvm_rec_next(off, rh.body_len);
		} else if (rh.type == FVM_REC_META) {
			struct fvm_meta_rec m;
			assert_int_equal(fvm_meta_decode(body, rh.body_len, &m, w), 0);
			wk->metas++;
			off = fvm_rec_next(off, rh.body_len);
		} else if (rh.type == FVM_REC_DEVS) {
			struct fvm_devs_rec d;
			assert_int_equal(fvm_devs_decode(body, rh.body_len, &d, w), 0);
			memcpy(wk->devname, d.name, d.name_len);
			wk->devname[d.name_len] = 0;
			assert_true(d.data_len <= sizeof(wk->devdata));
			memcpy(wk->devdata, d.data, d.data_len);
			wk->devlen = d.data_len;
			wk->devs++;
			off = fvm_rec_next(off, rh.body_len);
		} else {
			struct fvm_seghdr sh;
			struct fvm_entry e[FVM_MAX_ENTRIES];
			uint64_t pay, pos = 0;
			const uint32_t *crcs;

			assert_int_equal(rh.type, FVM_REC_SEGM);
			assert_int_equal(fvm_seg_decode(body, rh.body_len, FVM_CHK_CRC, desc, wk->nblocks,
							&sh, e, w), 0);
			pay = fvm_seg_payload_offset(off, rh.body_len);
			crcs = (const uint32_t *)(body + FVM_SEGHDR_SIZE + sh.entry_count * FVM_ENTRY_SIZE);
			for (uint64_t k = 0; k < sh.payload_len / FVM_CHUNK; k++) {
				uint32_t c;
				memcpy(&c, crcs + k, 4);
				assert_int_equal(c, fvm_crc32c(0, f + pay + k * FVM_CHUNK, FVM_CHUNK));
			}
			for (uint32_t i = 0; i < sh.entry_count; i++) {
				uint64_t bytes = e[i].page_count << wk->shift[e[i].block_id];
				unsigned char *dst = wk->ram[e[i].block_id] +
						     (e[i].first_page << wk->shift[e[i].block_id]);
				struct fvm_extent x = { e[i].block_id, e[i].flags, e[i].first_page,
							e[i].page_count, 0, 0 };

				if (e[i].flags & FVM_RUN_FLAG_DATA) {
					x.payload_offset = pay + pos;
					memcpy(dst, f + pay + pos, bytes);
					pos += bytes;
					/* a data run is never all zero pages at its ends */
					assert_false(fvm_is_zero(dst, 1u << wk->shift[e[i].block_id]));
				} else {
					memset(dst, 0, bytes);
				}
				assert_int_equal(fvm_extlist_push(&wk->ext, &x), 0);
			}
			assert_true(pay % FVM_PAYLOAD_ALIGN == 0);
			off = sh.payload_len ? pay + sh.payload_len : fvm_rec_next(off, rh.body_len);
			wk->segments++;
		}
	}
	assert_int_equal(off, index_off);
	{
		struct fvm_rechdr rh;
		struct fvm_indexhdr ih;
		const unsigned char *body = f + off + FVM_RECHDR_SIZE;

		w.offset = off;
		assert_int_equal(fvm_rechdr_decode(f + off, &rh, size - FVM_FOOTER_SIZE, w), 0);
		assert_int_equal(rh.type, FVM_REC_INDX);
		assert_int_equal(fvm_rechdr_check_crc(&rh, body, w), 0);
		assert_int_equal(fvm_indexhdr_decode(body, rh.body_len, &ih, w), 0);
		assert_int_equal(ih.block_count, wk->nblocks);
		assert_int_equal(ih.meta_count, wk->metas);
		assert_int_equal(ih.devstate_count, wk->devs);
		const unsigned char *p = body + FVM_INDEXHDR_SIZE +
			8 * (ih.block_count + ih.meta_count + ih.devstate_count);
		for (uint64_t i = 0; i < ih.extent_count; i++) {
			struct fvm_extent x;
			assert_int_equal(fvm_extent_decode(p + i * FVM_EXTENT_SIZE, &x, desc,
							   wk->nblocks, FVM_CHK_CRC, index_off, i, w), 0);
			assert_int_equal(fvm_extlist_push(&wk->index, &x), 0);
		}
		assert_int_equal(fvm_extents_check_overlap(wk->index.v, wk->index.n, desc, w), 0);
		/* R68: the index is the live state of the segments */
		int rewrites;
		assert_int_equal(fvm_extents_resolve(&wk->ext, desc, &rewrites), 0);
		assert_int_equal(wk->ext.n, wk->index.n);
		for (uint64_t i = 0; i < wk->ext.n; i++) {
			wk->ext.v[i].crc_offset = wk->index.v[i].crc_offset;
			assert_memory_equal(&wk->ext.v[i], &wk->index.v[i], sizeof(struct fvm_extent));
		}
	}
}

static void walked_free(struct walked *wk)
{
	for (int i = 0; i < 4; i++)
		free(wk->ram[i]);
	fvm_extlist_free(&wk->ext);
	fvm_extlist_free(&wk->index);
}

/* A guest-like block: long data runs, zero gaps, single pages, near-zero pages. */
static unsigned char *make_ram(uint64_t pages, unsigned seed)
{
	unsigned char *m = calloc(pages, PAGE);

	srand(seed);
	for (uint64_t p = 0; p < pages;) {
		uint64_t n = 1 + (uint64_t)rand() % (rand() % 4 ? 4 : 300);
		int kind = rand() % 3;

		for (uint64_t k = 0; k < n && p < pages; k++, p++) {
			if (kind == 0)
				continue;
			if (kind == 1 && rand() % 5 == 0)
				m[p * PAGE + PAGE - 1] = 1; /* zero but for the last byte */
			else if (kind != 1)
				for (unsigned b = 0; b < PAGE; b += 64)
					m[p * PAGE + b] = (unsigned char)(rand() | 1);
		}
	}
	return m;
}

static char *tmpname(const char *leaf)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s/%s", tmpdir, leaf);
	return buf;
}

static void write_block_roundtrip(void **state)
{
	const uint64_t pages = 3000;
	unsigned char *ram = make_ram(pages, 1), *two = make_ram(64 * 512, 2), *f;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	struct walked wk;
	fvm_writer *w;
	uint32_t a, b;
	size_t size;

	(void)state;
	o.segment_bytes = 1 << 20; /* several segments */
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, tmpname("a.fvm"), &o), 0);
	assert_int_equal(fvm_writer_add_meta(w, "creator", "test_writer"), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", pages * PAGE, PAGE, &a), 0);
	assert_int_equal(fvm_writer_add_block(w, "huge", 64 * 512 * PAGE, 2u << 20, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, a, ram), 0);
	assert_int_equal(fvm_writer_write_block(w, b, two), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "dev", "\x01\x02\x03", 3), 0);
	/* the target does not exist until finish */
	assert_int_not_equal(access(tmpname("a.fvm"), F_OK), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);

	f = slurp(tmpname("a.fvm"), &size);
	walk(f, size, &wk);
	assert_int_equal(wk.nblocks, 2);
	assert_true(wk.segments > 2);
	assert_memory_equal(wk.ram[0], ram, pages * PAGE);
	assert_memory_equal(wk.ram[1], two, 64 * 512 * PAGE);
	assert_string_equal(wk.devname, "dev");
	assert_int_equal(wk.devlen, 3);
	assert_int_equal(wk.metas, 1);
	walked_free(&wk);
	free(f);
	free(ram);
	free(two);
}

/* Pages delivered one by one, shuffled, some twice: the last copy wins. */
static void streaming_rewrites(void **state)
{
	const uint64_t pages = 2048;
	unsigned char *ram = make_ram(pages, 3), *f;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	uint64_t *order = malloc(pages * sizeof(*order));
	unsigned char page[PAGE];
	struct walked wk;
	fvm_writer *w;
	uint32_t a;
	size_t size;

	(void)state;
	o.segment_bytes = 256 << 10;
	o.max_run_bytes = 64 << 10;
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, tmpname("s.fvm"), &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "ram", pages * PAGE, PAGE, &a), 0);
	/* first pass: garbage everywhere; it must all be replaced */
	memset(page, 0xee, sizeof(page));
	for (uint64_t p = 0; p < pages; p += 7)
		assert_int_equal(fvm_writer_put_pages(w, a, p, 1, page), 0);
	/* then the real pages in chunks of random length and order */
	for (uint64_t i = 0; i < pages; i++)
		order[i] = i;
	srand(4);
	for (uint64_t i = pages - 1; i > 0; i--) {
		uint64_t j = (uint64_t)rand() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t p = order[i];
		if (fvm_is_zero(ram + p * PAGE, PAGE) && rand() % 2)
			assert_int_equal(fvm_writer_put_zero(w, a, p, 1), 0);
		else
			assert_int_equal(fvm_writer_put_pages(w, a, p, 1, ram + p * PAGE), 0);
	}
	/* and a final in-order pass over the first 100 pages, batched */
	assert_int_equal(fvm_writer_put_pages(w, a, 0, 100, ram), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);

	f = slurp(tmpname("s.fvm"), &size);
	walk(f, size, &wk);
	assert_memory_equal(wk.ram[0], ram, pages * PAGE);
	walked_free(&wk);
	free(f);
	free(order);
	free(ram);
}

/* Writing to a pipe: nothing seeks; the bytes equal a path writer's. */
static void pipe_output(void **state)
{
	const uint64_t pages = 512;
	unsigned char *ram = make_ram(pages, 5), *f, *g;
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t a;
	size_t size, gsize = 0;
	int fds[2];
	pid_t pid;

	(void)state;
	o.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, tmpname("p1.fvm"), &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "ram", pages * PAGE, PAGE, &a), 0);
	assert_int_equal(fvm_writer_write_block(w, a, ram), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	f = slurp(tmpname("p1.fvm"), &size);

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (fvm_writer_open_fd(&w, fds[1], NULL) || fvm_writer_add_block(w, "ram", pages * PAGE, PAGE, &a) ||
		    fvm_writer_write_block(w, a, ram) || fvm_writer_finish(w))
			_exit(1);
		fvm_writer_free(w);
		_exit(0);
	}
	close(fds[1]);
	g = malloc(size + 1);
	for (ssize_t r; (r = read(fds[0], g + gsize, size + 1 - gsize)) > 0;)
		gsize += (size_t)r;
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(gsize, size);
	assert_memory_equal(f, g, size);
	free(f);
	free(g);
	free(ram);
}

static void errors_and_atomicity(void **state)
{
	fvm_writer *w;
	uint32_t a;
	static unsigned char page[PAGE];
	FILE *old;

	(void)state;
	old = fopen(tmpname("keep.fvm"), "w");
	fputs("old contents", old);
	fclose(old);
	assert_int_equal(fvm_writer_open_path(&w, tmpname("keep.fvm"), NULL), 0);
	assert_int_equal(fvm_writer_add_block(w, "", PAGE, PAGE, &a), FVM_EINVAL);
	assert_true(strlen(fvm_error_detail()) > 0);
	assert_int_equal(fvm_writer_add_block(w, "x", PAGE + 1, PAGE, &a), FVM_EINVAL);
	assert_int_equal(fvm_writer_add_block(w, "x", PAGE, 3000, &a), FVM_EINVAL);
	assert_int_equal(fvm_writer_add_block(w, "x", 4 * PAGE, PAGE, &a), 0);
	assert_int_equal(fvm_writer_add_block(w, "x", PAGE, PAGE, &a), FVM_EINVAL);
	assert_int_equal(fvm_writer_put_pages(w, a, 3, 2, page), FVM_EINVAL);
	assert_int_equal(fvm_writer_put_pages(w, 9, 0, 1, page), FVM_EINVAL);
	assert_int_equal(fvm_writer_put_pages(w, a, UINT64_MAX, 2, page), FVM_EINVAL);
	assert_int_equal(fvm_writer_add_meta(w, "k", "v"), 0);
	/* abandoned: the old file stays, no temporary is left */
	fvm_writer_free(w);
	{
		size_t n;
		unsigned char *c = slurp(tmpname("keep.fvm"), &n);
		assert_int_equal(n, 12);
		assert_memory_equal(c, "old contents", 12);
		free(c);
	}
	/* a device is written in place, never replaced by a rename */
	{
		struct stat st;

		assert_int_equal(fvm_writer_open_path(&w, "/dev/null", NULL), 0);
		assert_int_equal(fvm_writer_add_block(w, "x", 4 * PAGE, PAGE, &a), 0);
		assert_int_equal(fvm_writer_put_pages(w, a, 0, 1, page), 0);
		assert_int_equal(fvm_writer_finish(w), 0);
		fvm_writer_free(w);
		assert_int_equal(stat("/dev/null", &st), 0);
		assert_true(S_ISCHR(st.st_mode));
		assert_int_equal(fvm_writer_open_path(&w, tmpdir, NULL), FVM_EINVAL);
	}
	assert_int_equal(fvm_writer_open_path(&w, "/nonexistent-dir/x.fvm", NULL), FVM_EIO);
	assert_non_null(strstr(fvm_error_detail(), "/nonexistent-dir/x.fvm"));
}

static void zero_scan(void **state)
{
	unsigned char *buf = calloc(1, 3 * PAGE + 1) + 1; /* unaligned on purpose */

	(void)state;
	assert_true(fvm_is_zero(buf, PAGE));
	for (unsigned i = 0; i < PAGE; i += 511) {
		buf[i] = 0x80;
		assert_false(fvm_is_zero(buf, PAGE));
		buf[i] = 0;
	}
	buf[PAGE - 1] = 1;
	assert_false(fvm_is_zero(buf, PAGE));
	assert_int_equal(fvm_run_length(buf, 3, PAGE, 0), 1);
	assert_int_equal(fvm_run_length(buf + PAGE, 2, PAGE, 1), 2);
	free(buf - 1);
}

/* Resolution against a brute-force page map. */
static void resolve_random(void **state)
{
	struct fvm_blockdesc desc[2] = { { 200, 12 }, { 50, 21 } };

	(void)state;
	for (unsigned seed = 1; seed < 200; seed++) {
		struct fvm_extlist l = { 0 };
		int64_t owner[2][200], got[2][200];
		uint64_t n = 1 + seed % 40;
		int rw;

		srand(seed);
		memset(owner, 0xff, sizeof(owner));
		memset(got, 0xff, sizeof(got));
		for (uint64_t i = 0; i < n; i++) {
			uint32_t b = (uint32_t)(rand() % 2);
			uint64_t first = (uint64_t)rand() % desc[b].pages;
			uint64_t count = 1 + (uint64_t)rand() % (desc[b].pages - first);
			/* payload position encodes (extent, page) so pieces can be traced */
			struct fvm_extent e = { b, 1, first, count, (i + 1) << 40, (i + 1) << 30 };
			assert_int_equal(fvm_extlist_push(&l, &e), 0);
			for (uint64_t p = first; p < first + count; p++)
				owner[b][p] = (int64_t)(((i + 1) << 40) + ((p - first) << desc[b].page_shift));
		}
		assert_int_equal(fvm_extents_resolve(&l, desc, &rw), 0);
		for (uint64_t i = 0; i < l.n; i++) {
			struct fvm_extent *e = &l.v[i];
			for (uint64_t p = e->first_page; p < e->first_page + e->page_count; p++) {
				assert_int_equal(got[e->block_id][p], -1); /* no page twice */
				got[e->block_id][p] = (int64_t)(e->payload_offset +
					((p - e->first_page) << desc[e->block_id].page_shift));
			}
			/* crc offset moved with the payload */
			uint64_t ext = e->payload_offset >> 40;
			uint64_t skip = e->payload_offset - (ext << 40);
			assert_int_equal(e->crc_offset, (ext << 30) + skip / 4096 * 4);
		}
		assert_memory_equal(owner, got, sizeof(owner));
		fvm_extlist_free(&l);
	}
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(zero_scan),
		cmocka_unit_test(resolve_random),
		cmocka_unit_test(write_block_roundtrip),
		cmocka_unit_test(streaming_rewrites),
		cmocka_unit_test(pipe_output),
		cmocka_unit_test(errors_and_atomicity),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
