#!/usr/bin/env bash
# The harness itself works: a private redis-server answers, the broker of $FL_BROKER (mock or
# kafka) carries a produce / consume / commit / resume round trip on a loop topic, and on the
# mock the same round trip survives a broker going down and coming back, and injected request
# errors. Everything is gone afterwards (lib.sh's EXIT trap).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

roundtrip=$(fl_bin kafka_roundtrip) || fl_fail "kafka_roundtrip not built"

fl_start_redis
fl_assert_eq PONG "$(redis-cli -h 127.0.0.1 -p "$FL_REDIS_PORT" PING)" "redis PING"
redis-cli -h 127.0.0.1 -p "$FL_REDIS_PORT" SET fl:smoke 1 >/dev/null
fl_assert_eq 1 "$(redis-cli -h 127.0.0.1 -p "$FL_REDIS_PORT" GET fl:smoke)" "redis GET"

fl_start_broker
for t in feedloop.ci_report feedloop.validation_result feedloop.dead_letter; do
    [[ " $FL_LOOP_TOPICS " == *" $t "* ]] || fl_fail "FL_LOOP_TOPICS lacks $t"
done

fl_log "round trip on $FL_BROKER"
"$roundtrip" -b "$FL_BOOTSTRAP" -t feedloop.ci_report -n 200 -T 60 ||
    fl_fail "round trip on $FL_BROKER failed"

if [[ $FL_BROKER == mock ]]; then
    # A broker down mid-run: the round trip must stall, then complete once it is back.
    fl_broker_ctl "broker-down 1" || fl_fail "broker-down refused"
    "$roundtrip" -b "$FL_BOOTSTRAP" -t feedloop.ci_report -n 50 -T 60 \
        >"$(fl_tmpdir)/rt-down.log" 2>&1 &
    rt_pid=$!
    sleep 2
    kill -0 "$rt_pid" 2>/dev/null || fl_fail "round trip finished while the broker was down"
    fl_broker_ctl "broker-up 1" || fl_fail "broker-up refused"
    wait "$rt_pid" || {
        cat "$(fl_tmpdir)/rt-down.log" >&2
        fl_fail "round trip did not recover after broker-up"
    }
    fl_log "round trip recovered after broker-down/up"

    # Retriable produce errors: librdkafka retries, nothing is lost.
    fl_broker_ctl "request-error Produce NOT_ENOUGH_REPLICAS 3" || fl_fail "request-error refused"
    "$roundtrip" -b "$FL_BOOTSTRAP" -t feedloop.ci_report -n 50 -T 60 ||
        fl_fail "round trip failed with injected produce errors"

    # Bad commands are answered with an error and change nothing.
    if fl_broker_ctl "broker-down 99"; then fl_fail "broker-down 99 accepted"; fi
    if fl_broker_ctl "no-such-command"; then fl_fail "unknown command accepted"; fi
    fl_broker_ctl "topic-create feedloop.smoke_extra 2" || fl_fail "topic-create refused"
else
    fl_broker_ctl "broker-down 1" # a skip on real Kafka, must not fail
fi

fl_stop_broker
fl_stop_redis
echo "harness smoke ($FL_BROKER): 1 passed, 0 failed"
