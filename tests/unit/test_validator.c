/* Validator rules, table-driven: every rule at, just over and far over its threshold, the
 * no-base policy, every reason listed (not only the first), and the semantic checks that send a
 * report to the dead-letter topic instead of judging it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fl_err.h"
#include "validator.h"

static void good_report(validator_report_t *r) {
    memset(r, 0, sizeof(*r));
    strcpy(r->change_id, "acme/api#1");
    strcpy(r->repo, "acme/api");
    strcpy(r->branch, "agent/fix");
    strcpy(r->base_branch, "main");
    strcpy(r->commit, "abc123");
    r->produced_at = 1700000000000;
    r->unit_passed = 100;
    r->coverage = 82.0;
    r->integration_passed = 10;
    r->cyclomatic = 10;
    r->duplication_percent = 5.0;
    r->maintainability_index = 70;
}

typedef struct rule_case {
    const char *name;
    void (*mutate)(validator_report_t *r);
    bool has_base;
    double base;
    validator_verdict_kind_t kind;
    const char *codes;  /* space-separated reason codes in order */
    const char *detail; /* detail of the first reason, or NULL */
} rule_case_t;

static void m_none(validator_report_t *r) {
    (void)r;
}
static void m_unit1(validator_report_t *r) {
    r->unit_failed = 1;
}
static void m_cov_drop(validator_report_t *r) {
    r->coverage = 81.2;
}
static void m_cov_tiny_drop(validator_report_t *r) {
    r->coverage = 81.99;
}
static void m_cov_up(validator_report_t *r) {
    r->coverage = 90;
}
static void m_cyc11(validator_report_t *r) {
    r->cyclomatic = 11;
}
static void m_dup(validator_report_t *r) {
    r->duplication_percent = 5.01;
}
static void m_vuln(validator_report_t *r) {
    r->vulnerabilities = 2;
    r->vuln_by_sev[SEV_HIGH] = 1;
    r->vuln_by_sev[SEV_LOW] = 1;
}
static void m_integ(validator_report_t *r) {
    r->integration_failed = 3;
}
static void m_e2e(validator_report_t *r) {
    r->has_e2e = true;
    r->e2e_failed = 1;
}
static void m_e2e_not_run(validator_report_t *r) {
    r->has_e2e = false;
    r->e2e_failed = 1; /* ignored: e2e did not run */
}
static void m_all(validator_report_t *r) {
    m_unit1(r);
    m_cov_drop(r);
    r->cyclomatic = 14;
    r->duplication_percent = 6.5;
    r->vulnerabilities = 1;
    r->vuln_by_sev[SEV_HIGH] = 1;
}
static void m_base(validator_report_t *r) {
    r->is_base = true;
    r->unit_failed = 5; /* a base report is recorded, not judged */
}

static const rule_case_t cases[] = {
    {"clean at every threshold", m_none, true, 82.0, VALIDATOR_PASSED, "", NULL},
    {"one unit failure", m_unit1, true, 82.0, VALIDATOR_REJECTED, "UNIT_TESTS_FAILED", "1>0"},
    {"coverage dropped", m_cov_drop, true, 82.0, VALIDATOR_REJECTED, "COVERAGE_DROPPED",
     "81.2<82.0"},
    {"coverage dropped by 0.01", m_cov_tiny_drop, true, 82.0, VALIDATOR_REJECTED,
     "COVERAGE_DROPPED", "81.99<82.00"},
    {"coverage rose", m_cov_up, true, 82.0, VALIDATOR_PASSED, "", NULL},
    {"cyclomatic 11", m_cyc11, true, 82.0, VALIDATOR_REJECTED, "CYCLOMATIC_TOO_HIGH", "11>10"},
    {"duplication 5.01", m_dup, true, 82.0, VALIDATOR_REJECTED, "DUPLICATION_TOO_HIGH",
     "5.01>5.00"},
    {"vulnerabilities", m_vuln, true, 82.0, VALIDATOR_REJECTED, "VULNERABILITIES_FOUND",
     "2>0 HIGH:1 LOW:1"},
    {"integration failures", m_integ, true, 82.0, VALIDATOR_REJECTED, "INTEGRATION_TESTS_FAILED",
     "3>0"},
    {"e2e failure", m_e2e, true, 82.0, VALIDATOR_REJECTED, "E2E_TESTS_FAILED", "1>0"},
    {"e2e not run", m_e2e_not_run, true, 82.0, VALIDATOR_PASSED, "", NULL},
    {"no base: fail closed", m_none, false, 0, VALIDATOR_REJECTED, "NO_BASE_COVERAGE",
     "acme/api@main"},
    {"every reason listed", m_all, true, 82.0, VALIDATOR_REJECTED,
     "UNIT_TESTS_FAILED COVERAGE_DROPPED CYCLOMATIC_TOO_HIGH DUPLICATION_TOO_HIGH "
     "VULNERABILITIES_FOUND",
     "1>0"},
    {"base report recorded", m_base, false, 0, VALIDATOR_BASELINE_RECORDED, "", NULL},
};

static void test_rules_table(void **state) {
    (void)state;
    validator_rules_t rules;
    validator_rules_default(&rules);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const rule_case_t *c = &cases[i];
        validator_report_t r;
        validator_verdict_t v;
        good_report(&r);
        c->mutate(&r);
        validator_judge(&r, &rules, c->has_base, c->base, &v);
        char codes[512] = "";
        for (size_t k = 0; k < v.nreasons; k++) {
            if (k)
                strcat(codes, " ");
            strcat(codes, v.reasons[k].code);
        }
        if (v.kind != c->kind || strcmp(codes, c->codes) != 0)
            fail_msg("case '%s': got %s [%s], want %s [%s]", c->name,
                     validator_verdict_name(v.kind), codes, validator_verdict_name(c->kind),
                     c->codes);
        if (c->detail != NULL)
            assert_string_equal(v.reasons[0].detail, c->detail);
    }
}

static void test_no_base_fail_open(void **state) {
    (void)state;
    validator_rules_t rules;
    validator_rules_default(&rules);
    rules.no_base = VALIDATOR_NO_BASE_ACCEPT;
    validator_report_t r;
    validator_verdict_t v;
    good_report(&r);
    validator_judge(&r, &rules, false, 0, &v);
    assert_int_equal(v.kind, VALIDATOR_PASSED);
    assert_int_equal(v.nreasons, 0);
    m_unit1(&r);
    validator_judge(&r, &rules, false, 0, &v);
    assert_int_equal(v.kind, VALIDATOR_REJECTED);
    assert_string_equal(v.reasons[0].code, "UNIT_TESTS_FAILED");
}

static void test_configured_thresholds(void **state) {
    (void)state;
    validator_rules_t rules;
    validator_rules_default(&rules);
    rules.max_cyclomatic = 15;
    rules.max_duplication = 7;
    rules.max_vulnerabilities = 1;
    rules.max_failed_unit = 1;
    rules.coverage_tolerance = 1.0;
    validator_report_t r;
    validator_verdict_t v;
    good_report(&r);
    m_all(&r); /* 1 unit failure, 81.2 vs 82.0, cyc 14, dup 6.5, 1 vuln: all within */
    validator_judge(&r, &rules, true, 82.0, &v);
    assert_int_equal(v.kind, VALIDATOR_PASSED);
    r.coverage = 80.9; /* more than 1 point below */
    validator_judge(&r, &rules, true, 82.0, &v);
    assert_int_equal(v.kind, VALIDATOR_REJECTED);
    assert_string_equal(v.reasons[0].code, "COVERAGE_DROPPED");
    assert_string_equal(v.reasons[0].detail, "80.9<81.0");
}

typedef struct bad_case {
    const char *name;
    void (*mutate)(validator_report_t *r);
    const char *field; /* the reason must name it */
} bad_case_t;

static void b_neg_unit(validator_report_t *r) {
    r->unit_failed = -1;
}
static void b_neg_passed(validator_report_t *r) {
    r->integration_passed = -5;
}
static void b_nan_cov(validator_report_t *r) {
    r->coverage = NAN;
}
static void b_inf_dup(validator_report_t *r) {
    r->duplication_percent = INFINITY;
}
static void b_cov_over(validator_report_t *r) {
    r->coverage = 100.5;
}
static void b_cov_under(validator_report_t *r) {
    r->coverage = -0.1;
}
static void b_no_change(validator_report_t *r) {
    r->change_id[0] = '\0';
}
static void b_no_repo(validator_report_t *r) {
    r->repo[0] = '\0';
}
static void b_no_commit(validator_report_t *r) {
    r->commit[0] = '\0';
}
static void b_no_base_branch(validator_report_t *r) {
    r->base_branch[0] = '\0';
}
static void b_neg_duration(validator_report_t *r) {
    r->unit_duration_ms = -3;
}
static void b_nan_mi(validator_report_t *r) {
    r->maintainability_index = NAN;
}

static const bad_case_t bad_cases[] = {
    {"negative failed count", b_neg_unit, "tests.unit.failed"},
    {"negative passed count", b_neg_passed, "tests.integration.passed"},
    {"NaN coverage", b_nan_cov, "tests.unit.coverage"},
    {"infinite duplication", b_inf_dup, "quality.duplication_percent"},
    {"coverage over 100", b_cov_over, "tests.unit.coverage"},
    {"coverage under 0", b_cov_under, "tests.unit.coverage"},
    {"missing change id", b_no_change, "change_id"},
    {"missing repo", b_no_repo, "repo"},
    {"missing commit", b_no_commit, "commit"},
    {"missing base branch", b_no_base_branch, "base_branch"},
    {"negative duration", b_neg_duration, "tests.unit.duration_ms"},
    {"NaN maintainability", b_nan_mi, "quality.maintainability_index"},
};

static void test_semantic_checks(void **state) {
    (void)state;
    validator_report_t r;
    char why[256];
    good_report(&r);
    assert_int_equal(validator_check(&r, why, sizeof(why)), 0);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        good_report(&r);
        bad_cases[i].mutate(&r);
        why[0] = '\0';
        int rc = validator_check(&r, why, sizeof(why));
        if (rc != FL_ESEMANTIC || strncmp(why, bad_cases[i].field, strlen(bad_cases[i].field)))
            fail_msg("case '%s': rc %d why '%s'", bad_cases[i].name, rc, why);
    }
    /* A base report needs no base branch of its own. */
    good_report(&r);
    r.is_base = true;
    r.base_branch[0] = '\0';
    assert_int_equal(validator_check(&r, why, sizeof(why)), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_table),
        cmocka_unit_test(test_no_base_fail_open),
        cmocka_unit_test(test_configured_thresholds),
        cmocka_unit_test(test_semantic_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
