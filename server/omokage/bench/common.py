"""Shared by the benchmarks: machine description, percentiles, result files and tables."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def machine() -> dict[str, Any]:
    import torch
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1000
    if a.size == 0:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "" if v is None else str(v)
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(key)) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_results(out: Path, name: str, payload: dict[str, Any], table: str, notes: str = "") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **payload}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    md = f"# omokage bench {name}\n\n{table}\n\n{notes}\n\nMachine: {json.dumps(payload['machine'])}\n"
    (out / f"{name}.md").write_text(md)
    print(f"\n{table}\n\n{notes}\nwrote {out / (name + '.json')} and {out / (name + '.md')}")
    return out / f"{name}.json"


def async_runner():
    """`uvloop.run` where uvloop is installed (as `omokage serve` runs), else `asyncio.run`: benchmark clients run on
    the same kind of loop as the server they measure."""
    try:
        import uvloop
        return uvloop.run
    except ImportError:
        import asyncio
        return asyncio.run

