/*
 * tests/test_route.c — FHIR URL routing, header parsing and the config file.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/util/config.h"
#include "gateway/rest/route.h"

static rt_route route(const char *method, const char *path)
{
    rt_route r;
    rt_parse(fs_r4(), method, path, &r);
    return r;
}

Test(route, interactions)
{
    struct {
        const char *method, *path;
        rt_interaction want;
        const char *type, *id, *version, *op;
    } cases[] = {
        {"GET", "/metadata", RT_CAPABILITIES, NULL, "", "", ""},
        {"GET", "/CarePlan/cp-1", RT_READ, "CarePlan", "cp-1", "", ""},
        {"HEAD", "/CarePlan/cp-1", RT_READ, "CarePlan", "cp-1", "", ""}, /* HEAD: wherever GET is */
        {"HEAD", "/metadata", RT_CAPABILITIES, NULL, "", "", ""},
        {"HEAD", "/CarePlan/cp-1/_history/3", RT_VREAD, "CarePlan", "cp-1", "3", ""},
        {"HEAD", "/Encounter", RT_SEARCH, "Encounter", "", "", ""},
        {"HEAD", "/_history", RT_HISTORY_SYSTEM, NULL, "", "", ""},
        {"GET", "/CarePlan/cp-1/_history/3", RT_VREAD, "CarePlan", "cp-1", "3", ""},
        {"PUT", "/Task/t.1", RT_UPDATE, "Task", "t.1", "", ""},
        {"DELETE", "/Task/t1", RT_DELETE, "Task", "t1", "", ""},
        {"PUT", "/Task", RT_UPDATE, "Task", "", "", ""},    /* conditional update */
        {"DELETE", "/Task", RT_DELETE, "Task", "", "", ""}, /* conditional delete */
        {"PATCH", "/Task/t1", RT_PATCH, "Task", "t1", "", ""},
        {"PATCH", "/Task", RT_PATCH, "Task", "", "", ""},
        {"POST", "/Encounter", RT_CREATE, "Encounter", "", "", ""},
        {"GET", "/Encounter", RT_SEARCH, "Encounter", "", "", ""},
        {"POST", "/Encounter/_search", RT_SEARCH, "Encounter", "", "", ""},
        {"GET", "/Encounter/e1/_history", RT_HISTORY_INSTANCE, "Encounter", "e1", "", ""},
        {"GET", "/Encounter/_history", RT_HISTORY_TYPE, "Encounter", "", "", ""},
        {"GET", "/_history", RT_HISTORY_SYSTEM, NULL, "", "", ""},
        {"POST", "/", RT_BATCH, NULL, "", "", ""},
        {"POST", "", RT_BATCH, NULL, "", "", ""},
        {"POST", "/CarePlan/$validate", RT_OPERATION, "CarePlan", "", "", "validate"},
        {"POST", "/CarePlan/cp-1/$validate", RT_OPERATION, "CarePlan", "cp-1", "", "validate"},
        /* any name is routed, at every level: the REST layer's table says which exist */
        {"POST", "/$gzsp-check", RT_OPERATION, NULL, "", "", "gzsp-check"},
        {"GET", "/Task/t1/$handover", RT_OPERATION, "Task", "t1", "", "handover"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rt_route r = route(cases[i].method, cases[i].path);
        cr_expect_eq(r.interaction, cases[i].want, "%s %s: got %s", cases[i].method, cases[i].path,
                     rt_name(r.interaction));
        if (cases[i].type)
            cr_expect(r.type && !strcmp(r.type->name, cases[i].type), "%s: type", cases[i].path);
        else
            cr_expect_null(r.type);
        cr_expect_str_eq(r.id, cases[i].id);
        cr_expect_str_eq(r.version, cases[i].version);
        cr_expect_str_eq(r.operation, cases[i].op);
    }
}

/* Issue 9: an operation name too long to keep is kept cut, visibly, and so matches no operation. */
Test(route, a_long_operation_name_is_cut_visibly)
{
    char path[200] = "/Patient/$";
    memset(path + 10, 'o', 150);
    path[160] = '\0';
    rt_route r = route("POST", path);
    cr_expect_eq(r.interaction, RT_OPERATION);
    cr_expect_lt(strlen(r.operation), sizeof r.operation);
    cr_expect_not_null(strstr(r.operation, "\u2026"), "%s", r.operation);
    r = route("POST", "/Patient/$validate");
    cr_expect_str_eq(r.operation, "validate");
}

Test(route, errors_carry_their_status)
{
    struct {
        const char *method, *path;
        int status;
    } cases[] = {
        {"GET", "/Careplan/1", 404},       /* unknown type (case matters) */
        {"GET", "/DomainResource/1", 404}, /* abstract */
        {"GET", "/HumanName", 404},        /* a data type, not a resource */
        {"GET", "/CarePlan/bad_id!", 400},
        {"GET",
         "/CarePlan/"
         "01234567890123456789012345678901234567890123456789012345678901234",
         400}, /* 65 chars */
        {"POST", "/CarePlan/1", 405},
        {"OPTIONS", "/CarePlan", 405},
        {"PUT", "/metadata", 405},
        {"GET", "/", 405},
        {"GET", "/CarePlan/1/foo", 404},
        {"GET", "/CarePlan/1/_history/x_y", 400},
        {"GET", "/a/b/c/d/e/f/g", 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rt_route r = route(cases[i].method, cases[i].path);
        cr_expect_eq(r.interaction, RT_UNKNOWN, "%s %s", cases[i].method, cases[i].path);
        cr_expect_eq(r.error_status, cases[i].status, "%s %s: got %d", cases[i].method, cases[i].path, r.error_status);
        if (cases[i].status == 405)
            cr_expect(r.allow && *r.allow, "%s %s: a 405 says what is allowed", cases[i].method, cases[i].path);
        cr_expect_not_null(r.error);
    }
}

Test(route, negotiation)
{
    cr_expect_eq(rt_negotiate(NULL, NULL), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate(NULL, "application/fhir+json"), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate(NULL, "application/fhir+json; fhirVersion=4.0"), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate(NULL, "text/html, application/json;q=0.9"), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate(NULL, "*/*"), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate(NULL, "application/fhir+xml"), RT_FORMAT_UNSUPPORTED);
    cr_expect_eq(rt_negotiate("xml", "application/fhir+json"), RT_FORMAT_UNSUPPORTED, "_format wins");
    cr_expect_eq(rt_negotiate("json", "application/fhir+xml"), RT_FORMAT_JSON);
    cr_expect_eq(rt_negotiate("application/fhir+json", NULL), RT_FORMAT_JSON);
    cr_expect(rt_content_type_ok("application/fhir+json; charset=utf-8"));
    cr_expect(rt_content_type_ok("application/json"));
    cr_expect_not(rt_content_type_ok("application/fhir+xml"));
    cr_expect_not(rt_content_type_ok("text/plain"));
    cr_expect_not(rt_content_type_ok(NULL));
}

Test(route, prefer_and_etags)
{
    cr_expect_eq(rt_prefer_return(NULL), RT_RETURN_REPRESENTATION);
    cr_expect_eq(rt_prefer_return("return=minimal"), RT_RETURN_MINIMAL);
    cr_expect_eq(rt_prefer_return("handling=strict, return=OperationOutcome"), RT_RETURN_OUTCOME);
    cr_expect_eq(rt_prefer_return("return=representation"), RT_RETURN_REPRESENTATION);
    int64_t v = -1;
    cr_expect(rt_etag_version("W/\"3\"", &v));
    cr_expect_eq(v, 3);
    cr_expect(rt_etag_version("\"12\"", &v));
    cr_expect_eq(v, 12);
    cr_expect(rt_etag_version("W/\"0\"", &v), "well-formed; matches no version");
    cr_expect_eq(v, 0);
    /* issue 7 defect 9: anything but a quoted version number is malformed */
    const char *bad[] = {"7",          "W/\"\"",   "W/\"a b\"", "W/\"abc\"",
                         "W/\"1abc\"", "W/\"-1\"", "W/\"1",     "W/\"99999999999999999999\"",
                         "*",          ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_expect_not(rt_etag_version(bad[i], &v), "%s", bad[i]);
    cr_expect_not(rt_etag_version(NULL, &v));
}

Test(route, echo_is_capped)
{
    char out[RT_ECHO_SIZE], long_id[10001];
    cr_expect_str_eq(rt_echo("/Patient/1", out), "/Patient/1");
    cr_expect_str_eq(rt_echo(NULL, out), "");
    memset(long_id, 'a', 10000);
    long_id[10000] = '\0';
    rt_echo(long_id, out);
    cr_expect_eq(strlen(out), RT_ECHO_MAX + strlen("\u2026"));
    cr_expect_str_eq(out + RT_ECHO_MAX, "\u2026");
    /* never half a character: a 2-byte 'é' across the cut is dropped whole */
    memset(long_id, 'a', 63);
    memcpy(long_id + 63, "\xc3\xa9zzz", 6);
    rt_echo(long_id, out);
    cr_expect_str_eq(out + 63, "\u2026", "%s", out);
}

Test(config, defaults_load_and_errors)
{
    gw_config c;
    cfg_defaults(&c);
    cr_expect_str_eq(c.listen, "127.0.0.1:8443");
    cr_expect_eq(c.max_body_bytes, 16 * 1024 * 1024);
    cr_expect_eq(c.request_timeout_ms, 30000);
    cr_expect_eq(c.max_inflight_bytes, 256 * 1024 * 1024);

    char path[] = "/tmp/fhirgw-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("# a comment\n\nlisten 0.0.0.0:443   # trailing comment\nmax_body_bytes 2m\nidle_timeout_ms 5s\n"
          "conformance\n",
          f);
    fclose(f);
    char err[256];
    cr_assert(cfg_load(&c, path, err, sizeof err), "%s", err);
    cr_expect_str_eq(c.listen, "0.0.0.0:443");
    cr_expect_eq(c.max_body_bytes, 2 * 1024 * 1024);
    cr_expect_eq(c.idle_timeout_ms, 5000);
    cr_expect_str_eq(c.conformance, "");

    f = fopen(path, "w");
    fputs("listen 1.2.3.4:1\nmax_body_byte 2m\n", f);
    fclose(f);
    cr_expect_not(cfg_load(&c, path, err, sizeof err));
    cr_expect_not_null(strstr(err, ":2: unknown setting 'max_body_byte'"), "%s", err);
    f = fopen(path, "w");
    fputs("workers many\n", f);
    fclose(f);
    cr_expect_not(cfg_load(&c, path, err, sizeof err));
    cr_expect_not_null(strstr(err, ":1: workers: 'many' is not a number"), "%s", err);

    /* the printed configuration is itself a valid config file that round-trips */
    gw_config printed;
    cfg_defaults(&printed);
    cr_assert(cfg_set(&printed, "rate_limit_per_second", "7", err, sizeof err));
    f = fopen(path, "w");
    cfg_print(&printed, f);
    fclose(f);
    gw_config reread;
    cfg_defaults(&reread);
    cr_assert(cfg_load(&reread, path, err, sizeof err), "%s", err);
    cr_expect_eq(memcmp(&printed, &reread, sizeof printed), 0);
    unlink(path);
}
