"""Group commit on one writer thread: what the JSON-lines event log and the SQLite event store share.

Callers on the event loop queue an item with a future (or without one, for what nothing acknowledges); the writer
thread takes everything queued so far, writes it in one go (one fsync, one transaction) and settles every future of
that batch with the batch's outcome. Concurrent sessions so share one sync, and the loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class Flush:
    """A marker a blocking caller queues to learn that everything queued before it is written."""

    def __init__(self) -> None:
        self.event = threading.Event()


class GroupCommitWriter:
    """Subclasses write a batch in `_write_batch(items)`; an exception there fails that batch's futures."""

    def __init__(self, thread_name: str, threaded: bool = True):
        """`threaded=False`: no writer thread; the subclass writes on the caller's thread instead."""
        self._cond = threading.Condition()
        self._queue: list[tuple[Any, asyncio.Future | Flush | None]] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
            self._thread.start()

    def _enqueue(self, item: Any, done: asyncio.Future | Flush | None = None) -> None:
        with self._cond:
            self._queue.append((item, done))
            self._cond.notify()

    def _enqueue_commit(self, item: Any) -> asyncio.Future:
        """Queue `item`; the future completes once the batch holding it is written."""
        done = asyncio.get_running_loop().create_future()
        self._enqueue(item, done)
        return done

    acknowledged_first = False   # True: items with a future are written before, and apart from, the others

    def _write_batch(self, items: list[Any], acknowledged: bool = True) -> list[BaseException | None] | None:
        """Write every item; raise to fail them all, or return one error (or None) per item to fail some.
        acknowledged=False (only with `acknowledged_first`): nothing waits for these items."""
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch and self._closing:
                    return
            if self.acknowledged_first:
                # what a reply waits for goes first, in a write of its own; the rest (messages logged for the record,
                # a gaze stream) follows and never delays an acknowledgement
                parts = [([e for e in batch if isinstance(e[1], asyncio.Future)], True),
                         ([e for e in batch if not isinstance(e[1], asyncio.Future)], False)]
            else:
                parts = [(batch, True)]
            for part, acknowledged in parts:
                if part:
                    self._write_part(part, acknowledged)

    def _write_part(self, part: list, acknowledged: bool) -> None:
        try:
            errors = self._write_batch([item for item, _ in part], acknowledged) or [None] * len(part)
        except Exception as exc:  # a full disk: the waiters learn it; the server logs it and keeps serving
            errors = [exc] * len(part)
        for (_, done), error in zip(part, errors):
            if isinstance(done, Flush):
                done.event.set()
            elif done is not None:
                done.get_loop().call_soon_threadsafe(settle, done, error)

    def _stop_writer(self, timeout: float) -> None:
        """Write what is queued, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)


def settle(done: asyncio.Future, error: BaseException | None) -> None:
    if not done.done():
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
