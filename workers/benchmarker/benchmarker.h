/* benchmarker: the pure decision logic of the benchmarker worker.
 *
 * No Kafka, Redis or libuv here: the shell decodes events, loads the base-branch history and the
 * pending halves of a change from Redis, calls these functions, and writes what they return.
 *
 * ## Verdict of one metric (benchmarker_metric_judge)
 *
 * Worsening is a signed percent, positive = worse in the metric's direction (fl_stats). With
 * T = the threshold (the metric's own, else cfg.threshold_percent), c = cfg.confidence and
 * alpha = 1 - c:
 *
 *   shift e [L, U]  Hodges-Lehmann estimate of the candidate's shift against the baseline with its
 *                   two-sided c interval, as worsening percent. SCALE model when every sample is
 *                   > 0 (on log samples: a ratio, so e is also the change of every quantile,
 *                   p95 included, when the change scales the distribution); LOCATION model
 *                   otherwise (raw samples, relative to the baseline p95).
 *   p               two-sided Mann-Whitney p-value (exact below 50 samples a side without ties).
 *   tail [Lt, Ut]   seeded percentile-bootstrap c interval of the p95's worsening percent.
 *
 *   1. a side has fewer than cfg.min_samples samples       -> INCONCLUSIVE  TOO_FEW_SAMPLES
 *      (no baseline and no history                          -> INCONCLUSIVE  NO_BASELINE,
 *       history in another unit / direction                 -> INCONCLUSIVE  UNIT_MISMATCH /
 *                                                                           DIRECTION_MISMATCH,
 *       history holding a NaN / negative sample (our state) -> INCONCLUSIVE  BAD_HISTORY,
 *       LOCATION model with a zero baseline p95             -> INCONCLUSIVE  ZERO_BASELINE)
 *   2. L > T and p < alpha                                  -> REGRESSION    P95_REGRESSION
 *   3. both sides >= cfg.tail_min_samples and Lt > T        -> REGRESSION    P95_TAIL_REGRESSION
 *   4. U < -T and p < alpha                                 -> IMPROVEMENT   P95_IMPROVEMENT
 *   5. e > T                                                -> INCONCLUSIVE  POSSIBLE_REGRESSION
 *   6. U > cfg.noise_factor * T                             -> INCONCLUSIVE  NOISY
 *   7. otherwise                                            -> PASS
 *
 * Why this rule: a REGRESSION needs the whole interval above the threshold, not just the estimate.
 * Then a change whose true worsening is at most T is called a regression by rule 2 with
 * probability at most alpha / 2 whatever the noise (the interval is exact under the shift model
 * without ties, asymptotic otherwise), so neither noise on shared CI runners (A/A) nor a real but
 * tolerated slowdown (2 % under a 5 % threshold) blocks a change. The estimate alone above T (5)
 * or an interval too wide to rule out a worsening of noise_factor x T (6) is "we cannot tell":
 * INCONCLUSIVE, which fails the change by default (fail closed: noise never passes).
 * The p95 is reported but judged through the shift: with 30-50 samples a side the sample p95 is
 * about twice as noisy as the shift estimate (and its bootstrap interval too coarse to trust), too
 * noisy to resolve a 5 % threshold. Only with tail_min_samples a side does rule 3 judge the p95 on
 * its own bootstrap interval, to catch a slower tail that leaves the bulk unchanged.
 * Limits: a tail-only change is seen by rule 3 only, so not with few samples; with few samples a
 * real regression near the threshold is INCONCLUSIVE rather than REGRESSION (it still fails); the
 * rule's detection power is bounded by the data (tests/unit/test_decision_quality.c prints it).
 *
 * Overall: any REGRESSION -> FAILED; else any INCONCLUSIVE (or no metrics: NO_METRICS) ->
 * INCONCLUSIVE; else PASSED. passed = PASSED, or INCONCLUSIVE when !cfg.inconclusive_fails.
 *
 * ## Bad input: dead letter or INCONCLUSIVE
 *
 * benchmarker_report_check returns FL_ESEMANTIC (the shell dead-letters the event with err->text,
 * whose first word is the code) for data that is corrupt or cannot be meant:
 *   MISSING_ID           change_id, repo, branch, base_branch or commit empty
 *   ID_TOO_LONG          an id, metric name or unit longer than the limits below
 *   BAD_METRIC           empty metric name or unit
 *   DUPLICATE_METRIC     two metrics with the same name (which one would be judged?)
 *   UNKNOWN_DIRECTION    a direction outside the enum (the Avro decoder rejects unknown symbols
 *                        already; this guards other producers)
 *   NON_FINITE_SAMPLE    NaN or +-inf anywhere
 *   NEGATIVE_SAMPLE      a sample < 0 (latencies, sizes and rates cannot be negative)
 *   BAD_THRESHOLD        threshold_percent negative or not finite
 *   TOO_MANY_SAMPLES     more than cfg.max_samples on a side (bounds the work per event)
 *   TOO_MANY_METRICS     more than BENCHMARKER_MAX_METRICS metrics
 * while data that is well-formed but not enough to judge gets a result, so the change gets a
 * visible answer instead of waiting for a pair that never completes: no metrics (NO_METRICS), no
 * or too few samples on a side (TOO_FEW_SAMPLES), no baseline anywhere (NO_BASELINE), history in
 * another unit or direction (UNIT_MISMATCH / DIRECTION_MISMATCH; the report has one unit per
 * metric, so baseline and candidate cannot disagree within it), a corrupt history entry
 * (BAD_HISTORY: our state, not the report's fault), a zero baseline (ZERO_BASELINE).
 *
 * Threads: none of these functions keeps state; results and configs are used by one thread at a
 * time. */
#ifndef BENCHMARKER_H
#define BENCHMARKER_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fl_err.h"
#include "fl_stats.h"

#define BENCHMARKER_ID_MAX 256
#define BENCHMARKER_NAME_MAX 256
#define BENCHMARKER_UNIT_MAX 64
#define BENCHMARKER_MAX_METRICS 256
#define BENCHMARKER_MAX_REASONS 32 /* validation reasons kept for the review request */

typedef struct benchmarker_config {
    double threshold_percent;     /* default allowed worsening, 5 */
    double confidence;            /* two-sided interval confidence, 1 - test alpha; 0.95 */
    size_t min_samples;           /* per side; fewer is TOO_FEW_SAMPLES; 10 */
    bool inconclusive_fails;      /* an INCONCLUSIVE overall verdict does not pass; true */
    double quantile;              /* the "p95"; 0.95 */
    double noise_factor;          /* PASS needs the upper bound <= noise_factor x T; 2 */
    unsigned bootstrap_resamples; /* 2000 */
    size_t tail_min_samples;      /* per side, to judge the p95's own interval (rule 3); 100 */
    size_t max_samples;           /* per side; more is a dead letter; 100000 */
    size_t history_max_samples;   /* newest base samples kept per metric; 300 */
    uint64_t seed;                /* mixed with change id and metric name for the bootstrap; 0 */
} benchmarker_config_t;

/* The defaults above. */
void benchmarker_config_default(benchmarker_config_t *cfg);

/* 0, or FL_ECONFIG with err naming the field (e.g. "confidence must be in (0.5, 1)"). */
int benchmarker_config_check(const benchmarker_config_t *cfg, fl_error_t *err);

/* ---- input: a bench report ---- */

/* One metric's samples. A view: the arrays and strings are borrowed from whoever built it. */
typedef struct benchmarker_metric {
    const char *name;
    const char *unit;
    int direction; /* fl_stats_direction_t; an int so an out-of-range value can be rejected */
    const double *baseline;
    size_t n_baseline;
    const double *candidate;
    size_t n_candidate;
    bool has_threshold;
    double threshold_percent;
} benchmarker_metric_t;

typedef struct benchmarker_report {
    const char *change_id;
    const char *repo;
    const char *branch;
    const char *base_branch;
    const char *commit;
    const char *agent_session_id; /* NULL when absent */
    const char *service;          /* NULL when absent */
    bool is_base_report;
    int64_t produced_at_ms;
    const benchmarker_metric_t *metrics;
    size_t n_metrics;
} benchmarker_report_t;

/* Copy a bench_report Avro value into a new report that owns every string and array (values from
 * the codec are reused, so nothing is borrowed from them). Caller frees with
 * benchmarker_report_destroy. FL_ESCHEMA when the value does not have the bench_report shape. */
int benchmarker_report_from_avro(avro_value_t *value, benchmarker_report_t **out, fl_error_t *err);

/* Free a report made by benchmarker_report_from_avro (not a caller-built view). NULL is a no-op. */
void benchmarker_report_destroy(benchmarker_report_t *report);

/* Semantic validity (see "Bad input" above): 0, or FL_ESEMANTIC with err->text "CODE detail". */
int benchmarker_report_check(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                             fl_error_t *err);

/* ---- base-branch history ---- */

/* Recent base-branch samples of one metric for the report's repo and base branch, as the shell
 * loaded them. A borrowed view. */
typedef struct benchmarker_history {
    const char *metric;
    const char *unit;
    int direction; /* fl_stats_direction_t */
    const double *samples;
    size_t n_samples;
} benchmarker_history_t;

/* The new history of one metric after a base report: owned by the array it is in. */
typedef struct benchmarker_history_entry {
    char metric[BENCHMARKER_NAME_MAX];
    char unit[BENCHMARKER_UNIT_MAX];
    fl_stats_direction_t direction;
    double *samples; /* oldest first */
    size_t n_samples;
} benchmarker_history_entry_t;

/* For a base report (is_base_report): the new history of each metric that has candidate samples:
 * the old window (from history, matched by metric name; dropped when its unit or direction
 * differs, since the metric was redefined) followed by the report's candidate samples, keeping
 * the newest cfg.history_max_samples. The shell stores each entry under the report's repo and
 * branch (the base branch). *out is a new array the caller frees with
 * benchmarker_history_entries_free; *n_out its length. FL_ESEMANTIC for an invalid report,
 * FL_EINVAL for a report that is not a base report. */
int benchmarker_history_apply(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                              const benchmarker_history_t *history, size_t n_history,
                              benchmarker_history_entry_t **out, size_t *n_out, fl_error_t *err);

void benchmarker_history_entries_free(benchmarker_history_entry_t *entries, size_t n);

/* ---- output: the benchmark result ---- */

typedef enum {
    BENCHMARKER_PASS = 0,
    BENCHMARKER_REGRESSION = 1,
    BENCHMARKER_IMPROVEMENT = 2,
    BENCHMARKER_INCONCLUSIVE = 3
} benchmarker_metric_verdict_t;

typedef enum {
    BENCHMARKER_PASSED = 0,
    BENCHMARKER_FAILED = 1,
    BENCHMARKER_VERDICT_INCONCLUSIVE = 2
} benchmarker_verdict_t;

typedef enum {
    BENCHMARKER_BASELINE_REPORT = 0,
    BENCHMARKER_BASELINE_HISTORY = 1,
    BENCHMARKER_BASELINE_NONE = 2
} benchmarker_baseline_source_t;

typedef enum {
    BENCHMARKER_SHIFT_SCALE = 0,
    BENCHMARKER_SHIFT_LOCATION = 1,
    BENCHMARKER_SHIFT_NONE = 2
} benchmarker_shift_model_t;

typedef struct benchmarker_reason {
    char code[40];
    char detail[BENCHMARKER_NAME_MAX + 96];
    char message[BENCHMARKER_NAME_MAX + 512];
} benchmarker_reason_t;

/* One metric's verdict and every number behind it. NAN means "not computed" (null in the event).
 * Percents are signed worsening (positive = worse) except p95_change_percent. */
typedef struct benchmarker_metric_result {
    char name[BENCHMARKER_NAME_MAX];
    char unit[BENCHMARKER_UNIT_MAX];
    fl_stats_direction_t direction;
    benchmarker_metric_verdict_t verdict;
    char reason_code[40]; /* "" for PASS */
    benchmarker_baseline_source_t baseline_source;
    size_t n_baseline, n_candidate;
    double threshold_percent;
    double baseline_p95, candidate_p95;
    double p95_change_percent, p95_worsening_percent;
    double p95_diff, p95_diff_low, p95_diff_high; /* candidate - baseline, metric unit */
    double p95_worsening_low, p95_worsening_high;
    benchmarker_shift_model_t shift_model;
    double shift_worsening, shift_low, shift_high;
    double u_statistic, z_score, p_value, p_value_two_sided; /* p_value: one-sided, worse side */
    bool exact_test;
} benchmarker_metric_result_t;

typedef struct benchmarker_result {
    char change_id[BENCHMARKER_ID_MAX];
    char repo[BENCHMARKER_ID_MAX];
    char branch[BENCHMARKER_ID_MAX];
    char base_branch[BENCHMARKER_ID_MAX];
    char commit[BENCHMARKER_ID_MAX];
    char agent_session_id[BENCHMARKER_ID_MAX];
    bool has_agent_session;
    char service[BENCHMARKER_ID_MAX]; /* from the bench report */
    bool has_service;
    benchmarker_verdict_t verdict;
    bool passed;
    double confidence;
    double quantile;
    benchmarker_metric_result_t *metrics; /* n_metrics, owned */
    size_t n_metrics;
    benchmarker_reason_t *reasons; /* n_reasons, owned */
    size_t n_reasons;
    char source_event_id[BENCHMARKER_ID_MAX];
    int64_t judged_at_ms;
} benchmarker_result_t;

/* Judge one metric against its baseline (the report's samples, else history when not NULL; the
 * caller matches history to the metric). seed feeds the bootstrap. reason is filled for every
 * verdict but PASS (*has_reason tells). FL_EINVAL when the metric would not pass
 * benchmarker_report_check (it never reads a NaN). */
int benchmarker_metric_judge(const benchmarker_config_t *cfg, const benchmarker_metric_t *metric,
                             const benchmarker_history_t *history, uint64_t seed,
                             benchmarker_metric_result_t *out, benchmarker_reason_t *reason,
                             bool *has_reason);

/* Judge a change's bench report: check it (FL_ESEMANTIC with err: dead letter), then judge every
 * metric, taking the baseline from history (matched by metric name) when a metric has no
 * baseline samples. The bootstrap seed of a metric is derived from cfg.seed, the change id and
 * the metric name, so a redelivered report gets the identical result. source_event_id is the
 * report's ce_id; now_ms becomes judged_at. *out is new, caller frees with
 * benchmarker_result_destroy. FL_EINVAL for a base report (see benchmarker_history_apply). */
int benchmarker_judge(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                      const benchmarker_history_t *history, size_t n_history,
                      const char *source_event_id, int64_t now_ms, benchmarker_result_t **out,
                      fl_error_t *err);

void benchmarker_result_destroy(benchmarker_result_t *res); /* NULL is a no-op */

/* Fill out (a value of the benchmark_result schema; reset first) from res. FL_ESCHEMA with err
 * when the value does not have the benchmark_result shape. */
int benchmarker_result_to_avro(const benchmarker_result_t *res, avro_value_t *out, fl_error_t *err);

/* Rebuild a result from a benchmark_result value (e.g. a pending half read back from Redis).
 * *out is new (benchmarker_result_destroy). FL_ESCHEMA when the shape is wrong. */
int benchmarker_result_from_avro(avro_value_t *value, benchmarker_result_t **out, fl_error_t *err);

const char *benchmarker_verdict_name(benchmarker_verdict_t v);               /* "PASSED" */
const char *benchmarker_metric_verdict_name(benchmarker_metric_verdict_t v); /* "REGRESSION" */

/* ---- joining the validation result and the benchmark result of a change ---- */

typedef enum {
    BENCHMARKER_VALIDATION_PASSED = 0,
    BENCHMARKER_VALIDATION_REJECTED = 1,
    BENCHMARKER_VALIDATION_BASELINE_RECORDED = 2
} benchmarker_validation_verdict_t;

/* What the review request needs from a validation result. Owns its strings (fixed buffers). */
typedef struct benchmarker_validation {
    char change_id[BENCHMARKER_ID_MAX];
    char repo[BENCHMARKER_ID_MAX];
    char branch[BENCHMARKER_ID_MAX];
    char base_branch[BENCHMARKER_ID_MAX];
    char commit[BENCHMARKER_ID_MAX];
    char agent_session_id[BENCHMARKER_ID_MAX];
    bool has_agent_session;
    char optimization_type[32]; /* OptimizationType symbol, "OTHER" when unknown */
    benchmarker_validation_verdict_t verdict;
    benchmarker_reason_t reasons[BENCHMARKER_MAX_REASONS];
    size_t n_reasons; /* reasons beyond BENCHMARKER_MAX_REASONS are dropped (counted in detail) */
    double coverage;
    bool has_base_coverage;
    double base_coverage;
    char source_event_id[BENCHMARKER_ID_MAX];
    int64_t validated_at_ms;
} benchmarker_validation_t;

/* Copy a validation_result Avro value. FL_ESCHEMA when the shape is wrong. */
int benchmarker_validation_from_avro(avro_value_t *value, benchmarker_validation_t *out,
                                     fl_error_t *err);

typedef enum {
    BENCHMARKER_JOIN_WAIT = 0,   /* one half, passed so far: keep it pending for the other */
    BENCHMARKER_JOIN_REVIEW = 1, /* both passed: emit the review request, drop the pending half */
    BENCHMARKER_JOIN_CLOSE = 2,  /* a half did not pass: no review request; drop the pending half
                                    and remember the change/commit as closed */
    BENCHMARKER_JOIN_IGNORE = 3  /* a base-branch validation: nothing to join */
} benchmarker_join_action_t;

/* The join decision. val and bench may each be NULL (not arrived yet), not both. The halves must
 * be of the same change and commit (the shell keys pending halves by both, so a new commit of a
 * change starts a new pair): FL_EINVAL otherwise, and when both are NULL. */
int benchmarker_join_decide(const benchmarker_validation_t *val, const benchmarker_result_t *bench,
                            benchmarker_join_action_t *action);

const char *benchmarker_join_action_name(benchmarker_join_action_t a); /* "WAIT" */

/* Fill out (a value of the review_request schema; reset first) with both results whole.
 * risk_score: the learner's score, NAN when none; source_event_id: ce_id of the half that
 * completed the pair; now_ms: requested_at. FL_EINVAL unless benchmarker_join_decide says REVIEW
 * for this pair; FL_ESCHEMA when the value has the wrong shape. */
int benchmarker_review_request_to_avro(const benchmarker_validation_t *val,
                                       const benchmarker_result_t *bench, double risk_score,
                                       const char *source_event_id, int64_t now_ms,
                                       avro_value_t *out, fl_error_t *err);

#endif
