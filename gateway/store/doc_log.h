/*
 * gateway/store/doc_log.h — the sealed documents' own file, beside the
 * database (prefix dl_).
 *
 * What it is for: a handover's 50 KB document, stored in SQLite, went
 * through the disk twice (the WAL, then the checkpoint's copy into the
 * database file) and through the B-tree's overflow pages on the store's
 * serial commit thread: about a fifth of the gateway's CPU at 2,000
 * handovers a second. A document sealed on the request's worker
 * (st_seal_early) is instead appended here by that worker, once, and its
 * version row holds a short locator ("fgdoc1.1.<offset>.<length>") where
 * the sealed bytes would be. Only the SQLite backend, the database's sole
 * writer on this machine, keeps one (a database shared by several gateways
 * keeps its bodies in its rows).
 *
 * The file: `<database>-documents/segment-00000001`, records one after the
 * other, each starting at a multiple of DL_ALIGN so that purging one frees
 * whole blocks. A record is the sealed bytes alone: AES-GCM under the row's
 * name as associated data (seal.h) already proves them whole and in their
 * place, so a locator that points anywhere else fails to open.
 *
 * Durability, the one rule: a row may become durable only after the record
 * it names. The commit thread asks for a sync of everything written so far
 * when it takes a batch (dl_request_sync: the records of that batch were
 * all appended before it was submitted), goes on applying it while this
 * module's sync thread runs fdatasync, and waits before its COMMIT until
 * the batch's records are covered (dl_wait_durable). So no WAL frame naming
 * a record reaches the disk before the record. After a crash, the file may
 * end in records no durable row names (written, never committed): the
 * append position starts after them, and the next start frees them (dl_reclaim).
 *
 * Purging a record punches a hole over its blocks (fallocate), so the disk
 * gives the space back and the bytes are gone; where the file system cannot
 * punch, they are overwritten with zeros.
 *
 * Threads: dl_append, dl_read, dl_release and the sync calls may be made
 * from any thread. Memory: dl_read returns malloc'd bytes (the caller's);
 * locators are written into the caller's buffer.
 */
#ifndef GATEWAY_STORE_DOC_LOG_H
#define GATEWAY_STORE_DOC_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DL_PREFIX "fgdoc1."    /* what a version row holds instead of a body kept in the log */
#define DL_LOCATOR_MAX 64      /* room for a locator and its NUL */
#define DL_ALIGN 4096u         /* records start at multiples of this: the file system's block */
#define DL_SUFFIX "-documents" /* the folder beside the database file */

typedef struct dl_log dl_log;

typedef struct dl_locator {
    uint32_t segment;
    uint64_t offset;
    uint32_t length;
} dl_locator;

/*
 * Opens (creating) the log in folder `dir` and starts its sync thread. With sync false (a throwaway store:
 * synchronous=NORMAL) nothing is ever fdatasync'd and everything written counts as durable.
 * NULL with a reason in err.
 */
dl_log *dl_open(const char *dir, bool sync, char *err, size_t errlen);
/* Stops the sync thread and closes the file. NULL is fine. */
void dl_close(dl_log *log);

/*
 * Appends len bytes as one record: the locator to store in its row (NUL-terminated) into out, and the
 * log position the row must wait for (dl_wait_durable) into *end. False with a reason on a write error.
 */
bool dl_append(dl_log *log, const void *bytes, size_t len, char out[DL_LOCATOR_MAX], uint64_t *end, char *err,
               size_t errlen);

/* Whether a stored body is a locator; dl_parse reads one (false: not a well-formed locator). */
bool dl_is_locator(const char *body, size_t len);
bool dl_parse(const char *body, size_t len, dl_locator *out);
/* The position a row naming loc must wait for. */
uint64_t dl_end_of(const dl_locator *loc);

/* Everything appended so far ends here. */
uint64_t dl_written(dl_log *log);
/* Starts a sync covering up to `upto` unless one covers it already; does not wait. */
void dl_request_sync(dl_log *log, uint64_t upto);
/* Waits until everything up to `upto` is durable. False (at once, ever after) once a sync has failed. */
bool dl_wait_durable(dl_log *log, uint64_t upto);

/* The record's bytes (malloc'd, loc->length of them), or NULL with a reason. */
char *dl_read(dl_log *log, const dl_locator *loc, char *err, size_t errlen);
/* Frees the record's blocks at once: for a record no committed row names (rolled back, never taken; a purged
 * row's goes through dl_release_purged). False with a reason when that failed. */
bool dl_release(dl_log *log, const dl_locator *loc, char *err, size_t errlen);

/*
 * Dead space. A record that no row names (its transaction never committed because the process died, a purge
 * held back by a backup when the gateway stopped, a free that failed) stays in the file. The process that
 * owns the log (the serving gateway, under the store's serving lock: dl_own) takes a marker away from the
 * folder (DL_CLEAN_STOP) when it opens the log, and dl_close leaves it again when it knows of no such record.
 * So after a crash, a restore (its copy has no marker) or such a leftover, dl_needs_reclaim says so, and the
 * store, before it serves, hands every locator its rows name to dl_reclaim, which frees every block of the
 * file that none of them covers (only where there is data: SEEK_DATA). Only what was appended before the
 * call is looked at; nothing may be appended meanwhile.
 */
#define DL_CLEAN_STOP "clean-stop"
/* This process is the log's only writer from now until dl_close (the caller holds the store's serving lock). */
void dl_own(dl_log *log);
/* Owned, the last owner did not leave the marker, and the log holds something (a new store's empty log has
 * no record to free, and its first start is no unclean stop). */
bool dl_needs_reclaim(const dl_log *log);
/* keep: every locator a row names (sorted here); *freed: the bytes freed. Refused unless owned, and while a
 * backup copies the log (its database copy may name records that look unused here). False with a reason. */
bool dl_reclaim(dl_log *log, dl_locator *keep, size_t n, uint64_t *freed, char *err, size_t errlen);
/* A record no row names could not be freed (out of memory to remember it): the next start reclaims. */
void dl_note_dead_space(dl_log *log);

/*
 * Backups and purges. A backup copies the database first and the log after it, so a record purged in
 * between would be gone from the log's copy while the database's copy still names it. A backup therefore
 * holds an exclusive lock on <dir>/backup.lock (flock; the kernel lets go of it when the process ends) from
 * before its database copy until the log is copied, and the gateway frees the records of purged rows
 * (dl_release_purged) only under a shared lock on the same file: while a backup runs, they are held back,
 * and freed by the first commit after it (dl_release_held; left for the next start's reclaim when the gateway
 * stops first). Records no
 * committed row names (rolled back, never taken) go at once with dl_release.
 */
#define DL_BACKUP_LOCK "backup.lock"
/* Takes the backup's lock in folder `dir` (made if missing), waiting for purges under way; the descriptor to
 * pass to dl_backup_unlock, or -1 with a reason. */
int dl_backup_lock(const char *dir, char *err, size_t errlen);
void dl_backup_unlock(int fd);
/* Frees the record of a purged row, or holds it back while a backup holds the lock (see above). */
void dl_release_purged(dl_log *log, const dl_locator *loc);
/* Frees what purges held back, once no backup holds the lock; only a mutex when nothing is held (the store
 * calls it after every commit). NULL is fine. */
void dl_release_held(dl_log *log);

/*
 * A backup's copy of the log in folder `from` (dl_open's) into folder `to` (created), made while a gateway may
 * append to it: each segment up to the size it has when the copy reaches it, synced. Blocks that hold only
 * zeros (never written, or purged: dl_release) are left as holes, so the copy takes the room the original
 * does. A `from` that does not exist is an empty log (a store without one): `to` is made, empty. *bytes: the
 * segments' sizes; *data_bytes: of which blocks with data. False with a reason.
 */
bool dl_copy(const char *from, const char *to, uint64_t *bytes, uint64_t *data_bytes, char *err, size_t errlen);

/* Removes a copy dl_copy made in `folder` (its segment, then the folder), as a failed restore must: false
 * (errno) when something else is in the folder or a file cannot go. A folder that is not there is fine. */
bool dl_remove_copy(const char *folder);

/* Syncs done so far (for tests and counters). */
uint64_t dl_syncs(dl_log *log);
/* Tests only: the next sync fails as fdatasync can (EIO), and every one after it with it. */
void dl_test_fail_next_sync(dl_log *log);

#endif
