#include "validator.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fl_err.h"

void validator_rules_default(validator_rules_t *rules) {
    rules->max_failed_unit = 0;
    rules->max_failed_integration = 0;
    rules->max_failed_e2e = 0;
    rules->coverage_tolerance = 0.0;
    rules->max_cyclomatic = 10;
    rules->max_duplication = 5.0;
    rules->max_vulnerabilities = 0;
    rules->no_base = VALIDATOR_NO_BASE_REJECT;
}

const char *validator_verdict_name(validator_verdict_kind_t kind) {
    switch (kind) {
    case VALIDATOR_PASSED:
        return "PASSED";
    case VALIDATOR_REJECTED:
        return "REJECTED";
    case VALIDATOR_BASELINE_RECORDED:
        return "BASELINE_RECORDED";
    }
    return "UNKNOWN";
}

/* ---------- reading the Avro value ---------- */

typedef struct reader {
    char *why;
    size_t whylen;
    int rc;
} reader_t;

static bool field(reader_t *r, avro_value_t *rec, const char *name, avro_value_t *out) {
    if (r->rc != 0)
        return false;
    if (avro_value_get_by_name(rec, name, out, NULL) != 0) {
        snprintf(r->why, r->whylen, "%s: missing in schema", name);
        r->rc = FL_ESEMANTIC;
        return false;
    }
    return true;
}

static void get_str(reader_t *r, avro_value_t *rec, const char *name, char *dst, size_t cap) {
    avro_value_t f;
    const char *s = NULL;
    size_t n = 0;
    if (!field(r, rec, name, &f))
        return;
    if (avro_value_get_string(&f, &s, &n) != 0 || s == NULL) {
        snprintf(r->why, r->whylen, "%s: not a string", name);
        r->rc = FL_ESEMANTIC;
        return;
    }
    /* n counts the terminating NUL */
    size_t len = n > 0 ? n - 1 : 0;
    if (len >= cap) {
        snprintf(r->why, r->whylen, "%s: longer than %zu bytes", name, cap - 1);
        r->rc = FL_ESEMANTIC;
        return;
    }
    if (memchr(s, '\0', len) != NULL) {
        snprintf(r->why, r->whylen, "%s: contains a NUL byte", name);
        r->rc = FL_ESEMANTIC;
        return;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
}

static int32_t get_int(reader_t *r, avro_value_t *rec, const char *name) {
    avro_value_t f;
    int32_t v = 0;
    if (field(r, rec, name, &f))
        avro_value_get_int(&f, &v);
    return v;
}

static int64_t get_long(reader_t *r, avro_value_t *rec, const char *name) {
    avro_value_t f;
    int64_t v = 0;
    if (field(r, rec, name, &f))
        avro_value_get_long(&f, &v);
    return v;
}

static double get_double(reader_t *r, avro_value_t *rec, const char *name) {
    avro_value_t f;
    double v = 0;
    if (field(r, rec, name, &f))
        avro_value_get_double(&f, &v);
    return v;
}

static bool get_bool(reader_t *r, avro_value_t *rec, const char *name) {
    avro_value_t f;
    int v = 0;
    if (field(r, rec, name, &f))
        avro_value_get_boolean(&f, &v);
    return v != 0;
}

/* A ["null", T] union: returns true and the branch when it holds a T. */
static bool get_opt(reader_t *r, avro_value_t *rec, const char *name, avro_value_t *branch) {
    avro_value_t f;
    int disc = 0;
    if (!field(r, rec, name, &f))
        return false;
    if (avro_value_get_discriminant(&f, &disc) != 0 || avro_value_get_current_branch(&f, branch))
        return false;
    return avro_value_get_type(branch) != AVRO_NULL;
}

int validator_report_from_avro(avro_value_t *value, validator_report_t *rep, char *why,
                               size_t whylen) {
    reader_t r = {why, whylen, 0};
    avro_value_t tests, unit, integ, e2e, quality, change, vulns, f;
    memset(rep, 0, sizeof(*rep));
    get_str(&r, value, "change_id", rep->change_id, sizeof(rep->change_id));
    get_str(&r, value, "repo", rep->repo, sizeof(rep->repo));
    get_str(&r, value, "branch", rep->branch, sizeof(rep->branch));
    get_str(&r, value, "base_branch", rep->base_branch, sizeof(rep->base_branch));
    get_str(&r, value, "commit", rep->commit, sizeof(rep->commit));
    if (r.rc == 0 && get_opt(&r, value, "agent_session_id", &f)) {
        const char *s = NULL;
        size_t n = 0;
        if (avro_value_get_string(&f, &s, &n) == 0 && s != NULL) {
            if (n > sizeof(rep->agent_session_id)) {
                snprintf(why, whylen, "agent_session_id: longer than %zu bytes",
                         sizeof(rep->agent_session_id) - 1);
                return FL_ESEMANTIC;
            }
            memcpy(rep->agent_session_id, s, n ? n - 1 : 0);
            rep->has_agent_session = true;
        }
    }
    rep->is_base = get_bool(&r, value, "is_base_report");
    if (field(&r, value, "optimization_type", &f))
        avro_value_get_enum(&f, &rep->optimization_type);
    rep->produced_at = get_long(&r, value, "produced_at");
    if (field(&r, value, "tests", &tests) && field(&r, &tests, "unit", &unit) &&
        field(&r, &tests, "integration", &integ)) {
        rep->unit_passed = get_int(&r, &unit, "passed");
        rep->unit_failed = get_int(&r, &unit, "failed");
        rep->coverage = get_double(&r, &unit, "coverage");
        rep->unit_duration_ms = get_long(&r, &unit, "duration_ms");
        rep->integration_passed = get_int(&r, &integ, "passed");
        rep->integration_failed = get_int(&r, &integ, "failed");
        rep->integration_scenarios = get_int(&r, &integ, "scenarios");
        if (get_opt(&r, &tests, "e2e", &e2e)) {
            rep->has_e2e = true;
            rep->e2e_passed = get_int(&r, &e2e, "passed");
            rep->e2e_failed = get_int(&r, &e2e, "failed");
        }
    }
    if (field(&r, value, "quality", &quality)) {
        rep->cyclomatic = get_int(&r, &quality, "cyclomatic");
        rep->cognitive = get_int(&r, &quality, "cognitive");
        rep->maintainability_index = get_double(&r, &quality, "maintainability_index");
        rep->duplication_percent = get_double(&r, &quality, "duplication_percent");
        rep->duplication_blocks = get_int(&r, &quality, "duplication_blocks");
        if (field(&r, &quality, "vulnerabilities", &vulns)) {
            size_t n = 0;
            avro_value_get_size(&vulns, &n);
            rep->vulnerabilities = n > INT32_MAX ? INT32_MAX : (int32_t)n;
            for (size_t i = 0; i < n; i++) {
                avro_value_t v, sev;
                int s = 0;
                if (avro_value_get_by_index(&vulns, i, &v, NULL) == 0 &&
                    avro_value_get_by_name(&v, "severity", &sev, NULL) == 0 &&
                    avro_value_get_enum(&sev, &s) == 0 && s >= 0 && s < SEV__COUNT)
                    rep->vuln_by_sev[s]++;
            }
        }
    }
    if (field(&r, value, "change", &change)) {
        rep->files_changed = get_int(&r, &change, "files_changed");
        rep->lines_added = get_int(&r, &change, "lines_added");
        rep->lines_removed = get_int(&r, &change, "lines_removed");
        rep->complexity_delta = get_double(&r, &change, "complexity_delta");
    }
    return r.rc;
}

/* ---------- semantic checks ---------- */

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        return FL_ESEMANTIC;                                                                       \
    } while (0)

int validator_check(const validator_report_t *rep, char *why, size_t whylen) {
    struct {
        const char *name;
        const char *value;
    } ids[] = {{"change_id", rep->change_id},
               {"repo", rep->repo},
               {"branch", rep->branch},
               {"commit", rep->commit},
               {"base_branch", rep->base_branch}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (ids[i].value[0] == '\0' && !(rep->is_base && strcmp(ids[i].name, "base_branch") == 0))
            BAD("%s: missing (empty)", ids[i].name);
    }
    struct {
        const char *name;
        long long v;
    } counts[] = {{"tests.unit.passed", rep->unit_passed},
                  {"tests.unit.failed", rep->unit_failed},
                  {"tests.unit.duration_ms", rep->unit_duration_ms},
                  {"tests.integration.passed", rep->integration_passed},
                  {"tests.integration.failed", rep->integration_failed},
                  {"tests.integration.scenarios", rep->integration_scenarios},
                  {"tests.e2e.passed", rep->e2e_passed},
                  {"tests.e2e.failed", rep->e2e_failed},
                  {"quality.cyclomatic", rep->cyclomatic},
                  {"quality.cognitive", rep->cognitive},
                  {"quality.duplication_blocks", rep->duplication_blocks},
                  {"change.files_changed", rep->files_changed},
                  {"change.lines_added", rep->lines_added},
                  {"change.lines_removed", rep->lines_removed},
                  {"produced_at", rep->produced_at}};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].v < 0)
            BAD("%s: negative (%lld)", counts[i].name, counts[i].v);
    struct {
        const char *name;
        double v;
        double lo, hi;
    } nums[] = {{"tests.unit.coverage", rep->coverage, 0, 100},
                {"quality.duplication_percent", rep->duplication_percent, 0, 100},
                {"quality.maintainability_index", rep->maintainability_index, -1e9, 1e9},
                {"change.complexity_delta", rep->complexity_delta, -1e12, 1e12}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (!isfinite(nums[i].v))
            BAD("%s: not a finite number", nums[i].name);
        if (nums[i].v < nums[i].lo || nums[i].v > nums[i].hi)
            BAD("%s: %g outside %g..%g", nums[i].name, nums[i].v, nums[i].lo, nums[i].hi);
    }
    return 0;
}

/* ---------- judging ---------- */

static void add_reason(validator_verdict_t *v, const char *code, const char *message,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add_reason(validator_verdict_t *v, const char *code, const char *message,
                       const char *fmt, ...) {
    if (v->nreasons >= VALIDATOR_MAX_REASONS)
        return;
    validator_reason_t *r = &v->reasons[v->nreasons++];
    snprintf(r->code, sizeof(r->code), "%s", code);
    snprintf(r->message, sizeof(r->message), "%s", message);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
    va_end(ap);
}

/* "a<op>b" with the fewest decimals (at least one) that tell the two numbers apart, so a
 * detail never reads "82.0<82.0". */
static void fmt_pair(char *buf, size_t len, double a, const char *op, double b) {
    for (int prec = 1; prec <= 6; prec++) {
        char x[40], y[40];
        snprintf(x, sizeof(x), "%.*f", prec, a);
        snprintf(y, sizeof(y), "%.*f", prec, b);
        if (strcmp(x, y) != 0 || prec == 6) {
            snprintf(buf, len, "%.39s%.3s%.39s", x, op, y);
            return;
        }
    }
}

void validator_judge(const validator_report_t *rep, const validator_rules_t *rules, bool has_base,
                     double base_coverage, validator_verdict_t *v) {
    memset(v, 0, sizeof(*v));
    if (rep->is_base) {
        v->kind = VALIDATOR_BASELINE_RECORDED;
        return;
    }
    if (rep->unit_failed > rules->max_failed_unit)
        add_reason(v, "UNIT_TESTS_FAILED", "Unit test failures", "%d>%d", rep->unit_failed,
                   rules->max_failed_unit);
    if (rep->integration_failed > rules->max_failed_integration)
        add_reason(v, "INTEGRATION_TESTS_FAILED", "Integration test failures", "%d>%d",
                   rep->integration_failed, rules->max_failed_integration);
    if (rep->has_e2e && rep->e2e_failed > rules->max_failed_e2e)
        add_reason(v, "E2E_TESTS_FAILED", "End-to-end test failures", "%d>%d", rep->e2e_failed,
                   rules->max_failed_e2e);
    if (has_base) {
        /* Compare at the printed precision so the detail never reads "82.0<82.0". */
        double floor_cov = base_coverage - rules->coverage_tolerance;
        if (rep->coverage < floor_cov) {
            char d[96];
            fmt_pair(d, sizeof(d), rep->coverage, "<", floor_cov);
            add_reason(v, "COVERAGE_DROPPED", "Coverage regression", "%s", d);
        }
    } else if (rules->no_base == VALIDATOR_NO_BASE_REJECT) {
        add_reason(v, "NO_BASE_COVERAGE",
                   "No base-branch coverage is known yet; send a base-branch report first", "%s@%s",
                   rep->repo, rep->base_branch);
    }
    if (rep->cyclomatic > rules->max_cyclomatic)
        add_reason(v, "CYCLOMATIC_TOO_HIGH", "Cyclomatic complexity over the limit", "%d>%d",
                   rep->cyclomatic, rules->max_cyclomatic);
    if (rep->duplication_percent > rules->max_duplication) {
        char d[96];
        fmt_pair(d, sizeof(d), rep->duplication_percent, ">", rules->max_duplication);
        add_reason(v, "DUPLICATION_TOO_HIGH", "Code duplication over the limit", "%s", d);
    }
    if (rep->vulnerabilities > rules->max_vulnerabilities) {
        static const char *names[] = {"LOW", "MEDIUM", "HIGH", "CRITICAL"};
        char sev[64] = "";
        size_t n = 0;
        for (int s = SEV__COUNT - 1; s >= 0; s--)
            if (rep->vuln_by_sev[s] > 0 && n < sizeof(sev))
                n += (size_t)snprintf(sev + n, sizeof(sev) - n, " %s:%d", names[s],
                                      rep->vuln_by_sev[s]);
        add_reason(v, "VULNERABILITIES_FOUND", "Security vulnerabilities found", "%d>%d%s",
                   rep->vulnerabilities, rules->max_vulnerabilities, sev);
    }
    v->kind = v->nreasons > 0 ? VALIDATOR_REJECTED : VALIDATOR_PASSED;
}

/* ---------- writing the result ---------- */

static int set_str(avro_value_t *rec, const char *name, const char *s) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
        return FL_ESCHEMA;
    return avro_value_set_string(&f, s) == 0 ? 0 : FL_ESCHEMA;
}

static int set_opt(avro_value_t *rec, const char *name, avro_value_t *branch, bool present) {
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0)
        return FL_ESCHEMA;
    if (avro_value_set_branch(&f, present ? 1 : 0, branch) != 0)
        return FL_ESCHEMA;
    if (!present)
        avro_value_set_null(branch);
    return 0;
}

int validator_result_to_avro(const validator_report_t *rep, const validator_verdict_t *v,
                             bool has_base, double base_coverage, const char *source_event_id,
                             int64_t now_ms, avro_value_t *out) {
    avro_value_t f, b, reasons;
    int rc = 0;
    rc |= set_str(out, "change_id", rep->change_id);
    rc |= set_str(out, "repo", rep->repo);
    rc |= set_str(out, "branch", rep->branch);
    rc |= set_str(out, "base_branch", rep->base_branch);
    rc |= set_str(out, "commit", rep->commit);
    rc |= set_opt(out, "agent_session_id", &b, rep->has_agent_session);
    if (rc == 0 && rep->has_agent_session)
        avro_value_set_string(&b, rep->agent_session_id);
    if (avro_value_get_by_name(out, "optimization_type", &f, NULL) == 0)
        avro_value_set_enum(&f, rep->optimization_type);
    else
        rc = FL_ESCHEMA;
    if (avro_value_get_by_name(out, "is_base_report", &f, NULL) == 0)
        avro_value_set_boolean(&f, rep->is_base);
    if (avro_value_get_by_name(out, "verdict", &f, NULL) == 0)
        avro_value_set_enum(&f, (int)v->kind);
    else
        rc = FL_ESCHEMA;
    if (avro_value_get_by_name(out, "reasons", &reasons, NULL) == 0) {
        avro_value_reset(&reasons);
        for (size_t i = 0; i < v->nreasons; i++) {
            avro_value_t r;
            avro_value_append(&reasons, &r, NULL);
            rc |= set_str(&r, "code", v->reasons[i].code);
            rc |= set_str(&r, "detail", v->reasons[i].detail);
            rc |= set_str(&r, "message", v->reasons[i].message);
        }
    } else {
        rc = FL_ESCHEMA;
    }
    if (avro_value_get_by_name(out, "coverage", &f, NULL) == 0)
        avro_value_set_double(&f, rep->coverage);
    rc |= set_opt(out, "base_coverage", &b, has_base);
    if (rc == 0 && has_base)
        avro_value_set_double(&b, base_coverage);
    if (avro_value_get_by_name(out, "tests_passed", &f, NULL) == 0)
        avro_value_set_int(&f, rep->unit_passed + rep->integration_passed + rep->e2e_passed);
    if (avro_value_get_by_name(out, "tests_failed", &f, NULL) == 0)
        avro_value_set_int(&f, rep->unit_failed + rep->integration_failed + rep->e2e_failed);
    rc |= set_str(out, "source_event_id", source_event_id);
    if (avro_value_get_by_name(out, "validated_at", &f, NULL) == 0)
        avro_value_set_long(&f, now_ms);
    return rc == 0 ? 0 : FL_ESCHEMA;
}
