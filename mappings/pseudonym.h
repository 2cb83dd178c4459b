/*
 * mappings/pseudonym.h — the keyed patient pseudonym (prefix mpn_).
 *
 * What it is for: the insurer never receives a BSN, name, address or birth
 * date; a patient reaches it only as HMAC-SHA-256 of the BSN under a key
 * the gateway keeps, written as 64 lower-case hex digits. The same BSN under
 * the same key always gives the same pseudonym (so the insurer can link a
 * patient's stays and plans), and without the key a pseudonym cannot be
 * turned back into a BSN or checked against a guessed one.
 *
 * In FML the pseudonym is the FHIRPath host function `pseudonym()`:
 *     src.subject as s -> tgt.patientPseudonym =
 *         evaluate(s, resolve().identifier.where(system = '...bsn').value.pseudonym());
 * Its input is a collection of BSNs (strings or string elements); it returns
 * one pseudonym per item, in order. A value that is not a BSN
 * (nine digits passing the eleven-test) is an error naming it by position,
 * never by value, so a mistyped BSN does not end up in a log either.
 *
 * The key is the caller's: the gateway reads it from the file named by the
 * `pseudonym_key_file` setting (mappings/ knows no disk); tests make their own.
 *
 * Memory: mpn_register keeps a pointer to the key, which must outlive the
 * function registry and every map compiled with it. Thread-safe once set up.
 */
#ifndef MAPPINGS_PSEUDONYM_H
#define MAPPINGS_PSEUDONYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/fhirpath.h"

#define MPN_KEY_MIN 16 /* bytes: shorter keys are refused */
#define MPN_KEY_MAX 64
#define MPN_HEX_LEN 64 /* a pseudonym's length in characters */

typedef struct mpn_key {
    uint8_t bytes[MPN_KEY_MAX];
    size_t len;
} mpn_key;

/*
 * The key from text: hex digits (32 to 128 of them, an even number; blanks
 * and a final newline around them are ignored). False with a reason in err
 * (which never quotes the text).
 */
bool mpn_key_from_hex(const char *text, size_t len, mpn_key *key, char *err, size_t err_size);

/* True when s[0..len) is a BSN: nine digits passing the eleven-test. */
bool mpn_is_bsn(const char *s, size_t len);

/*
 * The pseudonym of bsn[0..len) under key into out (64 hex digits and a NUL).
 * False (out empty) when bsn is not a BSN or HMAC fails.
 */
bool mpn_pseudonym(const mpn_key *key, const char *bsn, size_t len, char out[MPN_HEX_LEN + 1]);

/* Register `pseudonym()` (no arguments) in fns, computing under key. */
bool mpn_register(fp_functions *fns, const mpn_key *key, fp_error *err);

#endif
