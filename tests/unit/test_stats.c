/* fl_stats against known answers.
 *
 * How each expected value was obtained is said next to it: by hand (the arithmetic is shown), from
 * a published table or reference output, from SciPy 1.17 / NumPy 2.4 (run once on the inputs kept
 * here; they are not needed to run this test), or by an independent brute-force computation
 * inside this test (enumeration, integer dynamic programming, naive resampling) that shares no
 * code with fl_stats.c. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fl_stats.h"

#define CLOSE(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- PRNG ---- */

static void test_rng_reference_vectors(void **state) {
    (void)state;
    /* splitmix64 from seed 0: the reference outputs of Vigna's splitmix64.c (0xe220a8397b1dcdaf,
     * 0x6e789e6aa1b965f4, 0x06c45d188009454f, ...) become xoshiro's state. */
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 0);
    assert_true(rng.s[0] == 0xe220a8397b1dcdafULL);
    assert_true(rng.s[1] == 0x6e789e6aa1b965f4ULL);
    assert_true(rng.s[2] == 0x06c45d188009454fULL);
    /* xoshiro256** from state {1, 2, 3, 4}: first output rotl(2 * 5, 7) * 9 = 1280 * 9 = 11520
     * by hand; the next three from a 10-line Python transcription of xoshiro256starstar.c. */
    rng.s[0] = 1;
    rng.s[1] = 2;
    rng.s[2] = 3;
    rng.s[3] = 4;
    assert_true(fl_stats_rng_next(&rng) == 11520ULL);
    assert_true(fl_stats_rng_next(&rng) == 0ULL);
    assert_true(fl_stats_rng_next(&rng) == 1509978240ULL);
    assert_true(fl_stats_rng_next(&rng) == 1215971899390074240ULL);
}

static void test_rng_deterministic_and_distributed(void **state) {
    (void)state;
    fl_stats_rng_t a, b;
    fl_stats_rng_seed(&a, 42);
    fl_stats_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_true(fl_stats_rng_next(&a) == fl_stats_rng_next(&b));
    fl_stats_rng_seed(&b, 43);
    assert_true(fl_stats_rng_next(&a) != fl_stats_rng_next(&b));

    /* Moments over 200k draws: tolerances are ~6 standard errors. */
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    int buckets[10] = {0};
    for (int i = 0; i < n; i++) {
        double u = fl_stats_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        su += u;
        uint64_t k = fl_stats_rng_below(&a, 10);
        assert_true(k < 10);
        buckets[k]++;
        double z = fl_stats_rng_normal(&a, 3.0, 2.0);
        sn += z;
        sn2 += z * z;
    }
    CLOSE(su / n, 0.5, 6 * sqrt(1.0 / 12 / n));
    double mean = sn / n, var = sn2 / n - mean * mean;
    CLOSE(mean, 3.0, 6 * 2.0 / sqrt(n));
    CLOSE(sqrt(var), 2.0, 0.03);
    for (int k = 0; k < 10; k++)
        CLOSE(buckets[k], n / 10.0, 6 * sqrt(n * 0.1 * 0.9));
    /* Lognormal: the median of exp(N(mu, s)) is exp(mu). */
    double *x = malloc(20001 * sizeof(*x));
    for (int i = 0; i < 20001; i++)
        x[i] = fl_stats_rng_lognormal(&a, log(100.0), 0.3);
    double med;
    assert_int_equal(fl_stats_quantile(x, 20001, 0.5, &med), 0);
    CLOSE(med, 100.0, 1.5);
    /* Gamma(k): mean k, variance k. */
    double sg = 0;
    for (int i = 0; i < 50000; i++)
        sg += fl_stats_rng_gamma(&a, 3.5);
    CLOSE(sg / 50000, 3.5, 6 * sqrt(3.5 / 50000));
    free(x);
}

/* ---- normal distribution ---- */

static void test_normal(void **state) {
    (void)state;
    /* Critical values as printed in every table (e.g. Abramowitz & Stegun 26.2), to 16 digits as
     * SciPy's norm.ppf gives them: 1.959963984540054, 1.6448536269514722, 2.3263478740408408. */
    CLOSE(fl_stats_normal_quantile(0.975), 1.959963984540054, 1e-14);
    CLOSE(fl_stats_normal_quantile(0.95), 1.6448536269514722, 1e-14);
    CLOSE(fl_stats_normal_quantile(0.99), 2.3263478740408408, 1e-14);
    CLOSE(fl_stats_normal_quantile(0.5), 0.0, 1e-15);
    CLOSE(fl_stats_normal_quantile(0.025), -1.959963984540054, 1e-14);
    /* Deep tail, SciPy norm.ppf(1e-10) = -6.361340902404056. */
    CLOSE(fl_stats_normal_quantile(1e-10), -6.361340902404056, 1e-12);
    assert_true(isinf(fl_stats_normal_quantile(0.0)) && fl_stats_normal_quantile(0.0) < 0);
    assert_true(isinf(fl_stats_normal_quantile(1.0)) && fl_stats_normal_quantile(1.0) > 0);
    /* Phi(1.96) = 0.9750021048517795 (SciPy norm.cdf), Phi(0) = 1/2 by symmetry. */
    CLOSE(fl_stats_normal_cdf(1.96), 0.9750021048517795, 1e-15);
    CLOSE(fl_stats_normal_cdf(0.0), 0.5, 1e-16);
    for (double p = 0.001; p < 1.0; p += 0.0137)
        CLOSE(fl_stats_normal_cdf(fl_stats_normal_quantile(p)), p, 1e-14);
}

/* ---- quantiles ---- */

static void test_quantile_type7_known(void **state) {
    (void)state;
    double q;
    /* 1..10 at 0.95: h = 9 * 0.95 = 8.55, x[8] + 0.55 (x[9] - x[8]) = 9 + 0.55 = 9.55 (by hand;
     * R's quantile(1:10, 0.95) and NumPy's np.quantile print 9.55). */
    double one_to_ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_int_equal(fl_stats_quantile_sorted(one_to_ten, 10, 0.95, &q), 0);
    CLOSE(q, 9.55, 1e-12);
    /* {3,1,4,1,5,9,2,6} sorted {1,1,2,3,4,5,6,9}, n - 1 = 7, by hand:
     *   p=0    -> 1;  p=0.25 -> h=1.75 -> 1 + 0.75 (2 - 1) = 1.75;  p=0.5 -> h=3.5 -> 3.5;
     *   p=0.9  -> h=6.3  -> 6 + 0.3 (9 - 6) = 6.9;  p=1 -> 9.
     * NumPy np.quantile([3,1,4,1,5,9,2,6], [0,.25,.5,.9,1]) gives the same. */
    const double pi[] = {3, 1, 4, 1, 5, 9, 2, 6};
    const double ps[] = {0.0, 0.25, 0.5, 0.9, 1.0};
    const double want[] = {1.0, 1.75, 3.5, 6.9, 9.0};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(fl_stats_quantile(pi, 8, ps[i], &q), 0);
        CLOSE(q, want[i], 1e-12);
        double copy[8];
        memcpy(copy, pi, sizeof(copy));
        assert_int_equal(fl_stats_quantile_inplace(copy, 8, ps[i], &q), 0);
        CLOSE(q, want[i], 1e-12);
    }
    /* One value: itself at every p. */
    double single = 7.25;
    assert_int_equal(fl_stats_quantile(&single, 1, 0.95, &q), 0);
    CLOSE(q, 7.25, 0);
    /* Invalid input. */
    assert_int_equal(fl_stats_quantile(pi, 0, 0.5, &q), FL_EINVAL);
    assert_int_equal(fl_stats_quantile(pi, 8, -0.1, &q), FL_EINVAL);
    assert_int_equal(fl_stats_quantile(pi, 8, 1.1, &q), FL_EINVAL);
    assert_int_equal(fl_stats_quantile(pi, 8, NAN, &q), FL_EINVAL);
    double bad[] = {1, NAN, 3};
    assert_int_equal(fl_stats_quantile(bad, 3, 0.5, &q), FL_EINVAL);
    double inf[] = {1, INFINITY, 3};
    assert_int_equal(fl_stats_quantile(inf, 3, 0.5, &q), FL_EINVAL);
}

static void test_quantile_selection_matches_sort(void **state) {
    (void)state;
    /* Selection against the definition applied to a qsort'ed copy, on data with many ties. */
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 7);
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 1 + fl_stats_rng_below(&rng, 300);
        double *x = malloc(n * sizeof(*x)), *s = malloc(n * sizeof(*s));
        for (size_t i = 0; i < n; i++)
            x[i] = (double)fl_stats_rng_below(&rng, trial % 2 ? 5 : 1000);
        memcpy(s, x, n * sizeof(*s));
        qsort(s, n, sizeof(*s), cmp_dbl);
        double p = fl_stats_rng_uniform(&rng);
        double h = (double)(n - 1) * p;
        size_t lo = (size_t)floor(h);
        double want = lo + 1 < n ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[n - 1];
        double got;
        assert_int_equal(fl_stats_quantile_inplace(x, n, p, &got), 0);
        CLOSE(got, want, 1e-9);
        free(x);
        free(s);
    }
}

/* ---- percent change ---- */

static void test_worsening_percent(void **state) {
    (void)state;
    double w;
    /* By hand: 100 -> 110 ms is 10 % slower (+10), 100 -> 110 req/s 10 % faster (-10). */
    assert_int_equal(fl_stats_worsening_percent(100, 110, FL_STATS_LOWER_IS_BETTER, &w), 0);
    CLOSE(w, 10.0, 1e-12);
    assert_int_equal(fl_stats_worsening_percent(100, 110, FL_STATS_HIGHER_IS_BETTER, &w), 0);
    CLOSE(w, -10.0, 1e-12);
    /* 200 -> 150 req/s: (200 - 150) / 200 = +25 % worse. 200 -> 150 ms: -25 % (better). */
    assert_int_equal(fl_stats_worsening_percent(200, 150, FL_STATS_HIGHER_IS_BETTER, &w), 0);
    CLOSE(w, 25.0, 1e-12);
    assert_int_equal(fl_stats_worsening_percent(200, 150, FL_STATS_LOWER_IS_BETTER, &w), 0);
    CLOSE(w, -25.0, 1e-12);
    assert_int_equal(fl_stats_worsening_percent(0, 1, FL_STATS_LOWER_IS_BETTER, &w), FL_EINVAL);
    assert_int_equal(fl_stats_worsening_percent(1, NAN, FL_STATS_LOWER_IS_BETTER, &w), FL_EINVAL);
    assert_int_equal(fl_stats_worsening_percent(1, 2, (fl_stats_direction_t)7, &w), FL_EINVAL);
    fl_stats_direction_t d;
    assert_int_equal(fl_stats_direction_parse("HIGHER_IS_BETTER", &d), 0);
    assert_int_equal(d, FL_STATS_HIGHER_IS_BETTER);
    assert_int_equal(fl_stats_direction_parse("SIDEWAYS", &d), FL_EINVAL);
    assert_string_equal(fl_stats_direction_name(FL_STATS_LOWER_IS_BETTER), "LOWER_IS_BETTER");
    assert_null(fl_stats_direction_name((fl_stats_direction_t)9));
}

/* ---- DDSketch ---- */

/* max_buckets must cover the data's range (log(max/min) / log(gamma) buckets per sign) or the
 * lowest buckets collapse; test_sketch_collapse_keeps_upper_quantiles covers that case. */
static void sketch_check_accuracy(const double *data, size_t n, double alpha, size_t buckets) {
    fl_stats_sketch_t *sk;
    assert_int_equal(fl_stats_sketch_new(alpha, buckets, &sk), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fl_stats_sketch_add(sk, data[i], 1), 0);
    assert_true(fl_stats_sketch_count(sk) == n);
    double *s = malloc(n * sizeof(*s));
    memcpy(s, data, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_dbl);
    const double ps[] = {0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};
    double worst = 0;
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        /* The guarantee is against the exact order statistic x_(floor(p (n - 1))). */
        double exact = s[(size_t)floor(ps[i] * (double)(n - 1))];
        double est;
        assert_int_equal(fl_stats_sketch_quantile(sk, ps[i], &est), 0);
        double rel = exact == 0 ? fabs(est) : fabs(est - exact) / fabs(exact);
        if (rel > worst)
            worst = rel;
        assert_true(rel <= alpha * (1 + 1e-9));
    }
    printf("  sketch alpha=%.3f n=%zu: worst relative error %.5f\n", alpha, n, worst);
    CLOSE(fl_stats_sketch_min(sk), s[0], 0);
    CLOSE(fl_stats_sketch_max(sk), s[n - 1], 0);
    free(s);
    fl_stats_sketch_destroy(sk);
}

static void test_sketch_relative_error_skewed(void **state) {
    (void)state;
    const size_t n = 100000;
    double *x = malloc(n * sizeof(*x));
    fl_stats_rng_t rng;
    /* Lognormal, heavy right tail (sigma 1: p99.9 / median ~ 22). */
    fl_stats_rng_seed(&rng, 11);
    for (size_t i = 0; i < n; i++)
        x[i] = fl_stats_rng_lognormal(&rng, log(50.0), 1.0);
    sketch_check_accuracy(x, n, 0.01, 2048);
    sketch_check_accuracy(x, n, 0.001, 16384);
    /* Bimodal: 70 % fast path around 10 ms, 30 % slow path around 500 ms. */
    fl_stats_rng_seed(&rng, 12);
    for (size_t i = 0; i < n; i++)
        x[i] = fl_stats_rng_uniform(&rng) < 0.7 ? fl_stats_rng_lognormal(&rng, log(10.0), 0.2)
                                                : fl_stats_rng_lognormal(&rng, log(500.0), 0.3);
    sketch_check_accuracy(x, n, 0.01, 2048);
    /* Negative, zero and positive values together. */
    fl_stats_rng_seed(&rng, 13);
    for (size_t i = 0; i < n; i++) {
        double u = fl_stats_rng_uniform(&rng);
        x[i] = u < 0.1 ? 0.0
                       : (u < 0.4 ? -fl_stats_rng_lognormal(&rng, 0, 2)
                                  : fl_stats_rng_lognormal(&rng, 0, 2));
    }
    sketch_check_accuracy(x, n, 0.02, 2048);
    free(x);
}

static void test_sketch_merge_and_codec(void **state) {
    (void)state;
    fl_stats_sketch_t *all, *parts[3], *other, *copy = NULL;
    assert_int_equal(fl_stats_sketch_new(0.01, 2048, &all), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fl_stats_sketch_new(0.01, 2048, &parts[i]), 0);
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 21);
    for (int i = 0; i < 30000; i++) {
        double v = fl_stats_rng_lognormal(&rng, log(80.0), 0.7) * (i % 3 + 1);
        fl_stats_sketch_add(all, v, 1);
        fl_stats_sketch_add(parts[i % 3], v, 1);
    }
    fl_stats_sketch_add(parts[1], -3.0, 2);
    fl_stats_sketch_add(all, -3.0, 2);
    assert_int_equal(fl_stats_sketch_merge(parts[0], parts[1]), 0);
    assert_int_equal(fl_stats_sketch_merge(parts[0], parts[2]), 0);
    assert_true(fl_stats_sketch_count(parts[0]) == fl_stats_sketch_count(all));
    for (double p = 0; p <= 1.0; p += 0.01) {
        double a, b;
        fl_stats_sketch_quantile(all, p, &a);
        fl_stats_sketch_quantile(parts[0], p, &b);
        assert_true(a == b); /* merging is exact: same buckets, same counts */
    }
    assert_int_equal(fl_stats_sketch_new(0.02, 2048, &other), 0);
    assert_int_equal(fl_stats_sketch_merge(all, other), FL_EINVAL);

    uint8_t *buf;
    size_t len;
    assert_int_equal(fl_stats_sketch_encode(all, &buf, &len), 0);
    assert_int_equal(fl_stats_sketch_decode(buf, len, &copy), 0);
    assert_true(fl_stats_sketch_count(copy) == fl_stats_sketch_count(all));
    assert_true(fl_stats_sketch_min(copy) == fl_stats_sketch_min(all));
    assert_true(fl_stats_sketch_max(copy) == fl_stats_sketch_max(all));
    assert_true(fl_stats_sketch_sum(copy) == fl_stats_sketch_sum(all));
    for (double p = 0; p <= 1.0; p += 0.05) {
        double a, b;
        fl_stats_sketch_quantile(all, p, &a);
        fl_stats_sketch_quantile(copy, p, &b);
        assert_true(a == b);
    }
    fl_stats_sketch_t *bad = NULL;
    assert_int_equal(fl_stats_sketch_decode(buf, len - 1, &bad), FL_EDECODE);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(fl_stats_sketch_decode(longer, len + 1, &bad), FL_EDECODE);
    longer[0] = 'X';
    assert_int_equal(fl_stats_sketch_decode(longer, len, &bad), FL_EDECODE);
    assert_null(bad);
    free(longer);
    free(buf);

    /* Empty: no quantile; NaN: refused; clear forgets. */
    double q;
    fl_stats_sketch_clear(all);
    assert_int_equal(fl_stats_sketch_quantile(all, 0.5, &q), FL_EINVAL);
    assert_int_equal(fl_stats_sketch_add(all, NAN, 1), FL_EINVAL);
    assert_int_equal(fl_stats_sketch_add(all, 5.0, 1), 0);
    assert_int_equal(fl_stats_sketch_quantile(all, 0.5, &q), 0);
    CLOSE(q, 5.0, 5.0 * 0.01);
    assert_int_equal(fl_stats_sketch_new(0.0, 2048, &bad), FL_EINVAL);
    assert_int_equal(fl_stats_sketch_new(0.01, 4, &bad), FL_EINVAL);
    for (int i = 0; i < 3; i++)
        fl_stats_sketch_destroy(parts[i]);
    fl_stats_sketch_destroy(all);
    fl_stats_sketch_destroy(other);
    fl_stats_sketch_destroy(copy);
    fl_stats_sketch_destroy(NULL);
}

static void test_sketch_collapse_keeps_upper_quantiles(void **state) {
    (void)state;
    /* 16 buckets at alpha 0.05 cover a ratio of gamma^16 = (1.05/0.95)^16 ~ 5: data spanning 1e-6
     * to 1e3 must collapse its low end, and the upper quantiles must keep their guarantee. */
    fl_stats_sketch_t *sk;
    assert_int_equal(fl_stats_sketch_new(0.05, 16, &sk), 0);
    const size_t n = 10000;
    double *x = malloc(n * sizeof(*x));
    for (size_t i = 0; i < n; i++) {
        x[i] = 1e-6 * pow(1e9, (double)i / (double)(n - 1));
        fl_stats_sketch_add(sk, x[i], 1);
    }
    assert_true(fl_stats_sketch_count(sk) == n);
    for (double p = 0.95; p <= 1.0; p += 0.01) {
        double exact = x[(size_t)floor(p * (double)(n - 1))], est;
        fl_stats_sketch_quantile(sk, p, &est);
        assert_true(fabs(est - exact) <= 0.05 * exact * (1 + 1e-9));
    }
    free(x);
    fl_stats_sketch_destroy(sk);
}

/* ---- Mann-Whitney ---- */

/* Number of ways to get each U for sizes m, n: an integer subset DP over ranks (choose which m of
 * the ranks 1..m+n belong to x; U = rank sum - m(m+1)/2), independent of the q-binomial code. */
static uint64_t *u_counts_dp(size_t m, size_t n) {
    size_t N = m + n, maxsum = N * (N + 1) / 2;
    uint64_t *dp = calloc((m + 1) * (maxsum + 1), sizeof(*dp));
#define DP(k, s) dp[(k) * (maxsum + 1) + (s)]
    DP(0, 0) = 1;
    for (size_t r = 1; r <= N; r++)
        for (size_t k = (r < m ? r : m); k >= 1; k--)
            for (size_t s = maxsum; s >= r; s--)
                DP(k, s) += DP(k - 1, s - r);
    uint64_t *counts = calloc(m * n + 1, sizeof(*counts));
    for (size_t s = m * (m + 1) / 2; s <= maxsum; s++)
        if (DP(m, s))
            counts[s - m * (m + 1) / 2] += DP(m, s);
#undef DP
    free(dp);
    return counts;
}

static void test_mwu_exact_pmf_matches_dp(void **state) {
    (void)state;
    const size_t sizes[][2] = {{1, 1}, {1, 7},   {3, 4},   {5, 5},
                               {7, 3}, {10, 12}, {20, 25}, {24, 24}};
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        size_t m = sizes[t][0], n = sizes[t][1];
        uint64_t *counts = u_counts_dp(m, n);
        double total = 0;
        for (size_t u = 0; u <= m * n; u++)
            total += (double)counts[u];
        double *pmf = malloc((m * n + 1) * sizeof(*pmf));
        assert_int_equal(fl_stats_mwu_exact_pmf(m, n, pmf), 0);
        for (size_t u = 0; u <= m * n; u++) {
            double want = (double)counts[u] / total;
            assert_true(fabs(pmf[u] - want) <= 1e-15 + 1e-12 * want);
        }
        free(pmf);
        free(counts);
    }
    double pmf[2];
    assert_int_equal(fl_stats_mwu_exact_pmf(0, 3, pmf), FL_EINVAL);
}

static void test_mwu_exact_known(void **state) {
    (void)state;
    /* x = {1.1, 2.3, 3.5}, y = {0.5, 0.9, 1.8, 2.0}. By hand: U = #(x > y) = 2 + 4 + 4 = 10 of 12.
     * Under H0 the C(7,3) = 35 arrangements are equally likely; U >= 10 means the partition of U
     * into <= 3 parts each <= 4 is {4,4,4} (12), {4,4,3} (11), {4,4,2} or {4,3,3} (10): 4 of 35.
     * P(U >= 10) = 4/35 = 0.1142857, two-sided 8/35 = 0.2285714, P(U <= 10) = 1 - 2/35.
     * SciPy mannwhitneyu(x, y, method='exact') agrees (U=10, p=0.22857142857142856). */
    const double x[] = {1.1, 2.3, 3.5}, y[] = {0.5, 0.9, 1.8, 2.0};
    fl_stats_mwu_t r;
    assert_int_equal(fl_stats_mann_whitney(x, 3, y, 4, &r), 0);
    assert_true(r.exact);
    assert_false(r.ties);
    CLOSE(r.u, 10.0, 0);
    CLOSE(r.mean, 6.0, 0);
    CLOSE(r.p_greater, 4.0 / 35.0, 1e-14);
    CLOSE(r.p_two_sided, 8.0 / 35.0, 1e-14);
    CLOSE(r.p_less, 33.0 / 35.0, 1e-14);
    /* Swapping the samples swaps the sides: U' = 12 - 10 = 2. */
    assert_int_equal(fl_stats_mann_whitney(y, 4, x, 3, &r), 0);
    CLOSE(r.u, 2.0, 0);
    CLOSE(r.p_less, 4.0 / 35.0, 1e-14);
}

static void test_mwu_ties_normal_known(void **state) {
    (void)state;
    /* a = {1,2,2,3,4,5,5,5,9}, b = {2,3,3,6,7,8,8,10,11,12}; by hand:
     * U_a = 0 (1) + 2 x 0.5 (the 2s tie one b) + (1 + 2 x 0.5) (3) + 3 (4) + 3 x 3 (5s) + 7 (9)
     *     = 22; tie groups 2,3,5 (t=3) and 8 (t=2): sum(t^3 - t) = 24 + 24 + 24 + 6 = 78;
     * var = 9 * 10 / 12 * (20 - 78 / (19 * 18)) = 148.2894737; sd = 12.17741655;
     * z = (22 - 45 + 0.5) / sd = -1.847682546.
     * SciPy mannwhitneyu(a, b, method='asymptotic', use_continuity=True): two-sided
     * 0.06464828042830238, greater 0.9731842979418744, less 0.03232414021415119. */
    const double a[] = {1, 2, 2, 3, 4, 5, 5, 5, 9}, b[] = {2, 3, 3, 6, 7, 8, 8, 10, 11, 12};
    fl_stats_mwu_t r;
    assert_int_equal(fl_stats_mann_whitney(a, 9, b, 10, &r), 0);
    assert_false(r.exact);
    assert_true(r.ties);
    CLOSE(r.u, 22.0, 0);
    CLOSE(r.z, -1.847682546, 1e-8);
    CLOSE(r.p_two_sided, 0.06464828042830238, 1e-12);
    CLOSE(r.p_greater, 0.9731842979418744, 1e-12);
    CLOSE(r.p_less, 0.03232414021415119, 1e-12);
    /* Every value tied: no evidence either way. */
    const double c[] = {4, 4, 4}, d[] = {4, 4};
    assert_int_equal(fl_stats_mann_whitney(c, 3, d, 2, &r), 0);
    CLOSE(r.p_two_sided, 1.0, 0);
    CLOSE(r.p_greater, 1.0, 0);
    CLOSE(r.u, 3.0, 0);
    assert_int_equal(fl_stats_mann_whitney(c, 0, d, 2, &r), FL_EINVAL);
    const double nan[] = {1, NAN};
    assert_int_equal(fl_stats_mann_whitney(nan, 2, d, 2, &r), FL_EINVAL);
}

static void test_mwu_exact_vs_enumeration(void **state) {
    (void)state;
    /* Random tie-free samples below 50 a side: U by counting pairs, p-values from the integer
     * DP distribution (both brute force, in this file). */
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 31);
    for (int t = 0; t < 20; t++) {
        size_t m = 2 + fl_stats_rng_below(&rng, 20), n = 2 + fl_stats_rng_below(&rng, 20);
        double x[32], y[32];
        for (size_t i = 0; i < m; i++)
            x[i] = fl_stats_rng_normal(&rng, 0.3, 1);
        for (size_t j = 0; j < n; j++)
            y[j] = fl_stats_rng_normal(&rng, 0, 1);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                u += x[i] > y[j];
        uint64_t *counts = u_counts_dp(m, n);
        double total = 0, le = 0, ge = 0;
        for (size_t k = 0; k <= m * n; k++) {
            total += (double)counts[k];
            if (k <= u)
                le += (double)counts[k];
            if (k >= u)
                ge += (double)counts[k];
        }
        free(counts);
        fl_stats_mwu_t r;
        assert_int_equal(fl_stats_mann_whitney(x, m, y, n, &r), 0);
        assert_true(r.exact);
        CLOSE(r.u, (double)u, 0);
        CLOSE(r.p_less, le / total, 1e-12);
        CLOSE(r.p_greater, ge / total, 1e-12);
        double two = 2 * (le < ge ? le : ge) / total;
        CLOSE(r.p_two_sided, two < 1 ? two : 1, 1e-12);
    }
}

/* ---- Hodges-Lehmann ---- */

static void test_hl_known(void **state) {
    (void)state;
    /* x = {1.1, 2.3, 3.5}, y = {0.5, 0.9, 1.8, 2.0}; the 12 differences x_i - y_j by hand:
     *   1.1: 0.6 0.2 -0.7 -0.9;  2.3: 1.8 1.4 0.5 0.3;  3.5: 3.0 2.6 1.7 1.5
     * sorted: -0.9 -0.7 0.2 0.3 0.5 0.6 | 1.4 1.5 1.7 1.8 2.6 3.0 -> median (0.6 + 1.4) / 2 = 1.0.
     * 80 % interval: alpha/2 = 0.1; exact P(U <= 0) = 1/35, P(U <= 1) = 2/35 = 0.057,
     * P(U <= 2) = 4/35 = 0.114 > 0.1, so C = 2 and the interval is [D(2), D(11)] = [-0.7, 2.6].
     * 95 %: P(U <= 0) = 0.0286 > 0.025, so C = 0: these samples cannot give a 95 % interval. */
    const double x[] = {1.1, 2.3, 3.5}, y[] = {0.5, 0.9, 1.8, 2.0};
    fl_stats_interval_t r;
    assert_int_equal(fl_stats_hodges_lehmann(x, 3, y, 4, 0.80, &r), 0);
    CLOSE(r.estimate, 1.0, 1e-12);
    CLOSE(r.low, -0.7, 1e-12);
    CLOSE(r.high, 2.6, 1e-12);
    assert_int_equal(fl_stats_hodges_lehmann(x, 3, y, 4, 0.95, &r), 0);
    assert_true(isinf(r.low) && r.low < 0 && isinf(r.high) && r.high > 0);
    assert_int_equal(fl_stats_hodges_lehmann(x, 3, y, 4, 1.0, &r), FL_EINVAL);
    assert_int_equal(fl_stats_hodges_lehmann(x, 0, y, 4, 0.9, &r), FL_EINVAL);
}

static void test_pairwise_select_vs_brute_force(void **state) {
    (void)state;
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 41);
    for (int t = 0; t < 12; t++) {
        size_t m = 1 + fl_stats_rng_below(&rng, 40), n = 1 + fl_stats_rng_below(&rng, 40);
        double x[40], y[40], d[1600];
        /* Half the trials on a few integers: many tied differences. */
        for (size_t i = 0; i < m; i++)
            x[i] = t % 2 ? (double)fl_stats_rng_below(&rng, 4) : fl_stats_rng_normal(&rng, 0, 1);
        for (size_t j = 0; j < n; j++)
            y[j] = t % 2 ? (double)fl_stats_rng_below(&rng, 4) : fl_stats_rng_normal(&rng, 0, 1);
        size_t c = 0;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                d[c++] = x[i] - y[j];
        qsort(d, c, sizeof(*d), cmp_dbl);
        for (size_t k = 0; k < c; k++) {
            double got;
            assert_int_equal(fl_stats_pairwise_diff_select(x, m, y, n, k, &got), 0);
            assert_true(got == d[k]);
        }
        double got;
        assert_int_equal(fl_stats_pairwise_diff_select(x, m, y, n, c, &got), FL_EINVAL);
    }
}

static void hl_brute(const double *x, size_t m, const double *y, size_t n, double conf, double *est,
                     double *lo, double *hi) {
    size_t mn = m * n, c = 0;
    double *d = malloc(mn * sizeof(*d));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            d[c++] = x[i] - y[j];
    qsort(d, mn, sizeof(*d), cmp_dbl);
    *est = mn % 2 ? d[mn / 2] : (d[mn / 2 - 1] + d[mn / 2]) / 2;
    bool ties = false;
    double *pool = malloc((m + n) * sizeof(*pool));
    memcpy(pool, x, m * sizeof(*x));
    memcpy(pool + m, y, n * sizeof(*y));
    qsort(pool, m + n, sizeof(*pool), cmp_dbl);
    double tie_term = 0;
    for (size_t i = 0; i < m + n;) {
        size_t j = i;
        while (j + 1 < m + n && pool[j + 1] == pool[i])
            j++;
        double t = (double)(j - i + 1);
        tie_term += t * t * t - t;
        ties |= j > i;
        i = j + 1;
    }
    long C;
    if (!ties && m < 50 && n < 50) {
        uint64_t *counts = u_counts_dp(m, n);
        double total = 0, cum = 0;
        for (size_t u = 0; u <= mn; u++)
            total += (double)counts[u];
        C = 0;
        for (size_t u = 0; u <= mn; u++) {
            cum += (double)counts[u];
            if (cum / total > (1 - conf) / 2 * (1 + 1e-9))
                break;
            C++;
        }
        free(counts);
    } else {
        /* Hollander & Wolfe's large-sample C with the tie-corrected variance, continuity
         * corrected; z from the published 0.975 and 0.95 normal quantiles. */
        double N = (double)(m + n);
        double sd = sqrt((double)mn / 12 * ((N + 1) - tie_term / (N * (N - 1))));
        double z = conf == 0.95 ? 1.959963984540054 : 1.6448536269514722;
        C = (long)floor(mn / 2.0 + 0.5 - z * sd);
    }
    *lo = C >= 1 ? d[C - 1] : -INFINITY;
    *hi = C >= 1 ? d[mn - (size_t)C] : INFINITY;
    free(d);
    free(pool);
}

static void test_hl_vs_brute_force(void **state) {
    (void)state;
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 51);
    const size_t sizes[][2] = {{8, 11}, {30, 30}, {49, 20}, {60, 45}, {120, 80}, {30, 30}};
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        size_t m = sizes[t][0], n = sizes[t][1];
        double *x = malloc(m * sizeof(*x)), *y = malloc(n * sizeof(*y));
        bool tied = t == sizeof(sizes) / sizeof(sizes[0]) - 1;
        for (size_t i = 0; i < m; i++)
            x[i] =
                tied ? (double)fl_stats_rng_below(&rng, 9) : fl_stats_rng_lognormal(&rng, 0.1, 0.3);
        for (size_t j = 0; j < n; j++)
            y[j] =
                tied ? (double)fl_stats_rng_below(&rng, 8) : fl_stats_rng_lognormal(&rng, 0, 0.3);
        const double confs[] = {0.95, 0.90};
        for (size_t c = 0; c < 2; c++) {
            double est, lo, hi;
            hl_brute(x, m, y, n, confs[c], &est, &lo, &hi);
            fl_stats_interval_t r;
            assert_int_equal(fl_stats_hodges_lehmann(x, m, y, n, confs[c], &r), 0);
            assert_true(r.estimate == est);
            assert_true(r.low == lo);
            assert_true(r.high == hi);
            assert_true(r.low <= r.estimate && r.estimate <= r.high);
        }
        free(x);
        free(y);
    }
}

/* ---- bootstrap ---- */

/* Exact distribution of the type-7 q-quantile of a resample of s (n <= 6) by enumerating all n^n
 * equally likely index tuples; returns into vals/probs (distinct values) and their count. */
static size_t exact_resample_dist(const double *s, size_t n, double q, double *vals,
                                  double *probs) {
    size_t total = 1, nd = 0;
    for (size_t i = 0; i < n; i++)
        total *= n;
    double r[8];
    for (size_t code = 0; code < total; code++) {
        size_t c = code;
        for (size_t i = 0; i < n; i++) {
            r[i] = s[c % n];
            c /= n;
        }
        qsort(r, n, sizeof(*r), cmp_dbl);
        double h = (double)(n - 1) * q;
        size_t lo = (size_t)floor(h);
        double v = lo + 1 < n ? r[lo] + (h - lo) * (r[lo + 1] - r[lo]) : r[n - 1];
        size_t k = 0;
        while (k < nd && fabs(vals[k] - v) > 1e-9)
            k++;
        if (k == nd) {
            vals[nd] = v;
            probs[nd++] = 0;
        }
        probs[k] += 1.0 / (double)total;
    }
    return nd;
}

static void test_resample_quantile_exact_distribution(void **state) {
    (void)state;
    /* Values chosen so every interpolation gives a distinct number. */
    const double s[] = {1, 10, 100, 1000, 10000};
    const double qs[] = {0.1, 0.5, 0.95, 1.0, 0.0, 0.3};
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 61);
    for (size_t t = 0; t < sizeof(qs) / sizeof(qs[0]); t++) {
        double vals[3200], probs[3200];
        size_t nd = exact_resample_dist(s, 5, qs[t], vals, probs);
        const int draws = 200000;
        int *hits = calloc(nd, sizeof(*hits));
        for (int d = 0; d < draws; d++) {
            double v = fl_stats_resample_quantile(s, 5, qs[t], &rng);
            size_t k = 0;
            while (k < nd && fabs(vals[k] - v) > 1e-9 * fabs(v))
                k++;
            assert_true(k < nd); /* never a value naive resampling cannot produce */
            hits[k]++;
        }
        for (size_t k = 0; k < nd; k++) {
            double se = sqrt(probs[k] * (1 - probs[k]) / draws);
            assert_true(fabs((double)hits[k] / draws - probs[k]) <= 5 * se + 1e-4);
        }
        free(hits);
    }
}

/* The k-th smallest resampled index: P(J <= j) = P(Binomial(n, (j+1)/n) >= k); checks the
 * gamma route (k far from both ends) on n = 61, q = 0.5 (h = 30, no interpolation). */
static void test_resample_quantile_gamma_route(void **state) {
    (void)state;
    const size_t n = 61, k = 31;
    double s[61];
    for (size_t i = 0; i < n; i++)
        s[i] = (double)i;
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 62);
    const int draws = 100000;
    int hist[61] = {0};
    for (int d = 0; d < draws; d++)
        hist[(int)fl_stats_resample_quantile(s, n, 0.5, &rng)]++;
    double cum_emp = 0;
    for (size_t j = 0; j < n; j++) {
        cum_emp += hist[j];
        double p = (double)(j + 1) / n, tail = 0, term;
        /* P(Bin(n, p) >= k) summed directly. */
        for (size_t i = k; i <= n; i++) {
            term = exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) + i * log(p) +
                       (n - i) * (p < 1 ? log1p(-p) : 0));
            if (p == 1 && i < n)
                term = 0;
            tail += term;
        }
        CLOSE(cum_emp / draws, tail, 0.006);
    }
}

/* Naive percentile bootstrap: draw every index. */
static void naive_bootstrap(const double *x, size_t nx, const double *y, size_t ny, double q,
                            double conf, int B, uint64_t seed, double *lo, double *hi) {
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, seed);
    double *d = malloc(B * sizeof(*d)), *rx = malloc(nx * sizeof(*rx)),
           *ry = malloc(ny * sizeof(*ry));
    for (int b = 0; b < B; b++) {
        for (size_t i = 0; i < nx; i++)
            rx[i] = x[fl_stats_rng_below(&rng, nx)];
        for (size_t j = 0; j < ny; j++)
            ry[j] = y[fl_stats_rng_below(&rng, ny)];
        qsort(rx, nx, sizeof(*rx), cmp_dbl);
        qsort(ry, ny, sizeof(*ry), cmp_dbl);
        double qx, qy;
        fl_stats_quantile_sorted(rx, nx, q, &qx);
        fl_stats_quantile_sorted(ry, ny, q, &qy);
        d[b] = qy - qx;
    }
    qsort(d, B, sizeof(*d), cmp_dbl);
    fl_stats_quantile_sorted(d, B, (1 - conf) / 2, lo);
    fl_stats_quantile_sorted(d, B, (1 + conf) / 2, hi);
    free(d);
    free(rx);
    free(ry);
}

static void test_bootstrap_deterministic_and_consistent(void **state) {
    (void)state;
    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, 71);
    double x[200], y[200];
    for (int i = 0; i < 200; i++) {
        x[i] = fl_stats_rng_lognormal(&rng, log(100), 0.3);
        y[i] = fl_stats_rng_lognormal(&rng, log(110), 0.3);
    }
    fl_stats_interval_t a, b, ra, rb;
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.95, 2000, 5, &a, &ra),
                     0);
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.95, 2000, 5, &b, &rb),
                     0);
    assert_true(a.low == b.low && a.high == b.high && ra.low == rb.low && ra.high == rb.high);
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.95, 2000, 6, &b, &rb),
                     0);
    assert_true(a.low != b.low || a.high != b.high);
    /* The estimate is the plain difference of type-7 p95s. */
    double qx, qy;
    fl_stats_quantile(x, 200, 0.95, &qx);
    fl_stats_quantile(y, 200, 0.95, &qy);
    CLOSE(a.estimate, qy - qx, 1e-12);
    CLOSE(ra.estimate, qy / qx, 1e-12);
    assert_true(a.low < a.estimate && a.estimate < a.high);
    assert_true(ra.low < ra.estimate && ra.estimate < ra.high);
    /* Same answer as naive resampling (different random streams: within Monte Carlo error,
     * taken as 10 % of the interval's width with 20000 rounds each). */
    double lo, hi;
    naive_bootstrap(x, 200, y, 200, 0.95, 0.95, 20000, 9, &lo, &hi);
    assert_int_equal(
        fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.95, 20000, 10, &b, NULL), 0);
    double width = hi - lo;
    CLOSE(b.low, lo, 0.1 * width);
    CLOSE(b.high, hi, 0.1 * width);
    /* The median of 200 is interpolated (h = 99.5) and far from both ends: the gamma route. */
    naive_bootstrap(x, 200, y, 200, 0.5, 0.9, 20000, 11, &lo, &hi);
    assert_int_equal(
        fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.5, 0.9, 20000, 12, &b, NULL), 0);
    width = hi - lo;
    CLOSE(b.low, lo, 0.1 * width);
    CLOSE(b.high, hi, 0.1 * width);
    /* A zero in x: no ratio. Bad input refused. */
    x[3] = 0;
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.9, 100, 1, &a, &ra),
                     0);
    assert_true(isnan(ra.low) && isnan(ra.high));
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.9, 5, 1, &a, &ra),
                     FL_EINVAL);
    x[4] = NAN;
    assert_int_equal(fl_stats_bootstrap_quantile_diff(x, 200, y, 200, 0.95, 0.9, 100, 1, &a, &ra),
                     FL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reference_vectors),
        cmocka_unit_test(test_rng_deterministic_and_distributed),
        cmocka_unit_test(test_normal),
        cmocka_unit_test(test_quantile_type7_known),
        cmocka_unit_test(test_quantile_selection_matches_sort),
        cmocka_unit_test(test_worsening_percent),
        cmocka_unit_test(test_sketch_relative_error_skewed),
        cmocka_unit_test(test_sketch_merge_and_codec),
        cmocka_unit_test(test_sketch_collapse_keeps_upper_quantiles),
        cmocka_unit_test(test_mwu_exact_pmf_matches_dp),
        cmocka_unit_test(test_mwu_exact_known),
        cmocka_unit_test(test_mwu_ties_normal_known),
        cmocka_unit_test(test_mwu_exact_vs_enumeration),
        cmocka_unit_test(test_hl_known),
        cmocka_unit_test(test_pairwise_select_vs_brute_force),
        cmocka_unit_test(test_hl_vs_brute_force),
        cmocka_unit_test(test_resample_quantile_exact_distribution),
        cmocka_unit_test(test_resample_quantile_gamma_route),
        cmocka_unit_test(test_bootstrap_deterministic_and_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
