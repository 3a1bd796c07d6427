#!/usr/bin/env bash
# The validator end to end on a real broker ($FL_BROKER: mock or kafka) and a private Redis:
#   1. happy path: a base-branch report records the base coverage (read back from Redis), a
#      change above it passes with base_coverage in the result;
#   2. a change below the base is rejected with COVERAGE_DROPPED 81.2<82.0 and every other
#      failing rule listed;
#   3. every class of bad input goes to the dead-letter topic with its reason and source
#      headers, while valid events keep flowing;
#   4. the same input delivered twice changes the state once and re-emits the same ce_id.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/validator_lib.sh"

fl_start_redis
fl_start_broker
vl_env
vl_start

# 1. Base report, then a change above the base.
vl_emit ci_report "$FIX/ci_report.base.json" --ce-id base-1
out=$(vl_outputs validation_result 1)
fl_assert_eq "BASELINE_RECORDED" "$(jq -r '.value.verdict' <<<"$out")" "base verdict"
fl_assert_eq "82" "$(vl_redis HGET "fl:validator:base:acme/checkout-api:main" coverage)" "base coverage in Redis"
fl_assert_eq "1" "$(vl_redis HGET "fl:validator:base:acme/checkout-api:main" updates)" "one state change"

vl_emit ci_report "$FIX/ci_report.json"
out=$(vl_outputs validation_result 2 | jq -c 'select(.value.change_id == "acme/checkout-api#482")')
fl_assert_eq "PASSED" "$(jq -r '.value.verdict' <<<"$out")" "passing change"
fl_assert_eq "82" "$(jq -r '.value.base_coverage' <<<"$out")" "base coverage in the result"
fl_assert_eq "acme/checkout-api#482" "$(jq -r '.key' <<<"$out")" "keyed by change id"
for h in ce_specversion ce_id ce_type ce_source ce_time content-type traceparent; do
  [[ "$(jq -r --arg h "$h" '.headers[$h] // ""' <<<"$out")" != "" ]] || fl_fail "header $h missing"
done
fl_assert_eq "io.feedloop.ValidationResult" "$(jq -r '.headers.ce_type' <<<"$out")" "ce_type"

# 2. A change below the base coverage, failing every rule.
vl_emit ci_report "$FIX/ci_report.fail.json"
out=$(vl_outputs validation_result 3 | jq -c 'select(.value.change_id == "acme/checkout-api#483")')
fl_assert_eq "REJECTED" "$(jq -r '.value.verdict' <<<"$out")" "failing change"
fl_assert_eq "UNIT_TESTS_FAILED 1>0,COVERAGE_DROPPED 81.2<82.0,CYCLOMATIC_TOO_HIGH 14>10,DUPLICATION_TOO_HIGH 6.5>5.0,VULNERABILITIES_FOUND 1>0 HIGH:1" \
  "$(jq -r '[.value.reasons[] | "\(.code) \(.detail)"] | join(",")' <<<"$out")" "every reason listed"

# 3. Bad input of every class, then a valid change that must still come through. Each bad
#    event has its own Kafka key, so its dead letter can be found by key.
declare -A want=(
  [bad-garbage]=UNDECODABLE [bad-bad-magic]=UNDECODABLE [bad-short]=UNDECODABLE
  [bad-truncated]=UNDECODABLE [bad-trailing]=UNDECODABLE
  [bad-unknown-fingerprint]=UNKNOWN_FINGERPRINT [bad-nan-coverage]=INVALID_EVENT
  [bad-wrong-type]=UNEXPECTED_TYPE
  [bad-coverage]=INVALID_EVENT [bad-negative]=INVALID_EVENT [missing-id]=INVALID_EVENT)
for kind in garbage bad-magic short truncated trailing unknown-fingerprint nan-coverage wrong-type; do
  "$FL_TESTKIT" payload "$kind" | "$FL_TESTKIT" produce "$FL_BOOTSTRAP" feedloop.ci_report "bad-$kind"
done
# Semantically invalid events that the schema accepts.
vl_emit ci_report <(vl_change bad-coverage '.tests.unit.coverage = 150.0')
vl_emit ci_report <(vl_change bad-negative '.tests.unit.failed = -1')
vl_emit ci_report <(vl_change "" '.branch = "missing-id"') --key-field branch
vl_emit ci_report <(vl_change after-bad-input '.')

total=${#want[@]}
dl=$(vl_outputs dead_letter "$total")
fl_assert_eq "$total" "$(wc -l <<<"$dl")" "dead letters"
for key in "${!want[@]}"; do
  got=$(jq -r --arg k "$key" 'select(.key == $k) | .headers.fl_dlq_reason_code' <<<"$dl" | head -1)
  fl_assert_eq "${want[$key]}" "$got" "dead-letter reason for '$key'"
done
line=$(jq -c 'select(.key == "bad-nan-coverage")' <<<"$dl")
fl_assert_eq "feedloop.ci_report" "$(jq -r '.headers.fl_dlq_source_topic' <<<"$line")" "source topic header"
[[ "$(jq -r '.headers.fl_dlq_source_offset' <<<"$line")" =~ ^[0-9]+$ ]] || fl_fail "source offset header"
[[ "$(jq -r '.headers.fl_dlq_source_partition' <<<"$line")" =~ ^[0-9]+$ ]] || fl_fail "source partition header"
grep -q "tests.unit.coverage" <<<"$(jq -r '.value.reason' <<<"$line")" || fl_fail "reason names the field"
[[ "$(jq -r '.value.payload | length' <<<"$line")" -gt 100 ]] || fl_fail "payload kept in the dead letter"
fl_wait_for 30 bash -c "\"$FL_CLI\" tail validation_result --timeout.ms 1000 --log.level=error | grep -q after-bad-input" ||
  fl_fail "a valid event after bad input was not processed"
fl_assert_eq "$total" "$(vl_metric 'feedloop_events_dead_lettered_total')" "dead letters counted in /metrics"

# 4. The same base report again, same ce_id: no second state change, the same output id.
vl_emit ci_report "$FIX/ci_report.base.json" --ce-id base-1
fl_wait_for 30 bash -c "[[ \$(\"$FL_CLI\" tail validation_result --timeout.ms 1000 --log.level=error | jq -r 'select(.verdict == \"BASELINE_RECORDED\") | .change_id' | wc -l) -ge 2 ]]" ||
  fl_fail "redelivered base report produced no output"
ids=$(vl_outputs validation_result 5 | jq -r 'select(.value.verdict == "BASELINE_RECORDED") | .headers.ce_id' | sort -u)
fl_assert_eq "1" "$(wc -l <<<"$ids")" "redelivery re-emits the same ce_id"
fl_assert_eq "1" "$(vl_redis HGET "fl:validator:base:acme/checkout-api:main" updates)" "still one state change"

# 5. State Redis refuses for good (a key of the wrong type): a dead letter, not an endless retry.
vl_redis SET "fl:validator:base:acme/wrongtype:main" "not-a-hash" >/dev/null
vl_emit ci_report <(vl_change wrongtype-1 '.repo = "acme/wrongtype"')
vl_emit ci_report <(vl_change after-wrongtype '.')
dl=$(vl_outputs dead_letter $((total + 1)))
fl_assert_eq "STATE_ERROR" "$(jq -r 'select(.key == "wrongtype-1") | .headers.fl_dlq_reason_code' <<<"$dl")" "wrong-type state"
fl_wait_for 30 bash -c "\"$FL_CLI\" tail validation_result --timeout.ms 1000 --log.level=error | grep -q after-wrongtype" ||
  fl_fail "events after a state error were not processed"
vl_ready || fl_fail "not ready after a state error"

echo "PASS test_validator_flow ($FL_BROKER)"
