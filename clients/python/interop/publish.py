"""Publishes sample Backbone events to JetStream, as a Python service would.

    python publish.py --url nats://127.0.0.1:4222 --types user.followed,payment.received --count 2

For each event it prints one JSON line: subject, ce-id, the headers as sent
(percent-encoded), the payload in hex, the fields in proto3 JSON, and the
stream sequence JetStream acknowledged. Exits 1 with a JSON error line on
an unknown type or a failed publish.
"""

import argparse
import asyncio
import json
import sys

import nats
from google.protobuf import json_format

from backbone_client import JetStreamPublisher
from backbone_client import wire as be
from backbone_client.samples import SAMPLES, SAMPLE_TRACEPARENT


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--types", default=",".join(sorted(SAMPLES)),
                        help="comma-separated event types (default: all)")
    parser.add_argument("--count", type=int, default=1, help="events per type")
    parser.add_argument("--source", default="python-publisher")
    parser.add_argument("--correlation-id", default=None)
    parser.add_argument("--traceparent", default=SAMPLE_TRACEPARENT)
    return parser.parse_args(argv)


async def run(args) -> int:
    registry = be.Registry()
    types = [t for t in args.types.split(",") if t]
    envelopes = []
    for type_name in types:
        if type_name not in SAMPLES:
            raise be.WireError("UnknownType", f"no sample for {type_name!r}")
        event_type = registry.get(type_name)
        for _ in range(args.count):
            message = json_format.ParseDict(SAMPLES[type_name], event_type.message_class())
            envelopes.append(be.Envelope.from_message(
                registry, message, args.source,
                correlation_id=args.correlation_id, traceparent=args.traceparent,
            ))

    nc = await nats.connect(args.url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        publisher = JetStreamPublisher(nc.jetstream(), args.source)
        for envelope in envelopes:
            ack = await publisher.publish_envelope(envelope)
            message = envelope.message(registry)
            print(json.dumps({
                "subject": envelope.subject(),
                "ce_id": envelope.id,
                "type": envelope.type,
                "headers": envelope.headers(),
                "payload_hex": envelope.payload.hex(),
                "fields": json_format.MessageToDict(message),
                "stream": ack.stream,
                "seq": ack.seq,
                "duplicate": bool(ack.duplicate),
            }, ensure_ascii=False), flush=True)
    finally:
        await nc.close()
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(run(args))
    except be.WireError as e:
        print(json.dumps({"error": {"kind": e.kind, "detail": e.detail}}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
