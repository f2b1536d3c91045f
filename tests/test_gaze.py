"""Gaze (issue 13): sample validation, the ray-cast, fixation detection on hand-made traces, per-step figures, the
connection's gaze messages, and the gaze term in the belief."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from omokage.gaze import (GazeTracker, IDTConfig, IVTConfig, Layout, LayoutError, detect_idt, detect_ivt,
                          parse_layout, parse_samples, ray_cast)
from omokage.gaze.samples import EYE, NO_HIT, panel_directions
from omokage.gaze.simulate import GazeModel, fixation_plan, render

# --- hand-made traces --------------------------------------------------------------------------------------------------


def _dir(yaw_deg, pitch_deg):
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    return np.stack([np.cos(p) * np.sin(y), np.sin(p), -np.cos(p) * np.cos(y)], axis=-1)


def _trace(script, rate=100.0, noise=0.08, seed=0):
    """script: [("fix", yaw, pitch, seconds) | ("sac", seconds) | ("gap", seconds)]. Returns t, directions,
    confidence and the true fixations [(onset, offset)] (onset: the first sample at the new place)."""
    rng = np.random.default_rng(seed)
    dt = 1 / rate
    t, ang, conf, truth = [], [], [], []
    now, cur = 0.0, None
    for i, step in enumerate(script):
        kind = step[0]
        if kind == "fix":
            _, yaw, pitch, dur = step
            n = int(round(dur * rate))
            truth.append((now, now + n * dt))
            for _ in range(n):
                t.append(now), ang.append((yaw, pitch)), conf.append(1.0)
                now += dt
            cur = (yaw, pitch)
        elif kind == "sac":
            nxt = next(s for s in script[i + 1:] if s[0] == "fix")
            n = int(round(step[1] * rate))
            for k in range(1, n + 1):
                f = k / (n + 1)
                t.append(now), ang.append((cur[0] + f * (nxt[1] - cur[0]), cur[1] + f * (nxt[2] - cur[1])))
                conf.append(1.0)
                now += dt
        elif kind == "gap":       # a blink: samples with confidence 0 at the same place
            n = int(round(step[1] * rate))
            for _ in range(n):
                t.append(now), ang.append(cur), conf.append(0.0)
                now += dt
    ang = np.array(ang) + rng.normal(0, noise, (len(ang), 2))
    return np.array(t), _dir(ang[:, 0], ang[:, 1]), np.array(conf), truth


SCRIPT = [("fix", 0, 0, 0.30), ("sac", 0.04), ("fix", 12, 0, 0.25), ("sac", 0.03), ("fix", 12, 9, 0.40),
          ("sac", 0.04), ("fix", -12, 9, 0.06),         # too short: dropped
          ("sac", 0.04), ("fix", -12, -9, 0.20), ("gap", 0.05), ("fix", -12, -9, 0.20),   # a blink: bridged
          ("sac", 0.04), ("fix", 0, -9, 0.5)]
EXPECTED = [(0, 0.30), (1, 0.25), (2, 0.40), (4, 0.45), (6, 0.5)]   # script index of the onset, duration


def _expected_fixations(truth):
    # truth: one entry per "fix"; the short one is the 4th, the blink splits the 5th and 6th
    return [truth[0], truth[1], truth[2], (truth[4][0], truth[5][1]), truth[6]]


def test_ivt_finds_the_hand_made_fixations_with_onsets_within_one_sample():
    t, d, conf, truth = _trace(SCRIPT)
    found = detect_ivt(t, d, conf)
    want = _expected_fixations(truth)
    assert len(found) == len(want), [(round(f.onset, 3), round(f.duration, 3)) for f in found]
    for f, (on, off) in zip(found, want):
        assert abs(f.onset - on) <= 0.0101, (f.onset, on)
        assert abs(f.offset - off) <= 0.0201, (f.offset, off)


@pytest.mark.parametrize("rate", [60.0, 90.0, 120.0])
def test_ivt_at_headset_rates(rate):
    t, d, conf, truth = _trace(SCRIPT, rate=rate, seed=int(rate))
    found = detect_ivt(t, d, conf)
    want = _expected_fixations(truth)
    assert [round(f.onset / (1 / rate)) for f in found] == pytest.approx(
        [round(w[0] / (1 / rate)) for w in want], abs=1)


def test_ivt_thresholds_are_configurable():
    t, d, conf, truth = _trace(SCRIPT)
    # with a 30 ms minimum the 60 ms glance is kept (the velocity window takes a sample off each end)
    assert len(detect_ivt(t, d, conf, config=IVTConfig(min_duration=0.03))) == 6
    # without gap bridging (gaps over 15 ms split) and without merging, the blink splits the fixation in two
    split = detect_ivt(t, d, conf, config=IVTConfig(max_gap=0.015, merge_time=0.0))
    assert len(split) == 6
    # a velocity threshold below the noise finds nothing
    assert detect_ivt(t, d, conf, config=IVTConfig(velocity_threshold=0.01, noise_window=1)) == []


def test_ivt_merges_close_fixations_and_keeps_far_ones_apart():
    near = [("fix", 0, 0, 0.2), ("sac", 0.03), ("fix", 1.5, 0, 0.2)]       # 1.5° apart, 30 ms: merged
    far = [("fix", 0, 0, 0.2), ("sac", 0.03), ("fix", 5, 0, 0.2)]          # 5° apart: two
    t, d, conf, _ = _trace(near, noise=0.02)
    assert len(detect_ivt(t, d, conf, config=IVTConfig(velocity_threshold=30))) in (1, 2)
    merged = detect_ivt(t, d, conf, config=IVTConfig(velocity_threshold=20))
    assert len(merged) == 1 and merged[0].duration == pytest.approx(0.43, abs=0.021)
    t, d, conf, _ = _trace(far, noise=0.02)
    assert len(detect_ivt(t, d, conf)) == 2


def test_idt_finds_the_same_fixations():
    t, d, conf, truth = _trace(SCRIPT, noise=0.05)
    found = detect_idt(t, d, conf, config=IDTConfig(dispersion=1.0))
    # the blink (50 ms, under max_gap) is bridged as in I-VT; the 60 ms glance is too short for a window
    want = _expected_fixations(truth)
    assert len(found) == len(want), [(round(f.onset, 3), round(f.duration, 3)) for f in found]
    for f, (on, _) in zip(found, want):
        assert abs(f.onset - on) <= 0.0101


# --- validation ------------------------------------------------------------------------------------------------------

def _s(t, src="eye", d=(0.0, 0.0, -1.0), conf=1.0, hit=None, o=(0.0, 1.5, 0.0)):
    return [t, src, *o, *d, conf, *(hit or [])]


def test_every_bad_sample_is_dropped_and_counted_by_reason():
    raw = [_s(10.0), _s(10.01, hit=[4, 0.5, 0.5]),
           "nope", [1, 2], _s(10.02, src="nose"), _s(10.03, d=(None, 0, -1)), _s(True, src="eye"),   # malformed ×5
           _s(10.04, d=(math.nan, 0, -1)), _s(math.inf),                                            # not_finite ×2
           _s(10.05, d=(0, 0, -0.5)),                                                               # not_unit
           _s(10.06, conf=1.5), _s(10.07, hit=[3, 1.2, 0.5]), _s(10.075, o=(1e9, 0, 0)),           # out_of_range ×3
           _s(10.08, hit=[9, 0.5, 0.5]), _s(10.09, hit=[-2, 0.5, 0.5]), _s(10.095, hit=[2.0, 0.5, 0.5]),   # bad_panel
           _s(10.005), _s(10.01),                                                                   # out_of_order ×2
           _s(99.0),                                                                                # future
           _s(10.1, src="head"), _s(10.02, src="head")]                  # head's own clock: 10.02 < 10.1 → out_of_order
    last = {}
    s, drops = parse_samples(raw, now=11.0, last_t=last, grid_size=9)
    assert drops.counts == {"malformed": 5, "not_finite": 2, "not_unit": 1, "out_of_range": 3, "bad_panel": 3,
                            "out_of_order": 3, "future": 1}
    assert len(s) == 3 and list(s.t) == [10.0, 10.01, 10.1]
    assert list(s.panel) == [-2, 4, -2]
    # the next batch continues each source's clock
    s2, drops2 = parse_samples([_s(10.01), _s(10.2)], now=11.0, last_t=last)
    assert drops2.counts == {"out_of_order": 1} and len(s2) == 1


def test_a_batch_of_one_bad_sample_is_refused_whatever_path_checks_it():
    """A batch with nothing wrong takes a fast whole-batch check; each sample here, alone in its batch, is just outside
    one rule, so that check must not let it through."""
    from omokage.gaze.samples import FUTURE_TOLERANCE_S, MAX_COORDINATE_M, UNIT_TOLERANCE
    now = 11.0
    over = 1 + UNIT_TOLERANCE + 1e-4
    cases = {"not_unit": [_s(10.0, d=(0.0, 0.0, -over)), _s(10.0, d=(0.0, 0.0, -(1 - UNIT_TOLERANCE - 1e-4)))],
             "out_of_range": [_s(10.0, conf=1.0 + 1e-9), _s(10.0, conf=-1e-9), _s(10.0, hit=[4, 1.0 + 1e-9, 0.5]),
                              _s(10.0, hit=[4, 0.5, -1e-9]), _s(10.0, o=(MAX_COORDINATE_M * 1.0001, 0.0, 0.0))],
             "bad_panel": [_s(10.0, hit=[9, 0.5, 0.5]), _s(10.0, hit=[-3, 0.5, 0.5])],
             "future": [_s(now + FUTURE_TOLERANCE_S + 1e-3)],
             "not_finite": [_s(10.0, d=(0.0, math.nan, -1.0)), _s(10.0, hit=[4, math.inf, 0.5]), _s(-math.inf)]}
    for reason, samples in cases.items():
        for sample in samples:
            s, drops = parse_samples([sample], now=now, grid_size=9)
            assert len(s) == 0 and drops.counts == {reason: 1}, (sample, drops.counts)
    # and the edges themselves are inside: kept without a drop
    edge = [_s(10.0, d=(0.0, 0.0, -(1 + UNIT_TOLERANCE - 1e-6)), conf=1.0, hit=[8, 1.0, 0.0]),
            _s(10.01, conf=0.0, hit=[-1, 7.5, -3.0]),          # off the panels, u and v are not looked at
            _s(now + FUTURE_TOLERANCE_S - 1e-3, o=(MAX_COORDINATE_M, 0.0, 0.0))]
    s, drops = parse_samples(edge, now=now, grid_size=9)
    assert len(s) == 3 and drops.total == 0


def test_a_sample_on_the_unit_tolerance_gets_the_same_answer_on_either_path():
    """The fast whole-batch check and the per-reason slow path use one predicate: a sample is kept or dropped the same
    whether the rest of its batch is clean (fast path) or not (a bad sample beside it sends the batch the slow way)."""
    from omokage.gaze.samples import UNIT_TOLERANCE
    for length in (1 + UNIT_TOLERANCE, 1 - UNIT_TOLERANCE, np.nextafter(1 + UNIT_TOLERANCE, 2),
                   np.nextafter(1 - UNIT_TOLERANCE, 0), 1.01, 0.99):
        sample = _s(10.0, d=(float(length), 0.0, 0.0))
        alone, _ = parse_samples([sample], now=11.0)
        beside, drops = parse_samples([sample, _s(10.05, conf=2.0)], now=11.0)   # the second: out_of_range
        assert len(alone) == len(beside), (length, len(alone), drops.counts)


def test_validation_never_raises_on_garbage():
    rng = np.random.default_rng(0)
    junk = [None, True, 1, 2.5, "head", "eye", [], {}, b"x", -1, 10**400 if False else 2**80, math.nan, -math.inf]
    for _ in range(300):
        raw = [[junk[rng.integers(len(junk))] for _ in range(rng.choice([9, 12, 3]))] for _ in range(rng.integers(5))]
        s, drops = parse_samples(raw, now=0.0)
        assert len(s) + drops.total == len(raw)
    parse_samples("not a list", now=0.0)


# --- layout and ray-cast -------------------------------------------------------------------------------------------

def test_ray_cast_hits_each_panel_at_its_centre_and_misses_between_them():
    layout = Layout.grid()
    eye = np.array([0.0, 1.5, 0.0])
    d = panel_directions(layout, eye)
    panel, uv = ray_cast(layout, np.tile(eye, (9, 1)), d)
    assert list(panel) == list(range(9)) and np.allclose(uv, 0.5, atol=1e-6)
    # between panel 0 and 1 (the gap), behind the viewer, and straight up: no panel
    gap = layout.position[0] + [(0.3 + 0.06) / 2, 0, 0] - eye
    rays = np.array([gap / np.linalg.norm(gap), [0, 0, 1.0], [0, 1.0, 0]])
    panel, uv = ray_cast(layout, np.tile(eye, (3, 1)), rays)
    assert list(panel) == [NO_HIT] * 3 and np.isnan(uv).all()


def test_ray_cast_respects_the_panels_rotation_and_the_uv_axes():
    # one panel 1 m ahead, turned 90° about y: the viewer sees its edge, so a ray straight at it misses ...
    q = [0.0, math.sin(math.pi / 4), 0.0, math.cos(math.pi / 4)]
    layout = parse_layout([{"position": [0, 0, -1], "rotation": q, "size": [0.5, 0.5]}])
    panel, _ = ray_cast(layout, np.zeros((1, 3)), np.array([[0, 0, -1.0]]))
    assert panel[0] == NO_HIT
    # ... while a ray from the side hits it; u follows the panel's local x (now the scene's −z), v its local y (+y)
    o = np.array([[2.0, 0.1, -1.1]])
    panel, uv = ray_cast(layout, o, np.array([[-1.0, 0, 0]]))
    assert panel[0] == 0 and uv[0] == pytest.approx([0.5 + 0.1 / 0.5, 0.5 + 0.1 / 0.5], abs=1e-5)


@pytest.mark.parametrize("panels, what", [
    ([], "1 to"), ("x", "1 to"), ([{"position": [0, 0], "rotation": [0, 0, 0, 1], "size": [1, 1]}], "position"),
    ([{"position": [0, 0, 0], "rotation": [0, 0, 0, 2], "size": [1, 1]}], "unit quaternion"),
    ([{"position": [0, 0, 0], "rotation": [0, 0, 0, 1], "size": [0, 1]}], "size"),
    ([{"position": [0, 0, math.nan], "rotation": [0, 0, 0, 1], "size": [1, 1]}], "finite"),
])
def test_a_bad_layout_names_its_problem(panels, what):
    with pytest.raises(LayoutError, match=what):
        parse_layout(panels)


# --- the tracker: per step and per candidate ---------------------------------------------------------------------

def test_step_figures_from_simulated_gaze_match_the_plan():
    rng = np.random.default_rng(3)
    layout = Layout.grid()
    plan = [(4, 0.4), (0, 0.3), (4, 0.3), (8, 0.5), (4, 0.2)]
    rows, truth = render(rng, plan, layout, 100.0, GazeModel(noise_deg=0.2, dropout=0.0))
    tracker = GazeTracker(max_rate_hz=1e6)
    tracker.set_layout(layout)
    tracker.begin_step(1, range(100, 109), 99.9)
    res = tracker.ingest(rows, now=200.0)
    assert res.accepted == len(rows) and res.drops.total == 0
    step = tracker.end_step()
    assert [f.panel for f in step.fixations] == [j for j, _ in plan]
    st = step.stats
    assert st.fixations[4] == 3 and st.revisits[4] == 2 and st.fixations[0] == 1 and st.revisits[0] == 0
    assert st.fixation_s[8] == pytest.approx(0.5, abs=0.03)
    assert st.first_s[4] == pytest.approx(truth[0][1] - 99.9, abs=0.012)
    assert st.last_panel == 4
    assert st.dwell_s[[1, 2, 3, 5, 6, 7]].sum() < 0.05
    log = step.to_log(99.9)
    assert log["items"] == list(range(100, 109)) and log["fixation_count"][4] == 3


def test_the_rate_budget_drops_the_excess_and_never_queues():
    tracker = GazeTracker(max_rate_hz=100, burst_s=1.0)
    tracker.begin_step(1, range(9), 0.0)
    batch = [_s(0.001 * k) for k in range(300)]
    res = tracker.ingest(batch[:256], now=0.0)
    assert res.accepted == 256 and res.over_rate == 0
    res = tracker.ingest(batch[256:], now=0.0)     # the bucket is empty: everything beyond it is dropped
    assert res.accepted == 0 and res.over_rate == 44
    res = tracker.ingest([_s(0.4 + 0.001 * k) for k in range(60)], now=0.5)   # 0.5 s later: 50 tokens again
    assert res.accepted == 50 and res.over_rate == 10


def test_a_grid_keeps_a_bounded_number_of_samples_whatever_their_times():
    # samples 10 µs apart: by their times alone nothing would ever be older than MAX_STEP_SECONDS
    from omokage.gaze.tracker import MAX_STEP_SECONDS
    tracker = GazeTracker(max_rate_hz=100, burst_s=1.0)
    tracker.begin_step(1, range(9), 0.0)
    k = 0
    for second in range(400):   # 400 s of in-budget batches: 100 samples a second
        res = tracker.ingest([_s(1e-5 * (k + j)) for j in range(100)], now=float(second))
        assert res.accepted == 100
        k += 100
    kept = sum(tracker.end_step().samples.values())   # samples per source
    cap = 2 * 100 * MAX_STEP_SECONDS
    assert cap <= kept < cap + 100 and kept < k      # whole batches are dropped only while the rest still fills the cap
    tracker.begin_step(2, range(9), 400.0)            # the next grid starts its count afresh
    assert tracker.ingest([_s(1.0 + 1e-5 * j) for j in range(100)], now=401.0).accepted == 100
    assert tracker.end_step().samples == {"eye": 100}


# --- the connection --------------------------------------------------------------------------------------------------

@pytest.fixture
def backend(engine):
    from omokage.service.server import EngineBackend
    return EngineBackend(engine)


def _send(conn, now=0.0, **msg):
    from omokage.protocol.connection import Send
    return [a.message for a in conn.receive(msgpack.packb(msg, use_bin_type=True), now) if isinstance(a, Send)]


def _actions(conn, now=0.0, **msg):
    return conn.receive(msgpack.packb(msg, use_bin_type=True), now)


def _connect(backend, minor=2):
    from omokage.protocol.connection import ServerConnection
    conn = ServerConnection(backend, "g1")
    [welcome] = _send(conn, type="hello", rid=1, protocol=1, client="test", protocol_minor=minor)
    return conn, welcome


def _looks(layout, panels, t0, seconds=0.4, rate=90.0, source="eye"):
    """Samples fixating each panel in turn for `seconds`, rays only."""
    eye = np.array([0.0, 1.5, 0.0])
    d = panel_directions(layout, eye)
    rows, t = [], t0
    for p in panels:
        for _ in range(int(seconds * rate)):
            rows.append([t, source, 0.0, 1.5, 0.0, *map(float, d[p]), 1.0])
            t += 1 / rate
        t += 0.04
    return rows, t


def test_welcome_announces_gaze_to_v1_2_clients_only(backend):
    _, welcome = _connect(backend, minor=2)
    assert welcome["gaze"] == {"max_rate_hz": 120.0, "max_samples_per_batch": 256}
    assert "thompson+gaze" in welcome["policies"]
    _, old = _connect(backend, minor=1)
    assert "gaze" not in old


def test_gaze_of_a_grid_is_logged_and_feeds_a_gaze_policy(backend):
    from omokage.protocol.connection import Log
    conn, _ = _connect(backend)
    layout = Layout.grid()
    assert _send(conn, 1.0, type="layout", rid=2, **layout.to_wire()) == []
    [grid] = _send(conn, 1.0, type="start", rid=3, algorithm="pca", init="random", seed=1, policy="thompson+gaze")
    assert grid["policy"] == "thompson+gaze"
    rows, t = _looks(layout, [2, 5, 2, 7], 1.1)
    for k in range(0, len(rows), 30):
        assert _send(conn, rows[min(k + 29, len(rows) - 1)][0], type="gaze.batch", samples=rows[k:k + 30]) == []
    chosen = grid["items"][2]["id"]
    actions = _actions(conn, t, type="choose", rid=4, id=chosen)
    logs = [a.record for a in actions if isinstance(a, Log)]
    gaze = next(r for r in logs if r["event"] == "gaze")
    assert [f[0] for f in gaze["fixations"]] == [2, 5, 2, 7]
    assert gaze["source"] == "eye" and gaze["chosen"] == chosen and gaze["evidence"] is True
    assert gaze["fixation_count"][2] == 2 and gaze["revisits"][2] == 1 and gaze["last_panel"] == 7
    assert logs[-1]["event"] == "choose"     # the gaze record comes before the pick it preceded
    assert [e.kind for e in conn.session.events[-2:]] == ["gaze", "choose"]   # the evidence came before the pick


def test_a_policy_without_gaze_logs_it_but_takes_no_evidence(backend):
    conn, _ = _connect(backend)
    layout = Layout.grid()
    _send(conn, 1.0, type="layout", **layout.to_wire())
    [grid] = _send(conn, 1.0, type="start", rid=3, algorithm="pca", init="random", seed=1, policy="thompson")
    rows, t = _looks(layout, [1, 3], 1.1)
    _send(conn, t, type="gaze.batch", samples=rows[:200])
    actions = _actions(conn, t, type="choose", rid=4, id=grid["items"][0]["id"])
    assert any(getattr(a, "record", {}).get("event") == "gaze" for a in actions)     # logged all the same
    assert "gaze" not in [e.kind for e in conn.session.events]


def test_bad_samples_get_bad_field_with_a_count_and_the_good_ones_are_kept(backend):
    conn, _ = _connect(backend)
    [grid] = _send(conn, 1.0, type="start", rid=3, algorithm="pca", init="random", seed=1)
    good = [_s(1.1 + 0.01 * k, hit=[4, 0.5, 0.5]) for k in range(20)]
    bad = [_s(1.5, d=(0, 0, 2.0)), _s(1.0), "x"]
    [err] = _send(conn, 1.6, type="gaze.batch", rid=9, samples=good + bad)
    assert err["type"] == "error" and err["code"] == "bad_field" and err["rid"] == 9 and err["dropped"] == 3
    assert "1 not_unit" in err["message"] and "1 out_of_order" in err["message"] and "1 malformed" in err["message"]
    assert conn.gaze.totals["accepted"] == 20
    # the connection keeps working
    [pong] = _send(conn, 1.7, type="ping", rid=10, t=1.0)
    assert pong["type"] == "pong"


def test_a_client_over_the_rate_gets_overloaded_for_the_excess_only(backend):
    conn, _ = _connect(backend)
    _send(conn, 1.0, type="start", rid=3, algorithm="pca", init="random", seed=1)
    t = 1.0
    replies = []
    for k in range(4):   # 4 × 256 samples within 1 s: the 2 s burst is 256, then 120 per second
        batch = [_s(t + 0.001 * j, hit=[0, 0.5, 0.5]) for j in range(256)]
        t += 0.3
        replies += _send(conn, 1.0 + 0.25 * k, type="gaze.batch", samples=batch)
    assert replies and all(r["code"] == "overloaded" for r in replies)
    dropped = sum(r["dropped"] for r in replies)
    assert conn.gaze.totals["accepted"] + dropped == 4 * 256
    assert conn.gaze.totals["accepted"] <= 256 + 120 * 0.75 + 1
    # answered `overloaded`, yet taken: the store keeps it (its accepted samples are the raw gaze), not as a message
    # refused over the connection's message rate
    from omokage.protocol.connection import Send
    batch = [_s(t + 0.001 * j, hit=[0, 0.5, 0.5]) for j in range(256)]
    actions = conn.receive(msgpack.packb({"type": "gaze.batch", "samples": batch}), 2.0)
    assert [a.message["code"] for a in actions if isinstance(a, Send)] == ["overloaded"]
    assert conn.last_message is not None and not conn.refused_over_rate


def test_too_many_samples_or_a_bad_layout_are_refused_whole(backend):
    conn, _ = _connect(backend)
    [err] = _send(conn, 1.0, type="gaze.batch", rid=5, samples=[_s(1.0)] * 257)
    assert err["code"] == "too_large"
    [err] = _send(conn, 1.0, type="layout", rid=6, panels=[{"position": [0, 0, 0], "rotation": [0, 0, 0, 1],
                                                           "size": [0, 1]}])
    assert err["code"] == "bad_field" and "panels[0].size" in err["message"]
    [err] = _send(conn, 1.0, type="gaze.batch", rid=7, samples=[])
    assert err["code"] == "bad_field"


def test_samples_with_no_grid_on_screen_are_ignored_quietly(backend):
    conn, _ = _connect(backend)
    assert _send(conn, 1.0, type="gaze.batch", samples=[_s(0.9)]) == []
    assert conn.gaze.totals["ignored"] == 1


# --- the gaze term ---------------------------------------------------------------------------------------------------

def test_gaze_term_pulls_the_belief_towards_the_faces_looked_at(engine):
    from omokage.selection import Belief, GazeTerm
    space = engine.space("pca")
    shown = tuple(range(8))
    belief = Belief(space)
    belief.add(GazeTerm(shown, (6.0, 0, 0, 0, 0, 0, 0, 0.5)))
    p = belief.probabilities()
    d = space.unit_distances_from([0])[0]
    near0 = np.argsort(d)[:10]
    assert p[near0].mean() > 1.5 / space.n_items
    assert len(belief.hypotheses) == len(Belief(space).hypotheses)    # one row: no hypotheses added


def test_gaze_spread_evenly_says_nothing_and_gaze_on_the_target_finds_it(engine):
    from omokage.selection import Belief, GazeTerm
    space = engine.space("pca")
    flat = Belief(space)
    flat.add(GazeTerm(tuple(range(8)), (2.0,) * 8))
    assert np.allclose(flat.probabilities(), 1 / space.n_items)
    rng = np.random.default_rng(0)
    target = 17
    d = space.unit_distances_from([target])[0]
    belief, rand = Belief(space), Belief(space)
    for _ in range(8):
        shown = tuple(int(i) for i in rng.choice(space.n_items, 8, replace=False))
        w = np.exp(-d[list(shown)] / 0.3)
        belief.add(GazeTerm(shown, tuple(float(c) for c in rng.multinomial(12, w / w.sum()))))
        rand.add(GazeTerm(shown, tuple(float(c) for c in rng.multinomial(12, np.full(8, 1 / 8)))))
    assert belief.rank_of(target) <= 10 < rand.rank_of(target)


# --- fitting the gaze term from logs -----------------------------------------------------------------------------------

def _gaze_event_log(space, informativeness, path, users=30, seed=0):
    """Sessions with gaze, logged as the connection logs them (StepGaze.to_log): users look at faces near their
    target (in the engine's own distances) as much as `informativeness` says, pick the nearest, decide on it."""
    import json
    from omokage.gaze import GazeTracker
    rng = np.random.default_rng(seed)
    model = GazeModel(informativeness=informativeness)
    layout = Layout.grid()
    tracker = GazeTracker(max_rate_hz=1e9)
    tracker.set_layout(layout)
    n = space.n_items
    t0 = 1000.0
    with open(path, "w") as f:
        for u in range(users):
            target = int(rng.integers(n))
            d_all = space.unit_distances_from([target])[0]
            sid = f"s{u}"
            others = np.setdiff1d(np.arange(n), [target])
            f.write(json.dumps({"event": "start", "session_id": sid, "algorithm": "pca", "candidates": []}) + "\n")
            for step in range(3):
                ids = [int(i) for i in rng.choice(others, 9, replace=False)]
                d = d_all[ids]
                pick = int(np.argmin(d))
                rows, _ = render(rng, fixation_plan(rng, d, pick, model), layout, t0, model)
                tracker.begin_step(step + 1, ids, t0)
                tracker.ingest(rows, now=rows[-1][0])
                rec = tracker.end_step().to_log(t0)
                t0 = rows[-1][0] + 1
                f.write(json.dumps({"event": "gaze", "session_id": sid, "algorithm": "pca", "chosen": ids[pick],
                                    **rec}) + "\n")
            f.write(json.dumps({"event": "decide", "session_id": sid, "algorithm": "pca", "item": target}) + "\n")


def test_fit_user_model_fits_the_gaze_weight_from_logs(engine, tmp_path):
    from omokage.selection.user_model import fit_gaze, read_choice_records
    space = engine.space("pca")
    fitted = {}
    for name, g in (("unrelated", 0.0), ("informative", 1.0)):
        path = tmp_path / f"{name}.jsonl"
        _gaze_event_log(space, g, path)
        _, report = read_choice_records([path])
        assert 80 <= len(report.gaze_records) <= 90 and not report.problems   # grids looked only at the pick: none
        fitted[name] = fit_gaze(space, report.gaze_records)
    t, w, gain = fitted["informative"]
    assert gain > 0.3 and w > 0.1
    t0, w0, gain0 = fitted["unrelated"]
    # gaze unrelated to the target: the best the term can do is (almost) nothing
    assert gain0 < 0.05 and w0 < w / 3


# --- calibration -------------------------------------------------------------------------------------------------------

def _calibration_samples(distort, noise=0.3, seed=0, layout="calibration/nine-point.json"):
    from pathlib import Path
    from omokage.gaze.calibration import TargetSamples, direction, load_layout
    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(seed)
    out = []
    for t in load_layout(root / layout)["targets"]:
        true = np.array([t["yaw"], t["pitch"]], float)
        measured = distort(true) + rng.normal(0, noise, (60, 2))      # 1 s at 60 Hz
        out.append(TargetSamples(t["yaw"], t["pitch"], direction(measured)))
    return out


def test_calibration_recovers_a_known_distortion_to_half_a_degree(tmp_path):
    from omokage.gaze.calibration import ProfileStore, direction, quality, yaw_pitch
    M = np.array([[1.06, 0.04], [-0.03, 0.93]])
    off = np.array([1.8, -1.2])
    targets = _calibration_samples(lambda yp: M @ yp + off)
    raw = quality(__import__("omokage.gaze.calibration", fromlist=["Profile"]).Profile(), targets)
    store = ProfileStore(tmp_path / "profiles")
    profile, err = store.calibrate("p-7f3a", targets, device="quest-pro")
    assert err is None and raw[0] > 1.5
    assert profile.accuracy_deg < 0.5 and 0.2 < profile.precision_deg < 0.8
    # applied to fresh samples anywhere in the grid's area, the correction lands within half a degree
    rng = np.random.default_rng(1)
    true = rng.uniform([-15, -10], [15, 10], (200, 2))
    fixed = profile.apply(direction(true @ M.T + off))
    assert np.abs(yaw_pitch(fixed) - true).max() < 0.5
    # saved as JSON per participant, and read back
    again = store.load("p-7f3a")
    assert again.A == profile.A and (tmp_path / "profiles" / "p-7f3a.json").read_text().startswith("{")


def test_a_calibration_that_does_not_converge_reports_and_keeps_the_previous_profile(tmp_path):
    from omokage.gaze.calibration import ProfileStore
    store = ProfileStore(tmp_path / "profiles")
    good, err = store.calibrate("p1", _calibration_samples(lambda yp: yp + [1.0, 0.5]))
    assert err is None
    # too few targets, gaze all on one line, and a fit far too poor: each is reported, the good profile stays
    few = _calibration_samples(lambda yp: yp)[:3]
    line = _calibration_samples(lambda yp: np.array([yp[0], 0.0]))
    wild = _calibration_samples(lambda yp: yp + np.random.default_rng(int(abs(yp[0]) + abs(yp[1]))).normal(0, 8, 2))
    for bad, why in ((few, "need 4"), (line, "one line"), (wild, "accuracy")):
        kept, err = store.calibrate("p1", bad)
        assert err is not None and why in err, err
        assert kept.A == good.A and kept.b == good.b


def test_the_tracker_applies_the_calibration_to_incoming_samples():
    from omokage.gaze.calibration import Profile
    from omokage.gaze import GazeTracker
    layout = Layout.grid()
    eye = np.array([0.0, 1.5, 0.0])
    d = panel_directions(layout, eye)[4]
    off = np.array([[1.0, 0.0, 0.0]]) * math.sin(math.radians(8))     # ~8° to the right: off panel 4 ...
    bent = (d + off[0]) / np.linalg.norm(d + off[0])
    tracker = GazeTracker()
    tracker.set_layout(layout)
    tracker.begin_step(1, range(9), 0.0)
    tracker.profile = Profile(b=[-8.0, 0.0])                            # ... and corrected back onto it
    tracker.ingest([[0.01 * k, "eye", *map(float, eye), *map(float, bent), 1.0] for k in range(30)], now=0.5)
    step = tracker.end_step()     # the rays are cast when the grid's gaze is read
    assert [f.panel for f in step.fixations] == [4] and step.fixations[0].duration >= 0.25


def test_a_calibration_corrects_the_source_it_was_fitted_on_only():
    """An eye calibration corrects eye gaze, not head gaze (a head ray is the headset's forward direction: it has none
    of the eye tracker's error); a profile without a source (a headset's default) corrects every source that has no
    calibration of its own. (One profile corrected every source: after an eye calibration, head rays aimed at panel 4
    were bent off it.)"""
    from omokage.gaze.calibration import Profile
    from omokage.gaze import GazeTracker
    from omokage.gaze.samples import EYE
    layout = Layout.grid()
    eye = np.array([0.0, 1.5, 0.0])
    d = panel_directions(layout, eye)[4]
    off = np.array([1.0, 0.0, 0.0]) * math.sin(math.radians(8))
    bent = (d + off) / np.linalg.norm(d + off)                      # 8° right of panel 4's centre: off the panel

    def panels(source, ray, default=None):
        tracker = GazeTracker()
        tracker.set_layout(layout)
        tracker.begin_step(1, range(9), 0.0)
        tracker.set_calibration(EYE, Profile(b=[-8.0, 0.0], source="eye"))
        tracker.profile = default
        tracker.ingest([[0.01 * k, source, *map(float, eye), *map(float, ray), 1.0] for k in range(30)], now=1.0)
        return [f.panel for f in tracker.end_step().fixations]

    assert panels("eye", bent) == [4]                                # the eye's rays corrected onto panel 4
    assert panels("head", d) == [4]                                  # the head's rays left as they were
    assert panels("head", bent) != [4]
    assert panels("head", d, default=Profile(b=[0.0, 20.0])) != [4]  # a default for every source: the head gets it
    assert panels("eye", bent, default=Profile(b=[0.0, 20.0])) == [4]   # the eye keeps its own calibration


def test_rays_are_cast_against_the_layout_on_screen_when_they_came():
    """Rays are cast in one pass when the grid's gaze is read, not per batch; a layout sent mid-grid applies to the
    rays after it only: the ones before are cast against the layout they were aimed at."""
    from omokage.gaze import GazeTracker
    layout = Layout.grid()
    moved = Layout(layout.position + np.array([0.0, 5.0, 0.0]), layout.rotation, layout.size)   # 5 m up: missed
    eye = np.array([0.0, 1.5, 0.0])
    d = panel_directions(layout, eye)[4]
    tracker = GazeTracker()
    tracker.set_layout(layout)
    tracker.begin_step(1, range(9), 0.0)
    ray = [*map(float, eye), *map(float, d), 1.0]
    for b in range(3):                          # 3 batches of 10 rays at panel 4
        tracker.ingest([[0.01 * (10 * b + k), "eye", *ray] for k in range(10)], now=1.0)
    tracker.set_layout(moved)
    for b in range(3, 6):                       # the same rays, now at empty space
        tracker.ingest([[0.01 * (10 * b + k), "eye", *ray] for k in range(10)], now=1.0)
    step = tracker.end_step()
    dwell = step.stats.dwell_s
    assert 0.25 <= dwell[4] <= 0.32 and dwell.sum() == dwell[4]    # the first 30 rays only, all on panel 4
    assert not tracker.end_step().samples                          # read once: the buffer is emptied


# --- calibration over the protocol (v1.4) -----------------------------------------------------------------------------

_TRUE_FROM_MEASURED = (np.array([[1.06, 0.05], [-0.03, 0.93]]), np.array([1.8, -1.2]))   # true = A · measured + b


def _eye_on(yaw_pitch_true, rng, noise=0.3):
    """A distorted eye's ray when the person looks at (yaw, pitch): what the tracker measures."""
    from omokage.gaze.calibration import direction
    A, b = _TRUE_FROM_MEASURED
    measured = np.linalg.solve(A, np.asarray(yaw_pitch_true, float) - b) + rng.normal(0, noise, 2)
    return [float(x) for x in direction(measured)]


def _calibrate(conn, cal, t, targets=None, rng=None):
    """Look at each target for 0.4 s at 90 Hz (after 0.2 s to settle), stream it, and say when each was shown."""
    rng = rng or np.random.default_rng(0)
    shown = []
    for k, (yaw, pitch) in enumerate(cal["targets"]):
        if targets is not None and k not in targets:
            continue
        t += 0.2
        start = t
        rows = []
        for _ in range(36):
            rows.append([t, "eye", 0.0, 1.5, 0.0, *_eye_on((yaw, pitch), rng), 1.0])
            t += 1 / 90
        shown.append([k, start, t])
        assert _send(conn, t, type="gaze.batch", samples=rows) == []      # sent as they come, at 90 Hz
    return _send(conn, t + 0.1, type="calibrate.end", rid=9, shown=shown), t


def _calibrating_connection(backend, minor=4):
    from omokage.gaze.calibration import load_patterns
    from omokage.protocol.connection import ServerConnection
    conn = ServerConnection(backend, "c1", calibration=load_patterns())
    [welcome] = _send(conn, type="hello", rid=1, protocol=1, client="test", protocol_minor=minor)
    return conn, welcome


def test_welcome_offers_the_calibration_patterns_to_v1_4_clients_only(backend):
    _, welcome = _calibrating_connection(backend)
    assert welcome["gaze"]["calibration"] == ["five-point", "nine-point"]
    _, v1_3 = _calibrating_connection(backend, minor=3)
    assert v1_3["gaze"] == {"max_rate_hz": 120.0, "max_samples_per_batch": 256}
    conn, plain = _connect(backend, minor=4)           # a server without patterns offers none, and refuses
    assert "calibration" not in plain["gaze"]
    [err] = _send(conn, type="calibrate.begin", rid=2)
    assert err["code"] == "wrong_state" and "--calibration" in err["message"]


def test_a_calibration_over_the_protocol_recovers_the_distortion_and_corrects_the_grids_gaze(backend):
    from omokage.protocol.connection import Log
    conn, _ = _calibrating_connection(backend)
    [cal] = _send(conn, 1.0, type="calibrate.begin", rid=2)
    assert cal["type"] == "calibration" and cal["pattern"] == "nine-point" and len(cal["targets"]) == 9
    assert cal["targets"][0] == [-15.0, 10.0] and cal["settle_s"] > 0 and cal["dwell_s"] > 0
    [reply], t = _calibrate(conn, cal, 1.1)
    assert reply["type"] == "calibrated" and reply["rid"] == 9 and reply["targets"] == 9
    assert reply["accuracy_deg"] < 0.5 and reply["precision_deg"] < 1.5 and reply["saved"] is False
    # later samples are corrected: the eye looking 4.5° left of panel 4's centre (inside it: its edge is at 5.7°)
    # measures 6.0° left, off the panel; corrected, it lands on panel 4
    layout = Layout.grid()
    _send(conn, t, type="layout", rid=3, **layout.to_wire())
    [grid] = _send(conn, t, type="start", rid=4, algorithm="pca", init="random", seed=1)
    true_yp = (-4.5, 0.0)
    rng = np.random.default_rng(1)
    rows = [[t + 0.01 + k / 90, "eye", 0.0, 1.5, 0.0, *_eye_on(true_yp, rng, noise=0.1), 1.0] for k in range(45)]
    _send(conn, t + 1, type="gaze.batch", samples=rows)
    logged = [a.record for a in _actions(conn, t + 1, type="choose", rid=5, id=grid["items"][0]["id"])
              if isinstance(a, Log) and a.record["event"] == "gaze"]
    assert logged and max(range(9), key=lambda k: logged[0]["dwell_s"][k]) == 4


def test_a_calibration_that_fails_says_why_and_keeps_the_previous_correction(backend):
    conn, _ = _calibrating_connection(backend)
    [cal] = _send(conn, 1.0, type="calibrate.begin", rid=2)
    [ok], t = _calibrate(conn, cal, 1.1)
    before = conn.gaze.source_profiles[EYE]
    assert before.source == "eye"
    [cal] = _send(conn, t, type="calibrate.begin", rid=6, pattern="five-point")
    assert cal["pattern"] == "five-point" and len(cal["targets"]) == 5
    [err], t = _calibrate(conn, cal, t + 0.1, targets={0, 1})
    assert err["code"] == "calibration_failed" and "need 4" in err["message"] and "previous" in err["message"]
    assert conn.gaze.source_profiles[EYE] is before
    [again] = _send(conn, t, type="calibrate.end", rid=7, shown=[[0, t, t + 1]])
    assert again["code"] == "wrong_state"                  # one end per begin
    [bad] = _send(conn, t, type="calibrate.begin", rid=8, pattern="one-point")
    assert bad["code"] == "bad_field" and "five-point, nine-point" in bad["message"]
    [cal] = _send(conn, t, type="calibrate.begin", rid=9)
    [bad] = _send(conn, t, type="calibrate.end", rid=12, shown=[[0, t, t + 1], [9, t, t + 1]])
    assert bad["code"] == "bad_field" and "targets 0 to 8" in bad["message"]
    assert conn.gaze.calibrating                            # still open: a corrected calibrate.end may follow
    [bad] = _send(conn, t, type="calibrate.end", rid=10, shown=[[0, t + 1, t]])
    assert bad["code"] == "bad_field" and "start < end" in bad["message"]
    [bad] = _send(conn, t, type="calibrate.end", rid=11, shown=[[0, t, t + 1]] * 65)
    assert bad["code"] == "too_large"


def test_a_grid_shown_ends_a_calibration_left_running(backend):
    """A client that starts a selection without ending its calibration gets its gaze back on the grids."""
    from omokage.protocol.connection import Log
    conn, _ = _calibrating_connection(backend)
    [cal] = _send(conn, 1.0, type="calibrate.begin", rid=2)
    layout = Layout.grid()
    _send(conn, 1.0, type="layout", rid=3, **layout.to_wire())
    [grid] = _send(conn, 1.1, type="start", rid=4, algorithm="pca", init="random", seed=1)
    rows, t = _looks(layout, [3], 1.2)
    _send(conn, t, type="gaze.batch", samples=rows)
    logged = [a.record for a in _actions(conn, t, type="choose", rid=5, id=grid["items"][0]["id"])
              if isinstance(a, Log) and a.record["event"] == "gaze"]
    assert logged and max(range(9), key=lambda k: logged[0]["dwell_s"][k]) == 3     # the grid got the gaze
    [err] = _send(conn, t, type="calibrate.end", rid=6, shown=[[0, 1.2, t]])
    assert err["code"] == "wrong_state" and "grid shown since ends a calibration" in err["message"]


# --- v1.5: a headset's default correction, cancelling a calibration ------------------------------------------------

def test_a_device_named_in_hello_gets_its_default_correction_until_a_calibration(backend, tmp_path):
    """hello.device applies calibration/devices/NAME.json; welcome.gaze.profile says so (v1.5 clients only); an unknown
    model is accepted and left uncorrected; a calibration replaces the device's default."""
    import json
    from omokage.gaze.calibration import load_device_profiles, load_patterns
    from omokage.protocol.connection import Log, ServerConnection
    repo_devices = load_device_profiles()
    assert {"quest-pro", "quest-3"} <= set(repo_devices)
    (tmp_path / "devices").mkdir()
    shifted = {"A": [[1.0, 0.0], [0.0, 1.0]], "b": [2.0, -1.0], "device": "test-visor"}
    (tmp_path / "devices" / "test-visor.json").write_text(json.dumps(shifted))
    devices = load_device_profiles(tmp_path)

    def connect(minor=5, **hello):
        conn = ServerConnection(backend, "d1", calibration=load_patterns(), device_profiles=devices)
        actions = conn.receive(msgpack.packb({"type": "hello", "rid": 1, "protocol": 1, "client": "test",
                                              "protocol_minor": minor, **hello}), 0.0)
        welcome = next(a.message for a in actions if not isinstance(a, Log))
        record = next(a.record for a in actions if isinstance(a, Log))
        return conn, welcome, record

    conn, welcome, record = connect(device="test-visor")
    assert welcome["gaze"]["profile"] == "device" and record["device"] == "test-visor"
    assert conn.gaze.profile.b == [2.0, -1.0]
    _, welcome, record = connect(device="visor-9000")          # unknown: accepted, logged, uncorrected
    assert welcome["gaze"]["profile"] == "none" and record["device"] == "visor-9000"
    _, welcome, _ = connect()
    assert welcome["gaze"]["profile"] == "none"
    _, v1_4, _ = connect(minor=4, device="test-visor")          # an older client is not told
    assert "profile" not in v1_4["gaze"] and "ideal" not in v1_4
    conn, _, _ = connect(device="test-visor")
    [cal] = _send(conn, 1.0, type="calibrate.begin", rid=2)
    [reply], _ = _calibrate(conn, cal, 1.1)
    assert reply["type"] == "calibrated" and conn.gaze.source_profiles[EYE].b != [2.0, -1.0]
    assert conn.gaze.profile.b == [2.0, -1.0]          # the device's default still corrects head gaze
    bad = tmp_path / "broken"
    (bad / "devices").mkdir(parents=True)
    (bad / "devices" / "x.json").write_text('{"A": [[1, 0]], "b": [0, 0]}')
    with pytest.raises(Exception, match="x.json"):
        load_device_profiles(bad)


def test_calibrate_cancel_drops_the_samples_and_keeps_the_correction(backend):
    from omokage.protocol.connection import Log
    conn, _ = _calibrating_connection(backend, minor=5)
    [err] = _send(conn, 1.0, type="calibrate.cancel", rid=2)
    assert err["code"] == "wrong_state" and "nothing to cancel" in err["message"]
    [cal] = _send(conn, 1.0, type="calibrate.begin", rid=3)
    [ok], t = _calibrate(conn, cal, 1.1)
    kept = conn.gaze.source_profiles[EYE]
    [cal] = _send(conn, t, type="calibrate.begin", rid=4)
    rng = np.random.default_rng(2)
    rows = [[t + 0.01 + k / 90, "eye", 0.0, 1.5, 0.0, *_eye_on((0.0, 0.0), rng), 1.0] for k in range(20)]
    _send(conn, t + 0.3, type="gaze.batch", samples=rows)
    actions = _actions(conn, t + 0.4, type="calibrate.cancel", rid=5)
    [reply] = [a.message for a in actions if not isinstance(a, Log)]
    [record] = [a.record for a in actions if isinstance(a, Log)]
    assert reply == {"type": "calibration.cancelled", "rid": 5, "samples": 20}
    assert record["event"] == "calibration" and record["cancelled"] is True and record["samples"] == 20
    assert conn.gaze.source_profiles[EYE] is kept and not conn.gaze.calibrating
    [err] = _send(conn, t + 0.5, type="calibrate.end", rid=6, shown=[[0, t, t + 0.2]])
    assert err["code"] == "wrong_state"
    # gaze after the cancel goes to grids again
    layout = Layout.grid()
    _send(conn, t + 1, type="layout", rid=7, **layout.to_wire())
    [grid] = _send(conn, t + 1, type="start", rid=8, algorithm="pca", init="random", seed=1)
    rows, t2 = _looks(layout, [5], t + 1.1)
    _send(conn, t2, type="gaze.batch", samples=rows)
    logged = [a.record for a in _actions(conn, t2, type="choose", rid=9, id=grid["items"][0]["id"])
              if isinstance(a, Log) and a.record["event"] == "gaze"]
    assert logged and sum(logged[0]["dwell_s"]) > 0
