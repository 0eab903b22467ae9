/*
 * The disk belongs to the snapshot: a VM state is valid only with the disk
 * images it was taken with. An image's identity is its real path, its size
 * and a cheap fingerprint: for qcow2 a 64-bit FNV-1a hash of its header and
 * active L1 table (a guest write after the snapshot allocates or copies an
 * L2 table, which changes the L1; an overwrite in place of a cluster the
 * image already owns does not: cheap, not a hash of the data), for any
 * other file of its size and modification time. Snapshots record it as
 * metadata disk.N.path, disk.N.size, disk.N.kind, disk.N.fingerprint
 * (FORMAT.md 4.2); fvmsnap and the QEMU hook compare it before a restore.
 * Besides the writer's disk counter, only the public API is used here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.h"
#include "error.h"
#include "io.h"
#include "writer.h"

#define MAX_L1_BYTES (64u << 20)
#define MAX_DISKS 64

/* disk.N.<field> (FORMAT.md 4.2) */
enum { F_PATH, F_SIZE, F_KIND, F_FINGERPRINT, NFIELDS };
static const char *const field[NFIELDS] = { "path", "size", "kind", "fingerprint" };

static const char *disk_key(char *key, size_t len, unsigned n, int f)
{
	snprintf(key, len, "disk.%u.%s", n, field[f]);
	return key;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The identity of the image at real path p. */
static int identify(const char *p, fvm_disk_info *d)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t hdr[512];
	struct stat st;
	int fd, rc = 0;

	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fvm_err_sys(errno, "disk %s: open", p);
	if (fstat(fd, &st) < 0) {
		rc = fvm_err_sys(errno, "disk %s: fstat", p);
		goto out;
	}
	d->length = (uint64_t)st.st_size;
	if (st.st_size >= 104 && (rc = fvm_pread_full(fd, hdr, 104, 0, p, "disk header")))
		goto out;
	if (st.st_size >= 104 && !memcmp(hdr, "QFI\xfb", 4)) {
		uint32_t version = (uint32_t)be(hdr + 4, 4);
		uint32_t hlen = version >= 3 ? (uint32_t)be(hdr + 100, 4) : 72;
		uint64_t l1 = be(hdr + 40, 8), l1_bytes = be(hdr + 36, 4) * 8;
		uint8_t *t;

		d->kind = "qcow2";
		if (hlen < 72 || hlen > sizeof(hdr) || l1_bytes > MAX_L1_BYTES) {
			rc = fvm_err(FVM_ECORRUPT, "disk %s: qcow2 header at offset 0: header length "
				     "%u, L1 table %" PRIu64 " bytes", p, hlen, l1_bytes);
			goto out;
		}
		if ((rc = fvm_pread_full(fd, hdr, hlen, 0, p, "qcow2 header")))
			goto out;
		h = fnv(h, hdr, hlen);
		t = malloc(l1_bytes ? l1_bytes : 1);
		if (!t) {
			rc = fvm_err(FVM_ENOMEM, "disk %s: L1 table of %" PRIu64 " bytes", p, l1_bytes);
			goto out;
		}
		rc = fvm_pread_full(fd, t, l1_bytes, l1, p, "qcow2 L1 table");
		if (!rc)
			h = fnv(h, t, l1_bytes);
		free(t);
	} else {
		d->kind = "file";
		h = fnv(h, &st.st_size, sizeof(st.st_size));
		h = fnv(h, &st.st_mtim, sizeof(st.st_mtim));
	}
	d->fingerprint = h;
out:
	close(fd);
	return rc;
}

int fvm_disk_identify(const char *path, fvm_disk_info *info)
{
	fvm_disk_info d = FVM_DISK_INFO_INIT;
	char real[PATH_MAX];
	int rc;

	fvm_err_clear();
	if (!path || !info)
		return fvm_err(FVM_EINVAL, "fvm_disk_identify: NULL argument");
	if (!realpath(path, real))
		return fvm_err_sys(errno, "disk %s", path);
	rc = identify(real, &d);
	return rc ? rc : fvm_abi_out(info, &d, sizeof(d), "fvm_disk_identify");
}

int fvm_writer_add_disk(fvm_writer *w, const char *path)
{
	fvm_disk_info d = FVM_DISK_INFO_INIT;
	char real[PATH_MAX], key[32], size[24], fp[24];
	unsigned n;
	int rc;

	fvm_err_clear();
	if (!w || !path)
		return fvm_err(FVM_EINVAL, "fvm_writer_add_disk: NULL argument");
	if (!realpath(path, real))
		return fvm_err_sys(errno, "disk %s", path);
	if ((rc = identify(real, &d)))
		return rc;
	n = fvm_writer_next_disk(w);
	if (n >= MAX_DISKS)
		return fvm_err(FVM_EINVAL, "fvm_writer_add_disk: more than %d disks", MAX_DISKS);
	snprintf(size, sizeof(size), "%" PRIu64, d.length);
	snprintf(fp, sizeof(fp), "%016" PRIx64, d.fingerprint);
	{
		const char *val[NFIELDS] = { real, size, d.kind, fp };

		for (int f = 0; f < NFIELDS; f++)
			if ((rc = fvm_writer_add_meta(w, disk_key(key, sizeof(key), n, f), val[f])))
				return rc;
	}
	return 0;
}

int fvm_reader_check_disk(const fvm_reader *r, const char *path)
{
	fvm_disk_info now = FVM_DISK_INFO_INIT;
	char real[PATH_MAX], key[32], fp[32];

	fvm_err_clear();
	if (!r || !path)
		return fvm_err(FVM_EINVAL, "fvm_reader_check_disk: NULL argument");
	if (!realpath(path, real))
		return fvm_err_sys(errno, "disk %s", path);
	for (unsigned k = 0; k < MAX_DISKS; k++) {
		const char *p, *size, *f;
		int rc;

		if (!(p = fvm_reader_meta_get(r, disk_key(key, sizeof(key), k, F_PATH))))
			break;
		if (strcmp(p, real))
			continue;
		if ((rc = identify(real, &now)))
			return rc;
		size = fvm_reader_meta_get(r, disk_key(key, sizeof(key), k, F_SIZE));
		f = fvm_reader_meta_get(r, disk_key(key, sizeof(key), k, F_FINGERPRINT));
		snprintf(fp, sizeof(fp), "%016" PRIx64, now.fingerprint);
		if (size && strtoull(size, NULL, 10) != now.length)
			return fvm_err(FVM_ECHANGED, "disk %s changed since the snapshot was taken: "
				       "%s bytes then, %" PRIu64 " now", real, size, now.length);
		if (f && strcmp(f, fp))
			return fvm_err(FVM_ECHANGED, "disk %s changed since the snapshot was taken "
				       "(written since?): its %s was %s, is %s", real,
				       !strcmp(now.kind, "qcow2") ? "qcow2 header and L1 table hash"
				       : "size and modification time hash", f, fp);
		return 0;
	}
	return fvm_err(FVM_ENOTFOUND, "the snapshot recorded no disk %s", real);
}
