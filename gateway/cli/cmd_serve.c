/*
 * gateway/cli/cmd_serve.c — `fhirgw serve`: the gateway itself, and `fhirgw config`.
 *
 *   fhirgw serve --config /etc/fhirgw/fhirgw.conf
 *   fhirgw serve --dev DIR [--port N]
 *
 * --dev makes a test PKI in DIR when there is none (certs/make-test-pki),
 * registers its organisations, keeps the SQLite store in DIR and serves on
 * https://127.0.0.1:8443 (or N), printing a curl line that works. SIGTERM
 * and SIGINT stop it gracefully: no new connections, in-flight requests
 * finish, every acknowledged write is already on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway/cli/cli.h"
#include "gateway/util/conformance.h"
#include "gateway/util/config.h"
#include "gateway/rest/directory.h"
#include "gateway/rest/rest.h"

static srv_server *running; /* for the signal handler */

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        srv_stop(running);
}

/* One JSON line on stderr: the error log. Never patient data. */
static void log_event(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_event(const char *level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[ST_INSTANT_LEN];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    st_format_instant((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, ts);
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level);
    for (const char *p = msg; *p; p++)
        fprintf(stderr, *p == '"' || *p == '\\' ? "\\%c" : (unsigned char)*p < 0x20 ? "?" : "%c", *p);
    fputs("\"}\n", stderr);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

#ifndef FHIRGW_DATADIR /* both set by cmake/Install.cmake */
#define FHIRGW_DATADIR "/usr/local/share/fhirgw"
#define FHIRGW_DATADIR_FROM_BIN "../share/fhirgw"
#endif

/*
 * certs/make-test-pki: $FHIRGW_PKI_SCRIPT when set; else the first found of the
 * installed data folder seen from the binary (<exe>/../share/fhirgw: an installed
 * tree may move), the configured one (a binary copied elsewhere), and the source
 * tree of a build folder inside it (build/fhirgw -> certs/).
 */
static bool find_pki_script(char *out, size_t size)
{
    const char *env = getenv("FHIRGW_PKI_SCRIPT");
    if (env) {
        snprintf(out, size, "%s", env);
        return file_exists(out);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *const where[][2] = {
        {exe, "/" FHIRGW_DATADIR_FROM_BIN "/certs/make-test-pki"},
        {"", FHIRGW_DATADIR "/certs/make-test-pki"},
        {exe, "/../certs/make-test-pki"},
    };
    for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
        if (where[i][0] == exe && !slash)
            continue; /* no binary path to start from */
        int written = snprintf(out, size, "%s%s", where[i][0], where[i][1]);
        if (written > 0 && (size_t)written < size && file_exists(out))
            return true;
    }
    return false;
}

static bool make_dev_pki(const char *dir)
{
    char marker[PATH_MAX];
    int n = snprintf(marker, sizeof marker, "%s/organisations.tsv", dir);
    if (n < 0 || (size_t)n >= sizeof marker)
        return false;
    if (file_exists(marker))
        return true;
    char script[PATH_MAX];
    if (!find_pki_script(script, sizeof script)) {
        log_event("error", "certs/make-test-pki not found (set FHIRGW_PKI_SCRIPT)");
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(script, script, dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void dev_config(gw_config *c, const char *dir, unsigned port, unsigned ops_port)
{
    char err[256];
    char buf[CFG_PATH_MAX];
#define SET(key, ...)                                                                                            \
    do {                                                                                                         \
        int n_ = snprintf(buf, sizeof buf, __VA_ARGS__);                                                         \
        if (n_ > 0 && (size_t)n_ < sizeof buf)                                                                   \
            cfg_set(c, key, buf, err, sizeof err);                                                               \
    } while (0)
    SET("listen", "127.0.0.1:%u", port);
    SET("base_url", "https://127.0.0.1:%u", port);
    SET("ops_listen", "127.0.0.1:%u", ops_port);
    SET("tls_cert", "%s/server.crt", dir);
    SET("tls_key", "%s/server.key", dir);
    SET("tls_client_ca", "%s/ca-bundle.pem", dir);
    SET("tls_crl", "%s/crl.pem", dir);
    SET("organisations", "%s/organisations.tsv", dir);
    SET("store_path", "%s/fhirgw.db", dir);
#undef SET
}

/* host:port into its parts; false when malformed. */
static bool split_listen(const char *text, char *host, size_t size, unsigned *port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= size)
        return false;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return false;
    *port = (unsigned)p;
    return true;
}


static int open_log(const char *path)
{
    if (!path[0])
        return -1;
    if (!strcmp(path, "-"))
        return STDOUT_FILENO;
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void serve_usage(FILE *to)
{
    fprintf(to, "usage: fhirgw serve --config FILE\n"
                "       fhirgw serve --dev DIR [--port N] [--ops-port M]\n"
                "  --config FILE  settings (see 'fhirgw config' for every setting and its default)\n"
                "  --dev DIR      development: a test PKI and the store in DIR, organisations registered,\n"
                "                 FHIR on https://127.0.0.1:8443 (or --port N), /healthz /readyz /metrics on\n"
                "                 http://127.0.0.1:9090 (or --ops-port M; with only --port N given: N+1)\n");
}

static bool ready(void *arg) { return arg != NULL; }

/* Store commits into the metrics: commit latency and batch size (how well group commit shares syncs). */
typedef struct store_metrics {
    mx_metric *commit_seconds;
    mx_metric *batch_transactions;
    mx_metric *failed_commits;
} store_metrics;

static void on_commit(void *arg, const st_commit_stats *stats)
{
    store_metrics *m = arg;
    mx_observe(m->commit_seconds, (double)stats->commit_us / 1e6);
    mx_observe(m->batch_transactions, (double)stats->transactions);
    if (!stats->ok)
        mx_inc(m->failed_commits);
}

static void register_store_metrics(mx_registry *reg, store_metrics *m)
{
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    m->commit_seconds = mx_series(mx_histogram(reg, "fhirgw_store_commit_seconds",
                                               "Store commit latency, BEGIN to synced COMMIT.", NULL,
                                               MX_LATENCY_BUCKETS, MX_LATENCY_BUCKET_COUNT),
                                  NULL);
    m->batch_transactions = mx_series(mx_histogram(reg, "fhirgw_store_commit_transactions",
                                                   "Transactions sharing one commit (group commit).", NULL,
                                                   batch_bounds, sizeof batch_bounds / sizeof *batch_bounds),
                                      NULL);
    m->failed_commits = mx_series(mx_counter(reg, "fhirgw_store_commit_failures_total", "Commits that failed.", NULL),
                                  NULL);
}

/* Everything the server needs, opened in order and closed in reverse. */
typedef struct services {
    mx_registry *metrics;
    store_metrics store_mx;
    id_table *orgs;
    pf_registry *profiles;
    st_store *store;
    rest_app *app;
    srv_server *srv;
    int access_fd;
} services;

/*
 * The store closes first: st_close completes the writes still queued, and
 * their completion callbacks answer through the REST layer and srv_respond
 * (the answers wait on the stopped workers' queues; srv_free drops them). So
 * the server and the REST layer must outlive the store; the REST layer also
 * outlives the server, which may still hold the CapabilityStatement it lent.
 */
static void close_services(services *s)
{
    st_close(s->store);
    srv_free(s->srv);
    rest_app_free(s->app);
    pf_registry_free(s->profiles);
    id_table_free(s->orgs);
    mx_registry_free(s->metrics);
    if (s->access_fd > STDERR_FILENO)
        close(s->access_fd);
}

static bool open_services(const gw_config *c, services *s, bool dev)
{
    char err[512];
    s->orgs = id_table_load(c->organisations, err, sizeof err);
    if (!s->orgs) {
        log_event("error", "organisations: %s", err);
        return false;
    }
    if (c->conformance[0]) {
        oo_list issues;
        oo_list_init(&issues, 0);
        const char *dirs[1] = {c->conformance};
        s->profiles = conf_load(dirs, 1, &issues);
        for (size_t i = 0; i < issues.count; i++)
            log_event(issues.items[i].severity <= OO_ERROR ? "error" : "warning", "conformance: %s",
                      issues.items[i].message);
        oo_list_free(&issues);
    }
    s->metrics = mx_registry_new();
    register_store_metrics(s->metrics, &s->store_mx);
    st_config sc = {0};
    sc.path = c->store_path;
    sc.on_commit = on_commit;
    sc.on_commit_arg = &s->store_mx;
    sc.max_batch = (unsigned)c->store_batch_max;
    sc.batch_wait_us = (unsigned)c->store_batch_wait_us;
    st_error serr;
    s->store = st_open(&sc, &serr);
    if (!s->store) {
        log_event("error", "store %s: %s", c->store_path, serr.message);
        return false;
    }
    if (dev && !dir_publish_registered(s->store, c->organisations))
        log_event("warning", "not every organisation could be registered");
    rest_options ro = {0};
    ro.store = s->store;
    ro.organisations = s->orgs;
    ro.profiles = s->profiles;
    ro.base_url = c->base_url;
    ro.page_size_default = (int)c->page_size_default;
    ro.page_size_max = (int)c->page_size_max;
    ro.page_max_bytes = (size_t)c->page_max_bytes;
    ro.rate_per_second = (double)c->rate_limit_per_second;
    ro.rate_burst = (double)c->rate_limit_burst;
    ro.allow_dangling_references = c->referential_integrity == 0;
    ro.log_allowed = c->log_allowed_access != 0;
    s->app = rest_app_new(&ro, err, sizeof err);
    if (!s->app) {
        log_event("error", "%s", err);
        return false;
    }
    srv_config cfg;
    srv_config_defaults(&cfg);
    char host[256], ops_host[256];
    if (!split_listen(c->listen, host, sizeof host, &cfg.port) ||
        !split_listen(c->ops_listen, ops_host, sizeof ops_host, &cfg.ops_port)) {
        log_event("error", "listen and ops_listen are host:port");
        return false;
    }
    cfg.address = host;
    cfg.ops_address = ops_host;
    cfg.workers = (unsigned)c->workers;
    cfg.cert_file = c->tls_cert;
    cfg.key_file = c->tls_key;
    cfg.ca_file = c->tls_client_ca;
    cfg.crl_file = c->tls_crl[0] ? c->tls_crl : NULL;
    cfg.max_header_bytes = (size_t)c->max_header_bytes;
    cfg.max_body_bytes = (size_t)c->max_body_bytes;
    cfg.max_connections = (unsigned)c->max_connections;
    cfg.request_timeout_ms = (unsigned)c->request_timeout_ms;
    cfg.idle_timeout_ms = (unsigned)c->idle_timeout_ms;
    cfg.drain_timeout_ms = (unsigned)c->drain_timeout_ms;
    cfg.max_inflight_bytes = (size_t)c->max_inflight_bytes;
    cfg.handler = rest_handle;
    cfg.handler_arg = s->app;
    cfg.metrics = s->metrics;
    cfg.ready = ready;
    cfg.ready_arg = s->store;
    s->access_fd = open_log(c->access_log);
    cfg.access_log_fd = s->access_fd;
    s->srv = srv_new(&cfg, err, sizeof err);
    if (!s->srv) {
        log_event("error", "%s", err);
        return false;
    }
    return true;
}

int cmd_serve(int argc, char **argv)
{
    gw_config c;
    cfg_defaults(&c);
    const char *config = NULL, *dev = NULL;
    unsigned port = 8443, ops_port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strcmp(argv[i], "--dev") && i + 1 < argc)
            dev = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ops-port") && i + 1 < argc)
            ops_port = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        } else {
            serve_usage(stderr);
            return 2;
        }
    }
    char err[512];
    if (config && !cfg_load(&c, config, err, sizeof err)) {
        log_event("error", "%s", err);
        return 2;
    }
    if (dev) {
        mkdir(dev, 0700);
        if (!make_dev_pki(dev)) {
            log_event("error", "could not make a test PKI in %s", dev);
            return 1;
        }
        /* two dev instances side by side: the second's --port N moves its ops port to N+1 unless given */
        if (!ops_port)
            ops_port = port == 8443 ? 9090 : port + 1;
        dev_config(&c, dev, port, ops_port);
    } else if (!config) {
        serve_usage(stderr);
        return 2;
    }
    if (c.error_log[0] && strcmp(c.error_log, "-") && !freopen(c.error_log, "a", stderr)) {
        fprintf(stdout, "fhirgw serve: cannot open the error log %s\n", c.error_log);
        return 1;
    }
    services s = {0};
    s.access_fd = -1;
    int status = 1;
    if (open_services(&c, &s, dev != NULL)) {
        running = s.srv;
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (srv_start(s.srv, err, sizeof err)) {
            log_event("info", "fhirgw serving %s (ops on %s)", c.base_url, c.ops_listen);
            if (dev)
                fprintf(stderr,
                        "\nTry:\n  curl --cacert %s/ca.pem --cert %s/clients/hospital-a.crt --key "
                        "%s/clients/hospital-a.key %s/metadata\n  curl http://%s/metrics\n\n",
                        dev, dev, dev, c.base_url, c.ops_listen);
            srv_wait(s.srv);
            log_event("info", "fhirgw stopped");
            status = 0;
        } else {
            log_event("error", "%s", err);
        }
        running = NULL;
    }
    close_services(&s);
    return status;
}

int cmd_config(int argc, char **argv)
{
    gw_config c;
    cfg_defaults(&c);
    char err[512];
    if (argc > 1 && !cfg_load(&c, argv[1], err, sizeof err)) {
        fprintf(stderr, "fhirgw config: %s\n", err);
        return 2;
    }
    cfg_print(&c, stdout);
    return 0;
}
