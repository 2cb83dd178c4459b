/*
 * gateway/rest/directory.c — the registered organisations' own directory
 * entries (see directory.h).
 */
#define _GNU_SOURCE /* getline */
#include "gateway/rest/directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/rest/rest_write.h"

#define URA_SYSTEM "http://fhir.nl/fhir/NamingSystem/ura"

/* The entry as JSON (malloc'd), built with json-c so the name is escaped whatever it holds. */
static char *entry_json(const id_entry *org, const char *id, size_t *len)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "resourceType", json_object_new_string("Organization"));
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object *ident = json_object_new_object();
    json_object_object_add(ident, "system", json_object_new_string(URA_SYSTEM));
    json_object_object_add(ident, "value", json_object_new_string(org->ura));
    json_object *idents = json_object_new_array();
    json_object_array_add(idents, ident);
    json_object_object_add(o, "identifier", idents);
    json_object_object_add(o, "active", json_object_new_boolean(1));
    json_object_object_add(o, "name", json_object_new_string(org->name));
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *len = strlen(text);
    char *copy = strdup(text);
    json_object_put(o);
    return copy;
}

static void report(const char *ura, const oo_list *issues, const char *why)
{
    fprintf(stderr, "directory entry of URA %s: %s\n", ura, issues && issues->count ? issues->items[0].message : why);
}

/*
 * Write the entry of org through the write path, as org itself: parsed and
 * validated, access-checked, indexed, tagged, then an update that creates
 * (st_op.create_if_missing) and waits for the commit. True when written.
 */
static bool publish(rest_app *app, const id_entry *org, const char *id)
{
    rq q = {0}; /* no HTTP request behind it: nothing here answers or records a decision */
    q.app = app;
    snprintf(q.caller.ura, sizeof q.caller.ura, "%s", org->ura);
    q.caller.roles = az_parse_roles(org->role);
    rest_write *w = &q.write;
    size_t len;
    char *json = entry_json(org, id, &len);
    oo_list issues;
    oo_list_init(&issues, 0);
    int status = json ? rest_write_parse(&q, w, json, len, "Organization", &issues) : 503;
    free(json);
    snprintf(w->id, sizeof w->id, "%s", id);
    if (!status)
        status = rest_write_prepare(&q, w, ST_OP_UPDATE, NULL, &issues);
    st_status s = ST_INVALID;
    if (!status) {
        w->op.create_if_missing = true; /* it does not exist yet (checked by the caller) */
        s = st_submit_wait(app->opt.store, &w->op, 1, NULL);
    }
    if (status || s != ST_OK)
        report(org->ura, &issues, status ? "cannot be written" : st_status_name(s));
    oo_list_free(&issues);
    rest_write_free(w);
    return !status && s == ST_OK;
}

/* The entry of one registry row's URA, unless it exists (or the URA is not in the app's table). */
static bool publish_missing(rest_app *app, const char *ura)
{
    const id_entry *org = id_lookup_ura(app->opt.organisations, ura);
    if (!org)
        return true; /* the table refused the row; id_table_load said why */
    char id[ST_ID_MAX + 1];
    snprintf(id, sizeof id, "ura-%s", org->ura);
    st_resource existing;
    st_error err;
    if (st_read(app->opt.store, "Organization", id, &existing, &err) == ST_OK) {
        st_resource_free(&existing);
        return true;
    }
    return publish(app, org, id);
}

/* Field `column` (0-based) of a tab-separated line, cut in place; NULL when the line has fewer. */
static char *field(char *line, int column)
{
    for (int i = 0; i < column && line; i++)
        line = (line = strchr(line, '\t')) ? line + 1 : NULL;
    if (line)
        line[strcspn(line, "\t\r\n")] = '\0';
    return line;
}

/* Which column of the header line is "ura"; -1 when none is. */
static int ura_column(char *header)
{
    int column = 0;
    for (char *f = header; f; f = strchr(f, '\t'), f = f ? f + 1 : NULL, column++)
        if (!strncmp(f, "ura", 3) && strchr("\t\r\n", f[3]))
            return column;
    return -1;
}

bool dir_publish_registered(rest_app *app, const char *tsv)
{
    FILE *f = fopen(tsv, "r");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    int column = -1;
    bool ok = true;
    /* the file is read whole line by line (getline: no length cut); the rows' URAs name the table's entries */
    while (getline(&line, &cap, f) >= 0) {
        if (line[0] == '#' || line[0] == '\n' || line[0] == '\r')
            continue;
        if (column < 0) {
            column = ura_column(line);
            if (column < 0)
                break;
            continue;
        }
        char *ura = field(line, column);
        if (ura)
            ok = publish_missing(app, ura) && ok;
    }
    free(line);
    fclose(f);
    return ok && column >= 0;
}
