/*
 * gateway/rest/handlers.h — the handlers the operations table dispatches to
 * (operations.c), each implemented by the module named with it.
 *
 * A handler answers the request or hands it on. It returns true when q was
 * handed on: to the store (the commit callback answers and frees q) or to a
 * streamed answer (its release frees q); false when it has answered and the
 * caller frees q with rq_finish. The type-level authorisation of the table
 * row has been checked before a handler runs.
 */
#ifndef GATEWAY_REST_HANDLERS_H
#define GATEWAY_REST_HANDLERS_H

#include "gateway/rest/rest_internal.h"

/* rest_read.c: GET /metadata, read and vread (with conditional reads: 304). */
bool rest_capabilities(rq *q);
bool rest_read(rq *q);
/* rest_write.c: create (with If-None-Exist), update and delete (also conditional ones). */
bool rest_create(rq *q);
bool rest_update(rq *q);
bool rest_delete(rq *q);
/* rest_patch.c: JSON Patch and FHIRPath Patch (also conditional). */
bool rest_patch(rq *q);
/* rest_search.c: searchset and history Bundles, streamed; pages bounded by _count and page_max_bytes. */
bool rest_search(rq *q);
bool rest_history(rq *q);
/* rest_batch.c: batch and transaction Bundles. */
bool rest_batch(rq *q);
/* rest_handover.c: $handover, the relay of a medical-policy handover (docs/handover.md). */
bool rest_handover_op(rq *q);
/* rest_subscription.c: the virtual Subscription/handover-<URA> and its backport $status and $events. */
bool rest_subscription_read(rq *q);
bool rest_subscription_status_op(rq *q);
bool rest_subscription_events_op(rq *q);
/* rest_transform.c: StructureMap/$transform, a shipped or stored map over the posted content (docs/mappings.md). */
bool rest_transform_op(rq *q);
/* rest_insurer.c: the insurer's views in its own model (docs/mappings.md): a provider, stays, plans, contracts. */
bool rest_insurer_provider(rq *q);
bool rest_insurer_stays(rq *q);
bool rest_insurer_plans(rq *q);
bool rest_insurer_contracts(rq *q);
/* ... and the compliance reports of a provider's plans (issue #12; docs/rules.md), paged or streamed as NDJSON */
bool rest_insurer_compliance(rq *q);
/* rest_compliance.c: the compliance report (issue #12, docs/rules.md): $gzsp-check of a posted CarePlan,
 * $compliance of a stored (or pulled) CarePlan or Encounter, $contract-check of the caller's Organization. */
bool rest_gzsp_check_op(rq *q);
bool rest_compliance_op(rq *q);
bool rest_contract_check_op(rq *q);
/* rest_validate.c: $validate. */
bool rest_validate_op(rq *q);
/* rest_audit_read.c: the audit trail as AuditEvent, the caller's own accesses only (read and search). */
bool rest_audit_event_read(rq *q);
bool rest_audit_event_search(rq *q);

#endif
