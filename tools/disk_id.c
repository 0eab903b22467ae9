/*
 * Disk identity (disk_id.h).
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

#include "cli.h"
#include "disk_id.h"

#define MAX_L1_BYTES (64u << 20)

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

static int pread_all(int fd, void *buf, size_t n, off_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(fd, (char *)buf + done, n - done, off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EINVAL;
		done += (size_t)k;
	}
	return 0;
}

int disk_id_get(const char *path, struct disk_id *d)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t hdr[512];
	struct stat st;
	int fd, err = 0;

	memset(d, 0, sizeof(*d));
	if (!realpath(path, d->path))
		return -errno;
	fd = open(d->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	d->size = (uint64_t)st.st_size;
	if (st.st_size >= 104 && pread_all(fd, hdr, 104, 0) == 0 && !memcmp(hdr, "QFI\xfb", 4)) {
		uint32_t version = (uint32_t)be(hdr + 4, 4), hlen = version >= 3 ? (uint32_t)be(hdr + 100, 4) : 72;
		uint64_t l1 = be(hdr + 40, 8), l1_bytes = be(hdr + 36, 4) * 8;
		uint8_t *t;

		d->kind = "qcow2";
		if (hlen < 72 || hlen > sizeof(hdr) || l1_bytes > MAX_L1_BYTES ||
		    pread_all(fd, hdr, hlen, 0)) {
			err = -EINVAL;
			goto out;
		}
		h = fnv(h, hdr, hlen);
		t = malloc(l1_bytes ? l1_bytes : 1);
		if (!t) {
			err = -ENOMEM;
			goto out;
		}
		err = pread_all(fd, t, l1_bytes, (off_t)l1);
		if (!err)
			h = fnv(h, t, l1_bytes);
		free(t);
	} else {
		d->kind = "file";
		h = fnv(h, &st.st_size, sizeof(st.st_size));
		h = fnv(h, &st.st_mtim, sizeof(st.st_mtim));
	}
	snprintf(d->fingerprint, sizeof(d->fingerprint), "%016" PRIx64, h);
out:
	close(fd);
	return err;
}

int disk_id_meta(const struct disk_id *d, unsigned n, char keys[4][32], char vals[4][4200])
{
	snprintf(keys[0], 32, "disk.%u.path", n);
	snprintf(vals[0], 4200, "%s", d->path);
	snprintf(keys[1], 32, "disk.%u.size", n);
	snprintf(vals[1], 4200, "%" PRIu64, d->size);
	snprintf(keys[2], 32, "disk.%u.kind", n);
	snprintf(vals[2], 4200, "%s", d->kind);
	snprintf(keys[3], 32, "disk.%u.fingerprint", n);
	snprintf(vals[3], 4200, "%s", d->fingerprint);
	return 0;
}

/* The image path of a -drive value (file=..., commas doubled in it), or NULL. */
static char *drive_file(const char *v)
{
	const char *p = v;
	char *out, *o;

	while (p) {
		if (!strncmp(p, "file=", 5))
			break;
		p = strchr(p, ',');
		while (p && p[1] == ',')
			p = strchr(p + 2, ',');
		if (p)
			p++;
	}
	if (!p)
		return NULL;
	p += 5;
	out = o = malloc(strlen(p) + 1);
	if (!out)
		return NULL;
	for (; *p; p++) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++;
		}
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

int disk_id_check(fvm_reader *r, const char *snap, char **qemu, int n, int force)
{
	int bad = 0, given[64] = { 0 };

	for (int i = 1; i + 1 < n; i++) {
		const char *a = qemu[i][0] == '-' && qemu[i][1] == '-' ? qemu[i] + 1 : qemu[i];
		char *file = NULL, key[48], real[PATH_MAX];
		struct disk_id now;

		if (!strcmp(a, "-drive"))
			file = drive_file(qemu[i + 1]);
		else if (!strcmp(a, "-hda") || !strcmp(a, "-hdb") || !strcmp(a, "-hdc") ||
			 !strcmp(a, "-hdd"))
			file = strdup(qemu[i + 1]);
		if (!file)
			continue;
		if (!realpath(file, real)) {
			free(file);
			continue; /* QEMU will say what is wrong with it */
		}
		for (unsigned k = 0; k < 64; k++) {
			const char *path, *size, *fp;

			snprintf(key, sizeof(key), "disk.%u.path", k);
			if (!(path = fvm_reader_meta_get(r, key)))
				break;
			if (strcmp(path, real))
				continue;
			given[k] = 1;
			snprintf(key, sizeof(key), "disk.%u.size", k);
			size = fvm_reader_meta_get(r, key);
			snprintf(key, sizeof(key), "disk.%u.fingerprint", k);
			fp = fvm_reader_meta_get(r, key);
			if (disk_id_get(real, &now)) {
				cli_msg("%s: cannot read disk %s to check it against the snapshot", snap, real);
				bad = 1;
			} else if (size && strtoull(size, NULL, 10) != now.size) {
				cli_msg("%sdisk %s changed since %s was taken: %s bytes then, %" PRIu64
					" now%s", force ? "warning: " : "", real, snap, size, now.size,
					force ? "" : "; --force restores anyway");
				bad = 1;
			} else if (fp && strcmp(fp, now.fingerprint)) {
				cli_msg("%sdisk %s changed since %s was taken (written since?): its %s "
					"was %s, is %s%s", force ? "warning: " : "", real, snap,
					!strcmp(now.kind, "qcow2") ? "qcow2 header and L1 table hash" :
					"size and modification time hash", fp, now.fingerprint,
					force ? "" : "; --force restores anyway");
				bad = 1;
			}
		}
		free(file);
	}
	for (unsigned k = 0; k < 64; k++) {
		char key[48];
		const char *path;

		snprintf(key, sizeof(key), "disk.%u.path", k);
		if (!(path = fvm_reader_meta_get(r, key)))
			break;
		if (!given[k])
			cli_msg("warning: %s was taken with disk %s, which QEMU is not given", snap, path);
	}
	return bad && !force ? EXIT_INVALID : 0;
}
