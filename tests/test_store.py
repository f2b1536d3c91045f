"""The event store (issue 12): schema and migrations, group commit, integrity check, the server writing every
message in and out, JSON-lines export, fit user-model reading a store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
import subprocess
import sys
import time

import pytest

from omokage.client import OmokageClient
from omokage.service.server import configure_logging
from omokage.store import SCHEMA_VERSION, EventStore, StoreError, export_jsonl, log_records, open_database

from .conftest import RunningServer, gaze_kit


def test_a_new_store_is_migrated_to_the_current_schema_in_wal_mode(tmp_path):
    conn = open_database(tmp_path / "s.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "participants", "studies", "conditions", "trials", "events", "candidates", "choices",
            "decisions", "skips", "ratings", "pings", "answers", "gaze_samples", "fixations", "sketch_updates"} <= tables
    conn.close()
    assert open_database(tmp_path / "s.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_store_from_a_newer_omokage_is_refused(tmp_path):
    conn = open_database(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this omokage"):
        open_database(tmp_path / "s.db")


def _fill(path, n=3000):
    store = EventStore(path, fsync=False)

    async def go():
        await asyncio.gather(*(store.commit([{"event": "choose", "session_id": f"s{k}", "at": 1.0, "step": 2,
                                              "item": k, "candidates": list(range(9)), "pad": "x" * 200}])
                               for k in range(n)))
    asyncio.run(go())
    store.close()


def test_a_corrupted_page_is_detected_at_start_and_never_served(tmp_path):
    path = tmp_path / "s.db"
    _fill(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for off in range(10 * page, 10 * page + 64):   # the header of a b-tree page in the middle of the file
        data[off] = 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        EventStore(path)
    message = str(err.value)
    assert "damaged" in message and ".recover" in message and "not served" in message
    (tmp_path / "junk.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_database(tmp_path / "junk.db")


def test_commits_are_grouped_and_acknowledged_only_once_committed(tmp_path):
    path = tmp_path / "s.db"
    store = EventStore(path, fsync=True)
    reader = sqlite3.connect(path)

    async def go():
        async def one(k):
            await store.commit([{"event": "choose", "session_id": f"s{k}", "at": 1.0, "step": 2, "item": k,
                                 "candidates": [k, 1, 2]}])
            # acknowledged: another connection sees it at once
            return reader.execute("SELECT COUNT(*) FROM choices WHERE session_id = ?", (f"s{k}",)).fetchone()[0]
        return await asyncio.gather(*(one(k) for k in range(60)))
    seen = asyncio.run(go())
    assert seen == [1] * 60
    store.write({"event": "disconnect", "session_id": "s1", "name": "caf\udce9"})   # a surrogate must not kill it
    store.close()
    stats = store.stats()
    assert stats["events"] == 61 and stats["batches"] < 60 and stats["failed_batches"] == 0
    assert reader.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 180


def test_one_bad_record_fails_only_its_own_commit(tmp_path):
    path = tmp_path / "s.db"
    store = EventStore(path)
    reader = sqlite3.connect(path)

    async def go():
        async def one(k, item):
            try:
                await store.commit([{"event": "choose", "session_id": f"s{k}", "at": 1.0, "step": 2, "item": item,
                                     "candidates": [1, 2]}])
                return "ok"
            except Exception as exc:
                return type(exc).__name__
        # all queued before the writer's next pass, so they share one group commit
        return await asyncio.gather(*(one(k, {"not": "an id"} if k == 7 else k) for k in range(20)))
    results = asyncio.run(go())
    store.close()
    assert results[7] != "ok" and results[:7] + results[8:] == ["ok"] * 19
    assert reader.execute("SELECT COUNT(*) FROM choices").fetchone()[0] == 19
    assert store.stats()["failed_batches"] == 1


def test_the_sqlite_work_runs_in_a_writer_process_that_a_crash_does_not_take_down(tmp_path):
    """The writer is a child process (its SQLite work never holds the server's GIL). Killed while it owes a batch,
    that batch fails with a message saying so, and the next one starts a new writer and is committed; found dead
    between batches, it is replaced before the next one, which loses nothing."""
    import os
    import signal

    import numpy as np
    path = tmp_path / "s.db"
    store = EventStore(path, fsync=False)
    reader = sqlite3.connect(path)
    pid = store.stats()["writer_pid"]
    assert pid and pid != os.getpid()

    async def commit(k, **extra):
        await store.commit([{"event": "choose", "session_id": f"s{k}", "at": 1.0, "step": 2, "item": k,
                             "candidates": [1, 2], **extra}])

    asyncio.run(commit(1, score=np.float32(0.5), ids=np.arange(3), tags={"a"}))   # numpy values and a set

    async def killed_while_owing():
        os.kill(pid, signal.SIGSTOP)          # it takes the batch off the pipe only once it runs again: never
        owed = asyncio.ensure_future(commit(2))
        await asyncio.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        await owed
    with pytest.raises(Exception, match="writer process ended.*before it confirmed this batch.*next one starts a new writer"):
        asyncio.run(killed_while_owing())
    asyncio.run(commit(3))
    second = store.stats()["writer_pid"]
    assert second not in (None, pid)
    os.kill(second, signal.SIGKILL)
    time.sleep(0.3)
    asyncio.run(commit(4))                    # found dead before this batch: replaced first, nothing lost
    store.close()
    stats = store.stats()
    assert stats["writer_restarts"] == 2 and stats["writer_pid"] is None
    items = [r[0] for r in reader.execute("SELECT item FROM choices ORDER BY item")]
    assert items == [1, 3, 4]
    body = json.loads(reader.execute("SELECT body FROM events WHERE session_id = 's1'").fetchone()[0])
    assert body["score"] == 0.5 and body["ids"] == [0, 1, 2] and body["tags"] == ["a"]


def test_records_a_reply_waits_for_are_committed_ahead_of_the_ones_nothing_waits_for(tmp_path):
    """A gaze stream's rows (written, not awaited) queued before a pick's commit must not delay it: in one group
    commit the awaited records go first, in a transaction of their own; the others follow, all kept."""
    path = tmp_path / "s.db"
    store = EventStore(path, fsync=True)
    reader = sqlite3.connect(path)

    async def go():
        with store._cond:                  # the writer takes nothing until all of it is queued: one group commit
            for k in range(200):
                store.write_many([{"wire": "in", "session_id": "g", "at": 1.0 + k, "kind": "gaze.batch",
                                   "body": {"samples": [[1.0 + k, "eye", 0, 1.5, 0, 0, 0, -1, 1.0]] * 20}}])
            done = store.commit([{"event": "choose", "session_id": "p", "at": 300.0, "step": 2, "item": 7,
                                  "candidates": [7, 1, 2]}])
        await done
    asyncio.run(go())
    store.close()
    seqs = dict(reader.execute("SELECT kind, MIN(seq) FROM events GROUP BY kind").fetchall())
    assert reader.execute("SELECT COUNT(*) FROM events WHERE kind = 'gaze.batch'").fetchone()[0] == 200
    assert seqs["choose"] < seqs["gaze.batch"]


@pytest.fixture()
def store_server(engine, tmp_path):
    configure_logging("warning")
    srv = RunningServer(engine, store_path=tmp_path / "s.db", events_path=tmp_path / "e.jsonl")
    yield srv, tmp_path / "s.db", tmp_path / "e.jsonl"
    srv.stop()


def test_the_server_stores_every_message_in_and_out_and_the_session_events(store_server):
    srv, db, jsonl = store_server

    async def go():
        async with await OmokageClient.connect(srv.url, token=None) as c:
            grid = await c.start("pca", seed=3)
            await c.fetch_textures([i.texture for i in grid.items[:2]])
            rtt, _ = await c.ping()
            grid = await c.choose(grid.items[4].id)
            await c.rate(grid.items[1].id, 5)
            grid = await c.skip()
            await c.decide(grid.items[0].id)
            try:
                await c.request("choose", id=999999)
            except Exception:
                pass
    asyncio.run(go())
    time.sleep(0.3)
    conn = sqlite3.connect(db)
    # in arrival order: within one group commit the store writes what a reply waited for first (a choose's records can
    # precede the ping answered just before it), and `at` keeps the arrival and send times (docs/studies.md)
    dirs = conn.execute("SELECT direction, kind FROM events ORDER BY at, seq").fetchall()
    ins = [k for d, k in dirs if d == "in"]
    outs = [k for d, k in dirs if d == "out"]
    assert ins == ["hello", "start", "texture.get", "ping", "choose", "rate", "skip", "decide", "choose"]
    assert outs == ["welcome", "candidates", "texture", "texture", "pong", "candidates", "rated", "candidates",
                    "decided", "error"]
    # nothing secret or bulky in the wire log: textures as hash and size
    body = json.loads(conn.execute("SELECT body FROM events WHERE kind = 'texture'").fetchone()[0])
    assert set(body) == {"hash", "format", "bytes"}
    ping = conn.execute("SELECT client_time, server_time FROM pings").fetchone()
    assert ping[0] > 1e9 and abs(ping[1] - ping[0]) < 5
    assert conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 27
    assert conn.execute("SELECT COUNT(*) FROM choices").fetchone()[0] == 1
    assert conn.execute("SELECT rating FROM ratings").fetchone()[0] == 5
    assert conn.execute("SELECT COUNT(*) FROM skips").fetchone()[0] == 1
    assert conn.execute("SELECT step FROM decisions").fetchone()[0] == 3
    session = conn.execute("SELECT client, ended_at IS NOT NULL, messages_in FROM sessions").fetchone()
    assert session[0].startswith("omokage-python") and session[1] == 1 and session[2] == 9
    # the log's records are the JSON lines, in the same order
    srv.stop()
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [r["event"] for r in log_records(db)] == [r["event"] for r in lines]


def test_events_export_writes_the_json_lines_fit_user_model_reads(store_server, tmp_path):
    srv, db, _ = store_server

    async def go():
        async with await OmokageClient.connect(srv.url) as c:
            for s in range(2):
                grid = await c.start("pca", seed=s)
                grid = await c.choose(grid.items[2].id)
                await c.decide(grid.items[3].id)
    asyncio.run(go())
    srv.stop()
    out = tmp_path / "export.jsonl"
    r = subprocess.run([sys.executable, "-m", "omokage", "events", "export", "--db", str(db), "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["event"] for r in records].count("decide") == 2
    from omokage.selection.user_model import read_choice_records
    from_jsonl, _ = read_choice_records([out])
    from_store, report = read_choice_records([db])
    assert from_store == from_jsonl and report.decided_sessions == 2
    with open(tmp_path / "wire.jsonl", "wb") as f:
        assert export_jsonl(db, f, wire=True) > len(records)


def test_each_fixation_the_server_finds_is_a_row_of_the_fixations_table(store_server):
    """Eye gaze looking at panel 4 then panel 0 of a grid, sent as rays before a pick: the grid's fixations land in
    `fixations` with the faces on those panels, their times inside the grid's time on screen and their panel
    centres on the 3 x 3 grid."""
    import numpy as np

    from omokage.gaze import Layout
    from omokage.gaze.samples import panel_directions
    srv, db, _ = store_server
    layout = Layout.grid()
    eye = np.array([0.0, 1.5, 0.0])
    dirs = panel_directions(layout, eye)

    async def go():
        async with await OmokageClient.connect(srv.url, token=None) as c:
            await c.layout(layout.to_wire()["panels"])
            grid = await c.start("pca", seed=3)
            t0 = time.time()
            rows = [[t0 + k / 90, "eye", *map(float, eye), *map(float, dirs[4 if k < 27 else 0]), 1.0]
                    for k in range(54)]                        # 0.3 s on panel 4, then 0.3 s on panel 0
            await asyncio.sleep(rows[-1][0] - time.time() + 0.05)
            await c.gaze(rows)
            await c.choose(grid.items[4].id)
            return grid, t0
    grid, t0 = asyncio.run(go())
    srv.stop()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT item, grid_x, grid_y, start_time, end_time, step FROM fixations "
                        "ORDER BY start_time").fetchall()
    assert [r[0] for r in rows] == [grid.items[4].id, grid.items[0].id]
    assert [(round(r[1], 3), round(r[2], 3)) for r in rows] == [(0.5, 0.5), (0.167, 0.167)]
    assert all(t0 - 0.01 <= r[3] < r[4] <= t0 + 0.7 and r[5] == 1 for r in rows)


def test_sketch_results_and_ideal_faces_get_rows_of_their_own(tiny_catalog, tmp_path):
    """Migration 2 and 3: every sketch.result sent is a sketch_updates row (revision, strokes, the faces listed), every
    ideal face an ideals row (the favourite, the faces listed)."""
    from omokage.engine import Engine
    from omokage.features.fitting import fit_models
    fit_models(tiny_catalog, tmp_path / "models", ["pca", "sketch"], n_components=12, progress=False)
    engine = Engine.open(tiny_catalog, tmp_path / "models")
    configure_logging("warning")
    srv = RunningServer(engine, store_path=tmp_path / "s.db")

    async def go():
        async with await OmokageClient.connect(srv.url) as c:
            rid = await c.sketch_send("sketch.begin")
            first = await c.sketch_result(rid)
            rid = await c.stroke([0.2, 0.3, 0.5, 0.35, 0.7, 0.3])
            drawn = await c.sketch_result(rid)
            grid = await c.start("pca", seed=2)
            grid = await c.choose(grid.ids[1])
            ideal = await c.ideal()
            return first, drawn, grid, ideal
    try:
        first, drawn, grid, ideal = asyncio.run(go())
    finally:
        srv.stop()
    conn = sqlite3.connect(tmp_path / "s.db")
    rows = conn.execute("SELECT revision, stroke_count, items, session_id FROM sketch_updates ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(first["revision"], 0), (drawn["revision"], 1)]
    assert json.loads(rows[0][2]) == [] and json.loads(rows[1][2]) == [i["id"] for i in drawn["items"]]
    [(near, items)] = conn.execute("SELECT near, items FROM ideals").fetchall()
    assert near == grid.ids[0] == ideal["near"] and json.loads(items) == [i["id"] for i in ideal["items"]]
    assert rows[0][3] == conn.execute("SELECT session_id FROM ideals").fetchone()[0]


def test_the_server_side_step_times_come_from_the_wire_log(engine, tmp_path):
    """`bench serve --durability-only` times each step on the server from the store's wire log: one time per start,
    choose and decide, none longer than the round trip the client measured for it."""
    from omokage.bench.serve import server_step_times
    configure_logging("warning")
    srv = RunningServer(engine, store_path=tmp_path / "s.db")

    async def go():
        trips = []
        async with await OmokageClient.connect(srv.url) as c:
            for call in (lambda: c.start("pca", seed=1), None, None, None):
                t = time.perf_counter()
                grid = await (call() if call else c.choose(grid.ids[2]))
                trips.append(time.perf_counter() - t)
            await c.request("ping", t=0.0)                 # not a step: not timed
            t = time.perf_counter()
            await c.decide(grid.ids[0])
            trips.append(time.perf_counter() - t)
        return trips
    try:
        trips = asyncio.run(go())
    finally:
        srv.stop()
    steps = server_step_times(tmp_path / "s.db")
    assert len(steps) == len(trips) == 5
    assert all(0 <= s <= t + 0.002 for s, t in zip(steps, trips)), (steps, trips)


def test_a_flood_over_the_message_rate_is_one_store_row_per_second_not_two_per_message(engine, tmp_path):
    """Messages refused over the rate (`overloaded`) are kept as `(overloaded)` rows, each counting a second of them,
    instead of each message and its refusal: a flood cannot grow the store faster than a client within its rate."""
    import msgpack

    from omokage.bench.attack import RawWebSocket
    from omokage.protocol.connection import Limits
    configure_logging("warning")
    srv = RunningServer(engine, store_path=tmp_path / "s.db", limits=Limits(max_messages_per_second=20, burst=20))

    async def flood():
        ws = await RawWebSocket.connect(srv.port)
        await ws.send(msgpack.packb({"type": "hello", "rid": 1, "protocol": 1, "client": "t"}))
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            await ws.send(msgpack.packb({"type": "ping", "rid": 2 + sent, "t": 0.0}))
            sent += 1
            await asyncio.sleep(0.002)
        codes = []
        while len(codes) < sent:
            reply = await ws.recv(timeout=10)
            if reply is None:
                break
            if reply.get("rid", 0) >= 2:
                codes.append(reply.get("code", reply["type"]))
        ws.abort()
        return sent, codes
    try:
        sent, codes = asyncio.run(flood())
    finally:
        srv.stop()
    refused = codes.count("overloaded")
    assert len(codes) == sent and refused > sent / 2, (sent, refused)      # most of the flood was over the rate
    conn = sqlite3.connect(tmp_path / "s.db")
    tallies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM events WHERE kind = '(overloaded)'")]
    assert sum(t["refused"] for t in tallies) == refused and 1 <= len(tallies) <= 4, tallies   # ~one per second
    kept_errors = conn.execute("SELECT COUNT(*) FROM events WHERE direction = 'out' AND kind = 'error'").fetchone()[0]
    assert kept_errors == 0
    assert conn.execute("SELECT COUNT(*) FROM events WHERE direction = 'in' AND kind = 'ping'").fetchone()[0] == \
        codes.count("pong")                                                   # the answered ones, as before


def test_fit_user_model_reads_the_same_gaze_from_the_store_as_from_the_json_lines(store_server):
    """Each grid's gaze (the `gaze` event) is evidence `fit user-model` fits the gaze term on: read from the store
    (`serve --db`) it must be there as it is in the JSON-lines log of the same server."""
    from omokage.selection.user_model import read_choice_records
    srv, db, jsonl = store_server
    layout, look = gaze_kit()

    async def go():
        async with await OmokageClient.connect(srv.url, token=None) as c:
            await c.layout(layout.to_wire()["panels"])
            grid = await c.start("pca", seed=5)
            for _ in range(2):
                await look(c, 2, 6)
                grid = await c.choose(grid.items[4].id)
            await c.decide(grid.items[8].id)
    asyncio.run(go())
    srv.stop()
    _, from_jsonl = read_choice_records([jsonl])
    _, from_store = read_choice_records([db])
    assert len(from_jsonl.gaze_records) == 2 and not from_jsonl.problems
    assert from_store.gaze_records == from_jsonl.gaze_records and not from_store.problems


def test_one_store_serves_one_server(tmp_path, monkeypatch):
    """Two servers on one store would each walk a participant through the trials they read at start: a trial ran
    twice and a decision one of them acknowledged was dropped (found by a crash-safety attack). The second refuses to
    start, saying why; once the first has stopped, a server starts there again."""
    import omokage.store.db as db_module
    from omokage.store.db import StoreInUse
    monkeypatch.setattr(db_module, "SERVE_LOCK_WAIT_S", 0.3)
    path = tmp_path / "s.db"
    first = EventStore(path)
    try:
        with pytest.raises(StoreInUse, match="one store serves one server"):
            EventStore(path)
    finally:
        first.close()
    EventStore(path).close()


def test_a_store_the_server_may_not_write_is_refused_at_start(tmp_path):
    """SQLite opens a file it may not write read-only, without a word: a server started on such a store said "ready"
    and `/healthz` "ok", then failed every hello (found by a crash-safety attack). Its writer now tries a write
    before it reports ready, so the server refuses to start, saying what to fix. Run as an unprivileged user (root
    may write anything)."""
    import os
    import shutil
    import tempfile
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file this process may not write")
    home = Path(tempfile.mkdtemp(prefix="omokage-ro-"))
    try:
        db = home / "s.db"
        EventStore(db).close()
        os.chmod(home, 0o755)
        for p in home.iterdir():
            os.chmod(p, 0o444)        # the file read-only, its folder writable; then both read-only
        code = ("import sys; from omokage.store import EventStore, StoreError\n"
                f"try:\n    EventStore({str(db)!r}).close()\nexcept StoreError as e:\n    print(e); sys.exit(7)\n")
        drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        # this Python, or (where it lives in a folder the unprivileged user cannot enter, e.g. pyenv under /root) the
        # system's of the same version, given this one's import path
        pythons = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
        for folder_mode in (0o777, 0o555):
            os.chmod(home, folder_mode)
            for python in pythons:
                r = subprocess.run([*drop, python, "-c", code], capture_output=True, text=True, timeout=60, env=env)
                if r.returncode in (0, 7):   # 0: the bug (it started); 7: refused; anything else: it never ran
                    break
            else:
                pytest.skip(f"an unprivileged user cannot run a Python here: {r.stderr.strip()[-200:]}")
            assert r.returncode == 7, (oct(folder_mode), r.returncode, r.stdout, r.stderr)
            said = r.stdout + r.stderr
            assert "cannot be written" in said and "writable" in said and "damaged" not in said, said
    finally:
        os.chmod(home, 0o755)
        shutil.rmtree(home, ignore_errors=True)


def test_a_full_store_is_reported_as_full(tmp_path):
    """SQLite rolls a transaction back itself on a full disk; the writer's own ROLLBACK then failed, and the operator's
    log said "cannot rollback - no transaction is active" instead of the disk being full (found by a crash-safety
    attack on a 3 MB tmpfs). A full store is made here with max_page_count."""
    from omokage.store.db import connect
    from omokage.store.writer import BatchWriter
    open_database(tmp_path / "s.db").close()
    conn = connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 3}")
    record = {"event": "choose", "session_id": "s", "at": 1.0, "step": 2, "item": 1, "candidates": list(range(9)),
              "note": "x" * 5000}
    assert BatchWriter(conn).write_batch([[record] * 40]) == ["OperationalError: database or disk is full"]
    conn.execute("PRAGMA max_page_count = 1000000")   # space again: the next batch commits
    assert BatchWriter(conn).write_batch([[record]]) is None


def test_an_empty_store_file_is_taken_for_a_new_store_with_a_warning(tmp_path, caplog):
    """SQLite takes a zero-byte file for a new database: a store truncated to nothing came back empty without a word
    (found by a crash-safety attack). It still opens (a new store may be an empty file), and the log says so."""
    import logging
    (tmp_path / "s.db").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="omokage"):
        open_database(tmp_path / "s.db").close()
    assert any("the event store file is empty" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omokage"):
        open_database(tmp_path / "s.db").close()      # a store now: nothing to say
    assert not caplog.records


def test_a_full_disk_at_open_is_not_called_a_damaged_store(tmp_path):
    """A store opened on a full disk used to be reported as damaged, with advice to recover it or move it aside (found
    by a newcomer whose disk filled): a user could abandon a sound store. The error SQLite gives for a full disk
    (SQLITE_FULL), raised here for real by a database capped at its page count, says the disk is full."""
    from omokage.store.db import open_error
    conn = sqlite3.connect(tmp_path / "capped.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(sqlite3.DatabaseError) as full:
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    conn.close()
    err = str(open_error(tmp_path / "s.db", full.value))
    assert "is full" in err and "free some space" in err and "is damaged" not in err and ".recover" not in err, err
    with pytest.raises(sqlite3.DatabaseError) as damaged:
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert "is damaged" in str(open_error(tmp_path / "s.db", damaged.value))


def test_a_store_created_on_a_full_filesystem_says_the_disk_is_full(tmp_path):
    """The same through open_database, on a real filesystem that is full (a 64 KiB tmpfs, where this test may mount
    one)."""
    import os
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root in a namespace that allows mounts)")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(StoreError) as err:
            open_database(mount / "s.db")
        assert "is full" in str(err.value) and ".recover" not in str(err.value), str(err.value)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
