/*
 * tests/test_wal_buffer.c — gateway/store/wal_buffer.h: a database written
 * through the gathering VFS (WAL, synchronous=FULL) is, after each commit,
 * exactly what a second connection on the default VFS reads, whether the
 * commit was smaller or larger than the buffer; the WAL survives a writer
 * that never closes (its commits synced) and is read back from the file;
 * checkpoints by a connection on the checkpointer VFS, on a thread of its
 * own as in the store, leave in the database file alone exactly what was
 * committed, through WAL restarts that overwrite the frames it read ahead;
 * with deferred syncs a commit syncs nothing but the header of a restarted
 * WAL (counted by a VFS beneath the gathering one).
 *
 * Memory: each test opens and closes its own connections in a fresh folder.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/store/wal_buffer.h"

static char dir[] = "/tmp/test-wal-buffer.XXXXXX", path[64];

static void setup(void)
{
    strcpy(dir, "/tmp/test-wal-buffer.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(wal_buffer, .init = setup, .fini = teardown, .timeout = 60);

static sqlite3 *open_db(const char *vfs)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA journal_mode=WAL;", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

/* One transaction of n rows of `size` bytes, each filled with its row number's low byte. */
static void insert_rows(sqlite3 *db, int first, int n, int size)
{
    char *blob = malloc((size_t)size);
    cr_assert_not_null(blob);
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO t (n, body) VALUES (?1, ?2)", -1, &s, NULL), SQLITE_OK);
    for (int i = first; i < first + n; i++) {
        memset(blob, i & 0xff, (size_t)size);
        sqlite3_bind_int(s, 1, i);
        sqlite3_bind_blob(s, 2, blob, size, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(s), SQLITE_DONE, "%s", sqlite3_errmsg(db));
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    free(blob);
}

/* Rows and whether every byte of every body is its row number's low byte, as db reads them. */
static int rows_intact(sqlite3 *db, int *rows)
{
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT n, body FROM t ORDER BY n", -1, &s, NULL), SQLITE_OK);
    int bad = 0;
    *rows = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        int n = sqlite3_column_int(s, 0), len = sqlite3_column_bytes(s, 1);
        const unsigned char *b = sqlite3_column_blob(s, 1);
        for (int i = 0; i < len; i++)
            bad += b[i] != (n & 0xff);
        ++*rows;
    }
    sqlite3_finalize(s);
    return bad;
}

Test(wal_buffer, every_commit_is_what_a_reader_on_the_default_vfs_sees)
{
    cr_assert_not_null(wb_vfs_name());
    sqlite3 *w = open_db(wb_vfs_name()), *r = open_db(NULL);
    cr_assert_eq(sqlite3_exec(w, "CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)", NULL, NULL, NULL), SQLITE_OK);
    /* small commits (within the buffer), large ones (many times it), and single rows larger than it */
    const int sizes[][2] = {{1, 100}, {3, 5000}, {50, 60000}, {2, 300000}, {10, 1}};
    int next = 0, rows = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        insert_rows(w, next, sizes[k][0], sizes[k][1]);
        next += sizes[k][0];
        cr_expect_eq(rows_intact(r, &rows), 0, "after commit %zu", k);
        cr_expect_eq(rows, next, "after commit %zu the reader sees every committed row", k);
    }
    sqlite3_close(r);
    sqlite3_close(w);
}

Test(wal_buffer, a_writer_killed_after_its_commits_leaves_them_in_the_wal)
{
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        sqlite3 *w = open_db(wb_vfs_name());
        sqlite3_exec(w, "CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)", NULL, NULL, NULL);
        insert_rows(w, 0, 40, 50000);
        insert_rows(w, 40, 5, 700);
        _exit(0); /* no close, no checkpoint: the commits are only in the WAL */
    }
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sqlite3 *r = open_db(NULL);
    int rows = 0;
    cr_expect_eq(rows_intact(r, &rows), 0);
    cr_expect_eq(rows, 45, "both commits are recovered from the WAL");
    sqlite3_close(r);
}

/* ---- Checkpoints through the checkpointer VFS, on a thread of their own ---- */

typedef struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int asked, done; /* checkpoints asked for and done */
    bool stop;
    int last_rc, last_log, last_copied;
} checkpointer;

static void *checkpointer_main(void *arg)
{
    checkpointer *k = arg;
    sqlite3 *db = open_db(wb_checkpointer_vfs_name());
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (k->done == k->asked && !k->stop)
            pthread_cond_wait(&k->changed, &k->lock);
        if (k->done == k->asked)
            break;
        pthread_mutex_unlock(&k->lock);
        int log = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        pthread_mutex_lock(&k->lock);
        k->last_rc = rc, k->last_log = log, k->last_copied = copied;
        k->done++;
        pthread_cond_broadcast(&k->changed);
    }
    pthread_mutex_unlock(&k->lock);
    sqlite3_close(db);
    return NULL;
}

/* One PASSIVE checkpoint on the checkpointer's thread; true when it copied the whole WAL. */
static bool checkpoint(checkpointer *k)
{
    pthread_mutex_lock(&k->lock);
    int ticket = ++k->asked;
    pthread_cond_broadcast(&k->changed);
    while (k->done < ticket)
        pthread_cond_wait(&k->changed, &k->lock);
    bool all = k->last_rc == SQLITE_OK && k->last_log >= 0 && k->last_copied == k->last_log;
    pthread_mutex_unlock(&k->lock);
    return all;
}

/* Rows, the lowest row number and damaged bytes in a copy of the database file alone, without its WAL: what
 * the checkpoints wrote. */
static int file_alone_intact(int *rows, int *lowest)
{
    char copy[96], cmd[512];
    snprintf(copy, sizeof copy, "%s/copy.db", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && rm -f '%s-wal' '%s-shm'", path, copy, copy, copy);
    cr_assert_eq(system(cmd), 0);
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(copy, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int bad = rows_intact(db, rows);
    sqlite3_stmt *s = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT min(n) FROM t", -1, &s, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    *lowest = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return bad;
}

Test(wal_buffer, checkpoints_that_read_ahead_copy_exactly_what_was_committed)
{
    cr_assert_not_null(wb_checkpointer_vfs_name());
    sqlite3 *w = open_db(wb_vfs_name());
    /* the store's writer: no automatic checkpoints, a checkpointer of its own */
    cr_assert_eq(sqlite3_wal_autocheckpoint(w, 0), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(w, "CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)", NULL, NULL, NULL), SQLITE_OK);
    checkpointer k = {.asked = 0};
    pthread_mutex_init(&k.lock, NULL);
    pthread_cond_init(&k.changed, NULL);
    cr_assert_eq(pthread_create(&k.thread, NULL, checkpointer_main, &k), 0);

    /* documents of about 50 KB and small rows, checkpointed between commits */
    int rows = 0, lowest = -1, next = 0;
    const int batches[][2] = {{20, 50000}, {200, 300}, {5, 130000}, {30, 50000}};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        insert_rows(w, next, batches[b][0], batches[b][1]);
        next += batches[b][0];
        cr_expect(checkpoint(&k), "checkpoint %zu copied the whole WAL", b);
        cr_expect_eq(file_alone_intact(&rows, &lowest), 0, "after checkpoint %zu", b);
        cr_expect_eq(rows, next, "after checkpoint %zu the file alone has every row", b);
    }
    /* The WAL restarts at its first frame after a full checkpoint: the next commits overwrite the frames the
     * checkpointer read ahead last time, with other bytes for the same (freed and reused) pages. A checkpoint
     * that copied what it had read ahead before would leave an earlier round's rows, or a broken file. */
    for (int round = 1; round <= 4; round++) {
        cr_assert_eq(sqlite3_exec(w, "DELETE FROM t", NULL, NULL, NULL), SQLITE_OK);
        insert_rows(w, round * 1000, 40, 50000); /* bodies of the byte (round * 1000 + i) & 0xff */
        cr_expect(checkpoint(&k), "round %d: the checkpoint copied the whole WAL", round);
        cr_expect_eq(file_alone_intact(&rows, &lowest), 0, "round %d: every body intact", round);
        cr_expect_eq(rows, 40, "round %d", round);
        cr_expect_eq(lowest, round * 1000, "round %d: this round's rows, not an earlier one's", round);
    }

    pthread_mutex_lock(&k.lock);
    k.stop = true;
    pthread_cond_broadcast(&k.changed);
    pthread_mutex_unlock(&k.lock);
    pthread_join(k.thread, NULL);
    pthread_mutex_destroy(&k.lock);
    pthread_cond_destroy(&k.changed);
    sqlite3_close(w);
}

/* ---- Deferred syncs (wb_defer_wal_syncs): the store syncs the writer's WAL itself ---- */

/* Beneath the gathering VFS: the default one, counting the syncs of WAL files (it must be the default before
 * wb_vfs_name() first runs, since the gathering VFS wraps the default of that moment). */
static sqlite3_vfs *plain_vfs, counting_vfs;
static sqlite3_io_methods counted_methods;
static const sqlite3_io_methods *plain_methods;
static int wal_syncs;

static int counted_sync(sqlite3_file *f, int flags)
{
    wal_syncs++;
    return plain_methods->xSync(f, flags);
}

static int counting_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)v;
    int rc = plain_vfs->xOpen(plain_vfs, name, f, flags, out_flags);
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && f->pMethods) {
        plain_methods = f->pMethods;
        counted_methods = *f->pMethods;
        counted_methods.xSync = counted_sync;
        f->pMethods = &counted_methods;
    }
    return rc;
}

static void count_wal_syncs_beneath(void)
{
    plain_vfs = sqlite3_vfs_find(NULL);
    counting_vfs = *plain_vfs;
    counting_vfs.zName = "counting";
    counting_vfs.xOpen = counting_open;
    cr_assert_eq(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
}

/* WAL syncs during one commit of a row by w. */
static int syncs_of_a_commit(sqlite3 *w, int row)
{
    int before = wal_syncs;
    insert_rows(w, row, 1, 3000);
    return wal_syncs - before;
}

Test(wal_buffer, deferred_syncs_leave_only_the_sync_of_a_new_wal_header)
{
    count_wal_syncs_beneath();
    sqlite3 *w = open_db(wb_vfs_name());
    cr_assert_eq(sqlite3_wal_autocheckpoint(w, 0), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(w, "CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB)", NULL, NULL, NULL), SQLITE_OK);
    cr_expect_eq(syncs_of_a_commit(w, 0), 1, "synchronous=FULL: a commit syncs the WAL (the count works)");

    cr_assert(wb_defer_wal_syncs(w, true));
    cr_expect_eq(syncs_of_a_commit(w, 1), 0, "deferred: the commit only hands its frames to the file");
    /* everything copied into the database: the next commit restarts the WAL with a new header */
    sqlite3 *k = open_db(NULL);
    int log = 0, copied = 0;
    cr_assert_eq(sqlite3_wal_checkpoint_v2(k, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied), SQLITE_OK);
    cr_assert_eq(copied, log);
    sqlite3_close(k);
    cr_expect_eq(syncs_of_a_commit(w, 2), 1, "the new header is synced before its frames, the commit itself not");
    cr_expect_eq(syncs_of_a_commit(w, 3), 0);

    int before = wal_syncs;
    cr_assert(wb_defer_wal_syncs(w, false));
    cr_expect_eq(wal_syncs - before, 1, "switching back syncs what was deferred");
    cr_expect_eq(syncs_of_a_commit(w, 4), 1, "and commits sync again");

    sqlite3 *r = open_db(NULL);
    int rows = 0;
    cr_expect_eq(rows_intact(r, &rows), 0);
    cr_expect_eq(rows, 5);
    sqlite3_close(r);
    sqlite3_close(w);
}
