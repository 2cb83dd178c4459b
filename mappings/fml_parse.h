/*
 * mappings/fml_parse.h — the FHIR Mapping Language (R4) read into a
 * StructureMap resource (prefix fml_).
 *
 * What it is for: maps are written as FML text (`*.map`); the engine runs
 * StructureMaps. fml_parse turns the text into the StructureMap JSON the R4
 * spec defines (http://hl7.org/fhir/R4/mapping-language.html), so a map can
 * equally be given as FML or as a StructureMap resource; fml_render writes
 * a StructureMap back as FML (parse -> render -> parse gives the same JSON).
 *
 * What the grammar covers: `map "url" = "name"`, `uses "url" alias X as
 * source|target|queried|produced`, `imports "url"`, inline `conceptmap
 * "name" { prefix s = "url" ... s:code - t:code }` (to contained
 * ConceptMaps, referenced as "#name"), groups with inputs, `extends`,
 * `<<types>>` / `<<type+>>`, rules with sources (type, cardinality,
 * default, list mode, alias, where/check/log with FHIRPath in parentheses),
 * targets (context.element, `= transform(params)`, `= literal`, `= var.path`,
 * `= (fhirpath)`, alias, list modes), dependent rules `then { ... }` and
 * `then group(a, b)`, rule names `"name"`, `//` and block comments.
 * Documentation: `//` comments before `map` become the description, those on
 * the lines right above a group its documentation, one after a rule's `;` on
 * the same line that rule's documentation.
 *
 * Errors are values: on a syntax error fml_parse returns NULL and fills
 * *err with the file name given, the 1-based line and column and what was
 * expected. Memory: the returned json-c object belongs to the caller
 * (json_object_put); fml_render's string is malloc'd (caller frees).
 */
#ifndef MAPPINGS_FML_PARSE_H
#define MAPPINGS_FML_PARSE_H

#include <json-c/json.h>
#include <stddef.h>

typedef struct fml_error {
    char file[128];    /* the name the caller gave (a file name), truncated */
    unsigned line;     /* 1-based */
    unsigned column;   /* 1-based, in bytes */
    char message[256]; /* "expected ';' after the rule, found 'group'" */
} fml_error;

/* Parse text[0..len) (not modified). file names the text in errors (may be NULL). NULL + *err on error. */
json_object *fml_parse(const char *text, size_t len, const char *file, fml_error *err);

/* The text form "file:line:col: message" of an error, into buf (snprintf-style). */
size_t fml_error_format(const fml_error *err, char *buf, size_t cap);

/*
 * A StructureMap (as fml_parse makes it, or loaded from JSON) as FML text.
 * NULL when out of memory. Elements FML cannot express are left out.
 */
char *fml_render(const json_object *map);

#endif
