import numpy as np
import pytest

from omokage.selection import (ChosenPlusNearest, NotACandidate, SelectionSession, SessionState, WrongState)


def run_until_exhausted(session: SelectionSession, pick_rng):
    step = session.start()
    steps = [step]
    while True:
        choice = int(pick_rng.choice(step.ids))
        step = session.choose(choice)
        steps.append(step)
        if len(step.candidates) < 2:
            return steps


@pytest.mark.parametrize("algorithm", ["raw", "pca", "nmf", "ae"])
def test_no_item_shown_twice_and_chosen_first(engine, algorithm):
    session = engine.new_session(algorithm, seed=3)
    steps = run_until_exhausted(session, np.random.default_rng(0))
    seen = []
    for prev, step in zip(steps, steps[1:]):
        assert step.candidates[0].distance == 0.0
        assert step.candidates[0].id in prev.ids
        seen.extend(step.ids[1:])  # the chosen one was already shown
    seen.extend(steps[0].ids)
    assert len(seen) == len(set(seen)), "an item was shown twice"
    assert len(set(seen)) == len(engine.catalog)  # the loop walks the whole catalog before running out


def test_next_candidates_are_nearest_unseen(engine):
    session = engine.new_session("pca", seed=1)
    first = session.start()
    step = session.choose(first.ids[4])
    idx = engine.space("pca").index
    feats = idx.features
    d = np.linalg.norm(feats - feats[first.ids[4]], axis=1)
    d[list(first.ids)] = np.inf
    assert list(step.ids[1:]) == list(np.argsort(d, kind="stable")[:8])
    assert all(a.distance <= b.distance for a, b in zip(step.candidates[1:], step.candidates[2:]))


def test_decide_returns_the_item_and_its_url(engine):
    session = engine.new_session("nmf", seed=5)
    step = session.choose(session.start().ids[0])
    decision = session.decide(step.ids[3])
    assert decision.item == step.ids[3] and decision.step == 2
    assert engine.catalog.items[decision.item].url.startswith("https://")
    assert session.state is SessionState.DECIDED
    with pytest.raises(WrongState):
        session.choose(step.ids[0])


def test_a_seed_makes_a_session_repeatable(engine):
    def walk(seed):
        s = engine.new_session("pca", seed=seed)
        ids = [s.start().ids]
        for k in (2, 5, 0):
            ids.append(s.choose(ids[-1][k]).ids)
        return ids
    assert walk(11) == walk(11)
    assert walk(11)[0] != walk(12)[0]


def test_wrong_state_and_unknown_ids(engine):
    s = engine.new_session("pca", seed=0)
    with pytest.raises(WrongState):
        s.choose(1)
    step = s.start()
    with pytest.raises(WrongState):
        s.start()
    outsider = next(i for i in range(len(engine.catalog)) if i not in step.ids)
    with pytest.raises(NotACandidate):
        s.choose(outsider)
    with pytest.raises(NotACandidate):
        s.decide(outsider)


def test_image_start_returns_the_nearest_faces(engine):
    rgb = np.asarray(engine.catalog.pixels[17])
    vector, recon = engine.project("pca", rgb)
    assert recon.shape == rgb.shape and recon.dtype == np.uint8
    step = engine.new_session("pca", seed=0).start(vector)
    assert step.ids[0] == 17 and step.candidates[0].distance == pytest.approx(0, abs=1e-2)
    with pytest.raises(ValueError):
        engine.new_session("pca").start(np.full(vector.shape, np.nan))


def test_every_transition_is_an_event_the_policy_sees(engine):
    class Recording(ChosenPlusNearest):
        def __init__(self):
            self.seen = []

        def observe(self, event):
            self.seen.append(event)

    policy = Recording()
    s = engine.new_session("pca", seed=2, policy=policy)
    step = s.start(at=1.0)
    step = s.choose(step.ids[1], at=2.0)
    s.decide(step.ids[0], at=3.0)
    assert [e.kind for e in s.events] == ["start", "choose", "decide"]
    assert s.events == policy.seen
    assert [e.at for e in s.events] == [1.0, 2.0, 3.0]
    assert s.events[1].candidates == step.ids and s.events[2].item == step.ids[0]
