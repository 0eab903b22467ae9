/*
 * libFuzzer target: the qcow2 internal snapshot reader (tools/stock/qcow2.c).
 * The input becomes a file (a memfd, opened by path like any image); then:
 * open, list, read each snapshot's whole vmstate (capped) and the start of
 * the active disk. Checks on every input: no crash, no read or write outside
 * buffers (ASan), every failure carries a detail, find_snapshot agrees with
 * the table, and a random sub-range read gives the same bytes as the whole
 * read (the L2 and inflate caches must not leak state between reads).
 * Seeds: fuzz/corpus/qcow2/ (tiny savevm images from QEMU 7.2 with -M none,
 * images from tests/qcow2_gen.c with compressed, zero and subcluster
 * vmstate, and truncated copies).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fastvm/fastvm.h"
#include "../tools/stock/qcow2.h"

#define VM_CAP (4u << 20)
#define ACTIVE_CAP (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];
static uint8_t *whole, *part;

static void setup(void)
{
	memfd = memfd_create("fuzz_qcow2", 0);
	if (memfd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	whole = malloc(VM_CAP);
	part = malloc(VM_CAP);
	if (!whole || !part)
		abort();
}

static void check_failed(int rc)
{
	if (rc >= 0 || !fvm_error_detail()[0])
		abort();
}

static void read_vmstate(struct stock_qcow2 *q, size_t i, uint64_t salt)
{
	const struct stock_qcow2_snapshot *sn = stock_qcow2_snapshot(q, i);
	size_t n = sn->vm_state_size < VM_CAP ? (size_t)sn->vm_state_size : VM_CAP;
	size_t off, len;
	int rc;

	rc = stock_qcow2_vmstate_pread(q, i, whole, n, 0);
	if (rc) {
		check_failed(rc);
		return;
	}
	if (!n)
		return;
	off = (size_t)(salt % n);
	len = (size_t)((salt >> 32) % (n - off + 1));
	rc = stock_qcow2_vmstate_pread(q, i, part, len, off);
	if (rc || memcmp(part, whole + off, len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stock_qcow2 *q;
	uint64_t salt = 0x9e3779b97f4a7c15ull ^ size;
	size_t i, n, idx;
	int rc;

	if (memfd < 0)
		setup();
	if (ftruncate(memfd, 0) || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	for (i = 0; i < size && i < 64; i++)
		salt = (salt ^ data[size - 1 - i]) * 0x100000001b3ull;

	rc = stock_qcow2_open(&q, path);
	if (rc) {
		check_failed(rc);
		return 0;
	}
	n = stock_qcow2_snapshot_count(q);
	for (i = 0; i < n && i < 64; i++) {
		const struct stock_qcow2_snapshot *sn = stock_qcow2_snapshot(q, i);

		if (!sn || !sn->id || !sn->name)
			abort();
		/* the first snapshot with this id, or one whose name is this id */
		if (stock_qcow2_find_snapshot(q, sn->id, &idx) || idx > i ||
		    (strcmp(stock_qcow2_snapshot(q, idx)->id, sn->id) &&
		     strcmp(stock_qcow2_snapshot(q, idx)->name, sn->id)))
			abort();
		read_vmstate(q, i, salt + i);
	}
	if (stock_qcow2_snapshot(q, n))
		abort();
	{
		uint64_t d = stock_qcow2_disk_size(q);
		size_t len = d < ACTIVE_CAP ? (size_t)d : ACTIVE_CAP;

		rc = stock_qcow2_active_pread(q, whole, len, 0);
		if (rc)
			check_failed(rc);
	}
	stock_qcow2_close(q);
	return 0;
}
