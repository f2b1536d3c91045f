"""The durable event store: SQLite in WAL mode, a versioned schema (store.schema), a writer process (store.writer)
fed group commits (store.db.EventStore). docs/studies.md describes the tables."""

from omokage.store.db import (EventStore, StoreError, connect, export_jsonl, is_store_file, log_records,
                              open_database)
from omokage.store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_STORE = "var/omokage.db"


def serve_sinks(events_path, store_path, study) -> tuple:
    """Where `omokage serve` logs: (JSON-lines log or None, store or None). A study lives in the store (default
    DEFAULT_STORE); without a store the log defaults to var/events/events-DATE.jsonl, one file a day."""
    import time
    from pathlib import Path
    if store_path is None and study:
        store_path = Path(DEFAULT_STORE)
    if store_path is None and events_path is None:
        # The JSON-lines log stays the default sink: at 100 paced sessions the store's every-message log costs
        # step p99 24 ms against 17 ms (benchmarks/results/store.md); `--db` turns it on
        events_path = Path("var") / "events" / f"events-{time.strftime('%Y%m%d')}.jsonl"
    return events_path, store_path

__all__ = ["DEFAULT_STORE", "EventStore", "MIGRATIONS", "SCHEMA_VERSION", "StoreError", "connect", "export_jsonl",
           "is_store_file", "log_records", "open_database", "serve_sinks"]
