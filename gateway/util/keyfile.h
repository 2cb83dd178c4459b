/*
 * gateway/util/keyfile.h — reading a key file (prefix kf_): the format every
 * secret key of the gateway is kept in, outside the database.
 *
 *     # comment
 *     <key-id> <64 hex digits>
 *
 * one 32-byte key per line, ids of 1-32 characters [A-Za-z0-9._-], each id
 * once; the LAST line is the current key (the one that writes: seals,
 * chains), older lines stay so that what they wrote is still read (rotation
 * = append a line and restart). The audit chain's keys (audit_key_file) and
 * the document seal keys (seal_key_file) use it.
 *
 * Memory: kf_load hands each key to the callback in a stack buffer that is
 * wiped after the call; the ids seen (for the duplicate check) are freed
 * before it returns. The callback copies what it keeps.
 */
#ifndef GATEWAY_KEYFILE_H
#define GATEWAY_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define KF_KEY_LEN 32    /* bytes of a key */
#define KF_KEY_ID_MAX 32 /* characters of a key id */

/* Called once per key line in file order; returns NULL or a reason that stops the load. */
typedef const char *(*kf_take_fn)(void *arg, const char *id, const unsigned char key[KF_KEY_LEN]);

/*
 * Reads path, calling take for each key. Returns the number of keys (at least
 * 1), or 0 with "path:line: reason" in err: a missing or unreadable file, a
 * malformed line, a duplicate id, no key at all, or take's reason. `what`
 * names the file in messages when path is empty ("seal key file").
 */
size_t kf_load(const char *path, const char *what, kf_take_fn take, void *arg, char *err, size_t errlen);

#endif
