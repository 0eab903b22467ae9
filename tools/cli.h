/*
 * Shared helpers of the fvmsnap subcommands: exit codes, error reporting in
 * one format, inputs ("-" for standard input), the load environment, size
 * parsing, small I/O helpers. Everything the CLI knows about the library
 * comes from the public headers; tools never include lib/. Below this layer
 * is tools/common/ (escaping, histogram buckets, progress, clock, signals),
 * which tools/stock/ uses too; nothing there includes this header.
 */
#ifndef FVMSNAP_CLI_H
#define FVMSNAP_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* Exit codes; doc/fvmsnap.1 (EXIT STATUS) documents the same table. */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_USAGE = 1,       /* bad command line or argument value */
	EXIT_INVALID = 2,     /* input is not a valid snapshot / verify failed */
	EXIT_SYSTEM = 3,      /* system or I/O error, out of memory */
	EXIT_UNSUPPORTED = 4, /* mapping mismatch, unsupported version/feature */
	EXIT_INTERRUPTED = 130 /* canceled by SIGINT/SIGTERM */
};

/* The subcommands (see commands.def). */
#define FVMSNAP_CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "commands.def"
#undef FVMSNAP_CMD

/* "fvmsnap pack": set by the dispatcher, used as prefix of every message. */
extern const char *cli_prog;

/*
 * The file the command writes, set by the commands that write one (pack,
 * convert, export, save). A failure whose detail starts with it ("OUT: write
 * at offset ...: No space left on device") is the output's: cli_fail names
 * OUT, once, instead of the input it was given.
 */
extern const char *cli_output;

/* Exit code for a FVM_E* code. */
int cli_exit_code(int fvm_code);

/*
 * "fvmsnap pack: <what>: <fvm_strerror>: <fvm_error_detail>" on stderr: the
 * one error format of every subcommand, for failures of libfastvm calls and
 * of the stock QEMU code alike (both set the detail with fvm_error_set). The
 * detail is left out when empty, and its leading "<what>: " when it has one
 * (the input is named once). Returns cli_exit_code(code).
 */
int cli_fail(const char *what, int code);
/*
 * cli_fail, but for FVM_EMAGIC not_what replaces fvm_strerror's "not a
 * libfastvm snapshot" when not NULL, so that the message says what the
 * input is not (CLI_NOT_STOCK_INPUT, "not a qcow2 image").
 */
int cli_fail_as(const char *what, int code, const char *not_what);
/* The FVM_EMAGIC text of the commands reading stock QEMU inputs. */
#define CLI_NOT_STOCK_INPUT \
	"not a QEMU migration stream, mapped-ram file or qcow2 image"
/*
 * An output that is the input (the same path, a hard link, a symlink to it:
 * the same inode) would be replaced by the rename that commits it: refused
 * before anything is written, EXIT_USAGE; 0 when they differ or out does
 * not exist yet. "-" is never the same file.
 */
int cli_refuse_same_file(const char *in, const char *out);

/*
 * QEMU's image locking (block/file-posix.c): a process holding permission N
 * of an image has an OFD read lock on byte 100+N, one refusing to share it
 * on byte 200+N (N 0: consistent read, 1: write). Reading an image takes
 * what qemu-img takes to read it: byte 100 (we read) and byte 201 (we do
 * not share writing), after testing that no other process holds byte 101
 * (a running QEMU writing the disk) or byte 200. The locks live as long as
 * *fd, which the caller closes when done. force_share (-U) skips all of it.
 * Returns 0, or prints "IMAGE is in use by another process ..." and
 * returns EXIT_SYSTEM (an image that cannot be opened is left to the
 * reader to report).
 */
int cli_image_lock(const char *path, int force_share, int *fd);

/*
 * A file mapped into memory (pack's input images): reading a page the
 * kernel cannot give (an I/O error of the device, a file cut short
 * meanwhile) raises SIGBUS. After cli_watch_mapping, such a SIGBUS prints
 * "fvmsnap pack: FILE: cannot read the page at offset 0x...: an I/O error
 * of its device, or the file was cut short while it was read" and exits
 * EXIT_SYSTEM (the output's temporary goes with the process, an existing
 * output stays as it was); a SIGBUS anywhere else stays fatal. At most 64
 * mappings; name must outlive the mapping.
 */
void cli_watch_mapping(const void *addr, uint64_t len, const char *name);
void cli_unwatch_mapping(const void *addr);

/* "fvmsnap pack: <what>: <strerror(err)>"; returns EXIT_SYSTEM. */
int cli_fail_sys(const char *what, int err);
/* "fvmsnap pack: <message>" plus a --help hint; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* After getopt's own message: "Try 'fvmsnap pack --help'."; EXIT_USAGE. */
int cli_try_help(void);
/* "fvmsnap pack: <message>" on stderr, nothing else. */
void cli_msg(const char *fmt, ...) CLI_PRINTF(1, 2);
/*
 * The one operand after the options (getopt's optind): 0 with *out set, or
 * a usage error ("expected one WHAT" / "no WHAT given") and its exit code.
 */
int cli_one_operand(int argc, char **argv, const char *what, const char **out);

/*
 * Inputs. "-" is standard input for every command that reads a snapshot;
 * messages call it CLI_STDIN_NAME.
 */
#define CLI_STDIN_NAME "standard input"

/* IN as messages name it: the path, or CLI_STDIN_NAME for "-". */
const char *cli_input_name(const char *in);

/* 1 when standard input is seekable: a regular file or a block device. */
int cli_stdin_seekable(void);

/*
 * When IN is "-" and standard input is a terminal: "refusing to read WHAT
 * from a terminal" (nobody types a snapshot) and EXIT_USAGE; else 0.
 */
int cli_refuse_terminal(const char *in, const char *what);

/*
 * Open a snapshot: a path with fvm_reader_open; "-" with fvm_reader_open_fd
 * when standard input is seekable (read like a file), else with
 * fvm_reader_open_stream (a pipe, read front to back once: runs and
 * device-state sections are listed only after fvm_load or fvm_verify).
 * Returns 0 or an FVM_E* code with the library's detail.
 */
int cli_open_snapshot(const char *in, fvm_reader **r);

/*
 * The first len bytes of standard input, left in it for the reader that
 * comes next (inspect tells a snapshot from a stock QEMU stream so): pread
 * on a seekable input, tee(2) on a pipe. *got receives how many (fewer only
 * at the input's end). Returns 0, -ENOTSUP for other inputs (a socket, a
 * character device), or -errno.
 */
int cli_peek_stdin(void *buf, size_t len, size_t *got);

/*
 * Standard input copied to an unnamed temporary file (O_TMPFILE; where the
 * file system has none, a file unlinked as soon as it is created) in
 * $TMPDIR, else /tmp, so that it is gone whenever the process ends. For a
 * command that reads a snapshot in another order than it was written
 * (export). *fd receives the file at offset 0, *dir the directory used
 * (for messages). Returns 0 or -errno.
 */
int cli_spool_stdin(int *fd, const char **dir);

/*
 * The environment variables of the commands that load (fvmsnap(1),
 * ENVIRONMENT), which the library no longer reads itself:
 * FVM_BACKEND=pread|uring|io_uring sets lo->backend when it is
 * FVM_BACKEND_AUTO; FVM_WILLNEED=N (0..64) sets tu->willneed_window when it
 * is 0. lo->tuning is pointed at tu. Returns 0, or for a value that is none
 * of these a usage error's exit code.
 */
int cli_load_env(fvm_load_options *lo, fvm_load_tuning *tu);

/*
 * Parse a byte size: decimal digits with an optional binary suffix K, M, G,
 * T (also KiB, MiB, ... and lower case). Returns 0, or -1 when the text is
 * not a size or overflows 64 bits.
 */
int cli_parse_size(const char *s, uint64_t *out);
/*
 * --compress CODEC[:LEVEL] and --frame-size SIZE into write options:
 * "zstd", "zstd:9", "lz4", "lz4:9" (HC), "none". Returns 0, or a usage
 * error's exit code (unknown codec, bad level, a codec this build lacks).
 */
int cli_parse_compress(const char *arg, fvm_write_options *wo);
int cli_parse_frame_size(const char *arg, fvm_write_options *wo);

/* Parse a non-negative decimal integer up to max; 0 or -1. */
int cli_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* write() all of buf, retrying on EINTR and short writes; 0 or -errno. */
int cli_write_all(int fd, const void *buf, size_t len);

/*
 * A file written atomically: a temporary file beside path, renamed over
 * path by cli_atomic_commit() after fsync; cli_atomic_abort() removes it.
 * Functions return 0 or -errno.
 */
/*
 * An output written atomically: a temporary file in the target's directory,
 * unnamed (O_TMPFILE) until sync links it as .NAME.XXXXXX where the
 * filesystem allows, renamed over the target by commit.
 */
struct cli_atomic {
	int fd;
	char *path;
	char *tmp;
	int unnamed;
	int noreplace;
};
int cli_atomic_open(struct cli_atomic *a, const char *path);
/*
 * cli_atomic_open for a secret (fvmsnap keygen): the temporary file has
 * exactly mode from its creation on (not 0666 & ~umask; mode != 0), a
 * device or FIFO at path is not written in place, and with noreplace
 * commit never replaces an existing path (RENAME_NOREPLACE, else link(2)):
 * -EEXIST then.
 */
int cli_atomic_open_mode(struct cli_atomic *a, const char *path, mode_t mode, int noreplace);
/* fsync and close the temporary file (commit does it when not done). */
int cli_atomic_sync(struct cli_atomic *a);
int cli_atomic_commit(struct cli_atomic *a);
void cli_atomic_abort(struct cli_atomic *a);
/* fsync the directory holding path, so a rename in it is durable. */
int cli_fsync_dir_of(const char *path);

/*
 * Authenticated snapshots (--key FILE; doc/FORMAT.md 4.6). A key file holds
 * 64 hexadecimal digits and at most one newline (fvmsnap keygen writes
 * one), and must be a regular file of at most CLI_KEY_FILE_MAX bytes that
 * neither group nor others may read or write.
 */
#define CLI_KEY_FILE_MAX 4096

struct cli_key {
	const char *file;             /* as given to --key */
	uint8_t key[FVM_KEY_BYTES];
	uint64_t id;                  /* fvm_key_id */
};

/*
 * Read the key file: 0 with *out pointing at the command's one key (a
 * later --key replaces an earlier one), wiped when the process exits; or,
 * after a message naming the file, EXIT_USAGE for a key file that is not
 * one (too open, not regular, too large, not 64 hex digits), EXIT_SYSTEM
 * when it cannot be read, EXIT_UNSUPPORTED when this build has no
 * authentication (fvm_auth_available() 0).
 */
int cli_key_load(const char *file, const struct cli_key **out);

/*
 * The key as the writer's (wo->key), or nothing when k is NULL. A codec
 * other than none in wo is a usage error: authenticated files cannot be
 * compressed in this format version. 0 or EXIT_USAGE.
 */
int cli_key_writer(const struct cli_key *k, fvm_write_options *wo);

/*
 * After a reader is open and before it loads or reads: with k, give the
 * reader its key (fvm_reader_set_key: another key, a file that is not
 * authenticated, a MAC that does not verify all fail, EXIT_INVALID);
 * without k, an authenticated file is refused with "NAME is authenticated
 * (key id ...): give its key with --key FILE" (EXIT_USAGE). 0 or an exit
 * code after the message.
 */
int cli_key_reader(fvm_reader *r, const char *name, const struct cli_key *k);

/* The refusal of cli_key_reader without a key, for callers that check. */
int cli_key_missing(const char *name, uint64_t key_id);

/*
 * A file-name-safe form of a block or section name (documented in
 * fvmsnap(1), unpack): bytes A-Z a-z 0-9 . _ + - are kept, every other byte
 * (including '/') becomes '_', a leading '.' becomes '_', at most 200 bytes;
 * an empty name gives "unnamed". buf must hold 201 bytes.
 */
void cli_safe_name(const char *name, char *buf);

/* The metadata value "created": current UTC time, RFC 3339, or the time
 * SOURCE_DATE_EPOCH gives (seconds since 1970) when it is set and valid. */
void cli_utc_now(char *buf, size_t len);

#endif
