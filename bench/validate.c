/*
 * bench/validate.c — how fast and how lean is validation, measured against
 * json-c parsing of the same bytes in the same run (machines are noisy, so
 * only ratios within one run mean much).
 *
 *   bench-validate PACKAGE_DIR [BUNDLE_MB]
 *
 * 1. The whole official package (~5,300 files): MB/s for json-c parsing
 *    alone, for the project's parser alone, and for parsing plus full
 *    validation; ratio of validation to json-c parsing (target <= 2).
 * 2. A Bundle of BUNDLE_MB (default 50) MB assembled from the instance
 *    examples, and a 50 KB Bundle made the same way: per-MB validation cost
 *    at both sizes (target: within 1.2x, i.e. linear).
 * 3. Peak memory of validating the large Bundle, read from a fresh process
 *    (this binary re-executed with --peak), as a multiple of the input size
 *    (target <= 3); json-c's parse alone is measured the same way.
 * Each timing is the best of several rounds.
 */
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fhir/array.h"
#include "fhir/validate.h"
#include "gateway/util/files.h"

/* A benchmark cannot go on without its corpus: stop when memory runs out. */
static void grow(void *items_ptr, size_t *capacity, size_t needed, size_t element_size)
{
    if (!fa_reserve(items_ptr, capacity, needed, element_size)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

#define ROUNDS 3

typedef struct blob {
    char *data;
    size_t len;
    char *name;
} blob;

typedef struct corpus {
    blob *items;
    size_t count, cap, bytes;
} corpus;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const blob *)a)->name, ((const blob *)b)->name);
}

static void load_package(const char *dir, corpus *c)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        exit(2);
    }
    struct dirent *ent;
    while ((ent = readdir(d))) {
        size_t n = strlen(ent->d_name);
        if (n < 6 || strcmp(ent->d_name + n - 5, ".json") || !strcmp(ent->d_name, "package.json"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        grow(&c->items, &c->cap, c->count + 1, sizeof *c->items);
        blob *b = &c->items[c->count];
        b->data = files_read(path, &b->len);
        b->name = strdup(ent->d_name);
        if (b->data) {
            c->bytes += b->len;
            c->count++;
        }
    }
    closedir(d);
    qsort(c->items, c->count, sizeof *c->items, name_cmp);
}

/* ---- the three workloads, each over a set of buffers ---- */

typedef enum { WORK_JSONC, WORK_PARSE, WORK_VALIDATE } work;

static const char *work_name[] = {"json-c parse", "fhir/json parse", "parse + full validation"};

static size_t run_once(work w, char *buf, size_t len, json_tokener *tok)
{
    size_t errors = 0;
    if (w == WORK_JSONC) {
        json_tokener_reset(tok);
        json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
        errors = o == NULL;
        json_object_put(o);
    } else if (w == WORK_PARSE) {
        fj_doc doc;
        fj_error err;
        errors = !fj_parse(buf, len, NULL, &doc, &err);
        fj_doc_free(&doc);
    } else {
        oo_list issues;
        oo_list_init(&issues, 0);
        errors = fv_validate_buffer(buf, len, NULL, &issues);
        oo_list_free(&issues);
    }
    return errors;
}

/* Best time of ROUNDS runs over all buffers; the input is restored before each (parsing decodes in place). */
static double time_work(work w, const corpus *c, char **scratch, int repeat)
{
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH * 4);
    double best = 1e30;
    for (int round = 0; round < ROUNDS; round++) {
        double total = 0;
        for (int r = 0; r < repeat; r++) {
            for (size_t i = 0; i < c->count; i++)
                memcpy(scratch[i], c->items[i].data, c->items[i].len);
            double t0 = now_seconds();
            for (size_t i = 0; i < c->count; i++)
                run_once(w, scratch[i], c->items[i].len, tok);
            total += now_seconds() - t0;
        }
        if (total < best)
            best = total;
    }
    json_tokener_free(tok);
    return best / repeat;
}

static char **make_scratch(const corpus *c)
{
    char **s = malloc(c->count * sizeof *s);
    for (size_t i = 0; i < c->count; i++)
        s[i] = malloc(c->items[i].len + 1);
    return s;
}

static void free_scratch(const corpus *c, char **s)
{
    for (size_t i = 0; i < c->count; i++)
        free(s[i]);
    free(s);
}

static double mb(size_t bytes)
{
    return (double)bytes / 1e6;
}

/* ---- the assembled Bundle ---- */

static bool is_instance_example(const char *name)
{
    static const char *const conformance[] = {"StructureDefinition-",
                                              "ValueSet-",
                                              "CodeSystem-",
                                              "SearchParameter-",
                                              "ConceptMap-",
                                              "OperationDefinition-",
                                              "CapabilityStatement-",
                                              "ImplementationGuide-",
                                              "CompartmentDefinition-",
                                              "NamingSystem-",
                                              "Bundle-",
                                              "ig-r4",
                                              "StructureMap-"};
    for (size_t i = 0; i < sizeof conformance / sizeof *conformance; i++)
        if (!strncmp(name, conformance[i], strlen(conformance[i])))
            return false;
    return true;
}

/* Appends text to a growable buffer. */
static void append(char **buf, size_t *len, size_t *cap, const char *text, size_t n)
{
    grow(buf, cap, *len + n + 1, 1);
    memcpy(*buf + *len, text, n);
    *len += n;
}

/* Ends the Bundle being built in *chunk and moves it into `chunks`. */
static void close_chunk(corpus *chunks, char **chunk, size_t *len, size_t *cap, unsigned long *in_chunk)
{
    append(chunk, len, cap, "]}", 2);
    grow(&chunks->items, &chunks->cap, chunks->count + 1, sizeof *chunks->items);
    chunks->items[chunks->count++] = (blob){*chunk, *len, NULL};
    chunks->bytes += *len;
    *chunk = NULL;
    *len = *cap = 0;
    *in_chunk = 0;
}

static const char bundle_head[] = "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[";

/*
 * A collection Bundle of at least `target` bytes, cycling through the valid
 * instance examples, and the same entries cut into Bundles of about
 * `chunk_target` bytes, so that per-MB costs compare the same content.
 */
static char *assemble_bundles(const corpus *c, size_t target, size_t chunk_target, size_t *out_len, corpus *chunks)
{
    size_t cap = target + (1u << 20), len = 0;
    char *big = malloc(cap);
    append(&big, &len, &cap, bundle_head, strlen(bundle_head));
    char *chunk = NULL;
    size_t chunk_len = 0, chunk_cap = 0;
    unsigned long serial = 0, in_chunk = 0;
    bool *valid = calloc(c->count, sizeof *valid);
    for (size_t i = 0; i < c->count; i++) {
        if (!is_instance_example(c->items[i].name))
            continue;
        oo_list issues;
        oo_list_init(&issues, 1);
        char *copy = strndup(c->items[i].data, c->items[i].len);
        valid[i] = fv_validate_buffer(copy, c->items[i].len, NULL, &issues) == 0;
        free(copy);
        oo_list_free(&issues);
    }
    while (len < target) {
        for (size_t i = 0; i < c->count && len < target; i++) {
            if (!valid[i])
                continue;
            char head[128];
            int n = snprintf(head, sizeof head,
                             "{\"fullUrl\":\"urn:uuid:00000000-0000-4000-8000-%012lx\",\"resource\":", serial);
            append(&big, &len, &cap, ",", serial ? 1 : 0);
            append(&big, &len, &cap, head, (size_t)n);
            append(&big, &len, &cap, c->items[i].data, c->items[i].len);
            append(&big, &len, &cap, "}", 1);
            /* close the chunk before it would pass chunk_target (a single large entry may still) */
            if (in_chunk && chunk_len + c->items[i].len + (size_t)n + 3 > chunk_target)
                close_chunk(chunks, &chunk, &chunk_len, &chunk_cap, &in_chunk);
            if (!chunk_len)
                append(&chunk, &chunk_len, &chunk_cap, bundle_head, strlen(bundle_head));
            append(&chunk, &chunk_len, &chunk_cap, ",", in_chunk ? 1 : 0);
            append(&chunk, &chunk_len, &chunk_cap, head, (size_t)n);
            append(&chunk, &chunk_len, &chunk_cap, c->items[i].data, c->items[i].len);
            append(&chunk, &chunk_len, &chunk_cap, "}", 1);
            serial++;
            in_chunk++;
        }
    }
    if (in_chunk)
        close_chunk(chunks, &chunk, &chunk_len, &chunk_cap, &in_chunk);
    append(&big, &len, &cap, "]}", 2);
    free(valid);
    *out_len = len;
    return big;
}

/* ---- peak memory, in a fresh process ---- */

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Child mode: read FILE, run the work once, print peak RSS growth in KB. */
static int peak_mode(const char *what, const char *file)
{
    long base = rss_kb();
    size_t len;
    char *buf = files_read(file, &len);
    if (!buf)
        return 2;
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH * 4);
    size_t errors = run_once(!strcmp(what, "json-c") ? WORK_JSONC : WORK_VALIDATE, buf, len, tok);
    json_tokener_free(tok);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%ld %zu\n", ru.ru_maxrss - base, errors);
    free(buf);
    return 0;
}

static double measure_peak(const char *self, const char *what, const char *file, size_t input_len)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --peak %s '%s'", self, what, file);
    FILE *p = popen(cmd, "r");
    long kb = -1;
    size_t errors = 0;
    if (p) {
        if (fscanf(p, "%ld %zu", &kb, &errors) != 2)
            kb = -1;
        pclose(p);
    }
    return kb < 0 ? -1 : (double)kb * 1024 / (double)input_len;
}

static const char *verdict(bool ok)
{
    return ok ? "met" : "MISSED";
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--peak"))
        return peak_mode(argv[2], argv[3]);
    if (argc < 2) {
        fprintf(stderr, "usage: bench-validate PACKAGE_DIR [BUNDLE_MB]\n");
        return 2;
    }
    size_t bundle_mb = argc > 2 ? (size_t)atol(argv[2]) : 50;

    corpus pkg = {0};
    load_package(argv[1], &pkg);
    printf("== whole package: %zu files, %.1f MB ==\n", pkg.count, mb(pkg.bytes));
    char **scratch = make_scratch(&pkg);
    double t[3];
    for (int w = 0; w < 3; w++) {
        t[w] = time_work((work)w, &pkg, scratch, 1);
        printf("  %-26s %8.1f MB/s  (%.3f s)\n", work_name[w], mb(pkg.bytes) / t[w], t[w]);
    }
    free_scratch(&pkg, scratch);
    double ratio = t[WORK_VALIDATE] / t[WORK_JSONC];
    printf("  validation / json-c parse: %.2fx  (target <= 2.0: %s)\n", ratio, verdict(ratio <= 2.0));
    printf("  validation / own parse:    %.2fx\n", t[WORK_VALIDATE] / t[WORK_PARSE]);

    /* One large Bundle, and the same entries as ~50 KB Bundles. */
    size_t big_len;
    corpus small_c = {0};
    char *big = assemble_bundles(&pkg, bundle_mb * 1000 * 1000, 50 * 1000, &big_len, &small_c);
    corpus big_c = {.items = &(blob){big, big_len, "big"}, .count = 1, .bytes = big_len};
    printf("== a collection Bundle of %.1f MB, and the same entries as %zu Bundles of ~%.0f KB ==\n", mb(big_len),
           small_c.count, small_c.bytes / 1e3 / (double)small_c.count);
    char **big_scratch = make_scratch(&big_c), **small_scratch = make_scratch(&small_c);
    double per_mb_big[3], per_mb_small[3];
    for (int w = 0; w < 3; w++) {
        double tb = time_work((work)w, &big_c, big_scratch, 1);
        double ts = time_work((work)w, &small_c, small_scratch, 1);
        per_mb_big[w] = tb / mb(big_len);
        per_mb_small[w] = ts / mb(small_c.bytes);
        printf("  %-26s %8.1f MB/s as one Bundle, %8.1f MB/s as small Bundles\n", work_name[w], 1 / per_mb_big[w],
               1 / per_mb_small[w]);
    }
    double bratio = per_mb_big[WORK_VALIDATE] / per_mb_big[WORK_JSONC];
    double linear = per_mb_big[WORK_VALIDATE] / per_mb_small[WORK_VALIDATE];
    printf("  validation / json-c parse at %.0f MB: %.2fx  (target <= 2.0: %s)\n", mb(big_len), bratio,
           verdict(bratio <= 2.0));
    printf("  linearity: per-MB validation cost at %.0f MB / at %.0f KB: %.2fx  (target <= 1.2: %s)\n", mb(big_len),
           small_c.bytes / 1e3 / (double)small_c.count, linear, verdict(linear <= 1.2));
    free_scratch(&big_c, big_scratch);
    free_scratch(&small_c, small_scratch);

    /* Peak memory in fresh processes. */
    char path[] = "/tmp/bench-validate-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0 && write(fd, big, big_len) == (ssize_t)big_len) {
        close(fd);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        double peak_validate = measure_peak(self, "validate", path, big_len);
        double peak_jsonc = measure_peak(self, "json-c", path, big_len);
        printf("  peak memory, parse + validation: %.2fx the input  (target <= 3.0: %s)\n", peak_validate,
               verdict(peak_validate > 0 && peak_validate <= 3.0));
        printf("  peak memory, json-c parse alone: %.2fx the input  (for comparison)\n", peak_jsonc);
    }
    unlink(path);
    free(big);
    for (size_t i = 0; i < small_c.count; i++)
        free(small_c.items[i].data);
    free(small_c.items);
    for (size_t i = 0; i < pkg.count; i++) {
        free(pkg.items[i].data);
        free(pkg.items[i].name);
    }
    free(pkg.items);
    return 0;
}
