"""The procedural anime-face catalog: determinism, distinctness, attributes, distance, catalogs and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from omokage.catalog import generate as G
from omokage.catalog.sheet import contact_sheet
from omokage.catalog.store import Catalog, CatalogError


def _faces(count, seed=0, size=64):
    return list(G.generate_faces(count, seed=seed, size=size))


def _key(attrs):
    return json.dumps(attrs, sort_keys=True)


def test_same_seed_same_faces_and_different_seed_different_faces():
    a = _faces(8, seed=3)
    b = _faces(8, seed=3)
    for (ia, aa, ta, ua), (ib, ab, tb, ub) in zip(a, b):
        assert ia.tobytes() == ib.tobytes()
        assert aa == ab and ta == tb and ua == ub
    c = _faces(8, seed=4)
    assert {_key(x[1]) for x in a}.isdisjoint({_key(x[1]) for x in c})
    assert all(x[0].tobytes() != y[0].tobytes() for x, y in zip(a, c))


def test_faces_are_distinct():
    faces = _faces(60, seed=0)
    assert len(faces) == 60
    assert len({_key(f[1]) for f in faces}) == 60
    assert len({f[0].tobytes() for f in faces}) == 60
    assert len({f[3] for f in faces}) == 60            # one product URL per item


@pytest.mark.parametrize("size", [64, 200])
def test_render_shape_dtype_and_determinism(size):
    attrs = G.sample_attributes(np.random.default_rng(11))
    img = G.render_face(attrs, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert np.array_equal(img, G.render_face(dict(attrs), size))
    assert img.std() > 20                              # a picture, not a flat colour
    # the rendering depends on the attributes: another hair colour changes the pixels
    other = dict(attrs, hair_rgb=[255 - v for v in attrs["hair_rgb"]])
    assert not np.array_equal(img, G.render_face(other, size))


def test_render_rejects_tiny_sizes():
    with pytest.raises(ValueError):
        G.render_face(G.sample_attributes(np.random.default_rng(0)), 4)


def test_attributes_are_plain_json_values():
    rng = np.random.default_rng(5)
    for _ in range(20):
        attrs = G.sample_attributes(rng)
        assert json.loads(json.dumps(attrs)) == attrs
        for name, value in attrs.items():
            if isinstance(value, list):
                assert len(value) == 3 and all(type(v) is int and 0 <= v <= 255 for v in value), name
            else:
                assert type(value) in (str, int, float), name
        # categorical names and the numeric values used are both kept
        assert attrs["hair_color"] in G.HAIR_COLORS and len(attrs["hair_rgb"]) == 3
        assert attrs["eye_color"] in G.EYE_COLORS and len(attrs["eye_rgb"]) == 3
        assert attrs["skin_tone"] in G.SKIN_TONES


def test_attribute_vocabularies_all_appear():
    rng = np.random.default_rng(0)
    sample = [G.sample_attributes(rng) for _ in range(300)]
    styles = {a["hair_style"] for a in sample}
    assert len(G.HAIR_STYLES) >= 8
    assert styles == set(G.HAIR_STYLES)
    assert {a["accessory"] for a in sample} == set(G.ACCESSORIES)
    assert len({a["hair_color"] for a in sample}) >= 12
    assert {a["eye_shape"] for a in sample} == set(G.EYE_SHAPES)
    assert {a["expression"] for a in sample} == set(G.EXPRESSIONS)
    assert {a["blush"] for a in sample} == set(G.BLUSH)
    assert {a["face_shape"] for a in sample} == set(G.FACE_SHAPES)
    assert {a["bangs"] for a in sample} == set(G.BANGS)
    assert 0.15 < sum(a["accessory"] == "none" for a in sample) / 300 < 0.4


def test_hair_styles_differ_in_pixels():
    """Same face, each hair style: every pair of styles changes the picture substantially."""
    base = G.sample_attributes(np.random.default_rng(2))
    base.update(accessory="none", bangs="choppy")
    imgs = {s: G.render_face(dict(base, hair_style=s), 64).astype(np.int16) for s in G.HAIR_STYLES}
    names = list(imgs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(imgs[a] - imgs[b]).mean() > 1.0, (a, b)


def test_attribute_distance_properties():
    rng = np.random.default_rng(7)
    sample = [G.sample_attributes(rng) for _ in range(30)]
    for a in sample[:10]:
        assert G.attribute_distance(a, a) == 0.0
        assert G.attribute_distance(a, dict(a)) == 0.0
    for a, b in zip(sample, sample[1:]):
        dab = G.attribute_distance(a, b)
        assert dab == G.attribute_distance(b, a)
        assert 0.0 < dab < 6.5
    a = sample[0]
    jitter = dict(a, hair_rgb=[min(255, v + 3) for v in a["hair_rgb"]], face_width=a["face_width"] + 0.2)
    other_style = next(s for s in G.HAIR_STYLES if G.HAIR_STYLES[s][1] != G.HAIR_STYLES[a["hair_style"]][1])
    far_rgb = [255 - v for v in a["hair_rgb"]]
    different = dict(a, hair_style=other_style, hair_rgb=far_rgb)
    assert 0.0 < G.attribute_distance(a, jitter) < 0.1
    assert G.attribute_distance(a, different) > 1.0 + G.attribute_distance(a, jitter)
    # a style from the same silhouette group is nearer than one from another group
    same_group = next(s for s in G.HAIR_STYLES
                      if s != a["hair_style"] and G.HAIR_STYLES[s][1] == G.HAIR_STYLES[a["hair_style"]][1])
    d_same = G.attribute_distance(a, dict(a, hair_style=same_group))
    assert d_same < G.attribute_distance(a, dict(a, hair_style=other_style))


def test_perturbed_render_is_near_its_face():
    faces = _faces(12, seed=9)
    rng = np.random.default_rng(0)
    closer = 0
    for i, (img, attrs, _, _) in enumerate(faces):
        q = G.perturbed_render(attrs, rng, 64)
        assert q.shape == img.shape and q.dtype == np.uint8
        d_self = np.abs(q.astype(np.int16) - img).mean()
        d_other = np.abs(faces[(i + 5) % len(faces)][0].astype(np.int16) - img).mean()
        assert d_self > 0.5                                # not the same picture
        closer += d_self < d_other
    assert closer >= 10
    # deterministic for the rng state
    attrs = faces[0][1]
    assert np.array_equal(G.perturbed_render(attrs, np.random.default_rng(3), 64),
                          G.perturbed_render(attrs, np.random.default_rng(3), 64))


def test_titles_and_urls():
    attrs = G.sample_attributes(np.random.default_rng(1))
    title = G.make_title(attrs, 7)
    name, desc = title.split(" \u2014 ")
    assert name and name[0].isupper()
    assert G._STYLE_LABELS[attrs["hair_style"]] in desc
    assert G.make_title(attrs, 7) == title
    assert G.product_url(42, 3) == "https://avatars.example/items/3-00042"


def test_generate_catalog_writes_a_catalog(tmp_path):
    out = tmp_path / "cat"
    path = G.generate_catalog(out, count=12, seed=5, image_size=64, progress=False)
    assert path == out
    cat = Catalog(out)
    assert len(cat) == 12 and cat.image_size == 64
    assert cat.meta["source"] == "generated" and cat.meta["seed"] == 5
    assert cat.meta["generator"] == G.GENERATOR
    for item, (img, attrs, title, url) in zip(cat, _faces(12, seed=5)):
        assert np.array_equal(cat.pixels[item.id], img)
        assert item.attributes == attrs
        assert item.title == title and item.url == url
        assert item.source == f"generated:5:{item.id}"
    with pytest.raises(CatalogError):
        G.generate_catalog(out, count=3, seed=1, image_size=64, progress=False)
    G.generate_catalog(out, count=3, seed=1, image_size=64, progress=False, overwrite=True)
    assert len(Catalog(out)) == 3


def test_generate_catalog_failure_leaves_nothing(tmp_path, monkeypatch):
    real = G.render_face
    calls = {"n": 0}

    def flaky(attrs, size=200):
        calls["n"] += 1
        if calls["n"] > 4:
            raise RuntimeError("boom")
        return real(attrs, size)

    monkeypatch.setattr(G, "render_face", flaky)
    out = tmp_path / "cat"
    with pytest.raises(RuntimeError, match="boom"):
        G.generate_catalog(out, count=10, seed=0, image_size=64, progress=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []                 # no partial temporary directory either


def test_cli_generate(tmp_path):
    out = tmp_path / "cli-cat"
    r = subprocess.run([sys.executable, "-m", "omokage", "catalog", "generate", "--count", "20", "--out", str(out),
                        "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cat = Catalog(out)
    assert len(cat) == 20 and cat.image_size == 200
    assert cat.meta["seed"] == 3
    assert all(item.attributes["hair_style"] in G.HAIR_STYLES for item in cat)
    assert len({item.url for item in cat}) == 20


def test_contact_sheet(tmp_path):
    faces = _faces(10, seed=1)
    out = tmp_path / "sheet.png"
    contact_sheet([f[0] for f in faces], [f[2] for f in faces], out, columns=4, cell=48)
    im = Image.open(out)
    assert im.format == "PNG"
    assert im.width >= 4 * 48 and im.height >= 3 * 48
    contact_sheet([f[0] for f in faces], None, tmp_path / "plain.png", columns=5, cell=32)
    assert Image.open(tmp_path / "plain.png").size[0] >= 5 * 32
    with pytest.raises(ValueError):
        contact_sheet([f[0] for f in faces], ["only one"], tmp_path / "bad.png")
