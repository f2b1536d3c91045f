"""Content-addressed files beside a server's event log: what a restarted server needs to rebuild a selection (protocol
v1.7 resume, omokage.protocol.restore) that is too large for a log line.

An image start in the raw-pixel space has a query of 12,288 numbers (64 x 64 x 3); a log line carries up to 512
(`MAX_LOGGED_FLOATS`). Such a start's record names its query by the SHA-256 of its bytes (`query_blob`), and the
bytes go to a file of that name in the log's blob folder (`blob_dir_for`): written once however many starts use it,
read back, and checked against its name, by the next run of the server.

Crash safety is the log's: the server writes a record's blobs before the record itself (`BlobStore.put`: a temporary
file, synced, renamed into place, the folder synced) and the record before its reply, so a step a client was told of
has its record and the record its blob, on disk. A crash between the two leaves a blob no record names: the next run
deletes those (`prune`), and every blob no selection it could still resume names. Files are the server user's only
(0600, in a 0700 folder): a raw query is the uploaded face, downscaled.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterable

from omokage.protocol.restore import blob_key

log = logging.getLogger("omokage.store")

__all__ = ["BlobStore", "blob_dir_for", "blob_key"]

KEY = re.compile(r"[0-9a-f]{64}")


def blob_dir_for(log_path: str | os.PathLike) -> Path:
    """The blob folder of a log (a JSON-lines log or a store): LOG.blobs beside it; for the default dated logs
    (`events-DATE.jsonl`, read with the day before's by a restart after midnight) one folder for all of them,
    `events.blobs`."""
    path = Path(log_path)
    if path.name.startswith("events-") and path.suffix == ".jsonl":
        return path.with_name("events.blobs")
    return path.with_name(path.name + ".blobs")


class BlobStore:
    """One log's blob folder. `put` blocks on the disk (call it off the event loop); the folder is made on the first
    blob, so a server that never writes one leaves nothing behind."""

    def __init__(self, directory: str | os.PathLike, fsync: bool = True):
        self.directory = Path(directory)
        self.fsync = fsync
        self.written = 0          # blobs written by this object (a blob already there is not written again)

    def path(self, key: str) -> Path:
        if not KEY.fullmatch(key):
            raise ValueError(f"not a blob key: {key[:80]!r}")
        return self.directory / key

    def put(self, blobs: Iterable[tuple[str, bytes]]) -> None:
        """Each (key, data) durably on disk (with fsync) before this returns; OSError when one could not be written
        (a full disk: the caller must not acknowledge the records naming it)."""
        new = False
        for key, data in blobs:
            final = self.path(key)
            if final.exists():        # content-addressed: the same bytes, already made durable by whoever wrote them
                continue
            if not new:
                self._make_dir()
                new = True
            tmp = final.with_name(f"{key}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            self.written += 1
        if new and self.fsync:
            self._sync_dir(self.directory)

    def get(self, key: str) -> bytes | None:
        """The blob's bytes, or None when it is missing or does not match its name (damaged)."""
        try:
            data = self.path(key).read_bytes()
        except (OSError, ValueError):
            return None
        return data if blob_key(data) == key else None

    def prune(self, keep: set[str]) -> int:
        """Delete the blobs not in `keep` (and temporary files a crash left): at start, `keep` being the blobs of the
        selections the log's tail still holds. Returns how many went."""
        try:
            names = [p for p in self.directory.iterdir() if p.is_file()]
        except OSError:
            return 0
        gone = 0
        for p in names:
            if p.name in keep:
                continue
            try:
                p.unlink()
                gone += 1
            except OSError as exc:
                log.warning("could not delete an unused blob", extra={"fields": {"path": str(p), "error": str(exc)}})
        if gone and self.fsync:
            self._sync_dir(self.directory)
        return gone

    def _make_dir(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.fsync:
            self._sync_dir(self.directory.parent)

    @staticmethod
    def _sync_dir(path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:   # a file system that cannot sync a folder (some network mounts): the rename is what we have
            pass
        finally:
            os.close(fd)
