/*
 * gateway/util/conformance.c — conformance folders into a profile registry (see conformance.h).
 */
#include "gateway/util/conformance.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/util/files.h"

/*
 * A FHIR NPM package folder (the guide's build/ig/package) holds more than conformance
 * resources: package.json (the manifest), .index.json (a dot file: never walked) and example/
 * (instances). Those are skipped wherever they are below a conformance folder; `rel` is the
 * path below it, so a folder that is itself called example/ still loads.
 */
static bool is_package_extra(const char *rel)
{
    return !strcmp(files_base_name(rel), "package.json") || !strncmp(rel, "example/", 8) || strstr(rel, "/example/");
}

/* The files of one folder (or one file) into the registry. False when it cannot be read. */
static bool load_dir(pf_registry *r, const char *dir, oo_list *issues)
{
    file_list files = {0};
    if (!files_collect(&files, dir, "conformance"))
        return false;
    size_t prefix = strlen(dir);
    for (size_t i = 0; i < files.count; i++) {
        const char *path = files.paths[i];
        const char *rel = strncmp(path, dir, prefix) ? path : path + prefix + (path[prefix] == '/');
        if (rel != path && is_package_extra(rel))
            continue;
        size_t len;
        char *json = files_read(path, &len);
        if (!json) {
            oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "cannot read %s", path);
            continue;
        }
        pf_registry_add(r, json, len, path, issues);
        free(json);
    }
    files_list_free(&files);
    return true;
}

pf_registry *conf_load(const char *const *dirs, size_t dir_count, oo_list *issues)
{
    pf_registry *r = pf_registry_new(NULL);
    for (size_t i = 0; r && i < dir_count; i++)
        if (!load_dir(r, dirs[i], issues)) {
            pf_registry_free(r);
            return NULL;
        }
    if (r)
        pf_registry_finish(r, issues);
    return r;
}
