/*
 * inspect on stock inputs (a migration stream, a mapped-ram file or a qcow2
 * snapshot's VM state): parse the stream once, keep one state byte per
 * page (absent, zero, data; the last record of a page wins, like the
 * loader) and report what conversion would produce: blocks, data and zero
 * pages, runs and their length histogram (the buckets of the fvm inspect),
 * the kept device state and the stream's records. Names from the input go
 * through the escapers of tools/common/ (JSON strings, text names), the
 * same as for every other fvmsnap output; the buckets are common/hist.h's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "hist.h"
#include "input.h"
#include "stock.h"
#include "stream.h"


enum { PG_ABSENT = 0, PG_ZERO = 1, PG_DATA = 2 };

struct iblock {
	uint8_t *state;
	uint64_t pages, data, zero, data_runs, zero_runs;
};

struct ictx {
	struct iblock *b;
	uint32_t n;
	uint64_t runs[HIST_BUCKETS][2], rpages[HIST_BUCKETS][2];
};

static int ib_block(void *ctx, uint32_t index, const struct stock_ram_block *b)
{
	struct ictx *c = ctx;
	struct iblock *nb;

	nb = realloc(c->b, (index + 1) * sizeof(*nb));
	if (!nb)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "inspect: block list");
	c->b = nb;
	memset(&nb[index], 0, sizeof(*nb));
	nb[index].pages = b->length / STOCK_PAGE_SIZE;
	c->n = index + 1;
	if (nb[index].pages > SIZE_MAX)
		return fvm_error_set(FVM_ENOMEM, 0, "inspect: block %s too large", b->name);
	nb[index].state = calloc((size_t)nb[index].pages, 1);
	if (!nb[index].state)
		return fvm_error_set(FVM_ENOMEM, ENOMEM, "inspect: page map of block %s (%llu pages)",
				     b->name, (unsigned long long)nb[index].pages);
	return 0;
}

static int ib_pages(void *ctx, uint32_t block, uint64_t first, uint64_t count,
		    const void *data)
{
	struct ictx *c = ctx;
	const uint64_t *w = data;
	uint64_t i, k;

	/* A data record may hold zeros (QEMU 7.2 sends PAGE for pages that
	 * turned zero only rarely; mapped-ram writes them); count as the
	 * writer will store them. */
	for (i = 0; i < count; i++) {
		uint8_t st = PG_ZERO;

		for (k = 0; k < STOCK_PAGE_SIZE / 8; k++)
			if (w[i * (STOCK_PAGE_SIZE / 8) + k]) {
				st = PG_DATA;
				break;
			}
		c->b[block].state[first + i] = st;
	}
	return 0;
}

static int ib_zero(void *ctx, uint32_t block, uint64_t first, uint64_t count)
{
	struct ictx *c = ctx;

	memset(c->b[block].state + first, PG_ZERO, (size_t)count);
	return 0;
}

static void tally(struct ictx *c)
{
	uint32_t i;
	uint64_t p, q;

	for (i = 0; i < c->n; i++) {
		struct iblock *b = &c->b[i];

		for (p = 0; p < b->pages; p = q) {
			uint8_t s = b->state[p];
			unsigned k;

			for (q = p + 1; q < b->pages && b->state[q] == s; q++)
				;
			if (s == PG_ABSENT)
				continue;
			k = hist_bucket(q - p);
			c->runs[k][s == PG_DATA]++;
			c->rpages[k][s == PG_DATA] += q - p;
			if (s == PG_DATA) {
				b->data += q - p;
				b->data_runs++;
			} else {
				b->zero += q - p;
				b->zero_runs++;
			}
		}
	}
}

#define U(x) ((unsigned long long)(x))

/* Names from the input, in text output: never raw bytes to the terminal. */
static void text_name(FILE *out, const char *s, int width)
{
	text_safe(out, s, width);
}

/* The source format, as convert records it in source.format. */
static const char *format_name(const struct stock_input *in,
			       const struct stock_stream *st)
{
	return in->kind == STOCK_INPUT_QCOW2 ? "qcow2-internal-snapshot" :
	       st->mapped_ram ? "qemu-mapped-ram" : "qemu-migration-stream";
}

static void put_utf8(char *buf, size_t *n, size_t max, uint32_t cp)
{
	char u[4];
	size_t k;

	if (cp < 0x80) {
		u[0] = (char)cp, k = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (*n + k <= max) {
		memcpy(buf + *n, u, k);
		*n += k;
	}
}

static int hex4(const char *d, size_t len, size_t i, uint32_t *cp)
{
	size_t k;

	*cp = 0;
	if (i + 4 > len)
		return -1;
	for (k = i; k < i + 4; k++) {
		char c = d[k];

		*cp <<= 4;
		if (c >= '0' && c <= '9')
			*cp |= (uint32_t)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			*cp |= (uint32_t)((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	return 0;
}

/*
 * The JSON string starting at d[i] (after its opening quote), decoded into
 * buf (at most max bytes; longer names are cut): QEMU's JSON writer
 * escapes control characters and non-ASCII as \uXXXX. Bytes that are not
 * escaped are copied as they are (a hostile description may hold any).
 * Returns the index of the closing quote, or len when there is none.
 */
static size_t json_unquote(const char *d, size_t len, size_t i, char *buf,
			   size_t max, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	uint32_t cp, lo;

	*n = 0;
	for (; i < len && d[i] != '"'; i++) {
		const char *e;

		if (d[i] != '\\') {
			if (*n < max)
				buf[(*n)++] = d[i];
			continue;
		}
		if (++i >= len)
			return len;
		if (d[i] != 'u') {
			if (!d[i] || !(e = strchr(from, d[i])))
				return len; /* not JSON: not a device entry */
			if (*n < max)
				buf[(*n)++] = to[e - from];
			continue;
		}
		if (hex4(d, len, i + 1, &cp))
			return len;
		i += 4;
		if (cp >= 0xd800 && cp <= 0xdbff && i + 2 < len && d[i + 1] == '\\' &&
		    d[i + 2] == 'u' && !hex4(d, len, i + 3, &lo) &&
		    lo >= 0xdc00 && lo <= 0xdfff) {
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			i += 6;
		} else if (cp >= 0xd800 && cp <= 0xdfff) {
			cp = 0xfffd; /* a lone surrogate has no UTF-8 form */
		}
		put_utf8(buf, n, max, cp);
	}
	return i;
}

/*
 * Device sections named by the JSON description (vmdesc) at the end of the
 * stream: each top-level device is {"name": "...", "instance_id": N, ...}.
 * A scan, not a JSON parser: the description is informative only (QEMU's
 * loader ignores it), and the device bytes themselves are kept opaque.
 * Every bound is checked: the description is input like the rest.
 */
static void each_device(const struct stock_stream *st, FILE *out, int json)
{
	static const char key[] = "{\"name\": \"", inst[] = "\", \"instance_id\": ";
	const char *d = "";
	size_t len = st->vmdesc_len, i, j, k, n = 0, nlen;
	char name[1024 + 24]; /* the name, then "/instance" */

	if (!st->post_ram.data || st->vmdesc_off > st->post_ram.len ||
	    len > st->post_ram.len - st->vmdesc_off)
		len = 0;
	else
		d = (const char *)st->post_ram.data + st->vmdesc_off;
	for (i = 0; i + sizeof(key) - 1 < len; i++) {
		unsigned long long id = 0;

		if (memcmp(d + i, key, sizeof(key) - 1))
			continue;
		i += sizeof(key) - 1;
		j = json_unquote(d, len, i, name, 1024, &nlen);
		if (j >= len || len - j < sizeof(inst) - 1 ||
		    memcmp(d + j, inst, sizeof(inst) - 1))
			continue;
		k = j + sizeof(inst) - 1;
		if (k >= len || d[k] < '0' || d[k] > '9')
			continue;
		for (; k < len && d[k] >= '0' && d[k] <= '9' && id < 100000000000ull; k++)
			id = id * 10 + (unsigned long long)(d[k] - '0');
		nlen += (size_t)snprintf(name + nlen, sizeof(name) - nlen, "/%llu", id);
		if (json) {
			fputs(n ? ", " : "", out);
			json_mem(out, name, nlen);
		} else {
			fputs(n % 6 ? ", " : "\n    ", out);
			text_safe_mem(out, name, nlen, 0);
		}
		n++;
		i = j;
	}
	if (!json)
		fprintf(out, "%s\n", n ? "" : " (no device description)");
}
static void print_text(FILE *out, const char *path, const struct stock_input *in,
		       const struct stock_qcow2_snapshot *sn,
		       const struct stock_stream *st, const struct ictx *c)
{
	uint64_t len = 0, data = 0, zero = 0, dr = 0, zr = 0;
	uint32_t i;
	int k;

	for (i = 0; i < c->n; i++) {
		len += st->blocks[i].length;
		data += c->b[i].data;
		zero += c->b[i].zero;
		dr += c->b[i].data_runs;
		zr += c->b[i].zero_runs;
	}
	fputs("input:        ", out);
	text_name(out, strcmp(path, "-") ? path : "standard input", 0);
	fprintf(out, " (%s)\n", in->kind == STOCK_INPUT_QCOW2 ? "qcow2 internal snapshot" :
		st->mapped_ram ? "QEMU mapped-ram file" : "QEMU migration stream");
	if (sn) {
		fputs("snapshot:     id ", out);
		text_name(out, sn->id, 0);
		fputs(", name ", out);
		text_name(out, sn->name, 0);
		fputc('\n', out);
	}
	fputs("machine:      ", out);
	text_name(out, st->has_config ? st->machine : "(no configuration section)", 0);
	fputs("\ncapabilities: ", out);
	text_name(out, st->caps[0] ? st->caps : "(none)", 0);
	fputc('\n', out);
	fprintf(out, "ram section:  id %u, instance %u, version %u, %s, %llu sections\n",
		st->section_id, st->instance_id, st->version_id,
		st->footers ? "footers" : "no footers", U(st->ram_sections));
	fprintf(out, "records:      %llu PAGE, %llu ZERO, %llu COMPRESS_PAGE, %llu commands\n",
		U(st->page_records), U(st->zero_records), U(st->compressed_records),
		U(st->commands));
	if (st->mapped_ram)
		fprintf(out, "mapped-ram:   %llu pages written, %llu not written\n",
			U(st->mapped_data_pages), U(st->mapped_zero_pages));
	fprintf(out, "RAM:          %llu bytes in %u blocks; %llu data pages, %llu zero pages, %llu absent\n",
		U(len), c->n, U(data), U(zero), U(len / STOCK_PAGE_SIZE - data - zero));
	fprintf(out, "zero share:   %.1f%% of RAM (%llu data runs, %llu zero runs)\n",
		len ? 100.0 * (1.0 - (double)(data * STOCK_PAGE_SIZE) / (double)len) : 0.0,
		U(dr), U(zr));
	fprintf(out, "\nblocks:\n  %-4s %-28s %14s %10s %10s %9s %9s\n", "id", "name",
		"length", "data pages", "zero pages", "data runs", "zero runs");
	for (i = 0; i < c->n; i++) {
		fprintf(out, "  %-4u ", i);
		text_name(out, st->blocks[i].name, 28);
		fprintf(out, " %14llu %10llu %10llu %9llu %9llu\n",
			U(st->blocks[i].length), U(c->b[i].data),
			U(c->b[i].zero), U(c->b[i].data_runs), U(c->b[i].zero_runs));
	}
	fprintf(out, "\nrun lengths (pages; power-of-two buckets):\n");
	fprintf(out, "  %-23s %9s %10s %9s %10s\n", "pages", "data runs", "data pages",
		"zero runs", "zero pages");
	for (k = 0; k < HIST_BUCKETS; k++) {
		char range[48];

		if (!c->runs[k][0] && !c->runs[k][1])
			continue;
		hist_bucket_label(range, sizeof(range), k);
		fprintf(out, "  %-23s %9llu %10llu %9llu %10llu\n", range,
			U(c->runs[k][1]), U(c->rpages[k][1]), U(c->runs[k][0]),
			U(c->rpages[k][0]));
	}
	fprintf(out, "\ndevice state kept by convert (doc/QEMU.md):\n");
	fprintf(out, "  qemu.pre-ram      %zu bytes (header, configuration, commands)\n",
		st->pre_ram.len);
	fprintf(out, "  qemu.ram-section  block list of %u blocks\n", st->nblocks);
	if (st->mid_ram.len)
		fprintf(out, "  qemu.ram-mid      %zu bytes (commands between ram sections)\n",
			st->mid_ram.len);
	fprintf(out, "  qemu.post-ram     %zu bytes (device sections, EOF, description)\n",
		st->post_ram.len);
	fprintf(out, "\ndevice sections (name/instance, from the description):");
	each_device(st, out, 0);
}

/* The capabilities as an array: st->caps holds them comma separated. */
static void json_caps(FILE *out, const char *caps)
{
	const char *p = caps, *e;

	fputc('[', out);
	while (*p) {
		e = strchr(p, ',');
		if (!e)
			e = p + strlen(p);
		fputs(p == caps ? "" : ", ", out);
		json_mem(out, p, (size_t)(e - p));
		p = *e ? e + 1 : e;
	}
	fputc(']', out);
}

static void print_json(FILE *out, const char *path, const struct stock_input *in,
		       const struct stock_qcow2_snapshot *sn,
		       const struct stock_stream *st, const struct ictx *c)
{
	uint64_t len = 0, data = 0, zero = 0;
	uint32_t i;
	int k, first = 1;

	for (i = 0; i < c->n; i++) {
		len += st->blocks[i].length;
		data += c->b[i].data;
		zero += c->b[i].zero;
	}
	fprintf(out, "{\n  \"schema\": \"fvmsnap-inspect-stock/1\",\n  \"input\": ");
	json_str(out, path);
	fprintf(out, ",\n  \"snapshot\": ");
	if (sn) {
		fprintf(out, "{\"id\": ");
		json_str(out, sn->id);
		fprintf(out, ", \"name\": ");
		json_str(out, sn->name);
		fprintf(out, "}");
	} else {
		fprintf(out, "null");
	}
	fprintf(out, ",\n  \"format\": \"%s\",\n  \"machine\": ", format_name(in, st));
	json_str(out, st->machine);
	fprintf(out, ",\n  \"capabilities\": ");
	json_caps(out, st->caps);
	fprintf(out, ",\n  \"ram_section\": {\"id\": %u, \"instance\": %u, \"version\": %u, "
		"\"footers\": %s, \"sections\": %llu},\n", st->section_id, st->instance_id,
		st->version_id, st->footers ? "true" : "false", U(st->ram_sections));
	fprintf(out, "  \"records\": {\"page\": %llu, \"zero\": %llu, \"compress_page\": %llu, "
		"\"commands\": %llu},\n", U(st->page_records), U(st->zero_records),
		U(st->compressed_records), U(st->commands));
	if (st->mapped_ram)
		fprintf(out, "  \"mapped_ram\": {\"written_pages\": %llu, \"unwritten_pages\": %llu},\n",
			U(st->mapped_data_pages), U(st->mapped_zero_pages));
	else
		fprintf(out, "  \"mapped_ram\": null,\n");
	fprintf(out, "  \"length\": %llu, \"pages\": %llu, \"data_pages\": %llu, "
		"\"zero_pages\": %llu, \"zero_share\": %.6f,\n", U(len), U(len / STOCK_PAGE_SIZE),
		U(data), U(zero),
		len ? 1.0 - (double)(data * STOCK_PAGE_SIZE) / (double)len : 0.0);
	fprintf(out, "  \"blocks\": [");
	for (i = 0; i < c->n; i++) {
		fprintf(out, "%s\n    {\"id\": %u, \"name\": ", i ? "," : "", i);
		json_str(out, st->blocks[i].name);
		fprintf(out, ", \"length\": %llu, \"page_size\": %u, \"pages\": %llu, "
			"\"data_pages\": %llu, \"zero_pages\": %llu, \"absent_pages\": %llu, "
			"\"data_runs\": %llu, \"zero_runs\": %llu}",
			U(st->blocks[i].length), STOCK_PAGE_SIZE, U(c->b[i].pages),
			U(c->b[i].data), U(c->b[i].zero),
			U(c->b[i].pages - c->b[i].data - c->b[i].zero),
			U(c->b[i].data_runs), U(c->b[i].zero_runs));
	}
	fprintf(out, "%s],\n  \"run_histogram\": [", c->n ? "\n  " : "");
	for (k = 0; k < HIST_BUCKETS; k++) {
		if (!c->runs[k][0] && !c->runs[k][1])
			continue;
		fprintf(out, "%s\n    {\"min_pages\": %llu, \"max_pages\": %llu, "
			"\"data_runs\": %llu, \"data_pages\": %llu, "
			"\"zero_runs\": %llu, \"zero_pages\": %llu}",
			first ? "" : ",", 1ull << k, U(hist_bucket_max(k)),
			U(c->runs[k][1]), U(c->rpages[k][1]),
			U(c->runs[k][0]), U(c->rpages[k][0]));
		first = 0;
	}
	fprintf(out, "%s],\n  \"devstate\": [", first ? "" : "\n  ");
	fprintf(out, "\n    {\"name\": \"qemu.pre-ram\", \"size\": %zu},", st->pre_ram.len);
	if (st->mid_ram.len)
		fprintf(out, "\n    {\"name\": \"qemu.ram-mid\", \"size\": %zu},", st->mid_ram.len);
	fprintf(out, "\n    {\"name\": \"qemu.post-ram\", \"size\": %zu}\n  ],\n",
		st->post_ram.len);
	fprintf(out, "  \"devices\": [");
	each_device(st, out, 1);
	fprintf(out, "]\n}\n");
}

int stock_inspect(const char *path, const char *snapshot, int json, FILE *out)
{
	struct stock_input in;
	struct stock_stream st;
	struct ictx c;
	struct stock_stream_ops ops = { &c, ib_block, ib_pages, ib_zero, NULL };
	uint32_t i;
	int err;

	memset(&st, 0, sizeof(st));
	memset(&c, 0, sizeof(c));
	err = stock_input_open(&in, path, snapshot);
	if (!err)
		err = stock_stream_parse(in.src, &ops, &st);
	if (!err) {
		const struct stock_qcow2_snapshot *sn = NULL;

		if (in.kind == STOCK_INPUT_QCOW2)
			sn = stock_qcow2_snapshot(in.q, in.snapshot);
		tally(&c);
		if (json)
			print_json(out, path, &in, sn, &st, &c);
		else
			print_text(out, path, &in, sn, &st, &c);
	}
	for (i = 0; i < c.n; i++)
		free(c.b[i].state);
	free(c.b);
	stock_stream_release(&st);
	stock_input_close(&in);
	return err;
}
