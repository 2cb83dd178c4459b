/*
 * fhir/fhirpath_value.c — the values FHIRPath computes with: the evaluation
 * arena, System values (decimals with a scale, partial dates and times,
 * quantities with UCUM units), conversion of JSON nodes to System values,
 * equality, equivalence and ordering, and output as text or JSON.
 *
 * Decimals are long double plus a scale (digits after the point as written
 * or as an operation produced them). The scale is what makes 1.10 = 1.1,
 * 1.2 / 1.8 ~ 0.67 and toString() of 1.0 work as the specification says:
 * equality rounds both sides to the larger scale, equivalence to the smaller.
 */
#include "fhir/fhirpath_internal.h"

#include "fhir/array.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- arena --------------------------------------------------------------- */

#define ARENA_FIRST_BLOCK 16384u
#define ARENA_ALIGN 16u

typedef struct arena_block {
    struct arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} arena_block;

struct fp_arena {
    arena_block *first, *current;
    size_t capacity;
    bool failed;
};

fp_arena *fp_arena_new(void)
{
    return calloc(1, sizeof(fp_arena));
}

void fp_arena_reset(fp_arena *a)
{
    for (arena_block *b = a->first; b; b = b->next)
        b->used = 0;
    a->current = a->first;
    a->failed = false;
}

void fp_arena_free(fp_arena *a)
{
    if (!a)
        return;
    for (arena_block *b = a->first, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

size_t fp_arena_capacity(const fp_arena *a)
{
    return a->capacity;
}

void *fp_arena_alloc(fp_arena *a, size_t size)
{
    return fpa_alloc(a, size);
}

bool fpa_failed(const fp_arena *a)
{
    return a->failed;
}

void *fpa_alloc(fp_arena *a, size_t size)
{
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (size == 0)
        size = ARENA_ALIGN;
    /* Use the current block or any later one (they were emptied by a reset). */
    for (arena_block *b = a->current; b; b = b->next) {
        if (b->size - b->used >= size) {
            a->current = b;
            void *p = b->data + b->used;
            b->used += size;
            return p;
        }
    }
    size_t want = a->capacity ? a->capacity : ARENA_FIRST_BLOCK; /* double the total each time */
    if (want < size)
        want = size;
    arena_block *nb = malloc(sizeof(arena_block) + want);
    if (!nb) {
        a->failed = true;
        return NULL;
    }
    nb->size = want;
    nb->used = size;
    nb->next = NULL;
    if (!a->first) {
        a->first = nb;
    } else {
        arena_block *last = a->current ? a->current : a->first;
        while (last->next)
            last = last->next;
        last->next = nb;
    }
    a->current = nb;
    a->capacity += want;
    return nb->data;
}

bool fpa_reserve(fp_arena *a, void *items_ptr, size_t *capacity, size_t used, size_t needed, size_t element_size,
                 size_t first)
{
    if (needed <= *capacity)
        return true;
    size_t cap;
    if (!fa_next_capacity(*capacity, needed, element_size, first, &cap))
        return false;
    void *grown = fpa_alloc(a, cap * element_size);
    if (!grown)
        return false;
    /* the owner's pointer is read and written as bytes: items_ptr may be any T ** */
    void *items;
    memcpy(&items, items_ptr, sizeof items);
    if (used)
        memcpy(grown, items, used * element_size);
    memcpy(items_ptr, &grown, sizeof grown);
    *capacity = cap;
    return true;
}

char *fpa_strndup(fp_arena *a, const char *s, size_t len)
{
    char *p = fpa_alloc(a, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* ---- item constructors --------------------------------------------------- */

fp_item fp_boolean(bool b)
{
    fp_item it = {.kind = FP_BOOLEAN};
    it.u.boolean = b;
    return it;
}

fp_item fp_integer(int64_t i)
{
    fp_item it = {.kind = FP_INTEGER};
    it.u.integer = i;
    return it;
}

fp_item fp_string(const char *s, size_t len)
{
    fp_item it = {.kind = FP_STRING, .len = (uint32_t)len};
    it.u.string = s;
    return it;
}

/* ---- numbers ------------------------------------------------------------- */

long double fp_pow10(int n)
{
    static const long double small[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L, 1e9L,
                                        1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L};
    if (n >= 0 && n <= 18)
        return small[n];
    return powl(10.0L, (long double)n);
}

long double fp_round_to(long double v, int scale)
{
    long double f = fp_pow10(scale);
    return roundl(v * f) / f;
}

int fp_natural_scale(long double v, int min_scale)
{
    long double r = roundl(v * 1e8L);
    if (fabsl(r) > 9e18L)
        return min_scale > 8 ? min_scale : 8;
    int64_t m = (int64_t)r;
    int scale = 8;
    while (scale > min_scale && m % 10 == 0) {
        m /= 10;
        scale--;
    }
    return scale;
}

bool fp_parse_number(const char *s, size_t len, long double *v, int *scale, bool *integral, int64_t *ival)
{
    size_t i = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    size_t int_start = i;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i == int_start)
        return false;
    int frac = 0;
    if (i < len && s[i] == '.') {
        i++;
        size_t fs = i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        if (i == fs)
            return false;
        frac = (int)(i - fs);
    }
    if (i != len || len > 64)
        return false;
    char tmp[72];
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    *v = strtold(tmp, NULL);
    *scale = frac;
    *integral = frac == 0;
    if (frac == 0) {
        errno = 0;
        long long x = strtoll(tmp, NULL, 10);
        if (errno)
            *integral = false; /* too large for an Integer: a Decimal */
        *ival = x;
    }
    return true;
}

/* A JSON number node's text -> decimal value and scale (exponents allowed). */
static void json_decimal(const char *s, size_t len, long double *v, int *scale)
{
    char tmp[80];
    if (len >= sizeof tmp)
        len = sizeof tmp - 1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    *v = strtold(tmp, NULL);
    int frac = 0, exp = 0;
    const char *dot = memchr(tmp, '.', len);
    const char *e = strpbrk(tmp, "eE");
    if (dot)
        frac = (int)((e ? e : tmp + len) - dot - 1);
    if (e)
        exp = atoi(e + 1);
    int sc = frac - exp;
    *scale = sc < 0 ? 0 : sc > 18 ? 18 : sc;
}

/* ---- dates and times ----------------------------------------------------- */

static int two_digits(const char *s, size_t len, size_t at)
{
    if (at + 2 > len || !isdigit((unsigned char)s[at]) || !isdigit((unsigned char)s[at + 1]))
        return -1;
    return (s[at] - '0') * 10 + (s[at + 1] - '0');
}

/* Time of day part: hh[:mm[:ss[.fff]]]; returns bytes used, 0 if none. */
static size_t scan_time_part(const char *s, size_t len, size_t i, fp_datetime *dt)
{
    size_t start = i;
    int h = two_digits(s, len, i);
    if (h < 0 || h > 23)
        return 0;
    dt->hour = (uint8_t)h;
    dt->precision = FP_PREC_HOUR;
    i += 2;
    if (i < len && s[i] == ':') {
        int m = two_digits(s, len, i + 1);
        if (m < 0 || m > 59)
            return i - start;
        dt->minute = (uint8_t)m;
        dt->precision = FP_PREC_MINUTE;
        i += 3;
        if (i < len && s[i] == ':') {
            int sec = two_digits(s, len, i + 1);
            if (sec < 0 || sec > 59)
                return i - start;
            dt->second = (uint8_t)sec;
            dt->precision = FP_PREC_SECOND;
            i += 3;
            if (i + 1 < len && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
                i++;
                int ms = 0, n = 0;
                while (i < len && isdigit((unsigned char)s[i])) {
                    if (n < 3)
                        ms = ms * 10 + (s[i] - '0');
                    n++;
                    i++;
                }
                while (n < 3) {
                    ms *= 10;
                    n++;
                }
                dt->ms = (uint16_t)ms;
                dt->precision = FP_PREC_MS;
            }
        }
    }
    return i - start;
}

size_t fp_scan_temporal(const char *s, size_t len, bool time_only, fp_datetime *dt, bool *saw_t)
{
    memset(dt, 0, sizeof *dt);
    *saw_t = false;
    size_t i = 0;
    if (time_only) {
        size_t n = scan_time_part(s, len, 0, dt);
        return n;
    }
    if (len < 4)
        return 0;
    for (int k = 0; k < 4; k++)
        if (!isdigit((unsigned char)s[k]))
            return 0;
    dt->year = (int16_t)((s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0'));
    dt->month = dt->day = 1;
    dt->precision = FP_PREC_YEAR;
    i = 4;
    if (i < len && s[i] == '-') {
        int m = two_digits(s, len, i + 1);
        if (m >= 1 && m <= 12) {
            dt->month = (uint8_t)m;
            dt->precision = FP_PREC_MONTH;
            i += 3;
            if (i < len && s[i] == '-') {
                int d = two_digits(s, len, i + 1);
                if (d >= 1 && d <= fdt_days_in_month(dt->year, m)) {
                    dt->day = (uint8_t)d;
                    dt->precision = FP_PREC_DAY;
                    i += 3;
                }
            }
        }
    }
    if (i >= len || s[i] != 'T')
        return i;
    *saw_t = true;
    i++;
    if (dt->precision != FP_PREC_DAY) /* a time needs a full date before it */
        return i;
    size_t n = scan_time_part(s, len, i, dt);
    i += n;
    if (n == 0)
        return i;
    if (i < len && s[i] == 'Z') {
        dt->has_tz = true;
        return i + 1;
    }
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        int th = two_digits(s, len, i + 1), tm = i + 3 < len && s[i + 3] == ':' ? two_digits(s, len, i + 4) : -1;
        if (th >= 0 && th <= 14 && tm >= 0 && tm <= 59) {
            dt->has_tz = true;
            dt->tz_minutes = (int16_t)((th * 60 + tm) * (s[i] == '-' ? -1 : 1));
            i += 6;
        }
    }
    return i;
}

size_t fp_format_temporal(fp_kind kind, const fp_datetime *dt, char *buf, size_t cap)
{
    char tmp[48];
    int n = 0;
    int p = dt->precision;
    if (kind != FP_TIME) {
        n += snprintf(tmp + n, sizeof tmp - n, "%04d", dt->year);
        if (p >= FP_PREC_MONTH)
            n += snprintf(tmp + n, sizeof tmp - n, "-%02d", dt->month);
        if (p >= FP_PREC_DAY)
            n += snprintf(tmp + n, sizeof tmp - n, "-%02d", dt->day);
        if (p >= FP_PREC_HOUR)
            tmp[n++] = 'T';
    }
    if (p >= FP_PREC_HOUR)
        n += snprintf(tmp + n, sizeof tmp - n, "%02d", dt->hour);
    if (p >= FP_PREC_MINUTE)
        n += snprintf(tmp + n, sizeof tmp - n, ":%02d", dt->minute);
    if (p >= FP_PREC_SECOND)
        n += snprintf(tmp + n, sizeof tmp - n, ":%02d", dt->second);
    if (p >= FP_PREC_MS)
        n += snprintf(tmp + n, sizeof tmp - n, ".%03d", dt->ms);
    if (kind == FP_DATETIME && p >= FP_PREC_HOUR && dt->has_tz) {
        if (dt->tz_minutes == 0)
            tmp[n++] = 'Z';
        else {
            int tz = dt->tz_minutes < 0 ? -dt->tz_minutes : dt->tz_minutes;
            n += snprintf(tmp + n, sizeof tmp - n, "%c%02d:%02d", dt->tz_minutes < 0 ? '-' : '+', tz / 60, tz % 60);
        }
    }
    tmp[n] = '\0';
    if (cap)
        snprintf(buf, cap, "%s", tmp);
    return (size_t)n;
}

void fp_clock_now(fp_datetime *dt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fdt_from_epoch_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, dt);
}

typedef enum dur_unit { DU_YEAR, DU_MONTH, DU_WEEK, DU_DAY, DU_HOUR, DU_MINUTE, DU_SECOND, DU_MS, DU_NONE } dur_unit;

static dur_unit duration_unit(const char *u, size_t len, bool calendar)
{
    static const char *const cal[] = {"year", "month", "week", "day", "hour", "minute", "second", "millisecond"};
    /* UCUM 'a' and 'mo' are not calendar durations: adding them to a date is an error. */
    static const char *const ucum[] = {"", "", "wk", "d", "h", "min", "s", "ms"};
    for (int i = 0; i < DU_NONE; i++) {
        const char *name = calendar ? cal[i] : ucum[i];
        if (*name && strlen(name) == len && !memcmp(name, u, len))
            return (dur_unit)i;
    }
    return DU_NONE;
}

static void add_months(fp_datetime *dt, int64_t months)
{
    int64_t total = (int64_t)dt->year * 12 + (dt->month - 1) + months;
    dt->year = (int16_t)(total / 12);
    dt->month = (uint8_t)(total % 12 + 1);
    int dim = fdt_days_in_month(dt->year, dt->month);
    if (dt->day > dim)
        dt->day = (uint8_t)dim;
}

bool fp_add_duration(fp_kind kind, fp_datetime *dt, long double amount, const char *unit, size_t unit_len,
                     bool calendar)
{
    dur_unit du = duration_unit(unit, unit_len, calendar);
    if (du == DU_NONE || !(fabsl(amount) < 1e12L)) /* beyond 9999 years either way */
        return false;
    /* Above seconds the fraction is ignored: calendar arithmetic works in whole units. */
    long double whole = truncl(amount);
    if (du == DU_YEAR || du == DU_MONTH) {
        int64_t months = (int64_t)whole * (du == DU_YEAR ? 12 : 1);
        if (dt->precision == FP_PREC_YEAR)
            months -= months % 12;
        add_months(dt, months);
    } else {
        static const int64_t ms_per[] = {0, 0, 604800000LL, 86400000LL, 3600000LL, 60000LL, 1000LL, 1LL};
        long double delta = du >= DU_SECOND ? roundl(amount * (long double)ms_per[du])
                                            : whole * (long double)ms_per[du];
        if (fabsl(delta) > 3e14L)
            return false;
        int64_t d = (int64_t)delta;
        if (dt->precision <= FP_PREC_MONTH) {
            int64_t days = d / 86400000;
            add_months(dt, dt->precision == FP_PREC_YEAR ? days / 365 * 12 : days / 30);
        } else if (dt->precision == FP_PREC_DAY) {
            fp_datetime t = *dt;
            fdt_from_epoch_ms(fdt_civil_ms(&t) + d / 86400000 * 86400000, &t);
            dt->year = t.year;
            dt->month = t.month;
            dt->day = t.day;
        } else {
            fp_datetime t = *dt;
            fdt_from_epoch_ms(fdt_civil_ms(dt) + d, &t);
            t.precision = dt->precision;
            t.has_tz = dt->has_tz;
            t.tz_minutes = dt->tz_minutes;
            *dt = t;
        }
    }
    (void)kind;
    return dt->year >= 1 && dt->year <= 9999;
}

int fp_temporal_digits(fp_kind kind, int precision)
{
    static const int date_digits[] = {0, 4, 6, 8, 10, 12, 14, 17};
    static const int time_digits[] = {0, 0, 0, 0, 2, 4, 6, 9};
    return kind == FP_TIME ? time_digits[precision] : date_digits[precision];
}

bool fp_boundary_temporal(fp_kind kind, const fp_datetime *in, int digits, bool high, fp_datetime *out)
{
    int target = 0;
    for (int p = FP_PREC_YEAR; p <= FP_PREC_MS; p++)
        if (fp_temporal_digits(kind, p) == digits)
            target = p;
    if (!target || (kind == FP_DATE && target > FP_PREC_DAY) || (kind == FP_TIME && target < FP_PREC_HOUR))
        return false;
    *out = *in;
    int p = in->precision;
    if (p < FP_PREC_MONTH)
        out->month = high ? 12 : 1;
    if (p < FP_PREC_DAY)
        out->day = high ? (uint8_t)fdt_days_in_month(out->year, out->month) : 1;
    if (p < FP_PREC_HOUR)
        out->hour = high ? 23 : 0;
    if (p < FP_PREC_MINUTE)
        out->minute = high ? 59 : 0;
    if (p < FP_PREC_SECOND)
        out->second = high ? 59 : 0;
    if (p < FP_PREC_MS)
        out->ms = high ? 999 : 0;
    out->precision = (uint8_t)target;
    /* An unknown offset spans +14:00 .. -12:00: the earliest instant is at +14:00. */
    if (kind == FP_DATETIME && target >= FP_PREC_HOUR && !in->has_tz) {
        out->has_tz = true;
        out->tz_minutes = high ? -12 * 60 : 14 * 60;
    }
    return true;
}

/* ---- UCUM ---------------------------------------------------------------- */

enum { D_M, D_G, D_S, D_RAD, D_K, D_C, D_CD, D_ARB, D_CAL };

typedef struct ucum_atom {
    const char *code;
    long double factor; /* in base units m, g, s, rad, K, C, cd */
    int8_t dim[FP_DIMS];
    bool metric; /* takes prefixes */
} ucum_atom;

/* The units clinical data uses; anything else is compared by its text only. */
static const ucum_atom ucum_atoms[] = {
    {"m", 1, {[D_M] = 1}, true},
    {"g", 1, {[D_G] = 1}, true},
    {"s", 1, {[D_S] = 1}, true},
    {"rad", 1, {[D_RAD] = 1}, true},
    {"K", 1, {[D_K] = 1}, true},
    {"C", 1, {[D_C] = 1}, true},
    {"cd", 1, {[D_CD] = 1}, true},
    {"mol", 6.0221367e23L, {0}, true},
    {"eq", 6.0221367e23L, {0}, true},
    {"osm", 6.0221367e23L, {0}, true},
    {"kat", 6.0221367e23L, {[D_S] = -1}, true},
    {"U", 6.0221367e23L * 1e-6L / 60, {[D_S] = -1}, true},
    {"sr", 1, {[D_RAD] = 2}, true},
    {"Hz", 1, {[D_S] = -1}, true},
    {"N", 1000, {[D_M] = 1, [D_G] = 1, [D_S] = -2}, true},
    {"Pa", 1000, {[D_M] = -1, [D_G] = 1, [D_S] = -2}, true},
    {"bar", 1e8L, {[D_M] = -1, [D_G] = 1, [D_S] = -2}, true},
    {"m[Hg]", 133322387.415L, {[D_M] = -1, [D_G] = 1, [D_S] = -2}, true},
    {"m[H2O]", 9806650, {[D_M] = -1, [D_G] = 1, [D_S] = -2}, true},
    {"J", 1000, {[D_M] = 2, [D_G] = 1, [D_S] = -2}, true},
    {"cal", 4184, {[D_M] = 2, [D_G] = 1, [D_S] = -2}, true},
    {"[Cal]", 4184000, {[D_M] = 2, [D_G] = 1, [D_S] = -2}, false},
    {"W", 1000, {[D_M] = 2, [D_G] = 1, [D_S] = -3}, true},
    {"A", 1, {[D_C] = 1, [D_S] = -1}, true},
    {"V", 1000, {[D_M] = 2, [D_G] = 1, [D_S] = -2, [D_C] = -1}, true},
    {"L", 1e-3L, {[D_M] = 3}, true},
    {"l", 1e-3L, {[D_M] = 3}, true},
    {"ar", 100, {[D_M] = 2}, true},
    {"t", 1e6L, {[D_G] = 1}, true},
    {"min", 60, {[D_S] = 1}, false},
    {"h", 3600, {[D_S] = 1}, false},
    {"d", 86400, {[D_S] = 1}, false},
    {"wk", 604800, {[D_S] = 1}, false},
    {"mo", 2629800, {[D_S] = 1}, false},
    {"a", 31557600, {[D_S] = 1}, false},
    {"deg", 3.14159265358979323846L / 180, {[D_RAD] = 1}, false},
    {"%", 0.01L, {0}, false},
    {"[ppm]", 1e-6L, {0}, false},
    {"[ppb]", 1e-9L, {0}, false},
    {"[in_i]", 0.0254L, {[D_M] = 1}, false},
    {"[ft_i]", 0.3048L, {[D_M] = 1}, false},
    {"[yd_i]", 0.9144L, {[D_M] = 1}, false},
    {"[mi_i]", 1609.344L, {[D_M] = 1}, false},
    {"[lb_av]", 453.59237L, {[D_G] = 1}, false},
    {"[oz_av]", 28.349523125L, {[D_G] = 1}, false},
    {"[stone_av]", 6350.29318L, {[D_G] = 1}, false},
    {"[gr]", 0.06479891L, {[D_G] = 1}, false},
    {"[drp]", 5e-8L, {[D_M] = 3}, false},
    {"[iU]", 1, {[D_ARB] = 1}, true},
    {"[IU]", 1, {[D_ARB] = 1}, true},
    {"[arb'U]", 1, {[D_ARB] = 1}, false},
};

static const struct {
    const char *code;
    long double factor;
} ucum_prefixes[] = {
    {"da", 1e1L}, {"Y", 1e24L},  {"Z", 1e21L},  {"E", 1e18L},  {"P", 1e15L},  {"T", 1e12L},  {"G", 1e9L},
    {"M", 1e6L},  {"k", 1e3L},   {"h", 1e2L},   {"d", 1e-1L},  {"c", 1e-2L},  {"m", 1e-3L},  {"u", 1e-6L},
    {"n", 1e-9L}, {"p", 1e-12L}, {"f", 1e-15L}, {"a", 1e-18L}, {"z", 1e-21L}, {"y", 1e-24L},
};

static const ucum_atom *find_atom(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof ucum_atoms / sizeof *ucum_atoms; i++)
        if (strlen(ucum_atoms[i].code) == len && !memcmp(ucum_atoms[i].code, s, len))
            return &ucum_atoms[i];
    return NULL;
}

static bool lookup_symbol(const char *s, size_t len, fp_unit *u)
{
    memset(u, 0, sizeof *u);
    const ucum_atom *a = find_atom(s, len);
    long double prefix = 1;
    if (!a) {
        for (size_t i = 0; i < sizeof ucum_prefixes / sizeof *ucum_prefixes && !a; i++) {
            size_t pl = strlen(ucum_prefixes[i].code);
            if (pl < len && !memcmp(ucum_prefixes[i].code, s, pl)) {
                const ucum_atom *cand = find_atom(s + pl, len - pl);
                if (cand && cand->metric) {
                    a = cand;
                    prefix = ucum_prefixes[i].factor;
                }
            }
        }
    }
    if (!a)
        return false;
    u->factor = a->factor * prefix;
    memcpy(u->dim, a->dim, sizeof u->dim);
    return true;
}

typedef struct unit_parser {
    const char *s;
    size_t len, i;
    int depth;
} unit_parser;

static void unit_pow(fp_unit *u, int e)
{
    u->factor = powl(u->factor, (long double)e);
    for (int k = 0; k < FP_DIMS; k++)
        u->dim[k] = (int8_t)(u->dim[k] * e);
}

static void unit_mul(fp_unit *u, const fp_unit *v, int sign)
{
    u->factor = sign > 0 ? u->factor * v->factor : u->factor / v->factor;
    for (int k = 0; k < FP_DIMS; k++)
        u->dim[k] = (int8_t)(u->dim[k] + sign * v->dim[k]);
}

static bool parse_int(unit_parser *p, int *out)
{
    size_t i = p->i;
    int sign = 1;
    if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
        sign = p->s[i++] == '-' ? -1 : 1;
    if (i >= p->len || !isdigit((unsigned char)p->s[i]))
        return false;
    int v = 0;
    while (i < p->len && isdigit((unsigned char)p->s[i]) && v < 100000)
        v = v * 10 + (p->s[i++] - '0');
    p->i = i;
    *out = sign * v;
    return true;
}

static void skip_annotation(unit_parser *p)
{
    if (p->i < p->len && p->s[p->i] == '{') {
        while (p->i < p->len && p->s[p->i] != '}')
            p->i++;
        if (p->i < p->len)
            p->i++;
    }
}

static bool parse_term(unit_parser *p, fp_unit *u);

static bool parse_component(unit_parser *p, fp_unit *u)
{
    memset(u, 0, sizeof *u);
    u->factor = 1;
    if (p->i >= p->len)
        return false;
    char c = p->s[p->i];
    if (c == '(') {
        if (++p->depth > 8)
            return false;
        p->i++;
        if (!parse_term(p, u) || p->i >= p->len || p->s[p->i] != ')')
            return false;
        p->i++;
        p->depth--;
    } else if (c == '{') {
        skip_annotation(p);
        return true;
    } else if (isdigit((unsigned char)c)) {
        if (p->i + 2 < p->len && p->s[p->i] == '1' && p->s[p->i + 1] == '0' &&
            (p->s[p->i + 2] == '*' || p->s[p->i + 2] == '^')) {
            p->i += 3;
            int e;
            if (!parse_int(p, &e))
                return false;
            u->factor = fp_pow10(e);
        } else {
            int v;
            if (!parse_int(p, &v))
                return false;
            u->factor = v;
        }
        skip_annotation(p);
        return true;
    } else {
        size_t start = p->i;
        while (p->i < p->len) {
            char ch = p->s[p->i];
            if (ch == '[') {
                while (p->i < p->len && p->s[p->i] != ']')
                    p->i++;
                if (p->i >= p->len)
                    return false;
                p->i++;
                continue;
            }
            if (strchr("./(){}+-", ch) || isdigit((unsigned char)ch))
                break;
            p->i++;
        }
        if (p->i == start || !lookup_symbol(p->s + start, p->i - start, u))
            return false;
    }
    if (p->i < p->len && (isdigit((unsigned char)p->s[p->i]) || p->s[p->i] == '-' || p->s[p->i] == '+')) {
        int e;
        if (!parse_int(p, &e))
            return false;
        unit_pow(u, e);
    }
    skip_annotation(p);
    return true;
}

static bool parse_term(unit_parser *p, fp_unit *u)
{
    memset(u, 0, sizeof *u);
    u->factor = 1;
    int sign = 1;
    if (p->i < p->len && p->s[p->i] == '/') {
        sign = -1;
        p->i++;
    }
    for (;;) {
        fp_unit c;
        if (!parse_component(p, &c))
            return false;
        unit_mul(u, &c, sign);
        if (p->i < p->len && p->s[p->i] == '.')
            sign = 1;
        else if (p->i < p->len && p->s[p->i] == '/')
            sign = -1;
        else
            return true;
        p->i++;
    }
}

const char *fp_calendar_unit(const char *s, size_t len)
{
    static const char *const names[] = {"year", "month", "week", "day", "hour", "minute", "second", "millisecond"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t n = strlen(names[i]);
        if ((len == n || (len == n + 1 && s[n] == 's')) && !memcmp(s, names[i], n))
            return names[i];
    }
    return NULL;
}

bool fp_unit_parse(const char *unit, size_t len, bool calendar, fp_unit *out)
{
    memset(out, 0, sizeof *out);
    out->factor = 1;
    if (calendar) {
        static const struct {
            const char *name;
            long double factor;
            int dim;
        } cal[] = {{"year", 12, D_CAL}, {"month", 1, D_CAL}, {"week", 604800, D_S}, {"day", 86400, D_S},
                   {"hour", 3600, D_S}, {"minute", 60, D_S}, {"second", 1, D_S},    {"millisecond", 1e-3L, D_S}};
        for (size_t i = 0; i < sizeof cal / sizeof *cal; i++)
            if (strlen(cal[i].name) == len && !memcmp(cal[i].name, unit, len)) {
                out->factor = cal[i].factor;
                out->dim[cal[i].dim] = 1;
                return true;
            }
        return false;
    }
    if (len == 0 || (len == 1 && unit[0] == '1'))
        return true;
    unit_parser p = {unit, len, 0, 0};
    return parse_term(&p, out) && p.i == len;
}

const char *fp_unit_text(fp_arena *a, const fp_unit *u, uint32_t *len)
{
    static const char *const names[FP_DIMS] = {"m", "g", "s", "rad", "K", "C", "cd", "[arb'U]", "mo"};
    char buf[128];
    size_t n = 0;
    for (int k = 0; k < FP_DIMS; k++)
        if (u->dim[k] > 0)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? "." : "", names[k]),
                n += u->dim[k] > 1 ? (size_t)snprintf(buf + n, sizeof buf - n, "%d", u->dim[k]) : 0;
    if (n == 0)
        buf[n++] = '1', buf[n] = '\0';
    for (int k = 0; k < FP_DIMS; k++)
        if (u->dim[k] < 0)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "/%s", names[k]),
                n += u->dim[k] < -1 ? (size_t)snprintf(buf + n, sizeof buf - n, "%d", -u->dim[k]) : 0;
    if (n > 1 && buf[0] == '1' && buf[1] == '/') /* "1/s" reads better as "/s" in UCUM */
        memmove(buf, buf + 1, n--);
    *len = (uint32_t)n;
    return fpa_strndup(a, buf, n);
}

bool fp_parse_quantity(fp_arena *a, const char *s, size_t len, fp_item *out)
{
    size_t i = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && (isdigit((unsigned char)s[i]) || s[i] == '.'))
        i++;
    long double v;
    int scale;
    bool integral;
    int64_t iv;
    if (!fp_parse_number(s, i, &v, &scale, &integral, &iv))
        return false;
    memset(out, 0, sizeof *out);
    out->kind = FP_QUANTITY;
    out->scale = (int16_t)scale;
    out->u.quantity.value = v;
    size_t j = i;
    while (j < len && s[j] == ' ')
        j++;
    if (j == len) {
        if (j != i && j == len)
            return false; /* trailing blanks with no unit */
        out->u.quantity.unit = "1";
        out->len = 1;
        return true;
    }
    if (j == i)
        return false;
    if (s[j] == '\'') {
        char *u = fpa_alloc(a, len - j);
        if (!u)
            return false;
        size_t n = 0;
        for (j++; j < len && s[j] != '\''; j++) {
            if (s[j] == '\\' && j + 1 < len)
                j++;
            u[n++] = s[j];
        }
        if (j != len - 1)
            return false;
        u[n] = '\0';
        out->u.quantity.unit = u;
        out->len = (uint32_t)n;
        return true;
    }
    const char *cal = fp_calendar_unit(s + j, len - j);
    if (!cal)
        return false;
    out->u.quantity.unit = cal;
    out->len = (uint32_t)strlen(cal);
    out->calendar = 1;
    return true;
}

/* ---- nodes to System values ---------------------------------------------- */

static bool is_quantity_type(const fs_schema *s, const fs_type *t)
{
    for (; t; t = t->base == FS_NONE ? NULL : &s->types[t->base])
        if (!strcmp(t->name, "Quantity"))
            return true;
    return false;
}

static bool node_quantity(const fj_doc *d, uint32_t obj, fp_item *out)
{
    uint32_t v = fj_get(d, obj, "value");
    if (v == UINT32_MAX || d->nodes[v].type != FJ_NUMBER)
        return false;
    int scale;
    memset(out, 0, sizeof *out);
    out->kind = FP_QUANTITY;
    json_decimal(fj_str(d, v), d->nodes[v].len, &out->u.quantity.value, &scale);
    out->scale = (int16_t)scale;
    uint32_t sys = fj_get(d, obj, "system"), code = fj_get(d, obj, "code"), unit = fj_get(d, obj, "unit");
    uint32_t u = UINT32_MAX;
    if (code != UINT32_MAX && sys != UINT32_MAX && fj_str_eq(d, sys, "http://unitsofmeasure.org"))
        u = code;
    else if (unit != UINT32_MAX)
        u = unit;
    else if (code != UINT32_MAX)
        u = code;
    if (u != UINT32_MAX && d->nodes[u].type == FJ_STRING) {
        out->u.quantity.unit = fj_str(d, u);
        out->len = d->nodes[u].len;
    } else {
        out->u.quantity.unit = "1";
        out->len = 1;
    }
    return true;
}

static bool string_temporal(const char *s, size_t len, fp_kind kind, fp_item *out)
{
    fp_datetime dt;
    bool saw_t;
    size_t n = fp_scan_temporal(s, len, kind == FP_TIME, &dt, &saw_t);
    if (n != len || n == 0)
        return false;
    if (kind == FP_DATE && saw_t)
        return false;
    memset(out, 0, sizeof *out);
    out->kind = (uint8_t)(kind == FP_DATE ? FP_DATE : kind);
    out->u.dt = dt;
    return true;
}

bool fp_system_value(const fs_schema *schema, const fp_item *in, fp_item *out)
{
    return fp_to_system(schema ? schema : fs_r4(), in, out);
}

bool fp_to_system(const fs_schema *s, const fp_item *in, fp_item *out)
{
    if (in->kind != FP_NODE) {
        *out = *in;
        return true;
    }
    const fj_doc *d = in->u.node.doc;
    uint32_t i = in->u.node.index;
    if (i == FP_NO_NODE)
        return false;
    const fj_node *n = &d->nodes[i];
    const fs_type *t = in->u.node.type;
    fprim_kind pk = t ? t->prim : FPRIM_NONE;
    switch (n->type) {
    case FJ_TRUE:
    case FJ_FALSE: *out = fp_boolean(n->type == FJ_TRUE); return true;
    case FJ_NUMBER: {
        bool int_type = pk == FPRIM_INTEGER || pk == FPRIM_UNSIGNEDINT || pk == FPRIM_POSITIVEINT ||
                        (pk == FPRIM_NONE && (n->flags & FJ_FLAG_NUMBER_INTEGRAL));
        if (int_type && (n->flags & FJ_FLAG_NUMBER_INTEGRAL) && n->len < 19) {
            char tmp[24];
            memcpy(tmp, fj_str(d, i), n->len);
            tmp[n->len] = '\0';
            *out = fp_integer(strtoll(tmp, NULL, 10));
            return true;
        }
        int scale;
        memset(out, 0, sizeof *out);
        out->kind = FP_DECIMAL;
        json_decimal(fj_str(d, i), n->len, &out->u.decimal, &scale);
        out->scale = (int16_t)scale;
        return true;
    }
    case FJ_STRING: {
        const char *str = fj_str(d, i);
        if (pk == FPRIM_DATE && string_temporal(str, n->len, FP_DATE, out))
            return true;
        if ((pk == FPRIM_DATETIME || pk == FPRIM_INSTANT) &&
            (string_temporal(str, n->len, FP_DATETIME, out) || string_temporal(str, n->len, FP_DATE, out))) {
            out->kind = FP_DATETIME;
            return true;
        }
        if (pk == FPRIM_TIME && string_temporal(str, n->len, FP_TIME, out))
            return true;
        *out = fp_string(str, n->len);
        return true;
    }
    case FJ_OBJECT: return t && is_quantity_type(s, t) && node_quantity(d, i, out);
    default: return false;
    }
}

/* ---- equality, equivalence, ordering ------------------------------------- */

static bool is_number(const fp_item *it)
{
    return it->kind == FP_INTEGER || it->kind == FP_DECIMAL;
}

static long double number_value(const fp_item *it, int *scale)
{
    if (it->kind == FP_INTEGER) {
        *scale = 0;
        return (long double)it->u.integer;
    }
    *scale = it->scale;
    return it->u.decimal;
}

static bool is_temporal(const fp_item *it)
{
    return it->kind == FP_DATE || it->kind == FP_DATETIME || it->kind == FP_TIME;
}

/* Shift a dateTime to UTC (only meaningful from hour precision on). */
static void to_utc(fp_datetime *dt, int default_tz)
{
    int tz = dt->has_tz ? dt->tz_minutes : default_tz;
    if (tz == 0)
        return;
    fp_datetime t = *dt;
    fdt_from_epoch_ms(fdt_civil_ms(dt) - (int64_t)tz * 60000, &t);
    t.precision = dt->precision;
    t.has_tz = true;
    t.tz_minutes = 0;
    *dt = t;
}

/* Seconds and milliseconds count as one precision when comparing. */
static int level_of(int precision)
{
    return precision == FP_PREC_MS ? FP_PREC_SECOND : precision;
}

static fp_cmp compare_temporal(const fp_item *a, const fp_item *b, int *sign, int default_tz)
{
    if ((a->kind == FP_TIME) != (b->kind == FP_TIME))
        return FP_CMP_TYPE;
    fp_datetime x = a->u.dt, y = b->u.dt;
    if (a->kind != FP_TIME && x.precision >= FP_PREC_HOUR && y.precision >= FP_PREC_HOUR && (x.has_tz || y.has_tz)) {
        to_utc(&x, default_tz);
        to_utc(&y, default_tz);
    }
    int first = a->kind == FP_TIME ? FP_PREC_HOUR : FP_PREC_YEAR;
    int lx = level_of(x.precision), ly = level_of(y.precision);
    for (int p = first; p <= FP_PREC_SECOND; p++) {
        if (p > lx || p > ly) {
            *sign = 0;
            return lx == ly ? FP_CMP_OK : FP_CMP_EMPTY;
        }
        int64_t u, v;
        switch (p) {
        case FP_PREC_YEAR: u = x.year, v = y.year; break;
        case FP_PREC_MONTH: u = x.month, v = y.month; break;
        case FP_PREC_DAY: u = x.day, v = y.day; break;
        case FP_PREC_HOUR: u = x.hour, v = y.hour; break;
        case FP_PREC_MINUTE: u = x.minute, v = y.minute; break;
        default: u = x.second * 1000 + x.ms, v = y.second * 1000 + y.ms; break;
        }
        if (u != v) {
            *sign = u < v ? -1 : 1;
            return FP_CMP_OK;
        }
    }
    *sign = 0;
    return FP_CMP_OK;
}

bool fp_quantity_convert(const fp_item *a, const fp_item *b, long double *bv)
{
    if (a->calendar == b->calendar && a->len == b->len && !memcmp(a->u.quantity.unit, b->u.quantity.unit, a->len)) {
        *bv = b->u.quantity.value;
        return true;
    }
    fp_unit ua, ub;
    if (!fp_unit_parse(a->u.quantity.unit, a->len, a->calendar, &ua) ||
        !fp_unit_parse(b->u.quantity.unit, b->len, b->calendar, &ub) || memcmp(ua.dim, ub.dim, sizeof ua.dim))
        return false;
    *bv = b->u.quantity.value * ub.factor / ua.factor;
    return true;
}

static int decimal_equal(long double x, int sx, long double y, int sy, bool equivalent)
{
    int scale = equivalent ? (sx < sy ? sx : sy) : (sx > sy ? sx : sy);
    if (scale > 18)
        scale = 18;
    return fp_round_to(x, scale) == fp_round_to(y, scale);
}

/* Deep equality of two JSON subtrees (objects: same members, any order). */
static bool json_equal(const fj_doc *da, uint32_t a, const fj_doc *db, uint32_t b)
{
    const fj_node *x = &da->nodes[a], *y = &db->nodes[b];
    if (x->type != y->type || x->len != y->len) {
        if (x->type == FJ_NUMBER && y->type == FJ_NUMBER) {
            long double u, v;
            int s1, s2;
            json_decimal(fj_str(da, a), x->len, &u, &s1);
            json_decimal(fj_str(db, b), y->len, &v, &s2);
            return u == v;
        }
        return false;
    }
    switch (x->type) {
    case FJ_STRING:
    case FJ_NUMBER: return !memcmp(fj_str(da, a), fj_str(db, b), x->len);
    case FJ_ARRAY: {
        uint32_t i = a + 1, j = b + 1;
        for (uint32_t k = 0; k < x->len; k++, i = fj_next(da, i), j = fj_next(db, j))
            if (!json_equal(da, i, db, j))
                return false;
        return true;
    }
    case FJ_OBJECT: {
        uint32_t i = a + 1;
        for (uint32_t k = 0; k < x->len; k++) {
            uint32_t val = i + 1, j = b + 1;
            bool found = false;
            for (uint32_t m = 0; m < y->len && !found; m++) {
                if (db->nodes[j].len == da->nodes[i].len && !memcmp(fj_str(db, j), fj_str(da, i), da->nodes[i].len))
                    found = json_equal(da, val, db, j + 1);
                j = fj_next(db, j + 1);
            }
            if (!found)
                return false;
            i = fj_next(da, val);
        }
        return true;
    }
    default: return true;
    }
}

static void datetime_of(const fp_item *it, fp_item *out)
{
    *out = *it;
    if (it->kind == FP_DATE)
        out->kind = FP_DATETIME;
}

/* Equality of two System values (see fp_equal_items). */
static int system_equal(const fp_item *a, const fp_item *b, bool equivalent, int default_tz)
{
    if (is_number(a) && is_number(b)) {
        if (a->kind == FP_INTEGER && b->kind == FP_INTEGER)
            return a->u.integer == b->u.integer;
        int sa, sb;
        long double x = number_value(a, &sa), y = number_value(b, &sb);
        return decimal_equal(x, sa, y, sb, equivalent);
    }
    if (is_temporal(a) && is_temporal(b)) {
        if ((a->kind == FP_TIME) != (b->kind == FP_TIME))
            return 0;
        fp_item x, y;
        datetime_of(a, &x);
        datetime_of(b, &y);
        if (a->kind == FP_TIME)
            x.kind = y.kind = FP_TIME;
        int sign;
        fp_cmp r = compare_temporal(&x, &y, &sign, default_tz);
        if (r == FP_CMP_EMPTY)
            return equivalent ? 0 : -1;
        if (equivalent && level_of(a->u.dt.precision) != level_of(b->u.dt.precision))
            return 0;
        return r == FP_CMP_OK && sign == 0;
    }
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case FP_BOOLEAN: return a->u.boolean == b->u.boolean;
    case FP_STRING:
        if (!equivalent)
            return a->len == b->len && !memcmp(a->u.string, b->u.string, a->len);
        else {
            /* Case-insensitive, with runs of white space read as one blank, trimmed. */
            size_t i = 0, j = 0;
            const char *x = a->u.string, *y = b->u.string;
            for (;;) {
                while (i < a->len && isspace((unsigned char)x[i]) &&
                       (i == 0 || i + 1 == a->len || isspace((unsigned char)x[i + 1])))
                    i++;
                while (j < b->len && isspace((unsigned char)y[j]) &&
                       (j == 0 || j + 1 == b->len || isspace((unsigned char)y[j + 1])))
                    j++;
                if (i == a->len || j == b->len)
                    return i == a->len && j == b->len;
                char cx = isspace((unsigned char)x[i]) ? ' ' : (char)tolower((unsigned char)x[i]);
                char cy = isspace((unsigned char)y[j]) ? ' ' : (char)tolower((unsigned char)y[j]);
                if (cx != cy)
                    return 0;
                i++;
                j++;
            }
        }
    case FP_QUANTITY: {
        long double bv;
        if (!fp_quantity_convert(a, b, &bv))
            return equivalent ? 0 : -1;
        if (!equivalent && (a->len != b->len || memcmp(a->u.quantity.unit, b->u.quantity.unit, a->len))) {
            /* Converted values carry the conversion's rounding: compare relatively. */
            long double x = a->u.quantity.value, m = fabsl(x) > fabsl(bv) ? fabsl(x) : fabsl(bv);
            return fabsl(x - bv) <= m * 1e-12L;
        }
        return decimal_equal(a->u.quantity.value, a->scale, bv, b->scale, equivalent);
    }
    case FP_TYPEINFO:
        return !strcmp(a->u.typeinfo.ns, b->u.typeinfo.ns) && !strcmp(a->u.typeinfo.name, b->u.typeinfo.name);
    default: return 0;
    }
}

static int item_equal(const fs_schema *s, const fp_item *a, const fp_item *b, bool equivalent)
{
    if (a->kind == FP_NODE && b->kind == FP_NODE && a->u.node.doc == b->u.node.doc &&
        a->u.node.index == b->u.node.index && a->u.node.ext == b->u.node.ext)
        return 1;
    fp_item x, y;
    bool sx = fp_to_system(s, a, &x), sy = fp_to_system(s, b, &y);
    if (sx && sy)
        return system_equal(&x, &y, equivalent, 0);
    if (sx || sy)
        return 0;
    if (a->kind == FP_NODE && b->kind == FP_NODE && a->u.node.index != FP_NO_NODE && b->u.node.index != FP_NO_NODE)
        return json_equal(a->u.node.doc, a->u.node.index, b->u.node.doc, b->u.node.index);
    return 0;
}

int fp_equal_items(const fs_schema *s, const fp_item *a, const fp_item *b)
{
    return item_equal(s, a, b, false);
}

bool fp_equivalent_items(const fs_schema *s, const fp_item *a, const fp_item *b)
{
    return item_equal(s, a, b, true) == 1;
}

fp_cmp fp_compare_items(const fs_schema *s, const fp_item *a0, const fp_item *b0, int *sign, long double now_tz)
{
    fp_item a, b;
    if (!fp_to_system(s, a0, &a) || !fp_to_system(s, b0, &b))
        return FP_CMP_TYPE;
    if (is_number(&a) && is_number(&b)) {
        int sa, sb;
        long double x = number_value(&a, &sa), y = number_value(&b, &sb);
        int scale = sa > sb ? sa : sb;
        x = fp_round_to(x, scale > 18 ? 18 : scale);
        y = fp_round_to(y, scale > 18 ? 18 : scale);
        *sign = x < y ? -1 : x > y;
        return FP_CMP_OK;
    }
    if (is_temporal(&a) && is_temporal(&b)) {
        fp_item x, y;
        datetime_of(&a, &x);
        datetime_of(&b, &y);
        if (a.kind == FP_TIME || b.kind == FP_TIME) {
            if (a.kind != b.kind)
                return FP_CMP_TYPE;
            x.kind = y.kind = FP_TIME;
        }
        return compare_temporal(&x, &y, sign, (int)now_tz);
    }
    if (a.kind == FP_STRING && b.kind == FP_STRING) {
        size_t n = a.len < b.len ? a.len : b.len;
        int c = memcmp(a.u.string, b.u.string, n);
        *sign = c ? (c < 0 ? -1 : 1) : a.len < b.len ? -1 : a.len > b.len;
        return FP_CMP_OK;
    }
    if (a.kind == FP_QUANTITY && b.kind == FP_QUANTITY) {
        long double bv;
        if (!fp_quantity_convert(&a, &b, &bv))
            return FP_CMP_EMPTY;
        long double av = a.u.quantity.value;
        *sign = av < bv ? -1 : av > bv;
        return FP_CMP_OK;
    }
    return FP_CMP_TYPE;
}

/* ---- output -------------------------------------------------------------- */

static size_t decimal_text(long double v, int scale, char *buf, size_t cap)
{
    if (scale < 0)
        scale = 0;
    if (scale > 18)
        scale = 18;
    char tmp[96];
    int n = snprintf(tmp, sizeof tmp, "%.*Lf", scale, v);
    if (n < 0 || (size_t)n >= sizeof tmp) /* astronomically large: exponent form */
        n = snprintf(tmp, sizeof tmp, "%.18Lg", v);
    if (tmp[0] == '-') { /* no "-0.00" */
        bool zero = true;
        for (int i = 1; i < n; i++)
            if (tmp[i] != '0' && tmp[i] != '.')
                zero = false;
        if (zero)
            memmove(tmp, tmp + 1, (size_t)n--);
    }
    if (cap)
        snprintf(buf, cap, "%s", tmp);
    return (size_t)n;
}

size_t fp_system_text(const fp_item *it, char *buf, size_t cap)
{
    switch (it->kind) {
    case FP_BOOLEAN: return (size_t)snprintf(buf, cap, "%s", it->u.boolean ? "true" : "false");
    case FP_INTEGER: return (size_t)snprintf(buf, cap, "%lld", (long long)it->u.integer);
    case FP_DECIMAL: return decimal_text(it->u.decimal, it->scale, buf, cap);
    case FP_STRING:
        if (cap) {
            size_t n = it->len < cap - 1 ? it->len : cap - 1;
            memcpy(buf, it->u.string, n);
            buf[n] = '\0';
        }
        return it->len;
    case FP_DATE:
    case FP_DATETIME:
    case FP_TIME: return fp_format_temporal((fp_kind)it->kind, &it->u.dt, buf, cap);
    case FP_QUANTITY: {
        char num[96];
        decimal_text(it->u.quantity.value, it->scale, num, sizeof num);
        if (it->calendar)
            return (size_t)snprintf(buf, cap, "%s %.*s", num, (int)it->len, it->u.quantity.unit);
        return (size_t)snprintf(buf, cap, "%s '%.*s'", num, (int)it->len, it->u.quantity.unit);
    }
    case FP_TYPEINFO: return (size_t)snprintf(buf, cap, "%s.%s", it->u.typeinfo.ns, it->u.typeinfo.name);
    default:
        if (cap)
            buf[0] = '\0';
        return 0;
    }
}

/* A growing malloc'd string for JSON output. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    /* a JSON result is rarely tiny: start at 256 bytes rather than fa_reserve's first 8 */
    size_t need = b->len + n + 1;
    if (!fa_reserve(&b->p, &b->cap, need < 256 ? 256 : need, 1)) {
        b->oom = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_json_string(sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); sb_add(b, esc, 6);
        }
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

static void sb_json_node(sbuf *b, const fj_doc *d, uint32_t i)
{
    const fj_node *n = &d->nodes[i];
    switch (n->type) {
    case FJ_NULL: sb_add(b, "null", 4); break;
    case FJ_TRUE: sb_add(b, "true", 4); break;
    case FJ_FALSE: sb_add(b, "false", 5); break;
    case FJ_NUMBER: sb_add(b, fj_str(d, i), n->len); break;
    case FJ_STRING: sb_json_string(b, fj_str(d, i), n->len); break;
    case FJ_ARRAY:
    case FJ_OBJECT: {
        bool obj = n->type == FJ_OBJECT;
        sb_add(b, obj ? "{" : "[", 1);
        uint32_t c = i + 1;
        for (uint32_t k = 0; k < n->len; k++) {
            if (k)
                sb_add(b, ",", 1);
            if (obj) {
                sb_json_string(b, fj_str(d, c), d->nodes[c].len);
                sb_add(b, ":", 1);
                c++;
            }
            sb_json_node(b, d, c);
            c = fj_next(d, c);
        }
        sb_add(b, obj ? "}" : "]", 1);
        break;
    }
    }
}

static void sb_item(sbuf *b, const fp_item *it)
{
    char tmp[160];
    switch (it->kind) {
    case FP_NODE:
        if (it->u.node.index == FP_NO_NODE)
            sb_add(b, "null", 4);
        else
            sb_json_node(b, it->u.node.doc, it->u.node.index);
        return;
    case FP_BOOLEAN:
    case FP_INTEGER:
    case FP_DECIMAL: sb_add(b, tmp, fp_system_text(it, tmp, sizeof tmp)); return;
    case FP_STRING: sb_json_string(b, it->u.string, it->len); return;
    case FP_TYPEINFO: {
        size_t n = (size_t)snprintf(tmp, sizeof tmp, "{\"namespace\":\"%s\",\"name\":\"%s\"}", it->u.typeinfo.ns,
                                    it->u.typeinfo.name);
        sb_add(b, tmp, n);
        return;
    }
    default: {
        size_t n = fp_system_text(it, tmp, sizeof tmp);
        sb_json_string(b, tmp, n < sizeof tmp ? n : sizeof tmp - 1);
    }
    }
}

char *fp_collection_json(const fp_collection *c)
{
    sbuf b = {0};
    sb_add(&b, "[", 1);
    for (size_t i = 0; i < c->count; i++) {
        if (i)
            sb_add(&b, ",", 1);
        sb_item(&b, &c->items[i]);
    }
    sb_add(&b, "]", 1);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

size_t fp_item_text(const fp_item *it, char *buf, size_t cap)
{
    if (it->kind != FP_NODE)
        return fp_system_text(it, buf, cap);
    const fj_doc *d = it->u.node.doc;
    uint32_t i = it->u.node.index;
    if (i != FP_NO_NODE && (d->nodes[i].type == FJ_STRING || d->nodes[i].type == FJ_NUMBER)) {
        size_t n = d->nodes[i].len;
        if (cap) {
            size_t m = n < cap - 1 ? n : cap - 1;
            memcpy(buf, fj_str(d, i), m);
            buf[m] = '\0';
        }
        return n;
    }
    sbuf b = {0};
    sb_item(&b, it);
    size_t n = b.len;
    if (cap)
        snprintf(buf, cap, "%s", b.p ? b.p : "");
    free(b.p);
    return n;
}
