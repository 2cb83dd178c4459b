/*
 * gateway/rest/directory.c — the registered organisations' own directory
 * entries (see directory.h).
 */
#include "gateway/rest/directory.h"

#include <stdio.h>
#include <string.h>

bool dir_publish_registered(st_store *store, const char *tsv)
{
    FILE *f = fopen(tsv, "r");
    if (!f)
        return false;
    char line[4096];
    bool header = true, ok = true;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (header) {
            header = false;
            continue;
        }
        char *fields[5] = {0};
        char *p = line;
        for (int i = 0; i < 5 && p; i++) {
            fields[i] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (!fields[0] || !fields[1] || strlen(fields[1]) != 8)
            continue;
        char id[ST_ID_MAX + 1], json[1024];
        snprintf(id, sizeof id, "ura-%s", fields[1]);
        st_resource existing;
        st_error err;
        if (st_read(store, "Organization", id, &existing, &err) == ST_OK) {
            st_resource_free(&existing);
            continue;
        }
        int n = snprintf(json, sizeof json,
                         "{\"resourceType\":\"Organization\",\"id\":\"%s\",\"identifier\":[{\"system\":"
                         "\"http://fhir.nl/fhir/NamingSystem/ura\",\"value\":\"%s\"}],\"active\":true,\"name\":\"%s\"}",
                         id, fields[1], fields[0]);
        st_index_row rows[2] = {st_row_token("identifier", "http://fhir.nl/fhir/NamingSystem/ura", fields[1]),
                                st_row_string("name", fields[0])};
        st_op op = {0};
        op.kind = ST_OP_UPDATE;
        op.type = "Organization";
        op.id = id;
        op.owner = fields[1];
        op.create_if_missing = true;
        op.json = json;
        op.json_len = (size_t)n;
        op.meta_at = (size_t)(strstr(json, ",\"identifier\"") - json) + 1;
        op.rows = rows;
        op.row_count = 2;
        ok = st_submit_wait(store, &op, 1, NULL) == ST_OK && ok;
    }
    fclose(f);
    return ok;
}
