//! Byte encodings of everything the engine stores; see
//! `docs/embedded-log-format.md`.
//!
//! Every value is sealed: `[record version][CRC32 of the body, BE][body]`, so
//! a damaged value is detected on read and never returned as data.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backbone_core::Headers;
use bytes::Bytes;

use crate::message::StoredMessage;

/// Version byte of every sealed record.
const RECORD_VERSION: u8 = 1;
/// Bytes before a sealed record's body.
const SEAL_LEN: usize = 5;

/// A stored value failed its version or checksum test, or does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// Wraps `body` in a version byte and its checksum.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_LEN + body.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a sealed record, after checking its version and checksum.
pub(crate) fn unseal(value: &[u8]) -> Result<&[u8], Corrupt> {
    if value.len() < SEAL_LEN {
        return Err(Corrupt("record shorter than its header"));
    }
    if value[0] != RECORD_VERSION {
        return Err(Corrupt("unknown record version"));
    }
    let stored = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    let body = &value[SEAL_LEN..];
    if crc32fast::hash(body) != stored {
        return Err(Corrupt("checksum mismatch"));
    }
    Ok(body)
}

/// A sequence as a key: big-endian so trees iterate in sequence order.
pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence of a key written by [`seq_key`].
pub(crate) fn key_seq(key: &[u8]) -> Result<u64, Corrupt> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Corrupt("key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Nanoseconds since the Unix epoch (0 for earlier times).
pub(crate) fn time_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `nanos` after the Unix epoch.
pub(crate) fn nanos_time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// Reads fixed and length-prefixed fields off the front of a body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("record truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| Corrupt("u64"))?,
        ))
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| Corrupt("u32"))?,
        ))
    }

    fn string(&mut self) -> Result<String, Corrupt> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| Corrupt("string is not UTF-8"))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A message's sealed value: time, subject, headers, then the payload.
#[cfg(test)]
pub(crate) fn encode_message(
    time: SystemTime,
    subject: &str,
    headers: &Headers,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_LEN + 32 + subject.len() + payload.len());
    encode_message_into(&mut out, time_nanos(time), subject, headers.iter(), payload);
    out
}

/// Appends a message's sealed value (time, subject, headers, then the
/// payload) to `out`, sealing it in place.
pub(crate) fn encode_message_into<'a>(
    out: &mut Vec<u8>,
    nanos: u64,
    subject: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    payload: &[u8],
) {
    let start = out.len();
    out.push(RECORD_VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&nanos.to_be_bytes());
    put_str(out, subject);
    // The count goes in front of the pairs once they are written.
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count: u32 = 0;
    for (name, value) in headers {
        put_str(out, name);
        put_str(out, value);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + SEAL_LEN..]);
    out[start + 1..start + SEAL_LEN].copy_from_slice(&crc.to_be_bytes());
}

/// Bytes of a frame header in a segment file: value length (u32 BE),
/// sequence (u64 BE), CRC32 of those twelve bytes (u32 BE).
pub(crate) const FRAME_HEADER: usize = 16;

/// The header of a frame holding `len` bytes of sealed value for `seq`.
pub(crate) fn frame_header(len: u32, seq: u64) -> [u8; FRAME_HEADER] {
    let mut out = [0; FRAME_HEADER];
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4..12].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The value length and sequence of a frame header; `None` when its
/// checksum fails (a torn or damaged header).
pub(crate) fn parse_frame_header(header: &[u8]) -> Option<(usize, u64)> {
    let header: &[u8; FRAME_HEADER] = header.get(..FRAME_HEADER)?.try_into().ok()?;
    let crc = u32::from_be_bytes(header[12..].try_into().ok()?);
    if crc32fast::hash(&header[..12]) != crc {
        return None;
    }
    let len = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
    let seq = u64::from_be_bytes(header[4..12].try_into().ok()?);
    Some((len, seq))
}

/// A checked, borrowed view of a message value: what scans over the log
/// need, without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageView<'a> {
    /// Store time, nanoseconds since the epoch.
    pub(crate) nanos: u64,
    /// The subject.
    pub(crate) subject: &'a str,
    header_count: u32,
    /// Headers then payload.
    rest: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Checks `value` (version, checksum) and reads its fixed fields.
    pub(crate) fn parse(value: &'a [u8]) -> Result<Self, Corrupt> {
        let mut r = Reader(unseal(value)?);
        let nanos = r.u64()?;
        let len = r.u32()? as usize;
        let subject =
            std::str::from_utf8(r.take(len)?).map_err(|_| Corrupt("string is not UTF-8"))?;
        let header_count = r.u32()?;
        Ok(Self {
            nanos,
            subject,
            header_count,
            rest: r.0,
        })
    }

    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
        let mut r = Reader(self.rest);
        for _ in 0..self.header_count {
            let n = r.u32().ok()? as usize;
            let found = r.take(n).ok()? == name.as_bytes();
            let v = r.u32().ok()? as usize;
            let value = r.take(v).ok()?;
            if found {
                return std::str::from_utf8(value).ok();
            }
        }
        None
    }
}

/// Decodes a value written by [`encode_message`].
pub(crate) fn decode_message(
    stream: &str,
    seq: u64,
    value: &[u8],
) -> Result<StoredMessage, Corrupt> {
    let mut r = Reader(unseal(value)?);
    let time = nanos_time(r.u64()?);
    let subject = r.string()?;
    let count = r.u32()?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = r.string()?;
        let value = r.string()?;
        headers.append(name, value);
    }
    Ok(StoredMessage {
        stream: stream.to_owned(),
        seq,
        subject,
        headers,
        payload: Bytes::copy_from_slice(r.0),
        time,
        malformed_headers: None,
    })
}

/// Bytes a message counts for in [`crate::StreamInfo::bytes`]: subject,
/// headers (+4 per pair) and payload, as [`crate::OutboundMessage::wire_size`].
pub(crate) fn message_size(subject: &str, headers: &Headers, payload_len: usize) -> u64 {
    crate::message::counted_size(subject, headers.iter(), payload_len) as u64
}

/// A single `u64`, sealed.
pub(crate) fn encode_u64(v: u64) -> Vec<u8> {
    seal(&v.to_be_bytes())
}

/// Decodes a value written by [`encode_u64`].
pub(crate) fn decode_u64(value: &[u8]) -> Result<u64, Corrupt> {
    Reader(unseal(value)?).u64()
}

/// The persisted counters of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamCounters {
    /// Highest sequence ever assigned.
    pub(crate) last_seq: u64,
    /// Messages stored.
    pub(crate) messages: u64,
    /// Bytes stored.
    pub(crate) bytes: u64,
    /// Store time of the last message, nanoseconds since the epoch.
    pub(crate) last_time: u64,
    /// The `subj/<stream>` tree reflects every message up to this sequence.
    pub(crate) subjects_through: u64,
}

impl StreamCounters {
    /// The sealed value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(40);
        for v in [
            self.last_seq,
            self.messages,
            self.bytes,
            self.last_time,
            self.subjects_through,
        ] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        seal(&body)
    }

    /// Decodes a value written by [`Self::encode`].
    pub(crate) fn decode(value: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader(unseal(value)?);
        Ok(Self {
            last_seq: r.u64()?,
            messages: r.u64()?,
            bytes: r.u64()?,
            last_time: r.u64()?,
            subjects_through: r.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_with_headers_in_order() {
        let headers: Headers = [("b", "2"), ("a", "1"), ("b", "3")].into_iter().collect();
        let time = nanos_time(1_700_000_000_123_456_789);
        let value = encode_message(time, "events.x.1", &headers, b"\x00payload\xff");
        let msg = decode_message("S", 7, &value).unwrap();
        assert_eq!(msg.seq, 7);
        assert_eq!(msg.subject, "events.x.1");
        assert_eq!(msg.headers, headers);
        assert_eq!(&msg.payload[..], b"\x00payload\xff");
        assert_eq!(msg.time, time);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let value = encode_message(SystemTime::now(), "a.b", &Headers::new(), b"hello");
        for i in 0..value.len() {
            let mut damaged = value.clone();
            damaged[i] ^= 0x40;
            assert!(
                decode_message("S", 1, &damaged).is_err(),
                "byte {i} flip undetected"
            );
        }
        assert!(decode_message("S", 1, &value[..3]).is_err());
    }

    #[test]
    fn a_view_reads_what_the_full_decode_reads() {
        let headers: Headers = [("a", "1"), ("Nats-Msg-Id", "x-1")].into_iter().collect();
        let value = encode_message(nanos_time(42), "events.x.1", &headers, b"payload");
        let view = MessageView::parse(&value).unwrap();
        assert_eq!(view.nanos, 42);
        assert_eq!(view.subject, "events.x.1");
        assert_eq!(view.header("Nats-Msg-Id"), Some("x-1"));
        assert_eq!(view.header("b"), None);
        let mut damaged = value.clone();
        damaged[7] ^= 1;
        assert!(MessageView::parse(&damaged).is_err());
    }

    #[test]
    fn frame_headers_round_trip_and_detect_damage() {
        let header = frame_header(300, 42);
        assert_eq!(parse_frame_header(&header), Some((300, 42)));
        for i in 0..FRAME_HEADER {
            let mut damaged = header;
            damaged[i] ^= 0x10;
            assert_eq!(parse_frame_header(&damaged), None, "byte {i}");
        }
        assert_eq!(parse_frame_header(&header[..10]), None);
    }

    #[test]
    fn counters_round_trip() {
        let c = StreamCounters {
            last_seq: 9,
            messages: 4,
            bytes: 100,
            last_time: 5,
            subjects_through: 8,
        };
        assert_eq!(StreamCounters::decode(&c.encode()).unwrap(), c);
    }
}
