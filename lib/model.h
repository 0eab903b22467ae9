/*
 * The checked snapshot model: what a snapshot holds (blocks, metadata,
 * device-state sections and their parts, the live extents of the index),
 * built by the seekable open (reader.c) or by the sequential walker
 * (walk.c), with the rules that span records checked as things are added
 * (R24, R26, R43, R44). Everything in it has been checked against
 * doc/FORMAT.md before any user sees it: a block's pages, an extent's pages
 * and payload are in range. No I/O here.
 */
#ifndef FVM_MODEL_H
#define FVM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "auth.h"
#include "frames.h"

struct fvm_rblock {
	char *name;             /* NUL-terminated */
	uint64_t length, pages;
	uint32_t page_shift;
	uint64_t rec_offset;    /* of its BLCK record */
	uint64_t data_pages, zero_pages, data_runs, zero_runs;
};

struct fvm_rmeta {
	char *key, *value;
	uint64_t rec_offset;
};

/* One DEVS record: a section's part (FORMAT.md 4.3). */
struct fvm_rpart {
	uint64_t rec_offset;
	uint64_t data_offset;   /* of the part's data in the file */
	uint64_t size;          /* bytes of data */
	uint64_t sect_offset;   /* where the part starts in its section */
	uint8_t *body;          /* stream mode, kept: the record body, CRC checked */
	const uint8_t *data;    /* into body */
};

/* A device-state section: one or more consecutive parts. */
struct fvm_rsect {
	char *name;
	uint64_t length;
	uint32_t first, nparts; /* parts[first .. first + nparts) */
	int given;              /* stream: handed to a load callback, not kept */
};

struct fvm_model {
	char *file;             /* name used in error details */
	struct fvm_header hdr;
	int with_crc;           /* PAYLOAD_CRC */
	unsigned chk;           /* check bytes per payload chunk (fvm_chk_bytes) */
	/*
	 * AUTHENTICATED (FORMAT.md 4.6): what open read to check the MAC with
	 * once a key is given (the header, the digests, the index's area),
	 * and the keys after that; until then keys is NULL and payload and
	 * device state are refused.
	 */
	int auth;
	uint8_t auth_header[64], auth_db[32], auth_dm[32], auth_di[32], auth_mac[32];
	uint64_t auth_key_id;
	uint8_t *devs_tags;     /* 16 per DEVS record, in index order */
	struct fvm_auth *keys;
	int compressed;         /* COMPRESSED: hdr.codec, hdr.frame_shift */
	struct fvm_frame *frames; /* COMPRESSED: the index's frame list (5.1) */
	uint64_t nframes;
	uint64_t plain_total;   /* the plain payload space: bytes the frames hold */
	uint64_t stored_total;  /* bytes the frames take in the file */
	uint64_t file_size;     /* 0 for a stream */
	uint64_t index_offset;

	struct fvm_rblock *blocks;
	struct fvm_blockdesc *desc; /* pages and page_shift, for the decoders */
	uint32_t nblocks, blocks_cap;
	uint32_t *name_hash;    /* open addressing: block id + 1, 0 = empty */
	uint32_t hash_cap;

	struct fvm_rmeta *meta;
	uint32_t nmeta;
	size_t meta_cap;

	struct fvm_rpart *parts;
	uint32_t nparts;
	size_t parts_cap;
	struct fvm_rsect *sects;
	uint32_t nsects;
	size_t sects_cap;
	struct fvm_devs_prev devs_prev; /* R43 across DEVS records */

	struct fvm_extent *ext; /* the index's extents, in index order */
	uint64_t next;
	uint64_t *by_block;     /* extent numbers sorted by (block, first_page) */
	int have_index;         /* ext, by_block and counters are valid */
	int rewrites;           /* stream: some page was stored twice */
	uint64_t payload_bytes, data_pages, zero_pages, data_runs, zero_runs;
};

/* Add a decoded block; fails on a duplicate name (R24) or too many (R26). */
int fvm_model_add_block(struct fvm_model *m, const struct fvm_block_rec *b,
			uint64_t rec_offset);
int fvm_model_add_meta(struct fvm_model *m, const struct fvm_meta_rec *r,
		       uint64_t rec_offset);
/*
 * Add a decoded DEVS record as a part: it joins the section the record
 * before it continues (R43), else starts a new one. body: the record body
 * d points into, handed over (stream mode keeps the data: it cannot be read
 * again), or NULL; given: the data went to a callback instead.
 */
int fvm_model_add_part(struct fvm_model *m, const struct fvm_devs_rec *d,
		       uint64_t data_offset, uint64_t rec_offset, uint8_t *body,
		       int given);
/* After the last DEVS record: R44. */
int fvm_model_end_parts(const struct fvm_model *m);
/* Take ownership of ext (malloc'd) as the index; compute counters. */
int fvm_model_set_index(struct fvm_model *m, struct fvm_extent *ext, uint64_t n);
/*
 * The error of a payload chunk that failed its check (R102 tag, or CRC):
 * FVM_EAUTH with keys, else FVM_ECHECKSUM, naming the block, the page and
 * the chunk's file offset, then note (may be ""). The one message of the
 * loader, the lazy loader and read_pages.
 */
int fvm_model_chunk_error(const struct fvm_model *m, uint32_t block_id, uint64_t page,
			  uint64_t file_off, const char *note);
/* Block id by name, or -1. */
int64_t fvm_model_lookup(const struct fvm_model *m, const char *name, size_t len);
void fvm_model_free(struct fvm_model *m);

#endif
