"""Fit slow models in the background while the server already serves the fast ones.

The first run of `omokage demo` used to wait for every model before printing its URL: the autoencoder alone took
40 s on a quiet 2-core machine and 25 minutes under load. Now raw pixels and PCA (seconds) are served at once and
NMF and the autoencoder are fitted here, one at a time, each in a child process (`python -m
omokage.service.background`) that runs at a lower priority with the cores that are free, so sessions keep their
latency. The child reports progress as JSON lines; the server shows it to clients (protocol v1.2 `training` and
`models`) and starts serving each model the moment it is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

log = logging.getLogger("omokage.server")

# A child that prints nothing for this long is stuck (an epoch takes ~1-3 s on a quiet machine, under a minute
# under heavy load); it is killed and the model is left unserved.
SILENT_CHILD_S = 600.0


@dataclass
class FitProgress:
    algorithm: str
    progress: float = 0.0            # 0..1
    started: float | None = None     # monotonic time the child started
    eta_s: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"algorithm": self.algorithm, "progress": round(float(self.progress), 4)}
        if self.eta_s is not None:
            wire["eta_s"] = round(float(self.eta_s), 1)
        return wire


class BackgroundFitter:
    """Fits `names` on `catalog_dir` into `models_dir`, one child process at a time.

    `on_change()` is called when the training list or a progress figure changes; `on_fitted(name)` when a model
    has been saved (the server loads and serves it). Both run on the event loop."""

    def __init__(self, catalog_dir: Path, models_dir: Path, names: Sequence[str], log_dir: Path | None = None,
                 ae_epochs: int | None = None, niceness: int = 10, report: Callable[[str], None] | None = None):
        self.catalog_dir = Path(catalog_dir)
        self.models_dir = Path(models_dir)
        self.queue = [FitProgress(name) for name in names]
        self.log_dir = Path(log_dir) if log_dir is not None else self.models_dir / "logs"
        self.ae_epochs = ae_epochs
        self.niceness = niceness
        self.report = report  # human progress lines (the demo prints them), beside the log records
        self._reported: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.fitted: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._log: Any = None   # the running child's log file (its stderr), open while it runs

    @property
    def training(self) -> list[dict[str, Any]]:
        return [p.to_wire() for p in self.queue]

    def command(self, name: str) -> list[str]:
        cmd = [sys.executable, "-m", "omokage.service.background", str(self.catalog_dir), str(self.models_dir), name,
               "--niceness", str(self.niceness)]
        if self.ae_epochs is not None:
            cmd += ["--ae-epochs", str(self.ae_epochs)]
        return cmd

    async def run(self, on_change: Callable[[], None], on_fitted: Callable[[str], Awaitable[None]]) -> None:
        while self.queue:
            current = self.queue[0]
            try:
                ok = await self._fit_one(current, on_change)
            except Exception as exc:  # cannot start the child, an unreadable line...: this model only is given up
                self.failed[current.algorithm] = repr(exc)
                log.exception("background fit failed", extra={"fields": {"algorithm": current.algorithm}})
                self._say(f"{current.algorithm}: fitting failed ({exc!r}); it is not served")
                ok = False
            self.queue.pop(0)  # off the training list before it is served: never both
            if ok:
                try:
                    await on_fitted(current.algorithm)
                    self.fitted.append(current.algorithm)
                    self._say(f"{current.algorithm}: fitted in {time.monotonic() - current.started:.0f} s, now served "
                              "(open pages add it without a reload)")
                except Exception as exc:  # a model that cannot be loaded is not served; the others still are
                    self.failed[current.algorithm] = repr(exc)
                    log.exception("could not serve a background-fitted model",
                                  extra={"fields": {"algorithm": current.algorithm}})
            on_change()

    async def _fit_one(self, current: FitProgress, on_change: Callable[[], None]) -> bool:
        name = current.algorithm
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"fit-{name}.log"
        current.started = time.monotonic()
        log.info("fitting in the background", extra={"fields": {"algorithm": name, "log": str(log_path)}})
        self._say(f"{name}: fitting in the background (log: {log_path})")
        with open(log_path, "wb") as child_log:
            self._log = child_log
            self._process = process = await asyncio.create_subprocess_exec(
                *self.command(name), stdout=asyncio.subprocess.PIPE, stderr=child_log, stdin=asyncio.subprocess.DEVNULL,
                limit=1 << 20)   # a long line from native code on fd 1 is skipped, not fatal
            try:
                while True:
                    try:
                        line = await asyncio.wait_for(process.stdout.readline(), SILENT_CHILD_S)
                    except TimeoutError:
                        process.kill()
                        self.failed[name] = f"silent for {SILENT_CHILD_S:g} s"
                        break
                    if not line:
                        break
                    self._progress(current, line, on_change)
                rc = await process.wait()
            finally:
                if process.returncode is None:  # cancelled (the server stops): the child goes with it
                    process.kill()
                    with contextlib.suppress(ProcessLookupError):
                        await process.wait()
                self._process = None
                self._log = None
        if rc != 0 and name not in self.failed:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            self.failed[name] = f"exit status {rc}: " + " | ".join(tail)
        if name in self.failed:
            log.error("background fit failed; the model is not served", extra={"fields": {
                "algorithm": name, "why": self.failed[name], "log": str(log_path)}})
            self._say(f"{name}: fitting failed ({self.failed[name]}); it is not served. See {log_path}")
            return False
        log.info("fitted in the background", extra={"fields": {
            "algorithm": name, "seconds": round(time.monotonic() - current.started, 1)}})
        return True

    def _say(self, text: str) -> None:
        if self.report is not None:
            self.report(text)

    def _progress(self, current: FitProgress, line: bytes, on_change: Callable[[], None]) -> None:
        try:
            record = json.loads(line)
            fraction = float(record["progress"])
        except (ValueError, KeyError, TypeError):
            return  # not a progress line
        current.progress = min(1.0, max(0.0, fraction))
        elapsed = time.monotonic() - (current.started or time.monotonic())
        current.eta_s = elapsed * (1 - current.progress) / current.progress if current.progress > 0.02 else None
        quarter = int(current.progress * 4)
        if 0 < quarter < 4 and self._reported.get(current.algorithm, 0) < quarter:
            self._reported[current.algorithm] = quarter
            eta = f", about {current.eta_s:.0f} s to go" if current.eta_s is not None else ""
            text = f"{current.algorithm}: {quarter * 25}% fitted{eta}"
            self._say(text)
            if self._log is not None:   # the log too, else it shows only "fitting ..." for minutes
                self._log.write(f"  {text}\n".encode())
                self._log.flush()   # the child writes to the same open file (its offset is shared)
        on_change()

    def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()


def _die_with_parent() -> None:
    """A server killed outright (SIGKILL, OOM) cannot stop its child: on Linux the kernel does it instead."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _child(argv: Sequence[str] | None = None) -> int:
    """The child process: fit one model, reporting {"progress": f} lines on stdout; everything else to stderr."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m omokage.service.background",
                                description="Fit one model for a running server (used by `omokage demo`).")
    p.add_argument("catalog", type=Path)
    p.add_argument("models", type=Path)
    p.add_argument("name")
    p.add_argument("--niceness", type=int, default=10)
    p.add_argument("--ae-epochs", type=int, default=None)
    a = p.parse_args(argv)
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(a.niceness)  # the server's sessions come first
    out = sys.stdout

    def emit(name: str, fraction: float) -> None:
        out.write(json.dumps({"algorithm": name, "progress": fraction}) + "\n")
        out.flush()

    from omokage.features.fitting import fit_models
    from omokage.features.training import progress_hook
    emit(a.name, 0.0)
    with contextlib.redirect_stdout(sys.stderr), progress_hook(emit):
        fit_models(a.catalog, a.models, [a.name], ae_epochs=a.ae_epochs, progress=False)
    emit(a.name, 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
