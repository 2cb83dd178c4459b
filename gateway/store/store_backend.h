/*
 * gateway/store/store_backend.h — what a storage backend implements, and the
 * helpers store.c offers it. Internal to the store: only store.c and the
 * backend files (store_sqlite.c, later store_pg.c) include this.
 *
 * store.c owns everything backend-independent: the queue, the commit thread
 * and its batching, the read-connection pool, timestamps, the meta splice,
 * result memory, counters. The SQL any SQL backend needs (schema, fixed
 * statements, search and history built from queries, index row values) is
 * in store_sql.h, written once and parameterised by a dialect. A backend
 * owns its connections and runs that SQL:
 *
 *   - one writer handle, used only by the commit thread: begin_batch, then
 *     per submitted transaction begin_txn / apply... / end_txn (a savepoint
 *     kept or rolled back), then commit_batch (durable when it returns OK,
 *     or, for a backend that makes durable later, once make_durable has
 *     returned OK on the store's sync thread) or rollback_batch;
 *   - reader handles, each used by one thread at a time (store.c pools
 *     them), for read/history/search. A reader sees committed data only.
 *
 * apply() must evaluate if_none_exist, If-Match and existence on the
 * writer's own (uncommitted) view, so that operations earlier in the batch
 * count; it fills the st_op_result and returns nothing else. ST_OP_PURGE
 * erases every version's body (a version without a body that is not a
 * deletion reads as deleted: store.c says so). A result
 * status other than ST_OK/ST_EXISTS rolls back the submitted transaction.
 */
#ifndef GATEWAY_STORE_BACKEND_H
#define GATEWAY_STORE_BACKEND_H

#include "gateway/store/store.h"

/* Handed to apply(): where versions get their time and their bytes. */
typedef struct st_write_ctx st_write_ctx;

/* The lastUpdated of the next version: the config's clock, never going backwards. */
int64_t st__stamp(st_write_ctx *ctx);

/*
 * The final stored body of a version of op (splice or render callback, then
 * sealed when the store seals op->type); malloc'd, *len bytes plus a NUL.
 * NULL with res->status/message set on failure.
 */
char *st__render(st_write_ctx *ctx, const st_op *op, int64_t version, const char *last_updated, size_t *len,
                 st_op_result *res);

/* ST_OP_PURGE: a stored body about to be erased, as the row holds it. A locator of the document log has its
 * record freed once the batch is durable (nothing happens when the savepoint is rolled back). */
void st__body_erased(st_write_ctx *ctx, const char *body, size_t len);

/* Whether an index row of op is written (sealed types keep only what access needs: store.h). */
bool st__index_row_kept(st_write_ctx *ctx, const st_op *op, const st_index_row *row);

/*
 * Fills out with one version, copying everything into one block. tags are
 * joined by ST__TAG_SEPARATOR (NULL or "" for none); json may be NULL.
 * Returns false when out of memory.
 */
#define ST__TAG_SEPARATOR '\x1f'
bool st__resource_fill(st_resource *out, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                       st_method method, const char *json, size_t json_len, const char *owner, const char *tags);

/* Appends a slot to list->items (zeroed); NULL when out of memory. */
st_resource *st__list_push(st_list *list, size_t *capacity);

/* printf into err (NULL is fine). */
void st__error(st_error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));
void st__result_message(st_op_result *res, st_status status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct st_backend {
    const char *name;
    /* Every commit to the database is this process's (one gateway per database): reads of the directory may
     * then be answered from memory (read_cache.h). False for a database several instances write. */
    bool sole_writer;
    /* The writer: opens, creates or migrates the schema. */
    void *(*open_writer)(const st_config *config, st_error *err);
    void (*close_writer)(void *writer);
    void *(*open_reader)(const st_config *config, st_error *err);
    void (*close_reader)(void *reader);

    st_status (*begin_batch)(void *writer, st_error *err);
    /* Durable when it returns OK, unless durable_later: then visible to readers, and durable only once
     * make_durable has returned OK. */
    st_status (*commit_batch)(void *writer, st_error *err);
    /* Whether commits need make_durable (NULL: never). Fixed from open_writer to close_writer. */
    bool (*durable_later)(void *writer);
    /* Makes every commit_batch that returned before this call durable. Called from another thread than the
     * writer's, concurrently with the writer's next batch; one call at a time. Not ST_OK: durability of what
     * was committed since the last success is unknown. */
    st_status (*make_durable)(void *writer, st_error *err);
    void (*rollback_batch)(void *writer);
    st_status (*begin_txn)(void *writer, st_error *err);
    /* Releases (keep) or rolls back the savepoint. Not ST_OK: the batch transaction itself is gone
     * (SQLite rolls back everything on some I/O errors), and the whole batch must fail. */
    st_status (*end_txn)(void *writer, bool keep, st_error *err);
    void (*apply)(void *writer, st_write_ctx *ctx, const st_op *op, st_op_result *res);
    /* After a batch's callbacks have run: housekeeping that must not delay acknowledgements. */
    void (*maintain)(void *writer);

    /* The audit chain: its last entry (seq 0 when empty), on the writer; append one sealed entry (res filled). */
    st_status (*audit_head)(void *writer, au_head *out, st_error *err);
    void (*append_audit)(void *writer, const au_entry *entry, const unsigned char mac[AU_MAC_LEN], st_op_result *res);
    /* Entries as st_audit_list asks (seq > 0: just that one, by st_audit_get); *rows malloc'd. */
    st_status (*audit_read)(void *reader, const st_audit_query *query, int64_t seq, st_audit_row **rows, size_t *count,
                            st_error *err);

    /* The relay queue, on the writer: queue n about the write `written` (an operation on `type` that wrote),
     * numbering it for its receiver (res->version = the event number); record an attempt (res filled). */
    void (*notify_enqueue)(void *writer, st_write_ctx *ctx, const st_notify *n, const char *type,
                           const st_op_result *written, st_op_result *res);
    void (*notify_update)(void *writer, st_write_ctx *ctx, const st_notify *n, st_op_result *res);
    /* ... and on a reader: rows as st_notify_list asks (*rows malloc'd), the count per state */
    st_status (*notify_read)(void *reader, const st_notify_query *query, st_notification **rows, size_t *count,
                             st_error *err);
    st_status (*notify_counts)(void *reader, int64_t counts[ST_NOTIFY_STATES], st_error *err);

    /* version 0: the current one */
    st_status (*read)(void *reader, const char *type, const char *id, int64_t version, st_resource *out, st_error *err);
    st_status (*history)(void *reader, const st_history_query *query, st_list *out, st_error *err);
    st_status (*search)(void *reader, const st_query *query, st_list *out, st_error *err);

    /* Calls each(arg, body, len) for every version body that is a locator of the document log (doc_log.h), on
     * the writer before it serves: what a reclaim must keep. NULL: the backend keeps no document log. */
    st_status (*each_logged_body)(void *writer, void (*each)(void *arg, const char *body, size_t len), void *arg,
                                  st_error *err);

    /* st_backup's database part: a consistent copy (one moment) of the database into the new file to_path, while
     * others may write; *bytes its size. NULL: the backend's database is backed up by its own tools. */
    st_status (*backup)(const st_config *config, const char *to_path, uint64_t *bytes, st_error *err);
} st_backend;

extern const st_backend st_sqlite_backend;
/* Its SQL dialect (store_sql.h), for tests that read the plans of its statements. */
extern const struct sql_dialect st_sqlite_dialect;

#endif
