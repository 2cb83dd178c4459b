/*
 * gateway/rest/rest_bundle.c — writing the Bundles the REST layer answers with
 * (see rest_bundle.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/rest_bundle.h"

#include "gateway/rest/answer.h"

/* ---- Bundle text helpers ---- */

void rest_bundle_head(fj_buf *b, rq *q, const char *type, int64_t total)
{
    char id[ST_ID_MAX + 1], now[ST_INSTANT_LEN];
    rest_new_id(id);
    st_format_instant(rest_now_ms(q->app), now);
    fj_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},\"type\":\"%s\"", id,
                  now, type);
    if (total >= 0)
        fj_buf_printf(b, ",\"total\":%lld", (long long)total);
}

/* The query without the paging parameters the server adds itself. */
static void query_without_paging(fj_buf *b, const char *query)
{
    const char *p = query;
    bool first = true;
    while (*p) {
        size_t len = strcspn(p, "&");
        if (len && strncmp(p, "_getpagesoffset=", 16) && strncmp(p, "_snapshot=", 10) && strncmp(p, "_cursor=", 8)) {
            if (!first)
                fj_buf_append(b, "&", 1);
            /* a link is a URL: keep the client's encoding, but never a quote that would break the JSON */
            for (size_t i = 0; i < len; i++)
                fj_buf_printf(b, p[i] == '"' || p[i] == '\\' || (unsigned char)p[i] < 0x20 ? "%%%02X" : "%c",
                              (unsigned char)p[i]);
            first = false;
        }
        p += len + (p[len] == '&');
    }
}

void rest_bundle_link(fj_buf *b, rq *q, const char *relation, const char *path, const char *query, long offset,
                      const char *extra)
{
    fj_buf_printf(b, "{\"relation\":\"%s\",\"url\":\"%s/%s", relation, q->app->opt.base_url, path);
    fj_buf url = {0};
    query_without_paging(&url, query);
    bool any = url.len > 0;
    if (any || offset >= 0 || extra)
        fj_buf_append(b, "?", 1);
    if (url.data)
        fj_buf_append(b, url.data, url.len);
    fj_buf_free(&url);
    if (offset > 0)
        fj_buf_printf(b, "%s_getpagesoffset=%ld", any ? "&" : "", offset), any = true;
    if (extra)
        fj_buf_printf(b, "%s%s", any ? "&" : "", extra);
    fj_buf_puts(b, "\"}");
}

void rest_bundle_respond(rq *q, fj_buf *b)
{
    size_t len;
    char *body = fj_buf_take(b, &len);
    if (!body)
        rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory building the Bundle");
    else
        rq_respond_json(q, 200, body, len);
}

void rest_bundle_entry_open(fj_buf *b, size_t *written)
{
    fj_buf_puts(b, (*written)++ ? "," : ",\"entry\":[");
}

void rest_bundle_entries_close(fj_buf *b, size_t written)
{
    if (written)
        fj_buf_puts(b, "]");
}

bool rest_bundle_flush(srv_stream *out, fj_buf *b)
{
    if (b->failed)
        return false;
    bool ok = !b->len || srv_stream_write(out, b->data, b->len);
    b->len = 0; /* the capacity stays: the next piece reuses it */
    if (b->data)
        b->data[0] = '\0';
    return ok;
}

void rest_bundle_outcome_entry(fj_buf *b, const char *severity, const char *code, const char *message, size_t *written)
{
    rest_bundle_entry_open(b, written);
    fj_buf_printf(b,
                  "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
                  "\"%s\",\"code\":\"%s\",\"diagnostics\":",
                  severity, code);
    fj_buf_string(b, message, strlen(message));
    fj_buf_puts(b, "}]},\"search\":{\"mode\":\"outcome\"}}");
}
