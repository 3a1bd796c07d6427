# Shared by the validator integration tests: start/stop the real validator binary, emit, read
# back outputs. Sourced after lib.sh (which provides the broker, Redis and clean-up).

FL_CLI=$(fl_bin feedloop)
FL_TESTKIT=$(fl_bin fl-testkit)
FL_VALIDATOR=$(fl_bin feedloop-validator)
FL_TMP=$(fl_tmpdir)
FIX="$FL_SOURCE_DIR/tests/fixtures/events"
export FL_SOURCE_DIR

# Everything a worker or the CLI needs to find the stack, in the workers' own config keys.
vl_env() {
  export FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS="$FL_BOOTSTRAP"
  export FEEDLOOP_REDIS_PORT="$FL_REDIS_PORT"
  export FEEDLOOP_HTTP_HOST=127.0.0.1
  export FEEDLOOP_LOG_LEVEL=${FEEDLOOP_LOG_LEVEL:-info}
  export FEEDLOOP_GROUP_ID="it-validator-$$"
  # Short deadlines so outages are noticed quickly in tests.
  export FEEDLOOP_REDIS_TIMEOUT_MS=500
  export FEEDLOOP_RETRY_BACKOFF_MS=100
  export FEEDLOOP_RETRY_BACKOFF_MAX_MS=1000
  export FEEDLOOP_KAFKA_MESSAGE_TIMEOUT_MS=${FEEDLOOP_KAFKA_MESSAGE_TIMEOUT_MS:-10000}
}

VL_PID=""
VL_HTTP=""
VL_RUNS=0
# vl_start [extra args...]: start the validator, wait until /readyz answers 200.
vl_start() {
  VL_RUNS=$((VL_RUNS + 1))
  # Port 0: the worker binds an ephemeral port (no race with other tests) and logs it.
  FEEDLOOP_HTTP_PORT=0 fl_spawn "validator.$VL_RUNS" "$FL_VALIDATOR" "$@"
  VL_PID=$FL_LAST_PID
  local log="$FL_TMP/validator.$VL_RUNS.log"
  fl_wait_for 60 grep -q "serving /healthz" "$log" || { cat "$log" >&2; fl_fail "validator did not start"; }
  VL_HTTP=$(sed -n 's/.*serving \/healthz \/readyz \/metrics on [0-9.]*:\([0-9]*\).*/\1/p' "$log" | tail -1)
  fl_wait_for 60 vl_ready || { cat "$FL_TMP/validator.$VL_RUNS.log" >&2; fl_fail "validator never became ready"; }
}

vl_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$VL_HTTP/readyz")" == 200 ]]; }
vl_not_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$VL_HTTP/readyz")" == 503 ]]; }
# vl_metric <name>: the sum of a metric over all its label sets
vl_metric() { curl -s "http://127.0.0.1:$VL_HTTP/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'; }

vl_emit() { "$FL_CLI" emit "$@" --log.level=warn; }

# vl_outputs <type> <n> [timeout_s]: wait until the topic holds at least n events, print them all
# as JSON lines with headers.
vl_outputs() {
  local type=$1 n=$2 t=${3:-60}
  "$FL_CLI" tail "$type" --headers --count "$n" --timeout.ms $((t * 1000)) --log.level=error
}

vl_count() { "$FL_CLI" tail "$1" --timeout.ms 1500 --log.level=error | wc -l; }

vl_committed() { "$FL_TESTKIT" committed "$FL_BOOTSTRAP" "$FEEDLOOP_GROUP_ID" feedloop.ci_report; }

# vl_change <change_id> [jq filter]: a change report derived from the fixture, one JSON line.
vl_change() { jq -c --arg id "$1" ".change_id = \$id | ${2:-.}" "$FIX/ci_report.json"; }

vl_redis() { redis-cli -p "$FL_REDIS_PORT" "$@"; }

# Redis killed outright, then a new one on the same port (the worker's configured address).
fl_restart_redis_begin() {
  kill -KILL "$FL_REDIS_PID" 2>/dev/null || true
  wait "$FL_REDIS_PID" 2>/dev/null || true
}
fl_restart_redis_end() {
  local dir
  dir=$(fl_tmpdir "redis-again-$FL_REDIS_PORT")
  fl_spawn "redis-again" redis-server --bind 127.0.0.1 --port "$FL_REDIS_PORT" --save '' \
    --appendonly no --dir "$dir"
  FL_REDIS_PID=$FL_LAST_PID
  fl_wait_for 10 bash -c "[[ \$(redis-cli -p $FL_REDIS_PORT PING 2>/dev/null) == PONG ]]" ||
    fl_fail "redis did not restart on port $FL_REDIS_PORT"
}
