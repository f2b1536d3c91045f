"""The user-response model's parameters, fitted by maximum likelihood from logged sessions.

The belief's `ChoiceTerm` says a person picks face j of a grid with probability ∝ exp(−d(j, target) / T). How noisy
people are, T, differs per feature space (distances in each agree with what people see to a different degree) and
per population, so it is fitted from what they did: in every logged session that ended in a decision, the decided face
stands for the target (PicHunter's assumption), and every `choose` before it is one observation of a pick among the
grid then on screen. T maximises the log-likelihood of those picks (a one-dimensional search over log T).

`omokage fit user-model EVENTS... --catalog CATALOG --out MODELS` reads the server's JSON-lines event logs and saves
MODELS/user-model/VERSION/config.json (JSON: no pickle); `omokage serve` passes the fitted temperatures to the belief
policies. Without one, `DEFAULT_CHOICE_TEMPERATURE` is used.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from omokage.errors import UserError
from omokage.selection.belief import DEFAULT_CHOICE_TEMPERATURE, RATING_LAPSE

USER_MODEL_NAME = "user-model"
TEMPERATURE_RANGE = (0.01, 20.0)
MIN_PICKS = 20            # logged picks on one model before its temperature is fitted


@dataclass(frozen=True)
class ChoiceRecord:
    """One logged pick: the grid on screen, the face picked, and the face finally decided on (the target's proxy)."""

    algorithm: str
    shown: tuple[int, ...]
    chosen: int
    target: int


@dataclass(frozen=True)
class GazeRecord:
    """One logged grid's gaze (a `gaze` event): the faces looked among (the picked one left out) and their gaze units
    (omokage.gaze.StepGaze.evidence), and the face finally decided on."""

    algorithm: str
    shown: tuple[int, ...]
    counts: tuple[float, ...]
    target: int


@dataclass(frozen=True)
class RatingRecord:
    """One face's 1-5 rating in a selection that ended in a decision (its latest rating, as the belief keeps it), and
    the face decided on (the target's proxy)."""

    algorithm: str
    item: int
    rating: int
    target: int


@dataclass
class EventReadReport:
    files: int = 0
    lines: int = 0
    sessions: int = 0
    decided_sessions: int = 0
    problems: list[str] = field(default_factory=list)   # "file:line: reason", one per bad line
    gaze_records: list = field(default_factory=list)    # GazeRecord per logged grid with gaze, before a decision
    rating_records: list = field(default_factory=list)  # RatingRecord per face rated in a decided selection
    other_catalog: int = 0     # decided selections logged on another catalog (their `start` names its fingerprint)


# the events a selection's picks, gaze and decision are read from, in either kind of log (one list: the store's reader
# once missed `gaze`, so fits from `serve --db` had no gaze records)
SESSION_EVENTS = frozenset({"start", "choose", "skip", "back", "resume", "decide", "gaze", "rate"})


def read_choice_records(paths: Iterable[str | os.PathLike], catalog: str | None = None,
                        n_items: int | None = None) -> tuple[list[ChoiceRecord], EventReadReport]:
    """Parse the server's event logs (JSON lines: start / choose / skip / decide ... per session_id). Corrupt or
    truncated lines are reported in `report.problems` and skipped, never raised.

    Logs of several catalogs may sit side by side (var/events/ holds the demo's and every `serve`'s): with `catalog`
    (a Catalog.fingerprint), a selection whose `start` names another catalog is left out and counted in
    `report.other_catalog`; with `n_items`, one naming a face the catalog does not have (a log from before starts
    named their catalog) is left out as a problem."""
    report = EventReadReport()
    sessions: dict[object, list[dict]] = {}

    def selection(rec: dict, path: Path) -> object:
        # a study trial is one selection whatever connections it ran over (a trial resumed after a disconnect or a
        # restart goes on under a new session id, after a `trial_resume` that names no session): its records carry the
        # trial, numbered per store, hence the file in the key
        trial = rec.get("trial")
        return (str(path), "trial", trial) if _is_id(trial) else rec["session_id"]
    for path in paths:
        path = Path(path)
        report.files += 1
        from omokage.store import is_store_file
        if is_store_file(path):  # the event store (omokage serve --db): its logged records, in commit order
            from omokage.store import StoreError, log_records
            try:
                for n, rec in enumerate(log_records(path), 1):
                    report.lines += 1
                    if isinstance(rec.get("session_id"), str) and rec.get("event") in SESSION_EVENTS:
                        sessions.setdefault(selection(rec, path), []).append({**rec, "_where": f"{path}#{n}"})
            except StoreError as exc:
                report.problems.append(f"{path}: {exc}")
            continue
        try:
            fh = open(path, "rb")
        except OSError as exc:
            report.problems.append(f"{path}: cannot read ({exc.strerror or exc})")
            continue
        with fh:
            for n, raw in enumerate(fh, 1):
                report.lines += 1
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError) as exc:   # RecursionError: nested too deep
                    report.problems.append(f"{path}:{n}: not a JSON object ({type(exc).__name__}); skipped")
                    continue
                if not isinstance(rec, dict) or not isinstance(rec.get("session_id") or rec.get("event"), str):
                    report.problems.append(f"{path}:{n}: not an event record; skipped")
                    continue
                if not isinstance(rec.get("session_id"), str):
                    continue          # the server's own records (a model served, ...): not about a selection
                if rec.get("event") in SESSION_EVENTS:
                    sessions.setdefault(selection(rec, path), []).append({**rec, "_where": f"{path}:{n}"})
    sessions = _join_resumed(sessions)
    records: list[ChoiceRecord] = []
    gaze: list[GazeRecord] = []
    ratings: list[RatingRecord] = []
    for events in sessions.values():
        # a connection may run several sessions in a row: split at each start
        runs: list[list[dict]] = []
        for ev in events:
            if ev["event"] == "start" or not runs:
                runs.append([])
            runs[-1].append(ev)
        for run in runs:
            report.sessions += 1
            decided = [e for e in run if e["event"] == "decide"]
            if not decided or run[0]["event"] != "start":
                continue
            target = decided[-1].get("item")
            if not _is_id(target):
                report.problems.append(f"{decided[-1]['_where']}: decide without an item id; session skipped")
                continue
            logged_on = run[0].get("catalog")
            if catalog is not None and logged_on is not None and logged_on != catalog:
                report.other_catalog += 1
                continue
            if n_items is not None and logged_on is None and not all(
                    all(_is_id(i) and i < n_items for i in [*(e.get("candidates") or []), e.get("item")]
                        if i is not None) for e in run if e["event"] != "gaze"):
                report.problems.append(f"{run[0]['_where']}: names a face this catalog of {n_items} does not have "
                                       "(a selection logged on another catalog?); session skipped")
                continue
            report.decided_sessions += 1
            grid: list[int] | None = None
            algorithm = str(run[0].get("algorithm"))
            # this run's choose / skip, each with the record it made and where the gaze of the grid it was made on
            # begins in `gaze` (v1.7 back)
            picks: list[tuple[ChoiceRecord | None, int]] = []
            grid_gaze = len(gaze)       # where the gaze of the grid on screen begins
            # the ratings given, in order: (face, rating, the picks made before it); each face's latest counts, and a
            # back takes away those given after the pick it undoes, so a face re-rated on a later grid has its
            # earlier rating back, as in the belief
            rated: list[tuple[int, int, int]] = []
            seen: set[int] = set()      # the faces shown in this selection (a face never shown cannot be rated)
            for ev in run:
                if ev["event"] == "rate":
                    item, rating = ev.get("item"), ev.get("rating")
                    if not (_is_id(item) and isinstance(rating, int) and not isinstance(rating, bool)
                            and 1 <= rating <= 5):
                        report.problems.append(f"{ev['_where']}: rate without a face id and a rating 1-5; skipped")
                    elif item not in seen or (n_items is not None and item >= n_items):
                        report.problems.append(f"{ev['_where']}: rate of face {item}, not shown in this selection; "
                                               "skipped")
                    else:   # a re-rating on the same grid replaces the one before it there
                        rated = [x for x in rated if not (x[0] == item and x[2] == len(picks))]
                        rated.append((int(item), rating, len(picks)))
                    continue
                if ev["event"] == "back":   # v1.7: the last pick was taken back (a misclick): it says nothing
                    # and the ratings given on the grids it leaves go with it, as in the belief
                    rated = [x for x in rated if x[2] < len(picks)]
                    undone, grid_gaze = picks.pop() if picks else (None, grid_gaze)
                    if undone is not None:
                        del records[next(i for i in range(len(records) - 1, -1, -1) if records[i] is undone)]
                    # as in the belief (SelectionSession.back): the gaze of the grid that returns goes (the user looks
                    # at it afresh, and its first look ended on the slipped face), and the gaze of the grid left never
                    # was evidence
                    del gaze[grid_gaze:]
                elif ev["event"] == "skip":
                    picks.append((None, grid_gaze))
                    grid_gaze = len(gaze)
                if ev["event"] == "gaze":
                    g = _gaze_record(ev, algorithm, int(target))
                    if g is not None:
                        gaze.append(g)
                    continue
                cands = ev.get("candidates")
                if ev["event"] == "choose":
                    made = None
                    if grid is None:
                        pass
                    elif not (_is_id(ev.get("item")) and ev["item"] in grid and len(grid) >= 2):
                        report.problems.append(f"{ev['_where']}: choose of a face not on the logged grid; skipped")
                    elif int(target) not in grid:
                        # a grid that already held the decided face is not a pick in search of it (the user was
                        # looking at it and chose, say, to see more like it): the choice model does not describe it
                        made = ChoiceRecord(str(ev.get("algorithm")), tuple(grid), int(ev["item"]), int(target))
                        records.append(made)
                    picks.append((made, grid_gaze))
                    grid_gaze = len(gaze)
                if isinstance(cands, list) and cands and all(_is_id(c) for c in cands):
                    grid = [int(c) for c in cands]
                    seen.update(grid)
            latest = {item: rating for item, rating, _ in rated}
            ratings += [RatingRecord(algorithm, i, r, int(target)) for i, r in latest.items()]
    report.gaze_records = gaze
    report.rating_records = ratings
    return records, report


def _join_resumed(sessions: dict[object, list[dict]]) -> dict[object, list[dict]]:
    """v1.7: a selection resumed on a new connection goes on under that connection's session id, after a `resume`
    event naming the one it came from: its events are put after that session's, so the selection reads as one run."""
    joined: dict[object, list[dict]] = {}
    home: dict[object, object] = {}   # session id -> the session its selection began in
    for sid, events in sessions.items():   # in order of first appearance: a resumed session after the one it left
        first = events[0]
        origin = first.get("from_session") if first.get("event") == "resume" else None
        root = home.get(origin) if isinstance(origin, str) else None
        if root is None:
            home[sid] = sid
            joined[sid] = list(events)
        else:
            home[sid] = root
            joined[root].extend(events)
    return joined


def _gaze_record(ev: dict, algorithm: str, target: int) -> GazeRecord | None:
    from omokage.selection.belief import GAZE_UNIT_S
    items, fs, fc = ev.get("items"), ev.get("fixation_s"), ev.get("fixation_count")
    if not (isinstance(items, list) and isinstance(fs, list) and isinstance(fc, list)
            and len(items) == len(fs) == len(fc) and all(_is_id(i) for i in items)):
        return None
    if target in items:   # the decided face on screen: looking at it is recognising, not searching (as for picks)
        return None
    chosen = ev.get("chosen")
    keep = [k for k, i in enumerate(items) if i != chosen and isinstance(fs[k], (int, float))
            and isinstance(fc[k], int)]
    counts = tuple((float(fs[k]) / GAZE_UNIT_S + fc[k]) / 2 for k in keep)
    if len(keep) < 2 or not sum(counts) > 0:
        return None
    return GazeRecord(algorithm, tuple(int(items[k]) for k in keep), counts, target)


GAZE_TEMPERATURES = (0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5)
GAZE_WEIGHTS = tuple(float(w) for w in np.geomspace(0.01, 4.0, 28))


def fit_gaze(space, records: list[GazeRecord]) -> tuple[float, float, float]:
    """The gaze term's temperature and weight that make it best calibrated: maximise the mean log posterior of the
    decided face given each grid's gaze alone (flat prior), w·ℓ_T(t*) − log Σ_t exp(w·ℓ_T(t)), where ℓ_T is the
    term's log-likelihood (the contrast, at weight 1). Fixations are not independent draws, so w is not 1; the fit finds how much one
    grid's gaze actually tells. Returns (T, w, gain): gain = the mean log posterior of t* over a flat prior's, in nats
    per grid, **held out** (two folds: the parameters picked on one half are scored on the other), so gaze unrelated
    to the target scores ≤ 0; then w is the grid's floor (gaze told nothing and is not used)."""
    from omokage.selection.belief import GazeTerm
    if not records:
        raise UserError("no logged gaze to fit (sessions with gaze events and a decision)")
    n = space.n_items
    targets = np.array([r.target for r in records])
    gains = np.zeros((len(GAZE_TEMPERATURES), len(GAZE_WEIGHTS), len(records)))   # per record
    for i, temp in enumerate(GAZE_TEMPERATURES):
        ll = np.stack([GazeTerm(r.shown, r.counts, temp, 1.0).log_likelihood(space) for r in records
                       ]).astype(np.float64)                                          # (R, N), weight 1
        at = ll[np.arange(len(records)), targets]
        for j, w in enumerate(GAZE_WEIGHTS):
            a = w * ll
            m = a.max(axis=1)
            gains[i, j] = w * at - (m + np.log(np.exp(a - m[:, None]).sum(axis=1))) + math.log(n)
    half = len(records) // 2     # records come session by session: the halves share no session
    folds = [np.arange(half), np.arange(half, len(records))]
    held = []
    for train, test in (folds, folds[::-1]):
        if not len(train) or not len(test):
            continue
        i, j = np.unravel_index(np.argmax(gains[:, :, train].mean(axis=2)), gains.shape[:2])
        held.append(float(gains[i, j, test].mean()))
    i, j = np.unravel_index(np.argmax(gains.mean(axis=2)), gains.shape[:2])
    gain = float(np.mean(held)) if held else float(gains[i, j].mean())
    if gain <= 0:
        return GAZE_TEMPERATURES[i], GAZE_WEIGHTS[0], gain
    return GAZE_TEMPERATURES[i], GAZE_WEIGHTS[j], gain


def _is_id(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def choice_log_likelihood(space, records: list[ChoiceRecord], temperature: float) -> float:
    """Σ log P(chosen | grid, target) under the softmax user at `temperature` (distances in the space's units)."""
    shown, chosen_idx, targets = _arrays(space.n_items, records)
    return float(_loglik(_distances(space, shown, targets), chosen_idx, temperature))


def _arrays(n_items: int, records):
    """Logged picks as arrays: the grids (padded with -1), the index of the pick in each, the decided faces."""
    n = n_items
    ok = [r for r in records if all(0 <= i < n for i in r.shown) and 0 <= r.target < n and len(r.shown) >= 2]
    width = max((len(r.shown) for r in ok), default=2)
    shown = np.full((len(ok), width), -1, dtype=np.int64)
    for k, r in enumerate(ok):
        shown[k, :len(r.shown)] = r.shown
    chosen_idx = np.array([r.shown.index(r.chosen) for r in ok], dtype=np.int64)
    targets = np.array([r.target for r in ok], dtype=np.int64)
    return shown, chosen_idx, targets


def _distances(space, shown: np.ndarray, targets: np.ndarray) -> np.ndarray:
    x = space.features.astype(np.float64)
    d = np.linalg.norm(x[np.maximum(shown, 0)] - x[targets][:, None, :], axis=2) / space.distance_unit
    d[shown < 0] = np.inf   # short grids (the catalog ran out) are padded
    return d


def _loglik(d: np.ndarray, chosen_idx: np.ndarray, temperature: float) -> float:
    a = -d / temperature
    m = a.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(a - m).sum(axis=1))
    return float((a[np.arange(len(a)), chosen_idx] - lse).sum())


def fit_temperature(space, records: list[ChoiceRecord]) -> tuple[float, float]:
    """Maximum-likelihood temperature for `records` in `space`: (T, mean log-likelihood per pick). Golden-section
    search on log T within TEMPERATURE_RANGE (the likelihood is unimodal in T for a fixed set of picks in practice;
    a coarse grid first guards against a local optimum)."""
    if not records:
        raise UserError("no logged picks to fit a temperature from (sessions must include choose and decide)")
    shown, chosen_idx, targets = _arrays(space.n_items, records)
    d = _distances(space, shown, targets)
    f = lambda logt: -_loglik(d, chosen_idx, math.exp(logt))   # noqa: E731
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    grid = np.linspace(lo, hi, 25)
    vals = [f(g) for g in grid]
    k = int(np.argmin(vals))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    c, e = b - phi * (b - a), a + phi * (b - a)
    fc, fe = f(c), f(e)
    for _ in range(60):
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, e, fe
            e = a + phi * (b - a)
            fe = f(e)
    t = math.exp((a + b) / 2)
    return t, -f(math.log(t)) / len(chosen_idx)


METRIC_SHRINKAGE = 1.0   # pull of the log-weights towards their mean (a Gaussian prior of an isotropic metric)
MIN_METRIC_PICKS = 100   # per algorithm: fewer picks than this fit no metric (30 weights from 20 picks overfit)
MAX_METRIC_DIM = 256     # raw pixels (12,288 dimensions) get no metric: too many weights for any log


def fit_metric(features: np.ndarray, records: list[ChoiceRecord], shrinkage: float = METRIC_SHRINKAGE
               ) -> tuple[np.ndarray | None, float]:
    """Per-dimension weights of the distance people choose by: maximise the softmax choice likelihood with
    d_w(a, b) = sqrt(Σ_k w_k (a_k − b_k)²) (the decided face standing for the target), log-weights shrunk towards
    their mean (an isotropic metric) with strength `shrinkage`. Returns (scales, gain): multiply the features by
    `scales` (√w, mean square 1) to get the space the belief should compare faces in; gain = held-out log-likelihood
    per pick over the best isotropic metric (two folds by session order), and scales None when gain ≤ 0: the picks
    say nothing about the axes that the isotropic distance does not, so the space is left as it is."""
    from scipy.optimize import minimize
    x = np.asarray(features, dtype=np.float64)
    n, dim = x.shape
    shown, chosen, targets = _arrays(n, records)
    if len(shown) < 2:
        return None, 0.0
    sq = (x[np.maximum(shown, 0)] - x[targets][:, None, :]) ** 2            # (R, width, D)
    pad = shown < 0

    def nll(logw, rows, lam):
        w = np.exp(logw)
        d = np.sqrt(sq[rows] @ w + 1e-12)
        a = np.where(pad[rows], -np.inf, -d)
        m = a.max(axis=1, keepdims=True)
        p = np.exp(a - m)
        z = p.sum(axis=1, keepdims=True)
        p /= z
        pick = (np.arange(len(rows)), chosen[rows])
        loss = -(a[pick] - m[:, 0] - np.log(z[:, 0])).sum()
        g_a = p.copy()
        g_a[pick] -= 1.0                                                   # d loss / d a
        g_w = np.einsum("rj,rjk->k", np.where(pad[rows], 0.0, -g_a / (2 * d)), sq[rows])
        dev = logw - logw.mean()
        return loss + lam * (dev ** 2).sum(), g_w * w + 2 * lam * (dev - dev.mean())

    def fit(rows):
        # the isotropic start: one weight, its scale by a 1-D search, then every axis
        scale = np.median(np.sqrt(sq[rows][~pad[rows]].sum(-1)))
        grid = np.log(4.0 / scale ** 2) + np.linspace(-4, 4, 17)
        iso = min(grid, key=lambda g: nll(np.full(dim, g), rows, 0.0)[0])
        res = minimize(nll, np.full(dim, iso), jac=True, method="L-BFGS-B", args=(rows, shrinkage))
        return res.x, iso

    half = len(shown) // 2   # records come session by session: the halves share no session
    folds = [np.arange(half), np.arange(half, len(shown))]
    gains = []
    for train, test in (folds, folds[::-1]):
        logw, iso = fit(train)
        gains.append((nll(np.full(dim, iso), test, 0.0)[0] - nll(logw, test, 0.0)[0]) / len(test))
    gain = float(np.mean(gains))
    if not gain > 0:
        return None, gain
    logw, _ = fit(np.arange(len(shown)))
    w = np.exp(logw - logw.max())
    scales = np.sqrt(w / w.mean())
    return scales.astype(np.float32), gain


MIN_RATINGS = 30          # logged ratings on one model before how its users use the stars is fitted


def _rating_targets_z(space, records: list[RatingRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Each record's target as a percentile logit among its rated face's distances (one pass per rated face), and the
    ratings."""
    from omokage.selection.belief import rating_percentile_logits
    z = np.empty(len(records))
    by_item: dict[int, list[int]] = {}
    for k, r in enumerate(records):
        by_item.setdefault(r.item, []).append(k)
    for item, ks in by_item.items():
        zi = rating_percentile_logits(space.unit_distances_from([item])[0])
        z[ks] = zi[[records[k].target for k in ks]]
    return z, np.array([r.rating for r in records])


def rating_log_likelihood(z: np.ndarray, ratings: np.ndarray, offset: float, scale: float, lapse: float) -> float:
    """Mean log P(rating | target) per rating under `RatingTerm`'s ordered logit with this lapse."""
    from omokage.selection.belief import rating_base_rates, rating_probability
    base = rating_base_rates(scale=scale, offset=offset)
    p = np.zeros(z.size)
    for r in range(1, 6):
        at = ratings == r
        p[at] = rating_probability(z[at], r, scale=scale, offset=offset)
    return float(np.mean(np.log((1 - lapse) * p + lapse * base[ratings - 1] + 1e-12)))


def _fit_rating_params(z: np.ndarray, r: np.ndarray) -> tuple[float, float, float]:
    from scipy.optimize import minimize

    def nll(x):
        return -rating_log_likelihood(z, r, x[0], float(np.exp(x[1])), float(1 / (1 + np.exp(-x[2]))))
    # from the defaults (offset 0, scale 1, lapse 0.2) and from "ratings say little" (lapse 0.8): the better optimum
    fits = [minimize(nll, x0=np.array([0.0, 0.0, x2]), method="L-BFGS-B",
                     bounds=[(-4.0, 4.0), (np.log(0.2), np.log(10.0)), (-6.0, 6.0)]) for x2 in (np.log(0.25), 1.4)]
    x = min(fits, key=lambda f: f.fun).x
    return float(x[0]), float(np.exp(x[1])), float(1 / (1 + np.exp(-x[2])))


def _frequencies_log_likelihood(train: np.ndarray, test: np.ndarray) -> float:
    """Mean log-likelihood of `test` ratings under the star frequencies of `train` (the model in which ratings say
    nothing about the target), with one pseudo-count per star."""
    freq = (np.bincount(train, minlength=6)[1:] + 1.0) / (train.size + 5.0)
    return float(np.mean(np.log(freq[test - 1])))


def fit_rating(space, records: list[RatingRecord]) -> dict:
    """How a catalog's users use the five stars, by maximum likelihood over their logged ratings under `RatingTerm`'s
    ordered logit: a shift of every band (`offset`, logits: > 0 for generous raters), the bands' softness (`scale`)
    and the share of ratings that say nothing about the target (`lapse`). Checked on held-out ratings (two folds)
    against a model in which ratings say nothing (each star at its observed frequency): `gain_nats` per rating. Where
    the ratings predict no better than that, the fit says so (`informative: false`) and the lapse is 1: the term the
    server builds from it is flat, and a rating then changes nothing."""
    z, r = _rating_targets_z(space, records)
    offset, scale, lapse = _fit_rating_params(z, r)
    folds = np.arange(len(records)) % 2 == 0
    gains = []
    for train in (folds, ~folds):
        if train.sum() < 5 or (~train).sum() < 5:
            continue
        o, s_, l_ = _fit_rating_params(z[train], r[train])
        gains.append(rating_log_likelihood(z[~train], r[~train], o, s_, l_)
                     - _frequencies_log_likelihood(r[train], r[~train]))
    gain = float(np.mean(gains)) if gains else 0.0
    informative = gain > 0
    return {"offset": round(offset, 6), "scale": round(scale, 6), "lapse": round(lapse if informative else 1.0, 6),
            "ratings": int(len(records)), "gain_nats": round(gain, 6), "informative": informative}


@dataclass
class UserModel:
    """Fitted choice temperatures per feature space (algorithm)."""

    temperatures: dict[str, float]
    picks: dict[str, int] = field(default_factory=dict)
    log_likelihood_per_pick: dict[str, float] = field(default_factory=dict)
    catalog_fingerprint: str | None = None

    gaze: dict[str, dict] = field(default_factory=dict)   # per algorithm: {temperature, weight, grids, gain_nats}
    # per algorithm: {scales: [per-dimension factor], picks, gain_nats}: the space the belief compares faces in
    metric: dict[str, dict] = field(default_factory=dict)
    rating: dict[str, dict] = field(default_factory=dict)  # per algorithm: {offset, scale, ratings, gain_nats}

    def scales(self, algorithm: str, dim: int) -> np.ndarray | None:
        m = self.metric.get(algorithm)
        return np.asarray(m["scales"], dtype=np.float32) if m is not None and len(m["scales"]) == dim else None

    def policy_params(self, algorithm: str) -> dict:
        t = self.temperatures.get(algorithm)
        out = {"temperature": t} if t is not None else {}
        g = self.gaze.get(algorithm)
        if g is not None:
            out.update(gaze_temperature=g["temperature"], gaze_weight=g["weight"])
        r = self.rating.get(algorithm)
        if r is not None:
            out.update(rating_offset=r["offset"], rating_scale=r["scale"], rating_lapse=r.get("lapse", RATING_LAPSE))
        return out

    def save(self, repository: str | os.PathLike) -> Path:
        root = Path(repository) / USER_MODEL_NAME
        version = max((int(p.name) for p in root.glob("*") if p.name.isdigit()), default=0) + 1
        final = root / str(version)
        tmp = root / f".{version}.partial-{os.getpid()}"
        tmp.mkdir(parents=True)
        config = {"name": USER_MODEL_NAME, "version": version, "model": "softmax choice (Luce), distances in median "
                  "units of each feature space", "temperatures": self.temperatures, "picks": self.picks,
                  "log_likelihood_per_pick": self.log_likelihood_per_pick,
                  "default_temperature": DEFAULT_CHOICE_TEMPERATURE,
                  "gaze": self.gaze, "metric": self.metric, "rating": self.rating,
                  "catalog": {"fingerprint": self.catalog_fingerprint},
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, final)
        return final

    @classmethod
    def load_latest(cls, repository: str | os.PathLike, catalog_fingerprint: str | None = None) -> "UserModel | None":
        """The newest saved user model in `repository` fitted on this catalog, or None."""
        root = Path(repository) / USER_MODEL_NAME
        versions = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit() and (p / "config.json").is_file()),
                          reverse=True)
        for v in versions:
            try:
                cfg = json.loads((root / str(v) / "config.json").read_text())
            except (OSError, ValueError):
                continue
            if catalog_fingerprint is not None and cfg.get("catalog", {}).get("fingerprint") != catalog_fingerprint:
                continue
            temps = {k: float(t) for k, t in cfg.get("temperatures", {}).items()
                     if isinstance(t, (int, float)) and TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]}
            gaze = {k: g for k, g in (cfg.get("gaze") or {}).items()
                    if isinstance(g, dict) and isinstance(g.get("temperature"), (int, float)) and g["temperature"] > 0
                    and isinstance(g.get("weight"), (int, float)) and g["weight"] >= 0}
            metric = {k: m for k, m in (cfg.get("metric") or {}).items()
                      if isinstance(m, dict) and isinstance(m.get("scales"), list) and m["scales"]
                      and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in m["scales"])}
            rating = {k: r for k, r in (cfg.get("rating") or {}).items()
                      if isinstance(r, dict) and all(isinstance(r.get(f), (int, float)) and math.isfinite(r[f])
                                                     for f in ("offset", "scale", "lapse"))
                      and r["scale"] > 0 and 0 <= r["lapse"] <= 1}
            return cls(temps, cfg.get("picks", {}), cfg.get("log_likelihood_per_pick", {}),
                       cfg.get("catalog", {}).get("fingerprint"), gaze, metric, rating)
        return None


def fit_user_model(engine, records: list[ChoiceRecord], min_picks: int = MIN_PICKS,
                   gaze_records: list[GazeRecord] = (), min_gaze: int = 20,
                   min_metric_picks: int = MIN_METRIC_PICKS, rating_records: list[RatingRecord] = (),
                   min_ratings: int = MIN_RATINGS) -> UserModel:
    """Per algorithm: the metric people choose by (with at least `min_metric_picks` logged picks and at most
    MAX_METRIC_DIM features), then the choice temperature in that space (at least `min_picks` picks), and the gaze
    term's temperature and weight (at least `min_gaze` logged grids with gaze), also in that space, and how its users
    use the five stars (at least `min_ratings` ratings in decided selections)."""
    from omokage.engine import metric_space
    by_alg: dict[str, list[ChoiceRecord]] = {}
    for r in records:
        by_alg.setdefault(r.algorithm, []).append(r)
    by_alg_gaze: dict[str, list[GazeRecord]] = {}
    for g in gaze_records:
        by_alg_gaze.setdefault(g.algorithm, []).append(g)
    by_alg_rating: dict[str, list[RatingRecord]] = {}
    for r in rating_records:
        by_alg_rating.setdefault(r.algorithm, []).append(r)
    temps, picks, lls, gaze, metric, rating = {}, {}, {}, {}, {}, {}
    for alg in sorted(set(by_alg) | set(by_alg_gaze) | set(by_alg_rating)):
        if alg not in engine.models:
            continue
        loaded = engine.models[alg]
        recs = by_alg.get(alg, [])
        space = loaded.space if loaded.scales is None else metric_space(alg, loaded.features, None)
        if len(recs) >= min_metric_picks and space.dim <= MAX_METRIC_DIM:
            scales, gain = fit_metric(loaded.features, recs)
            if scales is not None:
                metric[alg] = {"scales": [round(float(v), 6) for v in scales], "picks": len(recs),
                               "gain_nats": round(gain, 6)}
                space = metric_space(alg, loaded.features, scales)
        if len(recs) >= min_picks:
            t, ll = fit_temperature(space, recs)
            temps[alg], picks[alg], lls[alg] = round(t, 6), len(recs), round(ll, 6)
        grecs = by_alg_gaze.get(alg, [])
        if len(grecs) >= min_gaze:
            t, w, g = fit_gaze(space, grecs)
            gaze[alg] = {"temperature": t, "weight": round(w, 6), "grids": len(grecs), "gain_nats": round(g, 6)}
        rrecs = by_alg_rating.get(alg, [])
        if len(rrecs) >= min_ratings:
            rating[alg] = fit_rating(space, rrecs)
    return UserModel(temps, picks, lls, engine.catalog.fingerprint(), gaze, metric, rating)
