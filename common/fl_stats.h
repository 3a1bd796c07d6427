/* fl_stats: the statistics every feedloop judge uses (benchmarker, canary).
 *
 * Pure C: no I/O, no global state, no threads. Every function is safe to call from any thread
 * on distinct objects; an fl_stats_rng_t or fl_stats_sketch_t is used by one thread at a time.
 *
 * Memory: functions that take sample arrays borrow them (never keep a pointer after returning).
 * Where a function needs working memory (sorting a copy, the U distribution) it mallocs it and
 * frees it before returning; the header comment says how much. Out of memory aborts. Objects
 * with a _new have a _destroy (NULL is a no-op).
 *
 * Errors: 0 or a negative FL_E* code (fl_err.h). FL_EINVAL for empty samples, non-finite values
 * (NaN or +-inf) in the samples, or parameters out of range; outputs are then left untouched. */
#ifndef FL_STATS_H
#define FL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fl_err.h"

/* ---- seeded pseudo-random numbers ----
 *
 * xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64, so a 64-bit seed gives the same
 * stream in every run (and, IEEE doubles and libm being equal, on every machine): bootstrap
 * intervals and the decision-quality tests are reproducible. Not for cryptography. */
typedef struct fl_stats_rng {
    uint64_t s[4];
    double spare; /* second Box-Muller normal, valid when has_spare */
    bool has_spare;
} fl_stats_rng_t;

/* Seed rng (caller-owned storage) from a 64-bit seed. */
void fl_stats_rng_seed(fl_stats_rng_t *rng, uint64_t seed);

/* Next 64 random bits. */
uint64_t fl_stats_rng_next(fl_stats_rng_t *rng);

/* Uniform double in [0, 1) with 53 random bits. */
double fl_stats_rng_uniform(fl_stats_rng_t *rng);

/* Uniform integer in [0, n) without modulo bias (rejection); n must be > 0 (returns 0 for 0). */
uint64_t fl_stats_rng_below(fl_stats_rng_t *rng, uint64_t n);

/* Normal(mean, sd) by Box-Muller (the pair's second value is kept in rng for the next call). */
double fl_stats_rng_normal(fl_stats_rng_t *rng, double mean, double sd);

/* Lognormal: exp(Normal(mu, sigma)). */
double fl_stats_rng_lognormal(fl_stats_rng_t *rng, double mu, double sigma);

/* Gamma(shape, 1) for shape >= 1 by Marsaglia & Tsang (2000); used for Beta order statistics. */
double fl_stats_rng_gamma(fl_stats_rng_t *rng, double shape);

/* ---- the standard normal distribution ---- */

/* P(Z <= z). */
double fl_stats_normal_cdf(double z);

/* The z with P(Z <= z) = p, for 0 < p < 1 (Acklam's rational approximation refined by one
 * Halley step on erfc: ~1e-15 relative). Returns -inf/+inf for p <= 0 / p >= 1, NaN for NaN. */
double fl_stats_normal_quantile(double p);

/* ---- exact quantiles ----
 *
 * Hyndman & Fan (1996) type 7, the default of R's quantile() and NumPy's quantile(): with the
 * sorted sample x[0..n-1] and h = (n - 1) p, Q(p) = x[floor h] + (h - floor h)(x[floor h + 1] -
 * x[floor h]). Q(0) is the minimum, Q(1) the maximum; n = 1 gives x[0] for every p. */

/* Sort x ascending in place (values must not be NaN). Stable (equal values, -0.0 and +0.0
 * included, keep their order): a radix sort on the IEEE bits, allocating n doubles when n >= 48. */
void fl_stats_sort(double *x, size_t n);

/* fl_stats_sort with caller-provided scratch: tmp holds n doubles (not overlapping x). No
 * allocation. */
void fl_stats_sort_with(double *x, size_t n, double *tmp);

/* Type-7 quantile of an ascending-sorted sample. FL_EINVAL when n == 0 or p outside [0, 1]. The
 * sample is not checked for order or finiteness (callers sorted it). */
int fl_stats_quantile_sorted(const double *sorted, size_t n, double p, double *out);

/* Type-7 quantile of an unsorted sample, reordering x in place (expected O(n) selection, no
 * allocation). FL_EINVAL when n == 0, p outside [0, 1] or a value is not finite. */
int fl_stats_quantile_inplace(double *x, size_t n, double p, double *out);

/* Type-7 quantile of an unsorted sample left untouched (copies it: n doubles, freed before
 * returning). Errors as fl_stats_quantile_inplace. */
int fl_stats_quantile(const double *x, size_t n, double p, double *out);

/* ---- percent change with a direction of "better" ---- */
typedef enum {
    FL_STATS_LOWER_IS_BETTER = 0, /* latency, memory, errors */
    FL_STATS_HIGHER_IS_BETTER = 1 /* throughput, hit rate */
} fl_stats_direction_t;

/* "LOWER_IS_BETTER" / "HIGHER_IS_BETTER", or NULL for a value outside the enum. */
const char *fl_stats_direction_name(fl_stats_direction_t dir);

/* Parse the names above; FL_EINVAL otherwise. */
int fl_stats_direction_parse(const char *s, fl_stats_direction_t *out);

/* Signed worsening percent of candidate against baseline: positive means worse, negative better.
 * LOWER_IS_BETTER: 100 (c - b) / |b|; HIGHER_IS_BETTER: 100 (b - c) / |b|. So 100 -> 110 ms is
 * +10 (worse) and 100 -> 110 req/s is -10 (better). FL_EINVAL when b == 0 (no relative change
 * exists), a value is not finite, or dir is not one of the enum. */
int fl_stats_worsening_percent(double baseline, double candidate, fl_stats_direction_t dir,
                               double *out);

/* ---- DDSketch: mergeable streaming quantiles with a relative-error guarantee ----
 *
 * Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable quantile sketch with relative-error
 * guarantees", VLDB 2019. A value x > 0 is counted in bucket i = ceil(log_gamma x), gamma = (1 +
 * alpha) / (1 - alpha), which covers (gamma^(i-1), gamma^i]; the bucket answers 2 gamma^i / (gamma
 * + 1), within relative error alpha of every value in it. Negative values use a mirrored store;
 * |x| below ~1e-300 counts as zero. So for any p, the answer is within relative error alpha of the
 * exact order statistic x_(floor(p (n - 1))) (0-based, ascending), as long as no bucket was
 * collapsed: when a store would need more than max_buckets buckets, its lowest buckets are folded
 * together (the upper quantiles, the ones judges ask about, keep their guarantee). With alpha =
 * 0.01 and 2048 buckets, collapsing starts only when the data spans a ratio of ~1e17.
 *
 * Two sketches with the same alpha merge exactly: merging equals adding every value to one. */
typedef struct fl_stats_sketch fl_stats_sketch_t;

/* New empty sketch; 1e-6 <= alpha <= 0.5, 16 <= max_buckets <= 2^24 (per sign). Caller owns *out
 * (destroy). */
int fl_stats_sketch_new(double alpha, size_t max_buckets, fl_stats_sketch_t **out);
void fl_stats_sketch_destroy(fl_stats_sketch_t *sk); /* NULL is a no-op */

/* Forget every value, keeping alpha and the allocated buckets. */
void fl_stats_sketch_clear(fl_stats_sketch_t *sk);

/* Add x (finite) count times. FL_EINVAL for a non-finite x. Grows the bucket array (amortised). */
int fl_stats_sketch_add(fl_stats_sketch_t *sk, double x, uint64_t count);

/* Add every value of src into dst (src unchanged). FL_EINVAL when the alphas differ. */
int fl_stats_sketch_merge(fl_stats_sketch_t *dst, const fl_stats_sketch_t *src);

/* Estimated p-quantile (see above), clamped to [min, max]. FL_EINVAL when empty or p outside
 * [0, 1]. */
int fl_stats_sketch_quantile(const fl_stats_sketch_t *sk, double p, double *out);

uint64_t fl_stats_sketch_count(const fl_stats_sketch_t *sk);
double fl_stats_sketch_alpha(const fl_stats_sketch_t *sk);
double fl_stats_sketch_min(const fl_stats_sketch_t *sk); /* NaN when empty */
double fl_stats_sketch_max(const fl_stats_sketch_t *sk); /* NaN when empty */
double fl_stats_sketch_sum(const fl_stats_sketch_t *sk);

/* Portable bytes of the sketch (little-endian, versioned) for checkpoints. *out is malloc'd and
 * owned by the caller (free()); *len its length. */
int fl_stats_sketch_encode(const fl_stats_sketch_t *sk, uint8_t **out, size_t *len);

/* Rebuild a sketch from fl_stats_sketch_encode bytes. FL_EDECODE for bad, truncated or trailing
 * bytes. Caller owns *out. */
int fl_stats_sketch_decode(const void *buf, size_t len, fl_stats_sketch_t **out);

/* ---- Mann-Whitney U (Wilcoxon rank-sum) ----
 *
 * U is the statistic of x: #{(i, j): x_i > y_j} + 0.5 #{(i, j): x_i == y_j} (R's W from
 * wilcox.test(x, y), SciPy's U1 from mannwhitneyu(x, y)).
 *
 * Exact null distribution when there are no ties and nx < 50 and ny < 50 (R's default rule);
 * otherwise the normal approximation with the tie-corrected variance
 *   var U = nx ny / 12 ((N + 1) - sum(t^3 - t) / (N (N - 1))),  N = nx + ny,
 * and a continuity correction of 0.5 toward the mean (as R's correct = TRUE and SciPy's
 * use_continuity = True). When every value is tied (var = 0) all p-values are 1. */
typedef struct fl_stats_mwu {
    double u;           /* U of x, in [0, nx ny] */
    double mean;        /* nx ny / 2 */
    double z;           /* two-sided continuity-corrected z (normal approximation), 0 if exact */
    double p_two_sided; /* H1: the distributions differ in location */
    double p_greater;   /* H1: x is stochastically greater than y */
    double p_less;      /* H1: x is stochastically less than y */
    bool exact;         /* p-values from the exact distribution */
    bool ties;          /* some value occurs more than once in the pooled sample */
} fl_stats_mwu_t;

/* Mann-Whitney test of x against y. Allocates O(nx + ny) for the ranks and, when exact, O(nx ny)
 * for the distribution; freed before returning. FL_EINVAL when a side is empty or a value is not
 * finite. */
int fl_stats_mann_whitney(const double *x, size_t nx, const double *y, size_t ny,
                          fl_stats_mwu_t *out);

/* fl_stats_mann_whitney on ascending-sorted samples (order not checked): the ranks come from
 * merging the two sides, O(nx + ny), no allocation unless exact. Same result as the unsorted
 * call on any order of the same values. */
int fl_stats_mann_whitney_sorted(const double *xs, size_t nx, const double *ys, size_t ny,
                                 fl_stats_mwu_t *out);

/* Exact null distribution of U for sample sizes m, n without ties: pmf[u] = P(U = u) for u in
 * [0, m n]; pmf (caller-owned) must hold m n + 1 doubles. Computed as the coefficients of the
 * Gaussian binomial [m + n choose m]_q over C(m + n, m); accurate to ~1e-15 absolute. FL_EINVAL
 * when m or n is 0 or m + n > 1000. */
int fl_stats_mwu_exact_pmf(size_t m, size_t n, double *pmf);

/* ---- Hodges-Lehmann shift with its confidence interval ----
 *
 * The estimate of the shift of x relative to y (location x - location y) is the median of the
 * nx ny differences x_i - y_j. The interval is [D_(C), D_(nx ny + 1 - C)] on the ascending
 * differences D_(1..nx ny) (Hollander & Wolfe, Nonparametric Statistical Methods, 2nd ed., 4.3;
 * the interval R's wilcox.test(conf.int = TRUE) reports in the exact case), where C is the largest
 * integer with P(U <= C - 1) <= (1 - confidence) / 2 under the null: from the exact distribution
 * when Mann-Whitney would be exact, else C = floor(nx ny / 2 + 0.5 - z sqrt(var U)) with the
 * tie-corrected variance. Coverage is at least the confidence under a pure shift model. When C < 1
 * (samples too small for the confidence) the interval is (-inf, +inf).
 *
 * No nx ny array is built: order statistics of the differences are selected on the implicit
 * sorted matrix in a few rounds of O(nx + ny) each (sampled pivot pairs bracketing the rank,
 * counted by monotone walks; fixed seed, and the answer does not depend on it).
 * Allocates O(nx + ny) (and O(nx ny) for the exact distribution), freed before returning. */
typedef struct fl_stats_interval {
    double estimate;
    double low;
    double high;
    double confidence; /* the two-sided confidence asked for */
} fl_stats_interval_t;

int fl_stats_hodges_lehmann(const double *x, size_t nx, const double *y, size_t ny,
                            double confidence, fl_stats_interval_t *out);

/* fl_stats_hodges_lehmann on ascending-sorted samples (order not checked); same result. One
 * allocation of O(nx + ny) (plus the exact distribution when used). */
int fl_stats_hodges_lehmann_sorted(const double *xs, size_t nx, const double *ys, size_t ny,
                                   double confidence, fl_stats_interval_t *out);

/* k-th smallest (0-based) of the nx ny differences x_i - y_j. Used by fl_stats_hodges_lehmann;
 * public so tests can check it against brute force. FL_EINVAL for k >= nx ny. */
int fl_stats_pairwise_diff_select(const double *x, size_t nx, const double *y, size_t ny,
                                  uint64_t k, double *out);

/* ---- seeded bootstrap interval for the difference of two quantiles ----
 *
 * Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) of Q_q(y) - Q_q(x), Q the type-7
 * quantile: each of `resamples` rounds resamples x and y with replacement and takes the
 * difference; the interval is the type-7 (1 - confidence)/2 and (1 + confidence)/2 quantiles of
 * the differences; the estimate is the difference on the original samples. The ratio Q_q(y) /
 * Q_q(x) is bootstrapped from the same rounds when every x is > 0 (else ratio is all NaN).
 *
 * A resample's type-7 quantile needs only two of its order statistics, and the k-th smallest of
 * n draws with replacement from the sorted sample is s[floor(n U_(k))], U_(k) the k-th order
 * statistic of n uniforms. So each round draws U_(k) and U_(k+1) directly (walking down from the
 * maximum or up from the minimum when k is within 24 of an end, as for a p95; else U_(k) ~
 * Beta(k, n + 1 - k) and U_(k+1) as the minimum of the n - k draws above it): the same
 * distribution as naive resampling, at O(1) per round instead of O(n).
 * Deterministic for a given seed. Allocates O(nx + ny + resamples), freed before returning.
 * FL_EINVAL for empty samples, non-finite values, q outside [0, 1], confidence outside (0, 1), or
 * resamples < 10. ratio may be NULL. */
/* One bootstrap round for one sample: the type-7 q-quantile of n draws with replacement from the
 * ascending-sorted sample, drawn through two uniform order statistics as described above. Public
 * so tests can check its distribution against exact enumeration. NaN when n == 0 or q is outside
 * [0, 1]. */
double fl_stats_resample_quantile(const double *sorted, size_t n, double q, fl_stats_rng_t *rng);

int fl_stats_bootstrap_quantile_diff(const double *x, size_t nx, const double *y, size_t ny,
                                     double q, double confidence, unsigned resamples, uint64_t seed,
                                     fl_stats_interval_t *diff, fl_stats_interval_t *ratio);

/* fl_stats_bootstrap_quantile_diff on ascending-sorted samples (order not checked): the same
 * result for the same seed, without sorting copies. Allocates O(resamples). */
int fl_stats_bootstrap_quantile_diff_sorted(const double *xs, size_t nx, const double *ys,
                                            size_t ny, double q, double confidence,
                                            unsigned resamples, uint64_t seed,
                                            fl_stats_interval_t *diff, fl_stats_interval_t *ratio);

#endif
