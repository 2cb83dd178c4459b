/*
 * tests/test_http_parse.c — the HTTP/1.1 request parsers (gateway/http/server_http.c
 * and the framing in server.c) as tables of raw bytes and what the server must do
 * with them, through the real TLS server on loopback.
 *
 * Each row is sent on a fresh mutual-TLS connection. It names the answers the
 * server must give, in order, and what happens to the connection afterwards:
 * KEEP (a further request is still answered on it), CLOSE (the last answer says
 * `Connection: close`; error answers linger before the close, so it is not
 * awaited) or EOF (says so and the connection then ends). The handler echoes
 * what it received (method, path, body) so a row can say what the server made
 * of the bytes. Rows that could be read as two requests by a lenient parser
 * carry a second request for /echo/smuggled after the ambiguous body: no answer
 * of any row may ever name it.
 *
 * Every table asserts it ran at least as many rows as it had when written, so a
 * table that shrinks or stops running fails.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/http/server.h"
#include "tests/run_pki.h"

#define REQUEST_TIMEOUT_MS 1000
#define MAX_BODY (64 * 1024)
#define MAX_HEADER_BYTES (8 * 1024)
#define MAX_HEADERS 50

/* ---- The PKI, made once per run (tests/run_pki.h) ------------------------------------------- */

static void pki_path(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", rp_dir(), rel);
}

/* ---- The echo handler and the server ----------------------------------------------------------- */

/* JSON string contents: quotes, backslashes and control bytes escaped. */
static size_t escape(char *out, size_t cap, const unsigned char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        if (s[i] == '"' || s[i] == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\%c", s[i]);
        else if (s[i] < 0x20 || s[i] >= 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", s[i]);
        else
            out[o++] = (char)s[i];
    }
    out[o] = '\0';
    return o;
}

static void echo(srv_request *req, void *arg)
{
    (void)arg;
    if (strncmp(srv_req_path(req), "/echo", 5) != 0) {
        srv_respond_outcome(req, 404, "not-found", "no such test resource");
        return;
    }
    size_t body_len;
    const unsigned char *body = srv_req_body(req, &body_len);
    char shown[1024];
    escape(shown, sizeof shown, body, body_len);
    char *out = malloc(2048);
    int n = snprintf(out, 2048, "{\"method\":\"%s\",\"path\":\"%s\",\"length\":%zu,\"body\":\"%s\"}",
                     srv_req_method(req), srv_req_path(req), body_len, shown);
    srv_set_header(req, "Content-Type", "application/json");
    srv_respond(req, 200, out, (size_t)n);
}

static srv_server *srv;
static unsigned port;

static void start(void)
{
    char cert[512], key[512], ca[512], crl[512], err[512];
    pki_path(cert, sizeof cert, "server.crt");
    pki_path(key, sizeof key, "server.key");
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    pki_path(crl, sizeof crl, "crl.pem");
    srv_config cfg;
    srv_config_defaults(&cfg);
    cfg.port = 0;
    cfg.ops_port = 0;
    cfg.workers = 2;
    cfg.cert_file = cert, cfg.key_file = key, cfg.ca_file = ca, cfg.crl_file = crl;
    cfg.max_body_bytes = MAX_BODY;
    cfg.max_header_bytes = MAX_HEADER_BYTES;
    cfg.max_headers = MAX_HEADERS;
    cfg.request_timeout_ms = REQUEST_TIMEOUT_MS;
    cfg.idle_timeout_ms = 5000;
    cfg.drain_timeout_ms = 1000;
    cfg.handler = echo;
    srv = srv_new(&cfg, err, sizeof err);
    cr_assert_not_null(srv, "srv_new: %s", err);
    cr_assert(srv_start(srv, err, sizeof err), "srv_start: %s", err);
    port = srv_port(srv);
}

static void stop(void)
{
    if (!srv)
        return;
    srv_stop(srv);
    srv_wait(srv);
    srv_free(srv);
    srv = NULL;
}

TestSuite(http_parse, .init = start, .fini = stop, .timeout = 120);

/* ---- A raw TLS client ---------------------------------------------------------------------------- */

typedef struct conn {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
} conn;

static void connect_tls(conn *c)
{
    char cert[512], key[512], ca[512];
    pki_path(cert, sizeof cert, "clients/gp.crt");
    pki_path(key, sizeof key, "clients/gp.key");
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    c->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert(SSL_CTX_use_certificate_file(c->ctx, cert, SSL_FILETYPE_PEM) == 1);
    cr_assert(SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) == 1);
    cr_assert(SSL_CTX_load_verify_locations(c->ctx, ca, NULL) == 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    cr_assert_eq(SSL_connect(c->ssl), 1, "TLS handshake");
}

static void close_tls(conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
    ERR_clear_error();
}

static void send_bytes(conn *c, const char *bytes, size_t len)
{
    /* a refusal may close the connection before everything is sent: the answer says what happened */
    if (len)
        SSL_write(c->ssl, bytes, (int)len);
    ERR_clear_error();
}

/* One answer parsed off the front of the received bytes. */
typedef struct answer {
    int status;
    const char *head; /* into the buffer; not NUL-terminated at the end of the head */
    size_t head_len;
    const char *body;
    size_t body_len;
} answer;

/* The length of the first complete answer in buf, or 0 when more bytes are needed. */
static size_t parse_answer(const char *buf, size_t len, answer *a)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end || len < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0)
        return 0;
    a->status = atoi(buf + 9);
    a->head = buf;
    a->head_len = (size_t)(end + 4 - buf);
    a->body = end + 4;
    a->body_len = 0;
    if (a->status >= 200 && a->status != 204 && a->status != 304) {
        const char *cl = NULL;
        for (const char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
            if (strncasecmp(p, "Content-Length: ", 16) == 0)
                cl = p + 16;
        cr_assert_not_null(cl, "every answer here has a Content-Length: %.*s", (int)a->head_len, buf);
        a->body_len = (size_t)atol(cl);
    }
    return a->head_len + a->body_len <= len ? a->head_len + a->body_len : 0;
}

#define MAX_ANSWERS 4
#define RECEIVED_MAX (64 * 1024)

typedef struct received {
    char buf[RECEIVED_MAX];
    size_t len;
    size_t parsed; /* bytes of buf taken by complete answers */
    answer answers[MAX_ANSWERS];
    int count;
    bool eof; /* the server ended the connection */
} received;

/* Read until `want` answers are complete, the connection ends or `ms` pass without a byte. */
static void read_answers(conn *c, received *r, int want, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (r->count < want) {
        size_t n;
        while (r->count < MAX_ANSWERS &&
               (n = parse_answer(r->buf + r->parsed, r->len - r->parsed, &r->answers[r->count]))) {
            r->parsed += n;
            r->count++;
        }
        if (r->count >= want)
            break;
        errno = 0;
        int got = SSL_read(c->ssl, r->buf + r->len, (int)(sizeof r->buf - r->len - 1));
        if (got <= 0) {
            r->eof = errno != EAGAIN && errno != EWOULDBLOCK; /* not the receive timeout */
            break;
        }
        r->len += (size_t)got;
        r->buf[r->len] = '\0';
    }
    r->buf[r->len] = '\0';
    ERR_clear_error();
}

/* ---- The tables ------------------------------------------------------------------------------------ */

typedef enum after { KEEP, CLOSE, EOF_ } after;

typedef struct row {
    const char *name;
    const char *bytes;
    size_t len;
    int status[MAX_ANSWERS]; /* the answers, in order; 0 ends the list */
    after then;
    const char *seen; /* in the first 200 answer's echo, when not NULL */
} row;

/* sizeof, not strlen: a row may hold NUL bytes */
#define ROW(name_, bytes_, ...)                                                         \
    {                                                                                   \
        .name = name_, .bytes = bytes_, .len = sizeof bytes_ - 1, .status = __VA_ARGS__ \
    }
#define H "Host: x\r\n"
#define SMUGGLED "GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
#define POST_TE(te, body) "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: " te "\r\n\r\n" body
#define POST_CHUNKED(body) POST_TE("chunked", body)
#define X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define X1K X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64 X64
#define X9K X1K X1K X1K X1K X1K X1K X1K X1K X1K
#define F5 "X-F: 1\r\nX-F: 2\r\nX-F: 3\r\nX-F: 4\r\nX-F: 5\r\n"

static bool has_header(const answer *a, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = a->head; p + n <= a->head + a->head_len; p++)
        if (strncasecmp(p, line, n) == 0)
            return true;
    return false;
}

static void run_row(const row *w)
{
    conn c;
    connect_tls(&c);
    send_bytes(&c, w->bytes, w->len);
    int want = 0;
    while (want < MAX_ANSWERS && w->status[want])
        want++;
    received *r = calloc(1, sizeof *r);
    /* rows answered at the request deadline wait for it; the others are answered at once */
    read_answers(&c, r, want, REQUEST_TIMEOUT_MS + 2000);
    cr_expect_null(strstr(r->buf, "smuggled"), "%s: a smuggled request was answered: %s", w->name, r->buf);
    cr_expect_eq(r->count, want, "%s: %d answers, expected %d: '%.300s'", w->name, r->count, want, r->buf);
    for (int i = 0; i < want && i < r->count; i++)
        cr_expect_eq(r->answers[i].status, w->status[i], "%s: answer %d is %d, expected %d: '%.300s'", w->name, i + 1,
                     r->answers[i].status, w->status[i], r->answers[i].head);
    if (w->seen) {
        const answer *ok = NULL;
        for (int i = 0; i < r->count && !ok; i++)
            if (r->answers[i].status == 200)
                ok = &r->answers[i];
        cr_expect(ok && memmem(ok->body, ok->body_len, w->seen, strlen(w->seen)), "%s: expected %s in '%.300s'",
                  w->name, w->seen, ok ? ok->body : r->buf);
    }
    if (r->count == want && want > 0) {
        const answer *last = &r->answers[want - 1];
        bool says_close = has_header(last, "\r\nConnection: close\r\n");
        if (w->then == KEEP) {
            cr_expect_not(says_close, "%s: the connection should stay open: '%.300s'", w->name, last->head);
            const char probe[] = "GET /echo/probe HTTP/1.1\r\n" H "\r\n";
            send_bytes(&c, probe, sizeof probe - 1);
            received *p = calloc(1, sizeof *p);
            read_answers(&c, p, 1, 3000);
            cr_expect(p->count == 1 && p->answers[0].status == 200 && strstr(p->buf, "/echo/probe"),
                      "%s: a request after it on the same connection was not answered: '%.200s'", w->name, p->buf);
            free(p);
        } else {
            cr_expect(says_close, "%s: the last answer should say Connection: close: '%.300s'", w->name, last->head);
        }
        if (w->then == EOF_) {
            read_answers(&c, r, want + 1, 3000);
            cr_expect(r->eof && r->count == want, "%s: the server should end the connection", w->name);
        }
    }
    free(r);
    close_tls(&c);
}

static size_t run_table(const row *rows, size_t n)
{
    size_t ran = 0;
    for (size_t i = 0; i < n; i++, ran++)
        run_row(&rows[i]);
    return ran;
}

#define RUN(rows, minimum)                                                                \
    do {                                                                                  \
        size_t ran_ = run_table(rows, sizeof rows / sizeof *rows);                        \
        cr_log_info("%s: %zu rows", #rows, ran_);                                         \
        cr_assert_geq(ran_, minimum, "%s ran %zu rows; it had %d", #rows, ran_, minimum); \
    } while (0)

/* Content-Length and Transfer-Encoding: a body's end that two parsers could see in two places is refused. */
static const row smuggling[] = {
    ROW("Content-Length body", "POST /echo HTTP/1.1\r\n" H "Content-Length: 2\r\n\r\n{}", {200}, KEEP,
        "\"body\":\"{}\""),
    ROW("Content-Length 0", "POST /echo HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", {200}, KEEP, "\"length\":0"),
    ROW("Content-Length with leading zeros", "POST /echo HTTP/1.1\r\n" H "Content-Length: 002\r\n\r\n{}", {200}, KEEP,
        "\"body\":\"{}\""),
    ROW("Content-Length with whitespace around it", "POST /echo HTTP/1.1\r\n" H "Content-Length: \t2 \r\n\r\n{}", {200},
        KEEP, "\"body\":\"{}\""),
    ROW("CL then TE (CL.TE)",
        "POST /echo HTTP/1.1\r\n" H "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400},
        CLOSE),
    ROW("TE then CL (TE.CL)",
        "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        {400}, CLOSE),
    ROW("two different Content-Lengths",
        "POST /echo HTTP/1.1\r\n" H "Content-Length: 2\r\nContent-Length: 43\r\n\r\n{}" SMUGGLED, {400}, CLOSE),
    ROW("two equal Content-Lengths", "POST /echo HTTP/1.1\r\n" H "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        {400}, CLOSE),
    ROW("Content-Length list", "POST /echo HTTP/1.1\r\n" H "Content-Length: 2, 2\r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length with a plus sign", "POST /echo HTTP/1.1\r\n" H "Content-Length: +2\r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length with a minus sign", "POST /echo HTTP/1.1\r\n" H "Content-Length: -2\r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length in hex", "POST /echo HTTP/1.1\r\n" H "Content-Length: 0x2\r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length with a space inside", "POST /echo HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n{}", {400},
        CLOSE),
    ROW("Content-Length empty", "POST /echo HTTP/1.1\r\n" H "Content-Length: \r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length with a unit", "POST /echo HTTP/1.1\r\n" H "Content-Length: 2b\r\n\r\n{}", {400}, CLOSE),
    ROW("Content-Length past 64 bits", "POST /echo HTTP/1.1\r\n" H "Content-Length: 18446744073709551618\r\n\r\n{}",
        {400}, CLOSE),
    ROW("Content-Length over the body limit", "POST /echo HTTP/1.1\r\n" H "Content-Length: 65537\r\n\r\n{}", {413},
        CLOSE),
    ROW("Content-Length with a space before the colon", "POST /echo HTTP/1.1\r\n" H "Content-Length : 2\r\n\r\n{}",
        {400}, CLOSE),
    ROW("Content-Length with a vertical tab", "POST /echo HTTP/1.1\r\n" H "Content-Length: \v2\r\n\r\n{}", {400},
        CLOSE),
    ROW("Transfer-Encoding: chunked", POST_CHUNKED("2\r\n{}\r\n0\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("Transfer-Encoding: Chunked (case does not matter)", POST_TE("Chunked", "2\r\n{}\r\n0\r\n\r\n"), {200}, KEEP,
        "\"body\":\"{}\""),
    ROW("Transfer-Encoding with whitespace around it", POST_TE(" chunked\t", "2\r\n{}\r\n0\r\n\r\n"), {200}, KEEP,
        "\"body\":\"{}\""),
    ROW("Transfer-Encoding: gzip, chunked (a coding we do not decode)", POST_TE("gzip, chunked", "0\r\n\r\n"), {501},
        CLOSE),
    ROW("Transfer-Encoding: chunked, gzip (chunked not last)", POST_TE("chunked, gzip", "0\r\n\r\n" SMUGGLED), {400},
        CLOSE),
    ROW("Transfer-Encoding: gzip (no chunked: length unknown)", POST_TE("gzip", "0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("Transfer-Encoding: identity", POST_TE("identity", "0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("Transfer-Encoding: xchunked", POST_TE("xchunked", "0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("Transfer-Encoding: chunked;q=1 (chunked has no parameters)", POST_TE("chunked;q=1", "0\r\n\r\n" SMUGGLED),
        {400}, CLOSE),
    ROW("Transfer-Encoding empty", POST_TE("", "0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("Transfer-Encoding twice",
        "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {501},
        CLOSE),
    ROW("Transfer-Encoding split over two fields, chunked not last",
        "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" SMUGGLED,
        {400}, CLOSE),
    ROW("Transfer-Encoding with a vertical tab", POST_TE("\vchunked", "0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("Transfer-Encoding in HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400},
        CLOSE),
    ROW("Transfer-Encoding with a space before the colon",
        "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", {400}, CLOSE),
};

Test(http_parse, smuggling)
{
    RUN(smuggling, 34);
}

/* Obsolete line folding (RFC 9112 5.2): a field line starting with whitespace is refused. */
static const row folding[] = {
    ROW("folded with a space", "GET /echo HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", {400}, CLOSE),
    ROW("folded with a tab", "GET /echo HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", {400}, CLOSE),
    ROW("first field line starts with a space", "GET /echo HTTP/1.1\r\n Host: x\r\n\r\n", {400}, CLOSE),
    ROW("Transfer-Encoding folded onto its own line",
        "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, CLOSE),
    ROW("Content-Length folded", "POST /echo HTTP/1.1\r\n" H "Content-Length:\r\n 2\r\n\r\n{}", {400}, CLOSE),
};

Test(http_parse, obsolete_folding)
{
    RUN(folding, 5);
}

/* Chunked coding (RFC 9112 7.1): sizes in hex, extensions, trailers, and where it ends. */
static const row chunked[] = {
    ROW("lower-case hex size", POST_CHUNKED("a\r\n0123456789\r\n0\r\n\r\n"), {200}, KEEP, "\"body\":\"0123456789\""),
    ROW("upper-case hex size", POST_CHUNKED("A\r\n0123456789\r\n0\r\n\r\n"), {200}, KEEP, "\"length\":10"),
    ROW("size with leading zeros", POST_CHUNKED("000a\r\n0123456789\r\n0000\r\n\r\n"), {200}, KEEP, "\"length\":10"),
    ROW("several chunks", POST_CHUNKED("1\r\n{\r\n3\r\n\"a\"\r\n1\r\n}\r\n0\r\n\r\n"), {200}, KEEP,
        "\"body\":\"{\\\"a\\\"}\""),
    ROW("empty body", POST_CHUNKED("0\r\n\r\n"), {200}, KEEP, "\"length\":0"),
    ROW("chunk extension", POST_CHUNKED("2;name=value\r\n{}\r\n0;last\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("quoted chunk extension", POST_CHUNKED("2;name=\"a; b\"\r\n{}\r\n0\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("whitespace before a chunk extension", POST_CHUNKED("2 ;x\r\n{}\r\n0\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("bare LF inside a chunk extension", POST_CHUNKED("2;x\nyy\r\n{}\r\n0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("bare CR inside a chunk extension", POST_CHUNKED("2;x\ryy\r\n{}\r\n0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("NUL inside a chunk extension", POST_CHUNKED("2;x\0y\r\n{}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("a chunk-size line past its limit", POST_CHUNKED("2;" X1K X64 X64 "\r\n{}\r\n0\r\n\r\n"), /* limit: 1024 */
        {400}, CLOSE),
    ROW("size past 64 bits", POST_CHUNKED("10000000000000002\r\n{}\r\n0\r\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("size of 2^64 - 1 (over the body limit)", POST_CHUNKED("ffffffffffffffff\r\n{}\r\n0\r\n\r\n"), {413}, CLOSE),
    ROW("size with 0x", POST_CHUNKED("0x2\r\n{}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("size with a sign", POST_CHUNKED("+2\r\n{}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("empty size line", POST_CHUNKED("\r\n{}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("size line ending in a bare LF", POST_CHUNKED("2\n{}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("chunk data without its CRLF", POST_CHUNKED("2\r\n{}0\r\n\r\n"), {400}, CLOSE),
    ROW("chunk data longer than its size", POST_CHUNKED("2\r\n{}}\r\n0\r\n\r\n"), {400}, CLOSE),
    ROW("chunk data ending in a bare LF", POST_CHUNKED("2\r\n{}\n0\r\n\r\n"), {400}, CLOSE),
    ROW("a trailer field", POST_CHUNKED("2\r\n{}\r\n0\r\nX-Checksum: 1234\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("two trailer fields", POST_CHUNKED("2\r\n{}\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"), {200}, KEEP, "\"body\":\"{}\""),
    ROW("a trailer line with a bare LF", POST_CHUNKED("0\r\nX-A: 1\n\r\n" SMUGGLED), {400}, CLOSE),
    ROW("a trailer line without a colon", POST_CHUNKED("0\r\nnot a field\r\n\r\n"), {400}, CLOSE),
    ROW("a folded trailer line", POST_CHUNKED("0\r\nX-A: 1\r\n 2\r\n\r\n"), {400}, CLOSE),
    ROW("a NUL in a trailer field",
        POST_CHUNKED("0\r\nX-A: 1\0"
                     "2\r\n\r\n"),
        {400}, CLOSE),
    ROW("trailers past the header size limit",
        POST_CHUNKED("0\r\nX-A: " X1K "\r\nX-B: " X1K "\r\nX-C: " X1K "\r\nX-D: " X1K "\r\nX-E: " X1K "\r\nX-F: " X1K
                     "\r\nX-G: " X1K "\r\nX-H: " X1K "\r\nX-I: " X1K "\r\n\r\n"),
        {431}, CLOSE),
    ROW("a zero chunk without the final CRLF (answered at the deadline)", POST_CHUNKED("2\r\n{}\r\n0\r\n"), {408},
        CLOSE),
    ROW("no last chunk (answered at the deadline)", POST_CHUNKED("2\r\n{}\r\n"), {408}, CLOSE),
    ROW("a chunked body, then a pipelined request",
        POST_CHUNKED("2\r\n{}\r\n0\r\n\r\n") "GET /echo/next HTTP/1.1\r\n" H "\r\n", {200, 200}, KEEP,
        "\"body\":\"{}\""),
};

Test(http_parse, chunked)
{
    RUN(chunked, 31);
}

/* Line endings, NUL bytes and sizes of the request head. */
static const row lines[] = {
    ROW("plain GET", "GET /echo HTTP/1.1\r\n" H "\r\n", {200}, KEEP, "\"path\":\"/echo\""),
    ROW("empty lines before the request line", "\r\n\r\nGET /echo HTTP/1.1\r\n" H "\r\n", {200}, KEEP,
        "\"path\":\"/echo\""),
    /* a head ends at CRLF CRLF only: one that never does is answered at the deadline, never parsed */
    ROW("bare LF line endings throughout (answered at the deadline)", "GET /echo HTTP/1.1\n" H "\n", {408}, CLOSE),
    ROW("bare LF ending the request line", "GET /echo HTTP/1.1\n" H "\r\n", {400}, CLOSE),
    ROW("bare LF ending the last field line (answered at the deadline)", "GET /echo HTTP/1.1\r\n" H "X-A: 1\n\r\n",
        {408}, CLOSE),
    ROW("bare LF ending a field line", "GET /echo HTTP/1.1\r\n" H "X-A: 1\nX-B: 2\r\n\r\n", {400}, CLOSE),
    ROW("LF CR instead of CR LF", "GET /echo HTTP/1.1\r\n" H "X-A: 1\n\rX-B: 2\r\n\r\n", {400}, CLOSE),
    ROW("bare CR inside a field line", "GET /echo HTTP/1.1\r\n" H "X-A: 1\rX-B: 2\r\n\r\n", {400}, CLOSE),
    ROW("bare CR ending the request line", "GET /echo HTTP/1.1\r" H "\r\n", {400}, CLOSE),
    ROW("NUL in a field value", "GET /echo HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", {400}, CLOSE),
    ROW("NUL in a field name", "GET /echo HTTP/1.1\r\n" H "X-\0A: b\r\n\r\n", {400}, CLOSE),
    ROW("NUL in the request target", "GET /echo\0 HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("NUL in the method", "G\0T /echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a control byte in a field value",
        "GET /echo HTTP/1.1\r\n" H "X-A: a\x01"
        "b\r\n\r\n",
        {400}, CLOSE),
    ROW("a field name with a space", "GET /echo HTTP/1.1\r\n" H "X A: b\r\n\r\n", {400}, CLOSE),
    ROW("a field without a colon", "GET /echo HTTP/1.1\r\n" H "X-A\r\n\r\n", {400}, CLOSE),
    ROW("an empty field name", "GET /echo HTTP/1.1\r\n" H ": b\r\n\r\n", {400}, CLOSE),
    ROW("two spaces in the request line", "GET  /echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a tab in the request line", "GET\t/echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("no HTTP version", "GET /echo\r\n" H "\r\n", {400}, CLOSE),
    ROW("no Host in HTTP/1.1", "GET /echo HTTP/1.1\r\n\r\n", {400}, CLOSE),
    ROW("two Hosts", "GET /echo HTTP/1.1\r\n" H "Host: y\r\n\r\n", {400}, CLOSE),
};

Test(http_parse, line_endings_and_bytes)
{
    RUN(lines, 22);
}

/* Over-long lines and heads: the limits are 8 KiB of head and 50 fields here. */
static const row sizes[] = {
    ROW("a long but allowed field", "GET /echo HTTP/1.1\r\n" H "X-A: " X1K X1K X1K X1K "\r\n\r\n", {200}, KEEP, NULL),
    ROW("a request target past the head limit", "GET /echo/" X9K " HTTP/1.1\r\n" H "\r\n", {431}, CLOSE),
    ROW("a field line past the head limit", "GET /echo HTTP/1.1\r\n" H "X-A: " X9K "\r\n\r\n", {431}, CLOSE),
    ROW("a request line without end past the limit", "GET /echo/" X9K, {431}, CLOSE),
    ROW("49 fields and Host",
        "GET /echo HTTP/1.1\r\n" H F5 F5 F5 F5 F5 F5 F5 F5 F5 "X-F: 1\r\nX-F: 2\r\nX-F: 3\r\n"
        "X-F: 4\r\n\r\n",
        {200}, KEEP, NULL),
    ROW("51 fields", "GET /echo HTTP/1.1\r\n" H F5 F5 F5 F5 F5 F5 F5 F5 F5 F5 "\r\n", {431}, CLOSE),
};

Test(http_parse, long_lines)
{
    RUN(sizes, 6);
}

/* Request targets: origin-form only (a gateway, not a proxy); the path is checked before the handler sees it. */
static const row targets[] = {
    ROW("origin-form with a query", "GET /echo/a?b=c%20d HTTP/1.1\r\n" H "\r\n", {200}, KEEP, "\"path\":\"/echo/a\""),
    ROW("percent-encoded path", "GET /echo/a%20b HTTP/1.1\r\n" H "\r\n", {200}, KEEP, "\"path\":\"/echo/a b\""),
    ROW("absolute-form", "GET https://localhost/echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("absolute-form naming another host", "GET http://elsewhere.example/echo HTTP/1.1\r\nHost: x\r\n\r\n", {400},
        CLOSE),
    ROW("authority-form (CONNECT)", "CONNECT localhost:443 HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("asterisk-form (OPTIONS *)", "OPTIONS * HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("an empty target", "GET  HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a non-ASCII byte in the target", "GET /echo/\xc3\xa9 HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("an encoded slash", "GET /echo%2F..%2Fx HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("an encoded NUL", "GET /echo%00 HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a dot segment", "GET /a/../echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a bad percent escape", "GET /echo%zz HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("a malformed method", "GE(T /echo HTTP/1.1\r\n" H "\r\n", {400}, CLOSE),
};

Test(http_parse, request_targets)
{
    RUN(targets, 13);
}

/* HTTP versions and persistence (RFC 9112 9.3): 1.1 keeps the connection unless told, 1.0 only when asked. */
static const row versions[] = {
    ROW("HTTP/1.1 keeps the connection", "GET /echo HTTP/1.1\r\n" H "\r\n", {200}, KEEP, NULL),
    ROW("HTTP/1.1 with Connection: close", "GET /echo HTTP/1.1\r\n" H "Connection: close\r\n\r\n", {200}, EOF_, NULL),
    ROW("HTTP/1.1 with close among other options", "GET /echo HTTP/1.1\r\n" H "Connection: keep-alive, Close\r\n\r\n",
        {200}, EOF_, NULL),
    ROW("HTTP/1.1 pipelined", "GET /echo/1 HTTP/1.1\r\n" H "\r\nGET /echo/2 HTTP/1.1\r\n" H "\r\n", {200, 200}, KEEP,
        "\"path\":\"/echo/1\""),
    ROW("HTTP/1.1 pipelined, the second closes",
        "GET /echo/1 HTTP/1.1\r\n" H "\r\nGET /echo/2 HTTP/1.1\r\n" H "Connection: close\r\n\r\n" SMUGGLED, {200, 200},
        EOF_, NULL),
    ROW("HTTP/1.0 closes", "GET /echo HTTP/1.0\r\n\r\n", {200}, EOF_, NULL),
    ROW("HTTP/1.0 with Connection: keep-alive", "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", {200}, KEEP,
        NULL),
    ROW("HTTP/1.0 pipelined with keep-alive",
        "GET /echo/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        {200, 200}, KEEP, NULL),
    ROW("HTTP/1.0 pipelined without keep-alive", "GET /echo/1 HTTP/1.0\r\n\r\n" SMUGGLED, {200}, EOF_, NULL),
    ROW("HTTP/1.0 needs no Host", "GET /echo HTTP/1.0\r\n\r\n", {200}, EOF_, "\"path\":\"/echo\""),
    ROW("HTTP/1.0 with a Content-Length body", "POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", {200}, EOF_,
        "\"body\":\"{}\""),
    ROW("Expect: 100-continue", "POST /echo HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        {100, 200}, KEEP, "\"body\":\"{}\""),
    ROW("HTTP/1.2", "GET /echo HTTP/1.2\r\n" H "\r\n", {505}, CLOSE),
    ROW("HTTP/2.0 on the wire", "GET /echo HTTP/2.0\r\n" H "\r\n", {505}, CLOSE),
    ROW("HTTP/0.9 style request line", "GET /echo\r\n\r\n", {400}, CLOSE),
    ROW("lower-case version", "GET /echo http/1.1\r\n" H "\r\n", {400}, CLOSE),
    ROW("version with two minor digits", "GET /echo HTTP/1.10\r\n" H "\r\n", {505}, CLOSE),
};

Test(http_parse, versions_and_keep_alive)
{
    RUN(versions, 17);
}
