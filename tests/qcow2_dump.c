/*
 * Test helper for tests/qcow2.sh: drives tools/stock/qcow2.c on images made
 * by real QEMU and gives the script what it needs to get QEMU's own view of
 * the same bytes.
 *
 *   qcow2_dump vm IMG ID|NAME OUT   write the snapshot's vmstate (checks the
 *                                   QEVM magic and version 3)
 *   qcow2_dump active IMG OUT       write the whole guest disk (active L1)
 *   qcow2_dump libqcow IMG          compare the active disk with libqcow
 *   qcow2_dump vmbase IMG ID|NAME   print the vmstate's guest offset and size
 *   qcow2_dump setsize IMG SIZE     rewrite the header's disk size (so that
 *                                   qemu-img can read the vmstate as disk data)
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libqcow.h>

#include "fastvm/fastvm.h"
#include "qcow2.h"

#define CHUNK (1u << 20)

static int fail(const char *what, int code)
{
	fprintf(stderr, "qcow2_dump: %s: %s: %s\n", what, fvm_strerror(code), fvm_error_detail());
	return 1;
}

static int open_find(struct stock_qcow2 **q, const char *img, const char *snap, size_t *i)
{
	int rc = stock_qcow2_open(q, img);

	if (rc)
		return fail("open", rc);
	rc = stock_qcow2_find_snapshot(*q, snap, i);
	if (rc)
		return fail("find", rc);
	return 0;
}

static int dump_vm(const char *img, const char *snap, const char *out)
{
	struct stock_qcow2 *q;
	const struct stock_qcow2_snapshot *sn;
	uint8_t *buf = malloc(CHUNK);
	FILE *f;
	size_t i;
	uint64_t off;

	if (!buf || open_find(&q, img, snap, &i))
		return 1;
	sn = stock_qcow2_snapshot(q, i);
	f = fopen(out, "wb");
	if (!f)
		return 1;
	for (off = 0; off < sn->vm_state_size; off += CHUNK) {
		size_t n = sn->vm_state_size - off < CHUNK ? (size_t)(sn->vm_state_size - off) : CHUNK;
		int rc = stock_qcow2_vmstate_pread(q, i, buf, n, off);

		if (rc)
			return fail("vmstate", rc);
		if (off == 0 && (n < 8 || memcmp(buf, "QEVM\0\0\0\3", 8))) {
			fprintf(stderr, "qcow2_dump: vmstate of %s does not start with QEVM v3\n", snap);
			return 1;
		}
		if (fwrite(buf, 1, n, f) != n)
			return 1;
	}
	if (fclose(f))
		return 1;
	printf("%" PRIu64 "\n", sn->vm_state_size);
	stock_qcow2_close(q);
	free(buf);
	return 0;
}

static int dump_active(const char *img, const char *out)
{
	struct stock_qcow2 *q;
	uint8_t *buf = malloc(CHUNK);
	uint64_t off, size;
	FILE *f;
	int rc;

	if (!buf)
		return 1;
	if ((rc = stock_qcow2_open(&q, img)))
		return fail("open", rc);
	size = stock_qcow2_disk_size(q);
	f = fopen(out, "wb");
	if (!f)
		return 1;
	for (off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;

		if ((rc = stock_qcow2_active_pread(q, buf, n, off)))
			return fail("active", rc);
		if (fwrite(buf, 1, n, f) != n)
			return 1;
	}
	stock_qcow2_close(q);
	free(buf);
	return fclose(f) ? 1 : 0;
}

static int cmp_libqcow(const char *img)
{
	struct stock_qcow2 *q;
	libqcow_file_t *f = NULL;
	libqcow_error_t *err = NULL;
	uint8_t *a = malloc(CHUNK), *b = malloc(CHUNK);
	uint64_t off, size;
	int rc;

	if (!a || !b)
		return 1;
	if ((rc = stock_qcow2_open(&q, img)))
		return fail("open", rc);
	if (libqcow_file_initialize(&f, &err) != 1 ||
	    libqcow_file_open(f, img, LIBQCOW_OPEN_READ, &err) != 1) {
		libqcow_error_fprint(err, stderr);
		return 1;
	}
	size = stock_qcow2_disk_size(q);
	for (off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;

		if ((rc = stock_qcow2_active_pread(q, a, n, off)))
			return fail("active", rc);
		if (libqcow_file_read_buffer_at_offset(f, b, n, (off64_t)off, &err) != (ssize_t)n) {
			libqcow_error_fprint(err, stderr);
			return 1;
		}
		if (memcmp(a, b, n)) {
			fprintf(stderr, "qcow2_dump: %s: libqcow differs in [0x%" PRIx64 ", +%zu)\n",
				img, off, n);
			return 1;
		}
	}
	libqcow_file_close(f, NULL);
	libqcow_file_free(&f, NULL);
	stock_qcow2_close(q);
	free(a);
	free(b);
	return 0;
}

/* The guest offset QEMU's qcow2_vm_state_offset() gives for this snapshot. */
static int vmbase(const char *img, const char *snap)
{
	struct stock_qcow2 *q;
	const struct stock_qcow2_snapshot *sn;
	uint32_t cb, shift;
	uint8_t hdr[80];
	uint64_t l1;
	size_t i;
	int fd;

	if (open_find(&q, img, snap, &i))
		return 1;
	sn = stock_qcow2_snapshot(q, i);
	cb = stock_qcow2_cluster_bits(q);
	fd = open(img, O_RDONLY);
	if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return 1;
	close(fd);
	/* extended L2 (incompatible bit 4) halves the entries per table */
	shift = cb + cb - ((stock_qcow2_version(q) == 3 && (hdr[79] & 0x10)) ? 4 : 3);
	l1 = (sn->disk_size >> shift) + ((sn->disk_size & ((1ull << shift) - 1)) != 0);
	printf("%" PRIu64 " %" PRIu64 "\n", l1 << shift, sn->vm_state_size);
	stock_qcow2_close(q);
	return 0;
}

static int setsize(const char *img, const char *size)
{
	uint64_t v = strtoull(size, NULL, 0);
	uint8_t b[8];
	int fd = open(img, O_WRONLY);

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	if (fd < 0 || pwrite(fd, b, 8, 24) != 8)
		return 1;
	return close(fd) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "vm"))
		return dump_vm(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "active"))
		return dump_active(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "libqcow"))
		return cmp_libqcow(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "vmbase"))
		return vmbase(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "setsize"))
		return setsize(argv[2], argv[3]);
	fprintf(stderr, "usage: qcow2_dump vm|active|libqcow|vmbase|setsize ...\n");
	return 2;
}
