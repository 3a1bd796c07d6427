#!/usr/bin/env bash
# Topic checks at start-up, on the real broker (auto-creation off, like production): a worker
# whose topics are missing exits 1 naming the topic; with topics.create=true it creates them
# (inputs, outputs and the dead-letter topic) and works.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/validator_lib.sh"

fl_start_redis
fl_start_broker
vl_env
export FEEDLOOP_TOPIC_PREFIX="fresh$$."

rc=0
"$FL_VALIDATOR" --http.port=-1 >"$FL_TMP/missing.log" 2>&1 || rc=$?
fl_assert_eq "1" "$rc" "exit status with missing topics"
grep -q "topic fresh$$\.[a-z_]* does not exist" "$FL_TMP/missing.log" ||
  fl_fail "no clear error for missing topics: $(tail -3 "$FL_TMP/missing.log")"

vl_start --topics.create=true --topics.partitions=2
vl_emit ci_report "$FIX/ci_report.base.json"
out=$("$FL_CLI" tail validation_result --count 1 --timeout.ms 30000 --log.level=error)
fl_assert_eq "BASELINE_RECORDED" "$(jq -r .verdict <<<"$out")" "works on created topics"
for t in ci_report validation_result dead_letter; do
  "$FL_CLI" tail "fresh$$.$t" --timeout.ms 500 --log.level=error >/dev/null 2>"$FL_TMP/tail.err" ||
    fl_fail "topic fresh$$.$t was not created: $(cat "$FL_TMP/tail.err")"
done

echo "PASS test_topics ($FL_BROKER)"
