/*
 * gateway/util/log.c — JSON lines (see log.h).
 *
 * A line is built in a buffer of its own (on the stack while it fits, then
 * on the heap) and leaves in one write(2): O_APPEND makes that write land
 * whole at the end of the file, also with other threads and processes
 * writing, where stdio's buffering would split long lines.
 */
#include "gateway/util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fhir/array.h"
#include "fhir/datetime.h"

void lg_init(lg_logger *log, int fd)
{
    memset(log, 0, sizeof *log);
    log->fd = fd;
    log->min_level = LG_DEBUG;
}

bool lg_open(lg_logger *log, const char *path, int std_fd, char *err, size_t errlen)
{
    lg_init(log, -1);
    if (!path[0])
        return true;
    if (!strcmp(path, "-")) {
        log->fd = std_fd;
        return true;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    log->fd = fd;
    log->owns_fd = true;
    return true;
}

const lg_logger *lg_stderr(void)
{
    static const lg_logger standard_error = {.fd = STDERR_FILENO, .min_level = LG_DEBUG};
    return &standard_error;
}

void lg_close(lg_logger *log)
{
    if (log->owns_fd && log->fd >= 0)
        close(log->fd);
    lg_init(log, -1);
}

const char *lg_level_name(lg_level level)
{
    static const char *const names[] =
        {[LG_DEBUG] = "debug", [LG_INFO] = "info", [LG_WARNING] = "warning", [LG_ERROR] = "error"};
    return (unsigned)level <= LG_ERROR ? names[level] : "info";
}

/* ---- Building a line ------------------------------------------------------------------ */

typedef struct line {
    char *text; /* first, until a line outgrows it; then the heap */
    size_t len, cap;
    bool failed;      /* out of memory: the line is not written */
    char first[1024]; /* most lines fit: no allocation */
} line;

static bool on_heap(const line *l)
{
    return l->text != l->first;
}

/* Room for `needed` bytes: the stack buffer moves to the heap once, then grows there. */
static bool grow(line *l, size_t needed)
{
    if (on_heap(l))
        return fa_reserve(&l->text, &l->cap, needed, 1);
    char *heap = NULL;
    size_t cap = 0;
    if (!fa_reserve(&heap, &cap, needed > 2 * l->cap ? needed : 2 * l->cap, 1))
        return false;
    memcpy(heap, l->text, l->len);
    l->text = heap;
    l->cap = cap;
    return true;
}

static void add(line *l, const char *s, size_t n)
{
    if (l->failed)
        return;
    if (l->len + n + 1 > l->cap && !grow(l, l->len + n + 1)) {
        l->failed = true;
        return;
    }
    memcpy(l->text + l->len, s, n);
    l->len += n;
    l->text[l->len] = '\0';
}

static void add_str(line *l, const char *s)
{
    add(l, s, strlen(s));
}

/* The length of the UTF-8 sequence at p (1-4), or 0 when it is not one (overlong, surrogate, cut short). */
static size_t utf8_length(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (c >= 0xF5 || n == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)))
        return 0; /* overlong, or beyond U+10FFFF */
    return n;
}

/* Appends the escaped form of one character at p to l; returns how many bytes of p it took. */
static size_t escape_one(line *l, const unsigned char *p)
{
    static const char hex[] = "0123456789abcdef";
    unsigned c = p[0];
    if (c == '"' || c == '\\') {
        char esc[2] = {'\\', (char)c};
        add(l, esc, 2);
        return 1;
    }
    if (c < 0x20 || c == 0x7F) {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        add(l, esc, 6);
        return 1;
    }
    if (c < 0x80) {
        add(l, (const char *)p, 1);
        return 1;
    }
    size_t n = utf8_length(p);
    if (!n) {
        add_str(l, "\\ufffd"); /* not UTF-8: the replacement character, so the line stays JSON */
        return 1;
    }
    add(l, (const char *)p, n);
    return n;
}

static void add_escaped(line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p)
        p += escape_one(l, p);
}

bool lg_escape(char **out, size_t *len, size_t *cap, const char *s)
{
    line l = {.text = *out, .len = *len, .cap = *cap};
    if (!l.text) /* no buffer yet: start one on the heap (never the local stack buffer) */
        l.cap = 0;
    if (!l.text && !fa_reserve(&l.text, &l.cap, 1, 1))
        return false;
    l.text[l.len] = '\0';
    add_escaped(&l, s);
    *out = l.text, *len = l.len, *cap = l.cap;
    return !l.failed;
}

/* "YYYY-MM-DDThh:mm:ss.sssZ" */
static void add_timestamp(line *l, int64_t ms)
{
    char text[FDT_INSTANT_LEN];
    fdt_format_instant(ms, text);
    add_str(l, text);
}

static void add_field(line *l, const lg_field *f)
{
    char number[32];
    add_str(l, ",\"");
    add_escaped(l, f->key ? f->key : "");
    add_str(l, "\":");
    switch (f->kind) {
    case LG_KIND_STR:
        if (!f->v.s) {
            add_str(l, "null");
            return;
        }
        add_str(l, "\"");
        add_escaped(l, f->v.s);
        add_str(l, "\"");
        return;
    case LG_KIND_INT:
        snprintf(number, sizeof number, "%" PRId64, f->v.i);
        add_str(l, number);
        return;
    case LG_KIND_UINT:
        snprintf(number, sizeof number, "%" PRIu64, f->v.u);
        add_str(l, number);
        return;
    case LG_KIND_BOOL: add_str(l, f->v.b ? "true" : "false"); return;
    }
    add_str(l, "null");
}

/* The whole buffer in one write; a short write (a signal, a full disk) continues where it stopped. */
static bool write_all(int fd, const char *text, size_t len)
{
    while (len) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        text += n, len -= (size_t)n;
    }
    return true;
}

bool lg_write_at(const lg_logger *log, int64_t ts_ms, lg_level level, const lg_field *fields, size_t count)
{
    if (log->fd < 0 || level < log->min_level)
        return true;
    line l = {.cap = sizeof l.first};
    l.text = l.first;
    add_str(&l, "{\"ts\":\"");
    add_timestamp(&l, ts_ms);
    add_str(&l, "\",\"level\":\"");
    add_str(&l, lg_level_name(level));
    add_str(&l, "\"");
    for (size_t i = 0; i < count; i++)
        add_field(&l, &fields[i]);
    add_str(&l, "}\n");
    bool ok = !l.failed && write_all(log->fd, l.text, l.len);
    if (on_heap(&l))
        free(l.text);
    return ok;
}

static int64_t now_ms(const lg_logger *log)
{
    if (log->clock_ms)
        return log->clock_ms(log->clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool lg_write(const lg_logger *log, lg_level level, const lg_field *fields, size_t count)
{
    if (log->fd < 0 || level < log->min_level)
        return true;
    return lg_write_at(log, now_ms(log), level, fields, count);
}

bool lg_msg(const lg_logger *log, lg_level level, const char *format, ...)
{
    if (log->fd < 0 || level < log->min_level)
        return true;
    va_list ap, again;
    va_start(ap, format);
    va_copy(again, ap);
    char first[512], *text = first;
    int n = vsnprintf(first, sizeof first, format, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= sizeof first && (text = malloc((size_t)n + 1)) != NULL)
        vsnprintf(text, (size_t)n + 1, format, again); /* longer than the first try: the whole text */
    va_end(again);
    if (n < 0 || !text)
        return false;
    bool ok = lg_write(log, level, LG_FIELDS(LG_STR("msg", text)));
    if (text != first)
        free(text);
    return ok;
}
