"""Feature models (scikit-learn estimators that do not import scikit-learn: see base.FeatureModel) and the model
repository they are saved into."""

from omokage.features.autoencoder import ConvAutoencoder
from omokage.features.contrastive import ContrastiveEmbedding
from omokage.features.generator import ResidualDecoder
from omokage.features.base import (FeatureModel, ModelRepositoryError, latest_version_dir, load_model_dir)
from omokage.features.linear import NMFFeatures, PCAFeatures, RawPixels
from omokage.features.sketch import SketchModel

MODEL_CLASSES: dict[str, type[FeatureModel]] = {
    "raw": RawPixels,
    "pca": PCAFeatures,
    "nmf": NMFFeatures,
    "ae": ConvAutoencoder,
    "contrastive": ContrastiveEmbedding,
    "sketch": SketchModel,
    "gen": ResidualDecoder,                # PCA's latent + a learned residual decoder: a generator, not served
}
# models that are fitted and saved like the others but are not feature spaces to select in: the sketch model (live
# sketch search, omokage.sketch) and generators (previews)
NOT_SERVED = frozenset({"sketch", "gen"})
ALGORITHMS = tuple(n for n in MODEL_CLASSES if n not in NOT_SERVED)   # the feature spaces omokage serves
# what `omokage demo`, `omokage fit` and the benchmarks fit when not told otherwise: the study's four (contrastive
# is opt-in: `--models contrastive`; it adds minutes of training to the demo's first start)
DEFAULT_ALGORITHMS = ("raw", "pca", "nmf", "ae")


def make_model(name: str, n_components: int = 30, **params) -> FeatureModel:
    """A new, unfitted model by name: raw, pca, nmf, ae, contrastive, sketch or gen."""
    try:
        cls = MODEL_CLASSES[name]
    except KeyError:
        raise ModelRepositoryError(f"unknown model {name!r}; choose from {', '.join(MODEL_CLASSES)}") from None
    if name != "raw":
        params.setdefault("n_components", n_components)
    return cls(**params)


__all__ = ["ALGORITHMS", "NOT_SERVED", "ContrastiveEmbedding", "ConvAutoencoder", "DEFAULT_ALGORITHMS", "FeatureModel",
           "MODEL_CLASSES", "ModelRepositoryError", "NMFFeatures", "PCAFeatures", "RawPixels", "ResidualDecoder", "latest_version_dir", "load_model_dir", "make_model"]
