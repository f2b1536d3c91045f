"""One connection's gaze: the rate budget, the layout, the calibration profile, and the current grid's samples,
turned into fixations and per-candidate figures when the step ends. Sans-I/O: the connection passes `now` in.

    tracker = GazeTracker()
    tracker.set_layout(layout)                       # `layout` message
    result = tracker.ingest(raw_samples, now)        # `gaze.batch`: accepted, dropped by reason, over the rate
    tracker.begin_step(ids, now)                     # a grid was sent
    step = tracker.end_step("choose", chosen, now)   # before the pick is applied: fixations + per-panel figures
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omokage.gaze.fixations import Fixation, IDTConfig, IVTConfig, detect_idt, detect_ivt
from omokage.gaze.samples import (EYE, HEAD, NOT_CAST, SOURCE_NAMES, Drops, Layout, Samples, parse_samples,
                                  ray_cast)
from omokage.gaze.stats import PanelStats, panel_stats
from omokage.ratelimit import TokenBucket

MAX_RATE_HZ = 120.0            # samples per second per source, announced in welcome.gaze
MAX_SAMPLES_PER_BATCH = 256    # announced in welcome.gaze; more in one batch is `too_large`
RATE_BURST_S = 2.0             # the rate budget holds this many seconds of samples (batching jitter, hiccups)
MAX_STEP_SECONDS = 120.0       # per source, the latest this many seconds of a grid's samples are kept


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    drops: Drops                 # malformed samples, by reason (→ bad_field)
    over_rate: int               # valid samples beyond the announced rate (→ overloaded)
    ignored: int = 0             # valid samples with no grid on screen (before start, after decide): not an error


@dataclass
class StepGaze:
    """What the gaze of one grid came to."""

    step: int
    ids: tuple[int, ...]
    source: str | None                      # the source the figures come from: eye when it has fixations, else head
    samples: dict[str, int]                 # accepted samples per source
    fixations: list[Fixation]
    stats: PanelStats | None
    drops: dict[str, int] = field(default_factory=dict)

    def evidence(self, exclude: int | None = None, unit_s: float = 0.3) -> tuple[list[int], list[float]]:
        """The faces and their gaze units for a GazeTerm: (fixation time / unit_s + fixation count) / 2 per face,
        the face `exclude` (the one picked) left out."""
        if self.stats is None:
            return [], []
        st = self.stats
        keep = [k for k, i in enumerate(self.ids[:len(st.dwell_s)]) if i != exclude]
        return ([self.ids[k] for k in keep],
                [(float(st.fixation_s[k]) / unit_s + float(st.fixations[k])) / 2 for k in keep])

    def to_log(self, start: float) -> dict:
        rec = {"source": self.source, "samples": self.samples, "dropped": self.drops, "shown_at": round(start, 4),
               "fixations": [[f.panel, round(f.onset - start, 4), round(f.duration, 4)] for f in self.fixations]}
        if self.stats is not None:
            rec.update(self.stats.to_log(self.ids))
        return rec


class GazeTracker:
    def __init__(self, *, detector: str = "ivt", ivt: IVTConfig = IVTConfig(), idt: IDTConfig = IDTConfig(),
                 max_rate_hz: float = MAX_RATE_HZ, burst_s: float = RATE_BURST_S):
        if detector not in ("ivt", "idt"):
            raise ValueError("detector is 'ivt' or 'idt'")
        self.detector, self.ivt, self.idt = detector, ivt, idt
        self.max_rate_hz = float(max_rate_hz)
        burst = max(max_rate_hz * burst_s, MAX_SAMPLES_PER_BATCH)
        self._buckets = {HEAD: TokenBucket(max_rate_hz, burst), EYE: TokenBucket(max_rate_hz, burst)}
        self._last_t: dict[int, float] = {}
        self.layout: Layout | None = None
        self.profile = None                      # a correction for every source (a headset's default), or None
        self.source_profiles: dict[int, object] = {}   # per source code: a calibration fitted on that source's gaze
        self.step: int | None = None
        self.ids: tuple[int, ...] = ()
        self.start: float = 0.0
        self._chunks: list[Samples] = []
        self._pending = 0                        # chunks at the end of _chunks not ray-cast yet
        # samples in _chunks / in the calibration's chunks, as running totals: summing the chunks at every batch made a
        # long grid's ingest quadratic (a 9-sample batch cost 185 us after 3,000 of them, 60 us with the totals)
        self._kept = 0
        self._calibration_kept = 0
        self._calibration: list[Samples] | None = None   # v1.4: while calibrating, the raw samples (no grid, no profile)
        self._step_drops = Drops()
        self.totals = {"accepted": 0, "dropped": 0, "over_rate": 0, "ignored": 0}

    def set_layout(self, layout: Layout) -> None:
        self._cast_pending()        # what arrived under the old layout is cast against it
        self.layout = layout

    def begin_step(self, step: int, ids, now: float) -> None:
        """A new grid is on screen; a calibration still running is over (its samples are dropped): gaze belongs to
        the grid from now on."""
        self.step, self.ids, self.start = int(step), tuple(int(i) for i in ids), float(now)
        self._chunks, self._step_drops, self._pending, self._kept = [], Drops(), 0, 0
        self._calibration = None

    def stop(self) -> None:
        """No grid on screen any more (decided, abandoned)."""
        self.step, self.ids, self._chunks, self._pending, self._kept = None, (), [], 0, 0

    def set_calibration(self, source: int, profile) -> None:
        """A calibration fitted on `source`'s gaze (a SOURCES code) corrects that source only: a head ray has none of an
        eye tracker's error, and the other way round."""
        self.source_profiles[int(source)] = profile

    def _correct(self, samples: Samples) -> None:
        """Each sample's direction through its source's calibration, else the default for every source."""
        codes = np.unique(samples.source)
        for code in codes:
            profile = self.source_profiles.get(int(code), self.profile)
            if profile is None:
                continue
            if len(codes) == 1:
                samples.direction = profile.apply(samples.direction)
            else:
                mask = samples.source == code
                samples.direction[mask] = profile.apply(samples.direction[mask])

    def ingest(self, raw, now: float) -> IngestResult:
        grid = len(self.ids) if self.step is not None else (len(self.layout) if self.layout is not None else 9)
        samples, drops = parse_samples(raw, now=now, last_t=self._last_t, grid_size=max(grid, 1))
        over = 0
        if len(samples):
            keep = np.ones(len(samples), bool)
            for code in (HEAD, EYE):
                idx = np.flatnonzero(samples.source == code)
                if idx.size:
                    got = self._buckets[code].take(now, int(idx.size))
                    if got < idx.size:
                        keep[idx[got:]] = False      # the excess: the newest of the batch
                        over += int(idx.size - got)
            if over:
                samples = samples.take(keep)
        accepted, ignored = len(samples), 0
        if self._calibration is not None:     # calibrating: the samples are the calibration's, uncorrected
            if len(samples):
                self._calibration.append(samples)
                self._calibration_kept += len(samples)
                cap = int(2 * self.max_rate_hz * MAX_STEP_SECONDS)
                while len(self._calibration) > 1 and self._calibration_kept - len(self._calibration[0]) >= cap:
                    self._calibration_kept -= len(self._calibration.pop(0))
            samples = Samples.empty()
        elif self.step is None:
            ignored, accepted, samples = len(samples), 0, Samples.empty()
        if len(samples):
            if self.profile is not None or self.source_profiles:
                self._correct(samples)
            self._chunks.append(samples)
            self._kept += len(samples)
            if self.layout is not None:
                self._pending += 1
            self._trim()
        self._step_drops.merge(drops)
        self.totals["accepted"] += accepted
        self.totals["dropped"] += drops.total
        self.totals["over_rate"] += over
        self.totals["ignored"] += ignored
        return IngestResult(accepted, drops, over, ignored)

    # -- v1.4 calibration: samples go to the calibration, not to a grid, from begin to end ------------------------
    @property
    def calibrating(self) -> bool:
        return self._calibration is not None

    def begin_calibration(self) -> None:
        self._calibration, self._calibration_kept = [], 0

    def end_calibration(self) -> Samples:
        """The samples collected since begin_calibration (as they came: no calibration profile applied)."""
        chunks, self._calibration = self._calibration or [], None
        return Samples.concat(chunks)

    def _cast_pending(self) -> None:
        """Ray-cast the rays of the chunks that came since the last cast, in one pass (a cast per 100 ms batch was most
        of the cost of ingest at 200 clients). The chunks become one."""
        k, self._pending = self._pending, 0
        if not k or self.layout is None or not self._chunks:
            return
        part = Samples.concat(self._chunks[-k:])
        todo = part.panel == NOT_CAST
        if todo.any():
            panel, uv = ray_cast(self.layout, part.origin[todo], part.direction[todo])
            panel[panel >= len(self.ids)] = -1     # a layout panel with no face on it
            part.panel[todo] = panel
            part.uv[todo] = uv
        self._chunks[-k:] = [part]

    def _trim(self) -> None:
        """Keep the latest MAX_STEP_SECONDS of the grid, by the samples' times and by count: a client could stamp
        samples 10 µs apart, and its times alone would then keep everything it ever sent."""
        newest = self._chunks[-1].t[-1]
        while len(self._chunks) > 1 and self._chunks[0].t[-1] < newest - MAX_STEP_SECONDS:
            self._kept -= len(self._chunks.pop(0))
        cap = int(2 * self.max_rate_hz * MAX_STEP_SECONDS)   # two sources (head, eye) at the announced rate
        while len(self._chunks) > 1 and self._kept - len(self._chunks[0]) >= cap:
            self._kept -= len(self._chunks.pop(0))
        self._pending = min(self._pending, len(self._chunks))

    def end_step(self) -> StepGaze | None:
        """The current grid's gaze, or None when no grid is on screen. The buffer is emptied."""
        if self.step is None:
            return None
        self._cast_pending()
        s = Samples.concat(self._chunks)
        self._chunks, self._kept = [], 0
        counts = {SOURCE_NAMES[c]: int((s.source == c).sum()) for c in (HEAD, EYE)}
        result = StepGaze(self.step, self.ids, None, {k: v for k, v in counts.items() if v}, [], None,
                          dict(self._step_drops.counts))
        # samples from before this grid appeared belong to the one before it
        s = s.take(s.t >= self.start)
        for code in (EYE, HEAD):
            part = s.take(s.source == code)
            if not len(part):
                continue
            order = np.argsort(part.t, kind="stable")   # both sources interleave; each is increasing already
            part = part.take(order)
            fix = self.detect(part)
            if fix or result.source is None:
                result.source = SOURCE_NAMES[code]
                result.fixations = fix
                max_gap = self.ivt.max_gap if self.detector == "ivt" else self.idt.max_gap
                result.stats = panel_stats(len(self.ids), part.t, part.panel, fix, self.start, max_gap)
            if fix:
                break
        return result

    def detect(self, s: Samples) -> list[Fixation]:
        if self.detector == "idt":
            return detect_idt(s.t, s.direction, s.confidence, s.panel, self.idt)
        return detect_ivt(s.t, s.direction, s.confidence, s.panel, self.ivt)
