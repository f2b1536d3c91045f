#!/usr/bin/env bash
# The live sketch loop on a GPU machine, end to end: the GPU tests, a `gen` model trained on the GPU, the decoder
# backends on that model, and `omokage bench sketch` with PCA's previews (numpy) against the gen decoder's on the GPU
# (torch-cuda with CUDA graphs, what `--preview-backend auto` serves where TensorRT is not installed), on all cores and
# on two (this project's CPU reference machine has two).
#
# For a machine with python3, torch (CUDA), onnxruntime, scikit-learn, scikit-image, opencv, msgpack, uvloop, pillow,
# safetensors and pytest, without omokage installed; websockets and cma may come as wheels in .whl/ (py3.12):
#
#     bash benchmarks/gpu/serve_on_gpu.sh OUT_DIR [SECONDS]
#     BACKENDS=torch-cuda bash benchmarks/gpu/serve_on_gpu.sh OUT_DIR 8      # the GPU previews only
#
# Writes to OUT_DIR: log.txt (environment, tests, fits), decoder/decoder_backends.{md,json},
# sketch-all-cores/sketch.{md,json}, sketch-2-cores/sketch.{md,json}. About 7 minutes on an H200 machine (16 cores).
set -u
OUT=${1:?usage: serve_on_gpu.sh OUT_DIR [SECONDS]}
SECONDS_PER_RUN=${2:-8}
BACKENDS=${BACKENDS:-numpy,torch-cuda}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/omokage-site \
        .whl/*.whl >>"$LOG" 2>&1 || { echo "installing .whl failed" | tee -a "$LOG"; exit 1; }
    export PYTHONPATH=/tmp/omokage-site:$PWD/server
else
    export PYTHONPATH=$PWD/server
fi
HOME_DIR=$(mktemp -d /tmp/omokage-gpu-XXXX)
step() { echo; echo "=== $* ($(date +%T))"; } >>"$LOG"

step environment
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  python3 -c "import sys, torch, numpy, onnxruntime, sklearn; print(sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.is_available(), 'numpy', numpy.__version__, 'ort', onnxruntime.__version__,
'sklearn', sklearn.__version__)"; } >>"$LOG" 2>&1

step "GPU tests (the ones that skip on a CPU machine)"
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="-rs" \
    tests/test_generators.py -k "torch_cuda or graphs or device or tensorrt" \
    tests/test_sketch.py::test_a_gpu_serves_the_gen_previews_live_with_cuda_graphs \
    tests/test_sketch.py::test_a_decoder_that_says_how_to_make_it_again_runs_in_the_worker_process >>"$LOG" 2>&1
echo "pytest exit $?" >>"$LOG"

step "catalog (1,500 generated faces) and pca, sketch on the CPU, gen on the GPU"
timeout 120 python3 - "$HOME_DIR" >>"$LOG" 2>&1 <<'EOF'
import sys, time
from pathlib import Path
from omokage.demo import prepare
from omokage.features.fitting import fit_models
home = Path(sys.argv[1])
t0 = time.perf_counter()
catalog, models = prepare(home, algorithms=["pca", "sketch"], progress=False)
print(f"catalog and pca, sketch: {time.perf_counter() - t0:.1f} s", flush=True)
fit_models(catalog, models, ["gen"], device="cuda", progress=False)
EOF
echo "fit exit $?" >>"$LOG"

step "decoder backends on the gen model trained here"
timeout 90 python3 benchmarks/gpu/decoder_backends.py --model "$HOME_DIR/models/gen/1" --batches 1,5,8,32,64 \
    --seconds 1 --out "$OUT/decoder" >>"$LOG" 2>&1
echo "decoder_backends exit $?" >>"$LOG"

step "bench sketch, all cores"
timeout 150 python3 -m omokage bench sketch --skip-usefulness --backends "$BACKENDS" --clients 10,25,50 \
    --seconds "$SECONDS_PER_RUN" --home "$HOME_DIR" --out "$OUT/sketch-all-cores" >>"$LOG" 2>&1
echo "bench sketch exit $?" >>"$LOG"

step "bench sketch, two cores (taskset -c 0,1: server and clients)"
if command -v taskset >/dev/null; then
    timeout 80 taskset -c 0,1 python3 -m omokage bench sketch --skip-usefulness --backends "$BACKENDS" \
        --clients 50 --seconds "$SECONDS_PER_RUN" --home "$HOME_DIR" --out "$OUT/sketch-2-cores" >>"$LOG" 2>&1
    echo "bench sketch (2 cores) exit $?" >>"$LOG"
else
    echo "taskset is not installed: no two-core run" >>"$LOG"
fi
for f in "$HOME_DIR"/bench-sketch-logs/server-*.log; do
    [ -s "$f" ] && { echo "--- $f"; tail -20 "$f"; } >>"$LOG"
done
step done
tail -60 "$LOG"
