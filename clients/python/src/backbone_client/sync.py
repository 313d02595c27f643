"""Blocking wrappers for code without an event loop (Flask views, Azure
Functions): an asyncio loop runs in a background thread and each call
waits for its result.

::

    from backbone_client.sync import SyncJetStreamPublisher

    publisher = SyncJetStreamPublisher("nats://127.0.0.1:4222", source="social-api")
    publisher.publish(events.UserFollowed(follower_id="u-1", followee_id="u-2"))
    publisher.close()

(:class:`~backbone_client.http.HttpPublisher` blocks by itself.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Coroutine, Optional, TypeVar

import nats

from .errors import PublishError
from .jetstream import JetStreamPublisher, Receipt, publish_error
from .wire import Envelope

__all__ = ["SyncJetStreamPublisher"]

T = TypeVar("T")

log = logging.getLogger("backbone_client.sync")


async def _log_error(error: Exception) -> None:
    log.warning("nats: %s", error)


class SyncJetStreamPublisher:
    """A :class:`~backbone_client.jetstream.JetStreamPublisher` with its own
    connection to ``url`` and a loop in a daemon thread."""

    def __init__(self, url: str, source: str, *, timeout: float = 5.0, **connect_options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="backbone-publisher", daemon=True
        )
        self._thread.start()
        self.timeout = timeout
        options = {"connect_timeout": timeout, "error_cb": _log_error, **connect_options}
        # nats-py keeps retrying a first connect that fails; bound it.
        connecting = asyncio.wait_for(nats.connect(url, **options), timeout * 3)
        try:
            self._nc = self._run(connecting)
        except Exception as error:
            self._stop_loop()
            if isinstance(error, asyncio.TimeoutError):
                raise PublishError("BrokerUnavailable", f"no connection to {url}") from error
            raise publish_error(error) from error
        self._publisher = JetStreamPublisher(self._nc.jetstream(), source, timeout=timeout)

    def _run(self, coroutine: Coroutine[Any, Any, T], wait: Optional[float] = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(wait)

    def envelope(self, message: Any, **context: Any) -> Envelope:
        """The envelope of an event message (validated; not sent)."""
        return self._publisher.envelope(message, **context)

    def publish(self, message: Any, **kwargs: Any) -> Receipt:
        """Publishes an event message; blocks until JetStream acknowledged."""
        return self._run(self._publisher.publish(message, **kwargs), self.timeout * 2)

    def publish_envelope(self, envelope: Envelope, **kwargs: Any) -> Receipt:
        """Publishes ``envelope`` as it is (to retry one with its id)."""
        return self._run(self._publisher.publish_envelope(envelope, **kwargs), self.timeout * 2)

    def close(self) -> None:
        """Drains the connection and stops the loop."""
        try:
            self._run(self._nc.drain(), self.timeout)
        except (PublishError, Exception):  # noqa: BLE001 - closing anyway
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> "SyncJetStreamPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
