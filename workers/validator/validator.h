/* validator: the pure decision logic of the validator worker.
 *
 * A CI report is first checked for semantic validity (validator_check: an invalid report is a
 * dead letter, not a verdict), then judged against the seed rules (validator_judge):
 *   UNIT_TESTS_FAILED        unit.failed > rules.max_failed_unit          ("2>0")
 *   INTEGRATION_TESTS_FAILED integration.failed > rules.max_failed_integration
 *   E2E_TESTS_FAILED         e2e.failed > rules.max_failed_e2e (when e2e ran)
 *   COVERAGE_DROPPED         coverage < base coverage - rules.coverage_tolerance ("81.2<82.0")
 *   NO_BASE_COVERAGE         no base coverage known for repo/base_branch and rules.no_base is
 *                            VALIDATOR_NO_BASE_REJECT (the default: fail closed)
 *   CYCLOMATIC_TOO_HIGH      cyclomatic > rules.max_cyclomatic          ("14>10")
 *   DUPLICATION_TOO_HIGH     duplication_percent > rules.max_duplication ("6.5>5.0")
 *   VULNERABILITIES_FOUND    vulnerabilities > rules.max_vulnerabilities ("1>0 HIGH:1")
 * Every failing rule is listed, in this order. A base-branch report is not judged: it records
 * the base coverage (verdict BASELINE_RECORDED).
 *
 * No Kafka, Redis or libuv here: the shell loads the base coverage and writes the outputs. */
#ifndef VALIDATOR_H
#define VALIDATOR_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VALIDATOR_ID_MAX 256
#define VALIDATOR_MAX_REASONS 8

typedef enum {
    VALIDATOR_NO_BASE_REJECT = 0, /* fail closed: no known base coverage rejects */
    VALIDATOR_NO_BASE_ACCEPT = 1, /* fail open: the coverage rule is skipped */
} validator_no_base_t;

typedef struct validator_rules {
    int max_failed_unit;
    int max_failed_integration;
    int max_failed_e2e;
    double coverage_tolerance; /* points of coverage a change may lose */
    int max_cyclomatic;
    double max_duplication;
    int max_vulnerabilities;
    validator_no_base_t no_base;
} validator_rules_t;

/* The seed rules of the specification. */
void validator_rules_default(validator_rules_t *rules);

typedef enum { SEV_LOW = 0, SEV_MEDIUM, SEV_HIGH, SEV_CRITICAL, SEV__COUNT } validator_sev_t;

/* What the validator needs from a CI report, copied out of the Avro value. */
typedef struct validator_report {
    char change_id[VALIDATOR_ID_MAX];
    char repo[VALIDATOR_ID_MAX];
    char branch[VALIDATOR_ID_MAX];
    char base_branch[VALIDATOR_ID_MAX];
    char commit[VALIDATOR_ID_MAX];
    char agent_session_id[VALIDATOR_ID_MAX];
    bool has_agent_session;
    bool is_base;
    int optimization_type; /* enum index of OptimizationType */
    int64_t produced_at;
    int32_t unit_passed, unit_failed;
    double coverage;
    int64_t unit_duration_ms;
    int32_t integration_passed, integration_failed, integration_scenarios;
    bool has_e2e;
    int32_t e2e_passed, e2e_failed;
    int32_t cyclomatic, cognitive;
    double maintainability_index;
    double duplication_percent;
    int32_t duplication_blocks;
    int32_t vulnerabilities;
    int32_t vuln_by_sev[SEV__COUNT];
    int32_t files_changed, lines_added, lines_removed;
    double complexity_delta;
} validator_report_t;

typedef struct validator_reason {
    char code[40];
    char detail[96];
    char message[200];
} validator_reason_t;

typedef enum {
    VALIDATOR_PASSED = 0,
    VALIDATOR_REJECTED = 1,
    VALIDATOR_BASELINE_RECORDED = 2
} validator_verdict_kind_t;

typedef struct validator_verdict {
    validator_verdict_kind_t kind;
    size_t nreasons;
    validator_reason_t reasons[VALIDATOR_MAX_REASONS];
} validator_verdict_t;

/* Copy a CI report out of an Avro value of the ci_report schema. Returns 0, or FL_ESEMANTIC with
 * why filled (e.g. an id longer than VALIDATOR_ID_MAX-1 bytes). */
int validator_report_from_avro(avro_value_t *value, validator_report_t *report, char *why,
                               size_t whylen);

/* Semantic validity: ids present, counts and durations non-negative, every number finite,
 * coverage and duplication within 0..100. Returns 0 or FL_ESEMANTIC with why naming the field. */
int validator_check(const validator_report_t *report, char *why, size_t whylen);

/* Judge a change report. has_base/base_coverage: the base branch's last known coverage. */
void validator_judge(const validator_report_t *report, const validator_rules_t *rules,
                     bool has_base, double base_coverage, validator_verdict_t *verdict);

/* Fill a fresh validation_result value (of that schema) for report and verdict.
 * source_event_id: the input's ce_id; now_ms: validated_at. Returns 0 or FL_ESCHEMA. */
int validator_result_to_avro(const validator_report_t *report, const validator_verdict_t *verdict,
                             bool has_base, double base_coverage, const char *source_event_id,
                             int64_t now_ms, avro_value_t *out);

const char *validator_verdict_name(validator_verdict_kind_t kind);

#endif
