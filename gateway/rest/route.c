/*
 * gateway/rest/route.c — FHIR RESTful URLs and headers (see route.h).
 */
#define _GNU_SOURCE /* timegm, strptime */
#include "gateway/rest/route.h"

#include "fhir/datetime.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SEGMENTS 6

bool rt_valid_id(const char *id, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!isalnum((unsigned char)c) && c != '-' && c != '.')
            return false;
    }
    return true;
}

const char *rt_name(rt_interaction i)
{
    static const char *const names[] = {"unknown",          "capabilities", "read",           "vread",
                                        "update",           "delete",       "create",         "search-type",
                                        "history-instance", "history-type", "history-system", "batch",
                                        "operation",        "patch",        "insurer"};
    return names[i];
}

/* Split "/a/b/c" into segments; false if there are too many or one is empty. */
static size_t split(const char *path, const char *seg[MAX_SEGMENTS], size_t len[MAX_SEGMENTS], bool *overflow)
{
    size_t n = 0;
    *overflow = false;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        if (n == MAX_SEGMENTS) {
            *overflow = true;
            return n;
        }
        size_t l = strcspn(p, "/");
        seg[n] = p;
        len[n++] = l;
        p += l;
        if (*p == '/')
            p++;
    }
    return n;
}

const char *rt_echo(const char *s, char out[RT_ECHO_SIZE])
{
    size_t n = s ? strlen(s) : 0;
    if (n <= RT_ECHO_MAX) {
        memcpy(out, s ? s : "", n + 1);
        return out;
    }
    n = RT_ECHO_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--; /* s[n] continues a character: cut before the character */
    memcpy(out, s, n);
    memcpy(out + n, "\u2026", sizeof "\u2026");
    return out;
}

static bool seg_is(const char *seg, size_t len, const char *word)
{
    return strlen(word) == len && !memcmp(seg, word, len);
}

static void fail(rt_route *r, int status, const char *why)
{
    r->interaction = RT_UNKNOWN;
    r->error_status = status;
    r->error = why;
}

/* 405: the methods the path does accept, for the Allow header */
static void not_allowed(rt_route *r, const char *allow, const char *why)
{
    fail(r, 405, why);
    r->allow = allow;
}

static bool copy_id(char dst[65], const char *src, size_t len)
{
    if (!rt_valid_id(src, len))
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

/*
 * "$name" -> RT_OPERATION "name". A name too long for rt_route.operation is
 * kept cut at a character boundary and marked with "…": no operation has
 * such a name (or an ellipsis), so it is answered as unknown, and the
 * message shows it was cut.
 */
static void set_operation(rt_route *r, const char *seg, size_t len)
{
    size_t n = len - 1;
    const size_t room = sizeof r->operation - sizeof "\u2026";
    bool cut = n >= sizeof r->operation;
    if (cut) {
        n = room;
        while (n > 0 && ((unsigned char)seg[1 + n] & 0xC0) == 0x80)
            n--; /* seg[1 + n] continues a character: cut before the character */
    }
    memcpy(r->operation, seg + 1, n);
    memcpy(r->operation + n, cut ? "\u2026" : "", cut ? sizeof "\u2026" : 1);
    r->interaction = RT_OPERATION;
}

/* /insurer/<view> and /insurer/providers/<URA>: the insurer's views (the methods are the table's) */
static void insurer_level(rt_route *r, const char *seg[], size_t len[], size_t n)
{
    static const char *const views[] = {"providers", "stays", "plans", "contracts", "compliance"};
    for (size_t i = 0; n >= 2 && i < sizeof views / sizeof *views; i++) {
        if (!seg_is(seg[1], len[1], views[i]))
            continue;
        if (n == 3 && (i || !copy_id(r->id, seg[2], len[2])))
            break;
        snprintf(r->operation, sizeof r->operation, "insurer/%s", views[i]);
        r->interaction = RT_INSURER;
        return;
    }
    fail(r, 404, "no such insurer view (/insurer/providers/<URA>, stays, plans, contracts, compliance)");
}

static void system_level(rt_route *r, const char *method, const char *seg[], size_t len[], size_t n)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (n == 0) {
        if (post)
            r->interaction = RT_BATCH;
        else
            not_allowed(r, "POST", "the base URL accepts POST of a batch or transaction Bundle");
    } else if (seg_is(seg[0], len[0], "metadata")) {
        if (get)
            r->interaction = RT_CAPABILITIES;
        else
            not_allowed(r, "GET, HEAD", "metadata accepts GET and HEAD");
    } else if (seg_is(seg[0], len[0], "_history")) {
        if (get)
            r->interaction = RT_HISTORY_SYSTEM;
        else
            not_allowed(r, "GET, HEAD", "_history accepts GET and HEAD");
    } else if (n == 1 && seg[0][0] == '$') {
        set_operation(r, seg[0], len[0]); /* a system-level operation (the operations table says which exist) */
    } else if (n <= 3 && seg_is(seg[0], len[0], "insurer")) {
        insurer_level(r, seg, len, n);
    } else {
        fail(r, 404, "unknown resource type");
    }
}

/* /Type, /Type/_search, /Type/_history, /Type/$op */
static void type_level(rt_route *r, const char *method, const char *seg[], size_t len[], size_t n)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (n == 1) {
        if (get)
            r->interaction = RT_SEARCH;
        else if (post)
            r->interaction = RT_CREATE;
        else if (!strcmp(method, "PUT"))
            r->interaction = RT_UPDATE; /* conditional: the query names the resource */
        else if (!strcmp(method, "DELETE"))
            r->interaction = RT_DELETE; /* conditional */
        else if (!strcmp(method, "PATCH"))
            r->interaction = RT_PATCH; /* conditional patch */
        else
            not_allowed(r, "GET, HEAD, POST, PUT, PATCH, DELETE",
                        "a resource type accepts GET and HEAD (search), POST (create), PUT, PATCH and DELETE "
                        "(conditional)");
    } else if (seg_is(seg[1], len[1], "_search")) {
        if (post || get)
            r->interaction = RT_SEARCH;
        else
            not_allowed(r, "GET, HEAD, POST", "_search accepts GET, HEAD and POST");
    } else if (seg_is(seg[1], len[1], "_history")) {
        if (get)
            r->interaction = RT_HISTORY_TYPE;
        else
            not_allowed(r, "GET, HEAD", "_history accepts GET and HEAD");
    } else if (seg[1][0] == '$') {
        set_operation(r, seg[1], len[1]);
    } else {
        fail(r, 400, "not a valid resource id ([A-Za-z0-9-.]{1,64})");
    }
}

/* /Type/id, /Type/id/_history, /Type/id/_history/vid, /Type/id/$op */
static void instance_level(rt_route *r, const char *method, const char *seg[], size_t len[], size_t n)
{
    if (!copy_id(r->id, seg[1], len[1])) {
        fail(r, 400, "not a valid resource id ([A-Za-z0-9-.]{1,64})");
        return;
    }
    bool get = !strcmp(method, "GET");
    if (n == 2) {
        if (get)
            r->interaction = RT_READ;
        else if (!strcmp(method, "PUT"))
            r->interaction = RT_UPDATE;
        else if (!strcmp(method, "DELETE"))
            r->interaction = RT_DELETE;
        else if (!strcmp(method, "PATCH"))
            r->interaction = RT_PATCH;
        else
            not_allowed(r, "GET, HEAD, PUT, PATCH, DELETE", "a resource accepts GET, HEAD, PUT, PATCH and DELETE");
    } else if (seg_is(seg[2], len[2], "_history")) {
        if (!get)
            not_allowed(r, "GET, HEAD", "_history accepts GET and HEAD");
        else if (n == 3)
            r->interaction = RT_HISTORY_INSTANCE;
        else if (n == 4 && copy_id(r->version, seg[3], len[3]))
            r->interaction = RT_VREAD;
        else
            fail(r, 400, "not a valid version id");
    } else if (n == 3 && seg[2][0] == '$') {
        set_operation(r, seg[2], len[2]);
    } else {
        fail(r, 404, "no such path below a resource");
    }
}

void rt_parse(const fs_schema *s, const char *method, const char *path, rt_route *out)
{
    memset(out, 0, sizeof *out);
    /* HEAD is GET without the body (RFC 9110, 9.3.2): routed alike; the server leaves the body out */
    if (!strcmp(method, "HEAD"))
        method = "GET";
    const char *seg[MAX_SEGMENTS];
    size_t len[MAX_SEGMENTS];
    bool overflow;
    size_t n = split(path, seg, len, &overflow);
    if (overflow) {
        fail(out, 404, "no such path");
        return;
    }
    const fs_type *t = n ? fs_type_by_name(s, seg[0], len[0]) : NULL;
    if (!t || t->kind != FS_RESOURCE || t->is_abstract) {
        system_level(out, method, seg, len, n);
        return;
    }
    out->type = t;
    if (n == 1 || (n == 2 && (seg[1][0] == '_' || seg[1][0] == '$')))
        type_level(out, method, seg, len, n);
    else if (n <= 4)
        instance_level(out, method, seg, len, n);
    else
        fail(out, 404, "no such path");
}

/* ---- headers ---- */

/* Is one media range of an Accept header / _format value acceptable? */
static bool json_media(const char *m, size_t len)
{
    static const char *const ok[] =
        {"application/fhir+json", "application/json", "json", "application/*", "*/*", "text/json"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (strlen(ok[i]) == len && !strncasecmp(m, ok[i], len))
            return true;
    return false;
}

rt_format rt_negotiate(const char *format_param, const char *accept)
{
    const char *value = format_param && *format_param ? format_param : accept;
    if (!value || !*value)
        return RT_FORMAT_JSON;
    /* any acceptable media range in the list wins (q-values are not needed with one format) */
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ";,");
        size_t trimmed = len;
        while (trimmed && p[trimmed - 1] == ' ')
            trimmed--;
        if (trimmed && json_media(p, trimmed))
            return RT_FORMAT_JSON;
        if ((trimmed == 20 && !strncasecmp(p, "application/x-ndjson", 20)) ||
            (trimmed == 23 && !strncasecmp(p, "application/fhir+ndjson", 23)))
            return RT_FORMAT_NDJSON;
        p += len;
        if (*p == ';')
            p += strcspn(p, ",");
    }
    return RT_FORMAT_UNSUPPORTED;
}

bool rt_content_type_ok(const char *content_type)
{
    if (!content_type)
        return false;
    size_t len = strcspn(content_type, ";");
    while (len && content_type[len - 1] == ' ')
        len--;
    return (len == 21 && !strncasecmp(content_type, "application/fhir+json", 21)) ||
           (len == 16 && !strncasecmp(content_type, "application/json", 16));
}

rt_return rt_prefer_return(const char *prefer)
{
    if (!prefer)
        return RT_RETURN_REPRESENTATION;
    const char *r = strstr(prefer, "return=");
    if (!r)
        return RT_RETURN_REPRESENTATION;
    r += 7;
    if (!strncmp(r, "minimal", 7))
        return RT_RETURN_MINIMAL;
    if (!strncmp(r, "OperationOutcome", 16))
        return RT_RETURN_OUTCOME;
    return RT_RETURN_REPRESENTATION;
}

bool rt_etag_version(const char *etag, int64_t *version)
{
    if (!etag)
        return false;
    while (*etag == ' ')
        etag++;
    if (!strncmp(etag, "W/", 2))
        etag += 2;
    size_t len = strlen(etag);
    while (len && etag[len - 1] == ' ')
        len--;
    /* an entity tag is quoted (RFC 9110 8.8.3); ours carry the version number, nothing else */
    if (len < 3 || etag[0] != '"' || etag[len - 1] != '"' || len - 2 > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 1; i < len - 1; i++) {
        if (etag[i] < '0' || etag[i] > '9')
            return false;
        v = v * 10 + (etag[i] - '0');
    }
    *version = v;
    return true;
}

bool rt_etag_list_matches(const char *list, int64_t version)
{
    if (!list)
        return false;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        if (!len)
            break;
        /* our ETags are W/"<at most 18 digits>" (rt_etag_version): a longer tag is none of ours and matches
         * nothing, so it is skipped whole, never cut to something that might match */
        char one[48];
        if (len < sizeof one) {
            memcpy(one, p, len);
            one[len] = '\0';
            int64_t v;
            if (!strcmp(one, "*") || (rt_etag_version(one, &v) && v == version))
                return true;
        }
        p += len;
    }
    return false;
}

bool rt_http_date(const char *text, int64_t *epoch_ms)
{
    return text && fdt_parse_http_date(text, strlen(text), epoch_ms);
}
