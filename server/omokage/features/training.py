"""What training code shares: how many threads to use, and where epoch progress goes.

PyTorch sizes its thread pool to every core. On a machine whose cores are busy (a shared laptop, a server that
also answers users) its worker threads spin waiting for each other: an autoencoder epoch went from ~1.3 s to
26-96 s on 2 shared cores. So training takes the cores that are free when it starts, at least one.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Callable, Iterator

ProgressHook = Callable[[str, float], None]  # (model name, fraction done in [0, 1])

_hook: contextvars.ContextVar[ProgressHook | None] = contextvars.ContextVar("omokage_fit_progress", default=None)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def training_threads(limit: int | None = None) -> int:
    """Threads for one training job: OMOKAGE_TRAIN_THREADS if set, else the cores not busy right now (the
    one-minute load average says how many are), at least 1 and at most `limit`."""
    env = os.environ.get("OMOKAGE_TRAIN_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    cores = usable_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    threads = max(1, min(cores, int(cores - busy + 0.5)))
    return min(threads, limit) if limit else threads


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def progress_hook(hook: ProgressHook) -> Iterator[None]:
    """Within the block, training loops report their progress to `hook` (beside their tqdm bar)."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def report_progress(name: str, fraction: float) -> None:
    hook = _hook.get()
    if hook is not None:
        hook(name, min(1.0, max(0.0, float(fraction))))
