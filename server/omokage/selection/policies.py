"""Display policies that read a belief (`omokage.selection.belief`) to choose the next grid.

Every belief policy updates the same posterior the same way (a `ChoiceTerm` for the pick, a `PassedOverTerm` for
the faces the user saw and kept looking past, a `SkipTerm` for "none of these", a `QueryTerm` for an image start,
anything else through `add_evidence`); they differ only in `display`, how the other 8 faces are chosen:

- `top`: the most probable unseen faces. Greedy; it starves the posterior (the faces it shows tell little apart).
- `thompson`: faces drawn from the posterior (Thompson sampling): probable faces more often, every face sometimes.
  With a flat belief it is random-9; as evidence accumulates it concentrates.
- `cover`: posterior draws that repel each other (a face near an already-picked one is down-weighted), so the grid
  spans the distinct looks the belief still holds possible: what a "category" target (any face of one character)
  needs, and where a grid of look-alikes wastes slots.
- `infogain`: PicHunter's most informative display: greedily add the face that most raises the expected
  information the user's next pick gives about the target (mutual information between pick and target, estimated
  on targets sampled from the posterior).

The chosen face always comes first; an image start shows the faces nearest the query (the most probable ones).
"""

from __future__ import annotations

import numpy as np

from omokage.selection.belief import (DEFAULT_GAZE_TEMPERATURE, DEFAULT_GAZE_WEIGHT, DEFAULT_LOOKALIKE_WIDTHS,
                                      DEFAULT_TEMPERATURE_GRID, PASSED_OVER_PROBABILITY, Belief, ChoiceTerm, GazeTerm,
                                      PassedOverTerm, QueryTerm, RATING_LAPSE, RATING_SCALE, RatingTerm, SkipTerm,
                                      masked_probabilities)
from omokage.selection.policy import Candidate, PolicyContext, random_candidates

GAZE_SUFFIX = "+gaze"   # `thompson+gaze`: the belief policy `thompson`, fed each grid's gaze (docs/gaze.md)


class BeliefPolicy:
    """The shared part: one `Belief` per session, updated by every event; `display` picks the faces."""

    name = "belief"

    def __init__(self, temperature: float | None = None, missed: float = PASSED_OVER_PROBABILITY,
                 lookalike_widths: tuple[float, ...] = DEFAULT_LOOKALIKE_WIDTHS, query_temperature: float = 0.15,
                 temperatures: tuple[float, ...] | None = None, gaze: bool = False,
                 gaze_temperature: float | None = None, gaze_weight: float | None = None,
                 rating_offset: float = 0.0, rating_scale: float = RATING_SCALE, rating_lapse: float = RATING_LAPSE):
        """temperature: a fitted choice temperature (`omokage fit user-model`); the belief then weighs it against a
        third and three times it, per user. None: the default grid, DEFAULT_TEMPERATURE_GRID. `temperatures` sets the
        grid outright (one value: a fixed temperature). gaze: the session feeds where the user looked on each grid
        (a `GazeTerm`, docs/gaze.md) into the belief; the policy is then named NAME+gaze. gaze_temperature /
        gaze_weight: the gaze term's fitted parameters (None: the defaults). rating_offset / rating_scale /
        rating_lapse: how this catalog's users use the five stars, fitted from their logged ratings (`RatingTerm`)."""
        if temperatures is None:
            temperatures = (DEFAULT_TEMPERATURE_GRID if temperature is None
                            else (temperature / 3, temperature, temperature * 3))
        if min(temperatures) <= 0 or not query_temperature > 0:
            raise ValueError("temperatures must be positive")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.missed = float(missed)
        self.lookalike_widths = tuple(float(w) for w in lookalike_widths)
        self.query_temperature = float(query_temperature)
        self.uses_gaze = bool(gaze)
        if self.uses_gaze:
            self.name = type(self).name + GAZE_SUFFIX
        self.gaze_temperature = float(gaze_temperature or DEFAULT_GAZE_TEMPERATURE)
        self.gaze_weight = float(DEFAULT_GAZE_WEIGHT if gaze_weight is None else gaze_weight)
        self.rating_offset = float(rating_offset)
        self.rating_scale = float(rating_scale)
        self.rating_lapse = float(rating_lapse)
        self.belief: Belief | None = None

    def rating_term(self, item: int, rating: int, previous: int | None = None) -> RatingTerm:
        """The evidence of a 1-5 rating of `item` (replacing its `previous` one), with this policy's parameters."""
        return RatingTerm(int(item), int(rating), previous=previous, scale=self.rating_scale, lapse=self.rating_lapse,
                          offset=self.rating_offset)

    def gaze_term(self, shown, counts) -> GazeTerm | None:
        """The evidence of one grid's gaze (`counts[k]` gaze units on face `shown[k]`, the picked face left out), with
        this policy's parameters; None when the policy does not use gaze or nothing was looked at."""
        if not self.uses_gaze or not shown or not sum(counts) > 0:
            return None
        return GazeTerm(tuple(int(i) for i in shown), tuple(float(c) for c in counts), self.gaze_temperature,
                        self.gaze_weight)

    # -- the CandidatePolicy interface ----------------------------------------------------------------------------
    def initial(self, ctx: PolicyContext, query: np.ndarray | None, evidence=()) -> list[Candidate]:
        belief = self._belief(ctx)
        for term in evidence:          # what the user gave before the first grid (a drawing)
            belief.add(term)
        if query is None and not evidence:
            # a flat belief: every display is as good as any other, and random keeps the first grid of every
            # policy the same for a seed (the benchmark pairs arms on it)
            return self._with_probabilities(random_candidates(ctx, ctx.grid_size))
        if query is not None:
            belief.add(QueryTerm(np.asarray(query, dtype=np.float32), self.query_temperature))
        ids = self._most_probable(ctx, ctx.grid_size, ())
        if query is None:
            return self._with_probabilities([Candidate(int(i), None) for i in ids])
        d = ctx.space.unit_distances_to(query)[ids] * ctx.space.distance_unit
        return self._with_probabilities([Candidate(int(i), float(x)) for i, x in zip(ids, d)])

    def next(self, ctx: PolicyContext, chosen: int) -> list[Candidate]:
        belief = self._belief(ctx)
        grid = ctx.history[-1].ids
        belief.add(ChoiceTerm(grid, int(chosen)))
        belief.add(PassedOverTerm(grid, spare=(int(chosen),), missed=self.missed))
        others = self.display(ctx, ctx.grid_size - 1, anchor=int(chosen))
        d = ctx.space.unit_distances_from(grid)[list(grid).index(chosen)] * ctx.space.distance_unit
        return self._with_probabilities([Candidate(int(chosen), 0.0)]
                                        + [Candidate(int(i), float(d[i])) for i in others])

    def skip(self, ctx: PolicyContext) -> list[Candidate]:
        belief = self._belief(ctx)
        grid = ctx.history[-1].ids
        belief.add(SkipTerm(grid))
        belief.add(PassedOverTerm(grid, missed=self.missed))
        return self._with_probabilities([Candidate(int(i), None) for i in self.display(ctx, ctx.grid_size, None)])

    def add_evidence(self, ctx: PolicyContext, term) -> None:
        self._belief(ctx).add(term)

    def observe(self, event) -> None:
        pass

    # -- what subclasses choose -------------------------------------------------------------------------------------
    def display(self, ctx: PolicyContext, count: int, anchor: int | None) -> list[int]:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _belief(self, ctx: PolicyContext) -> Belief:
        if self.belief is None or self.belief.space is not ctx.space:
            self.belief = Belief(ctx.space, self.temperatures, lookalike_widths=self.lookalike_widths)
        return self.belief

    def _with_probabilities(self, candidates: list[Candidate]) -> list[Candidate]:
        p = self.belief.probabilities()
        return [Candidate(c.id, c.distance, float(p[c.id])) for c in candidates]

    def _unseen_probabilities(self, ctx: PolicyContext, extra=()) -> np.ndarray:
        return masked_probabilities(self.belief, list(ctx.shown) + list(extra))

    def _most_probable(self, ctx: PolicyContext, count: int, extra) -> list[int]:
        p = self._unseen_probabilities(ctx, extra)
        count = min(count, int((p > 0).sum()))
        if count <= 0:
            return []
        top = np.argpartition(-p, count - 1)[:count]
        return [int(i) for i in top[np.lexsort((top, -p[top]))]]


def _gumbel_keys(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """log p + Gumbel noise: the top-k of these keys is a draw of k faces without replacement, ∝ p."""
    with np.errstate(divide="ignore"):
        return np.log(p) + rng.gumbel(size=p.shape)


class MostProbable(BeliefPolicy):
    name = "top"

    def display(self, ctx, count, anchor):
        return self._most_probable(ctx, count, (anchor,) if anchor is not None else ())


class ThompsonSampling(BeliefPolicy):
    name = "thompson"

    def display(self, ctx, count, anchor):
        p = self._unseen_probabilities(ctx, (anchor,) if anchor is not None else ())
        count = min(count, int((p > 0).sum()))
        if count <= 0:
            return []
        keys = _gumbel_keys(p, ctx.rng)
        top = np.argpartition(-keys, count - 1)[:count]
        return [int(i) for i in top[np.argsort(-keys[top])]]


class CoverPosterior(BeliefPolicy):
    """Posterior draws, each one down-weighting the faces near those already in the grid (the anchor included)."""

    name = "cover"

    def __init__(self, *args, repulsion_width: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.repulsion_width = float(repulsion_width)

    def display(self, ctx, count, anchor):
        held = (anchor,) if anchor is not None else ()
        p = self._unseen_probabilities(ctx, held)
        count = min(count, int((p > 0).sum()))
        keys = _gumbel_keys(p, ctx.rng)
        picked: list[int] = []
        pending = list(held)
        for _ in range(count):
            if pending:
                # log(1 − 0.95 · exp(−d² / 2w²)), in place on the squared distances (no square root; each pick's row
                # is used once, so it stays out of the space's distance cache, where the grid's rows are)
                r = ctx.space.unit_squared_distances_from(pending)
                r *= -0.5 / self.repulsion_width ** 2
                np.exp(r, out=r)
                r *= -0.95
                np.log1p(r, out=r)
                keys += r.sum(axis=0) if len(r) > 1 else r[0]
            best = int(np.argmax(keys))
            if not np.isfinite(keys[best]):
                break
            picked.append(best)
            keys[best] = -np.inf
            pending = [best]
        return picked


class InformationGain(BeliefPolicy):
    """Greedy maximisation of I(pick; target) over a candidate pool, with targets sampled from the posterior."""

    name = "infogain"

    def __init__(self, *args, samples: int = 48, pool_top: int = 24, pool_random: int = 24, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples, self.pool_top, self.pool_random = int(samples), int(pool_top), int(pool_random)

    def display(self, ctx, count, anchor):
        rng = ctx.rng
        exclude = (anchor,) if anchor is not None else ()
        p = self._unseen_probabilities(ctx, exclude)
        available = int((p > 0).sum())
        count = min(count, available)
        if count <= 0:
            return []
        # targets the user may have in mind, with their posterior weights
        draws = rng.choice(len(p), size=self.samples, p=p)
        targets, weight = np.unique(draws, return_counts=True)
        weight = weight / weight.sum()
        # faces that could go on screen: the sampled targets, the most probable, and some random unseen ones
        top = np.argpartition(-p, min(self.pool_top, available) - 1)[:min(self.pool_top, available)]
        rand = rng.integers(0, len(p), size=2 * self.pool_random)   # unseen ones among them (no pass over p)
        rand = rand[p[rand] > 0][:self.pool_random]
        pool = np.unique(np.concatenate([targets, top, rand]))
        pool = pool[p[pool] > 0]
        # predicted pick probabilities: exp(-d(face, target) / T), and a shown target is recognised (decided on)
        faces = np.concatenate([[anchor], pool]) if anchor is not None else pool
        weights = self._response_weights(ctx, faces, targets)                       # (1 + M, S)
        shown_exp, exp_pool = (weights[:1], weights[1:]) if anchor is not None else (weights[:0], weights)
        picked: list[int] = []
        chosen_mask = np.zeros(len(pool), dtype=bool)
        if anchor is None:
            # after a skip there is no anchor, and any single face tells nothing (its pick is certain): start the grid
            # with a draw from the belief, not with whichever face the pool happens to list first
            first = int(np.argmax(_gumbel_keys(p[pool], rng)))
            chosen_mask[first] = True
            picked.append(int(pool[first]))
            shown_exp = exp_pool[first:first + 1]
        for _ in range(min(count, len(pool)) - len(picked)):
            gain = _mutual_information(shown_exp, exp_pool, weight)
            gain[chosen_mask] = -np.inf
            best = int(np.argmax(gain))
            chosen_mask[best] = True
            picked.append(int(pool[best]))
            shown_exp = np.vstack([shown_exp, exp_pool[best:best + 1]])
        if len(picked) < count:   # a tiny catalog: top up from the posterior
            rest = [i for i in self._most_probable(ctx, count, exclude + tuple(picked))]
            picked += rest[:count - len(picked)]
        return picked

    def _response_weights(self, ctx, faces: np.ndarray, targets: np.ndarray) -> np.ndarray:
        d = ctx.space.unit_distances_between(faces, targets).astype(np.float64)
        # relative to each target's nearest face (pick probabilities are ratios), so nothing underflows to 0 / 0
        w = np.exp(-(d - d.min(axis=0, keepdims=True)) / self.belief.temperature)
        w[faces[:, None] == targets[None, :]] = np.exp(10.0)   # the target itself: the user decides on it
        return w


def _mutual_information(shown: np.ndarray, candidates: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """For each candidate c: I(pick; target) of the display `shown` + c. shown (k, S), candidates (M, S): the
    unnormalised pick weights of each face for each sampled target; weight (S,) the targets' probabilities.

    I = H(Σ_s w_s P(· | s)) − Σ_s w_s H(P(· | s)). The conditional entropies need only two sums over the shown faces
    per target (Σ e and Σ e log e), so the cost is O(M·S) plus one (k, S) × (S, M) product, not O(M·k·S)."""
    shown, candidates = np.asarray(shown, np.float64), np.asarray(candidates, np.float64)
    b = shown.sum(axis=0)                                                          # (S,)
    a = _xlogx(shown).sum(axis=0)                                                  # (S,)
    z = np.maximum(b[None, :] + candidates, 1e-300)                                # (M, S)
    h_cond = (np.log(z) - (a[None, :] + _xlogx(candidates)) / z) @ weight          # (M,)
    wz = weight[None, :] / z                                                       # (M, S)
    m_shown = wz @ shown.T                                                         # (M, k)
    m_cand = (candidates * wz).sum(axis=1)                                         # (M,)
    return -_xlogx(m_shown).sum(axis=1) - _xlogx(m_cand) - h_cond


def _xlogx(x: np.ndarray) -> np.ndarray:
    """x·log x with 0·log 0 = 0 (no NaN when a pick weight underflows)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(x), 0.0)
