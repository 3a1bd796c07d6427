/* The benchmarker core: verdicts, bad input (dead letter or INCONCLUSIVE), base-branch history,
 * the join of validation and benchmark results, and the Avro conversions.
 *
 * Samples built with grid() are deterministic: the n quantiles exp(sigma z_i), z_i =
 * Phi^-1((i + 0.5) / n), times 100, a set symmetric in log space. A candidate that is the
 * baseline times f then has known answers by hand: every pairwise log difference is log f + (z_i -
 * z_j) sigma, a multiset symmetric around log f, so the Hodges-Lehmann shift is exactly log f
 * (worsening 100 (f - 1) for lower-is-better); and the type-7 quantile is scale-equivariant, so
 * the p95 changes by exactly f too. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "benchmarker.h"
#include "fl_codec.h"
#include "fl_stats.h"

#define CLOSE(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))
#define N_MAX 600

static void grid(double *x, size_t n, double sigma, double factor) {
    for (size_t i = 0; i < n; i++)
        x[i] = 100.0 * exp(sigma * fl_stats_normal_quantile((i + 0.5) / n)) * factor;
}

static benchmarker_metric_t metric(const char *name, const double *b, size_t nb, const double *c,
                                   size_t nc) {
    return (benchmarker_metric_t){.name = name,
                                  .unit = "ms",
                                  .direction = FL_STATS_LOWER_IS_BETTER,
                                  .baseline = b,
                                  .n_baseline = nb,
                                  .candidate = c,
                                  .n_candidate = nc};
}

static benchmarker_report_t report(const benchmarker_metric_t *m, size_t n) {
    return (benchmarker_report_t){.change_id = "acme/api#7",
                                  .repo = "acme/api",
                                  .branch = "agent/faster",
                                  .base_branch = "main",
                                  .commit = "0123456789abcdef0123456789abcdef01234567",
                                  .produced_at_ms = 1718000000000,
                                  .metrics = m,
                                  .n_metrics = n};
}

static benchmarker_metric_result_t judge_one(const benchmarker_metric_t *m,
                                             const benchmarker_history_t *h,
                                             benchmarker_reason_t *reason) {
    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    benchmarker_metric_result_t r;
    bool has_reason;
    assert_int_equal(benchmarker_metric_judge(&cfg, m, h, 1, &r, reason, &has_reason), 0);
    assert_true(has_reason == (r.verdict != BENCHMARKER_PASS));
    return r;
}

/* ---- config ---- */

static void test_config(void **state) {
    (void)state;
    benchmarker_config_t cfg;
    fl_error_t err = {0};
    benchmarker_config_default(&cfg);
    CLOSE(cfg.threshold_percent, 5.0, 0);
    CLOSE(cfg.confidence, 0.95, 0);
    assert_int_equal(cfg.min_samples, 10);
    assert_true(cfg.inconclusive_fails);
    assert_int_equal(benchmarker_config_check(&cfg, &err), 0);
    benchmarker_config_t bad = cfg;
    bad.confidence = 1.0;
    assert_int_equal(benchmarker_config_check(&bad, &err), FL_ECONFIG);
    assert_non_null(strstr(err.text, "confidence"));
    bad = cfg;
    bad.threshold_percent = -1;
    assert_int_equal(benchmarker_config_check(&bad, &err), FL_ECONFIG);
    bad = cfg;
    bad.min_samples = 1;
    assert_int_equal(benchmarker_config_check(&bad, &err), FL_ECONFIG);
    bad = cfg;
    bad.bootstrap_resamples = 10;
    assert_int_equal(benchmarker_config_check(&bad, &err), FL_ECONFIG);
    bad = cfg;
    bad.noise_factor = 0.5;
    assert_int_equal(benchmarker_config_check(&bad, &err), FL_ECONFIG);
}

/* ---- bad input: dead letters ---- */

static void expect_dead_letter(const benchmarker_report_t *rep, const char *code) {
    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    fl_error_t err = {0};
    benchmarker_result_t *res = NULL;
    assert_int_equal(benchmarker_report_check(&cfg, rep, &err), FL_ESEMANTIC);
    if (strncmp(err.text, code, strlen(code)) != 0 || err.text[strlen(code)] != ' ')
        fail_msg("expected %s, got \"%s\"", code, err.text);
    assert_int_equal(benchmarker_judge(&cfg, rep, NULL, 0, "ev1", 1, &res, &err), FL_ESEMANTIC);
    assert_null(res);
}

static void test_dead_letters(void **state) {
    (void)state;
    double b[30] = {0}, c[30] = {0};
    grid(b, 30, 0.05, 1.0);
    grid(c, 30, 0.05, 1.0);
    benchmarker_metric_t m[2] = {metric("api.latency", b, 30, c, 30),
                                 metric("db.latency", b, 30, c, 30)};
    benchmarker_report_t rep = report(m, 2);

    benchmarker_report_t r = rep;
    r.change_id = "";
    expect_dead_letter(&r, "MISSING_ID");
    r = rep;
    r.commit = NULL;
    expect_dead_letter(&r, "MISSING_ID");
    char longid[300];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    r = rep;
    r.repo = longid;
    expect_dead_letter(&r, "ID_TOO_LONG");

    benchmarker_metric_t mm[2];
    memcpy(mm, m, sizeof(mm));
    r = report(mm, 2);
    mm[1].name = "";
    expect_dead_letter(&r, "BAD_METRIC");
    memcpy(mm, m, sizeof(mm));
    mm[0].unit = "";
    expect_dead_letter(&r, "BAD_METRIC");
    memcpy(mm, m, sizeof(mm));
    mm[1].name = "api.latency";
    expect_dead_letter(&r, "DUPLICATE_METRIC");
    memcpy(mm, m, sizeof(mm));
    mm[0].direction = 2;
    expect_dead_letter(&r, "UNKNOWN_DIRECTION");
    memcpy(mm, m, sizeof(mm));
    mm[0].has_threshold = true;
    mm[0].threshold_percent = -5;
    expect_dead_letter(&r, "BAD_THRESHOLD");
    mm[0].threshold_percent = NAN;
    expect_dead_letter(&r, "BAD_THRESHOLD");

    const double bad_values[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        double c2[30];
        memcpy(c2, c, sizeof(c2));
        c2[7] = bad_values[i];
        memcpy(mm, m, sizeof(mm));
        mm[1].candidate = c2;
        expect_dead_letter(&r, "NON_FINITE_SAMPLE");
        mm[1].candidate = c;
        mm[1].baseline = c2;
        expect_dead_letter(&r, "NON_FINITE_SAMPLE");
    }
    double neg[30];
    memcpy(neg, b, sizeof(neg));
    neg[0] = -1.0;
    memcpy(mm, m, sizeof(mm));
    mm[0].baseline = neg;
    expect_dead_letter(&r, "NEGATIVE_SAMPLE");

    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    double *many = calloc(cfg.max_samples + 1, sizeof(double));
    memcpy(mm, m, sizeof(mm));
    mm[0].candidate = many;
    mm[0].n_candidate = cfg.max_samples + 1;
    expect_dead_letter(&r, "TOO_MANY_SAMPLES");
    free(many);

    benchmarker_metric_t *lots = calloc(BENCHMARKER_MAX_METRICS + 1, sizeof(*lots));
    char(*names)[16] = calloc(BENCHMARKER_MAX_METRICS + 1, sizeof(*names));
    for (size_t i = 0; i <= BENCHMARKER_MAX_METRICS; i++) {
        snprintf(names[i], sizeof(names[i]), "m%zu", i);
        lots[i] = metric(names[i], b, 30, c, 30);
    }
    r = report(lots, BENCHMARKER_MAX_METRICS + 1);
    expect_dead_letter(&r, "TOO_MANY_METRICS");
    free(lots);
    free(names);
}

/* ---- well-formed but not judgeable: INCONCLUSIVE ---- */

static benchmarker_result_t *judge_report(const benchmarker_report_t *rep,
                                          const benchmarker_history_t *h, size_t nh,
                                          bool inconclusive_fails) {
    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    cfg.inconclusive_fails = inconclusive_fails;
    fl_error_t err = {0};
    benchmarker_result_t *res = NULL;
    if (benchmarker_judge(&cfg, rep, h, nh, "ev-1", 1718000001000, &res, &err) != 0)
        fail_msg("judge: %s", err.text);
    return res;
}

static void expect_inconclusive(const benchmarker_report_t *rep, const benchmarker_history_t *h,
                                size_t nh, const char *code) {
    benchmarker_result_t *res = judge_report(rep, h, nh, true);
    assert_int_equal(res->verdict, BENCHMARKER_VERDICT_INCONCLUSIVE);
    assert_false(res->passed);
    assert_true(res->n_reasons >= 1);
    assert_string_equal(res->reasons[0].code, code);
    if (rep->n_metrics > 0) {
        assert_int_equal(res->metrics[0].verdict, BENCHMARKER_INCONCLUSIVE);
        assert_string_equal(res->metrics[0].reason_code, code);
    }
    benchmarker_result_destroy(res);
    /* Configured to let inconclusive pass: same verdict, passed. */
    res = judge_report(rep, h, nh, false);
    assert_int_equal(res->verdict, BENCHMARKER_VERDICT_INCONCLUSIVE);
    assert_true(res->passed);
    benchmarker_result_destroy(res);
}

static void test_inconclusive_inputs(void **state) {
    (void)state;
    double b[30], c[30], h[40];
    grid(b, 30, 0.05, 1.0);
    grid(c, 30, 0.05, 1.0);
    grid(h, 40, 0.05, 1.0);

    benchmarker_report_t rep = report(NULL, 0);
    expect_inconclusive(&rep, NULL, 0, "NO_METRICS");

    benchmarker_metric_t m = metric("api.latency", b, 30, c, 0);
    rep = report(&m, 1);
    expect_inconclusive(&rep, NULL, 0, "TOO_FEW_SAMPLES");
    m = metric("api.latency", b, 5, c, 30);
    expect_inconclusive(&rep, NULL, 0, "TOO_FEW_SAMPLES");
    benchmarker_reason_t reason;
    benchmarker_metric_result_t r = judge_one(&m, NULL, &reason);
    /* The numbers that exist are still reported. */
    assert_string_equal(reason.detail, "api.latency baseline=5 candidate=30<10");
    assert_true(isfinite(r.baseline_p95) && isfinite(r.candidate_p95));
    assert_true(isnan(r.p_value) && isnan(r.shift_worsening));

    m = metric("api.latency", NULL, 0, c, 30);
    expect_inconclusive(&rep, NULL, 0, "NO_BASELINE");
    benchmarker_history_t hist = {.metric = "api.latency",
                                  .unit = "us",
                                  .direction = FL_STATS_LOWER_IS_BETTER,
                                  .samples = h,
                                  .n_samples = 40};
    expect_inconclusive(&rep, &hist, 1, "UNIT_MISMATCH");
    r = judge_one(&m, &hist, &reason);
    assert_string_equal(reason.detail, "api.latency ms!=us");
    hist.unit = "ms";
    hist.direction = FL_STATS_HIGHER_IS_BETTER;
    expect_inconclusive(&rep, &hist, 1, "DIRECTION_MISMATCH");
    /* Our own state corrupt: the report is fine, so no dead letter. */
    hist.direction = FL_STATS_LOWER_IS_BETTER;
    h[17] = NAN;
    expect_inconclusive(&rep, &hist, 1, "BAD_HISTORY");
    h[17] = 100.0;

    /* A zero baseline p95: no relative change exists. */
    double zeros[30] = {0}, small[30];
    for (size_t i = 0; i < 30; i++)
        small[i] = i % 2;
    m = metric("errors.count", zeros, 30, small, 30);
    expect_inconclusive(&rep, NULL, 0, "ZERO_BASELINE");
}

/* ---- verdicts with answers known by hand ---- */

static void test_verdicts_known(void **state) {
    (void)state;
    double b[30] = {0}, c[30] = {0};
    benchmarker_reason_t reason;
    benchmarker_metric_result_t r;
    benchmarker_metric_t m = metric("api.latency", b, 30, c, 30);

    /* 10 % slower, sigma 0.03: shift +10.0 % exactly; the CI (about +/-1.6 %) is above 5 %. */
    grid(b, 30, 0.03, 1.0);
    grid(c, 30, 0.03, 1.10);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_REGRESSION);
    assert_string_equal(r.reason_code, "P95_REGRESSION");
    assert_string_equal(reason.code, "P95_REGRESSION");
    assert_int_equal(r.shift_model, BENCHMARKER_SHIFT_SCALE);
    CLOSE(r.shift_worsening, 10.0, 1e-9);
    CLOSE(r.p95_worsening_percent, 10.0, 1e-9);
    CLOSE(r.p95_change_percent, 10.0, 1e-9);
    CLOSE(r.p95_diff, r.baseline_p95 * 0.10, 1e-9);
    assert_true(r.shift_low > 5.0 && r.shift_low < 10.0 && r.shift_high > 10.0);
    assert_true(r.exact_test); /* 30 a side, no ties */
    assert_true(r.p_value < 1e-6 && r.p_value_two_sided < 1e-6);
    assert_true(r.u_statistic > 800.0 && r.u_statistic <= 900.0);
    assert_true(strncmp(reason.detail, "api.latency +10.0%>5.0% p=", 26) == 0);
    assert_non_null(strstr(reason.message, "regressed"));

    /* 1 % slower: within the threshold, and the CI rules out 10 %: PASS. */
    grid(c, 30, 0.03, 1.01);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_PASS);
    assert_string_equal(r.reason_code, "");
    CLOSE(r.shift_worsening, 1.0, 1e-9);

    /* 10 % faster: IMPROVEMENT, -10.0 %. */
    grid(c, 30, 0.03, 0.90);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_IMPROVEMENT);
    CLOSE(r.shift_worsening, -10.0, 1e-9);
    assert_true(strncmp(reason.detail, "api.latency -10.0%<-5.0% p=", 27) == 0);

    /* 7 % slower at sigma 0.06: the estimate is over 5 % but the CI (about +/-3 %) reaches below
     * it: cannot tell, INCONCLUSIVE. */
    grid(b, 30, 0.06, 1.0);
    grid(c, 30, 0.06, 1.07);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_INCONCLUSIVE);
    assert_string_equal(reason.code, "POSSIBLE_REGRESSION");
    CLOSE(r.shift_worsening, 7.0, 1e-9);
    assert_true(r.shift_low < 5.0);

    /* No change at sigma 0.30: the CI (about +/-17 %) cannot rule out 10 %: NOISY. */
    grid(b, 30, 0.30, 1.0);
    grid(c, 30, 0.30, 1.0);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_INCONCLUSIVE);
    assert_string_equal(reason.code, "NOISY");
    CLOSE(r.shift_worsening, 0.0, 1e-9);
    assert_true(r.shift_high > 10.0);
    assert_non_null(strstr(reason.message, "samples per side would"));

    /* A metric's own threshold: 10 % slower under a 12 % threshold is not a regression. */
    grid(b, 30, 0.03, 1.0);
    grid(c, 30, 0.03, 1.10);
    m.has_threshold = true;
    m.threshold_percent = 12.0;
    r = judge_one(&m, NULL, &reason);
    assert_true(r.verdict != BENCHMARKER_REGRESSION);
    CLOSE(r.threshold_percent, 12.0, 0);

    /* Throughput 10 % lower: worsening 100 (1 - 1/1.1) = 9.0909 % (by hand), a regression;
     * 10 % higher: an improvement of -10 %. */
    m = metric("api.throughput", b, 30, c, 30);
    m.unit = "req/s";
    m.direction = FL_STATS_HIGHER_IS_BETTER;
    grid(c, 30, 0.03, 1.0 / 1.10);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_REGRESSION);
    CLOSE(r.shift_worsening, 100.0 * (1.0 - 1.0 / 1.1), 1e-9);
    CLOSE(r.p95_worsening_percent, 100.0 * (1.0 - 1.0 / 1.1), 1e-9);
    CLOSE(r.p95_change_percent, -100.0 * (1.0 - 1.0 / 1.1), 1e-9);
    assert_true(r.p_value < 1e-6); /* one-sided in the worse direction: candidate lower */
    grid(c, 30, 0.03, 1.10);
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.verdict, BENCHMARKER_IMPROVEMENT);
    CLOSE(r.shift_worsening, -10.0, 1e-9);
    assert_true(r.p_value > 0.99);
}

static void test_u_statistic_by_hand(void **state) {
    (void)state;
    /* Baseline 10 x {100}, candidate 5 x {90} + 5 x {110}: U counts candidate > baseline pairs:
     * 5 x 10 = 50, ties none -> U = 50 = mean, no shift: PASS-side numbers by hand. Plus a zero
     * in the baseline selects the LOCATION model. */
    double b[11], c[10];
    for (int i = 0; i < 10; i++) {
        b[i] = 100;
        c[i] = i < 5 ? 90 : 110;
    }
    b[10] = 0;
    benchmarker_metric_t m = metric("api.latency", b, 10, c, 10);
    benchmarker_reason_t reason;
    benchmarker_metric_result_t r = judge_one(&m, NULL, &reason);
    CLOSE(r.u_statistic, 50.0, 0);
    assert_int_equal(r.shift_model, BENCHMARKER_SHIFT_SCALE);
    m.n_baseline = 11;
    r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.shift_model, BENCHMARKER_SHIFT_LOCATION);
    /* U = 5 x 11 (110 > all) + 5 x 1 (90 > the 0) = 60. */
    CLOSE(r.u_statistic, 60.0, 0);
}

static void test_location_model(void **state) {
    (void)state;
    /* Counts with zeros: candidate = baseline + 2. The pairwise differences are 2 + (b_i - b_j),
     * symmetric around 2, so the shift is 2 exactly; relative to the baseline p95 (type 7 on
     * 0,1,...,39: h = 39 * 0.95 = 37.05 -> 37.05) it is 100 * 2 / 37.05 = 5.398 %. */
    double b[40], c[40];
    for (int i = 0; i < 40; i++) {
        b[i] = i;
        c[i] = i + 2;
    }
    benchmarker_metric_t m = metric("queue.depth", b, 40, c, 40);
    m.unit = "items";
    benchmarker_reason_t reason;
    benchmarker_metric_result_t r = judge_one(&m, NULL, &reason);
    assert_int_equal(r.shift_model, BENCHMARKER_SHIFT_LOCATION);
    CLOSE(r.baseline_p95, 37.05, 1e-9);
    CLOSE(r.shift_worsening, 100.0 * 2.0 / 37.05, 1e-9);
    CLOSE(r.p95_diff, 2.0, 1e-9);
}

static void test_tail_regression(void **state) {
    (void)state;
    /* The slowest 10 % get 50 % slower, the bulk is unchanged: the shift barely moves, the p95
     * (inside the slow 10 %) is +50 % by hand. With 500 a side the p95's own bootstrap interval
     * is far above 5 %: P95_TAIL_REGRESSION. With 60 a side (below tail_min_samples) the tail is
     * not judged on its own. */
    static double b[N_MAX], c[N_MAX];
    const size_t sizes[] = {500, 60};
    for (size_t t = 0; t < 2; t++) {
        size_t n = sizes[t];
        grid(b, n, 0.10, 1.0);
        grid(c, n, 0.10, 1.0);
        for (size_t i = n - n / 10; i < n; i++)
            c[i] *= 1.5;
        benchmarker_metric_t m = metric("api.latency", b, n, c, n);
        benchmarker_reason_t reason;
        benchmarker_metric_result_t r = judge_one(&m, NULL, &reason);
        CLOSE(r.p95_worsening_percent, 50.0, 1e-9);
        assert_true(r.shift_worsening < 5.0);
        if (t == 0) {
            assert_int_equal(r.verdict, BENCHMARKER_REGRESSION);
            assert_string_equal(reason.code, "P95_TAIL_REGRESSION");
            assert_true(r.p95_worsening_low > 5.0);
            assert_true(strncmp(reason.detail, "api.latency p95 +50.0%>5.0% [", 29) == 0);
        } else {
            assert_true(r.verdict != BENCHMARKER_REGRESSION);
        }
    }
}

/* ---- report level ---- */

static void test_report_overall_and_determinism(void **state) {
    (void)state;
    double b[30], slow[30], same[30];
    grid(b, 30, 0.03, 1.0);
    grid(slow, 30, 0.03, 1.2);
    grid(same, 30, 0.03, 1.0);
    benchmarker_metric_t m[3] = {metric("a", b, 30, same, 30), metric("b", b, 30, slow, 30),
                                 metric("c", b, 30, same, 3)};
    benchmarker_report_t rep = report(m, 3);
    benchmarker_result_t *r1 = judge_report(&rep, NULL, 0, true);
    assert_int_equal(r1->verdict, BENCHMARKER_FAILED); /* a regression beats an inconclusive */
    assert_false(r1->passed);
    assert_int_equal(r1->n_metrics, 3);
    assert_int_equal(r1->n_reasons, 2);
    assert_string_equal(r1->reasons[0].code, "P95_REGRESSION");
    assert_string_equal(r1->reasons[1].code, "TOO_FEW_SAMPLES");
    assert_string_equal(r1->source_event_id, "ev-1");
    assert_true(r1->judged_at_ms == 1718000001000);
    /* A redelivered report gets the identical result, bootstrap included. */
    benchmarker_result_t *r2 = judge_report(&rep, NULL, 0, true);
    assert_memory_equal(r1->metrics, r2->metrics, 3 * sizeof(*r1->metrics));
    benchmarker_result_destroy(r2);
    /* All passing. */
    rep.n_metrics = 1;
    r2 = judge_report(&rep, NULL, 0, true);
    assert_int_equal(r2->verdict, BENCHMARKER_PASSED);
    assert_true(r2->passed);
    assert_int_equal(r2->n_reasons, 0);
    benchmarker_result_destroy(r2);
    benchmarker_result_destroy(r1);
    benchmarker_result_destroy(NULL);
}

static void test_history(void **state) {
    (void)state;
    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    fl_error_t err = {0};
    double old[290], fresh[30], cand[30];
    for (int i = 0; i < 290; i++)
        old[i] = 1000 + i;
    for (int i = 0; i < 30; i++)
        fresh[i] = 2000 + i;
    benchmarker_history_t hist[2] = {
        {.metric = "api.latency", .unit = "ms", .samples = old, .n_samples = 290},
        {.metric = "db.latency", .unit = "us", .samples = old, .n_samples = 290},
    };
    benchmarker_metric_t m[3] = {metric("api.latency", NULL, 0, fresh, 30),
                                 metric("db.latency", NULL, 0, fresh, 30),
                                 metric("new.metric", NULL, 0, NULL, 0)};
    benchmarker_report_t rep = report(m, 3);
    rep.branch = "main";
    rep.is_base_report = true;

    /* A base report is recorded, not judged. */
    benchmarker_result_t *res = NULL;
    assert_int_equal(benchmarker_judge(&cfg, &rep, hist, 2, "ev", 1, &res, &err), FL_EINVAL);

    benchmarker_history_entry_t *e = NULL;
    size_t n = 0;
    assert_int_equal(benchmarker_history_apply(&cfg, &rep, hist, 2, &e, &n, &err), 0);
    assert_int_equal(n, 2); /* new.metric had no samples */
    /* api.latency: 290 old + 30 new, the newest 300 kept: old[20..289] then fresh. */
    assert_string_equal(e[0].metric, "api.latency");
    assert_int_equal(e[0].n_samples, 300);
    CLOSE(e[0].samples[0], 1020, 0);
    CLOSE(e[0].samples[269], 1289, 0);
    CLOSE(e[0].samples[270], 2000, 0);
    CLOSE(e[0].samples[299], 2029, 0);
    /* db.latency was in us, now ms: the history restarts. */
    assert_string_equal(e[1].unit, "ms");
    assert_int_equal(e[1].n_samples, 30);
    CLOSE(e[1].samples[0], 2000, 0);
    benchmarker_history_entries_free(e, n);

    /* Not a base report: refused. Invalid: dead letter. */
    rep.is_base_report = false;
    assert_int_equal(benchmarker_history_apply(&cfg, &rep, hist, 2, &e, &n, &err), FL_EINVAL);
    rep.is_base_report = true;
    fresh[3] = NAN;
    assert_int_equal(benchmarker_history_apply(&cfg, &rep, hist, 2, &e, &n, &err), FL_ESEMANTIC);
    fresh[3] = 2003;

    /* A change without baseline samples is judged against the history of its metric. */
    double base_hist[60];
    grid(base_hist, 60, 0.03, 1.0);
    grid(cand, 30, 0.03, 1.2);
    benchmarker_history_t h = {.metric = "api.latency",
                               .unit = "ms",
                               .direction = FL_STATS_LOWER_IS_BETTER,
                               .samples = base_hist,
                               .n_samples = 60};
    benchmarker_metric_t cm = metric("api.latency", NULL, 0, cand, 30);
    benchmarker_report_t crep = report(&cm, 1);
    res = judge_report(&crep, &h, 1, true);
    assert_int_equal(res->metrics[0].baseline_source, BENCHMARKER_BASELINE_HISTORY);
    assert_int_equal(res->metrics[0].n_baseline, 60);
    assert_int_equal(res->metrics[0].verdict, BENCHMARKER_REGRESSION);
    benchmarker_result_destroy(res);
    /* Baseline samples in the report win over history. */
    cm = metric("api.latency", cand, 30, cand, 30);
    res = judge_report(&crep, &h, 1, true);
    assert_int_equal(res->metrics[0].baseline_source, BENCHMARKER_BASELINE_REPORT);
    assert_int_equal(res->metrics[0].verdict, BENCHMARKER_PASS);
    benchmarker_result_destroy(res);
}

/* ---- join ---- */

static void test_join(void **state) {
    (void)state;
    benchmarker_validation_t val;
    memset(&val, 0, sizeof(val));
    strcpy(val.change_id, "acme/api#7");
    strcpy(val.commit, "0123456789abcdef0123456789abcdef01234567");
    benchmarker_result_t bench;
    memset(&bench, 0, sizeof(bench));
    strcpy(bench.change_id, val.change_id);
    strcpy(bench.commit, val.commit);

    const struct {
        bool has_val;
        benchmarker_validation_verdict_t vv;
        bool has_bench;
        bool passed;
        benchmarker_join_action_t want;
    } cases[] = {
        {true, BENCHMARKER_VALIDATION_PASSED, false, false, BENCHMARKER_JOIN_WAIT},
        {false, 0, true, true, BENCHMARKER_JOIN_WAIT},
        {true, BENCHMARKER_VALIDATION_PASSED, true, true, BENCHMARKER_JOIN_REVIEW},
        {true, BENCHMARKER_VALIDATION_REJECTED, false, false, BENCHMARKER_JOIN_CLOSE},
        {false, 0, true, false, BENCHMARKER_JOIN_CLOSE},
        {true, BENCHMARKER_VALIDATION_PASSED, true, false, BENCHMARKER_JOIN_CLOSE},
        {true, BENCHMARKER_VALIDATION_REJECTED, true, true, BENCHMARKER_JOIN_CLOSE},
        {true, BENCHMARKER_VALIDATION_BASELINE_RECORDED, false, false, BENCHMARKER_JOIN_IGNORE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        val.verdict = cases[i].vv;
        bench.passed = cases[i].passed;
        benchmarker_join_action_t a = (benchmarker_join_action_t)99;
        assert_int_equal(benchmarker_join_decide(cases[i].has_val ? &val : NULL,
                                                 cases[i].has_bench ? &bench : NULL, &a),
                         0);
        if (a != cases[i].want)
            fail_msg("case %zu: got %s, want %s", i, benchmarker_join_action_name(a),
                     benchmarker_join_action_name(cases[i].want));
    }
    benchmarker_join_action_t a;
    assert_int_equal(benchmarker_join_decide(NULL, NULL, &a), FL_EINVAL);
    strcpy(bench.commit, "ffff");
    assert_int_equal(benchmarker_join_decide(&val, &bench, &a), FL_EINVAL);
}

/* ---- Avro ---- */

static json_t *load_fixture(const char *rel) {
    const char *root = getenv("FL_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root ? root : ".", rel);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL)
        fail_msg("%s: %s", path, jerr.text);
    return j;
}

static void from_fixture(fl_codec_t *codec, const char *type, const char *rel, json_t *patch,
                         avro_value_t *out) {
    fl_error_t err = {0};
    const fl_event_type_t *t = fl_codec_type(codec, type);
    assert_non_null(t);
    json_t *j = load_fixture(rel);
    if (patch != NULL)
        json_object_update(j, patch);
    assert_int_equal(fl_event_type_new_value(t, out), 0);
    if (fl_codec_from_json(t, j, out, &err) != 0)
        fail_msg("%s: %s", rel, err.text);
    json_decref(j);
}

static void assert_same_double(double a, double b) {
    assert_true((isnan(a) && isnan(b)) || a == b);
}

static void test_avro_round_trips(void **state) {
    (void)state;
    fl_codec_t *codec = NULL;
    fl_error_t err = {0};
    if (fl_codec_new(&codec, &err) != 0)
        fail_msg("codec: %s", err.text);

    /* bench_report fixture -> report; judged with a history for the metric without baseline. */
    avro_value_t bv;
    from_fixture(codec, "bench_report", "tests/fixtures/events/bench_report.json", NULL, &bv);
    benchmarker_report_t *rep = NULL;
    if (benchmarker_report_from_avro(&bv, &rep, &err) != 0)
        fail_msg("report: %s", err.text);
    assert_string_equal(rep->change_id, "acme/checkout-api#491");
    assert_string_equal(rep->service, "checkout-api");
    assert_int_equal(rep->n_metrics, 3);
    assert_int_equal(rep->metrics[0].n_baseline, 30);
    assert_int_equal(rep->metrics[1].direction, FL_STATS_HIGHER_IS_BETTER);
    assert_true(rep->metrics[1].has_threshold);
    CLOSE(rep->metrics[1].threshold_percent, 3.0, 0);
    assert_false(rep->metrics[0].has_threshold);
    assert_int_equal(rep->metrics[2].n_baseline, 0);
    double hs[60];
    grid(hs, 60, 0.05, 0.385);
    benchmarker_history_t h = {
        .metric = "tool_server.call_ms", .unit = "ms", .samples = hs, .n_samples = 60};
    benchmarker_result_t *res = judge_report(rep, &h, 1, true);
    assert_int_equal(res->verdict, BENCHMARKER_PASSED);
    assert_int_equal(res->metrics[0].verdict, BENCHMARKER_IMPROVEMENT);
    assert_int_equal(res->metrics[2].baseline_source, BENCHMARKER_BASELINE_HISTORY);

    /* result -> Avro -> bytes -> Avro -> result: every number survives. */
    const fl_event_type_t *rt = fl_codec_type(codec, "benchmark_result");
    avro_value_t rv;
    fl_event_type_new_value(rt, &rv);
    if (benchmarker_result_to_avro(res, &rv, &err) != 0)
        fail_msg("to avro: %s", err.text);
    const void *bytes;
    size_t len;
    assert_int_equal(fl_codec_encode(codec, rt, &rv, &bytes, &len, &err), 0);
    const fl_event_type_t *dt;
    avro_value_t *dv;
    assert_int_equal(fl_codec_decode(codec, bytes, len, &dt, &dv, &err), 0);
    benchmarker_result_t *back = NULL;
    if (benchmarker_result_from_avro(dv, &back, &err) != 0)
        fail_msg("from avro: %s", err.text);
    assert_string_equal(back->change_id, res->change_id);
    assert_string_equal(back->service, "checkout-api");
    assert_int_equal(back->verdict, res->verdict);
    assert_int_equal(back->passed, res->passed);
    assert_int_equal(back->n_metrics, res->n_metrics);
    assert_int_equal(back->n_reasons, res->n_reasons);
    for (size_t i = 0; i < res->n_metrics; i++) {
        const benchmarker_metric_result_t *a = &res->metrics[i], *b = &back->metrics[i];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->verdict, b->verdict);
        assert_int_equal(a->baseline_source, b->baseline_source);
        assert_int_equal(a->shift_model, b->shift_model);
        assert_int_equal(a->n_baseline, b->n_baseline);
        assert_same_double(a->baseline_p95, b->baseline_p95);
        assert_same_double(a->p95_worsening_low, b->p95_worsening_low);
        assert_same_double(a->shift_low, b->shift_low);
        assert_same_double(a->p_value, b->p_value);
        assert_same_double(a->z_score, b->z_score);
    }
    json_t *rj = fl_codec_to_json(&rv);
    assert_int_equal(json_array_size(json_object_get(rj, "regressions")), 0);
    assert_string_equal(json_string_value(json_object_get(rj, "verdict")), "PASSED");
    json_decref(rj);

    /* The validator's fixture (REJECTED, five reasons) closes the pair: no review request. */
    avro_value_t vv;
    from_fixture(codec, "validation_result", "tests/fixtures/events/validation_result.json", NULL,
                 &vv);
    benchmarker_validation_t val;
    assert_int_equal(benchmarker_validation_from_avro(&vv, &val, &err), 0);
    assert_int_equal(val.verdict, BENCHMARKER_VALIDATION_REJECTED);
    assert_int_equal(val.n_reasons, 5);
    assert_string_equal(val.reasons[1].code, "COVERAGE_DROPPED");
    assert_true(val.has_base_coverage);
    CLOSE(val.base_coverage, 82.0, 0);
    avro_value_decref(&vv);

    /* A passed validation of the same change and commit: REVIEW, with both results inline. */
    json_t *patch = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[], s:n}", "change_id", res->change_id,
                              "repo", res->repo, "branch", res->branch, "commit", res->commit,
                              "verdict", "PASSED", "reasons", "base_coverage");
    from_fixture(codec, "validation_result", "tests/fixtures/events/validation_result.json", patch,
                 &vv);
    json_decref(patch);
    assert_int_equal(benchmarker_validation_from_avro(&vv, &val, &err), 0);
    assert_false(val.has_base_coverage);
    benchmarker_join_action_t a;
    assert_int_equal(benchmarker_join_decide(&val, res, &a), 0);
    assert_int_equal(a, BENCHMARKER_JOIN_REVIEW);
    const fl_event_type_t *qt = fl_codec_type(codec, "review_request");
    avro_value_t qv;
    fl_event_type_new_value(qt, &qv);
    if (benchmarker_review_request_to_avro(&val, res, 0.25, "ev-2", 1718000002000, &qv, &err) != 0)
        fail_msg("review request: %s", err.text);
    assert_int_equal(fl_codec_encode(codec, qt, &qv, &bytes, &len, &err), 0);
    json_t *qj = fl_codec_to_json(&qv);
    assert_string_equal(json_string_value(json_object_get(qj, "optimization_type")),
                        "MAINTAINABILITY");
    CLOSE(json_real_value(json_object_get(qj, "risk_score")), 0.25, 0);
    json_t *bj = json_object_get(qj, "benchmark");
    assert_string_equal(json_string_value(json_object_get(bj, "verdict")), "PASSED");
    assert_int_equal(json_array_size(json_object_get(bj, "metrics")), 3);
    json_t *vj = json_object_get(qj, "validation");
    assert_string_equal(json_string_value(json_object_get(vj, "verdict")), "PASSED");
    assert_true(json_is_null(json_object_get(vj, "base_coverage")));
    json_decref(qj);
    /* No risk score: null. A failed benchmark: no review request. */
    assert_int_equal(benchmarker_review_request_to_avro(&val, res, NAN, "ev-2", 1, &qv, &err), 0);
    qj = fl_codec_to_json(&qv);
    assert_true(json_is_null(json_object_get(qj, "risk_score")));
    json_decref(qj);
    res->passed = false;
    assert_int_equal(benchmarker_review_request_to_avro(&val, res, NAN, "ev-2", 1, &qv, &err),
                     FL_EINVAL);

    avro_value_decref(&qv);
    avro_value_decref(&vv);
    avro_value_decref(&rv);
    avro_value_decref(&bv);
    benchmarker_result_destroy(back);
    benchmarker_result_destroy(res);
    benchmarker_report_destroy(rep);
    benchmarker_report_destroy(NULL);
    fl_codec_destroy(codec);
}

static avro_schema_t load_schema(const char *rel) {
    json_t *j = load_fixture(rel);
    char *text = json_dumps(j, 0);
    avro_schema_t s;
    if (avro_schema_from_json_length(text, strlen(text), &s) != 0)
        fail_msg("%s: %s", rel, avro_strerror());
    free(text);
    json_decref(j);
    return s;
}

static void test_review_request_embeds_benchmark_result(void **state) {
    (void)state;
    /* The review request carries the benchmark result whole: its copy of the record must stay
     * the same schema as benchmark_result.avsc. */
    avro_schema_t br = load_schema("schemas/benchmark_result.avsc");
    avro_schema_t rr = load_schema("schemas/review_request.avsc");
    avro_schema_t inner = avro_schema_record_field_get(rr, "benchmark");
    assert_non_null(inner);
    assert_true(avro_schema_equal(br, inner));
    avro_schema_decref(br);
    avro_schema_decref(rr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_dead_letters),
        cmocka_unit_test(test_inconclusive_inputs),
        cmocka_unit_test(test_verdicts_known),
        cmocka_unit_test(test_u_statistic_by_hand),
        cmocka_unit_test(test_location_model),
        cmocka_unit_test(test_tail_regression),
        cmocka_unit_test(test_report_overall_and_determinism),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_avro_round_trips),
        cmocka_unit_test(test_review_request_embeds_benchmark_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
