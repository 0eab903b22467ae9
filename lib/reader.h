/*
 * The reader handle: a checked snapshot model (model.h) plus where its
 * bytes come from. A seekable reader's model is complete when open returns;
 * a stream reader's fills as the walker (walk.h) reads on, in fvm_load()
 * (stream_load.c) or fvm_verify() (verify.c).
 */
#ifndef FVM_READER_H
#define FVM_READER_H

#include <pthread.h>
#include <stdint.h>

#include "codec.h"
#include "model.h"

/* Where a stream reader stands. */
enum fvm_stream_state {
	FVM_STREAM_OPEN = 0,    /* not loaded yet: walk paused at the first SEGM or
				   DEVS, or NULL when nothing followed the records */
	FVM_STREAM_DONE = 1,    /* loaded or verified: listings complete, no more load */
	FVM_STREAM_FAILED = 2   /* an error ended the walk; only listing and free */
};

struct fvm_walk;
struct fvm_uffd;

/* A decoded frame kept for the next read, and what decodes it. */
struct fvm_frame_cache {
	struct fvm_codec_ctx cx;
	uint8_t *stored, *plain;
	uint64_t cached;        /* frame number + 1; 0: none */
};

struct fvm_reader {
	struct fvm_model m;
	char *path;             /* path given to fvm_reader_open, else NULL */
	int fd;
	int own_fd;
	int streamed;
	int stream_state;       /* enum fvm_stream_state, stream mode only */
	struct fvm_walk *walk;  /* stream mode: the walk, paused */
	/*
	 * The two caches below are the only state a seekable reader changes
	 * after open; several threads may share it (fastvm.h), so a call uses
	 * a cache only while it holds lock (trylock: a call that finds it busy
	 * reads through a buffer of its own instead of waiting).
	 */
	pthread_mutex_t lock;
	/* devstate_pread: the last part read whole and checked */
	uint8_t *part_buf;
	size_t part_cap;
	uint32_t part_cached;   /* part number + 1; 0: none */
	/* read_pages of a COMPRESSED file: the last frame decoded */
	struct fvm_frame_cache fc;
	/*
	 * The lazy load of an AUTHENTICATED file (uffd.c), set by fvm_load
	 * and ended by fvm_reader_free (or the next lazy load) through
	 * uffd_end, which uffd.c sets (a layer above this one): its handler
	 * reads through fd with the keys, so it goes before they do.
	 */
	struct fvm_uffd *uffd;
	void (*uffd_end)(struct fvm_uffd *u);
};

/*
 * 0, or FVM_EAUTH with detail when r is AUTHENTICATED and no key was
 * accepted yet: what (the call) may not read its payload or device state.
 */
int fvm_reader_auth_ready(const struct fvm_reader *r, const char *what);

/*
 * A new file description of r's file with open flags (O_RDONLY | flags):
 * through /proc/self/fd, else r's path, checked to be the same file; -1
 * when neither opens it.
 */
int fvm_reader_reopen(const struct fvm_reader *r, int flags);

/* The full output structs of the listing calls (compat.c uses them too). */
void fvm_reader_fill_info(const struct fvm_reader *r, fvm_file_info *info);
int fvm_reader_fill_block(const struct fvm_reader *r, uint32_t i, fvm_block_info *info);
int fvm_reader_fill_run(const struct fvm_reader *r, uint64_t i, fvm_run_info *run);
int fvm_reader_fill_devstate(const struct fvm_reader *r, uint32_t i,
			     fvm_devstate_info *info);

#endif
