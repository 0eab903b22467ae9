/*
 * fvm_verify: every checksum and structural rule, by reading the whole file
 * with the walker (walk.h) in check mode against the opened model, payload
 * through the walker's bounded buffer. On a stream reader the rest of the
 * stream is walked in keep mode, after which the reader lists everything.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "error.h"
#include "reader.h"
#include "walk.h"

static int verify_stream(struct fvm_reader *r, struct fvm_walk_sink *k)
{
	int rc;

	if (r->stream_state != FVM_STREAM_OPEN)
		return fvm_err(FVM_ESTATE, "%s: the stream was already read to its end",
			       r->m.file);
	if (!r->walk) /* open read it all, and checked it */
		return 0;
	rc = fvm_walk_rest(r->walk, k);
	r->stream_state = rc ? FVM_STREAM_FAILED : FVM_STREAM_DONE;
	fvm_walk_free(r->walk);
	r->walk = NULL;
	return rc;
}

static int verify_file(struct fvm_reader *r, struct fvm_walk_sink *k)
{
	struct fvm_walk *w = fvm_walk_new(&r->m, r->fd, 1, 0);
	int rc;

	if (!w)
		return fvm_err(FVM_ENOMEM, "%s: verify", r->m.file);
	k->by_pos = 1;
	k->total = r->m.file_size;
	rc = fvm_walk_start(w, 0);
	if (!rc)
		rc = fvm_walk_rest(w, k);
	if (!rc && fvm_walk_pos(w) != r->m.file_size)
		rc = fvm_err(FVM_ECORRUPT, "%s: the footer ends at 0x%" PRIx64 ", the file at "
			     "0x%" PRIx64, r->m.file, fvm_walk_pos(w), r->m.file_size);
	fvm_walk_free(w);
	if (!rc && k->progress) {
		fvm_err_clear();
		rc = k->progress(k->pctx, r->m.file_size, r->m.file_size);
		if (rc)
			rc = fvm_err_callback(rc, "%s: verify canceled at its end", r->m.file);
	}
	return rc;
}

/*
 * AUTHENTICATED: every DEVS record read through the reader, which checks
 * its tag (R103); the walk checked the payload tags (R102).
 */
static int verify_devs_tags(struct fvm_reader *r)
{
	size_t cap = 1u << 20, got;
	uint8_t *buf = malloc(cap);
	int rc = 0;

	if (!buf)
		return fvm_err(FVM_ENOMEM, "%s: verify", r->m.file);
	for (uint32_t i = 0; i < r->m.nsects && !rc; i++)
		for (uint64_t at = 0; at < r->m.sects[i].length && !rc; at += got)
			rc = fvm_reader_devstate_pread(r, i, buf, cap, at, &got);
	free(buf);
	return rc;
}

int fvm_verify(fvm_reader *r, fvm_progress_fn progress, void *ctx)
{
	struct fvm_walk_sink k = { .check = 1, .progress = progress, .pctx = ctx };
	int rc;

	fvm_api_begin();
	if (!r)
		return fvm_err(FVM_EINVAL, "fvm_verify: NULL reader");
	if ((rc = fvm_reader_auth_ready(r, "fvm_verify")))
		return rc;
	rc = r->streamed ? verify_stream(r, &k) : verify_file(r, &k);
	if (!rc && r->m.keys)
		rc = verify_devs_tags(r);
	return fvm_api_end(rc);
}
