/*
 * Live-extent resolution (see extents.h). The common case, no page stored
 * twice, is one sort and one pass; only files with rewrites pay for the
 * interval bookkeeping.
 */
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "error.h"
#include "extents.h"

int fvm_extlist_push(struct fvm_extlist *l, const struct fvm_extent *e)
{
	if (fvm_grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return fvm_err(FVM_ENOMEM, "extent list of %llu entries",
			       (unsigned long long)l->n + 1);
	l->v[l->n++] = *e;
	return 0;
}

void fvm_extlist_free(struct fvm_extlist *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* A covered range of pages of one block, ordered by (block, start). */
struct cov {
	uint64_t block, start, end;
};

static int cov_cmp(const void *a, const void *b)
{
	const struct cov *x = a, *y = b;

	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int any_overlap(const struct fvm_extlist *l)
{
	struct cov *c = malloc(l->n * sizeof(*c));
	int hit = 0;

	if (!c)
		return -1;
	for (uint64_t i = 0; i < l->n; i++)
		c[i] = (struct cov){ l->v[i].block_id, l->v[i].first_page,
				     l->v[i].first_page + l->v[i].page_count };
	qsort(c, l->n, sizeof(*c), cov_cmp);
	for (uint64_t i = 1; i < l->n && !hit; i++)
		hit = c[i].block == c[i - 1].block && c[i].start < c[i - 1].end;
	free(c);
	return hit;
}

/* Covered set: sorted, disjoint, non-adjacent ranges. */
struct covset {
	struct cov *v;
	size_t n, cap;
};

/* First range with (block, end) > (block, start): the first that can touch. */
static uint64_t cov_lower(const struct covset *s, uint64_t block, uint64_t start)
{
	uint64_t lo = 0, hi = s->n;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct cov *c = &s->v[mid];

		if (c->block < block || (c->block == block && c->end < start))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Add [start, end) of block, merging with touching ranges. */
static int cov_add(struct covset *s, uint64_t block, uint64_t start, uint64_t end)
{
	uint64_t i = cov_lower(s, block, start), j = i;

	while (j < s->n && s->v[j].block == block && s->v[j].start <= end) {
		if (s->v[j].start < start)
			start = s->v[j].start;
		if (s->v[j].end > end)
			end = s->v[j].end;
		j++;
	}
	if (j == i) { /* insert */
		if (fvm_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
			return FVM_ENOMEM;
		memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
		s->n++;
	} else if (j > i + 1) { /* several merged into s->v[i] */
		memmove(&s->v[i + 1], &s->v[j], (s->n - j) * sizeof(*s->v));
		s->n -= j - i - 1;
	}
	s->v[i] = (struct cov){ block, start, end };
	return 0;
}

/* The part [start, end) of e as an extent of its own. */
static struct fvm_extent piece(const struct fvm_extent *e, uint64_t start, uint64_t end,
			       const struct fvm_blockdesc *blocks)
{
	struct fvm_extent p = *e;
	uint64_t skip = (start - e->first_page) << blocks[e->block_id].page_shift;

	p.first_page = start;
	p.page_count = end - start;
	if (e->flags & FVM_RUN_FLAG_DATA) {
		p.payload_offset += skip;
		if (p.crc_offset)
			p.crc_offset += skip / FVM_CHUNK * 4;
	}
	return p;
}

int fvm_extents_resolve(struct fvm_extlist *l, const struct fvm_blockdesc *blocks,
			int *rewrites)
{
	struct covset cs = { 0 };
	struct fvm_extlist out = { 0 };
	int rc = 0, hit;

	*rewrites = 0;
	if (l->n < 2)
		return 0;
	hit = any_overlap(l);
	if (hit < 0)
		return fvm_err(FVM_ENOMEM, "checking %llu extents for rewrites",
			       (unsigned long long)l->n);
	if (!hit)
		return 0;
	*rewrites = 1;
	/* Walk from the last extent back: what a later one covers is dead. */
	for (uint64_t k = l->n; k-- > 0 && !rc;) {
		const struct fvm_extent *e = &l->v[k];
		uint64_t pos = e->first_page, end = e->first_page + e->page_count;
		uint64_t i = cov_lower(&cs, e->block_id, pos);

		uint64_t first_piece = out.n;

		while (pos < end && !rc) {
			const struct cov *c = i < cs.n ? &cs.v[i] : NULL;

			if (c && c->block == e->block_id && c->start < end) {
				if (c->start > pos) {
					struct fvm_extent p = piece(e, pos, c->start, blocks);
					rc = fvm_extlist_push(&out, &p);
				}
				if (c->end > pos)
					pos = c->end < end ? c->end : end;
				i++;
			} else {
				struct fvm_extent p = piece(e, pos, end, blocks);
				rc = fvm_extlist_push(&out, &p);
				pos = end;
			}
		}
		/* keep pieces of one extent in page order after the final reverse */
		for (uint64_t a = first_piece, b = out.n; b > a + 1; a++, b--) {
			struct fvm_extent t = out.v[a];
			out.v[a] = out.v[b - 1];
			out.v[b - 1] = t;
		}
		if (!rc && cov_add(&cs, e->block_id, e->first_page, end))
			rc = fvm_err(FVM_ENOMEM, "resolving rewritten pages");
	}
	free(cs.v);
	if (rc) {
		fvm_extlist_free(&out);
		return rc;
	}
	/* reverse into file order */
	for (uint64_t a = 0, b = out.n; b > a + 1; a++, b--) {
		struct fvm_extent t = out.v[a];
		out.v[a] = out.v[b - 1];
		out.v[b - 1] = t;
	}
	fvm_extlist_free(l);
	*l = out;
	return 0;
}
