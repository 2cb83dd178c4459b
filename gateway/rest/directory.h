/*
 * gateway/rest/directory.h — every registered organisation's own directory entry
 * (prefix dir_).
 *
 * Each organisation in the registry (organisations.tsv) gets an
 * Organization resource with id "ura-<URA>", its URA as identifier and its
 * name, owned by itself: the entry others address Tasks to
 * (Organization/ura-90000301), which only it may change and nobody may
 * delete (docs/access.md). Entries that exist are left as they are.
 */
#ifndef GATEWAY_DIRECTORY_H
#define GATEWAY_DIRECTORY_H

#include <stdbool.h>

#include "gateway/store/store.h"

/* Publish the missing entries of the registry file `tsv`; false when the file cannot be read or a write failed. */
bool dir_publish_registered(st_store *store, const char *tsv);

#endif
