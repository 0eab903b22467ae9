/*
 * QMP client (qmp.h). QMP sends one JSON object per line (CRLF); replies
 * to commands carry "return" or "error", events carry "event" and are
 * skipped here.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp.h"

long qmp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next complete line (without CRLF) into line; 0 or -errno. */
static int read_line(struct qmp *q, char *line, size_t cap, long deadline)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		struct pollfd p = { q->fd, POLLIN, 0 };
		long left;
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - q->buf);

			if (l && q->buf[l - 1] == '\r')
				l--;
			if (l >= cap)
				l = cap - 1;
			memcpy(line, q->buf, l);
			line[l] = '\0';
			l = (size_t)(nl - q->buf) + 1;
			memmove(q->buf, q->buf + l, q->len - l);
			q->len -= l;
			return 0;
		}
		if (q->len == sizeof(q->buf))
			return -EMSGSIZE;
		left = deadline - qmp_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET; /* QEMU closed the socket (it exited) */
		q->len += (size_t)n;
	}
}

static int send_all(int fd, const char *s)
{
	size_t len = strlen(s), done = 0;

	while (done < len) {
		ssize_t n = send(fd, s + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

/*
 * The command's first byte with fd attached (SCM_RIGHTS): QEMU queues the
 * descriptors that arrive with a command's bytes for getfd/add-fd to take.
 */
static int send_fd(int sock, const char *s, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = { (void *)s, 1 };
	struct msghdr m = { 0 };
	struct cmsghdr *c;

	memset(&u, 0, sizeof(u));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.buf;
	m.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);

		if (n == 1)
			return send_all(sock, s + 1);
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int qmp_command(struct qmp *q, const char *json, char *reply, size_t cap, long deadline)
{
	return qmp_command_fd(q, json, -1, reply, cap, deadline);
}

int qmp_command_fd(struct qmp *q, const char *json, int fd, char *reply, size_t cap,
		   long deadline)
{
	int err;

	if (!*json)
		return -EINVAL;
	if ((err = fd >= 0 ? send_fd(q->fd, json, fd) : send_all(q->fd, json)) ||
	    (err = send_all(q->fd, "\n")))
		return err;
	for (;;) {
		if ((err = read_line(q, reply, cap, deadline)))
			return err;
		if (strstr(reply, "\"return\""))
			return 0;
		if (strstr(reply, "\"error\""))
			return -EREMOTEIO;
		/* an event ({"event": ...}): not the reply */
	}
}

int qmp_connect(struct qmp *q, const char *path, long deadline,
		int (*alive)(void *ctx), void *ctx)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char line[4096];
	int err;

	q->len = 0;
	q->fd = -1;
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	for (;;) {
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd < 0)
			return -errno;
		if (connect(q->fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		err = errno;
		close(q->fd);
		q->fd = -1;
		if ((err != ENOENT && err != ECONNREFUSED) || !alive)
			return -err;
		if (!alive(ctx))
			return -ECHILD;
		if (qmp_now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
	/* the greeting: {"QMP": {"version": ...}} */
	if ((err = read_line(q, line, sizeof(line), deadline)))
		goto fail;
	if (!strstr(line, "\"QMP\"")) {
		err = -EPROTO;
		goto fail;
	}
	err = qmp_command(q, "{\"execute\":\"qmp_capabilities\"}", line, sizeof(line), deadline);
	if (!err)
		return 0;
fail:
	close(q->fd);
	q->fd = -1;
	return err;
}

void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
}

int qmp_string(const char *reply, const char *key, char *out, size_t cap)
{
	char pat[128];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	p = strstr(reply, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	while (*p == ' ' || *p == ':')
		p++;
	if (*p != '"')
		return -1;
	e = strchr(++p, '"');
	if (!e || (size_t)(e - p) >= cap)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 0;
}
