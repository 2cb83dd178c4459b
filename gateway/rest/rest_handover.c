/*
 * gateway/rest/rest_handover.c — POST [base]/$handover: the relay of a
 * medical-policy handover (issue #13; the workflow is docs/handover.md).
 *
 * The sender posts a Parameters with
 *   - document       the handover itself: a document Bundle whose
 *                    Composition has type SNOMED 371535009 (profiles below);
 *   - advanceNotice  optional: the advance notice (aanmeldbericht), a
 *                    document Bundle whose Composition has type LOINC 57830-2;
 *   - receiver       a Reference by URA identifier to the receiving
 *                    Organization: a registered care provider or GP with its
 *                    directory entry Organization/ura-<URA>.
 * The gateway validates it all (core and the guide's profiles), then each
 * document against the guide's handover profiles (ig/profiles:
 * handover-document for the Bundle, handover-composition or
 * advance-notice-composition for its Composition by the parameter, nl-patient
 * for the Patient), with the errors at their place in the Parameters; then
 * ELV-HANDOVER: an ELV receiver must have attested, and not let lapse, its
 * agreement with the sender's kind (hospital or GP). Then it stores
 * the documents and a Task (code SNOMED 308292007 transfer of care; status
 * requested with an advance notice, in-progress without; owner the
 * receiver's directory entry, requester the sender by URA, one input per
 * document typed by its Composition type) as ONE transaction built here and
 * run through the transaction path (rest_batch.h): the same access checks,
 * audit entries with the writes, one commit. The answer is 201 with the Task.
 *
 * Idempotency: every write is a conditional create on the document's
 * Bundle.identifier (the Task carries the same identifier). Conditional
 * creates are evaluated on the store's single commit thread, so a
 * resubmission, sequential or concurrent, finds the first Task and the
 * answer is 200 with that Task; never a second one.
 *
 * Who reads what afterwards, by the Task's status, is rest_access.c's
 * (the handover grants); the status moves are checked there too.
 *
 * Memory: everything lives in the request (the transaction's text and tree
 * are handed to rest_transaction_run_validated, which frees them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate.h"
#include "gateway/rest/answer.h"
#include "gateway/rest/handlers.h"
#include "gateway/rest/rest_access.h"
#include "gateway/rest/rest_batch.h"
#include "gateway/rest/rest_write.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"
#define SNOMED "http://snomed.info/sct"
#define HANDOVER_DEFINITION "https://fhirgw.nl/fhir/OperationDefinition/handover"
#define LOINC "http://loinc.org"

/* The parts of the request, as nodes of its parsed Parameters. */
typedef struct handover {
    fj_doc doc;
    char *text;         /* the body, parsed in place */
    uint32_t document;  /* Bundle node */
    uint32_t notice;    /* Bundle node or UINT32_MAX */
    uint32_t receiver;  /* Reference node */
    int receiver_index; /* its parameter's index, for messages */
    int document_index, notice_index;
    char ura[16];       /* the receiver's URA */
    uint32_t id_system; /* the document's Bundle.identifier.system and .value */
    uint32_t id_value;
} handover;

static bool str_member_is(const fj_doc *d, uint32_t obj, const char *name, const char *value)
{
    uint32_t v = obj != UINT32_MAX ? fj_get(d, obj, name) : UINT32_MAX;
    return v != UINT32_MAX && d->nodes[v].type == FJ_STRING && fj_str_eq(d, v, value);
}

/* The Parameters' members by name; false with an issue. */
static bool read_parameters(handover *h, oo_list *issues)
{
    const fj_doc *d = &h->doc;
    h->document = h->notice = h->receiver = UINT32_MAX;
    if (!str_member_is(d, 0, "resourceType", "Parameters")) {
        oo_add(issues, OO_ERROR, OO_STRUCTURE, NULL, 0, 0, "$handover takes a Parameters resource");
        return false;
    }
    uint32_t params = fj_get(d, 0, "parameter");
    uint32_t p = params != UINT32_MAX && d->nodes[params].type == FJ_ARRAY ? params + 1 : UINT32_MAX;
    for (uint32_t i = 0; p != UINT32_MAX && i < d->nodes[params].len; i++, p = fj_next(d, p)) {
        uint32_t *slot = str_member_is(d, p, "name", "document")        ? &h->document
                         : str_member_is(d, p, "name", "advanceNotice") ? &h->notice
                         : str_member_is(d, p, "name", "receiver")      ? &h->receiver
                                                                        : NULL;
        char expr[64];
        snprintf(expr, sizeof expr, "Parameters.parameter[%u]", i);
        if (!slot) {
            oo_add(issues, OO_ERROR, OO_NOT_SUPPORTED, expr, 0, 0,
                   "$handover takes the parameters document, advanceNotice and receiver only");
            return false;
        }
        if (*slot != UINT32_MAX) {
            oo_add(issues, OO_ERROR, OO_STRUCTURE, expr, 0, 0, "each $handover parameter is given once");
            return false;
        }
        *slot = fj_get(d, p, slot == &h->receiver ? "valueReference" : "resource");
        if (slot == &h->receiver)
            h->receiver_index = (int)i;
        else if (slot == &h->document)
            h->document_index = (int)i;
        else
            h->notice_index = (int)i;
        if (*slot == UINT32_MAX) {
            oo_add(issues, OO_ERROR, "required", expr, 0, 0, "%s",
                   slot == &h->receiver ? "receiver is a valueReference" : "document and advanceNotice are resources");
            return false;
        }
    }
    if (h->document == UINT32_MAX || h->receiver == UINT32_MAX) {
        oo_add(issues, OO_ERROR, "required", "Parameters.parameter", 0, 0,
               "$handover needs the parameters document (the handover) and receiver");
        return false;
    }
    return true;
}

/* ---- Each document against the guide's handover profiles (ig/profiles, docs/ig) ---- */

#define PROFILE_BASE "https://fhirgw.nl/fhir/StructureDefinition/"

/* Which profiles a document parameter must meet: the Bundle's, and its Composition's by the parameter. */
static const struct document_kind {
    const char *param, *composition_profile;
} document_kinds[] = {
    {"document", PROFILE_BASE "handover-composition"},
    {"advanceNotice", PROFILE_BASE "advance-notice-composition"},
};

/* The profile the resource r of entry `index` of a document must meet (its Composition first, any Patient), or NULL. */
static const pf_profile *entry_profile(const fj_doc *d, uint32_t r, uint32_t index, const pf_profile *composition,
                                       const pf_profile *patient)
{
    if (index == 0 && str_member_is(d, r, "resourceType", "Composition"))
        return composition;
    return str_member_is(d, r, "resourceType", "Patient") ? patient : NULL;
}

/* The errors of validating node (with opts: profiles, rules) join issues, their locations moved under `where`
 * (the resource's place in the Parameters). The tree is read in place: nothing is written out and parsed again. */
static void validate_node(rq *q, const fj_doc *d, uint32_t node, fv_options *opts, const char *where, oo_list *issues)
{
    opts->profiles = q->app->opt.profiles;
    oo_list found;
    oo_list_init(&found, 0);
    fv_validate_node(d, node, opts, &found);
    for (size_t i = 0; i < found.count; i++) {
        const oo_issue *is = &found.items[i];
        if (is->severity > OO_ERROR)
            continue;
        const char *rest = is->expression ? strchr(is->expression, '.') : NULL; /* after the resource type */
        char expr[512];
        snprintf(expr, sizeof expr, "%s%s", where, rest ? rest : "");
        oo_add(issues, is->severity, is->code, expr, 0, 0, "%s", is->message);
    }
    oo_list_free(&found);
}

/*
 * The document Bundle of the parameter `name` as a resource of its own: the Bundle profile, its Composition's
 * (by the parameter: a handover's Composition in advanceNotice fails its profile), and nl-patient for the
 * Patient, as rules on those entries: the validator applies them with the profiles each resource declares,
 * so one pass over the document checks the core rules and all three profiles (the narrative, the bulk, is
 * read once). False with issues.
 */
static bool check_document(rq *q, handover *h, uint32_t bundle, const char *name, oo_list *issues)
{
    const fj_doc *d = &h->doc;
    const struct document_kind *kind = !strcmp(name, "document") ? &document_kinds[0] : &document_kinds[1];
    size_t before = issues->errors;
    char where[160];
    snprintf(where, sizeof where, "Parameters.parameter[%d].resource",
             name[0] == 'd' ? h->document_index : h->notice_index);
    const pf_registry *guide = q->app->opt.profiles;
    const pf_profile *profile = guide ? pf_find(guide, PROFILE_BASE "handover-document") : NULL;
    const pf_profile *composition = guide ? pf_find(guide, kind->composition_profile) : NULL;
    const pf_profile *patient = guide ? pf_find(guide, PROFILE_BASE "nl-patient") : NULL;
    /* the guide is loaded at start (conformance); without it no handover is accepted */
    if (!profile || !composition || !patient) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, where, 0, 0,
               "the handover profiles are not loaded (the conformance setting names no guide with them)");
        return false;
    }
    uint32_t entries = fj_get(d, bundle, "entry");
    uint32_t count = entries != UINT32_MAX && d->nodes[entries].type == FJ_ARRAY ? d->nodes[entries].len : 0;
    fv_resource_rule *rules = count ? calloc(count, sizeof *rules) : NULL;
    if (count && !rules) {
        oo_add(issues, OO_ERROR, OO_EXCEPTION, where, 0, 0, "out of memory");
        return false;
    }
    size_t n = 0; /* in entry order, so by node */
    for (uint32_t i = 0, e = count ? fj_first_child(entries) : 0; i < count; i++, e = fj_next(d, e)) {
        uint32_t r = d->nodes[e].type == FJ_OBJECT ? fj_get(d, e, "resource") : UINT32_MAX;
        const pf_profile *p = r != UINT32_MAX && d->nodes[r].type == FJ_OBJECT
                                  ? entry_profile(d, r, i, composition, patient)
                                  : NULL;
        if (p)
            rules[n++] = (fv_resource_rule){.node = r, .profile = p};
    }
    fv_options opts = {.profile = profile, .rules = rules, .rule_count = n};
    validate_node(q, d, bundle, &opts, where, issues);
    free(rules);
    return issues->errors == before;
}

/*
 * The Parameters itself, its documents left out (each parameter's resource is skipped: they are checked on
 * their own by check_document, so each is validated once). False with issues at their place.
 */
static bool check_parameters(rq *q, handover *h, oo_list *issues)
{
    const fj_doc *d = &h->doc;
    size_t before = issues->errors;
    uint32_t params = fj_get(d, 0, "parameter");
    uint32_t count = params != UINT32_MAX && d->nodes[params].type == FJ_ARRAY ? d->nodes[params].len : 0;
    fv_resource_rule *skip = count ? calloc(count, sizeof *skip) : NULL;
    if (count && !skip) {
        oo_add(issues, OO_ERROR, "transient", NULL, 0, 0, "out of memory");
        return false;
    }
    size_t n = 0; /* in parameter order, so by node */
    for (uint32_t i = 0, p = count ? fj_first_child(params) : 0; i < count; i++, p = fj_next(d, p)) {
        uint32_t r = d->nodes[p].type == FJ_OBJECT ? fj_get(d, p, "resource") : UINT32_MAX;
        if (r != UINT32_MAX && d->nodes[r].type == FJ_OBJECT)
            skip[n++] = (fv_resource_rule){.node = r, .skip = true};
    }
    fv_options opts = {.rules = skip, .rule_count = n};
    validate_node(q, d, 0, &opts, "Parameters", issues);
    free(skip);
    return issues->errors == before;
}

/* ---- ELV-HANDOVER (docs/handover.md): an ELV receiver has attested handover agreements with the sender's kind ---- */

#define ATTESTATION "https://fhirgw.nl/fhir/StructureDefinition/attestation"
#define REQUIREMENT_SYSTEM "https://fhirgw.nl/fhir/CodeSystem/requirement"

/* Which attested requirement item (rules/packs/<year>/pack.json, rule ELV-HANDOVER) covers which sender. */
static const struct agreement {
    unsigned sender_role; /* AZ_ROLE_* */
    const char *requirement;
    const char *with; /* for messages */
} agreements[] = {
    {AZ_ROLE_HOSPITAL, "elv-overdracht-ziekenhuis", "hospitals"},
    {AZ_ROLE_GP, "elv-overdracht-huisarts", "GPs"},
};

/* The part url of a complex extension ext: its value node (value_key), or UINT32_MAX. */
static uint32_t extension_part(const fj_doc *d, uint32_t ext, const char *url, const char *value_key)
{
    uint32_t parts = fj_get(d, ext, "extension");
    uint32_t p = parts != UINT32_MAX && d->nodes[parts].type == FJ_ARRAY ? parts + 1 : UINT32_MAX;
    for (uint32_t i = 0; p != UINT32_MAX && i < d->nodes[parts].len; i++, p = fj_next(d, p))
        if (str_member_is(d, p, "url", url))
            return fj_get(d, p, value_key);
    return UINT32_MAX;
}

/* The validUntil ("YYYY-MM-DD", "" when none) of the organisation's attestation of requirement; false: none. */
static bool attested(const fj_doc *d, const char *requirement, char until[16])
{
    uint32_t exts = fj_get(d, 0, "extension");
    uint32_t e = exts != UINT32_MAX && d->nodes[exts].type == FJ_ARRAY ? exts + 1 : UINT32_MAX;
    for (uint32_t i = 0; e != UINT32_MAX && i < d->nodes[exts].len; i++, e = fj_next(d, e)) {
        uint32_t coding = str_member_is(d, e, "url", ATTESTATION) ? extension_part(d, e, "requirement", "valueCoding")
                                                                  : UINT32_MAX;
        if (!str_member_is(d, coding, "system", REQUIREMENT_SYSTEM) || !str_member_is(d, coding, "code", requirement))
            continue;
        uint32_t date = extension_part(d, e, "validUntil", "valueDate");
        snprintf(until, 16, "%.*s", date != UINT32_MAX ? (int)d->nodes[date].len : 0,
                 date != UINT32_MAX ? fj_str(d, date) : "");
        return true;
    }
    return false;
}

/*
 * ELV-HANDOVER: an ELV provider takes handovers from a hospital or GP only under an attested agreement with
 * that kind of sender (its directory entry `entry`, as check_receiver has just read it: its attestation
 * extension) that has not lapsed (validUntil, a last valid day, compared with today in UTC). 0 or 422 naming
 * the rule.
 */
static int check_agreement(rq *q, handover *h, const st_resource *entry, const char *expr, oo_list *issues)
{
    const struct agreement *a = NULL;
    for (size_t i = 0; i < sizeof agreements / sizeof *agreements && !a; i++)
        if (q->caller.roles & agreements[i].sender_role)
            a = &agreements[i];
    if (!a)
        return 0; /* the rule covers handovers from hospitals and GPs */
    fj_doc d = {0};
    fj_error perr;
    char *text = strndup(entry->json, entry->json_len), until[16] = "", today[ST_INSTANT_LEN];
    bool found = text && fj_parse(text, entry->json_len, NULL, &d, &perr) && attested(&d, a->requirement, until);
    fj_doc_free(&d);
    free(text);
    st_format_instant(rest_now_ms(q->app), today);
    if (found && (!until[0] || strncmp(until, today, 10) >= 0))
        return 0;
    if (found)
        oo_add(issues, OO_ERROR, "business-rule", expr, 0, 0,
               "ELV-HANDOVER: the agreement of URA %s on the handover of medical policy with %s (%s) lapsed on %s "
               "(CZ ELV); the receiver must renew its attestation",
               h->ura, a->with, a->requirement, until);
    else
        oo_add(issues, OO_ERROR, "business-rule", expr, 0, 0,
               "ELV-HANDOVER: URA %s has no attested agreement on the handover of medical policy with %s (%s, CZ "
               "ELV) in Organization/%s",
               h->ura, a->with, a->requirement, entry->id);
    return 422;
}

/* The receiver: a registered care provider or GP by URA, with its directory entry. 0 or the status with an issue. */
static int check_receiver(rq *q, handover *h, oo_list *issues)
{
    const fj_doc *d = &h->doc;
    uint32_t ident = fj_get(d, h->receiver, "identifier");
    uint32_t value = ident != UINT32_MAX ? fj_get(d, ident, "value") : UINT32_MAX;
    char expr[80];
    snprintf(expr, sizeof expr, "Parameters.parameter[%d].valueReference", h->receiver_index);
    if (!str_member_is(d, ident, "system", URA_SYSTEM) || value == UINT32_MAX || d->nodes[value].len != 8) {
        oo_add(issues, OO_ERROR, "required", expr, 0, 0,
               "receiver names the receiving organisation by its URA: identifier.system " URA_SYSTEM
               " and an 8-digit value");
        return 422;
    }
    snprintf(h->ura, sizeof h->ura, "%.*s", 8, fj_str(d, value));
    const id_entry *org = id_lookup_ura(q->app->opt.organisations, h->ura);
    bool provider = org && (az_parse_roles(org->role) & AZ_CARE_ROLES);
    char id[32];
    snprintf(id, sizeof id, "ura-%s", h->ura);
    /* one read: the entry, its agreements and then the Task's checks (addressing, its owner reference, the
     * notification plan: rq.entry_read) are decided on the same version */
    st_resource *entry = &q->entry_read;
    st_error err;
    st_resource_free(entry);
    st_status read = provider ? st_read(q->app->opt.store, "Organization", id, entry, &err) : ST_NOT_FOUND;
    if (read != ST_OK || !rest_is_directory_entry(q, entry)) {
        st_resource_free(entry); /* a deletion too */
        oo_add(issues, OO_ERROR, OO_PROCESSING, expr, 0, 0,
               "URA %s is not a registered care provider or GP with a directory entry (Organization/%s)", h->ura, id);
        return 422;
    }
    return az_parse_roles(org->role) & AZ_ROLE_ELV ? check_agreement(q, h, entry, expr, issues) : 0;
}

/* Percent-encodes a search value (everything but unreserved characters). */
static void put_query_value(fj_buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_' || c == '~';
        if (plain)
            fj_buf_append(out, (const char *)&c, 1);
        else
            fj_buf_printf(out, "%%%02X", c);
    }
}

/* "identifier=<system>|<value>" of a document Bundle, as a JSON string. */
static void put_if_none_exist(fj_buf *out, const fj_doc *d, uint32_t bundle)
{
    uint32_t ident = fj_get(d, bundle, "identifier");
    uint32_t sys = fj_get(d, ident, "system"), val = fj_get(d, ident, "value");
    fj_buf q = {0};
    fj_buf_puts(&q, "identifier=");
    put_query_value(&q, fj_str(d, sys), d->nodes[sys].len);
    fj_buf_puts(&q, "|");
    put_query_value(&q, fj_str(d, val), d->nodes[val].len);
    size_t len;
    char *text = fj_buf_take(&q, &len);
    fj_buf_string(out, text ? text : "", text ? len : 0);
    free(text);
}

/* A document's entry; its resource a placeholder 0, replaced by the document's own nodes (splice_documents). */
static void put_document_entry(fj_buf *out, const fj_doc *d, uint32_t bundle, const char *uuid)
{
    fj_buf_printf(out, "{\"fullUrl\":\"urn:uuid:%s\",\"resource\":0", uuid);
    fj_buf_puts(out, ",\"request\":{\"method\":\"POST\",\"url\":\"Bundle\",\"ifNoneExist\":");
    put_if_none_exist(out, d, bundle);
    fj_buf_puts(out, "}}");
}

static void put_input(fj_buf *out, const char *system, const char *code, const char *display, const char *uuid)
{
    fj_buf_printf(out,
                  "{\"type\":{\"coding\":[{\"system\":\"%s\",\"code\":\"%s\",\"display\":\"%s\"}]},"
                  "\"valueReference\":{\"reference\":\"urn:uuid:%s\"}}",
                  system, code, display, uuid);
}

/* The transaction's text: the documents (placeholders), then the Task naming them (urn:uuid: names, rewritten by
 * the transaction). */
static char *transaction_skeleton(rq *q, const handover *h, size_t *len)
{
    const fj_doc *d = &h->doc;
    char notice_id[ST_ID_MAX + 1], doc_id[ST_ID_MAX + 1], task_id[ST_ID_MAX + 1], now[ST_INSTANT_LEN];
    rest_new_id(notice_id);
    rest_new_id(doc_id);
    rest_new_id(task_id);
    st_format_instant(rest_now_ms(q->app), now);
    fj_buf out = {0};
    fj_buf_puts(&out, "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[");
    if (h->notice != UINT32_MAX) {
        put_document_entry(&out, d, h->notice, notice_id);
        fj_buf_puts(&out, ",");
    }
    put_document_entry(&out, d, h->document, doc_id);
    fj_buf_printf(&out, ",{\"fullUrl\":\"urn:uuid:%s\",\"resource\":{\"resourceType\":\"Task\",\"identifier\":[",
                  task_id);
    fj_write(d, fj_get(d, h->document, "identifier"), NULL, &out);
    fj_buf_printf(&out,
                  "],\"instantiatesCanonical\":\"" HANDOVER_DEFINITION
                  "\",\"status\":\"%s\",\"intent\":\"order\",\"code\":{\"coding\":[{\"system\":\"" SNOMED
                  "\",\"code\":\"308292007\",\"display\":\"Transfer of care\"}]},\"authoredOn\":\"%s\","
                  "\"requester\":{\"type\":\"Organization\",\"identifier\":{\"system\":\"" URA_SYSTEM
                  "\",\"value\":\"%s\"}},\"owner\":{\"reference\":\"Organization/ura-%s\"},\"input\":[",
                  h->notice != UINT32_MAX ? "requested" : "in-progress", now, q->caller.ura, h->ura);
    if (h->notice != UINT32_MAX) {
        put_input(&out, LOINC, "57830-2", "Advance notice", notice_id);
        fj_buf_puts(&out, ",");
    }
    put_input(&out, SNOMED, "371535009", "Transfer of care summary", doc_id);
    fj_buf_puts(&out, "]},\"request\":{\"method\":\"POST\",\"url\":\"Task\",\"ifNoneExist\":");
    put_if_none_exist(&out, d, h->document);
    fj_buf_puts(&out, "}}]}");
    return fj_buf_take(&out, len);
}

/*
 * The tree of skeleton s with each placeholder ph[i] (in node order) replaced by the subtree src[i] of the
 * request's tree: the documents go into the transaction as they were parsed and validated, not written out
 * and parsed again. Its text is the skeleton's then the request's (the copied nodes' positions shifted past
 * the skeleton). *text (malloc'd) and out->nodes are the caller's; false: out of memory.
 */
static bool splice_documents(const handover *h, const fj_doc *s, const uint32_t *ph, const uint32_t *src, size_t n,
                             char **text, fj_doc *out)
{
    const fj_doc *d = &h->doc;
    size_t count = s->count;
    for (size_t k = 0; k < n; k++)
        count += d->nodes[src[k]].size - 1;
    fj_node *nodes = malloc(count * sizeof *nodes);
    char *t = malloc(s->text_len + d->text_len + 1);
    if (!nodes || !t || count > UINT32_MAX || s->text_len + d->text_len > UINT32_MAX) {
        free(nodes);
        free(t);
        return false;
    }
    memcpy(t, s->text, s->text_len);
    memcpy(t + s->text_len, d->text, d->text_len);
    t[s->text_len + d->text_len] = '\0';
    uint32_t o = 0;
    for (uint32_t i = 0, k = 0; i < s->count; i++) {
        if (k < n && i == ph[k]) {
            const fj_node *from = &d->nodes[src[k++]];
            for (uint32_t j = 0; j < from->size; j++, o++) {
                nodes[o] = from[j];
                nodes[o].pos += (uint32_t)s->text_len;
            }
            continue;
        }
        nodes[o] = s->nodes[i];
        for (size_t m = 0; m < n; m++) /* an ancestor of a placeholder grows by the subtree */
            if (ph[m] > i && ph[m] < i + s->nodes[i].size)
                nodes[o].size += d->nodes[src[m]].size - 1;
        o++;
    }
    *out = (fj_doc){.text = t, .text_len = s->text_len + d->text_len, .nodes = nodes, .count = o, .capacity = o};
    *text = t;
    return true;
}

/* The transaction (text and tree) with the request's documents in it; false: out of memory. */
static bool build_transaction(rq *q, const handover *h, char **text, fj_doc *txn)
{
    size_t len = 0;
    char *skel = transaction_skeleton(q, h, &len);
    fj_doc s = {0};
    fj_error err;
    bool ok = skel && fj_parse(skel, len, NULL, &s, &err);
    uint32_t entries = ok ? fj_get(&s, 0, "entry") : UINT32_MAX;
    uint32_t ph[2] = {UINT32_MAX, UINT32_MAX},
             src[2] = {h->notice != UINT32_MAX ? h->notice : h->document, h->document};
    size_t n = h->notice != UINT32_MAX ? 2 : 1;
    uint32_t e = entries != UINT32_MAX ? fj_first_child(entries) : UINT32_MAX;
    for (size_t k = 0; k < n && e != UINT32_MAX; k++, e = fj_next(&s, e))
        ph[k] = fj_get(&s, e, "resource");
    ok = ok && ph[n - 1] != UINT32_MAX && splice_documents(h, &s, ph, src, n, text, txn);
    fj_doc_free(&s);
    free(skel);
    return ok;
}

/*
 * After the commit: 201 with the new Task as written (kept by the transaction: no read transaction), or 200 with
 * the one an earlier submission made, read now (its receiver may have moved it since).
 */
static void answer_task(rq *q, void *arg, const rest_txn_written *written, size_t count)
{
    (void)arg;
    const rest_txn_written *task = count ? &written[count - 1] : NULL;
    st_resource read = {0};
    st_error err;
    const st_resource *r = task && task->status == 201 ? task->stored : NULL;
    if (!r && task && task->id && st_read(q->app->opt.store, "Task", task->id, &read, &err) == ST_OK)
        r = &read;
    if (!r) {
        st_resource_free(&read); /* a deleted Task's read holds the deletion */
        rq_respond_outcome(q, 500, OO_ERROR, OO_EXCEPTION, NULL, "the handover's Task cannot be read back");
        return;
    }
    /*
     * A 201 answers with the version this request has just written: the sender's create, whose audit entry
     * committed with it, is what it discloses. A read decision on top would be a second entry and a second
     * durable commit before the 201 (with the commit thread's group commit, the larger part of a handover's
     * latency). A resubmission's 200 shows the Task as it is now, which its receiver may have moved: that is a
     * read, decided and recorded as one.
     */
    bool created = r == task->stored;
    if (created || rest_may(q, r, AZ_READ)) {
        rq_set_version_headers(q, "Task", r->id, r->version, r->last_updated_ms, true);
        char *body = strndup(r->json, r->json_len);
        if (body)
            rq_respond_json(q, task->status == 201 ? 201 : 200, body, r->json_len);
        else
            rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
    }
    st_resource_free(&read);
}

/* Parse and check the request; 0 or the status with issues. */
static int read_handover(rq *q, handover *h, oo_list *issues)
{
    const unsigned char *body;
    size_t len;
    if (!rest_json_body(q, &body, &len))
        return -1;
    h->text = malloc(len + 1);
    if (!h->text) {
        oo_add(issues, OO_ERROR, "transient", NULL, 0, 0, "out of memory");
        return 503;
    }
    memcpy(h->text, body, len);
    h->text[len] = '\0';
    fj_error err;
    if (!fj_parse(h->text, len, NULL, &h->doc, &err)) {
        oo_add(issues, OO_FATAL, OO_STRUCTURE, NULL, err.line, err.column, "invalid JSON: %s", err.message);
        return 400;
    }
    if (!check_parameters(q, h, issues))
        return 422;
    if (!read_parameters(h, issues))
        return 422;
    bool documents_ok = check_document(q, h, h->document, "document", issues);
    if (h->notice != UINT32_MAX)
        documents_ok = check_document(q, h, h->notice, "advanceNotice", issues) && documents_ok;
    if (!documents_ok)
        return 422;
    return check_receiver(q, h, issues);
}

bool rest_handover_op(rq *q)
{
    if (rest_decide(q, AZ_CREATE, "Task", NULL, NULL) != AZ_ALLOW ||
        rest_decide(q, AZ_CREATE, "Bundle", NULL, NULL) != AZ_ALLOW) {
        rq_respond_outcome(q, 403, OO_ERROR, "forbidden", NULL, "this organisation may not send handovers");
        return false;
    }
    handover h = {0};
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = read_handover(q, &h, &issues);
    bool handed = false;
    if (status > 0) {
        rq_respond_issues(q, status, &issues);
    } else if (status == 0) {
        char *text = NULL;
        fj_doc txn = {0};
        if (build_transaction(q, &h, &text, &txn))
            /* read_handover validated; the Task (~1 KB) is kept for the answer, the documents are not */
            handed = rest_transaction_run_validated(q, text, &txn, "Task", answer_task, NULL);
        else
            rq_respond_outcome(q, 503, OO_ERROR, "transient", NULL, "out of memory");
    }
    oo_list_free(&issues);
    fj_doc_free(&h.doc);
    free(h.text);
    return handed;
}

/* ---- undeliverable notifications (docs/handover.md "Notifications") ---- */

/* The Task with businessStatus undelivered, naming whom the notification was for (a URA: no personal data). */
static char *marked_task(const st_resource *task, const st_notification *n, size_t *len)
{
    json_object *o = json_tokener_parse(task->json);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    json_object *coding = json_object_new_object();
    json_object_object_add(coding, "system", json_object_new_string(REST_UNDELIVERED_SYSTEM));
    json_object_object_add(coding, "code", json_object_new_string(REST_UNDELIVERED_CODE));
    json_object_object_add(coding, "display", json_object_new_string("Notification not delivered"));
    json_object *codings = json_object_new_array();
    json_object_array_add(codings, coding);
    json_object *status = json_object_new_object();
    json_object_object_add(status, "coding", codings);
    char text[160];
    snprintf(text, sizeof text, "notification %lld to URA %s could not be delivered; it polls instead",
             (long long)n->event_number, n->receiver);
    json_object_object_add(status, "text", json_object_new_string(text));
    json_object_object_add(o, "businessStatus", status);
    const char *json = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = strdup(json);
    *len = copy ? strlen(copy) : 0;
    json_object_put(o);
    return copy;
}

/* One try: the Task as read now, marked, with `mark`, pinned to that version. ST_VERSION_CONFLICT: try again. */
static st_status mark_once(rest_app *app, const st_notification *n, const st_op *mark)
{
    st_resource task;
    st_error err;
    st_status s = st_read(app->opt.store, "Task", n->focus_id, &task, &err);
    if (s != ST_OK) {
        if (s == ST_GONE)
            st_resource_free(&task);
        return s;
    }
    rq q = {0}; /* no HTTP request: the gateway writes as the Task's sender, nothing is answered */
    q.app = app;
    snprintf(q.caller.ura, sizeof q.caller.ura, "%s", task.owner);
    const id_entry *org = id_lookup_ura(app->opt.organisations, task.owner);
    q.caller.roles = org ? az_parse_roles(org->role) : 0;
    rest_write *w = &q.write;
    w->gateway_mark = true;
    w->no_stored = true; /* nothing is answered */
    size_t len = 0;
    char *json = marked_task(&task, n, &len);
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = json ? rest_write_parse(&q, w, json, len, "Task", &issues) : 503;
    free(json);
    snprintf(w->id, sizeof w->id, "%s", task.id);
    if (!status)
        status = rest_write_prepare(&q, w, ST_OP_UPDATE, &task, &issues);
    s = status ? ST_INVALID : ST_OK;
    if (!status) {
        w->op.expected_version = task.version;
        st_op ops[2] = {w->op, *mark};
        s = st_submit_wait(app->opt.store, ops, 2, NULL);
    } else {
        lg_msg(app->opt.log ? app->opt.log : lg_stderr(), LG_ERROR, "Task/%s cannot be marked undelivered: %s", task.id,
               issues.count ? issues.items[0].message : "out of memory");
    }
    oo_list_free(&issues);
    rest_write_free(w);
    st_resource_free(&task);
    return s;
}

bool rest_handover_mark_undelivered(void *arg, const st_notification *n, const st_op *mark)
{
    rest_app *app = arg;
    if (strcmp(n->focus_type, "Task"))
        return false;
    st_status s = ST_VERSION_CONFLICT;
    for (int i = 0; i < 3 && s == ST_VERSION_CONFLICT; i++) /* a status move got in between: read it again */
        s = mark_once(app, n, mark);
    return s == ST_OK;
}
