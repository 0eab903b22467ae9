/*
 * FORMAT.md 4.6 with libgcrypt: GMAC with AES-256 under K_tag for the tags
 * of payload chunks and DEVS records (the 12-byte IV says what and where),
 * keyed BLAKE2b-256 (RFC 7693) for the derived keys, the key id and the
 * MAC, unkeyed BLAKE2b-256 for the digests. Random salts come from
 * getrandom(2). Chosen by measurement and licence: doc/SECURITY.md.
 *
 * libgcrypt is initialised once per process (init below); an application
 * that initialised it already keeps its settings. Handles are made per
 * call, so every function may run on several threads at once.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include "auth.h"
#include "crc.h"
#include "error.h"
#include "format.h"

#define CHUNK 4096u

/* Volatile stores the compiler cannot drop (explicit_bzero, glibc 2.25). */
static void wipe(void *p, size_t n)
{
	explicit_bzero(p, n);
}

void fvm_auth_wipe(struct fvm_auth *a)
{
	wipe(a, sizeof(*a));
}

/* Every byte compared whatever the first difference: no early exit to time. */
int fvm_auth_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	volatile uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

int fvm_auth_random(uint8_t *out, size_t n)
{
	while (n) {
		ssize_t k = getrandom(out, n, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		out += k;
		n -= (size_t)k;
	}
	return 0;
}

#ifdef FVM_HAVE_GCRYPT
#include <gcrypt.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int ready;

/*
 * gcry_check_version is what initialises libgcrypt (and is safe to call
 * again). INITIALIZATION_FINISHED only when the application has not said
 * it: its own settings (secure memory, FIPS mode) stay as it made them.
 * Nothing here asks for secure memory, so none needs to be set up.
 */
static void init(void)
{
	if (!gcry_check_version(NULL))
		return;
	if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P))
		gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
	ready = gcry_mac_test_algo(GCRY_MAC_GMAC_AES) == 0 &&
		gcry_md_test_algo(GCRY_MD_BLAKE2B_256) == 0;
}

int fvm_auth_built(void)
{
	pthread_once(&once, init);
	return ready;
}

static int nomem(const char *what)
{
	return fvm_err(FVM_ENOMEM, "authenticated snapshots: libgcrypt could not make a %s "
		       "handle", what);
}

/* ---- BLAKE2b-256, keyed (key NULL: unkeyed) */

static gcry_md_hd_t b2b_open(const uint8_t *key)
{
	gcry_md_hd_t h;

	if (gcry_md_open(&h, GCRY_MD_BLAKE2B_256, 0))
		return NULL;
	if (key && gcry_md_setkey(h, key, 32)) {
		gcry_md_close(h);
		return NULL;
	}
	return h;
}

/* out = B(h's key, what was written); closes h (libgcrypt wipes its state). */
static void b2b_final(gcry_md_hd_t h, uint8_t out[32])
{
	memcpy(out, gcry_md_read(h, GCRY_MD_BLAKE2B_256), 32);
	gcry_md_close(h);
}

static int keyed(uint8_t out[32], const uint8_t key[32], const char *label, const uint8_t *salt)
{
	gcry_md_hd_t h = b2b_open(key);

	if (!h)
		return nomem("BLAKE2b");
	gcry_md_write(h, label, strlen(label));
	if (salt)
		gcry_md_write(h, salt, FVM_SALT_LEN);
	b2b_final(h, out);
	return 0;
}

int fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN], uint64_t *id)
{
	uint8_t h[32];
	int rc = keyed(h, key, "libfastvm key id", NULL);

	*id = rc ? 0 : fvm_ld64(h);
	return rc;
}

int fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		    const uint8_t salt[FVM_SALT_LEN])
{
	int rc = keyed(a->k_tag, key, "libfastvm tag key", salt);

	if (!rc)
		rc = keyed(a->k_mac, key, "libfastvm mac key", salt);
	if (!rc)
		rc = fvm_auth_key_id(key, &a->key_id);
	if (rc)
		fvm_auth_wipe(a);
	return rc;
}

void fvm_auth_digest_begin(struct fvm_auth_digest *d)
{
	d->h = b2b_open(NULL);
}

void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n)
{
	if (d->h)
		gcry_md_write(d->h, p, n);
}

int fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN])
{
	if (!d->h)
		return nomem("BLAKE2b");
	b2b_final(d->h, out);
	d->h = NULL;
	return 0;
}

void fvm_auth_digest_drop(struct fvm_auth_digest *d)
{
	if (d->h)
		gcry_md_close(d->h);
	d->h = NULL;
}

int fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		 const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		 const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN])
{
	gcry_md_hd_t h = b2b_open(a->k_mac);

	if (!h)
		return nomem("BLAKE2b");
	gcry_md_write(h, header, 64);
	gcry_md_write(h, db, 32);
	gcry_md_write(h, dm, 32);
	gcry_md_write(h, di, 32);
	b2b_final(h, mac);
	return 0;
}

/* ---- GMAC-AES-256 under K_tag */

static gcry_mac_hd_t gmac_open(const struct fvm_auth *a)
{
	gcry_mac_hd_t h;

	if (gcry_mac_open(&h, GCRY_MAC_GMAC_AES, 0, NULL))
		return NULL;
	if (gcry_mac_setkey(h, a->k_tag, 32)) {
		gcry_mac_close(h);
		return NULL;
	}
	return h;
}

/* The 12-byte IV: a 4-byte label, then the item's number (4.6). */
static void iv_set(gcry_mac_hd_t h, const char label[4], uint64_t n)
{
	uint8_t iv[12];

	memcpy(iv, label, 4);
	fvm_st64(iv + 4, n);
	gcry_mac_setiv(h, iv, sizeof(iv));
}

/*
 * Per chunk a new IV (resets the GHASH state), 4096 bytes of GHASH and one
 * AES block: about 0.65 us at 6 GB/s on one core (doc/BENCHMARKS.md 11).
 */
int fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			size_t n, uint8_t *tags)
{
	gcry_mac_hd_t h = gmac_open(a);

	if (!h)
		return nomem("GMAC");
	for (size_t i = 0; i < n; i++) {
		size_t len = FVM_TAG_LEN;

		iv_set(h, "FVMC", off / CHUNK + i);
		gcry_mac_write(h, data + CHUNK * i, CHUNK);
		gcry_mac_read(h, tags + FVM_TAG_LEN * i, &len);
	}
	gcry_mac_close(h);
	return 0;
}

/* gcry_mac_verify compares in constant time (libgcrypt's buf_eq_const). */
static int64_t tags_bad(const struct fvm_auth *a, uint64_t off, const uint8_t *data, size_t n,
			const uint8_t *tags)
{
	gcry_mac_hd_t h = gmac_open(a);
	int64_t bad = -1;

	if (!h) {
		nomem("GMAC");
		return FVM_CHUNKS_FAILED;
	}
	for (size_t i = 0; i < n; i++) {
		iv_set(h, "FVMC", off / CHUNK + i);
		gcry_mac_write(h, data + CHUNK * i, CHUNK);
		if (gcry_mac_verify(h, tags + FVM_TAG_LEN * i, FVM_TAG_LEN)) {
			bad = (int64_t)i;
			break;
		}
	}
	gcry_mac_close(h);
	return bad;
}

void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len)
{
	uint8_t h[12];

	t->h = gmac_open(a);
	if (!t->h)
		return;
	iv_set(t->h, "FVMD", rec_off / 8);
	fvm_st32(h, type);
	fvm_st64(h + 4, body_len);
	gcry_mac_write(t->h, h, sizeof(h));
}

void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n)
{
	if (t->h)
		gcry_mac_write(t->h, p, n);
}

int fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN])
{
	size_t len = FVM_TAG_LEN;

	if (!t->h) {
		memset(tag, 0, FVM_TAG_LEN);
		return nomem("GMAC");
	}
	gcry_mac_read(t->h, tag, &len);
	gcry_mac_close(t->h);
	t->h = NULL;
	return 0;
}

void fvm_auth_rec_drop(struct fvm_auth_rec *t)
{
	if (t->h)
		gcry_mac_close(t->h);
	t->h = NULL;
}

#else /* no libgcrypt: nothing below is reached (fvm_auth_built() is 0) */

static int none(void)
{
	return fvm_err(FVM_EUNSUPPORTED, "authenticated snapshots: this libfastvm was built "
		       "without libgcrypt");
}

int fvm_auth_built(void) { return 0; }
int fvm_auth_key_id(const uint8_t key[FVM_KEY_LEN], uint64_t *id) { (void)key; *id = 0; return none(); }
int fvm_auth_derive(struct fvm_auth *a, const uint8_t key[FVM_KEY_LEN],
		    const uint8_t salt[FVM_SALT_LEN]) { (void)key; (void)salt; memset(a, 0, sizeof(*a)); return none(); }
int fvm_auth_chunk_tags(const struct fvm_auth *a, uint64_t off, const uint8_t *data,
			size_t n, uint8_t *tags) { (void)a; (void)off; (void)data; memset(tags, 0, n * FVM_TAG_LEN); return none(); }
static int64_t tags_bad(const struct fvm_auth *a, uint64_t off, const uint8_t *data, size_t n,
			const uint8_t *tags) { (void)a; (void)off; (void)data; (void)tags; (void)n; none(); return FVM_CHUNKS_FAILED; }
void fvm_auth_rec_begin(struct fvm_auth_rec *t, const struct fvm_auth *a, uint64_t rec_off,
			uint32_t type, uint64_t body_len) { (void)a; (void)rec_off; (void)type; (void)body_len; t->h = NULL; }
void fvm_auth_rec_add(struct fvm_auth_rec *t, const void *p, size_t n) { (void)t; (void)p; (void)n; }
void fvm_auth_rec_drop(struct fvm_auth_rec *t) { t->h = NULL; }
int fvm_auth_rec_end(struct fvm_auth_rec *t, uint8_t tag[FVM_TAG_LEN]) { (void)t; memset(tag, 0, FVM_TAG_LEN); return none(); }
void fvm_auth_digest_begin(struct fvm_auth_digest *d) { d->h = NULL; }
void fvm_auth_digest_drop(struct fvm_auth_digest *d) { d->h = NULL; }
void fvm_auth_digest_add(struct fvm_auth_digest *d, const void *p, size_t n) { (void)d; (void)p; (void)n; }
int fvm_auth_digest_end(struct fvm_auth_digest *d, uint8_t out[FVM_DIGEST_LEN]) { (void)d; memset(out, 0, FVM_DIGEST_LEN); return none(); }
int fvm_auth_mac(const struct fvm_auth *a, const uint8_t header[64],
		 const uint8_t db[FVM_DIGEST_LEN], const uint8_t dm[FVM_DIGEST_LEN],
		 const uint8_t di[FVM_DIGEST_LEN], uint8_t mac[FVM_MAC_LEN])
{ (void)a; (void)header; (void)db; (void)dm; (void)di; memset(mac, 0, FVM_MAC_LEN); return none(); }

#endif

void fvm_auth_digest_rec(struct fvm_auth_digest *d, uint32_t type, uint64_t body_len,
			 const void *body, size_t n)
{
	uint8_t h[12];

	fvm_st32(h, type);
	fvm_st64(h + 4, body_len);
	fvm_auth_digest_add(d, h, 12);
	fvm_auth_digest_add(d, body, n);
}

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
