"""Simulated sketches of a face, for `bench sketch` and the tests: its line art as strokes, longest first.

A person sketching a face draws the big outlines (hair, face, eyes) before the details; the simulated sketcher traces
the target's XDoG line art into polylines and draws them longest first, with `jitter` (canvas widths) of hand wobble:
a constant offset per stroke plus smoothed per-point noise. `paint` adds strokes of colour sampled from the face
(what someone colouring in the hair and eyes would do). Cut the list at 20, 50 or 100% for partial drawings.
"""

from __future__ import annotations

import cv2
import numpy as np

from omokage.sketch.canvas import MAX_POINTS_PER_MESSAGE, Stroke
from omokage.sketch.lineart import xdog_ink

LINE_WIDTH = 0.012
PAINT_WIDTH = 0.08


def line_strokes(rgb: np.ndarray, *, jitter: float = 0.0, rng: np.random.Generator | None = None,
                 min_length: float = 0.03, max_strokes: int = 120) -> list[Stroke]:
    """The face's line art as polylines in canvas coordinates, longest first."""
    rng = rng or np.random.default_rng(0)
    side = rgb.shape[0]
    binary = (xdog_ink(rgb) > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    paths = []
    for c in contours:
        length = cv2.arcLength(c, False) / side
        if length < min_length:
            continue
        poly = cv2.approxPolyDP(c, 0.6, False).reshape(-1, 2).astype(np.float32)
        paths.append((length, (poly + 0.5) / side))
    paths.sort(key=lambda p: -p[0])
    strokes = []
    for _, pts in paths[:max_strokes]:
        pts = pts[:MAX_POINTS_PER_MESSAGE]
        if jitter > 0:
            wobble = rng.normal(0, jitter, pts.shape)
            if len(pts) > 2:   # smooth the per-point noise: hands drift, they do not shake at every point
                wobble = cv2.GaussianBlur(wobble.astype(np.float32), (1, 5), 0).astype(np.float64)
            pts = pts + rng.normal(0, jitter, 2) + wobble
        strokes.append(Stroke(np.clip(pts, -0.1, 1.1).astype(np.float32), (20, 20, 20), LINE_WIDTH, "line"))
    return strokes


def paint_strokes(rgb: np.ndarray, count: int = 6, *, rng: np.random.Generator | None = None) -> list[Stroke]:
    """`count` short strokes of the face's own colours (blurred), at points spread over the face."""
    rng = rng or np.random.default_rng(0)
    side = rgb.shape[0]
    smooth = cv2.GaussianBlur(rgb, (0, 0), side / 40)
    strokes = []
    for _ in range(count):
        x, y = rng.uniform(0.15, 0.85, 2)
        colour = smooth[int(y * side), int(x * side)]
        angle = rng.uniform(0, np.pi)
        d = 0.04 * np.array([np.cos(angle), np.sin(angle)])
        pts = np.array([[x, y] - d, [x, y] + d], np.float32)
        strokes.append(Stroke(pts, tuple(int(c) for c in colour), PAINT_WIDTH, "paint"))
    return strokes


def cut(strokes: list[Stroke], fraction: float) -> list[Stroke]:
    """The first `fraction` of the strokes (at least one)."""
    return strokes[:max(1, int(round(len(strokes) * fraction)))]
