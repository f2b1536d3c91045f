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
import json
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

from omokage.bench.common import async_runner, markdown_table, percentiles, write_results
from omokage.errors import UserError

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


def _server_said(log: Path | None) -> str:
    """The last thing a server that would not start logged (its stderr is JSON lines; a traceback is plain text)."""
    if log is None:
        return ""
    try:
        lines = [ln for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            return f": {line.strip()[:300]}"
        said = rec.get("msg") or rec.get("message") if isinstance(rec, dict) else None
        if isinstance(rec, dict) and rec.get("level") in ("error", "critical") and said:
            return f": {str(said)[:300]}"
    return ""


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 120, log: Path | None = None) -> None:
    """Until the server started for a benchmark answers /healthz. One that exits first is a UserError saying why (the
    last error in its log, `log`), not a traceback: e.g. models fitted on another catalog."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            where = f" (its log: {log})" if log is not None else ""
            raise UserError(f"the server for the benchmark exited with {proc.returncode}{_server_said(log)}{where}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become healthy")


async def _user(url: str, sessions: int, think: tuple[float, float] | None, samples, seed: int,
                policy: str | None = None) -> int:
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
            grid = await timed("start", c.start("pca", seed=seed * 1000 + s, policy=policy))
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


async def _level(url: str, clients: int, sessions: int, think, policy: str | None = None) -> tuple[dict, float, int]:
    samples: dict[str, list[float]] = defaultdict(list)
    t = time.perf_counter()
    sent = await asyncio.gather(*(_user(url, sessions, think, samples, seed=k + 1, policy=policy)
                                  for k in range(clients)))
    wall = time.perf_counter() - t
    return samples, wall, sum(sent)


def _prepare(home: Path) -> tuple[Path, Path]:
    """The demo's catalog and models when there (all its algorithms are then served; any fitted on another catalog,
    say a demo run with another --count, are fitted again, as the server would refuse them), else PCA on its own
    catalog."""
    from omokage.demo import prepare
    from omokage.features import ALGORITHMS
    from omokage.features.fitting import ensure_models
    catalog, models = home / "catalog", home / "models"
    if (catalog / "catalog.json").is_file() and (models / "pca").is_dir():
        served = [d.name for d in models.iterdir() if d.is_dir() and (d.name in ALGORITHMS or d.name == "sketch")]
        ensure_models(catalog, models, sorted(served))
        return catalog, models
    return prepare(home / "bench-serve", algorithms=["pca"])


def _start_server(catalog: Path, models: Path, port: int, events: Path, log: Path, fsync: bool = True,
                  sink: str = "jsonl"):
    """sink: `jsonl` (--events: the JSON-lines log alone) or `store` (--db: the SQLite event store alone)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for p in (events, Path(str(events) + "-wal"), Path(str(events) + "-shm")):
        p.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models", str(models),
           "--port", str(port), "--log-level", "warning",
           # one benchmark client sends thousands of messages a second: lift the per-connection
           # limit (200/s by default) so the figures measure the server, not the limiter
           "--max-messages-per-second", "1000000", "--events" if sink == "jsonl" else "--db", str(events)]
    if not fsync:
        cmd.append("--no-fsync")
    return subprocess.Popen(cmd, env=env, stderr=open(log, "w"))


def server_health(port: int) -> dict:
    """A loopback server's /healthz with its details (a loopback caller sees them), or {} when it does not answer."""
    import json
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return json.loads(r.read())
    except OSError:
        return {}


def _stop_server(server: subprocess.Popen, port: int) -> dict:
    """The event log's own figures (events, commits, fsync time; from /healthz, which shows them to a
    loopback caller), then SIGTERM."""
    health = server_health(port)
    stats = health.get("event_log") or health.get("store") or {}
    if "commit_ms_per_batch" in stats:   # the store: its commit (with the WAL's sync) stands for the fsync
        stats["fsync_ms_per_batch"] = stats["commit_ms_per_batch"]
    server.terminate()
    server.wait(30)
    return stats


def durability(catalog: Path, models: Path, logs: Path, n: int, per_client: int, policy: str | None,
               runner) -> list[dict]:
    """The busiest paced level on a fresh server per event sink (the SQLite store, the JSON-lines log), each with and
    without fsync, in this run, so the differences are the sinks and not the machine's mood."""
    durability = []
    for sink in ("store", "jsonl"):
        for fsync in (True, False):
            port = _free_port()
            name = f"bench-serve-{sink}-{'fsync' if fsync else 'nofsync'}"
            server = _start_server(catalog, models, port, logs / f"{name}.{'db' if sink == 'store' else 'jsonl'}",
                                   logs / f"{name}.log", fsync=fsync, sink=sink)
            try:
                _wait_http(port, server, log=logs / f"{name}.log")
                time.sleep(0.5)
                samples, wall, sent = runner(_level(f"ws://127.0.0.1:{port}/ws", n, per_client, (0.02, 0.08),
                                                    policy))
            finally:
                stats = _stop_server(server, port)
            steps = samples["choose"] + samples["decide"] + samples["start"]  # the messages that log an event
            row = {"sink": "SQLite store" if sink == "store" else "JSON lines", "fsync": "yes" if fsync else "no",
                   "clients": n, **percentiles(steps),
                   "choose_p99_ms": percentiles(samples["choose"])["p99_ms"], "msgs_per_s": sent / wall,
                   # the floor under any reply in this run: a ping logs nothing and costs the server next to nothing
                   "ping_p99_ms": percentiles(samples["ping"])["p99_ms"],
                   "events": stats.get("events"), "batches": stats.get("batches"),
                   "events_per_batch": stats.get("events_per_batch"),
                   "fsync_ms_per_batch": stats.get("fsync_ms_per_batch")}
            if fsync and row["fsync_ms_per_batch"] and row["events_per_batch"]:
                row["fsync_ms_per_event"] = row["fsync_ms_per_batch"] / row["events_per_batch"]
            if sink == "store":
                server_side = percentiles(server_step_times(logs / f"{name}.db"))
                row["server_p50_ms"], row["server_p99_ms"] = server_side["p50_ms"], server_side["p99_ms"]
            durability.append(row)
            print(f"  {n:>4} clients paced, {sink:<5} fsync {row['fsync']:<3}: step p50 {row['p50_ms']:.2f} ms "
                  f"p99 {row['p99_ms']:.2f} ms, {row['events']} events in {row['batches']} batches", flush=True)
    for pair in (durability[0:2], durability[2:4]):
        if len(pair) == 2:
            pair[0]["p99_cost_ms"] = pair[0]["p99_ms"] - pair[1]["p99_ms"]
            pair[0]["p50_cost_ms"] = pair[0]["p50_ms"] - pair[1]["p50_ms"]
    return durability


def server_step_times(db: Path, kinds=("start", "choose", "decide")) -> list[float]:
    """The server's own time per step, from the store's wire log: from taking the request off the connection to handing
    its reply to the transport, commit included (seconds). What the client's round trip adds to it: the network, both
    event loops' queues, and the client process's own lag (on this machine the clients share the server's cores)."""
    from omokage.store.db import log_records
    received: dict[tuple, float] = {}
    out: list[float] = []
    for r in log_records(db, wire=True):
        if r.get("wire") == "in" and r.get("kind") in kinds and r.get("rid") is not None:
            received[(r["session_id"], r["rid"])] = r["at"]
        elif r.get("wire") == "out" and r.get("rid") is not None:
            t = received.pop((r["session_id"], r["rid"]), None)
            if t is not None:
                out.append(r["at"] - t)
    return out


DURABILITY_COLUMNS = [("sink", "sink"), ("fsync", "fsync"), ("clients", "clients"), ("n", "steps"),
                      ("p50_ms", "step p50 (ms)"), ("p99_ms", "step p99 (ms)"), ("choose_p99_ms", "choose p99 (ms)"),
                      ("ping_p99_ms", "ping p99 (ms)"), ("server_p50_ms", "server-side step p50 (ms)"),
                      ("server_p99_ms", "server-side step p99 (ms)"),
                      ("events", "records"), ("events_per_batch", "records per commit"),
                      ("fsync_ms_per_batch", "commit/fsync (ms)"), ("p50_cost_ms", "fsync p50 cost (ms)"),
                      ("p99_cost_ms", "fsync p99 cost (ms)")]


def run_durability(clients: int = 100, sessions: int = 3, out: Path = Path("benchmarks/results"),
                   home: Path = Path("var"), min_total_sessions: int = 100, policy: str | None = None) -> int:
    """`bench serve --durability-only`: the event sinks compared at the busiest level, and the store's write
    throughput; writes store.md / store.json (serve.md keeps the full run)."""
    from omokage.bench.study import store_throughput
    catalog, models = _prepare(Path(home))
    logs = Path(home) / "events"
    logs.mkdir(parents=True, exist_ok=True)
    runner = async_runner()
    print("event-sink write throughput (100 writers, group commit):", flush=True)
    throughput = store_throughput(logs)
    per_client = max(sessions, -(-min_total_sessions // clients))
    rows = durability(catalog, models, logs, clients, per_client, policy, runner)
    table = ("Step round trip at 100 paced clients (20-80 ms think time), a fresh server per sink; steps = start, "
             "choose, decide, each of which commits its records before its reply:\n\n"
             + markdown_table(rows, DURABILITY_COLUMNS)
             + "\n\nWrite throughput of the sinks alone (no server: 100 concurrent writers, each awaiting 50 commits "
               "of 3 records in turn):\n\n"
             + markdown_table(throughput, [("sink", "sink"), ("fsync", "fsync"), ("events", "records"),
                                           ("events_per_s", "records/s"), ("commits_per_s", "commits/s"),
                                           ("events_per_batch", "records per group commit")]))
    notes = ("The SQLite store (`serve --db`; a study always uses it) keeps every message in and out besides the session events "
             "(records = both), in WAL mode, written by a writer process, one transaction per group commit; fsync yes = "
             "synchronous=FULL (each commit syncs the WAL), no = synchronous=NORMAL (survives kill -9, not a power "
             "loss). The JSON-lines log (`serve --events`) writes only the session events. commit/fsync: the store's "
             "whole commit time per batch, the log's fsync time per batch. Round trips measured by the client over "
             f"loopback; server and clients share this machine's 2 cores. ping p99: the same clients' pings in the "
             "same run, which log nothing: the floor the transport, both event loops and the machine's load put under "
             "every reply. server-side step: the same steps timed by the server itself, from the store's wire log "
             "(request taken off the connection → reply handed to the transport, the commit included): what the "
             "server spends, without the network, the queues of both loops or the client process's own lag. "
             f"Policy: {policy or 'the server default'}.")
    write_results(Path(out), "store", {"durability": rows, "throughput": throughput, "policy": policy}, table, notes)
    return 0


def run(clients=(1, 10, 100), sessions: int = 3, out: Path = Path("benchmarks/results"),
        home: Path = Path("var"), min_total_sessions: int = 100, policy: str | None = None,
        durability_only: bool = False) -> int:
    if durability_only:
        return run_durability(max(clients), sessions, out, home, min_total_sessions, policy)
    catalog, models = _prepare(Path(home))
    port, echo_port = _free_port(), _free_port()
    logs = Path(home) / "events"
    logs.mkdir(parents=True, exist_ok=True)
    server = _start_server(catalog, models, port, logs / "bench-serve.jsonl", logs / "bench-serve.log")
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(echo_port)], stderr=subprocess.DEVNULL)
    rows = []
    runner = async_runner()
    try:
        _wait_http(port, server, log=logs / "bench-serve.log")
        time.sleep(0.5)
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
                samples, wall, sent = runner(_level(url, n, per_client, think, policy))
                rate = sent / wall
                for kind in ("choose", "start", "texture.get", "decide", "ping"):
                    rows.append({"load": load, "clients": n, "message": kind, **percentiles(samples[kind]),
                                 "msgs_per_s": rate if kind == "choose" else None})
                c = next(r for r in rows if r["clients"] == n and r["load"] == load and r["message"] == "choose")
                print(f"  {n:>4} clients {load:<9}: choose p50 {c['p50_ms']:.2f} ms p99 {c['p99_ms']:.2f} ms, "
                      f"{rate:,.0f} msgs/s", flush=True)
    finally:
        _stop_server(server, port)
        echo.terminate()
        echo.wait(15)

    # Durability: the busiest paced level once more per event sink, with and without fsync
    n = max(clients)
    per_client = max(sessions, -(-min_total_sessions // n))
    durability_rows = durability(catalog, models, logs, n, per_client, policy, runner)

    table = markdown_table(rows, [("load", "load"), ("clients", "clients"), ("message", "message"), ("n", "n"),
                                  ("p50_ms", "p50 (ms)"), ("p95_ms", "p95 (ms)"), ("p99_ms", "p99 (ms)"),
                                  ("msgs_per_s", "msgs/s (all types)")])
    table += "\n\nEvent durability at the busiest paced level (a fresh server per sink; steps = start, choose, " \
             "decide, each of which commits its records before its reply):\n\n" + markdown_table(
                 durability_rows, DURABILITY_COLUMNS)
    notes = ("Round trip measured by the client (send to reply) over loopback; server and clients share this "
             "machine's cores. paced: 20-80 ms think time per message; saturated: none. msgs/s counts every "
             f"request of every type over the level's wall time. Each client runs at least {sessions} whole sessions, "
             f"and each level at least {min_total_sessions} in all. The server group-commits session events with "
             "fsync before the reply that acknowledges them (the default); the durability table compares it with "
             "`--no-fsync` in the same run. fsync per event = fsync time per commit / events per commit. Policy: "
             f"{policy or 'the server default'}.")
    write_results(Path(out), "serve", {"rows": rows, "durability": durability_rows, "policy": policy,
                                       "min_sessions_per_client": sessions,
                                       "min_sessions_per_level": min_total_sessions}, table, notes)
    return 0
