"""Procedural anime-style avatar faces: the embedded default catalog for demos, tests and benchmarks.

Each face is a dict of *attributes* (plain str/int/float values and [r, g, b] lists, JSON-able) that
fully determines its picture: :func:`render_face` draws it with Pillow polygons at ``SUPERSAMPLE``
times the target size and downsamples with LANCZOS, so the same attributes always give the same
bytes.  The attributes are the ground truth a simulated user compares faces by
(:func:`attribute_distance`), never the pixels.

Layering, back to front: background, tied-up hair behind the head (twin tails, ponytail, buns,
cat ears, horns), back hair, neck and clothes, ears, face, blush, the shadow the bangs cast on the
forehead, eyes, nose, mouth, side locks, the front hair cap with its bangs (highlight ring and strand
lines clipped to it), ahoge, eyebrows, and accessories in front of the hair.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from omokage.errors import UserError

GENERATOR = "omokage.catalog.generate v1"
SUPERSAMPLE = 3          # draw at 3x and downsample: Pillow's polygons are not anti-aliased
_TAU = 2.0 * math.pi

# --- attribute vocabularies ---------------------------------------------------------------------
# name -> (rgb, sampling weight)

HAIR_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "black": ((40, 36, 48), 1.4),
    "dark_brown": ((84, 54, 42), 1.2),
    "brown": ((142, 94, 62), 1.2),
    "chestnut": ((158, 76, 50), 0.7),
    "blonde": ((242, 216, 142), 1.2),
    "golden": ((232, 178, 72), 0.8),
    "silver": ((196, 202, 216), 1.0),
    "white": ((242, 242, 248), 0.7),
    "pink": ((244, 156, 190), 1.1),
    "red": ((196, 52, 62), 0.8),
    "orange": ((240, 140, 66), 0.7),
    "blue": ((74, 112, 206), 0.9),
    "light_blue": ((148, 200, 242), 0.9),
    "navy": ((48, 58, 112), 0.6),
    "purple": ((128, 86, 182), 0.8),
    "lavender": ((192, 164, 230), 0.8),
    "green": ((84, 160, 102), 0.6),
    "mint": ((150, 222, 198), 0.6),
    "teal": ((50, 148, 160), 0.6),
}

SKIN_TONES: dict[str, tuple[tuple[int, int, int], float]] = {
    "porcelain": ((255, 239, 232), 1.5),
    "fair": ((254, 228, 212), 2.0),
    "peach": ((250, 216, 196), 1.5),
    "warm": ((240, 200, 168), 1.0),
    "tan": ((220, 170, 130), 0.7),
    "brown": ((172, 120, 86), 0.5),
    "deep": ((122, 82, 58), 0.3),
}

EYE_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "blue": ((56, 110, 220), 1.2),
    "sky": ((96, 184, 240), 1.0),
    "green": ((56, 168, 96), 0.9),
    "emerald": ((24, 138, 112), 0.7),
    "red": ((210, 44, 60), 1.0),
    "purple": ((140, 78, 204), 1.0),
    "gold": ((230, 170, 40), 0.9),
    "amber": ((212, 118, 40), 0.8),
    "brown": ((128, 78, 48), 1.0),
    "pink": ((238, 104, 168), 0.9),
    "teal": ((36, 164, 170), 0.8),
    "grey": ((128, 138, 160), 0.6),
}

# hair style -> (sampling weight, silhouette group used by attribute_distance)
HAIR_STYLES: dict[str, tuple[float, str]] = {
    "long_straight": (1.2, "long"),
    "wavy": (0.9, "long"),
    "hime_cut": (0.8, "long"),
    "drills": (0.6, "long"),
    "shoulder": (1.0, "medium"),
    "bob": (1.1, "medium"),
    "short": (1.0, "short"),
    "spiky": (0.8, "short"),
    "twin_tails": (1.2, "tied"),
    "ponytail": (1.0, "tied"),
    "buns": (0.9, "tied"),
}

BANGS = ("choppy", "blunt", "parted", "side_swept", "spiky")
_BANGS_FOR_STYLE: dict[str, dict[str, float]] = {
    "hime_cut": {"blunt": 1.0},
    "spiky": {"spiky": 0.75, "side_swept": 0.25},
    "short": {"choppy": 0.35, "side_swept": 0.35, "spiky": 0.2, "parted": 0.1},
}
_BANGS_DEFAULT = {"choppy": 0.36, "blunt": 0.2, "parted": 0.18, "side_swept": 0.2, "spiky": 0.06}

# face shape -> (weight, chin length range, jaw control a1, b1, b2, chin tip half-width)
FACE_SHAPES: dict[str, tuple[float, tuple[float, float], float, float, float, float]] = {
    "round": (1.0, (40.0, 45.0), 0.55, 0.66, 0.96, 5.0),
    "oval": (1.0, (44.0, 49.0), 0.45, 0.46, 0.97, 3.0),
    "pointed": (1.0, (47.0, 53.0), 0.30, 0.28, 0.84, 1.0),
    "heart": (0.8, (45.0, 50.0), 0.38, 0.36, 0.92, 2.2),
}

# eye shape -> (weight, height factor, outer-corner lift, upper-lid height, lower-lid depth)
EYE_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "round": (1.2, 1.00, 0.02, 0.68, 0.64),
    "almond": (1.0, 0.86, 0.10, 0.66, 0.58),
    "tsurime": (1.0, 0.80, 0.30, 0.60, 0.56),
    "tareme": (1.0, 0.92, -0.22, 0.70, 0.60),
    "sleepy": (0.6, 0.62, -0.04, 0.40, 0.66),
}

EYEBROWS = {"straight": 1.0, "arched": 1.0, "angled": 0.7, "worried": 0.6}
EXPRESSIONS = {"smile": 1.4, "open_smile": 1.2, "neutral": 1.0, "pout": 0.6, "cat": 0.7,
               "surprised": 0.5, "grin_fang": 0.6, "smirk": 0.6}
NOSES = {"dot": 1.0, "line": 1.0, "shadow": 0.8}
BLUSH = {"none": 1.0, "light": 1.2, "strong": 0.6}
_BLUSH_LEVEL = {"none": 0, "light": 1, "strong": 2}

ACCESSORIES = {"none": 2.2, "ribbon": 1.0, "glasses": 0.8, "beret": 0.7, "hairclip": 0.9, "headband": 0.8,
               "cat_ears": 0.8, "flower": 0.8, "horns": 0.5}
ACCESSORY_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "red": ((214, 40, 58), 1.0),
    "pink": ((248, 128, 176), 1.0),
    "white": ((246, 246, 250), 0.8),
    "black": ((34, 32, 40), 0.9),
    "navy": ((40, 52, 120), 0.7),
    "sky": ((110, 180, 240), 0.8),
    "yellow": ((250, 210, 60), 0.7),
    "purple": ((150, 90, 210), 0.7),
    "green": ((70, 170, 100), 0.5),
    "gold": ((214, 170, 70), 0.5),
}

OUTFITS = {"sailor": 1.0, "shirt": 1.0, "hoodie": 0.8, "turtleneck": 0.7}
OUTFIT_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "navy": ((44, 56, 110), 1.0),
    "black": ((40, 40, 48), 0.9),
    "white": ((240, 240, 244), 0.8),
    "grey": ((150, 152, 162), 0.7),
    "red": ((186, 48, 58), 0.6),
    "pink": ((236, 150, 180), 0.6),
    "sky": ((130, 176, 226), 0.7),
    "green": ((80, 130, 96), 0.5),
    "beige": ((214, 192, 156), 0.6),
    "purple": ((112, 80, 160), 0.5),
}

BACKGROUND_COLORS: dict[str, tuple[tuple[int, int, int], float]] = {
    "white": ((246, 246, 248), 1.0),
    "cream": ((250, 242, 222), 1.0),
    "light_grey": ((222, 224, 230), 0.9),
    "pastel_pink": ((252, 218, 228), 1.0),
    "pastel_blue": ((208, 228, 250), 1.0),
    "mint": ((210, 242, 226), 0.9),
    "lavender": ((230, 220, 248), 0.9),
    "peach": ((252, 226, 206), 0.9),
    "lemon": ((250, 246, 200), 0.7),
    "slate": ((150, 164, 186), 0.6),
    "dusk": ((92, 96, 132), 0.4),
}
BACKGROUND_STYLES = {"plain": 1.0, "gradient": 1.2}

_STYLE_LABELS = {"long_straight": "long hair", "wavy": "wavy hair", "hime_cut": "hime cut", "drills": "twin drills",
                 "shoulder": "shoulder-length hair", "bob": "bob", "short": "short hair", "spiky": "spiky hair",
                 "twin_tails": "twin tails", "ponytail": "ponytail", "buns": "hair buns"}
_ACCESSORY_LABELS = {"ribbon": "ribbon", "glasses": "glasses", "beret": "beret", "hairclip": "hair clip",
                     "headband": "headband", "cat_ears": "cat ears", "flower": "flower", "horns": "horns"}
_NAMES = ("Akari", "Aoi", "Airi", "Asuka", "Ayane", "Chika", "Chiyo", "Emi", "Fuyu", "Hana", "Haruka", "Hikari",
          "Hina", "Hinata", "Honoka", "Ibuki", "Iroha", "Kaede", "Kanon", "Kaori", "Karin", "Kasumi", "Kokoro",
          "Kotone", "Kurumi", "Mai", "Mako", "Mana", "Mei", "Mio", "Mirei", "Misaki", "Miyu", "Moe", "Momo",
          "Nagisa", "Nana", "Nanami", "Natsu", "Nene", "Noa", "Nozomi", "Rei", "Ren", "Rika", "Rin", "Rio", "Riko",
          "Ruri", "Sakura", "Saki", "Sayo", "Shiori", "Sora", "Suzu", "Tomo", "Tsubaki", "Tsumugi", "Ui", "Umi",
          "Yui", "Yuzu", "Yuki", "Yume", "Yuna", "Kei", "Haru", "Sena", "Nao", "Akane", "Itsuki", "Kanade",
          "Shizuku", "Minori", "Hotaru", "Ritsu", "Subaru", "Tsukasa", "Izumi", "Makoto", "Sumire", "Wakaba",
          "Koharu", "Chiaki", "Fuuka", "Hibiki", "Kaoru", "Mahiro", "Aki", "Towa", "Kohaku", "Hiyori", "Ao",
          "Sango", "Mizuki", "Ayu")


# --- small helpers --------------------------------------------------------------------------------

def _choice(rng: np.random.Generator, options: dict[str, Any]) -> str:
    names = list(options)
    # plain weights, (rgb, weight) colour entries, or (weight, ...) tables
    w = np.array([o if not isinstance(o, tuple) else (o[1] if isinstance(o[0], tuple) else o[0])
                  for o in options.values()], dtype=float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def _jitter(rng: np.random.Generator, rgb, amount: int) -> list[int]:
    return [int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in rgb]


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(v), 0, 255)) for v in c)  # type: ignore[return-value]


def _mix(c1, c2, t: float) -> tuple[int, int, int]:
    return _rgb(a * (1.0 - t) + b * t for a, b in zip(c1, c2))


def _shade(c, f: float) -> tuple[int, int, int]:
    return _rgb(v * f for v in c)


def _hsv_shade(c, v_factor: float) -> tuple[int, int, int]:
    """A cel-shading shadow colour: darker, a little more saturated, hue nudged (warm hues to red, cool to violet)."""
    h, sat, v = colorsys.rgb_to_hsv(*(x / 255.0 for x in c))
    if sat < 0.12:                        # greys (black, silver, white): a cool blue-violet shadow
        return _mix(_shade(c, v_factor), (70, 66, 120), 0.18)
    h = (h - 0.02) % 1.0 if (h < 0.2 or h > 0.9) else h + 0.015
    sat = min(1.0, sat * 1.15 + 0.06)
    r, g, b = colorsys.hsv_to_rgb(h, sat, v * v_factor)
    return _rgb((r * 255, g * 255, b * 255))


def _lum(c) -> float:
    return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0


def _bezier(p0, p1, p2, p3, n: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _quad(p0, p1, p2, n: int = 10) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def _arc(cx, cy, rx, ry, t0, t1, n: int = 32) -> np.ndarray:
    """Points of an ellipse arc, angle t counter-clockwise on screen (y grows downwards)."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy - ry * np.sin(t)], axis=1)


def _ellipse(cx, cy, rx, ry, rot: float = 0.0, n: int = 36) -> np.ndarray:
    t = np.linspace(0.0, _TAU, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _strip(center: np.ndarray, widths) -> np.ndarray:
    """A ribbon polygon of the given widths around a centre polyline."""
    center = np.asarray(center, dtype=float)
    d = np.gradient(center, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    w = np.asarray(widths, dtype=float)[:, None] / 2.0
    return np.vstack([center + n * w, (center - n * w)[::-1]])


def _cat(*parts) -> np.ndarray:
    return np.vstack([np.asarray(p, dtype=float).reshape(-1, 2) for p in parts])


class _Canvas:
    """An RGB image at SUPERSAMPLE x size, drawn in design units (a 200 x 200 frame) through a pose transform."""

    def __init__(self, size: int, pose=(0.0, 0.0, 1.0, 0.0)):
        self.n = int(size) * SUPERSAMPLE
        k = self.n / 200.0
        dx, dy, s, rot = pose
        c, si = math.cos(rot), math.sin(rot)
        pivot = np.array([100.0, 130.0])
        self.m = np.array([[c, -si], [si, c]]) * s * k
        self.b = (pivot + np.array([dx, dy])) * k - self.m @ pivot
        self.lw = s * k
        self.img = Image.new("RGB", (self.n, self.n))
        self.draw = ImageDraw.Draw(self.img)

    def xy(self, pts, box=None) -> list[float]:
        p = np.asarray(pts, dtype=float).reshape(-1, 2) @ self.m.T + self.b
        if box is not None:
            p = p - np.array([box[0], box[1]], dtype=float)
        return p.ravel().tolist()

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.lw)))

    def poly(self, pts, fill, outline=None, width: float = 1.0) -> None:
        if outline is None:
            self.draw.polygon(self.xy(pts), fill=fill)
        else:
            self.draw.polygon(self.xy(pts), fill=fill, outline=outline, width=self.width(width))

    def line(self, pts, fill, width: float) -> None:
        self.draw.line(self.xy(pts), fill=fill, width=self.width(width), joint="curve")

    # masks restricted to a bounding box, for clipping and translucency
    def box(self, *pts, pad: int = 6) -> tuple[int, int, int, int]:
        p = np.asarray(self.xy(_cat(*pts))).reshape(-1, 2)
        x0, y0 = np.floor(p.min(axis=0)) - pad
        x1, y1 = np.ceil(p.max(axis=0)) + pad
        return (int(max(0, x0)), int(max(0, y0)), int(min(self.n, max(x1, x0 + 2))), int(min(self.n, max(y1, y0 + 2))))

    def mask(self, box) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        m = Image.new("L", (max(1, box[2] - box[0]), max(1, box[3] - box[1])), 0)
        return m, ImageDraw.Draw(m)

    def mpoly(self, d: ImageDraw.ImageDraw, box, pts, value: int = 255) -> None:
        d.polygon(self.xy(pts, box), fill=value)

    def mline(self, d: ImageDraw.ImageDraw, box, pts, width: float, value: int = 255) -> None:
        d.line(self.xy(pts, box), fill=value, width=self.width(width), joint="curve")

    def fill(self, color, box, mask: Image.Image) -> None:
        if box[2] > box[0] and box[3] > box[1]:
            self.img.paste(color, box, mask)


class _G:
    """Derived geometry of one face in design units."""

    def __init__(self, a: dict):
        self.fw = float(a["face_width"])
        self.eye_y = float(a["eye_y"])
        self.cheek_y = self.eye_y + 8.0
        self.chin_y = self.cheek_y + float(a["chin_length"])
        self.cy = 94.0                                   # crown centre
        self.R = self.fw + 15.0
        self.Rh = self.R + float(a["hair_volume"])        # outer radius of the hair
        es = float(a["eye_size"])
        self.ew = 26.0 * es
        self.eh0 = 29.0 * es
        self.eh = self.eh0 * EYE_SHAPES[a["eye_shape"]][1]
        self.sp = float(a["eye_spacing"])
        self.eye_top = self.eye_y - 0.55 * self.eh
        self.mouth_y = self.eye_y + 34.0
        self.nose_y = self.eye_y + 21.0
        self.side = int(a["part_side"])


class _Palette:
    def __init__(self, a: dict):
        hair = tuple(a["hair_rgb"])
        self.hair = _rgb(hair)
        self.hair_shadow = _hsv_shade(hair, 0.76)
        self.hair_deep = _hsv_shade(hair, 0.56)
        self.hair_line = _mix(_shade(hair, 0.45), (40, 20, 50), 0.3)
        self.hair_hi = _mix(hair, (255, 255, 255), 0.42 if _lum(hair) < 0.75 else 0.7)
        if _lum(hair) < 0.25:
            self.hair_hi = _mix(hair, (170, 180, 220), 0.4)
        skin = tuple(a["skin_rgb"])
        self.skin = _rgb(skin)
        self.skin_shadow = _mix(_shade(skin, 0.86), (210, 110, 120), 0.14)
        self.skin_line = _mix(_shade(skin, 0.58), (110, 40, 40), 0.3)
        self.eye = _rgb(a["eye_rgb"])
        self.lash = _mix(_shade(hair, 0.3), (34, 20, 30), 0.7)
        self.brow = _mix(_shade(hair, 0.62), self.lash, 0.25)
        self.mouth = _mix(self.skin_line, (150, 40, 50), 0.4)
        self.acc = _rgb(a["accessory_rgb"])
        self.outfit = _rgb(a["outfit_rgb"])


# --- attribute sampling ---------------------------------------------------------------------------

def sample_attributes(rng: np.random.Generator) -> dict:
    """Draw one face's attributes: categorical names plus the numeric values the renderer uses."""
    a: dict[str, Any] = {}
    shape = _choice(rng, FACE_SHAPES)
    lo, hi = FACE_SHAPES[shape][1]
    a["face_shape"] = shape
    a["face_width"] = _r(rng.uniform(45.0, 52.0))
    a["chin_length"] = _r(rng.uniform(lo, hi))
    skin = _choice(rng, SKIN_TONES)
    a["skin_tone"] = skin
    a["skin_rgb"] = _jitter(rng, SKIN_TONES[skin][0], 4)

    style = _choice(rng, HAIR_STYLES)
    a["hair_style"] = style
    a["bangs"] = _choice(rng, _BANGS_FOR_STYLE.get(style, _BANGS_DEFAULT))
    a["hair_volume"] = _r(rng.uniform(3.0, 9.0))
    a["part_side"] = int(rng.choice([-1, 1]))
    a["ahoge"] = int(rng.random() < 0.22)
    hc = _choice(rng, HAIR_COLORS)
    a["hair_color"] = hc
    a["hair_rgb"] = _jitter(rng, HAIR_COLORS[hc][0], 10)

    a["eye_shape"] = _choice(rng, EYE_SHAPES)
    ec = _choice(rng, EYE_COLORS)
    a["eye_color"] = ec
    a["eye_rgb"] = _jitter(rng, EYE_COLORS[ec][0], 12)
    a["eye_size"] = _r(rng.uniform(0.92, 1.12))
    a["eye_spacing"] = _r(rng.uniform(21.5, 25.0))
    a["eye_y"] = _r(rng.uniform(115.0, 121.0))
    a["eyebrows"] = _choice(rng, EYEBROWS)
    a["eyebrow_thickness"] = _r(rng.uniform(1.2, 2.8))
    a["expression"] = _choice(rng, EXPRESSIONS)
    a["nose"] = _choice(rng, NOSES)
    a["blush"] = _choice(rng, BLUSH)

    acc = _choice(rng, ACCESSORIES)
    a["accessory"] = acc
    ac = _choice(rng, ACCESSORY_COLORS)
    a["accessory_color"] = ac
    a["accessory_rgb"] = _jitter(rng, ACCESSORY_COLORS[ac][0], 8)

    a["outfit"] = _choice(rng, OUTFITS)
    oc = _choice(rng, OUTFIT_COLORS)
    a["outfit_color"] = oc
    a["outfit_rgb"] = _jitter(rng, OUTFIT_COLORS[oc][0], 8)

    a["background"] = _choice(rng, BACKGROUND_STYLES)
    bc = _choice(rng, BACKGROUND_COLORS)
    a["background_color"] = bc
    a["background_rgb"] = _jitter(rng, BACKGROUND_COLORS[bc][0], 6)
    if a["background"] == "gradient":
        other = BACKGROUND_COLORS[_choice(rng, BACKGROUND_COLORS)][0]
        a["background_rgb2"] = [int(v) for v in _mix(a["background_rgb"], _mix(other, (255, 255, 255), 0.3), 0.7)]
    else:
        a["background_rgb2"] = list(a["background_rgb"])
    a["detail_seed"] = int(rng.integers(0, 1_000_000))   # strand positions, tip lengths
    return a


# --- drawing --------------------------------------------------------------------------------------

def _draw_background(cv: _Canvas, a: dict) -> None:
    c1 = np.array(a["background_rgb"], dtype=np.float32)
    c2 = np.array(a["background_rgb2"], dtype=np.float32)
    if a["background"] == "gradient" and not np.array_equal(c1, c2):
        t = np.linspace(0.0, 1.0, cv.n, dtype=np.float32)[:, None]
        col = (c1 * (1 - t) + c2 * t + 0.5).astype(np.uint8)          # (n, 3)
        grad = Image.fromarray(col[:, None, :], "RGB").resize((cv.n, cv.n), Image.NEAREST)
        cv.img.paste(grad, (0, 0))
    else:
        cv.img.paste(_rgb(c1), (0, 0, cv.n, cv.n))


def _tail(anchor, c1, c2, end, w0, w1, w2, n: int = 28) -> tuple[np.ndarray, np.ndarray]:
    center = _bezier(anchor, c1, c2, end, n)
    t = np.linspace(0.0, 1.0, n)
    widths = np.where(t < 0.35, w0 + (w1 - w0) * np.sin(t / 0.35 * math.pi / 2),
                      w2 + (w1 - w2) * np.cos((t - 0.35) / 0.65 * math.pi / 2))
    return _strip(center, widths), center


def _draw_tied_hair(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    style = a["hair_style"]
    if style == "twin_tails":
        for s in (-1, 1):
            anchor = (100 + s * (g.Rh - 12), g.cy - 44)
            poly, center = _tail(anchor, (100 + s * (g.Rh + 30), g.cy - 30), (100 + s * (g.Rh + 30), 150),
                                 (100 + s * (g.Rh + 14), 220), 12, 34, 16)
            cv.poly(poly, p.hair_shadow, p.hair_line, 1.0)
            # strand lines and a highlight streak
            for off, col, w, seg in ((-6, p.hair_deep, 0.9, slice(5, -4)), (5, p.hair_deep, 0.9, slice(5, -4)),
                                     (-1, p.hair_hi, 2.2, slice(6, 13))):
                cv.line(center[seg] + np.array([s * off * 0.6, 0.0]), col, w)
            for dx in (-5, 5):
                cv.poly(_ellipse(anchor[0] + dx * 0.6, anchor[1] + 1, 4.2, 4.2), p.acc, _shade(p.acc, 0.6), 0.8)
    elif style == "ponytail":
        s = g.side
        anchor = (100 + s * 30, g.cy - g.Rh + 10)
        poly, center = _tail(anchor, (100 + s * (g.Rh + 28), g.cy - g.Rh - 4), (100 + s * (g.Rh + 34), 120),
                             (100 + s * (g.Rh + 12), 222), 14, 36, 14)
        cv.poly(poly, p.hair_shadow, p.hair_line, 1.0)
        for off, col, w, seg in ((-7, p.hair_deep, 0.9, slice(4, -3)), (6, p.hair_deep, 0.9, slice(4, -3)),
                                 (-1, p.hair_hi, 2.4, slice(5, 12))):
            cv.line(center[seg] + np.array([s * off * 0.6, 0.0]), col, w)
        cv.poly(_ellipse(anchor[0] + s * 4, anchor[1] + 2, 7.5, 5.5, rot=s * 0.5), p.acc, _shade(p.acc, 0.6), 0.9)
    elif style == "buns":
        r = 16.0 + 0.6 * float(a["hair_volume"])
        for s in (-1, 1):
            c = (100 + s * g.Rh * 0.62, g.cy - g.Rh * 0.80)
            cv.poly(_ellipse(c[0], c[1], r, r * 0.95), p.hair, p.hair_line, 1.0)
            cv.line(_arc(c[0], c[1], r * 0.62, r * 0.55, 0.4, 2.6), p.hair_shadow, 1.4)
            cv.line(_arc(c[0], c[1] - r * 0.1, r * 0.3, r * 0.25, 3.6, 6.0), p.hair_shadow, 1.2)
            cv.line(_arc(c[0], c[1], r * 0.8, r * 0.75, 1.9, 2.6 if s < 0 else 1.2, 6), p.hair_hi, 2.0)


def _mirror(pts: np.ndarray) -> np.ndarray:
    """The left-hand counterpart of a right-hand outline, reversed so it continues a polygon."""
    return np.asarray(pts, dtype=float)[::-1] * np.array([-1.0, 1.0]) + np.array([200.0, 0.0])


def _draw_back_hair(cv: _Canvas, a: dict, g: _G, p: _Palette, drng: np.random.Generator) -> None:
    style = a["hair_style"]
    top = _crown(a, g, math.pi + 0.15, -0.15, 40)               # left side, over the crown, right side
    xr, yr = top[-1]
    color = p.hair_shadow
    strands: list[np.ndarray] = []
    if style in ("long_straight", "hime_cut", "drills", "wavy"):
        flare = 16.0 if style == "wavy" else 4.0
        right = _bezier((xr, yr), (xr + 3, 140), (xr + flare, 175), (xr + flare + 2, 215), 16)
        if style == "wavy":
            t = np.linspace(0, 1, 16)
            right[:, 0] += 6.0 * np.sin(t * 4.0 * math.pi) * np.clip(t * 3, 0, 1)
        poly = _cat(top, right, _mirror(right))
        for s in (-1, 1):
            for off in (6.0, 14.0):
                line = right[4:] * np.array([1.0, 1.0]) - np.array([off, 0.0])
                strands.append(line if s > 0 else _mirror(line))
    elif style == "bob":
        end = g.chin_y + 2.0
        right = _bezier((xr, yr), (xr + 4, yr + 30), (xr + 6, end - 22), (xr + 1, end - 4), 12)
        tips = [(xr - 4, end + 3), (xr - 8, end - 3), (xr - 13, end + 2), (xr - 18, end - 4),
                (100 + g.fw * 0.6, end - 2), (100, end - 14)]
        right = _cat(right, tips)
        poly = _cat(top, right, _mirror(right))
    elif style == "shoulder":
        end = g.chin_y + 9.0
        right = _bezier((xr, yr), (xr + 2, yr + 30), (xr + 1, end - 24), (xr + 3, end - 12), 12)
        tips = [(xr + 13, end - 3), (xr + 1, end - 6), (xr + 6, end + 4), (xr - 5, end - 3), (xr - 6, end + 5),
                (xr - 14, end - 2), (100 + g.fw * 0.6, end - 4), (100, end - 16)]
        right = _cat(right, tips)
        poly = _cat(top, right, _mirror(right))
    else:  # short, spiky, ponytail, buns, twin_tails: hair close to the head
        end = {"short": g.cheek_y + 12, "spiky": g.cheek_y + 6, "ponytail": g.cheek_y + 14,
               "buns": g.cheek_y + 14, "twin_tails": g.chin_y - 6}[style]
        if style in ("short", "ponytail", "buns"):
            color = _mix(p.hair, p.hair_shadow, 0.6)
        if style == "spiky":
            right = _cat([(xr, yr), (xr + 7, yr + 12), (xr - 2, yr + 13), (xr + 3, yr + 27), (xr - 5, yr + 24),
                          (xr - 6, end + 2), (100 + g.fw - 4, end + 4), (100, end)])
        else:
            right = _cat(_bezier((xr, yr), (xr + 2, yr + 12), (xr - 1, end - 10), (xr - 3, end - 6), 10),
                         [(xr - 4, end + 3), (xr - 9, end - 3), (xr - 11, end + 4), (100 + g.fw - 2, end - 2),
                          (100, end - 4)])
        poly = _cat(top, right, _mirror(right))
    cv.poly(poly, color, p.hair_line, 1.0)
    for line in strands:
        cv.line(line, _mix(color, p.hair_deep, 0.6), 0.9)
    # the inside of the hair behind the neck is the darkest
    inner = _cat(_arc(100, g.cheek_y - 6, g.fw + 6, 40, math.pi, 0, 16),
                 [(100 + g.fw + 4, 200), (100 - g.fw - 4, 200)])
    if style in ("long_straight", "hime_cut", "drills", "wavy", "shoulder", "bob", "twin_tails"):
        cv.poly(inner, p.hair_deep)


def _draw_ears_animal(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    acc = a["accessory"]
    if acc not in ("cat_ears", "horns"):
        return
    for s in (-1, 1):
        tc = math.pi / 2 - s * 0.62
        base = np.array([100 + g.Rh * math.cos(tc), g.cy - g.Rh * math.sin(tc)])
        radial = np.array([math.cos(tc), -math.sin(tc)])
        tang = np.array([radial[1], -radial[0]])
        if acc == "cat_ears":
            tip = base + radial * 30 + tang * (-s * 4)
            b1, b2 = base + tang * 17 + radial * -6, base - tang * 17 + radial * -6
            cv.poly([b1, tip, b2], p.hair, p.hair_line, 1.1)
            inner = [base + tang * 9 + radial * 2, base + radial * 22 + tang * (-s * 3), base - tang * 9 + radial * 2]
            cv.poly(inner, _mix(p.acc, (255, 190, 200), 0.6))
        else:
            center = _quad(base - radial * 4, base + radial * 18 + tang * (s * 4),
                           base + radial * 24 - tang * (s * 8), 12)
            poly = _strip(center, np.linspace(11, 1, 12))
            col = _mix(p.acc, (60, 40, 50), 0.55)
            cv.poly(poly, col, _shade(col, 0.55), 0.9)
            cv.line(center[3:10] + tang * (s * 1.5), _mix(col, (255, 255, 255), 0.35), 1.2)


def _draw_body(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    outfit = a["outfit"]
    neck_top = g.cheek_y + 14
    cv.poly([(100 - 12.5, neck_top), (100 + 12.5, neck_top), (100 + 13.5, 205), (100 - 13.5, 205)], p.skin)
    cv.poly([(100 - 13, neck_top), (100 + 13, neck_top), (100 + 13, g.chin_y - 1), (100, g.chin_y + 8),
             (100 - 13, g.chin_y - 1)], p.skin_shadow)
    body = _cat([(100 - 14, 186)], _quad((100 - 14, 186), (100 - 42, 186), (100 - 66, 196), 8),
                [(100 - 78, 204), (100 - 80, 215), (100 + 80, 215), (100 + 78, 204)],
                _quad((100 + 66, 196), (100 + 42, 186), (100 + 14, 186), 8))
    col = p.outfit
    line = _mix(_shade(col, 0.55), (30, 30, 40), 0.3)
    if outfit == "turtleneck":
        cv.poly(body, col, line, 1.0)
        cv.poly([(100 - 15, g.chin_y + 10), (100 + 15, g.chin_y + 10), (100 + 16, 190), (100 - 16, 190)],
                _shade(col, 0.9), line, 1.0)
        for y in (g.chin_y + 15, g.chin_y + 20):
            cv.line([(100 - 13, y), (100 + 13, y)], _shade(col, 0.75), 0.8)
    elif outfit == "hoodie":
        cv.poly(body, col, line, 1.0)
        cv.poly(_cat(_quad((100 - 30, 188), (100, 206), (100 + 30, 188), 10),
                     _quad((100 + 22, 186), (100, 197), (100 - 22, 186), 10)), _shade(col, 0.78), line, 0.8)
        for s in (-1, 1):
            cv.line([(100 + s * 7, 194), (100 + s * 8, 204)], (240, 240, 240), 1.2)
    elif outfit == "sailor":
        white = (244, 244, 248)
        cv.poly(body, white, _shade(white, 0.7), 1.0)
        for s in (-1, 1):
            collar = [(100 + s * 14, 185), (100 + s * 50, 189), (100 + s * 70, 199), (100 + s * 60, 210), (100, 206)]
            cv.poly(collar, col, line, 1.0)
            cv.line([(100 + s * 20, 189), (100 + s * 52, 193), (100 + s * 63, 200)], white, 1.0)
        cv.poly([(100 - 9, 199), (100 + 9, 199), (100, 212)], p.acc if a["accessory"] == "ribbon" else (206, 44, 56))
    else:  # shirt
        cv.poly(body, col, line, 1.0)
        for s in (-1, 1):
            cv.poly([(100 + s * 13, 184), (100 + s * 30, 190), (100 + s * 8, 201), (100, 196)], (248, 248, 250),
                    (150, 150, 160), 0.9)
    # collarbone-area shadow under the chin line of clothes
    cv.line([(100 - 6, 192), (100 - 2, 193)], p.skin_shadow, 0.8)


def _face_poly(a: dict, g: _G) -> np.ndarray:
    _, _, a1, b1, b2, tipw = FACE_SHAPES[a["face_shape"]]
    fw, cyk = g.fw, g.cheek_y
    L = g.chin_y - cyk
    upper = _arc(100, cyk, fw, cyk - 60.0, 0.0, math.pi, 24)                      # right cheek, over, left cheek
    left = _bezier((100 - fw, cyk), (100 - fw, cyk + a1 * L), (100 - b1 * fw, cyk + b2 * L), (100 - tipw, g.chin_y), 18)
    right = left[::-1] * np.array([-1.0, 1.0]) + np.array([200.0, 0.0])
    return _cat(upper, left, right)


def _draw_face(cv: _Canvas, a: dict, g: _G, p: _Palette, face: np.ndarray) -> None:
    for s in (-1, 1):
        ex, ey = 100 + s * (g.fw - 1.0), g.eye_y + 7
        cv.poly(_ellipse(ex, ey, 6.0, 9.5, rot=s * 0.15), p.skin, p.skin_line, 0.9)
        cv.poly(_ellipse(ex + s * 1.2, ey, 2.6, 5.5, rot=s * 0.15), p.skin_shadow)
    cv.poly(face, p.skin, p.skin_line, 1.0)


def _draw_blush(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    level = _BLUSH_LEVEL[a["blush"]]
    if level == 0:
        return
    blobs = [_ellipse(100 + s * (g.sp + 5), g.eye_y + 19, 10.5, 5.0) for s in (-1, 1)]
    box = cv.box(*blobs, pad=int(8 * cv.lw))
    m, d = cv.mask(box)
    for b in blobs:
        cv.mpoly(d, box, b, 120 if level == 1 else 190)
    m = m.filter(ImageFilter.GaussianBlur(2.8 * cv.lw))
    cv.fill(_mix(p.skin, (238, 92, 122), 0.85), box, m)
    if level == 2:
        for s in (-1, 1):
            for i in range(3):
                x = 100 + s * (g.sp + 5) + (i - 1) * 4.0
                cv.line([(x + 1.5, g.eye_y + 17), (x - 1.5, g.eye_y + 21)], _mix(p.skin, (214, 70, 100), 0.7), 0.9)


def _eye_outline(g: _G, shape: str, s: int):
    """Upper lid (inner -> outer) and lower lid (outer -> inner) curves of one eye, in design units."""
    _, hf, lift, up, low = EYE_SHAPES[shape]
    w, h = g.ew, g.eh
    ex, ey = 100 + s * g.sp, g.eye_y

    def P(u, v):  # local (u outward, v up) -> design
        return (ex + s * u, ey - v)

    inner = P(-w / 2, -0.08 * h)
    outer = P(w / 2, lift * h)
    upper = _bezier(inner, P(-w * 0.36, up * h * 1.25), P(w * 0.22, up * h * 1.28), outer, 18)
    lower = _bezier(outer, P(w * 0.30, -low * h * 1.05), P(-w * 0.30, -low * h * 1.0), inner, 14)
    return upper, lower, P


def _draw_eyes(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    shape = a["eye_shape"]
    eyes = [(s, *_eye_outline(g, shape, s)) for s in (-1, 1)]
    whites = [_cat(up, lo) for _, up, lo, _ in eyes]
    box = cv.box(*whites, pad=int(6 * cv.lw))
    white_mask, wd = cv.mask(box)
    for wpoly in whites:
        cv.poly(wpoly, (252, 252, 255))
        cv.mpoly(wd, box, wpoly)

    eye = p.eye
    rx, ry = 0.36 * g.ew, 0.47 * g.eh0
    layers = [
        (_shade(eye, 0.42), 1.0, 1.0, 0.0, 0.0),          # iris rim
        (eye, 0.88, 0.9, 0.0, 0.02),                      # iris
        (_mix(eye, (255, 255, 255), 0.28), 0.66, 0.5, 0.0, -0.36),   # lit lower iris
        (_mix(eye, (255, 255, 255), 0.55), 0.42, 0.22, 0.0, -0.58),
        (_mix(_shade(eye, 0.28), (10, 6, 20), 0.4), 0.40, 0.5, 0.0, 0.06),    # pupil
    ]
    for col, fx, fy, ox, oy in layers:
        m, d = cv.mask(box)
        for s, up, lo, P in eyes:
            cx, cyy = P(0.03 * g.ew, -0.02 * g.eh0)
            cv.mpoly(d, box, _ellipse(cx + ox * rx, cyy - oy * ry, rx * fx, ry * fy))
        cv.fill(col, box, ImageChops.multiply(m, white_mask))
    # upper part of the iris in shadow (cast by the lid), translucent
    m, d = cv.mask(box)
    for s, up, lo, P in eyes:
        band = _cat(up, (up + np.array([0.0, 0.36 * g.eh0]))[::-1])
        cv.mpoly(d, box, band, 150)
    cv.fill(_mix(_shade(eye, 0.3), (40, 20, 60), 0.3), box, ImageChops.multiply(m, white_mask))
    # highlights: light from the upper left in picture coordinates for both eyes
    m, d = cv.mask(box)
    for s, up, lo, P in eyes:
        cx, cyy = P(0.03 * g.ew, -0.02 * g.eh0)
        cv.mpoly(d, box, _ellipse(cx - 0.36 * rx, cyy - 0.32 * ry, 0.36 * rx, 0.27 * ry, rot=-0.3))
        cv.mpoly(d, box, _ellipse(cx + 0.38 * rx, cyy + 0.34 * ry, 0.15 * rx, 0.13 * ry))
        cv.mpoly(d, box, _ellipse(cx + 0.05 * rx, cyy - 0.05 * ry, 0.08 * rx, 0.07 * ry), 200)
    cv.fill((255, 255, 255), box, ImageChops.multiply(m, white_mask))

    lash_w = 3.0 if shape != "sleepy" else 3.4
    for s, up, lo, P in eyes:
        t = np.linspace(0.0, 1.0, len(up))
        thick = lash_w * (0.35 + 0.9 * t ** 1.3)
        upper_edge = up - np.stack([np.zeros_like(t), thick], 1)
        outer = up[-1]
        wing = np.array([outer[0] + s * 3.6, outer[1] - 2.2 - (EYE_SHAPES[shape][2] * 3)])
        cv.poly(_cat(up, [wing], upper_edge[::-1]), p.lash)
        # lower lash line on the outer half, and a lid crease
        cv.line(lo[:max(2, len(lo) // 2)], _mix(p.lash, p.skin, 0.35), 0.9)
        crease = up[5:15] - np.array([s * 0.5, 3.8 + lash_w * 0.4])
        cv.line(crease, _mix(p.skin_line, p.skin, 0.35), 0.7)


def _draw_nose_mouth(cv: _Canvas, a: dict, g: _G, p: _Palette, expression: str) -> None:
    ny, my = g.nose_y, g.mouth_y
    nose = a["nose"]
    if nose == "dot":
        cv.poly(_ellipse(100.5, ny + 1, 1.1, 0.8), p.skin_line)
    elif nose == "line":
        cv.line([(101.5, ny - 3.5), (100.2, ny + 1.2), (99.0, ny + 1.4)], _mix(p.skin_line, p.skin, 0.2), 0.8)
    else:
        cv.poly([(101.8, ny - 4), (102.3, ny + 1.6), (98.6, ny + 1.8)], p.skin_shadow)
        cv.poly(_ellipse(100.4, ny + 1.4, 1.0, 0.5), p.skin_line)
    line, inside, tongue = p.mouth, (128, 36, 52), (236, 116, 128)
    if expression == "smile":
        cv.line(_quad((94, my - 1.5), (100, my + 4.0), (106, my - 1.5)), line, 1.1)
    elif expression == "neutral":
        cv.line(_quad((96, my + 0.5), (100, my + 1.0), (104, my + 0.5)), line, 1.0)
    elif expression == "pout":
        cv.line(_quad((96.5, my + 1.5), (100, my - 1.8), (103.5, my + 1.5)), line, 1.0)
    elif expression == "cat":
        cv.line(_cat(_quad((93.5, my - 1.5), (96.8, my + 3.6), (100, my)), _quad((100, my), (103.2, my + 3.6),
                                                                               (106.5, my - 1.5))), line, 1.0)
    elif expression == "smirk":
        cv.line(_quad((95, my + 0.5), (101, my + 2.6), (106, my - 2.5)), line, 1.0)
    elif expression == "surprised":
        cv.poly(_ellipse(100, my + 1.5, 3.2, 4.2), inside, line, 0.9)
        cv.poly(_ellipse(100, my + 3.6, 2.0, 1.4), tongue)
    else:  # open_smile, grin_fang: a "D" mouth
        top = _quad((93, my - 2.0), (100, my - 0.4), (107, my - 2.0), 8)
        bottom = _quad((107, my - 2.0), (104, my + 9.0), (93, my - 2.0), 12)[1:-1]
        poly = _cat(top, bottom)
        cv.poly(poly, inside)
        cv.poly(_ellipse(100.5, my + 4.6, 4.0, 2.2), tongue)
        if expression == "grin_fang":
            cv.poly([(102.0, my - 1.2), (105.0, my - 1.6), (103.8, my + 2.6)], (255, 255, 255))
        cv.poly(poly, None, line, 1.0)


def _sidelocks(a: dict, g: _G, drng: np.random.Generator) -> list[np.ndarray]:
    style = a["hair_style"]
    if style == "drills":
        return []
    fw = g.fw
    tip = {"long_straight": g.chin_y + 14, "wavy": g.chin_y + 18, "hime_cut": g.chin_y - 3,
           "shoulder": g.chin_y + 6, "bob": g.chin_y - 4, "short": g.cheek_y + 10, "spiky": g.cheek_y + 6,
           "twin_tails": g.chin_y + 2, "ponytail": g.chin_y - 4, "buns": g.chin_y - 8}[style]
    wide = {"short": 9.0, "spiky": 8.0, "hime_cut": 15.0, "bob": 13.0}.get(style, 12.0)
    out = []
    for s in (-1, 1):
        t_y = tip + float(drng.uniform(-3, 3))
        top_o = (100 + s * (fw + 7), g.eye_y - 22)
        top_i = (100 + s * (fw - wide + 6), g.eye_y - 12)
        if style == "hime_cut":
            xi, xo = 100 + s * (fw - 8), 100 + s * (fw + 7)
            inner = _bezier(top_i, (xi, g.eye_y), (xi, t_y - 10), (xi, t_y), 10)
            outer = _bezier((xo, t_y), (xo + s * 1, t_y - 20), (xo + s * 1, g.eye_y - 10), top_o, 10)
            teeth = [(xi + s * 4, t_y + 1.5), (xi + s * 8, t_y - 0.5), (xi + s * 11, t_y + 1.5)]
            out.append(_cat(inner, teeth, outer))
            continue
        tipx = 100 + s * (fw - wide * 0.25)
        inner = _bezier(top_i, (100 + s * (fw - wide + 4), g.eye_y + 6), (tipx - s * 3, t_y - 14), (tipx, t_y), 12)
        outer = _bezier((tipx, t_y), (tipx + s * (wide * 0.7), t_y - 16), (100 + s * (fw + 9), g.eye_y),
                        top_o, 12)
        if style == "wavy":
            tt = np.linspace(0, 1, 12)
            inner[:, 0] += s * 3.5 * np.sin(tt * 3.0 * math.pi) * np.clip(tt * 2.5, 0, 1)
            outer[:, 0] += s * 3.5 * np.sin((1 - tt) * 3.0 * math.pi) * np.clip((1 - tt) * 2.5, 0, 1)
        out.append(_cat(inner, outer))
    return out


def _draw_drills(cv: _Canvas, g: _G, p: _Palette) -> None:
    for s in (-1, 1):
        x = 100 + s * (g.fw + 10)
        # a strand from the temple to the first curl
        cv.poly([(100 + s * (g.fw - 4), g.eye_y - 14), (100 + s * (g.fw + 8), g.eye_y - 24),
                 (x + s * 9, g.cheek_y + 6), (x - s * 8, g.cheek_y + 10)], p.hair, p.hair_line, 1.0)
        y = g.cheek_y + 4
        for i, (w, h) in enumerate(((13, 16), (12, 15), (11, 14), (9.5, 13), (8, 12))):
            cv.poly(_ellipse(x, y + h * 0.55, w, h * 0.68), p.hair, p.hair_line, 1.0)
            cv.line(_quad((x - w * 0.8, y + h * 0.2), (x, y + h * 0.9), (x + w * 0.85, y + h * 0.75)),
                    p.hair_shadow, 1.6)
            cv.line(_arc(x, y + h * 0.55, w * 0.7, h * 0.45, 1.9, 2.5, 5), p.hair_hi, 1.6)
            y += h * 0.92
            x += s * 1.0


def _bangs_edge(a: dict, g: _G, drng: np.random.Generator) -> np.ndarray:
    """The lower edge of the bangs from the right temple to the left temple."""
    bangs = a["bangs"]
    fw, s = g.fw, g.side
    xr, xl = 100 + fw + 7, 100 - fw - 7
    y_side = g.eye_y - 14
    low = g.eye_top + 1.0            # how far the longest strands reach
    pts: list = [(xr, y_side)]

    def strands(xs, tip_ys, valley_ys, lean):
        # xs: valley x positions right -> left (len n+1); tips sit between them
        prev = np.array([xs[0], valley_ys[0]])
        seq = []
        for i in range(len(xs) - 1):
            nxt = np.array([xs[i + 1], valley_ys[i + 1]])
            tip = np.array([(prev[0] + nxt[0]) / 2 + lean[i], tip_ys[i]])
            seq.append(_quad(prev, (prev[0] + (tip[0] - prev[0]) * 0.15, prev[1] + (tip[1] - prev[1]) * 0.85), tip, 7))
            seq.append(_quad(tip, (nxt[0] + (tip[0] - nxt[0]) * 0.15, nxt[1] + (tip[1] - nxt[1]) * 0.85), nxt, 7)[1:])
            prev = nxt
        return _cat(*seq)

    if bangs == "blunt":
        yb = low - 3.0 + float(drng.uniform(-2, 2))
        x0, x1 = 100 + fw - 3, 100 - fw + 3
        pts.append((x0 + 2, yb - 6))
        xs = np.linspace(x0, x1, 13)
        for i, x in enumerate(xs):
            pts.append((x, yb + (1.0 if i % 2 == 0 else -0.8) + float(drng.uniform(-0.6, 0.6))))
        pts.append((x1 - 2, yb - 6))
    elif bangs == "parted":
        xp = 100 + s * 7
        yv = g.cy - 34
        xs_r = np.array([xr - 1, xp + 28, xp + 14, xp + 1])
        right_part = strands(xs_r, [y_side + 10, low - 2, low - 6], [y_side, low - 18, low - 22, yv], [3, 4, 3])
        xs_l = np.array([xp - 1, xp - 14, xp - 28, xl + 1])
        left_part = strands(xs_l, [low - 6, low - 2, y_side + 10], [yv, low - 22, low - 18, y_side], [-3, -4, -3])
        pts = [pts[0]] + list(right_part) + list(left_part)
    elif bangs == "side_swept":
        n = 5
        xs = np.linspace(xr - 2, xl + 2, n + 1) + np.concatenate([[0], drng.uniform(-3, 3, n - 1), [0]])
        frac = (xs - xl) / (xr - xl)                       # 1 at the right, 0 at the left
        slope = frac if s > 0 else 1 - frac                 # strands get longer towards the swept side
        tips = [low - 20 + 22 * (slope[i] + slope[i + 1]) / 2 + float(drng.uniform(-2, 2)) for i in range(n)]
        valleys = [y_side] + [tips[i] - 16 - 3 * slope[i] for i in range(1, n)] + [y_side]
        lean = [s * 7.0] * n
        pts += list(strands(xs, tips, valleys, lean))
    else:  # choppy, spiky
        n = int(drng.integers(5, 8)) if bangs == "choppy" else 5
        xs = np.linspace(xr - 2, xl + 2, n + 1) + np.concatenate([[0], drng.uniform(-2.5, 2.5, n - 1), [0]])
        mid = (xs[:-1] + xs[1:]) / 2
        centered = 1.0 - np.abs(mid - 100) / (fw + 7)
        if bangs == "choppy":
            tips = [low - 6 + 7 * c + float(drng.uniform(-4, 3)) for c in centered]
            valleys = ([y_side] + [min(tips[i - 1], tips[i]) - float(drng.uniform(13, 20)) for i in range(1, n)]
                       + [y_side])
            lean = [float(drng.uniform(-2, 2)) + (100 - m) * 0.06 for m in mid]
        else:
            tips = [low - 2 + 4 * c + float(drng.uniform(-3, 3)) for c in centered]
            valleys = [y_side] + [low - 26 + float(drng.uniform(-3, 3)) for _ in range(1, n)] + [y_side]
            lean = [(-1) ** i * 4.0 + s * 2 for i in range(n)]
        pts += list(strands(xs, tips, valleys, lean))
    pts.append((xl, y_side))
    return _cat(pts)


def _crown(a: dict, g: _G, t0: float, t1: float, n: int = 44) -> np.ndarray:
    """The outline of the top of the hair from angle t0 to t1: gentle bumps, or tufts for spiky hair."""
    t = np.linspace(t0, t1, n)
    crng = np.random.default_rng([int(a["detail_seed"]), 7])
    ph = crng.uniform(0, _TAU, 2)
    r = g.Rh + 1.0 * np.sin(7 * t + ph[0]) + 0.7 * np.sin(12 * t + ph[1])
    pts = np.stack([100 + r * np.cos(t), g.cy - 0.97 * r * np.sin(t)], 1)
    if a["hair_style"] != "spiky":
        return pts
    # spiky: alternate tuft tips and notches, tips swept away from the top of the head
    k = 2 * int(crng.integers(5, 8)) + 1
    tt = np.linspace(t0, t1, k)
    rr = np.where(np.arange(k) % 2 == 1, g.Rh + 10 + crng.uniform(-2, 3, k), g.Rh - 2)
    tt = tt + np.where(np.arange(k) % 2 == 1, -0.09 * np.sign(np.cos(tt)), 0.0)
    return np.stack([100 + rr * np.cos(tt), g.cy - 0.97 * rr * np.sin(tt)], 1)


def _draw_front_hair(cv: _Canvas, a: dict, g: _G, p: _Palette, drng: np.random.Generator,
                     face: np.ndarray, sidelocks: list[np.ndarray]) -> None:
    edge = _bangs_edge(a, g, drng)
    Rh, cy = g.Rh, g.cy
    top = _crown(a, g, math.pi + 0.12, -0.12)                      # left over the crown to right
    # strands at the temples hang over the tops of the side locks and hide the cap's side
    sides = []
    for s in (1, -1):
        start = top[-1] if s > 0 else edge[-1]
        end = edge[0] if s > 0 else top[0]
        tip = (100 + s * (g.fw + 10 + float(drng.uniform(-1, 2))), g.eye_y + 6 + float(drng.uniform(-3, 5)))
        if s > 0:
            sides.append(_cat(_quad(start, (100 + s * (Rh - 1), g.eye_y - 2), tip, 8),
                              _quad(tip, (100 + s * (g.fw + 8), g.eye_y - 4), end, 8)[1:]))
        else:
            sides.append(_cat(_quad(start, (100 + s * (g.fw + 8), g.eye_y - 4), tip, 8)[1:],
                              _quad(tip, (100 + s * (Rh - 1), g.eye_y - 2), end, 8)[1:-1]))
    cap = _cat(top, sides[0][1:], edge[1:], sides[1])

    # shadow the bangs cast on the forehead (clipped to the face)
    box = cv.box(face[:30], edge, pad=4)
    fm, fd = cv.mask(box)
    cv.mpoly(fd, box, face)
    sm, sd = cv.mask(box)
    cv.mpoly(sd, box, _cat(top, edge + np.array([0.0, 4.2])))
    cv.fill(p.skin_shadow, box, ImageChops.multiply(fm, sm))

    for lock in sidelocks:
        cv.poly(lock, p.hair, p.hair_line, 1.0)
        mid = lock[: len(lock) // 2]
        cv.line(mid[2:-2] + np.array([(1 if mid[0][0] > 100 else -1) * 3.5, 0.0]), p.hair_shadow, 1.2)
    cv.poly(cap, p.hair, p.hair_line, 1.1)

    # shading clipped to the cap: shadow near the back of the crown, the highlight ring, strand lines
    box = cv.box(cap, pad=4)
    cm, cd = cv.mask(box)
    cv.mpoly(cd, box, cap)
    m, d = cv.mask(box)
    for s in (-1, 1):   # the sides of the head turn away from the light: a soft-edged shadow at the temples
        cv.mpoly(d, box, _cat(_arc(100, cy, Rh + 12, Rh + 12, -0.5 if s > 0 else math.pi + 0.5,
                                   0.55 if s > 0 else math.pi - 0.55, 10),
                              _quad((100 + s * (Rh - 14), cy - 30), (100 + s * (Rh - 20), cy + 6),
                                    (100 + s * (Rh - 8), cy + 30), 10)), 110)
    cv.fill(p.hair_shadow, box, ImageChops.multiply(m, cm))

    m, d = cv.mask(box)
    k = 2 * int(drng.integers(6, 10)) + 1
    ring_r = Rh * float(drng.uniform(0.80, 0.88))
    t = np.linspace(math.pi - 0.42, 0.42, 15)
    outer = np.stack([100 + ring_r * np.cos(t), cy - ring_r * np.sin(t)], 1)
    t2 = np.linspace(0.42, math.pi - 0.42, k)
    r2 = np.where(np.arange(k) % 2 == 0, ring_r - 7, ring_r - 7 - drng.uniform(5, 13, k))
    inner = np.stack([100 + r2 * np.cos(t2), cy - r2 * np.sin(t2)], 1)
    cv.mpoly(d, box, _cat(outer, inner))
    cv.fill(p.hair_hi, box, ImageChops.multiply(m, cm))

    m, d = cv.mask(box)
    valleys = [edge[i] for i in range(1, len(edge) - 1) if edge[i][1] < edge[i - 1][1] and edge[i][1] <= edge[i + 1][1]]
    if a["bangs"] == "blunt":
        valleys = valleys[1::2]
    for v in valleys:
        start = (100 + (v[0] - 100) * 0.45, cy - Rh * 0.55)
        cv.mline(d, box, _quad(start, (v[0] + (v[0] - 100) * 0.1, v[1] - 22), (v[0], v[1] - 1), 10), 1.0)
    cv.fill(p.hair_line, box, ImageChops.multiply(m, cm))

    if a["ahoge"] and a["accessory"] != "beret":
        s = g.side
        base = (100 + s * 6, cy - Rh + 3)
        center = _bezier(base, (100 + s * 4, cy - Rh - 16), (100 + s * 22, cy - Rh - 22),
                         (100 + s * 24, cy - Rh - 8), 14)
        cv.poly(_strip(center, np.linspace(6.0, 0.8, 14)), p.hair, p.hair_line, 0.9)


def _draw_brows(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    kind, th = a["eyebrows"], float(a["eyebrow_thickness"])
    yb = g.eye_y - 0.5 * g.eh0 - 9.5
    dy_in, dy_out, arch = {"straight": (0.0, 1.0, 1.2), "arched": (1.5, 3.0, 3.6),
                           "angled": (3.5, -2.0, 0.8), "worried": (-3.0, 3.5, 1.4)}[kind]
    box = cv.box([(100 - g.sp - g.ew, yb - 10), (100 + g.sp + g.ew, yb + 10)], pad=4)
    m, d = cv.mask(box)
    for s in (-1, 1):
        ex = 100 + s * g.sp
        p0 = (ex - s * g.ew * 0.42, yb + dy_in)
        p2 = (ex + s * g.ew * 0.55, yb + dy_out)
        center = _quad(p0, ((p0[0] + p2[0]) / 2, (p0[1] + p2[1]) / 2 - 2 * arch), p2, 12)
        cv.mpoly(d, box, _strip(center, th * np.linspace(1.0, 0.35, 12)), 225)
    cv.fill(p.brow, box, m)


def _draw_accessory(cv: _Canvas, a: dict, g: _G, p: _Palette) -> None:
    acc = a["accessory"]
    s = -g.side
    col, dark = p.acc, _mix(_shade(p.acc, 0.6), (30, 20, 40), 0.3)
    light = _mix(p.acc, (255, 255, 255), 0.4)
    Rh, cy = g.Rh, g.cy
    if acc == "ribbon":
        tc = math.pi / 2 + s * 0.72
        c = np.array([100 + (Rh - 3) * math.cos(tc), cy - (Rh - 3) * math.sin(tc)])
        rot = -s * 0.5
        R = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])

        def T(pts):
            return np.asarray(pts, dtype=float) @ R.T + c

        for side in (-1, 1):
            cv.poly(T([(side * 1, 2), (side * 9, 22), (side * 4, 20), (side * 1, 24), (side * -2, 4)]),
                    _shade(col, 0.8), dark, 0.8)                                              # tails
            wing = _cat([(0, 0)], _quad((side * 4, -12), (side * 26, -20), (side * 22, 2), 10), [(side * 5, 6)])
            cv.poly(T(wing), col, dark, 1.0)
            cv.line(T([(side * 6, -2), (side * 15, -6)]), dark, 1.0)
        cv.poly(T(_ellipse(0, -2, 5.0, 6.0)), col, dark, 1.0)
        cv.line(T([(-2, -5), (2, -6)]), light, 1.0)
    elif acc == "flower":
        tc = math.pi / 2 + s * 1.05
        c = np.array([100 + (Rh - 8) * math.cos(tc), cy - (Rh - 8) * math.sin(tc)])
        for k in range(5):
            ang = k * _TAU / 5 + 0.3
            cv.poly(_ellipse(c[0] + 7 * math.cos(ang), c[1] + 7 * math.sin(ang), 6.0, 6.0), col, dark, 0.8)
        cv.poly(_ellipse(c[0], c[1], 4.2, 4.2), (250, 206, 70), (200, 140, 40), 0.8)
        cv.poly(_ellipse(c[0] + 5, c[1] - 6, 3.2, 1.8, rot=0.6), light)
    elif acc == "hairclip":
        x0, y0 = 100 + s * (g.fw - 14), g.eye_y - 34
        for k in range(2):
            cx, cyy = x0 + s * k * 5.0, y0 + k * 3.0
            poly = _strip(np.array([(cx - s * 7, cyy - 3), (cx + s * 7, cyy + 3)]), [3.6, 3.6])
            cv.poly(poly, col, dark, 0.8)
            cv.line([(cx - s * 5, cyy - 2.5), (cx + s * 2, cyy + 0.5)], light, 0.8)
    elif acc == "headband":
        t = np.linspace(math.pi + 0.05, -0.05, 36)
        center = np.stack([100 + (Rh - 4) * np.cos(t), cy - 4 - (Rh - 4) * np.sin(t)], 1)
        cv.poly(_strip(center, np.full(36, 7.0)), col, dark, 1.0)
        cv.line(center[4:-4] + np.array([0.0, -1.2]), light, 1.4)
    elif acc == "beret":
        rot = -s * 0.14
        c = (100 - s * 12, cy - Rh * 0.74)
        body = _ellipse(c[0], c[1], Rh * 0.96, 23.0, rot=rot, n=48)
        cv.poly(body, col, dark, 1.1)
        # the underside turning away from the light, and the band that sits on the head
        under = _cat(_ellipse(c[0], c[1], Rh * 0.96, 23.0, rot=rot, n=48)[:25],
                     _ellipse(c[0] + s * 4, c[1] + 2, Rh * 0.86, 14.0, rot=rot, n=48)[24::-1])
        cv.poly(under, _shade(col, 0.8))
        band = _ellipse(c[0] + s * 4, c[1] + 12, Rh * 0.62, 9.0, rot=rot * 0.5, n=40)[:21]
        cv.line(band, _shade(col, 0.62), 2.6)
        cv.line(_arc(c[0] - s * 12, c[1] - 6, Rh * 0.5, 11, 0.6, 2.4, 12), light, 1.8)
        cv.poly(_ellipse(c[0] + s * 10, c[1] - 23, 2.4, 3.6, rot=rot), dark)
    elif acc == "glasses":
        frame = _mix(col, (40, 30, 40), 0.2)
        for k in (-1, 1):
            ex, ey = 100 + k * g.sp, g.eye_y + 1
            rect = _ellipse(ex, ey, g.ew * 0.66, g.eh0 * 0.58, n=48)
            # superellipse-ish rounded rectangle
            rel = rect - np.array([ex, ey])
            radii = np.array([g.ew * 0.66, g.eh0 * 0.58])
            rel = np.sign(rel) * np.abs(rel / radii) ** 0.7 * radii
            rect = rel + np.array([ex, ey])
            cv.line(_cat(rect, rect[:1]), frame, 1.5)
            cv.line([(ex - g.ew * 0.35, ey + g.eh0 * 0.25), (ex - g.ew * 0.15, ey + g.eh0 * 0.05)],
                    (255, 255, 255), 0.8)
        cv.line([(100 - g.sp + g.ew * 0.64, g.eye_y - 3), (100, g.eye_y - 5), (100 + g.sp - g.ew * 0.64, g.eye_y - 3)],
                frame, 1.3)


def _render(a: dict, size: int, pose=(0.0, 0.0, 1.0, 0.0), expression: str | None = None) -> np.ndarray:
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, not {size}")
    cv = _Canvas(size, pose)
    g = _G(a)
    p = _Palette(a)
    drng = np.random.default_rng(int(a["detail_seed"]))
    _draw_background(cv, a)
    _draw_tied_hair(cv, a, g, p)
    _draw_back_hair(cv, a, g, p, drng)
    _draw_ears_animal(cv, a, g, p)
    _draw_body(cv, a, g, p)
    face = _face_poly(a, g)
    _draw_face(cv, a, g, p, face)
    _draw_blush(cv, a, g, p)
    _draw_eyes(cv, a, g, p)
    _draw_nose_mouth(cv, a, g, p, expression or a["expression"])
    locks = _sidelocks(a, g, drng)
    if a["hair_style"] == "drills":
        _draw_drills(cv, g, p)
    _draw_front_hair(cv, a, g, p, drng, face, locks)
    _draw_brows(cv, a, g, p)
    _draw_accessory(cv, a, g, p)
    img = cv.img.resize((size, size), Image.LANCZOS) if SUPERSAMPLE != 1 else cv.img
    return np.asarray(img, dtype=np.uint8).copy()


def render_face(attributes: dict, size: int = 200) -> np.ndarray:
    """Draw a face: a (size, size, 3) uint8 RGB array, the same bytes for the same attributes."""
    return _render(attributes, size)


def perturbed_render(attributes: dict, rng: np.random.Generator, size: int = 200) -> np.ndarray:
    """The same character drawn slightly differently (small shift/scale/rotation of the head, slight
    colour/lighting jitter, maybe a different expression): used as a 'photo of the target' query image in
    benchmarks.  Deterministic for the attributes and the state of `rng`."""
    pose = (float(rng.uniform(-4.0, 4.0)), float(rng.uniform(-4.0, 4.0)), float(rng.uniform(0.95, 1.05)),
            float(rng.uniform(-0.08, 0.08)))
    expression = None
    if rng.random() < 0.3:
        others = [e for e in EXPRESSIONS if e != attributes["expression"]]
        expression = others[int(rng.integers(len(others)))]
    img = _render(attributes, size, pose, expression).astype(np.float32)
    gain = rng.uniform(0.93, 1.07) * rng.uniform(0.97, 1.03, size=3)       # exposure and white balance
    offset = rng.uniform(-6.0, 6.0)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)                  # light falling from one side
    angle = rng.uniform(0, _TAU)
    light = 1.0 + rng.uniform(0.0, 0.05) * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    img = img * gain[None, None, :].astype(np.float32) * light[:, :, None] + offset
    img += rng.normal(0.0, 1.5, size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --- distance, titles, urls -----------------------------------------------------------------------

def _lab(rgb) -> np.ndarray:
    c = np.asarray(rgb, dtype=float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _de(c1, c2) -> float:
    """CIE76 colour difference (0 identical, ~100 black vs white)."""
    return float(np.linalg.norm(_lab(c1) - _lab(c2)))


# Weights of attribute_distance.  Colour terms are CIE76 delta-E scaled to [0, 1] and capped.
DISTANCE_WEIGHTS = {
    "hair_style": 1.0,      # different silhouette group; 0.6 within a group (long, medium, short, tied)
    "bangs": 0.35,
    "hair_color": 1.2,      # x min(dE / 100, 1)
    "eye_color": 0.5,       # x min(dE / 100, 1)
    "eye_shape": 0.3,
    "accessory": 0.5,       # different accessory; same accessory adds 0.15 x min(dE / 100, 1) for its colour
    "accessory_color": 0.15,
    "face_shape": 0.2,
    "face_width": 0.15,     # x |difference| / 7 units
    "skin": 0.35,           # x min(dE / 60, 1)
    "expression": 0.2,
    "blush": 0.1,           # x |level difference| (none 0, light 1, strong 2)
    "eyebrows": 0.1,
    "background": 0.3,      # x min(dE / 100, 1) of the mean background colour
    "outfit": 0.15,         # outfit kind mismatch, + 0.1 x min(dE / 100, 1) of its colour
    "outfit_color": 0.1,
    "ahoge": 0.05,
    "eye_geometry": 0.15,   # x (|d size| / 0.2 + |d spacing| / 3.5 + |d height| / 6) / 3
}


def attribute_distance(a: dict, b: dict) -> float:
    """A perceptual distance between two faces computed ONLY from their attributes (never from pixels), roughly in
    [0, ~5]; deterministic, symmetric, 0 for identical attributes.

    The weights are DISTANCE_WEIGHTS: hair style 1.0 (0.6 between styles of one silhouette group), hair colour
    1.2 x dE/100, accessory 0.5, eye colour 0.5 x dE/100, bangs 0.35, skin 0.35 x dE/60, eye shape 0.3,
    background 0.3 x dE/100, face shape 0.2, expression 0.2, then small terms (face width, outfit, blush, eyebrows,
    eye geometry, ahoge).  Hair and accessories dominate because they are what one notices first in a thumbnail.
    The maximum is about 5.9; pairs of random faces lie around 1.5 to 5 (mean about 3.7).
    """
    W = DISTANCE_WEIGHTS
    d = 0.0
    if a["hair_style"] != b["hair_style"]:
        same_group = HAIR_STYLES[a["hair_style"]][1] == HAIR_STYLES[b["hair_style"]][1]
        d += W["hair_style"] * (0.6 if same_group else 1.0)
    d += W["bangs"] * (a["bangs"] != b["bangs"])
    d += W["hair_color"] * min(_de(a["hair_rgb"], b["hair_rgb"]) / 100.0, 1.0)
    d += W["eye_color"] * min(_de(a["eye_rgb"], b["eye_rgb"]) / 100.0, 1.0)
    d += W["eye_shape"] * (a["eye_shape"] != b["eye_shape"])
    if a["accessory"] != b["accessory"]:
        d += W["accessory"]
    elif a["accessory"] != "none":
        d += W["accessory_color"] * min(_de(a["accessory_rgb"], b["accessory_rgb"]) / 100.0, 1.0)
    d += W["face_shape"] * (a["face_shape"] != b["face_shape"])
    d += W["face_width"] * min(abs(float(a["face_width"]) - float(b["face_width"])) / 7.0, 1.0)
    d += W["skin"] * min(_de(a["skin_rgb"], b["skin_rgb"]) / 60.0, 1.0)
    d += W["expression"] * (a["expression"] != b["expression"])
    d += W["blush"] * abs(_BLUSH_LEVEL[a["blush"]] - _BLUSH_LEVEL[b["blush"]])
    d += W["eyebrows"] * (a["eyebrows"] != b["eyebrows"])
    bg_a = (np.asarray(a["background_rgb"], float) + np.asarray(a["background_rgb2"], float)) / 2
    bg_b = (np.asarray(b["background_rgb"], float) + np.asarray(b["background_rgb2"], float)) / 2
    d += W["background"] * min(_de(bg_a, bg_b) / 100.0, 1.0)
    d += W["outfit"] * (a["outfit"] != b["outfit"])
    d += W["outfit_color"] * min(_de(a["outfit_rgb"], b["outfit_rgb"]) / 100.0, 1.0)
    d += W["ahoge"] * (int(a["ahoge"]) != int(b["ahoge"]))
    geo = (min(abs(float(a["eye_size"]) - float(b["eye_size"])) / 0.2, 1.0)
           + min(abs(float(a["eye_spacing"]) - float(b["eye_spacing"])) / 3.5, 1.0)
           + min(abs(float(a["eye_y"]) - float(b["eye_y"])) / 6.0, 1.0)) / 3.0
    d += W["eye_geometry"] * geo
    return float(d)


def _label(name: str) -> str:
    return name.replace("_", " ")


def _made_up_name(index: int) -> str:
    h = hashlib.sha256(f"omokage-name-{index}".encode()).digest()
    return _NAMES[int.from_bytes(h[:4], "big") % len(_NAMES)]


def make_title(attributes: dict, index: int) -> str:
    """A made-up name and a short description, e.g. "Mirei — pink twin tails, ribbon"."""
    style = attributes["hair_style"]
    desc = f"{_label(attributes['hair_color'])} {_STYLE_LABELS.get(style, _label(style))}"
    acc = attributes.get("accessory", "none")
    if acc != "none":
        desc += f", {_ACCESSORY_LABELS.get(acc, _label(acc))}"
    return f"{_made_up_name(index)} \u2014 {desc}"


def product_url(index: int, seed: int) -> str:
    """A stable product page URL on the reserved .example domain."""
    return f"https://avatars.example/items/{seed}-{index:05d}"


def _key(attributes: dict) -> str:
    return json.dumps(attributes, sort_keys=True)


def _distinct_attributes(rng: np.random.Generator, limit: int) -> Iterator[dict]:
    """Attribute dicts drawn from `rng`, none drawn twice; gives up after `limit` draws."""
    seen: set[str] = set()
    for _ in range(limit):
        attrs = sample_attributes(rng)
        key = _key(attrs)
        if key not in seen:
            seen.add(key)
            yield attrs


def _render_job(job: tuple[dict, int]) -> tuple[dict, np.ndarray]:
    attrs, size = job
    return attrs, render_face(attrs, size)


def _default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


RENDER_WINDOW = 128   # faces handed to the pool at a time: the next window renders while this one is consumed


def _windowed(pool, jobs: Iterator, size: int) -> Iterator[tuple[dict, np.ndarray]]:
    """Rendered faces in job order, with at most two windows of jobs drawn ahead (Pool.imap would drain the whole
    job generator at once: thousands of attribute draws and renders nobody needs)."""
    def window():
        chunk = list(itertools.islice(jobs, size))
        return pool.map_async(_render_job, chunk, chunksize=8) if chunk else None
    pending = window()
    while pending is not None:
        results = pending.get()
        pending = window()
        yield from results


def generate_faces(count: int, seed: int = 0, size: int = 200,
                   workers: int | None = None) -> Iterator[tuple[np.ndarray, dict, str, str]]:
    """Yield (rgb, attributes, title, url) for `count` DISTINCT faces (no two with identical attributes dicts, no
    two identical images), deterministic for the seed whatever the number of `workers` (default: one per core).

    Attributes are drawn in order here and rendered (the cost, ~15 ms a face) by a pool of processes whose results
    are taken in order, so the faces are exactly those a single process draws."""
    if count <= 0:
        return
    rng = np.random.default_rng(seed)
    jobs = ((attrs, size) for attrs in _distinct_attributes(rng, 20 * count + 100))
    workers = _default_workers() if workers is None else max(1, workers)
    pool = None
    if workers > 1 and count >= 64:
        import multiprocessing
        pool = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers)
        rendered = _windowed(pool, jobs, RENDER_WINDOW)
    else:
        rendered = map(_render_job, jobs)
    seen_images: set[bytes] = set()
    index = 0
    try:
        for attrs, rgb in rendered:
            digest = hashlib.sha256(rgb.tobytes()).digest()
            if digest in seen_images:
                continue
            seen_images.add(digest)
            yield rgb, attrs, make_title(attrs, index), product_url(index, seed)
            index += 1
            if index == count:
                return
        raise RuntimeError(f"could not draw {count} distinct faces at size {size}")
    finally:
        if pool is not None:
            pool.terminate()  # the few faces rendered ahead are not needed


def generate_catalog(out, count: int = 1500, seed: int = 0, image_size: int = 200, overwrite: bool = False,
                     progress: bool = True) -> Path:
    """Write a catalog of `count` generated faces to `out` and return its path.

    Written with CatalogWriter, so it is atomic: an error or Ctrl-C part-way leaves nothing at `out` (and an
    existing catalog there untouched).  A tqdm progress bar goes to stderr unless progress=False."""
    from tqdm import tqdm

    from omokage.catalog.store import CatalogWriter

    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    if image_size < 16:
        raise UserError(f"--size must be at least 16 pixels, not {image_size}")
    provenance = {"source": "generated", "seed": seed, "generator": GENERATOR}
    with CatalogWriter(out, image_size=image_size, provenance=provenance, overwrite=overwrite) as w:
        faces = generate_faces(count, seed=seed, size=image_size)
        for i, (rgb, attrs, title, url) in enumerate(tqdm(faces, total=count, disable=not progress,
                                                          desc="drawing faces", unit="face")):
            w.add(rgb, title, url, source=f"generated:{seed}:{i}", attributes=attrs)
    return Path(out)


def generated_catalog_mismatch(out, count: int, seed: int, image_size: int) -> str | None:
    """None when `out` holds a catalog this generator drew with these parameters (count, seed, size and
    generator version, as its catalog.json records them), else what differs ("no catalog" when there is none)."""
    meta_path = Path(out) / "catalog.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return "no catalog"
    except (OSError, ValueError) as exc:
        return f"unreadable catalog.json ({exc})"
    if not isinstance(meta, dict):
        return "unreadable catalog.json"
    size = meta.get("image_size")
    size = size[0] if isinstance(size, list) and size else size
    found = {"generator": meta.get("generator"), "count": meta.get("count"), "seed": meta.get("seed"),
             "size": size}
    wanted = {"generator": GENERATOR, "count": count, "seed": seed, "size": image_size}
    diffs = [f"{k} {found[k]!r}, not {wanted[k]!r}" for k in wanted if found[k] != wanted[k]]
    if not diffs and not ((Path(out) / "pixels.npy").is_file() and (Path(out) / "items.sqlite").is_file()):
        diffs = ["its pixels.npy or items.sqlite is missing"]
    return "; ".join(diffs) or None


def ensure_catalog(out, count: int = 1500, seed: int = 0, image_size: int = 200, progress: bool = True,
                   announce_reuse: bool = False) -> Path:
    """The generated catalog at `out`: reused when it was drawn with the same count, seed, size and generator
    version (see `generated_catalog_mismatch`), else drawn (again). A catalog at `out` that was not generated
    (ingested from someone's images) is never replaced: that is a UserError."""
    out = Path(out)
    mismatch = generated_catalog_mismatch(out, count, seed, image_size)
    if mismatch is None:
        if announce_reuse:
            print(f"reusing the generated catalog {out} ({count} faces, seed {seed}, {image_size} px, {GENERATOR}); "
                  "delete it to draw it again", flush=True)
        return out
    if (out / "catalog.json").is_file():
        try:
            source = json.loads((out / "catalog.json").read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        if source is not None and source != "generated":
            raise UserError(f"{out} holds a {source} catalog, not a generated one ({mismatch}); move it away or "
                            "choose another folder")
        print(f"{out} was generated with other parameters ({mismatch}); drawing it again", flush=True)
    print(f"generating {count} faces (seed {seed}, {image_size} px) -> {out}", flush=True)
    generate_catalog(out, count=count, seed=seed, image_size=image_size, overwrite=out.exists(),
                     progress=progress)
    return out
