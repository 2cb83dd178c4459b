/*
 * tests/rest_harness.h — the REST integration tests' shared fixture and
 * client: the real server on loopback over mutual TLS, a test PKI made in a
 * temporary directory, the SQLite store, and libcurl as the client with each
 * organisation's certificate.
 *
 * Every body the server sends through rh_request() is parsed and validated
 * with the project's own validator (fv_validate_buffer): an invalid
 * response fails the test wherever it occurs: at once on the test's own
 * thread; what client threads saw, at the test thread's next request and at
 * teardown, or when the test calls rh_expect_valid_bodies() after joining
 * its threads (Criterion's messaging is not safe to use from other threads).
 * A response that is not FHIR JSON (the ops port, a 304) is not validated.
 *
 * The test PKI is the run's (tests/run_pki.h), copied into each test's
 * directory: each test gets its own copy to change (seal keys rotated,
 * organisations re-registered).
 *
 * The server "with the guide" is the one `serve` runs by default: the
 * build's implementation guide package (IG_PACKAGE_DIR) loaded, the directory
 * published; rh_attest_agreements adds what a receiver of $handover needs.
 *
 * Memory: an rh_response owns its body (rh_response_free). Helpers that
 * return json_object give the caller a reference (json_object_put).
 */
#ifndef TESTS_REST_HARNESS_H
#define TESTS_REST_HARNESS_H

#include <curl/curl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/rest/rest.h"

typedef struct rh_options {
    double rate;                       /* requests per second per organisation; 0 = no limit */
    double burst;                      /* the bucket's size; 0 = rate */
    bool keep_gzsp;                    /* register the gzsp organisation too (default: its certificate gets 401) */
    bool allow_dangling;               /* referential integrity off, to build data no client could write today */
    size_t page_max_bytes;             /* searchset/history page bytes at most; 0 = the gateway's default */
    unsigned workers;                  /* server worker threads; 0 = 2 */
    size_t send_buffer_bytes;          /* srv_config.send_buffer_bytes; 0 = the kernel's */
    unsigned write_timeout_ms;         /* srv_config.write_timeout_ms; 0 = the gateway's default */
    unsigned audit_checkpoint_entries; /* audit checkpoint after this many entries; 0 = the gateway's default */
    const pf_registry *profiles;       /* the conformance resources the server enforces (the guide); NULL = none */
    const char *maps_dir;              /* the insurer maps to load (rest_options.maps_dir); NULL = none */
    const mpn_key *pseudonym_key;      /* their pseudonym() key */
    const rl_engine *rules;            /* the compliance operations' rule engine; NULL = they answer 503 */
    const ob_client *outbound;         /* pull mode's outbound client; NULL = pull mode answers 503 */
    int64_t (*clock_ms)(void *arg);    /* the store's and the REST layer's clock; NULL = real time */
    void *clock_arg;
    unsigned handover_retention_days; /* 0 = never purge (the purge thread does not run) */
    unsigned purge_interval_ms;       /* 0 = the gateway's default */
} rh_options;

/* The running fixture (one per test process: Criterion runs each test in its own). */
typedef struct rh_fixture {
    char dir[256];
    st_store *store;
    id_table *orgs;
    rest_app *app;
    srv_server *srv;
    unsigned port;
    rh_options opt;
    au_keyring *audit_keys; /* from the test PKI (audit.key, audit-checkpoint.pem); kept across restarts */
    au_signer *audit_signer;
    sl_keyring *seal_keys; /* the test PKI's seal.key (documents sealed at rest); reloaded at each start */
} rh_fixture;

extern rh_fixture rh;

/* Make a PKI in a temporary directory and start the server (asserts on failure). */
void rh_setup_with(const rh_options *opt);
void rh_setup(void);    /* rh_setup_with defaults */
void rh_teardown(void); /* stops the server, asserts no invalid body was seen, removes the directory */
void rh_start_server(void);
void rh_stop_server(void);

/* The implementation guide's package (IG_PACKAGE_DIR) as `serve` loads it (conf_load); asserts it loads without
 * errors. Loaded once per test process, freed by rh_teardown (after the server that enforces it has stopped). */
const pf_registry *rh_guide(void);
/* rh_setup_with the guide (opt->profiles = rh_guide(); opt may be NULL), then rh_publish_directory. */
void rh_setup_with_guide(const rh_options *opt);
/* `who` (URA ura) attests its ELV-HANDOVER agreements in its own directory entry, valid until `until`
 * (YYYY-MM-DD), as a receiver of $handover must (asserts the GET and the PUT). */
void rh_attest_agreements(const char *who, const char *ura, const char *until);
/* url as `who`'s (URA ura) notification Endpoint, named in its directory entry; payload_code NULL: the default
 * payload (the backport Bundle), else a code of RLY_PAYLOAD_SYSTEM. */
void rh_register_endpoint(const char *who, const char *ura, const char *url, const char *payload_code);
/* The gateway's outbound client as the test PKI's outbound certificate (rh.dir/pki), trusting its CA, with the
 * limits of `limits` (ob_config_default and the test's changes; the files are set here). Asserts; the caller frees
 * it (ob_client_free). */
ob_client *rh_outbound_client(ob_config limits);
/* `who`'s roles in the test's registry (organisations.tsv), e.g. "insurer,uzovi-9902"; they take effect at the next
 * rh_start_server. */
void rh_set_roles(const char *who, const char *roles);

typedef struct rh_response {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    CURLcode curl;
} rh_response;

/* A request as organisation `who` (a client name of the test PKI). extra: "Header: value" lines, NULL-ended.
 * A body is sent as application/fhir+json unless extra names a Content-Type. */
rh_response rh_request(const char *who, const char *method, const char *path, const char *body,
                       const char *const *extra);
void rh_response_free(rh_response *r);
/* Called with the body bytes received so far, each time a piece arrives, before it is kept; it may block,
 * to play a client that reads slowly (the curl timeout of 30 s still applies), and returns false to play one
 * that hangs up there (the connection is closed; the response's curl is CURLE_WRITE_ERROR). */
typedef bool (*rh_pace_fn)(size_t received, void *arg);
/* rh_request("GET", extra headers as there) whose body pieces pass through pace first. */
rh_response rh_get_paced(const char *who, const char *path, const char *const *extra, rh_pace_fn pace, void *arg);

/* The body as JSON (asserts it is). */
json_object *rh_json(const rh_response *r);
/* "a.b.0.c": members and array indexes; NULL when absent. */
const char *rh_str(json_object *o, const char *path);
/* The response is an OperationOutcome with this status whose first issue has this code (NULL: any). */
void rh_expect_outcome(const rh_response *r, long status, const char *code);
/* The element of o's array `list` whose "name" is name (a Parameters' "parameter", a parameter's "part"); NULL when
 * none is. */
json_object *rh_named(json_object *o, const char *list, const char *name);
/* Wait until the relay's queue counts at least n notifications in `state` (it records outcomes with commits);
 * false after timeout_ms. */
bool rh_wait_notify_state(st_notify_state state, int64_t n, int timeout_ms);
/* A response header's value into out; NULL when absent. */
const char *rh_header(const rh_response *r, const char *name, char *out, size_t size);
/* The last sealed body that did not open, as the store reported it to the error log ("" when none). */
void rh_last_seal_failure(char *out, size_t size);
/* Publish every registered organisation's own directory entry (Organization/ura-<URA>), as serve does. */
void rh_publish_directory(void);
/* Create a resource as `who` (asserts 201); returns its id (static buffer, overwritten by the next call). */
const char *rh_create(const char *who, const char *type, const char *json);

/* Validate a FHIR JSON text with the project's validator; returns the number of errors (first message in msg). */
size_t rh_validate_text(const char *text, size_t len, char *msg, size_t msglen);
/* Fail the test (on its own thread) if any thread received an invalid body not reported yet. */
void rh_expect_valid_bodies(void);
/* Invalid bodies seen so far (on any thread). */
size_t rh_invalid_bodies(void);

#endif
