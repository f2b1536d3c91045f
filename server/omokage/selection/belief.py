"""What the user wants, as a belief: a posterior over catalog faces, updated by evidence terms.

PicHunter's idea (Cox et al. 2000): keep a probability for *every* face being the one the user has in mind, and
multiply in the likelihood of each thing the user does, instead of following only the last click. Pure numpy, no I/O:
the session, the server and the simulated users of `bench choice` all run the same code.

    belief = Belief(space)
    belief.add(ChoiceTerm(shown=grid, chosen=face, temperature=0.3))    # a pick among the 9
    belief.add(SkipTerm(shown=grid))                                    # "none of these"
    belief.add(QueryTerm(vector))                                       # an image query
    belief.add(SketchTerm(model.log_likelihood([drawing])[0]))          # a drawing
    belief.add(RatingTerm(face, 5))                                     # an explicit 1-5 rating
    belief.probabilities()                                              # (n_items,), sums to 1

    belief.add(GazeTerm(shown, counts))                                 # where the user looked on a grid

A new signal is a new `EvidenceTerm`: anything with `log_likelihood(space) -> (n_items,)`.

Distances are Euclidean in the feature space divided by the space's `distance_unit` (the median distance between two
random faces), so one temperature means the same thing in every space: at temperature 0.3 a face one median unit
further from the target is e^(1/0.3) = 28 times less likely to be picked.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from omokage.selection.policy import FeatureSpace

# Defaults, in distance units (median distance between two random faces). `omokage fit user-model` fits the choice
# temperature from logged sessions; these are what a server without a fitted user model uses.
# The candidate temperatures of a belief (a factor 3 apart), from a user who always takes the nearest face to one whose
# picks barely depend on the target: no single value fits everyone, since the engine's distances agree with what a
# person sees only roughly and people differ; an overconfident posterior stops exploring (docs/preference-model.md).
DEFAULT_TEMPERATURE_GRID = (0.05, 0.15, 0.45, 1.35)
DEFAULT_CHOICE_TEMPERATURE = 0.3   # a `ChoiceTerm` evaluated on its own, outside a belief
PASSED_OVER_PROBABILITY = 0.05     # a face shown and not decided on is the target only if the user missed it
# the candidate look-alike widths: "not this face" only (an exact target), or also its near-copies (any face of one
# character would do). One by default: in simulated sessions on generated and anime faces the marginal likelihood
# could not tell the two apart (it put 92-99% on width 0 either way), and each hypothesis costs a pass over the
# catalog per step. Policies take `lookalike_widths=(0.0, 0.5)` to weigh both.
DEFAULT_LOOKALIKE_WIDTHS = (0.0,)
SKIP_WIDTH = 0.5                   # how far "none of these" reaches around each skipped face (distance units)
# A 1-5 rating (RatingTerm): ≥ 2, 3, 4, 5 stars say the target is among the rated face's nearest 50, 20, 5, 1 % of the
# catalog, within RATING_SCALE (logits of that share); with probability RATING_LAPSE a rating says nothing; under the
# noisier half of the belief's user hypotheses it says nothing either (docs/preference-model.md). `fit user-model` fits
# the scale, the lapse and a shift of every band from logged ratings.
RATING_CUTS = (0.5, 0.2, 0.05, 0.01)
RATING_SCALE = 1.0
RATING_LAPSE = 0.2
# Gaze (docs/gaze.md): one "gaze unit" is a fixation's worth of looking; the term's temperature and weight are what a
# server without a fitted user model uses (`omokage fit user-model` fits both from logged sessions with gaze)
GAZE_UNIT_S = 0.3
DEFAULT_GAZE_TEMPERATURE = 0.3
DEFAULT_GAZE_WEIGHT = 0.5
# optional per-user hypotheses about gaze (GazeTerm.gaze_levels): unrelated to the target (0), or following it (1)
DEFAULT_GAZE_LEVELS = (0.0, 1.0)


class EvidenceTerm(Protocol):
    """One piece of evidence about the target: its log-likelihood for every catalog face being the target."""

    def log_likelihood(self, space: "FeatureSpace") -> np.ndarray: ...


def _log_sum_exp(x: np.ndarray) -> float:
    m = float(x.max())
    if not np.isfinite(m):
        return m
    return m + float(np.log(np.exp(x - m).sum(dtype=np.float64)))


@dataclass(frozen=True)
class ChoiceTerm:
    """The user picked `chosen` among `shown`: P(pick j | target t) ∝ exp(−d(j, t) / temperature) (Luce's choice
    rule, PicHunter's user model). Faces nearer the chosen one than the others gain; the others' neighbourhoods lose."""

    shown: tuple[int, ...]
    chosen: int
    temperature: float | None = None      # None: each of the belief's candidate temperatures

    def log_likelihood(self, space, temperature: float | None = None):
        return self.log_likelihoods(space, [temperature or DEFAULT_CHOICE_TEMPERATURE])[0]

    def log_likelihoods_for(self, space, hypotheses: Sequence["UserHypothesis"]) -> np.ndarray:
        temps = sorted({h.temperature for h in hypotheses})
        rows = dict(zip(temps, self.log_likelihoods(space, temps)))
        return np.stack([rows[h.temperature] for h in hypotheses])

    def log_likelihoods(self, space, temperatures: Sequence[float]) -> np.ndarray:
        """(len(temperatures), n_items): one row per candidate temperature, sharing one distance computation."""
        shown = list(self.shown)
        if self.chosen not in shown:
            raise ValueError(f"chosen face {self.chosen} is not among the shown {shown}")
        d = space.unit_distances_from(shown)                                        # (k, N)
        k = shown.index(self.chosen)
        rel = d - d.min(axis=0)                  # relative to the nearest shown face: nothing overflows
        temps = [float(self.temperature or t) for t in temperatures]
        out = np.empty((len(temps), rel.shape[1]), np.float32)
        # log softmax at the chosen row: −rel_k / t − log Σ_j exp(−rel_j / t), per temperature. The exponentials are
        # the cost (k × N per temperature); from the warmest down, a temperature m times colder (m = 2, 3 or 4: the
        # default grid and a fitted one are a factor 3 apart) takes the warmer one's to the power m, a few
        # multiplications instead of an exp (at 100k items the term costs a third of what it did)
        warm: tuple[float, np.ndarray] | None = None
        for i in sorted(range(len(temps)), key=lambda i: -temps[i]):
            t = temps[i]
            m = round(warm[0] / t) if warm is not None else 0
            if warm is not None and 2 <= m <= 4 and abs(warm[0] / t - m) < 1e-6:
                e = warm[1] * warm[1]
                if m >= 3:
                    e *= warm[1]
                if m == 4:
                    e *= warm[1]
            else:
                e = np.multiply(rel, np.float32(-1.0 / t))
                np.exp(e, out=e)
            warm = (t, e)
            total = e.sum(axis=0)
            np.log(total, out=total)
            np.multiply(rel[k], np.float32(-1.0 / t), out=out[i])
            out[i] -= total
        return out



@dataclass(frozen=True)
class SkipTerm:
    """"None of these": every shown face is worse than what the user wants. Faces near any shown face become less
    likely, the more so the nearer: P(skip | t) = Π_j (1 − strength · exp(−d(j, t)² / 2w²))."""

    shown: tuple[int, ...]
    strength: float = 0.9
    width: float = SKIP_WIDTH

    def log_likelihood(self, space):
        d = space.unit_distances_from(list(self.shown))
        return np.log1p(-self.strength * np.exp(-0.5 * (d / self.width) ** 2)).sum(axis=0)


@dataclass(frozen=True)
class PassedOverTerm:
    """Faces that were on screen while the user kept looking are not the target, unless missed; near-copies of them
    (within `width`) are less likely too. The user's chosen face is exempt from the spreading: it is their guide."""

    shown: tuple[int, ...]
    spare: tuple[int, ...] = ()
    missed: float = PASSED_OVER_PROBABILITY
    width: float | None = None        # None: each of the belief's hypotheses about look-alikes

    def log_likelihood(self, space, width: float | None = None):
        width = self.width if self.width is not None else (width or 0.0)
        out = np.zeros(space.n_items, np.float32)
        spread = [k for k, i in enumerate(self.shown) if i not in self.spare]
        if spread and width > 0:
            d = space.unit_distances_from(list(self.shown))[spread]    # the grid's rows: shared with the choice term
            out += np.log1p(-(1 - self.missed) * np.exp(-0.5 * (d / width) ** 2)).sum(axis=0)
        out[list(self.shown)] = np.log(self.missed)   # the faces themselves, chosen included
        return out

    def log_likelihoods_for(self, space, hypotheses: Sequence["UserHypothesis"]) -> np.ndarray:
        rows = {w: self.log_likelihood(space, w) for w in sorted({h.lookalike_width for h in hypotheses})}
        if len(rows) == 1:
            return next(iter(rows.values()))[None, :]
        return np.stack([rows[h.lookalike_width] for h in hypotheses])


@dataclass(frozen=True)
class QueryTerm:
    """An image (or sketch) the user offered as "like this": P ∝ exp(−d(query, t) / temperature)."""

    vector: np.ndarray
    temperature: float = 0.15

    def log_likelihood(self, space):
        return -space.unit_distances_to(self.vector) / self.temperature


@dataclass(frozen=True, eq=False)
class SketchTerm:
    """A drawing of the face the user wants: how likely the drawing is had they drawn each catalog face
    (`SketchModel.log_likelihood`: the drawing's lines and paint against each face's line art and colours, tempered
    to be calibrated). It does not depend on the feature space: it is evidence about faces, not about a vector."""

    log_likelihoods: np.ndarray       # (n_items,)
    revision: int = 0                 # the drawing's revision (for logs)

    def log_likelihood(self, space):
        if len(self.log_likelihoods) != space.n_items:
            raise ValueError(f"a sketch term over {len(self.log_likelihoods)} faces for a space of {space.n_items}")
        return np.asarray(self.log_likelihoods, dtype=np.float32)


def rating_percentile_logits(d: np.ndarray) -> np.ndarray:
    """logit q for every face (float32), q its percentile rank among the distances `d` from a rated face (the share of
    the catalog nearer to it). Exact up to 4,096 faces; above, from a histogram of all the distances in 4,096 even
    bins, interpolated within a bin (O(N): 100k faces in ~1 ms instead of a sort's or a binary search's ~10; off by
    under 0.1 % of the catalog)."""
    d = np.asarray(d, dtype=np.float32)
    n = d.size
    if n <= 4096:
        q = (np.searchsorted(np.sort(d), d, side="left") + 0.5) / (n + 1.0)
    else:
        bins = 4096
        lo, hi = float(d.min()), float(d.max())
        pos = (d - np.float32(lo)) * np.float32(bins / (hi - lo) if hi > lo else 0.0)
        b = np.minimum(pos.astype(np.int32), bins - 1)
        counts = np.bincount(b, minlength=bins)
        below = np.concatenate([[0], np.cumsum(counts)[:-1]])
        q = (below[b] + (pos - b) * counts[b] + 0.5) / (n + 1.0)
    q = q.astype(np.float32)
    return np.log(q / (1 - q))


def _at_least(z: np.ndarray, k: int, cuts, scale: float, offset: float) -> np.ndarray | float:
    """P(rating ≥ k | target) given each target's percentile logit `z` (the ordered logit); 1 for k = 1, 0 for 6."""
    if k <= 1:
        return 1.0
    if k >= 6:
        return 0.0
    c = float(cuts[k - 2])
    # Python floats: the result keeps z's precision (float32 for the belief, float64 for a fit's small steps)
    return 1 / (1 + np.exp((z - (float(np.log(c / (1 - c))) + float(offset))) / float(scale)))


def rating_probability(z: np.ndarray, rating: int, cuts=RATING_CUTS, scale: float = RATING_SCALE,
                       offset: float = 0.0) -> np.ndarray:
    """P(rating | target) for targets at percentile logits `z` (without the lapse)."""
    z = np.asarray(z)
    return np.maximum(_at_least(z, rating, cuts, scale, offset) - _at_least(z, rating + 1, cuts, scale, offset), 0.0)


_BASE_Z = np.log((np.arange(1024) + 0.5) / 1024 / (1 - (np.arange(1024) + 0.5) / 1024))   # percentiles, evenly


def rating_base_rates(cuts=RATING_CUTS, scale: float = RATING_SCALE, offset: float = 0.0) -> np.ndarray:
    """(5,): P(rating) for a target drawn at random (its percentile uniform): how often each star is given."""
    return np.array([rating_probability(_BASE_Z, r, cuts, scale, offset).mean() for r in range(1, 6)])


_RATING_ROWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # space -> {rating key: rows}
_RATING_LOCK = threading.Lock()


@dataclass(frozen=True)
class RatingTerm:
    """An explicit 1-5 rating of a shown face, as a likelihood (an ordered logit, the usual model of a rating scale).

    What a rating says is how near the target lies to the rated face, relative to the rest of the catalog: a 5
    ("exactly it") that the target is among the face's nearest 1 %, a 4 among its nearest 5 %, a 3 its nearest
    20 %, a 2 its nearest half, a 1 that it is further. With q(t) the share of the catalog nearer to the rated face
    than t (its percentile rank), P(rating ≥ k | t) = σ((logit c_k − logit q(t)) / scale), c = `cuts`. Percentiles
    rather than distances, since a feature space's distances mean different things in dense and sparse regions; the
    share of faces nearer is what a person can judge. Two safeguards, because the engine's distances agree with what
    a person sees only roughly:
    - a lapse: with probability `lapse` the rating says nothing about the target (it is drawn from the ratings' base
      rates), so no single rating rules a region out;
    - under the noisier half of the belief's user hypotheses (choice temperatures above the grid's median: 0.45 and
      1.35 of the default grid, 3T of a fitted T's T/3, T, 3T), the ratings say nothing either: picks and ratings
      come from the same perception, and the belief's mixture weighs the hypotheses by how well they predicted both
      (where the engine's features do not match the user's eye, the ratings fall silent with the picks instead of
      steering the search away from the target).
    In simulated hunts (`omokage bench choice --ratings`) this form found targets where the earlier heuristic bump
    did not (docs/preference-model.md). Re-rating a face replaces its rating: pass the earlier one as `previous`."""

    item: int
    rating: int
    previous: int | None = None     # the face's earlier rating, taken back (None: it had none)
    cuts: tuple[float, ...] = RATING_CUTS
    scale: float = RATING_SCALE
    lapse: float = RATING_LAPSE
    offset: float = 0.0     # fitted from logs: > 0 for users more generous than the cuts (a star means a wider band)

    def __post_init__(self):
        for r in (self.rating, self.previous):
            if r is not None and (isinstance(r, bool) or not 1 <= int(r) <= 5):
                raise ValueError(f"a rating is 1 to 5, not {r}")
        if not (self.scale > 0 and 0 <= self.lapse <= 1 and np.isfinite(self.offset)):
            raise ValueError("RatingTerm: scale must be > 0, lapse in [0, 1] and offset finite")

    def _rows(self, space) -> tuple[np.ndarray, float]:
        """log P(rating | t) for every face t, and its base rate (log P(rating) for a target drawn at random), less
        the same for `previous`."""
        z = rating_percentile_logits(space.unit_distances_from([self.item])[0])
        base_rates = rating_base_rates(self.cuts, self.scale, self.offset)   # once, for the rating and `previous`

        def row(r: int) -> tuple[np.ndarray, float]:
            p = rating_probability(z, r, self.cuts, self.scale, self.offset)
            base = base_rates[r - 1]
            return np.log((1 - self.lapse) * p + self.lapse * base + 1e-12), float(np.log(base + 1e-12))

        ll, base = row(int(self.rating))
        if self.previous is not None:
            ll_prev, base_prev = row(int(self.previous))
            ll, base = ll - ll_prev, base - base_prev
        return ll.astype(np.float32), base

    def _cached_rows(self, space) -> tuple[np.ndarray, float]:
        # a replay (a back, a restore) evaluates the same ratings again and again: one evaluation per face and rating
        # change is kept per space (the last 256; at 100k faces 100 MB at most)
        key = (self.item, self.rating, self.previous, self.cuts, self.scale, self.lapse, self.offset)
        with _RATING_LOCK:
            cache = _RATING_ROWS.setdefault(space, {})
            hit = cache.get(key)
        if hit is not None:
            return hit
        rows = self._rows(space)
        rows[0].flags.writeable = False
        with _RATING_LOCK:
            while len(cache) >= 256:
                cache.pop(next(iter(cache)), None)
            cache[key] = rows
        return rows

    def log_likelihood(self, space):
        return self._cached_rows(space)[0]

    def log_likelihoods_for(self, space, hypotheses: Sequence["UserHypothesis"]) -> np.ndarray:
        ll, base = self._cached_rows(space)
        t = sorted({h.temperature for h in hypotheses})
        m = len(t) // 2      # their median (np.median cost more than the update itself: a replay runs thousands)
        noisy = t[m] if len(t) % 2 else (t[m - 1] + t[m]) / 2     # the hypotheses above it: ratings silent
        speaks = np.array([h.temperature <= noisy for h in hypotheses])
        if speaks.all():
            return ll[None, :]
        return np.where(speaks[:, None], ll[None, :], np.float32(base))


@dataclass(frozen=True)
class GazeTerm:
    """Where the user looked on one grid: `counts[k]` gaze units on face `shown[k]` (fixation time / GAZE_UNIT_S and
    fixation count, averaged). The choice model, for the eyes: each unit would land on face j with probability
    P(j | t) = exp(−d(j, t) / T) / Σ_i exp(−d(i, t) / T) (people look longer and more often at faces like the one they
    want). The term is the **contrast** of that log-likelihood with the same number of units spread evenly:

        weight · Σ_j (counts_j − mean(counts)) · log P(j | t)

    so gaze spread evenly over the grid says nothing (the plain likelihood would still push the belief away from every
    face near a shown one, whatever the eyes did: evidence the PassedOverTerm already counts), and only looking at
    some faces more than at others moves it. `weight` is fitted from logs (`omokage fit user-model`, cross-validated:
    gaze that does not follow the target fits to ~0). The face the user picked is left out of `shown`: its pick is the
    ChoiceTerm's evidence, and the gaze cascade (the last looks go to the face about to be picked) would count it
    twice. Gaze never picks a face: it only tilts the belief the display policies read.

    `gaze_levels` (off by default) instead adds per-user hypotheses λ (0: gaze unrelated to the target) mixing the
    plain likelihood with uniform looking, weighed by their marginal likelihood: kept for comparison; in simulated
    sessions it did not switch off fast enough when gaze told nothing (docs/gaze.md)."""

    shown: tuple[int, ...]
    counts: tuple[float, ...]
    temperature: float = DEFAULT_GAZE_TEMPERATURE
    weight: float = DEFAULT_GAZE_WEIGHT
    gaze_levels: tuple[float, ...] = ()

    def __post_init__(self):
        if len(self.shown) != len(self.counts):
            raise ValueError("GazeTerm: one count per shown face")
        if any(not (c >= 0 and np.isfinite(c)) for c in self.counts):
            raise ValueError("GazeTerm: counts must be finite and ≥ 0")
        if not self.temperature > 0 or not self.weight >= 0:
            raise ValueError("GazeTerm: temperature must be > 0 and weight ≥ 0")

    def _log_p(self, space) -> np.ndarray:
        d = space.unit_distances_from(list(self.shown))                          # (k, N)
        a = -(d - d.min(axis=0)) / self.temperature
        return a - np.log(np.exp(a).sum(axis=0, keepdims=True))

    def log_likelihood(self, space, level: float | None = None) -> np.ndarray:
        k = len(self.shown)
        n = np.asarray(self.counts, np.float32)
        if k < 2 or not n.sum() > 0:
            return np.zeros(space.n_items, np.float32)
        if level is None:     # the contrast (the default)
            return (self.weight * ((n - n.mean())[:, None] * self._log_p(space)).sum(axis=0)).astype(np.float32)
        flat = float(self.weight * n.sum() * np.log(1.0 / k))
        if level <= 0:
            return np.full(space.n_items, flat, np.float32)
        p = (1 - level) / k + level * np.exp(self._log_p(space))
        return (self.weight * (n[:, None] * np.log(np.maximum(p, 1e-30))).sum(axis=0)).astype(np.float32)

    def log_likelihoods_for(self, space, hypotheses: Sequence["UserHypothesis"]) -> np.ndarray:
        if not self.gaze_levels:
            return self.log_likelihood(space)[None, :]
        rows = {g: self.log_likelihood(space, g) for g in sorted({h.gaze for h in hypotheses})}
        if len(rows) == 1:
            return next(iter(rows.values()))[None, :]
        return np.stack([rows[h.gaze] for h in hypotheses])


@dataclass(frozen=True)
class UserHypothesis:
    """One guess about how this user behaves: how noisy their picks are, how far "not this face" reaches (0: only
    the face itself; larger: its near-copies too, as when any face of one character would do), and how much their
    gaze follows the target (0: not at all; only once gaze evidence arrives)."""

    temperature: float
    lookalike_width: float = 0.0
    gaze: float = 0.0


class Belief:
    """A log-posterior over the items of one feature space (uniform prior).

    How this user behaves is not known in advance, so the belief is a Bayesian mixture: one posterior per
    `UserHypothesis` (a grid of choice temperatures × look-alike widths), each weighted by how well it predicted what
    the user did so far (its marginal likelihood). A user who picks consistently moves the weight to low temperatures
    and a sharp posterior; an erratic one to high temperatures and a tempered posterior that keeps exploring.
    """

    def __init__(self, space: "FeatureSpace", temperatures: Sequence[float] = DEFAULT_TEMPERATURE_GRID,
                 prior: np.ndarray | None = None, lookalike_widths: Sequence[float] = DEFAULT_LOOKALIKE_WIDTHS):
        self.space = space
        n = space.n_items
        self.temperatures = tuple(float(t) for t in temperatures)
        if not self.temperatures or min(self.temperatures) <= 0:
            raise ValueError("temperatures must be positive")
        if not lookalike_widths or min(lookalike_widths) < 0:
            raise ValueError("look-alike widths must be 0 or more")
        self.hypotheses = tuple(UserHypothesis(t, float(w)) for w in lookalike_widths for t in self.temperatures)
        # float32: log-weights are kept near 0 (normalised per hypothesis), and the per-step cost is the exp over
        # every face for every hypothesis, which float32 halves
        base = np.zeros(n, np.float32) if prior is None else np.log(np.asarray(prior, dtype=np.float32))
        if base.shape != (n,):
            raise ValueError(f"prior must have one entry per item ({n})")
        base = base - _log_sum_exp(base)
        self.log_posteriors = np.tile(base, (len(self.hypotheses), 1))       # (K, N), each normalised
        self.log_evidence = np.zeros(len(self.hypotheses))                    # log P(evidence so far | hypothesis)
        self.terms_added = 0
        self.gaze_levels: tuple[float, ...] = ()     # set by the first gaze evidence (expand_gaze)
        self._p: np.ndarray | None = None

    def add(self, term: EvidenceTerm) -> None:
        """Multiply in a term's likelihood. A term that depends on the user hypothesis has
        `log_likelihoods_for(space, hypotheses) -> (K, n_items)`; any other gives one row for all."""
        n = self.space.n_items
        levels = getattr(term, "gaze_levels", None)
        if levels and not self.gaze_levels:
            self.expand_gaze(levels)
        if hasattr(term, "log_likelihoods_for"):
            ll = term.log_likelihoods_for(self.space, self.hypotheses)   # (K, N), or (1, N): the same for all
            ll = self._checked(term, ll, (len(self.hypotheses) if len(ll) != 1 else 1, n))
        else:
            ll = self._checked(term, term.log_likelihood(self.space), (n,))[None, :]
        post = self.log_posteriors + ll                                           # (K, N), all hypotheses at once
        top = post.max(axis=1)
        ok = np.isfinite(top) & np.isfinite(self.log_evidence)
        if not ok.any():
            # the term rules out every face under every live hypothesis: evidence that contradicts everything
            # the belief holds possible is dropped rather than turned into a belief in nothing
            return
        increment = top[ok].astype(np.float64) + np.log(
            np.exp(post[ok] - top[ok, None]).sum(axis=1, dtype=np.float64))
        self.log_posteriors[ok] = post[ok] - increment[:, None].astype(np.float32)
        self.log_evidence[ok] += increment
        self.log_evidence[~ok] = -np.inf      # a hypothesis under which this evidence was impossible is ruled out
        self.log_evidence -= self.log_evidence.max()
        self.terms_added += 1
        self._p = None

    def expand_gaze(self, levels: Sequence[float]) -> None:
        """Add the gaze hypotheses (each existing one × each level), on the first gaze evidence: a session without gaze
        pays nothing for them. Every copy starts with the posterior and evidence so far (gaze has said nothing yet)."""
        levels = tuple(float(g) for g in levels)
        if self.gaze_levels or not levels or min(levels) < 0:
            return
        k = len(self.hypotheses)
        self.hypotheses = tuple(UserHypothesis(h.temperature, h.lookalike_width, g) for g in levels
                                for h in self.hypotheses)
        self.log_posteriors = np.tile(self.log_posteriors, (len(levels), 1))
        self.log_evidence = np.tile(self.log_evidence, len(levels))
        assert len(self.log_posteriors) == len(self.hypotheses) == k * len(levels)
        self.gaze_levels = levels
        self._p = None

    def gaze_weight(self) -> float:
        """The posterior probability that this user's gaze follows the target (the weight of the levels > 0)."""
        if not self.gaze_levels:
            return 0.0
        w = self.hypothesis_weights()
        return float(sum(wk * h.gaze for wk, h in zip(w, self.hypotheses)))

    def _checked(self, term, ll, shape) -> np.ndarray:
        ll = np.asarray(ll, dtype=np.float32)
        if ll.shape != shape or np.isnan(ll).any():
            raise ValueError(f"{type(term).__name__} gave a log-likelihood of shape {ll.shape} (NaN: "
                             f"{bool(np.isnan(ll).any())}); expected {shape} without NaN")
        return ll

    def hypothesis_weights(self) -> np.ndarray:
        w = np.exp(self.log_evidence - self.log_evidence.max())
        return w / w.sum()

    @property
    def temperature(self) -> float:
        """The most probable choice temperature so far (summed over look-alike widths)."""
        w = self.hypothesis_weights()
        by_t = {t: sum(wk for wk, h in zip(w, self.hypotheses) if h.temperature == t) for t in self.temperatures}
        return max(by_t, key=by_t.get)

    def probabilities(self) -> np.ndarray:
        if self._p is None:
            w = self.hypothesis_weights()
            keep = w > 1e-6 * w.max()     # hypotheses the evidence has all but ruled out add nothing visible
            # float64: a sharp posterior puts faces below e^-104, where float32 would round them to exactly 0
            p = w[keep] @ np.exp(self.log_posteriors[keep].astype(np.float64))
            self._p = p / p.sum()
        return self._p

    def entropy_bits(self) -> float:
        p = self.probabilities()
        nz = p[p > 0]
        return float(-(nz * np.log2(nz)).sum())

    def rank_of(self, item: int) -> int:
        """1 = the most probable face."""
        p = self.probabilities()
        return int((p > p[item]).sum()) + 1


def masked_probabilities(belief: Belief, exclude: Sequence[int] | np.ndarray) -> np.ndarray:
    """The belief restricted to faces not in `exclude` (renormalised); uniform over them if it has no mass there.
    Every face not excluded keeps a probability above zero, however sharp the belief, so a grid is never short while
    unseen faces remain."""
    p = np.maximum(belief.probabilities(), 1e-300)
    p[np.asarray(list(exclude), dtype=np.int64)] = 0.0
    s = p.sum()
    if not s > 0:
        p = np.ones_like(p)
        p[np.asarray(list(exclude), dtype=np.int64)] = 0.0
        s = p.sum()
    return p / s if s > 0 else p
