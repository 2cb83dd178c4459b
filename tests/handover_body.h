/*
 * tests/handover_body.h — the $handover requests the relay tests send
 * (test_handover, test_handover_kill): the guide's example documents
 * (ig/examples/Bundle-*-document-example.json: they meet the handover
 * profiles) with an identifier of the test's, and the Parameters that carry
 * them, as the sender posts them. The examples name the patient HB_SECRET,
 * so that tests can look for it where it must not be (the database file).
 *
 * Memory: hb_document writes into the caller's buffer; hb_parameters and
 * hb_with_agreements return malloc'd text (the caller frees it; NULL when
 * out of memory).
 */
#ifndef TESTS_HANDOVER_BODY_H
#define TESTS_HANDOVER_BODY_H

#include <stddef.h>

#define HB_SECRET "Jansen-Geheimzinnig"
#define HB_URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define HB_IDENT_SYSTEM "urn:ietf:rfc:3986"

#define HB_DOCUMENT_MAX 16384 /* bytes of a document as hb_document writes it, with its NUL */

/* The guide's example document (ig/examples: the advance notice for LOINC 57830-2, else the handover) with
 * identifier urn:uuid:<ident>, its Composition typed system|code; "" when the example cannot be read. */
void hb_document(char *out, size_t size, const char *ident, const char *system, const char *code);

/* The Parameters of $handover: the handover (ident), an advance notice when notice_ident is not NULL, the
 * receiver by URA. */
char *hb_parameters(const char *ident, const char *notice_ident, const char *receiver_ura);

/*
 * The ELV-HANDOVER agreements of an ELV provider: its directory entry (organization, as read) with attestations
 * of both handover requirement items (with hospitals, with GPs) valid until `until` (YYYY-MM-DD), for a PUT by the
 * provider itself. Malloc'd text (NULL when organization is not JSON).
 */
char *hb_with_agreements(const char *organization, const char *until);

#endif
