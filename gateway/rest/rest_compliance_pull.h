/*
 * gateway/rest/rest_compliance_pull.h — pull mode: a check's subject and context fetched from the
 * provider's own FHIR endpoint (prefix rest_pull_; docs/rules.md, "Pull mode").
 *
 * A provider registers its endpoint as an Endpoint resource (status active, connectionType
 * http://terminology.hl7.org/CodeSystem/endpoint-connection-type|hl7-fhir-rest, an https://
 * address: its FHIR base) referenced from its directory entry, Organization/ura-<URA>
 * (Organization.endpoint). The gateway then reads from that base over mutual TLS with its
 * outbound client (gateway/net/outbound.h: its certificate, the CA bundle, timeouts, retries, the
 * size limit): GET [base]/Type/id for the subject and each followed reference, and
 * GET [base]/Type?param=Type/id for the searches of rest_compliance_context.h. Every answer is
 * checked before it is used: JSON, valid FHIR R4 by the project's validator (fhir/validate.h,
 * core: the rules themselves judge the profiles), of the type and id asked for (a search: a
 * Bundle); a search the provider does not support (4xx) leaves that context out.
 *
 * Statuses (with a message saying what and where):
 *   404  no directory entry for the URA, or the provider does not have the resource
 *   422  the provider has no usable FHIR endpoint registered
 *   502  unreachable, TLS refused, too large, a 5xx or an unexpected status, not JSON, invalid FHIR
 *   504  the provider did not answer in time
 *   503  pull mode is not configured (no outbound client)
 *
 * Threads: the calls block the calling thread for as long as the outbound client allows
 * (timeouts times attempts).
 *
 * Memory: the set is the caller's (cx_set_free).
 */
#ifndef GATEWAY_REST_COMPLIANCE_PULL_H
#define GATEWAY_REST_COMPLIANCE_PULL_H

#include "gateway/rest/rest_compliance_context.h"

/* Gather type/id and its context from the endpoint of the provider with this URA. 0, or a status (msg). */
int rest_pull_gather(rest_app *app, const char *ura, const char *type, const char *id, cx_set *set, char *msg,
                     size_t msglen);

#endif
