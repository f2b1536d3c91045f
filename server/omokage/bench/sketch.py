"""`omokage bench sketch`: is live sketch search fast enough, and does a sketch find the face?

**Latency** — the real server (`omokage serve`, its own process) and N protocol clients (this process, uvloop), each
drawing at R Hz: every message is the next piece of a stroke (`append`), sent without waiting, as the clients do.
Per message: the time from sending it to the first `sketch.result` that includes it (results are coalesced: one
result answers every message up to its rid). Baseline in the same run and load shape: the same clients sending
`ping` at the same rate (the transport and event loop's floor on this machine right now). Run for each preview
backend (numpy: PCA's decoder; onnxruntime: the `gen` decoder, when fitted); the rows say where the server projected
(`worker`: its worker process, or a thread: OMOKAGE_SKETCH_WORKER=thread in this command's environment forces it).

**Usefulness** — simulated sketchers (omokage.sketch.simulate) draw a target: its line art traced longest stroke
first with hand wobble, cut to the first 20 / 50 / 100% of the strokes, with or without a few strokes of its colours.
Drawn from the catalog image itself, or from *another* image of the target (a re-render with another pose and
light on generated faces; a held-out image of the character on anime-holoen20) — the honest case: nobody draws
the very thumbnail. How often is the target (or a face of its identity) among the first 9 the drawing ranks,
against a random first grid (chance)?
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from omokage.bench.common import async_runner, markdown_table, percentiles, write_results

FRACTIONS = (0.2, 0.5, 1.0)
JITTERS = (0.0, 0.01)
PIECE_POINTS = 4            # points per message: a stroke sent as it is drawn, a piece every 1/R s
PEN_UP_S = 0.25             # a pause between strokes, as people lift the pen (the sharpening runs then: v1.6)


# -- usefulness -------------------------------------------------------------------------------------------------------

def _drawing(model, img: np.ndarray, fraction: float, jitter: float, paint: bool, rng: np.random.Generator):
    from omokage.sketch import SketchCanvas
    from omokage.sketch.simulate import cut, line_strokes, paint_strokes
    strokes = cut(line_strokes(img, jitter=jitter, rng=rng), fraction)
    if paint:
        strokes += paint_strokes(img, rng=rng)
    canvas = SketchCanvas(model.resolution)
    for s in strokes:
        canvas.add(s)
    return canvas.observations()


def usefulness(data, targets: int = 200, seed: int = 0, progress: bool = True) -> list[dict]:
    """Rows of the usefulness table for one data set (a `ChoiceData` whose engine has a sketch model)."""
    from tqdm.auto import tqdm

    from omokage.bench.choice import wilson
    engine = data.engine
    if engine.sketch is None:
        raise RuntimeError(f"{engine.catalog.path}: no sketch model fitted")
    model = engine.sketch.model
    catalog = engine.catalog
    rng = np.random.default_rng(seed)
    pool = np.asarray(data.target_pool)
    chosen = rng.choice(pool, min(targets, len(pool)), replace=False)
    groups = np.asarray(data.groups)
    n = len(catalog)
    rows = []
    settings = [(src, j, p, f) for src in ("catalog image", "another image") for j in JITTERS for p in (False, True)
                for f in FRACTIONS]
    images = {}
    for t in chosen:
        images[("catalog image", int(t))] = catalog.pixels[int(t)]
        images[("another image", int(t))] = data.make_query(int(t), np.random.default_rng(seed * 7919 + int(t)))
    for src, jitter, paint, fraction in tqdm(settings, desc=f"sketch usefulness ({data.name})", unit="setting",
                                             disable=not progress):
        drawings = [_drawing(model, images[(src, int(t))], fraction, jitter, paint,
                             np.random.default_rng(int(t) + 1)) for t in chosen]
        L = np.concatenate([model.log_likelihood(drawings[s:s + 64]) for s in range(0, len(drawings), 64)])
        top = np.argsort(-L, axis=1, kind="stable")[:, :9]
        hit_item = np.array([t in top[b] for b, t in enumerate(chosen)])
        hit_group = np.array([groups[t] in set(groups[top[b]]) for b, t in enumerate(chosen)])
        ranks = np.array([(L[b] > L[b, t]).sum() for b, t in enumerate(chosen)])
        # a random first grid: P(target among 9) = 9/n; P(its identity among 9) = 1 − C(n − m, 9) / C(n, 9)
        chance_group = float(np.mean([1 - math.comb(n - int((groups == groups[t]).sum()), 9) / math.comb(n, 9)
                                      for t in chosen]))
        k_item, k_group = int(hit_item.sum()), int(hit_group.sum())
        rows.append({"dataset": data.name, "drawn_from": src, "jitter": jitter, "paint": "yes" if paint else "no",
                     "strokes": f"{fraction:.0%}", "targets": len(chosen),
                     "target_in_9": k_item / len(chosen), "target_ci": wilson(k_item, len(chosen)),
                     "identity_in_9": k_group / len(chosen), "identity_ci": wilson(k_group, len(chosen)),
                     "chance_target": 9 / n, "chance_identity": chance_group,
                     "median_rank": float(np.median(ranks))})
    return rows


def _usefulness_data(dataset: str, home: Path, progress: bool):
    from omokage.bench.choice import (generated_data, labelled_data, prepare_labelled, read_labelled_set,
                                      resolve_dataset)
    from omokage.engine import Engine
    if dataset == "generated":
        from omokage.demo import prepare
        catalog_dir, models_dir = prepare(home, algorithms=["pca", "sketch"], progress=progress)
        return generated_data(Engine.open(catalog_dir, models_dir, algorithms=["pca"]), progress=progress)
    ls = read_labelled_set(resolve_dataset(dataset))
    engine = prepare_labelled(ls, home, ["pca", "sketch"], progress=progress)
    return labelled_data(engine, ls, progress=progress)


# -- latency ----------------------------------------------------------------------------------------------------------

def _pieces(seed: int, faces: np.ndarray) -> list[dict]:
    """Messages of one simulated drawing: strokes of a catalog face's line art, each cut into pieces of a few points."""
    from omokage.sketch.simulate import line_strokes, paint_strokes
    rng = np.random.default_rng(seed)
    img = faces[int(rng.integers(len(faces)))]
    out = []
    for s in line_strokes(img, jitter=0.005, rng=rng) + paint_strokes(img, rng=rng):
        pts = s.points
        for k in range(0, len(pts), PIECE_POINTS):   # appended pieces are joined to the previous piece's end
            piece = pts[k:k + PIECE_POINTS]
            msg = {"points": [round(float(v), 4) for v in piece.reshape(-1)], "colour": list(s.colour),
                   "width": float(s.width)}
            if s.tool != "line":
                msg["tool"] = s.tool
            if k:
                msg["append"] = True
            out.append(msg)
    return out


async def _drawer(url: str, rate: float, seconds: float, messages: list[dict], lat: list[float], stats: dict,
                  seed: int, sharp: list[float], pen_up: float = 0.0) -> None:
    """pen_up: seconds the pen stays lifted after each stroke's last piece (0: drawing without pause)."""
    from omokage.client import OmokageClient
    async with await OmokageClient.connect(url) as c:
        await c.sketch_result(await c.sketch_send("sketch.begin"))
        sent: dict[int, float] = {}
        shown: dict[int, float] = {}     # v1.6: revision of the newest result -> when its newest message was sent
        lifted: set[int] = set()         # rids of strokes' last pieces: the pen lifted after them
        rested: set[int] = set()         # revisions of the results those pieces got: their sharper previews count
        done = asyncio.Event()

        async def reader():
            while True:
                msg = await c.sketch_updates.get()
                if msg is None:
                    return
                now = time.perf_counter()
                if msg.get("type") == "sketch.result":
                    stats["results"] += 1
                    answered = [sent.pop(r) for r in [r for r in sent if r <= msg["rid"]]]   # send times, in order
                    lat.extend(now - t for t in answered)
                    if answered:   # a sharper preview of this result: timed from the newest message it includes
                        shown.clear()
                        shown[msg["revision"]] = answered[-1]
                        if msg["rid"] in lifted:     # the result the pen lifted on
                            lifted.discard(msg["rid"])
                            rested.add(msg["revision"])
                elif msg.get("type") == "sketch.preview":   # the sharper preview of a result: from its newest stroke
                    stats["sharpened"] += 1
                    if msg["revision"] in shown:
                        sharp.append(now - shown.pop(msg["revision"]))
                    if msg["revision"] in rested:
                        rested.discard(msg["revision"])
                        stats["pen_ups_sharpened"] += 1
                else:
                    stats["errors"] += 1
                if done.is_set() and not sent:
                    return

        task = asyncio.create_task(reader())
        await asyncio.sleep(random.Random(seed).uniform(0, 1 / rate))   # clients out of phase, as people are
        start = due = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            msg = messages[k % len(messages)]
            if k and k % len(messages) == 0:
                msg = None
                rid = await c.sketch_send("sketch.clear")
            else:
                rid = await c.stroke(**msg)
            sent[rid] = time.perf_counter()
            stats["sent"] += 1
            k += 1
            due += 1 / rate
            if pen_up and not messages[k % len(messages)].get("append"):    # that was a stroke's last piece
                stats["pen_ups"] += 1
                lifted.add(rid)
                due += pen_up
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        done.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            stats["unanswered"] += len(sent)


async def _pinger(url: str, rate: float, seconds: float, lat: list[float], stats: dict, seed: int) -> None:
    from omokage.client import OmokageClient
    async with await OmokageClient.connect(url) as c:
        await asyncio.sleep(random.Random(seed).uniform(0, 1 / rate))
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            await c.request("ping", t=0.0)
            lat.append(time.perf_counter() - t)
            stats["sent"] += 1
            k += 1
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))


async def _load(url: str, clients: int, rate: float, seconds: float, kind: str, faces, pen_up: float = 0.0) -> dict:
    lat: list[float] = []
    sharp: list[float] = []
    stats = {"sent": 0, "results": 0, "errors": 0, "unanswered": 0, "sharpened": 0, "pen_ups": 0,
             "pen_ups_sharpened": 0}
    if kind == "ping":
        await asyncio.gather(*(_pinger(url, rate, seconds, lat, stats, k) for k in range(clients)))
    else:
        await asyncio.gather(*(_drawer(url, rate, seconds, _pieces(k, faces), lat, stats, k, sharp, pen_up)
                               for k in range(clients)))
    out = {**percentiles(lat), **stats}
    if sharp:
        q = percentiles(sharp)
        out.update(sharp_p50_ms=q["p50_ms"], sharp_p99_ms=q["p99_ms"])
    if kind != "ping" and stats["sharpened"]:
        out["sharpened_share"] = stats["sharpened"] / stats["results"] if stats["results"] else None
        if pen_up:   # the share of lifted pens whose stroke's result got its sharper face during the pause
            out["sharpened_per_pen_up"] = stats["pen_ups_sharpened"] / stats["pen_ups"] if stats["pen_ups"] else None
    return out


def _worker_delta(before: dict, after: dict) -> dict:
    """The sketch worker's figures over one run (from /healthz before and after it)."""
    batches = after.get("batches", 0) - before.get("batches", 0)
    drawings = after.get("drawings", 0) - before.get("drawings", 0)
    compute = after.get("compute_s", 0.0) - before.get("compute_s", 0.0)
    return {"per_batch": drawings / batches if batches else None,
            "worker_ms": 1000 * compute / drawings if drawings else None}


def latency(catalog_dir: Path, models_dir: Path, backends, levels, rate: float, seconds: float,
            logs: Path, pen_up: float = PEN_UP_S) -> list[dict]:
    """pen_up: for a server that sharpens previews, a third run per level in which the pen lifts for this long after
    every stroke (0: none): how often, and how soon, a pause brings the sharper face."""
    from omokage.bench.serve import _free_port, _wait_http, server_health
    from omokage.catalog.store import Catalog
    catalog = Catalog(catalog_dir)
    faces = catalog.pixels[:200]
    run = async_runner()
    rows = []
    for backend in backends:
        port = _free_port()
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog_dir), "--models", str(models_dir),
               "--port", str(port), "--log-level", "warning", "--no-fsync", "--events", str(logs / "events.jsonl"),
               "--preview-backend", backend]
        server = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                  stderr=open(logs / f"server-{backend}.log", "w"))
        try:
            _wait_http(port, server, log=logs / f"server-{backend}.log")
            url = f"ws://127.0.0.1:{port}/ws"
            # where the server projects drawings: a worker process (numpy previews) or thread (OMOKAGE_SKETCH_WORKER)
            health = server_health(port).get("sketch") or {}
            where = health.get("worker", "thread")
            loads = [("ping", 0.0), ("sketch", 0.0)]       # the floor first, then the same load drawing
            if pen_up and "sharpen" in health:
                loads.append(("sketch", pen_up))
            for clients in levels:
                for kind, pause in loads:
                    before = server_health(port).get("sketch") or {}
                    r = run(_load(url, clients, rate, seconds, kind, faces, pause))
                    worker = _worker_delta(before, server_health(port).get("sketch") or {}) if kind == "sketch" else {}
                    load = ("ping (floor)" if kind == "ping" else
                            f"sketch.stroke, pen up {1000 * pause:g} ms" if pause else "sketch.stroke")
                    rows.append({"backend": backend, "worker": where, "load": load,
                                 "clients": clients, "rate_hz": rate, **r,
                                 "coalesced": (1 - r["results"] / r["sent"]) if kind == "sketch" and r["sent"] else None,
                                 **worker})
                    print(f"  {backend:12s} {where:7s} {clients:3d} clients {load:30s} "
                          f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms ({r['n']} messages)", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    return rows


def run(datasets=("generated", "anime-holoen20"), backends=("numpy", "onnxruntime"), clients=(10, 25, 50),
        rate: float = 30.0, seconds: float = 15.0, targets: int = 200, home: Path = Path("var"),
        out: Path = Path("benchmarks/results"), skip_latency: bool = False, skip_usefulness: bool = False,
        pen_up: float = PEN_UP_S) -> Path:
    from omokage.bench.choice import shared_data_dirs
    from omokage.demo import prepare
    payload: dict = {"settings": {"clients": list(clients), "rate_hz": rate, "seconds": seconds, "targets": targets,
                                  "pen_up_s": pen_up,
                                  "piece_points": PIECE_POINTS, "fractions": FRACTIONS, "jitters": JITTERS}}
    tables = []
    if not skip_latency:
        catalog_dir, models_dir = prepare(home, algorithms=["pca", "sketch"])
        available = _available_backends(models_dir, backends)
        print(f"latency: {', '.join(map(str, clients))} clients x {rate:g} Hz for {seconds:g} s per backend: "
              f"{', '.join(available) or 'none'}", flush=True)
        lat = latency(catalog_dir, models_dir, available, clients, rate, seconds, home / "bench-sketch-logs", pen_up)
        payload["latency"] = lat
        tables.append("## Stroke → result latency\n\n" + markdown_table(lat, [
            ("backend", "preview backend"), ("worker", "worker"), ("load", "load"), ("clients", "clients"), ("rate_hz", "Hz each"),
            ("n", "messages"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
            ("results", "results"), ("coalesced", "coalesced share"), ("per_batch", "drawings per batch"),
            ("worker_ms", "worker ms per drawing"), ("sharpened_share", "sharper previews per result"),
            ("sharpened_per_pen_up", "sharper previews per pen-up"),
            ("sharp_p50_ms", "sharper preview p50 ms"), ("sharp_p99_ms", "sharper preview p99 ms"),
            ("errors", "errors")]))
    if not skip_usefulness:
        rows = []
        for name in datasets:
            try:
                data = _usefulness_data(name, home, progress=True)
            except FileNotFoundError:
                print(f"skipping {name}: not found under {', '.join(map(str, shared_data_dirs()))}", flush=True)
                continue
            rows += usefulness(data, targets)
        for r in rows:
            r["target"] = f"{r['target_in_9']:.1%} ({r['target_ci'][0]:.1%}–{r['target_ci'][1]:.1%})"
            r["identity"] = f"{r['identity_in_9']:.1%} ({r['identity_ci'][0]:.1%}–{r['identity_ci'][1]:.1%})"
        payload["usefulness"] = rows
        tables.append("## A sketch's first 9 faces\n\n" + markdown_table(rows, [
            ("dataset", "data set"), ("drawn_from", "traced from"), ("jitter", "wobble"), ("paint", "paint"),
            ("strokes", "strokes"), ("targets", "targets"), ("target", "target in 9 (95% CI)"),
            ("chance_target", "random 9"), ("identity", "identity in 9 (95% CI)"),
            ("chance_identity", "random 9 (identity)"), ("median_rank", "median rank")]))
    from omokage.service.server import SHARPEN_REST_S
    notes = ("Latency: each message is one piece of a stroke; its latency is the time to the first sketch.result "
             "that includes it (results are coalesced). The ping rows are the same clients and rate sending ping: the "
             "loop and transport's floor in this run. onnxruntime (v1.6): results carry PCA's quick preview and the "
             "`gen` decoder's follows as sketch.preview, for the newest result of each drawing, once the drawing "
             f"rests (no newer result for {1000 * SHARPEN_REST_S:g} ms) and as the decoder keeps up; its latency runs "
             "from the newest stroke its result included to the sharper preview, and 'sharper previews per result' "
             "is the share of results that got one. Drawing without pause, the pen never rests; the 'pen up' rows "
             "lift it after every stroke, and 'sharper previews per pen-up' is the share of those pauses that brought "
             "the sharper face. Usefulness: 'another image' is a re-render of the generated face (pose, light) or a "
             "held-out image of the character, traced: the honest case.")
    return write_results(out, "sketch", payload, "\n\n".join(tables), notes)


def _available_backends(models_dir: Path, wanted) -> list[str]:
    from omokage.sketch.service import preview_backends
    ok, why = preview_backends(models_dir)
    for b in wanted:
        if b not in ok:
            print(f"skipping preview backend {b}: {why.get(b, 'unknown backend')}", flush=True)
    return [b for b in wanted if b in ok]
