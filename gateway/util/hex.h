/*
 * gateway/util/hex.h — the value of one hexadecimal digit, for percent-decoding
 * (server paths, search parameters), chunk sizes and certificate
 * fingerprints; hex text to bytes (keys, MACs) and bytes to lower-case hex
 * (fingerprints, MACs, ids). Header-only; no state.
 */
#ifndef GATEWAY_HEX_H
#define GATEWAY_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* 0..15 for [0-9a-fA-F], -1 for anything else. */
static inline int hex_digit_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly 2n hex digits of text into n bytes; false (out partly written) for anything else. */
static inline bool hex_decode(const char *text, unsigned char *out, size_t n)
{
    if (strlen(text) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit_value(text[2 * i]), lo = hex_digit_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* n bytes as 2n lower-case hex digits at out, and a NUL after them. */
static inline void hex_encode(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

#endif
