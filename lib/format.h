/*
 * On-disk structures of doc/FORMAT.md: constants, encoders and checking
 * decoders. Nothing here does I/O; decoders take bytes already read and the
 * file offset they came from, and fail with the rule's code and a detail
 * naming the file, the structure and the offset.
 */
#ifndef FVM_FORMAT_H
#define FVM_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "fastvm/fastvm.h"

#define FVM_MAGIC "FVMSNAP\x1a"
#define FVM_FOOTER_MAGIC "FVME"
#define FVM_VERSION_MAJOR_FILE 1
#define FVM_VERSION_MINOR_FILE 1

#define FVM_HEADER_SIZE 64
#define FVM_RECHDR_SIZE 16
#define FVM_FOOTER_SIZE 32
#define FVM_ENTRY_SIZE 24
#define FVM_EXTENT_SIZE 40
#define FVM_SEGHDR_SIZE 16
#define FVM_INDEXHDR_SIZE 24
#define FVM_PAYLOAD_ALIGN 4096u
#define FVM_CHUNK 4096u /* payload bytes per chunk CRC */

#define FVM_TAG(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define FVM_REC_BLCK FVM_TAG('B', 'L', 'C', 'K')
#define FVM_REC_META FVM_TAG('M', 'E', 'T', 'A')
#define FVM_REC_DEVS FVM_TAG('D', 'E', 'V', 'S')
#define FVM_REC_SEGM FVM_TAG('S', 'E', 'G', 'M')
#define FVM_REC_INDX FVM_TAG('I', 'N', 'D', 'X')

#define FVM_INCOMPAT_PAYLOAD_CRC UINT64_C(1)
#define FVM_INCOMPAT_COMPRESSED UINT64_C(2) /* frames (4.5, 5.1; frames.h) */
#define FVM_INCOMPAT_AUTH UINT64_C(4) /* AUTHENTICATED (4.6, 5.2; auth.h) */
#define FVM_INCOMPAT_KNOWN (FVM_INCOMPAT_PAYLOAD_CRC | FVM_INCOMPAT_COMPRESSED | FVM_INCOMPAT_AUTH)
#define FVM_VERSION_MINOR_COMPRESSED 2
#define FVM_VERSION_MINOR_AUTH 3
/* check bytes per payload chunk in a SEGM record: a CRC32C, or a tag */
#define FVM_CHK_CRC 4u
#define FVM_CHK_TAG 16u
#define FVM_MIN_FRAME_SHIFT 16
#define FVM_MAX_FRAME_SHIFT 20

#define FVM_RUN_FLAG_DATA 1u

#define FVM_MIN_PAGE_SHIFT 12
#define FVM_MAX_PAGE_SHIFT 30
#define FVM_MAX_BLOCK_LEN (1ull << 48)
#define FVM_MAX_BLOCKS 65536u
#define FVM_MAX_ENTRIES 65536u
#define FVM_MAX_SEG_PAYLOAD (1ull << 32)
#define FVM_MAX_BODY_META (1ull << 24)
#define FVM_MAX_BODY_DEVS (1ull << 30)
#define FVM_MAX_BODY_SEGM (1ull << 26)

static inline uint64_t fvm_align(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Little-endian loads and stores. */
static inline uint16_t fvm_ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t fvm_ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t fvm_ld64(const uint8_t *p)
{
	return (uint64_t)fvm_ld32(p) | (uint64_t)fvm_ld32(p + 4) << 32;
}
static inline void fvm_st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void fvm_st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void fvm_st64(uint8_t *p, uint64_t v)
{
	fvm_st32(p, (uint32_t)v);
	fvm_st32(p + 4, (uint32_t)(v >> 32));
}

/* Where a decoder's bytes came from, for error details. */
struct fvm_where {
	const char *file;  /* file name, never NULL */
	uint64_t offset;   /* file offset of the structure */
};

/* ---- file header (FORMAT.md 3) */
struct fvm_header {
	uint16_t major, minor;
	uint64_t incompat, compat;
	/* COMPRESSED only (zero otherwise): codec.h ids, level, log2 frame size */
	uint8_t codec, level, frame_shift;
	uint8_t salt[16];       /* AUTHENTICATED only (zero otherwise) */
	uint8_t tag_alg;        /* AUTHENTICATED only: FVM_TAG_ALG_GMAC (R9b); else zero */
};
/* tag_alg (FORMAT.md 3, 4.6): GMAC-AES-256 tags, keyed BLAKE2b-256 keys and MAC */
#define FVM_TAG_ALG_GMAC 1u
/* Check bytes per chunk a file with these incompatible features has: 0, 4, 16. */
static inline unsigned fvm_chk_bytes(uint64_t incompat)
{
	return incompat & FVM_INCOMPAT_AUTH ? FVM_CHK_TAG
	       : incompat & FVM_INCOMPAT_PAYLOAD_CRC ? FVM_CHK_CRC : 0;
}
void fvm_header_encode(uint8_t out[FVM_HEADER_SIZE], const struct fvm_header *h);
int fvm_header_decode(const uint8_t in[FVM_HEADER_SIZE], struct fvm_header *h,
		      const char *file);

/* ---- record header (FORMAT.md 4) */
struct fvm_rechdr {
	uint32_t type;
	uint32_t crc;
	uint64_t body_len;
};
/* Encode a record header whose crc covers the given body. */
void fvm_rechdr_encode(uint8_t out[FVM_RECHDR_SIZE], uint32_t type,
		       const void *body, uint64_t body_len);
/* The same for a body made of two parts, a then b. */
void fvm_rechdr_encode2(uint8_t out[FVM_RECHDR_SIZE], uint32_t type,
			const void *a, uint64_t a_len, const void *b, uint64_t b_len);
/*
 * Decode and check R10, R12, R13. limit: offset where the record's body must
 * end at the latest (UINT64_MAX when unknown, e.g. a pipe). For INDX the
 * caller checks the limit against the file size.
 */
int fvm_rechdr_decode(const uint8_t in[FVM_RECHDR_SIZE], struct fvm_rechdr *rh,
		      uint64_t limit, struct fvm_where w);
/* R11: the record's crc over its header and body. */
int fvm_rechdr_check_crc(const struct fvm_rechdr *rh, const void *body,
			 struct fvm_where w);
/*
 * R11 computed piecewise, for bodies read through a bounded buffer: begin
 * gives the CRC of the header's covered bytes (0..3, 8..15), continue it
 * with fvm_crc32c() over the body, and end compares.
 */
uint32_t fvm_rec_crc_begin(const struct fvm_rechdr *rh);
int fvm_rec_crc_end(const struct fvm_rechdr *rh, uint32_t crc, struct fvm_where w);
const char *fvm_rec_name(uint32_t type);
/* Offset of the next record after a record at off with body_len (no payload). */
static inline uint64_t fvm_rec_next(uint64_t off, uint64_t body_len)
{
	return fvm_align(off + FVM_RECHDR_SIZE + body_len, 8);
}

/* ---- BLCK (4.1) */
struct fvm_block_rec {
	uint32_t id;
	uint32_t page_shift;
	uint64_t length;
	uint8_t name_len;
	char name[FVM_MAX_NAME + 1]; /* NUL-terminated copy */
};
/* Body into out (at least 17 + 255 bytes); returns body length. */
size_t fvm_block_encode(uint8_t *out, const struct fvm_block_rec *b);
/* R20..R25; expect_id is the number of blocks seen so far. */
int fvm_block_decode(const uint8_t *body, uint64_t len, uint32_t expect_id,
		     struct fvm_block_rec *b, struct fvm_where w);

/* ---- META (4.2): key/value point into body */
struct fvm_meta_rec {
	const char *key; size_t key_len;
	const char *value; size_t value_len;
};
size_t fvm_meta_size(size_t key_len, size_t value_len);
void fvm_meta_encode(uint8_t *out, const struct fvm_meta_rec *m);
int fvm_meta_decode(const uint8_t *body, uint64_t len, struct fvm_meta_rec *m,
		    struct fvm_where w);

/* ---- DEVS (4.3): name/data point into body */
#define FVM_DEVS_CONTINUES 1u /* the next DEVS record continues this section */
#define FVM_DEVS_FLAGS_KNOWN FVM_DEVS_CONTINUES
struct fvm_devs_rec {
	const char *name; size_t name_len;
	const uint8_t *data; uint64_t data_len;
	uint8_t flags;
};
#define FVM_DEVS_FIXED 8
#define FVM_DEVS_HEAD (FVM_DEVS_FIXED + FVM_MAX_NAME) /* fixed part and longest name */
/* Encode only the fixed part and the name (the data follows them). */
size_t fvm_devs_encode_head(uint8_t *out, const char *name, size_t name_len,
			    uint8_t flags);
/* R40, R41, R42. */
int fvm_devs_decode(const uint8_t *body, uint64_t len, struct fvm_devs_rec *d,
		    struct fvm_where w);
/* The DEVS record before the current one, for R43/R44 across records. */
struct fvm_devs_prev {
	int continues;
	size_t name_len;
	char name[FVM_MAX_NAME];
	uint64_t rec_offset;
};
/* R43: a record after one with CONTINUES is the same section. */
int fvm_devs_follows(const struct fvm_devs_prev *prev, const struct fvm_devs_rec *d,
		     struct fvm_where w);
void fvm_devs_prev_set(struct fvm_devs_prev *prev, const struct fvm_devs_rec *d,
		       uint64_t rec_offset);
/* R44: the last DEVS record of a file does not continue. */
int fvm_devs_check_end(const struct fvm_devs_prev *prev, const char *file);

/* ---- SEGM (4.4) */
struct fvm_seghdr {
	uint32_t entry_count;
	uint64_t payload_len;
};
struct fvm_entry {
	uint32_t block_id;
	uint32_t flags;
	uint64_t first_page;
	uint64_t page_count;
};
void fvm_seghdr_encode(uint8_t out[FVM_SEGHDR_SIZE], const struct fvm_seghdr *s);
void fvm_entry_encode(uint8_t out[FVM_ENTRY_SIZE], const struct fvm_entry *e);
/* Body size of a segment. */
uint64_t fvm_seg_body_len(uint32_t entries, uint64_t payload_len, unsigned chk);

/* What decoders need to know of the declared blocks. */
struct fvm_blockdesc {
	uint64_t pages;
	uint32_t page_shift;
};
/*
 * Check a whole SEGM body: R50..R55 against the nblocks declared blocks and
 * R52 for the body length. Entries are decoded into entries[] (entry_count
 * of them, caller-sized by fvm_seg_entry_count()).
 */
int fvm_seg_decode(const uint8_t *body, uint64_t len, unsigned chk,
		   const struct fvm_blockdesc *blocks, uint32_t nblocks,
		   struct fvm_seghdr *sh, struct fvm_entry *entries,
		   struct fvm_where w);
/* The 16-byte segment header: R50, its reserved field, R56. */
int fvm_seghdr_decode(const uint8_t *body, uint64_t len, struct fvm_seghdr *sh,
		      struct fvm_where w);
/*
 * R53..R55 for the entry_count entries of a SEGM body, decoded into
 * entries[]; *data_bytes receives the bytes their DATA entries hold (it
 * stops counting past limit, and the entry loop with it).
 */
int fvm_seg_decode_entries(const uint8_t *body, uint32_t entry_count,
			   const struct fvm_blockdesc *blocks, uint32_t nblocks,
			   struct fvm_entry *entries, uint64_t limit, uint64_t *data_bytes,
			   struct fvm_where w);
/* Entry count claimed by a SEGM body (0 if too short): to size entries[]. */
uint32_t fvm_seg_entry_count(const uint8_t *body, uint64_t len);
/* Payload offset of a segment whose record starts at off. */
static inline uint64_t fvm_seg_payload_offset(uint64_t off, uint64_t body_len)
{
	return fvm_align(off + FVM_RECHDR_SIZE + body_len, FVM_PAYLOAD_ALIGN);
}
struct fvm_extent;
/*
 * FORMAT.md 4.4/5: the extents a segment's entries describe. The segment's
 * record starts at rec_off; DATA entries' payload lies back to back from
 * the payload offset on, their chunk CRCs (chk bytes each: fvm_chk_bytes)
 * back to back after the entries. out receives one extent per entry.
 * Writer, walker and verify all use it.
 */
void fvm_seg_extents(uint64_t rec_off, const struct fvm_seghdr *sh,
		     const struct fvm_entry *entries, unsigned chk,
		     const struct fvm_blockdesc *blocks, struct fvm_extent *out);

/* ---- INDX (5) */
struct fvm_indexhdr {
	uint32_t block_count, meta_count, devstate_count;
	uint64_t extent_count;
	/* COMPRESSED (5.1): fvm_indexhdr_decode_c reads frame_count from after
	 * the extents */
	int compressed;
	uint64_t frame_count;
	int auth;               /* AUTHENTICATED (5.2): fvm_indexhdr_decode_a */
};
/* Offset of the authentication area (5.2) in an AUTHENTICATED index body. */
static inline uint64_t fvm_index_auth_at(const struct fvm_indexhdr *ih)
{
	return FVM_INDEXHDR_SIZE +
	       8 * ((uint64_t)ih->block_count + ih->meta_count + ih->devstate_count) +
	       40 * ih->extent_count;
}
/* Offset of the frame list's count in a COMPRESSED index body. */
static inline uint64_t fvm_index_frames_at(const struct fvm_indexhdr *ih)
{
	return FVM_INDEXHDR_SIZE +
	       8 * ((uint64_t)ih->block_count + ih->meta_count + ih->devstate_count) +
	       40 * ih->extent_count;
}
struct fvm_extent {
	uint32_t block_id;
	uint32_t flags;
	uint64_t first_page;
	uint64_t page_count;
	uint64_t payload_offset;
	uint64_t crc_offset;
};
void fvm_indexhdr_encode(uint8_t out[FVM_INDEXHDR_SIZE], const struct fvm_indexhdr *ih);
void fvm_extent_encode(uint8_t out[FVM_EXTENT_SIZE], const struct fvm_extent *e);
uint64_t fvm_index_body_len(const struct fvm_indexhdr *ih);
/*
 * R61 for one listed record offset off (prev: the one listed before it of
 * the same type, 0 for the first): 8-aligned, after the file header, in
 * increasing order, with room for a record header before the index at
 * index_offset. w: the INDX record.
 */
int fvm_index_check_listed(uint64_t off, uint64_t prev, uint64_t index_offset,
			   uint32_t type, struct fvm_where w);
/* R61: the record found at a listed offset (w) has the listed type. */
int fvm_index_check_type(uint32_t listed, uint32_t found, struct fvm_where w);
/*
 * R61 as a sequential reader sees it: the n offsets of type listed at list
 * are exactly the records of that type it met, seen[0..nseen).
 */
int fvm_index_check_seen(const uint8_t *list, uint32_t n, uint32_t type,
			 const uint64_t *seen, uint64_t nseen, struct fvm_where w);
/* R60: header and exact body length (_c: of a COMPRESSED file's index). */
int fvm_indexhdr_decode(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			struct fvm_where w);
int fvm_indexhdr_decode_c(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			  struct fvm_where w);
int fvm_indexhdr_decode_a(const uint8_t *body, uint64_t len, struct fvm_indexhdr *ih,
			  struct fvm_where w);
/*
 * R62..R65 for one extent: against blocks, with payload and CRCs required
 * to end at or before index_offset.
 */
int fvm_extent_decode(const uint8_t in[FVM_EXTENT_SIZE], struct fvm_extent *e,
		      const struct fvm_blockdesc *blocks, uint32_t nblocks,
		      unsigned chk, uint64_t index_offset, uint64_t i,
		      struct fvm_where w);
/*
 * The same for a COMPRESSED file (5.1): a DATA extent's payload_offset is in
 * the plain payload space of plain_total bytes (R65c), crc_offset is 0.
 */
int fvm_extent_decode_plain(const uint8_t in[FVM_EXTENT_SIZE], struct fvm_extent *e,
			    const struct fvm_blockdesc *blocks, uint32_t nblocks,
			    uint64_t plain_total, uint64_t i, struct fvm_where w);
/*
 * R66, R67 over all extents (sorts a scratch copy): no page twice, no
 * payload byte twice.
 */
int fvm_extents_check_overlap(const struct fvm_extent *ext, uint64_t n,
			      const struct fvm_blockdesc *blocks,
			      struct fvm_where w);

/* ---- footer (6) */
struct fvm_footer {
	uint64_t index_offset;
	uint64_t index_len;
	uint64_t file_size;
};
void fvm_footer_encode(uint8_t out[FVM_FOOTER_SIZE], const struct fvm_footer *f);
/* R70..R74 against the real file size. */
int fvm_footer_decode(const uint8_t in[FVM_FOOTER_SIZE], struct fvm_footer *f,
		      uint64_t file_size, const char *file);
/*
 * R71 against the INDX record itself: the footer locates the record found at
 * indx_offset with body_len, exactly. footer_offset names the footer.
 */
int fvm_footer_check_index(const struct fvm_footer *f, uint64_t indx_offset,
			   uint64_t body_len, uint64_t footer_offset, const char *file);

#endif
