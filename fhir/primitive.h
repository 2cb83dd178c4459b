/*
 * fhir/primitive.h — lexical checks of the FHIR R4 primitive data types
 * (prefix fprim_).
 *
 * Each FHIR primitive has a JSON representation (string, number or boolean)
 * and, for most, a lexical form defined by a regular expression in the spec
 * (https://hl7.org/fhir/R4/datatypes.html). These functions check the
 * lexical form by hand-written scanners (no regex engine): they take the
 * value's bytes (not NUL-terminated; UTF-8, already JSON-unescaped) and
 * return NULL when valid, or a static English message saying what is wrong
 * ("month must be 01..12"). No allocation; thread-safe.
 */
#ifndef FHIR_PRIMITIVE_H
#define FHIR_PRIMITIVE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum fprim_kind {
    FPRIM_NONE = 0,
    FPRIM_BOOLEAN,
    FPRIM_INTEGER,
    FPRIM_STRING,
    FPRIM_DECIMAL,
    FPRIM_URI,
    FPRIM_URL,
    FPRIM_CANONICAL,
    FPRIM_BASE64BINARY,
    FPRIM_INSTANT,
    FPRIM_DATE,
    FPRIM_DATETIME,
    FPRIM_TIME,
    FPRIM_CODE,
    FPRIM_OID,
    FPRIM_ID,
    FPRIM_MARKDOWN,
    FPRIM_UNSIGNEDINT,
    FPRIM_POSITIVEINT,
    FPRIM_UUID,
    FPRIM_XHTML,
    FPRIM_COUNT
} fprim_kind;

/* The JSON type a primitive is written as. */
typedef enum fprim_json { FPRIM_JSON_STRING, FPRIM_JSON_NUMBER, FPRIM_JSON_BOOLEAN } fprim_json;

/* Kind for a FHIR type name ("dateTime" -> FPRIM_DATETIME), FPRIM_NONE if not primitive. */
fprim_kind fprim_from_name(const char *name);
const char *fprim_name(fprim_kind k);
fprim_json fprim_json_type(fprim_kind k);

/*
 * Check the lexical form of a value of kind k.
 * For FPRIM_JSON_STRING kinds `s` is the decoded string; for number kinds
 * (integer, decimal, unsignedInt, positiveInt) it is the JSON number's source
 * text; booleans are not checked here (the JSON type says it all).
 * Returns NULL if valid, else a static message.
 */
const char *fprim_check(fprim_kind k, const char *s, size_t len);

#endif
