"""Publishing through the Backbone server's HTTP API (``docs/server.md``).

::

    from backbone_client import HttpPublisher, events

    publisher = HttpPublisher("http://127.0.0.1:7070", source="whatsapp-bot", token=TOKEN)
    receipt = publisher.publish(events.PaymentReceived(...))          # Flask, Functions
    receipt = await publisher.publish_async(events.PaymentReceived(...))   # asyncio

Events go in CloudEvents binary mode: the protobuf payload as the body,
``content-type: application/protobuf``, the attributes in ``ce-*`` headers
(percent-encoded as on the wire). The server validates them with the same
rules a consumer uses. Standard library only (``urllib``); the async
methods run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any, Optional

from .errors import PublishError
from .jetstream import Receipt
from .wire import NATS_MSG_ID, Envelope, Registry
from .wire import registry as default_registry

__all__ = ["HttpPublisher", "EXPECTED_LAST_SUBJECT_SEQ"]

#: The header of an optimistic append.
EXPECTED_LAST_SUBJECT_SEQ = "backbone-expected-last-subject-seq"


class HttpPublisher:
    """Publishes events with one ``source`` to the server at ``url``,
    authenticated with the bearer ``token`` when given.

    Every failure raises :class:`~backbone_client.errors.PublishError`:
    ``kind`` is the server's (``UnknownType``, ``Unauthorized``,
    ``Forbidden``, ``BrokerUnavailable``, ``Overloaded``, ...), ``status``
    the HTTP status; ``BrokerUnavailable`` with ``status`` ``None`` when
    the server itself cannot be reached. Retry a transient one
    (:attr:`PublishError.is_transient`) with :meth:`publish_envelope` and
    the same envelope: the server answers a copy as a duplicate.
    """

    def __init__(
        self,
        url: str,
        source: str,
        *,
        token: Optional[str] = None,
        timeout: float = 10.0,
        registry: Optional[Registry] = None,
    ):
        self.url = url.rstrip("/")
        self.source = source
        self.token = token
        self.timeout = timeout
        self.registry = registry or default_registry()

    def envelope(self, message: Any, **context: Any) -> Envelope:
        """The envelope of an event message (validated; not sent):
        ``context`` as :meth:`JetStreamPublisher.envelope` takes it."""
        return Envelope.from_message(self.registry, message, self.source, **context)

    def publish(
        self, message: Any, *, expected_last_subject_seq: Optional[int] = None, **context: Any
    ) -> Receipt:
        """Publishes an event message; blocks until the server answered."""
        return self.publish_envelope(
            self.envelope(message, **context), expected_last_subject_seq=expected_last_subject_seq
        )

    async def publish_async(self, message: Any, **kwargs: Any) -> Receipt:
        """:meth:`publish` without blocking the event loop."""
        return await asyncio.to_thread(self.publish, message, **kwargs)

    def publish_envelope(
        self, envelope: Envelope, *, expected_last_subject_seq: Optional[int] = None
    ) -> Receipt:
        """Publishes ``envelope`` as it is (to retry one with its id)."""
        headers = {name: value for name, value in envelope.headers() if name != NATS_MSG_ID}
        if expected_last_subject_seq is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_subject_seq)
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url}/v1/events", data=envelope.payload, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
                status = response.status
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None
        except (urllib.error.URLError, OSError) as error:
            raise PublishError("BrokerUnavailable", f"the server at {self.url}: {error}") from error
        if status == 202 or body.get("spooled"):
            return Receipt(id=envelope.id, subject=envelope.subject(), stream=None, seq=None,
                           duplicate=False, spooled=True)
        return Receipt(
            id=body.get("id", envelope.id), subject=body.get("subject", envelope.subject()),
            stream=body.get("stream"), seq=body.get("seq"), duplicate=bool(body.get("duplicate")),
        )


def _api_error(error: urllib.error.HTTPError) -> PublishError:
    try:
        body = json.loads(error.read() or b"{}").get("error", {})
    except (ValueError, AttributeError):
        body = {}
    kind = body.get("kind") or f"Http{error.code}"
    return PublishError(kind, body.get("message", error.reason), status=error.code, body=body)
