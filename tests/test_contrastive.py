"""The contrastive embedding: training, ONNX Runtime serving without torch, saving, and what the space learns."""

import json
import subprocess
import sys

import numpy as np
import pytest

from omokage.catalog.store import Catalog
from omokage.features import ALGORITHMS, DEFAULT_ALGORITHMS, ModelRepositoryError, load_model_dir, make_model
from omokage.features.base import downsample_nchw
from omokage.features.contrastive import _build, augment

TINY = dict(n_components=8, width=8, epochs=3, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    from omokage.catalog.generate import generate_catalog
    return generate_catalog(tmp_path_factory.mktemp("contrastive") / "catalog", count=60, seed=3, image_size=64,
                            progress=False)


@pytest.fixture(scope="module")
def X(catalog_dir):
    return Catalog(catalog_dir).matrix()


@pytest.fixture(scope="module")
def fitted(X):
    return make_model("contrastive", **TINY).fit(X)


def test_area_downsampling_matches_torch(X):
    import torch
    ours = downsample_nchw(X[:4], 64, 48)
    ref = torch.nn.functional.interpolate(torch.from_numpy(X[:4]).reshape(-1, 64, 64, 3).permute(0, 3, 1, 2),
                                          size=(48, 48), mode="area").numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_onnx_runtime_features_match_the_torch_encoder(fitted, X):
    import torch
    with torch.inference_mode():
        ref = fitted.torch_net()(torch.from_numpy(fitted.preprocess(X))).numpy()
    Z = fitted.transform(X)
    assert Z.shape == (len(X), 8) and Z.dtype == np.float32
    assert np.abs(Z - ref).max() < 1e-4
    # L2-normalised, scaled so every coordinate has an RMS of 1
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), np.sqrt(8), rtol=1e-5)


def test_save_load_in_a_fresh_process_serves_with_onnx_runtime_and_no_torch(fitted, X, tmp_path):
    Z, R = fitted.transform(X[:5]), fitted.inverse_transform(fitted.transform(X[:5]))
    path = fitted.save(tmp_path / "repo")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.onnx", "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["name"] == "contrastive" and config["files"] == ["model.onnx"]
    np.save(tmp_path / "x.npy", X[:5])
    code = (f"import sys, numpy as np; from omokage.features import load_model_dir;"
            f"m, cfg, _ = load_model_dir({str(path)!r}); x = np.load({str(tmp_path / 'x.npy')!r});"
            f"z = m.transform(x); np.save({str(tmp_path / 'z.npy')!r}, z);"
            f"np.save({str(tmp_path / 'r.npy')!r}, m.inverse_transform(z));"
            f"print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["False", "True"], "transform after load must run on ONNX Runtime without importing torch"
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), Z, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), R, atol=1e-5)
    # the torch weights are kept (fine-tuning): the rebuilt torch module gives the same features
    loaded, _, _ = load_model_dir(path)
    import torch
    with torch.inference_mode():
        again = loaded.torch_net()(torch.from_numpy(loaded.preprocess(X[:5]))).numpy()
    np.testing.assert_allclose(again, Z, atol=1e-4)
    assert loaded.save(tmp_path / "repo") == tmp_path / "repo" / "contrastive" / "2"  # re-saves after a load


def test_a_missing_onnx_file_is_a_clear_error(fitted, tmp_path):
    path = fitted.save(tmp_path / "repo")
    (path / "model.onnx").unlink()
    with pytest.raises(ModelRepositoryError, match="model.onnx.*missing"):
        load_model_dir(path)


def test_same_seed_same_model(X, fitted):
    again = make_model("contrastive", **TINY).fit(X)
    np.testing.assert_allclose(again.transform(X), fitted.transform(X), atol=1e-5)
    assert again.loss_history_ == pytest.approx(fitted.loss_history_, rel=1e-5)


def _views(net, src, seed: int):
    """Features of two augmented views of every face: (n, k), (n, k)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        return net(augment(src, 48, gen)).numpy(), net(augment(src, 48, gen)).numpy()


def _view_retrieval(net, src, seed: int) -> float:
    """Share of faces whose second augmented view is the nearest, among all second views, to its first view."""
    a, b = _views(net, src, seed)
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    return float(np.mean(d.argmin(axis=1) == np.arange(len(a))))


def test_training_pulls_augmented_views_of_a_face_together(X):
    import torch
    model = make_model("contrastive", n_components=16, width=16, epochs=30, batch_size=60, progress=False)
    model.fit(X)
    assert model.loss_history_[-1] < model.loss_history_[0] * 0.7
    src = torch.from_numpy(downsample_nchw(X, 64, 64))
    a, b = _views(model.torch_net(), src, 1)
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    same, other = np.diag(d).mean(), d[~np.eye(len(d), dtype=bool)].mean()
    assert same < 0.6 * other, (same, other)
    # a random guess finds the other view 1.7% of the time (60 faces), the same net untrained ~13%, trained ~43%
    trained, untrained = _view_retrieval(model.torch_net(), src, 1), _view_retrieval(_build(16, 16, 4.0).eval(), src, 1)
    assert trained >= 0.3 and trained > 2 * untrained, (trained, untrained)


def test_inverse_transform_is_a_preview_closer_than_the_mean_face(fitted, X):
    R = fitted.inverse_transform(fitted.transform(X))
    assert R.shape == X.shape and R.min() >= 0 and R.max() <= 1
    assert np.sqrt(np.mean((R - X) ** 2)) < np.sqrt(np.mean((X.mean(axis=0) - X) ** 2))


def test_bad_input_is_a_clear_error(fitted, X):
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(np.full((2, X.shape[1]), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        make_model("contrastive", **TINY).fit(np.where(np.arange(X.shape[1]) == 5, np.nan, X))
    with pytest.raises(ValueError, match="matrix"):
        fitted.transform(X[0])
    with pytest.raises(ValueError, match="expected rows of 12288 values"):
        fitted.transform(np.zeros((2, 32 * 32 * 3), np.float32))
    with pytest.raises(ValueError, match="square RGB"):
        make_model("contrastive", **TINY).fit(X[:, :1000])
    with pytest.raises(ValueError, match="at least 2"):
        make_model("contrastive", **TINY).fit(X[:1])
    with pytest.raises(ValueError, match=r"\(n, 8\) features"):
        fitted.inverse_transform(np.zeros((1, 3), np.float32))


def test_contrastive_is_served_but_not_fitted_unasked(catalog_dir, tmp_path):
    from omokage.cli import main
    from omokage.demo import prepare
    from omokage.engine import Engine
    assert "contrastive" in ALGORITHMS and "contrastive" not in DEFAULT_ALGORITHMS
    import inspect
    assert inspect.signature(prepare).parameters["algorithms"].default == DEFAULT_ALGORITHMS  # demo: the four
    repo = tmp_path / "models"
    assert main(["fit", str(catalog_dir), "--models", "contrastive", "--out", str(repo), "--components", "8"]) == 0
    engine = Engine.open(catalog_dir, repo)                        # what `omokage serve --models` does
    assert engine.algorithms == ["contrastive"]
    rgb = Catalog(catalog_dir).pixels[3]
    result = engine.query_image("contrastive", rgb, k=3)
    assert result.vector.shape == (8,) and result.reconstruction.shape == rgb.shape
    assert result.neighbours[0].id == 3 and result.neighbours[0].distance < 1e-3


def test_identity_accuracy_and_chance():
    from omokage.bench.identity import chance, one_nn_accuracy
    labels = np.array(["a", "a", "b", "b", "b"])
    Z = np.array([[0.0], [0.1], [5.0], [5.2], [0.3]])   # the last "b" sits among the "a"s
    assert one_nn_accuracy(Z, labels) == pytest.approx(4 / 5)
    assert chance(labels) == pytest.approx((2 * 1 + 3 * 2) / (5 * 4))
