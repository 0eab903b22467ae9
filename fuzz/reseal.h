/*
 * Shared by the .fvm fuzz targets: recompute every checksum a mutated file
 * claims to have, so that mutations reach the structural rules and the
 * frame decoders behind the CRCs.
 */
#ifndef FVM_FUZZ_RESEAL_H
#define FVM_FUZZ_RESEAL_H

#include <stddef.h>
#include <stdint.h>

void fuzz_reseal(uint8_t *b, size_t len);

/*
 * The key of the authenticated seeds (make_corpus.c): the targets give it
 * to every AUTHENTICATED input, so that the MAC and the tag checks run.
 */
extern const uint8_t fuzz_key[32];

/* The input as it is, then (when that changes it) resealed: one target call. */
void fuzz_as_is_and_resealed(const uint8_t *data, size_t size,
			     void (*one)(const uint8_t *data, size_t size));

#endif
