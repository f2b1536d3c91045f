"""`omokage bench policy`: what one step of each display policy costs (belief update + the next grid).

One step is what the server does on `choose`: add the pick to the belief (a choice term and a passed-over term over the
whole catalog, for each candidate temperature) and choose the next 8 faces. Measured on clustered 30-d features of
1.5k, 10k and 100k items (exact distances below 100k items, faiss HNSW index at 100k, as `build_index` picks), each
session walking 8 steps from a random first grid. The study's policy (the chosen face's 8 nearest unseen) is the
baseline in the same run. `back` (v1.7, undo the last pick) is timed after the last step of each session.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omokage.bench.common import markdown_table, percentiles, write_results
from omokage.bench.knn import _features

SIZES = (1_500, 10_000, 100_000)
GOALS_MS = {10_000: 2.0, 100_000: 20.0}   # p99 per step (issue: belief update + next display)


def run(sizes=SIZES, sessions: int = 30, steps: int = 8, policies: tuple[str, ...] | None = None,
        out: Path = Path("benchmarks/results")) -> int:
    from omokage.index import build_index
    from omokage.selection import POLICIES, FeatureSpace, SelectionSession, make_policy
    policies = tuple(policies or [p for p in POLICIES if p != "random"])
    rows = []
    for n in sizes:
        feats = _features(n)
        space = FeatureSpace(f"bench-{n}", build_index(feats), feats.shape[1])
        space.distance_unit  # computed once per space at start-up, not per step
        for name in policies:
            samples, backs = [], []
            for s in range(sessions + 1):
                session = SelectionSession(space, seed=s, policy=make_policy(name))
                step = session.start()
                rng = np.random.default_rng(s)
                for _ in range(steps):
                    pick = int(rng.choice(step.ids))
                    t = time.perf_counter()
                    step = session.choose(pick)
                    if s:   # session 0 warms up
                        samples.append(time.perf_counter() - t)
                t = time.perf_counter()
                session.back()   # v1.7: undo the last pick (a replay of the steps before it)
                if s:
                    backs.append(time.perf_counter() - t)
            row = {"items": n, "policy": name, "index": space.index.kind, **percentiles(samples)}
            back = percentiles(backs)
            row["back_p50_ms"], row["back_p99_ms"] = back["p50_ms"], back["p99_ms"]
            goal = GOALS_MS.get(n)
            row["goal_p99_ms"] = goal
            row["meets_goal"] = None if goal is None else bool(row["p99_ms"] <= goal)
            rows.append(row)
            print(f"  {n:>8,} {name:<10} p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms"
                  + (f"  (goal {goal:g} ms: {'ok' if row['meets_goal'] else 'MISSED'})" if goal else ""), flush=True)
    table = markdown_table(rows, [("items", "items"), ("policy", "policy"), ("index", "index"), ("p50_ms", "p50 (ms)"),
                                  ("p99_ms", "p99 (ms)"), ("mean_ms", "mean (ms)"), ("goal_p99_ms", "goal p99 (ms)"),
                                  ("meets_goal", "meets goal"), ("back_p50_ms", f"back after {steps} (ms) p50"),
                                  ("back_p99_ms", f"back after {steps} (ms) p99")])
    notes = (f"{sessions} sessions × {steps} `choose` steps per row (plus one warm-up session), clustered 30-d "
             "features. A step is the belief update (choice + passed-over terms, every candidate temperature) and the "
             "next 8 faces; `study` (8 nearest unseen, no belief) is the baseline in the same run. Goals: p99 ≤ 2 ms "
             "at 10k items, ≤ 20 ms at 100k. back: protocol v1.7's undo of the last pick after the "
             f"{steps} steps, which replays the steps before it (rare, on a user's request; no goal).")
    write_results(Path(out), "policy", {"rows": rows, "sessions": sessions, "steps": steps}, table, notes)
    return 0
