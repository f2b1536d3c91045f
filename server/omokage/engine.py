"""A catalog plus its fitted models: projection of images, neighbour search, new sessions.

The engine is shared, read-only state; sessions (one per user) hold everything that changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omokage.catalog.store import Catalog, encode_texture, images_to_matrix, matrix_to_images
from omokage.errors import UserError
from omokage.features import ALGORITHMS, FeatureModel, latest_version_dir, load_model_dir
from omokage.index import Neighbour, build_index
from omokage.selection import CandidatePolicy, FeatureSpace, SelectionSession
from omokage.selection.user_model import UserModel


@dataclass
class LoadedModel:
    name: str
    model: FeatureModel
    version_dir: Path
    space: FeatureSpace
    # per-dimension factors of the space people choose by (a user model's fitted metric), or None: the space holds
    # the model's features times these, and projected queries are scaled the same way
    scales: np.ndarray | None = None

    @property
    def features(self) -> np.ndarray:
        """The model's own features of the catalog (without the metric's scales)."""
        f = self.space.features
        return f if self.scales is None else f / self.scales


def metric_space(name: str, features: np.ndarray, scales: np.ndarray | None, index_kind: str = "auto") -> FeatureSpace:
    """The feature space a belief compares faces in: the features, each dimension times `scales` when a user model
    fitted a metric (`omokage fit user-model`)."""
    x = features if scales is None else (features * scales).astype(np.float32)
    space = FeatureSpace(name, build_index(x, index_kind), int(x.shape[1]))
    space.distance_unit   # computed at start-up, not on some user's first step
    return space


@dataclass(frozen=True)
class QueryResult:
    vector: np.ndarray
    reconstruction: np.ndarray   # (H, W, 3) uint8
    neighbours: list[Neighbour]


def single_threaded_blas() -> None:
    """Serving runs small matrix products (9 × 30 × n_items per step) for many sessions at once: on a few shared cores
    a multi-threaded BLAS spins up threads that fight each other and the event loop (16 ms instead of 0.3 ms for one
    step at 10k items on 2 busy cores). One BLAS thread per call; concurrency comes from sessions. Fitting, which
    wants every core, does not open an Engine."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1, user_api="blas")


def load_fitted(catalog: Catalog, catalog_path, models_path, name: str, fingerprint: str | None = None,
                index_kind: str = "auto", user_model: UserModel | None = None) -> LoadedModel:
    """The latest fitted version of model `name` in `models_path`, checked against the catalog, with its index."""
    fingerprint = fingerprint or catalog.fingerprint()
    version_dir = latest_version_dir(models_path, name)
    model, config, features = load_model_dir(version_dir)
    if config.get("catalog", {}).get("fingerprint") != fingerprint or features is None \
            or len(features) != len(catalog):
        raise UserError(f"{version_dir} was fitted on another catalog than {catalog_path}; give the models fitted on "
                        f"{catalog_path} (--models), or fit them into a folder of their own: `omokage fit "
                        f"{catalog_path} --out MODELS` (fitting into {models_path} would add versions the other "
                        "catalog's server then refuses)")
    scales = user_model.scales(name, int(features.shape[1])) if user_model is not None else None
    return LoadedModel(name, model, version_dir, metric_space(name, features, scales, index_kind), scales)


def load_sketch(catalog: Catalog, models_path, fingerprint: str | None = None, preview_backend: str = "auto",
                preview_size: int | None = None):
    """The live sketch search of the latest fitted `sketch` model in `models_path` (a `SketchService`), or None when
    there is none or it was fitted on another catalog (sketching is then off; selection works as before).
    `preview_backend`: what decodes its previews (omokage.sketch.service.make_preview_decoder)."""
    from omokage.features import ModelRepositoryError
    from omokage.sketch import SketchModel, SketchService
    from omokage.sketch.service import make_preview_decoder
    try:
        version_dir = latest_version_dir(models_path, "sketch")
        model, config, _ = load_model_dir(version_dir)
    except ModelRepositoryError:
        return None
    if not isinstance(model, SketchModel) or \
            config.get("catalog", {}).get("fingerprint") != (fingerprint or catalog.fingerprint()):
        return None
    from omokage.sketch.service import PREVIEW_SIZE
    # the layouts a live drawing reads, made now: made lazily they held the event loop ~70 ms on the first sketch.begin
    model.transposed_maps()
    model.transposed_bases()
    size = preview_size or PREVIEW_SIZE
    decoder = make_preview_decoder(model, models_path, preview_backend, size)
    if getattr(decoder, "name", None) == "onnxruntime":
        # ~3 ms an image on a CPU core, 100 times PCA's: in the live loop it held every stroke's result (p50 337 ms at
        # 50 drawers, benchmarks/results/sketch.md); results get PCA's preview and this one follows (v1.6), decoded in
        # a process of its own (SharpenProcess), not the sketch worker's: its worker spec (a copy of the model's
        # arrays, for the sketch worker) is not needed
        decoder.worker_spec = None
        return SketchService(model, None, size, sharp=decoder)
    return SketchService(model, decoder, size)


class Engine:
    def __init__(self, catalog: Catalog, models: dict[str, LoadedModel], user_model: UserModel | None = None,
                 sketch=None):
        if not models:
            raise UserError("no fitted model to serve; run `omokage fit CATALOG --out MODELS` first")
        self.catalog = catalog
        self.models = models
        self.user_model = user_model   # fitted choice temperatures (`omokage fit user-model`), or None: defaults
        self.sketch = sketch           # live sketch search (omokage.sketch.SketchService), or None

    @classmethod
    def open(cls, catalog_path: str | os.PathLike, models_path: str | os.PathLike,
             algorithms: list[str] | None = None, index_kind: str = "auto",
             apply_user_metric: bool = True, preview_backend: str = "auto",
             preview_size: int | None = None) -> "Engine":
        single_threaded_blas()
        catalog = Catalog(catalog_path)
        fingerprint = catalog.fingerprint()
        wanted = list(algorithms) if algorithms else [a for a in ALGORITHMS if (Path(models_path) / a).is_dir()]
        if not wanted:
            if Path(models_path).resolve() == Path(catalog_path).resolve():
                # the catalog folder given as the models folder: fitting into it would mix the two
                here = Path(catalog_path).resolve()
                models_path = here.with_name(here.name + "-models")
                raise UserError(f"the models folder is the catalog folder {catalog_path}: models live in a folder "
                                f"of their own. Run `omokage fit {catalog_path} --out {models_path}` and give "
                                f"--models {models_path}")
            raise UserError(f"no fitted model in {models_path}; run `omokage fit {catalog_path} --out {models_path}`")
        user_model = UserModel.load_latest(models_path, fingerprint)
        models = {name: load_fitted(catalog, catalog_path, models_path, name, fingerprint, index_kind,
                                    user_model if apply_user_metric else None)
                  for name in wanted}
        return cls(catalog, models, user_model, load_sketch(catalog, models_path, fingerprint, preview_backend,
                                                                   preview_size))

    def add_model(self, loaded: LoadedModel) -> None:
        """Serve one more model (one fitted in the background while the others were already served). Call it
        on the thread that serves sessions: sessions read `models` between messages, never during one."""
        models = {**self.models, loaded.name: loaded}
        order = {name: i for i, name in enumerate(ALGORITHMS)}
        self.models = dict(sorted(models.items(), key=lambda kv: order.get(kv[0], len(order))))

    @property
    def algorithms(self) -> list[str]:
        return list(self.models)

    def space(self, algorithm: str) -> FeatureSpace:
        return self.models[algorithm].space

    def policy_params(self, algorithm: str) -> dict:
        """Parameters for `make_policy` in this space: the fitted choice temperature, where there is one."""
        return self.user_model.policy_params(algorithm) if self.user_model is not None else {}

    def project(self, algorithm: str, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 at the catalog's size → (feature vector in the space's coordinates, reconstruction)."""
        model = self.models[algorithm].model
        z = model.transform(images_to_matrix(rgb[None]))
        recon = matrix_to_images(model.inverse_transform(z), self.catalog.image_size)[0]
        return self._in_space(algorithm, z)[0], recon

    def project_many(self, algorithm: str, images, chunk: int = 64) -> np.ndarray:
        """Feature vectors of many images (H, W, 3) in the space's coordinates, `chunk` at a time."""
        model = self.models[algorithm].model
        z = np.concatenate([model.transform(images_to_matrix(np.stack(images[s:s + chunk])))
                            for s in range(0, len(images), chunk)]).astype(np.float32)
        return self._in_space(algorithm, z)

    def _in_space(self, algorithm: str, z: np.ndarray) -> np.ndarray:
        """A model's features → the served space's coordinates (times a learned metric's scales, if any)."""
        scales = self.models[algorithm].scales
        return z if scales is None else z * scales

    def query_image(self, algorithm: str, rgb: np.ndarray, k: int = 9) -> QueryResult:
        vector, recon = self.project(algorithm, rgb)
        return QueryResult(vector, recon, self.space(algorithm).index.search(vector, k))

    IDEAL_LATENT = "pca"   # the generator whose latent the ideal face is searched in (linear: decoded exactly)

    @property
    def can_generate_ideal(self) -> bool:
        return self.IDEAL_LATENT in self.models

    def ideal(self, evidence, algorithm: str, near: int | None, exclude, *, seed: int = 0, k: int = 9):
        """The ideal face (omokage.selection.ideal) of a selection's `evidence` (a `SessionEvidence`, whose belief is
        rebuilt in `algorithm`'s space when its policy kept none), near the face `near` (None: the last face chosen),
        searched in PCA's latent: (IdealFace, its decoded image as a JPEG Texture at the catalog's size). Its
        `nearest` are the `k` catalog faces nearest to it, `exclude` (the faces already shown) left out."""
        from omokage.selection.ideal import evidence_favourite, evidence_probabilities, ideal_face
        probabilities = evidence_probabilities(evidence, self.space(algorithm))
        near = evidence_favourite(evidence, probabilities) if near is None else int(near)
        pca = self.models[self.IDEAL_LATENT]
        found = ideal_face(probabilities, pca.space, pca.features, near, seed=seed, k=k, exclude=exclude)
        rgb = matrix_to_images(pca.model.inverse_transform(found.latent[None]), self.catalog.image_size)[0]
        return found, encode_texture(rgb, "jpeg")

    def new_session(self, algorithm: str, seed: int | None = None, policy: CandidatePolicy | None = None,
                    grid_size: int = 9) -> SelectionSession:
        return SelectionSession(self.space(algorithm), seed=seed, policy=policy, grid_size=grid_size)
