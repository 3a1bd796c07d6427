#!/usr/bin/env bash
# Stop the broker that tests/kafka/start.sh started in <workdir> and remove <workdir>.
#
#   tests/kafka/stop.sh <workdir>
#
# SIGTERM (a controlled shutdown), then SIGKILL after FL_KAFKA_STOP_TIMEOUT seconds (default
# 15). Safe to call twice or on a workdir whose broker never started.
set -uo pipefail

workdir=${1:?usage: stop.sh <workdir>}
timeout_s=${FL_KAFKA_STOP_TIMEOUT:-15}

[[ -d $workdir ]] || exit 0
if [[ -s $workdir/pid ]]; then
    pid=$(cat "$workdir/pid")
    # Only signal our own broker: a stale pid file may name a recycled pid.
    if kill -0 "$pid" 2>/dev/null && grep -qa 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout_s * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "kafka/stop: pid $pid still up after ${timeout_s}s, killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
    fi
fi
rm -rf "$workdir"
