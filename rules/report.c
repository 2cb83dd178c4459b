/*
 * rules/report.c — a compliance report as the FHIR Parameters of
 * ig/README.md ("The compliance report in FHIR") and as a page for a person.
 * The Parameters is a json-c object the caller puts; the page a malloc'd string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/internal.h"

#define RULE_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/rule"
#define FINDING_SOURCE "https://fhirgw.nl/fhir/StructureDefinition/finding-source"

static json_object *param(const char *name, const char *key, json_object *value)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "name", json_object_new_string(name));
    json_object_object_add(p, key, value);
    return p;
}

/* The message with the finding's detail in parentheses. */
static json_object *message(const char *text, const char *detail)
{
    if (!detail)
        return json_object_new_string(text);
    size_t n = strlen(text) + strlen(detail) + 4;
    char *s = malloc(n);
    snprintf(s, n, "%s (%s)", text, detail);
    json_object *o = json_object_new_string(s);
    free(s);
    return o;
}

static json_object *issue(const rl_finding *f)
{
    json_object *is = json_object_new_object(), *ext = json_object_new_object(), *exts = json_object_new_array();
    json_object_object_add(ext, "url", json_object_new_string(FINDING_SOURCE));
    json_object_object_add(ext, "valueString", json_object_new_string(f->rule->source));
    json_object_array_add(exts, ext);
    json_object_object_add(is, "extension", exts);
    json_object_object_add(is, "severity", json_object_new_string(f->error ? "error" : "warning"));
    json_object_object_add(is, "code", json_object_new_string("business-rule"));
    json_object *coding = json_object_new_object(), *codings = json_object_new_array(),
                *details = json_object_new_object();
    json_object_object_add(coding, "system", json_object_new_string(RULE_SYSTEM));
    json_object_object_add(coding, "code", json_object_new_string(f->rule->id));
    json_object_array_add(codings, coding);
    json_object_object_add(details, "coding", codings);
    json_object_object_add(details, "text", message(f->rule->message_en, f->detail));
    json_object_object_add(is, "details", details);
    json_object_object_add(is, "diagnostics", message(f->rule->message_nl, f->detail));
    if (*f->location) {
        json_object *exprs = json_object_new_array();
        json_object_array_add(exprs, json_object_new_string(f->location));
        json_object_object_add(is, "expression", exprs);
    }
    return is;
}

static json_object *outcome(const rl_report *r)
{
    json_object *oo = json_object_new_object(), *issues = json_object_new_array();
    json_object_object_add(oo, "resourceType", json_object_new_string("OperationOutcome"));
    for (size_t i = 0; i < r->count; i++)
        json_object_array_add(issues, issue(&r->items[i]));
    if (!r->count) { /* an OperationOutcome has at least one issue */
        json_object *is = json_object_new_object(), *details = json_object_new_object();
        json_object_object_add(is, "severity", json_object_new_string("information"));
        json_object_object_add(is, "code", json_object_new_string("informational"));
        json_object_object_add(details, "text", json_object_new_string("No findings"));
        json_object_object_add(is, "details", details);
        json_object_object_add(is, "diagnostics", json_object_new_string("Geen bevindingen"));
        json_object_array_add(issues, is);
    }
    json_object_object_add(oo, "issue", issues);
    return oo;
}

json_object *rl_report_parameters(const rl_report *r)
{
    json_object *p = json_object_new_object(), *params = json_object_new_array(), *ref = json_object_new_object();
    json_object_object_add(p, "resourceType", json_object_new_string("Parameters"));
    json_object_object_add(ref, "reference", json_object_new_string(r->subject));
    json_object_array_add(params, param("subject", "valueReference", ref));
    json_object_array_add(params, param("rulePack", "valueString", json_object_new_string(r->pack ? r->pack : "")));
    json_object_array_add(params, param("checked", "valueDate", json_object_new_string(r->checked)));
    json_object_array_add(params,
                          param("status", "valueCode", json_object_new_string(rl_status_code(rl_report_status(r)))));
    json_object_array_add(params, param("outcome", "resource", outcome(r)));
    json_object_object_add(p, "parameter", params);
    return p;
}

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return;
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *rl_report_text(const rl_report *r)
{
    static const char *const verdict[] = {"COMPLIANT", "NOT COMPLIANT", "NEEDS REVIEW"};
    sbuf b = {0};
    put(&b, "%s: %s\n", r->subject, verdict[rl_report_status(r)]);
    put(&b, "  checked %s with rule pack %s: %zu error%s, %zu warning%s\n", r->checked, r->pack ? r->pack : "?",
        r->errors, r->errors == 1 ? "" : "s", r->warnings, r->warnings == 1 ? "" : "s");
    for (size_t i = 0; i < r->count; i++) {
        const rl_finding *f = &r->items[i];
        put(&b, "\n  %-7s %s (%s)\n", f->error ? "error" : "warning", f->rule->id, f->rule->source);
        put(&b, "          at %s\n", *f->location ? f->location : "(the subject)");
        put(&b, "          %s\n", f->rule->message_en);
        put(&b, "          %s\n", f->rule->message_nl);
        if (f->detail)
            put(&b, "          %s\n", f->detail);
    }
    if (!b.s)
        b.s = strdup("");
    return b.s;
}
