"""Gaze samples off the wire: validation (every bad sample dropped and counted by reason, never an exception), the
grid's layout, and the ray-cast from a gaze ray to the panel it hits. Pure numpy, no I/O, no clock.

A sample on the wire (protocol v1.2, `gaze.batch`) is an array, not a map (13 MessagePack objects instead of ~30, so a
batch of 256 samples fits the per-frame object budget and decodes 2-3 times faster):

    [t, source, ox, oy, oz, dx, dy, dz, confidence]                    # a ray: the server ray-casts it
    [t, source, ox, oy, oz, dx, dy, dz, confidence, panel, u, v]       # with the client's hit (panel -1: none)

`t` is the server's clock in seconds (the client's clock plus the ping/pong offset), `source` "head" or "eye", the
origin in metres and the unit direction in the scene frame (the frame the `layout` is given in), confidence 0 ... 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

HEAD, EYE = 0, 1
SOURCES = {"head": HEAD, "eye": EYE}
SOURCE_NAMES = ("head", "eye")
NO_HIT = -1          # the ray hits no panel
NOT_CAST = -2        # the client sent no hit and there is no layout to ray-cast against (yet)

UNIT_TOLERANCE = 0.01        # |‖direction‖ − 1| above this: `not_unit`
FUTURE_TOLERANCE_S = 0.5     # a sample more than this ahead of the server's clock: `future`
MAX_PANELS = 9
MAX_PANEL_SIZE_M = 100.0
MAX_COORDINATE_M = 1e4

# every reason a sample is dropped; the names appear in logs and in the `bad_field` message
DROP_REASONS = ("malformed", "not_finite", "not_unit", "out_of_range", "bad_panel", "out_of_order", "future")


@dataclass
class Samples:
    """Accepted samples, columns as arrays (oldest first, per source strictly increasing in time)."""

    t: np.ndarray            # (n,) float64, server clock seconds
    source: np.ndarray       # (n,) int8: HEAD | EYE
    origin: np.ndarray       # (n, 3) float64
    direction: np.ndarray    # (n, 3) float64, unit
    confidence: np.ndarray   # (n,) float32
    panel: np.ndarray        # (n,) int16: panel index, NO_HIT or NOT_CAST
    uv: np.ndarray           # (n, 2) float32 (NaN without a hit)

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> "Samples":
        return cls(np.zeros(0), np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.float32),
                   np.zeros(0, np.int16), np.zeros((0, 2), np.float32))

    def take(self, mask_or_index) -> "Samples":
        return Samples(self.t[mask_or_index], self.source[mask_or_index], self.origin[mask_or_index],
                       self.direction[mask_or_index], self.confidence[mask_or_index], self.panel[mask_or_index],
                       self.uv[mask_or_index])

    @classmethod
    def concat(cls, parts: list["Samples"]) -> "Samples":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("t", "source", "origin", "direction", "confidence", "panel", "uv")))


@dataclass
class Drops:
    """Samples dropped, by reason."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + int(n)

    def merge(self, other: "Drops") -> None:
        for k, v in other.counts.items():
            self.add(k, v)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))


_NUM = (int, float)
_NUM_TYPES = frozenset(_NUM)
_RAY_TAIL = (NOT_CAST, 0.0, 0.0)     # a ray's missing hit: panel, u, v


def parse_samples(raw, *, now: float, last_t: dict[int, float] | None = None, grid_size: int = MAX_PANELS,
                  future_s: float = FUTURE_TOLERANCE_S) -> tuple[Samples, Drops]:
    """Validate one batch's samples. Returns the accepted ones and the drops by reason; never raises on bad input.

    `last_t[source]` is the time of the latest sample accepted earlier on this connection (updated in place): a
    sample at or before it is `out_of_order`, and so is one at or before an earlier sample of the same batch.
    `grid_size`: panels of the grid on screen (a hit on panel ≥ it is `bad_panel`)."""
    drops = Drops()
    if last_t is None:
        last_t = {}
    rows: list[list[float]] = []
    sources: list[int] = []
    for s in raw if isinstance(raw, list) else ():
        n = len(s) if type(s) is list else 0
        if n != 9 and n != 12:
            drops.add("malformed")
            continue
        src = SOURCES.get(s[1]) if type(s[1]) is str else None
        if src is None:
            drops.add("malformed")
            continue
        if n == 9:
            row = s[:1] + s[2:]
        else:
            if type(s[9]) is not int or s[9] < NO_HIT:
                drops.add("bad_panel" if type(s[9]) in _NUM else "malformed")
                continue
            row = s[:1] + s[2:]
        if not _NUM_TYPES.issuperset(map(type, row)):     # bool, str, nil, containers; int and float only
            drops.add("malformed")
            continue
        if n == 9:
            row += _RAY_TAIL
        rows.append(row)
        sources.append(src)
    if not rows:
        return Samples.empty(), drops
    try:
        a = np.array(rows, dtype=np.float64)
    except OverflowError:   # an int beyond float64: drop the batch's offenders one by one
        keep = []
        for r, src in zip(rows, sources):
            try:
                np.array(r, dtype=np.float64)
                keep.append((r, src))
            except OverflowError:
                drops.add("not_finite")
        if not keep:
            return Samples.empty(), drops
        rows, sources = [r for r, _ in keep], [s for _, s in keep]
        a = np.array(rows, dtype=np.float64)
    src = np.array(sources, dtype=np.int8)
    if _all_valid(a, src, now + future_s, grid_size, last_t):   # the usual batch: no sample to drop
        return _accepted(a, src), drops
    ok = np.ones(len(a), bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        nonlocal ok
        bad = mask & ok
        drops.add(reason, int(bad.sum()))
        ok &= ~bad

    drop(~np.isfinite(a).all(axis=1), "not_finite")
    drop((np.abs(a[:, 1:4]) > MAX_COORDINATE_M).any(axis=1), "out_of_range")
    with np.errstate(invalid="ignore"):   # (rows with NaN are dropped already)
        n2 = _norm_sq(a[:, 4:7])
    drop((n2 < _UNIT_SQ[0]) | (n2 > _UNIT_SQ[1]), "not_unit")    # the fast check's very predicate
    drop((a[:, 7] < 0) | (a[:, 7] > 1), "out_of_range")
    hit = a[:, 8] != NOT_CAST
    drop(hit & ((a[:, 8] < NO_HIT) | (a[:, 8] >= grid_size)), "bad_panel")
    on_panel = hit & (a[:, 8] >= 0)
    drop(on_panel & ((a[:, 9] < 0) | (a[:, 9] > 1) | (a[:, 10] < 0) | (a[:, 10] > 1)), "out_of_range")
    drop(a[:, 0] > now + future_s, "future")
    # per source: strictly after everything accepted before (in this batch and earlier ones)
    for code in (HEAD, EYE):
        idx = np.flatnonzero(ok & (src == code))
        if not idx.size:
            continue
        t = a[idx, 0]
        before = np.maximum.accumulate(np.concatenate([[last_t.get(code, -math.inf)], t]))[:-1]
        late = t <= before
        drop(np.isin(np.arange(len(a)), idx[late]), "out_of_order")
        kept = idx[~late]
        if kept.size:
            last_t[code] = float(a[kept[-1], 0])
    return _accepted(a[ok], src[ok]), drops


def _all_valid(a: np.ndarray, src: np.ndarray, latest: float, grid_size: int, last_t: dict[int, float]) -> bool:
    """True when no sample of the batch breaks any rule (and then `last_t` is moved on): one comparison of the whole
    batch with per-column bounds (NaN fails every comparison, ±inf falls outside) and one of the squared norms, without
    the per-reason accounting `parse_samples` does when something is wrong. It may be stricter than the rules (a hit
    off the panels with u, v outside 0..1 goes the slow way), never looser. A batch from one source in strictly
    increasing time, after that source's last sample, is in order."""
    lo, hi = _BOUNDS
    hi = hi.copy()
    hi[0], hi[8] = latest, grid_size - 1      # panels are integers here (parse_samples refused any other)
    with np.errstate(invalid="ignore"):
        if not ((a >= lo) & (a <= hi)).all():
            return False
        n2 = _norm_sq(a[:, 4:7])
        if not ((n2 >= _UNIT_SQ[0]) & (n2 <= _UNIT_SQ[1])).all():
            return False
    code = int(src[0])
    t = a[:, 0]
    if not (src == code).all() or not t[0] > last_t.get(code, -math.inf) or not (t[1:] > t[:-1]).all():
        return False
    last_t[code] = float(t[-1])
    return True


# the fast check's per-column bounds: t (its top set per batch), origin, direction, confidence, panel (its top set per
# batch), u, v; and |direction|² within (1 ± UNIT_TOLERANCE)²
_BOUNDS = (np.array([-np.finfo(np.float64).max] + [-MAX_COORDINATE_M] * 3 + [-1 - UNIT_TOLERANCE] * 3
                    + [0.0, NOT_CAST, 0.0, 0.0]),
           np.array([0.0] + [MAX_COORDINATE_M] * 3 + [1 + UNIT_TOLERANCE] * 3 + [1.0, 0.0, 1.0, 1.0]))
_UNIT_SQ = ((1 - UNIT_TOLERANCE) ** 2, (1 + UNIT_TOLERANCE) ** 2)


def _norm_sq(d: np.ndarray) -> np.ndarray:
    """|direction|² per row: one expression for both checks, so a sample on the tolerance's edge gets one answer."""
    return np.einsum("ij,ij->i", d, d)


def _accepted(a: np.ndarray, src: np.ndarray) -> Samples:
    direction = a[:, 4:7] / np.sqrt((a[:, 4:7] ** 2).sum(axis=1))[:, None]
    panel = a[:, 8].astype(np.int16)
    uv = a[:, 9:11].astype(np.float32)
    uv[panel < 0] = np.nan
    return Samples(a[:, 0].copy(), src, a[:, 1:4].copy(), direction, a[:, 7].astype(np.float32), panel, uv)


# --- layout and ray-cast ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The grid's panels in the scene frame: panel k shows `candidates.items[k]`. Each panel is a rectangle in its
    local xy plane, centred on `position`, `size` = (width along local x, height along local y) in metres; `rotation`
    a unit quaternion (x, y, z, w). u runs 0 → 1 along local +x, v 0 → 1 along local +y."""

    position: np.ndarray     # (k, 3)
    rotation: np.ndarray     # (k, 4) unit quaternions x, y, z, w
    size: np.ndarray         # (k, 2)

    def __len__(self) -> int:
        return len(self.position)

    @cached_property
    def axes(self) -> np.ndarray:
        """(k, 3, 3): each panel's local x, y and z (normal) axes in the scene frame (computed once: every batch of
        rays is cast against them)."""
        return _quat_axes(self.rotation)

    def to_wire(self) -> dict:
        return {"panels": [{"position": [float(x) for x in p], "rotation": [float(x) for x in r],
                            "size": [float(x) for x in s]}
                           for p, r, s in zip(self.position, self.rotation, self.size)]}

    @classmethod
    def grid(cls, rows: int = 3, cols: int = 3, *, distance: float = 1.5, panel: float = 0.3, gap: float = 0.06,
             height: float = 1.5) -> "Layout":
        """A flat grid facing the origin along −z (the viewer at (0, height, 0) looking down −z, as in WebXR and
        the Unity package's default), row-major from the top left."""
        pos = []
        for r in range(rows):
            for c in range(cols):
                pos.append([(c - (cols - 1) / 2) * (panel + gap), height + ((rows - 1) / 2 - r) * (panel + gap),
                            -distance])
        k = len(pos)
        return cls(np.array(pos, float), np.tile([0.0, 0.0, 0.0, 1.0], (k, 1)), np.full((k, 2), panel))


class LayoutError(ValueError):
    pass


def _vec(v, n: int, what: str) -> list[float]:
    if type(v) is not list or len(v) != n or not all(type(x) in _NUM for x in v):
        raise LayoutError(f"{what} must be an array of {n} numbers")
    out = [float(x) for x in v]
    if not all(math.isfinite(x) for x in out):
        raise LayoutError(f"{what} must be finite")
    return out


def parse_layout(panels, max_panels: int = MAX_PANELS) -> Layout:
    """`layout.panels` → Layout, or LayoutError naming the first problem."""
    if type(panels) is not list or not 1 <= len(panels) <= max_panels:
        raise LayoutError(f"panels must be an array of 1 to {max_panels} maps")
    pos, rot, size = [], [], []
    for k, p in enumerate(panels):
        if type(p) is not dict:
            raise LayoutError(f"panels[{k}] must be a map {{position, rotation, size}}")
        pos.append(_vec(p.get("position"), 3, f"panels[{k}].position"))
        if max(abs(x) for x in pos[-1]) > MAX_COORDINATE_M:
            raise LayoutError(f"panels[{k}].position: beyond {MAX_COORDINATE_M:g} m")
        q = _vec(p.get("rotation"), 4, f"panels[{k}].rotation")
        qn = math.sqrt(sum(x * x for x in q))
        if abs(qn - 1) > UNIT_TOLERANCE:
            raise LayoutError(f"panels[{k}].rotation must be a unit quaternion (x, y, z, w), its norm is {qn:.4g}")
        rot.append([x / qn for x in q])
        s = _vec(p.get("size"), 2, f"panels[{k}].size")
        if not all(0 < x <= MAX_PANEL_SIZE_M for x in s):
            raise LayoutError(f"panels[{k}].size: width and height must be > 0 and ≤ {MAX_PANEL_SIZE_M:g} m")
        size.append(s)
    return Layout(np.array(pos), np.array(rot), np.array(size))


def _quat_axes(q: np.ndarray) -> np.ndarray:
    x, y, z, w = (q[:, i] for i in range(4))
    r = np.empty((len(q), 3, 3))
    # the rotation matrix's columns: the images of the local x, y and z axes (the same formula in either handedness)
    r[:, 0] = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w)], axis=1)
    r[:, 1] = np.stack([2 * (x * y - z * w), 1 - 2 * (x * x + z * z), 2 * (y * z + x * w)], axis=1)
    r[:, 2] = np.stack([2 * (x * z + y * w), 2 * (y * z - x * w), 1 - 2 * (x * x + y * y)], axis=1)
    return r


def ray_cast(layout: Layout, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest panel each ray hits (in front of its origin, either face), or NO_HIT; and (u, v) on it."""
    n = len(origin)
    if not n:
        return np.zeros(0, np.int16), np.zeros((0, 2), np.float32)
    ax = layout.axes                                        # (k, 3, 3)
    normal = ax[:, 2]                                       # (k, 3)
    denom = direction @ normal.T                            # (n, k)
    rel = layout.position[None, :, :] - origin[:, None, :]  # (n, k, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.einsum("nkc,kc->nk", rel, normal) / denom
    s[~(np.abs(denom) > 1e-9) | ~(s > 0)] = np.inf
    reach = np.where(np.isfinite(s), s, 0.0)
    p = origin[:, None, :] + reach[..., None] * direction[:, None, :] - layout.position[None, :, :]   # (n, k, 3)
    lx = np.einsum("nkc,kc->nk", p, ax[:, 0])
    ly = np.einsum("nkc,kc->nk", p, ax[:, 1])
    half = layout.size / 2
    inside = np.isfinite(s) & (np.abs(lx) <= half[:, 0]) & (np.abs(ly) <= half[:, 1])
    s = np.where(inside, s, np.inf)
    best = np.argmin(s, axis=1)
    rows = np.arange(n)
    hit = np.isfinite(s[rows, best])
    panel = np.where(hit, best, NO_HIT).astype(np.int16)
    uv = np.full((n, 2), np.nan, np.float32)
    uv[hit, 0] = lx[rows, best][hit] / layout.size[best[hit], 0] + 0.5
    uv[hit, 1] = ly[rows, best][hit] / layout.size[best[hit], 1] + 0.5
    return panel, uv


def panel_directions(layout: Layout, eye: np.ndarray) -> np.ndarray:
    """(k, 3) unit directions from `eye` to each panel's centre."""
    d = layout.position - np.asarray(eye, float)[None, :]
    return d / np.linalg.norm(d, axis=1, keepdims=True)
