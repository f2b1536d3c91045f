"""`omokage bench generator`: does the `gen` decoder reconstruct held-out faces better, and sharper, than PCA-30; and
what does a decode cost on each backend?

Per data set, PCA-30 and `gen` are fitted on the same faces and judged on faces neither saw:

* generated: the demo's catalog (1,500 faces, seed 0, 200 px; `omokage demo` and `bench choice` use the same), 10%
  held out by a seeded draw;
* anime-holoen20 (when ../shared/data has it): fitted on its train split (the catalog `bench choice` and
  `bench identity` use), judged on its test split (other images of the same 20 characters).

Figures: per-pixel RMSE in [0, 1] units on the held-out faces (both decoders' outputs clipped to [0, 1]); sharpness,
the mean squared Laplacian of the reconstructions over that of the originals (1.0 = as much high-frequency energy as
the originals; blur lowers it), at full size and after area-downsampling to 64 px (the scale the residual is learned
at); fit time. Then, on the generated data set's gen model: decode latency per backend at batch 1/8/64 (median and
p99 of repeated calls, single-threaded numpy BLAS as the server runs it; ONNX Runtime with 1 intra-op thread, the
serving default, and with 2) and the largest absolute difference between backends on the same latents.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omokage.bench.common import markdown_table, percentiles, write_results

GENERATED = {"count": 1500, "seed": 0, "image_size": 200}
HELD_OUT_SHARE = 0.1
BATCHES = (1, 8, 64)


def laplacian_energy(X: np.ndarray, side: int, size: int | None = None) -> float:
    """Mean squared 4-neighbour Laplacian of (n, side*side*3) images (optionally area-downsampled to `size` first)."""
    from omokage.features.base import downsample_nchw
    total, count = 0.0, 0
    for s in range(0, len(X), 64):
        chunk = X[s:s + 64]
        img = downsample_nchw(chunk, side, size) if size and size < side else \
            chunk.reshape(-1, side, side, 3).transpose(0, 3, 1, 2)
        lap = (img[..., 1:-1, :-2] + img[..., 1:-1, 2:] + img[..., :-2, 1:-1] + img[..., 2:, 1:-1]
               - 4 * img[..., 1:-1, 1:-1])
        total += float(np.square(lap, dtype=np.float32).sum(dtype=np.float64))
        count += lap.size
    return total / max(count, 1)


def sharpness(R: np.ndarray, X: np.ndarray, side: int, size: int | None = None) -> float:
    """High-frequency energy of reconstructions R relative to the originals X (1.0 = as sharp as the originals)."""
    return laplacian_energy(R, side, size) / max(laplacian_energy(X, side, size), 1e-12)


def rmse(R: np.ndarray, X: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(R - X, dtype=np.float32), dtype=np.float64)))


def decode_all(decode, Z: np.ndarray, chunk: int = 64) -> np.ndarray:
    return np.concatenate([decode(Z[s:s + chunk]).reshape(len(Z[s:s + chunk]), -1) for s in range(0, len(Z), chunk)])


def _generated(home: Path):
    from omokage.catalog.generate import ensure_catalog
    from omokage.catalog.store import Catalog
    catalog = Catalog(ensure_catalog(Path(home) / "catalog", count=GENERATED["count"], seed=GENERATED["seed"],
                                     image_size=GENERATED["image_size"], announce_reuse=True))
    X = catalog.matrix()
    order = np.random.default_rng(0).permutation(len(X))
    n_test = max(1, int(round(len(X) * HELD_OUT_SHARE)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return X[train], X[test], catalog.image_size, f"generated ({len(X)} faces, {n_test} held out at random)"


def _labelled(dataset: str, home: Path, progress: bool):
    from omokage.bench.identity import labelled_catalog, resolve
    dataset_dir = resolve(dataset)
    train, _ = labelled_catalog(dataset_dir, home, split="train", progress=progress)
    # the test split, ingested once beside it (labelled_catalog keeps one split per home)
    test, _ = labelled_catalog(dataset_dir, Path(home) / "held-out", split="test", progress=progress)
    if train.image_size != test.image_size:
        raise RuntimeError(f"{dataset}: train and test catalogs differ in size; delete {Path(home) / 'held-out'}")
    return (train.matrix(), test.matrix(), train.image_size,
            f"{dataset_dir.name} (train split {len(train)} faces, test split {len(test)} held out)")


def quality_rows(name: str, X_train, X_test, side: int, home: Path, seed: int = 0, epochs: int | None = None,
                 progress: bool = True) -> tuple[list[dict], object]:
    """PCA-30 and gen fitted on X_train, judged on X_test. Returns (rows, the fitted gen model, (name, 8 held-out
    faces, their PCA and gen reconstructions))."""
    from threadpoolctl import threadpool_limits

    from omokage.features import make_model
    from omokage.features.training import training_threads
    rows = []
    params = {"random_state": seed, "progress": progress, **({"epochs": epochs} if epochs else {})}
    models, recon = {}, {}
    for model_name, p in (("pca", {"random_state": seed}), ("gen", params)):
        model = make_model(model_name, **p)
        t0 = time.perf_counter()
        with threadpool_limits(training_threads(), user_api="blas"):
            model.fit(X_train)
        seconds = time.perf_counter() - t0
        models[model_name] = model
        Z_test = model.transform(X_test)
        if model_name == "pca":
            decode = lambda Z, m=model: np.clip(m.inverse_transform(Z), 0, 1)   # noqa: E731
        else:
            decode = model.inverse_transform
        R_test = decode_all(decode, Z_test)
        recon[model_name] = R_test
        sub = X_train[np.linspace(0, len(X_train) - 1, min(300, len(X_train))).astype(int)]
        R_train = decode_all(decode, model.transform(sub))
        row = {"dataset": name, "model": model_name, "fit_seconds": seconds, "train_faces": len(X_train),
               "test_faces": len(X_test), "rmse_test": rmse(R_test, X_test), "rmse_train": rmse(R_train, sub),
               "sharpness": sharpness(R_test, X_test, side), "sharpness_64": sharpness(R_test, X_test, side, 64)}
        if model_name == "gen":
            row.update({"residual": f"{model.residual_side_} px", "best_epoch": model.best_epoch_,
                        "epochs": model.epochs})
        rows.append(row)
        print(f"  {name} {model_name}: fit {seconds:.1f} s, held-out RMSE {row['rmse_test']:.4f}, sharpness "
              f"{row['sharpness']:.3f} (64 px: {row['sharpness_64']:.3f})", flush=True)
    # the gen model's latent is the served PCA's (same settings, same faces)
    same = np.abs(models["gen"].transform(X_test[:16]) - models["pca"].transform(X_test[:16])).max()
    rows[-1]["latent_vs_pca"] = float(same)
    out = Path(home) / "bench-generator" / name.split(" ")[0]
    if out.exists():
        import shutil
        shutil.rmtree(out)
    for m in models.values():
        m.save(out, metadata={"fitted_on": f"{len(X_train)} faces of {name} (omokage bench generator)"})
    # the first held-out faces, for the comparison sheet
    return rows, models["gen"], (name, X_test[:8], recon["pca"][:8], recon["gen"][:8])


def comparison_sheet(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], side: int,
                     count: int = 8, scale: int = 96) -> Path:
    """A JPEG: per data set, rows of held-out originals, PCA-30's and gen's reconstructions (`count` faces each)."""
    from PIL import Image, ImageDraw
    label_w, pad = 160, 4
    rows = [(f"{name}: {what}", imgs[:count]) for name, X, P, G in panels
            for what, imgs in (("original", X), ("PCA-30", P), ("gen", G))]
    sheet = Image.new("RGB", (label_w + count * (scale + pad), len(rows) * (scale + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, imgs) in enumerate(rows):
        y = r * (scale + pad)
        draw.text((4, y + scale // 2 - 6), label, fill="black")
        for c, row in enumerate(imgs):
            img = (np.clip(row.reshape(side, side, 3), 0, 1) * 255 + 0.5).astype(np.uint8)
            sheet.paste(Image.fromarray(img).resize((scale, scale), Image.LANCZOS), (label_w + c * (scale + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=90)
    return path


def _time(decode, Z: np.ndarray, seconds: float = 1.0, min_calls: int = 5, max_calls: int = 500) -> list[float]:
    decode(Z)                                      # warm-up (allocations, lazy initialisation)
    samples, start = [], time.perf_counter()
    while len(samples) < min_calls or (time.perf_counter() - start < seconds and len(samples) < max_calls):
        t0 = time.perf_counter()
        decode(Z)
        samples.append(time.perf_counter() - t0)
    return samples


def backend_rows(gen, Z_pool: np.ndarray, seconds: float = 1.0) -> tuple[list[dict], list[dict], dict]:
    """Latency per backend and batch, max |difference| between backends, and why the missing ones are missing."""
    from threadpoolctl import threadpool_limits

    from omokage.generators import available_backends, make_decoder
    reasons = available_backends(gen)
    variants = [("numpy", "numpy", {}), ("onnxruntime", "onnxruntime (1 thread)", {"threads": 1}),
                ("onnxruntime", "onnxruntime (2 threads)", {"threads": 2}),
                ("torch-cuda", "torch-cuda", {}), ("tensorrt", "tensorrt", {})]
    decoders, rows = {}, []
    for name, label, options in variants:
        if reasons.get(name):
            continue
        decoders[label] = make_decoder(name, gen, **options)
    Z_pool = np.ascontiguousarray(Z_pool, dtype=np.float32)
    with threadpool_limits(1, user_api="blas"):           # as the server runs numpy (engine.single_threaded_blas)
        for label, dec in decoders.items():
            for b in BATCHES:
                Z = np.resize(Z_pool, (b, Z_pool.shape[1]))
                p = percentiles(_time(dec.decode, Z, seconds))
                rows.append({"backend": label, "batch": b, "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"],
                             "per_image_ms": p["p50_ms"] / b, "images_per_s": b / (p["p50_ms"] / 1000),
                             "calls": p["n"]})
                print(f"  {label} batch {b}: p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms", flush=True)
    # differences on the same latents (64 held-out faces): the neural backends against the torch module on the CPU
    # (the reference they were exported from), and each against numpy (PCA: how much the residual changes)
    import torch
    Z = np.resize(Z_pool, (64, Z_pool.shape[1]))
    with torch.inference_mode():
        ref = gen.torch_net()(torch.from_numpy(Z)).numpy()
    outputs = {label: dec.decode(Z) for label, dec in decoders.items()}
    diffs = []
    for label, out in outputs.items():
        diffs.append({"backend": label, "vs": "torch (CPU, float32): the exported module",
                      "max_abs_diff": float(np.abs(out - ref).max()) if label != "numpy" else None,
                      "vs_numpy_max": float(np.abs(out - outputs["numpy"]).max()),
                      "vs_numpy_mean": float(np.abs(out - outputs["numpy"]).mean())})
    for dec in decoders.values():
        dec.close()
    return rows, diffs, {k: v for k, v in reasons.items() if v}


def run(datasets=("generated", "anime-holoen20"), out: Path = Path("benchmarks/results"), home: Path = Path("var"),
        seed: int = 0, epochs: int | None = None, latency_seconds: float = 1.0, progress: bool = True) -> int:
    from omokage.bench.choice import shared_data_dirs
    from omokage.errors import UserError
    quality, skipped, gen_generated, Z_pool, sizes, panels = [], [], None, None, {}, []
    for dataset in datasets:
        if dataset == "generated":
            X_train, X_test, side, label = _generated(home)
        else:
            try:
                X_train, X_test, side, label = _labelled(dataset, home, progress)
            except UserError as exc:
                print(f"skipping {dataset}: {exc} (looked under {', '.join(map(str, shared_data_dirs()))})",
                      flush=True)
                skipped.append({"dataset": dataset, "reason": str(exc)})
                continue
        print(f"{label}: {side}x{side}", flush=True)
        sizes[dataset] = label
        rows, gen, panel = quality_rows(dataset, X_train, X_test, side, home, seed=seed, epochs=epochs,
                                        progress=progress)
        quality += rows
        panels.append(panel)
        sheet_side = side
        if gen_generated is None:      # decode latency on the first data set's model (generated, by default)
            gen_generated, Z_pool, latency_on = gen, gen.transform(X_test[:64]), dataset
    if gen_generated is None:
        raise UserError("no data set could be measured: "
                        + "; ".join(f"{s['dataset']}: {s['reason']}" for s in skipped))
    sheet = comparison_sheet(Path(out) / "generator.jpg", panels, sheet_side)
    latency, diffs, unavailable = backend_rows(gen_generated, Z_pool, latency_seconds)
    table = ("## Held-out reconstruction\n\n" + markdown_table(quality, [
        ("dataset", "data set"), ("model", "model"), ("train_faces", "fitted on"), ("test_faces", "held out"),
        ("rmse_test", "held-out RMSE"), ("rmse_train", "train RMSE"), ("sharpness", "sharpness"),
        ("sharpness_64", "sharpness @64 px"), ("fit_seconds", "fit (s)"), ("residual", "residual"),
        ("best_epoch", "best epoch")])
        + f"\n\n## Decode latency ({latency_on} gen model, output {gen_generated.input_side_}x"
          f"{gen_generated.input_side_}x3)\n\n" + markdown_table(latency, [
            ("backend", "backend"), ("batch", "batch"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
            ("per_image_ms", "ms / image"), ("images_per_s", "images / s")])
        + "\n\n## Differences between backends (64 held-out latents)\n\n" + markdown_table(diffs, [
            ("backend", "backend"), ("max_abs_diff", "max abs diff vs torch module"),
            ("vs_numpy_max", "max abs diff vs numpy (PCA)"),
            ("vs_numpy_mean", "mean abs diff vs numpy (PCA)")]))
    missing = "; ".join(f"{k}: {v}" for k, v in unavailable.items())
    notes = ("Data sets: " + "; ".join(sizes.values()) + ". RMSE: per pixel value in [0, 1], outputs clipped to "
             "[0, 1]. Sharpness: mean squared Laplacian of the reconstructions / of the originals (1.0 = as sharp "
             "as the originals), at full size and at 64 px. Fit times on this machine's CPUs, beside whatever else "
             "ran on them. Latency: one call per sample, in-process; numpy with 1 BLAS thread as the server runs it."
             + f" Held-out faces beside their reconstructions: {sheet.name}."
             + (f" Not measured here: {missing}." if missing else "")
             + (" Skipped data sets: " + "; ".join(f"{s['dataset']} ({s['reason']})" for s in skipped) + "."
                if skipped else ""))
    write_results(Path(out), "generator", {"quality": quality, "latency": latency, "differences": diffs,
                                           "unavailable": unavailable, "skipped": skipped, "datasets": sizes},
                  table, notes)
    return 0
