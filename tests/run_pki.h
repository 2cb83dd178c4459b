/*
 * tests/run_pki.h — one test PKI (certs/make-test-pki) for a whole test run:
 * made in the Criterion runner before the first test starts (a report hook),
 * removed after the last; the tests, each in its own process, find it
 * through the environment. make-test-pki costs far more than most tests'
 * own work, and its output is the same for every test. A test that changes
 * PKI files (rotates a key, rewrites the registry) works on its own copy
 * (rp_copy), so tests stay independent.
 *
 * Linking this file in is what installs the hooks: a test binary that uses
 * rp_dir or rp_copy gets them.
 *
 * Memory: rp_dir's string belongs to the environment (valid for the process).
 */
#ifndef TESTS_RUN_PKI_H
#define TESTS_RUN_PKI_H

/* The run's PKI folder (asserts the runner made it). */
const char *rp_dir(void);

/* A copy of the run's PKI at dest, a path that does not exist yet; when the runner could not make one, dest is
 * made by make-test-pki itself (asserts either way). */
void rp_copy(const char *dest);

#endif
