# Shared by the benchmarker integration tests: start/stop the real benchmarker binary and build
# bench reports. Sourced after lib.sh and validator_lib.sh (vl_env, vl_emit, vl_outputs, $FIX).

FL_BENCHMARKER=$(fl_bin feedloop-benchmarker)
BM_GROUP="it-benchmarker-$$"

BM_PID=""
BM_HTTP=""
BM_RUNS=0
# bm_start [extra args...]: start the benchmarker in its own consumer group with its own HTTP
# port and log ($FL_TMP/benchmarker.<run>.log), wait until /readyz answers 200.
bm_start() {
  BM_RUNS=$((BM_RUNS + 1))
  BM_HTTP=$(fl_free_port)
  FEEDLOOP_HTTP_PORT=$BM_HTTP fl_spawn "benchmarker.$BM_RUNS" "$FL_BENCHMARKER" \
    --group.id "$BM_GROUP" "$@"
  BM_PID=$FL_LAST_PID
  fl_wait_for 60 bm_ready || { cat "$FL_TMP/benchmarker.$BM_RUNS.log" >&2; fl_fail "benchmarker never became ready"; }
}

# bm_stop: SIGTERM, and the worker must drain and exit 0.
bm_stop() {
  local rc=0
  kill -TERM "$BM_PID"
  wait "$BM_PID" || rc=$?
  _fl_unregister "$BM_PID"
  fl_assert_eq "0" "$rc" "benchmarker exit status after SIGTERM"
}

bm_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BM_HTTP/readyz")" == 200 ]]; }
bm_log() { cat "$FL_TMP"/benchmarker.*.log; }
# bm_metric <name>: the sum of a metric over all its label sets
bm_metric() { curl -s "http://127.0.0.1:$BM_HTTP/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'; }

# bm_samples <n> <mult> <seed>: n fixed, low-noise samples around 100 (spread 3 %), times mult.
# Deterministic: a different seed permutes the same values.
bm_samples() {
  jq -nc --argjson n "$1" --argjson k "$2" --argjson s "$3" \
    '[range($n) | (100 + ((. * $s + 7) % 11) * 0.3) * $k]'
}

# bm_report <change_id> <commit> [jq filter]: a bench report derived from the fixture, one JSON
# line: 50 samples a side of the two metrics that carry a baseline, no baseline for
# tool_server.call_ms (its baseline is the base-branch history).
bm_report() {
  jq -c --arg id "$1" --arg commit "$2" \
    --argjson b "$(bm_samples 50 1 3)" --argjson c "$(bm_samples 50 1 5)" \
    --argjson tb "$(bm_samples 50 15 3)" --argjson tc "$(bm_samples 50 15 5)" \
    --argjson tool "$(bm_samples 30 0.38 7)" \
    ".change_id = \$id | .commit = \$commit
     | .metrics[0].baseline = \$b | .metrics[0].candidate = \$c
     | .metrics[1].baseline = \$tb | .metrics[1].candidate = \$tc
     | .metrics[2].candidate = \$tool
     | ${3:-.}" "$FIX/bench_report.json"
}

# bm_ci <change_id> <commit> [jq filter]: a passing CI report for the same change and commit.
bm_ci() { jq -c --arg id "$1" --arg commit "$2" ".change_id = \$id | .commit = \$commit | ${3:-.}" "$FIX/ci_report.json"; }

bm_redis() { redis-cli -p "$FL_REDIS_PORT" "$@"; }
