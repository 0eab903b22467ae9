/*
 * The sequential record walker (walk.h). Users: the stream reader's open
 * (reader.c), the stream loader (stream_load.c) and fvm_verify (verify.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "auth.h"
#include "error.h"
#include "extents.h"
#include "io.h"
#include "record.h"
#include "unframe.h"
#include "walk.h"

#define PIECE (1u << 20) /* payload bytes per read() and per progress call */

enum { OFF_BLCK, OFF_META, OFF_DEVS };

struct offlist {
	uint64_t *v;
	size_t n, cap;
};

struct fvm_walk {
	struct fvm_model *m;
	struct fvm_src src;
	uint64_t limit;         /* records end by here: file_size - 32, or UINT64_MAX */
	int keep;               /* records go into m */
	struct fvm_blockdesc *desc; /* check mode: the blocks as the walk meets them */
	uint32_t nblocks;
	size_t desc_cap;
	struct fvm_devs_prev devs_prev; /* check mode: R43 */
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
	int devs_pending;       /* DEVS header read, its body not yet */
	int done;               /* footer read */
	uint8_t *scratch;       /* PIECE bytes: payload nobody keeps */

	/* COMPRESSED (FORMAT.md 4.5, 5.1) */
	int compressed;
	unsigned fshift;
	struct fvm_frame *fr;   /* every frame met, in file order */
	uint64_t nfr;
	size_t fr_cap;
	uint64_t seg_fr;        /* the pending segment's first frame */
	uint64_t seg_plain;     /* its plain payload */
	uint64_t plain_base;    /* plain payload space so far */
	uint8_t *stored, *plain; /* a frame's bytes, as stored and decoded */
	struct fvm_codec_ctx cx;
};

static struct fvm_blockdesc *wdesc(struct fvm_walk *w)
{
	return w->keep ? w->m->desc : w->desc;
}

static uint32_t wnblocks(struct fvm_walk *w)
{
	return w->keep ? w->m->nblocks : w->nblocks;
}

static const char *block_name(struct fvm_walk *w, uint32_t id)
{
	return id < w->m->nblocks ? w->m->blocks[id].name : "?";
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
	free(w->fr);
	free(w->stored);
	free(w->plain);
	fvm_codec_ctx_free(&w->cx);
	free(w);
}

struct fvm_walk *fvm_walk_new(struct fvm_model *m, int fd, int seekable, int keep)
{
	struct fvm_walk *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->m = m;
	w->keep = keep;
	w->src = (struct fvm_src){ fd, seekable, 0, m->file };
	w->limit = seekable ? m->file_size - FVM_FOOTER_SIZE : UINT64_MAX;
	return w;
}

int fvm_walk_done(const struct fvm_walk *w)
{
	return w->done;
}

uint64_t fvm_walk_pos(const struct fvm_walk *w)
{
	return w->src.pos;
}

static int reserve(struct fvm_walk *w, uint64_t n)
{
	uint8_t *p;

	if (n <= w->body_cap)
		return 0;
	p = realloc(w->body, n);
	if (!p)
		return fvm_err(FVM_ENOMEM, "%s: %s at offset 0x%" PRIx64 ": body of %" PRIu64
			       " bytes", w->m->file, fvm_rec_name(w->rh.type), w->rec_off, n);
	w->body = p;
	w->body_cap = n;
	return 0;
}

static int push_off(struct fvm_walk *w, int t, uint64_t off)
{
	struct offlist *l = &w->offs[t];

	if (fvm_grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return fvm_err(FVM_ENOMEM, "%s: record list", w->m->file);
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
				       " is not zero", w->m->file, at + i);
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
					  (struct fvm_where){ w->m->file, w->rec_off });
	return rc;
}

/* ------------------------------------------------------------ records */

static int on_blck(struct fvm_walk *w)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	struct fvm_block_rec b;
	int rc;

	rc = whole_body(w);
	if (!rc)
		rc = fvm_block_decode(w->body, w->rh.body_len, wnblocks(w), &b, at);
	if (rc)
		return rc;
	if (w->keep) {
		rc = fvm_model_add_block(w->m, &b, w->rec_off);
	} else {
		const struct fvm_rblock *rb = b.id < w->m->nblocks ? &w->m->blocks[b.id] : NULL;

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
				     (struct fvm_where){ w->m->file, w->rec_off });
	if (!rc && w->keep)
		rc = fvm_model_add_meta(w->m, &m, w->rec_off);
	return rc ? rc : push_off(w, OFF_META, w->rec_off);
}

/* keep mode: the record joins the model, its data kept or handed on. */
static int keep_devs(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	uint64_t data_off;
	struct fvm_devs_rec d;
	const struct fvm_rsect *s;
	uint8_t *body;
	int give = k && k->devstate;
	int rc;

	rc = fvm_rec_devs_read(&w->src, w->rec_off, &w->rh, &body, &d);
	if (rc)
		return rc;
	data_off = w->rec_off + FVM_RECHDR_SIZE + FVM_DEVS_FIXED + d.name_len;
	rc = fvm_model_add_part(w->m, &d, data_off, w->rec_off, give ? NULL : body, give);
	if (rc || !give) {
		if (rc)
			free(body);
		return rc;
	}
	/* a stream open stops before the first DEVS record: no part of a
	 * section was kept before the load that hands them on */
	s = &w->m->sects[w->m->nsects - 1];
	fvm_err_clear();
	rc = k->devstate(k->devstate_ctx, w->m->nsects - 1, s->name, s->length - d.data_len,
			 d.data, (size_t)d.data_len, !(d.flags & FVM_DEVS_CONTINUES));
	free(body);
	return rc ? fvm_err_callback(rc, "%s: the device-state callback stopped the load at "
				     "section %s (DEVS record at offset 0x%" PRIx64 ")",
				     w->m->file, s->name, w->rec_off) : 0;
}

static int on_devs(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	uint8_t head[FVM_DEVS_HEAD];
	struct fvm_devs_rec d;
	int rc;

	if (w->keep) {
		rc = keep_devs(w, k);
	} else {
		rc = fvm_rec_devs_scan(&w->src, w->rec_off, &w->rh, head, &d);
		if (!rc)
			rc = fvm_devs_follows(&w->devs_prev, &d,
					      (struct fvm_where){ w->m->file, w->rec_off }); /* R43 */
		if (!rc)
			fvm_devs_prev_set(&w->devs_prev, &d, w->rec_off);
	}
	return rc ? rc : push_off(w, OFF_DEVS, w->rec_off);
}

/*
 * The steps both kinds of SEGM record share. seg_head reads the 16-byte
 * header first: the body length then follows from it (or is bounded by
 * it), so a hostile body_len cannot make the walk buffer more than a few
 * MiB; seg_body reads the rest and checks the record CRC (R11); seg_tail
 * places the payload (R56 against the end) and makes room for the
 * segment's extents.
 */
static int seg_head(struct fvm_walk *w, uint32_t *n)
{
	size_t hl = w->rh.body_len < FVM_SEGHDR_SIZE ? (size_t)w->rh.body_len : FVM_SEGHDR_SIZE;
	int rc = reserve(w, FVM_SEGHDR_SIZE);

	if (!rc)
		rc = fvm_src_read(&w->src, w->body, hl, "SEGM record");
	*n = fvm_seg_entry_count(w->body, hl);
	return rc;
}

static int seg_body(struct fvm_walk *w, uint32_t n)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	uint64_t len = w->rh.body_len;
	int rc = reserve(w, len);

	if (!rc)
		rc = fvm_src_read(&w->src, w->body + FVM_SEGHDR_SIZE, len - FVM_SEGHDR_SIZE,
				  "SEGM record");
	if (!rc)
		rc = fvm_rechdr_check_crc(&w->rh, w->body, at);
	if (!rc && fvm_grow((void **)&w->ent, &w->ent_cap, n, sizeof(*w->ent)))
		rc = fvm_err(FVM_ENOMEM, "%s: SEGM record at offset 0x%" PRIx64, at.file,
			     at.offset);
	return rc;
}

static int seg_tail(struct fvm_walk *w, uint32_t n)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	uint64_t len = w->rh.body_len;

	w->payload_off = w->sh.payload_len ? fvm_seg_payload_offset(w->rec_off, len)
					   : fvm_rec_next(w->rec_off, len);
	if (w->sh.payload_len && (w->payload_off > w->limit ||
				  w->sh.payload_len > w->limit - w->payload_off)) /* R56 */
		return fvm_err(FVM_ETRUNCATED, "%s: SEGM record at offset 0x%" PRIx64 ": payload"
			       " of %" PRIu64 " bytes at 0x%" PRIx64 " runs past 0x%" PRIx64,
			       at.file, at.offset, w->sh.payload_len, w->payload_off, w->limit);
	if (fvm_grow((void **)&w->raw.v, &w->raw.cap, w->raw.n + n, sizeof(*w->raw.v)))
		return fvm_err(FVM_ENOMEM, "%s: SEGM record at offset 0x%" PRIx64, at.file,
			       at.offset);
	w->seg_pending = 1;
	return 0;
}

/* A COMPRESSED SEGM record: entries, frame table, where the frames lie. */
static int on_csegm(struct fvm_walk *w)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	uint64_t len = w->rh.body_len, nf;
	uint32_t n;
	int rc = seg_head(w, &n);

	if (rc)
		return rc;
	if (len < FVM_SEGHDR_SIZE || n == 0 || n > FVM_MAX_ENTRIES ||
	    len < fvm_cseg_body_len(n, 0) || len > fvm_cseg_body_max(n, w->fshift)) {
		rc = fvm_cseg_decode(w->body, len < FVM_SEGHDR_SIZE ? len : FVM_SEGHDR_SIZE,
				     w->fshift, wdesc(w), wnblocks(w), &w->sh, NULL, &nf, at);
		return rc ? rc : fvm_err(FVM_ECORRUPT, "%s: SEGM record at offset 0x%" PRIx64
					 ": body_len %" PRIu64 " does not fit %u entries",
					 at.file, at.offset, len, n);
	}
	rc = seg_body(w, n);
	if (!rc)
		rc = fvm_cseg_decode(w->body, len, w->fshift, wdesc(w), wnblocks(w), &w->sh,
				     w->ent, &w->seg_plain, at);
	if (rc)
		return rc;
	nf = fvm_frame_count(w->seg_plain, w->fshift);
	if (fvm_grow((void **)&w->fr, &w->fr_cap, w->nfr + nf, sizeof(*w->fr)))
		return fvm_err(FVM_ENOMEM, "%s: SEGM record at offset 0x%" PRIx64 ": %" PRIu64
			       " frames", at.file, at.offset, nf);
	/* a segment of zero runs only has no frames: w->fr may still be NULL */
	rc = fvm_cseg_frames(w->body, len, w->rec_off, &w->sh, w->seg_plain, w->fshift,
			     w->plain_base, nf ? w->fr + w->nfr : NULL, at);
	if (!rc)
		rc = seg_tail(w, n);
	if (rc)
		return rc;
	fvm_cseg_extents(&w->sh, w->ent, wdesc(w), w->plain_base, w->raw.v + w->raw.n);
	w->raw.n += n;
	w->seg_fr = w->nfr;
	w->nfr += nf;
	w->plain_base += w->seg_plain;
	return 0;
}

static int on_segm(struct fvm_walk *w)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	unsigned chk = w->m->chk;
	uint64_t len = w->rh.body_len;
	uint32_t n;
	int rc = seg_head(w, &n);

	if (rc)
		return rc;
	if (len < FVM_SEGHDR_SIZE || n == 0 || n > FVM_MAX_ENTRIES ||
	    fvm_ld64(w->body + 8) > FVM_MAX_SEG_PAYLOAD ||
	    len != fvm_seg_body_len(n, fvm_ld64(w->body + 8), chk)) {
		/* the decoder's checks of the header give the precise error */
		rc = fvm_seg_decode(w->body, len, chk, wdesc(w), wnblocks(w), &w->sh,
				    NULL, at);
		return rc ? rc : fvm_err(FVM_ECORRUPT, "%s: SEGM record at offset 0x%"
					 PRIx64 ": bad header", at.file, at.offset);
	}
	rc = seg_body(w, n);
	if (!rc)
		rc = fvm_seg_decode(w->body, len, chk, wdesc(w), wnblocks(w), &w->sh,
				    w->ent, at);
	if (!rc)
		rc = seg_tail(w, n);
	if (rc)
		return rc;
	fvm_seg_extents(w->rec_off, &w->sh, w->ent, chk, wdesc(w), w->raw.v + w->raw.n);
	w->raw.n += n;
	return 0;
}

/* ------------------------------------------------------------ payload */

/* Chunk CRCs of n payload bytes at p: bytes done.. of entry e, which starts
 * at entry_off in the segment's payload. */
static int check_chunks(struct fvm_walk *w, const struct fvm_entry *e, const uint8_t *p,
			uint64_t n, uint64_t entry_off, uint64_t done)
{
	const uint8_t *chk = w->body + FVM_SEGHDR_SIZE +
			     (size_t)w->sh.entry_count * FVM_ENTRY_SIZE;
	uint64_t f = w->payload_off + entry_off + done, at;
	int64_t bad = fvm_chunks_bad(w->m->keys, f, p, n / FVM_CHUNK,
				     chk + (uint64_t)w->m->chk * ((entry_off + done) / FVM_CHUNK));

	if (bad == FVM_CHUNKS_FAILED)
		return FVM_ENOMEM;
	if (bad < 0)
		return 0;
	at = done + (uint64_t)bad * FVM_CHUNK; /* in the entry */
	return fvm_err(w->m->keys ? FVM_EAUTH : FVM_ECHECKSUM, "%s: SEGM record at offset 0x%"
		       PRIx64 ": block %s page %" PRIu64 ": payload %s at file offset 0x%" PRIx64,
		       w->m->file, w->rec_off, block_name(w, e->block_id),
		       e->first_page + (at >> wdesc(w)[e->block_id].page_shift),
		       w->m->keys ? "tag does not verify" : "crc mismatch",
		       w->payload_off + entry_off + at);
}

static int progress(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	int rc;

	if (!k->progress)
		return 0;
	fvm_err_clear();
	rc = k->progress(k->pctx, k->by_pos ? w->src.pos : k->bytes, k->total);
	return rc ? fvm_err_callback(rc, "%s: canceled by the progress callback at offset 0x%"
				     PRIx64, w->m->file, w->src.pos) : 0;
}

/*
 * The frames of the pending COMPRESSED segment: each read whole, checked and
 * decoded (unframe.c), its plain bytes handed to the DATA entries they
 * belong to, in entry order (one dst call per entry, as uncompressed).
 */
static int walk_frames(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	uint64_t F = 1ull << w->fshift;
	uint32_t ei = 0;        /* the entry the next plain byte belongs to */
	uint64_t e_done = 0;    /* its bytes handed on so far */
	uint8_t *dst = NULL;
	int rc;

	if (!w->stored && !(w->stored = malloc(F)))
		return fvm_err(FVM_ENOMEM, "%s: frame buffer", w->m->file);
	if (!w->plain && !(w->plain = malloc(F)))
		return fvm_err(FVM_ENOMEM, "%s: frame buffer", w->m->file);
	if (!w->cx.codec)
		fvm_codec_ctx_init(&w->cx, w->m->hdr.codec, 0);
	for (uint64_t fk = w->seg_fr; fk < w->nfr; fk++) {
		const struct fvm_frame *f = &w->fr[fk];
		uint64_t used = 0;

		rc = pad(w, f->file_offset);
		if (!rc)
			rc = fvm_src_read(&w->src, w->stored, f->stored_len, "frame");
		if (!rc)
			rc = fvm_unframe(&w->cx, f, fk, w->stored, w->plain, w->m->file, 1);
		if (rc)
			return rc;
		while (used < f->plain_len) {
			const struct fvm_entry *e = &w->ent[ei];
			uint64_t bytes, n;

			if (!(e->flags & FVM_RUN_FLAG_DATA)) {
				ei++;
				continue;
			}
			bytes = e->page_count << wdesc(w)[e->block_id].page_shift;
			if (e_done == 0) {
				dst = k->dst ? k->dst(k->ctx, e) : NULL;
				if (dst)
					k->extents++;
			}
			n = bytes - e_done < f->plain_len - used ? bytes - e_done
								 : f->plain_len - used;
			if (dst)
				memcpy(dst + e_done, w->plain + used, n);
			used += n;
			e_done += n;
			if (e_done == bytes) {
				ei++;
				e_done = 0;
			}
		}
		k->reads++;
		k->bytes += f->plain_len;
		rc = progress(w, k);
		if (rc)
			return rc;
	}
	return pad(w, w->payload_off + w->sh.payload_len);
}

/* Padding and payload of the pending segment, entry by entry. */
static int walk_payload(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	uint64_t seg_off = 0;
	int rc;

	w->seg_pending = 0;
	rc = pad(w, w->payload_off);
	if (rc || !w->sh.payload_len)
		return rc;
	if (w->compressed)
		return walk_frames(w, k);
	if (!w->scratch && !(w->scratch = malloc(PIECE)))
		return fvm_err(FVM_ENOMEM, "%s: payload buffer", w->m->file);
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
			if (!rc && k->check && (w->m->with_crc || w->m->keys))
				rc = check_chunks(w, e, p, n, seg_off, done);
			if (rc)
				return rc;
			k->reads++;
			k->bytes += n;
			done += n;
			rc = progress(w, k);
			if (rc)
				return rc;
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
		return fvm_err(FVM_ENOMEM, "%s: comparing %" PRIu64 " extents", w->m->file, n);
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
				     PRIu64 "+%" PRIu64 " at 0x%" PRIx64 ")", w->m->file, w->rec_off,
				     a[i].block_id, a[i].first_page, a[i].page_count,
				     a[i].payload_offset, live[i].block_id, live[i].first_page,
				     live[i].page_count, live[i].payload_offset);
	free(a);
	return rc;
}

/* R68 for COMPRESSED: the index's frame list is the frames the segments gave. */
static int same_frames(struct fvm_walk *w, const uint8_t *p, const struct fvm_indexhdr *ih)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	struct fvm_frame f, prev;
	int rc;

	if (ih->frame_count != w->nfr)
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ": %" PRIu64
			       " frames, the segments give %" PRIu64, at.file, at.offset,
			       ih->frame_count, w->nfr);
	p += 8;
	for (uint64_t k = 0; k < w->nfr; k++, p += FVM_FRAME_SIZE) {
		const struct fvm_frame *g = &w->fr[k];

		rc = fvm_frame_decode(p, &f, k ? &prev : NULL, w->fshift, w->rec_off, k, at);
		if (rc)
			return rc;
		if (f.plain_offset != g->plain_offset || f.file_offset != g->file_offset ||
		    f.plain_len != g->plain_len || f.stored_len != g->stored_len ||
		    f.crc_stored != g->crc_stored || f.crc_plain != g->crc_plain)
			return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64
				       ": frame %" PRIu64 " (%u bytes at 0x%" PRIx64 ") differs "
				       "from what the segments give (%u bytes at 0x%" PRIx64 ")",
				       at.file, at.offset, k, f.stored_len, f.file_offset,
				       g->stored_len, g->file_offset);
		prev = f;
	}
	return 0;
}

/* R61: the index lists exactly the BLCK, META and DEVS records met. */
static int index_lists(struct fvm_walk *w, const uint8_t *p, const struct fvm_indexhdr *ih)
{
	static const uint32_t type[3] = { FVM_REC_BLCK, FVM_REC_META, FVM_REC_DEVS };
	uint32_t counts[3] = { ih->block_count, ih->meta_count, ih->devstate_count };
	struct fvm_where at = { w->m->file, w->rec_off };
	int rc;

	for (int t = 0; t < 3; t++) {
		rc = fvm_index_check_seen(p, counts[t], type[t], w->offs[t].v, w->offs[t].n, at);
		if (rc)
			return rc;
		p += 8 * (size_t)counts[t];
	}
	return 0;
}

/* The index and the footer: R60, R61, R68, R70..R74, and R44 before them. */
static int on_indx(struct fvm_walk *w)
{
	struct fvm_where at = { w->m->file, w->rec_off };
	struct fvm_indexhdr ih, expect;
	struct fvm_extent *ext = NULL;
	struct fvm_footer f;
	uint8_t fb[FVM_FOOTER_SIZE];
	const uint8_t *p;
	int rewrites, rc;

	rc = w->keep ? fvm_model_end_parts(w->m) : fvm_devs_check_end(&w->devs_prev, at.file);
	if (!rc)
		rc = fvm_extents_resolve(&w->raw, wdesc(w), &rewrites);
	if (rc)
		return rc;
	if (w->keep) /* check mode leaves the model alone: threads may share it */
		w->m->rewrites = rewrites;
	if (!w->keep && w->rec_off != w->m->index_offset)
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ", the "
			       "footer points at 0x%" PRIx64, at.file, at.offset,
			       w->m->index_offset);
	expect = (struct fvm_indexhdr){ wnblocks(w), (uint32_t)w->offs[OFF_META].n,
					(uint32_t)w->offs[OFF_DEVS].n, w->raw.n, w->compressed,
					w->nfr, w->m->auth };
	/* known before reading: a stream cannot make us buffer a huge index */
	if (w->rh.body_len != fvm_index_body_len(&expect)) /* R68 */
		return fvm_err(FVM_ECORRUPT, "%s: INDX record at offset 0x%" PRIx64 ": body_len"
			       " %" PRIu64 ", the records before it give %" PRIu64, at.file,
			       at.offset, w->rh.body_len, fvm_index_body_len(&expect));
	rc = whole_body(w);
	if (!rc)
		rc = (w->compressed ? fvm_indexhdr_decode_c
		      : w->m->auth ? fvm_indexhdr_decode_a : fvm_indexhdr_decode)(
			w->body, w->rh.body_len, &ih, at);
	if (!rc && w->compressed)
		rc = same_frames(w, w->body + fvm_index_frames_at(&ih), &ih);
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
		rc = w->compressed
			? fvm_extent_decode_plain(p + FVM_EXTENT_SIZE * i, &ext[i], wdesc(w),
						  wnblocks(w), w->plain_base, i, at)
			: fvm_extent_decode(p + FVM_EXTENT_SIZE * i, &ext[i], wdesc(w),
					    wnblocks(w), w->m->chk, w->rec_off, i, at);
	if (!rc)
		rc = same_extents(w, ext, ih.extent_count);
	if (!rc)
		rc = pad(w, fvm_rec_next(w->rec_off, w->rh.body_len));
	if (!rc)
		rc = fvm_src_read(&w->src, fb, sizeof(fb), "footer");
	if (!rc)
		rc = fvm_footer_decode(fb, &f, w->src.pos, at.file);
	if (!rc)
		rc = fvm_footer_check_index(&f, w->rec_off, w->rh.body_len,
					    w->src.pos - FVM_FOOTER_SIZE, at.file); /* R71 */
	if (rc) {
		free(ext);
		return rc;
	}
	w->done = 1;
	if (!w->keep) {
		free(ext);
		return 0;
	}
	w->m->index_offset = w->rec_off;
	if (w->compressed) { /* the frames met become the model's frame list */
		free(w->m->frames);
		w->m->frames = w->fr;
		w->m->nframes = w->nfr;
		w->m->plain_total = w->plain_base;
		w->m->stored_total = 0;
		for (uint64_t i = 0; i < w->nfr; i++)
			w->m->stored_total += w->fr[i].stored_len;
		w->fr = NULL;
		w->nfr = 0;
		w->fr_cap = 0;
	}
	return fvm_model_set_index(w->m, ext, ih.extent_count);
}

/* ------------------------------------------------------------ the walk */

static int walk_header(struct fvm_walk *w)
{
	uint8_t hb[FVM_HEADER_SIZE];
	struct fvm_header h;
	int rc;

	rc = fvm_src_read(&w->src, hb, sizeof(hb), "file header");
	if (!rc)
		rc = fvm_header_decode(hb, &h, w->m->file);
	if (rc)
		return rc;
	if (w->keep && (h.incompat & FVM_INCOMPAT_AUTH)) /* FORMAT.md 4.6 */
		return fvm_err(FVM_EUNSUPPORTED, "%s: an authenticated snapshot cannot be read "
			       "as a stream (its MAC is at its end, after the bytes it covers): "
			       "open it as a file", w->m->file);
	if (w->keep) {
		w->m->hdr = h;
		w->m->with_crc = !!(h.incompat & FVM_INCOMPAT_PAYLOAD_CRC);
		w->m->chk = fvm_chk_bytes(h.incompat);
		w->m->compressed = !!(h.incompat & FVM_INCOMPAT_COMPRESSED);
	} else if (h.major != w->m->hdr.major || h.minor != w->m->hdr.minor ||
		   h.incompat != w->m->hdr.incompat || h.compat != w->m->hdr.compat ||
		   h.codec != w->m->hdr.codec || h.frame_shift != w->m->hdr.frame_shift ||
		   h.tag_alg != w->m->hdr.tag_alg || memcmp(h.salt, w->m->hdr.salt, sizeof(h.salt))) {
		return fvm_err(FVM_ECORRUPT, "%s: file header changed since the file was "
			       "opened", w->m->file);
	}
	w->compressed = !!(h.incompat & FVM_INCOMPAT_COMPRESSED);
	w->fshift = h.frame_shift;
	return 0;
}

/*
 * Read the next record; *type says which. A SEGM leaves its payload
 * pending; with pause, a DEVS leaves its body pending.
 */
static int walk_next(struct fvm_walk *w, struct fvm_walk_sink *k, int pause, uint32_t *type)
{
	uint8_t hb[FVM_RECHDR_SIZE];
	int rc;

	w->rec_off = w->src.pos;
	rc = fvm_src_read(&w->src, hb, sizeof(hb), "record header");
	if (!rc)
		rc = fvm_rechdr_decode(hb, &w->rh, w->limit,
				       (struct fvm_where){ w->m->file, w->rec_off });
	if (rc)
		return rc;
	*type = w->rh.type;
	switch (w->rh.type) {
	case FVM_REC_BLCK: rc = on_blck(w); break;
	case FVM_REC_META: rc = on_meta(w); break;
	case FVM_REC_DEVS:
		if (pause) {
			w->devs_pending = 1;
			return 0;
		}
		rc = on_devs(w, k);
		break;
	case FVM_REC_SEGM: return w->compressed ? on_csegm(w) : on_segm(w);
	case FVM_REC_INDX: return on_indx(w);
	}
	return rc ? rc : pad(w, fvm_rec_next(w->rec_off, w->rh.body_len));
}

int fvm_walk_start(struct fvm_walk *w, int pause)
{
	uint32_t type = 0;
	int rc = walk_header(w);

	while (!rc && pause && !w->done && type != FVM_REC_SEGM && type != FVM_REC_DEVS)
		rc = walk_next(w, NULL, 1, &type);
	return rc;
}

int fvm_walk_rest(struct fvm_walk *w, struct fvm_walk_sink *k)
{
	uint32_t type;
	int rc = 0;

	while (!rc && !w->done) {
		if (w->seg_pending) {
			rc = walk_payload(w, k);
			continue;
		}
		if (w->devs_pending) {
			w->devs_pending = 0;
			rc = on_devs(w, k);
			if (!rc)
				rc = pad(w, fvm_rec_next(w->rec_off, w->rh.body_len));
			continue;
		}
		rc = walk_next(w, k, 0, &type);
		if (!rc && type == FVM_REC_BLCK && w->keep && k->block)
			rc = k->block(k->ctx, w->m->nblocks - 1);
	}
	return rc;
}
