/*
 * Progress bar of the long fvmsnap operations: on stderr, only when stderr
 * is a terminal (or --progress forces it), never when piped; with rate and
 * ETA, or with bytes done and rate only when the total is unknown (0, an
 * input from a pipe). progress_cb is an fvm_progress_fn: it also cancels the operation
 * when SIGINT/SIGTERM arrived (see util_install_signals), whether or not a
 * bar is drawn.
 */
#ifndef FVMSNAP_COMMON_PROGRESS_H
#define FVMSNAP_COMMON_PROGRESS_H

#include <stdint.h>

enum progress_mode {
	PROGRESS_AUTO = 0,  /* draw when stderr is a TTY */
	PROGRESS_NEVER = 1, /* --quiet */
	PROGRESS_ALWAYS = 2 /* --progress */
};

struct progress {
	const char *label;
	int enabled;
	int drawn;          /* something is on the line and must be ended */
	uint64_t start_ns;
	uint64_t last_ns;
};

void progress_init(struct progress *p, const char *label, int mode);
int progress_cb(void *ctx, uint64_t done, uint64_t total);
/* End the bar's line (if drawn); call before printing anything else. */
void progress_done(struct progress *p);
/* End the line of whatever bar is drawn now (used by the error printers). */
void progress_clear_current(void);

#endif
