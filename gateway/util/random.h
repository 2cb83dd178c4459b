/*
 * gateway/util/random.h — random bytes, and version 4 and 7 UUIDs for the
 * gateway's ids (prefix rnd_).
 *
 * Every stored resource, notification and request gets a fresh random id.
 * OpenSSL's DRBG is the source; asking it for 16 bytes at a time takes its
 * locks per call, and libuuid's uuid_generate_random is a getrandom(2)
 * system call per id (2.7% of the gateway's CPU in the handover benchmark).
 * So each thread draws a block of bytes and hands them out in pieces;
 * handed-out bytes are wiped from the block, so no two ids share them.
 *
 * The bytes are good for keys' nonces too (the store seals documents with
 * AES-GCM under a random nonce): a forked child drops its block, so parent
 * and child never hand out the same bytes.
 *
 * Threads: the blocks are per thread; no locking. Memory: nothing is
 * allocated; the callers own their buffers.
 */
#ifndef GATEWAY_UTIL_RANDOM_H
#define GATEWAY_UTIL_RANDOM_H

#include <stdbool.h>
#include <stddef.h>

#define RND_MAX_PIECE 64 /* bytes one rnd_bytes call hands out at most */

/* n (at most RND_MAX_PIECE) random bytes into out; false (out untouched) when the DRBG fails. */
bool rnd_bytes(unsigned char *out, size_t n);

/*
 * A random (version 4, RFC 9562) UUID in lower case: 36 characters and a NUL.
 * Never fails: when the DRBG does, the kernel's getrandom(2) (through libuuid)
 * is asked instead.
 */
void rnd_uuid4(char out[37]);

/*
 * A version 7 UUID (RFC 9562): the Unix time in milliseconds in its first
 * 48 bits, then 74 random bits. For ids that a database indexes: ids made
 * one after the other sort one after the other, so each new one lands at
 * the end of the index's B-tree instead of on a random page of it (with
 * version 4 ids, two in five pages a handover wrote to the WAL were the
 * resource table's unique index). 74 random bits still make them
 * unguessable; they do tell the time they were made, to the millisecond,
 * which lastUpdated tells anyone who may read the resource anyway.
 */
void rnd_uuid7(char out[37]);

#endif
