"""The choice benchmark: simulated users hunting a target face in the real selection loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omokage.bench import choice
from omokage.selection import ChosenPlusNearest, SelectionSession, SessionState


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """~200 generated faces at 64 px with a fitted PCA, and the benchmark's view of them."""
    from omokage.catalog.generate import generate_catalog
    from omokage.engine import Engine
    from omokage.features.fitting import fit_models
    root = tmp_path_factory.mktemp("choice")
    generate_catalog(root / "catalog", count=200, seed=1, image_size=64, progress=False)
    fit_models(root / "catalog", root / "models", ["pca"], n_components=30, progress=False)
    engine = Engine.open(root / "catalog", root / "models")
    return choice.generated_data(engine)


def test_vectorised_attribute_distance_matches_the_reference(small):
    from omokage.bench.perceptual import AttributeDistances
    from omokage.catalog.generate import attribute_distance
    attrs = [item.attributes for item in small.engine.catalog.items]
    dist = AttributeDistances(attrs, check_pairs=0)
    for t in (0, 17, 199):
        row = dist.row(t)
        ref = np.array([attribute_distance(attrs[t], a) if j != t else 0.0 for j, a in enumerate(attrs)])
        np.testing.assert_allclose(row, ref, atol=1e-9)
    # the benchmark's matrix is that distance in median units: symmetric, zero on the diagonal, median 1
    D = small.user_distances
    np.testing.assert_allclose(D, D.T, atol=1e-12)
    assert np.all(np.diag(D) == 0)
    assert np.median(D[~np.eye(len(D), dtype=bool)]) == pytest.approx(1.0)


def test_temperature_zero_picks_the_closest_face():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = rng.random(9)
        assert choice.simulated_pick(d, 0.0, rng) == int(np.argmin(d))
        assert choice.simulated_pick(d, 1e-9, rng) == int(np.argmin(d))   # the limit T -> 0


def test_pick_follows_the_softmax():
    rng = np.random.default_rng(1)
    d = np.array([0.0, 0.5, 3.0])
    picks = np.bincount([choice.simulated_pick(d, 0.5, rng) for _ in range(20000)], minlength=3) / 20000
    expected = np.exp(-d / 0.5) / np.exp(-d / 0.5).sum()
    np.testing.assert_allclose(picks, expected, atol=0.015)
    assert picks[0] < 0.8   # a noisy user does not always take the closest


def _hunt(data, target, max_steps, seed=3):
    session = SelectionSession(data.engine.space("pca"), seed=seed, policy=ChosenPlusNearest())
    found = choice.simulate_user(session, data.groups[target], data.groups, data.user_distances[target], 0.0,
                                 max_steps, np.random.default_rng(0))
    return session, found


def test_the_hunt_stops_on_the_grid_that_shows_the_target(small):
    n = len(small.groups)
    outcomes = []
    for target in range(0, n, 7):
        session, found = _hunt(small, target, max_steps=n)
        grids = [step.ids for step in session.history]
        assert found == len(grids), "the hunt went on after the target was shown (or stopped before)"
        assert target in grids[-1] and all(target not in g for g in grids[:-1])
        assert session.state is SessionState.DECIDED and session.decision.item == target
        outcomes.append(found)
    assert max(outcomes) > 1   # not every target sat in the first grid

    # at the step limit the hunt ends unfound, without deciding
    first = SelectionSession(small.engine.space("pca"), seed=3).start().ids
    target = next(i for i in range(n) if i not in first)
    session, found = _hunt(small, target, max_steps=1)
    assert found is None and len(session.history) == 1 and session.state is SessionState.BROWSING
    # a target in the first grid is found at step 1
    session, found = _hunt(small, first[4], max_steps=10)
    assert found == 1 and session.decision.item == first[4]


def _figures(report):
    return json.dumps({k: report[k] for k in ("results", "comparisons")}, sort_keys=True)


def test_deterministic_for_a_seed(small):
    a = choice.benchmark(small, users=30, max_steps=6, temperature=0.1, seed=5, progress=False)
    b = choice.benchmark(small, users=30, max_steps=6, temperature=0.1, seed=5, progress=False)
    c = choice.benchmark(small, users=30, max_steps=6, temperature=0.1, seed=6, progress=False)
    assert _figures(a) == _figures(b)
    assert _figures(a) != _figures(c)
    assert set(a["results"]) == {"random", "image"} and set(a["results"]["random"]) == {"pca", choice.FLOOR}


def test_pca_beats_the_random_floor(small):
    report = choice.benchmark(small, users=200, max_steps=10, temperature=0.05, seed=0, starts=("random",),
                              progress=False)
    res = report["results"]["random"]
    pca5, floor5 = res["pca"]["success"][4], res[choice.FLOOR]["success"][4]
    # the floor shows 9 + 4 x 8 = 41 distinct faces of 200 in 5 steps: about 20%
    assert 0.1 < floor5["rate"] < 0.32
    diff = next(d for d in report["comparisons"]["random"]["vs_floor"]["pca"] if d["steps"] == 5)
    assert diff["difference"] >= 0.15 and diff["lo"] > 0.05, (pca5, floor5, diff)
    assert pca5["lo"] > floor5["hi"]


def test_report_files_are_written(small, tmp_path):
    report = choice.benchmark(small, users=20, max_steps=5, temperature=0.1, seed=0, progress=False,
                              command="omokage bench choice (test)")
    paths = choice.write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["config"]["users"] == 20 and data["results"]["image"]["pca"]["users"] == 20
    curve = data["results"]["random"]["pca"]["success"]
    assert [c["steps"] for c in curve] == [1, 2, 3, 4, 5]
    assert all(c["lo"] <= c["rate"] <= c["hi"] for c in curve)
    assert all(a["rate"] <= b["rate"] for a, b in zip(curve, curve[1:]))
    md = paths["markdown"].read_text()
    assert "| pca |" in md and f"| {choice.FLOOR} |" in md and "found within 3 steps" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wilson_interval():
    assert choice.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert choice.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_missing_real_dataset_is_skipped_cleanly(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(choice, "shared_data_dirs", lambda: [tmp_path / "nowhere"])
    assert choice.run(users=5, dataset="anime-holoen20", out=tmp_path / "out", home=tmp_path / "home",
                      progress=False) == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


def test_image_descriptor_is_a_distance():
    from omokage.bench.perceptual import ImageDescriptor, colour_histogram
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    images.append(np.full((48, 48, 3), (200, 40, 40), np.uint8))
    h = colour_histogram(images[-1])
    assert h.sum() == pytest.approx(1.0) and h.max() == pytest.approx(1.0)   # one hue bin
    D = ImageDescriptor(images).matrix()
    np.testing.assert_allclose(D, D.T, atol=1e-12)
    assert np.all(np.diag(D) == 0) and np.all(D[~np.eye(4, dtype=bool)] > 0)


def test_noiseless_user_always_takes_the_closest_face(small):
    report = choice.benchmark(small, users=15, max_steps=6, temperature=0.0, seed=2, starts=("random",),
                              progress=False)
    assert report["results"]["random"]["pca"]["closest_pick_rate"] == 1.0
    noisy = choice.benchmark(small, users=15, max_steps=6, temperature=1.0, seed=2, starts=("random",),
                             progress=False)
    assert noisy["results"]["random"]["pca"]["closest_pick_rate"] < 0.6
