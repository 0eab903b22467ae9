/*
 * fast -> stock: a QEMU migration stream that stock QEMU (7.2 and later)
 * restores with -incoming, regenerated from a converted snapshot
 * (doc/QEMU.md, "Export"): the kept pre-RAM bytes, a ram START section
 * with the MEM_SIZE list rebuilt from the blocks and the saved extras, the
 * kept commands, a ram END section holding every page (ZERO records for
 * zero runs, PAGE records for data runs read in large batches), then the
 * kept post-RAM bytes. Written sequentially to an fd (file or pipe) with
 * bounded memory: one page batch and one output buffer.
 *
 * With shared blocks (fvmsnap restore), the stream is the one a source
 * with x-ignore-shared would send: the capability in the configuration
 * section (added when the snapshot's source did not have it), an address
 * field for every block in the MEM_SIZE list (a memory backend's region
 * is at 0, which is what the destination compares for shared blocks), and
 * no page of the shared blocks: the destination maps them from its file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stock.h"
#include "stock_error.h"
#include "stream.h"

#define OUT_BUF_SIZE (1u << 20)
#define DEFAULT_BATCH_BYTES (4u << 20)

struct out {
	int fd;
	const char *name;
	uint8_t *buf;
	size_t len;
	uint64_t total;
};

static int out_flush(struct out *o)
{
	size_t done = 0;
	ssize_t n;

	while (done < o->len) {
		n = write(o->fd, o->buf + done, o->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			return fvm_error_set(stock_sys_code(e), e, "%s: write at offset 0x%llx",
					     o->name, (unsigned long long)(o->total + done));
		}
		done += (size_t)n;
	}
	o->total += o->len;
	o->len = 0;
	return 0;
}

static int out_put(struct out *o, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t n;
	int err;

	while (len) {
		if (o->len == OUT_BUF_SIZE && (err = out_flush(o)))
			return err;
		n = OUT_BUF_SIZE - o->len;
		if (n > len)
			n = len;
		memcpy(o->buf + o->len, p, n);
		o->len += n;
		p += n;
		len -= n;
	}
	return 0;
}

static int out_be(struct out *o, uint64_t v, int n)
{
	uint8_t t[8];
	int i;

	for (i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return out_put(o, t, (size_t)n);
}

struct kept {
	uint8_t *data;
	size_t len;
	int found;
};

/* The first device-state section called name, if the file has one. */
static int read_dev(fvm_reader *r, const char *in, const char *name, struct kept *k)
{
	fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;
	uint32_t i;
	int err;

	if ((err = fvm_reader_find_devstate(r, name, &i)) == FVM_ENOTFOUND)
		return 0;
	if (err || (err = fvm_reader_devstate(r, i, &di)))
		return err;
	if (di.length > SIZE_MAX)
		return fvm_error_set(FVM_ERANGE, 0, "%s: device state %s too large", in, name);
	k->data = malloc(di.length ? (size_t)di.length : 1);
	if (!k->data)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: device state %s", in, name);
	k->len = (size_t)di.length;
	if ((err = fvm_reader_devstate_read(r, i, k->data, k->len)))
		return err;
	k->found = 1;
	return 0;
}

static int is_shared(const struct stock_export_opts *eo, const char *name)
{
	for (const char *const *s = eo->shared; s && *s; s++)
		if (!strcmp(*s, name))
			return 1;
	return 0;
}

#define CAP_NAME "x-ignore-shared"
#define CAPS_SUB "configuration/capabilities"

/* A capability the export decides on itself (d: u8 length, name). */
static int decided_cap(const uint8_t *d)
{
	return (d[0] == 10 && !memcmp(d + 1, "mapped-ram", 10)) ||
	       (d[0] == sizeof(CAP_NAME) - 1 && !memcmp(d + 1, CAP_NAME, d[0]));
}

static uint32_t be32(const uint8_t *d)
{
	return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
}

/*
 * The pre-RAM bytes with the capabilities of the exported stream, which a
 * destination validates against its own: never "mapped-ram" (the export is
 * a plain stream), "x-ignore-shared" exactly when ignore is set. The saved
 * list is rewritten in place; without one, a capabilities subsection goes
 * right after the machine type (the loader finds subsections by name, in
 * any order).
 */
static int put_pre_ram(struct out *o, const struct kept *pre, const struct stock_stream *st,
		       const char *in, int ignore)
{
	static const uint8_t entry[] = { sizeof(CAP_NAME) - 1, 'x', '-', 'i', 'g', 'n', 'o', 'r',
					 'e', '-', 's', 'h', 'a', 'r', 'e', 'd' };
	const uint8_t *d = pre->data;
	uint64_t c = st->caps_count_off, p;
	uint32_t count, kept = 0, mlen;
	size_t at;
	int err;

	if (c) {
		if (c + 4 > pre->len)
			return fvm_error_set(FVM_ECORRUPT, 0, "%s: qemu.ram-section: capability count at %llu outside qemu.pre-ram (%zu bytes)",
					     in, (unsigned long long)c, pre->len);
		count = be32(d + c);
		/* the entries: u8 length, name; checked before anything is written */
		for (p = c + 4; count && p < pre->len; count--) {
			if (p + 1 + d[p] > pre->len)
				break;
			kept += !decided_cap(d + p);
			p += 1 + d[p];
		}
		if (count)
			return fvm_error_set(FVM_ECORRUPT, 0, "%s: qemu.pre-ram: capability list at %llu runs past its end",
					     in, (unsigned long long)c);
		if ((err = out_put(o, d, c)) || (err = out_be(o, kept + (ignore ? 1 : 0), 4)))
			return err;
		for (uint64_t q = c + 4; q < p; q += 1 + d[q])
			if (!decided_cap(d + q) && (err = out_put(o, d + q, 1 + (size_t)d[q])))
				return err;
		if (ignore && (err = out_put(o, entry, sizeof(entry))))
			return err;
		return out_put(o, d + p, pre->len - p);
	}
	if (!ignore)
		return out_put(o, pre->data, pre->len);
	/* "QEVM" be32 3, then 0x07 be32 len machine-type */
	if (pre->len < 13 || d[8] != QEMU_VM_CONFIGURATION)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: the QEMU stream has no configuration section, so it cannot carry x-ignore-shared",
				     in);
	mlen = be32(d + 9);
	at = 13 + (size_t)mlen;
	if (mlen > 255 || at > pre->len)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qemu.pre-ram: configuration section length %u",
				     in, mlen);
	if ((err = out_put(o, d, at)) || (err = out_be(o, QEMU_VM_SUBSECTION, 1)) ||
	    (err = out_be(o, sizeof(CAPS_SUB) - 1, 1)) ||
	    (err = out_put(o, CAPS_SUB, sizeof(CAPS_SUB) - 1)) ||
	    (err = out_be(o, 1, 4)) || /* version */
	    (err = out_be(o, 1, 4)) || /* count */
	    (err = out_put(o, entry, sizeof(entry))))
		return err;
	return out_put(o, d + at, pre->len - at);
}

static int put_section_header(struct out *o, uint8_t type, const struct stock_stream *st)
{
	int err;

	if ((err = out_be(o, type, 1)) || (err = out_be(o, st->section_id, 4)))
		return err;
	if (type != QEMU_VM_SECTION_START)
		return 0;
	if ((err = out_be(o, 3, 1)) || (err = out_put(o, "ram", 3)) ||
	    (err = out_be(o, st->instance_id, 4)) || (err = out_be(o, st->version_id, 4)))
		return err;
	return 0;
}

static int put_footer(struct out *o, const struct stock_stream *st)
{
	int err = 0;

	if (st->footers && !(err = out_be(o, QEMU_VM_SECTION_FOOTER, 1)))
		err = out_be(o, st->section_id, 4);
	return err;
}

static int put_start(struct out *o, const struct stock_stream *st, int addr_fields)
{
	uint32_t i;
	int err;

	if ((err = put_section_header(o, QEMU_VM_SECTION_START, st)) ||
	    (err = out_be(o, st->total_bytes | RAM_SAVE_FLAG_MEM_SIZE, 8)))
		return err;
	for (i = 0; i < st->nblocks; i++) {
		const struct stock_ram_block *b = &st->blocks[i];
		size_t len = strlen(b->name);

		if ((err = out_be(o, len, 1)) || (err = out_put(o, b->name, len)) ||
		    (err = out_be(o, b->length, 8)))
			return err;
		if (b->has_page_size && (err = out_be(o, b->page_size, 8)))
			return err;
		if (addr_fields && (err = out_be(o, b->has_addr ? b->addr : 0, 8)))
			return err;
	}
	if ((err = out_be(o, RAM_SAVE_FLAG_EOS, 8)))
		return err;
	return put_footer(o, st);
}

struct pagew {
	struct out *o;
	fvm_reader *r;
	const char *in;
	uint8_t *batch;
	uint64_t batch_pages;
	int64_t last_block;
	struct stock_export_result *res;
	const struct stock_export_opts *eo;
	uint64_t done, total;
};

/* The header of one page record: the block's idstr unless it continues. */
static int record_header(struct pagew *w, uint32_t block, const char *name,
			 uint64_t page, uint64_t flag)
{
	size_t len;
	int err;

	if (w->last_block == (int64_t)block)
		return out_be(w->o, page << STOCK_PAGE_SHIFT | flag | RAM_SAVE_FLAG_CONTINUE, 8);
	w->last_block = block;
	len = strlen(name);
	if ((err = out_be(w->o, page << STOCK_PAGE_SHIFT | flag, 8)) ||
	    (err = out_be(w->o, len, 1)))
		return err;
	return out_put(w->o, name, len);
}

static int put_run(struct pagew *w, const fvm_run_info *run, const char *name)
{
	uint64_t p, n, i;
	int err;

	if (run->kind == FVM_RUN_ZERO) {
		for (p = 0; p < run->page_count; p++) {
			if ((err = record_header(w, run->block_id, name, run->first_page + p,
						 RAM_SAVE_FLAG_ZERO)) ||
			    (err = out_be(w->o, 0, 1)))
				return err;
		}
		w->res->zero_pages += run->page_count;
		return 0;
	}
	for (p = 0; p < run->page_count; p += n) {
		n = run->page_count - p;
		if (n > w->batch_pages)
			n = w->batch_pages;
		if ((err = fvm_reader_read_pages(w->r, run->block_id, run->first_page + p,
						 n, w->batch)))
			return err;
		for (i = 0; i < n; i++) {
			if ((err = record_header(w, run->block_id, name,
						 run->first_page + p + i, RAM_SAVE_FLAG_PAGE)) ||
			    (err = out_put(w->o, w->batch + i * STOCK_PAGE_SIZE, STOCK_PAGE_SIZE)))
				return err;
		}
		w->res->data_pages += n;
		w->done += n * STOCK_PAGE_SIZE;
		if (w->eo->progress && w->eo->progress(w->eo->progress_ctx, w->done, w->total))
			return fvm_error_set(FVM_ECANCELED, 0, "export canceled");
	}
	return 0;
}

/* Every block of the file must be one of the list, with the same length. */
static int match_blocks(fvm_reader *r, const char *in, const struct stock_stream *st,
			uint64_t *payload)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	uint32_t i, id;
	int err;

	if ((err = fvm_reader_info(r, &fi)))
		return err;
	if (fi.block_count != st->nblocks)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: %u RAM blocks but qemu.ram-section lists %u",
				     in, fi.block_count, st->nblocks);
	for (i = 0; i < st->nblocks; i++) {
		if ((err = fvm_reader_find_block(r, st->blocks[i].name, &id)))
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: block %s of qemu.ram-section is not in the file",
					     in, st->blocks[i].name);
		if ((err = fvm_reader_block(r, id, &bi)))
			return err;
		if (bi.length != st->blocks[i].length || bi.page_size != STOCK_PAGE_SIZE)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: block %s: length %llu page size %llu, qemu.ram-section says %llu and 4096",
					     in, bi.name, (unsigned long long)bi.length,
					     (unsigned long long)bi.page_size,
					     (unsigned long long)st->blocks[i].length);
	}
	*payload = fi.data_pages * STOCK_PAGE_SIZE;
	return 0;
}

static int put_pages(struct pagew *w)
{
	uint64_t i, n = fvm_reader_run_count(w->r);
	fvm_run_info run = FVM_RUN_INFO_INIT;
	fvm_block_info bi = FVM_BLOCK_INFO_INIT;
	int err;

	for (i = 0; i < n; i++) {
		if ((err = fvm_reader_run(w->r, i, &run)) ||
		    (err = fvm_reader_block(w->r, run.block_id, &bi)))
			return err;
		if (is_shared(w->eo, bi.name))
			continue; /* the destination maps it from its file */
		if ((err = put_run(w, &run, bi.name)))
			return err;
	}
	return 0;
}

int stock_export(const struct stock_export_opts *eo, struct stock_export_result *res)
{
	struct kept pre = { 0 }, desc = { 0 }, mid = { 0 }, post = { 0 };
	struct stock_stream st;
	struct out o = { .fd = eo->out_fd, .name = eo->out_name };
	struct pagew w = { 0 };
	fvm_reader *r = eo->reader;
	const char *in = eo->input;
	int err, ignore;

	memset(res, 0, sizeof(*res));
	memset(&st, 0, sizeof(st));
	if (!r && (err = fvm_reader_open(&r, in)))
		goto out;
	if ((err = read_dev(r, in, "qemu.pre-ram", &pre)) ||
	    (err = read_dev(r, in, "qemu.ram-section", &desc)) ||
	    (err = read_dev(r, in, "qemu.ram-mid", &mid)) ||
	    (err = read_dev(r, in, "qemu.post-ram", &post)))
		goto out;
	if (!pre.found || !desc.found || !post.found) {
		err = fvm_error_set(FVM_ENOTFOUND, 0,
				    "%s: no QEMU device state (qemu.pre-ram, qemu.ram-section, qemu.post-ram): not converted from QEMU",
				    in);
		goto out;
	}
	if ((err = stock_ram_desc_decode(desc.data, desc.len, in, &st)) ||
	    (err = match_blocks(r, in, &st, &w.total)))
		goto out;
	w.batch_pages = (eo->batch_bytes ? eo->batch_bytes : DEFAULT_BATCH_BYTES) / STOCK_PAGE_SIZE;
	if (!w.batch_pages)
		w.batch_pages = 1;
	o.buf = malloc(OUT_BUF_SIZE);
	w.batch = malloc((size_t)w.batch_pages * STOCK_PAGE_SIZE);
	if (!o.buf || !w.batch) {
		err = fvm_error_set(FVM_ENOMEM, ENOMEM, "export buffers");
		goto out;
	}
	w.o = &o;
	w.r = r;
	w.in = in;
	w.last_block = -1;
	w.res = res;
	w.eo = eo;
	for (const char *const *s = eo->shared; s && *s; s++) {
		uint32_t id;

		if (fvm_reader_find_block(r, *s, &id)) {
			err = fvm_error_set(FVM_ENOTFOUND, 0, "%s: no RAM block %s", in, *s);
			goto out;
		}
	}
	/*
	 * x-ignore-shared: when the destination maps blocks (restore); and for
	 * a snapshot converted from such a stream, whose shared blocks have no
	 * pages, the destination must have them too. A snapshot saved with its
	 * shared RAM (fvmsnap save: metadata qemu.shared-ram) is a whole one.
	 */
	ignore = eo->shared || (st.ignore_shared && !fvm_reader_meta_get(r, "qemu.shared-ram"));
	if (st.mapped_ram && eo->shared) {
		err = fvm_error_set(FVM_EUNSUPPORTED, 0,
				    "%s: converted from a mapped-ram file: restore it through fvmsnap export",
				    in);
		goto out;
	}
	if ((err = put_pre_ram(&o, &pre, &st, in, ignore)) ||
	    (err = put_start(&o, &st, ignore)) ||
	    (err = out_put(&o, mid.data, mid.len)) ||
	    (err = put_section_header(&o, QEMU_VM_SECTION_END, &st)) ||
	    (err = put_pages(&w)) ||
	    (err = out_be(&o, RAM_SAVE_FLAG_EOS, 8)) ||
	    (err = put_footer(&o, &st)) ||
	    (err = out_put(&o, post.data, post.len)) ||
	    (err = out_flush(&o)))
		goto out;
	res->output_bytes = o.total;
out:
	free(o.buf);
	free(w.batch);
	free(pre.data);
	free(desc.data);
	free(mid.data);
	free(post.data);
	stock_stream_release(&st);
	if (r != eo->reader)
		fvm_reader_free(r);
	return err;
}
