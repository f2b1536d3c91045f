"""The shape every feature model shares, and the model repository it is saved into.

Feature models are scikit-learn estimators (`fit` / `transform` / `inverse_transform` / `fit_transform`,
`get_params` / `set_params`, constructor parameters only in `__init__`, fitted state in attributes ending
in `_`; `sklearn.base.clone` works on them) that do not import scikit-learn: see `FeatureModel`. Input is
always an (n, H*W*3) float32 matrix in [0, 1] (see `omokage.catalog.images_to_matrix`).

Saved without pickle, in the layout of Triton's model repository::

    models/NAME/VERSION/config.json         name, class, parameters, shapes, catalog fingerprint
    models/NAME/VERSION/model.safetensors   fitted arrays (and the catalog's features, for fast start-up)
    models/NAME/VERSION/<extra files>       only for models that need them (e.g. model.onnx), listed in config.json
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file

from omokage.errors import UserError
from omokage.imageio import area_matrix  # noqa: F401  (re-exported: models and benchmarks import it from here)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def downsample_nchw(X: np.ndarray, side: int, size: int) -> np.ndarray:
    """(n, side*side*3) rows in [0, 1] → (n, 3, size, size) float32, area-downsampled in numpy (no torch)."""
    n = len(X)
    imgs = X.reshape(n, side, side * 3)
    if size == side:
        return np.ascontiguousarray(imgs.reshape(n, side, side, 3).transpose(0, 3, 1, 2))
    A = area_matrix(side, size)
    rows = (A @ imgs).reshape(n, size, side, 3).transpose(0, 1, 3, 2)       # (n, size, 3, side)
    return np.ascontiguousarray((rows @ A.T).transpose(0, 2, 1, 3))          # (n, 3, size, size)


class ModelRepositoryError(UserError):
    pass


class NotFittedError(ValueError, AttributeError):
    """A model used before `fit` (or a load): scikit-learn's NotFittedError, a ValueError and an AttributeError
    like it, without importing scikit-learn."""


def check_is_fitted(model) -> None:
    """scikit-learn's `check_is_fitted` rule, without importing scikit-learn: a model is fitted once it has an
    attribute ending in `_` (set by `fit` or by a load)."""
    if not any(v.endswith("_") and not v.startswith("__") for v in vars(model)):
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                             "arguments before using this estimator.")


class FeatureModel:
    """Base class: subclasses set `name`, implement fit/transform/inverse_transform and
    `_fitted_arrays()` / `_restore(arrays, fitted)` for saving.

    A scikit-learn estimator that does not inherit sklearn's BaseEstimator and TransformerMixin: importing
    scikit-learn pulls scipy and pandas, ~2 s of `omokage serve`'s start (-X importtime), and a served model only
    transforms. So `get_params` / `set_params` / `fit_transform` / repr are the few lines sklearn's developer guide
    asks of an estimator that does not inherit them (parameters are `__init__`'s named arguments, stored unchanged,
    in sorted order: config.json's "params"), and `sklearn.base.clone` works on it. scikit-learn is imported only
    where a fit uses it (NMF's initial SVD) and by `__sklearn_tags__`, which only scikit-learn calls. One class for
    fitting and serving, rather than sklearn-derived classes to fit and plain ones to load: the object that is fitted
    is the one that is saved, loaded and served.
    """

    name: ClassVar[str] = "base"

    # -- the scikit-learn estimator API --------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise TypeError(f"{cls.__name__}: a model's parameters are named arguments of __init__ (no *args, **kw)")
        return sorted(p.name for p in params if p.name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters {name: value}; `deep` changes nothing (no parameter is an estimator)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "FeatureModel":
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self}. Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)

    def __repr__(self) -> str:
        """As sklearn's, on one line: the class and the parameters that differ from their defaults, e.g.
        PCAFeatures(n_components=12)."""
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if defaults[k] is inspect.Parameter.empty or repr(v) != repr(defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        """What BaseEstimator + TransformerMixin say (scikit-learn >= 1.6 asks; it is imported when it does)."""
        from sklearn.utils import Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=TransformerTags())

    # -- hooks for save/load -------------------------------------------------------------------
    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _fitted_scalars(self) -> dict[str, Any]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        raise NotImplementedError

    def _extra_files(self) -> dict[str, bytes]:
        """Files other than arrays to save beside them ({file name: bytes}, e.g. an ONNX graph); none by default."""
        return {}

    def _restore_files(self, files: dict[str, bytes]) -> None:
        """Receives the `_extra_files` saved with the model, after `_restore`."""

    def warm(self) -> None:
        """Make now what a load leaves for the first `transform` / `inverse_transform` to make (ae's torch module,
        contrastive's ONNX Runtime session), so that a user's first upload does not wait for it: the server calls it
        on its worker pool once it listens. Nothing by default."""

    @property
    def n_features_out(self) -> int:
        check_is_fitted(self)
        return int(self._n_features_out)

    def _check_input(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected an (n_samples, n_pixels) matrix, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"{self.name}: input contains NaN or infinity")
        return X

    # -- persistence ---------------------------------------------------------------------------
    def save(self, repository: str | os.PathLike, version: int | None = None,
             catalog_features: np.ndarray | None = None, metadata: dict[str, Any] | None = None) -> Path:
        """Save into repository/NAME/VERSION/ (next free version by default). Returns that directory."""
        check_is_fitted(self)
        root = Path(repository) / self.name
        if version is None:
            version = max((int(p.name) for p in root.glob("*") if p.name.isdigit()), default=0) + 1
        final = root / str(version)
        tmp = root / f".{version}.partial-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=False)
        arrays = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._fitted_arrays().items()}
        if catalog_features is not None:
            arrays["catalog_features"] = np.ascontiguousarray(catalog_features, dtype=np.float32)
        save_file(arrays, str(tmp / WEIGHTS_FILE))
        extra = self._extra_files()
        for filename, data in extra.items():
            if Path(filename).name != filename or filename in (CONFIG_FILE, WEIGHTS_FILE) or filename.startswith("."):
                raise ModelRepositoryError(f"{self.name}: bad extra file name {filename!r}")
            (tmp / filename).write_bytes(data)
        config = {
            "name": self.name,
            "version": version,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.get_params(),
            "fitted": self._fitted_scalars(),
            "n_features_in": int(self.n_features_in_),
            "n_features_out": self.n_features_out,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **({"files": sorted(extra)} if extra else {}),
            **(metadata or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default) + "\n")
        if final.exists():
            raise ModelRepositoryError(f"{final} already exists; choose another version")
        os.replace(tmp, final)  # a crash mid-save leaves only a hidden .partial directory
        return final

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureModel":
        """Load from a version directory (models/NAME/VERSION) in a fresh process; no pickle involved."""
        model, _, _ = load_model_dir(path)
        if not isinstance(model, cls):
            raise ModelRepositoryError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, np.ndarray)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_model_dir(path: str | os.PathLike) -> tuple[FeatureModel, dict[str, Any], np.ndarray | None]:
    """Returns (model, config, catalog_features or None)."""
    from omokage.features import MODEL_CLASSES
    path = Path(path)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise ModelRepositoryError(f"{path} is not a model version directory (no {CONFIG_FILE}); "
                                   "fit one with `omokage fit CATALOG --out MODELS`")
    config = json.loads(cfg_path.read_text())
    cls = MODEL_CLASSES.get(config.get("name"))
    if cls is None:
        raise ModelRepositoryError(f"{path}: unknown model {config.get('name')!r}; known: {sorted(MODEL_CLASSES)}")
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config["params"].items()}
    model = cls(**params)
    arrays = load_file(str(path / WEIGHTS_FILE))
    model_arrays = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    model.n_features_in_ = config["n_features_in"]
    model._n_features_out = config["n_features_out"]
    model._restore(model_arrays, config.get("fitted", {}))
    files = {}
    for filename in config.get("files", []):
        if Path(filename).name != filename or not (path / filename).is_file():
            raise ModelRepositoryError(f"{path}: {filename!r}, listed in {CONFIG_FILE}, is missing; refit the model")
        files[filename] = (path / filename).read_bytes()
    if files:
        model._restore_files(files)
    return model, config, arrays.get("catalog_features")


def latest_version_dir(repository: str | os.PathLike, name: str) -> Path:
    root = Path(repository) / name
    versions = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / CONFIG_FILE).is_file()))
    if not versions:
        raise ModelRepositoryError(f"no fitted {name!r} model in {repository}; run `omokage fit CATALOG "
                                   f"--models {name} --out {repository}`")
    return root / str(versions[-1])
