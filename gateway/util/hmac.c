/*
 * gateway/util/hmac.c — HMAC-SHA-256 from SHA-256 states keyed once (see hmac.h).
 *
 * HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), K' the key padded with
 * zeros to the block (or its digest, when longer). The two prefixes are one
 * block each, so their states are computed once in hmac_key_init and copied
 * for each message.
 */
#include "gateway/util/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#define BLOCK 64 /* SHA-256's block */

static EVP_MD *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* Fetched once for the process: an implicit fetch per digest init is what makes the one-shot dear. Never freed
 * (the provider's algorithm lives as long as the library). */
static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* A state of SHA-256 after one block: the key padded and xored with pad. */
static EVP_MD_CTX *padded_state(const unsigned char key[BLOCK], unsigned char pad)
{
    unsigned char block[BLOCK];
    for (size_t i = 0; i < BLOCK; i++)
        block[i] = key[i] ^ pad;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, sha256, NULL) && EVP_DigestUpdate(ctx, block, BLOCK);
    OPENSSL_cleanse(block, sizeof block);
    if (!ok) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

bool hmac_key_init(hmac_key *k, const unsigned char *key, size_t len)
{
    memset(k, 0, sizeof *k);
    pthread_once(&sha256_once, fetch_sha256);
    if (!sha256)
        return false;
    unsigned char padded[BLOCK] = {0};
    unsigned int n = 0;
    if (len > BLOCK) { /* a long key is its digest */
        if (!EVP_Digest(key, len, padded, &n, sha256, NULL))
            return false;
    } else if (len) {
        memcpy(padded, key, len);
    }
    k->inner = padded_state(padded, 0x36);
    k->outer = padded_state(padded, 0x5c);
    OPENSSL_cleanse(padded, sizeof padded);
    if (!k->inner || !k->outer) {
        hmac_key_free(k);
        return false;
    }
    return true;
}

bool hmac_sha256(const hmac_key *k, const void *data, size_t len, unsigned char out[HMAC_SHA256_LEN])
{
    if (!k->inner || !k->outer)
        return false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char inner[HMAC_SHA256_LEN];
    unsigned int n = 0, m = 0;
    bool ok = ctx && EVP_MD_CTX_copy_ex(ctx, k->inner) && EVP_DigestUpdate(ctx, data, len) &&
              EVP_DigestFinal_ex(ctx, inner, &n) && n == HMAC_SHA256_LEN && EVP_MD_CTX_copy_ex(ctx, k->outer) &&
              EVP_DigestUpdate(ctx, inner, sizeof inner) && EVP_DigestFinal_ex(ctx, out, &m) && m == HMAC_SHA256_LEN;
    OPENSSL_cleanse(inner, sizeof inner);
    EVP_MD_CTX_free(ctx);
    return ok;
}

void hmac_key_free(hmac_key *k)
{
    EVP_MD_CTX_free(k->inner);
    EVP_MD_CTX_free(k->outer);
    k->inner = k->outer = NULL;
}
