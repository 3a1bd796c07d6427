#!/usr/bin/env bash
# Worker throughput against raw librdkafka consumption, measured in one run on the local stack
# (mock Kafka cluster + private Redis), reported as ratios.
#   1. fill feedloop.ci_report (16 partitions: the mock keeps ~5 MiB per partition) with N CI
#      reports;
#   2. baseline: a raw librdkafka consumer reads all N (no decoding, no work);
#   3. the validator (decode, Redis lookup of the base coverage, judge, encode, produce, offset
#      store) processes the same N; its rate is read off the output topic's watermarks.
#   4. the same for the benchmarker: M bench reports of two metrics with 1,000 baseline and
#      1,000 candidate samples each (raw consume of those, then the benchmarker's rate off the
#      benchmark_result topic).
# Usage: bench/run.sh [build-dir] [N] [M]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
n=${2:-100000}
m=${3:-1000}
export FL_SOURCE_DIR=$here
run=$(mktemp -d /tmp/feedloop-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$run" \
  --logfile "$run/redis.log" &
pids+=($!)
"$build/tools/feedloop-broker" --partitions 16 --bootstrap-file "$run/bootstrap" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$run/bootstrap" ]] && break; sleep 0.1; done
bs=$(cat "$run/bootstrap")
export FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=$bs FEEDLOOP_REDIS_PORT=$port FEEDLOOP_HTTP_PORT=-1
export FEEDLOOP_LOG_LEVEL=warn
redis-cli -p "$port" HSET "fl:validator:base:acme/checkout-api:main" coverage 82.0 >/dev/null
"$build/bench/fl-bench" fill "$bs" feedloop.ci_report "$n"
raw=$("$build/bench/fl-bench" consume "$bs" feedloop.ci_report "$n" | awk '/^rate/ {print $2}')
${FL_BENCH_WRAP:-} "$build/workers/feedloop-validator" >"$run/validator.log" 2>&1 &
pids+=($!)
val=$("$build/bench/fl-bench" watch "$bs" feedloop.validation_result "$n" | awk '/^rate/ {print $2}')
ratio=$(awk -v a="$val" -v b="$raw" 'BEGIN { printf "%.3f", a / b }')

"$build/bench/fl-bench" fill-bench "$bs" feedloop.bench_report "$m" 1000
braw=$("$build/bench/fl-bench" consume "$bs" feedloop.bench_report "$m" | awk '/^rate/ {print $2}')
${FL_BENCH_WRAP:-} "$build/workers/feedloop-benchmarker" >"$run/benchmarker.log" 2>&1 &
pids+=($!)
bval=$("$build/bench/fl-bench" watch "$bs" feedloop.benchmark_result "$m" | awk '/^rate/ {print $2}')
bratio=$(awk -v a="$bval" -v b="$braw" 'BEGIN { printf "%.4f", a / b }')

printf 'validator: %d CI reports\n' "$n"
printf '  raw librdkafka consume      %10.0f msg/s\n' "$raw"
printf '  validator sustained rate    %10.0f msg/s\n' "$val"
printf '  ratio validator/raw         %10s (goal >= 0.5, project goal 0.8)\n' "$ratio"
printf 'benchmarker: %d bench reports, 2 metrics x 1000 samples per side\n' "$m"
printf '  raw librdkafka consume      %10.0f msg/s\n' "$braw"
printf '  benchmarker sustained rate  %10.1f msg/s\n' "$bval"
printf '  ratio benchmarker/raw       %10s\n' "$bratio"
