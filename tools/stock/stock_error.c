/*
 * Per-thread error detail of the stock QEMU code (see stock_error.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stock_error.h"

static __thread char detail[1024];

const char *stock_error_detail(void)
{
	return detail;
}

int stock_err(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return code;
}

int stock_err_sys(int err, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	n = strlen(detail);
	snprintf(detail + n, sizeof(detail) - n, ": %s", strerror(err));
	return err == ENOMEM ? FVM_ENOMEM : FVM_EIO;
}
