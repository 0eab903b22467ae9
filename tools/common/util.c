/*
 * The process-wide basics below fvmsnap's commands, its progress bar and the
 * stock QEMU code (see util.h): byte sizes for people, the monotonic clock,
 * and the flag SIGINT/SIGTERM set.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

const char *util_fmt_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[i]);
	return buf;
}

uint64_t util_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

void util_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked read returns EINTR and we stop sooner. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A closed output pipe shows up as EPIPE from write(), reported. */
	signal(SIGPIPE, SIG_IGN);
}

int util_interrupted(void)
{
	return interrupted;
}
