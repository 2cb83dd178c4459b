/*
 * gateway/rest/rest_query.h — parsed search parameters (gateway/search) as the
 * store's query, with the caller's visibility; and the conditional searches
 * of conditional interactions (rest_query.c).
 *
 * Uses answer (rest_conditional_match answers its failures).
 * Memory: rest_to_st_query fills a rest_stq whose arrays the caller frees
 * with rest_stq_free; it points into the sq_query, which must outlive it.
 */
#ifndef GATEWAY_REST_QUERY_H
#define GATEWAY_REST_QUERY_H

#include "gateway/rest/rest_internal.h"

/* The caller's visibility for linked resources (chains, _has, includes), as a direct read would allow. */
void rest_linked_visibility(const az_caller *caller, rest_stq *out);
/* sq_query -> the store's query; visible only to the caller unless the type is a shared directory.
 * References under base_url are taken as relative ones. */
bool rest_to_st_query(const sq_query *sq, const az_caller *caller, const char *base_url, rest_stq *out);
/* The caller-visible resources of `type` matching `query` (at most 2); 0, or the HTTP status with issues. */
int rest_conditional_search(rq *q, const fs_type *type, const char *query, st_list *found, oo_list *issues);
/* The same, answering the request on failure (false). */
bool rest_conditional_match(rq *q, const fs_type *type, const char *query, st_list *found);

#endif
