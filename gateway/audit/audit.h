/*
 * gateway/audit/audit.h — the NEN 7513 audit trail's entries, keys, chain and
 * checkpoints (prefix au_). docs/audit.md has the design and its reasons.
 *
 * An entry (au_entry) says who (organisation URA and name, client
 * certificate fingerprint, on whose behalf), what (interaction, FHIR action,
 * resource type/id/version, where in a Bundle), which patient (a pseudonym,
 * never a BSN), when, the decision and the HTTP status, and the request's
 * X-Request-ID. Its canonical serialisation (au_canonical) is what the MAC
 * covers: every field, in a fixed order, length-prefixed, so that no two
 * different entries serialise alike.
 *
 * The chain: entry n's MAC = HMAC-SHA-256(K, MAC(n-1) || be64(n) || canonical(n)),
 * MAC(0) = 32 zero bytes, where K is the chain key derived from the master
 * key named by the entry's key_id. The sequence n and the time are assigned
 * by the store's commit thread (au_chain_seal), so entries chain in commit
 * order. Keys come from a key file outside the database (au_keyring_load):
 * one "<key-id> <64 hex digits>" per line, the last line is the key new
 * entries use; older lines stay so that older entries still verify (rotation
 * = append a line and restart).
 *
 * Checkpoints: the chain head (seq, MAC, time) signed with a separate
 * Ed25519 key, appended as a line to a file outside the database
 * (au_checkpoint_append), so that a tail removed from the database together
 * with anything stored beside it is still seen (audit verify).
 *
 * Memory: au_entry is a value (fixed-size fields); au_keyring and
 * au_signer are opaque objects freed with their _free function; nothing
 * else allocates. Threads: a loaded keyring and signer are read-only and may
 * be shared; an au_chain is used by one thread at a time (the commit thread).
 */
#ifndef GATEWAY_AUDIT_H
#define GATEWAY_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/util/limits.h"

#define AU_MAC_LEN 32                         /* HMAC-SHA-256 */
#define AU_MAC_HEX (2 * AU_MAC_LEN + 1)       /* as lowercase hex with its NUL */
#define AU_KEY_ID_MAX 32                      /* [A-Za-z0-9._-]{1,32} */
#define AU_PSEUDONYM_LEN 32                   /* hex digits of a patient pseudonym (128 bits) */
#define AU_TEXT_MAX (LIM(audit_text_max) + 1) /* free-text fields (names, request ids) with their NUL */

/* FHIR AuditEvent.action: C create, R read/vread/search/history, U update/patch, D delete, E execute. */
typedef struct au_entry {
    int64_t seq;     /* assigned at commit (au_chain_seal) */
    int64_t time_ms; /* assigned at commit: when the access was recorded, epoch ms */
    char key_id[AU_KEY_ID_MAX + 1];
    char ura[16];                       /* the organisation that accessed */
    char org_name[AU_TEXT_MAX];         /* its registered name */
    char cert_fp[65];                   /* SHA-256 of its client certificate, hex; "" when unknown */
    char on_behalf[AU_TEXT_MAX];        /* the person acting, when a certificate or assertion names one; "" today */
    char request_id[AU_TEXT_MAX];       /* X-Request-ID (the client's, or the one the server made) */
    char interaction[32];               /* "read", "vread", "search-type", "create", "transaction", ... */
    char action;                        /* 'C' 'R' 'U' 'D' 'E' */
    char type[65];                      /* resource type; "" when none */
    char id[65];                        /* resource id; "" for a type-level entry */
    int64_t version;                    /* 0 when none */
    char patient[AU_PSEUDONYM_LEN + 1]; /* pseudonym of the patient concerned; "" when none is known */
    char where[48];                     /* "Bundle.entry[3]"; "" outside Bundles */
    char decision[16];                  /* "allowed", "hidden" (answered 404), "forbidden" */
    int status;                         /* the HTTP status this access was answered with */
} au_entry;

/* Copies text into a fixed field, cut at a character boundary when too long. */
void au_set(char *field, size_t size, const char *text);
#define AU_SET(field, text) au_set((field), sizeof(field), (text))

/* The canonical serialisation: "fhirgw-audit-v1" then "<len>:<bytes>;" per field in a fixed order. Malloc'd,
 * *len bytes; NULL when out of memory. */
unsigned char *au_canonical(const au_entry *e, size_t *len);

/* ---- Keys -------------------------------------------------------------------------------------- */

typedef struct au_keyring au_keyring;

/* Loads a key file; NULL with "path:line: reason" in err. At least one key; ids unique; 32-byte keys. */
au_keyring *au_keyring_load(const char *path, char *err, size_t errlen);
void au_keyring_free(au_keyring *k);
/* The id of the key new entries use (the last line). */
const char *au_keyring_current(const au_keyring *k);
/* How many keys; the id of key i (for answering "which pseudonyms did this patient have"). */
size_t au_keyring_count(const au_keyring *k);
const char *au_keyring_id(const au_keyring *k, size_t i);

/* The pseudonym of a patient reference ("Patient/123") under key key_id (NULL: the current one):
 * AU_PSEUDONYM_LEN hex digits of HMAC-SHA-256(pseudonym key, reference). False when the key is unknown. */
bool au_pseudonym(const au_keyring *k, const char *key_id, const char *reference, char out[AU_PSEUDONYM_LEN + 1]);

/* The MAC of entry e after prev, under the chain key of e->key_id; false when that key is unknown. */
bool au_mac(const au_keyring *k, const unsigned char prev[AU_MAC_LEN], const au_entry *e,
            unsigned char out[AU_MAC_LEN]);

/* ---- The chain head, kept by the store's commit thread ------------------------------------------- */

typedef struct au_head {
    int64_t seq; /* 0: empty */
    unsigned char mac[AU_MAC_LEN];
} au_head;

/* Seals e as the next entry after *head: assigns seq, time and the current key id, computes its MAC into
 * mac and advances *head. False (nothing changed) when out of memory. */
bool au_chain_seal(const au_keyring *k, au_head *head, int64_t now_ms, au_entry *e, unsigned char mac[AU_MAC_LEN]);

/* ---- Checkpoints ------------------------------------------------------------------------------- */

typedef struct au_signer au_signer;

/* Loads an Ed25519 key from PEM: a private key signs and verifies; a public key only verifies. */
au_signer *au_signer_load(const char *path, char *err, size_t errlen);
void au_signer_free(au_signer *s);
bool au_signer_can_sign(const au_signer *s);

typedef struct au_checkpoint {
    int64_t seq;
    unsigned char mac[AU_MAC_LEN];
    int64_t time_ms;
    unsigned line; /* in the file, when read */
} au_checkpoint;

/* Appends a signed line "v1 <seq> <mac> <time> <signature>" to path (O_APPEND, created 0600) and syncs it. */
bool au_checkpoint_append(const au_signer *s, const char *path, const au_checkpoint *c, char *err, size_t errlen);

/* One checkpoint line read back: AU_CP_OK, or why it is not one. */
typedef enum au_cp_status { AU_CP_OK, AU_CP_MALFORMED, AU_CP_BAD_SIGNATURE } au_cp_status;
au_cp_status au_checkpoint_parse(const au_signer *s, const char *line, au_checkpoint *out);

/* The last well-formed, correctly signed checkpoint of the file (found false when none or no file); false with
 * a reason in err when the file cannot be read or a line is malformed or forged. */
bool au_checkpoint_last(const au_signer *s, const char *path, au_checkpoint *out, bool *found, char *err,
                        size_t errlen);

/* ---- Verifying a trail ------------------------------------------------------------------------- */

typedef enum au_problem {
    AU_OK = 0,
    AU_ALTERED,            /* an entry's fields no longer match its MAC */
    AU_REMOVED,            /* a sequence number is missing */
    AU_INSERTED,           /* an entry the gateway did not write was put in */
    AU_REORDERED,          /* two entries changed places */
    AU_TRUNCATED,          /* fewer entries than the last checkpoint covers */
    AU_CHECKPOINT_FORGED,  /* a checkpoint line is malformed or its signature does not verify */
    AU_CHECKPOINT_MISMATCH /* a checkpoint names a MAC the trail does not have at its seq */
} au_problem;

const char *au_problem_name(au_problem p);

/* Where the entries come from: in seq order (next), and by seq (get, for telling the kinds apart). */
typedef struct au_source {
    void *arg;
    /* The next entry in seq order: 1 with *e and mac filled, 0 at the end, -1 on an error. */
    int (*next)(void *arg, au_entry *e, unsigned char mac[AU_MAC_LEN]);
    /* The entry with this seq: 1 found, 0 none, -1 error. */
    int (*get)(void *arg, int64_t seq, au_entry *e, unsigned char mac[AU_MAC_LEN]);
} au_source;

typedef struct au_report {
    au_problem problem;
    int64_t seq;         /* the first entry concerned (or the checkpoint's seq) */
    int64_t other_seq;   /* REORDERED: the entry it changed places with */
    unsigned line;       /* checkpoint problems: the line of the checkpoint file */
    int64_t entries;     /* entries walked */
    int64_t checkpoints; /* checkpoints checked */
    char message[256];
} au_report;

/* Walks the chain and the checkpoint file (path; NULL or a missing file: no checkpoints) and reports the first
 * problem. Returns false only on an I/O error (message in report). */
bool au_verify(const au_keyring *k, const au_signer *s, const char *checkpoint_path, const au_source *src,
               au_report *report);

#endif
