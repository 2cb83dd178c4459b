/*
 * tests/handover_body.c — see handover_body.h.
 */
#include "tests/handover_body.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The guide's example of the document (ig/examples), as sent: no id (the gateway gives one). NULL when unreadable. */
static json_object *example(bool notice)
{
    char path[512];
    snprintf(path, sizeof path, "%s/../ig/examples/Bundle-%s-document-example.json", TESTS_DIR,
             notice ? "advance-notice" : "handover");
    json_object *doc = json_object_from_file(path);
    if (doc)
        json_object_object_del(doc, "id");
    return doc;
}

void hb_document(char *out, size_t size, const char *ident, const char *system, const char *code)
{
    json_object *doc = example(!strcmp(code, "57830-2"));
    out[0] = '\0';
    if (!doc)
        return;
    char value[128];
    snprintf(value, sizeof value, "urn:uuid:%s", ident);
    json_object_object_add(json_object_object_get(doc, "identifier"), "value", json_object_new_string(value));
    json_object *composition =
        json_object_object_get(json_object_array_get_idx(json_object_object_get(doc, "entry"), 0), "resource");
    json_object *coding =
        json_object_array_get_idx(json_object_object_get(json_object_object_get(composition, "type"), "coding"), 0);
    json_object_object_add(coding, "system", json_object_new_string(system));
    json_object_object_add(coding, "code", json_object_new_string(code));
    snprintf(out, size, "%s",
             json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(doc);
}

char *hb_parameters(const char *ident, const char *notice_ident, const char *receiver_ura)
{
    size_t size = 3 * HB_DOCUMENT_MAX;
    char *out = malloc(size), *doc = malloc(HB_DOCUMENT_MAX), *notice = malloc(HB_DOCUMENT_MAX);
    if (!out || !doc || !notice) {
        free(out), free(doc), free(notice);
        return NULL;
    }
    hb_document(doc, HB_DOCUMENT_MAX, ident, "http://snomed.info/sct", "371535009");
    if (notice_ident)
        hb_document(notice, HB_DOCUMENT_MAX, notice_ident, "http://loinc.org", "57830-2");
    snprintf(out, size,
             "{\"resourceType\":\"Parameters\",\"parameter\":[%s%s%s{\"name\":\"document\",\"resource\":%s},"
             "{\"name\":\"receiver\",\"valueReference\":{\"identifier\":{\"system\":\"" HB_URA_SYSTEM
             "\",\"value\":\"%s\"}}}]}",
             notice_ident ? "{\"name\":\"advanceNotice\",\"resource\":" : "", notice_ident ? notice : "",
             notice_ident ? "}," : "", doc, receiver_ura);
    free(doc);
    free(notice);
    return out;
}

static json_object *attestation(const char *requirement, const char *until)
{
    char text[768];
    snprintf(text, sizeof text,
             "{\"url\":\"https://fhirgw.nl/fhir/StructureDefinition/attestation\",\"extension\":["
             "{\"url\":\"requirement\",\"valueCoding\":{\"system\":\"https://fhirgw.nl/fhir/CodeSystem/"
             "requirement\",\"code\":\"%s\"}},{\"url\":\"evidence\",\"valueUrl\":\"https://documenten.elv.example/"
             "%s.pdf\"},{\"url\":\"validUntil\",\"valueDate\":\"%s\"}]}",
             requirement, requirement, until);
    return json_tokener_parse(text);
}

char *hb_with_agreements(const char *organization, const char *until)
{
    json_object *org = json_tokener_parse(organization);
    if (!org)
        return NULL;
    json_object_object_del(org, "meta");
    json_object *exts = json_object_new_array();
    json_object_array_add(exts, attestation("elv-overdracht-ziekenhuis", until));
    json_object_array_add(exts, attestation("elv-overdracht-huisarts", until));
    json_object_object_add(org, "extension", exts);
    char *text = strdup(json_object_to_json_string_ext(org, JSON_C_TO_STRING_PLAIN));
    json_object_put(org);
    return text;
}
