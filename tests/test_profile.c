/*
 * tests/test_profile.c — profiles, extension definitions and terminology
 * loaded at run time from tests/profiles/: what conforms, what does not and
 * where the validator says so, and how bad conformance resources are refused.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/profile.h"
#include "fhir/validate.h"
#include "gateway/util/files.h"

#define PROFILES_DIR TESTS_DIR "/profiles"
#define T "http://example.org/fhirgw/test/StructureDefinition/"

static pf_registry *registry;

static void load_registry(void)
{
    registry = pf_registry_new(NULL);
    oo_list issues;
    oo_list_init(&issues, 0);
    DIR *d = opendir(PROFILES_DIR);
    cr_assert_not_null(d);
    struct dirent *ent;
    size_t files = 0;
    while ((ent = readdir(d))) {
        if (!strstr(ent->d_name, ".json"))
            continue;
        files++;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", PROFILES_DIR, ent->d_name);
        size_t len;
        char *json = files_read(path, &len);
        cr_assert(pf_registry_add(registry, json, len, ent->d_name, &issues), "%s refused", ent->d_name);
        free(json);
    }
    closedir(d);
    cr_assert_geq(files, 12, "tests/profiles has 12 fixtures; only %zu were found", files);
    cr_assert(pf_registry_finish(registry, &issues));
    cr_assert_eq(issues.count, 0, "loading the test profiles reported %zu issues: %s", issues.count,
                 issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
}

static void free_registry(void)
{
    pf_registry_free(registry);
}

TestSuite(profile, .init = load_registry, .fini = free_registry);

/* Validate json with the registry, and the explicit profile when given. */
static oo_list run_profile(const char *json, const char *profile_url)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    opts.profiles = registry;
    if (profile_url) {
        opts.profile = pf_find(registry, profile_url);
        cr_assert_not_null(opts.profile, "profile %s not loaded", profile_url);
    }
    char *copy = strdup(json);
    fv_validate_buffer(copy, strlen(copy), &opts, &issues);
    free(copy);
    return issues;
}

static bool has_issue(const oo_list *l, oo_severity sev, const char *code, const char *expression)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i].severity == sev && !strcmp(l->items[i].code, code) && l->items[i].expression &&
            !strcmp(l->items[i].expression, expression))
            return true;
    return false;
}

static void dump(const oo_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        char line[2048];
        oo_issue_format(&l->items[i], line, sizeof line);
        cr_log_info("  %s", line);
    }
}

#define EXPECT_CONFORMS(json, profile)                                 \
    do {                                                               \
        oo_list l_ = run_profile(json, profile);                       \
        if (l_.errors)                                                 \
            dump(&l_);                                                 \
        cr_expect_eq(l_.errors, 0, "expected no errors for %s", json); \
        oo_list_free(&l_);                                             \
    } while (0)

#define EXPECT_ONE(json, profile, sev, code, expr)                \
    do {                                                          \
        oo_list l_ = run_profile(json, profile);                  \
        bool found_ = has_issue(&l_, sev, code, expr);            \
        if (!found_ || l_.errors != 1)                            \
            dump(&l_);                                            \
        cr_expect(found_, "expected %s at %s", code, expr);       \
        cr_expect_eq(l_.errors, 1, "expected exactly one error"); \
        oo_list_free(&l_);                                        \
    } while (0)

/* ---- the Dutch identifier slices ---- */

#define BSN "{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"999911120\"}"
#define PATIENT_HEAD "{\"resourceType\":\"Patient\",\"meta\":{\"profile\":[\"" T "nl-patient\"]},"

Test(profile, patient_conforms)
{
    cr_assert_eq(pf_registry_count(registry), 8);
    EXPECT_CONFORMS(PATIENT_HEAD "\"identifier\":[" BSN "],\"gender\":\"female\",\"birthDate\":\"1940-02-01\","
                                 "\"generalPractitioner\":[{\"reference\":\"Practitioner/p1\"}]}",
                    NULL);
    /* open slicing: an identifier of another system is fine */
    EXPECT_CONFORMS(PATIENT_HEAD "\"identifier\":[{\"system\":\"http://example.org/mrn\",\"value\":\"1\"}],"
                                 "\"gender\":\"male\",\"birthDate\":\"1940\"}",
                    NULL);
}

Test(profile, patient_defects)
{
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[" BSN "," BSN "],\"gender\":\"female\",\"birthDate\":\"1940\"}", NULL,
               OO_ERROR, OO_STRUCTURE, "Patient.identifier");
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[" BSN "],\"gender\":\"unknown\",\"birthDate\":\"1940\"}", NULL, OO_ERROR,
               OO_CODE_INVALID, "Patient.gender");
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[" BSN "],\"gender\":\"male\"}", NULL, OO_ERROR, OO_REQUIRED,
               "Patient.birthDate");
    EXPECT_ONE(PATIENT_HEAD "\"gender\":\"male\",\"birthDate\":\"1940\"}", NULL, OO_ERROR, OO_REQUIRED,
               "Patient.identifier");
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[" BSN "],\"gender\":\"male\",\"birthDate\":\"1940\","
                            "\"deceasedDateTime\":\"2020\"}",
               NULL, OO_ERROR, OO_STRUCTURE, "Patient.deceased.ofType(dateTime)");
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[" BSN "],\"gender\":\"male\",\"birthDate\":\"1940\","
                            "\"generalPractitioner\":[{\"reference\":\"Organization/o1\"}]}",
               NULL, OO_ERROR, OO_STRUCTURE, "Patient.generalPractitioner[0].reference");
    /* the profile's own invariant (FHIRPath): a BSN has nine digits */
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":\"12\"}],"
                            "\"gender\":\"male\",\"birthDate\":\"1940\"}",
               NULL, OO_ERROR, OO_INVARIANT, "Patient.identifier[0].value");
    /* the BSN slice requires a value */
    EXPECT_ONE(PATIENT_HEAD "\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\"}],"
                            "\"gender\":\"male\",\"birthDate\":\"1940\"}",
               NULL, OO_ERROR, OO_REQUIRED, "Patient.identifier[0].value");
}

Test(profile, profile_on_profile_inherits_slicing)
{
    const char *no_bsn = "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"http://example.org/mrn\","
                         "\"value\":\"1\"}],\"gender\":\"male\",\"birthDate\":\"1940\"}";
    EXPECT_CONFORMS(no_bsn, T "nl-patient");
    EXPECT_ONE(no_bsn, T "nl-patient-bsn", OO_ERROR, OO_REQUIRED, "Patient.identifier");
}

#define ORG(identifiers)                                                                      \
    "{\"resourceType\":\"Organization\",\"identifier\":[" identifiers "],\"name\":\"ELV A\"," \
    "\"type\":[{\"coding\":[{\"system\":\"http://example.org/fhirgw/test/CodeSystem/care-kind\",\"code\":\"elv\"}]}]}"
#define URA "{\"system\":\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"90000001\"}"
#define AGB "{\"system\":\"http://fhir.nl/fhir/NamingSystem/agb-z\",\"value\":\"12345678\"}"

Test(profile, organization_closed_slicing)
{
    EXPECT_CONFORMS(ORG(URA "," AGB), T "nl-organization");
    EXPECT_ONE(ORG(AGB), T "nl-organization", OO_ERROR, OO_REQUIRED, "Organization.identifier");
    EXPECT_ONE(ORG(URA ",{\"system\":\"http://example.org/x\",\"value\":\"1\"}"), T "nl-organization", OO_ERROR,
               OO_STRUCTURE, "Organization.identifier[1]");
    EXPECT_ONE("{\"resourceType\":\"Organization\",\"identifier\":[" URA "],\"name\":\"X\",\"type\":[{\"coding\":"
               "[{\"system\":\"http://example.org/fhirgw/test/CodeSystem/care-kind\",\"code\":\"pharmacy\"}]}]}",
               T "nl-organization", OO_ERROR, OO_CODE_INVALID, "Organization.type[0]");
    /* the explicit profile applies to the right resource type only */
    EXPECT_ONE("{\"resourceType\":\"Patient\"}", T "nl-organization", OO_ERROR, OO_STRUCTURE, "Patient");
}

Test(profile, practitioner_pattern_discriminator)
{
    const char *big = "{\"resourceType\":\"Practitioner\",\"identifier\":[{\"system\":"
                      "\"http://fhir.nl/fhir/NamingSystem/big\",\"value\":\"12345678901\"}]}";
    const char *uzi_only = "{\"resourceType\":\"Practitioner\",\"identifier\":[{\"system\":"
                           "\"http://fhir.nl/fhir/NamingSystem/uzi-nr-pers\",\"value\":\"123\"}]}";
    EXPECT_CONFORMS(big, T "nl-practitioner");
    EXPECT_ONE(uzi_only, T "nl-practitioner", OO_ERROR, OO_REQUIRED, "Practitioner.identifier");
}

/* ---- extensions ---- */

#define LEAD(practitioner_ref, code)                                                                        \
    "{\"url\":\"" T "gzsp-lead-practitioner\",\"extension\":[{\"url\":\"practitioner\",\"valueReference\":" \
    "{\"reference\":\"" practitioner_ref "\"}},{\"url\":\"qualification\",\"valueCoding\":{\"system\":"     \
    "\"http://fhir.nl/fhir/NamingSystem/uzi-rolcode\",\"code\":\"" code "\"}}]}"
#define DAYPARTS "{\"url\":\"" T "gzsp-dayparts\",\"valuePositiveInt\":4}"
#define CAREPLAN(extensions, intent)                                                                                \
    "{\"resourceType\":\"CarePlan\",\"status\":\"active\",\"intent\":\"" intent "\","                               \
    "\"subject\":{\"reference\":\"Patient/p1\"},\"category\":[{\"coding\":[{\"system\":\"http://snomed.info/sct\"," \
    "\"code\":\"736271009\",\"display\":\"Outpatient care plan\"}]}],\"extension\":[" extensions "]}"

Test(profile, careplan_with_extensions)
{
    EXPECT_CONFORMS(CAREPLAN(DAYPARTS "," LEAD("Practitioner/so1", "01.047"), "plan"), T "gzsp-careplan");
    EXPECT_ONE(CAREPLAN(DAYPARTS "," LEAD("Practitioner/so1", "01.047"), "proposal"), T "gzsp-careplan", OO_ERROR,
               OO_VALUE, "CarePlan.intent");
    EXPECT_ONE(CAREPLAN(LEAD("Practitioner/so1", "01.047"), "plan"), T "gzsp-careplan", OO_ERROR, OO_REQUIRED,
               "CarePlan.extension");
    /* the complex extension is checked against its own definition, once */
    EXPECT_ONE(CAREPLAN(DAYPARTS "," LEAD("Patient/p1", "01.047"), "plan"), T "gzsp-careplan", OO_ERROR, OO_STRUCTURE,
               "CarePlan.extension[1].extension[0].value.ofType(Reference).reference");
    EXPECT_ONE(CAREPLAN(DAYPARTS "," LEAD("Practitioner/so1", "30.000"), "plan"), T "gzsp-careplan", OO_ERROR,
               OO_CODE_INVALID, "CarePlan.extension[1].extension[1].value.ofType(Coding)");
    /* a simple extension with the wrong value type */
    EXPECT_ONE(CAREPLAN("{\"url\":\"" T "gzsp-dayparts\",\"valueString\":\"4\"}," LEAD("Practitioner/so1", "01.047"),
                        "plan"),
               T "gzsp-careplan", OO_ERROR, OO_STRUCTURE, "CarePlan.extension[0].value.ofType(string)");
}

Test(profile, extensions_checked_without_a_profile)
{
    /* Known extension definitions apply wherever the extension appears, even with no profile named. */
    EXPECT_ONE("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"" T
               "nl-nationality\",\"valueString\":\"NL\"}]}",
               NULL, OO_ERROR, OO_STRUCTURE, "Patient.extension[0].value.ofType(string)");
    EXPECT_CONFORMS("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"" T "nl-nationality\","
                    "\"valueCodeableConcept\":{\"text\":\"Dutch\"}}]}",
                    NULL);
    /* and inside Bundle entries, reported once with the entry's path */
    EXPECT_ONE("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":"
               "\"Patient\",\"extension\":[{\"url\":\"" T "nl-nationality\",\"valueString\":\"NL\"}]}}]}",
               NULL, OO_ERROR, OO_STRUCTURE, "Bundle.entry[0].resource.extension[0].value.ofType(string)");
}

Test(profile, unknown_declared_profile_is_a_warning)
{
    oo_list l = run_profile("{\"resourceType\":\"Patient\",\"meta\":{\"profile\":[\"http://example.org/nope\"]}}",
                            NULL);
    cr_expect_eq(l.errors, 0);
    cr_expect(has_issue(&l, OO_WARNING, OO_NOT_FOUND, "Patient.meta.profile[0]"));
    oo_list_free(&l);
}

/* ---- refusing bad conformance resources ---- */

Test(registry, refuses_what_it_cannot_use)
{
    pf_registry *r = pf_registry_new(NULL);
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *not_json = "{";
    cr_expect_not(pf_registry_add(r, not_json, strlen(not_json), "a.json", &issues));
    const char *specialization =
        "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/sd\",\"type\":\"Patient\","
        "\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/DomainResource\","
        "\"derivation\":\"specialization\",\"differential\":{\"element\":[{\"id\":\"Patient\"}]}}";
    cr_expect_not(pf_registry_add(r, specialization, strlen(specialization), "b.json", &issues));
    const char *exists =
        "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/p\",\"type\":\"Patient\","
        "\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/Patient\",\"derivation\":\"constraint\","
        "\"differential\":{\"element\":[{\"id\":\"Patient.identifier\",\"path\":\"Patient.identifier\","
        "\"slicing\":{\"discriminator\":[{\"type\":\"exists\",\"path\":\"value\"}],\"rules\":\"open\"}}]}}";
    cr_expect_not(pf_registry_add(r, exists, strlen(exists), "c.json", &issues),
                  "exists discriminators are unsupported");
    const char *ok =
        "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/q\",\"type\":\"Patient\","
        "\"baseDefinition\":\"http://x/missing-base\",\"derivation\":\"constraint\","
        "\"differential\":{\"element\":[{\"id\":\"Patient.gender\",\"path\":\"Patient.gender\",\"min\":1}]}}";
    cr_expect(pf_registry_add(r, ok, strlen(ok), "d.json", &issues));
    cr_expect_not(pf_registry_add(r, ok, strlen(ok), "e.json", &issues), "duplicate url");
    cr_expect_not(pf_registry_finish(r, &issues), "the base of http://x/q is not loaded");
    cr_expect_geq(issues.errors, 5);
    oo_list_free(&issues);
    pf_registry_free(r);
}

/* ---- what the implementation guide needs: data-type profiles, logical models, richer value sets ---- */

static pf_registry *guide;

#define X_BSN                                                                                              \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/bsn\",\"type\":\"Identifier\","          \
    "\"kind\":\"complex-type\",\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/Identifier\"," \
    "\"derivation\":\"constraint\",\"differential\":{\"element\":["                                        \
    "{\"id\":\"Identifier\",\"path\":\"Identifier\",\"constraint\":[{\"key\":\"fgw-nine\",\"severity\":"   \
    "\"error\",\"human\":\"nine digits\",\"expression\":\"value.matches('^[0-9]{9}$')\"}]},"               \
    "{\"id\":\"Identifier.value\",\"path\":\"Identifier.value\",\"min\":1}]}}"
#define X_PATIENT                                                                                                 \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/patient\",\"type\":\"Patient\","                \
    "\"kind\":\"resource\",\"baseDefinition\":\"http://hl7.org/fhir/StructureDefinition/Patient\","               \
    "\"derivation\":\"constraint\",\"differential\":{\"element\":["                                               \
    "{\"id\":\"Patient.identifier\",\"path\":\"Patient.identifier\",\"slicing\":{\"discriminator\":"              \
    "[{\"type\":\"value\",\"path\":\"system\"}],\"rules\":\"open\"}},"                                            \
    "{\"id\":\"Patient.identifier:bsn\",\"path\":\"Patient.identifier\",\"sliceName\":\"bsn\",\"min\":1,"         \
    "\"max\":\"1\",\"type\":[{\"code\":\"Identifier\",\"profile\":[\"http://x/bsn\"]}]},"                         \
    "{\"id\":\"Patient.identifier:bsn.system\",\"path\":\"Patient.identifier.system\",\"fixedUri\":\"urn:bsn\"}," \
    "{\"id\":\"Patient.identifier:other\",\"path\":\"Patient.identifier\",\"sliceName\":\"other\","               \
    "\"type\":[{\"code\":\"Identifier\",\"profile\":[\"http://x/not-loaded\"]}]},"                                \
    "{\"id\":\"Patient.identifier:other.system\",\"path\":\"Patient.identifier.system\",\"fixedUri\":\"urn:o\"}," \
    "{\"id\":\"Patient.maritalStatus\",\"path\":\"Patient.maritalStatus\",\"binding\":{\"strength\":"             \
    "\"required\",\"valueSet\":\"http://x/vs-union\"},\"constraint\":[{\"key\":\"fgw-member\",\"severity\":"      \
    "\"error\",\"human\":\"in the union\",\"expression\":\"memberOf('http://x/vs-union')\"}]},"                   \
    "{\"id\":\"Patient.generalPractitioner\",\"path\":\"Patient.generalPractitioner\",\"type\":[{\"code\":"       \
    "\"Reference\",\"targetProfile\":[\"http://x/not-loaded-either\"]}]}]}}"
#define X_CODESYSTEM                                                                                  \
    "{\"resourceType\":\"CodeSystem\",\"url\":\"http://x/cs\",\"content\":\"complete\",\"concept\":[" \
    "{\"code\":\"a\",\"concept\":[{\"code\":\"a1\"},{\"code\":\"a2\",\"concept\":[{\"code\":\"a21\"}]}]}]}"
/* a2 and below */
#define X_VS_BRANCH                                                                                        \
    "{\"resourceType\":\"ValueSet\",\"url\":\"http://x/vs-branch\",\"compose\":{\"include\":[{\"system\":" \
    "\"http://x/cs\",\"filter\":[{\"property\":\"concept\",\"op\":\"is-a\",\"value\":\"a2\"}]}]}}"
/* vs-branch, plus a1, minus a21: {a1, a2} */
#define X_VS_UNION                                                                                           \
    "{\"resourceType\":\"ValueSet\",\"url\":\"http://x/vs-union\",\"compose\":{\"include\":["                \
    "{\"valueSet\":[\"http://x/vs-branch\"]},{\"system\":\"http://x/cs\",\"concept\":[{\"code\":\"a1\"}]}]," \
    "\"exclude\":[{\"system\":\"http://x/cs\",\"concept\":[{\"code\":\"a21\"}]}]}}"
#define X_MODEL                                                                                         \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/model\",\"type\":\"http://x/model\"," \
    "\"kind\":\"logical\",\"derivation\":\"specialization\",\"baseDefinition\":"                        \
    "\"http://hl7.org/fhir/StructureDefinition/Element\",\"differential\":{\"element\":["               \
    "{\"id\":\"Model\",\"path\":\"Model\"},{\"id\":\"Model.pseudonym\",\"path\":\"Model.pseudonym\","   \
    "\"min\":1,\"max\":\"1\",\"type\":[{\"code\":\"string\"}]}]}}"

/* a logical model: an insurer-style record whose instances have resourceType "Record" */
#define X_RECORD                                                                                         \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/record\",\"type\":\"Record\","         \
    "\"kind\":\"logical\",\"derivation\":\"specialization\",\"baseDefinition\":"                         \
    "\"http://hl7.org/fhir/StructureDefinition/Element\",\"differential\":{\"element\":["                \
    "{\"id\":\"Record\",\"path\":\"Record\"},"                                                           \
    "{\"id\":\"Record.pseudonym\",\"path\":\"Record.pseudonym\",\"min\":1,\"max\":\"1\","                \
    "\"type\":[{\"code\":\"string\"}]},"                                                                 \
    "{\"id\":\"Record.count\",\"path\":\"Record.count\",\"min\":0,\"max\":\"1\",\"type\":[{\"code\":"    \
    "\"positiveInt\"}]},"                                                                                \
    "{\"id\":\"Record.items\",\"path\":\"Record.items\",\"min\":0,\"max\":\"*\",\"type\":[{\"code\":"    \
    "\"BackboneElement\"}]},"                                                                            \
    "{\"id\":\"Record.items.code\",\"path\":\"Record.items.code\",\"min\":1,\"max\":\"1\",\"type\":"     \
    "[{\"code\":\"code\"}],\"binding\":{\"strength\":\"required\",\"valueSet\":\"http://x/vs-union\"}}," \
    "{\"id\":\"Record.items.when\",\"path\":\"Record.items.when\",\"min\":0,\"max\":\"1\",\"type\":"     \
    "[{\"code\":\"date\"}]}]}}"

/* a profile on the patient profile that restates the bsn slice with its data-type profile */
#define X_PATIENT_DERIVED                                                                                  \
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://x/patient-derived\",\"type\":\"Patient\"," \
    "\"kind\":\"resource\",\"baseDefinition\":\"http://x/patient\",\"derivation\":\"constraint\","         \
    "\"differential\":{\"element\":[{\"id\":\"Patient.identifier:bsn\",\"path\":\"Patient.identifier\","   \
    "\"sliceName\":\"bsn\",\"type\":[{\"code\":\"Identifier\",\"profile\":[\"http://x/bsn\"]}]}]}}"

static void load_guide(void)
{
    guide = pf_registry_new(NULL);
    oo_list issues;
    oo_list_init(&issues, 0);
    const char *resources[] = {X_BSN,      X_PATIENT, X_CODESYSTEM,      X_VS_BRANCH,
                               X_VS_UNION, X_MODEL,   X_PATIENT_DERIVED, X_RECORD};
    for (size_t i = 0; i < sizeof resources / sizeof *resources; i++)
        cr_assert(pf_registry_add(guide, resources[i], strlen(resources[i]), "guide", &issues), "resource %zu", i);
    cr_assert(pf_registry_finish(guide, &issues));
    cr_assert_eq(issues.count, 0, "%s", issues.count ? issues.items[0].message : "");
    oo_list_free(&issues);
}

static void free_guide(void)
{
    pf_registry_free(guide);
}

TestSuite(guide, .init = load_guide, .fini = free_guide);

static oo_list run_guide(const char *json)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    opts.profiles = guide;
    opts.profile = pf_find(guide, "http://x/patient");
    char *copy = strdup(json);
    fv_validate_buffer(copy, strlen(copy), &opts, &issues);
    free(copy);
    return issues;
}

#define GUIDE_PATIENT(bsn, marital)                                                                  \
    "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:bsn\",\"value\":\"" bsn "\"}]," \
    "\"maritalStatus\":{\"coding\":[{\"system\":\"http://x/cs\",\"code\":\"" marital "\"}]}}"

Test(guide, identifier_slice_conforms_to_its_data_type_profile)
{
    oo_list ok = run_guide(GUIDE_PATIENT("999911120", "a1"));
    if (ok.errors)
        dump(&ok);
    cr_expect_eq(ok.errors, 0);
    oo_list_free(&ok);
    oo_list bad = run_guide(GUIDE_PATIENT("12345", "a1"));
    cr_expect(has_issue(&bad, OO_ERROR, OO_INVARIANT, "Patient.identifier[0]"), "the Identifier profile's invariant");
    cr_expect_eq(bad.errors, 1);
    for (size_t i = 0; i < bad.count; i++)
        if (bad.items[i].severity == OO_ERROR)
            cr_expect(strstr(bad.items[i].message, "fgw-nine") && strstr(bad.items[i].message, "http://x/bsn"),
                      "names the key and the data-type profile: %s", bad.items[i].message);
    oo_list_free(&bad);
}

Test(guide, unknown_data_type_profile_is_a_warning)
{
    oo_list l = run_guide("{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:bsn\",\"value\":"
                          "\"999911120\"},{\"system\":\"urn:o\",\"value\":\"x\"}]}");
    cr_expect_eq(l.errors, 0);
    cr_expect(has_issue(&l, OO_WARNING, OO_NOT_FOUND, "Patient.identifier[1]"), "http://x/not-loaded not checked");
    oo_list_free(&l);
}

Test(guide, value_sets_by_filter_inclusion_and_exclusion)
{
    const char *in[] = {"a1", "a2"}, *out[] = {"a", "a21"};
    for (size_t i = 0; i < 2; i++) {
        char json[512];
        snprintf(json, sizeof json, GUIDE_PATIENT("999911120", "%s"), in[i]);
        oo_list l = run_guide(json);
        cr_expect_eq(l.errors, 0, "%s is in the union", in[i]);
        oo_list_free(&l);
        snprintf(json, sizeof json, GUIDE_PATIENT("999911120", "%s"), out[i]);
        l = run_guide(json);
        cr_expect_eq(l.errors, 2, "%s is not in the union: the binding and memberOf() in an invariant", out[i]);
        cr_expect(has_issue(&l, OO_ERROR, OO_INVARIANT, "Patient.maritalStatus"), "memberOf sees the registry");
        oo_list_free(&l);
    }
}

Test(guide, logical_models_are_held_not_used_as_profiles)
{
    cr_expect_eq(pf_logical_count(guide), 2);
    const pf_logical *m = pf_find_logical(guide, "http://x/model|2026.1.0");
    cr_assert_not_null(m);
    cr_expect_str_eq(pf_logical_url(m), "http://x/model");
    cr_expect_null(pf_find(guide, "http://x/model"), "a logical model is not a profile");
    oo_list issues;
    oo_list_init(&issues, 0);
    cr_expect_not(pf_registry_add(guide, X_MODEL, strlen(X_MODEL), "again", &issues), "duplicate url");
    oo_list_free(&issues);
}

Test(guide, unknown_target_profile_is_a_warning_not_a_false_error)
{
    oo_list l = run_guide("{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:bsn\",\"value\":"
                          "\"999911120\"}],\"generalPractitioner\":[{\"reference\":\"Practitioner/p1\"}]}");
    cr_expect_eq(l.errors, 0);
    cr_expect(has_issue(&l, OO_WARNING, OO_NOT_FOUND, "Patient.generalPractitioner[0]"), "not checked, said so");
    oo_list_free(&l);
}

Test(guide, a_restated_slice_reports_its_data_type_profile_once)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    opts.profiles = guide;
    opts.profile = pf_find(guide, "http://x/patient-derived");
    cr_assert_not_null(opts.profile);
    char json[] = GUIDE_PATIENT("12345", "a1");
    fv_validate_buffer(json, strlen(json), &opts, &issues);
    cr_expect_eq(issues.errors, 1, "base and derived profile both reach http://x/bsn: one error, not two");
    cr_expect(has_issue(&issues, OO_ERROR, OO_INVARIANT, "Patient.identifier[0]"));
    oo_list_free(&issues);
}

/* ---- instances of logical models validate like resources ---- */

static oo_list run_record(const char *json)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    fv_options opts = {0};
    opts.profiles = guide;
    char *copy = strdup(json);
    fv_validate_buffer(copy, strlen(copy), &opts, &issues);
    free(copy);
    return issues;
}

#define RECORD_OK                                                                                  \
    "{\"resourceType\":\"Record\",\"pseudonym\":\"ab12\",\"count\":3,\"items\":[{\"code\":\"a1\"," \
    "\"when\":\"2026-02-28\"},{\"code\":\"a2\"}]}"

Test(guide, logical_model_instance_conforms)
{
    oo_list l = run_record(RECORD_OK);
    if (l.errors)
        dump(&l);
    cr_expect_eq(l.errors, 0);
    oo_list_free(&l);
}

Test(guide, logical_model_instance_defects_at_their_location)
{
    struct {
        const char *json, *code, *expression;
    } cases[] = {
        {"{\"resourceType\":\"Record\"}", OO_REQUIRED, "Record.pseudonym"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"bsn\":\"999911120\"}", OO_STRUCTURE, "Record.bsn"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"items\":{\"code\":\"a1\"}}", OO_STRUCTURE, "Record.items"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":[\"x\"]}", OO_STRUCTURE, "Record.pseudonym"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"items\":[{\"code\":\"a21\"}]}", OO_CODE_INVALID,
         "Record.items[0].code"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"items\":[{\"code\":\"a1\",\"when\":\"2026-02-30\"}]}",
         OO_VALUE, "Record.items[0].when"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"items\":[{}]}", OO_REQUIRED, "Record.items[0].code"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"count\":\"3\"}", OO_STRUCTURE, "Record.count"},
        {"{\"resourceType\":\"Record\",\"pseudonym\":\"x\",\"count\":0}", OO_VALUE, "Record.count"},
        {"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":"
         "\"Record\"}}]}",
         OO_REQUIRED, "Bundle.entry[0].resource.pseudonym"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        oo_list l = run_record(cases[i].json);
        bool found = has_issue(&l, OO_ERROR, cases[i].code, cases[i].expression);
        if (!found)
            dump(&l);
        cr_expect(found, "case %zu: expected %s at %s", i, cases[i].code, cases[i].expression);
        oo_list_free(&l);
    }
}

Test(guide, logical_model_unknown_without_the_registry)
{
    oo_list issues;
    oo_list_init(&issues, 0);
    char json[] = RECORD_OK;
    fv_validate_buffer(json, strlen(json), NULL, &issues);
    cr_expect(has_issue(&issues, OO_ERROR, OO_STRUCTURE, "resourceType"), "unknown resourceType without the model");
    oo_list_free(&issues);
}

/* ---- a subset of the invariants (pf_check_invariants) ---- */

/* pf_validate's invariant issues whose message starts with one of keys ("KEY: ..."). */
static size_t keyed_issues(const oo_list *l, const char *const *keys, size_t n, const oo_issue **out, size_t max)
{
    size_t found = 0;
    for (size_t i = 0; i < l->count; i++)
        for (size_t k = 0; k < n; k++) {
            size_t len = strlen(keys[k]);
            const char *m = l->items[i].message;
            if (!strcmp(l->items[i].code, OO_INVARIANT) && m && !strncmp(m, keys[k], len) && m[len] == ':' &&
                found < max)
                out[found++] = &l->items[i];
        }
    return found;
}

/*
 * The chosen invariants of profile url over json: the same issues (severity,
 * code, location, message) as the invariant issues of pf_validate with those
 * keys, and nothing else. Returns how many there were.
 */
static size_t expect_same_as_validate(const char *url, const char *json, const char *const *keys, size_t n)
{
    const pf_profile *p = pf_find(guide, url);
    cr_assert_not_null(p);
    char *copy = strdup(json);
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(copy, strlen(copy), NULL, &doc, &e));
    oo_list all, some;
    oo_list_init(&all, 0);
    oo_list_init(&some, 0);
    pf_validate(guide, p, &doc, 0, "", &all);
    pf_invariants *s = pf_invariants_new(guide, p, keys, n);
    cr_assert_not_null(s);
    pf_check_invariants(s, &doc, 0, "", &some);
    const oo_issue *want[16];
    size_t count = keyed_issues(&all, keys, n, want, 16);
    if (some.count != count) {
        dump(&all);
        dump(&some);
    }
    cr_expect_eq(some.count, count, "%s: %zu issues, pf_validate has %zu with those keys", json, some.count, count);
    for (size_t i = 0; i < count && i < some.count; i++) {
        const oo_issue *a = want[i], *b = &some.items[i];
        cr_expect_eq(a->severity, b->severity);
        cr_expect_str_eq(a->code, b->code);
        cr_expect_str_eq(a->expression ? a->expression : "", b->expression ? b->expression : "");
        cr_expect_str_eq(a->message, b->message);
    }
    pf_invariants_free(s);
    oo_list_free(&all);
    oo_list_free(&some);
    fj_doc_free(&doc);
    free(copy);
    return count;
}

Test(guide, chosen_invariants_report_what_validation_reports_for_them)
{
    const char *nine[] = {"fgw-nine"}, *member[] = {"fgw-member"}, *both[] = {"fgw-member", "fgw-nine"};
    /* in a data-type profile of a slice: reached through the slicing */
    cr_expect_eq(expect_same_as_validate("http://x/patient", GUIDE_PATIENT("12345", "a1"), nine, 1), 1);
    cr_expect_eq(expect_same_as_validate("http://x/patient", GUIDE_PATIENT("999911120", "a1"), nine, 1), 0);
    /* the derived profile restates the slice: still once */
    cr_expect_eq(expect_same_as_validate("http://x/patient-derived", GUIDE_PATIENT("12345", "a1"), nine, 1), 1);
    /* on an element of the resource, with memberOf against the registry */
    cr_expect_eq(expect_same_as_validate("http://x/patient", GUIDE_PATIENT("999911120", "a21"), member, 1), 1);
    cr_expect_eq(expect_same_as_validate("http://x/patient", GUIDE_PATIENT("12345", "a21"), both, 2), 2);
    cr_expect_eq(expect_same_as_validate("http://x/patient", GUIDE_PATIENT("12345", "a21"), member, 1), 1,
                 "the other key is not evaluated");
}

Test(guide, chosen_invariants_leave_the_rest_of_the_profile_alone)
{
    const pf_profile *p = pf_find(guide, "http://x/patient");
    const char *keys[] = {"fgw-nine", "no-such-key"};
    pf_invariants *s = pf_invariants_new(guide, p, keys, 2);
    cr_assert_not_null(s);
    cr_expect_eq(pf_invariants_count(s), 1, "the unknown key is ignored");
    /* no identifier: the bsn slice's minimum is broken, which is not an invariant */
    char json[] = "{\"resourceType\":\"Patient\",\"maritalStatus\":{\"coding\":[{\"system\":\"http://x/cs\","
                  "\"code\":\"a21\"}]}}";
    fj_doc doc;
    fj_error e;
    cr_assert(fj_parse(json, strlen(json), NULL, &doc, &e));
    oo_list l;
    oo_list_init(&l, 0);
    cr_expect_eq(pf_check_invariants(s, &doc, 0, "", &l), 0);
    cr_expect_eq(l.count, 0, "neither cardinality, the binding nor the other invariant");
    oo_list_free(&l);
    oo_list_init(&l, 0);
    cr_expect_geq(pf_validate(guide, p, &doc, 0, "", &l), 2, "while validation finds them");
    oo_list_free(&l);
    fj_doc_free(&doc);
    pf_invariants_free(s);
}
