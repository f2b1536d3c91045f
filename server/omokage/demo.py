"""`omokage demo`: the main job on the embedded default catalog.

Generate the catalog if missing, fit raw, PCA and the sketch model (seconds) if missing or
stale, then serve them at once and fit NMF
and the autoencoder in the background, serving each when it is ready (the page shows them as "training" until then).
With --no-serve, everything is fitted first and one whole session is driven through a real server and printed.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from omokage.errors import UserError
from omokage.features import DEFAULT_ALGORITHMS

# Served as soon as the catalog exists (seconds to fit); the rest of DEFAULT_ALGORITHMS is fitted in the background.
FAST_ALGORITHMS = ("raw", "pca", "sketch")   # sketch: live sketch search, on top of PCA (seconds too)


def prepare(home: Path, count: int = 1500, seed: int = 0, algorithms=DEFAULT_ALGORITHMS, ae_epochs: int | None = None,
            progress: bool = True, steps: bool = False) -> tuple[Path, Path]:
    """The demo's catalog (home/catalog) and models (home/models): generated and fitted where missing or stale.
    steps: number the two lines [1/3], [2/3] (the demo's own third step follows)."""
    from omokage.catalog.generate import ensure_catalog
    from omokage.features.fitting import ensure_models
    catalog_dir, models_dir = Path(home) / "catalog", Path(home) / "models"
    print(f"{'[1/3] ' if steps else ''}catalog: {catalog_dir}", flush=True)
    ensure_catalog(catalog_dir, count=count, seed=seed, progress=progress)
    print(f"{'[2/3] ' if steps else ''}models: {models_dir}", flush=True)
    ensure_models(catalog_dir, models_dir, algorithms, ae_epochs=ae_epochs, progress=progress)
    return catalog_dir, models_dir


def describe(message: dict[str, Any]) -> str:
    """A message as one readable line: bins become their length, long lists are shortened, secrets (the access token,
    a v1.7 resume token) are shown as <secret>."""
    message = dict(message)
    if "token" in message:
        message["token"] = "<secret>"
    if isinstance(message.get("resume"), dict):
        message["resume"] = {**message["resume"], "token": "<secret>"}
    elif "resume" in message:
        message["resume"] = "<secret>"

    def short(v):
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>"
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, list):
            return [short(x) for x in v[:3]] + ([f"... {len(v) - 3} more"] if len(v) > 3 else [])
        if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
            return v[:12] + "…"
        return v
    return json.dumps(short(message), ensure_ascii=False, default=str)


async def transcript_session(url: str, algorithm: str = "pca", seed: int = 1, choices: int = 2,
                             out=print, token: str | None = None, policy: str | None = None) -> dict[str, Any]:
    """Drive one whole session with the Python client and print every frame (`policy` None: the server's default)."""
    from omokage.client import OmokageClient
    rng = random.Random(seed)
    trace = lambda direction, msg: out(f"{direction} {describe(msg)}")  # noqa: E731
    async with await OmokageClient.connect(url, trace=trace, token=token) as client:
        grid = await client.start(algorithm, seed=seed, policy=policy)
        await client.fetch_textures([i.texture for i in grid.items])
        for _ in range(choices):
            grid = await client.choose(grid.items[rng.randrange(len(grid.items))].id)
            await client.fetch_textures([i.texture for i in grid.items])
        rtt, offset = await client.ping()
        decided = await client.decide(grid.items[0].id)
        out(f"# round trip {rtt * 1000:.2f} ms, clock offset {offset * 1000:+.2f} ms; "
            f"decided on {decided['item']['title']!r} after {decided['steps']} steps"
            + (f" with policy {grid.policy}" if grid.policy else "")
            # a catalog ingested without a manifest has no product pages (the server sends "")
            + (f": open {decided['item']['url']}" if decided["item"].get("url") else
               ": it has no product page (give each face a url in the catalog's manifest)"))
        return decided


def check_port_free(host: str, port: int) -> None:
    """Fail now, before minutes of preparation, if the port is taken."""
    from omokage.service.server import check_port_free as check
    check(host, port, f"is another server (an earlier `omokage demo`?) running there? Stop it, or choose another "
                      f"port: omokage demo --port {port + 1}")


def run_demo(home: Path, count: int = 1500, host: str = "127.0.0.1", port: int = 8765, serve: bool = True) -> int:
    if not serve:
        catalog_dir, models_dir = prepare(Path(home), count, steps=True)
        return _transcript_demo(catalog_dir, models_dir)
    check_port_free(host, port)
    from omokage.store.db import LOG_IN_USE, refuse_if_served
    events_path = Path(home) / "events" / "demo-events.jsonl"
    refuse_if_served(events_path, LOG_IN_USE)    # another demo in this home: said now, not after the preparation
    background = [a for a in DEFAULT_ALGORITHMS if a not in FAST_ALGORITHMS]
    catalog_dir, models_dir = prepare(Path(home), count, algorithms=FAST_ALGORITHMS, steps=True)
    from omokage.features.fitting import stale_models
    training = stale_models(catalog_dir, models_dir, background)
    from omokage.service.server import serve_forever
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host

    def announce(bound) -> None:  # printed once the server answers, not before
        note = (f"\n    {', '.join(training)} will be served when fitted in the background (NMF in about a "
                f"minute, the autoencoder in a few; the page shows their progress)" if training else "")
        print(f"[3/3] serving on ws://{host}:{bound[1]}/ws\n\n    Open http://{shown}:{bound[1]}/ in a browser "
              f"(Ctrl+C to stop){note}\n", flush=True)

    return serve_forever(catalog_dir, models_dir, host=host, port=port, log_level="warning",
                         events_path=events_path, on_ready=announce,
                         background_fits=background, fit_report=lambda text: print(f"    {text}", flush=True))


def _transcript_demo(catalog_dir: Path, models_dir: Path) -> int:
    print("[3/3] one simulated session against a real server on a free loopback port:", flush=True)
    from omokage.engine import Engine
    from omokage.service.server import OmokageServer, configure_logging
    configure_logging("warning")

    async def main():
        server = OmokageServer(Engine.open(catalog_dir, models_dir))
        loop = asyncio.get_running_loop()
        ready, stop = loop.create_future(), loop.create_future()
        task = asyncio.create_task(server.run("127.0.0.1", 0, ready=ready, stop=stop))
        _, bound_port = await ready
        try:
            await transcript_session(f"ws://127.0.0.1:{bound_port}/ws")
        finally:
            stop.set_result(None)
            await task
    asyncio.run(main())
    return 0
