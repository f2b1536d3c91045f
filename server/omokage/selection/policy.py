"""Which faces to show next. The session owns the state; a policy only proposes candidates.

Policies see every session event through `observe`, so later ones (gaze dwell, sketches, a
learned preference) can steer without the session changing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from omokage.index import NearestNeighbourIndex
    from omokage.selection.belief import EvidenceTerm
    from omokage.selection.session import Event, Step


@dataclass(frozen=True)
class Candidate:
    id: int
    distance: float | None   # to the chosen item or the query image; None for a random pick
    probability: float | None = None   # the belief's mass on this face, for policies that keep a belief


_CACHE_LOCK = threading.Lock()   # the loop and the worker pool (a long `back` replays there, v1.7) share a space


@dataclass(frozen=True)
class FeatureSpace:
    """One algorithm's view of the catalog: its name, feature size and neighbour index."""

    name: str
    index: "NearestNeighbourIndex"
    dim: int

    @property
    def n_items(self) -> int:
        return len(self.index)

    @property
    def features(self) -> np.ndarray:
        return self.index.features

    @cached_property
    def distance_unit(self) -> float:
        """The median Euclidean distance between two random faces (20,000 pairs, fixed seed): the unit the preference
        model's temperatures are in, so that they mean the same in every space."""
        x = self.features
        rng = np.random.default_rng(0)
        a, b = rng.integers(0, len(x), size=(2, 20_000))
        a, b = a[a != b], b[a != b]
        pairwise = getattr(self.index, "pairwise", None)
        if pairwise is not None:
            d = pairwise[a, b].astype(np.float64)
        else:   # in chunks: raw pixels are 12,288-d
            d = np.concatenate([np.linalg.norm(x[a[s:s + 1024]] - x[b[s:s + 1024]], axis=1)
                                for s in range(0, len(a), 1024)] or [np.zeros(0)])
        unit = float(np.median(d)) if d.size else 0.0
        return unit if unit > 0 else 1.0

    @cached_property
    def _sq_norms(self) -> np.ndarray:
        norms = getattr(self.index, "sq_norms", None)   # the exact index keeps them already
        if norms is not None:
            return norms
        x = self.features
        return np.einsum("ij,ij->i", x, x)

    @cached_property
    def _recent(self) -> dict:
        return {}

    @cached_property
    def _augmented(self) -> np.ndarray:
        """(dim + 2, n_items) float32, C order: the features' transpose with a row of ones and a row of squared norms
        under it, so that [−2q, |q|², 1] · column j = |q − x_j|² (`_augmented_queries` scales by the unit)."""
        x = self.features
        out = np.empty((x.shape[1] + 2, len(x)), np.float32)
        out[:-2] = x.T
        out[-2] = 1.0
        out[-1] = self._sq_norms
        return out

    def _augmented_queries(self, ids: np.ndarray) -> np.ndarray:
        x = np.asarray(self.features[ids], dtype=np.float64)
        scale = 1.0 / self.distance_unit ** 2
        q = np.empty((len(ids), x.shape[1] + 2), np.float64)
        q[:, :-2] = -2.0 * x * scale
        q[:, -2] = np.asarray(self._sq_norms[ids], np.float64) * scale
        q[:, -1] = scale
        return q.astype(np.float32)

    def unit_distances_from(self, ids) -> np.ndarray:
        """(len(ids), n_items) distances from each of `ids` to every item, in `distance_unit`s (read-only).

        One step asks for the same grid's distances several times (the choice term, the passed-over term, the
        distances sent with the candidates): the last 8 results are kept (8 × 9 × n_items float32: 29 MB per space
        at 100k items)."""
        key = tuple(int(i) for i in np.asarray(ids).reshape(-1))
        recent = self._recent
        with _CACHE_LOCK:
            hit = recent.get(key)
        if hit is not None:
            return hit
        ids = np.asarray(key, dtype=np.int64)
        pairwise = getattr(self.index, "pairwise", None)
        if pairwise is not None:
            d = pairwise[ids] / self.distance_unit
        else:
            # the squared distances from one product (`unit_squared_distances_from`), then a square root in place:
            # at 100k items half the time of the norms, product, clamp, square root and division as separate passes
            d = self.unit_squared_distances_from(ids)
            np.sqrt(d, out=d)
        d.flags.writeable = False
        with _CACHE_LOCK:
            while len(recent) >= 8:
                recent.pop(next(iter(recent)), None)
            recent[key] = d
        return d

    def unit_squared_distances_from(self, ids) -> np.ndarray:
        """(len(ids), n_items) squared distances in units², a new writable array each call (not cached): for kernels
        of the squared distance, which need no square root."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pairwise = getattr(self.index, "pairwise", None)
        if pairwise is not None:
            d = pairwise[ids] / self.distance_unit
            return np.square(d, out=d)
        # one product gives |q − x|² in units² (see `_augmented`). abs, not a clamp at 0: a pair a rounding error apart
        # comes out ~3e-4 units either way, and abs is 5× faster
        d = self._augmented_queries(ids) @ self._augmented
        return np.abs(d, out=d)

    def unit_distances_between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) distances between two small sets of items, in distance units, without touching the rest."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        pairwise = getattr(self.index, "pairwise", None)
        if pairwise is not None:
            return pairwise[np.ix_(a, b)] / self.distance_unit
        x = self.features
        d2 = self._sq_norms[a, None] - 2 * (x[a] @ x[b].T) + self._sq_norms[None, b]
        return np.sqrt(np.maximum(d2, 0, out=d2), out=d2) / self.distance_unit

    def unit_distances_to(self, vector: np.ndarray) -> np.ndarray:
        """(n_items,) distances from a point of the space (a projected query) to every item, in `distance_unit`s."""
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        d2 = self._sq_norms - 2 * (self.features @ q) + float(q @ q)
        return np.sqrt(np.maximum(d2, 0, out=d2), out=d2) / self.distance_unit


@dataclass(frozen=True)
class PolicyContext:
    space: FeatureSpace
    rng: np.random.Generator
    shown: frozenset[int]
    grid_size: int
    history: tuple["Step", ...]


class CandidatePolicy(Protocol):
    """Proposes the faces of each grid. `initial`: the first grid (random, or near a query vector); `next`: after the
    user chose a face of the current grid (`ctx.history[-1]`), which must come first; `skip`: after "none of these";
    `add_evidence`: any other evidence about what the user wants (a rating, gaze), for policies that keep a belief."""

    def initial(self, ctx: PolicyContext, query: np.ndarray | None, evidence: Sequence["EvidenceTerm"] = ()
                ) -> list[Candidate]: ...

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]: ...

    def skip(self, ctx: PolicyContext) -> list[Candidate]: ...

    def add_evidence(self, ctx: PolicyContext, term: "EvidenceTerm") -> None: ...

    def observe(self, event: "Event") -> None: ...


def random_candidates(ctx: PolicyContext, count: int) -> list[Candidate]:
    n = ctx.space.n_items
    pool = n - len(ctx.shown)
    count = min(count, pool)
    if len(ctx.shown) == 0:
        ids = ctx.rng.choice(n, size=count, replace=False)
    else:
        ids = ctx.rng.choice(np.setdiff1d(np.arange(n), np.fromiter(ctx.shown, dtype=np.int64)), size=count, replace=False)
    return [Candidate(int(i), None) for i in ids]


class ChosenPlusNearest:
    """The reference study's policy: random (or nearest-to-image) first grid; then the chosen face
    followed by its `grid_size - 1` nearest neighbours that have not been shown yet."""

    name = "study"

    def initial(self, ctx: PolicyContext, query: np.ndarray | None, evidence=()) -> list[Candidate]:
        if evidence:
            # no belief to keep, but a drawing still picks the first grid: the faces it fits best
            total = sum(np.asarray(t.log_likelihood(ctx.space), dtype=np.float64) for t in evidence)
            top = np.argsort(-total, kind="stable")[:ctx.grid_size]
            return [Candidate(int(i), None) for i in top]
        if query is None:
            return random_candidates(ctx, ctx.grid_size)
        return [Candidate(n.id, n.distance) for n in ctx.space.index.search(query, ctx.grid_size, ctx.shown)]

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]:
        near = ctx.space.index.neighbours_of(chosen, ctx.grid_size - 1, ctx.shown)
        return [Candidate(chosen, 0.0)] + [Candidate(n.id, n.distance) for n in near]

    def skip(self, ctx: PolicyContext) -> list[Candidate]:
        """The study had no "none of these"; without a belief the only honest answer is 9 fresh random faces."""
        return random_candidates(ctx, ctx.grid_size)

    def add_evidence(self, ctx: PolicyContext, term: "EvidenceTerm") -> None:
        pass   # no belief to update: the study's policy follows the last click only

    def observe(self, event: "Event") -> None:
        pass


class RandomPolicy(ChosenPlusNearest):
    """The floor: the chosen face plus random unseen faces (ignores features entirely)."""

    name = "random"

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]:
        return [Candidate(chosen, 0.0)] + random_candidates(ctx, ctx.grid_size - 1)
