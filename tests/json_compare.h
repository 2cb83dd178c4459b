/*
 * tests/json_compare.h — JSON equality for the mapping tests (prefix tj_).
 *
 * json-c tells 180 and 180.0 apart; a map that writes a decimal the source
 * wrote as an integer has not changed the value. Objects compare by members
 * in any order, arrays in order, numbers by value, everything else exactly.
 */
#ifndef TESTS_JSON_COMPARE_H
#define TESTS_JSON_COMPARE_H

#include <json-c/json.h>
#include <stdbool.h>

bool tj_same(json_object *a, json_object *b);

/* Does the resource's meta.tag hold a coding with this code? (SUBSETTED: fhir/subset.h) */
bool tj_has_tag(json_object *resource, const char *code);

#endif
