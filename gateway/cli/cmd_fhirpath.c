/*
 * gateway/cli/cmd_fhirpath.c — `fhirgw fhirpath`: evaluate one FHIRPath
 * expression and print the result collection as a JSON array.
 *
 *   fhirgw fhirpath [--now DATETIME] EXPRESSION [FILE|-]
 *
 * FILE is a FHIR JSON resource (`-` reads stdin); without FILE the
 * expression runs with no input (literals, functions of them). Dates and
 * times print as their FHIRPath literal text without '@', quantities as
 * "value 'unit'". --now pins now()/today() (tests, reproducible rules).
 * Exit status: 0 evaluated, 1 the expression failed (syntax or evaluation
 * error, with its position on stderr), 2 usage or I/O problem.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "fhir/fhirpath.h"
#include "fhir/json.h"
#include "gateway/cli/cli.h"
#include "gateway/util/files.h"

static void usage(FILE *to)
{
    fprintf(to, "usage: fhirgw fhirpath [--now DATETIME] EXPRESSION [FILE|-]\n"
                "  evaluates EXPRESSION on the FHIR JSON resource in FILE (- = stdin; none = no input)\n"
                "  and prints the result collection as a JSON array\n"
                "  --now DATETIME   the value of now()/today(), e.g. 2024-05-01T12:00:00+02:00\n"
                "exit status: 0 evaluated, 1 expression error, 2 usage or I/O problem\n");
}

/* Read all of stdin into a malloc'd, NUL-terminated buffer. */
static char *read_stdin(size_t *len)
{
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        /* room for a 64 KiB read and the NUL */
        if (!fa_reserve(&buf, &cap, n + 65536 + 1, 1)) {
            free(buf);
            return NULL;
        }
        got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
    } while (got > 0);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Show where in the expression the problem is: the text, and a caret under the position. */
static void report(const char *expr, const fp_error *err)
{
    fprintf(stderr, "fhirgw fhirpath: %s", err->message);
    if (err->position < 0 || strchr(expr, '\n')) {
        if (err->position >= 0)
            fprintf(stderr, " (at character %d)", err->position);
        fputc('\n', stderr);
        return;
    }
    fprintf(stderr, " (at character %d)\n  %s\n  %*s^\n", err->position, expr, err->position, "");
}

static bool parse_now(const char *text, fp_datetime *now)
{
    /* Through the engine itself: @TEXT must be a DateTime or Date literal. */
    size_t n = strlen(text);
    char *src = malloc(n + 2);
    if (!src)
        return false;
    src[0] = '@';
    memcpy(src + 1, text, n + 1);
    fp_error err;
    fp_expr *e = fp_compile(src, NULL, &err);
    free(src);
    if (!e)
        return false;
    fp_arena *a = fp_arena_new();
    fp_env env;
    fp_env_init(&env, NULL);
    fp_collection out;
    bool ok = a && fp_evaluate(e, &env, &(fp_collection){NULL, 0}, a, &out, &err) && out.count == 1 &&
              (out.items[0].kind == FP_DATETIME || out.items[0].kind == FP_DATE);
    if (ok)
        *now = out.items[0].u.dt;
    fp_arena_free(a);
    fp_expr_free(e);
    return ok;
}

int cmd_fhirpath(int argc, char **argv)
{
    const char *expr = NULL, *file = NULL;
    fp_datetime now;
    bool pinned = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--now")) {
            if (i + 1 >= argc || !parse_now(argv[++i], &now)) {
                fprintf(stderr, "fhirgw fhirpath: --now needs a date or dateTime such as 2024-05-01T12:00:00Z\n");
                return 2;
            }
            pinned = true;
        } else if (!expr) {
            expr = argv[i];
        } else if (!file) {
            file = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!expr) {
        usage(stderr);
        return 2;
    }

    fp_error err;
    fp_expr *e = fp_compile(expr, NULL, &err);
    if (!e) {
        report(expr, &err);
        return 1;
    }

    char *buf = NULL;
    size_t len = 0;
    fj_doc doc = {0};
    if (file) {
        buf = !strcmp(file, "-") ? read_stdin(&len) : files_read(file, &len);
        if (!buf) {
            fprintf(stderr, "fhirgw fhirpath: cannot read %s: %s\n", file, strerror(errno));
            fp_expr_free(e);
            return 2;
        }
        fj_error jerr;
        if (!fj_parse(buf, len, NULL, &doc, &jerr)) {
            fprintf(stderr, "fhirgw fhirpath: %s: line %u, column %u: %s\n", file, jerr.line, jerr.column,
                    jerr.message);
            free(buf);
            fp_expr_free(e);
            return 2;
        }
    }

    fp_env env;
    fp_env_init(&env, file ? &doc : NULL);
    if (pinned)
        env.now = &now;
    fp_arena *arena = fp_arena_new();
    fp_collection out;
    int status = 0;
    if (!arena) {
        fprintf(stderr, "fhirgw fhirpath: out of memory\n");
        status = 2;
    } else if (!fp_evaluate_node(e, &env, file ? 0 : FP_NO_NODE, NULL, NULL, arena, &out, &err)) {
        report(expr, &err);
        status = 1;
    } else {
        char *json = fp_collection_json(&out);
        if (json)
            puts(json);
        else
            fprintf(stderr, "fhirgw fhirpath: out of memory\n");
        status = json ? 0 : 2;
        free(json);
    }
    fp_arena_free(arena);
    fj_doc_free(&doc);
    free(buf);
    fp_expr_free(e);
    return status;
}
