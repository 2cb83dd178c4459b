/*
 * tests/test_digest.c — fhir/digest.h: SHA-1 against the FIPS 180 test
 * vectors, and the measuring base64 decoder that Attachment checks use.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "fhir/digest.h"

static void sha1_base64(const char *text, size_t len, char out[FD_SHA1_BASE64 + 1])
{
    fd_sha1 s;
    uint8_t d[FD_SHA1_BYTES];
    fd_sha1_init(&s);
    fd_sha1_update(&s, text, len);
    fd_sha1_final(&s, d);
    fd_base64_encode(d, sizeof d, out);
}

Test(digest, sha1_known_vectors)
{
    char got[FD_SHA1_BASE64 + 1];
    sha1_base64("abc", 3, got); /* a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d */
    cr_expect_str_eq(got, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    sha1_base64("", 0, got); /* da39a3ee 5e6b4b0d 3255bfef 95601890 afd80709 */
    cr_expect_str_eq(got, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha1_base64(two_blocks, strlen(two_blocks), got); /* 84983e44 1c3bd26e baae4aa1 f95129e5 e54670f1 */
    cr_expect_str_eq(got, "hJg+RBw70m66rkqh+VEp5eVGcPE=");
}

Test(digest, measure_decodes_without_storing)
{
    uint64_t size;
    uint8_t d[FD_SHA1_BYTES];
    char b64[FD_SHA1_BASE64 + 1];
    cr_assert(fd_base64_measure("YW Jj\n", 6, &size, d), "whitespace is ignored");
    cr_expect_eq(size, 3);
    fd_base64_encode(d, sizeof d, b64);
    cr_expect_str_eq(b64, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", "the SHA-1 of 'abc'");
    cr_assert(fd_base64_measure("YQ==", 4, &size, d));
    cr_expect_eq(size, 1);
    cr_expect(!fd_base64_measure("Y!==", 4, &size, d), "not base64");
    cr_expect(!fd_base64_measure("YQ==YQ==", 8, &size, d), "data after padding");
}
