"""The ideal face (omokage.selection.ideal): CMA-ES in the PCA latent under a similarity constraint to the favourite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from omokage.index import build_index
from omokage.selection import Belief, ChoiceTerm, FeatureSpace
from omokage.selection.ideal import IdealFace, ideal_face


@pytest.fixture(scope="module")
def pca(engine):
    """The tiny generated catalog's served PCA space and its latents (the model's own features)."""
    return engine.space("pca"), engine.models["pca"].features


def synthetic_space(points: np.ndarray) -> FeatureSpace:
    x = np.asarray(points, dtype=np.float32)
    return FeatureSpace("synthetic", build_index(x, "exact"), x.shape[1])


def tilted(space, towards: int, strength: float = 8.0) -> np.ndarray:
    """A posterior that favours the faces near `towards` (a smooth bump, as after a few picks)."""
    d = space.unit_distances_from([towards])[0].astype(np.float64)
    p = np.exp(-strength * d)
    return p / p.sum()


def unit_distance(space, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)) / space.distance_unit)


def test_the_similarity_constraint_holds(pca):
    space, z = pca
    fav = 0
    far = int(np.argmax(space.unit_distances_from([fav])[0]))      # the belief wants a face far from the favourite
    p = tilted(space, far)
    for radius in (0.1, 0.3, 0.6):
        r = ideal_face(p, space, z, fav, radius=radius, seed=1)
        assert isinstance(r, IdealFace)
        assert r.favourite == fav and r.radius == radius
        assert r.favourite_distance <= radius
        assert unit_distance(space, r.latent, z[fav]) <= radius          # the float32 latent too
        # the belief pulls away from the favourite: the ideal goes to the edge of the ball
        assert r.favourite_distance > 0.9 * radius
    free = ideal_face(p, space, z, fav, radius=math.inf, seed=1)
    assert free.score >= r.score and free.favourite_distance > 0.6


def test_a_belief_on_one_face_puts_the_ideal_on_that_face(pca, engine):
    space, z = pca
    target = 17
    p = np.full(space.n_items, 1e-12)
    p[target] = 1.0
    fav = int(np.argsort(space.unit_distances_from([target])[0])[5])   # a look-alike was the last pick
    r = ideal_face(p, space, z, fav, radius=2.0, seed=0)
    assert unit_distance(space, r.latent, z[target]) < 0.02
    assert r.nearest[0] == target and len(r.nearest) == 9
    assert list(r.nearest_distances) == sorted(r.nearest_distances)
    # the latent decodes with the generator (here PCA's linear decode) into the target's reconstruction
    model = engine.models["pca"].model
    preview, target_recon = model.inverse_transform(np.stack([r.latent, z[target]]))
    assert preview.shape == (64 * 64 * 3,) and np.abs(preview - target_recon).max() < 0.05
    # excluded (already shown), the face is not offered again, and the rest are its neighbours
    shown = {target, fav}
    r2 = ideal_face(p, space, z, fav, radius=2.0, seed=0, exclude=sorted(shown), k=5)
    assert not shown & set(r2.nearest) and len(r2.nearest) == 5
    order = [int(i) for i in np.argsort(space.unit_distances_from([target])[0], kind="stable") if i not in shown]
    assert set(r2.nearest) == set(order[:5])


def test_the_ideal_can_be_a_face_the_catalog_does_not_have():
    """Two equally probable faces closer together than the bandwidth: the density peaks between them."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(60, 6)) * 3.0
    pts[0], pts[1] = 0.0, 0.0
    pts[0, 0], pts[1, 0] = -0.4, 0.4
    space = synthetic_space(pts)
    p = np.full(len(pts), 1e-9)
    p[[0, 1]] = 0.5
    bandwidth = 0.8 / space.distance_unit                  # wider than the pair's distance (0.8 raw)
    r = ideal_face(p, space, pts, 0, radius=math.inf, bandwidth=bandwidth, generations=60, seed=3)
    assert np.linalg.norm(r.latent) < 0.1                  # midway, not on either face
    assert set(r.nearest[:2]) == {0, 1}


def test_more_generations_never_lower_the_best_score(pca):
    space, z = pca
    p = tilted(space, 40, strength=5.0)
    scores = [ideal_face(p, space, z, 3, radius=0.5, generations=g, seed=11).score for g in range(0, 13, 2)]
    assert all(b >= a for a, b in zip(scores, scores[1:]))
    r = ideal_face(p, space, z, 3, radius=0.5, generations=12, seed=11)
    assert r.generations == 12 and len(r.best_by_generation) == 13
    assert all(b >= a for a, b in zip(r.best_by_generation, r.best_by_generation[1:]))
    assert r.score == r.best_by_generation[-1] == scores[-1]
    assert r.evaluations == 9 + 12 * 9


def test_deterministic_for_a_seed(pca):
    space, z = pca
    belief = Belief(space)
    belief.add(ChoiceTerm(tuple(range(9)), 4))
    belief.add(ChoiceTerm(tuple(range(9, 18)), 12))
    np.random.seed(1)
    a = ideal_face(belief, space, z, 12, seed=5)
    np.random.seed(2)       # numpy's global state is neither read nor changed
    state = np.random.get_state()[1].copy()
    b = ideal_face(belief, space, z, 12, seed=5)
    assert np.array_equal(np.random.get_state()[1], state)
    assert np.array_equal(a.latent, b.latent) and a.score == b.score and a.nearest == b.nearest
    c = ideal_face(belief, space, z, 12, seed=6)
    assert not np.array_equal(a.latent, c.latent)


def test_no_files_are_written(pca, tmp_path, monkeypatch):
    space, z = pca
    monkeypatch.chdir(tmp_path)
    ideal_face(tilted(space, 9), space, z, 9, seed=0)
    assert list(tmp_path.iterdir()) == []       # cma's data logging (outcmaes/) is off


def test_bad_inputs_raise_clear_errors(pca):
    space, z = pca
    p = tilted(space, 1)
    nan_fav = z[1].copy()
    nan_fav[3] = np.nan
    with pytest.raises(ValueError, match="favourite.*not finite"):
        ideal_face(p, space, z, nan_fav)
    for radius in (0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="radius must be a positive"):
            ideal_face(p, space, z, 1, radius=radius)
    with pytest.raises(ValueError, match="bandwidth"):
        ideal_face(p, space, z, 1, bandwidth=0)
    with pytest.raises(ValueError, match="not a catalog id"):
        ideal_face(p, space, z, space.n_items)
    with pytest.raises(ValueError, match="latent of"):
        ideal_face(p, space, z, np.zeros(z.shape[1] + 1))
    with pytest.raises(ValueError, match="probabilities"):
        ideal_face(p[:-1], space, z, 1)
    bad = p.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="probabilities"):
        ideal_face(bad, space, z, 1)
    with pytest.raises(ValueError, match="rows but the space"):
        ideal_face(p, space, z[:-1], 1)
    with pytest.raises(ValueError, match="exclude"):
        ideal_face(p, space, z, 1, exclude=[space.n_items + 3])
    with pytest.raises(ValueError, match="generations"):
        ideal_face(p, space, z, 1, generations=-1)


# --- v1.5: the ideal face of a selection session, over the protocol ----------------------------------------------

def test_a_session_without_a_belief_rebuilds_the_same_one_from_its_clicks(engine):
    """`study` keeps no belief: session_probabilities replays its choices, skips and ratings, and gets what a belief
    policy that saw the same events holds."""
    import types
    from omokage.selection import make_policy
    from omokage.selection.ideal import favourite_of, session_probabilities
    s = engine.new_session("pca", seed=3, policy=make_policy("thompson"))
    step = s.start()
    step = s.choose(step.ids[4])
    s.rate(step.ids[2], 5)
    step = s.skip()
    step = s.choose(step.ids[1])
    s.rate(step.ids[3], 2)
    s.rate(step.ids[3], 4)                                       # a re-rating replaces the earlier one
    replayed = session_probabilities(types.SimpleNamespace(policy=object(), space=s.space, events=s.events,
                                                           history=s.history, current=s.current, ratings=s.ratings))
    own = session_probabilities(s)
    assert np.allclose(replayed, own, atol=1e-6) and abs(own.sum() - 1) < 1e-6
    assert favourite_of(s, own) == step.ids[0]                  # the last face chosen
    s.skip()
    after_skip = favourite_of(s, session_probabilities(s))      # after a skip: the most probable face on screen
    p = session_probabilities(s)
    assert after_skip in s.current.ids and p[after_skip] == max(p[i] for i in s.current.ids)


def test_ideal_over_a_real_server(live_server):
    """v1.5 `ideal`: refused outside a selection; near the face chosen; its faces unseen and nearest first; its
    preview a real JPEG of welcome.ideal.image_size; any policy; refused after decide; the server keeps serving."""
    import asyncio
    import io
    from PIL import Image
    from omokage.client import OmokageClient, OmokageError

    async def main():
        async with await OmokageClient.connect(live_server.url) as c:
            assert c.ideal_image_size == 64
            with pytest.raises(OmokageError) as err:
                await c.ideal()
            assert err.value.code == "wrong_state" and "start" in str(err.value)
            for policy in ("thompson", "study"):
                grid = await c.start("nmf", seed=5, policy=policy)
                grid = await c.choose(grid.ids[3])
                seen = set(grid.ids)
                result = await c.ideal()
                assert result["type"] == "ideal.result" and result["near"] == grid.ids[0]
                ids = [i["id"] for i in result["items"]]
                distances = [i["distance"] for i in result["items"]]
                assert len(ids) == 9 and not set(ids) & seen and distances == sorted(distances)
                assert all(i["url"].startswith("https://") for i in result["items"])
                preview = Image.open(io.BytesIO(result["preview"]["data"]))
                assert preview.format == "JPEG" and preview.size == (64, 64)
                near = await c.ideal(near=grid.ids[5])
                assert near["near"] == grid.ids[5]
                with pytest.raises(OmokageError) as err:
                    await c.ideal(near=max(ids) + 10_000)
                assert err.value.code == "not_found"
                await c.decide(grid.ids[0])
                with pytest.raises(OmokageError) as err:
                    await c.ideal()
                assert err.value.code == "wrong_state"
        async with await OmokageClient.connect(live_server.url, protocol_minor=4) as old:
            assert old.ideal_image_size == 0 and "ideal" not in old.welcome
            grid = await old.start("pca", seed=1)
            assert len(grid.items) == 9
    asyncio.run(main())


def test_the_server_imports_cma_once_listening_not_before(tiny_catalog, tiny_models):
    """`cma` imports scipy.stats and matplotlib (~1 s): the server imports it on its pool once it listens, so a start
    does not wait for it, yet before anyone's first `ideal` needs it. A fresh process, a real server on a real port."""
    import json
    import subprocess
    import sys
    code = f"""
import asyncio, json, sys, time
from omokage.engine import Engine
from omokage.service.server import OmokageServer, configure_logging
configure_logging("warning")
server = OmokageServer(Engine.open({str(tiny_catalog)!r}, {str(tiny_models)!r}))
seen = {{"constructed": sorted(m for m in ("cma", "scipy", "matplotlib") if m in sys.modules)}}
async def main():
    loop = asyncio.get_running_loop()
    ready, stop = loop.create_future(), loop.create_future()
    task = asyncio.create_task(server.run("127.0.0.1", 0, ready=ready, stop=stop))
    await ready
    deadline = time.monotonic() + 60
    while "cma" not in sys.modules and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    stop.set_result(None)
    await task     # the pool is shut down: the import it began has finished
asyncio.run(main())
seen["stopped"] = hasattr(sys.modules.get("cma"), "CMAEvolutionStrategy")
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"constructed": [], "stopped": True}
