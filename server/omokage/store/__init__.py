"""The durable event store: SQLite in WAL mode, a versioned schema (store.schema), a writer process (store.writer)
fed group commits (store.db.EventStore). docs/studies.md describes the tables."""

from omokage.store.db import (EventStore, StoreError, connect, export_jsonl, is_store_file, log_records,
                              open_database)
from omokage.store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_STORE = "var/omokage.db"

__all__ = ["DEFAULT_STORE", "EventStore", "MIGRATIONS", "SCHEMA_VERSION", "StoreError", "connect", "export_jsonl",
           "is_store_file", "log_records", "open_database"]
