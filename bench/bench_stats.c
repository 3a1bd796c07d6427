/* fl-bench-stats: cost of judging one benchmark metric (benchmarker_metric_judge), measured
 * against a baseline timed in the same run so that the number is a ratio, not a machine-specific
 * time.
 *
 *   fl-bench-stats [samples] [seconds]   default 1000 samples a side, 1 second per measurement
 *
 * The metric is fl-bench fill-bench's: samples ~ 200 ms x U(0.97, 1.03), candidate 0.5 % slower,
 * fixed seed. Three shapes are timed: that one (continuous, SCALE model), the same rounded to
 * 0.1 ms (ties: normal approximation with tie correction) and a LOCATION-model one (a zero
 * sample). The baseline is copying and qsort()ing the 2 x samples values with a comparator
 * callback. Printed: per-call microseconds, calls/s, and judge/baseline; then the judged numbers
 * (%.17g) so that runs of different builds can be diffed for identical results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchmarker.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double noise(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static volatile double sink;

/* Seconds per call of fn(arg), run for about `seconds`. */
static double time_per_call(void (*fn)(void *), void *arg, double seconds) {
    for (int i = 0; i < 3; i++)
        fn(arg); /* warm up */
    long calls = 0, batch = 1;
    double t0 = now_s(), t;
    for (;;) {
        for (long i = 0; i < batch; i++)
            fn(arg);
        calls += batch;
        t = now_s() - t0;
        if (t >= seconds)
            break;
        if (batch < 1 << 20)
            batch *= 2;
    }
    return t / (double)calls;
}

typedef struct judge_arg {
    benchmarker_config_t cfg;
    benchmarker_metric_t metric;
    benchmarker_metric_result_t res;
    benchmarker_reason_t reason;
} judge_arg_t;

static void run_judge(void *p) {
    judge_arg_t *a = p;
    bool has_reason;
    if (benchmarker_metric_judge(&a->cfg, &a->metric, NULL, 12345, &a->res, &a->reason,
                                 &has_reason) != 0)
        abort();
    sink = a->res.shift_worsening;
}

typedef struct sort_arg {
    const double *src;
    double *dst;
    size_t n;
} sort_arg_t;

static void run_sort(void *p) {
    sort_arg_t *a = p;
    memcpy(a->dst, a->src, a->n * sizeof(double));
    qsort(a->dst, a->n, sizeof(double), cmp_double);
    sink = a->dst[a->n / 2];
}

static void print_result(const char *shape, const benchmarker_metric_result_t *r) {
    printf("result %s verdict=%s reason=%s model=%d\n", shape,
           benchmarker_metric_verdict_name(r->verdict), r->reason_code, (int)r->shift_model);
    printf("  p95 %.17g %.17g diff [%.17g, %.17g] worsening [%.17g, %.17g]\n", r->baseline_p95,
           r->candidate_p95, r->p95_diff_low, r->p95_diff_high, r->p95_worsening_low,
           r->p95_worsening_high);
    printf("  shift %.17g [%.17g, %.17g] U=%.17g z=%.17g p=%.17g p2=%.17g exact=%d\n",
           r->shift_worsening, r->shift_low, r->shift_high, r->u_statistic, r->z_score, r->p_value,
           r->p_value_two_sided, (int)r->exact_test);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000;
    double seconds = argc > 2 ? atof(argv[2]) : 1.0;
    if (n < 2 || !(seconds > 0.0)) {
        fprintf(stderr, "usage: fl-bench-stats [samples >= 2] [seconds > 0]\n");
        return 2;
    }
    double *base = malloc(n * sizeof(double)), *cand = malloc(n * sizeof(double));
    double *all = malloc(2 * n * sizeof(double)), *tmp = malloc(2 * n * sizeof(double));
    double *rb = malloc(n * sizeof(double)), *rc = malloc(n * sizeof(double));
    double *zb = malloc(n * sizeof(double));
    if (!base || !cand || !all || !tmp || !rb || !rc || !zb)
        return 1;
    uint64_t st = 42;
    for (size_t i = 0; i < n; i++) {
        base[i] = 200.0 * (0.97 + 0.06 * noise(&st));
        cand[i] = 201.0 * (0.97 + 0.06 * noise(&st));
        rb[i] = (double)(long)(base[i] * 10.0) / 10.0;
        rc[i] = (double)(long)(cand[i] * 10.0) / 10.0;
        zb[i] = base[i];
    }
    zb[0] = 0.0; /* LOCATION model */
    memcpy(all, base, n * sizeof(double));
    memcpy(all + n, cand, n * sizeof(double));

    sort_arg_t sa = {all, tmp, 2 * n};
    double t_base = time_per_call(run_sort, &sa, seconds);
    printf("baseline  copy+qsort of %zu doubles: %9.2f us/call\n", 2 * n, t_base * 1e6);

    struct {
        const char *name;
        const double *b, *c;
    } shapes[] = {{"continuous", base, cand}, {"ties", rb, rc}, {"location", zb, cand}};
    judge_arg_t ja;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        memset(&ja, 0, sizeof(ja));
        benchmarker_config_default(&ja.cfg);
        ja.metric = (benchmarker_metric_t){.name = "api.checkout.latency_p95",
                                           .unit = "ms",
                                           .direction = FL_STATS_LOWER_IS_BETTER,
                                           .baseline = shapes[s].b,
                                           .n_baseline = n,
                                           .candidate = shapes[s].c,
                                           .n_candidate = n};
        double t = time_per_call(run_judge, &ja, seconds);
        printf("judge %-10s %zu+%zu samples: %9.2f us/call %9.0f calls/s  judge/baseline %.2f\n",
               shapes[s].name, n, n, t * 1e6, 1.0 / t, t / t_base);
        print_result(shapes[s].name, &ja.res);
    }
    free(base);
    free(cand);
    free(all);
    free(tmp);
    free(rb);
    free(rc);
    free(zb);
    return 0;
}
