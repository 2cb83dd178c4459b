/*
 * gateway/util/limits.h — every limit and default of the gateway, in one table (prefix lim_).
 *
 * Each row of GW_LIMITS is one number, written once:
 *
 *     X(name, value, min, unit, access, room, doc)
 *
 *   name    the identifier; for a settable row also its key in the config file
 *   value   the default: a constant expression (an int); a limit that lives in
 *           fhir/ names that library's macro (fhir must not include gateway
 *           headers), so the number is still written in one place
 *   min     the smallest value an operator may set (0 where 0 means something:
 *           "off", "one per core", "no waiting")
 *   unit    COUNT, BYTES, MS or US: how the config file reads and prints it
 *   access  SET (an operator may change it in the config file) or FIXED
 *           (compiled in; arrays are sized by it or the protocol fixes it)
 *   room    the room that applies it (gateway/<room>, or fhir)
 *   doc     one sentence: what it bounds and what happens past it
 *
 * What the table gives:
 *   - LIM(name): the default as a compile-time constant of type int, for array
 *     sizes and for the #defines the rooms keep (SRV_REQUEST_ID_MAX,
 *     REST_MAX_TAGS, ...), which are written as LIM(...) and never as a second
 *     literal;
 *   - lim_table[]: the rows at run time, for `fhirgw config` (which prints every
 *     row with its sentence: settable ones as config lines, fixed ones as
 *     comments) and for the config reader (gateway/util/config.c builds its
 *     numeric settings from the settable rows);
 *   - gw_config has one int64_t field per settable row (LIM_CONFIG_FIELDS).
 *
 * Adding a limit: one row here, then use LIM(name) where it applies (and, when
 * it is SET, wire gw_config.name through gateway/cli/cmd_serve.c into the
 * room's options). Settable counts and durations are at most UINT32_MAX (they
 * land in unsigned fields); sizes at most INT64_MAX.
 *
 * Memory: everything here is static; nothing to free.
 */
#ifndef GATEWAY_LIMITS_H
#define GATEWAY_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "fhir/outcome.h"
#include "fhir/patch.h"

/* Where the gateway listens unless configured otherwise (listen, ops_listen, base_url). */
#define GW_DEFAULT_HOST "127.0.0.1"
#define GW_DEFAULT_PORT 8443
#define GW_DEFAULT_OPS_PORT 9090
#define GW_STRINGIFY_(x) #x
#define GW_STRINGIFY(x) GW_STRINGIFY_(x)
#define GW_DEFAULT_LISTEN GW_DEFAULT_HOST ":" GW_STRINGIFY(GW_DEFAULT_PORT)
#define GW_DEFAULT_OPS_LISTEN GW_DEFAULT_HOST ":" GW_STRINGIFY(GW_DEFAULT_OPS_PORT)

#define LIM_KIB 1024
#define LIM_MIB (1024 * 1024)

/* clang-format off */
#define GW_LIMITS(X)                                                                                                  \
    /* ---- gateway/http: connections, requests, answers ---- */                                                     \
    X(workers, 0, 0, COUNT, SET, "http",                                                                              \
      "event-loop threads serving the FHIR port; 0 = one per CPU core")                                               \
    X(max_workers, 256, 1, COUNT, FIXED, "http",                                                                      \
      "event-loop threads at most, whatever workers says")                                                            \
    X(max_connections, 4096, 1, COUNT, SET, "http",                                                                   \
      "open client connections on the FHIR port at most; more are answered 503 and closed")                          \
    X(overload_grace, 64, 0, COUNT, FIXED, "http",                                                                    \
      "connections past max_connections that still get a 503 answer; beyond them new ones are closed at once")       \
    X(listen_backlog, 1024, 1, COUNT, FIXED, "http",                                                                  \
      "connections the kernel queues on each listening socket before accept")                                         \
    X(accept_retry_ms, 100, 1, MS, FIXED, "http",                                                                     \
      "pause before accepting again after accept failed (out of file descriptors)")                                   \
    X(max_header_bytes, 16 * LIM_KIB, 1, BYTES, SET, "http",                                                          \
      "largest request line plus header block (and trailer block of a chunked body); larger ones get 431")            \
    X(max_headers, 100, 1, COUNT, SET, "http",                                                                        \
      "header fields per request at most; more get 431")                                                              \
    X(max_body_bytes, 16 * LIM_MIB, 1, BYTES, SET, "http",                                                            \
      "largest request body (after chunked decoding); larger ones get 413")                                           \
    X(chunk_line_max, 1024, 1, BYTES, FIXED, "http",                                                                  \
      "longest chunk-size line of a chunked body, extensions included; longer ones get 400")                          \
    X(request_timeout_ms, 30000, 1, MS, SET, "http",                                                                  \
      "the TLS handshake, and a request from its first byte to its last, must take no longer, or the connection is "  \
      "cut (408 when an answer can still be sent)")                                                                   \
    X(idle_timeout_ms, 60000, 1, MS, SET, "http",                                                                     \
      "idle keep-alive connections are closed after this time")                                                       \
    X(write_timeout_ms, 30000, 1, MS, SET, "http",                                                                    \
      "a client that takes none of its answer for this long has its connection closed")                               \
    X(drain_timeout_ms, 10000, 1, MS, SET, "http",                                                                    \
      "on SIGTERM, how long in-flight requests may take to finish (every request already received is answered)")      \
    X(linger_ms, 1000, 0, MS, FIXED, "http",                                                                          \
      "after an error answer, how long the rest of the request is read and thrown away before the connection closes")\
    X(max_inflight_bytes, 256 * LIM_MIB, 1, BYTES, SET, "http",                                                       \
      "memory budget: request bodies (counted as they arrive) and answers (until sent) held at once, all "            \
      "connections together; past it new requests get 503 with Retry-After (the ops port is exempt); keep it well "   \
      "above max_body_bytes")                                                                                         \
    X(send_buffer_bytes, 0, 0, BYTES, SET, "http",                                                                    \
      "kernel send buffer of each client connection (SO_SNDBUF, like nginx's sndbuf); 0 = the kernel's own, which "  \
      "grows to megabytes: a smaller one holds less per connection and makes a streamed answer wait for a slow "      \
      "reader sooner")                                                                                                \
    X(body_initial_bytes, 16 * LIM_KIB, 1, BYTES, FIXED, "http",                                                      \
      "first buffer of a request body; it doubles as bytes arrive, up to the body's size")                            \
    X(pause_input_bytes, 64 * LIM_KIB, 1, BYTES, FIXED, "http",                                                       \
      "pipelined input buffered per connection while its handler runs; reading pauses past it")                       \
    X(coalesce_max_bytes, 15 * LIM_KIB, 0, BYTES, FIXED, "http",                                                      \
      "answer bodies up to this size leave in the same TLS record as the head")                                       \
    X(stream_low_water, 64 * LIM_KIB, 1, BYTES, FIXED, "http",                                                        \
      "a streamed answer's producer is asked for more once less than this is waiting to be sent")                     \
    X(stream_high_water, 256 * LIM_KIB, 1, BYTES, FIXED, "http",                                                      \
      "a streamed answer's producer is not asked for more while this much is waiting to be sent")                     \
    X(request_id_max, 64, 1, BYTES, FIXED, "http",                                                                    \
      "longest X-Request-ID echoed; a longer or malformed one is not echoed: the answer carries a fresh id and the "  \
      "access log notes the refusal")                                                                                 \
    X(route_label_max, 31, 1, BYTES, FIXED, "http",                                                                   \
      "longest route label of the request metrics; a longer label is refused and the request counts as 'other'")     \
    X(tls_verify_depth, 4, 1, COUNT, FIXED, "http",                                                                   \
      "intermediate certificates at most between a client certificate and its trust anchor")                          \
    X(metrics_labels_max, 4, 1, COUNT, FIXED, "http",                                                                 \
      "label names of one metric family at most")                                                                     \
    X(metrics_series_max, 1024, 1, COUNT, FIXED, "http",                                                              \
      "label combinations of one metric family at most; further ones are counted under the value 'overflow'")        \
    X(metrics_buckets_max, 32, 1, COUNT, FIXED, "http",                                                               \
      "upper bounds of one histogram at most (+Inf aside)")                                                           \
    /* ---- gateway/auth: callers and their rates ---- */                                                            \
    X(rate_limit_per_second, 200, 0, COUNT, SET, "auth",                                                              \
      "requests per second per organisation (token bucket); 0 = no limit")                                            \
    X(rate_limit_burst, 400, 0, COUNT, SET, "auth",                                                                   \
      "bucket size: requests an organisation may send at once (at least 1 is always allowed)")                         \
    X(rate_limit_slots, 4096, 1, COUNT, FIXED, "auth",                                                                \
      "organisations with a bucket of their own; more share one overflow bucket (never unlimited)")                   \
    X(rate_limit_key_max, 31, 1, BYTES, FIXED, "auth",                                                                \
      "longest organisation key with a bucket of its own; longer keys share the overflow bucket")                     \
    X(organisation_name_max, 127, 1, BYTES, FIXED, "auth",                                                            \
      "longest organisation name: longer names in organisations.tsv are refused at load; a certificate's O is cut "   \
      "at a character boundary to fit")                                                                               \
    X(role_max, 31, 1, BYTES, FIXED, "auth",                                                                          \
      "longest role column of organisations.tsv (comma-separated roles); longer ones are refused at load")            \
    X(uzi_name_max, 128, 1, BYTES, FIXED, "auth",                                                                     \
      "longest UZI otherName in a client certificate; longer ones give no URA")                                       \
    X(organisations_line_max, 4095, 1, BYTES, FIXED, "auth",                                                          \
      "longest line of organisations.tsv, its end included; a longer one stops the load with its line number")        \
    X(organisations_columns_max, 32, 1, COUNT, FIXED, "auth",                                                         \
      "columns of organisations.tsv at most; more stop the load with the line number")                                \
    /* ---- gateway/store: durability and reading ---- */                                                           \
    X(store_batch_max, 256, 1, COUNT, SET, "store",                                                                   \
      "most writes committed together in one transaction (group commit)")                                             \
    X(store_batch_wait_us, 1000, 0, US, SET, "store",                                                                 \
      "how long the committer waits for more writes to join a batch when writers are concurrent (microseconds); "     \
      "0 = no waiting")                                                                                               \
    X(store_max_queue, 65536, 1, COUNT, SET, "store",                                                                 \
      "write transactions waiting for the committer at most; more are refused with 503")                              \
    X(store_max_readers, 64, 1, COUNT, SET, "store",                                                                  \
      "read connections to the database at most; more readers wait for one")                                         \
    X(store_busy_timeout_ms, 5000, 1, MS, SET, "store",                                                               \
      "how long a connection waits for a lock another process holds before giving up (503)")                          \
    X(store_cache_bytes, 16 * LIM_MIB, 1, BYTES, FIXED, "store",                                                      \
      "page cache of each database connection")                                                                       \
    X(backup_event_jump, 1000000000, 1, COUNT, FIXED, "store",                                                        \
      "a backup's copy numbers each receiver's next relay event this far past the last it holds, so that no number "   \
      "issued after the backup is issued again; the gap tells receivers to catch up (docs/operations.md)")            \
    X(store_checkpoint_pages, 1000, 1, COUNT, FIXED, "store",                                                         \
      "WAL pages after which the checkpointer thread copies the WAL into the database")                               \
    X(store_wal_size_limit, 64 * LIM_MIB, 1, BYTES, FIXED, "store",                                                   \
      "a WAL left larger than this after a checkpoint is truncated to it")                                            \
    X(store_statement_cache, 32, 1, COUNT, FIXED, "store",                                                            \
      "generated search and history statements kept prepared per connection (least recently used go)")                \
    X(store_message_max, 191, 16, BYTES, FIXED, "store",                                                              \
      "longest store error message; a longer one is cut at a character boundary and ends in '...'")                  \
    X(id_max, 64, 1, BYTES, FIXED, "store",                                                                           \
      "longest logical id (FHIR: [A-Za-z0-9.-]{1,64}); longer ones are refused")                                      \
    X(type_max, 64, 1, BYTES, FIXED, "store",                                                                         \
      "longest resource type name the store accepts")                                                                 \
    /* ---- gateway/search: queries and pages ---- */                                                               \
    X(page_size_default, 50, 1, COUNT, SET, "search",                                                                 \
      "search results per page when the client gives no _count")                                                     \
    X(page_size_max, 500, 1, COUNT, SET, "search",                                                                    \
      "largest _count honoured; larger ones are lowered to it")                                                       \
    X(page_max_bytes, 16 * LIM_MIB, 1, BYTES, SET, "search",                                                          \
      "bytes of resources per search or history page at most: a page stops before the entry that would pass it (it " \
      "always has one) and its next link continues from there")                                                       \
    X(search_params_max, 16, 1, COUNT, FIXED, "search",                                                               \
      "AND-ed parameters of one search at most; more are refused (400)")                                              \
    X(search_values_max, 32, 1, COUNT, FIXED, "search",                                                               \
      "OR-ed values of one search parameter at most; more are refused (400)")                                         \
    X(search_includes_max, 8, 1, COUNT, FIXED, "search",                                                              \
      "_include and _revinclude parameters of one search at most; more are refused (400)")                            \
    X(search_chain_max, 3, 1, COUNT, FIXED, "search",                                                                 \
      "links of a chained parameter or _has at most; longer chains are refused (400)")                                \
    X(included_max, 100, 1, COUNT, FIXED, "search",                                                                   \
      "included resources per searchset page at most; the page says when more were left out")                         \
    X(include_rounds, 4, 1, COUNT, FIXED, "search",                                                                   \
      "rounds of :iterate at most, each including from what the last one included")                                   \
    /* ---- gateway/rest: writes and messages ---- */                                                               \
    X(access_tags_max, 8, 1, COUNT, FIXED, "rest",                                                                    \
      "organisations one resource may be addressed to at most; a write addressing more is refused (422)")             \
    X(grants_max, 16, 1, COUNT, FIXED, "rest",                                                                        \
      "resources one Task may let its receiver read at most; a Task referring to more is refused (422)")              \
    X(compliance_context_max, 256, 1, COUNT, FIXED, "rest",                                                          \
      "resources gathered as the context of one compliance check (store or pull mode) at most; more are left out "  \
      "and rules that would need them answer needs-review")                                                           \
    X(echo_max, 64, 8, BYTES, FIXED, "rest",                                                                          \
      "bytes of a request (a path, an id, a parameter) an error message quotes at most, cut at a character boundary " \
      "and marked with an ellipsis")                                                                                  \
    /* ---- gateway/net: outbound HTTPS (pull mode, notifications; docs/rules.md) ---- */                          \
    X(outbound_connect_timeout_ms, 5000, 1, MS, SET, "net",                                                           \
      "an outbound call's TCP connect plus TLS handshake must take no longer, or the attempt fails (timeout)")        \
    X(outbound_timeout_ms, 30000, 1, MS, SET, "net",                                                                  \
      "an outbound call's attempt, from connect to the last byte of the answer, must take no longer (timeout)")       \
    X(outbound_max_bytes, 16 * LIM_MIB, 1, BYTES, SET, "net",                                                         \
      "largest answer body an outbound call accepts; the transfer is aborted past it (too-large)")                    \
    X(outbound_retries, 2, 0, COUNT, SET, "net",                                                                      \
      "further attempts after an outbound call failed to connect, timed out or got a 5xx (GET, or a POST that "      \
      "never reached the peer); 0 = one attempt only")                                                                \
    X(outbound_backoff_ms, 200, 0, MS, SET, "net",                                                                    \
      "pause before the first retry of an outbound call; it doubles for each further one")                            \
    X(outbound_message_max, 255, 32, BYTES, FIXED, "net",                                                             \
      "longest error message of an outbound call (what failed, where); longer ones are cut")                          \
    /* ---- gateway/rest: the handover relay's documents at rest (docs/handover.md) ---- */                          \
    X(handover_retention_days, 30, 0, COUNT, SET, "rest",                                                             \
      "days after a handover's Task ended (completed, rejected, cancelled) that its documents' content is purged "    \
      "(reads then answer 410; the Task and the audit trail stay); 0: never")                                         \
    X(handover_purge_interval_ms, 3600000, 1000, MS, SET, "rest",                                                     \
      "how often the server looks for handover documents past handover_retention_days and purges them")              \
    /* ---- gateway/audit: the NEN 7513 trail (docs/audit.md) ---- */                                              \
    X(audit_checkpoint_entries, 1000, 1, COUNT, SET, "audit",                                                         \
      "a signed checkpoint of the audit chain's head is appended to audit_checkpoint_file after the commit that "     \
      "brings this many entries since the last one; entries after the last checkpoint could be cut off unseen")     \
    X(audit_checkpoint_ms, 60000, 1, MS, SET, "audit",                                                                \
      "... or after the first commit of audit entries once this much time has passed since the last checkpoint")     \
    X(audit_text_max, 127, 16, BYTES, FIXED, "audit",                                                                 \
      "longest organisation name, X-Request-ID or on-behalf-of text an audit entry keeps; longer ones are cut at a " \
      "character boundary")                                                                                           \
    /* ---- gateway/relay: handover notifications (docs/handover.md, Notifications) ---- */                         \
    X(relay_workers, 4, 1, COUNT, SET, "relay",                                                                       \
      "threads delivering handover notifications: receivers served at once (each receiver gets one at a time, in "  \
      "order); a receiver that is down or slow holds up only its own thread")                                         \
    X(relay_base_delay_ms, 30000, 1, MS, SET, "relay",                                                                \
      "pause before the first retry of a notification that was not answered 2xx; it doubles with each further "      \
      "failure, each pause drawn from its upper half (jitter)")                                                       \
    X(relay_max_delay_ms, 3600000, 1, MS, SET, "relay",                                                               \
      "longest pause between two attempts at a notification")                                                        \
    X(relay_horizon_ms, 259200000, 1, MS, SET, "relay",                                                               \
      "how long after the event a notification is still tried (72 h); the attempt after that is its last, then it "  \
      "is a dead letter: counted in /metrics and the Task gets businessStatus undelivered")                           \
    X(relay_timeout_ms, 10000, 1, MS, SET, "relay",                                                                   \
      "one delivery attempt, connect to the last byte of the answer, must take no longer (it counts as failed)")     \
    X(relay_batch_max, 100, 1, COUNT, SET, "relay",                                                                   \
      "notifications of one receiver sent in one POST at most (one Bundle, in event-number order); 1 sends each "    \
      "alone, for receivers that read only the first notification-event")                                            \
    X(relay_poll_ms, 5000, 1, MS, SET, "relay",                                                                       \
      "the relay looks at its queue at least this often (a commit that queues a notification wakes it at once)")    \
    X(relay_keep_delivered_ms, 1209600000, 1, MS, SET, "relay",                                                       \
      "delivered notifications are deleted from the queue this long after delivery (14 days), so that it does not " \
      "grow forever; $events no longer finds them, a receiver's latest event, pending ones and dead letters stay")   \
    /* ---- gateway/util: the config file ---- */                                                                   \
    X(config_value_max, 511, 1, BYTES, FIXED, "util",                                                                 \
      "longest text value of a setting (paths, addresses); longer ones are refused with the line number")             \
    X(config_line_max, 4095, 1, BYTES, FIXED, "util",                                                                 \
      "longest line of the config file; a longer one is refused with its line number")                                \
    /* ---- fhir: the library's own limits (their numbers are in its headers) ---- */                               \
    X(json_max_bytes, FJ_DEFAULT_MAX_BYTES, 1, BYTES, FIXED, "fhir",                                                  \
      "largest JSON document the parser reads (fhir/json.h); request bodies are bounded by max_body_bytes first")     \
    X(json_max_depth, FJ_DEFAULT_MAX_DEPTH, 1, COUNT, FIXED, "fhir",                                                  \
      "nesting of JSON arrays and objects at most (fhir/json.h); deeper documents are refused")                       \
    X(issues_max, OO_DEFAULT_MAX_ISSUES, 1, COUNT, FIXED, "fhir",                                                     \
      "issues of one OperationOutcome at most (fhir/outcome.h); it says how many more were left out")                 \
    X(patch_operations_max, FPATCH_MAX_OPERATIONS, 1, COUNT, FIXED, "fhir",                                           \
      "operations of one JSON Patch or FHIRPath Patch at most (fhir/patch.h); more are refused")                      \
    X(patch_growth_max, FPATCH_MAX_GROWTH, 1, BYTES, FIXED, "fhir",                                                   \
      "bytes a patch may make a resource grow at most (fhir/patch.h); the step that would pass it is refused")           \
    X(fhirpath_max_depth, FP_DEFAULT_MAX_DEPTH, 1, COUNT, FIXED, "fhir",                                              \
      "nesting of FHIRPath function calls and repeat() at most (fhir/fhirpath.h)")
/* clang-format on */

/* LIM(name): the row's default, an int constant expression. */
enum {
#define LIM_DEFAULT_(name, value, min, unit, access, room, doc) LIM_DEFAULT_##name = (value),
    GW_LIMITS(LIM_DEFAULT_)
#undef LIM_DEFAULT_
};
#define LIM(name) LIM_DEFAULT_##name

/* LIM_ID(name): the row's index in lim_table. */
typedef enum lim_id {
#define LIM_ID_(name, value, min, unit, access, room, doc) LIM_ID_##name,
    GW_LIMITS(LIM_ID_)
#undef LIM_ID_
        LIM_COUNT
} lim_id;
#define LIM_ID(name) LIM_ID_##name

typedef enum lim_unit { LIM_UNIT_COUNT, LIM_UNIT_BYTES, LIM_UNIT_MS, LIM_UNIT_US } lim_unit;

typedef struct lim_row {
    const char *name;
    int64_t value; /* the default */
    int64_t min;   /* the smallest value an operator may set */
    lim_unit unit;
    bool settable;
    const char *room;
    const char *doc;
} lim_row;

/* Every row, in table order (lim_table[LIM_ID(name)]). */
extern const lim_row lim_table[LIM_COUNT];

/* The row called name, or NULL. */
const lim_row *lim_find(const char *name);

/* The largest value a settable row accepts (counts and durations land in unsigned fields). */
int64_t lim_max(const lim_row *row);

/* gw_config's fields for the settable rows: one int64_t each, named as the row. */
#define LIM_FIELD_SET_(name) int64_t name;
#define LIM_FIELD_FIXED_(name)
#define LIM_FIELD_(name, value, min, unit, access, room, doc) LIM_FIELD_##access##_(name)
#define LIM_CONFIG_FIELDS GW_LIMITS(LIM_FIELD_)

#endif
