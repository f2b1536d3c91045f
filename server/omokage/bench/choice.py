"""`omokage bench choice`: simulated users hunting a hidden target face, per algorithm.

A simulated user holds a target face. Each step it looks at the 9 candidates of the real selection loop (the sans-I/O
`SelectionSession`, the same state machine the server runs) and picks the one that looks closest to the target in a
perceptual space the engine never sees (`omokage.bench.perceptual`): generating attributes on the generated catalog,
a colour-histogram + HOG descriptor on real images. People err, so the pick is drawn from a softmax over those
distances. The hunt ends when the target (on a labelled real set: any face of the target's character) is in the grid
— step 1 is the first grid — or at the step limit.

Every arm (raw, PCA, NMF, AE with the study's chosen-plus-8-nearest policy, and the random-9 floor: chosen plus 8
random unseen faces) meets the same users: the same targets, the same query images, the same first random grid and
the same stream of pick noise, so differences between arms are paired. The figures: success within 3/5/10 steps
(Wilson 95% intervals), median steps and mean faces viewed (steps x 9, as PicHunter's "images viewed"; bootstrap 95%
intervals), and paired bootstrap intervals for each arm's difference from the floor. See docs/choice-benchmark.md.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from omokage.catalog.store import Catalog, images_to_matrix
from omokage.errors import UserError
from omokage.selection import ChosenPlusNearest, SelectionSession
from omokage.selection.policy import CandidatePolicy, RandomPolicy

if TYPE_CHECKING:
    from omokage.engine import Engine

GRID = 9
ALGORITHMS = ("raw", "pca", "nmf", "ae")
FLOOR = "random-9"
STARTS = ("random", "image")
REPORT_STEPS = (3, 5, 10)
BOOTSTRAP = 2000
DEFAULT_OUT = Path("benchmarks/results/choice")           # the CLI's default --out
GENERATED = {"count": 1500, "seed": 0, "image_size": 200}  # the demo catalog (`omokage demo`)
HOLOEN20 = "anime-holoen20"
HOLOEN20_URL = ("https://github.com/Sytwu/Anime-Face-Recognition/blob/"
                "a9d509c85ee5094ea8efde4bb2ef37beb67d1519/")


# --- the simulated user -------------------------------------------------------------------------------------------------

def simulated_pick(distances, temperature: float, rng: np.random.Generator) -> int:
    """Index of the candidate the user picks: softmax over -distance / temperature (distances in median units).

    temperature <= 0 is the noiseless user: the first candidate at the smallest distance. Exactly one uniform draw is
    consumed per pick either way, so arms that show different grids still share the user's noise stream.
    """
    d = np.asarray(distances, dtype=np.float64)
    u = rng.random()
    if temperature <= 0:
        return int(np.argmin(d))
    w = np.exp(-(d - d.min()) / temperature)
    c = np.cumsum(w)
    return int(min(np.searchsorted(c, u * c[-1], side="right"), len(d) - 1))


def simulate_user(session: SelectionSession, target_group: int, groups: np.ndarray, user_distance: np.ndarray,
                  temperature: float, max_steps: int, rng: np.random.Generator,
                  query: np.ndarray | None = None, tally: list[int] | None = None) -> int | None:
    """Run one hunt on a fresh session. Returns the step (1 = first grid) whose grid shows the target, or None.

    `groups[i]` is the item's identity for "found" (the item itself on a generated catalog, the character on a labelled
    set); `user_distance[i]` is the user's perceptual distance from item i to the target. When the target appears the
    user decides on it (the session ends DECIDED); otherwise it chooses by `simulated_pick`. `tally`, if given, is
    [picks, picks of the closest candidate] and is added to (how often the noisy user still took the closest face).
    """
    step = session.start(query)
    while True:
        ids = np.fromiter(step.ids, dtype=np.int64, count=len(step.ids))
        hit = np.flatnonzero(groups[ids] == target_group)
        if hit.size:
            session.decide(int(ids[hit[0]]))
            return step.step
        if step.step >= max_steps or len(ids) < 2:
            return None
        d = user_distance[ids]
        pick = simulated_pick(d, temperature, rng)
        if tally is not None:
            tally[0] += 1
            tally[1] += int(d[pick] == d.min())
        step = session.choose(int(ids[pick]))


# --- data sets ----------------------------------------------------------------------------------------------------------

@dataclass
class ChoiceData:
    """Everything the benchmark needs about one data set."""

    name: str
    engine: "Engine"
    groups: np.ndarray                 # (N,) found = a candidate with the target's group
    user_distances: np.ndarray         # (N, N): row t = the user's distance from every item to target t, median units
    unit: float                        # the raw median the distances were divided by
    target_pool: np.ndarray            # item ids that may be targets
    make_query: Callable[[int, np.random.Generator], np.ndarray]   # target -> query image (H, W, 3) uint8
    describe: dict = field(default_factory=dict)                   # perception / found rule / query source / notes


def normalise_user_distances(D: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, float]:
    """Divide by the median distance between a target and an item of another group; same group -> 0."""
    D = np.asarray(D, dtype=np.float64)
    other = groups[None, :] != groups[:, None]
    unit = float(np.median(D[other]))
    if not unit > 0:
        raise ValueError("the median perceptual distance is zero; cannot normalise")
    out = np.where(other, D / unit, 0.0)
    return out, unit


def generated_data(engine, progress: bool = False) -> ChoiceData:
    """A generated catalog: the user compares faces by `attribute_distance` of their generating attributes; the query
    image is a `perturbed_render` of the target (pose, lighting, sometimes expression)."""
    from omokage.bench.perceptual import AttributeDistances
    from omokage.catalog.generate import perturbed_render
    catalog = engine.catalog
    attrs = [item.attributes for item in catalog.items]
    if not all(attrs):
        raise UserError(f"{catalog.path} has items without generating attributes; the generated benchmark needs a "
                        "catalog made by `omokage catalog generate`")
    dist = AttributeDistances(attrs)
    groups = np.arange(len(catalog))
    D, unit = normalise_user_distances(dist.matrix(), groups)
    size = catalog.image_size

    def make_query(target: int, rng: np.random.Generator) -> np.ndarray:
        return perturbed_render(attrs[target], rng, size)

    return ChoiceData(
        name="generated", engine=engine, groups=groups, user_distances=D, unit=unit,
        target_pool=np.arange(len(catalog)), make_query=make_query,
        describe={"perception": "attribute_distance of the generating attributes (never pixels)",
                  "found": "the target item itself is in the grid",
                  "query": "perturbed_render of the target (small shift/scale/rotation, lighting and colour jitter, "
                           "30% another expression), projected through each model",
                  "unit_raw": unit})


def _label_of_items(catalog: Catalog, rows: list[dict]) -> list[str]:
    by_file = {r["file"]: r["label"] for r in rows}
    by_name = {Path(r["file"]).name: r["label"] for r in rows}
    labels = []
    for item in catalog.items:
        label = item.extra.get("label") or item.attributes.get("label")
        if not label and item.source:
            src = str(item.source).replace(os.sep, "/")
            label = next((lab for f, lab in by_file.items() if src.endswith(f)), None) or by_name.get(Path(src).name)
        if not label:
            raise UserError(f"cannot tell the character of catalog item {item.id} ({item.source}); "
                            "the catalog must be ingested with the labels manifest")
        labels.append(str(label))
    return labels


def holoen20_data(engine, dataset_dir: Path, progress: bool = False, perceive: str = "character") -> ChoiceData:
    """anime-holoen20 ingested from its train split: found = any face of the target's character in the grid; the
    query image is a held-out (test split) image of the character, which is not in the catalog.

    perceive="character" (the default): the user knows the target's character, not one drawing of it, and compares a
    face with the character by its mean colour+HOG distance to that character's catalog faces. perceive="image": the
    user compares with the one target drawing."""
    from omokage.bench.perceptual import ImageDescriptor, nearest_neighbour_accuracy
    from omokage.imageio import load_image_file
    catalog = engine.catalog
    rows = list(csv.DictReader(open(dataset_dir / "labels.csv", newline="")))
    labels = _label_of_items(catalog, rows)
    names = sorted(set(labels))
    groups = np.array([names.index(lab) for lab in labels])

    from tqdm import tqdm
    desc = ImageDescriptor(tqdm(catalog.pixels, desc="colour+HOG descriptors", unit="face", disable=not progress))
    Dc, Dh = desc.matrices()
    w = desc.colour_weight
    pair = w * Dc + (1 - w) * Dh
    if perceive == "character":   # the user's picture of a character: the mean distance to that character's faces
        char_mean = np.stack([pair[groups == g].mean(axis=0) for g in range(len(names))])
        D, unit = normalise_user_distances(char_mean[groups], groups)
        seen = "the mean, over the target character's catalog faces, of"
    elif perceive == "image":
        D, unit = normalise_user_distances(pair, groups)
        seen = "the distance to the one target drawing:"
    else:
        raise ValueError(f"perceive must be 'character' or 'image', not {perceive!r}")

    queries: dict[str, list[Path]] = {}
    for r in rows:
        if r.get("split") == "test" and r["label"] in names:
            queries.setdefault(r["label"], []).append(dataset_dir / r["file"])
    pool = np.array([i for i, lab in enumerate(labels) if queries.get(lab)])
    size = catalog.image_size

    def make_query(target: int, rng: np.random.Generator) -> np.ndarray:
        files = queries[labels[target]]
        return load_image_file(files[int(rng.integers(len(files)))], size)

    return ChoiceData(
        name=HOLOEN20, engine=engine, groups=groups, user_distances=D, unit=unit, target_pool=pool,
        make_query=make_query,
        describe={"perception": f"character first, then {seen} {w:g} x colour (hue/saturation + grey-value "
                                f"histogram, Hellinger) + {1 - w:g} x HOG (each part divided by its median pairwise "
                                "distance)",
                  "perceive": perceive,
                  "found": "any face of the target's character is in the grid",
                  "query": "a held-out (test split) image of the target's character, not in the catalog, projected "
                           "through each model",
                  "characters": len(names), "faces_per_character": {n: int((groups == i).sum())
                                                                   for i, n in enumerate(names)},
                  "query_images": sum(len(v) for v in queries.values()),
                  "descriptor_1nn_character_accuracy": {
                      "colour+hog": nearest_neighbour_accuracy(pair, groups),
                      "colour": nearest_neighbour_accuracy(Dc, groups),
                      "hog": nearest_neighbour_accuracy(Dh, groups)},
                  "unit_raw": unit})


# --- data preparation -------------------------------------------------------------------------------------------------

def prepare_generated(home: Path, algorithms=ALGORITHMS, ae_epochs: int | None = None, progress: bool = True):
    """The demo catalog and models (`omokage demo` makes the same ones), generated and fitted where missing."""
    from omokage.demo import prepare
    from omokage.engine import Engine
    catalog_dir, models_dir = prepare(Path(home), count=GENERATED["count"], seed=GENERATED["seed"],
                                      algorithms=algorithms, ae_epochs=ae_epochs, progress=progress)
    return Engine.open(catalog_dir, models_dir, algorithms=list(algorithms))


def write_holoen20_manifest(dataset_dir: Path, path: Path, split: str | None = "train") -> int:
    """A manifest CSV (file,title,url,label,split) for `ingest_images`, from labels.csv; returns its row count."""
    rows = list(csv.DictReader(open(dataset_dir / "labels.csv", newline="")))
    if split:
        rows = [r for r in rows if r.get("split") == split]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "title", "url", "label", "split"])
        for r in rows:
            rel = Path(r["file"]).relative_to("images").as_posix()
            w.writerow([rel, f"{r['label']} {Path(rel).stem[:8]}", HOLOEN20_URL + r["source_path"], r["label"],
                        r["split"]])
    return len(rows)


def prepare_holoen20(dataset_dir: Path, home: Path, algorithms=ALGORITHMS, ae_epochs: int | None = None,
                     progress: bool = True):
    """Ingest the train split into home/holoen20/catalog (once) and fit the models into home/holoen20/models.

    Only the train split goes into the catalog (the manifest lists only its files, and ingest skips files not in the
    manifest): the test split supplies the image-start queries, which must not be catalog items (a query's nearest
    neighbour would be itself). The manifest is written to home/holoen20/manifest-train.csv; nothing of the data set
    is written into the repository.
    """
    from omokage.engine import Engine
    from omokage.features.fitting import ensure_models
    root = Path(home) / "holoen20"
    catalog_dir, models_dir = root / "catalog", root / "models"
    if not (catalog_dir / "catalog.json").is_file():
        try:
            from omokage.catalog.ingest import ingest_images
        except ImportError as exc:
            raise UserError(f"the {HOLOEN20} benchmark needs omokage.catalog.ingest ({exc})") from None
        manifest = root / "manifest-train.csv"
        n = write_holoen20_manifest(dataset_dir, manifest, split="train")
        print(f"ingesting the {n} train-split images of {dataset_dir} into {catalog_dir}", flush=True)
        report = ingest_images(dataset_dir / "images", catalog_dir, manifest=manifest, detector="none",
                               image_size=200, progress=progress)
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.per_reason.items())) or "none"
        print(f"ingested {report.added} faces in {report.seconds:.1f} s (skipped: {reasons})", flush=True)
    ensure_models(catalog_dir, models_dir, algorithms, ae_epochs=ae_epochs, progress=progress)
    return Engine.open(catalog_dir, models_dir, algorithms=list(algorithms))


def shared_data_dirs() -> list[Path]:
    """Where ../shared/data may be: next to the repository (this file is server/omokage/bench/choice.py), or next to
    the working directory."""
    here = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return [here, Path.cwd().resolve().parent / "shared" / "data"]


def resolve_dataset(dataset: str | os.PathLike) -> Path | None:
    """'generated' -> None; 'anime-holoen20' / 'holoen20' -> ../shared/data/anime-holoen20; else a path."""
    if str(dataset) == "generated":
        return None
    if str(dataset) in (HOLOEN20, "holoen20"):
        for base in shared_data_dirs():
            if (base / HOLOEN20 / "labels.csv").is_file():
                return base / HOLOEN20
        raise FileNotFoundError(", ".join(str(b / HOLOEN20) for b in shared_data_dirs()))
    path = Path(dataset)
    if not (path / "labels.csv").is_file() or not (path / "images").is_dir():
        raise UserError(f"{path} is not a labelled image set: it needs labels.csv (file,label,split,...) and images/")
    return path


# --- the benchmark ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arm:
    """One thing being measured: a feature space and a candidate policy."""

    name: str
    algorithm: str                                  # whose FeatureSpace the session runs on
    policy: Callable[[], CandidatePolicy]           # a fresh policy per session (policies may keep state)
    image_start: bool = True                        # False: the "image start" is a random start (the floor)


def default_arms(algorithms) -> list[Arm]:
    arms = [Arm(a, a, ChosenPlusNearest) for a in algorithms]
    return arms + [Arm(FLOOR, algorithms[0], RandomPolicy, image_start=False)]


def _seeds(seed: int, stream: int, n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n, dtype=np.uint64) >> np.uint64(1)]


def project_queries(engine, algorithm: str, images: list[np.ndarray], chunk: int = 64) -> np.ndarray:
    """Batched `Engine.project` (feature vectors only), checked against `Engine.project` on the first image."""
    model = engine.models[algorithm].model
    out = [model.transform(images_to_matrix(np.stack(images[s:s + chunk]))) for s in range(0, len(images), chunk)]
    vectors = np.concatenate(out).astype(np.float32)
    single = np.asarray(engine.project(algorithm, images[0])[0], dtype=np.float32)
    if not np.allclose(single, vectors[0], rtol=1e-3, atol=1e-4 * (1 + float(np.abs(single).max()))):
        raise AssertionError(f"{algorithm}: batched projection differs from Engine.project; update "
                             "omokage/bench/choice.py:project_queries")
    return vectors


def simulate(data: ChoiceData, users: int = 500, max_steps: int = 10, temperature: float = 0.1, seed: int = 0,
             arms: list[Arm] | None = None, starts=STARTS, progress: bool = True) -> dict:
    """Run every arm x start over the same `users`; returns {"targets", "steps": {start: {arm: array}}} where a step
    count is 1..max_steps, or inf when the target was not found."""
    from tqdm import tqdm
    engine = data.engine
    arms = arms or default_arms([a for a in ALGORITHMS if a in engine.models])
    if users < 1 or max_steps < 1:
        raise UserError("--users and --max-steps must be at least 1")
    pool = np.asarray(data.target_pool)
    targets = np.random.default_rng([seed, 0]).choice(pool, size=users, replace=users > len(pool))
    session_seeds = _seeds(seed, 1, users)
    if not set(starts) <= set(STARTS):
        raise ValueError(f"starts must be among {STARTS}")
    queries_needed = "image" in starts and any(a.image_start for a in arms)
    queries: dict[str, np.ndarray] = {}
    if queries_needed:
        images = [data.make_query(int(t), np.random.default_rng([seed, 2, u]))
                  for u, t in enumerate(tqdm(targets, desc="query images", unit="img", disable=not progress))]
        for alg in sorted({a.algorithm for a in arms if a.image_start}):
            queries[alg] = project_queries(engine, alg, images)
    steps: dict[str, dict[str, np.ndarray]] = {s: {} for s in starts}
    tallies: dict[str, dict[str, list[int]]] = {s: {} for s in starts}
    bar = tqdm(total=len(starts) * len(arms) * users, desc="simulated users", unit="user", disable=not progress)
    for start in starts:
        si = STARTS.index(start)   # the pick-noise stream depends on the start, not on which starts are run
        for arm in arms:
            space = engine.space(arm.algorithm)
            result = np.full(users, np.inf)
            tally = [0, 0]
            for u, target in enumerate(targets):
                session = SelectionSession(space, seed=session_seeds[u], policy=arm.policy(), grid_size=GRID)
                query = queries[arm.algorithm][u] if (start == "image" and arm.image_start) else None
                found = simulate_user(session, data.groups[target], data.groups, data.user_distances[target],
                                      temperature, max_steps, np.random.default_rng([seed, 3, u, si]), query,
                                      tally)
                if found is not None:
                    result[u] = found
            steps[start][arm.name] = result
            tallies[start][arm.name] = tally
            bar.update(users)
    bar.close()
    return {"targets": targets, "steps": steps, "picks": tallies, "arms": [a.name for a in arms]}


# --- statistics ---------------------------------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def summarise(steps: np.ndarray, max_steps: int, idx: np.ndarray) -> dict:
    """Figures for one arm; `idx` is the (B, n) bootstrap resample shared by all arms (paired)."""
    n = len(steps)
    curve = []
    for k in range(1, max_steps + 1):
        c = int((steps <= k).sum())
        lo, hi = wilson(c, n)
        curve.append({"steps": k, "found": c, "rate": c / n, "lo": lo, "hi": hi})
    median = float(np.median(steps))
    boot_median = np.median(steps[idx], axis=1)
    faces = np.where(np.isfinite(steps), steps, max_steps) * GRID      # failures count at the limit (a lower bound)
    boot_faces = faces[idx].mean(axis=1)
    found = steps[np.isfinite(steps)]
    return {
        "users": n,
        "success": curve,
        "found": int(np.isfinite(steps).sum()),
        "median_steps": _num(median),
        "median_steps_ci": [_num(q) for q in np.quantile(boot_median, [0.025, 0.975], method="inverted_cdf")],
        "median_faces_viewed": _num(median * GRID),
        "mean_faces_viewed": round(float(faces.mean()), 4),
        "mean_faces_viewed_ci": [round(float(np.percentile(boot_faces, 2.5)), 4),
                                 round(float(np.percentile(boot_faces, 97.5)), 4)],
        "mean_faces_viewed_censored": int((~np.isfinite(steps)).sum()),
        "mean_steps_when_found": _num(found.mean()) if found.size else None,
    }


def paired_difference(a: np.ndarray, b: np.ndarray, k: int, idx: np.ndarray) -> dict:
    """success-within-k of a minus that of b over the same users, with a paired bootstrap 95% interval."""
    da, db = (a <= k).astype(float), (b <= k).astype(float)
    diff = da - db
    boot = diff[idx].mean(axis=1)
    return {"steps": k, "difference": round(float(diff.mean()), 6),
            "lo": round(float(np.percentile(boot, 2.5)), 6), "hi": round(float(np.percentile(boot, 97.5)), 6)}


def _rank_key(summary: dict) -> tuple:
    rate = {c["steps"]: c["rate"] for c in summary["success"]}
    return tuple(rate.get(k, rate[max(rate)]) for k in (5, 3, 10)) + (-summary["mean_faces_viewed"],)


def analyse(sim: dict, max_steps: int, seed: int) -> dict:
    targets_n = len(sim["targets"])
    idx = np.random.default_rng([seed, 4]).integers(0, targets_n, size=(BOOTSTRAP, targets_n))
    ks = [k for k in REPORT_STEPS if k <= max_steps] or [max_steps]
    results, comparisons = {}, {}
    for start, by_arm in sim["steps"].items():
        results[start] = {arm: summarise(s, max_steps, idx) for arm, s in by_arm.items()}
        for arm, (picks, closest) in sim.get("picks", {}).get(start, {}).items():
            results[start][arm]["picks"] = picks
            results[start][arm]["closest_pick_rate"] = round(closest / picks, 4) if picks else None
        floor = by_arm.get(FLOOR)
        comp: dict = {"vs_floor": {}}
        if floor is not None:
            for arm, s in by_arm.items():
                if arm != FLOOR:
                    comp["vs_floor"][arm] = [paired_difference(s, floor, k, idx) for k in ks]
        ranked = sorted((a for a in by_arm if a != FLOOR), key=lambda a: _rank_key(results[start][a]), reverse=True)
        if ranked:
            comp["ranking"] = ranked
            comp["winner"] = ranked[0]
            if len(ranked) > 1:
                comp["winner_vs_runner_up"] = {"runner_up": ranked[1], "by": [
                    paired_difference(by_arm[ranked[0]], by_arm[ranked[1]], k, idx) for k in ks]}
        comparisons[start] = comp
    return {"results": results, "comparisons": comparisons, "report_steps": ks}


# --- report -------------------------------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _rate_cell(summary: dict, k: int) -> str:
    c = summary["success"][k - 1]
    return f"{_pct(c['rate'])} ({_pct(c['lo'])}–{_pct(c['hi'])})"


def _median_cell(summary: dict, max_steps: int) -> str:
    m, (lo, hi) = summary["median_steps"], summary["median_steps_ci"]

    def f(v):
        return f"> {max_steps}" if v is None else (f"{v:g}")
    if m is None and lo is None:
        return f"> {max_steps}"
    return f"{f(m)} ({f(lo)}–{f(hi)})"


def _faces_cell(summary: dict) -> str:
    lo, hi = summary["mean_faces_viewed_ci"]
    ge = "≥ " if summary["mean_faces_viewed_censored"] else ""
    return f"{ge}{summary['mean_faces_viewed']:.1f} ({lo:.1f}–{hi:.1f})"


def _diff_cell(d: dict) -> str:
    return f"{100 * d['difference']:+.1f} ({100 * d['lo']:+.1f} to {100 * d['hi']:+.1f})"


def markdown_report(report: dict) -> str:
    cfg, ks = report["config"], report["report_steps"]
    max_steps = cfg["max_steps"]
    lines = [f"# Choice benchmark: {report['dataset']['name']}", "",
             f"{cfg['users']} simulated users per arm hunt a hidden target face in the pick-1-of-9 selection loop "
             f"(`SelectionSession`, the server's state machine), up to {max_steps} steps, pick temperature "
             f"{cfg['temperature']:g}, seed {cfg['seed']}. Every arm meets the same users (same targets, query images, "
             "first random grid and pick noise), so differences are paired.", "",
             f"- **Catalog**: {report['dataset']['catalog']} ({report['dataset']['items']} faces, "
             f"{report['dataset']['image_size']} px).",
             f"- **The user sees**: {report['dataset']['perception']}. Distances are divided by their median between a "
             f"target and a face of another identity ({report['dataset']['unit_raw']:.4g} raw units), and the pick is "
             f"drawn with probability ∝ exp(−distance / {cfg['temperature']:g}).",
             f"- **Found**: {report['dataset']['found']}. Step 1 is the first grid; faces viewed = steps × 9 "
             "(PicHunter's \"images viewed\").",
             f"- **Starts**: *random* = 9 random faces; *image* = the 9 faces nearest to {report['dataset']['query']}. "
             f"The floor ({FLOOR}: the chosen face plus 8 random unseen ones, `RandomPolicy`) ignores the image.",
             "- **Models**: " + "; ".join(f"{a} ({m['note']})" for a, m in report["models"].items()) + "."]
    picks = [(s["picks"], s["closest_pick_rate"]) for res in report["results"].values() for s in res.values()
             if s.get("picks")]
    if picks:
        total = sum(n for n, _ in picks)
        pooled = sum(n * r for n, r in picks) / total
        lines.append(f"- **How noisy the user is**: at temperature {cfg['temperature']:g} it picked the face closest "
                     f"to the target in {_pct(pooled)} of its {total} picks (per arm: `closest_pick_rate` in the "
                     "JSON; lower in grids of near neighbours, whose distances to the target are close together).")
    lines.append("")
    for start in report["results"]:
        res = report["results"][start]
        comp = report["comparisons"][start]
        lines += [f"## {start.capitalize()} start", "",
                  "| arm | " + " | ".join(f"found within {k} steps" for k in ks)
                  + " | median steps | mean faces viewed | found within 5, vs random-9 (points) |",
                  "|---|" + "---:|" * len(ks) + "---:|---:|---:|"]
        for arm, s in res.items():
            vs = comp["vs_floor"].get(arm)
            vs5 = next((d for d in vs if d["steps"] == 5), vs[-1]) if vs else None
            lines.append(f"| {arm} | " + " | ".join(_rate_cell(s, k) for k in ks)
                         + f" | {_median_cell(s, max_steps)} | {_faces_cell(s)} | "
                         + (_diff_cell(vs5) if vs5 else "—") + " |")
        if "winner" in comp:
            w = comp["winner"]
            line = f"Best: **{w}** (ranked by found within 5 steps, then 3, then 10)"
            if "winner_vs_runner_up" in comp:
                r = comp["winner_vs_runner_up"]
                by = "; ".join(f"within {d['steps']}: {_diff_cell(d)}" for d in r["by"])
                line += f"; ahead of {r['runner_up']} by {by} percentage points (paired 95% interval)"
                five = next((d for d in r["by"] if d["steps"] == 5), r["by"][-1])
                if five["lo"] <= 0:
                    line += (f". **Not a significant lead**: the interval at {five['steps']} steps includes 0, so "
                             f"{w} and {r['runner_up']} cannot be told apart with {cfg['users']} users")
            lines += ["", line + "."]
            vs = {arm: next((d for d in ds if d["steps"] == 5), ds[-1]) for arm, ds in comp["vs_floor"].items()}
            worse = [arm for arm, d in vs.items() if d["hi"] < 0]
            not_better = [arm for arm, d in vs.items() if d["lo"] <= 0]
            if vs and len(worse) == len(vs):
                lines += ["", f"**Every feature arm is worse than the {FLOOR} floor** here (found within 5 steps, paired "
                              "interval entirely below 0): on this set 8 random unseen faces reach the target sooner than "
                              "the chosen face's 8 nearest neighbours."]
            elif not_better:
                lines += ["", f"Not significantly better than the {FLOOR} floor within 5 steps: "
                              f"{', '.join(not_better)}."]
        lines.append("")
    lines += ["Cells: estimate (95% interval). Rates: Wilson intervals. Median steps and mean faces viewed: bootstrap "
              f"({BOOTSTRAP} resamples of the users); \"> {max_steps}\" means more than half of the users had not found "
              f"the target by step {max_steps}; \"≥\" marks a mean where users who never found it count {max_steps} × 9 "
              "faces (a lower bound). Differences: paired bootstrap intervals, in percentage points.", "",
              "For scale: in the reference study people *settled* on a face after a median 3 steps (2 to 5); "
              "PicHunter users viewed ~220 images to find an exact target among 4,522.", "",
              f"Produced by `{report['command']}` in {report['runtime_s']['total']:.0f} s "
              f"(simulation {report['runtime_s']['simulation']:.0f} s) on {report['machine']}.", ""]
    return "\n".join(lines)


def plot_report(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    max_steps = report["config"]["max_steps"]
    starts = list(report["results"])
    fig, axes = plt.subplots(1, len(starts), figsize=(5.5 * len(starts), 4.4), sharey=True, squeeze=False)
    axes = axes[0]
    colours = {"raw": "#7f7f7f", "pca": "#1f77b4", "nmf": "#2ca02c", "ae": "#d62728", FLOOR: "#000000"}
    for ax, start in zip(axes, starts):
        for i, (arm, s) in enumerate(report["results"][start].items()):
            x = [c["steps"] for c in s["success"]]
            y = [c["rate"] for c in s["success"]]
            colour = colours.get(arm, f"C{i + 4}")
            style = "--" if arm == FLOOR else "-"
            ax.plot(x, y, style, marker="o", ms=3, color=colour, label=arm)
            ax.fill_between(x, [c["lo"] for c in s["success"]], [c["hi"] for c in s["success"]], color=colour,
                            alpha=0.12, linewidth=0)
        ax.axvline(3, color="#bbbbbb", lw=0.8, ls=":")
        ax.set_title(f"{start} start")
        ax.set_xlabel("steps (grids of 9 seen)")
        ax.set_xticks(range(1, max_steps + 1))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("users who found the target")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    cfg = report["config"]
    fig.suptitle(f"Choice benchmark, {report['dataset']['name']}: {cfg['users']} simulated users, temperature "
                 f"{cfg['temperature']:g} (bands: Wilson 95%)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "choice.json", "markdown": out / "choice.md", "plot": out / "choice.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    paths["markdown"].write_text(markdown_report(report))
    plot_report(report, paths["plot"])
    return paths


def _model_info(engine) -> dict:
    info = {}
    for name, m in engine.models.items():
        try:
            cfg = json.loads((m.version_dir / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        params = cfg.get("params", {})
        note = f"{m.space.dim} features"
        if name == "ae":
            from omokage.features import ConvAutoencoder
            default = ConvAutoencoder().epochs
            epochs = params.get("epochs")
            note += f", {epochs} training epochs" + ("" if epochs == default else f" (default {default})")
        info[name] = {"version_dir": str(m.version_dir), "features": m.space.dim, "params": params,
                      "fit_seconds": cfg.get("fit_seconds"), "rmse": cfg.get("rmse"), "note": note}
    return info


def benchmark(data: ChoiceData, users: int = 500, max_steps: int = 10, temperature: float = 0.1, seed: int = 0,
              arms: list[Arm] | None = None, starts=STARTS, progress: bool = True, command: str = "") -> dict:
    """Simulate, analyse and assemble the report dict (JSON-able)."""
    t0 = time.perf_counter()
    sim = simulate(data, users=users, max_steps=max_steps, temperature=temperature, seed=seed, arms=arms,
                   starts=starts, progress=progress)
    t_sim = time.perf_counter() - t0
    report = {
        "benchmark": "choice",
        "command": command,
        "config": {"users": users, "max_steps": max_steps, "temperature": temperature, "seed": seed, "grid": GRID,
                   "bootstrap": BOOTSTRAP},
        "dataset": {"name": data.name, "catalog": str(data.engine.catalog.path), "items": len(data.engine.catalog),
                    "image_size": data.engine.catalog.image_size, "fingerprint": data.engine.catalog.fingerprint(),
                    **data.describe},
        "models": _model_info(data.engine),
        **analyse(sim, max_steps, seed),
        "runtime_s": {"simulation": round(t_sim, 2), "total": round(t_sim, 2)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    return report


def _print_summary(report: dict) -> None:
    ks = report["report_steps"]
    for start in report["results"]:
        print(f"\n{start} start ({report['dataset']['name']}, {report['config']['users']} users, "
              f"temperature {report['config']['temperature']:g})")
        print(f"{'arm':<10}" + "".join(f"{'≤' + str(k):>9}" for k in ks) + f"{'median':>9}{'faces':>9}")
        for arm, s in report["results"][start].items():
            med = s["median_steps"]
            print(f"{arm:<10}" + "".join(f"{_pct(s['success'][k - 1]['rate']):>9}" for k in ks)
                  + f"{(f'{med:g}' if med is not None else '>' + str(report['config']['max_steps'])):>9}"
                  + f"{s['mean_faces_viewed']:>9.1f}")


def run(users: int = 500, max_steps: int = 10, temperature: float = 0.1, seed: int = 0, dataset="generated",
        out: Path | None = None, home: Path = Path("var"), ae_epochs: int | None = None, progress: bool = True,
        perceive: str = "character") -> int:
    """`omokage bench choice`. dataset: 'generated' (home/catalog, home/models: the demo's), 'anime-holoen20'
    (../shared/data/anime-holoen20; skipped with a message when absent), or the path of a labelled image set.
    ae_epochs: used only when the autoencoder has to be fitted (the output says how many epochs it had).
    perceive: on a labelled set, "character" (the user compares with the target's character) or "image" (with the one
    target drawing)."""
    t0 = time.perf_counter()
    if temperature < 0:
        raise UserError("--temperature must be 0 (always the closest face) or more")
    try:
        dataset_dir = resolve_dataset(dataset)
    except FileNotFoundError as exc:
        print(f"skipped: {HOLOEN20} is not present (looked in {exc}); it is internal test data kept outside the "
              "repository in ../shared/data. Pass --dataset PATH if it lives elsewhere.")
        return 0
    home = Path(home)
    if dataset_dir is None:
        engine = prepare_generated(home, ae_epochs=ae_epochs, progress=progress)
        t_prep = time.perf_counter() - t0
        data = generated_data(engine, progress=progress)
        default_out = DEFAULT_OUT
    else:
        engine = prepare_holoen20(dataset_dir, home, ae_epochs=ae_epochs, progress=progress)
        t_prep = time.perf_counter() - t0
        data = holoen20_data(engine, dataset_dir, progress=progress, perceive=perceive)
        default_out = DEFAULT_OUT.with_name(f"choice-{dataset_dir.name.removeprefix('anime-')}")
    if out is None or Path(out) == DEFAULT_OUT:
        out = default_out   # the CLI's default --out is per data set, so a real set never overwrites the generated one
    t_data = time.perf_counter() - t0 - t_prep
    command = (f"omokage bench choice --users {users} --max-steps {max_steps} --temperature {temperature:g} "
               f"--seed {seed} --dataset {dataset} --out {out} --home {home}"
               + (f" --ae-epochs {ae_epochs}" if ae_epochs else "")
               + (f" --perceive {perceive}" if perceive != "character" and dataset_dir is not None else ""))
    report = benchmark(data, users, max_steps, temperature, seed, progress=progress, command=command)
    report["runtime_s"].update({"prepare_models": round(t_prep, 2), "perception": round(t_data, 2),
                                "total": round(time.perf_counter() - t0, 2)})
    paths = write_report(report, out)
    _print_summary(report)
    ae = report["models"].get("ae")
    if ae:
        print(f"\nautoencoder: {ae['note']}")
    print(f"\nwrote {', '.join(str(p) for p in paths.values())} in {report['runtime_s']['total']:.0f} s "
          f"(of which preparing models {t_prep:.0f} s, simulation {report['runtime_s']['simulation']:.0f} s)")
    return 0
