/*
 * gateway/util/keyfile.c — see keyfile.h.
 */
#include "gateway/util/keyfile.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/hex.h"

typedef struct seen_ids {
    char (*ids)[KF_KEY_ID_MAX + 1];
    size_t count;
} seen_ids;

static bool valid_key_id(const char *id)
{
    size_t n = strlen(id);
    if (!n || n > KF_KEY_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

static bool seen_before(seen_ids *seen, const char *id, bool *oom)
{
    for (size_t i = 0; i < seen->count; i++)
        if (!strcmp(seen->ids[i], id))
            return true;
    void *grown = realloc(seen->ids, (seen->count + 1) * sizeof *seen->ids);
    if (!grown) {
        *oom = true;
        return false;
    }
    seen->ids = grown;
    snprintf(seen->ids[seen->count++], KF_KEY_ID_MAX + 1, "%s", id);
    return false;
}

/* One line: NULL (a key taken, or a comment or blank line) or a reason. *taken says whether a key was. */
static const char *take_line(char *line, seen_ids *seen, kf_take_fn take, void *arg, bool *taken)
{
    char *id = strtok(line, " \t\r\n"), *hex = strtok(NULL, " \t\r\n");
    *taken = false;
    if (!id || *id == '#')
        return NULL;
    if (!hex || strtok(NULL, " \t\r\n"))
        return "expected '<key-id> <64 hex digits>'";
    if (!valid_key_id(id))
        return "a key id is 1-32 of [A-Za-z0-9._-]";
    unsigned char key[KF_KEY_LEN];
    if (!hex_decode(hex, key, KF_KEY_LEN))
        return "the key is not 64 hex digits (32 bytes)";
    bool oom = false;
    const char *why = seen_before(seen, id, &oom) ? "the key id is used twice" : oom ? "out of memory" : NULL;
    if (!why)
        why = take(arg, id, key);
    explicit_bzero(key, sizeof key);
    explicit_bzero(hex, strlen(hex));
    *taken = !why;
    return why;
}

size_t kf_load(const char *path, const char *what, kf_take_fn take, void *arg, char *err, size_t errlen)
{
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path && *path ? path : what,
                 path && *path ? strerror(errno) : "not configured");
        return 0;
    }
    seen_ids seen = {0};
    char line[512];
    unsigned lineno = 0;
    size_t keys = 0;
    const char *why = NULL;
    while (!why && fgets(line, sizeof line, f)) {
        lineno++;
        bool taken;
        why = take_line(line, &seen, take, arg, &taken);
        keys += taken;
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    free(seen.ids);
    if (!why && !keys)
        why = "no key", lineno = 0;
    if (why) {
        snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
        return 0;
    }
    return keys;
}
