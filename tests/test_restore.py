"""Protocol v1.7 resume across a server restart or crash: a restarted server rebuilds, from its event log, the
selections its clients were in the middle of (omokage.protocol.restore), with real servers, real logs and the Python
client."""

import asyncio
import json

import numpy as np
import pytest

from omokage.client import OmokageClient
from omokage.protocol.restore import RestoreIndex, restorable_from, resume_key
from tests.conftest import RunningServer, gaze_kit, serve_process


def run(coro):
    return asyncio.run(coro)


async def a_selection_in_progress(url, policy="thompson", image: bytes | None = None, end=None):
    """start (no seed: a drawn one), choose, rate, skip, choose, choose, back: every kind of logged input. Returns the
    client's token and every grid it was shown (the last is on screen); `end(client)` ends it (default: close)."""
    c = await OmokageClient.connect(url)
    grids = [await (c.start("pca", init="image", image=image, policy=policy) if image is not None
                    else c.start("pca", policy=policy))]
    grids.append(await c.choose(grids[-1].ids[4]))
    await c.rate(grids[-1].ids[2], 5)
    grids.append(await c.skip())
    grids.append(await c.choose(grids[-1].ids[6]))
    grids.append(await c.choose(grids[-1].ids[1]))
    grids.append(await c.back())
    assert grids[-1].ids == grids[-3].ids and grids[-1].step == grids[-3].step
    await (end(c) if end is not None else c.close())
    return c.resume_token, grids


async def goes_on(url, token, grids):
    """The same grid comes back on the new server; the selection goes on from it (its belief and seen faces as they
    were: a back returns the grid before, exactly), and once decided, the token reaches nothing."""
    async with await OmokageClient.connect(url, resume=token) as again:
        assert again.resumed, again.welcome
        shown = again.resumed_grid
        assert shown.ids == grids[-1].ids and shown.step == grids[-1].step
        before = await again.back()
        assert before.ids == grids[-4].ids and before.step == grids[-4].step
        nxt = await again.choose(before.ids[3])
        assert nxt.ids[0] == before.ids[3] and nxt.step == before.step + 1
        await again.decide(nxt.ids[0])
    async with await OmokageClient.connect(url, resume=token) as late:
        assert late.welcome["resumed"] is False      # spent


@pytest.mark.parametrize("sink", ["events", "store"])
def test_a_selection_goes_on_after_the_server_restarts(engine, tmp_path, sink):
    where = {"events_path": tmp_path / "e.jsonl"} if sink == "events" else {"store_path": tmp_path / "s.db"}
    first = RunningServer(engine, **where)
    try:
        token, grids = run(a_selection_in_progress(first.url))
    finally:
        first.stop()
    second = RunningServer(engine, **where)
    try:
        run(goes_on(second.url, token, grids))
    finally:
        second.stop()


@pytest.mark.parametrize("sink", ["events", "store"])
def test_a_selection_goes_on_after_the_server_is_killed(tiny_catalog, tiny_models, tmp_path, sink):
    """kill -9 mid-selection, the client's link dying with it: no shutdown code ran, no disconnect was logged."""
    where = ["--events", str(tmp_path / "e.jsonl")] if sink == "events" else ["--db", str(tmp_path / "s.db")]
    proc, url = serve_process(tiny_catalog, tiny_models, *where)
    try:
        async def killed(c):
            proc.kill()
            proc.wait(10)
            c.ws.transport.abort()
        token, grids = run(a_selection_in_progress(url, end=killed))
    finally:
        proc.kill()
        proc.wait(10)
    proc, url = serve_process(tiny_catalog, tiny_models, *where)
    try:
        run(goes_on(url, token, grids))
    finally:
        proc.kill()
        proc.wait(10)


def test_an_image_start_is_replayed_from_its_logged_query(engine, tmp_path):
    from omokage.catalog.store import encode_texture
    img = encode_texture(np.asarray(engine.catalog.pixels[17]), "png").data
    first = RunningServer(engine, events_path=tmp_path / "e.jsonl")
    try:
        token, grids = run(a_selection_in_progress(first.url, image=img))
    finally:
        first.stop()
    starts = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines() if '"start"' in x]
    assert len(starts[0]["query"]) == engine.space("pca").dim
    second = RunningServer(engine, events_path=tmp_path / "e.jsonl")
    try:
        async def main():
            async with await OmokageClient.connect(second.url, resume=token) as again:
                assert again.resumed and again.resumed_grid.ids == grids[-1].ids
        run(main())
    finally:
        second.stop()


def _selection_of(srv, session_id):
    """The SelectionSession a RunningServer's connection `session_id` holds (read between messages)."""
    return next(c for c in list(srv.server._connections.values()) if c.session_id == session_id).session


def _as_shown(grid):
    return [(i.id, i.distance, i.probability) for i in grid.items]


@pytest.mark.parametrize("sink", ["events", "store"])
def test_a_raw_pixel_image_start_goes_on_after_a_restart_with_the_same_belief(engine, tmp_path, sink):
    """An image start in the `raw` space has a query of 64 x 64 x 3 = 12,288 numbers, over what a log line carries
    (512): it was not logged, and the restarted server could not rebuild the selection (resumed false). The query now
    goes to a content-addressed file beside the log, written durably before the start is acknowledged: the restarted
    server's belief is the first one's, number for number, its grids (faces, distances, probabilities) are the ones
    shown, and its next grid is the one an uninterrupted twin shows. The start's log line stays small."""
    from omokage.catalog.store import encode_texture
    img = encode_texture(np.asarray(engine.catalog.pixels[17]), "png").data
    where = {"events_path": tmp_path / "e.jsonl"} if sink == "events" else {"store_path": tmp_path / "s.db"}

    async def steps(url):
        c = await OmokageClient.connect(url)
        grids = [await c.start("raw", init="image", image=img, seed=5, policy="thompson")]
        grids.append(await c.choose(grids[-1].ids[3]))
        await c.rate(grids[-1].ids[2], 4)
        grids.append(await c.skip())
        return c, grids

    twin = RunningServer(engine)      # the same selection, never restarted
    try:
        async def uninterrupted():
            c, grids = await steps(twin.url)
            nxt = await c.choose(grids[-1].ids[6])
            await c.close()
            return nxt
        expected = run(uninterrupted())
    finally:
        twin.stop()
    first = RunningServer(engine, **where)
    try:
        async def before():
            c, grids = await steps(first.url)
            session = _selection_of(first, c.welcome["session_id"])
            await c.close()
            return c.resume_token, grids, session.policy.belief.probabilities().copy()
        token, grids, belief = run(before())
    finally:
        first.stop()
    if sink == "events":
        start = next(json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines() if '"start"' in x)
        assert start["init"] == "image" and "query" not in start
        assert len(json.dumps(start)) < 2000, "the query went into the log line"
    second = RunningServer(engine, **where)
    try:
        async def after():
            async with await OmokageClient.connect(second.url, resume=token) as again:
                assert again.resumed, again.welcome
                assert _as_shown(again.resumed_grid) == _as_shown(grids[-1]) and again.resumed_grid.step == 3
                resumed = _selection_of(second, again.welcome["session_id"]).policy.belief.probabilities()
                assert np.array_equal(resumed, belief)
                nxt = await again.choose(grids[-1].ids[6])
                assert _as_shown(nxt) == _as_shown(expected)
                back = await again.back()
                first_grid = await again.back()
                assert _as_shown(back) == _as_shown(grids[-1])
                assert _as_shown(first_grid) == _as_shown(grids[1])
        run(after())
    finally:
        second.stop()


def test_a_raw_pixel_image_start_goes_on_after_the_server_is_killed(tiny_catalog, tiny_models, tmp_path):
    """kill -9 right after the raw-pixel start's reply: its query's blob was on disk before the reply went."""
    from omokage.catalog.store import Catalog, encode_texture
    img = encode_texture(np.asarray(Catalog(tiny_catalog).pixels[40]), "png").data
    log = tmp_path / "e.jsonl"
    proc, url = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    try:
        async def killed():
            c = await OmokageClient.connect(url)
            grid = await c.start("raw", init="image", image=img)
            proc.kill()
            proc.wait(10)
            c.ws.transport.abort()
            return c.resume_token, grid
        token, grid = run(killed())
    finally:
        proc.kill()
        proc.wait(10)
    proc, url = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    try:
        async def again():
            async with await OmokageClient.connect(url, resume=token) as c:
                assert c.resumed, c.welcome
                assert _as_shown(c.resumed_grid) == _as_shown(grid)
        run(again())
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_a_raw_pixel_start_whose_blob_is_gone_is_refused_saying_so_and_stray_blobs_are_pruned(engine, tmp_path,
                                                                                              damage):
    """The blob a start names is missing or does not match its hash: resumed false, and `restore_refused` says why.
    A server starting on the log deletes the blobs no open selection names (a crash's leftovers) and keeps the rest."""
    from omokage.catalog.store import encode_texture
    img = encode_texture(np.asarray(engine.catalog.pixels[3]), "png").data
    log, blobs = tmp_path / "e.jsonl", tmp_path / "e.jsonl.blobs"
    first = RunningServer(engine, events_path=log)
    try:
        async def started():
            async with await OmokageClient.connect(first.url) as c:
                await c.start("raw", init="image", image=img)
                return c.resume_token
        token = run(started())
    finally:
        first.stop()
    (key,) = [json.loads(x)["query_blob"] for x in log.read_text().splitlines() if '"start"' in x]
    assert sorted(p.name for p in blobs.iterdir()) == [key] and (blobs / key).stat().st_mode & 0o077 == 0
    stray = [blobs / ("ab" * 32), blobs / f"{'cd' * 32}.123.tmp"]
    for p in stray:
        p.write_bytes(b"left by a crash")
    second = RunningServer(engine, events_path=log)     # prunes at start: the named blob stays
    second.stop()
    assert sorted(p.name for p in blobs.iterdir()) == [key]
    if damage == "missing":
        (blobs / key).unlink()
    else:
        data = bytearray((blobs / key).read_bytes())
        data[100] ^= 1
        (blobs / key).write_bytes(bytes(data))
    third = RunningServer(engine, events_path=log)
    try:
        async def again():
            async with await OmokageClient.connect(third.url, resume=token) as c:
                assert c.welcome["resumed"] is False
        run(again())
    finally:
        third.stop()
    [refused] = [json.loads(x) for x in log.read_text().splitlines() if '"restore_refused"' in x]
    assert refused["reason"] == f"its image's query (blob {key[:12]}) is missing or damaged"


def test_a_raw_pixel_start_whose_blob_cannot_be_written_is_not_acknowledged(engine, tmp_path):
    """The blob folder cannot be made (a file holds its name; a full disk would do the same): the start is not
    acknowledged (`internal`, "it was not kept") and its record is not logged, as for a log that cannot be written."""
    from omokage.catalog.store import encode_texture
    from omokage.client import OmokageError
    img = encode_texture(np.asarray(engine.catalog.pixels[3]), "png").data
    log = tmp_path / "e.jsonl"
    (tmp_path / "e.jsonl.blobs").write_bytes(b"not a folder")
    srv = RunningServer(engine, events_path=log)
    try:
        async def main():
            c = await OmokageClient.connect(srv.url)
            with pytest.raises(OmokageError) as err:
                await c.start("raw", init="image", image=img)
            assert err.value.code == "internal" and "not kept" in str(err.value)
            await c.close()
        run(main())
    finally:
        srv.stop()
    assert not [x for x in log.read_text().splitlines() if '"event": "start"' in x]


@pytest.mark.parametrize("change", ["grid", "catalog"])
def test_what_cannot_be_rebuilt_is_not_resumed(engine, tmp_path, change):
    """A selection whose replay ends on another grid than the log's last one (a refitted user model, a changed
    policy), or that ran on another catalog, is not taken up: resumed false, and the client starts again."""
    log = tmp_path / "e.jsonl"
    first = RunningServer(engine, events_path=log)
    try:
        token, grids = run(a_selection_in_progress(first.url))
    finally:
        first.stop()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    for rec in records:
        if change == "grid" and rec.get("event") in ("choose", "back") and rec.get("candidates"):
            rec["candidates"] = list(reversed(rec["candidates"]))      # the log says another grid was shown
        if change == "catalog" and rec.get("event") == "start":
            rec["catalog"] = "0123456789abcdef"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    second = RunningServer(engine, events_path=log)
    try:
        async def main():
            async with await OmokageClient.connect(second.url, resume=token) as again:
                assert again.welcome["resumed"] is False and again.resumed_grid is None
                assert len((await again.start("pca")).ids) == 9     # a usable fresh session
        run(main())
    finally:
        second.stop()
    refused = [json.loads(x) for x in log.read_text().splitlines() if '"restore_refused"' in x]
    assert refused and refused[-1]["reason"] == {"grid": "another grid", "catalog": "catalog or model"}[change]


def test_the_index_follows_resumes_backs_decisions_and_time():
    """Pure: a selection moves with a resume to its new connection's key (the key presented for it still reaches it
    until its client is heard from there); a back undoes the last pick in its inputs; a decided one, a sketch start
    (its drawing is not logged) and one whose connection ended longer than the time to live ago are gone; one whose
    connection was open when the server stopped counts from the restart; a study trial is not kept."""
    def start(sid, at, **kw):
        return {"event": "start", "session_id": sid, "at": at, "algorithm": "pca", "policy": "thompson",
                "rng_seed": 7, "candidates": list(range(9)), "step": 1, **kw}
    recs = [{"event": "hello", "session_id": "a", "resume_key": "ka"}, start("a", 1.0),
            {"event": "choose", "session_id": "a", "at": 2.0, "item": 3, "candidates": [3, *range(10, 18)], "step": 2},
            {"event": "rate", "session_id": "a", "at": 2.1, "item": 11, "rating": 5},
            {"event": "gaze", "session_id": "a", "at": 2.2, "evidence": True, "evidence_faces": [10, 11],
             "evidence_units": [1.0, 2.0]},
            {"event": "choose", "session_id": "a", "at": 2.3, "item": 12, "candidates": [12, *range(20, 28)],
             "step": 3},
            {"event": "back", "session_id": "a", "at": 2.4, "candidates": [3, *range(10, 18)], "step": 2},
            {"event": "hello", "session_id": "b", "resume_key": "kb"},
            {"event": "resume", "session_id": "b", "at": 3.0, "from_session": "a", "step": 2,
             "candidates": [3, *range(10, 18)]},
            {"event": "hello", "session_id": "c", "resume_key": "kc"}, start("c", 3.0),
            {"event": "decide", "session_id": "c", "at": 4.0, "item": 1},
            {"event": "hello", "session_id": "d", "resume_key": "kd"}, start("d", 4.0, init="sketch"),
            {"event": "hello", "session_id": "e", "resume_key": "ke"}, start("e", 0.5),
            {"event": "disconnect", "session_id": "e", "at": 0.6},
            {"event": "hello", "session_id": "f", "resume_key": "kf"}, start("f", 0.2),    # open when it stopped
            {"event": "start", "session_id": "g", "trial": 4, "rng_seed": 1, "candidates": [1], "resume_key": "kg"},
            {"event": "rate", "session_id": "f", "at": 0.3, "item": [1], "rating": 2}]   # damaged: skipped
    index = RestoreIndex()
    for rec in recs:
        index.feed(rec)
    kept = index.restorable(now=10.0, ttl_s=9.0)
    assert set(kept) == {"kb", "ka", "kf"} and kept["ka"] is kept["kb"] and index.damaged == 1
    b = kept["kb"]
    # the back took the second pick out, and the gaze evidence of the grid that returned; the rating stays
    assert b.session_id == "b" and b.inputs == [("choose", 3), ("rate", 11, 5)] and b.step == 2 and b.grid[0] == 3
    assert kept["kf"].last_at == 10.0                # its link was lost at the restart, as far as anyone can tell
    index.feed({"event": "choose", "session_id": "b", "at": 5.0, "item": 10, "candidates": [10, *range(30, 38)],
                "step": 3})
    assert set(index.restorable(now=10.0, ttl_s=9.0)) == {"kb", "kf"}     # heard from on b: the old key is spent
    ended = [*recs, {"event": "disconnect", "session_id": "b", "at": 5.0},
             {"event": "disconnect", "session_id": "f", "at": 5.0}]     # links that dropped: time runs from then
    assert set(restorable_from(ended, now=13.0, ttl_s=9.0)) == {"ka", "kb", "kf"}
    assert restorable_from(ended, now=100.0, ttl_s=9.0) == {}
    assert resume_key("x" * 32) != "x" * 32 and len(resume_key("t")) == 32


def test_gaze_evidence_is_replayed(engine, tmp_path):
    """A thompson+gaze selection's grids depend on the gaze its belief took in: the log keeps each grid's evidence,
    the index replays it before each pick, and the replay after a restart ends on the same grid."""
    layout, look = gaze_kit(samples=80, switch=40)
    log = tmp_path / "e.jsonl"

    async def gazing():
        async with await OmokageClient.connect(first.url) as c:
            await c.layout(layout.to_wire()["panels"])
            grid = await c.start("pca", policy="thompson+gaze")
            for a, b, pick in ((2, 7, 4), (0, 8, 5), (6, 3, 1)):
                await look(c, a, b)
                grid = await c.choose(grid.ids[pick])
            return c.resume_token, grid
    first = RunningServer(engine, events_path=log)
    try:
        token, grid = run(gazing())
    finally:
        first.stop()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert sum(1 for r in records if r["event"] == "gaze" and r.get("evidence")) == 3
    second = RunningServer(engine, events_path=log)
    try:
        async def main():
            async with await OmokageClient.connect(second.url, resume=token) as again:
                assert again.resumed and again.resumed_grid.ids == grid.ids
        run(main())
    finally:
        second.stop()
    kept = restorable_from(records, now=records[-1]["at"], ttl_s=600)
    (sel,) = kept.values()
    assert [i[0] for i in sel.inputs] == ["gaze", "choose"] * 3


def test_a_selection_lost_with_the_server_counts_its_time_from_the_first_restart_only():
    """A server that keeps restarting must not keep an abandoned selection for ever (found by a kill -9 attack): the
    run that loads it logs the lost link (`RestoreIndex.lost`), so the next run counts from then."""
    recs = [{"event": "hello", "session_id": "a", "resume_key": "ka"},
            {"event": "start", "session_id": "a", "at": 1.0, "algorithm": "pca", "policy": "thompson", "rng_seed": 3,
             "candidates": list(range(9)), "step": 1}]
    index = RestoreIndex()
    for rec in recs:
        index.feed(rec)
    assert set(index.restorable(now=100.0, ttl_s=10.0)) == {"ka"}      # connected when it stopped: from the restart
    lost = index.lost(100.0)
    assert [(r["event"], r["session_id"], r["at"]) for r in lost] == [("disconnect", "a", 100.0)]
    assert set(restorable_from([*recs, *lost], now=105.0, ttl_s=10.0)) == {"ka"}
    assert restorable_from([*recs, *lost], now=111.0, ttl_s=10.0) == {}   # the second restart: time ran out


def test_a_token_handed_over_twice_still_reaches_its_selection_after_a_restart():
    """A client whose welcomes were lost twice presents its first token a third time (the hand-over keeps it valid
    until the client is heard from): after a restart too (found by a kill -9 attack)."""
    grid = list(range(9))
    recs = [{"event": "hello", "session_id": "a", "resume_key": "ka"},
            {"event": "start", "session_id": "a", "at": 1.0, "algorithm": "pca", "policy": "thompson", "rng_seed": 3,
             "candidates": grid, "step": 1},
            {"event": "hello", "session_id": "b", "resume_key": "kb"},
            {"event": "resume", "session_id": "b", "at": 2.0, "from_session": "a", "candidates": grid, "step": 1},
            {"event": "hello", "session_id": "c", "resume_key": "kc"},
            {"event": "resume", "session_id": "c", "at": 3.0, "from_session": "b", "candidates": grid, "step": 1}]
    kept = restorable_from(recs, now=4.0, ttl_s=10.0)
    assert set(kept) == {"ka", "kb", "kc"} and kept["ka"] is kept["kc"]


def test_a_torn_last_line_of_the_log_does_not_swallow_the_next_record(tmp_path):
    """A crash mid-write leaves the log's last line without its end; appending straight after it joined the next
    run's first record to the torn one, and both were lost to the next restart (found by a kill -9 attack)."""
    from omokage.service.server import EventFile
    log = tmp_path / "e.jsonl"
    log.write_bytes(b'{"event": "choose", "session_id": "a", "at": 1.0, "item": 2}\n{"event": "choo')
    events = EventFile(log, fsync=False)
    events.write({"event": "hello", "session_id": "b", "at": 2.0})
    events.close()
    lines = log.read_bytes().splitlines()
    assert json.loads(lines[-1]) == {"event": "hello", "session_id": "b", "at": 2.0}
    assert lines[-2] == b'{"event": "choo'


# --- gaze calibrations carry over a restart ---------------------------------------------------------------------------

BIAS_DEG = 12.0     # this tracker reports every gaze 12 degrees to the right of where the eyes look


def _ray(yaw_deg, pitch_deg):
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return [float(np.cos(p) * np.sin(y)), float(np.sin(p)), float(-np.cos(p) * np.cos(y))]


async def _calibrate(c, source="eye", targets=None):
    """The biased tracker looking at each target of the nine-point pattern (samples from the last few seconds, at
    100 Hz), then `calibrate.end`: the `calibrated` reply. `targets`: show only these (too few fail)."""
    import time
    cal = await c.calibrate_begin("nine-point", source=source)
    t0, shown = time.time() - 4.0, []
    for k, (yaw, pitch) in enumerate(cal["targets"]):
        if targets is not None and k not in targets:
            continue
        start = t0 + 0.4 * k
        await c.gaze([[start + j / 100, source, 0.0, 1.5, 0.0, *_ray(yaw + BIAS_DEG, pitch), 1.0] for j in range(25)])
        shown.append([k, start, start + 0.25])
    return await c.calibrate_end(shown)


async def _look_at_centre(c, source="eye", seconds=0.8):
    """The biased tracker while the eyes (or the head) look at the centre face, panel 4, for `seconds` from now:
    uncorrected, its rays land on panel 5."""
    import time
    t0 = time.time()
    await asyncio.sleep(seconds + 0.05)
    rows = [[t0 + k / 100, source, 0.0, 1.5, 0.0, *_ray(BIAS_DEG, 0.0), 1.0] for k in range(int(seconds * 100))]
    for k in range(0, len(rows), 50):
        await c.gaze(rows[k:k + 50])


def _grid_gaze(log, session_id) -> list[dict]:
    """The session's logged grid gaze, oldest first."""
    return [r for r in map(json.loads, log.read_text().splitlines())
            if r.get("event") == "gaze" and r.get("session_id") == session_id]


def _looked_at(gaze: dict) -> int:
    return int(np.argmax(gaze["dwell_s"]))


def test_a_gaze_calibration_carries_over_a_kill_and_a_resume_before_it(tiny_catalog, tiny_models, tmp_path):
    """A tracker biased 12 degrees right is calibrated on a selection's first connection; the selection is resumed on
    a second one (which cancels a calibration and fails another: neither replaces the correction), and the server is
    killed (kill -9) under it. The restarted server's resumed connection says `gaze.profile: calibration`, and gaze
    at the centre face lands on the centre face; on a fresh connection (the control) the same gaze lands on its
    right-hand neighbour."""
    from omokage.client import OmokageError
    from omokage.gaze import Layout
    log = tmp_path / "e.jsonl"
    panels = Layout.grid().to_wire()["panels"]
    proc, url = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    try:
        async def first_run():
            a = await OmokageClient.connect(url)
            assert a.gaze_profile == "none"
            done = await _calibrate(a)
            assert done["accuracy_deg"] < 1.0, done
            await a.layout(panels)
            grid = await a.start("pca", policy="thompson")
            await a.choose(grid.ids[2])
            await a.close()
            b = await OmokageClient.connect(url, resume=a.resume_token)
            assert b.resumed and b.gaze_profile == "calibration"
            await b.calibrate_begin("nine-point")
            await b.calibrate_cancel()
            with pytest.raises(OmokageError) as failed:
                await _calibrate(b, targets=[0, 4])          # two targets: it does not fit
            assert failed.value.code == "calibration_failed"
            grid = await b.choose(b.resumed_grid.ids[5])
            proc.kill()
            proc.wait(10)
            b.ws.transport.abort()
            return b.resume_token, grid
        token, grid = run(first_run())
    finally:
        proc.kill()
        proc.wait(10)
    proc, url = serve_process(tiny_catalog, tiny_models, "--events", str(log))
    try:
        async def look(**hello):
            c = await OmokageClient.connect(url, **hello)
            await c.layout(panels)
            shown = c.resumed_grid or await c.start("pca", policy="thompson")
            await _look_at_centre(c)
            await c.choose(shown.ids[0])
            await c.close()
            return c
        control = run(look())
        resumed = run(look(resume=token))
    finally:
        proc.kill()
        proc.wait(10)
    assert resumed.resumed and resumed.resumed_grid.ids == grid.ids
    assert (control.gaze_profile, resumed.gaze_profile) == ("none", "calibration")
    [seen] = _grid_gaze(log, control.welcome["session_id"])
    assert _looked_at(seen) == 5, f"the control's gaze is not where the bias puts it: {seen}"
    [seen] = _grid_gaze(log, resumed.welcome["session_id"])
    assert _looked_at(seen) == 4 and seen["dwell_s"][4] > 0.4, \
        f"the calibration did not carry over the restart: dwell by panel {seen['dwell_s']}"


def test_the_index_keeps_each_sources_latest_successful_calibration_along_the_resumes():
    """Pure: a connection's calibrations (before its start too) go with its selection to the connection it is resumed
    on, under those made there; a later calibration of a source replaces an earlier one, a failed or a cancelled one
    replaces nothing; another connection's do not leak in."""
    def cal(sid, source, tag, **kw):
        return {"event": "calibration", "session_id": sid, "at": 1.5, "pattern": "nine-point", "source": source,
                "samples": 200, **kw, **({} if kw else {"profile": {"A": [[1, 0], [0, 1]], "b": [tag, 0],
                                                                     "source": source}})}
    grid = list(range(9))
    recs = [{"event": "hello", "session_id": "a", "resume_key": "ka"},
            cal("a", "eye", 1.0),
            {"event": "start", "session_id": "a", "at": 1.0, "algorithm": "pca", "policy": "thompson", "rng_seed": 3,
             "candidates": grid, "step": 1},
            cal("a", "head", 2.0), cal("a", "eye", 3.0),
            cal("a", "eye", 0, error="only 1 target(s) with at least 10 samples; need 4"),
            cal("a", "head", 0, cancelled=True),
            {"event": "hello", "session_id": "x", "resume_key": "kx"}, cal("x", "eye", 9.0),
            {"event": "disconnect", "session_id": "a", "at": 2.0},
            {"event": "hello", "session_id": "b", "resume_key": "kb"},
            {"event": "resume", "session_id": "b", "at": 3.0, "from_session": "a", "candidates": grid, "step": 1}]
    kept = restorable_from(recs, now=4.0, ttl_s=10.0)
    assert {s: p["b"][0] for s, p in kept["kb"].calibrations.items()} == {"eye": 3.0, "head": 2.0}
    kept = restorable_from([*recs, cal("b", "eye", 4.0)], now=4.0, ttl_s=10.0)
    assert {s: p["b"][0] for s, p in kept["kb"].calibrations.items()} == {"eye": 4.0, "head": 2.0}


@pytest.fixture(scope="module")
def calibrated_log(engine, tmp_path_factory):
    """A selection whose connection calibrated the eye and the head (both biased 12 degrees right), left by a
    server that stopped: (its log, its token, the grid on screen)."""
    from omokage.gaze import Layout
    from omokage.gaze.calibration import load_patterns
    log = tmp_path_factory.mktemp("calibrated") / "e.jsonl"
    srv = RunningServer(engine, events_path=log, calibration=load_patterns())
    try:
        async def calibrating():
            async with await OmokageClient.connect(srv.url) as c:
                for source in ("eye", "head"):
                    assert (await _calibrate(c, source))["accuracy_deg"] < 1.0
                await c.layout(Layout.grid().to_wire()["panels"])
                grid = await c.start("pca", policy="thompson")
                return c.resume_token, await c.choose(grid.ids[1])
        token, grid = run(calibrating())
    finally:
        srv.stop()
    return log, token, grid


@pytest.mark.parametrize("damage", ["nan", "shape", "not a map", "overflow", "booleans"])
def test_a_damaged_calibration_in_the_log_is_left_out_and_the_selection_still_resumes(engine, calibrated_log,
                                                                                     tmp_path, damage):
    """The eye's logged correction is damaged: the restarted server resumes the selection with the head's correction
    only (the welcome says `calibration`, head gaze at the centre face lands on it), the eye's gaze goes uncorrected
    (onto the right-hand neighbour), and the `resume` record says which was left out."""
    from omokage.gaze import Layout
    from omokage.gaze.calibration import load_patterns
    source_log, token, grid = calibrated_log
    log = tmp_path / "e.jsonl"
    records = [json.loads(x) for x in source_log.read_text().splitlines()]
    for rec in records:
        if rec.get("event") == "calibration" and rec["source"] == "eye":
            rec["profile"] = {"nan": {**rec["profile"], "A": [[float("nan"), 0.0], [0.0, 1.0]]},
                              "shape": {**rec["profile"], "A": [[1.0, 0.0, 0.0], [0.0, 1.0]]},
                              "not a map": [[1.0, 0.0], [0.0, 1.0]],
                              "overflow": {**rec["profile"], "A": [[1e308, 0.0], [0.0, 1e308]]},
                              "booleans": {**rec["profile"], "A": [[True, False], [False, True]]}}[damage]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    srv = RunningServer(engine, events_path=log, calibration=load_patterns())
    try:
        async def resume():
            async with await OmokageClient.connect(srv.url, resume=token) as c:
                assert c.resumed and c.resumed_grid.ids == grid.ids, c.welcome
                await c.layout(Layout.grid().to_wire()["panels"])
                await _look_at_centre(c, "head")
                shown = await c.choose(c.resumed_grid.ids[0])
                await _look_at_centre(c, "eye")
                await c.choose(shown.ids[0])
                return c
        c = run(resume())
    finally:
        srv.stop()
    assert c.gaze_profile == "calibration"
    head, eye = _grid_gaze(log, c.welcome["session_id"])
    assert (head["source"], _looked_at(head)) == ("head", 4), f"the head's correction was not applied: {head}"
    assert (eye["source"], _looked_at(eye)) == ("eye", 5), f"the damaged eye correction was applied: {eye}"
    [resumed] = [r for r in map(json.loads, log.read_text().splitlines())
                 if r.get("event") == "resume" and r["session_id"] == c.welcome["session_id"]]
    assert resumed["calibrations"] == ["head"] and resumed["calibrations_unreadable"] == ["eye"]
