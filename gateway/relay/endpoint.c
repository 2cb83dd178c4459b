/*
 * gateway/relay/endpoint.c — where an organisation wants its handover
 * notifications (rly_endpoint_of, see notify.h).
 *
 * Only the organisation itself decides: its own directory entry
 * (Organization/ura-<URA>, owned by it) names the Endpoint, and the Endpoint
 * must be owned by it too, so nobody else can point its notifications
 * elsewhere. Read from the store at every attempt, so a corrected address
 * is used for the retries that follow; a caller that has just read the
 * directory entry itself passes it (rly_endpoint_in), and only the Endpoint
 * is read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/json.h"
#include "gateway/relay/notify.h"

#define CONNECTION_FHIR_SYSTEM "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"

/* A stored version parsed from a copy (the parser decodes in place); false when it is not JSON. */
typedef struct parsed {
    char *text;
    fj_doc doc;
} parsed;

static bool parse(const st_resource *r, parsed *p)
{
    memset(p, 0, sizeof *p);
    fj_error err;
    p->text = r->json ? strndup(r->json, r->json_len) : NULL;
    return p->text && fj_parse(p->text, r->json_len, NULL, &p->doc, &err);
}

static void parsed_free(parsed *p)
{
    fj_doc_free(&p->doc);
    free(p->text);
}

static uint32_t member(const fj_doc *d, uint32_t obj, const char *key)
{
    return obj != UINT32_MAX && d->nodes[obj].type == FJ_OBJECT ? fj_get(d, obj, key) : UINT32_MAX;
}

static bool string_is(const fj_doc *d, uint32_t v, const char *s)
{
    return v != UINT32_MAX && d->nodes[v].type == FJ_STRING && fj_str_eq(d, v, s);
}

static bool coding_is(const fj_doc *d, uint32_t coding, const char *system, const char *code)
{
    return string_is(d, member(d, coding, "system"), system) && string_is(d, member(d, coding, "code"), code);
}

/* Does the array member `key` of obj hold a Coding (or a CodeableConcept with one) system|code? */
static bool has_code(const fj_doc *d, uint32_t obj, const char *key, const char *system, const char *code)
{
    uint32_t v = member(d, obj, key);
    if (v == UINT32_MAX)
        return false;
    if (d->nodes[v].type == FJ_OBJECT)
        return coding_is(d, v, system, code);
    if (d->nodes[v].type != FJ_ARRAY)
        return false;
    uint32_t it = v + 1;
    for (uint32_t i = 0; i < d->nodes[v].len; i++, it = fj_next(d, it))
        if (coding_is(d, it, system, code) || has_code(d, it, "coding", system, code))
            return true;
    return false;
}

/* An Endpoint of `ura` fit for notifications; fills out. */
static bool usable(st_store *store, const char *ura, const char *id, rly_endpoint *out)
{
    st_resource r;
    st_error err;
    if (st_read(store, "Endpoint", id, &r, &err) != ST_OK)
        return false;
    parsed p = {0};
    bool ok = !strcmp(r.owner, ura) && parse(&r, &p);
    if (ok) {
        const fj_doc *d = &p.doc;
        uint32_t address = member(d, 0, "address");
        ok = string_is(d, member(d, 0, "status"), "active") && address != UINT32_MAX &&
             d->nodes[address].type == FJ_STRING && d->nodes[address].len < sizeof out->address &&
             !strncmp(fj_str(d, address), "https://", 8) &&
             (has_code(d, 0, "connectionType", CONNECTION_FHIR_SYSTEM, "hl7-fhir-rest") ||
              has_code(d, 0, "connectionType", RLY_CONNECTION_SYSTEM, RLY_CONNECTION_CODE));
        if (ok) {
            snprintf(out->id, sizeof out->id, "%s", id);
            snprintf(out->address, sizeof out->address, "%.*s", (int)d->nodes[address].len, fj_str(d, address));
            out->payload = has_code(d, 0, "payloadType", RLY_PAYLOAD_SYSTEM, RLY_PAYLOAD_EMPTY_POST)
                               ? RLY_EMPTY_POST
                               : RLY_BACKPORT_ID_ONLY;
        }
    }
    parsed_free(&p);
    st_resource_free(&r);
    return ok;
}

/* The first usable Endpoint its directory entry names ("Endpoint/<id>"). */
static bool first_usable(st_store *store, const char *ura, const fj_doc *d, rly_endpoint *out)
{
    uint32_t refs = member(d, 0, "endpoint");
    if (refs == UINT32_MAX || d->nodes[refs].type != FJ_ARRAY)
        return false;
    uint32_t it = refs + 1;
    for (uint32_t i = 0; i < d->nodes[refs].len; i++, it = fj_next(d, it)) {
        uint32_t ref = member(d, it, "reference");
        if (ref == UINT32_MAX || d->nodes[ref].type != FJ_STRING)
            continue;
        const char *s = fj_str(d, ref);
        size_t len = d->nodes[ref].len;
        char id[ST_ID_MAX + 1];
        if (len <= 9 || len - 9 > ST_ID_MAX || strncmp(s, "Endpoint/", 9))
            continue;
        snprintf(id, sizeof id, "%.*s", (int)(len - 9), s + 9);
        if (usable(store, ura, id, out))
            return true;
    }
    return false;
}

st_status rly_endpoint_in(st_store *store, const char *ura, const st_resource *entry, rly_endpoint *out)
{
    memset(out, 0, sizeof *out);
    if (!entry || entry->deleted || !entry->json)
        return ST_NOT_FOUND;
    parsed p = {0};
    bool found = !strcmp(entry->owner, ura) && parse(entry, &p) && first_usable(store, ura, &p.doc, out);
    parsed_free(&p);
    return found ? ST_OK : ST_NOT_FOUND;
}

st_status rly_endpoint_of(st_store *store, const char *ura, rly_endpoint *out, st_error *err)
{
    memset(out, 0, sizeof *out);
    char id[ST_ID_MAX + 1];
    snprintf(id, sizeof id, "ura-%s", ura);
    st_resource org;
    st_status s = st_read(store, "Organization", id, &org, err);
    if (s == ST_GONE)
        st_resource_free(&org);
    if (s != ST_OK)
        return s == ST_GONE ? ST_NOT_FOUND : s;
    s = rly_endpoint_in(store, ura, &org, out);
    st_resource_free(&org);
    return s;
}
