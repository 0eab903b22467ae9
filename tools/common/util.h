/*
 * Process-wide basics shared by fvmsnap's commands (tools/cli.c and above)
 * and the progress bar: byte sizes for people, a monotonic clock, and the
 * SIGINT/SIGTERM flag through which progress callbacks cancel long
 * operations (so that the library removes its temporary files).
 */
#ifndef FVMSNAP_COMMON_UTIL_H
#define FVMSNAP_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* "512.0 MiB" style, into buf; returns buf. */
const char *util_fmt_bytes(char *buf, size_t len, uint64_t bytes);

/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void);

/*
 * SIGINT/SIGTERM set a flag instead of killing the process (and SIGPIPE is
 * ignored: a closed output pipe is an EPIPE to report). util_interrupted()
 * reads the flag.
 */
void util_install_signals(void);
/* The signal that arrived (SIGINT or SIGTERM), else 0. */
int util_interrupted(void);

#endif
