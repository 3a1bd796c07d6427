/* Decision quality of the benchmarker, measured on seeded synthetic benchmarks.
 *
 * Samples are lognormal "latencies" (median 100 ms, log-sd sigma); a slowdown of s % scales the
 * whole candidate distribution by 1 + s/100, so every quantile, p95 included, moves by s %. Each
 * scenario runs many independent trials from one seeded generator and counts the verdicts of
 * benchmarker_metric_judge with the default config (threshold 5 %, confidence 0.95, min 10
 * samples). The bounds (issue 3):
 *   A/A (no change), 30 samples a side:        REGRESSION in <= 1 % of trials
 *   10 % slowdown, 50 samples a side:           REGRESSION in >= 90 %
 *   2 % slowdown (under the threshold), 30:     not REGRESSION in >= 95 %
 *
 * Which spread. Samples of a CI benchmark are repeated runs of it; their run-to-run spread on
 * shared runners is a few percent to ~10 %. SIGMA_MAIN = 0.06 (CV ~6 %) is where the bounds are
 * enforced. The bounds cannot all hold at sigma 0.25-0.35 (per-request latency spread) with
 * 30-50 samples, for any decision rule: telling a 10 % scale change from none is a test on the
 * mean of the logs, and even the most powerful test for it (a z-test that knows sigma) at a 1 %
 * false-alarm rate detects a 10 % change at sigma 0.30 and 50 samples a side only with
 * probability Phi(log(1.1) / (0.30 sqrt(2/50)) - 2.326) = Phi(-0.74) = 23 %. So at sigma 0.10 and
 * 0.30 the two safety bounds (A/A and 2 %) are still enforced (the verdict rule guarantees them
 * at any noise) and the detection rate is printed for information. Such data gets INCONCLUSIVE
 * (NOISY), which fails the change by default: noise never passes.
 *
 * Time: ~10k judgements with 2000 bootstrap rounds each (O(1) per round), well under a second at
 * -O2 and a few seconds under ASan. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "benchmarker.h"
#include "fl_stats.h"

#define SIGMA_MAIN 0.06
#define MAX_N 64

typedef struct rates {
    int trials;
    int regression, inconclusive, pass, improvement;
} rates_t;

static rates_t run(double sigma, double slowdown_percent, size_t n, int trials, uint64_t seed,
                   fl_stats_direction_t dir) {
    benchmarker_config_t cfg;
    benchmarker_config_default(&cfg);
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, seed);
    double base[MAX_N], cand[MAX_N];
    rates_t r = {.trials = trials};
    double factor = 1.0 + slowdown_percent / 100.0;
    for (int t = 0; t < trials; t++) {
        for (size_t i = 0; i < n; i++)
            base[i] = fl_stats_rng_lognormal(&rng, log(100.0), sigma);
        for (size_t i = 0; i < n; i++) {
            double x = fl_stats_rng_lognormal(&rng, log(100.0), sigma);
            /* Slower means more time, or less throughput. */
            cand[i] = dir == FL_STATS_LOWER_IS_BETTER ? x * factor : x / factor;
        }
        benchmarker_metric_t m = {.name = "api.latency",
                                  .unit = dir == FL_STATS_LOWER_IS_BETTER ? "ms" : "req/s",
                                  .direction = dir,
                                  .baseline = base,
                                  .n_baseline = n,
                                  .candidate = cand,
                                  .n_candidate = n};
        benchmarker_metric_result_t res;
        benchmarker_reason_t reason;
        bool has_reason;
        assert_int_equal(
            benchmarker_metric_judge(&cfg, &m, NULL, (uint64_t)t, &res, &reason, &has_reason), 0);
        switch (res.verdict) {
        case BENCHMARKER_REGRESSION:
            r.regression++;
            break;
        case BENCHMARKER_INCONCLUSIVE:
            r.inconclusive++;
            break;
        case BENCHMARKER_IMPROVEMENT:
            r.improvement++;
            break;
        case BENCHMARKER_PASS:
            r.pass++;
            break;
        }
    }
    return r;
}

static double pct(int k, int n) {
    return 100.0 * k / n;
}

static void print_rates(const char *label, double sigma, size_t n, const rates_t *r) {
    printf("  %-34s sigma=%.2f n=%2zu trials=%d: REGRESSION %5.1f%%  INCONCLUSIVE %5.1f%%  "
           "PASS %5.1f%%  IMPROVEMENT %4.1f%%\n",
           label, sigma, n, r->trials, pct(r->regression, r->trials),
           pct(r->inconclusive, r->trials), pct(r->pass, r->trials),
           pct(r->improvement, r->trials));
}

static void test_bounds_at_benchmark_spread(void **state) {
    (void)state;
    printf("decision quality (threshold 5%%, confidence 0.95), enforced:\n");
    rates_t aa = run(SIGMA_MAIN, 0.0, 30, 2000, 101, FL_STATS_LOWER_IS_BETTER);
    print_rates("A/A false regression", SIGMA_MAIN, 30, &aa);
    rates_t ten = run(SIGMA_MAIN, 10.0, 50, 1000, 102, FL_STATS_LOWER_IS_BETTER);
    print_rates("10% slowdown detected", SIGMA_MAIN, 50, &ten);
    rates_t two = run(SIGMA_MAIN, 2.0, 30, 1000, 103, FL_STATS_LOWER_IS_BETTER);
    print_rates("2% slowdown (under threshold)", SIGMA_MAIN, 30, &two);
    rates_t thr = run(SIGMA_MAIN, 10.0, 50, 1000, 104, FL_STATS_HIGHER_IS_BETTER);
    print_rates("10% throughput drop detected", SIGMA_MAIN, 50, &thr);
    printf("  RATES: A/A false regression %.1f%% (<=1%%), 10%% detected %.1f%% (>=90%%), 2%% "
           "not regression %.1f%% (>=95%%)\n",
           pct(aa.regression, aa.trials), pct(ten.regression, ten.trials),
           pct(two.trials - two.regression, two.trials));
    assert_true(aa.regression * 100 <= aa.trials * 1);
    assert_true(ten.regression * 100 >= ten.trials * 90);
    assert_true((two.trials - two.regression) * 100 >= two.trials * 95);
    assert_true(thr.regression * 100 >= thr.trials * 90);
    /* Identical code should also rarely fail for any other reason. */
    assert_true((aa.regression + aa.inconclusive) * 100 <= aa.trials * 5);
}

static void test_safety_bounds_hold_when_noisy(void **state) {
    (void)state;
    const double sigmas[] = {0.10, 0.30};
    printf("decision quality at larger spreads (safety bounds enforced, detection printed):\n");
    for (size_t i = 0; i < sizeof(sigmas) / sizeof(sigmas[0]); i++) {
        double s = sigmas[i];
        rates_t aa = run(s, 0.0, 30, 1000, 201 + i, FL_STATS_LOWER_IS_BETTER);
        print_rates("A/A false regression", s, 30, &aa);
        rates_t ten = run(s, 10.0, 50, 1000, 211 + i, FL_STATS_LOWER_IS_BETTER);
        print_rates("10% slowdown detected", s, 50, &ten);
        rates_t two = run(s, 2.0, 30, 1000, 221 + i, FL_STATS_LOWER_IS_BETTER);
        print_rates("2% slowdown (under threshold)", s, 30, &two);
        assert_true(aa.regression * 100 <= aa.trials * 1);
        assert_true((two.trials - two.regression) * 100 >= two.trials * 95);
        /* Whatever is not detected must not pass either: noisy data is INCONCLUSIVE. */
        assert_true(ten.pass * 100 <= ten.trials * 5);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_at_benchmark_spread),
        cmocka_unit_test(test_safety_bounds_hold_when_noisy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
