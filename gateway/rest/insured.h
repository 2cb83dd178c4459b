/*
 * gateway/rest/insured.h — who is insured by whom: the scoping of every
 * insurer view (/insurer/stays, /insurer/plans, and the compliance pull to
 * come) (prefix ins_).
 *
 * The rule. A patient is insured by the insurer with UZOVI u on date D when
 * some stored, current Coverage
 *   - has beneficiary = that patient (a literal reference "Patient/<id>";
 *     a Coverage naming the patient only by BSN identifier does not count),
 *   - has status active,
 *   - has a period that covers D (a missing start or end is open; a date
 *     covers its whole day),
 *   - and has a payor that carries u: the payor Reference's own identifier
 *     (system http://fhir.nl/fhir/NamingSystem/uzovi, value u), or the
 *     Organization on this server it refers to: a registered insurer's
 *     directory entry (Organization/ura-<URA>) carries the UZOVI the
 *     registry gives that insurer, any other Organization its uzovi
 *     identifiers.
 * The Coverages are the gateway's facts, read whoever wrote them (the care
 * provider that records the insurance, or the insurer): this module reads
 * the store directly, never as the caller, and answers no request.
 *
 * The insurer. An insurer is known by its URA (its certificate); its UZOVI
 * comes from the operator's registry of organisations (organisations.tsv):
 * a role token `uzovi-<UZOVI>` beside `insurer` ("insurer,uzovi-9901").
 * Nothing a client writes decides it, so no insurer can claim another's
 * insured by writing a UZOVI somewhere.
 *
 * Enumerating. ins_each_coverage walks every current Coverage whose payor
 * carries u, page by page at one snapshot, calling back with the
 * beneficiary: O(all Coverages), for a pull over all insured. The views
 * walk a provider's stays or plans instead and ask ins_is_insured of each
 * (one indexed Coverage search by beneficiary per resource).
 *
 * Memory: nothing is kept; results are values in the caller's buffers.
 * Threads: any; each call reads the store on its own.
 */
#ifndef GATEWAY_REST_INSURED_H
#define GATEWAY_REST_INSURED_H

#include "gateway/rest/rest_internal.h"

#define INS_UZOVI_SYSTEM "http://fhir.nl/fhir/NamingSystem/uzovi"
#define INS_UZOVI_SIZE 16 /* a UZOVI is four digits; a longer token is not taken */

/* The facts the rule reads: the store and the registry (both borrowed). */
typedef struct ins_facts {
    st_store *store;
    const id_table *organisations;
} ins_facts;

/* The UZOVI a registry entry gives (its role token uzovi-<UZOVI>) into uzovi; false when none (or e is NULL). */
bool ins_registry_uzovi(const id_entry *e, char uzovi[INS_UZOVI_SIZE]);

/* The calling organisation's UZOVI: 0, or 403 with an issue when the registry gives it none. */
int ins_caller_uzovi(rq *q, char uzovi[INS_UZOVI_SIZE], oo_list *issues);

typedef enum ins_answer { INS_NO = 0, INS_YES = 1, INS_FAILED = -1 } ins_answer;

/*
 * Is the patient ("Patient/<id>", a relative reference) insured by the
 * insurer with this UZOVI on date_ms (epoch ms)? INS_FAILED only when the
 * store fails (err says why); anything malformed is INS_NO.
 */
ins_answer ins_is_insured(const ins_facts *f, const char *patient_ref, const char *uzovi, int64_t date_ms,
                          st_error *err);

/*
 * The rule over one Coverage (parsed JSON), wherever it comes from: the
 * store's, or one a provider sent with a pulled plan. Does it insure
 * patient_ref (compared as written; NULL: whoever its beneficiary is) by
 * the insurer with this UZOVI on at_ms: active, in force then, and a payor
 * carrying the UZOVI (its identifier, or the Organization it names on this
 * server, read from f's store, as above)?
 */
bool ins_coverage_insures(const ins_facts *f, json_object *coverage, const char *patient_ref, const char *uzovi,
                          int64_t at_ms);

/*
 * Every current Coverage whose payor carries uzovi (any period, any status):
 * fn(arg, its beneficiary reference or NULL, the Coverage) for each; fn
 * returns false to stop. ST_OK, or the store's failure (err says why).
 */
typedef bool (*ins_coverage_fn)(void *arg, const char *beneficiary, const st_resource *coverage);
st_status ins_each_coverage(const ins_facts *f, const char *uzovi, ins_coverage_fn fn, void *arg, st_error *err);

#endif
