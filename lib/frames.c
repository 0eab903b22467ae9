/*
 * doc/FORMAT.md 4.5 and 5.1 in code: the frame table of a compressed
 * segment, its layout in the file, and the frame list of the index. Each
 * check cites its rule.
 */
#include <inttypes.h>

#include "error.h"
#include "frames.h"

#define AT "%s: %s at offset 0x%" PRIx64

int fvm_cseg_decode(const uint8_t *body, uint64_t len, unsigned shift,
		    const struct fvm_blockdesc *blocks, uint32_t nblocks,
		    struct fvm_seghdr *sh, struct fvm_entry *entries, uint64_t *plain,
		    struct fvm_where w)
{
	uint64_t want;
	int rc;

	if ((rc = fvm_seghdr_decode(body, len, sh, w))) /* R50, R56 */
		return rc;
	if (len < fvm_cseg_body_len(sh->entry_count, 0))
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " too short for %u "
			       "entries", w.file, "SEGM record", w.offset, len, sh->entry_count);
	rc = fvm_seg_decode_entries(body, sh->entry_count, blocks, nblocks, entries,
				    FVM_MAX_SEG_PAYLOAD, plain, w);
	if (rc)
		return rc;
	if (*plain > FVM_MAX_SEG_PAYLOAD) /* R56 */
		return fvm_err(FVM_ECORRUPT, AT ": DATA entries hold more than 2^32 bytes",
			       w.file, "SEGM record", w.offset);
	want = fvm_cseg_body_len(sh->entry_count, fvm_frame_count(*plain, shift));
	if (len != want) /* R52 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 ", expected %" PRIu64
			       " for %u entries and %" PRIu64 " frames", w.file, "SEGM record",
			       w.offset, len, want, sh->entry_count, fvm_frame_count(*plain, shift));
	if ((*plain == 0) != (sh->payload_len == 0)) /* R51c */
		return fvm_err(FVM_ECORRUPT, AT ": payload_len %" PRIu64 " for %" PRIu64
			       " plain bytes", w.file, "SEGM record", w.offset, sh->payload_len,
			       *plain);
	return 0;
}

uint64_t fvm_cseg_layout(struct fvm_frame *f, uint64_t n, uint64_t payload_off)
{
	uint64_t pos = payload_off;

	for (uint64_t k = 0; k < n; k++) {
		if (fvm_frame_stored(&f[k]))
			pos = fvm_align(pos, FVM_PAYLOAD_ALIGN);
		f[k].file_offset = pos;
		pos += f[k].stored_len;
	}
	return fvm_align(pos - payload_off, FVM_PAYLOAD_ALIGN);
}

int fvm_cseg_frames(const uint8_t *body, uint64_t len, uint64_t rec_off,
		    const struct fvm_seghdr *sh, uint64_t plain, unsigned shift,
		    uint64_t plain_base, struct fvm_frame *out, struct fvm_where w)
{
	uint64_t n = fvm_frame_count(plain, shift);
	const uint8_t *t = body + fvm_cseg_body_len(sh->entry_count, 0);
	uint64_t payload_len;

	for (uint64_t k = 0; k < n; k++, t += FVM_FRAME_DESC_SIZE) {
		struct fvm_frame *f = &out[k];
		uint64_t left = plain - (k << shift);

		f->plain_offset = plain_base + (k << shift);
		f->plain_len = (uint32_t)(left < (1ull << shift) ? left : 1ull << shift);
		f->stored_len = fvm_ld32(t);
		f->crc_stored = fvm_ld32(t + 8);
		f->crc_plain = fvm_ld32(t + 12);
		if (f->stored_len == 0 || f->stored_len > f->plain_len) /* R90 */
			return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": stored_len %u "
				       "outside 1..%u", w.file, "SEGM record", w.offset, k,
				       f->stored_len, f->plain_len);
		if (fvm_ld32(t + 4)) /* R91 */
			return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": reserved bytes "
				       "are not zero", w.file, "SEGM record", w.offset, k);
		if (fvm_frame_stored(f) && f->crc_stored != f->crc_plain) /* R92 */
			return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": stored frame with "
				       "crc_stored 0x%08x != crc_plain 0x%08x", w.file,
				       "SEGM record", w.offset, k, f->crc_stored, f->crc_plain);
	}
	payload_len = n ? fvm_cseg_layout(out, n, fvm_seg_payload_offset(rec_off, len)) : 0;
	if (payload_len != sh->payload_len) /* R51c */
		return fvm_err(FVM_ECORRUPT, AT ": payload_len %" PRIu64 ", the frames need %"
			       PRIu64, w.file, "SEGM record", w.offset, sh->payload_len,
			       payload_len);
	return 0;
}

void fvm_frame_desc_encode(uint8_t out[FVM_FRAME_DESC_SIZE], const struct fvm_frame *f)
{
	fvm_st32(out, f->stored_len);
	fvm_st32(out + 4, 0);
	fvm_st32(out + 8, f->crc_stored);
	fvm_st32(out + 12, f->crc_plain);
}

void fvm_frame_encode(uint8_t out[FVM_FRAME_SIZE], const struct fvm_frame *f)
{
	fvm_st64(out, f->plain_offset);
	fvm_st64(out + 8, f->file_offset);
	fvm_st32(out + 16, f->plain_len);
	fvm_st32(out + 20, f->stored_len);
	fvm_st32(out + 24, f->crc_stored);
	fvm_st32(out + 28, f->crc_plain);
}

int fvm_frame_decode(const uint8_t in[FVM_FRAME_SIZE], struct fvm_frame *f,
		     const struct fvm_frame *prev, unsigned shift, uint64_t index_offset,
		     uint64_t k, struct fvm_where w)
{
	uint64_t plain_at = prev ? prev->plain_offset + prev->plain_len : 0;
	uint64_t file_at = prev ? prev->file_offset + prev->stored_len : FVM_HEADER_SIZE;

	f->plain_offset = fvm_ld64(in);
	f->file_offset = fvm_ld64(in + 8);
	f->plain_len = fvm_ld32(in + 16);
	f->stored_len = fvm_ld32(in + 20);
	f->crc_stored = fvm_ld32(in + 24);
	f->crc_plain = fvm_ld32(in + 28);
	if (f->plain_offset != plain_at) /* R80 */
		return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": plain_offset 0x%" PRIx64
			       ", expected 0x%" PRIx64, w.file, "INDX record", w.offset, k,
			       f->plain_offset, plain_at);
	if (f->plain_len == 0 || f->plain_len % FVM_PAYLOAD_ALIGN ||
	    f->plain_len > (1u << shift)) /* R81 */
		return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": plain_len %u is not a "
			       "multiple of 4096 up to %u", w.file, "INDX record", w.offset, k,
			       f->plain_len, 1u << shift);
	if (f->stored_len == 0 || f->stored_len > f->plain_len) /* R82 */
		return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": stored_len %u outside "
			       "1..%u", w.file, "INDX record", w.offset, k, f->stored_len,
			       f->plain_len);
	if (fvm_frame_stored(f) && (f->file_offset % FVM_PAYLOAD_ALIGN ||
				    f->crc_stored != f->crc_plain)) /* R83, R92 */
		return fvm_err(FVM_ECORRUPT, AT ": frame %" PRIu64 ": stored frame at 0x%"
			       PRIx64 " unaligned or with two CRCs", w.file, "INDX record",
			       w.offset, k, f->file_offset);
	if (f->file_offset < file_at || f->file_offset > index_offset ||
	    f->stored_len > index_offset - f->file_offset) /* R84 */
		return fvm_err(FVM_ERANGE, AT ": frame %" PRIu64 ": %u bytes at file offset 0x%"
			       PRIx64 " overlap the frame before or are not before the index "
			       "at 0x%" PRIx64, w.file, "INDX record", w.offset, k,
			       f->stored_len, f->file_offset, index_offset);
	return 0;
}

void fvm_cseg_extents(const struct fvm_seghdr *sh, const struct fvm_entry *entries,
		      const struct fvm_blockdesc *blocks, uint64_t plain_base,
		      struct fvm_extent *out)
{
	uint64_t pos = plain_base;

	for (uint32_t i = 0; i < sh->entry_count; i++) {
		const struct fvm_entry *e = &entries[i];

		out[i] = (struct fvm_extent){ e->block_id, e->flags, e->first_page,
					      e->page_count, 0, 0 };
		if (e->flags & FVM_RUN_FLAG_DATA) {
			out[i].payload_offset = pos;
			pos += e->page_count << blocks[e->block_id].page_shift;
		}
	}
}

uint64_t fvm_frame_find(const struct fvm_frame *f, uint64_t n, uint64_t off)
{
	uint64_t lo = 0, hi = n;

	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (f[mid].plain_offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}
