"""A user's drawing as a pure state machine: strokes in, rasters out. No clock, no sockets.

Coordinates are the canvas's own, the face image's: x to the right and y down, both in [0, 1]. Two tools:

- `line`: a dark pen stroke, compared with the catalog's line art ("there is an edge here");
- `paint`: a stroke of colour, compared with the catalog's colours there ("this part is this colour").

The canvas keeps every stroke (so `undo` can take the last one back) and two rasters at the sketch model's resolution
R, updated as strokes arrive; `observations()` turns them into what `SketchModel.project` reads. A live stroke arrives
in pieces (`append=True` continues the previous stroke): undo takes back the whole stroke.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from omokage.sketch.lineart import INK_BLUR_PX, blur

TOOLS = ("line", "paint")
MAX_STROKES = 256               # strokes kept on one canvas
MAX_POINTS_PER_MESSAGE = 512    # points in one `sketch.stroke`
MAX_POINTS_PER_STROKE = 4096    # points in one stroke, its appended pieces included
MAX_POINTS_PER_CANVAS = 65536   # points on one canvas: bounds a connection's memory (16 bytes a point, kept for undo)
CHECKPOINT_POINTS = 2048        # undo redraws from a raster checkpoint taken at most this many points back
MAX_COORDINATE = 4.0            # |x|, |y| beyond this is a client bug, not a stroke off the edge (clipped)
MIN_WIDTH, MAX_WIDTH = 0.001, 0.25   # stroke width, in canvas widths


class SketchError(ValueError):
    """A stroke the canvas refuses; the canvas is unchanged. `field` names what was wrong."""

    def __init__(self, field: str, message: str, code: str = "bad_field"):
        super().__init__(message)
        self.field = field
        self.code = code          # the protocol's error code: bad_field, or too_large for a limit


@dataclass
class Stroke:
    points: np.ndarray          # (n, 2) float32, canvas coordinates
    colour: tuple[int, int, int]
    width: float
    tool: str = "line"


def check_stroke(points, colour, width, tool: str = "line") -> Stroke:
    """A validated `Stroke` from wire values, or a SketchError naming the field. Points off the canvas are kept
    (drawing clips them); NaN, infinities and far-off coordinates are refused."""
    if tool not in TOOLS:
        raise SketchError("tool", f"tool must be one of {', '.join(TOOLS)}, not {tool!r}")
    try:
        pts = np.asarray(points)
    except (TypeError, ValueError):
        pts = None
    # numbers only: numpy would turn strings ("0.5") and bools into numbers, and ints too large for a float into
    # an object array (float() of it raises OverflowError, not ValueError)
    if pts is None or pts.dtype.kind not in "iuf":
        raise SketchError("points", "points must be a flat list of numbers x0, y0, x1, y1, ...")
    pts = pts.astype(np.float64)
    if pts.ndim != 1 or len(pts) < 2 or len(pts) % 2:
        raise SketchError("points", f"points must be a flat list of x, y pairs (an even count, at least 2), "
                                    f"not {len(pts) if pts.ndim == 1 else 'a nested list'}")
    if len(pts) // 2 > MAX_POINTS_PER_MESSAGE:
        raise SketchError("points", f"{len(pts) // 2} points in one message; at most {MAX_POINTS_PER_MESSAGE} "
                                    "(send a long stroke in pieces with append)", "too_large")
    if not np.isfinite(pts).all():
        raise SketchError("points", "points must be finite numbers (NaN or infinity received)")
    if np.abs(pts).max() > MAX_COORDINATE:
        raise SketchError("points", f"points are canvas coordinates in [0, 1] (off-canvas ones are clipped), "
                                    f"not {float(np.abs(pts).max()):g}")
    if not (isinstance(colour, (list, tuple)) and len(colour) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
        raise SketchError("colour", f"colour must be [r, g, b], three integers 0-255, not {colour!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) \
            or not MIN_WIDTH <= width <= MAX_WIDTH:
        raise SketchError("width", f"width is a fraction of the canvas from {MIN_WIDTH} to {MAX_WIDTH}, not {width!r}")
    return Stroke(pts.reshape(-1, 2).astype(np.float32), (int(colour[0]), int(colour[1]), int(colour[2])),
                  float(width), tool)


class SketchCanvas:
    """The strokes of one drawing and their rasters at `resolution` (the sketch model's R)."""

    SHIFT = 4   # sub-pixel bits for OpenCV's drawing

    def __init__(self, resolution: int):
        self.resolution = int(resolution)
        self.strokes: list[Stroke] = []
        self.revision = 0            # +1 on every change: results say which drawing they show
        self.points = 0              # points of all strokes
        # (n, ink, paint, painted): the rasters of strokes[:n], taken every CHECKPOINT_POINTS points at stroke starts,
        # so `undo` redraws a few thousand points, not the whole drawing (up to MAX_POINTS_PER_CANVAS, on the loop)
        self._checkpoints: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._clear_rasters()

    def _clear_rasters(self) -> None:
        r = self.resolution
        self.ink = np.zeros((r, r), np.uint8)           # line strokes, 255 where drawn
        self.paint = np.zeros((r, r, 3), np.uint8)      # the latest paint colour of each pixel
        self.painted = np.zeros((r, r), np.uint8)       # 255 where paint covers

    @property
    def empty(self) -> bool:
        return not self.strokes

    def add(self, stroke: Stroke, append: bool = False) -> None:
        """Draw `stroke`; with `append`, its points continue the last stroke, in that stroke's tool, colour and width
        (a piece's own are ignored: the stroke is one stroke, drawn and undone as one)."""
        if self.points + len(stroke.points) > MAX_POINTS_PER_CANVAS:
            raise SketchError("points", f"a canvas holds at most {MAX_POINTS_PER_CANVAS} points; clear it or undo",
                              "too_large")
        if append and self.strokes:
            last = self.strokes[-1]
            if len(last.points) + len(stroke.points) > MAX_POINTS_PER_STROKE:
                raise SketchError("points", f"a stroke holds at most {MAX_POINTS_PER_STROKE} points; start a new one",
                                  "too_large")
            # the joint between pieces is drawn too: the new piece starts at the last point. In the stroke's own
            # style: what `undo` redraws must be what was drawn
            joined = Stroke(np.concatenate([last.points[-1:], stroke.points]), last.colour, last.width, last.tool)
            last.points = np.concatenate([last.points, stroke.points])
            self._draw(joined)
            # a checkpoint taken after this stroke (kept when an undo came back to it) holds it as it was: drop it, so
            # an undo redraws the stroke from its points, the piece included
            while self._checkpoints and self._checkpoints[-1][0] >= len(self.strokes):
                self._checkpoints.pop()
        else:
            if len(self.strokes) >= MAX_STROKES:
                raise SketchError("points", f"a canvas holds at most {MAX_STROKES} strokes; clear it or undo",
                                  "too_large")
            since = self._checkpoints[-1][0] if self._checkpoints else 0
            if sum(len(s.points) for s in self.strokes[since:]) >= CHECKPOINT_POINTS:
                self._checkpoints.append((len(self.strokes), self.ink.copy(), self.paint.copy(),
                                          self.painted.copy()))
            self.strokes.append(stroke)
            self._draw(stroke)
        self.points += len(stroke.points)
        self.revision += 1

    def undo(self) -> bool:
        """Take back the last whole stroke; False when there is none."""
        if not self.strokes:
            return False
        self.points -= len(self.strokes.pop().points)
        while self._checkpoints and self._checkpoints[-1][0] > len(self.strokes):
            self._checkpoints.pop()
        if self._checkpoints:
            since, ink, paint, painted = self._checkpoints[-1]
            self.ink, self.paint, self.painted = ink.copy(), paint.copy(), painted.copy()
        else:
            since = 0
            self._clear_rasters()
        for s in self.strokes[since:]:
            self._draw(s)
        self.revision += 1
        return True

    def clear(self) -> None:
        self.strokes.clear()
        self._checkpoints.clear()
        self.points = 0
        self._clear_rasters()
        self.revision += 1

    def _draw(self, stroke: Stroke) -> None:
        r, shift = self.resolution, self.SHIFT
        px = np.round((stroke.points * r - 0.5) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        thickness = max(1, int(round(stroke.width * r)))
        if stroke.tool == "line":
            cv2.polylines(self.ink, [px], False, 255, thickness, cv2.LINE_AA, shift)
            if len(px) == 1:
                cv2.circle(self.ink, tuple(px[0, 0]), max(1, thickness // 2) << shift, 255, -1, cv2.LINE_AA, shift)
        else:
            # paint covers: later strokes replace the colour underneath, antialiasing only on the coverage
            cover = np.zeros_like(self.painted)
            cv2.polylines(cover, [px], False, 255, thickness, cv2.LINE_8, shift)
            if len(px) == 1:
                cv2.circle(cover, tuple(px[0, 0]), max(1, thickness // 2) << shift, 255, -1, cv2.LINE_8, shift)
            on = cover > 0
            self.paint[on] = stroke.colour
            self.painted |= cover

    def snapshot(self) -> "Raster":
        """The drawing as it is now, for projection elsewhere: three small copies (5 KB at R = 32), cheaper than
        `observations()` on the event loop; the sketch worker turns it into observations."""
        return Raster(self.ink.copy(), self.paint.copy(), self.painted.copy(), self.resolution, self.revision)

    def observations(self) -> "Observations":
        """What the drawing says, at the sketch resolution: ink near line strokes, colour under paint."""
        return Raster(self.ink, self.paint, self.painted, self.resolution, self.revision).observations()


@dataclass(frozen=True)
class Raster:
    """A canvas's rasters at one revision (`SketchCanvas.snapshot`): what a projection job carries, safe to hand to
    another thread or, as bytes, to the sketch worker process."""

    ink: np.ndarray        # (R, R) uint8
    paint: np.ndarray      # (R, R, 3) uint8
    painted: np.ndarray    # (R, R) uint8
    resolution: int
    revision: int = 0

    @property
    def empty(self) -> bool:
        """Nothing drawn: its observations are empty."""
        return not self.ink.any() and not (self.painted > 127).any()

    def observations(self) -> "Observations":
        """What the drawing says, at the sketch resolution: ink near line strokes, colour under paint."""
        ink_on = self.ink > 0
        # observed: the drawn pixels and a one-pixel ring around them (a line says "not right beside me" too)
        near = cv2.dilate(ink_on.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        ink_values = blur(self.ink.astype(np.float32) / 255.0, INK_BLUR_PX)
        ink_idx = np.flatnonzero(near)
        paint_idx = np.flatnonzero(self.painted > 127)
        colour_idx = (paint_idx[:, None] * 3 + np.arange(3)).reshape(-1)
        colour_values = (self.paint.reshape(-1, 3)[paint_idx].astype(np.float32) / 255.0).reshape(-1)
        return Observations(ink_idx.astype(np.int32), ink_values.reshape(-1)[ink_idx].astype(np.float32),
                            colour_idx.astype(np.int32), colour_values, self.resolution, self.revision)


@dataclass(frozen=True)
class Observations:
    """A snapshot of a drawing for projection (safe to hand to another thread): the observed entries of the ink map
    (R·R) and of the colour map (R·R·3), as indices and values."""

    ink_idx: np.ndarray
    ink: np.ndarray
    colour_idx: np.ndarray
    colour: np.ndarray
    resolution: int
    revision: int = 0

    @property
    def empty(self) -> bool:
        return len(self.ink_idx) == 0 and len(self.colour_idx) == 0

    @property
    def coverage(self) -> float:
        """Share of the canvas's pixels the drawing says something about (0..1; a pixel under ink and paint counts
        twice, capped at 1)."""
        return min(1.0, (len(self.ink_idx) + len(self.colour_idx) / 3) / self.resolution ** 2)
