/*
 * fhir/primitive.c — lexical checks of the FHIR R4 primitive data types
 * (see fhir/primitive.h).
 *
 * Source of truth: the regular expressions carried by the official R4
 * StructureDefinitions (element <type>.value, extension
 * http://hl7.org/fhir/StructureDefinition/regex) plus the prose rules of
 * https://hl7.org/fhir/R4/datatypes.html that a regex cannot say. Each
 * scanner below follows its regex token by token; where we deliberately
 * differ, the comment on that scanner says why.
 *
 * Approach
 *
 *  - Hand-written scanners, one forward pass, no allocation and no global
 *    state, so the functions are thread-safe and linear in the input (a
 *    50 MB Bundle runs every value through here).
 *
 *  - Messages are static strings that say what is wrong and what form was
 *    expected. The date, dateTime, instant and time scanners are those of
 *    fhir/datetime.c (search and FHIRPath read dates with them too), which
 *    report range problems precisely ("month must be 01 to 12").
 *
 *  - "\s" in the FHIR regexes is the Java/XML Schema class: space, TAB, LF,
 *    VT, FF, CR (ASCII only).
 *
 *  - Empty values: the JSON format forbids "" for every primitive, and every
 *    regex except uri's needs at least one character, so an empty value is
 *    reported for all kinds (except boolean, which is never checked here).
 */
#include "fhir/primitive.h"

#include "fhir/datetime.h"

#include <string.h>

/* datatypes.html: strings SHALL NOT exceed 1 MB (1024*1024 characters). */
#define STRING_MAX_CHARS ((size_t)1024 * 1024)
#define ID_MAX_CHARS 64u

/* ---- names ---------------------------------------------------------------- */

/* Indexed by fprim_kind; spelled exactly as the spec's type names. */
static const char *const k_names[FPRIM_COUNT] = {
    [FPRIM_NONE] = NULL,
    [FPRIM_BOOLEAN] = "boolean",
    [FPRIM_INTEGER] = "integer",
    [FPRIM_STRING] = "string",
    [FPRIM_DECIMAL] = "decimal",
    [FPRIM_URI] = "uri",
    [FPRIM_URL] = "url",
    [FPRIM_CANONICAL] = "canonical",
    [FPRIM_BASE64BINARY] = "base64Binary",
    [FPRIM_INSTANT] = "instant",
    [FPRIM_DATE] = "date",
    [FPRIM_DATETIME] = "dateTime",
    [FPRIM_TIME] = "time",
    [FPRIM_CODE] = "code",
    [FPRIM_OID] = "oid",
    [FPRIM_ID] = "id",
    [FPRIM_MARKDOWN] = "markdown",
    [FPRIM_UNSIGNEDINT] = "unsignedInt",
    [FPRIM_POSITIVEINT] = "positiveInt",
    [FPRIM_UUID] = "uuid",
    [FPRIM_XHTML] = "xhtml",
};

fprim_kind fprim_from_name(const char *name)
{
    if (!name)
        return FPRIM_NONE;
    for (int k = FPRIM_NONE + 1; k < FPRIM_COUNT; k++)
        if (strcmp(k_names[k], name) == 0)
            return (fprim_kind)k;
    return FPRIM_NONE;
}

/* NULL for FPRIM_NONE and out-of-range values: they name no FHIR type. */
const char *fprim_name(fprim_kind k)
{
    if ((int)k <= FPRIM_NONE || k >= FPRIM_COUNT)
        return NULL;
    return k_names[k];
}

fprim_json fprim_json_type(fprim_kind k)
{
    switch (k) {
    case FPRIM_BOOLEAN: return FPRIM_JSON_BOOLEAN;
    case FPRIM_INTEGER:
    case FPRIM_DECIMAL:
    case FPRIM_UNSIGNEDINT:
    case FPRIM_POSITIVEINT: return FPRIM_JSON_NUMBER;
    default: return FPRIM_JSON_STRING;
    }
}

/* ---- character classes ---------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The regex \s class (Java / XML Schema): ASCII whitespace only. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* C0 controls other than the TAB, LF and CR that strings may hold. */
static bool is_bad_control(char c)
{
    unsigned char b = (unsigned char)c;
    return b < 0x20 && c != '\t' && c != '\n' && c != '\r';
}

static bool is_lower_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '+' || c == '/';
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t pn = strlen(prefix);
    return n >= pn && memcmp(s, prefix, pn) == 0;
}

/* ---- a cursor over the value ---------------------------------------------- */

typedef struct cursor {
    const char *s;
    size_t n;
    size_t i;
} cursor;

static bool at_end(const cursor *c)
{
    return c->i >= c->n;
}

/* The next byte, or NUL at the end (NUL never matches what we look for). */
static char peek(const cursor *c)
{
    return at_end(c) ? '\0' : c->s[c->i];
}

static bool eat(cursor *c, char ch)
{
    if (at_end(c) || c->s[c->i] != ch)
        return false;
    c->i++;
    return true;
}

/* Skips a run of digits; returns how many. */
static size_t skip_digits(cursor *c)
{
    size_t start = c->i;
    while (!at_end(c) && is_digit(c->s[c->i]))
        c->i++;
    return c->i - start;
}

/* ---- integers (integer, unsignedInt, positiveInt) ------------------------- */

/* What differs between the three integer kinds: the regex allows '-' only
 * for integer, and the value ranges differ. */
typedef struct int_rule {
    bool sign_ok;
    long long min;
    const char *form;  /* shape is wrong */
    const char *sign;  /* a '-' where none is allowed */
    const char *zeros; /* leading zeros */
    const char *whole; /* fraction or exponent */
    const char *range; /* outside min..2147483647 */
} int_rule;

static const int_rule k_integer = {
    true,
    -2147483648LL,
    "not a valid integer: expected digits with an optional leading '-', e.g. -12",
    NULL,
    "integer must not have leading zeros",
    "integer must be a whole number: no fraction or exponent",
    "integer out of 32-bit range (-2147483648 to 2147483647)",
};

static const int_rule k_unsigned = {
    false,
    0,
    "not a valid unsignedInt: expected digits 0 to 2147483647",
    "unsignedInt must not have a sign: expected 0 to 2147483647",
    "unsignedInt must not have leading zeros",
    "unsignedInt must be a whole number: no fraction or exponent",
    "unsignedInt out of range: expected 0 to 2147483647",
};

static const int_rule k_positive = {
    false,
    1,
    "not a valid positiveInt: expected digits 1 to 2147483647",
    "positiveInt must not have a sign: expected 1 to 2147483647",
    "positiveInt must not have leading zeros",
    "positiveInt must be a whole number: no fraction or exponent",
    "positiveInt out of range: expected 1 to 2147483647",
};

/* -?(0|[1-9][0-9]*) then a range check. The magnitude saturates just above
 * 2^31 so that arbitrarily long digit runs cannot overflow. */
static const char *check_int(const int_rule *r, const char *s, size_t n)
{
    cursor c = {s, n, 0};
    bool neg = eat(&c, '-');
    if (neg && !r->sign_ok)
        return r->sign;
    if (!is_digit(peek(&c)))
        return r->form;
    if (peek(&c) == '0' && c.i + 1 < n && is_digit(s[c.i + 1]))
        return r->zeros;
    long long mag = 0;
    for (; !at_end(&c) && is_digit(s[c.i]); c.i++)
        if (mag <= 2147483648LL)
            mag = mag * 10 + (s[c.i] - '0');
    if (!at_end(&c)) {
        char ch = s[c.i];
        return (ch == '.' || ch == 'e' || ch == 'E') ? r->whole : r->form;
    }
    long long v = neg ? -mag : mag;
    if (v < r->min || v > 2147483647LL)
        return r->range;
    return NULL;
}

/* ---- decimal -------------------------------------------------------------- */

#define DECIMAL_FORM "not a valid decimal: expected a number like 12, -0.5 or 1.25e3"

/*
 * Range: every decimal must fit a 64-bit IEEE double, because that is what
 * search compares (an indexed 1e400 would be infinity, and 1e-400 zero, so
 * neither could be found by its own value). Decided on the text, exactly and
 * without strtod (whose decimal point depends on the locale): the power of
 * ten of the first significant digit and the next 17 digits are compared with
 * DBL_MAX (1.7976931348623157e308) and the smallest positive double
 * (4.9406564584124654e-324). Runs on lexically valid input only.
 */
#define DECIMAL_SIG 17
#define DECIMAL_EXP_SATURATE 100000L /* 1e99999999999 must not overflow the exponent */

static const char *check_decimal_range(const char *s, size_t n)
{
    size_t i = s[0] == '-', int_start = i;
    while (i < n && is_digit(s[i]))
        i++;
    size_t int_len = i - int_start, frac_start = i + (i < n && s[i] == '.'), frac_len = 0;
    for (i = frac_start; i < n && is_digit(s[i]); i++)
        frac_len++;
    long exp = 0;
    bool exp_neg = false;
    if (i < n) { /* 'e' or 'E', an optional sign, digits */
        i++;
        exp_neg = s[i] == '-';
        i += s[i] == '-' || s[i] == '+';
        for (; i < n; i++)
            if (exp < DECIMAL_EXP_SATURATE)
                exp = exp * 10 + (s[i] - '0');
    }
    /* digit p of int part then fraction stands for 10^(int_len - 1 - p) */
    char sig[DECIMAL_SIG + 1];
    size_t sl = 0, total = int_len + frac_len;
    long e10 = 0;
    for (size_t p = 0; p < total && sl < DECIMAL_SIG; p++) {
        char d = p < int_len ? s[int_start + p] : s[frac_start + (p - int_len)];
        if (sl == 0 && d == '0')
            continue;
        if (sl == 0)
            e10 = (long)int_len - 1 - (long)p + (exp_neg ? -exp : exp);
        sig[sl++] = d;
    }
    if (sl == 0)
        return NULL; /* zero */
    memset(sig + sl, '0', DECIMAL_SIG - sl);
    sig[DECIMAL_SIG] = '\0';
    if (e10 > 308 || (e10 == 308 && strcmp(sig, "17976931348623157") > 0))
        return "decimal out of range: larger in magnitude than 1.7976931348623157e308, which no search could compare";
    if (e10 < -324 || (e10 == -324 && strcmp(sig, "49406564584124654") < 0))
        return "decimal out of range: not zero but smaller in magnitude than 4.9406564584124654e-324, which no "
               "search could tell from zero";
    return NULL;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 * No limit on digits: precision is significant in FHIR and the official
 * example Observation/decimal carries 19 significant digits. */
static const char *check_decimal(const char *s, size_t n)
{
    cursor c = {s, n, 0};
    eat(&c, '-');
    if (!is_digit(peek(&c)))
        return DECIMAL_FORM;
    if (eat(&c, '0')) {
        if (is_digit(peek(&c)))
            return "decimal must not have leading zeros";
    } else {
        skip_digits(&c);
    }
    if (eat(&c, '.') && skip_digits(&c) == 0)
        return "decimal needs at least one digit after the '.'";
    if (eat(&c, 'e') || eat(&c, 'E')) {
        if (!eat(&c, '+'))
            eat(&c, '-');
        if (skip_digits(&c) == 0)
            return "decimal exponent needs at least one digit";
    }
    return at_end(&c) ? check_decimal_range(s, n) : DECIMAL_FORM;
}

/* ---- string, markdown ----------------------------------------------------- */

/* [ \r\n\t\S]+ and the 1 MB limit. Read literally, the regex forbids only
 * VT and FF (other controls are \S), but datatypes.html says strings SHOULD
 * NOT hold characters below U+0020 except TAB, LF and CR; we enforce that.
 * The limit counts characters (UTF-8 lead bytes), as the spec words it. */
static const char *check_string_like(const char *s, size_t n, const char *control_msg)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_bad_control(s[i]))
            return control_msg;
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            chars++;
    }
    if (chars > STRING_MAX_CHARS)
        return "string longer than 1 MB (1048576 characters)";
    return NULL;
}

#define STRING_CONTROL "string contains a control character: only TAB, CR and LF are allowed below U+0020"
#define MARKDOWN_CONTROL "markdown contains a control character: only TAB, CR and LF are allowed below U+0020"
#define CODE_CONTROL "code contains a control character"

/* ---- code, id ------------------------------------------------------------- */

/* [^\s]+(\s[^\s]+)*: tokens separated by exactly one whitespace character.
 * code specialises string, so the string rules apply first. */
static const char *check_code(const char *s, size_t n)
{
    const char *msg = check_string_like(s, n, CODE_CONTROL);
    if (msg)
        return msg;
    if (is_space(s[0]) || is_space(s[n - 1]))
        return "code must not start or end with whitespace";
    for (size_t i = 1; i < n; i++)
        if (is_space(s[i]) && is_space(s[i - 1]))
            return "code must not contain consecutive whitespace: tokens are separated by a single space";
    return NULL;
}

/* [A-Za-z0-9\-\.]{1,64} */
static const char *check_id(const char *s, size_t n)
{
    if (n > ID_MAX_CHARS)
        return "id longer than 64 characters";
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '-' || ch == '.';
        if (!ok)
            return "not a valid id: expected 1 to 64 of A-Z, a-z, 0-9, '-' and '.'";
    }
    return NULL;
}

/* ---- uri, url, canonical, oid, uuid --------------------------------------- */

/* \S*. We also refuse the remaining C0 controls and DEL, which the regex
 * (Java \S) would let through: RFC 3986 allows them nowhere in a URI. A
 * canonical's "|version" suffix needs no special case. */
static const char *check_uri(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (is_space(s[i]))
            return "URI must not contain whitespace";
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return "URI must not contain control characters";
    }
    return NULL;
}

#define OID_FORM "not a valid oid: expected urn:oid: and dotted numbers, e.g. urn:oid:2.16.840.1.113883"

/* urn:oid:[0-2](\.(0|[1-9][0-9]*))+ */
static const char *check_oid(const char *s, size_t n)
{
    if (!has_prefix(s, n, "urn:oid:"))
        return OID_FORM;
    cursor c = {s, n, strlen("urn:oid:")};
    char root = peek(&c);
    if (root < '0' || root > '2')
        return "oid must start with arc 0, 1 or 2 after urn:oid:";
    c.i++;
    size_t arcs = 0;
    while (!at_end(&c)) {
        if (!eat(&c, '.') || !is_digit(peek(&c)))
            return OID_FORM;
        if (peek(&c) == '0' && c.i + 1 < n && is_digit(s[c.i + 1]))
            return "oid arcs must not have leading zeros";
        skip_digits(&c);
        arcs++;
    }
    return arcs ? NULL : "oid needs at least two arcs, e.g. urn:oid:1.2";
}

#define UUID_FORM "not a valid uuid: expected urn:uuid: and lowercase hex 8-4-4-4-12"

/* urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
 * Uppercase hex gets its own message: it is the usual mistake (RFC 4122
 * accepts it on input, the FHIR regex does not). */
static const char *check_uuid(const char *s, size_t n)
{
    static const char prefix[] = "urn:uuid:";
    const size_t p = sizeof prefix - 1;
    if (n != p + 36 || !has_prefix(s, n, prefix))
        return UUID_FORM;
    bool upper = false;
    for (size_t k = 0; k < 36; k++) {
        char ch = s[p + k];
        bool dash_pos = (k == 8 || k == 13 || k == 18 || k == 23);
        if (dash_pos ? ch != '-' : !is_lower_hex(ch)) {
            if (!dash_pos && ch >= 'A' && ch <= 'F') {
                upper = true;
                continue;
            }
            return UUID_FORM;
        }
    }
    return upper ? "uuid hex digits must be lowercase" : NULL;
}

/* ---- base64Binary --------------------------------------------------------- */

/* The R4 regex (\s*([0-9a-zA-Z\+/=]){4}\s*)+ puts no rule on '='; we check
 * real base64 (RFC 4648): at most two '=' and only at the very end, and a
 * data length, not counting whitespace, that is a multiple of 4. Whitespace
 * is accepted anywhere, not only between 4-character groups as the regex
 * says, since line-wrapped encoders do not always wrap at a multiple of 4. */
static const char *check_base64(const char *s, size_t n)
{
    size_t count = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (is_space(ch))
            continue;
        if (ch == '=') {
            if (++pad > 2)
                return "base64Binary has too much '=' padding: at most two '=' at the end";
        } else if (!is_base64_char(ch)) {
            return "base64Binary may contain only A-Z, a-z, 0-9, '+', '/', '=' padding and whitespace";
        } else if (pad) {
            return "base64Binary '=' padding is allowed only at the end";
        }
        count++;
    }
    if (count == 0)
        return "base64Binary contains only whitespace";
    if (count % 4)
        return "base64Binary length (not counting whitespace) must be a multiple of 4";
    return NULL;
}

/* ---- date, dateTime, instant, time ---------------------------------------- */

/* The scanners and their messages live in fhir/datetime.c, which also gives
 * search and FHIRPath the parsed value; here only the verdict matters. */
static const char *check_temporal(fdt_form form, const char *s, size_t n)
{
    fdt_value ignored;
    return fdt_parse(form, s, n, &ignored);
}

/* ---- xhtml ---------------------------------------------------------------- */

/* Full XHTML checking (well-formedness, the FHIR element/attribute subset)
 * belongs elsewhere; lexically we only make sure it looks like markup. */
static const char *check_xhtml(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i == n)
        return "xhtml must not be blank";
    if (s[i] != '<')
        return "xhtml must start with '<': expected a <div> element";
    return NULL;
}

/* ---- dispatch ------------------------------------------------------------- */

const char *fprim_check(fprim_kind k, const char *s, size_t len)
{
    if (k == FPRIM_BOOLEAN)
        return NULL; /* the JSON type (true/false) is all there is */
    if ((int)k <= FPRIM_NONE || k >= FPRIM_COUNT)
        return "unknown primitive type";
    if (!s || len == 0)
        return "value must not be empty";
    switch (k) {
    case FPRIM_INTEGER: return check_int(&k_integer, s, len);
    case FPRIM_UNSIGNEDINT: return check_int(&k_unsigned, s, len);
    case FPRIM_POSITIVEINT: return check_int(&k_positive, s, len);
    case FPRIM_DECIMAL: return check_decimal(s, len);
    case FPRIM_STRING: return check_string_like(s, len, STRING_CONTROL);
    case FPRIM_MARKDOWN: return check_string_like(s, len, MARKDOWN_CONTROL);
    case FPRIM_CODE: return check_code(s, len);
    case FPRIM_ID: return check_id(s, len);
    case FPRIM_URI:
    case FPRIM_URL:
    case FPRIM_CANONICAL: return check_uri(s, len);
    case FPRIM_OID: return check_oid(s, len);
    case FPRIM_UUID: return check_uuid(s, len);
    case FPRIM_BASE64BINARY: return check_base64(s, len);
    case FPRIM_DATE: return check_temporal(FDT_FORM_DATE, s, len);
    case FPRIM_DATETIME: return check_temporal(FDT_FORM_DATETIME, s, len);
    case FPRIM_INSTANT: return check_temporal(FDT_FORM_INSTANT, s, len);
    case FPRIM_TIME: return check_temporal(FDT_FORM_TIME, s, len);
    case FPRIM_XHTML: return check_xhtml(s, len);
    default: return "unknown primitive type";
    }
}
