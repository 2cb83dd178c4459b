/*
 * gateway/store/wal_buffer.h — fewer system calls for SQLite's WAL and its
 * checkpoints (prefix wb_): a VFS that
 *  - gathers the consecutive writes of a WAL file (a commit's frames) and of
 *    a database file (a checkpoint's pages) and hands them to the file in one
 *    write before any sync, read, lock change or close (wal_buffer.c has the
 *    list);
 *  - in its checkpointer flavour, also reads the WAL ahead: a checkpoint
 *    reads its frames one page at a time, in page order, which is mostly the
 *    order they were written in, so one read serves some thirty of them.
 * What reaches the disk is unchanged, and so, by default, is when it is
 * synced: a commit is durable when SQLite's sync returns, and a checkpoint's
 * pages are in the database file before it syncs it and tells readers.
 *
 * Deferred syncs (wb_defer_wal_syncs, the store's writer only): a commit's
 * WAL sync then only hands the gathered frames to the file, and the caller
 * syncs the WAL itself, on a thread of its own (store.c: the sync stage),
 * before it tells anyone that the commit is durable. Readers see such a
 * commit before it is on disk: the store holds back what leaves the process
 * until the sync (store.h). Only for a connection that never checkpoints (a
 * checkpoint must sync the WAL before it copies frames into the database)
 * and is switched back before it closes (closing checkpoints).
 *
 * Used by the store's writer and checkpointer connections with
 * synchronous=FULL only: there every commit and every checkpoint ends in a
 * sync, which writes what was gathered. (With NORMAL a commit would end
 * without one, and the gathered frames would not be in the file when readers
 * are told of them.)
 *
 * Threads: the VFS is registered once (any thread); each file is used by the
 * connection that opened it, and a checkpointer connection by one thread
 * only (its read-ahead is dropped whenever that thread takes or releases a
 * WAL lock, which is how it learns that the WAL may have changed).
 */
#ifndef GATEWAY_STORE_WAL_BUFFER_H
#define GATEWAY_STORE_WAL_BUFFER_H

#include <sqlite3.h>
#include <stdbool.h>

#define WB_VFS_NAME "fhirgw-wal-buffer"
#define WB_CHECKPOINTER_VFS_NAME "fhirgw-wal-buffer-checkpointer"

/* The VFSes' names for sqlite3_open_v2, registered at the first call of either; NULL when they could not be
 * (then use the default VFS). The checkpointer one reads the WAL ahead: only for a connection that does
 * checkpoints and nothing else, on one thread. */
const char *wb_vfs_name(void);
const char *wb_checkpointer_vfs_name(void);

/* On db's open WAL file (opened through wb_vfs_name): defer SQLite's syncs of it to the caller (defer), or make
 * them real again, syncing once at once. False when db has no such WAL open, or that last sync failed. Call on
 * the thread that uses db. */
bool wb_defer_wal_syncs(sqlite3 *db, bool defer);

#endif
