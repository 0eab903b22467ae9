/*
 * Errors of the stock QEMU code go through libfastvm's one error module:
 * a failure returns fvm_error_set(FVM_E..., errnum, "file: structure at
 * offset: what is wrong"), which sets this thread's detail
 * (fvm_error_detail()) and errno (fvm_error_errno()), so that fvmsnap
 * reports the library's errors and the stock code's the same way. A failed
 * libfastvm call's detail and errno are passed on as they are. This header
 * only names the code of a failed system call.
 */
#ifndef STOCK_ERROR_H
#define STOCK_ERROR_H

#include <errno.h>

#include "fastvm/fastvm.h"

/* For fvm_error_set(stock_sys_code(err), err, ...): ENOMEM or any other. */
static inline int stock_sys_code(int err)
{
	return err == ENOMEM ? FVM_ENOMEM : FVM_EIO;
}

#endif
