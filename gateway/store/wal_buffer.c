/*
 * gateway/store/wal_buffer.c — see wal_buffer.h.
 *
 * A shim VFS in front of SQLite's default one: every method is passed
 * through, except that writes to a WAL or database file are gathered while
 * they run on (each at the end of the one before) and handed to the real
 * file in one write before anything could look at them: a sync, a read, the
 * size, a truncate, a lock change, a file control, the close, or a write
 * elsewhere. SQLite writes each WAL frame as two writes (its 24-byte header,
 * then the page), so a commit of fifty 50 KB documents was some two thousand
 * pwrite(2) calls on the commit thread; now it is some thirty. A checkpoint
 * writes page by page in page order, and a document's pages mostly follow
 * each other: half the calls.
 *
 * Read-ahead (checkpointer flavour only). A checkpoint reads each frame it
 * copies with one pread(2): a 50 KB document was 14 reads, on a machine
 * where a system call costs more than copying 4 KB. Instead a read that
 * misses fills a buffer with the next WB_BUFFER bytes of the WAL, and the
 * reads that follow are served from it. That is safe because, from the
 * moment a checkpoint has locked the WAL, every frame it reads stays as it
 * is until it ends (the writer only appends beyond them, and restarts the
 * WAL only after a checkpoint that copied all); bytes read ahead beyond the
 * frames the checkpoint copies are never asked for in it. The buffer is
 * dropped whenever this thread takes or releases a WAL lock or passes a
 * memory barrier (any xShm call: every checkpoint begins with one) and when
 * this connection writes or truncates the file.
 *
 * Memory: up to two buffers per open file (WB_BUFFER bytes each, allocated
 * at the first write or read-ahead, freed at close); the VFS objects are
 * static, registered once.
 */
#include "gateway/store/wal_buffer.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bytes gathered at most before they go to the file: SQLite's unix VFS writes at most 128 KiB - 1 in one call
 * (seekAndWriteFd masks the length with 0x1ffff), so less than that; 29 frames of 4 KiB pages. */
#define WB_BUFFER (120 * 1024)

typedef struct wb_file {
    sqlite3_file base;   /* pMethods: wb_methods */
    sqlite3_file *real;  /* the default VFS's file, in the same allocation after this struct */
    bool gather;         /* WAL and database files gather their writes; journals and the rest do not */
    char *buf;           /* WB_BUFFER bytes, or NULL before the first write */
    size_t len;          /* bytes gathered */
    sqlite3_int64 start; /* the file offset of buf[0] */

    /* read-ahead: a WAL file opened through the checkpointer VFS */
    bool read_ahead;
    char *ahead;               /* WB_BUFFER bytes, or NULL before the first read-ahead */
    size_t ahead_len;          /* valid bytes in ahead, 0 when there are none */
    sqlite3_int64 ahead_start; /* the file offset of ahead[0] */
    sqlite3_int64 known_size;  /* the file's size when last asked, in this checkpoint */
    unsigned ahead_epoch;      /* wal_epoch when ahead and known_size were filled... */
    pthread_t ahead_thread;    /* ...on this thread */

    /* deferred syncs: a WAL file whose owner syncs it itself (wb_defer_wal_syncs) */
    bool is_wal;
    bool defer_syncs;
    bool header_unsynced; /* the WAL header was written after the last real sync */
} wb_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs wb_vfs, wb_checkpointer_vfs;
static int registered = SQLITE_ERROR;

/* Bumped by every xShm call of this thread: what was read ahead before it may be out of date. */
static _Thread_local unsigned wal_epoch = 1;

#define REAL(f) (((wb_file *)(f))->real)
#define RM(f) (REAL(f)->pMethods)

/* The gathered bytes to the file; SQLITE_OK when there were none. */
static int flush(wb_file *w)
{
    if (!w->len)
        return SQLITE_OK;
    int rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->start);
    w->len = 0;
    return rc;
}

static int wb_close(sqlite3_file *f)
{
    wb_file *w = (wb_file *)f;
    int rc = flush(w);
    int closed = RM(f)->xClose(REAL(f));
    free(w->buf);
    w->buf = NULL;
    free(w->ahead);
    w->ahead = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

/* Serves a read from the read-ahead buffer, filling it first when the read misses it; false when the read
 * must go to the file as it is (nothing to read ahead: the read is too large, or at the end of the file). */
static bool read_from_ahead(wb_file *w, void *out, int amt, sqlite3_int64 off)
{
    if (w->ahead_epoch != wal_epoch || !pthread_equal(w->ahead_thread, pthread_self())) {
        w->ahead_len = 0;
        w->known_size = -1;
        w->ahead_epoch = wal_epoch;
        w->ahead_thread = pthread_self();
    }
    sqlite3_int64 end = off + amt;
    if (w->ahead_len && off >= w->ahead_start && end <= w->ahead_start + (sqlite3_int64)w->ahead_len) {
        memcpy(out, w->ahead + (off - w->ahead_start), (size_t)amt);
        return true;
    }
    if ((size_t)amt > WB_BUFFER / 4 || (!w->ahead && !(w->ahead = malloc(WB_BUFFER))))
        return false;
    /* never read past the end: a short read would not say how much of the buffer is real */
    if (w->known_size < end && w->real->pMethods->xFileSize(w->real, &w->known_size) != SQLITE_OK)
        w->known_size = -1;
    if (w->known_size < end)
        return false;
    sqlite3_int64 left = w->known_size - off;
    size_t want = left < (sqlite3_int64)WB_BUFFER ? (size_t)left : WB_BUFFER;
    w->ahead_len = 0;
    if (w->real->pMethods->xRead(w->real, w->ahead, (int)want, off) != SQLITE_OK)
        return false;
    w->ahead_start = off;
    w->ahead_len = want;
    memcpy(out, w->ahead, (size_t)amt);
    return true;
}

static int wb_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    wb_file *w = (wb_file *)f;
    int rc = flush(w);
    if (rc != SQLITE_OK)
        return rc;
    if (w->read_ahead && amt > 0 && read_from_ahead(w, out, amt, off))
        return SQLITE_OK;
    return RM(f)->xRead(REAL(f), out, amt, off);
}

static int wb_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    wb_file *w = (wb_file *)f;
    w->ahead_len = 0; /* this file changes: nothing read ahead stays */
    if (w->is_wal && off == 0)
        w->header_unsynced = true; /* a new WAL (a restart): its header is synced before its frames count */
    if (!w->gather)
        return RM(f)->xWrite(REAL(f), data, amt, off);
    /* not the continuation of what is gathered, or no room: what is gathered goes first */
    if (w->len && (off != w->start + (sqlite3_int64)w->len || w->len + (size_t)amt > WB_BUFFER)) {
        int rc = flush(w);
        if (rc != SQLITE_OK)
            return rc;
    }
    if ((size_t)amt > WB_BUFFER || (!w->buf && !(w->buf = malloc(WB_BUFFER))))
        return RM(f)->xWrite(REAL(f), data, amt, off);
    if (!w->len)
        w->start = off;
    memcpy(w->buf + w->len, data, (size_t)amt);
    w->len += (size_t)amt;
    return SQLITE_OK;
}

/* The methods that only pass through, after the gathered bytes went to the file. */
#define FLUSH_THEN(call)                                  \
    do {                                                  \
        int flushed_ = flush((wb_file *)f);               \
        return flushed_ != SQLITE_OK ? flushed_ : (call); \
    } while (0)

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    ((wb_file *)f)->ahead_len = 0;
    FLUSH_THEN(RM(f)->xTruncate(REAL(f), size));
}

/*
 * With deferred syncs, a commit's sync only hands the frames to the file:
 * the store syncs them on its own thread (wb_defer_wal_syncs). The sync
 * right after a new WAL header stays: SQLite orders a restarted WAL's
 * header before its first frames with it.
 */
static int wb_sync(sqlite3_file *f, int flags)
{
    wb_file *w = (wb_file *)f;
    int rc = flush(w);
    if (rc != SQLITE_OK)
        return rc;
    if (w->defer_syncs && !w->header_unsynced)
        return SQLITE_OK;
    rc = RM(f)->xSync(REAL(f), flags);
    if (rc == SQLITE_OK)
        w->header_unsynced = false;
    return rc;
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    FLUSH_THEN(RM(f)->xFileSize(REAL(f), size));
}

static int wb_lock(sqlite3_file *f, int level)
{
    FLUSH_THEN(RM(f)->xLock(REAL(f), level));
}

static int wb_unlock(sqlite3_file *f, int level)
{
    FLUSH_THEN(RM(f)->xUnlock(REAL(f), level));
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
    return RM(f)->xCheckReservedLock(REAL(f), out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
    FLUSH_THEN(RM(f)->xFileControl(REAL(f), op, arg));
}

static int wb_sector_size(sqlite3_file *f)
{
    return RM(f)->xSectorSize(REAL(f));
}

static int wb_device_characteristics(sqlite3_file *f)
{
    return RM(f)->xDeviceCharacteristics(REAL(f));
}

static int wb_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    wal_epoch++;
    return RM(f)->xShmMap(REAL(f), region, size, extend, out);
}

static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    wal_epoch++;
    FLUSH_THEN(RM(f)->xShmLock(REAL(f), offset, n, flags));
}

static void wb_shm_barrier(sqlite3_file *f)
{
    wal_epoch++;
    flush((wb_file *)f);
    RM(f)->xShmBarrier(REAL(f));
}

static int wb_shm_unmap(sqlite3_file *f, int delete_flag)
{
    wal_epoch++;
    FLUSH_THEN(RM(f)->xShmUnmap(REAL(f), delete_flag));
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out)
{
    FLUSH_THEN(RM(f)->xFetch(REAL(f), off, amt, out));
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return RM(f)->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods wb_methods = {
    3,
    wb_close,
    wb_read,
    wb_write,
    wb_truncate,
    wb_sync,
    wb_file_size,
    wb_lock,
    wb_unlock,
    wb_check_reserved,
    wb_file_control,
    wb_sector_size,
    wb_device_characteristics,
    wb_shm_map,
    wb_shm_lock,
    wb_shm_barrier,
    wb_shm_unmap,
    wb_fetch,
    wb_unfetch,
};

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    wb_file *w = (wb_file *)f;
    memset(w, 0, sizeof *w);
    w->real = (sqlite3_file *)(w + 1);
    w->gather = (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_DB)) != 0;
    w->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    w->read_ahead = w->is_wal && vfs == &wb_checkpointer_vfs;
    w->known_size = -1;
    int rc = real_vfs->xOpen(real_vfs, name, w->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set: leave it NULL when the real file did not open */
    w->base.pMethods = w->real->pMethods && rc == SQLITE_OK ? &wb_methods : NULL;
    if (rc != SQLITE_OK && w->real->pMethods)
        w->real->pMethods->xClose(w->real);
    return rc;
}

/* The rest of the VFS: the default one's, with it as the VFS. */
static int wb_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *wb_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs->xDlOpen(real_vfs, name);
}

static void wb_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    real_vfs->xDlError(real_vfs, n, out);
}

static void (*wb_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void wb_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int wb_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static void register_once(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 2 || !real_vfs->xCurrentTimeInt64)
        return;
    wb_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(wb_file) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = WB_VFS_NAME,
        .xOpen = wb_open,
        .xDelete = wb_delete,
        .xAccess = wb_access,
        .xFullPathname = wb_full_pathname,
        .xDlOpen = wb_dl_open,
        .xDlError = wb_dl_error,
        .xDlSym = wb_dl_sym,
        .xDlClose = wb_dl_close,
        .xRandomness = wb_randomness,
        .xSleep = wb_sleep,
        .xCurrentTime = wb_current_time,
        .xGetLastError = wb_last_error,
        .xCurrentTimeInt64 = wb_current_time_int64,
    };
    wb_checkpointer_vfs = wb_vfs;
    wb_checkpointer_vfs.zName = WB_CHECKPOINTER_VFS_NAME;
    registered = sqlite3_vfs_register(&wb_vfs, 0);
    if (registered == SQLITE_OK)
        registered = sqlite3_vfs_register(&wb_checkpointer_vfs, 0);
}

const char *wb_vfs_name(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_once);
    return registered == SQLITE_OK ? WB_VFS_NAME : NULL;
}

const char *wb_checkpointer_vfs_name(void)
{
    return wb_vfs_name() ? WB_CHECKPOINTER_VFS_NAME : NULL;
}

bool wb_defer_wal_syncs(sqlite3 *db, bool defer)
{
    sqlite3_file *f = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK || !f ||
        f->pMethods != &wb_methods || !((wb_file *)f)->is_wal)
        return false;
    wb_file *w = (wb_file *)f;
    if (!defer && w->defer_syncs) { /* from now on SQLite's syncs are real again: make this one real too */
        w->defer_syncs = false;
        return flush(w) == SQLITE_OK && RM(f)->xSync(REAL(f), SQLITE_SYNC_NORMAL) == SQLITE_OK;
    }
    w->defer_syncs = defer;
    return true;
}
