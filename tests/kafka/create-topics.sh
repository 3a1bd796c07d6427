#!/usr/bin/env bash
# Create topics on a real Kafka broker (auto-creation is off there, as in production).
#
#   tests/kafka/create-topics.sh <bootstrap> <partitions> <topic...>
#
# Existing topics are left as they are. Returns once every partition of every topic has a
# leader. Uses feedloop-kafka-admin (librdkafka's CreateTopics): $FL_KAFKA_ADMIN, else
# $FL_BIN_DIR/tools/feedloop-kafka-admin. Kafka's own TopicCommand would need the kafka-tools
# jars and a JVM start per topic (~1.2 s each here, against ~0.1 s for all 23 loop topics).
set -euo pipefail

if (($# < 3)); then
    echo "usage: create-topics.sh <bootstrap> <partitions> <topic...>" >&2
    exit 2
fi
bootstrap=$1
partitions=$2
shift 2

admin=${FL_KAFKA_ADMIN:-${FL_BIN_DIR:+$FL_BIN_DIR/tools/feedloop-kafka-admin}}
if [[ -z $admin || ! -x $admin ]]; then
    echo "kafka/create-topics: feedloop-kafka-admin not found: build the tree and set" \
        "FL_BIN_DIR (the build directory) or FL_KAFKA_ADMIN" >&2
    exit 1
fi
exec "$admin" -b "$bootstrap" -t "${FL_KAFKA_ADMIN_TIMEOUT_MS:-30000}" \
    create-topics "$partitions" "$@"
