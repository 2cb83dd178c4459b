/*
 * gateway/store/read_cache.h — the current versions of the directory's
 * resources (Organization, Endpoint) kept in memory for st_read.
 *
 * Why: every handover reads the receiver's directory entry and its
 * notification Endpoint, and the relay reads both again per delivery. Each
 * was a read transaction of its own, and in WAL mode a reader's page cache
 * is discarded whenever another connection has committed, so under load
 * every such read walked its B-trees from the file again (about 14 us: 4% of
 * the gateway's CPU under the handover benchmark). The directory changes a
 * few times a day.
 *
 * Invalidation by generation: the commit thread calls rc_invalidate after
 * the COMMIT of any batch that wrote a cached type has made it visible to
 * readers (never before: a reader could then read the old row and keep it
 * under the new generation). A reader takes the generation before its read
 * and rc_put keeps the result only under that generation, so whatever a
 * commit changed is never served after its rc_invalidate. A read that
 * overlaps the commit may be answered from either side of it, as a read
 * from the store may. Entries of an older generation are misses, replaced
 * lazily.
 *
 * One process, one writer: a backend shared by several gateway instances
 * (PostgreSQL, later) sees commits this process did not make and must not
 * use it (st_config.read_cache).
 *
 * Sealed types are never cached (their plaintext stays in the store), nor
 * deletions, nor bodies over RC_JSON_MAX.
 *
 * Memory: the cache owns copies of what it keeps (at most RC_SLOTS entries
 * of RC_JSON_MAX bytes); rc_get fills the caller's st_resource with a copy
 * of its own, freed with st_resource_free. Thread-safe: one mutex, held for
 * a look-up and a copy.
 */
#ifndef GATEWAY_STORE_READ_CACHE_H
#define GATEWAY_STORE_READ_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/store/store.h"

#define RC_SLOTS 1024
#define RC_JSON_MAX (256 * 1024)

typedef struct rc_cache rc_cache;

rc_cache *rc_new(void); /* NULL when out of memory (the store then reads without it) */
void rc_free(rc_cache *c);

/* Is the type one the cache keeps? */
bool rc_cached_type(const char *type);

/* The generation to pass to rc_put: read before the backend read. */
uint64_t rc_generation(const rc_cache *c);

/* The current version of type/id, copied into out, when the cache has it for the current generation. */
bool rc_get(rc_cache *c, const char *type, const char *id, st_resource *out);

/* Keep r (a current version as read, its body opened) if generation is still the current one. */
void rc_put(rc_cache *c, uint64_t generation, const st_resource *r);

/* A cached type was written and the write is visible to readers: everything kept so far is stale. */
void rc_invalidate(rc_cache *c);

/* Reads answered from the cache since rc_new. */
uint64_t rc_hits(const rc_cache *c);

#endif
