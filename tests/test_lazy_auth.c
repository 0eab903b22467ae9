/*
 * The lazy load of an authenticated snapshot (lib/uffd.c): fvm_load with
 * FVM_LOAD_LAZY returns once the destinations are registered with
 * userfaultfd; pages then arrive as threads touch them, in any order, and
 * read exactly what an eager load gives (data, and zeros where the
 * snapshot has none, over memory that held other bytes before), with or
 * without a prefetch installing the rest. With one payload byte flipped,
 * the page holding it is never installed: a thread touching it stays
 * blocked, mincore shows it absent, the prefetch reports FVM_EAUTH naming
 * the page and file offset, every other page loads, and when the reader is
 * freed the blocked thread faults (SIGSEGV) instead of reading zeros. A
 * destination unmapped meanwhile is forgotten: memory mapped there next is
 * left alone. Skips (77) where userfaultfd is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fastvm/fastvm.h"
#include "format.h"
#include "reader.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 3000u
#define ROM_PAGES 3u
#define THREADS 4

static char good[300], bad[300];
static uint8_t key[FVM_KEY_BYTES];
static uint8_t *mem, *rom;
static uint64_t bad_page;     /* the pc.ram page holding the flipped byte */
static uint64_t bad_off;      /* its file offset (of the chunk) */

static void write_file(const char *path)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b, rb;

	o.flags = FVM_WRITE_NO_FSYNC;
	o.segment_bytes = 1u << 20;
	o.key = key;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_add_block(w, "rom", ROM_PAGES * PAGE, PAGE, &rb), 0);
	assert_int_equal(fvm_writer_write_block(w, b, mem), 0);
	assert_int_equal(fvm_writer_write_block(w, rb, rom), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

/* Fresh private anonymous memory, filled with 0xa5 so zeros must be made. */
static uint8_t *fresh(size_t len)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0xa5, len);
	return p;
}

/* The two destinations: pc.ram at ram, rom at r2. */
static void two_maps(fvm_mapping m[2], uint8_t *ram, uint8_t *r2)
{
	m[0] = m[1] = (fvm_mapping)FVM_MAPPING_INIT;
	m[0].name = "pc.ram";
	m[0].addr = ram;
	m[0].length = (uint64_t)PAGES * PAGE;
	m[1].name = "rom";
	m[1].addr = r2;
	m[1].length = ROM_PAGES * PAGE;
}

static int load_lazy(fvm_reader *r, uint8_t *ram, uint8_t *r2, fvm_load_stats *st)
{
	fvm_mapping m[2];
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;

	two_maps(m, ram, r2);
	lo.backend = FVM_BACKEND_MMAP;
	lo.flags = FVM_LOAD_LAZY;
	lo.zero_policy = FVM_ZERO_DONTNEED; /* as QEMU: the 0xa5 must go */
	return fvm_load(r, m, 2, &lo, st);
}

static fvm_reader *open_keyed(const char *path)
{
	fvm_reader *r;

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_set_key(r, key, sizeof(key)), 0);
	return r;
}

static int resident(const void *p)
{
	unsigned char v = 0;

	assert_int_equal(mincore((void *)p, PAGE, &v), 0);
	return v & 1;
}

/* ---- touching threads */

struct toucher {
	pthread_t t;
	const uint8_t *ram, *r2;
	uint64_t skip;          /* a pc.ram page not to touch, or UINT64_MAX */
	unsigned seed;
	uint64_t wrong;         /* pages that did not match */
	uint64_t first_wrong;
};

static void *touch_all(void *arg)
{
	struct toucher *t = arg;
	uint64_t n = PAGES + ROM_PAGES, *order = malloc(n * sizeof(*order));
	struct tu_rng rng;

	tu_rng_seed(&rng, t->seed);
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	tu_shuffle(&rng, order, n, sizeof(*order));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = order[i];
		const uint8_t *got = pg < PAGES ? t->ram + pg * PAGE : t->r2 + (pg - PAGES) * PAGE;
		const uint8_t *want = pg < PAGES ? mem + pg * PAGE : rom + (pg - PAGES) * PAGE;

		if (pg == t->skip)
			continue;
		if (memcmp(got, want, PAGE) && !t->wrong++)
			t->first_wrong = pg;
	}
	free(order);
	return NULL;
}

static void touch_threads(const uint8_t *ram, const uint8_t *r2, uint64_t skip)
{
	struct toucher t[THREADS];

	for (int i = 0; i < THREADS; i++) {
		t[i] = (struct toucher){ .ram = ram, .r2 = r2, .skip = skip, .seed = 100u + (unsigned)i };
		assert_int_equal(pthread_create(&t[i].t, NULL, touch_all, &t[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i].t, NULL), 0);
		if (t[i].wrong)
			fail_msg("thread %d: %llu pages differ from the source, the first %llu", i,
				 (unsigned long long)t[i].wrong, (unsigned long long)t[i].first_wrong);
	}
}

/* A thread reading one page; it faults (SIGSEGV) out when the page is sealed. */
static _Thread_local sigjmp_buf segv_jmp;
static _Thread_local int segv_armed;

static void on_segv(int sig)
{
	if (!segv_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	siglongjmp(segv_jmp, 1);
}

struct blocked {
	pthread_t t;
	const volatile uint8_t *p;
	atomic_int returned, faulted;
	uint8_t seen;
};

static void *read_one(void *arg)
{
	struct blocked *b = arg;

	segv_armed = 1;
	if (sigsetjmp(segv_jmp, 1)) {
		atomic_store(&b->faulted, 1);
		return NULL;
	}
	b->seen = *b->p;
	atomic_store(&b->returned, 1);
	return NULL;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- the tests */

static void test_threads(void **state)
{
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *ram = fresh(len), *r2 = fresh(ROM_PAGES * PAGE);
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r = open_keyed(good);

	(void)state;
	assert_int_equal(load_lazy(r, ram, r2, &st), 0);
	assert_string_equal(st.backend_name, "userfaultfd");
	assert_int_equal(st.bytes_read, 0);
	/* nothing is there until touched: not even the 0xa5 written before */
	for (uint64_t p = 0; p < PAGES; p += 97)
		assert_false(resident(ram + p * PAGE));
	/* a second lazy load while this one serves faults is refused */
	{
		uint8_t *ram2 = fresh(len), *r22 = fresh(ROM_PAGES * PAGE);

		assert_int_equal(load_lazy(r, ram2, r22, NULL), FVM_ESTATE);
		munmap(ram2, len);
		munmap(r22, ROM_PAGES * PAGE);
	}
	touch_threads(ram, r2, UINT64_MAX);
	/* installed pages are ordinary private memory: writable */
	ram[5 * PAGE + 1] ^= 0xff;
	assert_int_equal(ram[5 * PAGE + 1], (uint8_t)(mem[5 * PAGE + 1] ^ 0xff));
	ram[5 * PAGE + 1] ^= 0xff;
	fvm_reader_free(r);
	/* after the session ended (registration gone) memory is as loaded */
	assert_memory_equal(ram, mem, len);
	assert_memory_equal(r2, rom, ROM_PAGES * PAGE);
	munmap(ram, len);
	munmap(r2, ROM_PAGES * PAGE);
}

static void test_prefetch(void **state)
{
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *ram = fresh(len), *r2 = fresh(ROM_PAGES * PAGE);
	fvm_reader *r = open_keyed(good);
	fvm_prefetch *pf, *pf2;
	uint64_t done = 0, total = 0;
	int ended = 0;
	struct toucher t = { .skip = UINT64_MAX, .seed = 7 };

	(void)state;
	assert_int_equal(load_lazy(r, ram, r2, NULL), 0);
	assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
	assert_int_equal(fvm_prefetch_start(r, 0, &pf2), FVM_ESTATE);
	/* touches race the fill */
	t.ram = ram;
	t.r2 = r2;
	assert_int_equal(pthread_create(&t.t, NULL, touch_all, &t), 0);
	assert_int_equal(fvm_prefetch_wait(pf), 0);
	assert_int_equal(pthread_join(t.t, NULL), 0);
	assert_int_equal(t.wrong, 0);
	assert_int_equal(fvm_prefetch_status(pf, &done, &total, &ended), 0);
	assert_true(ended);
	assert_int_equal(done, total);
	assert_true(total > 0);
	/* every data page is in, without any touch of this thread */
	for (uint64_t p = 0; p < PAGES; p++)
		if (memcmp(mem + p * PAGE, (uint8_t[PAGE]){ 0 }, PAGE))
			assert_true(resident(ram + p * PAGE));
	fvm_prefetch_free(pf);
	assert_memory_equal(ram, mem, len);
	assert_memory_equal(r2, rom, ROM_PAGES * PAGE);
	fvm_reader_free(r);

	/* the prefetch alone, nobody touching, then free before waiting */
	memset(ram, 0x5a, len);
	r = open_keyed(good);
	assert_int_equal(load_lazy(r, ram, r2, NULL), 0);
	assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
	fvm_prefetch_free(pf);
	fvm_reader_free(r); /* installs the rest first */
	assert_memory_equal(ram, mem, len);
	assert_memory_equal(r2, rom, ROM_PAGES * PAGE);
	munmap(ram, len);
	munmap(r2, ROM_PAGES * PAGE);
}

static void check_bad_detail(int rc)
{
	char want[64];

	if (rc != FVM_EAUTH)
		fail_msg("got %d (%s), expected FVM_EAUTH", rc, fvm_error_detail());
	snprintf(want, sizeof(want), "page %llu:", (unsigned long long)bad_page);
	if (!strstr(fvm_error_detail(), want) || !strstr(fvm_error_detail(), "tag does not verify"))
		fail_msg("detail \"%s\" lacks \"%s\"", fvm_error_detail(), want);
	snprintf(want, sizeof(want), "file offset 0x%llx", (unsigned long long)bad_off);
	if (!strstr(fvm_error_detail(), want))
		fail_msg("detail \"%s\" lacks \"%s\"", fvm_error_detail(), want);
}

/*
 * touch_first: a thread faults on the bad page before the prefetch starts
 * (the handler finds it); else the prefetch finds it, nobody touching.
 */
static void tampered(int touch_first)
{
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *ram = fresh(len), *r2 = fresh(ROM_PAGES * PAGE);
	fvm_reader *r = open_keyed(bad);
	struct blocked b = { .p = NULL };
	struct sigaction sa, old;
	fvm_prefetch *pf;
	int ended = 0;

	/* here, not in main: cmocka sets its own handlers for each test */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);

	assert_int_equal(load_lazy(r, ram, r2, NULL), 0);
	b.p = ram + bad_page * PAGE + 17;
	if (touch_first) {
		assert_int_equal(pthread_create(&b.t, NULL, read_one, &b), 0);
		sleep_ms(300);
		assert_false(atomic_load(&b.returned)); /* blocked on the fault */
	}
	assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
	check_bad_detail(fvm_prefetch_wait(pf));
	check_bad_detail(fvm_prefetch_status(pf, NULL, NULL, &ended));
	assert_true(ended);
	/* the page never arrived; its neighbours in the same read did */
	assert_false(resident(ram + bad_page * PAGE));
	assert_true(resident(ram + (bad_page + 1) * PAGE));
	if (!touch_first)
		assert_int_equal(pthread_create(&b.t, NULL, read_one, &b), 0);
	touch_threads(ram, r2, bad_page);
	sleep_ms(100);
	assert_false(atomic_load(&b.returned));
	assert_false(atomic_load(&b.faulted));
	assert_false(resident(ram + bad_page * PAGE));
	fvm_prefetch_free(pf);
	/* free seals the page: the waiting thread faults out, never reads */
	fvm_reader_free(r);
	assert_int_equal(pthread_join(b.t, NULL), 0);
	assert_true(atomic_load(&b.faulted));
	assert_false(atomic_load(&b.returned));
	/* the rest is what the snapshot has */
	assert_memory_equal(ram, mem, bad_page * PAGE);
	assert_memory_equal(ram + (bad_page + 1) * PAGE, mem + (bad_page + 1) * PAGE,
			    len - (bad_page + 1) * PAGE);
	munmap(ram, len);
	munmap(r2, ROM_PAGES * PAGE);
	sigaction(SIGSEGV, &old, NULL);
}

static void test_tampered_touch(void **state)
{
	(void)state;
	tampered(1);
}

static void test_tampered_prefetch(void **state)
{
	(void)state;
	tampered(0);
}

/*
 * The caller unmaps the destination while pages are missing (one of them
 * bad) and maps other memory at the same address: freeing the reader must
 * leave that memory alone (nothing installed there, nothing sealed).
 */
static void test_unmapped(void **state)
{
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *ram = fresh(len), *r2 = fresh(ROM_PAGES * PAGE), *again;
	fvm_reader *r = open_keyed(bad);
	fvm_prefetch *pf;

	(void)state;
	assert_int_equal(load_lazy(r, ram, r2, NULL), 0);
	assert_memory_equal(ram, mem, PAGE); /* one fault served */
	assert_int_equal(munmap(ram, len), 0);
	again = mmap(ram, len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_true(again == ram);
	memset(again, 0x3c, len);
	assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
	/* pc.ram's chunks are gone, not failed: rom's were fine */
	assert_int_equal(fvm_prefetch_wait(pf), 0);
	fvm_prefetch_free(pf);
	fvm_reader_free(r);
	for (size_t i = 0; i < len; i += PAGE / 2)
		assert_int_equal(again[i], 0x3c);
	assert_memory_equal(r2, rom, ROM_PAGES * PAGE);
	munmap(again, len);
	munmap(r2, ROM_PAGES * PAGE);
}

/*
 * The end of a session while threads fault: a block of RACE_DATA data
 * pages and zeros after them; two threads fault on the zeros without
 * pause (read a byte, drop the page, again) while the prefetch fills the
 * data and ends, which removes the registration; then they stop, and
 * both must come back, in each of RACE_ROUNDS rounds. Before unregister()
 * woke the ranges itself, a fault entering the kernel's wait as the
 * registration went slept until the fd was closed (one run in about 60 of
 * test_prefetch on Linux 6.18; here the join times out).
 */
#define RACE_PAGES 1024u
#define RACE_DATA 16u
#define RACE_ROUNDS 300

struct racer {
	pthread_t t;
	volatile uint8_t *ram;
	uint64_t from, nonzero;
	atomic_uint_fast64_t faults;
	atomic_int *stop;
};

static void *race_touch(void *arg)
{
	struct racer *x = arg;

	for (uint64_t k = 0; !atomic_load(x->stop); k++) {
		uint64_t pg = RACE_DATA + (x->from + k * 7) % (RACE_PAGES - RACE_DATA);
		volatile uint8_t *p = x->ram + pg * PAGE;

		x->nonzero += *p != 0;
		(void)madvise((void *)((uintptr_t)p & ~(uintptr_t)(PAGE - 1)), PAGE, MADV_DONTNEED);
		atomic_fetch_add(&x->faults, 1);
	}
	return NULL;
}

static void test_end_race(void **state)
{
	size_t len = (size_t)RACE_PAGES * PAGE;
	char path[320];
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_writer *w;
	uint32_t b;
	uint8_t *src = calloc(1, len);

	(void)state;
	assert_non_null(src);
	memcpy(src, mem, (size_t)RACE_DATA * PAGE);
	snprintf(path, sizeof(path), "%s/race.fvm", tu_tmpdir());
	o.flags = FVM_WRITE_NO_FSYNC;
	o.key = key;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", len, PAGE, &b), 0);
	assert_int_equal(fvm_writer_write_block(w, b, src), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
	free(src);
	m.name = "pc.ram";
	m.length = len;
	lo.backend = FVM_BACKEND_MMAP;
	lo.flags = FVM_LOAD_LAZY;
	for (int round = 0; round < RACE_ROUNDS; round++) {
		uint8_t *ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				    -1, 0);
		atomic_int stop = 0;
		struct racer x[2] = { { .ram = ram, .from = 0, .stop = &stop },
				      { .ram = ram, .from = 500, .stop = &stop } };
		fvm_reader *r = open_keyed(path);
		fvm_prefetch *pf;
		int stuck = 0;

		assert_true(ram != MAP_FAILED);
		m.addr = ram;
		assert_int_equal(fvm_load(r, &m, 1, &lo, NULL), 0);
		for (int i = 0; i < 2; i++)
			assert_int_equal(pthread_create(&x[i].t, NULL, race_touch, &x[i]), 0);
		while (atomic_load(&x[0].faults) < 8 || atomic_load(&x[1].faults) < 8)
			sched_yield();
		assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
		assert_int_equal(fvm_prefetch_wait(pf), 0);
		sleep_ms(1);
		atomic_store(&stop, 1);
		for (int i = 0; i < 2; i++) {
			struct timespec until;

			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 10;
			if (pthread_timedjoin_np(x[i].t, NULL, &until)) {
				stuck = i + 1;
				break;
			}
		}
		fvm_prefetch_free(pf);
		fvm_reader_free(r); /* closes the fd: a sleeping fault wakes */
		if (stuck) {
			for (int i = stuck - 1; i < 2; i++)
				pthread_join(x[i].t, NULL);
			fail_msg("round %d: thread %d still waited on a fault 10 s after the lazy "
				 "load ended", round, stuck - 1);
		}
		assert_int_equal(x[0].nonzero + x[1].nonzero, 0);
		assert_memory_equal(ram, mem, (size_t)RACE_DATA * PAGE);
		munmap(ram, len);
	}
}

/* Eager mapping stays refused; the copying loads check as before. */
static void test_refusals(void **state)
{
	size_t len = (size_t)PAGES * PAGE;
	uint8_t *ram = fresh(len), *r2 = fresh(ROM_PAGES * PAGE);
	fvm_mapping m[2];
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_load_stats st = FVM_LOAD_STATS_INIT;
	fvm_reader *r = open_keyed(bad);

	(void)state;
	two_maps(m, ram, r2);
	lo.backend = FVM_BACKEND_MMAP;
	assert_int_equal(fvm_load(r, m, 2, &lo, NULL), FVM_EUNSUPPORTED);
	assert_non_null(strstr(fvm_error_detail(), "cannot be mapped"));
	/* shared memory is not registered: it is loaded eagerly, checked */
	m[0].flags = FVM_MAP_SHARED;
	lo.flags = FVM_LOAD_LAZY;
	check_bad_detail(fvm_load(r, m, 2, &lo, &st));
	assert_non_null(st.fallback_reason);
	fvm_reader_free(r);
	munmap(ram, len);
	munmap(r2, ROM_PAGES * PAGE);
}

/* Where the flipped byte goes: page 2 of the first long data run of pc.ram. */
static void make_bad(void)
{
	fvm_reader *r;
	uint8_t *b;
	size_t len;

	assert_int_equal(fvm_reader_open(&r, good), 0);
	for (uint64_t i = 0; i < r->m.next; i++) {
		const struct fvm_extent *e = &r->m.ext[i];

		if ((e->flags & FVM_RUN_FLAG_DATA) && e->block_id == 0 && e->page_count >= 8 &&
		    e->first_page > 100) {
			bad_page = e->first_page + 2;
			bad_off = e->payload_offset + 2 * PAGE;
			break;
		}
	}
	fvm_reader_free(r);
	assert_true(bad_off != 0);
	b = tu_read_file(good, &len);
	assert_non_null(b);
	b[bad_off + 17] ^= 1;
	assert_int_equal(tu_write_file(bad, b, len), 0);
	free(b);
}

static int setup(void **state)
{
	(void)state;
	write_file(good);
	make_bad();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_tampered_touch),
		cmocka_unit_test(test_tampered_prefetch),
		cmocka_unit_test(test_unmapped),
		cmocka_unit_test(test_end_race),
		cmocka_unit_test(test_refusals),
	};
	struct tu_rng rng;
	int fd, rc;

	if (!fvm_auth_available()) {
		printf("SKIP: this libfastvm was built without libsodium\n");
		return 77;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: userfaultfd is refused here (%s)\n", strerror(errno));
		return 77;
	}
	close(fd);
	snprintf(good, sizeof(good), "%s/good.fvm", tu_tmpdir());
	snprintf(bad, sizeof(bad), "%s/bad.fvm", tu_tmpdir());
	tu_rng_seed(&rng, 11);
	tu_fill_random(&rng, key, sizeof(key));
	mem = malloc((size_t)PAGES * PAGE);
	rom = malloc(ROM_PAGES * PAGE);
	/* runs of data and of zeros of every length from 1 to 60 pages */
	for (uint64_t p = 0, run = 0, n = 1; p < PAGES; run++, n = n % 60 + 7) {
		for (uint64_t k = 0; k < n && p < PAGES; k++, p++)
			if (run % 2)
				memset(mem + p * PAGE, 0, PAGE);
			else
				tu_fill_page(&rng, mem + p * PAGE, PAGE);
	}
	tu_fill_random(&rng, rom, ROM_PAGES * PAGE);
	rc = cmocka_run_group_tests(tests, setup, NULL);
	tu_tmpdir_remove();
	free(mem);
	free(rom);
	return rc;
}
