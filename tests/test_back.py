"""Protocol v1.7 `back`: undo the last choose or skip. The session alone (every policy), the connection state machine,
the real server with the Python client, and the user-model fit that must leave undone picks out."""

import asyncio
import json

import numpy as np
import pytest

from omokage.client import OmokageClient, OmokageError
from omokage.protocol.connection import ServerConnection
from omokage.selection import SERVED_POLICIES, SelectionSession, WrongState, make_policy
from omokage.selection.belief import GazeTerm
from omokage.selection.user_model import read_choice_records
from omokage.service.server import EngineBackend
from tests.conftest import RunningServer, frame, gaze_kit, sent


@pytest.mark.parametrize("policy", SERVED_POLICIES)
@pytest.mark.parametrize("seed", [7, None])
def test_back_returns_the_earlier_grid_exactly_and_forgets_the_pick(engine, policy, seed):
    space = engine.space("pca")
    s = SelectionSession(space, seed=seed, policy=make_policy(policy))
    g1 = s.start(at=1.0)
    g2 = s.choose(g1.ids[4], at=2.0)
    s.rate(g2.ids[3], 5, at=2.5)                      # a rating on the grid that will come back: kept
    belief = getattr(s.policy, "belief", None)
    before = belief.log_posteriors.copy() if belief is not None else None
    g3 = s.choose(g2.ids[6], at=3.0)                  # the misclick
    assert s.back(at=4.0).ids == g2.ids and s.current.step == 2 and len(s.history) == 2
    assert s.ratings == {g2.ids[3]: 5} and not set(g3.ids[1:]) & s.shown   # what it left counts as unseen again
    if before is not None:
        np.testing.assert_array_equal(s.policy.belief.log_posteriors, before)   # the pick is forgotten exactly
    assert [e.kind for e in s.events][-1] == "back" and s.events[-1].detail == {"undone": "choose", "left_step": 3}
    g2b = s.skip(at=5.0)
    assert s.back(at=6.0).ids == g2.ids                # a skip can be taken back too
    assert s.back().ids == g1.ids and s.current.step == 1
    with pytest.raises(WrongState, match="first grid"):
        s.back()
    assert s.choose(g1.ids[4]).ids == g2.ids           # the same pick again: the same grid (the same random stream)
    assert g2b.step == 3


def test_back_drops_the_gaze_evidence_of_the_grid_that_returns(engine):
    space = engine.space("pca")
    s = SelectionSession(space, seed=3, policy=make_policy("thompson+gaze"))
    g1 = s.start()
    before = s.policy.belief.log_posteriors.copy()
    s.add_evidence(GazeTerm(tuple(g1.ids[1:]), (3.0, 0, 0, 0, 0, 0, 0, 0)), kind="gaze")   # came with the pick
    s.choose(g1.ids[0])
    s.back()
    np.testing.assert_array_equal(s.policy.belief.log_posteriors, before)
    s.decide(g1.ids[2])
    with pytest.raises(WrongState):
        s.back()


def test_the_connection_answers_back_with_the_earlier_grid_and_logs_it(engine):
    conn = ServerConnection(EngineBackend(engine), "s")
    conn.receive(frame("hello", 1, protocol=1, client="t", protocol_minor=7), 0.0)
    (err,) = sent(conn.receive(frame("back", 2), 0.5))
    assert err["code"] == "wrong_state" and "start" in err["message"]
    (g1,) = sent(conn.receive(frame("start", 3, algorithm="pca", init="random", seed=1), 1.0))
    (err,) = sent(conn.receive(frame("back", 4), 1.5))
    assert err["code"] == "wrong_state" and "first grid" in err["message"]
    (g2,) = sent(conn.receive(frame("choose", 5, id=g1["items"][2]["id"]), 2.0))
    actions = conn.receive(frame("back", 6), 3.0)
    (again,) = sent(actions)
    assert again["type"] == "candidates" and again["rid"] == 6 and again["step"] == 1
    assert [i["id"] for i in again["items"]] == [i["id"] for i in g1["items"]]
    log = [a.record for a in actions if hasattr(a, "record")]
    assert log[-1]["event"] == "back" and log[-1]["undone"] == "choose" and log[-1]["left_step"] == 2
    (g2b,) = sent(conn.receive(frame("choose", 7, id=g1["items"][2]["id"]), 4.0))
    assert g2b["step"] == 2 and [i["id"] for i in g2b["items"]] == [i["id"] for i in g2["items"]]


def test_back_through_the_real_server_with_the_python_client(engine, tmp_path):
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    try:
        async def main():
            async with await OmokageClient.connect(srv.url) as c:
                g1 = await c.start("pca", seed=4)
                g2 = await c.choose(g1.ids[1])
                wrong = await c.choose(g2.ids[5])           # a slip of the controller ray
                back = await c.back()
                assert back.ids == g2.ids and back.step == 2 and wrong.step == 3
                g3 = await c.choose(g2.ids[2])
                decided = await c.decide(g3.ids[4])
                assert decided["steps"] == 3
                with pytest.raises(OmokageError) as exc:
                    await c.back()
                assert exc.value.code == "wrong_state"
                return g1, g2, g3
        g1, g2, g3 = asyncio.run(main())
    finally:
        srv.stop()
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds.count("back") == 1
    records, report = read_choice_records([events])
    assert not report.problems
    # the undone pick (g2.ids[5] on g2) is not evidence about the user: only the two real picks are fitted
    assert [(r.shown, r.chosen) for r in records] == [(tuple(g1.ids), g1.ids[1]), (tuple(g2.ids), g2.ids[2])]


def test_fit_user_model_leaves_out_picks_taken_back(tmp_path):
    log = tmp_path / "events.jsonl"
    lines = [{"event": "start", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [1, 2, 3]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 2, "candidates": [2, 4, 5]},
             {"event": "skip", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [6, 7, 8]},
             {"event": "back", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [2, 4, 5]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 4, "candidates": [4, 9, 10]},
             {"event": "back", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [2, 4, 5]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 5, "candidates": [5, 11, 12]},
             {"event": "decide", "session_id": "s", "algorithm": "pca", "item": 12, "candidates": []}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, report = read_choice_records([log])
    assert [(r.shown, r.chosen) for r in records] == [((1, 2, 3), 2), ((2, 4, 5), 5)]
    assert not report.problems


def test_a_large_catalogs_back_is_rebuilt_off_the_loop_and_adopted_only_if_nothing_moved(engine, monkeypatch):
    """From BACK_OFFLOAD_WORK (inputs × faces) the replay runs on a worker (58 ms at 100k, bench policy): the connection hands
    out a BackJob and adopts its result only if the selection is still where it was."""
    import omokage.protocol.connection as connection
    from omokage.protocol.connection import BackJob, Offload
    monkeypatch.setattr(connection, "BACK_OFFLOAD_WORK", 1)
    conn = ServerConnection(EngineBackend(engine), "s")
    conn.receive(frame("hello", 1, protocol=1, client="t", protocol_minor=7), 0.0)
    (g1,) = sent(conn.receive(frame("start", 2, algorithm="pca", init="random", seed=2), 1.0))
    conn.receive(frame("choose", 3, id=g1["items"][1]["id"]), 2.0)
    (off,) = conn.receive(frame("back", 4), 3.0)
    assert isinstance(off, Offload) and isinstance(off.job, BackJob) and conn.session.current.step == 2
    rebuilt = off.job.session.rebuilt_without_last_pick(off.job.inputs)
    (again,) = sent(conn.back_done(off.job, rebuilt, 4.0))
    assert again["rid"] == 4 and again["step"] == 1 and [i["id"] for i in again["items"]] == \
        [i["id"] for i in g1["items"]]
    # a rebuild that lands after the selection moved on is refused, and the grid on screen stays
    (g2,) = sent(conn.receive(frame("choose", 5, id=g1["items"][3]["id"]), 5.0))
    (off,) = conn.receive(frame("back", 6), 6.0)
    rebuilt = off.job.session.rebuilt_without_last_pick(off.job.inputs)
    conn.receive(frame("rate", 7, id=g2["items"][2]["id"], rating=4), 6.5)
    (err,) = sent(conn.back_done(off.job, rebuilt, 7.0))
    assert err["code"] == "wrong_state" and err["rid"] == 6 and conn.session.current.step == 2


def test_the_server_runs_a_large_catalogs_back_on_its_worker_pool(engine, monkeypatch):
    import omokage.protocol.connection as connection
    monkeypatch.setattr(connection, "BACK_OFFLOAD_WORK", 1)
    srv = RunningServer(engine)
    try:
        async def main():
            async with await OmokageClient.connect(srv.url) as c:
                g1 = await c.start("pca", seed=8)
                g2 = await c.choose(g1.ids[0])
                await c.skip()
                assert (await c.back()).ids == g2.ids
                assert (await c.back()).ids == g1.ids
                rtt, _ = await c.ping()
                return rtt
        assert asyncio.run(main()) < 5
    finally:
        srv.stop()


@pytest.mark.parametrize("policy", ["study", "thompson"])
def test_the_ideal_face_after_back_reads_the_state_it_is_back_in(engine, policy):
    """The ideal face's favourite and evidence come from the session's events: after a back they are the events of
    the grid it is back in, not the undone pick (which, read as a choice, even crashed a second back's ideal)."""
    from omokage.selection.ideal import snapshot
    s = SelectionSession(engine.space("pca"), seed=5, policy=make_policy(policy))
    g1 = s.start()
    g2 = s.choose(g1.ids[2])
    s.choose(g2.ids[7])                       # the slip
    s.back()
    ev = snapshot(s)
    assert ev.last_chosen == g1.ids[2] and ev.on_screen == g2.ids
    if ev.probabilities is None:
        assert ev.choices == ((g1.ids, g1.ids[2]),)
    s.back()
    ev = snapshot(s)                          # a second back: no IndexError from a stale choice
    assert ev.last_chosen is None and ev.on_screen == g1.ids and not ev.choices


def test_a_policy_changed_between_construction_and_start_replays_as_started(engine):
    """The pristine policy is the one `start` found (the choice benchmark sets gaze parameters in between)."""
    policy = make_policy("thompson")
    s = SelectionSession(engine.space("pca"), seed=9, policy=policy)
    policy.temperatures = (0.05,)             # changed after construction, before start
    g1 = s.start()
    g2 = s.choose(g1.ids[1])
    s.choose(g2.ids[4])
    assert s.back().ids == g2.ids and s.policy.temperatures == (0.05,)
    assert s.choose(g2.ids[4]) is not None



def test_fit_user_model_reads_only_the_gaze_the_selection_kept(engine, tmp_path):
    """After `back` the belief forgets the gaze of the grid that returns (its first look ended on the slipped face,
    the face really wanted counted as merely looked at) and never used the gaze of the grid it left: `fit user-model`
    must fit the same gaze, not both looks (found by a review)."""
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    layout, look = gaze_kit()
    try:
        async def go():
            async with await OmokageClient.connect(srv.url, token=None) as c:
                await c.layout(layout.to_wire()["panels"])
                g1 = await c.start("pca", init="random", seed=5, policy="thompson+gaze")
                await look(c, 2, 4)
                g2 = await c.choose(g1.ids[4])
                await look(c, 1, 2)                   # the user looks at face 2 ...
                await c.choose(g2.ids[5])             # ... and the ray slips onto face 5
                await look(c, 0, 3)
                assert (await c.back()).ids == g2.ids
                await look(c, 1, 2)                   # looks again, and picks face 2
                g3 = await c.choose(g2.ids[2])
                await c.decide(g3.ids[8])
                return g1, g2
        g1, g2 = asyncio.run(go())
    finally:
        srv.stop()
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r.get("ended_by") for r in logged if r["event"] == "gaze"] == ["choose", "choose", "back", "choose"]
    _, report = read_choice_records([events])
    # the gaze the selection's belief holds at its decision: grid 1's, and grid 2's second look (face 2 the pick)
    assert [set(r.shown) for r in report.gaze_records] == [set(g1.ids) - {g1.ids[4]}, set(g2.ids) - {g2.ids[2]}]


def test_back_to_an_image_starts_first_grid_shows_its_reconstruction_again(engine):
    """The grid that returns is the grid as it was: an image start's first grid came with the model's reconstruction
    of the image, and so does a back to it (as a resume of it does); a back to a later grid has none."""
    from omokage.catalog.store import encode_texture
    conn = ServerConnection(EngineBackend(engine), "s")
    conn.receive(frame("hello", 1, protocol=1, protocol_minor=7, client="test"), 0.0)
    recon = encode_texture(np.full((8, 8, 3), 77, np.uint8))
    job = conn._offload_projection("start.image", b"x", 2, "pca", 1, "thompson").job
    (first,) = sent(conn.projection_done(job, engine.space("pca").features[3], recon, 1.0))
    assert first["step"] == 1 and first["reconstruction"]["data"] == recon.data
    (second,) = sent(conn.receive(frame("choose", 3, id=first["items"][2]["id"]), 2.0))
    (third,) = sent(conn.receive(frame("choose", 4, id=second["items"][1]["id"]), 3.0))
    (back,) = sent(conn.receive(frame("back", 5), 4.0))
    assert back["step"] == 2 and "reconstruction" not in back
    (back,) = sent(conn.receive(frame("back", 6), 5.0))
    assert back["step"] == 1 and [i["id"] for i in back["items"]] == [i["id"] for i in first["items"]]
    assert back["reconstruction"] == first["reconstruction"]
