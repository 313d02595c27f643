"""WhatsApp bot (seeds 000, 001) on Backbone, end to end, in both modes.

    python examples/seeds/whatsapp/walkthrough.py [--bin-dir target/debug]

- **development mode**: the embedded log, no server other than Backbone's;
- **production mode**: the same run on NATS JetStream (``nats-server``),
  with every event the bot's services used Service Bus for mirrored over
  the outbound AMQP 1.0 bridge to queues named like the bot's topics
  (``events-user_message_received``, ``events-tune_created``, ...) on an
  AMQP 1.0 broker (RabbitMQ's ``rabbitmq_amqp1_0`` plugin), where a legacy
  consumer (pika) finds each event once under its ``ce-id``.

The seed's services become Backbone webhooks and read models:

- the **message service**'s WhatsApp webhook: Meta posts a signed delivery
  (``x-hub-signature-256``) to ``/v1/webhooks/whatsapp`` -> ``message.received``;
- the **image service**'s callbacks, at the seed's paths: the image
  provider posts ``/v1/webhooks/pack-tune-received`` (a trained tune, then
  the prompt's images) -> ``tune.created``, ``image.processed``, and
  ``/v1/webhooks/update-images`` -> ``pack.images_updated``;
- the **payment service**'s webhook -> ``payment.received``;
- the bot's onboarding (Python, ``backbone_client.HttpPublisher``) registers
  the WhatsApp user -> ``user.registered``;
- the read models answer for the user: ``inbox`` (the conversation and its
  unread count), ``gallery`` (tune, images, pack), ``billing`` (balance).

Each provider retries its delivery once, as providers do: the copies are
duplicates and nothing is stored twice. Prints each answer; exits 1 if any
is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seedkit  # noqa: E402
import pika  # noqa: E402
from backbone_client import HttpPublisher, events  # noqa: E402

SECRET = "whatsapp-walkthrough-secret"
WA_USER = "16505551234"
USER = "u-7001"

WHATSAPP = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
    {"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": WA_USER}],
        "messages": [
            {"from": WA_USER, "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
             "timestamp": "1749416383", "type": "text", "text": {"body": "Make me a pirate, please"}},
            {"from": WA_USER, "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RwA=",
             "timestamp": "1749416390", "type": "text", "text": {"body": "With a parrot?"}},
        ]}}]}]}
TUNE = {"tune": {"id": 1504944, "title": "Pirate portraits", "name": "woman", "base_model": "sdxl",
                 "status": "trained", "pack_id": 77, "image_ids": ["9001", "9002"],
                 "created_at": "2026-12-01T10:00:00Z"}}
PROMPT = {"prompt": {"id": 5551, "tune_id": 1504944, "pipeline": "headshots-v2",
                     "updated_at": "2026-12-01T10:05:00Z", "images": [
    {"id": 9001, "url": "https://cdn.example/9001.jpg", "content_type": "image/jpeg",
     "width": 1024, "height": 1024},
    {"id": 9002, "url": "https://cdn.example/9002.jpg", "content_type": "image/jpeg",
     "width": 1024, "height": 768}]}}
PACK = {"pack": {"id": 77, "revision": 2, "image_ids": ["9001", "9002"], "added_image_ids": ["9002"],
                 "removed_image_ids": [], "updated_at": "2026-12-01T10:06:00Z"}}
#: The bot's Service Bus topics and the events each one carried.
TOPICS = {"events-user_message_received": 2, "events-tune_created": 1,
          "events-image_processed": 2, "events-pack_images_updated": 1,
          "events-payment_received": 1}

PAYMENT = {"id": "evt_1Q2w3E4r", "type": "payment.succeeded", "created": 1764756000, "data": {
    "id": "pi_3Q9xYz", "payment_id": "pay-7001", "amount": 2990, "currency": "BRL",
    "metadata": {"user_id": USER, "sku": "pirate-pack-20"}}}


def deliver(server: seedkit.Server, path: str, header: str, prefix: str, body: dict,
            secret: str = SECRET) -> tuple:
    """Posts ``body`` signed with ``secret``, as the provider does; the
    status and the results' duplicate flags, or the error's kind."""
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{server.url}{path}", data=raw, method="POST",
        headers={"content-type": "application/json", header: f"{prefix}{signature}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read() or b"{}")
            return response.status, [r["duplicate"] for r in answer.get("results", [])]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}").get("error", {}).get("kind")


def webhooks(secret_file: Path) -> str:
    return "".join(
        f'[[webhooks]]\nname = "{name}"\nmapping = "{mapping}"\nsecret_file = "{secret_file}"\n'
        f'source = "{source}"\n'
        for name, mapping, source in [
            ("whatsapp", "whatsapp-cloud", "message-service"),
            ("pack-tune-received", "image-callback", "image-service"),
            ("update-images", "image-callback", "image-service"),
            ("payments", "payment-provider", "payment-service"),
        ]
    )


MODELS = '["inbox", "gallery", "billing"]'


def main() -> None:
    args = seedkit.parse_args(__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory() as secrets:
        secret_file = Path(secrets) / "provider.secret"
        secret_file.write_text(SECRET)
        print("== development mode: the embedded log")
        with seedkit.Server(args.bin_dir, config=webhooks(secret_file), models=MODELS) as server:
            run(server)
        print("== production mode: JetStream, Service Bus topics mirrored over AMQP 1.0")
        production(args.bin_dir, webhooks(secret_file))
    seedkit.finish("whatsapp walkthrough")


def production(bin_dir: str, hooks: str) -> None:
    nats = seedkit.NatsServer()
    rabbit = seedkit.RabbitMq()
    try:
        legacy = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", rabbit.port, credentials=pika.PlainCredentials("guest", "guest")))
        channel = legacy.channel()
        for topic in TOPICS:
            channel.queue_declare(topic, durable=True)
        mirror = f"""
[backend]
kind = "jetstream"
urls = ["{nats.url}"]

[[bridges]]
name = "servicebus-mirror"
direction = "outbound"
broker = "amqp1"
url = "{rabbit.url}"
start = "all"
event_types = ["message.received", "tune.created", "image.processed", "pack.images_updated", "payment.received"]
address = "/amq/queue/events-{{type_}}"
routes = {{ "message.received" = "/amq/queue/events-user_message_received" }}
"""
        with seedkit.Server(bin_dir, config=hooks + mirror, models=MODELS) as server:
            run(server)
            print("legacy consumers: the bot's topics, mirrored")
            expected = sum(TOPICS.values())
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                depth = sum(channel.queue_declare(t, passive=True).method.message_count
                            for t in TOPICS)
                if depth >= expected:
                    break
                time.sleep(0.2)
            for topic, count in TOPICS.items():
                ids = []
                while True:
                    method, properties, _ = channel.basic_get(topic, auto_ack=True)
                    if method is None:
                        break
                    ids.append(properties.message_id)
                seedkit.check(f"{topic}: events, each once under its ce-id",
                              (len(ids), len(set(ids))), (count, count))
        legacy.close()
    finally:
        rabbit.stop()
        nats.stop()


def run(server: seedkit.Server) -> None:
    print("bot onboarding: register the WhatsApp user")
    onboarding = HttpPublisher(server.url, source="message-service")
    onboarding.publish(events.UserRegistered(
        user_id=USER, handle="sheena", display_name="Sheena Nelson", locale="en-US",
        channel=events.SignupChannel.SIGNUP_CHANNEL_WHATSAPP))

    print("providers: signed webhook deliveries, each sent twice")
    deliveries = [
        ("/v1/webhooks/whatsapp", "x-hub-signature-256", "sha256=", WHATSAPP, 2),
        (f"/v1/webhooks/pack-tune-received?user_id={USER}", "x-signature", "", TUNE, 1),
        (f"/v1/webhooks/pack-tune-received?user_id={USER}", "x-signature", "", PROMPT, 2),
        (f"/v1/webhooks/update-images?user_id={USER}", "x-signature", "", PACK, 1),
        ("/v1/webhooks/payments", "x-signature", "sha256=", PAYMENT, 1),
    ]
    for path, header, prefix, body, count in deliveries:
        name = path.split("?")[0].rsplit("/", 1)[1]
        first = deliver(server, path, header, prefix, body)
        again = deliver(server, path, header, prefix, body)
        seedkit.check(f"{name}: stored, then the retry a duplicate",
                      (first, again), ((201, [False] * count), (201, [True] * count)))
    forged = deliver(server, "/v1/webhooks/payments", "x-signature", "sha256=", PAYMENT,
                     secret="not-the-providers-secret")
    seedkit.check("a delivery with a wrong signature", forged, (401, "BadSignature"))

    print(f"read models: what the bot shows {USER} ({WA_USER} on WhatsApp)")
    inbox = server.wait_for(f"/v1/models/inbox/users/address:{WA_USER}/unread",
                            lambda a: a.get("unread") == 2)
    seedkit.check("inbox: unread messages", inbox.get("unread"), 2)
    conversation = server.get(f"/v1/models/inbox/conversations/{WA_USER}")
    seedkit.check("inbox: the conversation's last text", conversation.get("last_text"),
                  "With a parrot?")
    pack = server.wait_for("/v1/models/gallery/packs/77", lambda a: a.get("revision") == 2)
    seedkit.check("gallery: pack 77's revision", pack.get("revision"), 2)
    tune = server.get(f"/v1/models/gallery/users/{USER}/tune")
    seedkit.check("gallery: the latest tune", tune.get("tune_id"), "1504944")
    images = server.get(f"/v1/models/gallery/users/{USER}/images")
    seedkit.check("gallery: processed images", [i["image_id"] for i in images["items"]],
                  ["9001", "9002"])
    balances = server.wait_for(f"/v1/models/billing/users/{USER}/balances",
                               lambda a: bool(a.get("balances")))
    seedkit.check("billing: balance", balances.get("balances"),
                  [{"currency": "BRL", "balance_minor": 2990}])


if __name__ == "__main__":
    main()
