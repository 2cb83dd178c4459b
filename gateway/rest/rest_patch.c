/*
 * gateway/rest/rest_patch.c — the patch interaction: PATCH /Type/id, and the
 * conditional PATCH /Type?search whose query must match one resource.
 *
 * A patch is an update the server computes: read the current version, check
 * the caller may update it (as for PUT), apply the patch (fhir/patch.h),
 * validate the result like any write, and submit it as an update that
 * expects the version that was patched. A change committed in between then
 * makes this one fail with 412 instead of being silently overwritten: two
 * concurrent patches never lose one of them.
 *
 * Formats, by Content-Type: application/json-patch+json is JSON Patch;
 * application/fhir+json is FHIRPath Patch (a Parameters resource); plain
 * application/json is told apart by the body (an array is a JSON Patch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fhir/patch.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_query.h"
#include "gateway/rest/rest_write.h"

typedef enum patch_format { PATCH_NONE, PATCH_JSON, PATCH_FHIRPATH, PATCH_BY_BODY } patch_format;

static patch_format format_of(const char *content_type)
{
    if (!content_type)
        return PATCH_NONE;
    size_t len = strcspn(content_type, ";");
    while (len && content_type[len - 1] == ' ')
        len--;
    if (len == 27 && !strncasecmp(content_type, "application/json-patch+json", 27))
        return PATCH_JSON;
    if (len == 16 && !strncasecmp(content_type, "application/json", 16))
        return PATCH_BY_BODY;
    return rt_content_type_ok(content_type) ? PATCH_FHIRPATH : PATCH_NONE;
}

/* A parsed copy of some JSON text (fj_parse decodes in place, so never the original). */
typedef struct parsed {
    char *text;
    fj_doc doc;
} parsed;

static bool parse_copy(const char *json, size_t len, parsed *p, fj_error *err)
{
    memset(p, 0, sizeof *p);
    p->text = malloc(len + 1);
    if (!p->text) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return false;
    }
    memcpy(p->text, json, len);
    p->text[len] = '\0';
    return fj_parse(p->text, len, NULL, &p->doc, err);
}

static void parsed_free(parsed *p)
{
    fj_doc_free(&p->doc);
    free(p->text);
}

/* ---- which resource ---- */

/* Conditional patch: the one resource the query matches becomes q->route.id; false after answering. */
static bool resolve_conditional(rq *q)
{
    st_list found;
    if (!rest_conditional_match(q, q->route.type, srv_req_query(q->req), &found))
        return false;
    bool ok = false;
    if (found.count == 0)
        rq_respond_outcome(q, 404, OO_ERROR, OO_NOT_FOUND, NULL, "no %s matches the conditional patch",
                           q->route.type->name);
    else if (found.count > 1)
        rq_respond_outcome(q, 412, OO_ERROR, "multiple-matches", NULL, "the conditional patch matches more than one %s",
                           q->route.type->name);
    else
        ok = snprintf(q->route.id, sizeof q->route.id, "%s", found.items[0].id) > 0;
    st_list_free(&found);
    return ok;
}

/*
 * The current version of the route's resource, which the caller may update,
 * kept in q->write.current (the access checks of the write and the pinned
 * version rest on it); false after answering.
 */
static bool read_current(rq *q)
{
    const char *type = q->route.type->name;
    rest_write *w = &q->write;
    st_error err;
    st_status s = st_read(q->app->opt.store, type, q->route.id, &w->current, &err);
    if (s == ST_NOT_FOUND) {
        rest_record_decision(q, AZ_UPDATE, type, AZ_HIDDEN, 404, "no such resource", NULL);
        rest_answer_not_known(q, type, q->route.id, NULL);
        return false;
    }
    if (s != ST_OK && s != ST_GONE) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    w->has_current = true;
    if (!rest_may(q, &w->current, AZ_UPDATE))
        return false;
    if (s == ST_GONE) {
        rq_respond_outcome(q, 410, OO_ERROR, "deleted", NULL, "%s/%s was deleted (version %lld): nothing to patch",
                           type, q->route.id, (long long)w->current.version);
        return false;
    }
    return true;
}

/* If-Match must name the current version (the one the patch applies to); false after answering. */
static bool if_match_ok(rq *q, const st_resource *cur)
{
    const char *if_match = srv_req_header(q->req, "If-Match");
    if (!if_match)
        return true;
    int64_t v;
    if (!rest_if_match(if_match, &v)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "If-Match must be an ETag such as W/\"3\"");
        return false;
    }
    if (v == cur->version)
        return true;
    rq_respond_outcome(q, 412, OO_ERROR, "conflict", NULL, "%s/%s is at version %lld, not the one If-Match names",
                       cur->type, cur->id, (long long)cur->version);
    return false;
}

/* ---- applying ---- */

static void respond_patch_error(rq *q, patch_format f, const fpatch_error *e)
{
    const char *kind = f == PATCH_JSON ? "JSON Patch" : "FHIRPath Patch";
    if (e->op < 0) {
        rq_respond_outcome(q, 400, OO_ERROR, OO_STRUCTURE, NULL, "%s: %s", kind, e->message);
        return;
    }
    /* a FHIRPath Patch path is a FHIRPath expression on the resource; a JSON Pointer is not */
    const char *expression = f == PATCH_FHIRPATH && e->path[0] ? e->path : NULL;
    rq_respond_outcome(q, e->malformed ? 400 : 422, OO_ERROR, e->malformed ? OO_STRUCTURE : OO_PROCESSING, expression,
                       "%s operation %d (%s%s%s): %s", kind, e->op, e->op_name[0] ? e->op_name : "?",
                       e->path[0] ? " " : "", e->path, e->message);
}

/* The patched resource's JSON (malloc'd) or NULL after answering. */
static char *apply_patch(rq *q, const st_resource *cur, const char *body, size_t body_len, patch_format f, size_t *len)
{
    parsed res, patch;
    fj_error err;
    if (!parse_copy(cur->json, cur->json_len, &res, &err)) {
        rq_respond_outcome(q, 500, OO_ERROR, OO_EXCEPTION, NULL, "the stored resource cannot be read: %s", err.message);
        parsed_free(&res);
        return NULL;
    }
    char *out = NULL;
    if (!parse_copy(body, body_len, &patch, &err)) {
        rq_respond_outcome(q, 400, OO_ERROR, OO_STRUCTURE, NULL, "the patch is not JSON: %s (line %u, column %u)",
                           err.message, err.line, err.column);
    } else {
        if (f == PATCH_BY_BODY)
            f = patch.doc.nodes[0].type == FJ_ARRAY ? PATCH_JSON : PATCH_FHIRPATH;
        fpatch_error pe;
        out = f == PATCH_JSON ? fpatch_json_patch(&res.doc, &patch.doc, len, &pe)
                              : fpatch_fhirpath(&res.doc, &patch.doc, q->app->schema, rest_arena(q->app), len, &pe);
        if (!out)
            respond_patch_error(q, f, &pe);
    }
    parsed_free(&patch);
    parsed_free(&res);
    return out;
}

/* The patched resource keeps its type and id; false after answering 422. */
static bool same_identity(rq *q, const char *json, size_t len)
{
    parsed p;
    fj_error err;
    bool ok = parse_copy(json, len, &p, &err) && p.doc.nodes[0].type == FJ_OBJECT;
    uint32_t rt = ok ? fj_get(&p.doc, 0, "resourceType") : UINT32_MAX;
    uint32_t id = ok ? fj_get(&p.doc, 0, "id") : UINT32_MAX;
    if (!ok || rt == UINT32_MAX || !fj_str_eq(&p.doc, rt, q->route.type->name)) {
        rq_respond_outcome(q, 422, OO_ERROR, OO_PROCESSING, "resourceType",
                           "a patch may not change the resourceType (%s)", q->route.type->name);
        ok = false;
    } else if (id == UINT32_MAX || !fj_str_eq(&p.doc, id, q->route.id)) {
        rq_respond_outcome(q, 422, OO_ERROR, OO_PROCESSING, "id", "a patch may not change or remove the id (%s)",
                           q->route.id);
        ok = false;
    }
    parsed_free(&p);
    return ok;
}

/* Validate the patched resource and submit it as an update of `version`; false after answering. */
static bool submit_patched(rq *q, const char *json, size_t len, int64_t version)
{
    if (!same_identity(q, json, len))
        return false;
    rest_write *w = &q->write;
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = rest_write_parse(q, w, json, len, q->route.type->name, &issues);
    if (!status) {
        /* valid: the warnings of validation are not what a refusal below is about */
        oo_list_free(&issues);
        oo_list_init(&issues, 0);
        snprintf(w->id, sizeof w->id, "%s", q->route.id);
        status = rest_write_prepare(q, w, ST_OP_UPDATE, &w->current, &issues);
    }
    if (status) {
        /* positions are in the patched text, which the client never saw: the FHIRPath location says where */
        for (size_t i = 0; i < issues.count; i++)
            issues.items[i].line = issues.items[i].column = 0;
        rq_respond_issues(q, status, &issues);
        oo_list_free(&issues);
        return false;
    }
    oo_list_free(&issues);
    w->op.expected_version = version; /* the version patched: a concurrent change refuses this one */
    w->op.create_if_missing = false;
    return rest_write_submit(q);
}

bool rest_patch(rq *q)
{
    patch_format f = format_of(srv_req_header(q->req, "Content-Type"));
    if (f == PATCH_NONE) {
        rq_respond_outcome(q, 415, OO_ERROR, OO_NOT_SUPPORTED, NULL,
                           "send a JSON Patch as application/json-patch+json or a FHIRPath Patch (Parameters) as "
                           "application/fhir+json (Content-Type)");
        return false;
    }
    size_t body_len;
    const unsigned char *body = srv_req_body(q->req, &body_len);
    if (!body || !body_len) {
        rq_respond_outcome(q, 400, OO_ERROR, "required", NULL, "the request has no body (the patch)");
        return false;
    }
    if (!q->route.id[0] && !resolve_conditional(q))
        return false;
    if (!read_current(q))
        return false;
    const st_resource *cur = &q->write.current;
    size_t len = 0;
    char *patched = if_match_ok(q, cur) ? apply_patch(q, cur, (const char *)body, body_len, f, &len) : NULL;
    int64_t version = cur->version;
    bool submitted = patched && submit_patched(q, patched, len, version);
    free(patched);
    return submitted;
}
