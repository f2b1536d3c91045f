"""The catalog on disk: pixels, streamable thumbnails and item metadata.

Layout of a catalog directory (documented in docs/catalog-format.md)::

    catalog.json     format version, item count, image size, provenance
    pixels.npy       (N, H, W, 3) uint8, opened with np.load(mmap_mode="r")
    items.sqlite     tables `items` (metadata) and `textures` (encoded thumbnails by content hash)

A catalog is written into a sibling temporary directory and renamed into place only when
complete, so an interrupted generate or ingest never leaves a half-written catalog.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from omokage.errors import UserError

FORMAT_VERSION = 1
DEFAULT_IMAGE_SIZE = 200

_SCHEMA = """
CREATE TABLE items (
    id          INTEGER PRIMARY KEY,   -- row index into pixels.npy, 0..N-1
    title       TEXT NOT NULL,
    url         TEXT NOT NULL,
    texture     TEXT NOT NULL REFERENCES textures(hash),
    source      TEXT,                  -- original file (ingest; a BLOB of its bytes when not UTF-8) or generator seed
    attributes  TEXT NOT NULL,         -- JSON object: generating attributes / labels
    extra       TEXT NOT NULL          -- JSON object: manifest columns beyond file/title/url
);
CREATE TABLE textures (
    hash    TEXT PRIMARY KEY,          -- sha256 hex of data
    format  TEXT NOT NULL,             -- 'jpeg' or 'png'
    width   INTEGER NOT NULL,
    height  INTEGER NOT NULL,
    data    BLOB NOT NULL
);
"""


class CatalogError(UserError):
    """A catalog directory is missing, incomplete or of another format version."""


class CatalogExistsError(CatalogError):
    """The catalog path is taken and replacing it was not asked for. The message names the Python API's remedy
    (overwrite=True); the CLI catches this and names its --force instead."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        super().__init__(f"{path} already exists; pass overwrite=True to replace it")


@dataclass(frozen=True)
class Item:
    id: int
    title: str
    url: str
    texture: str
    source: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Texture:
    hash: str
    format: str
    width: int
    height: int
    data: bytes


def encode_texture(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> Texture:
    """Encode an RGB uint8 image as JPEG or PNG, addressed by the SHA-256 of its bytes."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"texture format must be 'jpeg' or 'png', not {fmt!r}")
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    return Texture(hashlib.sha256(data).hexdigest(), fmt, img.width, img.height, data)


class CatalogWriter:
    """Builds a catalog in a temporary directory; `commit()` moves it into place atomically.

    Use as a context manager: leaving the block with an exception (KeyboardInterrupt included)
    removes the temporary directory and leaves any existing catalog at `path` untouched.
    """

    def __init__(self, path: str | os.PathLike, image_size: int = DEFAULT_IMAGE_SIZE,
                 texture_format: str = "jpeg", provenance: dict[str, Any] | None = None,
                 overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise CatalogExistsError(self.path)
        self.image_size = image_size
        self.texture_format = texture_format
        self.provenance = dict(provenance or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
        self._raw = open(self._tmp / "pixels.raw", "wb")
        self._db = sqlite3.connect(self._tmp / "items.sqlite")
        self._db.executescript(_SCHEMA)
        self._count = 0
        self._done = False

    def __len__(self) -> int:
        return self._count

    def add(self, rgb: np.ndarray, title: str, url: str, *, source: str | None = None,
            attributes: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> int:
        s = self.image_size
        if rgb.shape != (s, s, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a ({s}, {s}, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        tex = encode_texture(rgb, self.texture_format)
        item_id = self._count
        title, url = _utf8_text(title), _utf8_text(url)  # sent to clients: must be valid UTF-8
        stored_source: str | bytes | None = source
        if source is not None and not _is_utf8(source):
            stored_source = source.encode("utf-8", "surrogateescape")  # a file name as given, byte for byte
        self._raw.write(np.ascontiguousarray(rgb).tobytes())
        self._db.execute("INSERT OR IGNORE INTO textures VALUES (?,?,?,?,?)",
                         (tex.hash, tex.format, tex.width, tex.height, tex.data))
        self._db.execute("INSERT INTO items VALUES (?,?,?,?,?,?,?)",
                         (item_id, title, url, tex.hash, stored_source,
                          json.dumps(attributes or {}, sort_keys=True), json.dumps(extra or {}, sort_keys=True)))
        self._count += 1
        return item_id

    def commit(self) -> Path:
        if self._count == 0:
            raise CatalogError("refusing to write an empty catalog: no image was added")
        self._raw.close()
        s = self.image_size
        raw = np.memmap(self._tmp / "pixels.raw", dtype=np.uint8, mode="r", shape=(self._count, s, s, 3))
        out = np.lib.format.open_memmap(self._tmp / "pixels.npy", mode="w+", dtype=np.uint8,
                                        shape=(self._count, s, s, 3))
        for start in range(0, self._count, 1024):  # chunked: catalogs may exceed memory
            out[start:start + 1024] = raw[start:start + 1024]
        out.flush()
        del out, raw
        os.remove(self._tmp / "pixels.raw")
        self._db.commit()
        self._db.close()
        meta = {"format": "omokage-catalog", "format_version": FORMAT_VERSION, "count": self._count,
                "image_size": [s, s], "texture_format": self.texture_format, **self.provenance}
        (self._tmp / "catalog.json").write_text(json.dumps(meta, indent=2) + "\n")
        # Swap into place: the old catalog (if any) is removed only after the new one is complete.
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self._tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.path

    def abort(self) -> None:
        if self._done:
            return
        try:
            self._raw.close()
            self._db.close()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._done = True

    def __enter__(self) -> "CatalogWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.commit()


class Catalog:
    """Read-only view of a catalog directory. Pixels are memory-mapped, metadata held in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "catalog.json"
        if self.path.name == "catalog.json" and self.path.is_file():
            raise CatalogError(f"{self.path}: give the catalog's folder, {self.path.parent}, not its catalog.json")
        if not meta_path.is_file():
            raise CatalogError(f"{self.path} is not an omokage catalog (no catalog.json); "
                               "create one with `omokage catalog generate` or `omokage catalog ingest`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise CatalogError(f"{self.path}: catalog format {self.meta.get('format_version')}, "
                               f"this omokage reads format {FORMAT_VERSION}; regenerate or re-ingest it")
        self.pixels: np.ndarray = np.load(self.path / "pixels.npy", mmap_mode="r")
        with sqlite3.connect(f"file:{self.path / 'items.sqlite'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT id, title, url, texture, source, attributes, extra FROM items ORDER BY id").fetchall()
        self.items: list[Item] = [Item(r[0], r[1], r[2], r[3], _source_text(r[4]), json.loads(r[5]), json.loads(r[6]))
                                  for r in rows]
        if len(self.items) != len(self.pixels):
            raise CatalogError(f"{self.path}: {len(self.items)} items but {len(self.pixels)} images; the catalog is damaged")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[1])

    def fingerprint(self) -> str:
        """Identifies the catalog's content (its items' thumbnails in order): models record it at fit time, event logs
        name it. Computed once (a read-only view: its items do not change)."""
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256()
            for item in self.items:
                h.update(item.texture.encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def textures(self) -> dict[str, Texture]:
        """All encoded thumbnails by content hash (a few MB for thousands of items)."""
        with sqlite3.connect(f"file:{self.path / 'items.sqlite'}?mode=ro", uri=True) as db:
            return {r[0]: Texture(*r) for r in db.execute("SELECT hash, format, width, height, data FROM textures")}

    def matrix(self, indices=None, dtype=np.float32) -> np.ndarray:
        """Pixels as an (n, H*W*3) matrix scaled to [0, 1]: the input of every feature model."""
        px = self.pixels if indices is None else self.pixels[indices]
        return images_to_matrix(px, dtype)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # lone surrogates: bytes of a file name that is not UTF-8
        return False


def _utf8_text(text: str) -> str:
    """Text that encodes as UTF-8: a file name's undecodable bytes shown as \\xNN escapes."""
    return text if _is_utf8(text) else text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _source_text(value: str | bytes | None) -> str | None:
    """An item's source as Python names files: a BLOB (a non-UTF-8 file name) back to the str os.walk gave."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def images_to_matrix(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(n, H, W, 3) uint8 → (n, H*W*3) floats in [0, 1]."""
    images = np.asarray(images)
    out = np.empty((images.shape[0], int(np.prod(images.shape[1:]))), dtype=dtype)
    for start in range(0, len(images), 256):  # chunked to bound the temporary copies
        out[start:start + 256] = images[start:start + 256].reshape(-1, out.shape[1])
    out *= dtype(1.0 / 255.0)
    return out


def matrix_to_images(matrix: np.ndarray, size: int) -> np.ndarray:
    """(n, H*W*3) floats in [0, 1] → (n, H, W, 3) uint8, clipped."""
    m = np.clip(np.asarray(matrix, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5
    return m.astype(np.uint8).reshape(-1, size, size, 3)
