/*
 * Benchmark (not a test) of the writer's pipelined writes (doc/BENCHMARKS.md
 * section 7, series E): SIZE MiB of non-zero data written with
 * fvm_writer_write_pages in calls of 1-4 MiB (as QEMU's x-fvm-save gives
 * the ranges of touched guest pages), FVM_WRITE_SYNC_AT_FINISH, timed until
 * fvm_writer_flush returns (the VM's stop), alternately with and without
 * FVM_WRITE_STABLE_MEM; the medians. On a shared machine run it at real-time
 * priority (chrt -f 10): the write thread needs a core of its own.
 * Usage: write_pipeline OUT.fvm [RUNS [SIZE_MIB]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fastvm/fastvm.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int runs = argc > 2 ? atoi(argv[2]) : 8;
	size_t len = (size_t)(argc > 3 ? atoi(argv[3]) : 160) << 20;
	unsigned char *m = malloc(len);
	double *t[2];

	if (argc < 2 || runs < 1 || !m) {
		fprintf(stderr, "usage: write_pipeline OUT.fvm [RUNS [SIZE_MIB]]\n");
		return 2;
	}
	t[0] = calloc((size_t)runs, sizeof(double));
	t[1] = calloc((size_t)runs, sizeof(double));
	for (size_t i = 0; i + 8 <= len; i += 8)
		*(unsigned long long *)(m + i) = i * 2654435761ull + 1;
	for (int k = 0; k < runs; k++)
		for (int stable = 0; stable < 2; stable++) {
			fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
			size_t pages = len / 4096, p = 0;
			unsigned r = 7;
			fvm_writer *w;
			uint32_t b;
			double t0;

			o.flags = FVM_WRITE_SYNC_AT_FINISH | (stable ? FVM_WRITE_STABLE_MEM : 0);
			unlink(argv[1]);
			t0 = now();
			if (fvm_writer_open_path(&w, argv[1], &o) ||
			    fvm_writer_add_block(w, "pc.ram", len, 4096, &b))
				goto fail;
			while (p < pages) {
				size_t n = 256 + ((r = r * 1103515245u + 12345u) >> 16) % 768;

				if (n > pages - p)
					n = pages - p;
				if (fvm_writer_write_pages(w, b, p, n, m + p * 4096))
					goto fail;
				p += n;
			}
			if (fvm_writer_flush(w))
				goto fail;
			t[stable][k] = now() - t0;
			if (fvm_writer_finish(w))
				goto fail;
			fvm_writer_free(w);
		}
	for (int s = 0; s < 2; s++) {
		qsort(t[s], (size_t)runs, sizeof(double), cmp);
		printf("%-28s median %.1f ms (min %.1f, max %.1f) over %d runs\n",
		       s ? "FVM_WRITE_STABLE_MEM" : "without", 1e3 * (runs % 2 ? t[s][runs / 2] :
		       (t[s][runs / 2 - 1] + t[s][runs / 2]) / 2), 1e3 * t[s][0],
		       1e3 * t[s][runs - 1], runs);
	}
	unlink(argv[1]);
	return 0;
fail:
	fprintf(stderr, "%s\n", fvm_error_detail());
	return 1;
}
