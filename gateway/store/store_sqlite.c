/*
 * gateway/store/store_sqlite.c — the SQLite backend of the store (see store.h and
 * store_backend.h for the contract).
 *
 * Tables (schema version 1):
 *   resource          one row per (type, id): current version, deleted flag,
 *                     owner, and current_seq pointing at the current version
 *   resource_version  every version, seq = the global change sequence that
 *                     orders history; a deletion has json NULL
 *   access_tag        (tag, rid): organisations a resource is addressed to
 *   index_string, index_token, index_reference, index_date, index_number,
 *   index_uri         search rows of the current version, one table per
 *                     value kind so that each gets its own SQL index; quantity
 *                     rows share index_number with a system and unit code
 *
 * Connections: one writer, used by the commit thread only, and readers, one
 * per thread at a time, all in WAL mode so that readers never wait for the
 * writer. Every connection caches its prepared statements: the fixed ones in
 * an array by name, the search and history ones (whose text depends on the
 * query's shape) in a small LRU cache keyed by their SQL text.
 *
 * Durability: journal_mode=WAL with synchronous=FULL syncs the WAL on every
 * COMMIT, so a commit that returned SQLITE_OK survives a crash or power loss.
 */
#include "gateway/store/store_backend.h"

#include "fhir/array.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_VERSION 2
#define DYNAMIC_CACHE_SIZE LIM(store_statement_cache)
#define CHECKPOINT_PAGES LIM(store_checkpoint_pages) /* SQLite's own default threshold */
#define WAL_SIZE_LIMIT LIM(store_wal_size_limit)     /* truncate a WAL left larger than this after a checkpoint */

/* ---- Schema -------------------------------------------------------------------------- */

/* MIGRATIONS[i] takes the schema from version i to i + 1; append, never edit. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE resource ("
    "  rid INTEGER PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  last_updated INTEGER NOT NULL,"
    "  deleted INTEGER NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  current_seq INTEGER NOT NULL,"
    "  UNIQUE (type, id));"
    "CREATE INDEX resource_by_time ON resource (type, last_updated);"
    "CREATE TABLE resource_version ("
    "  seq INTEGER PRIMARY KEY,"
    "  rid INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  last_updated INTEGER NOT NULL,"
    "  method INTEGER NOT NULL,"
    "  json TEXT,"
    "  UNIQUE (rid, version));"
    "CREATE INDEX version_by_type ON resource_version (type, seq);"
    "CREATE TABLE access_tag (tag TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (tag, rid)) WITHOUT ROWID;"
    "CREATE INDEX access_tag_by_resource ON access_tag (rid, tag);"
    "CREATE TABLE index_string (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  normalized TEXT NOT NULL, exact TEXT NOT NULL);"
    "CREATE INDEX index_string_value ON index_string (type, param, normalized);"
    "CREATE INDEX index_string_rid ON index_string (rid, param);"
    "CREATE TABLE index_token (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  system TEXT, code TEXT);"
    "CREATE INDEX index_token_value ON index_token (type, param, code);"
    "CREATE INDEX index_token_rid ON index_token (rid, param);"
    "CREATE TABLE index_reference (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  target_type TEXT, target_id TEXT, url TEXT);"
    "CREATE INDEX index_reference_value ON index_reference (type, param, target_id);"
    "CREATE INDEX index_reference_url ON index_reference (type, param, url);"
    "CREATE INDEX index_reference_rid ON index_reference (rid, param);"
    "CREATE TABLE index_date (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  low INTEGER NOT NULL, high INTEGER NOT NULL);"
    "CREATE INDEX index_date_value ON index_date (type, param, low);"
    "CREATE INDEX index_date_rid ON index_date (rid, param);"
    "CREATE TABLE index_number (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  value REAL NOT NULL, system TEXT, code TEXT);"
    "CREATE INDEX index_number_value ON index_number (type, param, value);"
    "CREATE INDEX index_number_rid ON index_number (rid, param);"
    "CREATE TABLE index_uri (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL);"
    "CREATE INDEX index_uri_value ON index_uri (type, param, uri);"
    "CREATE INDEX index_uri_rid ON index_uri (rid, param);",
    /* 2: access per version (history and vread show a version to whom that version was addressed), and grants:
     * a Task lets its addressees read what it refers to, while its status allows */
    "ALTER TABLE resource_version ADD COLUMN tags TEXT;"
    "UPDATE resource_version SET tags = (SELECT group_concat(t.tag, char(31)) FROM access_tag t"
    "  WHERE t.rid = resource_version.rid);"
    "CREATE TABLE access_grant (tag TEXT NOT NULL, rid INTEGER NOT NULL, grantor INTEGER NOT NULL,"
    "  PRIMARY KEY (tag, rid, grantor)) WITHOUT ROWID;"
    "CREATE INDEX access_grant_by_resource ON access_grant (rid, tag);"
    "CREATE INDEX access_grant_by_grantor ON access_grant (grantor);",
};
#define MIGRATION_COUNT (sizeof MIGRATIONS / sizeof *MIGRATIONS)
_Static_assert(MIGRATION_COUNT == SCHEMA_VERSION, "one migration per schema version");

/* The index table of each value kind (quantities share the number table). */
static const char *const INDEX_TABLE[] = {
    [ST_KIND_STRING] = "index_string", [ST_KIND_TOKEN] = "index_token", [ST_KIND_REFERENCE] = "index_reference",
    [ST_KIND_DATE] = "index_date",     [ST_KIND_NUMBER] = "index_number", [ST_KIND_QUANTITY] = "index_number",
    [ST_KIND_URI] = "index_uri",
};

/* ---- Connections and their statement caches ------------------------------------------ */

typedef enum fixed_stmt {
    BEGIN_BATCH,
    COMMIT_BATCH,
    ROLLBACK_BATCH,
    SAVEPOINT,
    RELEASE,
    ROLLBACK_TO,
    BEGIN_READ,
    END_READ,
    FIND_RESOURCE,
    INSERT_RESOURCE,
    UPDATE_RESOURCE,
    INSERT_VERSION,
    DELETE_TAGS,
    INSERT_TAG,
    INSERT_STRING,
    INSERT_TOKEN,
    INSERT_REFERENCE,
    INSERT_DATE,
    INSERT_NUMBER,
    INSERT_URI,
    DELETE_STRING,
    DELETE_TOKEN,
    DELETE_REFERENCE,
    DELETE_DATE,
    DELETE_NUMBER,
    DELETE_URI,
    READ_CURRENT,
    READ_VERSION,
    DELETE_GRANTS,
    INSERT_GRANT,
    LAST_SEQ,
    FIXED_STMT_COUNT
} fixed_stmt;

/* The organisations that may read the current version: its addressees and those a Task grants it to. */
#define SELECT_TAGS                                                                                              \
    "(SELECT group_concat(tag, char(31)) FROM (SELECT t.tag FROM access_tag t WHERE t.rid = r.rid"              \
    " UNION SELECT g.tag FROM access_grant g WHERE g.rid = r.rid))"

static const char *const FIXED_SQL[FIXED_STMT_COUNT] = {
    [BEGIN_BATCH] = "BEGIN IMMEDIATE",
    [COMMIT_BATCH] = "COMMIT",
    [ROLLBACK_BATCH] = "ROLLBACK",
    [SAVEPOINT] = "SAVEPOINT txn",
    [RELEASE] = "RELEASE txn",
    [ROLLBACK_TO] = "ROLLBACK TO txn",
    [BEGIN_READ] = "BEGIN",
    [END_READ] = "COMMIT",
    [FIND_RESOURCE] = "SELECT rid, version, deleted, last_updated FROM resource WHERE type = ?1 AND id = ?2",
    [INSERT_RESOURCE] = "INSERT INTO resource (type, id, version, last_updated, deleted, owner, current_seq)"
                        " VALUES (?1, ?2, 0, 0, 0, ?3, 0)",
    [UPDATE_RESOURCE] = "UPDATE resource SET version = ?2, last_updated = ?3, deleted = ?4, current_seq = ?5"
                        " WHERE rid = ?1",
    /* tags NULL (a deletion): the version is addressed as the one it deletes */
    [INSERT_VERSION] = "INSERT INTO resource_version (rid, type, id, version, last_updated, method, json, tags)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, (SELECT group_concat(t.tag, char(31))"
                       " FROM access_tag t WHERE t.rid = ?1)))",
    [DELETE_TAGS] = "DELETE FROM access_tag WHERE rid = ?1",
    [INSERT_TAG] = "INSERT OR IGNORE INTO access_tag (tag, rid) VALUES (?2, ?1)",
    [INSERT_STRING] = "INSERT INTO index_string VALUES (?1, ?2, ?3, ?4, ?5)",
    [INSERT_TOKEN] = "INSERT INTO index_token VALUES (?1, ?2, ?3, ?4, ?5)",
    [INSERT_REFERENCE] = "INSERT INTO index_reference VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [INSERT_DATE] = "INSERT INTO index_date VALUES (?1, ?2, ?3, ?4, ?5)",
    [INSERT_NUMBER] = "INSERT INTO index_number VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [INSERT_URI] = "INSERT INTO index_uri VALUES (?1, ?2, ?3, ?4)",
    [DELETE_STRING] = "DELETE FROM index_string WHERE rid = ?1",
    [DELETE_TOKEN] = "DELETE FROM index_token WHERE rid = ?1",
    [DELETE_REFERENCE] = "DELETE FROM index_reference WHERE rid = ?1",
    [DELETE_DATE] = "DELETE FROM index_date WHERE rid = ?1",
    [DELETE_NUMBER] = "DELETE FROM index_number WHERE rid = ?1",
    [DELETE_URI] = "DELETE FROM index_uri WHERE rid = ?1",
    [READ_CURRENT] = "SELECT r.type, r.id, v.version, v.last_updated, v.method, v.json, r.owner, " SELECT_TAGS
                     " FROM resource r JOIN resource_version v ON v.seq = r.current_seq"
                     " WHERE r.type = ?1 AND r.id = ?2",
    [DELETE_GRANTS] = "DELETE FROM access_grant WHERE grantor = ?1",
    [INSERT_GRANT] = "INSERT OR IGNORE INTO access_grant (tag, rid, grantor)"
                     " SELECT ?3, rid, ?1 FROM resource WHERE type = ?2 AND id = ?4 AND deleted = 0",
    /* a version is read by whom that version was addressed to (not the current addressees) */
    [READ_VERSION] = "SELECT r.type, r.id, v.version, v.last_updated, v.method, v.json, r.owner, v.tags"
                     " FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = ?3"
                     " WHERE r.type = ?1 AND r.id = ?2",
    [LAST_SEQ] = "SELECT coalesce(max(seq), 0) FROM resource_version",
};

typedef struct cached_stmt {
    char *sql;
    sqlite3_stmt *stmt;
    uint64_t last_used;
} cached_stmt;

struct checkpointer;

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *fixed[FIXED_STMT_COUNT];
    cached_stmt dynamic[DYNAMIC_CACHE_SIZE];
    uint64_t tick;
    int wal_pages; /* writer: pages in the WAL after the last commit */
    struct checkpointer *checkpointer; /* writer: the thread that checkpoints the WAL */
} conn;

static st_status status_of(int rc)
{
    switch (rc & 0xFF) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return ST_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return ST_BUSY;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
        return ST_IO;
    case SQLITE_CONSTRAINT:
        return ST_CONFLICT;
    default:
        return ST_INTERNAL;
    }
}

/* A fixed statement, prepared on first use, reset and ready to bind. NULL on failure. */
static sqlite3_stmt *fixed(conn *c, fixed_stmt which)
{
    if (!c->fixed[which] &&
        sqlite3_prepare_v3(c->db, FIXED_SQL[which], -1, SQLITE_PREPARE_PERSISTENT, &c->fixed[which], NULL) != SQLITE_OK)
        return NULL;
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

static void bind_text_or_null(sqlite3_stmt *stmt, int i, const char *text)
{
    if (text && *text)
        sqlite3_bind_text(stmt, i, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, i);
}

static void conn_close(conn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < FIXED_STMT_COUNT; i++)
        sqlite3_finalize(c->fixed[i]);
    for (size_t i = 0; i < DYNAMIC_CACHE_SIZE; i++) {
        sqlite3_finalize(c->dynamic[i].stmt);
        free(c->dynamic[i].sql);
    }
    sqlite3_close(c->db);
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

static conn *conn_open(const st_config *config, bool writer, st_error *err)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        st__error(err, "out of memory");
        return NULL;
    }
    /* each connection is used by one thread at a time: no per-connection mutex needed */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(config->path, &c->db, flags, NULL);
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
    int rc = sqlite3_exec(c->db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", NULL, NULL,
                          NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(c->db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &stmt, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(stmt);
    *version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Each step in its own transaction, so a crash mid-way leaves a consistent older version. */
static bool migrate(conn *c, st_error *err)
{
    int version = 0;
    if (schema_version(c, &version) != SQLITE_OK) {
        st__error(err, "reading the schema version: %s", sqlite3_errmsg(c->db));
        return false;
    }
    if (version > SCHEMA_VERSION) {
        st__error(err, "the database has schema version %d; this program knows up to %d", version, SCHEMA_VERSION);
        return false;
    }
    for (int v = version; v < SCHEMA_VERSION; v++) {
        char record[96];
        snprintf(record, sizeof record, "INSERT INTO schema_version VALUES (%d)", v + 1);
        if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, MIGRATIONS[v], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, record, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            st__error(err, "schema migration to version %d: %s", v + 1, sqlite3_errmsg(c->db));
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return false;
        }
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
    if (!k || !(k->conn = conn_open(config, true, &ignored))) {
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

static void *open_writer(const st_config *config, st_error *err)
{
    conn *c = conn_open(config, true, err);
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
    return c;
}

static void close_writer(void *writer)
{
    stop_checkpointer(writer);
    conn_close(writer);
}

static void *open_reader(const st_config *config, st_error *err)
{
    return conn_open(config, false, err);
}

static void close_reader(void *reader)
{
    conn_close(reader);
}

/* ---- Batches and savepoints --------------------------------------------------------------- */

static st_status run_fixed(conn *c, fixed_stmt which, st_error *err)
{
    int rc = run(fixed(c, which));
    if (rc != SQLITE_OK) {
        st__error(err, "%s: %s", FIXED_SQL[which], sqlite3_errmsg(c->db));
        return status_of(rc) == ST_OK ? ST_INTERNAL : status_of(rc);
    }
    return ST_OK;
}

static st_status begin_batch(void *writer, st_error *err)
{
    return run_fixed(writer, BEGIN_BATCH, err);
}

static st_status commit_batch(void *writer, st_error *err)
{
    return run_fixed(writer, COMMIT_BATCH, err);
}

static void rollback_batch(void *writer)
{
    conn *c = writer;
    if (!sqlite3_get_autocommit(c->db)) /* a failed COMMIT may already have rolled back */
        run_fixed(c, ROLLBACK_BATCH, NULL);
}

static st_status begin_txn(void *writer, st_error *err)
{
    return run_fixed(writer, SAVEPOINT, err);
}

static st_status end_txn(void *writer, bool keep, st_error *err)
{
    conn *c = writer;
    if (!keep)
        run_fixed(c, ROLLBACK_TO, NULL);
    run_fixed(c, RELEASE, NULL);
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

/* ---- Generated SQL: a growing text and its bound values ----------------------------------- */

typedef struct bound {
    enum { BIND_TEXT, BIND_INT, BIND_REAL } kind;
    const char *text;
    int64_t integer;
    double real;
} bound;

typedef struct sql_builder {
    char *text;
    size_t len, cap;
    bound *binds;
    size_t bind_count, bind_cap;
    char **owned; /* texts allocated for binds (normalised strings), freed with the builder */
    size_t owned_count, owned_cap;
    bool oom;
} sql_builder;

static void sb_free(sql_builder *b)
{
    free(b->text);
    free(b->binds);
    for (size_t i = 0; i < b->owned_count; i++)
        free(b->owned[i]);
    free(b->owned);
    memset(b, 0, sizeof *b);
}

static void sb_add(sql_builder *b, const char *text)
{
    size_t n = strlen(text);
    if (b->oom || !fa_reserve(&b->text, &b->cap, b->len + n + 1, 1)) {
        b->oom = true;
        return;
    }
    memcpy(b->text + b->len, text, n + 1);
    b->len += n;
}

static bound *sb_bind(sql_builder *b)
{
    if (b->oom || !fa_reserve(&b->binds, &b->bind_cap, b->bind_count + 1, sizeof(bound))) {
        b->oom = true;
        return NULL;
    }
    sb_add(b, "?");
    return &b->binds[b->bind_count++];
}

static void sb_text(sql_builder *b, const char *text)
{
    bound *v = sb_bind(b);
    if (v)
        *v = (bound){.kind = BIND_TEXT, .text = text};
}

static void sb_int(sql_builder *b, int64_t value)
{
    bound *v = sb_bind(b);
    if (v)
        *v = (bound){.kind = BIND_INT, .integer = value};
}

static void sb_real(sql_builder *b, double value)
{
    bound *v = sb_bind(b);
    if (v)
        *v = (bound){.kind = BIND_REAL, .real = value};
}

/* Keeps text alive until the builder is freed. */
static const char *sb_own(sql_builder *b, char *text)
{
    if (!text || b->oom || !fa_reserve(&b->owned, &b->owned_cap, b->owned_count + 1, sizeof(char *))) {
        free(text);
        b->oom = true;
        return "";
    }
    b->owned[b->owned_count++] = text;
    return text;
}

static void bind_all(sqlite3_stmt *stmt, const sql_builder *b, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const bound *v = &b->binds[i];
        int at = (int)i + 1;
        if (v->kind == BIND_TEXT)
            sqlite3_bind_text(stmt, at, v->text, -1, SQLITE_STATIC);
        else if (v->kind == BIND_INT)
            sqlite3_bind_int64(stmt, at, v->integer);
        else
            sqlite3_bind_double(stmt, at, v->real);
    }
}

/* ---- Search conditions ---------------------------------------------------------------------- */

/*
 * FHIR's date prefixes over ranges: the row [low, high] against the query
 * range [ql, qh] (both inclusive). For _lastUpdated low and high are the
 * same column.
 */
static void date_expr(sql_builder *b, st_prefix prefix, const char *low, const char *high, int64_t ql, int64_t qh)
{
    char col[160];
    switch (prefix) {
    case ST_NE:
        sb_add(b, "NOT ");
        /* fall through */
    case ST_EQ:
        snprintf(col, sizeof col, "(%s >= ", low), sb_add(b, col), sb_int(b, ql);
        snprintf(col, sizeof col, " AND %s <= ", high), sb_add(b, col), sb_int(b, qh), sb_add(b, ")");
        return;
    case ST_GT: /* the range above the value overlaps the row */
        snprintf(col, sizeof col, "%s > ", high), sb_add(b, col), sb_int(b, qh);
        return;
    case ST_LT:
        snprintf(col, sizeof col, "%s < ", low), sb_add(b, col), sb_int(b, ql);
        return;
    case ST_GE: /* gt, or the value contains the row */
        sb_add(b, "(");
        date_expr(b, ST_GT, low, high, ql, qh), sb_add(b, " OR "), date_expr(b, ST_EQ, low, high, ql, qh);
        sb_add(b, ")");
        return;
    case ST_LE:
        sb_add(b, "(");
        date_expr(b, ST_LT, low, high, ql, qh), sb_add(b, " OR "), date_expr(b, ST_EQ, low, high, ql, qh);
        sb_add(b, ")");
        return;
    case ST_SA: /* starts after the value ends */
        snprintf(col, sizeof col, "%s > ", low), sb_add(b, col), sb_int(b, qh);
        return;
    case ST_EB: /* ends before the value starts */
        snprintf(col, sizeof col, "%s < ", high), sb_add(b, col), sb_int(b, ql);
        return;
    case ST_AP: /* overlaps */
        snprintf(col, sizeof col, "(%s <= ", low), sb_add(b, col), sb_int(b, qh);
        snprintf(col, sizeof col, " AND %s >= ", high), sb_add(b, col), sb_int(b, ql), sb_add(b, ")");
        return;
    }
}

static void number_expr(sql_builder *b, st_prefix prefix, double value, double low, double high)
{
    if (low == 0 && high == 0)
        low = high = value;
    static const char *const op[] = {[ST_GT] = "x.value > ", [ST_LT] = "x.value < ", [ST_GE] = "x.value >= ",
                                     [ST_LE] = "x.value <= ", [ST_SA] = "x.value > ", [ST_EB] = "x.value < "};
    double margin = (value < 0 ? -value : value) / 10; /* ap: within 10%, as the spec suggests */
    switch (prefix) {
    case ST_NE:
        sb_add(b, "NOT ");
        /* fall through */
    case ST_EQ: /* [low, high): 5.4 covers 5.35 but not 5.45 */
        if (low == high)
            sb_add(b, "(x.value = "), sb_real(b, value), sb_add(b, ")");
        else
            sb_add(b, "(x.value >= "), sb_real(b, low), sb_add(b, " AND x.value < "), sb_real(b, high), sb_add(b, ")");
        return;
    case ST_AP:
        sb_add(b, "(x.value >= "), sb_real(b, value - margin), sb_add(b, " AND x.value <= ");
        sb_real(b, value + margin), sb_add(b, ")");
        return;
    default:
        sb_add(b, op[prefix]), sb_real(b, value);
        return;
    }
}

/* The smallest text greater than every text starting with prefix: its last byte plus one. */
static char *prefix_upper_bound(const char *prefix)
{
    char *upper = strdup(prefix);
    size_t n = upper ? strlen(upper) : 0;
    if (n)
        upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1); /* UTF-8 never has 0xFF bytes */
    return upper;
}

static st_status string_expr(sql_builder *b, st_modifier modifier, const char *text)
{
    if (modifier == ST_MOD_EXACT) {
        sb_add(b, "x.exact = "), sb_text(b, text);
        return ST_OK;
    }
    const char *norm = sb_own(b, st_normalize(text));
    if (modifier == ST_MOD_CONTAINS) {
        sb_add(b, "instr(x.normalized, "), sb_text(b, norm), sb_add(b, ") > 0");
        return ST_OK;
    }
    if (!*norm) {
        sb_add(b, "1");
        return ST_OK;
    }
    /* a prefix as a range, so that the index on normalized serves it */
    sb_add(b, "(x.normalized >= "), sb_text(b, norm), sb_add(b, " AND x.normalized < ");
    sb_text(b, sb_own(b, prefix_upper_bound(norm))), sb_add(b, ")");
    return ST_OK;
}

static void token_expr(sql_builder *b, const char *system, const char *code)
{
    sb_add(b, "(1");
    if (system && !*system)
        sb_add(b, " AND x.system IS NULL");
    else if (system)
        sb_add(b, " AND x.system = "), sb_text(b, system);
    if (code)
        sb_add(b, " AND x.code = "), sb_text(b, code);
    sb_add(b, ")");
}

static st_status reference_expr(sql_builder *b, const st_value *v)
{
    if (v->v.reference.url) {
        sb_add(b, "x.url = "), sb_text(b, v->v.reference.url);
        return ST_OK;
    }
    if (!v->v.reference.id)
        return ST_INVALID;
    sb_add(b, "(x.target_id = "), sb_text(b, v->v.reference.id);
    if (v->v.reference.type)
        sb_add(b, " AND x.target_type = "), sb_text(b, v->v.reference.type);
    sb_add(b, ")");
    return ST_OK;
}

static st_status quantity_expr(sql_builder *b, const st_value *v)
{
    sb_add(b, "(");
    number_expr(b, v->prefix, v->v.number.value, v->v.number.low, v->v.number.high);
    if (v->v.number.system)
        sb_add(b, " AND x.system = "), sb_text(b, v->v.number.system);
    if (v->v.number.code)
        sb_add(b, " AND x.code = "), sb_text(b, v->v.number.code);
    sb_add(b, ")");
    return ST_OK;
}

static st_status value_expr(sql_builder *b, const st_condition *c, const st_value *v)
{
    switch (c->kind) {
    case ST_KIND_STRING:
        return v->v.string.text ? string_expr(b, c->modifier, v->v.string.text) : ST_INVALID;
    case ST_KIND_TOKEN:
        token_expr(b, v->v.token.system, v->v.token.code);
        return ST_OK;
    case ST_KIND_REFERENCE:
        return reference_expr(b, v);
    case ST_KIND_DATE:
        date_expr(b, v->prefix, "x.low", "x.high", v->v.date.low_ms, v->v.date.high_ms);
        return ST_OK;
    case ST_KIND_NUMBER:
        number_expr(b, v->prefix, v->v.number.value, v->v.number.low, v->v.number.high);
        return ST_OK;
    case ST_KIND_QUANTITY:
        return quantity_expr(b, v);
    case ST_KIND_URI:
        if (!v->v.uri.uri)
            return ST_INVALID;
        sb_add(b, "x.uri = "), sb_text(b, v->v.uri.uri);
        return ST_OK;
    }
    return ST_INVALID;
}

static bool modifier_fits(const st_condition *c)
{
    switch (c->modifier) {
    case ST_MOD_NONE:
    case ST_MOD_MISSING:
        return true;
    case ST_MOD_EXACT:
    case ST_MOD_CONTAINS:
        return c->kind == ST_KIND_STRING;
    case ST_MOD_NOT:
        return c->kind == ST_KIND_TOKEN;
    }
    return false;
}

/* "(v1 OR v2 ...)" over the condition's values. */
static st_status values_expr(sql_builder *b, const st_condition *c)
{
    if (c->value_count == 0 || !c->values)
        return ST_INVALID;
    sb_add(b, "(");
    for (size_t i = 0; i < c->value_count; i++) {
        if (i)
            sb_add(b, " OR ");
        st_status s = value_expr(b, c, &c->values[i]);
        if (s != ST_OK)
            return s;
    }
    sb_add(b, ")");
    return ST_OK;
}

/* _id and _lastUpdated live in the resource table itself (alias `res`). */
static st_status builtin_condition(sql_builder *b, const st_condition *c, bool is_id, const char *res)
{
    char id_col[16], time_col[24];
    snprintf(id_col, sizeof id_col, "%s.id = ", res);
    snprintf(time_col, sizeof time_col, "%s.last_updated", res);
    if (c->modifier == ST_MOD_MISSING) {
        sb_add(b, c->missing ? "0" : "1"); /* every resource has both */
        return ST_OK;
    }
    if (c->value_count == 0 || !c->values)
        return ST_INVALID;
    if (is_id && c->modifier != ST_MOD_NONE && c->modifier != ST_MOD_NOT)
        return ST_INVALID;
    if (!is_id && c->modifier != ST_MOD_NONE)
        return ST_INVALID;
    sb_add(b, is_id && c->modifier == ST_MOD_NOT ? "NOT (" : "(");
    for (size_t i = 0; i < c->value_count; i++) {
        const st_value *v = &c->values[i];
        if (i)
            sb_add(b, " OR ");
        if (is_id) {
            if (!v->v.token.code)
                return ST_INVALID;
            sb_add(b, id_col), sb_text(b, v->v.token.code);
        } else {
            date_expr(b, v->prefix, time_col, time_col, v->v.date.low_ms, v->v.date.high_ms);
        }
    }
    sb_add(b, ")");
    return ST_OK;
}

/*
 * How well a condition can drive the query: 0 for equality lookups, 1 for
 * string prefixes, 2 for ranges, -1 for what never drives (negations,
 * :missing, :contains, the built-ins in the resource table itself).
 */
static int drive_rank(const st_condition *c)
{
    if (!c->param || c->param[0] == '_' || c->modifier == ST_MOD_NOT || c->modifier == ST_MOD_MISSING ||
        c->modifier == ST_MOD_CONTAINS || c->chain_len)
        return -1;
    for (size_t i = 0; i < c->value_count; i++)
        if (c->values && c->values[i].prefix == ST_NE)
            return -1;
    switch (c->kind) {
    case ST_KIND_TOKEN:
    case ST_KIND_REFERENCE:
    case ST_KIND_URI:
        return 0;
    case ST_KIND_STRING:
        return c->modifier == ST_MOD_EXACT ? 0 : 1;
    default:
        return 2;
    }
}

/* The index of the condition that drives the query, or -1 when none should. */
static long driving_condition(const st_query *q)
{
    long best = -1;
    int best_rank = 3;
    for (size_t i = 0; i < q->condition_count; i++) {
        int rank = drive_rank(&q->conditions[i]);
        if (rank >= 0 && rank < best_rank)
            best = (long)i, best_rank = rank;
    }
    return best;
}

/*
 * A condition over index rows. The driving one becomes "r.rid IN (SELECT
 * x.rid FROM index_<kind> x WHERE ...)", which SQLite runs first, from the
 * value index, visiting only the resources it yields. Every other one
 * becomes a correlated "[NOT] EXISTS (... WHERE x.rid = r.rid ...)": a probe
 * of the (rid, param) index per candidate. (As IN lists they would each be
 * materialised in full, which for "gender=male" is half the table.)
 */
static st_status row_condition(sql_builder *b, const st_query *q, const st_condition *c, bool drives, const char *res)
{
    if (!c->param || (unsigned)c->kind > ST_KIND_URI || !modifier_fits(c))
        return ST_INVALID;
    if (strcmp(c->param, "_id") == 0)
        return builtin_condition(b, c, true, res);
    if (strcmp(c->param, "_lastUpdated") == 0)
        return builtin_condition(b, c, false, res);

    bool negated = c->modifier == ST_MOD_NOT || (c->modifier == ST_MOD_MISSING && c->missing);
    if (drives)
        sb_add(b, "r.rid IN (SELECT x.rid FROM ");
    else
        sb_add(b, negated ? "NOT EXISTS (SELECT 1 FROM " : "EXISTS (SELECT 1 FROM ");
    sb_add(b, INDEX_TABLE[c->kind]);
    if (drives) {
        sb_add(b, " x WHERE ");
    } else {
        char join[48];
        snprintf(join, sizeof join, " x WHERE x.rid = %s.rid AND ", res);
        sb_add(b, join);
    }
    if (drives && q->type)
        sb_add(b, "x.type = "), sb_text(b, q->type), sb_add(b, " AND ");
    sb_add(b, "x.param = "), sb_text(b, c->param);
    if (c->modifier != ST_MOD_MISSING) {
        sb_add(b, " AND ");
        st_status s = values_expr(b, c);
        if (s != ST_OK)
            return s;
    }
    sb_add(b, ")");
    return ST_OK;
}

static void text_list(sql_builder *b, const char *const *texts, size_t count)
{
    sb_add(b, "(");
    for (size_t i = 0; i < count; i++)
        sb_add(b, i ? ", " : ""), sb_text(b, texts[i]);
    sb_add(b, ")");
}

/* " AND (<res> is owned by or addressed to one of orgs)" */
static void visibility_expr(sql_builder *b, const char *const *orgs, size_t count, const char *res)
{
    char text[80];
    snprintf(text, sizeof text, " AND (%s.owner IN ", res);
    sb_add(b, text), text_list(b, orgs, count);
    snprintf(text, sizeof text, " OR EXISTS (SELECT 1 FROM access_tag a WHERE a.rid = %s.rid AND a.tag IN ", res);
    sb_add(b, text), text_list(b, orgs, count), sb_add(b, ")");
    /* what an active Task addressed to them lets them read */
    snprintf(text, sizeof text, " OR EXISTS (SELECT 1 FROM access_grant g WHERE g.rid = %s.rid AND g.tag IN ", res);
    sb_add(b, text), text_list(b, orgs, count), sb_add(b, "))");
}

/* " AND (<res> may be seen by whom v describes)"; nothing when v is NULL. */
static void linked_visibility(sql_builder *b, const st_visibility *v, const char *res)
{
    if (!v)
        return;
    char text[48];
    if (v->type_count) {
        snprintf(text, sizeof text, " AND %s.type IN ", res);
        sb_add(b, text), text_list(b, v->types, v->type_count);
    }
    if (v->shared_type_count) {
        snprintf(text, sizeof text, " AND (%s.type IN ", res);
        sb_add(b, text), text_list(b, v->shared_types, v->shared_type_count);
        if (v->org_count)
            sb_add(b, " OR 1"), visibility_expr(b, v->orgs, v->org_count, res);
        sb_add(b, ")");
    } else if (v->org_count) {
        visibility_expr(b, v->orgs, v->org_count, res);
    } else {
        sb_add(b, " AND 0");
    }
}

/*
 * A chained condition from the resource `res`: one EXISTS per link, each
 * joining index_reference to the resources it reaches (alias c1, c2, ...),
 * which must be current and visible, down to the condition on the last.
 */
static st_status chain_condition(sql_builder *b, const st_query *q, const st_condition *c, size_t depth,
                                 const char *res)
{
    if (depth == c->chain_len)
        return row_condition(b, q, c, false, res);
    const st_link *l = &c->chain[depth];
    if (!l->param || (l->reverse && !l->type))
        return ST_INVALID;
    char at[8], text[200];
    snprintf(at, sizeof at, "c%zu", depth + 1);
    if (!l->reverse) /* the resources res points at */
        snprintf(text, sizeof text,
                 "EXISTS (SELECT 1 FROM index_reference l%zu JOIN resource %s ON %s.type = l%zu.target_type"
                 " AND %s.id = l%zu.target_id WHERE l%zu.rid = %s.rid AND l%zu.param = ",
                 depth + 1, at, at, depth + 1, at, depth + 1, depth + 1, res, depth + 1);
    else /* the resources of l->type pointing at res */
        snprintf(text, sizeof text,
                 "EXISTS (SELECT 1 FROM index_reference l%zu JOIN resource %s ON %s.rid = l%zu.rid"
                 " WHERE l%zu.target_type = %s.type AND l%zu.target_id = %s.id AND l%zu.param = ",
                 depth + 1, at, at, depth + 1, depth + 1, res, depth + 1, res, depth + 1);
    sb_add(b, text), sb_text(b, l->param);
    if (l->type) {
        snprintf(text, sizeof text, " AND l%zu.%s = ", depth + 1, l->reverse ? "type" : "target_type");
        sb_add(b, text), sb_text(b, l->type);
    }
    snprintf(text, sizeof text, " AND %s.deleted = 0", at);
    sb_add(b, text);
    linked_visibility(b, q->linked, at);
    sb_add(b, " AND ");
    st_status s = chain_condition(b, q, c, depth + 1, at);
    sb_add(b, ")");
    return s;
}

static st_status condition_expr(sql_builder *b, const st_query *q, const st_condition *c, bool drives)
{
    if (c->chain_len > 0)
        return c->chain ? chain_condition(b, q, c, 0, "r") : ST_INVALID;
    return row_condition(b, q, c, drives, "r");
}

/* ---- Keyset paging ---- */

/* Is the query in the keyset order (lastUpdated, then id)? *descending: its direction. */
static bool keyset_order(const st_query *q, bool *descending)
{
    *descending = true;
    if (q->sort_count == 0)
        return true;
    if (q->sort_count == 1 && q->sort && q->sort[0].param && !strcmp(q->sort[0].param, "_lastUpdated")) {
        *descending = q->sort[0].descending;
        return true;
    }
    return false;
}

/* r's sort key: its lastUpdated as of the snapshot (NULL when it did not exist then), or now. */
static void key_expr(sql_builder *b, const st_query *q)
{
    if (!q->snapshot) {
        sb_add(b, "r.last_updated");
        return;
    }
    /* unchanged since the snapshot: its own; else the version current then (versions grow with seq,
     * so the (rid, version) index serves) */
    sb_add(b, "(CASE WHEN r.current_seq <= "), sb_int(b, q->snapshot);
    sb_add(b, " THEN r.last_updated ELSE (SELECT k.last_updated FROM resource_version k WHERE k.rid = r.rid"
              " AND k.seq <= ");
    sb_int(b, q->snapshot), sb_add(b, " ORDER BY k.version DESC LIMIT 1) END)");
}

/* The order pages are read in: the display order, reversed for a `before` cursor. */
static bool reading_descending(const st_query *q)
{
    bool descending;
    keyset_order(q, &descending);
    return q->cursor && q->cursor->before ? !descending : descending;
}

/* " AND <key, id> beyond the cursor in the reading order" */
static void cursor_expr(sql_builder *b, const st_query *q)
{
    const char *op = reading_descending(q) ? " < " : " > ";
    sb_add(b, " AND ("), key_expr(b, q), sb_add(b, op), sb_int(b, q->cursor->key_ms);
    sb_add(b, " OR ("), key_expr(b, q), sb_add(b, " = "), sb_int(b, q->cursor->key_ms);
    sb_add(b, " AND r.rid"), sb_add(b, op), sb_int(b, q->cursor->rid), sb_add(b, "))");
}

/* History: each version is visible to its owner and to whom that version was addressed. */
static void version_visibility_expr(sql_builder *b, const char *const *orgs, size_t count)
{
    sb_add(b, " AND (r.owner IN "), text_list(b, orgs, count);
    for (size_t i = 0; i < count; i++) {
        sb_add(b, " OR instr(char(31) || coalesce(v.tags, '') || char(31), char(31) || ");
        sb_text(b, orgs[i]);
        sb_add(b, " || char(31)) > 0");
    }
    sb_add(b, ")");
}

/* The WHERE clause of a search over "resource r" (without the word WHERE). */
static st_status where_clause(sql_builder *b, const st_query *q)
{
    long driver = driving_condition(q);
    sb_add(b, "r.deleted = 0");
    /* with a driving condition, "+" keeps the planner (which has no statistics) off the type index */
    if (q->type)
        sb_add(b, driver >= 0 ? " AND +r.type = " : " AND r.type = "), sb_text(b, q->type);
    for (size_t i = 0; i < q->condition_count; i++) {
        sb_add(b, " AND ");
        st_status s = condition_expr(b, q, &q->conditions[i], (long)i == driver);
        if (s != ST_OK)
            return s;
    }
    if (q->visible_to_count)
        visibility_expr(b, q->visible_to, q->visible_to_count, "r");
    if (q->snapshot) /* only what existed at the snapshot */
        sb_add(b, " AND "), key_expr(b, q), sb_add(b, " IS NOT NULL");
    return b->oom ? ST_INTERNAL : ST_OK;
}

static const char *sort_column(st_kind kind, bool descending)
{
    switch (kind) {
    case ST_KIND_STRING:
        return "normalized";
    case ST_KIND_TOKEN:
        return "code";
    case ST_KIND_REFERENCE:
        return "coalesce(target_id, url)";
    case ST_KIND_DATE:
        return descending ? "high" : "low";
    case ST_KIND_NUMBER:
    case ST_KIND_QUANTITY:
        return "value";
    case ST_KIND_URI:
        return "uri";
    }
    return NULL;
}

static st_status order_clause(sql_builder *b, const st_query *q)
{
    bool descending;
    if (keyset_order(q, &descending)) {
        const char *dir = reading_descending(q) ? " DESC" : " ASC";
        sb_add(b, " ORDER BY "), key_expr(b, q), sb_add(b, dir), sb_add(b, ", r.rid"), sb_add(b, dir);
        return ST_OK;
    }
    sb_add(b, " ORDER BY ");
    for (size_t i = 0; i < q->sort_count; i++) {
        const st_sort *s = &q->sort[i];
        const char *dir = s->descending ? " DESC" : " ASC";
        if (!s->param)
            return ST_INVALID;
        if (strcmp(s->param, "_lastUpdated") == 0) {
            sb_add(b, "r.last_updated"), sb_add(b, dir);
        } else if (strcmp(s->param, "_id") == 0) {
            sb_add(b, "r.id"), sb_add(b, dir);
        } else {
            const char *column = (unsigned)s->kind <= ST_KIND_URI ? sort_column(s->kind, s->descending) : NULL;
            if (!column)
                return ST_INVALID;
            /* a resource sorts by its lowest value ascending, its highest descending; none last */
            sb_add(b, s->descending ? "(SELECT max(" : "(SELECT min("), sb_add(b, column), sb_add(b, ") FROM ");
            sb_add(b, INDEX_TABLE[s->kind]), sb_add(b, " WHERE rid = r.rid AND param = "), sb_text(b, s->param);
            sb_add(b, ")"), sb_add(b, dir), sb_add(b, " NULLS LAST");
        }
        sb_add(b, ", ");
    }
    sb_add(b, "r.rid"); /* ties: creation order, so that pages do not overlap */
    return ST_OK;
}

/* ---- Reading rows into results -------------------------------------------------------------- */

/* Columns: type, id, version, last_updated, method, json, owner, tags. */
static bool fill_from_row(sqlite3_stmt *stmt, st_resource *out)
{
    const char *json = (const char *)sqlite3_column_text(stmt, 5);
    size_t json_len = (size_t)sqlite3_column_bytes(stmt, 5);
    return st__resource_fill(out, (const char *)sqlite3_column_text(stmt, 0),
                             (const char *)sqlite3_column_text(stmt, 1), sqlite3_column_int64(stmt, 2),
                             sqlite3_column_int64(stmt, 3), (st_method)sqlite3_column_int(stmt, 4), json, json_len,
                             (const char *)sqlite3_column_text(stmt, 6), (const char *)sqlite3_column_text(stmt, 7));
}

static st_status step_error(conn *c, int rc, st_error *err)
{
    st__error(err, "%s", sqlite3_errmsg(c->db));
    st_status s = status_of(rc);
    return s == ST_OK ? ST_INTERNAL : s;
}

/* Steps through a page query, appending every row to out. */
static st_status collect(conn *c, sqlite3_stmt *stmt, st_list *out, st_error *err)
{
    size_t capacity = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        st_resource *slot = st__list_push(out, &capacity);
        if (!slot || !fill_from_row(stmt, slot)) {
            if (slot)
                out->count--;
            st__error(err, "out of memory");
            return ST_INTERNAL;
        }
    }
    return rc == SQLITE_DONE ? ST_OK : step_error(c, rc, err);
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
    sqlite3_stmt *stmt = fixed(c, version ? READ_VERSION : READ_CURRENT);
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

/* ---- Search and history ---------------------------------------------------------------------- */

#define PAGE_COLUMNS "SELECT r.type, r.id, r.version, r.last_updated, v.method, v.json, r.owner, " SELECT_TAGS " "

static size_t page_size(size_t count)
{
    return count ? count : LIM(page_size_default);
}

/* Runs a prepared dynamic statement with the first bind_count binds of b. */
static sqlite3_stmt *prepare_built(conn *c, sql_builder *b, size_t bind_count, st_error *err)
{
    sqlite3_stmt *stmt = dynamic(c, b->text);
    if (!stmt) {
        st__error(err, "preparing a query: %s", sqlite3_errmsg(c->db));
        return NULL;
    }
    bind_all(stmt, b, bind_count);
    return stmt;
}

static st_status search_total(conn *c, const st_query *q, int64_t *total, st_error *err)
{
    sql_builder b = {0};
    sb_add(&b, "SELECT count(*) FROM resource r WHERE ");
    st_status s = where_clause(&b, q);
    sqlite3_stmt *stmt = s == ST_OK ? prepare_built(c, &b, b.bind_count, err) : NULL;
    if (s == ST_OK && !stmt)
        s = ST_INTERNAL;
    if (stmt)
        s = count_rows(c, stmt, total, err);
    finish(stmt);
    sb_free(&b);
    return s;
}

/* The sort key (column 8) and rid (column 9) of each row collected, in step with the list. */
typedef struct row_keys {
    int64_t *keys, *rids;
    size_t count, cap;
} row_keys;

static void row_keys_free(row_keys *k)
{
    free(k->keys);
    free(k->rids);
    memset(k, 0, sizeof *k);
}

static bool row_keys_push(row_keys *k, int64_t key, int64_t rid)
{
    size_t cap = k->cap;
    if (!fa_reserve(&k->keys, &cap, k->count + 1, sizeof *k->keys) ||
        !fa_reserve(&k->rids, &k->cap, k->count + 1, sizeof *k->rids))
        return false;
    k->keys[k->count] = key;
    k->rids[k->count++] = rid;
    return true;
}

/* Like collect, keeping each row's key and rid in *keys; *capacity is out's (kept across calls). */
static st_status collect_keyed(conn *c, sqlite3_stmt *stmt, st_list *out, size_t *capacity, row_keys *keys,
                               st_error *err)
{
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        st_resource *slot = st__list_push(out, capacity);
        if (slot && !fill_from_row(stmt, slot))
            slot = NULL, out->count--;
        if (!slot || !row_keys_push(keys, sqlite3_column_int64(stmt, 8), sqlite3_column_int64(stmt, 9))) {
            st__error(err, "out of memory");
            return ST_INTERNAL;
        }
    }
    return rc == SQLITE_DONE ? ST_OK : step_error(c, rc, err);
}

/*
 * A keyset page was read with one row too many (to know whether another
 * follows) and, for a `before` cursor, in reverse: trim and turn it into
 * display order, and note the first and last keys.
 */
static void finish_keyset_page(const st_query *q, st_list *out, row_keys *k)
{
    size_t want = page_size(q->count);
    out->more = out->count > want;
    while (out->count > want)
        st_resource_free(&out->items[--out->count]);
    k->count = out->count;
    const int64_t *keys = k->keys;
    for (size_t i = 0; i < out->count; i++) /* before reversing: the items carry their keys along */
        out->items[i].key_ms = keys[i], out->items[i].rid = k->rids[i];
    bool reversed = q->cursor && q->cursor->before;
    for (size_t i = 0; reversed && i < out->count / 2; i++) {
        st_resource t = out->items[i];
        out->items[i] = out->items[out->count - 1 - i];
        out->items[out->count - 1 - i] = t;
    }
    if (out->count) {
        size_t first = reversed ? out->count - 1 : 0, last = reversed ? 0 : out->count - 1;
        out->first_key_ms = keys[first], out->last_key_ms = keys[last];
        out->first_rid = k->rids[first], out->last_rid = k->rids[last];
    }
}

/* The page; the rids of its matches in *rows (for includes). */
static st_status search_page(conn *c, const st_query *q, st_list *out, row_keys *rows, st_error *err)
{
    bool descending, keyset = keyset_order(q, &descending);
    if (q->cursor && !keyset)
        return ST_INVALID;
    /* The page's rows are chosen and ordered first by (rid, key) alone, and only they are joined to their
     * JSON: a sort over a computed key (the snapshot's) would otherwise carry every candidate's JSON
     * through the sorter, and a page read in chunks would pay for that once per chunk. */
    sql_builder b = {0};
    sb_add(&b, PAGE_COLUMNS ", p.k, p.rid FROM (SELECT r.rid AS rid, "), key_expr(&b, q);
    sb_add(&b, " AS k FROM resource r WHERE ");
    st_status s = where_clause(&b, q);
    if (s == ST_OK && q->cursor)
        cursor_expr(&b, q);
    if (s == ST_OK)
        s = order_clause(&b, q);
    if (s == ST_OK) {
        sb_add(&b, " LIMIT "), sb_int(&b, (int64_t)page_size(q->count) + keyset);
        sb_add(&b, " OFFSET "), sb_int(&b, (int64_t)q->offset);
        sb_add(&b, ") p JOIN resource r ON r.rid = p.rid JOIN resource_version v ON v.seq = r.current_seq");
        if (keyset) {
            const char *dir = reading_descending(q) ? " DESC" : " ASC";
            sb_add(&b, " ORDER BY p.k"), sb_add(&b, dir), sb_add(&b, ", p.rid"), sb_add(&b, dir);
        } else {
            s = order_clause(&b, q); /* the same expressions over the page's rows only */
        }
    }
    if (s == ST_OK && b.oom)
        s = ST_INTERNAL;
    sqlite3_stmt *stmt = s == ST_OK ? prepare_built(c, &b, b.bind_count, err) : NULL;
    if (s == ST_OK && !stmt)
        s = ST_INTERNAL;
    size_t capacity = 0;
    if (stmt)
        s = collect_keyed(c, stmt, out, &capacity, rows, err);
    if (s == ST_OK && keyset)
        finish_keyset_page(q, out, rows);
    finish(stmt);
    sb_free(&b);
    return s;
}

/* ---- Includes ---- */

#define INCLUDE_ROUNDS LIM(include_rounds) /* :iterate applies this often at most */

static void rid_list(sql_builder *b, const int64_t *rids, size_t n)
{
    sb_add(b, "(");
    for (size_t i = 0; i < n; i++)
        sb_add(b, i ? ", " : ""), sb_int(b, rids[i]);
    sb_add(b, ")");
}

/*
 * One include over the resources `from` (rids): appends the resources it
 * reaches that are not in `seen` to out->included (their rids to seen),
 * at most `room` of them (one more is read to know whether there were).
 */
static st_status include_once(conn *c, const st_query *q, const st_include *inc, const int64_t *from, size_t nfrom,
                              row_keys *seen, size_t room, st_list *inc_list, size_t *capacity, bool *truncated,
                              st_error *err)
{
    if (inc->reverse && (!inc->type || !inc->param))
        return ST_INVALID;
    sql_builder b = {0};
    sb_add(&b, PAGE_COLUMNS ", 0, r.rid FROM resource r JOIN resource_version v ON v.seq = r.current_seq"
               " WHERE r.deleted = 0");
    linked_visibility(&b, q->linked, "r");
    sb_add(&b, inc->reverse ? " AND r.rid IN (SELECT l.rid" : " AND r.rid IN (SELECT t.rid");
    sb_add(&b, " FROM index_reference l JOIN resource t ON t.type = l.target_type AND t.id = l.target_id WHERE ");
    sb_add(&b, inc->reverse ? "t.rid IN " : "l.rid IN "), rid_list(&b, from, nfrom);
    if (inc->type)
        sb_add(&b, " AND l.type = "), sb_text(&b, inc->type);
    if (inc->param)
        sb_add(&b, " AND l.param = "), sb_text(&b, inc->param);
    if (inc->target_type)
        sb_add(&b, " AND l.target_type = "), sb_text(&b, inc->target_type);
    sb_add(&b, ") AND r.rid NOT IN "), rid_list(&b, seen->rids, seen->count);
    sb_add(&b, " ORDER BY r.rid LIMIT "), sb_int(&b, (int64_t)room + 1);
    st_status s = b.oom ? ST_INTERNAL : ST_OK;
    sqlite3_stmt *stmt = s == ST_OK ? prepare_built(c, &b, b.bind_count, err) : NULL;
    if (s == ST_OK && !stmt)
        s = ST_INTERNAL;
    size_t before = inc_list->count;
    if (stmt)
        s = collect_keyed(c, stmt, inc_list, capacity, seen, err);
    if (s == ST_OK && inc_list->count - before > room) {
        *truncated = true;
        st_resource_free(&inc_list->items[--inc_list->count]);
        seen->count--;
    }
    finish(stmt);
    sb_free(&b);
    return s;
}

/* The includes of the page whose match rids are in `rows`, round by round (:iterate), into out->included. */
static st_status search_includes(conn *c, const st_query *q, st_list *out, row_keys *rows, st_error *err)
{
    size_t max = q->max_included ? q->max_included : LIM(included_max), capacity = 0;
    st_list inc = {0};
    st_status s = ST_OK;
    size_t frontier = 0, end = rows->count; /* rows->rids[frontier..end): what the round starts from */
    for (int round = 0; s == ST_OK && round < INCLUDE_ROUNDS && frontier < end; round++) {
        for (size_t i = 0; s == ST_OK && i < q->include_count && !out->included_truncated; i++) {
            const st_include *in = &q->includes[i];
            if (round == 0 || in->iterate)
                s = include_once(c, q, in, rows->rids + frontier, end - frontier, rows, max - inc.count, &inc,
                                 &capacity, &out->included_truncated, err);
        }
        frontier = end, end = rows->count;
    }
    out->included = inc.items;
    out->included_count = inc.count;
    return s;
}

/* count and page in one read transaction, so that the total matches the page */
static st_status search(void *reader, const st_query *q, st_list *out, st_error *err)
{
    conn *c = reader;
    st_status s = run_fixed(c, BEGIN_READ, err);
    if (s != ST_OK)
        return s;
    out->snapshot = q->snapshot;
    if (!q->snapshot) { /* the change sequence this page reads at, for the next pages */
        sqlite3_stmt *stmt = fixed(c, LAST_SEQ);
        s = stmt ? count_rows(c, stmt, &out->snapshot, err) : ST_INTERNAL;
        finish(stmt);
    }
    if (s == ST_OK && q->want_total)
        s = search_total(c, q, &out->total, err);
    row_keys rows = {0};
    if (s == ST_OK && (q->count || !q->want_total))
        s = search_page(c, q, out, &rows, err);
    if (s == ST_OK && q->include_count && out->count)
        s = search_includes(c, q, out, &rows, err);
    row_keys_free(&rows);
    if (s == ST_INVALID)
        st__error(err, "unsupported search (modifier, kind or value)");
    run_fixed(c, END_READ, NULL);
    return s;
}

static st_status find_rid(conn *c, const char *type, const char *id, int64_t *rid, st_error *err)
{
    sqlite3_stmt *stmt = fixed(c, FIND_RESOURCE);
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

static void history_where(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto)
{
    sb_add(b, " WHERE v.seq <= "), sb_int(b, upto);
    if (rid)
        sb_add(b, " AND v.rid = "), sb_int(b, rid);
    else if (q->type)
        sb_add(b, " AND v.type = "), sb_text(b, q->type);
    if (q->since_ms != INT64_MIN)
        sb_add(b, " AND v.last_updated >= "), sb_int(b, q->since_ms);
    if (q->visible_to_count)
        version_visibility_expr(b, q->visible_to, q->visible_to_count);
}

static st_status history_run(conn *c, const st_history_query *q, int64_t rid, st_list *out, st_error *err)
{
    sql_builder count_sql = {0}, page_sql = {0};
    sb_add(&count_sql, "SELECT count(*) FROM resource_version v JOIN resource r ON r.rid = v.rid");
    history_where(&count_sql, q, rid, out->snapshot);
    sb_add(&page_sql, "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.json, r.owner, v.tags"
                      " FROM resource_version v JOIN resource r ON r.rid = v.rid");
    history_where(&page_sql, q, rid, out->snapshot);
    sb_add(&page_sql, " ORDER BY v.seq DESC LIMIT "), sb_int(&page_sql, (int64_t)q->count);
    sb_add(&page_sql, " OFFSET "), sb_int(&page_sql, (int64_t)q->offset);

    st_status s = count_sql.oom || page_sql.oom ? ST_INTERNAL : ST_OK;
    sqlite3_stmt *stmt = s == ST_OK ? prepare_built(c, &count_sql, count_sql.bind_count, err) : NULL;
    s = stmt ? count_rows(c, stmt, &out->total, err) : ST_INTERNAL;
    finish(stmt);
    if (s == ST_OK && q->count) { /* count 0: the total only */
        stmt = prepare_built(c, &page_sql, page_sql.bind_count, err);
        s = stmt ? collect(c, stmt, out, err) : ST_INTERNAL;
        finish(stmt);
    }
    sb_free(&count_sql);
    sb_free(&page_sql);
    return s;
}

static st_status history(void *reader, const st_history_query *q, st_list *out, st_error *err)
{
    conn *c = reader;
    st_status s = run_fixed(c, BEGIN_READ, err);
    if (s != ST_OK)
        return s;
    int64_t rid = 0;
    if (q->id)
        s = find_rid(c, q->type, q->id, &rid, err);
    out->snapshot = q->upto;
    if (s == ST_OK && !q->upto) {
        sqlite3_stmt *stmt = fixed(c, LAST_SEQ);
        s = stmt ? count_rows(c, stmt, &out->snapshot, err) : ST_INTERNAL;
        finish(stmt);
    }
    if (s == ST_OK)
        s = history_run(c, q, rid, out, err);
    run_fixed(c, END_READ, NULL);
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
    sqlite3_stmt *stmt = fixed(c, FIND_RESOURCE);
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
    static const fixed_stmt insert_of[] = {
        [ST_KIND_STRING] = INSERT_STRING, [ST_KIND_TOKEN] = INSERT_TOKEN, [ST_KIND_REFERENCE] = INSERT_REFERENCE,
        [ST_KIND_DATE] = INSERT_DATE,     [ST_KIND_NUMBER] = INSERT_NUMBER, [ST_KIND_QUANTITY] = INSERT_NUMBER,
        [ST_KIND_URI] = INSERT_URI,
    };
    if (!row->param || (unsigned)row->kind > ST_KIND_URI)
        return SQLITE_MISUSE;
    sqlite3_stmt *stmt = fixed(c, insert_of[row->kind]);
    if (!stmt)
        return sqlite3_errcode(c->db);
    char *normalized = NULL;
    sqlite3_bind_int64(stmt, 1, rid);
    sqlite3_bind_text(stmt, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, row->param, -1, SQLITE_STATIC);
    switch (row->kind) {
    case ST_KIND_STRING:
        normalized = st_normalize(row->v.string.text ? row->v.string.text : "");
        if (!normalized)
            return finish(stmt), SQLITE_NOMEM;
        sqlite3_bind_text(stmt, 4, normalized, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 5, row->v.string.text ? row->v.string.text : "", -1, SQLITE_STATIC);
        break;
    case ST_KIND_TOKEN:
        bind_text_or_null(stmt, 4, row->v.token.system);
        bind_text_or_null(stmt, 5, row->v.token.code);
        break;
    case ST_KIND_REFERENCE:
        bind_text_or_null(stmt, 4, row->v.reference.type);
        bind_text_or_null(stmt, 5, row->v.reference.id);
        bind_text_or_null(stmt, 6, row->v.reference.url);
        break;
    case ST_KIND_DATE:
        sqlite3_bind_int64(stmt, 4, row->v.date.low_ms);
        sqlite3_bind_int64(stmt, 5, row->v.date.high_ms);
        break;
    case ST_KIND_NUMBER:
    case ST_KIND_QUANTITY:
        sqlite3_bind_double(stmt, 4, row->v.number.value);
        bind_text_or_null(stmt, 5, row->v.number.system);
        bind_text_or_null(stmt, 6, row->v.number.code);
        break;
    case ST_KIND_URI:
        sqlite3_bind_text(stmt, 4, row->v.uri.uri ? row->v.uri.uri : "", -1, SQLITE_STATIC);
        break;
    }
    int rc = run(stmt);
    free(normalized);
    return rc;
}

static int delete_index_rows(conn *c, int64_t rid)
{
    for (fixed_stmt d = DELETE_STRING; d <= DELETE_URI; d++) {
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

static int bind_rid_run(conn *c, fixed_stmt which, int64_t rid, const char *text)
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
static int write_index(conn *c, const st_op *op, int64_t rid, bool had_rows)
{
    int rc = had_rows ? delete_index_rows(c, rid) : SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < op->row_count; i++)
        rc = insert_index_row(c, rid, op->type, &op->rows[i]);
    if (rc == SQLITE_OK && had_rows)
        rc = bind_rid_run(c, DELETE_TAGS, rid, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < op->access_tag_count; i++)
        rc = bind_rid_run(c, INSERT_TAG, rid, op->access_tags[i]);
    return rc;
}

static int insert_resource(conn *c, const st_op *op, int64_t *rid)
{
    sqlite3_stmt *stmt = fixed(c, INSERT_RESOURCE);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_text(stmt, 1, op->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, op->owner ? op->owner : "", -1, SQLITE_STATIC);
    int rc = run(stmt);
    *rid = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* A version's access tags as stored: separated by char(31); "" when it is addressed to no one. */
static char *join_tags(const st_op *op)
{
    size_t len = 1;
    for (size_t i = 0; i < op->access_tag_count; i++)
        len += strlen(op->access_tags[i]) + 1;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < op->access_tag_count; i++) {
        if (i)
            *p++ = 31;
        size_t n = strlen(op->access_tags[i]);
        memcpy(p, op->access_tags[i], n);
        p += n;
    }
    *p = '\0';
    return out;
}

static int insert_version(conn *c, const st_op *op, int64_t rid, int64_t version, int64_t stamp, st_method method,
                          const char *json, size_t json_len, int64_t *seq)
{
    sqlite3_stmt *stmt = fixed(c, INSERT_VERSION);
    if (!stmt)
        return sqlite3_errcode(c->db);
    sqlite3_bind_int64(stmt, 1, rid);
    sqlite3_bind_text(stmt, 2, op->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, version);
    sqlite3_bind_int64(stmt, 5, stamp);
    sqlite3_bind_int(stmt, 6, (int)method);
    if (json)
        sqlite3_bind_text(stmt, 7, json, (int)json_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 7);
    char *tags = json ? join_tags(op) : NULL;
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
    int rc = bind_rid_run(c, DELETE_GRANTS, rid, NULL);
    sqlite3_stmt *stmt = NULL;
    for (size_t g = 0; rc == SQLITE_OK && !deleting && g < op->grant_count; g++)
        for (size_t t = 0; rc == SQLITE_OK && t < op->access_tag_count; t++) {
            if (!(stmt = fixed(c, INSERT_GRANT)))
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
    sqlite3_stmt *stmt = fixed(c, UPDATE_RESOURCE);
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
    char *json = deleting ? NULL : st__render(op, version, last_updated, &json_len, res);
    if (!deleting && !json)
        return;

    int64_t rid = cur->rid, seq = 0;
    int rc = cur->found ? SQLITE_OK : insert_resource(c, op, &rid);
    if (rc == SQLITE_OK)
        rc = insert_version(c, op, rid, version, stamp, method, json, json_len, &seq);
    if (rc == SQLITE_OK)
        rc = update_resource(c, rid, version, stamp, deleting, seq);
    if (rc == SQLITE_OK)
        rc = deleting ? delete_index_rows(c, rid) : write_index(c, op, rid, cur->found);
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
    st_query q = *op->if_none_exist;
    q.count = 2, q.offset = 0, q.want_total = false, q.sort = NULL, q.sort_count = 0;
    sql_builder b = {0};
    sb_add(&b, "SELECT r.id, r.version, r.last_updated FROM resource r WHERE ");
    st_status s = where_clause(&b, &q);
    sb_add(&b, " LIMIT 2");
    if (s != ST_OK || b.oom) {
        sb_free(&b);
        st__result_message(res, s == ST_OK ? ST_INTERNAL : s, "unsupported If-None-Exist query");
        return;
    }
    st_error err = {{0}};
    sqlite3_stmt *stmt = prepare_built(c, &b, b.bind_count, &err);
    int matches = 0, rc = SQLITE_OK;
    while (stmt && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (matches++ == 0) {
            snprintf(res->id, sizeof res->id, "%s", (const char *)sqlite3_column_text(stmt, 0));
            current found = {.version = sqlite3_column_int64(stmt, 1), .last_updated = sqlite3_column_int64(stmt, 2)};
            report_current(res, ST_EXISTS, &found);
        }
    }
    finish(stmt);
    sb_free(&b);
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
    case ST_OP_UPDATE:
        apply_update(c, ctx, op, &cur, res);
        return;
    case ST_OP_DELETE:
        apply_delete(c, ctx, op, &cur, res);
        return;
    }
    st__result_message(res, ST_INVALID, "unknown operation");
}

const st_backend st_sqlite_backend = {
    .name = "sqlite",
    .open_writer = open_writer,
    .close_writer = close_writer,
    .open_reader = open_reader,
    .close_reader = close_reader,
    .begin_batch = begin_batch,
    .commit_batch = commit_batch,
    .rollback_batch = rollback_batch,
    .begin_txn = begin_txn,
    .end_txn = end_txn,
    .apply = apply,
    .maintain = maintain,
    .read = read_resource,
    .history = history,
    .search = search,
};
