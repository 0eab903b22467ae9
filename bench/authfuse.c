/*
 * Micro-benchmark (not a test) behind the authenticated load's design
 * (doc/BENCHMARKS.md section 11): libgcrypt's GMAC-AES-256 per 4 KiB chunk
 * on one core, from memory and hot in L2, with and without a handle made
 * per 64 chunks (what fvm_chunks_bad does per call); then the fused load
 * of lib/load.c reduced to its core: T threads each pread() the next
 * request of a warm file into pre-faulted memory and, in the second mode,
 * GMAC its chunks at once. Medians of RUNS, for 128 KiB .. 1 MiB requests.
 * Usage: authfuse FILE [RUNS]   (FILE: e.g. a RAM image in the page cache)
 */
#include <fcntl.h>
#include <gcrypt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CH 4096u

static const uint8_t key[32] = { 1, 2, 3 };

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

static gcry_mac_hd_t gmac_open(void)
{
	gcry_mac_hd_t h;

	if (gcry_mac_open(&h, GCRY_MAC_GMAC_AES, 0, NULL) || gcry_mac_setkey(h, key, 32)) {
		fprintf(stderr, "authfuse: GMAC-AES-256 not available\n");
		exit(1);
	}
	return h;
}

/* Tags of n chunks at p, chunk numbers from c0, as lib/auth.c computes them. */
static void tags(gcry_mac_hd_t h, const uint8_t *p, size_t n, uint64_t c0, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t iv[12] = { 'F', 'V', 'M', 'C' };
		uint64_t c = c0 + i;
		size_t l = 16;

		memcpy(iv + 4, &c, 8);
		gcry_mac_setiv(h, iv, 12);
		gcry_mac_write(h, p + (size_t)CH * i, CH);
		gcry_mac_read(h, out + 16 * i, &l);
	}
}

static void single_core(void)
{
	size_t total = 256u << 20, n = total / CH, hot = 64;
	uint8_t *buf = malloc(total), *t = malloc(n * 16);
	gcry_mac_hd_t h = gmac_open();
	double t0, a, b, c;

	for (size_t i = 0; i < total; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 12));
	t0 = now();
	tags(h, buf, n, 0, t);
	a = now() - t0;
	t0 = now();
	for (size_t k = 0; k < n / hot; k++)
		tags(h, buf, hot, k * hot, t); /* the same 256 KiB: hot in L2 */
	b = now() - t0;
	t0 = now();
	for (size_t k = 0; k < n / hot; k++) {
		gcry_mac_hd_t g = gmac_open();

		tags(g, buf + k * hot * CH, hot, k * hot, t + 16 * k * hot);
		gcry_mac_close(g);
	}
	c = now() - t0;
	printf("one core, 4 KiB chunks, GMAC-AES-256 (libgcrypt %s): from memory %.2f GB/s, "
	       "hot in L2 %.2f GB/s, from memory with a handle per 64 chunks %.2f GB/s\n",
	       gcry_check_version(NULL), total / a / 1e9, total / b / 1e9, total / c / 1e9);
	gcry_mac_close(h);
	free(buf);
	free(t);
}

static int fd, mode;
static size_t len, req, next;
static uint8_t *dst, *tg;

static void *worker(void *arg)
{
	gcry_mac_hd_t h = gmac_open();

	(void)arg;
	for (;;) {
		size_t off = __atomic_fetch_add(&next, req, __ATOMIC_RELAXED), n;

		if (off >= len)
			break;
		n = len - off < req ? len - off : req;
		for (size_t d = 0; d < n;) {
			ssize_t k = pread(fd, dst + off + d, n - d, (off_t)(off + d));

			if (k <= 0) {
				perror("authfuse: pread");
				exit(1);
			}
			d += (size_t)k;
		}
		if (mode)
			tags(h, dst + off, n / CH, off / CH, tg + off / CH * 16);
	}
	gcry_mac_close(h);
	return NULL;
}

static double fused(unsigned threads)
{
	pthread_t t[8];
	double t0 = now();

	next = 0;
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return now() - t0;
}

int main(int argc, char **argv)
{
	static const size_t kib[] = { 128, 256, 512, 1024 };
	int runs = argc > 2 ? atoi(argv[2]) : 5;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned tmax = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
	struct stat st;

	if (argc < 2 || runs < 1) {
		fprintf(stderr, "usage: authfuse FILE [RUNS]\n");
		return 2;
	}
	if (!gcry_check_version(NULL))
		return 1;
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
	single_core();
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) || st.st_size < (off_t)CH) {
		perror(argv[1]);
		return 1;
	}
	len = (size_t)st.st_size / CH * CH;
	dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		   -1, 0);
	tg = malloc(len / CH * 16);
	if (dst == MAP_FAILED || !tg)
		return 1;
	for (unsigned th = 1; th <= tmax; th = th == tmax ? tmax + 1 : tmax)
		for (size_t k = 0; k < sizeof(kib) / sizeof(kib[0]); k++) {
			double c[64], g[64];

			req = kib[k] << 10;
			for (int r = 0; r < runs && r < 64; r++) {
				mode = 0;
				c[r] = fused(th);
				mode = 1;
				g[r] = fused(th);
			}
			qsort(c, (size_t)(runs < 64 ? runs : 64), sizeof(double), cmp);
			qsort(g, (size_t)(runs < 64 ? runs : 64), sizeof(double), cmp);
			printf("%u thread%s, %4zu KiB requests: copy %.4f s, copy+GMAC %.4f s "
			       "(%.2fx; medians of %d)\n", th, th > 1 ? "s" : " ", kib[k],
			       c[runs / 2], g[runs / 2], g[runs / 2] / c[runs / 2], runs);
		}
	return 0;
}
