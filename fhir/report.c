/*
 * fhir/report.c — locations and issues for the resource walks (see report.h).
 */
#include "fhir/report.h"

#include <stdio.h>
#include <string.h>

/* Room kept at the end of the buffer for "..." and its NUL. */
#define ELLIPSIS_ROOM 4

void rp_init(rp_reporter *r, fj_doc *doc, oo_list *out)
{
    r->doc = doc;
    r->out = out;
    r->len = 0;
    r->path[0] = '\0';
}

size_t rp_push(rp_reporter *r, const char *fmt, ...)
{
    size_t mark = r->len;
    if (mark + ELLIPSIS_ROOM >= RP_PATH_CAPACITY)
        return mark; /* already cut short: deeper parts are not written */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->path + mark, RP_PATH_CAPACITY - mark, fmt, ap);
    va_end(ap);
    if (n < 0 || mark + (size_t)n >= RP_PATH_CAPACITY - ELLIPSIS_ROOM) {
        memcpy(r->path + RP_PATH_CAPACITY - ELLIPSIS_ROOM, "...", ELLIPSIS_ROOM);
        r->len = RP_PATH_CAPACITY - 1;
    } else {
        r->len = mark + (size_t)n;
    }
    return mark;
}

/* Appends text[0..len) as rp_push would, without formatting: the walks push a name or an index at every
 * element they enter, and vsnprintf was the larger part of that. */
size_t rp_push_text(rp_reporter *r, const char *text, size_t len)
{
    size_t mark = r->len;
    if (mark + ELLIPSIS_ROOM >= RP_PATH_CAPACITY)
        return mark;
    if (mark + len >= RP_PATH_CAPACITY - ELLIPSIS_ROOM) {
        memcpy(r->path + mark, text, RP_PATH_CAPACITY - ELLIPSIS_ROOM - mark);
        memcpy(r->path + RP_PATH_CAPACITY - ELLIPSIS_ROOM, "...", ELLIPSIS_ROOM);
        r->len = RP_PATH_CAPACITY - 1;
        return mark;
    }
    memcpy(r->path + mark, text, len);
    r->len = mark + len;
    r->path[r->len] = '\0';
    return mark;
}

size_t rp_push_name(rp_reporter *r, const char *name, size_t len)
{
    size_t mark = r->len;
    if (mark)
        rp_push_text(r, ".", 1);
    rp_push_text(r, name, len); /* past a cut, nothing more is written */
    return mark;
}

size_t rp_push_index(rp_reporter *r, unsigned index)
{
    char text[16];
    size_t n = sizeof text;
    text[--n] = ']';
    do
        text[--n] = (char)('0' + index % 10);
    while ((index /= 10) != 0);
    text[--n] = '[';
    return rp_push_text(r, text + n, sizeof text - n);
}

void rp_pop(rp_reporter *r, size_t mark)
{
    r->len = mark;
    r->path[mark] = '\0';
}

const char *rp_path(const rp_reporter *r)
{
    return r->path;
}

static void vreport_at(rp_reporter *r, const char *path, uint32_t node, oo_severity sev, const char *code,
                       const char *fmt, va_list ap)
{
    unsigned line = 0, column = 0;
    if (node != RP_NO_NODE)
        fj_line_col(r->doc, r->doc->nodes[node].pos, &line, &column);
    oo_vadd(r->out, sev, code, path[0] ? path : "$this", line, column, fmt, ap);
}

void rp_vreport(rp_reporter *r, uint32_t node, oo_severity sev, const char *code, const char *fmt, va_list ap)
{
    vreport_at(r, r->path, node, sev, code, fmt, ap);
}

void rp_report(rp_reporter *r, uint32_t node, oo_severity sev, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_at(r, r->path, node, sev, code, fmt, ap);
    va_end(ap);
}

void rp_report_at(rp_reporter *r, const char *path, uint32_t node, oo_severity sev, const char *code, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_at(r, path, node, sev, code, fmt, ap);
    va_end(ap);
}
