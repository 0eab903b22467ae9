/*
 * Frame codecs of compressed payload (FORMAT.md 4.5): zstd and lz4, each
 * present when the build found the library. One context per thread; a
 * context is made once and reused for every frame (no per-frame
 * allocation). Nothing here does I/O or knows the file.
 */
#ifndef FVM_CODEC_H
#define FVM_CODEC_H
#include <stddef.h>
#include <stdint.h>
#include "fastvm/fastvm.h" /* enum fvm_codec */

/* fvm_codec_name (public): "zstd", "lz4", "none", NULL for an unknown id. */
/* This build can encode and decode the codec. */
int fvm_codec_built(unsigned codec);
/* The level used for 0, and the range a caller may ask for. */
int fvm_codec_default_level(unsigned codec);
int fvm_codec_level_ok(unsigned codec, int level);

struct fvm_codec_ctx {
	unsigned codec;
	int level;
	void *c, *d;            /* the codec library's contexts, made on first use */
};

void fvm_codec_ctx_init(struct fvm_codec_ctx *x, unsigned codec, int level);
void fvm_codec_ctx_free(struct fvm_codec_ctx *x);
/* Room for the compressed form of n bytes. */
size_t fvm_codec_bound(unsigned codec, size_t n);
/*
 * Compress n bytes of src into dst (cap bytes): the compressed size, or 0
 * when it would not be shorter than n (the frame is then stored) or the
 * codec failed; -1 when a context cannot be made (out of memory).
 */
int64_t fvm_codec_compress(struct fvm_codec_ctx *x, void *dst, size_t cap,
			   const void *src, size_t n);
/*
 * Decode n bytes of src into exactly plain bytes at dst: 0, -1 when it
 * does not decode to exactly plain bytes (damaged), -2 out of memory.
 */
int fvm_codec_decompress(struct fvm_codec_ctx *x, void *dst, size_t plain,
			 const void *src, size_t n);
#endif
