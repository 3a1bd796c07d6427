#!/usr/bin/env bash
# The README's quick start: runs the feedback loop locally on embedded defaults — no cluster,
# no prior set-up. Installs the Debian packages it needs, builds, then starts a private
# redis-server and librdkafka's mock Kafka cluster (via `feedloop broker`) on free loopback
# ports, starts the workers, replays a sample stream of CI reports and bench reports into the
# loop, and prints every verdict as it comes out. Ctrl-C (or --once) stops everything.
# Usage: scripts/up.sh [--once]   (--once: exit after the sample stream's verdicts)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${FL_BUILD_DIR:-$here/build}
once=0
[[ "${1:-}" == "--once" ]] && once=1

"$here/scripts/deps.sh"
if [[ ! -x "$build/tools/feedloop" || ! -x "$build/workers/feedloop-validator" ]] ||
   [[ -n "$(find "$here/common" "$here/workers" "$here/tools" "$here/schemas" -newer "$build/tools/feedloop" -print -quit 2>/dev/null)" ]]; then
  echo "up: building feedloop in $build" >&2
  cmake -S "$here" -B "$build" -DFEEDLOOP_TESTS=OFF -DFEEDLOOP_BENCH=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
fi

run=$(mktemp -d /tmp/feedloop-up.XXXXXX)
pids=()
infra=()
cleanup() {
  # Workers and tails first, the broker and Redis last, so nothing complains of a dead broker.
  for p in $(jobs -p) $(pgrep -P $$ || true); do
    [[ " ${infra[*]} " == *" $p "* ]] || kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.5
  for p in "${infra[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$run" --logfile "$run/redis.log" &
infra+=($!)
"$build/tools/feedloop" broker --partitions 4 --bootstrap-file "$run/bootstrap" \
  >"$run/broker.out" 2>"$run/broker.log" &
infra+=($!)
for _ in $(seq 100); do
  [[ -s "$run/bootstrap" ]] && redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
export FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=$(cat "$run/bootstrap")
export FEEDLOOP_REDIS_PORT=$redis_port
export FEEDLOOP_HTTP_HOST=127.0.0.1
echo "up: mock Kafka at $FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS, Redis at 127.0.0.1:$redis_port" >&2

workers=(validator benchmarker)
for w in "${workers[@]}"; do
  FEEDLOOP_HTTP_PORT=$(free_port) "$build/workers/feedloop-$w" >"$run/$w.log" 2>&1 &
  pids+=($!)
  echo "up: started $w (log: $run/$w.log)" >&2
done

fl() { "$build/tools/feedloop" "$@"; }
# The verdicts, as they come out of the loop.
"$build/tools/feedloop" tail validation_result --log.level=error |
  jq -r --unbuffered '"validation  \(.change_id): \(.verdict)" + (if (.reasons|length) > 0 then " — " + ([.reasons[] | "\(.code) \(.detail)"] | join(", ")) else "" end)' &
pids+=($!)
"$build/tools/feedloop" tail benchmark_result --log.level=error |
  jq -r --unbuffered '"benchmark   \(.change_id): \(.verdict)" + (if (.reasons|length) > 0 then " — " + ([.reasons[] | "\(.code) \(.detail)"] | join(", ")) else "" end)' &
pids+=($!)
"$build/tools/feedloop" tail review_request --log.level=error |
  jq -r --unbuffered '"review      \(.change_id): ready for human review"' &
pids+=($!)

# The sample stream: the base branch first (its coverage is what changes are held to), then
# the agent's changes.
fl emit ci_report "$here/examples/base.json" --log.level=error
# Changes are keyed by change id and land on other partitions: wait until the base is recorded.
fl tail validation_result --count 1 --timeout.ms 30000 --log.level=error >/dev/null
fl emit ci_report "$here/examples/changes.jsonl" --log.level=error
fl emit bench_report "$here/examples/bench.jsonl" --log.level=error

if ((once)); then
  # Every validation result, every benchmark result and the review request(s) of changes that
  # passed both.
  count() { "$build/tools/feedloop" tail "$1" --timeout.ms 500 --log.level=error 2>/dev/null | wc -l; }
  want_val=$(( $(grep -c . "$here/examples/changes.jsonl") + 1 ))
  want_bench=$(grep -c . "$here/examples/bench.jsonl")
  for _ in $(seq 120); do
    (( $(count validation_result) >= want_val && $(count benchmark_result) >= want_bench &&
       $(count review_request) >= 1 )) && break
    sleep 0.5
  done
  sleep 1
  exit 0
fi
echo "up: the loop is running; emit more with: FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=$FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS $build/tools/feedloop emit ci_report FILE — Ctrl-C stops" >&2
wait
