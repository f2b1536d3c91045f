"""What a simulated user "sees": perceptual distances that the engine never uses.

The engine's features (raw pixels, PCA, NMF, autoencoder) are all fitted to the catalog's pixels. A simulated user who
compared faces in one of those spaces would favour that algorithm by construction, so the user compares faces in a
space of its own:

* **Generated catalog** — :func:`omokage.catalog.generate.attribute_distance`, computed from the attributes that drew
  each face (hair style and colour, eyes, accessory, ...), never from pixels. :class:`AttributeDistances` is a
  vectorised copy of it (one target against the whole catalog in one numpy pass) that checks itself against the
  reference function on random pairs every time it is built, so it cannot drift from it silently.
* **Real images** (anime-holoen20) — :class:`ImageDescriptor`: a hand-designed colour histogram (hue x saturation for
  coloured pixels, value for grey ones, compared with the Hellinger distance) plus a HOG descriptor of the grey image
  (scikit-image, compared with the Euclidean distance). Nothing in it is learned, let alone learned from the catalog,
  and it is not a function of the engine's features: PCA/NMF/AE are projections of raw RGB pixels; a histogram
  discards where colours are, and HOG keeps only locally normalised gradient orientations.

Both produce a full (N, N) distance matrix; the benchmark divides it by its median off-diagonal entry so that a
temperature means the same on both data sets (see docs/choice-benchmark.md).
"""

from __future__ import annotations

import numpy as np

# --- generated faces: attribute distance, vectorised -----------------------------------------------------------------


def _lab_rows(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab of (n, 3) sRGB rows, the same formula as generate._lab (checked by AttributeDistances.verify)."""
    from omokage.catalog.generate import _lab
    return np.stack([_lab(c) for c in np.asarray(rgb, dtype=float)]) if len(rgb) else np.zeros((0, 3))


class AttributeDistances:
    """attribute_distance(items[t], items[j]) for one t against every j at once.

    Build with the catalog items' attribute dicts; :meth:`row` returns distances from one item, :meth:`matrix` all of
    them. Construction verifies the result against the reference function on `check_pairs` random pairs.
    """

    def __init__(self, attributes: list[dict], check_pairs: int = 300, seed: int = 0):
        from omokage.catalog.generate import _BLUSH_LEVEL, DISTANCE_WEIGHTS, HAIR_STYLES
        if not attributes or any(not a for a in attributes):
            raise ValueError("every item needs its generating attributes (a generated catalog)")
        self.attributes = attributes
        self.W = dict(DISTANCE_WEIGHTS)

        def codes(key: str) -> np.ndarray:
            vocab: dict = {}
            return np.array([vocab.setdefault(a[key], len(vocab)) for a in attributes], dtype=np.int64)

        def num(key: str) -> np.ndarray:
            return np.array([float(a[key]) for a in attributes])

        self.style = codes("hair_style")
        groups: dict = {}
        self.style_group = np.array([groups.setdefault(HAIR_STYLES[a["hair_style"]][1], len(groups))
                                     for a in attributes], dtype=np.int64)
        self.bangs = codes("bangs")
        self.eye_shape = codes("eye_shape")
        self.accessory = codes("accessory")
        self.has_accessory = np.array([a["accessory"] != "none" for a in attributes])
        self.face_shape = codes("face_shape")
        self.expression = codes("expression")
        self.eyebrows = codes("eyebrows")
        self.outfit = codes("outfit")
        self.blush = np.array([_BLUSH_LEVEL[a["blush"]] for a in attributes], dtype=float)
        self.ahoge = np.array([int(a["ahoge"]) for a in attributes])
        self.face_width = num("face_width")
        self.eye_size, self.eye_spacing, self.eye_y = num("eye_size"), num("eye_spacing"), num("eye_y")
        self.hair_lab = _lab_rows(np.array([a["hair_rgb"] for a in attributes]))
        self.eye_lab = _lab_rows(np.array([a["eye_rgb"] for a in attributes]))
        self.acc_lab = _lab_rows(np.array([a["accessory_rgb"] for a in attributes]))
        self.skin_lab = _lab_rows(np.array([a["skin_rgb"] for a in attributes]))
        self.outfit_lab = _lab_rows(np.array([a["outfit_rgb"] for a in attributes]))
        bg = (np.array([a["background_rgb"] for a in attributes], float)
              + np.array([a["background_rgb2"] for a in attributes], float)) / 2
        self.bg_lab = _lab_rows(bg)
        self.verify(check_pairs, seed)

    def __len__(self) -> int:
        return len(self.attributes)

    def row(self, t: int) -> np.ndarray:
        W = self.W

        def de(lab: np.ndarray, scale: float) -> np.ndarray:
            return np.minimum(np.linalg.norm(lab - lab[t], axis=1) / scale, 1.0)

        d = np.where(self.style != self.style[t],
                     W["hair_style"] * np.where(self.style_group == self.style_group[t], 0.6, 1.0), 0.0)
        d = d + W["bangs"] * (self.bangs != self.bangs[t])
        d = d + W["hair_color"] * de(self.hair_lab, 100.0)
        d = d + W["eye_color"] * de(self.eye_lab, 100.0)
        d = d + W["eye_shape"] * (self.eye_shape != self.eye_shape[t])
        same_acc = self.accessory == self.accessory[t]
        d = d + np.where(~same_acc, W["accessory"],
                         np.where(self.has_accessory, W["accessory_color"] * de(self.acc_lab, 100.0), 0.0))
        d = d + W["face_shape"] * (self.face_shape != self.face_shape[t])
        d = d + W["face_width"] * np.minimum(np.abs(self.face_width - self.face_width[t]) / 7.0, 1.0)
        d = d + W["skin"] * de(self.skin_lab, 60.0)
        d = d + W["expression"] * (self.expression != self.expression[t])
        d = d + W["blush"] * np.abs(self.blush - self.blush[t])
        d = d + W["eyebrows"] * (self.eyebrows != self.eyebrows[t])
        d = d + W["background"] * de(self.bg_lab, 100.0)
        d = d + W["outfit"] * (self.outfit != self.outfit[t])
        d = d + W["outfit_color"] * de(self.outfit_lab, 100.0)
        d = d + W["ahoge"] * (self.ahoge != self.ahoge[t])
        geo = (np.minimum(np.abs(self.eye_size - self.eye_size[t]) / 0.2, 1.0)
               + np.minimum(np.abs(self.eye_spacing - self.eye_spacing[t]) / 3.5, 1.0)
               + np.minimum(np.abs(self.eye_y - self.eye_y[t]) / 6.0, 1.0)) / 3.0
        d = d + W["eye_geometry"] * geo
        d[t] = 0.0
        return d

    def matrix(self) -> np.ndarray:
        return np.stack([self.row(t) for t in range(len(self))])

    def verify(self, pairs: int = 300, seed: int = 0) -> float:
        """Largest |vectorised - reference| over random pairs; raises if they disagree (generate.py changed)."""
        from omokage.catalog.generate import attribute_distance
        n = len(self)
        if pairs <= 0 or n < 2:
            return 0.0
        rng = np.random.default_rng(seed)
        worst = 0.0
        rows: dict[int, np.ndarray] = {}
        for i, j in rng.integers(0, n, size=(pairs, 2)):
            i, j = int(i), int(j)
            ref = attribute_distance(self.attributes[i], self.attributes[j]) if i != j else 0.0
            if i not in rows:
                rows[i] = self.row(i)
            worst = max(worst, abs(rows[i][j] - ref))
        if worst > 1e-6:
            raise AssertionError(f"the vectorised attribute distance differs from generate.attribute_distance by "
                                 f"{worst:.3g}; update omokage/bench/perceptual.py to match generate.py")
        return worst


# --- real images: colour histogram + HOG ------------------------------------------------------------------------------

HUE_BINS = 12          # 30 degrees each
SAT_BINS = 3           # coloured pixels: saturation 0.2-0.47-0.73-1
GREY_BINS = 4          # grey pixels (saturation < 0.2 or value < 0.2): value quartiles
HOG_SIZE = 64          # grey image resized to 64 x 64 before HOG
HOG_PARAMS = dict(orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), block_norm="L2-Hys")
COLOUR_WEIGHT = 0.5    # of the median-normalised colour distance; HOG gets 1 - COLOUR_WEIGHT


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Hue x saturation histogram of coloured pixels plus a value histogram of grey ones, summing to 1 (40 bins)."""
    from skimage.color import rgb2hsv
    hsv = rgb2hsv(np.asarray(rgb, dtype=np.uint8)).reshape(-1, 3)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    coloured = (s >= 0.2) & (v >= 0.2)
    hb = np.minimum((h * HUE_BINS).astype(int), HUE_BINS - 1)
    sb = np.minimum(((s - 0.2) / 0.8 * SAT_BINS).astype(int), SAT_BINS - 1).clip(0)
    vb = np.minimum((v * GREY_BINS).astype(int), GREY_BINS - 1)
    hist = np.concatenate([
        np.bincount(hb[coloured] * SAT_BINS + sb[coloured], minlength=HUE_BINS * SAT_BINS),
        np.bincount(vb[~coloured], minlength=GREY_BINS)]).astype(float)
    return hist / max(hist.sum(), 1.0)


def hog_descriptor(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray
    from skimage.feature import hog
    from skimage.transform import resize
    grey = resize(rgb2gray(np.asarray(rgb, dtype=np.uint8)), (HOG_SIZE, HOG_SIZE), anti_aliasing=True)
    return hog(grey, **HOG_PARAMS, feature_vector=True)


def _pairwise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    d2 = sq[:, None] - 2 * X @ X.T + sq[None, :]
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def median_offdiagonal(D: np.ndarray) -> float:
    n = len(D)
    return float(np.median(D[~np.eye(n, dtype=bool)])) if n > 1 else 1.0


class ImageDescriptor:
    """Colour histogram + HOG of a set of images, and the combined distance between every pair.

    distance = COLOUR_WEIGHT * Hellinger(colour) / median + (1 - COLOUR_WEIGHT) * L2(HOG) / median, where each median
    is that part's median off-diagonal distance over the set (so neither part dominates by its scale).
    """

    def __init__(self, images, colour_weight: float = COLOUR_WEIGHT):
        self.colour = np.stack([np.sqrt(colour_histogram(im)) for im in images])   # sqrt: Euclidean = Hellinger
        self.hog = np.stack([hog_descriptor(im) for im in images])
        self.colour_weight = float(colour_weight)

    def matrices(self) -> tuple[np.ndarray, np.ndarray]:
        Dc, Dh = _pairwise(self.colour), _pairwise(self.hog)
        return Dc / median_offdiagonal(Dc), Dh / median_offdiagonal(Dh)

    def matrix(self) -> np.ndarray:
        Dc, Dh = self.matrices()
        return self.colour_weight * Dc + (1.0 - self.colour_weight) * Dh


def nearest_neighbour_accuracy(D: np.ndarray, labels) -> float:
    """Leave-one-out 1-NN label accuracy of a distance matrix: how well the simulated user tells characters apart."""
    D = np.array(D, dtype=float)
    np.fill_diagonal(D, np.inf)
    labels = np.asarray(labels)
    return float(np.mean(labels[np.argmin(D, axis=1)] == labels))
