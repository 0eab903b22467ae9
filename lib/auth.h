/*
 * Authenticated snapshots (FORMAT.md 4.6): the keys derived from a file key
 * and a file's salt, the tags of payload chunks and DEVS records, and the
 * MAC over the file's structure. libgcrypt does the cryptography (GMAC with
 * AES-256 for the tags, keyed BLAKE2b-256 for keys, digests and the MAC); a
 * build without it (-Dauth=disabled) has fvm_auth_built() 0 and every other
 * call here must not be reached (callers refuse first). No I/O here.
 *
 * libgcrypt's handles are allocated: the calls that make one can fail with
 * FVM_ENOMEM (detail set). A handle is never shared between threads: each
 * call makes its own, so every call here may run on any thread at once.
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

/* 1 when authenticated snapshots are built in (libgcrypt initialised once). */
int fvm_auth_built(void);
/* key_id of a file key (4.6): 0 or FVM_ENOMEM. */
int fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN], uint64_t *id);
/* K_tag, K_mac and key_id of a file key and salt: 0 or FVM_ENOMEM. */
int fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		    const uint8_t salt[FVM_SALT_LEN]);
void fvm_auth_wipe(struct fvm_auth *a);
/* n random bytes (getrandom(2)); 0 or -errno. */
int fvm_auth_random(uint8_t *out, size_t n);

/*
 * Tags of n consecutive 4096-byte chunks at data, the first at file offset
 * off (a multiple of 4096), into tags (16 bytes each): 0 or FVM_ENOMEM.
 */
int fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			size_t n, uint8_t *tags);
/*
 * Check n consecutive 4096-byte chunks at data, the first at file offset
 * off, against their check data at expect: with keys, their tags (16 bytes
 * each, R102); without (NULL), their CRC32C (4 bytes each, little-endian:
 * PAYLOAD_CRC). -1 when all match, else the index of the first that does
 * not, or FVM_CHUNKS_FAILED when the tags could not be computed (FVM_ENOMEM,
 * detail set). The one chunk check of the loader, read_pages and the walker.
 */
#define FVM_CHUNKS_FAILED INT64_C(-2)
int64_t fvm_chunks_bad(const struct fvm_auth *keys, uint64_t off, const uint8_t *data,
		       size_t n, const uint8_t *expect);

/*
 * A DEVS record's tag, over pieces: begin at its offset, add, end. end
 * returns 0, or FVM_ENOMEM when begin could not make its handle; it
 * releases the handle either way. A record begun must be ended or dropped.
 */
struct fvm_auth_rec {
	void *h;                /* gcry_mac_hd_t, NULL when begin failed */
};
void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len);
void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n);
int fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN]);
/* Release a record's handle without its tag (a read failed before the end). */
void fvm_auth_rec_drop(struct fvm_auth_rec *t);

/*
 * Unkeyed digests of records (D_B, D_M, D_I of 4.6), over pieces; end
 * returns 0 or FVM_ENOMEM (begin could not make its handle) and releases
 * it. A digest begun must be ended (or fvm_auth_digest_drop'ed).
 */
struct fvm_auth_digest {
	void *h;                /* gcry_md_hd_t, NULL when begin failed */
};
void fvm_auth_digest_begin(struct fvm_auth_digest *d);
void fvm_auth_digest_drop(struct fvm_auth_digest *d);
/* A record as its bytes 0..3 and 8..15 (type and body_len), then body. */
void fvm_auth_digest_rec(struct fvm_auth_digest *d, uint32_t type, uint64_t body_len,
			 const void *body, size_t n);
void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n);
int fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN]);

/* The MAC of 4.6 from the header and the three digests: 0 or FVM_ENOMEM. */
int fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		  const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		  const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN]);
/* Constant-time equality of n bytes: 1 when equal. */
int fvm_auth_equal(const uint8_t *a, const uint8_t *b, size_t n);

#endif
