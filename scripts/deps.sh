#!/usr/bin/env bash
# Installs feedloop's Debian 12 build and run dependencies when any is missing.
# Usage: scripts/deps.sh [--test]   (--test adds what the tests need: Java, Maven, clang-format)
set -euo pipefail

pkgs=(build-essential cmake pkg-config librdkafka-dev libuv1-dev libavro-dev libhiredis-dev
      libjansson-dev redis-server curl jq)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(libcmocka-dev clang-format default-jre-headless maven)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Java and Maven may come from elsewhere (a JDK under /usr/lib/jvm, a Maven on PATH).
if [[ "${1:-}" == "--test" ]]; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in
      default-jre-headless) command -v java >/dev/null || filtered+=("$p") ;;
      maven) command -v mvn >/dev/null || filtered+=("$p") ;;
      *) filtered+=("$p") ;;
    esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if ((${#missing[@]} > 0)); then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts a system redis-server on 6379 when it installs the package; feedloop runs its
# own on free ports, so the system one is left alone.
exit 0
