"""The `omokage` command line. Each command imports its machinery lazily so `--help` is instant."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from omokage import PROTOCOL_VERSION, __version__
from omokage.errors import UserError

DEFAULT_HOME = Path("var")  # demo catalog and models live here, relative to where omokage runs
# The models omokage can fit and serve (omokage.features.ALGORITHMS, which imports numpy and OpenCV: named here
# so that a wrong name fails in argparse, at once; tests/test_cli_polish.py checks the two agree)
MODEL_NAMES = ("raw", "pca", "nmf", "ae", "contrastive")
# what `fit --models` also takes (omokage.features.MODEL_CLASSES): the sketch model and the generator, fitted and saved
# like the others but not feature spaces to select in
FIT_MODEL_NAMES = MODEL_NAMES + ("sketch", "gen")
# what decodes live sketch previews (omokage.sketch.service.PREVIEW_BACKENDS)
PREVIEW_BACKEND_CHOICES = ("auto", "numpy", "onnxruntime", "tensorrt", "torch-cuda")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps a one-line paragraph of a description or epilog to the terminal; keeps a paragraph of several lines
    (a list of examples) as written."""

    def _fill_text(self, text, width, indent):
        return "\n\n".join(para if "\n" in para else super(_HelpFormatter, self)._fill_text(para, width, indent)
                             for para in text.split("\n\n"))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more minutes, not {text}")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: ports run from 0 to 65535 (0 picks a free "
                                         "one)")
    return port


def _model_list(text: str, known=FIT_MODEL_NAMES) -> list[str]:
    """--models raw,pca,...: checked by argparse, before anything slow is loaded."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model {', '.join(map(repr, unknown))}; choose from "
                                         f"{', '.join(known)}")
    if not names:
        raise argparse.ArgumentTypeError(f"give at least one of {', '.join(known)}")
    return names


def _served_model_list(text: str) -> list[str]:
    """Models to serve as feature spaces (not the sketch model or the generator, which are not selected in)."""
    return _model_list(text, MODEL_NAMES)


def _bench_out_help(default: str = "benchmarks/results", then: str = "") -> str:
    """A benchmark's --out: its default folder holds the repository's committed figures, which a trial run would
    overwrite."""
    return (f"results folder (default {default}{then}; the repository's committed figures live there: pass "
            "--out DIR for a trial run)")


def _add_catalog_commands(sub) -> None:
    cat = sub.add_parser("catalog", help="create and inspect face catalogs",
                         description="Create a face catalog (generated or from your own images) and inspect it.")
    csub = cat.add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")

    gen = csub.add_parser("generate", help="draw N procedural anime-style avatar faces",
                          description="Draw N distinct anime-style avatar faces deterministically from a seed. "
                                      "Each item keeps its generating attributes, a title and a product URL.")
    gen.add_argument("--count", type=int, default=1500, help="number of faces (default 1500; the study had 1462)")
    gen.add_argument("--out", type=Path, required=True, help="catalog directory to create")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0; same seed, same catalog)")
    gen.add_argument("--size", type=int, default=200, help="thumbnail size in pixels (default 200)")
    gen.add_argument("--force", action="store_true", help="replace an existing catalog at --out")
    gen.set_defaults(func=_cmd_generate)

    ing = csub.add_parser("ingest", help="build a catalog from a folder of images",
                          description="Find faces in a folder of images, crop them square with a margin, resize, "
                                      "drop near-duplicates and write a catalog. Bad files are skipped with a reason.")
    ing.add_argument("images_dir", type=Path, metavar="IMAGES_DIR",
                     help="folder of images, read with its sub-folders (JPEG, PNG, WebP, BMP, GIF or TIFF)")
    ing.add_argument("--out", type=Path, required=True, help="catalog directory to create")
    ing.add_argument("--manifest", type=Path,
                     help="CSV with columns file,title,url[,extra...]; file is relative to IMAGES_DIR (default: none; "
                          "every image is ingested, titled by its file name, its url a file:// URI of the file)")
    ing.add_argument("--detector", default="none",
                     help="none (images already are face crops; the default), haar-frontal (photos of people), "
                          "or cascade:PATH (an OpenCV cascade XML, e.g. nagadomi's lbpcascade_animeface.xml)")
    ing.add_argument("--size", type=int, default=200, help="output size in pixels (default 200)")
    ing.add_argument("--margin", type=float, default=0.25, help="margin around a detected face, as a fraction of "
                     "its size (default 0.25; not used with --detector none)")
    ing.add_argument("--dedup-threshold", type=int, default=6, metavar="BITS",
                     help="drop a face whose 64-bit perceptual hash is within BITS of an earlier one and whose "
                          "colours match (default 6; -1 keeps near-duplicates, e.g. several photos of one sitter)")
    ing.add_argument("--force", action="store_true", help="replace an existing catalog at --out")
    ing.set_defaults(func=_cmd_ingest)

    sheet = csub.add_parser("sheet", help="write a contact sheet PNG of a catalog",
                            description="Write a grid of thumbnails (the first N items) to look at a catalog.")
    sheet.add_argument("catalog", type=Path, metavar="CATALOG",
                       help="catalog folder (omokage catalog generate / ingest)")
    sheet.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sheet.add_argument("--count", type=int, default=64, help="how many faces, from the first (default 64)")
    sheet.add_argument("--columns", type=int, default=8, help="faces per row (default 8)")
    sheet.set_defaults(func=_cmd_sheet)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omokage",
        description="omokage helps a person in VR choose an avatar by its face: it learns features of every face in a "
                    "catalog and runs a pick-1-of-9 selection loop over a WebSocket + MessagePack protocol.",
        epilog="Start with `omokage demo`: it generates the default catalog, fits the models and serves them.\n\n"
               "examples:\n"
               "  omokage demo                                  # then open the URL it prints\n"
               "  omokage catalog ingest my_avatars/ --out var/mine\n"
               "  omokage fit var/mine --out var/mine-models --models pca,nmf\n"
               "  omokage query var/mine var/mine-models face.png\n"
               "  omokage serve --catalog var/mine --models var/mine-models\n"
               "  omokage bench fit\n\n"
               "`omokage COMMAND --help` explains each command.",
        formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"omokage {__version__} (protocol {PROTOCOL_VERSION})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_catalog_commands(sub)

    fit = sub.add_parser("fit", help="fit feature models on a catalog into a model repository",
                         description="Fit feature models (raw pixels, PCA, NMF, a convolutional autoencoder, a "
                                     "contrastive embedding), the sketch model or the generator on a catalog and "
                                     "save them as MODELS/NAME/VERSION/ without pickle. `omokage fit user-model` "
                                     "instead fits the preference model's user model from logged selections: how "
                                     "noisy people's picks are, the distance they choose by, and how much their gaze "
                                     "says (docs/preference-model.md); `omokage serve` then uses it.",
                         epilog="examples:\n"
                                "  omokage fit var/catalog --out var/models                  # raw, pca, nmf, ae\n"
                                "  omokage fit var/catalog --models sketch,gen --out var/models\n"
                                "  omokage fit user-model var/events/*.jsonl --catalog var/catalog --out var/models\n"
                                "  omokage fit user-model var/omokage.db --catalog var/catalog --out var/models"
                                "   # a store (serve --db)\n"
                                "Only the logged selections of --catalog are read; the demo logs to var/events/.",
                         formatter_class=_HelpFormatter)
    fit.add_argument("catalog", metavar="CATALOG | user-model",
                     help="the catalog to fit feature models on, or `user-model` to fit the preference model's "
                          "user-response temperature from logged sessions (then give EVENTS and --catalog)")
    fit.add_argument("events", nargs="*", type=Path, metavar="EVENTS",
                     help="with user-model: the server's session event logs (JSON lines, var/events/*.jsonl) or "
                          "event stores (serve --db)")
    fit.add_argument("--catalog", dest="user_model_catalog", type=Path, default=None, metavar="CATALOG",
                     help="with user-model: the catalog the logged sessions ran on (its models are read from --out)")
    fit.add_argument("--models", type=_model_list, default="raw,pca,nmf,ae",
                     help="comma-separated, any of: raw (pixels), pca, nmf, ae (convolutional autoencoder), "
                          "contrastive (self-supervised embedding served by ONNX Runtime; minutes on a CPU), sketch "
                          "(live sketch search, on top of PCA; seconds), gen (generator of sharper faces from PCA's "
                          "latent, served by ONNX Runtime; minutes). Default raw,pca,nmf,ae")
    fit.add_argument("--out", type=Path, default=Path("models"), help="model repository (default ./models)")
    fit.add_argument("--components", type=int, default=30, help="latent size of every model but raw (default 30; "
                     "pca, nmf and the PCA-based sketch and gen have at most one per face of the catalog)")
    fit.add_argument("--ae-epochs", type=int, default=None, help="autoencoder training epochs (default: the model's)")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the fits (default 0: repeatable)")
    fit.add_argument("--device", default="cpu", help="where gen trains: cpu (default) or a PyTorch CUDA device such "
                     "as cuda or cuda:1 (minutes on a CPU, seconds on a GPU; the saved model is the same format)")
    fit.set_defaults(func=_cmd_fit)

    q = sub.add_parser("query", help="find the catalog faces nearest to an image",
                       usage="omokage query [options] CATALOG MODELS IMAGE\n"
                             "       omokage query [options] --server URL IMAGE",
                       description="Project IMAGE through one fitted model and print its k nearest catalog faces "
                                   "(only that model is loaded). With --server, a running `omokage serve` answers "
                                   "instead and nothing is loaded here: much faster for repeated queries.",
                       epilog="examples:\n"
                              "  omokage query var/catalog var/models face.png\n"
                              "  omokage query var/catalog var/models face.png --model nmf -k 5 --json\n"
                              "  omokage query var/catalog var/models face.png --reconstruction recon.png\n"
                              "  omokage query --server ws://127.0.0.1:8765/ws face.png",
                       formatter_class=_HelpFormatter)
    q.add_argument("catalog", type=Path, nargs="?", metavar="CATALOG", help="catalog folder (not with --server)")
    q.add_argument("models", type=Path, nargs="?", metavar="MODELS", help="model repository (not with --server)")
    q.add_argument("image", type=Path, metavar="IMAGE", help="the face to look for: JPEG, PNG, WebP, BMP, GIF or TIFF")
    q.add_argument("--model", default="pca", choices=MODEL_NAMES, metavar="NAME",
                   help=f"feature model: {', '.join(MODEL_NAMES)} (default pca)")
    q.add_argument("-k", type=_positive_int, default=9, help="number of nearest faces (default 9; at most the "
                   "catalog's size, and 9 with --server: an image start's first grid)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--reconstruction", type=Path, default=None, metavar="PATH",
                   help="also write the model's reconstruction of IMAGE to this image file (default: none written)")
    q.add_argument("--server", metavar="URL", help="ask a running `omokage serve` at this address, e.g. "
                   "ws://127.0.0.1:8765/ws, instead of loading the catalog and model here")
    q.add_argument("--token", help="with --server: the server's --token")
    q.set_defaults(func=_cmd_query)

    s = sub.add_parser("serve", help="serve the selection loop over WebSocket + MessagePack",
                       description="Serve protocol v1 (docs/protocol.md) on ws://HOST:PORT/ws, with a health "
                                   "endpoint at http://HOST:PORT/healthz and the web client at http://HOST:PORT/.")
    s.add_argument("--catalog", type=Path, required=True, help="catalog folder (omokage catalog generate / ingest)")
    s.add_argument("--models", type=Path, required=True, help="model repository (omokage fit ... --out MODELS)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only); any other "
                   "address needs --token, or --insecure")
    s.add_argument("--port", type=_port, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    s.add_argument("--token", help="require this token in `hello` before serving anything else (and in "
                   "`Authorization: Bearer TOKEN` for the details of /healthz). A command line is visible to every "
                   "user of the machine: prefer --token-file or the OMOKAGE_TOKEN environment variable")
    s.add_argument("--token-file", type=Path, metavar="FILE",
                   help="read the token from the first line of FILE (e.g. one only you can read: chmod 600)")
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --token (anyone "
                   "who reaches the port can use the server)")
    s.add_argument("--public-name", action="append", default=[], metavar="NAME",
                   help="a host name clients use to reach this server, e.g. mypc.local (repeatable); requests "
                        "naming other hosts are refused (DNS-rebinding guard). IP addresses and localhost always work")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser Origin allowed to connect (repeatable); same-origin pages are always allowed")
    s.add_argument("--max-messages-per-second", type=float, default=200.0, metavar="N",
                   help="per-connection message rate (burst: twice that); more gets `overloaded` (default 200)")
    s.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve https/wss with this certificate (Quest "
                   "Browser needs https for WebXR on the LAN)")
    s.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key (default: read from "
                   "the --tls-cert file)")
    s.add_argument("--db", type=Path, default=None, metavar="PATH",
                   help="also keep the event store (SQLite): every message in and out and every session event, "
                        "committed before the reply that acknowledges it. Always on with --study (default "
                        "var/omokage.db); off otherwise, as it costs latency (benchmarks/results/store.md)")
    s.add_argument("--events", type=Path, help="append session events as JSON lines here (default "
                   "var/events/events-DATE.jsonl when --db is not given); `omokage events export` writes the same "
                   "lines from a store")
    s.add_argument("--study", metavar="NAME", help="run this study (created with `omokage study create`): clients "
                   "must name a participant code in `hello`, and the server walks each through their trials")
    s.add_argument("--no-fsync", action="store_true", help="write session events without fsync: faster on a slow "
                   "disk, but a power loss may lose events already acknowledged (a process crash loses none)")
    s.add_argument("--send-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="disconnect a client that reads none of its replies for this long (default 10)")
    s.add_argument("--resume-minutes", type=_minutes, default=10.0, metavar="MINUTES",
                   help="how long a selection waits for its client after a disconnect (protocol v1.7: a headset "
                        "whose Wi-Fi dropped, or a reloaded page, goes on from the grid it showed); 0 keeps none "
                        "(default 10). A study's participants resume by their code instead, at any time")
    s.add_argument("--log-level", default="info", help="debug, info, warning or error (default info; logs are JSON "
                   "lines on stderr)")
    s.add_argument("--fit-in-background", type=_served_model_list, default=None, metavar="MODELS",
                   help="comma-separated models (e.g. nmf,ae) to fit, where missing or fitted on another catalog, "
                        "while the others are already served; each is served the moment it is saved and clients "
                        "see the progress (protocol v1.2). Logs go to MODELS_DIR/logs/fit-NAME.log")
    s.add_argument("--preview-backend", default="auto", choices=PREVIEW_BACKEND_CHOICES,
                   help="what generates live sketch previews: numpy (PCA's decoder), onnxruntime (the sharper `gen` "
                        "decoder on the CPU, ~4 ms an image: results carry PCA's quick preview and the sharper one "
                        "follows as `sketch.preview` to v1.6 clients, as the CPU keeps up), tensorrt or torch-cuda (gen "
                        "on an NVIDIA GPU, in every result); auto (the default): a GPU backend when a gen model is "
                        "fitted and a GPU is there, else numpy. Sketching needs a fitted `sketch` model")
    s.add_argument("--preview-size", type=_positive_int, default=None, metavar="PIXELS",
                   help="side of live sketch previews (default 64; at most the catalog's image size)")
    s.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                   help="folder of gaze calibration patterns (*.json) offered to clients (protocol v1.4) and of "
                        "default corrections per headset model (devices/NAME.json, applied to a client whose hello "
                        "names the device; v1.5); default: the repository's calibration/ folder")
    s.set_defaults(func=_cmd_serve)

    cl = sub.add_parser("client", help="run one whole session against a server and print the transcript",
                        description="Connect to an omokage server, run one selection session (start, choose, "
                                    "decide, fetching textures) and print every message: a check of a deployment.")
    cl.add_argument("url", metavar="URL", help="the server's WebSocket address, e.g. ws://127.0.0.1:8765/ws (the "
                    "page's http://HOST:PORT/ works too)")
    cl.add_argument("--algorithm", default="pca", help="the feature space to run the session in (default pca)")
    cl.add_argument("--choices", type=int, default=2, help="how many times to choose before deciding (default 2)")
    cl.add_argument("--seed", type=int, default=1, help="seed of the first grid and of the simulated picks "
                    "(default 1)")
    cl.add_argument("--policy", help="how the server picks the faces: one of its welcome.policies (e.g. study, "
                    "infogain); default: the server's default_policy")
    cl.add_argument("--token", help="the server's --token, if it has one")
    cl.set_defaults(func=_cmd_client)

    _add_store_commands(sub)

    d = sub.add_parser("demo", help="generate the default catalog, fit the models and serve them",
                       description="The main job on the embedded default catalog: generate it if missing, fit raw "
                                   "pixels, PCA and the sketch model if missing (seconds), serve them and print the URL to open; NMF "
                                   "and the autoencoder are fitted in the background meanwhile and served when "
                                   "ready (the page shows their progress). Everything is kept in --home: a second "
                                   "run serves at once.")
    d.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the demo catalog and models live (default ./var)")
    d.add_argument("--count", type=_positive_int, default=1500,
                   help="faces in the generated catalog (default 1500; another count draws a new catalog)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    d.add_argument("--port", type=_port, default=8765, help="TCP port (default 8765); a taken port is reported "
                   "before any work")
    d.add_argument("--no-serve", action="store_true", help="prepare everything and run one simulated session, then exit")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="benchmarks that write a results file and print a table",
                       description="Benchmarks. Each writes JSON/markdown figures under --out (default "
                                   "benchmarks/results) and prints a table. benchmarks/results holds the "
                                   "repository's committed figures, which a run replaces: pass --out DIR for a trial "
                                   "run. Catalogs and models they need are generated and fitted under --home "
                                   "(default ./var) once, then reused.",
                       epilog="examples:\n"
                              "  omokage bench fit                                # fit times vs the study's table\n"
                              "  omokage bench knn --sizes 10000 --out /tmp/bench # a trial run, kept apart\n"
                              "  omokage bench choice --users 50 --out /tmp/bench # simulated users hunting a face\n"
                              "  omokage bench BENCHMARK --help                   # what one benchmark measures",
                       formatter_class=_HelpFormatter)
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    bf = bsub.add_parser("fit", help="fit time and reconstruction error of raw/pca/nmf/ae beside the study's table",
                         description="Fit raw, PCA, NMF and the autoencoder on a generated catalog (drawn once into "
                                     "HOME/bench-catalog-COUNT and reused while its count, seed, size and generator "
                                     "version match), beside scikit-learn's PCA and NMF on the same matrix, and "
                                     "write fit.json and fit.md under --out.",
                         epilog="example: omokage bench fit --count 500 --ae-epochs 2 --out /tmp/bench   (a quick run)")
    bf.add_argument("--count", type=int, default=1462, help="faces in the generated catalog (default 1462, "
                    "the study's)")
    bf.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bf.add_argument("--ae-epochs", type=int, default=None, help="autoencoder training epochs (default: the model's)")
    bf.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the generated catalog is kept and "
                    "reused (default ./var)")
    bf.set_defaults(func=_cmd_bench_fit)
    bk = bsub.add_parser("knn", help="9-NN query time over 10k and 1M items, exact vs faiss",
                         description="Time what the selection loop asks of its index (the 8 nearest of an item, "
                                     "skipping ~27 already shown) over 30-d features of each size: exact numpy "
                                     "search against faiss HNSW, with faiss's recall.")
    bk.add_argument("--sizes", default="10000,1000000", help="comma-separated index sizes (default 10000,1000000)")
    bk.add_argument("--queries", type=int, default=300, help="queries per size (default 300)")
    bk.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bk.set_defaults(func=_cmd_bench_knn)
    bp = bsub.add_parser("policy", help="one selection step (belief update + next grid) per display policy at "
                         "1.5k, 10k and 100k items",
                         description="Time what the server does on `choose` for each display policy: add the pick to "
                                     "the belief and choose the next 8 faces, on clustered 30-d features of 1.5k, 10k "
                                     "and 100k items, with the study's nearest-neighbour policy as the baseline in the "
                                     "same run. Goals: p99 <= 2 ms at 10k items, <= 20 ms at 100k.")
    bp.add_argument("--sizes", default="1500,10000,100000", help="comma-separated catalog sizes (default "
                    "1500,10000,100000)")
    bp.add_argument("--sessions", type=int, default=30, help="sessions per row, each 8 steps (default 30)")
    bp.add_argument("--policies", default=None, help="comma-separated (default: all but random)")
    bp.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bp.set_defaults(func=_cmd_bench_policy)
    bs = bsub.add_parser("serve", help="N concurrent protocol clients over loopback running whole sessions",
                         description="Start `omokage serve` on loopback and run whole sessions (start, "
                                     "texture.get, choose x 3, ping, decide) from 1, 10 and 100 concurrent clients, "
                                     "paced and saturated, beside a bare websockets echo server as the floor.")
    bs.add_argument("--clients", default="1,10,100", help="comma-separated concurrency levels (default 1,10,100)")
    bs.add_argument("--sessions", type=int, default=3, help="whole sessions per client, at least (default 3; each "
                    "level runs at least 100 sessions in all)")
    bs.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bs.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the catalog and model are prepared "
                    "once and reused (default ./var)")
    bs.add_argument("--policy", default=None, help="the selection policy every simulated user starts with "
                    "(default: the server's default policy)")
    bs.add_argument("--durability-only", action="store_true", help="run only the durability comparison at the "
                    "busiest level (event store and JSON-lines log, each with and without fsync)")
    bs.set_defaults(func=_cmd_bench_serve)
    ba = bsub.add_parser("attack", help="the hardening attacks against a real server, with a healthy client "
                         "watching", description="Run each attack of issue 10 (hostile frames, a client that stops "
                         "reading, large frames sent slowly, texture floods, HTTP abuse, token guessing, hostile "
                         "uploads) against a real `omokage serve` on loopback, and write, per attack: held or "
                         "degraded, a healthy client's ping p50/p99 during it, and the server's RSS before, during "
                         "and after (and how long it stood 32 MB or more above where it started).")
    ba.add_argument("--seconds", type=float, default=8.0, help="how long each attack runs (default 8)")
    ba.add_argument("--attacks", default=None, help="comma-separated subset (default all): nested_frame, "
                    "control_flood, slow_large_frames, slow_large_frames_before_hello, slow_reader, texture_flood, "
                    "http, uploads, upload_flood, token_guessing")
    ba.add_argument("--count", type=int, default=500, help="faces in the generated catalog (default 500)")
    ba.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    ba.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the catalog and models are prepared "
                    "once and reused (default ./var)")
    ba.set_defaults(func=_cmd_bench_attack)
    bc = bsub.add_parser(
        "choice", help="simulated users hunting a target face, per policy x model, against the random-9 floor",
        description="Simulated users hunt a hidden target face in the real selection loop. Arms: every policy x "
                    "model (e.g. infogain/pca) plus the floor random-9; every user noise level (--temperatures) and "
                    "start (random, image). Reports found within 3/5/10 steps, steps to settle (a face within delta "
                    "of the target), cluster-bootstrap intervals (by target identity), a pre-declared primary "
                    "comparison and Holm-corrected comparisons with the floor. Writes choice.json, choice.md, "
                    "choice.png and choice-settle.png under --out. See docs/choice-benchmark.md.")
    bc.add_argument("--users", type=int, default=300, help="simulated users per arm, start and temperature "
                    "(default 300; every arm meets the same users)")
    bc.add_argument("--max-steps", type=int, default=10, help="grids per hunt before giving up (default 10)")
    bc.add_argument("--temperatures", default="0,0.1,0.3,1", help="the user's pick noise levels, comma-separated, in "
                    "median perceptual distances (0: always the closest face; default 0,0.1,0.3,1); every level is "
                    "reported")
    bc.add_argument("--policies", default=None, help="comma-separated policies (default: every policy but random, "
                    "which is the floor random-9 and always runs)")
    bc.add_argument("--models", default=None, help="comma-separated models (default: the fitted ones among raw, pca, "
                    "nmf, ae, or all four when none is); only these are fitted")
    bc.add_argument("--starts", default="random,image", help="random and/or image (default both)")
    bc.add_argument("--seed", type=int, default=0, help="seed of the simulated users and targets (default 0)")
    bc.add_argument("--dataset", default="generated", help="generated (the demo catalog; the default), a folder "
                    "name under "
                    "../shared/data (e.g. anime-holoen20, faces94-female), or the path of a labelled image folder: "
                    "labels.csv with file,label[,split] or one sub-folder per identity (a split is made when none is "
                    "given)")
    bc.add_argument("--skip-below", type=float, default=None, metavar="D", help="the user answers \"none of these\" "
                    "when no shown face is closer to the target than D median perceptual distances (default: off)")
    bc.add_argument("--settle-share", type=float, default=0.01, help="settle rule: delta is the distance within which "
                    "this share of the faces of other identities lies from a target, on average (default 0.01)")
    bc.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    bc.add_argument("--gaze", type=float, default=None, metavar="INFORMATIVENESS",
                    help="simulated gaze (docs/gaze.md): each belief policy also runs as POLICY+gaze, fed where the "
                         "user looked; 0 = gaze unrelated to the target, 0.35 = the literature's effect sizes")
    bc.add_argument("--learned-metric", action="store_true",
                    help="also run the default policy in each model's space reweighted by the metric `omokage fit "
                         "user-model` learns from logged picks, fitted first on a pilot of separate users "
                         "(docs/preference-model.md)")
    bc.add_argument("--ratings", action="store_true",
                    help="the simulated users also rate each face they pick, 1-5 stars (protocol `rate`), by their "
                         "own perception with a generosity of their own; writes to OUT-ratings by default, to compare "
                         "with the same run without (same users, same picks' noise; docs/preference-model.md)")
    bc.add_argument("--gaze-source", choices=["eye", "head"], default="eye",
                    help="with --gaze: eye gaze (Quest Pro) or head gaze (the headset's forward ray; default eye)")
    bc.add_argument("--ae-epochs", type=int, default=None, help="autoencoder epochs if it must be fitted "
                    "(default: the model's)")
    bc.add_argument("--perceive", choices=["identity", "character", "image"], default="identity",
                    help="labelled sets: the simulated user compares faces with the target's identity (person or "
                         "character; the default) or with the one target image")
    bc.add_argument("--out", type=Path, default=None,
                    help=_bench_out_help("benchmarks/results/choice", " for generated, "
                                         "benchmarks/results/choice-<folder name> for a labelled set"))
    bc.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs and models are prepared (default "
                    "./var; a labelled set gets HOME/<name>-<fingerprint>)")
    bc.set_defaults(func=_cmd_bench_choice)
    bst = bsub.add_parser("study", help="a simulated user study through the real server, its report, and kill -9 "
                          "crash checks; event-store write throughput",
                          description="Create a study (18 participants x raw, pca, nmf, ae, Latin square, practice "
                                      "trial, questionnaires), run simulated participants (the `bench choice` user "
                                      "model) through a real `omokage serve --study` with the Python client, some "
                                      "disconnecting and resuming, write its report; then run it again while the "
                                      "server is killed with SIGKILL --kills times, and check that every acknowledged "
                                      "event is in the store, no trial is duplicated and everyone resumes where they "
                                      "were. Also measures the store's write throughput. Writes study.md/.json and "
                                      "the report under --out.")
    bst.add_argument("--participants", type=int, default=18, help="simulated participants (default 18)")
    bst.add_argument("--kills", type=int, default=20, help="SIGKILLs of the server during the crash run (default 20)")
    bst.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                     help=_bench_out_help() + "; the report goes to OUT/study-report/")
    bst.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the catalog and models are prepared "
                     "once and reused (default ./var)")
    bst.add_argument("--seed", type=int, default=0, help="seed of the simulated participants (default 0)")
    bst.add_argument("--gaze", choices=("eye", "head", "none"), default="eye",
                     help="the simulated participants' gaze in the study run (the report's heatmaps): eye (default), "
                          "head, or none (faster: no gaze, scaled think times)")
    bst.set_defaults(func=_cmd_bench_study)
    bg = bsub.add_parser("gaze", help="gaze ingest throughput and the choose latency while N clients stream gaze",
                         description="Ingest: 90 Hz eye gaze in gaze.batch frames through the connection, with the "
                                     "SQLite event store (fsync) and without. Load: a real server and N clients each "
                                     "streaming gaze and picking with thompson+gaze, against the same without gaze. "
                                     "Writes gaze.md and gaze.json under --out. See docs/gaze.md.")
    bg.add_argument("--clients", type=int, default=200, help="concurrent clients of the load (default 200)")
    bg.add_argument("--rate", type=float, default=90.0, help="samples per second per client (default 90)")
    bg.add_argument("--seconds", type=float, default=20.0, help="duration of each load run (default 20)")
    bg.add_argument("--ingest-seconds", type=float, default=120.0,
                    help="seconds of simulated gaze for the ingest measurement (default 120)")
    bg.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bg.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the catalog and models are (default ./var)")
    bg.set_defaults(func=_cmd_bench_gaze)
    bsk = bsub.add_parser("sketch", help="live sketch search: stroke-to-result latency under load, and how often a "
                          "sketch's first 9 faces hold the target",
                          description="Latency: a real server and N clients each drawing at R Hz (every message the "
                                      "next piece of a stroke, sent without waiting), per preview backend, beside the "
                                      "same clients sending ping (the floor). Usefulness: simulated sketches of "
                                      "targets (their line art, 20/50/100% of the strokes, with and without paint, "
                                      "traced from the catalog image or from another image of the target) against a "
                                      "random first grid, on generated faces and, when ../shared/data has it, "
                                      "anime-holoen20. Writes sketch.md and sketch.json under --out.",
                          epilog="examples:\n"
                                 "  omokage bench sketch\n"
                                 "  omokage bench sketch --clients 10 --seconds 5 --skip-usefulness --out /tmp/bench\n"
                                 "  omokage bench sketch --skip-latency --datasets generated --targets 100",
                          formatter_class=_HelpFormatter)
    bsk.add_argument("--clients", default="10,25,50", help="comma-separated levels of concurrent drawing clients "
                     "(default 10,25,50)")
    bsk.add_argument("--rate", type=float, default=30.0, help="messages per second per client (default 30)")
    bsk.add_argument("--seconds", type=float, default=15.0, help="duration of each latency run (default 15)")
    bsk.add_argument("--pen-up", type=float, default=250.0, metavar="MS",
                     help="for a server that sends sharper previews (onnxruntime), one more run per level in which "
                     "the pen lifts for MS milliseconds after every stroke, when the sharpening runs (default 250; "
                     "0: no such run)")
    bsk.add_argument("--backends", default="numpy,onnxruntime", help="comma-separated preview backends to measure "
                     "(default numpy,onnxruntime; those that cannot run here are skipped with the reason)")
    bsk.add_argument("--datasets", default="generated,anime-holoen20", help="comma-separated: generated and/or a "
                     "labelled set's name or folder (default generated,anime-holoen20; missing ones are skipped)")
    bsk.add_argument("--targets", type=int, default=200, help="targets per data set and setting (default 200)")
    bsk.add_argument("--skip-latency", action="store_true", help="only the usefulness table")
    bsk.add_argument("--skip-usefulness", action="store_true", help="only the latency table")
    bsk.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bsk.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs and models are prepared once "
                     "and reused (default ./var)")
    bsk.set_defaults(func=_cmd_bench_sketch)
    bi = bsub.add_parser("identity", help="1-NN character/person accuracy of each feature space on labelled sets",
                         description="Fit each model on the train split of a labelled image set (no labels used) "
                                     "and report the leave-one-out 1-NN identity accuracy in its space, beside the "
                                     "simulated user's colour+HOG descriptor.")
    bi.add_argument("--dataset", default="anime-holoen20", help="comma-separated: anime-holoen20, faces94-female "
                    "(under ../shared/data) or paths laid out like them (default anime-holoen20)")
    bi.add_argument("--models", default="raw,pca,nmf,contrastive",
                    help="comma-separated (default raw,pca,nmf,contrastive)")
    bi.add_argument("--epochs", type=int, default=None, help="training epochs of ae/contrastive (default: the model's)")
    bi.add_argument("--seed", type=int, default=0, help="random seed of the fits (default 0)")
    bi.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                    help=_bench_out_help() + "; writes embedding-identity.md and .json")
    bi.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the ingested catalogs live (default ./var)")
    bi.set_defaults(func=_cmd_bench_identity)
    bpi = bsub.add_parser("pick-information", help="how much one pick tells each feature space about the target "
                          "(the preference model's likelihood), beside the user's own distance",
                          description="Simulated users (bench choice's) pick 1 of 9 faces for a hidden target; each "
                                      "space's choice model is fitted on half of the picks and scored on the other "
                                      "half in nats per pick above chance, beside the user's own perceptual distance "
                                      "(the ceiling), for random grids and grids of the target's near neighbours. "
                                      "Writes pick-information.md and .json under --out.")
    bpi.add_argument("--datasets", default="generated,anime-holoen20",
                     help="comma-separated: generated and/or a labelled set's name or folder (default "
                          "generated,anime-holoen20; missing ones are skipped)")
    bpi.add_argument("--models", default=None, help="comma-separated spaces (default: the fitted ones)")
    bpi.add_argument("--temperatures", default="0,0.1,0.3,1", help="the users' pick noise (default 0,0.1,0.3,1)")
    bpi.add_argument("--picks", type=int, default=4000, help="simulated picks per grid kind and temperature "
                     "(default 4000)")
    bpi.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    bpi.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bpi.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs and models are prepared once "
                     "and reused (default ./var)")
    bpi.set_defaults(func=_cmd_bench_pick_information)
    bgn = bsub.add_parser("generator", help="the gen decoder against PCA-30: held-out RMSE, sharpness, fit time, "
                          "and decode latency per backend (numpy, onnxruntime, tensorrt, torch-cuda)",
                          description="Fit PCA-30 and the gen decoder (PCA's latent + a learned residual) on the "
                                      "generated catalog (the demo's 1,500 faces, 10% held out) and, when "
                                      "../shared/data has it, on anime-holoen20 (train split; judged on its test "
                                      "split). Reports held-out RMSE, sharpness (squared-Laplacian energy relative to "
                                      "the originals; 1.0 = as sharp), fit time, then decode latency at batch 1/8/64 "
                                      "and the largest difference between backends on the same latents, for every "
                                      "backend that can run here (the others are listed with the reason). Writes "
                                      "generator.json and generator.md under --out.",
                          epilog="examples:\n"
                                 "  omokage bench generator\n"
                                 "  omokage bench generator --datasets generated --epochs 3 --out /tmp/bench  # quick\n"
                                 "  omokage bench generator --datasets anime-holoen20 --out /tmp/results",
                          formatter_class=_HelpFormatter)
    bgn.add_argument("--datasets", default="generated,anime-holoen20", help="comma-separated: generated and/or a "
                     "labelled set's name under ../shared/data or folder (default generated,anime-holoen20; a "
                     "missing one is skipped with the reason)")
    bgn.add_argument("--epochs", type=_positive_int, default=None, help="gen training epochs (default: the model's)")
    bgn.add_argument("--seed", type=int, default=0, help="random seed of the fits (default 0)")
    bgn.add_argument("--latency-seconds", type=float, default=1.0, help="time spent per backend and batch size "
                     "(default 1)")
    bgn.add_argument("--out", type=Path, default=Path("benchmarks/results"), help=_bench_out_help())
    bgn.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs are generated or ingested once "
                     "and reused, and the fitted models kept (HOME/bench-generator/; default ./var)")
    bgn.set_defaults(func=_cmd_bench_generator)
    bid = bsub.add_parser("ideal", help="the ideal face (CMA-ES in the PCA latent): is the target among the 9 "
                          "catalog faces nearest to it, against the policy's next grid and the belief's top 9?",
                          description="The users of `bench choice` (same targets, pick noise, perception) hunt with "
                                      "a belief policy; after k picks, for users whose target is still unseen, the "
                                      "9 unseen faces nearest the ideal face (omokage.selection.ideal, several "
                                      "radius/bandwidth/generation settings) are compared with the policy's next "
                                      "grid, the belief's 9 most probable unseen faces and 9 random ones, with "
                                      "cluster-bootstrap intervals. Writes ideal.json and ideal.md under --out.")
    bid.add_argument("--users", type=int, default=300, help="simulated users per data set and temperature "
                     "(default 300)")
    bid.add_argument("--temperatures", default="0,0.1", help="user noise levels (default 0,0.1)")
    bid.add_argument("--at", default="3,5,9", help="compare after these numbers of picks (default 3,5,9)")
    bid.add_argument("--datasets", default="generated,anime-holoen20", help="comma-separated: generated, names "
                     "under ../shared/data (absent ones are skipped) or folders (default generated,anime-holoen20)")
    bid.add_argument("--policy", default="thompson", help="the belief policy the users hunt with (default thompson)")
    bid.add_argument("--seed", type=int, default=0, help="seed of the simulated users (default 0, as bench choice)")
    bid.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    bid.add_argument("--out", type=Path, default=Path("benchmarks/results/ideal"),
                     help=_bench_out_help("benchmarks/results/ideal"))
    bid.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs and models are prepared "
                     "(default ./var)")
    bid.set_defaults(func=_cmd_bench_ideal)
    return p


# --- command handlers -------------------------------------------------------------------------

def _catalog_exists(exc) -> UserError:
    """The library's CatalogExistsError names overwrite=True (the Python API); on the command line it is --force."""
    return UserError(f"{exc.path} already exists; pass --force to replace it")


def _cmd_generate(a) -> int:
    from omokage.catalog.generate import generate_catalog
    from omokage.catalog.store import CatalogExistsError
    try:
        path = generate_catalog(a.out, count=a.count, seed=a.seed, image_size=a.size, overwrite=a.force)
    except CatalogExistsError as exc:
        raise _catalog_exists(exc) from None
    print(f"wrote {a.count} faces to {path}")
    return 0


def _cmd_ingest(a) -> int:
    from omokage.catalog.ingest import ingest_images
    from omokage.catalog.store import CatalogExistsError
    try:
        report = ingest_images(a.images_dir, a.out, manifest=a.manifest, detector=a.detector,
                               image_size=a.size, margin=a.margin, overwrite=a.force,
                               dedup_threshold=a.dedup_threshold)
    except CatalogExistsError as exc:
        raise _catalog_exists(exc) from None
    print(report.summary())
    return 0 if report.added else 1


def _cmd_sheet(a) -> int:
    from omokage.catalog.sheet import contact_sheet
    from omokage.catalog.store import Catalog
    cat = Catalog(a.catalog)
    ids = list(range(min(a.count, len(cat))))
    contact_sheet([cat.pixels[i] for i in ids], [cat.items[i].title for i in ids], a.out, columns=a.columns)
    print(f"wrote {a.out}")
    return 0


def _cmd_fit(a) -> int:
    if a.catalog == "user-model":
        return _cmd_fit_user_model(a)
    if a.events:
        raise UserError(f"unexpected arguments after the catalog: {' '.join(map(str, a.events))} "
                        "(EVENTS are for `omokage fit user-model`)")
    a.catalog = Path(a.catalog)
    from omokage.features.fitting import fit_models
    if a.device != "cpu":
        _check_training_device(a.device)
    fit_models(a.catalog, a.out, a.models, n_components=a.components, ae_epochs=a.ae_epochs, seed=a.seed,
               device=a.device)
    return 0


def _check_training_device(device: str) -> None:
    """A clear error before any fitting when --device names a GPU this machine does not have."""
    import re
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise UserError(f"--device {device!r}: use cpu, cuda or cuda:N")
    from omokage.generators.backends import backend_reason
    reason = backend_reason("torch-cuda")
    if reason:
        raise UserError(f"--device {device}: {reason}; train on the CPU (--device cpu)")
    import torch
    count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
    if index >= count:      # else the models before gen are fitted and saved, then gen fails with a CUDA error
        raise UserError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")


def _cmd_fit_user_model(a) -> int:
    from omokage.engine import Engine
    from omokage.selection.user_model import fit_user_model, read_choice_records
    if not a.events:
        raise UserError("give the event logs to fit from: omokage fit user-model var/events/*.jsonl "
                        "--catalog CATALOG --out MODELS")
    if a.user_model_catalog is None:
        raise UserError("--catalog is required with user-model: the catalog the logged sessions ran on")
    missing = [str(p) for p in a.events if not Path(p).exists()]
    if missing:
        raise UserError(f"no such event log: {', '.join(missing)} (`omokage demo` logs to var/events/demo-events.jsonl, "
                        "`omokage serve` to var/events/events-DATE.jsonl, or to its store with --db)")
    from omokage.selection.user_model import MIN_PICKS, TEMPERATURE_RANGE
    engine = Engine.open(a.user_model_catalog, a.out)
    catalog = engine.catalog
    records, report = read_choice_records(a.events, catalog=catalog.fingerprint(), n_items=len(catalog))
    for problem in report.problems[:50]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more skipped lines", file=sys.stderr)
    other = (f" ({report.other_catalog} more were logged on another catalog and are left out)"
             if report.other_catalog else "")
    print(f"read {report.lines} lines from {report.files} file(s): {report.sessions} selections, "
          f"{report.decided_sessions} of this catalog ended in a decision{other}; {len(records)} picks made before "
          "the decided face was on screen")
    model = fit_user_model(engine, records, gaze_records=report.gaze_records, rating_records=report.rating_records)
    if not model.temperatures:
        counts = {}
        for r in records:
            counts[r.algorithm] = counts.get(r.algorithm, 0) + 1
        have = ", ".join(f"{alg} {n}" for alg, n in sorted(counts.items())) or "none"
        raise UserError(f"too few logged picks to fit: {MIN_PICKS} on one model are needed (have: {have}); "
                        "nothing saved")
    path = model.save(a.out)
    print(f"{'model':<14}{'picks':>8}{'temperature':>14}{'log-lik/pick':>14}")
    for alg, t in model.temperatures.items():
        print(f"{alg:<14}{model.picks[alg]:>8}{t:>14.4f}{model.log_likelihood_per_pick[alg]:>14.4f}")
    for alg, t in model.temperatures.items():
        if not TEMPERATURE_RANGE[0] * 1.01 < t < TEMPERATURE_RANGE[1] / 1.01:
            _note(f"{alg}: the temperature is at the edge of the range searched ({TEMPERATURE_RANGE[0]:g} to "
                  f"{TEMPERATURE_RANGE[1]:g}): its picks are {'all but random' if t > 1 else 'all but perfect'} "
                  "under this model's distances; check that the logs are of this catalog")
    if model.gaze:   # docs/gaze.md: the gaze term's temperature and weight, from the logged grids with gaze
        print(f"\n{'gaze':<14}{'grids':>8}{'temperature':>14}{'weight':>10}{'nats/grid':>12}")
        for alg, g in model.gaze.items():
            print(f"{alg:<14}{g['grids']:>8}{g['temperature']:>14.4f}{g['weight']:>10.4f}{g['gain_nats']:>12.4f}")
    if model.metric:   # docs/preference-model.md: the per-dimension metric people choose by
        print(f"\n{'metric':<14}{'picks':>8}{'nats/pick':>12}{'axis weights (min-max)':>26}")
        for alg, m in model.metric.items():
            sc = [v * v for v in m["scales"]]
            print(f"{alg:<14}{m['picks']:>8}{m['gain_nats']:>12.4f}{min(sc):>13.3f} - {max(sc):<10.3f}")
    if model.rating:   # docs/preference-model.md: how this catalog's users use the five stars
        print(f"\n{'ratings':<14}{'ratings':>8}{'offset':>10}{'scale':>10}{'lapse':>8}{'nats/rating':>13}")
        for alg, r in model.rating.items():
            print(f"{alg:<14}{r['ratings']:>8}{r['offset']:>10.3f}{r['scale']:>10.3f}{r['lapse']:>8.3f}"
                  f"{r['gain_nats']:>13.4f}" + ("" if r["informative"] else "   (the stars predict nothing held out: "
                                                "ratings are ignored)"))
    print(f"saved {path}/config.json; `omokage serve --models {a.out}` uses it")
    return 0


def _cmd_query(a) -> int:
    if a.server:
        if a.catalog is not None and a.models is None:
            raise UserError("with --server give only IMAGE (the server has its own catalog and models): "
                            "omokage query --server URL IMAGE")
        if a.catalog is not None:
            _note(f"--server: CATALOG and MODELS are not used; the server at {a.server} answers with its own")
        rows, recon_note = _query_server(a)
    else:
        if a.token:
            raise UserError("--token is for --server; a local query needs no token")
        if a.models is None:
            raise UserError("give CATALOG MODELS IMAGE (e.g. omokage query var/catalog var/models face.png), "
                            "or --server URL IMAGE to ask a running `omokage serve`")
        rows, recon_note = _query_local(a)
    if a.json:
        print(json.dumps({"model": a.model, "reconstruction": str(a.reconstruction) if a.reconstruction else None,
                          "items": rows}, indent=2, ensure_ascii=False))
    else:
        print(_table(rows))
        if recon_note:
            print(recon_note)
    return 0


def _note(text: str) -> None:
    print(f"omokage: note: {text}", file=sys.stderr)   # on stderr: --json output stays parseable


def _query_image_error(a, exc) -> UserError:
    """A query image that cannot be used: name the file as given, what is wrong and what to do."""
    if exc.reason == "unreadable" and exc.detail == "no such file":
        return UserError(f"IMAGE {a.image} does not exist; check the path (relative paths start in {Path.cwd()})")
    detail = exc.detail.split("; send ")[0]   # the accepted formats are named below, for a file
    return UserError(f"cannot use {a.image} as the query image: {detail}. Give a face image in JPEG, PNG, WebP, "
                     "BMP, GIF or TIFF (re-save it from an image editor if it is damaged)")


def _write_reconstruction(img, path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
    except (OSError, ValueError) as exc:   # ValueError: PIL cannot tell a format from the file name
        raise UserError(f"cannot write the reconstruction to {path}: {exc}; give a writable path ending in "
                        ".png or .jpg") from None
    return f"reconstruction written to {path}"


def _query_local(a) -> tuple[list[dict], str | None]:
    from PIL import Image

    from omokage.engine import Engine
    from omokage.features import ModelRepositoryError
    from omokage.imageio import ImageDecodeError, load_image_file
    try:
        engine = Engine.open(a.catalog, a.models, algorithms=[a.model])   # only the model asked for
    except ModelRepositoryError as exc:
        if f"no fitted {a.model!r} model" in str(exc):
            raise UserError(f"no fitted {a.model!r} model in {a.models}; fit it with `omokage fit {a.catalog} "
                            f"--models {a.model} --out {a.models}`, or choose another --model") from None
        raise
    try:
        rgb = load_image_file(a.image, engine.catalog.image_size)
    except ImageDecodeError as exc:
        raise _query_image_error(a, exc) from None
    k = a.k
    if k > len(engine.catalog):
        _note(f"-k {k}: the catalog has {len(engine.catalog)} faces; showing all of them")
        k = len(engine.catalog)
    result = engine.query_image(a.model, rgb, k=k)
    note = _write_reconstruction(Image.fromarray(result.reconstruction), a.reconstruction) \
        if a.reconstruction else None
    rows = [{"id": c.id, "distance": round(c.distance, 6), "title": engine.catalog.items[c.id].title,
             "url": engine.catalog.items[c.id].url} for c in result.neighbours]
    return rows, note


def _query_server(a) -> tuple[list[dict], str | None]:
    """The nearest faces from a running server: an image `start` (docs/protocol.md) whose first grid is the
    faces nearest to the image, with the `study` policy where the server offers it (plain nearest neighbours)."""
    import asyncio
    import io

    from PIL import Image

    from omokage.client import OmokageClient, OmokageError
    from omokage.imageio import ImageDecodeError, read_image_file, square_resize

    try:
        img = read_image_file(a.image)   # decoded here first: a bad file is named as the user gave it
    except ImageDecodeError as exc:
        raise _query_image_error(a, exc) from None

    async def ask():
        async with await OmokageClient.connect(websocket_url(a.server), token=a.token) as client:
            offered = client.welcome.get("algorithms", [])
            if a.model not in offered:
                training = {t.get("algorithm"): t for t in client.welcome.get("training", []) if isinstance(t, dict)}
                if a.model in training:   # v1.2: fitted in the background, served when ready
                    progress = training[a.model].get("progress")
                    done = f", {float(progress):.0%} done" if isinstance(progress, (int, float)) else ""
                    raise UserError(f"the server at {a.server} is still fitting {a.model!r}{done}; try again in a "
                                    f"moment, or choose one it serves now with --model: {', '.join(offered)}")
                raise UserError(f"the server at {a.server} serves {', '.join(offered) or 'no model'}, not "
                                f"{a.model!r}; choose one of those with --model")
            size = int(client.welcome.get("catalog", {}).get("image_size", 0)) or max(img.size)
            buf = io.BytesIO()   # cropped and resized as the server would; PNG: lossless and always accepted
            Image.fromarray(square_resize(img, size)).save(buf, format="PNG")
            policy = "study" if "study" in client.policies else None
            grid = await client.start(a.model, image=buf.getvalue(), policy=policy)
            return grid

    try:
        grid = asyncio.run(ask())
    except OmokageError as exc:
        hint = "; give the server's token with --token" if exc.code == "unauthorized" else ""
        raise UserError(f"the server at {a.server} answered {exc}{hint}") from None
    except OSError as exc:   # TimeoutError included
        raise UserError(f"cannot reach {a.server}: {exc}; is `omokage serve` running there? (the URL looks like "
                        "ws://HOST:PORT/ws)") from None
    except Exception as exc:   # e.g. websockets' InvalidURI, InvalidHandshake
        if type(exc).__module__.startswith("websockets"):
            raise UserError(f"cannot talk to {a.server}: {exc}; give the server's ws://HOST:PORT/ws "
                            "address") from None
        raise
    items = grid.items
    if a.k > len(items):
        _note(f"-k {a.k}: a server answers with the {len(items)} nearest faces (its first grid); showing those")
    rows = [{"id": i.id, "distance": round(i.distance, 6) if i.distance is not None else None, "title": i.title,
             "url": i.url} for i in items[:a.k]]
    note = None
    if a.reconstruction:
        if not grid.reconstruction:
            raise UserError(f"the server at {a.server} sent no reconstruction of the image")
        recon = Image.open(io.BytesIO(grid.reconstruction["data"]))
        note = _write_reconstruction(recon, a.reconstruction)
    return rows, note


def _table(rows: list[dict]) -> str:
    """The nearest faces as aligned columns under a header row."""
    header = ("rank", "id", "distance", "title", "url")
    cells = [(str(n), str(r["id"]), "" if r["distance"] is None else f"{r['distance']:.4f}", r["title"], r["url"])
             for n, r in enumerate(rows, 1)]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    right = (True, True, True, False, False)

    def line(c):
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(c, widths, right)).rstrip()
    return "\n".join(line(c) for c in [header, *cells])


def _serve_token(a) -> str | None:
    """--token, else the first line of --token-file, else $OMOKAGE_TOKEN (None: no token)."""
    if a.token is not None and a.token_file is not None:
        raise UserError("give the token once: --token or --token-file, not both")
    if a.token_file is not None:
        try:
            lines = a.token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError) as exc:
            raise UserError(f"cannot read --token-file {a.token_file}: {exc}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise UserError(f"--token-file {a.token_file} is empty; put the token on its first line")
        return token
    if a.token is not None:
        return a.token
    return os.environ.get("OMOKAGE_TOKEN") or None


def _cmd_serve(a) -> int:
    # another server on the same log or store: said now, not after seconds of importing and loading the models
    from omokage.store import serve_sinks
    from omokage.store.db import LOG_IN_USE, STORE_IN_USE, refuse_if_served
    events, store = serve_sinks(a.events, a.db, a.study)
    for path, refusal in ((events, LOG_IN_USE), (store, STORE_IN_USE)):
        if path is not None:
            refuse_if_served(path, refusal)
    from omokage.service.server import serve_forever
    scheme = "https" if a.tls_cert else "http"

    def announce(bound) -> None:   # for people, on stdout: stderr carries only the JSON log lines
        shown = "THIS-MACHINE" if a.host in ("0.0.0.0", "::") else f"[{a.host}]" if ":" in a.host else a.host
        print(f"omokage serve: open {scheme}://{shown}:{bound[1]}/ in a browser; clients connect to "
              f"{'wss' if a.tls_cert else 'ws'}://{shown}:{bound[1]}/ws (Ctrl+C to stop)", flush=True)

    return serve_forever(catalog=a.catalog, models=a.models, host=a.host, port=a.port, token=_serve_token(a),
                         on_ready=announce,
                         allow_origins=a.allow_origin, log_level=a.log_level, events_path=events,
                         tls_cert=a.tls_cert, tls_key=a.tls_key or a.tls_cert,
                         max_messages_per_second=a.max_messages_per_second, insecure=a.insecure,
                         public_names=a.public_name, fsync_events=not a.no_fsync, send_timeout=a.send_timeout,
                         background_fits=a.fit_in_background or (), store_path=store, study=a.study,
                         preview_backend=a.preview_backend, preview_size=a.preview_size,
                         calibration_dir=a.calibration, resume_ttl_s=60.0 * a.resume_minutes)


def websocket_url(url: str) -> str:
    """The server's WebSocket address from what a user may paste: the page's http(s)://HOST:PORT/ (what `omokage
    demo` prints) or ws(s)://HOST:PORT/ become ws(s)://HOST:PORT/ws; anything else is left as it is."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path
    if scheme in ("ws", "wss") and path in ("", "/"):
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


def _cmd_client(a) -> int:
    import asyncio

    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

    from omokage.client import OmokageError
    from omokage.demo import transcript_session
    url = websocket_url(a.url)
    try:
        asyncio.run(transcript_session(url, algorithm=a.algorithm, seed=a.seed, choices=a.choices, token=a.token,
                                       policy=a.policy))
    except OmokageError as exc:
        print(f"omokage: the server answered {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"omokage: cannot reach {url}: {exc}; is `omokage serve` running there?", file=sys.stderr)
        return 1
    except (InvalidURI, InvalidHandshake) as exc:     # not a WebSocket address, or not omokage's endpoint
        print(f"omokage: cannot talk to {url}: {exc}; give the server's ws://HOST:PORT/ws address",
              file=sys.stderr)
        return 1
    except (ConnectionError, ConnectionClosed) as exc:  # the server went away mid-session (restart, crash)
        print(f"omokage: the connection to {url} was lost mid-session ({exc}); is the server still "
              "running? Its log says why it closed", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(a) -> int:
    from omokage.demo import run_demo
    return run_demo(home=a.home, count=a.count, host=a.host, port=a.port, serve=not a.no_serve)


def _cmd_bench_fit(a) -> int:
    from omokage.bench.fit import run
    return run(count=a.count, out=a.out, ae_epochs=a.ae_epochs, home=a.home)


def _cmd_bench_policy(a) -> int:
    from omokage.bench.policy import run
    from omokage.engine import single_threaded_blas
    from omokage.selection import POLICIES
    policies = tuple(p.strip() for p in a.policies.split(",")) if a.policies else None
    unknown = [p for p in policies or () if p not in POLICIES]
    if unknown:
        raise UserError(f"--policies: unknown {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    single_threaded_blas()   # as the server runs
    return run(sizes=[int(s) for s in a.sizes.split(",")], sessions=a.sessions, policies=policies, out=a.out)


def _cmd_bench_knn(a) -> int:
    from omokage.bench.knn import run
    return run(sizes=[int(s) for s in a.sizes.split(",")], queries=a.queries, out=a.out)


def _cmd_bench_serve(a) -> int:
    from omokage.bench.serve import run
    return run(clients=[int(s) for s in a.clients.split(",")], sessions=a.sessions, out=a.out, home=a.home,
               policy=a.policy, durability_only=a.durability_only)


def _cmd_bench_attack(a) -> int:
    from omokage.bench.attack import run
    names = [n.strip() for n in a.attacks.split(",") if n.strip()] if a.attacks else None
    return run(out=a.out, home=a.home, seconds=a.seconds, attacks=names, count=a.count)


def _cmd_bench_choice(a) -> int:
    from omokage.bench.choice import parse_list, run
    from omokage.errors import UserError
    try:
        temperatures = [float(t) for t in parse_list(a.temperatures, "temperatures")]
    except ValueError:
        raise UserError(f"--temperatures {a.temperatures!r}: give numbers, e.g. 0,0.1,0.3,1") from None
    return run(users=a.users, max_steps=a.max_steps, temperatures=temperatures, seed=a.seed, dataset=a.dataset,
               out=a.out, home=a.home, policies=parse_list(a.policies, "policies"),
               models=parse_list(a.models, "models"), starts=parse_list(a.starts, "starts"), ae_epochs=a.ae_epochs,
               perceive=a.perceive, skip_below=a.skip_below, settle_share=a.settle_share, workers=a.workers,
               gaze=a.gaze, gaze_source=a.gaze_source, learned_metric=a.learned_metric, ratings=a.ratings)


def _cmd_bench_gaze(a) -> int:
    from omokage.bench.gaze import run
    return run(clients=a.clients, rate=a.rate, seconds=a.seconds, out=a.out, home=a.home,
               ingest_seconds=a.ingest_seconds)


def _cmd_bench_sketch(a) -> int:
    from omokage.bench.sketch import run
    run(datasets=[d.strip() for d in a.datasets.split(",") if d.strip()],
        backends=[b.strip() for b in a.backends.split(",") if b.strip()],
        clients=[int(c) for c in a.clients.split(",") if c.strip()], rate=a.rate,
        seconds=a.seconds, targets=a.targets, home=a.home, out=a.out, skip_latency=a.skip_latency,
        skip_usefulness=a.skip_usefulness, pen_up=max(0.0, a.pen_up) / 1000)
    return 0


def _cmd_bench_ideal(a) -> int:
    from omokage.bench.ideal import run
    try:
        temperatures = [float(t) for t in a.temperatures.split(",") if t.strip()]
        at = [int(k) for k in a.at.split(",") if k.strip()]
    except ValueError:
        raise UserError("--temperatures takes numbers and --at whole numbers, comma-separated") from None
    return run(users=a.users, temperatures=temperatures, at=at,
               datasets=[d.strip() for d in a.datasets.split(",") if d.strip()], policy=a.policy, seed=a.seed,
               out=a.out, home=a.home, workers=a.workers)


def _cmd_bench_generator(a) -> int:
    from omokage.bench.generator import run
    datasets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    if not datasets:
        raise UserError("--datasets is empty; give generated and/or anime-holoen20")
    return run(datasets=datasets, out=a.out, home=a.home, seed=a.seed, epochs=a.epochs,
               latency_seconds=a.latency_seconds)


def _cmd_bench_pick_information(a) -> int:
    from omokage.bench.pickinfo import run
    try:
        temperatures = [float(t) for t in a.temperatures.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--temperatures takes numbers, e.g. 0,0.1,0.3,1, not {a.temperatures!r}") from None
    return run(datasets=[d.strip() for d in a.datasets.split(",") if d.strip()],
               models=[m.strip() for m in a.models.split(",") if m.strip()] if a.models else None,
               temperatures=temperatures, picks=a.picks, seed=a.seed, home=a.home, out=a.out)


def _cmd_bench_identity(a) -> int:
    from omokage.bench.identity import run
    return run(datasets=[d.strip() for d in a.dataset.split(",") if d.strip()],
               models=[m.strip() for m in a.models.split(",") if m.strip()], home=a.home, out=a.out,
               seed=a.seed, epochs=a.epochs)


def _add_store_commands(sub) -> None:
    """`omokage events ...` and `omokage study ...` (the event store and user studies; docs/studies.md)."""
    ev = sub.add_parser("events", help="the event store: export it as JSON lines",
                        description="Read the event store (SQLite) that `omokage serve` writes.")
    esub = ev.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    ex = esub.add_parser("export", help="write the logged session events as JSON lines",
                         description="Write the session events of the store as JSON lines, the format of `serve "
                                     "--events` (what `omokage fit user-model` reads); with --wire, every message in "
                                     "and out too.")
    _store_arg(ex)
    ex.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    ex.add_argument("--wire", action="store_true", help="also every message in and out")
    ex.set_defaults(func=_cmd_events_export)

    st = sub.add_parser("study", help="user studies: create, list, export, report, drop, delete a participant",
                        description="User studies in the event store (docs/studies.md): define one in a TOML file, "
                                    "serve it with `omokage serve --study NAME`, then export and report it.",
                        epilog="examples:\n"
                               "  omokage study create study.toml\n"
                               "  omokage serve --catalog var/catalog --models var/models --study pilot\n"
                               "  omokage study report pilot --out var/report\n"
                               "  omokage study export pilot --format csv --out var/export",
                        formatter_class=_HelpFormatter)
    ssub = st.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    sc = ssub.add_parser("create", help="validate a study file and create the study in the store",
                         description="Validate STUDY.toml (conditions, participants, order, questionnaire) and write "
                                     "the study with each participant's plan of trials into the store. Errors name "
                                     "the line and the reason.")
    sc.add_argument("file", type=Path, metavar="STUDY.toml", help="the study file (docs/studies.md)")
    _store_arg(sc)
    sc.add_argument("--check", action="store_true", help="only validate the file; create nothing")
    sc.set_defaults(func=_cmd_study_create)
    se = ssub.add_parser("export", help="write a study's trials, actions and answers as CSV (or Parquet)",
                         description="One file per table under --out: conditions, participants (by pseudonym only), "
                                     "trials, actions (every choose, skip, rate and decide, with its step and time) "
                                     "and answers. Parquet needs pyarrow (pip install pyarrow).")
    se.add_argument("name", metavar="NAME", help="the study's name (as in its study file)")
    se.add_argument("--format", choices=("csv", "parquet"), default="csv",
                    help="csv or parquet (default csv; parquet needs pyarrow)")
    se.add_argument("--out", type=Path, default=None, help="folder to write (default var/export/NAME)")
    _store_arg(se)
    se.set_defaults(func=_cmd_study_export)
    sr = ssub.add_parser("report", help="write report.html and report.md with plots and statistics",
                         description="Steps to decision and time per choice per condition, Likert answers, best/worst "
                                     "votes; Friedman tests with Kendall's W, Wilcoxon signed-rank post-hoc tests "
                                     "(Holm) with matched-pairs r. Participants appear as P01, P02, ... only.")
    sr.add_argument("name", metavar="NAME", help="the study's name (as in its study file)")
    sr.add_argument("--out", type=Path, required=True, help="folder to write the report into")
    _store_arg(sr)
    sr.set_defaults(func=_cmd_study_report)
    sd = ssub.add_parser("delete-participant", help="remove everything recorded about one participant",
                         description="Delete the participant's trials, sessions, every message and event of those "
                                     "sessions and their answers from the store, and compact it so the deleted pages "
                                     "are gone from the file. JSON-lines logs given with --events are rewritten "
                                     "without those sessions.")
    sd.add_argument("name", metavar="NAME", help="the study's name (as in its study file)")
    sd.add_argument("code", metavar="CODE", help="the participant's code, as listed in the study file's participants")
    _store_arg(sd)
    _events_arg(sd, "the participant's")
    sd.set_defaults(func=_cmd_study_delete_participant)
    sl = ssub.add_parser("list", help="the studies in the store, with their progress",
                         description="Each study in the store: its name and title, conditions, participants, and "
                                     "trials planned, started and completed.")
    _store_arg(sl)
    sl.set_defaults(func=_cmd_study_list)
    sx = ssub.add_parser("drop", help="remove a study from the store (a study with data only with --force)",
                         description="Remove a study: its conditions, participants and plan. A study someone has "
                                     "started (trials, answers) is refused unless --force, which also deletes every "
                                     "participant's data as delete-participant does. Then `study create` can make it "
                                     "again from a corrected file. Refused while a server serves from the store.")
    sx.add_argument("name", metavar="NAME", help="the study's name (as in its study file)")
    sx.add_argument("--force", action="store_true", help="also when the study has data: delete it all")
    _store_arg(sx)
    _events_arg(sx, "the study's")
    sx.set_defaults(func=_cmd_study_drop)


def _store_arg(parser) -> None:
    parser.add_argument("--db", type=Path, default=Path("var/omokage.db"), help="the store (default var/omokage.db)")


def _events_arg(parser, whose: str) -> None:
    parser.add_argument("--events", type=Path, nargs="*", default=[], metavar="JSONL",
                        help=f"JSON-lines event logs to remove {whose} sessions from too")


def _cmd_events_export(a) -> int:
    from omokage.store import export_jsonl, open_database
    open_database(a.db, create=False).close()   # a missing or damaged store fails here, before --out is created
    if a.out is None:
        n = export_jsonl(a.db, sys.stdout.buffer, wire=a.wire)
        sys.stdout.flush()
    else:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "wb") as f:
            n = export_jsonl(a.db, f, wire=a.wire)
    print(f"exported {n} records from {a.db}" + (f" to {a.out}" if a.out else ""), file=sys.stderr)
    return 0


def _cmd_study_create(a) -> int:
    from omokage.study.definition import create_study, load_study
    study = load_study(a.file)
    for note in study.notes:
        print(f"note: {note}", file=sys.stderr)
    trials = study.practice_trials + study.trials_per_condition * len(study.conditions)
    if a.check:
        print(f"{a.file}: study {study.name!r} is valid: {len(study.conditions)} conditions, "
              f"{len(study.participants)} participants, {trials} trials each ({study.order} order)")
        return 0
    create_study(a.db, study, a.file.read_text(encoding="utf-8"))
    print(f"created study {study.name!r} in {a.db}: {len(study.conditions)} conditions "
          f"({', '.join(c.name for c in study.conditions)}), {len(study.participants)} participants, {trials} trials "
          f"each ({study.order} order). Serve it: omokage serve --catalog CATALOG --models MODELS --db {a.db} "
          f"--study {study.name}")
    return 0


def _cmd_study_export(a) -> int:
    from omokage.study.report import export_study
    out = a.out or Path("var") / "export" / a.name
    files = export_study(a.db, a.name, out, fmt=a.format)
    print(f"wrote {len(files)} files to {out}: {', '.join(p.name for p in files)}")
    return 0


def _cmd_study_report(a) -> int:
    from omokage.study.report import write_report
    paths = write_report(a.db, a.name, a.out)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _cmd_study_delete_participant(a) -> int:
    from omokage.study.report import delete_participant
    summary = delete_participant(a.db, a.name, a.code, jsonl=a.events)
    print(f"deleted participant {summary['pseudonym']} of study {a.name!r}: " +
          ", ".join(f"{n} {what}" for what, n in summary["rows"].items() if n))
    print(f"exports and reports made before this still hold {summary['pseudonym']}'s data: delete them and run "
          f"`omokage study export` / `omokage study report` again")
    return 0


def _cmd_study_list(a) -> int:
    import datetime

    from omokage.study.report import list_studies
    rows = list_studies(a.db)
    if not rows:
        print(f"no study in {a.db}; make one with `omokage study create STUDY.toml --db {a.db}`")
        return 0
    for r in rows:
        when = datetime.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M")
        print(f"{r['name']}  \"{r['title']}\"  created {when}: {r['conditions']} condition(s), {r['participants']} "
              f"participant(s), trials {r['completed']} completed / {r['started']} started / {r['trials']} planned")
    return 0


def _cmd_study_drop(a) -> int:
    from omokage.study.report import drop_study
    done = drop_study(a.db, a.name, force=a.force, jsonl=a.events)
    print(f"dropped study {a.name!r} ({done['participants']} participant(s), {done['trials_started']} trial(s) "
          f"started, {done['answers']} answer(s) deleted)")
    return 0


def _cmd_bench_study(a) -> int:
    from omokage.bench.study import run
    return run(participants=a.participants, kills=a.kills, out=a.out, home=a.home, seed=a.seed,
               gaze=None if a.gaze == "none" else a.gaze)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors: say what went wrong and what to do, no traceback
        from omokage.errors import UserError
        if isinstance(exc, UserError):
            print(f"omokage: error: {exc}", file=sys.stderr)
            return 2
        raise
