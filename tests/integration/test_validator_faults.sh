#!/usr/bin/env bash
# The validator under failure, on a real broker ($FL_BROKER) and a private Redis:
#   A. Redis frozen (SIGSTOP: every command hits its deadline): not ready, nothing committed,
#      no output; thawed: ready again, every event processed.
#   B. Redis killed and restarted on the same port: the same.
#   C. SIGTERM while events are in flight: exit 0 within the drain bound; after a restart every
#      event has its output.
#   D. SIGKILL while events are in flight: after a restart no event is lost.
#   E. (mock) produce requests failing at the broker: the worker pauses, rewinds, retries and
#      loses nothing; (mock) the broker down: not ready; back up: ready and consuming.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/validator_lib.sh"

fl_start_redis
fl_start_broker
vl_env
vl_start

# changes <prefix> <n>: n change reports as JSON lines
changes() { for i in $(seq "$2"); do vl_change "$1-$i"; done; }
# seen <prefix>: distinct change ids with that prefix among the validation results
seen() { "$FL_CLI" tail validation_result --timeout.ms 1500 --log.level=error | jq -r '.change_id' | grep -c "^$1-" | tr -d ' ' || true; }
wait_seen() { fl_wait_for "${3:-60}" bash -c "[[ \$(\"$FL_CLI\" tail validation_result --timeout.ms 1500 --log.level=error | jq -r '.change_id' | grep -c '^$1-') -ge $2 ]]"; }

vl_emit ci_report "$FIX/ci_report.base.json"
vl_outputs validation_result 1 >/dev/null
fl_wait_for 30 bash -c "[[ \$(\"$FL_TESTKIT\" committed \"$FL_BOOTSTRAP\" \"$FEEDLOOP_GROUP_ID\" feedloop.ci_report) -ge 1 ]]" ||
  fl_fail "first offset never committed"
produced=1

# A. Redis frozen.
kill -STOP "$FL_REDIS_PID"
changes frozen 5 | vl_emit ci_report -
produced=$((produced + 5))
fl_wait_for 20 vl_not_ready || fl_fail "still ready with Redis frozen"
sleep 3
fl_assert_eq "0" "$(seen frozen)" "no output while Redis is frozen"
fl_assert_eq "1" "$(vl_committed)" "nothing committed while Redis is frozen"
kill -CONT "$FL_REDIS_PID"
fl_wait_for 30 vl_ready || fl_fail "not ready after Redis came back"
wait_seen frozen 5 || fl_fail "events lost across the Redis freeze: $(seen frozen)/5"
fl_wait_for 30 bash -c "[[ \$(\"$FL_TESTKIT\" committed \"$FL_BOOTSTRAP\" \"$FEEDLOOP_GROUP_ID\" feedloop.ci_report) -ge $produced ]]" ||
  fl_fail "offsets not committed after recovery"
[[ "$(vl_metric feedloop_redis_errors_total)" -ge 1 ]] || fl_fail "redis errors not counted"

# B. Redis killed and restarted on the same port.
fl_restart_redis_begin
changes stopped 5 | vl_emit ci_report -
produced=$((produced + 5))
fl_wait_for 20 vl_not_ready || fl_fail "still ready with Redis stopped"
sleep 2
fl_assert_eq "0" "$(seen stopped)" "no output while Redis is stopped"
fl_assert_eq "$((produced - 5))" "$(vl_committed)" "nothing committed while Redis is stopped"
fl_restart_redis_end
fl_wait_for 30 vl_ready || fl_fail "not ready after Redis restarted"
wait_seen stopped 5 || fl_fail "events lost across the Redis restart: $(seen stopped)/5"

# C. SIGTERM with events in flight.
changes drain 200 | vl_emit ci_report -
produced=$((produced + 200))
sleep 0.3
start=$(date +%s)
kill -TERM "$VL_PID"
rc=0; wait "$VL_PID" || rc=$?
fl_assert_eq "0" "$rc" "exit status after SIGTERM"
(( $(date +%s) - start <= 15 )) || fl_fail "drain took longer than 15 s"
grep -q "drained" "$FL_TMP/validator.$VL_RUNS.log" || fl_fail "no drain logged"
vl_start
wait_seen drain 200 || fl_fail "events lost across SIGTERM: $(seen drain)/200"

# C2. SIGTERM while Redis hangs under a long deadline: the drain bound (1 s) cuts the in-flight
#     jobs short; the worker still exits 0, and their offsets are not committed, so they are
#     processed after the restart.
kill -TERM "$VL_PID"; wait "$VL_PID" || true
vl_start --redis.timeout.ms=30000 --shutdown.timeout.ms=1000
kill -STOP "$FL_REDIS_PID"
changes hang 5 | vl_emit ci_report -
produced=$((produced + 5))
fl_wait_for 30 bash -c "[[ \$(curl -s http://127.0.0.1:$VL_HTTP/metrics | awk '/^feedloop_events_in_flight / {print \$2}') -ge 1 ]]" ||
  fl_fail "no events in flight while Redis hangs"
start=$(date +%s)
kill -TERM "$VL_PID"
rc=0; wait "$VL_PID" || rc=$?
fl_assert_eq "0" "$rc" "exit status after a forced drain"
(( $(date +%s) - start <= 10 )) || fl_fail "forced drain took longer than 10 s"
grep -q "still in flight" "$FL_TMP/validator.$VL_RUNS.log" || fl_fail "forced drain not logged"
kill -CONT "$FL_REDIS_PID"
vl_start
wait_seen hang 5 || fl_fail "events lost across a forced drain: $(seen hang)/5"

# D. SIGKILL with events in flight.
changes killed 200 | vl_emit ci_report -
produced=$((produced + 200))
sleep 0.3
kill -KILL "$VL_PID"
wait "$VL_PID" 2>/dev/null || true
vl_start
wait_seen killed 200 90 || fl_fail "events lost across SIGKILL: $(seen killed)/200"

# E. Broker faults (the mock injects them; a real broker cannot be told to).
if [[ "$FL_BROKER" == mock ]]; then
  # Injected errors hit the next Produce requests of any client, so the input goes in first,
  # with the validator stopped, and the errors are armed just before it starts again.
  kill -TERM "$VL_PID"; wait "$VL_PID" || true
  changes prodfail 5 | vl_emit ci_report -
  # MSG_SIZE_TOO_LARGE is not retried by librdkafka: the deliveries fail for real.
  fl_broker_ctl "request-error Produce MSG_SIZE_TOO_LARGE 3"
  vl_start
  wait_seen prodfail 5 90 || fl_fail "events lost across produce failures: $(seen prodfail)/5"
  [[ "$(vl_metric feedloop_degraded_total)" -ge 1 ]] || fl_fail "produce failures did not pause the worker"

  fl_broker_ctl "broker-down 1"
  fl_wait_for 30 vl_not_ready || fl_fail "still ready with the broker down"
  fl_broker_ctl "broker-up 1"
  fl_wait_for 60 vl_ready || fl_fail "not ready after the broker came back"
  changes brokerup 5 | vl_emit ci_report -
  wait_seen brokerup 5 90 || fl_fail "not consuming after the broker came back"
fi

echo "PASS test_validator_faults ($FL_BROKER)"
