/*
 * A small QMP client (QEMU Machine Protocol over a unix socket) for the
 * commands that drive a QEMU (restore, save): connect with a deadline,
 * negotiate capabilities, run a command and get its one-line reply,
 * skipping the asynchronous events QEMU sends in between. Replies are
 * kept as text; callers look for the fields they need.
 */
#ifndef FVMSNAP_COMMON_QMP_H
#define FVMSNAP_COMMON_QMP_H

#include <stddef.h>

struct qmp {
	int fd;
	char buf[65536];        /* bytes received and not yet returned */
	size_t len;
};

/*
 * Connect to path; with alive (a QEMU just started), retry until
 * deadline_ms (qmp_now_ms() based) while the socket does not exist yet or
 * refuses and alive(ctx) says the QEMU is still there; without, once. Read the
 * greeting and send qmp_capabilities. 0, or -errno (-ETIMEDOUT, -ECHILD
 * when alive() said no, -EPROTO for a reply that is not QMP).
 */
int qmp_connect(struct qmp *q, const char *path, long deadline_ms,
		int (*alive)(void *ctx), void *ctx);

/*
 * Send one command (a JSON object, e.g. {"execute":"query-status"}) and
 * put its reply line ({"return": ...} or {"error": ...}) in reply. 0 for
 * a return, -EREMOTEIO for an error reply (reply holds it), -errno else.
 */
int qmp_command(struct qmp *q, const char *json, char *reply, size_t cap,
		long deadline_ms);

/*
 * qmp_command with descriptor fd passed along (SCM_RIGHTS), for getfd and
 * add-fd; fd < 0 passes none. QEMU keeps its own copy: the caller still
 * owns fd.
 */
int qmp_command_fd(struct qmp *q, const char *json, int fd, char *reply, size_t cap,
		   long deadline_ms);

void qmp_close(struct qmp *q);

/* The string value of "key": "value" in a reply line, into out; 0 or -1. */
int qmp_string(const char *reply, const char *key, char *out, size_t cap);

/* Milliseconds on the monotonic clock, for deadlines. */
long qmp_now_ms(void);

#endif
