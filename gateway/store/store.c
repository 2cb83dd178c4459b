/*
 * gateway/store.c — the backend-independent half of the store (see store.h):
 * the write queue and the commit thread that batches it (group commit), the
 * pool of read connections, timestamps and the meta splice, result memory,
 * counters, and the text helpers (instants, normalisation).
 *
 * Group commit. Submitters append to a queue and wake the commit thread.
 * The thread takes what is queued and commits it as one transaction with one
 * sync. While it syncs, new submissions pile up and form the next batch by
 * themselves; on top of that, when the previous batch had several
 * transactions (so writers are concurrent), the thread waits up to
 * batch_wait_us for the queue to grow to about that size again before it
 * starts, which evens out batches without delaying a lone writer at all.
 *
 * The sync stage. With a backend whose commits become durable later (the
 * SQLite writer defers its WAL sync: store_sqlite.c), the commit thread
 * hands each committed batch to a sync thread and goes on with the next
 * one; the sync thread syncs once for every batch committed so far, and
 * only then runs their callbacks, counts them, writes the audit chain's
 * checkpoint and wakes the relay (on_commit). At most SYNC_AHEAD batches
 * wait for it, so the commit thread stays at most that far ahead.
 * Readers see a batch from its COMMIT on, before it is durable; what
 * leaves the process from a read must wait for the sync (store.h says how).
 * The store itself holds back relay notifications and audit entries of
 * batches not yet durable from its reads (hidden_*_from), and counts such
 * batches (st_durable_now). A failed sync breaks the store: what was
 * committed since the last good one may be lost, so every waiting and later
 * write fails with ST_IO, and so does every read.
 *
 * The document log. With a backend that is its database's sole writer, a
 * document sealed early is appended to a file of its own (doc_log.h) and
 * its row holds a locator. The commit thread asks for a sync of that file
 * when it takes a batch and waits before the COMMIT until it covers the
 * batch's records (documents_end): no row is durable before its record.
 * Records of rows rolled back are freed at once, those of bodies a purge
 * erased once that is durable (release_documents).
 */
#define _GNU_SOURCE /* memmem */
#include "gateway/store/doc_log.h"
#include "gateway/store/read_cache.h"
#include "gateway/store/store_backend.h"

#include "fhir/array.h"
#include "fhir/datetime.h"
#include "gateway/util/files.h"
#include "gateway/util/thread_name.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A submitted transaction, with room for its results. */
typedef struct txn {
    struct txn *next;
    const st_op *ops;
    size_t op_count;
    st_done_fn done;
    void *arg;
    uint64_t queued_at_us;
    st_op_result results[]; /* op_count */
} txn;

struct st_write_ctx {
    st_store *store;
    uint64_t audit_appended; /* audit entries appended in this batch so far */
    size_t notifications;    /* relay notifications queued by kept transactions of this batch */
    int64_t first_notify;    /* the lowest seq among them (INT64_MAX: none) */
    uint64_t documents_end;  /* the document log's position the batch's rows name records up to (0: none) */
    dl_locator *released;    /* records whose rows the batch erased: freed once it is durable */
    size_t released_count, released_capacity;
    dl_locator *taken; /* records the batch's rows name: freed at once if those rows are rolled back */
    size_t taken_count, taken_capacity;
};

/* Batches committed and waiting for the sync stage at most: how far the commit thread runs ahead. */
#define SYNC_AHEAD 1

/* A batch committed (or failed), on its way through the sync stage. */
typedef struct committed {
    struct committed *next;
    txn *batch;
    st_commit_stats stats;
    uint64_t started_us;               /* BEGIN: commit_us is counted from here to durable */
    uint64_t audit_appended;           /* entries it appended */
    au_head audit_head;                /* the chain's head after it */
    int64_t first_notify, first_audit; /* the lowest seqs of the rows it queued / appended (INT64_MAX: none) */
    dl_locator *released;              /* records of the document log to free once durable (malloc'd) */
    size_t released_count;
} committed;

struct st_store {
    st_config config;
    const st_backend *backend;
    void *writer;

    /* the queue, guarded by queue_lock */
    pthread_mutex_t queue_lock;
    pthread_cond_t queue_grew;
    txn *head, *tail;
    size_t queued;
    bool stopping;
    pthread_t commit_thread;
    int64_t last_stamp_ms; /* commit thread only */

    /* the directory's current versions (read_cache.h); NULL when the backend has other writers */
    rc_cache *read_cache;
    /* documents sealed early, outside the database (doc_log.h); NULL when the backend has other writers */
    dl_log *doc_log;
    st_reclaim reclaim;      /* what st_open's reclaim of the document log did (its error points at reclaim_error) */
    char reclaim_error[512]; /* why that reclaim did not run through; "" when it did or was not needed */
    int serving_lock_fd;     /* config.exclusive: <path>.lock, flock'd exclusively until st_close; else -1 */

    /* read connections, guarded by pool_lock */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_returned;
    void **idle_readers;
    size_t idle_count, open_readers;

    /* the audit chain (commit thread only, after st_open): its head and the last checkpoint */
    au_head audit_head;
    int64_t checkpoint_seq, checkpoint_ms;
    atomic_bool fail_audit; /* st_test_fail_audit */

    /* the sync stage (see the top), guarded by sync_lock */
    bool pipelined; /* the backend makes commits durable later: a sync thread runs */
    pthread_t sync_thread;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_wanted, sync_room;
    committed *unsynced, *unsynced_tail;
    size_t unsynced_count;
    bool sync_stopping;
    int64_t committing_notify, committing_audit; /* first seqs of the batch in COMMIT (INT64_MAX: none) */
    /* read without the lock: */
    _Atomic int64_t hidden_notify_from, hidden_audit_from; /* seqs of batches not durable start here */
    _Atomic uint64_t not_durable;                          /* batches from COMMIT until durable or failed */
    atomic_bool broken;                                    /* a sync failed */
    atomic_bool hold_sync;                                 /* st_test_hold_sync */
    atomic_bool fail_next_sync;                            /* st_test_fail_next_sync */
    char broken_why[ST_MESSAGE_MAX];                       /* written once, before broken is set */

    /* counters, written by the commit thread */
    _Atomic uint64_t commits, transactions, failed_transactions, operations;
    _Atomic uint64_t commit_us_total, commit_us_max, max_batch_seen;
    _Atomic uint64_t audit_entries, audit_checkpoints, audit_checkpoint_failures;
};

/* ---- Small things ------------------------------------------------------------------ */

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t real_clock_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *st_status_name(st_status status)
{
    static const char *const names[] = {
        [ST_OK] = "ok",
        [ST_EXISTS] = "exists",
        [ST_NOT_FOUND] = "not-found",
        [ST_GONE] = "gone",
        [ST_VERSION_CONFLICT] = "version-conflict",
        [ST_CONFLICT] = "conflict",
        [ST_MULTIPLE_MATCHES] = "multiple-matches",
        [ST_ABORTED] = "aborted",
        [ST_INVALID] = "invalid",
        [ST_BUSY] = "busy",
        [ST_CLOSED] = "closed",
        [ST_IO] = "io",
        [ST_INTERNAL] = "internal",
    };
    return (unsigned)status < sizeof names / sizeof *names && names[status] ? names[status] : "?";
}

/*
 * A message into its fixed buffer (ST_MESSAGE_MAX). One that does not fit is
 * cut at a character boundary and ends in "...", so that a reader sees that
 * something is missing rather than a complete-looking shorter sentence.
 */
static void format_message(char *out, size_t size, const char *format, va_list ap)
{
    int n = vsnprintf(out, size, format, ap);
    if (n < 0 || (size_t)n < size)
        return;
    size_t end = size - sizeof "...";
    while (end > 0 && ((unsigned char)out[end] & 0xC0) == 0x80)
        end--; /* out[end] starts the character dropped first */
    memcpy(out + end, "...", sizeof "...");
}

void st__error(st_error *err, const char *format, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, format);
    format_message(err->message, sizeof err->message, format, ap);
    va_end(ap);
}

void st__result_message(st_op_result *res, st_status status, const char *format, ...)
{
    res->status = status;
    va_list ap;
    va_start(ap, format);
    format_message(res->message, sizeof res->message, format, ap);
    va_end(ap);
}

/* ---- Instants ------------------------------------------------------------------------ */

/* fhir/datetime does the calendar; the store only names the formats it writes. */
void st_format_instant(int64_t epoch_ms, char out[ST_INSTANT_LEN])
{
    _Static_assert(ST_INSTANT_LEN == FDT_INSTANT_LEN, "an instant is as long as fhir/datetime writes it");
    fdt_format_instant(epoch_ms, out);
}

void st_format_http_date(int64_t epoch_ms, char out[30])
{
    _Static_assert(FDT_HTTP_DATE_LEN == 30, "an HTTP date is as long as fhir/datetime writes it");
    fdt_format_http_date(epoch_ms, out);
}

/* ---- String normalisation ------------------------------------------------------------- */

/* Latin-1 Supplement and Latin Extended-A letters folded to lower-case ASCII. */
static const struct {
    uint16_t first, last;
    const char *base;
} LATIN_FOLD[] = {
    {0xC0, 0xC5, "a"},   {0xC6, 0xC6, "ae"},  {0xC7, 0xC7, "c"},   {0xC8, 0xCB, "e"},    {0xCC, 0xCF, "i"},
    {0xD0, 0xD0, "d"},   {0xD1, 0xD1, "n"},   {0xD2, 0xD6, "o"},   {0xD8, 0xD8, "o"},    {0xD9, 0xDC, "u"},
    {0xDD, 0xDD, "y"},   {0xDE, 0xDE, "th"},  {0xDF, 0xDF, "ss"},  {0xE0, 0xE5, "a"},    {0xE6, 0xE6, "ae"},
    {0xE7, 0xE7, "c"},   {0xE8, 0xEB, "e"},   {0xEC, 0xEF, "i"},   {0xF0, 0xF0, "d"},    {0xF1, 0xF1, "n"},
    {0xF2, 0xF6, "o"},   {0xF8, 0xF8, "o"},   {0xF9, 0xFC, "u"},   {0xFD, 0xFD, "y"},    {0xFE, 0xFE, "th"},
    {0xFF, 0xFF, "y"},   {0x100, 0x105, "a"}, {0x106, 0x10D, "c"}, {0x10E, 0x111, "d"},  {0x112, 0x11B, "e"},
    {0x11C, 0x123, "g"}, {0x124, 0x127, "h"}, {0x128, 0x131, "i"}, {0x132, 0x133, "ij"}, {0x134, 0x135, "j"},
    {0x136, 0x138, "k"}, {0x139, 0x142, "l"}, {0x143, 0x14B, "n"}, {0x14C, 0x151, "o"},  {0x152, 0x153, "oe"},
    {0x154, 0x159, "r"}, {0x15A, 0x161, "s"}, {0x162, 0x167, "t"}, {0x168, 0x173, "u"},  {0x174, 0x175, "w"},
    {0x176, 0x178, "y"}, {0x179, 0x17E, "z"}, {0x17F, 0x17F, "s"},
};

static const char *latin_base(unsigned cp)
{
    for (size_t i = 0; i < sizeof LATIN_FOLD / sizeof *LATIN_FOLD; i++)
        if (cp >= LATIN_FOLD[i].first && cp <= LATIN_FOLD[i].last)
            return LATIN_FOLD[i].base;
    return NULL;
}

/*
 * Every folding maps a two-byte UTF-8 sequence to at most two ASCII bytes
 * and drops the combining marks, so the result never outgrows the input.
 */
char *st_normalize(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        if (*p < 0x80) {
            *o++ = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            p++;
            continue;
        }
        if ((*p & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            unsigned cp = ((unsigned)(*p & 0x1F) << 6) | (p[1] & 0x3F);
            const char *base = latin_base(cp);
            if (base) {
                for (; *base; base++)
                    *o++ = *base;
                p += 2;
                continue;
            }
            if (cp >= 0x300 && cp <= 0x36F) { /* combining diacritical marks */
                p += 2;
                continue;
            }
        }
        *o++ = (char)*p++;
    }
    *o = '\0';
    return out;
}

/* ---- The meta splice ---------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static char *render_plain(const st_op *op, int64_t version, const char *last_updated, size_t *len, st_op_result *res)
{
    if (op->render) {
        char *bytes = op->render(op->render_arg, version, last_updated, len);
        if (!bytes)
            st__result_message(res, ST_INTERNAL, "the render callback failed");
        return bytes;
    }
    const char *json = op->json;
    size_t n = op->json_len ? op->json_len : (json ? strlen(json) : 0);
    size_t at = op->meta_at;
    if (!json || !n) {
        st__result_message(res, ST_INVALID, "no resource body");
        return NULL;
    }
    if (at == 0) {
        const char *brace = memchr(json, '{', n);
        if (!brace) {
            st__result_message(res, ST_INVALID, "the body is not a JSON object");
            return NULL;
        }
        at = (size_t)(brace - json) + 1;
    }
    if (at > n) {
        st__result_message(res, ST_INVALID, "meta_at beyond the body");
        return NULL;
    }
    /* commas: before unless a member may start here, after unless the object or a comma follows */
    size_t b = at, a = at;
    while (b > 0 && is_space(json[b - 1]))
        b--;
    while (a < n && is_space(json[a]))
        a++;
    bool lead = !(b > 0 && (json[b - 1] == '{' || json[b - 1] == ','));
    bool trail = a < n && json[a] != '}' && json[a] != ',';
    const char *extra = op->meta_extra && *op->meta_extra ? op->meta_extra : NULL;

    char meta[160];
    int m = snprintf(meta, sizeof meta, "%s\"meta\":{\"versionId\":\"%lld\",\"lastUpdated\":\"%s\"", lead ? "," : "",
                     (long long)version, last_updated);
    size_t extra_len = extra ? strlen(extra) : 0;
    size_t total = n + (size_t)m + (extra ? extra_len + 1 : 0) + 1 + (trail ? 1 : 0);
    char *out = malloc(total + 1);
    if (!out) {
        st__result_message(res, ST_INTERNAL, "out of memory");
        return NULL;
    }
    char *o = out;
    memcpy(o, json, at), o += at;
    memcpy(o, meta, (size_t)m), o += m;
    if (extra) {
        *o++ = ',';
        memcpy(o, extra, extra_len), o += extra_len;
    }
    *o++ = '}';
    if (trail)
        *o++ = ',';
    memcpy(o, json + at, n - at), o += n - at;
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

/* ---- Sealing at rest ----------------------------------------------------------------- */

/* What is sealed, and which index rows of it stay: the parameters that access and idempotency need
 * (identifier: the handover's conditional create) and the resource's metadata, never clinical content. */
static const char *const SEALED_TYPES[] = {"Bundle"};
static const char *const SEALED_INDEX_PARAMS[] = {"identifier", "type",      "timestamp", "_tag",
                                                  "_profile",   "_security", "_source"};

static bool listed(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], name))
            return true;
    return false;
}

bool st_sealed_type(const char *type)
{
    return type && listed(SEALED_TYPES, sizeof SEALED_TYPES / sizeof *SEALED_TYPES, type);
}

bool st_sealed_index_param(const char *param)
{
    return param && listed(SEALED_INDEX_PARAMS, sizeof SEALED_INDEX_PARAMS / sizeof *SEALED_INDEX_PARAMS, param);
}

/* The associated data of a version: its row's name, so that a ciphertext opens only where it was written. */
static void seal_aad(char *out, size_t size, const char *type, const char *id, int64_t version)
{
    snprintf(out, size, "%s/%s/_history/%lld", type, id, (long long)version);
}

#define AAD_MAX (ST_TYPE_MAX + ST_ID_MAX + 40)

/*
 * A document sealed early goes to the document log (doc_log.h), and its row will hold the locator instead:
 * sealed is freed and the locator returned in its place. When the log cannot take it the row holds the
 * sealed bytes, as without a log.
 */
static char *to_doc_log(st_store *s, char *sealed, size_t *len)
{
    char locator[DL_LOCATOR_MAX];
    uint64_t end;
    char *kept = dl_append(s->doc_log, sealed, *len, locator, &end, NULL, 0) ? strdup(locator) : NULL;
    if (!kept)
        return sealed;
    free(sealed);
    *len = strlen(kept);
    return kept;
}

char *st_seal_early(st_store *s, const char *type, const char *id, const char *plain, size_t len, size_t *out_len)
{
    const sl_keyring *keys = s->config.seal_keys;
    if (!keys || !st_sealed_type(type) || strlen(id) > ST_ID_MAX) /* the aad must name the row whole */
        return NULL;
    char aad[AAD_MAX], why[128];
    seal_aad(aad, sizeof aad, type, id, 1);
    char *sealed = sl_seal_early(keys, aad, plain, len, out_len, why, sizeof why);
    return sealed && s->doc_log ? to_doc_log(s, sealed, out_len) : sealed;
}

void st_discard_early(st_store *s, const char *sealed, size_t len)
{
    dl_locator loc;
    if (s && s->doc_log && sealed && dl_parse(sealed, len, &loc))
        dl_release(s->doc_log, &loc, NULL, 0); /* a failure leaves dead space, nothing else */
}

/* A row of this batch names a record of the document log: the COMMIT waits for the log to hold it (run_batch). */
static void took_document(st_write_ctx *ctx, const dl_locator *loc)
{
    if (dl_end_of(loc) > ctx->documents_end)
        ctx->documents_end = dl_end_of(loc);
    if (fa_reserve(&ctx->taken, &ctx->taken_capacity, ctx->taken_count + 1, sizeof *ctx->taken))
        ctx->taken[ctx->taken_count++] = *loc;
    else
        dl_note_dead_space(ctx->store->doc_log); /* a rollback could not free it: the next start does */
}

/* Rows naming the records taken since `from` were rolled back: nothing names them, nothing ever will. */
static void drop_taken(st_write_ctx *ctx, size_t from)
{
    for (size_t i = from; i < ctx->taken_count; i++)
        dl_release(ctx->store->doc_log, &ctx->taken[i], NULL, 0);
    ctx->taken_count = from;
}

char *st__render(st_write_ctx *ctx, const st_op *op, int64_t version, const char *last_updated, size_t *len,
                 st_op_result *res)
{
    const sl_keyring *keys = ctx->store->config.seal_keys;
    bool sealed_type = keys && st_sealed_type(op->type);
    char *early = sealed_type && op->sealed ? op->sealed(op->render_arg, version, len) : NULL;
    dl_locator loc;
    if (early && dl_parse(early, *len, &loc))
        took_document(ctx, &loc);
    if (early)
        return early;
    char *plain = render_plain(op, version, last_updated, len, res);
    if (!plain || !sealed_type)
        return plain;
    char aad[AAD_MAX], why[128];
    seal_aad(aad, sizeof aad, op->type, op->id, version);
    size_t sealed_len = 0;
    char *sealed = sl_seal(keys, aad, plain, *len, &sealed_len, why, sizeof why);
    OPENSSL_cleanse(plain, *len);
    free(plain);
    if (!sealed)
        st__result_message(res, ST_INTERNAL, "%s: %s", aad, why);
    *len = sealed_len;
    return sealed;
}

void st__body_erased(st_write_ctx *ctx, const char *body, size_t len)
{
    dl_locator loc;
    if (!ctx->store->doc_log || !dl_parse(body, len, &loc))
        return;
    if (fa_reserve(&ctx->released, &ctx->released_capacity, ctx->released_count + 1, sizeof *ctx->released))
        ctx->released[ctx->released_count++] = loc;
    else
        dl_note_dead_space(ctx->store->doc_log); /* the record stays until the next start reclaims it */
}

bool st__index_row_kept(st_write_ctx *ctx, const st_op *op, const st_index_row *row)
{
    return !ctx->store->config.seal_keys || !st_sealed_type(op->type) || st_sealed_index_param(row->param);
}

/*
 * A body sealed early (st_seal_early) gets the version's meta as a render at commit would have written it:
 * "versionId" and "lastUpdated" first in the resource's meta object. *plain is replaced (the old one wiped);
 * false (plain wiped and freed) when the body has no meta object.
 */
static bool put_version_meta(const st_resource *r, char **plain, size_t *len)
{
    static const char META[] = "\"meta\":{";
    char *at = memmem(*plain, *len, META, sizeof META - 1), *out = NULL;
    size_t head = at ? (size_t)(at - *plain) + sizeof META - 1 : 0;
    char version[128];
    int n = snprintf(version, sizeof version, "\"versionId\":\"%lld\",\"lastUpdated\":\"%s\"%s", (long long)r->version,
                     r->last_updated, head < *len && (*plain)[head] != '}' ? "," : "");
    if (at && n > 0 && (size_t)n < sizeof version && (out = malloc(*len + (size_t)n + 1))) {
        memcpy(out, *plain, head);
        memcpy(out + head, version, (size_t)n);
        memcpy(out + head + n, *plain + head, *len - head + 1);
    }
    OPENSSL_cleanse(*plain, *len);
    free(*plain);
    *plain = out;
    *len = out ? *len + (size_t)n : 0;
    return out != NULL;
}

/*
 * A version as read from the backend, made ready for the caller: a sealed body opened (ST_INTERNAL with where
 * and why when it does not open), a version whose body was purged reported as deleted.
 */
static st_status open_version(st_store *s, st_resource *r, st_error *err)
{
    if (!r->json) {
        r->deleted = true;
        return ST_OK;
    }
    if (!sl_is_sealed(r->json, r->json_len) && !dl_is_locator(r->json, r->json_len))
        return ST_OK; /* most reads */
    char aad[AAD_MAX], why[160];
    seal_aad(aad, sizeof aad, r->type, r->id, r->version);
    const char *sealed = r->json;
    size_t sealed_len = r->json_len;
    dl_locator loc;
    char *from_log = NULL;
    if (dl_parse(r->json, r->json_len, &loc)) { /* the sealed bytes are in the document log */
        if (!s->doc_log) {
            st__error(err, "%s is kept in the document log, which is not open", aad);
            return ST_INTERNAL;
        }
        if (!(from_log = dl_read(s->doc_log, &loc, why, sizeof why))) {
            st__error(err, "%s: %s", aad, why);
            return ST_INTERNAL;
        }
        sealed = from_log;
        sealed_len = loc.length;
    }
    if (!sl_is_sealed(sealed, sealed_len)) {
        bool record = from_log != NULL;
        free(from_log);
        if (!record)
            return ST_OK;
        /* the log holds sealed bytes only: zeros are a freed record (a damaged log, or files copied by hand) */
        st__error(err, "%s: its record in the document log holds no sealed document (purged, or the log is damaged)",
                  aad);
        return ST_INTERNAL;
    }
    if (!s->config.seal_keys) {
        free(from_log);
        st__error(err, "%s is sealed and no seal key file is configured", aad);
        return ST_INTERNAL;
    }
    size_t len = 0;
    char *plain = sl_open(s->config.seal_keys, aad, sealed, sealed_len, &len, why, sizeof why);
    bool early = sl_is_early(sealed, sealed_len);
    free(from_log);
    if (!plain) {
        st__error(err, "%s: %s", aad, why);
        if (s->config.on_seal_failure)
            s->config.on_seal_failure(s->config.on_seal_failure_arg, err ? err->message : why);
        return ST_INTERNAL;
    }
    if (early && !put_version_meta(r, &plain, &len)) {
        st__error(err, "%s: sealed early, and its meta object is not where it must be", aad);
        return ST_INTERNAL;
    }
    r->json = r->plain_ = plain;
    r->json_len = len;
    return ST_OK;
}

static st_status open_list(st_store *s, st_resource *items, size_t count, st_error *err)
{
    st_status status = ST_OK;
    for (size_t i = 0; status == ST_OK && i < count; i++)
        status = open_version(s, &items[i], err);
    return status;
}

int64_t st__stamp(st_write_ctx *ctx)
{
    st_store *s = ctx->store;
    int64_t now = s->config.clock(s->config.clock_arg);
    if (now < s->last_stamp_ms)
        now = s->last_stamp_ms;
    s->last_stamp_ms = now;
    return now;
}

/* ---- Result memory ------------------------------------------------------------------ */

bool st__resource_fill(st_resource *out, const char *type, const char *id, int64_t version, int64_t last_updated_ms,
                       st_method method, const char *json, size_t json_len, const char *owner, const char *tags)
{
    memset(out, 0, sizeof *out);
    owner = owner ? owner : "";
    size_t tag_count = 0, tags_len = tags ? strlen(tags) : 0;
    if (tags_len) {
        tag_count = 1;
        for (const char *t = tags; *t; t++)
            tag_count += *t == ST__TAG_SEPARATOR;
    }
    size_t type_len = strlen(type), id_len = strlen(id), owner_len = strlen(owner);
    size_t size = (tag_count + 1) * sizeof(char *) + type_len + 1 + id_len + 1 + owner_len + 1 +
                  (json ? json_len + 1 : 0) + tags_len + 1;
    char *block = malloc(size);
    if (!block)
        return false;
    const char **tag_ptrs = (const char **)(void *)block;
    char *p = block + (tag_count + 1) * sizeof(char *);
#define COPY_FIELD(dst, src, len) (memcpy(p, src, len), p[len] = '\0', dst = p, p += (len) + 1)
    COPY_FIELD(out->type, type, type_len);
    COPY_FIELD(out->id, id, id_len);
    COPY_FIELD(out->owner, owner, owner_len);
    if (json)
        COPY_FIELD(out->json, json, json_len);
#undef COPY_FIELD
    if (tags_len) {
        memcpy(p, tags, tags_len + 1);
        size_t k = 0;
        tag_ptrs[k++] = p;
        for (; *p; p++)
            if (*p == ST__TAG_SEPARATOR) {
                *p = '\0';
                tag_ptrs[k++] = p + 1;
            }
    }
    tag_ptrs[tag_count] = NULL;
    out->access_tags = tag_ptrs;
    out->access_tag_count = tag_count;
    out->json_len = json ? json_len : 0;
    out->version = version;
    out->last_updated_ms = last_updated_ms;
    st_format_instant(last_updated_ms, out->last_updated);
    out->method = method;
    out->deleted = method == ST_METHOD_DELETE;
    out->block_ = block;
    return true;
}

void st_resource_free(st_resource *r)
{
    if (!r)
        return;
    free(r->block_);
    if (r->plain_)
        OPENSSL_cleanse(r->plain_, r->json_len);
    free(r->plain_);
    memset(r, 0, sizeof *r);
}

st_resource *st__list_push(st_list *list, size_t *capacity)
{
    if (!fa_reserve(&list->items, capacity, list->count + 1, sizeof *list->items))
        return NULL;
    st_resource *slot = &list->items[list->count++];
    memset(slot, 0, sizeof *slot);
    return slot;
}

void st_list_free(st_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        st_resource_free(&list->items[i]);
    free(list->items);
    for (size_t i = 0; i < list->included_count; i++)
        st_resource_free(&list->included[i]);
    free(list->included);
    memset(list, 0, sizeof *list);
}

/* ---- Read connections --------------------------------------------------------------- */

static void *reader_acquire(st_store *s, st_error *err)
{
    if (atomic_load(&s->broken)) { /* what a reader would see may not be on disk, and may never be */
        st__error(err, "%s", s->broken_why);
        return NULL;
    }
    pthread_mutex_lock(&s->pool_lock);
    while (s->idle_count == 0 && s->open_readers >= s->config.max_readers)
        pthread_cond_wait(&s->pool_returned, &s->pool_lock);
    if (s->idle_count > 0) {
        void *reader = s->idle_readers[--s->idle_count];
        pthread_mutex_unlock(&s->pool_lock);
        return reader;
    }
    s->open_readers++;
    pthread_mutex_unlock(&s->pool_lock);

    /* opening takes a while: not under the lock */
    void *reader = s->backend->open_reader(&s->config, err);
    if (!reader) {
        pthread_mutex_lock(&s->pool_lock);
        s->open_readers--;
        pthread_cond_signal(&s->pool_returned);
        pthread_mutex_unlock(&s->pool_lock);
    }
    return reader;
}

static void reader_release(st_store *s, void *reader)
{
    pthread_mutex_lock(&s->pool_lock);
    s->idle_readers[s->idle_count++] = reader;
    pthread_cond_signal(&s->pool_returned);
    pthread_mutex_unlock(&s->pool_lock);
}

static bool valid_name(const char *text, size_t max)
{
    return text && *text && strlen(text) <= max;
}

static st_status read_version(st_store *s, const char *type, const char *id, int64_t version, st_resource *out,
                              st_error *err)
{
    memset(out, 0, sizeof *out);
    if (!valid_name(type, ST_TYPE_MAX) || !valid_name(id, ST_ID_MAX) || version < 0) {
        st__error(err, "invalid type, id or version");
        return ST_INVALID;
    }
    bool cached = !version && s->read_cache && rc_cached_type(type) && !atomic_load(&s->broken);
    if (cached && rc_get(s->read_cache, type, id, out))
        return ST_OK;
    uint64_t generation = cached ? rc_generation(s->read_cache) : 0; /* before the read: see read_cache.h */
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_status status = s->backend->read(reader, type, id, version, out, err);
    reader_release(s, reader);
    if (status != ST_OK && status != ST_GONE)
        return status;
    st_status opened = open_version(s, out, err);
    if (opened != ST_OK) {
        st_resource_free(out);
        return opened;
    }
    if (cached && status == ST_OK && !out->deleted)
        rc_put(s->read_cache, generation, out);
    return out->deleted ? ST_GONE : status;
}

st_status st_read(st_store *s, const char *type, const char *id, st_resource *out, st_error *err)
{
    return read_version(s, type, id, 0, out, err);
}

st_status st_vread(st_store *s, const char *type, const char *id, int64_t version, st_resource *out, st_error *err)
{
    if (version <= 0) {
        memset(out, 0, sizeof *out);
        return ST_NOT_FOUND;
    }
    return read_version(s, type, id, version, out, err);
}

st_status st_history(st_store *s, const st_history_query *query, st_list *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    out->total = -1;
    if (query->id && !query->type) {
        st__error(err, "instance history needs a type");
        return ST_INVALID;
    }
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_status status = s->backend->history(reader, query, out, err);
    reader_release(s, reader);
    if (status == ST_OK)
        status = open_list(s, out->items, out->count, err);
    if (status != ST_OK)
        st_list_free(out);
    return status;
}

st_status st_search(st_store *s, const st_query *query, st_list *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    out->total = -1;
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_status status = s->backend->search(reader, query, out, err);
    reader_release(s, reader);
    if (status == ST_OK)
        status = open_list(s, out->items, out->count, err);
    if (status == ST_OK)
        status = open_list(s, out->included, out->included_count, err);
    if (status != ST_OK) {
        st_list_free(out);
        out->total = -1;
    }
    return status;
}

/* ---- The commit thread ------------------------------------------------------------- */

static bool is_failure(st_status status)
{
    return status != ST_OK && status != ST_EXISTS;
}

typedef enum txn_outcome { TXN_KEPT, TXN_ROLLED_BACK, TXN_BATCH_LOST } txn_outcome;

static void mark_aborted_except(txn *t, size_t failed)
{
    for (size_t i = 0; i < t->op_count; i++)
        if (i != failed) {
            memset(&t->results[i], 0, sizeof t->results[i]);
            t->results[i].status = ST_ABORTED;
        }
}

/* ---- Audit entries in transactions ---- */

static bool is_audit(const st_op *op)
{
    return op->kind == ST_OP_AUDIT;
}

static bool has_audit(const txn *t)
{
    for (size_t i = 0; i < t->op_count; i++)
        if (is_audit(&t->ops[i]))
            return true;
    return false;
}

/* How the operations other than audit ones went, for audit_settle: the first failure, else ST_OK. */
static st_txn_result summary_of(const txn *t, size_t failed)
{
    st_txn_result r = {.status = ST_OK, .ops = t->results, .op_count = t->op_count};
    if (failed < t->op_count) {
        r.status = t->results[failed].status;
        r.failed_op = failed;
    }
    return r;
}

/* One audit entry, settled and sealed as the next link of the chain; res says how it went. */
static void append_audit(st_store *s, st_write_ctx *ctx, const st_op *op, const st_txn_result *others,
                         st_op_result *res)
{
    memset(res, 0, sizeof *res);
    if (op->audit_settle)
        op->audit_settle(op->audit_settle_arg, others, op->audit);
    unsigned char mac[AU_MAC_LEN];
    if (!s->config.audit_keys)
        st__result_message(res, ST_INVALID, "no audit key is configured");
    else if (atomic_load(&s->fail_audit))
        st__result_message(res, ST_IO, "the audit entry could not be appended (test hook)");
    else if (!au_chain_seal(s->config.audit_keys, &s->audit_head, st__stamp(ctx), op->audit, mac))
        st__result_message(res, ST_INTERNAL, "sealing the audit entry failed");
    else
        s->backend->append_audit(s->writer, op->audit, mac, res);
    if (res->status == ST_OK)
        ctx->audit_appended++;
}

/* Appends every audit operation of t; the index of the first that failed, or op_count. */
static size_t append_audits(st_store *s, st_write_ctx *ctx, txn *t, const st_txn_result *others)
{
    for (size_t i = 0; i < t->op_count; i++) {
        if (!is_audit(&t->ops[i]))
            continue;
        append_audit(s, ctx, &t->ops[i], others, &t->results[i]);
        if (t->results[i].status != ST_OK)
            return i;
    }
    return t->op_count;
}

/*
 * A transaction whose writes failed and were rolled back still gets its
 * audit entries (the access happened, and was answered with that failure):
 * in a savepoint of their own. A failure here is left in the audit
 * operations' results (the requester answers 500/503: unrecorded).
 */
static txn_outcome append_audits_alone(st_store *s, st_write_ctx *ctx, txn *t, size_t failed, st_error *err)
{
    au_head head = s->audit_head;
    uint64_t appended = ctx->audit_appended;
    if (s->backend->begin_txn(s->writer, err) != ST_OK)
        return TXN_BATCH_LOST;
    st_txn_result others = summary_of(t, failed);
    bool ok = append_audits(s, ctx, t, &others) == t->op_count;
    if (s->backend->end_txn(s->writer, ok, err) != ST_OK)
        return TXN_BATCH_LOST;
    if (!ok) {
        s->audit_head = head;
        ctx->audit_appended = appended;
    }
    return TXN_ROLLED_BACK;
}

/* ---- The relay queue in transactions ---- */

static bool is_notify(const st_op *op)
{
    return op->kind == ST_OP_NOTIFY || op->kind == ST_OP_NOTIFY_UPDATE;
}

/*
 * A notify operation of t: an update goes to the backend as it is; a new
 * notification only when the write it reports (an earlier operation, whose
 * result is known by now) wrote something. Returns 1 when one was queued.
 */
static size_t apply_notify(st_store *s, st_write_ctx *ctx, txn *t, size_t i)
{
    const st_op *op = &t->ops[i];
    st_op_result *res = &t->results[i];
    memset(res, 0, sizeof *res);
    if (op->kind == ST_OP_NOTIFY_UPDATE) {
        s->backend->notify_update(s->writer, ctx, op->notify, res);
        return 0;
    }
    const st_op_result *written = &t->results[op->notify->of_op];
    if (written->status != ST_OK || written->unchanged) {
        res->status = ST_OK; /* nothing happened that anyone needs to hear about */
        res->unchanged = true;
        return 0;
    }
    s->backend->notify_enqueue(s->writer, ctx, op->notify, t->ops[op->notify->of_op].type, written, res);
    return res->status == ST_OK;
}

/* The queue's seq of a notification just queued (the backend puts it in res->id). */
static int64_t notify_seq_of(const st_op_result *res)
{
    return strtoll(res->id, NULL, 10);
}

/* Runs one submitted transaction inside its savepoint: its writes, then its audit entries. */
static txn_outcome run_txn(st_store *s, st_write_ctx *ctx, txn *t, st_error *err)
{
    if (t->op_count == 0)
        return TXN_KEPT; /* a barrier (st_submit_barrier): nothing to run */
    au_head head = s->audit_head;
    uint64_t appended = ctx->audit_appended;
    size_t released = ctx->released_count, taken = ctx->taken_count;
    st_status begun = s->backend->begin_txn(s->writer, err);
    if (begun != ST_OK)
        return TXN_BATCH_LOST;
    size_t failed = t->op_count, queued = 0;
    int64_t first_notify = INT64_MAX;
    for (size_t i = 0; i < t->op_count && failed == t->op_count; i++) {
        if (is_audit(&t->ops[i]))
            continue;
        if (is_notify(&t->ops[i])) {
            if (apply_notify(s, ctx, t, i)) {
                queued++;
                int64_t seq = notify_seq_of(&t->results[i]);
                if (seq < first_notify)
                    first_notify = seq;
            }
        } else
            s->backend->apply(s->writer, ctx, &t->ops[i], &t->results[i]);
        if (t->ops[i].on_applied)
            t->ops[i].on_applied(t->ops[i].on_applied_arg, &t->results[i]);
        if (is_failure(t->results[i].status))
            failed = i;
    }
    if (failed == t->op_count) {
        st_txn_result others = summary_of(t, failed);
        failed = append_audits(s, ctx, t, &others);
    }
    bool keep = failed == t->op_count;
    if (s->backend->end_txn(s->writer, keep, err) != ST_OK)
        return TXN_BATCH_LOST;
    if (keep) {
        ctx->notifications += queued;
        if (first_notify < ctx->first_notify)
            ctx->first_notify = first_notify;
        return TXN_KEPT;
    }
    s->audit_head = head; /* the entries of the savepoint are gone */
    ctx->audit_appended = appended;
    ctx->released_count = released; /* and its erased bodies are back */
    drop_taken(ctx, taken);
    bool audit_failed = is_audit(&t->ops[failed]);
    st_op_result why = t->results[failed];
    mark_aborted_except(t, failed);
    if (audit_failed || !has_audit(t))
        return TXN_ROLLED_BACK;
    txn_outcome outcome = append_audits_alone(s, ctx, t, failed, err);
    t->results[failed] = why;
    return outcome;
}

/* ---- Checkpoints of the audit chain ---- */

/*
 * After a durable commit: a signed checkpoint of head (the chain as that
 * commit left it) when enough entries or time have passed (or force). On the
 * thread that finishes commits (the sync thread, when there is one).
 */
static void checkpoint_if_due(st_store *s, const au_head *head, bool force)
{
    const st_config *c = &s->config;
    if (!c->audit_signer || !c->audit_checkpoint_path || !*c->audit_checkpoint_path || head->seq <= s->checkpoint_seq)
        return;
    int64_t now = c->clock(c->clock_arg);
    if (!force && head->seq - s->checkpoint_seq < (int64_t)c->audit_checkpoint_entries &&
        now - s->checkpoint_ms < (int64_t)c->audit_checkpoint_ms)
        return;
    au_checkpoint cp = {.seq = head->seq, .time_ms = now};
    memcpy(cp.mac, head->mac, AU_MAC_LEN);
    char err[256];
    if (au_checkpoint_append(c->audit_signer, c->audit_checkpoint_path, &cp, err, sizeof err)) {
        s->checkpoint_seq = cp.seq;
        s->checkpoint_ms = now;
        atomic_fetch_add(&s->audit_checkpoints, 1);
    } else {
        atomic_fetch_add(&s->audit_checkpoint_failures, 1); /* tried again after the next commit */
    }
}

/* The whole batch failed (BEGIN or COMMIT): every operation gets the reason. */
static void fail_batch(txn *batch, st_status status, const char *message)
{
    for (txn *t = batch; t; t = t->next)
        for (size_t i = 0; i < t->op_count; i++) {
            memset(&t->results[i], 0, sizeof t->results[i]);
            st__result_message(&t->results[i], status, "%s", message);
        }
}

static void report_and_free(txn *batch)
{
    while (batch) {
        txn *next = batch->next;
        st_txn_result r = {.status = ST_OK, .ops = batch->results, .op_count = batch->op_count};
        for (size_t i = 0; i < batch->op_count; i++)
            if (is_failure(batch->results[i].status) && batch->results[i].status != ST_ABORTED) {
                r.status = batch->results[i].status;
                r.failed_op = i;
                break;
            }
        batch->done(batch->arg, &r);
        free(batch);
        batch = next;
    }
}

static void count_commit(st_store *s, const st_commit_stats *c)
{
    if (c->ok) {
        atomic_fetch_add(&s->commits, 1);
        atomic_fetch_add(&s->transactions, c->transactions - c->failed);
        atomic_fetch_add(&s->operations, c->operations);
    }
    atomic_fetch_add(&s->failed_transactions, c->ok ? c->failed : c->transactions);
    atomic_fetch_add(&s->commit_us_total, c->commit_us);
    if (c->commit_us > atomic_load(&s->commit_us_max))
        atomic_store(&s->commit_us_max, c->commit_us);
    if (c->transactions > atomic_load(&s->max_batch_seen))
        atomic_store(&s->max_batch_seen, c->transactions);
    if (s->config.on_commit)
        s->config.on_commit(s->config.on_commit_arg, c);
}

/* The lowest of a and b, INT64_MAX standing for none. */
static int64_t lowest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Under sync_lock: where rows of batches not yet durable begin, from those waiting and the one in COMMIT. */
static void recompute_hidden(st_store *s)
{
    int64_t notify = s->committing_notify, audit = s->committing_audit;
    for (committed *c = s->unsynced; c; c = c->next) {
        notify = lowest(notify, c->first_notify);
        audit = lowest(audit, c->first_audit);
    }
    atomic_store(&s->hidden_notify_from, notify);
    atomic_store(&s->hidden_audit_from, audit);
}

/* A durable batch erased these bodies for good: their records in the document log go too. */
static void release_documents(st_store *s, committed *c)
{
    for (size_t i = 0; c->stats.ok && i < c->released_count; i++)
        dl_release_purged(s->doc_log, &c->released[i]); /* held back while a backup copies the log */
    free(c->released);
    c->released = NULL;
}

/*
 * A batch is done: durable (or failed). Its stats are counted, the audit
 * chain checkpointed when due, the relay woken (on_commit), and only then
 * the callbacks run: a callback reporting ST_OK means committed and synced.
 */

static void finish_batch(st_store *s, committed *c)
{
    release_documents(s, c);
    dl_release_held(s->doc_log); /* what purges held back while a backup ran, once it is done */
    if (c->stats.ok) {
        atomic_fetch_add(&s->audit_entries, c->audit_appended);
        checkpoint_if_due(s, &c->audit_head, false); /* before the callbacks: answers come after their checkpoint */
    }
    c->stats.commit_us = monotonic_us() - c->started_us;
    count_commit(s, &c->stats);
    report_and_free(c->batch);
}

/* The sync failed: from now on the store is broken (see the top); why is kept for every later failure. */
static void break_store(st_store *s, const char *why)
{
    if (!atomic_load(&s->broken)) {
        snprintf(s->broken_why, sizeof s->broken_why, "%s", why);
        atomic_store(&s->broken, true);
    }
}

static void fail_committed(st_store *s, committed *c)
{
    if (c->stats.ok) {
        fail_batch(c->batch, ST_IO, s->broken_why);
        c->stats.ok = false;
        c->audit_appended = 0;
    }
}

/* Takes what waits for the sync stage, in commit order, and how many (*n); NULL when stopping with nothing left. */
static committed *take_unsynced(st_store *s, size_t *n)
{
    pthread_mutex_lock(&s->sync_lock);
    while ((!s->unsynced || atomic_load(&s->hold_sync)) && !s->sync_stopping)
        pthread_cond_wait(&s->sync_wanted, &s->sync_lock);
    committed *list = s->unsynced;
    *n = s->unsynced_count;
    pthread_mutex_unlock(&s->sync_lock);
    return list;
}

/* Under sync_lock: the first n waiting batches off the queue, as a list of their own. */
static void detach_unsynced(st_store *s, size_t n)
{
    committed *last = s->unsynced;
    for (size_t i = 1; i < n; i++)
        last = last->next;
    s->unsynced = last->next;
    last->next = NULL;
    s->unsynced_count -= n;
    if (!s->unsynced)
        s->unsynced_tail = NULL;
}

/*
 * One round: one sync for the n batches committed so far (list), then they
 * are finished in order. Their rows are shown to readers before any
 * callback runs: nobody hears of a commit that a read would not show.
 * (Only the first n-1 links are read outside the lock: the commit thread
 * may be appending behind the last.)
 */
static void sync_round(st_store *s, committed *list, size_t n)
{
    bool any_ok = false;
    committed *c = list;
    for (size_t i = 0; i < n; i++) {
        any_ok |= c->stats.ok;
        if (i + 1 < n)
            c = c->next;
    }
    st_error err = {{0}};
    if (any_ok && !atomic_load(&s->broken)) {
        st_status synced = atomic_exchange(&s->fail_next_sync, false)
                               ? (st__error(&err, "syncing the write-ahead log failed (test hook)"), ST_IO)
                               : s->backend->make_durable(s->writer, &err);
        if (synced != ST_OK)
            break_store(s, err.message);
    }
    pthread_mutex_lock(&s->sync_lock);
    detach_unsynced(s, n);
    if (!atomic_load(&s->broken))
        recompute_hidden(s);
    pthread_cond_broadcast(&s->sync_room);
    pthread_mutex_unlock(&s->sync_lock);
    while (list) {
        committed *next = list->next;
        if (atomic_load(&s->broken))
            fail_committed(s, list);
        finish_batch(s, list);
        atomic_fetch_sub(&s->not_durable, 1);
        free(list);
        list = next;
    }
}

static void *sync_thread_main(void *arg)
{
    st_store *s = arg;
    committed *list;
    size_t n;
    while ((list = take_unsynced(s, &n)))
        sync_round(s, list, n);
    return NULL;
}

/* On the commit thread: a committed (or failed) batch to the sync stage, waiting while SYNC_AHEAD wait. */
static void hand_to_sync(st_store *s, committed *c)
{
    pthread_mutex_lock(&s->sync_lock);
    while (s->unsynced_count >= SYNC_AHEAD)
        pthread_cond_wait(&s->sync_room, &s->sync_lock);
    c->next = NULL;
    if (s->unsynced_tail)
        s->unsynced_tail->next = c;
    else
        s->unsynced = c;
    s->unsynced_tail = c;
    s->unsynced_count++;
    s->committing_notify = s->committing_audit = INT64_MAX; /* they are the queue's now */
    pthread_cond_signal(&s->sync_wanted);
    pthread_mutex_unlock(&s->sync_lock);
}

/* Before a COMMIT that the sync stage makes durable: from here on readers may see c's rows; count c as not
 * durable and hide its rows of the relay queue and the audit trail. */
static void hide_before_commit(st_store *s, const committed *c)
{
    atomic_fetch_add(&s->not_durable, 1);
    if (c->first_notify == INT64_MAX && c->first_audit == INT64_MAX)
        return;
    pthread_mutex_lock(&s->sync_lock);
    s->committing_notify = c->first_notify;
    s->committing_audit = c->first_audit;
    recompute_hidden(s);
    pthread_mutex_unlock(&s->sync_lock);
}

/* Does an operation of the batch write a type the read cache keeps? */
static bool writes_cached_type(const txn *batch)
{
    for (const txn *t = batch; t; t = t->next)
        for (size_t i = 0; i < t->op_count; i++)
            if (t->ops[i].type && rc_cached_type(t->ops[i].type))
                return true;
    return false;
}

static void run_batch(st_store *s, txn *batch)
{
    committed *c = calloc(1, sizeof *c);
    if (!c) { /* nothing to track it with: the batch is not even begun */
        fail_batch(batch, ST_INTERNAL, "out of memory");
        report_and_free(batch);
        return;
    }
    st_write_ctx ctx = {.store = s, .first_notify = INT64_MAX};
    au_head head = s->audit_head;
    c->batch = batch;
    c->stats.ok = true;
    c->started_us = monotonic_us();
    c->stats.queue_wait_us = c->started_us - batch->queued_at_us;
    st_error err = {{0}};

    for (txn *t = batch; t; t = t->next)
        c->stats.transactions++;
    if (s->doc_log) /* the batch's documents were all appended before it was submitted: sync while it runs */
        dl_request_sync(s->doc_log, dl_written(s->doc_log));
    st_status status = ST_IO;
    if (atomic_load(&s->broken)) /* a sync failed: nothing more is written (see the top) */
        snprintf(err.message, sizeof err.message, "%s", s->broken_why);
    else
        status = s->backend->begin_batch(s->writer, &err);
    for (txn *t = batch; t && status == ST_OK; t = t->next) {
        txn_outcome outcome = run_txn(s, &ctx, t, &err);
        if (outcome == TXN_BATCH_LOST)
            status = ST_IO;
        else if (outcome == TXN_KEPT)
            c->stats.operations += t->op_count;
        else
            c->stats.failed++;
    }
    c->first_notify = ctx.notifications ? ctx.first_notify : INT64_MAX;
    c->first_audit = ctx.audit_appended ? head.seq + 1 : INT64_MAX;
    if (status == ST_OK && ctx.documents_end && !dl_wait_durable(s->doc_log, ctx.documents_end)) {
        st__error(&err, "syncing the document log failed: documents written since the last sync may be lost");
        break_store(s, err.message); /* as a failed sync of the database: nothing more is written */
        status = ST_IO;
    }
    if (s->pipelined)
        hide_before_commit(s, c);
    if (status == ST_OK)
        status = s->backend->commit_batch(s->writer, &err);
    if (s->read_cache && writes_cached_type(batch)) /* after COMMIT made it visible (read_cache.h) */
        rc_invalidate(s->read_cache);
    if (status != ST_OK) {
        s->backend->rollback_batch(s->writer);
        if (!atomic_load(&s->broken)) /* broken: whether the log's records are needed is not known */
            drop_taken(&ctx, 0);
        fail_batch(batch, status, err.message);
        c->stats.ok = false;
        s->audit_head = head;
    } else {
        c->stats.notifications = ctx.notifications;
        c->audit_appended = ctx.audit_appended;
        c->released = ctx.released;
        c->released_count = ctx.released_count;
        ctx.released = NULL;
    }
    free(ctx.released);
    free(ctx.taken);
    c->audit_head = s->audit_head;
    if (s->pipelined) {
        hand_to_sync(s, c);
    } else { /* COMMIT synced before readers saw it: durable already */
        finish_batch(s, c);
        free(c);
    }
    s->backend->maintain(s->writer);
}

static void deadline_after(struct timespec *ts, unsigned us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += (long)(us % 1000000u) * 1000;
    ts->tv_sec += us / 1000000u + ts->tv_nsec / 1000000000;
    ts->tv_nsec %= 1000000000;
}

/* Takes the next batch off the queue, waiting for work; NULL when stopping with nothing left. */
static txn *take_batch(st_store *s, size_t previous_size)
{
    pthread_mutex_lock(&s->queue_lock);
    while (!s->head && !s->stopping)
        pthread_cond_wait(&s->queue_grew, &s->queue_lock);
    size_t expected = previous_size < s->config.max_batch ? previous_size : s->config.max_batch;
    if (s->head && s->config.batch_wait_us > 0 && expected > 1 && s->queued < expected && !s->stopping) {
        struct timespec deadline;
        deadline_after(&deadline, (unsigned)s->config.batch_wait_us);
        while (s->queued < expected && !s->stopping)
            if (pthread_cond_timedwait(&s->queue_grew, &s->queue_lock, &deadline) == ETIMEDOUT)
                break;
    }
    txn *batch = s->head, *last = NULL;
    size_t n = 0;
    for (txn *t = s->head; t && n < s->config.max_batch; t = t->next, n++)
        last = t;
    if (last) {
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
        s->queued -= n;
    }
    pthread_mutex_unlock(&s->queue_lock);
    return batch;
}

static size_t batch_size(const txn *batch)
{
    size_t n = 0;
    for (; batch; batch = batch->next)
        n++;
    return n;
}

static void *commit_thread_main(void *arg)
{
    st_store *s = arg;
    size_t previous = 0;
    for (;;) {
        txn *batch = take_batch(s, previous);
        if (!batch)
            break;
        previous = batch_size(batch);
        run_batch(s, batch);
    }
    return NULL;
}

/* ---- Submitting -------------------------------------------------------------------- */

/* A notify operation: a receiver and an earlier write to report (index < at), or an update of a row. */
static bool valid_notify(const st_op *ops, size_t at)
{
    const st_notify *n = ops[at].notify;
    if (!n)
        return false;
    if (ops[at].kind == ST_OP_NOTIFY_UPDATE)
        return n->seq > 0 && (unsigned)n->state < ST_NOTIFY_STATES;
    return valid_name(n->receiver, ST_URA_MAX) && valid_name(n->event, ST_EVENT_MAX) && n->of_op < at &&
           ops[n->of_op].kind >= ST_OP_CREATE && ops[n->of_op].kind <= ST_OP_DELETE;
}

static bool valid_op(const st_op *op)
{
    if (op->kind == ST_OP_AUDIT)
        return op->audit != NULL;
    if (op->kind == ST_OP_NOTIFY || op->kind == ST_OP_NOTIFY_UPDATE)
        return true; /* valid_notify, which needs the other operations */
    if (op->kind < ST_OP_CREATE || op->kind > ST_OP_PURGE)
        return false;
    if (!valid_name(op->type, ST_TYPE_MAX) || !valid_name(op->id, ST_ID_MAX))
        return false;
    if (op->if_none_exist &&
        (op->kind != ST_OP_CREATE || !op->if_none_exist->type || strcmp(op->if_none_exist->type, op->type) != 0))
        return false;
    return op->expected_version >= 0 && (op->row_count == 0 || op->rows) &&
           (op->access_tag_count == 0 || op->access_tags);
}

/* Queues t (owned by the queue from here on, freed when not queued). */
static st_status enqueue(st_store *s, txn *t)
{
    pthread_mutex_lock(&s->queue_lock);
    st_status status = s->stopping                        ? ST_CLOSED
                       : atomic_load(&s->broken)          ? ST_IO
                       : s->queued >= s->config.max_queue ? ST_BUSY
                                                          : ST_OK;
    if (status == ST_OK) {
        if (s->tail)
            s->tail->next = t;
        else
            s->head = t;
        s->tail = t;
        s->queued++;
        pthread_cond_signal(&s->queue_grew);
    }
    pthread_mutex_unlock(&s->queue_lock);
    if (status != ST_OK)
        free(t);
    return status;
}

/* A transaction of op_count checked operations (none: a barrier), queued. */
static st_status submit_txn(st_store *s, const st_op *ops, size_t op_count, st_done_fn done, void *arg)
{
    txn *t = calloc(1, sizeof *t + op_count * sizeof(st_op_result));
    if (!t)
        return ST_INTERNAL;
    t->ops = ops;
    t->op_count = op_count;
    t->done = done;
    t->arg = arg;
    t->queued_at_us = monotonic_us();
    return enqueue(s, t);
}

st_status st_submit(st_store *s, const st_op *ops, size_t op_count, st_done_fn done, void *arg)
{
    if (!ops || op_count == 0 || !done)
        return ST_INVALID;
    for (size_t i = 0; i < op_count; i++)
        if (!valid_op(&ops[i]) ||
            ((ops[i].kind == ST_OP_NOTIFY || ops[i].kind == ST_OP_NOTIFY_UPDATE) && !valid_notify(ops, i)))
            return ST_INVALID;
    return submit_txn(s, ops, op_count, done, arg);
}

st_status st_submit_barrier(st_store *s, st_done_fn done, void *arg)
{
    return done ? submit_txn(s, NULL, 0, done, arg) : ST_INVALID;
}

bool st_durable_now(st_store *s)
{
    return atomic_load(&s->not_durable) == 0;
}

void st_test_fail_next_document_sync(st_store *s)
{
    if (s->doc_log)
        dl_test_fail_next_sync(s->doc_log);
}

void st_test_fail_next_sync(st_store *s)
{
    atomic_store(&s->fail_next_sync, true);
}

void st_test_hold_sync(st_store *s, bool hold)
{
    pthread_mutex_lock(&s->sync_lock);
    atomic_store(&s->hold_sync, hold);
    pthread_cond_broadcast(&s->sync_wanted);
    pthread_mutex_unlock(&s->sync_lock);
}

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    st_status status;
    st_op_result *results;
} waiter;

static void wake_waiter(void *arg, const st_txn_result *r)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    if (w->results)
        memcpy(w->results, r->ops, r->op_count * sizeof *r->ops);
    w->status = r->status;
    w->finished = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

st_status st_submit_wait(st_store *s, const st_op *ops, size_t op_count, st_op_result *results)
{
    waiter w = {.results = results};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    st_status status = st_submit(s, ops, op_count, wake_waiter, &w);
    if (status == ST_OK) {
        pthread_mutex_lock(&w.lock);
        while (!w.finished)
            pthread_cond_wait(&w.cond, &w.lock);
        status = w.status;
        pthread_mutex_unlock(&w.lock);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return status;
}

/* ---- Opening and closing ------------------------------------------------------------- */

static void apply_defaults(st_config *c)
{
    if (!c->busy_timeout_ms)
        c->busy_timeout_ms = LIM(store_busy_timeout_ms);
    if (!c->max_batch)
        c->max_batch = LIM(store_batch_max);
    if (!c->max_queue)
        c->max_queue = LIM(store_max_queue);
    if (!c->max_readers)
        c->max_readers = LIM(store_max_readers);
    if (!c->clock)
        c->clock = real_clock_ms;
    if (!c->audit_checkpoint_entries)
        c->audit_checkpoint_entries = LIM(audit_checkpoint_entries);
    if (!c->audit_checkpoint_ms)
        c->audit_checkpoint_ms = LIM(audit_checkpoint_ms);
    if (c->batch_wait_us == 0)
        c->batch_wait_us = LIM(store_batch_wait_us);
    else if (c->batch_wait_us < 0)
        c->batch_wait_us = 0;
}

static bool init_sync(st_store *s)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the batch window must not jump with the wall clock */
    bool ok = pthread_mutex_init(&s->queue_lock, NULL) == 0 && pthread_cond_init(&s->queue_grew, &attr) == 0 &&
              pthread_mutex_init(&s->pool_lock, NULL) == 0 && pthread_cond_init(&s->pool_returned, NULL) == 0 &&
              pthread_mutex_init(&s->sync_lock, NULL) == 0 && pthread_cond_init(&s->sync_wanted, NULL) == 0 &&
              pthread_cond_init(&s->sync_room, NULL) == 0;
    pthread_condattr_destroy(&attr);
    return ok;
}

static void destroy_sync(st_store *s)
{
    pthread_cond_destroy(&s->queue_grew);
    pthread_cond_destroy(&s->pool_returned);
    pthread_mutex_destroy(&s->queue_lock);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->sync_wanted);
    pthread_cond_destroy(&s->sync_room);
    pthread_mutex_destroy(&s->sync_lock);
}

/* Lets the sync thread finish what is handed to it, and joins it (no sync thread: nothing to do). */
static void stop_sync_thread(st_store *s)
{
    if (!s->pipelined)
        return;
    pthread_mutex_lock(&s->sync_lock);
    s->sync_stopping = true;
    pthread_cond_signal(&s->sync_wanted);
    pthread_mutex_unlock(&s->sync_lock);
    pthread_join(s->sync_thread, NULL);
}

/*
 * The chain's head from the database, and the last checkpoint from its file:
 * a trail that ends before the last checkpoint lost its tail, and the
 * gateway does not write on after a gap (fhirgw audit verify names it).
 */
static bool open_audit(st_store *s, st_error *err)
{
    const st_config *c = &s->config;
    s->checkpoint_ms = c->clock(c->clock_arg);
    if (!c->audit_keys)
        return true;
    if (s->backend->audit_head(s->writer, &s->audit_head, err) != ST_OK)
        return false;
    if (!c->audit_signer || !c->audit_checkpoint_path || !*c->audit_checkpoint_path)
        return true;
    au_checkpoint last;
    bool found;
    char why[256];
    if (!au_checkpoint_last(c->audit_signer, c->audit_checkpoint_path, &last, &found, why, sizeof why)) {
        st__error(err, "audit checkpoints: %s", why);
        return false;
    }
    if (found && last.seq > s->audit_head.seq) {
        st__error(err,
                  "the audit trail ends at entry %lld but %s covers up to %lld: entries were removed (see fhirgw "
                  "audit verify)",
                  (long long)s->audit_head.seq, c->audit_checkpoint_path, (long long)last.seq);
        return false;
    }
    s->checkpoint_seq = found ? last.seq : 0;
    return true;
}

/* each_logged_body's callback: the locators, gathered (a body that does not parse names no record). */
typedef struct locator_list {
    dl_locator *items;
    size_t count, capacity;
    bool out_of_memory;
} locator_list;

static void gather_locator(void *arg, const char *body, size_t len)
{
    locator_list *l = arg;
    dl_locator loc;
    if (!body || !dl_parse(body, len, &loc))
        return;
    if (fa_reserve(&l->items, &l->capacity, l->count + 1, sizeof *l->items))
        l->items[l->count++] = loc;
    else
        l->out_of_memory = true;
}

/*
 * After an unclean stop (doc_log.h, "Dead space"): every record of the document log that no version names is
 * freed, before the store serves and so before anything is appended. Only the serving gateway does it (it
 * alone holds the serving lock, so no other process appends). A reclaim that cannot run leaves the dead
 * space for the next start; the store opens all the same.
 */
static void reclaim_documents(st_store *s)
{
    dl_own(s->doc_log);
    if (!dl_needs_reclaim(s->doc_log) || !s->backend->each_logged_body)
        return;
    uint64_t started = monotonic_us();
    locator_list keep = {0};
    st_error err = {{0}};
    char why[256] = "";
    s->reclaim.ran = true;
    if (s->backend->each_logged_body(s->writer, gather_locator, &keep, &err) != ST_OK)
        snprintf(s->reclaim_error, sizeof s->reclaim_error, "reading the locators: %s", err.message);
    else if (keep.out_of_memory)
        snprintf(s->reclaim_error, sizeof s->reclaim_error, "out of memory for the locators");
    else if (!dl_reclaim(s->doc_log, keep.items, keep.count, &s->reclaim.freed, why, sizeof why))
        snprintf(s->reclaim_error, sizeof s->reclaim_error, "%s", why);
    s->reclaim.documents = keep.count;
    s->reclaim.micros = monotonic_us() - started;
    s->reclaim.error = s->reclaim_error[0] ? s->reclaim_error : NULL;
    free(keep.items);
}

void st_reclaim_report(st_store *s, st_reclaim *out)
{
    *out = s->reclaim;
}

/*
 * The document log beside the database (doc_log.h), for a backend that is the database's sole writer and a
 * store that seals: the log holds sealed documents only. It is opened whenever the database could hold
 * locators, so that rows written with a log are read with one.
 */
static bool open_doc_log(st_store *s, st_error *err)
{
    if (!s->backend->sole_writer || !s->config.seal_keys || s->config.document_log_off)
        return true;
    size_t n = strlen(s->config.path) + sizeof DL_SUFFIX;
    char *dir = malloc(n), why[256];
    if (!dir) {
        st__error(err, "out of memory");
        return false;
    }
    snprintf(dir, n, "%s%s", s->config.path, DL_SUFFIX);
    s->doc_log = dl_open(dir, !s->config.synchronous_normal, why, sizeof why);
    free(dir);
    if (!s->doc_log)
        st__error(err, "document log: %s", why);
    return s->doc_log != NULL;
}

/* <to>/<the last part of path><suffix> into out; false when it does not fit. */
static bool backup_path(char *out, size_t size, const char *to, const char *path, const char *suffix)
{
    return (size_t)snprintf(out, size, "%s/%s%s", to, files_base_name(path), suffix) < size;
}

st_status st_backup(const st_config *config, const char *to, st_backup_report *report, st_error *err)
{
    *report = (st_backup_report){0};
    if (!config || !config->path || !*config->path || !to || !*to) {
        st__error(err, "no database path, or no folder to back up into");
        return ST_INVALID;
    }
    st_config c = *config;
    apply_defaults(&c);
    const st_backend *backend = &st_sqlite_backend;
    if (!backend->backup) {
        st__error(err, "the %s store is backed up with its database's own tools", backend->name);
        return ST_INVALID;
    }
    char db_to[4096], docs_from[4096], docs_to[4096], why[512];
    if (!backup_path(db_to, sizeof db_to, to, c.path, "") ||
        !backup_path(docs_to, sizeof docs_to, to, c.path, DL_SUFFIX) ||
        (size_t)snprintf(docs_from, sizeof docs_from, "%s%s", c.path, DL_SUFFIX) >= sizeof docs_from) {
        st__error(err, "a path is too long");
        return ST_INVALID;
    }
    if (mkdir(to, 0700) != 0 && errno != EEXIST) {
        st__error(err, "cannot create %s: %s", to, strerror(errno));
        return ST_IO;
    }
    if (access(docs_to, F_OK) == 0) {
        st__error(err, "%s exists already", docs_to);
        return ST_CONFLICT;
    }
    /* no record of a purged row is freed from before the database copy until the log is copied (doc_log.h) */
    int lock = dl_backup_lock(docs_from, why, sizeof why);
    if (lock < 0) {
        st__error(err, "document log: %s", why);
        return ST_IO;
    }
    /* the database first: every record its rows name was durable before it was copied */
    st_status status = backend->backup(&c, db_to, &report->database_bytes, err);
    bool copied = status == ST_OK &&
                  dl_copy(docs_from, docs_to, &report->document_bytes, &report->document_data, why, sizeof why);
    dl_backup_unlock(lock);
    if (status != ST_OK)
        return status;
    if (!copied) {
        st__error(err, "document log: %s", why);
        unlink(db_to); /* a database whose documents are missing is no backup */
        return ST_IO;
    }
    if (!files_sync_dir(to)) {
        st__error(err, "cannot sync the folder %s: %s", to, strerror(errno));
        return ST_IO;
    }
    return ST_OK;
}

/*
 * The serving lock: an exclusive flock on <path>.lock, with this process's pid in the file for the next
 * one's message. The kernel lets go of it when the process ends however it ends, so a SIGKILL leaves no
 * stale lock. The descriptor (close it to let go), or -1 with err.
 */
static int lock_serving(const char *db_path, st_error *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s.lock", db_path) >= sizeof path) {
        st__error(err, "the database's path is too long");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        st__error(err, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        st__error(err, "in use by another gateway (pid %s, holding %s): one gateway per database",
                  *holder ? holder : "unknown", path);
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* nothing to do: only a second gateway's message misses the pid, and the lock holds all the same */
    }
    return fd;
}

/* config.exclusive: the serving lock, kept until st_close. */
static bool take_serving_lock(st_store *s, st_error *err)
{
    s->serving_lock_fd = s->config.exclusive ? lock_serving(s->config.path, err) : -1;
    return !s->config.exclusive || s->serving_lock_fd >= 0;
}

static void drop_serving_lock(st_store *s)
{
    if (s->serving_lock_fd >= 0)
        close(s->serving_lock_fd); /* closing lets go of the lock */
    s->serving_lock_fd = -1;
}

/* Moves <path><suffix>, if there is one, to <aside>/<its name>; false with err. */
static bool move_aside(const char *path, const char *suffix, const char *aside, st_error *err)
{
    char from[4096], to[4096];
    if ((size_t)snprintf(from, sizeof from, "%s%s", path, suffix) >= sizeof from ||
        !backup_path(to, sizeof to, aside, path, suffix)) {
        st__error(err, "a path is too long");
        return false;
    }
    if (rename(from, to) == 0 || errno == ENOENT)
        return true;
    st__error(err, "cannot move %s to %s: %s", from, to, strerror(errno));
    return false;
}

/* The folder that holds path (into out): "." for a bare name, "/" for one at the root. */
static void folder_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, size, ".");
    else
        snprintf(out, size, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

/* The files a restore moves aside, in the order it moves them (an old -wal first: with a restored database
 * beside it SQLite would apply it). */
static const char *const restore_suffixes[] = {"-wal", "-shm", "", DL_SUFFIX};
#define RESTORE_FILES (sizeof restore_suffixes / sizeof *restore_suffixes)

/*
 * A restore that failed after it began to move the store aside: the backup's copies that were made go (only
 * when every file had moved: before that the live paths may still hold the store itself), and what was moved
 * comes back, never over a file that is there, so the store is as it was. False when something could not be
 * put back: it is still in `aside`.
 */
static bool put_back(const char *path, const char *docs_to, const char *aside, bool remove_copies)
{
    bool ok = !remove_copies || ((unlink(path) == 0 || errno == ENOENT) && dl_remove_copy(docs_to));
    for (size_t i = RESTORE_FILES; ok && i-- > 0;) {
        char moved[4096], live[4096];
        ok = backup_path(moved, sizeof moved, aside, path, restore_suffixes[i]) &&
             (size_t)snprintf(live, sizeof live, "%s%s", path, restore_suffixes[i]) < sizeof live;
        if (ok && access(moved, F_OK) == 0)
            ok = access(live, F_OK) != 0 && errno == ENOENT && rename(moved, live) == 0;
    }
    char folder[4096];
    folder_of(path, folder, sizeof folder);
    return ok && rmdir(aside) == 0 && files_sync_dir(folder);
}

st_status st_restore(const st_config *config, const char *from, const char *aside, uint64_t *copied, st_error *err)
{
    *copied = 0;
    char db_from[4096], docs_from[4096], docs_to[4096], folder[4096], why[512];
    if (!config || !config->path || !*config->path || !from || !aside ||
        !backup_path(db_from, sizeof db_from, from, config->path, "") ||
        !backup_path(docs_from, sizeof docs_from, from, config->path, DL_SUFFIX) ||
        (size_t)snprintf(docs_to, sizeof docs_to, "%s%s", config->path, DL_SUFFIX) >= sizeof docs_to) {
        st__error(err, "no database path, or a path is too long");
        return ST_INVALID;
    }
    int lock = lock_serving(config->path, err); /* no gateway serves it now, and none starts until we are done */
    if (lock < 0)
        return ST_CONFLICT;
    st_status status = ST_OK;
    uint64_t data = 0, log_bytes = 0;
    size_t moved = 0;
    if (access(db_from, F_OK) != 0) {
        st__error(err, "%s holds no backup of %s", from, config->path);
        close(lock);
        return ST_NOT_FOUND;
    }
    if (mkdir(aside, 0700) != 0) {
        st__error(err, "cannot create %s: %s", aside, strerror(errno));
        close(lock);
        return ST_IO;
    }
    while (moved < RESTORE_FILES && move_aside(config->path, restore_suffixes[moved], aside, err))
        moved++;
    if (moved < RESTORE_FILES) {
        status = ST_IO;
    } else if (!files_copy_sparse(db_from, config->path, DL_ALIGN, copied, &data, why, sizeof why) ||
               !dl_copy(docs_from, docs_to, &log_bytes, &data, why, sizeof why)) {
        st__error(err, "%s", why);
        status = ST_IO;
    } else {
        folder_of(config->path, folder, sizeof folder);
        if (!files_sync_dir(folder) || !files_sync_dir(aside)) {
            st__error(err, "cannot sync %s: %s", folder, strerror(errno));
            status = ST_IO;
        }
    }
    if (status != ST_OK) {
        char reason[sizeof err->message];
        snprintf(reason, sizeof reason, "%s", err->message);
        if (put_back(config->path, docs_to, aside, moved == RESTORE_FILES))
            st__error(err, "%s; nothing was restored, the store is as it was", reason);
        else
            st__error(err, "%s; the store's own files are in %s, put them back by hand", reason, aside);
        *copied = log_bytes = 0;
    }
    close(lock); /* lets go of the serving lock */
    *copied += log_bytes;
    return status;
}

st_store *st_open(const st_config *config, st_error *err)
{
    if (!config || !config->path || !*config->path) {
        st__error(err, "no database path");
        return NULL;
    }
    st_store *s = calloc(1, sizeof *s);
    if (!s) {
        st__error(err, "out of memory");
        return NULL;
    }
    s->config = *config;
    apply_defaults(&s->config);
    s->committing_notify = s->committing_audit = INT64_MAX;
    atomic_store(&s->hidden_notify_from, INT64_MAX);
    atomic_store(&s->hidden_audit_from, INT64_MAX);
    s->backend = &st_sqlite_backend;
    s->idle_readers = calloc(s->config.max_readers, sizeof *s->idle_readers);
    if (!s->idle_readers || !init_sync(s)) {
        st__error(err, "out of memory");
        free(s->idle_readers);
        free(s);
        return NULL;
    }
    if (!take_serving_lock(s, err)) /* before anything is opened: a second gateway touches nothing */
        goto fail;
    s->writer = s->backend->open_writer(&s->config, err);
    if (!s->writer)
        goto fail;
    if (!open_audit(s, err)) {
        s->backend->close_writer(s->writer);
        goto fail;
    }
    s->pipelined = s->backend->durable_later && s->backend->durable_later(s->writer);
    s->read_cache = s->backend->sole_writer ? rc_new() : NULL; /* without it (out of memory) reads go to the store */
    if (!open_doc_log(s, err)) {
        s->backend->close_writer(s->writer);
        goto fail;
    }
    if (s->doc_log && s->config.exclusive)
        reclaim_documents(s);
    if (s->pipelined && pthread_create(&s->sync_thread, NULL, sync_thread_main, s) != 0) {
        st__error(err, "cannot start the sync thread");
        s->backend->close_writer(s->writer);
        goto fail;
    }
    if (pthread_create(&s->commit_thread, NULL, commit_thread_main, s) != 0) {
        st__error(err, "cannot start the commit thread");
        stop_sync_thread(s);
        s->backend->close_writer(s->writer);
        goto fail;
    }
    if (s->pipelined)
        tn_name(s->sync_thread, "store-sync");
    tn_name(s->commit_thread, "store-commit");
    return s;
fail:
    rc_free(s->read_cache);
    dl_close(s->doc_log);
    drop_serving_lock(s);
    destroy_sync(s);
    free(s->idle_readers);
    free(s);
    return NULL;
}

void st_close(st_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->queue_lock);
    s->stopping = true; /* the thread still drains what is queued */
    pthread_cond_signal(&s->queue_grew);
    pthread_mutex_unlock(&s->queue_lock);
    pthread_join(s->commit_thread, NULL);
    stop_sync_thread(s); /* after the commit thread: it finishes what that handed over */
    if (!atomic_load(&s->broken))
        checkpoint_if_due(s, &s->audit_head, true); /* the head as the gateway leaves it */
    s->backend->close_writer(s->writer);
    for (size_t i = 0; i < s->idle_count; i++)
        s->backend->close_reader(s->idle_readers[i]);
    rc_free(s->read_cache);
    dl_close(s->doc_log);
    drop_serving_lock(s); /* last: nothing of this store writes any more */
    destroy_sync(s);
    free(s->idle_readers);
    free(s);
}

void st_counters_get(st_store *s, st_counters *out)
{
    out->commits = atomic_load(&s->commits);
    out->transactions = atomic_load(&s->transactions);
    out->failed_transactions = atomic_load(&s->failed_transactions);
    out->operations = atomic_load(&s->operations);
    out->commit_us_total = atomic_load(&s->commit_us_total);
    out->commit_us_max = atomic_load(&s->commit_us_max);
    out->max_batch_seen = atomic_load(&s->max_batch_seen);
    out->audit_entries = atomic_load(&s->audit_entries);
    out->audit_checkpoints = atomic_load(&s->audit_checkpoints);
    out->audit_checkpoint_failures = atomic_load(&s->audit_checkpoint_failures);
    out->read_cache_hits = s->read_cache ? rc_hits(s->read_cache) : 0;
    out->document_log_syncs = s->doc_log ? dl_syncs(s->doc_log) : 0;
    out->document_log_bytes = s->doc_log ? dl_written(s->doc_log) : 0;
    pthread_mutex_lock(&s->queue_lock);
    out->queued = s->queued;
    pthread_mutex_unlock(&s->queue_lock);
}

/* ---- The audit trail: reads ---------------------------------------------------------- */

/*
 * Entries of batches not yet durable are not handed out (see the top): the
 * bound read before the query keeps a newest-first page from starting with
 * them, the one read after it drops any that a commit in between added.
 */
static st_status audit_read(st_store *s, const st_audit_query *q, int64_t seq, st_audit_row **rows, size_t *count,
                            st_error *err)
{
    *rows = NULL;
    *count = 0;
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_audit_query bounded = *q;
    int64_t hidden = atomic_load(&s->hidden_audit_from);
    if (!q->ascending && hidden != INT64_MAX && (q->before_seq <= 0 || q->before_seq > hidden))
        bounded.before_seq = hidden;
    st_status status = s->backend->audit_read(reader, &bounded, seq, rows, count, err);
    reader_release(s, reader);
    hidden = atomic_load(&s->hidden_audit_from);
    size_t kept = 0;
    for (size_t i = 0; status == ST_OK && i < *count; i++)
        if ((*rows)[i].entry.seq < hidden)
            (*rows)[kept++] = (*rows)[i];
    *count = kept;
    return status;
}

st_status st_audit_list(st_store *s, const st_audit_query *q, st_audit_row **rows, size_t *count, st_error *err)
{
    return audit_read(s, q, 0, rows, count, err);
}

st_status st_audit_get(st_store *s, int64_t seq, st_audit_row *out, st_error *err)
{
    st_audit_row *rows;
    size_t count;
    st_audit_query none = {0};
    st_status status = seq > 0 ? audit_read(s, &none, seq, &rows, &count, err) : ST_NOT_FOUND;
    if (status == ST_OK && count == 0)
        status = ST_NOT_FOUND;
    if (status == ST_OK)
        *out = rows[0];
    if (seq > 0)
        free(rows);
    return status;
}

/* ---- The relay queue: reads ---------------------------------------------------------- */

/* Drops the rows of batches not yet durable (read after the query: see the top); the lowest event number
 * dropped, or 0. */
static int64_t drop_hidden_notifications(st_store *s, st_notification *rows, size_t *count)
{
    int64_t hidden = atomic_load(&s->hidden_notify_from), lowest_dropped = 0;
    size_t kept = 0;
    for (size_t i = 0; i < *count; i++) {
        if (rows[i].seq < hidden)
            rows[kept++] = rows[i];
        else if (!lowest_dropped || rows[i].event_number < lowest_dropped)
            lowest_dropped = rows[i].event_number;
    }
    *count = kept;
    return lowest_dropped;
}

st_status st_notify_list(st_store *s, const st_notify_query *q, st_notification **rows, size_t *count, st_error *err)
{
    *rows = NULL;
    *count = 0;
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_status status = s->backend->notify_read(reader, q, rows, count, err);
    int64_t dropped = status == ST_OK ? drop_hidden_notifications(s, *rows, count) : 0;
    if (dropped > 1 && q->newest_first && q->receiver && *count < q->count) {
        /* the newest were dropped: the page ends below them instead, as if they were not there yet */
        st_notify_query below = *q;
        below.to_event = dropped - 1;
        free(*rows);
        *rows = NULL;
        *count = 0;
        status = s->backend->notify_read(reader, &below, rows, count, err);
        if (status == ST_OK)
            drop_hidden_notifications(s, *rows, count);
    }
    reader_release(s, reader);
    return status;
}

st_status st_notify_counts(st_store *s, int64_t counts[ST_NOTIFY_STATES], st_error *err)
{
    memset(counts, 0, ST_NOTIFY_STATES * sizeof *counts);
    void *reader = reader_acquire(s, err);
    if (!reader)
        return ST_IO;
    st_status status = s->backend->notify_counts(reader, counts, err);
    reader_release(s, reader);
    return status;
}

void st_test_fail_audit(st_store *s, bool fail)
{
    atomic_store(&s->fail_audit, fail);
}
