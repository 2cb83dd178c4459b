/*
 * mappings/pseudonym.c — HMAC-SHA-256 pseudonyms of BSNs and the FHIRPath
 * host function pseudonym() (see pseudonym.h).
 *
 * Memory: results of pseudonym() live in the caller's FHIRPath arena; nothing
 * else is allocated.
 */
#include "mappings/pseudonym.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool mpn_key_from_hex(const char *text, size_t len, mpn_key *key, char *err, size_t err_size)
{
    memset(key, 0, sizeof *key);
    while (len && blank(text[len - 1]))
        len--;
    while (len && blank(*text))
        text++, len--;
    if (len % 2 || len < 2 * MPN_KEY_MIN || len > 2 * MPN_KEY_MAX) {
        snprintf(err, err_size, "the pseudonym key must be %d to %d hex digits (an even number), found %zu characters",
                 2 * MPN_KEY_MIN, 2 * MPN_KEY_MAX, len);
        return false;
    }
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, err_size, "the pseudonym key has a character that is not a hex digit at position %zu",
                     i + 1 + (hi >= 0));
            OPENSSL_cleanse(key, sizeof *key);
            return false;
        }
        key->bytes[key->len++] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool mpn_is_bsn(const char *s, size_t len)
{
    if (len != 9)
        return false;
    int sum = 0;
    for (size_t i = 0; i < 9; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int weight = i == 8 ? -1 : (int)(9 - i);
        sum += weight * (s[i] - '0');
    }
    return sum % 11 == 0;
}

bool mpn_pseudonym(const mpn_key *key, const char *bsn, size_t len, char out[MPN_HEX_LEN + 1])
{
    out[0] = 0;
    if (!key || key->len < MPN_KEY_MIN || !mpn_is_bsn(bsn, len))
        return false;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)bsn, len, mac, &mac_len) || mac_len != 32)
        return false;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < mac_len; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 15];
    }
    out[2 * mac_len] = 0;
    return true;
}

/* The text of an item (a string or a primitive element); false when it does not fit buf. */
static bool item_bsn(const fp_item *it, char *buf, size_t cap, size_t *len)
{
    *len = fp_item_text(it, buf, cap);
    return *len < cap;
}

static bool fn_pseudonym(void *arg, const fp_host_call *call, fp_collection *out, fp_error *err)
{
    const mpn_key *key = arg;
    out->count = 0;
    out->items = fp_arena_alloc(call->arena, call->input->count * sizeof(fp_item) + 1);
    if (!out->items) {
        snprintf(err->message, sizeof err->message, "pseudonym(): out of memory");
        return false;
    }
    for (size_t i = 0; i < call->input->count; i++) {
        char bsn[32];
        size_t len;
        char *hex = fp_arena_alloc(call->arena, MPN_HEX_LEN + 1);
        if (!hex) {
            snprintf(err->message, sizeof err->message, "pseudonym(): out of memory");
            return false;
        }
        if (!item_bsn(&call->input->items[i], bsn, sizeof bsn, &len) || !mpn_pseudonym(key, bsn, len, hex)) {
            OPENSSL_cleanse(bsn, sizeof bsn);
            snprintf(err->message, sizeof err->message,
                     "pseudonym(): item %zu of its input is not a BSN (nine digits passing the eleven-test)", i + 1);
            return false;
        }
        OPENSSL_cleanse(bsn, sizeof bsn);
        out->items[out->count++] = fp_string(hex, MPN_HEX_LEN);
    }
    return true;
}

bool mpn_register(fp_functions *fns, const mpn_key *key, fp_error *err)
{
    if (!key || key->len < MPN_KEY_MIN) {
        snprintf(err->message, sizeof err->message, "pseudonym(): no key of at least %d bytes", MPN_KEY_MIN);
        return false;
    }
    return fp_functions_add(fns, "pseudonym", 0, 0, fn_pseudonym, (void *)key, err);
}
