"""Line-art and colour maps of faces: the domain sketches are compared in.

Strokes are not shaded images. A few dark lines say "there is an edge here" and a few strokes of paint say "this part
is this colour", so the catalog is rendered into the same two maps a canvas produces (Sangkloy et al. 2017 and iGAN,
Zhu et al. 2016, compare sketches with edge maps of photos, not with the photos):

- ink: XDoG line art (Winnemöller et al. 2012, the extended difference of Gaussians that turns photos and anime art
  into clean dark lines), area-downsampled to the sketch resolution and blurred by a pixel, so a line drawn one pixel
  off still overlaps its edge;
- colour: the face area-downsampled to the sketch resolution and blurred, what a stroke of paint over a region means.

Pure numpy + OpenCV filters; no I/O.
"""

from __future__ import annotations

import cv2
import numpy as np

from omokage.imageio import area_matrix

# XDoG parameters at a reference size of 200 px; sigmas scale with the image
XDOG_SIGMA = 1.0
XDOG_K = 1.6
XDOG_SHARPEN = 20.0
XDOG_EPSILON = 0.72
XDOG_PHI = 10.0
INK_BLUR_PX = 1.0      # at the sketch resolution: a line drawn a pixel off still overlaps its edge
COLOUR_BLUR_PX = 1.5


def xdog_ink(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) image (uint8 or float in [0, 1]) → (H, W) float32 ink in [0, 1]: 1 on a line, 0 on paper."""
    img = np.asarray(rgb)
    grey = cv2.cvtColor(img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0), cv2.COLOR_RGB2GRAY)
    sigma = XDOG_SIGMA * img.shape[0] / 200.0
    g1 = cv2.GaussianBlur(grey, (0, 0), sigma)
    g2 = cv2.GaussianBlur(grey, (0, 0), sigma * XDOG_K)
    d = (1 + XDOG_SHARPEN) * g1 - XDOG_SHARPEN * g2
    paper = np.where(d >= XDOG_EPSILON, 1.0, 1.0 + np.tanh(XDOG_PHI * (d - XDOG_EPSILON)))
    return np.clip(1.0 - paper, 0.0, 1.0).astype(np.float32)


def _shrink(plane: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Area-downsample a (H, W) or (H, W, C) plane by the averaging matrix A (R, H)."""
    if plane.ndim == 2:
        return A @ plane @ A.T
    return np.einsum("rh,hwc,sw->rsc", A, plane, A, optimize=True)


def sketch_maps(images: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, S, S, 3) faces (uint8 or float in [0, 1]) → ink (n, R·R) and colour (n, R·R·3) float32 maps at R =
    `resolution`, as `SketchCanvas.observations` produces them for a drawing."""
    images = np.asarray(images)
    n, side = len(images), images.shape[1]
    A = area_matrix(side, resolution)
    ink = np.empty((n, resolution * resolution), np.float32)
    colour = np.empty((n, resolution * resolution * 3), np.float32)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for i in range(n):
        small_ink = _shrink(xdog_ink(images[i]), A)
        # downsampling averages thin lines away: bring line pixels back to full strength before the blur
        small_ink = np.clip(small_ink * 2.5, 0.0, 1.0)
        ink[i] = blur(small_ink, INK_BLUR_PX).reshape(-1)
        colour[i] = blur(_shrink(images[i].astype(np.float32) / scale, A), COLOUR_BLUR_PX).reshape(-1)
    return ink, colour


def blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(np.ascontiguousarray(plane, dtype=np.float32), (0, 0), sigma,
                            borderType=cv2.BORDER_REPLICATE)
