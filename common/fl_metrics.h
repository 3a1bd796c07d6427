/* fl_metrics: a small Prometheus registry (counters, gauges, latency histograms) rendered in the
 * text exposition format 0.0.4.
 *
 * Threads: none. A registry and its handles belong to one thread (the worker's loop thread);
 * nothing here locks. Render from the same thread (the /metrics handler runs on the loop).
 *
 * Names: metric names are prefixed "<prefix>_" and must match [a-zA-Z_:][a-zA-Z0-9_:]*.
 * The first call with a name registers the family with its type and help text; later calls
 * with the same name must use the same type (help is then ignored).
 *
 * Labels: a series is chosen by a pre-formatted label string, e.g. `type="ci_report",lane="a"`
 * (NULL or "" for none), with values already escaped as the format wants (\\, \" and \n); build
 * one with fl_metrics_label_append when a value comes from outside. A new label string is
 * validated once, when its series is created (names, quoting, escapes, UTF-8, at most 32 pairs,
 * no repeated or reserved "__" names); a bad one is rejected with FL_EINVAL so that a single
 * hostile value cannot break the whole scrape.
 *
 * Numbers are printed with "%.*g" and parsed back with strtod, so the program must run in the C
 * locale (the default unless it calls setlocale). Out of memory aborts. */
#ifndef FL_METRICS_H
#define FL_METRICS_H

#include <stddef.h>

typedef struct fl_metrics fl_metrics_t;
typedef struct fl_metrics_counter fl_metrics_counter_t;
typedef struct fl_metrics_gauge fl_metrics_gauge_t;
typedef struct fl_metrics_histogram fl_metrics_histogram_t;

/* Upper bounds (seconds) of the histogram buckets, ascending; a final le="+Inf" bucket is
 * implied: 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10. */
#define FL_METRICS_NBUCKETS 14
extern const double fl_metrics_buckets[FL_METRICS_NBUCKETS];

/* A new, empty registry whose metric names are prefixed "<prefix>_" (no prefix when prefix is
 * NULL or ""; prefix is copied). Returns NULL if prefix is not a valid metric name. The caller
 * owns it and frees it with fl_metrics_destroy. */
fl_metrics_t *fl_metrics_new(const char *prefix);

/* Free the registry and every handle it gave out. NULL is a no-op. */
void fl_metrics_destroy(fl_metrics_t *m);

/* Add v (>= 0) to the counter series name{labels}, registering it on first use. Returns 0, or
 * FL_EINVAL for a bad name or label string, a name registered with another type, or v < 0 or
 * NaN (the series is then unchanged). */
int fl_metrics_counter_add(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                           double v);

/* Set (or add v to) the gauge series name{labels}, registering it on first use. Returns 0 or
 * FL_EINVAL (bad name or labels, or a name registered with another type). */
int fl_metrics_gauge_set(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                         double v);
int fl_metrics_gauge_add(fl_metrics_t *m, const char *name, const char *help, const char *labels,
                         double v);

/* Record one observation (in seconds) in the histogram series name{labels}, registering it on
 * first use with the default buckets. Renders name_bucket{...,le="..."} (cumulative), name_sum
 * and name_count. Labels may not use the reserved name "le". Returns 0 or FL_EINVAL. */
int fl_metrics_histogram_observe(fl_metrics_t *m, const char *name, const char *help,
                                 const char *labels, double seconds);

/* Fast path: look up (registering on first use) a series once and keep the handle, which the
 * registry owns and which stays valid until fl_metrics_destroy. Return NULL where the calls
 * above return FL_EINVAL. The update functions are no-ops on a NULL handle; fl_metrics_inc
 * ignores v < 0 and NaN. */
fl_metrics_counter_t *fl_metrics_counter(fl_metrics_t *m, const char *name, const char *help,
                                         const char *labels);
fl_metrics_gauge_t *fl_metrics_gauge(fl_metrics_t *m, const char *name, const char *help,
                                     const char *labels);
fl_metrics_histogram_t *fl_metrics_histogram(fl_metrics_t *m, const char *name, const char *help,
                                             const char *labels);
void fl_metrics_inc(fl_metrics_counter_t *c, double v);
void fl_metrics_set(fl_metrics_gauge_t *g, double v);
void fl_metrics_add(fl_metrics_gauge_t *g, double v);
void fl_metrics_observe(fl_metrics_histogram_t *h, double seconds);

/* Append `key="value"` to the NUL-terminated label string in buf (with a comma first when buf is
 * not empty), escaping value (\\, \", \n) and replacing invalid UTF-8 with U+FFFD. Returns 0, or
 * FL_EINVAL if key is not a valid label name or the result does not fit in cap bytes (buf is
 * then unchanged). */
int fl_metrics_label_append(char *buf, size_t cap, const char *key, const char *value);

/* The whole registry in the Prometheus text format 0.0.4 ("text/plain; version=0.0.4"):
 * families in registration order, each with # HELP (when help was given) and # TYPE once,
 * then its series in registration order. Returns a malloc'd NUL-terminated string the caller
 * frees; *len (when len is not NULL) gets its length without the NUL. */
char *fl_metrics_render(const fl_metrics_t *m, size_t *len);

/* The Content-Type to serve fl_metrics_render's text with (static string). */
#define FL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
