"""`omokage bench study`: a simulated user study through the real server, its report, and kill -9 crash checks.

Simulated participants (the `bench choice` user: a hidden wanted face, picks drawn from a softmax over a perceptual
distance the engine never sees) run a study through `omokage serve --study` with the Python client: a practice
trial, then one free-choice trial per condition in Latin-square order, a Likert questionnaire after each condition
and best/worst at the end. Some disconnect in the middle of a trial and come back. Think times follow the reference
study's (median 10.8 s) divided by TIME_SCALE, so a study takes seconds, not hours; with simulated gaze (the
default, for the report's heatmaps) each grid is looked at for 2-5 s of real time instead, so it takes a minute or two.

The crash run does the same while the server process is killed with SIGKILL at random moments and restarted; each
client keeps a ledger of what the server acknowledged (each reply) and, after the run, the store must hold every
acknowledged event, no trial twice, and each reconnect must have resumed the participant where they were (the grid
they last saw, or the one after an action whose reply was lost in the crash).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omokage.bench.common import async_runner

TIME_SCALE = 100.0               # think times: the reference study's, divided by this
CRASH_TIME_SCALE = 10.0          # ... in the crash run: slower, so that the kills fall all through the study
MEDIAN_CHOICE_S = 10.8           # the reference study's median time per choice
MAX_STEPS = 6                    # a participant decides on the closest face by then
PICK_TEMPERATURE = 0.1           # the simulated user's pick noise (median perceptual distances)
BATCH_S = 0.1                    # simulated gaze goes out in batches this long, as the clients send it
QUESTIONS = [
    ("Q1", "likert", "The faces shown came closer to the face I wanted.", "condition"),
    ("Q2", "likert", "Choosing a face was easy.", "condition"),
    ("Q3", "likert", "I am satisfied with the face I decided on.", "condition"),
    ("Q4", "likert", "I would use this system to choose an avatar.", "condition"),
    ("best", "best", "Which system was the best?", "study"),
    ("worst", "worst", "Which system was the worst?", "study"),
]


def study_toml(name: str, codes: list[str], models: list[str], policy: str = "study", order: str = "latin",
               practice: int = 1, questions=QUESTIONS) -> str:
    lines = [f'name = "{name}"', f'title = "Simulated study: {", ".join(models)}"', f'order = "{order}"',
             "accept_unbalanced = true", f"practice_trials = {practice}", 'task = "free"',
             "participants = [" + ", ".join(f'"{c}"' for c in codes) + "]", ""]
    for m in models:
        lines += ["[[conditions]]", f'name = "{m}"', f'model = "{m}"', f'policy = "{policy}"', ""]
    for qid, kind, text, after in questions:
        lines += ["[[questions]]", f'id = "{qid}"', f'kind = "{kind}"', f'text = "{text}"', f'after = "{after}"', ""]
    return "\n".join(lines)


# --- the simulated participant --------------------------------------------------------------------------------------

class PerceivedFaces:
    """The simulated user's eyes: attribute distances between generated faces, in median units."""

    def __init__(self, catalog_dir: Path):
        from omokage.bench.choice import normalise_user_distances
        from omokage.bench.perceptual import AttributeDistances
        from omokage.catalog.store import Catalog
        catalog = Catalog(catalog_dir)
        attrs = [item.attributes for item in catalog.items]
        self.D, _ = normalise_user_distances(AttributeDistances(attrs).matrix(), np.arange(len(attrs)))
        self.n = len(attrs)


@dataclass
class Ledger:
    """What the server acknowledged to one participant, and what the reconnects found."""

    code: str
    acked: list[tuple] = field(default_factory=list)       # (trial index, kind, step, item)
    answered: list[str] = field(default_factory=list)
    grid: tuple | None = None                              # (trial index, step, ids) of the last acknowledged grid
    decided: set[int] = field(default_factory=set)         # trial indices acknowledged as decided
    inflight: tuple | None = None                          # an action sent whose reply has not come
    reconnects: int = 0
    drops: dict[str, int] = field(default_factory=dict)   # why connections ended: exception type -> count
    resumes_checked: int = 0
    resume_problems: list[str] = field(default_factory=list)
    steps: dict[str, list[int]] = field(default_factory=dict)    # condition label -> steps of its trials
    done: bool = False
    failure: str | None = None


def _think(rng: random.Random, scale: float) -> float:
    return min(60.1, max(0.8, rng.lognormvariate(np.log(MEDIAN_CHOICE_S), 0.8))) / scale


async def run_participant(url: str, code: str, faces: PerceivedFaces, seed: int, *, scale: float = TIME_SCALE,
                          disconnect_p: float = 0.0, deadline: float = 600.0, ledger: Ledger | None = None,
                          gaze: str | None = None) -> Ledger:
    """Run one participant to the end of the study, reconnecting whenever the connection drops (or, with
    probability disconnect_p per trial, dropping it on purpose mid-trial), and checking every resume.
    gaze ("eye" or "head"): the participant's eyes are simulated too (`omokage.gaze.simulate`): on each grid they
    look for 2-5 s of real time (their think time then), longer at faces nearer the one they want and, last, at the
    face they pick; the samples go to the server as `gaze.batch` rays before the pick."""
    from omokage.client import OmokageClient, OmokageError
    ledger = ledger or Ledger(code)
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    wanted: dict[int, int] = {}        # trial index -> the face this participant wants in it
    stop = time.monotonic() + deadline
    fresh = True                       # the first connection is not a resume
    while not ledger.done and time.monotonic() < stop:
        try:
            client = await OmokageClient.connect(url, participant=code, open_timeout=5)
        except OmokageError as exc:
            ledger.failure = f"hello refused: {exc}"
            return ledger
        except Exception:              # the server is down (being restarted): try again shortly
            await asyncio.sleep(0.1)
            continue
        try:
            if not fresh:
                ledger.reconnects += 1
            eyes = None
            if gaze:
                eyes = _Eyes(gaze, seed)
                await client.layout(eyes.layout.to_wire()["panels"])
            await _session(client, ledger, faces, rng, nprng, wanted, scale, disconnect_p, resume=not fresh,
                           eyes=eyes)
        except OmokageError as exc:
            ledger.failure = f"server answered {exc}"
            return ledger
        except _Drop:
            ledger.drops["simulated crash"] = ledger.drops.get("simulated crash", 0) + 1
        except Exception as exc:       # the connection went away: reconnect and resume
            why = type(exc).__name__
            if os.environ.get("OMOKAGE_DEBUG"):
                import traceback
                traceback.print_exc()
            ledger.drops[why] = ledger.drops.get(why, 0) + 1
        finally:
            fresh = False
            try:
                await asyncio.wait_for(client.close(), 2)
            except Exception:
                pass
    if not ledger.done and ledger.failure is None:
        ledger.failure = "did not finish before the deadline"
    return ledger


class _Drop(Exception):
    """A simulated headset crash: the participant drops the connection mid-trial."""


class _Eyes:
    """A participant's simulated gaze (its own random stream: the picks are the same with and without it)."""

    def __init__(self, source: str, seed: int):
        from omokage.gaze import Layout
        from omokage.gaze.simulate import GazeModel
        self.model = GazeModel(source=source, noise_deg=0.4 if source == "eye" else 0.2)
        self.layout = Layout.grid()
        self.rng = np.random.default_rng(seed + 7919)

    async def look(self, client, d: np.ndarray, picked: int | None) -> None:
        """Look at the grid on screen (its faces at distances `d` from the wanted one) until the pick of panel
        `picked`, in real time, then send what the eyes did."""
        from omokage.gaze.simulate import fixation_plan, render
        plan = fixation_plan(self.rng, d, picked, self.model)
        rows, _ = render(self.rng, plan, self.layout, time.time(), self.model)
        step = max(1, int(round(self.model.rate_hz * BATCH_S)))
        for k in range(0, len(rows), step):       # streamed as a headset does: each batch once its time has come
            batch = rows[k:k + step]
            await asyncio.sleep(max(0.0, batch[-1][0] - time.time()))
            await client.gaze(batch)


async def _session(client, ledger: Ledger, faces: PerceivedFaces, rng, nprng, wanted, scale, disconnect_p,
                   resume: bool, eyes: "_Eyes | None" = None) -> None:
    from omokage.client import Candidates
    first = True
    while True:
        reply = await client.study_next()
        if isinstance(reply, Candidates):
            grid = reply
            info = grid.trial          # only study.next's reply carries it; choose's replies do not
            t = info["index"]
            if first and resume:
                _check_resume(ledger, t, grid)
            first = False
            target = wanted.setdefault(t, int(nprng.integers(faces.n)))
            close_enough = float(np.quantile(np.delete(faces.D[target], target), 0.02))
            drop_at = rng.randint(1, 3) if rng.random() < disconnect_p else None
            while True:
                ledger.grid = (t, grid.step, tuple(grid.ids))
                ids = np.array(grid.ids)
                d = faces.D[target][ids]
                think = _think(rng, scale)
                if eyes is None:
                    await asyncio.sleep(think)
                if d.min() <= close_enough or grid.step >= MAX_STEPS or len(ids) < 2:
                    item = int(ids[int(np.argmin(d))])
                    if eyes is not None:
                        await eyes.look(client, d, int(np.argmin(d)))
                    ledger.inflight = (t, "decide", grid.step, item)
                    decided = await client.decide(item)
                    ledger.inflight = None
                    ledger.acked.append((t, "decide", decided["steps"], item))
                    ledger.decided.add(t)
                    if not info["practice"]:
                        ledger.steps.setdefault(info["label"], []).append(decided["steps"])
                    break
                w = np.exp(-(d - d.min()) / PICK_TEMPERATURE)
                k = int(nprng.choice(len(ids), p=w / w.sum()))
                pick = int(ids[k])
                if eyes is not None:
                    await eyes.look(client, d, k)
                ledger.inflight = (t, "choose", grid.step + 1, pick)
                grid = await client.choose(pick)
                ledger.inflight = None
                ledger.acked.append((t, "choose", grid.step, pick))
                if drop_at is not None and grid.step > drop_at:
                    ledger.grid = (t, grid.step, tuple(grid.ids))
                    raise _Drop()
        elif reply["type"] == "questionnaire":
            first = False
            await asyncio.sleep(_think(rng, scale))
            values = _answers(reply, ledger, rng)
            ledger.inflight = ("answers", reply["id"])
            await client.answers(reply["id"], values)
            ledger.inflight = None
            ledger.answered.append(reply["id"])
        else:
            ledger.done = True
            return


def _check_resume(ledger: Ledger, t: int, grid) -> None:
    """A reconnect must land where the participant was: the last acknowledged grid of that trial, or the grid after
    an action sent just before the crash (committed, but its reply lost)."""
    ledger.resumes_checked += 1
    inflight = ledger.inflight
    last = ledger.grid
    if last is None or last[0] in ledger.decided:
        expected = {min(set(range(1, 1000)) - ledger.decided)}
        if inflight and inflight[1] == "decide":
            expected.add(inflight[0] + 1)
        if t not in expected and not (last is None and grid.step == 1):
            ledger.resume_problems.append(f"{ledger.code}: resumed at trial {t}, expected {sorted(expected)}")
        return
    lt, lstep, lids = last
    if t == lt and grid.step == lstep and tuple(grid.ids) == lids:
        return
    if inflight and inflight[0] == lt and inflight[1] == "choose" and t == lt and grid.step == lstep + 1:
        return
    if inflight and inflight[0] == lt and inflight[1] == "decide" and t == lt + 1:
        return
    ledger.resume_problems.append(f"{ledger.code}: resumed at trial {t} step {grid.step}, last acknowledged "
                                  f"trial {lt} step {lstep} (in flight: {inflight})")


def _answers(q: dict[str, Any], ledger: Ledger, rng: random.Random) -> dict[str, Any]:
    """Likert answers that follow how the condition went (fewer steps: better), with noise; best/worst: the
    conditions with the fewest / most steps on average, with noise."""
    out: dict[str, Any] = {}
    label = q["title"].removeprefix("About ")
    steps = ledger.steps.get(label, [3])
    score: dict[str, float] = {}    # one impression of each condition for the whole questionnaire: best ≠ worst
    for item in q["items"]:
        if item["kind"] == "likert":
            out[item["id"]] = int(np.clip(round(5.2 - 0.6 * np.mean(steps) + rng.gauss(0, 0.9)), 1, 5))
        elif item["kind"] in ("best", "worst"):
            for c in item["choices"]:
                score.setdefault(c, np.mean(ledger.steps.get(c, [3])) + rng.gauss(0, 0.8))
            out[item["id"]] = (min if item["kind"] == "best" else max)(item["choices"], key=score.get)
        elif item["kind"] == "text":
            out[item["id"]] = ""
    return out


# --- the server process ------------------------------------------------------------------------------------------------

class ServerProcess:
    """`omokage serve --study` in a child process, killable with SIGKILL and restartable on the same port."""

    def __init__(self, catalog: Path, models: Path, db: Path, study: str, port: int, log: Path):
        self.cmd = [sys.executable, "-m", "omokage", "serve", "--catalog", str(catalog), "--models", str(models),
                    "--db", str(db), "--study", study, "--port", str(port), "--log-level", "warning",
                    "--max-messages-per-second", "100000"]
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self.restart_seconds: list[float] = []

    def start(self, timeout: float = 120) -> float:
        t = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     stderr=open(self.log, "a"), stdout=subprocess.DEVNULL)
        from omokage.bench.serve import _wait_http
        _wait_http(self.port, self.proc, timeout, log=Path(self.log))
        took = time.perf_counter() - t
        self.restart_seconds.append(took)
        return took

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


async def _killer(server: ServerProcess, kills: int, rng: random.Random, window: tuple[float, float],
                  running) -> None:
    loop = asyncio.get_running_loop()
    while server.kills < kills and running():
        await asyncio.sleep(rng.uniform(*window))
        if not running():
            return
        server.kill()
        await loop.run_in_executor(None, server.start)


async def run_study(url: str, codes: list[str], faces: PerceivedFaces, seed: int, *, scale: float = TIME_SCALE,
                    disconnect_p: float = 0.0, server: ServerProcess | None = None, kills: int = 0,
                    kill_window: tuple[float, float] = (0.5, 2.0), deadline: float = 600.0,
                    gaze: str | None = None) -> list[Ledger]:
    ledgers = [Ledger(code) for code in codes]
    tasks = [asyncio.create_task(run_participant(url, code, faces, seed * 1000 + i, scale=scale,
                                                 disconnect_p=disconnect_p, deadline=deadline, ledger=ledgers[i],
                                                 gaze=gaze))
             for i, code in enumerate(codes)]
    killer = None
    if server is not None and kills:
        killer = asyncio.create_task(_killer(server, kills, random.Random(seed + 99), kill_window,
                                             lambda: not all(t.done() for t in tasks)))
    await asyncio.gather(*tasks)
    if killer is not None:
        killer.cancel()
        try:
            await killer
        except (asyncio.CancelledError, Exception):
            pass
    return ledgers


# --- checks against the store ------------------------------------------------------------------------------------------

def check_store(db: Path, study: str, ledgers: list[Ledger]) -> dict[str, Any]:
    """Every acknowledged event in the store, no trial twice, every participant finished with a complete plan."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        problems: list[str] = []
        sid = conn.execute("SELECT id FROM studies WHERE name = ?", (study,)).fetchone()[0]
        acked = missing = 0
        for ledger in ledgers:
            pid = conn.execute("SELECT id FROM participants WHERE study_id = ? AND code = ?",
                               (sid, ledger.code)).fetchone()[0]
            trial_ids = {idx + 1: tid for tid, idx in conn.execute(
                "SELECT id, idx FROM trials WHERE participant_id = ?", (pid,))}
            for t, kind, step, item in ledger.acked:
                acked += 1
                table = "choices" if kind == "choose" else "decisions"
                if not conn.execute(f"SELECT 1 FROM {table} WHERE trial_id = ? AND step = ? AND item = ?",
                                    (trial_ids[t], step - 1 if kind == "choose" else step, item)).fetchone():
                    missing += 1
                    problems.append(f"{ledger.code}: acknowledged {kind} of {item} at trial {t} step {step} is not "
                                    "in the store")
            stored = {r[0] for r in conn.execute("SELECT DISTINCT questionnaire FROM answers WHERE participant_id = ?",
                                                 (pid,))}
            for q in ledger.answered:
                acked += 1
                if q not in stored:
                    missing += 1
                    problems.append(f"{ledger.code}: acknowledged answers to {q} are not in the store")
            undecided = conn.execute("SELECT COUNT(*) FROM trials WHERE participant_id = ? AND completed_at IS NULL",
                                     (pid,)).fetchone()[0]
            if ledger.done and undecided:
                problems.append(f"{ledger.code}: finished, but {undecided} trials have no decision")
            if ledger.failure:
                problems.append(f"{ledger.code}: {ledger.failure}")
            problems += ledger.resume_problems
        dup_decisions = conn.execute("SELECT COUNT(*) FROM (SELECT trial_id FROM decisions WHERE trial_id IS NOT NULL "
                                     "GROUP BY trial_id HAVING COUNT(*) > 1)").fetchone()[0]
        dup_choices = conn.execute("SELECT COUNT(*) FROM (SELECT trial_id, step FROM choices WHERE trial_id IS NOT NULL "
                                   "GROUP BY trial_id, step HAVING COUNT(*) > 1)").fetchone()[0]
        dup_begins = conn.execute("SELECT COUNT(*) FROM (SELECT trial_id FROM events WHERE kind = 'trial_begin' "
                                  "GROUP BY trial_id HAVING COUNT(*) > 1)").fetchone()[0]
        if dup_decisions or dup_choices or dup_begins:
            problems.append(f"duplicated: {dup_decisions} trials decided twice, {dup_choices} steps chosen twice, "
                            f"{dup_begins} trials begun twice")
        return {"acknowledged": acked, "missing": missing, "duplicated_trials": dup_decisions + dup_begins,
                "duplicated_steps": dup_choices, "reconnects": sum(lg.reconnects for lg in ledgers),
                "resumes_checked": sum(lg.resumes_checked for lg in ledgers),
                "resume_problems": sum(len(lg.resume_problems) for lg in ledgers),
                "finished": sum(lg.done for lg in ledgers), "participants": len(ledgers), "problems": problems,
                "ok": not problems}
    finally:
        conn.close()


# --- event-store throughput -------------------------------------------------------------------------------------------

def store_throughput(folder: Path, writers: int = 100, commits: int = 50, per_commit: int = 3) -> list[dict[str, Any]]:
    """events/s through EventStore and the JSON-lines EventFile, with and without fsync: `writers` concurrent tasks,
    each awaiting `commits` commits of `per_commit` choose-like records in turn (what a server under load does)."""
    from omokage.service.server import EventFile
    from omokage.store import EventStore
    rows = []
    record = {"event": "choose", "session_id": "s", "step": 2, "algorithm": "pca", "item": 17, "policy": "study",
              "candidates": list(range(9))}
    for sink in ("store", "jsonl"):
        for fsync in (True, False):
            path = folder / f"throughput-{sink}-{'fsync' if fsync else 'nofsync'}.{'db' if sink == 'store' else 'jsonl'}"
            for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
                p.unlink(missing_ok=True)
            out = EventStore(path, fsync=fsync) if sink == "store" else EventFile(path, fsync=fsync)

            async def writer(k):
                for n in range(commits):
                    await out.commit([{**record, "session_id": f"s{k}", "at": time.time(), "n": n}
                                      for _ in range(per_commit)])

            async def main():
                await asyncio.gather(*(writer(k) for k in range(writers)))

            t = time.perf_counter()
            asyncio.run(main())
            wall = time.perf_counter() - t
            stats = out.stats()
            out.close()
            events = writers * commits * per_commit
            rows.append({"sink": sink, "fsync": "yes" if fsync else "no", "events": events,
                         "events_per_s": events / wall, "commits_per_s": writers * commits / wall,
                         "events_per_batch": stats.get("events_per_batch"),
                         "batches": stats.get("batches")})
            print(f"  {sink:<5} fsync {'yes' if fsync else 'no ':<3}: {events / wall:,.0f} events/s "
                  f"({stats.get('events_per_batch')} events per group commit)", flush=True)
    return rows


# --- the benchmark -----------------------------------------------------------------------------------------------------

def _prepare(home: Path) -> tuple[Path, Path]:
    from omokage.demo import prepare
    models = ["raw", "pca", "nmf", "ae"]
    if (home / "catalog" / "catalog.json").is_file() and all((home / "models" / m).is_dir() for m in models):
        return home / "catalog", home / "models"
    return prepare(home, algorithms=models)


def run(participants: int = 18, kills: int = 20, out: Path = Path("benchmarks/results"), home: Path = Path("var"),
        seed: int = 0, gaze: str | None = "eye") -> int:
    from omokage.bench.common import markdown_table, write_results
    from omokage.bench.serve import _free_port
    from omokage.study.definition import create_study, parse_study
    from omokage.study.report import summarise, read_study_data, write_report
    catalog, models = _prepare(Path(home))
    work = Path(home) / "bench-study"
    work.mkdir(parents=True, exist_ok=True)
    faces = PerceivedFaces(catalog)
    codes = [f"sim-{seed}-{k:02d}-{random.Random(seed * 100 + k).getrandbits(24):06x}" for k in range(participants)]
    conditions = ["raw", "pca", "nmf", "ae"]
    runner = async_runner()
    results: dict[str, Any] = {"participants": participants, "conditions": conditions, "time_scale": TIME_SCALE,
                               "gaze": gaze}

    print("event-store write throughput (100 writers, group commit):", flush=True)
    results["throughput"] = store_throughput(work)

    def one_run(name: str, kills_wanted: int, disconnect_p: float, gaze: str | None = None):
        db = work / f"{name}.db"
        for p in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm")):
            p.unlink(missing_ok=True)
        text = study_toml(name, codes, conditions)
        create_study(db, parse_study(text), text)
        port = _free_port()
        server = ServerProcess(catalog, models, db, name, port, work / f"{name}.log")
        server.start()
        t = time.perf_counter()
        try:
            ledgers = runner(run_study(f"ws://127.0.0.1:{port}/ws", codes, faces, seed, disconnect_p=disconnect_p,
                                       server=server, kills=kills_wanted,
                                       scale=TIME_SCALE if not kills_wanted else CRASH_TIME_SCALE,
                                       kill_window=(0.3, 1.5), deadline=1800, gaze=gaze))
        finally:
            server.stop()
        wall = time.perf_counter() - t
        check = check_store(db, name, ledgers)
        check.update(kills=server.kills, wall_s=wall,
                     restart_s_median=float(np.median(server.restart_seconds[1:])) if server.kills else None)
        print(f"  {name}: {check['finished']}/{participants} finished in {wall:.0f} s, {server.kills} kills, "
              f"{check['reconnects']} reconnects, {check['acknowledged']} acknowledged events, {check['missing']} "
              f"missing, {check['duplicated_trials']} duplicated trials, {check['resume_problems']} resume "
              f"problems", flush=True)
        for p in check["problems"][:10]:
            print(f"    {p}", flush=True)
        return db, check

    print(f"simulated study: {participants} participants x {len(conditions)} conditions, some disconnecting"
          + (f", with simulated {gaze} gaze (2-5 s per grid, in real time)" if gaze else "") + ":", flush=True)
    db, check = one_run("simulated", 0, disconnect_p=0.15, gaze=gaze)
    report_dir = Path(out) / "study-report"
    write_report(db, "simulated", report_dir)
    summary = summarise(read_study_data(db, "simulated"))
    results["study"] = {"check": check, "summary": summary, "report": str(report_dir)}
    print(f"crash run: the same study while the server is killed with SIGKILL {kills} times:", flush=True)
    _, crash = one_run("crash", kills, disconnect_p=0.0)
    results["crash"] = crash

    s = summary
    table = "Event-store write throughput (100 concurrent writers, each awaiting 50 commits of 3 events):\n\n"
    table += markdown_table(results["throughput"], [("sink", "sink"), ("fsync", "fsync"), ("events", "events"),
                                                    ("events_per_s", "events/s"), ("commits_per_s", "commits/s"),
                                                    ("events_per_batch", "events per group commit")])
    table += "\n\nSimulated study (report: [study-report/report.html](study-report/report.html), " \
             "[report.md](study-report/report.md)):\n\n"
    table += markdown_table([{"condition": c, **v} for c, v in s["per_condition"].items()],
                            [("condition", "condition"), ("trials", "trials"), ("steps_median", "steps median"),
                             ("steps_min", "min"), ("steps_max", "max"), ("time_median_s", "time per choice (s)")])
    fr = s["tests"]["steps"].get("friedman") or {}
    votes = s["votes"]
    table += (f"\n\nSteps to decision: median {s['steps']['median']} (range {s['steps']['min']}–{s['steps']['max']}); "
              + (f"time per choice: median {s['time_per_choice_s']['median']:.2f} s (the simulated eyes look at each "
                 "grid for 2-5 s in real time). " if gaze else
                 f"time per choice: median {s['time_per_choice_s']['median']:.3f} s (x{TIME_SCALE:g} = "
                 f"{s['time_per_choice_s']['median'] * TIME_SCALE:.1f} s at a person's pace). ")
              + "Friedman on steps: "
              f"chi2 = {fr.get('chi2', float('nan')):.2f}, p = {fr.get('p', float('nan')):.3g}, Kendall's W = "
              f"{fr.get('kendall_w', float('nan')):.3f}. Best/worst votes: " +
              ", ".join(f"{c} {votes.get('best', {}).get(c, 0)}/{votes.get('worst', {}).get(c, 0)}"
                        for c in conditions) + ".")
    rows = [{"run": "simulated (disconnects)", **check}, {"run": "crash (SIGKILL)", **crash}]
    table += "\n\nDurability checks against the store:\n\n" + markdown_table(
        rows, [("run", "run"), ("participants", "participants"), ("finished", "finished"), ("kills", "kill -9"),
               ("reconnects", "reconnects"), ("resumes_checked", "resumes checked"),
               ("acknowledged", "acknowledged events"), ("missing", "missing from the store"),
               ("duplicated_trials", "duplicated trials"), ("duplicated_steps", "duplicated steps"),
               ("resume_problems", "wrong resumes"), ("restart_s_median", "restart (s, median)"),
               ("wall_s", "wall (s)")])
    notes = ("Simulated participants: the `bench choice` user (attribute distance to a hidden wanted face, softmax "
             f"picks at T = {PICK_TEMPERATURE}), deciding on the closest face shown once one is within the 2% nearest "
             f"of the wanted face, or at step {MAX_STEPS}; Likert answers and best/worst votes follow the steps each "
             "condition took, with noise: the statistics show the pipeline, not people. "
             + (f"In the study run each participant's eyes are simulated ({gaze} gaze, `omokage.gaze.simulate`: "
                "longer looks at faces nearer the wanted one, the gaze cascade onto the face picked) for 2-5 s of "
                "real time per grid, sent as gaze.batch rays before each pick: the report's gaze section. "
                if gaze else "")
             + "Think times (without gaze, and in the crash run): lognormal around "
             f"the reference study's median {MEDIAN_CHOICE_S} s, divided by {TIME_SCALE:g} (by {CRASH_TIME_SCALE:g} in "
             "the crash run). The crash run kills the server process with SIGKILL at random moments (0.3-1.5 s after "
             "each restart) while every participant runs; clients reconnect and resume. 'acknowledged events' are "
             "the choices, decisions and questionnaire answers whose reply reached a client; each must be in the "
             "store afterwards. A resume is right when the participant sees the grid they last saw (or the next one, "
             "when a reply was lost in the crash). The store syncs each group commit (synchronous=FULL).")
    results["ok"] = check["ok"] and crash["ok"]
    write_results(Path(out), "study", results, table, notes)
    return 0 if results["ok"] else 1
