"""Simulated gaze for the choice benchmark and the tests: a user looking over a 3×3 grid before picking.

Per step, a sequence of fixations until the pick: each lands on face j with probability ∝ exp(g · z_j) and lasts
a gamma-distributed time whose mean grows as exp(g · z_j / 4), where z_j is how close face j is to the user's target
(their own perceptual distance, standardised within the grid) and g the **informativeness** (0: gaze unrelated to the
target). In the last second before the pick the gaze cascade takes over: the share of fixations on the face about to
be picked rises from 50% to 84% (Shimojo et al. 2003). Between fixations, saccades of 30-50 ms; samples at the
headset's rate with angular noise and dropouts.

The default informativeness, 0.35, is set from the literature's effect sizes (docs/gaze.md): in a two-face choice it
puts 67% of the fixations and ~70% of the dwell on the preferred face before the cascade (Shimojo's 2AFC trials:
~60-70% before the final second), and in a 9-face grid the face nearest the target gets about twice the median
face's dwell (relevant images: more and longer fixations, Zhang et al. 2010). It is an assumption to be replaced by
a fit from logged sessions (`omokage fit user-model` fits the gaze term's weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omokage.gaze.samples import Layout, panel_directions

DEFAULT_INFORMATIVENESS = 0.35


@dataclass(frozen=True)
class GazeModel:
    informativeness: float = DEFAULT_INFORMATIVENESS
    source: str = "eye"              # "eye": eye gaze (Quest Pro); "head": the headset's forward ray
    rate_hz: float = 90.0
    noise_deg: float = 0.4           # per-axis sample noise (eye); head gaze: 0.2 on a lagging, partial shift
    view_s: tuple[float, float] = (2.0, 5.0)    # time looking at one grid before the pick, uniform
    fixation_s: float = 0.25         # mean fixation duration at z = 0
    saccade_s: tuple[float, float] = (0.03, 0.05)
    cascade_s: float = 1.0           # the last this many seconds: the gaze cascade
    cascade_final: float = 0.84
    dropout: float = 0.02            # samples with confidence 0 (blinks, tracking loss)
    head_gain: float = 0.7           # head gaze: the head covers this share of a gaze shift ...
    head_tau_s: float = 0.15         # ... lagging with this time constant

    def __post_init__(self):
        if not self.informativeness >= 0:
            raise ValueError("informativeness must be 0 or more")
        if self.source not in ("eye", "head"):
            raise ValueError("source is 'eye' or 'head'")


def fixation_plan(rng: np.random.Generator, user_distance: np.ndarray, picked: int | None, model: GazeModel):
    """[(panel, duration_s)] for one grid: `user_distance[k]` the user's distance from face k to the target,
    `picked` the panel about to be picked (None after a skip: no cascade)."""
    d = np.asarray(user_distance, np.float64)
    k = len(d)
    sd = d.std()
    z = -(d - d.mean()) / sd if sd > 0 else np.zeros(k)
    g = model.informativeness
    p = np.exp(g * z)
    p /= p.sum()
    view = rng.uniform(*model.view_s)
    plan, t = [], 0.0
    while t < view:
        left = view - t
        if picked is not None and left <= model.cascade_s:
            share = 0.5 + (model.cascade_final - 0.5) * (1 - left / model.cascade_s)
            j = picked if rng.random() < share else int(rng.choice(k, p=p))
        else:
            j = int(rng.choice(k, p=p))
        mean = model.fixation_s * np.exp(g * z[j] / 4)
        dur = float(rng.gamma(4.0, mean / 4.0))
        dur = max(dur, 0.06)
        plan.append((j, dur))
        t += dur + rng.uniform(*model.saccade_s)
    return plan


def render(rng: np.random.Generator, plan, layout: Layout, t0: float, model: GazeModel,
           eye: tuple[float, float, float] = (0.0, 1.5, 0.0)) -> tuple[list[list], list[tuple[int, float, float]]]:
    """Wire-format samples ([t, source, ox, oy, oz, dx, dy, dz, confidence], rays without hits: the server casts
    them) for a fixation plan, and the true fixations [(panel, onset, offset)]."""
    eye_p = np.asarray(eye, float)
    centres = panel_directions(layout, eye_p)
    centre = centres.mean(axis=0)
    centre /= np.linalg.norm(centre)
    right = np.cross(centre, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, centre)
    half = np.degrees(np.arctan(layout.size[:, 0].mean() / 2 / np.linalg.norm(layout.position.mean(0) - eye_p)))
    dt = 1.0 / model.rate_hz
    # the eye's target direction over time, as yaw/pitch offsets (degrees) from the grid centre
    targets, truth = [], []
    t = t0
    cur = None
    for j, dur in plan:
        c = centres[j]
        off = np.array([np.degrees(np.arcsin(np.clip(c @ right, -1, 1))),
                        np.degrees(np.arcsin(np.clip(c @ up, -1, 1)))])
        off = off + rng.uniform(-0.4, 0.4, 2) * half      # somewhere on the face, not its exact centre
        if cur is not None:
            sac = rng.uniform(*model.saccade_s)
            targets.append(("saccade", t, t + sac, cur, off))
            t += sac
        targets.append(("fix", t, t + dur, off, off))
        truth.append((j, t, t + dur))
        cur = off
        t += dur
    n = int((t - t0) / dt)
    times = t0 + dt * np.arange(n)
    ang = np.zeros((n, 2))
    for kind, a, b, p0, p1 in targets:
        m = (times >= a) & (times < b)
        if kind == "fix":
            ang[m] = p0
        else:
            f = (times[m] - a) / (b - a)
            s = f * f * (3 - 2 * f)    # a smooth saccade profile
            ang[m] = p0[None, :] + s[:, None] * (p1 - p0)[None, :]
    if model.source == "head":
        # the head turns part of the way, lagging: a first-order filter of gain · the eye's target
        alpha = 1 - np.exp(-dt / model.head_tau_s)
        head = np.zeros_like(ang)
        h = model.head_gain * ang[0]
        for i in range(n):
            h = h + alpha * (model.head_gain * ang[i] - h)
            head[i] = h
        ang = head
    ang = ang + rng.normal(0, model.noise_deg, ang.shape)
    yaw, pitch = np.radians(ang[:, 0]), np.radians(ang[:, 1])
    d = (np.cos(pitch)[:, None] * (np.cos(yaw)[:, None] * centre[None, :] + np.sin(yaw)[:, None] * right[None, :])
         + np.sin(pitch)[:, None] * up[None, :])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    conf = np.where(rng.random(n) < model.dropout, 0.0, 1.0)
    src = model.source
    ex, ey, ez = (float(x) for x in eye_p)
    rows = [[float(ti), src, ex, ey, ez, float(a), float(b), float(c), float(q)]
            for ti, (a, b, c), q in zip(times, d, conf)]
    return rows, truth


class SimulatedGaze:
    """A simulated user's eyes for one session: before each pick or skip, `look` renders where they looked on the
    grid, runs it through the server's own pipeline (validation, ray-cast, I-VT, per-face figures) and, for a policy
    that reads gaze, adds the grid's GazeTerm to the session, exactly as the connection does."""

    def __init__(self, model: GazeModel, rng: np.random.Generator, layout: Layout | None = None):
        from omokage.gaze.tracker import GazeTracker
        self.model, self.rng = model, rng
        self.layout = layout if layout is not None else Layout.grid()
        self.tracker = GazeTracker(max_rate_hz=1e9)
        self.tracker.set_layout(self.layout)
        self.clock = 1000.0
        self.steps = self.fixations = 0
        self.log: list[tuple[tuple[int, ...], tuple[float, ...]]] | None = None   # set to a list: each grid's evidence

    def look(self, session, ids, user_distance, picked: int | None) -> None:
        from omokage.selection.belief import GAZE_UNIT_S
        plan = fixation_plan(self.rng, user_distance, picked, self.model)
        t0 = self.clock
        self.tracker.begin_step(len(session.history), ids, t0)
        rows, _ = render(self.rng, plan, self.layout, t0, self.model)
        end = rows[-1][0] if rows else t0
        self.tracker.ingest(rows, now=end)
        step = self.tracker.end_step()
        self.clock = end + 1.0
        self.steps += 1
        self.fixations += len(step.fixations)
        shown, counts = step.evidence(int(ids[picked]) if picked is not None else None, GAZE_UNIT_S)
        if self.log is not None and len(shown) >= 2 and sum(counts) > 0:
            self.log.append((tuple(shown), tuple(counts)))
        make = getattr(session.policy, "gaze_term", None)
        if make is None:
            return
        term = make(shown, counts)
        if term is not None:
            session.add_evidence(term, kind="gaze")
