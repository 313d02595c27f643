"""The wire contract (``docs/wire-contract.md``): Backbone events on NATS.

An event travels as one NATS message:

- subject ``events.<type>.<key>``, e.g. ``events.payment.received.u-42``;
- CloudEvents 1.0 binary-mode headers (``ce-*``), values percent-encoded;
- the protobuf binary encoding of the event message as the body;
- ``Nats-Msg-Id`` equal to ``ce-id``, so JetStream drops re-published copies.

The protobuf classes are generated from ``schemas/proto`` into
``backbone_client._gen`` (``clients/python/scripts/generate.py``); the
:class:`Registry` finds every event message among them through the
``(backbone.event)`` and ``(backbone.key)`` options.

Every invalid input raises :class:`WireError` with a ``kind`` named like the
Rust ``DecodeErrorKind`` / ``EncodeErrorKind`` variant it mirrors.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import pkgutil
import re
import secrets
import time
import uuid
from typing import Iterable, Optional

STREAM_NAME = "EVENTS"
SUBJECT_PREFIX = "events"
MAX_KEY_LEN = 128

CE_SPECVERSION = "ce-specversion"
CE_ID = "ce-id"
CE_SOURCE = "ce-source"
CE_TYPE = "ce-type"
CE_TIME = "ce-time"
CE_SUBJECT = "ce-subject"
CE_DATASCHEMA = "ce-dataschema"
CE_CORRELATIONID = "ce-correlationid"
CE_CAUSATIONID = "ce-causationid"
CONTENT_TYPE = "content-type"
TRACEPARENT = "traceparent"
NATS_MSG_ID = "Nats-Msg-Id"

SPEC_VERSION = "1.0"
CONTENT_TYPE_PROTOBUF = "application/protobuf"
DATASCHEMA_PREFIX = "proto:"

GENERATED = "backbone_client._gen"


class WireError(Exception):
    """An event or message that breaks the wire contract.

    ``kind`` names the failed check (``InvalidSubject``, ``MissingHeader``,
    ``InvalidHeader``, ``UnknownType``, ``TypeMismatch``, ``KeyMismatch``,
    ``PayloadNotDecodable``, ``InvalidKey``, ``InvalidSource``,
    ``InvalidCorrelationId``, ``InvalidCausationId``, ``InvalidTraceparent``,
    ``InvalidTime``); ``detail`` says what exactly.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# --- header values ----------------------------------------------------------

def _must_encode(byte: int) -> bool:
    return byte < 0x21 or byte > 0x7E or byte in (0x22, 0x25)


def encode_header_value(value: str) -> str:
    """Percent-encodes space, ``"``, ``%`` and everything outside printable
    ASCII, byte by byte of the UTF-8 encoding, as ``%XX`` in uppercase hex."""
    return "".join(
        f"%{b:02X}" if _must_encode(b) else chr(b) for b in value.encode("utf-8")
    )


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def decode_header_value(name: str, raw: str) -> str:
    """Percent-decodes a header value; a ``%`` not followed by two hex
    digits, or escapes that are not UTF-8, raise ``InvalidHeader``."""
    if "%" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == "%":
            match = _ESCAPE.match(raw, i)
            if match is None:
                raise WireError("InvalidHeader", f"{name}: malformed percent escape at {i} in {raw!r}")
            out.append(int(match.group(1), 16))
            i += 3
        else:
            out += raw[i].encode("utf-8")
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("InvalidHeader", f"{name}: percent-decoded bytes are not UTF-8: {raw!r}") from None


def parse_nats_headers(block: bytes) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a raw NATS header block
    (``NATS/1.0\\r\\nName: value\\r\\n...\\r\\n\\r\\n``), in order, repeats kept."""
    lines = block.decode("utf-8").split("\r\n")
    if not lines or not lines[0].startswith("NATS/1.0"):
        raise WireError("InvalidHeader", f"not a NATS header block: {lines[:1]!r}")
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError("InvalidHeader", f"header line without ':': {line!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


# --- subjects -----------------------------------------------------------------

_TYPE_NAME = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")


def validate_key(key: str) -> None:
    """Raises ``InvalidKey`` unless ``key`` is 1 to 128 bytes of printable
    ASCII (``0x21..0x7E``) without ``.``, ``*`` or ``>``."""
    if not key:
        raise WireError("InvalidKey", "event key is empty")
    for index, ch in enumerate(key):
        if not ("!" <= ch <= "~") or ch in ".*>":
            raise WireError("InvalidKey", f"event key has {ch!r} at {index}")
    if len(key) > MAX_KEY_LEN:
        raise WireError("InvalidKey", f"event key is {len(key)} bytes, more than {MAX_KEY_LEN}")


def event_subject(type_name: str, key: str) -> str:
    """``events.<type>.<key>``, after checking both parts."""
    if not _TYPE_NAME.fullmatch(type_name):
        raise WireError("InvalidSubject", f"event type {type_name!r} is not <domain>.<name>")
    validate_key(key)
    return f"{SUBJECT_PREFIX}.{type_name}.{key}"


def parse_event_subject(subject: str) -> tuple[str, str]:
    """``(type name, key)`` of ``events.<domain>.<name>.<key>``."""
    tokens = subject.split(".")
    if len(tokens) != 4 or tokens[0] != SUBJECT_PREFIX:
        raise WireError("InvalidSubject", f"{subject!r} is not events.<domain>.<name>.<key>")
    type_name = f"{tokens[1]}.{tokens[2]}"
    if not _TYPE_NAME.fullmatch(type_name):
        raise WireError("InvalidSubject", f"{subject!r} has an invalid type {type_name!r}")
    try:
        validate_key(tokens[3])
    except WireError as e:
        raise WireError("InvalidSubject", f"{subject!r}: {e.detail}") from None
    return type_name, tokens[3]


# --- small validators -----------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_TRACEPARENT_PART = re.compile(r"[0-9a-f]+")


def is_valid_text(text: str) -> bool:
    """Non-empty and free of control characters."""
    return bool(text) and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def is_valid_traceparent(value: str) -> bool:
    """A W3C ``traceparent``: ``<version>-<trace-id>-<parent-id>-<flags>``."""
    parts = value.split("-")
    if len(parts) < 4:
        return False
    version, trace, parent, flags = parts[:4]

    def hex_of(s: str, n: int) -> bool:
        return len(s) == n and _TRACEPARENT_PART.fullmatch(s) is not None

    return (
        hex_of(version, 2)
        and version != "ff"
        and (len(parts) == 4 or version != "00")
        and hex_of(trace, 32)
        and trace.strip("0") != ""
        and hex_of(parent, 16)
        and parent.strip("0") != ""
        and hex_of(flags, 2)
    )


def parse_rfc3339(value: str) -> datetime.datetime:
    """An RFC 3339 timestamp as an aware datetime; ``InvalidHeader`` otherwise."""
    if not _RFC3339.fullmatch(value):
        raise WireError("InvalidHeader", f"{CE_TIME}: not RFC 3339: {value!r}")
    normalized = value.upper().replace("Z", "+00:00")
    whole, dot, rest = normalized.partition(".")
    if dot:
        # fromisoformat takes at most 6 fractional digits.
        digits = re.match(r"\d+", rest).group(0)
        normalized = f"{whole}.{(digits + '000000')[:6]}{rest[len(digits):]}"
    try:
        return datetime.datetime.fromisoformat(normalized)
    except ValueError as e:
        raise WireError("InvalidHeader", f"{CE_TIME}: {e}: {value!r}") from None


def format_rfc3339(moment: datetime.datetime) -> str:
    """UTC, ``Z``, millisecond precision: ``2025-06-01T12:00:00.123Z``."""
    utc = moment.astimezone(datetime.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def uuid7() -> uuid.UUID:
    """A fresh UUIDv7: 48 bits of unix milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


# --- the registry of event messages -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class EventType:
    """One event type: its name, protobuf message class and key field."""

    type_name: str
    full_name: str
    key_field: str
    message_class: type

    def key_of(self, message) -> str:
        return getattr(message, self.key_field)


class Registry:
    """Every event message of the generated classes, by type name and full name."""

    def __init__(self) -> None:
        generated = importlib.import_module(GENERATED)
        options = importlib.import_module(f"{GENERATED}.backbone.options_pb2")
        modules = [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(generated.__path__, f"{GENERATED}.")
            if info.name.endswith("_pb2")
        ]
        from google.protobuf import message_factory

        self.by_type: dict[str, EventType] = {}
        for module in modules:
            for descriptor in module.DESCRIPTOR.message_types_by_name.values():
                opts = descriptor.GetOptions()
                if not opts.HasExtension(options.event):
                    continue
                keys = [
                    f.name for f in descriptor.fields
                    if f.GetOptions().HasExtension(options.key) and f.GetOptions().Extensions[options.key]
                ]
                if len(keys) != 1:
                    raise ValueError(f"{descriptor.full_name} has {len(keys)} key fields")
                type_name = opts.Extensions[options.event].type
                self.by_type[type_name] = EventType(
                    type_name=type_name,
                    full_name=descriptor.full_name,
                    key_field=keys[0],
                    message_class=message_factory.GetMessageClass(descriptor),
                )

    def get(self, type_name: str) -> EventType:
        try:
            return self.by_type[type_name]
        except KeyError:
            raise WireError("UnknownType", f"unknown event type {type_name!r}") from None

    def of_message(self, message) -> EventType:
        full_name = message.DESCRIPTOR.full_name
        for event_type in self.by_type.values():
            if event_type.full_name == full_name:
                return event_type
        raise WireError("UnknownType", f"{full_name} is not an event message")


# --- envelopes ------------------------------------------------------------------

@dataclasses.dataclass
class Envelope:
    """One event with its CloudEvents context. Values are decoded text."""

    id: str
    source: str
    type: str
    time: str
    key: str
    data_schema: str
    payload: bytes
    correlation_id: Optional[str] = None
    causation_id: Optional[str] = None
    traceparent: Optional[str] = None
    #: The payload already parsed by :meth:`decode`, kept for :meth:`message`.
    _parsed: object = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_message(
        cls,
        registry: Registry,
        message,
        source: str,
        *,
        id: Optional[str] = None,
        time: Optional[datetime.datetime] = None,
        correlation_id: Optional[str] = None,
        causation_id: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> "Envelope":
        """Wraps an event message; a new UUIDv7 id and the current time when
        not given."""
        event_type = registry.of_message(message)
        key = event_type.key_of(message)
        validate_key(key)
        if not is_valid_text(source):
            raise WireError("InvalidSource", f"source {source!r} is empty or has control characters")
        for kind, value in (("InvalidCorrelationId", correlation_id), ("InvalidCausationId", causation_id)):
            if value is not None and not is_valid_text(value):
                raise WireError(kind, f"{value!r} is empty or has control characters")
        if traceparent is not None and not is_valid_traceparent(traceparent):
            raise WireError("InvalidTraceparent", f"{traceparent!r} is not a W3C traceparent")
        return cls(
            id=id or str(uuid7()),
            source=source,
            type=event_type.type_name,
            time=format_rfc3339(time or datetime.datetime.now(datetime.timezone.utc)),
            key=key,
            data_schema=event_type.full_name,
            payload=message.SerializeToString(deterministic=True),
            correlation_id=correlation_id,
            causation_id=causation_id,
            traceparent=traceparent,
        )

    def subject(self) -> str:
        return event_subject(self.type, self.key)

    def headers(self) -> list[tuple[str, str]]:
        """The headers to publish, in contract order, values percent-encoded."""
        pairs = [
            (CE_SPECVERSION, SPEC_VERSION),
            (CE_ID, self.id),
            (CE_SOURCE, self.source),
            (CE_TYPE, self.type),
            (CE_TIME, self.time),
            (CE_SUBJECT, self.key),
            (CE_DATASCHEMA, DATASCHEMA_PREFIX + self.data_schema),
            (CONTENT_TYPE, CONTENT_TYPE_PROTOBUF),
        ]
        for name, value in (
            (CE_CORRELATIONID, self.correlation_id),
            (CE_CAUSATIONID, self.causation_id),
            (TRACEPARENT, self.traceparent),
        ):
            if value is not None:
                pairs.append((name, value))
        pairs.append((NATS_MSG_ID, self.id))
        return [(name, encode_header_value(value)) for name, value in pairs]

    def message(self, registry: Registry):
        """The payload as an instance of the generated class."""
        if self._parsed is not None:
            return self._parsed
        message = registry.get(self.type).message_class()
        message.ParseFromString(self.payload)
        return message

    @classmethod
    def decode(
        cls,
        registry: Registry,
        subject: str,
        headers: Iterable[tuple[str, str]],
        payload: bytes,
    ) -> "Envelope":
        """Validates a received message; raises :class:`WireError` with the
        kind of the first failed check, in the contract's order."""
        subject_type, subject_key = parse_event_subject(subject)
        by_name: dict[str, list[str]] = {}
        for header_name, header_value in headers:
            by_name.setdefault(header_name.lower(), []).append(header_value)

        def optional(name: str) -> Optional[str]:
            values = by_name.get(name.lower())
            if not values:
                return None
            if len(values) > 1:
                raise WireError("InvalidHeader", f"{name} is repeated")
            return decode_header_value(name, values[0])

        def required(name: str) -> str:
            value = optional(name)
            if value is None:
                raise WireError("MissingHeader", name)
            return value

        spec_version = required(CE_SPECVERSION)
        event_id = required(CE_ID)
        source = required(CE_SOURCE)
        event_type = required(CE_TYPE)
        event_time = required(CE_TIME)
        key = required(CE_SUBJECT)
        data_schema = required(CE_DATASCHEMA)
        content_type = required(CONTENT_TYPE)
        msg_id = required(NATS_MSG_ID)

        if spec_version != SPEC_VERSION:
            raise WireError("InvalidHeader", f"{CE_SPECVERSION}: expected 1.0, got {spec_version!r}")
        if content_type != CONTENT_TYPE_PROTOBUF:
            raise WireError("InvalidHeader", f"{CONTENT_TYPE}: expected {CONTENT_TYPE_PROTOBUF}")
        if not _UUID.fullmatch(event_id):
            raise WireError("InvalidHeader", f"{CE_ID}: not a hyphenated UUID: {event_id!r}")
        if not _UUID.fullmatch(msg_id) or uuid.UUID(msg_id) != uuid.UUID(event_id):
            raise WireError("InvalidHeader", f"{NATS_MSG_ID} {msg_id!r} differs from {CE_ID}")
        if not is_valid_text(source):
            raise WireError("InvalidHeader", f"{CE_SOURCE}: empty or has control characters")
        parse_rfc3339(event_time)

        if event_type != subject_type:
            raise WireError("TypeMismatch", f"{CE_TYPE} {event_type!r}, subject type {subject_type!r}")
        registered = registry.get(event_type)
        if key != subject_key:
            raise WireError("KeyMismatch", f"{CE_SUBJECT} {key!r}, subject key {subject_key!r}")
        if not data_schema.startswith(DATASCHEMA_PREFIX):
            raise WireError("InvalidHeader", f"{CE_DATASCHEMA}: expected proto:<full name>")
        full_name = data_schema[len(DATASCHEMA_PREFIX):]
        if full_name != registered.full_name:
            raise WireError("TypeMismatch", f"{CE_DATASCHEMA} names {full_name}, not {registered.full_name}")

        correlation_id = optional(CE_CORRELATIONID)
        causation_id = optional(CE_CAUSATIONID)
        for name, value in ((CE_CORRELATIONID, correlation_id), (CE_CAUSATIONID, causation_id)):
            if value is not None and not is_valid_text(value):
                raise WireError("InvalidHeader", f"{name}: empty or has control characters")
        traceparent = optional(TRACEPARENT)
        if traceparent is not None and not is_valid_traceparent(traceparent):
            raise WireError("InvalidHeader", f"{TRACEPARENT}: not a W3C traceparent: {traceparent!r}")

        from google.protobuf.message import DecodeError as ProtobufDecodeError

        message = registered.message_class()
        try:
            message.ParseFromString(payload)
        except ProtobufDecodeError as e:
            raise WireError("PayloadNotDecodable", f"{registered.full_name}: {e}") from None
        payload_key = registered.key_of(message)
        if payload_key != subject_key:
            raise WireError(
                "KeyMismatch",
                f"payload field {registered.key_field} {payload_key!r}, subject key {subject_key!r}",
            )
        return cls(
            id=event_id,
            source=source,
            type=event_type,
            time=event_time,
            key=key,
            data_schema=registered.full_name,
            payload=bytes(payload),
            correlation_id=correlation_id,
            causation_id=causation_id,
            traceparent=traceparent,
            _parsed=message,
        )


_REGISTRY: Optional[Registry] = None


def registry() -> Registry:
    """The registry of the package's generated classes, built once."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY
