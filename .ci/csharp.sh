#!/usr/bin/env bash
# C# / Unity client (unity_client/): compile the UPM package with Mono's mcs and run its NUnit tests
# (golden vectors, MessagePack, protocol, and a live session against a real `omokage serve`).
#   - Core (no engine references) compiles as is; the MonoBehaviours and the sample compile against a
#     minimal UnityEngine stub kept outside the package (tests/csharp/UnityStub/).
#   - The tests run under Debian's nunit-console (NUnit 2.6) with OMOKAGE_REQUIRE_LIVE=1, so a test
#     whose inputs are missing fails instead of being ignored.
#   - A server is started on a free loopback port from a small generated catalog; the restart test
#     starts (and kills) servers of its own from the same catalog.
# Needs `python` on PATH with omokage installed (the CI venv). Closes with `csharp: N passed, N failed`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)
build="${OMOKAGE_CSHARP_BUILD:-$root/build/csharp}"
work="$(mktemp -d "${TMPDIR:-/tmp}/omokage-csharp.XXXXXX")"
server_pid=""
prep_pid=""
passed=0
failed=1  # until the tests have run, any exit (a compile error, a crash) counts as one failure

cleanup() {  # stop what we started, then print the closing line last
  local pid
  for pid in "$server_pid" "$prep_pid"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      pkill -TERM -P "$pid" 2>/dev/null || true  # the prep subshell's python (catalog generate / fit)
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  echo "csharp: $passed passed, $failed failed"
}
trap cleanup EXIT

fail() {  # fail MESSAGE: a step before the tests failed
  echo "csharp: $1" >&2
  exit 1
}

# --- toolchain --------------------------------------------------------------------------------
packages=(mono-mcs nunit-console libnunit-cil-dev)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  echo "== installing ${packages[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
nunit_dll="$(ls /usr/lib/cli/nunit.framework-*/nunit.framework.dll 2>/dev/null | head -1)"
[ -n "$nunit_dll" ] || fail "nunit.framework.dll not found after installing libnunit-cil-dev"
echo "$(mcs --version), $(basename "$(dirname "$nunit_dll")")"

# --- test data, prepared in the background while we compile ---------------------------------------
catalog="$work/catalog"
models="$work/models"
(
  set -e
  cd "$work"
  if ! python -m omokage catalog generate --count 150 --size 64 --out "$catalog" --seed 1 >prep.log 2>&1; then
    echo "catalog generate failed, falling back to random images:" >>prep.log
    rm -rf "$catalog"
    python - "$catalog" >>prep.log 2>&1 <<'PY'
import sys
import numpy as np
from omokage.catalog.store import CatalogWriter
rng = np.random.default_rng(1)
with CatalogWriter(sys.argv[1], image_size=64) as w:
    for i in range(150):
        img = np.zeros((64, 64, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
        img[16:48, 16:48] = rng.integers(0, 256, 3, dtype=np.uint8)
        w.add(img, title=f"Face {i}", url=f"https://avatars.example/items/{i:05d}")
    w.commit()
PY
  fi
  python -m omokage fit "$catalog" --models pca,nmf --out "$models" >>prep.log 2>&1
) &
prep_pid=$!

# --- package checks and compilation --------------------------------------------------------------
python tests/csharp/gen_meta.py --check || fail ".meta files are missing or wrong (run: python tests/csharp/gen_meta.py)"

mkdir -p "$build"
rm -f "$build"/*.dll "$build"/*.exe
mcs_flags=(-noconfig -langversion:7.2 -warnaserror+ -r:System.dll -r:System.Core.dll)
compile() {  # compile OUT TARGET [mcs args and sources...]
  local out="$1" target="$2"
  shift 2
  echo "== mcs $out"
  mcs "${mcs_flags[@]}" -target:"$target" -out:"$build/$out" "$@" || fail "compilation of $out failed"
}
mapfile -t core_src < <(find unity_client/Runtime/Core -name '*.cs' | sort)
mapfile -t unity_src < <(find unity_client/Runtime -name '*.cs' -not -path 'unity_client/Runtime/Core/*' | sort)
mapfile -t sample_src < <(find unity_client/Samples~ -name '*.cs' | sort)
mapfile -t test_src < <(find unity_client/Tests/Core -name '*.cs' | sort)

compile Omokage.Client.Core.dll library "${core_src[@]}"
echo "== mcs UnityEngine.dll (stub)"
mcs -noconfig -langversion:7.2 -r:System.dll -r:System.Core.dll -nowarn:660,661 -target:library \
  -out:"$build/UnityEngine.dll" tests/csharp/UnityStub/*.cs || fail "compilation of the UnityEngine stub failed"
compile Omokage.Client.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$build/UnityEngine.dll" "${unity_src[@]}"
compile Omokage.Samples.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$build/Omokage.Client.dll" \
  -r:"$build/UnityEngine.dll" "${sample_src[@]}"
compile Omokage.Client.Tests.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$nunit_dll" "${test_src[@]}"
compile SessionTranscript.exe exe -r:"$build/Omokage.Client.Core.dll" tests/csharp/Transcript/*.cs
cp "$nunit_dll" "$build/"

# --- the server --------------------------------------------------------------------------------
wait "$prep_pid" || { prep_pid=""; cat "$work/prep.log" >&2; fail "could not prepare the test catalog and models"; }
prep_pid=""
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$work" && exec python -m omokage serve --catalog "$catalog" --models "$models" --host 127.0.0.1 --port "$port" \
  --log-level warning) >"$work/serve.log" 2>&1 &
server_pid=$!
python - "$port" "$server_pid" <<'PY' || { cat "$work/serve.log" >&2; fail "omokage serve did not become healthy"; }
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited")
    time.sleep(0.1)
sys.exit("timed out")
PY
echo "== omokage serve on ws://127.0.0.1:$port/ws (data ready after $(( $(date +%s) - start )) s)"

# --- tests -------------------------------------------------------------------------------------
export OMOKAGE_SERVER_URL="ws://127.0.0.1:$port/ws"
export OMOKAGE_VECTORS_DIR="$root/tests/vectors"
export OMOKAGE_PYTHON="$(command -v python)"
export OMOKAGE_CATALOG="$catalog"
export OMOKAGE_MODELS="$models"
export OMOKAGE_REQUIRE_LIVE=1
result="$build/TestResult.xml"
rm -f "$result"
nunit_rc=0
(cd "$build" && timeout 300 nunit-console -nologo -noshadow Omokage.Client.Tests.dll -xml="$result") || nunit_rc=$?

transcript_failed=0
transcript="${OMOKAGE_TRANSCRIPT_OUT:-$build/session-transcript.md}"
echo "== session transcript (tests/csharp/Transcript) -> $transcript"
(cd "$build" && timeout 60 mono SessionTranscript.exe "$OMOKAGE_SERVER_URL" "$transcript" >"$build/transcript.log" 2>&1) \
  || { transcript_failed=1; cat "$build/transcript.log" >&2; }

[ -f "$result" ] || fail "nunit-console wrote no result file (exit $nunit_rc)"
read -r n_passed n_failed skipped < <(python - "$result" <<'PY'
import sys
import xml.etree.ElementTree as ET
passed = failed = skipped = 0
for case in ET.parse(sys.argv[1]).iter("test-case"):
    if case.get("executed") != "True":
        skipped += 1
    elif case.get("success") == "True":
        passed += 1
    else:
        failed += 1
print(passed, failed, skipped)
PY
)
n_failed=$(( n_failed + transcript_failed ))
if [ "$nunit_rc" -ne 0 ] && [ "$n_failed" -eq 0 ]; then n_failed=1; fi  # a crash the XML does not show
[ "$skipped" -eq 0 ] || echo "csharp: $skipped test(s) not run"
echo "csharp: finished in $(( $(date +%s) - start )) s"
passed=$n_passed
failed=$n_failed
[ "$failed" -eq 0 ]  # the EXIT trap prints the closing line
