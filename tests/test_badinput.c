/*
 * Hostile input: a valid snapshot is cut, bit-flipped and rewritten (with
 * the lib/format.c encoders, re-sealing CRCs so that the structural rule is
 * what fails) and each damaged file must be refused with the documented
 * code, by fvm_reader_open, fvm_load with FVM_LOAD_VERIFY, fvm_verify or a
 * stream reader, as the rule says; with a detail naming the structure and
 * offset, no crash under ASan, and no write outside the destination
 * (every mapping sits between PROT_NONE guard pages).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/experimental.h"
#include "crc.h"
#include "fastvm/fastvm.h"
#include "format.h"
#include "testutil.h"

/* A set of results: bit -code; E(FVM_OK) is bit 0 (success allowed). */
#define E(c) (1u << (unsigned)-(c))
#define OK E(FVM_OK)
#define ANYERR (0xffffu & ~OK)

#define FNAME "bad.fvm"

/* ---------------------------------------------------------------- the valid file */

struct rec {
	uint32_t type;
	uint64_t off, body_len;
	uint64_t body_end;        /* off + 16 + body_len */
	uint64_t payload_off, payload_len;
	uint64_t next;            /* where the next record starts */
};

struct snap {
	uint8_t *b;
	size_t len;
	struct rec rec[512];
	int nrec;
	int index_rec;            /* rec[] number of the INDX record */
	struct fvm_header hdr;
	struct fvm_footer foot;
	struct fvm_indexhdr ih;
	uint64_t offs[64];        /* block, meta, devstate record offsets from the index */
	struct fvm_extent ext[4096];
	struct fvm_blockdesc bd[8];
	char names[8][FVM_MAX_NAME + 1];
	uint32_t nblocks;
};

static struct tu_layout layout;
static struct snap good;       /* PAYLOAD_CRC, several segments */
static struct snap good_nocrc;

/* Walk a file's records with the format.c decoders (they must accept it). */
static void parse(struct snap *s)
{
	uint64_t off = FVM_HEADER_SIZE;
	uint32_t nb = 0;

	assert_int_equal(fvm_header_decode(s->b, &s->hdr, FNAME), 0);
	assert_int_equal(fvm_footer_decode(s->b + s->len - FVM_FOOTER_SIZE, &s->foot, s->len,
					   FNAME), 0);
	s->nrec = 0;
	for (;;) {
		struct fvm_rechdr rh;
		struct rec *r = &s->rec[s->nrec];

		assert_true(s->nrec < 512);
		assert_int_equal(fvm_rechdr_decode(s->b + off, &rh, s->len - FVM_FOOTER_SIZE,
						   (struct fvm_where){ FNAME, off }), 0);
		assert_int_equal(fvm_rechdr_check_crc(&rh, s->b + off + 16,
						      (struct fvm_where){ FNAME, off }), 0);
		*r = (struct rec){ rh.type, off, rh.body_len, off + 16 + rh.body_len, 0, 0,
				   fvm_rec_next(off, rh.body_len) };
		if (rh.type == FVM_REC_BLCK) {
			struct fvm_block_rec br;

			assert_int_equal(fvm_block_decode(s->b + off + 16, rh.body_len, nb, &br,
							  (struct fvm_where){ FNAME, off }), 0);
			s->bd[nb] = (struct fvm_blockdesc){ br.length >> br.page_shift, br.page_shift };
			memcpy(s->names[nb], br.name, sizeof(br.name));
			nb++;
		} else if (rh.type == FVM_REC_SEGM) {
			struct fvm_seghdr sh;
			struct fvm_entry *e = calloc(fvm_seg_entry_count(s->b + off + 16, rh.body_len),
						     sizeof(*e));

			assert_int_equal(fvm_seg_decode(s->b + off + 16, rh.body_len,
							fvm_chk_bytes(s->hdr.incompat), s->bd, nb, &sh, e,
							(struct fvm_where){ FNAME, off }), 0);
			free(e);
			if (sh.payload_len) {
				r->payload_off = fvm_seg_payload_offset(off, rh.body_len);
				r->payload_len = sh.payload_len;
				r->next = r->payload_off + sh.payload_len;
			}
		}
		s->nrec++;
		if (rh.type == FVM_REC_INDX)
			break;
		off = r->next;
	}
	s->index_rec = s->nrec - 1;
	s->nblocks = nb;
	{
		const struct rec *ir = &s->rec[s->index_rec];
		const uint8_t *body = s->b + ir->off + 16;
		uint64_t nofs;

		assert_int_equal(ir->off, s->foot.index_offset);
		assert_int_equal(fvm_indexhdr_decode(body, ir->body_len, &s->ih,
						     (struct fvm_where){ FNAME, ir->off }), 0);
		nofs = (uint64_t)s->ih.block_count + s->ih.meta_count + s->ih.devstate_count;
		assert_true(nofs <= 64 && s->ih.extent_count <= 4096);
		for (uint64_t i = 0; i < nofs; i++)
			s->offs[i] = fvm_ld64(body + 24 + 8 * i);
		for (uint64_t i = 0; i < s->ih.extent_count; i++)
			assert_int_equal(fvm_extent_decode(body + 24 + 8 * nofs + 40 * i, &s->ext[i],
							   s->bd, nb, fvm_chk_bytes(s->hdr.incompat),
							   ir->off, i, (struct fvm_where){ FNAME, ir->off }), 0);
	}
}

static const struct rec *find_rec(const struct snap *s, uint32_t type, int nth)
{
	for (int i = 0; i < s->nrec; i++)
		if (s->rec[i].type == type && nth-- == 0)
			return &s->rec[i];
	return NULL;
}

static void make_snap(struct snap *s, int with_crc)
{
	const char *path = tu_path(with_crc ? "good.fvm" : "good-nocrc.fvm");
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	static const uint8_t dev1[100] = { 1, 2, 3 }, dev2[5000] = { 9 };
	fvm_writer *w;
	uint32_t ids[TU_MAX_BLOCKS];

	o.flags = FVM_WRITE_NO_FSYNC | (with_crc ? 0 : FVM_WRITE_NO_CRC);
	o.segment_bytes = 32 * 1024; /* several segments */
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_meta(w, "creator", "test_badinput"), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "config", dev1, sizeof(dev1)), 0);
	for (unsigned i = 0; i < layout.n; i++)
		assert_int_equal(fvm_writer_add_block(w, layout.b[i].name, layout.b[i].length,
						      layout.b[i].page_size, &ids[i]), 0);
	for (unsigned i = 0; i < layout.n; i++)
		assert_int_equal(fvm_writer_write_block(w, ids[i], layout.b[i].mem), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "devices", dev2, sizeof(dev2)), 0);
	assert_int_equal(fvm_writer_add_meta(w, "source", "generated"), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	s->b = tu_read_file(path, &s->len);
	assert_non_null(s->b);
	parse(s);
	assert_true(find_rec(s, FVM_REC_SEGM, 2) != NULL);
	assert_int_equal(!!(s->hdr.incompat & FVM_INCOMPAT_PAYLOAD_CRC), with_crc);
}

static int setup(void **state)
{
	struct tu_rng g;

	(void)state;
	tu_rng_seed(&g, 31337);
	if (tu_layout_add(&layout, "pc.ram", 256 * 1024, 4096, TU_RANDOM_RUNS, &g) ||
	    tu_layout_add(&layout, "vga", 64 * 1024, 4096, TU_ALTERNATE, &g) ||
	    tu_layout_add(&layout, "rom", 8192, 4096, TU_ALL_DATA, &g))
		return -1;
	make_snap(&good, 1);
	make_snap(&good_nocrc, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(good.b);
	free(good_nocrc.b);
	tu_layout_free(&layout);
	tu_tmpdir_remove();
	return 0;
}

/* ---------------------------------------------------------------- editing */

static uint8_t *dup_bytes(const struct snap *s)
{
	uint8_t *p = malloc(s->len);

	assert_non_null(p);
	memcpy(p, s->b, s->len);
	return p;
}

/* Recompute the record CRC of the record at off (its header says type and length). */
static void reseal(uint8_t *b, uint64_t off)
{
	fvm_rechdr_encode(b + off, fvm_ld32(b + off), b + off + 16, fvm_ld64(b + off + 8));
}

static void reseal_header(uint8_t *b)
{
	fvm_st32(b + 60, fvm_crc32c(0, b, 60));
}

static void reseal_footer(uint8_t *b, size_t len)
{
	uint8_t *f = b + len - FVM_FOOTER_SIZE;

	fvm_st32(f + 24, fvm_crc32c(0, f, 24));
}

/*
 * A copy of s whose index is replaced: header counts ih, record offsets offs,
 * extents ext; footer and CRCs recomputed, so only the rules can object.
 */
static uint8_t *with_index(const struct snap *s, const struct fvm_indexhdr *ih,
			   const uint64_t *offs, const struct fvm_extent *ext, size_t *len)
{
	uint64_t io = s->foot.index_offset, body_len = fvm_index_body_len(ih);
	uint64_t nofs = (uint64_t)ih->block_count + ih->meta_count + ih->devstate_count;
	uint64_t total = io + fvm_align(16 + body_len, 8) + FVM_FOOTER_SIZE;
	uint8_t *b = calloc(1, total), *body;
	struct fvm_footer f = { io, 16 + body_len, total };

	assert_non_null(b);
	memcpy(b, s->b, io);
	body = b + io + 16;
	fvm_indexhdr_encode(body, ih);
	for (uint64_t i = 0; i < nofs; i++)
		fvm_st64(body + 24 + 8 * i, offs[i]);
	for (uint64_t i = 0; i < ih->extent_count; i++)
		fvm_extent_encode(body + 24 + 8 * nofs + 40 * i, &ext[i]);
	fvm_rechdr_encode(b + io, FVM_REC_INDX, body, body_len);
	fvm_footer_encode(b + total - FVM_FOOTER_SIZE, &f);
	*len = total;
	return b;
}

/* ---------------------------------------------------------------- checking */

struct expect {
	unsigned open;    /* fvm_reader_open */
	unsigned load;    /* fvm_load with FVM_LOAD_VERIFY, both backends (if opened) */
	unsigned verify;  /* fvm_verify (if opened) */
	unsigned stream;  /* first error of open_stream + fvm_load(VERIFY), or OK */
};

static char what_buf[256];
/* A word the detail of a refused open must hold (the damaged structure), or NULL. */
static const char *open_word;

static const char *code_set(unsigned set)
{
	static char buf[512];
	size_t n = 0;

	buf[0] = '\0';
	for (int c = 0; c < 16; c++)
		if (set & (1u << c))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? "|" : "",
					      c ? fvm_strerror(-c) : "ok");
	return buf;
}

static void check_rc(int rc, unsigned set, const char *stage, const char *name)
{
	const char *d = fvm_error_detail();

	if (rc > 0 || rc < -15 || !(set & E(rc)))
		fail_msg("%s: %s gave %d (%s), expected %s; detail: %s", what_buf, stage, rc,
			 fvm_strerror(rc), code_set(set), d);
	if (rc == 0)
		return;
	if (!d[0])
		fail_msg("%s: %s failed with %s and an empty detail", what_buf, stage,
			 fvm_strerror(rc));
	if (!strstr(d, name))
		fail_msg("%s: %s: detail does not name the file %s: %s", what_buf, stage, name, d);
	/* format errors name an offset; mapping, I/O and argument errors need not */
	if (rc != FVM_EIO && rc != FVM_ENOMEM && rc != FVM_EMAPPING && rc != FVM_EINVAL &&
	    rc != FVM_ESTATE && !strstr(d, "offset") && !strstr(d, "0x") &&
	    !strstr(d, "too short"))
		fail_msg("%s: %s: detail names no offset: %s", what_buf, stage, d);
}

/* Mappings for the layout, in guarded memory filled with 0x55. */
static void maps_alloc(fvm_mapping *m)
{
	for (unsigned i = 0; i < layout.n; i++) {
		m[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, layout.b[i].name, tu_guard_alloc(layout.b[i].length, 0x55),
				      layout.b[i].length, 0 };
		assert_non_null(m[i].addr);
	}
}

static void maps_free(fvm_mapping *m)
{
	for (unsigned i = 0; i < layout.n; i++)
		tu_guard_free(m[i].addr, m[i].length);
}

static int stream_try(const char *path)
{
	fvm_reader *r = NULL;
	fvm_mapping m[TU_MAX_BLOCKS];
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	int fd = open(path, O_RDONLY), rc;

	assert_true(fd >= 0);
	rc = fvm_reader_open_stream(&r, fd, "stream-" FNAME);
	if (rc == 0) {
		maps_alloc(m);
		o.flags = FVM_LOAD_VERIFY;
		o.zero_policy = FVM_ZERO_MEMSET;
		rc = fvm_load(r, m, layout.n, &o, NULL);
		if (rc == 0 && tu_check_consistent(r))
			fail_msg("%s: stream: inconsistent listing: %s", what_buf,
				 tu_check_consistent(r));
		maps_free(m);
	}
	fvm_reader_free(r);
	close(fd);
	return rc;
}

/*
 * Piecewise reads check payload CRCs like a verifying load: every block read
 * whole gives a result the load may give, and a damage the load must report
 * shows in at least one block. Device-state reads give OK or what verify says.
 */
static void piecewise(fvm_reader *r, const struct expect *x)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	int failed = 0;

	assert_int_equal(fvm_reader_info(r, &fi), 0);
	for (uint32_t i = 0; i < fi.block_count; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint8_t *buf;
		int rc;

		assert_int_equal(fvm_reader_block(r, i, &bi), 0);
		buf = tu_guard_alloc(bi.length, 0x55);
		assert_non_null(buf);
		rc = fvm_reader_read_pages(r, i, 0, bi.length / bi.page_size, buf);
		check_rc(rc, x->load | OK, "read_pages", FNAME);
		failed |= rc != 0;
		tu_guard_free(buf, bi.length);
	}
	if (!(x->load & OK) && !failed && !(x->load & E(FVM_EMAPPING)))
		fail_msg("%s: read_pages read every block without error; load expects %s",
			 what_buf, code_set(x->load));
	for (uint32_t i = 0; i < fi.devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
		uint8_t *buf;

		assert_int_equal(fvm_reader_devstate(r, i, &di), 0);
		buf = malloc(di.length + 1);
		assert_non_null(buf);
		check_rc(fvm_reader_devstate_read(r, i, buf, di.length), x->verify | OK,
			 "devstate_read", FNAME);
		free(buf);
	}
}

/* Run one damaged file through every reader path and check the results. */
static void try_file(const uint8_t *b, size_t len, const struct expect *x)
{
	const char *path = tu_path(FNAME);
	fvm_reader *r = NULL;
	int rc;

	assert_int_equal(tu_write_file(path, b, len), 0);
	rc = fvm_reader_open(&r, path);
	check_rc(rc, x->open, "open", FNAME);
	/* when the damage is in one structure, the refusal names it */
	if (rc && open_word && !strcasestr(fvm_error_detail(), open_word))
		fail_msg("%s: open: detail does not name the %s: %s", what_buf, open_word,
			 fvm_error_detail());
	if (rc == 0) {
		fvm_mapping m[TU_MAX_BLOCKS];
		const char *why = tu_check_consistent(r);

		if (why)
			fail_msg("%s: accepted file with inconsistent listings: %s", what_buf, why);
		for (int backend = FVM_BACKEND_URING; backend <= FVM_BACKEND_MMAP; backend++) {
			fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
			fvm_load_tuning t = FVM_LOAD_TUNING_INIT;

			o.backend = backend;
			o.flags = FVM_LOAD_VERIFY;
			t.chunk_bytes = backend == FVM_BACKEND_PREAD ? 8192 : 0;
			o.tuning = &t;
			maps_alloc(m);
			check_rc(fvm_load(r, m, layout.n, &o, NULL), x->load,
				 backend == FVM_BACKEND_URING ? "load(uring)" :
				 backend == FVM_BACKEND_MMAP ? "load(mmap)" : "load(pread)", FNAME);
			maps_free(m);
		}
		piecewise(r, x);
		check_rc(fvm_verify(r, NULL, NULL), x->verify, "verify", FNAME);
		fvm_reader_free(r);
	}
	check_rc(stream_try(path), x->stream, "stream", "stream-" FNAME);
}

#define WHAT(...) snprintf(what_buf, sizeof(what_buf), __VA_ARGS__)

/* ---------------------------------------------------------------- tests */

static void test_good_file(void **state)
{
	static const struct expect x = { OK, OK, OK, OK };

	(void)state;
	WHAT("unchanged file");
	try_file(good.b, good.len, &x);
	WHAT("unchanged file without payload CRCs");
	try_file(good_nocrc.b, good_nocrc.len, &x);
}

/* Every structure boundary of the file, and 40 random offsets. */
static void truncate_at(const struct snap *s, uint64_t cut)
{
	static const struct expect x = { E(FVM_ETRUNCATED), 0, 0, E(FVM_ETRUNCATED) };

	if (cut >= s->len)
		return;
	WHAT("file cut at offset 0x%llx of 0x%zx", (unsigned long long)cut, s->len);
	try_file(s->b, cut, &x);
}

static void test_truncate(void **state)
{
	const struct snap *s = &good;
	struct tu_rng g;
	static const uint64_t early[] = { 0, 1, 7, 8, 12, 32, 60, 63, 64, 65, 72, 79, 80, 95, 96 };

	(void)state;
	for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++)
		truncate_at(s, early[i]);
	for (int i = 0; i < s->nrec; i++) {
		const struct rec *r = &s->rec[i];

		truncate_at(s, r->off);          /* record start */
		truncate_at(s, r->off + 4);      /* inside the record header */
		truncate_at(s, r->off + 8);
		truncate_at(s, r->off + 16);     /* body start */
		truncate_at(s, r->off + 16 + r->body_len / 2);
		truncate_at(s, r->body_end - 1); /* body end */
		truncate_at(s, r->body_end);
		if (r->payload_len) {
			truncate_at(s, r->payload_off);        /* payload start */
			truncate_at(s, r->payload_off + 1);
			truncate_at(s, r->payload_off + 4096);
			truncate_at(s, r->payload_off + r->payload_len - 1);
		}
		truncate_at(s, r->next - 1);
		truncate_at(s, r->next);
	}
	truncate_at(s, s->len - FVM_FOOTER_SIZE);      /* footer start */
	truncate_at(s, s->len - FVM_FOOTER_SIZE + 8);
	truncate_at(s, s->len - 4);
	truncate_at(s, s->len - 1);
	tu_rng_seed(&g, 5);
	for (int i = 0; i < 40; i++)
		truncate_at(s, tu_below(&g, s->len));
}

/*
 * Data appended after the footer. Zero padding is a padded store (FORMAT.md
 * 6.1) and reads as the file it pads; anything else means the footer is no
 * longer where it must be.
 */
static void test_appended(void **state)
{
	static const struct expect padded = { OK, OK, OK, ANYERR | OK };
	static const struct expect x = { E(FVM_ETRUNCATED) | E(FVM_ECORRUPT), 0, 0,
					 ANYERR | OK };
	uint8_t *b = malloc(good.len + 4096);

	(void)state;
	memcpy(b, good.b, good.len);
	memset(b + good.len, 0, 4096);
	WHAT("4096 zero bytes appended");
	try_file(b, good.len + 4096, &padded);
	memset(b + good.len, 0x5a, 4096);
	WHAT("4096 non-zero bytes appended");
	try_file(b, good.len + 4096, &x);
	memset(b + good.len, 0, 4096);
	b[good.len + 4095] = 1;
	WHAT("4095 zero bytes and a one appended");
	try_file(b, good.len + 4096, &x);
	/* a second copy of the footer appended: file_size no longer matches (R72) */
	memcpy(b + good.len, good.b + good.len - 32, 32);
	WHAT("footer appended twice");
	try_file(b, good.len + 32, &x);
	free(b);
}

static void flip(const struct snap *s, uint64_t off, int bit, const struct expect *x,
		 const char *region)
{
	uint8_t *b = dup_bytes(s);

	b[off] ^= (uint8_t)(1u << bit);
	WHAT("%s: bit %d of byte 0x%llx flipped", region, bit, (unsigned long long)off);
	try_file(b, s->len, x);
	free(b);
}

static void test_flip_header(void **state)
{
	static const struct expect magic = { E(FVM_EMAGIC), 0, 0, E(FVM_EMAGIC) };
	static const struct expect crc = { E(FVM_ECHECKSUM), 0, 0, E(FVM_ECHECKSUM) };

	(void)state;
	open_word = "header";
	for (int i = 0; i < FVM_HEADER_SIZE; i++)
		flip(&good, (uint64_t)i, i % 8, i < 8 ? &magic : &crc, "file header");
	open_word = NULL;
}

static void test_flip_footer(void **state)
{
	/* a stream reader sees the footer last; it must still refuse a bad one */
	static const struct expect crc = { E(FVM_ECHECKSUM), 0, 0, E(FVM_ECHECKSUM) };
	static const struct expect magic = { E(FVM_ETRUNCATED), 0, 0, E(FVM_ETRUNCATED) };
	uint64_t f = good.len - FVM_FOOTER_SIZE;

	(void)state;
	open_word = "footer";
	for (int i = 0; i < FVM_FOOTER_SIZE; i++)
		flip(&good, f + (uint64_t)i, (i * 3) % 8, i < 28 ? &crc : &magic, "footer");
	open_word = NULL;
}

/*
 * A record's bytes: its CRC field and body are covered by R11; its type
 * field and body_len may also trip R10, R12, R13 or the index's R61 first.
 */
static void flip_record(const struct snap *s, const struct rec *r, const char *name,
			int read_at_open)
{
	/*
	 * A reader checks a SEGM's 16-byte segment header before reading (and
	 * CRC-checking) the rest, so a hostile body_len cannot make it buffer
	 * much: flips there may read as the broken rule instead.
	 */
	struct expect seghdr = { OK | E(FVM_ECHECKSUM), OK | E(FVM_ECHECKSUM),
				 E(FVM_ECHECKSUM) | E(FVM_ECORRUPT) | E(FVM_ERANGE),
				 E(FVM_ECHECKSUM) | E(FVM_ECORRUPT) | E(FVM_ERANGE) };
	struct expect body = { E(FVM_ECHECKSUM), 0, E(FVM_ECHECKSUM), E(FVM_ECHECKSUM) };
	struct expect hdr = { E(FVM_ECHECKSUM) | E(FVM_ECORRUPT) | E(FVM_ETRUNCATED) | E(FVM_ERANGE),
			      0, 0, 0 };
	char region[64];
	uint64_t pos[] = { 16, 17, 16 + r->body_len / 2, 16 + r->body_len - 1 };

	if (!read_at_open) { /* verify and the stream reader must read it; open may */
		body.open = OK | E(FVM_ECHECKSUM);
		body.load = OK | E(FVM_ECHECKSUM);
	}
	hdr.verify = hdr.stream = hdr.open;
	if (!read_at_open)
		hdr.open |= OK, hdr.load = OK | hdr.open;
	snprintf(region, sizeof(region), "%s at 0x%llx", name, (unsigned long long)r->off);
	/* "BLCK record" etc.: the body's CRC failure names the record */
	open_word = fvm_rec_name(r->type);
	for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++)
		if (pos[i] < 16 + r->body_len)
			flip(s, r->off + pos[i], (int)i * 2 + 1,
			     r->type == FVM_REC_SEGM && pos[i] < 32 ? &seghdr : &body, region);
	/* crc field */
	{
		struct expect c = body;
		flip(s, r->off + 4, 0, &c, region);
		flip(s, r->off + 7, 7, &c, region);
	}
	/* type and body_len fields: the reader may name what it expected instead */
	open_word = NULL;
	flip(s, r->off + 0, 1, &hdr, region);
	flip(s, r->off + 3, 6, &hdr, region);
	flip(s, r->off + 8, 0, &hdr, region);
	flip(s, r->off + 9, 3, &hdr, region);
	flip(s, r->off + 15, 7, &hdr, region);
}

static void test_flip_records(void **state)
{
	(void)state;
	flip_record(&good, find_rec(&good, FVM_REC_BLCK, 0), "BLCK record", 1);
	flip_record(&good, find_rec(&good, FVM_REC_BLCK, 2), "BLCK record", 1);
	flip_record(&good, find_rec(&good, FVM_REC_META, 0), "META record", 1);
	flip_record(&good, find_rec(&good, FVM_REC_META, 1), "META record", 1);
	flip_record(&good, &good.rec[good.index_rec], "INDX record", 1);
	/* DEVS bodies may be large: a reader may leave them to devstate_read and verify */
	flip_record(&good, find_rec(&good, FVM_REC_DEVS, 0), "DEVS record", 0);
	flip_record(&good, find_rec(&good, FVM_REC_DEVS, 1), "DEVS record", 0);
	/* SEGM bodies: the index describes the runs; verify and streams read segments */
	flip_record(&good, find_rec(&good, FVM_REC_SEGM, 0), "SEGM record", 0);
	flip_record(&good, find_rec(&good, FVM_REC_SEGM, 1), "SEGM record", 0);
	flip_record(&good_nocrc, find_rec(&good_nocrc, FVM_REC_SEGM, 0), "SEGM record (no crc)", 0);
}

/* Payload bytes: found by the chunk CRCs when loading with VERIFY, and by verify. */
static void test_flip_payload(void **state)
{
	static const struct expect crc = { OK, E(FVM_ECHECKSUM), E(FVM_ECHECKSUM),
					   E(FVM_ECHECKSUM) };
	struct tu_rng g;

	(void)state;
	tu_rng_seed(&g, 11);
	for (int i = 0; i < good.nrec; i++) {
		const struct rec *r = &good.rec[i];

		if (!r->payload_len)
			continue;
		flip(&good, r->payload_off, 0, &crc, "payload first byte");
		flip(&good, r->payload_off + r->payload_len - 1, 7, &crc, "payload last byte");
		flip(&good, r->payload_off + tu_below(&g, r->payload_len), (int)tu_below(&g, 8),
		     &crc, "payload");
	}
	/* a flipped chunk CRC in a segment body: the same, seen from the CRC side */
	{
		const struct rec *r = find_rec(&good, FVM_REC_SEGM, 1);
		flip(&good, r->body_end - 1, 2, &crc, "last chunk crc of a segment");
	}
}

/* Without PAYLOAD_CRC a payload flip is not an error anywhere; nothing may crash. */
static void test_flip_payload_nocrc(void **state)
{
	static const struct expect ok = { OK, OK, OK, OK };
	const struct rec *r = find_rec(&good_nocrc, FVM_REC_SEGM, 0);

	(void)state;
	assert_true(r->payload_len > 0);
	flip(&good_nocrc, r->payload_off + 5, 0, &ok, "payload without crc");
}

/* Padding between records, and between a segment body and its payload (R14). */
static void test_flip_padding(void **state)
{
	static const struct expect pad = { OK | E(FVM_ECORRUPT), OK, E(FVM_ECORRUPT),
					   E(FVM_ECORRUPT) };
	int n = 0;

	(void)state;
	for (int i = 0; i < good.nrec && n < 6; i++) {
		const struct rec *r = &good.rec[i];
		uint64_t pad_end = r->payload_len ? r->payload_off : r->next;

		if (pad_end > r->body_end && r->type != FVM_REC_INDX) {
			flip(&good, pad_end - 1, 4, &pad, "padding");
			n++;
		}
	}
	assert_true(n > 0);
}

static void test_bad_header_fields(void **state)
{
	uint8_t *b;

	(void)state;
	b = dup_bytes(&good); /* wrong magic, even with a good CRC */
	memcpy(b, "QEVM\0\0\0\3", 8);
	reseal_header(b);
	WHAT("wrong magic");
	try_file(b, good.len, &(struct expect){ E(FVM_EMAGIC), 0, 0, E(FVM_EMAGIC) });
	free(b);

	b = dup_bytes(&good); /* unknown incompatible feature with a valid CRC (R4) */
	fvm_st64(b + 16, fvm_ld64(b + 16) | 1ull << 7);
	reseal_header(b);
	WHAT("unknown incompatible feature bit 7");
	try_file(b, good.len, &(struct expect){ E(FVM_EFEATURE), 0, 0, E(FVM_EFEATURE) });
	fvm_st64(b + 16, fvm_ld64(b + 16) | 1ull << 63);
	reseal_header(b);
	try_file(b, good.len, &(struct expect){ E(FVM_EFEATURE), 0, 0, E(FVM_EFEATURE) });
	free(b);

	b = dup_bytes(&good); /* unknown compatible feature: accepted (FORMAT.md 3) */
	fvm_st64(b + 24, 1ull << 40);
	reseal_header(b);
	WHAT("unknown compatible feature");
	try_file(b, good.len, &(struct expect){ OK, OK, OK, OK });
	free(b);

	b = dup_bytes(&good); /* R2 */
	fvm_st16(b + 8, 2);
	reseal_header(b);
	WHAT("format version 2.0");
	try_file(b, good.len, &(struct expect){ E(FVM_EVERSION), 0, 0, E(FVM_EVERSION) });
	free(b);

	b = dup_bytes(&good); /* R3 */
	fvm_st32(b + 12, 4096);
	reseal_header(b);
	WHAT("header_size 4096");
	try_file(b, good.len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);

	b = dup_bytes(&good); /* R5 */
	b[48] = 1;
	reseal_header(b);
	WHAT("reserved header byte");
	try_file(b, good.len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);
}

static void test_not_a_snapshot(void **state)
{
	static const struct expect x = { E(FVM_EMAGIC) | E(FVM_ETRUNCATED), 0, 0,
					 E(FVM_EMAGIC) | E(FVM_ETRUNCATED) };
	uint8_t junk[8192];
	struct tu_rng g;

	(void)state;
	tu_rng_seed(&g, 1);
	tu_fill_random(&g, junk, sizeof(junk));
	WHAT("random bytes");
	try_file(junk, sizeof(junk), &x);
	memset(junk, 0, sizeof(junk));
	WHAT("zero bytes");
	try_file(junk, sizeof(junk), &x);
	memcpy(junk, "QFI\xfb\0\0\0\3", 8); /* a qcow2 image */
	WHAT("qcow2 magic");
	try_file(junk, sizeof(junk), &x);
	memcpy(junk, "QEVM\0\0\0\3", 8); /* a QEMU migration stream */
	WHAT("migration stream magic");
	try_file(junk, sizeof(junk), &x);
}

/* Footer fields rewritten with a valid CRC: R70, R71, R72. */
static void test_bad_footer_fields(void **state)
{
	const uint64_t fo = good.len - FVM_FOOTER_SIZE;
	static const struct {
		int field;      /* 0 index_offset, 1 index_len, 2 file_size */
		int64_t delta;
		int code;
	} cases[] = {
		{ 0, 8, FVM_ERANGE }, { 0, -8, FVM_ERANGE }, { 0, 1, FVM_ERANGE },
		{ 0, 4096, FVM_ERANGE }, { 0, INT64_MIN / 2, FVM_ERANGE },
		{ 1, 8, FVM_ERANGE }, { 1, -8, FVM_ERANGE }, { 1, 1LL << 40, FVM_ERANGE },
		{ 2, 1, FVM_ETRUNCATED }, { 2, -4096, FVM_ETRUNCATED },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = dup_bytes(&good);
		uint8_t *f = b + fo + 8 * cases[i].field;
		unsigned set = E(cases[i].code);

		fvm_st64(f, fvm_ld64(f) + (uint64_t)cases[i].delta);
		reseal_footer(b, good.len);
		WHAT("footer field %d %+lld", cases[i].field, (long long)cases[i].delta);
		open_word = "footer";
		/* a stream reader meets the footer last: any clear error will do */
		try_file(b, good.len, &(struct expect){ set, 0, 0,
			 set | E(FVM_ECORRUPT) | E(FVM_ERANGE) | E(FVM_ETRUNCATED) });
		free(b);
	}
	open_word = NULL;
}

/* Copies of the good index, to be spoiled one rule at a time. */
static struct fvm_extent ext[4096 + 4];
static uint64_t offs[64];
static struct fvm_indexhdr ih;

static void index_reset(const struct snap *s)
{
	memcpy(ext, s->ext, sizeof(s->ext[0]) * s->ih.extent_count);
	memcpy(offs, s->offs, sizeof(offs));
	ih = s->ih;
}

static void try_index(const struct snap *s, unsigned open_set, unsigned verify_set,
		      unsigned stream_set)
{
	size_t len;
	uint8_t *b = with_index(s, &ih, offs, ext, &len);

	try_file(b, len, &(struct expect){ open_set, open_set & OK ? OK | verify_set : 0,
					   verify_set, stream_set });
	free(b);
}

/* n-th extent of the index with the given kind, in block blk (-1: any). */
static int64_t find_ext(const struct snap *s, int data, int64_t blk, int nth)
{
	for (uint64_t i = 0; i < s->ih.extent_count; i++)
		if (!!(s->ext[i].flags & FVM_RUN_FLAG_DATA) == data &&
		    (blk < 0 || s->ext[i].block_id == (uint32_t)blk) && nth-- == 0)
			return (int64_t)i;
	return -1;
}

static void test_hostile_index(void **state)
{
	const struct snap *s = &good;
	/* the stream reader ignores nothing either: it rebuilds the index and compares (R68) */
	const unsigned st_corrupt = E(FVM_ECORRUPT) | E(FVM_ERANGE);
	int64_t d0 = find_ext(s, 1, 0, 0), d1 = find_ext(s, 1, 0, 1), z0 = find_ext(s, 0, 0, 0);
	uint64_t nofs = (uint64_t)s->ih.block_count + s->ih.meta_count + s->ih.devstate_count;

	(void)state;
	assert_true(d0 >= 0 && d1 >= 0 && z0 >= 0);
	open_word = "ind"; /* "INDX record" or "index" */

	index_reset(s);
	WHAT("index re-encoded unchanged");
	try_index(s, OK, OK, OK);

	index_reset(s); /* R62 */
	ext[d0].block_id = s->nblocks;
	WHAT("extent block_id past the blocks");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt);

	index_reset(s); /* R63 */
	ext[z0].flags |= 4;
	WHAT("extent with unknown flags");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt);

	index_reset(s); /* R64: run range past the block's end */
	ext[d0].first_page = s->bd[0].pages - ext[d0].page_count + 1;
	WHAT("extent pages past the block's end");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[z0].page_count = UINT64_MAX;
	WHAT("extent page_count 2^64-1");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[z0].page_count = 0;
	WHAT("extent page_count 0");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);

	index_reset(s); /* R65: payload past the index, unaligned, in the header */
	ext[d0].payload_offset = s->foot.index_offset;
	WHAT("extent payload at the index");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[d0].payload_offset = UINT64_MAX & ~4095ull;
	WHAT("extent payload at 2^64-4096");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[d0].payload_offset += 8;
	WHAT("extent payload unaligned");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[d0].payload_offset = 0;
	WHAT("extent payload at 0");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[d0].crc_offset = s->foot.index_offset;
	WHAT("extent crc_offset at the index");
	try_index(s, E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ext[z0].payload_offset = 4096;
	WHAT("zero extent with a payload offset");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE), 0, st_corrupt);

	index_reset(s); /* R66: overlapping extents */
	ext[s->ih.extent_count] = ext[z0];
	ext[s->ih.extent_count].page_count = 1;
	ih.extent_count++;
	WHAT("a page in two extents");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt);
	index_reset(s);
	ext[d1].first_page = ext[d0].first_page; /* d1 now overlaps d0's pages */
	WHAT("two data extents over the same pages");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE), 0, st_corrupt);

	index_reset(s); /* R67: two extents read the same payload */
	ext[d1].payload_offset = ext[d0].payload_offset;
	ext[d1].crc_offset = ext[d0].crc_offset;
	WHAT("two extents sharing payload");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt);

	index_reset(s); /* R60: counts that do not fill the body */
	ih.extent_count--;
	{
		size_t len;
		uint8_t *b = with_index(s, &ih, offs, ext, &len);
		/* keep the body as long as before: counts say one extent less */
		fvm_st64(b + s->foot.index_offset + 16 + 16, s->ih.extent_count - 2);
		reseal(b, s->foot.index_offset);
		WHAT("index counts short of body_len");
		try_file(b, len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, st_corrupt });
		free(b);
	}

	/* R61: record offsets that are not records of their type, or not increasing */
	open_word = NULL; /* the detail may name the record found there instead */
	index_reset(s);
	offs[0] = offs[1];
	WHAT("block offset pointing at another BLCK");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	offs[0] = find_rec(s, FVM_REC_META, 0)->off;
	WHAT("block offset pointing at a META record");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	offs[s->ih.block_count] = s->foot.index_offset;
	WHAT("meta offset pointing at the index");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE), 0, st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	offs[nofs - 1] = s->len + 4096;
	WHAT("devstate offset past the end");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE) | E(FVM_ETRUNCATED), 0,
		  st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	offs[nofs - 1] += 4;
	WHAT("devstate offset inside a record");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE) | E(FVM_ECHECKSUM), 0,
		  st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	{
		uint64_t t = offs[s->ih.block_count];
		offs[s->ih.block_count] = offs[s->ih.block_count + 1];
		offs[s->ih.block_count + 1] = t;
	}
	WHAT("meta offsets out of order");
	try_index(s, E(FVM_ECORRUPT), 0, st_corrupt | E(FVM_ECHECKSUM));
	index_reset(s);
	{
		/* the last block and its extents left out: self-consistent, but not the file */
		uint64_t k = 0;
		size_t len;
		uint8_t *b;

		ih.block_count--;
		memmove(offs + s->ih.block_count - 1, offs + s->ih.block_count,
			sizeof(offs[0]) * (nofs - s->ih.block_count));
		for (uint64_t i = 0; i < s->ih.extent_count; i++)
			if (ext[i].block_id != s->nblocks - 1)
				ext[k++] = ext[i];
		ih.extent_count = k;
		b = with_index(s, &ih, offs, ext, &len);
		WHAT("index lists one block less than the file declares");
		/* a load that maps the missing block is refused; verify sees R68 */
		try_file(b, len, &(struct expect){ OK | E(FVM_ECORRUPT), E(FVM_EMAPPING),
						   E(FVM_ECORRUPT), st_corrupt });
		free(b);
	}

	/* R68: structurally fine, but not what the segments say */
	index_reset(s);
	{
		/* two data extents of one page each swap their payload (and crcs) */
		int64_t a = -1, b = -1;
		for (uint64_t i = 0; i < s->ih.extent_count; i++)
			if ((ext[i].flags & 1) && ext[i].page_count == 1 && ext[i].block_id == 1) {
				if (a < 0)
					a = (int64_t)i;
				else if (b < 0)
					b = (int64_t)i;
			}
		assert_true(a >= 0 && b >= 0);
		uint64_t po = ext[a].payload_offset, co = ext[a].crc_offset;
		ext[a].payload_offset = ext[b].payload_offset;
		ext[a].crc_offset = ext[b].crc_offset;
		ext[b].payload_offset = po;
		ext[b].crc_offset = co;
	}
	WHAT("index swaps the payload of two runs");
	/* loads read the wrong (but well-formed) pages: verify must notice */
	try_index(s, OK, E(FVM_ECORRUPT), st_corrupt);
	index_reset(s);
	ext[z0].flags |= FVM_RUN_FLAG_DATA; /* a zero run claimed as data: payload of another run */
	ext[z0].payload_offset = ext[d0].payload_offset;
	WHAT("zero run listed as data");
	try_index(s, E(FVM_ECORRUPT) | E(FVM_ERANGE), 0, st_corrupt);
	index_reset(s);
	ih.extent_count--; /* the last extent dropped: its pages would read as zero */
	WHAT("index drops an extent");
	try_index(s, OK, E(FVM_ECORRUPT), st_corrupt);
}

/* Records rewritten with valid CRCs so that a rule of the record fails. */
static void test_hostile_records(void **state)
{
	const struct snap *s = &good;
	const struct rec *blk1 = find_rec(s, FVM_REC_BLCK, 1);
	const struct rec *seg = find_rec(s, FVM_REC_SEGM, 1);
	const struct rec *dev = find_rec(s, FVM_REC_DEVS, 1);
	const struct rec *meta = find_rec(s, FVM_REC_META, 0);
	const unsigned any_struct = E(FVM_ECORRUPT) | E(FVM_ERANGE) | E(FVM_ETRUNCATED);
	uint8_t *b;

	(void)state;
	/* BLCK: length shrunk below the index's runs (R64 through the block) */
	b = dup_bytes(s);
	fvm_st64(b + blk1->off + 16 + 8, 4096);
	reseal(b, blk1->off);
	WHAT("BLCK length shrunk to one page");
	/* a stream reader may see the block before its runs: then the mapping is wrong */
	try_file(b, s->len, &(struct expect){ E(FVM_ERANGE), 0, 0,
					      E(FVM_ERANGE) | E(FVM_EMAPPING) });
	free(b);

	b = dup_bytes(s); /* R24: duplicate name */
	assert_int_equal(strlen(s->names[1]), strlen(s->names[2])); /* "vga", "rom" */
	memcpy(b + blk1->off + 16 + 17, s->names[2], 3);
	reseal(b, blk1->off);
	WHAT("BLCK renamed to a duplicate name");
	/* a stream reader pauses at the first DEVS record, so the load may check
	 * the mappings against the renamed block before the duplicate arrives */
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0,
					      E(FVM_ECORRUPT) | E(FVM_EMAPPING) });
	free(b);

	b = dup_bytes(s); /* R20 */
	fvm_st32(b + blk1->off + 16, 7);
	reseal(b, blk1->off);
	WHAT("BLCK with a wrong block_id");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);

	b = dup_bytes(s); /* R21 */
	fvm_st32(b + blk1->off + 16 + 4, 31);
	reseal(b, blk1->off);
	WHAT("BLCK page_shift 31");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);

	b = dup_bytes(s); /* R13: BLCK body_len huge */
	fvm_st64(b + blk1->off + 8, 1ull << 40);
	WHAT("BLCK body_len 2^40");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT) | E(FVM_ETRUNCATED), 0, 0,
					      E(FVM_ECORRUPT) | E(FVM_ETRUNCATED) });
	free(b);

	b = dup_bytes(s); /* R12: DEVS body past the end of the file */
	fvm_st64(b + dev->off + 8, s->len);
	WHAT("DEVS body_len past the end of the file");
	try_file(b, s->len, &(struct expect){ E(FVM_ETRUNCATED) | OK,
					      OK | E(FVM_ETRUNCATED), E(FVM_ETRUNCATED),
					      E(FVM_ETRUNCATED) | E(FVM_ECHECKSUM) });
	free(b);

	b = dup_bytes(s); /* META: empty key (R30) */
	b[meta->off + 16] = 0;
	reseal(b, meta->off);
	WHAT("META with an empty key");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);

	b = dup_bytes(s); /* META: value_len past its body (R31) */
	fvm_st32(b + meta->off + 16 + 4, 1u << 30);
	reseal(b, meta->off);
	WHAT("META value_len past its body");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);

	b = dup_bytes(s); /* DEVS name_len past its body (R41) */
	b[dev->off + 16] = 255;
	fvm_st64(b + dev->off + 8, 8 + 10);
	reseal(b, dev->off);
	WHAT("DEVS name_len past its body");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT) | OK, OK, any_struct,
					      any_struct });
	free(b);

	/* DEVS flags (FORMAT.md 4.3): unknown bit (R42); the last record
	 * continued (R44); a continued record followed by another section (R43) */
	b = dup_bytes(s);
	b[dev->off + 16 + 1] = 0x02;
	reseal(b, dev->off);
	WHAT("DEVS with an unknown flag");
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	free(b);
	b = dup_bytes(s);
	b[dev->off + 16 + 1] = FVM_DEVS_CONTINUES;
	reseal(b, dev->off);
	WHAT("last DEVS record continued");
	open_word = "no DEVS record follows";
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	open_word = NULL;
	free(b);
	b = dup_bytes(s);
	{
		const struct rec *dev0 = find_rec(s, FVM_REC_DEVS, 0);

		b[dev0->off + 16 + 1] = FVM_DEVS_CONTINUES;
		reseal(b, dev0->off);
	}
	WHAT("DEVS record continued by another section");
	open_word = "continues";
	try_file(b, s->len, &(struct expect){ E(FVM_ECORRUPT), 0, 0, E(FVM_ECORRUPT) });
	open_word = NULL;
	free(b);

	/*
	 * SEGM entries: a run range past the block's end (R55), an undeclared
	 * block (R53), unknown flags (R54), payload_len that does not match
	 * (R51). Seekable readers meet them in verify, stream readers at once.
	 */
	struct {
		const char *what;
		int field;    /* 0 first_page, 1 block_id, 2 flags, 3 entry_count, 4 payload_len */
		uint64_t value;
		int code;
	} segcases[] = {
		{ "SEGM entry pages past the block's end", 0, 0, FVM_ERANGE },
		{ "SEGM entry for an undeclared block", 1, 9, FVM_ECORRUPT },
		{ "SEGM entry with unknown flags", 2, 0x10, FVM_ECORRUPT },
		{ "SEGM entry_count 0", 3, 0, FVM_ECORRUPT },
		{ "SEGM payload_len off by a page", 4, 4096, FVM_ECORRUPT },
	};
	for (size_t i = 0; i < sizeof(segcases) / sizeof(segcases[0]); i++) {
		uint8_t *body;
		uint32_t blk;

		b = dup_bytes(s);
		body = b + seg->off + 16;
		blk = fvm_ld32(body + 16);
		switch (segcases[i].field) {
		case 0:
			fvm_st64(body + 16 + 8, s->bd[blk].pages - fvm_ld64(body + 16 + 16) + 1);
			break;
		case 1:
			fvm_st32(body + 16, (uint32_t)segcases[i].value);
			break;
		case 2:
			fvm_st32(body + 16 + 4, fvm_ld32(body + 16 + 4) | (uint32_t)segcases[i].value);
			break;
		case 3:
			fvm_st32(body, 0);
			break;
		case 4:
			fvm_st64(body + 8, fvm_ld64(body + 8) + segcases[i].value);
			break;
		}
		reseal(b, seg->off);
		WHAT("%s", segcases[i].what);
		try_file(b, s->len, &(struct expect){ OK | E(segcases[i].code), OK,
						      E(segcases[i].code), E(segcases[i].code) });
		free(b);
	}

	/* unknown record type in the middle, CRC valid (R10) */
	b = dup_bytes(s);
	fvm_st32(b + seg->off, FVM_TAG('J', 'U', 'N', 'K'));
	reseal(b, seg->off);
	WHAT("SEGM record retyped JUNK");
	try_file(b, s->len, &(struct expect){ OK | E(FVM_ECORRUPT), OK, E(FVM_ECORRUPT),
					      E(FVM_ECORRUPT) });
	free(b);
}

/* Mappings that do not fit the file: refused before a byte is written. */
static void test_bad_mappings(void **state)
{
	const char *path = tu_path("map.fvm");
	fvm_reader *r;
	fvm_mapping own[TU_MAX_BLOCKS], m[TU_MAX_BLOCKS + 1];
	int rc;

	(void)state;
	assert_int_equal(tu_write_file(path, good.b, good.len), 0);
	assert_int_equal(fvm_reader_open(&r, path), 0);
	for (int c = 0; c < 8; c++) {
		size_t n = layout.n;

		/* one page more than needed, so a too-long mapping still has memory */
		for (unsigned i = 0; i < layout.n; i++) {
			own[i] = (fvm_mapping){ sizeof(fvm_mapping), 0, layout.b[i].name,
						tu_guard_alloc(layout.b[i].length + 4096, 0x55),
						layout.b[i].length, 0 };
			assert_non_null(own[i].addr);
			m[i] = own[i];
		}
		switch (c) {
		case 0: m[1].length -= 4096; break;            /* length too short */
		case 1: m[1].length += 4096; break;            /* too long */
		case 2: m[0].name = "no-such-block"; break;    /* unknown name */
		case 3: m[2].page_size = 2u << 20; break;      /* wrong page size */
		case 4: n--; break;                            /* a block without mapping */
		case 5: m[n] = m[0]; n++; break;               /* a block mapped twice */
		case 6: m[2].addr = (uint8_t *)m[0].addr + 4096; break; /* overlapping maps */
		case 7: m[1].name = "VGA"; break;              /* names are case-sensitive */
		}
		rc = fvm_load(r, m, n, NULL, NULL);
		WHAT("bad mapping %d", c);
		check_rc(rc, E(FVM_EMAPPING), "load", "map.fvm");
		for (unsigned i = 0; i < layout.n; i++) {
			for (uint64_t k = 0; k < own[i].length + 4096; k += 64)
				if (((uint8_t *)own[i].addr)[k] != 0x55)
					fail_msg("bad mapping %d: block %u written at 0x%llx before the "
						 "mappings were checked", c, i, (unsigned long long)k);
			tu_guard_free(own[i].addr, own[i].length + 4096);
		}
	}
	/* a non-empty list at NULL */
	assert_int_equal(fvm_load(r, NULL, 1, NULL, NULL), FVM_EINVAL);
	/* PARTIAL: an unmapped block is skipped, the others load */
	{
		fvm_load_options o = FVM_LOAD_OPTIONS_INIT;

		o.flags = FVM_LOAD_PARTIAL | FVM_LOAD_VERIFY;
		o.zero_policy = FVM_ZERO_MEMSET; /* the memory holds 0x55 */
		maps_alloc(own);
		m[0] = own[0];
		m[1] = own[2];
		rc = fvm_load(r, m, 2, &o, NULL);
		if (rc)
			fail_msg("partial load: %s", fvm_error_detail());
		assert_memory_equal(own[0].addr, layout.b[0].mem, layout.b[0].length);
		assert_memory_equal(own[2].addr, layout.b[2].mem, layout.b[2].length);
		for (uint64_t k = 0; k < own[1].length; k++)
			assert_int_equal(((uint8_t *)own[1].addr)[k], 0x55);
		maps_free(own);
	}
	fvm_reader_free(r);
}

/* Random damage: a few random bytes overwritten, 300 times. Must not crash. */
static void test_random_damage(void **state)
{
	static const struct expect any = { ANYERR | OK, ANYERR | OK, ANYERR | OK, ANYERR | OK };
	struct tu_rng g;

	(void)state;
	tu_rng_seed(&g, 2024);
	for (int i = 0; i < 300; i++) {
		const struct snap *s = i & 1 ? &good : &good_nocrc;
		uint8_t *b = dup_bytes(s);
		int n = 1 + (int)tu_below(&g, 4);

		for (int k = 0; k < n; k++) {
			/* favour the small structures over the payload */
			uint64_t at = tu_below(&g, 3) ? s->rec[tu_below(&g, (uint64_t)s->nrec)].off +
						       tu_below(&g, 64)
						     : tu_below(&g, s->len);
			if (at < s->len)
				b[at] = (uint8_t)tu_rand(&g);
		}
		WHAT("random damage %d", i);
		try_file(b, s->len, &any);
		free(b);
	}
}

/* Each test sets the words it expects; none carries over. */
static int reset(void **state)
{
	(void)state;
	open_word = NULL;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_good_file, reset),
		cmocka_unit_test_setup(test_truncate, reset),
		cmocka_unit_test_setup(test_appended, reset),
		cmocka_unit_test_setup(test_flip_header, reset),
		cmocka_unit_test_setup(test_flip_footer, reset),
		cmocka_unit_test_setup(test_flip_records, reset),
		cmocka_unit_test_setup(test_flip_payload, reset),
		cmocka_unit_test_setup(test_flip_payload_nocrc, reset),
		cmocka_unit_test_setup(test_flip_padding, reset),
		cmocka_unit_test_setup(test_bad_header_fields, reset),
		cmocka_unit_test_setup(test_not_a_snapshot, reset),
		cmocka_unit_test_setup(test_bad_footer_fields, reset),
		cmocka_unit_test_setup(test_hostile_index, reset),
		cmocka_unit_test_setup(test_hostile_records, reset),
		cmocka_unit_test_setup(test_bad_mappings, reset),
		cmocka_unit_test_setup(test_random_damage, reset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
