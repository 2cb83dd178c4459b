/*
 * gateway/util/config.h — every setting of `fhirgw serve` (prefix cfg_).
 *
 * The config file is plain text, one setting per line, Redis style:
 *
 *     # comment
 *     listen 127.0.0.1:8443
 *     max_body_bytes 16m
 *
 * Two tables make the settings: config.c's own for the text settings
 * (addresses, files) and switches, and the limits table
 * (gateway/util/limits.h) for every number, of which the rows marked SET are
 * settings. `fhirgw config` prints both as a commented config file: every
 * setting with its sentence and default, and every fixed limit as a comment
 * saying it is fixed (deploy/fhirgw.conf is that output, tuned for
 * production). Unknown keys, fixed limits, malformed or out-of-range values
 * and over-long lines are errors, reported with the file name and line
 * number: a typo must not silently fall back to a default, and nothing is
 * cut to fit.
 *
 * Sizes take k/m/g suffixes (powers of 1024); durations in ms take ms/s/m
 * (plain numbers are milliseconds), durations in us take us/ms/s. A `#`
 * starts a comment at the beginning of a line or after a blank, so a path
 * may contain one.
 *
 * Memory: gw_config holds fixed-size strings; nothing to free.
 */
#ifndef GATEWAY_CONFIG_H
#define GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gateway/util/limits.h"

#define CFG_PATH_MAX (LIM(config_value_max) + 1)

typedef struct gw_config {
    /* network */
    char listen[CFG_PATH_MAX];     /* host:port of the FHIR endpoint (TLS, client certificates) */
    char ops_listen[CFG_PATH_MAX]; /* host:port of /healthz, /readyz, /metrics (plain HTTP) */
    char base_url[CFG_PATH_MAX];   /* the public base URL, for Location and Bundle links */
    /* TLS and identity */
    char tls_cert[CFG_PATH_MAX];
    char tls_key[CFG_PATH_MAX];
    char tls_client_ca[CFG_PATH_MAX];
    char tls_crl[CFG_PATH_MAX];
    char organisations[CFG_PATH_MAX]; /* TSV: name, ura, role(s), cert, fingerprint */
    /* storage and FHIR */
    char store_path[CFG_PATH_MAX];
    char conformance[CFG_PATH_MAX]; /* folder of profiles, extensions and terminology; empty = none */
    /* switches (0 or 1) */
    int64_t referential_integrity; /* 1: refuse writes whose references do not resolve here (422) */
    int64_t log_allowed_access;    /* 1: log allowed access decisions too, not only refusals */
    /* the audit trail (docs/audit.md) */
    char audit_key_file[CFG_PATH_MAX];        /* HMAC keys of the chain: "<key-id> <64 hex>" lines */
    char audit_checkpoint_key[CFG_PATH_MAX];  /* Ed25519 key (PEM) that signs checkpoints */
    char audit_checkpoint_file[CFG_PATH_MAX]; /* the append-only checkpoint file, outside the database */
    /* outbound HTTPS (gateway/net/outbound.h): the gateway as a client of providers' endpoints */
    char outbound_cert[CFG_PATH_MAX]; /* the gateway's client certificate (PEM, with chain) */
    char outbound_key[CFG_PATH_MAX];  /* its private key (PEM) */
    char outbound_ca[CFG_PATH_MAX];   /* CA certificates a peer's server certificate must chain to */
    /* the insurer maps (docs/mappings.md) */
    char pseudonym_key_file[CFG_PATH_MAX]; /* the pseudonym key: 32 to 128 hex digits */
    char maps_dir[CFG_PATH_MAX];           /* the maps $transform and /insurer run; "" = none */
    /* logs */
    char access_log[CFG_PATH_MAX]; /* file, "-" for stdout, "" for none */
    char error_log[CFG_PATH_MAX];  /* file, "-" for stderr */
    /* every settable limit, named as its row in gateway/util/limits.h (max_body_bytes, workers, ...) */
    LIM_CONFIG_FIELDS
} gw_config;

/* Fill every setting with its default. */
void cfg_defaults(gw_config *c);

/* Read a config file over the current values. Returns false with "file:line: reason" in err. */
bool cfg_load(gw_config *c, const char *path, char *err, size_t errlen);

/* Set one setting from text ("max_body_bytes", "16m"); false with a reason in err. */
bool cfg_set(gw_config *c, const char *key, const char *value, char *err, size_t errlen);

/* Print every setting with its documentation and current value, and every fixed limit as a
 * comment: a valid config file. */
void cfg_print(const gw_config *c, FILE *out);

#endif
