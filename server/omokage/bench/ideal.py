"""`omokage bench ideal`: does the "ideal face" (omokage.selection.ideal) point at the target?

The same simulated users as `omokage bench choice` (the same targets, session seeds, pick-noise streams, perception
and data sets; random start) hunt with a belief policy (default `thompson` on `pca`). After k picks, while the
target (on a labelled set: any face of its identity) has not been shown yet, four candidate sets of 9 unseen faces are
compared on the same belief:

- **next grid**: what the policy shows next (the chosen face first, then 8 others): what the user really sees;
- **top-9**: the belief's 9 most probable unseen faces;
- **ideal-9** (one per setting): the 9 unseen catalog faces nearest the ideal face, CMA-ES in the PCA latent from the
  favourite (the face just chosen), with its radius r, bandwidth h and generations;
- **random-9**: 9 random unseen faces (chance).

A set "hits" when it holds the target (or a face of its identity). Rates are over the users still hunting at k;
intervals are the cluster bootstrap of `bench choice` (resampling target identities, then users), and the differences
ideal − next grid and ideal − top-9 are paired (same users, same resamples). Writes ideal.json and ideal.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from omokage.errors import UserError

DEFAULT_OUT = Path("benchmarks/results/ideal")
DEFAULT_DATASETS = ("generated", "anime-holoen20")
DEFAULT_TEMPERATURES = (0.0, 0.1)
DEFAULT_AT = (3, 5, 9)
GRID = 9


@dataclass(frozen=True)
class Setting:
    """One configuration of the ideal face."""

    name: str
    radius: float
    bandwidth: float
    generations: int


def default_settings() -> list[Setting]:
    from omokage.selection.ideal import DEFAULT_BANDWIDTH as H, DEFAULT_GENERATIONS as G, DEFAULT_RADIUS as R
    return [Setting("ideal", R, H, G),                       # the defaults, chosen before any run of this benchmark
            Setting("ideal g=0", R, H, 0),                   # the start alone (best of favourite, mean, top faces)
            Setting("ideal g=40", R, H, 40),                 # closer to convergence
            Setting("ideal r=0.3", 0.3, H, G), Setting("ideal r=1", 1.0, H, G),
            Setting("ideal r=inf", math.inf, H, G),          # no similarity constraint
            Setting("ideal h=0.1", R, 0.1, G), Setting("ideal h=0.5", R, 0.5, G)]


_WORK: dict = {}


def _hits(groups: np.ndarray, ids, target_group: int) -> float:
    ids = np.asarray(list(ids), dtype=np.int64)
    return float(ids.size > 0 and bool((groups[ids] == target_group).any()))


def _run_job(job: tuple[int, int, int]):
    """Users lo..hi at temperature index ti: the hunts, and the candidate sets at each k in `at`."""
    from omokage.bench.choice import _pick
    from omokage.selection import SelectionSession, make_policy
    from omokage.selection.belief import masked_probabilities
    from omokage.selection.ideal import ideal_face
    ti, lo, hi = job
    w = _WORK
    data, at, settings = w["data"], w["at"], w["settings"]
    T = w["temperatures"][ti]
    space, latents = w["space"], w["latents"]
    groups = data.groups
    names = ["next grid", "top-9", "random-9"] + [s.name for s in settings]
    hits = {(k, nm): np.full(hi - lo, np.nan) for k in at for nm in names}
    overlap = {(k, s.name): np.full(hi - lo, np.nan) for k in at for s in settings}   # faces shared with top-9
    seconds = {s.name: [] for s in settings}
    scores = {s.name: [] for s in settings}
    for j, u in enumerate(range(lo, hi)):
        target = int(w["targets"][u])
        tg = int(groups[target])
        user_d = data.user_distances[target]
        policy = make_policy(w["policy"])
        session = SelectionSession(space, seed=w["session_seeds"][u], policy=policy, grid_size=GRID)
        rng = np.random.default_rng([w["seed"], 3, u])     # the pick noise of `bench choice`'s user u
        step = session.start(None)
        picks = 0
        while True:   # simulate_user (bench choice), random start, no skip, no gaze
            ids = np.fromiter(step.ids, dtype=np.int64, count=len(step.ids))
            if ids.size == 0 or (groups[ids] == tg).any():
                break
            if picks >= max(at) or len(ids) < 2:
                break
            pick = _pick(user_d[ids], T, rng.random())
            chosen = int(ids[pick])
            step = session.choose(chosen)
            picks += 1
            if picks not in at:
                continue
            # the target has not been shown in steps 1..picks: compare the candidate sets for the next display
            seen = set().union(*(set(s.ids) for s in session.history[:-1]))
            hits[(picks, "next grid")][j] = _hits(groups, step.ids, tg)
            p = masked_probabilities(policy.belief, sorted(seen))
            top = np.argpartition(-p, GRID - 1)[:GRID]
            hits[(picks, "top-9")][j] = _hits(groups, top, tg)
            unseen = np.setdiff1d(np.arange(len(groups)), np.fromiter(seen, np.int64))
            r9 = np.random.default_rng([w["seed"], 8, u, picks]).choice(unseen, GRID, replace=False)
            hits[(picks, "random-9")][j] = _hits(groups, r9, tg)
            iseed = int(np.random.SeedSequence([w["seed"], 7, u, picks]).generate_state(1)[0])
            for s in settings:
                r = ideal_face(policy.belief, space, latents, chosen, radius=s.radius, bandwidth=s.bandwidth,
                               generations=s.generations, seed=iseed, k=GRID, exclude=sorted(seen))
                hits[(picks, s.name)][j] = _hits(groups, r.nearest, tg)
                overlap[(picks, s.name)][j] = len(set(r.nearest) & set(int(i) for i in top))
                seconds[s.name].append(r.seconds)
                scores[s.name].append(r.score)
    return job, hits, overlap, seconds, scores


def simulate(data, space, latents, policy: str, users: int, temperatures, at, settings, seed: int,
             workers: int, progress: bool) -> dict:
    from tqdm import tqdm
    from omokage.bench.choice import USER_CHUNK, _seeds, run_forked
    pool = np.asarray(data.target_pool)
    targets = np.random.default_rng([seed, 0]).choice(pool, size=users, replace=users > len(pool))
    space.distance_unit, space.unit_distances_from([0])     # cached before the workers fork
    _WORK.clear()
    _WORK.update(data=data, space=space, latents=latents, policy=policy, temperatures=list(temperatures),
                 targets=targets, session_seeds=_seeds(seed, 1, users), at=tuple(at), settings=list(settings),
                 seed=seed)
    chunk = max(1, min(USER_CHUNK, math.ceil(users / max(workers, 1) / 2)))
    jobs = [(ti, lo, min(lo + chunk, users)) for ti in range(len(temperatures)) for lo in range(0, users, chunk)]
    hits: dict = {}
    overlap: dict = {}
    seconds = {s.name: [] for s in settings}
    scores = {s.name: [] for s in settings}
    bar = tqdm(total=users * len(temperatures), desc=f"{data.name}: users", unit="user", disable=not progress)

    def collect(result):
        (ti, lo, hi), h, ov, sec, sc = result
        for (k, name), v in h.items():
            hits.setdefault((temperatures[ti], k, name), np.full(users, np.nan))[lo:hi] = v
        for (k, name), v in ov.items():
            overlap.setdefault((temperatures[ti], k, name), np.full(users, np.nan))[lo:hi] = v
        for name in sec:
            seconds[name] += sec[name]
            scores[name] += sc[name]
        bar.update(hi - lo)

    try:
        run_forked(jobs, _run_job, collect, workers)
    finally:
        bar.close()
        _WORK.clear()
    return {"targets": targets, "hits": hits, "overlap": overlap, "seconds": seconds, "scores": scores}


def analyse(sim: dict, data, temperatures, at, names, seed: int, resamples: int = 2000) -> list[dict]:
    from omokage.bench.choice import _interval, cluster_bootstrap_weights, weighted_rates, wilson
    rows = []
    clusters_all = data.groups[sim["targets"]]
    for T in temperatures:
        for k in at:
            live = ~np.isnan(sim["hits"][(T, k, names[0])])
            n = int(live.sum())
            row = {"temperature": T, "k": k, "hunting": n, "clusters": int(len(np.unique(clusters_all[live]))),
                   "sets": {}}
            if n == 0:
                rows.append(row)
                continue
            W = cluster_bootstrap_weights(clusters_all[live], resamples, np.random.default_rng([seed, 9, k]))
            W = W[W.sum(axis=1) > 0]
            X = np.stack([sim["hits"][(T, k, nm)][live] for nm in names], axis=1)     # (n, sets)
            boot = weighted_rates(W, X)
            for j, nm in enumerate(names):
                rate = float(X[:, j].mean())
                lo, hi = _interval(boot[:, j])
                if lo == hi:
                    lo, hi = wilson(int(round(rate * row["clusters"])), row["clusters"])
                cell = {"rate": round(rate, 6), "lo": round(lo, 6), "hi": round(hi, 6)}
                for base in ("next grid", "top-9"):
                    if nm.startswith("ideal"):
                        b = names.index(base)
                        diff = X[:, j] - X[:, b]
                        db = weighted_rates(W, diff[:, None])[:, 0]
                        dlo, dhi = _interval(db)
                        cell[f"minus {base}"] = {"difference": round(float(diff.mean()), 6), "lo": round(dlo, 6),
                                                 "hi": round(dhi, 6)}
                if (T, k, nm) in sim["overlap"]:
                    cell["shared_with_top9"] = round(float(np.nanmean(sim["overlap"][(T, k, nm)])), 3)
                row["sets"][nm] = cell
            rows.append(row)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = ["# The ideal face: is the target among the 9 catalog faces nearest to it?", "",
             f"`{report['command']}`", "",
             f"{cfg['users']} simulated users per data set and temperature — the users of `omokage bench choice` "
             f"(same targets, session seeds, pick noise and perception; random start) — hunt with "
             f"`{cfg['policy']}` on `{cfg['model']}`. After k picks, for the users whose target has not been shown "
             "yet, each set of 9 unseen faces is checked for the target (on a labelled set: any face of its "
             "identity). *next grid*: what the policy shows next (the chosen face, already seen, plus 8 unseen); "
             "*top-9*: the belief's 9 most probable unseen faces; *random-9*: chance; *ideal…*: the 9 unseen faces nearest the ideal face (CMA-ES, "
             "population 9, in the PCA latent, maximising log Σ p_i exp(−‖z − z_i‖²/2h²) within ‖z − z_fav‖ ≤ r of "
             "the face just chosen; r and h in distance units). Rates in %, 95% cluster-bootstrap intervals "
             "(resampling target identities, then users); differences are paired.", "",
             "Settings: " + "; ".join(f"**{s['name']}**: r = {s['radius']}, h = {s['bandwidth']:g}, "
                                      f"{s['generations']} generations" for s in cfg["settings"]) + ".", ""]
    for ds in report["datasets"]:
        lines += [f"## {ds['name']} ({ds['items']} faces, {ds['identities']} identities; hit = {ds['found']})", ""]
        names = ds["names"]
        for row in ds["rows"]:
            lines += [f"### T = {row['temperature']:g}, after k = {row['k']} picks ({row['hunting']} users still "
                      f"hunting, {row['clusters']} identities)", ""]
            if not row["sets"]:
                lines += ["(no user still hunting)", ""]
                continue
            lines += ["| set | hit rate % (95% CI) | ideal − next grid (points) | ideal − top-9 (points) | faces "
                      "shared with top-9 |", "|---|---:|---:|---:|---:|"]
            for nm in names:
                c = row["sets"][nm]

                def d(key, c=c):
                    x = c.get(key)
                    return "" if x is None else (f"{100 * x['difference']:+.1f} ({100 * x['lo']:+.1f} to "
                                                 f"{100 * x['hi']:+.1f})")
                shared = "" if "shared_with_top9" not in c else f"{c['shared_with_top9']:.1f}"
                lines.append(f"| {nm} | {_pct(c['rate'])} ({_pct(c['lo'])}–{_pct(c['hi'])}) | {d('minus next grid')} "
                             f"| {d('minus top-9')} | {shared} |")
            lines.append("")
        t = ds["timing"]
        lines += ["Time per `ideal_face` call inside the benchmark (2 workers on 2 shared cores): "
                  + "; ".join(f"{nm}: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms" for nm, v in t.items())
                  + ".", ""]
    if report.get("serving_timing"):
        st = report["serving_timing"]
        lines += ["## Time per call, alone", "",
                  f"{st['calls']} calls of the default setting on {st['items']} faces × {st['dims']} dims, one "
                  f"process, BLAS single-threaded as the server runs it: p50 {st['p50_ms']:.1f} ms, p90 "
                  f"{st['p90_ms']:.1f} ms, p99 {st['p99_ms']:.1f} ms, max {st['max_ms']:.1f} ms; CPU time per call "
                  f"p50 {st['cpu_p50_ms']:.1f} ms, p99 {st['cpu_p99_ms']:.1f} ms ({st['machine']}; the machine is "
                  "shared, so wall times carry other processes' load).", ""]
    return "\n".join(lines)


def serving_timing(space, latents, policy_name: str, calls: int = 200, seed: int = 0) -> dict:
    """Time the default setting alone, on beliefs after 1-6 random picks."""
    from omokage.engine import single_threaded_blas
    from omokage.selection import SelectionSession, make_policy
    from omokage.selection.ideal import ideal_face
    single_threaded_blas()
    rng = np.random.default_rng([seed, 11])
    times, cpus = [], []
    ideal_face(np.ones(space.n_items), space, latents, 0)     # imports cma
    for c in range(calls):
        pol = make_policy(policy_name)
        s = SelectionSession(space, seed=int(rng.integers(1 << 30)), policy=pol)
        step = s.start(None)
        for _ in range(1 + c % 6):
            step = s.choose(step.ids[int(rng.integers(len(step.ids)))])
        t, cpu = time.perf_counter(), time.process_time()
        ideal_face(pol.belief, space, latents, step.ids[0], seed=c, exclude=sorted(s.shown))
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - cpu)
    ms = np.array(times) * 1000
    cpu_ms = np.array(cpus) * 1000
    return {"calls": calls, "items": space.n_items, "dims": int(latents.shape[1]),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3),
            "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
            "cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 3),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
                       f"{os.getloadavg()[0]:.1f} at the end"}


def run(users: int = 300, temperatures=DEFAULT_TEMPERATURES, at=DEFAULT_AT, datasets=DEFAULT_DATASETS,
        policy: str = "thompson", model: str = "pca", seed: int = 0, out: Path = DEFAULT_OUT,
        home: Path = Path("var"), workers: int | None = None, progress: bool = True,
        settings: list[Setting] | None = None) -> int:
    from omokage.bench.choice import (generated_data, labelled_data, prepare_generated, prepare_labelled,
                                      read_labelled_set, resolve_dataset)
    from omokage.selection import POLICIES, is_policy
    from omokage.selection.policies import BeliefPolicy
    t0 = time.perf_counter()
    if not is_policy(policy) or not issubclass(POLICIES[policy.split("+")[0]], BeliefPolicy):
        beliefs = ", ".join(n for n, c in POLICIES.items() if issubclass(c, BeliefPolicy))
        raise UserError(f"--policy must be a belief policy ({beliefs}), not {policy!r}")
    if model != "pca":
        raise UserError("the ideal face searches the PCA latent (the generator's); --model must be pca")
    temperatures = [float(t) for t in temperatures]
    if not temperatures or any(not (t >= 0 and math.isfinite(t)) for t in temperatures):
        raise UserError("--temperatures must be numbers ≥ 0")
    at = sorted({int(k) for k in at})
    if not at or at[0] < 1:
        raise UserError("--at must be pick counts ≥ 1")
    if users < 1:
        raise UserError("--users must be at least 1")
    settings = settings or default_settings()
    names = ["next grid", "top-9", "random-9"] + [s.name for s in settings]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    report = {"command": f"omokage bench ideal --users {users} --temperatures "
                         f"{','.join(f'{t:g}' for t in temperatures)} --at {','.join(map(str, at))} --datasets "
                         f"{','.join(datasets)} --policy {policy} --seed {seed} --out {out}",
              "config": {"users": users, "temperatures": temperatures, "at": at, "policy": policy, "model": model,
                         "seed": seed,
                         "settings": [{**asdict(s), "radius": s.radius if math.isfinite(s.radius) else "inf"}
                                      for s in settings]},
              "datasets": [], "skipped": []}
    for name in datasets:
        try:
            ddir = resolve_dataset(name)
        except FileNotFoundError as exc:
            print(f"skipped: data set {name!r} is not present (looked in {exc})", flush=True)
            report["skipped"].append(name)
            continue
        if ddir is None:
            engine = prepare_generated(Path(home), [model], progress=progress)
            data = generated_data(engine, progress=progress)
        else:
            ls = read_labelled_set(ddir)
            engine = prepare_labelled(ls, Path(home), [model], progress=progress)
            data = labelled_data(engine, ls, progress=progress)
        space, latents = engine.space(model), engine.models[model].features
        if not report.get("serving_timing"):
            report["serving_timing"] = serving_timing(space, latents, policy, seed=seed)
            print(f"ideal_face alone: p50 {report['serving_timing']['p50_ms']:.1f} ms, p99 "
                  f"{report['serving_timing']['p99_ms']:.1f} ms", flush=True)
        t1 = time.perf_counter()
        sim = simulate(data, space, latents, policy, users, temperatures, at, settings, seed, workers, progress)
        rows = analyse(sim, data, temperatures, at, names, seed)
        timing = {nm: {"p50_ms": round(1000 * float(np.percentile(v, 50)), 3),
                       "p99_ms": round(1000 * float(np.percentile(v, 99)), 3), "calls": len(v)}
                  for nm, v in sim["seconds"].items() if v}
        report["datasets"].append({"name": data.name, "items": int(len(data.groups)),
                                   "identities": int(len(np.unique(data.groups))), "found": data.describe["found"],
                                   "names": names, "rows": rows, "timing": timing,
                                   "simulation_s": round(time.perf_counter() - t1, 1)})
    report["runtime_s"] = round(time.perf_counter() - t0, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ideal.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "ideal.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'ideal.json'} and {out / 'ideal.md'} in {report['runtime_s']:.0f} s")
    return 0
