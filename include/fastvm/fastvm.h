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
 * calling thread's fvm_error_detail() then says what and where, and
 * fvm_error_errno() gives the errno of the system call that failed. Every
 * function that can fail clears both first, and one that succeeds leaves
 * them clear (the free functions, which cannot fail, leave them alone, so an
 * error can still be reported after cleaning up).
 * The library never prints, never exits and reads no environment variable.
 * Man pages: fvm_reader_open(3), fvm_load(3), fvm_writer_open_path(3),
 * fvm_verify(3), fvm_error_detail(3), ...
 *
 * ABI: structs that cross the API carry their size, set by the caller
 * (FVM_*_INIT or fvm_*_init()), so that a caller built against an older,
 * smaller struct keeps working with a newer library (the fields it lacks take
 * their defaults, and output structs are written only as far as the caller's
 * size), and a newer caller's larger struct is accepted when the tail this
 * library does not know is zero. Symbols live in version nodes
 * (lib/libfastvm.map). Tuning knobs that are not a stable promise live in
 * <fastvm/experimental.h>.
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
#define FVM_FORMAT_ATTR(a, b) __attribute__((format(printf, a, b)))
#else
#define FVM_API
#define FVM_FORMAT_ATTR(a, b)
#endif

#define FVM_VERSION_MAJOR 0
#define FVM_VERSION_MINOR 2
#define FVM_VERSION_PATCH 0
#define FVM_VERSION_NUMBER \
	(FVM_VERSION_MAJOR * 10000 + FVM_VERSION_MINOR * 100 + FVM_VERSION_PATCH)

/*
 * Runtime version of the library, as FVM_VERSION_NUMBER and as "0.2.0".
 * Errors: none (they cannot fail).
 */
FVM_API unsigned fvm_version(void);
FVM_API const char *fvm_version_string(void);

/* ---------------------------------------------------------------- errors */

typedef enum fvm_error {
	FVM_OK = 0,
	FVM_EINVAL = -1,       /* bad argument from the caller */
	FVM_ENOMEM = -2,       /* allocation failed */
	FVM_EIO = -3,          /* system call failed (fvm_error_errno() says which errno) */
	FVM_EMAGIC = -4,       /* not a libfastvm snapshot */
	FVM_EVERSION = -5,     /* format version this library does not read */
	FVM_EFEATURE = -6,     /* unknown incompatible feature bit */
	FVM_ETRUNCATED = -7,   /* file ends inside a structure */
	FVM_ECHECKSUM = -8,    /* a CRC32C does not match */
	FVM_ECORRUPT = -9,     /* a structure breaks a rule of FORMAT.md */
	FVM_ERANGE = -10,      /* offset/length outside its container */
	FVM_EMAPPING = -11,    /* caller's memory map does not fit the file */
	FVM_ECANCELED = -12,   /* a callback asked to stop */
	FVM_ESTATE = -13,      /* call not allowed in this state */
	FVM_ENOTFOUND = -14,   /* no such block, section or key */
	FVM_EUNSUPPORTED = -15, /* valid request this system cannot do */
	FVM_ECHANGED = -16,    /* a disk changed since the snapshot was taken */
	FVM_EAUTH = -17        /* 0.2: an authenticated snapshot without its key, with
	                          another key, or whose MAC or a tag does not verify */
} fvm_error;

/* Fixed text for a code ("checksum mismatch"); never NULL. Errors: none. */
FVM_API const char *fvm_strerror(int code);

/*
 * Detail of the last error raised on this thread, e.g.
 * "snap.fvm: segment at offset 0x1000: entry 3: pages 510+4 past end of
 * block pc.ram (512 pages)". Empty string when there is none. Valid until
 * the next libfastvm call on this thread. Errors: none.
 */
FVM_API const char *fvm_error_detail(void);

/*
 * errno of the system call behind the last error on this thread (ENOSPC,
 * EIO, EACCES, ...), or 0 when the error did not come from one (a corrupt
 * file, a bad argument). A VMM returns -fvm_error_errno() when it is not 0.
 * Errors: none.
 */
FVM_API int fvm_error_errno(void);

/*
 * Set this thread's error detail and errno, and return code: for callbacks
 * (progress, device state) that stop an operation and want their reason,
 * not "canceled", reported by the call that invoked them, and for programs
 * layered on the library that report their own errors the same way. errnum
 * is 0 or an errno value, appended to the detail as ": strerror(errnum)".
 * Errors: none; returns code.
 */
FVM_API int fvm_error_set(int code, int errnum, const char *fmt, ...)
	FVM_FORMAT_ATTR(3, 4);

/* ---------------------------------------------------------------- common */

/*
 * Progress: called with bytes done and total bytes of the operation.
 * Return non-zero to cancel; the operation then fails with FVM_ECANCELED
 * (or with the code and detail the callback set with fvm_error_set()).
 */
typedef int (*fvm_progress_fn)(void *ctx, uint64_t done, uint64_t total);

#define FVM_MAX_NAME 255 /* block and section names, like QEMU's idstr */

/* ---------------------------------------------------------------- writer */

typedef struct fvm_writer fvm_writer;

enum fvm_write_flags {
	FVM_WRITE_NO_CRC = 1u << 0, /* omit per-chunk payload CRCs */
	FVM_WRITE_NO_FSYNC = 1u << 1, /* path writer: skip fsync (tests, scratch) */
	/*
	 * Path writer: do not start writing segments back while they are
	 * written (the default overlaps the device's work with the next
	 * segment), so that writes only fill the page cache and all of the
	 * device's work waits for fvm_writer_finish(): for a caller that
	 * resumes something in between (QEMU's VM, once its RAM is written).
	 */
	FVM_WRITE_SYNC_AT_FINISH = 1u << 2,
	/*
	 * Path writer: the memory given to write_block and write_pages stays
	 * valid and unchanged until fvm_writer_finish() (or _free) returns (a
	 * stopped VM's RAM). The calls then return before their pages are
	 * written: a thread writes each segment while the next is scanned and
	 * checksummed, across calls, and runs continue from one call into the
	 * next segment; fvm_writer_flush() ends the promise early. Without it,
	 * they return only once mem is written.
	 */
	FVM_WRITE_STABLE_MEM = 1u << 3
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
	/* 0.2: compressed payload (doc/FORMAT.md 4.5); all 0 = uncompressed */
	uint32_t codec;         /* enum fvm_codec */
	int32_t level;          /* 0 = the codec's default (zstd 3, lz4 1);
	                           zstd 1..19, lz4 1..12 (3 and up: lz4 HC) */
	uint32_t frame_bytes;   /* plain bytes per frame, a power of two from
	                           64 KiB to 1 MiB; 0 = 1 MiB */
	uint32_t threads;       /* compressing threads; 0 = one per CPU */
	/*
	 * 0.2: an authenticated snapshot (doc/FORMAT.md 4.6): the secret file
	 * key of FVM_KEY_BYTES bytes (copied at open; NULL = not
	 * authenticated). Not with codec (FVM_EINVAL); FVM_EUNSUPPORTED when
	 * fvm_auth_available() is 0. A reader needs the same key
	 * (fvm_reader_set_key) to load the file.
	 */
	const uint8_t *key;
} fvm_write_options;

#define FVM_KEY_BYTES 32

/*
 * Codecs of compressed payload. A build has those whose library it found
 * (fvm_codec_available); a file names its codec in its header.
 */
enum fvm_codec { FVM_CODEC_NONE = 0, FVM_CODEC_ZSTD = 1, FVM_CODEC_LZ4 = 2 };

#define FVM_WRITE_OPTIONS_INIT { sizeof(fvm_write_options), 0, 0, 0, NULL, NULL, 0, 0, 0, 0, NULL }

/*
 * The codec's name ("zstd", "lz4", "none"), or NULL for an unknown id;
 * fvm_codec_available: 1 when this build encodes and decodes it (none: 1).
 * Errors: none.
 */
FVM_API const char *fvm_codec_name(int codec);
FVM_API int fvm_codec_available(int codec);

/*
 * Fill *opts (size bytes, the caller's sizeof) with the defaults, as
 * FVM_WRITE_OPTIONS_INIT does. FVM_EINVAL when size is too small.
 * Errors: FVM_EINVAL (opts NULL or size < 8).
 */
FVM_API int fvm_write_options_init(fvm_write_options *opts, size_t size);

/*
 * Create a writer. open_path writes to a temporary file beside path and
 * renames it over path in fvm_writer_finish() after fsync; until then an
 * existing file at path is untouched. open_fd writes sequentially to fd
 * (file, pipe or socket; never seeks, never closes it). opts may be NULL.
 * Errors: FVM_EINVAL (NULL out or path, fd < 0, a directory, bad options),
 * FVM_ENOMEM, FVM_EIO (creating the temporary file, writing the header).
 */
FVM_API int fvm_writer_open_path(fvm_writer **out, const char *path,
				 const fvm_write_options *opts);
FVM_API int fvm_writer_open_fd(fvm_writer **out, int fd,
			       const fvm_write_options *opts);

/*
 * Key/value metadata ("creator", "source", "machine", "created", ...).
 * Errors: FVM_EINVAL (NULL w, bad key or value), FVM_ESTATE (writer failed or
 * finished, a section open), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_add_meta(fvm_writer *w, const char *key,
				const char *value);

/*
 * Declare a RAM block: unique name of 1..255 bytes, length a non-zero
 * multiple of page_size, page_size a power of two from 4 KiB to 1 GiB.
 * *block_id receives the id used by the calls below.
 * Errors: FVM_EINVAL (NULL w; bad or duplicate name, bad length or page_size,
 * 65536 blocks), FVM_ESTATE (as add_meta), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_add_block(fvm_writer *w, const char *name,
				 uint64_t length, uint64_t page_size,
				 uint32_t *block_id);

/*
 * Write a whole block from host memory (length bytes at mem, as declared).
 * Zero pages are found word-wise and cost no payload; non-zero pages are
 * written straight from mem, without a copy.
 * Errors: FVM_EINVAL (NULL w or mem, undeclared block), FVM_ESTATE, FVM_ENOMEM,
 * FVM_EIO, FVM_ECANCELED (progress callback).
 */
FVM_API int fvm_writer_write_block(fvm_writer *w, uint32_t block_id,
				   const void *mem);
/*
 * The same for count pages from first_page, at mem (the first of them): a
 * part of a block, e.g. the data extents of a sparse backend file, with
 * the holes between given to fvm_writer_put_zero. No copy: mem is written
 * before this returns. Errors: FVM_EINVAL (pages outside the block, NULL
 * mem), FVM_ESTATE, FVM_EIO, FVM_ENOMEM, FVM_ECANCELED.
 */
FVM_API int fvm_writer_write_pages(fvm_writer *w, uint32_t block_id,
				   uint64_t first_page, uint64_t count,
				   const void *mem);

/*
 * Streaming: deliver count pages of a block starting at first_page, in any
 * order. Zero pages among them are detected. Pages delivered again replace
 * the earlier copy (the file then keeps both; the index points at the last).
 * put_zero records count zero pages without data.
 * Errors: FVM_EINVAL (NULL w, undeclared block, pages outside it, NULL data),
 * FVM_ESTATE (writer failed or finished, a section open), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_put_pages(fvm_writer *w, uint32_t block_id,
				 uint64_t first_page, uint64_t count,
				 const void *data);
FVM_API int fvm_writer_put_zero(fvm_writer *w, uint32_t block_id,
				uint64_t first_page, uint64_t count);

/*
 * An opaque device-state section, kept and returned byte for byte. Sections
 * keep their order. Names are 0..255 bytes and need not be unique.
 * Errors: FVM_EINVAL (NULL w or name, name over 255 bytes, NULL data),
 * FVM_ESTATE (writer failed or finished, a section open), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_add_devstate(fvm_writer *w, const char *name,
				    const void *data, size_t len);

/*
 * The same, written in pieces of any size as they are produced (QEMU's
 * vmstate is a stream of unknown length; a VFIO device's state can exceed
 * 1 GiB): begin, then write any number of times, then end. The writer
 * buffers at most 1 MiB and stores a section larger than that as several
 * DEVS records (FORMAT.md 4.3); readers return it as one section. While a
 * section is open, only devstate_write and devstate_end are allowed.
 * Errors: FVM_EINVAL (NULL w, bad name, NULL data), FVM_ESTATE (writer failed
 * or finished; begin: one open; write, end: none open), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_devstate_begin(fvm_writer *w, const char *name);
FVM_API int fvm_writer_devstate_write(fvm_writer *w, const void *data,
				      size_t len);
FVM_API int fvm_writer_devstate_end(fvm_writer *w);

/*
 * Write every pending run and wait until it is written: after this returns,
 * no memory given to the writer is referenced any more (with
 * FVM_WRITE_STABLE_MEM, the point after which the caller may change it,
 * e.g. resume the VM, before fvm_writer_finish()).
 * Errors: FVM_EINVAL (NULL w), FVM_ESTATE (writer failed or finished, a
 * section open), FVM_ENOMEM, FVM_EIO.
 */
FVM_API int fvm_writer_flush(fvm_writer *w);

/*
 * Write index and footer; for open_path: fsync, rename, fsync directory.
 * Errors: FVM_EINVAL (NULL w), FVM_ESTATE (writer failed or finished, a section
 * open), FVM_ENOMEM, FVM_EIO (write, fsync, close, rename).
 */
FVM_API int fvm_writer_finish(fvm_writer *w);

/*
 * Free; an unfinished path writer removes its temporary file. NULL is ok.
 * Errors: none.
 */
FVM_API void fvm_writer_free(fvm_writer *w);

/* ---------------------------------------------------------------- reader */

typedef struct fvm_reader fvm_reader;

/*
 * Output structs: set size to sizeof(the struct) (FVM_*_INFO_INIT does) before
 * the call; the library writes no byte past size.
 */
typedef struct fvm_file_info {
	uint32_t size;           /* sizeof(fvm_file_info), set by the caller */
	uint16_t version_major, version_minor;
	uint64_t incompat_features, compat_features;
	uint64_t file_size;      /* 0 when read as a stream */
	uint64_t payload_bytes;  /* bytes of live page data */
	uint64_t data_pages, zero_pages;
	uint64_t data_runs, zero_runs; /* extents in the index */
	uint32_t block_count, devstate_count, meta_count;
	int streamed;            /* opened with fvm_reader_open_stream */
	/* compressed payload (0.2; all 0 when uncompressed) */
	uint32_t codec;          /* enum fvm_codec */
	uint32_t level;          /* as the writer recorded it */
	uint32_t frame_bytes;    /* plain bytes per frame */
	uint64_t frame_count;
	uint64_t stored_bytes;   /* bytes the frames take in the file (payload_bytes
	                            is what they decode to) */
	/* authenticated snapshots (0.2) */
	uint32_t authenticated;  /* 1: AUTHENTICATED (FORMAT.md 4.6) */
	uint32_t key_checked;    /* 1: fvm_reader_set_key() accepted its key */
	uint64_t key_id;         /* names the key it was written with (0: none) */
} fvm_file_info;

#define FVM_FILE_INFO_INIT { sizeof(fvm_file_info), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
			     0, 0, 0, 0, 0, 0, 0, 0 }

typedef struct fvm_block_info {
	uint32_t size;           /* sizeof(fvm_block_info), set by the caller */
	const char *name;        /* NUL-terminated; owned by the reader */
	uint64_t length;
	uint64_t page_size;
	uint64_t data_pages, zero_pages; /* absent pages are neither */
	uint64_t data_runs, zero_runs;
} fvm_block_info;

#define FVM_BLOCK_INFO_INIT { sizeof(fvm_block_info), NULL, 0, 0, 0, 0, 0, 0 }

enum fvm_run_kind { FVM_RUN_ZERO = 0, FVM_RUN_DATA = 1 };

typedef struct fvm_run_info {
	uint32_t size;           /* sizeof(fvm_run_info), set by the caller */
	uint32_t block_id;
	int kind;                /* enum fvm_run_kind */
	uint64_t first_page;
	uint64_t page_count;
	uint64_t file_offset;    /* of the payload; 0 for zero runs */
} fvm_run_info;

#define FVM_RUN_INFO_INIT { sizeof(fvm_run_info), 0, 0, 0, 0, 0 }

typedef struct fvm_devstate_info {
	uint32_t size;           /* sizeof(fvm_devstate_info), set by the caller */
	const char *name;        /* NUL-terminated; owned by the reader */
	uint64_t length;         /* bytes of the section (all its parts) */
	uint64_t file_offset;    /* of the first part's data (in a stream: where it was) */
	uint32_t parts;          /* DEVS records it is stored in (1 unless large) */
} fvm_devstate_info;

#define FVM_DEVSTATE_INFO_INIT { sizeof(fvm_devstate_info), NULL, 0, 0, 0 }

/*
 * The INIT macros as functions (for bindings and callers that allocate):
 * zero size bytes at p and set the size field to size. Errors: FVM_EINVAL
 * (p NULL or size smaller than 8).
 */
FVM_API int fvm_file_info_init(fvm_file_info *p, size_t size);
FVM_API int fvm_block_info_init(fvm_block_info *p, size_t size);
FVM_API int fvm_run_info_init(fvm_run_info *p, size_t size);
FVM_API int fvm_devstate_info_init(fvm_devstate_info *p, size_t size);

/*
 * Threads: a reader of a seekable file (fvm_reader_open, or open_fd of a file
 * or block device) may be shared by several threads calling fvm_load (each
 * into its own memory), fvm_verify, read_pages, devstate_read/_pread, the
 * listing calls and fvm_prefetch_start at once; fvm_reader_free waits for
 * none of them, so call it after they have returned (and prefetches freed).
 * After the lazy load of an authenticated file (FVM_LOAD_LAZY) the reader
 * serves that memory's faults: fvm_reader_free first installs every page
 * still missing (reading and checking them: it may take as long as an
 * eager load), then makes the pages whose chunk failed inaccessible
 * (PROT_NONE) and removes the registration, so a thread that was waiting
 * on one of them faults (SIGSEGV) instead of waiting for ever or reading
 * zeros; free the reader only while the memory is still mapped, or after
 * the prefetch ended. A stream reader (open_stream) and a writer are
 * used by one thread at a time. Errors are the calling thread's.
 *
 * Open a seekable snapshot: header, footer and index are read and every
 * structural rule is checked before this returns, so a successful open
 * means every run lies inside its block and inside the file.
 * Errors: FVM_EINVAL (NULL out or path), FVM_ENOMEM, FVM_EIO (open, read), and
 * for a bad file FVM_EMAGIC to FVM_ERANGE (codes -4..-10, fvm_reader_open(3)).
 */
FVM_API int fvm_reader_open(fvm_reader **out, const char *path);

/*
 * Open from an fd. Seekable fds are read like fvm_reader_open (fd is not
 * closed by the reader). open_stream reads fd sequentially (a pipe): records
 * up to the first RAM segment or device-state section are read now;
 * fvm_load() (or fvm_verify()) reads the rest, and run and device-state
 * listings are complete only after it.
 * Errors: as fvm_reader_open (fd < 0 is FVM_EINVAL); fvm_reader_free: none.
 */
FVM_API int fvm_reader_open_fd(fvm_reader **out, int fd, const char *name);
FVM_API int fvm_reader_open_stream(fvm_reader **out, int fd, const char *name);
FVM_API void fvm_reader_free(fvm_reader *r);

/*
 * Authenticated snapshots (doc/FORMAT.md 4.6, doc/SECURITY.md). Give the
 * file key (len FVM_KEY_BYTES) before the reader is shared between threads
 * and before any load, read_pages, devstate read or verify: the MAC over
 * the header, blocks, metadata and index, as open read them, is checked
 * here, and every payload chunk's and device-state record's tag later as
 * it is read. Until a key is accepted those calls fail with FVM_EAUTH on
 * an authenticated file; listings work (and are unauthenticated).
 * Errors: FVM_EINVAL (NULL, len), FVM_EAUTH (the file is not authenticated,
 * which is what a file stripped of its tags looks like; another key; the
 * MAC does not verify), FVM_EUNSUPPORTED (a stream reader, or
 * fvm_auth_available() 0), FVM_ESTATE (a key was already accepted), FVM_ENOMEM.
 */
FVM_API int fvm_reader_set_key(fvm_reader *r, const void *key, size_t len);
/* 1 when this build makes and checks authenticated snapshots. Errors: none. */
FVM_API int fvm_auth_available(void);
/*
 * The key id (FORMAT.md 4.6) of a file key, as fvm_file_info.key_id shows
 * it, so that a tool can tell which key a file needs. Errors: FVM_EINVAL,
 * FVM_EUNSUPPORTED (fvm_auth_available() 0).
 */
FVM_API int fvm_key_id(const void *key, size_t len, uint64_t *id);
/*
 * A key as a key file holds it (the text of `fvmsnap keygen`): 64
 * hexadecimal digits, optionally followed by one newline, nothing else.
 * Decodes text (len bytes, not NUL-terminated) into key (FVM_KEY_BYTES).
 * Pure parsing, no I/O. Errors: FVM_EINVAL, saying at which byte.
 */
FVM_API int fvm_key_parse(const char *text, size_t len, void *key, size_t key_len);

/*
 * Listings, no I/O. Errors: FVM_EINVAL (NULL argument, output size < 4),
 * FVM_ENOTFOUND (no such i or name), FVM_ESTATE (fvm_reader_run: a stream not
 * read to its end yet); run_count and meta_get cannot fail (0 or NULL).
 */
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
/* The first section named name (the empty name included). */
FVM_API int fvm_reader_find_devstate(const fvm_reader *r, const char *name,
				     uint32_t *index);
/*
 * Read count pages of a block from first_page into buf (count * page_size
 * bytes): data pages from the file, pages without data as zeros. Payload
 * CRCs are checked. For exporters and tools that walk a snapshot piecewise.
 * Errors: FVM_EINVAL, FVM_ESTATE (a stream), FVM_ENOTFOUND (block), FVM_ERANGE
 * (pages outside it), FVM_EIO, FVM_ETRUNCATED, FVM_ECHECKSUM.
 */
FVM_API int fvm_reader_read_pages(fvm_reader *r, uint32_t block_id,
				  uint64_t first_page, uint64_t count, void *buf);
/*
 * Copy section i (info.length bytes) into buf after checking its CRCs.
 * Errors: FVM_EINVAL (NULL, buf_len short), FVM_ENOTFOUND, FVM_ESTATE (given to
 * a load callback), FVM_EIO, FVM_ETRUNCATED, FVM_ECORRUPT, FVM_ECHECKSUM.
 */
FVM_API int fvm_reader_devstate_read(fvm_reader *r, uint32_t i, void *buf,
				     size_t buf_len);
/*
 * Read up to len bytes of section i from offset on; *got receives how many
 * (fewer only at the section's end: 0 at or past it). Every byte returned
 * was checked against its record's CRC first, whatever the range: a part is
 * read whole (at most 1 MiB for parts this library writes) and the last one
 * is kept for the next call, so reading a section front to back in small
 * pieces reads each byte once. For a VMM's device-state loader. Not for a
 * stream reader whose sections went to a load callback.
 * Errors: as devstate_read (got NULL is FVM_EINVAL), and FVM_ENOMEM.
 */
FVM_API int fvm_reader_devstate_pread(fvm_reader *r, uint32_t i, void *buf,
				      size_t len, uint64_t offset, size_t *got);

/* ---------------------------------------------------------------- loading */

/*
 * Where a block goes: length must equal the block's length; page_size, when
 * not 0, must equal the block's page size (e.g. a hugetlbfs mapping). The
 * array passed to fvm_load has elements of maps[0].size bytes, all the same.
 */
enum fvm_mapping_flags {
	/*
	 * Shared or file-backed memory (memory-backend-file share=on, memfd,
	 * vhost-user, a device): never mapped over (FVM_BACKEND_MMAP copies
	 * into it instead, saying why) and zero pages are written as zeros
	 * (MADV_DONTNEED would drop them back to the file's contents).
	 */
	FVM_MAP_SHARED = 1u << 0,
	/* hugetlbfs memory: handled like SHARED (no map over, zeros written). */
	FVM_MAP_HUGETLB = 1u << 1,
	/* The destination is known to read as zero: no zero work for it,
	 * whatever the zero policy (a fresh anonymous mapping, a new file). */
	FVM_MAP_ZERO = 1u << 2,
	/*
	 * Settings the caller had made on the memory, which mapping runs over
	 * it (FVM_BACKEND_MMAP, eager or lazy) would drop with the old
	 * mapping: after the runs are mapped they are made again over the
	 * whole mapping (QEMU: THP, dump-guest-core=off, mem-merge, the
	 * DONTFORK it sets for KVM, mem-lock). HUGEPAGE and MERGEABLE are best
	 * effort, as in QEMU (a kernel without THP or KSM refuses them);
	 * DONTDUMP, DONTFORK and LOCKED are promises, and the load fails when one cannot be kept. LOCKED reads
	 * every mapped page (mlock populates), so a lazy load is then eager.
	 * A lazy map leaves HUGEPAGE off the runs it maps (the rest keeps
	 * it): on a file mapping it makes each first fault read 2-4 MiB.
	 * Loads that copy keep the settings; with HUGEPAGE, a mapping less
	 * than half of which is data is loaded with MADV_NOHUGEPAGE and
	 * MADV_HUGEPAGE is set again after: every 2 MiB page a copy faults in
	 * is zeroed whole first, which a sparse guest pays for most of its RAM.
	 */
	FVM_MAP_HUGEPAGE = 1u << 3,   /* madvise(MADV_HUGEPAGE); copying loads
					 put less than half data in small
					 pages, then set it again */
	FVM_MAP_DONTDUMP = 1u << 4,   /* madvise(MADV_DONTDUMP) */
	FVM_MAP_MERGEABLE = 1u << 5,  /* madvise(MADV_MERGEABLE) */
	FVM_MAP_LOCKED = 1u << 6,     /* mlock() */
	FVM_MAP_DONTFORK = 1u << 7    /* madvise(MADV_DONTFORK) */
};

typedef struct fvm_mapping {
	uint32_t size;           /* sizeof(fvm_mapping), set by INIT */
	uint32_t flags;          /* FVM_MAP_* */
	const char *name;
	void *addr;
	uint64_t length;
	uint64_t page_size;
} fvm_mapping;

#define FVM_MAPPING_INIT { sizeof(fvm_mapping), 0, NULL, NULL, 0, 0 }

/* FVM_MAPPING_INIT as a function: size bytes zeroed, size set. Errors: FVM_EINVAL. */
FVM_API int fvm_mapping_init(fvm_mapping *m, size_t size);

enum fvm_backend {
	FVM_BACKEND_AUTO = 0,  /* io_uring, else pread */
	FVM_BACKEND_URING = 1,
	FVM_BACKEND_PREAD = 2,
	/*
	 * No copy: each run is mapped MAP_PRIVATE | MAP_FIXED | MAP_POPULATE
	 * over its destination, so every data page is present and readable on
	 * return, and copied only when written (FVM_LOAD_LAZY: not populated,
	 * each page read when first touched). The file must not change while
	 * mapped, and destinations must be private anonymous memory, 4 KiB-
	 * aligned (mappings flagged SHARED or HUGETLB are copied into).
	 * Falls back to copying (io_uring, else pread) when refused.
	 */
	FVM_BACKEND_MMAP = 3
};

enum fvm_zero_policy {
	FVM_ZERO_LEAVE = 0,    /* destination is known zero (fresh mapping) */
	FVM_ZERO_MEMSET = 1,   /* write zeros over pages without data */
	FVM_ZERO_DONTNEED = 2  /* madvise(MADV_DONTNEED) for private anonymous
				  memory, zeros written elsewhere */
};

enum fvm_load_flags {
	FVM_LOAD_VERIFY = 1u << 0,  /* check payload CRCs while loading (compressed:
				       each frame's crc_plain too; its crc_stored
				       is checked by every load) */
	FVM_LOAD_DIRECT = 1u << 1,  /* O_DIRECT reads (falls back if refused; not mmap) */
	FVM_LOAD_PARTIAL = 1u << 2, /* blocks without a mapping are skipped */
	/* 1u << 3 was FVM_LOAD_INLINE in 0.1: now in <fastvm/experimental.h> */
	/*
	 * With FVM_BACKEND_MMAP only: map the runs without populating them,
	 * so fvm_load returns once every run is mapped and each page is read
	 * from the file (page cache or device) when first touched: time to
	 * resume no longer grows with the RAM, and pages never touched are
	 * never read. Not with FVM_LOAD_VERIFY (that reads every page).
	 * Should mapping be refused, the load copies everything as usual.
	 *
	 * An authenticated reader (fvm_reader_set_key): the file is
	 * never mapped (the kernel would hand its pages over unchecked).
	 * The destinations, private anonymous memory, are registered with
	 * userfaultfd(2) and the pages of data runs lose what they held (the
	 * zero policy treats the others as in any load); fvm_load returns, and
	 * a thread of the reader installs each page when first touched,
	 * after the tag of its 4 KiB chunk verified (a window of its run is
	 * read and checked at once), zeros where the snapshot has none. A
	 * chunk that does not verify is never installed: a thread touching
	 * it waits (the caller must stop the VM), and the error, FVM_EAUTH
	 * naming block, page and file offset, is reported by
	 * fvm_prefetch_status/wait, as is a read error (FVM_EIO).
	 * fvm_prefetch_start installs the rest; fvm_reader_free ends the
	 * load (see there). Where userfaultfd is refused the load fails with
	 * FVM_EUNSUPPORTED saying why; memory it does not register (SHARED,
	 * HUGETLB, LOCKED, not 4 KiB-aligned) is loaded eagerly, checked,
	 * with the reason in fvm_load_stats.fallback_reason. One such load
	 * at a time per reader (FVM_ESTATE for a second, until the first
	 * has installed everything and its prefetch handle is freed). A child
	 * forked meanwhile sees zeros where pages were still missing.
	 */
	FVM_LOAD_LAZY = 1u << 4
};

/*
 * Device state of a stream load, handed over as it arrives instead of kept
 * (fvm_load_options.devstate): len bytes of section `section` (its name)
 * from offset on, checked against their record's CRC; last is non-zero on
 * the section's final piece. Return non-zero to stop the load.
 */
typedef int (*fvm_devstate_fn)(void *ctx, uint32_t section, const char *name,
			       uint64_t offset, const void *data, size_t len,
			       int last);

struct fvm_load_tuning; /* <fastvm/experimental.h> */

typedef struct fvm_load_options {
	uint32_t size;           /* sizeof(fvm_load_options), set by INIT */
	uint32_t flags;          /* FVM_LOAD_* */
	int backend;             /* enum fvm_backend */
	int zero_policy;         /* enum fvm_zero_policy */
	fvm_progress_fn progress;
	void *progress_ctx;
	/*
	 * Stream readers only: device-state sections met during the load go
	 * to this callback, piece by piece, and are not kept (so no section
	 * is held in memory beyond one record); NULL keeps them for
	 * fvm_reader_devstate_read() after the load.
	 */
	fvm_devstate_fn devstate;
	void *devstate_ctx;
	/* Experimental knobs (queue depth, read size, ...); NULL = defaults. */
	const struct fvm_load_tuning *tuning;
} fvm_load_options;

#define FVM_LOAD_OPTIONS_INIT \
	{ sizeof(fvm_load_options), 0, FVM_BACKEND_AUTO, FVM_ZERO_LEAVE, NULL, NULL, NULL, NULL, NULL }

/* Defaults into size bytes at opts. Errors: FVM_EINVAL (NULL, size < 8). */
FVM_API int fvm_load_options_init(fvm_load_options *opts, size_t size);

typedef struct fvm_load_stats {
	uint32_t size;           /* sizeof(fvm_load_stats), set by the caller */
	int backend;             /* the path actually used */
	const char *backend_name; /* "io_uring", "pread", "mmap", "userfaultfd"
				   * (an authenticated lazy load) (static strings) */
	const char *fallback_reason; /* why mmap or io_uring was not used, or NULL */
	int direct;              /* O_DIRECT was used */
	uint64_t bytes_read;     /* payload bytes read (for mmap: mapped and
				  * populated; FVM_LOAD_LAZY reads none: 0) */
	uint64_t requests;       /* read requests submitted */
	uint64_t extents;        /* data extents loaded */
	uint64_t zero_bytes;     /* bytes handled by the zero policy */
	uint64_t elapsed_ns;
	uint64_t mapped_bytes;   /* bytes mapped over the destination (mmap);
				  * an authenticated lazy load: registered */
} fvm_load_stats;

#define FVM_LOAD_STATS_INIT { sizeof(fvm_load_stats), 0, NULL, NULL, 0, 0, 0, 0, 0, 0, 0 }

/* FVM_LOAD_STATS_INIT as a function. Errors: FVM_EINVAL. */
FVM_API int fvm_load_stats_init(fvm_load_stats *st, size_t size);

/*
 * Load every block's pages into the caller's memory. The whole plan is built
 * and checked against the mappings before the first byte is written; no
 * file can make the loader write outside [addr, addr + length) of a mapping.
 * opts and stats may be NULL. On failure the destination is incomplete.
 * Errors: FVM_EINVAL, FVM_EMAPPING, FVM_ENOMEM, FVM_EIO, FVM_ETRUNCATED,
 * FVM_ECHECKSUM, FVM_ECANCELED; streams: FVM_ECORRUPT, FVM_ERANGE, FVM_ESTATE.
 */
FVM_API int fvm_load(fvm_reader *r, const fvm_mapping *maps, size_t n_maps,
		     const fvm_load_options *opts, fvm_load_stats *stats);

/*
 * Check every checksum and structural rule by reading the whole file
 * (header, records, payload chunks, index, footer). progress may be NULL.
 * On a stream reader this reads the rest of the stream, after which the
 * reader lists every record.
 * Errors: FVM_EINVAL, FVM_ESTATE (stream already read), FVM_ENOMEM, FVM_EIO,
 * FVM_ECANCELED, and for a bad file FVM_EMAGIC to FVM_ERANGE (-4..-10).
 */
FVM_API int fvm_verify(fvm_reader *r, fvm_progress_fn progress, void *ctx);

/*
 * Prefetch after a lazy load (FVM_LOAD_LAZY): a thread reads the file's
 * data runs in file order into the page cache, so that the guest runs at
 * once and its first touches of a page rarely wait for the device (on
 * flash, faults one page at a time are 4 KiB random reads). On a slow
 * device it reads 256 KiB at a time and waits while other threads of the
 * process take major faults, so the guest's faults do not queue behind it;
 * on a fast one (400 MB/s or more) 2 MiB pieces, the kernel's readahead
 * behind them.
 * It stops when every run has been read, at the first read error, or when
 * cancelled. The reader must outlive the prefetch (fvm_prefetch_free
 * first). Plain runs only: a compressed file is never lazily mapped.
 *
 * After the lazy load of an authenticated file (FVM_LOAD_LAZY with
 * a key): the reader's fault handler installs every page not yet there,
 * in file order, 1 MiB reads, each chunk's tag checked (faults are served
 * first); when all are in, the userfaultfd registration is removed and
 * its thread ends. done and total count installed data bytes. A chunk
 * that does not verify is skipped (never installed), the others go on;
 * fvm_prefetch_status returns FVM_EAUTH (or FVM_EIO) as soon as the
 * handler or the fill met one, faults included, with the detail naming
 * block, page and file offset, and fvm_prefetch_wait returns it at the
 * end: poll status to stop the VM. One prefetch at a time (FVM_ESTATE);
 * fvm_prefetch_free stops asking for the fill, the faults are still
 * served until fvm_reader_free. (Without such a load, an authenticated
 * reader's prefetch only fills the page cache, like any other.)
 *
 * fvm_prefetch_start: flags must be 0. fvm_prefetch_status: bytes read so
 * far and in all, and whether it has ended (no blocking); 0, or (an
 * authenticated lazy load) the first error met. fvm_prefetch_wait:
 * blocks until it ends; 0, or the read error. fvm_prefetch_free: cancels,
 * waits for the thread, frees; NULL is ok.
 * Errors: FVM_EINVAL (NULL argument, flags, a stream reader), FVM_ENOMEM,
 * FVM_EUNSUPPORTED (a compressed file; no thread), FVM_EIO (wait: a read),
 * FVM_ESTATE (a second prefetch of an authenticated lazy load), FVM_EAUTH.
 */
typedef struct fvm_prefetch fvm_prefetch;

FVM_API int fvm_prefetch_start(fvm_reader *r, uint32_t flags, fvm_prefetch **out);
FVM_API int fvm_prefetch_status(const fvm_prefetch *p, uint64_t *done, uint64_t *total,
				int *ended);
FVM_API int fvm_prefetch_wait(fvm_prefetch *p);
FVM_API void fvm_prefetch_free(fvm_prefetch *p);

/* ---------------------------------------------------------------- disks */

/*
 * The disk belongs to the snapshot: a VM state is valid only with the disk
 * images it was taken with. An image's identity is its size and a cheap
 * fingerprint: for qcow2 a 64-bit FNV-1a hash of its header and active L1
 * table (a write after the snapshot that allocates or copies an L2 table
 * changes it; an overwrite in place of a cluster the image already owns
 * does not), for other files of size and modification time. Snapshots keep
 * it as metadata disk.N.path (real path), disk.N.size, disk.N.kind,
 * disk.N.fingerprint (16 hex digits), N = 0, 1, ... (FORMAT.md 4.2).
 */
typedef struct fvm_disk_info {
	uint32_t size;           /* sizeof(fvm_disk_info), set by the caller */
	const char *kind;        /* "qcow2" or "file" (static strings) */
	uint64_t length;         /* bytes of the image file */
	uint64_t fingerprint;
} fvm_disk_info;

#define FVM_DISK_INFO_INIT { sizeof(fvm_disk_info), NULL, 0, 0 }

/* FVM_DISK_INFO_INIT as a function. Errors: FVM_EINVAL. */
FVM_API int fvm_disk_info_init(fvm_disk_info *p, size_t size);

/*
 * The identity of the image at path. Errors: FVM_EINVAL, FVM_EIO (open, read),
 * FVM_ECORRUPT (a qcow2 header out of bounds), FVM_ETRUNCATED (its L1 table
 * past the file's end), FVM_ENOMEM.
 */
FVM_API int fvm_disk_identify(const char *path, fvm_disk_info *info);
/*
 * Record the image at path as the snapshot's next disk (disk.N.*). For a
 * stopped VM whose disk writes are flushed. Errors: as fvm_disk_identify and
 * fvm_writer_add_meta; FVM_EINVAL beyond 64 disks.
 */
FVM_API int fvm_writer_add_disk(fvm_writer *w, const char *path);
/*
 * Compare the image at path with the disk the snapshot recorded at the same
 * real path: 0 when it is unchanged; FVM_ECHANGED, the detail saying what
 * changed, when it is not; FVM_ENOTFOUND when the snapshot recorded no disk
 * there. Errors: as fvm_disk_identify.
 */
FVM_API int fvm_reader_check_disk(const fvm_reader *r, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* FASTVM_FASTVM_H */
