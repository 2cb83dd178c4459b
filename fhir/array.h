/*
 * fhir/array.h — the one growable-array helper (prefix fa_).
 *
 * A growable array in this project is three fields the owner keeps side by
 * side: a pointer to the elements, how many are used and how many fit.
 * fa_reserve makes room for `needed` elements, doubling the capacity so
 * appends stay amortised O(1):
 *
 *     if (!fa_reserve(&list->items, &list->capacity, list->count + 1, sizeof *list->items))
 *         return false;                        // out of memory: list unchanged
 *     list->items[list->count++] = item;
 *
 * Memory: the owner frees `items` with free(). On failure nothing changes
 * (the old block stays valid), so callers can report the error and go on.
 */
#ifndef FHIR_ARRAY_H
#define FHIR_ARRAY_H

#include <stdbool.h>
#include <stddef.h>

/* `items_ptr` is the address of the owner's element pointer (any T **).
 * Grows it so at least `needed` elements of `element_size` bytes fit; the
 * first allocation holds at least 8. False on overflow or out of memory. */
bool fa_reserve(void *items_ptr, size_t *capacity, size_t needed, size_t element_size);

/* The growth rule alone, for owners whose blocks come from elsewhere (an arena):
 * the capacity to grow `capacity` to so `needed` fit, doubling from `first`
 * when it is 0. False when cap * element_size would overflow. */
bool fa_next_capacity(size_t capacity, size_t needed, size_t element_size, size_t first, size_t *cap);

#endif
