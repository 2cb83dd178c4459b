/*
 * tests/test_identity.c — caller identity (gateway/auth/identity.c) against a real
 * test PKI made by certs/make-test-pki.
 *
 * The PKI is made once per run, in a fresh mkdtemp directory, by a report hook
 * in the runner process, and removed afterwards. Criterion runs each test in a
 * re-executed worker that shares no memory with the runner, so the directory
 * is handed over in the environment (FHIRGW_TEST_PKI).
 *
 * What is expected comes from outside the module under test wherever it can:
 * URAs and fingerprints from organisations.tsv (written by the script with the
 * openssl CLI), verification outcomes from what each certificate was made to
 * be, malformed otherNames from certificates built here with the OpenSSL API.
 */
#include "gateway/auth/identity.h"
#include "tests/run_pki.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MAKE_TEST_PKI SOURCE_DIR "/certs/make-test-pki"

static const char *const NAMED_CLIENTS[] = {"hospital-a", "hospital-b", "gp", "elv-a", "elv-b", "gzsp", "insurer"};
#define N_NAMED (sizeof NAMED_CLIENTS / sizeof *NAMED_CLIENTS)

/* ---- The shared PKI ---------------------------------------------------------- */

/* snprintf that says whether everything fit; fmt() fails the test if not.
 * (Through a va_list, so that -O2 does not guess at truncation either.) */
static bool try_fmt(char *out, size_t len, const char *format, ...) __attribute__((format(printf, 3, 4)));
static bool try_fmt(char *out, size_t len, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(out, len, format, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len;
}
#define fmt(out, len, ...) cr_assert(try_fmt(out, len, __VA_ARGS__), "buffer too small for %s", #out)

/* Run certs/make-test-pki DIR; its complaints go to stderr unless quiet. */
static int run_script(const char *dir, bool quiet)
{
    char cmd[1024];
    if (!try_fmt(cmd, sizeof cmd, "'%s' '%s' >/dev/null%s", MAKE_TEST_PKI, dir, quiet ? " 2>&1" : ""))
        return -1;
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void remove_tree(const char *dir)
{
    char cmd[1024];
    if (!try_fmt(cmd, sizeof cmd, "rm -rf '%s'", dir) || system(cmd) != 0)
        fprintf(stderr, "test_identity: could not remove %s\n", dir);
}

/* The run's PKI (tests/run_pki.h: made once, before the first test). */
static const char *pki(void)
{
    return rp_dir();
}

static void pki_path(char *out, size_t len, const char *rel)
{
    fmt(out, len, "%s/%s", pki(), rel);
}

static X509 *load_cert(const char *rel)
{
    char path[512];
    pki_path(path, sizeof path, rel);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(cert, "no certificate in %s", path);
    return cert;
}

/* organisations.tsv read here with plain C, independently of id_table_load. */
typedef struct org_row {
    char name[64], ura[16], role[32], cert[128], fingerprint[80];
} org_row;

static size_t read_organisations(org_row *rows, size_t max)
{
    char path[512], line[1024];
    pki_path(path, sizeof path, "organisations.tsv");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "name\tura\trole\tcert\tfingerprint\n");
    size_t n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        org_row *r = &rows[n++];
        cr_assert_eq(sscanf(line, "%63[^\t]\t%15[^\t]\t%31[^\t]\t%127[^\t]\t%79[^\n]", r->name, r->ura, r->role,
                            r->cert, r->fingerprint),
                     5, "bad organisations.tsv line: %s", line);
    }
    fclose(f);
    return n;
}

/* ---- Certificates built in the test ------------------------------------------ */

static EVP_PKEY *test_key(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cr_assert_not_null(key);
    return key;
}

/* A self-signed certificate with the given subjectAltName (NULL: none) and organizationName. */
static X509 *cert_with_names_and_org(GENERAL_NAMES *names, const char *organisation)
{
    EVP_PKEY *key = test_key();
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, (const unsigned char *)organisation, -1, -1, 0);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)"built.test", -1, -1, 0);
    X509_set_issuer_name(x, subject);
    X509_set_pubkey(x, key);
    if (names)
        cr_assert_eq(X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT), 1);
    cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    GENERAL_NAMES_free(names);
    return x;
}

static X509 *cert_with_names(GENERAL_NAMES *names)
{
    return cert_with_names_and_org(names, "Testorganisatie");
}

/* An otherName with any type-id and an ASN.1 string value of any type. */
static GENERAL_NAME *othername(const char *oid, int string_type, const char *bytes, size_t len)
{
    ASN1_STRING *s = ASN1_STRING_type_new(string_type);
    cr_assert_eq(ASN1_STRING_set(s, bytes, (int)len), 1);
    ASN1_TYPE *value = ASN1_TYPE_new();
    ASN1_TYPE_set(value, string_type, s);
    GENERAL_NAME *gn = GENERAL_NAME_new();
    cr_assert_eq(GENERAL_NAME_set0_othername(gn, OBJ_txt2obj(oid, 1), value), 1);
    return gn;
}

static GENERAL_NAMES *names_of(GENERAL_NAME *first, GENERAL_NAME *second)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    sk_GENERAL_NAME_push(names, first);
    if (second)
        sk_GENERAL_NAME_push(names, second);
    return names;
}

static GENERAL_NAME *uzi_bytes(int type, const char *bytes, size_t len)
{
    return othername("2.5.5.5", type, bytes, len);
}

static GENERAL_NAME *uzi(const char *value)
{
    return uzi_bytes(V_ASN1_IA5STRING, value, strlen(value));
}

/* The status id_ura_from_cert gives for a certificate whose only SAN entry is
 * the IA5String `value`; when it succeeds the URA must be the one expected. */
static id_status status_for(const char *value)
{
    X509 *cert = cert_with_names(names_of(uzi(value), NULL));
    char ura[ID_URA_LEN + 1] = "junk";
    id_status status = id_ura_from_cert(cert, ura);
    if (status != ID_OK)
        cr_expect_str_eq(ura, "", "URA buffer must be cleared on error");
    X509_free(cert);
    return status;
}

#define VALID_UZI "2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-00000000"

/* ---- The script ------------------------------------------------------------- */

Test(pki, script_writes_the_whole_pki)
{
    const char *files[] = {"ca.pem",     "ca.key",     "ca-bundle.pem",     "crl.pem",
                           "server.crt", "server.key", "organisations.tsv", "foreign/ca.pem"};
    char path[512];
    struct stat st;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        pki_path(path, sizeof path, files[i]);
        cr_expect_eq(stat(path, &st), 0, "missing %s", files[i]);
    }
    org_row rows[16];
    size_t n = read_organisations(rows, 16);
    cr_assert_eq(n, N_NAMED + 3, "expected the 7 organisations plus expired, revoked, foreign");
    for (size_t i = 0; i < n; i++) {
        fmt(path, sizeof path, "%s/clients/%s.key", pki(), rows[i].name);
        cr_assert_eq(stat(path, &st), 0, "missing %s", path);
        cr_expect_eq(st.st_mode & 077, 0, "%s is readable by others", path);
    }
    pki_path(path, sizeof path, "ca.key");
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 077, 0, "ca.key is readable by others");
}

Test(pki, bundle_holds_our_ca_and_nothing_foreign)
{
    char path[512];
    pki_path(path, sizeof path, "ca-bundle.pem");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    X509 *ours = load_cert("ca.pem"), *foreign = load_cert("foreign/ca.pem");
    int count = 0;
    X509 *c;
    while ((c = PEM_read_X509(f, NULL, NULL, NULL))) {
        cr_expect_eq(X509_cmp(c, ours), 0, "ca-bundle.pem holds a certificate other than ca.pem");
        cr_expect_neq(X509_cmp(c, foreign), 0, "ca-bundle.pem holds the foreign CA");
        X509_free(c);
        count++;
    }
    ERR_clear_error(); /* PEM_read_X509 reports end of file as an error */
    fclose(f);
    cr_expect_eq(count, 1);
    X509_free(ours);
    X509_free(foreign);
}

Test(pki, rerun_replaces_its_own_pki_and_refuses_other_dirs)
{
    char dir[] = "/tmp/fhirgw-pki-rerun-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char ca[600], other[600], cmd[1400];
    fmt(ca, sizeof ca, "%s/pki/ca.pem", dir);
    fmt(other, sizeof other, "%s/other", dir);

    fmt(cmd, sizeof cmd, "%s/pki", dir);
    cr_assert_eq(run_script(cmd, true), 0);
    /* Copy the first CA aside, run again: exit 0 and a different CA. */
    fmt(cmd, sizeof cmd, "cp '%s' '%s/first-ca.pem'", ca, dir);
    cr_assert_eq(system(cmd), 0);
    fmt(cmd, sizeof cmd, "%s/pki", dir);
    cr_assert_eq(run_script(cmd, true), 0);
    fmt(cmd, sizeof cmd, "cmp -s '%s' '%s/first-ca.pem'", ca, dir);
    cr_expect_neq(system(cmd), 0, "a second run should make a new CA");

    /* A directory it did not make is left alone. */
    fmt(cmd, sizeof cmd, "mkdir '%s' && echo keep > '%s/notes.txt'", other, other);
    cr_assert_eq(system(cmd), 0);
    cr_expect_neq(run_script(other, true), 0, "must refuse a non-empty directory it did not make");
    fmt(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = notes.txt && grep -qx keep '%s/notes.txt'", other, other);
    cr_expect_eq(system(cmd), 0, "the refused directory was changed");
    remove_tree(dir);
}

/* ---- URA from the certificate ------------------------------------------------ */

Test(uzi, every_client_resolves_to_its_ura)
{
    org_row rows[16];
    size_t n = read_organisations(rows, 16);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        X509 *cert = load_cert(rows[i].cert);
        char ura[ID_URA_LEN + 1];
        id_status status = id_ura_from_cert(cert, ura);
        cr_expect_eq(status, ID_OK, "%s: %s", rows[i].name, id_status_message(status));
        cr_expect_str_eq(ura, rows[i].ura, "%s", rows[i].name);

        id_identity who;
        cr_expect_eq(id_resolve(cert, NULL, &who), ID_SOURCE_CERTIFICATE, "%s", rows[i].name);
        cr_expect_str_eq(who.ura, rows[i].ura);
        cr_expect_neq(who.name[0], '\0', "%s: name should come from the subject O", rows[i].name);
        cr_expect_str_eq(who.role, "", "no table, so no role");
        X509_free(cert);
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(rows[i].ura, rows[j].ura, "%s and %s share a URA", rows[i].name, rows[j].name);
    }
}

Test(uzi, server_certificate_has_no_ura)
{
    X509 *server = load_cert("server.crt");
    char ura[ID_URA_LEN + 1];
    cr_expect_eq(id_ura_from_cert(server, ura), ID_ERR_NO_UZI_NAME);
    cr_expect_str_eq(ura, "");

    char path[512], err[256];
    pki_path(path, sizeof path, "organisations.tsv");
    id_table *table = id_table_load(path, err, sizeof err);
    cr_assert_not_null(table, "%s", err);
    id_identity who;
    cr_expect_eq(id_resolve(server, table, &who), ID_SOURCE_UNKNOWN);
    cr_expect_str_eq(who.ura, "");
    cr_expect_eq(who.cert_status, ID_ERR_NO_UZI_NAME);
    cr_expect_eq(strlen(who.fingerprint), ID_FINGERPRINT_LEN, "the fingerprint is kept for the log");
    id_table_free(table);
    X509_free(server);
}

Test(uzi, built_certificate_with_valid_name_passes)
{
    /* The control for the malformed cases below: same builder, valid value. */
    X509 *cert = cert_with_names(names_of(uzi(VALID_UZI), NULL));
    char ura[ID_URA_LEN + 1];
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_OK);
    cr_expect_str_eq(ura, "90000380");
    X509_free(cert);
    /* The UTF8String some tooling writes reads the same. */
    cert = cert_with_names(names_of(uzi_bytes(V_ASN1_UTF8STRING, VALID_UZI, strlen(VALID_UZI)), NULL));
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_OK);
    cr_expect_str_eq(ura, "90000380");
    X509_free(cert);
}

Test(uzi, malformed_names_are_rejected)
{
    char too_long[ID_UZI_NAME_MAX + 40];
    memset(too_long, '1', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    memcpy(too_long, VALID_UZI, strlen(VALID_UZI)); /* a valid prefix, then digits */

    cr_expect_eq(status_for(""), ID_ERR_EMPTY);
    cr_expect_eq(status_for(too_long), ID_ERR_TOO_LONG);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000"), ID_ERR_FIELD_COUNT);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-0-9"), ID_ERR_FIELD_COUNT);
    cr_expect_eq(status_for("90000380"), ID_ERR_FIELD_COUNT);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-9000038A-00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-9000038-00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-900003801-00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S--00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-+9000038-00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-9000 380-00.000-00000000"), ID_ERR_BAD_URA);
    cr_expect_eq(status_for("2.16..528-1-900030787-S-90000380-00.000-00000000"), ID_ERR_BAD_CA_OID);
    cr_expect_eq(status_for("-1-900030787-S-90000380-00.000-00000000"), ID_ERR_BAD_CA_OID);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-v1-900030787-S-90000380-00.000-00000000"), ID_ERR_BAD_VERSION);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1--S-90000380-00.000-00000000"), ID_ERR_BAD_UZI_NUMBER);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-X-90000380-00.000-00000000"), ID_ERR_BAD_CARD_TYPE);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-SS-90000380-00.000-00000000"), ID_ERR_BAD_CARD_TYPE);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-90000380-0.000-00000000"), ID_ERR_BAD_ROLE);
    cr_expect_eq(status_for("2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-123456789"), ID_ERR_BAD_AGB);
    /* A practitioner's card names a person, not the organisation's system. */
    cr_expect_eq(status_for("2.16.528.1.1003.1.3.5.5.2-1-11111111-Z-90000111-01.015-00000000"), ID_ERR_NOT_SERVER);
}

Test(uzi, unreadable_bytes_and_types_are_rejected)
{
    char ura[ID_URA_LEN + 1];
    /* An embedded NUL would cut the value short in any C string. */
    static const char with_nul[] = "2.16.528.1.1007.99.2110-1-900030787-S-90000380-00.000-0000\0000";
    X509 *cert = cert_with_names(names_of(uzi_bytes(V_ASN1_IA5STRING, with_nul, sizeof with_nul - 1), NULL));
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_ERR_NOT_PRINTABLE);
    X509_free(cert);

    static const char non_ascii[] = "2.16.528.1.1007.99.2110-1-900030787-S-9000038\xd9\xa0-00.000-00000000";
    cert = cert_with_names(names_of(uzi_bytes(V_ASN1_UTF8STRING, non_ascii, strlen(non_ascii)), NULL));
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_ERR_NOT_PRINTABLE, "an Arabic-Indic digit is not a digit");
    X509_free(cert);

    cert = cert_with_names(names_of(uzi_bytes(V_ASN1_OCTET_STRING, VALID_UZI, strlen(VALID_UZI)), NULL));
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_ERR_VALUE_TYPE);
    X509_free(cert);
}

Test(uzi, several_names_must_agree)
{
    char ura[ID_URA_LEN + 1];
    X509 *same = cert_with_names(names_of(uzi(VALID_UZI), uzi(VALID_UZI)));
    cr_expect_eq(id_ura_from_cert(same, ura), ID_OK);
    cr_expect_str_eq(ura, "90000380");
    X509_free(same);

    X509 *two = cert_with_names(
        names_of(uzi(VALID_UZI), uzi("2.16.528.1.1007.99.2110-1-900030788-S-90000999-00.000-00000000")));
    cr_expect_eq(id_ura_from_cert(two, ura), ID_ERR_AMBIGUOUS);
    cr_expect_str_eq(ura, "");
    X509_free(two);

    /* One good and one broken: the broken one is not skipped over. */
    X509 *mixed = cert_with_names(names_of(uzi(VALID_UZI), uzi("garbage")));
    cr_expect_eq(id_ura_from_cert(mixed, ura), ID_ERR_FIELD_COUNT);
    X509_free(mixed);
}

Test(uzi, other_othernames_are_not_uzi_names)
{
    char ura[ID_URA_LEN + 1];
    /* The same text under Microsoft's UPN type-id is not a UZI name. */
    X509 *upn = cert_with_names(
        names_of(othername("1.3.6.1.4.1.311.20.2.3", V_ASN1_UTF8STRING, VALID_UZI, strlen(VALID_UZI)), NULL));
    cr_expect_eq(id_ura_from_cert(upn, ura), ID_ERR_NO_UZI_NAME);
    X509_free(upn);

    X509 *none = cert_with_names(NULL);
    cr_expect_eq(id_ura_from_cert(none, ura), ID_ERR_NO_SAN);
    X509_free(none);
    cr_expect_eq(id_ura_from_cert(NULL, ura), ID_ERR_NO_CERT);
}

Test(uzi, undecodable_san_leaves_no_openssl_errors)
{
    X509 *cert = cert_with_names(NULL);
    ASN1_OCTET_STRING *junk = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(junk, (const unsigned char *)"\x30\x05\xa0\x03\x06", 5);
    X509_EXTENSION *ext = X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, junk);
    cr_assert_not_null(ext);
    cr_assert_eq(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(junk);

    ERR_clear_error();
    char ura[ID_URA_LEN + 1];
    cr_expect_eq(id_ura_from_cert(cert, ura), ID_ERR_BAD_SAN);
    cr_expect_eq(ERR_peek_error(), 0, "the caller's OpenSSL error queue must stay clean");
    X509_free(cert);
}

Test(uzi, parse_fills_every_field)
{
    id_uzi_name n;
    const char *old = "2.16.528.1.1003.1.3.5.5.2-1-12345678-S-90000001-00.000-00000000";
    cr_assert_eq(id_parse_uzi_name(old, strlen(old), &n), ID_OK);
    cr_expect_str_eq(n.ca_oid, "2.16.528.1.1003.1.3.5.5.2");
    cr_expect_str_eq(n.version, "1");
    cr_expect_str_eq(n.uzi_number, "12345678");
    cr_expect_eq(n.card_type, 'S');
    cr_expect_str_eq(n.ura, "90000001");
    cr_expect_str_eq(n.role, "00.000");
    cr_expect_str_eq(n.agb, "00000000");
    /* The length is what counts, not a NUL: a prefix is a different value. */
    cr_expect_eq(id_parse_uzi_name(old, strlen(old) - 9, &n), ID_ERR_FIELD_COUNT);
    cr_expect_str_eq(n.ura, "", "fields are zeroed on error");
    for (int s = ID_OK; s <= ID_ERR_AMBIGUOUS; s++)
        cr_expect_str_neq(id_status_message((id_status)s), "unknown status", "status %d has no message", s);
}

/* ---- Verification ------------------------------------------------------------ */

static int verify(const char *rel, const char *ca_rel, const char *crl_rel, char *err, size_t errlen)
{
    char ca[512], crl[512];
    pki_path(ca, sizeof ca, ca_rel);
    if (crl_rel)
        pki_path(crl, sizeof crl, crl_rel);
    X509 *cert = load_cert(rel);
    int code = id_verify_chain(cert, NULL, ca, crl_rel ? crl : NULL, err, errlen);
    X509_free(cert);
    return code;
}

Test(verify, named_clients_pass)
{
    char rel[128], err[512];
    for (size_t i = 0; i < N_NAMED; i++) {
        fmt(rel, sizeof rel, "clients/%s.crt", NAMED_CLIENTS[i]);
        cr_expect_eq(verify(rel, "ca-bundle.pem", "crl.pem", err, sizeof err), X509_V_OK, "%s: %s", rel, err);
    }
}

Test(verify, expired_revoked_foreign_fail_with_their_reason)
{
    char err[512];
    cr_expect_eq(verify("clients/expired.crt", "ca-bundle.pem", "crl.pem", err, sizeof err),
                 X509_V_ERR_CERT_HAS_EXPIRED, "%s", err);
    cr_expect_not_null(strstr(err, "expired"), "%s", err);
    cr_expect_not_null(strstr(err, "CN=expired.fhirgw.test"), "the message names the certificate: %s", err);

    cr_expect_eq(verify("clients/revoked.crt", "ca-bundle.pem", "crl.pem", err, sizeof err), X509_V_ERR_CERT_REVOKED,
                 "%s", err);
    cr_expect_not_null(strstr(err, "revoked"), "%s", err);

    cr_expect_eq(verify("clients/foreign.crt", "ca-bundle.pem", "crl.pem", err, sizeof err),
                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "%s", err);
    cr_expect_not_null(strstr(err, "issuer"), "%s", err);
}

Test(verify, failures_are_about_the_anchor_and_the_crl_only)
{
    char err[512];
    /* The same certificates pass where their one defect is taken away. */
    cr_expect_eq(verify("clients/foreign.crt", "foreign/ca.pem", NULL, err, sizeof err), X509_V_OK, "%s", err);
    cr_expect_eq(verify("clients/revoked.crt", "ca-bundle.pem", NULL, err, sizeof err), X509_V_OK,
                 "without a CRL, revocation is not checked: %s", err);
}

Test(verify, server_certificate_is_not_a_client)
{
    char err[512];
    cr_expect_eq(verify("server.crt", "ca-bundle.pem", "crl.pem", err, sizeof err), X509_V_ERR_INVALID_PURPOSE, "%s",
                 err);
}

Test(verify, unusable_files_are_setup_failures)
{
    char err[512];
    cr_expect_eq(verify("clients/gp.crt", "no-such-ca.pem", "crl.pem", err, sizeof err), ID_VERIFY_SETUP_FAILED);
    cr_expect_not_null(strstr(err, "no-such-ca.pem"), "%s", err);
    /* A certificate file given as the CRL must not become a trust anchor. */
    cr_expect_eq(verify("clients/gp.crt", "ca-bundle.pem", "ca.pem", err, sizeof err), ID_VERIFY_SETUP_FAILED);
    cr_expect_not_null(strstr(err, "no CRL"), "%s", err);
    cr_expect_eq(verify("clients/foreign.crt", "ca-bundle.pem", "foreign/ca.pem", err, sizeof err),
                 ID_VERIFY_SETUP_FAILED);
    cr_expect_eq(id_verify_chain(NULL, NULL, "x", NULL, err, sizeof err), ID_VERIFY_SETUP_FAILED);
    cr_expect_eq(ERR_peek_error(), 0, "the caller's OpenSSL error queue must stay clean");
}

Test(verify, one_store_serves_many_peers)
{
    char ca[512], crl[512], err[512], rel[128];
    pki_path(ca, sizeof ca, "ca-bundle.pem");
    pki_path(crl, sizeof crl, "crl.pem");
    X509_STORE *store = id_store_load(ca, crl, err, sizeof err);
    cr_assert_not_null(store, "%s", err);
    for (int round = 0; round < 2; round++) /* verifying does not use the store up */
        for (size_t i = 0; i < N_NAMED; i++) {
            fmt(rel, sizeof rel, "clients/%s.crt", NAMED_CLIENTS[i]);
            X509 *cert = load_cert(rel);
            cr_expect_eq(id_verify_with_store(store, cert, NULL, err, sizeof err), X509_V_OK, "%s: %s", rel, err);
            X509_free(cert);
        }
    X509 *revoked = load_cert("clients/revoked.crt");
    cr_expect_eq(id_verify_with_store(store, revoked, NULL, err, sizeof err), X509_V_ERR_CERT_REVOKED, "%s", err);
    cr_expect_eq(id_verify_with_store(NULL, revoked, NULL, err, sizeof err), ID_VERIFY_SETUP_FAILED);
    X509_free(revoked);
    X509_STORE_free(store);
}

Test(verify, certificates_in_the_crl_file_are_not_trusted)
{
    /* A CRL file that also carries the foreign CA: the CRL is used, the CA is not. */
    char dir[] = "/tmp/fhirgw-crlmix-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024], mixed[600], ca[512], err[512];
    fmt(mixed, sizeof mixed, "%s/crl-and-ca.pem", dir);
    fmt(cmd, sizeof cmd, "cat '%s/crl.pem' '%s/foreign/ca.pem' > '%s'", pki(), pki(), mixed);
    cr_assert_eq(system(cmd), 0);
    pki_path(ca, sizeof ca, "ca-bundle.pem");

    X509 *foreign = load_cert("clients/foreign.crt"), *revoked = load_cert("clients/revoked.crt");
    cr_expect_eq(id_verify_chain(foreign, NULL, ca, mixed, err, sizeof err),
                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "%s", err);
    cr_expect_eq(id_verify_chain(revoked, NULL, ca, mixed, err, sizeof err), X509_V_ERR_CERT_REVOKED, "%s", err);
    X509_free(foreign);
    X509_free(revoked);
    remove_tree(dir);
}

/* ---- Fingerprint table ------------------------------------------------------- */

Test(table, organisations_tsv_loads_with_openssl_fingerprints)
{
    char path[512], err[256];
    pki_path(path, sizeof path, "organisations.tsv");
    id_table *table = id_table_load(path, err, sizeof err);
    cr_assert_not_null(table, "%s", err);
    org_row rows[16];
    size_t n = read_organisations(rows, 16);
    cr_expect_eq(id_table_count(table), n);
    for (size_t i = 0; i < n; i++) {
        X509 *cert = load_cert(rows[i].cert);
        char fp[ID_FINGERPRINT_LEN + 1];
        cr_assert(id_fingerprint(cert, fp));
        cr_expect_str_eq(fp, rows[i].fingerprint, "%s: ours differs from openssl's", rows[i].name);
        const id_entry *e = id_lookup_fingerprint(table, rows[i].fingerprint);
        cr_assert_not_null(e, "%s not found", rows[i].name);
        cr_expect_str_eq(e->name, rows[i].name);
        cr_expect_str_eq(e->ura, rows[i].ura);
        cr_expect_str_eq(e->role, rows[i].role);

        /* With the table, a certificate URA gets the table's name and role. */
        id_identity who;
        cr_expect_eq(id_resolve(cert, table, &who), ID_SOURCE_CERTIFICATE);
        cr_expect_str_eq(who.role, rows[i].role);
        cr_expect_str_eq(who.name, rows[i].name);
        X509_free(cert);
    }
    id_table_free(table);
}

/* Make a certificate without any otherName with the openssl CLI, and return
 * its fingerprint as openssl prints it (uppercase, colon-separated). */
static void openssl_cert_without_uzi_name(const char *dir, char *fingerprint, size_t len)
{
    char cmd[1024];
    fmt(cmd, sizeof cmd,
        "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
        "-subj '/O=Oud systeem/CN=legacy.fhirgw.test' -keyout legacy.key -out legacy.crt >/dev/null 2>&1 && "
        "openssl x509 -in legacy.crt -noout -fingerprint -sha256",
        dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[256] = "";
    cr_assert_not_null(fgets(line, sizeof line, p));
    cr_assert_eq(pclose(p), 0);
    char *eq = strchr(line, '=');
    cr_assert_not_null(eq, "unexpected openssl output: %s", line);
    line[strcspn(line, "\n")] = '\0';
    fmt(fingerprint, len, "%s", eq + 1);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(table, certificate_without_uzi_name_resolves_by_fingerprint)
{
    char dir[] = "/tmp/fhirgw-legacy-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fp[160], path[600], text[1024], err[256];
    openssl_cert_without_uzi_name(dir, fp, sizeof fp);
    cr_assert_not_null(strchr(fp, ':'), "openssl writes colons: %s", fp);

    /* Columns in another order, an extra column, a comment, a CRLF line end. */
    fmt(text, sizeof text,
        "# pinned certificates of callers without a UZI server certificate\n"
        "role\tura\tnote\tname\tfingerprint\n"
        "grz\t90000777\tuntil UZI arrives\tRevalidatiecentrum Oud\t%s\r\n",
        fp);
    fmt(path, sizeof path, "%s/pinned.tsv", dir);
    write_text(path, text);
    id_table *table = id_table_load(path, err, sizeof err);
    cr_assert_not_null(table, "%s", err);

    fmt(path, sizeof path, "%s/legacy.crt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    X509 *legacy = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(legacy);

    id_identity who;
    cr_expect_eq(id_resolve(legacy, table, &who), ID_SOURCE_TABLE);
    cr_expect_str_eq(who.ura, "90000777");
    cr_expect_str_eq(who.name, "Revalidatiecentrum Oud");
    cr_expect_str_eq(who.role, "grz");
    cr_expect_eq(who.cert_status, ID_ERR_NO_SAN);
    cr_expect_str_eq(id_source_name(who.source), "table");

    /* Without the table the same caller is unknown. */
    cr_expect_eq(id_resolve(legacy, NULL, &who), ID_SOURCE_UNKNOWN);
    cr_expect_str_eq(who.ura, "");

    X509_free(legacy);
    id_table_free(table);
    remove_tree(dir);
}

Test(table, certificate_ura_wins_over_the_table)
{
    /* The table pins hospital-a's certificate under another URA: the URA the
     * CA put in the certificate is the one that counts. */
    char path[512], text[512], err[256];
    org_row rows[16];
    read_organisations(rows, 16);
    cr_assert_str_eq(rows[0].name, "hospital-a");
    char dir[] = "/tmp/fhirgw-table-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    fmt(text, sizeof text, "fingerprint\tname\tura\trole\n%s\tImpostor\t12345678\tinsurer\n", rows[0].fingerprint);
    fmt(path, sizeof path, "%s/t.tsv", dir);
    write_text(path, text);
    id_table *table = id_table_load(path, err, sizeof err);
    cr_assert_not_null(table, "%s", err);

    X509 *cert = load_cert(rows[0].cert);
    id_identity who;
    cr_expect_eq(id_resolve(cert, table, &who), ID_SOURCE_CERTIFICATE);
    cr_expect_str_eq(who.ura, rows[0].ura);
    cr_expect_str_neq(who.name, "Impostor");
    cr_expect_str_eq(who.role, "");
    X509_free(cert);
    id_table_free(table);
    remove_tree(dir);
}

/* Load `text` as a table; return the error message (static) or NULL if it loaded. */
static const char *load_error_for(const char *dir, const char *text)
{
    static char err[512];
    char path[512];
    fmt(path, sizeof path, "%s/bad.tsv", dir);
    write_text(path, text);
    id_table *table = id_table_load(path, err, sizeof err);
    if (table) {
        id_table_free(table);
        return NULL;
    }
    return err;
}

#define FP_A "aa00000000000000000000000000000000000000000000000000000000000000"
#define FP_B "bb00000000000000000000000000000000000000000000000000000000000000"
#define HEADER "fingerprint\tname\tura\trole\n"

Test(table, bad_files_are_refused_with_a_line_number)
{
    char dir[] = "/tmp/fhirgw-badtable-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const char *err;

    cr_expect_null(load_error_for(dir, HEADER FP_A "\tA\t90000001\tgp\n" FP_B "\tB\t90000002\telv\n"));

    err = load_error_for(dir, "fingerprint\tname\tura\n" FP_A "\tA\t90000001\n");
    cr_expect(err && strstr(err, "bad.tsv:1:") && strstr(err, "'role'"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\tA\t9000001\tgp\n");
    cr_expect(err && strstr(err, ":2:") && strstr(err, "URA"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\tA\t9000000X\tgp\n");
    cr_expect(err && strstr(err, "URA"), "%s", err);
    err = load_error_for(dir, HEADER "\n# comment\n" FP_A "0\tA\t90000001\tgp\n");
    cr_expect(err && strstr(err, ":4:") && strstr(err, "fingerprint"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\tA\t90000001\n");
    cr_expect(err && strstr(err, "3 fields"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\t\t90000001\tgp\n");
    cr_expect(err && strstr(err, "name"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\tA\t90000001\tGP Practice\n");
    cr_expect(err && strstr(err, "role"), "%s", err);
    err = load_error_for(dir, HEADER FP_A "\tA\t90000001\tgp\n" FP_A "\tB\t90000002\telv\n");
    cr_expect(err && strstr(err, "twice"), "%s", err);
    err = load_error_for(dir, "# only a comment\n");
    cr_expect(err && strstr(err, "no header"), "%s", err);

    char path[512], msg[256];
    fmt(path, sizeof path, "%s/missing.tsv", dir);
    cr_expect_null(id_table_load(path, msg, sizeof msg));
    cr_expect_not_null(strstr(msg, "missing.tsv"), "%s", msg);
    remove_tree(dir);
}

/* The one URA check the table, the insurer views and the compliance operations share. */
Test(table, a_ura_is_exactly_eight_digits)
{
    cr_expect(id_is_ura("90000301"));
    cr_expect(id_is_ura("00000000"));
    const char *not_uras[] = {"", "9000030", "900003011", "9000030a", " 90000301", "90000301 ", "9000-301", "abc"};
    for (size_t i = 0; i < sizeof not_uras / sizeof *not_uras; i++)
        cr_expect_not(id_is_ura(not_uras[i]), "'%s'", not_uras[i]);
    cr_expect_not(id_is_ura(NULL));
}

Test(table, fingerprint_forms)
{
    char out[ID_FINGERPRINT_LEN + 1];
    cr_expect(id_normalise_fingerprint(FP_A, out));
    cr_expect_str_eq(out, FP_A);
    cr_expect(id_normalise_fingerprint("AA:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:"
                                       "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
                                       out));
    cr_expect_str_eq(out, FP_A);
    cr_expect_not(id_normalise_fingerprint(FP_A "0", out), "65 digits");
    cr_expect_not(id_normalise_fingerprint(&FP_A[1], out), "63 digits");
    cr_expect_not(id_normalise_fingerprint("zz00000000000000000000000000000000000000000000000000000000000000", out),
                  "not hex");
    cr_expect_not(id_normalise_fingerprint("", out));
    cr_expect_str_eq(out, "");
}

/* A certificate's O longer than a name may be is cut at a character boundary (documented in identity.h). */
Test(uzi, long_organisation_names_are_cut_between_characters)
{
    char org[129] = ""; /* 64 characters: as long as an O may be (X.520) */
    for (int i = 0; i < 64; i++)
        strcat(org, "\xc3\xa9"); /* é: two bytes each, 128 in all */
    X509 *cert = cert_with_names_and_org(names_of(uzi(VALID_UZI), NULL), org);
    id_identity who;
    cr_assert_eq(id_resolve(cert, NULL, &who), ID_SOURCE_CERTIFICATE);
    size_t n = strlen(who.name);
    cr_expect_eq(n, (size_t)LIM(organisation_name_max) - 1, "126 bytes: 63 whole characters, not 127 with half of one");
    cr_expect_eq(n % 2, 0u);
    cr_expect(!strncmp(who.name, org, n));
    X509_free(cert);
}

/* Lines, columns and names past the table's limits stop the load with the line number; nothing is cut. */
Test(table, limits_of_the_table_are_errors)
{
    char dir[] = "/tmp/fhirgw-limits-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    const char *header = "fingerprint\tname\tura\trole\tnote\n";
    size_t line_max = (size_t)LIM(organisations_line_max);
    char *text = malloc(2 * line_max + 256);
    /* a row of exactly organisations_line_max bytes (its newline included) loads; one byte more does not */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t row = strlen(FP_A "\tA\t90000001\tgp\t") + 1; /* + the newline */
        int note = (int)(line_max + extra - row);
        snprintf(text, 2 * line_max + 256, "%s" FP_A "\tA\t90000001\tgp\t%0*d\n", header, note, 0);
        const char *err = load_error_for(dir, text);
        if (extra == 0)
            cr_expect_null(err, "%s", err);
        else
            cr_expect(err && strstr(err, "bad.tsv:2: line longer than 4095 bytes"), "%s", err);
    }
    /* more columns than organisations_columns_max */
    strcpy(text, "fingerprint\tname\tura\trole");
    for (int i = 0; i < LIM(organisations_columns_max); i++)
        strcat(text, "\tx");
    strcat(text, "\n");
    const char *err = load_error_for(dir, text);
    cr_expect(err && strstr(err, "bad.tsv:1:") && strstr(err, "more than 32 columns"), "%s", err);
    /* a name of organisation_name_max bytes loads, one longer is refused (not cut) */
    for (int extra = 0; extra < 2; extra++) {
        snprintf(text, 2 * line_max + 256, "%s" FP_A "\t%0*d\t90000001\tgp\tx\n", header,
                 LIM(organisation_name_max) + extra, 0);
        err = load_error_for(dir, text);
        if (extra == 0)
            cr_expect_null(err, "%s", err);
        else
            cr_expect(err && strstr(err, "name must be 1-127 bytes"), "%s", err);
    }
    free(text);
    remove_tree(dir);
}
