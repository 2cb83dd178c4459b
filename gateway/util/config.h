/*
 * gateway/util/config.h — every setting of `fhirgw serve`, in one table (prefix cfg_).
 *
 * The config file is plain text, one setting per line, Redis style:
 *
 *     # comment
 *     listen 127.0.0.1:8443
 *     max_body_bytes 16m
 *
 * The table in config.c names each setting, its type, its default and a
 * sentence of documentation; `fhirgw config` prints the whole table as a
 * commented config file (deploy/fhirgw.conf is that output, tuned for
 * production). Unknown keys and malformed values are errors, reported with
 * the file name and line number: a typo must not silently fall back to a
 * default.
 *
 * Memory: gw_config holds fixed-size strings; nothing to free.
 */
#ifndef GATEWAY_CONFIG_H
#define GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_PATH_MAX 512

typedef struct gw_config {
    /* network */
    char listen[CFG_PATH_MAX];      /* host:port of the FHIR endpoint (TLS, client certificates) */
    char ops_listen[CFG_PATH_MAX];  /* host:port of /healthz, /readyz, /metrics (plain HTTP) */
    char base_url[CFG_PATH_MAX];    /* the public base URL, for Location and Bundle links */
    int64_t workers;                /* event-loop threads; 0 = one per core */
    /* TLS and identity */
    char tls_cert[CFG_PATH_MAX];
    char tls_key[CFG_PATH_MAX];
    char tls_client_ca[CFG_PATH_MAX];
    char tls_crl[CFG_PATH_MAX];
    char organisations[CFG_PATH_MAX]; /* TSV: name, ura, role(s), cert, fingerprint */
    /* storage */
    char store_path[CFG_PATH_MAX];
    int64_t store_batch_max;
    int64_t store_batch_wait_us;
    /* FHIR */
    char conformance[CFG_PATH_MAX]; /* folder of profiles, extensions and terminology; empty = none */
    int64_t page_size_default;
    int64_t page_size_max;
    int64_t page_max_bytes;
    /* limits */
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int64_t max_connections;
    int64_t request_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t drain_timeout_ms;
    int64_t max_inflight_bytes;    /* request + answer bytes held in memory, all connections */
    int64_t rate_limit_per_second; /* per organisation; 0 = off */
    int64_t rate_limit_burst;
    int64_t referential_integrity; /* 1: refuse writes whose references do not resolve here (422) */
    int64_t log_allowed_access;    /* 1: log allowed access decisions too, not only refusals */
    /* logs */
    char access_log[CFG_PATH_MAX]; /* file, "-" for stdout, "" for none */
    char error_log[CFG_PATH_MAX];  /* file, "-" for stderr */
} gw_config;

/* Fill every setting with its default. */
void cfg_defaults(gw_config *c);

/* Read a config file over the current values. Returns false with "file:line: reason" in err. */
bool cfg_load(gw_config *c, const char *path, char *err, size_t errlen);

/* Set one setting from text ("max_body_bytes", "16m"); false with a reason in err. */
bool cfg_set(gw_config *c, const char *key, const char *value, char *err, size_t errlen);

/* Print every setting with its documentation and current value: a valid config file. */
void cfg_print(const gw_config *c, FILE *out);

#endif
