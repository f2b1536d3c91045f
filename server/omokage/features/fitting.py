"""`omokage fit`: fit feature models on a catalog and save them into a model repository."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from omokage.catalog.store import Catalog
from omokage.features import make_model
from omokage.features.training import training_threads


@dataclass
class FitResult:
    name: str
    seconds: float
    rmse: float             # per-pixel reconstruction RMSE on the catalog, in [0, 1] units
    n_features: int
    path: Path


def reconstruction_rmse(model, X: np.ndarray, Z: np.ndarray, chunk: int = 256) -> float:
    total = 0.0
    for start in range(0, len(X), chunk):
        R = model.inverse_transform(Z[start:start + chunk])
        total += float(np.square(R - X[start:start + chunk], dtype=np.float32).sum(dtype=np.float64))
    return float(np.sqrt(total / X.size))


def check_model_names(names) -> list[str]:
    """`names` if every one is a model omokage can fit, else a UserError naming the known ones."""
    from omokage.errors import UserError
    from omokage.features import MODEL_CLASSES
    names = list(names)
    unknown = [n for n in names if n not in MODEL_CLASSES]
    if unknown:
        raise UserError(f"unknown model {', '.join(map(repr, unknown))}; choose from {', '.join(MODEL_CLASSES)}")
    if not names:
        raise UserError(f"no model to fit; choose from {', '.join(MODEL_CLASSES)}")
    return names


def fit_models(catalog_path: str | os.PathLike, out: str | os.PathLike, names: list[str], n_components: int = 30,
               ae_epochs: int | None = None, seed: int = 0, progress: bool = True,
               device: str = "cpu") -> list[FitResult]:
    check_model_names(names)   # before reading the catalog or fitting anything: a typo fails at once
    catalog = Catalog(catalog_path)
    print(f"fitting {', '.join(names)} on {len(catalog)} faces of {catalog.image_size}x{catalog.image_size} "
          f"from {catalog_path}", flush=True)
    X = catalog.matrix()
    meta = {"catalog": {"path": str(catalog_path), "count": len(catalog), "fingerprint": catalog.fingerprint(),
                        "image_size": catalog.image_size}}
    results = []
    fitted: dict[str, object] = {}
    for name in names:
        params = {"random_state": seed} if name != "raw" else {}
        if name in ("ae", "contrastive", "gen"):
            params["progress"] = progress
        if name == "ae":
            if ae_epochs is not None:
                params["epochs"] = ae_epochs
        if name == "gen" and device != "cpu":     # only gen trains on a GPU (`omokage fit --device`)
            params["device"] = device
        model = make_model(name, n_components=n_components, **params)
        print(f"  {name}: fitting ...", flush=True)
        t0 = time.perf_counter()
        # BLAS threads sized like torch's (features/training.py): on busy cores a full-width OpenBLAS pool spins
        # and a PCA fit took 16 s instead of 3
        with threadpool_limits(training_threads(), user_api="blas"):
            if name == "sketch" and "pca" in fitted:   # the same PCA (same settings, same data): not fitted twice
                Z = model.fit(X, latent=fitted["pca"]).transform(X)
            else:
                Z = model.fit_transform(X)
        fitted[name] = model
        seconds = time.perf_counter() - t0
        rmse = reconstruction_rmse(model, X, Z)
        path = model.save(out, catalog_features=Z, metadata={**meta, "fit_seconds": seconds, "rmse": rmse})
        results.append(FitResult(name, seconds, rmse, int(Z.shape[1]), path))
        print(f"  {name}: {seconds:7.2f} s, {Z.shape[1]} features, reconstruction RMSE {rmse:.4f} -> {path}", flush=True)
        if name != "raw" and Z.shape[1] < n_components:   # PCA/NMF: no more components than faces (or pixel values)
            n, d = X.shape
            limit = (f"a catalog of {n} faces allows at most {n}" if n <= d
                     else f"images of {d} values allow at most {d}")
            print(f"  {name}: note: {Z.shape[1]} features, not the {n_components} asked for: {limit}", flush=True)
    print("\n| model | fit time (s) | features | RMSE |\n|---|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.seconds:.2f} | {r.n_features} | {r.rmse:.4f} |")
    by_name = {r.name: r for r in results}
    if "ae" in by_name and "pca" in by_name and by_name["ae"].rmse > 1.25 * by_name["pca"].rmse:
        # a network trained on a few dozen faces learns little; it is served all the same, so say what it is worth
        print(f"note: the autoencoder reconstructs far worse than PCA here (RMSE {by_name['ae'].rmse:.4f} against "
              f"{by_name['pca'].rmse:.4f}): {len(catalog)} faces are few to train it on (it needs several hundred); "
              "its grids will be poorer than PCA's", flush=True)
    return results


def stale_models(catalog_dir: str | os.PathLike, models_dir: str | os.PathLike, names) -> list[str]:
    """The models among `names` with no fitted version in `models_dir`, or fitted on another catalog."""
    from omokage.features import ModelRepositoryError, latest_version_dir
    fingerprint = Catalog(catalog_dir).fingerprint()
    stale = []
    for name in names:
        try:
            config = json.loads((latest_version_dir(models_dir, name) / "config.json").read_text())
        except (ModelRepositoryError, OSError, ValueError):
            stale.append(name)
            continue
        if config.get("catalog", {}).get("fingerprint") != fingerprint:
            stale.append(name)
    return stale


def ensure_models(catalog_dir: str | os.PathLike, models_dir: str | os.PathLike, names, ae_epochs: int | None = None,
                  progress: bool = True) -> list[str]:
    """Fit the models that are missing or stale (see `stale_models`); returns the ones fitted."""
    stale = stale_models(catalog_dir, models_dir, names)
    if stale:
        note = f" (autoencoder: {ae_epochs} epochs)" if ae_epochs and "ae" in stale else ""
        print(f"fitting {', '.join(stale)} into {models_dir}{note}; this is done once", flush=True)
        fit_models(catalog_dir, models_dir, stale, ae_epochs=ae_epochs, progress=progress)
    return stale
