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


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_the_estimator_api_without_sklearn_base_estimator(name):
    """FeatureModel implements get_params / set_params / repr / tags itself (serving does not import scikit-learn):
    they behave as sklearn's BaseEstimator's did."""
    from sklearn.utils import get_tags
    from sklearn.utils.validation import check_is_fitted
    model = make_model(name)
    cls = type(model).__name__
    params = model.get_params()
    assert list(params) == sorted(params) and model.get_params(deep=False) == params
    assert repr(model) == f"{cls}()"            # only the parameters that differ from the defaults
    key = "resolution" if name == "raw" else "n_components"
    assert model.set_params(**{key: 7}) is model and model.get_params()[key] == 7
    assert repr(model) == f"{cls}({key}=7)"
    with pytest.raises(ValueError, match=f"Invalid parameter 'bogus' for estimator {cls}"):
        model.set_params(bogus=1)
    assert get_tags(model).transformer_tags is not None and get_tags(model).estimator_type is None
    for check in (check_is_fitted, lambda m: m.n_features_out):   # sklearn's check and ours
        with pytest.raises(ValueError, match=f"This {cls} instance is not fitted yet") as err:
            check(model)
        assert isinstance(err.value, AttributeError)


@pytest.mark.parametrize("name", ["raw", "pca", "nmf"])
def test_a_clone_of_a_fitted_model_is_an_equal_unfitted_one(name, X):
    model = make_model(name, n_components=5) if name != "raw" else make_model(name, resolution=16)
    Z = model.fit_transform(X)
    assert Z.shape[1] == model.n_features_out
    cloned = clone(model)
    assert type(cloned) is type(model) and cloned.get_params() == model.get_params() and repr(cloned) == repr(model)
    with pytest.raises(ValueError, match="not fitted"):
        cloned.transform(X[:2])
    np.testing.assert_allclose(cloned.fit_transform(X), Z, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def every_served_kind(tiny_catalog, tiny_models, tmp_path_factory):
    """tiny_models (raw, pca, nmf, ae) plus a small contrastive model, the sketch model and a `gen` decoder: every
    kind of model `omokage serve` loads."""
    import shutil

    from omokage.features.fitting import fit_models
    models = tmp_path_factory.mktemp("served_kinds") / "models"
    shutil.copytree(tiny_models, models)
    fit_models(tiny_catalog, models, ["sketch"], n_components=12, progress=False)
    catalog = Catalog(tiny_catalog)
    X = catalog.matrix()
    contrastive = make_model("contrastive", n_components=8, width=8, epochs=2, batch_size=32, progress=False)
    contrastive.save(models, catalog_features=contrastive.fit_transform(X),
                     metadata={"catalog": {"fingerprint": catalog.fingerprint()}})
    make_model("gen", n_components=12, random_state=0, residual_size=32, width=8, epochs=2, batch_size=32,
               n_threads=1, progress=False).fit(X).save(models)
    return models


def test_serving_loads_every_model_kind_without_scikit_learn_scipy_or_pandas(tiny_catalog, every_served_kind):
    """scikit-learn pulls scipy and pandas: ~2 s of a server's start, for models that only transform. A fresh process
    imports the server, loads each served kind and uses it as serving does (an upload's projection and its
    reconstruction), then opens the engine as `omokage serve` does (indexes, the sketch service, gen previews)."""
    code = f"""
import json, sys
import numpy as np
HEAVY = ("sklearn", "scipy", "pandas")
def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)
seen = {{}}
import omokage.service.server
seen["import omokage.service.server"] = heavy()
from omokage.catalog.store import Catalog
from omokage.engine import Engine
from omokage.features import latest_version_dir, load_model_dir
catalog, models = {str(tiny_catalog)!r}, {str(every_served_kind)!r}
X = Catalog(catalog).matrix()[:2]
for kind in ("raw", "pca", "nmf", "ae", "contrastive", "sketch", "gen"):
    model, _, _ = load_model_dir(latest_version_dir(models, kind))
    model.inverse_transform(model.transform(X))
    seen[kind] = heavy()
engine = Engine.open(catalog, models, preview_backend="onnxruntime")
assert engine.sketch is not None and engine.sketch.sharp is not None, "the sketch service or its gen previews"
seen["Engine.open"] = heavy()
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert len(seen) == 9 and seen == {step: [] for step in seen}, seen


def test_serving_opens_every_model_kind_and_projects_uploads_without_torch(tiny_catalog, every_served_kind, tmp_path):
    """torch costs ~2.7 s of a server's start. A fresh process opens the engine as `omokage serve` does, over every
    served kind: ae is loaded without torch (the catalog's ae features are saved with the model), and so is everything
    else. An upload projected in every space but ae's needs none either: raw's reconstruction at a resolution below
    the catalog's upsamples in numpy, as torch's bilinear interpolate does. A loaded ae saves without building its
    module. ae's first projection builds it (importing torch) and gives the features it was saved with."""
    code = f"""
import json, sys
import numpy as np
from omokage.catalog.store import Catalog, matrix_to_images
from omokage.engine import Engine
from omokage.features import latest_version_dir, load_model_dir, make_model
catalog_path, models = {str(tiny_catalog)!r}, {str(every_served_kind)!r}
seen = {{}}
engine = Engine.open(catalog_path, models, preview_backend="onnxruntime")
assert set(engine.algorithms) == {{"raw", "pca", "nmf", "ae", "contrastive"}}, engine.algorithms
seen["Engine.open"] = "torch" in sys.modules
catalog = Catalog(catalog_path)
X = catalog.matrix()[:3]
rgb = matrix_to_images(X[:1], catalog.image_size)[0]
for name in ("raw", "pca", "nmf", "contrastive"):
    engine.project(name, rgb)
for kind in ("sketch", "gen"):
    model, _, _ = load_model_dir(latest_version_dir(models, kind))
    model.inverse_transform(model.transform(X))
raw32 = make_model("raw", resolution=32).fit(X)
up = raw32.inverse_transform(raw32.transform(X))
seen["projections but ae's"] = "torch" in sys.modules
engine.models["ae"].model.save({str(tmp_path / "resaved")!r})
seen["saving a loaded ae"] = "torch" in sys.modules
vector, recon = engine.project("ae", rgb)
seen["ae's first projection"] = "torch" in sys.modules
import torch
t = torch.from_numpy(raw32.transform(X).reshape(-1, 32, 32, 3)).permute(0, 3, 1, 2)
ref = torch.nn.functional.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)
seen["raw upsampling off torch's by"] = float(np.abs(up - ref.permute(0, 2, 3, 1).reshape(3, -1).numpy()).max())
seen["ae off its saved catalog features by"] = float(np.abs(vector - engine.space("ae").features[0]).max())
resaved, _, _ = load_model_dir({str(tmp_path / "resaved" / "ae" / "1")!r})
served = engine.models["ae"].model
seen["resaved ae off the served one by"] = float(np.abs(resaved.transform(X) - served.transform(X)).max())
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    off = {k: seen.pop(k) for k in [k for k in seen if k.endswith(" by")]}
    assert seen == {"Engine.open": False, "projections but ae's": False, "saving a loaded ae": False,
                    "ae's first projection": True}, seen
    assert all(v < 1e-5 for v in off.values()), off


def test_ae_builds_its_torch_module_once_when_first_projections_race(tiny_catalog, tiny_models):
    """After a load, ae's torch module is built on first use: first projections on several threads at once (the
    server's pool) wait for one build, under a lock, rather than each build its own. A fresh process, so that the
    first build also imports torch (seconds): the window in which they race."""
    code = f"""
import json, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from omokage.catalog.store import Catalog
from omokage.features import latest_version_dir, load_model_dir
model, _, features = load_model_dir(latest_version_dir({str(tiny_models)!r}, "ae"))
X = Catalog({str(tiny_catalog)!r}).matrix()[:1]
start = threading.Barrier(8)
def first_projection(_):
    start.wait()
    z = model.transform(X)
    return id(model.torch_net()), float(np.abs(z - features[:1]).max())
with ThreadPoolExecutor(8) as pool:
    got = list(pool.map(first_projection, range(8)))
print(json.dumps({{"modules": len({{m for m, _ in got}}), "off": max(d for _, d in got),
                  "the served one": sum(m == id(model.torch_net()) for m, _ in got)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["modules"] == 1 and seen["the served one"] == 8 and seen["off"] < 1e-5, seen


def test_load_refuses_a_directory_without_config(tmp_path):
    from omokage.features import ModelRepositoryError
    with pytest.raises(ModelRepositoryError, match="omokage fit"):
        load_model_dir(tmp_path)
