/*
 * libfastvm: fast VM snapshots.
 *
 * Public API. A snapshot file (doc/FORMAT.md) holds RAM blocks in a large-page
 * layout (runs of non-zero pages after one entry, zero pages with no payload),
 * opaque device-state sections and key/value metadata.
 *
 *  - fvm_writer: build a snapshot from host memory or from pages delivered one
 *    by one, to a path (atomically) or to a caller's fd or pipe.
 *  - fvm_reader: open a snapshot, list what it holds, load its RAM straight
 *    into caller memory, verify every checksum.
 *
 * Every function that can fail returns 0 or a negative FVM_E* code; the
 * calling thread's fvm_error_detail() then says what and where. The library
 * never prints and never exits.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#ifndef FASTVM_FASTVM_H
#define FASTVM_FASTVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define FVM_API __attribute__((visibility("default")))
#else
#define FVM_API
#endif

#define FVM_VERSION_MAJOR 0
#define FVM_VERSION_MINOR 1
#define FVM_VERSION_PATCH 0
#define FVM_VERSION_NUMBER \
	(FVM_VERSION_MAJOR * 10000 + FVM_VERSION_MINOR * 100 + FVM_VERSION_PATCH)

/* Runtime version of the library, as FVM_VERSION_NUMBER and as "0.1.0". */
FVM_API unsigned fvm_version(void);
FVM_API const char *fvm_version_string(void);

/* ---------------------------------------------------------------- errors */

typedef enum fvm_error {
	FVM_OK = 0,
	FVM_EINVAL = -1,       /* bad argument from the caller */
	FVM_ENOMEM = -2,       /* allocation failed */
	FVM_EIO = -3,          /* system call failed (errno in the detail) */
	FVM_EMAGIC = -4,       /* not a libfastvm snapshot */
	FVM_EVERSION = -5,     /* format version this library does not read */
	FVM_EFEATURE = -6,     /* unknown incompatible feature bit */
	FVM_ETRUNCATED = -7,   /* file ends inside a structure */
	FVM_ECHECKSUM = -8,    /* a CRC32C does not match */
	FVM_ECORRUPT = -9,     /* a structure breaks a rule of FORMAT.md */
	FVM_ERANGE = -10,      /* offset/length outside its container */
	FVM_EMAPPING = -11,    /* caller's memory map does not fit the file */
	FVM_ECANCELED = -12,   /* progress callback asked to stop */
	FVM_ESTATE = -13,      /* call not allowed in this state */
	FVM_ENOTFOUND = -14,   /* no such block, section or key */
	FVM_EUNSUPPORTED = -15 /* valid request this system cannot do */
} fvm_error;

/* Fixed text for a code ("checksum mismatch"); never NULL. */
FVM_API const char *fvm_strerror(int code);

/*
 * Detail of the last error raised on this thread, e.g.
 * "snap.fvm: segment at offset 0x1000: entry 3: pages 510+4 past end of
 * block pc.ram (512 pages)". Empty string when there is none. Valid until
 * the next libfastvm call on this thread.
 */
FVM_API const char *fvm_error_detail(void);

/* ---------------------------------------------------------------- common */

/*
 * Progress: called with bytes done and total bytes of the operation.
 * Return non-zero to cancel; the operation then fails with FVM_ECANCELED.
 */
typedef int (*fvm_progress_fn)(void *ctx, uint64_t done, uint64_t total);

#define FVM_MAX_NAME 255 /* block and section names, like QEMU's idstr */

/* ---------------------------------------------------------------- writer */

typedef struct fvm_writer fvm_writer;

enum fvm_write_flags {
	FVM_WRITE_NO_CRC = 1u << 0, /* omit per-chunk payload CRCs */
	FVM_WRITE_NO_FSYNC = 1u << 1 /* path writer: skip fsync (tests, scratch) */
};

typedef struct fvm_write_options {
	uint32_t size;          /* sizeof(fvm_write_options), set by INIT */
	uint32_t flags;         /* FVM_WRITE_* */
	uint64_t max_run_bytes; /* split data runs longer than this; 0 = only
	                           at segment limits */
	uint64_t segment_bytes; /* max payload bytes per segment; 0 = default
	                           (16 MiB). Bounds the streaming buffer. */
	fvm_progress_fn progress; /* called as blocks are written */
	void *progress_ctx;
} fvm_write_options;

#define FVM_WRITE_OPTIONS_INIT { sizeof(fvm_write_options), 0, 0, 0, NULL, NULL }

/*
 * Create a writer. open_path writes to a temporary file beside path and
 * renames it over path in fvm_writer_finish() after fsync; until then an
 * existing file at path is untouched. open_fd writes sequentially to fd
 * (file, pipe or socket; never seeks, never closes it). opts may be NULL.
 */
FVM_API int fvm_writer_open_path(fvm_writer **out, const char *path,
				 const fvm_write_options *opts);
FVM_API int fvm_writer_open_fd(fvm_writer **out, int fd,
			       const fvm_write_options *opts);

/* Key/value metadata ("creator", "source", "machine", "created", ...). */
FVM_API int fvm_writer_add_meta(fvm_writer *w, const char *key,
				const char *value);

/*
 * Declare a RAM block: unique name of 1..255 bytes, length a non-zero
 * multiple of page_size, page_size a power of two from 4 KiB to 1 GiB.
 * *block_id receives the id used by the calls below.
 */
FVM_API int fvm_writer_add_block(fvm_writer *w, const char *name,
				 uint64_t length, uint64_t page_size,
				 uint32_t *block_id);

/*
 * Write a whole block from host memory (length bytes at mem, as declared).
 * Zero pages are found word-wise and cost no payload; non-zero pages are
 * written straight from mem, without a copy.
 */
FVM_API int fvm_writer_write_block(fvm_writer *w, uint32_t block_id,
				   const void *mem);

/*
 * Streaming: deliver count pages of a block starting at first_page, in any
 * order. Zero pages among them are detected. Pages delivered again replace
 * the earlier copy (the file then keeps both; the index points at the last).
 * put_zero records count zero pages without data.
 */
FVM_API int fvm_writer_put_pages(fvm_writer *w, uint32_t block_id,
				 uint64_t first_page, uint64_t count,
				 const void *data);
FVM_API int fvm_writer_put_zero(fvm_writer *w, uint32_t block_id,
				uint64_t first_page, uint64_t count);

/* An opaque device-state section (kept and returned byte for byte, in order). */
FVM_API int fvm_writer_add_devstate(fvm_writer *w, const char *name,
				    const void *data, size_t len);

/* Write index and footer; for open_path: fsync, rename, fsync directory. */
FVM_API int fvm_writer_finish(fvm_writer *w);

/* Free; an unfinished path writer removes its temporary file. NULL is ok. */
FVM_API void fvm_writer_free(fvm_writer *w);

/* ---------------------------------------------------------------- reader */

typedef struct fvm_reader fvm_reader;

typedef struct fvm_file_info {
	uint16_t version_major, version_minor;
	uint64_t incompat_features, compat_features;
	uint64_t file_size;      /* 0 when read as a stream */
	uint64_t payload_bytes;  /* bytes of live page data */
	uint64_t data_pages, zero_pages;
	uint64_t data_runs, zero_runs; /* extents in the index */
	uint32_t block_count, devstate_count, meta_count;
	int streamed;            /* opened with fvm_reader_open_stream */
} fvm_file_info;

typedef struct fvm_block_info {
	const char *name;        /* NUL-terminated; owned by the reader */
	uint64_t length;
	uint64_t page_size;
	uint64_t data_pages, zero_pages; /* absent pages are neither */
	uint64_t data_runs, zero_runs;
} fvm_block_info;

enum fvm_run_kind { FVM_RUN_ZERO = 0, FVM_RUN_DATA = 1 };

typedef struct fvm_run_info {
	uint32_t block_id;
	int kind;                /* enum fvm_run_kind */
	uint64_t first_page;
	uint64_t page_count;
	uint64_t file_offset;    /* of the payload; 0 for zero runs */
} fvm_run_info;

typedef struct fvm_devstate_info {
	const char *name;
	uint64_t size;
	uint64_t file_offset;    /* of the section's data */
} fvm_devstate_info;

/*
 * Open a seekable snapshot: header, footer and index are read and every
 * structural rule is checked before this returns, so a successful open
 * means every run lies inside its block and inside the file.
 */
FVM_API int fvm_reader_open(fvm_reader **out, const char *path);

/*
 * Open from an fd. Seekable fds are read like fvm_reader_open (fd is not
 * closed by the reader). open_stream reads fd sequentially (a pipe): records
 * up to the first RAM segment are read now; fvm_load() reads the rest, and
 * run listings are available only after it.
 */
FVM_API int fvm_reader_open_fd(fvm_reader **out, int fd, const char *name);
FVM_API int fvm_reader_open_stream(fvm_reader **out, int fd, const char *name);
FVM_API void fvm_reader_free(fvm_reader *r);

FVM_API int fvm_reader_info(const fvm_reader *r, fvm_file_info *info);
FVM_API int fvm_reader_block(const fvm_reader *r, uint32_t i,
			     fvm_block_info *info);
FVM_API int fvm_reader_find_block(const fvm_reader *r, const char *name,
				  uint32_t *block_id);
FVM_API uint64_t fvm_reader_run_count(const fvm_reader *r);
FVM_API int fvm_reader_run(const fvm_reader *r, uint64_t i, fvm_run_info *run);
FVM_API int fvm_reader_meta(const fvm_reader *r, uint32_t i, const char **key,
			    const char **value);
/* The value of key, or NULL. */
FVM_API const char *fvm_reader_meta_get(const fvm_reader *r, const char *key);
FVM_API int fvm_reader_devstate(const fvm_reader *r, uint32_t i,
				fvm_devstate_info *info);
/*
 * Read count pages of a block from first_page into buf (count * page_size
 * bytes): data pages from the file, pages without data as zeros. Payload
 * CRCs are checked. For exporters and tools that walk a snapshot piecewise.
 */
FVM_API int fvm_reader_read_pages(fvm_reader *r, uint32_t block_id,
				  uint64_t first_page, uint64_t count, void *buf);
/* Copy section i (info.size bytes) into buf after checking its CRC. */
FVM_API int fvm_reader_devstate_read(fvm_reader *r, uint32_t i, void *buf,
				     size_t buf_len);

/* ---------------------------------------------------------------- loading */

/*
 * Where a block goes: length must equal the block's length; page_size, when
 * not 0, must equal the block's page size (e.g. a hugetlbfs mapping).
 */
typedef struct fvm_mapping {
	const char *name;
	void *addr;
	uint64_t length;
	uint64_t page_size;
} fvm_mapping;

enum fvm_backend {
	FVM_BACKEND_AUTO = 0,  /* io_uring, else pread; env FVM_BACKEND=pread|uring */
	FVM_BACKEND_URING = 1,
	FVM_BACKEND_PREAD = 2,
	/*
	 * No copy: each run is mapped MAP_PRIVATE | MAP_FIXED | MAP_POPULATE
	 * over its destination, so every data page is present and readable on
	 * return, and copied only when written (FVM_LOAD_LAZY: not populated,
	 * each page read when first touched). The file must not change while
	 * mapped, and destinations must be private anonymous memory, 4 KiB-
	 * aligned. Falls back to copying (io_uring, else pread) when refused.
	 * Only the caller can choose it (never FVM_BACKEND from the
	 * environment): it is wrong for a shared or file-backed destination.
	 */
	FVM_BACKEND_MMAP = 3
};

enum fvm_zero_policy {
	FVM_ZERO_LEAVE = 0,    /* destination is known zero (fresh mapping) */
	FVM_ZERO_MEMSET = 1,   /* write zeros over pages without data */
	FVM_ZERO_DONTNEED = 2  /* madvise(MADV_DONTNEED): private anonymous only */
};

enum fvm_load_flags {
	FVM_LOAD_VERIFY = 1u << 0,  /* check payload CRCs while loading */
	FVM_LOAD_DIRECT = 1u << 1,  /* O_DIRECT reads (falls back if refused; not mmap) */
	FVM_LOAD_PARTIAL = 1u << 2, /* blocks without a mapping are skipped */
	/*
	 * io_uring: let reads that the page cache can serve complete in the
	 * calling thread. By default every buffered read is handed to
	 * io_uring's kernel workers (IOSQE_ASYNC), so that copies out of the
	 * page cache run on all CPUs at once (1.7x faster warm on 2 cores,
	 * doc/BENCHMARKS.md); this flag keeps the load on one CPU.
	 */
	FVM_LOAD_INLINE = 1u << 3,
	/*
	 * With FVM_BACKEND_MMAP only: map the runs without populating them,
	 * so fvm_load returns once every run is mapped and each page is read
	 * from the file (page cache or device) when first touched: time to
	 * resume no longer grows with the RAM, and pages never touched are
	 * never read. Not with FVM_LOAD_VERIFY (that reads every page).
	 * Should mapping be refused, the load copies everything as usual.
	 */
	FVM_LOAD_LAZY = 1u << 4
};

typedef struct fvm_load_options {
	uint32_t size;           /* sizeof(fvm_load_options), set by INIT */
	uint32_t flags;          /* FVM_LOAD_* */
	int backend;             /* enum fvm_backend */
	int zero_policy;         /* enum fvm_zero_policy */
	unsigned queue_depth;    /* reads in flight; 0 = default (16) */
	uint64_t chunk_bytes;    /* bytes per read; 0 = default (256 KiB) */
	fvm_progress_fn progress;
	void *progress_ctx;
	/*
	 * POSIX_FADV_WILLNEED this many units of queue_depth x chunk_bytes
	 * ahead of the reads; 0 = none (the default: on the devices measured it
	 * slowed cold loads, see doc/BENCHMARKS.md). Env FVM_WILLNEED=N sets it
	 * when this is 0.
	 */
	unsigned willneed_window;
} fvm_load_options;

#define FVM_LOAD_OPTIONS_INIT \
	{ sizeof(fvm_load_options), 0, FVM_BACKEND_AUTO, FVM_ZERO_LEAVE, 0, 0, NULL, NULL, 0 }

typedef struct fvm_load_stats {
	int backend;             /* the path actually used */
	const char *backend_name; /* "io_uring", "pread", "mmap" */
	const char *fallback_reason; /* why mmap or io_uring was not used, or NULL */
	int direct;              /* O_DIRECT was used */
	uint64_t bytes_read;     /* payload bytes read (for mmap: mapped and
				  * populated; FVM_LOAD_LAZY reads none: 0) */
	uint64_t requests;       /* read requests submitted */
	uint64_t extents;        /* data extents loaded */
	uint64_t zero_bytes;     /* bytes handled by the zero policy */
	uint64_t elapsed_ns;
} fvm_load_stats;

/*
 * Load every block's pages into the caller's memory. The whole plan is built
 * and checked against the mappings before the first byte is written; no
 * file can make the loader write outside [addr, addr + length) of a mapping.
 * opts and stats may be NULL.
 */
FVM_API int fvm_load(fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
		     const fvm_load_options *opts, fvm_load_stats *stats);

/*
 * Check every checksum and structural rule by reading the whole file
 * (header, records, payload chunks, index, footer). progress may be NULL.
 */
FVM_API int fvm_verify(fvm_reader *r, fvm_progress_fn progress, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* FASTVM_FASTVM_H */
