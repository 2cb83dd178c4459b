/*
 * gateway/rest/rest_context.c — the per-request context's lifetime and the
 * small helpers every module of gateway/rest uses (see rest_internal.h).
 */
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/rest_internal.h"
#include "gateway/util/random.h"

void rest_stq_free(rest_stq *s)
{
    free(s->conditions);
    free(s->values);
    free(s->links);
    memset(s, 0, sizeof *s);
}

void rest_write_free(rest_write *w)
{
    free(w->body);
    if (w->has_doc)
        fj_doc_free(&w->doc);
    free(w->meta_extra);
    free(w->members);
    free(w->stored);
    st_discard_early(w->sealed_by, w->sealed, w->sealed_len); /* sealed but never stored */
    free(w->sealed);
    ix_rows_free(&w->ix);
    free(w->rows);
    if (w->has_if_none) {
        sq_free(&w->if_none_sq);
        rest_stq_free(&w->if_none);
    }
    if (w->has_current)
        st_resource_free(&w->current);
    memset(w, 0, sizeof *w);
}

/* The audit entries and what was handed to the store with them (rest_audit.c). */
static void audit_free(rest_audit_state *a)
{
    for (size_t i = 0; i < a->count; i++)
        free(a->items[i]);
    free(a->items);
    for (size_t i = 0; i < a->txn_count; i++)
        free(a->txns[i]);
    free(a->txns);
    free(a->body);
}

void rq_finish(rq *q)
{
    if (q->audit.holding) { /* the answer waits for its audit entries: freed once it has been sent */
        q->audit.finish_wanted = true;
        return;
    }
    audit_free(&q->audit);
    rest_write_free(&q->write);
    st_resource_free(&q->entry_read);
    free(q);
}

fp_arena *rest_arena(rest_app *app)
{
    fp_arena *a = pthread_getspecific(app->arena_key);
    if (!a) {
        a = fp_arena_new();
        pthread_setspecific(app->arena_key, a);
    }
    return a;
}

int64_t rest_now_ms(const rest_app *app)
{
    return app->opt.clock_ms(app->opt.clock_arg);
}

/* Time-ordered (random.h): a new resource's rows land at the end of the store's indexes on its id. */
void rest_new_id(char out[ST_ID_MAX + 1])
{
    rnd_uuid7(out);
}

size_t rest_own_base_length(const char *base, const char *ref, size_t len)
{
    size_t n = base ? strlen(base) : 0;
    while (n && base[n - 1] == '/')
        n--;
    return n && ref && len > n && !memcmp(ref, base, n) && ref[n] == '/' ? n + 1 : 0;
}

bool rest_foreign_url(const char *base, const char *ref)
{
    return ref && strstr(ref, "://") && !rest_own_base_length(base, ref, strlen(ref));
}
