/*
 * gateway/util/config.c — the settings table and the config file reader (see config.h).
 *
 * Adding a setting: a field in gw_config and one row in `settings` below.
 * Sizes accept k/m/g suffixes (powers of 1024); durations are milliseconds
 * with optional ms/s/m suffixes.
 */
#include "gateway/util/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STRING, T_INT, T_SIZE, T_DURATION } setting_type;

typedef struct setting {
    const char *name;
    setting_type type;
    size_t offset;
    const char *default_value;
    const char *doc;
} setting;

#define S(field, type, def, doc) {#field, type, offsetof(gw_config, field), def, doc}

static const setting settings[] = {
    S(listen, T_STRING, "127.0.0.1:8443", "host:port of the FHIR endpoint (HTTPS, client certificates required)"),
    S(ops_listen, T_STRING, "127.0.0.1:9090", "host:port of /healthz, /readyz and /metrics (plain HTTP; keep it local)"),
    S(base_url, T_STRING, "https://127.0.0.1:8443", "public base URL, used in Location headers and Bundle links"),
    S(workers, T_INT, "0", "event-loop threads; 0 = one per CPU core"),
    S(tls_cert, T_STRING, "/etc/fhirgw/server.crt", "the gateway's server certificate (PEM, with chain)"),
    S(tls_key, T_STRING, "/etc/fhirgw/server.key", "its private key (PEM)"),
    S(tls_client_ca, T_STRING, "/etc/fhirgw/ca-bundle.pem", "CA certificates that client certificates must chain to"),
    S(tls_crl, T_STRING, "/etc/fhirgw/crl.pem", "certificate revocation lists of those CAs (checked on every handshake)"),
    S(organisations, T_STRING, "/etc/fhirgw/organisations.tsv",
      "registered organisations: name, URA, roles, certificate, SHA-256 fingerprint (tab separated, with a header)"),
    S(store_path, T_STRING, "/var/lib/fhirgw/fhirgw.db", "SQLite database (WAL mode); its folder must be writable"),
    S(store_batch_max, T_INT, "256", "most writes committed together in one transaction (group commit)"),
    S(store_batch_wait_us, T_INT, "1000", "how long the committer waits for more writes to join a batch (microseconds)"),
    S(conformance, T_STRING, "", "folder of profiles, extension definitions, value sets and code systems; empty = none"),
    S(page_size_default, T_INT, "50", "search results per page when the client gives no _count"),
    S(page_size_max, T_INT, "500", "largest _count honoured"),
    S(page_max_bytes, T_SIZE, "16m",
      "bytes of resources per search or history page at most: a page stops before the entry that would pass it "
      "(it always has one) and its next link continues from there"),
    S(max_body_bytes, T_SIZE, "16m", "largest request body; larger ones get 413"),
    S(max_header_bytes, T_SIZE, "16k", "largest request header block; larger ones get 431"),
    S(max_connections, T_INT, "4096", "open client connections at most; more are refused"),
    S(request_timeout_ms, T_DURATION, "30s", "a request must arrive completely within this time, or the connection is cut"),
    S(idle_timeout_ms, T_DURATION, "60s", "idle keep-alive connections are closed after this time"),
    S(drain_timeout_ms, T_DURATION, "10s",
      "on SIGTERM, how long in-flight requests may take to finish (every request already received is answered)"),
    S(max_inflight_bytes, T_SIZE, "256m",
      "memory budget: request bodies (counted as they arrive) and answers (until sent) held at once, all connections "
      "together; past it new requests get 503 with Retry-After (the ops port is exempt); keep it well above "
      "max_body_bytes"),
    S(rate_limit_per_second, T_INT, "200", "requests per second per organisation (token bucket); 0 = no limit"),
    S(rate_limit_burst, T_INT, "400", "bucket size: requests an organisation may send at once"),
    S(referential_integrity, T_INT, "1",
      "1: a write whose references name a resource on this server that does not exist, that the writer may not "
      "read, or of a type the element does not allow, is refused (422); 0: such references are stored"),
    S(log_allowed_access, T_INT, "0",
      "1: every allowed access decision is logged as well (refusals always are), one JSON line each"),
    S(access_log, T_STRING, "-", "JSON-lines access log file, '-' for stdout, empty for none (never patient data)"),
    S(error_log, T_STRING, "-", "JSON-lines error log file, '-' for stderr"),
};

#define SETTING_COUNT (sizeof settings / sizeof *settings)

static const setting *find_setting(const char *name)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (!strcmp(settings[i].name, name))
            return &settings[i];
    return NULL;
}

/* "16m" -> 16777216; multiplier suffixes k, m, g (and their upper case). */
static bool parse_number(const char *text, setting_type type, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || v < 0)
        return false;
    int64_t mul = 1;
    if (type == T_SIZE) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mul = 1024; end++; break;
        case 'm': mul = 1024 * 1024; end++; break;
        case 'g': mul = 1024 * 1024 * 1024; end++; break;
        default: break;
        }
    } else if (type == T_DURATION) {
        if (!strcmp(end, "ms"))
            end += 2;
        else if (!strcmp(end, "s"))
            mul = 1000, end += 1;
        else if (!strcmp(end, "m"))
            mul = 60000, end += 1;
    }
    if (*end)
        return false;
    if (v > INT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

bool cfg_set(gw_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    const setting *s = find_setting(key);
    if (!s) {
        snprintf(err, errlen, "unknown setting '%s'", key);
        return false;
    }
    char *field = (char *)c + s->offset;
    if (s->type == T_STRING) {
        if (strlen(value) >= CFG_PATH_MAX) {
            snprintf(err, errlen, "%s: value longer than %d bytes", key, CFG_PATH_MAX - 1);
            return false;
        }
        memcpy(field, value, strlen(value) + 1);
        return true;
    }
    int64_t n;
    if (!parse_number(value, s->type, &n)) {
        snprintf(err, errlen, "%s: '%s' is not a %s", key, value,
                 s->type == T_SIZE ? "size (e.g. 16m)" : s->type == T_DURATION ? "duration (e.g. 30s)" : "number");
        return false;
    }
    memcpy(field, &n, sizeof n);
    return true;
}

void cfg_defaults(gw_config *c)
{
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (!cfg_set(c, settings[i].name, settings[i].default_value, err, sizeof err))
            abort(); /* a default that does not parse is a bug in the table above */
}

/* Trim in place; returns the start. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

bool cfg_load(gw_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    char line[2048];
    unsigned lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *text = trim(line);
        if (!*text)
            continue;
        char *space = text + strcspn(text, " \t");
        char *value = *space ? trim(space + 1) : space;
        *space = '\0';
        char reason[256];
        if (!cfg_set(c, text, value, reason, sizeof reason)) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, reason);
            ok = false;
        }
    }
    fclose(f);
    return ok;
}

void cfg_print(const gw_config *c, FILE *out)
{
    fprintf(out, "# fhirgw configuration. Every setting, with its documentation.\n"
                 "# Sizes take k/m/g suffixes, durations ms/s/m.\n");
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting *s = &settings[i];
        const char *field = (const char *)c + s->offset;
        fprintf(out, "\n# %s (default: %s)\n", s->doc, *s->default_value ? s->default_value : "empty");
        if (s->type == T_STRING) {
            fprintf(out, "%s %s\n", s->name, field);
        } else {
            int64_t n;
            memcpy(&n, field, sizeof n);
            fprintf(out, "%s %lld%s\n", s->name, (long long)n, s->type == T_DURATION ? "ms" : "");
        }
    }
}
