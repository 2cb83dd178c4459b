/*
 * gateway/http/metrics.c — counters, gauges, histograms; Prometheus text output.
 *
 * Layout of a series: MX_SHARDS shards, each a run of 64-bit cells padded to
 * a whole number of cache lines so two shards never share one:
 *
 *     cell 0            counter value / gauge value / histogram count
 *     cell 1            histogram sum (the bits of a double, updated by CAS)
 *     cell 2 .. 2+n     histogram bucket counts, NOT cumulative (+Inf last)
 *
 * A thread picks its shard once (round robin) and keeps it, so the workers of
 * the HTTP server each write their own cache lines. Cells are atomics with
 * relaxed ordering: two threads that share a shard stay correct, just slower.
 * Gauges live in shard 0 only, because "set" must be a single store.
 *
 * Series of a family form a singly linked list that only ever grows at the
 * head; readers load the head with acquire ordering and walk without a lock.
 */
#include "gateway/http/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"

const double MX_LATENCY_BUCKETS[MX_LATENCY_BUCKET_COUNT] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};

#define CACHE_LINE 64
#define CELLS_PER_LINE (CACHE_LINE / sizeof(uint64_t))
#define OVERFLOW_VALUE "overflow"

typedef enum mx_type { MX_COUNTER, MX_GAUGE, MX_HISTOGRAM } mx_type;

struct mx_metric {
    mx_metric *next; /* older series; immutable once published */
    mx_family *family;
    size_t ordinal; /* creation order, for stable output */
    char *values[MX_MAX_LABELS];
    _Atomic uint64_t *cells; /* MX_SHARDS * family->shard_cells */
};

struct mx_family {
    mx_family *next; /* registry list, registration order */
    mx_type type;
    char *name, *help;
    size_t label_count;
    char *labels[MX_MAX_LABELS];
    size_t bound_count;
    double bounds[MX_MAX_BUCKETS];
    size_t shard_cells;        /* cells per shard, a multiple of CELLS_PER_LINE */
    _Atomic(mx_metric *) head; /* newest series */
    size_t series_count;       /* under lock */
    mx_metric *overflow;       /* under lock */
    pthread_mutex_t lock;      /* creating series */
};

struct mx_registry {
    pthread_mutex_t lock; /* registering families */
    mx_family *first, *last;
};

/* ---- Shards ------------------------------------------------------------- */

static _Atomic unsigned next_shard;
static _Thread_local unsigned thread_shard = ~0u;

static unsigned my_shard(void)
{
    if (thread_shard == ~0u)
        thread_shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % MX_SHARDS;
    return thread_shard;
}

static _Atomic uint64_t *shard_cells(mx_metric *m, unsigned shard)
{
    return m->cells + (size_t)shard * m->family->shard_cells;
}

/* ---- Registry and families ---------------------------------------------- */

mx_registry *mx_registry_new(void)
{
    mx_registry *reg = calloc(1, sizeof *reg);
    if (reg)
        pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

static void metric_free(mx_metric *m)
{
    for (size_t i = 0; i < MX_MAX_LABELS; i++)
        free(m->values[i]);
    free(m->cells);
    free(m);
}

static void family_free(mx_family *f)
{
    mx_metric *m = atomic_load(&f->head);
    while (m) {
        mx_metric *next = m->next;
        metric_free(m);
        m = next;
    }
    for (size_t i = 0; i < f->label_count; i++)
        free(f->labels[i]);
    pthread_mutex_destroy(&f->lock);
    free(f->name);
    free(f->help);
    free(f);
}

void mx_registry_free(mx_registry *reg)
{
    if (!reg)
        return;
    mx_family *f = reg->first;
    while (f) {
        mx_family *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static bool valid_name(const char *s, bool colon_ok)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Split "a,b" into label names; false when one is invalid or there are too many. */
static bool parse_labels(mx_family *f, const char *labels)
{
    if (!labels || !*labels)
        return true;
    const char *p = labels;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (f->label_count == MX_MAX_LABELS)
            return false;
        char *name = strndup(p, len);
        if (!name)
            return false;
        f->labels[f->label_count++] = name;
        bool reserved = strncmp(name, "__", 2) == 0 || (f->type == MX_HISTOGRAM && strcmp(name, "le") == 0);
        if (!valid_name(name, false) || reserved)
            return false;
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

static bool same_shape(const mx_family *a, const mx_family *b)
{
    if (a->type != b->type || a->label_count != b->label_count || a->bound_count != b->bound_count)
        return false;
    for (size_t i = 0; i < a->label_count; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->bound_count; i++)
        if (a->bounds[i] != b->bounds[i])
            return false;
    return true;
}

static mx_family *family_new(mx_type type, const char *name, const char *help, const char *labels, const double *bounds,
                             size_t bound_count)
{
    if (!valid_name(name, true) || bound_count > MX_MAX_BUCKETS || (bound_count && !bounds))
        return NULL;
    for (size_t i = 1; i < bound_count; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    mx_family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->bound_count = bound_count;
    if (bound_count)
        memcpy(f->bounds, bounds, bound_count * sizeof *bounds);
    size_t cells = 2 + (type == MX_HISTOGRAM ? bound_count + 1 : 0);
    f->shard_cells = (cells + CELLS_PER_LINE - 1) / CELLS_PER_LINE * CELLS_PER_LINE;
    if (!f->name || !f->help || !parse_labels(f, labels)) {
        family_free(f);
        return NULL;
    }
    return f;
}

static mx_family *register_family(mx_registry *reg, mx_type type, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t bound_count)
{
    if (!reg)
        return NULL;
    mx_family *fresh = family_new(type, name, help, labels, bounds, bound_count);
    if (!fresh)
        return NULL;
    pthread_mutex_lock(&reg->lock);
    for (mx_family *f = reg->first; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            pthread_mutex_unlock(&reg->lock);
            mx_family *existing = same_shape(f, fresh) ? f : NULL;
            family_free(fresh);
            return existing;
        }
    }
    if (reg->last)
        reg->last->next = fresh;
    else
        reg->first = fresh;
    reg->last = fresh;
    pthread_mutex_unlock(&reg->lock);
    return fresh;
}

mx_family *mx_counter(mx_registry *reg, const char *name, const char *help, const char *labels)
{
    return register_family(reg, MX_COUNTER, name, help, labels, NULL, 0);
}

mx_family *mx_gauge(mx_registry *reg, const char *name, const char *help, const char *labels)
{
    return register_family(reg, MX_GAUGE, name, help, labels, NULL, 0);
}

mx_family *mx_histogram(mx_registry *reg, const char *name, const char *help, const char *labels, const double *bounds,
                        size_t bound_count)
{
    return register_family(reg, MX_HISTOGRAM, name, help, labels, bounds, bound_count);
}

/* ---- Series ------------------------------------------------------------- */

static bool values_match(const mx_metric *m, const char *const *values)
{
    for (size_t i = 0; i < m->family->label_count; i++)
        if (strcmp(m->values[i], values[i] ? values[i] : "") != 0)
            return false;
    return true;
}

static mx_metric *find_series(mx_family *f, const char *const *values)
{
    for (mx_metric *m = atomic_load_explicit(&f->head, memory_order_acquire); m; m = m->next)
        if (m != f->overflow && values_match(m, values))
            return m;
    return NULL;
}

/* A new series with the given values (all "overflow" when values is NULL). */
static mx_metric *series_new(mx_family *f, const char *const *values)
{
    mx_metric *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->family = f;
    size_t bytes = MX_SHARDS * f->shard_cells * sizeof(uint64_t);
    m->cells = aligned_alloc(CACHE_LINE, bytes);
    bool ok = m->cells != NULL;
    for (size_t i = 0; ok && i < f->label_count; i++) {
        const char *v = values ? (values[i] ? values[i] : "") : OVERFLOW_VALUE;
        ok = (m->values[i] = strdup(v)) != NULL;
    }
    if (!ok) {
        metric_free(m);
        return NULL;
    }
    for (size_t i = 0; i < MX_SHARDS * f->shard_cells; i++)
        atomic_init(&m->cells[i], 0);
    return m;
}

static void publish(mx_family *f, mx_metric *m)
{
    m->ordinal = f->series_count++;
    m->next = atomic_load_explicit(&f->head, memory_order_relaxed);
    atomic_store_explicit(&f->head, m, memory_order_release);
}

/* Called with f->lock held, when the series limit is reached or memory ran out. */
static mx_metric *overflow_series(mx_family *f)
{
    if (!f->overflow && (f->overflow = series_new(f, NULL)) != NULL)
        publish(f, f->overflow);
    return f->overflow;
}

mx_metric *mx_series(mx_family *f, const char *const *values)
{
    static const char *const no_values[MX_MAX_LABELS] = {0};
    if (!f)
        return NULL;
    if (!values)
        values = no_values;
    mx_metric *m = find_series(f, values);
    if (m)
        return m;
    pthread_mutex_lock(&f->lock);
    m = find_series(f, values);
    if (!m && f->series_count < MX_MAX_SERIES) {
        m = series_new(f, values);
        if (m)
            publish(f, m);
    }
    if (!m)
        m = overflow_series(f);
    pthread_mutex_unlock(&f->lock);
    return m;
}

/* ---- Updates ------------------------------------------------------------- */

void mx_add(mx_metric *m, uint64_t n)
{
    if (!m)
        return;
    unsigned shard = m->family->type == MX_GAUGE ? 0 : my_shard();
    atomic_fetch_add_explicit(&shard_cells(m, shard)[0], n, memory_order_relaxed);
}

void mx_inc(mx_metric *m)
{
    mx_add(m, 1);
}

void mx_gauge_add(mx_metric *m, int64_t delta)
{
    if (m)
        atomic_fetch_add_explicit(&m->cells[0], (uint64_t)delta, memory_order_relaxed);
}

void mx_gauge_set(mx_metric *m, int64_t value)
{
    if (m)
        atomic_store_explicit(&m->cells[0], (uint64_t)value, memory_order_relaxed);
}

static void add_double(_Atomic uint64_t *cell, double value)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed), fresh;
    do {
        double sum;
        memcpy(&sum, &old, sizeof sum);
        sum += value;
        memcpy(&fresh, &sum, sizeof fresh);
    } while (!atomic_compare_exchange_weak_explicit(cell, &old, fresh, memory_order_relaxed, memory_order_relaxed));
}

void mx_observe(mx_metric *m, double value)
{
    if (!m || m->family->type != MX_HISTOGRAM)
        return;
    const mx_family *f = m->family;
    size_t bucket = 0;
    while (bucket < f->bound_count && value > f->bounds[bucket])
        bucket++;
    _Atomic uint64_t *cells = shard_cells(m, my_shard());
    atomic_fetch_add_explicit(&cells[0], 1, memory_order_relaxed);
    add_double(&cells[1], value);
    atomic_fetch_add_explicit(&cells[2 + bucket], 1, memory_order_relaxed);
}

/* Sum of one cell over all shards. */
static uint64_t cell_total(mx_metric *m, size_t cell)
{
    uint64_t total = 0;
    for (unsigned s = 0; s < MX_SHARDS; s++)
        total += atomic_load_explicit(&shard_cells(m, s)[cell], memory_order_relaxed);
    return total;
}

static double sum_total(mx_metric *m)
{
    double total = 0;
    for (unsigned s = 0; s < MX_SHARDS; s++) {
        uint64_t bits = atomic_load_explicit(&shard_cells(m, s)[1], memory_order_relaxed);
        double d;
        memcpy(&d, &bits, sizeof d);
        total += d;
    }
    return total;
}

int64_t mx_value(mx_metric *m)
{
    return m ? (int64_t)cell_total(m, 0) : 0;
}

/* ---- Rendering ------------------------------------------------------------ */

typedef struct text {
    char *data;
    size_t len, cap;
    bool failed;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (!fa_reserve(&t->data, &t->cap, t->len + n + 1, 1)) {
        t->failed = true;
        return;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_puts(text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...)
{
    char first[128], *buf = first;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(first, sizeof first, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= sizeof first) { /* a long metric name: format it again, whole */
        buf = malloc((size_t)n + 1);
        if (buf)
            vsnprintf(buf, (size_t)n + 1, fmt, again);
        else
            t->failed = true;
    }
    va_end(again);
    if (n > 0 && buf)
        text_add(t, buf, (size_t)n);
    if (buf != first)
        free(buf);
}

/* Escape backslash and newline (HELP), plus the double quote (label values). */
static void text_escaped(text *t, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            text_puts(t, "\\\\");
        else if (*s == '\n')
            text_puts(t, "\\n");
        else if (quote && *s == '"')
            text_puts(t, "\\\"");
        else
            text_add(t, s, 1);
    }
}

/* {a="x",b="y"} with an optional extra le label; nothing when there are none. */
static void render_labels(text *t, const mx_metric *m, const char *le)
{
    const mx_family *f = m->family;
    if (f->label_count == 0 && !le)
        return;
    text_puts(t, "{");
    for (size_t i = 0; i < f->label_count; i++) {
        text_printf(t, "%s%s=\"", i ? "," : "", f->labels[i]);
        text_escaped(t, m->values[i], true);
        text_puts(t, "\"");
    }
    if (le)
        text_printf(t, "%sle=\"%s\"", f->label_count ? "," : "", le);
    text_puts(t, "}");
}

static void render_histogram(text *t, mx_metric *m)
{
    const mx_family *f = m->family;
    uint64_t cumulative = 0;
    char le[40];
    for (size_t b = 0; b <= f->bound_count; b++) {
        cumulative += cell_total(m, 2 + b);
        if (b < f->bound_count)
            snprintf(le, sizeof le, "%.15g", f->bounds[b]);
        else
            strcpy(le, "+Inf");
        text_printf(t, "%s_bucket", f->name);
        render_labels(t, m, le);
        text_printf(t, " %llu\n", (unsigned long long)cumulative);
    }
    text_printf(t, "%s_sum", f->name);
    render_labels(t, m, NULL);
    text_printf(t, " %.10g\n", sum_total(m));
    text_printf(t, "%s_count", f->name);
    render_labels(t, m, NULL);
    /* the +Inf bucket and the count are read separately and may differ by an
     * observation in flight; Prometheus tolerates that, but print the bucket
     * total so the two always agree in one scrape */
    text_printf(t, " %llu\n", (unsigned long long)cumulative);
}

static void render_series(text *t, mx_metric *m)
{
    const mx_family *f = m->family;
    if (f->type == MX_HISTOGRAM) {
        render_histogram(t, m);
        return;
    }
    text_puts(t, f->name);
    render_labels(t, m, NULL);
    if (f->type == MX_GAUGE)
        text_printf(t, " %lld\n", (long long)(int64_t)cell_total(m, 0));
    else
        text_printf(t, " %llu\n", (unsigned long long)cell_total(m, 0));
}

static void render_family(text *t, mx_family *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    text_printf(t, "# HELP %s ", f->name);
    text_escaped(t, f->help, false);
    text_printf(t, "\n# TYPE %s %s\n", f->name, type_names[f->type]);

    /* The list runs newest first; print in creation order. */
    mx_metric *head = atomic_load_explicit(&f->head, memory_order_acquire);
    size_t count = head ? head->ordinal + 1 : 0;
    mx_metric **order = calloc(count ? count : 1, sizeof *order);
    if (!order) {
        t->failed = true;
        return;
    }
    for (mx_metric *m = head; m; m = m->next)
        order[m->ordinal] = m;
    for (size_t i = 0; i < count; i++)
        if (order[i])
            render_series(t, order[i]);
    free(order);
}

char *mx_render(mx_registry *reg, size_t *len)
{
    text t = {0};
    text_add(&t, "", 0);
    if (reg) {
        pthread_mutex_lock(&reg->lock);
        mx_family *first = reg->first;
        pthread_mutex_unlock(&reg->lock);
        /* families are only appended, and `next` is written under the lock
         * before the family is visible, so walking without it is safe once
         * the first pointer was read under it; re-take it per step to see
         * families registered meanwhile */
        for (mx_family *f = first; f;) {
            render_family(&t, f);
            pthread_mutex_lock(&reg->lock);
            f = f->next;
            pthread_mutex_unlock(&reg->lock);
        }
    }
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    if (len)
        *len = t.len;
    return t.data;
}
