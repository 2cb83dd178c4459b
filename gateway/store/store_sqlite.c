/*
 * gateway/store/store_sqlite.c — the SQLite backend of the store (see store.h and
 * store_backend.h for the contract).
 *
 * The tables and every statement are in store_sql.c, shared with any other
 * SQL backend; this file is what is SQLite's own: the dialect, connections
 * and their pragmas, WAL mode and the checkpointer thread, preparing,
 * binding and stepping statements, and the write path over them.
 *
 * Connections: one writer, used by the commit thread only, and readers, one
 * per thread at a time, all in WAL mode so that readers never wait for the
 * writer. Every connection caches its prepared statements: the fixed ones in
 * an array by name, the search and history ones (whose text depends on the
 * query's shape) in a small LRU cache keyed by their SQL text.
 *
 * Durability: journal_mode=WAL with synchronous=FULL syncs the WAL on every
 * COMMIT, so a commit that returned SQLITE_OK survives a crash or power loss.
 * With the checkpointer running, the writer defers that sync (wal_buffer.h):
 * COMMIT returns once the frames are in the file, and make_durable, on the
 * store's sync thread, fdatasyncs the WAL through a descriptor of its own
 * while the writer goes on with the next batch.
 */
#include "gateway/store/store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/array.h"
#include "gateway/store/store_sql.h"
#include "gateway/store/wal_buffer.h"
#include "gateway/util/hex.h"
#include "gateway/util/thread_name.h"

#define DYNAMIC_CACHE_SIZE LIM(store_statement_cache)
#define CHECKPOINT_PAGES LIM(store_checkpoint_pages) /* SQLite's own default threshold */
#define WAL_SIZE_LIMIT LIM(store_wal_size_limit)     /* truncate a WAL left larger than this after a checkpoint */

/* SQLite's SQL (see sql_dialect). */
const sql_dialect st_sqlite_dialect = {
    .name = "sqlite",
    .placeholder = '?',
    .begin_write = "BEGIN IMMEDIATE", /* the write lock at once, not at the first write (no upgrade deadlocks) */
    .int_type = "INTEGER",
    .row_id = "INTEGER PRIMARY KEY", /* the rowid itself */
    .real_type = "REAL",
    .without_rowid = " WITHOUT ROWID",
    .insert_ignore = "INSERT OR IGNORE INTO",
    .on_conflict_ignore = "",
    .string_agg = "group_concat",
    .unit_separator = "char(31)",
    .find_text = "instr",
    .byte_order = "", /* BINARY, the default collation, compares bytes */
    .no_index = "+",  /* unary plus: the planner, which has no statistics, ignores the column's index */
    .true_literal = "1",
    .false_literal = "0",
    .returning = false, /* sqlite3_last_insert_rowid, which every SQLite version has */
};

typedef struct cached_stmt {
    char *sql;
    sqlite3_stmt *stmt;
    uint64_t last_used;
} cached_stmt;

struct checkpointer;

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *fixed[SQL_FIXED_COUNT];
    sqlite3_stmt *notify[SQL_NOTIFY_COUNT]; /* the relay queue's statements, prepared on first use */
    cached_stmt dynamic[DYNAMIC_CACHE_SIZE];
    uint64_t tick;
    int wal_pages;                     /* writer: pages in the WAL after the last commit */
    struct checkpointer *checkpointer; /* writer: the thread that checkpoints the WAL */
    int wal_fd;                        /* writer with deferred syncs: the WAL, for make_durable; else -1 */
} conn;

static st_status status_of(int rc)
{
    switch (rc & 0xFF) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return ST_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return ST_BUSY;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL: return ST_IO;
    case SQLITE_CONSTRAINT: return ST_CONFLICT;
    default: return ST_INTERNAL;
    }
}

/* A fixed statement, prepared on first use, reset and ready to bind. NULL on failure. */
static sqlite3_stmt *fixed(conn *c, sql_fixed which)
{
    if (c->fixed[which])
        return c->fixed[which];
    char *sql = sql_fixed_text(&st_sqlite_dialect, which);
    if (!sql || sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->fixed[which], NULL) != SQLITE_OK)
        c->fixed[which] = NULL;
    free(sql);
    return c->fixed[which];
}

/* A statement for generated SQL, from the cache or prepared (evicting the least recently used). */
static sqlite3_stmt *dynamic(conn *c, const char *sql)
{
    cached_stmt *victim = &c->dynamic[0];
    c->tick++;
    for (size_t i = 0; i < DYNAMIC_CACHE_SIZE; i++) {
        cached_stmt *e = &c->dynamic[i];
        if (e->sql && strcmp(e->sql, sql) == 0) {
            e->last_used = c->tick;
            return e->stmt;
        }
        if (e->last_used < victim->last_used)
            victim = e;
    }
    sqlite3_stmt *stmt = NULL;
    char *copy = strdup(sql);
    if (!copy || sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK) {
        free(copy);
        return NULL;
    }
    sqlite3_finalize(victim->stmt);
    free(victim->sql);
    *victim = (cached_stmt){copy, stmt, c->tick};
    return stmt;
}

/* Runs a statement without results (after binding); resets it. */
static int run(sqlite3_stmt *stmt)
{
    if (!stmt)
        return SQLITE_ERROR;
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void finish(sqlite3_stmt *stmt)
{
    if (stmt) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
}

/* Binds values[0..count) to parameters 1..count (texts borrowed: they must outlive the step). */
static void bind_values(sqlite3_stmt *stmt, const sql_value *values, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const sql_value *v = &values[i];
        int at = (int)i + 1;
        switch (v->kind) {
        case SQL_NULL: sqlite3_bind_null(stmt, at); break;
        case SQL_TEXT: sqlite3_bind_text(stmt, at, v->text, v->len ? (int)v->len : -1, SQLITE_STATIC); break;
        case SQL_INT: sqlite3_bind_int64(stmt, at, v->integer); break;
        case SQL_REAL: sqlite3_bind_double(stmt, at, v->real); break;
        }
    }
}

static void conn_close(conn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < SQL_FIXED_COUNT; i++)
        sqlite3_finalize(c->fixed[i]);
    for (size_t i = 0; i < SQL_NOTIFY_COUNT; i++)
        sqlite3_finalize(c->notify[i]);
    for (size_t i = 0; i < DYNAMIC_CACHE_SIZE; i++) {
        sqlite3_finalize(c->dynamic[i].stmt);
        free(c->dynamic[i].sql);
    }
    sqlite3_close(c->db);
    if (c->wal_fd >= 0)
        close(c->wal_fd);
    free(c);
}

static int exec_pragma(conn *c, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int exec_pragma(conn *c, const char *format, ...)
{
    char sql[128];
    va_list ap;
    va_start(ap, format);
    vsnprintf(sql, sizeof sql, format, ap);
    va_end(ap);
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/*
 * Before SQLite's first use: no allocation statistics. With them (SQLite's
 * default) every allocation and free of every connection takes one global
 * mutex, which the commit thread then waits for behind the readers of the
 * worker threads. The store asks SQLite for none of the figures. Too late
 * (SQLite already in use in this process) only leaves the default.
 */
static void configure_library(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* What a connection is for: it decides its VFS and pragmas. */
typedef enum { CONN_READER, CONN_WRITER, CONN_CHECKPOINTER } conn_role;

/* The gathering VFS (wal_buffer.h) for the connections that write, safe with FULL only; NULL: the default. */
static const char *vfs_for(const st_config *config, conn_role role)
{
    if (config->synchronous_normal || role == CONN_READER)
        return NULL;
    return role == CONN_CHECKPOINTER ? wb_checkpointer_vfs_name() : wb_vfs_name();
}

static conn *conn_open(const st_config *config, conn_role role, st_error *err)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, configure_library);
    bool writer = role != CONN_READER;
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        st__error(err, "out of memory");
        return NULL;
    }
    c->wal_fd = -1;
    /* each connection is used by one thread at a time: no per-connection mutex needed */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(config->path, &c->db, flags, vfs_for(config, role));
    if (rc != SQLITE_OK) {
        st__error(err, "%s: %s", config->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return NULL;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, (int)config->busy_timeout_ms);
    rc = exec_pragma(c, "PRAGMA synchronous=%s", config->synchronous_normal ? "NORMAL" : "FULL");
    if (rc == SQLITE_OK)
        rc = exec_pragma(c, "PRAGMA cache_size=-%d", LIM(store_cache_bytes) / 1024); /* negative: KiB */
    if (rc == SQLITE_OK && !writer)
        rc = exec_pragma(c, "PRAGMA query_only=1");
    /* Each transaction of a batch runs in a savepoint, whose sub-journal keeps the pages it
     * changes that existed before it, for a rollback of that transaction alone. On a file it
     * cost a write(2) per page (a handover's document: 13); in memory it is a copy, freed
     * when the savepoint is released, so it holds at most one transaction's pages. */
    if (rc == SQLITE_OK && writer)
        rc = exec_pragma(c, "PRAGMA temp_store=MEMORY");
    if (rc != SQLITE_OK) {
        st__error(err, "%s: %s", config->path, sqlite3_errmsg(c->db));
        conn_close(c);
        return NULL;
    }
    return c;
}

/* ---- Opening: WAL and the schema ------------------------------------------------------ */

static int schema_version(conn *c, int *version)
{
    sqlite3_stmt *stmt;
    int rc = sqlite3_exec(c->db, SQL_SCHEMA_VERSION_TABLE, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(c->db, SQL_SCHEMA_VERSION_READ, -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(stmt);
    *version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* One migration step and its record, in one transaction. */
static bool migrate_step(conn *c, int step)
{
    char *sql = sql_migration(&st_sqlite_dialect, step), *record = sql_schema_version_record(step);
    bool ok = sql && record && sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(c->db, sql, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(c->db, record, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
    free(sql);
    free(record);
    return ok;
}

/* Each step in its own transaction, so a crash mid-way leaves a consistent older version. */
static bool migrate(conn *c, st_error *err)
{
    int version = 0;
    if (schema_version(c, &version) != SQLITE_OK) {
        st__error(err, "reading the schema version: %s", sqlite3_errmsg(c->db));
        return false;
    }
    if (version > SQL_SCHEMA_VERSION) {
        st__error(err, "the database has schema version %d; this program knows up to %d", version, SQL_SCHEMA_VERSION);
        return false;
    }
    for (int v = version; v < SQL_SCHEMA_VERSION; v++)
        if (!migrate_step(c, v + 1)) {
            st__error(err, "schema migration to version %d: %s", v + 1, sqlite3_errmsg(c->db));
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return false;
        }
    return true;
}

static int note_wal_size(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db, (void)name;
    ((conn *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

/*
 * Checkpoints are ours, not SQLite's: its automatic checkpoint runs inside
 * COMMIT, so one commit in every few hundred would carry the cost of copying
 * the WAL into the database and syncing it. Instead a checkpointer thread
 * with a connection of its own does it: the commit thread only notes that the
 * WAL has grown (maintain) and wakes it. A PASSIVE checkpoint never waits for
 * readers or the writer, so commits go on while it copies.
 */
typedef struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool wanted, stop;
    conn *conn;
} checkpointer;

static void *checkpoint_loop(void *arg)
{
    checkpointer *k = arg;
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->wanted && !k->stop)
            pthread_cond_wait(&k->wake, &k->lock);
        if (k->stop)
            break;
        k->wanted = false;
        pthread_mutex_unlock(&k->lock);
        sqlite3_wal_checkpoint_v2(k->conn->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Start the checkpointer; without one (it could not start) the writer checkpoints itself. */
static void start_checkpointer(conn *writer, const st_config *config)
{
    st_error ignored;
    checkpointer *k = calloc(1, sizeof *k);
    if (!k || !(k->conn = conn_open(config, CONN_CHECKPOINTER, &ignored))) {
        free(k);
        return;
    }
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->wake, NULL);
    if (pthread_create(&k->thread, NULL, checkpoint_loop, k) != 0) {
        conn_close(k->conn);
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->wake);
        free(k);
        return;
    }
    tn_name(k->thread, "store-ckpt");
    writer->checkpointer = k;
}

static void stop_checkpointer(conn *writer)
{
    checkpointer *k = writer->checkpointer;
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    conn_close(k->conn);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->wake);
    free(k);
    writer->checkpointer = NULL;
}

static bool take_over_checkpoints(conn *c)
{
    sqlite3_wal_hook(c->db, note_wal_size, c);
    return exec_pragma(c, "PRAGMA journal_size_limit=%d", WAL_SIZE_LIMIT) == SQLITE_OK;
}

static void maintain(void *writer)
{
    conn *c = writer;
    if (c->wal_pages < CHECKPOINT_PAGES)
        return;
    c->wal_pages = 0;
    checkpointer *k = c->checkpointer;
    if (!k) {
        /* PASSIVE: copies what no reader still needs and never waits for readers */
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return;
    }
    pthread_mutex_lock(&k->lock);
    k->wanted = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
}

/*
 * The writer's WAL syncs move to the store's sync thread (make_durable), but
 * only with the checkpointer running: a checkpoint on the writer itself would
 * need its sync before copying frames. With synchronous=NORMAL nothing is
 * synced anyway. Without a descriptor of its own the writer syncs as before.
 */
static void defer_syncs(conn *c, const st_config *config)
{
    if (!c->checkpointer || config->synchronous_normal)
        return;
    char path[4096];
    if (snprintf(path, sizeof path, "%s-wal", config->path) >= (int)sizeof path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (!wb_defer_wal_syncs(c->db, true)) {
        close(fd);
        return;
    }
    c->wal_fd = fd;
}

static void *open_writer(const st_config *config, st_error *err)
{
    conn *c = conn_open(config, CONN_WRITER, err);
    if (!c)
        return NULL;
    sqlite3_stmt *stmt = NULL;
    bool wal = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL) == SQLITE_OK &&
               sqlite3_step(stmt) == SQLITE_ROW &&
               sqlite3_stricmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
    sqlite3_finalize(stmt);
    if (!wal) {
        st__error(err, "%s: cannot switch to WAL mode: %s", config->path, sqlite3_errmsg(c->db));
        conn_close(c);
        return NULL;
    }
    if (!migrate(c, err)) {
        conn_close(c);
        return NULL;
    }
    /* registering the hook also switches SQLite's automatic checkpoint off */
    if (!take_over_checkpoints(c)) {
        st__error(err, "%s: %s", config->path, sqlite3_errmsg(c->db));
        conn_close(c);
        return NULL;
    }
    start_checkpointer(c, config);
    defer_syncs(c, config);
    return c;
}

static void close_writer(void *writer)
{
    conn *c = writer;
    if (c->wal_fd >= 0)
        wb_defer_wal_syncs(c->db, false); /* closing checkpoints: that must sync the WAL first, for real */
    stop_checkpointer(c);
    conn_close(c);
}

static bool durable_later(void *writer)
{
    return ((conn *)writer)->wal_fd >= 0;
}

/* On the store's sync thread, while the writer may be in the next batch: everything COMMIT wrote, on disk. */
static st_status make_durable(void *writer, st_error *err)
{
    conn *c = writer;
    if (fdatasync(c->wal_fd) == 0)
        return ST_OK;
    st__error(err, "syncing the write-ahead log failed: %s", strerror(errno));
    return ST_IO;
}

static void *open_reader(const st_config *config, st_error *err)
{
    return conn_open(config, CONN_READER, err);
}

static void close_reader(void *reader)
{
    conn_close(reader);
}

/* ---- Batches and savepoints --------------------------------------------------------------- */

static st_status run_fixed(conn *c, sql_fixed which, st_error *err)
{
    int rc = run(fixed(c, which));
    if (rc != SQLITE_OK) {
        char *sql = sql_fixed_text(&st_sqlite_dialect, which);
        st__error(err, "%s: %s", sql ? sql : "?", sqlite3_errmsg(c->db));
        free(sql);
        return status_of(rc) == ST_OK ? ST_INTERNAL : status_of(rc);
    }
    return ST_OK;
}

static st_status begin_batch(void *writer, st_error *err)
{
    return run_fixed(writer, SQL_BEGIN_BATCH, err);
}

static st_status commit_batch(void *writer, st_error *err)
{
    return run_fixed(writer, SQL_COMMIT_BATCH, err);
}

static void rollback_batch(void *writer)
{
    conn *c = writer;
    if (!sqlite3_get_autocommit(c->db)) /* a failed COMMIT may already have rolled back */
        run_fixed(c, SQL_ROLLBACK_BATCH, NULL);
}

static st_status begin_txn(void *writer, st_error *err)
{
    return run_fixed(writer, SQL_SAVEPOINT, err);
}

static st_status end_txn(void *writer, bool keep, st_error *err)
{
    conn *c = writer;
    if (!keep)
        run_fixed(c, SQL_ROLLBACK_TO, NULL);
    run_fixed(c, SQL_RELEASE, NULL);
    /*
     * After some errors (disk full, I/O) SQLite rolls back the whole
     * transaction by itself. Then earlier transactions of this batch are
     * gone too, and later ones would run outside it: say so, so that the
     * batch fails as a whole rather than acknowledging lost writes.
     */
    if (sqlite3_get_autocommit(c->db)) {
        st__error(err, "the batch transaction was rolled back: %s", sqlite3_errmsg(c->db));
        return ST_IO;
    }
    return ST_OK;
}

/* ---- Reading rows into results -------------------------------------------------------------- */

/* Columns SQL_COL_TYPE .. SQL_COL_TAGS. */
static bool fill_from_row(sqlite3_stmt *stmt, st_resource *out)
{
    const char *json = (const char *)sqlite3_column_text(stmt, SQL_COL_JSON);
    size_t json_len = (size_t)sqlite3_column_bytes(stmt, SQL_COL_JSON);
    return st__resource_fill(out, (const char *)sqlite3_column_text(stmt, SQL_COL_TYPE),
                             (const char *)sqlite3_column_text(stmt, SQL_COL_ID),
                             sqlite3_column_int64(stmt, SQL_COL_VERSION),
                             sqlite3_column_int64(stmt, SQL_COL_LAST_UPDATED),
                             (st_method)sqlite3_column_int(stmt, SQL_COL_METHOD), json, json_len,
                             (const char *)sqlite3_column_text(stmt, SQL_COL_OWNER),
                             (const char *)sqlite3_column_text(stmt, SQL_COL_TAGS));
}

static st_status step_error(conn *c, int rc, st_error *err)
{
    st__error(err, "%s", sqlite3_errmsg(c->db));
    st_status s = status_of(rc);
    return s == ST_OK ? ST_INTERNAL : s;
}

static st_status count_rows(conn *c, sqlite3_stmt *stmt, int64_t *total, st_error *err)
{
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW)
        return step_error(c, rc, err);
    *total = sqlite3_column_int64(stmt, 0);
    return ST_OK;
}

static st_status read_resource(void *reader, const char *type, const char *id, int64_t version, st_resource *out,
                               st_error *err)
{
    conn *c = reader;
    sqlite3_stmt *stmt = fixed(c, version ? SQL_READ_VERSION : SQL_READ_CURRENT);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    sqlite3_bind_text(stmt, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    if (version)
        sqlite3_bind_int64(stmt, 3, version);
    int rc = sqlite3_step(stmt);
    st_status status;
    if (rc == SQLITE_DONE)
        status = ST_NOT_FOUND;
    else if (rc != SQLITE_ROW)
        status = step_error(c, rc, err);
    else if (!fill_from_row(stmt, out))
        status = ST_INTERNAL, st__error(err, "out of memory");
    else
        status = out->deleted ? ST_GONE : ST_OK;
    finish(stmt);
    return status;
}

/* ---- Search and history: the shared SQL (store_sql.c) run on this connection ----------------- */

/* A built statement, from the cache or prepared, with its values bound. NULL (err filled) on failure. */
static sqlite3_stmt *prepare_built(conn *c, const sql_builder *b, st_error *err)
{
    sqlite3_stmt *stmt = dynamic(c, b->text);
    if (!stmt) {
        st__error(err, "preparing a query: %s", sqlite3_errmsg(c->db));
        return NULL;
    }
    bind_values(stmt, b->binds, b->bind_count);
    return stmt;
}

/* sql_reader.collect: every row into out (and its key and rid into keys). */
static st_status collect_built(void *connection, const sql_builder *b, st_list *out, size_t *capacity,
                               sql_row_keys *keys, st_error *err)
{
    conn *c = connection;
    sqlite3_stmt *stmt = prepare_built(c, b, err);
    if (!stmt)
        return ST_INTERNAL;
    st_status s = ST_OK;
    int rc;
    while (s == ST_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        st_resource *slot = st__list_push(out, capacity);
        if (slot && !fill_from_row(stmt, slot))
            slot = NULL, out->count--;
        if (!slot || (keys && !sql_row_keys_push(keys, sqlite3_column_int64(stmt, SQL_COL_KEY),
                                                 sqlite3_column_int64(stmt, SQL_COL_RID)))) {
            st__error(err, "out of memory");
            s = ST_INTERNAL;
        }
    }
    if (s == ST_OK && rc != SQLITE_DONE)
        s = step_error(c, rc, err);
    finish(stmt);
    return s;
}

/* sql_reader.scalar: the one integer of the one row. */
static st_status scalar_built(void *connection, const sql_builder *b, int64_t *value, st_error *err)
{
    conn *c = connection;
    sqlite3_stmt *stmt = prepare_built(c, b, err);
    if (!stmt)
        return ST_INTERNAL;
    st_status s = count_rows(c, stmt, value, err);
    finish(stmt);
    return s;
}

/* The change sequence a read starts at: what the next pages of a search or history are pinned to. */
static st_status last_seq(conn *c, int64_t *seq, st_error *err)
{
    sqlite3_stmt *stmt = fixed(c, SQL_LAST_SEQ);
    st_status s = stmt ? count_rows(c, stmt, seq, err) : ST_INTERNAL;
    finish(stmt);
    return s;
}

/* count and page in one read transaction, so that the total matches the page */
static st_status search(void *reader, const st_query *q, st_list *out, st_error *err)
{
    conn *c = reader;
    st_status s = run_fixed(c, SQL_BEGIN_READ, err);
    if (s != ST_OK)
        return s;
    out->snapshot = q->snapshot;
    if (!q->snapshot) /* the change sequence this page reads at, for the next pages */
        s = last_seq(c, &out->snapshot, err);
    sql_reader r = {c, collect_built, scalar_built};
    if (s == ST_OK)
        s = sql_search(&r, &st_sqlite_dialect, q, out, err);
    run_fixed(c, SQL_END_READ, NULL);
    return s;
}

static st_status find_rid(conn *c, const char *type, const char *id, int64_t *rid, st_error *err)
{
    sqlite3_stmt *stmt = fixed(c, SQL_FIND_RESOURCE);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    sqlite3_bind_text(stmt, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    st_status s = rc == SQLITE_ROW ? ST_OK : rc == SQLITE_DONE ? ST_NOT_FOUND : step_error(c, rc, err);
    if (rc == SQLITE_ROW)
        *rid = sqlite3_column_int64(stmt, 0);
    finish(stmt);
    return s;
}

static st_status history(void *reader, const st_history_query *q, st_list *out, st_error *err)
{
    conn *c = reader;
    st_status s = run_fixed(c, SQL_BEGIN_READ, err);
    if (s != ST_OK)
        return s;
    int64_t rid = 0;
    if (q->id)
        s = find_rid(c, q->type, q->id, &rid, err);
    out->snapshot = q->upto;
    if (s == ST_OK && !q->upto)
        s = last_seq(c, &out->snapshot, err);
    sql_reader r = {c, collect_built, scalar_built};
    if (s == ST_OK)
        s = sql_history(&r, &st_sqlite_dialect, q, rid, out, err);
    run_fixed(c, SQL_END_READ, NULL);
    return s;
}

/* ---- Writing --------------------------------------------------------------------------------- */

typedef struct current {
    bool found;
    int64_t rid, version, last_updated;
    bool deleted;
} current;

static int find_current(conn *c, const char *type, const char *id, current *cur)
{
    memset(cur, 0, sizeof *cur);
    sqlite3_stmt *stmt = fixed(c, SQL_FIND_RESOURCE);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_text(stmt, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        cur->found = true;
        cur->rid = sqlite3_column_int64(stmt, 0);
        cur->version = sqlite3_column_int64(stmt, 1);
        cur->deleted = sqlite3_column_int(stmt, 2) != 0;
        cur->last_updated = sqlite3_column_int64(stmt, 3);
    }
    finish(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int insert_index_row(conn *c, int64_t rid, const char *type, const st_index_row *row)
{
    sql_fixed which;
    sql_value values[SQL_INDEX_VALUES_MAX];
    size_t count = 0;
    char *owned = NULL;
    if (!sql_index_row(row, rid, type, &which, values, &count, &owned))
        return row->param && (unsigned)row->kind <= ST_KIND_URI ? SQLITE_NOMEM : SQLITE_MISUSE;
    sqlite3_stmt *stmt = fixed(c, which);
    int rc = SQLITE_OK;
    if (!stmt)
        rc = sqlite3_errcode(c->db);
    else
        bind_values(stmt, values, count), rc = run(stmt);
    free(owned);
    return rc;
}

static int delete_index_rows(conn *c, int64_t rid)
{
    for (sql_fixed d = SQL_DELETE_STRING; d <= SQL_DELETE_URI; d++) {
        sqlite3_stmt *stmt = fixed(c, d);
        if (!stmt)
            return sqlite3_errcode(c->db);
        sqlite3_bind_int64(stmt, 1, rid);
        int rc = run(stmt);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int bind_rid_run(conn *c, sql_fixed which, int64_t rid, const char *text)
{
    sqlite3_stmt *stmt = fixed(c, which);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_int64(stmt, 1, rid);
    if (text)
        sqlite3_bind_text(stmt, 2, text, -1, SQLITE_STATIC);
    return run(stmt);
}

/* The search rows and access tags of a new current version replace the old ones. */
static int write_index(conn *c, st_write_ctx *ctx, const st_op *op, int64_t rid, bool had_rows)
{
    int rc = had_rows ? delete_index_rows(c, rid) : SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < op->row_count; i++)
        if (st__index_row_kept(ctx, op, &op->rows[i]))
            rc = insert_index_row(c, rid, op->type, &op->rows[i]);
    if (rc == SQLITE_OK && had_rows)
        rc = bind_rid_run(c, SQL_DELETE_TAGS, rid, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < op->access_tag_count; i++)
        rc = bind_rid_run(c, SQL_INSERT_TAG, rid, op->access_tags[i]);
    return rc;
}

static int insert_resource(conn *c, const st_op *op, int64_t *rid)
{
    sqlite3_stmt *stmt = fixed(c, SQL_INSERT_RESOURCE);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_text(stmt, 1, op->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, op->owner ? op->owner : "", -1, SQLITE_STATIC);
    int rc = run(stmt);
    *rid = sqlite3_last_insert_rowid(c->db);
    return rc;
}

static int insert_version(conn *c, const st_op *op, int64_t rid, int64_t version, int64_t stamp, st_method method,
                          const char *json, size_t json_len, int64_t *seq)
{
    sqlite3_stmt *stmt = fixed(c, SQL_INSERT_VERSION);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_int64(stmt, 1, rid);
    sqlite3_bind_text(stmt, 2, op->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, version);
    sqlite3_bind_int64(stmt, 5, stamp);
    sqlite3_bind_int(stmt, 6, (int)method);
    /* a sealed body is binary (seal.h), a blob; read back the same way as text (column_text, column_bytes) */
    if (json && sl_is_sealed(json, json_len))
        sqlite3_bind_blob(stmt, 7, json, (int)json_len, SQLITE_STATIC);
    else if (json)
        sqlite3_bind_text(stmt, 7, json, (int)json_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 7);
    char *tags = json ? sql_join_tags(op->access_tags, op->access_tag_count) : NULL;
    if (tags)
        sqlite3_bind_text(stmt, 8, tags, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 8);
    int rc = json && !tags ? SQLITE_NOMEM : run(stmt);
    free(tags);
    *seq = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* The grants of a Task's version replace the previous version's (none for a deletion). */
static int write_grants(conn *c, const st_op *op, int64_t rid, bool deleting)
{
    int rc = bind_rid_run(c, SQL_DELETE_GRANTS, rid, NULL);
    sqlite3_stmt *stmt = NULL;
    for (size_t g = 0; rc == SQLITE_OK && !deleting && g < op->grant_count; g++)
        for (size_t t = 0; rc == SQLITE_OK && t < op->access_tag_count; t++) {
            if (!(stmt = fixed(c, SQL_INSERT_GRANT)))
                return sqlite3_errcode(c->db);
            sqlite3_bind_int64(stmt, 1, rid);
            sqlite3_bind_text(stmt, 2, op->grants[g].type, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 3, op->access_tags[t], -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 4, op->grants[g].id, -1, SQLITE_STATIC);
            rc = run(stmt);
        }
    return rc;
}

static int update_resource(conn *c, int64_t rid, int64_t version, int64_t stamp, bool deleted, int64_t seq)
{
    sqlite3_stmt *stmt = fixed(c, SQL_UPDATE_RESOURCE);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_int64(stmt, 1, rid);
    sqlite3_bind_int64(stmt, 2, version);
    sqlite3_bind_int64(stmt, 3, stamp);
    sqlite3_bind_int(stmt, 4, deleted);
    sqlite3_bind_int64(stmt, 5, seq);
    return run(stmt);
}

static void sqlite_failure(conn *c, int rc, st_op_result *res)
{
    st_status s = status_of(rc);
    st__result_message(res, s == ST_OK || s == ST_CONFLICT ? ST_INTERNAL : s, "%s", sqlite3_errmsg(c->db));
}

/*
 * Writes the next version of op's resource (cur: what is there now), with
 * its index rows and tags, or a deletion.
 */
static void write_version(conn *c, st_write_ctx *ctx, const st_op *op, const current *cur, st_method method,
                          st_op_result *res)
{
    int64_t version = cur->found ? cur->version + 1 : 1;
    int64_t stamp = st__stamp(ctx);
    char last_updated[ST_INSTANT_LEN];
    st_format_instant(stamp, last_updated);

    bool deleting = method == ST_METHOD_DELETE;
    size_t json_len = 0;
    char *json = deleting ? NULL : st__render(ctx, op, version, last_updated, &json_len, res);
    if (!deleting && !json)
        return;

    int64_t rid = cur->rid, seq = 0;
    int rc = cur->found ? SQLITE_OK : insert_resource(c, op, &rid);
    if (rc == SQLITE_OK)
        rc = insert_version(c, op, rid, version, stamp, method, json, json_len, &seq);
    if (rc == SQLITE_OK)
        rc = update_resource(c, rid, version, stamp, deleting, seq);
    if (rc == SQLITE_OK)
        rc = deleting ? delete_index_rows(c, rid) : write_index(c, ctx, op, rid, cur->found);
    if (rc == SQLITE_OK && (op->grant_count || (cur->found && !strcmp(op->type, "Task"))))
        rc = write_grants(c, op, rid, deleting);
    free(json);
    if (rc != SQLITE_OK) {
        sqlite_failure(c, rc, res);
        return;
    }
    res->status = ST_OK;
    res->version = version;
    res->last_updated_ms = stamp;
    memcpy(res->last_updated, last_updated, sizeof last_updated);
}

static void report_current(st_op_result *res, st_status status, const current *cur)
{
    res->status = status;
    res->version = cur->version;
    res->last_updated_ms = cur->last_updated;
    st_format_instant(cur->last_updated, res->last_updated);
}

/* If-None-Exist, on the writer's view (earlier operations of this batch included). */
static void conditional_create(conn *c, st_write_ctx *ctx, const st_op *op, st_op_result *res)
{
    sql_builder b;
    sql_builder_init(&b, &st_sqlite_dialect);
    st_status s = sql_build_conditional_create(&b, op->if_none_exist);
    if (s != ST_OK) {
        sql_builder_free(&b);
        st__result_message(res, s, "unsupported If-None-Exist query");
        return;
    }
    st_error err = {{0}};
    sqlite3_stmt *stmt = prepare_built(c, &b, &err);
    int matches = 0, rc = SQLITE_OK;
    while (stmt && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (matches++ == 0) {
            snprintf(res->id, sizeof res->id, "%s", (const char *)sqlite3_column_text(stmt, 0));
            current found = {.version = sqlite3_column_int64(stmt, 1), .last_updated = sqlite3_column_int64(stmt, 2)};
            report_current(res, ST_EXISTS, &found);
        }
    }
    finish(stmt);
    sql_builder_free(&b);
    if (!stmt || rc != SQLITE_DONE) {
        memset(res, 0, sizeof *res);
        sqlite_failure(c, stmt ? rc : sqlite3_errcode(c->db), res);
    } else if (matches > 1) {
        st__result_message(res, ST_MULTIPLE_MATCHES, "If-None-Exist matches more than one resource");
    } else if (matches == 0) {
        snprintf(res->id, sizeof res->id, "%s", op->id);
        current none = {0};
        int frc = find_current(c, op->type, op->id, &none);
        if (frc != SQLITE_OK)
            sqlite_failure(c, frc, res);
        else if (none.found)
            st__result_message(res, ST_CONFLICT, "%s/%s exists already", op->type, op->id);
        else
            write_version(c, ctx, op, &none, ST_METHOD_CREATE, res);
    }
}

static void apply_update(conn *c, st_write_ctx *ctx, const st_op *op, const current *cur, st_op_result *res)
{
    bool absent = !cur->found || cur->deleted;
    /* a deleted resource has a version too (the deletion's): an update pinned to it may bring it back */
    if (op->expected_version && (!cur->found || op->expected_version != cur->version)) {
        report_current(res, ST_VERSION_CONFLICT, cur);
        return;
    }
    if (absent && !op->create_if_missing) {
        report_current(res, cur->found ? ST_GONE : ST_NOT_FOUND, cur);
        return;
    }
    write_version(c, ctx, op, cur, ST_METHOD_UPDATE, res);
    res->created = res->status == ST_OK && absent;
}

static void apply_delete(conn *c, st_write_ctx *ctx, const st_op *op, const current *cur, st_op_result *res)
{
    if (!cur->found) {
        res->status = ST_NOT_FOUND;
    } else if (op->expected_version && op->expected_version != cur->version) {
        report_current(res, ST_VERSION_CONFLICT, cur);
    } else if (cur->deleted) {
        report_current(res, ST_OK, cur); /* deleting twice changes nothing */
        res->unchanged = true;
    } else {
        write_version(c, ctx, op, cur, ST_METHOD_DELETE, res);
    }
}

/* The bodies of rid's versions kept in the document log, to the store (their records go once this is durable). */
static int report_logged_bodies(conn *c, st_write_ctx *ctx, int64_t rid)
{
    sqlite3_stmt *stmt = fixed(c, SQL_LOGGED_BODIES);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_int64(stmt, 1, rid);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        st__body_erased(ctx, (const char *)sqlite3_column_text(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0));
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static st_status each_logged_body(void *writer, void (*each)(void *arg, const char *body, size_t len), void *arg,
                                  st_error *err)
{
    conn *c = writer;
    sqlite3_stmt *stmt = fixed(c, SQL_ALL_LOGGED);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        each(arg, (const char *)sqlite3_column_text(stmt, 0), (size_t)sqlite3_column_bytes(stmt, 0));
    st_status status = rc == SQLITE_DONE ? ST_OK : step_error(c, rc, err);
    finish(stmt);
    return status;
}

/* Retention: a deletion (unless there is one already), then no version keeps its body. */
static void apply_purge(conn *c, st_write_ctx *ctx, const st_op *op, const current *cur, st_op_result *res)
{
    if (!cur->found) {
        res->status = ST_NOT_FOUND;
        return;
    }
    if (cur->deleted) {
        report_current(res, ST_OK, cur);
        res->unchanged = true;
    } else {
        write_version(c, ctx, op, cur, ST_METHOD_DELETE, res);
    }
    int rc = res->status == ST_OK ? report_logged_bodies(c, ctx, cur->rid) : SQLITE_OK;
    if (rc == SQLITE_OK && res->status == ST_OK)
        rc = bind_rid_run(c, SQL_ERASE_BODIES, cur->rid, NULL);
    if (rc != SQLITE_OK)
        sqlite_failure(c, rc, res);
}

static void apply(void *writer, st_write_ctx *ctx, const st_op *op, st_op_result *res)
{
    conn *c = writer;
    memset(res, 0, sizeof *res);
    snprintf(res->id, sizeof res->id, "%s", op->id);
    if (op->kind == ST_OP_CREATE && op->if_none_exist) {
        conditional_create(c, ctx, op, res);
        return;
    }
    current cur;
    int rc = find_current(c, op->type, op->id, &cur);
    if (rc != SQLITE_OK) {
        sqlite_failure(c, rc, res);
        return;
    }
    switch (op->kind) {
    case ST_OP_CREATE:
        if (cur.found)
            st__result_message(res, ST_CONFLICT, "%s/%s exists already", op->type, op->id);
        else
            write_version(c, ctx, op, &cur, ST_METHOD_CREATE, res);
        return;
    case ST_OP_UPDATE: apply_update(c, ctx, op, &cur, res); return;
    case ST_OP_DELETE: apply_delete(c, ctx, op, &cur, res); return;
    case ST_OP_PURGE: apply_purge(c, ctx, op, &cur, res); return;
    case ST_OP_AUDIT: break; /* store.c appends those itself (append_audit) */
    case ST_OP_NOTIFY:
    case ST_OP_NOTIFY_UPDATE: break; /* store.c hands those to notify_enqueue / notify_update */
    }
    st__result_message(res, ST_INVALID, "unknown operation");
}

/* ---- The audit trail ---------------------------------------------------------------------- */

static st_status audit_head(void *writer, au_head *out, st_error *err)
{
    conn *c = writer;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *stmt = fixed(c, SQL_AUDIT_HEAD);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    int rc = sqlite3_step(stmt);
    st_status s = ST_OK;
    if (rc == SQLITE_ROW) {
        out->seq = sqlite3_column_int64(stmt, 0);
        const char *mac = (const char *)sqlite3_column_text(stmt, 1);
        if (!mac || !hex_decode(mac, out->mac, AU_MAC_LEN)) {
            st__error(err, "the last audit entry's MAC is not 64 hex digits");
            s = ST_INTERNAL;
        }
    } else if (rc != SQLITE_DONE) {
        s = step_error(c, rc, err);
    }
    finish(stmt);
    return s;
}

static void append_audit(void *writer, const au_entry *e, const unsigned char mac[AU_MAC_LEN], st_op_result *res)
{
    conn *c = writer;
    char mac_hex[AU_MAC_HEX], action[2] = {e->action, '\0'};
    hex_encode(mac, AU_MAC_LEN, mac_hex);
    sql_value v[SQL_AU_COLUMNS] = {
        [SQL_AU_SEQ] = sql_int(e->seq),
        [SQL_AU_TIME] = sql_int(e->time_ms),
        [SQL_AU_KEY_ID] = sql_text(e->key_id),
        [SQL_AU_URA] = sql_text(e->ura),
        [SQL_AU_ORG_NAME] = sql_text(e->org_name),
        [SQL_AU_CERT_FP] = sql_text(e->cert_fp),
        [SQL_AU_ON_BEHALF] = sql_text(e->on_behalf),
        [SQL_AU_REQUEST_ID] = sql_text(e->request_id),
        [SQL_AU_INTERACTION] = sql_text(e->interaction),
        [SQL_AU_ACTION] = sql_text(action),
        [SQL_AU_TYPE] = sql_text(e->type),
        [SQL_AU_RES_ID] = sql_text(e->id),
        [SQL_AU_VERSION] = sql_int(e->version),
        [SQL_AU_PATIENT] = sql_text(e->patient),
        [SQL_AU_WHERE] = sql_text(e->where),
        [SQL_AU_DECISION] = sql_text(e->decision),
        [SQL_AU_STATUS] = sql_int(e->status),
        [SQL_AU_MAC] = sql_text(mac_hex),
    };
    sqlite3_stmt *stmt = fixed(c, SQL_INSERT_AUDIT);
    if (!stmt) {
        sqlite_failure(c, sqlite3_errcode(c->db), res);
        return;
    }
    bind_values(stmt, v, SQL_AU_COLUMNS);
    int rc = run(stmt);
    if (rc != SQLITE_OK)
        sqlite_failure(c, rc, res);
    else
        res->status = ST_OK;
}

static const char *column_text(sqlite3_stmt *stmt, int col)
{
    const char *t = (const char *)sqlite3_column_text(stmt, col);
    return t ? t : "";
}

/*
 * Step stmt to its end, each row decoded by `from` into the next element (element_size bytes) of the
 * array *rows_ptr grows; the statement is finished. On failure the array is freed and *count is 0.
 */
static st_status step_rows(conn *c, sqlite3_stmt *stmt, void *rows_ptr, size_t *count, size_t element_size,
                           void (*from)(sqlite3_stmt *stmt, void *row), st_error *err)
{
    void **rows = rows_ptr;
    size_t cap = 0;
    st_status s = ST_OK;
    int rc;
    while (s == ST_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (!fa_reserve(rows_ptr, &cap, *count + 1, element_size)) {
            st__error(err, "out of memory");
            s = ST_INTERNAL;
        } else {
            from(stmt, (char *)*rows + element_size * (*count)++);
        }
    }
    if (s == ST_OK && rc != SQLITE_DONE)
        s = step_error(c, rc, err);
    finish(stmt);
    if (s != ST_OK) {
        free(*rows);
        *rows = NULL;
        *count = 0;
    }
    return s;
}

static void audit_row_from(sqlite3_stmt *stmt, void *row)
{
    st_audit_row *out = row;
    au_entry *e = &out->entry;
    memset(out, 0, sizeof *out);
    e->seq = sqlite3_column_int64(stmt, SQL_AU_SEQ);
    e->time_ms = sqlite3_column_int64(stmt, SQL_AU_TIME);
    AU_SET(e->key_id, column_text(stmt, SQL_AU_KEY_ID));
    AU_SET(e->ura, column_text(stmt, SQL_AU_URA));
    AU_SET(e->org_name, column_text(stmt, SQL_AU_ORG_NAME));
    AU_SET(e->cert_fp, column_text(stmt, SQL_AU_CERT_FP));
    AU_SET(e->on_behalf, column_text(stmt, SQL_AU_ON_BEHALF));
    AU_SET(e->request_id, column_text(stmt, SQL_AU_REQUEST_ID));
    AU_SET(e->interaction, column_text(stmt, SQL_AU_INTERACTION));
    e->action = column_text(stmt, SQL_AU_ACTION)[0];
    AU_SET(e->type, column_text(stmt, SQL_AU_TYPE));
    AU_SET(e->id, column_text(stmt, SQL_AU_RES_ID));
    e->version = sqlite3_column_int64(stmt, SQL_AU_VERSION);
    AU_SET(e->patient, column_text(stmt, SQL_AU_PATIENT));
    AU_SET(e->where, column_text(stmt, SQL_AU_WHERE));
    AU_SET(e->decision, column_text(stmt, SQL_AU_DECISION));
    e->status = sqlite3_column_int(stmt, SQL_AU_STATUS);
    if (!hex_decode(column_text(stmt, SQL_AU_MAC), out->mac, AU_MAC_LEN))
        memset(out->mac, 0, AU_MAC_LEN); /* a mangled MAC never verifies */
}

static st_status audit_read(void *reader, const st_audit_query *q, int64_t seq, st_audit_row **rows, size_t *count,
                            st_error *err)
{
    conn *c = reader;
    sqlite3_stmt *stmt = fixed(c, seq ? SQL_AUDIT_GET : q->ura ? SQL_AUDIT_OF_BEFORE : SQL_AUDIT_AFTER);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    int64_t limit = seq ? 1 : (int64_t)q->count;
    if (seq) {
        sqlite3_bind_int64(stmt, 1, seq);
    } else if (q->ura) {
        sqlite3_bind_text(stmt, 1, q->ura, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, q->before_seq > 0 ? q->before_seq : INT64_MAX);
        sqlite3_bind_int64(stmt, 3, limit);
    } else {
        sqlite3_bind_int64(stmt, 1, q->after_seq);
        sqlite3_bind_int64(stmt, 2, limit);
    }
    return step_rows(c, stmt, rows, count, sizeof **rows, audit_row_from, err);
}

/* ---- The relay queue ------------------------------------------------------------------------ */

static sqlite3_stmt *notify_stmt(conn *c, sql_notify_stmt which)
{
    if (c->notify[which])
        return c->notify[which];
    char *sql = sql_notify_text(&st_sqlite_dialect, which);
    if (!sql || sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->notify[which], NULL) != SQLITE_OK)
        c->notify[which] = NULL;
    free(sql);
    return c->notify[which];
}

/* The receiver's next event number: its counter row (made on its first notification) counted up, on the
 * writer, inside the batch: serialised with every other write, so numbers follow the commit order. */
static int next_event_number(conn *c, const char *ura, int64_t now, int64_t *number)
{
    sqlite3_stmt *stmt = notify_stmt(c, SQL_NOTIFY_RECEIVER);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_text(stmt, 1, ura, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, now);
    int rc = run(stmt);
    if (rc == SQLITE_OK && (stmt = notify_stmt(c, SQL_NOTIFY_NEXT_NUMBER))) {
        sqlite3_bind_text(stmt, 1, ura, -1, SQLITE_STATIC);
        rc = run(stmt);
    }
    if (rc != SQLITE_OK || !stmt)
        return stmt ? rc : sqlite3_errcode(c->db);
    if (!(stmt = notify_stmt(c, SQL_NOTIFY_LAST_NUMBER)))
        return sqlite3_errcode(c->db);
    sqlite3_bind_text(stmt, 1, ura, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    *number = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
    finish(stmt);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void notify_enqueue(void *writer, st_write_ctx *ctx, const st_notify *n, const char *type,
                           const st_op_result *written, st_op_result *res)
{
    conn *c = writer;
    int64_t now = st__stamp(ctx), number = 0;
    int rc = next_event_number(c, n->receiver, now, &number);
    sqlite3_stmt *stmt = rc == SQLITE_OK ? notify_stmt(c, SQL_NOTIFY_INSERT) : NULL;
    if (stmt) {
        sql_value v[] = {
            sql_text(n->receiver),
            sql_int(number),
            sql_text(n->event),
            sql_text(type),
            sql_text(written->id),
            sql_int(written->version),
            sql_int(now),
            sql_int(ST_NOTIFY_PENDING),
            sql_int(0),
            sql_int(now), /* first attempt: at once */
            sql_int(0),
            sql_int(0),
            sql_int(0),
            sql_text(""),
        };
        _Static_assert(sizeof v / sizeof *v == SQL_NT_COLUMNS - SQL_NT_RECEIVER, "one value per inserted column");
        bind_values(stmt, v, sizeof v / sizeof *v);
        rc = run(stmt);
    } else if (rc == SQLITE_OK) {
        rc = sqlite3_errcode(c->db);
    }
    if (rc != SQLITE_OK) {
        sqlite_failure(c, rc, res);
        return;
    }
    res->status = ST_OK;
    res->version = number;
    res->last_updated_ms = now;
    st_format_instant(now, res->last_updated);
    snprintf(res->id, sizeof res->id, "%lld", (long long)sqlite3_last_insert_rowid(c->db));
}

/* The older delivered notifications of seq's receiver, done before `before` (st_notify.keep_delivered_ms). */
static void notify_prune(conn *c, int64_t seq, int64_t before, st_op_result *res)
{
    sqlite3_stmt *stmt = notify_stmt(c, SQL_NOTIFY_PRUNE);
    int rc = SQLITE_ERROR;
    if (stmt) {
        sql_value v[] = {sql_int(seq), sql_int(before), sql_int(ST_NOTIFY_PRUNE_BATCH)};
        bind_values(stmt, v, sizeof v / sizeof *v);
        rc = run(stmt);
    }
    if (rc != SQLITE_OK)
        sqlite_failure(c, stmt ? rc : sqlite3_errcode(c->db), res);
    else
        res->status = ST_OK;
}

static void notify_update(void *writer, st_write_ctx *ctx, const st_notify *n, st_op_result *res)
{
    conn *c = writer;
    int64_t now = st__stamp(ctx);
    sqlite3_stmt *stmt = notify_stmt(c, SQL_NOTIFY_UPDATE);
    if (!stmt) {
        sqlite_failure(c, sqlite3_errcode(c->db), res);
        return;
    }
    sql_value v[] = {sql_int(n->seq),
                     sql_int(n->state),
                     sql_int(n->state == ST_NOTIFY_PENDING ? n->next_attempt_ms : 0),
                     sql_int(now),
                     sql_int(n->http_status),
                     sql_text(n->error ? n->error : "")};
    bind_values(stmt, v, sizeof v / sizeof *v);
    int rc = run(stmt);
    if (rc != SQLITE_OK)
        sqlite_failure(c, rc, res);
    else if (sqlite3_changes(c->db) == 0)
        st__result_message(res, ST_NOT_FOUND, "notification %lld is not pending", (long long)n->seq);
    else if (n->state == ST_NOTIFY_DELIVERED && n->keep_delivered_ms > 0)
        notify_prune(c, n->seq, now - n->keep_delivered_ms, res);
    else
        res->status = ST_OK;
}

static void copy_column(char *out, size_t size, sqlite3_stmt *stmt, int col)
{
    snprintf(out, size, "%s", column_text(stmt, col));
}

static void notification_from(sqlite3_stmt *stmt, void *row)
{
    st_notification *out = row;
    memset(out, 0, sizeof *out);
    out->seq = sqlite3_column_int64(stmt, SQL_NT_SEQ);
    copy_column(out->receiver, sizeof out->receiver, stmt, SQL_NT_RECEIVER);
    out->event_number = sqlite3_column_int64(stmt, SQL_NT_EVENT_NUMBER);
    copy_column(out->event, sizeof out->event, stmt, SQL_NT_EVENT);
    copy_column(out->focus_type, sizeof out->focus_type, stmt, SQL_NT_FOCUS_TYPE);
    copy_column(out->focus_id, sizeof out->focus_id, stmt, SQL_NT_FOCUS_ID);
    out->focus_version = sqlite3_column_int64(stmt, SQL_NT_FOCUS_VERSION);
    out->created_ms = sqlite3_column_int64(stmt, SQL_NT_CREATED);
    out->state = (st_notify_state)sqlite3_column_int(stmt, SQL_NT_STATE);
    out->attempts = (unsigned)sqlite3_column_int(stmt, SQL_NT_ATTEMPTS);
    out->next_attempt_ms = sqlite3_column_int64(stmt, SQL_NT_NEXT_ATTEMPT);
    out->last_attempt_ms = sqlite3_column_int64(stmt, SQL_NT_LAST_ATTEMPT);
    out->done_ms = sqlite3_column_int64(stmt, SQL_NT_DONE);
    out->http_status = (long)sqlite3_column_int64(stmt, SQL_NT_HTTP_STATUS);
    copy_column(out->last_error, sizeof out->last_error, stmt, SQL_NT_ERROR);
}

static st_status notify_read(void *reader, const st_notify_query *q, st_notification **rows, size_t *count,
                             st_error *err)
{
    conn *c = reader;
    sql_notify_stmt which = q->due_heads      ? SQL_NOTIFY_DUE_HEADS
                            : !q->receiver    ? SQL_NOTIFY_ALL
                            : q->pending      ? SQL_NOTIFY_PENDING_OF
                            : q->newest_first ? SQL_NOTIFY_OF_RECEIVER_DESC
                                              : SQL_NOTIFY_OF_RECEIVER;
    sqlite3_stmt *stmt = notify_stmt(c, which);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    int at = 1;
    if (which == SQL_NOTIFY_OF_RECEIVER || which == SQL_NOTIFY_OF_RECEIVER_DESC || which == SQL_NOTIFY_PENDING_OF)
        sqlite3_bind_text(stmt, at++, q->receiver, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, at, q->count ? (int64_t)q->count : INT64_MAX);
    if (which == SQL_NOTIFY_OF_RECEIVER || which == SQL_NOTIFY_OF_RECEIVER_DESC) {
        sqlite3_bind_int64(stmt, 3, q->from_event > 0 ? q->from_event : 1);
        sqlite3_bind_int64(stmt, 4, q->to_event > 0 ? q->to_event : INT64_MAX);
    }
    return step_rows(c, stmt, rows, count, sizeof **rows, notification_from, err);
}

static st_status notify_counts(void *reader, int64_t counts[ST_NOTIFY_STATES], st_error *err)
{
    conn *c = reader;
    sqlite3_stmt *stmt = notify_stmt(c, SQL_NOTIFY_COUNTS);
    if (!stmt)
        return step_error(c, sqlite3_errcode(c->db), err);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int state = sqlite3_column_int(stmt, 0);
        if (state >= 0 && state < ST_NOTIFY_STATES)
            counts[state] = sqlite3_column_int64(stmt, 1);
    }
    st_status s = rc == SQLITE_DONE ? ST_OK : step_error(c, rc, err);
    finish(stmt);
    return s;
}

/* ---- Backup (st_backup) ---------------------------------------------------------------- */

/*
 * In the copy: each receiver's relay counter moves LIM(backup_event_jump)
 * on. The gateway goes on numbering events after the backup; a restore
 * that continued from the copy's counters would issue those numbers again,
 * for other Tasks, and a receiver that skips numbers it has seen would miss
 * them. Past the jump, a restored gateway's numbers are new, and the gap is
 * what the Subscriptions Backport tells receivers to catch up on ($events).
 */
static int jump_event_numbers(sqlite3 *db)
{
    /* a database of a schema before the relay (migrated when a gateway opens it) has no counters to move */
    if (sqlite3_table_column_metadata(db, NULL, "relay_receiver", "last_event", NULL, NULL, NULL, NULL, NULL) !=
        SQLITE_OK)
        return SQLITE_OK;
    char *sql = sql_notify_text(&st_sqlite_dialect, SQL_NOTIFY_JUMP);
    sqlite3_stmt *stmt = NULL;
    int rc = sql ? sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) : SQLITE_NOMEM;
    free(sql);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(stmt, 1, LIM(backup_event_jump));
        rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/*
 * SQLite's online backup, in one step: all pages are copied within one read
 * transaction of the source, so the copy is the database as of one commit,
 * however much the gateway writes meanwhile (in WAL mode a reader blocks no
 * writer). The copy is a new file, committed (and synced) by its own
 * connection; a copy that failed half-way is removed.
 */
static st_status backup_database(const st_config *config, const char *to_path, uint64_t *bytes, st_error *err)
{
    *bytes = 0;
    /* made here, empty (SQLite takes an empty file for an empty database): only its owner reads the copy */
    int fd = open(to_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int why = errno;
        st__error(err, "cannot create %s: %s", to_path, strerror(why));
        return why == EEXIST ? ST_CONFLICT : ST_IO;
    }
    close(fd);
    conn *src = conn_open(config, CONN_READER, err);
    if (!src) {
        unlink(to_path);
        return ST_IO;
    }
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(to_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(dst, "main", src->db, "main") : NULL;
    if (b) {
        /* BUSY/LOCKED: the source's read lock was not to be had at once (a WAL restart); try again a while */
        for (unsigned waited = 0;; waited += 20) {
            rc = sqlite3_backup_step(b, -1);
            if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || waited >= config->busy_timeout_ms)
                break;
            sqlite3_sleep(20);
        }
        int finished = sqlite3_backup_finish(b);
        if (rc == SQLITE_DONE)
            rc = finished;
        if (rc == SQLITE_OK)
            rc = jump_event_numbers(dst);
    } else if (rc == SQLITE_OK) {
        rc = sqlite3_errcode(dst);
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        st__error(err, "copying %s to %s: %s", config->path, to_path, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
    bool ok = rc == SQLITE_OK || rc == SQLITE_DONE;
    if (sqlite3_close(dst) != SQLITE_OK && ok) {
        st__error(err, "closing %s", to_path);
        ok = false;
    }
    conn_close(src);
    struct stat st;
    if (ok && stat(to_path, &st) == 0)
        *bytes = (uint64_t)st.st_size;
    if (!ok)
        unlink(to_path);
    return ok ? ST_OK : ST_IO;
}

const st_backend st_sqlite_backend = {
    .name = "sqlite",
    .sole_writer = true, /* one fhirgw serve per database file (docs/architecture.md) */
    .open_writer = open_writer,
    .close_writer = close_writer,
    .open_reader = open_reader,
    .close_reader = close_reader,
    .begin_batch = begin_batch,
    .commit_batch = commit_batch,
    .durable_later = durable_later,
    .make_durable = make_durable,
    .rollback_batch = rollback_batch,
    .begin_txn = begin_txn,
    .end_txn = end_txn,
    .apply = apply,
    .maintain = maintain,
    .audit_head = audit_head,
    .each_logged_body = each_logged_body,
    .append_audit = append_audit,
    .audit_read = audit_read,
    .notify_enqueue = notify_enqueue,
    .notify_update = notify_update,
    .notify_read = notify_read,
    .notify_counts = notify_counts,
    .read = read_resource,
    .history = history,
    .search = search,
    .backup = backup_database,
};
