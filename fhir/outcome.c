/*
 * fhir/outcome.c — issue lists and their OperationOutcome form (see outcome.h).
 */
#define _GNU_SOURCE /* vasprintf */
#include "fhir/outcome.h"

#include "fhir/array.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oo_list_init(oo_list *l, size_t max_issues)
{
    memset(l, 0, sizeof *l);
    l->max_issues = max_issues ? max_issues : OO_DEFAULT_MAX_ISSUES;
}

void oo_list_free(oo_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].message);
        free(l->items[i].expression);
    }
    free(l->items);
    size_t max = l->max_issues;
    memset(l, 0, sizeof *l);
    l->max_issues = max;
}

const char *oo_severity_name(oo_severity s)
{
    static const char *const names[] = {"fatal", "error", "warning", "information"};
    return names[s];
}

/* The counts, and room for one more issue: NULL when it is dropped (beyond max_issues, or out of memory). */
static oo_issue *next_issue(oo_list *l, oo_severity sev)
{
    if (sev <= OO_ERROR)
        l->errors++;
    else if (sev == OO_WARNING)
        l->warnings++;
    if (l->count >= l->max_issues) {
        l->dropped++;
        return NULL;
    }
    if (!fa_reserve(&l->items, &l->capacity, l->count + 1, sizeof *l->items)) {
        l->dropped++; /* out of memory: the counts above stay right */
        return NULL;
    }
    return &l->items[l->count];
}

/* Fill the issue next_issue made room for; message owned (may be NULL). */
static void put_issue(oo_list *l, oo_issue *is, oo_severity sev, const char *code, const char *expression,
                      unsigned line, unsigned column, char *message)
{
    l->count++;
    is->severity = sev;
    is->code = code;
    is->message = message;
    is->expression = expression ? strdup(expression) : NULL;
    is->line = line;
    is->column = column;
}

void oo_vadd(oo_list *l, oo_severity sev, const char *code, const char *expression, unsigned line, unsigned column,
             const char *fmt, va_list ap)
{
    oo_issue *is = next_issue(l, sev);
    if (!is)
        return;
    char *message = NULL;
    if (vasprintf(&message, fmt, ap) < 0)
        message = NULL;
    put_issue(l, is, sev, code, expression, line, column, message);
}

void oo_add_text(oo_list *l, oo_severity sev, const char *code, const char *expression, const char *prefix,
                 const char *text)
{
    oo_issue *is = next_issue(l, sev);
    if (!is)
        return;
    if (!text)
        text = "";
    size_t p = strlen(prefix), t = strlen(text);
    char *message = malloc(p + t + 1);
    if (message) {
        memcpy(message, prefix, p);
        memcpy(message + p, text, t + 1);
    }
    put_issue(l, is, sev, code, expression, 0, 0, message);
}

void oo_add(oo_list *l, oo_severity sev, const char *code, const char *expression, unsigned line, unsigned column,
            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    oo_vadd(l, sev, code, expression, line, column, fmt, ap);
    va_end(ap);
}

size_t oo_issue_format(const oo_issue *is, char *buf, size_t cap)
{
    char position[64] = "";
    if (is->line)
        snprintf(position, sizeof position, "%s(line %u, col %u)", is->expression ? " " : "", is->line, is->column);
    int n = snprintf(buf, cap, "%-7s %-12s %s%s: %s", oo_severity_name(is->severity), is->code,
                     is->expression ? is->expression : "", position, is->message ? is->message : "");
    return n < 0 ? 0 : (size_t)n;
}

static json_object *issue_json(const char *severity, const char *code, const char *message, const char *expression,
                               unsigned line, unsigned column)
{
    json_object *is = json_object_new_object();
    json_object_object_add(is, "severity", json_object_new_string(severity));
    json_object_object_add(is, "code", json_object_new_string(code));
    if (message)
        json_object_object_add(is, "diagnostics", json_object_new_string(message));
    if (line) {
        /* `location` is deprecated for FHIRPath but still the place readers look for line/column. */
        char where[64];
        snprintf(where, sizeof where, "Line %u, Col %u", line, column);
        json_object *loc = json_object_new_array();
        json_object_array_add(loc, json_object_new_string(where));
        json_object_object_add(is, "location", loc);
    }
    if (expression) {
        json_object *expr = json_object_new_array();
        json_object_array_add(expr, json_object_new_string(expression));
        json_object_object_add(is, "expression", expr);
    }
    return is;
}

json_object *oo_to_json(const oo_list *l)
{
    json_object *oo = json_object_new_object();
    json_object_object_add(oo, "resourceType", json_object_new_string("OperationOutcome"));
    json_object *issues = json_object_new_array();
    for (size_t i = 0; i < l->count; i++) {
        const oo_issue *is = &l->items[i];
        json_object_array_add(issues, issue_json(oo_severity_name(is->severity), is->code, is->message, is->expression,
                                                 is->line, is->column));
    }
    if (l->dropped) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu further issues were not listed (limit %zu)", l->dropped, l->max_issues);
        json_object_array_add(issues, issue_json("information", OO_TOO_LONG, msg, NULL, 0, 0));
    }
    if (!l->count && !l->dropped)
        json_object_array_add(issues, issue_json("information", OO_INFORMATIONAL, "No issues detected", NULL, 0, 0));
    json_object_object_add(oo, "issue", issues);
    return oo;
}
