"""`omokage bench knn`: 9-NN query time over 10k and 1M items, exact numpy vs faiss HNSW.

The query is what the selection loop asks: the 8 nearest of an item, skipping the ~27 already shown.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from omokage.bench.common import markdown_table, percentiles, write_results


def _features(n: int, dim: int = 30, seed: int = 0) -> np.ndarray:
    # Clustered like real face features (a few hundred looks), not uniform noise.
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(512, dim)).astype(np.float32) * 3
    return (centers[rng.integers(0, 512, n)] + rng.normal(size=(n, dim)).astype(np.float32)).astype(np.float32)


def run(sizes=(10_000, 1_000_000), queries: int = 300, out: Path = Path("benchmarks/results")) -> int:
    from omokage.index import ExactIndex, FaissIndex
    rows = []
    for n in sizes:
        feats = _features(n)
        rng = np.random.default_rng(1)
        qids = rng.choice(n, queries, replace=False)
        excludes = [set(rng.choice(n, 27, replace=False).tolist()) for _ in qids]
        results = {}
        for kind, factory in (("exact (numpy)", lambda: ExactIndex(feats, pairwise_limit=0)),
                              ("faiss HNSW", lambda: FaissIndex(feats))):
            t = time.perf_counter()
            index = factory()
            build = time.perf_counter() - t
            index.neighbours_of(int(qids[0]), 8, excludes[0])  # warm-up
            samples, found = [], []
            for q, excl in zip(qids, excludes):
                t = time.perf_counter()
                res = index.neighbours_of(int(q), 8, excl)
                samples.append(time.perf_counter() - t)
                found.append({r.id for r in res})
            results[kind] = found
            row = {"items": n, "index": kind, "build_s": build, **percentiles(samples)}
            rows.append(row)
            print(f"  {n:>9,} {kind:<14} p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  (build {build:.1f} s)",
                  flush=True)
        recall = np.mean([len(a & b) / 8 for a, b in zip(results["exact (numpy)"], results["faiss HNSW"])])
        rows[-1]["recall_vs_exact"] = float(recall)
        rows[-2]["recall_vs_exact"] = 1.0
    table = markdown_table(rows, [("items", "items"), ("index", "index"), ("p50_ms", "p50 (ms)"),
                                  ("p99_ms", "p99 (ms)"), ("mean_ms", "mean (ms)"), ("build_s", "build (s)"),
                                  ("recall_vs_exact", "recall@8 vs exact")])
    notes = (f"{queries} queries per row: the 8 nearest neighbours of a catalog item in 30-d, skipping 27 shown "
             "items (what `choose` asks). Exact numpy is the baseline; `build_index` switches to faiss at 100k items.")
    write_results(Path(out), "knn", {"rows": rows, "queries": queries}, table, notes)
    return 0
