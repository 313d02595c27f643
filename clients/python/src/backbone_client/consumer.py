"""A durable JetStream pull consumer with a handler per event type.

::

    from backbone_client import Consumer, ConsumerConfig, SqliteStore, Transient

    async def on_followed(event):
        event.db.execute("INSERT INTO followers VALUES (?, ?)",
                         (event.message.followee_id, event.message.follower_id))

    consumer = Consumer(nc.jetstream(), ConsumerConfig(durable="notifications"),
                        {"user.followed": on_followed}, store=SqliteStore("notifications.db"))
    await consumer.run()          # until consumer.stop()

The rules are the Rust runtime's (``docs/consumers.md``):

- **at-least-once delivery**: an event is acknowledged only after its
  handler returned (and its id was committed with the handler's writes);
- **exactly-once effect**: with a :class:`~backbone_client.store.SqliteStore`
  the handler runs in the transaction that records the event's ``ce-id``
  (one per fetched batch, each event in a savepoint: a failing event's
  writes are undone alone); a redelivered copy finds the id and is
  acknowledged without running the handler;
- a handler raising :class:`~backbone_client.errors.Transient` (or any
  unexpected exception) is retried: the message is nak'ed with a delay of
  ``backoff_base * 2^(delivery-1)``, at most ``backoff_max``; on delivery
  ``max_deliver`` it is dead-lettered;
- :class:`~backbone_client.errors.Permanent`, or a message that is not a
  valid event (any :class:`~backbone_client.wire.WireError`), is
  dead-lettered at once;
- a dead letter is the original message on
  ``deadletter.<durable>.<subject>`` (stream ``DEADLETTER``, created when
  missing) with the ``Backbone-Dlq-*`` headers of ``docs/consumers.md``
  and ``Nats-Msg-Id: <durable>:<seq>``; only once it is stored is the
  original acknowledged;
- events of types without a handler are acknowledged and skipped;
- :meth:`Consumer.stop` finishes the event being handled, hands the rest
  of the batch back (nak without delay) and returns from :meth:`run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import re
from typing import Any, Awaitable, Callable, Mapping, Optional

import nats.errors
import nats.js.api
import nats.js.errors

from .errors import Permanent, Transient
from .jetstream import publish_error
from .store import IdempotencyStore, MemoryStore
from .wire import NATS_MSG_ID, STREAM_NAME, Envelope, Registry, WireError
from .wire import registry as default_registry

__all__ = [
    "ConsumerConfig", "Event", "Handler", "Consumer", "DEAD_LETTER_STREAM",
    "DLQ_CONSUMER", "DLQ_STREAM", "DLQ_SUBJECT", "DLQ_SEQUENCE", "DLQ_DELIVERIES",
    "DLQ_ERROR", "DLQ_TIME", "DLQ_MSG_ID",
]

log = logging.getLogger("backbone_client.consumer")

DEAD_LETTER_STREAM = "DEADLETTER"
DLQ_CONSUMER = "Backbone-Dlq-Consumer"
DLQ_STREAM = "Backbone-Dlq-Stream"
DLQ_SUBJECT = "Backbone-Dlq-Subject"
DLQ_SEQUENCE = "Backbone-Dlq-Sequence"
DLQ_DELIVERIES = "Backbone-Dlq-Deliveries"
DLQ_ERROR = "Backbone-Dlq-Error"
DLQ_TIME = "Backbone-Dlq-Time"
DLQ_MSG_ID = "Backbone-Dlq-Msg-Id"

_DURABLE = re.compile(r"[A-Za-z0-9_-]+")


@dataclasses.dataclass
class ConsumerConfig:
    """How a consumer runs; the defaults are the Rust runtime's."""

    #: The durable consumer's name (letters, digits, ``-``, ``_``); also
    #: the ``<durable>`` of its dead letters.
    durable: str
    #: The stream consumed.
    stream: str = STREAM_NAME
    #: Messages fetched at a time.
    batch_size: int = 64
    #: Seconds one fetch waits; bounds how soon :meth:`Consumer.stop` is seen.
    fetch_wait: float = 0.5
    #: Seconds a delivery may stay unacknowledged before redelivery.
    ack_wait: float = 30.0
    #: Deliveries of an event before a transient failure is dead-lettered.
    max_deliver: int = 5
    #: The first retry delay in seconds; doubles per delivery.
    backoff_base: float = 0.2
    #: The longest retry delay in seconds.
    backoff_max: float = 30.0
    #: Where a new durable starts: ``"all"`` (the whole log) or ``"new"``.
    deliver: str = "all"

    def backoff(self, delivery: int) -> float:
        """The delay before redelivering after failed delivery ``delivery``."""
        return min(self.backoff_max, self.backoff_base * 2 ** max(0, delivery - 1))

    def problem(self) -> Optional[str]:
        """Why the config cannot run, if it cannot."""
        if not _DURABLE.fullmatch(self.durable):
            return f"durable {self.durable!r}: letters, digits, - and _ only"
        if self.batch_size < 1 or self.max_deliver < 1:
            return "batch_size and max_deliver are at least 1"
        if self.deliver not in ("all", "new"):
            return f"deliver is 'all' or 'new', not {self.deliver!r}"
        return None


@dataclasses.dataclass
class Event:
    """One delivered event, as a handler sees it."""

    #: The validated envelope (attributes and payload bytes).
    envelope: Envelope
    #: The payload as an instance of its generated class.
    message: Any
    #: Its stream sequence.
    seq: int
    #: Deliveries so far, this one included.
    deliveries: int
    #: The store's SQLite connection, inside the event's transaction
    #: (``None`` with a :class:`~backbone_client.store.MemoryStore`).
    db: Any = None

    @property
    def type(self) -> str:
        return self.envelope.type


Handler = Callable[[Event], Awaitable[None]]


class Consumer:
    """Runs ``handlers`` (event type -> async handler) over a durable pull
    consumer of ``config.stream`` until :meth:`stop`."""

    def __init__(
        self,
        js: Any,
        config: ConsumerConfig,
        handlers: Mapping[str, Handler],
        *,
        store: Optional[IdempotencyStore] = None,
        registry: Optional[Registry] = None,
    ):
        problem = config.problem()
        if problem:
            raise ValueError(problem)
        self.registry = registry or default_registry()
        for type_name in handlers:
            self.registry.get(type_name)
        self._js = js
        self.config = config
        self.handlers = dict(handlers)
        self.store = store if store is not None else MemoryStore()
        self._stopping = asyncio.Event()
        #: Counters: ``applied``, ``skipped`` (copies and other types),
        #: ``retried``, ``dead_lettered``.
        self.counts = {"applied": 0, "skipped": 0, "retried": 0, "dead_lettered": 0}

    def stop(self) -> None:
        """Asks :meth:`run` to return after the event being handled."""
        self._stopping.set()

    def _filter(self) -> str:
        if len(self.handlers) == 1:
            (only,) = self.handlers
            return f"events.{only}.*"
        # nats-server 2.9 takes one filter subject per consumer.
        return "events.>"

    async def _ensure_dead_letter_stream(self) -> None:
        try:
            await self._js.stream_info(DEAD_LETTER_STREAM)
        except nats.js.errors.NotFoundError:
            try:
                await self._js.add_stream(
                    name=DEAD_LETTER_STREAM, subjects=["deadletter.>"],
                    description="Backbone dead letters",
                )
            except nats.js.errors.BadRequestError:
                pass  # created meanwhile by another service

    async def run(self) -> None:
        """Consumes until :meth:`stop`; raises
        :class:`~backbone_client.errors.PublishError` only when the durable
        cannot be created (no stream, no permission)."""
        await self._ensure_dead_letter_stream()
        filter_subject = self._filter()
        config = nats.js.api.ConsumerConfig(
            durable_name=self.config.durable,
            ack_policy=nats.js.api.AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait,
            max_deliver=-1,
            deliver_policy=(nats.js.api.DeliverPolicy.ALL if self.config.deliver == "all"
                            else nats.js.api.DeliverPolicy.NEW),
            filter_subject=filter_subject,
        )
        try:
            subscription = await self._js.pull_subscribe(
                filter_subject, durable=self.config.durable, stream=self.config.stream,
                config=config,
            )
        except Exception as error:  # noqa: BLE001
            raise publish_error(error) from error
        try:
            while not self._stopping.is_set():
                try:
                    messages = await subscription.fetch(
                        self.config.batch_size, timeout=self.config.fetch_wait
                    )
                except asyncio.TimeoutError:  # nats-py raises both its own and asyncio's
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                        nats.errors.NoRespondersError) as error:
                    log.warning("fetch failed (%s); retrying", error)
                    await asyncio.sleep(self.config.fetch_wait)
                    continue
                await self._handle_batch(messages)
        finally:
            await subscription.unsubscribe()

    async def _handle_batch(self, messages: list) -> None:
        """Applies a fetched batch in one store transaction (each event in
        a savepoint of it), then settles each message: ack, nak with
        backoff, or dead letter. Nothing is acknowledged before the
        transaction holding its effect committed."""
        verdicts: list[tuple[Any, str, Any]] = []
        with self.store.transaction() as transaction:
            for index, msg in enumerate(messages):
                if self._stopping.is_set():
                    verdicts += [(rest, "nak", 0) for rest in messages[index:]]
                    break
                verdicts.append((msg, *await self._apply(msg, transaction)))
        for msg, verdict, detail in verdicts:
            if verdict == "ack":
                await msg.ack()
            elif verdict == "nak":
                await msg.nak(delay=detail or None)
            else:
                await self._dead_letter(msg, detail)

    async def _apply(self, msg: Any, transaction: Any) -> tuple[str, Any]:
        """The verdict on one message: ``("ack", None)``, ``("nak", delay)``
        or ``("dead", reason)``; its effect stays in ``transaction`` only
        when acked."""
        meta = msg.metadata
        seq, deliveries = meta.sequence.stream, meta.num_delivered
        try:
            envelope = Envelope.decode(
                self.registry, msg.subject, list((msg.headers or {}).items()), msg.data
            )
        except WireError as error:
            return "dead", f"undecodable event: {error.kind}: {error.detail}"
        handler = self.handlers.get(envelope.type)
        if handler is None or transaction.seen(envelope.id):
            self.counts["skipped"] += 1
            return "ack", None
        try:
            with transaction.savepoint():
                event = Event(envelope, envelope.message(self.registry), seq, deliveries,
                              transaction.db)
                await handler(event)
                transaction.remember(envelope.id, seq)
        except Permanent as error:
            return "dead", str(error) or type(error).__name__
        except Exception as error:  # noqa: BLE001 - Transient, or a bug: retried
            reason = str(error) if isinstance(error, Transient) else f"{type(error).__name__}: {error}"
            if deliveries >= self.config.max_deliver:
                return "dead", f"gave up after {deliveries} deliveries: {reason}"
            self.counts["retried"] += 1
            log.warning("seq %s: transient failure (%s); retrying", seq, reason)
            return "nak", self.config.backoff(deliveries)
        self.counts["applied"] += 1
        return "ack", None

    async def _dead_letter(self, msg: Any, reason: str) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        headers = dict(msg.headers or {})
        original_id = headers.pop(NATS_MSG_ID, None)
        letter_id = f"{self.config.durable}:{seq}"
        headers[NATS_MSG_ID] = letter_id
        headers[DLQ_CONSUMER] = self.config.durable
        headers[DLQ_STREAM] = meta.stream
        headers[DLQ_SUBJECT] = msg.subject
        headers[DLQ_SEQUENCE] = str(seq)
        headers[DLQ_DELIVERIES] = str(meta.num_delivered)
        headers[DLQ_ERROR] = "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in reason)
        headers[DLQ_TIME] = datetime.datetime.now(datetime.timezone.utc).isoformat().replace(
            "+00:00", "Z")
        if original_id is not None:
            headers[DLQ_MSG_ID] = original_id
        log.warning("seq %s: dead-lettering: %s", seq, reason)
        try:
            await self._js.publish(
                f"deadletter.{self.config.durable}.{msg.subject}", msg.data, headers=headers
            )
        except Exception as error:  # noqa: BLE001 - hand it back; nothing is lost
            log.warning("seq %s: the dead letter was not stored (%s); handing back", seq, error)
            await msg.nak(delay=self.config.backoff(meta.num_delivered))
            return
        self.counts["dead_lettered"] += 1
        await msg.ack()
