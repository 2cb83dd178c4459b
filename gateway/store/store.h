/*
 * gateway/store/store.h — durable storage of FHIR resources (prefix st_).
 *
 * What it keeps:
 *   - every version of every resource, by (type, id, version), as the exact
 *     JSON bytes served on read; a delete is a version without a body;
 *   - per resource: its owner (the organisation that created it) and its
 *     access tags (the organisations it is addressed to), for authorisation;
 *     per version, the tags of that version (history and vread show a
 *     version to whom it was addressed); and grants: a Task lets its
 *     addressees read the resources it refers to (st_op.grants), which
 *     count as access tags of those resources' current versions;
 *   - search index rows of the current version, computed by the caller from
 *     the SearchParameter expressions (the store knows no FHIRPath);
 *   - history: one global change sequence over all versions.
 *
 * Backends: SQLite in WAL mode today (store_sqlite.c); the interface says
 * nothing SQLite-specific, so a PostgreSQL backend (libpq) can follow behind
 * the same functions (see store_backend.h for what a backend implements).
 * Documents sealed at rest. With st_config.seal_keys, every version of a
 * sealed type (st_sealed_type: Bundle, the handover documents) is stored as
 * AES-256-GCM ciphertext (gateway/store/seal.h) with the row's name
 * "<type>/<id>/_history/<version>" as associated data, and opened again on
 * every read path (read, vread, history, search, includes), so callers see
 * plaintext and the database never holds it. A body that does not open
 * (altered, moved to another row, its key gone) fails the read with
 * ST_INTERNAL and says where; nothing undecrypted is ever handed out. Index
 * rows of sealed types are kept only for the parameters access needs
 * (st_sealed_index_param: identifier, type, timestamp, meta), so search
 * holds no clinical content of them either. ST_OP_PURGE removes a
 * resource's content for good (docs/handover.md, retention).
 *
 * The same write transactions carry the NEN 7513 audit entries (ST_OP_AUDIT,
 * docs/audit.md), so that an entry commits atomically with the write it
 * records. The relay queue rides in them too (ST_OP_NOTIFY, below): a
 * notification of a handover event commits with the write it reports.
 *
 * Durability and group commit. All writes go through one commit thread.
 * st_submit() queues a transaction (one or more operations) and returns at
 * once; the commit thread takes everything queued (up to max_batch, waiting
 * at most batch_wait_us for more when writers are concurrent), runs it in
 * ONE database transaction with a SAVEPOINT per submitted transaction,
 * commits and syncs once (WAL, synchronous=FULL), and only then calls each
 * completion callback. So: a callback reporting ST_OK means committed and on
 * disk -- answer 2xx only from there. A failing operation rolls back its own
 * transaction (its savepoint); the others in the batch still commit.
 *
 * Reads may see a commit before it is durable. The sync runs on a thread of
 * its own while the commit thread applies the next batch (store.c, the sync
 * stage), so for a few milliseconds a read can see what a power loss would
 * take back. Nothing read may leave the process before the sync covers it:
 *   - an answer that goes out after a later commit's callback is covered
 *     (each sync covers every earlier commit): answers with audit entries,
 *     and answers to writes, which read before they submitted;
 *   - any other answer waits for st_durable_now(), or for the callback of
 *     st_submit_barrier() (rest_audit_hold does this for every answer);
 *   - the store itself keeps relay notifications and audit entries of
 *     commits not yet durable out of st_notify_list, st_audit_list and
 *     st_audit_get, and on_commit (which wakes the relay) runs after the sync.
 * If a sync fails, what was committed since the last good one may be lost:
 * the store breaks (as PostgreSQL stops), and from then on every waiting and
 * later write and every read fails with ST_IO, until a restart recovers.
 * Conditional creates are evaluated inside the commit thread, where writes
 * are serialised, so two concurrent ones can never both create.
 *
 * Versions and time. The store assigns versionId (1, 2, ...) and lastUpdated
 * (from the config's clock, epoch milliseconds, rendered as an ISO 8601
 * instant in UTC with millisecond precision) inside the commit thread, and
 * lastUpdated never goes backwards. The stored JSON carries the final
 * meta.versionId and meta.lastUpdated: the store splices them in while
 * writing (see st_op.json / meta_at), rather than at every read, because
 * reads are the hot path and a stored version then is exactly the bytes
 * served, hashed and audited. The splice needs no JSON parser: the caller,
 * which has parsed the document anyway, says where the meta member goes and
 * hands over any other meta members (profile, security, tag). A caller that
 * needs something else passes a render callback instead. The exception: a
 * body sealed early (st_seal_early, st_op.sealed) is encrypted before its
 * version exists, so its reads put versionId and lastUpdated back (a read of
 * a sealed body is a decryption and a copy anyway).
 *
 * Memory. Everything passed in is borrowed: for st_submit() the operations
 * and everything they point to (strings, rows, queries) must stay valid
 * until the completion callback has run (the request arena lives that
 * long), so nothing is copied on the hot path. Results handed to a callback
 * (st_txn_result) live only during the call. Read results (st_resource,
 * st_list) belong to the caller, who releases them with st_resource_free()
 * and st_list_free(); every string of a st_resource lives in one block.
 *
 * Threads. st_open() and st_close() are called once each, from one thread,
 * and st_close() only when no other thread still uses the store. Everything
 * else is thread-safe: reads run concurrently on a pool of read connections
 * (WAL: readers never wait for the writer and see only committed data);
 * st_submit() may be called from any thread. Completion callbacks run on the
 * sync thread (the commit thread when there is none; in both, the next
 * commits wait for them): keep them short (wake the requester) and do not
 * call st_submit_wait() or st_close() from them.
 *
 * Errors are values: st_status, with a message in a caller-provided st_error
 * (or in st_op_result.message) for the IO/INTERNAL kinds. A message is at
 * most store_message_max bytes (gateway/util/limits.h); a longer one (a long
 * path, a long reason from the database) is cut at a character boundary and
 * ends in "...".
 */
#ifndef GATEWAY_STORE_H
#define GATEWAY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/audit/audit.h"
#include "gateway/store/seal.h"
#include "gateway/util/limits.h"

#define ST_ID_MAX LIM(id_max)                       /* FHIR ids: [A-Za-z0-9.-]{1,64} */
#define ST_TYPE_MAX LIM(type_max)                   /* resource type names are shorter */
#define ST_INSTANT_LEN 25                           /* "2024-05-01T12:34:56.789Z" plus NUL */
#define ST_MESSAGE_MAX (LIM(store_message_max) + 1) /* error messages with their NUL (see st_error) */

typedef enum st_status {
    ST_OK = 0,
    ST_EXISTS,           /* conditional create: exactly one match, nothing created (REST: 200) */
    ST_NOT_FOUND,        /* no such resource / version (404) */
    ST_GONE,             /* deleted; the result still carries the deletion version (410) */
    ST_VERSION_CONFLICT, /* If-Match version is not the current one (412) */
    ST_CONFLICT,         /* create with an id that already exists (409) */
    ST_MULTIPLE_MATCHES, /* conditional create matched more than one resource (412) */
    ST_ABORTED,          /* another operation of the same transaction failed; nothing written */
    ST_INVALID,          /* the request itself is malformed (unsupported modifier, ...) (400) */
    ST_BUSY,             /* queue full or database locked for longer than busy_timeout (503) */
    ST_CLOSED,           /* the store is closing */
    ST_IO,               /* the disk said no (full, read-only, fsync failed) (500/503) */
    ST_INTERNAL          /* anything else (500) */
} st_status;

/* A short name ("ok", "gone", "version-conflict") for logs and tests. */
const char *st_status_name(st_status status);

typedef struct st_error {
    char message[ST_MESSAGE_MAX];
} st_error;

/* ---- Opening and closing ------------------------------------------------------ */

/* Milliseconds since the epoch; tests pin it, the default reads CLOCK_REALTIME. */
typedef int64_t (*st_clock_fn)(void *arg);

/* One commit of the commit thread, for the metrics module. */
typedef struct st_commit_stats {
    size_t transactions;    /* submitted transactions in this batch */
    size_t operations;      /* operations in them */
    size_t failed;          /* transactions rolled back to their savepoint */
    uint64_t queue_wait_us; /* oldest transaction's time in the queue */
    uint64_t commit_us;     /* BEGIN to durable (the sync returned) */
    bool ok;                /* false: the COMMIT itself failed; every transaction failed */
    size_t notifications;   /* relay notifications queued by this commit (ST_OP_NOTIFY), to wake the relay */
} st_commit_stats;

/* The numbers default (when 0) to the rows of gateway/util/limits.h named in the comments. */
typedef struct st_config {
    const char *path;         /* SQLite: the database file (created if missing) */
    unsigned busy_timeout_ms; /* another process holding the lock; store_busy_timeout_ms */
    unsigned max_batch;       /* transactions per commit at most; store_batch_max */
    int batch_wait_us;        /* group-commit window when writers are concurrent; 0: store_batch_wait_us, <0: none */
    unsigned max_queue;       /* queued transactions before st_submit says ST_BUSY; store_max_queue */
    unsigned max_readers;     /* read connections at most (readers beyond wait); store_max_readers */
    bool synchronous_normal;  /* false (default): synchronous=FULL. true only for throwaway data */
    st_clock_fn clock;        /* default: real time */
    void *clock_arg;
    /* Called after every commit once it is durable (or failed), before its callbacks: on the sync thread, or on
     * the commit thread when commits are durable at once. */
    void (*on_commit)(void *arg, const st_commit_stats *stats);
    void *on_commit_arg;
    /*
     * The audit trail (docs/audit.md). With audit_keys, ST_OP_AUDIT entries are
     * chained with the current key and, with audit_signer and
     * audit_checkpoint_path, the chain head is checkpointed there every
     * audit_checkpoint_entries entries or audit_checkpoint_ms (0: the rows of
     * gateway/util/limits.h), and once more by st_close. Without audit_keys an
     * ST_OP_AUDIT fails (ST_INVALID), and so does its transaction. Borrowed:
     * they must outlive the store. st_open refuses a database whose trail ends
     * before the last checkpoint (a cut-off tail).
     */
    const au_keyring *audit_keys;
    const au_signer *audit_signer;
    const char *audit_checkpoint_path;
    unsigned audit_checkpoint_entries;
    unsigned audit_checkpoint_ms;
    /* Sealing at rest (above): NULL stores sealed types as plaintext and cannot read sealed rows (ST_INTERNAL).
     * Borrowed: it must outlive the store. */
    const sl_keyring *seal_keys;
    /* With seal_keys, documents sealed early go to the document log beside the database (doc_log.h) unless
     * this is set: then they stay in their rows, as in a database several gateways share (bench-store compares). */
    bool document_log_off;
    /* The serving gateway's store: st_open refuses (naming the holder's pid) while another process holds the
     * store open so, through an exclusive flock on <path>.lock kept until st_close. Two gateways on one
     * database would append over each other's records in the document log and fork the audit chain. Tools
     * that only read it or copy it (audit verify, backup) leave it false. Only such a store frees, as it opens,
     * the records of the document log that no row names after an unclean stop (st_reclaim_report). */
    bool exclusive;
    /* Called (on the reading thread) with where and why whenever a sealed body does not open, for the error log:
     * the read itself fails with ST_INTERNAL. NULL: not reported beyond the read. */
    void (*on_seal_failure)(void *arg, const char *message);
    void *on_seal_failure_arg;
} st_config;

typedef struct st_store st_store;

/* Opens (creating or migrating the schema) and starts the commit thread; NULL plus err on failure. */
st_store *st_open(const st_config *config, st_error *err);
/* Completes everything queued, stops the commit thread, closes all connections. NULL is fine. */
void st_close(st_store *store);

/*
 * A backup (`fhirgw backup`, docs/operations.md): a consistent copy of the store at config->path into folder
 * `to` (created if missing), safe while a gateway writes to the store from another process. First the
 * database as of one moment, into <to>/<the database file's name>; then the document log
 * (<database>-documents, doc_log.h), into <to>/<that folder's name>. Every row of the copy names a record that
 * was durable before the row committed, so before the database was copied: the log's copy has it whole.
 * What the log gained afterwards is dead space in the copy. In the copy every receiver's relay counter moves
 * LIM(backup_event_jump) on, so a restore never numbers an event as one issued after the backup. Purges
 * that commit while it runs keep their records until the log is copied (a lock file, doc_log.h), so every
 * record the copy names is whole in it. Refused (ST_CONFLICT) when `to` holds either copy already. Needs no
 * open store.
 */
typedef struct st_backup_report {
    uint64_t database_bytes; /* the database copy */
    uint64_t document_bytes; /* the document log copied, holes included */
    uint64_t document_data;  /* of which blocks that hold data */
} st_backup_report;

st_status st_backup(const st_config *config, const char *to, st_backup_report *report, st_error *err);

/*
 * A restore (`fhirgw restore`, docs/operations.md): the store at config->path replaced by the backup in folder
 * `from` (st_backup's copies). Refused (ST_CONFLICT) while a gateway serves the store (its serving lock, taken
 * here for the whole restore so that none starts meanwhile); ST_NOT_FOUND when `from` holds no backup of it.
 * Nothing is deleted: the database, its -wal and -shm files and its documents folder are moved into the new
 * folder `aside` (beside the database: a rename), then the backup's are copied in (the log stays sparse).
 * *copied: the bytes copied. A restore that fails halfway (a copy that cannot be read or written) removes
 * what it copied and moves the store's files back: the store is as it was, and err says so; only when that
 * fails too are they left in `aside`, and err says where.
 */
st_status st_restore(const st_config *config, const char *from, const char *aside, uint64_t *copied, st_error *err);

/* Counters since st_open, for the metrics module and for tests. */
typedef struct st_counters {
    uint64_t commits;      /* successful COMMITs (= syncs) */
    uint64_t transactions; /* submitted transactions that were committed */
    uint64_t failed_transactions;
    uint64_t operations;      /* operations in committed transactions */
    uint64_t commit_us_total; /* sum over commits of st_commit_stats.commit_us */
    uint64_t commit_us_max;
    uint64_t max_batch_seen; /* largest batch (transactions) so far */
    uint64_t audit_entries;  /* audit entries committed */
    uint64_t audit_checkpoints, audit_checkpoint_failures;
    uint64_t queued;             /* transactions waiting for the commit thread now */
    uint64_t read_cache_hits;    /* st_read of the directory's types answered from memory (read_cache.h) */
    uint64_t document_log_syncs; /* fdatasyncs of the document log (doc_log.h) */
    uint64_t document_log_bytes; /* its length: where the next record goes (freed records are holes in it) */
} st_counters;

void st_counters_get(st_store *store, st_counters *out);

/* What st_open's reclaim of the document log did (doc_log.h, "Dead space": after an unclean stop or a
 * restore, records that no row names are freed). For the start's log and /metrics. */
typedef struct st_reclaim {
    bool ran;           /* the log had no clean-stop marker, so it was checked against the rows */
    uint64_t freed;     /* bytes freed */
    uint64_t documents; /* records the rows name, which were kept */
    uint64_t micros;    /* how long the check took, reading the locators included */
    const char *error;  /* why it did not run through (the store's; valid while it is open); NULL when it did */
} st_reclaim;

void st_reclaim_report(st_store *store, st_reclaim *out);

/* ---- Index rows (computed by the caller, written with the resource) ------------ */

typedef enum st_kind {
    ST_KIND_STRING,    /* normalised by the store for case/accent-insensitive prefix search */
    ST_KIND_TOKEN,     /* system|code */
    ST_KIND_REFERENCE, /* target type and id, or an absolute URL */
    ST_KIND_DATE,      /* [low, high] instants, epoch ms, both inclusive */
    ST_KIND_NUMBER,    /* a decimal as double */
    ST_KIND_QUANTITY,  /* a decimal as double with system and unit code */
    ST_KIND_URI
} st_kind;

/*
 * personal: the row's value identifies or describes a person (a name, a
 * BSN, an address, a phone number, a birth date: the indexer marks the
 * parameters gateway/util/personal.h lists). The store records the mark
 * with the row, so that encryption at rest can cover exactly those rows.
 */
typedef struct st_index_row {
    const char *param; /* the search parameter's code: "name", "subject" */
    st_kind kind;
    bool personal;
    union {
        struct {
            const char *text;
        } string; /* the original text */
        struct {
            const char *system, *code;
        } token; /* system may be NULL */
        struct {
            const char *type, *id, *url;
        } reference; /* type+id for relative, url for absolute */
        struct {
            int64_t low_ms, high_ms;
        } date;
        struct {
            double value;
            const char *system, *code;
        } number; /* number and quantity */
        struct {
            const char *uri;
        } uri;
    } v;
} st_index_row;

/* ---- Queries ------------------------------------------------------------------ */

typedef enum st_prefix { ST_EQ = 0, ST_NE, ST_GT, ST_LT, ST_GE, ST_LE, ST_SA, ST_EB, ST_AP } st_prefix;

typedef enum st_modifier {
    ST_MOD_NONE = 0,
    ST_MOD_EXACT,    /* string: whole original text, case and accents as given */
    ST_MOD_CONTAINS, /* string: normalised text contains the value */
    ST_MOD_MISSING,  /* any kind: st_condition.missing says which way; no values */
    ST_MOD_NOT       /* token: no row of the parameter matches (absent counts as not matching) */
} st_modifier;

/*
 * One value of a condition. Dates use FHIR's range semantics: the value is
 * the range its precision implies (2024-05 = [May 1st 00:00, May 31st
 * 23:59:59.999]) and rows are ranges too (a dateTime is a point, a Period
 * its start and end). Numbers compare value against the row's value, except
 * eq/ne, which use [low, high): the range the value's precision implies
 * (100 = [99.5, 100.5), half-open as FHIR says); low = high = 0 means
 * exactly value. ap is within 10% of value. Quantities also match the
 * row's system and code when given.
 */
typedef struct st_value {
    st_prefix prefix; /* dates, numbers, quantities, _lastUpdated; ST_EQ elsewhere */
    union {
        struct {
            const char *text;
        } string;
        struct {
            const char *system, *code;
        } token; /* system NULL: any, "": none; code NULL: any */
        struct {
            const char *type, *id, *url;
        } reference; /* url: absolute; else id with type (NULL: any) */
        struct {
            int64_t low_ms, high_ms;
        } date;
        struct {
            double value, low, high;
            const char *system, *code;
        } number; /* system/code NULL: any */
        struct {
            const char *uri;
        } uri;
    } v;
} st_value;

/*
 * A link of a chain: from a resource to the ones its reference parameter
 * `param` points at (forward: "subject:Patient.name"), or to the resources
 * of `type` whose `param` points at it (reverse: "_has:Observation:patient").
 * Only current, non-deleted resources are reached, and only those the
 * query's `linked` visibility allows.
 */
typedef struct st_link {
    const char *param; /* a reference parameter */
    const char *type;  /* forward: the target type (NULL: any); reverse: the referring type (required) */
    bool reverse;
} st_link;

/*
 * Who may see a resource reached through a chain, _has or an include: one
 * owned by or addressed to (access tag) one of `orgs`, or of a type in
 * `shared_types` (the directory everyone reads); with type_count > 0 only
 * resources of `types` at all (what the caller may read by type).
 */
typedef struct st_visibility {
    const char *const *orgs;
    size_t org_count;
    const char *const *shared_types;
    size_t shared_type_count;
    const char *const *types;
    size_t type_count;
} st_visibility;

/*
 * A condition: the resource has a row of `param` matching any of the values
 * (OR), modifiers aside. Conditions of a query are ANDed. Two parameters
 * every type has are built in: "_id" (kind ST_KIND_TOKEN, code = the id)
 * and "_lastUpdated" (kind ST_KIND_DATE). With a chain, the condition holds
 * when some resource reached through all its links has such a row.
 */
typedef struct st_condition {
    const st_link *chain; /* followed in order; chain_len 0: the resource itself */
    size_t chain_len;
    const char *param;
    st_kind kind;
    st_modifier modifier;
    bool missing; /* with ST_MOD_MISSING: true = has no row of param */
    const st_value *values;
    size_t value_count;
} st_condition;

typedef struct st_sort {
    const char *param; /* "_lastUpdated", "_id", or a parameter (its lowest value; highest when descending) */
    st_kind kind;      /* of param; ignored for the built-in ones */
    bool descending;
} st_sort;

/*
 * Keyset paging (with the default order, or a single _lastUpdated sort):
 * the page after (or before) the resource with this sort key. Pages of one
 * search pass back the st_list.snapshot of its first page as
 * st_query.snapshot, so that they see the resources as they were then:
 * resources created later are left out and updated ones keep their place
 * (their key is their lastUpdated as of the snapshot). A resource deleted
 * or no longer matching since drops out without shifting the others.
 */
typedef struct st_cursor {
    int64_t key_ms; /* the lastUpdated (as of the snapshot) of the resource paged from */
    int64_t rid;    /* its row (st_list.first_rid/last_rid): ties are ordered by creation, in the same
                       * direction, which the (type, lastUpdated) index gives without sorting */
    bool before;    /* the page before it (a previous link), else the page after it (next) */
} st_cursor;

/*
 * _include: the resources the page's matches point at through `param` of
 * `type` (NULL param: every reference parameter; NULL type: any);
 * _revinclude (reverse): the resources of `type` pointing at the matches
 * through `param` (both required). target_type narrows the target (NULL:
 * any). With iterate the include applies again to what was included, until
 * nothing new comes, the limit is reached or after include_rounds rounds. Included resources are
 * current, visible as st_query.linked says, and never a match or twice.
 */
typedef struct st_include {
    const char *type;
    const char *param;
    const char *target_type;
    bool reverse, iterate;
} st_include;

typedef struct st_query {
    const char *type; /* NULL: all types */
    const st_condition *conditions;
    size_t condition_count;
    /* Visibility: when visible_to_count > 0, only resources owned by one of
     * these organisations or carrying one of them as an access tag. */
    const char *const *visible_to;
    size_t visible_to_count;
    const st_visibility *linked; /* resources reached by chains and _has; NULL: no restriction */
    const st_sort *sort;         /* none: _lastUpdated descending */
    size_t sort_count;
    size_t count; /* page size; 0: the total only with want_total, else page_size_default */
    size_t offset;
    bool want_total;
    int64_t snapshot;           /* 0: now; else an earlier page's st_list.snapshot (see st_cursor) */
    const st_cursor *cursor;    /* keyset paging; NULL: the first page (after offset) */
    const st_include *includes; /* applied to the page's matches */
    size_t include_count;
    size_t max_included; /* included resources at most (the rest: included_truncated); 0: included_max */
} st_query;

/* ---- Results -------------------------------------------------------------------- */

typedef enum st_method { ST_METHOD_CREATE = 1, ST_METHOD_UPDATE, ST_METHOD_DELETE } st_method;

/* One stored version. All pointers point into one block freed by st_resource_free(). */
typedef struct st_resource {
    const char *type;
    const char *id;
    int64_t version;
    int64_t last_updated_ms;
    char last_updated[ST_INSTANT_LEN];
    st_method method; /* how this version came about (history: request.method) */
    bool deleted;     /* a deletion or a purged version: json is NULL */
    const char *json; /* NUL-terminated, json_len bytes */
    size_t json_len;
    const char *owner;              /* "" when none */
    const char *const *access_tags; /* the resource's current tags */
    size_t access_tag_count;
    /* st_search in the keyset order: this match's st_cursor key and row, so that a page may be
     * continued after any of its items (not only the last); 0 otherwise */
    int64_t key_ms, rid;
    void *block_; /* the allocation; do not touch */
    void *plain_; /* the opened body of a sealed version (json points here); do not touch */
} st_resource;

void st_resource_free(st_resource *r);

typedef struct st_list {
    st_resource *items;
    size_t count;
    int64_t total;    /* with want_total (search) or always (history); -1 when not counted */
    int64_t snapshot; /* the change sequence the page was read at (history: pass back as upto,
                             * search: as st_query.snapshot) */
    /* search in the keyset order: whether another page follows in the direction read (after the
     * last item, or before the first with a `before` cursor), and the sort keys of the first and
     * last items (their lastUpdated as of the snapshot) for the next cursors */
    bool more;
    int64_t first_key_ms, last_key_ms;
    int64_t first_rid, last_rid;
    /* search with includes: the included resources (freed with the list) */
    st_resource *included;
    size_t included_count;
    bool included_truncated; /* more would have been included than max_included */
} st_list;

void st_list_free(st_list *list);

/* ---- Reads (thread-safe, concurrent) -------------------------------------------- */

/* The current version. ST_GONE for a deleted resource: out then holds the deletion (json NULL). */
st_status st_read(st_store *store, const char *type, const char *id, st_resource *out, st_error *err);
/* One version. A deletion version answers ST_GONE (with out filled), as a read would. */
st_status st_vread(st_store *store, const char *type, const char *id, int64_t version, st_resource *out, st_error *err);

typedef struct st_history_query {
    const char *type; /* NULL: system level */
    const char *id;   /* NULL: type or system level; needs type */
    int64_t since_ms; /* INT64_MIN: no _since; else versions with lastUpdated >= since */
    bool at;          /* _at: only versions current at some moment of [at_lo_ms, at_hi_ms] */
    int64_t at_lo_ms, at_hi_ms;
    int64_t upto;                  /* 0: now; else a st_list.snapshot of an earlier page, so pages do not shift */
    const char *const *visible_to; /* as in st_query, on the resource's current owner and tags */
    size_t visible_to_count;
    size_t count; /* page size; 0: the total only */
    size_t offset;
} st_history_query;

/* Versions newest first; total always counted. Instance history of an unknown resource: ST_NOT_FOUND. */
st_status st_history(st_store *store, const st_history_query *query, st_list *out, st_error *err);

/* The current, non-deleted resources matching the query, a page of them. */
st_status st_search(st_store *store, const st_query *query, st_list *out, st_error *err);

/* ---- Writes ---------------------------------------------------------------------- */

typedef enum st_op_kind {
    ST_OP_CREATE = 1, /* with if_none_exist: a conditional create */
    ST_OP_UPDATE,
    ST_OP_DELETE,
    ST_OP_AUDIT, /* append st_op.audit to the audit chain (type and id are not used) */
    /* Remove the content of every version of type/id for good (retention): a deletion version is written (unless
     * the resource is deleted already: then result.unchanged) and every version's body is erased; the resource
     * row, its history's metadata and the audit trail stay. Reads answer ST_GONE from then on. */
    ST_OP_PURGE,
    ST_OP_NOTIFY,       /* queue a relay notification about an earlier write of the transaction (st_op.notify) */
    ST_OP_NOTIFY_UPDATE /* record an attempt at delivering a queued notification (st_op.notify) */
} st_op_kind;

/*
 * The relay queue (gateway/relay, docs/handover.md "Notifications"): one row
 * per notification, in the store so that it survives restarts and commits
 * with the write it reports.
 *
 * ST_OP_NOTIFY queues a notification to `receiver` (a URA) about what the
 * operation at index of_op of the same transaction wrote (its type, id and
 * version). It is numbered on the commit thread, where writes are
 * serialised: the receiver's next event number, 1, 2, 3, ... without gaps,
 * in commit order. When that operation wrote nothing (a conditional create
 * that matched, a delete of something deleted) nothing is queued: the
 * result is ST_OK with unchanged set. Otherwise the result's version is the
 * event number.
 *
 * ST_OP_NOTIFY_UPDATE records an attempt at notification `seq`: delivered,
 * dead (given up), or still pending with the time of the next attempt. A
 * notification that is no longer pending gives ST_NOT_FOUND: nothing is
 * counted twice. Delivered with keep_delivered_ms, it also prunes: of the
 * same receiver's ST_NOTIFY_PRUNE_BATCH oldest delivered notifications with
 * lower event numbers, those delivered longer than keep_delivered_ms ago are
 * deleted (so the queue does not grow forever). Only the oldest are looked
 * at, so a mark costs the same with a day's notifications kept as with
 * none; each mark adds one delivered row and may take up to that many, so
 * the backlog shrinks. Its own row stays, and so the receiver's latest
 * event; pending and dead ones stay; numbers are never reused
 * (relay_receiver counts).
 */
#define ST_NOTIFY_PRUNE_BATCH 16
typedef enum st_notify_state { ST_NOTIFY_PENDING = 0, ST_NOTIFY_DELIVERED, ST_NOTIFY_DEAD } st_notify_state;
#define ST_NOTIFY_STATES 3
#define ST_URA_MAX 15 /* a URA is 8 digits; room for what else may name a receiver */
#define ST_EVENT_MAX 31

typedef struct st_notify {
    /* ST_OP_NOTIFY */
    const char *receiver; /* the URA to notify */
    const char *event;    /* what happened, a short code ("created", "status"; at most ST_EVENT_MAX bytes) */
    size_t of_op;         /* the write it reports: an earlier create, update or delete of the transaction */
    /* ST_OP_NOTIFY_UPDATE */
    int64_t seq;
    st_notify_state state;     /* ST_NOTIFY_PENDING: try again at next_attempt_ms */
    int64_t next_attempt_ms;   /* pending: when */
    long http_status;          /* the receiver's answer, 0 when there was none */
    const char *error;         /* why the attempt failed; NULL when delivered */
    int64_t keep_delivered_ms; /* delivered: prune the receiver's older delivered ones (above); 0: keep all */
} st_notify;

/*
 * Makes the final JSON of a version: called on the commit thread with the
 * assigned version and lastUpdated; returns malloc'd bytes (the store frees
 * them) and their length, or NULL on failure (the operation fails with
 * ST_INTERNAL). Keep it fast: the commit thread waits for it.
 */
typedef char *(*st_render_fn)(void *arg, int64_t version, const char *last_updated, size_t *len);
/* A body sealed already (st_seal_early) for this version, malloc'd, or NULL to have it rendered and sealed. */
typedef char *(*st_sealed_fn)(void *arg, int64_t version, size_t *len);

struct st_op_result;
struct st_txn_result;

/* A resource an operation grants read access to (see st_op.grants). */
typedef struct st_grant {
    const char *type, *id;
} st_grant;

typedef struct st_op {
    st_op_kind kind;
    const char *type;
    const char *id; /* chosen by the caller, also for create */
    /* create: the owning organisation (kept for the resource's life; ignored by update/delete) */
    const char *owner;
    int64_t expected_version;      /* update/delete: If-Match; 0 = any */
    bool create_if_missing;        /* update: create when absent or deleted (update-as-create) */
    const st_query *if_none_exist; /* create: only if this matches nothing (type must be the op's) */

    /*
     * The body (create/update). The store inserts
     *     "meta":{"versionId":"<v>","lastUpdated":"<t>"[,<meta_extra>]}
     * at byte offset meta_at of json (0: right after the opening brace),
     * adding the commas the position needs. meta_at must be where an object
     * member may start or end (after '{', after ',' or after a member's
     * value), json must have no meta member of its own, and meta_extra is
     * the other meta members as JSON text without braces ("profile":[...]).
     * Or set render, and json/meta_at/meta_extra are ignored.
     */
    const char *json;
    size_t json_len;
    size_t meta_at;
    const char *meta_extra; /* NULL or "" when none */
    st_render_fn render;
    void *render_arg;
    /* A sealed type (st_sealed_type) with seal keys: asked first, with render_arg; what it gives is stored as
     * it is. Sealing is the larger part of storing a document, and this moves it off the commit thread. */
    st_sealed_fn sealed;

    const st_index_row *rows; /* create/update: the search index of this version */
    size_t row_count;
    const char *const *access_tags; /* create/update: organisations it is addressed to (replaces the old set) */
    size_t access_tag_count;

    /*
     * Grants (create/update of a Task): the current versions of these
     * resources become readable by this version's access tags, replacing
     * what the previous version granted (a deletion revokes them all).
     * A target that does not exist (or is deleted) is skipped.
     */
    const struct st_grant *grants;
    size_t grant_count;

    /*
     * Optional: called on the commit thread right after this operation was
     * applied (result filled, ST_EXISTS included) and before the next
     * operation of the same transaction runs. A transaction uses it to point
     * the references of its later operations (rendered and indexed after
     * this) at the resource a conditional create matched. Keep it tiny.
     */
    void (*on_applied)(void *arg, const struct st_op_result *result);
    void *on_applied_arg;

    /*
     * ST_OP_AUDIT: the entry (borrowed and written to: the store assigns its
     * seq, time and key_id). Audit operations are applied after the other
     * operations of their transaction, whatever their place in it, so that
     * audit_settle (optional, on the commit thread) can fill in the outcome
     * (entry->status, entry->decision) from how the others went. When the
     * others fail, their changes are rolled back and the audit entries are
     * still appended, settled with that failure. When an audit entry cannot be
     * appended, the whole transaction fails: no access goes unrecorded.
     */
    au_entry *audit;
    void (*audit_settle)(void *arg, const struct st_txn_result *others, au_entry *entry);
    void *audit_settle_arg;

    /* ST_OP_NOTIFY and ST_OP_NOTIFY_UPDATE (type and id are not used): see st_notify */
    const st_notify *notify;
} st_op;

typedef struct st_op_result {
    st_status status;
    /* OK: the version written (a deletion's version for delete);
     * EXISTS: the matching resource's id and current version;
     * GONE / VERSION_CONFLICT: the current version. */
    char id[ST_ID_MAX + 1];
    int64_t version;
    int64_t last_updated_ms;
    char last_updated[ST_INSTANT_LEN];
    bool created;                 /* update: it created the resource (REST: 201 rather than 200) */
    bool unchanged;               /* delete of an already deleted resource: nothing written */
    char message[ST_MESSAGE_MAX]; /* what went wrong, for the IO/INTERNAL/INVALID kinds */
} st_op_result;

typedef struct st_txn_result {
    st_status status;        /* ST_OK, or the first failing operation's status */
    size_t failed_op;        /* its index when status != ST_OK (ST_EXISTS is not a failure) */
    const st_op_result *ops; /* one per submitted operation */
    size_t op_count;
} st_txn_result;

/* Runs once the commit is durable (or failed), on the sync thread (or the commit thread when there is none);
 * `result` lives during the call only. */
typedef void (*st_done_fn)(void *arg, const st_txn_result *result);

/*
 * Queues a transaction of op_count operations (atomic on its own) and
 * returns ST_OK; `done` then runs exactly once, on the store's thread, after
 * the commit is durable. Any other status (ST_BUSY: queue full, ST_CLOSED,
 * ST_INVALID, ST_IO: the store is broken)
 * means nothing was queued and `done` will not run.
 */
st_status st_submit(st_store *store, const st_op *ops, size_t op_count, st_done_fn done, void *arg);

/*
 * st_submit and wait for the commit: for tools, tests and threads that may
 * block. results (op_count of them) may be NULL. Returns the transaction's
 * status (as st_txn_result.status) or why it could not be queued.
 */
st_status st_submit_wait(st_store *store, const st_op *ops, size_t op_count, st_op_result *results);

/* Whether everything a read could see now is durable (no commit is between its COMMIT and its sync). */
bool st_durable_now(st_store *store);
/* A transaction of no operations: `done` runs (op_count 0, ST_OK, or the batch's failure) once everything
 * committed before it is durable. Statuses as st_submit. */
st_status st_submit_barrier(st_store *store, st_done_fn done, void *arg);
/* Tests only: while on, the sync stage syncs nothing and finishes no commit (callbacks wait); commits go on
 * up to the stage's depth. Without a sync stage (synchronous=NORMAL, no checkpointer) it does nothing. */
void st_test_hold_sync(st_store *store, bool hold);
/* Tests only: the sync stage's next sync fails as a failed fdatasync would (the store breaks). */
void st_test_fail_next_sync(st_store *store);

/* ---- The audit trail (reads) -------------------------------------------------------- */

typedef struct st_audit_row {
    au_entry entry;
    unsigned char mac[AU_MAC_LEN];
} st_audit_row;

/* Newest first below before_seq (0: from the newest), or with ascending oldest first after after_seq; only
 * ura's entries when ura is not NULL; count rows at most. */
typedef struct st_audit_query {
    const char *ura;
    bool ascending;
    int64_t after_seq, before_seq;
    size_t count;
} st_audit_query;

/* A page of entries: *rows is malloc'd (free()), *count of them. */
st_status st_audit_list(st_store *store, const st_audit_query *query, st_audit_row **rows, size_t *count,
                        st_error *err);
/* The entry with this seq: ST_OK or ST_NOT_FOUND. */
st_status st_audit_get(st_store *store, int64_t seq, st_audit_row *out, st_error *err);

/* ---- The relay queue (reads) -------------------------------------------------------- */

/* One queued notification (all times epoch ms; 0 when not yet). */
typedef struct st_notification {
    int64_t seq; /* the queue's own order */
    char receiver[ST_URA_MAX + 1];
    int64_t event_number; /* per receiver: 1, 2, 3, ... */
    char event[ST_EVENT_MAX + 1];
    char focus_type[ST_TYPE_MAX + 1];
    char focus_id[ST_ID_MAX + 1];
    int64_t focus_version;
    int64_t created_ms; /* the commit that queued it */
    st_notify_state state;
    unsigned attempts;
    int64_t next_attempt_ms, last_attempt_ms, done_ms;
    long http_status;
    char last_error[ST_MESSAGE_MAX];
} st_notification;

typedef struct st_notify_query {
    /* true: the oldest pending notification of each receiver (the rest of a receiver's wait behind it, so
     * that it gets them in order), soonest next attempt first; false: notifications by seq, or those of
     * `receiver` by event number */
    bool due_heads;
    const char *receiver; /* NULL: every receiver */
    bool pending;         /* with receiver: only its pending notifications (the relay's batch), by event number */
    size_t count;         /* rows at most */
    /* with `receiver` only: event numbers from .. to, both included (0: unbounded), and newest first (count 1:
     * its latest event); what a receiver's $events and $status read (rest_subscription.c) */
    int64_t from_event, to_event;
    bool newest_first;
} st_notify_query;

/* Rows as the query asks: *rows malloc'd (free()), *count of them. */
st_status st_notify_list(st_store *store, const st_notify_query *query, st_notification **rows, size_t *count,
                         st_error *err);
/* How many notifications are in each state (indexed by st_notify_state). */
st_status st_notify_counts(st_store *store, int64_t counts[ST_NOTIFY_STATES], st_error *err);

/* Tests only: the next sync of the document log fails (doc_log.h); the store breaks as for its own sync. */
void st_test_fail_next_document_sync(st_store *store);
/* Tests only: while on, every audit append fails with ST_IO (and so its transaction). */
void st_test_fail_audit(st_store *store, bool fail);

/* ---- Sealing at rest: the table of what is sealed ------------------------------------ */

/* Whether versions of this type are sealed (when the store has seal_keys). */
bool st_sealed_type(const char *type);

/*
 * Seals, before it is committed, the body of version 1 of type/id (a create), so that the commit thread
 * only stores it (st_op.sealed). plain is the resource as it is to be served but for meta.versionId and
 * meta.lastUpdated: its first "meta":{ must be the resource's own meta object, holding neither (possibly
 * empty: "meta":{}). Reads put both back from the version's row, where they would have been. malloc'd
 * bytes (*len of them), or NULL when the store has no seal keys, the type is not sealed or sealing failed.
 * With a document log (the SQLite store: doc_log.h) the sealed bytes are appended to it here, on the
 * caller's thread, and what is returned is the locator the row will hold instead.
 */
char *st_seal_early(st_store *s, const char *type, const char *id, const char *plain, size_t len, size_t *out_len);
/* A body of st_seal_early that no operation took (never handed to st_op.sealed, or refused by it): with a
 * document log its record is freed. NULL and plain sealed bytes are fine. */
void st_discard_early(st_store *s, const char *sealed, size_t len);
/* Whether index rows of this parameter are kept for a sealed type (the rest is not written). */
bool st_sealed_index_param(const char *param);

/* ---- Helpers shared with callers -------------------------------------------------- */

/* The instant as "YYYY-MM-DDThh:mm:ss.sssZ" (out: ST_INSTANT_LEN bytes). */
void st_format_instant(int64_t epoch_ms, char out[ST_INSTANT_LEN]);
/* The instant as an HTTP date for Last-Modified, "Wed, 01 May 2024 12:34:56 GMT" (30 bytes). */
void st_format_http_date(int64_t epoch_ms, char out[30]);
/*
 * The normalised form of string index rows and queries: lower case, Latin
 * accents removed (é -> e, ß -> ss, Ĳ -> ij), combining marks dropped; other
 * text unchanged. Returns malloc'd text (NULL when out of memory).
 */
char *st_normalize(const char *text);

/* Constructors for index rows, for readability at call sites. */
static inline st_index_row st_row_string(const char *param, const char *text)
{
    return (st_index_row){.param = param, .kind = ST_KIND_STRING, .v.string = {text}};
}
static inline st_index_row st_row_token(const char *param, const char *system, const char *code)
{
    return (st_index_row){.param = param, .kind = ST_KIND_TOKEN, .v.token = {system, code}};
}
static inline st_index_row st_row_reference(const char *param, const char *type, const char *id, const char *url)
{
    return (st_index_row){.param = param, .kind = ST_KIND_REFERENCE, .v.reference = {type, id, url}};
}
static inline st_index_row st_row_date(const char *param, int64_t low_ms, int64_t high_ms)
{
    return (st_index_row){.param = param, .kind = ST_KIND_DATE, .v.date = {low_ms, high_ms}};
}
static inline st_index_row st_row_number(const char *param, double value)
{
    return (st_index_row){.param = param, .kind = ST_KIND_NUMBER, .v.number = {value, NULL, NULL}};
}
static inline st_index_row st_row_quantity(const char *param, double value, const char *system, const char *code)
{
    return (st_index_row){.param = param, .kind = ST_KIND_QUANTITY, .v.number = {value, system, code}};
}
static inline st_index_row st_row_uri(const char *param, const char *uri)
{
    return (st_index_row){.param = param, .kind = ST_KIND_URI, .v.uri = {uri}};
}

#endif
