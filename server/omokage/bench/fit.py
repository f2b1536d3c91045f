"""`omokage bench fit`: fit time and reconstruction error of raw/PCA/NMF/AE beside the study's table.

Baselines in the same run: scikit-learn's PCA with its default power iterations and scikit-learn's NMF
(float64 coordinate descent, same init, same iteration budget) on the same matrix.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omokage.bench.common import markdown_table, write_results

STUDY_SECONDS = {"pca": 5.0, "nmf": 85.0, "ae": 200_000.0, "raw": None}  # i7-9700K / RTX 2080 SUPER
TARGET_SECONDS = {"pca": 1.0, "nmf": 10.0}


def run(count: int = 1462, out: Path = Path("benchmarks/results"), ae_epochs: int | None = None,
        home: Path = Path("var"), baselines: bool = True, image_size: int = 200,
        models: tuple[str, ...] = ("raw", "pca", "nmf", "ae")) -> int:
    from sklearn.decomposition import NMF, PCA

    from omokage.catalog.generate import ensure_catalog
    from omokage.catalog.store import Catalog
    from omokage.features import make_model
    from omokage.features.fitting import reconstruction_rmse
    # drawn once (about 185 MB at 1462 faces): reused while count, seed, size and generator version match
    catalog = Catalog(ensure_catalog(Path(home) / f"bench-catalog-{count}", count=count, seed=0, image_size=image_size,
                                     announce_reuse=True))
    t0 = time.perf_counter()
    X = catalog.matrix()
    load_s = time.perf_counter() - t0
    print(f"{len(catalog)} faces, {X.shape[1]:,} values each (loaded in {load_s:.2f} s)")
    rows = []
    for name in models:
        params = {"epochs": ae_epochs} if name == "ae" and ae_epochs else {}
        model = make_model(name, **params)
        t = time.perf_counter()
        Z = model.fit_transform(X)
        secs = time.perf_counter() - t
        rows.append({"model": name, "implementation": "omokage", "seconds": secs, "rmse": reconstruction_rmse(model, X, Z),
                     "features": int(Z.shape[1]), "study_seconds": STUDY_SECONDS[name],
                     "target_seconds": TARGET_SECONDS.get(name), "iterations": getattr(model, "n_iter_", None)})
        print(f"  {name}: {secs:.2f} s, RMSE {rows[-1]['rmse']:.4f}", flush=True)
    if baselines:
        pca = PCA(30, svd_solver="randomized", random_state=0)
        t = time.perf_counter()
        Z = pca.fit_transform(X)
        secs = time.perf_counter() - t
        rows.append({"model": "pca", "implementation": "sklearn PCA (iterated_power=auto)", "seconds": secs,
                     "rmse": float(np.sqrt(np.mean((pca.inverse_transform(Z) - X) ** 2))), "features": 30,
                     "study_seconds": STUDY_SECONDS["pca"]})
        print(f"  sklearn pca: {secs:.2f} s", flush=True)
        ours = next((r for r in rows if r["model"] == "nmf"), {"iterations": None})
        iters = int(ours["iterations"] or 20)
        nmf = NMF(30, init="nndsvda", solver="cd", max_iter=iters, tol=0, random_state=0)
        t = time.perf_counter()
        W = nmf.fit_transform(X)
        secs = time.perf_counter() - t
        rmse = float(np.sqrt(np.mean((W @ nmf.components_ - X) ** 2)))
        rows.append({"model": "nmf", "implementation": f"sklearn NMF cd, {iters} iterations", "seconds": secs,
                     "rmse": rmse, "features": 30, "study_seconds": STUDY_SECONDS["nmf"], "iterations": iters})
        print(f"  sklearn nmf: {secs:.2f} s", flush=True)
    table = markdown_table(rows, [("model", "model"), ("implementation", "implementation"), ("seconds", "fit (s)"),
                                  ("target_seconds", "target (s)"), ("study_seconds", "study (s)"),
                                  ("rmse", "RMSE"), ("features", "features"), ("iterations", "iterations")])
    notes = (f"{len(catalog)} generated faces at {catalog.image_size}x{catalog.image_size}x3; fit time excludes "
             f"loading pixels ({load_s:.2f} s). RMSE is per pixel value in [0, 1] on the training faces. "
             "Study: i7-9700K + RTX 2080 SUPER (AE on the GPU); here: this machine's CPUs only.")
    write_results(Path(out), "fit", {"count": len(catalog), "rows": rows, "load_seconds": load_s}, table, notes)
    return 0
