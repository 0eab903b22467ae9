/*
 * doc/FORMAT.md in code: one encoder and one checking decoder per structure.
 * Each check cites its rule number; the order of the checks is the order of
 * the rules, so the two documents can be read side by side.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "crc.h"
#include "error.h"
#include "format.h"

#define AT "%s: %s at offset 0x%" PRIx64

/* ------------------------------------------------------------ header */

void fvm_header_encode(uint8_t out[FVM_HEADER_SIZE], const struct fvm_header *h)
{
	memset(out, 0, FVM_HEADER_SIZE);
	memcpy(out, FVM_MAGIC, 8);
	fvm_st16(out + 8, h->major);
	fvm_st16(out + 10, h->minor);
	fvm_st32(out + 12, FVM_HEADER_SIZE);
	fvm_st64(out + 16, h->incompat);
	fvm_st64(out + 24, h->compat);
	if (h->incompat & FVM_INCOMPAT_COMPRESSED) {
		out[32] = h->codec;
		out[33] = h->level;
		out[34] = h->frame_shift;
	}
	if (h->incompat & FVM_INCOMPAT_AUTH) {
		memcpy(out + 40, h->salt, 16);
		out[56] = h->tag_alg;
	}
	fvm_st32(out + 60, fvm_crc32c(0, out, 60));
}

static int all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return 0;
	return 1;
}

int fvm_header_decode(const uint8_t in[FVM_HEADER_SIZE], struct fvm_header *h,
		      const char *file)
{
	uint32_t crc;

	if (memcmp(in, FVM_MAGIC, 8) != 0) /* R1 */
		return fvm_err(FVM_EMAGIC, "%s: file header at offset 0: bad magic "
			       "(not a libfastvm snapshot)", file);
	crc = fvm_crc32c(0, in, 60);
	if (crc != fvm_ld32(in + 60)) /* R6 before R2..R5 */
		return fvm_err(FVM_ECHECKSUM, "%s: file header at offset 0: header_crc "
			       "0x%08x, computed 0x%08x", file, fvm_ld32(in + 60), crc);
	h->major = fvm_ld16(in + 8);
	h->minor = fvm_ld16(in + 10);
	h->incompat = fvm_ld64(in + 16);
	h->compat = fvm_ld64(in + 24);
	if (h->major != FVM_VERSION_MAJOR_FILE) /* R2 */
		return fvm_err(FVM_EVERSION, "%s: file header at offset 0: format version "
			       "%u.%u, this library reads %u.x", file, h->major, h->minor,
			       FVM_VERSION_MAJOR_FILE);
	if (fvm_ld32(in + 12) != FVM_HEADER_SIZE) /* R3 */
		return fvm_err(FVM_ECORRUPT, "%s: file header at offset 0xc: header_size %u, "
			       "expected %u", file, fvm_ld32(in + 12), FVM_HEADER_SIZE);
	if (h->incompat & ~FVM_INCOMPAT_KNOWN) /* R4 */
		return fvm_err(FVM_EFEATURE, "%s: file header at offset 0x10: unknown "
			       "incompatible features 0x%" PRIx64, file,
			       h->incompat & ~FVM_INCOMPAT_KNOWN);
	h->codec = h->level = h->frame_shift = 0;
	memset(h->salt, 0, sizeof(h->salt));
	h->tag_alg = 0;
	if (h->incompat & FVM_INCOMPAT_COMPRESSED) {
		h->codec = in[32];
		h->level = in[33];
		h->frame_shift = in[34];
	}
	if (h->incompat & FVM_INCOMPAT_AUTH) {
		memcpy(h->salt, in + 40, 16);
		h->tag_alg = in[56];
	}
	if (!all_zero(in + 32 + (h->incompat & FVM_INCOMPAT_COMPRESSED ? 3 : 0),
		      8 - (h->incompat & FVM_INCOMPAT_COMPRESSED ? 3 : 0)) ||
	    (!(h->incompat & FVM_INCOMPAT_AUTH) && !all_zero(in + 40, 17)) ||
	    !all_zero(in + 57, 3)) /* R5 */
		return fvm_err(FVM_ECORRUPT, "%s: file header at offset 0x20: reserved "
			       "bytes are not zero", file);
	if ((h->incompat & FVM_INCOMPAT_AUTH) &&
	    (h->incompat & (FVM_INCOMPAT_PAYLOAD_CRC | FVM_INCOMPAT_COMPRESSED))) /* R9a */
		return fvm_err(FVM_ECORRUPT, "%s: file header at offset 0x10: AUTHENTICATED "
			       "with %s", file, h->incompat & FVM_INCOMPAT_COMPRESSED ? "COMPRESSED"
			       : "PAYLOAD_CRC");
	if ((h->incompat & FVM_INCOMPAT_AUTH) && h->tag_alg != FVM_TAG_ALG_GMAC) /* R9b */
		return fvm_err(FVM_EUNSUPPORTED, "%s: file header at offset 0x38: tag algorithm %u "
			       "(this library knows 1, GMAC-AES-256 with BLAKE2b-256%s)", file,
			       h->tag_alg, h->tag_alg ? "" : "; 0 is the pre-release Poly1305 "
			       "draft of 1.3, whose files are not read");
	if (!(h->incompat & FVM_INCOMPAT_COMPRESSED))
		return 0;
	if (h->codec < 1 || h->codec > 2) /* R7 (codec.h ids) */
		return fvm_err(FVM_EFEATURE, "%s: file header at offset 0x20: unknown codec %u "
			       "(1 zstd, 2 lz4)", file, h->codec);
	if (h->frame_shift < FVM_MIN_FRAME_SHIFT || h->frame_shift > FVM_MAX_FRAME_SHIFT) /* R8 */
		return fvm_err(FVM_ECORRUPT, "%s: file header at offset 0x22: frame_shift %u "
			       "outside %u..%u", file, h->frame_shift, FVM_MIN_FRAME_SHIFT,
			       FVM_MAX_FRAME_SHIFT);
	if (h->incompat & FVM_INCOMPAT_PAYLOAD_CRC) /* R9 */
		return fvm_err(FVM_ECORRUPT, "%s: file header at offset 0x10: COMPRESSED and "
			       "PAYLOAD_CRC both set", file);
	return 0;
}

/* ------------------------------------------------------------ records */

const char *fvm_rec_name(uint32_t type)
{
	switch (type) {
	case FVM_REC_BLCK: return "BLCK record";
	case FVM_REC_META: return "META record";
	case FVM_REC_DEVS: return "DEVS record";
	case FVM_REC_SEGM: return "SEGM record";
	case FVM_REC_INDX: return "INDX record";
	}
	return "record";
}

static uint32_t rec_crc(const uint8_t hdr[FVM_RECHDR_SIZE], const void *body,
			uint64_t body_len)
{
	uint32_t c = fvm_crc32c(0, hdr, 4);

	c = fvm_crc32c(c, hdr + 8, 8);
	return fvm_crc32c(c, body, body_len);
}

void fvm_rechdr_encode(uint8_t out[FVM_RECHDR_SIZE], uint32_t type,
		       const void *body, uint64_t body_len)
{
	fvm_rechdr_encode2(out, type, body, body_len, NULL, 0);
}

void fvm_rechdr_encode2(uint8_t out[FVM_RECHDR_SIZE], uint32_t type,
			const void *a, uint64_t a_len, const void *b, uint64_t b_len)
{
	fvm_st32(out, type);
	fvm_st64(out + 8, a_len + b_len);
	fvm_st32(out + 4, fvm_crc32c(rec_crc(out, a, a_len), b, b_len));
}

static uint64_t body_limit(uint32_t type)
{
	switch (type) {
	case FVM_REC_BLCK: return 17 + FVM_MAX_NAME;
	case FVM_REC_META: return FVM_MAX_BODY_META;
	case FVM_REC_DEVS: return FVM_MAX_BODY_DEVS;
	case FVM_REC_SEGM: return FVM_MAX_BODY_SEGM;
	}
	return UINT64_MAX; /* INDX: bounded by the file */
}

int fvm_rechdr_decode(const uint8_t in[FVM_RECHDR_SIZE], struct fvm_rechdr *rh,
		      uint64_t limit, struct fvm_where w)
{
	rh->type = fvm_ld32(in);
	rh->crc = fvm_ld32(in + 4);
	rh->body_len = fvm_ld64(in + 8);

	if (body_limit(rh->type) == UINT64_MAX && rh->type != FVM_REC_INDX) /* R10 */
		return fvm_err(FVM_ECORRUPT, AT ": unknown record type 0x%08x", w.file,
			       "record header", w.offset, rh->type);
	if (rh->body_len > body_limit(rh->type)) /* R13 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " exceeds the limit "
			       "%" PRIu64, w.file, fvm_rec_name(rh->type), w.offset,
			       rh->body_len, body_limit(rh->type));
	if (limit != UINT64_MAX &&
	    (rh->body_len > limit || w.offset + FVM_RECHDR_SIZE > limit - rh->body_len)) /* R12 */
		return fvm_err(FVM_ETRUNCATED, AT ": body of %" PRIu64 " bytes runs past "
			       "offset 0x%" PRIx64, w.file, fvm_rec_name(rh->type), w.offset,
			       rh->body_len, limit);
	return 0;
}

uint32_t fvm_rec_crc_begin(const struct fvm_rechdr *rh)
{
	uint8_t hdr[FVM_RECHDR_SIZE];

	fvm_st32(hdr, rh->type);
	fvm_st32(hdr + 4, 0);
	fvm_st64(hdr + 8, rh->body_len);
	return fvm_crc32c(fvm_crc32c(0, hdr, 4), hdr + 8, 8);
}

int fvm_rec_crc_end(const struct fvm_rechdr *rh, uint32_t crc, struct fvm_where w)
{
	if (crc != rh->crc) /* R11 */
		return fvm_err(FVM_ECHECKSUM, AT ": crc 0x%08x, computed 0x%08x", w.file,
			       fvm_rec_name(rh->type), w.offset, rh->crc, crc);
	return 0;
}

int fvm_rechdr_check_crc(const struct fvm_rechdr *rh, const void *body,
			 struct fvm_where w)
{
	return fvm_rec_crc_end(rh, fvm_crc32c(fvm_rec_crc_begin(rh), body, rh->body_len), w);
}

/* ------------------------------------------------------------ BLCK */

size_t fvm_block_encode(uint8_t *out, const struct fvm_block_rec *b)
{
	fvm_st32(out, b->id);
	fvm_st32(out + 4, b->page_shift);
	fvm_st64(out + 8, b->length);
	out[16] = b->name_len;
	memcpy(out + 17, b->name, b->name_len);
	return 17 + (size_t)b->name_len;
}

int fvm_block_decode(const uint8_t *body, uint64_t len, uint32_t expect_id,
		     struct fvm_block_rec *b, struct fvm_where w)
{
	if (len < 17) /* R25 (short) */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " is too short",
			       w.file, "BLCK record", w.offset, len);
	b->id = fvm_ld32(body);
	b->page_shift = fvm_ld32(body + 4);
	b->length = fvm_ld64(body + 8);
	b->name_len = body[16];
	if (b->id != expect_id) /* R20 */
		return fvm_err(FVM_ECORRUPT, AT ": block_id %u, expected %u", w.file,
			       "BLCK record", w.offset, b->id, expect_id);
	if (b->page_shift < FVM_MIN_PAGE_SHIFT || b->page_shift > FVM_MAX_PAGE_SHIFT) /* R21 */
		return fvm_err(FVM_ECORRUPT, AT ": page_shift %u outside 12..30", w.file,
			       "BLCK record", w.offset, b->page_shift);
	if (b->length == 0 || b->length > FVM_MAX_BLOCK_LEN ||
	    (b->length & ((1ull << b->page_shift) - 1))) /* R22 */
		return fvm_err(FVM_ECORRUPT, AT ": length %" PRIu64 " is not a non-zero "
			       "multiple of the page size %llu (at most 2^48)", w.file,
			       "BLCK record", w.offset, b->length, 1ull << b->page_shift);
	if (b->name_len == 0) /* R23 */
		return fvm_err(FVM_ECORRUPT, AT ": empty block name", w.file, "BLCK record",
			       w.offset);
	if (len != 17 + (uint64_t)b->name_len) /* R25 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 ", expected %u",
			       w.file, "BLCK record", w.offset, len, 17 + b->name_len);
	if (memchr(body + 17, 0, b->name_len)) /* R24 (uniqueness: caller) */
		return fvm_err(FVM_ECORRUPT, AT ": block name holds a NUL byte", w.file,
			       "BLCK record", w.offset);
	memcpy(b->name, body + 17, b->name_len);
	b->name[b->name_len] = '\0';
	return 0;
}

/* ------------------------------------------------------------ META */

size_t fvm_meta_size(size_t key_len, size_t value_len)
{
	return 8 + key_len + value_len;
}

void fvm_meta_encode(uint8_t *out, const struct fvm_meta_rec *m)
{
	memset(out, 0, 8);
	out[0] = (uint8_t)m->key_len;
	fvm_st32(out + 4, (uint32_t)m->value_len);
	memcpy(out + 8, m->key, m->key_len);
	memcpy(out + 8 + m->key_len, m->value, m->value_len);
}

int fvm_meta_decode(const uint8_t *body, uint64_t len, struct fvm_meta_rec *m,
		    struct fvm_where w)
{
	if (len < 8)
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " is too short",
			       w.file, "META record", w.offset, len);
	m->key_len = body[0];
	m->value_len = fvm_ld32(body + 4);
	if (m->key_len == 0) /* R30 */
		return fvm_err(FVM_ECORRUPT, AT ": empty key", w.file, "META record", w.offset);
	if (body[1] || body[2] || body[3])
		return fvm_err(FVM_ECORRUPT, AT ": reserved bytes are not zero", w.file,
			       "META record", w.offset);
	if (8 + (uint64_t)m->key_len + m->value_len != len) /* R31 */
		return fvm_err(FVM_ECORRUPT, AT ": key_len %zu + value_len %zu do not fill "
			       "body_len %" PRIu64, w.file, "META record", w.offset,
			       m->key_len, m->value_len, len);
	m->key = (const char *)body + 8;
	m->value = m->key + m->key_len;
	if (memchr(m->key, 0, m->key_len) || memchr(m->value, 0, m->value_len)) /* R32 */
		return fvm_err(FVM_ECORRUPT, AT ": key or value holds a NUL byte", w.file,
			       "META record", w.offset);
	return 0;
}

/* ------------------------------------------------------------ DEVS */

size_t fvm_devs_encode_head(uint8_t *out, const char *name, size_t name_len,
			    uint8_t flags)
{
	memset(out, 0, FVM_DEVS_FIXED);
	out[0] = (uint8_t)name_len;
	out[1] = flags;
	memcpy(out + FVM_DEVS_FIXED, name, name_len);
	return FVM_DEVS_FIXED + name_len;
}

int fvm_devs_decode(const uint8_t *body, uint64_t len, struct fvm_devs_rec *d,
		    struct fvm_where w)
{
	if (len < FVM_DEVS_FIXED || len < FVM_DEVS_FIXED + (uint64_t)body[0]) /* R41 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " too short for its "
			       "name", w.file, "DEVS record", w.offset, len);
	if (body[1] & ~FVM_DEVS_FLAGS_KNOWN) /* R42 */
		return fvm_err(FVM_ECORRUPT, AT ": unknown flags 0x%02x", w.file,
			       "DEVS record", w.offset, body[1]);
	if (!all_zero(body + 2, 6))
		return fvm_err(FVM_ECORRUPT, AT ": reserved bytes are not zero", w.file,
			       "DEVS record", w.offset);
	d->flags = body[1];
	d->name_len = body[0];
	d->name = (const char *)body + FVM_DEVS_FIXED;
	if (memchr(d->name, 0, d->name_len)) /* R40 */
		return fvm_err(FVM_ECORRUPT, AT ": section name holds a NUL byte", w.file,
			       "DEVS record", w.offset);
	d->data = body + FVM_DEVS_FIXED + d->name_len;
	d->data_len = len - FVM_DEVS_FIXED - d->name_len;
	return 0;
}

int fvm_devs_follows(const struct fvm_devs_prev *prev, const struct fvm_devs_rec *d,
		     struct fvm_where w)
{
	if (!prev->continues)
		return 0;
	if (d->name_len != prev->name_len || memcmp(d->name, prev->name, d->name_len)) /* R43 */
		return fvm_err(FVM_ECORRUPT, AT ": section %.*s continues the DEVS record at "
			       "offset 0x%" PRIx64 ", which is section %.*s", w.file, "DEVS record",
			       w.offset, (int)d->name_len, d->name, prev->rec_offset,
			       (int)prev->name_len, prev->name);
	return 0;
}

void fvm_devs_prev_set(struct fvm_devs_prev *prev, const struct fvm_devs_rec *d,
		       uint64_t rec_offset)
{
	prev->continues = !!(d->flags & FVM_DEVS_CONTINUES);
	prev->name_len = d->name_len;
	memcpy(prev->name, d->name, d->name_len);
	prev->rec_offset = rec_offset;
}

int fvm_devs_check_end(const struct fvm_devs_prev *prev, const char *file)
{
	if (prev->continues) /* R44 */
		return fvm_err(FVM_ECORRUPT, AT ": section %.*s is continued, but no DEVS "
			       "record follows", file, "DEVS record", prev->rec_offset,
			       (int)prev->name_len, prev->name);
	return 0;
}

/* ------------------------------------------------------------ SEGM */

void fvm_seghdr_encode(uint8_t out[FVM_SEGHDR_SIZE], const struct fvm_seghdr *s)
{
	fvm_st32(out, s->entry_count);
	fvm_st32(out + 4, 0);
	fvm_st64(out + 8, s->payload_len);
}

void fvm_entry_encode(uint8_t out[FVM_ENTRY_SIZE], const struct fvm_entry *e)
{
	fvm_st32(out, e->block_id);
	fvm_st32(out + 4, e->flags);
	fvm_st64(out + 8, e->first_page);
	fvm_st64(out + 16, e->page_count);
}

uint64_t fvm_seg_body_len(uint32_t entries, uint64_t payload_len, unsigned chk)
{
	return FVM_SEGHDR_SIZE + (uint64_t)entries * FVM_ENTRY_SIZE +
	       payload_len / FVM_CHUNK * chk;
}

uint32_t fvm_seg_entry_count(const uint8_t *body, uint64_t len)
{
	return len < FVM_SEGHDR_SIZE ? 0 : fvm_ld32(body);
}

/* R55 for one run of pages; shared by segment entries and index extents. */
static int check_pages(uint32_t block_id, uint64_t first, uint64_t count,
		       const struct fvm_blockdesc *b, const char *rec, const char *what,
		       uint64_t i, struct fvm_where w)
{
	if (count == 0 || first > b->pages || count > b->pages - first)
		return fvm_err(FVM_ERANGE, AT ": %s %" PRIu64 ": pages %" PRIu64 "+%"
			       PRIu64 " outside block %u of %" PRIu64 " pages", w.file,
			       rec, w.offset, what, i, first, count, block_id, b->pages);
	return 0;
}

int fvm_seg_decode_entries(const uint8_t *body, uint32_t entry_count,
			   const struct fvm_blockdesc *blocks, uint32_t nblocks,
			   struct fvm_entry *entries, uint64_t limit, uint64_t *data_bytes,
			   struct fvm_where w)
{
	uint64_t payload = 0;
	int rc;

	for (uint32_t i = 0; i < entry_count; i++) {
		const uint8_t *p = body + FVM_SEGHDR_SIZE + (size_t)i * FVM_ENTRY_SIZE;
		struct fvm_entry *e = &entries[i];

		e->block_id = fvm_ld32(p);
		e->flags = fvm_ld32(p + 4);
		e->first_page = fvm_ld64(p + 8);
		e->page_count = fvm_ld64(p + 16);
		if (e->block_id >= nblocks) /* R53 */
			return fvm_err(FVM_ECORRUPT, AT ": entry %u: block_id %u not "
				       "declared (%u blocks)", w.file, "SEGM record",
				       w.offset, i, e->block_id, nblocks);
		if (e->flags & ~FVM_RUN_FLAG_DATA) /* R54 */
			return fvm_err(FVM_ECORRUPT, AT ": entry %u: unknown flags 0x%x",
				       w.file, "SEGM record", w.offset, i, e->flags);
		rc = check_pages(e->block_id, e->first_page, e->page_count,
				 &blocks[e->block_id], "SEGM record", "entry", i, w); /* R55 */
		if (rc)
			return rc;
		if (e->flags & FVM_RUN_FLAG_DATA) {
			uint64_t bytes = e->page_count << blocks[e->block_id].page_shift;
			/* page_count <= 2^36 here, so bytes cannot wrap */
			payload += bytes;
			if (payload > limit)
				break;
		}
	}
	*data_bytes = payload;
	return 0;
}

int fvm_seghdr_decode(const uint8_t *body, uint64_t len, struct fvm_seghdr *sh,
		      struct fvm_where w)
{
	if (len < FVM_SEGHDR_SIZE)
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " is too short",
			       w.file, "SEGM record", w.offset, len);
	sh->entry_count = fvm_ld32(body);
	sh->payload_len = fvm_ld64(body + 8);
	if (sh->entry_count == 0 || sh->entry_count > FVM_MAX_ENTRIES) /* R50 */
		return fvm_err(FVM_ECORRUPT, AT ": entry_count %u outside 1..65536",
			       w.file, "SEGM record", w.offset, sh->entry_count);
	if (fvm_ld32(body + 4))
		return fvm_err(FVM_ECORRUPT, AT ": reserved bytes are not zero", w.file,
			       "SEGM record", w.offset);
	if (sh->payload_len > FVM_MAX_SEG_PAYLOAD || sh->payload_len % FVM_CHUNK) /* R56 */
		return fvm_err(FVM_ECORRUPT, AT ": payload_len %" PRIu64 " is not a "
			       "multiple of 4096 up to 2^32", w.file, "SEGM record",
			       w.offset, sh->payload_len);
	return 0;
}

int fvm_seg_decode(const uint8_t *body, uint64_t len, unsigned chk,
		   const struct fvm_blockdesc *blocks, uint32_t nblocks,
		   struct fvm_seghdr *sh, struct fvm_entry *entries,
		   struct fvm_where w)
{
	uint64_t payload = 0;
	int rc;

	if ((rc = fvm_seghdr_decode(body, len, sh, w)))
		return rc;
	if (len != fvm_seg_body_len(sh->entry_count, sh->payload_len, chk)) /* R52 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 ", expected %" PRIu64
			       " for %u entries and %" PRIu64 " payload bytes", w.file,
			       "SEGM record", w.offset, len,
			       fvm_seg_body_len(sh->entry_count, sh->payload_len, chk),
			       sh->entry_count, sh->payload_len);
	rc = fvm_seg_decode_entries(body, sh->entry_count, blocks, nblocks, entries,
				    sh->payload_len, &payload, w);
	if (rc)
		return rc;
	if (payload != sh->payload_len) /* R51 */
		return fvm_err(FVM_ECORRUPT, AT ": DATA entries hold %s%" PRIu64
			       " bytes, payload_len is %" PRIu64, w.file, "SEGM record",
			       w.offset, payload > sh->payload_len ? "more than " : "",
			       payload, sh->payload_len);
	return 0;
}

/* ------------------------------------------------------------ INDX */

void fvm_seg_extents(uint64_t rec_off, const struct fvm_seghdr *sh,
		     const struct fvm_entry *entries, unsigned chk,
		     const struct fvm_blockdesc *blocks, struct fvm_extent *out)
{
	uint64_t body_len = fvm_seg_body_len(sh->entry_count, sh->payload_len, chk);
	uint64_t pay_off = fvm_seg_payload_offset(rec_off, body_len);
	uint64_t crc_off = rec_off + FVM_RECHDR_SIZE + FVM_SEGHDR_SIZE +
			   (uint64_t)sh->entry_count * FVM_ENTRY_SIZE;
	uint64_t pos = 0;

	for (uint32_t i = 0; i < sh->entry_count; i++) {
		const struct fvm_entry *e = &entries[i];

		out[i] = (struct fvm_extent){ e->block_id, e->flags, e->first_page,
					      e->page_count, 0, 0 };
		if (e->flags & FVM_RUN_FLAG_DATA) {
			out[i].payload_offset = pay_off + pos;
			out[i].crc_offset = chk ? crc_off + pos / FVM_CHUNK * chk : 0;
			pos += e->page_count << blocks[e->block_id].page_shift;
		}
	}
}

static int fvm_indexhdr_decode_any(const uint8_t *body, uint64_t len,
				   struct fvm_indexhdr *ih, struct fvm_where w);

void fvm_indexhdr_encode(uint8_t out[FVM_INDEXHDR_SIZE], const struct fvm_indexhdr *ih)
{
	fvm_st32(out, ih->block_count);
	fvm_st32(out + 4, ih->meta_count);
	fvm_st32(out + 8, ih->devstate_count);
	fvm_st32(out + 12, 0);
	fvm_st64(out + 16, ih->extent_count);
}

void fvm_extent_encode(uint8_t out[FVM_EXTENT_SIZE], const struct fvm_extent *e)
{
	fvm_st32(out, e->block_id);
	fvm_st32(out + 4, e->flags);
	fvm_st64(out + 8, e->first_page);
	fvm_st64(out + 16, e->page_count);
	fvm_st64(out + 24, e->payload_offset);
	fvm_st64(out + 32, e->crc_offset);
}

uint64_t fvm_index_body_len(const struct fvm_indexhdr *ih)
{
	return fvm_index_frames_at(ih) + (ih->compressed ? 8 + 32 * ih->frame_count : 0) +
	       (ih->auth ? 8 + 16 * (uint64_t)ih->devstate_count + 32 : 0);
}

int fvm_index_check_listed(uint64_t off, uint64_t prev, uint64_t index_offset,
			   uint32_t type, struct fvm_where w)
{
	if (off % 8 || off < FVM_HEADER_SIZE || (prev && off <= prev) ||
	    off > index_offset || index_offset - off < FVM_RECHDR_SIZE) /* R61 */
		return fvm_err(FVM_ECORRUPT, AT ": the index lists a %s at offset 0x%"
			       PRIx64 " (unaligned, out of order or not before the index)",
			       w.file, "INDX record", w.offset, fvm_rec_name(type), off);
	return 0;
}

int fvm_index_check_type(uint32_t listed, uint32_t found, struct fvm_where w)
{
	if (found != listed) /* R61 */
		return fvm_err(FVM_ECORRUPT, AT ": the index lists a %s here, found a %s",
			       w.file, "record", w.offset, fvm_rec_name(listed),
			       fvm_rec_name(found));
	return 0;
}

int fvm_index_check_seen(const uint8_t *list, uint32_t n, uint32_t type,
			 const uint64_t *seen, uint64_t nseen, struct fvm_where w)
{
	if (n != nseen) /* R61 */
		return fvm_err(FVM_ECORRUPT, AT ": lists %u %ss, the file has %" PRIu64,
			       w.file, "INDX record", w.offset, n, fvm_rec_name(type), nseen);
	for (uint32_t i = 0; i < n; i++)
		if (fvm_ld64(list + 8 * (size_t)i) != seen[i]) /* R61 */
			return fvm_err(FVM_ECORRUPT, AT ": %s %u listed at 0x%" PRIx64
				       ", it is at 0x%" PRIx64, w.file, "INDX record", w.offset,
				       fvm_rec_name(type), i, fvm_ld64(list + 8 * (size_t)i),
				       seen[i]);
	return 0;
}

int fvm_indexhdr_decode(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			struct fvm_where w)
{
	ih->compressed = 0;
	ih->auth = 0;
	return fvm_indexhdr_decode_any(body, len, ih, w);
}

int fvm_indexhdr_decode_a(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			  struct fvm_where w)
{
	ih->compressed = 0;
	ih->auth = 1;
	return fvm_indexhdr_decode_any(body, len, ih, w);
}

int fvm_indexhdr_decode_c(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			  struct fvm_where w)
{
	ih->compressed = 1;
	ih->auth = 0;
	return fvm_indexhdr_decode_any(body, len, ih, w);
}

static int fvm_indexhdr_decode_any(const uint8_t *body, uint64_t len,
				   struct fvm_indexhdr *ih, struct fvm_where w)
{
	if (len < FVM_INDEXHDR_SIZE)
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " is too short",
			       w.file, "INDX record", w.offset, len);
	ih->block_count = fvm_ld32(body);
	ih->meta_count = fvm_ld32(body + 4);
	ih->devstate_count = fvm_ld32(body + 8);
	ih->extent_count = fvm_ld64(body + 16);
	if (fvm_ld32(body + 12))
		return fvm_err(FVM_ECORRUPT, AT ": reserved bytes are not zero", w.file,
			       "INDX record", w.offset);
	if (ih->block_count > FVM_MAX_BLOCKS) /* R26 */
		return fvm_err(FVM_ECORRUPT, AT ": block_count %u exceeds 65536", w.file,
			       "INDX record", w.offset, ih->block_count);
	ih->frame_count = 0;
	if (ih->compressed && ih->extent_count <= len / FVM_EXTENT_SIZE &&
	    fvm_index_frames_at(ih) <= len && len - fvm_index_frames_at(ih) >= 8) {
		ih->frame_count = fvm_ld64(body + fvm_index_frames_at(ih));
		if (ih->frame_count > len / 32)
			ih->frame_count = len; /* cannot fit: fails below */
	}
	if (ih->extent_count > len / FVM_EXTENT_SIZE ||
	    (ih->compressed && (fvm_index_frames_at(ih) > len ||
				len - fvm_index_frames_at(ih) < 8)) ||
	    fvm_index_body_len(ih) != len) /* R60 */
		return fvm_err(FVM_ECORRUPT, AT ": counts (%u blocks, %u meta, %u devstate, "
			       "%" PRIu64 " extents) do not fill body_len %" PRIu64, w.file,
			       "INDX record", w.offset, ih->block_count, ih->meta_count,
			       ih->devstate_count, ih->extent_count, len);
	return 0;
}

/*
 * R62..R65 and R69; plain_total != UINT64_MAX: a COMPRESSED file (R65c, the
 * payload offset in the plain payload space, no crc_offset).
 */
static int extent_decode(const uint8_t in[FVM_EXTENT_SIZE], struct fvm_extent *e,
			 const struct fvm_blockdesc *blocks, uint32_t nblocks,
			 unsigned chk, uint64_t index_offset, uint64_t plain_total,
			 uint64_t i, struct fvm_where w)
{
	int rc;

	e->block_id = fvm_ld32(in);
	e->flags = fvm_ld32(in + 4);
	e->first_page = fvm_ld64(in + 8);
	e->page_count = fvm_ld64(in + 16);
	e->payload_offset = fvm_ld64(in + 24);
	e->crc_offset = fvm_ld64(in + 32);
	if (e->block_id >= nblocks) /* R62 */
		return fvm_err(FVM_ECORRUPT, AT ": extent %" PRIu64 ": block_id %u, only %u "
			       "blocks", w.file, "INDX record", w.offset, i, e->block_id, nblocks);
	if (e->flags & ~FVM_RUN_FLAG_DATA) /* R63 */
		return fvm_err(FVM_ECORRUPT, AT ": extent %" PRIu64 ": unknown flags 0x%x",
			       w.file, "INDX record", w.offset, i, e->flags);
	rc = check_pages(e->block_id, e->first_page, e->page_count, &blocks[e->block_id],
			 "INDX record", "extent", i, w); /* R64 */
	if (rc)
		return rc;
	if ((e->flags & FVM_RUN_FLAG_DATA) && plain_total != UINT64_MAX) { /* R65c */
		uint64_t bytes = e->page_count << blocks[e->block_id].page_shift;

		if (e->payload_offset % FVM_PAYLOAD_ALIGN || e->payload_offset > plain_total ||
		    bytes > plain_total - e->payload_offset)
			return fvm_err(FVM_ERANGE, AT ": extent %" PRIu64 ": %" PRIu64 " bytes at "
				       "plain offset 0x%" PRIx64 " are unaligned or outside the "
				       "%" PRIu64 " bytes the frames hold", w.file, "INDX record",
				       w.offset, i, bytes, e->payload_offset, plain_total);
		if (e->crc_offset)
			return fvm_err(FVM_ERANGE, AT ": extent %" PRIu64 ": crc_offset 0x%" PRIx64
				       " in a compressed file", w.file, "INDX record", w.offset, i,
				       e->crc_offset);
	} else if (e->flags & FVM_RUN_FLAG_DATA) { /* R65 */
		uint64_t bytes = e->page_count << blocks[e->block_id].page_shift;
		uint64_t crcs = bytes / FVM_CHUNK * chk;

		if (e->payload_offset % FVM_PAYLOAD_ALIGN || e->payload_offset < FVM_HEADER_SIZE ||
		    e->payload_offset > index_offset || bytes > index_offset - e->payload_offset)
			return fvm_err(FVM_ERANGE, AT ": extent %" PRIu64 ": payload of %" PRIu64
				       " bytes at 0x%" PRIx64 " is unaligned or not before the "
				       "index at 0x%" PRIx64, w.file, "INDX record", w.offset, i,
				       bytes, e->payload_offset, index_offset);
		if (chk ? (e->crc_offset < FVM_HEADER_SIZE || e->crc_offset > index_offset ||
				crcs > index_offset - e->crc_offset)
			     : e->crc_offset != 0)
			return fvm_err(FVM_ERANGE, AT ": extent %" PRIu64 ": crc_offset 0x%"
				       PRIx64 " is outside the file before the index", w.file,
				       "INDX record", w.offset, i, e->crc_offset);
	} else if (e->payload_offset || e->crc_offset) { /* R69 */
		return fvm_err(FVM_ECORRUPT, AT ": extent %" PRIu64 ": zero run with a "
			       "payload or crc offset", w.file, "INDX record", w.offset, i);
	}
	return 0;
}

int fvm_extent_decode(const uint8_t in[FVM_EXTENT_SIZE], struct fvm_extent *e,
		      const struct fvm_blockdesc *blocks, uint32_t nblocks,
		      unsigned chk, uint64_t index_offset, uint64_t i,
		      struct fvm_where w)
{
	return extent_decode(in, e, blocks, nblocks, chk, index_offset, UINT64_MAX, i, w);
}

int fvm_extent_decode_plain(const uint8_t in[FVM_EXTENT_SIZE], struct fvm_extent *e,
			    const struct fvm_blockdesc *blocks, uint32_t nblocks,
			    uint64_t plain_total, uint64_t i, struct fvm_where w)
{
	return extent_decode(in, e, blocks, nblocks, 0, 0, plain_total, i, w);
}

struct span {
	uint64_t key, start, end; /* [start, end) within key's space */
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return 0;
}

/* Sort spans and return the index of the first that overlaps its predecessor, or n. */
static uint64_t first_overlap(struct span *s, uint64_t n)
{
	qsort(s, n, sizeof(*s), span_cmp);
	for (uint64_t i = 1; i < n; i++)
		if (s[i].key == s[i - 1].key && s[i].start < s[i - 1].end)
			return i;
	return n;
}

int fvm_extents_check_overlap(const struct fvm_extent *ext, uint64_t n,
			      const struct fvm_blockdesc *blocks,
			      struct fvm_where w)
{
	struct span *s;
	uint64_t k, i;

	if (n < 2)
		return 0;
	s = malloc(n * sizeof(*s));
	if (!s)
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", w.file, n);
	for (i = 0; i < n; i++)
		s[i] = (struct span){ ext[i].block_id, ext[i].first_page,
				      ext[i].first_page + ext[i].page_count };
	i = first_overlap(s, n);
	if (i < n) { /* R66 */
		int rc = fvm_err(FVM_ECORRUPT, AT ": two extents cover page %" PRIu64
				 " of block %" PRIu64, w.file, "INDX record", w.offset,
				 s[i].start, s[i].key);
		free(s);
		return rc;
	}
	for (i = 0, k = 0; i < n; i++)
		if (ext[i].flags & FVM_RUN_FLAG_DATA)
			s[k++] = (struct span){ 0, ext[i].payload_offset, ext[i].payload_offset +
				(ext[i].page_count << blocks[ext[i].block_id].page_shift) };
	i = first_overlap(s, k);
	if (i < k) { /* R67 */
		int rc = fvm_err(FVM_ECORRUPT, AT ": two extents share payload at file offset "
				 "0x%" PRIx64, w.file, "INDX record", w.offset, s[i].start);
		free(s);
		return rc;
	}
	free(s);
	return 0;
}

/* ------------------------------------------------------------ footer */

void fvm_footer_encode(uint8_t out[FVM_FOOTER_SIZE], const struct fvm_footer *f)
{
	fvm_st64(out, f->index_offset);
	fvm_st64(out + 8, f->index_len);
	fvm_st64(out + 16, f->file_size);
	fvm_st32(out + 24, fvm_crc32c(0, out, 24));
	memcpy(out + 28, FVM_FOOTER_MAGIC, 4);
}

int fvm_footer_decode(const uint8_t in[FVM_FOOTER_SIZE], struct fvm_footer *f,
		      uint64_t file_size, const char *file)
{
	uint64_t off = file_size - FVM_FOOTER_SIZE;
	uint32_t crc;

	if (memcmp(in + 28, FVM_FOOTER_MAGIC, 4) != 0) /* R74 */
		return fvm_err(FVM_ETRUNCATED, "%s: footer at offset 0x%" PRIx64 ": no footer "
			       "magic (file cut short or not finished)", file, off);
	crc = fvm_crc32c(0, in, 24);
	if (crc != fvm_ld32(in + 24)) /* R73 */
		return fvm_err(FVM_ECHECKSUM, "%s: footer at offset 0x%" PRIx64 ": footer_crc "
			       "0x%08x, computed 0x%08x", file, off, fvm_ld32(in + 24), crc);
	f->index_offset = fvm_ld64(in);
	f->index_len = fvm_ld64(in + 8);
	f->file_size = fvm_ld64(in + 16);
	if (f->file_size != file_size) /* R72 */
		return fvm_err(FVM_ETRUNCATED, "%s: footer at offset 0x%" PRIx64 ": file_size "
			       "%" PRIu64 " but the file has %" PRIu64 " bytes", file, off,
			       f->file_size, file_size);
	if (f->index_offset % 8 || f->index_offset < FVM_HEADER_SIZE ||
	    f->index_offset >= off) /* R70 */
		return fvm_err(FVM_ERANGE, "%s: footer at offset 0x%" PRIx64 ": index_offset "
			       "0x%" PRIx64 " outside the file", file, off, f->index_offset);
	if (f->index_len < FVM_RECHDR_SIZE + FVM_INDEXHDR_SIZE ||
	    f->index_len > off - f->index_offset ||
	    f->index_offset + fvm_align(f->index_len, 8) != off) /* R71 */
		return fvm_err(FVM_ERANGE, "%s: footer at offset 0x%" PRIx64 ": index_len "
			       "%" PRIu64 " does not end at the footer", file, off, f->index_len);
	return 0;
}

int fvm_footer_check_index(const struct fvm_footer *f, uint64_t indx_offset,
			   uint64_t body_len, uint64_t footer_offset, const char *file)
{
	if (f->index_offset != indx_offset ||
	    f->index_len != FVM_RECHDR_SIZE + body_len) /* R71 */
		return fvm_err(FVM_ECORRUPT, "%s: footer at offset 0x%" PRIx64 ": index at 0x%"
			       PRIx64 "+%" PRIu64 ", the INDX record is at 0x%" PRIx64 "+%" PRIu64
			       " (body_len %" PRIu64 " disagrees with the footer's index_len)",
			       file, footer_offset, f->index_offset, f->index_len, indx_offset,
			       FVM_RECHDR_SIZE + body_len, body_len);
	return 0;
}
