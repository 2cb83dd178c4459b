/*
 * tests/test_log.c — the JSON-lines logger (gateway/util/log.h): every line
 * is valid JSON whatever its strings hold, nothing is cut, ts and level come
 * first, and lines of concurrent writers never interleave.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/util/log.h"

static char path[64];

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/fhirgw-log-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
}

static void teardown(void)
{
    unlink(path);
}

TestSuite(log, .init = setup, .fini = teardown);

/* The whole file (malloc'd). */
static char *slurp(size_t *len)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return text;
}

static int64_t pinned_clock(void *arg)
{
    (void)arg;
    return 1717243200123; /* 2024-06-01T12:00:00.123Z */
}

Test(log, fields_in_order_after_ts_and_level)
{
    lg_logger log;
    char err[256];
    cr_assert(lg_open(&log, path, STDOUT_FILENO, err, sizeof err), "%s", err);
    log.clock_ms = pinned_clock;
    cr_assert(
        lg_write(&log, LG_WARNING,
                 LG_FIELDS(LG_STR("event", "denied"), LG_INT("status", -404), LG_UINT("bytes", 18446744073709551615u),
                           LG_BOOL("gone", true), LG_STR("where", NULL))));
    lg_close(&log);
    char *text = slurp(NULL);
    cr_expect_str_eq(text,
                     "{\"ts\":\"2024-06-01T12:00:00.123Z\",\"level\":\"warning\",\"event\":\"denied\",\"status\":-404,"
                     "\"bytes\":18446744073709551615,\"gone\":true,\"where\":null}\n");
    free(text);
}

Test(log, every_string_is_escaped_and_stays_json)
{
    lg_logger log;
    char err[256];
    cr_assert(lg_open(&log, path, STDOUT_FILENO, err, sizeof err));
    /* quotes, backslashes, control characters, DEL, valid UTF-8, and bytes that are not UTF-8 */
    const char *nasty = "a\"b\\c\n\t\x01\x7f é \xe2\x82\xac \xff\xc3 \xed\xa0\x80 end";
    cr_assert(lg_write(&log, LG_ERROR, LG_FIELDS(LG_STR("path", nasty), LG_STR("k\"ey", "v"))));
    lg_close(&log);
    char *text = slurp(NULL);
    cr_expect_not_null(strstr(text, "\"path\":\"a\\\"b\\\\c\\u000a\\u0009\\u0001\\u007f é \xe2\x82\xac "
                                    "\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd end\""),
                       "%s", text);
    cr_expect_not_null(strstr(text, "\"k\\\"ey\":\"v\""), "%s", text);
    json_object *o = json_tokener_parse(text);
    cr_expect_not_null(o, "not JSON: %s", text);
    json_object *p;
    cr_expect(json_object_object_get_ex(o, "path", &p));
    json_object_put(o);
    free(text);
}

Test(log, nothing_is_cut)
{
    lg_logger log;
    char err[256];
    cr_assert(lg_open(&log, path, STDOUT_FILENO, err, sizeof err));
    size_t big = 200 * 1024;
    char *value = malloc(big + 1);
    memset(value, 'x', big);
    value[big] = '\0';
    cr_assert(lg_write(&log, LG_INFO, LG_FIELDS(LG_STR("path", value), LG_STR("after", "kept"))));
    cr_assert(lg_msg(&log, LG_ERROR, "%s: %s", "a long reason", value));
    lg_close(&log);
    size_t len;
    char *text = slurp(&len);
    char *second = strchr(text, '\n') + 1;
    *strchr(text, '\n') = '\0';
    json_object *o = json_tokener_parse(text);
    cr_assert_not_null(o);
    cr_expect_eq(strlen(json_object_get_string(json_object_object_get(o, "path"))), big);
    cr_expect_str_eq(json_object_get_string(json_object_object_get(o, "after")), "kept");
    json_object_put(o);
    o = json_tokener_parse(second);
    cr_assert_not_null(o, "the message line is JSON");
    cr_expect_eq(strlen(json_object_get_string(json_object_object_get(o, "msg"))), big + strlen("a long reason: "));
    json_object_put(o);
    free(text);
    free(value);
}

Test(log, targets_and_levels)
{
    lg_logger log;
    char err[256];
    cr_assert(lg_open(&log, "", STDOUT_FILENO, err, sizeof err), "empty path: off");
    cr_expect_eq(log.fd, -1);
    cr_expect(lg_write(&log, LG_ERROR, LG_FIELDS(LG_STR("x", "y"))), "an off logger accepts and drops");
    cr_assert(lg_open(&log, "-", STDERR_FILENO, err, sizeof err));
    cr_expect_eq(log.fd, STDERR_FILENO);
    lg_close(&log); /* borrowed: not closed */
    cr_expect_neq(fcntl(STDERR_FILENO, F_GETFD), -1);
    cr_expect_eq(lg_stderr()->fd, STDERR_FILENO);
    cr_expect_not(lg_open(&log, "/nonexistent/dir/x.log", STDOUT_FILENO, err, sizeof err));
    cr_expect_not_null(strstr(err, "/nonexistent/dir/x.log"), "%s", err);

    cr_assert(lg_open(&log, path, STDOUT_FILENO, err, sizeof err));
    log.min_level = LG_WARNING;
    lg_msg(&log, LG_INFO, "dropped");
    lg_msg(&log, LG_ERROR, "kept");
    lg_close(&log);
    char *text = slurp(NULL);
    cr_expect_null(strstr(text, "dropped"));
    cr_expect_not_null(strstr(text, "\"level\":\"error\",\"msg\":\"kept\""), "%s", text);
    free(text);
}

#define THREADS 4
#define LINES 500

static void *writer(void *arg)
{
    const lg_logger *log = arg;
    char value[3000];
    memset(value, 'a' + (int)(pthread_self() % 26), sizeof value - 1);
    value[sizeof value - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        lg_write(log, LG_INFO, LG_FIELDS(LG_INT("i", i), LG_STR("fill", value)));
    return NULL;
}

/* Lines longer than a pipe's atomic size from several threads: each arrives whole. */
Test(log, concurrent_lines_never_interleave)
{
    lg_logger log;
    char err[256];
    cr_assert(lg_open(&log, path, STDOUT_FILENO, err, sizeof err));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, writer, &log);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    lg_close(&log);
    char *text = slurp(NULL);
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "line %d is not JSON", lines);
        json_object_put(o);
        lines++;
    }
    cr_expect_eq(lines, THREADS * LINES);
    free(text);
}

Test(log, escape_for_other_writers)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert(lg_escape(&out, &len, &cap, "say \"hi\"\n"));
    cr_assert(lg_escape(&out, &len, &cap, "\\"));
    cr_expect_str_eq(out, "say \\\"hi\\\"\\u000a\\\\");
    cr_expect_eq(len, strlen(out));
    free(out);
}
