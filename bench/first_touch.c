/*
 * first_touch MIB [REPEAT]: what a fresh destination's pages cost on this
 * machine. Maps MIB MiB of fresh anonymous memory, makes it present with
 * MADV_POPULATE_WRITE (the loader's own call before decoding a frame) and
 * prints the time per 4 KiB page; REPEAT times (default 1), each mapping
 * released before the next.
 *
 * On bare metal a fresh page costs the kernel's fault and zeroing, about
 * 1 us here. In a virtual machine whose kernel reports free pages to the
 * host (free page reporting, virtio-balloon), the host may have taken the
 * page back and must fault it in again: 3-10 us per page were measured on
 * this machine (doc/BENCHMARKS.md 9), which no loader can hide on 2 CPUs.
 * bench/machine.sh uses it to show that cost and, once reporting is off,
 * to touch the free memory so that later loads find it resident.
 * Output: one line per repeat, "first_touch MIB us_per_page SECONDS".
 * Exit 0; 1 on a failure; 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long arg(const char *s, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	return errno || end == s || *end || v < 1 || v > max ? -1 : v;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? arg(argv[1], 1L << 22) : -1;
	long reps = argc > 2 ? arg(argv[2], 1000) : 1;

	if (argc < 2 || argc > 3 || mib < 0 || reps < 0) {
		fprintf(stderr, "usage: first_touch MIB [REPEAT]\n");
		return 2;
	}
	for (long i = 0; i < reps; i++) {
		size_t len = (size_t)mib << 20;
		double t0, t1;
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);

		if (p == MAP_FAILED) {
			fprintf(stderr, "first_touch: mmap of %ld MiB: %s\n", mib, strerror(errno));
			return 1;
		}
		t0 = now();
		if (madvise(p, len, MADV_POPULATE_WRITE)) {
			fprintf(stderr, "first_touch: MADV_POPULATE_WRITE of %ld MiB: %s\n", mib,
				strerror(errno));
			return 1;
		}
		t1 = now();
		printf("first_touch %ld %.2f %.3f\n", mib, (t1 - t0) * 1e6 / (double)(len >> 12),
		       t1 - t0);
		munmap(p, len);
	}
	return 0;
}
