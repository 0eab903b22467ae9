/*
 * The sequential record walker: reads a snapshot front to back, record by
 * record, checking each one (R10..R14, R20..R56), applying SEGM entries to a
 * list of extents in file order, and at the INDX record checking that the
 * index is exactly what the records before it produced (R61, R68), then
 * the footer. One walker serves both users of a sequential pass:
 *  - stream mode (fvm_reader_open_stream, then fvm_load): records go into
 *    the reader, payload is read straight into the caller's memory;
 *  - fvm_verify: payload goes through one bounded buffer and every chunk
 *    CRC is checked.
 * Memory: the largest record body (a SEGM body is at most ~6 MiB once its
 * header is checked), one 1 MiB payload buffer, and the extent list.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "crc.h"
#include "error.h"
#include "plan.h"
#include "reader.h"

#define PIECE (1u << 20) /* payload bytes per read() and per progress call */

enum { OFF_BLCK, OFF_META, OFF_DEVS };

struct offlist {
	uint64_t *v;
	size_t n, cap;
};

struct fvm_walk {
	struct fvm_reader *r;
	struct fvm_src src;
	uint64_t limit;         /* records end by here: file_size - 32, or UINT64_MAX */
	int keep;               /* stream reader: records go into r */
	struct fvm_blockdesc *desc; /* verify: the blocks as the walk meets them */
	uint32_t nblocks;
	size_t desc_cap;
	struct offlist offs[3]; /* BLCK, META, DEVS record offsets in file order */
	struct fvm_extlist raw; /* SEGM entries as extents, in file order */

	uint64_t rec_off;       /* the current record */
	struct fvm_rechdr rh;
	uint8_t *body;
	size_t body_cap;
	struct fvm_seghdr sh;
	struct fvm_entry *ent;
	size_t ent_cap;
	uint64_t payload_off;
	int seg_pending;        /* SEGM read, its payload not yet */
	int done;               /* footer read */
	uint8_t *scratch;       /* PIECE bytes: payload nobody keeps */
};

/* Where the payload of a DATA entry goes, and what to check. */
struct sink {
	uint8_t *(*dst)(void *ctx, const struct fvm_entry *e); /* NULL: scratch */
	void *ctx;
	int check;              /* compare chunk CRCs */
	fvm_progress_fn progress;
	void *pctx;
	int by_pos;             /* progress in file bytes (verify), else payload */
	uint64_t total;
	uint64_t reads, bytes, extents;
};

static struct fvm_blockdesc *wdesc(struct fvm_walk *w)
{
	return w->keep ? w->r->desc : w->desc;
}

static uint32_t wnblocks(struct fvm_walk *w)
{
	return w->keep ? w->r->nblocks : w->nblocks;
}

static const char *block_name(struct fvm_walk *w, uint32_t id)
{
	return id < w->r->nblocks ? w->r->blocks[id].name : "?";
}

void fvm_walk_free(struct fvm_walk *w)
{
	if (!w)
		return;
	free(w->desc);
	for (int i = 0; i < 3; i++)
		free(w->offs[i].v);
	fvm_extlist_free(&w->raw);
	free(w->body);
	free(w->ent);
	free(w->scratch);
	free(w);
}

static struct fvm_walk *walk_new(struct fvm_reader *r, int keep, int seekable)
{
	struct fvm_walk *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->r = r;
	w->keep = keep;
	w->src = (struct fvm_src){ r->fd, seekable, 0, r->file };
	w->limit = seekable ? r->file_size - FVM_FOOTER_SIZE : UINT64_MAX;
	return w;
}

static int reserve(struct fvm_walk *w, uint64_t n)
{
	uint8_t *p;

	if (n <= w->body_cap)
		return 0;
	p = realloc(w->body, n);
	if (!p)
		return fvm_err(FVM_ENOMEM, "%s: %s at offset 0x%" PRIx64 ": body of %" PRIu64
			       " bytes", w->r->file, fvm_rec_name(w->rh.type), w->rec_off, n);
	w->body = p;
	w->body_cap = n;
	return 0;
}

static int push_off(struct fvm_walk *w, int t, uint64_t off)
{
	struct offlist *l = &w->offs[t];

	if (fvm_grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return fvm_err(FVM_ENOMEM, "%s: record list", w->r->file);
	l->v[l->n++] = off;
	return 0;
}

/* Zero padding up to file offset to (R14). */
static int pad(struct fvm_walk *w, uint64_t to)
{
	uint8_t buf[FVM_PAYLOAD_ALIGN];
	uint64_t at = w->src.pos;
	size_t n = (size_t)(to - at);
	int rc;

	if (!n)
		return 0;
	rc = fvm_src_read(&w->src, buf, n, "padding");
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (buf[i])
			return fvm_err(FVM_ECORRUPT, "%s: padding at offset 0x%" PRIx64
				       " is not zero", w->r->file, at + i);
	return 0;
}

/* Read the whole body of the current record and check its CRC (R11). */
static int whole_body(struct fvm_walk *w)
{
	int rc = reserve(w, w->rh.body_len ? w->rh.body_len : 1);

	if (!rc)
		rc = fvm_src_read(&w->src, w->body, w->rh.body_len, fvm_rec_name(w->rh.type));
	if (!rc)
		rc = fvm_rechdr_check_crc(&w->rh, w->body,
					  (struct fvm_where){ w->r->file, w->rec_off });
	return rc;
}

/* ------------------------------------------------------------ records */

static int on_blck(struct fvm_walk *w)
{
	struct fvm_where at = { w->r->file, w->rec_off };
	struct fvm_block_rec b;
	int rc;

	rc = whole_body(w);
	if (!rc)
		rc = fvm_block_decode(w->body, w->rh.body_len, wnblocks(w), &b, at);
	if (rc)
		return rc;
	if (w->keep) {
		rc = fvm_reader_add_block(w->r, &b, w->rec_off);
	} else {
		const struct fvm_rblock *rb = b.id < w->r->nblocks ? &w->r->blocks[b.id] : NULL;

		if (!rb || rb->rec_offset != w->rec_off || strcmp(rb->name, b.name) ||
		    rb->length != b.length || rb->page_shift != b.page_shift) /* R61 */
			return fvm_err(FVM_ECORRUPT, "%s: BLCK record at offset 0x%" PRIx64
				       ": block %u (%s) is not the one the index lists",
				       at.file, at.offset, b.id, b.name);
		if (fvm_grow((void **)&w->desc, &w->desc_cap, (size_t)w->nblocks + 1,
			     sizeof(*w->desc)))
			return fvm_err(FVM_ENOMEM, "%s: blocks", at.file);
		w->desc[w->nblocks++] = (struct fvm_blockdesc){ rb->pages, rb->page_shift };
	}
	return rc ? rc : push_off(w, OFF_BLCK, w->rec_off);
}

static int on_meta(struct fvm_walk *w)
{
	struct fvm_meta_rec m;
	int rc;

	rc = whole_body(w);
	if (!rc)
		rc = fvm_meta_decode(w->body, w->rh.body_len, &m,
				     (struct fvm_where){ w->r->file, w->rec_off });
	if (!rc && w->keep)
		rc = fvm_reader_add_meta(w->r, &m, w->rec_off);
	return rc ? rc : push_off(w, OFF_META, w->rec_off);
}

static int on_devs(struct fvm_walk *w)
{
	uint8_t head[FVM_DEVS_HEAD];
	struct fvm_devs_rec d;
	uint8_t *body;
	int rc;

	if (!w->keep) {
		rc = fvm_devs_check(&w->src, w->rec_off, &w->rh, head, &d);
		return rc ? rc : push_off(w, OFF_DEVS, w->rec_off);
	}
	/*
	 * A stream cannot be read twice, so the section is kept. malloc of a
	 * large claim only reserves address space; memory is used as the
	 * bytes actually arrive.
	 */
	body = malloc(w->rh.body_len ? w->rh.body_len : 1);
	if (!body)
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64 ": %" PRIu64
			       " bytes", w->r->file, w->rec_off, w->rh.body_len);
	rc = fvm_src_read(&w->src, body, w->rh.body_len, "DEVS record");
	if (!rc)
		rc = fvm_rechdr_check_crc(&w->rh, body,
					  (struct fvm_where){ w->r->file, w->rec_off });
	if (!rc)
		rc = fvm_devs_decode(body, w->rh.body_len, &d,
				     (struct fvm_where){ w->r->file, w->rec_off });
	if (!rc)
		rc = fvm_reader_add_devs(w->r, &d, w->rec_off + FVM_RECHDR_SIZE +
					 FVM_DEVS_FIXED + d.name_len, w->rec_off, body);
	if (rc) {
		free(body);
		return rc;
	}
	return push_off(w, OFF_DEVS, w->rec_off);
}

static int on_segm(struct fvm_walk *w)
{
	struct fvm_where at = { w->r->file, w->rec_off };
	int with_crc = w->r->with_crc;
	uint64_t len = w->rh.body_len, cum = 0, crc_base;
	size_t hl = len < FVM_SEGHDR_SIZE ? (size_t)len : FVM_SEGHDR_SIZE;
	uint32_t n;
	int rc;

	/*
	 * Check the segment header before reading the rest: its body length
	 * then follows from entry_count and payload_len, so a hostile body_len
	 * cannot make us buffer more than ~6 MiB.
	 */
	rc = reserve(w, FVM_SEGHDR_SIZE);
	if (!rc)
		rc = fvm_src_read(&w->src, w->body, hl, "SEGM record");
	if (rc)
		return rc;
	n = fvm_seg_entry_count(w->body, hl);
	if (hl < FVM_SEGHDR_SIZE || n == 0 || n > FVM_MAX_ENTRIES ||
	    fvm_ld64(w->body + 8) > FVM_MAX_SEG_PAYLOAD ||
	    len != fvm_seg_body_len(n, fvm_ld64(w->body + 8), with_crc)) {
		/* the decoder's checks of the header give the precise error */
		rc = fvm_seg_decode(w->body, len, with_crc, wdesc(w), wnblocks(w), &w->sh,
				    NULL, at);
		return rc ? rc : fvm_err(FVM_ECORRUPT, "%s: SEGM record at offset 0x%"
					 PRIx64 ": bad header", at.file, at.offset);
	}
	rc = reserve(w, len);
	if (!rc)
		rc = fvm_src_read(&w->src, w->body + FVM_SEGHDR_SIZE, len - FVM_SEGHDR_SIZE,
				  "SEGM record");
	if (!rc)
		rc = fvm_rechdr_check_crc(&w->rh, w->body, at);
	if (rc)
		return rc;
	if (n > w->ent_cap) {
		struct fvm_entry *e = realloc(w->ent, n * sizeof(*e));

		if (!e)
			return fvm_err(FVM_ENOMEM, "%s: SEGM record at offset 0x%" PRIx64,
				       at.file, at.offset);
		w->ent = e;
		w->ent_cap = n;
	}
	rc = fvm_seg_decode(w->body, len, with_crc, wdesc(w), wnblocks(w), &w->sh, w->ent, at);
	if (rc)
		return rc;
	w->payload_off = w->sh.payload_len ? fvm_seg_payload_offset(w->rec_off, len)
					   : fvm_rec_next(w->rec_off, len);
	if (w->sh.payload_len && (w->payload_off > w->limit ||
				  w->sh.payload_len > w->limit - w->payload_off)) /* R56 */
		return fvm_err(FVM_ETRUNCATED, "%s: SEGM record at offset 0x%" PRIx64 ": payload"
			       " of %" PRIu64 " bytes at 0x%" PRIx64 " runs past 0x%" PRIx64,
			       at.file, at.offset, w->sh.payload_len, w->payload_off, w->limit);
	crc_base = w->rec_off + FVM_RECHDR_SIZE + FVM_SEGHDR_SIZE + (uint64_t)n * FVM_ENTRY_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		const struct fvm_entry *e = &w->ent[i];
		struct fvm_extent x = { e->block_id, e->flags, e->first_page, e->page_count, 0, 0 };

		if (e->flags & FVM_RUN_FLAG_DATA) {
			x.payload_offset = w->payload_off + cum;
			x.crc_offset = with_crc ? crc_base + cum / FVM_CHUNK * 4 : 0;
			cum += e->page_count << wdesc(w)[e->block_id].page_shift;
		}
		rc = fvm_extlist_push(&w->raw, &x);
		if (rc)
			return rc;
	}
	w->seg_pending = 1;
	return 0;
}

/* ------------------------------------------------------------ payload */

/* Chunk CRCs of n payload bytes at p: bytes done.. of entry e, which starts
 * at entry_off in the segment's payload. */
static int check_chunks(struct fvm_walk *w, const struct fvm_entry *e, const uint8_t *p,
			uint64_t n, uint64_t entry_off, uint64_t done)
{
	const uint8_t *crcs = w->body + FVM_SEGHDR_SIZE +
			      (size_t)w->sh.entry_count * FVM_ENTRY_SIZE;
	uint32_t shift = wdesc(w)[e->block_id].page_shift;

	for (uint64_t c = 0; c < n / FVM_CHUNK; c++) {
		uint64_t at = done + c * FVM_CHUNK; /* in the entry */

		if (fvm_crc32c(0, p + c * FVM_CHUNK, FVM_CHUNK) !=
		    fvm_ld32(crcs + 4 * ((entry_off + at) / FVM_CHUNK)))
			return fvm_err(FVM_ECHECKSUM, "%s: SEGM record at offset 0x%" PRIx64
				       ": block %s page %" PRIu64 ": payload crc mismatch at "
				       "file offset 0x%" PRIx64, w->r->file, w->rec_off,
				       block_name(w, e->block_id), e->first_page + (at >> shift),
				       w->payload_off + entry_off + at);
	}
	return 0;
}

/* Padding and payload of the pending segment, entry by entry. */
static int walk_payload(struct fvm_walk *w, struct sink *k)
{
	uint64_t seg_off = 0;
	int rc;

	w->seg_pending = 0;
	if (!w->sh.payload_len)
		return pad(w, w->payload_off);
	rc = pad(w, w->payload_off);
	if (rc)
		return rc;
	if (!w->scratch && !(w->scratch = malloc(PIECE)))
		return fvm_err(FVM_ENOMEM, "%s: payload buffer", w->r->file);
	for (uint32_t i = 0; i < w->sh.entry_count; i++) {
		const struct fvm_entry *e = &w->ent[i];
		uint64_t bytes, done = 0;
		uint8_t *dst;

		if (!(e->flags & FVM_RUN_FLAG_DATA))
			continue;
		bytes = e->page_count << wdesc(w)[e->block_id].page_shift;
		dst = k->dst ? k->dst(k->ctx, e) : NULL;
		if (dst)
			k->extents++;
		while (done < bytes) {
			uint64_t n = bytes - done < PIECE ? bytes - done : PIECE;
			uint8_t *p = dst ? dst + done : w->scratch;

			/* read() straight into the destination: no bounce buffer */
			rc = fvm_src_read(&w->src, p, n, "payload");
			if (!rc && k->check && w->r->with_crc)
				rc = check_chunks(w, e, p, n, seg_off, done);
			if (rc)
				return rc;
			k->reads++;
			k->bytes += n;
			done += n;
			if (k->progress && k->progress(k->pctx, k->by_pos ? w->src.pos : k->bytes,
						       k->total))
				return fvm_err(FVM_ECANCELED, "%s: canceled by the progress "
					       "callback at offset 0x%" PRIx64, w->r->file,
					       w->src.pos);
		}
		seg_off += bytes;
	}
	return 0;
}

/* ------------------------------------------------------------ index, footer */

static int ext_cmp(const void *a, const void *b)
{
	const struct fvm_extent *x = a, *y = b;

	if (x->block_id != y->block_id)
		return x->block_id < y->block_id ? -1 : 1;
	return x->first_page < y->first_page ? -1 : x->first_page > y->first_page;
}

/* R68: the index's extents, as a set, equal the live extents of the walk. */
static int same_extents(struct fvm_walk *w, const struct fvm_extent *idx, uint64_t n)
{
	struct fvm_extent *a = malloc((n ? n : 1) * sizeof(*a));
	const struct fvm_extent *live = w->raw.v;
	int rc = 0;

	if (!a)
		return fvm_err(FVM_ENOMEM, "%s: comparing %" PRIu64 " extents", w->r->file, n);
	if (n) { /* memcpy and qsort want non-NULL pointers even for 0 elements */
		memcpy(a, idx, n * sizeof(*a));
		qsort(a, n, sizeof(*a), ext_cmp);
		qsort(w->raw.v, n, sizeof(*a), ext_cmp);
	}
	for (uint64_t i = 0; i < n && !rc; i++)
		if (a[i].block_id != live[i].block_id || a[i].flags != live[i].flags ||
		    a[i].first_page != live[i].first_page ||
		    a[i].page_count != live[i].page_count ||
		    a[i].payload_offset != live[i].payload_offset ||
		    a[i].crc_offset != live[i].crc_offset)
			rc = fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64
				     ": extent of block %u pages %" PRIu64 "+%" PRIu64 " at 0x%"
				     PRIx64 " differs from what the segments give (block %u pages %"
				     PRIu64 "+%" PRIu64 " at 0x%" PRIx64 ")", w->r->file, w->rec_off,
				     a[i].block_id, a[i].first_page, a[i].page_count,
				     a[i].payload_offset, live[i].block_id, live[i].first_page,
				     live[i].page_count, live[i].payload_offset);
	free(a);
	return rc;
}

static int index_lists(struct fvm_walk *w, const uint8_t *p, const struct fvm_indexhdr *ih)
{
	static const char *const what[3] = { "BLCK", "META", "DEVS" };
	uint32_t counts[3] = { ih->block_count, ih->meta_count, ih->devstate_count };

	for (int t = 0; t < 3; t++) {
		if (counts[t] != w->offs[t].n) /* R61 */
			return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64
				       ": lists %u %s records, the file has %" PRIu64,
				       w->r->file, w->rec_off, counts[t], what[t], w->offs[t].n);
		for (uint32_t i = 0; i < counts[t]; i++, p += 8)
			if (fvm_ld64(p) != w->offs[t].v[i]) /* R61 */
				return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%"
					       PRIx64 ": %s record %u listed at 0x%" PRIx64
					       ", it is at 0x%" PRIx64, w->r->file, w->rec_off,
					       what[t], i, fvm_ld64(p), w->offs[t].v[i]);
	}
	return 0;
}

static int on_indx(struct fvm_walk *w)
{
	struct fvm_where at = { w->r->file, w->rec_off };
	struct fvm_indexhdr ih, expect;
	struct fvm_extent *ext = NULL;
	struct fvm_footer f;
	uint8_t fb[FVM_FOOTER_SIZE];
	const uint8_t *p;
	int rewrites, rc;

	rc = fvm_extents_resolve(&w->raw, wdesc(w), &rewrites);
	if (rc)
		return rc;
	w->r->rewrites = rewrites;
	if (!w->keep && w->rec_off != w->r->index_offset)
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ", the "
			       "footer points at 0x%" PRIx64, at.file, at.offset,
			       w->r->index_offset);
	expect = (struct fvm_indexhdr){ wnblocks(w), (uint32_t)w->offs[OFF_META].n,
					(uint32_t)w->offs[OFF_DEVS].n, w->raw.n };
	/* known before reading: a stream cannot make us buffer a huge index */
	if (w->rh.body_len != fvm_index_body_len(&expect)) /* R68 */
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ": body_len"
			       " %" PRIu64 ", the records before it give %" PRIu64, at.file,
			       at.offset, w->rh.body_len, fvm_index_body_len(&expect));
	rc = whole_body(w);
	if (!rc)
		rc = fvm_indexhdr_decode(w->body, w->rh.body_len, &ih, at);
	if (!rc)
		rc = index_lists(w, w->body + FVM_INDEXHDR_SIZE, &ih);
	if (rc)
		return rc;
	if (ih.extent_count != w->raw.n) /* R68 */
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ": %" PRIu64
			       " extents, the segments give %" PRIu64, at.file, at.offset,
			       ih.extent_count, w->raw.n);
	p = w->body + FVM_INDEXHDR_SIZE +
	    8 * ((size_t)ih.block_count + ih.meta_count + ih.devstate_count);
	ext = malloc((ih.extent_count ? ih.extent_count : 1) * sizeof(*ext));
	if (!ext)
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", at.file,
			       ih.extent_count);
	for (uint64_t i = 0; i < ih.extent_count && !rc; i++)
		rc = fvm_extent_decode(p + FVM_EXTENT_SIZE * i, &ext[i], wdesc(w), wnblocks(w),
				       w->r->with_crc, w->rec_off, i, at);
	if (!rc)
		rc = same_extents(w, ext, ih.extent_count);
	if (!rc)
		rc = pad(w, fvm_rec_next(w->rec_off, w->rh.body_len));
	if (!rc)
		rc = fvm_src_read(&w->src, fb, sizeof(fb), "footer");
	if (!rc)
		rc = fvm_footer_decode(fb, &f, w->src.pos, w->r->file);
	if (!rc && (f.index_offset != w->rec_off ||
		    f.index_len != FVM_RECHDR_SIZE + w->rh.body_len)) /* R71 */
		rc = fvm_err(FVM_ECORRUPT, "%s: footer at offset 0x%" PRIx64 ": index at 0x%"
			     PRIx64 "+%" PRIu64 ", the INDX record is at 0x%" PRIx64 "+%" PRIu64,
			     at.file, w->src.pos - FVM_FOOTER_SIZE, f.index_offset, f.index_len,
			     w->rec_off, FVM_RECHDR_SIZE + w->rh.body_len);
	if (rc) {
		free(ext);
		return rc;
	}
	w->done = 1;
	if (!w->keep) {
		free(ext);
		return 0;
	}
	w->r->index_offset = w->rec_off;
	return fvm_reader_set_index(w->r, ext, ih.extent_count);
}

/* ------------------------------------------------------------ the walk */

static int walk_header(struct fvm_walk *w)
{
	uint8_t hb[FVM_HEADER_SIZE];
	struct fvm_header h;
	int rc;

	rc = fvm_src_read(&w->src, hb, sizeof(hb), "file header");
	if (!rc)
		rc = fvm_header_decode(hb, &h, w->r->file);
	if (rc)
		return rc;
	if (w->keep) {
		w->r->hdr = h;
		w->r->with_crc = !!(h.incompat & FVM_INCOMPAT_PAYLOAD_CRC);
	} else if (h.major != w->r->hdr.major || h.minor != w->r->hdr.minor ||
		   h.incompat != w->r->hdr.incompat || h.compat != w->r->hdr.compat) {
		return fvm_err(FVM_ECORRUPT, "%s: file header changed since the file was "
			       "opened", w->r->file);
	}
	return 0;
}

/* Read the next record; *type says which. A SEGM leaves its payload pending. */
static int walk_next(struct fvm_walk *w, uint32_t *type)
{
	uint8_t hb[FVM_RECHDR_SIZE];
	int rc;

	w->rec_off = w->src.pos;
	rc = fvm_src_read(&w->src, hb, sizeof(hb), "record header");
	if (!rc)
		rc = fvm_rechdr_decode(hb, &w->rh, w->limit,
				       (struct fvm_where){ w->r->file, w->rec_off });
	if (rc)
		return rc;
	*type = w->rh.type;
	switch (w->rh.type) {
	case FVM_REC_BLCK: rc = on_blck(w); break;
	case FVM_REC_META: rc = on_meta(w); break;
	case FVM_REC_DEVS: rc = on_devs(w); break;
	case FVM_REC_SEGM: return on_segm(w);
	case FVM_REC_INDX: return on_indx(w);
	}
	return rc ? rc : pad(w, fvm_rec_next(w->rec_off, w->rh.body_len));
}

/* Walk to the end, sending payload to k. */
static int walk_rest(struct fvm_walk *w, struct sink *k,
		     int (*on_block)(void *ctx, uint32_t id), void *ctx)
{
	uint32_t type;
	int rc = 0;

	while (!rc && !w->done) {
		if (w->seg_pending) {
			rc = walk_payload(w, k);
			continue;
		}
		rc = walk_next(w, &type);
		if (!rc && type == FVM_REC_BLCK && on_block)
			rc = on_block(ctx, w->r->nblocks - 1);
	}
	return rc;
}

/* ------------------------------------------------------------ stream mode */

int fvm_stream_open(struct fvm_reader *r)
{
	struct fvm_walk *w = walk_new(r, 1, 0);
	uint32_t type = 0;
	int rc;

	if (!w)
		return fvm_err(FVM_ENOMEM, "%s: stream reader", r->file);
	r->streamed = 1;
	rc = walk_header(w);
	while (!rc && !w->done && type != FVM_REC_SEGM)
		rc = walk_next(w, &type);
	if (rc) {
		fvm_walk_free(w);
		r->stream_state = FVM_STREAM_FAILED;
		return rc;
	}
	if (w->done) {
		/* no segments: nothing left to read, but fvm_load still has to
		 * check the mappings and apply the zero policy */
		fvm_walk_free(w);
		w = NULL;
	}
	r->walk = w;
	r->stream_state = FVM_STREAM_OPEN;
	return 0;
}

struct sload {
	struct fvm_reader *r;
	const fvm_mapping **sorted;     /* maps by name */
	size_t n_maps;
	const fvm_mapping **map_of;     /* by block id */
	uint32_t map_cap;
	int partial;
};

static int map_ptr_cmp(const void *a, const void *b)
{
	return strcmp((*(const fvm_mapping *const *)a)->name,
		      (*(const fvm_mapping *const *)b)->name);
}

static const fvm_mapping *find_map(struct sload *s, const char *name)
{
	size_t lo = 0, hi = s->n_maps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->sorted[mid]->name, name);

		if (!c)
			return s->sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A block declared after the load started: find and check its mapping. */
static int sload_block(void *ctx, uint32_t id)
{
	struct sload *s = ctx;
	const struct fvm_rblock *b = &s->r->blocks[id];
	const fvm_mapping *m = find_map(s, b->name);

	if (id >= s->map_cap) {
		uint32_t cap = s->map_cap * 2 > id + 1 ? s->map_cap * 2 : id + 1;
		const fvm_mapping **v = realloc(s->map_of, cap * sizeof(*v));

		if (!v)
			return fvm_err(FVM_ENOMEM, "%s: mappings", s->r->file);
		s->map_of = v;
		s->map_cap = cap;
	}
	s->map_of[id] = m;
	if (!m && !s->partial)
		return fvm_err(FVM_EMAPPING, "%s: block %s (BLCK record at offset 0x%" PRIx64
			       ") has no mapping", s->r->file, b->name, b->rec_offset);
	return m ? fvm_plan_check_map(s->r->file, b, m) : 0;
}

static uint8_t *sload_dst(void *ctx, const struct fvm_entry *e)
{
	struct sload *s = ctx;
	const fvm_mapping *m = s->map_of[e->block_id];

	/* R55 held for the entry and the mapping's length is the block's */
	return m ? (uint8_t *)m->addr + (e->first_page << s->r->blocks[e->block_id].page_shift)
		 : NULL;
}

static int sload_setup(struct sload *s, const fvm_mapping *maps, size_t n_maps)
{
	struct fvm_reader *r = s->r;
	int rc;

	s->map_cap = r->nblocks ? r->nblocks : 1;
	s->map_of = calloc(s->map_cap, sizeof(*s->map_of));
	s->sorted = malloc((n_maps ? n_maps : 1) * sizeof(*s->sorted));
	if (!s->map_of || !s->sorted)
		return fvm_err(FVM_ENOMEM, "%s: mappings", r->file);
	/* blocks declared so far are checked now; later ones as they come */
	rc = fvm_plan_maps(r->file, r->blocks, r->nblocks, maps, n_maps, s->partial, 1,
			   s->map_of);
	if (rc)
		return rc;
	for (size_t i = 0; i < n_maps; i++)
		s->sorted[i] = &maps[i];
	qsort(s->sorted, n_maps, sizeof(*s->sorted), map_ptr_cmp);
	s->n_maps = n_maps;
	for (size_t i = 1; i < n_maps; i++)
		if (!strcmp(s->sorted[i]->name, s->sorted[i - 1]->name))
			return fvm_err(FVM_EMAPPING, "%s: two mappings for block %s", r->file,
				       s->sorted[i]->name);
	return 0;
}

/* After the footer: final mapping check and the zero policy. */
static int sload_finish(struct sload *s, const fvm_mapping *maps, size_t n_maps,
			const fvm_load_options *o, fvm_load_stats *st)
{
	struct fvm_reader *r = s->r;
	struct fvm_plan p = { 0 };
	const fvm_mapping **map_of;
	int zero_extents, rc;

	map_of = calloc(r->nblocks ? r->nblocks : 1, sizeof(*map_of));
	if (!map_of)
		return fvm_err(FVM_ENOMEM, "%s: mappings", r->file);
	rc = fvm_plan_maps(r->file, r->blocks, r->nblocks, maps, n_maps, s->partial, 0,
			   map_of);
	/*
	 * Zero policy over pages without data. LEAVE still clears the pages of
	 * zero extents when pages were rewritten: an earlier copy may have been
	 * written there during the walk.
	 */
	zero_extents = o->zero_policy == FVM_ZERO_LEAVE;
	if (!rc && (!zero_extents || r->rewrites))
		rc = fvm_plan_zero_ranges(&p, r->file, r->blocks, r->nblocks, r->ext,
					  r->next, map_of, zero_extents);
	if (!rc && p.nzero)
		rc = fvm_apply_zero(p.zero, p.nzero,
				    zero_extents ? FVM_ZERO_MEMSET : o->zero_policy);
	if (!rc && !zero_extents)
		st->zero_bytes = p.zero_bytes;
	fvm_plan_free(&p);
	free(map_of);
	return rc;
}

int fvm_stream_load(struct fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
		    const fvm_load_options *o, fvm_load_stats *st)
{
	struct sload s = { r, NULL, 0, NULL, 0, !!(o->flags & FVM_LOAD_PARTIAL) };
	struct sink k = { sload_dst, &s, !!(o->flags & FVM_LOAD_VERIFY), o->progress,
			  o->progress_ctx, 0, 0, 0, 0, 0 };
	uint64_t pos0;
	int rc;

	st->backend = FVM_BACKEND_PREAD;
	st->backend_name = "read (stream)";
	st->fallback_reason = "a stream is read sequentially";
	if (r->stream_state != FVM_STREAM_OPEN)
		return fvm_err(FVM_ESTATE, "%s: the stream was already %s", r->file,
			       r->stream_state == FVM_STREAM_DONE ? "read to its end"
								  : "abandoned after an error");
	pos0 = r->walk ? r->walk->src.pos : 0;
	rc = sload_setup(&s, maps, n_maps);
	if (!rc && r->walk)
		rc = walk_rest(r->walk, &k, sload_block, &s);
	if (!rc)
		rc = sload_finish(&s, maps, n_maps, o, st);
	st->bytes_read = k.bytes;
	st->requests = k.reads;
	st->extents = k.extents;
	free(s.map_of);
	free(s.sorted);
	/* a mapping refused before any byte was consumed can be retried */
	if (rc && (!r->walk || r->walk->src.pos == pos0))
		return rc;
	r->stream_state = rc ? FVM_STREAM_FAILED : FVM_STREAM_DONE;
	fvm_walk_free(r->walk);
	r->walk = NULL;
	return rc;
}

/* ------------------------------------------------------------ verify */

int fvm_verify(fvm_reader *r, fvm_progress_fn progress, void *ctx)
{
	struct sink k = { NULL, NULL, 1, progress, ctx, 1, 0, 0, 0, 0 };
	struct fvm_walk *w;
	int rc;

	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_verify: NULL reader");
	if (r->streamed) {
		/* the rest of the stream is checked, and the reader can list it */
		if (r->stream_state != FVM_STREAM_OPEN)
			return fvm_err(FVM_ESTATE, "%s: the stream was already read to its "
				       "end", r->file);
		if (!r->walk) /* open read it all, and checked it */
			return 0;
		rc = walk_rest(r->walk, &k, NULL, NULL);
		r->stream_state = rc ? FVM_STREAM_FAILED : FVM_STREAM_DONE;
		fvm_walk_free(r->walk);
		r->walk = NULL;
		return rc;
	}
	w = walk_new(r, 0, 1);
	if (!w)
		return fvm_err(FVM_ENOMEM, "%s: verify", r->file);
	k.total = r->file_size;
	rc = walk_header(w);
	if (!rc)
		rc = walk_rest(w, &k, NULL, NULL);
	if (!rc && w->src.pos != r->file_size)
		rc = fvm_err(FVM_ECORRUPT, "%s: the footer ends at 0x%" PRIx64 ", the file at "
			     "0x%" PRIx64, r->file, w->src.pos, r->file_size);
	if (!rc && progress && progress(ctx, r->file_size, r->file_size))
		rc = fvm_err(FVM_ECANCELED, "%s: verify canceled at its end", r->file);
	fvm_walk_free(w);
	return rc;
}
