/*
 * tests/run_pki.c — see run_pki.h.
 */
#include "tests/run_pki.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/child_gateway.h"

#define MAKE_TEST_PKI TESTS_DIR "/../certs/make-test-pki"
#define PKI_ENV "FHIRGW_TEST_RUN_PKI" /* the runner's PKI, for the tests it starts */

static char run_dir[64]; /* in the runner: the folder to remove at the end ("" when none) */

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char err[256];
    strcpy(run_dir, "/tmp/fhirgw-run-pki-XXXXXX");
    if (!mkdtemp(run_dir))
        run_dir[0] = '\0';
    else if (cg_make_pki(MAKE_TEST_PKI, run_dir, err, sizeof err))
        setenv(PKI_ENV, run_dir, 1);
    else /* the tests say so (rp_dir), or make their own (rp_copy) */
        fprintf(stderr, "run_pki: %s\n", err);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
    if (run_dir[0] && system(cmd) != 0)
        fprintf(stderr, "run_pki: could not remove %s\n", run_dir);
}

const char *rp_dir(void)
{
    const char *dir = getenv(PKI_ENV);
    cr_assert_not_null(dir, "certs/make-test-pki failed in the runner; run it by hand to see why");
    return dir;
}

void rp_copy(const char *dest)
{
    const char *dir = getenv(PKI_ENV);
    char cmd[1024], err[256];
    if (!dir) {
        cr_assert(cg_make_pki(MAKE_TEST_PKI, dest, err, sizeof err), "%s", err);
        return;
    }
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, dest);
    cr_assert_eq(system(cmd), 0, "copying the run's PKI from %s", dir);
}
