/*
 * fhir/digest.h — what an Attachment's size and hash must agree with
 * (prefix fd_).
 *
 * Attachment.size is the number of bytes of the content and Attachment.hash
 * the base64 of its SHA-1 (datatypes.html#Attachment); when `data` is
 * inline both can be checked. fd_base64_measure decodes base64 (whitespace
 * ignored, as base64Binary allows) without storing the bytes: it counts
 * them and feeds them to SHA-1 as it goes, so a large attachment costs no
 * memory.
 *
 * Pure: no allocation; the SHA-1 is the project's own (FIPS 180-4).
 */
#ifndef FHIR_DIGEST_H
#define FHIR_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FD_SHA1_BYTES 20
#define FD_SHA1_BASE64 28 /* characters of a SHA-1 in base64, padding included */

typedef struct fd_sha1 {
    uint32_t h[5];
    uint64_t total; /* bytes fed */
    uint8_t block[64];
    size_t used;
} fd_sha1;

void fd_sha1_init(fd_sha1 *s);
void fd_sha1_update(fd_sha1 *s, const void *data, size_t len);
void fd_sha1_final(fd_sha1 *s, uint8_t out[FD_SHA1_BYTES]);

/* Decode base64 b64[0..len): the number of bytes in *size and their SHA-1 in out. False when it is not base64. */
bool fd_base64_measure(const char *b64, size_t len, uint64_t *size, uint8_t out[FD_SHA1_BYTES]);

/* Encode n bytes as base64 into out (4 * ((n + 2) / 3) characters and a NUL). */
void fd_base64_encode(const uint8_t *in, size_t n, char *out);

#endif
