/*
 * Shared helpers of the fvmsnap subcommands: exit codes, error reporting in
 * one format, size parsing, small I/O helpers. Everything the CLI knows about
 * the library comes from the public header; tools never include lib/.
 */
#ifndef FVMSNAP_CLI_H
#define FVMSNAP_CLI_H

#include <stdint.h>
#include <stdio.h>

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

/* Exit code for a FVM_E* code. */
int cli_exit_code(int fvm_code);

/*
 * "fvmsnap pack: <what>: <fvm_strerror>: <fvm_error_detail>" on stderr
 * (the detail is left out when empty); returns cli_exit_code(code).
 */
int cli_fail(const char *what, int code);
/*
 * cli_fail with the detail given, for the stock QEMU code that keeps its
 * own (stock_error_detail()). For FVM_EMAGIC, not_what replaces
 * fvm_strerror's "not a libfastvm snapshot" when not NULL, so that the
 * message says what the input is not (CLI_NOT_STOCK_INPUT, "not a qcow2
 * image"). Returns cli_exit_code(code).
 */
int cli_fail_detail(const char *what, int code, const char *detail,
		    const char *not_what);
/* The FVM_EMAGIC text of the commands reading stock QEMU inputs. */
#define CLI_NOT_STOCK_INPUT \
	"not a QEMU migration stream, mapped-ram file or qcow2 image"
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
 * Run-length histograms (fvmsnap inspect): bucket k holds runs of
 * 2^k .. 2^(k+1)-1 pages.
 */
#define CLI_RUN_BUCKETS 64
unsigned cli_run_bucket(uint64_t pages);     /* pages >= 1 */
uint64_t cli_run_bucket_max(unsigned k);
/* "1" or "MIN-MAX", for the text tables */
void cli_run_bucket_label(char *buf, size_t len, unsigned k);

/*
 * Parse a byte size: decimal digits with an optional binary suffix K, M, G,
 * T (also KiB, MiB, ... and lower case). Returns 0, or -1 when the text is
 * not a size or overflows 64 bits.
 */
int cli_parse_size(const char *s, uint64_t *out);
/* Parse a non-negative decimal integer up to max; 0 or -1. */
int cli_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* "512.0 MiB" style, into buf; returns buf. */
const char *cli_fmt_bytes(char *buf, size_t len, uint64_t bytes);

/* Monotonic clock in nanoseconds. */
uint64_t cli_now_ns(void);

/*
 * SIGINT/SIGTERM set a flag instead of killing the process, so that
 * progress callbacks can cancel and the library removes its temporary
 * files. cli_interrupted() reads the flag.
 */
void cli_install_signals(void);
int cli_interrupted(void);

/* write() all of buf, retrying on EINTR and short writes; 0 or -errno. */
int cli_write_all(int fd, const void *buf, size_t len);

/*
 * A file written atomically: a temporary file beside path, renamed over
 * path by cli_atomic_commit() after fsync; cli_atomic_abort() removes it.
 * Functions return 0 or -errno.
 */
struct cli_atomic {
	int fd;
	char *path;
	char *tmp;
};
int cli_atomic_open(struct cli_atomic *a, const char *path);
/* fsync and close the temporary file (commit does it when not done). */
int cli_atomic_sync(struct cli_atomic *a);
int cli_atomic_commit(struct cli_atomic *a);
void cli_atomic_abort(struct cli_atomic *a);
/* fsync the directory holding path, so a rename in it is durable. */
int cli_fsync_dir_of(const char *path);

/*
 * A file-name-safe form of a block or section name (documented in
 * fvmsnap(1), unpack): bytes A-Z a-z 0-9 . _ + - are kept, every other byte
 * (including '/') becomes '_', a leading '.' becomes '_', at most 200 bytes;
 * an empty name gives "unnamed". buf must hold 201 bytes.
 */
void cli_safe_name(const char *name, char *buf);

/*
 * Print s with C escapes so that one value stays one line of ASCII:
 * backslash, tab, newline, CR as \\ \t \n \r, other bytes outside
 * 0x20..0x7e as \xHH.
 */
void cli_print_escaped(FILE *f, const char *s);

/*
 * The one JSON string writer of every fvmsnap JSON document
 * (doc/fvmsnap-json.md): the string in double quotes; valid UTF-8 passes
 * through; '"' and '\\' are escaped, newline, tab and CR as \n \t \r, other
 * bytes below 0x20 and 0x7f as \u00XX; a byte that is not part of valid
 * UTF-8 (also an overlong form or a surrogate) as \u00XX, its Latin-1
 * reading. The output is valid JSON for any bytes. The _mem form takes a
 * length (NUL bytes in it become \u0000).
 */
void cli_json_str(FILE *f, const char *s);
void cli_json_mem(FILE *f, const void *s, size_t len);

/*
 * Text output of a name that comes from an input (snapshot, block and
 * device names), so that it cannot drive the terminal: valid UTF-8 is
 * printed as it is, except control characters (below 0x20, 0x7f, and
 * U+0080..U+009F), which become '?'; so does every byte that is not part of
 * valid UTF-8. Then spaces up to width characters (none when width <= 0).
 * Returns the number of characters printed before the padding.
 */
int cli_print_safe(FILE *f, const char *s, int width);
int cli_print_safe_mem(FILE *f, const void *s, size_t len, int width);

/* The metadata value "created": current UTC time, RFC 3339. */
void cli_utc_now(char *buf, size_t len);

#endif
