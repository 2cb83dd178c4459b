/*
 * gateway/util/hmac.h — HMAC-SHA-256 under a key that MACs many messages
 * (prefix hmac_).
 *
 * OpenSSL's one-shot HMAC() looks the algorithm up and keys it anew on every
 * call: about 1.2 µs, behind a lock all threads share. The audit trail MACs
 * every entry twice (its patient's pseudonym and the chain), on the workers
 * and the store's commit thread. A hmac_key holds SHA-256 keyed once: the
 * states after the inner and the outer padded key (RFC 2104, section 2), so
 * one MAC is two digests finished from copies of them (about a fifth of the
 * one-shot's time).
 *
 * Threads: a key is only read after hmac_key_init; any thread may MAC with
 * it at any time. Memory: hmac_key_init allocates the two states;
 * hmac_key_free frees them (OpenSSL cleanses them) and may be called on a
 * zeroed or a failed key.
 */
#ifndef GATEWAY_UTIL_HMAC_H
#define GATEWAY_UTIL_HMAC_H

#include <stdbool.h>
#include <stddef.h>

#define HMAC_SHA256_LEN 32

typedef struct hmac_key {
    struct evp_md_ctx_st *inner, *outer; /* SHA-256 after (key ^ ipad), after (key ^ opad) */
} hmac_key;

/* Key k with key[0..len) (any length; one longer than SHA-256's block is hashed first). False when OpenSSL
 * failed (k is then empty, safe to free). */
bool hmac_key_init(hmac_key *k, const unsigned char *key, size_t len);

/* HMAC-SHA-256 of data[0..len) under k into out. False when OpenSSL failed. */
bool hmac_sha256(const hmac_key *k, const void *data, size_t len, unsigned char out[HMAC_SHA256_LEN]);

void hmac_key_free(hmac_key *k);

#endif
