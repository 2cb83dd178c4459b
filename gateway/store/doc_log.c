/*
 * gateway/store/doc_log.c — see doc_log.h.
 *
 * Two locks, for two jobs. write_lock orders appends: a record is written
 * whole, at the position it was given, before the next one is given out,
 * so "everything up to `written` is in the file" holds without tracking
 * writes that finish out of order (two workers append; a 50 KB pwrite into
 * the page cache takes microseconds). sync_lock guards the sync state:
 * what was asked for, what is durable, whether a sync failed. One thread
 * syncs (fdatasync covers every write that finished before it began), so a
 * burst of requests costs one sync, not one each.
 */
#define _GNU_SOURCE /* fallocate, FALLOC_FL_* */
#include "gateway/store/doc_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/array.h"
#include "gateway/util/files.h"
#include "gateway/util/thread_name.h"

#define SEGMENT 1u /* one file for now; the locator names it so that the log can roll to more later */

struct dl_log {
    int fd;
    bool sync; /* false: nothing is synced, all counts as durable */

    pthread_mutex_t write_lock;
    uint64_t append_at;       /* the next record's offset, a multiple of DL_ALIGN (write_lock) */
    _Atomic uint64_t written; /* every record appended so far ends at or before this */

    pthread_mutex_t sync_lock;
    pthread_cond_t wanted, done;
    uint64_t requested, durable; /* sync_lock */
    bool failed, stopping;       /* sync_lock */
    _Atomic uint64_t syncs;
    atomic_bool fail_next; /* dl_test_fail_next_sync */
    pthread_t thread;
    bool thread_started;

    char *dir;        /* the folder, for the clean-stop marker */
    bool owner;       /* dl_own: the marker is this process's to take and leave */
    bool was_clean;   /* the marker was there when dl_own took it: no reclaim needed */
    bool was_empty;   /* the segment held no byte when opened (a new store): nothing to reclaim either */
    atomic_bool dead; /* a record no row names could not be freed: the next start reclaims */

    /* purges held back while a backup copies the log (dl_release_purged) */
    int backup_lock_fd; /* <dir>/backup.lock, -1 when it could not be opened */
    pthread_mutex_t held_lock;
    dl_locator *held; /* held_lock */
    size_t held_count, held_cap;
};

static void set_err(char *err, size_t errlen, const char *format, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *format, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, format);
    vsnprintf(err, errlen, format, ap);
    va_end(ap);
}

static uint64_t aligned(uint64_t n)
{
    return (n + DL_ALIGN - 1) / DL_ALIGN * DL_ALIGN;
}

static bool open_segment(dl_log *log, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return false;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/segment-%08u", dir, SEGMENT) >= sizeof path) {
        set_err(err, errlen, "the document log's path is too long");
        return false;
    }
    bool existed = access(path, F_OK) == 0;
    log->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (log->fd < 0 || fstat(log->fd, &st) != 0) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    if (!existed && log->sync && !files_sync_dir(dir)) {
        set_err(err, errlen, "cannot sync the folder %s: %s", dir, strerror(errno));
        return false;
    }
    log->was_empty = st.st_size == 0;
    /* After a crash the file may end in records that no durable row names: start after them. */
    log->append_at = aligned((uint64_t)st.st_size);
    atomic_store(&log->written, log->append_at);
    log->requested = log->durable = log->append_at;
    return true;
}

/* The lock file backups and purges agree through (dl_backup_lock); -1 when it cannot be opened. */
static int open_backup_lock(const char *dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/" DL_BACKUP_LOCK, dir) >= sizeof path)
        return -1;
    return open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
}

/* <dir>/DL_CLEAN_STOP into path; false when it does not fit. */
static bool marker_path(const char *dir, char *path, size_t size)
{
    return (size_t)snprintf(path, size, "%s/" DL_CLEAN_STOP, dir) < size;
}

/* Takes the clean-stop marker away (synced: a crash from here on must not find it) and says whether it was
 * there. */
static bool take_marker(dl_log *log)
{
    char path[4096];
    if (!marker_path(log->dir, path, sizeof path) || unlink(path) != 0)
        return false;
    return !log->sync || files_sync_dir(log->dir); /* not synced: as if it was never there */
}

/* Leaves the marker for the next open: every record that no row names was freed. */
static void leave_marker(dl_log *log)
{
    char path[4096];
    if (!marker_path(log->dir, path, sizeof path))
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = close(fd) == 0 && (!log->sync || files_sync_dir(log->dir));
    if (!ok)
        unlink(path); /* a marker that might not last is no promise */
}

static void *sync_main(void *arg)
{
    dl_log *log = arg;
    pthread_mutex_lock(&log->sync_lock);
    for (;;) {
        while (!log->stopping && (log->failed || log->requested <= log->durable))
            pthread_cond_wait(&log->wanted, &log->sync_lock);
        if (log->stopping)
            break;
        uint64_t goal = atomic_load(&log->written); /* what finished before the sync begins */
        pthread_mutex_unlock(&log->sync_lock);
        int rc = atomic_exchange(&log->fail_next, false) ? -1 : fdatasync(log->fd);
        pthread_mutex_lock(&log->sync_lock);
        atomic_fetch_add(&log->syncs, 1);
        if (rc != 0)
            log->failed = true; /* what the kernel held may be gone (fsync errors are not retried) */
        else if (goal > log->durable)
            log->durable = goal;
        pthread_cond_broadcast(&log->done);
    }
    pthread_mutex_unlock(&log->sync_lock);
    return NULL;
}

dl_log *dl_open(const char *dir, bool sync, char *err, size_t errlen)
{
    dl_log *log = calloc(1, sizeof *log);
    if (!log) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    log->fd = -1;
    log->sync = sync;
    pthread_mutex_init(&log->write_lock, NULL);
    pthread_mutex_init(&log->sync_lock, NULL);
    pthread_cond_init(&log->wanted, NULL);
    pthread_cond_init(&log->done, NULL);
    pthread_mutex_init(&log->held_lock, NULL);
    log->backup_lock_fd = -1;
    if (!(log->dir = strdup(dir))) {
        set_err(err, errlen, "out of memory");
        dl_close(log);
        return NULL;
    }
    if (!open_segment(log, dir, err, errlen)) {
        dl_close(log);
        return NULL;
    }
    log->backup_lock_fd = open_backup_lock(dir);
    if (sync) {
        if (pthread_create(&log->thread, NULL, sync_main, log) != 0) {
            set_err(err, errlen, "cannot start the document log's sync thread");
            dl_close(log);
            return NULL;
        }
        log->thread_started = true;
        tn_name(log->thread, "doclog-sync");
    }
    return log;
}

void dl_close(dl_log *log)
{
    if (!log)
        return;
    if (log->thread_started) {
        pthread_mutex_lock(&log->sync_lock);
        log->stopping = true;
        pthread_cond_signal(&log->wanted);
        pthread_mutex_unlock(&log->sync_lock);
        pthread_join(log->thread, NULL);
    }
    dl_release_held(log); /* what a backup still holds back stays as dead space, for the next start to reclaim */
    /* clean: no record left that no row names, and none from before (taken over clean, or reclaimed) */
    if (log->owner && log->was_clean && !log->held_count && !log->failed && !atomic_load(&log->dead))
        leave_marker(log);
    free(log->held);
    free(log->dir);
    if (log->backup_lock_fd >= 0)
        close(log->backup_lock_fd);
    pthread_mutex_destroy(&log->held_lock);
    if (log->fd >= 0)
        close(log->fd);
    pthread_mutex_destroy(&log->write_lock);
    pthread_mutex_destroy(&log->sync_lock);
    pthread_cond_destroy(&log->wanted);
    pthread_cond_destroy(&log->done);
    free(log);
}

bool dl_append(dl_log *log, const void *bytes, size_t len, char out[DL_LOCATOR_MAX], uint64_t *end, char *err,
               size_t errlen)
{
    if (!len || len > UINT32_MAX) {
        set_err(err, errlen, "a record of %zu bytes does not fit the document log", len);
        return false;
    }
    pthread_mutex_lock(&log->write_lock);
    uint64_t at = log->append_at;
    bool ok = files_pwrite_all(log->fd, bytes, len, at);
    if (ok) {
        log->append_at = aligned(at + len);
        atomic_store(&log->written, at + len);
    }
    pthread_mutex_unlock(&log->write_lock);
    if (!ok) {
        set_err(err, errlen, "cannot write to the document log: %s", strerror(errno));
        return false;
    }
    snprintf(out, DL_LOCATOR_MAX, DL_PREFIX "%u.%" PRIu64 ".%zu", SEGMENT, at, len);
    *end = at + len;
    return true;
}

bool dl_is_locator(const char *body, size_t len)
{
    return len > sizeof DL_PREFIX - 1 && len < DL_LOCATOR_MAX && !memcmp(body, DL_PREFIX, sizeof DL_PREFIX - 1);
}

/* A decimal number of body[*i..), up to the next '.' or the end; false when there are no digits or too many. */
static bool read_number(const char *body, size_t len, size_t *i, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    size_t start = *i;
    for (; *i < len && body[*i] >= '0' && body[*i] <= '9'; (*i)++) {
        unsigned digit = (unsigned)(body[*i] - '0');
        if (n > (max - digit) / 10)
            return false;
        n = n * 10 + digit;
    }
    *out = n;
    return *i > start;
}

bool dl_parse(const char *body, size_t len, dl_locator *out)
{
    if (!dl_is_locator(body, len))
        return false;
    size_t i = sizeof DL_PREFIX - 1;
    uint64_t segment, offset, length;
    if (!read_number(body, len, &i, UINT32_MAX, &segment) || i >= len || body[i++] != '.' ||
        !read_number(body, len, &i, INT64_MAX, &offset) || i >= len || body[i++] != '.' ||
        !read_number(body, len, &i, UINT32_MAX, &length) || i != len || !length || offset % DL_ALIGN)
        return false;
    out->segment = (uint32_t)segment;
    out->offset = offset;
    out->length = (uint32_t)length;
    return true;
}

uint64_t dl_end_of(const dl_locator *loc)
{
    return loc->offset + loc->length;
}

uint64_t dl_written(dl_log *log)
{
    return atomic_load(&log->written);
}

void dl_request_sync(dl_log *log, uint64_t upto)
{
    if (!log->sync)
        return;
    pthread_mutex_lock(&log->sync_lock);
    if (log->requested < upto) {
        log->requested = upto;
        pthread_cond_signal(&log->wanted);
    }
    pthread_mutex_unlock(&log->sync_lock);
}

bool dl_wait_durable(dl_log *log, uint64_t upto)
{
    if (!log->sync)
        return true;
    pthread_mutex_lock(&log->sync_lock);
    if (log->requested < upto) {
        log->requested = upto;
        pthread_cond_signal(&log->wanted);
    }
    while (!log->failed && log->durable < upto)
        pthread_cond_wait(&log->done, &log->sync_lock);
    bool ok = !log->failed;
    pthread_mutex_unlock(&log->sync_lock);
    return ok;
}

static bool known_segment(const dl_locator *loc, char *err, size_t errlen)
{
    if (loc->segment == SEGMENT)
        return true;
    set_err(err, errlen, "the document log has no segment %u", loc->segment);
    return false;
}

/* ---- a backup's copy (dl_copy) ---- */

bool dl_copy(const char *from, const char *to, uint64_t *bytes, uint64_t *data_bytes, char *err, size_t errlen)
{
    *bytes = *data_bytes = 0;
    char src[4096], dst[4096];
    if ((size_t)snprintf(src, sizeof src, "%s/segment-%08u", from, SEGMENT) >= sizeof src ||
        (size_t)snprintf(dst, sizeof dst, "%s/segment-%08u", to, SEGMENT) >= sizeof dst) {
        set_err(err, errlen, "the document log's path is too long");
        return false;
    }
    if (mkdir(to, 0700) != 0 && errno != EEXIST) { /* made even for no log: a restore puts back what it finds */
        set_err(err, errlen, "cannot create %s: %s", to, strerror(errno));
        return false;
    }
    bool no_log = access(src, F_OK) != 0 && errno == ENOENT;
    if (!no_log && !files_copy_sparse(src, dst, DL_ALIGN, bytes, data_bytes, err, errlen)) {
        rmdir(to); /* the half copy is gone already: no folder that a restore could take for a whole log */
        return false;
    }
    if (!files_sync_dir(to)) {
        set_err(err, errlen, "cannot sync the folder %s: %s", to, strerror(errno));
        return false;
    }
    return true;
}

bool dl_remove_copy(const char *folder)
{
    char segment[4096];
    if ((size_t)snprintf(segment, sizeof segment, "%s/segment-%08u", folder, SEGMENT) >= sizeof segment)
        return false;
    if (unlink(segment) != 0 && errno != ENOENT)
        return false;
    return rmdir(folder) == 0 || errno == ENOENT;
}

char *dl_read(dl_log *log, const dl_locator *loc, char *err, size_t errlen)
{
    if (!known_segment(loc, err, errlen))
        return NULL;
    char *out = malloc((size_t)loc->length + 1);
    if (!out) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    size_t got = 0;
    while (got < loc->length) {
        ssize_t n = pread(log->fd, out + got, loc->length - got, (off_t)(loc->offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            set_err(err, errlen, "the document log ends inside a record (offset %" PRIu64 ", %u bytes): %s",
                    loc->offset, loc->length, n < 0 ? strerror(errno) : "end of file");
            free(out);
            return NULL;
        }
        got += (size_t)n;
    }
    out[got] = '\0';
    return out;
}

/* Whether no backup holds the lock: then a shared lock is taken, to be let go by let_go_shared. Under held_lock. */
static bool take_shared(dl_log *log)
{
    return log->backup_lock_fd < 0 || flock(log->backup_lock_fd, LOCK_SH | LOCK_NB) == 0;
}

static void let_go_shared(dl_log *log)
{
    if (log->backup_lock_fd >= 0)
        flock(log->backup_lock_fd, LOCK_UN);
}

/* Frees the blocks of [at, at + span): a hole punched over them, or, where the file system cannot punch, the
 * first `bytes` of them overwritten with zeros (no further: past a record at the end lies the file's end). */
static bool free_blocks(dl_log *log, uint64_t at, uint64_t span, uint64_t bytes, char *err, size_t errlen)
{
    if (fallocate(log->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)span) == 0)
        return true;
    if (errno != EOPNOTSUPP && errno != ENOSYS) {
        set_err(err, errlen, "cannot free a record of the document log: %s", strerror(errno));
        return false;
    }
    static const char zeros[DL_ALIGN];
    for (uint64_t done = 0; done < bytes; done += sizeof zeros) {
        size_t n = bytes - done < sizeof zeros ? (size_t)(bytes - done) : sizeof zeros;
        if (!files_pwrite_all(log->fd, zeros, n, at + done)) {
            set_err(err, errlen, "cannot overwrite a record of the document log: %s", strerror(errno));
            return false;
        }
    }
    return true;
}

bool dl_release(dl_log *log, const dl_locator *loc, char *err, size_t errlen)
{
    if (!known_segment(loc, err, errlen))
        return false;
    if (free_blocks(log, loc->offset, aligned(loc->length), loc->length, err, errlen))
        return true;
    atomic_store(&log->dead, true);
    return false;
}

void dl_note_dead_space(dl_log *log)
{
    if (log)
        atomic_store(&log->dead, true);
}

void dl_own(dl_log *log)
{
    log->owner = true;
    bool marker = take_marker(log);
    log->was_clean = marker || log->was_empty; /* a new store's first start is no unclean one */
}

bool dl_needs_reclaim(const dl_log *log)
{
    return log->owner && !log->was_clean;
}

static int by_offset(const void *a, const void *b)
{
    const dl_locator *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Frees what of [from, to) lies outside every kept record (keep[*k..], sorted by offset). *k moves past the
 * records that end by `to`: the next range begins at or after it. */
static bool free_outside(dl_log *log, uint64_t from, uint64_t to, const dl_locator *keep, size_t n, size_t *k,
                         uint64_t *freed, char *err, size_t errlen)
{
    uint64_t at = from;
    for (size_t j = *k; j < n && keep[j].offset < to; j++) {
        uint64_t start = keep[j].offset, end = start + aligned(keep[j].length);
        if (start > at) {
            if (!free_blocks(log, at, start - at, start - at, err, errlen))
                return false;
            *freed += start - at;
        }
        if (end > at)
            at = end;
        if (end <= to)
            *k = j + 1;
    }
    if (at < to) {
        if (!free_blocks(log, at, to - at, to - at, err, errlen))
            return false;
        *freed += to - at;
    }
    return true;
}

bool dl_reclaim(dl_log *log, dl_locator *keep, size_t n, uint64_t *freed, char *err, size_t errlen)
{
    *freed = 0;
    if (!log->owner) {
        set_err(err, errlen, "only the log's owner reclaims (dl_own): another process may be appending");
        return false;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) /* another segment's records are not this file's to keep */
        if (keep[i].segment == SEGMENT)
            keep[kept++] = keep[i];
    if (kept) /* qsort wants an array, even of none */
        qsort(keep, kept, sizeof *keep, by_offset);
    uint64_t end = atomic_load(&log->written); /* nothing is appended while the store opens */
    pthread_mutex_lock(&log->held_lock);
    if (!take_shared(log)) {
        pthread_mutex_unlock(&log->held_lock);
        set_err(err, errlen, "a backup is copying the log: its database copy may name what looks unused here");
        return false;
    }
    bool ok = true;
    size_t k = 0;
    for (uint64_t at = 0; ok && at < end;) {
        off_t data = lseek(log->fd, (off_t)at, SEEK_DATA);
        if (data < 0 || (uint64_t)data >= end) {
            ok = data >= 0 || errno == ENXIO; /* ENXIO: no data after `at` */
            if (!ok)
                set_err(err, errlen, "cannot look for data in the document log: %s", strerror(errno));
            break;
        }
        off_t hole = lseek(log->fd, data, SEEK_HOLE);
        if (hole < 0) {
            set_err(err, errlen, "cannot look for holes in the document log: %s", strerror(errno));
            ok = false;
            break;
        }
        uint64_t stop = (uint64_t)hole < end ? (uint64_t)hole : end;
        ok = free_outside(log, (uint64_t)data, stop, keep, kept, &k, freed, err, errlen);
        at = stop;
    }
    let_go_shared(log);
    pthread_mutex_unlock(&log->held_lock);
    if (ok)
        log->was_clean = true;
    return ok;
}

void dl_release_held(dl_log *log)
{
    if (!log)
        return;
    pthread_mutex_lock(&log->held_lock);
    if (log->held_count && take_shared(log)) {
        for (size_t i = 0; i < log->held_count; i++)
            dl_release(log, &log->held[i], NULL, 0); /* a failure leaves dead space, nothing else */
        log->held_count = 0;
        let_go_shared(log);
    }
    pthread_mutex_unlock(&log->held_lock);
}

void dl_release_purged(dl_log *log, const dl_locator *loc)
{
    pthread_mutex_lock(&log->held_lock);
    if (take_shared(log)) {
        dl_release(log, loc, NULL, 0); /* a failure leaves dead space, nothing else */
        let_go_shared(log);
    } else if (fa_reserve(&log->held, &log->held_cap, log->held_count + 1, sizeof *log->held)) {
        log->held[log->held_count++] = *loc; /* a backup copies the log: its database copy may still name it */
    }
    pthread_mutex_unlock(&log->held_lock);
}

int dl_backup_lock(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_err(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open_backup_lock(dir);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        set_err(err, errlen, "cannot lock %s/" DL_BACKUP_LOCK ": %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

void dl_backup_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing lets go of the lock */
}

uint64_t dl_syncs(dl_log *log)
{
    return atomic_load(&log->syncs);
}

void dl_test_fail_next_sync(dl_log *log)
{
    atomic_store(&log->fail_next, true);
}
