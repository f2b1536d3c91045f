#!/usr/bin/env bash
# Web client: install Chromium and the node packages, check that the committed build in
# server/omokage/web/ is exactly what the sources build to, then run the browser tests
# (headless Chromium driven by playwright-core against real `omokage serve` processes).
# Needs: node >= 20 with npm, and `python` on PATH with omokage installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/web_client"
start=$(date +%s)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "node $(node --version), $(/usr/bin/chromium --version 2>/dev/null | head -1)"

echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error

echo "== build check: server/omokage/web must match web_client/src"
node build.mjs --check

echo "== browser tests"
test_home="$(mktemp -d)"
trap 'rm -rf "$test_home"' EXIT
export OMOKAGE_TEST_HOME="$test_home"
export OMOKAGE_PYTHON="${OMOKAGE_PYTHON:-$(command -v python || command -v python3)}"
rm -rf test-artifacts
status=0
node --test --test-concurrency=1 test/*.test.mjs || status=$?
echo "== web client: $(( $(date +%s) - start )) s; screenshots in web_client/test-artifacts/"
exit $status
