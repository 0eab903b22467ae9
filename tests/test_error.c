/*
 * Unit tests of lib/error.c's carried errors (fvm_err_keep, fvm_err_raise):
 * what the loader's workers, the frame decoders and the lazy load's handler
 * use to return a failure on the caller's thread. The code, the detail
 * (byte for byte: strerror once, not appended again) and the errno must
 * arrive as the raising thread had them; the first error stands.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"

static struct fvm_err_kept kept;
static char raised[1024];

static void *worker(void *arg)
{
	int rc;

	(void)arg;
	rc = fvm_err_sys(EIO, "%s: payload at offset 0x%x", "t.fvm", 0x3000);
	snprintf(raised, sizeof(raised), "%s", fvm_error_detail());
	fvm_err_keep(&kept, rc);
	/* a later failure does not replace the first */
	fvm_err_keep(&kept, fvm_err(FVM_ECORRUPT, "second"));
	return NULL;
}

static void test_carried(void **state)
{
	pthread_t t;

	(void)state;
	memset(&kept, 0, sizeof(kept));
	fvm_err_clear();
	assert_int_equal(pthread_create(&t, NULL, worker, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* nothing crossed by itself: this thread's detail is its own */
	assert_string_equal(fvm_error_detail(), "");
	assert_int_equal(fvm_err_raise(&kept), FVM_EIO);
	assert_string_equal(fvm_error_detail(), raised);
	assert_string_equal(fvm_error_detail(), "t.fvm: payload at offset 0x3000: Input/output error");
	assert_int_equal(fvm_error_errno(), EIO);
}

static void test_nothing_kept(void **state)
{
	struct fvm_err_kept none;

	(void)state;
	memset(&none, 0, sizeof(none));
	fvm_err(FVM_EINVAL, "this thread's own");
	fvm_err_keep(&none, 0); /* not an error: nothing kept */
	assert_int_equal(fvm_err_raise(&none), 0);
	assert_string_equal(fvm_error_detail(), "this thread's own");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_carried),
		cmocka_unit_test(test_nothing_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
