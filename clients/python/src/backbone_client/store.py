"""Where a consumer remembers the ``ce-id`` of every event it applied, so
a redelivered copy is skipped: idempotency by ``ce-id``.

- :class:`SqliteStore` keeps the ids in a SQLite file and runs each
  handler inside the transaction that records its id (one transaction per
  fetched batch, each event in a savepoint of it): a read model kept in the
  same database (``event.db``) is changed **exactly once** per event,
  whatever crashes and redeliveries happen.
- :class:`MemoryStore` keeps the latest ids of this process only: copies
  delivered again after a restart are applied again (at-least-once).
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator, Optional, Protocol, Union

__all__ = ["Transaction", "IdempotencyStore", "SqliteStore", "MemoryStore"]


class Transaction(Protocol):
    """One event's unit of work."""

    #: The SQLite connection the handler writes its read model with, or
    #: ``None`` for a store without one.
    db: Optional[sqlite3.Connection]

    def seen(self, event_id: str) -> bool:
        """Whether an event with this ``ce-id`` was applied."""

    def remember(self, event_id: str, seq: int) -> None:
        """Records the event as applied; kept only if the transaction
        commits."""

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """One event's part of the transaction: undone alone when the
        block raises."""


class IdempotencyStore(Protocol):
    """What a :class:`~backbone_client.consumer.Consumer` keeps ids in."""

    def transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction: committed when the block ends normally, rolled
        back when it raises."""


class _SqliteTransaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def seen(self, event_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM backbone_applied WHERE id = ?", (event_id,)).fetchone()
        return row is not None

    def remember(self, event_id: str, seq: int) -> None:
        self.db.execute("INSERT INTO backbone_applied (id, seq) VALUES (?, ?)", (event_id, seq))

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT backbone_event")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO backbone_event")
            self.db.execute("RELEASE backbone_event")
            raise
        self.db.execute("RELEASE backbone_event")


class SqliteStore:
    """Applied ids in the SQLite database at ``path`` (created if needed),
    table ``backbone_applied``; the handler's read model may live in the
    same database, written through ``event.db``."""

    def __init__(self, path: Union[str, Path]):
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS backbone_applied (id TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SqliteTransaction]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTransaction(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class _MemoryTransaction:
    db = None

    def __init__(self, store: "MemoryStore"):
        self._store = store
        self._new: list[str] = []

    def seen(self, event_id: str) -> bool:
        return event_id in self._store._ids or event_id in self._new

    def remember(self, event_id: str, seq: int) -> None:
        self._new.append(event_id)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        mark = len(self._new)
        try:
            yield
        except BaseException:
            del self._new[mark:]
            raise


class MemoryStore:
    """The last ``capacity`` applied ids, in this process only."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._ids: "collections.OrderedDict[str, None]" = collections.OrderedDict()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_MemoryTransaction]:
        transaction = _MemoryTransaction(self)
        yield transaction
        for event_id in transaction._new:
            self._ids[event_id] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
