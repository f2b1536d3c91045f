"""Fixation detection: I-VT (velocity threshold, Tobii's filter) and I-DT (dispersion threshold, Salvucci &
Goldberg 2000). Pure numpy: arrays in, a list of `Fixation` out.

I-VT, in Tobii's order (defaults from ../shared/REFERENCE.md, all configurable through `IVTConfig`):
1. samples below `min_confidence` are gaps; a gap longer than `max_gap` (75 ms) splits the trace, shorter ones are
   bridged (the velocity is taken across them);
2. noise reduction: a moving median of `noise_window` samples per direction component (3; 1 turns it off);
3. angular velocity per sample over a window of `velocity_window` (20 ms: the samples either side);
4. samples slower than `velocity_threshold` (30°/s) are fixation samples; runs of them are fixations;
5. adjacent fixations less than `merge_time` (100 ms) and `merge_angle` (3°) apart are merged;
6. fixations shorter than `min_duration` (100 ms) are dropped.

A fixation's onset is the time of its first sample, its offset the time of its last plus one sample interval, so a
run of m samples at rate f lasts m / f.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.ma  # noqa: F401  (np.median imports it on first use: 10-20 ms on the event loop at a server's first pick)

from omokage.gaze.samples import NOT_CAST


@dataclass(frozen=True)
class IVTConfig:
    velocity_threshold: float = 30.0    # degrees per second
    min_duration: float = 0.100         # seconds
    max_gap: float = 0.075              # seconds: longer gaps split the trace
    merge_time: float = 0.100           # seconds between two fixations ...
    merge_angle: float = 3.0            # ... and degrees between them, both below: merged
    velocity_window: float = 0.020      # seconds
    noise_window: int = 3               # samples of the moving median (1: none)
    min_confidence: float = 0.5


@dataclass(frozen=True)
class IDTConfig:
    dispersion: float = 1.0             # degrees: the largest angle from the window's mean direction
    min_duration: float = 0.100
    max_gap: float = 0.075
    min_confidence: float = 0.5


@dataclass(frozen=True)
class Fixation:
    onset: float              # seconds (the samples' clock)
    offset: float
    direction: tuple[float, float, float]   # mean unit direction
    panel: int                # the panel most of its samples hit (NO_HIT: none; NOT_CAST: not ray-cast)
    samples: int

    @property
    def duration(self) -> float:
        return self.offset - self.onset


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, row-wise, in degrees (atan2 form: accurate for tiny angles)."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = (a * b).sum(axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def _interval(t: np.ndarray) -> float:
    d = np.diff(t)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 0.0


def _segments(t: np.ndarray, max_gap: float) -> np.ndarray:
    """Segment id per sample: a new segment after every gap longer than max_gap."""
    return np.concatenate([[0], np.cumsum(np.diff(t) > max_gap)]).astype(np.int64)


def _median_filter(d: np.ndarray, seg: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(d) < 3:
        return d
    h = window // 2
    n = len(d)
    idx = np.arange(n)[:, None] + np.arange(-h, h + 1)[None, :]
    idx = np.clip(idx, 0, n - 1)
    idx = np.where(seg[idx] == seg[:, None], idx, np.arange(n)[:, None])   # never across a gap
    out = np.median(d[idx], axis=1)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 0, out / np.maximum(norm, 1e-12), d)


def _panel_of(panels: np.ndarray) -> int:
    if panels is None or not len(panels):
        return NOT_CAST
    counts = np.bincount(panels.astype(np.int64) - NOT_CAST)
    return int(np.argmax(counts)) + NOT_CAST


def _make(t, d, panel, lo, hi, dt) -> Fixation:
    m = d[lo:hi].mean(axis=0)
    m = m / max(float(np.linalg.norm(m)), 1e-12)
    return Fixation(float(t[lo]), float(t[hi - 1] + dt), (float(m[0]), float(m[1]), float(m[2])),
                    _panel_of(panel[lo:hi] if panel is not None else None), hi - lo)


def _prepare(t, direction, confidence, panel, min_confidence):
    t = np.asarray(t, np.float64)
    d = np.asarray(direction, np.float64)
    keep = np.ones(len(t), bool) if confidence is None else np.asarray(confidence) >= min_confidence
    p = None if panel is None else np.asarray(panel)[keep]
    return t[keep], d[keep], p


def detect_ivt(t, direction, confidence=None, panel=None, config: IVTConfig = IVTConfig()) -> list[Fixation]:
    """I-VT fixations of one source's samples (t increasing)."""
    t, d, panel = _prepare(t, direction, confidence, panel, config.min_confidence)
    n = len(t)
    if n < 2:
        return []
    dt = _interval(t)
    seg = _segments(t, config.max_gap)
    d = _median_filter(d, seg, config.noise_window)
    k = max(1, int(round(config.velocity_window / 2 / dt))) if dt > 0 else 1
    i = np.arange(n)
    lo, hi = np.clip(i - k, 0, n - 1), np.clip(i + k, 0, n - 1)
    # never across a gap: a window that would cross one ends at the sample itself
    lo = np.where(seg[lo] == seg, lo, i)
    hi = np.where(seg[hi] == seg, hi, i)
    span = t[hi] - t[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = np.where(span > 0, angle_deg(d[lo], d[hi]) / span, np.inf)
    slow = velocity < config.velocity_threshold
    # runs of slow samples within one segment
    edge = np.diff(np.concatenate([[False], slow, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    cut = np.flatnonzero(np.diff(seg) != 0) + 1       # a run that spans a gap is two runs
    fixations: list[tuple[int, int]] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        inner = cut[(cut > a) & (cut < b)].tolist()
        bounds = [a, *inner, b]
        fixations.extend(zip(bounds[:-1], bounds[1:]))
    if not fixations:
        return []
    a_idx = np.array([a for a, _ in fixations])
    b_idx = np.array([b for _, b in fixations])
    cs = np.vstack([np.zeros((1, 3)), np.cumsum(d, axis=0)])
    sums = cs[b_idx] - cs[a_idx]                                                   # (F, 3) per run
    counts = (b_idx - a_idx).astype(np.float64)
    if panel is not None:                                                          # per run, the panels' tallies
        run_of = np.repeat(np.arange(len(a_idx)), b_idx - a_idx)
        members = np.concatenate([np.arange(a, b) for a, b in fixations])
        width = int(panel.max()) - NOT_CAST + 1
        tallies = np.bincount(run_of * width + (panel[members].astype(np.int64) - NOT_CAST),
                              minlength=len(a_idx) * width).reshape(len(a_idx), width).astype(np.float64)
    onset, offset = t[a_idx], t[b_idx - 1] + dt
    # merge neighbours closer than merge_time and merge_angle (a plain loop over runs, scalar math)
    cos_merge = math.cos(math.radians(config.merge_angle))
    groups: list[list[int]] = [[0]]
    acc = [sums[0].copy()]
    for f in range(1, len(a_idx)):
        m0, m1 = acc[-1], sums[f]
        c = float(m0 @ m1) / max(float(np.linalg.norm(m0) * np.linalg.norm(m1)), 1e-12)
        if onset[f] - offset[groups[-1][-1]] < config.merge_time and c > cos_merge:
            groups[-1].append(f)
            acc[-1] = m0 + m1
        else:
            groups.append([f])
            acc.append(sums[f].copy())
    out: list[Fixation] = []
    for g, m in zip(groups, acc):
        on, off = float(onset[g[0]]), float(offset[g[-1]])
        if off - on < config.min_duration - 1e-9:
            continue
        m = m / max(float(np.linalg.norm(m)), 1e-12)
        p = int(np.argmax(tallies[g].sum(axis=0))) + NOT_CAST if panel is not None else NOT_CAST
        out.append(Fixation(on, off, (float(m[0]), float(m[1]), float(m[2])), p, int(counts[g].sum())))
    return out


def detect_idt(t, direction, confidence=None, panel=None, config: IDTConfig = IDTConfig()) -> list[Fixation]:
    """I-DT fixations: the shortest window lasting `min_duration` whose samples all lie within `dispersion` degrees
    of their mean direction starts a fixation, which grows while they still do (the frame-independent form of
    Salvucci's (max x − min x) + (max y − min y) measure)."""
    t, d, panel = _prepare(t, direction, confidence, panel, config.min_confidence)
    n = len(t)
    if n < 2:
        return []
    dt = _interval(t)
    seg = _segments(t, config.max_gap)
    cos_limit = np.cos(np.radians(config.dispersion))

    def compact(a: int, b: int) -> bool:
        m = d[a:b].sum(axis=0)
        m = m / max(float(np.linalg.norm(m)), 1e-12)
        return bool((d[a:b] @ m).min() >= cos_limit)

    out: list[Fixation] = []
    i = 0
    while i < n:
        # the window [i, j) spanning min_duration (its last sample's interval counted)
        j = int(np.searchsorted(t, t[i] + config.min_duration - dt - 1e-9, side="left")) + 1
        if j > n:
            break
        if seg[j - 1] != seg[i]:
            i = int(np.searchsorted(seg, seg[i], side="right"))
            continue
        if not compact(i, j):
            i += 1
            continue
        while j < n and seg[j] == seg[i] and compact(i, j + 1):
            j += 1
        out.append(_make(t, d, panel, i, j, dt))
        i = j
    return out
