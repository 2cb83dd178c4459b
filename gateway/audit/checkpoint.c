/*
 * gateway/audit/checkpoint.c — signed checkpoints of the chain head, appended to
 * a file outside the database (see audit.h and docs/audit.md).
 *
 * A line: "v1 <seq> <mac hex> <time ms> <Ed25519 signature hex>". The
 * signature covers "fhirgw-audit-checkpoint v1 <seq> <mac hex> <time ms>".
 * The file is opened for appending only and synced after every line, so an
 * acknowledged checkpoint survives a crash.
 *
 * Memory: an au_signer holds one EVP_PKEY (au_signer_free). Threads: signing
 * and verifying with one signer from several threads is safe (EVP_PKEY is
 * read-only here and every call has its own EVP_MD_CTX).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/audit/audit.h"
#include "gateway/util/hex.h"

#define SIG_LEN 64 /* Ed25519 */
#define LINE_MAX_BYTES 512

struct au_signer {
    EVP_PKEY *key;
    bool can_sign;
};

au_signer *au_signer_load(const char *path, char *err, size_t errlen)
{
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path && *path ? path : "audit checkpoint key",
                 path && *path ? strerror(errno) : "not configured");
        return NULL;
    }
    au_signer *s = calloc(1, sizeof *s);
    if (s && (s->key = PEM_read_PrivateKey(f, NULL, NULL, NULL)))
        s->can_sign = true;
    else if (s) {
        rewind(f);
        s->key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    }
    fclose(f);
    if (!s || !s->key || EVP_PKEY_get_id(s->key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "%s: not an Ed25519 key in PEM (openssl genpkey -algorithm ed25519)", path);
        au_signer_free(s);
        return NULL;
    }
    return s;
}

void au_signer_free(au_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}

bool au_signer_can_sign(const au_signer *s)
{
    return s->can_sign;
}

/* The signed text of a checkpoint, and the hex of its MAC (mac: AU_MAC_HEX bytes). */
static int signed_text(const au_checkpoint *c, char *out, size_t size, char mac[AU_MAC_HEX])
{
    hex_encode(c->mac, AU_MAC_LEN, mac);
    return snprintf(out, size, "fhirgw-audit-checkpoint v1 %" PRId64 " %s %" PRId64, c->seq, mac, c->time_ms);
}

static bool sign(const au_signer *s, const char *text, size_t len, unsigned char sig[SIG_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = SIG_LEN;
    bool ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
              EVP_DigestSign(ctx, sig, &n, (const unsigned char *)text, len) == 1 && n == SIG_LEN;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static bool verify(const au_signer *s, const char *text, size_t len, const unsigned char sig[SIG_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
              EVP_DigestVerify(ctx, sig, SIG_LEN, (const unsigned char *)text, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool au_checkpoint_append(const au_signer *s, const char *path, const au_checkpoint *c, char *err, size_t errlen)
{
    char text[256], mac[AU_MAC_HEX], sig_hex[2 * SIG_LEN + 1], line[LINE_MAX_BYTES];
    unsigned char sig[SIG_LEN];
    int n = signed_text(c, text, sizeof text, mac);
    if (!s->can_sign || !sign(s, text, (size_t)n, sig)) {
        snprintf(err, errlen, "cannot sign the checkpoint (%s)", s->can_sign ? "Ed25519 failed" : "a public key only");
        return false;
    }
    hex_encode(sig, SIG_LEN, sig_hex);
    int len = snprintf(line, sizeof line, "v1 %" PRId64 " %s %" PRId64 " %s\n", c->seq, mac, c->time_ms, sig_hex);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    if (!ok)
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return ok;
}

au_cp_status au_checkpoint_parse(const au_signer *s, const char *line, au_checkpoint *out)
{
    char mac_hex[AU_MAC_HEX + 1], sig_hex[2 * SIG_LEN + 2], tail;
    int64_t seq, time_ms;
    unsigned char sig[SIG_LEN];
    memset(out, 0, sizeof *out);
    if (sscanf(line, "v1 %" SCNd64 " %65s %" SCNd64 " %129s %c", &seq, mac_hex, &time_ms, sig_hex, &tail) != 4 ||
        seq < 1 || !hex_decode(mac_hex, out->mac, AU_MAC_LEN) || !hex_decode(sig_hex, sig, SIG_LEN))
        return AU_CP_MALFORMED;
    out->seq = seq;
    out->time_ms = time_ms;
    char text[256], mac[AU_MAC_HEX];
    int n = signed_text(out, text, sizeof text, mac);
    return verify(s, text, (size_t)n, sig) ? AU_CP_OK : AU_CP_BAD_SIGNATURE;
}

bool au_checkpoint_last(const au_signer *s, const char *path, au_checkpoint *out, bool *found, char *err, size_t errlen)
{
    *found = false;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return true;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    char line[LINE_MAX_BYTES];
    unsigned lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        au_checkpoint c;
        au_cp_status st = au_checkpoint_parse(s, line, &c);
        if (st != AU_CP_OK) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno,
                     st == AU_CP_MALFORMED ? "not a checkpoint line" : "the checkpoint's signature does not verify");
            ok = false;
        } else {
            c.line = lineno;
            *out = c;
            *found = true;
        }
    }
    fclose(f);
    return ok;
}
