/*
 * gateway/relay/deliver.c — notifications through the outbound client (see deliver.h).
 */
#include "gateway/relay/deliver.h"

#include <stdio.h>
#include <string.h>

/* What a receiver answers is not read: enough for an OperationOutcome, refused beyond. */
#define ANSWER_MAX (64 * 1024)

ob_config rly_outbound_config(const gw_config *c)
{
    ob_config oc = ob_config_from(c);
    oc.timeout_ms = (unsigned)c->relay_timeout_ms;
    oc.retries = 0; /* the relay retries, with backoff, up to its horizon */
    oc.max_bytes = ANSWER_MAX;
    return oc;
}

bool rly_deliver_outbound(void *client, const rly_post *post, rly_answer *out)
{
    memset(out, 0, sizeof *out);
    const char *with_body[] = {"Content-Type: application/fhir+json", "Accept: application/fhir+json", NULL};
    const char *empty[] = {"Accept: application/fhir+json", NULL};
    /* a notification may arrive twice (its event number says so): repeating it is safe */
    ob_request rq = {.method = "POST",
                     .url = post->url,
                     .headers = post->body ? with_body : empty,
                     .body = post->body,
                     .body_len = post->body ? post->len : 0,
                     .idempotent = true};
    ob_response r = {0};
    ob_error err = {0};
    bool ok = ob_send(client, &rq, &r, &err);
    out->status = ok ? r.status : err.kind == OB_HTTP_STATUS ? err.status : 0;
    if (!ok)
        snprintf(out->error, sizeof out->error, "%s: %s", ob_error_kind_name(err.kind), err.message);
    ob_response_free(&r);
    return ok;
}
