"""Decoding untrusted images safely: size caps, decompression-bomb guard, clear reasons on failure."""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from omokage.errors import UserError

MAX_FILE_BYTES = 64 * 1024 * 1024     # bigger files are not thumbnails; refuse before reading them
MAX_IMAGE_PIXELS = 40_000_000         # ~ 6300 x 6300; larger declared sizes are treated as bombs


class ImageDecodeError(UserError):
    """An image could not be used. `reason`: too_large, bomb, not_image, truncated, unreadable, not_regular."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def decode_image_bytes(data: bytes, *, max_bytes: int = MAX_FILE_BYTES,
                       max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode encoded image bytes to an RGB PIL image, or raise ImageDecodeError with a reason."""
    if len(data) > max_bytes:
        raise ImageDecodeError("too_large", f"image is {len(data)} bytes, over the {max_bytes}-byte limit")
    if len(data) == 0:
        raise ImageDecodeError("not_image", "empty file")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("bomb", f"decompression bomb refused: {exc}") from None
    except Exception:
        raise ImageDecodeError("not_image", "not a recognised image format (JPEG, PNG, WebP, BMP, GIF, ...)") from None
    w, h = img.size
    # Check the declared size before decoding: a 100 kB PNG can declare 50,000 x 50,000 pixels.
    if w * h > max_pixels or w <= 0 or h <= 0:
        raise ImageDecodeError("bomb", f"image declares {w}x{h} pixels, over the {max_pixels}-pixel limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("bomb", f"decompression bomb refused: {exc}") from None
    except OSError as exc:
        msg = str(exc)
        reason = "truncated" if "truncated" in msg.lower() or "broken" in msg.lower() else "unreadable"
        raise ImageDecodeError(reason, f"image data is {reason}: {msg}") from None
    except Exception as exc:
        raise ImageDecodeError("unreadable", f"image could not be decoded: {exc}") from None
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent → white, like a store page
        img = Image.alpha_composite(bg, rgba)
    return img.convert("RGB")


def read_image_file(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES,
                    max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image file, refusing what is not a regular file (a FIFO would block forever) and
    reading no more than `max_bytes` + 1 bytes of anything."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"{path.name}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageDecodeError("not_regular", f"{path.name}: not a regular file (a FIFO, socket or device)")
    if st.st_size > max_bytes:
        raise ImageDecodeError("too_large", f"{path.name} is {st.st_size} bytes, over the {max_bytes}-byte limit")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"{path.name}: {exc.strerror or exc}") from None
    return decode_image_bytes(data, max_bytes=max_bytes, max_pixels=max_pixels)


def square_resize(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size: how query images meet the catalog."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def load_image_file(path: str | os.PathLike, size: int) -> np.ndarray:
    return square_resize(read_image_file(path), size)


def load_image_bytes(data: bytes, size: int, **limits) -> np.ndarray:
    return square_resize(decode_image_bytes(data, **limits), size)
