/*
 * gateway/rest/rest.h — the FHIR R4 RESTful API on top of the server, the store,
 * the validator and the indexer (prefix rest_).
 *
 * rest_handle is the server's handler. For each request it:
 *   1. identifies the calling organisation from its certificate (401 when
 *      no registered organisation is behind it) and applies its rate limit
 *      (429 with Retry-After);
 *   2. routes the URL (400/404/405) and negotiates the format (406);
 *   3. finds the request's row in the operations table (operations.h),
 *      checks authorisation by type (403), then dispatches through it:
 *      read, vread, create, update, delete, patch, history, search, batch
 *      and transaction Bundles, $validate, and /metadata;
 *   4. answers with FHIR JSON, ETag, Last-Modified, Location, and an
 *      OperationOutcome on every error.
 * Everything is answered on the worker thread that owns the connection:
 * reads at once; writes are validated and indexed there, submitted to the
 * store, and once the commit is durable the store's completion callback
 * (on its commit thread) copies the result and posts the answer back to the
 * worker (srv_post), which builds it and may read the store for it.
 *
 * Memory: rest_app_new takes references to the store, profiles and
 * organisation table (they must outlive the app) and owns what it builds
 * (indexer, limiter, capability statement). Per-request state lives in a
 * heap context freed after the answer.
 */
#ifndef GATEWAY_REST_H
#define GATEWAY_REST_H

#include <stdbool.h>
#include <stdint.h>

#include "fhir/profile.h"
#include "fhir/schema.h"
#include "gateway/util/config.h"
#include "gateway/util/log.h"
#include "gateway/auth/identity.h"
#include "gateway/http/server.h"
#include "gateway/net/outbound.h"
#include "gateway/store/store.h"
#include "mappings/pseudonym.h"
#include "rules/check.h"

typedef struct rest_app rest_app;

/* The defaults of rest_options (rows of gateway/util/limits.h, where each is documented). */
#define REST_DEFAULT_PAGE_SIZE LIM(page_size_default)
#define REST_DEFAULT_PAGE_SIZE_MAX LIM(page_size_max)
#define REST_DEFAULT_PAGE_MAX_BYTES ((size_t)LIM(page_max_bytes))

typedef struct rest_options {
    const fs_schema *schema;       /* NULL = fs_r4() */
    st_store *store;               /* required */
    const id_table *organisations; /* registered organisations (name, URA, roles); required */
    const pf_registry *profiles;   /* NULL = no profiles */
    const char *base_url;          /* "https://127.0.0.1:8443" (no trailing slash); references under it are
                                   * indexed, searched and tagged as the relative ones they name */
    int page_size_default;         /* 0 = REST_DEFAULT_PAGE_SIZE */
    int page_size_max;             /* 0 = REST_DEFAULT_PAGE_SIZE_MAX */
    size_t page_max_bytes;         /* searchset/history page bytes at most (one entry always fits);
                                   * 0 = REST_DEFAULT_PAGE_MAX_BYTES */
    double rate_per_second;        /* per organisation; 0 = no limit */
    double rate_burst;
    bool log_allowed;     /* record allowed access decisions too (refusals always are) */
    const lg_logger *log; /* where access decisions and other events go, one JSON line each (key/value
                                   * fields: lg_write); NULL = lg_stderr(). Borrowed: it must outlive the app */
    /* referential integrity is on unless this is set: a write whose references name a resource on this server
     * that does not exist, that the writer may not read, or of a type the element does not allow, is 422 */
    bool allow_dangling_references;
    /* clock for rate limits and Bundle timestamps (ms since the epoch); NULL = real time */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    /* the audit keys (docs/audit.md): patients are recorded as pseudonyms under the current one. The store
     * needs them too (st_config.audit_keys); without them no access is answered (it could not be recorded).
     * Borrowed: they must outlive the app */
    const au_keyring *audit_keys;
    /* the insurer maps (docs/mappings.md): a folder of FML maps with their ConceptMaps in conceptmaps/
     * (mappings/maps/2026), loaded by rest_app_new as the app's own map set for $transform and the /insurer views;
     * NULL: those answer 503. They need the logical models of the guide (profiles) */
    const char *maps_dir;
    const mpn_key *pseudonym_key; /* pseudonym() of the maps; borrowed; NULL: a map that calls it fails */
    /* the compliance operations (rest_compliance.c, docs/rules.md): the rule engine of the contract year
     * (NULL: they answer 503), and the outbound client that pulls a plan from a provider's own endpoint
     * (NULL: pull mode answers 503). Borrowed: they must outlive the app */
    const rl_engine *rules;
    const ob_client *outbound;
    /* retention of handover documents (docs/handover.md): their content is purged this many days after the
     * handover's Task ended; 0: never (and no purge thread). The app checks every purge_interval_ms (0: the
     * handover_purge_interval_ms row of limits.h) on a thread of its own, with clock_ms for "now" */
    unsigned handover_retention_days;
    unsigned purge_interval_ms;
} rest_options;

rest_app *rest_app_new(const rest_options *opts, char *err, size_t errlen);
void rest_app_free(rest_app *app);

/* The srv_handler: arg is the rest_app. */
void rest_handle(srv_request *req, void *arg);

/* How many answers were built on another thread than the request's worker: 0 unless something answers from
 * the store's commit thread again (a debugging counter; the tests read it). */
size_t rest_answers_off_worker(rest_app *app);

/* One pass of the handover retention purge now (the purge thread runs it periodically): the documents of
 * handover Tasks that ended handover_retention_days or more ago lose their content. Returns how many documents
 * were purged in this pass, or -1 with a reason in err. A pass looks only at the Tasks that became due since
 * the last pass that succeeded (all of them after a start or a failed pass). */
long rest_handover_purge(rest_app *app, char *err, size_t errlen);
/* How many ended handover Tasks the last pass read (the tests read it). */
long rest_handover_purge_examined(const rest_app *app);

/*
 * The relay's on_dead (rly_dead_fn, gateway/relay/notify.h; arg is the rest_app): a notification about a
 * handover Task was given up, so the Task gets businessStatus REST_UNDELIVERED_SYSTEM|undelivered (found
 * with GET /Task?business-status=...), committed together with `mark`, which records the dead letter. A new
 * version of the Task written by the gateway as its sender would write it (validated, indexed, addressed,
 * granting what it granted), pinned to the version read; only businessStatus changes. True when committed.
 */
#define REST_UNDELIVERED_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/handover-notification"
#define REST_UNDELIVERED_CODE "undelivered"
bool rest_handover_mark_undelivered(void *app, const st_notification *n, const st_op *mark);

/* Which search parameter kinds the store answers (for the CapabilityStatement and the parser). */
bool rest_search_kind_supported(fs_search_kind kind);

#endif
