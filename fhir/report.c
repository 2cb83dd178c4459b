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

size_t rp_push_name(rp_reporter *r, const char *name, size_t len)
{
    return rp_push(r, "%s%.*s", r->len ? "." : "", (int)len, name);
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
