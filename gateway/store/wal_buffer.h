/*
 * gateway/store/wal_buffer.h — fewer write(2) calls for SQLite's WAL (prefix
 * wb_): a VFS that gathers the consecutive writes of a WAL file and hands
 * them to the file in one write before any sync, read, lock change or close
 * (wal_buffer.c has the list). What reaches the disk, and when it is synced,
 * is unchanged: a commit is durable when SQLite's sync returns, as before.
 *
 * Used by the store's writer connection with synchronous=FULL only: there
 * every commit ends in a sync, which writes what was gathered. (With NORMAL
 * a commit would end without one, and the gathered frames would not be in
 * the file when readers are told of them.)
 *
 * Threads: the VFS is registered once (any thread); each file is used by the
 * connection that opened it.
 */
#ifndef GATEWAY_STORE_WAL_BUFFER_H
#define GATEWAY_STORE_WAL_BUFFER_H

#define WB_VFS_NAME "fhirgw-wal-buffer"

/* The VFS's name for sqlite3_open_v2, registered at the first call; NULL when it could not be (then use the
 * default VFS). */
const char *wb_vfs_name(void);

#endif
