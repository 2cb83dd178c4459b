/*
 * ig/tools/package.h — the implementation guide's build: a source folder (ig/) into a FHIR
 * NPM package folder (prefix igp_).
 *
 * igp_load reads SOURCE/package.json and every *.json under profiles/, extensions/,
 * terminology/, models/ (the packaged conformance resources) and examples/ (packaged as
 * example/), and checks the guide's conventions (ig/README.md): each file parses, is a
 * conformance resource, has url = canonical/<type>/<id>, the manifest's version, a unique id
 * and the file name <type>-<id>.json; every example names a packaged profile in meta.profile.
 * Logical models get their snapshot here (for a specialization of Element it is the element
 * list with each element's base). igp_write writes OUT/package/ (package.json, .index.json,
 * one file per resource, example/ with its own .index.json), every JSON file serialised the
 * same way (igp_serialise) and every list sorted, so two builds give the same bytes. The
 * .tgz is made from that folder by ig/tools/pack-tgz (GNU tar + gzip -n), run by CMake.
 * igp_registry fills a profile registry from the packaged resources and igp_validate_examples
 * validates each example against it: both are part of the build.
 *
 * Problems are issues (fhir/outcome.h): the message starts with the file, the expression is
 * the FHIRPath-style location in it. Functions return false only for I/O problems.
 *
 * Memory: an igp_package owns its manifest, resources and their JSON (igp_free); the
 * returned registry is the caller's (pf_registry_free); igp_serialise and igp_read_text
 * return malloc'd text; an igp_paths owns its paths (igp_paths_free).
 */
#ifndef IG_TOOLS_PACKAGE_H
#define IG_TOOLS_PACKAGE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "fhir/outcome.h"
#include "fhir/profile.h"

typedef struct igp_resource {
    char *source;   /* the source file's path */
    char *filename; /* <resourceType>-<id>.json: its name in the package */
    json_object *json;
    /* borrowed from json (NULL when absent) */
    const char *resource_type, *id, *url, *version, *kind, *type;
    bool example; /* from examples/: packaged under example/ */
} igp_resource;

typedef struct igp_package {
    json_object *manifest;
    const char *name, *version, *canonical; /* borrowed from manifest */
    igp_resource *items;                    /* conformance resources, then examples, each by filename */
    size_t count, capacity;
} igp_package;

typedef struct igp_paths {
    char **paths;
    size_t count, capacity;
} igp_paths;

/* Read and check SOURCE (see above). False when the manifest or a folder cannot be read. */
bool igp_load(const char *source, igp_package *p, oo_list *issues);
void igp_free(igp_package *p);

/* Write OUT/package/ afresh (a previous one is removed first). False on I/O problems. */
bool igp_write(const igp_package *p, const char *out, oo_list *issues);

/* A registry of the packaged conformance resources, finished. Issues say what did not load. */
pf_registry *igp_registry(const igp_package *p, oo_list *issues);

/* Validate every example against the registry (core + meta.profile). Returns the errors added. */
size_t igp_validate_examples(const igp_package *p, const pf_registry *r, oo_list *issues);

/* The packaged resource (not an example) with that canonical url ("|version" ignored), or NULL. */
const igp_resource *igp_find(const igp_package *p, const char *url);

/* ---- the I/O the guide's tools share ---------------------------------------------------- */

/* The one serialisation of every written JSON file: json-c pretty and spaced (2 spaces), no "\/", "\n" at the end. */
char *igp_serialise(json_object *o);

/* Every *.json below dir (recursively, dot files skipped) appended in name order. A missing dir is
 * empty when `optional`; false with errno otherwise. */
bool igp_list_json(const char *dir, bool optional, igp_paths *out);
void igp_paths_free(igp_paths *l);

char *igp_read_text(const char *path, size_t *len);
/* Write text to path, creating missing folders; false (an issue added) on failure. */
bool igp_write_text(const char *path, const char *text, oo_list *issues);
bool igp_mkdirs(const char *dir);
/* Remove a folder and everything below it; true when it is gone (or was never there). */
bool igp_remove_tree(const char *dir);

/* Shorthands over json-c: a member, a string member (NULL unless a string), an array's length. */
json_object *igp_get(json_object *o, const char *key);
const char *igp_str(json_object *o, const char *key);
size_t igp_len(json_object *array);

#endif
