/*
 * The snapshot model (model.h): blocks with a name hash, metadata,
 * device-state sections joined from their parts, and the index with the
 * per-block counters and a (block, page) order for piecewise reads.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "error.h"
#include "model.h"

/* ------------------------------------------------------------ blocks */

static uint64_t name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 0x100000001b3ull;
	return h;
}

int64_t fvm_model_lookup(const struct fvm_model *m, const char *name, size_t len)
{
	uint32_t mask = m->hash_cap - 1;

	if (!m->hash_cap)
		return -1;
	for (uint32_t i = (uint32_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
		uint32_t id = m->name_hash[i];

		if (!id)
			return -1;
		if (strlen(m->blocks[id - 1].name) == len &&
		    memcmp(m->blocks[id - 1].name, name, len) == 0)
			return id - 1;
	}
}

static void hash_insert(struct fvm_model *m, uint32_t id)
{
	const char *name = m->blocks[id].name;
	uint32_t mask = m->hash_cap - 1;
	uint32_t i = (uint32_t)name_hash(name, strlen(name)) & mask;

	while (m->name_hash[i])
		i = (i + 1) & mask;
	m->name_hash[i] = id + 1;
}

/*
 * Keep the table at most half full so probes stay short. Returns 1 when it
 * was rebuilt (every block, the newest included, is in it), else 0.
 */
static int hash_grow(struct fvm_model *m)
{
	uint32_t cap = m->hash_cap ? m->hash_cap : 64;

	while (cap < 2 * (m->nblocks + 1))
		cap *= 2;
	if (cap == m->hash_cap)
		return 0;
	free(m->name_hash);
	m->name_hash = calloc(cap, sizeof(*m->name_hash));
	if (!m->name_hash) {
		m->hash_cap = 0;
		return FVM_ENOMEM;
	}
	m->hash_cap = cap;
	for (uint32_t id = 0; id < m->nblocks; id++)
		hash_insert(m, id);
	return 1;
}

int fvm_model_add_block(struct fvm_model *m, const struct fvm_block_rec *b,
			uint64_t rec_offset)
{
	struct fvm_rblock *nb;
	int rc;

	if (fvm_model_lookup(m, b->name, b->name_len) >= 0) /* R24 */
		return fvm_err(FVM_ECORRUPT, "%s: BLCK record at offset 0x%" PRIx64
			       ": block name %s is used twice", m->file, rec_offset, b->name);
	if (m->nblocks >= FVM_MAX_BLOCKS) /* R26 */
		return fvm_err(FVM_ECORRUPT, "%s: BLCK record at offset 0x%" PRIx64
			       ": more than %u blocks", m->file, rec_offset, FVM_MAX_BLOCKS);
	if (m->nblocks == m->blocks_cap) {
		uint32_t cap = m->blocks_cap ? m->blocks_cap * 2 : 8;
		struct fvm_blockdesc *nd;

		nb = realloc(m->blocks, cap * sizeof(*nb));
		if (!nb)
			goto nomem;
		m->blocks = nb;
		nd = realloc(m->desc, cap * sizeof(*nd));
		if (!nd)
			goto nomem;
		m->desc = nd;
		m->blocks_cap = cap;
	}
	nb = &m->blocks[m->nblocks];
	memset(nb, 0, sizeof(*nb));
	nb->name = strdup(b->name);
	if (!nb->name)
		goto nomem;
	nb->length = b->length;
	nb->page_shift = b->page_shift;
	nb->pages = b->length >> b->page_shift;
	nb->rec_offset = rec_offset;
	m->desc[m->nblocks] = (struct fvm_blockdesc){ nb->pages, nb->page_shift };
	m->nblocks++;
	rc = hash_grow(m);
	if (rc < 0) {
		m->nblocks--;
		free(nb->name);
		goto nomem;
	}
	if (rc == 0)
		hash_insert(m, m->nblocks - 1);
	return 0;
nomem:
	return fvm_err(FVM_ENOMEM, "%s: block %u", m->file, m->nblocks);
}

/* ------------------------------------------------------------ metadata */

int fvm_model_add_meta(struct fvm_model *m, const struct fvm_meta_rec *r,
		       uint64_t rec_offset)
{
	struct fvm_rmeta *e;

	if (m->nmeta == UINT32_MAX)
		return fvm_err(FVM_ECORRUPT, "%s: too many META records", m->file);
	if (fvm_grow((void **)&m->meta, &m->meta_cap, (size_t)m->nmeta + 1, sizeof(*m->meta)))
		return fvm_err(FVM_ENOMEM, "%s: META record at offset 0x%" PRIx64, m->file,
			       rec_offset);
	e = &m->meta[m->nmeta];
	e->key = strndup(r->key, r->key_len);
	e->value = strndup(r->value, r->value_len);
	e->rec_offset = rec_offset;
	if (!e->key || !e->value) {
		free(e->key);
		free(e->value);
		return fvm_err(FVM_ENOMEM, "%s: META record at offset 0x%" PRIx64, m->file,
			       rec_offset);
	}
	m->nmeta++;
	return 0;
}

/* ------------------------------------------------------------ device state */

int fvm_model_add_part(struct fvm_model *m, const struct fvm_devs_rec *d,
		       uint64_t data_offset, uint64_t rec_offset, uint8_t *body,
		       int given)
{
	struct fvm_where w = { m->file, rec_offset };
	int joins = m->devs_prev.continues;
	struct fvm_rpart *p;
	struct fvm_rsect *s;
	int rc;

	rc = fvm_devs_follows(&m->devs_prev, d, w); /* R43 */
	if (rc)
		return rc;
	if (m->nparts == UINT32_MAX)
		return fvm_err(FVM_ECORRUPT, "%s: too many DEVS records", m->file);
	if (fvm_grow((void **)&m->parts, &m->parts_cap, (size_t)m->nparts + 1,
		     sizeof(*m->parts)) ||
	    fvm_grow((void **)&m->sects, &m->sects_cap, (size_t)m->nsects + 1,
		     sizeof(*m->sects)))
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64, m->file,
			       rec_offset);
	if (!joins) {
		s = &m->sects[m->nsects];
		memset(s, 0, sizeof(*s));
		s->name = strndup(d->name, d->name_len);
		if (!s->name)
			return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64,
				       m->file, rec_offset);
		s->first = m->nparts;
		s->given = given;
		m->nsects++;
	}
	s = &m->sects[m->nsects - 1];
	p = &m->parts[m->nparts++];
	p->rec_offset = rec_offset;
	p->data_offset = data_offset;
	p->size = d->data_len;
	p->sect_offset = s->length;
	p->body = body;
	p->data = body ? d->data : NULL;
	s->length += d->data_len;
	s->nparts++;
	fvm_devs_prev_set(&m->devs_prev, d, rec_offset);
	return 0;
}

int fvm_model_end_parts(const struct fvm_model *m)
{
	return fvm_devs_check_end(&m->devs_prev, m->file); /* R44 */
}

/* ------------------------------------------------------------ index */

/* Extent numbers in (block, first_page) order: read_pages searches them. */
static __thread const struct fvm_extent *sort_ext;

static int by_block_cmp(const void *a, const void *b)
{
	const struct fvm_extent *x = &sort_ext[*(const uint64_t *)a];
	const struct fvm_extent *y = &sort_ext[*(const uint64_t *)b];

	if (x->block_id != y->block_id)
		return x->block_id < y->block_id ? -1 : 1;
	return x->first_page < y->first_page ? -1 : x->first_page > y->first_page;
}

int fvm_model_set_index(struct fvm_model *m, struct fvm_extent *ext, uint64_t n)
{
	uint64_t *order = malloc((n ? n : 1) * sizeof(*order));

	if (!order) {
		free(ext);
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", m->file, n);
	}
	free(m->ext);
	free(m->by_block);
	m->ext = ext;
	m->next = n;
	m->by_block = order;
	m->payload_bytes = m->data_pages = m->zero_pages = m->data_runs = m->zero_runs = 0;
	for (uint32_t b = 0; b < m->nblocks; b++) {
		struct fvm_rblock *bl = &m->blocks[b];

		bl->data_pages = bl->zero_pages = bl->data_runs = bl->zero_runs = 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct fvm_rblock *bl = &m->blocks[ext[i].block_id];

		order[i] = i;
		if (ext[i].flags & FVM_RUN_FLAG_DATA) {
			bl->data_pages += ext[i].page_count;
			bl->data_runs++;
			m->payload_bytes += ext[i].page_count << bl->page_shift;
		} else {
			bl->zero_pages += ext[i].page_count;
			bl->zero_runs++;
		}
	}
	for (uint32_t b = 0; b < m->nblocks; b++) {
		m->data_pages += m->blocks[b].data_pages;
		m->zero_pages += m->blocks[b].zero_pages;
		m->data_runs += m->blocks[b].data_runs;
		m->zero_runs += m->blocks[b].zero_runs;
	}
	sort_ext = ext;
	qsort(order, n, sizeof(*order), by_block_cmp);
	m->have_index = 1;
	return 0;
}

void fvm_model_free(struct fvm_model *m)
{
	for (uint32_t i = 0; i < m->nblocks; i++)
		free(m->blocks[i].name);
	for (uint32_t i = 0; i < m->nmeta; i++) {
		free(m->meta[i].key);
		free(m->meta[i].value);
	}
	for (uint32_t i = 0; i < m->nparts; i++)
		free(m->parts[i].body);
	for (uint32_t i = 0; i < m->nsects; i++)
		free(m->sects[i].name);
	free(m->blocks);
	free(m->desc);
	free(m->name_hash);
	free(m->meta);
	free(m->parts);
	free(m->sects);
	free(m->frames);
	free(m->ext);
	free(m->by_block);
	free(m->devs_tags);
	if (m->keys) {
		fvm_auth_wipe(m->keys);
		free(m->keys);
	}
	free(m->file);
	memset(m, 0, sizeof(*m));
}

int fvm_model_chunk_error(const struct fvm_model *m, uint32_t block_id, uint64_t page,
			  uint64_t file_off, const char *note)
{
	return fvm_err(m->keys ? FVM_EAUTH : FVM_ECHECKSUM, "%s: block %s page %" PRIu64
		       ": payload %s at file offset 0x%" PRIx64 "%s", m->file,
		       m->blocks[block_id].name, page,
		       m->keys ? "tag does not verify" : "crc mismatch", file_off, note);
}
