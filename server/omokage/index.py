"""Euclidean k-nearest-neighbour search over a model's features, skipping items already shown.

`build_index` picks the implementation: exact numpy search below `FAISS_THRESHOLD` items, a faiss
HNSW graph at or above it. Both answer `search(query, k, exclude)` with the same types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Protocol

import numpy as np

FAISS_THRESHOLD = 100_000


@dataclass(frozen=True)
class Neighbour:
    id: int
    distance: float


class NearestNeighbourIndex(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def search(self, query: np.ndarray, k: int, exclude: Collection[int] = ()) -> list[Neighbour]: ...

    def neighbours_of(self, item_id: int, k: int, exclude: Collection[int] = ()) -> list[Neighbour]: ...


class ExactIndex:
    """Brute force in float32 with precomputed squared norms: ‖q − x‖² = ‖q‖² − 2 q·x + ‖x‖².

    For catalogs up to `pairwise_limit` items the full distance matrix is precomputed (64 MB at
    4,096 items), so the selection loop's "neighbours of the chosen item" is a row lookup rather
    than a scan; that matters for raw pixels (12,288-d), not for 30-d features.
    """

    kind = "exact"

    def __init__(self, features: np.ndarray, pairwise_limit: int = 4096):
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        if self.features.ndim != 2 or not np.isfinite(self.features).all():
            raise ValueError("features must be a finite (n_items, n_features) matrix")
        self.sq_norms = np.einsum("ij,ij->i", self.features, self.features)
        self._pairwise: np.ndarray | None = None
        if len(self.features) <= pairwise_limit:
            d2 = self.sq_norms[:, None] - 2 * (self.features @ self.features.T) + self.sq_norms[None, :]
            self._pairwise = np.sqrt(np.maximum(d2, 0, out=d2), out=d2)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def pairwise(self) -> np.ndarray | None:
        """The precomputed (n, n) distance matrix, or None above `pairwise_limit` items."""
        return self._pairwise

    def _distances(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        d2 = self.sq_norms - 2 * (self.features @ q) + float(q @ q)
        return np.sqrt(np.maximum(d2, 0, out=d2), out=d2)

    def search(self, query, k, exclude=()):
        return _top_k(self._distances(query), k, exclude)

    def neighbours_of(self, item_id, k, exclude=()):
        dist = self._pairwise[item_id] if self._pairwise is not None else self._distances(self.features[item_id])
        return _top_k(dist, k, set(exclude) | {item_id})


def _top_k(dist: np.ndarray, k: int, exclude: Collection[int]) -> list[Neighbour]:
    n = len(dist)
    k = max(0, min(k, n - len(exclude)))
    if k == 0:
        return []
    # Fetch a few extra so that excluded items can be dropped without a second pass.
    want = min(n, k + len(exclude))
    part = np.argpartition(dist, want - 1)[:want] if want < n else np.arange(n)
    part = part[np.lexsort((part, dist[part]))]  # by distance, ties by id: deterministic
    excl = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
    out = [Neighbour(int(i), float(dist[i])) for i in part if int(i) not in excl]
    return out[:k]


class FaissIndex:
    """faiss HNSW (approximate) over the same features, for catalogs of 100k items and more."""

    kind = "faiss-hnsw"

    def __init__(self, features: np.ndarray, m: int = 32, ef_construction: int = 80, ef_search: int = 128):
        import faiss
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.index = faiss.IndexHNSWFlat(self.features.shape[1], m)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(self.features)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, query, k, exclude=()):
        excl = set(exclude)
        k = max(0, min(k, len(self) - len(excl)))
        if k == 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        fetch = k + len(excl)
        while True:
            d2, ids = self.index.search(q, min(fetch, len(self)))
            out = [Neighbour(int(i), float(np.sqrt(max(d, 0.0)))) for d, i in zip(d2[0], ids[0])
                   if i >= 0 and int(i) not in excl]
            if len(out) >= k or fetch >= len(self):
                return out[:k]
            fetch *= 2  # HNSW can return fewer hits than asked; widen and retry

    def neighbours_of(self, item_id, k, exclude=()):
        return self.search(self.features[item_id], k, set(exclude) | {item_id})


def index_kind_for(n_items: int) -> str:
    """Exact search below FAISS_THRESHOLD items, faiss HNSW at or above it."""
    return "faiss" if n_items >= FAISS_THRESHOLD else "exact"


def build_index(features: np.ndarray, kind: str = "auto") -> ExactIndex | FaissIndex:
    if kind == "auto":
        kind = index_kind_for(len(features))
    if kind == "exact":
        return ExactIndex(features)
    if kind in ("faiss", "faiss-hnsw"):
        return FaissIndex(features)
    raise ValueError(f"unknown index kind {kind!r}: auto, exact or faiss")
