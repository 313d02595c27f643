"""Backbone for Python services: typed events, publishing over JetStream or
the server's HTTP API, and durable consumers with dead letters.

- :mod:`backbone_client.events`: every event message class, generated from
  ``schemas/proto`` (``from backbone_client.events import UserFollowed``).
- :class:`JetStreamPublisher` (asyncio, nats-py), :class:`HttpPublisher`
  (blocking or asyncio), :class:`~backbone_client.sync.SyncJetStreamPublisher`
  (blocking, for Flask and Azure Functions).
- :class:`Consumer`: a durable pull consumer, a handler per event type,
  retries with backoff, dead letters, idempotency by ``ce-id``
  (:class:`SqliteStore` for exactly-once effect), graceful stop.
- :mod:`backbone_client.wire`: the wire contract itself (``Envelope``,
  strict decoding); every error carries a ``kind`` named like the Rust one.
"""

from . import events
from .consumer import Consumer, ConsumerConfig, Event, Handler
from .errors import Permanent, PublishError, Transient, WireError
from .http import HttpPublisher
from .jetstream import JetStreamPublisher, Receipt
from .store import MemoryStore, SqliteStore
from .wire import Envelope, Registry, registry

__all__ = [
    "events", "Consumer", "ConsumerConfig", "Event", "Handler", "Permanent", "PublishError",
    "Transient", "WireError", "HttpPublisher", "JetStreamPublisher", "Receipt", "MemoryStore",
    "SqliteStore", "Envelope", "Registry", "registry",
]

__version__ = "0.1.0"
