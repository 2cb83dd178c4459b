/*
 * gateway/rest/capability.c — the CapabilityStatement (see capability.h).
 */
#include "gateway/rest/capability.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "gateway/search/search.h"

/* JSON Patch and FHIRPath Patch (gateway/rest/rest_patch.c) */
static const char *const patch_formats[] = {"application/json-patch+json", "application/fhir+json"};

/* Said once per reference parameter, so kept short (the statement is served whole on every /metadata). */
#define CHAIN_DOC "Chained: name.param, name:Type.param, " SQ_MAX_CHAIN_TEXT " links at most"
#define HAS_DOC                                                                                              \
    "Reverse chaining: _has:Type:reference:param=value, nestable; chains and _has only reach resources the " \
    "caller may read"
#define SQ_MAX_CHAIN_TEXT "3"
_Static_assert(SQ_MAX_CHAIN == 3, "CHAIN_DOC names the chain limit");

static const char *search_kind_name(fs_search_kind k)
{
    static const char *const names[] = {"number",    "date",     "string", "token",  "reference",
                                        "composite", "quantity", "uri",    "special"};
    return names[k];
}

static json_object *str(const char *s)
{
    return json_object_new_string(s);
}

static bool row_applies(const cap_row *row, bool system, const char *type)
{
    if (row->system != system)
        return false;
    for (const char *const *t = row->except; !system && t && *t; t++)
        if (!strcmp(*t, type))
            return false;
    if (system || !row->types)
        return true;
    for (const char *const *t = row->types; *t; t++)
        if (!strcmp(*t, type))
            return true;
    return false;
}

/* The interactions (operations false: [{"code":..}]) or the operations ([{"name":..,"definition":..}]) of a
 * resource type (type) or of the system level (type NULL); NULL when there are none (no empty arrays). */
static json_object *row_list(const cap_info *info, const char *type, bool operations)
{
    json_object *arr = NULL;
    for (size_t i = 0; i < info->row_count; i++) {
        const cap_row *row = &info->rows[i];
        if ((row->definition != NULL) != operations || !row_applies(row, type == NULL, type))
            continue;
        json_object *o = json_object_new_object();
        json_object_object_add(o, operations ? "name" : "code", str(row->code));
        if (operations)
            json_object_object_add(o, "definition", str(row->definition));
        if (!arr)
            arr = json_object_new_array();
        json_object_array_add(arr, o);
    }
    return arr;
}

static void add_list(json_object *obj, const char *key, json_object *list)
{
    if (list)
        json_object_object_add(obj, key, list);
}

static void add_search_params(json_object *res, const fs_schema *s, const char *type, const cap_info *info)
{
    json_object *params = json_object_new_array();
    const char *bases[2] = {"Resource", type};
    for (int b = 0; b < 2; b++) {
        unsigned n;
        const fs_search_param *p = fs_search_params_of(s, bases[b], &n);
        for (unsigned i = 0; i < n; i++) {
            if (info->search_kind_supported && !info->search_kind_supported(p[i].kind))
                continue;
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", str(p[i].code));
            json_object_object_add(o, "definition", str(p[i].url));
            json_object_object_add(o, "type", str(search_kind_name(p[i].kind)));
            if (p[i].kind == FS_SEARCH_REFERENCE) /* R4 has no element for chaining: say it here */
                json_object_object_add(o, "documentation", str(CHAIN_DOC));
            json_object_array_add(params, o);
        }
    }
    json_object *has = json_object_new_object();
    json_object_object_add(has, "name", str("_has"));
    json_object_object_add(has, "type", str("special"));
    json_object_object_add(has, "documentation", str(HAS_DOC));
    json_object_array_add(params, has);
    json_object_object_add(res, "searchParam", params);
}

/* "Type:param" into a new string. */
static json_object *pair(const char *type, const char *param)
{
    char text[160];
    snprintf(text, sizeof text, "%s:%s", type, param);
    return str(text);
}

/* _include: "*" and every reference parameter of the type. */
static void add_search_include(json_object *res, const fs_schema *s, const char *type)
{
    json_object *includes = json_object_new_array();
    json_object_array_add(includes, str("*"));
    unsigned n;
    const fs_search_param *p = fs_search_params_of(s, type, &n);
    for (unsigned i = 0; i < n; i++)
        if (p[i].kind == FS_SEARCH_REFERENCE)
            json_object_array_add(includes, pair(type, p[i].code));
    json_object_object_add(res, "searchInclude", includes);
}

/*
 * Does reference parameter p point at `type`, as far as the definitions
 * say? Its name is the type's ("patient" -> Patient) or its expression
 * narrows to it ("resolve() is Patient"). Generic ones (subject) can point
 * at this type too and work with _revinclude, but are not listed.
 */
static bool points_at(const fs_search_param *p, const char *type)
{
    size_t n = strlen(type);
    bool named = strlen(p->code) == n;
    for (size_t i = 0; named && i < n; i++)
        named = p->code[i] == tolower((unsigned char)type[i]);
    char narrowed[96];
    snprintf(narrowed, sizeof narrowed, "resolve() is %s)", type);
    return named || (p->expression && strstr(p->expression, narrowed));
}

/* _revinclude: the reference parameters of every type that point at this one. */
static void add_search_rev_include(json_object *res, const fs_schema *s, const char *type)
{
    json_object *revs = NULL;
    for (uint32_t i = 0; i < s->search_param_count; i++) {
        const fs_search_param *p = &s->search_params[i];
        if (p->kind != FS_SEARCH_REFERENCE || !strcmp(p->resource, "Resource") || !points_at(p, type))
            continue;
        if (!revs)
            revs = json_object_new_array();
        json_object_array_add(revs, pair(p->resource, p->code));
    }
    if (revs)
        json_object_object_add(res, "searchRevInclude", revs);
}

/*
 * The audit trail is not a store of resources: read and a paged listing of the caller's own
 * accesses, no search parameters, no writes, versions or conditional interactions.
 */
static json_object *audit_entry(const cap_info *info)
{
    json_object *res = json_object_new_object();
    json_object_object_add(res, "type", str("AuditEvent"));
    json_object_object_add(res, "documentation",
                           str("The NEN 7513 audit trail (docs/audit.md): each organisation reads the entries of its "
                               "own accesses, newest first, paged with _count; no search parameters."));
    add_list(res, "interaction", row_list(info, "AuditEvent", false));
    json_object_object_add(res, "readHistory", json_object_new_boolean(0));
    json_object_object_add(res, "updateCreate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalCreate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalUpdate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalDelete", str("not-supported"));
    return res;
}

/*
 * Subscriptions are not stored: each notified organisation has one virtual
 * Subscription/handover-<URA> (rest_subscription.c), read by itself only,
 * with the Subscriptions Backport's $status and $events.
 */
static json_object *subscription_entry(const cap_info *info)
{
    json_object *res = json_object_new_object();
    json_object_object_add(res, "type", str("Subscription"));
    json_object *profiles = json_object_new_array();
    json_object_array_add(
        profiles, str("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"));
    json_object_object_add(res, "supportedProfile", profiles);
    json_object_object_add(
        res, "documentation",
        str("Virtual, not stored (docs/handover.md): Subscription/handover-<URA> is the handover notification "
            "subscription of the organisation with that URA, readable by it alone (404 for everyone else). $status: "
            "a searchset with its SubscriptionStatus (query-status); $events: a history Bundle (query-event) of "
            "the events eventsSinceNumber..eventsUntilNumber, at most 1000 per call, continued by a next link. "
            "No create, update, delete or search."));
    add_list(res, "interaction", row_list(info, "Subscription", false));
    json_object_object_add(res, "readHistory", json_object_new_boolean(0));
    json_object_object_add(res, "updateCreate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalCreate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalUpdate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalDelete", str("not-supported"));
    add_list(res, "operation", row_list(info, "Subscription", true));
    return res;
}

static json_object *resource_entry(const fs_schema *s, const char *type, const cap_info *info)
{
    if (!strcmp(type, "AuditEvent"))
        return audit_entry(info);
    if (!strcmp(type, "Subscription"))
        return subscription_entry(info);
    json_object *res = json_object_new_object();
    json_object_object_add(res, "type", str(type));
    json_object *profiles = NULL;
    for (size_t i = 0; i < info->profile_count; i++) {
        if (strcmp(info->profile_types[i], type))
            continue;
        if (!profiles)
            profiles = json_object_new_array();
        json_object_array_add(profiles, str(info->profile_urls[i]));
    }
    if (profiles)
        json_object_object_add(res, "supportedProfile", profiles);
    add_list(res, "interaction", row_list(info, type, false));
    json_object_object_add(res, "versioning", str("versioned-update"));
    json_object_object_add(res, "readHistory", json_object_new_boolean(1));
    /* PUT never creates: ids cannot be raced for or squatted (docs/access.md); conditional update does */
    json_object_object_add(res, "updateCreate", json_object_new_boolean(0));
    json_object_object_add(res, "conditionalCreate", json_object_new_boolean(1));
    json_object_object_add(res, "conditionalRead", str("full-support")); /* If-None-Match and If-Modified-Since */
    json_object_object_add(res, "conditionalUpdate", json_object_new_boolean(1));
    json_object_object_add(res, "conditionalDelete", str("single")); /* several matches: 412 */
    /* literal and logical references are stored; with integrity on, literal ones here must resolve */
    json_object *policy = json_object_new_array();
    json_object_array_add(policy, str("literal"));
    json_object_array_add(policy, str("logical"));
    if (info->references_enforced)
        json_object_array_add(policy, str("enforced"));
    json_object_object_add(res, "referencePolicy", policy);
    add_search_include(res, s, type);
    add_search_rev_include(res, s, type);
    add_search_params(res, s, type, info);
    add_list(res, "operation", row_list(info, type, true));
    return res;
}

bool cap_type_supported(const fs_schema *s, const char *type)
{
    const fs_type *t = fs_type_by_name(s, type, strlen(type));
    return t && t->kind == FS_RESOURCE && !t->is_abstract;
}

json_object *cap_build(const fs_schema *s, const cap_info *info)
{
    json_object *cs = json_object_new_object();
    json_object_object_add(cs, "resourceType", str("CapabilityStatement"));
    json_object_object_add(cs, "status", str("active"));
    json_object_object_add(cs, "date", str(info->start_time));
    json_object_object_add(cs, "publisher", str("fhirgw"));
    json_object_object_add(cs, "kind", str("instance"));
    json_object *software = json_object_new_object();
    json_object_object_add(software, "name", str("fhirgw"));
    json_object_object_add(software, "version", str(info->software_version));
    json_object_object_add(cs, "software", software);
    json_object *impl = json_object_new_object();
    json_object_object_add(impl, "description", str("FHIR R4 gateway for Dutch post-acute care"));
    json_object_object_add(impl, "url", str(info->base_url));
    json_object_object_add(cs, "implementation", impl);
    json_object_object_add(cs, "fhirVersion", str(s->fhir_version));
    json_object *formats = json_object_new_array();
    json_object_array_add(formats, str("application/fhir+json"));
    json_object_array_add(formats, str("json"));
    json_object_object_add(cs, "format", formats);
    json_object *patch = json_object_new_array();
    for (size_t i = 0; i < sizeof patch_formats / sizeof *patch_formats; i++)
        json_object_array_add(patch, str(patch_formats[i]));
    json_object_object_add(cs, "patchFormat", patch);

    json_object *rest = json_object_new_object();
    json_object_object_add(rest, "mode", str("server"));
    json_object *security = json_object_new_object();
    json_object_object_add(security, "description",
                           str("Mutual TLS: the client certificate identifies the calling organisation (URA in the "
                               "UZI server certificate). Organisations read what they own or what is addressed to "
                               "them (each version to whom it was addressed), and what an active Task addressed to "
                               "them refers to; they change what they own, and a Task's receiver its workflow "
                               "status; insurers get no clinical resources."));
    json_object_object_add(rest, "security", security);
    json_object *resources = json_object_new_array();
    for (uint32_t i = 0; i < s->type_count; i++) {
        const fs_type *t = &s->types[i];
        if (t->kind == FS_RESOURCE && !t->is_abstract)
            json_object_array_add(resources, resource_entry(s, t->name, info));
    }
    json_object_object_add(rest, "resource", resources);
    add_list(rest, "interaction", row_list(info, NULL, false));
    add_list(rest, "operation", row_list(info, NULL, true));
    json_object *rest_list = json_object_new_array();
    json_object_array_add(rest_list, rest);
    json_object_object_add(cs, "rest", rest_list);
    return cs;
}
