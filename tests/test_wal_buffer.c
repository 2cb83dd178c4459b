/*
 * tests/test_wal_buffer.c — gateway/store/wal_buffer.h: a database written
 * through the gathering VFS (WAL, synchronous=FULL) is, after each commit,
 * exactly what a second connection on the default VFS reads, whether the
 * commit was smaller or larger than the buffer; the WAL survives a writer
 * that never closes (its commits synced) and is read back from the file.
 *
 * Memory: each test opens and closes its own connections in a fresh folder.
 */
#include <criterion/criterion.h>
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
