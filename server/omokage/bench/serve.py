"""`omokage bench serve`: N concurrent protocol clients over loopback running whole sessions.

The server runs as its own process (`omokage serve`), the clients in this one on uvloop. Each client
runs whole sessions: start, texture.get, choose x 3 (each followed by texture.get for new faces),
ping, decide. Two loads per concurrency level:
  paced      each simulated user thinks 20-80 ms between messages (fast users; real ones take ~10 s)
  saturated  closed loop, no think time: the most messages per second the server sustains
Baseline in the same run: a bare `websockets` echo server answering the same client library, the
transport's floor on this machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import msgpack

from omokage.bench.common import markdown_table, percentiles, write_results

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None):
        await asyncio.Future()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


async def _user(url: str, sessions: int, think: tuple[float, float] | None, samples, seed: int) -> int:
    from omokage.client import OmokageClient
    rng = random.Random(seed)
    sent = 0

    async def timed(kind, coro):
        nonlocal sent
        if think:
            await asyncio.sleep(rng.uniform(*think))
        t = time.perf_counter()
        result = await coro
        samples[kind].append(time.perf_counter() - t)
        sent += 1
        return result

    async with await OmokageClient.connect(url) as c:
        for s in range(sessions):
            grid = await timed("start", c.start("pca", seed=seed * 1000 + s))
            await timed("texture.get", c.fetch_textures([i.texture for i in grid.items]))
            for _ in range(3):
                grid = await timed("choose", c.choose(grid.items[rng.randrange(len(grid.items))].id))
                missing = [i.texture for i in grid.items if i.texture not in c.textures]
                if missing:
                    await timed("texture.get", c.fetch_textures(missing))
            await timed("ping", c.request("ping", t=time.time()))
            await timed("decide", c.decide(grid.ids[0]))
            c.textures.clear()  # each session a fresh headset: fetch textures again
    return sent


async def _echo_user(url: str, n: int, samples) -> int:
    from websockets.asyncio.client import connect
    payload = msgpack.packb({"type": "choose", "rid": 1, "id": 1234})
    async with connect(url, compression=None) as ws:
        for _ in range(n):
            t = time.perf_counter()
            await ws.send(payload)
            await ws.recv()
            samples["echo"].append(time.perf_counter() - t)
    return n


async def _level(url: str, clients: int, sessions: int, think) -> tuple[dict, float, int]:
    samples: dict[str, list[float]] = defaultdict(list)
    t = time.perf_counter()
    sent = await asyncio.gather(*(_user(url, sessions, think, samples, seed=k + 1) for k in range(clients)))
    wall = time.perf_counter() - t
    return samples, wall, sum(sent)


def _prepare(home: Path) -> tuple[Path, Path]:
    """The demo's catalog and models when there (all four algorithms are then served), else PCA on its catalog."""
    from omokage.demo import prepare
    if (home / "catalog" / "catalog.json").is_file() and (home / "models" / "pca").is_dir():
        return home / "catalog", home / "models"
    return prepare(home / "bench-serve", algorithms=["pca"])


def run(clients=(1, 10, 100), sessions: int = 3, out: Path = Path("benchmarks/results"),
        home: Path = Path("var"), min_total_sessions: int = 100) -> int:
    catalog, models = _prepare(Path(home))
    port, echo_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models",
                               str(models), "--port", str(port), "--log-level", "warning",
                               # one benchmark client sends thousands of messages a second: lift the per-connection
                               # limit (200/s by default) so the figures measure the server, not the limiter
                               "--max-messages-per-second", "1000000",
                               "--events", str(Path(home) / "events" / "bench-serve.jsonl")],
                              env=env, stderr=subprocess.DEVNULL)
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(echo_port)], stderr=subprocess.DEVNULL)
    rows = []
    try:
        _wait_http(port, server)
        time.sleep(0.5)
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        url = f"ws://127.0.0.1:{port}/ws"
        echo_samples: dict[str, list[float]] = defaultdict(list)
        t = time.perf_counter()
        runner(_echo_user(f"ws://127.0.0.1:{echo_port}", 2000, echo_samples))
        echo_wall = time.perf_counter() - t
        rows.append({"load": "baseline: websockets echo", "clients": 1, "message": "echo",
                     **percentiles(echo_samples["echo"]), "msgs_per_s": 2000 / echo_wall})
        for n in clients:
            per_client = max(sessions, -(-min_total_sessions // n))  # enough samples for a p99 at every level
            for load, think in (("paced", (0.02, 0.08)), ("saturated", None)):
                samples, wall, sent = runner(_level(url, n, per_client, think))
                rate = sent / wall
                for kind in ("choose", "start", "texture.get", "decide", "ping"):
                    rows.append({"load": load, "clients": n, "message": kind, **percentiles(samples[kind]),
                                 "msgs_per_s": rate if kind == "choose" else None})
                c = next(r for r in rows if r["clients"] == n and r["load"] == load and r["message"] == "choose")
                print(f"  {n:>4} clients {load:<9}: choose p50 {c['p50_ms']:.2f} ms p99 {c['p99_ms']:.2f} ms, "
                      f"{rate:,.0f} msgs/s", flush=True)
    finally:
        server.terminate()
        echo.terminate()
        server.wait(15)
        echo.wait(15)
    table = markdown_table(rows, [("load", "load"), ("clients", "clients"), ("message", "message"), ("n", "n"),
                                  ("p50_ms", "p50 (ms)"), ("p95_ms", "p95 (ms)"), ("p99_ms", "p99 (ms)"),
                                  ("msgs_per_s", "msgs/s (all types)")])
    notes = ("Round trip measured by the client (send to reply) over loopback; server and clients share this "
             "machine's cores. paced: 20-80 ms think time per message; saturated: none. msgs/s counts every "
             f"request of every type over the level's wall time. Each client runs at least {sessions} whole sessions, "
             f"and each level at least {min_total_sessions} in all.")
    write_results(Path(out), "serve", {"rows": rows, "min_sessions_per_client": sessions,
                                       "min_sessions_per_level": min_total_sessions}, table, notes)
    return 0
