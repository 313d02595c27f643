"""Publishing to JetStream (nats-py), following ``docs/wire-contract.md``.

::

    import nats
    from backbone_client import JetStreamPublisher, events

    nc = await nats.connect("nats://127.0.0.1:4222")
    publisher = JetStreamPublisher(nc.jetstream(), source="social-api")
    receipt = await publisher.publish(events.UserFollowed(follower_id="u-1", followee_id="u-2"))

Each event gets a fresh UUIDv7 ``ce-id`` (or the one given): publishing the
same envelope again is dropped by JetStream's duplicate window and answers
``duplicate=True`` with the original's sequence, so a publish that timed
out is retried with the same envelope.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Optional

import nats.errors
import nats.js.errors

from .errors import PublishError
from .wire import Envelope, Registry, registry as default_registry

__all__ = ["Receipt", "JetStreamPublisher", "publish_error"]

#: JetStream's API error code for a failed optimistic append.
_WRONG_LAST_SEQUENCE = 10071


@dataclasses.dataclass(frozen=True)
class Receipt:
    """Where an event was stored."""

    #: Its ``ce-id``.
    id: str
    #: Its subject, ``events.<type>.<key>``.
    subject: str
    #: The stream that stored it (``None`` while spooled).
    stream: Optional[str]
    #: Its stream sequence (the original's, for a duplicate; ``None``
    #: while spooled).
    seq: Optional[int]
    #: Whether the broker already had this ``ce-id``.
    duplicate: bool
    #: Whether the server's spool took it while the broker is down (HTTP
    #: only, status 202): it is published when the broker is back.
    spooled: bool = False


def publish_error(error: Exception) -> PublishError:
    """The :class:`PublishError` of a nats-py exception from a publish."""
    if isinstance(error, nats.js.errors.NoStreamResponseError):
        return PublishError("NoStream", "no stream captures the subject")
    if isinstance(error, nats.errors.MaxPayloadError):
        return PublishError("PayloadTooLarge", str(error))
    if isinstance(error, nats.errors.TimeoutError):
        return PublishError("TimedOut", "no acknowledgement within the publish timeout")
    if isinstance(error, nats.js.errors.APIError):
        if error.err_code == _WRONG_LAST_SEQUENCE:
            return PublishError("WrongLastSequence", str(error.description))
        description = str(error.description or error)
        if "maximum" in description and "size" in description:
            return PublishError("PayloadTooLarge", description)
        if error.code == 503:
            return PublishError("BrokerUnavailable", description)
        return PublishError("Rejected", description)
    if isinstance(error, nats.errors.BadSubjectError):
        return PublishError("InvalidSubject", str(error))
    if isinstance(error, (nats.errors.ConnectionClosedError, nats.errors.NoServersError,
                          nats.errors.ConnectionReconnectingError,
                          nats.errors.StaleConnectionError, nats.errors.NoRespondersError,
                          OSError)):
        return PublishError("BrokerUnavailable", str(error) or type(error).__name__)
    if isinstance(error, nats.errors.Error) and "permissions violation" in str(error).lower():
        return PublishError("PermissionDenied", str(error))
    return PublishError("Rejected", f"{type(error).__name__}: {error}")


class JetStreamPublisher:
    """Publishes events to JetStream with one ``source``.

    ``js`` is a nats-py ``JetStreamContext`` (``nc.jetstream()``). Every
    failure raises :class:`~backbone_client.errors.PublishError` (with the
    Rust ``PublishErrorKind`` names) or, for an event that breaks the
    contract, :class:`~backbone_client.wire.WireError`.
    """

    def __init__(
        self,
        js: Any,
        source: str,
        *,
        timeout: float = 5.0,
        registry: Optional[Registry] = None,
    ):
        self._js = js
        self.source = source
        self.timeout = timeout
        self.registry = registry or default_registry()

    def envelope(
        self,
        message: Any,
        *,
        id: Optional[str] = None,
        time: Optional[datetime.datetime] = None,
        correlation_id: Optional[str] = None,
        causation_id: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> Envelope:
        """The envelope of an event message (validated; not sent)."""
        return Envelope.from_message(
            self.registry, message, self.source, id=id, time=time,
            correlation_id=correlation_id, causation_id=causation_id, traceparent=traceparent,
        )

    async def publish(
        self,
        message: Any,
        *,
        expected_last_subject_seq: Optional[int] = None,
        **context: Any,
    ) -> Receipt:
        """Publishes an event message; ``context`` is what :meth:`envelope`
        takes (``id``, ``time``, ``correlation_id``, ``causation_id``,
        ``traceparent``)."""
        envelope = self.envelope(message, **context)
        return await self.publish_envelope(
            envelope, expected_last_subject_seq=expected_last_subject_seq
        )

    async def publish_envelope(
        self, envelope: Envelope, *, expected_last_subject_seq: Optional[int] = None
    ) -> Receipt:
        """Publishes ``envelope`` as it is (to retry one with its id)."""
        headers = dict(envelope.headers())
        if expected_last_subject_seq is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_subject_seq)
        subject = envelope.subject()
        try:
            ack = await self._js.publish(
                subject, envelope.payload, timeout=self.timeout, headers=headers
            )
        except Exception as error:  # noqa: BLE001 - every failure gets its kind
            raise publish_error(error) from error
        return Receipt(
            id=envelope.id, subject=subject, stream=ack.stream, seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )
