#!/usr/bin/env bash
# Start a single-node Apache Kafka (KRaft, broker+controller) for the tests, on free loopback
# ports, with its data, config and log under <workdir>.
#
#   tests/kafka/start.sh <workdir>
#
# Prints the bootstrap servers on stdout and writes them to <workdir>/bootstrap, the JVM's pid
# to <workdir>/pid and its log to <workdir>/server.log. Returns once the broker accepts
# connections and serves metadata, or fails (printing the log's tail) after
# FL_KAFKA_START_TIMEOUT seconds (default 60). Stop it with tests/kafka/stop.sh <workdir>.
#
# Environment: FL_KAFKA_JARS (default tests/kafka/jars, filled by fetch.sh when missing),
# FL_KAFKA_HEAP (default 384m), FL_KAFKA_ADMIN (a feedloop-kafka-admin binary: when set, the
# readiness check is a real Metadata request rather than the log line alone).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
workdir=${1:?usage: start.sh <workdir>}
jars=${FL_KAFKA_JARS:-$here/jars}
heap=${FL_KAFKA_HEAP:-384m}
timeout_s=${FL_KAFKA_START_TIMEOUT:-60}

log() { echo "kafka/start: $*" >&2; }

# A port nobody listens on now. Racy by nature (someone may take it before Kafka binds it);
# the random start keeps parallel test runs from colliding on the same first candidate.
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    log "no free port found"
    return 1
}

"$here/fetch.sh" "$jars" >&2

mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
if [[ -e $workdir/pid ]] && kill -0 "$(cat "$workdir/pid")" 2>/dev/null; then
    log "a broker already runs from $workdir (pid $(cat "$workdir/pid"))"
    exit 1
fi

port=$(free_port)
cport=$(free_port)
while [[ $cport == "$port" ]]; do cport=$(free_port); done
bootstrap="127.0.0.1:$port"

# Sized for one short-lived test broker: single replicas, few partitions for the internal
# topics (the 50 default partitions of __consumer_offsets slow the first group join), small
# segments, no cleaner (it reserves a large dedupe buffer the small heap can't spare), and no
# topic auto-creation so a test fails where a production cluster would.
cat >"$workdir/server.properties" <<PROPS
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=1@127.0.0.1:$cport
log.dirs=$workdir/logs
metadata.log.dir=$workdir/metadata
auto.create.topics.enable=false
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=1048576
log.retention.hours=1
log.cleaner.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
PROPS

# The cluster id is any 16 random bytes in URL-safe base64; made here rather than by
# `StorageTool random-uuid` to spare a JVM start.
cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')

jvm=(java -Xmx"$heap" -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
    -Djava.awt.headless=true -Dkafka.logs.dir="$workdir"
    -Dlog4j2.configurationFile="$here/log4j2.xml" -cp "$jars/*")

t0=$(date +%s.%N)
if ! "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$workdir/server.properties" \
    >"$workdir/format.log" 2>&1; then
    log "storage format failed:"
    cat "$workdir/format.log" >&2
    exit 1
fi

# setsid: the broker must not get the terminal's or the test's process-group signals; the
# harness stops it explicitly through stop.sh.
setsid "${jvm[@]}" kafka.Kafka "$workdir/server.properties" \
    >"$workdir/stdout.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$workdir/pid"

ready() {
    grep -q 'Kafka Server started' "$workdir/server.log" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
    if [[ -n ${FL_KAFKA_ADMIN:-} ]]; then
        "$FL_KAFKA_ADMIN" -b "$bootstrap" -t 2000 metadata >/dev/null 2>&1 || return 1
    fi
}

deadline=$((SECONDS + timeout_s))
until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
        log "broker exited during start-up; log tail:"
        tail -n 40 "$workdir/server.log" "$workdir/stdout.log" >&2 2>/dev/null || true
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        log "broker not ready after ${timeout_s}s; log tail:"
        tail -n 40 "$workdir/server.log" "$workdir/stdout.log" >&2 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.2
done

echo "$bootstrap" >"$workdir/bootstrap.tmp"
mv "$workdir/bootstrap.tmp" "$workdir/bootstrap"
log "ready at $bootstrap (pid $pid) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
echo "$bootstrap"
