#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages, the Kafka jars),
# builds with warnings as errors, and runs every test: unit, integration on librdkafka's mock
# cluster, integration on a real Apache Kafka broker (KRaft).
# Usage: scripts/test.sh [build-dir] [extra cmake args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
shift || true
"$here/scripts/deps.sh" --test
"$here/tests/kafka/fetch.sh"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEEDLOOP_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 600 -j2
