/*
 * Checksum resealing for the .fvm fuzz targets (fuzz_reader, fuzz_dest):
 * see reseal.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc.h"
#include "format.h"
#include "reseal.h"

const uint8_t fuzz_key[32] = { 0x66, 0x75, 0x7a, 0x7a, 0x20, 0x6b, 0x65, 0x79, 1, 2, 3, 4, 5,
			       6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
			       21, 22, 23, 24 };

/*
 * COMPRESSED (FORMAT.md 5.1): the crc_stored of every frame the index
 * lists, computed over the bytes at its file_offset (and crc_plain of a
 * stored frame, which equals it, R92), written into the index's frame
 * list; both CRCs of every frame are returned in file order (crc_stored,
 * crc_plain pairs) so that the segments' frame tables get the same ones. crc_plain of a compressed frame is left: the
 * decoder then runs over the mutated bytes and the CRC after it decides.
 * NULL when the index cannot be found or lists no frame.
 */
static uint32_t *reseal_index_frames(uint8_t *b, size_t len, uint64_t *nframes)
{
	uint64_t io = fvm_ld64(b + len - FVM_FOOTER_SIZE), body_len, at, n, nofs;
	uint8_t *body;
	uint32_t *crc;

	*nframes = 0;
	if (io % 8 || io < FVM_HEADER_SIZE || io > len - FVM_FOOTER_SIZE - FVM_RECHDR_SIZE ||
	    fvm_ld32(b + io) != FVM_REC_INDX)
		return NULL;
	body_len = fvm_ld64(b + io + 8);
	body = b + io + FVM_RECHDR_SIZE;
	if (body_len < 24 || body_len > len - FVM_FOOTER_SIZE - io - FVM_RECHDR_SIZE)
		return NULL;
	nofs = (uint64_t)fvm_ld32(body) + fvm_ld32(body + 4) + fvm_ld32(body + 8);
	n = fvm_ld64(body + 16);
	if (n > body_len / FVM_EXTENT_SIZE)
		return NULL;
	at = 24 + 8 * nofs + FVM_EXTENT_SIZE * n;
	if (at > body_len || body_len - at < 8)
		return NULL;
	n = fvm_ld64(body + at);
	at += 8;
	if (n == 0 || n > (body_len - at) / 32)
		return NULL;
	crc = malloc(2 * n * sizeof(*crc));
	if (!crc)
		return NULL;
	for (uint64_t k = 0; k < n; k++) {
		uint8_t *f = body + at + 32 * k;
		uint64_t fo = fvm_ld64(f + 8);
		uint32_t plain = fvm_ld32(f + 16), stored = fvm_ld32(f + 20);

		if (fo <= len && stored <= len - fo) {
			uint32_t c = fvm_crc32c(0, b + fo, stored);

			fvm_st32(f + 24, c);
			if (stored == plain)
				fvm_st32(f + 28, c);
		}
		crc[2 * k] = fvm_ld32(f + 24);
		crc[2 * k + 1] = fvm_ld32(f + 28);
	}
	*nframes = n;
	return crc;
}

/*
 * Recompute every CRC the bytes claim to have (header, records, chunk CRCs
 * of segment payloads, frames' crc_stored, footer), walking records as far
 * as their lengths allow. Mutated inputs would otherwise almost all stop at
 * the first CRC; resealed, they reach the structural rules behind it.
 */
void fuzz_reseal(uint8_t *b, size_t len)
{
	uint64_t off = FVM_HEADER_SIZE, nframes = 0, k = 0;
	uint32_t *fcrc = NULL;
	int with_crc, compressed;

	if (len < FVM_HEADER_SIZE + FVM_FOOTER_SIZE)
		return;
	fvm_st32(b + 60, fvm_crc32c(0, b, 60));
	with_crc = (int)(fvm_ld64(b + 16) & FVM_INCOMPAT_PAYLOAD_CRC);
	compressed = (int)(fvm_ld64(b + 16) & FVM_INCOMPAT_COMPRESSED);
	if (compressed)
		fcrc = reseal_index_frames(b, len, &nframes);
	while (off % 8 == 0 && off + FVM_RECHDR_SIZE <= len - FVM_FOOTER_SIZE) {
		uint32_t type = fvm_ld32(b + off);
		uint64_t body_len = fvm_ld64(b + off + 8), end = len - FVM_FOOTER_SIZE;
		uint8_t *body = b + off + FVM_RECHDR_SIZE;
		uint64_t next;

		if (body_len > end - off - FVM_RECHDR_SIZE)
			break;
		next = fvm_rec_next(off, body_len);
		if (type == FVM_REC_SEGM && body_len >= FVM_SEGHDR_SIZE) {
			uint64_t n = fvm_ld32(body), pl = fvm_ld64(body + 8);
			uint64_t po = fvm_seg_payload_offset(off, body_len);

			if (pl && po <= end && pl <= end - po) {
				uint64_t crcs = FVM_SEGHDR_SIZE + n * FVM_ENTRY_SIZE;

				if (with_crc && n <= FVM_MAX_ENTRIES && crcs <= body_len &&
				    (body_len - crcs) / 4 >= pl / FVM_CHUNK)
					for (uint64_t c = 0; c < pl / FVM_CHUNK; c++)
						fvm_st32(body + crcs + 4 * c,
							 fvm_crc32c(0, b + po + c * FVM_CHUNK, FVM_CHUNK));
				if (compressed && n <= FVM_MAX_ENTRIES && crcs <= body_len)
					for (uint64_t j = 0; j < (body_len - crcs) / 16 && k < nframes;
					     j++, k++) {
						/* frame table entry: stored_len, reserved, crcs */
						uint8_t *f = body + crcs + 16 * j;

						fvm_st32(f + 8, fcrc[2 * k]);
						fvm_st32(f + 12, fcrc[2 * k + 1]);
					}
				next = po + pl;
			}
		}
		fvm_rechdr_encode(b + off, type, body, body_len);
		if (type == FVM_REC_INDX || next <= off)
			break;
		off = next;
	}
	fvm_st32(b + len - FVM_FOOTER_SIZE + 24, fvm_crc32c(0, b + len - FVM_FOOTER_SIZE, 24));
	free(fcrc);
}

void fuzz_as_is_and_resealed(const uint8_t *data, size_t size,
			     void (*one)(const uint8_t *data, size_t size))
{
	uint8_t *copy;

	one(data, size);
	copy = malloc(size ? size : 1);
	if (!copy)
		return;
	memcpy(copy, data, size);
	fuzz_reseal(copy, size);
	if (memcmp(copy, data, size))
		one(copy, size);
	free(copy);
}
