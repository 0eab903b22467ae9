/*
 * Records read from a source and checked (record.h).
 */
#include <inttypes.h>
#include <stdlib.h>

#include "crc.h"
#include "error.h"
#include "record.h"

#define DEVS_SCRATCH (1u << 20)

int fvm_rec_devs_scan(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		      uint8_t head[FVM_DEVS_HEAD], struct fvm_devs_rec *d)
{
	size_t hl = rh->body_len < FVM_DEVS_HEAD ? (size_t)rh->body_len : FVM_DEVS_HEAD;
	uint64_t left = rh->body_len - hl;
	uint32_t crc = fvm_rec_crc_begin(rh);
	struct fvm_where w = { s->file, rec_off };
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
	if (!rc)
		rc = fvm_rec_crc_end(rh, crc, w); /* R11 */
	/*
	 * The decoder reads only the fixed part and the name, which head holds
	 * (name_len <= 255); body_len is the real one so R41 is checked.
	 */
	return rc ? rc : fvm_devs_decode(head, rh->body_len, d, w);
}

int fvm_rec_devs_read(struct fvm_src *s, uint64_t rec_off, const struct fvm_rechdr *rh,
		      uint8_t **body, struct fvm_devs_rec *d)
{
	struct fvm_where w = { s->file, rec_off };
	int rc;

	/*
	 * malloc of a large claim only reserves address space; memory is used
	 * as the bytes actually arrive (R13 bounds the claim at 1 GiB).
	 */
	*body = malloc(rh->body_len ? rh->body_len : 1);
	if (!*body)
		return fvm_err(FVM_ENOMEM, "%s: DEVS record at offset 0x%" PRIx64 ": %" PRIu64
			       " bytes", s->file, rec_off, rh->body_len);
	rc = fvm_src_read(s, *body, rh->body_len, "DEVS record");
	if (!rc)
		rc = fvm_rechdr_check_crc(rh, *body, w);
	if (!rc)
		rc = fvm_devs_decode(*body, rh->body_len, d, w);
	if (rc) {
		free(*body);
		*body = NULL;
	}
	return rc;
}
