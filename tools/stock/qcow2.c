/*
 * qcow2 internal snapshots: header, snapshot table and the L1/L2 walk that
 * reads a snapshot's VM state (tool side; see qcow2.h).
 *
 * Layout facts follow QEMU's block/qcow2.h, qcow2.c, qcow2-snapshot.c,
 * qcow2-cluster.c and docs/interop/qcow2.txt (checked against 7.2). Where
 * QEMU only checks a rule in `qemu-img check` (reserved bits, overlapping
 * metadata) this reader refuses the image instead: every input is hostile.
 *
 * libqcow recognises the file (signature) and, where it can open the image,
 * confirms the version and reports encryption, which is refused. It cannot
 * read snapshot tables or VM state, and it refuses extended L2 and zstd
 * images, so everything else is parsed here.
 *
 * Memory is bounded whatever the image: L2_SLOTS cached L2 tables, one
 * compressed cluster in and one inflated cluster out, one L1 entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libqcow.h>
#include <zlib.h>

#include "qcow2.h"
#include "stock_error.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define MIN_CLUSTER_BITS 9
#define MAX_CLUSTER_BITS 21     /* QEMU's implementation limit (2 MiB) */
#define V2_HEADER_LEN 72
#define V3_HEADER_LEN 104
#define SNAP_HEADER_LEN 40
#define SNAP_EXTRA_KNOWN 24     /* vm_state_size_large, disk_size, icount */
#define MAX_SNAPSHOTS 65536u    /* QCOW_MAX_SNAPSHOTS */
#define MAX_SNAP_EXTRA 1024u    /* QCOW_MAX_SNAPSHOT_EXTRA_DATA */
#define MAX_SNAP_TABLE (1024ull * MAX_SNAPSHOTS) /* QCOW_MAX_SNAPSHOTS_SIZE */
#define MAX_L1_BYTES (32ull << 20)               /* QCOW_MAX_L1_SIZE */
#define MAX_REFTABLE_BYTES (8ull << 20)          /* QCOW_MAX_REFTABLE_SIZE */

#define INCOMPAT_DIRTY 0x1ull
#define INCOMPAT_CORRUPT 0x2ull
#define INCOMPAT_DATA_FILE 0x4ull
#define INCOMPAT_COMPRESSION 0x8ull
#define INCOMPAT_EXTL2 0x10ull
#define INCOMPAT_KNOWN 0x1full

#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define L1E_RESERVED_MASK 0x7f000000000001ffull
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_STD_RESERVED_MASK 0x3f000000000001feull
#define OFLAG_COMPRESSED (1ull << 62)
#define OFLAG_ZERO 1ull
#define SUBCLUSTERS 32
#define COMPRESSED_SECTOR 512u

#define L2_SLOTS 4

struct range {
	uint64_t start, end; /* [start, end) in the file */
	const char *what;
};

struct l2_slot {
	uint64_t off;   /* 0: empty */
	uint64_t stamp; /* LRU clock */
	uint8_t *tab;   /* one cluster */
};

/* What one read walks: the active L1 table or a snapshot's. */
struct map {
	const char *what;     /* for messages: "active L1", "snapshot 1 L1" */
	uint64_t l1_off;
	uint32_t l1_size;
	struct range own_l1;  /* must not be overlapped by clusters */
};

struct stock_qcow2 {
	int fd;
	char *path;
	uint64_t file_size;
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t l2_bits;
	uint32_t l2e_size;     /* 8, or 16 with extended L2 entries */
	uint32_t sc_bits;      /* subcluster bits (== cluster_bits without ext L2) */
	bool extl2;
	uint64_t disk_size;
	uint64_t l1_off;
	uint32_t l1_size;
	uint32_t nb_snapshots;
	uint64_t snap_off;
	struct stock_qcow2_snapshot *snaps;

	/* Metadata no L2 table or data cluster may overlap. */
	struct range meta[4];
	unsigned nmeta;

	/* Compressed cluster descriptor split (QEMU csize_shift etc.). */
	uint32_t csize_shift;
	uint64_t csize_mask;
	uint64_t coff_mask;

	struct l2_slot l2[L2_SLOTS];
	uint64_t clock;

	/* Last L1 entry read, per table (the walk is mostly sequential). */
	uint64_t l1c_table, l1c_index, l1c_entry;
	bool l1c_valid;

	/* Last inflated cluster, keyed by its L2 entry. */
	z_stream zs;
	bool zs_init;
	uint8_t *z_in;
	uint8_t *z_out;
	uint64_t z_entry;
	bool z_valid;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* pread all of [off, off+len), which the caller has checked lies in the file. */
static int read_at(struct stock_qcow2 *q, void *buf, size_t len, uint64_t off,
		   const char *what)
{
	uint8_t *p = buf;

	if (off > q->file_size || len > q->file_size - off)
		return fvm_error_set(FVM_ETRUNCATED, 0,
				     "%s: %s at offset 0x%" PRIx64 " (+%zu bytes) past end of file (size 0x%" PRIx64 ")",
				     q->path, what, off, len, q->file_size);
	while (len) {
		ssize_t n = pread(q->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fvm_error_set(stock_sys_code(errno), errno, "%s: reading %s at offset 0x%" PRIx64,
					     q->path, what, off);
		if (n == 0)
			return fvm_error_set(FVM_ETRUNCATED, 0,
					     "%s: %s at offset 0x%" PRIx64 ": file shrank while reading",
					     q->path, what, off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static bool overlaps(const struct range *r, uint64_t start, uint64_t end)
{
	return r->end > r->start && start < r->end && r->start < end;
}

/*
 * A cluster (L2 table or data) must not overlap the header, an L1 table,
 * the refcount table or the snapshot table: an image that maps guest data
 * onto its own metadata is corrupt (QEMU's overlap checks, on read).
 */
static int check_overlap(const struct stock_qcow2 *q, const struct map *m,
			 uint64_t start, uint64_t len, const char *what)
{
	const struct range *hit = NULL;
	unsigned i;

	for (i = 0; i < q->nmeta && !hit; i++)
		if (overlaps(&q->meta[i], start, start + len))
			hit = &q->meta[i];
	if (!hit && m && overlaps(&m->own_l1, start, start + len))
		hit = &m->own_l1;
	if (hit)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: %s at offset 0x%" PRIx64 " overlaps the %s at 0x%" PRIx64,
				     q->path, what, start, hit->what, hit->start);
	return 0;
}

static void add_meta(struct stock_qcow2 *q, uint64_t start, uint64_t len, const char *what)
{
	if (len == 0)
		return;
	q->meta[q->nmeta].start = start;
	q->meta[q->nmeta].end = start + len;
	q->meta[q->nmeta].what = what;
	q->nmeta++;
}

/* ceil(size / bytes covered by one L1 entry), without overflow (QEMU size_to_l1). */
static uint64_t size_to_l1(const struct stock_qcow2 *q, uint64_t size)
{
	uint32_t shift = q->cluster_bits + q->l2_bits;

	return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

/*
 * A table of entries*entry_len bytes at off: cluster aligned, not larger
 * than QEMU allows, inside the file (qcow2_validate_table plus the file size).
 */
static int check_table(const struct stock_qcow2 *q, uint64_t off, uint64_t entries,
		       uint64_t entry_len, uint64_t max_bytes, const char *what)
{
	if (entries > max_bytes / entry_len)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: %s at offset 0x%" PRIx64 ": %" PRIu64 " entries exceed QEMU's limit of %" PRIu64 " bytes",
				     q->path, what, off, entries, max_bytes);
	if (off & (q->cluster_size - 1))
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: %s offset 0x%" PRIx64 " not aligned to the cluster size %" PRIu64,
				     q->path, what, off, q->cluster_size);
	if (entries && (off > q->file_size || entries * entry_len > q->file_size - off))
		return fvm_error_set(FVM_ERANGE, 0,
				     "%s: %s at offset 0x%" PRIx64 " (%" PRIu64 " bytes) runs past end of file (size 0x%" PRIx64 ")",
				     q->path, what, off, entries * entry_len, q->file_size);
	return 0;
}

static int libqcow_fail(const char *path, libqcow_error_t **err, const char *what)
{
	char msg[512] = "";

	if (*err) {
		libqcow_error_sprint(*err, msg, sizeof(msg));
		libqcow_error_free(err);
	}
	return fvm_error_set(FVM_EIO, 0, "%s: libqcow: %s: %s", path, what, msg);
}

/* libqcow recognises the file; only a definite "not qcow" is EMAGIC. */
static int libqcow_signature(struct stock_qcow2 *q)
{
	libqcow_error_t *err = NULL;
	int r = libqcow_check_file_signature(q->path, &err);

	if (r == 1)
		return 0;
	if (r == 0)
		return fvm_error_set(FVM_EMAGIC, 0, "%s: not a qcow image (no QFI\\xfb signature at offset 0)",
				     q->path);
	return libqcow_fail(q->path, &err, "checking the file signature");
}

/*
 * Cross-check with libqcow where it can open the image (it refuses extended
 * L2 and compression-type images, which is not an error here) and refuse
 * encryption by the method it names.
 */
static int libqcow_facts(struct stock_qcow2 *q, uint32_t crypt_method)
{
	static const char *const methods[] = { "none", "AES-CBC", "LUKS" };
	libqcow_file_t *f = NULL;
	libqcow_error_t *err = NULL;
	uint32_t method = crypt_method, version = q->version;
	int ret = 0;

	if (libqcow_file_initialize(&f, &err) != 1)
		return libqcow_fail(q->path, &err, "initialising");
	if (libqcow_file_open(f, q->path, LIBQCOW_OPEN_READ, &err) == 1) {
		if (libqcow_file_get_encryption_method(f, &method, &err) != 1 ||
		    libqcow_file_get_format_version(f, &version, &err) != 1)
			ret = libqcow_fail(q->path, &err, "reading header facts");
		libqcow_file_close(f, NULL);
	} else {
		libqcow_error_free(&err);
	}
	libqcow_file_free(&f, NULL);
	if (ret)
		return ret;
	/* libqcow's word first; the header field when libqcow could not open it */
	if (!method)
		method = crypt_method;
	if (method)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: qcow2 header at offset 32: encrypted image (%s) not supported",
				     q->path, method < 3 ? methods[method] : "unknown method");
	if (version != q->version)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: qcow2 header at offset 0: libqcow reads version %" PRIu32 ", this reader %" PRIu32,
				     q->path, version, q->version);
	return 0;
}

static int parse_header(struct stock_qcow2 *q)
{
	uint8_t h[V3_HEADER_LEN + 8];
	uint64_t incompat = 0, reftable_off, hlen = V2_HEADER_LEN;
	uint32_t crypt, reftable_clusters, ctype = 0;
	int ret;

	if (q->file_size < V2_HEADER_LEN)
		return fvm_error_set(FVM_ETRUNCATED, 0, "%s: qcow2 header at offset 0: file has only %" PRIu64 " bytes, the header needs 72",
				     q->path, q->file_size);
	ret = read_at(q, h, V2_HEADER_LEN, 0, "qcow2 header");
	if (ret)
		return ret;
	if (be32(h) != QCOW2_MAGIC)
		return fvm_error_set(FVM_EMAGIC, 0, "%s: qcow2 header at offset 0: bad magic 0x%08" PRIx32,
				     q->path, be32(h));
	q->version = be32(h + 4);
	if (q->version != 2 && q->version != 3)
		return fvm_error_set(FVM_EVERSION, 0, "%s: qcow2 header at offset 4: version %" PRIu32 " (only 2 and 3 are qcow2)",
				     q->path, q->version);
	q->cluster_bits = be32(h + 20);
	if (q->cluster_bits < MIN_CLUSTER_BITS)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 20: cluster_bits %" PRIu32 " below 9",
				     q->path, q->cluster_bits);
	if (q->cluster_bits > MAX_CLUSTER_BITS)
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: qcow2 header at offset 20: cluster_bits %" PRIu32 " above QEMU's limit 21 (2 MiB)",
				     q->path, q->cluster_bits);
	q->cluster_size = 1ull << q->cluster_bits;
	q->disk_size = be64(h + 24);
	crypt = be32(h + 32);
	q->l1_size = be32(h + 36);
	q->l1_off = be64(h + 40);
	reftable_off = be64(h + 48);
	reftable_clusters = be32(h + 56);
	q->nb_snapshots = be32(h + 60);
	q->snap_off = be64(h + 64);

	if (q->version == 3) {
		ret = read_at(q, h + V2_HEADER_LEN, V3_HEADER_LEN - V2_HEADER_LEN,
			      V2_HEADER_LEN, "qcow2 v3 header");
		if (ret)
			return ret;
		incompat = be64(h + 72);
		hlen = be32(h + 100);
		if (hlen < V3_HEADER_LEN)
			return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 100: header_length %" PRIu64 " below 104",
					     q->path, hlen);
		if (hlen > q->cluster_size)
			return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 100: header_length %" PRIu64 " exceeds the cluster size",
					     q->path, hlen);
		if (hlen > V3_HEADER_LEN) {
			ret = read_at(q, h + V3_HEADER_LEN, 1, V3_HEADER_LEN, "qcow2 compression_type");
			if (ret)
				return ret;
			ctype = h[V3_HEADER_LEN];
		}
	}

	if (incompat & ~INCOMPAT_KNOWN)
		return fvm_error_set(FVM_EFEATURE, 0, "%s: qcow2 header at offset 72: unknown incompatible feature bits 0x%" PRIx64,
				     q->path, (uint64_t)(incompat & ~INCOMPAT_KNOWN));
	if (incompat & INCOMPAT_DATA_FILE)
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: qcow2 header at offset 72: external data file not supported (no internal snapshots there)",
				     q->path);
	if (ctype == 1 && (incompat & INCOMPAT_COMPRESSION))
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: qcow2 header at offset 104: zstd-compressed image not supported",
				     q->path);
	if (ctype > 1)
		return fvm_error_set(FVM_EFEATURE, 0, "%s: qcow2 header at offset 104: unknown compression type %" PRIu32,
				     q->path, ctype);
	if (!ctype != !(incompat & INCOMPAT_COMPRESSION))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 72: compression type bit %s but compression_type is %" PRIu32,
				     q->path, ctype ? "clear" : "set", ctype);
	/* Dirty and corrupt images are read, as QEMU opens them read-only. */
	q->extl2 = incompat & INCOMPAT_EXTL2;
	q->l2e_size = q->extl2 ? 16 : 8;
	q->l2_bits = q->cluster_bits - (q->extl2 ? 4 : 3);
	q->sc_bits = q->extl2 ? q->cluster_bits - 5 : q->cluster_bits;
	if (q->sc_bits < MIN_CLUSTER_BITS)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 20: extended L2 entries need cluster_bits >= 14, got %" PRIu32,
				     q->path, q->cluster_bits);
	q->csize_shift = 62 - (q->cluster_bits - 8);
	q->csize_mask = (1ull << (q->cluster_bits - 8)) - 1;
	q->coff_mask = (1ull << q->csize_shift) - 1;

	if (crypt > 2)
		return fvm_error_set(FVM_EUNSUPPORTED, 0, "%s: qcow2 header at offset 32: unknown encryption method %" PRIu32,
				     q->path, crypt);
	ret = libqcow_facts(q, crypt);
	if (ret)
		return ret;

	if (reftable_clusters == 0)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 56: no refcount table", q->path);
	ret = check_table(q, reftable_off, reftable_clusters, q->cluster_size, MAX_REFTABLE_BYTES,
			  "refcount table");
	if (ret)
		return ret;
	ret = check_table(q, q->l1_off, q->l1_size, 8, MAX_L1_BYTES, "active L1 table");
	if (ret)
		return ret;
	if (size_to_l1(q, q->disk_size) > q->l1_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: active L1 table at offset 0x%" PRIx64 ": %" PRIu32 " entries cannot map the disk size %" PRIu64,
				     q->path, q->l1_off, q->l1_size, q->disk_size);
	if (q->nb_snapshots > MAX_SNAPSHOTS)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qcow2 header at offset 60: %" PRIu32 " snapshots exceed QEMU's limit of 65536",
				     q->path, q->nb_snapshots);
	ret = check_table(q, q->snap_off, q->nb_snapshots, SNAP_HEADER_LEN, MAX_SNAP_TABLE,
			  "snapshot table");
	if (ret)
		return ret;

	add_meta(q, 0, q->cluster_size, "image header");
	add_meta(q, q->l1_off, (uint64_t)q->l1_size * 8, "active L1 table");
	add_meta(q, reftable_off, (uint64_t)reftable_clusters << q->cluster_bits, "refcount table");
	if (q->l1_size && q->l1_off < q->cluster_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: active L1 table at offset 0x%" PRIx64 " overlaps the image header",
				     q->path, q->l1_off);
	if (reftable_off < q->cluster_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: refcount table at offset 0x%" PRIx64 " overlaps the image header",
				     q->path, reftable_off);
	return 0;
}

static int read_one_snapshot(struct stock_qcow2 *q, uint32_t i, uint64_t *offp)
{
	struct stock_qcow2_snapshot *sn = &q->snaps[i];
	uint8_t h[SNAP_HEADER_LEN], extra[SNAP_EXTRA_KNOWN];
	uint64_t off = (*offp + 7) & ~7ull, entry = off;
	uint32_t extra_size, known;
	uint16_t id_len, name_len;
	int ret;

	if (off - q->snap_off > MAX_SNAP_TABLE)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: snapshot table at offset 0x%" PRIx64 ": entry %" PRIu32 " beyond QEMU's 64 MiB table limit",
				     q->path, q->snap_off, i);
	ret = read_at(q, h, sizeof(h), off, "snapshot table entry");
	if (ret)
		return ret;
	off += sizeof(h);
	sn->l1_table_offset = be64(h);
	sn->l1_size = be32(h + 8);
	id_len = be16(h + 12);
	name_len = be16(h + 14);
	sn->date_sec = be32(h + 16);
	sn->date_nsec = be32(h + 20);
	sn->vm_clock_nsec = be64(h + 24);
	sn->vm_state_size = be32(h + 32);
	extra_size = be32(h + 36);
	if (extra_size > MAX_SNAP_EXTRA)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: snapshot table entry %" PRIu32 " at offset 0x%" PRIx64 ": %" PRIu32 " bytes of extra data exceed QEMU's limit of 1024",
				     q->path, i, entry, extra_size);
	known = extra_size < SNAP_EXTRA_KNOWN ? extra_size : SNAP_EXTRA_KNOWN;
	memset(extra, 0, sizeof(extra));
	ret = read_at(q, extra, known, off, "snapshot extra data");
	if (ret)
		return ret;
	off += extra_size;
	if (extra_size >= 8)
		sn->vm_state_size = be64(extra);
	/* QEMU uses the current disk size when the entry has none (v2). */
	sn->disk_size = extra_size >= 16 ? be64(extra + 8) : q->disk_size & ~511ull;
	sn->icount = extra_size >= 24 ? be64(extra + 16) : UINT64_MAX;

	sn->id = malloc((size_t)id_len + 1);
	sn->name = malloc((size_t)name_len + 1);
	if (!sn->id || !sn->name)
		return fvm_error_set(FVM_ENOMEM, 0, "%s: snapshot table entry %" PRIu32 ": out of memory", q->path, i);
	ret = read_at(q, sn->id, id_len, off, "snapshot id string");
	if (ret)
		return ret;
	sn->id[id_len] = 0;
	off += id_len;
	ret = read_at(q, sn->name, name_len, off, "snapshot name string");
	if (ret)
		return ret;
	sn->name[name_len] = 0;
	off += name_len;
	*offp = off;
	return 0;
}

static int read_snapshots(struct stock_qcow2 *q)
{
	uint64_t off = q->snap_off;
	uint32_t i;
	int ret;

	if (!q->nb_snapshots)
		return 0;
	if (q->snap_off < q->cluster_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: snapshot table at offset 0x%" PRIx64 " overlaps the image header",
				     q->path, q->snap_off);
	q->snaps = calloc(q->nb_snapshots, sizeof(*q->snaps));
	if (!q->snaps)
		return fvm_error_set(FVM_ENOMEM, 0, "%s: snapshot table: out of memory for %" PRIu32 " entries",
				     q->path, q->nb_snapshots);
	for (i = 0; i < q->nb_snapshots; i++) {
		ret = read_one_snapshot(q, i, &off);
		if (ret)
			return ret;
	}
	if (off - q->snap_off > MAX_SNAP_TABLE)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: snapshot table at offset 0x%" PRIx64 ": %" PRIu64 " bytes exceed QEMU's 64 MiB limit",
				     q->path, q->snap_off, off - q->snap_off);
	ret = check_overlap(q, NULL, q->snap_off, off - q->snap_off, "snapshot table");
	if (ret)
		return ret;
	add_meta(q, q->snap_off, off - q->snap_off, "snapshot table");
	return 0;
}

int stock_qcow2_open(struct stock_qcow2 **out, const char *path)
{
	struct stock_qcow2 *q;
	struct stat st;
	int ret;

	*out = NULL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return fvm_error_set(FVM_ENOMEM, 0, "%s: out of memory", path);
	q->fd = -1;
	q->path = strdup(path);
	if (!q->path) {
		free(q);
		return fvm_error_set(FVM_ENOMEM, 0, "%s: out of memory", path);
	}
	q->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (q->fd < 0) {
		ret = fvm_error_set(stock_sys_code(errno), errno, "%s: open", path);
		goto fail;
	}
	if (fstat(q->fd, &st) < 0) {
		ret = fvm_error_set(stock_sys_code(errno), errno, "%s: fstat", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		ret = fvm_error_set(FVM_EINVAL, 0, "%s: not a regular file or block device", path);
		goto fail;
	}
	q->file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(q->fd, 0, SEEK_END);

		if (end < 0) {
			ret = fvm_error_set(stock_sys_code(errno), errno, "%s: lseek", path);
			goto fail;
		}
		q->file_size = (uint64_t)end;
	}
	if (q->file_size < V2_HEADER_LEN) {
		ret = fvm_error_set(FVM_ETRUNCATED, 0, "%s: qcow2 header at offset 0: file has only %" PRIu64 " bytes, the header needs 72",
				    path, q->file_size);
		goto fail;
	}
	ret = libqcow_signature(q);
	if (!ret)
		ret = parse_header(q);
	if (!ret)
		ret = read_snapshots(q);
	if (ret)
		goto fail;
	*out = q;
	return 0;
fail:
	stock_qcow2_close(q);
	return ret;
}

void stock_qcow2_close(struct stock_qcow2 *q)
{
	unsigned i;

	if (!q)
		return;
	if (q->snaps)
		for (i = 0; i < q->nb_snapshots; i++) {
			free(q->snaps[i].id);
			free(q->snaps[i].name);
		}
	free(q->snaps);
	for (i = 0; i < L2_SLOTS; i++)
		free(q->l2[i].tab);
	if (q->zs_init)
		inflateEnd(&q->zs);
	free(q->z_in);
	free(q->z_out);
	if (q->fd >= 0)
		close(q->fd);
	free(q->path);
	free(q);
}

uint32_t stock_qcow2_version(const struct stock_qcow2 *q)
{
	return q->version;
}

uint32_t stock_qcow2_cluster_bits(const struct stock_qcow2 *q)
{
	return q->cluster_bits;
}

uint64_t stock_qcow2_disk_size(const struct stock_qcow2 *q)
{
	return q->disk_size;
}

size_t stock_qcow2_snapshot_count(const struct stock_qcow2 *q)
{
	return q->nb_snapshots;
}

const struct stock_qcow2_snapshot *stock_qcow2_snapshot(const struct stock_qcow2 *q, size_t i)
{
	return i < q->nb_snapshots ? &q->snaps[i] : NULL;
}

int stock_qcow2_find_snapshot(const struct stock_qcow2 *q, const char *id_or_name, size_t *index)
{
	size_t i;

	for (i = 0; i < q->nb_snapshots; i++)
		if (!strcmp(q->snaps[i].id, id_or_name))
			goto found;
	for (i = 0; i < q->nb_snapshots; i++)
		if (!strcmp(q->snaps[i].name, id_or_name))
			goto found;
	return fvm_error_set(FVM_ENOTFOUND, 0, "%s: no snapshot with id or name '%s'", q->path, id_or_name);
found:
	*index = i;
	return 0;
}

/* ------------------------------------------------------------ L1/L2 walk */

static int l1_entry(struct stock_qcow2 *q, const struct map *m, uint64_t idx, uint64_t *l2_off)
{
	uint8_t b[8];
	uint64_t e, at = m->l1_off + idx * 8;
	int ret;

	if (q->l1c_valid && q->l1c_table == m->l1_off && q->l1c_index == idx) {
		e = q->l1c_entry;
	} else {
		ret = read_at(q, b, 8, at, m->what);
		if (ret)
			return ret;
		e = be64(b);
		q->l1c_table = m->l1_off;
		q->l1c_index = idx;
		q->l1c_entry = e;
		q->l1c_valid = true;
	}
	if (e & L1E_RESERVED_MASK)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: %s entry %" PRIu64 " at offset 0x%" PRIx64 ": reserved bits set (0x%016" PRIx64 ")",
				     q->path, m->what, idx, at, e);
	*l2_off = e & L1E_OFFSET_MASK;
	if (*l2_off & (q->cluster_size - 1))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: %s entry %" PRIu64 " at offset 0x%" PRIx64 ": L2 table offset 0x%" PRIx64 " not cluster aligned",
				     q->path, m->what, idx, at, *l2_off);
	if (*l2_off && (*l2_off > q->file_size || q->cluster_size > q->file_size - *l2_off))
		return fvm_error_set(FVM_ERANGE, 0, "%s: %s entry %" PRIu64 " at offset 0x%" PRIx64 ": L2 table at 0x%" PRIx64 " past end of file (size 0x%" PRIx64 ")",
				     q->path, m->what, idx, at, *l2_off, q->file_size);
	return 0;
}

/* The L2 table at off (checked by l1_entry), from the cache or the file. */
static int l2_table(struct stock_qcow2 *q, const struct map *m, uint64_t off, const uint8_t **tab)
{
	struct l2_slot *victim = &q->l2[0];
	unsigned i;
	int ret;

	q->clock++;
	for (i = 0; i < L2_SLOTS; i++) {
		if (q->l2[i].off == off && q->l2[i].tab) {
			/* loaded through another L1: check against this one too */
			if (overlaps(&m->own_l1, off, off + q->cluster_size))
				return check_overlap(q, m, off, q->cluster_size, "L2 table");
			q->l2[i].stamp = q->clock;
			*tab = q->l2[i].tab;
			return 0;
		}
		if (q->l2[i].stamp < victim->stamp)
			victim = &q->l2[i];
	}
	ret = check_overlap(q, m, off, q->cluster_size, "L2 table");
	if (ret)
		return ret;
	if (!victim->tab) {
		victim->tab = malloc(q->cluster_size);
		if (!victim->tab)
			return fvm_error_set(FVM_ENOMEM, 0, "%s: L2 table at offset 0x%" PRIx64 ": out of memory",
					     q->path, off);
	}
	victim->off = 0;
	ret = read_at(q, victim->tab, q->cluster_size, off, "L2 table");
	if (ret)
		return ret;
	victim->off = off;
	victim->stamp = q->clock;
	*tab = victim->tab;
	return 0;
}

/* Inflate the compressed cluster described by L2 entry e into q->z_out. */
static int inflate_cluster(struct stock_qcow2 *q, const struct map *m, uint64_t e,
			   uint64_t l2_off, uint64_t l2_idx)
{
	uint64_t coff = e & q->coff_mask;
	uint64_t nsec = ((e >> q->csize_shift) & q->csize_mask) + 1;
	uint64_t csize = nsec * COMPRESSED_SECTOR - (coff & (COMPRESSED_SECTOR - 1));
	uint64_t avail;
	int ret, zr;

	if (coff >> 56)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": compressed cluster offset 0x%" PRIx64 " has bits above 55 set",
				     q->path, l2_off, l2_idx, coff);
	if (coff >= q->file_size)
		return fvm_error_set(FVM_ERANGE, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": compressed cluster at 0x%" PRIx64 " past end of file (size 0x%" PRIx64 ")",
				     q->path, l2_off, l2_idx, coff, q->file_size);
	/* The last sector may be cut short by the end of the file; QEMU reads zeros there. */
	avail = q->file_size - coff < csize ? q->file_size - coff : csize;
	ret = check_overlap(q, m, coff, avail, "compressed cluster");
	if (ret || (q->z_valid && q->z_entry == e))
		return ret;
	if (!q->z_in) {
		/* At most 2^(cluster_bits-8) sectors: twice the cluster size. */
		q->z_in = malloc(2 * q->cluster_size);
		q->z_out = malloc(q->cluster_size);
		if (!q->z_in || !q->z_out)
			return fvm_error_set(FVM_ENOMEM, 0, "%s: compressed cluster at 0x%" PRIx64 ": out of memory",
					     q->path, coff);
	}
	q->z_valid = false;
	ret = read_at(q, q->z_in, (size_t)avail, coff, "compressed cluster");
	if (ret)
		return ret;
	if (!q->zs_init) {
		memset(&q->zs, 0, sizeof(q->zs));
		if (inflateInit2(&q->zs, -12) != Z_OK)
			return fvm_error_set(FVM_ENOMEM, 0, "%s: inflateInit2 failed", q->path);
		q->zs_init = true;
	} else if (inflateReset(&q->zs) != Z_OK) {
		return fvm_error_set(FVM_ENOMEM, 0, "%s: inflateReset failed", q->path);
	}
	q->zs.next_in = q->z_in;
	q->zs.avail_in = (uInt)avail;
	q->zs.next_out = q->z_out;
	q->zs.avail_out = (uInt)q->cluster_size;
	zr = inflate(&q->zs, Z_FINISH);
	/* Like QEMU: the output must be one full cluster; input may be left over. */
	if (!((zr == Z_STREAM_END || zr == Z_BUF_ERROR) && q->zs.avail_out == 0))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: compressed cluster at 0x%" PRIx64 " (%" PRIu64 " bytes, L2 table 0x%" PRIx64 " entry %" PRIu64 "): does not inflate to one %" PRIu64 "-byte cluster (%s)",
				     q->path, coff, csize, l2_off, l2_idx, q->cluster_size,
				     q->zs.msg ? q->zs.msg : "short output");
	q->z_entry = e;
	q->z_valid = true;
	return 0;
}

/* A run of file bytes waiting to be read into the caller's buffer. */
struct pending {
	uint8_t *dst;
	uint64_t host;
	size_t len;
};

static int flush(struct stock_qcow2 *q, struct pending *p)
{
	int ret = 0;

	if (p->len)
		ret = read_at(q, p->dst, p->len, p->host, "data cluster");
	p->len = 0;
	return ret;
}

/* Queue [host, host+n) for dst, merging with the pending run when contiguous. */
static int queue(struct stock_qcow2 *q, struct pending *p, uint8_t *dst, uint64_t host, size_t n)
{
	int ret;

	if (p->len && p->dst + p->len == dst && p->host + p->len == host &&
	    p->len + n <= (64u << 20)) {
		p->len += n;
		return 0;
	}
	ret = flush(q, p);
	if (ret)
		return ret;
	p->dst = dst;
	p->host = host;
	p->len = n;
	return 0;
}

/*
 * Read guest bytes [goff, goff+len) through m. Pieces never cross a
 * subcluster (a cluster without extended L2), so each has one L2 entry
 * and one state.
 */
static int map_read(struct stock_qcow2 *q, const struct map *m, uint8_t *dst, size_t len,
		    uint64_t goff)
{
	struct pending p = { 0 };
	uint32_t shift = q->cluster_bits + q->l2_bits;
	uint64_t sc_size = 1ull << q->sc_bits;
	int ret = 0;

	while (len) {
		uint64_t in_sc = goff & (sc_size - 1), in_cl = goff & (q->cluster_size - 1);
		size_t n = sc_size - in_sc < len ? (size_t)(sc_size - in_sc) : len;
		uint64_t l1i = goff >> shift, l2i = (goff >> q->cluster_bits) & ((1ull << q->l2_bits) - 1);
		uint64_t l2_off = 0, e, bitmap = 0, host;
		const uint8_t *tab = NULL;

		if (l1i >= m->l1_size) {
			ret = fvm_error_set(FVM_ERANGE, 0, "%s: guest offset 0x%" PRIx64 " lies beyond the %s at 0x%" PRIx64 " (%" PRIu32 " entries)",
					    q->path, goff, m->what, m->l1_off, m->l1_size);
			break;
		}
		ret = l1_entry(q, m, l1i, &l2_off);
		if (ret)
			break;
		if (!l2_off) {
			memset(dst, 0, n);
			goto next;
		}
		ret = l2_table(q, m, l2_off, &tab);
		if (ret)
			break;
		e = be64(tab + l2i * q->l2e_size);
		if (q->extl2)
			bitmap = be64(tab + l2i * q->l2e_size + 8);

		if (e & OFLAG_COMPRESSED) {
			if (bitmap) {
				ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": compressed cluster with a subcluster bitmap 0x%016" PRIx64,
						    q->path, l2_off, l2i, bitmap);
				break;
			}
			ret = inflate_cluster(q, m, e, l2_off, l2i);
			if (ret)
				break;
			memcpy(dst, q->z_out + in_cl, n);
			goto next;
		}
		if (e & L2E_STD_RESERVED_MASK || (q->extl2 && (e & OFLAG_ZERO))) {
			ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": reserved bits set (0x%016" PRIx64 ")",
					    q->path, l2_off, l2i, e);
			break;
		}
		host = e & L2E_OFFSET_MASK;
		if (q->extl2) {
			uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
			unsigned sc = (unsigned)(in_cl >> q->sc_bits);

			if ((host && (alloc & zero)) || (!host && alloc)) {
				ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": invalid subcluster bitmap 0x%016" PRIx64 " for offset 0x%" PRIx64,
						    q->path, l2_off, l2i, bitmap, host);
				break;
			}
			if (!(alloc & (1u << sc))) {
				/* zero, or unallocated without a backing file */
				memset(dst, 0, n);
				goto next;
			}
		} else if (e & OFLAG_ZERO) {
			if (q->version < 3) {
				ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": zero flag in a version 2 image",
						    q->path, l2_off, l2i);
				break;
			}
			memset(dst, 0, n);
			goto next;
		} else if (!host) {
			memset(dst, 0, n);
			goto next;
		}
		if (host & (q->cluster_size - 1)) {
			ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": data cluster offset 0x%" PRIx64 " not cluster aligned",
					    q->path, l2_off, l2i, host);
			break;
		}
		if (host > q->file_size || in_cl + n > q->file_size - host) {
			ret = fvm_error_set(FVM_ERANGE, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": data cluster at 0x%" PRIx64 " past end of file (size 0x%" PRIx64 ")",
					    q->path, l2_off, l2i, host, q->file_size);
			break;
		}
		ret = check_overlap(q, m, host, q->cluster_size, "data cluster");
		if (!ret && host == l2_off)
			ret = fvm_error_set(FVM_ECORRUPT, 0, "%s: L2 table at 0x%" PRIx64 " entry %" PRIu64 ": maps a data cluster onto its own L2 table",
					    q->path, l2_off, l2i);
		if (!ret)
			ret = queue(q, &p, dst, host + in_cl, n);
		if (ret)
			break;
next:
		dst += n;
		goff += n;
		len -= n;
	}
	if (ret) {
		p.len = 0;
		return ret;
	}
	return flush(q, &p);
}

int stock_qcow2_active_pread(struct stock_qcow2 *q, void *buf, size_t len, uint64_t off)
{
	struct map m = {
		.what = "active L1 table",
		.l1_off = q->l1_off,
		.l1_size = q->l1_size,
	};

	if (off > q->disk_size || len > q->disk_size - off)
		return fvm_error_set(FVM_ERANGE, 0, "%s: read of %zu bytes at guest offset 0x%" PRIx64 " past the disk size %" PRIu64,
				     q->path, len, off, q->disk_size);
	return map_read(q, &m, buf, len, off);
}

/*
 * The map of snapshot i's VM state: its L1 table checked against the file
 * and against vm_state_size, *base the first L1 index of the state (QEMU
 * l1_vm_state_index: the state follows the disk). what (WHAT_LEN bytes)
 * receives the table's name for messages and must outlive m.
 */
#define WHAT_LEN 112
static int snap_map(struct stock_qcow2 *q, size_t i, struct map *m, uint64_t *base, char *what)
{
	const struct stock_qcow2_snapshot *sn;
	uint64_t end;
	uint32_t shift = q->cluster_bits + q->l2_bits;
	int ret;

	if (i >= q->nb_snapshots)
		return fvm_error_set(FVM_EINVAL, 0, "%s: snapshot index %zu out of range (%" PRIu32 " snapshots)",
				     q->path, i, q->nb_snapshots);
	sn = &q->snaps[i];
	/* named as qemu-img and fvmsnap list show it: by id and name */
	snprintf(what, WHAT_LEN, "L1 table of snapshot %.16s ('%.48s')", sn->id, sn->name);
	ret = check_table(q, sn->l1_table_offset, sn->l1_size, 8, MAX_L1_BYTES, what);
	if (ret)
		return ret;
	if (sn->l1_size && sn->l1_table_offset < q->cluster_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: %s at offset 0x%" PRIx64 " overlaps the image header",
				     q->path, what, sn->l1_table_offset);
	*base = size_to_l1(q, sn->disk_size);
	end = *base + ((sn->vm_state_size >> shift) + ((sn->vm_state_size & ((1ull << shift) - 1)) != 0));
	if (*base > sn->l1_size || end > sn->l1_size)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: snapshot %s ('%s'): %" PRIu64 " bytes of vmstate after a %" PRIu64 "-byte disk need L1 entries up to %" PRIu64 ", its L1 table at 0x%" PRIx64 " has %" PRIu32,
				     q->path, sn->id, sn->name, sn->vm_state_size, sn->disk_size, end,
				     sn->l1_table_offset, sn->l1_size);
	m->what = what;
	m->l1_off = sn->l1_table_offset;
	m->l1_size = sn->l1_size;
	m->own_l1.start = sn->l1_table_offset;
	m->own_l1.end = sn->l1_table_offset + (uint64_t)sn->l1_size * 8;
	m->own_l1.what = what;
	return 0;
}

int stock_qcow2_vmstate_pread(struct stock_qcow2 *q, size_t i, void *buf, size_t len, uint64_t off)
{
	const struct stock_qcow2_snapshot *sn;
	char what[WHAT_LEN];
	struct map m;
	uint64_t base;
	int ret;

	ret = snap_map(q, i, &m, &base, what);
	if (ret)
		return ret;
	sn = &q->snaps[i];
	if (off > sn->vm_state_size || len > sn->vm_state_size - off)
		return fvm_error_set(FVM_ERANGE, 0, "%s: snapshot %s ('%s'): read of %zu bytes at vmstate offset 0x%" PRIx64 " past vm_state_size %" PRIu64,
				     q->path, sn->id, sn->name, len, off, sn->vm_state_size);
	return map_read(q, &m, buf, len, (base << (q->cluster_bits + q->l2_bits)) + off);
}

/*
 * One pass over the L2 entries of snapshot i's VM state before anything is
 * read: every L2 table and every host cluster holding state bytes must lie
 * inside the file. A truncated image (a copy cut short, a full disk while
 * saving) is refused here, naming the snapshot and the cluster, rather than
 * part-way through a conversion; QEMU itself would read zeros past the end.
 * Costs one L2 table read per 2^(2*cluster_bits-3) bytes of state.
 */
int stock_qcow2_vmstate_check(struct stock_qcow2 *q, size_t i)
{
	const struct stock_qcow2_snapshot *sn;
	char what[WHAT_LEN];
	struct map m;
	uint64_t base, voff;
	uint32_t shift = q->cluster_bits + q->l2_bits;
	int ret;

	ret = snap_map(q, i, &m, &base, what);
	if (ret)
		return ret;
	sn = &q->snaps[i];
	for (voff = 0; voff < sn->vm_state_size; voff += q->cluster_size) {
		uint64_t goff = (base << shift) + voff;
		uint64_t l2i = (goff >> q->cluster_bits) & ((1ull << q->l2_bits) - 1);
		uint64_t l2_off, e, host, need, coff, lim;
		const uint8_t *tab;

		ret = l1_entry(q, &m, goff >> shift, &l2_off);
		if (ret)
			return ret;
		if (!l2_off)
			continue;
		ret = l2_table(q, &m, l2_off, &tab);
		if (ret)
			return ret;
		e = be64(tab + l2i * q->l2e_size);
		need = sn->vm_state_size - voff < q->cluster_size ? sn->vm_state_size - voff : q->cluster_size;
		if (e & OFLAG_COMPRESSED) {
			coff = e & q->coff_mask;
			if (coff < q->file_size)
				continue;
			return fvm_error_set(FVM_ETRUNCATED, 0, "%s: snapshot %s ('%s'): vmstate offset 0x%" PRIx64 " is in the compressed cluster at file offset 0x%" PRIx64 ", past the end of the file (size 0x%" PRIx64 "): the image is truncated",
					     q->path, sn->id, sn->name, voff, coff, q->file_size);
		}
		host = e & L2E_OFFSET_MASK;
		if (q->extl2) {
			uint32_t alloc = (uint32_t)be64(tab + l2i * q->l2e_size + 8);
			uint64_t nsc = (need + (1ull << q->sc_bits) - 1) >> q->sc_bits;

			alloc &= nsc >= 32 ? 0xffffffffu : (1u << nsc) - 1;
			if (!alloc)
				continue;
			/* up to the end of the last allocated subcluster the state needs */
			lim = (uint64_t)(32 - __builtin_clz(alloc)) << q->sc_bits;
			if (lim < need)
				need = lim;
		} else if (e & OFLAG_ZERO) {
			continue;
		}
		if (!host || (host <= q->file_size && need <= q->file_size - host))
			continue;
		return fvm_error_set(FVM_ETRUNCATED, 0, "%s: snapshot %s ('%s'): vmstate offset 0x%" PRIx64 " is in the cluster at file offset 0x%" PRIx64 " (+%" PRIu64 " bytes), past the end of the file (size 0x%" PRIx64 "): the image is truncated",
				     q->path, sn->id, sn->name, voff, host, need, q->file_size);
	}
	return 0;
}
