/*
 * FORMAT.md 4.6 with libsodium: BLAKE2b for the derived keys, the key id,
 * the digests and the MAC; ChaCha20 (64-bit nonce and counter) for the
 * one-time key of each tag; Poly1305 for the tags. Keys of many chunks are
 * made in one keystream call (consecutive chunks have consecutive block
 * counters).
 */
#include <errno.h>
#include <string.h>

#include "auth.h"
#include "crc.h"
#include "format.h"

#ifdef FVM_HAVE_SODIUM
#include <sodium.h>

_Static_assert(sizeof(crypto_onetimeauth_poly1305_state) <= sizeof(((struct fvm_auth_rec *)0)->st),
	       "poly1305 state");
_Static_assert(sizeof(crypto_generichash_state) <= sizeof(((struct fvm_auth_digest *)0)->st),
	       "blake2b state");

#define CHUNK 4096u
#define BATCH 64u /* one-time keys made at once: 4 KiB of keystream */

static const uint8_t zeros[64 * BATCH];

int fvm_auth_built(void)
{
	return sodium_init() >= 0;
}

static void keyed(uint8_t out[32], const uint8_t key[32], const char *label, const uint8_t *salt)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	if (salt)
		crypto_generichash_update(&st, salt, FVM_SALT_LEN);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

uint64_t fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN])
{
	uint8_t h[32];

	keyed(h, key, "libfastvm key id", NULL);
	return fvm_ld64(h);
}

void fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		     const uint8_t salt[FVM_SALT_LEN])
{
	keyed(a->k_tag, key, "libfastvm tag key", salt);
	keyed(a->k_mac, key, "libfastvm mac key", salt);
	a->key_id = fvm_auth_key_id(key);
}

void fvm_auth_wipe(struct fvm_auth *a)
{
	sodium_memzero(a, sizeof(*a));
}

int fvm_auth_random(uint8_t *out, size_t n)
{
	if (sodium_init() < 0)
		return -ENOSYS;
	randombytes_buf(out, n);
	return 0;
}

/* One-time keys (64 bytes apart: the first 32 of each block) of n items. */
static void otks(uint8_t *ks, const struct fvm_auth *a, const char nonce[8], uint64_t c, size_t n)
{
	crypto_stream_chacha20_xor_ic(ks, zeros, 64 * (unsigned long long)n,
				      (const uint8_t *)nonce, c, a->k_tag);
}

void fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			 size_t n, uint8_t *tags)
{
	uint8_t ks[64 * BATCH];

	for (size_t i = 0; i < n; i += BATCH) {
		size_t k = n - i < BATCH ? n - i : BATCH;

		otks(ks, a, "FVMCHUNK", off / CHUNK + i, k);
		for (size_t j = 0; j < k; j++)
			crypto_onetimeauth_poly1305(tags + FVM_TAG_LEN * (i + j),
						    data + CHUNK * (i + j), CHUNK, ks + 64 * j);
	}
	sodium_memzero(ks, sizeof(ks));
}

static int64_t tags_bad(const struct fvm_auth *a, uint64_t off, const uint8_t *data, size_t n,
			const uint8_t *tags)
{
	uint8_t ks[64 * BATCH];
	int64_t bad = -1;

	for (size_t i = 0; i < n && bad < 0; i += BATCH) {
		size_t k = n - i < BATCH ? n - i : BATCH;

		otks(ks, a, "FVMCHUNK", off / CHUNK + i, k);
		for (size_t j = 0; j < k; j++)
			if (crypto_onetimeauth_poly1305_verify(tags + FVM_TAG_LEN * (i + j),
							       data + CHUNK * (i + j), CHUNK,
							       ks + 64 * j) != 0) {
				bad = (int64_t)(i + j);
				break;
			}
	}
	sodium_memzero(ks, sizeof(ks));
	return bad;
}

void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len)
{
	uint8_t ks[64], h[12];

	otks(ks, a, "FVMDEVST", rec_off / 8, 1);
	crypto_onetimeauth_poly1305_init((crypto_onetimeauth_poly1305_state *)t->st, ks);
	sodium_memzero(ks, sizeof(ks));
	fvm_st32(h, type);
	fvm_st64(h + 4, body_len);
	crypto_onetimeauth_poly1305_update((crypto_onetimeauth_poly1305_state *)t->st, h, 12);
}

void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n)
{
	crypto_onetimeauth_poly1305_update((crypto_onetimeauth_poly1305_state *)t->st, p, n);
}

void fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN])
{
	crypto_onetimeauth_poly1305_final((crypto_onetimeauth_poly1305_state *)t->st, tag);
	sodium_memzero(t, sizeof(*t));
}

void fvm_auth_digest_begin(struct fvm_auth_digest *d)
{
	crypto_generichash_init((crypto_generichash_state *)d->st, NULL, 0, 32);
}

void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n)
{
	crypto_generichash_update((crypto_generichash_state *)d->st, p, n);
}

void fvm_auth_digest_rec(struct fvm_auth_digest *d, uint32_t type, uint64_t body_len,
			 const void *body, size_t n)
{
	uint8_t h[12];

	fvm_st32(h, type);
	fvm_st64(h + 4, body_len);
	fvm_auth_digest_add(d, h, 12);
	fvm_auth_digest_add(d, body, n);
}

void fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN])
{
	crypto_generichash_final((crypto_generichash_state *)d->st, out, 32);
}

void fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		  const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		  const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, a->k_mac, 32, FVM_MAC_LEN);
	crypto_generichash_update(&st, header, 64);
	crypto_generichash_update(&st, db, 32);
	crypto_generichash_update(&st, dm, 32);
	crypto_generichash_update(&st, di, 32);
	crypto_generichash_final(&st, mac, FVM_MAC_LEN);
}

int fvm_auth_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	return sodium_memcmp(a, b, n) == 0;
}

#else /* no libsodium: nothing below is reached (fvm_auth_built() is 0) */

int fvm_auth_built(void) { return 0; }
uint64_t fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN]) { (void)key; return 0; }
void fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		     const uint8_t salt[FVM_SALT_LEN]) { (void)key; (void)salt; memset(a, 0, sizeof(*a)); }
void fvm_auth_wipe(struct fvm_auth *a) { memset(a, 0, sizeof(*a)); }
int fvm_auth_random(uint8_t *out, size_t n) { (void)out; (void)n; return -ENOSYS; }
void fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			 size_t n, uint8_t *tags) { (void)a; (void)off; (void)data; memset(tags, 0, n * FVM_TAG_LEN); }
static int64_t tags_bad(const struct fvm_auth *a, uint64_t off, const uint8_t *data, size_t n,
			const uint8_t *tags) { (void)a; (void)off; (void)data; (void)tags; return n ? 0 : -1; }
void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len) { (void)a; (void)rec_off; (void)type; (void)body_len; memset(t, 0, sizeof(*t)); }
void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n) { (void)t; (void)p; (void)n; }
void fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN]) { (void)t; memset(tag, 0xff, FVM_TAG_LEN); }
void fvm_auth_digest_begin(struct fvm_auth_digest *d) { memset(d, 0, sizeof(*d)); }
void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n) { (void)d; (void)p; (void)n; }
void fvm_auth_digest_rec(struct fvm_auth_digest *d, uint32_t type, uint64_t body_len,
			 const void *body, size_t n) { (void)d; (void)type; (void)body_len; (void)body; (void)n; }
void fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN]) { (void)d; memset(out, 0, FVM_DIGEST_LEN); }
void fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		  const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		  const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN])
{ (void)a; (void)header; (void)db; (void)dm; (void)di; memset(mac, 0xff, FVM_MAC_LEN); }
int fvm_auth_equal(const uint8_t *a, const uint8_t *b, size_t n) { (void)a; (void)b; (void)n; return 0; }

#endif

int64_t fvm_chunks_bad(const struct fvm_auth *keys, uint64_t off, const uint8_t *data,
		       size_t n, const uint8_t *expect)
{
	if (keys)
		return tags_bad(keys, off, data, n, expect);
	for (size_t i = 0; i < n; i++)
		if (fvm_crc32c(0, data + 4096 * i, 4096) != fvm_ld32(expect + 4 * i))
			return (int64_t)i;
	return -1;
}
