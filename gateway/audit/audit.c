/*
 * gateway/audit/audit.c — audit entries, their canonical form, keys, pseudonyms
 * and the MAC chain (see audit.h; the design is docs/audit.md).
 *
 * Two keys are derived from each master key in the key file, so that one
 * secret is never used for two purposes: the chain key (HMAC over entries)
 * and the pseudonym key (HMAC over patient references).
 *
 * Memory: a keyring is one allocation (au_keyring_free); canonical forms are
 * malloc'd for the caller. Threads: a keyring is read-only once loaded.
 */
#include "gateway/audit/audit.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "gateway/util/hex.h"
#include "gateway/util/hmac.h"
#include "gateway/util/keyfile.h"

#define CHAIN_LABEL "fhirgw audit chain v1"
#define PSEUDONYM_LABEL "fhirgw audit pseudonym v1"

/* ---- Small things ---------------------------------------------------------------------------- */

void au_set(char *field, size_t size, const char *text)
{
    size_t n = text ? strlen(text) : 0;
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--; /* text[n] starts the first character left out */
    }
    if (n)
        memcpy(field, text, n);
    field[n] = '\0';
}

/* ---- The canonical form ------------------------------------------------------------------------ */

typedef struct canon {
    unsigned char *data;
    size_t len, cap;
    bool failed;
} canon;

static void put(canon *c, const char *text, size_t n)
{
    char prefix[24];
    int p = snprintf(prefix, sizeof prefix, "%zu:", n);
    if (c->failed || !fa_reserve(&c->data, &c->cap, c->len + (size_t)p + n + 1, 1)) {
        c->failed = true;
        return;
    }
    memcpy(c->data + c->len, prefix, (size_t)p);
    c->len += (size_t)p;
    memcpy(c->data + c->len, text, n);
    c->len += n;
    c->data[c->len++] = ';';
}

static void put_text(canon *c, const char *text)
{
    put(c, text, strlen(text));
}

static void put_int(canon *c, int64_t v)
{
    char text[24];
    put(c, text, (size_t)snprintf(text, sizeof text, "%" PRId64, v));
}

unsigned char *au_canonical(const au_entry *e, size_t *len)
{
    canon c = {0};
    put_text(&c, "fhirgw-audit-v1");
    put_int(&c, e->seq);
    put_int(&c, e->time_ms);
    put_text(&c, e->key_id);
    put_text(&c, e->ura);
    put_text(&c, e->org_name);
    put_text(&c, e->cert_fp);
    put_text(&c, e->on_behalf);
    put_text(&c, e->request_id);
    put_text(&c, e->interaction);
    put(&c, &e->action, 1);
    put_text(&c, e->type);
    put_text(&c, e->id);
    put_int(&c, e->version);
    put_text(&c, e->patient);
    put_text(&c, e->where);
    put_text(&c, e->decision);
    put_int(&c, e->status);
    if (c.failed) {
        free(c.data);
        return NULL;
    }
    *len = c.len;
    return c.data;
}

/* ---- Keys ------------------------------------------------------------------------------------- */

typedef struct au_key {
    char id[AU_KEY_ID_MAX + 1];
    hmac_key chain;     /* keyed with HMAC(master, CHAIN_LABEL) */
    hmac_key pseudonym; /* keyed with HMAC(master, PSEUDONYM_LABEL) */
} au_key;

struct au_keyring {
    au_key *keys;
    size_t count, cap;
};

void au_keyring_free(au_keyring *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->count; i++) {
        hmac_key_free(&k->keys[i].chain);
        hmac_key_free(&k->keys[i].pseudonym);
    }
    OPENSSL_cleanse(k->keys, k->cap * sizeof *k->keys);
    free(k->keys);
    free(k);
}

static const au_key *find_key(const au_keyring *k, const char *id)
{
    for (size_t i = 0; i < k->count; i++)
        if (!strcmp(k->keys[i].id, id))
            return &k->keys[i];
    return NULL;
}

/* One key of the file (gateway/util/keyfile.h) into the ring: its two derived keys; NULL or a reason. */
static const char *take_key(void *arg, const char *id, const unsigned char master[KF_KEY_LEN])
{
    au_keyring *k = arg;
    if (!fa_reserve(&k->keys, &k->cap, k->count + 1, sizeof *k->keys))
        return "out of memory";
    au_key *key = &k->keys[k->count];
    memset(key, 0, sizeof *key);
    snprintf(key->id, sizeof key->id, "%s", id);
    unsigned char chain[AU_MAC_LEN], pseudonym[AU_MAC_LEN];
    hmac_key m;
    bool ok = hmac_key_init(&m, master, KF_KEY_LEN) && hmac_sha256(&m, CHAIN_LABEL, strlen(CHAIN_LABEL), chain) &&
              hmac_sha256(&m, PSEUDONYM_LABEL, strlen(PSEUDONYM_LABEL), pseudonym) &&
              hmac_key_init(&key->chain, chain, sizeof chain) &&
              hmac_key_init(&key->pseudonym, pseudonym, sizeof pseudonym);
    hmac_key_free(&m);
    OPENSSL_cleanse(chain, sizeof chain);
    OPENSSL_cleanse(pseudonym, sizeof pseudonym);
    if (!ok) {
        hmac_key_free(&key->chain);
        hmac_key_free(&key->pseudonym);
        return "HMAC failed";
    }
    k->count++;
    return NULL;
}

au_keyring *au_keyring_load(const char *path, char *err, size_t errlen)
{
    au_keyring *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!kf_load(path, "audit key file", take_key, k, err, errlen)) {
        au_keyring_free(k);
        return NULL;
    }
    return k;
}

const char *au_keyring_current(const au_keyring *k)
{
    return k->keys[k->count - 1].id;
}

size_t au_keyring_count(const au_keyring *k)
{
    return k->count;
}

const char *au_keyring_id(const au_keyring *k, size_t i)
{
    return i < k->count ? k->keys[i].id : NULL;
}

bool au_pseudonym(const au_keyring *k, const char *key_id, const char *reference, char out[AU_PSEUDONYM_LEN + 1])
{
    const au_key *key = find_key(k, key_id ? key_id : au_keyring_current(k));
    unsigned char mac[AU_MAC_LEN];
    if (!key || !hmac_sha256(&key->pseudonym, reference, strlen(reference), mac))
        return false;
    hex_encode(mac, AU_PSEUDONYM_LEN / 2, out);
    return true;
}

/* ---- The chain --------------------------------------------------------------------------------- */

bool au_mac(const au_keyring *k, const unsigned char prev[AU_MAC_LEN], const au_entry *e, unsigned char out[AU_MAC_LEN])
{
    const au_key *key = find_key(k, e->key_id);
    size_t len;
    unsigned char *canonical = key ? au_canonical(e, &len) : NULL;
    if (!canonical)
        return false;
    /* MAC(n-1) || be64(n) || canonical(n), in one buffer for the one-shot HMAC */
    unsigned char *data = malloc(AU_MAC_LEN + 8 + len);
    bool ok = data != NULL;
    if (ok) {
        memcpy(data, prev, AU_MAC_LEN);
        for (int i = 0; i < 8; i++)
            data[AU_MAC_LEN + i] = (unsigned char)((uint64_t)e->seq >> (56 - 8 * i));
        memcpy(data + AU_MAC_LEN + 8, canonical, len);
        ok = hmac_sha256(&key->chain, data, AU_MAC_LEN + 8 + len, out);
    }
    free(data);
    free(canonical);
    return ok;
}

bool au_chain_seal(const au_keyring *k, au_head *head, int64_t now_ms, au_entry *e, unsigned char mac[AU_MAC_LEN])
{
    e->seq = head->seq + 1;
    e->time_ms = now_ms;
    AU_SET(e->key_id, au_keyring_current(k));
    if (!au_mac(k, head->mac, e, mac))
        return false;
    head->seq = e->seq;
    memcpy(head->mac, mac, AU_MAC_LEN);
    return true;
}
