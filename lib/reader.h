/*
 * Reader internals shared by reader.c (open, listing, piecewise reads),
 * walk.c (the sequential record walker behind stream mode and verify),
 * load.c (fvm_load) and the plan and executors. Everything in struct
 * fvm_reader has been checked against doc/FORMAT.md before anyone else
 * sees it: a block's pages, an extent's pages and payload are in range.
 */
#ifndef FVM_READER_H
#define FVM_READER_H

#include <stddef.h>
#include <stdint.h>

#include "extents.h"
#include "format.h"

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

struct fvm_rdevs {
	char *name;
	uint64_t size;
	uint64_t data_offset;   /* of the section's data in the file */
	uint64_t rec_offset;
	const uint8_t *data;    /* stream mode only: the data, CRC checked */
	uint8_t *body;          /* what data points into; owned */
};

/* Where a stream reader stands. */
enum fvm_stream_state {
	FVM_STREAM_OPEN = 0,    /* not loaded yet: walk paused at the first SEGM,
				   or NULL when the stream had no segment */
	FVM_STREAM_DONE = 1,    /* loaded or verified: listings work, no more load */
	FVM_STREAM_FAILED = 2   /* an error ended the walk; only listing and free */
};

struct fvm_walk;

struct fvm_reader {
	char *file;             /* name used in error details */
	char *path;             /* path given to fvm_reader_open, else NULL */
	int fd;
	int own_fd;
	int streamed;
	int stream_state;       /* enum fvm_stream_state, stream mode only */
	struct fvm_header hdr;
	int with_crc;           /* PAYLOAD_CRC */
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
	struct fvm_rdevs *devs;
	uint32_t ndevs;
	size_t devs_cap;

	struct fvm_extent *ext; /* the index's extents, in index order */
	uint64_t next;
	uint64_t *by_block;     /* extent numbers sorted by (block, first_page) */
	int have_index;         /* ext, by_block and counters are valid */
	int rewrites;           /* stream: some page was stored twice */
	uint64_t payload_bytes, data_pages, zero_pages, data_runs, zero_runs;

	struct fvm_walk *walk;  /* stream mode: the walk paused at a SEGM */
};

/* ---- reader.c */
/* Add a decoded block; fails on a duplicate name (R24). */
int fvm_reader_add_block(struct fvm_reader *r, const struct fvm_block_rec *b,
			 uint64_t rec_offset);
int fvm_reader_add_meta(struct fvm_reader *r, const struct fvm_meta_rec *m,
			uint64_t rec_offset);
/*
 * body: the record body d points into, handed over to the reader (stream
 * mode keeps the data: it cannot be read again), or NULL.
 */
int fvm_reader_add_devs(struct fvm_reader *r, const struct fvm_devs_rec *d,
			uint64_t data_offset, uint64_t rec_offset, uint8_t *body);
/* Take ownership of ext (malloc'd) as the index; compute counters. */
int fvm_reader_set_index(struct fvm_reader *r, struct fvm_extent *ext, uint64_t n);
/* Block id by name, or -1. */
int64_t fvm_reader_lookup(const struct fvm_reader *r, const char *name, size_t len);

/*
 * A byte source read front to back: pread at pos when seekable, else read()
 * (pos then only counts bytes, for details and the footer's file_size).
 */
struct fvm_src {
	int fd;
	int seekable;
	uint64_t pos;
	const char *file;
};
/* Read exactly n bytes at s->pos and advance; what names the structure. */
int fvm_src_read(struct fvm_src *s, void *buf, size_t n, const char *what);
/* pread exactly n bytes at off. */
int fvm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *file,
		   const char *what);
/*
 * Body of the DEVS record at rec_off (its header rh already decoded; s at
 * the body): streamed through a bounded buffer, since a section may be
 * 1 GiB, CRC checked (R11) and then decoded; head keeps the first bytes so
 * d->name points into it.
 */
#define FVM_DEVS_HEAD (FVM_DEVS_FIXED + FVM_MAX_NAME)
int fvm_devs_check(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		   uint8_t head[FVM_DEVS_HEAD], struct fvm_devs_rec *d);

/* ---- walk.c */
/* Stream mode: read the header and every record up to the first SEGM. */
int fvm_stream_open(struct fvm_reader *r);
void fvm_walk_free(struct fvm_walk *w);
/* Stream mode fvm_load: the rest of the stream, straight into the maps. */
int fvm_stream_load(struct fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
		    const fvm_load_options *o, fvm_load_stats *st);

/* ---- load.c: zero policy shared by the seekable and stream loaders */
struct fvm_plan_zero;
int fvm_apply_zero(const struct fvm_plan_zero *z, size_t n, int policy);

#endif
