"""SQLite files shared by several processes: one connection per operation, WAL journal, one transaction per
write, and one-line errors. The request store and the judge cache are built on it (the `perturbations`
package keeps its own small cache, since it never imports evalsuite).

A file that exists but is not SQLite is never modified (it may be someone's data); a file or folder that
cannot be written is found when the database is opened, before any work, not when the first answers arrive.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from evalsuite.errors import EvalsuiteError


class StoreError(EvalsuiteError):
    """A store or cache file that cannot be opened, read or written."""


FILE_HASHES = """
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, sha256 TEXT NOT NULL
);
"""


class Database:
    """A SQLite file with `schema`; `synchronous=FULL` makes each committed write survive power loss too. Every
    database also remembers file hashes (`file_sha256`), so what it stores can be keyed by model content."""

    def __init__(self, path: Path, schema: str, *, what: str, durable: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.what = what
        self.durable = durable
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {what} {self.path}: {exc.strerror or exc}") from None
        with self.write() as db:
            db.executescript(schema + FILE_HASHES)
        self._check_writable()

    def _check_writable(self) -> None:
        """A real write, rolled back: SQLite opens a file it cannot write read-only without a word, and creating
        tables that exist writes nothing, so only this finds a read-only store before the first answers do."""
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR REPLACE INTO file_hashes VALUES ('', 0, 0, 0, 0, '')")
                db.rollback()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=120)
        db.execute("PRAGMA journal_mode=WAL")
        if self.durable:
            db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(self._connect()) as db:
                yield db
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one transaction, committed when the block ends (rolled back on an error)."""
        try:
            with closing(self._connect()) as db, db:
                db.execute("BEGIN IMMEDIATE")  # takes the write lock now: a read-only file fails here
                yield db
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def lookup(self, table: str, column: str, keys: Sequence[str]) -> dict[str, str]:
        """`column` of the rows of `table` whose `key` is one of `keys`, by key (missing keys left out)."""
        found: dict[str, str] = {}
        with self.read() as db:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, {column} FROM {table} WHERE key IN ({marks})", chunk).fetchall())
        return found

    def file_sha256(self, path: Path) -> str:
        """The sha256 of a file's content, remembered by (path, size, mtime, ctime, inode): a large weights file
        is hashed once, and any write to it (in place, a copy over it, a rename onto it) is seen, since a write
        always moves the ctime, which no tool can set back."""
        from evalsuite.paths import sha256_file

        real = Path(path).resolve()
        st = real.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        with self.read() as db:
            row = db.execute("SELECT size, mtime_ns, ctime_ns, inode, sha256 FROM file_hashes WHERE path = ?",
                             (str(real),)).fetchone()
        if row and tuple(row[:4]) == stamp:
            return str(row[4])
        digest = sha256_file(real)
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", (str(real), *stamp, digest))
        return digest

    def _error(self, exc: sqlite3.DatabaseError) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError):  # read-only, unopenable, locked for too long
            return StoreError(f"cannot use {self.what} {self.path}: {exc} (is it writable, on a local disk?)")
        return StoreError(f"{self.path} is not a readable {self.what} ({exc}); move it away or choose another path")


class TextCache(Database):
    """Text by key (the judge's judgements): one SQLite file, safe across processes."""

    SCHEMA = "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, text TEXT NOT NULL);"

    def __init__(self, path: Path, what: str = "cache") -> None:
        super().__init__(path, self.SCHEMA, what=what)

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        return self.lookup("judgements", "text", keys)

    def put(self, items: dict[str, str]) -> None:
        with self.write() as db:
            db.executemany("INSERT OR REPLACE INTO judgements (key, text) VALUES (?, ?)", list(items.items()))
