/*
 * libfastvm experimental knobs: tuning that is measured, useful for
 * benchmarks, and NOT a stable promise. Fields may change meaning, move or
 * vanish in any release, as zstd's ZSTD_STATIC_LINKING_ONLY API may; code
 * that must keep working across library upgrades leaves
 * fvm_load_options.tuning NULL and gets the measured defaults.
 *
 * The struct still carries its size, so an old caller's smaller struct is
 * read safely (missing fields take their defaults) and a larger one with a
 * non-zero tail unknown to the library is refused.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#ifndef FASTVM_EXPERIMENTAL_H
#define FASTVM_EXPERIMENTAL_H

#include "fastvm/fastvm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum fvm_tuning_flags {
	/*
	 * io_uring: let reads that the page cache can serve complete in the
	 * calling thread. By default every buffered read is handed to
	 * io_uring's kernel workers (IOSQE_ASYNC), so that copies out of the
	 * page cache run on all CPUs at once (1.7x faster warm on 2 cores,
	 * doc/BENCHMARKS.md); this flag keeps the load on one CPU.
	 */
	FVM_TUNE_INLINE = 1u << 0
};

typedef struct fvm_load_tuning {
	uint32_t size;          /* sizeof(fvm_load_tuning) */
	uint32_t flags;         /* FVM_TUNE_* */
	unsigned queue_depth;   /* reads in flight; 0 = default (16) */
	uint64_t chunk_bytes;   /* bytes per read; 0 = default (256 KiB) */
	/*
	 * POSIX_FADV_WILLNEED this many units of queue_depth x chunk_bytes
	 * ahead of the reads (at most 64); 0 = none, the default: on the
	 * devices measured it slowed cold loads (doc/BENCHMARKS.md).
	 */
	unsigned willneed_window;
	/* compressed files: decoding threads, the caller's included; 0 = one
	 * per CPU. queue_depth is then the number of 2 MiB reads in flight
	 * (default 6). Authenticated files: threads that read and check
	 * (0 = one per CPU, at most 8). */
	unsigned threads;
} fvm_load_tuning;

#define FVM_LOAD_TUNING_INIT { sizeof(fvm_load_tuning), 0, 0, 0, 0, 0 }

#ifdef __cplusplus
}
#endif

#endif /* FASTVM_EXPERIMENTAL_H */
