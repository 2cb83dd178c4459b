/*
 * tests/manifest_check.h — the validator against a corpus manifest
 * (tests/negative/manifest.json, tests/depth/manifest.json): each entry
 * names a file and the issues the validator must report for it: severity
 * and code always; the FHIRPath expression, a part of the message, the line
 * and the column where given. Beside the expected issues the file may draw
 * no other error (warnings and information are not counted).
 *
 * What does not match is logged (cr_log_error) with every issue the file
 * drew; the caller counts and asserts.
 *
 * Memory: nothing is kept; the entry is the caller's.
 */
#ifndef TESTS_MANIFEST_CHECK_H
#define TESTS_MANIFEST_CHECK_H

#include <json-c/json.h>
#include <stdbool.h>

/* A member's string value, NULL when absent. */
const char *mc_field(json_object *o, const char *key);

/* True when dir/<entry.file> draws exactly what the entry says. */
bool mc_check_entry(const char *dir, json_object *entry);

#endif
