/*
 * Loading: the options of a load as the library uses them, whatever
 * fvm_load_options layout the caller had (load.c, compat.c), and the load
 * of a reader's RAM into a list of mappings: seekable readers through the
 * plan and an executor (load.c), streams through the walker
 * (stream_load.c).
 */
#ifndef FVM_LOAD_H
#define FVM_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "plan.h"
#include "reader.h"

struct fvm_load_cfg {
	uint32_t flags;          /* FVM_LOAD_* */
	int backend;             /* enum fvm_backend */
	int zero_policy;         /* enum fvm_zero_policy */
	fvm_progress_fn progress;
	void *progress_ctx;
	fvm_devstate_fn devstate;
	void *devstate_ctx;
	/* tuning (fastvm/experimental.h); 0 = default */
	unsigned queue_depth;
	uint64_t chunk_bytes;
	unsigned willneed_window;
	int inline_reads;        /* FVM_TUNE_INLINE */
	unsigned threads;        /* compressed files: decoding threads; 0 = CPUs */
};

/* Check flags, backend and zero policy against each other. */
int fvm_load_cfg_check(const struct fvm_load_cfg *c);

/* The load itself; st is the library's full stats struct, zeroed. */
int fvm_load_maps(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		  const struct fvm_load_cfg *c, fvm_load_stats *st);

/* stream_load.c: a stream reader's load, the rest of the stream. */
int fvm_stream_load(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		    const struct fvm_load_cfg *c, fvm_load_stats *st);

#endif
