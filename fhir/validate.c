/*
 * fhir/validate.c — the structural validator (see validate.h).
 *
 * One recursive walk over the parsed JSON tree, guided by the schema:
 *
 *   validate_resource      resourceType, then the resource's members;
 *                          Bundles get a frame that collects fullUrls and
 *                          references so they can be resolved at the end
 *   validate_members       one JSON object against an element's children:
 *                          unknown keys, duplicates, choice variants,
 *                          missing required children, `_name` companions
 *   validate_property      array versus single value, cardinality
 *   validate_value         one value against one type: primitive format,
 *                          complex type (recursion), bindings, references
 *
 * The FHIRPath location of the value being checked is kept in ctx.rep (an
 * rp_reporter, shared with the profile checker) and
 * grows and shrinks with the walk, so reporting costs nothing until an issue
 * is actually found. Recursion depth is bounded by the JSON depth limit.
 */
#include "fhir/validate.h"

#include "fhir/logical.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/bundle_rules.h"
#include "fhir/digest.h"
#include "fhir/fhirpath.h"
#include "fhir/reference.h"
#include "fhir/report.h"
#include "fhir/xhtml.h"

#define NO_NODE UINT32_MAX

/* A reference seen inside a transaction or document Bundle, resolved at the end. */
typedef struct bundle_ref {
    uint32_t node;        /* the reference string */
    uint32_t entry;       /* index of the entry it sits in */
    char *path;           /* FHIRPath of the reference, for the issue */
    const fs_element *el; /* the Reference element (CarePlan.subject): which targets it allows */
    uint32_t obj;         /* the Reference object (its .type) */
} bundle_ref;

typedef struct full_url {
    const char *text;
    uint32_t len;
    uint32_t entry;
    uint32_t node;
    const char *version; /* the resource's meta.versionId, NULL when it has none */
    uint32_t version_len;
} full_url;

typedef struct bundle_frame {
    bool resolve_refs;     /* transaction or document */
    bool is_document;      /* also relative references must resolve (a warning when not) */
    bool is_history;       /* the same fullUrl may appear in several versions */
    bool is_message;       /* MessageHeader.focus must resolve inside the Bundle */
    bool conditional_refs; /* transaction or batch: "Patient?identifier=..." names a resource (R4 http 3.1.0.11.2) */
    uint32_t node;         /* the Bundle */
    uint32_t entry_array;
    uint32_t current_entry;
    full_url *urls; /* sorted by text once the entries are walked */
    uint32_t url_count;
    uint32_t *entry_url; /* per entry index: node of its fullUrl, or NO_NODE */
    uint32_t *entry_obj; /* per entry index: the entry's node */
    uint32_t entry_count;
    bundle_ref *refs;
    size_t ref_count, ref_capacity;
    struct bundle_frame *outer;
} bundle_frame;

typedef struct ctx {
    const fs_schema *s;
    fj_doc *doc;
    rp_reporter rep;                /* the FHIRPath location of the walk, and where issues go */
    uint32_t container;             /* the resource whose `contained` list '#id' references search */
    bundle_frame *bundle;           /* innermost Bundle being walked, or NULL */
    const fs_element *bundle_entry; /* the Bundle.entry element, to know which entry we are in */
    const fs_type *t_reference, *t_coding, *t_codeable_concept, *t_bundle, *t_extension, *t_attachment;
    const pf_registry *profiles;
    bool invariants;      /* evaluate the core invariants (FHIRPath) */
    fp_arena *arena;      /* for invariant evaluation: the thread's, taken on first use */
    uint32_t resource;    /* the resource being walked: %resource */
    uint32_t xhtml_node;  /* the div being checked, for report_xhtml */
    bool security_checks; /* fv_options.security_checks */
    /* the element whose members are being walked: where an extension found among them sits */
    const fs_element *holder_el;
    const fs_type *holder_t;
    uint32_t holder_node;
    const fv_resource_rule *rules; /* fv_options.rules: their nodes are base + the walk's */
    size_t rule_count;
    uint32_t base; /* where the walked doc (a view of the caller's subtree) starts in the caller's */
} ctx;

static const fj_node *N(const ctx *c, uint32_t i)
{
    return &c->doc->nodes[i];
}
static const char *S(const ctx *c, uint32_t i)
{
    return fj_str(c->doc, i);
}

static bool str_is(const ctx *c, uint32_t node, const char *s)
{
    return node != NO_NODE && N(c, node)->type == FJ_STRING && fj_str_eq(c->doc, node, s);
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && !memcmp(s, prefix, n);
}

/* ---- forward declarations ------------------------------------------------ */

static void validate_resource(ctx *c, uint32_t node, bool contained);
static void validate_value(ctx *c, const fs_element *el, const fs_type *t, uint32_t v);
static void validate_members(ctx *c, uint32_t obj, const fs_element *kids, unsigned n, const char *owner,
                             bool resource_root, bool companion);

/* Children that apply to a value of type t held in element el. */
static const fs_element *children_for(const ctx *c, const fs_element *el, const fs_type *t, unsigned *n)
{
    if (el && (el->flags & FS_EL_INLINE))
        return fs_children(c->s, el, n);
    return fs_children(c->s, &c->s->elements[t->root], n);
}

/* ---- bindings ---------------------------------------------------------------- */

static const char *valueset_url(const ctx *c, const fs_element *el)
{
    return c->s->valuesets[el->valueset].url;
}

static bool coding_in_valueset(ctx *c, uint32_t coding, const fs_valueset *vs)
{
    uint32_t code = fj_get(c->doc, coding, "code");
    uint32_t system = fj_get(c->doc, coding, "system");
    if (code == NO_NODE || N(c, code)->type != FJ_STRING)
        return false;
    bool has_system = system != NO_NODE && N(c, system)->type == FJ_STRING;
    return fs_valueset_contains(c->s, vs, has_system ? S(c, system) : NULL, has_system ? N(c, system)->len : 0,
                                S(c, code), N(c, code)->len);
}

/* A Coding or CodeableConcept under a required binding the package could expand. */
static void check_coded_binding(ctx *c, const fs_element *el, const fs_type *t, uint32_t v)
{
    const fs_valueset *vs = &c->s->valuesets[el->valueset];
    if (t == c->t_coding) {
        if (fj_get(c->doc, v, "code") != NO_NODE && !coding_in_valueset(c, v, vs))
            rp_report(&c->rep, v, OO_ERROR, OO_CODE_INVALID, "the coding is not in the required value set %s",
                      valueset_url(c, el));
        return;
    }
    uint32_t codings = fj_get(c->doc, v, "coding");
    if (codings == NO_NODE || N(c, codings)->type != FJ_ARRAY || !N(c, codings)->len)
        return; /* text only: nothing to check against */
    for (uint32_t i = fj_first_child(codings), k = 0; k < N(c, codings)->len; k++, i = fj_next(c->doc, i))
        if (N(c, i)->type == FJ_OBJECT && coding_in_valueset(c, i, vs))
            return;
    rp_report(&c->rep, v, OO_ERROR, OO_CODE_INVALID, "none of the codings is in the required value set %s",
              valueset_url(c, el));
}

/* ---- references ------------------------------------------------------------ */

/* The container's contained resource with this id, or NO_NODE. */
static uint32_t contained_with_id(ctx *c, const char *id, size_t len)
{
    if (c->container == NO_NODE)
        return NO_NODE;
    uint32_t list = fj_get(c->doc, c->container, "contained");
    if (list == NO_NODE || N(c, list)->type != FJ_ARRAY)
        return NO_NODE;
    for (uint32_t i = fj_first_child(list), k = 0; k < N(c, list)->len; k++, i = fj_next(c->doc, i)) {
        uint32_t rid = N(c, i)->type == FJ_OBJECT ? fj_get(c->doc, i, "id") : NO_NODE;
        if (rid != NO_NODE && N(c, rid)->type == FJ_STRING && N(c, rid)->len == len && !memcmp(S(c, rid), id, len))
            return i;
    }
    return NO_NODE;
}

/*
 * The target of a Reference must be a type its element allows
 * (Observation.subject: Patient, Group, Device, Location), and Reference.type,
 * when given, must name that type too. `type` is the resource type the
 * reference was found to point to: from "Type/id", or the resolved contained
 * or Bundle resource. Reported at the .reference (`at`: its node).
 */
static void report_at_or_here(ctx *c, const char *path, uint32_t node, oo_severity sev, const char *code,
                              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* An issue at `path` (a location recorded earlier), or at the current location when path is NULL. */
static void report_at_or_here(ctx *c, const char *path, uint32_t node, oo_severity sev, const char *code,
                              const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path)
        rp_report_at(&c->rep, path, node, sev, code, "%s", msg);
    else
        rp_report(&c->rep, node, sev, code, "%s", msg);
}

static void check_target_type(ctx *c, const char *path, oo_severity sev, const fs_element *el, uint32_t obj,
                              uint32_t at, const char *type, size_t len)
{
    const fs_type *t = fs_type_by_name(c->s, type, len);
    if (!el || !el->target_count || !t || t->kind != FS_RESOURCE)
        return; /* an unknown resourceType is reported where the resource is */
    if (!fs_reference_allows_any(c->s, el) && !fs_reference_target_allowed(c->s, el, type, len)) {
        char allowed[512];
        size_t n = 0;
        unsigned count;
        const uint16_t *targets = fs_reference_targets(c->s, el, &count);
        allowed[0] = '\0';
        for (unsigned i = 0; i < count && n < sizeof allowed; i++)
            n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", i ? ", " : "", c->s->types[targets[i]].name);
        report_at_or_here(c, path, at, sev, OO_STRUCTURE, "the reference points to a %.*s, but %s may point to %s only",
                          (int)len, type, el->path, allowed);
    }
    uint32_t rt = fj_get(c->doc, obj, "type");
    if (rt == NO_NODE || N(c, rt)->type != FJ_STRING)
        return;
    const char *named = S(c, rt);
    size_t named_len = N(c, rt)->len;
    if (has_prefix(named, named_len, "http://hl7.org/fhir/StructureDefinition/")) {
        named += 40;
        named_len -= 40;
    }
    if (named_len != len || memcmp(named, type, len))
        report_at_or_here(c, path, at, sev, OO_VALUE, "Reference.type says '%.*s' but the reference points to a %.*s",
                          (int)N(c, rt)->len, S(c, rt), (int)len, type);
}

/* The resourceType of a resource object, or NULL. */
static const char *resource_type_of(ctx *c, uint32_t res, size_t *len)
{
    uint32_t rt = res != NO_NODE && N(c, res)->type == FJ_OBJECT ? fj_get(c->doc, res, "resourceType") : NO_NODE;
    if (rt == NO_NODE || N(c, rt)->type != FJ_STRING)
        return NULL;
    *len = N(c, rt)->len;
    return S(c, rt);
}

#define BAD_ID "the id part is not a valid id ([A-Za-z0-9-.]{1,64})"
#define BAD_TAIL "after Type/id only '/_history/versionId' may follow"

/* "Type/id" or "Type/id/_history/vid": returns NULL when fine, else what is wrong. */
static const char *check_relative_reference(ctx *c, const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    if (!slash)
        return "expected 'Type/id', '#id', 'urn:uuid:...' or an absolute URL";
    const fs_type *t = fs_type_by_name(c->s, s, (size_t)(slash - s));
    if (!t || t->kind != FS_RESOURCE || t->is_abstract)
        return "the reference does not start with a known resource type";
    fr_parts p;
    if (!fr_parse(s, len, &p) || p.type != s) {
        /* not Type/id(/_history/v) from the start: blame the id if it is bad, else what follows it */
        const char *id = slash + 1, *id_end = memchr(id, '/', len - (size_t)(id - s));
        size_t id_len = id_end ? (size_t)(id_end - id) : len - (size_t)(id - s);
        return id_len == 0 || fprim_check(FPRIM_ID, id, id_len) ? BAD_ID : BAD_TAIL;
    }
    if (fprim_check(FPRIM_ID, p.id, p.id_len))
        return BAD_ID;
    if (p.version && (p.version_len == 0 || fprim_check(FPRIM_ID, p.version, p.version_len)))
        return BAD_TAIL;
    return NULL;
}

/* "Type?search": a conditional reference, as transaction and batch entries may hold. */
static bool is_conditional_reference(ctx *c, const char *s, size_t len)
{
    const char *q = memchr(s, '?', len);
    if (!q || q == s || q + 1 == s + len || memchr(s, '/', (size_t)(q - s)))
        return false;
    const fs_type *t = fs_type_by_name(c->s, s, (size_t)(q - s));
    return t && t->kind == FS_RESOURCE && !t->is_abstract;
}

static void record_bundle_ref(ctx *c, uint32_t node, const fs_element *el, uint32_t obj)
{
    bundle_frame *b = c->bundle;
    if (!fa_reserve(&b->refs, &b->ref_capacity, b->ref_count + 1, sizeof *b->refs))
        return; /* out of memory: this reference goes unresolved-unchecked */
    char *path = strdup(rp_path(&c->rep));
    if (!path)
        return;
    b->refs[b->ref_count++] = (bundle_ref){node, b->current_entry, path, el, obj};
}

static void check_reference(ctx *c, const fs_element *el, uint32_t obj)
{
    uint32_t r = fj_get(c->doc, obj, "reference");
    if (r == NO_NODE || N(c, r)->type != FJ_STRING || N(c, r)->len == 0)
        return; /* type and emptiness were reported by the member walk */
    const char *s = S(c, r);
    size_t len = N(c, r)->len;
    size_t old = rp_push(&c->rep, ".reference");
    const char *problem = NULL;
    if (memchr(s, ' ', len) || memchr(s, '\t', len) || memchr(s, '\n', len)) {
        problem = "a reference contains no whitespace";
    } else if (s[0] == '#') {
        uint32_t target = len > 1 ? contained_with_id(c, s + 1, len - 1) : NO_NODE;
        size_t tlen;
        const char *ttype = resource_type_of(c, target, &tlen);
        if (len > 1 && target == NO_NODE)
            rp_report(&c->rep, r, OO_ERROR, OO_INVARIANT,
                      "ref-1: SHALL have a contained resource if a local reference is provided (no contained resource "
                      "has the id '%.*s')",
                      (int)len - 1, s + 1);
        else if (ttype)
            check_target_type(c, NULL, OO_ERROR, el, obj, r, ttype, tlen);
        rp_pop(&c->rep, old);
        return;
    } else if (has_prefix(s, len, "urn:uuid:")) {
        problem = fprim_check(FPRIM_UUID, s, len);
    } else if (has_prefix(s, len, "urn:oid:")) {
        problem = fprim_check(FPRIM_OID, s, len);
    } else if (c->bundle && c->bundle->conditional_refs && is_conditional_reference(c, s, len)) {
        rp_pop(&c->rep, old); /* the server resolves it to its one match; nothing to resolve inside the Bundle */
        return;
    } else if (!fr_is_absolute(s, len)) {
        problem = check_relative_reference(c, s, len);
    }
    fr_parts parts;
    if (problem)
        rp_report(&c->rep, r, OO_ERROR, OO_VALUE, "invalid reference '%.*s': %s", (int)(len > 200 ? 200 : len), s,
                  problem);
    else if (!(c->bundle && c->bundle->resolve_refs) && fr_parse(s, len, &parts) &&
             fs_type_by_name(c->s, parts.type, parts.type_len))
        /* not resolved here: what "Type/id" says is only a warning, as the reference checks resolved targets */
        check_target_type(c, NULL, OO_WARNING, el, obj, r, parts.type, parts.type_len);
    if (!problem && c->bundle && c->bundle->resolve_refs)
        record_bundle_ref(c, r, el, obj);
    rp_pop(&c->rep, old);
}

/* ---- narrative ----------------------------------------------------------------- */

static void report_xhtml(void *ctx_, oo_severity sev, const char *code, const char *message)
{
    ctx *c = ctx_;
    rp_report(&c->rep, c->xhtml_node, sev, code, "%s", message);
}

/* "#id" in narrative: any member `"id": "<id>"` of the resource (a contained resource, an element id). */
static bool resource_has_id(void *ctx_, const char *id, size_t len)
{
    const ctx *c = ctx_;
    uint32_t root = c->container != NO_NODE ? c->container : 0;
    uint32_t end = fj_next(c->doc, root);
    for (uint32_t i = root; i + 1 < end; i++)
        if (N(c, i)->type == FJ_STRING && N(c, i + 1)->type == FJ_STRING && N(c, i + 1)->len == len &&
            fj_str_eq(c->doc, i, "id") && !memcmp(S(c, i + 1), id, len))
            return true;
    return false;
}

/* Narrative.div (txt-1, txt-2, well-formedness, active content): fhir/xhtml.h. */
static void check_narrative(ctx *c, uint32_t v)
{
    fx_options o = {0, 0, resource_has_id, c};
    c->xhtml_node = v;
    fx_check(S(c, v), N(c, v)->len, &o, report_xhtml, c);
}

/*
 * Strings and markdown are rendered too. As the HL7 validator does: a string
 * that looks like it holds HTML tags is a hint (an error with security
 * checks on), HTML in markdown a warning (error likewise), a value of
 * nothing but whitespace a warning, a string over 1 MB an error. Script
 * links in markdown ([x](javascript:...)) are reported as HTML in markdown is.
 */
#define MAX_STRING_BYTES (1024u * 1024u)

static void check_text(ctx *c, const fs_type *t, uint32_t v)
{
    const char *s = S(c, v);
    size_t len = N(c, v)->len, i = 0;
    bool markdown = t->prim == FPRIM_MARKDOWN;
    if (len > MAX_STRING_BYTES)
        rp_report(&c->rep, v, OO_ERROR, OO_TOO_LONG, "the %s is %zu bytes; a string holds at most 1 MB", t->name, len);
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i == len)
        rp_report(&c->rep, v, OO_WARNING, OO_INVALID, "the %s is nothing but whitespace", t->name);
    if (!memchr(s, '<', len) && !(markdown && memchr(s, ':', len)))
        return; /* the common case: nothing that could be markup */
    size_t at = fx_find_tag(s, len);
    oo_severity sev = c->security_checks ? OO_ERROR : markdown ? OO_WARNING : OO_INFORMATION;
    if (at < len)
        rp_report(&c->rep, v, sev, OO_INVALID,
                  "the %s contains what looks like an HTML tag at '%.*s'; rendered without escaping it would be "
                  "active markup",
                  t->name, (int)(len - at > 30 ? 30 : len - at), s + at);
    else if (markdown && (at = fx_find_active_link(s, len)) < len)
        rp_report(&c->rep, v, sev, OO_INVALID, "the markdown links to a script or data URL at '%.*s'",
                  (int)(len - at > 40 ? 40 : len - at), s + at);
}

/* ---- primitives -------------------------------------------------------------- */

/* "an object", "a string": the JSON type of a node with its article, for messages. */
static const char *json_kind(const fj_node *n)
{
    static const char *const names[] = {"null",     "a boolean", "a boolean", "a number",
                                        "a string", "an array",  "an object"};
    return names[n->type];
}

static void validate_primitive(ctx *c, const fs_element *el, const fs_type *t, uint32_t v)
{
    const fj_node *n = N(c, v);
    if (n->type == FJ_OBJECT || n->type == FJ_ARRAY) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "expected a primitive value (%s), found %s", t->name,
                  json_kind(n));
        return;
    }
    fprim_json want = fprim_json_type(t->prim);
    bool type_ok = (want == FPRIM_JSON_STRING && n->type == FJ_STRING) ||
                   (want == FPRIM_JSON_NUMBER && n->type == FJ_NUMBER) ||
                   (want == FPRIM_JSON_BOOLEAN && (n->type == FJ_TRUE || n->type == FJ_FALSE));
    if (!type_ok) {
        static const char *const json_names[] = {"a string", "a number", "a boolean"};
        rp_report(&c->rep, v, OO_ERROR, OO_VALUE, "a %s is written as %s in JSON, found %s", t->name, json_names[want],
                  json_kind(n));
        return;
    }
    if (want == FPRIM_JSON_BOOLEAN)
        return;
    if (n->type == FJ_STRING && n->len == 0) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "empty string: leave the property out instead");
        return;
    }
    const char *problem = fprim_check(t->prim, S(c, v), n->len);
    if (problem) {
        rp_report(&c->rep, v, OO_ERROR, OO_VALUE, "invalid %s '%.*s': %s", t->name, (int)(n->len > 100 ? 100 : n->len),
                  S(c, v), problem);
        return;
    }
    if (t->prim == FPRIM_XHTML) {
        check_narrative(c, v);
        return;
    }
    if (t->prim == FPRIM_STRING || t->prim == FPRIM_MARKDOWN)
        check_text(c, t, v);
    if (el && el->valueset != FS_NONE && el->binding_strength == FS_BIND_REQUIRED &&
        !fs_valueset_contains(c->s, &c->s->valuesets[el->valueset], NULL, 0, S(c, v), n->len))
        rp_report(&c->rep, v, OO_ERROR, OO_CODE_INVALID, "'%.*s' is not in the required value set %s",
                  (int)(n->len > 100 ? 100 : n->len), S(c, v), valueset_url(c, el));
}

/* ---- invariants ------------------------------------------------------------------ */

/*
 * The core invariants, compiled once per process (the schema is static, so
 * the compiled table is too) and shared by all threads.
 *
 * Two are enforced by the walk itself instead of FHIRPath, because they
 * apply to every element and the walk already knows the answer:
 *   ele-1  "All FHIR elements must have a @value or children": empty objects,
 *          empty strings and bare `null`s are refused structurally, and an
 *          object with nothing but an id is refused below;
 *   ext-1  "Must have either extensions or value[x], not both": checked on
 *          every Extension object without evaluating anything;
 *   ref-1  "SHALL have a contained resource if a local reference is
 *          provided": check_reference, located at the .reference itself;
 *   bdl-7  "FullUrl must be unique in a bundle": check_full_urls, located at
 *          the entry's fullUrl;
 *   dom-3  "If the resource is contained in another resource, it SHALL be
 *          referred to from elsewhere in the resource or SHALL refer to the
 *          containing resource": check_contained_referenced scans the
 *          container's strings once for "#id" instead of evaluating
 *          descendants() four times per resource (any string value "#id"
 *          counts, where the FHIRPath counts Reference, canonical, uri, url);
 *   dom-6  "A resource should have narrative" (a warning): text.div present,
 *          read directly in validate_resource;
 *   txt-1, txt-2  the XHTML subset and non-empty narrative: htmlChecks() is
 *          not FHIRPath one can evaluate, fhir/xhtml.h checks the div.
 */
static fp_expr **compiled; /* one per schema constraint, NULL when it does not compile */
static char (*guards)[32]; /* per constraint: a member whose absence makes it hold ("" = none) */

/* Invariants the walk enforces itself, with sharper locations (see above). */
static bool natively_enforced(const char *key)
{
    static const char *const keys[] = {"ele-1", "ext-1", "ref-1", "bdl-7", "dom-3", "dom-6", "txt-1", "txt-2"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(keys[i], key))
            return true;
    return false;
}
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

/*
 * A guard: many invariants hold trivially when one member is absent, and
 * say so in their first words:
 *   "code.empty() or system.exists()"            holds without `code`
 *   "value.exists() implies ..."                 holds without `value`
 *   "contained.where(...).empty()"               holds without `contained` (dom-2..5)
 * When the element has no such member (nor its `_` companion), evaluation is
 * skipped: the result would be true. This is read off the expression text,
 * so it stays right when the definitions change; anything else is evaluated.
 */
static void guard_of(const char *expr, char out[32])
{
    out[0] = '\0';
    size_t len = strspn(expr, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    if (!len || len >= 32 || expr[len] != '.')
        return;
    const char *rest = expr + len;
    bool empty_or = !strncmp(rest, ".empty() or ", 12);
    bool exists_implies = !strncmp(rest, ".exists() implies ", 18);
    /* "m.<path without top-level or/and/implies>.empty()": one navigation from m, tested for emptiness */
    bool path_empty = false;
    size_t total = strlen(expr);
    if (total > 8 && !strcmp(expr + total - 8, ".empty()")) {
        int depth = 0;
        path_empty = true;
        for (const char *p = rest; p < expr + total - 8 && path_empty; p++) {
            depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
            if (depth == 0 && *p == ' ')
                path_empty = false; /* a top-level operator: not a single path */
        }
    }
    if (empty_or || exists_implies || path_empty) {
        memcpy(out, expr, len);
        out[len] = '\0';
    }
}

/* One FHIRPath arena per thread, kept across validations: its blocks are reused, not refaulted. */
static pthread_key_t arena_key;

static void free_thread_arena(void *a)
{
    fp_arena_free(a);
}

static fp_arena *thread_arena(void)
{
    fp_arena *a = pthread_getspecific(arena_key);
    if (!a && (a = fp_arena_new()))
        pthread_setspecific(arena_key, a);
    return a;
}

/* Is there a string "#<id>" (or, with id NULL, "#") anywhere in the subtree of node? */
static bool has_local_reference(const ctx *c, uint32_t node, const char *id, size_t len)
{
    uint32_t end = fj_next(c->doc, node);
    for (uint32_t i = node; i < end; i++) {
        const fj_node *n = N(c, i);
        if (n->type != FJ_STRING || n->len != len + 1 || S(c, i)[0] != '#')
            continue;
        if (!id || !memcmp(S(c, i) + 1, id, len))
            return true;
    }
    return false;
}

/* dom-3: every contained resource is referred to ("#id") or refers to its container ("#"). */
static void check_contained_referenced(ctx *c, uint32_t resource)
{
    uint32_t list = fj_get(c->doc, resource, "contained");
    if (list == NO_NODE || N(c, list)->type != FJ_ARRAY)
        return;
    uint32_t item = fj_first_child(list);
    for (uint32_t k = 0; k < N(c, list)->len; k++, item = fj_next(c->doc, item)) {
        uint32_t id = N(c, item)->type == FJ_OBJECT ? fj_get(c->doc, item, "id") : NO_NODE;
        bool referred = id != NO_NODE && N(c, id)->type == FJ_STRING;
        if (referred) {
            /* "#id" in the container outside this contained resource, or anywhere inside others */
            uint32_t before_end = item, after = fj_next(c->doc, item);
            referred = false;
            for (uint32_t i = resource; i < before_end && !referred; i++)
                referred = N(c, i)->type == FJ_STRING && N(c, i)->len == N(c, id)->len + 1 && S(c, i)[0] == '#' &&
                           !memcmp(S(c, i) + 1, S(c, id), N(c, id)->len);
            for (uint32_t i = after; i < fj_next(c->doc, resource) && !referred; i++)
                referred = N(c, i)->type == FJ_STRING && N(c, i)->len == N(c, id)->len + 1 && S(c, i)[0] == '#' &&
                           !memcmp(S(c, i) + 1, S(c, id), N(c, id)->len);
        }
        if (!referred && !has_local_reference(c, item, NULL, 0)) {
            size_t old = rp_push(&c->rep, ".contained[%u]", k);
            rp_report(&c->rep, item, OO_ERROR, OO_INVARIANT,
                      "dom-3: If the resource is contained in another resource, it SHALL be referred to from elsewhere "
                      "in the resource or SHALL refer to the containing resource");
            rp_pop(&c->rep, old);
        }
    }
}

static bool guard_holds(const ctx *c, uint32_t index, uint32_t node)
{
    const char *member = guards[index];
    if (!member[0] || N(c, node)->type != FJ_OBJECT)
        return false;
    /* the member as written: itself, its `_` companion, or a choice variant (value -> valueQuantity) */
    size_t len = strlen(member);
    uint32_t key = fj_first_child(node);
    for (uint32_t m = 0; m < N(c, node)->len; m++, key = fj_next(c->doc, fj_next(c->doc, key))) {
        const char *k = S(c, key);
        size_t klen = N(c, key)->len;
        if (k[0] == '_') {
            k++;
            klen--;
        }
        if (klen >= len && !memcmp(k, member, len) && (klen == len || (k[len] >= 'A' && k[len] <= 'Z')))
            return false;
    }
    return true;
}

static void compile_invariants(void)
{
    const fs_schema *s = fs_r4();
    pthread_key_create(&arena_key, free_thread_arena);
    compiled = calloc(s->constraint_count, sizeof *compiled);
    guards = calloc(s->constraint_count, sizeof *guards);
    if (!compiled || !guards) {
        free(compiled);
        compiled = NULL;
        return;
    }
    for (uint32_t i = 0; i < s->constraint_count; i++) {
        const fs_constraint *k = &s->constraints[i];
        if (natively_enforced(k->key))
            continue;
        fp_error err;
        compiled[i] = fp_compile(k->expression, s, &err);
        guard_of(k->expression, guards[i]);
    }
}

static void check_one_invariant(ctx *c, uint32_t index, uint32_t node, const fs_type *t, const fs_element *el)
{
    const fp_expr *e = compiled[index];
    if (!e || guard_holds(c, index, node))
        return;
    const fs_constraint *k = &c->s->constraints[index];
    if (!c->arena && !(c->arena = thread_arena()))
        return;
    fp_env env;
    fp_env_init(&env, c->doc);
    env.schema = c->s;
    env.lenient = true; /* R4's own invariants need it: dom-3 applies as() to collections, que-7 says 'is Boolean' */
    env.resource = c->resource;
    env.root_resource = c->container;
    fp_collection out;
    fp_error err;
    if (!fp_evaluate_node(e, &env, node, t, el, c->arena, &out, &err)) {
        rp_report(&c->rep, node, OO_WARNING, OO_PROCESSING, "invariant %s could not be evaluated: %s", k->key,
                  err.message);
    } else {
        fp_truth truth = fp_truth_of(&out);
        if (truth == FP_FALSE)
            rp_report(&c->rep, node, k->is_error ? OO_ERROR : OO_WARNING, OO_INVARIANT, "%s: %s", k->key, k->human);
        else if (truth == FP_NOT_BOOLEAN)
            rp_report(&c->rep, node, OO_WARNING, OO_PROCESSING, "invariant %s did not give a boolean", k->key);
    }
    fp_arena_reset(c->arena);
}

static bool listed(const fs_schema *s, const fs_element *e, uint32_t index)
{
    for (unsigned i = 0; e && i < e->constraint_count; i++)
        if (s->constraint_refs[e->constraint_first + i] == index)
            return true;
    return false;
}

/* The invariants of the element and of its type's root, each once. */
static void check_invariants(ctx *c, const fs_element *el, const fs_type *t, uint32_t node)
{
    if (!c->invariants || !compiled)
        return;
    const fs_element *root = &c->s->elements[t->root];
    if (el && el != root)
        for (unsigned i = 0; i < el->constraint_count; i++) {
            uint32_t index = c->s->constraint_refs[el->constraint_first + i];
            if (compiled[index])
                check_one_invariant(c, index, node, t, el);
        }
    for (unsigned i = 0; i < root->constraint_count; i++) {
        uint32_t index = c->s->constraint_refs[root->constraint_first + i];
        if (compiled[index] && (el == root || !listed(c->s, el, index)))
            check_one_invariant(c, index, node, t, el);
    }
}

/* ext-1, natively: an Extension has a value[x] or nested extensions, never both, never neither. */
static void check_extension_shape(ctx *c, uint32_t obj)
{
    bool has_value = false, has_extensions = false;
    uint32_t key = fj_first_child(obj);
    for (uint32_t m = 0; m < N(c, obj)->len; m++, key = fj_next(c->doc, fj_next(c->doc, key))) {
        const char *k = S(c, key);
        size_t len = N(c, key)->len;
        if ((len > 5 && !memcmp(k, "value", 5)) || (len > 6 && !memcmp(k, "_value", 6)))
            has_value = true; /* a primitive value may consist of its extensions only (_valueString) */
        else if (fj_str_eq(c->doc, key, "extension"))
            has_extensions = true;
    }
    if (has_value == has_extensions)
        rp_report(&c->rep, obj, OO_ERROR, OO_INVARIANT, "ext-1: Must have either extensions or value[x], not both");
}

/* ---- extensions by definition --------------------------------------------------- */

/* Is the type t, or a type it derives from, named name[0..len)? */
static bool type_or_base_is(const ctx *c, const fs_type *t, const char *name, size_t len)
{
    for (int guard = 0; t && guard < 16; guard++) {
        if (strlen(t->name) == len && !memcmp(t->name, name, len))
            return true;
        t = t->base != FS_NONE ? &c->s->types[t->base] : NULL;
    }
    return false;
}

/* The holder's path as a context names it: "Patient.name.given" from "Patient.name[0].given" (no indices, no ofType). */
static size_t plain_path(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = path; *p && o + 1 < cap;) {
        if (*p == '[') {
            while (*p && *p != ']')
                p++;
            p += *p == ']';
        } else if (!strncmp(p, ".ofType(", 8)) {
            while (*p && *p != ')')
                p++;
            p += *p == ')';
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    return o;
}

/* The element a context path names ("PlanDefinition.action", "Observation.value[x]"), or NULL. */
static const fs_element *element_at_path(const ctx *c, const char *path, size_t len)
{
    const char *end = path + len, *dot = memchr(path, '.', len);
    const fs_type *t = fs_type_by_name(c->s, path, dot ? (size_t)(dot - path) : len);
    const fs_element *e = t ? &c->s->elements[t->root] : NULL;
    for (const char *seg = dot ? dot + 1 : end; e && seg < end;) {
        const char *next = memchr(seg, '.', (size_t)(end - seg));
        size_t n = next ? (size_t)(next - seg) : (size_t)(end - seg);
        if (n > 3 && !memcmp(seg + n - 3, "[x]", 3))
            n -= 3;
        const fs_type *choice;
        e = fs_child(c->s, e, seg, n, &choice);
        seg = next ? next + 1 : end;
    }
    return e;
}

/*
 * Uses of core extensions that the R4 package itself makes outside the
 * contexts their definitions list (the spec's tooling wrote them so: every
 * snapshot's ElementDefinition.type carries structuredefinition-fhir-type,
 * CodeSystems and ValueSets carry normative-version, ...). The official
 * examples are valid R4, so these places are admitted too; any other place
 * outside the context is an error.
 */
static const struct {
    const char *url, *element;
} context_errata[] = {
    {"http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type", "ElementDefinition.type"},
    {"http://hl7.org/fhir/StructureDefinition/regex", "ElementDefinition.type"},
    {"http://hl7.org/fhir/StructureDefinition/translation", "ValueSet.expansion.contains"},
    {"http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version", "CodeSystem"},
    {"http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version", "ValueSet"},
    {"http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version", "OperationDefinition"},
    {"http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version", "ElementDefinition"},
    {"http://hl7.org/fhir/StructureDefinition/valueset-concept-comments", "CodeSystem.concept"},
};

/*
 * Does one of the definition's contexts (pf_extension_contexts) admit the
 * holder? "element X" matches when X is the holder's element path
 * (Patient.contact, HumanName.given), the path from the resource, the
 * holder's type or a type it derives from (HumanName, Element, Resource);
 * "extension U" when the holder is an extension with url U; "fhirpath"
 * contexts are not evaluated and admit everything. No context: anywhere.
 */
static bool context_allows(ctx *c, const char *contexts, const char *holder_url, size_t holder_url_len)
{
    if (!*contexts)
        return true;
    char full[RP_PATH_CAPACITY];
    size_t full_len = plain_path(rp_path(&c->rep), full, sizeof full);
    for (const char *line = contexts; *line;) {
        const char *space = strchr(line, ' '), *end = strchr(line, '\n');
        if (!space || !end)
            break;
        const char *expr = space + 1;
        size_t len = (size_t)(end - expr);
        if (!strncmp(line, "fhirpath ", 9))
            return true;
        if (!strncmp(line, "extension ", 10) && holder_url && len == holder_url_len && !memcmp(expr, holder_url, len))
            return true;
        if (!strncmp(line, "element ", 8)) {
            const char *own = c->holder_el ? c->holder_el->path : "";
            if ((len == 7 && !memcmp(expr, "Element", 7)) || (strlen(own) == len && !memcmp(own, expr, len)) ||
                (full_len == len && !memcmp(full, expr, len)) || type_or_base_is(c, c->holder_t, expr, len))
                return true;
            /* a recursive element (PlanDefinition.action.action) is the element it repeats */
            const fs_element *named = memchr(expr, '.', len) ? element_at_path(c, expr, len) : NULL;
            if (named && c->holder_el && named->child_first != FS_NONE &&
                named->child_first == c->holder_el->child_first)
                return true;
        }
        line = end + 1;
    }
    return false;
}

static const pf_profile *find_extension(const ctx *c, const char *url, bool *from_guide)
{
    const pf_profile *def = c->profiles ? pf_find(c->profiles, url) : NULL;
    *from_guide = def != NULL;
    const pf_registry *core = def ? NULL : pf_core_extensions();
    return def ? def : core ? pf_find(core, url) : NULL;
}

/* An extension against its definition (core or the guide's): known, in the right slot, in context, conforming. */
static void check_extension_definition(ctx *c, const fs_element *el, uint32_t v)
{
    uint32_t url = fj_get(c->doc, v, "url");
    if (url == NO_NODE || N(c, url)->type != FJ_STRING || !fr_is_absolute(S(c, url), N(c, url)->len) ||
        N(c, url)->len >= 512)
        return; /* a relative url names a part of a complex extension, which its definition checks */
    char text[512];
    snprintf(text, sizeof text, "%.*s", (int)N(c, url)->len, S(c, url));
    uint32_t holder_url = NO_NODE;
    if (c->holder_t == c->t_extension) {
        bool ignored;
        holder_url = fj_get(c->doc, c->holder_node, "url");
        if (holder_url != NO_NODE && N(c, holder_url)->type == FJ_STRING && N(c, holder_url)->len < 512) {
            char outer[512];
            snprintf(outer, sizeof outer, "%.*s", (int)N(c, holder_url)->len, S(c, holder_url));
            if (find_extension(c, outer, &ignored))
                return; /* a part of a known complex extension: the outer definition says what it may hold */
        }
    }
    bool from_guide;
    const pf_profile *def = find_extension(c, text, &from_guide);
    if (!def) {
        rp_report(&c->rep, url, OO_WARNING, OO_NOT_FOUND, "the extension %s is not known here: not checked", text);
        return;
    }
    uint32_t max = pf_extension_max(def), list = c->holder_node != NO_NODE && N(c, c->holder_node)->type == FJ_OBJECT
                                                     ? fj_get(c->doc, c->holder_node, el->name)
                                                     : NO_NODE;
    if (max != UINT32_MAX && list != NO_NODE && N(c, list)->type == FJ_ARRAY) {
        uint32_t before = 0, item = fj_first_child(list); /* the same url earlier in this list */
        for (uint32_t k = 0; k < N(c, list)->len && item != v; k++, item = fj_next(c->doc, item)) {
            uint32_t u = N(c, item)->type == FJ_OBJECT ? fj_get(c->doc, item, "url") : NO_NODE;
            before += u != NO_NODE && N(c, u)->type == FJ_STRING && N(c, u)->len == N(c, url)->len &&
                      !memcmp(S(c, u), S(c, url), N(c, u)->len);
        }
        if (before + 1 > max)
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE,
                      "the extension %s may appear at most %u time%s on one element; this is number %u", text, max,
                      max == 1 ? "" : "s", before + 1);
    }
    bool in_modifier_slot = !strcmp(el->name, "modifierExtension");
    if (pf_extension_is_modifier(def) != in_modifier_slot)
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "the extension %s %s a modifier: it belongs in %s", text,
                  in_modifier_slot ? "is not" : "is", in_modifier_slot ? "extension" : "modifierExtension");
    bool holder_is_ext = holder_url != NO_NODE && N(c, holder_url)->type == FJ_STRING;
    bool erratum = false;
    for (size_t i = 0; i < sizeof context_errata / sizeof *context_errata && !erratum; i++)
        erratum = !strcmp(context_errata[i].url, text) &&
                  type_or_base_is(c, c->holder_t, context_errata[i].element, strlen(context_errata[i].element));
    for (size_t i = 0; i < sizeof context_errata / sizeof *context_errata && !erratum; i++)
        erratum = !strcmp(context_errata[i].url, text) && c->holder_el &&
                  !strcmp(c->holder_el->path, context_errata[i].element);
    if (!erratum && !context_allows(c, pf_extension_contexts(def), holder_is_ext ? S(c, holder_url) : NULL,
                                    holder_is_ext ? N(c, holder_url)->len : 0)) {
        char allowed[256];
        size_t n = 0;
        for (const char *p = pf_extension_contexts(def); *p && n + 2 < sizeof allowed; p++)
            allowed[n++] = *p == '\n' ? (p[1] ? ',' : '\0') : *p;
        allowed[n] = '\0';
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "the extension %s is not allowed on %s (its context of use: %s)",
                  text,
                  c->holder_el  ? c->holder_el->path
                  : c->holder_t ? c->holder_t->name
                                : "this element",
                  allowed);
    }
    if (!from_guide) /* the guide's are checked by pf_validate_declared with the resource */
        pf_validate(pf_core_extensions(), def, c->doc, v, rp_path(&c->rep), c->rep.out);
}

/* ---- attachments ----------------------------------------------------------------- */

/* Attachment.size and .hash describe the content: with inline data both can be checked (datatypes.html#Attachment). */
static void check_attachment(ctx *c, uint32_t v)
{
    uint32_t data = fj_get(c->doc, v, "data"), size = fj_get(c->doc, v, "size"), hash = fj_get(c->doc, v, "hash");
    if (data == NO_NODE || N(c, data)->type != FJ_STRING || (size == NO_NODE && hash == NO_NODE))
        return;
    uint64_t bytes;
    uint8_t sha1[FD_SHA1_BYTES];
    if (!fd_base64_measure(S(c, data), N(c, data)->len, &bytes, sha1))
        return; /* not base64: reported as a base64Binary */
    if (size != NO_NODE && N(c, size)->type == FJ_NUMBER &&
        !fprim_check(FPRIM_UNSIGNEDINT, S(c, size), N(c, size)->len)) {
        char *end;
        unsigned long long stated = strtoull(S(c, size), &end, 10);
        if (end != S(c, size) && stated != bytes) {
            size_t old = rp_push(&c->rep, ".size");
            rp_report(&c->rep, size, OO_ERROR, OO_VALUE, "Attachment.size is %llu but the data holds %llu bytes",
                      stated, (unsigned long long)bytes);
            rp_pop(&c->rep, old);
        }
    }
    if (hash != NO_NODE && N(c, hash)->type == FJ_STRING) {
        char want[FD_SHA1_BASE64 + 1];
        fd_base64_encode(sha1, sizeof sha1, want);
        uint64_t hash_bytes;
        uint8_t ignored[FD_SHA1_BYTES];
        bool is_sha1 = fd_base64_measure(S(c, hash), N(c, hash)->len, &hash_bytes, ignored) &&
                       hash_bytes == FD_SHA1_BYTES;
        size_t old = rp_push(&c->rep, ".hash");
        if (!is_sha1) /* a warning: it cannot be compared (DiagnosticReport-example-pgx has a hex string there) */
            rp_report(&c->rep, hash, OO_WARNING, OO_VALUE,
                      "Attachment.hash is not a base64 SHA-1 (20 bytes), so it cannot be checked against the data");
        else if (N(c, hash)->len != FD_SHA1_BASE64 || memcmp(S(c, hash), want, FD_SHA1_BASE64))
            rp_report(&c->rep, hash, OO_ERROR, OO_VALUE,
                      "Attachment.hash is not the SHA-1 of the data (base64 of it: %s)", want);
        rp_pop(&c->rep, old);
    }
}

/* ---- complex values ------------------------------------------------------------ */

static void validate_value(ctx *c, const fs_element *el, const fs_type *t, uint32_t v)
{
    const fj_node *n = N(c, v);
    if (n->type == FJ_NULL) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "null is not allowed: leave the property out instead");
        return;
    }
    if (t->kind == FS_PRIMITIVE) {
        validate_primitive(c, el, t, v);
        return;
    }
    if (n->type != FJ_OBJECT) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "expected an object (%s), found %s", t->name, json_kind(n));
        return;
    }
    if (t->kind == FS_RESOURCE) {
        validate_resource(c, v, el && !strcmp(el->name, "contained"));
        return;
    }
    unsigned count;
    const fs_element *kids = children_for(c, el, t, &count);
    if (t == c->t_extension && el)
        check_extension_definition(c, el, v);
    const fs_element *outer_el = c->holder_el;
    const fs_type *outer_t = c->holder_t;
    uint32_t outer_node = c->holder_node;
    c->holder_el = el;
    c->holder_t = t;
    c->holder_node = v;
    validate_members(c, v, kids, count, t->name, false, false);
    c->holder_el = outer_el;
    c->holder_t = outer_t;
    c->holder_node = outer_node;
    if (el && el->valueset != FS_NONE && el->binding_strength == FS_BIND_REQUIRED &&
        (t == c->t_coding || t == c->t_codeable_concept))
        check_coded_binding(c, el, t, v);
    if (t == c->t_reference)
        check_reference(c, el, v);
    if (t == c->t_extension)
        check_extension_shape(c, v);
    if (t == c->t_attachment)
        check_attachment(c, v);
    if (N(c, v)->len)
        check_invariants(c, el, t, v);
}

/* The type a value of element el has: the choice the key selected, or its only type. */
static const fs_type *value_type(const ctx *c, const fs_element *el, const fs_type *choice)
{
    return choice ? choice : fs_element_type(c->s, el, 0);
}

static size_t push_element(ctx *c, const fs_element *el, const fs_type *choice)
{
    if (choice)
        return rp_push(&c->rep, "%s%s.ofType(%s)", c->rep.len ? "." : "", el->name, choice->name);
    return rp_push_name(&c->rep, el->name, strlen(el->name));
}

/* One property's value: single versus array, cardinality, then each value. */
static void validate_property(ctx *c, const fs_element *el, const fs_type *choice, uint32_t v)
{
    const fs_type *t = value_type(c, el, choice);
    size_t old = push_element(c, el, choice);
    const fj_node *n = N(c, v);
    if (el->max == 1) {
        if (n->type == FJ_ARRAY)
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s holds one value, found an array", el->path);
        else
            validate_value(c, el, t, v);
    } else if (n->type != FJ_ARRAY) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s repeats: its value must be an array, found %s", el->path,
                  json_kind(n));
    } else if (n->len == 0) {
        rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "empty array: leave the property out instead");
    } else {
        if (n->len > el->max)
            rp_report(&c->rep, v, OO_ERROR, OO_STRUCTURE, "%s allows at most %u values, found %u", el->path, el->max,
                      n->len);
        bool is_entry = el == c->bundle_entry && c->bundle;
        uint32_t item = fj_first_child(v);
        for (uint32_t k = 0; k < n->len; k++, item = fj_next(c->doc, item)) {
            if (N(c, item)->type == FJ_NULL && t->kind == FS_PRIMITIVE)
                continue; /* a placeholder for a `_name` companion: checked by validate_companion */
            if (is_entry)
                c->bundle->current_entry = k;
            size_t before = rp_push_index(&c->rep, k);
            validate_value(c, el, t, item);
            rp_pop(&c->rep, before);
        }
    }
    rp_pop(&c->rep, old);
}

/* One `_name` object: its members, and ele-1 for a primitive that has no value and nothing but an id. */
static void validate_companion_object(ctx *c, const fs_element *el, uint32_t obj, uint32_t value,
                                      const fs_element *kids, unsigned count, const fs_type *t)
{
    const fs_element *outer_el = c->holder_el;
    const fs_type *outer_t = c->holder_t;
    uint32_t outer_node = c->holder_node;
    c->holder_el = el;
    c->holder_t = t;
    c->holder_node = obj;
    validate_members(c, obj, kids, count, t->name, false, true);
    c->holder_el = outer_el;
    c->holder_t = outer_t;
    c->holder_node = outer_node;
    bool has_value = value != NO_NODE && N(c, value)->type != FJ_NULL;
    if (!has_value && N(c, obj)->len == 1 && fj_str_eq(c->doc, fj_first_child(obj), "id"))
        rp_report(&c->rep, obj, OO_ERROR, OO_INVARIANT, "ele-1: All FHIR elements must have a @value or children");
}

/*
 * A primitive's `_name` companion (id and extensions of the primitive).
 * For repeating elements both arrays align index by index, with null where
 * one side has nothing; both null at one index is meaningless.
 */
static void validate_companion(ctx *c, const fs_element *el, const fs_type *t, uint32_t value, uint32_t ext)
{
    size_t old = push_element(c, el, (el->flags & FS_EL_CHOICE) ? t : NULL);
    unsigned count;
    const fs_element *kids = fs_children(c->s, &c->s->elements[t->root], &count);
    if (ext == NO_NODE) { /* only nulls in the value array need a companion */
        const fj_node *vn = N(c, value);
        if (vn->type == FJ_ARRAY) {
            uint32_t item = fj_first_child(value);
            for (uint32_t k = 0; k < vn->len; k++, item = fj_next(c->doc, item))
                if (N(c, item)->type == FJ_NULL) {
                    size_t before = rp_push_index(&c->rep, k);
                    rp_report(&c->rep, item, OO_ERROR, OO_STRUCTURE, "null without a matching '_%s' entry", el->name);
                    rp_pop(&c->rep, before);
                }
        }
        rp_pop(&c->rep, old);
        return;
    }
    const fj_node *en = N(c, ext);
    if (el->max == 1) {
        if (en->type != FJ_OBJECT)
            rp_report(&c->rep, ext, OO_ERROR, OO_STRUCTURE, "'_%s' must be an object, found %s", el->name,
                      json_kind(en));
        else
            validate_companion_object(c, el, ext, value, kids, count, t);
        rp_pop(&c->rep, old);
        return;
    }
    if (en->type != FJ_ARRAY) {
        rp_report(&c->rep, ext, OO_ERROR, OO_STRUCTURE, "'_%s' must be an array aligned with '%s', found %s", el->name,
                  el->name, json_kind(en));
        rp_pop(&c->rep, old);
        return;
    }
    bool has_values = value != NO_NODE && N(c, value)->type == FJ_ARRAY;
    if (has_values && N(c, value)->len != en->len) {
        rp_report(&c->rep, ext, OO_ERROR, OO_STRUCTURE, "'_%s' has %u entries but '%s' has %u: the arrays must align",
                  el->name, en->len, el->name, N(c, value)->len);
        rp_pop(&c->rep, old);
        return;
    }
    uint32_t item = fj_first_child(ext);
    uint32_t vitem = has_values ? fj_first_child(value) : NO_NODE;
    for (uint32_t k = 0; k < en->len; k++) {
        bool value_null = !has_values || N(c, vitem)->type == FJ_NULL;
        size_t before = rp_push_index(&c->rep, k);
        if (N(c, item)->type == FJ_NULL) {
            if (value_null)
                rp_report(&c->rep, item, OO_ERROR, OO_STRUCTURE, "both '%s' and '_%s' are null at index %u", el->name,
                          el->name, k);
        } else if (N(c, item)->type != FJ_OBJECT) {
            rp_report(&c->rep, item, OO_ERROR, OO_STRUCTURE, "'_%s' entries must be objects or null, found %s",
                      el->name, json_kind(N(c, item)));
        } else {
            validate_companion_object(c, el, item, value_null ? NO_NODE : vitem, kids, count, t);
        }
        rp_pop(&c->rep, before);
        item = fj_next(c->doc, item);
        if (has_values)
            vitem = fj_next(c->doc, vitem);
    }
    rp_pop(&c->rep, old);
}

/* Message for a key that names no child: say which choice it nearly matched. */
static void report_unknown(ctx *c, uint32_t key, const fs_element *kids, unsigned n, const char *owner)
{
    const char *k = S(c, key);
    size_t len = N(c, key)->len;
    for (unsigned i = 0; i < n; i++) {
        size_t stem = strlen(kids[i].name);
        if ((kids[i].flags & FS_EL_CHOICE) && len > stem && !memcmp(kids[i].name, k, stem)) {
            rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "'%.*s': %s does not allow the type '%.*s'", (int)len, k,
                      kids[i].path, (int)(len - stem), k + stem);
            return;
        }
    }
    rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "unknown property '%.*s' in %s", (int)(len > 100 ? 100 : len), k,
              owner);
}

typedef struct member_state {
    uint32_t value[FV_MAX_CHILDREN];     /* value node per child, NO_NODE if absent */
    uint32_t companion[FV_MAX_CHILDREN]; /* `_name` node per child */
    const fs_type *choice[FV_MAX_CHILDREN];
} member_state;

/* The `_name` companion key: find its primitive element, or report it unknown. */
static void note_companion(ctx *c, uint32_t key, uint32_t val, const fs_element *kids, unsigned n, const char *owner,
                           member_state *st)
{
    const fs_type *choice;
    const fs_element *el = fs_lookup(c->s, kids, n, S(c, key) + 1, N(c, key)->len - 1, &choice);
    const fs_type *t = el ? value_type(c, el, choice) : NULL;
    if (!el || t->kind != FS_PRIMITIVE || (el->flags & FS_EL_NO_EXT)) {
        /* a known element is named as itself (a companion addresses its primitive); an unknown key as written */
        size_t old = el ? push_element(c, el, choice) : rp_push_name(&c->rep, S(c, key), N(c, key)->len);
        if (el)
            rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "'%.*s': only primitive elements have a '_' companion",
                      (int)N(c, key)->len, S(c, key));
        else
            report_unknown(c, key, kids, n, owner);
        rp_pop(&c->rep, old);
        return;
    }
    unsigned idx = (unsigned)(el - kids);
    if (st->choice[idx] && st->choice[idx] != choice) {
        size_t old = rp_push_name(&c->rep, el->name, strlen(el->name));
        rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "'%.*s' does not match the %s value given", (int)N(c, key)->len,
                  S(c, key), st->choice[idx]->name);
        rp_pop(&c->rep, old);
        return;
    }
    st->companion[idx] = val;
    st->choice[idx] = choice;
}

/* companion: obj is a primitive's `_name` object, whose value (if any) is elsewhere (ele-1 is checked by the caller). */
static void validate_members(ctx *c, uint32_t obj, const fs_element *kids, unsigned n, const char *owner,
                             bool resource_root, bool companion)
{
    const fj_node *on = N(c, obj);
    if (on->len == 0) {
        rp_report(&c->rep, obj, OO_ERROR, OO_STRUCTURE, "empty object: leave the property out instead");
        return;
    }
    if (on->len == 1 && !resource_root && !companion && fj_str_eq(c->doc, fj_first_child(obj), "id"))
        rp_report(&c->rep, obj, OO_ERROR, OO_INVARIANT, "ele-1: All FHIR elements must have a @value or children");
    if (n > FV_MAX_CHILDREN) {
        rp_report(&c->rep, obj, OO_FATAL, OO_EXCEPTION, "internal limit: %s has more than %d children", owner,
                  FV_MAX_CHILDREN);
        return;
    }
    member_state st;
    for (unsigned i = 0; i < n; i++) {
        st.value[i] = st.companion[i] = NO_NODE;
        st.choice[i] = NULL;
    }
    uint32_t key = fj_first_child(obj);
    for (uint32_t m = 0; m < on->len; m++, key = fj_next(c->doc, fj_next(c->doc, key))) {
        uint32_t val = key + 1; /* a key is a single string node: its value follows */
        const char *k = S(c, key);
        size_t len = N(c, key)->len;
        if (N(c, key)->flags & FJ_FLAG_DUPLICATE_KEY) {
            size_t old = rp_push_name(&c->rep, k, len);
            rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "duplicate property '%.*s'", (int)len, k);
            rp_pop(&c->rep, old);
            continue;
        }
        if (resource_root && len == 12 && !memcmp(k, "resourceType", 12))
            continue;
        if (len > 1 && k[0] == '_') {
            note_companion(c, key, val, kids, n, owner, &st);
            continue;
        }
        const fs_type *choice;
        const fs_element *el = fs_lookup(c->s, kids, n, k, len, &choice);
        if (!el) {
            size_t old = rp_push_name(&c->rep, k, len);
            report_unknown(c, key, kids, n, owner);
            rp_pop(&c->rep, old);
            continue;
        }
        unsigned idx = (unsigned)(el - kids);
        if (st.value[idx] != NO_NODE) { /* exact duplicates were flagged above: this is a second choice variant */
            size_t old = rp_push_name(&c->rep, el->name, strlen(el->name));
            rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "only one of %s may be present, found '%.*s' as well",
                      el->path, (int)len, k);
            rp_pop(&c->rep, old);
            continue;
        }
        if (st.choice[idx] && st.choice[idx] != choice) { /* its `_` companion came first with another type */
            size_t old = rp_push_name(&c->rep, el->name, strlen(el->name));
            rp_report(&c->rep, key, OO_ERROR, OO_STRUCTURE, "'%.*s' does not match the '_' companion given for %s",
                      (int)len, k, st.choice[idx]->name);
            rp_pop(&c->rep, old);
            continue;
        }
        st.value[idx] = val;
        st.choice[idx] = choice;
        validate_property(c, el, choice, val);
    }
    for (unsigned i = 0; i < n; i++) {
        const fs_element *el = &kids[i];
        if (st.value[i] == NO_NODE && st.companion[i] == NO_NODE) {
            if (el->min > 0) {
                size_t old = rp_push_name(&c->rep, el->name, strlen(el->name));
                rp_report(&c->rep, obj, OO_ERROR, OO_REQUIRED, "missing required element %s (min %u)", el->path,
                          el->min);
                rp_pop(&c->rep, old);
            }
            continue;
        }
        const fs_type *t = value_type(c, el, st.choice[i]);
        if (t->kind != FS_PRIMITIVE)
            continue;
        bool value_has_nulls = st.value[i] != NO_NODE && N(c, st.value[i])->type == FJ_ARRAY;
        if (st.companion[i] != NO_NODE || value_has_nulls) {
            if (st.companion[i] != NO_NODE && st.value[i] != NO_NODE && el->max == 1 &&
                N(c, st.value[i])->type == FJ_ARRAY)
                continue; /* already reported as an array for a single value */
            validate_companion(c, el, t, st.value[i], st.companion[i]);
        }
    }
}

/* ---- resources and Bundles ------------------------------------------------------ */

static int full_url_cmp(const void *a, const void *b)
{
    const full_url *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* fullUrl, then meta.versionId (none first): the versions of one fullUrl sit together, in order. */
static int versioned_cmp(const full_url *x, const full_url *y)
{
    int c = full_url_cmp(x, y);
    if (c || !x->version || !y->version)
        return c ? c : (y->version == NULL) - (x->version == NULL);
    size_t n = x->version_len < y->version_len ? x->version_len : y->version_len;
    c = memcmp(x->version, y->version, n);
    return c ? c : (x->version_len > y->version_len) - (x->version_len < y->version_len);
}

/* The order of b->urls: versioned_cmp, then entry index, so that of equal ones the earliest entry comes first. */
static int url_order(const void *a, const void *b)
{
    const full_url *x = a, *y = b;
    int c = versioned_cmp(x, y);
    return c ? c : (x->entry > y->entry) - (x->entry < y->entry);
}

/* The first of b->urls not before key (after it when `after`), comparing the fullUrl only or also the version. */
static uint32_t url_bound(const bundle_frame *b, const full_url *key, bool with_version, bool after)
{
    uint32_t lo = 0, hi = b->url_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = with_version ? versioned_cmp(&b->urls[mid], key) : full_url_cmp(&b->urls[mid], key);
        if (c < 0 || (after && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The entries whose fullUrl is s[0..len): b->urls[*first .. *first + count). */
static uint32_t find_full_urls(const bundle_frame *b, const char *s, size_t len, uint32_t *first)
{
    full_url key = {s, (uint32_t)len, 0, 0, NULL, 0};
    *first = url_bound(b, &key, false, false);
    return url_bound(b, &key, false, true) - *first;
}

/* The resource object of entry k, or NO_NODE. */
static uint32_t entry_resource(ctx *c, const bundle_frame *b, uint32_t k)
{
    uint32_t entry = b->entry_obj[k];
    uint32_t res = N(c, entry)->type == FJ_OBJECT ? fj_get(c->doc, entry, "resource") : NO_NODE;
    return res != NO_NODE && N(c, res)->type == FJ_OBJECT ? res : NO_NODE;
}

/* meta.versionId of entry k's resource (a string node), or NO_NODE. */
static uint32_t entry_version_id(ctx *c, const bundle_frame *b, uint32_t k)
{
    uint32_t res = entry_resource(c, b, k);
    uint32_t meta = res != NO_NODE ? fj_get(c->doc, res, "meta") : NO_NODE;
    uint32_t v = (meta != NO_NODE && N(c, meta)->type == FJ_OBJECT) ? fj_get(c->doc, meta, "versionId") : NO_NODE;
    return v != NO_NODE && N(c, v)->type == FJ_STRING ? v : NO_NODE;
}

/* Collect the entries' fullUrls before the walk (references need them). */
static void bundle_begin(ctx *c, uint32_t bundle_node, bundle_frame *b)
{
    memset(b, 0, sizeof *b);
    b->node = bundle_node;
    uint32_t type = fj_get(c->doc, bundle_node, "type");
    b->is_document = str_is(c, type, "document");
    b->is_history = str_is(c, type, "history");
    b->is_message = str_is(c, type, "message");
    b->resolve_refs = b->is_document || b->is_message || str_is(c, type, "transaction");
    b->conditional_refs = str_is(c, type, "transaction") || str_is(c, type, "batch");
    b->entry_array = fj_get(c->doc, bundle_node, "entry");
    b->outer = c->bundle;
    c->bundle = b;
    if (b->entry_array == NO_NODE || N(c, b->entry_array)->type != FJ_ARRAY)
        return;
    uint32_t count = N(c, b->entry_array)->len;
    b->urls = calloc(count ? count : 1, sizeof *b->urls);
    b->entry_url = calloc(count ? count : 1, sizeof *b->entry_url);
    b->entry_obj = calloc(count ? count : 1, sizeof *b->entry_obj);
    if (!b->urls || !b->entry_url || !b->entry_obj)
        return;
    b->entry_count = count;
    uint32_t entry = fj_first_child(b->entry_array);
    for (uint32_t k = 0; k < count; k++, entry = fj_next(c->doc, entry)) {
        b->entry_obj[k] = entry;
        uint32_t u = N(c, entry)->type == FJ_OBJECT ? fj_get(c->doc, entry, "fullUrl") : NO_NODE;
        b->entry_url[k] = (u != NO_NODE && N(c, u)->type == FJ_STRING) ? u : NO_NODE;
        if (b->entry_url[k] == NO_NODE)
            continue;
        uint32_t v = entry_version_id(c, b, k);
        b->urls[b->url_count++] =
            (full_url){S(c, u), N(c, u)->len, k, u, v != NO_NODE ? S(c, v) : NULL, v != NO_NODE ? N(c, v)->len : 0};
    }
    qsort(b->urls, b->url_count, sizeof *b->urls, url_order);
}

/* bdl-7: an earlier entry with the same fullUrl and meta.versionId (none counts as one) as urls[i], or UINT32_MAX. */
static uint32_t same_version_before(const bundle_frame *b, uint32_t i)
{
    return i > 0 && !versioned_cmp(&b->urls[i - 1], &b->urls[i]) ? b->urls[i - 1].entry : UINT32_MAX;
}

/* Entry fullUrls: urn:uuid form, uniqueness (bdl-7: unless versions differ, or in a history). */
static void check_full_urls(ctx *c, bundle_frame *b)
{
    for (uint32_t i = 0; i < b->url_count; i++) {
        const full_url *u = &b->urls[i];
        const char *problem = NULL;
        if (has_prefix(u->text, u->len, "urn:uuid:"))
            problem = fprim_check(FPRIM_UUID, u->text, u->len);
        else if (!fr_is_absolute(u->text, u->len))
            problem = "a fullUrl is an absolute URL or a urn:uuid:/urn:oid: URI";
        uint32_t earlier = b->is_history ? UINT32_MAX : same_version_before(b, i);
        if (!problem && earlier == UINT32_MAX)
            continue;
        size_t old = rp_push(&c->rep, ".entry[%u].fullUrl", u->entry);
        if (problem)
            rp_report(&c->rep, u->node, OO_ERROR, OO_VALUE, "invalid fullUrl '%.*s': %s", (int)u->len, u->text,
                      problem);
        if (earlier != UINT32_MAX)
            rp_report(&c->rep, u->node, OO_ERROR, OO_INVARIANT,
                      "bdl-7: FullUrl must be unique in a bundle, or else entries with the same fullUrl must have "
                      "different meta.versionId (fullUrl '%.*s' also names entry %u)",
                      (int)u->len, u->text, earlier);
        rp_pop(&c->rep, old);
    }
}

/* Where a reference made inside the Bundle leads. */
typedef struct resolution {
    uint32_t entry;       /* the entry it names, or UINT32_MAX */
    uint32_t matches;     /* entries with the fullUrl it names: more than one are versions of one resource */
    bool version_missing; /* a version-specific reference whose fullUrl is there, but not that meta.versionId */
} resolution;

/*
 * The entry carrying fullUrl u[0..len), at `version` when given
 * (bundle.html#references: a version-specific reference drops its
 * "/_history/v" to match the fullUrl, then matches Resource.meta.versionId).
 * Without a version the fullUrl must name one entry only.
 */
static resolution resolve_full_url(const bundle_frame *b, const char *u, size_t len, const char *version,
                                   size_t version_len)
{
    resolution r = {UINT32_MAX, 0, false};
    uint32_t first = 0;
    r.matches = find_full_urls(b, u, len, &first);
    if (version && r.matches) {
        full_url key = {u, (uint32_t)len, 0, 0, version, (uint32_t)version_len};
        uint32_t at = url_bound(b, &key, true, false);
        if (at < b->url_count && !versioned_cmp(&b->urls[at], &key))
            r.entry = b->urls[at].entry;
        r.version_missing = r.entry == UINT32_MAX;
    } else if (!version && r.matches == 1) {
        r.entry = b->urls[first].entry;
    }
    return r;
}

/* Where reference r, made in entry `entry`, leads: absolute by fullUrl, "Type/id" against that entry's base. */
static resolution reference_resolves(ctx *c, const bundle_frame *b, const char *r, size_t len, uint32_t entry)
{
    size_t plain = fr_unversioned_len(r, len);
    const char *version = plain < len ? r + plain + 10 : NULL;
    size_t version_len = plain < len ? len - plain - 10 : 0;
    resolution none = {UINT32_MAX, 0, false};
    if (fr_is_absolute(r, len)) {
        resolution hit = resolve_full_url(b, r, len, NULL, 0); /* a fullUrl may itself hold /_history/ (bdl-8) */
        return hit.matches || !version ? hit : resolve_full_url(b, r, plain, version, version_len);
    }
    /* Relative "Type/id": resolve against the base of the referring entry's fullUrl (what precedes its Type/id). */
    uint32_t u = entry < b->entry_count ? b->entry_url[entry] : NO_NODE;
    fr_parts full;
    if (u == NO_NODE || !fr_parse(S(c, u), N(c, u)->len, &full))
        return none;
    const char *base = S(c, u);
    size_t base_len = (size_t)(full.type - base);
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%.*s%.*s", (int)base_len, base, (int)plain, r);
    if (base_len == 0 || !fr_is_absolute(base, base_len) || n <= 0 || (size_t)n >= sizeof buf)
        return none;
    return resolve_full_url(b, buf, (size_t)n, version, version_len);
}

/* An unresolved reference: an error when what it names must travel with the Bundle, else a warning. */
static void report_unresolved(ctx *c, const bundle_frame *b, const bundle_ref *ref, const resolution *res)
{
    const char *r = S(c, ref->node);
    int len = (int)(N(c, ref->node)->len > 200 ? 200 : N(c, ref->node)->len);
    const char *kind = b->is_document ? "document" : b->is_message ? "message" : "transaction";
    if (res->matches > 1 && !res->version_missing) {
        /* versions of one resource: only a version-specific reference says which (BUNDLE_BUNDLE_ENTRY_FOUND_MULTIPLE) */
        rp_report_at(&c->rep, ref->path, ref->node, OO_ERROR, OO_INVALID,
                     "found %u entries with the fullUrl of '%.*s' in this %s Bundle (versions of one resource): "
                     "refer to one with '/_history/' and its meta.versionId",
                     res->matches, len, r, kind);
        return;
    }
    bool must = has_prefix(r, (size_t)len, "urn:uuid:") || has_prefix(r, (size_t)len, "urn:oid:");
    /* what a document's Composition and a message's focus point to travels with them */
    must = must || ((b->is_document || b->is_message) && ref->entry == 0 &&
                    (b->is_document || strstr(ref->path, ".resource.focus[")));
    if (!must && !b->is_document && !b->is_message)
        return;
    if (res->version_missing)
        rp_report_at(&c->rep, ref->path, ref->node, must ? OO_ERROR : OO_WARNING, OO_NOT_FOUND,
                     "reference '%.*s': no entry with that fullUrl in this %s Bundle has that meta.versionId", len, r,
                     kind);
    else
        rp_report_at(&c->rep, ref->path, ref->node, must ? OO_ERROR : OO_WARNING, OO_NOT_FOUND,
                     "reference '%.*s' does not resolve to any entry's fullUrl in this %s Bundle", len, r, kind);
}

static void bundle_end(ctx *c, bundle_frame *b)
{
    check_full_urls(c, b);
    br_check(c->s, c->doc, b->node, &c->rep);
    for (size_t i = 0; i < b->ref_count; i++) {
        bundle_ref *ref = &b->refs[i];
        const char *r = S(c, ref->node);
        size_t len = N(c, ref->node)->len;
        resolution res = reference_resolves(c, b, r, len, ref->entry);
        size_t tlen;
        const char *ttype = res.entry < b->entry_count ? resource_type_of(c, entry_resource(c, b, res.entry), &tlen)
                                                       : NULL;
        fr_parts p;
        if (ttype)
            check_target_type(c, ref->path, OO_ERROR, ref->el, ref->obj, ref->node, ttype, tlen);
        else if (res.entry == UINT32_MAX && fr_parse(r, len, &p) && fs_type_by_name(c->s, p.type, p.type_len))
            check_target_type(c, ref->path, OO_WARNING, ref->el, ref->obj, ref->node, p.type, p.type_len);
        if (res.entry == UINT32_MAX)
            report_unresolved(c, b, ref, &res);
        free(ref->path);
    }
    free(b->refs);
    free(b->urls);
    free(b->entry_url);
    free(b->entry_obj);
    c->bundle = b->outer;
}

/* The caller's rule for the resource at node, or NULL (binary search: rules are sorted by node). */
static const fv_resource_rule *rule_for(const ctx *c, uint32_t node)
{
    uint32_t want = c->base + node;
    size_t lo = 0, hi = c->rule_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->rules[mid].node == want)
            return &c->rules[mid];
        if (c->rules[mid].node < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void validate_resource(ctx *c, uint32_t node, bool contained)
{
    const fv_resource_rule *rule = c->rule_count ? rule_for(c, node) : NULL;
    if (rule && rule->skip)
        return;
    if (N(c, node)->type != FJ_OBJECT) {
        rp_report(&c->rep, node, OO_ERROR, OO_STRUCTURE, "a resource is a JSON object, found %s",
                  json_kind(N(c, node)));
        return;
    }
    uint32_t rt = fj_get(c->doc, node, "resourceType");
    if (rt == NO_NODE) {
        rp_report(&c->rep, node, OO_ERROR, OO_STRUCTURE, "missing resourceType");
        return;
    }
    const fs_type *t = N(c, rt)->type == FJ_STRING ? fs_type_by_name(c->s, S(c, rt), N(c, rt)->len) : NULL;
    const pf_logical *model = !t && c->profiles && N(c, rt)->type == FJ_STRING
                                  ? fl_model_for_type(c->profiles, S(c, rt), N(c, rt)->len)
                                  : NULL;
    if (model) { /* an instance of a logical model of the registry (an insurer record) */
        fl_validate(c->profiles, model, c->doc, node, rp_path(&c->rep), c->rep.out);
        return;
    }
    if (!t || t->kind != FS_RESOURCE || t->is_abstract) {
        size_t old = rp_push_name(&c->rep, "resourceType", 12);
        if (N(c, rt)->type != FJ_STRING)
            rp_report(&c->rep, rt, OO_ERROR, OO_STRUCTURE, "resourceType must be a string, found %s",
                      json_kind(N(c, rt)));
        else if (t && t->kind == FS_RESOURCE)
            rp_report(&c->rep, rt, OO_ERROR, OO_STRUCTURE,
                      "resourceType '%s' is abstract: name a concrete resource type", t->name);
        else
            rp_report(&c->rep, rt, OO_ERROR, OO_STRUCTURE, "unknown resourceType '%.*s'",
                      (int)(N(c, rt)->len > 64 ? 64 : N(c, rt)->len), S(c, rt));
        rp_pop(&c->rep, old);
        return;
    }
    size_t old = c->rep.len ? c->rep.len : rp_push(&c->rep, "%s", t->name);
    uint32_t outer_container = c->container, outer_resource = c->resource;
    if (!contained)
        c->container = node;
    c->resource = node;
    bundle_frame frame;
    bool is_bundle = t == c->t_bundle;
    if (is_bundle)
        bundle_begin(c, node, &frame);
    unsigned count;
    const fs_element *kids = fs_children(c->s, &c->s->elements[t->root], &count);
    const fs_element *outer_el = c->holder_el;
    const fs_type *outer_t = c->holder_t;
    uint32_t outer_node = c->holder_node;
    c->holder_el = &c->s->elements[t->root];
    c->holder_t = t;
    c->holder_node = node;
    validate_members(c, node, kids, count, t->name, true, false);
    c->holder_el = outer_el;
    c->holder_t = outer_t;
    c->holder_node = outer_node;
    check_invariants(c, &c->s->elements[t->root], t, node);
    if (c->invariants && !contained)
        check_contained_referenced(c, node);
    if (c->invariants && t->base != FS_NONE && !strcmp(c->s->types[t->base].name, "DomainResource")) {
        uint32_t text = fj_get(c->doc, node, "text");
        if (text == NO_NODE || N(c, text)->type != FJ_OBJECT || fj_get(c->doc, text, "div") == NO_NODE)
            rp_report(&c->rep, node, OO_WARNING, OO_INVARIANT,
                      "dom-6: A resource should have narrative for robust management");
    }
    if (c->profiles)
        pf_validate_declared_plus(c->profiles, c->doc, node, rp_path(&c->rep), rule ? rule->profile : NULL, c->rep.out);
    if (is_bundle)
        bundle_end(c, &frame);
    c->container = outer_container;
    c->resource = outer_resource;
    rp_pop(&c->rep, old);
}

/* ---- entry points ------------------------------------------------------------------ */

static void ctx_init(ctx *c, const fv_options *opts, fj_doc *doc, uint32_t base, oo_list *out)
{
    memset(c, 0, sizeof *c);
    c->s = (opts && opts->schema) ? opts->schema : fs_r4();
    c->doc = doc;
    rp_init(&c->rep, doc, out);
    c->container = NO_NODE;
    c->resource = NO_NODE;
    c->holder_node = NO_NODE;
    c->t_reference = fs_type_by_name(c->s, "Reference", 9);
    c->t_coding = fs_type_by_name(c->s, "Coding", 6);
    c->t_codeable_concept = fs_type_by_name(c->s, "CodeableConcept", 15);
    c->t_bundle = fs_type_by_name(c->s, "Bundle", 6);
    c->t_extension = fs_type_by_name(c->s, "Extension", 9);
    c->t_attachment = fs_type_by_name(c->s, "Attachment", 10);
    c->profiles = opts ? opts->profiles : NULL;
    c->security_checks = opts && opts->security_checks;
    c->rules = opts ? opts->rules : NULL;
    c->rule_count = opts && opts->rules ? opts->rule_count : 0;
    c->base = base;
    c->invariants = !(opts && opts->skip_invariants) && c->s == fs_r4();
    if (c->invariants)
        pthread_once(&compile_once, compile_invariants);
    const fs_type *choice;
    c->bundle_entry = fs_child(c->s, &c->s->elements[c->t_bundle->root], "entry", 5, &choice);
}

/* doc's root as a resource; base: where doc starts in the caller's doc (fv_validate_node), for the rules. */
static size_t validate_root(fj_doc *doc, uint32_t base, const fv_options *opts, oo_list *out)
{
    size_t before = out->errors;
    ctx c;
    ctx_init(&c, opts, doc, base, out);
    validate_resource(&c, 0, false);
    if (opts && opts->profiles && opts->profile)
        pf_validate(opts->profiles, opts->profile, doc, 0, "", out);
    if (c.arena)
        fp_arena_reset(c.arena); /* the thread keeps it for the next document */
    return out->errors - before;
}

size_t fv_validate_doc(fj_doc *doc, const fv_options *opts, oo_list *out)
{
    return validate_root(doc, 0, opts, out);
}

/*
 * A subtree is a doc of its own: nodes are relative (children follow their parent, siblings are `size` apart)
 * and positions index the shared text. So the view is the subtree's nodes in place, and everything that reads
 * node 0 as "the root" (FHIRPath's resolve() in the Bundle, the narrative's id search) sees the resource, as
 * it would in a copy. Only the view's line index (built when an issue is located) is its own.
 */
size_t fv_validate_node(const fj_doc *doc, uint32_t node, const fv_options *opts, oo_list *out)
{
    fj_doc view = {.text = doc->text,
                   .text_len = doc->text_len,
                   .nodes = doc->nodes + node,
                   .count = doc->nodes[node].size,
                   .capacity = doc->nodes[node].size};
    size_t errors = validate_root(&view, node, opts, out);
    free(view.line_starts);
    return errors;
}

size_t fv_validate_buffer(char *buf, size_t len, const fv_options *opts, oo_list *out)
{
    fj_limits limits = fj_default_limits();
    if (opts && opts->limits.max_bytes)
        limits.max_bytes = opts->limits.max_bytes;
    if (opts && opts->limits.max_depth)
        limits.max_depth = opts->limits.max_depth;
    fj_doc doc;
    fj_error err;
    size_t before = out->errors;
    if (!fj_parse(buf, len, &limits, &doc, &err)) {
        oo_add(out, OO_FATAL, err.limit ? OO_TOO_LONG : OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s",
               err.message);
        fj_doc_free(&doc);
        return out->errors - before;
    }
    fv_validate_doc(&doc, opts, out);
    fj_doc_free(&doc);
    return out->errors - before;
}
