"""The errors the client raises, each with a ``kind`` that code compares.

Kinds are the names the Rust side uses, so a Python service and a Rust
service log and branch on the same words:

- :class:`~backbone_client.wire.WireError`: an event that breaks the wire
  contract (``DecodeErrorKind`` / ``EncodeErrorKind`` names).
- :class:`PublishError`: a publish that did not store the event
  (``PublishErrorKind`` names, plus the HTTP API's kinds).
- :class:`Transient` and :class:`Permanent`: what a handler raises to tell
  the consumer to retry later or to dead-letter at once.
"""

from __future__ import annotations

from typing import Any, Optional

from .wire import WireError

__all__ = ["WireError", "PublishError", "Transient", "Permanent", "TRANSIENT_PUBLISH_KINDS"]

#: Publish kinds after which the same event may be taken later: retry it
#: with the same ``ce-id`` (as ``PublishErrorKind::is_transient`` says,
#: plus the server's ``Overloaded`` and ``SpoolFull``).
TRANSIENT_PUBLISH_KINDS = frozenset({"BrokerUnavailable", "TimedOut", "Overloaded", "SpoolFull"})


class PublishError(Exception):
    """A publish that did not store the event.

    ``kind`` is one of ``NoStream``, ``InvalidSubject``, ``PayloadTooLarge``,
    ``WrongLastSequence``, ``TimedOut``, ``BrokerUnavailable``,
    ``PermissionDenied``, ``StorageFailure``, ``Rejected`` (JetStream and
    the server alike), or an HTTP API kind (``Unauthorized``,
    ``Forbidden``, ``UnknownType``, ``MissingHeader``, ``Overloaded``, ...:
    ``docs/server.md``). ``status`` is the HTTP status when the server
    answered; ``body`` its error object.
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: Optional[int] = None,
        body: Optional[dict[str, Any]] = None,
    ):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status
        self.body = body or {}

    @property
    def is_transient(self) -> bool:
        """Whether publishing the same event again later may succeed."""
        return self.kind in TRANSIENT_PUBLISH_KINDS


class Transient(Exception):
    """Raised by a handler: the event could not be handled now (a database
    or service is down); the consumer naks it with backoff, and dead-letters
    it after ``max_deliver`` deliveries."""


class Permanent(Exception):
    """Raised by a handler: the event can never be handled (it contradicts
    the read model, say); the consumer dead-letters it at once."""
