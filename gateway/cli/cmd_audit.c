/*
 * gateway/cli/cmd_audit.c — `fhirgw audit verify --config FILE | --dev DIR`:
 * walks the NEN 7513 audit trail (its HMAC chain, through the store
 * interface) and the signed checkpoint file, and reports the first problem
 * with its sequence number (gateway/audit/verify.c says how the kinds are
 * told apart; docs/audit.md the design).
 *
 * Exit status: 0 intact, 1 a problem found, 2 usage, configuration or I/O.
 * It opens the store as serve does (which migrates an older schema), without
 * the audit keys, so it appends nothing. Memory: everything is freed before
 * returning.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cli/cli.h"
#include "gateway/store/store.h"
#include "gateway/util/config.h"

#define PAGE 512 /* entries read at once */

typedef struct walker {
    st_store *store;
    st_audit_row *rows;
    size_t count, next;
    int64_t last_seq;
    bool done;
} walker;

static int next_entry(void *arg, au_entry *e, unsigned char mac[AU_MAC_LEN])
{
    walker *w = arg;
    if (w->next == w->count && !w->done) {
        free(w->rows);
        w->rows = NULL;
        w->count = w->next = 0;
        st_audit_query q = {.ascending = true, .after_seq = w->last_seq, .count = PAGE};
        st_error err;
        if (st_audit_list(w->store, &q, &w->rows, &w->count, &err) != ST_OK) {
            fprintf(stderr, "fhirgw audit verify: reading the trail: %s\n", err.message);
            return -1;
        }
        w->done = w->count < PAGE;
    }
    if (w->next == w->count)
        return 0;
    *e = w->rows[w->next].entry;
    memcpy(mac, w->rows[w->next].mac, AU_MAC_LEN);
    w->last_seq = e->seq;
    w->next++;
    return 1;
}

static int get_entry(void *arg, int64_t seq, au_entry *e, unsigned char mac[AU_MAC_LEN])
{
    walker *w = arg;
    st_audit_row row;
    st_error err;
    st_status s = st_audit_get(w->store, seq, &row, &err);
    if (s == ST_NOT_FOUND)
        return 0;
    if (s != ST_OK) {
        fprintf(stderr, "fhirgw audit verify: reading entry %" PRId64 ": %s\n", seq, err.message);
        return -1;
    }
    *e = row.entry;
    memcpy(mac, row.mac, AU_MAC_LEN);
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: fhirgw audit verify --config FILE | --dev DIR\n");
    return 2;
}

/* The settings: from the config file, or those serve --dev DIR uses. */
static bool settings(int argc, char **argv, gw_config *c)
{
    return argc == 4 && !strcmp(argv[1], "verify") && cli_settings("fhirgw audit verify", argv[2], argv[3], c);
}

int cli_audit_verify(const gw_config *c)
{
    char err[1024];
    au_keyring *keys = au_keyring_load(c->audit_key_file, err, sizeof err);
    au_signer *signer = keys ? au_signer_load(c->audit_checkpoint_key, err, sizeof err) : NULL;
    if (!signer) {
        fprintf(stderr, "fhirgw audit verify: %s\n", err);
        au_keyring_free(keys);
        return 2;
    }
    st_config sc = {.path = c->store_path};
    st_error serr;
    st_store *store = st_open(&sc, &serr);
    if (!store) {
        fprintf(stderr, "fhirgw audit verify: %s: %s\n", c->store_path, serr.message);
        au_keyring_free(keys);
        au_signer_free(signer);
        return 2;
    }
    walker w = {.store = store};
    au_source src = {&w, next_entry, get_entry};
    au_report r;
    bool ok = au_verify(keys, signer, c->audit_checkpoint_file, &src, &r);
    int status = 2;
    if (!ok) {
        fprintf(stderr, "fhirgw audit verify: %s\n", r.message);
    } else if (r.problem) {
        printf("%s: seq %" PRId64 ": %s\n", au_problem_name(r.problem), r.seq, r.message);
        status = 1;
    } else {
        printf("ok: %" PRId64 " entries, %" PRId64 " checkpoints verified\n", r.entries, r.checkpoints);
        status = 0;
    }
    free(w.rows);
    st_close(store);
    au_keyring_free(keys);
    au_signer_free(signer);
    return status;
}

int cmd_audit(int argc, char **argv)
{
    gw_config c;
    if (!settings(argc, argv, &c))
        return usage();
    return cli_audit_verify(&c);
}
