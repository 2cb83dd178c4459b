/*
 * tests/test_datetime.c — FHIR dates, times and instants (fhir/datetime.h).
 *
 * Table-driven: the calendar against dates computed independently (Python's
 * datetime), each lexical form with the fields, precision and timezone it
 * must give, the forms it must refuse with a fragment of the message, the
 * ranges partial values cover, and the instant and HTTP date texts.
 * (The messages of the FHIR primitives as such are in test_primitive.c.)
 */
#include "fhir/datetime.h"

#include <criterion/criterion.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- calendar ------------------------------------------------------------- */

typedef struct civil_case {
    int y, m, d;
    int64_t days;
} civil_case;

static const civil_case civil_cases[] = {
    {1970, 1, 1, 0},      {1969, 12, 31, -1},     {2000, 3, 1, 11017}, {2024, 2, 29, 19782},
    {1900, 3, 1, -25508}, {1600, 2, 29, -135081}, {1, 1, 1, -719162},  {9999, 12, 31, 2932896},
};

Test(datetime, days_from_civil_and_back)
{
    for (size_t i = 0; i < COUNT(civil_cases); i++) {
        const civil_case *c = &civil_cases[i];
        cr_expect_eq(fdt_days_from_civil(c->y, c->m, c->d), c->days, "%04d-%02d-%02d", c->y, c->m, c->d);
        int y, m, d;
        fdt_civil_from_days(c->days, &y, &m, &d);
        cr_expect(y == c->y && m == c->m && d == c->d, "day %lld gave %04d-%02d-%02d", (long long)c->days, y, m, d);
    }
    /* every day of years 1 to 9999 round-trips, and consecutive dates are consecutive days */
    int64_t expect = fdt_days_from_civil(1, 1, 1);
    for (int y = 1; y <= 9999; y++)
        for (int m = 1; m <= 12; m++)
            for (int d = 1; d <= fdt_days_in_month(y, m); d++, expect++)
                if (fdt_days_from_civil(y, m, d) != expect)
                    cr_assert_fail("%04d-%02d-%02d is not day %lld", y, m, d, (long long)expect);
}

Test(datetime, leap_years)
{
    static const struct {
        int year;
        bool leap;
    } cases[] = {{2024, true}, {2023, false}, {2000, true}, {1900, false}, {1600, true},
                 {4, true},    {1, false},    {9996, true}, {9999, false}};
    for (size_t i = 0; i < COUNT(cases); i++) {
        cr_expect_eq(fdt_is_leap(cases[i].year), cases[i].leap, "%d", cases[i].year);
        cr_expect_eq(fdt_days_in_month(cases[i].year, 2), cases[i].leap ? 29 : 28, "%d", cases[i].year);
    }
    cr_expect_eq(fdt_days_in_month(2023, 4), 30);
    cr_expect_eq(fdt_days_in_month(2023, 12), 31);
}

/* ---- parsing -------------------------------------------------------------- */

typedef struct parse_case {
    fdt_form form;
    const char *text;
    int y, mo, d, h, mi, s, ms;
    fdt_precision precision;
    bool has_tz;
    int tz;
} parse_case;

static const parse_case good[] = {
    {FDT_FORM_DATE, "2024", 2024, 1, 1, 0, 0, 0, 0, FDT_YEAR, false, 0},
    {FDT_FORM_DATE, "2024-02", 2024, 2, 1, 0, 0, 0, 0, FDT_MONTH, false, 0},
    {FDT_FORM_DATE, "2024-02-29", 2024, 2, 29, 0, 0, 0, 0, FDT_DAY, false, 0},
    {FDT_FORM_DATE, "0001-01-01", 1, 1, 1, 0, 0, 0, 0, FDT_DAY, false, 0},
    {FDT_FORM_DATE, "9999-12-31", 9999, 12, 31, 0, 0, 0, 0, FDT_DAY, false, 0},
    {FDT_FORM_DATETIME, "2015", 2015, 1, 1, 0, 0, 0, 0, FDT_YEAR, false, 0},
    {FDT_FORM_DATETIME, "2015-02-07T13:28:17Z", 2015, 2, 7, 13, 28, 17, 0, FDT_SECOND, true, 0},
    {FDT_FORM_DATETIME, "2015-02-07T13:28:17.239+14:00", 2015, 2, 7, 13, 28, 17, 239, FDT_MS, true, 840},
    {FDT_FORM_DATETIME, "2015-02-07T13:28:17-12:00", 2015, 2, 7, 13, 28, 17, 0, FDT_SECOND, true, -720},
    {FDT_FORM_DATETIME, "2015-02-07T13:28:17.5+05:30", 2015, 2, 7, 13, 28, 17, 500, FDT_MS, true, 330},
    {FDT_FORM_DATETIME, "2016-12-31T23:59:60Z", 2016, 12, 31, 23, 59, 60, 0, FDT_SECOND, true, 0},
    {FDT_FORM_INSTANT, "2024-05-01T12:34:56.789123Z", 2024, 5, 1, 12, 34, 56, 789, FDT_MS, true, 0},
    {FDT_FORM_INSTANT, "2024-05-01T00:00:00-00:30", 2024, 5, 1, 0, 0, 0, 0, FDT_SECOND, true, -30},
    {FDT_FORM_TIME, "23:59:59", 0, 0, 0, 23, 59, 59, 0, FDT_SECOND, false, 0},
    {FDT_FORM_TIME, "07:05:00.12", 0, 0, 0, 7, 5, 0, 120, FDT_MS, false, 0},
    {FDT_FORM_SEARCH, "2024", 2024, 1, 1, 0, 0, 0, 0, FDT_YEAR, false, 0},
    {FDT_FORM_SEARCH, "2024-05-01T10:00", 2024, 5, 1, 10, 0, 0, 0, FDT_MINUTE, false, 0},
    {FDT_FORM_SEARCH, "2024-05-01T10:00+02:00", 2024, 5, 1, 10, 0, 0, 0, FDT_MINUTE, true, 120},
    {FDT_FORM_SEARCH, "2024-05-01T10:00:30", 2024, 5, 1, 10, 0, 30, 0, FDT_SECOND, false, 0},
    {FDT_FORM_SEARCH, "2024-05-01T10:00:30.25Z", 2024, 5, 1, 10, 0, 30, 250, FDT_MS, true, 0},
};

Test(datetime, parses_forms)
{
    for (size_t i = 0; i < COUNT(good); i++) {
        const parse_case *c = &good[i];
        fdt_value v;
        const char *msg = fdt_parse(c->form, c->text, strlen(c->text), &v);
        cr_expect_null(msg, "%s: %s", c->text, msg);
        if (msg)
            continue;
        cr_expect(v.year == c->y && v.month == c->mo && v.day == c->d, "%s: date %d-%d-%d", c->text, v.year, v.month,
                  v.day);
        cr_expect(v.hour == c->h && v.minute == c->mi && v.second == c->s && v.ms == c->ms, "%s: time %d:%d:%d.%d",
                  c->text, v.hour, v.minute, v.second, v.ms);
        cr_expect_eq(v.precision, c->precision, "%s: precision %d", c->text, v.precision);
        cr_expect_eq(v.has_tz, c->has_tz, "%s: has_tz", c->text);
        cr_expect_eq(v.tz_minutes, c->tz, "%s: tz %d", c->text, v.tz_minutes);
    }
}

typedef struct bad_case {
    fdt_form form;
    const char *text;
    const char *why; /* fragment of the message */
} bad_case;

static const bad_case bad[] = {
    {FDT_FORM_DATE, "0000", "year must be 0001"},
    {FDT_FORM_DATE, "2023-02-29", "February 29 exists only in leap years"},
    {FDT_FORM_DATE, "1900-02-29", "leap years"},
    {FDT_FORM_DATE, "2024-04-31", "day does not exist"},
    {FDT_FORM_DATE, "2024-13", "month must be 01 to 12"},
    {FDT_FORM_DATE, "2024-1-01", "expected YYYY, YYYY-MM or YYYY-MM-DD"},
    {FDT_FORM_DATE, "10000", "not a valid date"},
    {FDT_FORM_DATE, "2024-05-01T10:00:00Z", "use dateTime"},
    {FDT_FORM_DATE, "", "not a valid date"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00", "must have a timezone"},
    {FDT_FORM_DATETIME, "2024-05T10:00:00Z", "needs a full date"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00Z", "not a valid dateTime"},
    {FDT_FORM_DATETIME, "2024-05-01T24:00:00Z", "hour must be 00 to 23"},
    {FDT_FORM_DATETIME, "2024-05-01T10:60:00Z", "minute must be"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:61Z", "second must be"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00.Z", "at least one digit"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00+14:01", "between -14:00 and +14:00"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00-15:00", "between -14:00 and +14:00"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00+01:60", "timezone minutes"},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00+0100", "not a valid dateTime"},
    {FDT_FORM_DATETIME, "2024-05-01 10:00:00Z", "not a valid dateTime"},
    {FDT_FORM_INSTANT, "2024-05-01", "needs date, time and timezone"},
    {FDT_FORM_INSTANT, "2024-05-01T10:00:00", "must have a timezone"},
    {FDT_FORM_TIME, "10:00", "not a valid time"},
    {FDT_FORM_TIME, "10:00:00Z", "must not have a timezone"},
    {FDT_FORM_TIME, "25:00:00", "hour must be"},
    {FDT_FORM_SEARCH, "2024-05-01T10", "not a valid date"},
    {FDT_FORM_SEARCH, "2024-05T10:00", "needs a full date"},
    {FDT_FORM_SEARCH, "2024-05-01Z", "not a valid date"},
    {FDT_FORM_SEARCH, "2024-02-30", "day does not exist"},
    {FDT_FORM_SEARCH, "2024-05-01T10:00+15:00", "between -14:00 and +14:00"},
    {FDT_FORM_SEARCH, "2024-05-01T10:00x", "not a valid date"},
};

Test(datetime, refuses_invalid_forms)
{
    for (size_t i = 0; i < COUNT(bad); i++) {
        fdt_value v;
        const char *msg = fdt_parse(bad[i].form, bad[i].text, strlen(bad[i].text), &v);
        cr_expect_not_null(msg, "\"%s\" (form %d) should be refused", bad[i].text, bad[i].form);
        if (msg)
            cr_expect(strstr(msg, bad[i].why) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", bad[i].text, msg,
                      bad[i].why);
    }
}

/* ---- epoch milliseconds and ranges ---------------------------------------- */

typedef struct range_case {
    fdt_form form;
    const char *text;
    int64_t lo, hi;
} range_case;

static const range_case ranges[] = {
    {FDT_FORM_DATE, "2024", 1704067200000LL, 1735689599999LL},
    {FDT_FORM_DATE, "2023-02", 1675209600000LL, 1677628799999LL},
    {FDT_FORM_DATE, "2024-02", 1706745600000LL, 1709251199999LL}, /* 29 days */
    {FDT_FORM_DATE, "0001-01-01", -62135596800000LL, -62135596800000LL + 86399999},
    {FDT_FORM_DATETIME, "9999-12-31T23:59:59.999Z", 253402300799999LL, 253402300799999LL},
    {FDT_FORM_DATETIME, "2024-05-01T12:34:56.789+14:00", 1714516496789LL, 1714516496789LL},
    {FDT_FORM_DATETIME, "2024-05-01T12:34:56.789-12:00", 1714610096789LL, 1714610096789LL},
    {FDT_FORM_DATETIME, "2024-05-01T10:00:00Z", 1714557600000LL, 1714557600999LL},
    {FDT_FORM_SEARCH, "2024-05-01T10:00", 1714557600000LL, 1714557659999LL},
    {FDT_FORM_SEARCH, "2024-05-01T12:00+02:00", 1714557600000LL, 1714557659999LL},
    {FDT_FORM_DATETIME, "1969-12-31T23:59:59.999Z", -1, -1},
};

Test(datetime, ranges_of_partial_values)
{
    for (size_t i = 0; i < COUNT(ranges); i++) {
        fdt_value v;
        cr_assert_null(fdt_parse(ranges[i].form, ranges[i].text, strlen(ranges[i].text), &v), "%s", ranges[i].text);
        int64_t lo, hi;
        fdt_range(&v, &lo, &hi);
        cr_expect_eq(lo, ranges[i].lo, "%s: lo %lld", ranges[i].text, (long long)lo);
        cr_expect_eq(hi, ranges[i].hi, "%s: hi %lld", ranges[i].text, (long long)hi);
        cr_expect_eq(fdt_to_epoch_ms(&v), ranges[i].lo, "%s", ranges[i].text);
    }
}

Test(datetime, epoch_round_trip)
{
    static const int64_t instants[] = {0, -1, 1714557600123LL, -62135596800000LL, 253402300799999LL, 951782400000LL};
    for (size_t i = 0; i < COUNT(instants); i++) {
        fdt_value v;
        fdt_from_epoch_ms(instants[i], &v);
        cr_expect_eq(v.precision, FDT_MS);
        cr_expect(v.has_tz && v.tz_minutes == 0);
        cr_expect_eq(fdt_to_epoch_ms(&v), instants[i], "%lld", (long long)instants[i]);
        cr_expect_eq(fdt_civil_ms(&v), instants[i], "%lld", (long long)instants[i]);
    }
    /* the wall-clock reading ignores the offset; the epoch reading applies it */
    fdt_value v;
    cr_assert_null(fdt_parse(FDT_FORM_DATETIME, "1970-01-01T01:00:00+01:00", 25, &v));
    cr_expect_eq(fdt_civil_ms(&v), 3600000);
    cr_expect_eq(fdt_to_epoch_ms(&v), 0);
}

/* ---- instants and HTTP dates ---------------------------------------------- */

Test(datetime, formats_instants)
{
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {1714516496789LL, "2024-04-30T22:34:56.789Z"},
        {951782400000LL, "2000-02-29T00:00:00.000Z"},
        {-62135596800000LL, "0001-01-01T00:00:00.000Z"},
        {253402300799999LL, "9999-12-31T23:59:59.999Z"},
        {INT64_MAX, "9999-12-31T23:59:59.999Z"}, /* clamped: four digits of year */
        {INT64_MIN, "0000-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char out[FDT_INSTANT_LEN];
        fdt_format_instant(cases[i].ms, out);
        cr_expect_str_eq(out, cases[i].text);
    }
}

Test(datetime, http_dates)
{
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {784111777000LL, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {-1000, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {951782400000LL, "Tue, 29 Feb 2000 00:00:00 GMT"},
        {-62135596800000LL, "Mon, 01 Jan 0001 00:00:00 GMT"},
        {253402300799000LL, "Fri, 31 Dec 9999 23:59:59 GMT"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char out[FDT_HTTP_DATE_LEN];
        fdt_format_http_date(cases[i].ms, out);
        cr_expect_str_eq(out, cases[i].text);
        int64_t back;
        cr_expect(fdt_parse_http_date(cases[i].text, strlen(cases[i].text), &back), "%s", cases[i].text);
        cr_expect_eq(back, cases[i].ms, "%s", cases[i].text);
    }
    char out[FDT_HTTP_DATE_LEN];
    fdt_format_http_date(784111777999LL, out); /* whole seconds, rounded down */
    cr_expect_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");

    int64_t ms;
    cr_expect(fdt_parse_http_date("sun, 06 NOV 1994 08:49:37 GMT", 29, &ms) && ms == 784111777000LL);
    cr_expect(fdt_parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT", 29, &ms), "a wrong weekday is tolerated");
    static const char *const refused[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",       /* asctime */
        "Sun, 06 Nov 1994 08:49:37 UTC",  "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",  "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sux, 06 Nov 1994 08:49:37 GMT",  "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ", "",
    };
    for (size_t i = 0; i < COUNT(refused); i++)
        cr_expect_not(fdt_parse_http_date(refused[i], strlen(refused[i]), &ms), "\"%s\"", refused[i]);
}
