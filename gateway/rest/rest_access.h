/*
 * gateway/rest/rest_access.h — the one enforcement point of the REST layer
 * (rest_access.c; the model is docs/access.md): every access decision is
 * made and recorded here, and what a write may contain and change, whom it
 * addresses (access tags) and what a Task grants are computed here.
 *
 * Uses answer (rest_may answers its refusals); nothing else of gateway/rest.
 */
#ifndef GATEWAY_REST_ACCESS_H
#define GATEWAY_REST_ACCESS_H

#include "gateway/rest/rest_internal.h"

/* Decide (and record) whether the caller may do `action` on type (r NULL) or on stored resource r.
 * where: "Bundle.entry[3]" inside a Bundle, else NULL. Does not answer. */
az_decision rest_decide(rq *q, az_action action, const char *type, const st_resource *r, const char *where);
/* Record a decision made elsewhere (401 before any type is known). */
void rest_record_decision(rq *q, az_action action, const char *type, az_decision d, int status, const char *why,
                          const char *where);
/* rest_decide on r, answering 404 (hidden, the same text as a missing resource) or 403; true when allowed. */
bool rest_may(rq *q, const st_resource *r, az_action action);
/* Is r a registered organisation's own directory entry (its Organization with its URA)? Never deleted. */
bool rest_is_directory_entry(rq *q, const st_resource *r);
/* A Task of the handover relay (written by $handover: its instantiatesCanonical and code), parsed as d at task. */
bool rest_is_handover_task(const fj_doc *d, uint32_t task);
/* What a write may contain and change, and whom it addresses (fills w's tags); 0 or the HTTP status with issues. */
int rest_access_check_write(rq *q, rest_write *w, st_op_kind kind, const st_resource *current, oo_list *issues);

#endif
