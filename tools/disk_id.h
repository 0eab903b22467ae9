/*
 * The disk belongs to the snapshot: a disk image's identity (path, size,
 * fingerprint) comes from the library (fvm_disk_identify, lib/disk.c), which
 * also compares it (fvm_reader_check_disk). save and convert record it as
 * metadata (disk.N.path, disk.N.size, disk.N.kind, disk.N.fingerprint)
 * through their key/value lists; restore checks the images given to QEMU.
 */
#ifndef FVMSNAP_DISK_ID_H
#define FVMSNAP_DISK_ID_H

#include <stdint.h>

#include "fastvm/fastvm.h"

struct disk_id {
	char path[4096];        /* realpath */
	uint64_t size;
	const char *kind;       /* "qcow2" or "file" */
	char fingerprint[17];   /* 16 hex digits */
};

/* 0, or -errno (-EINVAL for a qcow2 image whose header cannot be read). */
int disk_id_get(const char *path, struct disk_id *d);

/* Add the metadata of disk n to a writer's key/value list (see stock.h). */
int disk_id_meta(const struct disk_id *d, unsigned n, char keys[4][32], char vals[4][4200]);

/*
 * restore: every -drive file=PATH, -hda..-hdd PATH of the QEMU command whose
 * image the snapshot recorded must still have its identity. 0 when they all
 * do (or force, after a warning each); else a message and EXIT_INVALID.
 * Disks the snapshot recorded that QEMU is not given are warned about.
 */
int disk_id_check(fvm_reader *r, const char *snap, char **qemu, int n, int force);

#endif
