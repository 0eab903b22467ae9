/* fvm_unframe (unframe.h). */
#include <inttypes.h>
#include <string.h>

#include "crc.h"
#include "error.h"
#include "unframe.h"

int fvm_unframe(struct fvm_codec_ctx *x, const struct fvm_frame *f, uint64_t k,
		const void *stored, void *dst, const char *file, int check_plain)
{
	uint32_t crc = fvm_crc32c(0, stored, f->stored_len);
	int rc;

	if (crc != f->crc_stored)
		return fvm_err(FVM_ECHECKSUM, "%s: frame %" PRIu64 " at file offset 0x%" PRIx64
			       ": stored crc 0x%08x, computed 0x%08x", file, k, f->file_offset,
			       f->crc_stored, crc);
	if (fvm_frame_stored(f)) {
		if (dst != stored)
			memcpy(dst, stored, f->plain_len);
		return 0; /* crc_plain = crc_stored (R92) */
	}
	if (!fvm_codec_built(x->codec))
		return fvm_err(FVM_EUNSUPPORTED, "%s: frame %" PRIu64 ": codec %s: this "
			       "libfastvm was built without it", file, k, fvm_codec_name((int)x->codec));
	rc = fvm_codec_decompress(x, dst, f->plain_len, stored, f->stored_len);
	if (rc == -2)
		return fvm_err(FVM_ENOMEM, "%s: %s decoder", file, fvm_codec_name((int)x->codec));
	if (rc)
		return fvm_err(FVM_ECORRUPT, "%s: frame %" PRIu64 " at file offset 0x%" PRIx64
			       ": %u %s bytes do not decode to %u bytes", file, k, f->file_offset,
			       f->stored_len, fvm_codec_name((int)x->codec), f->plain_len);
	if (!check_plain)
		return 0;
	crc = fvm_crc32c(0, dst, f->plain_len);
	if (crc != f->crc_plain)
		return fvm_err(FVM_ECHECKSUM, "%s: frame %" PRIu64 " at file offset 0x%" PRIx64
			       ": plain crc 0x%08x, computed 0x%08x", file, k, f->file_offset,
			       f->crc_plain, crc);
	return 0;
}
