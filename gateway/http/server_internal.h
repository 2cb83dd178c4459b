/*
 * gateway/http/server_internal.h — what server.c and server_http.c share; not for
 * other modules (prefix http_ for the pure HTTP/1.1 helpers).
 *
 * server_http.c holds the parts of HTTP/1.1 that need no sockets: parsing a
 * request head in place, percent-decoding the path, token lists, chunk sizes,
 * request ids, reason phrases and OperationOutcome bodies. No I/O, no state.
 */
#ifndef GATEWAY_SERVER_INTERNAL_H
#define GATEWAY_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_header {
    const char *name;  /* as sent (case kept) */
    const char *value; /* leading and trailing whitespace removed */
} http_header;

typedef struct http_head {
    const char *method;
    const char *target;   /* raw request-target, origin-form: /path?query */
    int minor_version;    /* HTTP/1.<minor>: 0 or 1 */
    http_header *headers; /* caller-provided array */
    size_t header_count;
} http_head;

/*
 * Parse a request head (request line + header fields + the empty line) of
 * `len` bytes in place: CRLFs are replaced by NULs and the returned pointers
 * point into buf. `headers` has room for max_headers fields.
 * Returns 0, or the HTTP status to answer with (400 malformed, 431 too many
 * fields, 505 unsupported version) and a static reason in *why.
 */
int http_parse_head(char *buf, size_t len, http_head *head, http_header *headers, size_t max_headers, const char **why);

/* First field with this name (ASCII case-insensitive), or NULL. */
const char *http_header_find(const http_header *headers, size_t count, const char *name);

/* Number of fields with this name. */
size_t http_header_count(const http_header *headers, size_t count, const char *name);

/* Does a comma-separated field value contain this token (case-insensitive)? */
bool http_has_token(const char *value, const char *token);

/* Is s a non-empty RFC 9110 token (header names, methods)? */
bool http_is_token(const char *s);

/* Is s a header value we may send (no CR, LF, NUL or other control but HTAB)? */
bool http_is_field_value(const char *s);

/*
 * Percent-decode the path part of a request-target (up to '?', `len` bytes)
 * into out (room for len + 1). Refused with 400: a target not starting with
 * '/', a bad escape, an encoded NUL or '/', a control byte, and the dot
 * segments "." and ".." (no normalisation: the router sees what was sent).
 */
int http_decode_path(const char *path, size_t len, char *out, const char **why);

/* Content-Length: digits only, no overflow. False when invalid. */
bool http_parse_content_length(const char *value, uint64_t *out);

/* A chunk-size line: hex digits, then optional extensions after ';' (no
 * control bytes but HTAB in them). */
bool http_parse_chunk_size(const char *line, uint64_t *out);

/*
 * The framing a request's Transfer-Encoding fields (all of them, as one list)
 * ask for: 0 when it is exactly chunked; 400 when chunked is not the last
 * coding (the body's end is unknowable: RFC 9112 6.3); 501 when chunked is
 * last but other codings come before it. A static reason in *why.
 */
int http_transfer_coding(const http_header *headers, size_t count, const char **why);

/* Is this line of `len` bytes (trailer fields) a well-formed field line, as
 * http_parse_head checks them? Writes into line. */
bool http_is_field_line(char *line, size_t len);

/* Why an X-Request-ID is not echoed: NULL when there is none or it is one to echo (1..SRV_REQUEST_ID_MAX
 * of [A-Za-z0-9._:-]), else "too-long" or "malformed" (never cut or cleaned up into something else). */
const char *http_request_id_refusal(const char *id);

/* 128 random bits as 32 lowercase hex digits. */
void http_random_id(char out[33]);

/* An OperationOutcome with one error issue, as a malloc'd JSON string (NULL
 * on out of memory). */
char *http_outcome_body(const char *issue_type, const char *message, size_t *len);

#endif
