/*
 * Error codes, their fixed texts, and the per-thread detail and errno.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static __thread char detail[1024];
static __thread int detail_errno;

const char *fvm_strerror(int code)
{
	switch (code) {
	case FVM_OK: return "success";
	case FVM_EINVAL: return "invalid argument";
	case FVM_ENOMEM: return "out of memory";
	case FVM_EIO: return "I/O error";
	case FVM_EMAGIC: return "not a libfastvm snapshot";
	case FVM_EVERSION: return "unsupported format version";
	case FVM_EFEATURE: return "unsupported incompatible feature";
	case FVM_ETRUNCATED: return "file is truncated";
	case FVM_ECHECKSUM: return "checksum mismatch";
	case FVM_ECORRUPT: return "corrupt structure";
	case FVM_ERANGE: return "offset or length out of range";
	case FVM_EMAPPING: return "memory map does not match the snapshot";
	case FVM_ECANCELED: return "canceled";
	case FVM_ESTATE: return "call not allowed in this state";
	case FVM_ENOTFOUND: return "not found";
	case FVM_EUNSUPPORTED: return "not supported on this system";
	case FVM_ECHANGED: return "disk changed since the snapshot";
	case FVM_EAUTH: return "authentication failed";
	}
	return "unknown error";
}

const char *fvm_error_detail(void)
{
	return detail;
}

int fvm_error_errno(void)
{
	return detail_errno;
}

void fvm_err_clear(void)
{
	detail[0] = '\0';
	detail_errno = 0;
}

static void vset(int err, const char *fmt, va_list ap)
{
	size_t n;

	vsnprintf(detail, sizeof(detail), fmt, ap);
	detail_errno = err;
	if (err) {
		n = strlen(detail);
		snprintf(detail + n, sizeof(detail) - n, ": %s", strerror(err));
	}
}

int fvm_err(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(0, fmt, ap);
	va_end(ap);
	return code;
}

int fvm_err_sys(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(err, fmt, ap);
	va_end(ap);
	return err == ENOMEM ? FVM_ENOMEM : FVM_EIO;
}

int fvm_error_set(int code, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(errnum > 0 ? errnum : 0, fmt ? fmt : "", ap);
	va_end(ap);
	return code;
}

void fvm_err_keep(struct fvm_err_kept *k, int rc)
{
	if (k->rc || !rc)
		return;
	k->rc = rc;
	k->errnum = detail_errno;
	snprintf(k->detail, sizeof(k->detail), "%s", detail);
}

int fvm_err_raise(const struct fvm_err_kept *k)
{
	if (!k->rc)
		return 0;
	snprintf(detail, sizeof(detail), "%s", k->detail);
	detail_errno = k->errnum;
	return k->rc;
}

int fvm_err_callback(int rc, const char *fmt, ...)
{
	va_list ap;

	if (detail[0])
		return rc < 0 && rc >= FVM_EAUTH ? rc : FVM_ECANCELED;
	va_start(ap, fmt);
	vset(0, fmt, ap);
	va_end(ap);
	return FVM_ECANCELED;
}
