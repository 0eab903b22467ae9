/*
 * Authenticated snapshots (FORMAT.md 4.6): the keys derived from a file key
 * and a file's salt, the tags of payload chunks and DEVS records, and the
 * MAC over the file's structure. libsodium does the cryptography; a build
 * without it (-Dsodium=disabled) has fvm_auth_built() 0 and every other
 * call here must not be reached (callers refuse first). No I/O here.
 */
#ifndef FVM_AUTH_H
#define FVM_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define FVM_KEY_LEN 32
#define FVM_SALT_LEN 16
#define FVM_TAG_LEN 16
#define FVM_MAC_LEN 32
#define FVM_DIGEST_LEN 32

/* The keys of one file. */
struct fvm_auth {
	uint8_t k_tag[32], k_mac[32];
	uint64_t key_id;
};

int fvm_auth_built(void);
/* key_id of a file key (4.6). */
uint64_t fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN]);
void fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		     const uint8_t salt[FVM_SALT_LEN]);
void fvm_auth_wipe(struct fvm_auth *a);
/* n random bytes (getrandom through libsodium); 0 or -errno. */
int fvm_auth_random(uint8_t *out, size_t n);

/*
 * Tags of n consecutive 4096-byte chunks at data, the first at file offset
 * off (a multiple of 4096), into tags (16 bytes each).
 */
void fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			 size_t n, uint8_t *tags);
/*
 * Check n consecutive 4096-byte chunks at data, the first at file offset
 * off, against their check data at expect: with keys, their tags (16 bytes
 * each, R102); without (NULL), their CRC32C (4 bytes each, little-endian:
 * PAYLOAD_CRC). -1 when all match, else the index of the first that does
 * not. The one chunk check of the loader, read_pages and the walker.
 */
int64_t fvm_chunks_bad(const struct fvm_auth *keys, uint64_t off, const uint8_t *data,
		       size_t n, const uint8_t *expect);

/* A DEVS record's tag, over pieces: begin at its offset, add, end. */
struct fvm_auth_rec {
	_Alignas(16) uint8_t st[256]; /* crypto_onetimeauth_poly1305_state */
};
void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len);
void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n);
void fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN]);

/* Unkeyed digests of records (D_B, D_M, D_I of 4.6), over pieces. */
struct fvm_auth_digest {
	_Alignas(64) uint8_t st[448]; /* crypto_generichash_state */
};
void fvm_auth_digest_begin(struct fvm_auth_digest *d);
/* A record as its bytes 0..3 and 8..15 (type and body_len), then body. */
void fvm_auth_digest_rec(struct fvm_auth_digest *d, uint32_t type, uint64_t body_len,
			 const void *body, size_t n);
void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n);
void fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN]);

/* The MAC of 4.6 from the header and the three digests. */
void fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		  const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		  const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN]);
/* Constant-time equality of n bytes: 1 when equal. */
int fvm_auth_equal(const uint8_t *a, const uint8_t *b, size_t n);

#endif
