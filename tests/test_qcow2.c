/*
 * Unit tests of tools/stock/qcow2.c over images built by qcow2_gen.c: every
 * storage mode (normal, compressed, v3 zero flag with and without a host
 * cluster, unallocated, extended L2 subclusters) in v2 and v3 at cluster
 * sizes 512 B .. 2 MiB; snapshot tables with and without extra data; a
 * sparse VM state over 4 GiB; the active L1 compared with libqcow where
 * libqcow is valid; and hostile images, each failing with its own code and
 * a detail naming the file and the structure. Images made by real QEMU are
 * tested by tests/qcow2.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libqcow.h>

#include "fastvm/fastvm.h"
#include "qcow2.h"
#include "qcow2_gen.h"

static char dir[] = "/tmp/test_qcow2.XXXXXX";
static char path[256];
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static void write_img(const uint8_t *img, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(img, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void check_err_(int rc, int code, const char *what, const char *file, int line)
{
	const char *d = fvm_error_detail();

	if (rc != code)
		fail_msg("%s:%d: got %d (%s), expected %d (%s); detail: %s", file, line, rc,
			 fvm_strerror(rc), code, fvm_strerror(code), d);
	if (!strstr(d, path))
		fail_msg("%s:%d: detail does not name the file: %s", file, line, d);
	if (what && !strstr(d, what))
		fail_msg("%s:%d: detail does not name '%s': %s", file, line, what, d);
}
#define check_err(rc, code, what) check_err_((rc), (code), (what), __FILE__, __LINE__)

/* Guest data with zero and non-zero clusters, half-zero subclusters, text. */
static uint8_t *make_data(uint64_t len, uint64_t cs)
{
	uint8_t *d = calloc(1, len ? len : 1);

	assert_non_null(d);
	for (uint64_t c = 0; c * cs < len; c++) {
		uint64_t n = len - c * cs < cs ? len - c * cs : cs;
		uint8_t *p = d + c * cs;

		switch (c % 5) {
		case 0: /* random */
			for (uint64_t i = 0; i < n; i++)
				p[i] = (uint8_t)rnd();
			break;
		case 1: /* zero */
			break;
		case 2: /* text-like, compressible */
			for (uint64_t i = 0; i < n; i++)
				p[i] = (uint8_t)("qcow2 vmstate "[i % 14] + (i / 4096));
			break;
		case 3: /* every other 1/32 non-zero (subclusters) */
			for (uint64_t i = 0; i < n; i++)
				if ((i / (cs / 32)) % 3 == 0)
					p[i] = (uint8_t)(i * 7 + c);
			break;
		case 4: /* one byte at the end */
			p[n - 1] = 0x5a;
			break;
		}
	}
	if (len >= 8)
		memcpy(d, "QEVM\0\0\0\3", 8);
	return d;
}

struct img {
	uint8_t *img;
	size_t len;
	struct gen_layout lay;
	uint8_t *disk, *vm[2];
	uint64_t disk_len, vm_len[2];
	struct gen_snap snaps[2];
	struct gen_opts o;
};

static void build(struct img *t, uint32_t version, uint32_t cb, bool extl2, gen_policy pol,
		  uint32_t extra)
{
	uint64_t cs = 1ull << cb;

	memset(t, 0, sizeof(*t));
	t->disk_len = cs * 11 + 77;
	t->vm_len[0] = cs * 7 + 333;
	t->vm_len[1] = cs * 3 + 1;
	t->disk = make_data(t->disk_len, cs);
	t->vm[0] = make_data(t->vm_len[0], cs);
	t->vm[1] = make_data(t->vm_len[1], cs);
	t->snaps[0] = (struct gen_snap){ .id = "1", .name = "s1", .vm = t->vm[0],
		.vm_len = t->vm_len[0], .extra_size = extra, .date_sec = 1700000000,
		.vm_clock_nsec = 3723004000000ull, .icount = UINT64_MAX };
	t->snaps[1] = (struct gen_snap){ .id = "2", .name = "second one", .vm = t->vm[1],
		.vm_len = t->vm_len[1], .extra_size = extra, .date_sec = 1700000001,
		.vm_clock_nsec = 5, .icount = 42 };
	t->o = (struct gen_opts){ .version = version, .cluster_bits = cb, .extl2 = extl2,
		.disk_size = cs * 16, .disk = t->disk, .disk_len = t->disk_len,
		.policy = pol, .snaps = t->snaps, .nsnaps = 2 };
	assert_int_equal(gen_qcow2(&t->o, &t->img, &t->len, &t->lay), 0);
	write_img(t->img, t->len);
}

static void drop(struct img *t)
{
	free(t->img);
	free(t->disk);
	free(t->vm[0]);
	free(t->vm[1]);
}

/* Whole reads, then random ranges crossing cluster and subcluster bounds. */
static void check_reads(struct stock_qcow2 *q, struct img *t)
{
	uint64_t cs = 1ull << t->o.cluster_bits;
	uint8_t *buf = malloc(t->o.disk_size);
	int rc;

	assert_non_null(buf);
	rc = stock_qcow2_active_pread(q, buf, t->o.disk_size, 0);
	if (rc)
		fail_msg("active read: %s", fvm_error_detail());
	assert_memory_equal(buf, t->disk, t->disk_len);
	for (uint64_t i = t->disk_len; i < t->o.disk_size; i++)
		if (buf[i])
			fail_msg("active byte %llu not zero", (unsigned long long)i);
	for (size_t s = 0; s < 2; s++) {
		rc = stock_qcow2_vmstate_pread(q, s, buf, t->vm_len[s], 0);
		if (rc)
			fail_msg("vmstate %zu: %s", s, fvm_error_detail());
		assert_memory_equal(buf, t->vm[s], t->vm_len[s]);
		for (int k = 0; k < 40; k++) {
			uint64_t off = rnd() % t->vm_len[s];
			uint64_t n = rnd() % (2 * cs + 1);

			if (n > t->vm_len[s] - off)
				n = t->vm_len[s] - off;
			memset(buf, 0xcc, n);
			assert_int_equal(stock_qcow2_vmstate_pread(q, s, buf, n, off), 0);
			assert_memory_equal(buf, t->vm[s] + off, n);
		}
		check_err(stock_qcow2_vmstate_pread(q, s, buf, 2, t->vm_len[s] - 1), FVM_ERANGE,
			  "past vm_state_size");
	}
	free(buf);
}

static void one_config(uint32_t version, uint32_t cb, bool extl2, gen_policy pol, uint32_t extra)
{
	struct stock_qcow2 *q;
	const struct stock_qcow2_snapshot *sn;
	struct img t;
	int rc;

	build(&t, version, cb, extl2, pol, extra);
	rc = stock_qcow2_open(&q, path);
	if (rc)
		fail_msg("v%u cb %u extl2 %d: open: %s", version, cb, extl2, fvm_error_detail());
	assert_int_equal(stock_qcow2_version(q), version);
	assert_int_equal(stock_qcow2_cluster_bits(q), cb);
	assert_int_equal(stock_qcow2_snapshot_count(q), 2);
	sn = stock_qcow2_snapshot(q, 1);
	assert_string_equal(sn->id, "2");
	assert_string_equal(sn->name, "second one");
	assert_int_equal(sn->date_sec, 1700000001);
	assert_int_equal(sn->date_nsec, 123456789);
	assert_int_equal(sn->vm_clock_nsec, 5);
	assert_int_equal(sn->vm_state_size, t.vm_len[1]);
	assert_int_equal(sn->disk_size, t.o.disk_size);
	assert_true(sn->icount == (extra >= 24 ? 42 : UINT64_MAX));
	assert_int_equal(sn->l1_table_offset, t.lay.snap_l1_off[1]);
	assert_null(stock_qcow2_snapshot(q, 2));
	check_reads(q, &t);
	stock_qcow2_close(q);
	drop(&t);
}

static void test_matrix(void **state)
{
	static const uint32_t cbs[] = { 9, 12, 14, 16, 21 };
	static const gen_policy pols[] = { NULL, gen_policy_mixed, gen_policy_compressed };

	(void)state;
	for (size_t c = 0; c < sizeof(cbs) / sizeof(cbs[0]); c++)
		for (size_t p = 0; p < 3; p++) {
			one_config(2, cbs[c], false, pols[p], 24);
			one_config(3, cbs[c], false, pols[p], 24);
			if (cbs[c] >= 14)
				one_config(3, cbs[c], true, pols[p], 24);
		}
	/* Extra data: none (v2 style), vm_state_size only, unknown bytes after icount. */
	one_config(2, 16, false, gen_policy_mixed, 0);
	one_config(3, 16, false, gen_policy_mixed, 8);
	one_config(3, 16, false, gen_policy_mixed, 16);
	one_config(3, 16, true, gen_policy_mixed, 64);
}

/* libqcow reads the active disk of images it supports the same way. */
static void test_libqcow_active(void **state)
{
	static const uint32_t cbs[] = { 9, 12, 16, 21 };
	static const gen_policy pols[] = { NULL, gen_policy_compressed };

	(void)state;
	for (size_t c = 0; c < 4; c++)
		for (size_t p = 0; p < 2; p++)
			for (uint32_t v = 2; v <= 3; v++) {
				struct stock_qcow2 *q;
				libqcow_file_t *f = NULL;
				struct img t;
				uint8_t *a, *b;
				uint64_t size;

				build(&t, v, cbs[c], false, pols[p], 24);
				size = t.o.disk_size;
				a = malloc(size);
				b = malloc(size);
				assert_non_null(a);
				assert_non_null(b);
				assert_int_equal(stock_qcow2_open(&q, path), 0);
				assert_int_equal(stock_qcow2_active_pread(q, a, size, 0), 0);
				assert_int_equal(libqcow_file_initialize(&f, NULL), 1);
				assert_int_equal(libqcow_file_open(f, path, LIBQCOW_OPEN_READ, NULL), 1);
				assert_int_equal(libqcow_file_read_buffer_at_offset(f, b, size, 0, NULL),
						 (ssize_t)size);
				assert_memory_equal(a, b, size);
				libqcow_file_close(f, NULL);
				libqcow_file_free(&f, NULL);
				stock_qcow2_close(q);
				free(a);
				free(b);
				drop(&t);
			}
}

static void test_find(void **state)
{
	struct gen_snap s[3] = {
		{ .id = "1", .name = "2", .vm_len = 100, .extra_size = 24 },
		{ .id = "2", .name = "one", .vm_len = 100, .extra_size = 24 },
		{ .id = "7", .name = "", .vm_len = 0, .extra_size = 24 },
	};
	struct gen_opts o = { .version = 3, .cluster_bits = 16, .disk_size = 1 << 20,
		.snaps = s, .nsnaps = 3 };
	struct gen_layout lay;
	struct stock_qcow2 *q;
	uint8_t *img, b;
	size_t len, i = 99;

	(void)state;
	assert_int_equal(gen_qcow2(&o, &img, &len, &lay), 0);
	write_img(img, len);
	free(img);
	assert_int_equal(stock_qcow2_open(&q, path), 0);
	/* QEMU's loadvm order: an id match wins over a name match. */
	assert_int_equal(stock_qcow2_find_snapshot(q, "2", &i), 0);
	assert_int_equal(i, 1);
	assert_int_equal(stock_qcow2_find_snapshot(q, "one", &i), 0);
	assert_int_equal(i, 1);
	assert_int_equal(stock_qcow2_find_snapshot(q, "1", &i), 0);
	assert_int_equal(i, 0);
	check_err(stock_qcow2_find_snapshot(q, "nope", &i), FVM_ENOTFOUND, "nope");
	/* no vmstate: zero-length read fine, one byte refused */
	assert_int_equal(stock_qcow2_vmstate_pread(q, 2, &b, 0, 0), 0);
	check_err(stock_qcow2_vmstate_pread(q, 2, &b, 1, 0), FVM_ERANGE, "vm_state_size");
	check_err(stock_qcow2_vmstate_pread(q, 3, &b, 1, 0), FVM_EINVAL, "snapshot index");
	stock_qcow2_close(q);
}

/* Sparse vmstate over 4 GiB: the u32 field is 0, the extra data holds the size. */
static bool big_fill(uint64_t off, uint8_t *dst, size_t n, void *ctx)
{
	static const uint64_t marks[] = { 0, (4ull << 30) + 12345, (5ull << 30) - 100 };
	bool any = false;

	(void)ctx;
	for (int i = 0; i < 3; i++)
		if (marks[i] >= off && marks[i] < off + n) {
			for (uint64_t k = marks[i]; k < marks[i] + 64 && k < off + n; k++)
				dst[k - off] = (uint8_t)(k * 13 + 1);
			any = true;
		}
	return any;
}

static void test_big_vmstate(void **state)
{
	struct gen_snap s = { .id = "1", .name = "big", .vm_len = 5ull << 30, .extra_size = 24,
			      .fill = big_fill, .icount = UINT64_MAX };
	struct gen_opts o = { .version = 3, .cluster_bits = 21, .disk_size = 1 << 30,
			      .snaps = &s, .nsnaps = 1 };
	struct gen_layout lay;
	struct stock_qcow2 *q;
	uint8_t *img, buf[4096], want[4096];
	size_t len;
	uint64_t offs[] = { 0, (4ull << 30) + 12000, (5ull << 30) - 4096, (2ull << 30) };

	(void)state;
	assert_int_equal(gen_qcow2(&o, &img, &len, &lay), 0);
	write_img(img, len);
	free(img);
	assert_int_equal(stock_qcow2_open(&q, path), 0);
	assert_true(stock_qcow2_snapshot(q, 0)->vm_state_size == 5ull << 30);
	for (int i = 0; i < 4; i++) {
		memset(want, 0, sizeof(want));
		big_fill(offs[i], want, sizeof(want), NULL);
		assert_int_equal(stock_qcow2_vmstate_pread(q, 0, buf, sizeof(buf), offs[i]), 0);
		assert_memory_equal(buf, want, sizeof(want));
	}
	check_err(stock_qcow2_vmstate_pread(q, 0, buf, 2, (5ull << 30) - 1), FVM_ERANGE, NULL);
	stock_qcow2_close(q);
}

/* ------------------------------------------------------------- hostile */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Open must fail with code, naming what. */
static void expect_open_(const uint8_t *img, size_t len, int code, const char *what, int line)
{
	struct stock_qcow2 *q = (void *)1;

	write_img(img, len);
	check_err_(stock_qcow2_open(&q, path), code, what, __FILE__, line);
	assert_null(q);
}
#define expect_open(i, l, c, w) expect_open_((i), (l), (c), (w), __LINE__)

/* Open succeeds; reading snapshot 0's whole vmstate fails with code. */
static void expect_read_(const uint8_t *img, size_t len, uint64_t vm_len, int code, const char *what,
			 int line)
{
	struct stock_qcow2 *q;
	uint8_t *buf = malloc(vm_len);
	int rc;

	assert_non_null(buf);
	write_img(img, len);
	rc = stock_qcow2_open(&q, path);
	if (rc)
		fail_msg("open: %s", fvm_error_detail());
	check_err_(stock_qcow2_vmstate_pread(q, 0, buf, vm_len, 0), code, what, __FILE__, line);
	stock_qcow2_close(q);
	free(buf);
}
#define expect_read(i, l, v, c, w) expect_read_((i), (l), (v), (c), (w), __LINE__)

/* stock_qcow2_vmstate_check of snapshot 1 (0: must pass). */
static void expect_vmcheck_(const uint8_t *img, size_t len, int code, const char *what, int line)
{
	struct stock_qcow2 *q;
	int rc;

	write_img(img, len);
	rc = stock_qcow2_open(&q, path);
	if (rc)
		fail_msg("open: %s", fvm_error_detail());
	rc = stock_qcow2_vmstate_check(q, 0);
	if (code)
		check_err_(rc, code, what, __FILE__, line);
	else if (rc)
		fail_msg("line %d: check of a good image: %s", line, fvm_error_detail());
	stock_qcow2_close(q);
}
#define expect_vmcheck(i, l, c, w) expect_vmcheck_((i), (l), (c), (w), __LINE__)

static void test_hostile_header(void **state)
{
	struct img t;
	uint8_t *m;

	(void)state;
	build(&t, 3, 16, false, gen_policy_mixed, 24);
	m = malloc(t.len);
	assert_non_null(m);
#define MUT(stmt) do { memcpy(m, t.img, t.len); stmt; } while (0)
	MUT(m[0] = 'X');
	expect_open(m, t.len, FVM_EMAGIC, "signature");
	MUT(put32(m + 4, 1));
	expect_open(m, t.len, FVM_EVERSION, "version 1");
	MUT(put32(m + 4, 4));
	expect_open(m, t.len, FVM_EVERSION, "version 4");
	MUT(put32(m + 20, 8));
	expect_open(m, t.len, FVM_ECORRUPT, "cluster_bits 8");
	MUT(put32(m + 20, 22));
	expect_open(m, t.len, FVM_EUNSUPPORTED, "cluster_bits 22");
	MUT(put64(m + 72, 1ull << 5));
	expect_open(m, t.len, FVM_EFEATURE, "unknown incompatible feature bits 0x20");
	MUT(put64(m + 72, 1ull << 2));
	expect_open(m, t.len, FVM_EUNSUPPORTED, "external data file");
	MUT(put64(m + 72, 1ull << 3); put32(m + 100, 112); m[104] = 1);
	expect_open(m, t.len, FVM_EUNSUPPORTED, "zstd-compressed image not supported");
	MUT(put64(m + 72, 1ull << 3); put32(m + 100, 112); m[104] = 7);
	expect_open(m, t.len, FVM_EFEATURE, "compression type 7");
	MUT(put32(m + 100, 112); m[104] = 1);
	expect_open(m, t.len, FVM_ECORRUPT, "compression type bit");
	MUT(put32(m + 100, 96));
	expect_open(m, t.len, FVM_ECORRUPT, "header_length");
	MUT(put32(m + 32, 2));
	expect_open(m, t.len, FVM_EUNSUPPORTED, "encrypted image (LUKS)");
	MUT(put32(m + 32, 1));
	expect_open(m, t.len, FVM_EUNSUPPORTED, "encrypted image (AES-CBC)");
	MUT(put32(m + 36, 0x10000000));
	expect_open(m, t.len, FVM_ECORRUPT, "active L1 table");
	MUT(put32(m + 36, 1 << 20));
	expect_open(m, t.len, FVM_ERANGE, "active L1 table");
	MUT(put32(m + 36, 0));
	expect_open(m, t.len, FVM_ECORRUPT, "cannot map the disk size");
	MUT(put64(m + 40, t.lay.l1_off + 8));
	expect_open(m, t.len, FVM_ECORRUPT, "not aligned");
	MUT(put64(m + 40, 0));
	expect_open(m, t.len, FVM_ECORRUPT, "overlaps the image header");
	MUT(put32(m + 56, 0));
	expect_open(m, t.len, FVM_ECORRUPT, "refcount table");
	MUT(put32(m + 60, 70000));
	expect_open(m, t.len, FVM_ECORRUPT, "65536");
	MUT(put32(m + 60, 3));
	expect_open(m, t.len, FVM_ETRUNCATED, "snapshot table entry");
	MUT(put64(m + 64, (t.len + 0xffff) & ~0xffffull));
	expect_open(m, t.len, FVM_ERANGE, "snapshot table");
	MUT(put64(m + 64, 0));
	expect_open(m, t.len, FVM_ECORRUPT, "snapshot table");
	MUT(put64(m + 64, t.lay.l1_off));
	write_img(m, t.len);
	{
		struct stock_qcow2 *q;

		assert_true(stock_qcow2_open(&q, path) < 0);
	}
	/* snapshot entry: id length past the end, extra data over QEMU's limit */
	MUT(m[t.lay.snap_entry_off[1] + 12] = 0xff; m[t.lay.snap_entry_off[1] + 13] = 0xff);
	expect_open(m, t.len, FVM_ETRUNCATED, "snapshot id string");
	MUT(put32(m + t.lay.snap_entry_off[0] + 36, 2000));
	expect_open(m, t.len, FVM_ECORRUPT, "extra data");
	/* truncated anywhere in the header or the snapshot table */
	for (size_t n = 0; n < 200; n++)
		expect_open(t.img, n, n < 104 ? FVM_ETRUNCATED : FVM_ERANGE, NULL);
	for (size_t n = t.lay.snap_table_off; n < t.lay.snap_entry_off[1] + 40 + 24 + 1 + 10; n++)
		expect_open(t.img, n, n < t.lay.snap_table_off + 80 ? FVM_ERANGE : FVM_ETRUNCATED,
			    "snapshot");
#undef MUT
	free(m);
	drop(&t);
}

static void test_hostile_tables(void **state)
{
	struct img t;
	uint8_t *m;
	uint64_t l1e_at, l2e_at, l2_off, vm;

	(void)state;
	build(&t, 3, 16, false, NULL, 24);
	/* room for a cluster after the end, so overlap is found before EOF */
	m = calloc(1, t.len + 65536);
	assert_non_null(m);
	vm = t.vm_len[0];
	/* vmstate starts at L1 index size_to_l1(16 clusters) = 1 with 64 KiB clusters */
	l1e_at = t.lay.snap_l1_off[0] + 8;
	l2_off = t.lay.first_vm_l2_off;
	l2e_at = t.lay.first_vm_l2_entry;
	assert_int_equal(get64(t.img + l1e_at), l2_off);
#define MUT(stmt) do { memcpy(m, t.img, t.len); stmt; } while (0)
	MUT(put64(m + l1e_at, l2_off | 1));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "reserved bits");
	MUT(put64(m + l1e_at, l2_off + 512));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "not cluster aligned");
	MUT(put64(m + l1e_at, (t.len + 0xffff) & ~0xffffull));
	expect_read(m, t.len, vm, FVM_ERANGE, "L2 table");
	/* cyclic / overlapping metadata */
	MUT(put64(m + l1e_at, t.lay.l1_off));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "overlaps the active L1 table");
	MUT(put64(m + l1e_at, t.lay.snap_l1_off[0]));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "overlaps the L1 table of snapshot 1");
	MUT(put64(m + l1e_at, t.lay.snap_table_off));
	expect_read(m, t.len + 65536, vm, FVM_ECORRUPT, "overlaps the snapshot table");
	MUT(put64(m + l1e_at, t.lay.refcount_off));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "overlaps the refcount table");
	MUT(put64(m + l2e_at, l2_off | 1ull << 63));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "own L2 table");
	MUT(put64(m + l2e_at, t.lay.refcount_off));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "data cluster at offset 0x10000 overlaps");
	MUT(put64(m + l2e_at, get64(t.img + l2e_at) | 2));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "reserved bits");
	MUT(put64(m + l2e_at, get64(t.img + l2e_at) + 4096));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "not cluster aligned");
	MUT(put64(m + l2e_at, 0x00f0000000000000ull));
	expect_read(m, t.len, vm, FVM_ERANGE, "past end of file");
	/* compressed descriptor pointing past the end, or at garbage */
	MUT(put64(m + l2e_at, 1ull << 62 | (t.len + 100)));
	expect_read(m, t.len, vm, FVM_ERANGE, "compressed cluster");
	MUT(put64(m + l2e_at, 1ull << 62 | 3ull << 54 | (t.lay.first_vm_l2_off + 65536 * 2)));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "does not inflate");
	/* snapshot L1: unaligned, past the end, too small for vm_state_size */
	MUT(put64(m + t.lay.snap_entry_off[0], t.lay.snap_l1_off[0] + 8));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "not aligned");
	MUT(put64(m + t.lay.snap_entry_off[0], (t.len + 0xffff) & ~0xffffull));
	expect_read(m, t.len, vm, FVM_ERANGE, "L1 table of snapshot 1");
	MUT(put32(m + t.lay.snap_entry_off[0] + 8, 1));
	expect_read(m, t.len, vm, FVM_ECORRUPT, "L1 table");
	MUT(put64(m + t.lay.snap_entry_off[0] + 40, 1ull << 40));
	expect_read(m, t.len, 16, FVM_ECORRUPT, "L1 table");
	/* the up-front check: clusters of the state past the end of the file */
	expect_vmcheck(t.img, t.len, 0, NULL);
	MUT(put64(m + l2e_at, (get64(t.img + l2e_at) & ~0x00fffffffffffe00ull) | ((t.len + 0xffff) & ~0xffffull)));
	expect_vmcheck(m, t.len, FVM_ETRUNCATED, "snapshot 1 ('s1'): vmstate offset 0x0 is in the cluster at file offset 0x");
	MUT(put64(m + l2e_at, 1ull << 62 | (t.len + 100)));
	expect_vmcheck(m, t.len, FVM_ETRUNCATED, "snapshot 1 ('s1'): vmstate offset 0x0 is in the compressed cluster");
	MUT(put64(m + l1e_at, (t.len + 0xffff) & ~0xffffull));
	expect_vmcheck(m, t.len, FVM_ERANGE, "L1 table of snapshot 1 ('s1') entry 1");
	/* truncated inside the vmstate data: open is fine, the read fails */
	{
		struct stock_qcow2 *q;
		uint8_t *buf = malloc(vm);

		write_img(t.img, t.lay.snap_l1_off[0] - 1000);
		/* the snapshot table is gone too: open fails cleanly */
		assert_int_not_equal(stock_qcow2_open(&q, path), 0);
		free(buf);
	}
#undef MUT
	free(m);
	drop(&t);

	/* v2: the zero flag is corruption (QEMU: "Zero cluster entry found in pre-v3 image") */
	build(&t, 2, 16, false, NULL, 24);
	m = malloc(t.len);
	assert_non_null(m);
	memcpy(m, t.img, t.len);
	put64(m + t.lay.first_vm_l2_entry, 1);
	expect_read(m, t.len, t.vm_len[0], FVM_ECORRUPT, "zero flag in a version 2 image");
	free(m);
	drop(&t);

	/* extended L2: alloc and zero bits both set */
	build(&t, 3, 16, true, NULL, 24);
	m = malloc(t.len);
	assert_non_null(m);
	memcpy(m, t.img, t.len);
	put64(m + t.lay.first_vm_l2_entry + 8, 0x00000001ffffffffull);
	expect_read(m, t.len, t.vm_len[0], FVM_ECORRUPT, "invalid subcluster bitmap");
	memcpy(m, t.img, t.len);
	put64(m + t.lay.first_vm_l2_entry, 0);
	expect_read(m, t.len, t.vm_len[0], FVM_ECORRUPT, "invalid subcluster bitmap");
	memcpy(m, t.img, t.len);
	put64(m + t.lay.first_vm_l2_entry, get64(t.img + t.lay.first_vm_l2_entry) | 1);
	expect_read(m, t.len, t.vm_len[0], FVM_ECORRUPT, "reserved bits");
	free(m);
	drop(&t);
}

/* Random byte damage: never a crash, always 0 or a code with a detail. */
static void test_random_damage(void **state)
{
	struct img t;
	uint8_t *m, *buf;

	(void)state;
	build(&t, 3, 12, false, gen_policy_mixed, 24);
	m = malloc(t.len);
	buf = malloc(t.vm_len[0] + t.vm_len[1]);
	assert_non_null(m);
	assert_non_null(buf);
	for (int iter = 0; iter < 400; iter++) {
		struct stock_qcow2 *q;
		size_t len = t.len;

		memcpy(m, t.img, t.len);
		for (int k = 0, n = 1 + (int)(rnd() % 8); k < n; k++)
			m[rnd() % t.len] ^= (uint8_t)(1u << (rnd() % 8));
		if (iter % 7 == 0)
			len = (size_t)(rnd() % t.len);
		write_img(m, len);
		if (stock_qcow2_open(&q, path)) {
			assert_true(fvm_error_detail()[0] != 0);
			continue;
		}
		for (size_t s = 0; s < stock_qcow2_snapshot_count(q); s++) {
			uint64_t n = stock_qcow2_snapshot(q, s)->vm_state_size;

			if (n > t.vm_len[0] + t.vm_len[1])
				n = t.vm_len[0] + t.vm_len[1];
			if (stock_qcow2_vmstate_pread(q, s, buf, n, 0))
				assert_true(fvm_error_detail()[0] != 0);
		}
		stock_qcow2_close(q);
	}
	free(m);
	free(buf);
	drop(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_libqcow_active),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_big_vmstate),
		cmocka_unit_test(test_hostile_header),
		cmocka_unit_test(test_hostile_tables),
		cmocka_unit_test(test_random_damage),
	};
	int rc;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/img.qcow2", dir);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(path);
	rmdir(dir);
	return rc;
}
