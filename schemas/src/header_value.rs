//! Percent-encoding of CloudEvents header values.
//!
//! The CloudEvents HTTP binding (which the NATS binding follows for binary
//! mode) requires header values to percent-encode space (`0x20`), double
//! quote (`0x22`), percent (`0x25`) and every character outside printable
//! ASCII `0x21..=0x7E`; the character is first encoded as UTF-8 and every
//! byte becomes `%XX` (uppercase hex). Receivers percent-decode and then
//! interpret the bytes as UTF-8.
//!
//! [`decode`] is strict about escapes: a `%` not followed by two hex digits,
//! or escapes that do not form UTF-8, are errors. It is lenient about
//! characters a sender should have encoded but did not (they are kept).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Bytes that must be encoded besides non-ASCII: controls, space, `"`, `%`.
const MUST_ENCODE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// Percent-encodes a header value; borrows when nothing needs encoding.
///
/// ```
/// use backbone_schemas::header_value::encode;
///
/// assert_eq!(encode("payment-service"), "payment-service");
/// assert_eq!(encode("Zoë \"Z\" 100%"), "Zo%C3%AB%20%22Z%22%20100%25");
/// ```
pub fn encode(value: &str) -> Cow<'_, str> {
    utf8_percent_encode(value, MUST_ENCODE).into()
}

/// Percent-decodes a header value.
///
/// Fails with a description when an escape is malformed or the decoded
/// bytes are not UTF-8.
pub fn decode(value: &str) -> Result<Cow<'_, str>, String> {
    if !value.contains('%') {
        return Ok(Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("malformed percent escape at byte {i}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "percent-decoded bytes are not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_exactly_the_required_characters() {
        assert_eq!(encode("a b\"c%d\te\u{7f}"), "a%20b%22c%25d%09e%7F");
        let printable: String = ('!'..='~').filter(|c| !matches!(c, '"' | '%')).collect();
        assert_eq!(encode(&printable), printable);
        assert_eq!(encode("€"), "%E2%82%AC");
    }

    #[test]
    fn decode_is_strict_about_escapes() {
        assert_eq!(decode("a%20b").unwrap(), "a b");
        assert_eq!(decode("%e2%82%ac").unwrap(), "€");
        assert_eq!(decode("kept as is").unwrap(), "kept as is");
        assert!(decode("100%").is_err());
        assert!(decode("%4").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%C3").is_err());
    }
}
