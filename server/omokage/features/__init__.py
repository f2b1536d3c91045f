"""Feature models (scikit-learn estimators) and the model repository they are saved into."""

from omokage.features.autoencoder import ConvAutoencoder
from omokage.features.contrastive import ContrastiveEmbedding
from omokage.features.base import (FeatureModel, ModelRepositoryError, latest_version_dir, load_model_dir)
from omokage.features.linear import NMFFeatures, PCAFeatures, RawPixels

MODEL_CLASSES: dict[str, type[FeatureModel]] = {
    "raw": RawPixels,
    "pca": PCAFeatures,
    "nmf": NMFFeatures,
    "ae": ConvAutoencoder,
    "contrastive": ContrastiveEmbedding,
}
ALGORITHMS = tuple(MODEL_CLASSES)          # every model omokage can fit, load and serve
# what `omokage demo`, `omokage fit` and the benchmarks fit when not told otherwise: the study's four (contrastive
# is opt-in: `--models contrastive`; it adds minutes of training to the demo's first start)
DEFAULT_ALGORITHMS = ("raw", "pca", "nmf", "ae")


def make_model(name: str, n_components: int = 30, **params) -> FeatureModel:
    """A new, unfitted model by name: raw, pca, nmf, ae or contrastive."""
    try:
        cls = MODEL_CLASSES[name]
    except KeyError:
        raise ModelRepositoryError(f"unknown model {name!r}; choose from {', '.join(MODEL_CLASSES)}") from None
    if name != "raw":
        params.setdefault("n_components", n_components)
    return cls(**params)


__all__ = ["ALGORITHMS", "ContrastiveEmbedding", "ConvAutoencoder", "DEFAULT_ALGORITHMS", "FeatureModel",
           "MODEL_CLASSES", "ModelRepositoryError", "NMFFeatures", "PCAFeatures", "RawPixels", "latest_version_dir", "load_model_dir", "make_model"]
