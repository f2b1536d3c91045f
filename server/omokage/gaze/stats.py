"""Per step and per candidate gaze figures: dwell, fixation count and time, first and last fixation, revisits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omokage.gaze.fixations import Fixation


@dataclass(frozen=True)
class PanelStats:
    """One step's gaze per panel (index k = candidates.items[k]); times in seconds from the grid's appearance."""

    dwell_s: np.ndarray        # (k,) sample time on the panel (each sample counts its interval, gaps capped)
    fixations: np.ndarray      # (k,) fixations on the panel
    fixation_s: np.ndarray     # (k,) their total duration
    first_s: np.ndarray        # (k,) onset of the panel's first fixation (NaN: none)
    last_s: np.ndarray         # (k,) onset of its last fixation (NaN: none)
    revisits: np.ndarray       # (k,) visits after the first (a visit: consecutive fixations on the panel)
    last_panel: int | None     # the panel of the step's last fixation (the gaze cascade's), None without one

    def to_log(self, ids) -> dict:
        """A JSON-able record: per candidate id."""
        def r(x, nd=3):
            return [None if not np.isfinite(v) else round(float(v), nd) for v in x]
        return {"items": [int(i) for i in ids][:len(self.dwell_s)], "dwell_s": r(self.dwell_s),
                "fixation_count": [int(x) for x in self.fixations], "fixation_s": r(self.fixation_s),
                "first_s": r(self.first_s), "last_s": r(self.last_s), "revisits": [int(x) for x in self.revisits],
                "last_panel": self.last_panel}


def panel_stats(n_panels: int, t: np.ndarray, panel: np.ndarray, fixations: list[Fixation], start: float,
                max_gap: float = 0.075) -> PanelStats:
    k = int(n_panels)
    dwell = np.zeros(k)
    if len(t):
        dt = np.diff(t)
        typical = float(np.median(dt)) if dt.size else 0.0
        interval = np.minimum(np.append(dt, typical), max_gap)
        on = (panel >= 0) & (panel < k)
        dwell = np.bincount(panel[on].astype(np.int64), weights=interval[on], minlength=k)[:k]
    count = np.zeros(k, np.int64)
    total = np.zeros(k)
    first = np.full(k, np.nan)
    last = np.full(k, np.nan)
    revisits = np.zeros(k, np.int64)
    visits = np.zeros(k, np.int64)
    previous = None
    last_panel = None
    for f in fixations:
        p = f.panel
        if 0 <= p < k:
            count[p] += 1
            total[p] += f.duration
            if np.isnan(first[p]):
                first[p] = f.onset - start
            last[p] = f.onset - start
            if p != previous:
                visits[p] += 1
            last_panel = p
        previous = p
    revisits = np.maximum(visits - 1, 0)
    return PanelStats(dwell, count, total, first, last, revisits, last_panel)
