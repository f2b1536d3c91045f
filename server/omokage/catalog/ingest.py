"""Build a catalog from a folder of real images (`omokage catalog ingest`).

For every file under IMAGES_DIR (recursively, in sorted order):

1. decode it safely (`omokage.imageio`): non-images, truncated or corrupt files, decompression
   bombs and oversized files are skipped with a reason and never end the run;
2. find the face with the chosen detector and keep the largest detection (one face per image);
   a cascade that finds nothing on the image as it is gets a second try on a padded copy,
   because cascades rarely fire on faces that fill the whole frame (tight crops);
3. crop a square with `margin` around the face box, padding with the edge colour where the square
   runs past the image, and resize it to image_size x image_size with LANCZOS;
4. drop near-duplicates: a crop whose 64-bit difference hash (dHash) is within `dedup_threshold`
   bits of an image already kept, and whose 16x16 colour thumbnail is close to that image's too,
   is a duplicate of it (the first one wins);
5. add the crop to a `CatalogWriter`, which writes the catalog atomically: an interrupted or failed
   run leaves no catalog and no temporary directory behind.

An optional manifest CSV (columns file, title, url and any extra columns) gives titles, product URLs
and labels; without one, the title is the file name and the URL a file:// URI of the source.
See docs/ingest.md.
"""

from __future__ import annotations

import csv
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
from PIL import Image

from omokage.catalog.store import CatalogExistsError, CatalogWriter
from omokage.errors import UserError
from omokage.imageio import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, ImageDecodeError, read_image_file

# detectMultiScale settings of the reference study (and of lbpcascade_animeface's README).
CASCADE_SETTINGS: dict[str, Any] = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (24, 24)}
# Images are scaled down so their long side is at most this before detection: cascades on
# 12-megapixel photos take seconds and find nothing a 1024-pixel copy would not.
DETECT_MAX_SIDE = 1024
# The padded retry, for images where the first pass finds nothing: the image is scaled so its long
# side is RETRY_SIDE pixels and given a border of RETRY_PAD x that on every side, filled with its
# mean grey. Measured on real anime crops (docs/ingest.md): 64 px and 25% found the most faces.
RETRY_SIDE = 64
RETRY_PAD = 0.25
HAAR_FRONTAL = "haarcascade_frontalface_default.xml"
# Near-duplicates: dHash within dedup_threshold bits, confirmed by 16x16 RGB thumbnails within this
# RMS difference (0-255 scale). Re-saved and resized copies measured at most 8 on 64-pixel sources
# and 2.6 on larger ones; different faces with a matching hash measured 12.8 and up (docs/ingest.md).
THUMB_SIDE = 16
DEDUP_MAX_RMS = 8.0

MANIFEST_COLUMNS = ("file", "title", "url")


# --- detectors ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """A face box in source pixels, clipped to the image: x, y, width, height."""
    box: tuple[int, int, int, int]
    padded_retry: bool = False


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> Detection | None:
        """The largest face in an (H, W, 3) uint8 RGB image, or None."""


class WholeImageDetector:
    """`none`: the image already is a face crop; the face is its centre square."""

    name = "none"

    def detect(self, rgb: np.ndarray) -> Detection | None:
        h, w = rgb.shape[:2]
        side = min(w, h)
        return Detection(((w - side) // 2, (h - side) // 2, side, side))


class CascadeDetector:
    """An OpenCV cascade (Haar or LBP) with the reference settings and a padded retry."""

    def __init__(self, path: str | os.PathLike, name: str, *, pad_retry: bool = True,
                 retry_pad: float = RETRY_PAD, retry_side: int = RETRY_SIDE, max_side: int = DETECT_MAX_SIDE):
        import cv2
        self._cv2 = cv2
        self.path = Path(path)
        self.name = name
        self.pad_retry = pad_retry
        self.retry_pad = retry_pad
        self.retry_side = retry_side
        self.max_side = max_side
        if not self.path.is_file():
            raise UserError(f"cascade file {self.path} not found; give the path to an OpenCV cascade XML, "
                            "e.g. lbpcascade_animeface.xml from github.com/nagadomi/lbpcascade_animeface")
        try:
            self._cascade = cv2.CascadeClassifier(str(self.path))
            loaded = not self._cascade.empty()
        except Exception:  # malformed XML: OpenCV raises cv2.error or SystemError
            loaded = False
        if not loaded:
            raise UserError(f"{self.path} did not load as an OpenCV cascade classifier; it must be a cascade "
                            "XML such as lbpcascade_animeface.xml or haarcascade_frontalface_default.xml")

    def _largest(self, grey: np.ndarray) -> tuple[float, float, float, float] | None:
        """The largest detection in `grey` as (x, y, w, h) in its own pixels, or None."""
        cv2 = self._cv2
        h, w = grey.shape
        scale = min(1.0, self.max_side / max(h, w))
        work = grey if scale == 1.0 else cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(cv2.equalizeHist(work), **CASCADE_SETTINGS)
        if len(found) == 0:
            return None
        # Largest area; ties go to the topmost, then leftmost box, so the choice is deterministic.
        best = max((tuple(int(v) for v in b) for b in found), key=lambda b: (b[2] * b[3], -b[1], -b[0]))
        return tuple(v / scale for v in best)  # type: ignore[return-value]

    def detect(self, rgb: np.ndarray) -> Detection | None:
        cv2 = self._cv2
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        box = self._largest(grey)
        retried = False
        if box is None and self.pad_retry:
            # Tight crop hypothesis: the face fills the frame. Scale the image so its long side is
            # retry_side pixels, surround it with a mean-grey border and look again.
            retried = True
            scale = self.retry_side / max(h, w)
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            pad = max(1, round(self.retry_pad * max(sw, sh)))
            padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=int(small.mean()))
            found = self._largest(padded)
            if found is not None:
                x, y, bw, bh = found
                box = ((x - pad) * w / sw, (y - pad) * h / sh, bw * w / sw, bh * h / sh)
        if box is None:
            return None
        clipped = _clip_box(tuple(int(round(v)) for v in box), w, h)  # type: ignore[arg-type]
        if clipped is None:  # a face found entirely in the padding: not a face of this image
            return None
        return Detection(clipped, padded_retry=retried)


def _clip_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int] | None:
    x, y, bw, bh = box
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def make_detector(spec: str, *, pad_retry: bool = True) -> Detector:
    """`none`, `haar-frontal` or `cascade:PATH` → a detector; a bad spec raises UserError."""
    spec = str(spec).strip()
    if spec == "none":
        return WholeImageDetector()
    if spec == "haar-frontal":
        import cv2
        path = Path(cv2.data.haarcascades) / HAAR_FRONTAL
        if not path.is_file():
            raise UserError(f"OpenCV's bundled {HAAR_FRONTAL} is missing ({path}); install opencv-python-headless 4.x, "
                            "or pass --detector cascade:PATH with your own copy")
        return CascadeDetector(path, "haar-frontal", pad_retry=pad_retry)
    if spec.startswith("cascade:"):
        raw = spec[len("cascade:"):]
        if not raw:
            raise UserError("--detector cascade: needs a path, e.g. cascade:lbpcascade_animeface.xml")
        path = Path(raw).expanduser()
        return CascadeDetector(path, f"cascade:{path.name}", pad_retry=pad_retry)
    raise UserError(f"unknown detector {spec!r}: use none (images already are face crops), haar-frontal "
                    "(photos of people) or cascade:PATH (an OpenCV cascade XML such as lbpcascade_animeface.xml)")


# --- cropping and hashing -------------------------------------------------------------------------

def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int,
              *, add_margin: bool = True) -> np.ndarray:
    """Square crop centred on `box`, `margin` x its size on each side, edge-padded, resized with LANCZOS."""
    h, w = rgb.shape[:2]
    x, y, bw, bh = box
    side = max(bw, bh) * ((1.0 + 2.0 * margin) if add_margin else 1.0)
    side = max(1, int(round(side)))
    cx, cy = x + bw / 2.0, y + bh / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    inner = rgb[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    pads = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
    if any(a or b for a, b in pads):
        inner = np.pad(inner, pads, mode="edge")
    img = Image.fromarray(np.ascontiguousarray(inner, dtype=np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def dhash(rgb: np.ndarray) -> int:
    """64-bit difference hash: grey 9x8 thumbnail, one bit per horizontally adjacent pair."""
    grey = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).convert("L")
    small = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


if hasattr(np, "bitwise_count"):
    def _popcount(a: np.ndarray) -> np.ndarray:
        return np.bitwise_count(a)
else:  # numpy < 2.0
    _BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(a: np.ndarray) -> np.ndarray:
        return _BYTE_BITS[a.view(np.uint8)].reshape(len(a), 8).sum(axis=1)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """16x16 RGB box-filtered thumbnail: the colour check behind a dHash match."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    return np.asarray(img.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX), dtype=np.uint8)


class DuplicateIndex:
    """The images kept so far. `find` returns the first kept image that this one nearly duplicates.

    A near-duplicate has a 64-bit dHash within `threshold` bits of a kept image's *and* (unless
    max_rms is None) a 16x16 RGB thumbnail within `max_rms` grey levels RMS of it. The hash is
    blind to colour: on real anime faces most hash matches were different characters whose
    hair colours differ, which the thumbnail check rejects (docs/ingest.md).
    """

    def __init__(self, threshold: int, max_rms: float | None = DEDUP_MAX_RMS):
        self.threshold = threshold
        self.max_rms = max_rms
        self._hashes = np.zeros(1024, dtype=np.uint64)
        self._thumbs = np.zeros((1024 if max_rms is not None else 0, THUMB_SIDE, THUMB_SIDE, 3), dtype=np.uint8)
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._names)

    def find(self, h: int, thumb: np.ndarray | None = None) -> str | None:
        n = len(self._names)
        if n == 0 or self.threshold < 0:
            return None
        dist = _popcount(self._hashes[:n] ^ np.uint64(h))
        hits = np.flatnonzero(dist <= self.threshold)
        if self.max_rms is None or thumb is None:
            return self._names[int(hits[0])] if len(hits) else None
        for i in hits:
            diff = self._thumbs[i].astype(np.float32) - thumb.astype(np.float32)
            if float(np.sqrt(np.mean(diff * diff))) <= self.max_rms:
                return self._names[int(i)]
        return None

    def add(self, h: int, name: str, thumb: np.ndarray | None = None) -> None:
        n = len(self._names)
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
            if self.max_rms is not None:
                self._thumbs = np.concatenate([self._thumbs, np.zeros_like(self._thumbs)])
        self._hashes[n] = np.uint64(h)
        if self.max_rms is not None:
            if thumb is None:
                raise ValueError("this index compares thumbnails: pass the thumbnail too")
            self._thumbs[n] = thumb
        self._names.append(name)


# --- the report -----------------------------------------------------------------------------------

REASON_TEXT = {
    "no_face": "no face found",
    "duplicate": "near-duplicate",
    "not_image": "not an image",
    "truncated": "truncated image",
    "bomb": "decompression bomb",
    "too_large": "file too large",
    "unreadable": "unreadable",
    "not_regular": "not a regular file",
    "hidden": "hidden file or folder",
    "linked_folder": "symbolic link to a folder, not followed",
    "linked_outside": "symbolic link to a file outside IMAGES_DIR, not followed",
    "format": "image format not accepted",
    "not_in_manifest": "not listed in the manifest",
    "missing": "listed in the manifest, not on disk",
    "manifest_row": "bad manifest row",
}
DECODE_REASONS = ("not_image", "format", "truncated", "bomb", "too_large", "unreadable", "not_regular")


@dataclass
class IngestReport:
    read: int = 0            # files looked at under IMAGES_DIR
    faces_found: int = 0     # images decoded with a face found
    no_face: int = 0
    duplicate: int = 0
    unreadable: int = 0      # every file that could not be used as an image (see per_reason)
    added: int = 0
    missing: int = 0         # manifest rows whose file is not on disk
    padded_retry: int = 0    # faces found only by the padded retry
    enlarged: list[str] = field(default_factory=list)   # faces added from fewer than a quarter of --size pixels
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (relative file, reason text)
    per_reason: dict[str, int] = field(default_factory=dict)
    detector: str = ""
    images_dir: str = ""
    out: str | None = None   # the catalog written, or None when nothing was added
    seconds: float = 0.0

    def skip(self, file: str, reason: str, detail: str = "") -> None:
        text = REASON_TEXT.get(reason, reason)
        self.skipped.append((shown_name(file), f"{reason}: {shown_name(detail or text)}"))
        self.per_reason[reason] = self.per_reason.get(reason, 0) + 1
        if reason in DECODE_REASONS:
            self.unreadable += 1
        elif reason == "no_face":
            self.no_face += 1
        elif reason == "duplicate":
            self.duplicate += 1
        elif reason == "missing":
            self.missing += 1

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "faces_found": self.faces_found, "no_face": self.no_face,
                "duplicate": self.duplicate, "unreadable": self.unreadable, "added": self.added,
                "missing": self.missing, "padded_retry": self.padded_retry, "per_reason": dict(self.per_reason),
                "enlarged": list(self.enlarged),
                "skipped": [list(s) for s in self.skipped], "detector": self.detector,
                "images_dir": self.images_dir, "out": self.out, "seconds": round(self.seconds, 3)}

    def summary(self, max_reasons: int = 20) -> str:
        def breakdown(keys: Iterable[str]) -> str:
            parts = [f"{k} {self.per_reason[k]}" for k in keys if self.per_reason.get(k)]
            return f"({', '.join(parts)})" if parts else ""

        # (label, count, note) rows, printed in aligned columns: every count ends at the same offset and
        # every note starts at the same one, whatever the labels and however large the counts
        rows: list[tuple[str, int, str]] = [
            ("read", self.read, ""),
            ("faces found", self.faces_found,
             f"({self.padded_retry} only on the padded retry)" if self.padded_retry else ""),
            ("no face", self.no_face, ""),
            ("duplicate", self.duplicate, ""),
            ("unreadable", self.unreadable, breakdown(DECODE_REASONS))]
        other = {k: v for k, v in self.per_reason.items()
                 if k not in DECODE_REASONS and k not in ("no_face", "duplicate")}
        for k, v in sorted(other.items()):
            text = REASON_TEXT.get(k, k)
            rows.append((text, v, "") if len(text) <= 20 else (k, v, f"({text})"))
        rows.append(("added", self.added, f"-> {self.out}" if self.out else "(nothing added: no catalog written)"))
        if self.enlarged:
            # kept (a small face is still a face), but its thumbnail is a blur: the user should know which
            more = " ..." if len(self.enlarged) > 3 else ""
            rows.append(("enlarged over 4x", len(self.enlarged), f"(added, but blurry: {', '.join(self.enlarged[:3])}"
                                                                 f"{more}; give larger images for sharp thumbnails)"))
        label_w = max(len(label) for label, _, _ in rows)
        count_w = max(7, *(len(str(n)) for _, n, _ in rows))
        lines = [f"ingest of {self.images_dir} with detector {self.detector}: {self.read} files in {self.seconds:.1f} s"]
        lines += [f"  {label:<{label_w}}  {n:>{count_w}}" + (f"  {note}" if note else "") for label, n, note in rows]
        if self.skipped:
            shown = self._examples(max_reasons)
            lines.append(f"skipped ({len(shown)} of {len(self.skipped)} shown):" if len(self.skipped) > len(shown)
                         else f"skipped ({len(self.skipped)}):")
            lines.extend(f"  {f}: {why}" for f, why in shown)
        return "\n".join(lines)

    def _examples(self, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` skipped files, spread over the reasons so a rare one is not hidden by a common one."""
        by_reason: dict[str, list[tuple[str, str]]] = {}
        for entry in self.skipped:
            by_reason.setdefault(entry[1].split(":", 1)[0], []).append(entry)
        if not by_reason:
            return []
        per = max(1, limit // len(by_reason))
        picked = {id(e) for group in by_reason.values() for e in group[:per]}
        for e in self.skipped:  # fill what is left in file order
            if len(picked) >= limit:
                break
            picked.add(id(e))
        return [e for group in by_reason.values() for e in group if id(e) in picked][:limit]


# --- the manifest ---------------------------------------------------------------------------------

@dataclass
class ManifestRow:
    title: str
    url: str
    extra: dict[str, str]


def _rel_key(path: str) -> str:
    return os.path.normpath(path).replace(os.sep, "/")


def shown_name(name: str) -> str:
    """A file name as it can be printed and stored as text: bytes that are not UTF-8 (which Python
    carries as lone surrogates) shown as \\xNN escapes. The catalog keeps the name as given."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _outside_link(path: Path, root_real: str) -> bool:
    """True for a symbolic link whose target lies outside IMAGES_DIR (resolved, links in between followed)."""
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    return os.path.commonpath([target, root_real]) != root_real


def read_manifest(manifest: str | os.PathLike, images_dir: Path,
                  report: IngestReport) -> dict[str, ManifestRow]:
    """Rows by file path relative to images_dir. Bad rows and repeated files are reported, not fatal.

    A row's `file` is relative to IMAGES_DIR; a path relative to the manifest's own folder that
    lands inside IMAGES_DIR is accepted too (a labels.csv beside an images/ folder).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise UserError(f"manifest {manifest} not found; give a CSV file with columns file,title,url[,extra...]")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except UnicodeDecodeError:
        raise UserError(f"manifest {manifest} is not UTF-8 text; save it as a UTF-8 CSV") from None
    except csv.Error as exc:
        raise UserError(f"manifest {manifest} is not a readable CSV: {exc}") from None
    lower = {h.lower(): h for h in header}
    if "file" not in lower:
        raise UserError(f"manifest {manifest} has no 'file' column (columns: {', '.join(header) or 'none'}); "
                        "the first line must name the columns, e.g. file,title,url")
    raw_header = reader.fieldnames or []
    file_col, title_col, url_col = (lower.get(c) for c in MANIFEST_COLUMNS)
    extra_cols = [h for h in header if h and h.lower() not in MANIFEST_COLUMNS]
    images_abs = Path(os.path.abspath(images_dir))
    out: dict[str, ManifestRow] = {}
    for line_no, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw.items() if k in raw_header}
        name = (row.get(file_col) or "").strip().replace("\\", "/")
        if not name:
            report.skip(f"{manifest}:{line_no}", "manifest_row", "the file column is empty")
            continue
        key = _resolve_manifest_file(name, images_abs, Path(os.path.abspath(manifest.parent)))
        if key is None:
            report.skip(name, "manifest_row", "the path points outside IMAGES_DIR")
            continue
        if key in out:
            report.skip(name, "manifest_row", f"listed again on line {line_no} of the manifest; the first row is used")
            continue
        title = (row.get(title_col) or "").strip() if title_col else ""
        url = (row.get(url_col) or "").strip() if url_col else ""
        out[key] = ManifestRow(title, url, {c: row.get(c, "") for c in extra_cols})
    return out


def _resolve_manifest_file(name: str, images_abs: Path, manifest_dir: Path) -> str | None:
    candidates = [images_abs / name]
    if manifest_dir != images_abs:
        candidates.append(manifest_dir / name)
    inside = []
    for c in candidates:
        rel = os.path.relpath(os.path.normpath(c), images_abs)
        if rel == os.curdir or rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
            continue
        inside.append(rel)
        if os.path.lexists(os.path.join(images_abs, rel)):
            return _rel_key(rel)
    return _rel_key(inside[0]) if inside else None


# --- walking ----------------------------------------------------------------------------------------

def _walk(images_dir: Path, exclude: list[Path], report: IngestReport) -> list[str]:
    """Relative paths of every non-directory entry under images_dir, sorted; problems are reported."""
    files: list[str] = []
    excluded = {os.path.normcase(os.path.abspath(p)) for p in exclude}

    def onerror(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, images_dir) if exc.filename else "?"
        report.read += 1
        report.skip(_rel_key(rel), "unreadable", f"folder could not be listed ({exc.strerror or exc})")

    for root, dirs, names in os.walk(images_dir, onerror=onerror):
        keep = []
        for d in sorted(dirs):
            full = os.path.join(root, d)
            if os.path.normcase(os.path.abspath(full)) in excluded:
                continue
            if os.path.islink(full):
                report.skip(_rel_key(os.path.relpath(full, images_dir)) + "/", "linked_folder")
                continue
            if d.startswith("."):
                report.skip(_rel_key(os.path.relpath(full, images_dir)) + "/", "hidden",
                            "folder name starts with '.', not searched")
                continue
            keep.append(d)
        dirs[:] = keep
        for n in names:
            files.append(_rel_key(os.path.relpath(os.path.join(root, n), images_dir)))
    files.sort()
    return files


def _file_detail(detail: str) -> str:
    """omokage.imageio words a format problem for an upload ("...; send JPEG, PNG, ..."); for a file on disk, say
    which formats ingest can read instead."""
    problem, sep, formats = detail.partition("; send ")
    return f"{problem}; ingest reads {formats}" if sep else detail


def _read_rgb(path: Path, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode one file to an (H, W, 3) uint8 array or raise ImageDecodeError with a reason."""
    try:
        rgb = np.asarray(read_image_file(path, max_bytes=max_bytes, max_pixels=max_pixels), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except Exception as exc:  # anything else a hostile file can provoke in a decoder
        raise ImageDecodeError("unreadable", f"image could not be decoded: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageDecodeError("unreadable", f"decoded to an unexpected shape {rgb.shape}")
    return rgb


# --- ingest -----------------------------------------------------------------------------------------

def _check_paths(images_dir: Path, out: Path, overwrite: bool) -> None:
    if not images_dir.is_dir():
        raise UserError(f"{images_dir} is not a folder; give the folder that holds your images")
    img_abs, out_abs = Path(os.path.abspath(images_dir)), Path(os.path.abspath(out))
    if out_abs == img_abs or out_abs in img_abs.parents:
        raise UserError(f"--out {out} would contain the images folder {images_dir}; choose another catalog path")
    if out.exists():
        if not overwrite:
            raise CatalogExistsError(out)
        if not (out / "catalog.json").is_file():
            raise UserError(f"{out} exists and is not an omokage catalog; so even --force does not "
                            "replace it. Choose another output folder, or empty or remove that one yourself")


def ingest_images(images_dir: str | os.PathLike, out: str | os.PathLike, manifest: str | os.PathLike | None = None,
                  detector: str | Detector = "none", image_size: int = 200, margin: float = 0.25,
                  overwrite: bool = False, progress: bool = True, dedup_threshold: int = 6,
                  *, dedup_max_rms: float | None = DEDUP_MAX_RMS, max_bytes: int = MAX_FILE_BYTES,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> IngestReport:
    """Find faces in every file under `images_dir` and write them as a catalog at `out`.

    `detector` is a spec for make_detector() or a Detector. `margin` is ignored by the `none`
    detector (the image is the face). dedup_threshold < 0 turns near-duplicate removal off;
    dedup_max_rms=None drops the thumbnail check (the hash alone decides). max_bytes and
    max_pixels are the decoding limits of omokage.imageio.

    Returns an IngestReport. When no image qualifies nothing is written (report.added == 0,
    report.out is None). An exception or KeyboardInterrupt during the run leaves no catalog.
    """
    t0 = time.perf_counter()
    images_dir, out = Path(images_dir), Path(out)
    if image_size < 8:
        raise UserError(f"--size {image_size} is too small; use 8 pixels or more (default 200)")
    if not margin >= 0:
        raise UserError(f"--margin {margin} must be 0 or more (a fraction of the face size, default 0.25)")
    _check_paths(images_dir, out, overwrite)
    det = make_detector(detector) if isinstance(detector, str) else detector
    report = IngestReport(detector=det.name, images_dir=str(images_dir))
    rows = read_manifest(manifest, images_dir, report) if manifest is not None else None
    manifest_abs = os.path.normcase(os.path.abspath(manifest)) if manifest is not None else None

    files = _walk(images_dir, [out], report)
    root_real = os.path.realpath(images_dir)
    on_disk = set(files)
    if rows is not None:
        for key in rows:
            if key not in on_disk:
                report.skip(key, "missing", "listed in the manifest but not found under IMAGES_DIR")

    whole_image = isinstance(det, WholeImageDetector)
    index = DuplicateIndex(dedup_threshold, dedup_max_rms)
    provenance = {"source": "ingest", "images_dir": os.path.abspath(images_dir),
                  "manifest": os.path.abspath(manifest) if manifest is not None else None,
                  "detector": detector if isinstance(detector, str) else det.name,
                  "margin": margin, "image_size": image_size,
                  "dedup": {"hash": "dhash64", "threshold": dedup_threshold, "thumbnail_max_rms": dedup_max_rms}}

    from tqdm import tqdm
    with ExitStack() as stack:
        writer: CatalogWriter | None = None
        bar = stack.enter_context(tqdm(files, desc="ingest", unit="img", disable=not progress, dynamic_ncols=True))
        for rel in bar:
            report.read += 1
            path = images_dir / rel
            if rows is not None:
                if manifest_abs and os.path.normcase(os.path.abspath(path)) == manifest_abs:
                    report.read -= 1  # the manifest itself, kept beside the images
                    continue
                if rel not in rows:
                    report.skip(rel, "not_in_manifest")
                    continue
            if any(part.startswith(".") for part in rel.split("/")):
                report.skip(rel, "hidden", "file name starts with '.'")
                continue
            if _outside_link(path, root_real):
                report.skip(rel, "linked_outside", f"symbolic link to {shown_name(os.readlink(path))}, which is "
                                                   "outside IMAGES_DIR; not followed")
                continue
            try:
                rgb = _read_rgb(path, max_bytes, max_pixels)
            except ImageDecodeError as exc:
                report.skip(rel, exc.reason, _file_detail(exc.detail))   # the file is named in its own column
                continue
            found = det.detect(rgb)
            if found is None:
                report.skip(rel, "no_face", f"{det.name} found no face")
                continue
            report.faces_found += 1
            report.padded_retry += int(found.padded_retry)
            crop = crop_face(rgb, found.box, margin, image_size, add_margin=not whole_image)
            h = dhash(crop)
            thumb = thumbnail(crop) if dedup_max_rms is not None else None
            first = index.find(h, thumb)
            if first is not None:
                report.skip(rel, "duplicate", f"near-duplicate of {first}")
                continue
            index.add(h, shown_name(rel), thumb)
            row = rows.get(rel) if rows is not None else None
            title = (row.title if row and row.title else shown_name(Path(rel).stem))
            url = (row.url if row and row.url else Path(os.path.abspath(path)).as_uri())
            if writer is None:  # created on the first face, so a run that finds none writes nothing
                writer = stack.enter_context(CatalogWriter(out, image_size=image_size,
                                                           provenance=provenance, overwrite=overwrite))
            writer.add(crop, title, url, source=rel,
                       attributes={"detector": det.name, "box": [int(v) for v in found.box],
                                   "source_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                                   "padded_retry": bool(found.padded_retry)},
                       extra=dict(row.extra) if row else {})
            report.added += 1
            if max(found.box[2], found.box[3]) * (1.0 if whole_image else 1.0 + 2.0 * margin) * 4 < image_size:
                report.enlarged.append(shown_name(rel))
            if progress:
                bar.set_postfix(added=report.added, refresh=False)
        report.seconds = time.perf_counter() - t0
        if writer is not None:
            writer.provenance["ingest"] = {k: v for k, v in report.to_dict().items()
                                           if k not in ("skipped", "out", "images_dir")}
            writer.commit()
            report.out = str(out)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["CASCADE_SETTINGS", "CascadeDetector", "Detection", "Detector", "DuplicateIndex", "IngestReport",
           "WholeImageDetector", "crop_face", "dhash", "ingest_images", "make_detector", "read_manifest", "thumbnail"]
