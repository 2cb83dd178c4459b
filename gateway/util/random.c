/*
 * gateway/util/random.c — random bytes from per-thread blocks of OpenSSL's
 * DRBG, and version 4 UUIDs made of them (see random.h).
 */
#include "gateway/util/random.h"
#include "gateway/util/hex.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#define BLOCK_BYTES 512 /* 32 UUIDs per draw */

static _Thread_local unsigned char block[BLOCK_BYTES];
static _Thread_local size_t block_left; /* the unused bytes are the last block_left of block */

/* A forked child must not hand out its parent's bytes again (two processes
 * sealing with the same nonce would break AES-GCM): the child's only thread,
 * the one that forked, drops its block. */
static void drop_block_in_child(void)
{
    memset(block, 0, sizeof block);
    block_left = 0;
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, drop_block_in_child);
}

bool rnd_bytes(unsigned char *out, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (n > RND_MAX_PIECE)
        return false;
    pthread_once(&once, watch_forks);
    if (block_left < n) {
        if (RAND_bytes(block, sizeof block) != 1)
            return false;
        block_left = sizeof block;
    }
    unsigned char *piece = block + sizeof block - block_left;
    memcpy(out, piece, n);
    memset(piece, 0, n); /* handed out once: never part of another id */
    block_left -= n;
    return true;
}

/* 16 random bytes: the DRBG's, or when it fails the kernel's getrandom(2) (through libuuid). */
static void random_16(unsigned char u[16])
{
    if (!rnd_bytes(u, 16))
        uuid_generate_random(u);
}

/* The version and the RFC's variant set, as 8-4-4-4-12 lower-case hex digits. */
static void format_uuid(unsigned char u[16], unsigned version, char out[37])
{
    u[6] = (unsigned char)((u[6] & 0x0f) | (version << 4));
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    /* the groups of 4, 2, 2, 2 and 6 bytes */
    hex_encode(u, 4, out);
    out[8] = '-';
    hex_encode(u + 4, 2, out + 9);
    out[13] = '-';
    hex_encode(u + 6, 2, out + 14);
    out[18] = '-';
    hex_encode(u + 8, 2, out + 19);
    out[23] = '-';
    hex_encode(u + 10, 6, out + 24);
}

void rnd_uuid4(char out[37])
{
    unsigned char u[16];
    random_16(u);
    format_uuid(u, 4, out);
}

void rnd_uuid7(char out[37])
{
    unsigned char u[16];
    random_16(u);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    for (int i = 5; i >= 0; i--, ms >>= 8) /* big-endian, so that the text sorts by time */
        u[i] = (unsigned char)(ms & 0xff);
    format_uuid(u, 7, out);
}
