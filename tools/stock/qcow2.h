/*
 * qcow2 internal snapshots, read side (tool code, never part of libfastvm).
 *
 * Opens a qcow2 image (v2 or v3, cluster sizes 512 B .. 2 MiB, extended L2
 * entries, deflate-compressed clusters), lists its snapshot table and reads
 * a snapshot's VM state (the migration stream `savevm` wrote) through the
 * snapshot's own L1/L2 tables, with bounded memory: a few L2 tables and one
 * inflated cluster are cached, never the VM state itself.
 *
 * Errors are FVM_E* codes with a detail in fvm_error_detail() naming the
 * file, the structure and its offset. Every offset in the image is checked
 * against the file size and against the metadata it must not overlap.
 */
#ifndef STOCK_QCOW2_H
#define STOCK_QCOW2_H

#include <stddef.h>
#include <stdint.h>

struct stock_qcow2;

struct stock_qcow2_snapshot {
	char *id, *name;             /* NUL-terminated copies */
	uint64_t date_sec; uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;      /* from extra data when present (>4 GiB) */
	uint64_t disk_size;
	uint64_t icount;             /* UINT64_MAX when absent/off */
	uint64_t l1_table_offset; uint32_t l1_size;
};

int stock_qcow2_open(struct stock_qcow2 **out, const char *path);
void stock_qcow2_close(struct stock_qcow2 *q);          /* NULL ok */
uint32_t stock_qcow2_version(const struct stock_qcow2 *q);
uint32_t stock_qcow2_cluster_bits(const struct stock_qcow2 *q);
size_t stock_qcow2_snapshot_count(const struct stock_qcow2 *q);
const struct stock_qcow2_snapshot *stock_qcow2_snapshot(const struct stock_qcow2 *q, size_t i);
/* By id first, then by name, like QEMU's loadvm; FVM_ENOTFOUND otherwise. */
int stock_qcow2_find_snapshot(const struct stock_qcow2 *q, const char *id_or_name, size_t *index);
/* Read vmstate bytes [off, off+len) of snapshot i through its own L1/L2 tables. */
int stock_qcow2_vmstate_pread(struct stock_qcow2 *q, size_t i, void *buf, size_t len, uint64_t off);
/*
 * Check, before reading, that every L2 table and host cluster holding
 * snapshot i's VM state lies inside the file: FVM_ETRUNCATED naming the
 * snapshot and the cluster otherwise (a truncated image).
 */
int stock_qcow2_vmstate_check(struct stock_qcow2 *q, size_t i);

/*
 * Guest disk bytes [off, off+len) through the ACTIVE L1 table, with the same
 * L2 walk as the VM state (the tests compare it with libqcow). The range
 * must lie inside the virtual disk size. A backing file is not consulted:
 * unallocated clusters read as zeros.
 */
int stock_qcow2_active_pread(struct stock_qcow2 *q, void *buf, size_t len, uint64_t off);
/* Virtual disk size from the header. */
uint64_t stock_qcow2_disk_size(const struct stock_qcow2 *q);

#endif
