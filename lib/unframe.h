/*
 * One frame of compressed payload from its stored bytes to its plain bytes,
 * checked (FORMAT.md 4.5): crc_stored before the decoder runs, the exact
 * plain length, and crc_plain after when check_plain is set (a load checks
 * it with FVM_LOAD_VERIFY, as it checks an uncompressed run's CRCs; the
 * walker and the reader's piecewise reads always). The loader's threads, the walker and the
 * reader's piecewise reads all decode through here, so every path reports
 * a damaged frame the same way.
 */
#ifndef FVM_UNFRAME_H
#define FVM_UNFRAME_H
#include "codec.h"
#include "frames.h"

/*
 * stored: the frame's stored_len bytes; dst: room for plain_len bytes
 * (may be stored itself for a stored frame). k: the frame's number in the
 * file, for the message. check_plain: check crc_plain. FVM_ECHECKSUM, FVM_ECORRUPT (does not decode to
 * plain_len bytes), FVM_EUNSUPPORTED (codec not in this build), FVM_ENOMEM.
 */
int fvm_unframe(struct fvm_codec_ctx *x, const struct fvm_frame *f, uint64_t k,
		const void *stored, void *dst, const char *file, int check_plain);
#endif
