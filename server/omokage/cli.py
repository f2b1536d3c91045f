"""The `omokage` command line. Each command imports its machinery lazily so `--help` is instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omokage import PROTOCOL_VERSION, __version__
from omokage.errors import UserError

DEFAULT_HOME = Path("var")  # demo catalog and models live here, relative to where omokage runs


def _add_catalog_commands(sub) -> None:
    cat = sub.add_parser("catalog", help="create and inspect face catalogs",
                         description="Create a face catalog (generated or from your own images) and inspect it.")
    csub = cat.add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")

    gen = csub.add_parser("generate", help="draw N procedural anime-style avatar faces",
                          description="Draw N distinct anime-style avatar faces deterministically from a seed. "
                                      "Each item keeps its generating attributes, a title and a product URL.")
    gen.add_argument("--count", type=int, default=1500, help="number of faces (default 1500; the study had 1462)")
    gen.add_argument("--out", type=Path, required=True, help="catalog directory to create")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same catalog)")
    gen.add_argument("--size", type=int, default=200, help="thumbnail size in pixels (default 200)")
    gen.add_argument("--force", action="store_true", help="replace an existing catalog at --out")
    gen.set_defaults(func=_cmd_generate)

    ing = csub.add_parser("ingest", help="build a catalog from a folder of images",
                          description="Find faces in a folder of images, crop them square with a margin, resize, "
                                      "drop near-duplicates and write a catalog. Bad files are skipped with a reason.")
    ing.add_argument("images_dir", type=Path, metavar="IMAGES_DIR")
    ing.add_argument("--out", type=Path, required=True, help="catalog directory to create")
    ing.add_argument("--manifest", type=Path, help="CSV with columns file,title,url[,extra...]; file is relative to IMAGES_DIR")
    ing.add_argument("--detector", default="none",
                     help="none (images already are face crops), haar-frontal (photos of people), or "
                          "cascade:PATH (an OpenCV cascade XML, e.g. nagadomi's lbpcascade_animeface.xml)")
    ing.add_argument("--size", type=int, default=200, help="output size in pixels (default 200)")
    ing.add_argument("--margin", type=float, default=0.25, help="margin around a detected face, as a fraction of its size")
    ing.add_argument("--dedup-threshold", type=int, default=6, metavar="BITS",
                     help="drop a face whose 64-bit perceptual hash is within BITS of an earlier one and whose "
                          "colours match (default 6; -1 keeps near-duplicates, e.g. several photos of one sitter)")
    ing.add_argument("--force", action="store_true", help="replace an existing catalog at --out")
    ing.set_defaults(func=_cmd_ingest)

    sheet = csub.add_parser("sheet", help="write a contact sheet PNG of a catalog",
                            description="Write a grid of thumbnails (the first N items) to look at a catalog.")
    sheet.add_argument("catalog", type=Path, metavar="CATALOG")
    sheet.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sheet.add_argument("--count", type=int, default=64)
    sheet.add_argument("--columns", type=int, default=8)
    sheet.set_defaults(func=_cmd_sheet)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omokage",
        description="omokage helps a person in VR choose an avatar by its face: it learns features of every face in a "
                    "catalog and runs a pick-1-of-9 selection loop over a WebSocket + MessagePack protocol.",
        epilog="Start with `omokage demo`: it generates the default catalog, fits the models and serves them.")
    p.add_argument("--version", action="version", version=f"omokage {__version__} (protocol {PROTOCOL_VERSION})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_catalog_commands(sub)

    fit = sub.add_parser("fit", help="fit feature models on a catalog into a model repository",
                         description="Fit feature models (raw pixels, PCA, NMF, a convolutional autoencoder, a "
                                     "contrastive embedding) on a catalog and save them as MODELS/NAME/VERSION/ "
                                     "without pickle.")
    fit.add_argument("catalog", metavar="CATALOG | user-model",
                     help="the catalog to fit feature models on, or `user-model` to fit the preference model's "
                          "user-response temperature from logged sessions (then give EVENTS and --catalog)")
    fit.add_argument("events", nargs="*", type=Path, metavar="EVENTS",
                     help="with user-model: the server's session event logs (JSON lines, var/events/*.jsonl)")
    fit.add_argument("--catalog", dest="user_model_catalog", type=Path, default=None, metavar="CATALOG",
                     help="with user-model: the catalog the logged sessions ran on (its models are read from --out)")
    fit.add_argument("--models", default="raw,pca,nmf,ae",
                     help="comma-separated: raw,pca,nmf,ae,contrastive (default raw,pca,nmf,ae; contrastive, a "
                          "self-supervised embedding served by ONNX Runtime, trains for minutes on a CPU)")
    fit.add_argument("--out", type=Path, default=Path("models"), help="model repository (default ./models)")
    fit.add_argument("--components", type=int, default=30, help="latent size for pca, nmf, ae (default 30)")
    fit.add_argument("--ae-epochs", type=int, default=None, help="autoencoder training epochs (default: the model's)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=_cmd_fit)

    q = sub.add_parser("query", help="find the catalog faces nearest to an image",
                       description="Project IMAGE through a fitted model, print its nearest catalog items and "
                                   "write the model's reconstruction of the image.")
    q.add_argument("catalog", type=Path, metavar="CATALOG")
    q.add_argument("models", type=Path, metavar="MODELS", help="model repository")
    q.add_argument("image", type=Path, metavar="IMAGE")
    q.add_argument("--model", default="pca", help="raw, pca, nmf, ae or contrastive (default pca)")
    q.add_argument("-k", type=int, default=9, help="number of neighbours (default 9)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--reconstruction", type=Path, default=Path("reconstruction.png"),
                   help="where to write the reconstruction (default reconstruction.png)")
    q.set_defaults(func=_cmd_query)

    s = sub.add_parser("serve", help="serve the selection loop over WebSocket + MessagePack",
                       description="Serve protocol v1 (docs/protocol.md) on ws://HOST:PORT/, with a health "
                                   "endpoint at http://HOST:PORT/healthz and the web client at http://HOST:PORT/.")
    s.add_argument("--catalog", type=Path, required=True)
    s.add_argument("--models", type=Path, required=True, help="model repository")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only); any other "
                   "address needs --token, or --insecure")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--token", help="require this token in `hello` before serving anything else (and in "
                   "`Authorization: Bearer TOKEN` for the details of /healthz)")
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
    s.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    s.add_argument("--events", type=Path, help="append session events as JSON lines here "
                   "(default var/events/events-DATE.jsonl)")
    s.add_argument("--no-fsync", action="store_true", help="write session events without fsync: faster on a slow "
                   "disk, but a power loss may lose events already acknowledged (a process crash loses none)")
    s.add_argument("--send-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="disconnect a client that reads none of its replies for this long (default 10)")
    s.add_argument("--log-level", default="info", help="debug, info, warning or error (logs are JSON lines on stderr)")
    s.set_defaults(func=_cmd_serve)

    cl = sub.add_parser("client", help="run one whole session against a server and print the transcript",
                        description="Connect to an omokage server, run one selection session (start, choose, "
                                    "decide, fetching textures) and print every message: a check of a deployment.")
    cl.add_argument("url", metavar="URL", help="e.g. ws://127.0.0.1:8765/ws")
    cl.add_argument("--algorithm", default="pca")
    cl.add_argument("--choices", type=int, default=2, help="how many times to choose before deciding")
    cl.add_argument("--seed", type=int, default=1)
    cl.add_argument("--policy", help="how the server picks the faces: one of its welcome.policies (e.g. study, "
                    "infogain); default: the server's default_policy")
    cl.add_argument("--token")
    cl.set_defaults(func=_cmd_client)

    d = sub.add_parser("demo", help="generate the default catalog, fit the models and serve them",
                       description="The main job on the embedded default catalog: generate it if missing, fit "
                                   "raw/pca/nmf/ae if missing, then serve it and print the URL to open.")
    d.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the demo catalog and models live (default ./var)")
    d.add_argument("--count", type=int, default=1500)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8765)
    d.add_argument("--no-serve", action="store_true", help="prepare everything and run one simulated session, then exit")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="benchmarks that write a results file and print a table",
                       description="Benchmarks. Each writes JSON/markdown figures under --out and prints a table.")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    bf = bsub.add_parser("fit", help="fit time and reconstruction error of raw/pca/nmf/ae beside the study's table")
    bf.add_argument("--count", type=int, default=1462)
    bf.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bf.add_argument("--ae-epochs", type=int, default=None)
    bf.set_defaults(func=_cmd_bench_fit)
    bk = bsub.add_parser("knn", help="9-NN query time over 10k and 1M items, exact vs faiss")
    bk.add_argument("--sizes", default="10000,1000000")
    bk.add_argument("--queries", type=int, default=300)
    bk.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bk.set_defaults(func=_cmd_bench_knn)
    bp = bsub.add_parser("policy", help="one selection step (belief update + next grid) per display policy at "
                         "1.5k, 10k and 100k items",
                         description="Time what the server does on `choose` for each display policy: add the pick to "
                                     "the belief and choose the next 8 faces, on clustered 30-d features of 1.5k, 10k "
                                     "and 100k items, with the study's nearest-neighbour policy as the baseline in the "
                                     "same run. Goals: p99 <= 2 ms at 10k items, <= 20 ms at 100k.")
    bp.add_argument("--sizes", default="1500,10000,100000", help="comma-separated catalog sizes")
    bp.add_argument("--sessions", type=int, default=30, help="sessions per row, each 8 steps (default 30)")
    bp.add_argument("--policies", default=None, help="comma-separated (default: all but random)")
    bp.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bp.set_defaults(func=_cmd_bench_policy)
    bs = bsub.add_parser("serve", help="N concurrent protocol clients over loopback running whole sessions")
    bs.add_argument("--clients", default="1,10,100", help="comma-separated concurrency levels")
    bs.add_argument("--sessions", type=int, default=3, help="whole sessions per client, at least (each level runs "
                    "at least 100 sessions in all)")
    bs.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    bs.add_argument("--home", type=Path, default=DEFAULT_HOME)
    bs.add_argument("--policy", default=None, help="the selection policy every simulated user starts with "
                    "(default: the server's default policy)")
    bs.set_defaults(func=_cmd_bench_serve)
    ba = bsub.add_parser("attack", help="the hardening attacks against a real server, with a healthy client "
                         "watching", description="Run each attack of issue 10 (hostile frames, a client that stops "
                         "reading, texture floods, HTTP abuse, token guessing, hostile uploads) against a real "
                         "`omokage serve` on loopback, and write, per attack: held or degraded, a healthy client's "
                         "ping p50/p99 during it, and the server's RSS before, during and after.")
    ba.add_argument("--seconds", type=float, default=8.0, help="how long each attack runs (default 8)")
    ba.add_argument("--attacks", default=None, help="comma-separated subset (default all): nested_frame, "
                    "slow_reader, texture_flood, http, uploads, token_guessing")
    ba.add_argument("--count", type=int, default=500, help="faces in the generated catalog (default 500)")
    ba.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ba.add_argument("--home", type=Path, default=DEFAULT_HOME)
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
    bc.add_argument("--seed", type=int, default=0)
    bc.add_argument("--dataset", default="generated", help="generated (the demo catalog), a folder name under "
                    "../shared/data (e.g. anime-holoen20, faces94-female), or the path of a labelled image folder: "
                    "labels.csv with file,label[,split] or one sub-folder per identity (a split is made when none is "
                    "given)")
    bc.add_argument("--skip-below", type=float, default=None, metavar="D", help="the user answers \"none of these\" "
                    "when no shown face is closer to the target than D median perceptual distances (default: off)")
    bc.add_argument("--settle-share", type=float, default=0.01, help="settle rule: delta is the distance within which "
                    "this share of the faces of other identities lies from a target, on average (default 0.01)")
    bc.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
    bc.add_argument("--ae-epochs", type=int, default=None, help="autoencoder epochs if it must be fitted "
                    "(default: the model's)")
    bc.add_argument("--perceive", choices=["identity", "character", "image"], default="identity",
                    help="labelled sets: the simulated user compares faces with the target's identity (person or "
                         "character; the default) or with the one target image")
    bc.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/choice for "
                    "generated, benchmarks/results/choice-<folder name> for a labelled set)")
    bc.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where catalogs and models are prepared (default "
                    "./var; a labelled set gets HOME/<name>-<fingerprint>)")
    bc.set_defaults(func=_cmd_bench_choice)
    bi = bsub.add_parser("identity", help="1-NN character/person accuracy of each feature space on labelled sets",
                         description="Fit each model on the train split of a labelled image set (no labels used) "
                                     "and report the leave-one-out 1-NN identity accuracy in its space, beside the "
                                     "simulated user's colour+HOG descriptor.")
    bi.add_argument("--dataset", default="anime-holoen20", help="comma-separated: anime-holoen20, faces94-female "
                    "(under ../shared/data) or paths laid out like them (default anime-holoen20)")
    bi.add_argument("--models", default="raw,pca,nmf,contrastive",
                    help="comma-separated (default raw,pca,nmf,contrastive)")
    bi.add_argument("--epochs", type=int, default=None, help="training epochs of ae/contrastive (default: the model's)")
    bi.add_argument("--seed", type=int, default=0)
    bi.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                    help="writes embedding-identity.md and .json here (default benchmarks/results)")
    bi.add_argument("--home", type=Path, default=DEFAULT_HOME, help="where the ingested catalogs live (default ./var)")
    bi.set_defaults(func=_cmd_bench_identity)
    return p


# --- command handlers -------------------------------------------------------------------------

def _cmd_generate(a) -> int:
    from omokage.catalog.generate import generate_catalog
    path = generate_catalog(a.out, count=a.count, seed=a.seed, image_size=a.size, overwrite=a.force)
    print(f"wrote {a.count} faces to {path}")
    return 0


def _cmd_ingest(a) -> int:
    from omokage.catalog.ingest import ingest_images
    report = ingest_images(a.images_dir, a.out, manifest=a.manifest, detector=a.detector,
                           image_size=a.size, margin=a.margin, overwrite=a.force,
                           dedup_threshold=a.dedup_threshold)
    print(report.summary())
    return 0 if report.added else 1


def _cmd_sheet(a) -> int:
    from omokage.catalog.store import Catalog
    from omokage.catalog.sheet import contact_sheet
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
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    fit_models(a.catalog, a.out, names, n_components=a.components, ae_epochs=a.ae_epochs, seed=a.seed)
    return 0


def _cmd_fit_user_model(a) -> int:
    from omokage.engine import Engine
    from omokage.selection.user_model import fit_user_model, read_choice_records
    if not a.events:
        raise UserError("give the event logs to fit from: omokage fit user-model var/events/*.jsonl "
                        "--catalog CATALOG --out MODELS")
    if a.user_model_catalog is None:
        raise UserError("--catalog is required with user-model: the catalog the logged sessions ran on")
    records, report = read_choice_records(a.events)
    for problem in report.problems[:50]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(report.problems) > 50:
        print(f"... and {len(report.problems) - 50} more skipped lines", file=sys.stderr)
    print(f"read {report.lines} lines from {report.files} file(s): {report.sessions} sessions, "
          f"{report.decided_sessions} ended in a decision, {len(records)} picks before a decision")
    engine = Engine.open(a.user_model_catalog, a.out)
    model = fit_user_model(engine, records)
    if not model.temperatures:
        raise UserError("too few logged picks per model to fit (need 20 on one model); nothing saved")
    path = model.save(a.out)
    print(f"{'model':<14}{'picks':>8}{'temperature':>14}{'log-lik/pick':>14}")
    for alg, t in model.temperatures.items():
        print(f"{alg:<14}{model.picks[alg]:>8}{t:>14.4f}{model.log_likelihood_per_pick[alg]:>14.4f}")
    print(f"saved {path}/config.json; `omokage serve --models {a.out}` uses it")
    return 0


def _cmd_query(a) -> int:
    from PIL import Image
    from omokage.engine import Engine
    from omokage.imageio import load_image_file
    engine = Engine.open(a.catalog, a.models, algorithms=[a.model])
    rgb = load_image_file(a.image, engine.catalog.image_size)
    result = engine.query_image(a.model, rgb, k=a.k)
    Image.fromarray(result.reconstruction).save(a.reconstruction)
    rows = [{"id": c.id, "distance": round(c.distance, 6), "title": engine.catalog.items[c.id].title,
             "url": engine.catalog.items[c.id].url} for c in result.neighbours]
    if a.json:
        print(json.dumps({"model": a.model, "reconstruction": str(a.reconstruction), "items": rows}, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:>6}  {r['distance']:>10.4f}  {r['title']}  {r['url']}")
        print(f"reconstruction written to {a.reconstruction}")
    return 0


def _cmd_serve(a) -> int:
    from omokage.service.server import serve_forever
    return serve_forever(catalog=a.catalog, models=a.models, host=a.host, port=a.port, token=a.token,
                         allow_origins=a.allow_origin, log_level=a.log_level, events_path=a.events,
                         tls_cert=a.tls_cert, tls_key=a.tls_key or a.tls_cert,
                         max_messages_per_second=a.max_messages_per_second, insecure=a.insecure,
                         public_names=a.public_name, fsync_events=not a.no_fsync, send_timeout=a.send_timeout)


def _cmd_client(a) -> int:
    import asyncio
    from omokage.client import OmokageError
    from omokage.demo import transcript_session
    try:
        asyncio.run(transcript_session(a.url, algorithm=a.algorithm, seed=a.seed, choices=a.choices, token=a.token,
                                       policy=a.policy))
    except OmokageError as exc:
        print(f"omokage: the server answered {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"omokage: cannot reach {a.url}: {exc}; is `omokage serve` running there?", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(a) -> int:
    from omokage.demo import run_demo
    return run_demo(home=a.home, count=a.count, host=a.host, port=a.port, serve=not a.no_serve)


def _cmd_bench_fit(a) -> int:
    from omokage.bench.fit import run
    return run(count=a.count, out=a.out, ae_epochs=a.ae_epochs)


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
               policy=a.policy)


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
               perceive=a.perceive, skip_below=a.skip_below, settle_share=a.settle_share, workers=a.workers)


def _cmd_bench_identity(a) -> int:
    from omokage.bench.identity import run
    return run(datasets=[d.strip() for d in a.dataset.split(",") if d.strip()],
               models=[m.strip() for m in a.models.split(",") if m.strip()], home=a.home, out=a.out,
               seed=a.seed, epochs=a.epochs)


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
