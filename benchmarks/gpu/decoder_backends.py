#!/usr/bin/env python3
"""Decoder backends on a GPU machine: numpy vs ONNX Runtime vs torch-cuda (vs TensorRT where it is installed).

For a machine with python3, torch (CUDA), onnxruntime (CPU), numpy, safetensors, Pillow and opencv (imported with
omokage's feature models), and tqdm and onnx (to fit a model: its training loop and torch's ONNX exporter), without
omokage installed (scikit-learn is not needed: the models implement its estimator API themselves): run from the
repository root with the package on the path,

    PYTHONPATH=server python3 benchmarks/gpu/decoder_backends.py --out /tmp/gpu-results
    PYTHONPATH=server python3 benchmarks/gpu/decoder_backends.py --model models/gen/1 --out /tmp/gpu-results

With --model it loads a fitted `gen` model (a models/gen/VERSION folder: `omokage fit CATALOG --models gen`);
without, it fits one quickly on faces it draws itself with numpy (ellipses: enough for timing and agreement, not for
quality figures). Then, per backend and batch size (1, 8, 64): latency of `decode` (numpy latents in, numpy images
out: host-device copies included), median and p99 over repeated calls, and throughput; and the largest absolute
difference between backends on the same latents. Writes decoder_backends.json and decoder_backends.md to --out.
Backends that cannot run (no GPU, no tensorrt package) are listed with the reason. Finishes in well under 4 minutes
on a 16-core H100 machine (a TensorRT engine build, where TensorRT exists, adds up to a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "server") not in sys.path:        # PYTHONPATH=server, or run from anywhere
    sys.path.insert(0, str(REPO / "server"))


def synthetic_faces(n: int, side: int, seed: int = 0) -> np.ndarray:
    """(n, side*side*3) float32 cartoon faces drawn with numpy: background, hair, face, eyes, mouth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = np.empty((n, side, side, 3), np.float32)
    for i in range(n):
        img = np.empty((side, side, 3), np.float32)
        img[:] = rng.uniform(0.5, 1.0, 3)
        cx, cy = 0.5 + rng.normal(0, 0.03), 0.55 + rng.normal(0, 0.03)
        hair = ((xx - cx) / rng.uniform(0.3, 0.45)) ** 2 + ((yy - cy + 0.08) / rng.uniform(0.35, 0.5)) ** 2 < 1
        img[hair] = rng.uniform(0, 1, 3)
        face = ((xx - cx) / 0.25) ** 2 + ((yy - cy) / 0.3) ** 2 < 1
        img[face] = np.array([0.98, 0.85, 0.75]) * rng.uniform(0.6, 1.0)
        eye_colour, r = rng.uniform(0, 1, 3), rng.uniform(0.03, 0.06)
        for ex in (-0.1, 0.1):
            eye = (xx - cx - ex) ** 2 + (yy - cy + 0.02) ** 2 < r * r
            img[eye] = eye_colour
        mouth = (np.abs(yy - cy - 0.15 - 0.3 * (xx - cx) ** 2) < 0.008) & (np.abs(xx - cx) < rng.uniform(0.03, 0.08))
        img[mouth] = (0.4, 0.1, 0.1)
        out[i] = img
    return out.reshape(n, -1)


def percentiles_ms(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"calls": int(a.size), "p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def time_calls(fn, seconds: float, min_calls: int = 10, max_calls: int = 2000) -> list[float]:
    for _ in range(3):
        fn()                                       # warm-up: lazy initialisation, cuDNN autotuning, graph capture
    samples, start = [], time.perf_counter()
    while len(samples) < min_calls or (time.perf_counter() - start < seconds and len(samples) < max_calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for mod in ("torch", "onnxruntime", "tensorrt", "sklearn", "safetensors"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001
            env[mod] = f"not importable: {type(exc).__name__}: {exc}"
    try:
        import torch
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        env["gpu"] = None
    return env


def get_model(args, workdir: Path):
    """(a fitted gen model, its version folder in workdir, how it was made)."""
    from omokage.features import load_model_dir
    from omokage.features.generator import ResidualDecoder
    if args.model:
        src = Path(args.model)
        if not (src / "config.json").is_file():
            sys.exit(f"--model {src}: not a model version folder (no config.json)")
        dst = workdir / "gen" / "1"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.plan"))   # plans are rebuilt for this GPU
        model, config, _ = load_model_dir(dst)
        if not isinstance(model, ResidualDecoder):
            sys.exit(f"--model {src} holds a {config.get('name')!r} model, not 'gen'")
        fitted_on = config.get("fitted_on") or f"{config.get('catalog', {}).get('count', '?')} faces"
        return model, dst, f"loaded from {src} (fitted on {fitted_on})"
    X = synthetic_faces(args.count, args.size)
    t0 = time.perf_counter()
    # no held-out share: the last epoch's weights are kept, so the residual is never the untrained zero
    model = ResidualDecoder(epochs=args.epochs, val_fraction=0.0, progress=False).fit(X)
    how = (f"fitted here on {args.count} synthetic {args.size}x{args.size} faces, {args.epochs} epochs, "
           f"{time.perf_counter() - t0:.1f} s (timing only: not a quality figure)")
    return model, model.save(workdir), how


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                epilog="examples:\n  PYTHONPATH=server python3 benchmarks/gpu/decoder_backends.py "
                                       "--out /tmp/gpu\n  PYTHONPATH=server python3 benchmarks/gpu/decoder_backends.py "
                                       "--model models/gen/1 --out /tmp/gpu")
    p.add_argument("--out", type=Path, required=True, help="folder for decoder_backends.json and .md")
    p.add_argument("--model", default=None, help="a fitted gen model's version folder (default: fit one quickly)")
    p.add_argument("--count", type=int, default=300, help="synthetic faces to fit on without --model (default 300)")
    p.add_argument("--size", type=int, default=200, help="their size in pixels (default 200, the catalog's)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs without --model (default 3)")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per backend and batch (default 1)")
    p.add_argument("--batches", default="1,8,64", help="batch sizes (default 1,8,64)")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    started = time.perf_counter()
    env = environment()
    print(json.dumps(env), flush=True)

    from omokage.generators import available_backends, make_decoder
    workdir = Path(tempfile.mkdtemp(prefix="omokage-gpu-"))
    try:
        model, version_dir, how = get_model(args, workdir)
        print(f"model: {how}; latent {model.pca_.n_features_out}, output {model.input_side_} px", flush=True)
        reasons = available_backends(model)
        variants = [("numpy", "numpy", {}),
                    ("onnxruntime", "onnxruntime CPU (1 thread)", {"threads": 1}),
                    ("onnxruntime", f"onnxruntime CPU ({os.cpu_count()} threads)", {"threads": os.cpu_count()}),
                    ("torch-cuda", "torch-cuda (eager)", {}),
                    ("torch-cuda", "torch-cuda (CUDA graphs)", {"cuda_graphs": True}),
                    ("tensorrt", "tensorrt", {"cache_dir": version_dir})]
        decoders, setup = {}, {}
        for name, label, options in variants:
            if reasons.get(name):
                continue
            t0 = time.perf_counter()
            try:
                decoders[label] = make_decoder(name, model, **options)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                reasons[label] = f"{type(exc).__name__}: {exc}"
                continue
            setup[label] = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        sd = np.sqrt(model.pca_.explained_variance_).astype(np.float32)
        pool = (rng.standard_normal((max(batches), len(sd))).astype(np.float32) * sd)
        rows = []
        for label, dec in decoders.items():
            for b in batches:
                Z = np.ascontiguousarray(pool[:b])
                stats = percentiles_ms(time_calls(lambda: dec.decode(Z), args.seconds))
                rows.append({"backend": label, "batch": b, **stats, "images_per_s": b / (stats["p50_ms"] / 1000)})
                print(f"  {label:34s} batch {b:3d}: p50 {stats['p50_ms']:8.3f} ms  p99 {stats['p99_ms']:8.3f} ms  "
                      f"{rows[-1]['images_per_s']:10.0f} images/s", flush=True)
        Z = np.ascontiguousarray(pool[:64])
        outputs = {label: dec.decode(Z) for label, dec in decoders.items()}
        ort_label = next((k for k in outputs if k.startswith("onnxruntime")), None)
        diffs = []
        for label, out in outputs.items():
            diffs.append({"backend": label,
                          "vs_onnxruntime_max": float(np.abs(out - outputs[ort_label]).max()) if ort_label else None,
                          "vs_numpy_max": float(np.abs(out - outputs["numpy"]).max())})
        unavailable = {k: v for k, v in reasons.items() if v}
    finally:
        for dec in locals().get("decoders", {}).values():
            dec.close()
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    payload = {"environment": env, "model": how, "setup_seconds": setup, "latency": rows, "differences": diffs,
               "unavailable": unavailable, "total_seconds": total}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder_backends.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["# Decoder backends on " + str(env.get("gpu") or "a machine without a CUDA GPU"), "",
             f"Model: {how}. Latency: one `decode` call (numpy in, numpy out; host-device copies included), "
             f"median and p99 over ≥ 10 calls / {args.seconds:g} s. Environment: {json.dumps(env)}", "",
             "| backend | batch | p50 ms | p99 ms | images / s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['backend']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:,.0f} |"
              for r in rows]
    lines += ["", "| backend | max abs diff vs onnxruntime | max abs diff vs numpy (PCA) |", "|---|---:|---:|"]
    lines += [f"| {d['backend']} | {d['vs_onnxruntime_max']:.2e} | {d['vs_numpy_max']:.3f} |" for d in diffs]
    lines += ["", "Setup (session / engine build or plan load, seconds): "
              + ", ".join(f"{k} {v:.1f}" for k, v in setup.items())]
    if unavailable:
        lines += ["", "Not measured:", *[f"- {k}: {v}" for k, v in unavailable.items()]]
    lines += ["", f"Total {total:.0f} s."]
    (args.out / "decoder_backends.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
