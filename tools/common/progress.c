/*
 * Progress bar on stderr (see progress.h). Redrawn at most ten times a
 * second so that a callback per chunk costs nothing measurable. With an
 * unknown total (0: input from a pipe) it shows bytes done and the rate
 * only, without bar, percentage or ETA.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

#define REDRAW_NS 100000000ull
#define BAR_WIDTH 30
#define MIN_RATE_SECS 0.25

/* The bar being drawn, so that an error message starts on a fresh line. */
static struct progress *current;

void progress_init(struct progress *p, const char *label, int mode)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	if (mode == PROGRESS_ALWAYS)
		p->enabled = 1;
	else if (mode == PROGRESS_AUTO)
		p->enabled = isatty(STDERR_FILENO);
	p->start_ns = util_now_ns();
}

static void fmt_eta(char *buf, size_t len, double secs)
{
	unsigned long s;

	if (secs < 0 || secs > 359999) {
		snprintf(buf, len, "--:--");
		return;
	}
	s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%02lu:%02lu", s / 60, s % 60);
}

static void draw(struct progress *p, uint64_t done, uint64_t total, uint64_t now)
{
	char bar[BAR_WIDTH + 1], eta[32], bytes[32];
	double frac = total ? (double)done / (double)total : 0;
	double secs = (double)(now - p->start_ns) / 1e9;
	double rate = secs > 0 ? (double)done / secs : 0;
	unsigned fill, i;

	if (!total) {
		char rs[32] = "       -";

		/*
		 * Unknown total (input from a pipe): a percentage and an ETA
		 * would be made up, so show only how far we got and how fast.
		 * The rate of the first moments says nothing (a few KiB in a
		 * few microseconds), so it is shown only after a while.
		 */
		if (secs >= MIN_RATE_SECS)
			snprintf(rs, sizeof(rs), "%8.1f", rate / 1e6);
		fprintf(stderr, "\r%s %10s %s MB/s\033[K", p->label,
			util_fmt_bytes(bytes, sizeof(bytes), done), rs);
		fflush(stderr);
		p->drawn = 1;
		current = p;
		return;
	}
	if (frac > 1)
		frac = 1;
	fill = (unsigned)(frac * BAR_WIDTH);
	for (i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[BAR_WIDTH] = '\0';
	fmt_eta(eta, sizeof(eta), rate > 0 ? (double)(total - (done < total ? done : total)) / rate : -1);
	/* \r and erase-to-end: one line, rewritten in place. */
	fprintf(stderr, "\r%s [%s] %3u%% %8.1f MB/s ETA %s\033[K",
		p->label, bar, (unsigned)(frac * 100), rate / 1e6, eta);
	fflush(stderr);
	p->drawn = 1;
	current = p;
}

int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;

	if (util_interrupted())
		return 1;
	if (p && p->enabled) {
		uint64_t now = util_now_ns();

		if (!p->drawn || now - p->last_ns >= REDRAW_NS ||
		    (done >= total && total)) {
			p->last_ns = now;
			draw(p, done, total, now);
		}
	}
	return 0;
}

void progress_done(struct progress *p)
{
	if (p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->drawn = 0;
	}
	if (current == p)
		current = NULL;
}

void progress_clear_current(void)
{
	if (current)
		progress_done(current);
}
