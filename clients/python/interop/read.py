"""Reads Backbone events from the EVENTS stream and decodes them strictly.

    python read.py --url nats://127.0.0.1:4222 [--from-seq 1] [--to-seq N]

Messages are fetched one by one with the JetStream message-get API
(``$JS.API.STREAM.MSG.GET``, served by every JetStream server), from
``--from-seq`` to ``--to-seq`` (default: the stream's last sequence). Each
prints one JSON line: the stream sequence and subject, the decoded
CloudEvents attributes, the payload in hex, the payload re-encoded by the
generated class in hex, and the fields in proto3 JSON. A message that breaks
the contract prints ``{"seq": ..., "error": {"kind": ..., "detail": ...}}``;
the exit status is then 1.
"""

import argparse
import asyncio
import base64
import json
import sys

import nats
from google.protobuf import json_format

from backbone_client import wire as be


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", default=be.STREAM_NAME)
    parser.add_argument("--from-seq", type=int, default=1)
    parser.add_argument("--to-seq", type=int, default=None)
    return parser.parse_args(argv)


def headers_of(raw) -> list:
    """The message's headers in order with repeats; nats-py's own parse
    (a dict) would hide a repeated header."""
    if not raw.hdrs:
        return []
    return be.parse_nats_headers(base64.b64decode(raw.hdrs))


def describe(registry, raw) -> dict:
    envelope = be.Envelope.decode(registry, raw.subject, headers_of(raw), raw.data or b"")
    message = envelope.message(registry)
    return {
        "seq": raw.seq,
        "subject": raw.subject,
        "ce_id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "time": envelope.time,
        "key": envelope.key,
        "data_schema": envelope.data_schema,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "traceparent": envelope.traceparent,
        "message_class": type(message).DESCRIPTOR.full_name,
        "payload_hex": envelope.payload.hex(),
        "reencoded_hex": message.SerializeToString(deterministic=True).hex(),
        "fields": json_format.MessageToDict(message),
    }


async def run(args) -> int:
    registry = be.Registry()
    nc = await nats.connect(args.url, connect_timeout=5, max_reconnect_attempts=0)
    failures = 0
    try:
        js = nc.jetstream()
        info = await js.stream_info(args.stream)
        last = info.state.last_seq if args.to_seq is None else args.to_seq
        for seq in range(max(args.from_seq, info.state.first_seq), last + 1):
            raw = await js.get_msg(args.stream, seq)
            try:
                line = describe(registry, raw)
            except be.WireError as e:
                failures += 1
                line = {"seq": seq, "subject": raw.subject,
                        "error": {"kind": e.kind, "detail": e.detail}}
            print(json.dumps(line, ensure_ascii=False), flush=True)
    finally:
        await nc.close()
    return 1 if failures else 0


def main(argv=None) -> int:
    return asyncio.run(run(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
