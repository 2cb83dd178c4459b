/*
 * fhir/datetime.h — FHIR dates, times and instants (prefix fdt_).
 *
 * What it is for: the one place that reads and writes the date/time forms of
 * FHIR R4 and HTTP, and does calendar arithmetic, so the primitive checks,
 * FHIRPath, search and the store agree on what a date means:
 *
 *   fdt_parse          the lexical forms of date, dateTime, instant and time
 *                      (https://hl7.org/fhir/R4/datatypes.html) and the date
 *                      form of search parameters, into an fdt_value that keeps
 *                      the precision given and the timezone (if any);
 *   fdt_range          the instants a partial value covers ("2024" is all of
 *                      2024), as epoch milliseconds;
 *   days / epoch       proleptic Gregorian days since 1970-01-01 and back,
 *                      epoch milliseconds to and from an fdt_value;
 *   formatting         an instant ("2024-05-01T12:34:56.789Z") and an HTTP
 *                      date (RFC 7231 IMF-fixdate), and reading the latter.
 *
 * No clock: "now" is always the caller's. No allocation, no global state:
 * every function is thread-safe. Text in is (pointer, length), not
 * NUL-terminated; text out goes to fixed-size caller buffers.
 */
#ifndef FHIR_DATETIME_H
#define FHIR_DATETIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The last component a value has. A time of day starts at FDT_HOUR. */
typedef enum fdt_precision { FDT_YEAR = 1, FDT_MONTH, FDT_DAY, FDT_HOUR, FDT_MINUTE, FDT_SECOND, FDT_MS } fdt_precision;

/*
 * A date, dateTime, instant or time as written. Components beyond the
 * precision are at their lowest (month and day 1, time 0); a time of day has
 * year, month and day 0. Fractions of a second keep their first three
 * digits. The layout is also FHIRPath's System date/time value (fp_datetime).
 */
typedef struct fdt_value {
    int16_t year; /* 1..9999 */
    uint8_t month, day, hour, minute, second;
    uint8_t precision; /* fdt_precision */
    uint16_t ms;
    bool has_tz;
    int16_t tz_minutes; /* offset from UTC: +01:00 = 60, -12:00 = -720 */
} fdt_value;

/* Which lexical form fdt_parse reads. */
typedef enum fdt_form {
    FDT_FORM_DATE,     /* YYYY, YYYY-MM, YYYY-MM-DD */
    FDT_FORM_DATETIME, /* a date, or YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm|-hh:mm), timezone required with a time */
    FDT_FORM_INSTANT,  /* YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm|-hh:mm) */
    FDT_FORM_TIME,     /* hh:mm:ss(.sss), no timezone */
    /* A search parameter's date (http://hl7.org/fhir/R4/search.html#date):
     * a dateTime whose seconds and timezone may be left out
     * (2024-05-01T10:00); without a timezone it is read as UTC. */
    FDT_FORM_SEARCH
} fdt_form;

/*
 * Parse s[0..len) in the given form into *out. Returns NULL when valid, else
 * a static English message saying what is wrong ("month must be 01 to 12",
 * "February 29 exists only in leap years"); *out is then unspecified.
 */
const char *fdt_parse(fdt_form form, const char *s, size_t len, fdt_value *out);

bool fdt_is_leap(int year);
/* 28..31; month 1..12. */
int fdt_days_in_month(int year, int month);

/* Days since 1970-01-01 of a proleptic Gregorian date (negative before), and back. */
int64_t fdt_days_from_civil(int year, int month, int day);
void fdt_civil_from_days(int64_t days, int *year, int *month, int *day);

/* The value's fields as milliseconds since 1970-01-01T00:00, its timezone ignored (a wall-clock reading). */
int64_t fdt_civil_ms(const fdt_value *v);
/* The earliest instant the value names, in epoch ms: the offset applied; no timezone is read as UTC. */
int64_t fdt_to_epoch_ms(const fdt_value *v);
/* The UTC instant as a value of millisecond precision with timezone Z (floor division before 1970). */
void fdt_from_epoch_ms(int64_t epoch_ms, fdt_value *out);

/*
 * The instants a date, dateTime or instant covers, epoch ms, both inclusive:
 * "2024" is [2024-01-01T00:00:00.000Z, 2024-12-31T23:59:59.999Z], a value to
 * the second covers 1000 ms. No timezone is read as UTC.
 */
void fdt_range(const fdt_value *v, int64_t *lo_ms, int64_t *hi_ms);

/* "2024-05-01T12:34:56.789Z" plus NUL. Instants outside years 0000..9999 are clamped to them. */
#define FDT_INSTANT_LEN 25
void fdt_format_instant(int64_t epoch_ms, char out[FDT_INSTANT_LEN]);

/* RFC 7231 IMF-fixdate, "Wed, 01 May 2024 12:34:56 GMT" plus NUL; whole seconds (floor). */
#define FDT_HTTP_DATE_LEN 30
void fdt_format_http_date(int64_t epoch_ms, char out[FDT_HTTP_DATE_LEN]);
/*
 * Read an IMF-fixdate (day and month names in any letter case) into epoch
 * ms; false when s[0..len) is anything else. The weekday name must be one,
 * but need not match the date (senders get it wrong; the date decides).
 */
bool fdt_parse_http_date(const char *s, size_t len, int64_t *epoch_ms);

#endif
