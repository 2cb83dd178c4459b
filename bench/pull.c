/*
 * bench/pull.c — an insurer's year-end pull: the compliance reports of every
 * stored care plan of one provider, checked and streamed over HTTPS
 * (GET /insurer/compliance, Accept: application/x-ndjson), beside checking the
 * same plans from files in this process, in the same run (issue #12: the pull
 * runs at least at half the rate of checking from files).
 *
 *   bench-pull SOURCE_DIR FHIRGW [PLANS]      PLANS: 10000 by default
 *   BENCH_PULL_SAVE=FILE                      also write the pulled reports there
 *   BENCH_PULL_REPEAT=N                       pull N times (each rate printed; the first is the headline)
 *   BENCH_PULL_KEEP=1                         leave the temporary folder (the gateway's database) in place
 *   BENCH_PULL_PERF=FILE                      perf record the gateway during the (first) pull into FILE
 *   BENCH_PULL_PERF_CALLGRAPH=MODE            its --call-graph (fp by default; dwarf through libc's malloc)
 *
 * 1. A test PKI in a temporary folder (certs/make-test-pki), the insurer
 *    registered with UZOVI 9901, and the real gateway (FHIRGW serve --dev) on
 *    a loopback port, as a child process with its own SQLite database.
 * 2. The provider (gzsp, URA 90000401) stores the realistic GZSP set
 *    (tests/rules/gzsp-set: nine plans with their teams, roles, goals,
 *    locations and patients) with a Coverage of each patient paid by the
 *    insurer, then PLANS care plans: copies of the nine under new ids, in
 *    transactions of 100, through the REST API as any client would (one
 *    keep-alive connection per organisation: tests/child_gateway.h).
 * 3. The pull: one GET as the insurer, every line an InsurerComplianceReport;
 *    plans per second over HTTPS (each checked against its stored context on
 *    the date given, mapped to the insurer's model, streamed).
 * 4. From files: the nine plan Bundles checked with the same rule pack in this
 *    process (parse + context + rules), plans per second on one core.
 * Prints both rates and their ratio. Everything is removed at exit.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/util/conformance.h"
#include "gateway/util/files.h"
#include "rules/bundle.h"
#include "rules/check.h"
#include "tests/child_gateway.h"

#define MAX_TEMPLATES 16
#define PER_TRANSACTION 100
#define DATE_CHECKED "2026-02-01"

static char dir[256];
static cg_gateway gateway = {.pid = -1};
static cg_client insurer, provider; /* one keep-alive connection each, once the gateway serves */

/* perf record -g of the gateway into file while the pull runs (BENCH_PULL_PERF); its pid, or -1. */
static pid_t perf_start(const char *file)
{
    if (!file)
        return -1;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)gateway.pid);
    pid_t p = fork();
    if (p == 0) {
        const char *cg = getenv("BENCH_PULL_PERF_CALLGRAPH");
        execlp("perf", "perf", "record", "-q", "-F", "499", "--call-graph", cg ? cg : "fp", "-p", pid, "-o", file,
               (char *)NULL);
        _exit(127);
    }
    sleep(1); /* perf attaches before the pull starts */
    return p;
}

static void perf_stop(pid_t p)
{
    if (p <= 0)
        return;
    kill(p, SIGINT);
    waitpid(p, NULL, 0);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cleanup(void)
{
    cg_client_close(&insurer);
    cg_client_close(&provider);
    cg_stop(&gateway, SIGTERM, NULL, NULL, 0);
    if (*dir && getenv("BENCH_PULL_KEEP")) {
        printf("kept: %s\n", dir);
    } else if (*dir) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench-pull: could not remove %s\n", dir);
    }
}

static void die(const char *what)
{
    fprintf(stderr, "bench-pull: %s\n", what);
    cleanup();
    exit(1);
}

/* One request as c's organisation (Accept: accept, else FHIR JSON); the answer in c->body, its lines in c->lines. */
static long request(cg_client *c, const char *method, const char *path, const char *body, const char *accept)
{
    c->accept = accept ? accept : "application/fhir+json";
    return cg_request(c, method, path, body, 0);
}

/* ---- the gateway as a child process (tests/child_gateway.h) ---- */

static void make_pki(const char *source)
{
    char cmd[1024], err[256];
    snprintf(cmd, sizeof cmd, "%s/certs/make-test-pki", source);
    if (!cg_make_pki(cmd, dir, err, sizeof err))
        die(err);
    /* the insurer's UZOVI is a role token of the registry (gateway/rest/insured.h) */
    snprintf(cmd, sizeof cmd, "sed -i 's/\\tinsurer\\t/\\tinsurer,uzovi-9901\\t/' '%s/organisations.tsv'", dir);
    if (system(cmd) != 0)
        die("cannot register the insurer's UZOVI");
}

static void start_gateway(const char *fhirgw)
{
    char log[512], err[8192];
    snprintf(log, sizeof log, "%s/gateway.log", dir);
    cg_options o = {.fhirgw = fhirgw,
                    .dev_dir = dir,
                    .port = 10000u + (unsigned)getpid() % 20000u, /* below the ephemeral range, as the tests */
                    .log = log,
                    .stdout_to_null = true,
                    .ready_as = "insurer",
                    .wait_ms = 60000};
    if (!cg_start(&gateway, &o, err, sizeof err))
        die(err);
    if (!cg_client_open(&insurer, dir, "insurer", gateway.port, 600, err, sizeof err) ||
        !cg_client_open(&provider, dir, "gzsp", gateway.port, 600, err, sizeof err))
        die(err);
}

/* ---- the provider's data ---- */

typedef struct template
{
    json_object *bundle; /* the plan's collection Bundle */
    char *text;          /* as read, for checking from files */
    size_t len;
}
template;

static size_t load_templates(const char *source, template *t)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/rules/gzsp-set", source);
    DIR *d = opendir(path);
    size_t n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < MAX_TEMPLATES;) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char file[2048];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        t[n].text = files_read(file, &t[n].len);
        t[n].bundle = t[n].text ? json_tokener_parse(t[n].text) : NULL;
        n += t[n].bundle != NULL;
    }
    if (d)
        closedir(d);
    return n;
}

/* A POST entry of the transaction (the gateway assigns ids; PUT does not create), under fullUrl. */
static json_object *post_entry(json_object *resource, const char *full_url)
{
    const char *type = json_object_get_string(json_object_object_get(resource, "resourceType"));
    json_object *e = json_object_new_object(), *req = json_object_new_object();
    if (full_url)
        json_object_object_add(e, "fullUrl", json_object_new_string(full_url));
    json_object_object_add(e, "resource", json_object_get(resource));
    json_object_object_add(req, "method", json_object_new_string("POST"));
    json_object_object_add(req, "url", json_object_new_string(type));
    json_object_object_add(e, "request", req);
    return e;
}

/* Every Reference.reference in o that `names` maps ("CareTeam/ct-1" -> its new value) is rewritten. */
static void rewrite_references(json_object *o, json_object *names)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            rewrite_references(json_object_array_get_idx(o, i), names);
        return;
    }
    if (!json_object_is_type(o, json_type_object))
        return;
    json_object_object_foreach(o, key, value)
    {
        json_object *to;
        if (!strcmp(key, "reference") && json_object_is_type(value, json_type_string) &&
            json_object_object_get_ex(names, json_object_get_string(value), &to))
            json_object_object_add(o, key, json_object_new_string(json_object_get_string(to)));
        else
            rewrite_references(value, names);
    }
}

static json_object *new_transaction(json_object **entries)
{
    json_object *t = json_object_new_object();
    json_object_object_add(t, "resourceType", json_object_new_string("Bundle"));
    json_object_object_add(t, "type", json_object_new_string("transaction"));
    *entries = json_object_new_array();
    json_object_object_add(t, "entry", *entries);
    return t;
}

/* POST a transaction as the provider; its response Bundle (the caller's) or exit. */
static json_object *post_transaction(json_object *t)
{
    long status = request(&provider, "POST", "/", json_object_to_json_string_ext(t, JSON_C_TO_STRING_PLAIN), NULL);
    if (status != 200) {
        fprintf(stderr, "bench-pull: a transaction answered %ld: %.2000s\n", status,
                provider.body ? provider.body : "");
        die("storing the provider's data failed");
    }
    json_object *response = provider.body ? json_tokener_parse(provider.body) : NULL;
    if (!response)
        die("a transaction's answer is not JSON");
    return response;
}

/* A Coverage of the patient, paid by the insurer (UZOVI 9901), 2020 to 2030. */
static json_object *coverage_of(const char *patient_id)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"resourceType\":\"Coverage\",\"id\":\"bench-cov-%s\",\"status\":\"active\","
             "\"beneficiary\":{\"reference\":\"Patient/%s\"},\"period\":{\"start\":\"2020-01-01\","
             "\"end\":\"2030-12-31\"},\"payor\":[{\"identifier\":{\"system\":\"http://fhir.nl/fhir/NamingSystem/"
             "uzovi\",\"value\":\"9901\"}}]}",
             patient_id, patient_id);
    return json_tokener_parse(text);
}

/*
 * The context of every template (everything but the plan, which is copied below; the provider's own
 * directory entry is the gateway's), and a Coverage per patient, in one transaction. Returns what each
 * template reference ("CareTeam/ct-1") became on the server ("CareTeam/<assigned id>").
 */
static json_object *store_context(template *t, size_t n)
{
    json_object *entries, *tx = new_transaction(&entries);
    json_object *local = json_object_new_object(); /* "Type/id" -> "urn:uuid:..." */
    json_object *order = json_object_new_array();  /* the "Type/id" of each entry, in order */
    for (size_t i = 0; i < n; i++) {
        json_object *es = json_object_object_get(t[i].bundle, "entry");
        for (size_t k = 0; k < json_object_array_length(es); k++) {
            json_object *r = json_object_object_get(json_object_array_get_idx(es, k), "resource");
            const char *type = json_object_get_string(json_object_object_get(r, "resourceType"));
            char key[256], urn[80];
            snprintf(key, sizeof key, "%s/%s", type, json_object_get_string(json_object_object_get(r, "id")));
            /* the templates share roles and locations: each once */
            if (!strcmp(type, "Organization") || !strcmp(type, "CarePlan") || json_object_object_get(local, key))
                continue;
            snprintf(urn, sizeof urn, "urn:uuid:00000000-0000-4000-8000-%012zu", json_object_array_length(order));
            json_object_object_add(local, key, json_object_new_string(urn));
            json_object_array_add(order, json_object_new_string(key));
            json_object_array_add(entries, post_entry(r, urn));
            if (!strcmp(type, "Patient")) {
                json_object *cov = coverage_of(json_object_get_string(json_object_object_get(r, "id")));
                json_object_array_add(entries, post_entry(cov, NULL));
                json_object_array_add(order, json_object_new_string(""));
                json_object_put(cov);
            }
        }
    }
    json_object *copy = NULL;
    json_object_deep_copy(tx, &copy, NULL);
    rewrite_references(copy, local);
    json_object *response = post_transaction(copy);
    json_object *names = json_object_new_object();
    json_object *answered = json_object_object_get(response, "entry");
    for (size_t i = 0; i < json_object_array_length(order); i++) {
        const char *key = json_object_get_string(json_object_array_get_idx(order, i));
        json_object *e = json_object_array_get_idx(answered, i), *resp, *loc;
        if (!*key || !json_object_object_get_ex(e, "response", &resp) ||
            !json_object_object_get_ex(resp, "location", &loc))
            continue;
        char ref[256], base[64];
        snprintf(base, sizeof base, "https://127.0.0.1:%u/", gateway.port);
        const char *where = json_object_get_string(loc);
        if (!strncmp(where, base, strlen(base)))
            where += strlen(base); /* the Location is absolute; the data refers relatively */
        snprintf(ref, sizeof ref, "%s", where);
        char *history = strstr(ref, "/_history");
        if (history)
            *history = 0;
        json_object_object_add(names, key, json_object_new_string(ref));
    }
    json_object_put(response);
    json_object_put(copy);
    json_object_put(tx);
    json_object_put(local);
    json_object_put(order);
    return names;
}

static json_object *plan_of(template *t)
{
    json_object *es = json_object_object_get(t->bundle, "entry");
    for (size_t k = 0; k < json_object_array_length(es); k++) {
        json_object *r = json_object_object_get(json_object_array_get_idx(es, k), "resource");
        if (!strcmp(json_object_get_string(json_object_object_get(r, "resourceType")), "CarePlan"))
            return r;
    }
    return NULL;
}

static void store_plans(template *t, size_t n, size_t plans, json_object *names)
{
    json_object *entries = NULL, *tx = NULL;
    for (size_t i = 0; i < plans; i++) {
        if (!tx)
            tx = new_transaction(&entries);
        json_object *copy = NULL;
        json_object_deep_copy(plan_of(&t[i % n]), &copy, NULL);
        json_object_object_del(copy, "id");
        rewrite_references(copy, names);
        json_object_array_add(entries, post_entry(copy, NULL));
        json_object_put(copy);
        if (json_object_array_length(entries) == PER_TRANSACTION || i + 1 == plans) {
            json_object_put(post_transaction(tx));
            json_object_put(tx);
            tx = NULL;
        }
    }
}

/* ---- checking from files, in this process ---- */

/* Plans per wall second; *per_cpu: plans per CPU second of this process (the same on a quiet machine). */
static double check_from_files(const char *source, template *t, size_t n, double seconds, double *per_cpu)
{
    char dirs[3][1024], pack_path[1024];
    const char *names[] = {"profiles", "extensions", "terminology"}, *dp[3];
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/ig/%s", source, names[i]);
        dp[i] = dirs[i];
    }
    snprintf(pack_path, sizeof pack_path, "%s/rules/packs/2026/pack.json", source);
    oo_list issues;
    oo_list_init(&issues, 0);
    pf_registry *reg = conf_load(dp, 3, &issues);
    size_t len;
    char *buf = files_read(pack_path, &len);
    rl_pack *pack = buf ? rl_pack_load(buf, len, pack_path, &issues) : NULL;
    free(buf);
    rl_engine *engine = pack && reg ? rl_engine_new(pack, reg, &issues) : NULL;
    oo_list_free(&issues);
    if (!engine)
        die("cannot load the guide or the rule pack");
    fdt_value date;
    fdt_parse(FDT_FORM_DATE, DATE_CHECKED, 10, &date);
    size_t done = 0;
    double t0 = now_seconds(), c0 = cpu_seconds(), elapsed;
    char *work = malloc(1 << 20);
    do {
        for (size_t i = 0; i < n; i++, done++) {
            if (t[i].len >= (1 << 20))
                continue;
            memcpy(work, t[i].text, t[i].len);
            fj_doc doc;
            fj_error e;
            rl_bundle b = {0};
            if (fj_parse(work, t[i].len, NULL, &doc, &e) && rl_bundle_init(&b, &doc)) {
                size_t nt;
                const char *const *types = rl_engine_subject_types(engine, &nt);
                rl_context ctx = rl_bundle_context(&b, rl_bundle_subject(&b, types, nt), date);
                rl_report rep;
                char err[200];
                rl_check(engine, &ctx, &rep, err, sizeof err);
                rl_report_free(&rep);
            }
            rl_bundle_free(&b);
            fj_doc_free(&doc);
        }
    } while ((elapsed = now_seconds() - t0) < seconds);
    *per_cpu = (double)done / (cpu_seconds() - c0);
    free(work);
    rl_engine_free(engine);
    rl_pack_free(pack);
    pf_registry_free(reg);
    return (double)done / elapsed;
}

/* BENCH_PULL_REPEAT=N: N-1 more pulls, each rate and ratio against the same file rate. */
static void repeat_pull(size_t plans, double file_rate)
{
    const char *n = getenv("BENCH_PULL_REPEAT");
    for (long i = 1; n && i < atol(n); i++) {
        double t0 = now_seconds();
        long status = request(&insurer, "GET", "/insurer/compliance?provider=90000401&date=" DATE_CHECKED, NULL,
                              "application/x-ndjson");
        double rate = (double)plans / (now_seconds() - t0);
        if (status != 200 || insurer.lines != plans)
            die("a repeated pull failed");
        printf("pull again: %9.0f plans/s, / files %.2f\n", rate, rate / file_rate);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-pull SOURCE_DIR FHIRGW [PLANS]\n");
        return 2;
    }
    const char *source = argv[1], *fhirgw = argv[2];
    size_t plans = argc > 3 ? (size_t)atol(argv[3]) : 10000;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof dir, "/tmp/fhirgw-bench-pull-XXXXXX");
    if (!mkdtemp(dir))
        die("cannot make a temporary folder");
    template t[MAX_TEMPLATES];
    size_t n = load_templates(source, t);
    if (!n)
        die("no plans under tests/rules/gzsp-set");
    make_pki(source);
    start_gateway(fhirgw);
    double t0 = now_seconds();
    json_object *names = store_context(t, n);
    store_plans(t, n, plans, names);
    json_object_put(names);
    printf("stored: %zu care plans of one provider (and the context of %zu) in %.1f s over HTTPS\n", plans, n,
           now_seconds() - t0);

    cg_client *a = &insurer; /* its body kept (4 MB for 10,000): the lines are looked at below */
    pid_t perf = perf_start(getenv("BENCH_PULL_PERF"));
    double cpu0 = cg_cpu_seconds(&gateway);
    t0 = now_seconds();
    long status = request(a, "GET", "/insurer/compliance?provider=90000401&date=" DATE_CHECKED, NULL,
                          "application/x-ndjson");
    double pull_seconds = now_seconds() - t0, pull_cpu = cg_cpu_seconds(&gateway) - cpu0;
    perf_stop(perf);
    if (status != 200 || a->lines != plans) {
        fprintf(stderr, "bench-pull: the pull answered %ld with %zu reports (expected %zu)\n", status, a->lines, plans);
        /* what the paged view says, to see why */
        request(a, "GET", "/insurer/compliance?provider=90000401&_count=2&date=" DATE_CHECKED, NULL, NULL);
        fprintf(stderr, "bench-pull: the first page: %.1500s\n", a->body ? a->body : "");
        die("the pull failed");
    }
    const char *save = getenv("BENCH_PULL_SAVE"); /* the reports, to compare two builds' */
    FILE *saved = save ? fopen(save, "w") : NULL;
    if (saved) {
        fwrite(a->body, 1, a->len, saved);
        fclose(saved);
    }
    /* a fast pull of notMapped lines would be no pull: each line must be a report */
    size_t not_mapped = 0, compliant = 0;
    for (const char *line = a->body; line && *line;) {
        size_t len = strcspn(line, "\n");
        not_mapped += !strncmp(line, "{\"notMapped\"", 12);
        static const char said[] = "\"status\":\"compliant\"";
        compliant += memmem(line, len, said, sizeof said - 1) != NULL;
        line += len + (line[len] == '\n');
    }
    if (not_mapped) {
        fprintf(stderr, "bench-pull: %zu of the %zu lines are notMapped, e.g. %.400s\n", not_mapped, a->lines,
                strstr(a->body, "{\"notMapped\""));
        die("the pull failed");
    }
    double pull_rate = (double)plans / pull_seconds;
    double file_cpu_rate;
    double file_rate = check_from_files(source, t, n, 3.0, &file_cpu_rate);
    printf("pull  (HTTPS, NDJSON, checked against the store): %9.0f plans/s  (%zu reports, %.1f MB, %.2f s)\n",
           pull_rate, a->lines, (double)a->len / 1e6, pull_seconds);
    printf("files (parse + rules, full context, one core):    %9.0f plans/s\n", file_rate);
    printf("reports: %zu compliant, %zu not (none notMapped)\n", compliant, a->lines - compliant);
    printf("pull / files:                                     %9.2f (target >= 0.5)\n", pull_rate / file_rate);
    /* the work itself, whatever else the machine runs: plans per CPU second of the gateway (all its threads) and of
     * the file check */
    if (cpu0 >= 0 && pull_cpu > 0)
        printf("per CPU second: pull %.0f plans (gateway, all threads: %.2f s), files %.0f plans; ratio %.2f\n",
               (double)plans / pull_cpu, pull_cpu, file_cpu_rate, (double)plans / pull_cpu / file_cpu_rate);
    repeat_pull(plans, file_rate);
    for (size_t i = 0; i < n; i++) {
        json_object_put(t[i].bundle);
        free(t[i].text);
    }
    cleanup();
    curl_global_cleanup();
    return 0;
}
