/*
 * gateway/util/config.c — the settings and the config file reader (see config.h).
 *
 * Adding a text setting or a switch: a field in gw_config and one row in
 * `settings` below. Adding a number: one row in gateway/util/limits.h.
 */
#include "gateway/util/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef enum setting_type { T_STRING, T_SWITCH } setting_type;

typedef struct setting {
    const char *name;
    setting_type type;
    size_t offset;
    const char *default_value;
    const char *doc;
} setting;

#define S(field, type, def, doc)                           \
    {                                                      \
#field, type, offsetof(gw_config, field), def, doc \
    }

/* The text settings and switches; every number is a row of the limits table. */
static const setting settings[] = {
    S(listen, T_STRING, GW_DEFAULT_LISTEN, "host:port of the FHIR endpoint (HTTPS, client certificates required)"),
    S(ops_listen, T_STRING, GW_DEFAULT_OPS_LISTEN,
      "host:port of /healthz, /readyz and /metrics (plain HTTP; keep it local)"),
    S(base_url, T_STRING, "https://" GW_DEFAULT_LISTEN, "public base URL, used in Location headers and Bundle links"),
    S(tls_cert, T_STRING, "/etc/fhirgw/server.crt", "the gateway's server certificate (PEM, with chain)"),
    S(tls_key, T_STRING, "/etc/fhirgw/server.key", "its private key (PEM)"),
    S(tls_client_ca, T_STRING, "/etc/fhirgw/ca-bundle.pem", "CA certificates that client certificates must chain to"),
    S(tls_crl, T_STRING, "/etc/fhirgw/crl.pem",
      "certificate revocation lists of those CAs (checked on every handshake)"),
    S(organisations, T_STRING, "/etc/fhirgw/organisations.tsv",
      "registered organisations: name, URA, roles, certificate, SHA-256 fingerprint (tab separated, with a header)"),
    S(store_path, T_STRING, "/var/lib/fhirgw/fhirgw.db",
      "SQLite database (WAL mode); its folder must be writable; the sealed documents are kept beside it in "
      "<store_path>-documents: back up with `fhirgw backup` (docs/operations.md), not by copying the files"),
    S(conformance, T_STRING, "",
      "folder of profiles, extension definitions, value sets and code systems (a FHIR package folder "
      "works); empty = the implementation guide's package next to the binary (BIN/ig/package in a build "
      "tree, BIN/../share/fhirgw/ig/package installed), none if there is none"),
    S(referential_integrity, T_SWITCH, "1",
      "1: a write whose references name a resource on this server that does not exist, that the writer may not "
      "read, or of a type the element does not allow, is refused (422); 0: such references are stored"),
    S(log_allowed_access, T_SWITCH, "0",
      "1: every allowed access decision is logged as well (refusals always are), one JSON line each"),
    S(audit_key_file, T_STRING, "/etc/fhirgw/audit.key",
      "NEN 7513 audit trail: HMAC keys of the chain, one '<key-id> <64 hex digits>' per line, the last one for new "
      "entries (keep older lines: entries they sealed verify only with them); never inside the database"),
    S(audit_checkpoint_key, T_STRING, "/etc/fhirgw/audit-checkpoint.pem",
      "Ed25519 private key (PEM) that signs the audit chain's checkpoints (openssl genpkey -algorithm ed25519)"),
    S(audit_checkpoint_file, T_STRING, "/var/log/fhirgw/audit-checkpoints",
      "append-only file of signed checkpoints of the audit chain, outside the database (best on other storage)"),
    S(outbound_cert, T_STRING, "/etc/fhirgw/outbound.crt",
      "outbound HTTPS (pull mode, notifications): the gateway's client certificate (PEM, with chain; EKU "
      "clientAuth) presented to providers' FHIR endpoints"),
    S(outbound_key, T_STRING, "/etc/fhirgw/outbound.key", "its private key (PEM)"),
    S(outbound_ca, T_STRING, "/etc/fhirgw/ca-bundle.pem",
      "CA certificates a provider endpoint's server certificate must chain to (its name is checked too)"),
    S(seal_key_file, T_STRING, "/etc/fhirgw/seal.key",
      "handover documents at rest (docs/handover.md): AES-256-GCM keys, one '<key-id> <64 hex digits>' per line, "
      "the last one seals new documents (keep older lines: what they sealed opens only with them); never inside the "
      "database; the server refuses to start without it"),
    S(pseudonym_key_file, T_STRING, "/etc/fhirgw/pseudonym.key",
      "insurer maps: the key of the patient pseudonym (HMAC-SHA-256 of the BSN), 32 to 128 hex digits; changing it "
      "changes every pseudonym the insurer has seen; never inside the database"),
    S(maps_dir, T_STRING, "",
      "insurer maps: the folder of the maps StructureMap/$transform and the /insurer views run (the source tree's "
      "mappings/maps/2026, with conceptmaps/ beside the maps); empty = none, and those answer 503"),
    S(access_log, T_STRING, "-", "JSON-lines access log file, '-' for stdout, empty for none (never patient data)"),
    S(error_log, T_STRING, "-", "JSON-lines error log file, '-' for stderr"),
};

#define SETTING_COUNT (sizeof settings / sizeof *settings)

/* Where each settable limit lives in gw_config; NO_FIELD for the fixed ones. */
#define NO_FIELD SIZE_MAX
#define FIELD_SET_(name) offsetof(gw_config, name)
#define FIELD_FIXED_(name) NO_FIELD
#define FIELD_(name, value, min, unit, access, room, doc) [LIM_ID_##name] = FIELD_##access##_(name),
static const size_t LIMIT_FIELD[LIM_COUNT] = {GW_LIMITS(FIELD_)};

static const setting *find_setting(const char *name)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (!strcmp(settings[i].name, name))
            return &settings[i];
    return NULL;
}

/* ---- Numbers with units ---------------------------------------------------------- */

typedef struct suffix {
    const char *text;
    int64_t factor;
} suffix;

/* The suffixes each unit reads; a plain number is in the unit itself (bytes, ms, us). */
static const suffix BYTE_SUFFIXES[] = {{"k", 1024},
                                       {"K", 1024},
                                       {"m", 1024 * 1024},
                                       {"M", 1024 * 1024},
                                       {"g", 1024 * 1024 * 1024},
                                       {"G", 1024 * 1024 * 1024},
                                       {NULL, 0}};
static const suffix MS_SUFFIXES[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {NULL, 0}};
static const suffix US_SUFFIXES[] = {{"us", 1}, {"ms", 1000}, {"s", 1000000}, {NULL, 0}};
static const suffix NO_SUFFIXES[] = {{NULL, 0}};

static const suffix *suffixes_of(lim_unit unit)
{
    switch (unit) {
    case LIM_UNIT_BYTES: return BYTE_SUFFIXES;
    case LIM_UNIT_MS: return MS_SUFFIXES;
    case LIM_UNIT_US: return US_SUFFIXES;
    case LIM_UNIT_COUNT: break;
    }
    return NO_SUFFIXES;
}

/* "16m" -> 16777216, "30s" -> 30000 (ms); false when malformed or beyond INT64_MAX. */
static bool parse_number(const char *text, lim_unit unit, int64_t *out)
{
    if (!isdigit((unsigned char)*text))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text)
        return false;
    int64_t factor = 1;
    if (*end) {
        const suffix *s = suffixes_of(unit);
        while (s->text && strcmp(end, s->text) != 0)
            s++;
        if (!s->text)
            return false;
        factor = s->factor;
    }
    if (v > INT64_MAX / factor)
        return false;
    *out = v * factor;
    return true;
}

/* The value as the config file writes it: the largest exact suffix ("16m", "30s"). */
static void format_number(int64_t v, lim_unit unit, char *out, size_t size)
{
    static const suffix BYTES_OUT[] = {{"g", 1024 * 1024 * 1024}, {"m", 1024 * 1024}, {"k", 1024}, {NULL, 0}};
    static const suffix MS_OUT[] = {{"s", 1000}, {"ms", 1}, {NULL, 0}};
    const suffix *s = unit == LIM_UNIT_BYTES ? BYTES_OUT : unit == LIM_UNIT_MS ? MS_OUT : NO_SUFFIXES;
    for (; s->text; s++)
        if (v && v % s->factor == 0) {
            snprintf(out, size, "%" PRId64 "%s", v / s->factor, s->text);
            return;
        }
    snprintf(out, size, "%" PRId64 "%s", v, unit == LIM_UNIT_MS ? "ms" : "");
}

static const char *unit_example(lim_unit unit)
{
    switch (unit) {
    case LIM_UNIT_BYTES: return "size (e.g. 16m)";
    case LIM_UNIT_MS: return "duration (e.g. 30s)";
    case LIM_UNIT_US: return "duration in microseconds (e.g. 500us)";
    case LIM_UNIT_COUNT: break;
    }
    return "number";
}

static bool set_limit(gw_config *c, const lim_row *row, const char *value, char *err, size_t errlen)
{
    char shown[32];
    if (!row->settable) {
        format_number(row->value, row->unit, shown, sizeof shown);
        snprintf(err, errlen, "%s is fixed at %s (compiled in), not a setting", row->name, shown);
        return false;
    }
    int64_t n;
    if (!parse_number(value, row->unit, &n)) {
        snprintf(err, errlen, "%s: '%.40s' is not a %s", row->name, value, unit_example(row->unit));
        return false;
    }
    if (n < row->min || n > lim_max(row)) {
        char low[32], high[32];
        format_number(row->min, row->unit, low, sizeof low);
        format_number(lim_max(row), row->unit, high, sizeof high);
        snprintf(err, errlen, "%s: %.40s is outside %s..%s", row->name, value, low, high);
        return false;
    }
    memcpy((char *)c + LIMIT_FIELD[row - lim_table], &n, sizeof n);
    return true;
}

/* ---- Setting ------------------------------------------------------------------------ */

bool cfg_set(gw_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    const setting *s = find_setting(key);
    if (!s) {
        const lim_row *row = lim_find(key);
        if (row)
            return set_limit(c, row, value, err, errlen);
        snprintf(err, errlen, "unknown setting '%.64s'", key);
        return false;
    }
    char *field = (char *)c + s->offset;
    if (s->type == T_SWITCH) {
        if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
            snprintf(err, errlen, "%s: '%.40s' is not 0 or 1", key, value);
            return false;
        }
        int64_t on = value[0] == '1';
        memcpy(field, &on, sizeof on);
        return true;
    }
    size_t n = strlen(value);
    if (n >= CFG_PATH_MAX) {
        snprintf(err, errlen, "%s: value longer than %d bytes", key, CFG_PATH_MAX - 1);
        return false;
    }
    memcpy(field, value, n + 1);
    return true;
}

void cfg_defaults(gw_config *c)
{
    memset(c, 0, sizeof *c);
    char err[256];
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (!cfg_set(c, settings[i].name, settings[i].default_value, err, sizeof err))
            abort(); /* a default that does not parse is a bug in the table above */
    for (size_t i = 0; i < LIM_COUNT; i++)
        if (lim_table[i].settable)
            memcpy((char *)c + LIMIT_FIELD[i], &lim_table[i].value, sizeof lim_table[i].value);
}

/* ---- Reading a file ----------------------------------------------------------------- */

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

/* Cut a comment off: from a '#' that starts the line or follows a blank. */
static void strip_comment(char *line)
{
    for (char *p = line; *p; p++)
        if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
}

/* One line: blank, a comment, or "key value". False with the reason in reason. */
static bool take_line(gw_config *c, char *line, char *reason, size_t size)
{
    strip_comment(line);
    char *text = trim(line);
    if (!*text)
        return true;
    char *space = text + strcspn(text, " \t");
    char *value = *space ? trim(space + 1) : space;
    *space = '\0';
    return cfg_set(c, text, value, reason, size);
}

bool cfg_load(gw_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    bool ok = true;
    char reason[256];
    while (ok && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len > LIM(config_line_max)) {
            snprintf(reason, sizeof reason, "line longer than %d bytes", LIM(config_line_max));
            ok = false;
        } else if (strlen(line) != (size_t)len) {
            snprintf(reason, sizeof reason, "line contains a NUL byte");
            ok = false;
        } else {
            ok = take_line(c, line, reason, sizeof reason);
        }
        if (!ok)
            snprintf(err, errlen, "%s:%u: %s", path, lineno, reason);
    }
    if (ok && ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        ok = false;
    }
    free(line);
    fclose(f);
    return ok;
}

/* ---- Printing ------------------------------------------------------------------------ */

/* A sentence (and its tail) as comment lines of at most about 100 columns. */
static void print_doc(FILE *out, const char *doc, const char *tail)
{
    char text[1024];
    snprintf(text, sizeof text, "%s%s", doc, tail); /* the table's sentences are far shorter */
    size_t column = 0;
    for (const char *p = text; *p;) {
        size_t word = strcspn(p, " ");
        if (column == 0 || column + 1 + word > 100) {
            fprintf(out, "%s# ", column ? "\n" : "");
            column = 2;
        } else {
            fputc(' ', out);
            column++;
        }
        fwrite(p, 1, word, out);
        column += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

static void print_setting(const gw_config *c, const setting *s, FILE *out)
{
    const char *field = (const char *)c + s->offset;
    char tail[CFG_PATH_MAX + 16];
    snprintf(tail, sizeof tail, " (default: %s)", *s->default_value ? s->default_value : "empty");
    fputc('\n', out);
    print_doc(out, s->doc, tail);
    if (s->type == T_STRING) {
        fprintf(out, "%s%s%s\n", s->name, *field ? " " : "", field);
    } else {
        int64_t n;
        memcpy(&n, field, sizeof n);
        fprintf(out, "%s %" PRId64 "\n", s->name, n);
    }
}

static void print_limit(const gw_config *c, const lim_row *row, FILE *out)
{
    char value[32], tail[64];
    format_number(row->value, row->unit, value, sizeof value);
    fputc('\n', out);
    if (!row->settable) {
        print_doc(out, row->doc, "");
        fprintf(out, "#   %s %s  (fixed: compiled in, not a setting)\n", row->name, value);
        return;
    }
    snprintf(tail, sizeof tail, " (default: %s)", value);
    print_doc(out, row->doc, tail);
    int64_t n;
    memcpy(&n, (const char *)c + LIMIT_FIELD[row - lim_table], sizeof n);
    format_number(n, row->unit, value, sizeof value);
    fprintf(out, "%s %s\n", row->name, value);
}

void cfg_print(const gw_config *c, FILE *out)
{
    fprintf(out, "# fhirgw configuration: every setting with its documentation, then every limit.\n"
                 "# One setting per line: name value. Sizes take k/m/g suffixes, durations ms/s/m\n"
                 "# (microsecond ones us/ms/s). Fixed limits are listed as comments.\n");
    for (size_t i = 0; i < SETTING_COUNT; i++)
        print_setting(c, &settings[i], out);
    const char *room = NULL;
    for (size_t i = 0; i < LIM_COUNT; i++) {
        if (!room || strcmp(room, lim_table[i].room) != 0) {
            room = lim_table[i].room;
            fprintf(out, "\n# ---- limits of %s%s (gateway/util/limits.h) ----\n",
                    strcmp(room, "fhir") ? "gateway/" : "", room);
        }
        print_limit(c, &lim_table[i], out);
    }
}
