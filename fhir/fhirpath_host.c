/*
 * fhir/fhirpath_host.c — functions the host registers (see "host functions"
 * in fhirpath.h), and calling them.
 *
 * The registry is a list of individually allocated entries: a compiled
 * expression points at its entry (fp_ast.host), so the entry must not move
 * even if a careless host adds a function after compiling. Lookups are a
 * linear scan at compile time only; evaluation follows the pointer.
 */
#include "fhir/fhirpath_internal.h"

#include "fhir/array.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fp_functions {
    fp_host_function **items;
    size_t count, capacity;
};

static bool fail(fp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(fp_error *err, const char *fmt, ...)
{
    if (err) {
        err->position = -1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* [A-Za-z_][A-Za-z0-9_]*: what the parser reads as a function name. */
static bool is_identifier(const char *s)
{
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return false;
    for (s++; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

fp_functions *fp_functions_new(void)
{
    return calloc(1, sizeof(fp_functions));
}

const fp_host_function *fp_host_find(const fp_functions *fns, const char *name, size_t len)
{
    for (size_t i = 0; fns && i < fns->count; i++)
        if (fns->items[i]->name_len == len && !memcmp(fns->items[i]->name, name, len))
            return fns->items[i];
    return NULL;
}

bool fp_functions_add(fp_functions *fns, const char *name, unsigned min_args, unsigned max_args, fp_host_fn fn,
                      void *user_arg, fp_error *err)
{
    if (!fns || !name || !fn)
        return fail(err, "fp_functions_add needs a registry, a name and a callback");
    size_t len = strlen(name);
    if (!is_identifier(name))
        return fail(err, "'%.60s' is not a FHIRPath identifier", name);
    if (fp_function_find(name, len))
        return fail(err, "%.60s() is a built-in function: a host function cannot replace it", name);
    if (fp_host_find(fns, name, len))
        return fail(err, "%.60s() is already registered", name);
    if (min_args > max_args || max_args > FP_MAX_ARGS)
        return fail(err, "%.60s(): the argument counts must satisfy min <= max <= %u", name, FP_MAX_ARGS);
    fp_host_function *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name)) ||
        !fa_reserve(&fns->items, &fns->capacity, fns->count + 1, sizeof *fns->items)) {
        if (f)
            free(f->name);
        free(f);
        return fail(err, "out of memory");
    }
    f->name_len = len;
    f->min_args = min_args;
    f->max_args = max_args;
    f->fn = fn;
    f->user_arg = user_arg;
    fns->items[fns->count++] = f;
    return true;
}

size_t fp_functions_count(const fp_functions *fns)
{
    return fns ? fns->count : 0;
}

void fp_functions_free(fp_functions *fns)
{
    if (!fns)
        return;
    for (size_t i = 0; i < fns->count; i++) {
        free(fns->items[i]->name);
        free(fns->items[i]);
    }
    free(fns->items);
    free(fns);
}

bool fp_call_host(fp_ctx *c, const fp_ast *n, const fp_collection *in, const fp_scope *s, fp_collection *out)
{
    const fp_host_function *h = n->host;
    fp_collection args[FP_MAX_ARGS];
    for (unsigned k = 0; k < n->argc; k++)
        if (!fp_eval(c, n->args[k], s, &args[k]))
            return false;
    fp_host_call call = {
        .name = h->name,
        .input = in,
        .args = n->argc ? args : NULL,
        .argc = n->argc,
        .env = c->env,
        .schema = c->schema,
        .arena = c->arena,
    };
    fp_error err = {.position = -1, .message = ""};
    fpc_empty(out);
    if (!h->fn(h->user_arg, &call, out, &err))
        return fp_fail(c, n, "%s(): %s", h->name, err.message[0] ? err.message : "failed");
    return true;
}
