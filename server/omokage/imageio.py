"""Decoding untrusted images safely: size caps, decompression-bomb guard, clear reasons on failure."""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from omokage.errors import UserError

MAX_FILE_BYTES = 64 * 1024 * 1024     # bigger files are not thumbnails; refuse before reading them
MAX_IMAGE_PIXELS = 40_000_000         # ~ 6300 x 6300; larger declared sizes are treated as bombs


class ImageDecodeError(UserError):
    """An image could not be used. `reason`: too_large, bomb, format (a known format that is not accepted),
    not_image, truncated, unreadable, not_regular."""

    def __init__(self, reason: str, message: str, path: str | os.PathLike | None = None):
        # `detail` says what is wrong; the message names the file first when there is one, as the user gave it
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.reason = reason
        self.detail = message
        self.path = path


# What an upload may be (docs/protocol.md, `start.image`): decoded only by these Pillow plugins, so a
# PostScript file never reaches Ghostscript and TIFF/ICO/PSD parsers are not exposed to the network.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
# Files a user ingests from their own folder: the same, plus TIFF (photo archives).
FILE_FORMATS = UPLOAD_FORMATS + ("TIFF",)
_FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF", "TIFF": "TIFF"}


def sniff_format(data: bytes) -> str | None:
    """The container format named by the first bytes (None when unknown): used to refuse a format by
    name without letting any decoder parse it."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")):
        return "ICO"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    if head.lstrip().startswith((b"<?xml", b"<svg")):
        return "SVG"
    return None


def _names(formats) -> str:
    names = [_FORMAT_NAMES.get(f, f) for f in formats]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def decode_image_bytes(data: bytes, *, max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
                       formats: tuple[str, ...] = FILE_FORMATS) -> Image.Image:
    """Decode encoded image bytes to an RGB PIL image, or raise ImageDecodeError with a reason.

    Only the Pillow plugins named in `formats` may parse the data; the declared size is checked
    against `max_pixels` before any pixel is decoded."""
    if len(data) > max_bytes:
        raise ImageDecodeError("too_large", f"image is {len(data)} bytes, over the {max_bytes}-byte limit")
    if len(data) == 0:
        raise ImageDecodeError("not_image", "empty file")
    sniffed = sniff_format(data)
    if sniffed is not None and sniffed not in formats:
        raise ImageDecodeError("format", f"{_FORMAT_NAMES.get(sniffed, sniffed)} images are not accepted; "
                                         f"send {_names(formats)}")
    try:
        img = Image.open(io.BytesIO(data), formats=list(formats))
    except Image.DecompressionBombError as exc:
        # Pillow names its own limit (178,956,970 pixels); ours is lower: cite the image's size and ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than allowed"
        raise ImageDecodeError("bomb", f"image declares {size}, over the {max_pixels:,}-pixel limit "
                                       "(a decompression bomb?)") from None
    except ValueError as exc:
        if "MAX_TEXT_CHUNK" in str(exc) or "Decompressed" in str(exc):  # a zTXt/iTXt text bomb
            raise ImageDecodeError("bomb", "image metadata (a compressed PNG text chunk) decompresses to over "
                                           "1 MB: refused as a decompression bomb") from None
        raise ImageDecodeError("not_image", f"not a recognised image format; send {_names(formats)}") from None
    except Exception:
        raise ImageDecodeError("not_image", f"not a recognised image format; send {_names(formats)}") from None
    w, h = img.size
    # Check the declared size before decoding: a 100 kB PNG can declare 50,000 x 50,000 pixels.
    if w * h > max_pixels or w <= 0 or h <= 0:
        raise ImageDecodeError("bomb", f"image declares {w}x{h} = {w * h:,} pixels, over the {max_pixels:,}-pixel "
                                       "limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError("bomb", f"image declares {w}x{h} pixels, refused as a decompression bomb") from None
    except OSError as exc:
        msg = str(exc)
        reason = "truncated" if "truncated" in msg.lower() or "broken" in msg.lower() else "unreadable"
        raise ImageDecodeError(reason, f"image data is {reason}: {msg}") from None
    except ValueError as exc:
        if "MAX_TEXT_CHUNK" in str(exc) or "Decompressed" in str(exc):
            raise ImageDecodeError("bomb", "image metadata (a compressed PNG text chunk) decompresses to over "
                                           "1 MB: refused as a decompression bomb") from None
        raise ImageDecodeError("unreadable", f"image could not be decoded: {exc}") from None
    except Exception as exc:
        raise ImageDecodeError("unreadable", f"image could not be decoded: {exc}") from None
    if img.format == "PNG":
        short = _png_pixel_data_short(data)
        if short:
            raise ImageDecodeError("truncated", f"image data is truncated: {short}")
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent → white, like a store page
        img = Image.alpha_composite(bg, rgba)
    return img.convert("RGB")


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}   # per colour type


def _png_pixel_data_short(data: bytes) -> str:
    """Why a PNG's pixel data (its IDAT chunks) holds less than its header's size needs, or "" when it is whole.

    Pillow pads a PNG whose compressed data ends early (a complete zlib stream of too few rows) with black and says
    nothing; a file cut off mid-chunk it does refuse. Counted while inflating, in 1 MiB pieces (constant memory);
    what Pillow already decoded bounds the work (the declared size was checked before)."""
    import struct
    import zlib
    if len(data) < 33 or data[12:16] != b"IHDR":
        return ""
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = _PNG_CHANNELS.get(colour, 0) * depth
    if not bits or not w or not h:
        return ""

    def raw(pw: int, ph: int) -> int:   # a filter byte per row, then the row's bytes
        return ph * (1 + (pw * bits + 7) // 8) if pw and ph else 0
    if interlace:   # Adam7: seven sub-images
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
        need = sum(raw((w - x + dx - 1) // dx, (h - y + dy - 1) // dy) for x, y, dx, dy in passes)
    else:
        need = raw(w, h)
    inflate, got, pos = zlib.decompressobj(), 0, 8
    try:
        while pos + 8 <= len(data) and got < need:
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            if kind == b"IDAT":
                piece = inflate.decompress(data[pos + 8:pos + 8 + length], 1 << 20)
                got += len(piece)
                while inflate.unconsumed_tail and got < need:
                    piece = inflate.decompress(inflate.unconsumed_tail, 1 << 20)
                    got += len(piece)
            elif kind == b"IEND":
                break
            pos += 12 + length
    except zlib.error:
        return ""      # Pillow decoded it: not ours to second-guess
    if got < need:
        return f"its pixel data ends after {got:,} of {need:,} bytes ({w}x{h})"
    return ""


def read_image_file(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES,
                    max_pixels: int = MAX_IMAGE_PIXELS, formats: tuple[str, ...] = FILE_FORMATS) -> Image.Image:
    """Decode an image file, refusing what is not a regular file (a FIFO would block forever) and
    reading no more than `max_bytes` + 1 bytes of anything."""
    path = Path(path)   # messages name it as given (relative stays relative, folders included)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageDecodeError("unreadable", "no such file", path) from None
    except OSError as exc:
        raise ImageDecodeError("unreadable", str(exc.strerror or exc), path) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageDecodeError("not_regular", "is a folder, not an image file", path)
    if not stat.S_ISREG(st.st_mode):
        raise ImageDecodeError("not_regular", "not a regular file (a FIFO, socket or device)", path)
    if st.st_size > max_bytes:
        raise ImageDecodeError("too_large", f"{st.st_size} bytes, over the {max_bytes}-byte limit", path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError("unreadable", str(exc.strerror or exc), path) from None
    try:
        return decode_image_bytes(data, max_bytes=max_bytes, max_pixels=max_pixels, formats=formats)
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, exc.detail, path) from None


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


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) averaging matrix of area downsampling (torch's interpolate mode="area" / adaptive average pooling):
    output i averages inputs floor(i*src/dst) .. ceil((i+1)*src/dst) - 1."""
    A = np.zeros((dst, src), dtype=np.float32)
    for i in range(dst):
        a, b = (i * src) // dst, -(-(i + 1) * src // dst)
        A[i, a:b] = 1.0 / (b - a)
    return A


def bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of bilinear resizing as torch's interpolate(mode="bilinear", align_corners=False) does it
    along one axis: output i samples input x = (i + 0.5) * src / dst - 0.5, clamped to [0, src - 1], between its two
    neighbours."""
    x = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
    lo = np.minimum(np.floor(x).astype(np.int64), src - 1)
    hi = np.minimum(lo + 1, src - 1)
    w = (x - lo).astype(np.float32)
    B = np.zeros((dst, src), dtype=np.float32)
    np.add.at(B, (np.arange(dst), lo), 1.0 - w)
    np.add.at(B, (np.arange(dst), hi), w)
    return B
