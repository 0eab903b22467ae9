/*
 * Byte sources for the stock QEMU readers (see source.h): one bounded
 * buffer for the many small fields of a migration stream, direct reads for
 * page payload, and the offset of every byte for error messages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "source.h"
#include "stock_error.h"

/*
 * 256 KiB: large enough that the small fields of a stream cost few system
 * calls, small enough to be irrelevant next to the page batches. Reads of
 * at least half of it bypass it (page payload lands where it is needed).
 */
#define SRC_BUF_SIZE (256u * 1024)

enum src_kind { SRC_FD_SEQ, SRC_FD_SEEK, SRC_MEM, SRC_QCOW2 };

struct stock_source {
	enum src_kind kind;
	char *name;
	int fd;
	const uint8_t *mem;
	struct stock_qcow2 *q;
	size_t qindex;
	uint64_t size;          /* UINT64_MAX for SRC_FD_SEQ */
	uint64_t base;          /* source offset of buf[0] */
	size_t bpos, blen;
	struct stock_buf *capture;
	uint8_t buf[];
};

int stock_buf_append(struct stock_buf *b, const void *data, size_t len)
{
	size_t need, cap;
	uint8_t *p;

	if (len == 0)
		return 0;
	if (len > b->max || b->len > b->max - len)
		return fvm_error_set(FVM_ERANGE, 0, "kept bytes exceed the limit of %zu bytes",
				     b->max);
	need = b->len + len;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		p = realloc(b->data, cap);
		if (!p)
			return fvm_error_set(FVM_ENOMEM, ENOMEM, "buffer of %zu bytes", cap);
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

void stock_buf_release(struct stock_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int src_new(struct stock_source **out, enum src_kind kind,
		   const char *name, size_t bufsize)
{
	struct stock_source *s = calloc(1, sizeof(*s) + bufsize);

	if (!s)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: source buffer", name);
	s->name = strdup(name ? name : "(input)");
	if (!s->name) {
		free(s);
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: source name", name);
	}
	s->kind = kind;
	s->fd = -1;
	*out = s;
	return 0;
}

int stock_source_open_fd(struct stock_source **out, int fd, const char *name)
{
	struct stat st;
	int err;

	if (fstat(fd, &st) < 0)
		return fvm_error_set(stock_sys_code(errno), errno, "%s: fstat", name);
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end < 0)
			return fvm_error_set(stock_sys_code(errno), errno, "%s: lseek", name);
		if ((err = src_new(out, SRC_FD_SEEK, name, SRC_BUF_SIZE)))
			return err;
		(*out)->size = (uint64_t)end;
	} else {
		if ((err = src_new(out, SRC_FD_SEQ, name, SRC_BUF_SIZE)))
			return err;
		(*out)->size = UINT64_MAX;
	}
	(*out)->fd = fd;
	return 0;
}

int stock_source_open_mem(struct stock_source **out, const void *buf,
			  size_t len, const char *name)
{
	int err;

	/* A small buffer, so that the fuzzer also crosses refill boundaries. */
	if ((err = src_new(out, SRC_MEM, name, 4096)))
		return err;
	(*out)->mem = buf;
	(*out)->size = len;
	return 0;
}

int stock_source_open_qcow2(struct stock_source **out, struct stock_qcow2 *q,
			    size_t index, const char *name)
{
	const struct stock_qcow2_snapshot *sn = stock_qcow2_snapshot(q, index);
	int err;

	if (!sn)
		return fvm_error_set(FVM_ENOTFOUND, 0, "%s: no snapshot %zu", name, index);
	if ((err = src_new(out, SRC_QCOW2, name, SRC_BUF_SIZE)))
		return err;
	(*out)->q = q;
	(*out)->qindex = index;
	(*out)->size = sn->vm_state_size;
	return 0;
}

void stock_source_free(struct stock_source *s)
{
	if (!s)
		return;
	free(s->name);
	free(s);
}

const char *stock_source_name(const struct stock_source *s)
{
	return s->name;
}

uint64_t stock_source_offset(const struct stock_source *s)
{
	return s->base + s->bpos;
}

int stock_source_seekable(const struct stock_source *s)
{
	return s->kind != SRC_FD_SEQ;
}

uint64_t stock_source_size(const struct stock_source *s)
{
	return s->size;
}

static size_t src_bufsize(const struct stock_source *s)
{
	return s->kind == SRC_MEM ? 4096 : SRC_BUF_SIZE;
}

/*
 * Up to len bytes at off from the backend; *got 0 means the end. For a
 * sequential fd, off is always the offset the fd is at.
 */
static int raw_read(struct stock_source *s, void *buf, size_t len,
		    uint64_t off, size_t *got)
{
	ssize_t n;
	int err;

	*got = 0;
	if (s->kind != SRC_FD_SEQ) {
		if (off >= s->size)
			return 0;
		if (len > s->size - off)
			len = (size_t)(s->size - off);
	}
	switch (s->kind) {
	case SRC_MEM:
		memcpy(buf, s->mem + off, len);
		*got = len;
		return 0;
	case SRC_QCOW2:
		err = stock_qcow2_vmstate_pread(s->q, s->qindex, buf, len, off);
		if (err < 0)
			return err;
		*got = len;
		return 0;
	case SRC_FD_SEEK:
		do
			n = pread(s->fd, buf, len, (off_t)off);
		while (n < 0 && errno == EINTR);
		break;
	default:
		do
			n = read(s->fd, buf, len);
		while (n < 0 && errno == EINTR);
		break;
	}
	if (n < 0)
		return fvm_error_set(stock_sys_code(errno), errno, "%s: read at offset %llu", s->name,
				     (unsigned long long)off);
	*got = (size_t)n;
	return 0;
}

/* Drop the consumed buffer and refill it; *got 0 at the end. */
static int refill(struct stock_source *s, size_t *got)
{
	int err;

	s->base += s->blen;
	s->bpos = s->blen = 0;
	err = raw_read(s, s->buf, src_bufsize(s), s->base, got);
	if (!err)
		s->blen = *got;
	return err;
}

static int truncated(struct stock_source *s, const char *what, size_t len)
{
	return fvm_error_set(FVM_ETRUNCATED, 0,
			     "%s: offset %llu: input ends inside %s (%zu bytes needed)",
			     s->name, (unsigned long long)stock_source_offset(s),
			     what ? what : "a read", len);
}

int stock_source_read(struct stock_source *s, void *buf, size_t len,
		      const char *what)
{
	uint8_t *dst = buf;
	size_t left = len, got, n;
	int err;

	while (left) {
		n = s->blen - s->bpos;
		if (n) {
			if (n > left)
				n = left;
			memcpy(dst, s->buf + s->bpos, n);
		} else if (left >= src_bufsize(s) / 2) {
			/* Page payload: straight into place, no copy. */
			s->base += s->blen;
			s->bpos = s->blen = 0;
			if ((err = raw_read(s, dst, left, s->base, &got)))
				return err;
			if (!got)
				return truncated(s, what, left);
			n = got;
			s->base += n;
			if (s->capture && (err = stock_buf_append(s->capture, dst, n)))
				return err;
			dst += n;
			left -= n;
			continue;
		} else {
			if ((err = refill(s, &got)))
				return err;
			if (!got)
				return truncated(s, what, left);
			continue;
		}
		if (s->capture && (err = stock_buf_append(s->capture, dst, n)))
			return err;
		s->bpos += n;
		dst += n;
		left -= n;
	}
	return 0;
}

int stock_source_peek(struct stock_source *s, int *byte)
{
	size_t got;
	int err;

	if (s->bpos == s->blen) {
		if ((err = refill(s, &got)))
			return err;
		if (!got) {
			*byte = -1;
			return 0;
		}
	}
	*byte = s->buf[s->bpos];
	return 0;
}

int stock_source_peek_bytes(struct stock_source *s, void *buf, size_t len,
			    const char *what)
{
	size_t have, got;
	int err;

	if (len > 16)
		return fvm_error_set(FVM_EINVAL, 0, "%s: peek of %zu bytes", s->name, len);
	while ((have = s->blen - s->bpos) < len) {
		/* Move the unread tail to the front and read behind it. */
		memmove(s->buf, s->buf + s->bpos, have);
		s->base += s->bpos;
		s->bpos = 0;
		s->blen = have;
		if ((err = raw_read(s, s->buf + have, src_bufsize(s) - have,
				    s->base + have, &got)))
			return err;
		if (!got)
			return truncated(s, what, len);
		s->blen += got;
	}
	memcpy(buf, s->buf + s->bpos, len);
	return 0;
}

int stock_source_read_some(struct stock_source *s, void *buf, size_t len,
			   size_t *got)
{
	size_t n;
	int err;

	*got = 0;
	if (s->bpos == s->blen) {
		if ((err = refill(s, &n)))
			return err;
		if (!n)
			return 0;
	}
	n = s->blen - s->bpos;
	if (n > len)
		n = len;
	if ((err = stock_source_read(s, buf, n, NULL)))
		return err;
	*got = n;
	return 0;
}

int stock_source_u8(struct stock_source *s, uint8_t *v, const char *what)
{
	return stock_source_read(s, v, 1, what);
}

int stock_source_be16(struct stock_source *s, uint16_t *v, const char *what)
{
	uint8_t b[2];
	int err = stock_source_read(s, b, 2, what);

	if (!err)
		*v = (uint16_t)(b[0] << 8 | b[1]);
	return err;
}

int stock_source_be32(struct stock_source *s, uint32_t *v, const char *what)
{
	uint8_t b[4];
	int err = stock_source_read(s, b, 4, what);

	if (!err)
		*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
		     (uint32_t)b[2] << 8 | b[3];
	return err;
}

int stock_source_be64(struct stock_source *s, uint64_t *v, const char *what)
{
	uint32_t hi, lo;
	int err;

	if ((err = stock_source_be32(s, &hi, what)) ||
	    (err = stock_source_be32(s, &lo, what)))
		return err;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

void stock_source_capture(struct stock_source *s, struct stock_buf *b)
{
	s->capture = b;
}

int stock_source_seek(struct stock_source *s, uint64_t off)
{
	if (!stock_source_seekable(s))
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: cannot seek a pipe", s->name);
	if (off > s->size)
		return fvm_error_set(FVM_ERANGE, 0, "%s: seek to offset %llu past the end (%llu)",
				     s->name, (unsigned long long)off,
				     (unsigned long long)s->size);
	s->base = off;
	s->bpos = s->blen = 0;
	return 0;
}

int stock_source_pread(struct stock_source *s, void *buf, size_t len,
		       uint64_t off, const char *what)
{
	uint8_t *dst = buf;
	size_t got;
	int err;

	if (!stock_source_seekable(s))
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: %s needs a seekable input",
				     s->name, what);
	if (off > s->size || len > s->size - off)
		return fvm_error_set(FVM_ETRUNCATED, 0,
				     "%s: %s at offset %llu+%zu past the end (%llu)",
				     s->name, what, (unsigned long long)off, len,
				     (unsigned long long)s->size);
	while (len) {
		if ((err = raw_read(s, dst, len, off, &got)))
			return err;
		if (!got)
			return fvm_error_set(FVM_ETRUNCATED, 0, "%s: %s at offset %llu: file shrank",
					     s->name, what, (unsigned long long)off);
		dst += got;
		off += got;
		len -= got;
	}
	return 0;
}
