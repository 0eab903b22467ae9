/*
 * qcow2 image builder for tests and fuzz seeds (see qcow2_gen.h). Layout:
 * header cluster, refcount table cluster (zeros), active L1, then L2 tables
 * and data clusters in guest order, then each snapshot's L2/data and L1,
 * then the snapshot table. Offsets are kept, never pointers, because the
 * buffer moves as it grows.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "qcow2_gen.h"

#define COPIED (1ull << 63)
#define COMPRESSED (1ull << 62)

struct gbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

struct gen {
	const struct gen_opts *o;
	struct gbuf b;
	uint64_t cs;
	uint32_t l2_bits, l2e, shift;
	struct gen_layout *lay;
	bool record_vm;  /* record the first vmstate L2 entry into lay */
};

static void grow(struct gbuf *b, size_t len)
{
	if (b->err || len <= b->cap) {
		if (!b->err && len > b->len)
			b->len = len;
		return;
	}
	size_t cap = b->cap ? b->cap : 65536;
	while (cap < len)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		b->err = 1;
		return;
	}
	memset(p + b->cap, 0, cap - b->cap);
	b->p = p;
	b->cap = cap;
	b->len = len;
}

static void put64(struct gbuf *b, uint64_t off, uint64_t v)
{
	grow(b, off + 8);
	if (b->err)
		return;
	for (int i = 0; i < 8; i++)
		b->p[off + i] = (uint8_t)(v >> (56 - 8 * i));
}

static void put32(struct gbuf *b, uint64_t off, uint32_t v)
{
	grow(b, off + 4);
	if (b->err)
		return;
	for (int i = 0; i < 4; i++)
		b->p[off + i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put16(struct gbuf *b, uint64_t off, uint16_t v)
{
	grow(b, off + 2);
	if (b->err)
		return;
	b->p[off] = (uint8_t)(v >> 8);
	b->p[off + 1] = (uint8_t)v;
}

static void put(struct gbuf *b, uint64_t off, const void *src, size_t n)
{
	grow(b, off + n);
	if (!b->err && n)
		memcpy(b->p + off, src, n);
}

static uint64_t alloc_clusters(struct gen *g, uint64_t n)
{
	uint64_t off = (g->b.len + g->cs - 1) & ~(g->cs - 1);

	grow(&g->b, off + n * g->cs);
	return off;
}

static uint64_t size_to_l1(const struct gen *g, uint64_t size)
{
	return (size >> g->shift) + ((size & ((1ull << g->shift) - 1)) != 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static enum gen_mode pick(struct gen *g, uint64_t index, bool zero)
{
	enum gen_mode m = g->o->policy ? g->o->policy(index, zero, g->o->ctx)
				       : (zero ? GEN_UNALLOC : GEN_NORMAL);

	if (m == GEN_SUB && !g->o->extl2)
		m = GEN_NORMAL;
	if ((m == GEN_ZERO || m == GEN_ZERO_ALLOC) && g->o->version < 3)
		m = zero ? GEN_UNALLOC : GEN_NORMAL;
	if ((m == GEN_ZERO || m == GEN_ZERO_ALLOC || m == GEN_UNALLOC) && !zero)
		m = GEN_NORMAL;
	return m;
}

/* Try to store data compressed at the current end; 0 when it does not shrink. */
static uint64_t put_compressed(struct gen *g, const uint8_t *data)
{
	uint32_t cb = g->o->cluster_bits, csize_shift = 62 - (cb - 8);
	uint64_t csize_mask = (1ull << (cb - 8)) - 1;
	uLongf cap = (uLongf)(2 * g->cs + 1024);
	uint8_t *tmp = malloc(cap);
	z_stream zs;
	uint64_t coff, nadd, e = 0;

	if (!tmp)
		return 0;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(tmp);
		return 0;
	}
	zs.next_in = (uint8_t *)data;
	zs.avail_in = (uInt)g->cs;
	zs.next_out = tmp;
	zs.avail_out = (uInt)cap;
	if (deflate(&zs, Z_FINISH) == Z_STREAM_END && zs.total_out < g->cs) {
		/* Start mid-sector, as QEMU's packed compressed clusters do. */
		coff = g->b.len + 3;
		if (coff < 3 * g->cs)
			coff = 3 * g->cs + 3;
		nadd = (coff + zs.total_out - 1) / 512 - coff / 512;
		if (nadd <= csize_mask) {
			put(&g->b, coff, tmp, zs.total_out);
			e = COMPRESSED | nadd << csize_shift | coff;
		}
	}
	deflateEnd(&zs);
	free(tmp);
	return e;
}

/*
 * Map len bytes (from data, or fill, or zeros) at guest offset base through
 * the in-memory L1 (host-endian entries, with the COPIED bit when copied).
 */
static void map_data(struct gen *g, uint64_t *l1, uint64_t base, const uint8_t *data,
		     bool (*fill)(uint64_t, uint8_t *, size_t, void *), void *fctx,
		     uint64_t len)
{
	uint8_t *c = malloc(g->cs);
	uint64_t n = (len + g->cs - 1) / g->cs;
	bool dirty = true;

	if (!c) {
		g->b.err = 1;
		return;
	}
	for (uint64_t i = 0; i < n && !g->b.err; i++) {
		uint64_t goff = base + i * g->cs, pos = i * g->cs;
		size_t have = len - pos < g->cs ? (size_t)(len - pos) : (size_t)g->cs;
		uint64_t l1i = goff >> g->shift, l2i = (goff / g->cs) & ((1ull << g->l2_bits) - 1);
		uint64_t e = 0, bitmap = 0, host, eoff;
		bool zero;
		enum gen_mode m;

		/* A sparse fill leaves most clusters untouched: skip their scan. */
		if (dirty)
			memset(c, 0, g->cs);
		if (data) {
			memcpy(c, data + pos, have);
			dirty = true;
		} else {
			dirty = fill && fill(pos, c, have, fctx);
		}
		zero = !dirty || all_zero(c, g->cs);
		m = pick(g, goff / g->cs, zero);
		if (m == GEN_UNALLOC)
			continue;
		if (!(l1[l1i] & ~COPIED))
			l1[l1i] = alloc_clusters(g, 1) | COPIED;
		switch (m) {
		case GEN_COMPRESSED:
			e = put_compressed(g, c);
			if (e) {
				if (!g->lay->first_compressed_l2_entry)
					g->lay->first_compressed_l2_entry =
						(l1[l1i] & ~COPIED) + l2i * g->l2e;
				break;
			}
			/* incompressible: store it plain */
			/* fall through */
		case GEN_NORMAL:
		default:
			host = alloc_clusters(g, 1);
			put(&g->b, host, c, g->cs);
			e = host | COPIED;
			bitmap = 0xffffffffull;
			break;
		case GEN_ZERO:
			e = g->o->extl2 ? 0 : 1;
			bitmap = 0xffffffff00000000ull;
			break;
		case GEN_ZERO_ALLOC:
			host = alloc_clusters(g, 1);
			memset(g->b.p + host, 0xee, g->cs);
			e = host | (g->o->extl2 ? 0 : 1);
			bitmap = 0xffffffff00000000ull;
			break;
		case GEN_SUB: {
			uint64_t sc = g->cs / 32;

			host = alloc_clusters(g, 1);
			put(&g->b, host, c, g->cs);
			e = host;
			for (unsigned k = 0; k < 32; k++) {
				if (!all_zero(c + k * sc, sc))
					bitmap |= 1ull << k;
				else if (k & 1)
					bitmap |= 1ull << (32 + k);
				if (!all_zero(c + k * sc, sc) || g->b.err)
					continue;
				/* garbage where the bitmap says zero/unallocated */
				memset(g->b.p + host + k * sc, 0xee, sc);
			}
			break;
		}
		}
		eoff = (l1[l1i] & ~COPIED) + l2i * g->l2e;
		put64(&g->b, eoff, e);
		if (g->o->extl2)
			put64(&g->b, eoff + 8, (e & COMPRESSED) ? 0 : bitmap);
		if (g->record_vm && !g->lay->first_vm_l2_entry) {
			g->lay->first_vm_l2_off = l1[l1i] & ~COPIED;
			g->lay->first_vm_l2_entry = eoff;
		}
	}
	free(c);
}

static void write_l1(struct gen *g, uint64_t off, const uint64_t *l1, uint64_t n, bool copied)
{
	for (uint64_t i = 0; i < n; i++)
		put64(&g->b, off + i * 8, copied ? l1[i] : l1[i] & ~COPIED);
}

int gen_qcow2(const struct gen_opts *o, uint8_t **img, size_t *len, struct gen_layout *lay)
{
	struct gen g = { .o = o, .lay = lay };
	uint64_t l1_disk, l1_clusters, *l1 = NULL, so, off;
	unsigned s;

	memset(lay, 0, sizeof(*lay));
	if ((o->version != 2 && o->version != 3) || o->cluster_bits < 9 || o->cluster_bits > 21 ||
	    (o->extl2 && (o->version != 3 || o->cluster_bits < 14)) || o->disk_len > o->disk_size)
		return -1;
	g.cs = 1ull << o->cluster_bits;
	g.l2e = o->extl2 ? 16 : 8;
	g.l2_bits = o->cluster_bits - (o->extl2 ? 4 : 3);
	g.shift = o->cluster_bits + g.l2_bits;
	l1_disk = size_to_l1(&g, o->disk_size);
	l1_clusters = (l1_disk * 8 + g.cs - 1) / g.cs;

	grow(&g.b, 2 * g.cs);
	lay->refcount_off = g.cs;
	lay->l1_off = l1_disk ? alloc_clusters(&g, l1_clusters) : 0;
	l1 = calloc(l1_disk + 1, 8);
	if (!l1)
		return -1;
	map_data(&g, l1, 0, o->disk, NULL, NULL, o->disk_len);
	write_l1(&g, lay->l1_off, l1, l1_disk, true);

	uint64_t snap_l1_off[64] = { 0 }, snap_l1_size[64] = { 0 };
	for (s = 0; s < o->nsnaps && s < 64 && !g.b.err; s++) {
		const struct gen_snap *sn = &o->snaps[s];
		uint64_t n = l1_disk + size_to_l1(&g, sn->vm_len);
		uint64_t *sl1 = calloc(n + 1, 8);

		if (!sl1) {
			g.b.err = 1;
			break;
		}
		memcpy(sl1, l1, l1_disk * 8);
		g.record_vm = s == 0;
		map_data(&g, sl1, l1_disk << g.shift, sn->vm, sn->fill, sn->fill_ctx, sn->vm_len);
		g.record_vm = false;
		snap_l1_size[s] = n;
		snap_l1_off[s] = alloc_clusters(&g, (n * 8 + g.cs - 1) / g.cs);
		write_l1(&g, snap_l1_off[s], sl1, n, false);
		if (s < 8)
			lay->snap_l1_off[s] = snap_l1_off[s];
		free(sl1);
	}

	so = o->nsnaps ? alloc_clusters(&g, 0) : 0;
	lay->snap_table_off = so;
	off = so;
	for (s = 0; s < o->nsnaps && s < 64 && !g.b.err; s++) {
		const struct gen_snap *sn = &o->snaps[s];
		size_t idl = strlen(sn->id), nml = strlen(sn->name);

		off = (off + 7) & ~7ull;
		if (s < 8)
			lay->snap_entry_off[s] = off;
		put64(&g.b, off, snap_l1_off[s]);
		put32(&g.b, off + 8, (uint32_t)snap_l1_size[s]);
		put16(&g.b, off + 12, (uint16_t)idl);
		put16(&g.b, off + 14, (uint16_t)nml);
		put32(&g.b, off + 16, (uint32_t)sn->date_sec);
		put32(&g.b, off + 20, 123456789);
		put64(&g.b, off + 24, sn->vm_clock_nsec);
		put32(&g.b, off + 32, sn->vm_len > 0xffffffffull ? 0 : (uint32_t)sn->vm_len);
		put32(&g.b, off + 36, sn->extra_size);
		off += 40;
		grow(&g.b, off + sn->extra_size);
		if (sn->extra_size >= 8)
			put64(&g.b, off, sn->vm_len);
		if (sn->extra_size >= 16)
			put64(&g.b, off + 8, o->disk_size);
		if (sn->extra_size >= 24)
			put64(&g.b, off + 16, sn->icount);
		for (uint32_t k = 24; k < sn->extra_size && !g.b.err; k++)
			g.b.p[off + k] = 0xa5; /* unknown extra data: must be skipped */
		off += sn->extra_size;
		put(&g.b, off, sn->id, idl);
		off += idl;
		put(&g.b, off, sn->name, nml);
		off += nml;
	}
	if (o->nsnaps)
		grow(&g.b, (off + 7) & ~7ull);

	/* Header last: it needs the table offsets. */
	put32(&g.b, 0, 0x514649fb);
	put32(&g.b, 4, o->version);
	put32(&g.b, 20, o->cluster_bits);
	put64(&g.b, 24, o->disk_size);
	put32(&g.b, 36, (uint32_t)l1_disk);
	put64(&g.b, 40, lay->l1_off);
	put64(&g.b, 48, g.cs);
	put32(&g.b, 56, 1);
	put32(&g.b, 60, o->nsnaps);
	put64(&g.b, 64, so);
	if (o->version == 3) {
		put64(&g.b, 72, o->extl2 ? 0x10 : 0);
		put32(&g.b, 96, 4);
		put32(&g.b, 100, 104);
	}
	free(l1);
	if (g.b.err) {
		free(g.b.p);
		return -1;
	}
	*img = g.b.p;
	*len = g.b.len;
	return 0;
}

enum gen_mode gen_policy_mixed(uint64_t index, bool zero, void *ctx)
{
	static const enum gen_mode nz[] = { GEN_NORMAL, GEN_COMPRESSED, GEN_SUB };
	static const enum gen_mode z[] = { GEN_ZERO, GEN_UNALLOC, GEN_ZERO_ALLOC, GEN_COMPRESSED, GEN_NORMAL, GEN_SUB };

	(void)ctx;
	return zero ? z[index % 6] : nz[index % 3];
}

enum gen_mode gen_policy_compressed(uint64_t index, bool zero, void *ctx)
{
	(void)index;
	(void)zero;
	(void)ctx;
	return GEN_COMPRESSED;
}
