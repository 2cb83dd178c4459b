/*
 * gateway/http/server_http.c — HTTP/1.1 without sockets: request heads, paths,
 * tokens, chunk sizes, request ids, reason phrases, OperationOutcome bodies.
 *
 * The parser is strict where leniency has bitten servers before (request
 * smuggling, header injection): lines end in CRLF, field names are tokens
 * with no whitespace before the colon, obsolete line folding is refused, and
 * the request-target must be origin-form. See server_internal.h.
 */
#include "gateway/http/server_internal.h"
#include "gateway/util/hex.h"
#include "gateway/util/random.h"

#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fhir/outcome.h"
#include "gateway/http/server.h"

/* ---- Characters ---------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_is_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

bool http_is_field_value(const char *s)
{
    if (!s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- Request head ---------------------------------------------------------- */

/* Split off the next CRLF-terminated line; NULL when a bare CR or LF is found. */
static char *next_line(char **cursor, char *end)
{
    char *line = *cursor;
    for (char *p = line; p + 1 < end; p++) {
        if (*p == '\r' && p[1] == '\n') {
            *p = '\0';
            *cursor = p + 2;
            return line;
        }
        if (*p == '\r' || *p == '\n' || *p == '\0')
            return NULL;
    }
    return NULL;
}

static int parse_request_line(char *line, http_head *head, const char **why)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
        *why = "malformed request line";
        return 400;
    }
    *sp1 = *sp2 = '\0';
    head->method = line;
    head->target = sp1 + 1;
    const char *version = sp2 + 1;
    if (!http_is_token(head->method)) {
        *why = "malformed method";
        return 400;
    }
    if (head->target[0] != '/') {
        *why = "request target must be a path (origin-form)";
        return 400;
    }
    for (const unsigned char *p = (const unsigned char *)head->target; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            *why = "request target contains a control, space or non-ASCII byte";
            return 400;
        }
    }
    if (strncmp(version, "HTTP/1.", 7) != 0 || !version[7] || version[8]) {
        *why = strncmp(version, "HTTP/", 5) == 0 ? "HTTP version not supported" : "malformed HTTP version";
        return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
    }
    if (version[7] != '0' && version[7] != '1') {
        *why = "HTTP version not supported";
        return 505;
    }
    head->minor_version = version[7] - '0';
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int parse_field(char *line, http_header *out, const char **why)
{
    if (line[0] == ' ' || line[0] == '\t') {
        *why = "obsolete line folding is not accepted";
        return 400;
    }
    char *colon = strchr(line, ':');
    if (!colon) {
        *why = "header field without a colon";
        return 400;
    }
    *colon = '\0';
    if (!http_is_token(line)) {
        *why = "malformed header field name";
        return 400;
    }
    char *value = trim(colon + 1);
    if (!http_is_field_value(value)) {
        *why = "control character in a header field value";
        return 400;
    }
    out->name = line;
    out->value = value;
    return 0;
}

int http_parse_head(char *buf, size_t len, http_head *head, http_header *headers, size_t max_headers, const char **why)
{
    char *cursor = buf, *end = buf + len;
    memset(head, 0, sizeof *head);
    head->headers = headers;
    *why = "";
    char *line = next_line(&cursor, end);
    if (!line) {
        *why = "request line does not end in CRLF";
        return 400;
    }
    int status = parse_request_line(line, head, why);
    if (status)
        return status;
    while ((line = next_line(&cursor, end)) != NULL && *line) {
        if (head->header_count == max_headers) {
            *why = "too many header fields";
            return 431;
        }
        status = parse_field(line, &headers[head->header_count], why);
        if (status)
            return status;
        head->header_count++;
    }
    if (!line) {
        *why = "header field does not end in CRLF";
        return 400;
    }
    return 0;
}

const char *http_header_find(const http_header *headers, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcasecmp(headers[i].name, name) == 0)
            return headers[i].value;
    return NULL;
}

size_t http_header_count(const http_header *headers, size_t count, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += strcasecmp(headers[i].name, name) == 0;
    return n;
}

bool http_has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if ((size_t)(stop - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* ---- Path ------------------------------------------------------------------- */

static bool is_dot_segment(const char *seg, size_t n)
{
    return (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
}

int http_decode_path(const char *path, size_t len, char *out, const char **why)
{
    if (len == 0 || path[0] != '/') {
        *why = "path must start with '/'";
        return 400;
    }
    size_t o = 0, segment = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            bool complete = i + 2 < len; /* both hex digits lie inside the path */
            int hi = complete ? hex_digit_value((unsigned char)path[i + 1]) : -1;
            int lo = complete ? hex_digit_value((unsigned char)path[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "malformed percent-encoding in path";
                return 400;
            }
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0 || c == '/') {
                *why = "encoded NUL or '/' in path";
                return 400;
            }
            i += 2;
        } else if (c == '/') {
            if (is_dot_segment(out + segment, o - segment)) {
                *why = "dot segment in path";
                return 400;
            }
            segment = o + 1;
        }
        if (c < 0x20 || c == 0x7f) {
            *why = "control character in path";
            return 400;
        }
        out[o++] = (char)c;
    }
    if (is_dot_segment(out + segment, o - segment)) {
        *why = "dot segment in path";
        return 400;
    }
    out[o] = '\0';
    return 0;
}

/* ---- Numbers ------------------------------------------------------------------ */

bool http_parse_content_length(const char *value, uint64_t *out)
{
    uint64_t n = 0;
    if (!value || !*value)
        return false;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = n;
    return true;
}

bool http_parse_chunk_size(const char *line, uint64_t *out)
{
    uint64_t n = 0;
    const char *p = line;
    int digit;
    if (hex_digit_value((unsigned char)*p) < 0)
        return false;
    while ((digit = hex_digit_value((unsigned char)*p)) >= 0) {
        if (n > (UINT64_MAX >> 4))
            return false;
        n = n * 16 + (uint64_t)digit;
        p++;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    /* Extensions are ignored, but a CR or LF inside one would end the line early
     * for a lenient parser in front of us: no control byte but HTAB in them. */
    if (*p && (*p != ';' || !http_is_field_value(p)))
        return false;
    *out = n;
    return true;
}

int http_transfer_coding(const http_header *headers, size_t count, const char **why)
{
    /* The codings of every Transfer-Encoding field, in order, are one list;
     * empty list elements do not count (RFC 9110 5.6.1). */
    size_t codings = 0;
    bool last_chunked = false;
    for (size_t i = 0; i < count; i++) {
        if (strcasecmp(headers[i].name, "Transfer-Encoding") != 0)
            continue;
        for (const char *p = headers[i].value; *p;) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *start = p;
            while (*p && *p != ',')
                p++;
            const char *stop = p;
            while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
                stop--;
            if (stop > start) {
                codings++;
                last_chunked = stop - start == 7 && strncasecmp(start, "chunked", 7) == 0;
            }
        }
    }
    if (!last_chunked) {
        *why = "chunked is not the last transfer coding: the body's length cannot be known";
        return 400;
    }
    if (codings > 1) {
        *why = "only the chunked transfer coding is supported";
        return 501;
    }
    return 0;
}

bool http_is_field_line(char *line, size_t len)
{
    http_header field;
    const char *why;
    return strlen(line) == len && parse_field(line, &field, &why) == 0;
}

/* ---- Request ids ---------------------------------------------------------------- */

const char *http_request_id_refusal(const char *id)
{
    if (!id)
        return NULL;
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == ':' || c == '-';
        if (!ok)
            return "malformed";
    }
    return n == 0 ? "malformed" : n > SRV_REQUEST_ID_MAX ? "too-long" : NULL;
}

void http_random_id(char out[33])
{
    unsigned char bytes[16];
    if (!rnd_bytes(bytes, sizeof bytes)) {
        /* The DRBG failed: an id must still be unique enough for log
         * correlation, so fall back to time and address entropy. */
        unsigned long long mix = (unsigned long long)(uintptr_t)out ^ (unsigned long long)clock();
        for (size_t i = 0; i < sizeof bytes; i++, mix = mix * 6364136223846793005ULL + 1442695040888963407ULL)
            bytes[i] = (unsigned char)(mix >> 56);
    }
    hex_encode(bytes, sizeof bytes, out);
}

/* ---- Reason phrases and outcomes ----------------------------------------------------- */

const char *srv_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

char *http_outcome_body(const char *issue_type, const char *message, size_t *len)
{
    oo_list issues;
    oo_list_init(&issues, 1);
    oo_add(&issues, OO_ERROR, issue_type, NULL, 0, 0, "%s", message);
    json_object *outcome = oo_to_json(&issues);
    oo_list_free(&issues);
    const char *text = json_object_to_json_string_ext(outcome, JSON_C_TO_STRING_PLAIN);
    char *body = text ? strdup(text) : NULL;
    json_object_put(outcome);
    if (body && len)
        *len = strlen(body);
    return body;
}
