/*
 * gateway/cli/cmd_backup.c — `fhirgw backup --config FILE | --dev DIR --to DIR`, and
 * `fhirgw restore ... --from DIR` at the end of this file
 * (DIR's strftime conversions are done: --to /var/backups/fhirgw/%Y-%m-%dT%H%M%S):
 * a consistent copy of what a restore needs, taken while the gateway runs
 * (docs/operations.md): the audit checkpoint file, then the store (its
 * database as of one moment, then the document log: st_backup in
 * gateway/store/store.h).
 *
 * Why this order: a restored gateway refuses a database whose audit trail
 * ends before the last checkpoint (a cut-off tail), so the checkpoints must
 * not run ahead of the database. Copied first, every checkpoint in the copy
 * names entries the later database copy has. Keys (seal, audit, TLS) are
 * not copied: they are kept apart from the data on purpose and are backed
 * up on their own.
 *
 * Exit status: 0 backed up, 2 usage, configuration or I/O (nothing of a
 * failed backup stays in DIR). Memory: everything is freed before returning.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/cli/cli.h"
#include "gateway/store/store.h"
#include "gateway/util/config.h"
#include "gateway/util/files.h"

#define WHO "fhirgw backup"
#define RESTORE_WHO "fhirgw restore"

static int usage(void)
{
    fprintf(stderr, "usage: " WHO " --config FILE | --dev DIR --to DIR   (DIR may hold strftime's %%Y, %%m, %%d, "
                    "%%H, %%M, %%S)\n");
    return 2;
}

/* A copy of `from` as the new file `to`, synced; a missing `from` (no checkpoint yet) gives an empty file, so that
 * a restore puts "none" in place of the checkpoints the live file has by then. *bytes: its size. False with why on
 * stderr. */
static bool copy_checkpoints(const char *who, const char *from, const char *to, size_t *bytes)
{
    *bytes = 0;
    size_t len = 0;
    char *text = files_read(from, &len);
    if (!text && errno != ENOENT) {
        fprintf(stderr, "%s: cannot read %s: %s\n", who, from, strerror(errno));
        return false;
    }
    /* whole lines only: the gateway may be appending one right now, and half a line reads as a forged one */
    while (len && text[len - 1] != '\n')
        len--;
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && files_pwrite_all(fd, text, len, 0) && fdatasync(fd) == 0;
    if (!ok)
        fprintf(stderr, "%s: cannot write %s: %s\n", who, to, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && ok) {
        fprintf(stderr, "%s: cannot write %s: %s\n", who, to, strerror(errno));
        ok = false;
    }
    free(text);
    *bytes = len;
    return ok;
}

/* mkdir -p: `path` and the folders above it that are missing (owner only). False with errno. */
static bool make_folders(const char *path)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s", path) >= sizeof p) {
        errno = ENAMETOOLONG;
        return false;
    }
    for (char *slash = strchr(p + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash)
            *slash = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return false;
        if (!slash)
            return true;
        *slash = '/';
    }
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static int backup(const gw_config *c, const char *to)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!make_folders(to)) {
        fprintf(stderr, WHO ": cannot create %s: %s\n", to, strerror(errno));
        return 2;
    }
    /* every copy is made new (O_EXCL), and what this run made goes again when a later step refuses: a backup
       never overwrites another, and leaves nothing half-made */
    char checkpoints_to[4096];
    if ((size_t)snprintf(checkpoints_to, sizeof checkpoints_to, "%s/%s", to,
                         files_base_name(c->audit_checkpoint_file)) >= sizeof checkpoints_to) {
        fprintf(stderr, WHO ": %s: the path is too long\n", to);
        return 2;
    }
    size_t checkpoint_bytes;
    if (!copy_checkpoints(WHO, c->audit_checkpoint_file, checkpoints_to, &checkpoint_bytes))
        return 2;
    st_config sc = {.path = c->store_path, .busy_timeout_ms = (unsigned)c->store_busy_timeout_ms};
    st_backup_report r;
    st_error err;
    if (st_backup(&sc, to, &r, &err) != ST_OK) {
        fprintf(stderr, WHO ": %s\n", err.message);
        unlink(checkpoints_to); /* st_backup left none of its copies: nothing half-made stays */
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("backed up %s into %s in %.1f s: database %.1f MiB, document log %.1f MiB (%.1f MiB of it data), audit "
           "checkpoints %zu bytes\n",
           c->store_path, to, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           mib(r.database_bytes), mib(r.document_bytes), mib(r.document_data), checkpoint_bytes);
    printf("to restore: stop the gateway, then fhirgw restore --from %s (with this command's --config or --dev)\n", to);
    return 0;
}

/*
 * The folder: `to` with its strftime conversions done in local time, so that a scheduled backup
 * (deploy/fhirgw-backup.timer) names each run's folder by its time: --to /var/backups/fhirgw/%Y-%m-%dT%H%M%S.
 * False when the result would be empty or too long.
 */
static bool folder_name(const char *to, char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm local;
    if (!localtime_r(&now, &local))
        return false;
    size_t n = strftime(out, size, to, &local);
    return n > 0 && n < size;
}

int cmd_backup(int argc, char **argv)
{
    gw_config c;
    char to[1024];
    if (argc != 5 || strcmp(argv[3], "--to") || !folder_name(argv[4], to, sizeof to) ||
        !cli_settings(WHO, argv[1], argv[2], &c))
        return usage();
    return backup(&c, to);
}

/* ---- fhirgw restore ---- */

static int restore_usage(void)
{
    fprintf(stderr, "usage: fhirgw restore --config FILE | --dev DIR --from DIR\n");
    return 2;
}

/* The paths a restore of the checkpoint file uses: the backup's, the live one's copy in aside, and the fresh
 * copy written beside the live one before it is renamed over it. False (said) when one is too long. */
typedef struct checkpoint_paths {
    char backup[4096], kept[4096], fresh[4096];
} checkpoint_paths;

static bool checkpoint_paths_of(const char *live, const char *from, const char *aside, checkpoint_paths *p)
{
    if ((size_t)snprintf(p->backup, sizeof p->backup, "%s/%s", from, files_base_name(live)) >= sizeof p->backup ||
        (size_t)snprintf(p->kept, sizeof p->kept, "%s/%s", aside, files_base_name(live)) >= sizeof p->kept ||
        (size_t)snprintf(p->fresh, sizeof p->fresh, "%s.restoring", live) >= sizeof p->fresh) {
        fprintf(stderr, RESTORE_WHO ": a path is too long\n");
        return false;
    }
    return true;
}

/* Before the store is touched: the backup's checkpoint file copied beside the live one, so that a copy that
 * fails (a full disk) fails the restore while nothing has changed yet. */
static bool prepare_checkpoints(const checkpoint_paths *p)
{
    size_t n;
    unlink(p->fresh); /* a restore that stopped half way left it */
    if (copy_checkpoints(RESTORE_WHO, p->backup, p->fresh, &n))
        return true;
    unlink(p->fresh);
    return false;
}

/* After the store is restored: the live checkpoint file copied into aside (the replaced store verifies
 * with it), then the prepared copy renamed over it, so a crash leaves the one or the other whole. */
static bool replace_checkpoints(const char *live, const checkpoint_paths *p)
{
    size_t n;
    if (!copy_checkpoints(RESTORE_WHO, live, p->kept, &n))
        return false;
    if (rename(p->fresh, live) != 0) {
        fprintf(stderr, RESTORE_WHO ": cannot replace %s: %s\n", live, strerror(errno));
        return false;
    }
    return true;
}

int cmd_restore(int argc, char **argv)
{
    gw_config c;
    if (argc != 5 || strcmp(argv[3], "--from") || !*argv[4] || !cli_settings(RESTORE_WHO, argv[1], argv[2], &c))
        return restore_usage();
    const char *from = argv[4];
    char aside[4096], stamp[32];
    time_t now = time(NULL);
    struct tm local;
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", localtime_r(&now, &local));
    if ((size_t)snprintf(aside, sizeof aside, "%s.before-restore-%s", c.store_path, stamp) >= sizeof aside)
        return restore_usage();
    checkpoint_paths cp;
    if (!checkpoint_paths_of(c.audit_checkpoint_file, from, aside, &cp))
        return 2;
    if (!prepare_checkpoints(&cp)) {
        fprintf(stderr, RESTORE_WHO ": nothing was restored\n");
        return 2;
    }
    st_config sc = {.path = c.store_path, .busy_timeout_ms = (unsigned)c.store_busy_timeout_ms};
    uint64_t copied;
    st_error err;
    if (st_restore(&sc, from, aside, &copied, &err) != ST_OK) {
        fprintf(stderr, RESTORE_WHO ": %s\n", err.message);
        unlink(cp.fresh);
        return 2;
    }
    if (!replace_checkpoints(c.audit_checkpoint_file, &cp)) {
        fprintf(stderr,
                RESTORE_WHO ": the store is restored but not its audit checkpoints; the replaced files "
                            "are in %s\n",
                aside);
        return 2;
    }
    printf("restored %s from %s (%.1f MiB); the replaced files are in %s\n", c.store_path, from, mib(copied), aside);
    return cli_audit_verify(&c);
}
