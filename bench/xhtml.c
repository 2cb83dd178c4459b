/*
 * bench/xhtml.c — how fast is the narrative checker (fhir/xhtml.h), against
 * a plain pass over the same bytes measured in the same run (the machine is
 * shared and noisy, so only ratios within one run mean much).
 *
 *   bench-xhtml [PACKAGE_DIR [GUIDE_DIR]]
 *       PACKAGE_DIR default ~/.cache/fhirgw/hl7.fhir.r4.examples-4.0.1/package
 *       GUIDE_DIR   default the source tree's ig/
 *
 * Three sets of narratives: every Narrative.div ("div" string member) of the
 * official examples, every one of the guide's examples and fixtures, and a
 * generated ~50 KB table narrative as the handover benchmark grows its
 * sections (bench/handover.c). For each set it prints the narratives' count
 * and size, fx_check's µs per narrative and MB/s, the baseline's MB/s (a
 * memchr pass that counts the '<' and '&' of the same bytes) and the ratio
 * of the two. It also prints the issues fx_check reported per set and a hash
 * of their texts, so that two builds can be seen to give the same verdicts.
 *
 * Times are thread CPU time (CLOCK_THREAD_CPUTIME_ID), read once per batch
 * of iterations; each figure is the best of BATCHES batches.
 *
 * Memory: the corpus is owned by main and freed at the end. Prints only;
 * not a test.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/array.h"
#include "fhir/json.h"
#include "fhir/xhtml.h"
#include "gateway/util/files.h"

#define BATCHES 15
#define BATCH_SECONDS 0.02 /* a batch runs about this long, so the clock is read rarely */
#define TABLE_BYTES (50u * 1000u)

typedef struct narrative {
    char *s;
    size_t len;
} narrative;

typedef struct set {
    const char *name;
    narrative *items;
    size_t count, cap, bytes;
} set;

/* A benchmark cannot go on without its corpus: stop when memory runs out. */
static void grow(void *items_ptr, size_t *capacity, size_t needed, size_t element_size)
{
    if (!fa_reserve(items_ptr, capacity, needed, element_size)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static void add(set *st, const char *s, size_t len)
{
    grow(&st->items, &st->cap, st->count + 1, sizeof *st->items);
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(copy, s, len);
    st->items[st->count++] = (narrative){copy, len};
    st->bytes += len;
}

/* Every string member named "div" of one JSON file (parsed with the project's parser, as the gateway does). */
static void add_divs(set *st, const char *path)
{
    size_t len;
    char *text = files_read(path, &len);
    if (!text)
        return;
    fj_doc doc;
    fj_error err;
    if (fj_parse(text, len, NULL, &doc, &err)) {
        for (uint32_t i = 0; i + 1 < doc.count; i++) {
            const fj_node *k = fj_node_at(&doc, i), *v = fj_node_at(&doc, i + 1);
            if (k->type == FJ_STRING && v->type == FJ_STRING && fj_str_eq(&doc, i, "div"))
                add(st, fj_str(&doc, i + 1), v->len);
        }
    }
    fj_doc_free(&doc);
    free(text);
}

static void load(set *st, const char *dir)
{
    file_list files = {0};
    if (files_collect(&files, dir, "bench-xhtml"))
        for (size_t i = 0; i < files.count; i++)
            add_divs(st, files.paths[i]);
    files_list_free(&files);
}

/* A discharge letter's medication list and care needs as one table of about `bytes` bytes. */
static void add_table(set *st, size_t bytes)
{
    size_t cap = bytes + 1024, len = 0;
    char *d = malloc(cap);
    if (!d)
        exit(1);
    len += (size_t)snprintf(d, cap,
                            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Overdracht</b> &#8211; medicatie "
                            "&amp; zorgbehoefte</p><table class=\"grid\"><thead><tr><th>#</th><th>Wat</th>"
                            "<th>Hoe</th><th>Sinds</th></tr></thead><tbody>");
    for (unsigned i = 1; len + 400 < cap && len < bytes; i++)
        len += (size_t)snprintf(d + len, cap - len,
                                i % 2 ? "<tr><td>%u</td><td>Metoprolol 50 mg tablet</td><td>1x daags 1 stuk, "
                                        "oraal</td><td>sinds 2024-03-1%u, doorgaan na ontslag</td></tr>"
                                      : "<tr><td>%u</td><td>Hulp bij wassen en aankleden</td><td>ochtend en avond, "
                                        "1 persoon; valrisico (score %u) &gt; één keer per week</td></tr>",
                                i, i % 10);
    len += (size_t)snprintf(d + len, cap - len, "</tbody></table></div>");
    add(st, d, len);
    free(d);
}

/* ---- the two workloads ---- */

typedef struct tally {
    size_t issues;
    uint64_t hash; /* FNV-1a over severity, code and message of every issue */
} tally;

static void hash_bytes(uint64_t *h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ ((const unsigned char *)p)[i]) * 0x100000001b3u;
}

static void count_issue(void *ctx, oo_severity sev, const char *code, const char *message)
{
    tally *t = ctx;
    t->issues++;
    hash_bytes(&t->hash, &sev, sizeof sev);
    hash_bytes(&t->hash, code, strlen(code) + 1);
    hash_bytes(&t->hash, message, strlen(message) + 1);
}

/* The validator resolves "#id" against the resource; here every id exists, so no warning is made up. */
static bool any_id(void *ctx, const char *id, size_t len)
{
    (void)ctx, (void)id, (void)len;
    return true;
}

static size_t check_set(const set *st, tally *t)
{
    fx_options o = {0, 0, any_id, NULL};
    size_t errors = 0;
    for (size_t i = 0; i < st->count; i++)
        errors += fx_check(st->items[i].s, st->items[i].len, &o, count_issue, t);
    return errors;
}

/* The baseline: one memchr pass per byte class a checker must stop at. */
static size_t scan_set(const set *st)
{
    size_t found = 0;
    for (size_t i = 0; i < st->count; i++) {
        const char *s = st->items[i].s, *end = s + st->items[i].len;
        for (const char *p = s; (p = memchr(p, '<', (size_t)(end - p))); p++)
            found++;
        for (const char *p = s; (p = memchr(p, '&', (size_t)(end - p))); p++)
            found++;
    }
    return found;
}

static double thread_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile size_t sink; /* keeps the compiler from dropping the work */

static void run(const set *st, bool check)
{
    tally t = {0, 0};
    sink += check ? check_set(st, &t) : scan_set(st);
}

/* Seconds per pass over the set: best of BATCHES batches, each of enough passes to last about BATCH_SECONDS. */
static double time_set(const set *st, bool check)
{
    double t0 = thread_seconds();
    run(st, check); /* also warms the caches */
    double one = thread_seconds() - t0;
    size_t passes = one >= BATCH_SECONDS ? 1 : one > 0 ? (size_t)(BATCH_SECONDS / one) : 1000;
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        t0 = thread_seconds();
        for (size_t i = 0; i < passes; i++)
            run(st, check);
        double t = (thread_seconds() - t0) / (double)passes;
        if (t < best)
            best = t;
    }
    return best;
}

static void report_set(const set *st)
{
    if (!st->count) {
        printf("%-22s (no narratives found)\n", st->name);
        return;
    }
    tally t = {0, 0xcbf29ce484222325u};
    size_t errors = check_set(st, &t);
    double check = time_set(st, true), scan = time_set(st, false), mb = (double)st->bytes / 1e6;
    printf("%-22s %5zu divs %8.1f KB  %9.2f us/div %8.1f MB/s | baseline %8.1f MB/s | %6.1fx  "
           "(%zu errors, %zu issues, hash %016llx)\n",
           st->name, st->count, (double)st->bytes / 1e3, check * 1e6 / (double)st->count, mb / check, mb / scan,
           check / scan, errors, t.issues, (unsigned long long)t.hash);
}

static void free_set(set *st)
{
    for (size_t i = 0; i < st->count; i++)
        free(st->items[i].s);
    free(st->items);
}

int main(int argc, char **argv)
{
    char package[4096];
    if (argc > 1)
        snprintf(package, sizeof package, "%s", argv[1]);
    else
        snprintf(package, sizeof package, "%s/.cache/fhirgw/hl7.fhir.r4.examples-4.0.1/package",
                 getenv("HOME") ? getenv("HOME") : ".");
    const char *guide = argc > 2 ? argv[2] : SOURCE_DIR "/ig";
    set sets[3] = {{.name = "HL7 R4 examples"}, {.name = "guide examples+fixtures"}, {.name = "50 KB table"}};
    load(&sets[0], package);
    load(&sets[1], guide);
    add_table(&sets[2], TABLE_BYTES);
    printf("fx_check: us per narrative, MB/s; baseline: memchr for '<' and '&' over the same bytes; "
           "ratio = fx_check time / baseline time (best of %d batches of thread CPU time)\n",
           BATCHES);
    for (size_t i = 0; i < 3; i++)
        report_set(&sets[i]);
    for (size_t i = 0; i < 3; i++)
        free_set(&sets[i]);
    return 0;
}
