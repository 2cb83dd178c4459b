/*
 * gateway/util/limits.c — the limits table at run time (see limits.h).
 */
#include "gateway/util/limits.h"

#include <string.h>

#define LIM_SETTABLE_SET true
#define LIM_SETTABLE_FIXED false
#define LIM_ROW_(name, value, min, unit, access, room, doc) \
    [LIM_ID_##name] = {#name, (value), (min), LIM_UNIT_##unit, LIM_SETTABLE_##access, room, doc},

const lim_row lim_table[LIM_COUNT] = {GW_LIMITS(LIM_ROW_)};

/* A default below its own minimum is a mistake in the table, caught at compile time. */
#define LIM_CHECK_(name, value, min, unit, access, room, doc) \
    _Static_assert((value) >= (min), #name ": default below its minimum");
GW_LIMITS(LIM_CHECK_)

const lim_row *lim_find(const char *name)
{
    for (size_t i = 0; i < LIM_COUNT; i++)
        if (!strcmp(lim_table[i].name, name))
            return &lim_table[i];
    return NULL;
}

int64_t lim_max(const lim_row *row)
{
    return row->unit == LIM_UNIT_BYTES ? INT64_MAX : (int64_t)UINT32_MAX;
}
