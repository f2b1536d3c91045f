"""The choice benchmark: simulated users hunting a target face in the real selection loop."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from omokage.bench import choice
from omokage.errors import UserError
from omokage.selection import (DEFAULT_POLICY, POLICIES, ChosenPlusNearest, SelectionSession, SessionState,
                               make_policy)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """200 generated faces at 64 px with PCA and NMF fitted, and the benchmark's view of them."""
    from omokage.catalog.generate import generate_catalog
    from omokage.engine import Engine
    from omokage.features.fitting import fit_models
    root = tmp_path_factory.mktemp("choice")
    generate_catalog(root / "catalog", count=200, seed=1, image_size=64, progress=False)
    fit_models(root / "catalog", root / "models", ["pca", "nmf"], n_components=30, progress=False)
    engine = Engine.open(root / "catalog", root / "models", algorithms=["pca", "nmf"])
    return choice.generated_data(engine)


# --- the simulated user ---------------------------------------------------------------------------------------------

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


def _hunt(data, target, max_steps, seed=3, policy=None, **kw):
    session = SelectionSession(data.engine.space("pca"), seed=seed, policy=policy or ChosenPlusNearest())
    hunt = choice.simulate_user(session, data.groups[target], data.groups, data.user_distances[target], 0.0,
                                max_steps, np.random.default_rng(0), **kw)
    return session, hunt


def test_the_hunt_stops_on_the_grid_that_shows_the_target(small):
    n = len(small.groups)
    outcomes = []
    for target in range(0, n, 7):
        session, hunt = _hunt(small, target, max_steps=n)
        grids = [step.ids for step in session.history]
        assert hunt.found == len(grids), "the hunt went on after the target was shown (or stopped before)"
        assert target in grids[-1] and all(target not in g for g in grids[:-1])
        assert session.state is SessionState.DECIDED and session.decision.item == target
        outcomes.append(hunt.found)
    assert max(outcomes) > 1   # not every target sat in the first grid

    # at the step limit the hunt ends unfound, without deciding
    first = SelectionSession(small.engine.space("pca"), seed=3).start().ids
    target = next(i for i in range(n) if i not in first)
    session, hunt = _hunt(small, target, max_steps=1)
    assert hunt.found is None and len(session.history) == 1 and session.state is SessionState.BROWSING
    # a target in the first grid is found at step 1
    session, hunt = _hunt(small, first[4], max_steps=10)
    assert hunt.found == 1 and session.decision.item == first[4]


def test_settling_is_the_first_grid_with_a_face_within_delta(small):
    delta = choice.settle_threshold(small)["delta"]
    settled_earlier = 0
    for target in range(3, 200, 11):
        session, hunt = _hunt(small, target, max_steps=30, settle_delta=delta)
        D = small.user_distances[target]
        first = next(s.step for s in session.history if D[list(s.ids)].min() <= delta)
        assert hunt.settled == first
        if hunt.found is not None:
            assert hunt.settled <= hunt.found
            settled_earlier += hunt.settled < hunt.found
    assert settled_earlier > 0   # the settle rule is not just the exact-target rule


def test_delta_is_derived_so_that_about_one_percent_is_within_it(small):
    s = choice.settle_threshold(small, 0.01)
    D, other = small.user_distances, ~np.eye(200, dtype=bool)
    assert np.mean(D[other] <= s["delta"]) == pytest.approx(0.01, abs=0.002)
    assert s["mean_settle_set_own_identity"] == 1.0 and 2.5 <= s["mean_settle_set"] <= 3.5   # itself + ~2 of 199
    assert choice.settle_threshold(small, 0.05)["delta"] > s["delta"]


def test_the_user_says_none_of_these_below_the_skip_threshold(small):
    target = 50
    # nothing is ever closer than a tiny threshold: every step after the first is a skip, never a choice
    session, hunt = _hunt(small, target, max_steps=6, policy=make_policy("study"), skip_below=1e-9)
    kinds = [e.kind for e in session.events]
    assert hunt.picks == 0 and "choose" not in kinds
    assert hunt.skips == kinds.count("skip") == len(session.history) - 1 >= 1
    # every face is closer than a huge one: the user always picks
    session, hunt = _hunt(small, target, max_steps=6, policy=make_policy("study"), skip_below=1e9)
    assert hunt.skips == 0 and "skip" not in [e.kind for e in session.events] and hunt.picks >= 1


# --- arms ---------------------------------------------------------------------------------------------------------------

def test_arms_are_policy_x_model_plus_the_floor():
    arms = choice.select_arms(["study", "infogain"], ["pca", "raw"])
    assert [a.name for a in arms] == ["study/pca", "study/raw", "infogain/pca", "infogain/raw", choice.FLOOR]
    assert arms[-1].policy == "random" and not arms[-1].image_start
    default = choice.select_arms(None, ["pca"])
    assert {a.policy for a in default[:-1]} == set(POLICIES) - {"random"} and DEFAULT_POLICY in POLICIES
    assert [a.name for a in choice.select_arms(["random"], ["pca"])] == [choice.FLOOR]   # random is the floor
    with pytest.raises(UserError, match="unknown policy 'nope'|unknown policy nope"):
        choice.select_arms(["nope"], ["pca"])
    with pytest.raises(UserError, match="unknown model"):
        choice.check_models(["pca", "nope"])


def test_the_report_holds_exactly_the_selected_arms_paired(small):
    arms = choice.select_arms(["study", "thompson"], ["nmf", "pca"])
    report = choice.benchmark(small, arms, users=24, max_steps=6, temperatures=(0, 0.3), seed=5, progress=False,
                              resamples=200)
    rows = {(r["start"], r["temperature"], r["arm"]) for r in report["results"]}
    assert rows == {(s, t, a.name) for s in ("random", "image") for t in (0.0, 0.3) for a in arms}
    assert report["config"]["policies"] == ["study", "thompson"] and report["config"]["models"] == ["nmf", "pca"]
    floor = {(r["start"], r["temperature"]): r for r in report["results"] if r["arm"] == choice.FLOOR}
    # the floor ignores the image: its image start is its random start
    assert floor[("image", 0.3)]["curve"] == floor[("random", 0.3)]["curve"]


def _figures(report):
    return json.dumps([{k: r[k] for k in ("arm", "start", "temperature", "curve", "settle", "vs_floor")}
                       for r in report["results"]], sort_keys=True)


def test_deterministic_for_a_seed_and_the_same_with_two_workers(small):
    arms = choice.select_arms(["study", "cover"], ["pca"])
    kw = dict(users=30, max_steps=6, temperatures=(0.1,), progress=False, resamples=200)
    a = choice.benchmark(small, arms, seed=5, **kw)
    b = choice.benchmark(small, arms, seed=5, workers=2, **kw)
    c = choice.benchmark(small, arms, seed=6, **kw)
    assert _figures(a) == _figures(b)
    assert _figures(a) != _figures(c)


def test_the_study_policy_beats_the_random_floor(small):
    report = choice.benchmark(small, choice.select_arms(["study"], ["pca"]), users=200, max_steps=10,
                              temperatures=(0.05,), seed=0, starts=("random",), progress=False, resamples=500)
    res = {r["arm"]: r for r in report["results"]}
    pca5, floor5 = res["study/pca"]["found_within"]["5"], res[choice.FLOOR]["found_within"]["5"]
    # the floor shows 9 + 4 x 8 = 41 distinct faces of 200 in 5 steps: about 20%
    assert 0.1 < floor5["rate"] < 0.32
    diff = res["study/pca"]["vs_floor"]["5"]
    assert diff["difference"] >= 0.15 and diff["lo"] > 0.05 and diff["significant"], (pca5, floor5, diff)


def test_noiseless_user_always_takes_the_closest_face(small):
    arms = choice.select_arms(["study"], ["pca"])
    report = choice.benchmark(small, arms, users=15, max_steps=6, temperatures=(0.0, 1.0), seed=2,
                              starts=("random",), progress=False, resamples=100)
    by = {(r["temperature"], r["arm"]): r for r in report["results"]}
    assert by[(0.0, "study/pca")]["closest_pick_rate"] == 1.0
    assert by[(1.0, "study/pca")]["closest_pick_rate"] < 0.6


# --- statistics ---------------------------------------------------------------------------------------------------------

def test_holm_adjustment_on_a_known_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06
    np.testing.assert_allclose(choice.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(choice.holm([0.5, 0.6]), [1.0, 1.0])   # capped at 1
    assert choice.holm([]).size == 0


def test_the_cluster_bootstrap_resamples_identities():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(10), 30)             # 10 identities, 30 users each
    outcome = np.repeat(rng.random(10) < 0.5, 30).astype(float)   # users of one identity succeed together
    W = choice.cluster_bootstrap_weights(clusters, 2000, np.random.default_rng(1))
    # within a resample, an identity's users are drawn (count of that identity) x 30 times
    for g in range(10):
        assert np.all(W[:, clusters == g].sum(axis=1) % 30 == 0)
    plain = choice.cluster_bootstrap_weights(np.arange(300), 2000, np.random.default_rng(1))
    assert np.all(plain.sum(axis=1) == 300)

    def width(w):
        boot = choice.weighted_rates(w, outcome[:, None])[:, 0]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return hi - lo
    # correlated users: the honest interval is about sqrt(30) times wider than one that treats them as independent
    assert width(W) > 3 * width(plain)
    assert width(W) == pytest.approx(2 * 1.96 * np.sqrt(outcome.mean() * (1 - outcome.mean()) / 10), rel=0.3)
    # independent users: about the same (two stages count the within-identity noise twice: up to sqrt(2) wider)
    indep = rng.random(300) < 0.5
    wi = [np.ptp(np.percentile(choice.weighted_rates(w, indep[:, None].astype(float))[:, 0], [2.5, 97.5]))
          for w in (W, plain)]
    assert 0.85 < wi[0] / wi[1] < 1.65


def test_gaze_intervals_resample_identities_like_the_rest_of_the_report():
    """Users hunting faces of one character are not independent: the gaze comparison's interval resamples identities
    (then users), as every other interval of the report does, and is wider for it when outcomes cluster."""
    rng = np.random.default_rng(0)
    identity = np.repeat(np.arange(10), 20)                        # 200 users, 10 identities
    found_with = np.where(rng.random(10)[identity] < 0.5, 3, 11).astype(float)   # the gaze arm: by identity
    found_without = np.full(200, 6.0)
    arms = [choice.Arm("thompson+gaze/pca", "thompson+gaze", "pca"), choice.Arm("thompson/pca", "thompson", "pca")]
    sim = {"arms": arms, "starts": ["random"], "temperatures": [0.1],
           "found": {("random", 0.1, "thompson+gaze/pca"): found_with, ("random", 0.1, "thompson/pca"): found_without},
           "settled": {("random", 0.1, "thompson+gaze/pca"): found_with,
                       ("random", 0.1, "thompson/pca"): found_without}}
    width = lambda rows: rows[0]["found"]["within_5"]["interval"][1] - rows[0]["found"]["within_5"]["interval"][0]  # noqa: E731
    by_user = choice.gaze_comparison(sim, 10, resamples=500)
    by_identity = choice.gaze_comparison(sim, 10, resamples=500, clusters=identity)
    assert width(by_identity) > 2 * width(by_user)


def test_weighted_median_and_bootstrap_p():
    x = np.array([1.0, 2.0, 3.0, np.inf])
    assert choice.lower_median(x) == 2.0
    W = np.array([[0, 0, 1, 5], [3, 0, 0, 0]])
    assert list(choice.weighted_median(W, x)) == [np.inf, 1.0]
    assert choice.bootstrap_p(0.0, np.zeros(10)) == 1.0
    assert choice.bootstrap_p(0.2, np.random.default_rng(0).normal(0.2, 0.05, 5000)) < 1e-3


def test_wilson_interval():
    assert choice.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert choice.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


# --- reports ------------------------------------------------------------------------------------------------------------

def test_choice_json_has_the_required_keys(small, tmp_path):
    arms = choice.select_arms(["study", DEFAULT_POLICY], ["pca"])
    report = choice.benchmark(small, arms, users=20, max_steps=10, temperatures=(0, 0.1), seed=0, progress=False,
                              command="omokage bench choice (test)", resamples=200, skip_below=2.0)
    paths = choice.write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["default_policy"] == DEFAULT_POLICY
    assert data["config"]["temperatures"] == [0.0, 0.1] and data["config"]["skip_below"] == 2.0
    assert data["config"]["settle"]["delta"] > 0
    for r in data["results"]:
        assert {"policy", "model", "start", "temperature", "found_within", "median_steps", "settle"} <= set(r)
        assert set(r["found_within"]) == {"3", "5", "10"}
        for c in r["found_within"].values():
            assert set(c) == {"rate", "lo", "hi"} and c["lo"] <= c["rate"] <= c["hi"]
        assert set(r["settle"]["within"]) == {"3", "5", "10"} and "median_steps" in r["settle"]
        assert all(r["settle"]["within"][k]["rate"] >= r["found_within"][k]["rate"] for k in ("3", "5", "10"))
        curve = [c["rate"] for c in r["curve"]]
        assert curve == sorted(curve) and len(curve) == 10
        if r["arm"] != choice.FLOOR:
            assert r["model"] == "pca" and {"difference", "lo", "hi", "p", "p_holm"} <= set(r["vs_floor"]["5"])
    floor = [r for r in data["results"] if r["arm"] == choice.FLOOR]
    assert floor and all(r["policy"] == "random" and r["model"] is None for r in floor)
    pr = data["primary_comparison"]
    assert pr["run"] and pr["arm"] == f"{DEFAULT_POLICY}/pca" and pr["start"] == "random" and pr["steps"] == 5
    assert data["holm"]["comparisons"] == 2 * 2 * 2   # 2 arms x 2 starts x 2 temperatures
    md = paths["markdown"].read_text()
    assert "Primary comparison" in md and "## Random start, T = 0.1" in md and "| study/pca |" in md
    assert "Holm" in md and "none of these" in md
    for p in (paths["plot"], paths["plot_settle"]):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- data sets ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """12 identities x 5 images: each identity is one generated character drawn 5 times slightly differently."""
    from omokage.catalog.generate import perturbed_render, sample_attributes
    root = tmp_path_factory.mktemp("faces") / "my-faces"
    rng = np.random.default_rng(7)
    for i in range(12):
        attrs = sample_attributes(rng)
        for k in range(5):
            (root / f"person{i:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(perturbed_render(attrs, rng, 64)).save(root / f"person{i:02d}" / f"{k}.png")
    return root


def _run_cli(argv):
    from omokage.cli import main
    return main(["bench", "choice", "--users", "20", "--temperatures", "0,0.3", "--workers", "1"] + argv)


def test_a_folder_per_identity_works_end_to_end(faces, tmp_path, capsys):
    home, out = tmp_path / "home", tmp_path / "out"
    assert _run_cli(["--dataset", str(faces), "--models", "pca", "--policies", "study,thompson",
                     "--home", str(home), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "primary:" in text and "thompson/pca" in text
    data = json.loads((out / "choice.json").read_text())
    ds = data["dataset"]
    assert ds["name"] == "my-faces" and ds["layout"] == "a folder per identity" and ds["identities"] == 12
    assert "made" in ds["split"]
    assert data["arms"] == ["study/pca", "thompson/pca", choice.FLOOR]
    assert ds["query_images"] > 0 and ds["query_images"] + sum(ds["query_images_excluded"].values()) == 12
    assert "Choice benchmark: my-faces" in (out / "choice.md").read_text()
    # prepared under HOME/<name>-<fingerprint>, with its provenance
    (where,) = [p for p in home.iterdir() if p.name.startswith("my-faces-")]
    record = json.loads((where / "dataset.json").read_text())
    assert record["source"] == str(faces.resolve()) and record["catalog_images"] == 48
    # only the requested model was fitted, and it is what a run without --models would now use
    assert [p.name for p in (where / "models").iterdir()] == ["pca"]
    assert choice.fitted_models(where / "catalog", where / "models") == ["pca"]
    assert choice.default_out(faces) == choice.DEFAULT_OUT.with_name("choice-my-faces")


def test_the_split_is_made_per_identity_with_a_seed(faces):
    a = choice.read_labelled_set(faces)
    b = choice.read_labelled_set(faces)
    assert a.splits == b.splits and a.fingerprint == b.fingerprint
    for label in set(a.labels):
        assert [s for lab, s in zip(a.labels, a.splits) if lab == label].count("query") == 1   # 20% of 5
    assert choice.read_labelled_set(faces, split_seed=1).splits != a.splits


def test_train_and_test_folders_are_the_split_not_two_identities(faces, tmp_path):
    """train/<identity>/ and test/<identity>/, as many face sets ship: the identities are the folders inside, the split
    is the top folder (read as identities, a whole set was two characters called "train" and "test")."""
    import shutil
    root = tmp_path / "split-set"
    for person in sorted(faces.iterdir()):
        images = sorted(person.iterdir())
        for split, chosen in (("train", images[:4]), ("test", images[4:])):
            (root / split / person.name).mkdir(parents=True, exist_ok=True)
            for image in chosen:
                shutil.copy(image, root / split / person.name / image.name)
    ls = choice.read_labelled_set(root)
    assert len(set(ls.labels)) == 12 and "train" not in ls.labels
    assert ls.layout == "a folder per split, then per identity" and "split folders" in ls.split_source
    assert sorted(set(ls.splits)) == ["catalog", "query"] and ls.splits.count("query") == 12
    (root / "extra").mkdir()                         # a split folder beside an identity folder: ambiguous, refused
    Image.new("RGB", (8, 8)).save(root / "extra" / "a.png")
    with pytest.raises(UserError, match="mixes split folders"):
        choice.read_labelled_set(root)


def test_a_user_model_in_the_models_folder_does_not_reweight_the_arms(faces, tmp_path):
    """The arms run in the spaces the report names: a `fit user-model --out` left in the models folder (as the docs
    tell a deployment to do) is not applied behind the report's back."""
    from omokage.engine import Engine
    from omokage.selection.user_model import UserModel
    ls = choice.read_labelled_set(faces)
    plain = choice.prepare_labelled(ls, tmp_path / "home", ["pca"], progress=False)
    catalog_dir = plain.catalog.path
    models_dir = catalog_dir.parent / "models"
    dim = plain.space("pca").dim
    UserModel({"pca": 0.3}, catalog_fingerprint=plain.catalog.fingerprint(),
              metric={"pca": {"scales": [25.0] + [0.04] * (dim - 1), "picks": 100, "gain_nats": 0.1}}).save(models_dir)
    served = Engine.open(catalog_dir, models_dir, algorithms=["pca"])          # a server applies it ...
    benched = choice.prepare_labelled(ls, tmp_path / "home", ["pca"], progress=False)   # ... the benchmark does not
    ids = [0, 1, 2]
    d = lambda e: e.space("pca").unit_distances_from(ids)              # noqa: E731
    assert not np.allclose(d(served), d(plain)), "the test needs a metric that changes the distances"
    np.testing.assert_allclose(d(benched), d(plain), rtol=1e-5)


def test_another_dataset_in_the_same_home_is_prepared_apart(faces, tmp_path, capsys):
    home = tmp_path / "home"
    # a labels.csv set with its own split, one of whose query images is a copy of a catalog image
    other = tmp_path / "other-set"
    shutil.copytree(faces, other / "images")
    rows = []
    for p in sorted((other / "images").rglob("*.png")):
        rows.append({"file": p.relative_to(other).as_posix(), "label": p.parent.name,
                     "split": "test" if p.stem == "0" else "train"})
    shutil.copy(other / "images" / "person03" / "1.png", other / "images" / "person03" / "copy.png")
    rows.append({"file": "images/person03/copy.png", "label": "person03", "split": "test"})
    with open(other / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    args = ["--models", "pca", "--policies", "study", "--home", str(home)]
    assert _run_cli(["--dataset", str(faces), "--out", str(tmp_path / "a")] + args) == 0
    assert _run_cli(["--dataset", str(other), "--out", str(tmp_path / "b")] + args) == 0
    a = json.loads((tmp_path / "a" / "choice.json").read_text())["dataset"]
    b = json.loads((tmp_path / "b" / "choice.json").read_text())["dataset"]
    assert a["catalog"] != b["catalog"] and a["catalog_fingerprint"] != b["catalog_fingerprint"]
    assert b["split"] == "the split column of labels.csv" and b["query_images_excluded"]["near_duplicate"] == 1
    assert b["query_images"] == 12
    # a folder of HOME that holds another data set than its name says is refused with a message, not a traceback
    where = choice.labelled_home(home, choice.read_labelled_set(other))
    record = json.loads((where / "dataset.json").read_text())
    (where / "dataset.json").write_text(json.dumps(dict(record, fingerprint="0123456789ab", name="something-else")))
    capsys.readouterr()
    assert _run_cli(["--dataset", str(other), "--out", str(tmp_path / "c")] + args) == 2
    err = capsys.readouterr().err
    assert "something-else" in err and "another --home" in err and "Traceback" not in err


def test_bad_datasets_and_options_get_clear_messages(tmp_path, capsys):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    for argv, message in [(["--dataset", str(tmp_path / "flat")], "not a labelled image set"),
                          (["--dataset", str(tmp_path / "nowhere" / "x")], "not a folder"),
                          (["--policies", "study,nope"], "unknown policy"),
                          (["--models", "pca,nope"], "unknown model"),
                          (["--temperatures", "0,hot"], "--temperatures"),
                          (["--starts", "sideways"], "--starts")]:
        assert _run_cli(argv + ["--home", str(tmp_path / "home")]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "home").exists()


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


def test_a_learned_metric_is_fitted_on_pilot_users_and_runs_as_an_arm(small, monkeypatch):
    monkeypatch.setattr(choice, "METRIC_PILOT_USERS", 150)
    try:
        fits = choice.pilot_metric_fit(small, ["pca", "nmf"], (0.0,), seed=3, max_steps=10)
        assert set(fits) == {"pca+metric", "nmf+metric"}
        for name, f in fits.items():
            assert f["picks"] > 50 and f["pilot_users"] == 150 and isinstance(f["held_out_gain_nats"], float)
            # kept exactly when it predicted held-out picks better, and then served as a space of its own
            assert f["fitted"] == (f["held_out_gain_nats"] > 0) == (name in small.engine.models)
        kept = [n for n, f in fits.items() if f["fitted"]]
        if kept:
            loaded = small.engine.models[kept[0]]
            base = small.engine.models[fits[kept[0]]["model"]]
            assert np.allclose(loaded.space.features, base.space.features * loaded.scales, atol=1e-4)
            arms = [choice.Arm(f"thompson/{kept[0]}", "thompson", kept[0])] + choice.select_arms(["thompson"], ["pca"])
            report = choice.benchmark(small, arms, users=10, max_steps=4, temperatures=(0.0,), seed=1,
                                      progress=False, resamples=50)
            assert {r["arm"] for r in report["results"]} == {a.name for a in arms}
    finally:
        for name in ("pca+metric", "nmf+metric"):
            small.engine.models.pop(name, None)


# --- bench pick-information ---------------------------------------------------------------------------------------------

def test_pick_information_puts_the_users_own_distance_on_top_and_noise_at_zero(small):
    """How much a pick tells each space: the user's own distance hears the most; a user picking at random tells
    nothing to anyone; near-neighbour grids say less than random ones."""
    from omokage.bench.pickinfo import OWN, rows_for
    rows = rows_for(small, ["pca", "nmf"], temperatures=(0.1, 100.0), picks=1200, seed=3, progress=False)
    at = {(r["grid"], r["temperature"], r["space"]): r for r in rows}
    for grid in ("random", "near"):
        own = at[(grid, 0.1, OWN)]["nats_per_pick"]
        assert own > 0.1 and at[(grid, 0.1, OWN)]["share_of_own"] == 1.0
        for space in ("pca", "nmf"):
            assert at[(grid, 0.1, space)]["nats_per_pick"] < own
        for space in (OWN, "pca", "nmf"):       # picks that ignore the target: nothing to learn
            assert abs(at[(grid, 100.0, space)]["nats_per_pick"]) < 0.03
            assert at[(grid, 100.0, space)]["share_of_own"] is None
    assert at[("random", 0.1, "pca")]["nats_per_pick"] > 0.02          # PCA hears some of it
    assert at[("near", 0.1, OWN)]["nats_per_pick"] < at[("random", 0.1, OWN)]["nats_per_pick"]
