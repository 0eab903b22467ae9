/*
 * Authenticated snapshots (doc/FORMAT.md 4.6, 5.2): a file written with a
 * key loads, reads and verifies only with that key, through every backend
 * that copies; without it, or with another, payload and device state are
 * refused; and an attacker's edits that keep every CRC right (the payload,
 * a tag, a metadata value, the salt, a device-state record, the index's
 * tags, key id and MAC, chunks swapped with their tags, a chunk and tag
 * replayed from another file made with the same key) are all refused,
 * naming what failed, before the bytes are used. A key given for a file
 * that has none is refused; so are the mmap backend (a lazy load goes
 * through userfaultfd instead: test_lazy_auth.c) and a stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crc.h"
#include "fastvm/fastvm.h"
#include "format.h"
#include "reader.h"
#include "testutil.h"

#define PAGE 4096u
#define PAGES 1200u
#define BIG_DEVS (2500u << 10) /* a section of three 1 MiB parts */

static char dir[256];
static uint8_t key[FVM_KEY_BYTES], key2[FVM_KEY_BYTES];
static uint8_t *mem, *rom, *devs_big;

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

/* pc.ram (written whole, or with put_pages twice over), rom, three sections, meta. */
static void write_file(const char *path, const uint8_t *k, int streaming)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	fvm_writer *w;
	uint32_t b, rb;

	o.flags = FVM_WRITE_NO_FSYNC;
	o.segment_bytes = 1u << 20; /* several segments */
	o.key = k;
	assert_int_equal(fvm_writer_open_path(&w, path, &o), 0);
	assert_int_equal(fvm_writer_add_meta(w, "machine", "pc-q35-7.2"), 0);
	assert_int_equal(fvm_writer_add_block(w, "pc.ram", (uint64_t)PAGES * PAGE, PAGE, &b), 0);
	assert_int_equal(fvm_writer_add_block(w, "rom", 2 * PAGE, PAGE, &rb), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "dev", "state", 5), 0);
	if (!streaming) {
		assert_int_equal(fvm_writer_write_block(w, b, mem), 0);
	} else {
		uint8_t *junk = malloc(300 * PAGE);
		struct tu_rng r;

		tu_rng_seed(&r, 99);
		tu_fill_random(&r, junk, 300 * PAGE);
		assert_int_equal(fvm_writer_put_pages(w, b, 100, 300, junk), 0);
		free(junk);
		for (uint64_t p = 0; p < PAGES; p += 97) {
			uint64_t n = PAGES - p < 97 ? PAGES - p : 97;

			assert_int_equal(fvm_writer_put_pages(w, b, p, n, mem + p * PAGE), 0);
		}
	}
	assert_int_equal(fvm_writer_write_block(w, rb, rom), 0);
	assert_int_equal(fvm_writer_devstate_begin(w, "big"), 0);
	for (size_t at = 0; at < BIG_DEVS; at += 300000)
		assert_int_equal(fvm_writer_devstate_write(w, devs_big + at, BIG_DEVS - at < 300000 ?
							   BIG_DEVS - at : 300000), 0);
	assert_int_equal(fvm_writer_devstate_end(w), 0);
	assert_int_equal(fvm_writer_add_devstate(w, "last", "end", 3), 0);
	assert_int_equal(fvm_writer_finish(w), 0);
	fvm_writer_free(w);
}

static int load(fvm_reader *r, uint8_t *ram, uint8_t *r2, int backend, uint32_t flags)
{
	fvm_mapping m[2] = { FVM_MAPPING_INIT, FVM_MAPPING_INIT };
	fvm_load_options lo = FVM_LOAD_OPTIONS_INIT;

	m[0].name = "pc.ram";
	m[0].addr = ram;
	m[0].length = (uint64_t)PAGES * PAGE;
	m[1].name = "rom";
	m[1].addr = r2;
	m[1].length = 2 * PAGE;
	lo.backend = backend;
	lo.flags = flags;
	lo.zero_policy = FVM_ZERO_MEMSET;
	return fvm_load(r, m, flags & FVM_LOAD_PARTIAL ? 1 : 2, &lo, NULL);
}

static void expect(int rc, int want, const char *word)
{
	if (rc != want || (word && !strstr(fvm_error_detail(), word)))
		fail_msg("got %d (%s), expected %d with \"%s\"", rc, fvm_error_detail(), want,
			 word ? word : "");
}

/* All of it with the key; every payload and devstate call refused before it. */
static void check_good(const char *path)
{
	uint64_t len = (uint64_t)PAGES * PAGE;
	uint8_t *ram = tu_guard_alloc(len, 0xa5), *r2 = tu_guard_alloc(2 * PAGE, 0xa5);
	uint8_t *buf = malloc(BIG_DEVS > len ? BIG_DEVS : len);
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t id = 0;
	fvm_reader *r;
	size_t got;
	int rc;

	assert_int_equal(fvm_reader_open(&r, path), 0);
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_true(fi.authenticated);
	assert_false(fi.key_checked);
	assert_int_equal(fi.version_minor, 3);
	assert_int_equal(fi.incompat_features, 4);
	assert_int_equal(fvm_key_id(key, sizeof(key), &id), 0);
	assert_int_equal(fi.key_id, id);
	/* listings work, reads do not */
	assert_string_equal(fvm_reader_meta_get(r, "machine"), "pc-q35-7.2");
	expect(load(r, ram, r2, FVM_BACKEND_AUTO, 0), FVM_EAUTH, "key is needed");
	expect(fvm_reader_read_pages(r, 0, 0, 1, buf), FVM_EAUTH, "key is needed");
	expect(fvm_reader_devstate_read(r, 0, buf, 5), FVM_EAUTH, "key is needed");
	expect(fvm_reader_devstate_pread(r, 1, buf, 5, 0, &got), FVM_EAUTH, "key is needed");
	expect(fvm_verify(r, NULL, NULL), FVM_EAUTH, "key is needed");
	/* another key, a short one */
	expect(fvm_reader_set_key(r, key2, sizeof(key2)), FVM_EAUTH, "key id");
	expect(fvm_reader_set_key(r, key, 31), FVM_EINVAL, "32 expected");
	assert_int_equal(fvm_reader_set_key(r, key, sizeof(key)), 0);
	expect(fvm_reader_set_key(r, key, sizeof(key)), FVM_ESTATE, "already");
	assert_int_equal(fvm_reader_info(r, &fi), 0);
	assert_true(fi.key_checked);

	for (int backend = FVM_BACKEND_AUTO; backend <= FVM_BACKEND_PREAD; backend++) {
		memset(ram, 0xa5, len);
		memset(r2, 0xa5, 2 * PAGE);
		assert_int_equal(load(r, ram, r2, backend, 0), 0);
		assert_memory_equal(ram, mem, len);
		assert_memory_equal(r2, rom, 2 * PAGE);
	}
	memset(ram, 0xa5, len);
	assert_int_equal(load(r, ram, r2, FVM_BACKEND_AUTO, FVM_LOAD_PARTIAL | FVM_LOAD_VERIFY), 0);
	assert_memory_equal(ram, mem, len);
	expect(load(r, ram, r2, FVM_BACKEND_MMAP, 0), FVM_EUNSUPPORTED, "cannot be mapped");
	/* lazily through userfaultfd (tests/test_lazy_auth.c has the rest) */
	memset(ram, 0xa5, len);
	memset(r2, 0xa5, 2 * PAGE);
	rc = load(r, ram, r2, FVM_BACKEND_MMAP, FVM_LOAD_LAZY);
	if (rc != FVM_EUNSUPPORTED || !strstr(fvm_error_detail(), "userfaultfd")) {
		fvm_prefetch *pf;

		expect(rc, 0, NULL);
		assert_int_equal(fvm_prefetch_start(r, 0, &pf), 0);
		assert_int_equal(fvm_prefetch_wait(pf), 0);
		fvm_prefetch_free(pf);
		assert_memory_equal(ram, mem, len);
		assert_memory_equal(r2, rom, 2 * PAGE);
	}
	for (uint64_t p = 0; p < PAGES; p += 13) {
		uint64_t n = PAGES - p < 13 ? PAGES - p : 13;

		assert_int_equal(fvm_reader_read_pages(r, 0, p, n, buf), 0);
		assert_memory_equal(buf, mem + p * PAGE, n * PAGE);
	}
	assert_int_equal(fvm_reader_devstate_read(r, 0, buf, 5), 0);
	assert_memory_equal(buf, "state", 5);
	assert_int_equal(fvm_reader_devstate_read(r, 1, buf, BIG_DEVS), 0);
	assert_memory_equal(buf, devs_big, BIG_DEVS);
	for (uint64_t at = 0; at < BIG_DEVS; at += got) {
		assert_int_equal(fvm_reader_devstate_pread(r, 1, buf, 77777, at, &got), 0);
		assert_memory_equal(buf, devs_big + at, got);
	}
	assert_int_equal(fvm_verify(r, NULL, NULL), 0);
	fvm_reader_free(r);
	tu_guard_free(ram, len);
	tu_guard_free(r2, 2 * PAGE);
	free(buf);
}

static void test_roundtrip(void **state)
{
	char p[300];

	(void)state;
	path_of(p, sizeof(p), "whole.fvm");
	write_file(p, key, 0);
	check_good(p);
	path_of(p, sizeof(p), "streamed.fvm");
	write_file(p, key, 1);
	check_good(p);
}

static void test_key_parse(void **state)
{
	char t[80];
	uint8_t k[FVM_KEY_BYTES];

	(void)state;
	for (int i = 0; i < 32; i++)
		snprintf(t + 2 * i, 3, "%02X", key[i]);
	assert_int_equal(fvm_key_parse(t, 64, k, sizeof(k)), 0);
	assert_memory_equal(k, key, sizeof(k));
	t[64] = '\n';
	assert_int_equal(fvm_key_parse(t, 65, k, sizeof(k)), 0);
	assert_memory_equal(k, key, sizeof(k));
	expect(fvm_key_parse(t, 63, k, sizeof(k)), FVM_EINVAL, "63 bytes");
	expect(fvm_key_parse(t, 66, k, sizeof(k)), FVM_EINVAL, "byte 64");
	t[64] = '0';
	expect(fvm_key_parse(t, 65, k, sizeof(k)), FVM_EINVAL, "65 bytes");
	t[10] = 'g';
	expect(fvm_key_parse(t, 64, k, sizeof(k)), FVM_EINVAL, "byte 10");
	expect(fvm_key_parse(t, 64, k, 16), FVM_EINVAL, "32 expected");
}

static void test_refusals(void **state)
{
	fvm_write_options o = FVM_WRITE_OPTIONS_INIT;
	char p[300];
	fvm_reader *r;
	fvm_writer *w;
	int fd;

	(void)state;
	/* a key for a file that has none: what a stripped file looks like */
	path_of(p, sizeof(p), "plain.fvm");
	write_file(p, NULL, 0);
	assert_int_equal(fvm_reader_open(&r, p), 0);
	expect(fvm_reader_set_key(r, key, sizeof(key)), FVM_EAUTH, "not an authenticated");
	fvm_reader_free(r);
	/* not as a stream */
	path_of(p, sizeof(p), "whole.fvm");
	write_file(p, key, 0);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	expect(fvm_reader_open_stream(&r, fd, "pipe"), FVM_EUNSUPPORTED, "stream");
	close(fd);
	/* not compressed, in this version */
	o.key = key;
	o.codec = FVM_CODEC_ZSTD;
	path_of(p, sizeof(p), "c.fvm");
	if (fvm_codec_available(FVM_CODEC_ZSTD))
		expect(fvm_writer_open_path(&w, p, &o), FVM_EINVAL, "compressed");
}

/* ---- tampering: what an attacker without the key can do to the bytes */

static uint8_t *file_of(const char *path, size_t *len)
{
	uint8_t *b = tu_read_file(path, len);

	assert_non_null(b);
	return b;
}

/* The record at off gets its CRC recomputed (R11), as an attacker would. */
static void recrc(uint8_t *b, uint64_t off)
{
	uint64_t body_len = fvm_ld64(b + off + 8);
	uint32_t c = fvm_crc32c(0, b + off, 4);

	c = fvm_crc32c(c, b + off + 8, 8);
	c = fvm_crc32c(c, b + off + 16, body_len);
	fvm_st32(b + off + 4, c);
}

struct where {
	uint64_t data, tags;  /* first data extent of pc.ram: payload, its tags */
	uint64_t pages;
	uint64_t meta, devs_big, index, auth; /* records; the index's auth area */
};

static void locate(const char *path, struct where *wh)
{
	fvm_reader *r;

	assert_int_equal(fvm_reader_open(&r, path), 0);
	memset(wh, 0, sizeof(*wh));
	for (uint64_t i = 0; i < r->m.next; i++)
		if ((r->m.ext[i].flags & FVM_RUN_FLAG_DATA) && r->m.ext[i].page_count >= 4) {
			wh->data = r->m.ext[i].payload_offset;
			wh->tags = r->m.ext[i].crc_offset;
			wh->pages = r->m.ext[i].page_count;
			break;
		}
	wh->meta = r->m.meta[0].rec_offset;
	wh->devs_big = r->m.parts[1].rec_offset;
	wh->index = r->m.index_offset;
	{
		uint8_t *ib;
		size_t len;

		ib = file_of(path, &len);
		wh->auth = wh->index + 16 + fvm_ld64(ib + wh->index + 8) - 8 -
			   16 * (uint64_t)r->m.nparts - 32;
		free(ib);
	}
	assert_true(wh->data && wh->tags);
	fvm_reader_free(r);
}

/*
 * Open the edited file, give the key, load, read the sections, verify:
 * some step fails with want (at open, FVM_ECORRUPT etc. are failures too
 * for the test: the edits keep every CRC right). Returns the step: 0 open,
 * 1 set_key, 2 load, 3 devstate, 4 verify.
 */
static int first_failure(const char *path, int want, const char *word)
{
	uint64_t len = (uint64_t)PAGES * PAGE;
	uint8_t *ram = tu_guard_alloc(len, 0), *r2 = tu_guard_alloc(2 * PAGE, 0);
	uint8_t *buf = malloc(BIG_DEVS);
	fvm_reader *r;
	int rc, step = 0;

	rc = fvm_reader_open(&r, path);
	if (!rc && (step = 1, rc = fvm_reader_set_key(r, key, sizeof(key))) == 0 &&
	    (step = 2, rc = load(r, ram, r2, FVM_BACKEND_AUTO, 0)) == 0 &&
	    (step = 3, rc = fvm_reader_devstate_read(r, 1, buf, BIG_DEVS)) == 0)
		step = 4, rc = fvm_verify(r, NULL, NULL);
	expect(rc, want, word);
	if (step > 0)
		fvm_reader_free(r);
	tu_guard_free(ram, len);
	tu_guard_free(r2, 2 * PAGE);
	free(buf);
	return step;
}

static void test_tampering(void **state)
{
	char good[300], bad[300], other[300];
	struct where wh;
	uint8_t *b, *o, t[PAGE + FVM_CHK_TAG];
	size_t len, olen;

	(void)state;
	path_of(good, sizeof(good), "good.fvm");
	path_of(bad, sizeof(bad), "bad.fvm");
	path_of(other, sizeof(other), "other.fvm");
	write_file(good, key, 0);
	locate(good, &wh);

	/* a payload byte: load fails naming the page, and so does verify alone */
	b = file_of(good, &len);
	b[wh.data + 2 * PAGE + 17] ^= 1;
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "payload tag does not verify"), 2);
	{
		fvm_reader *r;
		uint8_t *pg = malloc(PAGE * 4);

		assert_int_equal(fvm_reader_open(&r, bad), 0);
		expect(fvm_reader_read_pages(r, 0, 0, 1, pg), FVM_EAUTH, "key is needed");
		assert_int_equal(fvm_reader_set_key(r, key, sizeof(key)), 0);
		expect(fvm_verify(r, NULL, NULL), FVM_EAUTH, "payload tag");
		/* the first data run starts at page 0 of pc.ram (fill in main) */
		expect(fvm_reader_read_pages(r, 0, 0, 4, pg), FVM_EAUTH, "page 2");
		fvm_reader_free(r);
		free(pg);
	}
	free(b);

	/* a chunk tag in its segment */
	b = file_of(good, &len);
	b[wh.tags + FVM_CHK_TAG + 3] ^= 0x80; /* a load reads the index, not the SEGM record */
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "tag does not verify"), 2);
	free(b);

	/* two chunks swapped with their tags: tags are bound to their place */
	b = file_of(good, &len);
	memcpy(t, b + wh.data, PAGE);
	memcpy(b + wh.data, b + wh.data + PAGE, PAGE);
	memcpy(b + wh.data + PAGE, t, PAGE);
	memcpy(t, b + wh.tags, FVM_CHK_TAG);
	memcpy(b + wh.tags, b + wh.tags + FVM_CHK_TAG, FVM_CHK_TAG);
	memcpy(b + wh.tags + FVM_CHK_TAG, t, FVM_CHK_TAG);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "payload tag does not verify"), 2);
	free(b);

	/* a chunk and its tag from another file made with the same key */
	write_file(other, key, 0);
	o = file_of(other, &olen);
	b = file_of(good, &len);
	memset(o + wh.data, 0x5a, PAGE); /* other content, same place */
	assert_int_equal(tu_write_file(other, o, olen), 0);
	free(o);
	{
		/* rewrite other with that content for real, so its tag is genuine */
		uint8_t keep[PAGE];

		memcpy(keep, mem, PAGE);
		memset(mem, 0x5a, PAGE);
		write_file(other, key, 0);
		memcpy(mem, keep, PAGE);
	}
	o = file_of(other, &olen);
	assert_int_equal(olen, len);
	memcpy(b + wh.data, o + wh.data, PAGE);
	memcpy(b + wh.tags, o + wh.tags, FVM_CHK_TAG);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "payload tag does not verify"), 2);
	free(b);
	free(o);

	/* a metadata value, its record CRC made right */
	b = file_of(good, &len);
	b[wh.meta + 16 + 8 + 7 + 2] ^= 1; /* inside "pc-q35-7.2" */
	recrc(b, wh.meta);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "MAC"), 1);
	free(b);

	/* the salt, the header CRC made right */
	b = file_of(good, &len);
	b[45] ^= 1;
	fvm_st32(b + 60, fvm_crc32c(0, b, 60));
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "MAC"), 1);
	free(b);

	/* a device-state byte, its record CRC made right */
	b = file_of(good, &len);
	b[wh.devs_big + 16 + 8 + 3 + 1000] ^= 1;
	recrc(b, wh.devs_big);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "device-state tag"), 3);
	free(b);

	/* the index: a DEVS tag, the key id, the MAC (INDX CRC made right) */
	b = file_of(good, &len);
	b[wh.auth + 8 + 16 + 5] ^= 1;
	recrc(b, wh.index);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "MAC"), 1);
	free(b);
	b = file_of(good, &len);
	b[wh.auth] ^= 1;
	recrc(b, wh.index);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "key id"), 1);
	free(b);
	b = file_of(good, &len);
	b[len - 32 - 8 - 1] ^= 1; /* the MAC's last byte: the index ends 8-aligned before the footer */
	recrc(b, wh.index);
	assert_int_equal(tu_write_file(bad, b, len), 0);
	assert_int_equal(first_failure(bad, FVM_EAUTH, "MAC"), 1);
	free(b);

	/* untouched, it all passes */
	assert_int_equal(first_failure(good, 0, NULL), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_key_parse),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_tampering),
	};
	struct tu_rng r;
	int rc;

	if (!fvm_auth_available()) {
		printf("SKIP: this libfastvm was built without libsodium\n");
		return 77;
	}
	snprintf(dir, sizeof(dir), "%s", tu_tmpdir());
	tu_rng_seed(&r, 7);
	tu_fill_random(&r, key, sizeof(key));
	tu_fill_random(&r, key2, sizeof(key2));
	mem = malloc((size_t)PAGES * PAGE);
	rom = malloc(2 * PAGE);
	devs_big = malloc(BIG_DEVS);
	for (uint64_t p = 0; p < PAGES; p++)
		if ((p / 29) % 3 == 1)
			memset(mem + p * PAGE, 0, PAGE);
		else
			tu_fill_page(&r, mem + p * PAGE, PAGE);
	tu_fill_random(&r, rom, 2 * PAGE);
	tu_fill_random(&r, devs_big, BIG_DEVS);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	tu_tmpdir_remove();
	free(mem);
	free(rom);
	free(devs_big);
	return rc;
}
