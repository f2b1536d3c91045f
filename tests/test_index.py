import numpy as np
import pytest

from omokage.index import FAISS_THRESHOLD, ExactIndex, FaissIndex, build_index, index_kind_for


def brute(features, q, k, exclude=()):
    d = np.linalg.norm(features.astype(np.float64) - q, axis=1)
    order = [i for i in np.argsort(d, kind="stable") if i not in set(exclude)]
    return order[:k], d


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 30)).astype(np.float32)
    idx = ExactIndex(f)
    for _ in range(20):
        q = rng.normal(size=30)
        excl = set(rng.choice(500, 20, replace=False).tolist())
        got = idx.search(q, 9, excl)
        want, d = brute(f, q, 9, excl)
        assert [n.id for n in got] == want
        np.testing.assert_allclose([n.distance for n in got], d[want], rtol=1e-4)


def test_neighbours_of_item_excludes_itself_and_the_shown():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(300, 5)).astype(np.float32)
    idx = ExactIndex(f)
    got = idx.neighbours_of(10, 8, exclude={3, 4})
    assert 10 not in [n.id for n in got] and not {3, 4} & {n.id for n in got}
    want, _ = brute(f, f[10], 8, {10, 3, 4})
    assert [n.id for n in got] == want
    # the precomputed-matrix path and the scan path agree
    scan = ExactIndex(f, pairwise_limit=0).neighbours_of(10, 8, exclude={3, 4})
    assert [n.id for n in scan] == want


def test_exact_and_faiss_agree():
    rng = np.random.default_rng(2)
    centers = rng.normal(size=(50, 30))
    f = (centers[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 30))).astype(np.float32)
    exact, approx = ExactIndex(f, pairwise_limit=0), FaissIndex(f)
    recall = []
    for qi in rng.choice(20_000, 100, replace=False):
        excl = set(rng.choice(20_000, 30, replace=False).tolist())
        e = exact.search(f[qi], 9, excl)
        a = approx.search(f[qi], 9, excl)
        assert not excl & {n.id for n in a}
        recall.append(len({n.id for n in e} & {n.id for n in a}) / 9)
        # distances faiss reports are true Euclidean distances
        np.testing.assert_allclose([n.distance for n in a], np.linalg.norm(f[[n.id for n in a]] - f[qi], axis=1),
                                   rtol=1e-3, atol=1e-3)
    assert np.mean(recall) >= 0.97


def test_build_index_picks_by_size():
    assert build_index(np.zeros((10, 3), np.float32)).kind == "exact"
    assert index_kind_for(FAISS_THRESHOLD - 1) == "exact" and index_kind_for(FAISS_THRESHOLD) == "faiss"
    small = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    assert build_index(small, "faiss").kind == "faiss-hnsw"
    with pytest.raises(ValueError):
        build_index(small, "nope")


def test_asking_for_more_than_remain():
    idx = ExactIndex(np.eye(5, dtype=np.float32))
    assert len(idx.search(np.zeros(5), 9, exclude={0, 1})) == 3
    assert idx.search(np.zeros(5), 9, exclude=set(range(5))) == []
