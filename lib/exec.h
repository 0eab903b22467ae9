/*
 * Executors: carry out a load plan (plan.h) with one I/O path. They read
 * each request's bytes into its iovecs, in file order, and call done() as
 * each request completes; they do no bounds checks (the plan owns those)
 * and never return while a read into caller memory is still in flight.
 */
#ifndef FVM_EXEC_H
#define FVM_EXEC_H

#include <stdint.h>

#include "plan.h"

struct fvm_exec {
	int fd;
	const char *file;
	const struct fvm_plan *plan;
	unsigned queue_depth;   /* reads in flight (io_uring) */
	int async;              /* io_uring: IOSQE_ASYNC on every read */
	int lazy;               /* mmap: map without populating */
	uint64_t window;        /* WILLNEED this many bytes ahead of the reads; 0: none */
	uint64_t hinted;        /* WILLNEED given up to this file offset */
	/* After each request completes (any order); non-zero stops the load. */
	int (*done)(struct fvm_exec *x, size_t req);
	void *ctx;
	uint64_t requests;      /* reads submitted, resubmissions included */
	uint64_t bytes;         /* bytes read */
	uint64_t mapped;        /* mmap: bytes mapped over the destination */
	int sys_errno;          /* errno of a failed read (O_DIRECT falls back on EINVAL) */
};

/* Reads with preadv, one request at a time. */
int fvm_exec_pread(struct fvm_exec *x);
/*
 * preadv request q whole (short reads continued, EINTR retried) into its
 * iovecs; fix holds IOV_MAX iovecs of scratch. Counts in x->requests and
 * x->bytes, x->sys_errno on failure; no done() call. Any thread, each with
 * its own x and fix.
 */
int fvm_exec_read_req(struct fvm_exec *x, size_t q, struct iovec *fix);

/*
 * Reads with io_uring. FVM_EUNSUPPORTED when no ring can be set up (ENOSYS,
 * EPERM, ENOMEM, ...): *why then says why, and nothing was read.
 */
int fvm_exec_uring(struct fvm_exec *x, const char **why);

/*
 * Maps the runs MAP_PRIVATE over the destination (exec_mmap.c).
 * FVM_EUNSUPPORTED, with *why, when they cannot be mapped: a destination
 * not 4 KiB-aligned, or flagged shared or hugetlbfs, or mmap refused.
 */
int fvm_exec_mmap(struct fvm_exec *x, const char **why);

/*
 * The compressed executor (exec_frames.c): the frames holding the plan's
 * extents (whose file_off are plain payload offsets, FORMAT.md 5.1) read
 * and decoded into the destination.
 */
struct fvm_fexec {
	int fd;
	const char *file;
	const struct fvm_frame *frames;
	uint64_t nframes;
	unsigned codec, fshift;
	const struct fvm_plan *plan;
	unsigned threads;       /* decoding threads, the caller's included; 0: CPUs */
	unsigned bufs;          /* read buffers (reads in flight); 0: default */
	int no_uring;           /* pread only */
	int check_plain;        /* crc_plain of each frame too (FVM_LOAD_VERIFY) */
	fvm_progress_fn progress; /* stored bytes read of stored_bytes */
	void *progress_ctx;
	uint64_t requests, bytes, stored_bytes;
	unsigned threads_run;   /* threads that ran at once */
	const char *backend;    /* "io_uring" or "pread" */
	const char *why;        /* why not io_uring, or NULL */
};
int fvm_exec_frames(struct fvm_fexec *x);

/* WILLNEED ahead: tell the kernel about the window after file offset pos. */
void fvm_exec_hint(struct fvm_exec *x, uint64_t pos);

#endif
