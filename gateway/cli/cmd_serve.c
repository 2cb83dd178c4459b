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
 * With the `conformance` setting empty, the implementation guide's package is
 * loaded from next to the binary (cli_guide_package); a setting wins.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
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
#include "gateway/util/files.h"
#include "gateway/util/log.h"
#include "gateway/relay/deliver.h"
#include "gateway/rest/directory.h"
#include "gateway/rest/rest.h"

static srv_server *running; /* for the signal handler */

/* Room for any error sentence of the layers below: it may name two configured files (each up to
 * CFG_PATH_MAX) and a library's reason, and must reach the log whole. */
#define ERR_MAX (4 * CFG_PATH_MAX)

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        srv_stop(running);
}

/* The error log: JSON lines on stderr, which the config's error_log may point at a file. Never patient data. */
static lg_logger errors = {.fd = STDERR_FILENO, .min_level = LG_DEBUG};

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

bool cli_guide_package(const char *exe, char *out, size_t size)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", exe ? exe : "");
    char *slash = strrchr(dir, '/');
    if (!slash)
        return false;
    *slash = '\0';
    const char *const where[] = {"/ig/package", "/" FHIRGW_DATADIR_FROM_BIN "/ig/package"};
    for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
        int written = snprintf(out, size, "%s%s/package.json", dir, where[i]);
        if (written > 0 && (size_t)written < size && file_exists(out)) {
            out[written - strlen("/package.json")] = '\0';
            return true;
        }
    }
    return false;
}

/* The folder to load profiles from: the setting, else the guide's package next to the binary, else none (""). */
static const char *conformance_folder(const gw_config *c, char *buf, size_t size)
{
    if (c->conformance[0]) {
        lg_msg(&errors, LG_INFO, "conformance: loading %s (the conformance setting)", c->conformance);
        return c->conformance;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    if (n > 0 && cli_guide_package(exe, buf, size)) {
        lg_msg(&errors, LG_INFO, "conformance: loading the implementation guide's package %s", buf);
        return buf;
    }
    lg_msg(&errors, LG_WARNING, "conformance: no setting and no guide package next to %s: profiles are not checked",
           n > 0 ? exe : "the binary");
    return "";
}

static bool make_dev_pki(const char *dir)
{
    char marker[PATH_MAX];
    int n = snprintf(marker, sizeof marker, "%s/organisations.tsv", dir);
    if (n < 0 || (size_t)n >= sizeof marker)
        return false;
    bool pki = file_exists(marker);
    n = snprintf(marker, sizeof marker, "%s/audit.key", dir);
    bool audit = pki && n > 0 && (size_t)n < sizeof marker && file_exists(marker);
    n = snprintf(marker, sizeof marker, "%s/seal.key", dir);
    if (audit && n > 0 && (size_t)n < sizeof marker && file_exists(marker))
        return true;
    char script[PATH_MAX];
    if (!find_pki_script(script, sizeof script)) {
        lg_msg(&errors, LG_ERROR, "certs/make-test-pki not found (set FHIRGW_PKI_SCRIPT)");
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) { /* a folder made before the audit trail or sealing gets just the keys it lacks */
        if (pki)
            execl(script, script, "--audit-keys", dir, (char *)NULL);
        else
            execl(script, script, dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The settings --dev implies; false (logged) when a path in DIR would not fit a setting. */
bool cli_dev_config(gw_config *c, const char *dir, unsigned port, unsigned ops_port)
{
    char err[ERR_MAX];
    char buf[CFG_PATH_MAX];
    bool ok = true;
#define SET(key, ...)                                                                                            \
    do {                                                                                                         \
        int n_ = snprintf(buf, sizeof buf, __VA_ARGS__);                                                         \
        if (n_ < 0 || (size_t)n_ >= sizeof buf) {                                                                \
            lg_msg(&errors, LG_ERROR, "--dev %s: %s would be longer than %d bytes", dir, key, CFG_PATH_MAX - 1); \
            ok = false;                                                                                          \
        } else if (!cfg_set(c, key, buf, err, sizeof err)) {                                                     \
            lg_msg(&errors, LG_ERROR, "--dev: %s", err);                                                         \
            ok = false;                                                                                          \
        }                                                                                                        \
    } while (0)
    SET("listen", GW_DEFAULT_HOST ":%u", port);
    SET("base_url", "https://" GW_DEFAULT_HOST ":%u", port);
    SET("ops_listen", GW_DEFAULT_HOST ":%u", ops_port);
    SET("tls_cert", "%s/server.crt", dir);
    SET("tls_key", "%s/server.key", dir);
    SET("tls_client_ca", "%s/ca-bundle.pem", dir);
    SET("tls_crl", "%s/crl.pem", dir);
    SET("organisations", "%s/organisations.tsv", dir);
    SET("store_path", "%s/fhirgw.db", dir);
    SET("outbound_cert", "%s/outbound.crt", dir);
    SET("outbound_key", "%s/outbound.key", dir);
    SET("outbound_ca", "%s/ca-bundle.pem", dir);
    SET("audit_key_file", "%s/audit.key", dir);
    SET("audit_checkpoint_key", "%s/audit-checkpoint.pem", dir);
    SET("audit_checkpoint_file", "%s/audit-checkpoints", dir);
    SET("pseudonym_key_file", "%s/pseudonym.key", dir);
    SET("seal_key_file", "%s/seal.key", dir);
#undef SET
    return ok;
}

bool cli_settings(const char *who, const char *flag, const char *value, gw_config *c)
{
    cfg_defaults(c);
    if (!strcmp(flag, "--dev"))
        return cli_dev_config(c, value, GW_DEFAULT_PORT, GW_DEFAULT_OPS_PORT);
    if (strcmp(flag, "--config"))
        return false;
    char err[ERR_MAX];
    if (cfg_load(c, value, err, sizeof err))
        return true;
    fprintf(stderr, "%s: %s\n", who, err);
    return false;
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

/*
 * The error log file, when one is configured, becomes stderr itself (O_APPEND), so that
 * everything written there (the logger's lines, the REST layer's, a sanitizer's report) lands in it.
 */
static bool point_stderr_at(const char *path, char *err, size_t errlen)
{
    if (!path[0] || !strcmp(path, "-"))
        return true;
    lg_logger file;
    if (!lg_open(&file, path, STDERR_FILENO, err, errlen))
        return false;
    fflush(stderr);
    bool ok = dup2(file.fd, STDERR_FILENO) >= 0;
    if (!ok)
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    lg_close(&file);
    return ok;
}

static void serve_usage(FILE *to)
{
    fprintf(to, "usage: fhirgw serve --config FILE\n"
                "       fhirgw serve --dev DIR [--port N] [--ops-port M]\n"
                "  --config FILE  settings (see 'fhirgw config' for every setting and its default)\n"
                "  --dev DIR      development: a test PKI and the store in DIR, organisations registered,\n"
                "                 FHIR on https://" GW_DEFAULT_LISTEN " (or --port N), /healthz /readyz /metrics on\n"
                "                 http://" GW_DEFAULT_OPS_LISTEN " (or --ops-port M; with only --port N given: N+1)\n");
}

static bool ready(void *arg)
{
    return arg != NULL;
}

/* Store commits into the metrics: commit latency and batch size (how well group commit shares syncs), and the
 * store's own counters as they stand after each commit. */
typedef struct store_metrics {
    mx_metric *commit_seconds;
    mx_metric *batch_transactions;
    mx_metric *failed_commits;
    mx_metric *cache_hits, *document_syncs, *document_bytes, *document_reclaimed;
    uint64_t cache_hits_seen, document_syncs_seen; /* what the counters above have been given (on_commit's thread) */
    _Atomic(st_store *) store;                     /* set once it is open */
    _Atomic(rly_relay *) relay;                    /* woken by commits that queue notifications; set once it runs */
} store_metrics;

/* A counter brought up to a value the store counts itself. */
static void catch_up(mx_metric *counter, uint64_t now, uint64_t *seen)
{
    if (now > *seen)
        mx_add(counter, now - *seen);
    *seen = now;
}

static void on_commit(void *arg, const st_commit_stats *stats)
{
    store_metrics *m = arg;
    mx_observe(m->commit_seconds, (double)stats->commit_us / 1e6);
    mx_observe(m->batch_transactions, (double)stats->transactions);
    if (!stats->ok)
        mx_inc(m->failed_commits);
    st_store *store = atomic_load(&m->store);
    if (store) {
        st_counters c;
        st_counters_get(store, &c);
        catch_up(m->cache_hits, c.read_cache_hits, &m->cache_hits_seen);
        catch_up(m->document_syncs, c.document_log_syncs, &m->document_syncs_seen);
        mx_gauge_set(m->document_bytes, (int64_t)c.document_log_bytes);
    }
    if (stats->notifications)
        rly_wake(atomic_load(&m->relay));
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
    m->cache_hits = mx_series(mx_counter(reg, "fhirgw_store_read_cache_hits_total",
                                         "Reads of the directory (Organization, Endpoint) answered from memory.", NULL),
                              NULL);
    m->document_syncs = mx_series(mx_counter(reg, "fhirgw_store_document_log_syncs_total",
                                             "fdatasyncs of the document log that keeps sealed documents.", NULL),
                                  NULL);
    m->document_bytes = mx_series(mx_gauge(reg, "fhirgw_store_document_log_bytes",
                                           "Length of the document log; purged records are holes in it, so the "
                                           "disk holds less.",
                                           NULL),
                                  NULL);
    m->document_reclaimed = mx_series(mx_gauge(reg, "fhirgw_store_document_log_reclaimed_bytes",
                                               "Bytes of the document log that no row named, freed at this start "
                                               "(after an unclean stop or a restore).",
                                               NULL),
                                      NULL);
}

/* A sealed document that does not open is an incident (altered or moved in the database, or its key dropped). */
static void log_seal_failure(void *arg, const char *message)
{
    (void)arg;
    lg_msg(&errors, LG_ERROR, "sealed document does not open: %s", message);
}

/* Everything the server needs, opened in order and closed in reverse. */
typedef struct services {
    mx_registry *metrics;
    store_metrics store_mx;
    id_table *orgs;
    pf_registry *profiles;
    st_store *store;
    au_keyring *audit_keys;
    au_signer *audit_signer;
    sl_keyring *seal_keys;
    rest_app *app;
    srv_server *srv;
    ob_client *relay_outbound; /* the relay's: one attempt per call, its own timeout (gateway/relay/deliver.h) */
    rly_relay *relay;
    lg_logger access_log;
    rl_pack *pack;         /* this contract year's rule pack (NULL: the compliance operations answer 503) */
    rl_engine *rules;      /* ... over the guide's profiles */
    ob_client *outbound;   /* pull mode's client (NULL: pull mode answers 503) */
    mpn_key pseudonym_key; /* for the insurer maps (maps_dir) */
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
    /* the relay first: its workers use the store, the REST layer (dead letters) and the outbound client */
    atomic_store(&s->store_mx.relay, NULL);
    rly_stop(s->relay);
    ob_client_free(s->relay_outbound);
    st_close(s->store);
    srv_free(s->srv);
    rest_app_free(s->app);
    rl_engine_free(s->rules);
    rl_pack_free(s->pack);
    ob_client_free(s->outbound);
    pf_registry_free(s->profiles);
    id_table_free(s->orgs);
    mx_registry_free(s->metrics);
    lg_close(&s->access_log);
    au_keyring_free(s->audit_keys); /* after st_close: its last checkpoint is signed with them */
    au_signer_free(s->audit_signer);
    sl_keyring_free(s->seal_keys); /* after st_close: the last writes are sealed with them */
    memset(&s->pseudonym_key, 0, sizeof s->pseudonym_key);
}

/* The pseudonym key of the insurer maps (only when maps_dir is set); false after logging why not. */
static bool load_pseudonym_key(const gw_config *c, mpn_key *key)
{
    size_t len = 0;
    char *text = files_read(c->pseudonym_key_file, &len);
    if (!text) {
        lg_msg(&errors, LG_ERROR, "pseudonym_key_file %s: %s", c->pseudonym_key_file, strerror(errno));
        return false;
    }
    char err[256];
    bool ok = mpn_key_from_hex(text, len, key, err, sizeof err);
    memset(text, 0, len);
    free(text);
    if (!ok)
        lg_msg(&errors, LG_ERROR, "pseudonym_key_file %s: %s", c->pseudonym_key_file, err);
    return ok;
}

/*
 * The compliance operations (docs/rules.md): the rule pack of the current contract year over the guide's
 * profiles, and the outbound client of pull mode. Either missing is a warning: the gateway serves
 * everything else, and those operations answer 503 saying what is missing.
 */
static void open_compliance(const gw_config *c, services *s)
{
    time_t now = time(NULL);
    struct tm tm;
    int year = gmtime_r(&now, &tm) ? tm.tm_year + 1900 : 0;
    s->pack = s->profiles ? cli_load_pack(NULL, year) : NULL;
    if (s->pack) {
        oo_list issues;
        oo_list_init(&issues, 0);
        s->rules = rl_engine_new(s->pack, s->profiles, &issues);
        for (size_t i = 0; i < issues.count; i++)
            lg_msg(&errors, LG_WARNING, "rules: %s", issues.items[i].message);
        oo_list_free(&issues);
    }
    if (!s->rules)
        lg_msg(&errors, LG_WARNING,
               "rules: no rule pack for contract year %d with the guide's profiles: "
               "$gzsp-check, $compliance and $contract-check answer 503",
               year);
    ob_config oc = ob_config_from(c);
    ob_error oerr = {.kind = OB_INVALID, .message = "curl_global_init failed"};
    s->outbound = ob_global_init() ? ob_client_new(&oc, &oerr) : NULL;
    if (!s->outbound)
        lg_msg(&errors, LG_WARNING, "outbound: %s: pull mode answers 503", oerr.message);
}

/*
 * The insurer maps to load: the maps_dir setting, else (in --dev) this contract year's maps beside the binary
 * (mappings/maps/<year>, as the rule pack), else none ("": $transform and the /insurer views answer 503).
 */
static const char *maps_folder(const gw_config *c, bool dev, char *buf, size_t size)
{
    if (c->maps_dir[0])
        return c->maps_dir;
    time_t now = time(NULL);
    struct tm tm;
    char rel[64];
    snprintf(rel, sizeof rel, "/mappings/maps/%d", gmtime_r(&now, &tm) ? tm.tm_year + 1900 : 0);
    if (dev && cli_beside_binary(rel, buf, size)) {
        lg_msg(&errors, LG_INFO, "maps: loading the insurer maps %s", buf);
        return buf;
    }
    return "";
}

/*
 * The relay of handover notifications (docs/handover.md "Notifications"). Without a usable outbound client
 * (its certificate or CA missing) the gateway still serves: notifications stay queued in the store, pending,
 * and are delivered once the relay runs with a working client.
 */
static void start_relay(const gw_config *c, services *s)
{
    ob_config oc = rly_outbound_config(c);
    ob_error oerr;
    s->relay_outbound = ob_client_new(&oc, &oerr);
    if (!s->relay_outbound) {
        lg_msg(&errors, LG_ERROR, "relay: no outbound client (%s): handover notifications stay queued", oerr.message);
        return;
    }
    rly_config rc = {0};
    rc.store = s->store;
    rc.base_url = c->base_url;
    rc.deliver = rly_deliver_outbound;
    rc.deliver_arg = s->relay_outbound;
    rc.on_dead = rest_handover_mark_undelivered;
    rc.on_dead_arg = s->app;
    rc.workers = (unsigned)c->relay_workers;
    rc.base_delay_ms = (unsigned)c->relay_base_delay_ms;
    rc.max_delay_ms = (unsigned)c->relay_max_delay_ms;
    rc.horizon_ms = (uint64_t)c->relay_horizon_ms;
    rc.poll_ms = (unsigned)c->relay_poll_ms;
    rc.batch_max = (unsigned)c->relay_batch_max;
    rc.keep_delivered_ms = (uint64_t)c->relay_keep_delivered_ms;
    rc.metrics = s->metrics;
    char err[ERR_MAX];
    s->relay = rly_start(&rc, err, sizeof err);
    if (!s->relay)
        lg_msg(&errors, LG_ERROR, "relay: %s: handover notifications stay queued", err);
    atomic_store(&s->store_mx.relay, s->relay);
}

/* What the store's start did with the document log after an unclean stop or a restore: the log line says it
 * ran (the kill test reads it), how long it took and what it freed; /metrics has the bytes. */
static void log_reclaim(services *s, const char *store_path)
{
    st_reclaim r;
    st_reclaim_report(s->store, &r);
    mx_gauge_set(s->store_mx.document_reclaimed, (int64_t)r.freed);
    if (!r.ran)
        return;
    if (r.error)
        lg_msg(&errors, LG_WARNING, "store %s: the document log's unused records stay until the next start: %s",
               store_path, r.error);
    else
        lg_msg(&errors, LG_INFO,
               "store %s: no clean stop before this start (a crash, a kill or a restore): checked the document log "
               "against its %" PRIu64 " documents in %" PRIu64 " ms and freed %" PRIu64 " bytes that no row names",
               store_path, r.documents, r.micros / 1000, r.freed);
}

static bool open_services(const gw_config *c, services *s, bool dev)
{
    char maps_buf[PATH_MAX];
    char err[ERR_MAX];
    s->orgs = id_table_load(c->organisations, err, sizeof err);
    if (!s->orgs) {
        lg_msg(&errors, LG_ERROR, "organisations: %s", err);
        return false;
    }
    char guide[PATH_MAX];
    const char *conformance = conformance_folder(c, guide, sizeof guide);
    if (conformance[0]) {
        oo_list issues;
        oo_list_init(&issues, 0);
        const char *dirs[1] = {conformance};
        s->profiles = conf_load(dirs, 1, &issues);
        for (size_t i = 0; i < issues.count; i++)
            lg_msg(&errors, issues.items[i].severity <= OO_ERROR ? LG_ERROR : LG_WARNING, "conformance: %s",
                   issues.items[i].message);
        oo_list_free(&issues);
    }
    open_compliance(c, s);
    /* no audit trail, no service: an access that cannot be recorded is not answered (docs/audit.md) */
    s->audit_keys = au_keyring_load(c->audit_key_file, err, sizeof err);
    if (s->audit_keys)
        s->audit_signer = au_signer_load(c->audit_checkpoint_key, err, sizeof err);
    if (!s->audit_keys || !s->audit_signer || !au_signer_can_sign(s->audit_signer)) {
        lg_msg(&errors, LG_ERROR, "audit: %s", s->audit_signer ? "the checkpoint key is a public key" : err);
        return false;
    }
    /* no seal keys, no service: handover documents are never stored in the clear (docs/handover.md) */
    s->seal_keys = sl_keyring_load(c->seal_key_file, err, sizeof err);
    if (!s->seal_keys) {
        lg_msg(&errors, LG_ERROR, "seal_key_file: %s (handover documents are stored sealed; see docs/handover.md)",
               err);
        return false;
    }
    s->metrics = mx_registry_new();
    register_store_metrics(s->metrics, &s->store_mx);
    st_config sc = {0};
    sc.audit_keys = s->audit_keys;
    sc.audit_signer = s->audit_signer;
    sc.audit_checkpoint_path = c->audit_checkpoint_file;
    sc.audit_checkpoint_entries = (unsigned)c->audit_checkpoint_entries;
    sc.audit_checkpoint_ms = (unsigned)c->audit_checkpoint_ms;
    sc.seal_keys = s->seal_keys;
    sc.on_seal_failure = log_seal_failure;
    sc.path = c->store_path;
    sc.exclusive = true; /* one gateway per database */
    sc.on_commit = on_commit;
    sc.on_commit_arg = &s->store_mx;
    sc.max_batch = (unsigned)c->store_batch_max;
    /* the config's 0 means "no waiting"; the store's 0 means "its default" */
    sc.batch_wait_us = c->store_batch_wait_us ? (int)c->store_batch_wait_us : -1;
    sc.max_queue = (unsigned)c->store_max_queue;
    sc.max_readers = (unsigned)c->store_max_readers;
    sc.busy_timeout_ms = (unsigned)c->store_busy_timeout_ms;
    st_error serr;
    s->store = st_open(&sc, &serr);
    if (!s->store) {
        lg_msg(&errors, LG_ERROR, "store %s: %s", c->store_path, serr.message);
        return false;
    }
    atomic_store(&s->store_mx.store, s->store);
    log_reclaim(s, c->store_path);
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
    ro.log = &errors;
    ro.audit_keys = s->audit_keys;
    ro.handover_retention_days = (unsigned)c->handover_retention_days;
    ro.purge_interval_ms = (unsigned)c->handover_purge_interval_ms;
    ro.rules = s->rules;
    ro.outbound = s->outbound;
    const char *maps = maps_folder(c, dev, maps_buf, sizeof maps_buf);
    if (maps[0]) {
        if (!load_pseudonym_key(c, &s->pseudonym_key))
            return false;
        ro.maps_dir = maps;
        ro.pseudonym_key = &s->pseudonym_key;
    }
    s->app = rest_app_new(&ro, err, sizeof err);
    if (!s->app) {
        lg_msg(&errors, LG_ERROR, "%s", err);
        return false;
    }
    if (dev && !dir_publish_registered(s->app, c->organisations))
        lg_msg(&errors, LG_WARNING, "not every organisation could be registered");
    srv_config cfg;
    srv_config_defaults(&cfg);
    char host[256], ops_host[256];
    if (!split_listen(c->listen, host, sizeof host, &cfg.port) ||
        !split_listen(c->ops_listen, ops_host, sizeof ops_host, &cfg.ops_port)) {
        lg_msg(&errors, LG_ERROR, "listen and ops_listen are host:port");
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
    cfg.max_headers = (size_t)c->max_headers;
    cfg.max_body_bytes = (size_t)c->max_body_bytes;
    cfg.max_connections = (unsigned)c->max_connections;
    cfg.request_timeout_ms = (unsigned)c->request_timeout_ms;
    cfg.idle_timeout_ms = (unsigned)c->idle_timeout_ms;
    cfg.write_timeout_ms = (unsigned)c->write_timeout_ms;
    cfg.drain_timeout_ms = (unsigned)c->drain_timeout_ms;
    cfg.max_inflight_bytes = (size_t)c->max_inflight_bytes;
    cfg.send_buffer_bytes = (size_t)c->send_buffer_bytes;
    cfg.handler = rest_handle;
    cfg.handler_arg = s->app;
    cfg.metrics = s->metrics;
    cfg.ready = ready;
    cfg.ready_arg = s->store;
    if (!lg_open(&s->access_log, c->access_log, STDOUT_FILENO, err, sizeof err)) {
        lg_msg(&errors, LG_ERROR, "access log %s", err);
        return false;
    }
    cfg.access_log_fd = s->access_log.fd;
    s->srv = srv_new(&cfg, err, sizeof err);
    if (!s->srv) {
        lg_msg(&errors, LG_ERROR, "%s", err);
        return false;
    }
    start_relay(c, s);
    return true;
}

int cmd_serve(int argc, char **argv)
{
    gw_config c;
    cfg_defaults(&c);
    const char *config = NULL, *dev = NULL;
    unsigned port = GW_DEFAULT_PORT, ops_port = 0;
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
    char err[ERR_MAX];
    if (config && !cfg_load(&c, config, err, sizeof err)) {
        lg_msg(&errors, LG_ERROR, "%s", err);
        return 2;
    }
    if (dev) {
        mkdir(dev, 0700);
        if (!make_dev_pki(dev)) {
            lg_msg(&errors, LG_ERROR, "could not make a test PKI in %s", dev);
            return 1;
        }
        /* two dev instances side by side: the second's --port N moves its ops port to N+1 unless given */
        if (!ops_port)
            ops_port = port == GW_DEFAULT_PORT ? GW_DEFAULT_OPS_PORT : port + 1;
        if (!cli_dev_config(&c, dev, port, ops_port))
            return 2;
    } else if (!config) {
        serve_usage(stderr);
        return 2;
    }
    if (!point_stderr_at(c.error_log, err, sizeof err)) {
        fprintf(stdout, "fhirgw serve: cannot open the error log %s\n", err);
        return 1;
    }
    services s = {0};
    lg_init(&s.access_log, -1);
    int status = 1;
    if (open_services(&c, &s, dev != NULL)) {
        running = s.srv;
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (srv_start(s.srv, err, sizeof err)) {
            lg_msg(&errors, LG_INFO, "fhirgw serving %s (ops on %s)", c.base_url, c.ops_listen);
            if (dev)
                fprintf(stderr,
                        "\nTry:\n  curl --cacert %s/ca.pem --cert %s/clients/hospital-a.crt --key "
                        "%s/clients/hospital-a.key %s/metadata\n  curl http://%s/metrics\n\n",
                        dev, dev, dev, c.base_url, c.ops_listen);
            srv_wait(s.srv);
            lg_msg(&errors, LG_INFO, "fhirgw stopped");
            status = 0;
        } else {
            lg_msg(&errors, LG_ERROR, "%s", err);
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
    char err[ERR_MAX];
    if (argc > 1 && !cfg_load(&c, argv[1], err, sizeof err)) {
        fprintf(stderr, "fhirgw config: %s\n", err);
        return 2;
    }
    cfg_print(&c, stdout);
    return 0;
}
