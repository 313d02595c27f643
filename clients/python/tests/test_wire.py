"""The wire contract (``backbone_client.wire``) without a server.

Every rejected input asserts the error kind, not the message.
"""

import datetime
import unittest
import uuid

import subprocess
import sys
from pathlib import Path

from backbone_client import wire as be
from backbone_client.samples import SAMPLES, SAMPLE_TRACEPARENT
from google.protobuf import json_format


class HeaderValues(unittest.TestCase):
    def test_encodes_exactly_the_required_characters(self):
        self.assertEqual(be.encode_header_value("payment-service"), "payment-service")
        self.assertEqual(be.encode_header_value('Zoë "Z" 100%'), "Zo%C3%AB%20%22Z%22%20100%25")
        self.assertEqual(be.encode_header_value("a\tb\x7f"), "a%09b%7F")
        printable = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
        self.assertEqual(be.encode_header_value(printable), printable)

    def test_decode_inverts_encode(self):
        for value in ["", "plain", "serviço de usuários", "100% \"quoted\"", "🚀 launch"]:
            encoded = be.encode_header_value(value)
            self.assertEqual(be.decode_header_value("x", encoded), value)
        self.assertEqual(be.decode_header_value("x", "%e2%82%ac"), "€")

    def test_decode_is_strict_about_escapes(self):
        for bad in ["100%", "%4", "%zz", "%C3"]:
            with self.assertRaises(be.WireError) as caught:
                be.decode_header_value("ce-source", bad)
            self.assertEqual(caught.exception.kind, "InvalidHeader", bad)

    def test_nats_header_block_keeps_order_and_repeats(self):
        block = b"NATS/1.0\r\nce-id: a\r\nX: 1\r\nX: 2\r\n\r\n"
        self.assertEqual(be.parse_nats_headers(block), [("ce-id", "a"), ("X", "1"), ("X", "2")])
        with self.assertRaises(be.WireError) as caught:
            be.parse_nats_headers(b"HTTP/1.1 200\r\n\r\n")
        self.assertEqual(caught.exception.kind, "InvalidHeader")


class Subjects(unittest.TestCase):
    def test_round_trip(self):
        subject = be.event_subject("payment.received", "u-42")
        self.assertEqual(subject, "events.payment.received.u-42")
        self.assertEqual(be.parse_event_subject(subject), ("payment.received", "u-42"))

    def test_invalid_keys(self):
        for key in ["", "a.b", "a*", "a>", "u 42", "é", "x" * 129]:
            with self.assertRaises(be.WireError) as caught:
                be.validate_key(key)
            self.assertEqual(caught.exception.kind, "InvalidKey", key)
        be.validate_key("x" * 128)

    def test_invalid_subjects(self):
        for subject in ["events.user.followed", "events.User.followed.u-1",
                        "other.user.followed.u-1", "events.user.followed.u.1"]:
            with self.assertRaises(be.WireError) as caught:
                be.parse_event_subject(subject)
            self.assertEqual(caught.exception.kind, "InvalidSubject", subject)


class Envelopes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.registry = be.Registry()

    def sample(self, type_name):
        message_class = self.registry.get(type_name).message_class
        return json_format.ParseDict(SAMPLES[type_name], message_class())

    def envelope(self, **context):
        return be.Envelope.from_message(
            self.registry, self.sample("user.followed"), "user-service", **context
        )

    def test_registry_knows_every_sample_type(self):
        self.assertEqual(sorted(self.registry.by_type), sorted(SAMPLES))
        self.assertEqual(self.registry.get("payment.received").key_field, "user_id")

    def test_round_trip_through_headers(self):
        envelope = self.envelope(correlation_id="checkout 81f2", traceparent=SAMPLE_TRACEPARENT)
        self.assertEqual(envelope.subject(), "events.user.followed.u-42")
        headers = envelope.headers()
        self.assertEqual(headers[0], ("ce-specversion", "1.0"))
        self.assertEqual(headers[-1], ("Nats-Msg-Id", envelope.id))
        self.assertIn(("ce-correlationid", "checkout%2081f2"), headers)
        self.assertEqual(uuid.UUID(envelope.id).version, 7)
        decoded = be.Envelope.decode(self.registry, envelope.subject(), headers, envelope.payload)
        self.assertEqual(decoded, envelope)

    def test_header_names_match_case_insensitively(self):
        envelope = self.envelope()
        headers = [(name.upper(), value) for name, value in envelope.headers()]
        decoded = be.Envelope.decode(self.registry, envelope.subject(), headers, envelope.payload)
        self.assertEqual(decoded.id, envelope.id)

    def test_time_is_utc_milliseconds(self):
        moment = datetime.datetime(2025, 6, 1, 14, 0, 0, 123456,
                                   tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
        self.assertEqual(self.envelope(time=moment).time, "2025-06-01T12:00:00.123Z")
        parsed = be.parse_rfc3339("2025-06-01T12:00:00.123456789Z")
        self.assertEqual(parsed.microsecond, 123456)

    def test_rejects_invalid_context(self):
        cases = [
            ("InvalidSource", lambda: be.Envelope.from_message(
                self.registry, self.sample("user.followed"), "")),
            ("InvalidCorrelationId", lambda: self.envelope(correlation_id="a\nb")),
            ("InvalidCausationId", lambda: self.envelope(causation_id="")),
            ("InvalidTraceparent", lambda: self.envelope(traceparent="00-abc")),
        ]
        for kind, build in cases:
            with self.assertRaises(be.WireError) as caught:
                build()
            self.assertEqual(caught.exception.kind, kind)
        bad_key = self.sample("user.followed")
        bad_key.follower_id = "u.42"
        with self.assertRaises(be.WireError) as caught:
            be.Envelope.from_message(self.registry, bad_key, "user-service")
        self.assertEqual(caught.exception.kind, "InvalidKey")

    def test_decode_rejects_each_violation_with_its_kind(self):
        envelope = self.envelope()
        good = envelope.headers()

        def replaced(name, value):
            return [(n, value if n == name else v) for n, v in good]

        def without(name):
            return [(n, v) for n, v in good if n != name]

        subject = envelope.subject()
        payload = envelope.payload
        cases = [
            ("InvalidSubject", "events.user.followed", good, payload),
            ("MissingHeader", subject, without("ce-time"), payload),
            ("InvalidHeader", subject, good + [("ce-source", "again")], payload),
            ("InvalidHeader", subject, replaced("ce-specversion", "0.3"), payload),
            ("InvalidHeader", subject, replaced("content-type", "application/json"), payload),
            ("InvalidHeader", subject, replaced("Nats-Msg-Id", str(be.uuid7())), payload),
            ("InvalidHeader", subject, replaced("ce-time", "yesterday"), payload),
            ("InvalidHeader", subject, replaced("ce-source", "%zz"), payload),
            ("InvalidHeader", subject, replaced("ce-dataschema", "backbone.user.v1.UserFollowed"), payload),
            ("InvalidHeader", subject, good + [("traceparent", "00-x")], payload),
            ("TypeMismatch", "events.user.unfollowed.u-42", good, payload),
            ("TypeMismatch", subject, replaced("ce-dataschema", "proto:backbone.user.v1.UserUnfollowed"), payload),
            ("UnknownType", "events.user.vanished.u-42", replaced("ce-type", "user.vanished"), payload),
            ("KeyMismatch", "events.user.followed.u-1", replaced("ce-subject", "u-1"), payload),
            ("KeyMismatch", subject, replaced("ce-subject", "u-1"), payload),
            ("PayloadNotDecodable", subject, good, b"\x0a\xff"),
        ]
        for kind, subject_, headers, body in cases:
            with self.assertRaises(be.WireError, msg=f"{kind} {headers}") as caught:
                be.Envelope.decode(self.registry, subject_, headers, body)
            self.assertEqual(caught.exception.kind, kind, caught.exception.detail)


if __name__ == "__main__":
    unittest.main()


class GeneratedClasses(unittest.TestCase):
    def test_the_committed_classes_match_the_protos(self):
        script = Path(__file__).resolve().parents[1] / "scripts" / "generate.py"
        result = subprocess.run([sys.executable, str(script), "--check"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_every_event_type_is_importable_typed(self):
        from backbone_client import events

        registry = be.registry()
        for type_name, event_type in registry.by_type.items():
            cls = getattr(events, event_type.message_class.__name__)
            self.assertEqual(cls.DESCRIPTOR.full_name, event_type.full_name, type_name)
