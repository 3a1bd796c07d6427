#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars listed in tests/kafka/pom.xml from Maven Central.
#
#   tests/kafka/fetch.sh [jars-dir]      (default: tests/kafka/jars, FL_KAFKA_JARS if set)
#
# Installs Maven and a Java 17+ runtime from Debian first when they are missing. Idempotent:
# a stamp file in jars-dir keyed on the pom's hash makes a second run a no-op, and a changed
# pom fetches again. Concurrent runs (ctest -j) serialise on a lock; the jars appear in
# jars-dir only when complete.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jars=${1:-${FL_KAFKA_JARS:-$here/jars}}
pom=$here/pom.xml

log() { echo "kafka/fetch: $*" >&2; }

java_ok() {
    command -v java >/dev/null 2>&1 || return 1
    local v
    v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
    [[ -n $v && $v -ge 17 ]]
}

want=$(sha256sum "$pom" | cut -d' ' -f1)
stamp=$jars/.stamp
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && java_ok; then
    exit 0
fi

pkgs=()
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
java_ok || pkgs+=(openjdk-17-jre-headless)
if ((${#pkgs[@]})); then
    log "installing ${pkgs[*]} from Debian"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi

mkdir -p "$(dirname "$jars")"
# The lock lives outside the source tree so it never shows up in git status.
exec 9>"${TMPDIR:-/tmp}/feedloop-kafka-fetch.$(echo "$jars" | sha256sum | cut -c1-16).lock"
flock 9
# Another run may have finished the job while this one waited for the lock.
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    exit 0
fi

log "fetching the Kafka broker jars into $jars"
tmp=$(mktemp -d "$jars.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# -f: the pom is outside the current directory when called from a build tree.
mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2
ls "$tmp"/kafka_2.13-*.jar >/dev/null
echo "$want" >"$tmp/.stamp"
rm -rf "$jars"
mv "$tmp" "$jars"
trap - EXIT
log "done: $(find "$jars" -name '*.jar' | wc -l) jars"
