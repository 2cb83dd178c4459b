/*
 * gateway/rest/rest_retention.c — the retention purge of handover documents
 * (docs/handover.md, "Protection at rest"): handover_retention_days after a
 * handover's Task ended (completed, rejected, cancelled), the content of the
 * documents it names is removed for good (ST_OP_PURGE: every version's body
 * erased, a deletion version written), each with an audit entry in the same
 * transaction. The Task and the audit trail stay; reads of a purged document
 * answer 410 to whoever may still read it (the sender) and 404 to everyone
 * else, as before.
 *
 * When a Task ended is its lastUpdated: a handover Task changes only its
 * status, and an ended status has no move out of it (rest_access.c), so its
 * last version is the end.
 *
 * The purge thread runs one pass every purge_interval_ms, with the app's
 * clock for "now" (tests pin it and call rest_handover_purge directly).
 * A pass reads the ended handover Tasks whose lastUpdated is past the
 * watermark and at or before the cutoff (now minus the retention), and on
 * success moves the watermark to that cutoff: an ended Task never changes
 * again, and one stamped now is days past any cutoff, so each Task is read
 * by one pass, not by every pass for ever. After a start, or a pass that
 * failed, the next pass begins from the beginning again (documents purged
 * before are skipped).
 *
 * Memory: everything a pass reads is freed before it returns. Threads: the
 * purge thread only reads the store and submits through it (thread-safe).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/datetime.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_internal.h"
#include "gateway/util/thread_name.h"

#define SNOMED "http://snomed.info/sct"
#define DAY_MS INT64_C(86400000)
#define PAGE 100

/* The purge of one document, with its audit entry; 1 purged, 0 nothing to do, -1 failed (err). */
static int purge_document(rest_app *app, const char *id, char *err, size_t errlen)
{
    st_resource r;
    st_error e;
    st_status s = st_read(app->opt.store, "Bundle", id, &r, &e);
    if (s == ST_GONE) { /* purged before, unless only deleted: then its older versions still have bodies */
        st_resource_free(&r);
        s = st_vread(app->opt.store, "Bundle", id, 1, &r, &e);
        if (s == ST_GONE || s == ST_NOT_FOUND) {
            st_resource_free(&r);
            return 0;
        }
    }
    st_resource_free(&r);
    if (s == ST_NOT_FOUND)
        return 0;
    au_entry entry = {0};
    AU_SET(entry.org_name, "fhirgw retention purge");
    AU_SET(entry.request_id, "retention");
    AU_SET(entry.interaction, "purge");
    entry.action = 'D';
    AU_SET(entry.type, "Bundle");
    AU_SET(entry.id, id);
    AU_SET(entry.decision, "allowed");
    entry.status = 200;
    st_op ops[2] = {{.kind = ST_OP_PURGE, .type = "Bundle", .id = id}, {.kind = ST_OP_AUDIT, .audit = &entry}};
    st_op_result results[2];
    s = st_submit_wait(app->opt.store, ops, 2, results);
    if (s != ST_OK) {
        snprintf(err, errlen, "purging Bundle/%s: %s %s", id, st_status_name(s), results[0].message);
        return -1;
    }
    return results[0].unchanged ? 0 : 1;
}

/* When the version of Task d was written (its meta.lastUpdated, as the store stamped it); INT64_MAX if unreadable. */
static int64_t written_at(const fj_doc *d)
{
    uint32_t meta = fj_get(d, 0, "meta");
    uint32_t at = meta != UINT32_MAX ? fj_get(d, meta, "lastUpdated") : UINT32_MAX;
    fdt_value v;
    if (at == UINT32_MAX || d->nodes[at].type != FJ_STRING ||
        fdt_parse(FDT_FORM_INSTANT, fj_str(d, at), d->nodes[at].len, &v))
        return INT64_MAX;
    return fdt_to_epoch_ms(&v);
}

/* The documents of one handover Task that ended at or before cutoff (its inputs "Bundle/<id>"); purged or -1. */
static long purge_task(rest_app *app, const st_resource *task, int64_t cutoff, char *err, size_t errlen)
{
    char *text = strndup(task->json, task->json_len);
    fj_doc d;
    fj_error pe;
    if (!text || !fj_parse(text, task->json_len, NULL, &d, &pe)) {
        snprintf(err, errlen, "Task/%s cannot be parsed", task->id);
        free(text);
        return -1;
    }
    long purged = 0;
    bool due = rest_is_handover_task(&d, 0) && written_at(&d) <= cutoff;
    uint32_t inputs = due ? fj_get(&d, 0, "input") : UINT32_MAX;
    uint32_t in = inputs != UINT32_MAX && d.nodes[inputs].type == FJ_ARRAY ? inputs + 1 : UINT32_MAX;
    for (uint32_t i = 0; in != UINT32_MAX && i < d.nodes[inputs].len && purged >= 0; i++, in = fj_next(&d, in)) {
        uint32_t vr = fj_get(&d, in, "valueReference");
        uint32_t ref = vr != UINT32_MAX ? fj_get(&d, vr, "reference") : UINT32_MAX;
        size_t len = ref != UINT32_MAX && d.nodes[ref].type == FJ_STRING ? d.nodes[ref].len : 0;
        char id[ST_ID_MAX + 1];
        if (len <= 7 || len - 7 > ST_ID_MAX || strncmp(fj_str(&d, ref), "Bundle/", 7))
            continue;
        snprintf(id, sizeof id, "%.*s", (int)(len - 7), fj_str(&d, ref) + 7); /* strings are not NUL-ended */
        int one = purge_document(app, id, err, errlen);
        purged = one < 0 ? -1 : purged + one;
    }
    fj_doc_free(&d);
    free(text);
    return purged;
}

long rest_handover_purge(rest_app *app, char *err, size_t errlen)
{
    if (!app->opt.handover_retention_days)
        return 0;
    int64_t cutoff = rest_now_ms(app) - (int64_t)app->opt.handover_retention_days * DAY_MS;
    st_value code = {.v.token = {SNOMED, "308292007"}};
    st_value ended[3] = {{.v.token = {NULL, "completed"}},
                         {.v.token = {NULL, "rejected"}},
                         {.v.token = {NULL, "cancelled"}}};
    st_value after = {.prefix = ST_GT, .v.date = {app->purge_watermark_ms, app->purge_watermark_ms}};
    st_value due = {.prefix = ST_LE, .v.date = {cutoff, cutoff}};
    st_condition conditions[4] = {
        {.param = "code", .kind = ST_KIND_TOKEN, .values = &code, .value_count = 1},
        {.param = "status", .kind = ST_KIND_TOKEN, .values = ended, .value_count = 3},
        {.param = "_lastUpdated", .kind = ST_KIND_DATE, .values = &due, .value_count = 1},
        {.param = "_lastUpdated", .kind = ST_KIND_DATE, .values = &after, .value_count = 1},
    };
    st_query q = {.type = "Task", .conditions = conditions, .condition_count = 4, .count = PAGE};
    st_cursor cursor;
    long purged = 0;
    app->purge_tasks_examined = 0;
    for (bool more = true; more && purged >= 0;) {
        st_list page;
        st_error e;
        st_status s = st_search(app->opt.store, &q, &page, &e);
        if (s != ST_OK) {
            snprintf(err, errlen, "searching ended handovers: %s %s", st_status_name(s), e.message);
            return -1;
        }
        for (size_t i = 0; i < page.count && purged >= 0; i++) {
            long n = purge_task(app, &page.items[i], cutoff, err, errlen);
            purged = n < 0 ? -1 : purged + n;
            app->purge_tasks_examined++;
        }
        more = page.more && page.count;
        cursor = (st_cursor){.key_ms = page.last_key_ms, .rid = page.last_rid};
        q.cursor = &cursor;
        q.snapshot = page.snapshot;
        st_list_free(&page);
    }
    app->purge_watermark_ms = purged >= 0 ? cutoff : 0;
    return purged;
}

long rest_handover_purge_examined(const rest_app *app)
{
    return app->purge_tasks_examined;
}

/* ---- The purge thread ---- */

static void *purge_main(void *arg)
{
    rest_app *app = arg;
    const lg_logger *log = app->opt.log ? app->opt.log : lg_stderr();
    unsigned interval = app->opt.purge_interval_ms ? app->opt.purge_interval_ms : LIM(handover_purge_interval_ms);
    pthread_mutex_lock(&app->purge_lock);
    while (!app->purge_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval / 1000;
        until.tv_nsec += (long)(interval % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (!app->purge_stop && pthread_cond_timedwait(&app->purge_wake, &app->purge_lock, &until) == 0)
            ;
        if (app->purge_stop)
            break;
        pthread_mutex_unlock(&app->purge_lock);
        char err[256] = "";
        long n = rest_handover_purge(app, err, sizeof err);
        if (n < 0)
            lg_write(log, LG_ERROR, LG_FIELDS(LG_STR("event", "retention-purge-failed"), LG_STR("reason", err)));
        else if (n > 0)
            lg_write(log, LG_INFO, LG_FIELDS(LG_STR("event", "retention-purge"), LG_INT("documents", n)));
        pthread_mutex_lock(&app->purge_lock);
    }
    pthread_mutex_unlock(&app->purge_lock);
    return NULL;
}

bool rest_retention_start(rest_app *app)
{
    pthread_mutex_init(&app->purge_lock, NULL);
    pthread_cond_init(&app->purge_wake, NULL);
    app->purge_inited = true;
    app->purge_started = app->opt.handover_retention_days && !pthread_create(&app->purge_thread, NULL, purge_main, app);
    if (app->purge_started)
        tn_name(app->purge_thread, "purge");
    return !app->opt.handover_retention_days || app->purge_started;
}

void rest_retention_stop(rest_app *app)
{
    if (app->purge_started) {
        pthread_mutex_lock(&app->purge_lock);
        app->purge_stop = true;
        pthread_cond_signal(&app->purge_wake);
        pthread_mutex_unlock(&app->purge_lock);
        pthread_join(app->purge_thread, NULL);
        app->purge_started = false;
    }
    if (app->purge_inited) {
        pthread_cond_destroy(&app->purge_wake);
        pthread_mutex_destroy(&app->purge_lock);
        app->purge_inited = false;
    }
}
