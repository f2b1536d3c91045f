"""Protocol v1.7: a selection outlives its connection, so a client that lost its link goes on from the grid it showed.

The keeper alone (pure), the connection state machine (pure, driven with frames), and the real server over real
sockets with the Python client: a dropped link, a half-open one the server has not noticed, an expired token, a
restarted server, the event log."""

import asyncio
import json
import urllib.request

import pytest

from omokage.client import OmokageClient, OmokageError
from omokage.protocol.connection import ServerConnection, Supersede
from omokage.protocol.messages import PROTOCOL_MINOR
from omokage.protocol.resume import MAX_DETACHED, SessionKeeper, max_detached_for
from omokage.service.server import EngineBackend
from tests.conftest import RunningServer, frame, sent


def run(coro):
    return asyncio.run(coro)


# -- the keeper ----------------------------------------------------------------------------------------------------
def test_a_token_is_claimed_once_and_expires_after_its_ttl():
    keeper = SessionKeeper(ttl_s=10)
    a, b = object(), object()
    ta, tb = keeper.issue(a), keeper.issue(b)
    assert ta != tb and len(ta) == 32
    keeper.detach(ta, now=100.0)
    assert keeper.claim(ta, now=105.0) is a
    assert keeper.claim(ta, now=105.0) is None            # spent
    keeper.detach(tb, now=100.0)
    assert keeper.claim(tb, now=110.5) is None            # waited past its ttl
    assert keeper.stats() == {"live": 0, "detached": 0, "resumed": 1, "expired": 1, "from_log": 0, "restored": 0}
    assert keeper.claim("0" * 32, now=0.0) is None        # never issued


def test_a_live_owner_can_be_claimed_and_detached_ones_are_bounded():
    keeper = SessionKeeper(ttl_s=100, max_detached=2)
    owners = [object() for _ in range(4)]
    tokens = [keeper.issue(o) for o in owners]
    assert keeper.claim(tokens[3], now=0.0) is owners[3]     # still connected: a half-open link
    for i, t in enumerate(tokens[:3]):
        keeper.detach(t, now=float(i))
    assert keeper.detached == 2
    assert keeper.claim(tokens[0], now=3.0) is None          # the oldest was dropped to keep memory bounded
    assert keeper.claim(tokens[2], now=3.0) is owners[2]
    keeper.detach(tokens[2], now=4.0)                         # already claimed: nothing to detach
    assert keeper.detached == 1


def test_fewer_lost_selections_are_kept_for_a_huge_catalog():
    assert max_detached_for(1_500) == MAX_DETACHED
    assert 100 <= max_detached_for(100_000) < MAX_DETACHED and max_detached_for(10**8) == 16


# -- the connection state machine --------------------------------------------------------------------------------
def greet(conn, now=0.0, **hello):
    actions = conn.receive(frame("hello", 1, protocol=1, client="test", protocol_minor=PROTOCOL_MINOR, **hello), now)
    return actions, sent(actions)


def test_the_state_machine_moves_a_selection_to_the_connection_that_resumes_it(engine):
    backend, keeper = EngineBackend(engine), SessionKeeper()
    first = ServerConnection(backend, "first", keeper=keeper)
    _, (welcome,) = greet(first)
    token = welcome["resume"]["token"]
    assert welcome["resume"]["ttl_s"] == keeper.ttl_s and "resumed" not in welcome
    (grid,) = sent(first.receive(frame("start", 2, algorithm="pca", init="random", seed=3), 1.0))
    (grid,) = sent(first.receive(frame("choose", 3, id=grid["items"][4]["id"]), 2.0))
    belief = first.session.policy.belief.log_posteriors.copy()

    # the old link is half-open: the server has not seen it die, the client is already back
    second = ServerConnection(backend, "second", keeper=keeper)
    actions, (welcome2, again) = greet(second, now=3.0, resume=token)
    assert welcome2["resumed"] is True and welcome2["resume"]["token"] != token
    assert [a.connection for a in actions if isinstance(a, Supersede)] == [first] and first.closed
    assert "rid" not in again and again["type"] == "candidates"
    assert [i["id"] for i in again["items"]] == [i["id"] for i in grid["items"]] and again["step"] == grid["step"]
    assert (second.session.policy.belief.log_posteriors == belief).all()    # the belief itself, not a fresh one
    assert first.session is None and first.receive(frame("choose", 4, id=grid["items"][0]["id"]), 4.0) == []
    log = [a.record for a in actions if hasattr(a, "record")]
    assert {k: log[-1][k] for k in ("event", "from_session", "step")} == {"event": "resume", "from_session": "first",
                                                                          "step": 2}
    assert log[0]["resumed_from"] == "first"
    (after,) = sent(second.receive(frame("choose", 5, id=grid["items"][2]["id"]), 5.0))
    assert after["step"] == 3 and after["items"][0]["id"] == grid["items"][2]["id"]

    # the old token is spent: a third client with it starts again
    third = ServerConnection(backend, "third", keeper=keeper)
    actions, (welcome3,) = greet(third, now=6.0, resume=token)
    assert welcome3["resumed"] is False and third.session is None and not any(isinstance(a, Supersede) for a in actions)


def test_nothing_to_resume_gives_false_and_older_clients_get_no_token(engine):
    backend, keeper = EngineBackend(engine), SessionKeeper()
    never = ServerConnection(backend, "never", keeper=keeper)
    _, (welcome,) = greet(never)
    never.closed = True
    keeper.detach(never.resume_token, 1.0)
    _, (w,) = greet(ServerConnection(backend, "b", keeper=keeper), now=2.0, resume=welcome["resume"]["token"])
    assert w["resumed"] is False                  # that connection never started a selection
    old = ServerConnection(backend, "old", keeper=keeper)
    actions = old.receive(frame("hello", 1, protocol=1, client="v1.6", protocol_minor=6), 0.0)
    assert "resume" not in sent(actions)[0] and old.resume_token is None
    decided = ServerConnection(backend, "decided", keeper=keeper)
    _, (w,) = greet(decided)
    (grid,) = sent(decided.receive(frame("start", 2, algorithm="pca", init="random", seed=1), 1.0))
    decided.receive(frame("decide", 3, id=grid["items"][0]["id"]), 2.0)
    decided.closed = True
    keeper.detach(decided.resume_token, 3.0)
    _, (w,) = greet(ServerConnection(backend, "c", keeper=keeper), now=4.0, resume=w["resume"]["token"])
    assert w["resumed"] is False                  # a decided selection is over


# -- the real server ---------------------------------------------------------------------------------------------
@pytest.fixture
def server(engine):
    srv = RunningServer(engine)
    yield srv
    srv.stop()


def test_a_dropped_link_resumes_with_the_same_grid_and_goes_on(server):
    async def main():
        c = await OmokageClient.connect(server.url)
        token = c.resume_token
        grid = await c.start("pca", seed=5)
        grid = await c.choose(grid.ids[3])
        c.ws.transport.abort()            # no close frame: the link just dies, as on a Wi-Fi drop
        await asyncio.sleep(0.2)
        async with await OmokageClient.connect(server.url, resume=token) as back:
            assert back.resumed and back.resumed_grid.ids == grid.ids and back.resumed_grid.step == grid.step
            assert back.resume_token not in (None, token)
            nxt = await back.choose(grid.ids[1])
            assert nxt.step == grid.step + 1 and nxt.ids[0] == grid.ids[1]
            assert not set(nxt.ids[1:]) & set(grid.ids)      # what it showed before the drop stays seen
            decided = await back.decide(nxt.ids[0])
            assert decided["steps"] == nxt.step
        async with await OmokageClient.connect(server.url, resume=token) as late:
            assert late.welcome["resumed"] is False and late.resumed_grid is None   # spent
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read())
        assert health["resumable"]["resumed"] == 1
    run(main())


def test_a_half_open_link_is_closed_when_its_client_resumes_elsewhere(server):
    async def main():
        old = await OmokageClient.connect(server.url)
        grid = await old.start("pca", seed=8)
        async with await OmokageClient.connect(server.url, resume=old.resume_token) as new:
            assert new.resumed and new.resumed_grid.ids == grid.ids
            await asyncio.wait_for(old.ws.wait_closed(), 5)
            assert old.ws.close_code == 1000 and "resumed" in old.ws.close_reason
            assert len((await new.choose(grid.ids[0])).ids) == 9
    run(main())


def test_a_restarted_or_resume_less_server_says_resumed_false(engine):
    async def main(url, token):
        async with await OmokageClient.connect(url, resume=token) as c:
            return c.welcome.get("resumed"), c.resume_token
    srv = RunningServer(engine)
    try:
        async def first():
            async with await OmokageClient.connect(srv.url) as c:
                await c.start("pca", seed=1)
                return c.resume_token
        token = run(first())
    finally:
        srv.stop()
    again = RunningServer(engine)            # a restarted server remembers nothing
    try:
        resumed, fresh = run(main(again.url, token))
        assert resumed is False and fresh is not None
    finally:
        again.stop()
    none = RunningServer(engine, resume_ttl_s=0)
    try:
        resumed, fresh = run(main(none.url, "f" * 32))
        assert resumed is False and fresh is None     # `serve --resume-minutes 0`: no tokens given
    finally:
        none.stop()


def test_the_resume_token_never_reaches_the_logs(engine, tmp_path):
    events, db = tmp_path / "events.jsonl", tmp_path / "store.db"
    srv = RunningServer(engine, events_path=events, store_path=db)
    try:
        async def main():
            c = await OmokageClient.connect(srv.url)
            token = c.resume_token
            grid = await c.start("pca", seed=2)
            await c.close()
            await asyncio.sleep(0.2)
            async with await OmokageClient.connect(srv.url, resume=token) as back:
                assert back.resumed
                await back.choose(grid.ids[0])
                return token, back.resume_token
        tokens = run(main())
    finally:
        srv.stop()
    text = events.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    resume = [r for r in records if r["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["step"] == 1
    import sqlite3
    dump = "\n".join(sqlite3.connect(db).iterdump())
    for token in tokens:
        assert token not in text and token not in dump
    assert '"resumed": true' in dump or '"resumed":true' in dump
    con = sqlite3.connect(db)
    rows = con.execute("SELECT session_id, step, COUNT(*) FROM candidates WHERE event = 'resume' GROUP BY 1, 2").fetchall()
    assert len(rows) == 1 and rows[0][1:] == (1, 9)      # the grid shown again, under the new session's id


# -- from the review: what a kept selection holds, and what must not resume --------------------------------------------
def test_a_kept_selection_holds_no_upload_drawing_or_calibration(engine):
    backend, keeper = EngineBackend(engine), SessionKeeper()
    conn = ServerConnection(backend, "a", keeper=keeper)
    greet(conn)
    conn.receive(frame("start", 2, algorithm="pca", init="random", seed=1), 1.0)
    big = b"\x00" * 3_000_000
    conn.receive(frame("start", 3, algorithm="pca", init="image", image=big), 2.0)   # refused or offloaded: held
    assert conn.last_message is not None
    conn.gaze.begin_calibration()
    conn.disconnected()
    assert conn.last_message is None and conn.pending is None and not conn.gaze.calibrating
    assert conn.canvas is None and conn.resumable        # the selection itself stays, for its client


def test_only_a_selection_that_can_go_on_is_kept(server):
    async def main():
        empty = await OmokageClient.connect(server.url)            # said hello, never started
        decided = await OmokageClient.connect(server.url)
        g = await decided.start("pca", seed=2)
        await decided.decide(g.ids[0])
        busy = await OmokageClient.connect(server.url)
        await busy.start("pca", seed=3)
        for c in (empty, decided, busy):
            await c.close()
        await asyncio.sleep(0.3)
        assert server.server.keeper.stats()["detached"] == 1   # the two with nothing to resume hold no slot
    run(main())


def test_a_step_the_log_could_not_keep_does_not_resume(engine):
    srv = RunningServer(engine)
    try:
        async def failing_commit(records, wire_in):
            return not any(r.get("event") == "choose" for r in records)
        srv.server._commit = failing_commit              # the event log fails (a full disk) on the pick

        async def main():
            c = await OmokageClient.connect(srv.url)
            token = c.resume_token
            g = await c.start("pca", seed=4)
            with pytest.raises((OmokageError, ConnectionError)):
                await c.choose(g.ids[3])
            await c.close()
            await asyncio.sleep(0.2)
            async with await OmokageClient.connect(srv.url, resume=token) as back:
                return back.resumed
        assert run(main()) is False      # the client was told "it was not kept; start again": nothing comes back
    finally:
        srv.stop()


def test_a_random_selection_resumes_without_an_earlier_images_reconstruction(engine):
    backend, keeper = EngineBackend(engine), SessionKeeper()
    first = ServerConnection(backend, "a", keeper=keeper)
    _, (welcome,) = greet(first)
    import numpy as np
    from omokage.catalog.store import encode_texture
    recon = encode_texture(np.zeros((8, 8, 3), np.uint8))
    first.projection_done(first._offload_projection("start.image", b"x", 2, "pca", 1, "thompson").job,
                          np.zeros(engine.space("pca").dim, np.float32), recon, 1.0)
    first.receive(frame("start", 3, algorithm="pca", init="random", seed=5), 2.0)   # then a random selection
    first.disconnected()
    keeper.detach(first.resume_token, 3.0)
    second = ServerConnection(backend, "b", keeper=keeper)
    _, (w, grid) = greet(second, now=4.0, resume=welcome["resume"]["token"])
    assert w["resumed"] and "reconstruction" not in grid


def test_a_projection_that_returns_after_its_connection_was_superseded_starts_nothing(engine):
    import numpy as np
    from omokage.catalog.store import encode_texture
    backend, keeper = EngineBackend(engine), SessionKeeper()
    old = ServerConnection(backend, "old", keeper=keeper)
    _, (welcome,) = greet(old)
    (g,) = sent(old.receive(frame("start", 2, algorithm="pca", init="random", seed=6), 1.0))
    job = old._offload_projection("start.image", b"x", 3, "pca", 1, "thompson").job
    new = ServerConnection(backend, "new", keeper=keeper)
    greet(new, now=2.0, resume=welcome["resume"]["token"])
    assert old.closed and new.session is not None
    late = old.projection_done(job, np.zeros(engine.space("pca").dim, np.float32),
                               encode_texture(np.zeros((8, 8, 3), np.uint8)), 3.0)
    assert late == [] and old.session is None


def test_a_duplicated_tab_does_not_take_a_live_selection_that_is_over(engine):
    """A live owner with nothing to resume (decided) keeps its link and its token: no Supersede, resumed false."""
    backend, keeper = EngineBackend(engine), SessionKeeper()
    first = ServerConnection(backend, "a", keeper=keeper)
    _, (welcome,) = greet(first)
    (g,) = sent(first.receive(frame("start", 2, algorithm="pca", init="random", seed=1), 1.0))
    first.receive(frame("decide", 3, id=g["items"][0]["id"]), 2.0)
    copy = ServerConnection(backend, "b", keeper=keeper)
    actions, (w,) = greet(copy, now=3.0, resume=welcome["resume"]["token"])
    assert w["resumed"] is False and not any(isinstance(a, Supersede) for a in actions) and not first.closed
    assert keeper.owner(welcome["resume"]["token"], 3.0) is first


def test_the_client_command_prints_no_secrets():
    from omokage.demo import describe
    line = describe({"type": "welcome", "resume": {"token": "ab" * 16, "ttl_s": 600.0}})
    assert "ab" * 16 not in line and "<secret>" in line and "600" in line
    assert "s3cret" not in describe({"type": "hello", "token": "s3cret", "resume": "cd" * 16})


def test_fit_user_model_reads_a_resumed_selection_as_one(tmp_path):
    from omokage.selection.user_model import read_choice_records
    log = tmp_path / "events.jsonl"
    lines = [{"event": "start", "session_id": "a", "algorithm": "pca", "item": None, "candidates": [1, 2, 3]},
             {"event": "choose", "session_id": "a", "algorithm": "pca", "item": 2, "candidates": [2, 4, 5]},
             {"event": "resume", "session_id": "b", "from_session": "a", "algorithm": "pca", "candidates": [2, 4, 5]},
             {"event": "choose", "session_id": "b", "algorithm": "pca", "item": 4, "candidates": [4, 6, 7]},
             {"event": "decide", "session_id": "b", "algorithm": "pca", "item": 7, "candidates": []}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, report = read_choice_records([log])
    assert [(r.shown, r.chosen, r.target) for r in records] == [((1, 2, 3), 2, 7), ((2, 4, 5), 4, 7)]
    assert report.decided_sessions == 1 and not report.problems


def test_a_welcome_lost_with_the_link_leaves_the_presented_token_working(engine):
    """A flaky Wi-Fi's reconnect can die between hello and welcome: the client never saw its new token and presents
    the old one again. Until the client is heard from on the connection that resumed, the old token still reaches the
    selection; after that it is spent."""
    backend, keeper = EngineBackend(engine), SessionKeeper()
    a = ServerConnection(backend, "a", keeper=keeper)
    _, (welcome,) = greet(a)
    old = welcome["resume"]["token"]
    (grid,) = sent(a.receive(frame("start", 2, algorithm="pca", init="random", seed=3), 1.0))
    a.disconnected()
    keeper.detach(a.resume_token, 2.0)
    b = ServerConnection(backend, "b", keeper=keeper)
    _, (wb, _) = greet(b, now=3.0, resume=old)            # this welcome never reaches the client
    assert wb["resumed"]
    b.disconnected()
    keeper.detach(b.resume_token, 4.0)
    c = ServerConnection(backend, "c", keeper=keeper)
    _, (wc, again) = greet(c, now=5.0, resume=old)       # the old token again: still the same selection
    assert wc["resumed"] and [i["id"] for i in again["items"]] == [i["id"] for i in grid["items"]]
    # c's client got its welcome and says something: now the presented token is spent, the new one works
    c.receive(frame("ping", 3, t=1.0), 6.0)
    d = ServerConnection(backend, "d", keeper=keeper)
    _, (wd,) = greet(d, now=7.0, resume=old)
    assert wd["resumed"] is False
    assert keeper.owner(wc["resume"]["token"], 7.0) is c and keeper.owner(wb["resume"]["token"], 7.0) is None


def test_a_half_open_resume_attempt_is_superseded_by_the_next_with_the_same_token(engine):
    backend, keeper = EngineBackend(engine), SessionKeeper()
    a = ServerConnection(backend, "a", keeper=keeper)
    _, (welcome,) = greet(a)
    sent(a.receive(frame("start", 2, algorithm="pca", init="random", seed=4), 1.0))
    a.disconnected()
    keeper.detach(a.resume_token, 2.0)
    b = ServerConnection(backend, "b", keeper=keeper)
    greet(b, now=3.0, resume=welcome["resume"]["token"])          # b's link is half-open: still live here
    c = ServerConnection(backend, "c", keeper=keeper)
    actions, (wc, _) = greet(c, now=4.0, resume=welcome["resume"]["token"])
    assert wc["resumed"] and [x.connection for x in actions if isinstance(x, Supersede)] == [b] and b.closed
