/*
 * gateway/auth/identity.h — who is calling, from a verified peer certificate (prefix id_).
 *
 * Dutch care organisations authenticate system-to-system with UZI server
 * certificates. The organisation's URA number (its UZI-register subscriber
 * number) sits in the subjectAltName as an otherName of type 2.5.5.5 whose
 * IA5String value has seven dash-separated fields:
 *
 *     <OID CA>-<version>-<UZI nr>-<card type>-<subscriber nr = URA>-<role>-<AGB>
 *     2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-00000000
 *
 * This module reads that URA (id_ura_from_cert), falls back to an operator's
 * table of pinned certificate fingerprints for callers whose certificates carry
 * no URA (id_table, id_lookup_fingerprint), combines both (id_resolve), and
 * verifies a peer chain against a CA file and CRL (id_verify_chain).
 *
 * Nothing here trusts a certificate by itself: id_ura_from_cert and id_resolve
 * only read what a certificate says. Call them on a certificate the TLS layer
 * (or id_verify_chain) has verified, never on an unverified one.
 *
 * Errors are values: id_status for parsing, NULL plus a message for loading,
 * an X509_V_ERR_* code plus a message for verification. Nothing prints or exits,
 * and every function leaves OpenSSL's error queue as it found it.
 *
 * Memory: the caller owns every X509 and STACK_OF(X509) it passes in; nothing
 * here keeps a reference. id_table_load returns a table the caller frees with
 * id_table_free; id_entry pointers from lookups point into the table and live
 * as long as it does. Results (id_identity, id_uzi_name, URA and fingerprint
 * buffers) are fixed-size values in caller-provided storage.
 *
 * Threads: a loaded table is never modified, so any number of threads may look
 * up and resolve against one table at once without locking. To reload, load a
 * new table, swap the pointer, and free the old one when no reader uses it.
 * The other functions keep no state.
 */
#ifndef GATEWAY_IDENTITY_H
#define GATEWAY_IDENTITY_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/util/limits.h"

#define ID_URA_LEN 8                                 /* a URA is exactly 8 digits */
#define ID_FINGERPRINT_LEN 64                        /* SHA-256 as lowercase hex, no colons */
#define ID_UZI_NAME_MAX LIM(uzi_name_max)            /* longest otherName value accepted (real ones are ~60) */
#define ID_NAME_MAX (LIM(organisation_name_max) + 1) /* organisation name, bytes including the NUL */
#define ID_ROLE_MAX (LIM(role_max) + 1)              /* role token, bytes including the NUL */

typedef enum id_status {
    ID_OK = 0,
    ID_ERR_NO_CERT,        /* no certificate given (the peer sent none) */
    ID_ERR_NO_SAN,         /* the certificate has no subjectAltName */
    ID_ERR_BAD_SAN,        /* subjectAltName present but undecodable, or repeated */
    ID_ERR_NO_UZI_NAME,    /* no otherName of type 2.5.5.5 */
    ID_ERR_VALUE_TYPE,     /* the otherName value is not an IA5String (or UTF8String) */
    ID_ERR_EMPTY,          /* the value is empty */
    ID_ERR_TOO_LONG,       /* longer than ID_UZI_NAME_MAX */
    ID_ERR_NOT_PRINTABLE,  /* a byte outside printable ASCII (NUL, control, non-ASCII) */
    ID_ERR_FIELD_COUNT,    /* not exactly 7 dash-separated fields */
    ID_ERR_BAD_CA_OID,     /* field 1 is not a dotted OID */
    ID_ERR_BAD_VERSION,    /* field 2 is not 1-4 digits */
    ID_ERR_BAD_UZI_NUMBER, /* field 3 is not 1-12 digits */
    ID_ERR_BAD_CARD_TYPE,  /* field 4 is not one of Z, N, M, S */
    ID_ERR_NOT_SERVER,     /* a well-formed UZI card name (Z/N/M), not a server certificate (S) */
    ID_ERR_BAD_URA,        /* field 5 is not exactly 8 digits */
    ID_ERR_BAD_ROLE,       /* field 6 is not NN.NNN */
    ID_ERR_BAD_AGB,        /* field 7 is not 1-8 digits */
    ID_ERR_AMBIGUOUS,      /* several UZI otherNames naming different URAs */
} id_status;

/* A static English sentence for a status ("URA is not 8 digits"). */
const char *id_status_message(id_status status);

/* The seven fields of a UZI otherName value, each NUL-terminated. */
typedef struct id_uzi_name {
    char ca_oid[64]; /* OID of the issuing CA, e.g. 2.16.528.1.1007.99.2110 */
    char version[5];
    char uzi_number[13];
    char card_type; /* Z practitioner, N named employee, M unnamed employee, S server */
    char ura[ID_URA_LEN + 1];
    char role[7]; /* NN.NNN; 00.000 for server certificates */
    char agb[9];
} id_uzi_name;

/* Parse and validate one otherName value of `len` bytes (not NUL-terminated).
 * On success fills *out; on error *out is zeroed. Accepts every card type;
 * id_ura_from_cert is the one that insists on S. */
id_status id_parse_uzi_name(const char *text, size_t len, id_uzi_name *out);

/* The URA of a UZI server certificate, into out (8 digits + NUL; "" on error).
 * Every 2.5.5.5 otherName in the certificate must be valid, of card type S, and
 * name the same URA; the first problem found is returned. */
id_status id_ura_from_cert(X509 *cert, char out[ID_URA_LEN + 1]);

/* SHA-256 of the certificate's DER encoding as 64 lowercase hex digits. */
bool id_fingerprint(X509 *cert, char out[ID_FINGERPRINT_LEN + 1]);

/* Normalise a written fingerprint (hex, either case, colons allowed anywhere)
 * to 64 lowercase hex digits. False if it is not a SHA-256 fingerprint. */
bool id_normalise_fingerprint(const char *text, char out[ID_FINGERPRINT_LEN + 1]);

/* ---- Fingerprint table -------------------------------------------------------
 *
 * A tab-separated file. The first line that is neither blank nor a comment
 * (`#`) is a header naming the columns; `fingerprint`, `name`, `ura` and `role`
 * are required, in any order, and other columns are ignored, so the
 * organisations.tsv that certs/make-test-pki writes loads as it is:
 *
 *     name        ura       role      cert                    fingerprint
 *     hospital-a  90000101  hospital  clients/hospital-a.crt  f451e0d8...
 *
 * Each row: fingerprint as id_normalise_fingerprint accepts it; name non-empty
 * and without control characters; ura 8 digits; role a lowercase token
 * ([a-z0-9_-]+), or several joined by commas ("elv,grz"). A fingerprint may appear once. A line, its end included,
 * is at most organisations_line_max bytes, and a line has at most organisations_columns_max columns
 * (gateway/util/limits.h); anything longer stops the load with the line number.
 */
typedef struct id_entry {
    char fingerprint[ID_FINGERPRINT_LEN + 1];
    char name[ID_NAME_MAX];
    char ura[ID_URA_LEN + 1];
    char role[ID_ROLE_MAX];
} id_entry;

typedef struct id_table id_table;

/* Load a table; NULL on any error, with "path:line: reason" in err. */
id_table *id_table_load(const char *path, char *err, size_t errlen);
void id_table_free(id_table *table);
size_t id_table_count(const id_table *table);

/* The entry for a fingerprint (any form id_normalise_fingerprint accepts), or NULL. */
const id_entry *id_lookup_fingerprint(const id_table *table, const char *fingerprint);
/* The first entry with this URA, or NULL. */
const id_entry *id_lookup_ura(const id_table *table, const char *ura);

/* Whether s is a URA: exactly ID_URA_LEN ASCII digits, nothing after them (NULL: no). */
bool id_is_ura(const char *s);

/* ---- Resolving a caller ------------------------------------------------------ */

typedef enum id_source {
    ID_SOURCE_UNKNOWN = 0, /* neither the certificate nor the table says who this is */
    ID_SOURCE_CERTIFICATE, /* URA from the certificate's UZI otherName */
    ID_SOURCE_TABLE,       /* URA from the fingerprint table */
} id_source;

typedef struct id_identity {
    id_source source;
    char ura[ID_URA_LEN + 1];                 /* "" when unknown */
    char name[ID_NAME_MAX];                   /* table name, else the certificate's O (cut at a character
                                              * boundary to ID_NAME_MAX - 1 bytes); "" when unknown */
    char role[ID_ROLE_MAX];                   /* from the table only; "" when the table has none */
    char fingerprint[ID_FINGERPRINT_LEN + 1]; /* of the certificate; "" without one */
    id_status cert_status;                    /* why the certificate did (not) give a URA, for the log */
} id_identity;

/* Who is calling: the URA from the certificate, else the table entry for its
 * fingerprint, else unknown. A URA the certificate states always wins over
 * the table; the table then only adds name and role (looked up by URA).
 * fallback may be NULL. Returns out->source. */
id_source id_resolve(X509 *cert, const id_table *fallback, id_identity *out);

/* Human-readable name of a source ("certificate", "table", "unknown"). */
const char *id_source_name(id_source source);

/* ---- Verifying a peer -------------------------------------------------------- */

#define ID_VERIFY_SETUP_FAILED (-1)

/* Verify cert as a TLS client certificate (extendedKeyUsage clientAuth) against
 * the trust anchors in ca_file (PEM), with chain as untrusted intermediates
 * (may be NULL), in strict X.509 mode. With crl_file (PEM, CRLs only: any
 * certificate in it is ignored, never trusted) revocation of the peer
 * certificate is checked and a missing CRL for its issuer is an error; with
 * crl_file NULL revocation is NOT checked.
 *
 * Returns 0 (X509_V_OK) when the chain verifies; otherwise an X509_V_ERR_*
 * code (X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_REVOKED,
 * X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, ...) or ID_VERIFY_SETUP_FAILED
 * when the files could not be used. err (may be NULL) gets a sentence naming
 * the reason and the certificate concerned.
 *
 * This reads both files on every call, which suits tests and one-off checks. A
 * server loads them once with id_store_load and verifies each peer with
 * id_verify_with_store; one store serves any number of threads. */
int id_verify_chain(X509 *cert, STACK_OF(X509) * chain, const char *ca_file, const char *crl_file, char *err,
                    size_t errlen);

/* The trust store id_verify_chain builds: anchors, CRLs, flags. NULL with a
 * message in err on failure. The caller frees it with X509_STORE_free. */
X509_STORE *id_store_load(const char *ca_file, const char *crl_file, char *err, size_t errlen);

/* id_verify_chain against a store from id_store_load (returns the same codes). */
int id_verify_with_store(X509_STORE *store, X509 *cert, STACK_OF(X509) * chain, char *err, size_t errlen);

#endif
