/*
 * gateway/rest/rest_audit_read.c — GET /AuditEvent and GET /AuditEvent/{id}: the
 * audit trail as R4 AuditEvent resources, shaped as IHE BALP's RESTful
 * pattern (docs/audit.md), for the organisation that did the access.
 *
 * An AuditEvent's id is the entry's sequence number. An organisation reads
 * only the entries of its own accesses; anyone else's answer 404, as a
 * missing one. Reading the trail is not itself recorded (it holds
 * pseudonyms, no patient data). Search pages newest first, _count entries
 * (page_size_default, at most page_size_max), continued by _cursor (the
 * sequence number to go below).
 *
 * Memory: the JSON is built with json-c and handed to the answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define DCM "http://dicom.nema.org/resources/ontology/DCM"
#define PSEUDONYM_SYSTEM "urn:fhirgw:audit:patient-pseudonym"
#define BALP_ENTITY_TYPE "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

static json_object *coding(const char *system, const char *code, const char *display)
{
    json_object *c = json_object_new_object();
    json_object_object_add(c, "system", json_object_new_string(system));
    json_object_object_add(c, "code", json_object_new_string(code));
    if (display)
        json_object_object_add(c, "display", json_object_new_string(display));
    return c;
}

static json_object *concept(const char *system, const char *code, const char *display)
{
    json_object *cc = json_object_new_object(), *list = json_object_new_array();
    json_object_array_add(list, coding(system, code, display));
    json_object_object_add(cc, "coding", list);
    return cc;
}

static json_object *identifier(const char *system, const char *value)
{
    json_object *id = json_object_new_object();
    if (system)
        json_object_object_add(id, "system", json_object_new_string(system));
    json_object_object_add(id, "value", json_object_new_string(value));
    return id;
}

/* The client organisation (requestor) or the gateway itself. */
static json_object *agent(const au_entry *e, bool client, const char *base_url)
{
    json_object *a = json_object_new_object(), *who = json_object_new_object();
    json_object_object_add(a, "type",
                           client ? concept(DCM, "110153", "Source Role ID")
                                  : concept(DCM, "110152", "Destination Role ID"));
    if (client) {
        json_object_object_add(who, "identifier", identifier(URA_SYSTEM, e->ura));
        if (e->org_name[0])
            json_object_object_add(who, "display", json_object_new_string(e->org_name));
        if (e->cert_fp[0]) /* the client certificate's SHA-256: the access point */
            json_object_object_add(a, "altId", json_object_new_string(e->cert_fp));
        if (e->on_behalf[0])
            json_object_object_add(a, "name", json_object_new_string(e->on_behalf));
    } else {
        json_object_object_add(who, "display", json_object_new_string("fhirgw"));
        json_object *net = json_object_new_object();
        json_object_object_add(net, "address", json_object_new_string(base_url));
        json_object_object_add(net, "type", json_object_new_string("5")); /* URI */
        json_object_object_add(a, "network", net);
    }
    json_object_object_add(a, "who", who);
    json_object_object_add(a, "requestor", json_object_new_boolean(client));
    return a;
}

static json_object *entity(json_object *what, json_object *type, json_object *role, const char *description)
{
    json_object *en = json_object_new_object();
    json_object_object_add(en, "what", what);
    if (type)
        json_object_object_add(en, "type", type);
    if (role)
        json_object_object_add(en, "role", role);
    if (description && *description)
        json_object_object_add(en, "description", json_object_new_string(description));
    return en;
}

static json_object *entities(const au_entry *e)
{
    json_object *list = json_object_new_array();
    if (e->type[0] && e->id[0]) {
        char ref[200];
        if (e->version)
            snprintf(ref, sizeof ref, "%s/%s/_history/%" PRId64, e->type, e->id, e->version);
        else
            snprintf(ref, sizeof ref, "%s/%s", e->type, e->id);
        json_object *what = json_object_new_object();
        json_object_object_add(what, "reference", json_object_new_string(ref));
        json_object_array_add(list, entity(what,
                                           coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2",
                                                  "System Object"),
                                           coding("http://terminology.hl7.org/CodeSystem/object-role", "4",
                                                  "Domain Resource"),
                                           e->where));
    }
    if (e->patient[0]) {
        char value[AU_KEY_ID_MAX + AU_PSEUDONYM_LEN + 2];
        snprintf(value, sizeof value, "%s:%s", e->key_id, e->patient);
        json_object *what = json_object_new_object();
        json_object_object_add(what, "identifier", identifier(PSEUDONYM_SYSTEM, value));
        json_object_array_add(list,
                              entity(what,
                                     coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"),
                                     coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
                                     NULL));
    }
    if (e->request_id[0]) {
        json_object *what = json_object_new_object();
        json_object_object_add(what, "identifier", identifier(NULL, e->request_id));
        json_object_array_add(list, entity(what, coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"), NULL, NULL));
    }
    return list;
}

/* One entry as an AuditEvent. */
static json_object *audit_event(const au_entry *e, const char *base_url)
{
    json_object *o = json_object_new_object();
    char id[24], recorded[ST_INSTANT_LEN], outcome[64];
    snprintf(id, sizeof id, "%" PRId64, e->seq);
    st_format_instant(e->time_ms, recorded);
    json_object_object_add(o, "resourceType", json_object_new_string("AuditEvent"));
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "type",
                           coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest",
                                  "Restful Operation"));
    json_object *sub = json_object_new_array();
    json_object_array_add(sub, coding("http://hl7.org/fhir/restful-interaction", e->interaction, NULL));
    json_object_object_add(o, "subtype", sub);
    char action[2] = {e->action, '\0'};
    json_object_object_add(o, "action", json_object_new_string(action));
    json_object_object_add(o, "recorded", json_object_new_string(recorded));
    json_object_object_add(o, "outcome", json_object_new_string(e->status < 400 ? "0" : e->status < 500 ? "4" : "8"));
    snprintf(outcome, sizeof outcome, "HTTP %d, %s", e->status, e->decision);
    json_object_object_add(o, "outcomeDesc", json_object_new_string(outcome));
    json_object *agents = json_object_new_array();
    json_object_array_add(agents, agent(e, true, base_url));
    json_object_array_add(agents, agent(e, false, base_url));
    json_object_object_add(o, "agent", agents);
    json_object *source = json_object_new_object(), *observer = json_object_new_object(),
                *types = json_object_new_array();
    json_object_object_add(observer, "display", json_object_new_string("fhirgw"));
    json_object_object_add(source, "site", json_object_new_string(base_url));
    json_object_object_add(source, "observer", observer);
    json_object_array_add(types, coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4",
                                        "Application Server"));
    json_object_object_add(source, "type", types);
    json_object_object_add(o, "source", source);
    json_object *list = entities(e);
    if (json_object_array_length(list))
        json_object_object_add(o, "entity", list);
    else
        json_object_put(list);
    return o;
}

static void respond_object(rq *q, json_object *o)
{
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(text);
    char *body = strdup(text);
    json_object_put(o);
    rq_respond_json(q, 200, body, body ? len : 0);
}

bool rest_audit_event_read(rq *q)
{
    char *end;
    long long seq = strtoll(q->route.id, &end, 10);
    st_audit_row row;
    st_error err;
    st_status s = *end || seq <= 0 ? ST_NOT_FOUND : st_audit_get(q->app->opt.store, seq, &row, &err);
    if (s == ST_OK && strcmp(row.entry.ura, q->caller.ura)) /* someone else's access: as if it did not exist */
        s = ST_NOT_FOUND;
    if (s == ST_NOT_FOUND) {
        rest_answer_not_known(q, "AuditEvent", q->route.id, NULL);
        return false;
    }
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    respond_object(q, audit_event(&row.entry, q->app->opt.base_url));
    return false;
}

/* A whole-number query parameter (fallback when absent); false when malformed. */
static bool number(const char *query, const char *name, long long fallback, long long *out)
{
    size_t n = strlen(name);
    *out = fallback;
    for (const char *p = query; p && *p; p += strcspn(p, "&"), p += *p == '&') {
        if (strncmp(p, name, n) || p[n] != '=')
            continue;
        char *end;
        *out = strtoll(p + n + 1, &end, 10);
        return end != p + n + 1 && (*end == '&' || !*end) && *out >= 0;
    }
    return true;
}

static json_object *link(const char *relation, const char *url)
{
    json_object *l = json_object_new_object();
    json_object_object_add(l, "relation", json_object_new_string(relation));
    json_object_object_add(l, "url", json_object_new_string(url));
    return l;
}

bool rest_audit_event_search(rq *q)
{
    const char *query = srv_req_query(q->req);
    long long count, cursor;
    if (!number(query, "_count", q->app->opt.page_size_default, &count) || !number(query, "_cursor", 0, &cursor)) {
        rq_respond_outcome(q, 400, OO_ERROR, "invalid", NULL, "_count and _cursor must be whole numbers");
        return false;
    }
    if (count > q->app->opt.page_size_max)
        count = q->app->opt.page_size_max;
    st_audit_query aq = {.ura = q->caller.ura, .before_seq = cursor, .count = (size_t)count};
    st_audit_row *rows;
    size_t n;
    st_error err;
    st_status s = st_audit_list(q->app->opt.store, &aq, &rows, &n, &err);
    if (s != ST_OK) {
        rq_respond_outcome(q, rest_status_of(s), OO_ERROR, rest_code_of(s), NULL, "the store failed: %s", err.message);
        return false;
    }
    json_object *b = json_object_new_object(), *entries = json_object_new_array(), *links = json_object_new_array();
    json_object_object_add(b, "resourceType", json_object_new_string("Bundle"));
    json_object_object_add(b, "type", json_object_new_string("searchset"));
    char url[512];
    snprintf(url, sizeof url, "%s/AuditEvent?_count=%lld%s", q->app->opt.base_url, count, "");
    if (cursor)
        snprintf(url, sizeof url, "%s/AuditEvent?_count=%lld&_cursor=%lld", q->app->opt.base_url, count, cursor);
    json_object_array_add(links, link("self", url));
    if (n == (size_t)count && n) {
        snprintf(url, sizeof url, "%s/AuditEvent?_count=%lld&_cursor=%" PRId64, q->app->opt.base_url, count,
                 rows[n - 1].entry.seq);
        json_object_array_add(links, link("next", url));
    }
    json_object_object_add(b, "link", links);
    for (size_t i = 0; i < n; i++) {
        json_object *en = json_object_new_object(), *search = json_object_new_object();
        snprintf(url, sizeof url, "%s/AuditEvent/%" PRId64, q->app->opt.base_url, rows[i].entry.seq);
        json_object_object_add(en, "fullUrl", json_object_new_string(url));
        json_object_object_add(en, "resource", audit_event(&rows[i].entry, q->app->opt.base_url));
        json_object_object_add(search, "mode", json_object_new_string("match"));
        json_object_object_add(en, "search", search);
        json_object_array_add(entries, en);
    }
    if (n)
        json_object_object_add(b, "entry", entries);
    else
        json_object_put(entries);
    free(rows);
    respond_object(q, b);
    return false;
}
