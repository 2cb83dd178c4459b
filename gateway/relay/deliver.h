/*
 * gateway/relay/deliver.h — the relay's deliver function over the gateway's
 * one outbound client (gateway/net/outbound.h): mutual TLS with the
 * gateway's client certificate, the peer's server certificate checked
 * against outbound_ca, no redirects, a size limit on the answer.
 *
 * The relay retries with its own backoff and horizon, so the client it uses
 * makes one attempt per call (retries 0) with the relay's timeout
 * (relay_timeout_ms); rly_outbound_config says so.
 *
 * Threads: rly_deliver_outbound may run on all the relay's workers at once
 * (an ob_client is shared read-only). Memory: nothing is kept.
 */
#ifndef GATEWAY_RELAY_DELIVER_H
#define GATEWAY_RELAY_DELIVER_H

#include "gateway/net/outbound.h"
#include "gateway/relay/notify.h"

/* The outbound settings of c for notifications: its files and connect timeout, the relay's attempt timeout,
 * one attempt per call, a small answer limit (the answer is not read). */
ob_config rly_outbound_config(const gw_config *c);

/* rly_deliver_fn over an ob_client (arg): POST, true on 2xx. */
bool rly_deliver_outbound(void *client, const rly_post *post, rly_answer *out);

#endif
