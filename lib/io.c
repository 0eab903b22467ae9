/*
 * Raw I/O (io.h): full reads that retry EINTR and short reads, and report
 * a short file as FVM_ETRUNCATED with the offset where it ended.
 */
#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "io.h"

int fvm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *file,
		   const char *what)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(fd, p + done, n - done, (off_t)(off + done));

		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return fvm_err_sys(errno, "%s: reading %s at offset 0x%" PRIx64,
					   file, what, off + done);
		if (k == 0)
			return fvm_err(FVM_ETRUNCATED, "%s: file ends at offset 0x%" PRIx64
				       " inside %s at offset 0x%" PRIx64, file, off + done,
				       what, off);
		done += (size_t)k;
	}
	return 0;
}

int fvm_src_read(struct fvm_src *s, void *buf, size_t n, const char *what)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc;

	if (s->seekable) {
		rc = fvm_pread_full(s->fd, buf, n, s->pos, s->file, what);
		if (!rc)
			s->pos += n;
		return rc;
	}
	while (done < n) {
		ssize_t k = read(s->fd, p + done, n - done);

		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return fvm_err_sys(errno, "%s: reading %s at offset 0x%" PRIx64,
					   s->file, what, s->pos);
		if (k == 0)
			return fvm_err(FVM_ETRUNCATED, "%s: stream ends at offset 0x%" PRIx64
				       " inside %s", s->file, s->pos, what);
		done += (size_t)k;
		s->pos += (uint64_t)k;
	}
	return 0;
}

uint64_t fvm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
