/*
 * Benchmark (not a test) of authenticated snapshots (doc/BENCHMARKS.md
 * section 12): the RAM image IMG packed twice, as it is and with a key
 * (FORMAT.md 4.6), then both loaded from the page cache into the same
 * memory with the default backend, alternately, RUNS times each; the
 * medians and their ratio, and the same for the pread backend. The files
 * stay in DIR (AUTH.fvm, PLAIN.fvm) for a cold or eMMC run by hand.
 * CHUNK_KIB sets the read request size of the authenticated loads only
 * (fvm_load_tuning.chunk_bytes), to choose it; the plain loads keep theirs.
 * Several (up to 4, comma-separated) are alternated within each round.
 * Usage: authload IMG DIR [RUNS [CHUNK_KIB[,CHUNK_KIB...]]]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"

static uint32_t auth_chunk; /* bytes; 0: the library's default */

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

static int die(const char *what)
{
	fprintf(stderr, "authload: %s: %s\n", what, fvm_error_detail());
	return 1;
}

static int pack(const char *out, const void *img, size_t len, const uint8_t *key)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b;

	o.key = key;
	o.flags = FVM_WRITE_NO_FSYNC;
	if (fvm_writer_open_path(&w, out, &o) || fvm_writer_add_block(w, "pc.ram", len, 4096, &b) ||
	    fvm_writer_write_block(w, b, img) || fvm_writer_finish(w))
		return die(out);
	fvm_writer_free(w);
	return 0;
}

static double load(const char *path, void *mem, size_t len, const uint8_t *key, int backend)
{
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_reader *r;
	double t0, t;

	if (fvm_reader_open(&r, path) || (key && fvm_reader_set_key(r, key, FVM_KEY_BYTES)))
		return -1;
	m.name = "pc.ram";
	m.addr = mem;
	m.length = len;
	lo.backend = backend;
	if (key && auth_chunk) {
		static fvm_load_tuning t = FVM_LOAD_TUNING_INIT;

		t.chunk_bytes = auth_chunk;
		lo.tuning = &t;
	}
	t0 = now();
	if (fvm_load(r, &m, 1, &lo, NULL)) {
		fvm_reader_free(r);
		return -1;
	}
	t = now() - t0;
	fvm_reader_free(r);
	return t;
}

int main(int argc, char **argv)
{
	int runs = argc > 3 ? atoi(argv[3]) : 9, nc = 1;
	uint32_t chunks[4] = { 0 }; /* 0: the library's default */
	char plain[4096], auth[4096];
	uint8_t key[FVM_KEY_BYTES];
	struct stat st;
	void *img, *mem;
	int fd;

	if (argc > 4) /* "128,256,512": alternated within each round */
		for (char *p = argv[4], *e; nc <= 4 && *p; p = *e ? e + 1 : e) {
			chunks[nc - 1] = (uint32_t)strtoul(p, &e, 10) << 10;
			if (e == p || (*e && *e != ','))
				runs = 0;
			if (*e)
				nc++;
		}
	if (argc < 3 || runs < 1 || nc > 4) {
		fprintf(stderr, "usage: authload IMG DIR [RUNS [CHUNK_KIB[,CHUNK_KIB...]]]\n");
		return 2;
	}
	if (!fvm_auth_available()) {
		fprintf(stderr, "authload: this libfastvm has no authenticated snapshots\n");
		return 77;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) || st.st_size <= 0 || st.st_size % 4096) {
		fprintf(stderr, "authload: %s: not a RAM image (a multiple of 4096 bytes)\n", argv[1]);
		return 1;
	}
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (img == MAP_FAILED || mem == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 37 + 11);
	snprintf(plain, sizeof(plain), "%s/PLAIN.fvm", argv[2]);
	snprintf(auth, sizeof(auth), "%s/AUTH.fvm", argv[2]);
	if (pack(plain, img, (size_t)st.st_size, NULL) || pack(auth, img, (size_t)st.st_size, key))
		return 1;
	memset(mem, 0, (size_t)st.st_size); /* faulted in once: the loads compare copies; zero pages stay zero */
	for (int backend = FVM_BACKEND_AUTO; backend <= FVM_BACKEND_PREAD;
	     backend += FVM_BACKEND_PREAD - FVM_BACKEND_AUTO) {
		double *tp = calloc((size_t)runs, sizeof(double)), *ta[4];

		for (int c = 0; c < nc; c++)
			ta[c] = calloc((size_t)runs, sizeof(double));
		/* one of each first: the page cache holds both files */
		if (load(plain, mem, (size_t)st.st_size, NULL, backend) < 0 ||
		    load(auth, mem, (size_t)st.st_size, key, backend) < 0)
			return die("load");
		for (int k = 0; k < runs; k++) {
			tp[k] = load(plain, mem, (size_t)st.st_size, NULL, backend);
			if (tp[k] < 0)
				return die("load");
			for (int c = 0; c < nc; c++) {
				auth_chunk = chunks[c];
				ta[c][k] = load(auth, mem, (size_t)st.st_size, key, backend);
				if (ta[c][k] < 0)
					return die("load");
			}
		}
		if (memcmp(mem, img, (size_t)st.st_size)) {
			fprintf(stderr, "authload: the loaded memory differs from the image\n");
			return 1;
		}
		qsort(tp, (size_t)runs, sizeof(double), cmp);
		for (int c = 0; c < nc; c++) {
			char at[32] = "";

			qsort(ta[c], (size_t)runs, sizeof(double), cmp);
			if (chunks[c])
				snprintf(at, sizeof(at), " (%u KiB)", chunks[c] >> 10);
			printf("%-8s plain %.4f s  authenticated%s %.4f s  ratio %.2fx  (medians of %d, "
			       "warm)\n", backend == FVM_BACKEND_AUTO ? "default" : "pread",
			       tp[runs / 2], at, ta[c][runs / 2], ta[c][runs / 2] / tp[runs / 2], runs);
			free(ta[c]);
		}
		free(tp);
	}
	return 0;
}
