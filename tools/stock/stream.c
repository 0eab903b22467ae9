/*
 * QEMU migration stream reader (see stream.h and doc/QEMU.md): file header,
 * configuration section, commands, the "ram" sections record by record,
 * mapped-ram blocks, and the bytes kept around them. Every length is
 * checked against what its container allows before it is used; every
 * error names the input, the record and its offset.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fastvm/fastvm.h"
#include "stream.h"

#define DEFAULT_BATCH_PAGES 1024          /* 4 MiB per writer call */
/* libfastvm takes device-state sections up to 1 GiB with their header. */
#define DEFAULT_KEEP_MAX (((size_t)1 << 30) - 65536)
#define ZERO_BATCH_MAX ((uint64_t)1 << 20)
/* zlib's compressBound(4096): the largest COMPRESS_PAGE QEMU accepts. */
#define COMPRESS_MAX 4110u
#define RAM_KNOWN_FLAGS 0x3feu
#define MIG_CMD_MAX_KNOWN 11

enum batch_kind { BATCH_NONE, BATCH_DATA, BATCH_ZERO };

struct parser {
	struct stock_source *src;
	const struct stock_stream_ops *ops;
	struct stock_stream *st;
	const char *name;
	/* current batch of consecutive pages */
	enum batch_kind kind;
	uint32_t bblock;
	uint64_t bfirst, bcount;
	uint8_t *buf;
	/* block of the last record, for CONTINUE (persists across sections) */
	int64_t last_block;
	int in_start;
};

#define OFF(p) ((unsigned long long)stock_source_offset((p)->src))

static int flush(struct parser *p)
{
	int err = 0;

	if (p->kind == BATCH_DATA)
		err = p->ops->pages(p->ops->ctx, p->bblock, p->bfirst, p->bcount, p->buf);
	else if (p->kind == BATCH_ZERO)
		err = p->ops->zero(p->ops->ctx, p->bblock, p->bfirst, p->bcount);
	p->kind = BATCH_NONE;
	p->bcount = 0;
	if (!err && p->ops->progress)
		err = p->ops->progress(p->ops->ctx, stock_source_offset(p->src),
				       stock_source_size(p->src));
	return err;
}

/* The buffer slot for data page `page` of block b, flushing as needed. */
static int data_slot(struct parser *p, uint32_t b, uint64_t page, uint8_t **slot)
{
	int err;

	if (!(p->kind == BATCH_DATA && p->bblock == b &&
	      page == p->bfirst + p->bcount && p->bcount < p->st->batch_pages)) {
		if ((err = flush(p)))
			return err;
		p->kind = BATCH_DATA;
		p->bblock = b;
		p->bfirst = page;
	}
	*slot = p->buf + (size_t)p->bcount * STOCK_PAGE_SIZE;
	return 0;
}

static int add_zero(struct parser *p, uint32_t b, uint64_t page, uint64_t count)
{
	int err;

	if (p->kind == BATCH_ZERO && p->bblock == b &&
	    page == p->bfirst + p->bcount && p->bcount < ZERO_BATCH_MAX) {
		p->bcount += count;
		return 0;
	}
	if ((err = flush(p)))
		return err;
	p->kind = BATCH_ZERO;
	p->bblock = b;
	p->bfirst = page;
	p->bcount = count;
	return 0;
}

/* ------------------------------------------------------------ header */

static int read_idstr(struct parser *p, char out[256], const char *what)
{
	uint8_t len;
	int err;

	if ((err = stock_source_u8(p->src, &len, what)))
		return err;
	if (len == 0)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: %s: idstr length 0",
				     p->name, OFF(p) - 1, what);
	if ((err = stock_source_read(p->src, out, len, what)))
		return err;
	out[len] = 0;
	if (memchr(out, 0, len))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: %s: idstr contains NUL",
				     p->name, OFF(p) - len, what);
	return 0;
}

static void add_cap(struct stock_stream *st, const char *name)
{
	size_t n = strlen(st->caps);

	snprintf(st->caps + n, sizeof(st->caps) - n, "%s%s", n ? "," : "", name);
}

static int parse_capabilities(struct parser *p)
{
	struct stock_stream *st = p->st;
	uint32_t count, i;
	uint64_t off;
	char name[256];
	int err;

	st->caps_count_off = stock_source_offset(p->src);
	if ((err = stock_source_be32(p->src, &count, "configuration/capabilities")))
		return err;
	/* QEMU 7.2 validates 1 capability, master 2; 64 is generous. */
	if (count > 64)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: configuration/capabilities: count %u",
				     p->name, (unsigned long long)st->caps_count_off, count);
	for (i = 0; i < count; i++) {
		off = stock_source_offset(p->src);
		if ((err = read_idstr(p, name, "configuration capability")))
			return err;
		add_cap(st, name);
		if (!strcmp(name, "x-ignore-shared"))
			st->ignore_shared = 1;
		else if (!strcmp(name, "mapped-ram")) {
			st->mapped_ram = 1;
			st->mapped_cap_off = off;
			st->mapped_cap_len = (uint32_t)(1 + strlen(name));
		}
	}
	return 0;
}

/*
 * The configuration section: be32 length + machine type, then subsections
 * while the next byte is QEMU_VM_SUBSECTION. Subsections carry no length,
 * so only those whose fields are known can be passed over.
 */
static int parse_configuration(struct parser *p)
{
	struct stock_stream *st = p->st;
	uint32_t len, ver, bits;
	uint8_t type, uuid[16];
	uint64_t off;
	char name[256];
	int err, next;

	if ((err = stock_source_u8(p->src, &type, "configuration section")) ||
	    (err = stock_source_be32(p->src, &len, "configuration section")))
		return err;
	if (len == 0 || len >= sizeof(st->machine))
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: configuration section: machine name length %u",
				     p->name, OFF(p) - 4, len);
	if ((err = stock_source_read(p->src, st->machine, len, "machine name")))
		return err;
	st->machine[len] = 0;
	st->has_config = 1;
	for (;;) {
		if ((err = stock_source_peek(p->src, &next)))
			return err;
		if (next != QEMU_VM_SUBSECTION)
			return 0;
		off = stock_source_offset(p->src);
		if ((err = stock_source_u8(p->src, &type, "subsection")) ||
		    (err = read_idstr(p, name, "configuration subsection")) ||
		    (err = stock_source_be32(p->src, &ver, "subsection version")))
			return err;
		if (!strcmp(name, "configuration/capabilities")) {
			err = parse_capabilities(p);
		} else if (!strcmp(name, "configuration/uuid")) {
			err = stock_source_read(p->src, uuid, 16, "configuration/uuid");
		} else if (!strcmp(name, "configuration/target-page-bits")) {
			if ((err = stock_source_be32(p->src, &bits, name)))
				return err;
			st->target_page_bits = bits;
			if (bits != STOCK_PAGE_SHIFT)
				return fvm_error_set(FVM_EUNSUPPORTED, 0,
						     "%s: offset %llu: target page bits %u: only 4 KiB target pages are supported",
						     p->name, OFF(p) - 4, bits);
		} else {
			return fvm_error_set(FVM_EUNSUPPORTED, 0,
					     "%s: offset %llu: unknown configuration subsection '%s': its end cannot be found",
					     p->name, (unsigned long long)off, name);
		}
		if (err)
			return err;
	}
}

/* ------------------------------------------------------------ commands */

static int parse_command(struct parser *p)
{
	static const int fixed_len[MIG_CMD_MAX_KNOWN + 1] = {
		[1] = 0, [2] = 4, [3] = -1, [4] = 0, [5] = 0, [6] = -1,
		[7] = 4, [8] = 0, [9] = 0, [10] = -1, [11] = 0,
	};
	uint64_t off = stock_source_offset(p->src);
	uint16_t cmd, len;
	uint8_t type, data[65535];
	int err;

	if ((err = stock_source_u8(p->src, &type, "command")) ||
	    (err = stock_source_be16(p->src, &cmd, "command")) ||
	    (err = stock_source_be16(p->src, &len, "command")))
		return err;
	if (cmd == 0 || cmd > MIG_CMD_MAX_KNOWN)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: command %u unknown",
				     p->name, (unsigned long long)off, cmd);
	if (fixed_len[cmd] >= 0 && len != fixed_len[cmd])
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: command %u: length %u, expected %d",
				     p->name, (unsigned long long)off, cmd, len, fixed_len[cmd]);
	if (cmd == 7)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: command PACKAGED (postcopy): not supported",
				     p->name, (unsigned long long)off);
	if (cmd == 3)
		p->st->postcopy_advised = 1;
	p->st->commands++;
	return stock_source_read(p->src, data, len, "command data");
}

/* ------------------------------------------------------------ sections */

struct section {
	uint8_t type;
	uint32_t id, instance, version;
	char idstr[256];
	uint64_t off;
};

static int read_section_header(struct parser *p, struct section *sec)
{
	int err;

	sec->off = stock_source_offset(p->src);
	sec->idstr[0] = 0;
	if ((err = stock_source_u8(p->src, &sec->type, "section header")) ||
	    (err = stock_source_be32(p->src, &sec->id, "section header")))
		return err;
	if (sec->type != QEMU_VM_SECTION_START && sec->type != QEMU_VM_SECTION_FULL)
		return 0;
	if ((err = read_idstr(p, sec->idstr, "section header")) ||
	    (err = stock_source_be32(p->src, &sec->instance, "section header")) ||
	    (err = stock_source_be32(p->src, &sec->version, "section header")))
		return err;
	return 0;
}

static const char *type_name(int t)
{
	switch (t) {
	case QEMU_VM_SECTION_START: return "START";
	case QEMU_VM_SECTION_PART: return "PART";
	case QEMU_VM_SECTION_END: return "END";
	case QEMU_VM_SECTION_FULL: return "FULL";
	default: return "?";
	}
}

static int footer(struct parser *p, const struct section *sec, int first)
{
	uint32_t id;
	uint8_t type;
	int err, next;

	if ((err = stock_source_peek(p->src, &next)))
		return err;
	if (next != QEMU_VM_SECTION_FOOTER) {
		if (p->st->footers)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: offset %llu: ram %s section %u has no footer (byte 0x%02x)",
					     p->name, OFF(p), type_name(sec->type), sec->id,
					     next < 0 ? 0 : next);
		return 0;
	}
	if (!first && !p->st->footers)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: footer after a ram %s section although the START had none",
				     p->name, OFF(p), type_name(sec->type));
	if ((err = stock_source_u8(p->src, &type, "section footer")) ||
	    (err = stock_source_be32(p->src, &id, "section footer")))
		return err;
	if (id != sec->id)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: footer of section %u follows section %u",
				     p->name, OFF(p) - 5, id, sec->id);
	p->st->footers = 1;
	return 0;
}

/* ------------------------------------------------------------ ram */

static int find_block(struct parser *p, const char *name, uint32_t *index)
{
	uint32_t i;

	for (i = 0; i < p->st->nblocks; i++)
		if (!strcmp(p->st->blocks[i].name, name)) {
			*index = i;
			return 0;
		}
	return FVM_ENOTFOUND;
}

static int mapped_block(struct parser *p, uint32_t index);

static int block_entry(struct parser *p, uint64_t *remaining)
{
	struct stock_stream *st = p->st;
	struct stock_ram_block *b, *nb;
	uint64_t off = stock_source_offset(p->src), v;
	uint8_t hdr[8];
	uint32_t dummy;
	int err;

	if (st->nblocks >= STOCK_MAX_BLOCKS)
		return fvm_error_set(FVM_ERANGE, 0, "%s: offset %llu: more than %u RAM blocks",
				     p->name, (unsigned long long)off, STOCK_MAX_BLOCKS);
	nb = realloc(st->blocks, (st->nblocks + 1) * sizeof(*nb));
	if (!nb)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: block list", p->name);
	st->blocks = nb;
	b = &nb[st->nblocks];
	memset(b, 0, sizeof(*b));
	if ((err = read_idstr(p, b->name, "MEM_SIZE block entry")) ||
	    (err = stock_source_be64(p->src, &b->length, "MEM_SIZE block length")))
		return err;
	if (!find_block(p, b->name, &dummy))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: block %s listed twice",
				     p->name, (unsigned long long)off, b->name);
	if (b->length == 0 || b->length % STOCK_PAGE_SIZE || b->length > *remaining)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: block %s: length %llu (not a non-zero multiple of 4 KiB within the %llu bytes left of the MEM_SIZE total)",
				     p->name, (unsigned long long)off, b->name,
				     (unsigned long long)b->length,
				     (unsigned long long)*remaining);
	/*
	 * Postcopy's page-size field is written only for blocks whose page
	 * size differs from the host's, and nothing in the stream says which
	 * ones: a power of two from 8 KiB to 1 GiB cannot start a block entry
	 * (idstr length >= 1 makes the be64 >= 2^56) nor be a ram record (flags
	 * 0), so it is the field.
	 */
	if (st->postcopy_advised) {
		if ((err = stock_source_peek_bytes(p->src, hdr, 8, "block page size")))
			return err;
		v = (uint64_t)hdr[0] << 56 | (uint64_t)hdr[1] << 48 |
		    (uint64_t)hdr[2] << 40 | (uint64_t)hdr[3] << 32 |
		    (uint64_t)hdr[4] << 24 | (uint64_t)hdr[5] << 16 |
		    (uint64_t)hdr[6] << 8 | hdr[7];
		if (v >= 8192 && v <= ((uint64_t)1 << 30) && !(v & (v - 1))) {
			b->has_page_size = 1;
			b->page_size = v;
			if ((err = stock_source_be64(p->src, &v, "block page size")))
				return err;
		}
	}
	if (st->ignore_shared) {
		b->has_addr = 1;
		if ((err = stock_source_be64(p->src, &b->addr, "block address")))
			return err;
	}
	*remaining -= b->length;
	st->nblocks++;
	if ((err = p->ops->block(p->ops->ctx, st->nblocks - 1, b)))
		return err;
	if (st->mapped_ram)
		return mapped_block(p, st->nblocks - 1);
	return 0;
}

static int mem_size(struct parser *p, uint64_t total, uint64_t off)
{
	uint64_t remaining = total;
	int err;

	if (!p->in_start || p->st->nblocks)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: MEM_SIZE record outside the ram START section",
				     p->name, (unsigned long long)off);
	if (total == 0)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: MEM_SIZE total 0",
				     p->name, (unsigned long long)off);
	/* Both optional fields would make the page-size field ambiguous. */
	if (p->st->postcopy_advised && p->st->ignore_shared)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: postcopy stream with x-ignore-shared: the block list cannot be read unambiguously",
				     p->name, (unsigned long long)off);
	p->st->total_bytes = total;
	while (remaining)
		if ((err = block_entry(p, &remaining)))
			return err;
	return 0;
}

static int page_block(struct parser *p, uint64_t flags, uint64_t addr,
		      uint64_t off, uint32_t *index, uint64_t *page)
{
	char name[256];
	uint32_t i;
	int err;

	if (flags & RAM_SAVE_FLAG_CONTINUE) {
		if (p->last_block < 0)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: offset %llu: ram record with CONTINUE but no previous block",
					     p->name, (unsigned long long)off);
		i = (uint32_t)p->last_block;
	} else {
		if ((err = read_idstr(p, name, "ram record block")))
			return err;
		if (find_block(p, name, &i))
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: offset %llu: ram record for unknown block '%s'",
					     p->name, (unsigned long long)off, name);
		p->last_block = i;
	}
	if (addr >= p->st->blocks[i].length)
		return fvm_error_set(FVM_ERANGE, 0,
				     "%s: offset %llu: ram record at offset 0x%llx past the end of block %s (0x%llx bytes)",
				     p->name, (unsigned long long)off, (unsigned long long)addr,
				     p->st->blocks[i].name,
				     (unsigned long long)p->st->blocks[i].length);
	*index = i;
	*page = addr >> STOCK_PAGE_SHIFT;
	return 0;
}

static int compressed_page(struct parser *p, uint8_t *slot, uint64_t off)
{
	uint8_t in[COMPRESS_MAX];
	uLongf out_len = STOCK_PAGE_SIZE;
	uint32_t len;
	int err, zr;

	if ((err = stock_source_be32(p->src, &len, "COMPRESS_PAGE length")))
		return err;
	if (len == 0 || len > COMPRESS_MAX)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: COMPRESS_PAGE length %u (1..%u allowed)",
				     p->name, (unsigned long long)off, len, COMPRESS_MAX);
	if ((err = stock_source_read(p->src, in, len, "COMPRESS_PAGE data")))
		return err;
	zr = uncompress(slot, &out_len, in, len);
	if (zr != Z_OK || out_len != STOCK_PAGE_SIZE)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: COMPRESS_PAGE does not inflate to one 4096-byte page (zlib %d, %lu bytes)",
				     p->name, (unsigned long long)off, zr,
				     (unsigned long)(zr == Z_OK ? out_len : 0));
	return 0;
}

/* Records of one ram section, up to and including EOS. */
static int ram_records(struct parser *p)
{
	uint64_t hdr, flags, addr, off, page;
	uint32_t b;
	uint8_t ch, *slot;
	int err;

	for (;;) {
		off = stock_source_offset(p->src);
		if ((err = stock_source_be64(p->src, &hdr, "ram record")))
			return err;
		flags = hdr & (STOCK_PAGE_SIZE - 1);
		addr = hdr & ~(uint64_t)(STOCK_PAGE_SIZE - 1);
		if (flags & ~(uint64_t)RAM_KNOWN_FLAGS)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: offset %llu: ram record with unknown flags 0x%llx",
					     p->name, (unsigned long long)off,
					     (unsigned long long)flags);
		if (flags & RAM_SAVE_FLAG_XBZRLE)
			return fvm_error_set(FVM_EUNSUPPORTED, 0,
					     "%s: offset %llu: XBZRLE ram record (a delta against a page of a live migration): cannot be converted",
					     p->name, (unsigned long long)off);
		if (flags & RAM_SAVE_FLAG_HOOK)
			return fvm_error_set(FVM_EUNSUPPORTED, 0,
					     "%s: offset %llu: RDMA hook ram record: cannot be converted",
					     p->name, (unsigned long long)off);
		switch (flags & ~(uint64_t)RAM_SAVE_FLAG_CONTINUE) {
		case RAM_SAVE_FLAG_MEM_SIZE:
			if ((err = mem_size(p, addr, off)))
				return err;
			break;
		case RAM_SAVE_FLAG_ZERO:
			if ((err = page_block(p, flags, addr, off, &b, &page)) ||
			    (err = stock_source_u8(p->src, &ch, "ZERO record")))
				return err;
			if (ch)
				return fvm_error_set(FVM_ECORRUPT, 0,
						     "%s: offset %llu: ZERO record with fill byte 0x%02x (QEMU writes 0)",
						     p->name, (unsigned long long)off, ch);
			p->st->zero_records++;
			if ((err = add_zero(p, b, page, 1)))
				return err;
			break;
		case RAM_SAVE_FLAG_PAGE:
			if ((err = page_block(p, flags, addr, off, &b, &page)) ||
			    (err = data_slot(p, b, page, &slot)) ||
			    (err = stock_source_read(p->src, slot, STOCK_PAGE_SIZE, "PAGE record")))
				return err;
			p->bcount++;
			p->st->page_records++;
			break;
		case RAM_SAVE_FLAG_COMPRESS_PAGE:
			if ((err = page_block(p, flags, addr, off, &b, &page)) ||
			    (err = data_slot(p, b, page, &slot)) ||
			    (err = compressed_page(p, slot, off)))
				return err;
			p->bcount++;
			p->st->compressed_records++;
			break;
		case RAM_SAVE_FLAG_EOS:
			return 0;
		case RAM_SAVE_FLAG_MULTIFD_FLUSH:
			break;
		default:
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: offset %llu: ram record with flags 0x%llx",
					     p->name, (unsigned long long)off,
					     (unsigned long long)flags);
		}
	}
}

/* ------------------------------------------------------------ mapped-ram */

static uint64_t get_be(const uint8_t *b, int n)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = v << 8 | b[i];
	return v;
}

/* Data pages [first, first+count) of a mapped-ram block, in batches. */
static int mapped_data(struct parser *p, uint32_t index, uint64_t first,
		       uint64_t count)
{
	const struct stock_ram_block *b = &p->st->blocks[index];
	uint64_t n;
	int err;

	while (count) {
		if ((err = flush(p)))
			return err;
		n = count < p->st->batch_pages ? count : p->st->batch_pages;
		if ((err = stock_source_pread(p->src, p->buf, (size_t)n * STOCK_PAGE_SIZE,
					      b->pages_offset + first * STOCK_PAGE_SIZE,
					      "mapped-ram pages")))
			return err;
		p->kind = BATCH_DATA;
		p->bblock = index;
		p->bfirst = first;
		p->bcount = n;
		p->st->mapped_data_pages += n;
		first += n;
		count -= n;
	}
	return 0;
}

/*
 * A mapped-ram block: the 28-byte header follows the block entry; the
 * bitmap (host-endian unsigned longs: little-endian 64-bit, x86_64 hosts)
 * says which pages were written at pages_offset + page * 4 KiB; the
 * stream goes on at pages_offset + length.
 */
static int mapped_block(struct parser *p, uint32_t index)
{
	struct stock_ram_block *b = &p->st->blocks[index];
	uint64_t off = stock_source_offset(p->src), size, pages, bmsize, i, j;
	uint8_t hdr[28], *bm = NULL;
	int err, set;

	if ((err = stock_source_read(p->src, hdr, sizeof(hdr), "mapped-ram header")))
		return err;
	b->mapped = 1;
	b->mr_version = (uint32_t)get_be(hdr, 4);
	b->mr_page_size = get_be(hdr + 4, 8);
	b->bitmap_offset = get_be(hdr + 12, 8);
	b->pages_offset = get_be(hdr + 20, 8);
	if (b->mr_version != 1)
		return fvm_error_set(FVM_EVERSION, 0,
				     "%s: offset %llu: block %s: mapped-ram header version %u (1 supported)",
				     p->name, (unsigned long long)off, b->name, b->mr_version);
	if (b->mr_page_size != STOCK_PAGE_SIZE)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: block %s: mapped-ram page size %llu (4096 supported)",
				     p->name, (unsigned long long)off, b->name,
				     (unsigned long long)b->mr_page_size);
	/* QEMU 11 marks blocks it skipped (x-ignore-shared) with offsets 0. */
	if (b->bitmap_offset == 0 && b->pages_offset == 0)
		return 0;
	if (!stock_source_seekable(p->src))
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: mapped-ram stream: its pages lie at fixed file offsets, a seekable input is needed (not a pipe)",
				     p->name);
	size = stock_source_size(p->src);
	pages = b->length / STOCK_PAGE_SIZE;
	bmsize = (pages + 63) / 64 * 8;
	if (b->bitmap_offset > size || bmsize > size - b->bitmap_offset ||
	    b->pages_offset > size || b->length > size - b->pages_offset)
		return fvm_error_set(FVM_ETRUNCATED, 0,
				     "%s: offset %llu: block %s: mapped-ram bitmap at %llu (+%llu) or pages at %llu (+%llu) past the end of the file (%llu)",
				     p->name, (unsigned long long)off, b->name,
				     (unsigned long long)b->bitmap_offset, (unsigned long long)bmsize,
				     (unsigned long long)b->pages_offset, (unsigned long long)b->length,
				     (unsigned long long)size);
	if (b->pages_offset < b->bitmap_offset + bmsize && b->bitmap_offset < b->pages_offset + b->length)
		return fvm_error_set(FVM_ECORRUPT, 0,
				     "%s: offset %llu: block %s: mapped-ram bitmap overlaps the pages",
				     p->name, (unsigned long long)off, b->name);
	bm = malloc(bmsize ? bmsize : 1);
	if (!bm)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: mapped-ram bitmap of %llu bytes",
				     p->name, (unsigned long long)bmsize);
	if ((err = stock_source_pread(p->src, bm, bmsize, b->bitmap_offset,
				      "mapped-ram bitmap")))
		goto out;
	for (i = 0; i < pages; i = j) {
		set = bm[i / 8] >> (i % 8) & 1;
		for (j = i + 1; j < pages && (bm[j / 8] >> (j % 8) & 1) == set; j++)
			;
		if (set)
			err = mapped_data(p, index, i, j - i);
		else if (!p->st->ignore_shared) {
			/* Not written: zero (fresh destination RAM); with
			 * x-ignore-shared a shared block's pages are absent. */
			p->st->mapped_zero_pages += j - i;
			err = add_zero(p, index, i, j - i);
		}
		if (err)
			goto out;
	}
	err = stock_source_seek(p->src, b->pages_offset + b->length);
out:
	free(bm);
	return err;
}

/* ------------------------------------------------------------ top level */

/*
 * The kept tail is not parsed (device sections have no length), but its
 * end is: QEMU ends a stream with EOF (0x00), then usually the device
 * description (0x06, be32 length, JSON). Finding exactly that at the end
 * catches truncated files, which QEMU would only notice while loading.
 */
/*
 * With section footers, the byte before EOF closes the last device section:
 * a footer (0x7e, be32 section id). EOF is 0x00, which device state is full
 * of, so without this a stream cut anywhere on a zero byte looked whole.
 */
static int eof_after_footer(const struct parser *p, const uint8_t *d, size_t eof)
{
	if (!p->st->footers)
		return 1;
	if (eof == 0) /* no device section at all: EOF right after the ram END */
		return 1;
	return eof >= 5 && d[eof - 5] == QEMU_VM_SECTION_FOOTER && get_be(d + eof - 4, 4) < 65536;
}

static int check_tail(struct parser *p)
{
	const uint8_t *d = p->st->post_ram.data;
	size_t len = p->st->post_ram.len, q;

	if (len == 0)
		return fvm_error_set(FVM_ETRUNCATED, 0,
				     "%s: offset %llu: stream ends after the ram END section (no device state, no EOF)",
				     p->name, OFF(p));
	if (d[len - 1] == '}') {
		for (q = len - 1; q-- > 1;) {
			if (d[q] != QEMU_VM_VMDESCRIPTION || q + 5 >= len || d[q - 1] != QEMU_VM_EOF ||
			    get_be(d + q + 1, 4) != len - q - 5 || d[q + 5] != '{' ||
			    !eof_after_footer(p, d, q - 1))
				continue;
			p->st->vmdesc_off = q + 5;
			p->st->vmdesc_len = len - q - 5;
			return 0;
		}
	}
	if (d[len - 1] == QEMU_VM_EOF && eof_after_footer(p, d, len - 1))
		return 0;
	return fvm_error_set(FVM_ETRUNCATED, 0,
			     "%s: offset %llu: stream does not end as QEMU ends one (the last device "
			     "section's footer, EOF, and the device description where the source wrote "
			     "one): truncated?", p->name, OFF(p));
}

static int keep_rest(struct parser *p)
{
	uint8_t chunk[65536];
	size_t got;
	int err;

	stock_source_capture(p->src, &p->st->post_ram);
	for (;;) {
		if ((err = stock_source_read_some(p->src, chunk, sizeof(chunk), &got)))
			return err;
		if (!got)
			break;
	}
	stock_source_capture(p->src, NULL);
	return check_tail(p);
}

static int refuse_section(struct parser *p, const struct section *sec, const char *where)
{
	if (sec->type == QEMU_VM_SECTION_START)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: iterable section '%s' (START, id %u) %s: only \"ram\" can be delimited, its end cannot be found",
				     p->name, (unsigned long long)sec->off, sec->idstr, sec->id, where);
	if (sec->type == QEMU_VM_SECTION_FULL)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: device section '%s' (FULL, id %u) %s: device sections have no length, only those after the ram END can be kept",
				     p->name, (unsigned long long)sec->off, sec->idstr, sec->id, where);
	return fvm_error_set(FVM_EUNSUPPORTED, 0,
			     "%s: offset %llu: %s section id %u is not the ram section (id %u): other iterable sections cannot be delimited",
			     p->name, (unsigned long long)sec->off, type_name(sec->type),
			     sec->id, p->st->section_id);
}

static int unknown_type(struct parser *p, int type, const char *where)
{
	if (type < 0)
		return fvm_error_set(FVM_ETRUNCATED, 0, "%s: offset %llu: stream ends %s",
				     p->name, OFF(p), where);
	if (type == QEMU_VM_EOF)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: EOF section %s",
				     p->name, OFF(p), where);
	return fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: unknown section type 0x%02x %s",
			     p->name, OFF(p), type, where);
}

/* From the file header up to (not including) the ram START section. */
static int pre_ram(struct parser *p, struct section *sec)
{
	struct stock_stream *st = p->st;
	uint32_t magic, version;
	size_t mark = 0;
	int err, type;

	stock_source_capture(p->src, &st->pre_ram);
	if ((err = stock_source_be32(p->src, &magic, "file header")))
		return err;
	if (magic != STOCK_QEVM_MAGIC)
		return fvm_error_set(FVM_EMAGIC, 0,
				     "%s: offset 0: magic 0x%08x is not a QEMU migration stream (QEVM)",
				     p->name, magic);
	if ((err = stock_source_be32(p->src, &version, "file header")))
		return err;
	if (version != 3)
		return fvm_error_set(FVM_EVERSION, 0,
				     "%s: offset 4: migration stream version %u (only 3 is read; QEMU refuses 2 too)",
				     p->name, version);
	if ((err = stock_source_peek(p->src, &type)))
		return err;
	if (type == QEMU_VM_CONFIGURATION && (err = parse_configuration(p)))
		return err;
	for (;;) {
		if ((err = stock_source_peek(p->src, &type)))
			return err;
		if (type == QEMU_VM_COMMAND) {
			if ((err = parse_command(p)))
				return err;
			continue;
		}
		if (type != QEMU_VM_SECTION_START && type != QEMU_VM_SECTION_FULL)
			return unknown_type(p, type, "before the ram section");
		mark = st->pre_ram.len;
		if ((err = read_section_header(p, sec)))
			return err;
		if (sec->type == QEMU_VM_SECTION_START && !strcmp(sec->idstr, "ram"))
			break;
		return refuse_section(p, sec, "before the ram section");
	}
	st->pre_ram.len = mark;
	stock_source_capture(p->src, NULL);
	if (sec->version != 4)
		return fvm_error_set(FVM_EUNSUPPORTED, 0,
				     "%s: offset %llu: ram section version %u (4 supported)",
				     p->name, (unsigned long long)sec->off, sec->version);
	st->section_id = sec->id;
	st->instance_id = sec->instance;
	st->version_id = sec->version;
	return 0;
}

int stock_stream_parse(struct stock_source *src,
		       const struct stock_stream_ops *ops,
		       struct stock_stream *st)
{
	struct parser p = { .src = src, .ops = ops, .st = st, .last_block = -1 };
	struct section sec;
	int err, type;

	p.name = stock_source_name(src);
	if (!st->batch_pages)
		st->batch_pages = DEFAULT_BATCH_PAGES;
	if (!st->keep_max)
		st->keep_max = DEFAULT_KEEP_MAX;
	st->pre_ram.max = st->mid_ram.max = st->post_ram.max = st->keep_max;
	p.buf = malloc((size_t)st->batch_pages * STOCK_PAGE_SIZE);
	if (!p.buf)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: page batch", p.name);

	if ((err = pre_ram(&p, &sec)))
		goto out;
	p.in_start = 1;
	if ((err = ram_records(&p)))
		goto out;
	p.in_start = 0;
	st->ram_sections++;
	if (!st->nblocks) {
		err = fvm_error_set(FVM_ECORRUPT, 0, "%s: offset %llu: ram START section without a MEM_SIZE block list",
				    p.name, (unsigned long long)sec.off);
		goto out;
	}
	if ((err = footer(&p, &sec, 1)))
		goto out;
	for (;;) {
		if ((err = stock_source_peek(src, &type)))
			goto out;
		if (type == QEMU_VM_COMMAND) {
			stock_source_capture(src, &st->mid_ram);
			err = parse_command(&p);
			stock_source_capture(src, NULL);
			if (err)
				goto out;
			continue;
		}
		if (type < QEMU_VM_SECTION_START || type > QEMU_VM_SECTION_FULL) {
			err = unknown_type(&p, type, "before the ram END section");
			goto out;
		}
		if ((err = read_section_header(&p, &sec)))
			goto out;
		if (sec.type == QEMU_VM_SECTION_START || sec.type == QEMU_VM_SECTION_FULL ||
		    sec.id != st->section_id) {
			err = refuse_section(&p, &sec, "before the ram END section");
			goto out;
		}
		if ((err = ram_records(&p)) || (err = footer(&p, &sec, 0)))
			goto out;
		st->ram_sections++;
		if (sec.type == QEMU_VM_SECTION_END)
			break;
	}
	if ((err = flush(&p)))
		goto out;
	st->ram_end_offset = stock_source_offset(src);
	err = keep_rest(&p);
out:
	stock_source_capture(src, NULL);
	free(p.buf);
	return err;
}

void stock_stream_release(struct stock_stream *st)
{
	stock_buf_release(&st->pre_ram);
	stock_buf_release(&st->mid_ram);
	stock_buf_release(&st->post_ram);
	free(st->blocks);
	st->blocks = NULL;
	st->nblocks = 0;
}

/* ------------------------------------------------------------ ram desc */

#define DESC_MAGIC "FVQR"
#define DESC_VERSION 1
enum {
	DESC_FOOTERS = 1, DESC_IGNORE_SHARED = 2, DESC_MAPPED_RAM = 4,
	DESC_POSTCOPY = 8
};

static int put_be(struct stock_buf *b, uint64_t v, int n)
{
	uint8_t t[8];
	int i;

	for (i = 0; i < n; i++)
		t[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return stock_buf_append(b, t, (size_t)n);
}

int stock_ram_desc_encode(const struct stock_stream *st, struct stock_buf *out)
{
	uint32_t flags = 0, i;
	int err = 0;

	if (st->footers)
		flags |= DESC_FOOTERS;
	if (st->ignore_shared)
		flags |= DESC_IGNORE_SHARED;
	if (st->mapped_ram)
		flags |= DESC_MAPPED_RAM;
	if (st->postcopy_advised)
		flags |= DESC_POSTCOPY;
	if (!out->max)
		out->max = (size_t)1 << 24;
	if ((err = stock_buf_append(out, DESC_MAGIC, 4)) ||
	    (err = put_be(out, DESC_VERSION, 4)) ||
	    (err = put_be(out, st->section_id, 4)) ||
	    (err = put_be(out, st->instance_id, 4)) ||
	    (err = put_be(out, st->version_id, 4)) ||
	    (err = put_be(out, flags, 4)) ||
	    (err = put_be(out, st->caps_count_off, 8)) ||
	    (err = put_be(out, st->mapped_cap_off, 8)) ||
	    (err = put_be(out, st->mapped_cap_len, 4)) ||
	    (err = put_be(out, st->nblocks, 4)))
		return err;
	for (i = 0; i < st->nblocks; i++) {
		const struct stock_ram_block *b = &st->blocks[i];
		uint8_t len = (uint8_t)strlen(b->name);

		if ((err = stock_buf_append(out, &len, 1)) ||
		    (err = stock_buf_append(out, b->name, len)) ||
		    (err = put_be(out, b->length, 8)) ||
		    (err = put_be(out, (uint64_t)(b->has_page_size | b->has_addr << 1), 1)) ||
		    (err = put_be(out, b->page_size, 8)) ||
		    (err = put_be(out, b->addr, 8)))
			return err;
	}
	return 0;
}

int stock_ram_desc_decode(const void *data, size_t len, const char *name,
			  struct stock_stream *st)
{
	const uint8_t *d = data;
	size_t pos = 48;
	uint32_t flags, n, i;

	if (len < 48 || memcmp(d, DESC_MAGIC, 4))
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: device state qemu.ram-section: bad magic or size %zu",
				     name, len);
	if (get_be(d + 4, 4) != DESC_VERSION)
		return fvm_error_set(FVM_EVERSION, 0, "%s: qemu.ram-section version %llu (1 supported)",
				     name, (unsigned long long)get_be(d + 4, 4));
	st->section_id = (uint32_t)get_be(d + 8, 4);
	st->instance_id = (uint32_t)get_be(d + 12, 4);
	st->version_id = (uint32_t)get_be(d + 16, 4);
	flags = (uint32_t)get_be(d + 20, 4);
	st->footers = !!(flags & DESC_FOOTERS);
	st->ignore_shared = !!(flags & DESC_IGNORE_SHARED);
	st->mapped_ram = !!(flags & DESC_MAPPED_RAM);
	st->postcopy_advised = !!(flags & DESC_POSTCOPY);
	st->caps_count_off = get_be(d + 24, 8);
	st->mapped_cap_off = get_be(d + 32, 8);
	st->mapped_cap_len = (uint32_t)get_be(d + 40, 4);
	n = (uint32_t)get_be(d + 44, 4);
	if (n == 0 || n > STOCK_MAX_BLOCKS)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qemu.ram-section: %u blocks", name, n);
	st->blocks = calloc(n, sizeof(*st->blocks));
	if (!st->blocks)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "%s: qemu.ram-section", name);
	st->nblocks = n;
	st->total_bytes = 0;
	for (i = 0; i < n; i++) {
		struct stock_ram_block *b = &st->blocks[i];
		uint8_t l;

		if (pos >= len || (l = d[pos]) == 0 || len - pos - 1 < (size_t)l + 25)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: qemu.ram-section: block entry %u at byte %zu truncated",
					     name, i, pos);
		memcpy(b->name, d + pos + 1, l);
		b->name[l] = 0;
		pos += 1 + l;
		b->length = get_be(d + pos, 8);
		b->has_page_size = d[pos + 8] & 1;
		b->has_addr = d[pos + 8] >> 1 & 1;
		b->page_size = get_be(d + pos + 9, 8);
		b->addr = get_be(d + pos + 17, 8);
		pos += 25;
		if (b->length == 0 || b->length % STOCK_PAGE_SIZE ||
		    st->total_bytes + b->length < st->total_bytes)
			return fvm_error_set(FVM_ECORRUPT, 0,
					     "%s: qemu.ram-section: block %s length %llu",
					     name, b->name, (unsigned long long)b->length);
		st->total_bytes += b->length;
	}
	if (pos != len)
		return fvm_error_set(FVM_ECORRUPT, 0, "%s: qemu.ram-section: %zu trailing bytes",
				     name, len - pos);
	return 0;
}
