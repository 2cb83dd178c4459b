/*
 * gateway/rest/directory.h — every registered organisation's own directory entry
 * (prefix dir_).
 *
 * Each organisation in the registry (organisations.tsv) gets an
 * Organization resource with id "ura-<URA>", its URA as identifier and its
 * name, owned by itself: the entry others address Tasks to
 * (Organization/ura-90000301), which only it may change and nobody may
 * delete (docs/access.md). Entries that exist are left as they are.
 *
 * An entry is written as that organisation would write it through the API:
 * built with json-c (a name with quotes or backslashes stays valid JSON),
 * parsed and validated, checked, indexed by the search indexer and given
 * its access tags by the same write preparation as a client's create or
 * update (rest_write.h), so it is found by every search parameter, e.g.
 * GET /Organization?identifier=http://fhir.nl/fhir/NamingSystem/ura|<URA>.
 *
 * Uses rest_write. Blocks until each entry is committed (st_submit_wait):
 * call it from the controlling thread before serving, never from a worker.
 */
#ifndef GATEWAY_DIRECTORY_H
#define GATEWAY_DIRECTORY_H

#include <stdbool.h>

#include "gateway/rest/rest.h"

/* Publish the missing entries of the organisations listed in the registry file `tsv` (as loaded into the app's
 * organisation table); false when the file cannot be read or an entry could not be written (why on stderr). */
bool dir_publish_registered(rest_app *app, const char *tsv);

#endif
