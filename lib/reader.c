/*
 * fvm_reader: opening a seekable snapshot (header, footer, index and every
 * record the index lists, all checked before open returns), the listing
 * calls, and the piecewise reads (read_pages, devstate_read). Stream mode
 * opening and loading live in walk.c, fvm_load in load.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc.h"
#include "error.h"
#include "array.h"
#include "reader.h"

/* ------------------------------------------------------------ I/O */

int fvm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *file,
		   const char *what)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(fd, p + done, n - done, (off_t)(off + done));

		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return fvm_err_sys(errno, "%s: reading %s at offset 0x%" PRIx64,
					   file, what, off + done);
		if (k == 0)
			return fvm_err(FVM_ETRUNCATED, "%s: file ends at offset 0x%" PRIx64
				       " inside %s at offset 0x%" PRIx64, file, off + done,
				       what, off);
		done += (size_t)k;
	}
	return 0;
}

int fvm_src_read(struct fvm_src *s, void *buf, size_t n, const char *what)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc;

	if (s->seekable) {
		rc = fvm_pread_full(s->fd, buf, n, s->pos, s->file, what);
		if (!rc)
			s->pos += n;
		return rc;
	}
	while (done < n) {
		ssize_t k = read(s->fd, p + done, n - done);

		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return fvm_err_sys(errno, "%s: reading %s at offset 0x%" PRIx64,
					   s->file, what, s->pos);
		if (k == 0)
			return fvm_err(FVM_ETRUNCATED, "%s: stream ends at offset 0x%" PRIx64
				       " inside %s", s->file, s->pos, what);
		done += (size_t)k;
		s->pos += (uint64_t)k;
	}
	return 0;
}

/* The record CRC (R11) computed piecewise: header bytes 0..3, 8..15, body. */
static uint32_t rec_crc_start(const struct fvm_rechdr *rh)
{
	uint8_t hdr[FVM_RECHDR_SIZE];

	fvm_st32(hdr, rh->type);
	fvm_st32(hdr + 4, 0);
	fvm_st64(hdr + 8, rh->body_len);
	return fvm_crc32c(fvm_crc32c(0, hdr, 4), hdr + 8, 8);
}

#define DEVS_SCRATCH (1u << 20)

int fvm_devs_check(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		   uint8_t head[FVM_DEVS_HEAD], struct fvm_devs_rec *d)
{
	size_t hl = rh->body_len < FVM_DEVS_HEAD ? (size_t)rh->body_len : FVM_DEVS_HEAD;
	uint64_t left = rh->body_len - hl;
	uint32_t crc = rec_crc_start(rh);
	uint8_t *scratch = NULL;
	int rc;

	rc = fvm_src_read(s, head, hl, "DEVS record");
	if (rc)
		return rc;
	crc = fvm_crc32c(crc, head, hl);
	if (left) {
		scratch = malloc(left < DEVS_SCRATCH ? left : DEVS_SCRATCH);
		if (!scratch)
			return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64,
				       s->file, rec_off);
	}
	while (left && !rc) {
		size_t k = left < DEVS_SCRATCH ? (size_t)left : DEVS_SCRATCH;

		rc = fvm_src_read(s, scratch, k, "DEVS record");
		crc = fvm_crc32c(crc, scratch, k);
		left -= k;
	}
	free(scratch);
	if (rc)
		return rc;
	if (crc != rh->crc) /* R11 */
		return fvm_err(FVM_ECHECKSUM, "%s: DEVS record at offset 0x%" PRIx64
			       ": crc 0x%08x, computed 0x%08x", s->file, rec_off, rh->crc, crc);
	/*
	 * The decoder reads only the fixed part and the name, which head holds
	 * (name_len <= 255); body_len is the real one so R41 is checked.
	 */
	return fvm_devs_decode(head, rh->body_len, d,
			       (struct fvm_where){ s->file, rec_off });
}

/* ------------------------------------------------------------ contents */

static uint64_t name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)name[i]) * 0x100000001b3ull;
	return h;
}

int64_t fvm_reader_lookup(const struct fvm_reader *r, const char *name, size_t len)
{
	uint32_t mask = r->hash_cap - 1;

	if (!r->hash_cap)
		return -1;
	for (uint32_t i = (uint32_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
		uint32_t id = r->name_hash[i];

		if (!id)
			return -1;
		if (strlen(r->blocks[id - 1].name) == len &&
		    memcmp(r->blocks[id - 1].name, name, len) == 0)
			return id - 1;
	}
}

static void hash_insert(struct fvm_reader *r, uint32_t id)
{
	const char *name = r->blocks[id].name;
	uint32_t mask = r->hash_cap - 1;
	uint32_t i = (uint32_t)name_hash(name, strlen(name)) & mask;

	while (r->name_hash[i])
		i = (i + 1) & mask;
	r->name_hash[i] = id + 1;
}

/*
 * Keep the table at most half full so probes stay short. Returns 1 when it
 * was rebuilt (every block, the newest included, is in it), else 0.
 */
static int hash_grow(struct fvm_reader *r)
{
	uint32_t cap = r->hash_cap ? r->hash_cap : 64;

	while (cap < 2 * (r->nblocks + 1))
		cap *= 2;
	if (cap == r->hash_cap)
		return 0;
	free(r->name_hash);
	r->name_hash = calloc(cap, sizeof(*r->name_hash));
	if (!r->name_hash) {
		r->hash_cap = 0;
		return FVM_ENOMEM;
	}
	r->hash_cap = cap;
	for (uint32_t id = 0; id < r->nblocks; id++)
		hash_insert(r, id);
	return 1;
}

int fvm_reader_add_block(struct fvm_reader *r, const struct fvm_block_rec *b,
			 uint64_t rec_offset)
{
	struct fvm_rblock *nb;
	int rc;

	if (fvm_reader_lookup(r, b->name, b->name_len) >= 0) /* R24 */
		return fvm_err(FVM_ECORRUPT, "%s: BLCK record at offset 0x%" PRIx64
			       ": block name %s is used twice", r->file, rec_offset, b->name);
	if (r->nblocks >= FVM_MAX_BLOCKS) /* R26 */
		return fvm_err(FVM_ECORRUPT, "%s: BLCK record at offset 0x%" PRIx64
			       ": more than %u blocks", r->file, rec_offset, FVM_MAX_BLOCKS);
	if (r->nblocks == r->blocks_cap) {
		uint32_t cap = r->blocks_cap ? r->blocks_cap * 2 : 8;
		struct fvm_blockdesc *nd;

		nb = realloc(r->blocks, cap * sizeof(*nb));
		if (!nb)
			goto nomem;
		r->blocks = nb;
		nd = realloc(r->desc, cap * sizeof(*nd));
		if (!nd)
			goto nomem;
		r->desc = nd;
		r->blocks_cap = cap;
	}
	nb = &r->blocks[r->nblocks];
	memset(nb, 0, sizeof(*nb));
	nb->name = strdup(b->name);
	if (!nb->name)
		goto nomem;
	nb->length = b->length;
	nb->page_shift = b->page_shift;
	nb->pages = b->length >> b->page_shift;
	nb->rec_offset = rec_offset;
	r->desc[r->nblocks] = (struct fvm_blockdesc){ nb->pages, nb->page_shift };
	r->nblocks++;
	rc = hash_grow(r);
	if (rc < 0) {
		r->nblocks--;
		free(nb->name);
		goto nomem;
	}
	if (rc == 0)
		hash_insert(r, r->nblocks - 1);
	return 0;
nomem:
	return fvm_err(FVM_ENOMEM, "%s: block %u", r->file, r->nblocks);
}

int fvm_reader_add_meta(struct fvm_reader *r, const struct fvm_meta_rec *m,
			uint64_t rec_offset)
{
	struct fvm_rmeta *e;

	if (r->nmeta == UINT32_MAX)
		return fvm_err(FVM_ECORRUPT, "%s: too many META records", r->file);
	if (fvm_grow((void **)&r->meta, &r->meta_cap, (size_t)r->nmeta + 1, sizeof(*r->meta)))
		return fvm_err(FVM_ENOMEM, "%s: META record at offset 0x%" PRIx64, r->file,
			       rec_offset);
	e = &r->meta[r->nmeta];
	e->key = strndup(m->key, m->key_len);
	e->value = strndup(m->value, m->value_len);
	e->rec_offset = rec_offset;
	if (!e->key || !e->value) {
		free(e->key);
		free(e->value);
		return fvm_err(FVM_ENOMEM, "%s: META record at offset 0x%" PRIx64, r->file,
			       rec_offset);
	}
	r->nmeta++;
	return 0;
}

int fvm_reader_add_devs(struct fvm_reader *r, const struct fvm_devs_rec *d,
			uint64_t data_offset, uint64_t rec_offset, uint8_t *body)
{
	struct fvm_rdevs *e;

	if (r->ndevs == UINT32_MAX)
		return fvm_err(FVM_ECORRUPT, "%s: too many DEVS records", r->file);
	if (fvm_grow((void **)&r->devs, &r->devs_cap, (size_t)r->ndevs + 1, sizeof(*r->devs)))
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64, r->file,
			       rec_offset);
	e = &r->devs[r->ndevs];
	e->name = strndup(d->name, d->name_len);
	if (!e->name)
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64, r->file,
			       rec_offset);
	e->size = d->data_len;
	e->data_offset = data_offset;
	e->rec_offset = rec_offset;
	e->body = body;
	e->data = body ? d->data : NULL;
	r->ndevs++;
	return 0;
}

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

int fvm_reader_set_index(struct fvm_reader *r, struct fvm_extent *ext, uint64_t n)
{
	uint64_t *order = malloc((n ? n : 1) * sizeof(*order));

	if (!order) {
		free(ext);
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", r->file, n);
	}
	free(r->ext);
	free(r->by_block);
	r->ext = ext;
	r->next = n;
	r->by_block = order;
	r->payload_bytes = r->data_pages = r->zero_pages = r->data_runs = r->zero_runs = 0;
	for (uint32_t b = 0; b < r->nblocks; b++) {
		struct fvm_rblock *bl = &r->blocks[b];

		bl->data_pages = bl->zero_pages = bl->data_runs = bl->zero_runs = 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct fvm_rblock *bl = &r->blocks[ext[i].block_id];

		order[i] = i;
		if (ext[i].flags & FVM_RUN_FLAG_DATA) {
			bl->data_pages += ext[i].page_count;
			bl->data_runs++;
			r->payload_bytes += ext[i].page_count << bl->page_shift;
		} else {
			bl->zero_pages += ext[i].page_count;
			bl->zero_runs++;
		}
	}
	for (uint32_t b = 0; b < r->nblocks; b++) {
		r->data_pages += r->blocks[b].data_pages;
		r->zero_pages += r->blocks[b].zero_pages;
		r->data_runs += r->blocks[b].data_runs;
		r->zero_runs += r->blocks[b].zero_runs;
	}
	sort_ext = ext;
	qsort(order, n, sizeof(*order), by_block_cmp);
	r->have_index = 1;
	return 0;
}

/* ------------------------------------------------------------ open */

#define AT "%s: %s at offset 0x%" PRIx64

/* Read the record header at off for a record the index lists as type. */
static int listed_rechdr(struct fvm_reader *r, uint64_t off, uint64_t prev, uint32_t type,
			 struct fvm_rechdr *rh)
{
	uint8_t hb[FVM_RECHDR_SIZE];
	struct fvm_where w = { r->file, off };
	int rc;

	if (off % 8 || off < FVM_HEADER_SIZE || (prev && off <= prev) ||
	    off > r->index_offset || r->index_offset - off < FVM_RECHDR_SIZE) /* R61 */
		return fvm_err(FVM_ECORRUPT, AT ": the index lists a %s at offset 0x%"
			       PRIx64 " (unaligned, out of order or not before the index)",
			       r->file, "INDX record", r->index_offset, fvm_rec_name(type), off);
	rc = fvm_pread_full(r->fd, hb, sizeof(hb), off, r->file, fvm_rec_name(type));
	if (rc)
		return rc;
	rc = fvm_rechdr_decode(hb, rh, r->index_offset, w);
	if (rc)
		return rc;
	if (rh->type != type) /* R61 */
		return fvm_err(FVM_ECORRUPT, AT ": the index lists a %s here, found a %s",
			       r->file, "record", off, fvm_rec_name(type), fvm_rec_name(rh->type));
	return 0;
}

/* Read and CRC-check a whole (small) body: BLCK, META. */
static int listed_body(struct fvm_reader *r, uint64_t off, const struct fvm_rechdr *rh,
		       uint8_t **body)
{
	int rc;

	*body = malloc(rh->body_len ? rh->body_len : 1);
	if (!*body)
		return fvm_err(FVM_ENOMEM, AT ": body of %" PRIu64 " bytes", r->file,
			       fvm_rec_name(rh->type), off, rh->body_len);
	rc = fvm_pread_full(r->fd, *body, rh->body_len, off + FVM_RECHDR_SIZE, r->file,
			    fvm_rec_name(rh->type));
	if (!rc)
		rc = fvm_rechdr_check_crc(rh, *body, (struct fvm_where){ r->file, off });
	if (rc) {
		free(*body);
		*body = NULL;
	}
	return rc;
}

/* Decode one BLCK or META body (the i-th of its list) and add it. */
static int add_record(struct fvm_reader *r, uint32_t type, uint32_t i, const uint8_t *body,
		      uint64_t len, uint64_t off)
{
	struct fvm_where w = { r->file, off };
	struct fvm_block_rec b;
	struct fvm_meta_rec m;
	int rc;

	if (type == FVM_REC_BLCK) {
		rc = fvm_block_decode(body, len, i, &b, w);
		return rc ? rc : fvm_reader_add_block(r, &b, off);
	}
	rc = fvm_meta_decode(body, len, &m, w);
	return rc ? rc : fvm_reader_add_meta(r, &m, off);
}

/* The BLCK or META records the index lists, in file order, each read whole. */
static int open_records(struct fvm_reader *r, const uint8_t *list, uint32_t n, uint32_t type)
{
	struct fvm_rechdr rh;
	uint64_t prev = 0;
	uint8_t *body;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = fvm_ld64(list + 8 * (size_t)i);

		rc = listed_rechdr(r, off, prev, type, &rh);
		if (!rc)
			rc = listed_body(r, off, &rh, &body);
		if (rc)
			return rc;
		rc = add_record(r, type, i, body, rh.body_len, off);
		free(body);
		if (rc)
			return rc;
		prev = off;
	}
	return 0;
}

static int open_devs(struct fvm_reader *r, const uint8_t *list, uint32_t n)
{
	uint8_t head[FVM_DEVS_HEAD];
	struct fvm_devs_rec d;
	struct fvm_rechdr rh;
	uint64_t prev = 0;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = fvm_ld64(list + 8 * (size_t)i);
		struct fvm_src s = { r->fd, 1, off + FVM_RECHDR_SIZE, r->file };

		rc = listed_rechdr(r, off, prev, FVM_REC_DEVS, &rh);
		if (!rc)
			rc = fvm_devs_check(&s, off, &rh, head, &d);
		if (!rc)
			rc = fvm_reader_add_devs(r, &d, off + FVM_RECHDR_SIZE + FVM_DEVS_FIXED +
						 d.name_len, off, NULL);
		if (rc)
			return rc;
		prev = off;
	}
	return 0;
}

static int open_extents(struct fvm_reader *r, const uint8_t *list, uint64_t n)
{
	struct fvm_where w = { r->file, r->index_offset };
	struct fvm_extent *ext;
	int rc = 0;

	/* n <= body_len / 40 (R60), and the body was read: the size is sane */
	ext = malloc((n ? n : 1) * sizeof(*ext));
	if (!ext)
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", r->file, n);
	for (uint64_t i = 0; i < n && !rc; i++)
		rc = fvm_extent_decode(list + FVM_EXTENT_SIZE * i, &ext[i], r->desc,
				       r->nblocks, r->with_crc, r->index_offset, i, w);
	if (!rc)
		rc = fvm_extents_check_overlap(ext, n, r->desc, w);
	if (rc) {
		free(ext);
		return rc;
	}
	return fvm_reader_set_index(r, ext, n);
}

/*
 * FORMAT.md 6.1: a file whose size was rounded up (a FUSE or NBD export,
 * a block device) ends with zero padding after its footer. Without the
 * footer magic in the last 32 bytes, look for the last 8-aligned footer in
 * the last FVM_MAX_TAIL_PAD bytes whose magic matches and after which every
 * byte is zero; the file then ends, logically, after that footer.
 */
#define FVM_MAX_TAIL_PAD 65536u

static int find_padded_end(struct fvm_reader *r)
{
	uint64_t span = r->file_size < FVM_MAX_TAIL_PAD + FVM_FOOTER_SIZE ?
			r->file_size : FVM_MAX_TAIL_PAD + FVM_FOOTER_SIZE;
	uint64_t base = r->file_size - span;
	uint8_t *t = malloc(span);
	uint64_t end;
	int rc;

	if (!t)
		return fvm_err(FVM_ENOMEM, "%s: footer search", r->file);
	rc = fvm_pread_full(r->fd, t, span, base, r->file, "file tail");
	if (rc) {
		free(t);
		return rc;
	}
	/* end: where the zero tail begins, rounded up to the footer alignment */
	for (end = span; end > 0 && t[end - 1] == 0; end--)
		;
	end = fvm_align(base + end, 8) - base;
	if (end >= FVM_FOOTER_SIZE && end <= span && base + end >= FVM_HEADER_SIZE + FVM_FOOTER_SIZE &&
	    memcmp(t + end - 4, FVM_FOOTER_MAGIC, 4) == 0)
		r->file_size = base + end;
	free(t);
	return 0;
}

static int open_seekable(struct fvm_reader *r)
{
	uint8_t hb[FVM_HEADER_SIZE], fb[FVM_FOOTER_SIZE], rb[FVM_RECHDR_SIZE];
	struct fvm_indexhdr ih;
	struct fvm_footer f;
	struct fvm_rechdr rh;
	uint8_t *ib, *p;
	int rc;

	if (r->file_size < FVM_HEADER_SIZE + FVM_FOOTER_SIZE)
		return fvm_err(FVM_ETRUNCATED, "%s: %" PRIu64 " bytes, too short for a file "
			       "header and a footer", r->file, r->file_size);
	rc = fvm_pread_full(r->fd, hb, sizeof(hb), 0, r->file, "file header");
	if (!rc)
		rc = fvm_header_decode(hb, &r->hdr, r->file);
	if (rc)
		return rc;
	r->with_crc = !!(r->hdr.incompat & FVM_INCOMPAT_PAYLOAD_CRC);
	rc = fvm_pread_full(r->fd, fb, sizeof(fb), r->file_size - FVM_FOOTER_SIZE, r->file,
			    "footer");
	if (!rc && memcmp(fb + 28, FVM_FOOTER_MAGIC, 4) != 0) {
		uint64_t real = r->file_size;

		rc = find_padded_end(r);
		if (!rc && r->file_size != real)
			rc = fvm_pread_full(r->fd, fb, sizeof(fb), r->file_size - FVM_FOOTER_SIZE,
					    r->file, "footer");
	}
	if (!rc)
		rc = fvm_footer_decode(fb, &f, r->file_size, r->file);
	if (rc)
		return rc;
	r->index_offset = f.index_offset;
	rc = fvm_pread_full(r->fd, rb, sizeof(rb), f.index_offset, r->file, "INDX record");
	if (!rc)
		rc = fvm_rechdr_decode(rb, &rh, r->file_size - FVM_FOOTER_SIZE,
				       (struct fvm_where){ r->file, f.index_offset });
	if (rc)
		return rc;
	if (rh.type != FVM_REC_INDX)
		return fvm_err(FVM_ECORRUPT, AT ": the footer points at a %s, not the index",
			       r->file, "record", f.index_offset, fvm_rec_name(rh.type));
	if (FVM_RECHDR_SIZE + rh.body_len != f.index_len) /* R71 */
		return fvm_err(FVM_ECORRUPT, AT ": body_len %" PRIu64 " disagrees with the "
			       "footer's index_len %" PRIu64, r->file, "INDX record",
			       f.index_offset, rh.body_len, f.index_len);
	rc = listed_body(r, f.index_offset, &rh, &ib);
	if (rc)
		return rc;
	rc = fvm_indexhdr_decode(ib, rh.body_len, &ih,
				 (struct fvm_where){ r->file, f.index_offset });
	p = ib + FVM_INDEXHDR_SIZE;
	if (!rc)
		rc = open_records(r, p, ih.block_count, FVM_REC_BLCK);
	p += 8 * (size_t)ih.block_count;
	if (!rc)
		rc = open_records(r, p, ih.meta_count, FVM_REC_META);
	p += 8 * (size_t)ih.meta_count;
	if (!rc)
		rc = open_devs(r, p, ih.devstate_count);
	p += 8 * (size_t)ih.devstate_count;
	if (!rc)
		rc = open_extents(r, p, ih.extent_count);
	free(ib);
	return rc;
}

static int reader_new(struct fvm_reader **out, int fd, const char *name)
{
	struct fvm_reader *r = calloc(1, sizeof(*r));
	char buf[32];

	if (!r)
		return fvm_err(FVM_ENOMEM, "%s: reader", name ? name : "snapshot");
	if (!name) {
		snprintf(buf, sizeof(buf), "fd %d", fd);
		name = buf;
	}
	r->file = strdup(name);
	if (!r->file) {
		free(r);
		return fvm_err(FVM_ENOMEM, "%s: reader", name);
	}
	r->fd = fd;
	*out = r;
	return 0;
}

/* Size of a seekable fd: regular files by fstat, block devices by lseek. */
static int seek_size(int fd, uint64_t *size, int *seekable)
{
	struct stat st;
	off_t end;

	*seekable = 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		*seekable = 1;
		return 0;
	}
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode))
		return 0;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return errno == ESPIPE ? 0 : -errno;
	*size = (uint64_t)end;
	*seekable = 1;
	return 0;
}

static int open_common(struct fvm_reader *r)
{
	int seekable, e;

	e = seek_size(r->fd, &r->file_size, &seekable);
	if (e)
		return fvm_err_sys(-e, "%s: fstat", r->file);
	if (!seekable) {
		r->streamed = 1;
		r->file_size = 0;
		return fvm_stream_open(r);
	}
	return open_seekable(r);
}

/*
 * Wrap fd in a reader and open it: as a stream when asked, else by what the
 * fd turns out to be. With path, fd is ours: closed on failure or by free.
 */
static int open_with(fvm_reader **out, int fd, const char *name, const char *path,
		     int stream)
{
	struct fvm_reader *r = NULL;
	int rc = reader_new(&r, fd, name);

	if (rc) {
		if (path)
			close(fd);
		return rc;
	}
	if (path) {
		r->own_fd = 1;
		r->path = strdup(path);
		if (!r->path)
			rc = fvm_err(FVM_ENOMEM, "%s: reader", path);
	}
	if (!rc && stream) {
		r->streamed = 1;
		rc = fvm_stream_open(r);
	} else if (!rc) {
		rc = open_common(r);
	}
	if (rc) {
		fvm_reader_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int fvm_reader_open(fvm_reader **out, const char *path)
{
	int fd;

	if (!out || !path)
		return fvm_err(FVM_EINVAL, "fvm_reader_open: NULL argument");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fvm_err_sys(errno, "%s: open", path);
	return open_with(out, fd, path, path, 0);
}

int fvm_reader_open_fd(fvm_reader **out, int fd, const char *name)
{
	if (!out || fd < 0)
		return fvm_err(FVM_EINVAL, "fvm_reader_open_fd: bad argument");
	*out = NULL;
	return open_with(out, fd, name, NULL, 0);
}

int fvm_reader_open_stream(fvm_reader **out, int fd, const char *name)
{
	if (!out || fd < 0)
		return fvm_err(FVM_EINVAL, "fvm_reader_open_stream: bad argument");
	*out = NULL;
	return open_with(out, fd, name, NULL, 1);
}

void fvm_reader_free(fvm_reader *r)
{
	if (!r)
		return;
	fvm_walk_free(r->walk);
	for (uint32_t i = 0; i < r->nblocks; i++)
		free(r->blocks[i].name);
	for (uint32_t i = 0; i < r->nmeta; i++) {
		free(r->meta[i].key);
		free(r->meta[i].value);
	}
	for (uint32_t i = 0; i < r->ndevs; i++) {
		free(r->devs[i].name);
		free(r->devs[i].body);
	}
	free(r->blocks);
	free(r->desc);
	free(r->name_hash);
	free(r->meta);
	free(r->devs);
	free(r->ext);
	free(r->by_block);
	if (r->own_fd)
		close(r->fd);
	free(r->file);
	free(r->path);
	free(r);
}

/* ------------------------------------------------------------ listing */

int fvm_reader_info(const fvm_reader *r, fvm_file_info *info)
{
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_info: NULL argument");
	memset(info, 0, sizeof(*info));
	info->version_major = r->hdr.major;
	info->version_minor = r->hdr.minor;
	info->incompat_features = r->hdr.incompat;
	info->compat_features = r->hdr.compat;
	info->file_size = r->streamed ? 0 : r->file_size;
	info->payload_bytes = r->payload_bytes;
	info->data_pages = r->data_pages;
	info->zero_pages = r->zero_pages;
	info->data_runs = r->data_runs;
	info->zero_runs = r->zero_runs;
	info->block_count = r->nblocks;
	info->devstate_count = r->ndevs;
	info->meta_count = r->nmeta;
	info->streamed = r->streamed;
	return 0;
}

int fvm_reader_block(const fvm_reader *r, uint32_t i, fvm_block_info *info)
{
	const struct fvm_rblock *b;

	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_block: NULL argument");
	if (i >= r->nblocks)
		return fvm_err(FVM_ENOTFOUND, "%s: no block %u (%u blocks)", r->file, i,
			       r->nblocks);
	b = &r->blocks[i];
	info->name = b->name;
	info->length = b->length;
	info->page_size = 1ull << b->page_shift;
	info->data_pages = b->data_pages;
	info->zero_pages = b->zero_pages;
	info->data_runs = b->data_runs;
	info->zero_runs = b->zero_runs;
	return 0;
}

int fvm_reader_find_block(const fvm_reader *r, const char *name, uint32_t *block_id)
{
	int64_t id;

	if (!r || !name)
		return fvm_err(FVM_EINVAL, "fvm_reader_find_block: NULL argument");
	id = fvm_reader_lookup(r, name, strlen(name));
	if (id < 0)
		return fvm_err(FVM_ENOTFOUND, "%s: no block named %s", r->file, name);
	if (block_id)
		*block_id = (uint32_t)id;
	return 0;
}

uint64_t fvm_reader_run_count(const fvm_reader *r)
{
	return r && r->have_index ? r->next : 0;
}

int fvm_reader_run(const fvm_reader *r, uint64_t i, fvm_run_info *run)
{
	const struct fvm_extent *e;

	if (!r || !run)
		return fvm_err(FVM_EINVAL, "fvm_reader_run: NULL argument");
	if (!r->have_index)
		return fvm_err(FVM_ESTATE, "%s: runs of a stream are listed after "
			       "fvm_load()", r->file);
	if (i >= r->next)
		return fvm_err(FVM_ENOTFOUND, "%s: no run %" PRIu64 " (%" PRIu64 " runs)",
			       r->file, i, r->next);
	e = &r->ext[i];
	run->block_id = e->block_id;
	run->kind = e->flags & FVM_RUN_FLAG_DATA ? FVM_RUN_DATA : FVM_RUN_ZERO;
	run->first_page = e->first_page;
	run->page_count = e->page_count;
	run->file_offset = e->payload_offset;
	return 0;
}

int fvm_reader_meta(const fvm_reader *r, uint32_t i, const char **key,
		    const char **value)
{
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_reader_meta: NULL argument");
	if (i >= r->nmeta)
		return fvm_err(FVM_ENOTFOUND, "%s: no metadata entry %u (%u entries)",
			       r->file, i, r->nmeta);
	if (key)
		*key = r->meta[i].key;
	if (value)
		*value = r->meta[i].value;
	return 0;
}

const char *fvm_reader_meta_get(const fvm_reader *r, const char *key)
{
	if (!r || !key)
		return NULL;
	/* a later record with the same key replaces the value (FORMAT.md 4.2) */
	for (uint32_t i = r->nmeta; i-- > 0;)
		if (strcmp(r->meta[i].key, key) == 0)
			return r->meta[i].value;
	return NULL;
}

int fvm_reader_devstate(const fvm_reader *r, uint32_t i, fvm_devstate_info *info)
{
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate: NULL argument");
	if (i >= r->ndevs)
		return fvm_err(FVM_ENOTFOUND, "%s: no device-state section %u (%u sections)",
			       r->file, i, r->ndevs);
	info->name = r->devs[i].name;
	info->size = r->devs[i].size;
	info->file_offset = r->devs[i].data_offset;
	return 0;
}

/* ------------------------------------------------------------ piecewise reads */

int fvm_reader_devstate_read(fvm_reader *r, uint32_t i, void *buf, size_t buf_len)
{
	const struct fvm_rdevs *d;
	uint8_t hb[FVM_RECHDR_SIZE], head[FVM_DEVS_HEAD];
	struct fvm_rechdr rh;
	size_t hl;
	uint32_t crc;
	int rc;

	if (!r || (!buf && buf_len))
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate_read: NULL argument");
	if (i >= r->ndevs)
		return fvm_err(FVM_ENOTFOUND, "%s: no device-state section %u (%u sections)",
			       r->file, i, r->ndevs);
	d = &r->devs[i];
	if (buf_len < d->size)
		return fvm_err(FVM_EINVAL, "%s: device-state section %s holds %" PRIu64
			       " bytes, buffer has %zu", r->file, d->name, d->size, buf_len);
	if (r->streamed) {
		if (d->size)
			memcpy(buf, d->data, d->size);
		return 0;
	}
	/* read again and check again: the file may have changed since open */
	rc = fvm_pread_full(r->fd, hb, sizeof(hb), d->rec_offset, r->file, "DEVS record");
	if (!rc)
		rc = fvm_rechdr_decode(hb, &rh, r->index_offset,
				       (struct fvm_where){ r->file, d->rec_offset });
	if (rc)
		return rc;
	hl = FVM_DEVS_FIXED + strlen(d->name);
	if (rh.type != FVM_REC_DEVS || rh.body_len != hl + d->size)
		return fvm_err(FVM_ECORRUPT, AT ": record changed since the file was opened",
			       r->file, "DEVS record", d->rec_offset);
	rc = fvm_pread_full(r->fd, head, hl, d->rec_offset + FVM_RECHDR_SIZE, r->file,
			    "DEVS record");
	if (!rc)
		rc = fvm_pread_full(r->fd, buf, d->size, d->data_offset, r->file,
				    "DEVS record");
	if (rc)
		return rc;
	crc = fvm_crc32c(rec_crc_start(&rh), head, hl);
	crc = fvm_crc32c(crc, buf, d->size);
	if (crc != rh.crc) /* R11 */
		return fvm_err(FVM_ECHECKSUM, AT ": crc 0x%08x, computed 0x%08x", r->file,
			       "DEVS record", d->rec_offset, rh.crc, crc);
	return 0;
}

/* First extent of block b (in by_block order) whose pages reach past page. */
static uint64_t first_ext(const struct fvm_reader *r, uint32_t b, uint64_t page)
{
	uint64_t lo = 0, hi = r->next;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct fvm_extent *e = &r->ext[r->by_block[mid]];

		if (e->block_id < b || (e->block_id == b && e->first_page + e->page_count <= page))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define CRC_BATCH 4096 /* chunk CRCs read at once: 16 MiB of payload */

/* Read bytes of an extent's payload starting skip bytes in, checking CRCs. */
static int read_data(struct fvm_reader *r, const struct fvm_extent *e, uint64_t skip,
		     uint64_t bytes, uint8_t *dst)
{
	const struct fvm_rblock *b = &r->blocks[e->block_id];
	int rc;

	while (bytes) {
		uint64_t k = bytes < (uint64_t)CRC_BATCH * FVM_CHUNK ? bytes
			     : (uint64_t)CRC_BATCH * FVM_CHUNK;
		uint64_t off = e->payload_offset + skip;

		rc = fvm_pread_full(r->fd, dst, k, off, r->file, "payload");
		if (rc)
			return rc;
		if (r->with_crc) {
			uint8_t raw[CRC_BATCH * 4];
			uint64_t n = k / FVM_CHUNK;

			rc = fvm_pread_full(r->fd, raw, n * 4, e->crc_offset + skip / FVM_CHUNK * 4,
					    r->file, "chunk CRCs");
			if (rc)
				return rc;
			for (uint64_t c = 0; c < n; c++) {
				if (fvm_crc32c(0, dst + c * FVM_CHUNK, FVM_CHUNK) !=
				    fvm_ld32(raw + 4 * c))
					return fvm_err(FVM_ECHECKSUM, "%s: block %s page %" PRIu64
						       ": payload crc mismatch at file offset 0x%"
						       PRIx64, r->file, b->name, e->first_page +
						       ((skip + c * FVM_CHUNK) >> b->page_shift),
						       off + c * FVM_CHUNK);
			}
		}
		skip += k;
		dst += k;
		bytes -= k;
	}
	return 0;
}

int fvm_reader_read_pages(fvm_reader *r, uint32_t block_id, uint64_t first_page,
			  uint64_t count, void *buf)
{
	const struct fvm_rblock *b;
	uint64_t page, end;
	uint8_t *out = buf;
	int rc;

	if (!r || (!buf && count))
		return fvm_err(FVM_EINVAL, "fvm_reader_read_pages: NULL argument");
	if (r->streamed)
		return fvm_err(FVM_ESTATE, "%s: pages of a stream cannot be read again",
			       r->file);
	if (block_id >= r->nblocks)
		return fvm_err(FVM_ENOTFOUND, "%s: no block %u (%u blocks)", r->file,
			       block_id, r->nblocks);
	b = &r->blocks[block_id];
	if (first_page > b->pages || count > b->pages - first_page)
		return fvm_err(FVM_ERANGE, "%s: pages %" PRIu64 "+%" PRIu64 " outside block "
			       "%s of %" PRIu64 " pages", r->file, first_page, count, b->name,
			       b->pages);
	page = first_page;
	end = first_page + count;
	for (uint64_t i = first_ext(r, block_id, page); i < r->next && page < end; i++) {
		const struct fvm_extent *e = &r->ext[r->by_block[i]];
		uint64_t s, t;

		if (e->block_id != block_id || e->first_page >= end)
			break;
		s = e->first_page > page ? e->first_page : page;
		t = e->first_page + e->page_count < end ? e->first_page + e->page_count : end;
		if (s > page) /* absent pages read as zero */
			memset(out + ((page - first_page) << b->page_shift), 0,
			       (s - page) << b->page_shift);
		if (e->flags & FVM_RUN_FLAG_DATA)
			rc = read_data(r, e, (s - e->first_page) << b->page_shift,
				       (t - s) << b->page_shift,
				       out + ((s - first_page) << b->page_shift));
		else
			rc = (memset(out + ((s - first_page) << b->page_shift), 0,
				     (t - s) << b->page_shift), 0);
		if (rc)
			return rc;
		page = t;
	}
	if (page < end)
		memset(out + ((page - first_page) << b->page_shift), 0,
		       (end - page) << b->page_shift);
	return 0;
}
