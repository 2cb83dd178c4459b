/*
 * gateway/store/store_sql.h — the SQL every SQL backend of the store shares
 * (prefix sql_). Internal to the store: store_sqlite.c (and a future
 * store_pg.c) include it; nothing above the store does.
 *
 * What is here, written once for any SQL database:
 *   - the schema, as migrations from one version to the next;
 *   - the fixed statements (reads by id, version and index row inserts,
 *     savepoints, ...);
 *   - the statements built from an st_query (search: conditions, chains,
 *     _has, visibility, sort, keyset paging, includes), an
 *     st_history_query and an If-None-Exist query, with their bound values;
 *   - how an st_index_row becomes the values of its insert;
 *   - search and history as a whole (count, page, includes round by round,
 *     trimming a keyset page), over a reader the backend provides.
 *
 * Tables (schema version SQL_SCHEMA_VERSION):
 *   resource          one row per (type, id): current version, deleted flag,
 *                     owner, and current_seq pointing at the current version
 *   resource_version  every version, seq = the global change sequence that
 *                     orders history; a deletion has json NULL; tags = whom
 *                     that version was addressed to; the versions whose json
 *                     is a locator of the document log (doc_log.h) have an
 *                     index of their own (version_in_log)
 *   access_tag        (tag, rid): organisations a resource is addressed to
 *   access_grant      (tag, rid, grantor): what a Task lets its addressees read
 *   index_string, index_token, index_reference, index_date, index_number,
 *   index_uri         search rows of the current version, one table per
 *                     value kind so that each gets its own SQL index; quantity
 *                     rows share index_number with a system and unit code;
 *                     personal = 1 marks rows holding personal data
 *   audit_entry       the NEN 7513 audit trail: one row per access, chained
 *                     by an HMAC (gateway/audit), seq assigned at commit
 *   relay_receiver    per receiver (URA) of relay notifications: the last
 *                     event number given out, and since when
 *   relay_notification the relay queue: one row per notification with its
 *                     per-receiver event number, what it reports and its
 *                     delivery state (pending, delivered, dead) and retries
 *
 * What differs between databases is a small dialect (sql_dialect): the
 * placeholder style (?1 or $1), type names, INSERT-or-ignore, string
 * aggregation, text search and byte-order comparison, boolean literals,
 * planner hints, RETURNING. Templates name those parts as {TOKEN}s (below)
 * and their parameters as ?N; sql_render turns a template into the
 * dialect's text. A backend then owns only its connections and what is its
 * database's own: opening, pragmas, the WAL and checkpoints for SQLite, the
 * calls that prepare, bind, step and read rows.
 *
 * Memory: a sql_builder owns its text, its values and the texts it made for
 * them (sql_builder_free); everything else it points to is borrowed from
 * the query and must live until the statement has run. sql_render and
 * sql_migration return malloc'd text.
 */
#ifndef GATEWAY_STORE_SQL_H
#define GATEWAY_STORE_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/store/store.h"

/* ---- The dialect ------------------------------------------------------------------------ */

/*
 * Template tokens and the dialect field each stands for:
 *   {INT} int_type, {ROWID} row_id, {REAL} real_type, {WITHOUT_ROWID}
 *   without_rowid, {INSERT_IGNORE} insert_ignore, {ON_CONFLICT_IGNORE}
 *   on_conflict_ignore, {AGG} string_agg, {US} unit_separator,
 *   {BEGIN_WRITE} begin_write, {RETURNING_RID} and {RETURNING_SEQ}
 *   (" RETURNING rid"/" RETURNING seq" when returning, else nothing).
 */
typedef struct sql_dialect {
    const char *name;
    char placeholder;               /* '?' (SQLite: ?1 in fixed text, ? in built text) or '$' ($1 everywhere) */
    const char *begin_write;        /* the batch transaction: "BEGIN IMMEDIATE" takes SQLite's write lock at once */
    const char *int_type;           /* 64-bit integers: "INTEGER" | "BIGINT" */
    const char *row_id;             /* a generated key: "INTEGER PRIMARY KEY" | "BIGINT GENERATED ... PRIMARY KEY" */
    const char *real_type;          /* "REAL" | "DOUBLE PRECISION" */
    const char *without_rowid;      /* after a table with a primary key: " WITHOUT ROWID" | "" */
    const char *insert_ignore;      /* "INSERT OR IGNORE INTO" | "INSERT INTO" */
    const char *on_conflict_ignore; /* "" | " ON CONFLICT DO NOTHING" */
    const char *string_agg;         /* texts joined with a separator: "group_concat" | "string_agg" */
    const char *unit_separator;     /* the character 31 as an expression: "char(31)" | "chr(31)" */
    const char *find_text;          /* position of the second text in the first, 0 when absent: "instr" | "strpos" */
    const char *byte_order;    /* after a text comparison, to compare bytes: "" (SQLite's BINARY) | " COLLATE \"C\"" */
    const char *no_index;      /* before a column, keeps the planner off its index: "+" | "" */
    const char *true_literal;  /* "1" | "TRUE" */
    const char *false_literal; /* "0" | "FALSE" */
    bool returning;            /* inserts return their key (RETURNING); else the driver asks for it */
} sql_dialect;

/* The template with the dialect's tokens and placeholders; malloc'd, NULL when out of memory. */
char *sql_render(const sql_dialect *d, const char *template_text);

/* ---- The schema ------------------------------------------------------------------------- */

#define SQL_SCHEMA_VERSION 6

/* The steps of the schema: step v (1..SQL_SCHEMA_VERSION) takes a database from version v - 1 to v.
 * Rendered for the dialect, malloc'd; one or more statements separated by ';'. */
char *sql_migration(const sql_dialect *d, int step);

/* The table that records the schema version, reading it, and recording step v (malloc'd). */
#define SQL_SCHEMA_VERSION_TABLE "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
#define SQL_SCHEMA_VERSION_READ "SELECT coalesce(max(version), 0) FROM schema_version"
char *sql_schema_version_record(int version);

/* ---- Fixed statements ------------------------------------------------------------------- */

typedef enum sql_fixed {
    SQL_BEGIN_BATCH,
    SQL_COMMIT_BATCH,
    SQL_ROLLBACK_BATCH,
    SQL_SAVEPOINT,
    SQL_RELEASE,
    SQL_ROLLBACK_TO,
    SQL_BEGIN_READ,
    SQL_END_READ,
    SQL_FIND_RESOURCE,   /* (type, id) -> rid, version, deleted, last_updated */
    SQL_INSERT_RESOURCE, /* (type, id, owner) */
    SQL_UPDATE_RESOURCE, /* (rid, version, last_updated, deleted, current_seq) */
    SQL_INSERT_VERSION,  /* (rid, type, id, version, last_updated, method, json, tags) */
    SQL_DELETE_TAGS,     /* (rid) */
    SQL_INSERT_TAG,      /* (rid, tag) */
    SQL_INSERT_STRING,   /* index rows: see sql_index_row */
    SQL_INSERT_TOKEN,
    SQL_INSERT_REFERENCE,
    SQL_INSERT_DATE,
    SQL_INSERT_NUMBER,
    SQL_INSERT_URI,
    SQL_DELETE_STRING, /* (rid), one per index table, SQL_DELETE_STRING..SQL_DELETE_URI */
    SQL_DELETE_TOKEN,
    SQL_DELETE_REFERENCE,
    SQL_DELETE_DATE,
    SQL_DELETE_NUMBER,
    SQL_DELETE_URI,
    SQL_READ_CURRENT,    /* (type, id) -> the page columns up to SQL_COL_TAGS */
    SQL_READ_VERSION,    /* (type, id, version) -> likewise */
    SQL_DELETE_GRANTS,   /* (grantor rid) */
    SQL_INSERT_GRANT,    /* (grantor rid, target type, tag, target id) */
    SQL_LAST_SEQ,        /* -> the newest change sequence, 0 when none */
    SQL_INSERT_AUDIT,    /* the sql_audit_col columns, in order */
    SQL_AUDIT_HEAD,      /* -> seq, mac of the newest audit entry (no row: empty) */
    SQL_AUDIT_GET,       /* (seq) -> the sql_audit_col columns */
    SQL_AUDIT_AFTER,     /* (after seq, limit) -> rows in seq order, every organisation's */
    SQL_AUDIT_OF_BEFORE, /* (ura, before seq, limit) -> an organisation's rows, newest first */
    SQL_LOGGED_BODIES,   /* (rid): the versions' bodies that are locators of the document log (doc_log.h) */
    SQL_ERASE_BODIES,    /* (rid): ST_OP_PURGE, every version loses its body */
    SQL_ALL_LOGGED,      /* every locator of the document log a version names (version_in_log), for a reclaim */
    SQL_FIXED_COUNT
} sql_fixed;

/* A fixed statement as the dialect writes it; malloc'd (prepare it once per connection). */
char *sql_fixed_text(const sql_dialect *d, sql_fixed which);

/* The columns of reads, search pages, includes and history pages, in this order. */
enum {
    SQL_COL_TYPE,
    SQL_COL_ID,
    SQL_COL_VERSION,
    SQL_COL_LAST_UPDATED,
    SQL_COL_METHOD,
    SQL_COL_JSON, /* NULL for a deletion */
    SQL_COL_OWNER,
    SQL_COL_TAGS, /* joined by ST__TAG_SEPARATOR; NULL when none */
    SQL_COL_KEY,  /* search pages and includes: the row's sort key (keyset paging) */
    SQL_COL_RID   /* search pages and includes: its resource row */
};

/* The columns of the audit statements (SQL_AUDIT_GET/AFTER/OF_BEFORE), and SQL_INSERT_AUDIT's parameters. */
enum {
    SQL_AU_SEQ,
    SQL_AU_TIME,
    SQL_AU_KEY_ID,
    SQL_AU_URA,
    SQL_AU_ORG_NAME,
    SQL_AU_CERT_FP,
    SQL_AU_ON_BEHALF,
    SQL_AU_REQUEST_ID,
    SQL_AU_INTERACTION,
    SQL_AU_ACTION,
    SQL_AU_TYPE,
    SQL_AU_RES_ID,
    SQL_AU_VERSION,
    SQL_AU_PATIENT,
    SQL_AU_WHERE,
    SQL_AU_DECISION,
    SQL_AU_STATUS,
    SQL_AU_MAC,
    SQL_AU_COLUMNS
};

/* ---- The relay queue's statements (kept apart from the fixed ones: the queue is its own concern) ---- */

typedef enum sql_notify_stmt {
    SQL_NOTIFY_RECEIVER,         /* (ura, since) a receiver's counter row, if it has none */
    SQL_NOTIFY_NEXT_NUMBER,      /* (ura) its counter + 1 */
    SQL_NOTIFY_LAST_NUMBER,      /* (ura) -> the counter */
    SQL_NOTIFY_INSERT,           /* the sql_notify_col columns from SQL_NT_RECEIVER on, in order */
    SQL_NOTIFY_UPDATE,           /* (seq, state, next_attempt, last_attempt, http_status, error); pending rows only */
    SQL_NOTIFY_DUE_HEADS,        /* (limit) -> each receiver's oldest pending row, soonest next attempt first */
    SQL_NOTIFY_OF_RECEIVER,      /* (ura, limit, from, to) -> its rows by event number, from..to */
    SQL_NOTIFY_OF_RECEIVER_DESC, /* the same, newest first */
    SQL_NOTIFY_PENDING_OF,       /* (ura, limit) -> its pending rows by event number */
    SQL_NOTIFY_ALL,              /* (limit) -> rows by seq */
    SQL_NOTIFY_COUNTS,           /* -> state, count */
    SQL_NOTIFY_PRUNE,            /* (seq, done before) the older delivered rows of seq's receiver */
    SQL_NOTIFY_JUMP,             /* (n) every receiver's counter + n: a backup's copy (st_backup) */
    SQL_NOTIFY_COUNT
} sql_notify_stmt;

/* The columns of relay_notification rows as the reads return them (and SQL_NOTIFY_INSERT's order from
 * SQL_NT_RECEIVER to SQL_NT_ERROR). */
enum {
    SQL_NT_SEQ,
    SQL_NT_RECEIVER,
    SQL_NT_EVENT_NUMBER,
    SQL_NT_EVENT,
    SQL_NT_FOCUS_TYPE,
    SQL_NT_FOCUS_ID,
    SQL_NT_FOCUS_VERSION,
    SQL_NT_CREATED,
    SQL_NT_STATE,
    SQL_NT_ATTEMPTS,
    SQL_NT_NEXT_ATTEMPT,
    SQL_NT_LAST_ATTEMPT,
    SQL_NT_DONE,
    SQL_NT_HTTP_STATUS,
    SQL_NT_ERROR,
    SQL_NT_COLUMNS
};

/* A relay queue statement as the dialect writes it; malloc'd (prepare it once per connection). */
char *sql_notify_text(const sql_dialect *d, sql_notify_stmt which);

/* ---- Values and built statements -------------------------------------------------------- */

typedef enum sql_value_kind { SQL_NULL, SQL_TEXT, SQL_INT, SQL_REAL } sql_value_kind;

/* One bound value: texts are borrowed (NUL-terminated, or `len` bytes when len > 0). */
typedef struct sql_value {
    sql_value_kind kind;
    const char *text;
    size_t len;
    int64_t integer;
    double real;
} sql_value;

static inline sql_value sql_text(const char *text)
{
    return (sql_value){.kind = SQL_TEXT, .text = text};
}
static inline sql_value sql_int(int64_t value)
{
    return (sql_value){.kind = SQL_INT, .integer = value};
}
/* NULL for a NULL or empty text (optional columns store NULL, never "") */
static inline sql_value sql_text_or_null(const char *text)
{
    return text && *text ? sql_text(text) : (sql_value){.kind = SQL_NULL};
}

/* A statement being built: its text and the values of its placeholders, in order. */
typedef struct sql_builder {
    const sql_dialect *dialect;
    char *text;
    size_t len, cap;
    sql_value *binds;
    size_t bind_count, bind_cap;
    char **owned; /* texts made for values (normalised strings), freed with the builder */
    size_t owned_count, owned_cap;
    bool oom;
} sql_builder;

void sql_builder_init(sql_builder *b, const sql_dialect *d);
void sql_builder_free(sql_builder *b);

/* The count of a search: "SELECT count(*) ...". ST_INVALID for what the store cannot answer. */
st_status sql_build_search_total(sql_builder *b, const st_query *q);
/* A page of a search (one row more than the page in the keyset order: is there a next?), page columns. */
st_status sql_build_search_page(sql_builder *b, const st_query *q);
/* If-None-Exist: up to two matches' id, version, last_updated, on the writer's view. */
st_status sql_build_conditional_create(sql_builder *b, const st_query *q);
/* A history's total, and a page of it (page columns up to SQL_COL_TAGS). rid 0: type or system level. */
st_status sql_build_history_total(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto);
st_status sql_build_history_page(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto);

/* The page size a query asks for (page_size_default when it asks none). */
size_t sql_page_size(const st_query *q);

/* ---- Writing ---------------------------------------------------------------------------- */

#define SQL_INDEX_VALUES_MAX 7

/*
 * The insert of one index row of resource `rid` of `type`: the statement and
 * its values (rid, type, param, the kind's own, then personal). String rows carry
 * their normalised form, made here: *owned is then malloc'd text the caller
 * frees after running the statement (NULL otherwise). False for a row
 * without a parameter or of an unknown kind (ST_INVALID), or out of memory
 * (*owned NULL for a string row: ST_INTERNAL).
 */
bool sql_index_row(const st_index_row *row, int64_t rid, const char *type, sql_fixed *which,
                   sql_value values[SQL_INDEX_VALUES_MAX], size_t *count, char **owned);

/* A version's access tags as stored: joined by ST__TAG_SEPARATOR, "" for none; malloc'd. */
char *sql_join_tags(const char *const *tags, size_t count);

/* ---- Search and history over a backend's reader ----------------------------------------- */

/* The sort key and resource row of each row collected, in step with the list. */
typedef struct sql_row_keys {
    int64_t *keys, *rids;
    size_t count, cap;
} sql_row_keys;

void sql_row_keys_free(sql_row_keys *k);
/* Appends one row's key and rid; false when out of memory. */
bool sql_row_keys_push(sql_row_keys *k, int64_t key, int64_t rid);

/*
 * What the shared search and history need from a backend: one connection,
 * inside a read transaction the backend opened (so that a count and its
 * page agree).
 */
typedef struct sql_reader {
    void *conn;
    /* Runs b, appending each row (the page columns) to out, growing out->items with *capacity; with keys,
     * each row's SQL_COL_KEY and SQL_COL_RID are pushed too. */
    st_status (*collect)(void *conn, const sql_builder *b, st_list *out, size_t *capacity, sql_row_keys *keys,
                         st_error *err);
    /* Runs b, whose one row holds one integer. */
    st_status (*scalar)(void *conn, const sql_builder *b, int64_t *value, st_error *err);
} sql_reader;

/* The total (want_total), the page and its includes of q into out (out->snapshot is the caller's). */
st_status sql_search(const sql_reader *r, const sql_dialect *d, const st_query *q, st_list *out, st_error *err);
/* The total and a page of a history at change sequence out->snapshot; rid 0: type or system level. */
st_status sql_history(const sql_reader *r, const sql_dialect *d, const st_history_query *q, int64_t rid, st_list *out,
                      st_error *err);

#endif
