#include "fl_stats.h"
#include "fl_mem.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Not FL_PI / FL_SQRT2: those need a feature macro under -std=c11. */
#define FL_PI 3.14159265358979323846
#define FL_SQRT2 1.41421356237309504880

/* Allocation goes through fl_mem (out of memory aborts): callers never see a half-built
 * statistic. */

static bool all_finite(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* PRNG */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void fl_stats_rng_seed(fl_stats_rng_t *rng, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&sm);
    rng->spare = 0.0;
    rng->has_spare = false;
}

uint64_t fl_stats_rng_next(fl_stats_rng_t *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fl_stats_rng_uniform(fl_stats_rng_t *rng) {
    return (double)(fl_stats_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t fl_stats_rng_below(fl_stats_rng_t *rng, uint64_t n) {
    if (n == 0)
        return 0;
    /* Reject the 2^64 mod n lowest values so every residue is equally likely. */
    uint64_t threshold = -n % n;
    for (;;) {
        uint64_t r = fl_stats_rng_next(rng);
        if (r >= threshold)
            return r % n;
    }
}

double fl_stats_rng_normal(fl_stats_rng_t *rng, double mean, double sd) {
    if (rng->has_spare) {
        rng->has_spare = false;
        return mean + sd * rng->spare;
    }
    /* 1 - u is in (0, 1], so the log is finite. */
    double u1 = 1.0 - fl_stats_rng_uniform(rng);
    double u2 = fl_stats_rng_uniform(rng);
    double r = sqrt(-2.0 * log(u1));
    double theta = 2.0 * FL_PI * u2;
    rng->spare = r * sin(theta);
    rng->has_spare = true;
    return mean + sd * r * cos(theta);
}

double fl_stats_rng_lognormal(fl_stats_rng_t *rng, double mu, double sigma) {
    return exp(fl_stats_rng_normal(rng, mu, sigma));
}

double fl_stats_rng_gamma(fl_stats_rng_t *rng, double shape) {
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = fl_stats_rng_normal(rng, 0.0, 1.0);
        double v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = 1.0 - fl_stats_rng_uniform(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Standard normal */

double fl_stats_normal_cdf(double z) {
    return 0.5 * erfc(-z / FL_SQRT2);
}

double fl_stats_normal_quantile(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    const double plow = 0.02425;
    if (isnan(p))
        return NAN;
    if (p <= 0.0)
        return -INFINITY;
    if (p >= 1.0)
        return INFINITY;
    double x;
    if (p < plow) {
        double q = sqrt(-2.0 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (p <= 1.0 - plow) {
        double q = p - 0.5;
        double r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        double q = sqrt(-2.0 * log1p(-p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    /* Acklam's approximation is good to 1.15e-9; one Halley step on erfc takes it to machine
     * precision, which the exactness of published critical values (1.959963984540054) needs. */
    double e = 0.5 * erfc(-x / FL_SQRT2) - p;
    double u = e * sqrt(2.0 * FL_PI) * exp(x * x / 2.0);
    return x - u / (1.0 + x * u / 2.0);
}

/* ------------------------------------------------------------------------------------------ */
/* Sorting, selection, type-7 quantiles */

/* Order-preserving unsigned key of a double (not NaN): flip every bit of a negative, the sign bit
 * of a positive. -0.0 gets the key of +0.0, so the two compare equal, as they do under `<`. */
static inline uint64_t dkey(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    if (u == 0x8000000000000000ULL)
        u = 0;
    return (u >> 63) ? ~u : (u | 0x8000000000000000ULL);
}

#define SORT_SMALL 48

static void insertion_sort(double *x, size_t n) {
    for (size_t i = 1; i < n; i++) {
        double v = x[i];
        size_t j = i;
        while (j > 0 && v < x[j - 1]) {
            x[j] = x[j - 1];
            j--;
        }
        x[j] = v;
    }
}

/* Stable sort (equal values keep their order, as with a merge sort): LSD radix sort on the keys,
 * 8 bits a pass, skipping the passes where every key has the same digit (the exponent bytes of
 * samples of one magnitude). tmp holds n doubles. */
void fl_stats_sort_with(double *x, size_t n, double *tmp) {
    if (n < SORT_SMALL) {
        insertion_sort(x, n);
        return;
    }
    size_t cnt[8][256];
    memset(cnt, 0, sizeof(cnt));
    for (size_t i = 0; i < n; i++) {
        uint64_t k = dkey(x[i]);
        for (int b = 0; b < 8; b++)
            cnt[b][(k >> (8 * b)) & 0xff]++;
    }
    uint64_t k0 = dkey(x[0]);
    double *src = x, *dst = tmp;
    for (int b = 0; b < 8; b++) {
        size_t *c = cnt[b];
        if (c[(k0 >> (8 * b)) & 0xff] == n)
            continue;
        size_t sum = 0;
        for (int d = 0; d < 256; d++) {
            size_t t = c[d];
            c[d] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            dst[c[(dkey(v) >> (8 * b)) & 0xff]++] = v;
        }
        double *t = src;
        src = dst;
        dst = t;
    }
    if (src != x)
        memcpy(x, src, n * sizeof(*x));
}

void fl_stats_sort(double *x, size_t n) {
    if (n < SORT_SMALL) {
        insertion_sort(x, n);
        return;
    }
    double *tmp = fl_mem_alloc(n * sizeof(*tmp));
    fl_stats_sort_with(x, n, tmp);
    free(tmp);
}

static void swap_d(double *a, ptrdiff_t i, ptrdiff_t j) {
    double t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Reorder a so that a[k] is the k-th smallest, with nothing larger before it and nothing smaller
 * after it (Hoare partition, median-of-three pivot: expected linear, fine with duplicates). */
static void select_kth(double *a, size_t n, size_t k) {
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (hi > lo) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo])
            swap_d(a, lo, mid);
        if (a[hi] < a[lo])
            swap_d(a, lo, hi);
        if (a[hi] < a[mid])
            swap_d(a, mid, hi);
        double pivot = a[mid];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                swap_d(a, i, j);
                i++;
                j--;
            }
        }
        if (kk <= j)
            hi = j;
        else if (kk >= i)
            lo = i;
        else
            return;
    }
}

static double lerp7(double lo, double hi, double frac) {
    return frac == 0.0 ? lo : lo + frac * (hi - lo);
}

int fl_stats_quantile_sorted(const double *sorted, size_t n, double p, double *out) {
    if (n == 0 || !(p >= 0.0 && p <= 1.0))
        return FL_EINVAL;
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1) {
        *out = sorted[n - 1];
        return 0;
    }
    *out = lerp7(sorted[lo], sorted[lo + 1], h - (double)lo);
    return 0;
}

int fl_stats_quantile_inplace(double *x, size_t n, double p, double *out) {
    if (n == 0 || !(p >= 0.0 && p <= 1.0) || !all_finite(x, n))
        return FL_EINVAL;
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        lo = n - 1;
    select_kth(x, n, lo);
    double frac = h - (double)lo;
    if (frac == 0.0 || lo == n - 1) {
        *out = x[lo];
        return 0;
    }
    /* Everything after the selected element is >= it, so the next order statistic is their
     * minimum. */
    double next = x[lo + 1];
    for (size_t i = lo + 2; i < n; i++)
        if (x[i] < next)
            next = x[i];
    *out = lerp7(x[lo], next, frac);
    return 0;
}

int fl_stats_quantile(const double *x, size_t n, double p, double *out) {
    if (n == 0)
        return FL_EINVAL;
    double *copy = fl_mem_alloc(n * sizeof(*copy));
    memcpy(copy, x, n * sizeof(*copy));
    int rc = fl_stats_quantile_inplace(copy, n, p, out);
    free(copy);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Direction and percent change */

const char *fl_stats_direction_name(fl_stats_direction_t dir) {
    switch (dir) {
    case FL_STATS_LOWER_IS_BETTER:
        return "LOWER_IS_BETTER";
    case FL_STATS_HIGHER_IS_BETTER:
        return "HIGHER_IS_BETTER";
    }
    return NULL;
}

int fl_stats_direction_parse(const char *s, fl_stats_direction_t *out) {
    if (s != NULL && strcmp(s, "LOWER_IS_BETTER") == 0)
        *out = FL_STATS_LOWER_IS_BETTER;
    else if (s != NULL && strcmp(s, "HIGHER_IS_BETTER") == 0)
        *out = FL_STATS_HIGHER_IS_BETTER;
    else
        return FL_EINVAL;
    return 0;
}

int fl_stats_worsening_percent(double baseline, double candidate, fl_stats_direction_t dir,
                               double *out) {
    if (!isfinite(baseline) || !isfinite(candidate) || baseline == 0.0)
        return FL_EINVAL;
    double change = 100.0 * (candidate - baseline) / fabs(baseline);
    switch (dir) {
    case FL_STATS_LOWER_IS_BETTER:
        *out = change;
        return 0;
    case FL_STATS_HIGHER_IS_BETTER:
        *out = -change;
        return 0;
    }
    return FL_EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* DDSketch */

/* One sign's buckets: bins[k] counts index base + k; [lo, hi] is the occupied range. */
typedef struct sk_store {
    uint64_t *bins;
    size_t cap;
    int32_t base;
    int32_t lo, hi;
    uint64_t total;
    bool collapsed; /* bucket lo also holds everything below it */
} sk_store_t;

struct fl_stats_sketch {
    double alpha;
    double gamma;
    double log_gamma;
    double min_indexable;
    size_t max_buckets;
    sk_store_t pos;
    sk_store_t neg; /* by |x| */
    uint64_t zero;
    uint64_t count;
    double min, max, sum;
};

#define SK_MIN_ALPHA 1e-6
#define SK_MAX_ALPHA 0.5
#define SK_MIN_BUCKETS 16
#define SK_MAX_BUCKETS (1u << 24)

int fl_stats_sketch_new(double alpha, size_t max_buckets, fl_stats_sketch_t **out) {
    if (!(alpha >= SK_MIN_ALPHA && alpha <= SK_MAX_ALPHA) || max_buckets < SK_MIN_BUCKETS ||
        max_buckets > SK_MAX_BUCKETS)
        return FL_EINVAL;
    fl_stats_sketch_t *sk = fl_mem_calloc(1, sizeof(*sk));
    sk->alpha = alpha;
    sk->gamma = (1.0 + alpha) / (1.0 - alpha);
    sk->log_gamma = log1p(2.0 * alpha / (1.0 - alpha));
    /* Below this, gamma^index would underflow; such values are counted as zero. */
    sk->min_indexable = DBL_MIN * sk->gamma;
    sk->max_buckets = max_buckets;
    sk->min = NAN;
    sk->max = NAN;
    *out = sk;
    return 0;
}

void fl_stats_sketch_destroy(fl_stats_sketch_t *sk) {
    if (sk == NULL)
        return;
    free(sk->pos.bins);
    free(sk->neg.bins);
    free(sk);
}

static void store_clear(sk_store_t *st) {
    if (st->bins != NULL)
        memset(st->bins, 0, st->cap * sizeof(*st->bins));
    st->total = 0;
    st->collapsed = false;
    st->lo = st->hi = st->base = 0;
}

void fl_stats_sketch_clear(fl_stats_sketch_t *sk) {
    store_clear(&sk->pos);
    store_clear(&sk->neg);
    sk->zero = 0;
    sk->count = 0;
    sk->sum = 0.0;
    sk->min = NAN;
    sk->max = NAN;
}

/* Make the store hold exactly the index range [tlo, thi] (tlo may be above st->lo when folding
 * the lowest buckets), reallocating when the range leaves the buffer. */
static void store_reshape(sk_store_t *st, int32_t tlo, int32_t thi) {
    size_t range = (size_t)((int64_t)thi - tlo + 1);
    bool fits =
        st->bins != NULL && tlo >= st->base && (int64_t)thi < (int64_t)st->base + (int64_t)st->cap;
    if (fits && (st->total == 0 || tlo <= st->lo)) {
        return;
    }
    if (fits) {
        /* Fold [lo, tlo - 1] into tlo in place. */
        uint64_t folded = 0;
        for (int32_t i = st->lo; i < tlo; i++) {
            folded += st->bins[i - st->base];
            st->bins[i - st->base] = 0;
        }
        st->bins[tlo - st->base] += folded;
        st->lo = tlo;
        return;
    }
    size_t cap = range + range / 2 + 16;
    uint64_t *bins = fl_mem_calloc(cap, sizeof(*bins));
    int32_t base = (int32_t)((int64_t)tlo - (int64_t)(cap - range) / 2);
    if (st->total > 0) {
        for (int32_t i = st->lo; i <= st->hi; i++) {
            int32_t dest = i < tlo ? tlo : i;
            bins[dest - base] += st->bins[i - st->base];
        }
    }
    free(st->bins);
    st->bins = bins;
    st->cap = cap;
    st->base = base;
    if (st->total > 0 && st->lo < tlo)
        st->lo = tlo;
}

static void store_add(sk_store_t *st, int32_t idx, uint64_t count, size_t max_buckets) {
    if (st->total == 0) {
        store_reshape(st, idx, idx);
        st->lo = st->hi = idx;
    } else {
        if (st->collapsed && idx < st->lo)
            idx = st->lo;
        int32_t tlo = idx < st->lo ? idx : st->lo;
        int32_t thi = idx > st->hi ? idx : st->hi;
        if ((int64_t)thi - tlo + 1 > (int64_t)max_buckets) {
            tlo = (int32_t)((int64_t)thi - (int64_t)max_buckets + 1);
            st->collapsed = true;
            if (idx < tlo)
                idx = tlo;
        }
        store_reshape(st, tlo, thi);
        if (idx < st->lo)
            st->lo = idx;
        if (idx > st->hi)
            st->hi = idx;
    }
    st->bins[idx - st->base] += count;
    st->total += count;
}

static int32_t sk_index(const fl_stats_sketch_t *sk, double magnitude) {
    return (int32_t)ceil(log(magnitude) / sk->log_gamma);
}

static double sk_value(const fl_stats_sketch_t *sk, int32_t idx) {
    return 2.0 * exp((double)idx * sk->log_gamma) / (sk->gamma + 1.0);
}

int fl_stats_sketch_add(fl_stats_sketch_t *sk, double x, uint64_t count) {
    if (!isfinite(x))
        return FL_EINVAL;
    if (count == 0)
        return 0;
    if (x >= sk->min_indexable)
        store_add(&sk->pos, sk_index(sk, x), count, sk->max_buckets);
    else if (x <= -sk->min_indexable)
        store_add(&sk->neg, sk_index(sk, -x), count, sk->max_buckets);
    else
        sk->zero += count;
    if (sk->count == 0 || x < sk->min)
        sk->min = x;
    if (sk->count == 0 || x > sk->max)
        sk->max = x;
    sk->count += count;
    sk->sum += x * (double)count;
    return 0;
}

static void store_merge(sk_store_t *dst, const sk_store_t *src, size_t max_buckets) {
    if (src->total == 0)
        return;
    /* Highest first: a collapse triggered by the merge then folds the lowest, as adds would. */
    for (int32_t i = src->hi; i >= src->lo; i--) {
        uint64_t c = src->bins[i - src->base];
        if (c != 0)
            store_add(dst, i, c, max_buckets);
    }
    if (src->collapsed)
        dst->collapsed = true;
}

int fl_stats_sketch_merge(fl_stats_sketch_t *dst, const fl_stats_sketch_t *src) {
    if (dst->alpha != src->alpha)
        return FL_EINVAL;
    if (src->count == 0)
        return 0;
    store_merge(&dst->pos, &src->pos, dst->max_buckets);
    store_merge(&dst->neg, &src->neg, dst->max_buckets);
    dst->zero += src->zero;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    return 0;
}

int fl_stats_sketch_quantile(const fl_stats_sketch_t *sk, double p, double *out) {
    if (sk->count == 0 || !(p >= 0.0 && p <= 1.0))
        return FL_EINVAL;
    /* The answer is the bucket holding the 0-based element floor(p (n - 1)). */
    uint64_t rank = (uint64_t)floor(p * (double)(sk->count - 1));
    uint64_t cum = 0;
    double v = NAN;
    const sk_store_t *neg = &sk->neg, *pos = &sk->pos;
    if (neg->total > 0) {
        for (int32_t i = neg->hi; i >= neg->lo; i--) {
            cum += neg->bins[i - neg->base];
            if (cum > rank) {
                v = -sk_value(sk, i);
                goto clamp;
            }
        }
    }
    cum += sk->zero;
    if (cum > rank) {
        v = 0.0;
        goto clamp;
    }
    for (int32_t i = pos->lo; pos->total > 0 && i <= pos->hi; i++) {
        cum += pos->bins[i - pos->base];
        if (cum > rank) {
            v = sk_value(sk, i);
            goto clamp;
        }
    }
    v = sk->max; /* unreachable while counts are consistent */
clamp:
    /* The exact answer lies in [min, max], so clamping can only reduce the error. */
    if (v < sk->min)
        v = sk->min;
    if (v > sk->max)
        v = sk->max;
    *out = v;
    return 0;
}

uint64_t fl_stats_sketch_count(const fl_stats_sketch_t *sk) {
    return sk->count;
}

double fl_stats_sketch_alpha(const fl_stats_sketch_t *sk) {
    return sk->alpha;
}

double fl_stats_sketch_min(const fl_stats_sketch_t *sk) {
    return sk->min;
}

double fl_stats_sketch_max(const fl_stats_sketch_t *sk) {
    return sk->max;
}

double fl_stats_sketch_sum(const fl_stats_sketch_t *sk) {
    return sk->sum;
}

/* Encoding: "FLSK", version 1, alpha f64, max_buckets u32, count u64, zero u64, min f64, max
 * f64, sum f64, then for pos and neg: collapsed u8, nbins u32, lo i32, nbins LEB128 counts. */
#define SK_MAGIC "FLSK"
#define SK_VERSION 1

typedef struct sk_buf {
    uint8_t *p;
    size_t len, cap;
} sk_buf_t;

static void buf_put(sk_buf_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void buf_u64(sk_buf_t *b, uint64_t v, int bytes) {
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, tmp, (size_t)bytes);
}

static void buf_f64(sk_buf_t *b, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    buf_u64(b, u, 8);
}

static void buf_varint(sk_buf_t *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    buf_put(b, tmp, n);
}

static void encode_store(sk_buf_t *b, const sk_store_t *st) {
    uint8_t collapsed = st->collapsed ? 1 : 0;
    buf_put(b, &collapsed, 1);
    uint32_t nbins = st->total ? (uint32_t)(st->hi - st->lo + 1) : 0;
    buf_u64(b, nbins, 4);
    buf_u64(b, (uint32_t)(st->total ? st->lo : 0), 4);
    for (uint32_t k = 0; k < nbins; k++)
        buf_varint(b, st->bins[st->lo + (int32_t)k - st->base]);
}

int fl_stats_sketch_encode(const fl_stats_sketch_t *sk, uint8_t **out, size_t *len) {
    sk_buf_t b = {0};
    uint8_t version = SK_VERSION;
    buf_put(&b, SK_MAGIC, 4);
    buf_put(&b, &version, 1);
    buf_f64(&b, sk->alpha);
    buf_u64(&b, sk->max_buckets, 4);
    buf_u64(&b, sk->count, 8);
    buf_u64(&b, sk->zero, 8);
    buf_f64(&b, sk->min);
    buf_f64(&b, sk->max);
    buf_f64(&b, sk->sum);
    encode_store(&b, &sk->pos);
    encode_store(&b, &sk->neg);
    *out = b.p;
    *len = b.len;
    return 0;
}

typedef struct sk_reader {
    const uint8_t *p;
    size_t len, off;
    bool bad;
} sk_reader_t;

static uint64_t rd_u64(sk_reader_t *r, int bytes) {
    if (r->bad || r->len - r->off < (size_t)bytes) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
    r->off += (size_t)bytes;
    return v;
}

static double rd_f64(sk_reader_t *r) {
    uint64_t u = rd_u64(r, 8);
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static uint64_t rd_varint(sk_reader_t *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->bad || r->off >= r->len) {
            r->bad = true;
            return 0;
        }
        uint8_t byte = r->p[r->off++];
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

static int decode_store(sk_reader_t *r, fl_stats_sketch_t *sk, sk_store_t *st) {
    uint64_t collapsed = rd_u64(r, 1);
    uint64_t nbins = rd_u64(r, 4);
    int32_t lo = (int32_t)(uint32_t)rd_u64(r, 4);
    if (r->bad || collapsed > 1 || nbins > sk->max_buckets ||
        (int64_t)lo + (int64_t)nbins > INT32_MAX)
        return FL_EDECODE;
    for (uint64_t k = 0; k < nbins; k++) {
        uint64_t c = rd_varint(r);
        if (r->bad)
            return FL_EDECODE;
        if (c != 0)
            store_add(st, (int32_t)(lo + (int64_t)k), c, sk->max_buckets);
    }
    st->collapsed = collapsed == 1;
    return 0;
}

int fl_stats_sketch_decode(const void *buf, size_t len, fl_stats_sketch_t **out) {
    sk_reader_t r = {.p = buf, .len = len};
    fl_stats_sketch_t *sk = NULL;
    int rc = FL_EDECODE;
    if (len < 5 || memcmp(buf, SK_MAGIC, 4) != 0 || r.p[4] != SK_VERSION)
        goto out;
    r.off = 5;
    double alpha = rd_f64(&r);
    uint64_t max_buckets = rd_u64(&r, 4);
    uint64_t count = rd_u64(&r, 8);
    uint64_t zero = rd_u64(&r, 8);
    double min = rd_f64(&r), max = rd_f64(&r), sum = rd_f64(&r);
    if (r.bad || fl_stats_sketch_new(alpha, (size_t)max_buckets, &sk) != 0)
        goto out;
    if (decode_store(&r, sk, &sk->pos) != 0 || decode_store(&r, sk, &sk->neg) != 0)
        goto out;
    if (r.off != r.len || sk->pos.total + sk->neg.total + zero != count)
        goto out;
    if (count > 0 && !(min <= max))
        goto out;
    sk->zero = zero;
    sk->count = count;
    sk->min = count ? min : NAN;
    sk->max = count ? max : NAN;
    sk->sum = sum;
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    fl_stats_sketch_destroy(sk);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Mann-Whitney U */

/* Midranks of the pooled sample of two ascending samples, by merging them: the rank sum of x,
 * sum(t^3 - t) over tie groups, any ties. Groups are visited in ascending order and each x in a
 * group adds its midrank, the same additions in the same order as ranking a sorted pool. */
static void rank_sorted(const double *xs, size_t nx, const double *ys, size_t ny,
                        double *rank_sum_x, double *tie_term, bool *ties) {
    double rsum = 0.0, tt = 0.0;
    size_t i = 0, j = 0, pos = 0;
    while (i < nx || j < ny) {
        double v = j >= ny || (i < nx && xs[i] < ys[j]) ? xs[i] : ys[j];
        size_t i0 = i, j0 = j;
        while (i < nx && xs[i] == v)
            i++;
        while (j < ny && ys[j] == v)
            j++;
        size_t t = (i - i0) + (j - j0);
        double midrank = ((double)pos + (double)(pos + t - 1)) / 2.0 + 1.0;
        for (size_t k = i0; k < i; k++)
            rsum += midrank;
        double td = (double)t;
        tt += td * td * td - td;
        pos += t;
    }
    *rank_sum_x = rsum;
    *tie_term = tt;
    *ties = tt > 0.0;
}

/* Ascending copies of x and y in one block (*block: free it). */
static void sorted_copies(const double *x, size_t nx, const double *y, size_t ny, double **block,
                          double **xs, double **ys) {
    size_t big = nx > ny ? nx : ny;
    double *b = fl_mem_alloc((nx + ny + big) * sizeof(*b));
    memcpy(b, x, nx * sizeof(*b));
    memcpy(b + nx, y, ny * sizeof(*b));
    fl_stats_sort_with(b, nx, b + nx + ny);
    fl_stats_sort_with(b + nx, ny, b + nx + ny);
    *block = b;
    *xs = b;
    *ys = b + nx;
}

static double mwu_sd(size_t nx, size_t ny, double tie_term) {
    double n = (double)(nx + ny);
    double var = (double)nx * (double)ny / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    return var > 0.0 ? sqrt(var) : 0.0;
}

/* R's rule for when the exact distribution is used. */
static bool mwu_use_exact(size_t nx, size_t ny, bool ties) {
    return !ties && nx < 50 && ny < 50;
}

int fl_stats_mwu_exact_pmf(size_t m, size_t n, double *pmf) {
    if (m == 0 || n == 0 || m + n > 1000)
        return FL_EINVAL;
    size_t deg = m * n;
    /* Coefficients of [m + n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i): the number
     * of arrangements with U = u is the number of partitions of u into at most m parts <= n.
     * After step i the polynomial is [n + i choose i]_q, of degree i n. The lower half is
     * accurate (each coefficient only depends on smaller, smaller-or-equal ones); the upper half
     * suffers cancellation, so it is rebuilt from the symmetry pmf[u] = pmf[m n - u]. */
    memset(pmf, 0, (deg + 1) * sizeof(*pmf));
    pmf[0] = 1.0;
    size_t cur = 0;
    for (size_t i = 1; i <= m; i++) {
        size_t a = n + i;
        size_t next = cur + n;
        /* Multiply by (1 - q^a), then divide by (1 - q^i): the quotient up to degree `next` only
         * reads the product up to `next`, and it is exact (no remainder). */
        for (size_t k = next; k >= a; k--)
            pmf[k] -= pmf[k - a];
        for (size_t k = i; k <= next; k++)
            pmf[k] += pmf[k - i];
        cur = next;
    }
    for (size_t u = 0; u <= deg / 2; u++)
        pmf[deg - u] = pmf[u];
    double total = 0.0;
    for (size_t u = 0; u <= deg; u++)
        total += pmf[u];
    for (size_t u = 0; u <= deg; u++)
        pmf[u] /= total;
    return 0;
}

/* P(U <= u) and P(U >= u) for integer u from the exact pmf; each tail summed from its own end so
 * small p-values keep their relative precision. */
static void exact_tails(const double *pmf, size_t deg, size_t u, double *p_le, double *p_ge) {
    double le = 0.0, ge = 0.0;
    for (size_t k = 0; k <= u; k++)
        le += pmf[k];
    for (size_t k = deg + 1; k-- > u;)
        ge += pmf[k];
    *p_le = le < 1.0 ? le : 1.0;
    *p_ge = ge < 1.0 ? ge : 1.0;
}

int fl_stats_mann_whitney(const double *x, size_t nx, const double *y, size_t ny,
                          fl_stats_mwu_t *out) {
    if (nx == 0 || ny == 0 || !all_finite(x, nx) || !all_finite(y, ny))
        return FL_EINVAL;
    double *block, *xs, *ys;
    sorted_copies(x, nx, y, ny, &block, &xs, &ys);
    int rc = fl_stats_mann_whitney_sorted(xs, nx, ys, ny, out);
    free(block);
    return rc;
}

int fl_stats_mann_whitney_sorted(const double *xs, size_t nx, const double *ys, size_t ny,
                                 fl_stats_mwu_t *out) {
    if (nx == 0 || ny == 0 || !all_finite(xs, nx) || !all_finite(ys, ny))
        return FL_EINVAL;
    double rank_sum, tie_term;
    bool ties;
    rank_sorted(xs, nx, ys, ny, &rank_sum, &tie_term, &ties);
    fl_stats_mwu_t r = {0};
    r.u = rank_sum - (double)nx * ((double)nx + 1.0) / 2.0;
    r.mean = (double)nx * (double)ny / 2.0;
    r.ties = ties;
    if (mwu_use_exact(nx, ny, ties)) {
        size_t deg = nx * ny;
        double *pmf = fl_mem_alloc((deg + 1) * sizeof(*pmf));
        fl_stats_mwu_exact_pmf(nx, ny, pmf);
        size_t u = (size_t)llround(r.u);
        exact_tails(pmf, deg, u, &r.p_less, &r.p_greater);
        double p2 = 2.0 * (r.p_less < r.p_greater ? r.p_less : r.p_greater);
        r.p_two_sided = p2 < 1.0 ? p2 : 1.0;
        r.exact = true;
        free(pmf);
    } else {
        double sd = mwu_sd(nx, ny, tie_term);
        double d = r.u - r.mean;
        if (sd == 0.0) {
            r.p_two_sided = r.p_greater = r.p_less = 1.0;
        } else {
            r.p_greater = fl_stats_normal_cdf(-(d - 0.5) / sd);
            r.p_less = fl_stats_normal_cdf((d + 0.5) / sd);
            double corr = d > 0 ? 0.5 : (d < 0 ? -0.5 : 0.0);
            r.z = (d - corr) / sd;
            double p2 = 2.0 * fl_stats_normal_cdf(-fabs(r.z));
            r.p_two_sided = p2 < 1.0 ? p2 : 1.0;
        }
    }
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Order statistics of pairwise differences; Hodges-Lehmann */

/* Order statistics of the differences D(i, j) = xs[i] - yd[j], xs ascending and yd descending,
 * so that every row (over j) ascends and so does every column. Rounding is monotone, so the
 * computed differences keep that order: any exact selection returns the same value.
 *
 * Candidates are the columns [L[i], R[i]) of each row; everything left of a window is smaller
 * than the answer and everything right of it larger. Each round draws KTH_SAMPLE random
 * candidates and takes two of them as pivots bracketing the answer's expected rank with a margin
 * of three standard deviations (Floyd & Rivest 1975); one O(m + n) monotone walk counts, for both
 * pivots, the differences below and up to each, and the windows are cut to the side or the
 * bracket holding the answer. A round keeps ~10 % of the candidates in expectation, so a
 * million candidates shrink to a few thousand in about three rounds; those are then copied out
 * and selected directly. */
#define KTH_SAMPLE 1024

typedef struct kth_work {
    size_t *L, *R, *plt_lo, *ple_lo, *plt_hi, *ple_hi;
    size_t *BL, *BR; /* a band's windows (kth_range with k1 < k2), the start of later calls */
    uint64_t *pre;   /* m + 1 window prefix sums */
    size_t *guide;   /* m: guide[b] is at or before the row holding candidate floor(b total / m) */
    double *buf;     /* max(small, KTH_SAMPLE) */
    size_t small;    /* copy out and select at or below this many candidates */
} kth_work_t;

static size_t kth_small(size_t m, size_t n) {
    size_t s = 2 * (m + n);
    return s > 2048 ? s : 2048;
}

/* Bytes of work for kth_init. */
static size_t kth_work_bytes(size_t m, size_t n) {
    size_t small = kth_small(m, n);
    if (small < KTH_SAMPLE)
        small = KTH_SAMPLE;
    return 9 * m * sizeof(size_t) + (m + 1) * sizeof(uint64_t) + small * sizeof(double);
}

static void kth_init(kth_work_t *w, void *mem, size_t m, size_t n) {
    size_t *z = mem;
    w->L = z;
    w->R = z + m;
    w->plt_lo = z + 2 * m;
    w->ple_lo = z + 3 * m;
    w->plt_hi = z + 4 * m;
    w->ple_hi = z + 5 * m;
    w->guide = z + 6 * m;
    w->BL = z + 7 * m;
    w->BR = z + 8 * m;
    w->pre = (uint64_t *)(z + 9 * m);
    w->buf = (double *)(w->pre + m + 1);
    w->small = kth_small(m, n);
}

/* Per row i of D(i, j) = xs[i] - yd[j] (ascending in j), ple[i] = #{j : D(i, j) <= v} and
 * plt[i] = #{j : D(i, j) < v}, with their totals. ple falls as i rises, so one pointer walks down
 * over all rows: O(m + n), written without data-dependent branches (each step either moves the
 * pointer or finishes a row). Up to two pivots are walked in one loop: their chains are
 * independent, so the second comes almost free. plt is ple less the ties with v that end the
 * prefix (rare). */
typedef struct walk {
    double v;
    size_t i, b;
    size_t *plt, *ple;
    uint64_t le, lt;
} walk_t;

static inline void walk_step(walk_t *c, const double *xs, const double *yd) {
    size_t prev = c->b - (c->b != 0);
    size_t move = (size_t)((c->b != 0) & (xs[c->i] - yd[prev] > c->v));
    c->b -= move;
    c->ple[c->i] = c->b;
    c->le += (1 - move) * (uint64_t)c->b;
    c->i += 1 - move;
}

static void walk_ties(walk_t *c, const double *xs, size_t m, const double *yd) {
    uint64_t lt = 0;
    for (size_t i = 0; i < m; i++) {
        size_t a = c->ple[i];
        while (a > 0 && xs[i] - yd[a - 1] == c->v)
            a--;
        c->plt[i] = a;
        lt += a;
    }
    c->lt = lt;
}

static void count_pivots(const double *xs, size_t m, const double *yd, size_t n, walk_t *c,
                         size_t nc) {
    for (size_t t = 0; t < nc; t++) {
        c[t].i = 0;
        c[t].b = n;
        c[t].le = 0;
    }
    if (nc == 2)
        while (c[0].i < m && c[1].i < m) {
            walk_step(&c[0], xs, yd);
            walk_step(&c[1], xs, yd);
        }
    for (size_t t = 0; t < nc; t++) {
        while (c[t].i < m)
            walk_step(&c[t], xs, yd);
        walk_ties(&c[t], xs, m, yd);
    }
}

/* With k1 == k2: the k1-th smallest difference (0-based), starting from the full matrix or, with
 * from_band, from the windows a band call left. With k1 < k2: one round that narrows the windows
 * to a band still holding every order statistic k1..k2, kept in w->BL/BR; returns NaN. The
 * Hodges-Lehmann estimate and both interval ends lie within a few percent of the middle rank, so
 * one shared band round saves each of them its first round. */
static double kth_range(const double *xs, size_t m, const double *yd, size_t n, uint64_t k1,
                        uint64_t k2, kth_work_t *w, bool from_band) {
    size_t *L = w->L, *R = w->R;
    uint64_t total = 0, left = 0;
    for (size_t i = 0; i < m; i++) {
        L[i] = from_band ? w->BL[i] : 0;
        R[i] = from_band ? w->BR[i] : n;
        total += R[i] - L[i];
        left += L[i];
    }
    uint64_t k = k1;
    bool band = k1 < k2;
    fl_stats_rng_t rng;
    /* A fixed seed: the answer does not depend on it, only the running time does, and a fixed one
     * keeps the function pure. */
    fl_stats_rng_seed(&rng, 0x5eed5e1ec7ULL ^ k);
    for (;;) {
        uint64_t kk = k - left;
        if (band && total <= w->small) {
            memcpy(w->BL, L, m * sizeof(*L));
            memcpy(w->BR, R, m * sizeof(*R));
            return NAN;
        }
        if (total <= w->small) {
            size_t c = 0;
            for (size_t i = 0; i < m; i++)
                for (size_t j = L[i]; j < R[i]; j++)
                    w->buf[c++] = xs[i] - yd[j];
            select_kth(w->buf, c, (size_t)kk);
            return w->buf[kk];
        }
        /* Sample candidates uniformly (with replacement) through the window prefix sums. */
        uint64_t *pre = w->pre;
        uint64_t acc = 0;
        for (size_t i = 0; i < m; i++) {
            pre[i] = acc;
            acc += R[i] - L[i];
        }
        pre[m] = acc;
        /* A guide table makes finding the row of a position O(1) expected. */
        size_t *guide = w->guide;
        for (size_t bk = 0, i = 0; bk < m; bk++) {
            uint64_t pos = (uint64_t)((double)bk * (double)total / (double)m);
            while (i + 1 < m && pre[i + 1] <= pos)
                i++;
            guide[bk] = i;
        }
        double *v = w->buf;
        size_t s = KTH_SAMPLE;
        for (size_t t = 0; t < s; t++) {
            double u = fl_stats_rng_uniform(&rng);
            uint64_t r = (uint64_t)(u * (double)total);
            if (r >= total)
                r = total - 1;
            size_t bk = (size_t)(u * (double)m);
            size_t i = guide[bk < m ? bk : m - 1]; /* then the row with pre[i] <= r < pre[i + 1] */
            while (i > 0 && pre[i] > r)
                i--;
            while (pre[i + 1] <= r)
                i++;
            v[t] = xs[i] - yd[L[i] + (size_t)(r - pre[i])];
        }
        double p1 = ((double)kk + 0.5) / (double)total;
        double p2 = ((double)(k2 - left) + 0.5) / (double)total;
        double flo = floor(p1 * (double)s - 3.0 * sqrt((double)s * p1 * (1.0 - p1)) - 2.0);
        double fhi = ceil(p2 * (double)s + 3.0 * sqrt((double)s * p2 * (1.0 - p2)) + 2.0);
        bool has_lo = flo >= 0.0, has_hi = fhi < (double)s;
        size_t ilo = has_lo ? (size_t)flo : 0, ihi = has_hi ? (size_t)fhi : s - 1;
        if (!has_lo && !has_hi) {
            has_lo = true;
            ilo = s / 2;
        }
        double vlo = 0.0, vhi = 0.0;
        if (has_lo) {
            select_kth(v, s, ilo);
            vlo = v[ilo];
        }
        if (has_hi) {
            /* After selecting ilo, v[ilo..] holds the order statistics ilo.. in some order. */
            size_t base = has_lo ? ilo : 0;
            select_kth(v + base, s - base, ihi - base);
            vhi = v[ihi];
        }
        /* Count, per row, the differences < and <= each pivot. */
        walk_t wk[2];
        size_t nw = 0;
        if (has_lo)
            wk[nw++] = (walk_t){.v = vlo, .plt = w->plt_lo, .ple = w->ple_lo};
        if (has_hi)
            wk[nw++] = (walk_t){.v = vhi, .plt = w->plt_hi, .ple = w->ple_hi};
        count_pivots(xs, m, yd, n, wk, nw);
        uint64_t clt_lo = has_lo ? wk[0].lt : 0, cle_lo = has_lo ? wk[0].le : 0;
        uint64_t clt_hi = has_hi ? wk[nw - 1].lt : 0, cle_hi = has_hi ? wk[nw - 1].le : 0;
        const size_t *cut_r = NULL, *cut_l = NULL;
        if (band) {
            cut_l = has_lo && k1 >= cle_lo ? w->ple_lo : NULL;
            cut_r = has_hi && k2 < clt_hi ? w->plt_hi : NULL;
        } else if (has_lo && k < clt_lo) {
            cut_r = w->plt_lo;
        } else if (has_lo && k < cle_lo) {
            return vlo;
        } else if (!has_hi || k < clt_hi) {
            cut_l = has_lo ? w->ple_lo : NULL;
            cut_r = has_hi ? w->plt_hi : NULL;
        } else if (k < cle_hi) {
            return vhi;
        } else {
            cut_l = w->ple_hi;
        }
        total = 0;
        left = 0;
        for (size_t i = 0; i < m; i++) {
            if (cut_l != NULL && cut_l[i] > L[i])
                L[i] = cut_l[i];
            if (cut_r != NULL && cut_r[i] < R[i])
                R[i] = cut_r[i];
            if (R[i] < L[i])
                R[i] = L[i];
            total += R[i] - L[i];
            left += L[i];
        }
        if (band) {
            memcpy(w->BL, L, m * sizeof(*L));
            memcpy(w->BR, R, m * sizeof(*R));
            return NAN;
        }
    }
}

static double kth_diff(const double *xs, size_t m, const double *yd, size_t n, uint64_t k,
                       kth_work_t *w, bool from_band) {
    return kth_range(xs, m, yd, n, k, k, w, from_band);
}

/* The order statistic after D_(k) (0-based), given v = D_(k): v again when it is repeated, else
 * the smallest difference above v. One monotone walk. */
static double kth_diff_next(const double *xs, size_t m, const double *yd, size_t n, uint64_t k,
                            double v) {
    uint64_t cle = 0;
    double next = INFINITY;
    size_t b = n;
    for (size_t i = 0; i < m; i++) {
        double x = xs[i];
        while (b > 0 && x - yd[b - 1] > v)
            b--;
        cle += b;
        if (b < n && x - yd[b] < next)
            next = x - yd[b];
    }
    return cle > k + 1 ? v : next;
}

/* xs ascending, yd the reverse of ys (ascending), and kth work, in one block (*block: free). */
typedef struct diff_setup {
    void *block;
    const double *xs;
    double *yd;
    kth_work_t w;
} diff_setup_t;

static void diff_setup(diff_setup_t *ds, const double *xs, size_t nx, const double *ys, size_t ny) {
    size_t bytes = kth_work_bytes(nx, ny);
    ds->block = fl_mem_alloc(bytes + ny * sizeof(double));
    kth_init(&ds->w, ds->block, nx, ny);
    ds->yd = (double *)((char *)ds->block + bytes);
    for (size_t j = 0; j < ny; j++)
        ds->yd[j] = ys[ny - 1 - j];
    ds->xs = xs;
}

int fl_stats_pairwise_diff_select(const double *x, size_t nx, const double *y, size_t ny,
                                  uint64_t k, double *out) {
    if (nx == 0 || ny == 0 || k >= (uint64_t)nx * ny || !all_finite(x, nx) || !all_finite(y, ny))
        return FL_EINVAL;
    double *block, *xs, *ys;
    sorted_copies(x, nx, y, ny, &block, &xs, &ys);
    diff_setup_t ds;
    diff_setup(&ds, xs, nx, ys, ny);
    *out = kth_diff(ds.xs, nx, ds.yd, ny, k, &ds.w, false);
    free(ds.block);
    free(block);
    return 0;
}

int fl_stats_hodges_lehmann(const double *x, size_t nx, const double *y, size_t ny,
                            double confidence, fl_stats_interval_t *out) {
    if (nx == 0 || ny == 0 || !(confidence > 0.0 && confidence < 1.0) || !all_finite(x, nx) ||
        !all_finite(y, ny))
        return FL_EINVAL;
    double *block, *xs, *ys;
    sorted_copies(x, nx, y, ny, &block, &xs, &ys);
    int rc = fl_stats_hodges_lehmann_sorted(xs, nx, ys, ny, confidence, out);
    free(block);
    return rc;
}

int fl_stats_hodges_lehmann_sorted(const double *xs, size_t nx, const double *ys, size_t ny,
                                   double confidence, fl_stats_interval_t *out) {
    if (nx == 0 || ny == 0 || !(confidence > 0.0 && confidence < 1.0) || !all_finite(xs, nx) ||
        !all_finite(ys, ny))
        return FL_EINVAL;
    diff_setup_t ds;
    diff_setup(&ds, xs, nx, ys, ny);
    uint64_t mn = (uint64_t)nx * ny;
    fl_stats_interval_t r = {.confidence = confidence};
    double half_alpha = (1.0 - confidence) / 2.0;
    double rank_sum, tie_term;
    bool ties;
    rank_sorted(xs, nx, ys, ny, &rank_sum, &tie_term, &ties);
    int64_t c;
    if (mwu_use_exact(nx, ny, ties)) {
        double *pmf = fl_mem_alloc((mn + 1) * sizeof(*pmf));
        fl_stats_mwu_exact_pmf(nx, ny, pmf);
        /* C = #{u : P(U <= u) <= alpha/2}; the tolerance keeps exact ties with alpha/2 (a
         * critical value hit exactly) from depending on rounding. */
        double cdf = 0.0;
        c = 0;
        for (uint64_t u = 0; u <= mn; u++) {
            cdf += pmf[u];
            if (cdf > half_alpha * (1.0 + 1e-9))
                break;
            c++;
        }
        free(pmf);
    } else {
        double z = fl_stats_normal_quantile(1.0 - half_alpha);
        c = (int64_t)floor((double)mn / 2.0 + 0.5 - z * mwu_sd(nx, ny, tie_term));
    }
    if ((uint64_t)c > (mn + 1) / 2)
        c = (int64_t)((mn + 1) / 2);

    /* Ranks c - 1 <= mn/2 - 1 (or (mn - 1)/2) and mn - c >= mn/2 bracket the estimate's. */
    bool band = c >= 1;
    if (band)
        kth_range(ds.xs, nx, ds.yd, ny, (uint64_t)c - 1, mn - (uint64_t)c, &ds.w, false);
    if (mn % 2 == 1) {
        r.estimate = kth_diff(ds.xs, nx, ds.yd, ny, mn / 2, &ds.w, band);
    } else {
        double a = kth_diff(ds.xs, nx, ds.yd, ny, mn / 2 - 1, &ds.w, band);
        double b = kth_diff_next(ds.xs, nx, ds.yd, ny, mn / 2 - 1, a);
        r.estimate = (a + b) / 2.0;
    }
    if (c < 1) {
        r.low = -INFINITY;
        r.high = INFINITY;
    } else {
        r.low = kth_diff(ds.xs, nx, ds.yd, ny, (uint64_t)c - 1, &ds.w, true);
        r.high = kth_diff(ds.xs, nx, ds.yd, ny, mn - (uint64_t)c, &ds.w, true);
    }
    free(ds.block);
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Bootstrap of a quantile difference */

/* Uniform order statistics U_(k) and U_(k+1) (1-based, k < n; k = n gives U_(n) twice) of n
 * uniform draws, by the cheapest exact route: walking down from the maximum (U_(n) = V^(1/n),
 * U_(i) = U_(i+1) V^(1/i)) or up from the minimum when k is near an end, which is the common case
 * (p95 of a few hundred samples: a few steps); otherwise U_(k) ~ Beta(k, n + 1 - k) from two
 * gammas and U_(k+1) as the minimum of the n - k draws above it. V is uniform in (0, 1]. */
#define OS_WALK_MAX 24

static void uniform_order_stats(size_t n, size_t k, fl_stats_rng_t *rng, double *uk, double *uk1) {
    size_t from_top = n - k + 1, from_bottom = k + 1;
    if (from_top <= OS_WALK_MAX && from_top <= from_bottom) {
        double logu = 0.0, prev = 1.0;
        for (size_t i = n; i >= k; i--) {
            logu += log(1.0 - fl_stats_rng_uniform(rng)) / (double)i;
            if (i == k)
                break;
            prev = i == k + 1 ? exp(logu) : prev;
        }
        *uk = exp(logu);
        *uk1 = k < n ? prev : *uk;
        return;
    }
    if (from_bottom <= OS_WALK_MAX) {
        /* log(1 - U_(i)), walking up: 1 - U_(i+1) = (1 - U_(i)) V^(1/(n-i)). */
        double logc = 0.0, at_k = 0.0;
        for (size_t i = 0; i <= k && i < n; i++) {
            logc += log(1.0 - fl_stats_rng_uniform(rng)) / (double)(n - i);
            if (i + 1 == k)
                at_k = logc;
        }
        *uk = 1.0 - exp(at_k);
        *uk1 = k < n ? 1.0 - exp(logc) : *uk;
        return;
    }
    double ga = fl_stats_rng_gamma(rng, (double)k);
    double gb = fl_stats_rng_gamma(rng, (double)(n + 1 - k));
    *uk = ga / (ga + gb);
    double v = 1.0 - fl_stats_rng_uniform(rng);
    *uk1 = k < n ? 1.0 - (1.0 - *uk) * pow(v, 1.0 / (double)(n - k)) : *uk;
}

/* The type-7 q-quantile of a resample (n draws with replacement) of the sorted sample s: the
 * k-th smallest draw is s[floor(n U_(k))], so only two uniform order statistics are needed. */
double fl_stats_resample_quantile(const double *s, size_t n, double q, fl_stats_rng_t *rng) {
    if (n == 0 || !(q >= 0.0 && q <= 1.0))
        return NAN;
    if (n == 1)
        return s[0];
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo > n - 1)
        lo = n - 1;
    double frac = lo == n - 1 ? 0.0 : h - (double)lo;
    double uk, uk1;
    uniform_order_stats(n, lo + 1, rng, &uk, &uk1);
    size_t ik = (size_t)floor((double)n * uk);
    size_t ik1 = (size_t)floor((double)n * uk1);
    if (ik > n - 1)
        ik = n - 1;
    if (ik1 > n - 1)
        ik1 = n - 1;
    if (ik1 < ik)
        ik1 = ik;
    return lerp7(s[ik], s[ik1], frac);
}

/* The type-7 quantiles at plo <= phi of x (reordered): the second selection only searches above
 * the first. Same values as two fl_stats_quantile_inplace calls. */
static void quantile_pair_inplace(double *x, size_t n, double plo, double phi, double *qlo,
                                  double *qhi) {
    size_t from = 0;
    double ps[2] = {plo, phi}, *outs[2] = {qlo, qhi};
    for (int t = 0; t < 2; t++) {
        double h = (double)(n - 1) * ps[t];
        size_t lo = (size_t)floor(h);
        if (lo >= n - 1)
            lo = n - 1;
        if (lo < from)
            from = 0; /* not expected (plo <= phi), but stay correct */
        select_kth(x + from, n - from, lo - from);
        from = lo;
        double frac = h - (double)lo;
        if (frac == 0.0 || lo == n - 1) {
            *outs[t] = x[lo];
            continue;
        }
        double next = x[lo + 1];
        for (size_t i = lo + 2; i < n; i++)
            if (x[i] < next)
                next = x[i];
        *outs[t] = lerp7(x[lo], next, frac);
    }
}

int fl_stats_bootstrap_quantile_diff(const double *x, size_t nx, const double *y, size_t ny,
                                     double q, double confidence, unsigned resamples, uint64_t seed,
                                     fl_stats_interval_t *diff, fl_stats_interval_t *ratio) {
    if (nx == 0 || ny == 0 || !(q >= 0.0 && q <= 1.0) || !(confidence > 0.0 && confidence < 1.0) ||
        resamples < 10 || !all_finite(x, nx) || !all_finite(y, ny))
        return FL_EINVAL;
    double *block, *xs, *ys;
    sorted_copies(x, nx, y, ny, &block, &xs, &ys);
    int rc = fl_stats_bootstrap_quantile_diff_sorted(xs, nx, ys, ny, q, confidence, resamples, seed,
                                                     diff, ratio);
    free(block);
    return rc;
}

int fl_stats_bootstrap_quantile_diff_sorted(const double *xs, size_t nx, const double *ys,
                                            size_t ny, double q, double confidence,
                                            unsigned resamples, uint64_t seed,
                                            fl_stats_interval_t *diff, fl_stats_interval_t *ratio) {
    if (nx == 0 || ny == 0 || !(q >= 0.0 && q <= 1.0) || !(confidence > 0.0 && confidence < 1.0) ||
        resamples < 10 || !all_finite(xs, nx) || !all_finite(ys, ny))
        return FL_EINVAL;
    double *d = fl_mem_alloc(2 * (size_t)resamples * sizeof(*d));
    double *rt = d + resamples;
    bool positive = xs[0] > 0.0;
    double qx, qy;
    fl_stats_quantile_sorted(xs, nx, q, &qx);
    fl_stats_quantile_sorted(ys, ny, q, &qy);

    fl_stats_rng_t rng;
    fl_stats_rng_seed(&rng, seed);
    for (unsigned b = 0; b < resamples; b++) {
        double bx = fl_stats_resample_quantile(xs, nx, q, &rng);
        double by = fl_stats_resample_quantile(ys, ny, q, &rng);
        d[b] = by - bx;
        rt[b] = positive ? by / bx : 0.0;
    }
    /* Selection, not a sort: two quantiles of the rounds are all that is needed. */
    double lo_p = (1.0 - confidence) / 2.0, hi_p = (1.0 + confidence) / 2.0;
    fl_stats_interval_t dr = {.estimate = qy - qx, .confidence = confidence};
    /* A non-finite round (overflow) leaves the bounds at 0, as fl_stats_quantile_inplace would. */
    if (all_finite(d, resamples))
        quantile_pair_inplace(d, resamples, lo_p, hi_p, &dr.low, &dr.high);
    *diff = dr;
    if (ratio != NULL) {
        fl_stats_interval_t rr = {
            .estimate = NAN, .low = NAN, .high = NAN, .confidence = confidence};
        if (positive) {
            rr.estimate = qy / qx;
            if (all_finite(rt, resamples))
                quantile_pair_inplace(rt, resamples, lo_p, hi_p, &rr.low, &rr.high);
        }
        *ratio = rr;
    }
    free(d);
    return 0;
}
