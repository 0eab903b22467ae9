/*
 * The disk belongs to the snapshot: the library records a disk image's
 * identity (fvm_writer_add_disk: convert of a qcow2 savevm, save) and
 * compares it (fvm_reader_check_disk, lib/disk.c). Here: which images of a
 * QEMU command line restore checks.
 */
#ifndef FVMSNAP_DISK_ID_H
#define FVMSNAP_DISK_ID_H

#include <stdint.h>

#include "fastvm/fastvm.h"

/*
 * restore: every -drive file=PATH, -hda..-hdd PATH of the QEMU command whose
 * image the snapshot recorded must still have its identity. 0 when they all
 * do (or force, after a warning each); else a message and EXIT_INVALID.
 * Disks the snapshot recorded that QEMU is not given are warned about.
 */
int disk_id_check(fvm_reader *r, const char *snap, char **qemu, int n, int force);

#endif
