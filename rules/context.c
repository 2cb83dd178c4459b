/*
 * rules/context.c — the wrappers of rules/context.h over an implementation's ops.
 * Nothing allocated.
 */
#include "rules/context.h"

bool rl_resolve(const rl_context *c, rl_res from, const char *ref, size_t len, rl_res *out)
{
    return c->ops && c->ops->resolve && c->ops->resolve(c->self, from, ref, len, out);
}

bool rl_resolve_ref(const rl_context *c, rl_res from, uint32_t ref_obj, rl_res *out)
{
    if (ref_obj == RL_NO_NODE || from.doc->nodes[ref_obj].type != FJ_OBJECT)
        return false;
    uint32_t r = fj_get(from.doc, ref_obj, "reference");
    if (r == UINT32_MAX || from.doc->nodes[r].type != FJ_STRING)
        return false;
    return rl_resolve(c, from, fj_str(from.doc, r), from.doc->nodes[r].len, out);
}

void rl_related(const rl_context *c, rl_kind kind, rl_res of, const char *of_ref, rl_each_fn fn, void *arg)
{
    if (c->ops && c->ops->related)
        c->ops->related(c->self, kind, of, of_ref, fn, arg);
}
