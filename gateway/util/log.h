/*
 * gateway/util/log.h — the one JSON-lines logger (prefix lg_).
 *
 * Every log line of the gateway (the error log of `fhirgw serve`, the access
 * log of gateway/http, the access decisions of gateway/rest) is one JSON
 * object on one line:
 *
 *     {"ts":"2025-06-01T12:00:00.123Z","level":"info","request_id":"…","status":200}
 *
 * ts (UTC, milliseconds) and level come first, then the caller's fields in
 * the order given. Keys and string values are escaped as JSON requires
 * (quote, backslash, control characters as \u00XX) and bytes that are not
 * UTF-8 become U+FFFD, so a line is valid JSON whatever a client put in a
 * path. Nothing is cut: the line is as long as its fields (bound what you
 * pass, not the logger). A line leaves in one write(2) on a file opened with
 * O_APPEND, so lines of different threads and processes never interleave.
 *
 *     lg_logger log;
 *     if (!lg_open(&log, "/var/log/fhirgw/access.log", STDOUT_FILENO, err, sizeof err)) ...
 *     lg_write(&log, LG_INFO, LG_FIELDS(LG_STR("event", "started"), LG_INT("workers", 4)));
 *     lg_msg(&log, LG_ERROR, "store %s: %s", path, reason);      // {"ts","level","msg"}
 *     lg_close(&log);
 *
 * Threads: a logger is not changed after lg_open/lg_init, so any number of
 * threads may write through one at once; each line builds on its own buffer.
 * Memory: a logger owns the descriptor lg_open opened (lg_close closes it);
 * lg_init borrows one. Field values are only read during the call.
 */
#ifndef GATEWAY_LOG_H
#define GATEWAY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lg_level { LG_DEBUG, LG_INFO, LG_WARNING, LG_ERROR } lg_level;

typedef enum lg_kind { LG_KIND_STR, LG_KIND_INT, LG_KIND_UINT, LG_KIND_BOOL } lg_kind;

/* One key/value of a line. A NULL string value is written as null. */
typedef struct lg_field {
    const char *key;
    lg_kind kind;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        bool b;
    } v;
} lg_field;

#define LG_STR(k, x) ((lg_field){.key = (k), .kind = LG_KIND_STR, .v.s = (x)})
#define LG_INT(k, x) ((lg_field){.key = (k), .kind = LG_KIND_INT, .v.i = (int64_t)(x)})
#define LG_UINT(k, x) ((lg_field){.key = (k), .kind = LG_KIND_UINT, .v.u = (uint64_t)(x)})
#define LG_BOOL(k, x) ((lg_field){.key = (k), .kind = LG_KIND_BOOL, .v.b = (x)})
/* The fields argument pair of lg_write: LG_FIELDS(LG_STR(...), LG_INT(...)). */
#define LG_FIELDS(...) (const lg_field[]){__VA_ARGS__}, sizeof((const lg_field[]){__VA_ARGS__}) / sizeof(lg_field)

typedef struct lg_logger {
    int fd;                         /* -1: off (every write succeeds and does nothing) */
    bool owns_fd;                   /* lg_close closes it */
    lg_level min_level;             /* lines below it are not written */
    int64_t (*clock_ms)(void *arg); /* "ts" of lg_write; NULL: CLOCK_REALTIME */
    void *clock_arg;
} lg_logger;

/* A logger writing to fd (borrowed; -1 = off), every level, real time. */
void lg_init(lg_logger *log, int fd);

/* A logger on path: "" = off, "-" = std_fd (borrowed, e.g. STDOUT_FILENO), else the file, appended to
 * and created 0640 when missing. False with a sentence in err when the file cannot be opened. */
bool lg_open(lg_logger *log, const char *path, int std_fd, char *err, size_t errlen);

/* A logger on stderr, every level, real time: the default where none is configured. */
const lg_logger *lg_stderr(void);

/* Closes the file lg_open opened; the logger is off afterwards. */
void lg_close(lg_logger *log);

/* The level's name in a line: "debug", "info", "warning", "error". */
const char *lg_level_name(lg_level level);

/* Write one line stamped now (the logger's clock). False when the line could not be built or written. */
bool lg_write(const lg_logger *log, lg_level level, const lg_field *fields, size_t count);

/* The same with the time given (epoch ms): an event's own time, or the caller's clock. */
bool lg_write_at(const lg_logger *log, int64_t ts_ms, lg_level level, const lg_field *fields, size_t count);

/* A line with one field, "msg", formatted like printf (the text whole, however long). */
bool lg_msg(const lg_logger *log, lg_level level, const char *format, ...) __attribute__((format(printf, 3, 4)));

/*
 * The JSON string escaping of the logger, for other JSON-lines writers:
 * appends the escaped s (without quotes) to out, which grows with
 * fa_reserve (*len bytes used of *cap, NUL-terminated). False when out of
 * memory (out unchanged but for a partial append).
 */
bool lg_escape(char **out, size_t *len, size_t *cap, const char *s);

#endif
