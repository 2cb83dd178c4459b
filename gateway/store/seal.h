/*
 * gateway/store/seal.h — documents sealed at rest: AES-256-GCM with a keyring
 * kept outside the database (prefix sl_). docs/handover.md ("Protection at
 * rest") has the design and its reasons.
 *
 * Keys come from a key file (gateway/util/keyfile.h: "<key-id> <64 hex>"
 * lines, the last one seals new versions, older ones still open what they
 * sealed; rotation = append a line and restart). Each key in the file is a
 * master key; the AES key is derived from it (HMAC-SHA-256 with a label), so
 * a master key never encrypts directly and one file could serve another
 * purpose later without reusing a key.
 *
 * A sealed body is bytes, stored in the version's body column as a blob:
 *
 *     fgseal2.<key-id>.<nonce[12] || tag[16] || ciphertext>
 *
 * Bodies sealed before 2026-12-05 are text, base64 of the same bytes, and
 * still open (nothing rewrites them; they go when their rows are purged):
 *
 *     fgseal1.<key-id>.<base64(nonce[12] || tag[16] || ciphertext)>
 *
 * The binary form saves a quarter of each document's bytes, written twice
 * (WAL and checkpoint), and the base64 pass both ways.
 *
 * A body sealed early, before its version is committed (the store's
 * st_seal_early: on the request's worker, off the store's serial commit
 * thread), has the same bytes under its own prefix:
 *
 *     fgseal3.<key-id>.<nonce[12] || tag[16] || ciphertext>
 *
 * Its plaintext lacks meta.versionId and meta.lastUpdated, which are known
 * only at commit; the store puts them back from the row when it opens it.
 *
 * JSON always starts with '{' (after blanks), so a sealed body is never
 * mistaken for plaintext and the other way round. The associated data (AAD)
 * names the row: the store passes "<type>/<id>/_history/<version>", so a
 * ciphertext copied to another resource or version does not open. The nonce
 * is 96 random bits per seal (RAND_bytes); with one key that is safe far
 * beyond the number of documents a gateway seals before its key is rotated.
 *
 * Memory: sl_seal returns malloc'd bytes and sl_open malloc'd text (both
 * NUL-terminated, caller frees); a keyring is freed with sl_keyring_free (its keys are wiped).
 * Threads: a loaded keyring is read-only and shared by all threads.
 */
#ifndef GATEWAY_STORE_SEAL_H
#define GATEWAY_STORE_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#define SL_PREFIX "fgseal2."       /* what sl_seal writes: binary */
#define SL_PREFIX_EARLY "fgseal3." /* what sl_seal_early writes: binary, the version's meta left out */
#define SL_PREFIX_TEXT "fgseal1."  /* the base64 text of before, still opened */

typedef struct sl_keyring sl_keyring;

/* Loads a key file; NULL with "path:line: reason" in err (a missing file included). */
sl_keyring *sl_keyring_load(const char *path, char *err, size_t errlen);
void sl_keyring_free(sl_keyring *k);
/* The id of the key that seals (the file's last line). */
const char *sl_keyring_current(const sl_keyring *k);

/* Whether a body is sealed (starts with SL_PREFIX, SL_PREFIX_EARLY or SL_PREFIX_TEXT). */
bool sl_is_sealed(const char *text, size_t len);
/* Whether it was sealed early (SL_PREFIX_EARLY): its plaintext lacks the version's meta. */
bool sl_is_early(const char *text, size_t len);

/* Seals plain (len bytes) under the current key with aad; malloc'd bytes (SL_PREFIX...), *out_len of them; NULL with a reason. */
char *sl_seal(const sl_keyring *k, const char *aad, const char *plain, size_t len, size_t *out_len, char *err,
              size_t errlen);
/* The same under SL_PREFIX_EARLY (for a plaintext without the version's meta). */
char *sl_seal_early(const sl_keyring *k, const char *aad, const char *plain, size_t len, size_t *out_len, char *err,
                    size_t errlen);

/*
 * Opens a sealed body (either form); malloc'd plaintext, *out_len bytes; NULL with a reason
 * when the key id is unknown, the text is malformed, or the tag does not
 * verify (tampered, or sealed for another row: another aad).
 */
char *sl_open(const sl_keyring *k, const char *aad, const char *sealed, size_t len, size_t *out_len, char *err,
              size_t errlen);

#endif
