"""What a new user meets on a fresh clone: query's table and files, --server, model names, messages that name
the file, -k, bench fit's cached catalog, ingest's summary columns and help texts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omokage.cli import MODEL_NAMES, build_parser
from PIL import Image

KNOWN = "raw, pca, nmf, ae, contrastive"


def omokage(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "omokage", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"omokage {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture()
def cli(capsys, monkeypatch):
    """omokage.cli.main in this process (fast: nothing is imported twice) -> (rc, stdout, stderr)."""
    from omokage.cli import main

    def run(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:   # argparse refusing the command line
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err
    return run


@pytest.fixture()
def face(tiny_catalog, tmp_path) -> Path:
    """Catalog item 42, enlarged: its nearest face is itself."""
    from omokage.catalog.store import Catalog
    img = tmp_path / "face.png"
    Image.fromarray(np.asarray(Catalog(tiny_catalog).pixels[42])).resize((150, 150)).save(img)
    return img


def test_model_names_are_the_models_omokage_knows():
    from omokage.cli import FIT_MODEL_NAMES, PREVIEW_BACKEND_CHOICES
    from omokage.features import ALGORITHMS, MODEL_CLASSES
    from omokage.sketch.service import PREVIEW_BACKENDS
    assert tuple(MODEL_NAMES) == tuple(ALGORITHMS) and ", ".join(ALGORITHMS) == KNOWN
    assert set(FIT_MODEL_NAMES) == set(MODEL_CLASSES)
    assert PREVIEW_BACKEND_CHOICES == PREVIEW_BACKENDS


# --- 1, 2: the table has a header, nothing is written unless asked -----------------------------------------

def test_query_table_has_an_aligned_header_and_writes_no_file(tiny_catalog, tiny_models, face, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = omokage("query", tiny_catalog, tiny_models, face, "-k", "5", cwd=work).stdout
    lines = out.splitlines()
    assert re.match(r"^\s*rank\s+id\s+distance\s+title\s+url$", lines[0]), lines[0]
    assert len(lines) == 6 and lines[1].split()[:2] == ["1", "42"]
    # every column starts (or, for the numbers, ends) where its header does
    title_at, url_at = lines[0].index("title"), lines[0].index("url")
    id_end, dist_end = lines[0].index(" id") + 3, lines[0].index("distance") + len("distance")
    for line in lines[1:]:
        assert line[title_at - 2:title_at] == "  " and line[title_at] != " ", line
        assert line[url_at:].startswith("https://") and line[url_at - 1] == " ", line
        assert line[id_end - 1] != " " and line[id_end] == " ", line
        assert line[dist_end - 1].isdigit() and line[dist_end] == " ", line
    assert "reconstruction" not in out
    assert list(work.iterdir()) == []   # no reconstruction.png dropped into the current folder


def test_query_writes_a_reconstruction_only_when_asked(cli, tiny_catalog, tiny_models, face, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    rc, out, _ = cli("query", tiny_catalog, tiny_models, face, "--json", "-k", "3", cwd=work)
    result = json.loads(out)
    assert set(result) == {"model", "reconstruction", "items"} and result["reconstruction"] is None
    assert next(r["id"] for r in result["items"]) == 42 and set(result["items"][0]) == {"id", "distance", "title", "url"}
    assert list(work.iterdir()) == []
    rc, out, _ = cli("query", tiny_catalog, tiny_models, face, "--reconstruction", "out/recon.png", cwd=work)
    assert rc == 0 and out.splitlines()[-1] == "reconstruction written to out/recon.png"
    assert _size(work / "out" / "recon.png") == (64, 64)
    rc, out, _ = cli("query", tiny_catalog, tiny_models, face, "--json", "--reconstruction", "r.png", cwd=work)
    assert json.loads(out)["reconstruction"] == "r.png" and (work / "r.png").is_file()
    rc, _, err = cli("query", tiny_catalog, tiny_models, face, "--reconstruction", "r.unknown", cwd=work)
    assert rc == 2 and "cannot write the reconstruction to r.unknown" in err


# --- 3: only the model asked for; --server reuses a running server -----------------------------------------

def test_query_loads_only_the_model_asked_for(cli, tiny_catalog, tiny_models, face, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    for config in (models / "nmf").glob("*/config.json"):
        config.write_text("{ this is not the nmf model")   # loading nmf would fail
    rc, out, err = cli("query", tiny_catalog, models, face, "--model", "pca", "--json")
    assert rc == 0 and json.loads(out)["items"][0]["id"] == 42, err


def test_query_server_uses_a_running_omokage_serve(cli, tiny_catalog, tiny_models, face, tmp_path):
    from tests.test_server import start_serve
    rc, out, _ = cli("query", tiny_catalog, tiny_models, face, "--model", "nmf", "-k", "9", "--json")
    local = json.loads(out)
    proc, port = start_serve(tiny_catalog, tiny_models, tmp_path / "events.jsonl")
    url = f"ws://127.0.0.1:{port}/ws"
    try:   # the real command line once, then in this process
        remote = json.loads(omokage("query", "--server", url, face, "--model", "nmf", "--json").stdout)
        table = cli("query", "--server", url, face, "-k", "3", "--reconstruction", tmp_path / "r.png")
        many = cli("query", "--server", url, face, "-k", "20", "--json")
        unknown = cli("query", "--server", url, face, "--model", "contrastive")
        bad = cli("query", "--server", url, tmp_path / "events.jsonl")
    finally:
        proc.terminate()
        proc.wait(15)
    assert [r["id"] for r in remote["items"]] == [r["id"] for r in local["items"]]
    assert np.allclose([r["distance"] for r in remote["items"]], [r["distance"] for r in local["items"]], atol=1e-3)
    assert remote["items"][0]["title"] == local["items"][0]["title"]
    lines = table[1].splitlines()
    assert lines[0].split() == ["rank", "id", "distance", "title", "url"] and lines[1].split()[1] == "42"
    assert len(lines) == 5 and lines[-1] == f"reconstruction written to {tmp_path / 'r.png'}"
    assert _size(tmp_path / "r.png") == (64, 64)
    assert len(json.loads(many[1])["items"]) == 9 and "9 nearest faces" in many[2]
    assert unknown[0] == 2 and "serves raw, pca, nmf, ae" in unknown[2]
    assert bad[0] == 2 and f"cannot use {tmp_path / 'events.jsonl'} as the query image" in bad[2]
    # the server is gone now: one line saying so
    rc, _, err = cli("query", "--server", url, face)
    assert rc == 2 and "cannot reach" in err and "is `omokage serve` running there?" in err


def test_query_server_takes_only_the_image(cli, tiny_catalog, face):
    rc, _, err = cli("query", "--server", "ws://127.0.0.1:9/ws", tiny_catalog, face)
    assert rc == 2 and "give only IMAGE" in err
    rc, _, err = cli("query", tiny_catalog, face)
    assert rc == 2 and "CATALOG MODELS IMAGE" in err
    rc, _, err = cli("query", "--server", "http://127.0.0.1:9/ws", face)
    assert rc == 2 and "ws://HOST:PORT/ws" in err


# --- 4: an unknown model fails at once, naming the known ones -----------------------------------------------

def test_unknown_model_fails_at_once_in_query_and_fit(cli, tiny_catalog, tiny_models, face, tmp_path):
    rc, _, err = cli("query", tiny_catalog, tiny_models, face, "--model", "vgg")
    assert rc == 2 and "'vgg'" in err and all(f"'{name}'" in err for name in MODEL_NAMES)
    t0 = time.perf_counter()
    f = omokage("fit", tiny_catalog, "--models", "pca,vgg", "--out", tmp_path / "models", check=False)
    assert time.perf_counter() - t0 < 10   # argparse refuses it: nothing is loaded or fitted
    assert f.returncode == 2 and "unknown model 'vgg'" in f.stderr and KNOWN in f.stderr
    assert "fitting" not in f.stdout and not (tmp_path / "models").exists()
    # a model that is known but not fitted gets advice that works
    rc, _, err = cli("query", tiny_catalog, tiny_models, face, "--model", "contrastive")
    assert rc == 2 and f"omokage fit {tiny_catalog} --models contrastive --out {tiny_models}" in err


def test_fit_models_checks_names_before_reading_the_catalog(tmp_path):
    from omokage.errors import UserError
    from omokage.features.fitting import fit_models
    with pytest.raises(UserError, match=f"unknown model 'vgg'; choose from {KNOWN}"):
        fit_models(tmp_path / "no-such-catalog", tmp_path / "models", ["pca", "vgg"], progress=False)


# --- 5, 6: messages name the file as the user gave it, and say what is wrong and what to do ----------------

def test_image_errors_name_the_path_as_given(cli, tiny_catalog, tiny_models, tmp_path):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "bad.png").write_text("this is a note, not a picture")
    (work / "sub" / "cut.png").write_bytes(_png_bytes()[:120])
    # the real command line once: one line, no traceback
    proc = omokage("query", tiny_catalog, tiny_models, "sub/missing.png", cwd=work, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "IMAGE sub/missing.png does not exist" in proc.stderr
    absent = tmp_path / "elsewhere" / "gone.jpg"
    rc, _, err = cli("query", tiny_catalog, tiny_models, absent)
    assert rc == 2 and f"IMAGE {absent} does not exist" in err
    for name, what in (("sub/bad.png", "not a recognised image format"), ("sub/cut.png", "truncated"),
                       ("sub", "is a folder")):
        rc, _, err = cli("query", tiny_catalog, tiny_models, name, cwd=work)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"cannot use {name} as the query image" in err and what in err and "Give a face image" in err, err


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _png_bytes() -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_read_image_file_names_the_path_and_keeps_the_detail(tmp_path):
    from omokage.imageio import ImageDecodeError, read_image_file
    (tmp_path / "deep").mkdir()
    bad = tmp_path / "deep" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for path, reason in ((bad, "truncated"), (tmp_path / "deep" / "none.png", "unreadable")):
        with pytest.raises(ImageDecodeError) as err:
            read_image_file(path)
        assert str(err.value).startswith(f"{path}: ") and str(path) not in err.value.detail
        assert err.value.reason in (reason, "unreadable", "not_image")


def test_ingest_skips_name_the_file_once(tmp_path):
    from omokage.catalog.ingest import ingest_images
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "good.png").write_bytes(_png_bytes())
    (src / "notes.png").write_text("hello")
    report = ingest_images(src, tmp_path / "cat", progress=False, image_size=32)
    assert report.skipped == [("notes.png", report.skipped[0][1])]
    assert report.skipped[0][1].startswith("not_image: ") and str(src) not in report.skipped[0][1]


def test_ingest_names_the_formats_it_reads_and_the_cli_names_force(cli, tmp_path):
    from omokage.catalog.ingest import ingest_images
    from omokage.catalog.store import CatalogError
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "good.png").write_bytes(_png_bytes())
    (src / "notes.png").write_text("hello")
    (src / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    out = tmp_path / "cat"
    report = ingest_images(src, out, progress=False, image_size=32)
    reasons = dict(report.skipped)
    # a file on disk is not "sent": the skip says which formats ingest reads (TIFF too, unlike an upload)
    assert reasons["logo.svg"] == "format: SVG images are not accepted; ingest reads JPEG, PNG, WebP, BMP, GIF or TIFF"
    assert reasons["notes.png"].endswith("; ingest reads JPEG, PNG, WebP, BMP, GIF or TIFF")
    assert not any("send" in r for r in reasons.values())
    # the Python API names its own remedy...
    with pytest.raises(CatalogError, match=r"already exists; pass overwrite=True to replace it$") as api:
        ingest_images(src, out, progress=False, image_size=32)
    assert "--force" not in str(api.value)
    # ...and the command line names --force only
    for args in (("catalog", "ingest", src, "--out", out, "--size", "32"),
                 ("catalog", "generate", "--count", "2", "--size", "32", "--out", out)):
        rc, _, err = cli(*args)
        assert rc == 2 and err == f"omokage: error: {out} already exists; pass --force to replace it\n", err
    rc, _, _ = cli("catalog", "ingest", src, "--out", out, "--size", "32", "--force")
    assert rc == 0


# --- 7: -k ----------------------------------------------------------------------------------------------------

def test_k_must_be_at_least_one_and_is_clamped_to_the_catalog(cli, tiny_catalog, tiny_models, face):
    for bad, why in (("0", "must be 1 or more"), ("-3", "must be 1 or more"), ("many", "not a whole number")):
        rc, out, err = cli("query", tiny_catalog, tiny_models, face, "-k", bad)
        assert rc == 2 and "argument -k" in err and why in err and out == "", err
    rc, out, err = cli("query", tiny_catalog, tiny_models, face, "-k", "1000", "--json")
    assert rc == 0 and len(json.loads(out)["items"]) == 160
    assert "-k 1000: the catalog has 160 faces; showing all of them" in err


# --- 8: bench fit reuses its generated catalog ----------------------------------------------------------------

def test_bench_fit_reuses_a_matching_generated_catalog(tmp_path, capsys):
    from omokage.bench.fit import run
    home, out = tmp_path / "home", tmp_path / "results"
    kw = {"count": 40, "out": out, "home": home, "image_size": 24, "models": ("raw", "pca"), "baselines": False}
    assert run(**kw) == 0
    first = capsys.readouterr().out
    pixels = home / "bench-catalog-40" / "pixels.npy"
    stamp = pixels.stat().st_mtime_ns
    assert "generating 40 faces" in first and "reusing" not in first
    assert run(**kw) == 0
    second = capsys.readouterr().out
    assert "reusing the generated catalog" in second and "generating" not in second
    assert pixels.stat().st_mtime_ns == stamp and json.loads((out / "fit.json").read_text())["count"] == 40


def test_ensure_catalog_draws_again_when_parameters_differ(tmp_path, capsys, tiny_catalog):
    from omokage.catalog.generate import (
        GENERATOR,
        ensure_catalog,
        generated_catalog_mismatch,
    )
    from omokage.catalog.store import Catalog
    from omokage.errors import UserError
    out = tmp_path / "cat"
    ensure_catalog(out, count=12, seed=0, image_size=20, progress=False)
    assert generated_catalog_mismatch(out, 12, 0, 20) is None
    assert generated_catalog_mismatch(out, 12, 1, 20) == "seed 0, not 1"
    assert generated_catalog_mismatch(out, 13, 0, 24) == "count 12, not 13; size 20, not 24"
    capsys.readouterr()
    ensure_catalog(out, count=12, seed=1, image_size=20, progress=False)
    assert "other parameters (seed 0, not 1)" in capsys.readouterr().out
    assert Catalog(out).meta["seed"] == 1 and len(Catalog(out)) == 12
    meta = json.loads((out / "catalog.json").read_text())
    (out / "catalog.json").write_text(json.dumps({**meta, "generator": "omokage.catalog.generate v0"}))
    assert generated_catalog_mismatch(out, 12, 1, 20) == f"generator 'omokage.catalog.generate v0', not {GENERATOR!r}"
    # a catalog somebody ingested is never replaced
    mine = tmp_path / "mine"
    shutil.copytree(tiny_catalog, mine)
    meta = json.loads((mine / "catalog.json").read_text())
    (mine / "catalog.json").write_text(json.dumps({**meta, "source": "ingested"}))
    with pytest.raises(UserError, match="holds a ingested catalog"):
        ensure_catalog(mine, count=12, seed=0, image_size=20, progress=False)


# --- 9: ingest's summary columns -------------------------------------------------------------------------------

def _summary_rows(text: str) -> list[str]:
    lines = text.splitlines()[1:]
    return lines[:next((i for i, line in enumerate(lines) if line.startswith("skipped")), len(lines))]


def _assert_aligned(rows: list[str]) -> None:
    counts = [re.match(r"^  (\S.*?)\s+(\d+)(  (.*))?$", row) for row in rows]
    assert all(counts), rows
    assert len({m.end(2) for m in counts}) == 1, rows                    # counts end at one offset
    assert len({m.start(4) for m in counts if m.group(4)}) <= 1, rows    # notes start at one offset


def test_ingest_summary_columns_align():
    from omokage.catalog.ingest import IngestReport
    rep = IngestReport(detector="none", images_dir="x", read=123456789, added=3, out="cat", padded_retry=1)
    for reason in ("not_image", "linked_outside", "missing", "hidden", "manifest_row", "not_in_manifest",
                   "linked_folder", "duplicate", "no_face"):
        rep.skip(f"{reason}.png", reason)
    rows = _summary_rows(rep.summary())
    assert len(rows) == 12 and rows[0].startswith("  read ") and rows[-1].startswith("  added ")
    _assert_aligned(rows)


def test_catalog_ingest_prints_an_aligned_summary(tiny_catalog, tmp_path):
    from omokage.catalog.store import Catalog
    src = tmp_path / "imgs"
    src.mkdir()
    cat = Catalog(tiny_catalog)
    for i in range(3):
        Image.fromarray(np.asarray(cat.pixels[i])).save(src / f"face{i}.png")
    (src / "broken.png").write_text("not an image")
    (src / ".hidden.png").write_bytes((src / "face0.png").read_bytes())
    (src / "manifest.csv").write_text("file,title,url\nface0.png,A,https://a\nface1.png,B,https://b\n"
                                      "gone.png,C,https://c\n")
    proc = omokage("catalog", "ingest", src, "--out", tmp_path / "cat", "--size", "32",
                   "--manifest", src / "manifest.csv")
    rows = _summary_rows(proc.stdout[proc.stdout.index("ingest of"):])
    assert any(r.startswith("  added") for r in rows) and len(rows) >= 7
    _assert_aligned(rows)


# --- 11: help ------------------------------------------------------------------------------------------------

def test_help_explains_itself_with_examples():
    parser = build_parser()
    top = parser.format_help()
    assert "examples:" in top and "omokage demo" in top and "omokage query" in top
    subs = {name: sub for action in parser._actions if hasattr(action, "choices") and isinstance(action.choices, dict)
            for name, sub in action.choices.items()}
    query = subs["query"].format_help()
    assert "examples:" in query and "--server ws://" in query and "--reconstruction PATH" in query
    assert "usage: omokage query [options] CATALOG MODELS IMAGE" in query
    bench = subs["bench"]
    assert "examples:" in bench.format_help() and "omokage bench fit" in bench.format_help()
    benches = next(a for a in bench._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    for name, sub in benches.items():
        assert sub.format_help().startswith("usage: omokage bench")
        assert sub.description, f"bench {name} has no description"
        # every option says what it is for
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"bench {name} {action.option_strings[0]} has no help"
    for line in top.splitlines() + query.splitlines():
        assert len(line) <= 100, line


def test_every_argument_says_what_it_is_and_fit_lists_every_model():
    import argparse

    from omokage.cli import FIT_MODEL_NAMES

    def parsers(p, path=()):
        yield path, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from parsers(sub, (*path, name))
    for path, p in parsers(build_parser()):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            name = f"omokage {' '.join(path)} {a.option_strings[0] if a.option_strings else a.metavar}"
            assert a.help, f"{name} has no help"
            if a.default not in (None, False, []):   # a default is stated
                assert "default" in a.help.lower(), f"{name}: its default {a.default!r} is not stated"
    fit = dict(parsers(build_parser()))[("fit",)]
    models = next(a for a in fit._actions if a.dest == "models")
    assert all(f"{name} (" in models.help or f" {name}," in models.help for name in FIT_MODEL_NAMES), models.help
    assert f"Default {models.default}" in models.help and models.default == "raw,pca,nmf,ae"
    bench_outs = [a.help for path, p in parsers(build_parser()) if path[:1] == ("bench",)
                  for a in p._actions if a.dest == "out"]
    assert len(bench_outs) >= 10 and all("committed figures" in h and "--out DIR" in h for h in bench_outs)


def test_fit_notes_when_components_are_capped_by_a_small_catalog(tmp_path, capsys):
    from omokage.catalog.generate import generate_catalog
    from omokage.features.fitting import fit_models
    cat = generate_catalog(tmp_path / "cat", count=20, seed=3, image_size=24, progress=False)
    capsys.readouterr()
    (pca, nmf), out = fit_models(cat, tmp_path / "m", ["pca", "nmf"], n_components=30), capsys.readouterr().out
    assert pca.n_features == nmf.n_features == 20   # the fit itself is what it was: one component per face
    for name in ("pca", "nmf"):
        assert f"  {name}: note: 20 features, not the 30 asked for: a catalog of 20 faces allows at most 20" in out
    fit_models(cat, tmp_path / "m2", ["pca"], n_components=8)
    assert "note:" not in capsys.readouterr().out   # nothing capped, nothing said


def test_fit_says_when_the_autoencoder_learned_little_from_a_small_catalog(tmp_path, capsys):
    """A newcomer's 60-face catalog gave the autoencoder an RMSE of 0.20 against PCA's 0.11, silently; it is served,
    so the fit says what it is worth."""
    from omokage.catalog.generate import generate_catalog
    from omokage.features.fitting import fit_models
    cat = generate_catalog(tmp_path / "cat", count=40, seed=3, image_size=32, progress=False)
    capsys.readouterr()
    (pca, ae), out = fit_models(cat, tmp_path / "m", ["pca", "ae"], n_components=8, ae_epochs=1,
                                progress=False), capsys.readouterr().out
    assert ae.rmse > 1.25 * pca.rmse
    assert "note: the autoencoder reconstructs far worse than PCA here" in out and "40 faces are few" in out, out


# --- a newcomer's run (2026-11-28): wrong inputs get one line that says what to do ---------------------------------

def test_a_port_out_of_range_is_refused_before_anything_starts(cli, tiny_catalog, tiny_models):
    """`demo --port 99999` ended in an OverflowError traceback and `serve --port 99999` listened on the wrapped
    port (34463)."""
    for args in (("demo", "--port", 99999), ("serve", "--catalog", tiny_catalog, "--models", tiny_models, "--port",
                                             99999), ("serve", "--port", -1), ("demo", "--port", "http")):
        rc, out, err = cli(*args)
        assert rc == 2 and "Traceback" not in err and "0 to 65535" in err, (args, err)


def test_events_export_without_a_store_says_where_events_are_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "out" / "events.jsonl"
    rc, _, err = cli("events", "export", "--db", tmp_path / "none.db", "--out", out)
    assert rc != 0 and "Traceback" not in err
    assert "--db" in err and "var/events/" in err and not out.exists()


def test_a_catalog_json_given_for_its_folder_is_named(cli, tiny_catalog, tmp_path):
    rc, _, err = cli("fit", tiny_catalog / "catalog.json", "--models", "pca", "--out", tmp_path / "m")
    assert rc != 0 and "Traceback" not in err and f"give the catalog's folder, {tiny_catalog}" in err


def test_the_catalog_folder_given_as_the_models_folder_gets_a_folder_of_its_own_as_advice(tiny_catalog):
    """`serve --catalog mycat --models mycat` used to advise `omokage fit mycat --out mycat` (from a newcomer run)."""
    from omokage.engine import Engine
    from omokage.errors import UserError
    with pytest.raises(UserError) as err:
        Engine.open(tiny_catalog, tiny_catalog)
    message = str(err.value)
    assert f"--out {tiny_catalog.resolve()}-models" in message and "a folder of their own" in message, message
