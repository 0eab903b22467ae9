/*
 * fvm_reader: opening a seekable snapshot (header, footer, index and every
 * record the index lists, all checked before open returns), opening a
 * stream (the walker reads up to the first segment or section), the
 * listing calls, and the piecewise reads (read_pages, device state).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.h"
#include "auth.h"
#include "crc.h"
#include "error.h"
#include "io.h"
#include "reader.h"
#include "unframe.h"
#include "record.h"
#include "walk.h"

#define AT "%s: %s at offset 0x%" PRIx64

/* ------------------------------------------------------------ seekable open */

/* Read the record header at off for a record the index lists as type. */
static int listed_rechdr(struct fvm_reader *r, uint64_t off, uint64_t prev, uint32_t type,
			 struct fvm_rechdr *rh)
{
	struct fvm_model *m = &r->m;
	uint8_t hb[FVM_RECHDR_SIZE];
	int rc;

	rc = fvm_index_check_listed(off, prev, m->index_offset, type,
				    (struct fvm_where){ m->file, m->index_offset }); /* R61 */
	if (!rc)
		rc = fvm_pread_full(r->fd, hb, sizeof(hb), off, m->file, fvm_rec_name(type));
	if (!rc)
		rc = fvm_rechdr_decode(hb, rh, m->index_offset, (struct fvm_where){ m->file, off });
	if (!rc)
		rc = fvm_index_check_type(type, rh->type, (struct fvm_where){ m->file, off });
	return rc;
}

/* Read and CRC-check a whole (small) body: BLCK, META, INDX. */
static int listed_body(struct fvm_reader *r, uint64_t off, const struct fvm_rechdr *rh,
		       uint8_t **body)
{
	const char *file = r->m.file;
	int rc;

	*body = malloc(rh->body_len ? rh->body_len : 1);
	if (!*body)
		return fvm_err(FVM_ENOMEM, AT ": body of %" PRIu64 " bytes", file,
			       fvm_rec_name(rh->type), off, rh->body_len);
	rc = fvm_pread_full(r->fd, *body, rh->body_len, off + FVM_RECHDR_SIZE, file,
			    fvm_rec_name(rh->type));
	if (!rc)
		rc = fvm_rechdr_check_crc(rh, *body, (struct fvm_where){ file, off });
	if (rc) {
		free(*body);
		*body = NULL;
	}
	return rc;
}

/* Decode one BLCK or META body (the i-th of its list) and add it. */
static int add_record(struct fvm_model *m, uint32_t type, uint32_t i, const uint8_t *body,
		      uint64_t len, uint64_t off)
{
	struct fvm_where w = { m->file, off };
	struct fvm_block_rec b;
	struct fvm_meta_rec mr;
	int rc;

	if (type == FVM_REC_BLCK) {
		rc = fvm_block_decode(body, len, i, &b, w);
		return rc ? rc : fvm_model_add_block(m, &b, off);
	}
	rc = fvm_meta_decode(body, len, &mr, w);
	return rc ? rc : fvm_model_add_meta(m, &mr, off);
}

/*
 * The BLCK or META records the index lists, in file order, each read whole;
 * in an AUTHENTICATED file digested as read into out (D_B, D_M of 4.6), so
 * that the MAC is checked over exactly the bytes the model was built from.
 */
static int open_records(struct fvm_reader *r, const uint8_t *list, uint32_t n, uint32_t type,
			uint8_t out[FVM_DIGEST_LEN])
{
	struct fvm_auth_digest d;
	struct fvm_rechdr rh;
	uint64_t prev = 0;
	uint8_t *body;
	/* a build without authentication lists such a file, no digest needed */
	int dig = r->m.auth && fvm_auth_built(), rc = 0;

	if (dig)
		fvm_auth_digest_begin(&d);
	for (uint32_t i = 0; i < n && !rc; i++) {
		uint64_t off = fvm_ld64(list + 8 * (size_t)i);

		rc = listed_rechdr(r, off, prev, type, &rh);
		if (!rc)
			rc = listed_body(r, off, &rh, &body);
		if (rc)
			break;
		rc = add_record(&r->m, type, i, body, rh.body_len, off);
		if (!rc && dig)
			fvm_auth_digest_rec(&d, type, rh.body_len, body, (size_t)rh.body_len);
		free(body);
		prev = off;
	}
	if (dig && rc)
		fvm_auth_digest_drop(&d);
	else if (dig)
		rc = fvm_auth_digest_end(&d, out);
	return rc;
}

/* AUTHENTICATED: the index's authentication area (5.2) and D_I (4.6). */
static int open_auth(struct fvm_reader *r, const uint8_t *ib, uint64_t len,
		     const struct fvm_indexhdr *ih)
{
	struct fvm_model *m = &r->m;
	const uint8_t *a = ib + fvm_index_auth_at(ih);
	struct fvm_auth_digest d;
	size_t nt = (size_t)ih->devstate_count * FVM_TAG_LEN;

	m->auth_key_id = fvm_ld64(a);
	m->devs_tags = malloc(nt ? nt : 1);
	if (!m->devs_tags)
		return fvm_err(FVM_ENOMEM, "%s: %u device-state tags", m->file, ih->devstate_count);
	memcpy(m->devs_tags, a + 8, nt);
	memcpy(m->auth_mac, a + 8 + nt, FVM_MAC_LEN);
	if (!fvm_auth_built()) /* listed only: set_key refuses */
		return 0;
	fvm_auth_digest_begin(&d);
	fvm_auth_digest_rec(&d, FVM_REC_INDX, len, ib, (size_t)(len - FVM_MAC_LEN));
	return fvm_auth_digest_end(&d, m->auth_di);
}

/* The DEVS records: each scanned with its CRC, not kept. */
static int open_devs(struct fvm_reader *r, const uint8_t *list, uint32_t n)
{
	uint8_t head[FVM_DEVS_HEAD];
	struct fvm_devs_rec d;
	struct fvm_rechdr rh;
	uint64_t prev = 0;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = fvm_ld64(list + 8 * (size_t)i);
		struct fvm_src s = { r->fd, 1, off + FVM_RECHDR_SIZE, r->m.file };

		rc = listed_rechdr(r, off, prev, FVM_REC_DEVS, &rh);
		if (!rc)
			rc = fvm_rec_devs_scan(&s, off, &rh, head, &d);
		if (!rc)
			rc = fvm_model_add_part(&r->m, &d, off + FVM_RECHDR_SIZE + FVM_DEVS_FIXED +
						d.name_len, off, NULL, 0);
		if (rc)
			return rc;
		prev = off;
	}
	return fvm_model_end_parts(&r->m); /* R44 */
}

/* COMPRESSED: the frame list (5.1, R80..R84), before the extents need it. */
static int open_frames(struct fvm_reader *r, const uint8_t *list, uint64_t n)
{
	struct fvm_model *m = &r->m;
	struct fvm_where w = { m->file, m->index_offset };
	int rc = 0;

	/* n fits the body that was read (R60): the size is sane */
	m->frames = malloc((n ? n : 1) * sizeof(*m->frames));
	if (!m->frames)
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " frames", m->file, n);
	for (uint64_t k = 0; k < n && !rc; k++) {
		rc = fvm_frame_decode(list + FVM_FRAME_SIZE * k, &m->frames[k],
				      k ? &m->frames[k - 1] : NULL, m->hdr.frame_shift,
				      m->index_offset, k, w);
		m->stored_total += m->frames[k].stored_len;
	}
	m->nframes = n;
	if (n)
		m->plain_total = m->frames[n - 1].plain_offset + m->frames[n - 1].plain_len;
	return rc;
}

static int open_extents(struct fvm_reader *r, const uint8_t *list, uint64_t n)
{
	struct fvm_model *m = &r->m;
	struct fvm_where w = { m->file, m->index_offset };
	struct fvm_extent *ext;
	int rc = 0;

	/* n <= body_len / 40 (R60), and the body was read: the size is sane */
	ext = malloc((n ? n : 1) * sizeof(*ext));
	if (!ext)
		return fvm_err(FVM_ENOMEM, "%s: index of %" PRIu64 " extents", m->file, n);
	for (uint64_t i = 0; i < n && !rc; i++)
		rc = m->compressed
			? fvm_extent_decode_plain(list + FVM_EXTENT_SIZE * i, &ext[i], m->desc,
						  m->nblocks, m->plain_total, i, w)
			: fvm_extent_decode(list + FVM_EXTENT_SIZE * i, &ext[i], m->desc,
					    m->nblocks, m->chk, m->index_offset, i, w);
	if (!rc)
		rc = fvm_extents_check_overlap(ext, n, m->desc, w);
	if (rc) {
		free(ext);
		return rc;
	}
	return fvm_model_set_index(m, ext, n);
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
	struct fvm_model *m = &r->m;
	uint64_t span = m->file_size < FVM_MAX_TAIL_PAD + FVM_FOOTER_SIZE ?
			m->file_size : FVM_MAX_TAIL_PAD + FVM_FOOTER_SIZE;
	uint64_t base = m->file_size - span;
	uint8_t *t = malloc(span);
	uint64_t end;
	int rc;

	if (!t)
		return fvm_err(FVM_ENOMEM, "%s: footer search", m->file);
	rc = fvm_pread_full(r->fd, t, span, base, m->file, "file tail");
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
		m->file_size = base + end;
	free(t);
	return 0;
}

static int read_footer(struct fvm_reader *r, struct fvm_footer *f)
{
	struct fvm_model *m = &r->m;
	uint8_t fb[FVM_FOOTER_SIZE];
	int rc;

	rc = fvm_pread_full(r->fd, fb, sizeof(fb), m->file_size - FVM_FOOTER_SIZE, m->file,
			    "footer");
	if (!rc && memcmp(fb + 28, FVM_FOOTER_MAGIC, 4) != 0) {
		uint64_t real = m->file_size;

		rc = find_padded_end(r);
		if (!rc && m->file_size != real)
			rc = fvm_pread_full(r->fd, fb, sizeof(fb), m->file_size - FVM_FOOTER_SIZE,
					    m->file, "footer");
	}
	return rc ? rc : fvm_footer_decode(fb, f, m->file_size, m->file);
}

static int open_seekable(struct fvm_reader *r)
{
	struct fvm_model *m = &r->m;
	uint8_t hb[FVM_HEADER_SIZE], rb[FVM_RECHDR_SIZE];
	struct fvm_indexhdr ih;
	struct fvm_footer f;
	struct fvm_rechdr rh;
	uint8_t *ib, *p;
	int rc;

	if (m->file_size < FVM_HEADER_SIZE + FVM_FOOTER_SIZE)
		return fvm_err(FVM_ETRUNCATED, "%s: %" PRIu64 " bytes, too short for a file "
			       "header and a footer", m->file, m->file_size);
	rc = fvm_pread_full(r->fd, hb, sizeof(hb), 0, m->file, "file header");
	if (!rc)
		rc = fvm_header_decode(hb, &m->hdr, m->file);
	if (!rc)
		rc = read_footer(r, &f);
	if (rc)
		return rc;
	m->with_crc = !!(m->hdr.incompat & FVM_INCOMPAT_PAYLOAD_CRC);
	m->chk = fvm_chk_bytes(m->hdr.incompat);
	m->compressed = !!(m->hdr.incompat & FVM_INCOMPAT_COMPRESSED);
	m->auth = !!(m->hdr.incompat & FVM_INCOMPAT_AUTH);
	memcpy(m->auth_header, hb, sizeof(hb));
	m->index_offset = f.index_offset;
	rc = fvm_pread_full(r->fd, rb, sizeof(rb), f.index_offset, m->file, "INDX record");
	if (!rc)
		rc = fvm_rechdr_decode(rb, &rh, m->file_size - FVM_FOOTER_SIZE,
				       (struct fvm_where){ m->file, f.index_offset });
	if (rc)
		return rc;
	if (rh.type != FVM_REC_INDX)
		return fvm_err(FVM_ECORRUPT, AT ": the footer points at a %s, not the index",
			       m->file, "record", f.index_offset, fvm_rec_name(rh.type));
	rc = fvm_footer_check_index(&f, f.index_offset, rh.body_len,
				    m->file_size - FVM_FOOTER_SIZE, m->file); /* R71 */
	if (!rc)
		rc = listed_body(r, f.index_offset, &rh, &ib);
	if (rc)
		return rc;
	rc = (m->compressed ? fvm_indexhdr_decode_c
	      : m->auth ? fvm_indexhdr_decode_a : fvm_indexhdr_decode)(ib, rh.body_len, &ih,
				 (struct fvm_where){ m->file, f.index_offset });
	if (!rc && m->compressed)
		rc = open_frames(r, ib + fvm_index_frames_at(&ih) + 8, ih.frame_count);
	if (!rc && m->auth)
		rc = open_auth(r, ib, rh.body_len, &ih);
	p = ib + FVM_INDEXHDR_SIZE;
	if (!rc)
		rc = open_records(r, p, ih.block_count, FVM_REC_BLCK, m->auth_db);
	p += 8 * (size_t)ih.block_count;
	if (!rc)
		rc = open_records(r, p, ih.meta_count, FVM_REC_META, m->auth_dm);
	p += 8 * (size_t)ih.meta_count;
	if (!rc)
		rc = open_devs(r, p, ih.devstate_count);
	p += 8 * (size_t)ih.devstate_count;
	if (!rc)
		rc = open_extents(r, p, ih.extent_count);
	free(ib);
	return rc;
}

int fvm_reader_reopen(const struct fvm_reader *r, int flags)
{
	struct stat a, b;
	char proc[64];
	int fd;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", r->fd);
	fd = open(proc, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0 && r->path)
		fd = open(r->path, O_RDONLY | O_CLOEXEC | flags);
	if (fd < 0)
		return -1;
	/* through a path, make sure it is still the file we opened */
	if (fstat(fd, &a) < 0 || fstat(r->fd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------ stream open */

/* Header and records up to the first SEGM or DEVS; the walk stays paused. */
static int open_stream(struct fvm_reader *r)
{
	struct fvm_walk *w = fvm_walk_new(&r->m, r->fd, 0, 1);
	int rc;

	if (!w)
		return fvm_err(FVM_ENOMEM, "%s: stream reader", r->m.file);
	r->streamed = 1;
	rc = fvm_walk_start(w, 1);
	if (rc) {
		fvm_walk_free(w);
		r->stream_state = FVM_STREAM_FAILED;
		return rc;
	}
	if (fvm_walk_done(w)) {
		/* nothing left to read, but fvm_load still has to check the
		 * mappings and apply the zero policy */
		fvm_walk_free(w);
		w = NULL;
	}
	r->walk = w;
	r->stream_state = FVM_STREAM_OPEN;
	return 0;
}

/* ------------------------------------------------------------ open */

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
	r->m.file = strdup(name);
	if (!r->m.file) {
		free(r);
		return fvm_err(FVM_ENOMEM, "%s: reader", name);
	}
	r->fd = fd;
	pthread_mutex_init(&r->lock, NULL);
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

/* By what the fd turns out to be: a seekable file, else a stream. */
static int open_any(struct fvm_reader *r)
{
	int seekable, e;

	e = seek_size(r->fd, &r->m.file_size, &seekable);
	if (e)
		return fvm_err_sys(-e, "%s: fstat", r->m.file);
	if (!seekable) {
		r->m.file_size = 0;
		return open_stream(r);
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
	if (!rc)
		rc = stream ? open_stream(r) : open_any(r);
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

	fvm_api_begin();
	if (!out || !path)
		return fvm_err(FVM_EINVAL, "fvm_reader_open: NULL argument");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fvm_err_sys(errno, "%s: open", path);
	return fvm_api_end(open_with(out, fd, path, path, 0));
}

int fvm_reader_open_fd(fvm_reader **out, int fd, const char *name)
{
	fvm_api_begin();
	if (!out || fd < 0)
		return fvm_err(FVM_EINVAL, "fvm_reader_open_fd: bad argument");
	*out = NULL;
	return fvm_api_end(open_with(out, fd, name, NULL, 0));
}

int fvm_reader_open_stream(fvm_reader **out, int fd, const char *name)
{
	fvm_api_begin();
	if (!out || fd < 0)
		return fvm_err(FVM_EINVAL, "fvm_reader_open_stream: bad argument");
	*out = NULL;
	return fvm_api_end(open_with(out, fd, name, NULL, 1));
}

static void frame_cache_free(struct fvm_frame_cache *fc)
{
	free(fc->stored);
	free(fc->plain);
	fvm_codec_ctx_free(&fc->cx);
}

void fvm_reader_free(fvm_reader *r)
{
	if (!r)
		return;
	if (r->uffd)
		r->uffd_end(r->uffd); /* installs what is still missing, first */
	fvm_walk_free(r->walk);
	fvm_model_free(&r->m);
	if (r->own_fd)
		close(r->fd);
	free(r->part_buf);
	frame_cache_free(&r->fc);
	pthread_mutex_destroy(&r->lock);
	free(r->path);
	free(r);
}

/* ------------------------------------------------------------ listing */

void fvm_reader_fill_info(const struct fvm_reader *r, fvm_file_info *info)
{
	const struct fvm_model *m = &r->m;

	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	info->version_major = m->hdr.major;
	info->version_minor = m->hdr.minor;
	info->incompat_features = m->hdr.incompat;
	info->compat_features = m->hdr.compat;
	info->file_size = r->streamed ? 0 : m->file_size;
	info->payload_bytes = m->payload_bytes;
	info->data_pages = m->data_pages;
	info->zero_pages = m->zero_pages;
	info->data_runs = m->data_runs;
	info->zero_runs = m->zero_runs;
	info->block_count = m->nblocks;
	info->devstate_count = m->nsects;
	info->meta_count = m->nmeta;
	info->streamed = r->streamed;
	if (m->compressed) {
		info->codec = m->hdr.codec;
		info->level = m->hdr.level;
		info->frame_bytes = 1u << m->hdr.frame_shift;
		info->frame_count = m->nframes;
		info->stored_bytes = m->stored_total;
	}
	info->authenticated = (uint32_t)m->auth;
	info->key_checked = m->keys != NULL;
	info->key_id = m->auth ? m->auth_key_id : 0;
}

FVM_DEFAULT_0_2(fvm_reader_info)(const fvm_reader *r, fvm_file_info *info)
{
	fvm_file_info full;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_info: NULL argument");
	fvm_reader_fill_info(r, &full);
	return fvm_api_end(fvm_abi_out(info, &full, sizeof(full), "fvm_reader_info: info"));
}
FVM_SAME_TYPE(fvm_reader_info);

int fvm_reader_fill_block(const struct fvm_reader *r, uint32_t i, fvm_block_info *info)
{
	const struct fvm_rblock *b;

	if (i >= r->m.nblocks)
		return fvm_err(FVM_ENOTFOUND, "%s: no block %u (%u blocks)", r->m.file, i,
			       r->m.nblocks);
	b = &r->m.blocks[i];
	*info = (fvm_block_info){ sizeof(*info), b->name, b->length, 1ull << b->page_shift,
				  b->data_pages, b->zero_pages, b->data_runs, b->zero_runs };
	return 0;
}

FVM_DEFAULT_0_2(fvm_reader_block)(const fvm_reader *r, uint32_t i, fvm_block_info *info)
{
	fvm_block_info full;
	int rc;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_block: NULL argument");
	rc = fvm_reader_fill_block(r, i, &full);
	if (!rc)
		rc = fvm_abi_out(info, &full, sizeof(full), "fvm_reader_block: info");
	return fvm_api_end(rc);
}
FVM_SAME_TYPE(fvm_reader_block);

int fvm_reader_find_block(const fvm_reader *r, const char *name, uint32_t *block_id)
{
	int64_t id;

	fvm_api_begin();
	if (!r || !name)
		return fvm_err(FVM_EINVAL, "fvm_reader_find_block: NULL argument");
	id = fvm_model_lookup(&r->m, name, strlen(name));
	if (id < 0)
		return fvm_err(FVM_ENOTFOUND, "%s: no block named %s", r->m.file, name);
	if (block_id)
		*block_id = (uint32_t)id;
	return 0;
}

uint64_t fvm_reader_run_count(const fvm_reader *r)
{
	return r && r->m.have_index ? r->m.next : 0;
}

int fvm_reader_fill_run(const struct fvm_reader *r, uint64_t i, fvm_run_info *run)
{
	const struct fvm_extent *e;

	if (!r->m.have_index)
		return fvm_err(FVM_ESTATE, "%s: runs of a stream are listed after "
			       "fvm_load() or fvm_verify()", r->m.file);
	if (i >= r->m.next)
		return fvm_err(FVM_ENOTFOUND, "%s: no run %" PRIu64 " (%" PRIu64 " runs)",
			       r->m.file, i, r->m.next);
	e = &r->m.ext[i];
	*run = (fvm_run_info){ sizeof(*run), e->block_id,
			       e->flags & FVM_RUN_FLAG_DATA ? FVM_RUN_DATA : FVM_RUN_ZERO,
			       e->first_page, e->page_count, e->payload_offset };
	return 0;
}

FVM_DEFAULT_0_2(fvm_reader_run)(const fvm_reader *r, uint64_t i, fvm_run_info *run)
{
	fvm_run_info full;
	int rc;

	fvm_api_begin();
	if (!r || !run)
		return fvm_err(FVM_EINVAL, "fvm_reader_run: NULL argument");
	rc = fvm_reader_fill_run(r, i, &full);
	if (!rc)
		rc = fvm_abi_out(run, &full, sizeof(full), "fvm_reader_run: run");
	return fvm_api_end(rc);
}
FVM_SAME_TYPE(fvm_reader_run);

int fvm_reader_meta(const fvm_reader *r, uint32_t i, const char **key,
		    const char **value)
{
	fvm_api_begin();
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_reader_meta: NULL argument");
	if (i >= r->m.nmeta)
		return fvm_err(FVM_ENOTFOUND, "%s: no metadata entry %u (%u entries)",
			       r->m.file, i, r->m.nmeta);
	if (key)
		*key = r->m.meta[i].key;
	if (value)
		*value = r->m.meta[i].value;
	return 0;
}

const char *fvm_reader_meta_get(const fvm_reader *r, const char *key)
{
	if (!r || !key)
		return NULL;
	/* a later record with the same key replaces the value (FORMAT.md 4.2) */
	for (uint32_t i = r->m.nmeta; i-- > 0;)
		if (strcmp(r->m.meta[i].key, key) == 0)
			return r->m.meta[i].value;
	return NULL;
}

int fvm_reader_fill_devstate(const struct fvm_reader *r, uint32_t i,
			     fvm_devstate_info *info)
{
	const struct fvm_rsect *s;

	if (i >= r->m.nsects)
		return fvm_err(FVM_ENOTFOUND, "%s: no device-state section %u (%u sections)",
			       r->m.file, i, r->m.nsects);
	s = &r->m.sects[i];
	*info = (fvm_devstate_info){ sizeof(*info), s->name, s->length,
				     r->m.parts[s->first].data_offset, s->nparts };
	return 0;
}

FVM_DEFAULT_0_2(fvm_reader_devstate)(const fvm_reader *r, uint32_t i, fvm_devstate_info *info)
{
	fvm_devstate_info full;
	int rc;

	fvm_api_begin();
	if (!r || !info)
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate: NULL argument");
	rc = fvm_reader_fill_devstate(r, i, &full);
	if (!rc)
		rc = fvm_abi_out(info, &full, sizeof(full), "fvm_reader_devstate: info");
	return fvm_api_end(rc);
}
FVM_SAME_TYPE(fvm_reader_devstate);

int fvm_reader_find_devstate(const fvm_reader *r, const char *name, uint32_t *index)
{
	fvm_api_begin();
	if (!r || !name)
		return fvm_err(FVM_EINVAL, "fvm_reader_find_devstate: NULL argument");
	for (uint32_t i = 0; i < r->m.nsects; i++)
		if (!strcmp(r->m.sects[i].name, name)) {
			if (index)
				*index = i;
			return 0;
		}
	return fvm_err(FVM_ENOTFOUND, "%s: no device-state section named %s", r->m.file, name);
}

/* ------------------------------------------------------------ device state */

/* The section, if its bytes can be read. */
static int readable_sect(const struct fvm_reader *r, uint32_t i, const char *fn,
			 const struct fvm_rsect **out)
{
	if (i >= r->m.nsects)
		return fvm_err(FVM_ENOTFOUND, "%s: no device-state section %u (%u sections)",
			       r->m.file, i, r->m.nsects);
	*out = &r->m.sects[i];
	if (fvm_reader_auth_ready(r, fn))
		return FVM_EAUTH;
	if ((*out)->given)
		return fvm_err(FVM_ESTATE, "%s: %s: device-state section %s went to the "
			       "load's callback and was not kept", r->m.file, fn, (*out)->name);
	return 0;
}

/*
 * Part p's record header and section name read again and checked against
 * what open saw (the file may have changed since): *crc receives the
 * record CRC (R11) begun over them, to be continued over the data.
 */
static int part_head(struct fvm_reader *r, const struct fvm_rpart *p, const char *name,
		     struct fvm_rechdr *rh, uint32_t *crc, struct fvm_auth_rec *t)
{
	struct fvm_model *m = &r->m;
	uint8_t hb[FVM_RECHDR_SIZE], head[FVM_DEVS_HEAD];
	size_t hl = FVM_DEVS_FIXED + strlen(name);
	int rc;

	rc = fvm_pread_full(r->fd, hb, sizeof(hb), p->rec_offset, m->file, "DEVS record");
	if (!rc)
		rc = fvm_rechdr_decode(hb, rh, m->index_offset,
				       (struct fvm_where){ m->file, p->rec_offset });
	if (!rc && (rh->type != FVM_REC_DEVS || rh->body_len != hl + p->size))
		rc = fvm_err(FVM_ECORRUPT, AT ": record changed since the file was opened",
			     m->file, "DEVS record", p->rec_offset);
	if (!rc)
		rc = fvm_pread_full(r->fd, head, hl, p->rec_offset + FVM_RECHDR_SIZE, m->file,
				    "DEVS record");
	if (!rc)
		*crc = fvm_crc32c(fvm_rec_crc_begin(rh), head, hl);
	if (!rc && m->keys) {
		fvm_auth_rec_begin(t, m->keys, p->rec_offset, rh->type, rh->body_len);
		fvm_auth_rec_add(t, head, hl);
	}
	return rc;
}

/* R11, and with a key R103: the record's CRC and tag, before its bytes are used. */
static int part_end(struct fvm_reader *r, const struct fvm_rpart *p, const struct fvm_rechdr *rh,
		    uint32_t crc, struct fvm_auth_rec *t)
{
	const struct fvm_model *m = &r->m;
	uint8_t tag[FVM_TAG_LEN];
	int rc = fvm_rec_crc_end(rh, crc, (struct fvm_where){ m->file, p->rec_offset });

	if (rc || !m->keys) {
		fvm_auth_rec_drop(t);
		return rc;
	}
	rc = fvm_auth_rec_end(t, tag);
	if (rc)
		return rc;
	if (!fvm_auth_equal(tag, m->devs_tags + (size_t)(p - m->parts) * FVM_TAG_LEN, FVM_TAG_LEN))
		return fvm_err(FVM_EAUTH, AT ": device-state tag does not verify (the record was "
			       "altered)", m->file, "DEVS record", p->rec_offset);
	return 0;
}

/* Part p's data into dst (p->size bytes), its record checked. */
static int read_part(struct fvm_reader *r, const struct fvm_rpart *p, const char *name,
		     uint8_t *dst)
{
	struct fvm_auth_rec t = { NULL }; /* part_head begins it, part_end ends it */
	struct fvm_rechdr rh;
	uint32_t crc;
	int rc = part_head(r, p, name, &rh, &crc, &t);

	if (!rc)
		rc = fvm_pread_full(r->fd, dst, p->size, p->data_offset, r->m.file, "DEVS record");
	if (rc) {
		fvm_auth_rec_drop(&t);
		return rc;
	}
	if (r->m.keys)
		fvm_auth_rec_add(&t, dst, p->size);
	rc = part_end(r, p, &rh, fvm_crc32c(crc, dst, p->size), &t);
	if (rc) /* nothing unchecked is handed out */
		memset(dst, 0, p->size);
	return rc;
}

int fvm_reader_devstate_read(fvm_reader *r, uint32_t i, void *buf, size_t buf_len)
{
	const struct fvm_rsect *s;
	int rc;

	fvm_api_begin();
	if (!r || (!buf && buf_len))
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate_read: NULL argument");
	rc = readable_sect(r, i, "fvm_reader_devstate_read", &s);
	if (rc)
		return rc;
	if (buf_len < s->length)
		return fvm_err(FVM_EINVAL, "%s: device-state section %s holds %" PRIu64
			       " bytes, buffer has %zu", r->m.file, s->name, s->length, buf_len);
	for (uint32_t k = 0; k < s->nparts && !rc; k++) {
		const struct fvm_rpart *p = &r->m.parts[s->first + k];
		uint8_t *dst = (uint8_t *)buf + p->sect_offset;

		if (r->streamed) {
			if (p->size)
				memcpy(dst, p->data, p->size);
		} else {
			rc = read_part(r, p, s->name, dst);
		}
	}
	return fvm_api_end(rc);
}

/*
 * Parts up to this size are read whole into the reader's buffer and kept for
 * the next call; larger ones (only files written by others: this library
 * writes parts of 1 MiB) are checked by streaming them through a bounded
 * buffer, copying out the requested range as it goes by.
 */
#define PART_CACHE_MAX (4u << 20)
#define PART_STREAM (1u << 20)

static int part_cached(struct fvm_reader *r, uint32_t pi, const char *name)
{
	const struct fvm_rpart *p = &r->m.parts[pi];
	int rc;

	if (r->part_cached == pi + 1)
		return 0;
	r->part_cached = 0;
	if (p->size > r->part_cap) {
		uint8_t *b = realloc(r->part_buf, p->size);

		if (!b)
			return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64,
				       r->m.file, p->rec_offset);
		r->part_buf = b;
		r->part_cap = p->size;
	}
	rc = read_part(r, p, name, r->part_buf);
	if (!rc)
		r->part_cached = pi + 1;
	return rc;
}

/* Bytes [off, off + n) of a large part into dst, its whole record checked. */
static int part_range(struct fvm_reader *r, const struct fvm_rpart *p, const char *name,
		      uint64_t off, size_t n, uint8_t *dst)
{
	struct fvm_auth_rec t = { NULL }; /* part_head begins it, part_end ends it */
	struct fvm_rechdr rh;
	uint8_t *tmp;
	uint32_t crc;
	int rc = part_head(r, p, name, &rh, &crc, &t);

	if (rc)
		return rc;
	tmp = malloc(PART_STREAM);
	if (!tmp) {
		fvm_auth_rec_drop(&t);
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64, r->m.file,
			       p->rec_offset);
	}
	for (uint64_t at = 0; at < p->size && !rc;) {
		size_t k = p->size - at < PART_STREAM ? (size_t)(p->size - at) : PART_STREAM;

		rc = fvm_pread_full(r->fd, tmp, k, p->data_offset + at, r->m.file, "DEVS record");
		if (rc)
			break;
		crc = fvm_crc32c(crc, tmp, k);
		if (r->m.keys)
			fvm_auth_rec_add(&t, tmp, k);
		/* the overlap of [at, at + k) with [off, off + n) */
		if (at + k > off && at < off + n) {
			uint64_t s = at > off ? at : off;
			uint64_t e = at + k < off + n ? at + k : off + n;

			memcpy(dst + (s - off), tmp + (s - at), e - s);
		}
		at += k;
	}
	free(tmp);
	if (!rc)
		rc = part_end(r, p, &rh, crc, &t);
	else
		fvm_auth_rec_drop(&t);
	if (rc)
		memset(dst, 0, n);
	return rc;
}

int fvm_reader_devstate_pread(fvm_reader *r, uint32_t i, void *buf, size_t len,
			      uint64_t offset, size_t *got)
{
	const struct fvm_rsect *s;
	uint8_t *out = buf;
	uint64_t n, done = 0;
	int rc;

	fvm_api_begin();
	if (!r || !got || (!buf && len))
		return fvm_err(FVM_EINVAL, "fvm_reader_devstate_pread: NULL argument");
	*got = 0;
	rc = readable_sect(r, i, "fvm_reader_devstate_pread", &s);
	if (rc || offset >= s->length)
		return fvm_api_end(rc);
	n = s->length - offset < len ? s->length - offset : len;
	for (uint32_t k = 0; k < s->nparts && done < n && !rc; k++) {
		uint32_t pi = s->first + k;
		const struct fvm_rpart *p = &r->m.parts[pi];
		uint64_t at = offset + done, po, m;

		if (at >= p->sect_offset + p->size)
			continue;
		po = at - p->sect_offset;
		m = p->size - po < n - done ? p->size - po : n - done;
		if (r->streamed) {
			memcpy(out + done, p->data + po, m);
		} else if (p->size <= PART_CACHE_MAX && pthread_mutex_trylock(&r->lock) == 0) {
			rc = part_cached(r, pi, s->name);
			if (!rc)
				memcpy(out + done, r->part_buf + po, m);
			pthread_mutex_unlock(&r->lock);
		} else { /* large, or another thread holds the cache */
			rc = part_range(r, p, s->name, po, (size_t)m, out + done);
		}
		done += m;
	}
	if (!rc)
		*got = (size_t)n;
	return fvm_api_end(rc);
}

/* ------------------------------------------------------------ pages */

/* First extent of block b (in by_block order) whose pages reach past page. */
static uint64_t first_ext(const struct fvm_model *m, uint32_t b, uint64_t page)
{
	uint64_t lo = 0, hi = m->next;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct fvm_extent *e = &m->ext[m->by_block[mid]];

		if (e->block_id < b || (e->block_id == b && e->first_page + e->page_count <= page))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define CHECK_RAW 16384 /* check data read at once: 16 MiB of payload with CRCs, 4 MiB with tags */

/*
 * Read bytes of an extent's payload starting skip bytes in, checking each
 * chunk's CRC or tag (fvm_chunks_bad); a failed check zeroes what was read,
 * so nothing unchecked is handed out.
 */
static int read_data(struct fvm_reader *r, const struct fvm_extent *e, uint64_t skip,
		     uint64_t bytes, uint8_t *dst)
{
	const struct fvm_model *m = &r->m;
	const struct fvm_rblock *b = &m->blocks[e->block_id];
	unsigned chk = m->keys ? FVM_CHK_TAG : m->with_crc ? FVM_CHK_CRC : 0;
	uint64_t batch = (uint64_t)CHECK_RAW / (chk ? chk : FVM_CHK_CRC) * FVM_CHUNK;
	uint8_t raw[CHECK_RAW];
	int rc;

	while (bytes) {
		uint64_t k = bytes < batch ? bytes : batch, off = e->payload_offset + skip;
		int64_t bad;

		rc = fvm_pread_full(r->fd, dst, k, off, m->file, "payload");
		if (!rc && chk)
			rc = fvm_pread_full(r->fd, raw, k / FVM_CHUNK * chk,
					    e->crc_offset + skip / FVM_CHUNK * chk, m->file,
					    chk == FVM_CHK_TAG ? "chunk tags" : "chunk CRCs");
		if (rc)
			return rc;
		bad = chk ? fvm_chunks_bad(m->keys, off, dst, (size_t)(k / FVM_CHUNK), raw) : -1;
		if (bad == FVM_CHUNKS_FAILED) {
			memset(dst, 0, k);
			return FVM_ENOMEM;
		}
		if (bad >= 0) {
			uint64_t at = skip + (uint64_t)bad * FVM_CHUNK;

			memset(dst, 0, k);
			return fvm_model_chunk_error(m, e->block_id,
						     e->first_page + (at >> b->page_shift),
						     e->payload_offset + at, "");
		}
		skip += k;
		dst += k;
		bytes -= k;
	}
	return 0;
}

/*
 * read_data for a COMPRESSED file: the frames holding plain bytes
 * [off, off + bytes), each decoded whole (unframe.c) into the reader's
 * frame buffer, which keeps the last one for the next call: reading a run
 * front to back in pieces decodes each frame once. A call that finds the
 * cache in another thread's use decodes into buffers of its own.
 */
static int read_frames(struct fvm_reader *r, struct fvm_frame_cache *fc,
		       const struct fvm_extent *e, uint64_t skip, uint64_t bytes, uint8_t *dst)
{
	const struct fvm_model *m = &r->m;
	uint64_t off = e->payload_offset + skip;
	uint64_t F = 1ull << m->hdr.frame_shift;
	int rc;

	if (!fc->plain) {
		fc->stored = malloc(F);
		fc->plain = malloc(F);
		if (!fc->stored || !fc->plain)
			return fvm_err(FVM_ENOMEM, "%s: frame buffers", m->file);
		fvm_codec_ctx_init(&fc->cx, m->hdr.codec, 0);
	}
	while (bytes) {
		uint64_t k = fvm_frame_find(m->frames, m->nframes, off);
		const struct fvm_frame *f = &m->frames[k];
		uint64_t in = off - f->plain_offset;
		uint64_t n = f->plain_len - in < bytes ? f->plain_len - in : bytes;

		if (fc->cached != k + 1) {
			fc->cached = 0;
			rc = fvm_pread_full(r->fd, fc->stored, f->stored_len, f->file_offset,
					    m->file, "frame");
			if (!rc)
				rc = fvm_unframe(&fc->cx, f, k, fc->stored, fc->plain, m->file, 1);
			if (rc)
				return rc;
			fc->cached = k + 1;
		}
		memcpy(dst, fc->plain + in, n);
		dst += n;
		off += n;
		bytes -= n;
	}
	return 0;
}

static int read_cdata(struct fvm_reader *r, const struct fvm_extent *e, uint64_t skip,
		      uint64_t bytes, uint8_t *dst)
{
	struct fvm_frame_cache own = { 0 };
	int rc;

	if (pthread_mutex_trylock(&r->lock) == 0) {
		rc = read_frames(r, &r->fc, e, skip, bytes, dst);
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
	rc = read_frames(r, &own, e, skip, bytes, dst);
	frame_cache_free(&own);
	return rc;
}

static int read_pages(struct fvm_reader *r, uint32_t block_id, uint64_t first_page,
		      uint64_t count, uint8_t *out)
{
	const struct fvm_model *m = &r->m;
	const struct fvm_rblock *b = &m->blocks[block_id];
	uint64_t page = first_page, end = first_page + count;
	int rc;

	for (uint64_t i = first_ext(m, block_id, page); i < m->next && page < end; i++) {
		const struct fvm_extent *e = &m->ext[m->by_block[i]];
		uint64_t s, t;

		if (e->block_id != block_id || e->first_page >= end)
			break;
		s = e->first_page > page ? e->first_page : page;
		t = e->first_page + e->page_count < end ? e->first_page + e->page_count : end;
		if (s > page) /* absent pages read as zero */
			memset(out + ((page - first_page) << b->page_shift), 0,
			       (s - page) << b->page_shift);
		if (e->flags & FVM_RUN_FLAG_DATA)
			rc = (m->compressed ? read_cdata : read_data)(r, e, (s - e->first_page) << b->page_shift,
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

int fvm_reader_read_pages(fvm_reader *r, uint32_t block_id, uint64_t first_page,
			  uint64_t count, void *buf)
{
	const struct fvm_rblock *b;
	int rc;

	fvm_api_begin();
	if (!r || (!buf && count))
		return fvm_err(FVM_EINVAL, "fvm_reader_read_pages: NULL argument");
	if (r->streamed)
		return fvm_err(FVM_ESTATE, "%s: pages of a stream cannot be read again",
			       r->m.file);
	if (block_id >= r->m.nblocks)
		return fvm_err(FVM_ENOTFOUND, "%s: no block %u (%u blocks)", r->m.file,
			       block_id, r->m.nblocks);
	if ((rc = fvm_reader_auth_ready(r, "fvm_reader_read_pages")))
		return rc;
	b = &r->m.blocks[block_id];
	if (first_page > b->pages || count > b->pages - first_page)
		return fvm_err(FVM_ERANGE, "%s: pages %" PRIu64 "+%" PRIu64 " outside block "
			       "%s of %" PRIu64 " pages", r->m.file, first_page, count, b->name,
			       b->pages);
	return fvm_api_end(read_pages(r, block_id, first_page, count, buf));
}

/* ------------------------------------------------------------ keys */

int fvm_reader_auth_ready(const struct fvm_reader *r, const char *what)
{
	if (!r->m.auth || r->m.keys)
		return 0;
	return fvm_err(FVM_EAUTH, "%s: %s: an authenticated snapshot (key id %016" PRIx64
		       "): its key is needed first", r->m.file, what, r->m.auth_key_id);
}

int fvm_reader_set_key(fvm_reader *r, const void *key, size_t len)
{
	struct fvm_model *m;
	struct fvm_auth *a;
	uint8_t mac[FVM_MAC_LEN];
	uint64_t id;

	fvm_api_begin();
	if (!r || !key || len != FVM_KEY_LEN)
		return fvm_err(FVM_EINVAL, "fvm_reader_set_key: NULL argument or a key of %zu "
			       "bytes (%u expected)", r && key ? len : 0, FVM_KEY_LEN);
	m = &r->m;
	if (!fvm_auth_built())
		return fvm_err(FVM_EUNSUPPORTED, "%s: authenticated snapshots: this libfastvm "
			       "was built without libgcrypt", m->file);
	if (r->streamed)
		return fvm_err(FVM_EUNSUPPORTED, "%s: an authenticated snapshot cannot be read as "
			       "a stream (its MAC is at its end): open it as a file", m->file);
	if (m->keys)
		return fvm_err(FVM_ESTATE, "%s: a key was already accepted", m->file);
	if (!m->auth)
		return fvm_err(FVM_EAUTH, "%s: file header at offset 0x10: not an authenticated "
			       "snapshot, but a key was given (a file stripped of its tags looks "
			       "like this): refused", m->file);
	if (fvm_auth_key_id(key, &id))
		return FVM_ENOMEM;
	if (id != m->auth_key_id) /* R100 */
		return fvm_err(FVM_EAUTH, "%s: INDX record at offset 0x%" PRIx64 ": written with "
			       "key id %016" PRIx64 ", the key given has id %016" PRIx64,
			       m->file, m->index_offset, m->auth_key_id, id);
	a = malloc(sizeof(*a));
	if (!a)
		return fvm_err(FVM_ENOMEM, "%s: keys", m->file);
	if (fvm_auth_derive(a, key, m->hdr.salt) ||
	    fvm_auth_mac(a, m->auth_header, m->auth_db, m->auth_dm, m->auth_di, mac)) {
		fvm_auth_wipe(a);
		free(a);
		return FVM_ENOMEM;
	}
	if (!fvm_auth_equal(mac, m->auth_mac, FVM_MAC_LEN)) { /* R101 */
		fvm_auth_wipe(a);
		free(a);
		return fvm_err(FVM_EAUTH, "%s: INDX record at offset 0x%" PRIx64 ": the MAC over "
			       "header, blocks, metadata and index does not verify (the file was "
			       "altered)", m->file, m->index_offset);
	}
	m->keys = a;
	return fvm_api_end(0);
}

int fvm_auth_available(void)
{
	return fvm_auth_built();
}

int fvm_key_id(const void *key, size_t len, uint64_t *id)
{
	fvm_api_begin();
	if (!key || !id || len != FVM_KEY_LEN)
		return fvm_err(FVM_EINVAL, "fvm_key_id: NULL argument or a key of %zu bytes "
			       "(%u expected)", key && id ? len : 0, FVM_KEY_LEN);
	if (!fvm_auth_built())
		return fvm_err(FVM_EUNSUPPORTED, "authenticated snapshots: this libfastvm was "
			       "built without libgcrypt");
	return fvm_api_end(fvm_auth_key_id(key, id));
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int fvm_key_parse(const char *text, size_t len, void *key, size_t key_len)
{
	uint8_t *k = key;

	fvm_api_begin();
	if (!text || !key || key_len != FVM_KEY_LEN)
		return fvm_err(FVM_EINVAL, "fvm_key_parse: NULL argument or a key of %zu bytes "
			       "(%u expected)", text && key ? key_len : 0, FVM_KEY_LEN);
	if (len == 2 * FVM_KEY_LEN + 1 && text[len - 1] == '\n')
		len--;
	for (size_t i = 0; i < len; i++)
		if (hexval(text[i]) < 0)
			return fvm_err(FVM_EINVAL, "key: byte %zu is not a hexadecimal digit (a key "
				       "is 64 of them, as fvmsnap keygen writes it)", i);
	if (len != 2 * FVM_KEY_LEN)
		return fvm_err(FVM_EINVAL, "key: %zu bytes, expected 64 hexadecimal digits and "
			       "at most one newline (as fvmsnap keygen writes it)", len);
	for (size_t i = 0; i < FVM_KEY_LEN; i++)
		k[i] = (uint8_t)(hexval(text[2 * i]) << 4 | hexval(text[2 * i + 1]));
	return fvm_api_end(0);
}
