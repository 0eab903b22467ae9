/*
 * The load plan (see plan.h): mapping checks, the DATA extents in payload
 * order, scatter reads over extents that are adjacent in the file, and the
 * destination ranges left to the zero policy. All bounds checks of a load
 * happen here, before the first byte is written.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "array.h"
#include <sys/mman.h>
#include <unistd.h>

#include "plan.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* ------------------------------------------------------------ mappings */

int fvm_plan_check_map(const char *file, const struct fvm_rblock *b,
		       const struct fvm_map *m)
{
	uint64_t ps = 1ull << b->page_shift;

	if (m->length != b->length)
		return fvm_err(FVM_EMAPPING, "%s: mapping of block %s: length %" PRIu64
			       ", the block has %" PRIu64 " bytes", file, b->name,
			       m->length, b->length);
	if (m->page_size && m->page_size != ps)
		return fvm_err(FVM_EMAPPING, "%s: mapping of block %s: page size %" PRIu64
			       ", the block has %" PRIu64, file, b->name, m->page_size, ps);
	return 0;
}

struct span {
	uintptr_t start, end;
	size_t i;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Mappings must not overlap: two blocks loaded into one byte would race. */
static int check_disjoint(const char *file, const struct fvm_map *maps, size_t n)
{
	struct span *s;
	int rc = 0;

	if (n < 2)
		return 0;
	s = malloc(n * sizeof(*s));
	if (!s)
		return fvm_err(FVM_ENOMEM, "%s: checking %zu mappings", file, n);
	for (size_t i = 0; i < n; i++)
		s[i] = (struct span){ (uintptr_t)maps[i].addr,
				      (uintptr_t)maps[i].addr + maps[i].length, i };
	qsort(s, n, sizeof(*s), span_cmp);
	for (size_t i = 1; i < n && !rc; i++)
		if (s[i].start < s[i - 1].end)
			rc = fvm_err(FVM_EMAPPING, "%s: mappings %s and %s overlap in memory",
				     file, maps[s[i - 1].i].name, maps[s[i].i].name);
	free(s);
	return rc;
}

/* Block ids sorted by name, so a mapping finds its block in log time. */
static __thread const struct fvm_rblock *sort_blocks;

static int name_cmp(const void *a, const void *b)
{
	return strcmp(sort_blocks[*(const uint32_t *)a].name,
		      sort_blocks[*(const uint32_t *)b].name);
}

static int64_t find_block(const struct fvm_rblock *blocks, const uint32_t *by_name,
			  uint32_t nblocks, const char *name)
{
	uint32_t lo = 0, hi = nblocks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(blocks[by_name[mid]].name, name);

		if (c == 0)
			return by_name[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int sort_names(const struct fvm_rblock *blocks, uint32_t nblocks, uint32_t **out)
{
	uint32_t *v = malloc((nblocks ? nblocks : 1) * sizeof(*v));

	if (!v)
		return FVM_ENOMEM;
	for (uint32_t i = 0; i < nblocks; i++)
		v[i] = i;
	/* qsort has no context argument: pass the blocks in a thread-local */
	sort_blocks = blocks;
	qsort(v, nblocks, sizeof(*v), name_cmp);
	*out = v;
	return 0;
}

static int match(const char *file, const struct fvm_rblock *blocks, const uint32_t *by_name,
		 uint32_t nblocks, const struct fvm_map *maps, size_t n_maps, int allow_unknown,
		 const struct fvm_map **map_of)
{
	int rc;

	for (size_t k = 0; k < n_maps; k++) {
		const struct fvm_map *m = &maps[k];
		int64_t b;

		if (!m->name || !m->addr)
			return fvm_err(FVM_EINVAL, "%s: mapping %zu has no name or address",
				       file, k);
		if ((uintptr_t)m->addr + m->length < (uintptr_t)m->addr)
			return fvm_err(FVM_EMAPPING, "%s: mapping %s wraps around the "
				       "address space", file, m->name);
		b = find_block(blocks, by_name, nblocks, m->name);
		if (b < 0) {
			if (allow_unknown)
				continue;
			return fvm_err(FVM_EMAPPING, "%s: mapping %s: no such block in the "
				       "snapshot", file, m->name);
		}
		if (map_of[b])
			return fvm_err(FVM_EMAPPING, "%s: block %s is mapped twice", file,
				       m->name);
		rc = fvm_plan_check_map(file, &blocks[b], m);
		if (rc)
			return rc;
		map_of[b] = m;
	}
	return 0;
}

int fvm_plan_maps(const char *file, const struct fvm_rblock *blocks, uint32_t nblocks,
		  const struct fvm_map *maps, size_t n_maps, int partial, int allow_unknown,
		  const struct fvm_map **map_of)
{
	uint32_t *by_name;
	int rc = 0;

	if (n_maps && !maps)
		return fvm_err(FVM_EINVAL, "%s: %zu mappings but no array", file, n_maps);
	for (uint32_t i = 0; i < nblocks; i++)
		map_of[i] = NULL;
	if (sort_names(blocks, nblocks, &by_name))
		return fvm_err(FVM_ENOMEM, "%s: sorting %u block names", file, nblocks);
	rc = match(file, blocks, by_name, nblocks, maps, n_maps, allow_unknown, map_of);
	free(by_name);
	if (rc)
		return rc;
	if (!partial)
		for (uint32_t i = 0; i < nblocks; i++)
			if (!map_of[i])
				return fvm_err(FVM_EMAPPING, "%s: block %s (%" PRIu64 " bytes) "
					       "has no mapping", file, blocks[i].name,
					       blocks[i].length);
	return check_disjoint(file, maps, n_maps);
}

/* ------------------------------------------------------------ zero ranges */

struct pr {
	uint32_t block;
	uint64_t first, count;
};

static int pr_cmp(const void *a, const void *b)
{
	const struct pr *x = a, *y = b;

	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int push_zero(struct fvm_plan *p, size_t *cap, const struct fvm_map *m,
		     uint8_t *addr, uint64_t len)
{
	struct fvm_plan_zero *last = p->nzero ? &p->zero[p->nzero - 1] : NULL;

	if (m->flags & FVM_MAP_ZERO) /* the caller knows it reads as zero */
		return 0;
	if (last && last->addr + last->len == addr && last->map_flags == m->flags) {
		last->len += len;
	} else {
		if (fvm_grow((void **)&p->zero, cap, p->nzero + 1, sizeof(*p->zero)))
			return FVM_ENOMEM;
		p->zero[p->nzero++] = (struct fvm_plan_zero){ addr, len, m->flags };
	}
	p->zero_bytes += len;
	return 0;
}

int fvm_plan_zero_ranges(struct fvm_plan *p, const char *file,
			 const struct fvm_rblock *blocks, uint32_t nblocks,
			 const struct fvm_extent *ext, uint64_t n,
			 const struct fvm_map *const *map_of, int zero_extents)
{
	uint32_t want = zero_extents ? 0 : FVM_RUN_FLAG_DATA;
	struct pr *v = NULL;
	size_t k = 0, cap = 0, j = 0;
	int rc = 0;

	p->nzero = 0;
	p->zero_bytes = 0;
	if (n) {
		v = malloc(n * sizeof(*v));
		if (!v)
			return fvm_err(FVM_ENOMEM, "%s: zero ranges of %" PRIu64 " extents",
				       file, n);
	}
	for (uint64_t i = 0; i < n; i++)
		if ((ext[i].flags & FVM_RUN_FLAG_DATA) == want && map_of[ext[i].block_id])
			v[k++] = (struct pr){ ext[i].block_id, ext[i].first_page,
					      ext[i].page_count };
	if (k) /* v is NULL when there are no extents */
		qsort(v, k, sizeof(*v), pr_cmp);
	for (uint32_t b = 0; b < nblocks && !rc; b++) {
		const struct fvm_map *m = map_of[b];
		uint32_t sh = blocks[b].page_shift;
		uint64_t pos = 0;

		for (; j < k && v[j].block == b && !rc; j++) {
			if (zero_extents)
				rc = push_zero(p, &cap, m, (uint8_t *)m->addr + (v[j].first << sh),
					       v[j].count << sh);
			else if (v[j].first > pos)
				rc = push_zero(p, &cap, m, (uint8_t *)m->addr + (pos << sh),
					       (v[j].first - pos) << sh);
			pos = v[j].first + v[j].count;
		}
		if (m && !zero_extents && pos < blocks[b].pages && !rc)
			rc = push_zero(p, &cap, m, (uint8_t *)m->addr + (pos << sh),
				       (blocks[b].pages - pos) << sh);
	}
	free(v);
	if (rc)
		return fvm_err(FVM_ENOMEM, "%s: zero ranges", file);
	return 0;
}

/* ------------------------------------------------------------ reads */

static int ext_cmp(const void *a, const void *b)
{
	const struct fvm_plan_ext *x = a, *y = b;

	return x->file_off < y->file_off ? -1 : x->file_off > y->file_off;
}

/* Collect the DATA extents of mapped blocks, each checked against its mapping. */
static int collect(struct fvm_plan *p, const char *file, const struct fvm_rblock *blocks,
		   const struct fvm_extent *ext, uint64_t n, const struct fvm_map **map_of)
{
	size_t k = 0;

	p->ext = malloc((n ? n : 1) * sizeof(*p->ext));
	if (!p->ext)
		return fvm_err(FVM_ENOMEM, "%s: load plan of %" PRIu64 " extents", file, n);
	for (uint64_t i = 0; i < n; i++) {
		const struct fvm_extent *e = &ext[i];
		const struct fvm_rblock *b = &blocks[e->block_id];
		const struct fvm_map *m = map_of[e->block_id];
		uint64_t off, bytes;

		if (!(e->flags & FVM_RUN_FLAG_DATA) || !m)
			continue;
		/* the reader checked this (R64); the plan is where bounds are owned */
		if (e->page_count == 0 || e->first_page > b->pages ||
		    e->page_count > b->pages - e->first_page)
			return fvm_err(FVM_ERANGE, "%s: extent %" PRIu64 ": pages %" PRIu64
				       "+%" PRIu64 " outside block %s", file, i,
				       e->first_page, e->page_count, b->name);
		off = e->first_page << b->page_shift;
		bytes = e->page_count << b->page_shift;
		if (off > m->length || bytes > m->length - off)
			return fvm_err(FVM_EMAPPING, "%s: extent %" PRIu64 " outside the "
				       "mapping of block %s", file, i, b->name);
		p->ext[k++] = (struct fvm_plan_ext){ e->payload_offset, bytes,
			(uint8_t *)m->addr + off, e->block_id, e->first_page, e->crc_offset };
		p->total += bytes;
	}
	p->next = k;
	qsort(p->ext, k, sizeof(*p->ext), ext_cmp);
	if (k) {
		p->lo = p->ext[0].file_off;
		p->hi = p->ext[k - 1].file_off + p->ext[k - 1].bytes;
	}
	return 0;
}

/*
 * Turn the sorted extents into requests: extents that touch in the file
 * share one request (one iovec each, merged when the destinations touch
 * too), cut at chunk bytes and IOV_MAX iovecs.
 */
static int make_requests(struct fvm_plan *p, const char *file, uint64_t chunk)
{
	size_t req_cap = 0, iov_cap = 0;
	struct fvm_plan_req *cur = NULL;

	for (size_t i = 0; i < p->next; i++) {
		const struct fvm_plan_ext *e = &p->ext[i];
		uint64_t off = e->file_off, left = e->bytes;
		uint8_t *dst = e->dst;

		while (left) {
			struct iovec *last;
			uint64_t take;

			last = cur && cur->niov ? &p->iov[cur->iov + cur->niov - 1] : NULL;
			if (!cur || cur->file_off + cur->len != off || cur->len >= chunk ||
			    (cur->niov >= IOV_MAX && (uint8_t *)last->iov_base + last->iov_len != dst)) {
				if (fvm_grow((void **)&p->req, &req_cap, p->nreq + 1, sizeof(*p->req)))
					return fvm_err(FVM_ENOMEM, "%s: load plan", file);
				cur = &p->req[p->nreq++];
				*cur = (struct fvm_plan_req){ off, 0, p->niov, 0, i };
				last = NULL;
			}
			take = chunk - cur->len < left ? chunk - cur->len : left;
			if (last && (uint8_t *)last->iov_base + last->iov_len == dst) {
				last->iov_len += take;
			} else {
				if (fvm_grow((void **)&p->iov, &iov_cap, p->niov + 1, sizeof(*p->iov)))
					return fvm_err(FVM_ENOMEM, "%s: load plan", file);
				p->iov[p->niov++] = (struct iovec){ dst, take };
				cur->niov++;
			}
			cur->len += take;
			off += take;
			dst += take;
			left -= take;
		}
	}
	return 0;
}

/* p->sparse: the HUGEPAGE mappings less than half of which the extents fill. */
static int find_sparse(struct fvm_plan *p, const char *file, const struct fvm_map *maps,
		       size_t n_maps, const struct fvm_map *const *map_of)
{
	uint64_t *data = calloc(n_maps ? n_maps : 1, sizeof(*data));

	p->sparse = calloc(n_maps ? n_maps : 1, sizeof(*p->sparse));
	if (!data || !p->sparse) {
		free(data);
		return fvm_err(FVM_ENOMEM, "%s: load plan", file);
	}
	for (size_t i = 0; i < p->next; i++)
		data[map_of[p->ext[i].block_id] - maps] += p->ext[i].bytes;
	for (size_t k = 0; k < n_maps; k++)
		if ((maps[k].flags & FVM_MAP_HUGEPAGE) &&
		    !(maps[k].flags & (FVM_MAP_SHARED | FVM_MAP_HUGETLB)) &&
		    (uintptr_t)maps[k].addr % FVM_CHUNK == 0 && 2 * data[k] < maps[k].length)
			p->sparse[p->nsparse++] = &maps[k];
	free(data);
	return 0;
}

int fvm_plan_build(struct fvm_plan *p, const char *file,
		   const struct fvm_rblock *blocks, uint32_t nblocks,
		   const struct fvm_extent *ext, uint64_t n,
		   const struct fvm_map *maps, size_t n_maps, int partial,
		   uint64_t chunk_bytes)
{
	const struct fvm_map **map_of;
	int rc;

	memset(p, 0, sizeof(*p));
	/* whole 4 KiB chunks keep O_DIRECT reads and CRC chunks aligned; 1 GiB
	 * keeps a read's length inside what one syscall or SQE can carry */
	if (chunk_bytes > (1u << 30))
		chunk_bytes = 1u << 30;
	if (chunk_bytes && chunk_bytes < FVM_CHUNK)
		chunk_bytes = FVM_CHUNK;
	chunk_bytes &= ~(uint64_t)(FVM_CHUNK - 1);
	map_of = calloc(nblocks ? nblocks : 1, sizeof(*map_of));
	if (!map_of)
		return fvm_err(FVM_ENOMEM, "%s: load plan", file);
	rc = fvm_plan_maps(file, blocks, nblocks, maps, n_maps, partial, 0, map_of);
	if (!rc)
		rc = collect(p, file, blocks, ext, n, map_of);
	if (!rc && chunk_bytes) /* 0: the frame executor reads frames, not runs */
		rc = make_requests(p, file, chunk_bytes);
	if (!rc)
		rc = fvm_plan_zero_ranges(p, file, blocks, nblocks, ext, n, map_of, 0);
	if (!rc)
		rc = find_sparse(p, file, maps, n_maps, map_of);
	p->aligned = 1;
	for (size_t k = 0; k < n_maps && !rc; k++) {
		if ((uintptr_t)maps[k].addr % FVM_CHUNK)
			p->aligned = 0;
		if ((maps[k].flags & (FVM_MAP_SHARED | FVM_MAP_HUGETLB)) && !p->shared)
			p->shared = maps[k].name;
	}
	free(map_of);
	if (rc)
		fvm_plan_free(p);
	return rc;
}

void fvm_plan_free(struct fvm_plan *p)
{
	free(p->ext);
	free(p->req);
	free(p->iov);
	free(p->zero);
	free(p->sparse);
	memset(p, 0, sizeof(*p));
}

void fvm_plan_small_pages(const struct fvm_plan *p, int on)
{
	for (size_t k = 0; k < p->nsparse; k++)
		(void)madvise(p->sparse[k]->addr, (size_t)p->sparse[k]->length & ~(size_t)(FVM_CHUNK - 1),
			      on ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
}

/* ------------------------------------------------------------ zero policy */

int fvm_plan_apply_zero(const struct fvm_plan_zero *z, size_t n, int policy)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (policy == FVM_ZERO_LEAVE)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)z[i].addr, e = a + z[i].len;
		uintptr_t s = (a + pg - 1) & ~(pg - 1), t = e & ~(pg - 1);

		/* DONTNEED on shared or hugetlbfs memory would not leave zeros
		 * (a shared file's pages come back from the file) */
		if (policy == FVM_ZERO_MEMSET || s >= t ||
		    (z[i].map_flags & (FVM_MAP_SHARED | FVM_MAP_HUGETLB))) {
			memset(z[i].addr, 0, z[i].len);
			continue;
		}
		/* whole pages are released; the edges of a partial page are not
		 * ours alone to release, so they are cleared */
		memset((void *)a, 0, s - a);
		memset((void *)t, 0, e - t);
		if (madvise((void *)s, t - s, MADV_DONTNEED) < 0)
			memset((void *)s, 0, t - s); /* e.g. locked: still zero */
	}
	return 0;
}
