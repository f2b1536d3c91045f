"""The "ideal face": the point of the generator's latent space the belief likes best, near the user's favourite.

Seed 001's idea (issue 14): instead of only showing catalog faces, search the generator's latent space (PCA's; the
`gen` decoder takes the same latent) for the face the preference model scores highest, subject to staying similar to
the face the user last chose, and show that generated face as a preview together with the catalog faces nearest to it.

**What is maximised.** The belief (`omokage.selection.belief.Belief`) is a posterior p over catalog faces. It is
turned into a preference over *any* latent z by a kernel density of the posterior over the catalog latents z_i:

    score(z) = log Σ_i p_i · exp(−‖z − z_i‖² / 2h²)          (distances in the space's distance units)

so a latent scores high where posterior mass is close by. The bandwidth h (default 0.25 units, where the median
distance between two random faces is 1 and a face's nearest neighbour is typically 0.3–0.5 away on the catalogs
measured) decides how much the ideal blends: h → 0 gives back the most probable catalog face in reach; a large h
gives the posterior mean. Faces with negligible posterior mass (outside the smallest set holding 1 − 1e-9 of it) are
left out of the sum; the error that makes in the score is below 1e-9 nats.

**The similarity constraint** ‖z − z_fav‖ ≤ r (r in distance units) is handled by **projection with a penalty**
(Hansen's boundary repair for CMA-ES): a sample x outside the ball is evaluated at its projection onto the ball, and
its fitness is charged ‖x − proj(x)‖² / 2h², the same quadratic the kernel charges for distance. The projection makes
every evaluated point and the returned latent feasible, exactly, whatever the number of generations (a pure penalty
only approaches the boundary from outside, and after a handful of generations can still return a face that is not
similar enough); the penalty keeps the search distribution from drifting away from the ball, where all its samples
would project onto the same few boundary points and their ranking would carry no information.

**The search.** CMA-ES (the `cma` package) with a population of 9 (one grid), started from the best of: the
favourite itself, the projection of the posterior mean, and the projections of the most probable faces; the step
sizes per coordinate follow the catalog's spread along each latent axis (PCA's leading axes vary most). A handful of
generations (default 8: 8 × 9 = 72 evaluations, plus 9 to pick the start) is a refinement, not a global search: the
objective is a sum of up to N narrow bumps. The best point ever evaluated is kept, so more generations never lower
the returned score. Sampling draws from a `numpy.random.Generator` seeded by `seed`: the result is the same for the
same inputs and seed (numpy's global random state is neither read nor changed), unless `max_seconds` cuts the search
short, which depends on the clock.

Pure numpy + cma, no I/O (cma's logging to files is switched off). BLAS runs single-threaded during the search, as it
does in the server (`omokage.engine.single_threaded_blas`): a 30 × 30 eigendecomposition per generation on a
multi-threaded BLAS made one call 10 times slower on this 2-core machine.

Decoding the returned latent into a preview image is the generator's job: `PCAFeatures.inverse_transform(latent[None])`
or the sharper `gen` decoder's `inverse_transform` (same latent), then `omokage.catalog.store.matrix_to_images`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from omokage.selection.belief import Belief
    from omokage.selection.policy import FeatureSpace

POPULATION = 9            # one grid of candidates per generation
DEFAULT_GENERATIONS = 8   # 72 evaluations after the start: ~8 ms at 1,500 faces, 30 dims (`omokage bench ideal`)
DEFAULT_RADIUS = 0.6      # distance units from the favourite: about its 20th-nearest catalog face on generated faces
DEFAULT_BANDWIDTH = 0.25  # distance units: the kernel that turns the posterior over faces into a score over latents
DEFAULT_NEAREST = 9       # catalog faces returned nearest to the ideal (one grid)
MASS_KEPT = 1 - 1e-9      # posterior mass the score sums over (the rest changes it by < 1e-9 nats)


@dataclass(frozen=True)
class IdealFace:
    """What `ideal_face` found. Distances are in the space's distance units (median distance of two random faces)."""

    latent: np.ndarray                    # (d,) float32: decode with the generator (PCA's inverse_transform, `gen`)
    score: float                          # log Σ p_i exp(−‖z − z_i‖² / 2h²) at `latent`
    nearest: tuple[int, ...]              # catalog ids nearest to `latent`, nearest first (`exclude` left out)
    nearest_distances: tuple[float, ...]
    favourite: int | None                 # the favourite's catalog id (None: it was given as a latent)
    favourite_distance: float             # ‖latent − z_fav‖ in units, ≤ radius
    radius: float
    bandwidth: float
    generations: int                      # CMA-ES generations run
    evaluations: int                      # objective evaluations, the start's candidates included
    best_by_generation: tuple[float, ...]  # best score so far: after the start, then after each generation
    seconds: float


def latent_distance_unit(latents: np.ndarray) -> float:
    """The median Euclidean distance between two random faces, computed as `FeatureSpace.distance_unit` does (20,000
    pairs, seed 0), for latents that are not the space's own features (e.g. a space reweighted by a fitted metric)."""
    x = np.asarray(latents, dtype=np.float32)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(x), size=(2, 20_000))
    a, b = a[a != b], b[a != b]
    d = np.concatenate([np.linalg.norm(x[a[s:s + 4096]] - x[b[s:s + 4096]], axis=1)
                        for s in range(0, len(a), 4096)] or [np.zeros(0)])
    unit = float(np.median(d)) if d.size else 0.0
    return unit if unit > 0 else 1.0


class _Objective:
    """score(z) and the ball constraint, vectorised over a population. Works in units: z / unit."""

    def __init__(self, p: np.ndarray, latents_u: np.ndarray, bandwidth: float):
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        m = int(np.searchsorted(cum, MASS_KEPT * cum[-1])) + 1
        keep = order[:min(m, len(p))]
        self.z = latents_u[keep]                                   # (M, d), units
        self.sq = np.einsum("ij,ij->i", self.z, self.z)
        self.log_p = np.log(p[keep])
        self.inv2h2 = 1.0 / (2.0 * bandwidth * bandwidth)
        self.evaluations = 0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """(m,) scores of the rows of X (m, d), in units."""
        d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ self.z.T) + self.sq[None, :]
        a = self.log_p[None, :] - np.maximum(d2, 0.0) * self.inv2h2
        top = a.max(axis=1)
        self.evaluations += len(X)
        return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def _project(X: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of X projected onto the ball (centre, radius), and how far each was moved."""
    v = X - centre
    n = np.linalg.norm(v, axis=1)
    inside = radius * (1 - 1e-6)     # a hair inside, so that the float32 latent returned is inside too
    scale = np.where(n > inside, inside / np.maximum(n, 1e-300), 1.0)
    return centre + v * scale[:, None], np.maximum(n - radius, 0.0)


_BLAS = None


def _one_blas_thread():
    """A context that runs BLAS on one thread (a no-op where threadpoolctl is missing)."""
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")
    except Exception:   # threadpoolctl absent or unable to inspect the libraries: run as is
        import contextlib
        return contextlib.nullcontext()


def ideal_face(belief: "Belief | np.ndarray", space: "FeatureSpace", latents: np.ndarray,
               favourite: "int | np.ndarray", *, radius: float = DEFAULT_RADIUS,
               bandwidth: float = DEFAULT_BANDWIDTH, generations: int = DEFAULT_GENERATIONS,
               population: int = POPULATION, seed: int = 0, k: int = DEFAULT_NEAREST,
               exclude: Sequence[int] | np.ndarray = (), max_seconds: float | None = None,
               unit: float | None = None) -> IdealFace:
    """The latent the belief scores highest within `radius` of the favourite, by CMA-ES (see the module docstring).

    belief: a `Belief`, or its probabilities (n_items,). space: the `FeatureSpace` the belief lives in (its
    `distance_unit` is the unit of `radius` and `bandwidth`). latents: (n_items, d) the catalog in the generator's
    latent space: for PCA, the `pca` model's features (`Engine.models["pca"].features`, which are the served space's
    features unless a fitted metric reweights them; the unit is then recomputed in latent coordinates). favourite: the
    catalog id of the face the user last chose, or a latent (d,). radius: r > 0 in distance units (`math.inf`: no
    constraint). k: how many nearest catalog faces to return; exclude: ids never returned among them (e.g. faces
    already shown). max_seconds: stop between generations once the next would end past this budget (then the result
    depends on the clock); None: run all `generations`. unit: override the distance unit.
    """
    t0 = time.perf_counter()
    latents = np.asarray(latents)
    if latents.ndim != 2 or len(latents) == 0:
        raise ValueError(f"latents must be an (n_items, d) matrix, not shape {latents.shape}")
    n, dim = latents.shape
    if dim < 2:
        raise ValueError("the ideal face needs a latent space of at least 2 dimensions (CMA-ES does not run in 1)")
    if space.n_items != n:
        raise ValueError(f"latents has {n} rows but the space has {space.n_items} items")
    if not np.isfinite(latents).all():
        raise ValueError("latents must be finite")
    p = np.asarray(belief.probabilities() if hasattr(belief, "probabilities") else belief, dtype=np.float64)
    if p.shape != (n,) or not np.isfinite(p).all() or (p < 0).any() or not p.sum() > 0:
        raise ValueError(f"the belief must be {n} finite probabilities ≥ 0 with a positive sum")
    p = p / p.sum()
    for name, value in (("radius", radius), ("bandwidth", bandwidth)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or math.isnan(value) or not value > 0:
            raise ValueError(f"{name} must be a positive number of distance units, not {value!r}")
    if not math.isfinite(bandwidth):
        raise ValueError("bandwidth must be finite")
    if int(generations) != generations or generations < 0:
        raise ValueError(f"generations must be a whole number ≥ 0, not {generations!r}")
    if int(population) != population or population < 2:
        raise ValueError(f"population must be a whole number ≥ 2, not {population!r}")
    if int(k) != k or k < 0:
        raise ValueError(f"k must be a whole number ≥ 0, not {k!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError("max_seconds must be positive (or None: no time budget)")
    ex = np.asarray(list(exclude), dtype=np.int64).reshape(-1)
    if ex.size and (ex.min() < 0 or ex.max() >= n):
        raise ValueError(f"exclude holds ids outside the catalog (0 to {n - 1})")

    if isinstance(favourite, (int, np.integer)) and not isinstance(favourite, bool):
        if not 0 <= int(favourite) < n:
            raise ValueError(f"favourite {favourite} is not a catalog id (0 to {n - 1})")
        fav_id: int | None = int(favourite)
        z_fav = latents[fav_id].astype(np.float64)
    else:
        fav_id = None
        z_fav = np.asarray(favourite, dtype=np.float64).reshape(-1)
        if z_fav.shape != (dim,):
            raise ValueError(f"the favourite must be a catalog id or a latent of {dim} numbers, not shape "
                             f"{np.asarray(favourite).shape}")
        if not np.isfinite(z_fav).all():
            raise ValueError("the favourite's latent is not finite (NaN or infinite)")

    if unit is None:
        own = space.features
        unit = space.distance_unit if (own.shape == latents.shape and np.array_equal(own, latents)) \
            else latent_distance_unit(latents)
    if not (unit > 0 and math.isfinite(unit)):
        raise ValueError(f"unit must be a positive distance, not {unit!r}")
    unit = float(unit)
    radius, bandwidth = float(radius), float(bandwidth)

    with _one_blas_thread():
        zu = latents.astype(np.float64) / unit          # work in units: radius and bandwidth apply as they are
        centre = z_fav / unit
        objective = _Objective(p, zu, bandwidth)

        def fitness(X):     # to minimise: −score at the projection + the penalty for leaving the ball
            Xp, moved = _project(X, centre, radius)
            s = objective(Xp)
            return Xp, s, -s + moved ** 2 / (2 * bandwidth * bandwidth)

        # the start: the favourite, the posterior mean and the most probable faces, each projected into the ball
        top = np.argsort(-p, kind="stable")[:max(population - 2, 1)]
        starts = np.vstack([centre[None, :], (p @ zu)[None, :], zu[top]])
        starts_p, start_s, _ = fitness(starts)
        best = int(np.argmax(start_s))
        best_z, best_s = starts_p[best].copy(), float(start_s[best])
        history = [best_s]

        done = 0
        if generations > 0:
            import cma
            spread = zu.std(axis=0)
            spread = np.where(spread > 0, spread, spread.max() if spread.max() > 0 else 1.0)
            stds = spread / math.sqrt(float(np.mean(spread ** 2)))       # rms 1: σ0 is a length in units
            # a first step of about a quarter of the bandwidth: the objective is a sum of bumps of width h, and the
            # start already sits near one; wider steps mostly land in the valleys (measured: 0.25 h gains the most
            # within 8 generations, 2 h nothing)
            sigma0 = 0.25 * bandwidth / math.sqrt(dim)
            rng = np.random.default_rng(seed)
            options = {"popsize": int(population), "CMA_stds": stds, "seed": float("nan"),
                       "randn": lambda *shape: rng.standard_normal(shape),
                       "verbose": -9, "verb_log": 0, "verb_disp": 0, "verb_time": False,
                       "maxiter": int(generations) + 1, "tolfun": 0, "tolx": 0, "tolflatfitness": 10 ** 9,
                       "tolfunhist": 0, "tolstagnation": 10 ** 9}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                es = cma.CMAEvolutionStrategy(starts_p[best], sigma0, options)
                gen_start = time.perf_counter()
                for g in range(int(generations)):
                    if max_seconds is not None and g > 0:
                        per_generation = (time.perf_counter() - gen_start) / g
                        if time.perf_counter() - t0 + per_generation > max_seconds:
                            break
                    X = np.asarray(es.ask(), dtype=np.float64)
                    Xp, s, f = fitness(X)
                    es.tell(list(X), [float(v) for v in f])
                    i = int(np.argmax(s))
                    if s[i] > best_s:
                        best_z, best_s = Xp[i].copy(), float(s[i])
                    history.append(best_s)
                    done += 1

        # the catalog faces nearest the ideal
        d = np.sqrt(np.maximum(((zu - best_z) ** 2).sum(axis=1), 0.0))
        allowed = np.ones(n, bool)
        allowed[ex] = False
        ids = np.flatnonzero(allowed)
        kk = min(int(k), len(ids))
        if kk:
            part = ids[np.argpartition(d[ids], kk - 1)[:kk]] if kk < len(ids) else ids
            nearest = part[np.lexsort((part, d[part]))]
        else:
            nearest = np.zeros(0, np.int64)
        fav_d = float(np.linalg.norm(best_z - centre))

    return IdealFace(latent=(best_z * unit).astype(np.float32), score=best_s,
                     nearest=tuple(int(i) for i in nearest), nearest_distances=tuple(float(d[i]) for i in nearest),
                     favourite=fav_id, favourite_distance=fav_d, radius=radius, bandwidth=bandwidth,
                     generations=done, evaluations=objective.evaluations, best_by_generation=tuple(history),
                     seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class SessionEvidence:
    """What a selection session's evidence says, snapshotted so that another thread can turn it into a belief: the
    policy's own posterior when it keeps one (`thompson`, `infogain`, ...), else what `study` and `random` (which keep
    none) saw the user do, to replay. Taking it is cheap (no belief is built), so the event loop can."""

    probabilities: np.ndarray | None                    # a belief policy's posterior; None: replay what follows
    choices: tuple[tuple[tuple[int, ...], int], ...]   # (the grid, the face chosen from it), in order
    skips: tuple[tuple[int, ...], ...]                  # grids passed over with "none of these"
    ratings: tuple[tuple[int, int], ...]                # (face, its latest rating): a re-rating replaces the earlier
    on_screen: tuple[int, ...]                          # the grid shown now
    last_chosen: int | None                             # the last face chosen, unless a skip or the start came after


def snapshot(session) -> SessionEvidence:
    last_chosen = None
    for event in reversed(session.events):   # the favourite: the last face chosen, unless a skip or start came after
        if event.kind == "choose":
            last_chosen = int(event.item)
            break
        if event.kind in ("skip", "start"):
            break
    belief = getattr(session.policy, "belief", None)
    if belief is not None and belief.space is session.space:   # the belief has it all
        return SessionEvidence(belief.probabilities().copy(), (), (), (), tuple(session.current.ids), last_chosen)
    choices, skips = [], []
    for event in session.events:
        if event.kind == "choose":   # the grid it was chosen from is the one before the grid it brought
            choices.append((session.history[event.step - 2].ids, int(event.item)))
        elif event.kind == "skip":
            skips.append(tuple(int(i) for i in event.detail["skipped"]))
    return SessionEvidence(None, tuple(choices), tuple(skips), tuple(sorted(session.ratings.items())),
                           tuple(session.current.ids), last_chosen)


def evidence_probabilities(evidence: SessionEvidence, space: "FeatureSpace") -> np.ndarray:
    """The posterior the evidence gives in `space` (n_items,): the belief policy's own, or one rebuilt from the
    choices, skips and ratings with the default user model (the terms a belief policy adds for the same events)."""
    from omokage.selection.belief import Belief, ChoiceTerm, PassedOverTerm, RatingTerm, SkipTerm
    if evidence.probabilities is not None:
        return evidence.probabilities
    belief = Belief(space)
    for grid, chosen in evidence.choices:
        belief.add(ChoiceTerm(grid, chosen))
        belief.add(PassedOverTerm(grid, spare=(chosen,)))
    for grid in evidence.skips:
        belief.add(SkipTerm(grid))
        belief.add(PassedOverTerm(grid))
    for item, rating in evidence.ratings:   # one term per face: its latest rating (a re-rating replaces)
        belief.add(RatingTerm(item, rating))
    return belief.probabilities()


def evidence_favourite(evidence: SessionEvidence, probabilities: np.ndarray) -> int:
    """The face an ideal should stay near when the user named none: the last face they chose, else (after a start or
    a skip) the most probable face of the grid on screen."""
    if evidence.last_chosen is not None:
        return evidence.last_chosen
    ids = list(evidence.on_screen)
    return int(ids[int(np.argmax(np.asarray(probabilities)[ids]))])


def session_probabilities(session) -> np.ndarray:
    """`evidence_probabilities` of a session, here and now."""
    return evidence_probabilities(snapshot(session), session.space)


def favourite_of(session, probabilities: np.ndarray) -> int:
    return evidence_favourite(snapshot(session), probabilities)
