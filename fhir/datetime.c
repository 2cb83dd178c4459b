/*
 * fhir/datetime.c — FHIR dates, times and instants (see datetime.h).
 *
 * The lexical scanners follow the regular expressions of the R4
 * StructureDefinitions (date, dateTime, instant, time) token by token, plus
 * the prose rules a regex cannot say (no day 31 in April, no February 29
 * outside leap years, a time needs a timezone). Range problems get precise
 * messages; a value whose shape is simply wrong gets the message of the form
 * being read, via the BAD_FORM sentinel (a date and a dateTime share the
 * date scanner but expect different forms).
 *
 * Calendar arithmetic is proleptic Gregorian (as XML Schema and FHIR use)
 * on 400-year eras, exact for every year this project can meet.
 */
#include "fhir/datetime.h"

#include <stdio.h>
#include <string.h>

#define MS_PER_DAY 86400000LL

/* ---- a cursor over the text ----------------------------------------------- */

typedef struct cursor {
    const char *s;
    size_t n;
    size_t i;
} cursor;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

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

/* Exactly `count` digits into *out; false (cursor unchanged) otherwise. */
static bool read_fixed_digits(cursor *c, int count, int *out)
{
    if (c->n - c->i < (size_t)count)
        return false;
    int v = 0;
    for (int k = 0; k < count; k++) {
        char ch = c->s[c->i + (size_t)k];
        if (!is_digit(ch))
            return false;
        v = v * 10 + (ch - '0');
    }
    c->i += (size_t)count;
    *out = v;
    return true;
}

/* ---- the calendar --------------------------------------------------------- */

bool fdt_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int fdt_days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 31; /* no such month: never asked by the scanners, safe for any caller */
    return m == 2 && fdt_is_leap(y) ? 29 : days[m - 1];
}

/* Era arithmetic: 400 Gregorian years are exactly 146097 days, so a date is
 * its era and its day within the era, counted from March (leap day last). */
int64_t fdt_days_from_civil(int year, int month, int day)
{
    int64_t y = (int64_t)year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void fdt_civil_from_days(int64_t days, int *year, int *month, int *day)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

int64_t fdt_civil_ms(const fdt_value *v)
{
    /* a time of day has no month or day: it counts from 1970-01-01 */
    int64_t days = v->month ? fdt_days_from_civil(v->year, v->month, v->day ? v->day : 1) : 0;
    return ((days * 24 + v->hour) * 60 + v->minute) * 60000LL + v->second * 1000LL + v->ms;
}

int64_t fdt_to_epoch_ms(const fdt_value *v)
{
    return fdt_civil_ms(v) - (v->has_tz ? (int64_t)v->tz_minutes * 60000 : 0);
}

/* Floor division, so that instants before 1970 land on the right day. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void fdt_from_epoch_ms(int64_t epoch_ms, fdt_value *out)
{
    int64_t days = floor_div(epoch_ms, MS_PER_DAY);
    int64_t rest = epoch_ms - days * MS_PER_DAY;
    int y, m, d;
    fdt_civil_from_days(days, &y, &m, &d);
    memset(out, 0, sizeof *out);
    out->year = (int16_t)y;
    out->month = (uint8_t)m;
    out->day = (uint8_t)d;
    out->hour = (uint8_t)(rest / 3600000);
    out->minute = (uint8_t)(rest / 60000 % 60);
    out->second = (uint8_t)(rest / 1000 % 60);
    out->ms = (uint16_t)(rest % 1000);
    out->precision = FDT_MS;
    out->has_tz = true;
}

void fdt_range(const fdt_value *v, int64_t *lo_ms, int64_t *hi_ms)
{
    int64_t span;
    switch (v->precision) {
    case FDT_YEAR: span = (fdt_is_leap(v->year) ? 366 : 365) * MS_PER_DAY; break;
    case FDT_MONTH: span = fdt_days_in_month(v->year, v->month) * MS_PER_DAY; break;
    case FDT_DAY: span = MS_PER_DAY; break;
    case FDT_HOUR: span = 3600000; break;
    case FDT_MINUTE: span = 60000; break;
    case FDT_SECOND: span = 1000; break;
    default: span = 1; break;
    }
    *lo_ms = fdt_to_epoch_ms(v);
    *hi_ms = *lo_ms + span - 1;
}

/* ---- lexical forms -------------------------------------------------------- */

/* Returned by the shared scanners when the shape is wrong; the caller turns
 * it into the message of the form it reads. */
static const char BAD_FORM[] = "bad form";

#define DATE_FORM "not a valid date: expected YYYY, YYYY-MM or YYYY-MM-DD"
#define DATETIME_FORM "not a valid dateTime: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz"
#define INSTANT_FORM "not a valid instant: expected YYYY-MM-DDThh:mm:ss(.sss)Z or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz"
#define TIME_FORM "not a valid time: expected hh:mm:ss or hh:mm:ss.sss, without timezone"
#define SEARCH_FORM "not a valid date: expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm(:ss)(+zz:zz)"

static const char *form_or(const char *msg, const char *form)
{
    return msg == BAD_FORM ? form : msg;
}

/* YYYY(-MM(-DD)?)?. The regex excludes year 0000 and bounds day to 01..31;
 * we also reject days past the end of the month (the regex cannot, but such
 * a date does not exist). Stops before anything after the date. */
static const char *scan_date(cursor *c, fdt_value *v)
{
    int y, m, d;
    if (!read_fixed_digits(c, 4, &y))
        return BAD_FORM;
    if (y == 0)
        return "year must be 0001 to 9999";
    v->year = (int16_t)y;
    v->month = v->day = 1;
    v->precision = FDT_YEAR;
    if (!eat(c, '-'))
        return NULL;
    if (!read_fixed_digits(c, 2, &m))
        return BAD_FORM;
    if (m < 1 || m > 12)
        return "month must be 01 to 12";
    v->month = (uint8_t)m;
    v->precision = FDT_MONTH;
    if (!eat(c, '-'))
        return NULL;
    if (!read_fixed_digits(c, 2, &d))
        return BAD_FORM;
    if (d < 1 || d > 31)
        return "day must be 01 to 31";
    if (d > fdt_days_in_month(y, m))
        return m == 2 && d == 29 ? "February 29 exists only in leap years" : "day does not exist in that month";
    v->day = (uint8_t)d;
    v->precision = FDT_DAY;
    return NULL;
}

/* ".digits": the first three digits are the milliseconds, the rest is precision we do not keep. */
static const char *scan_fraction(cursor *c, fdt_value *v)
{
    if (!eat(c, '.'))
        return NULL;
    int ms = 0, digits = 0;
    for (; !at_end(c) && is_digit(c->s[c->i]); c->i++, digits++)
        if (digits < 3)
            ms = ms * 10 + (c->s[c->i] - '0');
    if (digits == 0)
        return "a fraction of a second needs at least one digit after the '.'";
    for (; digits < 3; digits++)
        ms *= 10;
    v->ms = (uint16_t)ms;
    v->precision = FDT_MS;
    return NULL;
}

/* ([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?; with seconds_optional the
 * ":ss" part may be left out (search). Second 60 is a leap second; the regex allows
 * it at any hh:mm and so do we (whether one occurred is not a lexical question). */
static const char *scan_time(cursor *c, fdt_value *v, bool seconds_optional)
{
    int h, m, sec;
    if (!read_fixed_digits(c, 2, &h))
        return BAD_FORM;
    if (h > 23)
        return "hour must be 00 to 23";
    if (!eat(c, ':') || !read_fixed_digits(c, 2, &m))
        return BAD_FORM;
    if (m > 59)
        return "minute must be 00 to 59";
    v->hour = (uint8_t)h;
    v->minute = (uint8_t)m;
    v->precision = FDT_MINUTE;
    if (seconds_optional && peek(c) != ':')
        return NULL;
    if (!eat(c, ':') || !read_fixed_digits(c, 2, &sec))
        return BAD_FORM;
    if (sec > 60)
        return "second must be 00 to 60";
    v->second = (uint8_t)sec;
    v->precision = FDT_SECOND;
    return scan_fraction(c, v);
}

/* Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00) */
static const char *scan_zone(cursor *c, fdt_value *v)
{
    v->has_tz = true;
    v->tz_minutes = 0;
    if (eat(c, 'Z'))
        return NULL;
    char sign = peek(c);
    if (!eat(c, '+') && !eat(c, '-'))
        return BAD_FORM;
    int h, m;
    if (!read_fixed_digits(c, 2, &h) || !eat(c, ':') || !read_fixed_digits(c, 2, &m))
        return BAD_FORM;
    if (m > 59)
        return "timezone minutes must be 00 to 59";
    if (h > 14 || (h == 14 && m != 0))
        return "timezone offset must be between -14:00 and +14:00";
    v->tz_minutes = (int16_t)((sign == '-' ? -1 : 1) * (h * 60 + m));
    return NULL;
}

/* After a full date, "T" + time + zone; the zone is required (R4: "if hours
 * and minutes are specified, a time zone SHALL be populated"). */
static const char *scan_time_and_zone(cursor *c, fdt_value *v)
{
    const char *msg = scan_time(c, v, false);
    if (msg)
        return msg;
    if (at_end(c))
        return "a time must have a timezone: Z, +hh:mm or -hh:mm";
    return scan_zone(c, v);
}

static const char *parse_date(cursor *c, fdt_value *v)
{
    const char *msg = scan_date(c, v);
    if (!msg && !at_end(c))
        msg = peek(c) == 'T' ? "a date must not have a time: use dateTime" : BAD_FORM;
    return form_or(msg, DATE_FORM);
}

static const char *parse_datetime(cursor *c, fdt_value *v)
{
    const char *msg = scan_date(c, v);
    if (!msg && !at_end(c)) {
        if (!eat(c, 'T'))
            msg = BAD_FORM;
        else if (v->precision < FDT_DAY)
            msg = "a time needs a full date: YYYY-MM-DDThh:mm:ss+zz:zz";
        else
            msg = scan_time_and_zone(c, v);
        if (!msg && !at_end(c))
            msg = BAD_FORM;
    }
    return form_or(msg, DATETIME_FORM);
}

static const char *parse_instant(cursor *c, fdt_value *v)
{
    const char *msg = scan_date(c, v);
    if (!msg && (v->precision < FDT_DAY || at_end(c)))
        msg = "an instant needs date, time and timezone: YYYY-MM-DDThh:mm:ss(.sss)+zz:zz";
    else if (!msg && !eat(c, 'T'))
        msg = BAD_FORM;
    if (!msg)
        msg = scan_time_and_zone(c, v);
    if (!msg && !at_end(c))
        msg = BAD_FORM;
    return form_or(msg, INSTANT_FORM);
}

static const char *parse_time(cursor *c, fdt_value *v)
{
    const char *msg = scan_time(c, v, false);
    if (!msg && !at_end(c)) {
        char ch = peek(c);
        msg = (ch == 'Z' || ch == '+' || ch == '-') ? "a time must not have a timezone" : BAD_FORM;
    }
    return form_or(msg, TIME_FORM);
}

/* The search form: a dateTime whose seconds and timezone may be missing. */
static const char *parse_search(cursor *c, fdt_value *v)
{
    const char *msg = scan_date(c, v);
    if (!msg && !at_end(c)) {
        if (!eat(c, 'T'))
            msg = BAD_FORM;
        else if (v->precision < FDT_DAY)
            msg = "a time needs a full date: YYYY-MM-DDThh:mm";
        else if (!(msg = scan_time(c, v, true)) && !at_end(c))
            msg = scan_zone(c, v);
        if (!msg && !at_end(c))
            msg = BAD_FORM;
    }
    return form_or(msg, SEARCH_FORM);
}

const char *fdt_parse(fdt_form form, const char *s, size_t len, fdt_value *out)
{
    memset(out, 0, sizeof *out);
    cursor c = {s, s ? len : 0, 0};
    switch (form) {
    case FDT_FORM_DATE: return parse_date(&c, out);
    case FDT_FORM_DATETIME: return parse_datetime(&c, out);
    case FDT_FORM_INSTANT: return parse_instant(&c, out);
    case FDT_FORM_TIME: return parse_time(&c, out);
    case FDT_FORM_SEARCH: return parse_search(&c, out);
    }
    return "unknown date/time form";
}

/* ---- instants and HTTP dates ---------------------------------------------- */

static const char k_weekdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char k_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* The UTC fields of an instant kept within years 0000..9999 (what four digits can say). */
static void utc_fields(int64_t epoch_ms, fdt_value *v)
{
    static const int64_t first = -62167219200000LL; /* 0000-01-01T00:00:00.000Z */
    static const int64_t last = 253402300799999LL;  /* 9999-12-31T23:59:59.999Z */
    fdt_from_epoch_ms(epoch_ms < first ? first : epoch_ms > last ? last : epoch_ms, v);
}

/* n as `width` decimal digits at out (n fits). */
static void put_digits(char *out, int n, int width)
{
    for (int i = width - 1; i >= 0; i--, n /= 10)
        out[i] = (char)('0' + n % 10);
}

void fdt_format_instant(int64_t epoch_ms, char out[FDT_INSTANT_LEN])
{
    fdt_value v;
    utc_fields(epoch_ms, &v);
    if (v.year >= 0 && v.year <= 9999) { /* digits by hand: every stored version and notification formats one */
        memcpy(out, "0000-00-00T00:00:00.000Z", FDT_INSTANT_LEN);
        put_digits(out, v.year, 4), put_digits(out + 5, v.month, 2), put_digits(out + 8, v.day, 2);
        put_digits(out + 11, v.hour, 2), put_digits(out + 14, v.minute, 2), put_digits(out + 17, v.second, 2);
        put_digits(out + 20, v.ms, 3);
        return;
    }
    /* a roomy buffer: the fields are in range, but the compiler cannot know the widths */
    char text[64];
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", v.year, v.month, v.day, v.hour, v.minute,
             v.second, v.ms);
    memcpy(out, text, FDT_INSTANT_LEN - 1);
    out[FDT_INSTANT_LEN - 1] = '\0';
}

void fdt_format_http_date(int64_t epoch_ms, char out[FDT_HTTP_DATE_LEN])
{
    fdt_value v;
    utc_fields(epoch_ms, &v);
    /* 1970-01-01 was a Thursday */
    int64_t wday = (fdt_days_from_civil(v.year, v.month, v.day) % 7 + 7 + 4) % 7;
    char text[64];
    snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", k_weekdays[wday], v.day, k_months[v.month - 1],
             v.year, v.hour, v.minute, v.second);
    memcpy(out, text, FDT_HTTP_DATE_LEN - 1);
    out[FDT_HTTP_DATE_LEN - 1] = '\0';
}

/* Which of the names s[0..3) is, in any letter case; -1 when none. */
static int name_index(const char *s, const char (*names)[4], int count)
{
    for (int i = 0; i < count; i++) {
        bool same = true;
        for (int k = 0; k < 3 && same; k++)
            same = (s[k] | 0x20) == (names[i][k] | 0x20);
        if (same)
            return i;
    }
    return -1;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT": fixed positions, 29 bytes. */
bool fdt_parse_http_date(const char *s, size_t len, int64_t *epoch_ms)
{
    if (!s || len != 29 || memcmp(s + 3, ", ", 2) || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        memcmp(s + 25, " GMT", 4))
        return false;
    cursor c = {s, len, 5};
    int day, year, h, m, sec;
    int month = name_index(s + 8, k_months, 12) + 1;
    if (name_index(s, k_weekdays, 7) < 0 || !month || !read_fixed_digits(&c, 2, &day))
        return false;
    c.i = 12;
    if (!read_fixed_digits(&c, 4, &year) || !eat(&c, ' ') || !read_fixed_digits(&c, 2, &h) || !eat(&c, ':') ||
        !read_fixed_digits(&c, 2, &m) || !eat(&c, ':') || !read_fixed_digits(&c, 2, &sec))
        return false;
    if (day < 1 || day > fdt_days_in_month(year, month) || h > 23 || m > 59 || sec > 60)
        return false;
    fdt_value v = {.year = (int16_t)year,
                   .month = (uint8_t)month,
                   .day = (uint8_t)day,
                   .hour = (uint8_t)h,
                   .minute = (uint8_t)m,
                   .second = (uint8_t)sec};
    *epoch_ms = fdt_civil_ms(&v); /* a leap second (60) reads as the next minute's first */
    return true;
}
