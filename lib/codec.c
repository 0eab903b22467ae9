/*
 * zstd and lz4 behind one small interface (codec.h). lz4 levels from 3 up
 * use the HC compressor (as the lz4 tool does); levels 1-2 the fast one.
 * Decoding never writes past plain bytes: zstd is given that capacity and
 * the frame's content size must match it, lz4's safe decoder is bounded.
 */
#include <stdlib.h>

#include "codec.h"

#ifdef FVM_HAVE_ZSTD
#include <zstd.h>
#endif
#ifdef FVM_HAVE_LZ4
#include <lz4.h>
#include <lz4hc.h>
#endif

const char *fvm_codec_name(int codec)
{
	return codec == FVM_CODEC_ZSTD ? "zstd" : codec == FVM_CODEC_LZ4 ? "lz4" :
	       codec == FVM_CODEC_NONE ? "none" : NULL;
}

int fvm_codec_available(int codec)
{
	return codec == FVM_CODEC_NONE || fvm_codec_built((unsigned)codec);
}

int fvm_codec_built(unsigned codec)
{
#ifdef FVM_HAVE_ZSTD
	if (codec == FVM_CODEC_ZSTD)
		return 1;
#endif
#ifdef FVM_HAVE_LZ4
	if (codec == FVM_CODEC_LZ4)
		return 1;
#endif
	return 0;
}

int fvm_codec_default_level(unsigned codec)
{
	return codec == FVM_CODEC_ZSTD ? 3 : 1;
}

int fvm_codec_level_ok(unsigned codec, int level)
{
	if (codec == FVM_CODEC_ZSTD)
		return level >= 1 && level <= 19;
	if (codec == FVM_CODEC_LZ4)
		return level >= 1 && level <= 12;
	return 0;
}

void fvm_codec_ctx_init(struct fvm_codec_ctx *x, unsigned codec, int level)
{
	x->codec = codec;
	x->level = level ? level : fvm_codec_default_level(codec);
	x->c = x->d = NULL;
}

void fvm_codec_ctx_free(struct fvm_codec_ctx *x)
{
	if (!x)
		return;
#ifdef FVM_HAVE_ZSTD
	if (x->codec == FVM_CODEC_ZSTD) {
		ZSTD_freeCCtx(x->c);
		ZSTD_freeDCtx(x->d);
		x->c = x->d = NULL;
	}
#endif
#ifdef FVM_HAVE_LZ4
	if (x->codec == FVM_CODEC_LZ4) {
		free(x->c);
		x->c = NULL;
	}
#endif
}

size_t fvm_codec_bound(unsigned codec, size_t n)
{
#ifdef FVM_HAVE_ZSTD
	if (codec == FVM_CODEC_ZSTD)
		return ZSTD_compressBound(n);
#endif
#ifdef FVM_HAVE_LZ4
	if (codec == FVM_CODEC_LZ4)
		return (size_t)LZ4_compressBound((int)n);
#endif
	return n;
}

int64_t fvm_codec_compress(struct fvm_codec_ctx *x, void *dst, size_t cap,
			   const void *src, size_t n)
{
	int64_t r = 0;

#ifdef FVM_HAVE_ZSTD
	if (x->codec == FVM_CODEC_ZSTD) {
		size_t z;

		if (!x->c && !(x->c = ZSTD_createCCtx()))
			return -1;
		z = ZSTD_compressCCtx(x->c, dst, cap, src, n, x->level);
		r = ZSTD_isError(z) ? 0 : (int64_t)z;
	}
#endif
#ifdef FVM_HAVE_LZ4
	if (x->codec == FVM_CODEC_LZ4) {
		int z;

		if (x->level >= 3) {
			if (!x->c && !(x->c = malloc((size_t)LZ4_sizeofStateHC())))
				return -1;
			z = LZ4_compress_HC_extStateHC(x->c, src, dst, (int)n, (int)cap, x->level);
		} else {
			if (!x->c && !(x->c = malloc((size_t)LZ4_sizeofState())))
				return -1;
			z = LZ4_compress_fast_extState(x->c, src, dst, (int)n, (int)cap, 1);
		}
		r = z > 0 ? z : 0;
	}
#endif
	return r > 0 && (size_t)r < n ? r : 0;
}

int fvm_codec_decompress(struct fvm_codec_ctx *x, void *dst, size_t plain,
			 const void *src, size_t n)
{
#ifdef FVM_HAVE_ZSTD
	if (x->codec == FVM_CODEC_ZSTD) {
		size_t z;

		if (!x->d && !(x->d = ZSTD_createDCtx()))
			return -2;
		z = ZSTD_decompressDCtx(x->d, dst, plain, src, n);
		return !ZSTD_isError(z) && z == plain ? 0 : -1;
	}
#endif
#ifdef FVM_HAVE_LZ4
	if (x->codec == FVM_CODEC_LZ4)
		return LZ4_decompress_safe(src, dst, (int)n, (int)plain) == (int)plain ? 0 : -1;
#endif
	(void)dst; (void)plain; (void)src; (void)n;
	return -1;
}
