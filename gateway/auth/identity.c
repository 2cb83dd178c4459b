/*
 * gateway/auth/identity.c — who is calling, from a verified peer certificate.
 *
 * Three parts, in the order a request meets them:
 *
 *   1. id_verify_chain: the certificate chains to our CA, is in its validity
 *      period, is not revoked, and may be used by a TLS client.
 *   2. id_ura_from_cert: the URA in the UZI otherName (2.5.5.5), parsed field
 *      by field (id_parse_uzi_name) so that a malformed value is rejected rather
 *      than half-read.
 *   3. id_resolve: the URA from (2), else a pinned fingerprint from the
 *      operator's table, else unknown.
 *
 * See identity.h for the contract and the format of the table file.
 */
#include "gateway/auth/identity.h"
#include "gateway/util/hex.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"

/* ---- Small character helpers ------------------------------------------------ */

/* Locale-free on purpose: certificate contents are bytes, not text in the
 * process's locale. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

static void set_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Copy a string of known length into a fixed buffer; false if it does not fit. */
static bool copy_bounded(char *dst, size_t dstsize, const char *src, size_t n)
{
    if (n >= dstsize)
        return false;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return true;
}

/* ---- Status messages ------------------------------------------------------- */

const char *id_status_message(id_status status)
{
    switch (status) {
    case ID_OK: return "ok";
    case ID_ERR_NO_CERT: return "no certificate";
    case ID_ERR_NO_SAN: return "certificate has no subjectAltName";
    case ID_ERR_BAD_SAN: return "subjectAltName is malformed or repeated";
    case ID_ERR_NO_UZI_NAME: return "subjectAltName has no UZI otherName (2.5.5.5)";
    case ID_ERR_VALUE_TYPE: return "UZI otherName value is not an IA5String";
    case ID_ERR_EMPTY: return "UZI otherName value is empty";
    case ID_ERR_TOO_LONG: return "UZI otherName value is too long";
    case ID_ERR_NOT_PRINTABLE: return "UZI otherName value has a non-printable or non-ASCII byte";
    case ID_ERR_FIELD_COUNT: return "UZI otherName value does not have 7 dash-separated fields";
    case ID_ERR_BAD_CA_OID: return "UZI otherName: CA OID is not a dotted OID";
    case ID_ERR_BAD_VERSION: return "UZI otherName: version is not a number";
    case ID_ERR_BAD_UZI_NUMBER: return "UZI otherName: UZI number is not 1-12 digits";
    case ID_ERR_BAD_CARD_TYPE: return "UZI otherName: card type is not Z, N, M or S";
    case ID_ERR_NOT_SERVER: return "UZI otherName: not a server certificate (card type is not S)";
    case ID_ERR_BAD_URA: return "UZI otherName: URA is not 8 digits";
    case ID_ERR_BAD_ROLE: return "UZI otherName: role is not of the form NN.NNN";
    case ID_ERR_BAD_AGB: return "UZI otherName: AGB code is not 1-8 digits";
    case ID_ERR_AMBIGUOUS: return "certificate names more than one URA";
    }
    return "unknown status";
}

const char *id_source_name(id_source source)
{
    switch (source) {
    case ID_SOURCE_CERTIFICATE: return "certificate";
    case ID_SOURCE_TABLE: return "table";
    case ID_SOURCE_UNKNOWN: break;
    }
    return "unknown";
}

/* ---- Parsing the UZI otherName value ---------------------------------------- */

#define UZI_FIELDS 7

/* A dotted OID: digit runs separated by single dots, at least two arcs. */
static bool is_dotted_oid(const char *s, size_t n)
{
    size_t arcs = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_digit(s[i])) {
            run++;
        } else if (s[i] == '.' && run > 0) {
            arcs++;
            run = 0;
        } else {
            return false;
        }
    }
    return run > 0 && arcs >= 1;
}

static bool digits_between(const char *s, size_t n, size_t min, size_t max)
{
    return n >= min && n <= max && all_digits(s, n);
}

bool id_is_ura(const char *s)
{
    return s && digits_between(s, strlen(s), ID_URA_LEN, ID_URA_LEN);
}

/* NN.NNN: profession code and specialism code (00.000 outside practitioner cards). */
static bool is_role(const char *s, size_t n)
{
    return n == 6 && all_digits(s, 2) && s[2] == '.' && all_digits(s + 3, 3);
}

/* Split on '-' into exactly UZI_FIELDS fields; false if the count differs. */
static bool split_fields(const char *text, size_t len, const char *start[UZI_FIELDS], size_t n[UZI_FIELDS])
{
    size_t field = 0;
    start[0] = text;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '-')
            continue;
        if (field + 1 == UZI_FIELDS)
            return false;
        n[field] = (size_t)(text + i - start[field]);
        start[++field] = text + i + 1;
    }
    if (field + 1 != UZI_FIELDS)
        return false;
    n[field] = (size_t)(text + len - start[field]);
    return true;
}

static id_status check_fields(const char *f[UZI_FIELDS], const size_t n[UZI_FIELDS])
{
    if (!is_dotted_oid(f[0], n[0]) || n[0] >= sizeof((id_uzi_name *)0)->ca_oid)
        return ID_ERR_BAD_CA_OID;
    if (!digits_between(f[1], n[1], 1, 4))
        return ID_ERR_BAD_VERSION;
    if (!digits_between(f[2], n[2], 1, 12))
        return ID_ERR_BAD_UZI_NUMBER;
    if (n[3] != 1 || !strchr("ZNMS", f[3][0]))
        return ID_ERR_BAD_CARD_TYPE;
    if (!digits_between(f[4], n[4], ID_URA_LEN, ID_URA_LEN))
        return ID_ERR_BAD_URA;
    if (!is_role(f[5], n[5]))
        return ID_ERR_BAD_ROLE;
    if (!digits_between(f[6], n[6], 1, 8))
        return ID_ERR_BAD_AGB;
    return ID_OK;
}

id_status id_parse_uzi_name(const char *text, size_t len, id_uzi_name *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return ID_ERR_EMPTY;
    if (len > ID_UZI_NAME_MAX)
        return ID_ERR_TOO_LONG;
    /* Printable ASCII only: an embedded NUL or control byte could make the
     * value read differently in a log, a C string or another parser. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
            return ID_ERR_NOT_PRINTABLE;

    const char *f[UZI_FIELDS];
    size_t n[UZI_FIELDS];
    if (!split_fields(text, len, f, n))
        return ID_ERR_FIELD_COUNT;
    id_status status = check_fields(f, n);
    if (status != ID_OK)
        return status;

    /* Sizes were checked above, so every copy fits. */
    copy_bounded(out->ca_oid, sizeof out->ca_oid, f[0], n[0]);
    copy_bounded(out->version, sizeof out->version, f[1], n[1]);
    copy_bounded(out->uzi_number, sizeof out->uzi_number, f[2], n[2]);
    out->card_type = f[3][0];
    copy_bounded(out->ura, sizeof out->ura, f[4], n[4]);
    copy_bounded(out->role, sizeof out->role, f[5], n[5]);
    copy_bounded(out->agb, sizeof out->agb, f[6], n[6]);
    return ID_OK;
}

/* ---- Reading the URA from a certificate -------------------------------------- */

/* DER contents of OID 2.5.5.5: first byte 2*40+5 = 0x55, then 5, 5. Comparing
 * bytes avoids creating an ASN1_OBJECT (and the shared object table) per call. */
static const unsigned char UZI_OTHERNAME_OID[] = {0x55, 0x05, 0x05};

static bool is_uzi_othername(const GENERAL_NAME *gn)
{
    if (gn->type != GEN_OTHERNAME)
        return false;
    const ASN1_OBJECT *oid = gn->d.otherName->type_id;
    return OBJ_length(oid) == sizeof UZI_OTHERNAME_OID &&
           memcmp(OBJ_get0_data(oid), UZI_OTHERNAME_OID, sizeof UZI_OTHERNAME_OID) == 0;
}

/* Parse one 2.5.5.5 otherName. The profile prescribes IA5String; UTF8String is
 * accepted too because some test tooling writes it, and the printable-ASCII
 * check makes the two read the same. */
static id_status parse_othername(const GENERAL_NAME *gn, id_uzi_name *out)
{
    const ASN1_TYPE *value = gn->d.otherName->value;
    if (!value || (value->type != V_ASN1_IA5STRING && value->type != V_ASN1_UTF8STRING))
        return ID_ERR_VALUE_TYPE;
    const ASN1_STRING *s = value->value.asn1_string;
    return id_parse_uzi_name((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), out);
}

static id_status ura_from_names(const GENERAL_NAMES *names, char out[ID_URA_LEN + 1])
{
    bool found = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (!is_uzi_othername(gn))
            continue;
        id_uzi_name uzi;
        id_status status = parse_othername(gn, &uzi);
        if (status != ID_OK)
            return status;
        /* Practitioner and employee cards identify a person; only a server
         * certificate speaks for the organisation's system. */
        if (uzi.card_type != 'S')
            return ID_ERR_NOT_SERVER;
        if (found && strcmp(out, uzi.ura) != 0)
            return ID_ERR_AMBIGUOUS;
        memcpy(out, uzi.ura, ID_URA_LEN + 1);
        found = true;
    }
    return found ? ID_OK : ID_ERR_NO_UZI_NAME;
}

id_status id_ura_from_cert(X509 *cert, char out[ID_URA_LEN + 1])
{
    out[0] = '\0';
    if (!cert)
        return ID_ERR_NO_CERT;
    /* A malformed extension leaves errors on the thread's queue; a TLS layer
     * reading that queue later would blame the wrong call, so pop them. */
    ERR_set_mark();
    int crit = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    ERR_pop_to_mark();
    if (!names)
        return crit == -1 ? ID_ERR_NO_SAN : ID_ERR_BAD_SAN;
    id_status status = ura_from_names(names, out);
    GENERAL_NAMES_free(names);
    if (status != ID_OK)
        out[0] = '\0';
    return status;
}

/* ---- Fingerprints ------------------------------------------------------------ */

bool id_fingerprint(X509 *cert, char out[ID_FINGERPRINT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    if (!cert)
        return false;
    ERR_set_mark();
    bool ok = X509_digest(cert, EVP_sha256(), md, &len) == 1 && len * 2 == ID_FINGERPRINT_LEN;
    ERR_pop_to_mark();
    if (ok)
        hex_encode(md, len, out);
    return ok;
}

bool id_normalise_fingerprint(const char *text, char out[ID_FINGERPRINT_LEN + 1])
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = text; *p; p++) {
        if (*p == ':')
            continue;
        int v = hex_digit_value(*p);
        if (v < 0 || n == ID_FINGERPRINT_LEN)
            return false;
        out[n++] = "0123456789abcdef"[v];
    }
    out[n] = '\0';
    if (n != ID_FINGERPRINT_LEN) {
        out[0] = '\0';
        return false;
    }
    return true;
}

/* ---- Fingerprint table ------------------------------------------------------- */

#define TABLE_LINE_MAX LIM(organisations_line_max)

struct id_table {
    id_entry *entries; /* sorted by fingerprint */
    size_t count;
};

enum column { COL_FINGERPRINT, COL_NAME, COL_URA, COL_ROLE, COL_REQUIRED };
static const char *const COLUMN_NAMES[COL_REQUIRED] = {"fingerprint", "name", "ura", "role"};

/* State of one load: the file, where we are, and what the header said. */
typedef struct table_loader {
    const char *path;
    unsigned line;
    int column_of[COL_REQUIRED]; /* field index of each required column */
    int field_count;             /* columns in the header */
    id_entry *entries;
    size_t count, capacity;
    char *err;
    size_t errlen;
} table_loader;

static bool load_error(table_loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool load_error(table_loader *ld, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (ld->line > 0)
        set_error(ld->err, ld->errlen, "%s:%u: %s", ld->path, ld->line, reason);
    else
        set_error(ld->err, ld->errlen, "%s: %s", ld->path, reason);
    return false;
}

/* Split a line in place on tabs; returns the number of fields, at most max
 * (one more than max means "too many"). */
static int split_tabs(char *line, char **fields, int max)
{
    int n = 0;
    for (char *p = line;; p++) {
        if (n == max)
            return max + 1;
        fields[n++] = p;
        p = strchr(p, '\t');
        if (!p)
            return n;
        *p = '\0';
    }
}

#define MAX_COLUMNS LIM(organisations_columns_max)

static bool parse_header(table_loader *ld, char *line)
{
    char *fields[MAX_COLUMNS];
    int n = split_tabs(line, fields, MAX_COLUMNS);
    if (n > MAX_COLUMNS)
        return load_error(ld, "header has more than %d columns", MAX_COLUMNS);
    for (int c = 0; c < COL_REQUIRED; c++)
        ld->column_of[c] = -1;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < COL_REQUIRED; c++) {
            if (strcmp(fields[i], COLUMN_NAMES[c]) != 0)
                continue;
            if (ld->column_of[c] >= 0)
                return load_error(ld, "column '%s' appears twice", COLUMN_NAMES[c]);
            ld->column_of[c] = i;
        }
    for (int c = 0; c < COL_REQUIRED; c++)
        if (ld->column_of[c] < 0)
            return load_error(ld, "header lacks the '%s' column (needs fingerprint, name, ura, role)", COLUMN_NAMES[c]);
    ld->field_count = n;
    return true;
}

/* One role token, or several joined by commas ("elv,grz": a provider of both kinds of care). */
static bool is_role_token(const char *s)
{
    if (!*s || *s == ',')
        return false;
    for (; *s; s++) {
        if (*s == ',' && (s[1] == ',' || s[1] == '\0'))
            return false;
        if (!((*s >= 'a' && *s <= 'z') || is_digit(*s) || *s == '-' || *s == '_' || *s == ','))
            return false;
    }
    return true;
}

static bool has_control_bytes(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Validate one row's fields into *e. */
static bool parse_entry(table_loader *ld, char **fields, id_entry *e)
{
    const char *fp = fields[ld->column_of[COL_FINGERPRINT]];
    const char *name = fields[ld->column_of[COL_NAME]];
    const char *ura = fields[ld->column_of[COL_URA]];
    const char *role = fields[ld->column_of[COL_ROLE]];

    if (!id_normalise_fingerprint(fp, e->fingerprint))
        return load_error(ld, "fingerprint is not 64 hex digits (SHA-256): '%.80s'", fp);
    if (!*name || has_control_bytes(name) || !copy_bounded(e->name, sizeof e->name, name, strlen(name)))
        return load_error(ld, "name must be 1-%zu bytes without control characters", sizeof e->name - 1);
    if (!id_is_ura(ura))
        return load_error(ld, "URA is not 8 digits: '%.20s'", ura);
    memcpy(e->ura, ura, ID_URA_LEN + 1);
    if (!is_role_token(role) || !copy_bounded(e->role, sizeof e->role, role, strlen(role)))
        return load_error(ld, "role must be lowercase tokens ([a-z0-9_-], comma separated, at most %zu bytes)",
                          sizeof e->role - 1);
    return true;
}

static bool add_row(table_loader *ld, char *line)
{
    char *fields[MAX_COLUMNS];
    int n = split_tabs(line, fields, MAX_COLUMNS);
    if (n != ld->field_count)
        return load_error(ld, "%s%d fields, the header has %d", n > MAX_COLUMNS ? "more than " : "",
                          n > MAX_COLUMNS ? MAX_COLUMNS : n, ld->field_count);
    if (!fa_reserve(&ld->entries, &ld->capacity, ld->count + 1, sizeof *ld->entries))
        return load_error(ld, "out of memory");
    if (!parse_entry(ld, fields, &ld->entries[ld->count]))
        return false;
    ld->count++;
    return true;
}

/* One physical line: strip the line end, skip blanks and comments, then the
 * header or a row. */
static bool take_line(table_loader *ld, char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (strlen(line) != len)
        return load_error(ld, "line contains a NUL byte");
    if (len == 0 || line[0] == '#')
        return true;
    if (ld->field_count == 0)
        return parse_header(ld, line);
    return add_row(ld, line);
}

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const id_entry *)a)->fingerprint, ((const id_entry *)b)->fingerprint);
}

/* Sort for bsearch; two rows pinning the same certificate are a mistake. */
static bool sort_and_check(table_loader *ld)
{
    if (ld->field_count == 0) {
        ld->line = 0;
        return load_error(ld, "no header line (needs fingerprint, name, ura, role)");
    }
    qsort(ld->entries, ld->count, sizeof *ld->entries, compare_entries);
    for (size_t i = 1; i < ld->count; i++)
        if (strcmp(ld->entries[i - 1].fingerprint, ld->entries[i].fingerprint) == 0) {
            ld->line = 0;
            return load_error(ld, "fingerprint %s appears twice", ld->entries[i].fingerprint);
        }
    return true;
}

static bool read_lines(table_loader *ld, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool ok = true;
    while (ok && (len = getline(&line, &cap, f)) >= 0) {
        ld->line++;
        if (len > TABLE_LINE_MAX)
            ok = load_error(ld, "line longer than %d bytes", TABLE_LINE_MAX);
        else
            ok = take_line(ld, line, (size_t)len);
    }
    if (ok && ferror(f))
        ok = load_error(ld, "read error: %s", strerror(errno));
    free(line);
    return ok;
}

id_table *id_table_load(const char *path, char *err, size_t errlen)
{
    table_loader ld = {.path = path, .err = err, .errlen = errlen};
    FILE *f = fopen(path, "r");
    if (!f) {
        set_error(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    bool ok = read_lines(&ld, f) && sort_and_check(&ld);
    fclose(f);
    id_table *table = ok ? malloc(sizeof *table) : NULL;
    if (!table) {
        if (ok)
            set_error(err, errlen, "%s: out of memory", path);
        free(ld.entries);
        return NULL;
    }
    table->entries = ld.entries;
    table->count = ld.count;
    return table;
}

void id_table_free(id_table *table)
{
    if (!table)
        return;
    free(table->entries);
    free(table);
}

size_t id_table_count(const id_table *table)
{
    return table ? table->count : 0;
}

const id_entry *id_lookup_fingerprint(const id_table *table, const char *fingerprint)
{
    id_entry key;
    if (!table || !fingerprint || !id_normalise_fingerprint(fingerprint, key.fingerprint))
        return NULL;
    return bsearch(&key, table->entries, table->count, sizeof key, compare_entries);
}

const id_entry *id_lookup_ura(const id_table *table, const char *ura)
{
    if (!table || !ura)
        return NULL;
    for (size_t i = 0; i < table->count; i++)
        if (strcmp(table->entries[i].ura, ura) == 0)
            return &table->entries[i];
    return NULL;
}

/* ---- Resolving a caller ------------------------------------------------------ */

/* The subject's organizationName as UTF-8, cut at a character boundary if it
 * does not fit; "" if there is none. */
static void subject_organisation(X509 *cert, char out[ID_NAME_MAX])
{
    out[0] = '\0';
    const X509_NAME *subject = X509_get_subject_name(cert);
    int idx = X509_NAME_get_index_by_NID(subject, NID_organizationName, -1);
    if (idx < 0)
        return;
    unsigned char *utf8 = NULL;
    ERR_set_mark();
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
    ERR_pop_to_mark();
    if (len < 0)
        return;
    size_t n = (size_t)len < ID_NAME_MAX - 1 ? (size_t)len : ID_NAME_MAX - 1;
    while (n > 0 && (size_t)len > n && (utf8[n] & 0xc0) == 0x80)
        n--; /* do not split a multi-byte character */
    copy_bounded(out, ID_NAME_MAX, (const char *)utf8, n);
    if (has_control_bytes(out))
        out[0] = '\0'; /* a name that would garble a log line is no name */
    OPENSSL_free(utf8);
}

static void copy_entry(id_identity *out, const id_entry *e, bool with_ura)
{
    if (with_ura)
        memcpy(out->ura, e->ura, sizeof out->ura);
    memcpy(out->name, e->name, sizeof out->name);
    memcpy(out->role, e->role, sizeof out->role);
}

id_source id_resolve(X509 *cert, const id_table *fallback, id_identity *out)
{
    memset(out, 0, sizeof *out);
    out->source = ID_SOURCE_UNKNOWN;
    out->cert_status = id_ura_from_cert(cert, out->ura);
    if (!cert)
        return out->source;
    bool have_fingerprint = id_fingerprint(cert, out->fingerprint);

    if (out->cert_status == ID_OK) {
        out->source = ID_SOURCE_CERTIFICATE;
        const id_entry *known = id_lookup_ura(fallback, out->ura);
        if (known)
            copy_entry(out, known, false);
        else
            subject_organisation(cert, out->name);
        return out->source;
    }
    const id_entry *pinned = have_fingerprint ? id_lookup_fingerprint(fallback, out->fingerprint) : NULL;
    if (pinned) {
        out->source = ID_SOURCE_TABLE;
        copy_entry(out, pinned, true);
    }
    return out->source;
}

/* ---- Verifying a peer -------------------------------------------------------- */

/* The newest OpenSSL error as text, for setup failures. */
static const char *openssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "no detail";
    ERR_error_string_n(e, buf, len);
    return buf;
}

/* Add every CRL in a PEM file; certificates in it are skipped, never trusted. */
static bool add_crls(X509_STORE *store, const char *crl_file, char *err, size_t errlen)
{
    BIO *in = BIO_new_file(crl_file, "r");
    char detail[256];
    if (!in) {
        set_error(err, errlen, "cannot read CRL file %s: %s", crl_file, openssl_reason(detail, sizeof detail));
        return false;
    }
    int added = 0;
    STACK_OF(X509_INFO) *items = PEM_X509_INFO_read_bio(in, NULL, NULL, NULL);
    for (int i = 0; items && i < sk_X509_INFO_num(items); i++) {
        X509_INFO *item = sk_X509_INFO_value(items, i);
        if (item->crl && X509_STORE_add_crl(store, item->crl) == 1)
            added++;
    }
    sk_X509_INFO_pop_free(items, X509_INFO_free);
    BIO_free(in);
    if (added == 0)
        set_error(err, errlen, "no CRL found in %s", crl_file);
    return added > 0;
}

/* OpenSSL decodes a certificate's extensions (key identifiers, constraints) on first
 * use, under the certificate's own lock but tested for "done" without it, so two
 * worker threads verifying clients at once can see a half-filled cache. Filling every
 * anchor's cache here, before any thread shares the store, leaves them only reading. */
static void fill_extension_caches(X509_STORE *store)
{
    STACK_OF(X509_OBJECT) *objects = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objects); i++) {
        X509 *cert = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i));
        if (cert)
            (void)X509_check_purpose(cert, -1, 0);
    }
}

static X509_STORE *make_store(const char *ca_file, const char *crl_file, char *err, size_t errlen)
{
    char detail[256];
    X509_STORE *store = X509_STORE_new();
    if (!store) {
        set_error(err, errlen, "out of memory");
        return NULL;
    }
    if (!ca_file || X509_STORE_load_file(store, ca_file) != 1) {
        set_error(err, errlen, "cannot load CA certificates from %s: %s", ca_file ? ca_file : "(none)",
                  openssl_reason(detail, sizeof detail));
        X509_STORE_free(store);
        return NULL;
    }
    if (crl_file && !add_crls(store, crl_file, err, errlen)) {
        X509_STORE_free(store);
        return NULL;
    }
    /* CRL_CHECK covers the peer certificate; the CA itself is our own anchor.
     * X509_STRICT rejects certificates that only lax parsers accept. */
    unsigned long flags = X509_V_FLAG_X509_STRICT | (crl_file ? X509_V_FLAG_CRL_CHECK : 0);
    X509_STORE_set_flags(store, flags);
    fill_extension_caches(store);
    return store;
}

static void describe_failure(X509_STORE_CTX *ctx, int code, char *err, size_t errlen)
{
    char subject[256] = "(no certificate)";
    X509 *at = X509_STORE_CTX_get_current_cert(ctx);
    if (at)
        X509_NAME_oneline(X509_get_subject_name(at), subject, sizeof subject);
    set_error(err, errlen, "%s (depth %d: %s)", X509_verify_cert_error_string(code),
              X509_STORE_CTX_get_error_depth(ctx), subject);
}

static int run_verification(X509_STORE *store, X509 *cert, STACK_OF(X509) * chain, char *err, size_t errlen)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, store, cert, chain) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        set_error(err, errlen, "cannot set up certificate verification");
        X509_STORE_CTX_free(ctx);
        return ID_VERIFY_SETUP_FAILED;
    }
    int code = X509_V_OK;
    if (X509_verify_cert(ctx) != 1) {
        code = X509_STORE_CTX_get_error(ctx);
        if (code == X509_V_OK)
            code = X509_V_ERR_UNSPECIFIED; /* failed without saying why: still a failure */
        describe_failure(ctx, code, err, errlen);
    }
    X509_STORE_CTX_free(ctx);
    return code;
}

X509_STORE *id_store_load(const char *ca_file, const char *crl_file, char *err, size_t errlen)
{
    ERR_set_mark();
    X509_STORE *store = make_store(ca_file, crl_file, err, errlen);
    ERR_pop_to_mark();
    return store;
}

int id_verify_with_store(X509_STORE *store, X509 *cert, STACK_OF(X509) * chain, char *err, size_t errlen)
{
    set_error(err, errlen, "ok");
    if (!store || !cert) {
        set_error(err, errlen, "%s", store ? "no certificate to verify" : "no trust store");
        return ID_VERIFY_SETUP_FAILED;
    }
    ERR_set_mark();
    int code = run_verification(store, cert, chain, err, errlen);
    ERR_pop_to_mark();
    return code;
}

int id_verify_chain(X509 *cert, STACK_OF(X509) * chain, const char *ca_file, const char *crl_file, char *err,
                    size_t errlen)
{
    if (!cert) {
        set_error(err, errlen, "no certificate to verify");
        return ID_VERIFY_SETUP_FAILED;
    }
    X509_STORE *store = id_store_load(ca_file, crl_file, err, errlen);
    if (!store)
        return ID_VERIFY_SETUP_FAILED;
    int code = id_verify_with_store(store, cert, chain, err, errlen);
    X509_STORE_free(store);
    return code;
}
