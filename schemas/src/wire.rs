//! Constants of the wire contract (see `docs/wire-contract.md`).
//!
//! Header names are written exactly as below (lowercase, except
//! `Nats-Msg-Id`, which is the name nats-server looks for). Readers match
//! names ASCII-case-insensitively.

/// The JetStream stream that stores every event.
pub const STREAM_NAME: &str = "EVENTS";
/// The subjects the `EVENTS` stream captures.
pub const STREAM_SUBJECTS: &str = "events.>";

/// CloudEvents spec version header; always [`SPEC_VERSION`].
pub const CE_SPECVERSION: &str = "ce-specversion";
/// Event id header: a UUID (v7 when Backbone publishes), unique per event.
pub const CE_ID: &str = "ce-id";
/// Publishing service header, e.g. `payment-service`.
pub const CE_SOURCE: &str = "ce-source";
/// Event type header, e.g. `payment.received`.
pub const CE_TYPE: &str = "ce-type";
/// Publish time header, RFC 3339 in UTC.
pub const CE_TIME: &str = "ce-time";
/// Event key header; equals the last subject token.
pub const CE_SUBJECT: &str = "ce-subject";
/// Payload schema header: [`DATASCHEMA_PREFIX`] + protobuf full name.
pub const CE_DATASCHEMA: &str = "ce-dataschema";
/// CloudEvents extension: the id shared by every event of one workflow.
pub const CE_CORRELATIONID: &str = "ce-correlationid";
/// CloudEvents extension: the `ce-id` of the event that caused this one.
pub const CE_CAUSATIONID: &str = "ce-causationid";
/// Payload media type header; always [`CONTENT_TYPE_PROTOBUF`].
pub const CONTENT_TYPE: &str = "content-type";
/// W3C trace context header, when the publisher traces.
pub const TRACEPARENT: &str = "traceparent";
/// JetStream de-duplication header; always equal to `ce-id`.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// The CloudEvents spec version Backbone speaks.
pub const SPEC_VERSION: &str = "1.0";
/// The payload media type: protobuf binary encoding.
pub const CONTENT_TYPE_PROTOBUF: &str = "application/protobuf";
/// `ce-dataschema` is this URI scheme followed by the protobuf full name,
/// e.g. `proto:backbone.payment.v1.PaymentReceived`.
pub const DATASCHEMA_PREFIX: &str = "proto:";

/// The `ce-dataschema` URI of a protobuf message full name.
pub fn data_schema_uri(full_name: &str) -> String {
    format!("{DATASCHEMA_PREFIX}{full_name}")
}

/// True when `value` is a W3C `traceparent`:
/// `<version>-<trace-id>-<parent-id>-<flags>`, lowercase hex of 2, 32, 16
/// and 2 digits, trace and parent ids not all zero, version not `ff`.
/// Version `00` has exactly four parts; later versions may append more.
///
/// ```
/// use backbone_schemas::wire::is_valid_traceparent;
///
/// assert!(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
/// ```
pub fn is_valid_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let not_zero = |s: &str| s.bytes().any(|b| b != b'0');
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [version, trace, parent, flags, rest @ ..] => {
            hex(version, 2)
                && *version != "ff"
                && (rest.is_empty() || *version != "00")
                && hex(trace, 32)
                && not_zero(trace)
                && hex(parent, 16)
                && not_zero(parent)
                && hex(flags, 2)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_format() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_valid_traceparent(ok));
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad}");
        }
    }
}
