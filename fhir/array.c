/*
 * fhir/array.c — see array.h.
 */
#include "fhir/array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FA_FIRST_CAPACITY 8

bool fa_next_capacity(size_t capacity, size_t needed, size_t element_size, size_t first, size_t *out)
{
    size_t cap = capacity ? capacity : first ? first : 1;
    while (cap < needed) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    if (element_size && cap > SIZE_MAX / element_size)
        return false;
    *out = cap;
    return true;
}

bool fa_reserve(void *items_ptr, size_t *capacity, size_t needed, size_t element_size)
{
    if (needed <= *capacity)
        return true;
    size_t cap;
    if (!fa_next_capacity(*capacity, needed, element_size, FA_FIRST_CAPACITY, &cap))
        return false;
    /* the owner's pointer is read and written as bytes: items_ptr may be any T ** */
    void *items;
    memcpy(&items, items_ptr, sizeof items);
    void *grown = realloc(items, cap * element_size);
    if (!grown)
        return false;
    memcpy(items_ptr, &grown, sizeof grown);
    *capacity = cap;
    return true;
}
