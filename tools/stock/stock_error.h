/*
 * Error detail for the tool-side stock QEMU code. Codes are the public
 * FVM_E* values so that fvmsnap reports every error the same way; the
 * detail says file, structure and offset, like the library's.
 */
#ifndef STOCK_ERROR_H
#define STOCK_ERROR_H

#include "fastvm/fastvm.h"

#if defined(__GNUC__)
#define STOCK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define STOCK_PRINTF(a, b)
#endif

/* Set the detail and return code: `return stock_err(FVM_ECORRUPT, ...)`. */
int stock_err(int code, const char *fmt, ...) STOCK_PRINTF(2, 3);
/* FVM_EIO (FVM_ENOMEM for ENOMEM) with ": strerror(err)" appended. */
int stock_err_sys(int err, const char *fmt, ...) STOCK_PRINTF(2, 3);
const char *stock_error_detail(void);

#endif
