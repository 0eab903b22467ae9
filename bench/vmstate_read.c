/*
 * The reference of bench/convert-speed.sh: a raw sequential read of a
 * qcow2 internal snapshot's vmstate bytes, through the snapshot's own L1/L2
 * mapping (tools/stock/qcow2.c, the same code convert reads through), into
 * one 1 MiB buffer, nothing else: no parse, no output. What convert is
 * measured against is what reading its input costs.
 *
 * Usage: vmstate_read QCOW2 SNAPSHOT    prints the number of bytes read
 */
#include <stdio.h>
#include <stdlib.h>

#include "fastvm/fastvm.h"
#include "qcow2.h"

#define BUF_SIZE (1u << 20)

int main(int argc, char **argv)
{
	struct stock_qcow2 *q = NULL;
	const struct stock_qcow2_snapshot *sn;
	uint64_t off = 0, size;
	size_t idx;
	char *buf;
	int err;

	if (argc != 3) {
		fprintf(stderr, "usage: vmstate_read QCOW2 SNAPSHOT\n");
		return 2;
	}
	buf = malloc(BUF_SIZE);
	if (!buf) {
		fprintf(stderr, "vmstate_read: out of memory\n");
		return 1;
	}
	if ((err = stock_qcow2_open(&q, argv[1])) ||
	    (err = stock_qcow2_find_snapshot(q, argv[2], &idx)))
		goto fail;
	sn = stock_qcow2_snapshot(q, idx);
	size = sn->vm_state_size;
	while (off < size) {
		size_t n = size - off < BUF_SIZE ? (size_t)(size - off) : BUF_SIZE;

		if ((err = stock_qcow2_vmstate_pread(q, idx, buf, n, off)))
			goto fail;
		off += n;
	}
	printf("%llu\n", (unsigned long long)size);
	stock_qcow2_close(q);
	free(buf);
	return 0;
fail:
	fprintf(stderr, "vmstate_read: %s\n", fvm_error_detail());
	stock_qcow2_close(q);
	free(buf);
	return 1;
}
