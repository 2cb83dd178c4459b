/*
 * gateway/store/seal.c — see seal.h.
 */
#include "gateway/store/seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "gateway/util/keyfile.h"
#include "gateway/util/random.h"

#define KEY_LABEL "fhirgw document seal v1"
#define NONCE_LEN 12
#define TAG_LEN 16

typedef struct sl_key {
    char id[KF_KEY_ID_MAX + 1];
    unsigned char aes[KF_KEY_LEN]; /* HMAC-SHA-256(master, KEY_LABEL) */
} sl_key;

struct sl_keyring {
    sl_key *keys;
    size_t count, cap;
};

void sl_keyring_free(sl_keyring *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->keys, k->cap * sizeof *k->keys);
    free(k->keys);
    free(k);
}

static const char *take_key(void *arg, const char *id, const unsigned char master[KF_KEY_LEN])
{
    sl_keyring *k = arg;
    if (!fa_reserve(&k->keys, &k->cap, k->count + 1, sizeof *k->keys))
        return "out of memory";
    sl_key *key = &k->keys[k->count];
    snprintf(key->id, sizeof key->id, "%s", id);
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), master, KF_KEY_LEN, (const unsigned char *)KEY_LABEL, strlen(KEY_LABEL), key->aes, &n) ||
        n != KF_KEY_LEN)
        return "HMAC failed";
    k->count++;
    return NULL;
}

sl_keyring *sl_keyring_load(const char *path, char *err, size_t errlen)
{
    sl_keyring *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!kf_load(path, "seal key file", take_key, k, err, errlen)) {
        sl_keyring_free(k);
        return NULL;
    }
    return k;
}

const char *sl_keyring_current(const sl_keyring *k)
{
    return k->keys[k->count - 1].id;
}

static const sl_key *find_key(const sl_keyring *k, const char *id, size_t id_len)
{
    for (size_t i = 0; i < k->count; i++)
        if (strlen(k->keys[i].id) == id_len && !memcmp(k->keys[i].id, id, id_len))
            return &k->keys[i];
    return NULL;
}

static bool has_prefix(const char *text, size_t len, const char *prefix)
{
    return text && len >= strlen(prefix) && !memcmp(text, prefix, strlen(prefix));
}

bool sl_is_sealed(const char *text, size_t len)
{
    return has_prefix(text, len, SL_PREFIX) || has_prefix(text, len, SL_PREFIX_EARLY) ||
           has_prefix(text, len, SL_PREFIX_TEXT);
}

bool sl_is_early(const char *text, size_t len)
{
    return has_prefix(text, len, SL_PREFIX_EARLY);
}

/* AES-256-GCM one way or the other over in (len bytes) into out; the tag is written (seal) or checked (open). */
static bool gcm(bool seal, const sl_key *key, const unsigned char nonce[NONCE_LEN], const char *aad,
                const unsigned char *in, size_t len, unsigned char *out, unsigned char tag[TAG_LEN])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = c && len <= (size_t)INT32_MAX &&
              EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key->aes, nonce, seal ? 1 : 0) == 1 &&
              EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
              EVP_CipherUpdate(c, out, &n, in, (int)len) == 1 &&
              (seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1) &&
              EVP_CipherFinal_ex(c, out + n, &fin) == 1 &&
              (!seal || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* Seals under the current key, the output starting with prefix (all prefixes are as long). */
static char *seal_as(const char *prefix, const sl_keyring *k, const char *aad, const char *plain, size_t len,
                     size_t *out_len, char *err, size_t errlen)
{
    const sl_key *key = &k->keys[k->count - 1];
    size_t head = strlen(prefix) + strlen(key->id) + 1;
    size_t total = head + NONCE_LEN + TAG_LEN + len;
    char *out = malloc(total + 1);
    unsigned char *raw = out ? (unsigned char *)out + head : NULL;
    if (!out || !rnd_bytes(raw, NONCE_LEN) ||
        !gcm(true, key, raw, aad, (const unsigned char *)plain, len, raw + NONCE_LEN + TAG_LEN, raw + NONCE_LEN)) {
        snprintf(err, errlen, "sealing failed (%s)", out ? "OpenSSL" : "out of memory");
        free(out);
        return NULL;
    }
    memcpy(out, prefix, strlen(prefix));
    memcpy(out + strlen(prefix), key->id, strlen(key->id));
    out[head - 1] = '.';
    out[total] = '\0';
    *out_len = total;
    return out;
}

char *sl_seal(const sl_keyring *k, const char *aad, const char *plain, size_t len, size_t *out_len, char *err,
              size_t errlen)
{
    return seal_as(SL_PREFIX, k, aad, plain, len, out_len, err, errlen);
}

char *sl_seal_early(const sl_keyring *k, const char *aad, const char *plain, size_t len, size_t *out_len, char *err,
                    size_t errlen)
{
    return seal_as(SL_PREFIX_EARLY, k, aad, plain, len, out_len, err, errlen);
}

/* The base64 part into malloc'd bytes (*n of them, at least nonce and tag); NULL when malformed. */
static unsigned char *decode(const char *b64, size_t len, size_t *n)
{
    if (len % 4 || len / 4 * 3 < NONCE_LEN + TAG_LEN)
        return NULL;
    unsigned char *raw = malloc(len / 4 * 3 + 1);
    int got = raw ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len) : -1;
    if (got < 0) {
        free(raw);
        return NULL;
    }
    size_t pad = (len && b64[len - 1] == '=') + (len > 1 && b64[len - 2] == '=');
    *n = (size_t)got - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    return raw;
}

/* The bytes after the key id: *raw (nonce, tag, ciphertext; *owned when decoded from base64), NULL when malformed. */
static const unsigned char *sealed_bytes(bool text, const char *after, size_t len, size_t *raw_len,
                                         unsigned char **owned)
{
    *owned = NULL;
    if (text)
        return *owned = decode(after, len, raw_len);
    if (len < NONCE_LEN + TAG_LEN)
        return NULL;
    *raw_len = len;
    return (const unsigned char *)after;
}

char *sl_open(const sl_keyring *k, const char *aad, const char *sealed, size_t len, size_t *out_len, char *err,
              size_t errlen)
{
    bool text = has_prefix(sealed, len, SL_PREFIX_TEXT);
    size_t p = strlen(SL_PREFIX); /* all prefixes are as long */
    const char *dot = sl_is_sealed(sealed, len) ? memchr(sealed + p, '.', len - p) : NULL;
    if (!dot) {
        snprintf(err, errlen, "not a sealed body");
        return NULL;
    }
    const sl_key *key = find_key(k, sealed + p, (size_t)(dot - sealed) - p);
    if (!key) {
        snprintf(err, errlen, "sealed with key '%.*s', which is not in the seal key file", (int)(dot - sealed - p),
                 sealed + p);
        return NULL;
    }
    size_t raw_len = 0;
    unsigned char *owned = NULL;
    const unsigned char *raw = sealed_bytes(text, dot + 1, len - (size_t)(dot + 1 - sealed), &raw_len, &owned);
    size_t plain_len = raw ? raw_len - NONCE_LEN - TAG_LEN : 0;
    char *plain = raw ? malloc(plain_len + 1) : NULL;
    unsigned char tag[TAG_LEN];
    if (raw)
        memcpy(tag, raw + NONCE_LEN, TAG_LEN); /* gcm() takes a writable tag */
    bool ok = plain && gcm(false, key, raw, aad, raw + NONCE_LEN + TAG_LEN, plain_len, (unsigned char *)plain, tag);
    const char *why = !raw     ? "malformed sealed body"
                      : !plain ? "out of memory"
                               : "the sealed body does not open: altered, or sealed for another row";
    free(owned);
    if (!ok) {
        snprintf(err, errlen, "%s", why);
        if (plain)
            OPENSSL_cleanse(plain, plain_len);
        free(plain);
        return NULL;
    }
    plain[plain_len] = '\0';
    *out_len = plain_len;
    return plain;
}
