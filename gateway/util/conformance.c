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
 * (instances). Those are skipped wherever they are below a conformance folder.
 */
static bool is_package_extra(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return !strcmp(base, "package.json") || strstr(path, "/example/") || !strncmp(path, "example/", 8);
}

pf_registry *conf_load(const char *const *dirs, size_t dir_count, oo_list *issues)
{
    file_list files = {0};
    for (size_t i = 0; i < dir_count; i++)
        if (!files_collect(&files, dirs[i], "conformance")) {
            files_list_free(&files);
            return NULL;
        }
    pf_registry *r = pf_registry_new(NULL);
    for (size_t i = 0; r && i < files.count; i++) {
        if (is_package_extra(files.paths[i]))
            continue;
        size_t len;
        char *json = files_read(files.paths[i], &len);
        if (!json) {
            oo_add(issues, OO_ERROR, OO_EXCEPTION, NULL, 0, 0, "cannot read %s", files.paths[i]);
            continue;
        }
        pf_registry_add(r, json, len, files.paths[i], issues);
        free(json);
    }
    if (r)
        pf_registry_finish(r, issues);
    files_list_free(&files);
    return r;
}
