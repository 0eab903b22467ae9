/*
 * For tests/hot.sh: map a snapshot's block lazily (FVM_BACKEND_MMAP |
 * FVM_LOAD_LAZY, as QEMU's fvm-lazy: does), read the pages named on the
 * command line, say "ready" and wait until standard input closes, so that
 * `fvmsnap hot --pid` can look at this process.
 * Usage: lazy_toucher SNAP.fvm BLOCK PAGE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fastvm/fastvm.h"

int main(int argc, char **argv)
{
	fvm_mapping m = FVM_MAPPING_INIT;
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	volatile unsigned sum = 0;
	fvm_reader *r;
	uint32_t b;
	char c;
	void *mem;

	if (argc < 3) {
		fprintf(stderr, "usage: lazy_toucher SNAP.fvm BLOCK PAGE...\n");
		return 2;
	}
	if (fvm_reader_open(&r, argv[1]) || fvm_reader_find_block(r, argv[2], &b) ||
	    fvm_reader_block(r, b, &bi)) {
		fprintf(stderr, "%s\n", fvm_error_detail());
		return 1;
	}
	mem = mmap(NULL, bi.length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	m.name = argv[2];
	m.addr = mem;
	m.length = bi.length;
	m.flags = FVM_MAP_ZERO;
	lo.backend = FVM_BACKEND_MMAP;
	lo.flags = FVM_LOAD_LAZY | FVM_LOAD_PARTIAL;
	if (fvm_load(r, &m, 1, &lo, NULL)) {
		fprintf(stderr, "%s\n", fvm_error_detail());
		return 1;
	}
	for (int i = 3; i < argc; i++)
		sum += ((unsigned char *)mem)[strtoull(argv[i], NULL, 10) * bi.page_size + 7];
	printf("ready %u\n", sum);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	fvm_reader_free(r);
	return 0;
}
