/*
 * tests/handover_body.c — see handover_body.h.
 */
#include "tests/handover_body.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URA_HOSPITAL_A "90000101"

void hb_document(char *out, size_t size, const char *ident, const char *system, const char *code)
{
    snprintf(out, size,
             "{\"resourceType\":\"Bundle\",\"identifier\":{\"system\":\"" HB_IDENT_SYSTEM
             "\",\"value\":\"urn:uuid:%s\"},"
             "\"type\":\"document\",\"timestamp\":\"2026-01-05T10:00:00+01:00\",\"entry\":["
             "{\"fullUrl\":\"urn:uuid:6b1f6a39-0d4c-4c5b-9f7e-1a2b3c4d5e01\",\"resource\":{\"resourceType\":"
             "\"Composition\",\"status\":\"final\",\"type\":{\"coding\":[{\"system\":\"%s\",\"code\":\"%s\"}]},"
             "\"subject\":{\"reference\":\"urn:uuid:6b1f6a39-0d4c-4c5b-9f7e-1a2b3c4d5e02\"},"
             "\"date\":\"2026-01-05T10:00:00+01:00\",\"author\":[{\"type\":\"Organization\",\"identifier\":"
             "{\"system\":\"" HB_URA_SYSTEM "\",\"value\":\"" URA_HOSPITAL_A
             "\"}}],\"title\":\"Overdracht medisch beleid\","
             "\"section\":[{\"title\":\"Medisch beleid\",\"code\":{\"coding\":[{\"system\":\"http://snomed.info/sct\","
             "\"code\":\"773130005\"}]},\"text\":{\"status\":\"generated\",\"div\":\"<div "
             "xmlns=\\\"http://www.w3.org/1999/xhtml\\\">Beleid voor " HB_SECRET "</div>\"}}]}},"
             "{\"fullUrl\":\"urn:uuid:6b1f6a39-0d4c-4c5b-9f7e-1a2b3c4d5e02\",\"resource\":{\"resourceType\":"
             "\"Patient\",\"name\":[{\"family\":\"" HB_SECRET "\"}]}}]}",
             ident, system, code);
}

char *hb_parameters(const char *ident, const char *notice_ident, const char *receiver_ura)
{
    size_t size = 16384;
    char *out = malloc(size), doc[6000], notice[6000];
    if (!out)
        return NULL;
    hb_document(doc, sizeof doc, ident, "http://snomed.info/sct", "371535009");
    if (notice_ident)
        hb_document(notice, sizeof notice, notice_ident, "http://loinc.org", "57830-2");
    snprintf(out, size,
             "{\"resourceType\":\"Parameters\",\"parameter\":[%s%s%s{\"name\":\"document\",\"resource\":%s},"
             "{\"name\":\"receiver\",\"valueReference\":{\"identifier\":{\"system\":\"" HB_URA_SYSTEM
             "\",\"value\":\"%s\"}}}]}",
             notice_ident ? "{\"name\":\"advanceNotice\",\"resource\":" : "", notice_ident ? notice : "",
             notice_ident ? "}," : "", doc, receiver_ura);
    return out;
}

static json_object *attestation(const char *requirement, const char *until)
{
    char text[640];
    snprintf(text, sizeof text,
             "{\"url\":\"https://fhirgw.nl/fhir/StructureDefinition/attestation\",\"extension\":["
             "{\"url\":\"requirement\",\"valueCoding\":{\"system\":\"https://fhirgw.nl/fhir/CodeSystem/"
             "requirement\",\"code\":\"%s\"}},{\"url\":\"validUntil\",\"valueDate\":\"%s\"}]}",
             requirement, until);
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
