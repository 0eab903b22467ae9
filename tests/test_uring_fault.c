/*
 * io_uring unavailable or failing in the middle of a load (issue 10,
 * doc/RELIABILITY.md), injected with -Wl,--wrap around liburing's exported
 * calls (tests/meson.build): io_uring_queue_init fails (EPERM, ENOMEM,
 * ENOSYS: the load falls back to pread and succeeds), a completion carries
 * an error, is short, says end of file or EAGAIN, and io_uring_submit_and_wait
 * fails with reads in flight (taken by the kernel) or with reads never
 * submitted. The completions are the kernel's real ones, edited in the CQ
 * ring before the executor (lib/exec_uring.c) reaps them.
 *
 * Every case checks at io_uring_queue_exit that each SQE the kernel took
 * has completed and been reaped: the load never returns while a read into
 * the caller's memory is in flight. A load that succeeds has the bytes
 * written; one that fails says which read failed and why.
 */
#include <errno.h>
#include <liburing.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "fastvm/experimental.h"

#define PAGE 4096u
#define PAGES 2048u /* 8 MiB, 16 KiB reads: hundreds of requests */

/* ------------------------------------------------------------ the wraps */

enum mode {
	M_NONE,
	M_SETUP,         /* io_uring_queue_init returns -fault_errno */
	M_CQE_ERR,       /* completion fault_nth gets res -fault_errno */
	M_CQE_SHORT,     /* completion fault_nth reports half its bytes */
	M_CQE_ZERO,      /* completion fault_nth reports 0 bytes (end of file) */
	M_SUBMIT_TAKEN,  /* call fault_nth submits, then fails: reads in flight */
	M_SUBMIT_LOST,   /* call fault_nth fails, nothing submitted */
	M_SUBMIT_WAIT,   /* as M_SUBMIT_TAKEN, and from then on waiting fails too */
	M_PREADV,        /* preadv call fault_nth fails with fault_errno */
};

static enum mode fault_mode;
static int fault_errno;
static unsigned fault_nth;
static unsigned submit_calls, cqe_seen, injected;
static unsigned cq_scanned; /* absolute CQ index scanned up to */
static int exit_checked, exit_inflight, exit_unreaped;
static unsigned preadv_calls;   /* atomic: the fused reads run on several threads */
static unsigned load_flags;     /* FVM_LOAD_* of the next load() */
static int load_keyed;          /* the next load() is of the authenticated snapshot */

int __real_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int __real___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
			      unsigned submit, unsigned wait_nr, sigset_t *sigmask);
int __wrap___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
			      unsigned submit, unsigned wait_nr, sigset_t *sigmask);
int __real_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
void __real_io_uring_queue_exit(struct io_uring *ring);

int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
ssize_t __real_preadv64(int fd, const struct iovec *iov, int n, off_t off);
ssize_t __wrap_preadv64(int fd, const struct iovec *iov, int n, off_t off);

ssize_t __wrap_preadv64(int fd, const struct iovec *iov, int n, off_t off)
{
	if (fault_mode == M_PREADV &&
	    __atomic_add_fetch(&preadv_calls, 1, __ATOMIC_RELAXED) == fault_nth) {
		__atomic_add_fetch(&injected, 1, __ATOMIC_RELAXED);
		errno = fault_errno;
		return -1;
	}
	return __real_preadv64(fd, iov, n, off);
}
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
void __wrap_io_uring_queue_exit(struct io_uring *ring);

int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	int rc;

	if (fault_mode == M_SETUP) {
		injected++;
		return -fault_errno;
	}
	rc = __real_io_uring_queue_init(entries, ring, flags);
	cq_scanned = 0;
	return rc;
}

/* Edit the completion the fault names, among those not yet reaped. */
static void edit_cqes(struct io_uring *ring)
{
	unsigned head = *ring->cq.khead, tail = io_uring_smp_load_acquire(ring->cq.ktail);

	if ((int)(cq_scanned - head) < 0)
		cq_scanned = head; /* reaped without being seen here: skipped */
	for (; cq_scanned != tail; cq_scanned++) {
		struct io_uring_cqe *cqe = &ring->cq.cqes[cq_scanned & ring->cq.ring_mask];

		if (++cqe_seen != fault_nth)
			continue;
		switch (fault_mode) {
		case M_CQE_ERR:
			cqe->res = -fault_errno;
			break;
		case M_CQE_SHORT:
			if (cqe->res > 1)
				cqe->res /= 2;
			else
				fault_nth++; /* too small to shorten: the next one */
			break;
		case M_CQE_ZERO:
			cqe->res = 0;
			break;
		default:
			return;
		}
		if (cqe_seen == fault_nth)
			injected++;
	}
}

int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	int rc;

	submit_calls++;
	if ((fault_mode == M_SUBMIT_TAKEN || fault_mode == M_SUBMIT_WAIT) &&
	    submit_calls == fault_nth) {
		rc = io_uring_submit(ring); /* the kernel has the reads */
		assert_true(rc >= 0);
		injected++;
		return -fault_errno;
	}
	if (fault_mode == M_SUBMIT_LOST && submit_calls == fault_nth) {
		injected++;
		return -fault_errno;
	}
	rc = __real_io_uring_submit_and_wait(ring, wait_nr);
	if (rc >= 0)
		edit_cqes(ring);
	return rc;
}

/* io_uring_wait_cqe's system call (when no completion is ready yet) */
int __wrap___io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
			      unsigned submit, unsigned wait_nr, sigset_t *sigmask)
{
	if (fault_mode == M_SUBMIT_WAIT && submit_calls >= fault_nth) {
		injected++;
		return -EBADR; /* what the kernel says when it dropped completions */
	}
	return __real___io_uring_get_cqe(ring, cqe_ptr, submit, wait_nr, sigmask);
}

void __wrap_io_uring_queue_exit(struct io_uring *ring)
{
	/*
	 * Each SQE the kernel consumed posts one CQE (no linked or multishot
	 * requests here); the ring started at 0 on both sides.
	 */
	unsigned taken = *ring->sq.khead, posted = *ring->cq.ktail, reaped = *ring->cq.khead;

	exit_checked = 1;
	exit_inflight = (int)(taken - posted);
	exit_unreaped = (int)(posted - reaped);
	__real_io_uring_queue_exit(ring);
}

/* ------------------------------------------------------------ fixture */

static char tmpdir[] = "/tmp/fvm-test-uring-fault-XXXXXX";
static char snap[256], ksnap[256];
static uint8_t *ram, key[FVM_KEY_BYTES];

static int setup(void **state)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint32_t id;

	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	snprintf(snap, sizeof(snap), "%s/snap.fvm", tmpdir);
	ram = malloc((size_t)PAGES * PAGE);
	assert_non_null(ram);
	/* runs of data and zero pages: 1 page in 5 zero */
	for (size_t p = 0; p < PAGES; p++)
		for (size_t i = 0; i < PAGE / 8; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(ram + p * PAGE + i * 8, p % 5 == 3 ? &(uint64_t){ 0 } : &x, 8);
		}
	wo.flags = FVM_WRITE_NO_FSYNC;
	assert_int_equal(fvm_writer_open_path(&w, snap, &wo), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &id), 0);
	assert_int_equal(fvm_writer_write_block(w, id, ram), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	if (fvm_auth_available()) { /* the same bytes, authenticated */
		for (size_t i = 0; i < sizeof(key); i++)
			key[i] = (uint8_t)(i * 37 + 5);
		snprintf(ksnap, sizeof(ksnap), "%s/keyed.fvm", tmpdir);
		wo.key = key;
		assert_int_equal(fvm_writer_open_path(&w, ksnap, &wo), 0);
		assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &id),
				 0);
		assert_int_equal(fvm_writer_write_block(w, id, ram), 0);
		assert_int_equal(fvm_writer_finish(w), 0);
		fvm_writer_free(w);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(snap);
	if (ksnap[0])
		unlink(ksnap);
	rmdir(tmpdir);
	free(ram);
	return 0;
}

struct result {
	int rc;
	fvm_load_stats st;
	char detail[512];
	int same;         /* the destination holds the snapshot's bytes */
};

/* Load the snapshot into fresh memory with the fault set up beforehand. */
static struct result load(enum mode m, int err, unsigned nth, int backend)
{
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_mapping mp = FVM_MAPPING_INIT;
	struct result res = { 0 };
	fvm_reader *r;
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(mem != MAP_FAILED);
	fault_mode = m;
	fault_errno = err;
	fault_nth = nth;
	submit_calls = cqe_seen = injected = preadv_calls = 0;
	exit_checked = exit_inflight = exit_unreaped = 0;
	t.queue_depth = 8;
	t.chunk_bytes = 16 << 10;
	o.backend = backend;
	o.flags = load_flags;
	o.tuning = &t;
	mp.name = "pc.ram";
	mp.addr = mem;
	mp.length = len;
	res.st = (fvm_load_stats)FVM_LOAD_STATS_INIT;
	assert_int_equal(fvm_reader_open(&r, load_keyed ? ksnap : snap), 0);
	if (load_keyed)
		assert_int_equal(fvm_reader_set_key(r, key, sizeof(key)), 0);
	res.rc = fvm_load(r, &mp, 1, &o, &res.st);
	snprintf(res.detail, sizeof(res.detail), "%s", res.rc ? fvm_error_detail() : "");
	res.same = memcmp(mem, ram, len) == 0;
	fvm_reader_free(r);
	munmap(mem, len);
	fault_mode = M_NONE;
	if (m != M_NONE && m != M_SETUP)
		assert_true(injected > 0); /* the fault happened */
	if (exit_checked) {
		assert_int_equal(exit_inflight, 0); /* no read left in flight */
		assert_int_equal(exit_unreaped, 0);
	}
	return res;
}

/* ------------------------------------------------------------ cases */

static void test_clean(void **state)
{
	struct result r = load(M_NONE, 0, 0, FVM_BACKEND_URING);

	(void)state;
	assert_int_equal(r.rc, 0);
	assert_true(r.same);
	assert_int_equal(r.st.backend, FVM_BACKEND_URING);
	assert_true(exit_checked);
	assert_true(submit_calls > 4); /* several rounds: faults can land mid-load */
}

/* No ring (EPERM: sysctl or seccomp; ENOMEM: RLIMIT_MEMLOCK; ENOSYS): pread. */
static void test_setup_fails(void **state)
{
	static const struct { int err; const char *word; } cases[] = {
		{ EPERM, "EPERM" }, { ENOMEM, "ENOMEM" }, { ENOSYS, "ENOSYS" }, { EACCES, "EACCES" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (int b = FVM_BACKEND_AUTO; b <= FVM_BACKEND_URING; b++) {
			struct result r = load(M_SETUP, cases[i].err, 0, b);

			assert_int_equal(r.rc, 0);
			assert_true(r.same);
			assert_int_equal(r.st.backend, FVM_BACKEND_PREAD);
			assert_non_null(r.st.fallback_reason);
			assert_non_null(strstr(r.st.fallback_reason, cases[i].word));
			assert_false(exit_checked); /* no ring was made */
		}
}

/* A completion with an error: the load fails, naming the read and errno. */
static void test_cqe_error(void **state)
{
	static const unsigned nths[] = { 1, 2, 9, 100, 300 };

	(void)state;
	for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
		struct result r = load(M_CQE_ERR, EIO, nths[i], FVM_BACKEND_URING);

		assert_int_equal(r.rc, FVM_EIO);
		assert_non_null(strstr(r.detail, "read request"));
		assert_non_null(strstr(r.detail, "snap.fvm"));
		assert_non_null(strstr(r.detail, strerror(EIO)));
	}
	{
		struct result r = load(M_CQE_ERR, ENOMEM, 3, FVM_BACKEND_URING);

		assert_true(r.rc < 0);
		assert_non_null(strstr(r.detail, strerror(ENOMEM)));
	}
}

/* EAGAIN and EINTR completions are retried: the load succeeds. */
static void test_cqe_again(void **state)
{
	(void)state;
	for (int e = 0; e < 2; e++) {
		struct result r = load(M_CQE_ERR, e ? EINTR : EAGAIN, 5, FVM_BACKEND_URING);

		assert_int_equal(r.rc, 0);
		assert_true(r.same);
	}
}

/* A short completion: the rest is read again and the load is whole. */
static void test_cqe_short(void **state)
{
	static const unsigned nths[] = { 1, 4, 50, 200 };

	(void)state;
	for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
		struct result clean = load(M_NONE, 0, 0, FVM_BACKEND_URING);
		struct result r = load(M_CQE_SHORT, 0, nths[i], FVM_BACKEND_URING);

		assert_int_equal(r.rc, 0);
		assert_true(r.same);
		assert_int_equal(r.st.requests, clean.st.requests + 1); /* one resubmission */
		assert_int_equal(r.st.bytes_read, clean.st.bytes_read);
	}
}

/* A completion of 0 bytes: the file ended there, FVM_ETRUNCATED. */
static void test_cqe_zero(void **state)
{
	struct result r = load(M_CQE_ZERO, 0, 7, FVM_BACKEND_URING);

	(void)state;
	assert_int_equal(r.rc, FVM_ETRUNCATED);
	assert_non_null(strstr(r.detail, "read request"));
}

/*
 * Submitting fails after the kernel took the reads (they are in flight,
 * writing into the destination): the load fails, but only after reaping
 * them (checked at queue_exit), at the first submit and in the middle.
 */
static void test_submit_error_in_flight(void **state)
{
	static const unsigned nths[] = { 1, 2, 5 };

	(void)state;
	for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
		struct result r = load(M_SUBMIT_TAKEN, EIO, nths[i], FVM_BACKEND_URING);

		assert_int_equal(r.rc, FVM_EIO);
		assert_non_null(strstr(r.detail, "io_uring_submit"));
		assert_non_null(strstr(r.detail, strerror(EIO)));
		assert_true(exit_checked);
	}
}

/* Submitting fails and the kernel took nothing: a clean failure too. */
static void test_submit_error_nothing_taken(void **state)
{
	static const unsigned nths[] = { 1, 3 };

	(void)state;
	for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
		struct result r = load(M_SUBMIT_LOST, ENOMEM, nths[i], FVM_BACKEND_URING);

		assert_true(r.rc < 0);
		assert_non_null(strstr(r.detail, "io_uring_submit"));
		assert_true(exit_checked);
	}
}

/*
 * Submitting fails after the kernel took the reads, and waiting for their
 * completions fails as well: the completions still arrive in the CQ ring,
 * so the load must collect them there before it returns.
 */
static void test_submit_and_wait_fail(void **state)
{
	static const unsigned nths[] = { 1, 2, 5 };

	(void)state;
	/* whether reads are still out when waiting fails is a race: 10 tries each */
	for (size_t i = 0; i < 10 * sizeof(nths) / sizeof(nths[0]); i++) {
		struct result r = load(M_SUBMIT_WAIT, EIO, nths[i % 3], FVM_BACKEND_URING);

		assert_int_equal(r.rc, FVM_EIO);
		assert_non_null(strstr(r.detail, "io_uring_submit"));
		assert_true(exit_checked);
	}
}

/*
 * O_DIRECT refused at read time: EINVAL from the nth read of an O_DIRECT
 * load starts the load over buffered (st.direct 0 after) and it succeeds;
 * without FVM_LOAD_DIRECT the same EINVAL fails the load.
 */
static void test_direct_einval(void **state)
{
	static const unsigned nths[] = { 1, 7, 60 };
	struct result r;

	(void)state;
	load_flags = FVM_LOAD_DIRECT;
	r = load(M_NONE, 0, 0, FVM_BACKEND_URING);
	assert_int_equal(r.rc, 0);
	if (!r.st.direct) {
		load_flags = 0;
		skip(); /* this file system refuses O_DIRECT at open: no fallback to test */
	}
	for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
		struct result clean = load(M_NONE, 0, 0, FVM_BACKEND_URING);

		r = load(M_CQE_ERR, EINVAL, nths[i], FVM_BACKEND_URING);
		assert_int_equal(r.rc, 0);
		assert_true(r.same);
		assert_int_equal(r.st.direct, 0);
		assert_true(r.st.bytes_read > clean.st.bytes_read); /* read again */
	}
	if (fvm_auth_available()) {
		load_keyed = 1;
		r = load(M_NONE, 0, 0, FVM_BACKEND_AUTO);
		assert_int_equal(r.rc, 0);
		assert_true(r.same);
		assert_int_equal(r.st.direct, 1);
		for (size_t i = 0; i < sizeof(nths) / sizeof(nths[0]); i++) {
			r = load(M_PREADV, EINVAL, nths[i], FVM_BACKEND_AUTO);
			assert_int_equal(r.rc, 0);
			assert_true(r.same);
			assert_int_equal(r.st.direct, 0);
		}
		load_keyed = 0;
	}
	load_flags = 0;
	r = load(M_CQE_ERR, EINVAL, 7, FVM_BACKEND_URING);
	assert_int_equal(r.rc, FVM_EIO);
	assert_non_null(strstr(r.detail, strerror(EINVAL)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_setup_fails),
		cmocka_unit_test(test_cqe_error),
		cmocka_unit_test(test_cqe_again),
		cmocka_unit_test(test_cqe_short),
		cmocka_unit_test(test_cqe_zero),
		cmocka_unit_test(test_submit_error_in_flight),
		cmocka_unit_test(test_submit_error_nothing_taken),
		cmocka_unit_test(test_submit_and_wait_fail),
		cmocka_unit_test(test_direct_einval),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
