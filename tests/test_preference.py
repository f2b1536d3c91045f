"""The preference model: a belief over faces, its evidence terms, the display policies and the fitted user model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omokage.selection import (DEFAULT_POLICY, POLICIES, SERVED_POLICIES, Belief, ChoiceTerm, NotACandidate, QueryTerm,
                               RatingTerm, SelectionSession, SessionError, SkipTerm, UnknownPolicy, WrongState,
                               make_policy)
from omokage.selection.user_model import UserModel, fit_temperature, read_choice_records

BELIEF_POLICIES = [n for n in POLICIES if n not in ("study", "random")]


def softmax_pick(d, temperature, rng):
    if temperature <= 0:
        return int(np.argmin(d))
    w = np.exp(-(d - d.min()) / temperature)
    return int(rng.choice(len(d), p=w / w.sum()))


def hunt(space, policy, target, temperature, rng, seed=0, max_steps=40):
    """A user who judges faces by the engine's own distances: returns (session, step found or None)."""
    session = SelectionSession(space, seed=seed, policy=policy)
    step = session.start()
    dist = space.unit_distances_from([target])[0]
    while step.step <= max_steps:
        if target in step.ids:
            session.decide(target)
            return session, step.step
        ids = list(step.ids)
        step = session.choose(ids[softmax_pick(dist[ids], temperature, rng)])
    return session, None


@pytest.mark.parametrize("name", ["infogain", "top", "thompson", "cover"])
def test_posterior_concentrates_on_the_target_for_a_noiseless_user(engine, name):
    space = engine.space("pca")
    ranks, found = [], 0
    for target in range(0, 160, 16):
        policy = make_policy(name, temperature=0.1)
        session = SelectionSession(space, seed=target, policy=policy)
        step = session.start()
        dist = space.unit_distances_from([target])[0]
        for _ in range(4):
            if target in step.ids:
                break
            ids = list(step.ids)
            step = session.choose(ids[int(np.argmin(dist[ids]))])
        found += target in set().union(*[s.ids for s in session.history])
        ranks.append(policy.belief.rank_of(target) if target not in step.ids else 1)
    # 4 grids of 160 faces; a belief that learned nothing would rank the target ~80th on average
    assert found >= 7, f"{name}: found {found}/10 within 5 grids"
    assert np.median(ranks) <= 5, f"{name}: ranks of the targets {ranks}"


def test_belief_beats_the_study_policy_for_a_user_who_sees_like_the_engine(engine):
    space = engine.space("pca")
    steps = {"study": [], DEFAULT_POLICY: []}
    for target in range(0, 160, 4):
        for name in steps:
            _, s = hunt(space, make_policy(name), target, 0.05, np.random.default_rng([target, 1]), seed=target,
                        max_steps=12)
            steps[name].append(s if s is not None else 13)
    assert np.mean(steps[DEFAULT_POLICY]) < np.mean(steps["study"]), steps


def test_choice_term_favours_faces_near_the_pick(engine):
    space = engine.space("pca")
    belief = Belief(space)
    shown = tuple(range(9))
    belief.add(ChoiceTerm(shown, 4, temperature=0.2))
    p = belief.probabilities()
    d = space.unit_distances_from([4])[0]
    near, far = np.argsort(d)[1:6], np.argsort(d)[-5:]
    assert p[near].mean() > 3 * p[far].mean()
    assert np.isclose(p.sum(), 1.0)


def test_skip_lowers_the_shown_faces_and_their_look_alikes(engine):
    space = engine.space("pca")
    belief = Belief(space)
    shown = tuple(range(20, 29))
    before = belief.probabilities().copy()
    belief.add(SkipTerm(shown))
    after = belief.probabilities()
    assert (after[list(shown)] < before[list(shown)]).all()
    d = space.unit_distances_from(list(shown)).min(axis=0)
    unseen = np.setdiff1d(np.arange(space.n_items), shown)
    near, far = unseen[np.argsort(d[unseen])[:10]], unseen[np.argsort(d[unseen])[-10:]]
    assert after[near].mean() < after[far].mean()


def test_skip_in_a_session(engine):
    session = SelectionSession(engine.space("pca"), seed=1, policy=make_policy(DEFAULT_POLICY))
    with pytest.raises(WrongState):
        session.skip()
    first = session.start()
    before = session.policy.belief.probabilities()[list(first.ids)].copy()
    second = session.skip()
    assert not set(first.ids) & set(second.ids) and len(second.ids) == 9
    assert (session.policy.belief.probabilities()[list(first.ids)] < before).all()
    assert session.events[-1].kind == "skip" and session.events[-1].detail["skipped"] == list(first.ids)
    session.decide(second.ids[0])
    with pytest.raises(WrongState):
        session.skip()


def test_skip_when_every_face_was_shown_is_refused(engine):
    session = SelectionSession(engine.space("pca"), seed=4, policy=make_policy(DEFAULT_POLICY))
    step = session.start()
    while len(session.shown) < engine.space("pca").n_items:
        before = set(session.shown)
        step = session.skip()
        assert step.ids and not set(step.ids) & before
    with pytest.raises(WrongState, match="every face"):
        session.skip()
    session.decide(step.ids[0])


def test_rating_pulls_towards_a_liked_face(engine):
    space = engine.space("pca")
    belief = Belief(space)
    belief.add(RatingTerm(7, 5))
    p = belief.probabilities()
    d = space.unit_distances_from([7])[0]
    assert p[np.argsort(d)[:5]].mean() > p[np.argsort(d)[-20:]].mean()
    disliked = Belief(space)
    disliked.add(RatingTerm(7, 1))
    assert disliked.probabilities()[7] < 1 / space.n_items
    with pytest.raises(ValueError):
        RatingTerm(7, 6)


def test_rate_in_a_session(engine):
    session = SelectionSession(engine.space("nmf"), seed=2, policy=make_policy("thompson"))
    step = session.start()
    session.rate(step.ids[3], 5)
    assert session.events[-1].kind == "rate" and session.events[-1].detail["rating"] == 5
    with pytest.raises(SessionError):
        session.rate(step.ids[3], 0)
    unseen = next(i for i in range(160) if i not in step.ids)
    with pytest.raises(NotACandidate):
        session.rate(unseen, 4)


def test_rerating_a_face_replaces_its_rating(engine):
    def belief_after(ratings):
        session = SelectionSession(engine.space("pca"), seed=2, policy=make_policy("thompson"))
        face = session.start().ids[3]
        for r in ratings:
            session.rate(face, r)
        return session.policy.belief.probabilities()
    assert np.allclose(belief_after([5, 5, 5]), belief_after([5]))
    assert np.allclose(belief_after([5, 1]), belief_after([1]))
    assert np.allclose(belief_after([4, 3]), belief_after([3]))
    assert not np.allclose(belief_after([3]), belief_after([]))   # 3 stars say something too: near, not very near


def test_a_rating_is_a_likelihood_over_the_five_stars(engine):
    """The ordered logit: for every target, the five ratings' probabilities sum to 1 (a likelihood, not a weight);
    5 stars put the target among the rated face's nearest few percent, 1 star outside its nearest half; the lapse
    keeps any one rating from ruling a face out; and under a noisy user's hypothesis the rating says nothing."""
    from omokage.selection.belief import UserHypothesis
    space = engine.space("pca")
    face = 7
    rows = np.stack([RatingTerm(face, r).log_likelihood(space) for r in range(1, 6)]).astype(np.float64)
    assert np.allclose(np.exp(rows).sum(axis=0), 1.0, atol=1e-4)
    order = np.argsort(space.unit_distances_from([face])[0])
    near, far = order[: max(2, len(order) // 20)], order[len(order) // 2:]
    p5, p1 = np.exp(rows[4]), np.exp(rows[0])
    assert p5[near].mean() > 10 * p5[far].mean()
    assert p1[far].mean() > 3 * p1[near].mean()
    lapse = RatingTerm(face, 5).lapse
    assert p5.min() >= lapse * p5.mean() * 0.99      # at worst the lapse's share of the base rate
    hyps = [UserHypothesis(0.05), UserHypothesis(1.35)]
    both = RatingTerm(face, 5).log_likelihoods_for(space, hyps)
    assert np.allclose(both[0], rows[4], atol=1e-5)
    assert np.ptp(both[1]) == 0                       # the noisy user's hypothesis: silent


def test_five_stars_for_the_target_find_it(engine):
    """A consistent user who rates the faces they pick by how near they are to the target (in the engine's own
    space: the belief's model of a rating made true) makes the target more probable than picks alone."""
    space = engine.space("pca")
    rng = np.random.default_rng(0)
    found = {False: [], True: []}   # log P(target) after the picks
    for target in rng.choice(space.n_items, 12, replace=False):
        d_target = space.unit_distances_from([int(target)])[0]
        for rate in (False, True):
            session = SelectionSession(space, seed=int(target), policy=make_policy("thompson"))
            step = session.start()
            for _ in range(2):
                pick = min(step.ids, key=lambda i: d_target[i])
                if rate:
                    share = (d_target < d_target[pick]).mean()
                    session.rate(pick, 5 if share < 0.01 else 4 if share < 0.05 else 3 if share < 0.2 else
                                 2 if share < 0.5 else 1)
                step = session.choose(pick)
            found[rate].append(np.log(session.policy.belief.probabilities()[int(target)]))
    gain = np.subtract(found[True], found[False])
    assert gain.mean() > 0.5 and (gain > 0).mean() >= 0.75, gain


def test_query_term_puts_the_nearest_faces_first(engine):
    space = engine.space("pca")
    session = SelectionSession(space, seed=0, policy=make_policy(DEFAULT_POLICY))
    query = space.features[42] + 0.01
    step = session.start(query)
    assert step.ids[0] == 42
    nearest = [n.id for n in space.index.search(query, 9)]
    assert list(step.ids) == nearest


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_keeps_the_session_rules(engine, name):
    """Chosen face first, no face twice until the catalog runs out, probabilities in [0, 1]."""
    session = SelectionSession(engine.space("pca"), seed=5, policy=make_policy(name))
    step = session.start()
    seen = list(step.ids)
    rng = np.random.default_rng(1)
    for k in range(12):
        if k % 4 == 3:
            step = session.skip()
            seen += step.ids
        else:
            chosen = int(rng.choice(step.ids))
            step = session.choose(chosen)
            assert step.ids[0] == chosen
            seen += step.ids[1:]
        for c in step.candidates:
            assert c.probability is None or 0.0 <= c.probability <= 1.0
        assert len(step.ids) == 9, f"a short grid while {160 - len(seen)} faces are unseen"
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("name", ["infogain", "thompson", "top", "cover"])
def test_a_sharp_fitted_temperature_keeps_grids_full_and_finite(engine, name):
    """A fitted temperature of 0.01 makes the belief sharp enough to underflow float32: grids stay full, no NaN."""
    import warnings
    space = engine.space("pca")
    session = SelectionSession(space, seed=3, policy=make_policy(name, temperatures=(0.01,)))
    target = 77
    dist = space.unit_distances_from([target])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        step = session.start()
        for k in range(14):
            ids = [i for i in step.ids if i != target] or list(step.ids)
            step = session.choose(ids[int(np.argmax(dist[ids]))])   # away from the target: the belief goes wrong
            assert len(step.ids) == 9, f"step {step.step}: {len(step.ids)} faces"
            assert all(np.isfinite(c.probability) for c in step.candidates)
        session.skip()


def test_evidence_impossible_under_a_hypothesis_rules_it_out(engine):
    class Impossible:
        """-inf for every face under the sharpest temperature only."""
        def log_likelihoods_for(self, space, hypotheses):
            return np.array([np.full(space.n_items, -np.inf if h.temperature == hypotheses[0].temperature else -1.0)
                             for h in hypotheses])
    belief = Belief(engine.space("pca"))
    belief.add(Impossible())
    w = belief.hypothesis_weights()
    assert w[0] == 0.0 and np.isclose(w[1:].sum(), 1.0)

    class RulesOutEverything:
        def log_likelihood(self, space):
            return np.full(space.n_items, -np.inf)
    before = belief.probabilities().copy()
    added = belief.terms_added
    belief.add(RulesOutEverything())
    assert np.array_equal(belief.probabilities(), before) and belief.terms_added == added


def test_mutual_information_matches_the_definition():
    from omokage.selection.policies import _mutual_information
    rng = np.random.default_rng(0)
    shown, cand = rng.random((4, 9)), rng.random((6, 9))
    cand[2] = 0.0          # a face no sampled target would pick
    w = rng.random(9)
    w /= w.sum()
    for c in range(6):
        e = np.vstack([shown, cand[c]])                       # (k + 1, S) pick weights
        p = e / e.sum(axis=0)                                 # P(pick j | target s)
        marg = p @ w
        h = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()    # noqa: E731
        expected = h(marg) - sum(w[s] * h(p[:, s]) for s in range(9))
        assert np.isclose(_mutual_information(shown, cand, w)[c], expected)


def _large_space(n=5000, dim=12, seed=0):
    """A space above the exact index's pairwise limit (4,096 items): distances are computed per request."""
    from omokage.index import ExactIndex
    from omokage.selection import FeatureSpace
    x = (np.random.default_rng(seed).normal(size=(n, dim)) * np.linspace(3, 0.5, dim)).astype(np.float32)
    space = FeatureSpace("large", ExactIndex(x), dim)
    assert space.index.pairwise is None
    return space, x.astype(np.float64)


def test_distances_above_the_pairwise_limit_match_exact_ones():
    space, x = _large_space()
    ids = [0, 17, 4999, 2500]
    exact = np.sqrt(((x[ids][:, None, :] - x[None, :, :]) ** 2).sum(-1)) / space.distance_unit
    assert np.allclose(space.unit_distances_from(ids), exact, atol=2e-3)
    assert np.allclose(space.unit_squared_distances_from(ids), exact ** 2, atol=2e-3)
    assert np.allclose(space.unit_distances_between(np.array(ids), np.arange(50)), exact[:, :50], atol=2e-3)


@pytest.mark.parametrize("temperatures", [(0.05, 0.15, 0.45, 1.35), (1.0, 0.5, 0.25, 0.0625), (0.07, 0.2, 1.0),
                                          (0.3,)])
def test_choice_term_is_the_log_softmax_at_every_temperature(temperatures):
    """The term raises a warmer temperature's exponentials to a power for a colder one 2-4 times smaller (the default
    grid is a factor 3 apart): each row must still be the plain log softmax, whatever the grid."""
    space, x = _large_space()
    shown = (3, 40, 900, 1200, 2000, 2600, 3100, 4000, 4800)
    term = ChoiceTerm(shown, 900)
    got = term.log_likelihoods(space, temperatures)
    d = np.sqrt(((x[list(shown)][:, None, :] - x[None, :, :]) ** 2).sum(-1)) / space.distance_unit
    for row, t in zip(got, temperatures):
        a = -d / t
        expected = a[2] - (a.max(axis=0) + np.log(np.exp(a - a.max(axis=0)).sum(axis=0)))
        assert np.allclose(row, expected, atol=2e-3 / t), t


def test_policy_registry():
    assert DEFAULT_POLICY in SERVED_POLICIES and SERVED_POLICIES[0] == DEFAULT_POLICY
    # every served name is a registered policy, or one with the gaze suffix (docs/gaze.md)
    assert {p.removesuffix("+gaze") for p in SERVED_POLICIES} <= set(POLICIES)
    with pytest.raises(UnknownPolicy, match="choose from"):
        make_policy("oracle")
    assert np.allclose(make_policy("infogain", temperature=0.6).temperatures, (0.2, 0.6, 1.8))
    make_policy("study", temperature=0.7)   # parameters a policy does not take are ignored


def _simulated_event_log(space, temperature, users, path, seed=0):
    """Sessions of a softmax user (in the engine's own distances), written as the server logs them."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for u in range(users):
            target = int(rng.integers(space.n_items))
            session, found = hunt(space, make_policy("thompson"), target, temperature, rng, seed=u, max_steps=30)
            for ev in session.events:
                f.write(json.dumps({"event": ev.kind, "session_id": f"s{u}", "at": u, "step": ev.step,
                                    "algorithm": "pca", "item": ev.item, "candidates": list(ev.candidates)}) + "\n")


def test_fitted_temperature_recovers_the_generating_one(engine, tmp_path):
    space = engine.space("pca")
    log = tmp_path / "events.jsonl"
    _simulated_event_log(space, 0.3, 250, log)
    records, report = read_choice_records([log])
    assert not report.problems and len(records) > 500
    t, ll = fit_temperature(space, records)
    assert abs(t - 0.3) / 0.3 < 0.10, t


def test_a_pick_made_with_the_decided_face_on_screen_is_not_fitted(tmp_path):
    """Choosing a face to see more like it and then deciding on it says nothing about the search noise."""
    log = tmp_path / "events.jsonl"
    lines = [{"event": "start", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [1, 2, 3]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 2, "candidates": [2, 4, 5]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 5, "candidates": [5, 6, 7]},
             {"event": "decide", "session_id": "s", "algorithm": "pca", "item": 5, "candidates": []}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, report = read_choice_records([log])
    assert [(r.shown, r.chosen, r.target) for r in records] == [((1, 2, 3), 2, 5)]
    assert not report.problems


def test_corrupt_event_lines_are_reported_and_skipped(engine, tmp_path):
    space = engine.space("pca")
    log = tmp_path / "events.jsonl"
    _simulated_event_log(space, 0.3, 20, log)
    good, _ = read_choice_records([log])
    with open(log, "ab") as f:
        f.write(b'{"event": "choose", "session_id": "x"\n')     # truncated
        f.write(b"\xff\xfe not utf-8\n")
        f.write(b"[1, 2, 3]\n")
    records, report = read_choice_records([log, tmp_path / "missing.jsonl"])
    assert len(records) == len(good)
    assert len(report.problems) == 4 and any(":%d:" % (sum(1 for _ in open(log, "rb"))) in p
                                             for p in report.problems)


def test_fit_user_model_cli(engine, tiny_catalog, tiny_models, tmp_path):
    import shutil
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    log = tmp_path / "events.jsonl"
    _simulated_event_log(engine.space("pca"), 0.3, 60, log)
    with open(log, "ab") as f:
        f.write(b"garbage\n")
    r = subprocess.run([sys.executable, "-m", "omokage", "fit", "user-model", str(log), "--catalog",
                        str(tiny_catalog), "--out", str(models)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "skipped" in r.stderr and ":%d:" % (sum(1 for _ in open(log))) in r.stderr
    um = UserModel.load_latest(models)
    assert um is not None and 0.2 < um.temperatures["pca"] < 0.45
    from omokage.engine import Engine
    served = Engine.open(tiny_catalog, models, algorithms=["pca"])   # what `omokage serve` does
    assert served.policy_params("pca") == {"temperature": um.temperatures["pca"]}
    assert UserModel.load_latest(models, catalog_fingerprint="another catalog") is None
    r = subprocess.run([sys.executable, "-m", "omokage", "fit", "user-model", str(tmp_path / "none.jsonl"),
                        "--catalog", str(tiny_catalog), "--out", str(models)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such event log" in r.stderr


def test_fit_user_model_reads_only_the_selections_of_its_catalog(engine, tiny_catalog, tmp_path):
    """var/events/ holds the logs of every catalog served (the demo's and each `serve`'s): a selection's `start` names
    its catalog, and the fit reads only those of the catalog it is given (a newcomer's fit took a 40-face catalog's
    picks as the demo's faces, silently). A log from before starts named their catalog is checked by its ids."""
    import asyncio

    from omokage.catalog.store import Catalog
    from omokage.client import OmokageClient
    from tests.conftest import RunningServer
    log = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=log)
    try:
        async def go():
            async with await OmokageClient.connect(srv.url) as c:
                for seed in (1, 2):
                    grid = await c.start("pca", seed=seed)
                    grid = await c.choose(grid.items[3].id)
                    await c.decide(grid.items[5].id)
        asyncio.run(go())
    finally:
        srv.stop()
    with open(log, "a") as f:         # what a server logs when a background fit ends: no selection's record
        f.write(json.dumps({"event": "model_served", "algorithm": "nmf", "at": 1.0}) + "\n")
    fingerprint = Catalog(tiny_catalog).fingerprint()
    starts = [json.loads(x) for x in log.read_text().splitlines() if '"start"' in x]
    assert [r["catalog"] for r in starts if r["event"] == "start"] == [fingerprint] * 2
    mine, report = read_choice_records([log], catalog=fingerprint, n_items=len(engine.catalog))
    assert report.decided_sessions == 2 and report.other_catalog == 0 and len(mine) >= 1
    assert not report.problems        # the server's own records (no session) are not problems
    theirs, report = read_choice_records([log], catalog="0123456789abcdef", n_items=len(engine.catalog))
    assert theirs == [] and report.decided_sessions == 0 and report.other_catalog == 2
    old = tmp_path / "old.jsonl"      # no `catalog` in its start: a face id past this catalog's end gives it away
    lines = [{"event": "start", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [1, 2, 999]},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 2, "candidates": [2, 4, 5]},
             {"event": "decide", "session_id": "s", "algorithm": "pca", "item": 5, "candidates": []}]
    old.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, report = read_choice_records([old], catalog=fingerprint, n_items=len(engine.catalog))
    assert records == [] and report.decided_sessions == 0 and "does not have" in report.problems[0]
    records, report = read_choice_records([old])          # without a catalog to check against: read as before
    assert len(records) == 1


def test_query_term_rejects_nothing_finite(engine):
    belief = Belief(engine.space("pca"))
    belief.add(QueryTerm(engine.space("pca").features[0]))
    assert belief.rank_of(0) == 1


def test_a_served_session_logs_what_fit_user_model_reads(engine, tmp_path):
    """Real server, real client, real event file: the picks it logs are the records the user model fits on."""
    import asyncio

    from omokage.client import OmokageClient
    from tests.conftest import RunningServer
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    grids = []
    try:
        async def session():
            async with await OmokageClient.connect(srv.url) as client:
                grid = await client.start("pca", seed=3)
                assert grid.policy == DEFAULT_POLICY
                grids.append([i.id for i in grid.items])
                for k in (2, 5):
                    grid = await client.choose(grids[-1][k])
                    grids.append([i.id for i in grid.items])
                await client.skip()
                grid = await client.skip()
                grids.append([i.id for i in grid.items])
                await client.decide(grids[-1][0])
        asyncio.run(session())
    finally:
        srv.stop()
    records, report = read_choice_records([events])
    assert not report.problems and report.decided_sessions == 1
    assert [(r.shown, r.chosen) for r in records] == [(tuple(grids[0]), grids[0][2]), (tuple(grids[1]), grids[1][5])]
    assert all(r.target == grids[-1][0] and r.algorithm == "pca" for r in records)


def test_bench_policy_writes_its_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "omokage", "bench", "policy", "--sizes", "400", "--sessions", "2",
                        "--policies", "infogain,study", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "policy.json").read_text())["rows"]
    assert [(row["items"], row["policy"]) for row in rows] == [(400, "infogain"), (400, "study")]
    assert all(row["n"] == 16 and row["p50_ms"] > 0 for row in rows)
    assert "| 400 | infogain |" in (tmp_path / "policy.md").read_text()


# --- the learned metric (fit user-model: the per-dimension distance people choose by) ---------------------------------

def _metric_picks(x, weights, n_picks, temperature, seed):
    from omokage.selection.user_model import ChoiceRecord
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n_picks):
        grid = rng.choice(len(x), 10, replace=False)
        target, shown = int(grid[0]), grid[1:]
        d = np.sqrt((((x[shown] - x[target]) ** 2) * weights).sum(axis=1))
        p = np.exp(-(d - d.min()) / temperature)
        pick = int(shown[rng.choice(9, p=p / p.sum())])
        records.append(ChoiceRecord("pca", tuple(int(i) for i in shown), pick, target))
    return records


def test_fit_metric_recovers_which_axes_people_look_at():
    from omokage.selection.user_model import fit_metric
    x = np.random.default_rng(0).standard_normal((400, 6)).astype(np.float32)
    truth = np.array([4.0, 4.0, 1.0, 1.0, 0.25, 0.25])
    scales, gain = fit_metric(x, _metric_picks(x, truth, 1500, 0.3, 1))
    assert scales is not None and gain > 0.02
    w = scales.astype(np.float64) ** 2
    assert w[:2].min() > 2 * w[2:4].max() and w[2:4].min() > 2 * w[4:].max()   # the order and the spread come back
    assert np.allclose(np.log(w / w.mean()), np.log(truth / truth.mean()), atol=0.7)


def test_fit_metric_leaves_an_isotropic_space_alone():
    from omokage.selection.user_model import fit_metric
    x = np.random.default_rng(2).standard_normal((400, 6)).astype(np.float32)
    scales, gain = fit_metric(x, _metric_picks(x, np.ones(6), 1500, 0.3, 3))
    assert scales is None or (scales.max() / scales.min()) ** 2 < 1.6   # nothing to learn: (nearly) isotropic


def test_a_user_model_metric_reshapes_the_served_space(tiny_catalog, tiny_models, tmp_path):
    import shutil

    from omokage.catalog.store import Catalog
    from omokage.engine import Engine
    models = tmp_path / "models"
    shutil.copytree(tiny_models / "pca", models / "pca")
    plain = Engine.open(tiny_catalog, models)
    dim = plain.space("pca").dim
    scales = np.linspace(0.5, 2.0, dim).astype(np.float32)
    UserModel({"pca": 0.2}, metric={"pca": {"scales": [float(v) for v in scales], "picks": 500, "gain_nats": 0.1}},
              catalog_fingerprint=Catalog(tiny_catalog).fingerprint()).save(models)
    engine = Engine.open(tiny_catalog, models)
    assert np.allclose(engine.space("pca").features, plain.space("pca").features * scales, atol=1e-5)
    assert np.allclose(engine.models["pca"].features, plain.space("pca").features, atol=1e-4)
    face = engine.catalog.pixels[7]
    vector, _ = engine.project("pca", face)            # a query lands in the same, reweighted coordinates
    assert np.allclose(vector, plain.project("pca", face)[0] * scales, atol=1e-4)
    assert engine.query_image("pca", face, k=1).neighbours[0].id == 7
    assert engine.policy_params("pca")["temperature"] == 0.2


# --- ratings: how a catalog's users use the five stars (fit user-model) -------------------------------------------------

def _rating_records(space, offset, scale, n, seed=0, lapse=None):
    """Ratings drawn from RatingTerm's own model (with its lapse) for random rated faces and targets."""
    from omokage.selection.belief import (RATING_LAPSE, rating_base_rates, rating_percentile_logits,
                                          rating_probability)
    from omokage.selection.user_model import RatingRecord
    lapse = RATING_LAPSE if lapse is None else lapse
    rng = np.random.default_rng(seed)
    base = rating_base_rates(scale=scale, offset=offset)
    out = []
    for _ in range(n):
        item, target = (int(i) for i in rng.choice(space.n_items, 2, replace=False))
        z = rating_percentile_logits(space.unit_distances_from([item])[0])[target]
        p = base if rng.random() < lapse else np.array([rating_probability(np.array([z]), r, scale=scale,
                                                                          offset=offset)[0] for r in range(1, 6)])
        out.append(RatingRecord("pca", item, 1 + int(rng.choice(5, p=p / p.sum())), target))
    return out


@pytest.mark.parametrize("offset,scale", [(0.8, 0.6), (-0.7, 1.5)])
def test_fit_rating_recovers_how_users_use_the_stars(engine, offset, scale):
    from omokage.selection.user_model import fit_rating
    space = engine.space("pca")
    fit = fit_rating(space, _rating_records(space, offset, scale, 2000))
    assert abs(fit["offset"] - offset) < 0.3 and abs(np.log(fit["scale"] / scale)) < 0.3, fit
    assert fit["informative"] and fit["gain_nats"] > 0 and fit["ratings"] == 2000
    # the lapse and the bands' softness trade off (soft bands look like lapses): the fitted model predicts fresh
    # ratings as well as the one that drew them
    from omokage.selection.user_model import _rating_targets_z, rating_log_likelihood
    z, r = _rating_targets_z(space, _rating_records(space, offset, scale, 2000, seed=2))
    assert (rating_log_likelihood(z, r, fit["offset"], fit["scale"], fit["lapse"])
            > rating_log_likelihood(z, r, offset, scale, 0.2) - 0.01)
    careless = fit_rating(space, _rating_records(space, 0.0, 1.0, 2000, seed=1, lapse=0.6))   # most stars say nothing
    assert abs(careless["lapse"] - 0.6) < 0.12 and careless["informative"], careless


def test_fitted_rating_parameters_reach_the_session(engine, tmp_path):
    """fit_user_model keeps them per model; the served policy gets them (policy_params) and its session's ratings
    use them; they survive save and load."""
    from omokage.selection.user_model import fit_user_model
    space = engine.space("pca")
    model = fit_user_model(engine, [], rating_records=_rating_records(space, 0.8, 0.6, 400))
    assert set(model.rating) == {"pca"} and model.rating["pca"]["ratings"] == 400
    saved = UserModel.load_latest(Path(model.save(tmp_path)).parent.parent)
    assert saved.rating == model.rating
    params = saved.policy_params("pca")
    assert params == {"rating_offset": model.rating["pca"]["offset"], "rating_scale": model.rating["pca"]["scale"],
                      "rating_lapse": model.rating["pca"]["lapse"]}
    session = SelectionSession(space, seed=1, policy=make_policy("thompson", **params))
    step = session.start()
    session.rate(step.ids[2], 4)
    fitted = session.policy.belief.probabilities()
    plain = SelectionSession(space, seed=1, policy=make_policy("thompson"))
    plain.start()
    plain.rate(step.ids[2], 4)
    assert not np.allclose(fitted, plain.policy.belief.probabilities())
    assert make_policy("study", **params) is not None     # a policy without a belief ignores them


def test_ratings_that_say_nothing_about_the_target_fit_to_a_term_that_says_nothing(engine):
    """Users whose stars do not depend on the target (each star as often, whatever the face; from a review): the fit
    says so (held out, no better than the stars' frequencies) and the term built from it leaves the belief alone."""
    from omokage.selection.user_model import RatingRecord, fit_rating
    space = engine.space("pca")
    rng = np.random.default_rng(3)
    recs = [RatingRecord("pca", int(i), int(r), int(t)) for i, t, r in
            zip(rng.integers(0, space.n_items, 2000), rng.integers(0, space.n_items, 2000), rng.integers(1, 6, 2000))]
    fit = fit_rating(space, recs)
    assert not fit["informative"] and fit["lapse"] == 1.0, fit
    for r in range(1, 6):
        term = RatingTerm(7, r, offset=fit["offset"], scale=fit["scale"], lapse=fit["lapse"])
        assert np.ptp(term.log_likelihood(space)) < 1e-5


def test_ratings_still_count_with_a_fitted_temperature(engine):
    """A fitted temperature T gives the hypotheses T/3, T and 3T: the ratings are silent under the noisiest only, so a
    noisy catalog (T = 0.9) still hears them (with a fixed cut at 0.3 every hypothesis was silent; from a review)."""
    space = engine.space("pca")
    params = {"temperature": 0.9, "rating_offset": 0.3, "rating_scale": 0.8}

    def after(ratings):
        s = SelectionSession(space, seed=11, policy=make_policy("thompson", **params))
        step = s.start()
        for k, r in ratings:
            s.rate(step.ids[k], r)
        return s.policy.belief.probabilities()
    assert np.abs(after([]) - after([(2, 5), (4, 1)])).max() > 1e-4


def test_a_served_session_logs_the_ratings_fit_user_model_reads(engine, tmp_path):
    """Real server and client: the latest rating of each face, less those a back took away, with the decided face."""
    import asyncio

    from omokage.client import OmokageClient
    from tests.conftest import RunningServer
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    try:
        async def session():
            async with await OmokageClient.connect(srv.url) as client:
                g1 = await client.start("pca", seed=3)
                ids1 = [i.id for i in g1.items]
                await client.rate(ids1[1], 2)
                await client.rate(ids1[1], 4)                   # replaces the 2
                g2 = await client.choose(ids1[5])
                ids2 = [i.id for i in g2.items]
                await client.rate(ids2[3], 5)                   # on the grid the back leaves: forgotten
                await client.back()
                await client.rate(ids1[0], 1)
                g = await client.choose(ids1[5])
                await client.decide(g.items[2].id)
                return ids1, g.items[2].id
        ids1, decided = asyncio.run(session())
    finally:
        srv.stop()
    records, report = read_choice_records([events])
    assert not report.problems
    assert sorted((r.item, r.rating, r.target, r.algorithm) for r in report.rating_records) == sorted(
        [(ids1[1], 4, decided, "pca"), (ids1[0], 1, decided, "pca")])


def test_a_back_gives_a_face_re_rated_on_the_grid_it_leaves_its_earlier_rating(engine, tmp_path):
    """Face A rated 2, picked (it leads the next grid), rated 5 there, then Back: the belief goes back to A = 2, and so
    does what fit user-model reads (it dropped A; from a review)."""
    import asyncio

    from omokage.client import OmokageClient
    from tests.conftest import RunningServer
    events = tmp_path / "events.jsonl"
    srv = RunningServer(engine, events_path=events)
    try:
        async def script():
            async with await OmokageClient.connect(srv.url) as client:
                ids1 = [i.id for i in (await client.start("pca", seed=3)).items]
                a = ids1[1]
                await client.rate(a, 2)
                assert (await client.choose(a)).items[0].id == a
                await client.rate(a, 5)
                await client.back()
                g = await client.choose(ids1[4])
                await client.decide(g.items[2].id)
                return a
        a = asyncio.run(script())
    finally:
        srv.stop()
    session = SelectionSession(engine.space("pca"), seed=3, policy=make_policy("thompson"))
    session.start()
    session.rate(a, 2)
    session.choose(a)
    session.rate(a, 5)
    session.back()
    assert session.ratings == {a: 2}
    records, report = read_choice_records([events])
    assert not report.problems
    assert [(r.item, r.rating) for r in report.rating_records] == [(a, 2)]


def test_a_damaged_rate_record_is_reported_not_a_crash_of_the_fit(engine, tmp_path):
    """A `rate` line naming a face never shown (a damaged log whose start names the right catalog) is reported and
    skipped, not passed to the fit (IndexError; from a review); `rating: true` is not a 1."""
    from omokage.selection.user_model import fit_user_model
    space = engine.space("pca")
    lines = [{"event": "start", "session_id": "s", "algorithm": "pca", "item": None, "candidates": [1, 2, 3],
              "catalog": engine.catalog.fingerprint()},
             {"event": "rate", "session_id": "s", "algorithm": "pca", "item": 10_000_000, "rating": 4},
             {"event": "rate", "session_id": "s", "algorithm": "pca", "item": 2, "rating": True},
             {"event": "rate", "session_id": "s", "algorithm": "pca", "item": 3, "rating": 4},
             {"event": "choose", "session_id": "s", "algorithm": "pca", "item": 2, "candidates": [2, 4, 5]},
             {"event": "decide", "session_id": "s", "algorithm": "pca", "item": 5, "candidates": []}]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records, report = read_choice_records([log], catalog=engine.catalog.fingerprint(), n_items=space.n_items)
    assert [(r.item, r.rating) for r in report.rating_records] == [(3, 4)]
    assert len(report.problems) == 2 and "not shown" in report.problems[0] and "1-5" in report.problems[1]
    fit_user_model(engine, records, rating_records=report.rating_records, min_ratings=1)
