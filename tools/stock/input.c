/*
 * Opening stock inputs (see input.h): qcow2 detection by magic and the
 * choice of its snapshot, else a stream read from the file or pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "input.h"
#include "stock_error.h"

static int open_qcow2(struct stock_input *in, const char *path,
		      const char *snapshot)
{
	const struct stock_qcow2_snapshot *sn;
	size_t n;
	int err;

	if ((err = stock_qcow2_open(&in->q, path)))
		return err;
	in->kind = STOCK_INPUT_QCOW2;
	n = stock_qcow2_snapshot_count(in->q);
	if (snapshot) {
		if ((err = stock_qcow2_find_snapshot(in->q, snapshot, &in->snapshot)))
			return fvm_error_set(FVM_ENOTFOUND, 0, "%s: no snapshot with id or name '%s'",
					     path, snapshot);
	} else if (n == 1) {
		in->snapshot = 0;
	} else if (n == 0) {
		return fvm_error_set(FVM_ENOTFOUND, 0, "%s: the image has no internal snapshots", path);
	} else {
		return fvm_error_set(FVM_EINVAL, 0,
				     "%s: the image has %zu internal snapshots: choose one with --snapshot NAME|ID",
				     path, n);
	}
	sn = stock_qcow2_snapshot(in->q, in->snapshot);
	if (!sn || sn->vm_state_size == 0)
		return fvm_error_set(FVM_ENOTFOUND, 0,
				     "%s: snapshot '%s' has no VM state (a disk-only snapshot)",
				     path, sn ? sn->name : "?");
	if ((err = stock_qcow2_vmstate_check(in->q, in->snapshot)))
		return err;
	snprintf(in->name, sizeof(in->name), "%s snapshot '%s' vmstate", path, sn->name);
	return stock_source_open_qcow2(&in->src, in->q, in->snapshot, in->name);
}

int stock_input_open_fd(struct stock_input *in, int fd, const char *name)
{
	uint8_t magic[4];
	int err;

	memset(in, 0, sizeof(*in));
	in->fd = -1;
	snprintf(in->name, sizeof(in->name), "%s", name);
	if ((err = stock_source_open_fd(&in->src, fd, in->name)) ||
	    (err = stock_source_peek_bytes(in->src, magic, 4, "file header")))
		return err;
	if (!memcmp(magic, "QFI\xfb", 4))
		return fvm_error_set(FVM_EINVAL, 0, "%s: a qcow2 image, not a migration stream",
				     in->name);
	in->kind = STOCK_INPUT_STREAM;
	return 0;
}

int stock_input_open(struct stock_input *in, const char *path,
		     const char *snapshot)
{
	uint8_t magic[4];
	int err;

	memset(in, 0, sizeof(*in));
	in->fd = -1;
	if (!strcmp(path, "-")) {
		snprintf(in->name, sizeof(in->name), "standard input");
		if ((err = stock_source_open_fd(&in->src, STDIN_FILENO, in->name)))
			return err;
	} else {
		snprintf(in->name, sizeof(in->name), "%s", path);
		in->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (in->fd < 0)
			return fvm_error_set(stock_sys_code(errno), errno, "%s: open", path);
		if ((err = stock_source_open_fd(&in->src, in->fd, in->name)))
			return err;
	}
	/* Four bytes decide; a shorter input is a truncated stream. */
	if ((err = stock_source_peek_bytes(in->src, magic, 4, "file header")))
		return err;
	if (memcmp(magic, "QFI\xfb", 4)) {
		if (snapshot)
			return fvm_error_set(FVM_EINVAL, 0,
					     "%s: --snapshot applies to qcow2 images; this is not one",
					     in->name);
		in->kind = STOCK_INPUT_STREAM;
		return 0;
	}
	if (!strcmp(path, "-"))
		return fvm_error_set(FVM_EINVAL, 0,
				     "standard input: a qcow2 image is read by its path, not from standard input");
	stock_source_free(in->src);
	in->src = NULL;
	close(in->fd);
	in->fd = -1;
	return open_qcow2(in, path, snapshot);
}

void stock_input_close(struct stock_input *in)
{
	stock_source_free(in->src);
	in->src = NULL;
	stock_qcow2_close(in->q);
	in->q = NULL;
	if (in->fd >= 0)
		close(in->fd);
	in->fd = -1;
}

int stock_input_probe(const char *path)
{
	uint8_t magic[4];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	do
		n = pread(fd, magic, sizeof(magic), 0);
	while (n < 0 && errno == EINTR);
	close(fd);
	return n == 4 && (!memcmp(magic, "QEVM", 4) || !memcmp(magic, "QFI\xfb", 4));
}
