"""`omokage bench identity`: does each feature space put faces of the same character (or person) together?

For a labelled image set (anime-holoen20: 20 characters; faces94-female: 19 people) the train split is ingested into a
catalog once, every model is fitted on that catalog alone (no labels: all the models are unsupervised), and the
figure is the leave-one-out 1-NN identity accuracy in the model's own space under the Euclidean distance the engine
uses: for each face, is its nearest other face of the same character? The simulated user's colour+HOG descriptor
(`omokage.bench.perceptual.ImageDescriptor`, 57-62% on anime-holoen20 in `bench choice`) and chance (the expected
accuracy of a random neighbour) are measured in the same run for scale.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from omokage.errors import UserError

DATASETS = ("anime-holoen20", "faces94-female")
MODELS = ("raw", "pca", "nmf", "contrastive")
DEFAULT_OUT = Path("benchmarks/results")


def resolve(dataset: str | Path) -> Path:
    """A data set name under ../shared/data (anime-holoen20, faces94-female) or a path to one laid out like them."""
    from omokage.bench.choice import shared_data_dirs
    path = Path(dataset)
    candidates = [path] if path.is_dir() else [base / str(dataset) for base in shared_data_dirs()]
    for c in candidates:
        if (c / "labels.csv").is_file() and (c / "images").is_dir():
            return c
    raise UserError(f"no labelled image set at {', '.join(map(str, candidates))}: it needs labels.csv "
                    "(file,label,split,...) and images/")


def labelled_catalog(dataset_dir: Path, home: Path, split: str = "train", progress: bool = True):
    """The `split` images of a labelled set as a catalog under home/NAME/catalog (ingested once), and their labels.

    anime-holoen20 goes to home/holoen20/catalog, where `bench choice` puts the same train split. Near-duplicate
    removal is off: several photos of one sitter are the point here.
    """
    from omokage.catalog.ingest import ingest_images
    from omokage.catalog.store import Catalog
    root = Path(home) / {"anime-holoen20": "holoen20"}.get(dataset_dir.name, dataset_dir.name)
    catalog_dir = root / "catalog"
    if not (catalog_dir / "catalog.json").is_file():
        rows = [r for r in csv.DictReader(open(dataset_dir / "labels.csv", newline="")) if r.get("split") == split]
        if not rows:
            raise UserError(f"{dataset_dir / 'labels.csv'} has no rows of split {split!r}")
        manifest = root / f"manifest-{split}.csv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "title", "url", "label", "split"])
            for r in rows:
                rel = Path(r["file"]).relative_to("images").as_posix()
                w.writerow([rel, f"{r['label']} {Path(rel).stem[:12]}", "", r["label"], r["split"]])
        print(f"ingesting the {len(rows)} {split}-split images of {dataset_dir} into {catalog_dir}", flush=True)
        report = ingest_images(dataset_dir / "images", catalog_dir, manifest=manifest, detector="none",
                               image_size=200, progress=progress, dedup_threshold=-1)
        print(f"ingested {report.added} faces in {report.seconds:.1f} s", flush=True)
    catalog = Catalog(catalog_dir)
    labels = [str(it.extra.get("label", "")) for it in catalog.items]
    if not all(labels):
        raise UserError(f"{catalog_dir}: some items have no label; delete it and rerun to ingest it again")
    return catalog, np.array(labels)


def pairwise(Z: np.ndarray) -> np.ndarray:
    from omokage.bench.perceptual import _pairwise
    return _pairwise(Z)


def one_nn_accuracy(Z: np.ndarray, labels) -> float:
    """Leave-one-out 1-NN label accuracy under the Euclidean distance of the rows of Z."""
    from omokage.bench.perceptual import nearest_neighbour_accuracy
    return nearest_neighbour_accuracy(pairwise(Z), labels)


def chance(labels) -> float:
    """Expected 1-NN accuracy of a uniformly random other face: Σ_c n_c (n_c - 1) / (n (n - 1))."""
    _, counts = np.unique(labels, return_counts=True)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def identity_rows(dataset: str | Path, home: Path, models=MODELS, seed: int = 0, epochs: int | None = None,
                  progress: bool = True) -> list[dict]:
    from omokage.bench.perceptual import ImageDescriptor, nearest_neighbour_accuracy
    from omokage.features import make_model
    dataset_dir = resolve(dataset)
    catalog, labels = labelled_catalog(dataset_dir, home, progress=progress)
    X = catalog.matrix()
    n_ids = len(set(labels))
    base = {"dataset": dataset_dir.name, "faces": len(labels), "identities": n_ids}
    rows = [{**base, "space": "chance (random neighbour)", "accuracy": chance(labels)}]
    desc = ImageDescriptor(catalog.pixels)
    rows.append({**base, "space": "colour+HOG (simulated user)", "features": "hist 40 + HOG 1764",
                 "accuracy": nearest_neighbour_accuracy(desc.matrix(), labels)})
    for name in models:
        params = {} if name == "raw" else {"random_state": seed}
        if name in ("ae", "contrastive"):
            params["progress"] = progress
            if epochs is not None:
                params["epochs"] = epochs
        model = make_model(name, **params)
        t0 = time.perf_counter()
        Z = model.fit_transform(X)
        secs = time.perf_counter() - t0
        rows.append({**base, "space": name, "features": int(Z.shape[1]), "fit_seconds": secs,
                     "accuracy": one_nn_accuracy(Z, labels)})
        print(f"  {dataset_dir.name} {name}: 1-NN identity accuracy {rows[-1]['accuracy']:.3f} "
              f"(fit {secs:.1f} s)", flush=True)
    return rows


def run(datasets=("anime-holoen20",), models=MODELS, home: Path = Path("var"), out: Path = DEFAULT_OUT,
        seed: int = 0, epochs: int | None = None, progress: bool = True) -> int:
    from omokage.bench.common import markdown_table, write_results
    rows: list[dict] = []
    for dataset in datasets:
        try:
            rows += identity_rows(dataset, Path(home), models, seed=seed, epochs=epochs, progress=progress)
        except UserError as exc:
            if len(datasets) == 1:
                raise
            print(f"skipping {dataset}: {exc}", flush=True)
    table = markdown_table(rows, [("dataset", "data set"), ("faces", "faces"), ("identities", "identities"),
                                  ("space", "space"), ("features", "dims"), ("accuracy", "1-NN identity accuracy"),
                                  ("fit_seconds", "fit (s)")])
    command = (f"omokage bench identity --dataset {','.join(map(str, datasets))} --models {','.join(models)}"
               + (f" --epochs {epochs}" if epochs is not None else "") + f" --seed {seed}")
    notes = ("Leave-one-out 1-NN accuracy: the share of train-split faces whose nearest other face (Euclidean, in "
             "each model's own space, models fitted on that catalog alone and without labels) shows the same "
             "character / person. colour+HOG is the simulated user's descriptor of `bench choice`, not an engine "
             f"space.\n\nCommand: `{command}`")
    write_results(Path(out), "embedding-identity", {"rows": rows, "command": command}, table, notes)
    return 0
