/*
 * The stream loader: fvm_load on a stream reader. A client of the walker
 * (walk.h): it tells the walker where each DATA entry's payload goes (read()
 * straight into the caller's memory, no bounce buffer), checks each block's
 * mapping as the stream declares it, hands device state to the caller's
 * callback when there is one, and applies the zero policy at the end.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "load.h"
#include "walk.h"

struct sload {
	struct fvm_reader *r;
	const struct fvm_map **sorted;  /* maps by name */
	size_t n_maps;
	const struct fvm_map **map_of;  /* by block id */
	uint32_t map_cap;
	int partial;
};

static int map_ptr_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct fvm_map *const *)a)->name,
		      (*(const struct fvm_map *const *)b)->name);
}

static const struct fvm_map *find_map(struct sload *s, const char *name)
{
	size_t lo = 0, hi = s->n_maps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->sorted[mid]->name, name);

		if (!c)
			return s->sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A block declared after the load started: find and check its mapping. */
static int sload_block(void *ctx, uint32_t id)
{
	struct sload *s = ctx;
	const struct fvm_rblock *b = &s->r->m.blocks[id];
	const struct fvm_map *m = find_map(s, b->name);

	if (id >= s->map_cap) {
		uint32_t cap = s->map_cap * 2 > id + 1 ? s->map_cap * 2 : id + 1;
		const struct fvm_map **v = realloc(s->map_of, cap * sizeof(*v));

		if (!v)
			return fvm_err(FVM_ENOMEM, "%s: mappings", s->r->m.file);
		s->map_of = v;
		s->map_cap = cap;
	}
	s->map_of[id] = m;
	if (!m && !s->partial)
		return fvm_err(FVM_EMAPPING, "%s: block %s (BLCK record at offset 0x%" PRIx64
			       ") has no mapping", s->r->m.file, b->name, b->rec_offset);
	return m ? fvm_plan_check_map(s->r->m.file, b, m) : 0;
}

static uint8_t *sload_dst(void *ctx, const struct fvm_entry *e)
{
	struct sload *s = ctx;
	const struct fvm_map *m = s->map_of[e->block_id];

	/* R55 held for the entry and the mapping's length is the block's */
	return m ? (uint8_t *)m->addr + (e->first_page << s->r->m.blocks[e->block_id].page_shift)
		 : NULL;
}

static int sload_setup(struct sload *s, const struct fvm_map *maps, size_t n_maps)
{
	struct fvm_model *m = &s->r->m;
	int rc;

	s->map_cap = m->nblocks ? m->nblocks : 1;
	s->map_of = calloc(s->map_cap, sizeof(*s->map_of));
	s->sorted = malloc((n_maps ? n_maps : 1) * sizeof(*s->sorted));
	if (!s->map_of || !s->sorted)
		return fvm_err(FVM_ENOMEM, "%s: mappings", m->file);
	/* blocks declared so far are checked now; later ones as they come */
	rc = fvm_plan_maps(m->file, m->blocks, m->nblocks, maps, n_maps, s->partial, 1,
			   s->map_of);
	if (rc)
		return rc;
	for (size_t i = 0; i < n_maps; i++)
		s->sorted[i] = &maps[i];
	qsort(s->sorted, n_maps, sizeof(*s->sorted), map_ptr_cmp);
	s->n_maps = n_maps;
	for (size_t i = 1; i < n_maps; i++)
		if (!strcmp(s->sorted[i]->name, s->sorted[i - 1]->name))
			return fvm_err(FVM_EMAPPING, "%s: two mappings for block %s", m->file,
				       s->sorted[i]->name);
	return 0;
}

/* After the footer: final mapping check and the zero policy. */
static int sload_finish(struct sload *s, const struct fvm_map *maps, size_t n_maps,
			const struct fvm_load_cfg *o, fvm_load_stats *st)
{
	struct fvm_model *m = &s->r->m;
	struct fvm_plan p = { 0 };
	const struct fvm_map **map_of;
	int zero_extents, rc;

	map_of = calloc(m->nblocks ? m->nblocks : 1, sizeof(*map_of));
	if (!map_of)
		return fvm_err(FVM_ENOMEM, "%s: mappings", m->file);
	rc = fvm_plan_maps(m->file, m->blocks, m->nblocks, maps, n_maps, s->partial, 0, map_of);
	/*
	 * Zero policy over pages without data. LEAVE still clears the pages of
	 * zero extents when pages were rewritten: an earlier copy may have been
	 * written there during the walk.
	 */
	zero_extents = o->zero_policy == FVM_ZERO_LEAVE;
	if (!rc && (!zero_extents || m->rewrites))
		rc = fvm_plan_zero_ranges(&p, m->file, m->blocks, m->nblocks, m->ext, m->next,
					  map_of, zero_extents);
	if (!rc && p.nzero)
		rc = fvm_plan_apply_zero(p.zero, p.nzero,
					 zero_extents ? FVM_ZERO_MEMSET : o->zero_policy);
	if (!rc && !zero_extents)
		st->zero_bytes = p.zero_bytes;
	fvm_plan_free(&p);
	free(map_of);
	return rc;
}

int fvm_stream_load(struct fvm_reader *r, const struct fvm_map *maps, size_t n_maps,
		    const struct fvm_load_cfg *o, fvm_load_stats *st)
{
	struct sload s = { r, NULL, 0, NULL, 0, !!(o->flags & FVM_LOAD_PARTIAL) };
	struct fvm_walk_sink k = {
		.dst = sload_dst, .block = sload_block, .ctx = &s,
		.devstate = o->devstate, .devstate_ctx = o->devstate_ctx,
		.check = !!(o->flags & FVM_LOAD_VERIFY),
		.progress = o->progress, .pctx = o->progress_ctx,
	};
	uint64_t pos0;
	int rc;

	st->backend = FVM_BACKEND_PREAD;
	st->backend_name = "read (stream)";
	st->fallback_reason = "a stream is read sequentially";
	if (r->stream_state != FVM_STREAM_OPEN)
		return fvm_err(FVM_ESTATE, "%s: the stream was already %s", r->m.file,
			       r->stream_state == FVM_STREAM_DONE ? "read to its end"
								  : "abandoned after an error");
	pos0 = r->walk ? fvm_walk_pos(r->walk) : 0;
	rc = sload_setup(&s, maps, n_maps);
	if (!rc && r->walk)
		rc = fvm_walk_rest(r->walk, &k);
	if (!rc)
		rc = sload_finish(&s, maps, n_maps, o, st);
	st->bytes_read = k.bytes;
	st->requests = k.reads;
	st->extents = k.extents;
	free(s.map_of);
	free(s.sorted);
	/* a mapping refused before any byte was consumed can be retried */
	if (rc && (!r->walk || fvm_walk_pos(r->walk) == pos0))
		return rc;
	r->stream_state = rc ? FVM_STREAM_FAILED : FVM_STREAM_DONE;
	fvm_walk_free(r->walk);
	r->walk = NULL;
	return rc;
}
