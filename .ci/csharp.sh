#!/usr/bin/env bash
# C# / Unity client (unity_client/): compile the UPM package with Mono's mcs and run its NUnit tests
# (golden vectors, MessagePack, protocol, failure cases against a scripted fake server, and live sessions
# against a real `omokage serve`).
#   - Core (no engine references) compiles as is; the MonoBehaviours, the sample (with and without the Input
#     System) and the PlayMode tests compile against engine stubs kept outside the package
#     (tests/csharp/UnityStub/); StubSurface checks that every engine member the package uses is in
#     unity-api.txt, declared there as Unity declares it. PlayMode tests (Tests/Runtime) are compiled, not run.
#   - The golden vectors the tests read are the package's copy (unity_client/Tests/Vectors~); it must equal
#     tests/vectors.
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
  python -m omokage fit "$catalog" --models pca,nmf,sketch --out "$models" >>prep.log 2>&1
) &
prep_pid=$!

# --- package checks and compilation --------------------------------------------------------------
python tests/csharp/gen_meta.py --check || fail ".meta files are missing or wrong (run: python tests/csharp/gen_meta.py)"
vectors_copy="unity_client/Tests/Vectors~"
diff <(cd tests/vectors && ls index.json *.msgpack) <(cd "$vectors_copy" && ls) >&2 \
  || fail "$vectors_copy lists other files than tests/vectors (run: cp tests/vectors/index.json tests/vectors/*.msgpack '$vectors_copy/')"
for f in tests/vectors/index.json tests/vectors/*.msgpack; do
  cmp -s "$f" "$vectors_copy/$(basename "$f")" || fail "$vectors_copy/$(basename "$f") differs from $f (copy it again)"
done
echo "== golden vectors: the package's copy equals tests/vectors ($(ls "$vectors_copy" | wc -l) files)"

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
mapfile -t test_src < <(find unity_client/Tests/Editor -name '*.cs' | sort)
mapfile -t playmode_src < <(find unity_client/Tests/Runtime -name '*.cs' | sort)

compile Omokage.Client.Core.dll library "${core_src[@]}"
stub() {  # stub OUT [mcs args and sources...]: engine stubs, warnings allowed (unused events and the like)
  local out="$1"
  shift
  echo "== mcs $out (stub)"
  mcs -noconfig -langversion:7.2 -r:System.dll -r:System.Core.dll -nowarn:660,661,67 -target:library -out:"$build/$out" "$@" \
    || fail "compilation of the $out stub failed"
}
stub UnityEngine.dll tests/csharp/UnityStub/*.cs
stub Unity.InputSystem.dll -r:"$build/UnityEngine.dll" tests/csharp/UnityStub/InputSystem/*.cs
stub UnityEngine.TestRunner.dll -r:"$build/UnityEngine.dll" tests/csharp/UnityStub/TestRunner/*.cs
compile Omokage.Client.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$build/UnityEngine.dll" "${unity_src[@]}"
for input_system in "" OMOKAGE_INPUT_SYSTEM; do  # the sample's two paths: without and with the Input System package
  compile "Omokage.Client.Samples${input_system:+.InputSystem}.dll" library ${input_system:+-define:$input_system} \
    -r:"$build/Omokage.Client.Core.dll" -r:"$build/Omokage.Client.dll" -r:"$build/UnityEngine.dll" \
    -r:"$build/Unity.InputSystem.dll" "${sample_src[@]}"
done
compile Omokage.Client.Tests.Editor.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$nunit_dll" "${test_src[@]}"
compile Omokage.Client.Tests.Runtime.dll library -r:"$build/Omokage.Client.Core.dll" -r:"$build/Omokage.Client.dll" \
  -r:"$build/UnityEngine.dll" -r:"$build/UnityEngine.TestRunner.dll" -r:"$nunit_dll" "${playmode_src[@]}"
compile SessionTranscript.exe exe -r:"$build/Omokage.Client.Core.dll" tests/csharp/Transcript/*.cs
compile StubSurface.exe exe tests/csharp/StubSurface/*.cs
cp "$nunit_dll" "$build/"
(cd "$build" && mono StubSurface.exe "$root/tests/csharp/UnityStub/unity-api.txt" UnityEngine.dll,Unity.InputSystem.dll \
  Omokage.Client.dll Omokage.Client.Samples.dll Omokage.Client.Samples.InputSystem.dll Omokage.Client.Tests.Runtime.dll) \
  || fail "the package uses engine members that tests/csharp/UnityStub/unity-api.txt does not list as the stub declares them"

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
export OMOKAGE_PACKAGE_DIR="$root/unity_client"  # the tests read the package's own copy of the vectors
export OMOKAGE_PYTHON="$(command -v python)"
export OMOKAGE_CATALOG="$catalog"
export OMOKAGE_MODELS="$models"
export OMOKAGE_REQUIRE_LIVE=1
result="$build/TestResult.xml"
rm -f "$result"
nunit_rc=0
(cd "$build" && timeout 300 nunit-console -nologo -noshadow Omokage.Client.Tests.Editor.dll -xml="$result") || nunit_rc=$?

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
