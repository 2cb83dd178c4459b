/* tests/json_compare.c — see json_compare.h. */
#include "json_compare.h"

#include <stddef.h>
#include <string.h>

static bool is_number(json_type t)
{
    return t == json_type_int || t == json_type_double;
}

bool tj_same(json_object *a, json_object *b)
{
    json_type ta = json_object_get_type(a), tb = json_object_get_type(b);
    if (is_number(ta) && is_number(tb))
        return json_object_get_double(a) == json_object_get_double(b);
    if (ta != tb)
        return false;
    if (ta == json_type_object) {
        if (json_object_object_length(a) != json_object_object_length(b))
            return false;
        json_object_object_foreach(a, key, va)
        {
            json_object *vb;
            if (!json_object_object_get_ex(b, key, &vb) || !tj_same(va, vb))
                return false;
        }
        return true;
    }
    if (ta == json_type_array) {
        if (json_object_array_length(a) != json_object_array_length(b))
            return false;
        for (size_t i = 0; i < json_object_array_length(a); i++)
            if (!tj_same(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i)))
                return false;
        return true;
    }
    return json_object_equal(a, b);
}

bool tj_has_tag(json_object *resource, const char *code)
{
    json_object *tags = json_object_object_get(json_object_object_get(resource, "meta"), "tag");
    for (size_t i = 0; json_object_is_type(tags, json_type_array) && i < json_object_array_length(tags); i++) {
        const char *c = json_object_get_string(json_object_object_get(json_object_array_get_idx(tags, i), "code"));
        if (c && !strcmp(c, code))
            return true;
    }
    return false;
}
