/*
 * Error detail: one per thread, set where an error is raised, read with
 * fvm_error_detail(). fvm_err() formats the detail and returns the code so
 * that a check reads as `return fvm_err(FVM_ECORRUPT, "...", ...)`.
 */
#ifndef FVM_ERROR_H
#define FVM_ERROR_H

#include "fastvm/fastvm.h"

#if defined(__GNUC__)
#define FVM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FVM_PRINTF(a, b)
#endif

int fvm_err(int code, const char *fmt, ...) FVM_PRINTF(2, 3);
/* Like fvm_err(FVM_EIO, ...) with ": strerror(errno)" appended. */
int fvm_err_sys(int err, const char *fmt, ...) FVM_PRINTF(2, 3);
void fvm_err_clear(void);

#endif
