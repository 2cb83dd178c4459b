/*
 * rules/util.c — small readers of FHIR JSON nodes, dates and the provider's
 * offer for the checks (rules/internal.h). Nothing allocated except findings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

void rl_add(rl_report *r, const rl_rule *rule, bool error, const char *location, const char *fmt, ...)
{
    if (r->count == r->capacity) {
        size_t cap = r->capacity ? r->capacity * 2 : 8;
        rl_finding *items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return;
        r->items = items;
        r->capacity = cap;
    }
    rl_finding *f = &r->items[r->count++];
    f->rule = rule;
    f->error = error;
    f->location = strdup(location ? location : "");
    f->detail = NULL;
    if (fmt) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        f->detail = strdup(buf);
    }
    if (error)
        r->errors++;
    else
        r->warnings++;
}

uint32_t rl_get(const fj_doc *d, uint32_t obj, const char *key)
{
    if (obj == RL_NO_NODE || d->nodes[obj].type != FJ_OBJECT)
        return RL_NO_NODE;
    return fj_get(d, obj, key);
}

size_t rl_len(const fj_doc *d, uint32_t arr)
{
    if (arr == RL_NO_NODE)
        return 0;
    return d->nodes[arr].type == FJ_ARRAY ? d->nodes[arr].len : 1;
}

uint32_t rl_at(const fj_doc *d, uint32_t arr, size_t i)
{
    if (arr == RL_NO_NODE)
        return RL_NO_NODE;
    if (d->nodes[arr].type != FJ_ARRAY)
        return i == 0 ? arr : RL_NO_NODE;
    if (i >= d->nodes[arr].len)
        return RL_NO_NODE;
    uint32_t n = fj_first_child(arr);
    while (i--)
        n = fj_next(d, n);
    return n;
}

bool rl_is(const fj_doc *d, uint32_t str, const char *s)
{
    return str != RL_NO_NODE && d->nodes[str].type == FJ_STRING && fj_str_eq(d, str, s);
}

bool rl_starts(const fj_doc *d, uint32_t str, const char *prefix)
{
    size_t n = strlen(prefix);
    return str != RL_NO_NODE && d->nodes[str].type == FJ_STRING && d->nodes[str].len >= n &&
           !memcmp(fj_str(d, str), prefix, n);
}

const char *rl_text(const fj_doc *d, uint32_t str, char *buf, size_t size)
{
    buf[0] = '\0';
    if (str != RL_NO_NODE && d->nodes[str].type == FJ_STRING)
        snprintf(buf, size, "%.*s", (int)d->nodes[str].len, fj_str(d, str));
    return buf;
}

/* The codings of a CodeableConcept, or the Coding itself. */
static uint32_t codings(const fj_doc *d, uint32_t cc)
{
    uint32_t c = rl_get(d, cc, "coding");
    return c != RL_NO_NODE ? c : cc;
}

uint32_t rl_code_in(const fj_doc *d, uint32_t cc, const char *system)
{
    uint32_t cs = codings(d, cc);
    for (size_t i = 0; i < rl_len(d, cs); i++) {
        uint32_t c = rl_at(d, cs, i);
        if (!system || rl_is(d, rl_get(d, c, "system"), system))
            if (rl_get(d, c, "code") != RL_NO_NODE)
                return rl_get(d, c, "code");
    }
    return RL_NO_NODE;
}

bool rl_has_code(const fj_doc *d, uint32_t cc, const char *system, const char *code)
{
    uint32_t cs = codings(d, cc);
    for (size_t i = 0; i < rl_len(d, cs); i++) {
        uint32_t c = rl_at(d, cs, i);
        if ((!system || rl_is(d, rl_get(d, c, "system"), system)) && rl_is(d, rl_get(d, c, "code"), code))
            return true;
    }
    return false;
}

int rl_ext(const fj_doc *d, uint32_t obj, const char *url, int n, uint32_t *node)
{
    uint32_t exts = rl_get(d, obj, "extension");
    for (size_t i = 0; i < rl_len(d, exts); i++) {
        uint32_t e = rl_at(d, exts, i);
        if (rl_is(d, rl_get(d, e, "url"), url) && n-- == 0) {
            *node = e;
            return (int)i;
        }
    }
    *node = RL_NO_NODE;
    return -1;
}

uint32_t rl_ext_value(const fj_doc *d, uint32_t ext)
{
    if (ext == RL_NO_NODE || d->nodes[ext].type != FJ_OBJECT)
        return RL_NO_NODE;
    uint32_t k = fj_first_child(ext);
    for (uint32_t m = 0; m < d->nodes[ext].len; m++) {
        uint32_t v = fj_next(d, k);
        if (d->nodes[k].len > 5 && !memcmp(fj_str(d, k), "value", 5))
            return v;
        k = fj_next(d, v);
    }
    return RL_NO_NODE;
}

uint32_t rl_part(const fj_doc *d, uint32_t ext, const char *url, int *index)
{
    uint32_t node;
    int i = rl_ext(d, ext, url, 0, &node);
    if (index)
        *index = i;
    return rl_ext_value(d, node);
}

bool rl_date(const fj_doc *d, uint32_t str, fdt_value *out)
{
    if (str == RL_NO_NODE || d->nodes[str].type != FJ_STRING)
        return false;
    return fdt_parse(FDT_FORM_DATETIME, fj_str(d, str), d->nodes[str].len, out) == NULL;
}

int64_t rl_day(const fdt_value *v)
{
    return fdt_days_from_civil(v->year, v->month ? v->month : 1, v->day ? v->day : 1);
}

int64_t rl_day_plus_months(const fdt_value *v, int months)
{
    int m0 = (v->month ? v->month : 1) - 1 + months;
    int y = v->year + m0 / 12, m = m0 % 12 + 1;
    int day = v->day ? v->day : 1, last = fdt_days_in_month(y, m);
    return fdt_days_from_civil(y, m, day < last ? day : last);
}

const char *rl_day_text(int64_t day, char buf[11])
{
    int y, m, dd;
    fdt_civil_from_days(day, &y, &m, &dd);
    unsigned uy = (unsigned)y % 10000u, um = (unsigned)m % 13u, ud = (unsigned)dd % 32u;
    snprintf(buf, 11, "%04u-%02u-%02u", uy, um, ud);
    return buf;
}

bool rl_period_covers(const fj_doc *d, uint32_t period, int64_t day)
{
    fdt_value v;
    if (rl_date(d, rl_get(d, period, "start"), &v) && rl_day(&v) > day)
        return false;
    if (rl_date(d, rl_get(d, period, "end"), &v) && rl_day(&v) < day)
        return false;
    return true;
}

bool rl_offers(const fj_doc *d, uint32_t org, const char *code, char *location, size_t size)
{
    uint32_t ext;
    for (int n = 0;; n++) {
        int i = rl_ext(d, org, RL_URL "care-offered", n, &ext);
        if (i < 0)
            return false;
        uint32_t parts = rl_get(d, ext, "extension");
        for (size_t j = 0; j < rl_len(d, parts); j++) {
            uint32_t p = rl_at(d, parts, j);
            if ((rl_is(d, rl_get(d, p, "url"), "kind") || rl_is(d, rl_get(d, p, "url"), "variant")) &&
                rl_is(d, rl_get(d, rl_ext_value(d, p), "code"), code)) {
                if (location)
                    snprintf(location, size, "Organization.extension[%d].extension[%zu]", i, j);
                return true;
            }
        }
    }
}

bool rl_has_exception(const fj_doc *d, uint32_t org, const char *code, int64_t day)
{
    uint32_t ext;
    for (int n = 0; rl_ext(d, org, RL_URL "remote-region-exception", n, &ext) >= 0; n++)
        if (rl_is(d, rl_get(d, rl_part(d, ext, "careKind", NULL), "code"), code) &&
            rl_period_covers(d, rl_part(d, ext, "period", NULL), day))
            return true;
    return false;
}

bool rl_when(const rl_context *c, uint32_t org, const char *when, char *location, size_t size)
{
    const fj_doc *d = c->subject.doc;
    if (!strncmp(when, "exception:", 10)) {
        if (location)
            snprintf(location, size, "Organization");
        return rl_has_exception(d, org, when + 10, rl_day(&c->date));
    }
    return rl_offers(d, org, when, location, size);
}
