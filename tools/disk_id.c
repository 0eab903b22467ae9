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
			const char *path;

			snprintf(key, sizeof(key), "disk.%u.path", k);
			if (!(path = fvm_reader_meta_get(r, key)))
				break;
			if (!strcmp(path, real))
				given[k] = 1;
		}
		switch (fvm_reader_check_disk(r, real)) {
		case 0:
		case FVM_ENOTFOUND:
			break;
		case FVM_ECHANGED:
			cli_msg("%s%s (%s)%s", force ? "warning: " : "", fvm_error_detail(), snap,
				force ? "" : "; --force restores anyway");
			bad = 1;
			break;
		default:
			cli_msg("%s: cannot check disk %s against the snapshot: %s", snap, real,
				fvm_error_detail());
			bad = 1;
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
