/*
 * Fuzz target for the reader and loader: any bytes, opened as a seekable
 * file and as a stream. Must not crash, leak or write outside the mapped
 * blocks (guard pages); when a file is accepted its listings must agree
 * (tu_check_consistent), fvm_load and fvm_reader_read_pages must give the
 * same bytes, and when fvm_verify accepts it too, a stream load must give
 * those bytes as well (R68: the index is what the segments say). Each input
 * also runs with its CRCs recomputed (reseal.c: chunk CRCs, and frames'
 * crc_stored so the decoders see mutated frames), so mutations get past
 * the checksums.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc.h"
#include "fastvm/experimental.h"
#include "fastvm/fastvm.h"
#include "format.h"
#include "reseal.h"
#include "testutil.h"

/* Blocks larger than this are left unmapped (FVM_LOAD_PARTIAL). */
#define MAX_MAP (8u << 20)
#define MAX_TOTAL (32u << 20)

struct maps {
	fvm_mapping m[64];
	uint32_t id[64];
	uint64_t ps[64];
	size_t n;
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_reader: %s (detail: %s)\n", what, fvm_error_detail());
	abort();
}

static void maps_make(fvm_reader *r, struct maps *mp, int fill)
{
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	uint64_t total = 0;

	mp->n = 0;
	if (fvm_reader_info(r, &fi))
		return;
	for (uint32_t i = 0; i < fi.block_count && mp->n < 64; i++) {
		fvm_block_info bi = FVM_BLOCK_INFO_INIT;
		uint8_t *p;

		if (fvm_reader_block(r, i, &bi) || bi.length > MAX_MAP ||
		    total + bi.length > MAX_TOTAL)
			continue;
		p = tu_guard_alloc(bi.length, fill);
		if (!p)
			continue;
		total += bi.length;
		mp->id[mp->n] = i;
		mp->ps[mp->n] = bi.page_size;
		mp->m[mp->n++] = (fvm_mapping){ sizeof(fvm_mapping), 0, bi.name, p, bi.length, (i & 1) ? bi.page_size : 0 };
	}
}

static void maps_free(struct maps *mp)
{
	for (size_t i = 0; i < mp->n; i++)
		tu_guard_free(mp->m[i].addr, mp->m[i].length);
	mp->n = 0;
}

static int memfd_with(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		die("memfd_create");
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0)
			die("write");
		done += (size_t)n;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* Load through a stream reader and compare with the seekable load in ref. */
static void stream_check(int fd, const struct maps *ref, int verified)
{
	fvm_reader *r = NULL;
	struct maps mp;
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	int rc;

	lseek(fd, 0, SEEK_SET);
	if (fvm_reader_open_stream(&r, fd, "fuzz-stream")) {
		if (verified)
			die("verified file refused by the stream reader");
		return;
	}
	/* blocks are the same as the seekable reader's when the file verified */
	maps_make(r, &mp, 0xAA);
	o.flags = FVM_LOAD_PARTIAL | FVM_LOAD_VERIFY;
	o.zero_policy = FVM_ZERO_MEMSET;
	rc = fvm_load(r, mp.m, mp.n, &o, NULL);
	if (rc == 0) {
		const char *why = tu_check_consistent(r);

		if (why) {
			fprintf(stderr, "stream listing: %s\n", why);
			abort();
		}
	}
	if (verified) {
		if (rc)
			die("verified file: stream load failed");
		for (size_t i = 0; i < mp.n; i++)
			for (size_t k = 0; k < ref->n; k++)
				if (!strcmp(mp.m[i].name, ref->m[k].name) &&
				    memcmp(mp.m[i].addr, ref->m[k].addr, mp.m[i].length))
					die("stream load and indexed load differ");
	}
	maps_free(&mp);
	fvm_reader_free(r);
}

static void one_input(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_as_is_and_resealed(data, size, one_input);
	return 0;
}

static void one_input(const uint8_t *data, size_t size)
{
	fvm_reader *r = NULL;
	struct maps mp;
	fvm_load_options o = FVM_LOAD_OPTIONS_INIT;
	fvm_load_tuning t = FVM_LOAD_TUNING_INIT;
	fvm_file_info fi = FVM_FILE_INFO_INIT;
	const char *why;
	int fd = memfd_with(data, size), rc, verified;

	if (fvm_reader_open_fd(&r, fd, "fuzz")) {
		if (!fvm_error_detail()[0])
			die("refused without a detail");
		stream_check(fd, NULL, 0);
		close(fd);
		return;
	}
	why = tu_check_consistent(r);
	if (why) {
		fprintf(stderr, "inconsistent listing: %s\n", why);
		abort();
	}
	if (fvm_reader_info(r, &fi))
		die("info");
	/* the seeds' key: the MAC and the tags are checked, or refuse */
	if (fi.authenticated && fvm_reader_set_key(r, fuzz_key, sizeof(fuzz_key)) &&
	    !fvm_error_detail()[0])
		die("set_key failed without a detail");

	maps_make(r, &mp, 0xAA);
	o.flags = FVM_LOAD_PARTIAL | (size & 1 ? FVM_LOAD_VERIFY : 0) |
		  (size & 8 ? FVM_LOAD_DIRECT : 0);
	o.zero_policy = FVM_ZERO_MEMSET;
	o.backend = size & 2 ? FVM_BACKEND_URING : FVM_BACKEND_PREAD;
	t.chunk_bytes = size & 4 ? 4096 : 0;
	o.tuning = &t;
	rc = fvm_load(r, mp.m, mp.n, &o, NULL);
	if (rc && !fvm_error_detail()[0])
		die("load failed without a detail");

	/* read_pages gives what the load wrote (absent pages as zeros, like MEMSET) */
	if (rc == 0)
		for (size_t i = 0; i < mp.n; i++) {
			uint8_t *buf = malloc(mp.m[i].length);

			if (buf && fvm_reader_read_pages(r, mp.id[i], 0, mp.m[i].length / mp.ps[i],
							 buf) == 0 &&
			    memcmp(buf, mp.m[i].addr, mp.m[i].length))
				die("read_pages and fvm_load differ");
			free(buf);
		}

	for (uint32_t i = 0; i < fi.devstate_count; i++) {
		fvm_devstate_info di = FVM_DEVSTATE_INFO_INIT;

		if (fvm_reader_devstate(r, i, &di))
			die("devstate listing");
		if (di.length <= MAX_MAP) {
			uint8_t *buf = malloc(di.length + 1), *piece = malloc(di.length + 1);
			size_t got, step = 1 + (size & 63);

			/* read whole, then in pieces: the same bytes, or an error */
			if (buf && piece && fvm_reader_devstate_read(r, i, buf, di.length) == 0) {
				for (uint64_t off = 0; off < di.length; off += got) {
					if (fvm_reader_devstate_pread(r, i, piece + off, step, off, &got))
						break;
					if (!got || got > step)
						die("devstate_pread returned a wrong count");
					if (memcmp(piece + off, buf + off, got))
						die("devstate_pread and devstate_read differ");
				}
			}
			if (piece && fvm_reader_devstate_pread(r, i, piece, 1, di.length, &got) == 0 &&
			    got)
				die("devstate_pread past the end returned bytes");
			free(buf);
			free(piece);
		}
	}
	verified = fvm_verify(r, NULL, NULL) == 0;
	if (verified && rc == FVM_ECHECKSUM)
		die("verify accepts a file whose load found a checksum error");
	/* an authenticated file is never read as a stream (FORMAT.md 4.6) */
	stream_check(fd, &mp, verified && rc == 0 && !fi.authenticated);
	maps_free(&mp);
	fvm_reader_free(r);
	close(fd);
}
