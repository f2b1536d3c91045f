"""The command line as a user meets it: help texts, query, errors without tracebacks."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from omokage.cli import build_parser


def omokage(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "omokage", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"omokage {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def all_commands(parser, prefix=()):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from all_commands(sub, prefix + (name,))


def test_every_command_explains_itself():
    commands = list(all_commands(build_parser()))
    assert {("catalog", "generate"), ("catalog", "ingest"), ("fit",), ("query",), ("serve",), ("demo",),
            ("bench", "choice")} <= set(commands)
    for cmd in commands:
        out = omokage(*cmd, "--help").stdout
        assert "usage: omokage" in out and len(out.splitlines()) > 3, cmd


def test_query_prints_json_and_writes_the_reconstruction(tiny_catalog, tiny_models, tmp_path):
    from omokage.catalog.store import Catalog
    img = tmp_path / "face.png"
    Image.fromarray(np.asarray(Catalog(tiny_catalog).pixels[42])).resize((150, 150)).save(img)
    recon = tmp_path / "recon.png"
    out = omokage("query", tiny_catalog, tiny_models, img, "--model", "pca", "-k", "5", "--json",
                  "--reconstruction", recon).stdout
    result = json.loads(out)
    assert [r["id"] for r in result["items"]][0] == 42 and len(result["items"]) == 5
    assert all(r["url"].startswith("https://") for r in result["items"])
    assert Image.open(recon).size == (64, 64)


def test_user_errors_are_one_line_with_advice(tmp_path):
    proc = omokage("query", tmp_path / "nope", tmp_path, tmp_path / "x.png", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "omokage catalog generate" in proc.stderr


def test_corrupt_query_image_is_a_clear_error(tiny_catalog, tiny_models, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    proc = omokage("query", tiny_catalog, tiny_models, bad, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "image" in proc.stderr


def test_client_command_runs_a_session_against_omokage_serve(tiny_catalog, tiny_models, tmp_path):
    from tests.test_server import start_serve
    proc, port = start_serve(tiny_catalog, tiny_models, tmp_path / "events.jsonl")
    try:
        out = omokage("client", f"ws://127.0.0.1:{port}/ws", "--algorithm", "nmf", "--choices", "3").stdout
    finally:
        proc.terminate()
        proc.wait(15)
    lines = out.splitlines()
    assert lines[0].startswith('-> {"type": "hello"') and '"type": "welcome"' in lines[1]
    assert sum('"type": "choose"' in line for line in lines) == 3
    assert "decided on" in lines[-1] and "after 4 steps" in lines[-1]
    dead = omokage("client", f"ws://127.0.0.1:{port}/ws", check=False)
    assert dead.returncode == 1 and "cannot reach" in dead.stderr
