/*
 * tests/test_hmac.c — HMAC-SHA-256 under a key keyed once (gateway/util/hmac.h):
 * the test cases of RFC 4231 (short, long and block-sized keys, short and long
 * messages), agreement with OpenSSL's one-shot HMAC() over many lengths, and
 * one key used by several threads at once.
 */
#include "gateway/util/hex.h"
#include "gateway/util/hmac.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <string.h>

/* The MAC of data under key, as lowercase hex. */
static void mac_hex(const unsigned char *key, size_t key_len, const void *data, size_t len,
                    char out[2 * HMAC_SHA256_LEN + 1])
{
    hmac_key k;
    cr_assert(hmac_key_init(&k, key, key_len));
    unsigned char mac[HMAC_SHA256_LEN];
    cr_assert(hmac_sha256(&k, data, len, mac));
    hex_encode(mac, sizeof mac, out);
    hmac_key_free(&k);
}

Test(hmac, the_test_cases_of_rfc_4231)
{
    char hex[2 * HMAC_SHA256_LEN + 1];
    unsigned char key[131];
    /* case 1: a 20-byte key of 0x0b, "Hi There" */
    memset(key, 0x0b, 20);
    mac_hex(key, 20, "Hi There", 8, hex);
    cr_expect_str_eq(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* case 2: the key "Jefe" */
    mac_hex((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28, hex);
    cr_expect_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* case 6: a 131-byte key of 0xaa (longer than the block: hashed first) */
    memset(key, 0xaa, sizeof key);
    const char *big = "Test Using Larger Than Block-Size Key - Hash Key First";
    mac_hex(key, sizeof key, big, strlen(big), hex);
    cr_expect_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* case 7: the same key, a message longer than the block */
    const char *long_text = "This is a test using a larger than block-size key and a larger than block-size data. "
                            "The key needs to be hashed before being used by the HMAC algorithm.";
    mac_hex(key, sizeof key, long_text, strlen(long_text), hex);
    cr_expect_str_eq(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

Test(hmac, agrees_with_the_one_shot_at_every_length)
{
    unsigned char key[80], data[300];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 13 + 1);
    for (size_t key_len = 0; key_len <= sizeof key; key_len += 16) { /* 0, 16, .., 64 (a block), 80 (past it) */
        hmac_key k;
        cr_assert(hmac_key_init(&k, key, key_len));
        for (size_t len = 0; len <= sizeof data; len++) {
            unsigned char mine[HMAC_SHA256_LEN], theirs[EVP_MAX_MD_SIZE];
            unsigned int n = 0;
            cr_assert(hmac_sha256(&k, data, len, mine));
            cr_assert(HMAC(EVP_sha256(), key, (int)key_len, data, len, theirs, &n));
            cr_assert_eq(n, HMAC_SHA256_LEN);
            cr_assert_arr_eq(mine, theirs, HMAC_SHA256_LEN, "key %zu bytes, message %zu bytes", key_len, len);
        }
        hmac_key_free(&k);
    }
}

typedef struct shared_use {
    const hmac_key *k;
    unsigned char expected[HMAC_SHA256_LEN];
    int wrong;
} shared_use;

static void *mac_often(void *arg)
{
    shared_use *u = arg;
    for (int i = 0; i < 20000; i++) {
        unsigned char mac[HMAC_SHA256_LEN];
        if (!hmac_sha256(u->k, "Patient/p1", 10, mac) || memcmp(mac, u->expected, sizeof mac))
            u->wrong++;
    }
    return NULL;
}

/* The audit trail MACs with one key from the workers and the commit thread at once. */
Test(hmac, one_key_serves_several_threads_at_once)
{
    hmac_key k;
    cr_assert(hmac_key_init(&k, (const unsigned char *)"a key of the audit trail", 24));
    shared_use u[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        u[i] = (shared_use){.k = &k};
        cr_assert(hmac_sha256(&k, "Patient/p1", 10, u[i].expected));
        cr_assert_eq(pthread_create(&t[i], NULL, mac_often, &u[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(u[i].wrong, 0, "thread %d: %d wrong MACs", i, u[i].wrong);
    }
    hmac_key_free(&k);
}

Test(hmac, a_freed_or_failed_key_macs_nothing)
{
    hmac_key k = {0};
    unsigned char mac[HMAC_SHA256_LEN];
    cr_expect_not(hmac_sha256(&k, "x", 1, mac));
    hmac_key_free(&k); /* a zeroed key may be freed */
    hmac_key_free(&k); /* and freed again */
}
