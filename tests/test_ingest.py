"""`omokage catalog ingest`: real files on disk, real decoders, real OpenCV cascades."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from omokage.catalog import ingest as ingest_mod
from omokage.catalog.ingest import (CascadeDetector, IngestReport, WholeImageDetector, crop_face, dhash,
                                    ingest_images, make_detector)
from omokage.catalog.store import Catalog, CatalogError
from omokage.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ANIME_CASCADE = SHARED / "cascades" / "lbpcascade_animeface.xml"


# --- fixtures: generated images -------------------------------------------------------------------

def face_like(seed: int, size: int = 96) -> Image.Image:
    """A distinct, structured picture per seed (blobs on a gradient): far apart in dHash."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(-1, 1, 2)
    base = (np.clip(0.5 + 0.5 * (a * xx + b * yy), 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(np.stack([base, base[::-1], base.T], axis=-1), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        draw.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def png_bomb_bytes(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header declares width x height RGB pixels (nothing that large is allocated)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def partials(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def skipped_by_file(report: IngestReport) -> dict[str, str]:
    return dict(report.skipped)


# --- bad files ------------------------------------------------------------------------------------

def test_every_kind_of_bad_file_is_skipped_with_its_reason(tmp_path):
    src = tmp_path / "imgs"
    good = [save(face_like(i), src / f"good{i}.png") for i in range(3)]
    save(face_like(10), src / "sub" / "deeper" / "good3.jpg", quality=92)
    (src / "text.jpg").write_text("this is not a JPEG, only named like one\n")
    (src / "truncated.jpg").write_bytes((lambda b: b[: len(b) // 2])(jpeg_bytes(face_like(20, 160))))
    (src / "random.png").write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (src / "empty.jpg").write_bytes(b"")
    (src / "bomb.png").write_bytes(png_bomb_bytes())
    noise = Image.fromarray(np.random.default_rng(4).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    big = save(noise, src / "big.png")
    (src / "dangling.png").symlink_to(src / "no-such-target.png")
    if hasattr(os, "mkfifo"):
        os.mkfifo(src / "pipe.jpg")  # reading it would block forever: must be refused, not opened
    locked = src / "locked"
    save(face_like(30), locked / "inside.png")
    os.chmod(locked, 0)
    try:
        report = ingest_images(src, tmp_path / "cat", detector="none", image_size=32, progress=False,
                               max_bytes=big.stat().st_size - 1)
    finally:
        os.chmod(locked, 0o755)

    why = skipped_by_file(report)
    assert why["text.jpg"].startswith("not_image:")
    assert why["truncated.jpg"].startswith("truncated:")
    assert why["random.png"].startswith("not_image:")
    assert why["empty.jpg"].startswith("not_image:") and "empty" in why["empty.jpg"]
    assert why["bomb.png"].startswith("bomb:")
    assert why["big.png"].startswith("too_large:")
    assert why["dangling.png"].startswith("unreadable:")
    if hasattr(os, "mkfifo"):
        assert why["pipe.jpg"].startswith("not_regular:")
    if os.geteuid() != 0:  # root reads through chmod 0, so only an ordinary user sees this one
        assert why["locked"].startswith("unreadable:") and "folder" in why["locked"]
    # The good images all went in, and the run completed with a catalog.
    assert report.added == 4 + (os.geteuid() == 0)
    assert report.faces_found == report.added and report.duplicate == 0 and report.no_face == 0
    bad = len(why)
    assert report.unreadable == bad
    assert sum(report.per_reason.values()) == bad
    cat = Catalog(tmp_path / "cat")
    assert len(cat) == report.added
    assert {it.source for it in cat} >= {p.name for p in good} | {"sub/deeper/good3.jpg"}
    assert cat.pixels.shape[1:] == (32, 32, 3)
    text = report.summary()
    for word in ("read", "faces found", "no face", "duplicate", "unreadable", "added", "bomb", "truncated.jpg"):
        assert word in text


def test_nothing_added_writes_no_catalog(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "notes.txt").write_text("hello")
    (src / "cut.jpg").write_bytes(jpeg_bytes(face_like(1))[:200])
    out = tmp_path / "nested" / "cat"
    report = ingest_images(src, out, progress=False)
    assert report.added == 0 and report.read == 2 and report.unreadable == 2
    assert report.out is None
    assert not out.exists() and not (tmp_path / "nested").exists()
    assert "no catalog written" in report.summary()


def test_tiny_images_are_added_but_reported_as_enlarged(tmp_path):
    """A 10x10 image was upscaled to 200 px without a word (from a newcomer run): it is kept (a small face is still
    a face) and named in the summary, so the catalog's owner can replace it."""
    src = tmp_path / "imgs"
    save(face_like(1, size=10), src / "tiny.png")
    save(face_like(2, size=160), src / "fine.png")
    report = ingest_images(src, tmp_path / "cat", progress=False)
    assert report.added == 2 and report.enlarged == ["tiny.png"], report.enlarged
    line = next(ln for ln in report.summary().splitlines() if "enlarged over 4x" in ln)
    assert "tiny.png" in line and "fine.png" not in line and "blurry" in line, line
    assert report.to_dict()["enlarged"] == ["tiny.png"]


def test_no_face_is_skipped_and_reported(tmp_path):
    src = tmp_path / "imgs"
    save(Image.new("RGB", (120, 120), (200, 180, 160)), src / "blank.png")
    report = ingest_images(src, tmp_path / "cat", detector="haar-frontal", progress=False)
    assert report.no_face == 1 and report.added == 0
    assert skipped_by_file(report)["blank.png"].startswith("no_face:")
    assert not (tmp_path / "cat").exists()


# --- near-duplicates ------------------------------------------------------------------------------

def test_near_duplicates_are_removed_and_different_images_kept(tmp_path):
    src = tmp_path / "imgs"
    original = face_like(7, 160)
    save(original, src / "a_original.png")
    save(original, src / "b_requality.jpg", quality=55)
    save(original.resize((148, 148), Image.Resampling.BILINEAR), src / "c_resized.png")
    for i in range(6):
        save(face_like(100 + i, 160), src / f"d_other{i}.png")
    report = ingest_images(src, tmp_path / "cat", progress=False)
    why = skipped_by_file(report)
    assert report.duplicate == 2
    assert why["b_requality.jpg"] == "duplicate: near-duplicate of a_original.png"
    assert why["c_resized.png"] == "duplicate: near-duplicate of a_original.png"
    assert report.added == 7
    assert [it.source for it in Catalog(tmp_path / "cat")][:2] == ["a_original.png", "d_other0.png"]

    # The hash alone (no thumbnail check) finds the same two copies.
    hash_only = ingest_images(src, tmp_path / "cat_h", progress=False, dedup_max_rms=None)
    assert hash_only.duplicate == 2 and skipped_by_file(hash_only) == why

    # With the threshold below zero nothing counts as a duplicate: the hashes really decide it.
    again = ingest_images(src, tmp_path / "cat2", progress=False, dedup_threshold=-1)
    assert again.duplicate == 0 and again.added == 9


def test_same_shape_different_colours_is_not_a_duplicate(tmp_path):
    # Two faces with the same luminance (so the same dHash) but different colours, like one
    # drawing with the hair recoloured: the hash alone would merge them, the thumbnail check does not.
    lum = np.asarray(face_like(5, 128).convert("L"), dtype=np.float32) * 0.5 + 60
    grey = np.stack([lum, lum, lum], -1)
    tinted = np.stack([lum + 50, lum - 50 * 0.299 / 0.587, lum], -1)
    src = tmp_path / "imgs"
    for name, arr in (("a_grey.png", grey), ("b_tinted.png", tinted)):
        save(Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)), src / name)
    a, b = (np.asarray(Image.open(src / n)) for n in ("a_grey.png", "b_tinted.png"))
    assert bin(dhash(a) ^ dhash(b)).count("1") <= 2
    assert ingest_images(src, tmp_path / "c1", progress=False).added == 2
    hash_only = ingest_images(src, tmp_path / "c2", progress=False, dedup_max_rms=None)
    assert hash_only.added == 1 and hash_only.duplicate == 1


def test_dhash_is_close_for_copies_and_far_for_different_images():
    a = np.asarray(face_like(1, 128))
    b = np.asarray(Image.open(io.BytesIO(jpeg_bytes(face_like(1, 128), quality=40))).convert("RGB"))
    c = np.asarray(face_like(2, 128))
    ham = lambda x, y: bin(dhash(x) ^ dhash(y)).count("1")  # noqa: E731
    assert 0 <= dhash(a) < 2 ** 64
    assert ham(a, b) <= 6
    assert ham(a, c) > 12
    assert ham(a, a[:, ::-1]) > 12  # a mirrored face is another picture


# --- manifest -------------------------------------------------------------------------------------

def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_manifest_columns_are_carried_into_the_catalog(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "one.png")
    save(face_like(2), src / "chars" / "two.jpg")
    save(face_like(3), src / "unlisted.png")
    manifest = write_csv(tmp_path / "m.csv", [
        ["file", "title", "url", "label", "price"],
        ["chars/two.jpg", "Two", "https://shop.example/two", "bae", "1200"],
        ["one.png", "One, the first", "https://shop.example/one", "ame", ""],
        ["gone.png", "Gone", "https://shop.example/gone", "x", "1"],
    ])
    report = ingest_images(src, tmp_path / "cat", manifest=manifest, progress=False)
    assert report.added == 2 and report.missing == 1
    why = skipped_by_file(report)
    assert why["gone.png"].startswith("missing:")
    assert why["unlisted.png"].startswith("not_in_manifest:")
    cat = Catalog(tmp_path / "cat")
    items = {it.source: it for it in cat}
    one, two = items["one.png"], items["chars/two.jpg"]
    assert (one.title, one.url, one.extra) == ("One, the first", "https://shop.example/one", {"label": "ame", "price": ""})
    assert (two.title, two.url, two.extra) == ("Two", "https://shop.example/two", {"label": "bae", "price": "1200"})
    assert two.attributes == {"detector": "none", "box": [0, 0, 96, 96], "source_size": [96, 96],
                              "padded_retry": False}
    assert [it.source for it in cat] == ["chars/two.jpg", "one.png"]  # walk order: sorted paths
    meta = json.loads((tmp_path / "cat" / "catalog.json").read_text())
    assert meta["source"] == "ingest" and meta["ingest"]["added"] == 2 and meta["detector"] == "none"


def test_manifest_beside_an_images_folder_and_without_title_or_url(tmp_path):
    # The layout of a labels.csv next to images/: paths relative to the manifest's folder are accepted.
    root = tmp_path / "dataset"
    save(face_like(1), root / "images" / "ame" / "x.jpg")
    save(face_like(2), root / "images" / "bae" / "y.jpg")
    manifest = write_csv(root / "labels.csv", [["file", "label", "split"],
                                               ["images/ame/x.jpg", "ame", "train"],
                                               ["images/bae/y.jpg", "bae", "test"]])
    report = ingest_images(root / "images", tmp_path / "cat", manifest=manifest, progress=False)
    assert report.added == 2 and report.missing == 0 and not report.skipped
    items = {it.source: it for it in Catalog(tmp_path / "cat")}
    x = items["ame/x.jpg"]
    assert x.title == "x" and x.url == (root / "images" / "ame" / "x.jpg").absolute().as_uri()
    assert x.extra == {"label": "ame", "split": "train"}


def test_without_manifest_title_is_stem_and_url_a_file_uri(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "Alice smile.png")
    ingest_images(src, tmp_path / "cat", progress=False)
    (item,) = Catalog(tmp_path / "cat").items
    assert item.title == "Alice smile"
    assert item.url.startswith("file://") and item.url.endswith("/imgs/Alice%20smile.png")
    assert item.extra == {}


def test_manifest_without_file_column_is_a_user_error(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "a.png")
    manifest = write_csv(tmp_path / "m.csv", [["name", "title"], ["a.png", "A"]])
    with pytest.raises(UserError, match="no 'file' column"):
        ingest_images(src, tmp_path / "cat", manifest=manifest, progress=False)
    with pytest.raises(UserError, match="not found"):
        ingest_images(src, tmp_path / "cat", manifest=tmp_path / "nope.csv", progress=False)


# --- atomicity ------------------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_ingest_leaves_no_catalog(tmp_path, monkeypatch, exc):
    src = tmp_path / "imgs"
    for i in range(8):
        save(face_like(i), src / f"f{i}.png")
    calls = []
    real = WholeImageDetector.detect

    def detect(self, rgb):
        calls.append(1)
        if len(calls) == 5:
            raise exc("stop")
        return real(self, rgb)

    monkeypatch.setattr(WholeImageDetector, "detect", detect)
    out = tmp_path / "cats" / "cat"
    with pytest.raises(exc):
        ingest_images(src, out, progress=False)
    assert len(calls) == 5
    assert not out.exists()
    assert partials(out.parent) == []


def test_interrupt_with_force_keeps_the_old_catalog(tmp_path, monkeypatch):
    src = tmp_path / "imgs"
    for i in range(6):
        save(face_like(i), src / f"f{i}.png")
    out = tmp_path / "cat"
    assert ingest_images(src, out, progress=False).added == 6
    before = (out / "pixels.npy").read_bytes()
    for i in range(6, 9):
        save(face_like(i), src / f"f{i}.png")

    n = [0]
    real = WholeImageDetector.detect

    def boom(self, rgb):
        n[0] += 1
        if n[0] == 7:
            raise KeyboardInterrupt
        return real(self, rgb)

    monkeypatch.setattr(WholeImageDetector, "detect", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest_images(src, out, progress=False, overwrite=True)
    assert (out / "pixels.npy").read_bytes() == before and len(Catalog(out)) == 6
    assert partials(tmp_path) == []


def test_existing_catalog_needs_force_and_non_catalogs_are_never_replaced(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "a.png")
    out = tmp_path / "cat"
    ingest_images(src, out, progress=False)
    with pytest.raises(CatalogError, match="already exists"):
        ingest_images(src, out, progress=False)
    save(face_like(2), src / "b.png")
    assert ingest_images(src, out, progress=False, overwrite=True).added == 2
    assert len(Catalog(out)) == 2
    precious = tmp_path / "precious"
    (precious / "keep.txt").parent.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not an omokage catalog"):
        ingest_images(src, precious, progress=False, overwrite=True)
    assert (precious / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="would contain the images folder"):
        ingest_images(src, tmp_path, progress=False, overwrite=True)


def test_catalog_inside_images_dir_and_hidden_folders_are_not_ingested(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "a.png")
    save(face_like(2), src / ".thumbs" / "a_thumb.png")
    out = src / "catalog"
    r1 = ingest_images(src, out, progress=False)
    r2 = ingest_images(src, out, progress=False, overwrite=True)
    assert r1.added == r2.added == 1 and r2.read == 1
    assert skipped_by_file(r2)[".thumbs/"].startswith("hidden:")
    (src / "elsewhere").symlink_to(tmp_path / "other", target_is_directory=True)
    save(face_like(3), tmp_path / "other" / "b.png")
    r3 = ingest_images(src, out, progress=False, overwrite=True)
    assert r3.added == 1 and skipped_by_file(r3)["elsewhere/"].startswith("linked_folder:")


def test_ingest_is_deterministic(tmp_path):
    src = tmp_path / "imgs"
    for i in range(5):
        save(face_like(i, 80 + 10 * i), src / f"{i}" / "f.png")
    ingest_images(src, tmp_path / "c1", progress=False, image_size=40)
    ingest_images(src, tmp_path / "c2", progress=False, image_size=40)
    c1, c2 = Catalog(tmp_path / "c1"), Catalog(tmp_path / "c2")
    assert np.array_equal(c1.pixels, c2.pixels) and c1.items == c2.items


# --- detectors and cropping -----------------------------------------------------------------------

def test_make_detector_specs(tmp_path):
    assert make_detector("none").name == "none"
    haar = make_detector("haar-frontal")
    assert isinstance(haar, CascadeDetector) and haar.name == "haar-frontal"
    with pytest.raises(UserError, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(UserError, match="not found"):
        make_detector(f"cascade:{tmp_path / 'missing.xml'}")
    with pytest.raises(UserError, match="needs a path"):
        make_detector("cascade:")
    junk = tmp_path / "junk.xml"
    junk.write_text("<opencv_storage><nothing/></opencv_storage>\n")
    with pytest.raises(UserError, match="did not load"):
        make_detector(f"cascade:{junk}")


def test_cli_reports_a_bad_detector_as_a_user_error(tmp_path):
    src = tmp_path / "imgs"
    save(face_like(1), src / "a.png")
    r = subprocess.run([sys.executable, "-m", "omokage", "catalog", "ingest", str(src), "--out", str(tmp_path / "c"),
                        "--detector", f"cascade:{tmp_path / 'missing.xml'}"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.xml" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists()


def test_crop_pads_with_the_edge_colour_instead_of_shrinking_the_box():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :50] = (255, 0, 0)
    img[:, 50:] = (0, 0, 255)
    img[40:60, 0:20] = (0, 255, 0)  # the "face", touching the left border
    crop = crop_face(img, (0, 40, 20, 20), margin=0.5, size=40)
    # The square is 40 source pixels centred on the face (x -10..30, y 30..70): no resize is needed,
    # the 10 columns left of the image repeat its edge, and the face keeps its size and stays centred.
    assert crop.shape == (40, 40, 3)
    green = (crop == (0, 255, 0)).all(axis=2)
    assert np.flatnonzero(green[:, 15]).tolist() == list(range(10, 30))
    assert green[20, :30].all() and not green[20, 30:].any()  # edge colour of the face's rows
    assert (crop[0] == (255, 0, 0)).all() and (crop[39] == (255, 0, 0)).all()
    assert crop_face(img, (0, 40, 20, 20), margin=0.25, size=24).shape == (24, 24, 3)
    # Past the bottom-right corner as well: still a full square.
    assert crop_face(img, (90, 90, 10, 10), margin=1.0, size=16).shape == (16, 16, 3)


def test_cascade_padded_retry_maps_the_box_back_to_source_pixels(monkeypatch):
    """The box found on the scaled, padded copy is mapped back to source pixels and clipped."""
    det = make_detector("haar-frontal")
    seen = []

    def fake(grey):
        seen.append(grey.shape)
        return None if len(seen) == 1 else (0.0, 16.0, 32.0, 32.0)

    monkeypatch.setattr(det, "_largest", fake)
    got = det.detect(np.zeros((80, 100, 3), np.uint8))
    # 100x80 → 64x51 (scale 0.64), plus a 16-pixel border: 96x83. (0,16,32,32) there is
    # (-16,0,32,32) in the 64x51 copy, (-25,0,50,50) in the source, clipped to (0,0,25,50).
    assert seen == [(80, 100), (83, 96)]
    assert got is not None and got.padded_retry and got.box == (0, 0, 25, 50)
    no_retry = make_detector("haar-frontal", pad_retry=False)
    monkeypatch.setattr(no_retry, "_largest", fake)
    seen.clear()
    assert no_retry.detect(np.zeros((80, 100, 3), np.uint8)) is None and seen == [(80, 100)]
    # A face found wholly in the border is no face of the image.
    monkeypatch.setattr(det, "_largest", lambda grey: None if grey.shape == (80, 100) else (0.0, 0.0, 10.0, 10.0))
    assert det.detect(np.zeros((80, 100, 3), np.uint8)) is None


def test_cascade_keeps_the_largest_face():
    det = make_detector("haar-frontal")

    class Fake:
        def detectMultiScale(self, grey, **kw):
            assert kw == {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (24, 24)}
            return np.array([[10, 10, 30, 30], [50, 40, 60, 60], [0, 0, 40, 40]])

    det._cascade = Fake()
    got = det.detect(np.zeros((120, 120, 3), np.uint8))
    assert got == ingest_mod.Detection((50, 40, 60, 60), padded_retry=False)


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_ingest_with_detector_none(tmp_path):
    src = tmp_path / "gen"
    for i in range(5):
        save(face_like(i, 70), src / f"face{i}.png")
    (src / "README.txt").write_text("generated faces")
    out = tmp_path / "catalog"
    r = subprocess.run([sys.executable, "-m", "omokage", "catalog", "ingest", str(src), "--out", str(out),
                        "--size", "48"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "added" in r.stdout and "README.txt: not_image" in r.stdout
    cat = Catalog(out)
    assert len(cat) == 5 and cat.image_size == 48
    assert [it.title for it in cat] == [f"face{i}" for i in range(5)]

    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, "-m", "omokage", "catalog", "ingest", str(empty), "--out",
                        str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and not (tmp_path / "none").exists()


def test_report_summary_and_dict():
    rep = IngestReport(detector="none", images_dir="x")
    rep.read = 30
    for i in range(25):
        rep.skip(f"f{i:02d}.jpg", "not_image")
    text = rep.summary()
    assert "20 of 25 shown" in text and "f19.jpg" in text and "f20.jpg" not in text
    # A rare reason after many common ones still gets shown.
    for i in range(25, 60):
        rep.skip(f"f{i:02d}.jpg", "no_face", "cascade found no face")
    rep.skip("last.jpg", "truncated", "image data is truncated")
    text = rep.summary()
    assert "20 of 61 shown" in text and "last.jpg: truncated: image data is truncated" in text
    assert "f00.jpg: not_image" in text and "f25.jpg: no_face" in text
    assert sum(1 for line in text.splitlines() if line.startswith("  f") and ".jpg: " in line) == 19
    d = rep.to_dict()
    assert d["unreadable"] == 26 and d["no_face"] == 35 and len(d["skipped"]) == 61
    assert d["per_reason"] == {"not_image": 25, "no_face": 35, "truncated": 1}
    json.dumps(d)


# --- real data (../shared/data) ---------------------------------------------------------------------

def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/data/{path.relative_to(SHARED).as_posix()} not present: "
                    f"real-image detector checks need the shared data set beside the repository ({path})")
    return path


@pytest.mark.shared_data
def test_haar_frontal_finds_faces_in_real_photos(tmp_path):
    person = need(SHARED / "faces94-female" / "images" / "anpage")
    files = sorted(person.iterdir())[:6]
    det = make_detector("haar-frontal")
    found = [det.detect(np.asarray(Image.open(f).convert("RGB"))) for f in files]
    assert sum(f is not None for f in found) >= 5
    for f in found:
        if f is not None:  # a head-and-shoulders shot: the face is big and inside the frame
            x, y, w, h = f.box
            assert 40 <= w <= 180 and x >= 0 and y >= 0
    report = ingest_images(person, tmp_path / "cat", detector="haar-frontal", progress=False, image_size=64)
    assert report.faces_found >= report.read - 2 and report.added >= 1


@pytest.mark.shared_data
def test_anime_cascade_finds_faces_in_real_anime_crops_and_padding_helps(tmp_path):
    cascade = need(ANIME_CASCADE)
    folder = need(SHARED / "anime-holoen20" / "images" / "ame")
    files = sorted(folder.iterdir())[:24]
    rgbs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    plain = make_detector(f"cascade:{cascade}", pad_retry=False)
    padded = make_detector(f"cascade:{cascade}")
    n_plain = sum(plain.detect(x) is not None for x in rgbs)
    got = [padded.detect(x) for x in rgbs]
    n_padded = sum(g is not None for g in got)
    assert n_padded >= 6 and n_padded > n_plain  # tight crops: the padded retry finds what the plain pass misses
    assert any(g.padded_retry for g in got if g is not None)

    small = need(SHARED / "getchu-faces64" / "images")
    sample = tmp_path / "getchu"
    sample.mkdir()
    for f in sorted(small.iterdir())[:20]:
        (sample / f.name).write_bytes(f.read_bytes())  # copies in tmp: links out of IMAGES_DIR are not followed
    report = ingest_images(sample, tmp_path / "cat", detector=f"cascade:{cascade}", progress=False, image_size=64)
    assert report.faces_found >= 17
    item = Catalog(tmp_path / "cat").items[0]
    assert item.attributes["detector"] == "cascade:lbpcascade_animeface.xml"
    assert item.attributes["source_size"] == [64, 64] and len(item.attributes["box"]) == 4


# --- hostile names and links (issue 10) -------------------------------------------------------------

def test_non_utf8_file_names_are_kept_byte_for_byte_and_shown_escaped(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    latin1 = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8, Python carries them as surrogates
    save(face_like(1), src / latin1)
    save(face_like(2), src / "plain.png")
    (src / os.fsdecode(b"bad\xfe.jpg")).write_text("not an image")
    report = ingest_images(src, tmp_path / "cat", progress=False, image_size=32)
    assert report.added == 2
    why = skipped_by_file(report)
    assert why["bad\\xfe.jpg"].startswith("not_image:")  # shown escaped, not a crash
    report.summary().encode("utf-8")  # printable
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    cat = Catalog(tmp_path / "cat")
    item = next(it for it in cat if it.source != "plain.png")
    assert os.fsencode(item.source) == b"caf\xe9 \xff.png"  # stored as given
    assert item.title == "caf\\xe9 \\xff" and item.url.endswith("caf%E9%20%FF.png")
    import msgpack
    msgpack.packb({"title": item.title, "url": item.url})  # what the server sends must encode
    # the CLI prints the report without tripping over the name
    proc = subprocess.run([sys.executable, "-m", "omokage", "catalog", "ingest", str(src), "--out",
                           str(tmp_path / "cat2")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    assert "bad\\xfe.jpg" in proc.stdout and "Traceback" not in proc.stderr


def test_symlinks_leaving_the_images_folder_are_not_followed(tmp_path):
    src, outside = tmp_path / "imgs", tmp_path / "private"
    save(face_like(1), src / "real.png")
    save(face_like(2), outside / "secret.png")
    (src / "leak.png").symlink_to(outside / "secret.png")
    (src / "sub").mkdir()
    (src / "sub" / "deep-leak.png").symlink_to("../../private/secret.png")  # relative, through ..
    (src / "inside.png").symlink_to(src / "real.png")  # a link within the folder is read
    (src / "chain.png").symlink_to(src / "leak.png")  # inside, but resolves outside
    report = ingest_images(src, tmp_path / "cat", progress=False, image_size=32, dedup_threshold=-1)
    why = skipped_by_file(report)
    for name in ("leak.png", "sub/deep-leak.png", "chain.png"):
        assert why[name].startswith("linked_outside:"), why
    assert "outside IMAGES_DIR" in why["leak.png"]
    assert report.added == 2  # real.png and inside.png
    assert {it.source for it in Catalog(tmp_path / "cat")} == {"real.png", "inside.png"}
