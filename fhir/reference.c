/*
 * fhir/reference.c — splitting literal references (see reference.h).
 */
#include "fhir/reference.h"

#include <string.h>

bool fr_parse(const char *s, size_t len, fr_parts *out)
{
    memset(out, 0, sizeof *out);
    if (!len || s[0] == '#')
        return false;
    const char *end = s + len;
    /* "/_history/v" at the end: the version */
    for (const char *p = end - 1; p > s; p--) {
        if (*p != '/')
            continue;
        if (p - s >= 9 && !memcmp(p - 9, "/_history", 9)) {
            out->version = p + 1;
            out->version_len = (size_t)(end - p - 1);
            end = p - 9;
        }
        break;
    }
    const char *id = end;
    while (id > s && id[-1] != '/')
        id--;
    if (id == s || id == end)
        return false;
    const char *type = id - 1;
    while (type > s && type[-1] != '/')
        type--;
    if (type >= id - 1 || !(type[0] >= 'A' && type[0] <= 'Z'))
        return false;
    out->type = type;
    out->type_len = (size_t)(id - 1 - type);
    out->id = id;
    out->id_len = (size_t)(end - id);
    return true;
}

bool fr_is_absolute(const char *s, size_t len)
{
    size_t i = 0;
    if (!len || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (i = 1; i < len && s[i] != ':'; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '+' ||
              ch == '-' || ch == '.'))
            return false;
    }
    return i < len;
}

size_t fr_unversioned_len(const char *s, size_t len)
{
    fr_parts p;
    if (!fr_parse(s, len, &p) || !p.version)
        return len;
    return (size_t)(p.version - s) - 10; /* strlen("/_history/") */
}
