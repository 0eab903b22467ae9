/*
 * Compressed payload in the file (FORMAT.md 4.5 and 5.1): the frame table
 * of a SEGM record, the frame list of the index, the layout of a segment's
 * frames and the extents of a compressed segment. Like format.h: checking
 * decoders and encoders, no I/O, no codec (codec.h does the bytes).
 */
#ifndef FVM_FRAMES_H
#define FVM_FRAMES_H
#include <stdint.h>
#include "format.h"

#define FVM_FRAME_DESC_SIZE 16  /* in a SEGM body */
#define FVM_FRAME_SIZE 32       /* in the index */

struct fvm_frame {
	uint64_t plain_offset;  /* in the plain payload space */
	uint64_t file_offset;   /* of its stored bytes */
	uint32_t plain_len, stored_len; /* stored_len == plain_len: stored */
	uint32_t crc_stored, crc_plain;
};

static inline int fvm_frame_stored(const struct fvm_frame *f)
{
	return f->stored_len == f->plain_len;
}

/* Frames of a segment whose plain payload is plain bytes (4.5). */
static inline uint64_t fvm_frame_count(uint64_t plain, unsigned shift)
{
	return (plain + (1ull << shift) - 1) >> shift;
}

static inline uint64_t fvm_cseg_body_len(uint32_t entries, uint64_t frames)
{
	return FVM_SEGHDR_SIZE + (uint64_t)entries * FVM_ENTRY_SIZE + frames * FVM_FRAME_DESC_SIZE;
}

/* The largest SEGM body a COMPRESSED file can have for n entries. */
static inline uint64_t fvm_cseg_body_max(uint32_t entries, unsigned shift)
{
	return fvm_cseg_body_len(entries, fvm_frame_count(FVM_MAX_SEG_PAYLOAD, shift));
}

/*
 * A COMPRESSED SEGM body: R50, R53..R56 (the plain payload at most 2^32
 * bytes), R52 with the frame table; *plain receives the plain payload.
 */
int fvm_cseg_decode(const uint8_t *body, uint64_t len, unsigned shift,
		    const struct fvm_blockdesc *blocks, uint32_t nblocks,
		    struct fvm_seghdr *sh, struct fvm_entry *entries, uint64_t *plain,
		    struct fvm_where w);

/*
 * The frames of a decoded COMPRESSED SEGM body whose record starts at
 * rec_off: R90..R92 for each table entry, their file offsets by the layout
 * of 4.5 and R51c. out[] receives fvm_frame_count(plain, shift) frames,
 * plain offsets from plain_base on.
 */
int fvm_cseg_frames(const uint8_t *body, uint64_t len, uint64_t rec_off,
		    const struct fvm_seghdr *sh, uint64_t plain, unsigned shift,
		    uint64_t plain_base, struct fvm_frame *out, struct fvm_where w);

/*
 * The writer's side of the layout: file offset of each frame (stored ones
 * 4096-aligned) from payload_off on; returns payload_len (R51c).
 */
uint64_t fvm_cseg_layout(struct fvm_frame *f, uint64_t n, uint64_t payload_off);

void fvm_frame_desc_encode(uint8_t out[FVM_FRAME_DESC_SIZE], const struct fvm_frame *f);
void fvm_frame_encode(uint8_t out[FVM_FRAME_SIZE], const struct fvm_frame *f);

/*
 * Index frame k (5.1): R80..R84 against the frame before it (NULL for the
 * first) and the index at index_offset.
 */
int fvm_frame_decode(const uint8_t in[FVM_FRAME_SIZE], struct fvm_frame *f,
		     const struct fvm_frame *prev, unsigned shift, uint64_t index_offset,
		     uint64_t k, struct fvm_where w);

/*
 * The extents of a COMPRESSED segment's entries: DATA payload offsets in
 * the plain payload space from plain_base on, no crc_offset.
 */
void fvm_cseg_extents(const struct fvm_seghdr *sh, const struct fvm_entry *entries,
		      const struct fvm_blockdesc *blocks, uint64_t plain_base,
		      struct fvm_extent *out);

/* Index of the frame holding plain offset off (frames tile the space). */
uint64_t fvm_frame_find(const struct fvm_frame *f, uint64_t n, uint64_t off);
#endif
