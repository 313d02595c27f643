"""ABDRE chat (seed 002) on Backbone, end to end.

    python examples/seeds/chat/walkthrough.py [--bin-dir target/debug]

- the **chat service** (Python, ``backbone_client.HttpPublisher``) stores
  each chat message by publishing ``message.received``;
- the **user service** publishes ``user.presence_changed`` as users come
  and go;
- the server's outbound **Redis pub/sub bridge** fans them out, one channel
  per conversation (``chat:<conversation>``) and per user
  (``presence:<user>``), in the documented structured-mode JSON form;
- the **realtime service** (Python, redis-py, as the seed's WebSocket
  service listens) subscribes to ``chat:*`` and ``presence:*`` and checks
  that each channel got its own events, in order, byte for byte.

Starts ``redis-server`` (``REDIS_SERVER_BIN``, else ``/usr/bin/redis-server``;
``scripts/ensure-brokers`` installs it) and ``backbone-server`` on loopback.
Prints each answer; exits 1 if any is wrong.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
import seedkit  # noqa: E402
from backbone_client import HttpPublisher, events, registry  # noqa: E402

CONVERSATIONS = {
    "c-1": [("u-1", "hi bob"), ("u-2", "hi alice"), ("u-1", "lunch at 1? \U0001F35C")],
    "c-2": [("u-3", "is the demo at 3?"), ("u-1", "yes, room 2")],
}
PRESENCE = [("u-1", "ONLINE"), ("u-2", "ONLINE"), ("u-1", "AWAY"), ("u-2", "OFFLINE")]
PROBE_USER = "u-probe"


class RealtimeService:
    """The seed's realtime service: every ``chat:*`` and ``presence:*``
    message, by channel, decoded into its event."""

    def __init__(self, client: redis.Redis):
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("chat:*", "presence:*")
        self.received: dict[str, list] = {}

    def take(self, until, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            cloudevent = json.loads(message["data"])
            event_type = registry().get(cloudevent["type"])
            payload = event_type.message_class.FromString(
                base64.b64decode(cloudevent["data_base64"]))
            channel = message["channel"].decode()
            self.received.setdefault(channel, []).append((cloudevent, payload))

    def count(self) -> int:
        return sum(len(v) for k, v in self.received.items() if not k.endswith(PROBE_USER))


def main() -> None:
    args = seedkit.parse_args(__doc__.splitlines()[0])
    store = seedkit.RedisServer()
    client = redis.Redis(port=store.port)
    bridge = f"""
[[bridges]]
name = "chat-realtime"
direction = "outbound"
broker = "redis"
url = "redis://127.0.0.1:{store.port}"
redis_target = "pubsub"
event_types = ["message.received", "user.presence_changed"]
address = "chat:{{key}}"
routes = {{ "user.presence_changed" = "presence:{{key}}" }}
"""
    try:
        with seedkit.Server(args.bin_dir, config=bridge, models="[]") as server:
            realtime = RealtimeService(client)
            chat = HttpPublisher(server.url, source="abdre-chat-service")
            users = HttpPublisher(server.url, source="abdre-user-service")
            status = events.PresenceStatus

            print("realtime service: waiting until the bridge delivers (pub/sub keeps nothing)")
            probe_channel = f"presence:{PROBE_USER}"
            deadline = time.monotonic() + 30
            while probe_channel not in realtime.received and time.monotonic() < deadline:
                users.publish(events.UserPresenceChanged(user_id=PROBE_USER,
                                                         status=status.PRESENCE_STATUS_ONLINE))
                realtime.take(lambda: probe_channel in realtime.received, timeout=0.5)
            seedkit.check("the bridge delivers", probe_channel in realtime.received, True)

            print("chat and user services: messages and presence changes")
            sent = {}
            presence_changes = iter(PRESENCE)
            for conversation, messages in CONVERSATIONS.items():
                for sender, text in messages:
                    event = events.MessageReceived(conversation_id=conversation,
                                                   sender_user_id=sender, text=text,
                                                   channel=events.Channel.CHANNEL_WEB)
                    envelope = chat.envelope(event)
                    chat.publish_envelope(envelope)
                    sent[envelope.id] = envelope
                    change = next(presence_changes, None)
                    if change is not None:
                        user, state = change
                        users.publish(events.UserPresenceChanged(
                            user_id=user, status=getattr(status, f"PRESENCE_STATUS_{state}")))
            expected = sum(len(m) for m in CONVERSATIONS.values()) + len(PRESENCE)
            realtime.take(lambda: realtime.count() >= expected)

            print("realtime service: what each channel received")
            for conversation, messages in CONVERSATIONS.items():
                got = realtime.received.get(f"chat:{conversation}", [])
                seedkit.check(f"chat:{conversation}",
                              [(p.sender_user_id, p.text) for _, p in got], messages)
                seedkit.check(f"chat:{conversation} payloads byte for byte",
                              all(sent[ce["id"]].payload == base64.b64decode(ce["data_base64"])
                                  for ce, _ in got), True)
            for user in ("u-1", "u-2"):
                got = realtime.received.get(f"presence:{user}", [])
                names = [status.Name(p.status).removeprefix("PRESENCE_STATUS_") for _, p in got]
                seedkit.check(f"presence:{user}", names,
                              [state for who, state in PRESENCE if who == user])
    finally:
        client.close()
        store.stop()
    seedkit.finish("chat walkthrough")


if __name__ == "__main__":
    main()
