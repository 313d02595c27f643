"""Messaging app (seed 004) on Backbone, end to end.

    python examples/seeds/messaging/walkthrough.py [--bin-dir target/debug]
        [--load-rate 5000] [--load-seconds 3]

The seed moves every service's events through RabbitMQ; here the legacy
**message service** still does (pika, its own JSON on exchange
``messaging``), while new services run on Backbone (NATS JetStream):

- the server's **inbound RabbitMQ bridge** maps the legacy JSON into
  ``message.sent`` and ``message.delivered`` events (a mapping, so the
  legacy service is not changed);
- the new **relay service** (Python, ``backbone_client.Consumer`` with a
  ``SqliteStore``: exactly-once effect) keeps each recipient's pending
  messages until a ``message.delivered`` clears them: the offline relay;
- the server's **outbound RabbitMQ bridge** sends ``message.sent`` to the
  ``notifications`` exchange, where the legacy **notification service**
  (pika) pushes them.

Then a **load run** pushes ``--load-rate`` legacy messages per second for
``--load-seconds`` through the whole path (RabbitMQ, the inbound bridge,
JetStream, the relay) and prints the achieved rate and the p99 latency
from the legacy publish to the relay's commit; nothing may be lost.
Prints each answer; exits 1 if any is wrong.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats  # noqa: E402
import pika  # noqa: E402
import seedkit  # noqa: E402
from backbone_client import Consumer, ConsumerConfig, SqliteStore  # noqa: E402

MAPPING = """
[[bridges.mapping.events]]
type = "message.sent"
id = ["/event", "/message_id"]
when = [{ pointer = "/event", equals = "message_sent" }]
[bridges.mapping.events.fields]
recipientId = "/to"
messageId = "/message_id"
senderId = "/from"
text = "/text"
sentAt = { pointer = "/sent_at", format = "unix_seconds" }

[[bridges.mapping.events]]
type = "message.delivered"
id = ["/event", "/message_id"]
when = [{ pointer = "/event", equals = "message_delivered" }]
[bridges.mapping.events.fields]
recipientId = "/to"
messageId = "/message_id"
deliveredAt = { pointer = "/delivered_at", format = "unix_seconds" }
"""


class RelayService:
    """The offline relay: per recipient, the messages not yet delivered."""

    def __init__(self, js, path: Path):
        self.store = SqliteStore(path)
        self.store.db.execute(
            "CREATE TABLE IF NOT EXISTS pending (recipient TEXT, message_id TEXT PRIMARY KEY, "
            "sender TEXT, text TEXT, seq INTEGER)")
        self.consumer = Consumer(
            js, ConsumerConfig(durable="relay", batch_size=256, fetch_wait=0.2),
            {"message.sent": self.on_sent, "message.delivered": self.on_delivered},
            store=self.store)

    async def on_sent(self, event) -> None:
        m = event.message
        event.db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?)",
                         (m.recipient_id, m.message_id, m.sender_id, m.text, event.seq))

    async def on_delivered(self, event) -> None:
        event.db.execute("DELETE FROM pending WHERE message_id = ?", (event.message.message_id,))

    def pending(self, recipient: str) -> list[str]:
        rows = self.store.db.execute(
            "SELECT text FROM pending WHERE recipient = ? ORDER BY seq", (recipient,))
        return [text for (text,) in rows]

    def count(self) -> int:
        return self.store.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]


class LegacyMessageService:
    """The unmigrated message service: its own JSON on RabbitMQ."""

    def __init__(self, port: int):
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", port, credentials=pika.PlainCredentials("guest", "guest")))
        self.channel = self.connection.channel()
        self.channel.exchange_declare("messaging", "topic", durable=True)

    def send(self, message_id: str, sender: str, recipient: str, text: str) -> None:
        body = {"event": "message_sent", "message_id": message_id, "from": sender,
                "to": recipient, "text": text, "sent_at": int(time.time())}
        self.publish("message_sent", body)

    def delivered(self, message_id: str, recipient: str) -> None:
        body = {"event": "message_delivered", "message_id": message_id, "to": recipient,
                "delivered_at": int(time.time())}
        self.publish("message_delivered", body)

    def publish(self, routing_key: str, body: dict) -> None:
        self.channel.basic_publish(
            "messaging", routing_key, json.dumps(body).encode(),
            pika.BasicProperties(content_type="application/json", delivery_mode=2))


def bridges(rabbit_url: str) -> str:
    return f"""
[[bridges]]
name = "legacy-messages"
direction = "inbound"
broker = "rabbitmq"
url = "{rabbit_url}/%2f"
source = "backbone-messages"
exchange = "messaging"
bindings = ["message_sent", "message_delivered"]
batch_size = 256
ce_source = "legacy-message-service"
{MAPPING}
[[bridges]]
name = "notifications"
direction = "outbound"
broker = "rabbitmq"
url = "{rabbit_url}/%2f"
start = "all"
event_types = ["message.sent"]
exchange = "notifications"
"""


async def relay_until(relay: RelayService, done, timeout: float) -> bool:
    task = asyncio.create_task(relay.consumer.run())
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        return done()
    finally:
        relay.consumer.stop()
        await asyncio.wait_for(task, 15)


def main() -> None:
    def load_options(parser) -> None:
        parser.add_argument("--load-rate", type=int, default=5000,
                            help="legacy messages per second")
        parser.add_argument("--load-seconds", type=float, default=3.0,
                            help="how long the load run publishes (30 in scripts/bench)")

    args = seedkit.parse_args(__doc__.splitlines()[0], load_options)
    nats_server = seedkit.NatsServer()
    rabbit = seedkit.RabbitMq()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            run(args, nats_server, rabbit, Path(scratch))
    finally:
        rabbit.stop()
        nats_server.stop()
    seedkit.finish("messaging walkthrough")


def run(args, nats_server, rabbit, scratch: Path) -> None:
    legacy = LegacyMessageService(rabbit.port)
    notifications = legacy.connection.channel()
    notifications.exchange_declare("notifications", "topic", durable=True)
    notifications.queue_declare("push", durable=True)
    notifications.queue_bind("push", "notifications", "#")
    backend = f'[backend]\nkind = "jetstream"\nurls = ["{nats_server.url}"]\n'
    with seedkit.Server(args.bin_dir, config=backend + bridges(rabbit.url), models="[]"):
        # The inbound bridge declares and binds its queue when it starts.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                probe = legacy.connection.channel()
                probe.queue_declare("backbone-messages", passive=True)
                probe.close()
                break
            except pika.exceptions.ChannelClosedByBroker:
                time.sleep(0.2)

        print("legacy message service: u-1 and u-3 write to u-2, who is offline")
        legacy.send("dm-1", "u-1", "u-2", "are you there?")
        legacy.send("dm-2", "u-3", "u-2", "call me")
        legacy.send("dm-3", "u-1", "u-2", "ok, later then")
        legacy.send("dm-4", "u-2", "u-1", "back online!")
        print("u-2's phone comes online and confirms dm-1")
        legacy.delivered("dm-1", "u-2")

        async def functional():
            nc = await nats.connect(nats_server.url)
            relay = RelayService(nc.jetstream(), scratch / "relay.db")
            ok = await relay_until(relay, lambda: relay.count() == 3 and bool(relay.pending("u-1")),
                                   timeout=30)
            await nc.close()
            return ok, relay.pending("u-2"), relay.pending("u-1")

        settled, owed_u2, owed_u1 = asyncio.run(functional())
        seedkit.check("the relay settled", settled, True)
        seedkit.check("relay: pending for u-2", owed_u2, ["call me", "ok, later then"])
        seedkit.check("relay: pending for u-1", owed_u1, ["back online!"])

        print("legacy notification service: what the outbound bridge pushed")
        pushed = []
        deadline = time.monotonic() + 20
        while len(pushed) < 4 and time.monotonic() < deadline:
            method, properties, body = notifications.basic_get("push", auto_ack=True)
            if method is None:
                time.sleep(0.1)
                continue
            pushed.append((method.routing_key, properties.headers.get("cloudEvents:type")))
        seedkit.check("push: one notification per message.sent", pushed,
                      [("message.sent", "message.sent")] * 4)

        load(args, rabbit.port, nats_server, scratch)
    legacy.connection.close()


def publish_load(port: int, rate: int, total: int, report) -> None:
    """The legacy service under load, in its own process (its own GIL):
    ``total`` messages at ``rate`` per second, each carrying its send time
    in its text; puts the seconds publishing took on ``report``."""
    legacy = LegacyMessageService(port)
    started = time.monotonic()
    for n in range(total):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        legacy.send(f"load-{n}", "u-load", f"u-{n % 500}", f"load {n} sent {time.time():.6f}")
    report.put(time.monotonic() - started)
    legacy.connection.close()


def load(args, rabbit_port: int, nats_server, scratch: Path) -> None:
    total = int(args.load_rate * args.load_seconds)
    print(f"load run: {args.load_rate} legacy messages/s for {args.load_seconds} s ({total})")
    report = multiprocessing.Queue()
    latencies: list[float] = []

    async def consume():
        nc = await nats.connect(nats_server.url)
        relay = RelayService(nc.jetstream(), scratch / "relay.db")
        on_sent = relay.on_sent

        async def timed(event) -> None:
            await on_sent(event)
            latencies.append(time.time() - float(event.message.text.rsplit(" ", 1)[1]))

        relay.consumer.handlers["message.sent"] = timed
        publisher = multiprocessing.Process(
            target=publish_load, args=(rabbit_port, args.load_rate, total, report))
        started = time.monotonic()
        publisher.start()
        await relay_until(relay, lambda: len(latencies) >= total,
                          timeout=args.load_seconds * 4 + 60)
        elapsed = time.monotonic() - started
        publisher.join(timeout=30)
        await nc.close()
        return elapsed, relay

    elapsed, relay = asyncio.run(consume())
    seconds = report.get(timeout=5)
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else float("nan")
    print(f"  published {total} in {seconds:.1f} s ({total / seconds:,.0f} msg/s); "
          f"the relay held all of them after {elapsed:.1f} s "
          f"({len(latencies) / elapsed:,.0f} msg/s end to end); p99 {p99:,.0f} ms")
    seedkit.check("load: every message reached the relay", len(latencies), total)
    # The load messages, and the three still owed from the functional run.
    seedkit.check("load: nothing lost or doubled in the relay", relay.count(), total + 3)


if __name__ == "__main__":
    main()
