/*
 * Error detail: one per thread, set where an error is raised, read with
 * fvm_error_detail() and fvm_error_errno(). fvm_err() formats the detail and
 * returns the code so that a check reads as `return fvm_err(FVM_ECORRUPT,
 * "...", ...)`. Every public entry point begins with fvm_api_begin() and
 * returns through fvm_api_end(), so a caller never sees a stale detail: not
 * from an earlier call, nor from a fallback inside a call that succeeded.
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
/*
 * FVM_EIO (FVM_ENOMEM for ENOMEM) with ": strerror(err)" appended; err is
 * kept for fvm_error_errno().
 */
int fvm_err_sys(int err, const char *fmt, ...) FVM_PRINTF(2, 3);
void fvm_err_clear(void);
/*
 * A caller's callback (progress, device state) returned rc != 0 to stop.
 * Callers clear the detail before invoking one; if the callback then set
 * its own error with fvm_error_set(), that stands (its code when negative,
 * else FVM_ECANCELED); otherwise the detail is formatted from fmt and the
 * result is FVM_ECANCELED.
 */
int fvm_err_callback(int rc, const char *fmt, ...) FVM_PRINTF(2, 3);

/*
 * An error carried from the thread that raised it to the one that returns
 * it (a pool's worker, a handler thread): fvm_err_keep() takes this
 * thread's detail and errno with rc, unless k holds an error already (the
 * first one stands; callers serialize with their own lock), and
 * fvm_err_raise() sets them again, as they were, on the calling thread and
 * returns the code (0, detail untouched, when nothing was kept).
 */
struct fvm_err_kept {
	int rc, errnum;
	char detail[1024];
};
void fvm_err_keep(struct fvm_err_kept *k, int rc);
int fvm_err_raise(const struct fvm_err_kept *k);

static inline void fvm_api_begin(void)
{
	fvm_err_clear();
}

static inline int fvm_api_end(int rc)
{
	if (rc >= 0)
		fvm_err_clear();
	return rc;
}

#endif
