#!/usr/bin/env bash
# The command line, against the mock cluster: emit checks input against the schema with errors
# that name the field and produces nothing from a bad batch; tail decodes what was produced,
# with headers on request; bad arguments and bad configuration exit 2 with a clear message.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

fl_start_broker
CLI=$(fl_bin feedloop)
VALIDATOR=$(fl_bin feedloop-validator)
FIX="$FL_SOURCE_DIR/tests/fixtures/events"
export FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS="$FL_BOOTSTRAP"
tmp=$(fl_tmpdir)

# expect_fail <code> <substring> <command...>: exit code and a message naming the problem
expect_fail() {
  local want=$1 text=$2 rc=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  fl_assert_eq "$want" "$rc" "exit code of: $*"
  grep -qF -- "$text" "$tmp/err" || fl_fail "'$*' did not say '$text': $(cat "$tmp/err")"
}

# Schema errors name the field; nothing of a bad batch is produced.
jq -c '.tests.unit.failed = "one"' "$FIX/ci_report.json" >"$tmp/wrongtype.json"
expect_fail 2 "tests.unit.failed" "$CLI" emit ci_report "$tmp/wrongtype.json"
jq -c 'del(.repo)' "$FIX/ci_report.json" >"$tmp/missing.json"
expect_fail 2 "repo" "$CLI" emit ci_report "$tmp/missing.json"
jq -c '.surprise = 1' "$FIX/ci_report.json" >"$tmp/unknown.json"
expect_fail 2 "surprise" "$CLI" emit ci_report "$tmp/unknown.json"
jq -c '.optimization_type = "FASTER"' "$FIX/ci_report.json" >"$tmp/enum.json"
expect_fail 2 "optimization_type" "$CLI" emit ci_report "$tmp/enum.json"
{ jq -c . "$FIX/ci_report.json"; echo '{"not json'; } >"$tmp/badline.jsonl"
expect_fail 2 "line 2" "$CLI" emit ci_report "$tmp/badline.jsonl"
{ jq -c . "$FIX/ci_report.json"; jq -c '.change_id = 5' "$FIX/ci_report.json"; } >"$tmp/second.jsonl"
expect_fail 2 "event 2" "$CLI" emit ci_report "$tmp/second.jsonl"
expect_fail 2 "unknown event type" "$CLI" emit no_such_type "$FIX/ci_report.json"
expect_fail 2 "no_such_file" "$CLI" emit ci_report "$tmp/no_such_file.json"
expect_fail 2 "unknown configuration key" "$CLI" emit ci_report "$FIX/ci_report.json" --no.such.key=1
expect_fail 2 "unknown command" "$CLI" frobnicate
fl_assert_eq "0" "$("$CLI" tail ci_report --timeout.ms 2000 --log.level=error | wc -l | tr -d ' ')" "nothing produced by bad batches"

# JSON lines in, the same events out, with CloudEvents headers.
for i in 1 2 3; do jq -c --arg id "cli-$i" '.change_id = $id' "$FIX/ci_report.json"; done >"$tmp/three.jsonl"
"$CLI" emit ci_report "$tmp/three.jsonl"
out=$("$CLI" tail ci_report --count 3 --timeout.ms 20000 --headers --log.level=error)
fl_assert_eq "cli-1 cli-2 cli-3" "$(jq -r '.value.change_id' <<<"$out" | sort | xargs)" "round trip"
fl_assert_eq "3" "$(jq -r '.headers.ce_id' <<<"$out" | sort -u | wc -l | tr -d ' ')" "distinct ce_ids"
fl_assert_eq "io.feedloop.CiReport" "$(jq -r '.headers.ce_type' <<<"$out" | sort -u)" "ce_type"
fl_assert_eq "$(jq -r '.value.change_id' <<<"$out" | sort | xargs)" "$(jq -r '.key' <<<"$out" | sort | xargs)" "keyed by change_id"
diff <(jq -S 'select(.change_id == "cli-1")' <(jq -c .value <<<"$out")) \
     <(jq -S '.change_id = "cli-1"' "$FIX/ci_report.json") >/dev/null || fl_fail "decoded event differs from the input"

# Workers: --help, unknown keys, bad values, bad environment.
"$VALIDATOR" --help | grep -q "validator.max.cyclomatic" || fl_fail "--help lists the worker's keys"
expect_fail 2 "validator.max.bogus" "$VALIDATOR" --validator.max.bogus=3
expect_fail 2 "validator.max.cyclomatic" "$VALIDATOR" --validator.max.cyclomatic=ten
expect_fail 2 "FEEDLOOP_REDIS_PROT" env FEEDLOOP_REDIS_PROT=1 "$VALIDATOR"
printf 'redis.port = 70000\n' >"$tmp/bad.conf"
expect_fail 2 "bad.conf:1" "$VALIDATOR" --config "$tmp/bad.conf"
expect_fail 2 "unexpected argument" "$VALIDATOR" stray
# Worker-specific checks run before anything connects (a dead bootstrap address proves it).
expect_fail 2 "validator.no.base" env FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 timeout 10 "$VALIDATOR" --validator.no.base=maybe
expect_fail 2 "benchmarker.tail.min.samples" env FEEDLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 timeout 10 \
  "$(fl_bin feedloop-benchmarker)" --benchmarker.min.samples=10 --benchmarker.tail.min.samples=5

echo "PASS test_cli"
