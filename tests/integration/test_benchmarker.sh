#!/usr/bin/env bash
# The validator and the benchmarker together, end to end, on a real broker ($FL_BROKER: mock or
# kafka) and a private Redis, with the real binaries:
#   0. base-branch reports: the CI one records the base coverage, the bench one the base history
#      of every metric (read back from Redis); the same bench report again changes nothing;
#   A. bench report first, then the CI report: a review request carrying both results, the
#      history-based metric judged against the base history;
#   B. CI report first, the benchmarker restarted (SIGTERM, drain, start) between the halves, then
#      the bench report: a review request, the pending half having survived in Redis;
#   C. a passing CI report and a ~30 % p95 slowdown: a FAILED benchmark result with a REGRESSION
#      verdict and its numbers, the pair closed, no review request;
#   D. bad bench reports (a negative sample, a duplicate metric) go to the dead-letter topic with
#      their reason;
#   E. the validation result that completed A's pair delivered again (same ce_id): the same
#      review request again, with the same ce_id, and nothing new for anyone else.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/validator_lib.sh"
source "$(dirname "$0")/benchmarker_lib.sh"

fl_start_redis
fl_start_broker
vl_env
vl_start
bm_start

REPO=acme/checkout-api
LAT=api.checkout.latency_p95
TOOL=tool_server.call_ms
HIST="fl:benchmarker:history:$REPO:main"
commit() { printf '%040d' "$1"; } # a full-length, distinct sha per change

# tail_select <type> <jq condition> [timeout_s]: wait until the topic holds an event whose
# {key, headers, value} matches, print the first such one. Reads the whole topic each time, as a
# restart may replay (same ids) and partitions interleave: no count of events is assumed.
tail_select() {
  local type=$1 cond=$2 deadline=$((SECONDS + ${3:-90})) out
  while :; do
    out=$("$FL_CLI" tail "$type" --headers --timeout.ms 1000 --log.level=error | jq -c -s "map(select($cond)) | .[0] // empty")
    [[ -n $out ]] && { echo "$out"; return 0; }
    ((SECONDS < deadline)) || { fl_log "no $type with $cond"; bm_log | tail -n 20 >&2; return 1; }
    sleep 0.2
  done
}

# 0. Base reports.
vl_emit ci_report "$FIX/ci_report.base.json" --ce-id ci-base-1
# The base coverage must be recorded before any change report: each is keyed by its own change
# id, so on another partition, and could otherwise be judged first (REJECTED NO_BASE_COVERAGE).
fl_wait_for 60 bash -c "[[ \$(redis-cli -p $FL_REDIS_PORT HGET fl:validator:base:$REPO:main coverage) == 82 ]]" ||
  fl_fail "base CI report not recorded by the validator"
jq -c --argjson tool "$(bm_samples 50 0.38 3)" \
  '.change_id = "acme/checkout-api@main" | .branch = "main" | .agent_session_id = null
   | .is_base_report = true | .metrics[2].candidate = $tool' "$FIX/bench_report.json" \
  >"$FL_TMP/bench.base.json"
vl_emit bench_report "$FL_TMP/bench.base.json" --ce-id bench-base-1
fl_wait_for 60 bash -c "[[ \$(redis-cli -p $FL_REDIS_PORT HGET '$HIST:$TOOL' updates) == 1 ]]" ||
  { bm_log >&2; fl_fail "base bench report not recorded as history"; }
fl_assert_eq "50" "$(bm_redis HGET "$HIST:$TOOL" samples | tr ',' '\n' | wc -l)" "history samples of $TOOL"
fl_assert_eq "ms" "$(bm_redis HGET "$HIST:$TOOL" unit)" "history unit"
fl_assert_eq "LOWER_IS_BETTER" "$(bm_redis HGET "$HIST:$TOOL" direction)" "history direction"
fl_assert_eq "bench-base-1" "$(bm_redis HGET "$HIST:$TOOL" last_event_id)" "history last event"
fl_assert_eq "30" "$(bm_redis HGET "$HIST:$LAT" samples | tr ',' '\n' | wc -l)" "history samples of $LAT"
ttl=$(bm_redis TTL "$HIST:$TOOL")
((ttl > 7776000 - 600)) || fl_fail "history TTL $ttl, want benchmarker.history.ttl.s"
vl_emit bench_report "$FL_TMP/bench.base.json" --ce-id bench-base-1
fl_wait_for 60 bash -c "grep -q 'base report bench-base-1 .* already applied' '$FL_TMP'/benchmarker.*.log" ||
  fl_fail "redelivered base bench report not recognised"
fl_assert_eq "1" "$(bm_redis HGET "$HIST:$TOOL" updates)" "history written once"

# A. Bench report first, then the CI report.
CA="acme/checkout-api#A"
vl_emit bench_report <(bm_report "$CA" "$(commit 1)") --ce-id bench-A
res=$(tail_select benchmark_result ".value.change_id == \"$CA\"")
fl_assert_eq "PASSED" "$(jq -r .value.verdict <<<"$res")" "A benchmark verdict"
fl_assert_eq "HISTORY" "$(jq -r --arg m "$TOOL" '.value.metrics[] | select(.name == $m) | .baseline_source' <<<"$res")" \
  "A: $TOOL judged against the base history"
fl_assert_eq "50" "$(jq -r --arg m "$TOOL" '.value.metrics[] | select(.name == $m) | .baseline_count' <<<"$res")" \
  "A: history samples used"
fl_assert_eq "bench-A" "$(jq -r .value.source_event_id <<<"$res")" "A: source_event_id"
fl_assert_eq "io.feedloop.BenchmarkResult" "$(jq -r .headers.ce_type <<<"$res")" "ce_type"
fl_assert_eq "$CA" "$(jq -r .key <<<"$res")" "keyed by change id"
fl_wait_for 30 bash -c "[[ -n \$(redis-cli -p $FL_REDIS_PORT HGET 'fl:benchmarker:pending:$CA:$(commit 1)' benchmark) ]]" ||
  fl_fail "A: bench half not pending in Redis"
ttl=$(bm_redis TTL "fl:benchmarker:pending:$CA:$(commit 1)")
((ttl > 604800 - 600)) || fl_fail "pending TTL $ttl, want benchmarker.join.ttl.s"

vl_emit ci_report <(bm_ci "$CA" "$(commit 1)")
rr=$(tail_select review_request ".value.change_id == \"$CA\"")
[[ -n $rr ]] || { bm_log >&2; fl_fail "no review request for A"; }
val=$(tail_select validation_result ".value.change_id == \"$CA\"")
fl_assert_eq "PASSED" "$(jq -r .value.validation.verdict <<<"$rr")" "A: validation in the review request"
fl_assert_eq "PASSED" "$(jq -r .value.benchmark.verdict <<<"$rr")" "A: benchmark in the review request"
fl_assert_eq "3" "$(jq -r '.value.benchmark.metrics | length' <<<"$rr")" "A: every metric in the review request"
fl_assert_eq "$(commit 1)" "$(jq -r .value.commit <<<"$rr")" "A: commit"
fl_assert_eq "PERFORMANCE" "$(jq -r .value.optimization_type <<<"$rr")" "A: optimization type"
fl_assert_eq "82" "$(jq -r .value.validation.base_coverage <<<"$rr")" "A: base coverage"
fl_assert_eq "$(jq -r .headers.ce_id <<<"$val")" "$(jq -r .value.source_event_id <<<"$rr")" \
  "A: completed by the validation result"
fl_assert_eq "bench-A" "$(jq -r .value.benchmark.source_event_id <<<"$rr")" "A: benchmark source"
fl_assert_eq "io.feedloop.ReviewRequest" "$(jq -r .headers.ce_type <<<"$rr")" "review ce_type"
fl_assert_eq "0" "$(bm_redis EXISTS "fl:benchmarker:pending:$CA:$(commit 1)")" "A: pending half dropped"
fl_assert_eq "REVIEW" "$(bm_redis HGET "fl:benchmarker:closed:$CA:$(commit 1)" action)" "A: pair closed"

# B. CI report first, a restart of the benchmarker, then the bench report.
CB="acme/checkout-api#B"
vl_emit ci_report <(bm_ci "$CB" "$(commit 2)")
fl_wait_for 60 bash -c "[[ -n \$(redis-cli -p $FL_REDIS_PORT HGET 'fl:benchmarker:pending:$CB:$(commit 2)' validation) ]]" ||
  { bm_log >&2; fl_fail "B: validation half not pending in Redis"; }
fl_log "restarting the benchmarker between B's halves"
bm_stop
grep -q "drained" "$FL_TMP/benchmarker.$BM_RUNS.log" || fl_fail "no drain logged"
bm_start
vl_emit bench_report <(bm_report "$CB" "$(commit 2)") --ce-id bench-B
rr=$(tail_select review_request ".value.change_id == \"$CB\"")
[[ -n $rr ]] || { bm_log >&2; fl_fail "no review request for B"; }
res=$(tail_select benchmark_result ".value.change_id == \"$CB\"")
fl_assert_eq "PASSED/PASSED" "$(jq -r .value.validation.verdict <<<"$rr")/$(jq -r .value.benchmark.verdict <<<"$rr")" \
  "B: both halves in the review request"
fl_assert_eq "$(jq -r .headers.ce_id <<<"$res")" "$(jq -r .value.source_event_id <<<"$rr")" \
  "B: completed by the benchmark result"
fl_assert_eq "$(commit 2)" "$(jq -r .value.commit <<<"$rr")" "B: commit"

# C. A ~30 % p95 slowdown (candidate = 1.3 x baseline, 50 fixed samples a side).
CC="acme/checkout-api#C"
vl_emit ci_report <(bm_ci "$CC" "$(commit 3)")
vl_emit bench_report <(bm_report "$CC" "$(commit 3)" \
  ".metrics[0].candidate = [.metrics[0].baseline[] * 1.3]") --ce-id bench-C
res=$(tail_select benchmark_result ".value.change_id == \"$CC\"")
fl_log "C: $(jq -c --arg m "$LAT" '.value.metrics[] | select(.name == $m) | {verdict, reason_code, baseline_p95, candidate_p95, p95_change_percent, shift_worsening_low_percent, p_value}' <<<"$res")"
fl_assert_eq "FAILED" "$(jq -r .value.verdict <<<"$res")" "C: benchmark verdict"
fl_assert_eq "false" "$(jq -r .value.passed <<<"$res")" "C: passed"
fl_assert_eq "[\"$LAT\"]" "$(jq -c .value.regressions <<<"$res")" "C: regressions"
m=$(jq -c --arg m "$LAT" '.value.metrics[] | select(.name == $m)' <<<"$res")
fl_assert_eq "REGRESSION" "$(jq -r .verdict <<<"$m")" "C: metric verdict"
fl_assert_eq "P95_REGRESSION" "$(jq -r .reason_code <<<"$m")" "C: reason code"
jq -e '(.p95_change_percent - 30 | fabs) < 1e-6 and (.p95_worsening_percent - 30 | fabs) < 1e-6' \
  <<<"$m" >/dev/null || fl_fail "C: p95 change $(jq .p95_change_percent <<<"$m"), want +30 %"
jq -e '(.candidate_p95 / .baseline_p95 - 1.3 | fabs) < 1e-9' <<<"$m" >/dev/null ||
  fl_fail "C: candidate p95 $(jq .candidate_p95 <<<"$m") is not 1.3 x baseline p95"
jq -e '.baseline_p95 > 100 and .baseline_p95 < 104' <<<"$m" >/dev/null || fl_fail "C: baseline p95 $(jq .baseline_p95 <<<"$m")"
jq -e '.p_value < 0.001 and .p_value_two_sided < 0.001' <<<"$m" >/dev/null || fl_fail "C: p-value $(jq .p_value <<<"$m")"
jq -e '.shift_worsening_low_percent > 5' <<<"$m" >/dev/null || fl_fail "C: interval not above the threshold"
jq -e '[.value.reasons[] | select(.code == "P95_REGRESSION")] | length == 1' <<<"$res" >/dev/null ||
  fl_fail "C: reason P95_REGRESSION missing"
fl_wait_for 60 bash -c "[[ \$(redis-cli -p $FL_REDIS_PORT HGET 'fl:benchmarker:closed:$CC:$(commit 3)' action) == CLOSE ]]" ||
  { bm_log >&2; fl_fail "C: pair not closed"; }
# Both halves of C have been handled (the pair is closed): had a review request been emitted, it
# would have been produced before that.
tail_select validation_result ".value.change_id == \"$CC\"" >/dev/null
fl_assert_eq "0" "$(vl_count review_request | grep -c "$CC" || true)" "C: no review request"

# D. Bad bench reports.
vl_emit bench_report <(bm_report "bad-negative" "$(commit 4)" '.metrics[0].candidate[3] = -1.5')
vl_emit bench_report <(bm_report "bad-duplicate" "$(commit 5)" '.metrics[1].name = .metrics[0].name')
dl=$(vl_outputs dead_letter 2 90)
for k in bad-negative:NEGATIVE_SAMPLE bad-duplicate:DUPLICATE_METRIC; do
  line=$(jq -c --arg k "${k%%:*}" 'select(.key == $k)' <<<"$dl")
  fl_assert_eq "INVALID_EVENT" "$(jq -r .headers.fl_dlq_reason_code <<<"$line")" "dead letter code of ${k%%:*}"
  fl_assert_eq "${k#*:}" "$(jq -r '.value.reason | split(" ")[0]' <<<"$line")" "dead letter reason of ${k%%:*}"
  fl_assert_eq "feedloop.bench_report" "$(jq -r .headers.fl_dlq_source_topic <<<"$line")" "dead letter source"
  fl_assert_eq "benchmarker" "$(jq -r .headers.fl_dlq_worker <<<"$line")" "dead letter worker"
done
grep -q "NEGATIVE_SAMPLE $LAT candidate\[3\]=-1.5" <<<"$(jq -r 'select(.key == "bad-negative") | .value.reason' <<<"$dl")" ||
  fl_fail "the reason names the sample"

# E. A's completing validation result delivered again, with its own ce_id. (A restart may
#    already have replayed inputs whose offsets were not committed yet: count, don't assume.)
rr_of() { "$FL_CLI" tail review_request --headers --timeout.ms 1500 --log.level=error | jq -c --arg c "$1" 'select(.value.change_id == $c)'; }
n_a=$(rr_of "$CA" | wc -l)
val=$(tail_select validation_result ".value.change_id == \"$CA\"")
vl_emit validation_result <(jq -c .value <<<"$val") --ce-id "$(jq -r .headers.ce_id <<<"$val")"
fl_wait_for 60 bash -c "(( \$(\"$FL_CLI\" tail review_request --timeout.ms 1500 --log.level=error | grep -c '$CA') > $n_a ))" ||
  { bm_log >&2; fl_fail "the redelivered validation result re-emitted nothing"; }
fl_assert_eq "1" "$(rr_of "$CA" | jq -r .headers.ce_id | sort -u | wc -l)" "A's review request re-emitted with the same ce_id"
fl_assert_eq "1" "$(rr_of "$CB" | jq -r .headers.ce_id | sort -u | wc -l)" "one review request id for B"
fl_assert_eq "0" "$(rr_of "$CC" | wc -l)" "still no review request for C"
((n = $(bm_metric feedloop_benchmarker_review_requests_total), n >= 2)) ||
  fl_fail "review requests counted in /metrics: $n, want >= 2 (B, A again)"

echo "PASS test_benchmarker ($FL_BROKER)"
