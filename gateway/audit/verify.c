/*
 * gateway/audit/verify.c — walking an audit trail and its checkpoint file, and
 * naming the first problem (see audit.h, docs/audit.md).
 *
 * The walk recomputes every MAC in sequence order. Where one fails, a few
 * lookups by sequence number tell the kinds apart:
 *   - the next entry is authentic at this position: an entry was INSERTED
 *     (and the rest renumbered to hide the gap);
 *   - the next entry is authentic one position further on after this one's
 *     MAC: one was REMOVED and the rest renumbered;
 *   - a later entry is authentic here and this one there: REORDERED;
 *   - otherwise this entry was ALTERED (or put in at the end).
 * A gap in the numbers is a REMOVED entry; fewer entries than the last
 * checkpoint covers is a TRUNCATED trail; a checkpoint that is malformed or
 * badly signed is FORGED, and one whose MAC the trail does not have at its
 * seq is a MISMATCH.
 *
 * Memory: the checkpoints are held in one array for the walk; entries are
 * streamed. Nothing is kept after au_verify returns.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "gateway/audit/audit.h"

#define REORDER_SCAN_MAX 100000 /* entries looked at for the partner of a swap */

const char *au_problem_name(au_problem p)
{
    static const char *const names[] = {
        [AU_OK] = "ok",
        [AU_ALTERED] = "altered",
        [AU_REMOVED] = "removed",
        [AU_INSERTED] = "inserted",
        [AU_REORDERED] = "reordered",
        [AU_TRUNCATED] = "truncated",
        [AU_CHECKPOINT_FORGED] = "checkpoint-forged",
        [AU_CHECKPOINT_MISMATCH] = "checkpoint-mismatch",
    };
    return (unsigned)p < sizeof names / sizeof *names ? names[p] : "?";
}

static bool report(au_report *r, au_problem p, int64_t seq, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool report(au_report *r, au_problem p, int64_t seq, const char *fmt, ...)
{
    r->problem = p;
    r->seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return true;
}

/* ---- checkpoints ---- */

typedef struct cps {
    au_checkpoint *items;
    size_t count, cap;
} cps;

/* Reads and checks every line; false on an I/O error; a problem goes into r. */
static bool read_checkpoints(const au_signer *s, const char *path, cps *out, au_report *r)
{
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f) {
        if (!path || !*path || errno == ENOENT)
            return true;
        snprintf(r->message, sizeof r->message, "%s: %s", path, strerror(errno));
        return false;
    }
    char line[512];
    unsigned lineno = 0;
    bool ok = true;
    while (ok && !r->problem && fgets(line, sizeof line, f)) {
        lineno++;
        au_checkpoint c;
        au_cp_status st = au_checkpoint_parse(s, line, &c);
        int64_t last = out->count ? out->items[out->count - 1].seq : 0;
        if (st != AU_CP_OK || c.seq < last) {
            report(r, AU_CHECKPOINT_FORGED, c.seq, "checkpoint file line %u: %s", lineno,
                   st == AU_CP_MALFORMED       ? "not a checkpoint line"
                   : st == AU_CP_BAD_SIGNATURE ? "its signature does not verify"
                                               : "its sequence number goes backwards");
            r->line = lineno;
        } else if (!fa_reserve(&out->items, &out->cap, out->count + 1, sizeof *out->items)) {
            snprintf(r->message, sizeof r->message, "out of memory");
            ok = false;
        } else {
            c.line = lineno;
            out->items[out->count++] = c;
        }
    }
    fclose(f);
    return ok;
}

/* ---- telling the kinds apart ---- */

typedef struct walk {
    const au_keyring *k;
    const au_source *src;
} walk;

/* Is e, placed at position seq after prev, what the gateway wrote there (its MAC verifies)? */
static bool authentic_at(const walk *w, au_entry e, int64_t seq, const unsigned char prev[AU_MAC_LEN],
                         const unsigned char mac[AU_MAC_LEN])
{
    unsigned char m[AU_MAC_LEN];
    e.seq = seq;
    return au_mac(w->k, prev, &e, m) && !memcmp(m, mac, AU_MAC_LEN);
}

/* The stored entry with this seq; 1 found, 0 none, -1 error. */
static int get(const walk *w, int64_t seq, au_entry *e, unsigned char mac[AU_MAC_LEN])
{
    return w->src->get(w->src->arg, seq, e, mac);
}

/* Entry n (e, mac) does not verify after prev: which kind of problem is it? */
static bool classify(const walk *w, int64_t n, const au_entry *e, const unsigned char mac[AU_MAC_LEN],
                     const unsigned char prev[AU_MAC_LEN], au_report *r)
{
    au_entry next;
    unsigned char next_mac[AU_MAC_LEN];
    int got = get(w, n + 1, &next, next_mac);
    if (got < 0)
        return false;
    if (got && authentic_at(w, next, n, prev, next_mac))
        return report(r, AU_INSERTED, n,
                      "entry %" PRId64
                      " was not written by the gateway: inserted before the entry now numbered %" PRId64,
                      n, n + 1);
    if (got && authentic_at(w, next, n + 2, mac, next_mac))
        return report(r, AU_REMOVED, n, "an entry is missing at %" PRId64 " (removed, and the later ones renumbered)",
                      n);
    for (int64_t m = n + 1; m <= n + REORDER_SCAN_MAX; m++) {
        au_entry other, before;
        unsigned char other_mac[AU_MAC_LEN], before_mac[AU_MAC_LEN];
        got = get(w, m, &other, other_mac);
        if (got <= 0) {
            if (got < 0)
                return false;
            break;
        }
        if (!authentic_at(w, other, n, prev, other_mac))
            continue;
        /* other belongs at n; does e belong at m, after what was at m - 1 (now at n when m - 1 == n)? */
        if (m - 1 == n)
            memcpy(before_mac, other_mac, AU_MAC_LEN);
        else if ((got = get(w, m - 1, &before, before_mac)) <= 0)
            return got == 0 ? report(r, AU_ALTERED, n, "entry %" PRId64 " does not match its MAC", n) : false;
        if (authentic_at(w, *e, m, before_mac, mac)) {
            r->other_seq = m;
            return report(r, AU_REORDERED, n, "entries %" PRId64 " and %" PRId64 " changed places", n, m);
        }
        break;
    }
    return report(r, AU_ALTERED, n, "entry %" PRId64 " does not match its MAC (altered, or not written by the gateway)",
                  n);
}

/* ---- the walk ---- */

bool au_verify(const au_keyring *k, const au_signer *s, const char *checkpoint_path, const au_source *src, au_report *r)
{
    memset(r, 0, sizeof *r);
    cps cp = {0};
    bool ok = read_checkpoints(s, checkpoint_path, &cp, r);
    walk w = {k, src};
    unsigned char prev[AU_MAC_LEN] = {0}, mac[AU_MAC_LEN];
    int64_t expected = 1;
    size_t next_cp = 0;
    au_entry e;
    int got = 0;
    while (ok && !r->problem && (got = src->next(src->arg, &e, mac)) == 1) {
        r->entries++;
        if (e.seq != expected) {
            report(r, e.seq > expected ? AU_REMOVED : AU_ALTERED, expected,
                   e.seq > expected ? "entries %" PRId64 " to %" PRId64 " are missing"
                                    : "entry %" PRId64 " appears again (as %" PRId64 ")",
                   expected, e.seq > expected ? e.seq - 1 : e.seq);
            break;
        }
        unsigned char m[AU_MAC_LEN];
        if (!au_mac(k, prev, &e, m)) {
            report(r, AU_ALTERED, e.seq, "entry %" PRId64 " names a key the key file does not have (%s)", e.seq,
                   e.key_id);
            break;
        }
        if (memcmp(m, mac, AU_MAC_LEN)) {
            ok = classify(&w, e.seq, &e, mac, prev, r);
            break;
        }
        for (; next_cp < cp.count && cp.items[next_cp].seq == e.seq; next_cp++, r->checkpoints++)
            if (memcmp(cp.items[next_cp].mac, mac, AU_MAC_LEN)) {
                r->line = cp.items[next_cp].line;
                report(r, AU_CHECKPOINT_MISMATCH, e.seq,
                       "checkpoint file line %u: the trail's MAC at entry %" PRId64 " is not the one checkpointed",
                       r->line, e.seq);
                break;
            }
        memcpy(prev, mac, AU_MAC_LEN);
        expected++;
    }
    if (got < 0) {
        snprintf(r->message, sizeof r->message, "reading the audit entries failed");
        ok = false;
    }
    if (ok && !r->problem && cp.count && cp.items[cp.count - 1].seq >= expected) {
        r->line = cp.items[cp.count - 1].line;
        report(r, AU_TRUNCATED, expected,
               "the trail ends at entry %" PRId64 " but checkpoint file line %u covers up to %" PRId64
               ": entries from %" PRId64 " on were removed",
               expected - 1, r->line, cp.items[cp.count - 1].seq, expected);
    }
    free(cp.items);
    return ok;
}
