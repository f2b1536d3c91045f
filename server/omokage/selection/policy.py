"""Which faces to show next. The session owns the state; a policy only proposes candidates.

Policies see every session event through `observe`, so later ones (gaze dwell, sketches, a
learned preference) can steer without the session changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from omokage.index import NearestNeighbourIndex
    from omokage.selection.session import Event, Step


@dataclass(frozen=True)
class Candidate:
    id: int
    distance: float | None   # to the chosen item or the query image; None for a random pick


@dataclass(frozen=True)
class FeatureSpace:
    """One algorithm's view of the catalog: its name, feature size and neighbour index."""

    name: str
    index: "NearestNeighbourIndex"
    dim: int

    @property
    def n_items(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class PolicyContext:
    space: FeatureSpace
    rng: np.random.Generator
    shown: frozenset[int]
    grid_size: int
    history: tuple["Step", ...]


class CandidatePolicy(Protocol):
    def initial(self, ctx: PolicyContext, query: np.ndarray | None) -> list[Candidate]: ...

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]: ...

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

    def initial(self, ctx: PolicyContext, query: np.ndarray | None) -> list[Candidate]:
        if query is None:
            return random_candidates(ctx, ctx.grid_size)
        return [Candidate(n.id, n.distance) for n in ctx.space.index.search(query, ctx.grid_size, ctx.shown)]

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]:
        near = ctx.space.index.neighbours_of(chosen, ctx.grid_size - 1, ctx.shown)
        return [Candidate(chosen, 0.0)] + [Candidate(n.id, n.distance) for n in near]

    def observe(self, event: "Event") -> None:
        pass


class RandomPolicy(ChosenPlusNearest):
    """The floor: the chosen face plus random unseen faces (ignores features entirely)."""

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]:
        return [Candidate(chosen, 0.0)] + random_candidates(ctx, ctx.grid_size - 1)
