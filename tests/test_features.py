import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from omokage.catalog.store import Catalog
from omokage.features import MODEL_CLASSES, make_model, load_model_dir
from omokage.features.fitting import reconstruction_rmse


@pytest.fixture(scope="module")
def X(tiny_catalog):
    return Catalog(tiny_catalog).matrix()


@pytest.mark.parametrize("name", ["raw", "pca", "nmf", "ae"])
def test_save_load_round_trip_in_a_fresh_process(name, X, tmp_path):
    params = {"epochs": 1} if name == "ae" else {}
    if name == "raw":
        params["resolution"] = 32
    model = make_model(name, n_components=8, **params).fit(X)
    Z = model.transform(X[:5])
    R = model.inverse_transform(Z)
    path = model.save(tmp_path / "repo")
    assert path == tmp_path / "repo" / name / "1"
    # no pickle anywhere: a JSON config and a safetensors file
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((path / "config.json").read_text())["name"] == name
    np.save(tmp_path / "x.npy", X[:5])
    code = (f"import numpy as np; from omokage.features import load_model_dir;"
            f"m, cfg, _ = load_model_dir({str(path)!r}); x = np.load({str(tmp_path / 'x.npy')!r});"
            f"z = m.transform(x); np.save({str(tmp_path / 'z.npy')!r}, z);"
            f"np.save({str(tmp_path / 'r.npy')!r}, m.inverse_transform(z))")
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), Z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), R, rtol=1e-4, atol=1e-5)
    # a second save gets the next version
    assert model.save(tmp_path / "repo") == tmp_path / "repo" / name / "2"


@pytest.mark.parametrize("name", ["pca", "nmf"])
def test_reconstruction_error_falls_as_components_grow(name, X):
    errors = []
    for k in (2, 8, 24):
        model = make_model(name, n_components=k)
        errors.append(reconstruction_rmse(model, X, model.fit_transform(X)))
    assert errors[0] > errors[1] > errors[2], errors


def test_pca_matches_exact_svd(X):
    from sklearn.decomposition import PCA
    ours = make_model("pca", n_components=10).fit(X)
    exact = PCA(10, svd_solver="full").fit(X)
    # randomized SVD with 2 power iterations keeps the explained variance of the exact solution
    assert ours.explained_variance_ratio_.sum() == pytest.approx(exact.explained_variance_ratio_.sum(), rel=2e-3)


def test_nmf_factors_are_non_negative_and_fit_well(X):
    model = make_model("nmf", n_components=10)
    W = model.fit_transform(X)
    assert (W >= 0).all() and (model.components_ >= 0).all()
    assert (model.transform(X[:10]) >= 0).all()
    # transform of training rows lands close to the fitted W (same objective, H fixed)
    np.testing.assert_allclose(reconstruction_rmse(model, X[:10], model.transform(X[:10])),
                               reconstruction_rmse(model, X[:10], W[:10]), rtol=0.05)
    with pytest.raises(ValueError, match="non-negative"):
        model.transform(-X[:2])


def test_ae_learns_something(X):
    ae = make_model("ae", n_components=8, epochs=4, progress=False).fit(X)
    assert ae.loss_history_[-1] < ae.loss_history_[0]
    assert ae.transform(X[:3]).shape == (3, 8)
    assert ae.inverse_transform(ae.transform(X[:3])).shape == X[:3].shape


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_models_are_sklearn_estimators(name, X):
    model = make_model(name)
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()
    with pytest.raises(ValueError, match="NaN"):
        model.fit(np.full((3, X.shape[1]), np.nan, dtype=np.float32))


def test_load_refuses_a_directory_without_config(tmp_path):
    from omokage.features import ModelRepositoryError
    with pytest.raises(ModelRepositoryError, match="omokage fit"):
        load_model_dir(tmp_path)
