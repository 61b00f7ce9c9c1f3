"""The durable request store: every answered model request, kept so that no request is ever paid for twice.

One SQLite file (WAL journal, `synchronous=FULL`). A row is one answered request, keyed by
sha256(model identity, backend identity, request kind, request content) — the model identity covers every
file that can change an answer (`evalsuite.store.identity`). Answers are written in batches, each batch one
transaction: a `kill -9` at any moment loses at most the batch being answered; the file is never left
half-written (SQLite's journal rolls an interrupted transaction back on the next open), and the key is the
primary key (`INSERT OR IGNORE`), so a re-run never duplicates a row.

Why SQLite rather than an append-only JSONL log: atomic multi-row commits and crash recovery come with the
engine (a log needs its own torn-tail repair and fsync discipline), lookups by key are indexed instead of
a full scan at every start, and several processes (a run and a report) can read while one writes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from evalsuite.store.sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,        -- the model's identity
    backend TEXT NOT NULL,      -- the backend identity (JSON)
    kind TEXT NOT NULL,         -- generate | loglikelihood | score
    request TEXT NOT NULL,      -- the request (JSON)
    response TEXT NOT NULL,     -- the answer (JSON)
    created REAL NOT NULL
);
"""


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(model: str, backend: str, kind: str, request: str) -> str:
    """sha256 over the model identity and the canonical JSON of the backend identity and the request."""
    return hashlib.sha256("\x1f".join((model, backend, kind, request)).encode("utf-8")).hexdigest()


class RequestStore(Database):
    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA, what="request store", durable=True)

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored responses (JSON text) for the keys that have one."""
        return self.lookup("requests", "response", keys)

    def put(self, rows: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        """(key, model, backend, kind, request, response) rows, all in one transaction."""
        now = time.time()
        with self.write() as db:
            db.executemany("INSERT OR IGNORE INTO requests (key, model, backend, kind, request, response, created) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", [(*r, now) for r in rows])

    def merge(self, shards: Sequence[Path]) -> int:
        """Copy every request of the stores `shards` into this one (a key already here is kept, never doubled),
        one transaction per shard; returns how many requests this store holds afterwards. One writer: the
        process merging."""
        import sqlite3
        from contextlib import closing

        for shard in shards:
            try:
                with closing(self._connect()) as db:
                    db.execute("ATTACH DATABASE ? AS shard", (str(Path(shard).resolve()),))
                    with db:
                        db.execute("INSERT OR IGNORE INTO requests SELECT * FROM shard.requests")
                    db.execute("DETACH DATABASE shard")
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None
        return self.count()

    def count(self) -> int:
        with self.read() as db:
            return int(db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def rows(self) -> Iterator[dict[str, Any]]:
        with self.read() as db:
            cur = db.execute("SELECT key, model, backend, kind, request, response, created FROM requests ORDER BY rowid")
            for key, model, backend, kind, request, response, created in cur:
                yield {"key": key, "model": model, "backend": json.loads(backend), "kind": kind,
                       "request": json.loads(request), "response": json.loads(response), "created": created}
