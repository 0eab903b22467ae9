/*
 * stock -> fast: one pass over a QEMU migration stream (file, pipe, mapped-
 * ram file or qcow2 snapshot VM state) into the libfastvm streaming writer.
 * RAM blocks come from the MEM_SIZE list, runs of data pages go to
 * fvm_writer_put_pages in batches (the writer coalesces them into runs),
 * zero pages to fvm_writer_put_zero; the bytes around the ram sections
 * become device-state sections (doc/QEMU.md). Memory is bounded by the
 * page batch, the writer's segment and the kept device state, never by
 * the size of guest RAM. The output is written atomically by the library.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "stock.h"
#include "stream.h"

/*
 * Sizes that keep the bytes in the CPU cache from one step to the next
 * (bench/convert-speed.sh; a 512 MiB guest's snapshot converts in about
 * two thirds of the CPU time of the defaults, 4 MiB batches and 16 MiB
 * segments): a page batch of 256 KiB stays in L2 between the parser's copy
 * and the writer's fused copy+CRC, and a 2 MiB segment buffer is still in
 * cache when write(2) copies it out. Smaller segments cost one record
 * header and at most 4 KiB of alignment per 2 MiB of payload (< 0.3%).
 */
#define CONVERT_BATCH_PAGES 64
#define CONVERT_SEGMENT_BYTES (2u << 20)

struct cctx {
	fvm_writer *w;
	uint32_t ids[STOCK_MAX_BLOCKS];
	uint32_t nblocks;
	const struct stock_convert_opts *o;
	struct stock_convert_result *res;
};

static int cv_block(void *ctx, uint32_t index, const struct stock_ram_block *b)
{
	struct cctx *c = ctx;
	int err;

	err = fvm_writer_add_block(c->w, b->name, b->length, STOCK_PAGE_SIZE,
				   &c->ids[index]);
	if (err)
		return err;
	c->res->blocks++;
	c->res->ram_bytes += b->length;
	c->nblocks = index + 1;
	return 0;
}

/*
 * A shared block from its mapping: the file's data extents (SEEK_DATA,
 * SEEK_HOLE) written from memory with zero pages found in them, its holes
 * as zero runs without touching them; the whole mapping scanned when the
 * file system cannot say.
 */
static int write_extents(fvm_writer *w, uint32_t id, const struct stock_shared_ram *s)
{
	const uint8_t *mem = s->mem;
	off_t pos = 0, data, hole;
	int err;

	if (s->fd < 0 || lseek(s->fd, 0, SEEK_HOLE) < 0)
		return fvm_writer_write_block(w, id, s->mem);
	while ((uint64_t)pos < s->length) {
		data = lseek(s->fd, pos, SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			return fvm_error_set(FVM_EIO, errno, "%s: SEEK_DATA", s->name);
		if (data < 0 || (uint64_t)data > s->length)
			data = (off_t)s->length;
		data &= ~(off_t)(STOCK_PAGE_SIZE - 1);
		if (data > pos && (err = fvm_writer_put_zero(w, id, (uint64_t)pos / STOCK_PAGE_SIZE,
							     (uint64_t)(data - pos) / STOCK_PAGE_SIZE)))
			return err;
		if ((uint64_t)data >= s->length)
			break;
		hole = lseek(s->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > s->length)
			hole = (off_t)s->length;
		hole = (hole + STOCK_PAGE_SIZE - 1) & ~(off_t)(STOCK_PAGE_SIZE - 1);
		if ((err = fvm_writer_write_pages(w, id, (uint64_t)data / STOCK_PAGE_SIZE,
						  (uint64_t)(hole - data) / STOCK_PAGE_SIZE,
						  mem + data)))
			return err;
		pos = hole;
	}
	return 0;
}

/* The shared blocks' RAM, from the source's memory (fvmsnap save). */
static int write_shared(struct cctx *c, const struct stock_stream *st)
{
	char names[1024] = "";
	size_t used = 0;
	int err;

	for (unsigned k = 0; k < c->o->nshared; k++) {
		const struct stock_shared_ram *s = &c->o->shared[k];
		uint32_t i;

		for (i = 0; i < st->nblocks && strcmp(st->blocks[i].name, s->name); i++)
			;
		if (i == st->nblocks)
			return fvm_error_set(FVM_ENOTFOUND, 0, "%s: the stream has no RAM block %s",
					     c->o->input, s->name);
		if (st->blocks[i].length != s->length)
			return fvm_error_set(FVM_EINVAL, 0, "%s: block %s has %llu bytes in the stream, %llu in memory",
					     c->o->input, s->name,
					     (unsigned long long)st->blocks[i].length,
					     (unsigned long long)s->length);
		if ((err = write_extents(c->w, c->ids[i], s)))
			return err;
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", k ? "," : "",
					 s->name);
		if (used >= sizeof(names))
			used = sizeof(names) - 1;
	}
	return c->o->nshared ? fvm_writer_add_meta(c->w, "qemu.shared-ram", names) : 0;
}

static int cv_pages(void *ctx, uint32_t block, uint64_t first, uint64_t count,
		    const void *data)
{
	struct cctx *c = ctx;
	int err = fvm_writer_put_pages(c->w, c->ids[block], first, count, data);

	if (err)
		return err;
	c->res->data_pages += count;
	return 0;
}

static int cv_zero(void *ctx, uint32_t block, uint64_t first, uint64_t count)
{
	struct cctx *c = ctx;
	int err = fvm_writer_put_zero(c->w, c->ids[block], first, count);

	if (err)
		return err;
	c->res->zero_pages += count;
	return 0;
}

static int cv_progress(void *ctx, uint64_t offset, uint64_t size)
{
	struct cctx *c = ctx;

	c->res->input_bytes = offset;
	if (c->o->progress &&
	    c->o->progress(c->o->progress_ctx, offset, size == UINT64_MAX ? 0 : size))
		return fvm_error_set(FVM_ECANCELED, 0, "conversion canceled");
	return 0;
}

static int add_dev(struct cctx *c, const char *name, const void *data, size_t len)
{
	int err = fvm_writer_add_devstate(c->w, name, data, len);

	if (err)
		return err;
	c->res->devstate_bytes += len;
	return 0;
}

static int add_meta(struct cctx *c, const char *key, const char *value)
{
	int err;

	if (!value || !*value)
		return 0;
	if ((err = fvm_writer_add_meta(c->w, key, value)))
		return err;
	return 0;
}

static int write_meta(struct cctx *c, const struct stock_input *in,
		      const struct stock_stream *st)
{
	const struct stock_qcow2_snapshot *sn = NULL;
	char buf[64];
	int err;

	if (in->kind == STOCK_INPUT_QCOW2)
		sn = stock_qcow2_snapshot(in->q, in->snapshot);
	if ((err = add_meta(c, "creator", c->o->creator)) ||
	    (err = add_meta(c, "created", c->o->created)) ||
	    (err = add_meta(c, "source", in->kind == STOCK_INPUT_QCOW2 || strcmp(c->o->input, "-") ?
			    c->o->input : "(stdin)")) ||
	    (err = add_meta(c, "source.format",
			    in->kind == STOCK_INPUT_QCOW2 ? "qcow2-internal-snapshot" :
			    st->mapped_ram ? "qemu-mapped-ram" : "qemu-migration-stream")) ||
	    (err = add_meta(c, "machine", st->machine)) ||
	    (err = add_meta(c, "qemu.capabilities", st->caps)))
		return err;
	for (const char *const *d = c->o->disks; d && *d; d++)
		if ((err = fvm_writer_add_disk(c->w, *d)))
			return err;
	if (sn) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)sn->date_sec);
		if ((err = add_meta(c, "qemu.snapshot.id", sn->id)) ||
		    (err = add_meta(c, "qemu.snapshot.name", sn->name)) ||
		    (err = add_meta(c, "qemu.snapshot.date", buf)))
			return err;
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)sn->vm_clock_nsec);
		if ((err = add_meta(c, "qemu.snapshot.vm_clock_nsec", buf)))
			return err;
	}
	return 0;
}

static int write_devstate(struct cctx *c, const struct stock_stream *st)
{
	struct stock_buf desc = { 0 };
	int err;

	err = stock_ram_desc_encode(st, &desc);
	if (!err)
		err = add_dev(c, "qemu.pre-ram", st->pre_ram.data, st->pre_ram.len);
	if (!err)
		err = add_dev(c, "qemu.ram-section", desc.data, desc.len);
	if (!err && st->mid_ram.len)
		err = add_dev(c, "qemu.ram-mid", st->mid_ram.data, st->mid_ram.len);
	if (!err)
		err = add_dev(c, "qemu.post-ram", st->post_ram.data, st->post_ram.len);
	stock_buf_release(&desc);
	return err;
}

int stock_convert(const struct stock_convert_opts *o, struct stock_convert_result *res)
{
	fvm_write_options wo = FVM_WRITE_OPTIONS_INIT;
	struct stock_stream_ops ops;
	struct stock_input in;
	struct stock_stream st;
	struct cctx *c;
	int err;

	memset(res, 0, sizeof(*res));
	memset(&st, 0, sizeof(st));
	c = calloc(1, sizeof(*c));
	if (!c)
		return fvm_error_set(FVM_ENOMEM, 0, "conversion state");
	c->o = o;
	c->res = res;
	ops = (struct stock_stream_ops){ c, cv_block, cv_pages, cv_zero, cv_progress };
	wo.flags = o->write_flags;
	wo.segment_bytes = CONVERT_SEGMENT_BYTES;
	wo.codec = o->codec;
	wo.level = o->level;
	wo.frame_bytes = o->frame_bytes;
	wo.key = o->key;
	wo.progress = o->write_progress;
	wo.progress_ctx = o->progress_ctx;
	st.batch_pages = CONVERT_BATCH_PAGES;
	/* Open the input first: a missing or foreign input creates nothing. */
	if ((err = o->in_fd > 0 ? stock_input_open_fd(&in, o->in_fd, o->input)
				: stock_input_open(&in, o->input, o->snapshot)))
		goto out;
	err = o->out_fd >= 0 ? fvm_writer_open_fd(&c->w, o->out_fd, &wo)
			     : fvm_writer_open_path(&c->w, o->output, &wo);
	if (err)
		goto out;
	if ((err = stock_stream_parse(in.src, &ops, &st)) ||
	    (err = write_shared(c, &st)) ||
	    (err = write_meta(c, &in, &st)) ||
	    (err = write_devstate(c, &st)))
		goto out;
	res->input_bytes = stock_source_offset(in.src);
	err = fvm_writer_finish(c->w);
out:
	/* An unfinished path writer removes its temporary file. */
	fvm_writer_free(c->w);
	stock_stream_release(&st);
	stock_input_close(&in);
	free(c);
	return err;
}
