#include "benchmarker.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory aborts (STYLE.md). */
static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xcalloc(n, 1);
    memcpy(p, s, n);
    return p;
}

/* Copy src into a fixed buffer; false when it does not fit (the caller decides what that means). */
static bool copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) {
        memcpy(dst, src, cap - 1);
        dst[cap - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

static bool empty(const char *s) {
    return s == NULL || s[0] == '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* Config */

void benchmarker_config_default(benchmarker_config_t *cfg) {
    *cfg = (benchmarker_config_t){
        .threshold_percent = 5.0,
        .confidence = 0.95,
        .min_samples = 10,
        .inconclusive_fails = true,
        .quantile = 0.95,
        .noise_factor = 2.0,
        .bootstrap_resamples = 2000,
        .tail_min_samples = 100,
        .max_samples = 100000,
        .history_max_samples = 300,
        .seed = 0,
    };
}

int benchmarker_config_check(const benchmarker_config_t *cfg, fl_error_t *err) {
    if (!(isfinite(cfg->threshold_percent) && cfg->threshold_percent >= 0.0))
        return fl_error_set(err, FL_ECONFIG, false, "threshold_percent must be finite and >= 0");
    if (!(cfg->confidence > 0.5 && cfg->confidence < 1.0))
        return fl_error_set(err, FL_ECONFIG, false, "confidence must be in (0.5, 1)");
    if (cfg->min_samples < 2)
        return fl_error_set(err, FL_ECONFIG, false, "min_samples must be >= 2");
    if (!(cfg->quantile > 0.0 && cfg->quantile < 1.0))
        return fl_error_set(err, FL_ECONFIG, false, "quantile must be in (0, 1)");
    if (!(isfinite(cfg->noise_factor) && cfg->noise_factor >= 1.0))
        return fl_error_set(err, FL_ECONFIG, false, "noise_factor must be >= 1");
    if (cfg->bootstrap_resamples < 100 || cfg->bootstrap_resamples > 1000000)
        return fl_error_set(err, FL_ECONFIG, false, "bootstrap_resamples must be in 100..1000000");
    if (cfg->tail_min_samples < cfg->min_samples)
        return fl_error_set(err, FL_ECONFIG, false, "tail_min_samples must be >= min_samples");
    if (cfg->max_samples < cfg->tail_min_samples)
        return fl_error_set(err, FL_ECONFIG, false, "max_samples must be >= tail_min_samples");
    if (cfg->history_max_samples < 1)
        return fl_error_set(err, FL_ECONFIG, false, "history_max_samples must be >= 1");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Validity */

static int check_samples(const char *name, const char *side, const double *x, size_t n,
                         fl_error_t *err) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return fl_error_set(err, FL_ESEMANTIC, false, "NON_FINITE_SAMPLE %s %s[%zu]=%g", name,
                                side, i, x[i]);
        if (x[i] < 0.0)
            return fl_error_set(err, FL_ESEMANTIC, false, "NEGATIVE_SAMPLE %s %s[%zu]=%g", name,
                                side, i, x[i]);
    }
    return 0;
}

static int check_metric(const benchmarker_config_t *cfg, const benchmarker_metric_t *m, size_t i,
                        fl_error_t *err) {
    if (empty(m->name))
        return fl_error_set(err, FL_ESEMANTIC, false, "BAD_METRIC metrics[%zu].name empty", i);
    if (strlen(m->name) >= BENCHMARKER_NAME_MAX)
        return fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG metrics[%zu].name", i);
    if (empty(m->unit))
        return fl_error_set(err, FL_ESEMANTIC, false, "BAD_METRIC %s unit empty", m->name);
    if (strlen(m->unit) >= BENCHMARKER_UNIT_MAX)
        return fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG %s unit", m->name);
    if (fl_stats_direction_name((fl_stats_direction_t)m->direction) == NULL)
        return fl_error_set(err, FL_ESEMANTIC, false, "UNKNOWN_DIRECTION %s %d", m->name,
                            m->direction);
    if (m->has_threshold && !(isfinite(m->threshold_percent) && m->threshold_percent >= 0.0))
        return fl_error_set(err, FL_ESEMANTIC, false, "BAD_THRESHOLD %s %g", m->name,
                            m->threshold_percent);
    if (m->n_baseline > cfg->max_samples || m->n_candidate > cfg->max_samples)
        return fl_error_set(err, FL_ESEMANTIC, false, "TOO_MANY_SAMPLES %s %zu>%zu", m->name,
                            m->n_baseline > m->n_candidate ? m->n_baseline : m->n_candidate,
                            cfg->max_samples);
    if ((m->n_baseline > 0 && m->baseline == NULL) || (m->n_candidate > 0 && m->candidate == NULL))
        return fl_error_set(err, FL_ESEMANTIC, false, "BAD_METRIC %s samples missing", m->name);
    int rc = check_samples(m->name, "baseline", m->baseline, m->n_baseline, err);
    if (rc == 0)
        rc = check_samples(m->name, "candidate", m->candidate, m->n_candidate, err);
    return rc;
}

int benchmarker_report_check(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                             fl_error_t *err) {
    const struct {
        const char *name;
        const char *value;
    } ids[] = {{"change_id", report->change_id},
               {"repo", report->repo},
               {"branch", report->branch},
               {"base_branch", report->base_branch},
               {"commit", report->commit}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (empty(ids[i].value))
            return fl_error_set(err, FL_ESEMANTIC, false, "MISSING_ID %s", ids[i].name);
        if (strlen(ids[i].value) >= BENCHMARKER_ID_MAX)
            return fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG %s", ids[i].name);
    }
    if (report->agent_session_id != NULL && strlen(report->agent_session_id) >= BENCHMARKER_ID_MAX)
        return fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG agent_session_id");
    if (report->service != NULL && strlen(report->service) >= BENCHMARKER_ID_MAX)
        return fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG service");
    if (report->n_metrics > BENCHMARKER_MAX_METRICS)
        return fl_error_set(err, FL_ESEMANTIC, false, "TOO_MANY_METRICS %zu>%d", report->n_metrics,
                            BENCHMARKER_MAX_METRICS);
    if (report->n_metrics > 0 && report->metrics == NULL)
        return fl_error_set(err, FL_ESEMANTIC, false, "BAD_METRIC metrics missing");
    for (size_t i = 0; i < report->n_metrics; i++) {
        int rc = check_metric(cfg, &report->metrics[i], i, err);
        if (rc != 0)
            return rc;
        /* Quadratic, but bounded by BENCHMARKER_MAX_METRICS. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(report->metrics[j].name, report->metrics[i].name) == 0)
                return fl_error_set(err, FL_ESEMANTIC, false, "DUPLICATE_METRIC %s",
                                    report->metrics[i].name);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* One metric */

const char *benchmarker_verdict_name(benchmarker_verdict_t v) {
    switch (v) {
    case BENCHMARKER_PASSED:
        return "PASSED";
    case BENCHMARKER_FAILED:
        return "FAILED";
    case BENCHMARKER_VERDICT_INCONCLUSIVE:
        return "INCONCLUSIVE";
    }
    return "UNKNOWN";
}

const char *benchmarker_metric_verdict_name(benchmarker_metric_verdict_t v) {
    switch (v) {
    case BENCHMARKER_PASS:
        return "PASS";
    case BENCHMARKER_REGRESSION:
        return "REGRESSION";
    case BENCHMARKER_IMPROVEMENT:
        return "IMPROVEMENT";
    case BENCHMARKER_INCONCLUSIVE:
        return "INCONCLUSIVE";
    }
    return "UNKNOWN";
}

static const char *baseline_source_name(benchmarker_baseline_source_t s) {
    switch (s) {
    case BENCHMARKER_BASELINE_REPORT:
        return "REPORT";
    case BENCHMARKER_BASELINE_HISTORY:
        return "HISTORY";
    case BENCHMARKER_BASELINE_NONE:
        return "NONE";
    }
    return "NONE";
}

static const char *shift_model_name(benchmarker_shift_model_t m) {
    switch (m) {
    case BENCHMARKER_SHIFT_SCALE:
        return "SCALE";
    case BENCHMARKER_SHIFT_LOCATION:
        return "LOCATION";
    case BENCHMARKER_SHIFT_NONE:
        return "NONE";
    }
    return "NONE";
}

static void set_reason(benchmarker_metric_result_t *out, benchmarker_reason_t *reason,
                       benchmarker_metric_verdict_t verdict, const char *code, const char *detail,
                       const char *msgfmt, ...) __attribute__((format(printf, 6, 7)));

static void set_reason(benchmarker_metric_result_t *out, benchmarker_reason_t *reason,
                       benchmarker_metric_verdict_t verdict, const char *code, const char *detail,
                       const char *msgfmt, ...) {
    out->verdict = verdict;
    copy_str(out->reason_code, sizeof(out->reason_code), code);
    copy_str(reason->code, sizeof(reason->code), code);
    copy_str(reason->detail, sizeof(reason->detail), detail);
    va_list ap;
    va_start(ap, msgfmt);
    vsnprintf(reason->message, sizeof(reason->message), msgfmt, ap);
    va_end(ap);
}

/* Worsening percent of a shift estimate d: a log ratio (SCALE) or an additive shift relative to
 * the baseline quantile b (LOCATION). */
static double shift_to_worsening(benchmarker_shift_model_t model, double d, double b,
                                 fl_stats_direction_t dir) {
    double w = NAN;
    if (isinf(d))
        return d > 0 ? (dir == FL_STATS_LOWER_IS_BETTER ? INFINITY : -100.0)
                     : (dir == FL_STATS_LOWER_IS_BETTER ? -100.0 : INFINITY);
    if (model == BENCHMARKER_SHIFT_SCALE)
        fl_stats_worsening_percent(1.0, exp(d), dir, &w);
    else
        fl_stats_worsening_percent(b, b + d, dir, &w);
    return w;
}

/* log of every value; log is monotone, so an ascending x gives an ascending l. */
static void log_into(const double *x, size_t n, double *l) {
    for (size_t i = 0; i < n; i++)
        l[i] = log(x[i]);
}

int benchmarker_metric_judge(const benchmarker_config_t *cfg, const benchmarker_metric_t *metric,
                             const benchmarker_history_t *history, uint64_t seed,
                             benchmarker_metric_result_t *out, benchmarker_reason_t *reason,
                             bool *has_reason) {
    fl_error_t err;
    if (check_metric(cfg, metric, 0, &err) != 0)
        return FL_EINVAL;
    benchmarker_metric_result_t r;
    memset(&r, 0, sizeof(r));
    memset(reason, 0, sizeof(*reason));
    copy_str(r.name, sizeof(r.name), metric->name);
    copy_str(r.unit, sizeof(r.unit), metric->unit);
    fl_stats_direction_t dir = (fl_stats_direction_t)metric->direction;
    r.direction = dir;
    r.verdict = BENCHMARKER_PASS;
    r.shift_model = BENCHMARKER_SHIFT_NONE;
    r.baseline_p95 = r.candidate_p95 = r.p95_change_percent = r.p95_worsening_percent = NAN;
    r.p95_diff = r.p95_diff_low = r.p95_diff_high = NAN;
    r.p95_worsening_low = r.p95_worsening_high = NAN;
    r.shift_worsening = r.shift_low = r.shift_high = NAN;
    r.u_statistic = r.z_score = r.p_value = r.p_value_two_sided = NAN;
    double T = metric->has_threshold ? metric->threshold_percent : cfg->threshold_percent;
    r.threshold_percent = T;
    r.n_candidate = metric->n_candidate;
    const char *name = metric->name, *unit = metric->unit;
    double conf_pct = cfg->confidence * 100.0;
    char detail[sizeof(reason->detail)];
    /* One block: ascending copies of both sides (sorted once, shared by the quantiles, the test,
     * the shift and the bootstrap), then their logs (first the sorting scratch). */
    double *work = NULL, *sb = NULL, *sc = NULL, *lb = NULL, *lc = NULL;

    const double *base = metric->baseline;
    size_t nb = metric->n_baseline;
    const double *cand = metric->candidate;
    size_t nc = metric->n_candidate;
    r.baseline_source = BENCHMARKER_BASELINE_REPORT;
    if (nb == 0) {
        if (history == NULL || history->n_samples == 0 || history->samples == NULL) {
            r.baseline_source = BENCHMARKER_BASELINE_NONE;
            snprintf(detail, sizeof(detail), "%s", name);
            set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "NO_BASELINE", detail,
                       "%s cannot be judged: the report has no baseline samples and there is no "
                       "base-branch history for it yet.",
                       name);
            goto out;
        }
        if (empty(history->unit) || strcmp(history->unit, unit) != 0) {
            r.baseline_source = BENCHMARKER_BASELINE_NONE;
            snprintf(detail, sizeof(detail), "%s %s!=%s", name, unit,
                     history->unit ? history->unit : "");
            set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "UNIT_MISMATCH", detail,
                       "%s cannot be judged: it is reported in %s but the base-branch history is "
                       "in %s; the next base report restarts the history in the new unit.",
                       name, unit, history->unit ? history->unit : "(none)");
            goto out;
        }
        if (history->direction != metric->direction) {
            r.baseline_source = BENCHMARKER_BASELINE_NONE;
            const char *hd = fl_stats_direction_name((fl_stats_direction_t)history->direction);
            snprintf(detail, sizeof(detail), "%s %s!=%s", name, fl_stats_direction_name(dir),
                     hd ? hd : "?");
            set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "DIRECTION_MISMATCH", detail,
                       "%s cannot be judged: it is reported as %s but the base-branch history "
                       "as %s.",
                       name, fl_stats_direction_name(dir), hd ? hd : "?");
            goto out;
        }
        /* History is our own state, not the report: a corrupt entry must not dead-letter a
         * good report, so it only makes this metric unjudgeable. */
        for (size_t i = 0; i < history->n_samples; i++) {
            if (!isfinite(history->samples[i]) || history->samples[i] < 0.0) {
                r.baseline_source = BENCHMARKER_BASELINE_NONE;
                snprintf(detail, sizeof(detail), "%s history[%zu]=%g", name, i,
                         history->samples[i]);
                set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "BAD_HISTORY", detail,
                           "%s cannot be judged: its base-branch history holds an invalid sample "
                           "(%g); the next base report replaces it.",
                           name, history->samples[i]);
                goto out;
            }
        }
        base = history->samples;
        nb = history->n_samples;
        r.baseline_source = BENCHMARKER_BASELINE_HISTORY;
    }
    r.n_baseline = nb;

    if (nb > 0 && nc > 0) {
        work = xcalloc(2 * (nb + nc), sizeof(*work));
        sb = work;
        sc = work + nb;
        lb = work + nb + nc;
        lc = lb + nb;
        memcpy(sb, base, nb * sizeof(*sb));
        memcpy(sc, cand, nc * sizeof(*sc));
        fl_stats_sort_with(sb, nb, lb);
        fl_stats_sort_with(sc, nc, lb);
        fl_stats_quantile_sorted(sb, nb, cfg->quantile, &r.baseline_p95);
        fl_stats_quantile_sorted(sc, nc, cfg->quantile, &r.candidate_p95);
        r.p95_diff = r.candidate_p95 - r.baseline_p95;
        if (fl_stats_worsening_percent(r.baseline_p95, r.candidate_p95, FL_STATS_LOWER_IS_BETTER,
                                       &r.p95_change_percent) == 0)
            fl_stats_worsening_percent(r.baseline_p95, r.candidate_p95, dir,
                                       &r.p95_worsening_percent);
        else
            r.p95_change_percent = NAN;
    }
    if (nb < cfg->min_samples || nc < cfg->min_samples) {
        snprintf(detail, sizeof(detail), "%s baseline=%zu candidate=%zu<%zu", name, nb, nc,
                 cfg->min_samples);
        set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "TOO_FEW_SAMPLES", detail,
                   "%s cannot be judged: %zu baseline and %zu candidate samples, at least %zu a "
                   "side are needed.",
                   name, nb, nc, cfg->min_samples);
        goto out;
    }

    /* The test: Mann-Whitney is rank-based, so raw samples serve both models. */
    fl_stats_mwu_t mwu;
    if (fl_stats_mann_whitney_sorted(sc, nc, sb, nb, &mwu) != 0) {
        free(work);
        return FL_EINVAL;
    }
    r.u_statistic = mwu.u;
    r.z_score = mwu.z;
    r.p_value_two_sided = mwu.p_two_sided;
    r.p_value = dir == FL_STATS_LOWER_IS_BETTER ? mwu.p_greater : mwu.p_less;
    r.exact_test = mwu.exact;

    /* The shift and its interval. */
    fl_stats_interval_t hl;
    if (sb[0] > 0.0 && sc[0] > 0.0) { /* every sample > 0: the minima are */
        r.shift_model = BENCHMARKER_SHIFT_SCALE;
        log_into(sb, nb, lb);
        log_into(sc, nc, lc);
        fl_stats_hodges_lehmann_sorted(lc, nc, lb, nb, cfg->confidence, &hl);
    } else {
        r.shift_model = BENCHMARKER_SHIFT_LOCATION;
        if (r.baseline_p95 == 0.0) {
            snprintf(detail, sizeof(detail), "%s p95=0", name);
            set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "ZERO_BASELINE", detail,
                       "%s cannot be judged in percent: its baseline p95 is 0 %s.", name, unit);
            goto out;
        }
        fl_stats_hodges_lehmann_sorted(sc, nc, sb, nb, cfg->confidence, &hl);
    }
    double wl = shift_to_worsening(r.shift_model, hl.low, r.baseline_p95, dir);
    double wh = shift_to_worsening(r.shift_model, hl.high, r.baseline_p95, dir);
    r.shift_worsening = shift_to_worsening(r.shift_model, hl.estimate, r.baseline_p95, dir);
    r.shift_low = wl < wh ? wl : wh;
    r.shift_high = wl < wh ? wh : wl;

    /* The p95's own interval. */
    fl_stats_interval_t bd, br;
    fl_stats_bootstrap_quantile_diff_sorted(sb, nb, sc, nc, cfg->quantile, cfg->confidence,
                                            cfg->bootstrap_resamples, seed, &bd, &br);
    r.p95_diff_low = bd.low;
    r.p95_diff_high = bd.high;
    if (isfinite(br.low) && isfinite(br.high)) {
        double a = 100.0 * (br.low - 1.0), b = 100.0 * (br.high - 1.0);
        r.p95_worsening_low = dir == FL_STATS_LOWER_IS_BETTER ? a : -b;
        r.p95_worsening_high = dir == FL_STATS_LOWER_IS_BETTER ? b : -a;
    } else if (r.baseline_p95 != 0.0) {
        double a = 100.0 * bd.low / fabs(r.baseline_p95),
               b = 100.0 * bd.high / fabs(r.baseline_p95);
        r.p95_worsening_low = dir == FL_STATS_LOWER_IS_BETTER ? a : -b;
        r.p95_worsening_high = dir == FL_STATS_LOWER_IS_BETTER ? b : -a;
    }

    double alpha = 1.0 - cfg->confidence;
    double e = r.shift_worsening, L = r.shift_low, U = r.shift_high;
    const char *src = baseline_source_name(r.baseline_source);
    bool tail =
        nb >= cfg->tail_min_samples && nc >= cfg->tail_min_samples && isfinite(r.p95_worsening_low);
    if (L > T && r.p_value_two_sided < alpha) {
        snprintf(detail, sizeof(detail), "%s %+.1f%%>%.1f%% p=%.2g", name, e, T,
                 r.p_value_two_sided);
        set_reason(&r, reason, BENCHMARKER_REGRESSION, "P95_REGRESSION", detail,
                   "%s regressed: the distribution shifted %+.1f%% (%.0f%% CI %+.1f%% to "
                   "%+.1f%%), entirely beyond the %.1f%% threshold; p95 %.6g -> %.6g %s "
                   "(%+.1f%%); Mann-Whitney U=%.1f p=%.2g (two-sided); %zu baseline (%s) and %zu "
                   "candidate samples.",
                   name, e, conf_pct, L, U, T, r.baseline_p95, r.candidate_p95, unit,
                   r.p95_worsening_percent, r.u_statistic, r.p_value_two_sided, nb, src, nc);
    } else if (tail && r.p95_worsening_low > T) {
        snprintf(detail, sizeof(detail), "%s p95 %+.1f%%>%.1f%% [%+.1f%%,%+.1f%%]", name,
                 r.p95_worsening_percent, T, r.p95_worsening_low, r.p95_worsening_high);
        set_reason(&r, reason, BENCHMARKER_REGRESSION, "P95_TAIL_REGRESSION", detail,
                   "%s regressed in its tail: p95 %.6g -> %.6g %s (%+.1f%%, %.0f%% bootstrap CI "
                   "%+.1f%% to %+.1f%%) is entirely beyond the %.1f%% threshold while the bulk "
                   "of the distribution shifted %+.1f%%; %zu baseline (%s) and %zu candidate "
                   "samples.",
                   name, r.baseline_p95, r.candidate_p95, unit, r.p95_worsening_percent, conf_pct,
                   r.p95_worsening_low, r.p95_worsening_high, T, e, nb, src, nc);
    } else if (U < -T && r.p_value_two_sided < alpha) {
        snprintf(detail, sizeof(detail), "%s %+.1f%%<-%.1f%% p=%.2g", name, e, T,
                 r.p_value_two_sided);
        set_reason(&r, reason, BENCHMARKER_IMPROVEMENT, "P95_IMPROVEMENT", detail,
                   "%s improved: the distribution shifted %+.1f%% (%.0f%% CI %+.1f%% to %+.1f%%), "
                   "entirely better than the %.1f%% threshold; p95 %.6g -> %.6g %s (%+.1f%%); "
                   "Mann-Whitney p=%.2g (two-sided).",
                   name, e, conf_pct, L, U, T, r.baseline_p95, r.candidate_p95, unit,
                   r.p95_worsening_percent, r.p_value_two_sided);
    } else if (e > T) {
        snprintf(detail, sizeof(detail), "%s %+.1f%%>%.1f%% [%+.1f%%,%+.1f%%]", name, e, T, L, U);
        set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "POSSIBLE_REGRESSION", detail,
                   "%s may have regressed: the estimated shift %+.1f%% is beyond the %.1f%% "
                   "threshold but its %.0f%% CI (%+.1f%% to %+.1f%%) reaches below it "
                   "(Mann-Whitney p=%.2g); more samples would tell.",
                   name, e, T, conf_pct, L, U, r.p_value_two_sided);
    } else if (U > cfg->noise_factor * T) {
        double limit = cfg->noise_factor * T;
        /* The interval narrows like 1/sqrt(n): the samples per side that would bring its upper
         * end under the limit if the estimate stayed where it is. A hint, not a promise. */
        double room = limit - (e > 0 ? e : 0.0), half = (U - L) / 2.0;
        size_t n_now = nb > nc ? nb : nc;
        char hint[96] = "";
        if (room > 0 && half > 0) {
            double need = ceil((double)n_now * (half / room) * (half / room));
            if (need < 1e9)
                snprintf(hint, sizeof(hint), " About %.0f samples per side would.", need);
        }
        snprintf(detail, sizeof(detail), "%s upper %+.1f%%>%.1f%%", name, U, limit);
        set_reason(&r, reason, BENCHMARKER_INCONCLUSIVE, "NOISY", detail,
                   "%s is too noisy to judge: the %.0f%% CI of its shift (%+.1f%% to %+.1f%%, "
                   "estimate %+.1f%%) cannot rule out a worsening of %.1f%% (%.3g x the %.1f%% "
                   "threshold) with %zu baseline and %zu candidate samples.%s",
                   name, conf_pct, L, U, e, limit, cfg->noise_factor, T, nb, nc, hint);
    }
out:
    free(work);
    *has_reason = r.verdict != BENCHMARKER_PASS;
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* A report */

static uint64_t fnv1a(const char *s, uint64_t h) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* One stream per (seed, change, metric): a redelivered report gets the same intervals. */
static uint64_t metric_seed(uint64_t seed, const char *change_id, const char *metric) {
    uint64_t h = fnv1a(change_id, 0xcbf29ce484222325ULL);
    h = fnv1a("\x1f", h);
    h = fnv1a(metric, h);
    return h ^ (seed * 0x9e3779b97f4a7c15ULL);
}

static const benchmarker_history_t *find_history(const benchmarker_history_t *history,
                                                 size_t n_history, const char *metric) {
    for (size_t i = 0; i < n_history; i++)
        if (history[i].metric != NULL && strcmp(history[i].metric, metric) == 0)
            return &history[i];
    return NULL;
}

void benchmarker_result_destroy(benchmarker_result_t *res) {
    if (res == NULL)
        return;
    free(res->metrics);
    free(res->reasons);
    free(res);
}

static void overall(const benchmarker_config_t *cfg, benchmarker_result_t *res) {
    bool regression = false, inconclusive = res->n_metrics == 0;
    for (size_t i = 0; i < res->n_metrics; i++) {
        if (res->metrics[i].verdict == BENCHMARKER_REGRESSION)
            regression = true;
        else if (res->metrics[i].verdict == BENCHMARKER_INCONCLUSIVE)
            inconclusive = true;
    }
    res->verdict = regression     ? BENCHMARKER_FAILED
                   : inconclusive ? BENCHMARKER_VERDICT_INCONCLUSIVE
                                  : BENCHMARKER_PASSED;
    res->passed = res->verdict == BENCHMARKER_PASSED ||
                  (res->verdict == BENCHMARKER_VERDICT_INCONCLUSIVE && !cfg->inconclusive_fails);
}

int benchmarker_judge(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                      const benchmarker_history_t *history, size_t n_history,
                      const char *source_event_id, int64_t now_ms, benchmarker_result_t **out,
                      fl_error_t *err) {
    int rc = benchmarker_config_check(cfg, err);
    if (rc != 0)
        return rc;
    rc = benchmarker_report_check(cfg, report, err);
    if (rc != 0)
        return rc;
    if (report->is_base_report)
        return fl_error_set(err, FL_EINVAL, false, "a base report is recorded, not judged");
    if (source_event_id == NULL || strlen(source_event_id) >= BENCHMARKER_ID_MAX)
        return fl_error_set(err, FL_EINVAL, false, "source_event_id missing or too long");

    benchmarker_result_t *res = xcalloc(1, sizeof(*res));
    copy_str(res->change_id, sizeof(res->change_id), report->change_id);
    copy_str(res->repo, sizeof(res->repo), report->repo);
    copy_str(res->branch, sizeof(res->branch), report->branch);
    copy_str(res->base_branch, sizeof(res->base_branch), report->base_branch);
    copy_str(res->commit, sizeof(res->commit), report->commit);
    res->has_agent_session = report->agent_session_id != NULL;
    if (res->has_agent_session)
        copy_str(res->agent_session_id, sizeof(res->agent_session_id), report->agent_session_id);
    res->has_service = report->service != NULL;
    if (res->has_service)
        copy_str(res->service, sizeof(res->service), report->service);
    copy_str(res->source_event_id, sizeof(res->source_event_id), source_event_id);
    res->judged_at_ms = now_ms;
    res->confidence = cfg->confidence;
    res->quantile = cfg->quantile;
    res->metrics = xcalloc(report->n_metrics, sizeof(*res->metrics));
    res->reasons = xcalloc(report->n_metrics + 1, sizeof(*res->reasons));
    for (size_t i = 0; i < report->n_metrics; i++) {
        const benchmarker_metric_t *m = &report->metrics[i];
        bool has_reason = false;
        rc = benchmarker_metric_judge(cfg, m, find_history(history, n_history, m->name),
                                      metric_seed(cfg->seed, report->change_id, m->name),
                                      &res->metrics[i], &res->reasons[res->n_reasons], &has_reason);
        if (rc != 0) {
            /* Unreachable: the report was checked above. */
            rc = fl_error_set(err, FL_EINVAL, false, "metric %s could not be judged", m->name);
            benchmarker_result_destroy(res);
            return rc;
        }
        res->n_metrics++;
        if (has_reason)
            res->n_reasons++;
    }
    if (report->n_metrics == 0) {
        benchmarker_reason_t *r = &res->reasons[res->n_reasons++];
        copy_str(r->code, sizeof(r->code), "NO_METRICS");
        copy_str(r->detail, sizeof(r->detail), "0");
        copy_str(r->message, sizeof(r->message),
                 "The bench report has no metrics: nothing was measured, so nothing can be "
                 "judged.");
    }
    overall(cfg, res);
    *out = res;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Base-branch history */

void benchmarker_history_entries_free(benchmarker_history_entry_t *entries, size_t n) {
    if (entries == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(entries[i].samples);
    free(entries);
}

int benchmarker_history_apply(const benchmarker_config_t *cfg, const benchmarker_report_t *report,
                              const benchmarker_history_t *history, size_t n_history,
                              benchmarker_history_entry_t **out, size_t *n_out, fl_error_t *err) {
    int rc = benchmarker_report_check(cfg, report, err);
    if (rc != 0)
        return rc;
    if (!report->is_base_report)
        return fl_error_set(err, FL_EINVAL, false, "only a base report extends the history");
    benchmarker_history_entry_t *entries = xcalloc(report->n_metrics, sizeof(*entries));
    size_t n = 0;
    for (size_t i = 0; i < report->n_metrics; i++) {
        const benchmarker_metric_t *m = &report->metrics[i];
        if (m->n_candidate == 0)
            continue;
        const benchmarker_history_t *h = find_history(history, n_history, m->name);
        size_t keep_old = 0;
        if (h != NULL && h->samples != NULL && !empty(h->unit) && strcmp(h->unit, m->unit) == 0 &&
            h->direction == m->direction)
            keep_old = h->n_samples;
        size_t max = cfg->history_max_samples;
        size_t take_new = m->n_candidate < max ? m->n_candidate : max;
        if (keep_old > max - take_new)
            keep_old = max - take_new;
        benchmarker_history_entry_t *e = &entries[n++];
        copy_str(e->metric, sizeof(e->metric), m->name);
        copy_str(e->unit, sizeof(e->unit), m->unit);
        e->direction = (fl_stats_direction_t)m->direction;
        e->n_samples = keep_old + take_new;
        e->samples = xcalloc(e->n_samples, sizeof(double));
        if (keep_old > 0)
            memcpy(e->samples, h->samples + (h->n_samples - keep_old), keep_old * sizeof(double));
        memcpy(e->samples + keep_old, m->candidate + (m->n_candidate - take_new),
               take_new * sizeof(double));
    }
    *out = entries;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Join */

int benchmarker_join_decide(const benchmarker_validation_t *val, const benchmarker_result_t *bench,
                            benchmarker_join_action_t *action) {
    if (val == NULL && bench == NULL)
        return FL_EINVAL;
    if (val != NULL && bench != NULL &&
        (strcmp(val->change_id, bench->change_id) != 0 || strcmp(val->commit, bench->commit) != 0))
        return FL_EINVAL;
    if (val != NULL && val->verdict == BENCHMARKER_VALIDATION_BASELINE_RECORDED) {
        *action = BENCHMARKER_JOIN_IGNORE;
        return 0;
    }
    /* A failed half settles the change at once: no review request can follow, so there is no
     * reason to keep the other half waiting. */
    if ((val != NULL && val->verdict != BENCHMARKER_VALIDATION_PASSED) ||
        (bench != NULL && !bench->passed)) {
        *action = BENCHMARKER_JOIN_CLOSE;
        return 0;
    }
    *action = val != NULL && bench != NULL ? BENCHMARKER_JOIN_REVIEW : BENCHMARKER_JOIN_WAIT;
    return 0;
}

const char *benchmarker_join_action_name(benchmarker_join_action_t a) {
    switch (a) {
    case BENCHMARKER_JOIN_WAIT:
        return "WAIT";
    case BENCHMARKER_JOIN_REVIEW:
        return "REVIEW";
    case BENCHMARKER_JOIN_CLOSE:
        return "CLOSE";
    case BENCHMARKER_JOIN_IGNORE:
        return "IGNORE";
    }
    return "UNKNOWN";
}

/* ------------------------------------------------------------------------------------------ */
/* Avro: reading */

static int av_fail(fl_error_t *err, const char *what, const char *field) {
    return fl_error_set(err, FL_ESCHEMA, false, "%s %s: %s", what, field, avro_strerror());
}

static int av_field(avro_value_t *rec, const char *name, avro_value_t *out, fl_error_t *err) {
    if (avro_value_get_by_name(rec, name, out, NULL) != 0)
        return av_fail(err, "no field", name);
    return 0;
}

/* A ["null", T] union: *present false for null, else *branch is the T value. */
static int av_union(avro_value_t *u, const char *name, bool *present, avro_value_t *branch,
                    fl_error_t *err) {
    if (avro_value_get_type(u) != AVRO_UNION)
        return av_fail(err, "not a union", name);
    if (avro_value_get_current_branch(u, branch) != 0)
        return av_fail(err, "no branch", name);
    *present = avro_value_get_type(branch) != AVRO_NULL;
    return 0;
}

static int get_str_ref(avro_value_t *rec, const char *name, const char **s, fl_error_t *err) {
    avro_value_t f;
    size_t size;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_get_string(&f, s, &size) != 0)
        rc = av_fail(err, "not a string", name);
    return rc;
}

static int get_opt_str_ref(avro_value_t *rec, const char *name, const char **s, fl_error_t *err) {
    avro_value_t f, b;
    bool present = false;
    size_t size;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0)
        rc = av_union(&f, name, &present, &b, err);
    if (rc != 0)
        return rc;
    *s = NULL;
    if (present && avro_value_get_string(&b, s, &size) != 0)
        return av_fail(err, "not a string", name);
    return 0;
}

static int get_str_buf(avro_value_t *rec, const char *name, char *dst, size_t cap,
                       fl_error_t *err) {
    const char *s;
    int rc = get_str_ref(rec, name, &s, err);
    if (rc == 0 && !copy_str(dst, cap, s))
        rc = fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG %s", name);
    return rc;
}

static int get_double(avro_value_t *rec, const char *name, double *v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_get_double(&f, v) != 0)
        rc = av_fail(err, "not a double", name);
    return rc;
}

/* NAN for null. */
static int get_opt_double(avro_value_t *rec, const char *name, double *v, fl_error_t *err) {
    avro_value_t f, b;
    bool present = false;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0)
        rc = av_union(&f, name, &present, &b, err);
    if (rc != 0)
        return rc;
    *v = NAN;
    if (present && avro_value_get_double(&b, v) != 0)
        return av_fail(err, "not a double", name);
    return 0;
}

static int get_bool(avro_value_t *rec, const char *name, bool *v, fl_error_t *err) {
    avro_value_t f;
    int b;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_get_boolean(&f, &b) != 0)
        rc = av_fail(err, "not a boolean", name);
    if (rc == 0)
        *v = b != 0;
    return rc;
}

static int get_long(avro_value_t *rec, const char *name, int64_t *v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_get_long(&f, v) != 0)
        rc = av_fail(err, "not a long", name);
    return rc;
}

static int get_int(avro_value_t *rec, const char *name, int32_t *v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_get_int(&f, v) != 0)
        rc = av_fail(err, "not an int", name);
    return rc;
}

/* The enum's symbol, so a reordered enum in a future schema cannot shift meanings. */
static int get_enum_symbol(avro_value_t *rec, const char *name, const char **sym, fl_error_t *err) {
    avro_value_t f;
    int idx = 0;
    int rc = av_field(rec, name, &f, err);
    if (rc != 0)
        return rc;
    if (avro_value_get_enum(&f, &idx) != 0)
        return av_fail(err, "not an enum", name);
    *sym = avro_schema_enum_get(avro_value_get_schema(&f), idx);
    if (*sym == NULL)
        return av_fail(err, "bad enum index", name);
    return 0;
}

static int symbol_index(const char *sym, const char *const *names, size_t n, const char *field,
                        int *out, fl_error_t *err) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(sym, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    return fl_error_set(err, FL_ESCHEMA, false, "%s: unknown symbol %s", field, sym);
}

static const char *const direction_names[] = {"LOWER_IS_BETTER", "HIGHER_IS_BETTER"};
static const char *const verdict_names[] = {"PASSED", "FAILED", "INCONCLUSIVE"};
static const char *const metric_verdict_names[] = {"PASS", "REGRESSION", "IMPROVEMENT",
                                                   "INCONCLUSIVE"};
static const char *const source_names[] = {"REPORT", "HISTORY", "NONE"};
static const char *const model_names[] = {"SCALE", "LOCATION", "NONE"};
static const char *const validation_names[] = {"PASSED", "REJECTED", "BASELINE_RECORDED"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int get_enum_index(avro_value_t *rec, const char *name, const char *const *names, size_t n,
                          int *out, fl_error_t *err) {
    const char *sym;
    int rc = get_enum_symbol(rec, name, &sym, err);
    if (rc == 0)
        rc = symbol_index(sym, names, n, name, out, err);
    return rc;
}

static int get_doubles(avro_value_t *rec, const char *name, double **out, size_t *n,
                       fl_error_t *err) {
    avro_value_t arr, item;
    size_t size;
    int rc = av_field(rec, name, &arr, err);
    if (rc != 0)
        return rc;
    if (avro_value_get_size(&arr, &size) != 0)
        return av_fail(err, "not an array", name);
    double *v = xcalloc(size, sizeof(*v));
    for (size_t i = 0; i < size; i++) {
        if (avro_value_get_by_index(&arr, i, &item, NULL) != 0 ||
            avro_value_get_double(&item, &v[i]) != 0) {
            free(v);
            return av_fail(err, "bad item of", name);
        }
    }
    *out = v;
    *n = size;
    return 0;
}

void benchmarker_report_destroy(benchmarker_report_t *report) {
    if (report == NULL)
        return;
    /* Everything here was allocated by benchmarker_report_from_avro; const only protects the
     * view from the judges. */
    free((void *)report->change_id);
    free((void *)report->repo);
    free((void *)report->branch);
    free((void *)report->base_branch);
    free((void *)report->commit);
    free((void *)report->agent_session_id);
    free((void *)report->service);
    for (size_t i = 0; i < report->n_metrics; i++) {
        const benchmarker_metric_t *m = &report->metrics[i];
        free((void *)m->name);
        free((void *)m->unit);
        free((void *)m->baseline);
        free((void *)m->candidate);
    }
    free((void *)report->metrics);
    free(report);
}

static int metric_from_avro(avro_value_t *mv, benchmarker_metric_t *m, fl_error_t *err) {
    const char *s;
    double *samples = NULL;
    avro_value_t f, b;
    bool present = false;
    int rc = get_str_ref(mv, "name", &s, err);
    if (rc != 0)
        return rc;
    m->name = xstrdup(s);
    if ((rc = get_str_ref(mv, "unit", &s, err)) != 0)
        return rc;
    m->unit = xstrdup(s);
    if ((rc = get_enum_index(mv, "direction", direction_names, COUNT(direction_names),
                             &m->direction, err)) != 0)
        return rc;
    if ((rc = get_doubles(mv, "baseline", &samples, &m->n_baseline, err)) != 0)
        return rc;
    m->baseline = samples;
    if ((rc = get_doubles(mv, "candidate", &samples, &m->n_candidate, err)) != 0)
        return rc;
    m->candidate = samples;
    if ((rc = av_field(mv, "threshold_percent", &f, err)) != 0 ||
        (rc = av_union(&f, "threshold_percent", &present, &b, err)) != 0)
        return rc;
    m->has_threshold = present;
    if (present && avro_value_get_double(&b, &m->threshold_percent) != 0)
        return av_fail(err, "not a double", "threshold_percent");
    return 0;
}

int benchmarker_report_from_avro(avro_value_t *value, benchmarker_report_t **out, fl_error_t *err) {
    benchmarker_report_t *r = xcalloc(1, sizeof(*r));
    benchmarker_metric_t *metrics = NULL;
    avro_value_t arr, item;
    size_t size = 0;
    const char *s;
    int rc;
    const struct {
        const char *name;
        const char **dst;
    } ids[] = {{"change_id", &r->change_id},
               {"repo", &r->repo},
               {"branch", &r->branch},
               {"base_branch", &r->base_branch},
               {"commit", &r->commit}};
    for (size_t i = 0; i < COUNT(ids); i++) {
        if ((rc = get_str_ref(value, ids[i].name, &s, err)) != 0)
            goto out;
        *ids[i].dst = xstrdup(s);
    }
    if ((rc = get_opt_str_ref(value, "agent_session_id", &s, err)) != 0)
        goto out;
    r->agent_session_id = s ? xstrdup(s) : NULL;
    if ((rc = get_opt_str_ref(value, "service", &s, err)) != 0)
        goto out;
    r->service = s ? xstrdup(s) : NULL;
    if ((rc = get_bool(value, "is_base_report", &r->is_base_report, err)) != 0 ||
        (rc = get_long(value, "produced_at", &r->produced_at_ms, err)) != 0 ||
        (rc = av_field(value, "metrics", &arr, err)) != 0)
        goto out;
    if (avro_value_get_size(&arr, &size) != 0) {
        rc = av_fail(err, "not an array", "metrics");
        goto out;
    }
    metrics = xcalloc(size, sizeof(*metrics));
    r->metrics = metrics;
    for (size_t i = 0; i < size; i++) {
        if (avro_value_get_by_index(&arr, i, &item, NULL) != 0) {
            rc = av_fail(err, "bad item of", "metrics");
            goto out;
        }
        r->n_metrics = i + 1; /* so destroy frees a half-read metric */
        if ((rc = metric_from_avro(&item, &metrics[i], err)) != 0)
            goto out;
    }
    *out = r;
    r = NULL;
out:
    benchmarker_report_destroy(r);
    return rc;
}

static int reasons_from_avro(avro_value_t *rec, benchmarker_reason_t *reasons, size_t cap,
                             size_t *n, size_t *total, fl_error_t *err) {
    avro_value_t arr, item;
    size_t size;
    int rc = av_field(rec, "reasons", &arr, err);
    if (rc != 0)
        return rc;
    if (avro_value_get_size(&arr, &size) != 0)
        return av_fail(err, "not an array", "reasons");
    *n = 0;
    *total = size;
    for (size_t i = 0; i < size && i < cap; i++) {
        benchmarker_reason_t *r = &reasons[i];
        const char *s;
        if (avro_value_get_by_index(&arr, i, &item, NULL) != 0)
            return av_fail(err, "bad item of", "reasons");
        /* Reasons are for people: a too-long text is cut, not refused. */
        if ((rc = get_str_ref(&item, "code", &s, err)) != 0)
            return rc;
        copy_str(r->code, sizeof(r->code), s);
        if ((rc = get_str_ref(&item, "detail", &s, err)) != 0)
            return rc;
        copy_str(r->detail, sizeof(r->detail), s);
        if ((rc = get_str_ref(&item, "message", &s, err)) != 0)
            return rc;
        copy_str(r->message, sizeof(r->message), s);
        (*n)++;
    }
    return 0;
}

int benchmarker_validation_from_avro(avro_value_t *value, benchmarker_validation_t *out,
                                     fl_error_t *err) {
    benchmarker_validation_t *v = xcalloc(1, sizeof(*v));
    const char *s;
    int verdict = 0;
    size_t total;
    int rc;
    if ((rc = get_str_buf(value, "change_id", v->change_id, sizeof(v->change_id), err)) != 0 ||
        (rc = get_str_buf(value, "repo", v->repo, sizeof(v->repo), err)) != 0 ||
        (rc = get_str_buf(value, "branch", v->branch, sizeof(v->branch), err)) != 0 ||
        (rc = get_str_buf(value, "base_branch", v->base_branch, sizeof(v->base_branch), err)) !=
            0 ||
        (rc = get_str_buf(value, "commit", v->commit, sizeof(v->commit), err)) != 0 ||
        (rc = get_opt_str_ref(value, "agent_session_id", &s, err)) != 0)
        goto out;
    v->has_agent_session = s != NULL;
    if (s != NULL && !copy_str(v->agent_session_id, sizeof(v->agent_session_id), s)) {
        rc = fl_error_set(err, FL_ESEMANTIC, false, "ID_TOO_LONG agent_session_id");
        goto out;
    }
    if ((rc = get_enum_symbol(value, "optimization_type", &s, err)) != 0)
        goto out;
    copy_str(v->optimization_type, sizeof(v->optimization_type), s);
    if ((rc = get_enum_index(value, "verdict", validation_names, COUNT(validation_names), &verdict,
                             err)) != 0)
        goto out;
    v->verdict = (benchmarker_validation_verdict_t)verdict;
    if ((rc = reasons_from_avro(value, v->reasons, BENCHMARKER_MAX_REASONS, &v->n_reasons, &total,
                                err)) != 0 ||
        (rc = get_double(value, "coverage", &v->coverage, err)) != 0 ||
        (rc = get_opt_double(value, "base_coverage", &v->base_coverage, err)) != 0 ||
        (rc = get_str_buf(value, "source_event_id", v->source_event_id, sizeof(v->source_event_id),
                          err)) != 0 ||
        (rc = get_long(value, "validated_at", &v->validated_at_ms, err)) != 0)
        goto out;
    v->has_base_coverage = !isnan(v->base_coverage);
    *out = *v;
out:
    free(v);
    return rc;
}

static int metric_result_from_avro(avro_value_t *mv, benchmarker_metric_result_t *m,
                                   fl_error_t *err) {
    int idx = 0;
    int32_t count;
    const char *s;
    int rc;
    if ((rc = get_str_buf(mv, "name", m->name, sizeof(m->name), err)) != 0 ||
        (rc = get_str_buf(mv, "unit", m->unit, sizeof(m->unit), err)) != 0)
        return rc;
    if ((rc = get_enum_index(mv, "direction", direction_names, COUNT(direction_names), &idx,
                             err)) != 0)
        return rc;
    m->direction = (fl_stats_direction_t)idx;
    if ((rc = get_enum_index(mv, "verdict", metric_verdict_names, COUNT(metric_verdict_names), &idx,
                             err)) != 0)
        return rc;
    m->verdict = (benchmarker_metric_verdict_t)idx;
    if ((rc = get_str_ref(mv, "reason_code", &s, err)) != 0)
        return rc;
    copy_str(m->reason_code, sizeof(m->reason_code), s);
    if ((rc = get_enum_index(mv, "baseline_source", source_names, COUNT(source_names), &idx,
                             err)) != 0)
        return rc;
    m->baseline_source = (benchmarker_baseline_source_t)idx;
    if ((rc = get_int(mv, "baseline_count", &count, err)) != 0)
        return rc;
    m->n_baseline = count < 0 ? 0 : (size_t)count;
    if ((rc = get_int(mv, "candidate_count", &count, err)) != 0)
        return rc;
    m->n_candidate = count < 0 ? 0 : (size_t)count;
    if ((rc = get_enum_index(mv, "shift_model", model_names, COUNT(model_names), &idx, err)) != 0)
        return rc;
    m->shift_model = (benchmarker_shift_model_t)idx;
    if ((rc = get_double(mv, "threshold_percent", &m->threshold_percent, err)) != 0 ||
        (rc = get_bool(mv, "exact_test", &m->exact_test, err)) != 0)
        return rc;
    const struct {
        const char *name;
        double *dst;
    } nums[] = {
        {"baseline_p95", &m->baseline_p95},
        {"candidate_p95", &m->candidate_p95},
        {"p95_change_percent", &m->p95_change_percent},
        {"p95_worsening_percent", &m->p95_worsening_percent},
        {"p95_diff", &m->p95_diff},
        {"p95_diff_low", &m->p95_diff_low},
        {"p95_diff_high", &m->p95_diff_high},
        {"p95_worsening_low_percent", &m->p95_worsening_low},
        {"p95_worsening_high_percent", &m->p95_worsening_high},
        {"shift_worsening_percent", &m->shift_worsening},
        {"shift_worsening_low_percent", &m->shift_low},
        {"shift_worsening_high_percent", &m->shift_high},
        {"u_statistic", &m->u_statistic},
        {"z_score", &m->z_score},
        {"p_value", &m->p_value},
        {"p_value_two_sided", &m->p_value_two_sided},
    };
    for (size_t i = 0; i < COUNT(nums); i++)
        if ((rc = get_opt_double(mv, nums[i].name, nums[i].dst, err)) != 0)
            return rc;
    return 0;
}

int benchmarker_result_from_avro(avro_value_t *value, benchmarker_result_t **out, fl_error_t *err) {
    benchmarker_result_t *res = xcalloc(1, sizeof(*res));
    avro_value_t arr, item;
    size_t size, total;
    const char *s;
    int idx = 0;
    int rc;
    if ((rc = get_str_buf(value, "change_id", res->change_id, sizeof(res->change_id), err)) != 0 ||
        (rc = get_str_buf(value, "repo", res->repo, sizeof(res->repo), err)) != 0 ||
        (rc = get_str_buf(value, "branch", res->branch, sizeof(res->branch), err)) != 0 ||
        (rc = get_str_buf(value, "base_branch", res->base_branch, sizeof(res->base_branch), err)) !=
            0 ||
        (rc = get_str_buf(value, "commit", res->commit, sizeof(res->commit), err)) != 0 ||
        (rc = get_opt_str_ref(value, "agent_session_id", &s, err)) != 0)
        goto out;
    res->has_agent_session = s != NULL;
    if (s != NULL)
        copy_str(res->agent_session_id, sizeof(res->agent_session_id), s);
    if ((rc = get_opt_str_ref(value, "service", &s, err)) != 0)
        goto out;
    res->has_service = s != NULL;
    if (s != NULL)
        copy_str(res->service, sizeof(res->service), s);
    if ((rc = get_enum_index(value, "verdict", verdict_names, COUNT(verdict_names), &idx, err)) !=
        0)
        goto out;
    res->verdict = (benchmarker_verdict_t)idx;
    if ((rc = get_bool(value, "passed", &res->passed, err)) != 0 ||
        (rc = get_double(value, "confidence", &res->confidence, err)) != 0 ||
        (rc = get_double(value, "quantile", &res->quantile, err)) != 0 ||
        (rc = get_str_buf(value, "source_event_id", res->source_event_id,
                          sizeof(res->source_event_id), err)) != 0 ||
        (rc = get_long(value, "judged_at", &res->judged_at_ms, err)) != 0 ||
        (rc = av_field(value, "metrics", &arr, err)) != 0)
        goto out;
    if (avro_value_get_size(&arr, &size) != 0) {
        rc = av_fail(err, "not an array", "metrics");
        goto out;
    }
    res->metrics = xcalloc(size, sizeof(*res->metrics));
    for (size_t i = 0; i < size; i++) {
        if (avro_value_get_by_index(&arr, i, &item, NULL) != 0) {
            rc = av_fail(err, "bad item of", "metrics");
            goto out;
        }
        if ((rc = metric_result_from_avro(&item, &res->metrics[i], err)) != 0)
            goto out;
        res->n_metrics++;
    }
    if ((rc = av_field(value, "reasons", &arr, err)) != 0)
        goto out;
    if (avro_value_get_size(&arr, &size) != 0) {
        rc = av_fail(err, "not an array", "reasons");
        goto out;
    }
    res->reasons = xcalloc(size, sizeof(*res->reasons));
    if ((rc = reasons_from_avro(value, res->reasons, size, &res->n_reasons, &total, err)) != 0)
        goto out;
    *out = res;
    res = NULL;
out:
    benchmarker_result_destroy(res);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Avro: writing */

static int set_str(avro_value_t *rec, const char *name, const char *s, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_set_string(&f, s) != 0)
        rc = av_fail(err, "cannot set string", name);
    return rc;
}

/* Select the null or the other branch of a ["null", T] union. */
static int set_union(avro_value_t *rec, const char *name, bool present, avro_value_t *branch,
                     fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc != 0)
        return rc;
    avro_schema_t us = avro_value_get_schema(&f);
    if (!is_avro_union(us) || avro_schema_union_size(us) != 2)
        return av_fail(err, "not a [null, T] union", name);
    int null_idx = is_avro_null(avro_schema_union_branch(us, 0)) ? 0 : 1;
    int idx = present ? 1 - null_idx : null_idx;
    if (avro_value_set_branch(&f, idx, branch) != 0)
        return av_fail(err, "cannot set branch", name);
    if (!present && avro_value_set_null(branch) != 0)
        return av_fail(err, "cannot set null", name);
    return 0;
}

static int set_opt_str(avro_value_t *rec, const char *name, const char *s, fl_error_t *err) {
    avro_value_t b;
    int rc = set_union(rec, name, s != NULL, &b, err);
    if (rc == 0 && s != NULL && avro_value_set_string(&b, s) != 0)
        rc = av_fail(err, "cannot set string", name);
    return rc;
}

/* NaN and infinities become null: JSON cannot carry them and "not computed" is what they mean. */
static int set_opt_double(avro_value_t *rec, const char *name, double v, fl_error_t *err) {
    avro_value_t b;
    bool present = isfinite(v);
    int rc = set_union(rec, name, present, &b, err);
    if (rc == 0 && present && avro_value_set_double(&b, v) != 0)
        rc = av_fail(err, "cannot set double", name);
    return rc;
}

static int set_double(avro_value_t *rec, const char *name, double v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_set_double(&f, v) != 0)
        rc = av_fail(err, "cannot set double", name);
    return rc;
}

static int set_bool(avro_value_t *rec, const char *name, bool v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_set_boolean(&f, v ? 1 : 0) != 0)
        rc = av_fail(err, "cannot set boolean", name);
    return rc;
}

static int set_long(avro_value_t *rec, const char *name, int64_t v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc == 0 && avro_value_set_long(&f, v) != 0)
        rc = av_fail(err, "cannot set long", name);
    return rc;
}

static int set_int(avro_value_t *rec, const char *name, size_t v, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    int32_t iv = v > INT32_MAX ? INT32_MAX : (int32_t)v;
    if (rc == 0 && avro_value_set_int(&f, iv) != 0)
        rc = av_fail(err, "cannot set int", name);
    return rc;
}

static int set_enum(avro_value_t *rec, const char *name, const char *symbol, fl_error_t *err) {
    avro_value_t f;
    int rc = av_field(rec, name, &f, err);
    if (rc != 0)
        return rc;
    int idx = avro_schema_enum_get_by_name(avro_value_get_schema(&f), symbol);
    if (idx < 0)
        return fl_error_set(err, FL_ESCHEMA, false, "%s: no symbol %s", name, symbol);
    if (avro_value_set_enum(&f, idx) != 0)
        return av_fail(err, "cannot set enum", name);
    return 0;
}

static int set_reasons(avro_value_t *rec, const benchmarker_reason_t *reasons, size_t n,
                       fl_error_t *err) {
    avro_value_t arr, item;
    int rc = av_field(rec, "reasons", &arr, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (avro_value_append(&arr, &item, NULL) != 0)
            return av_fail(err, "cannot append", "reasons");
        if ((rc = set_str(&item, "code", reasons[i].code, err)) == 0 &&
            (rc = set_str(&item, "detail", reasons[i].detail, err)) == 0)
            rc = set_str(&item, "message", reasons[i].message, err);
    }
    return rc;
}

static int metric_result_to_avro(const benchmarker_metric_result_t *m, avro_value_t *mv,
                                 fl_error_t *err) {
    int rc;
    if ((rc = set_str(mv, "name", m->name, err)) != 0 ||
        (rc = set_str(mv, "unit", m->unit, err)) != 0 ||
        (rc = set_enum(mv, "direction", fl_stats_direction_name(m->direction), err)) != 0 ||
        (rc = set_enum(mv, "verdict", benchmarker_metric_verdict_name(m->verdict), err)) != 0 ||
        (rc = set_str(mv, "reason_code", m->reason_code, err)) != 0 ||
        (rc = set_enum(mv, "baseline_source", baseline_source_name(m->baseline_source), err)) !=
            0 ||
        (rc = set_int(mv, "baseline_count", m->n_baseline, err)) != 0 ||
        (rc = set_int(mv, "candidate_count", m->n_candidate, err)) != 0 ||
        (rc = set_double(mv, "threshold_percent", m->threshold_percent, err)) != 0 ||
        (rc = set_enum(mv, "shift_model", shift_model_name(m->shift_model), err)) != 0 ||
        (rc = set_bool(mv, "exact_test", m->exact_test, err)) != 0)
        return rc;
    const struct {
        const char *name;
        double v;
    } nums[] = {
        {"baseline_p95", m->baseline_p95},
        {"candidate_p95", m->candidate_p95},
        {"p95_change_percent", m->p95_change_percent},
        {"p95_worsening_percent", m->p95_worsening_percent},
        {"p95_diff", m->p95_diff},
        {"p95_diff_low", m->p95_diff_low},
        {"p95_diff_high", m->p95_diff_high},
        {"p95_worsening_low_percent", m->p95_worsening_low},
        {"p95_worsening_high_percent", m->p95_worsening_high},
        {"shift_worsening_percent", m->shift_worsening},
        {"shift_worsening_low_percent", m->shift_low},
        {"shift_worsening_high_percent", m->shift_high},
        {"u_statistic", m->u_statistic},
        {"z_score", m->z_score},
        {"p_value", m->p_value},
        {"p_value_two_sided", m->p_value_two_sided},
    };
    for (size_t i = 0; i < COUNT(nums); i++)
        if ((rc = set_opt_double(mv, nums[i].name, nums[i].v, err)) != 0)
            return rc;
    return 0;
}

/* Fill a BenchmarkResult record (top-level event or the review request's copy). */
static int result_fill(const benchmarker_result_t *res, avro_value_t *out, fl_error_t *err) {
    avro_value_t arr, item;
    int rc;
    if ((rc = set_str(out, "change_id", res->change_id, err)) != 0 ||
        (rc = set_opt_str(out, "agent_session_id",
                          res->has_agent_session ? res->agent_session_id : NULL, err)) != 0 ||
        (rc = set_str(out, "repo", res->repo, err)) != 0 ||
        (rc = set_str(out, "branch", res->branch, err)) != 0 ||
        (rc = set_str(out, "base_branch", res->base_branch, err)) != 0 ||
        (rc = set_str(out, "commit", res->commit, err)) != 0 ||
        (rc = set_opt_str(out, "service", res->has_service ? res->service : NULL, err)) != 0 ||
        (rc = set_enum(out, "verdict", benchmarker_verdict_name(res->verdict), err)) != 0 ||
        (rc = set_bool(out, "passed", res->passed, err)) != 0 ||
        (rc = set_double(out, "confidence", res->confidence, err)) != 0 ||
        (rc = set_double(out, "quantile", res->quantile, err)) != 0 ||
        (rc = set_str(out, "source_event_id", res->source_event_id, err)) != 0 ||
        (rc = set_long(out, "judged_at", res->judged_at_ms, err)) != 0 ||
        (rc = av_field(out, "metrics", &arr, err)) != 0)
        return rc;
    for (size_t i = 0; i < res->n_metrics; i++) {
        if (avro_value_append(&arr, &item, NULL) != 0)
            return av_fail(err, "cannot append", "metrics");
        if ((rc = metric_result_to_avro(&res->metrics[i], &item, err)) != 0)
            return rc;
    }
    if ((rc = av_field(out, "regressions", &arr, err)) != 0)
        return rc;
    for (size_t i = 0; i < res->n_metrics; i++) {
        if (res->metrics[i].verdict != BENCHMARKER_REGRESSION)
            continue;
        if (avro_value_append(&arr, &item, NULL) != 0 ||
            avro_value_set_string(&item, res->metrics[i].name) != 0)
            return av_fail(err, "cannot append", "regressions");
    }
    return set_reasons(out, res->reasons, res->n_reasons, err);
}

int benchmarker_result_to_avro(const benchmarker_result_t *res, avro_value_t *out,
                               fl_error_t *err) {
    if (avro_value_reset(out) != 0)
        return av_fail(err, "cannot reset", "benchmark_result");
    return result_fill(res, out, err);
}

int benchmarker_review_request_to_avro(const benchmarker_validation_t *val,
                                       const benchmarker_result_t *bench, double risk_score,
                                       const char *source_event_id, int64_t now_ms,
                                       avro_value_t *out, fl_error_t *err) {
    benchmarker_join_action_t action;
    if (val == NULL || bench == NULL || source_event_id == NULL ||
        benchmarker_join_decide(val, bench, &action) != 0 || action != BENCHMARKER_JOIN_REVIEW)
        return fl_error_set(err, FL_EINVAL, false, "no review request for this pair");
    avro_value_t sub;
    int rc;
    if (avro_value_reset(out) != 0)
        return av_fail(err, "cannot reset", "review_request");
    if ((rc = set_str(out, "change_id", bench->change_id, err)) != 0 ||
        (rc = set_opt_str(out, "agent_session_id",
                          bench->has_agent_session ? bench->agent_session_id : NULL, err)) != 0 ||
        (rc = set_str(out, "repo", bench->repo, err)) != 0 ||
        (rc = set_str(out, "branch", bench->branch, err)) != 0 ||
        (rc = set_str(out, "base_branch", bench->base_branch, err)) != 0 ||
        (rc = set_str(out, "commit", bench->commit, err)) != 0 ||
        (rc = set_opt_str(out, "service", bench->has_service ? bench->service : NULL, err)) != 0 ||
        (rc = set_opt_double(out, "risk_score", risk_score, err)) != 0 ||
        (rc = set_str(out, "source_event_id", source_event_id, err)) != 0 ||
        (rc = set_long(out, "requested_at", now_ms, err)) != 0)
        return rc;
    /* An optimization type this schema does not know falls back to OTHER (its default). */
    if (set_enum(out, "optimization_type", val->optimization_type, err) != 0 &&
        (rc = set_enum(out, "optimization_type", "OTHER", err)) != 0)
        return rc;
    if ((rc = av_field(out, "benchmark", &sub, err)) != 0 ||
        (rc = result_fill(bench, &sub, err)) != 0 ||
        (rc = av_field(out, "validation", &sub, err)) != 0)
        return rc;
    if ((rc = set_enum(&sub, "verdict", validation_names[val->verdict], err)) != 0 ||
        (rc = set_reasons(&sub, val->reasons, val->n_reasons, err)) != 0 ||
        (rc = set_double(&sub, "coverage", val->coverage, err)) != 0 ||
        (rc = set_opt_double(&sub, "base_coverage",
                             val->has_base_coverage ? val->base_coverage : NAN, err)) != 0 ||
        (rc = set_str(&sub, "source_event_id", val->source_event_id, err)) != 0 ||
        (rc = set_long(&sub, "validated_at", val->validated_at_ms, err)) != 0)
        return rc;
    return 0;
}
