/*
 * gateway/http/metrics.h — counters, gauges and histograms, exposed in the
 * Prometheus text format (prefix mx_).
 *
 * A registry holds metric families; a family has a name, a help sentence, a
 * type and zero to MX_MAX_LABELS label names; each distinct combination of
 * label values is one series (mx_metric). Typical use:
 *
 *     mx_family *req = mx_counter(reg, "fhirgw_http_requests_total",
 *                                 "HTTP requests answered.", "route,status");
 *     mx_inc(mx_series(req, (const char *[]){"read", "200"}));
 *
 *     mx_family *lat = mx_histogram(reg, "fhirgw_store_commit_seconds",
 *                                   "Store commit latency.", NULL,
 *                                   MX_LATENCY_BUCKETS, MX_LATENCY_BUCKET_COUNT);
 *     mx_observe(mx_series(lat, NULL), 0.0031);
 *
 * Cost: updating a series is a few relaxed atomic adds on a per-thread shard
 * (MX_SHARDS cache-line-aligned copies per series, summed when rendered), so
 * workers do not bounce one cache line between cores. Looking a series up
 * walks a short append-only list without a lock; only creating a new label
 * combination takes the family's mutex. Callers on a hot path may keep the
 * mx_metric pointer: it stays valid until mx_registry_free.
 *
 * Threads: every function may be called from any thread, except
 * mx_registry_free, which must run when no other thread uses the registry.
 *
 * Memory: the registry owns families and series; mx_render returns a string
 * the caller frees with free(). Label values are copied. Names and help texts
 * are copied too.
 *
 * Limits: MX_MAX_LABELS labels per family; at most MX_MAX_SERIES series per
 * family (label values come from code, e.g. route names and status codes,
 * never from requests; past the limit all further combinations share one
 * overflow series whose labels read "overflow"), so a bug cannot grow memory
 * without bound.
 */
#ifndef GATEWAY_METRICS_H
#define GATEWAY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/util/limits.h"

#define MX_MAX_LABELS LIM(metrics_labels_max)   /* label names per family */
#define MX_MAX_SERIES LIM(metrics_series_max)   /* label combinations per family, then "overflow" */
#define MX_MAX_BUCKETS LIM(metrics_buckets_max) /* histogram upper bounds, +Inf excluded */
#define MX_SHARDS 8                             /* per-thread copies of each series */

/* Prometheus' default latency buckets, in seconds. */
extern const double MX_LATENCY_BUCKETS[];
#define MX_LATENCY_BUCKET_COUNT 14

typedef struct mx_registry mx_registry;
typedef struct mx_family mx_family;
typedef struct mx_metric mx_metric;

mx_registry *mx_registry_new(void);
void mx_registry_free(mx_registry *reg);

/*
 * Register a family. `labels` is a comma-separated list of label names
 * ("route,status") or NULL for none. Registering an existing name again
 * returns the existing family when type and labels agree, NULL otherwise
 * (also NULL for an invalid name, too many labels or out of memory).
 * Histogram bounds must be strictly increasing; they are copied.
 */
mx_family *mx_counter(mx_registry *reg, const char *name, const char *help, const char *labels);
mx_family *mx_gauge(mx_registry *reg, const char *name, const char *help, const char *labels);
mx_family *mx_histogram(mx_registry *reg, const char *name, const char *help, const char *labels, const double *bounds,
                        size_t bound_count);

/*
 * The series for one combination of label values (as many as the family has
 * label names; NULL when it has none). Created on first use. Never NULL for a
 * valid family (out of memory or over MX_MAX_SERIES yields the overflow
 * series); a NULL family gives NULL, and every update below ignores NULL.
 */
mx_metric *mx_series(mx_family *fam, const char *const *values);

void mx_inc(mx_metric *m);                      /* counter or gauge +1 */
void mx_add(mx_metric *m, uint64_t n);          /* counter or gauge +n */
void mx_gauge_add(mx_metric *m, int64_t delta); /* gauge, either direction */
void mx_gauge_set(mx_metric *m, int64_t value); /* gauge */
void mx_observe(mx_metric *m, double value);    /* histogram */

/* Read back (sums the shards): counters and gauges give their value,
 * histograms their observation count. For tests and bench output. */
int64_t mx_value(mx_metric *m);

/* The whole registry in the Prometheus text exposition format 0.0.4
 * (families in registration order). *len gets the length; NULL on out of
 * memory. The caller frees the result. */
char *mx_render(mx_registry *reg, size_t *len);

#endif
