/*
 * gateway/util/conformance.c — conformance folders into a profile registry (see conformance.h).
 */
#include "gateway/util/conformance.h"

#include <stdlib.h>

#include "gateway/util/files.h"

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
