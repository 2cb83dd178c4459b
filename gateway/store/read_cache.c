/*
 * gateway/store/read_cache.c — see read_cache.h.
 *
 * A direct-mapped table: type/id hashes to one slot, a put replaces what was
 * there. The directory is small (a few hundred organisations and their
 * endpoints), so collisions are rare and cost one read from the store.
 */
#include "gateway/store/read_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/store/store_backend.h"

static const char *const CACHED_TYPES[] = {"Organization", "Endpoint"};

typedef struct rc_entry {
    uint64_t generation; /* 0: empty (generations start at 1) */
    st_resource res;     /* as rc_put was given it; access tags joined again in tags */
    char *tags;          /* joined by ST__TAG_SEPARATOR, "" for none */
} rc_entry;

struct rc_cache {
    pthread_mutex_t lock;
    _Atomic uint64_t generation;
    _Atomic uint64_t hits;
    rc_entry slots[RC_SLOTS];
};

rc_cache *rc_new(void)
{
    rc_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->generation, 1);
    return c;
}

static void clear_entry(rc_entry *e)
{
    st_resource_free(&e->res);
    free(e->tags);
    memset(e, 0, sizeof *e);
}

void rc_free(rc_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < RC_SLOTS; i++)
        clear_entry(&c->slots[i]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool rc_cached_type(const char *type)
{
    for (size_t i = 0; i < sizeof CACHED_TYPES / sizeof *CACHED_TYPES; i++)
        if (!strcmp(type, CACHED_TYPES[i]))
            return !st_sealed_type(type);
    return false;
}

uint64_t rc_generation(const rc_cache *c)
{
    return atomic_load_explicit(&c->generation, memory_order_acquire);
}

void rc_invalidate(rc_cache *c)
{
    atomic_fetch_add_explicit(&c->generation, 1, memory_order_release);
}

uint64_t rc_hits(const rc_cache *c)
{
    return atomic_load_explicit(&c->hits, memory_order_relaxed);
}

static rc_entry *slot_of(rc_cache *c, const char *type, const char *id)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a over type, '/', id */
    for (const char *p = type; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return &c->slots[h % RC_SLOTS];
}

static bool fill_from(st_resource *out, const rc_entry *e)
{
    const st_resource *r = &e->res;
    return st__resource_fill(out, r->type, r->id, r->version, r->last_updated_ms, r->method, r->json, r->json_len,
                             r->owner, e->tags);
}

bool rc_get(rc_cache *c, const char *type, const char *id, st_resource *out)
{
    uint64_t now = rc_generation(c);
    rc_entry *e = slot_of(c, type, id);
    pthread_mutex_lock(&c->lock);
    bool hit = e->generation == now && !strcmp(e->res.type, type) && !strcmp(e->res.id, id) && fill_from(out, e);
    pthread_mutex_unlock(&c->lock);
    if (hit)
        atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
    return hit;
}

/* The access tags joined as the store keeps them; NULL when out of memory. */
static char *joined_tags(const st_resource *r)
{
    size_t len = 0;
    for (size_t i = 0; i < r->access_tag_count; i++)
        len += strlen(r->access_tags[i]) + 1;
    char *out = malloc(len + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < r->access_tag_count; i++) {
        size_t n = strlen(r->access_tags[i]);
        memcpy(p, r->access_tags[i], n);
        p += n;
        if (i + 1 < r->access_tag_count)
            *p++ = ST__TAG_SEPARATOR;
    }
    *p = '\0';
    return out;
}

void rc_put(rc_cache *c, uint64_t generation, const st_resource *r)
{
    if (r->deleted || !r->json || r->json_len > RC_JSON_MAX || !rc_cached_type(r->type))
        return;
    rc_entry fresh = {.generation = generation, .tags = joined_tags(r)};
    if (!fresh.tags || !st__resource_fill(&fresh.res, r->type, r->id, r->version, r->last_updated_ms, r->method,
                                          r->json, r->json_len, r->owner, fresh.tags)) {
        clear_entry(&fresh);
        return;
    }
    rc_entry *e = slot_of(c, r->type, r->id), old = {0};
    pthread_mutex_lock(&c->lock);
    if (generation == rc_generation(c)) { /* else a commit came between the read and now: keep nothing */
        old = *e;
        *e = fresh;
        fresh = (rc_entry){0};
    }
    pthread_mutex_unlock(&c->lock);
    clear_entry(&old); /* outside the lock */
    clear_entry(&fresh);
}
