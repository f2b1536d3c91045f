"""`omokage bench pick-information`: how much one pick tells each feature space about the face the user wants.

A belief over the catalog learns from a pick only what its choice model predicts (docs/preference-model.md: "the
likelihood is the bottleneck, not the display"). This measures that directly, before any policy runs. Simulated users
(the `bench choice` user: a softmax over their own perceptual distance at temperature T) pick one of 9 faces shown for a
hidden target; each space's choice model (a softmax over −distance / τ, τ fitted on half of the picks) is scored on the
other half: the mean log-likelihood of the picks minus log 9, in nats per pick above a model that knows nothing. The
user's own distance, scored the same way, is the ceiling; "share" is a space's figure over it.

Two kinds of grid: 9 random faces other than the target (an early step), and 9 of the target's 60 nearest by the
user's own distance (a late step, once the belief has narrowed). On a labelled set a grid holds no face of the target's
identity (that would be found, not picked).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from omokage.errors import UserError

GRIDS = ("random", "near")
NEAR = 60                      # a "near" grid: 9 of the target's this many nearest (the user's own distance)
TAUS = np.geomspace(0.01, 10.0, 31)
DEFAULT_PICKS = 4000
TEMPERATURES = (0.0, 0.1, 0.3, 1.0)
OWN = "the user's own distance"
MIN_OWN = 0.01               # below this many nats the picks say nothing even to the user: no share is given


def space_distances(space) -> np.ndarray:
    """(N, N) Euclidean distances in a feature space, in its median units (what the belief's likelihood reads)."""
    from omokage.bench.perceptual import _pairwise
    return _pairwise(space.features) / space.distance_unit


def simulate_picks(user: np.ndarray, groups: np.ndarray, targets: np.ndarray, grid: str, temperature: float,
                   n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n picks: (grids (n, 9) item ids, picked index in each (n,), target (n,))."""
    from omokage.bench.choice import simulated_pick
    G = np.empty((n, 9), np.int64)
    P = np.empty(n, np.int64)
    T = rng.choice(targets, size=n)
    for k, t in enumerate(T):
        others = np.flatnonzero(groups != groups[t])
        if grid == "random":
            g = rng.choice(others, 9, replace=False)
        else:
            g = rng.choice(others[np.argsort(user[t, others], kind="stable")[:NEAR]], 9, replace=False)
        G[k] = g
        P[k] = simulated_pick(user[t, g], temperature, rng)
    return G, P, T


def _loglik(D: np.ndarray, G: np.ndarray, P: np.ndarray, T: np.ndarray, tau: float) -> float:
    a = -D[T[:, None], G] / tau
    a = a - a.max(axis=1, keepdims=True)
    return float((a[np.arange(len(P)), P] - np.log(np.exp(a).sum(axis=1))).mean())


def information(D: np.ndarray, G, P, T) -> tuple[float, float]:
    """(nats per pick above uniform on the second half, τ fitted on the first half)."""
    half = len(P) // 2
    fit = (G[:half], P[:half], T[:half])
    tau = max(TAUS, key=lambda t: _loglik(D, *fit, t))
    return _loglik(D, G[half:], P[half:], T[half:], tau) + math.log(9), float(tau)


def rows_for(data, models, temperatures=TEMPERATURES, grids=GRIDS, picks: int = DEFAULT_PICKS, seed: int = 0,
             progress: bool = True) -> list[dict]:
    """One row per grid kind × user temperature × space (the user's own distance first)."""
    user = np.asarray(data.user_distances, np.float64)
    spaces = {OWN: user}
    for name in models:
        spaces[name] = space_distances(data.engine.space(name))
    rows = []
    for grid in grids:
        for temperature in temperatures:
            rng = np.random.default_rng([seed, GRIDS.index(grid), int(round(temperature * 1000))])
            G, P, T = simulate_picks(user, data.groups, data.target_pool, grid, temperature, picks, rng)
            own = None
            for name, D in spaces.items():
                nats, tau = information(D, G, P, T)
                own = nats if own is None else own
                rows.append({"dataset": data.name, "grid": grid, "temperature": temperature, "space": name,
                             "nats_per_pick": nats, "share_of_own": nats / own if own >= MIN_OWN else None,
                             "tau": tau, "picks": picks})
            if progress:
                best = max((r for r in rows[-len(spaces) + 1:]), key=lambda r: r["nats_per_pick"])
                print(f"  {data.name}, {grid} grids, T = {temperature:g}: the user's own {own:.3f} nats/pick; best "
                      f"space {best['space']} {best['nats_per_pick']:.3f}", flush=True)
    return rows


def run(datasets=("generated",), models=None, temperatures=TEMPERATURES, picks: int = DEFAULT_PICKS, seed: int = 0,
        home: Path = Path("var"), out: Path = Path("benchmarks/results"), progress: bool = True) -> int:
    from omokage.bench.choice import (DEFAULT_MODELS, fitted_models, generated_data, labelled_data, labelled_home,
                                      prepare_generated, prepare_labelled, read_labelled_set, resolve_dataset)
    from omokage.bench.common import markdown_table, write_results
    if picks < 100:
        raise UserError("--picks must be at least 100 (half fit the choice model's τ, half score it)")
    temperatures = [float(t) for t in temperatures]
    if not temperatures or any(not (t >= 0 and math.isfinite(t)) for t in temperatures):
        raise UserError("--temperatures must be numbers ≥ 0 (0: the user always picks the closest face)")
    t0 = time.perf_counter()
    rows: list[dict] = []
    home = Path(home)
    for dataset in datasets:
        try:
            dataset_dir = resolve_dataset(dataset)
        except FileNotFoundError as exc:
            print(f"skipped: data set {dataset!r} is not present (looked in {exc}); real data sets live in "
                  "../shared/data, or pass a labelled folder's path", flush=True)
            continue
        if dataset_dir is None:
            names = list(models) if models else (fitted_models(home / "catalog", home / "models")
                                                 or list(DEFAULT_MODELS))
            data = generated_data(prepare_generated(home, names, progress=progress), progress=progress)
        else:
            ls = read_labelled_set(dataset_dir)
            where = labelled_home(home, ls)
            names = list(models) if models else (fitted_models(where / "catalog", where / "models")
                                                 or list(DEFAULT_MODELS))
            data = labelled_data(prepare_labelled(ls, home, names, progress=progress), ls, progress=progress)
        rows += rows_for(data, names, temperatures, picks=picks, seed=seed, progress=progress)
    if not rows:
        raise UserError("no data set to measure (none of --datasets is present)")
    table = markdown_table(rows, [("dataset", "data set"), ("grid", "grid"), ("temperature", "user T"),
                                  ("space", "space"), ("nats_per_pick", "nats per pick"),
                                  ("share_of_own", "share of the user's own"), ("tau", "fitted τ")])
    command = (f"omokage bench pick-information --datasets {','.join(map(str, datasets))}"
               + (f" --models {','.join(models)}" if models else "")
               + f" --temperatures {','.join(f'{t:g}' for t in temperatures)} --picks {picks} --seed {seed}")
    notes = ("Nats per pick: how much better than chance each space's choice model (softmax over −distance/τ, τ "
             "fitted on half the picks) predicts the other half of the simulated users' picks (log 9 = 2.20 would "
             "be a pick that says everything). The user's own distance is the ceiling; a space's share of it is "
             "how much of what a pick says that space can hear. 'random': 9 random faces; 'near': 9 of the target's "
             f"{NEAR} nearest by the user's own distance.\n\nCommand: `{command}` "
             f"({time.perf_counter() - t0:.0f} s)")
    write_results(Path(out), "pick-information", {"rows": rows, "command": command}, table, notes)
    return 0
