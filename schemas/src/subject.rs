//! Event subjects: `events.<domain>.<name>.<key>`.
//!
//! Every event is published on a subject made of the fixed prefix
//! [`EVENT_SUBJECT_PREFIX`], the two tokens of its type name and one key
//! token, e.g. `events.user.followed.u-42`. Invalid type names and keys are
//! rejected with a typed [`SubjectError`]; nothing is ever rewritten or
//! escaped to make it fit.

use std::fmt;

use crate::error::Error;
use crate::options::check_type_name;

/// The first token of every event subject. The `EVENTS` stream captures
/// `events.>`.
pub const EVENT_SUBJECT_PREFIX: &str = "events";

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// An invalid subject, event type name or key.
pub type SubjectError = Error<SubjectErrorKind>;

/// What is wrong with a subject, type name or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectErrorKind {
    /// The key is the empty string.
    EmptyKey,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key contains a character outside printable ASCII `0x21..=0x7E`,
    /// or one of `.`, `*`, `>`.
    InvalidKeyChar {
        /// The first offending character.
        ch: char,
        /// Its byte offset in the key.
        index: usize,
    },
    /// The type name is not `<domain>.<name>` of lowercase `[a-z0-9_]`.
    InvalidTypeName(String),
    /// The subject is not `events.<domain>.<name>.<key>`.
    InvalidSubject(String),
}

impl fmt::Display for SubjectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKey => f.write_str("event key is empty"),
            Self::KeyTooLong { len } => {
                write!(f, "event key is {len} bytes, more than {MAX_KEY_LEN}")
            }
            Self::InvalidKeyChar { ch, index } => write!(
                f,
                "event key has {ch:?} at byte {index}; allowed: printable ASCII except '.', '*', '>'"
            ),
            Self::InvalidTypeName(name) => write!(
                f,
                "event type {name:?} is not `<domain>.<name>` of lowercase [a-z0-9_]"
            ),
            Self::InvalidSubject(subject) => write!(
                f,
                "subject {subject:?} is not `{EVENT_SUBJECT_PREFIX}.<domain>.<name>.<key>`"
            ),
        }
    }
}

/// Checks an event type name: `<domain>.<name>`, each segment non-empty
/// lowercase ASCII letters, digits and `_`.
pub fn validate_type_name(type_name: &str) -> Result<(), SubjectError> {
    check_type_name(type_name)
        .map_err(|_| SubjectError::new(SubjectErrorKind::InvalidTypeName(type_name.to_owned())))
}

/// Checks a key token: non-empty, at most [`MAX_KEY_LEN`] bytes, only
/// printable ASCII `0x21..=0x7E` except `.`, `*` and `>`.
///
/// ```
/// use backbone_schemas::subject::{validate_key, SubjectErrorKind};
///
/// assert!(validate_key("u-42").is_ok());
/// let err = validate_key("u 42").unwrap_err();
/// assert_eq!(err.kind(), &SubjectErrorKind::InvalidKeyChar { ch: ' ', index: 1 });
/// ```
pub fn validate_key(key: &str) -> Result<(), SubjectError> {
    if key.is_empty() {
        return Err(SubjectError::new(SubjectErrorKind::EmptyKey));
    }
    if let Some((index, ch)) = key.char_indices().find(|&(_, c)| !is_key_char(c)) {
        return Err(SubjectError::new(SubjectErrorKind::InvalidKeyChar {
            ch,
            index,
        }));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(SubjectError::new(SubjectErrorKind::KeyTooLong {
            len: key.len(),
        }));
    }
    Ok(())
}

/// True for the characters allowed in a key token.
pub fn is_key_char(c: char) -> bool {
    matches!(c, '!'..='~') && !matches!(c, '.' | '*' | '>')
}

/// The subject of an event: `events.<type>.<key>`.
///
/// ```
/// use backbone_schemas::subject::event_subject;
///
/// assert_eq!(event_subject("user.followed", "u-42").unwrap(), "events.user.followed.u-42");
/// assert!(event_subject("user.followed", "a.b").is_err());
/// ```
pub fn event_subject(type_name: &str, key: &str) -> Result<String, SubjectError> {
    validate_type_name(type_name)?;
    validate_key(key)?;
    Ok(format!("{EVENT_SUBJECT_PREFIX}.{type_name}.{key}"))
}

/// Splits an event subject into `(type name, key)`.
///
/// Any subject that is not exactly four tokens `events.<domain>.<name>.<key>`
/// with a valid type name and key fails with
/// [`SubjectErrorKind::InvalidSubject`]; the detail says which part is wrong.
///
/// ```
/// use backbone_schemas::subject::parse_event_subject;
///
/// assert_eq!(
///     parse_event_subject("events.payment.received.u-42").unwrap(),
///     ("payment.received", "u-42"),
/// );
/// assert!(parse_event_subject("events.payment.received").is_err());
/// ```
pub fn parse_event_subject(subject: &str) -> Result<(&str, &str), SubjectError> {
    let invalid = |detail: String| {
        SubjectError::with_detail(SubjectErrorKind::InvalidSubject(subject.to_owned()), detail)
    };
    let rest = subject
        .strip_prefix(EVENT_SUBJECT_PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| invalid(format!("must start with `{EVENT_SUBJECT_PREFIX}.`")))?;
    let (type_name, key) = match rest.match_indices('.').nth(1) {
        Some((dot, _)) => (&rest[..dot], &rest[dot + 1..]),
        None => return Err(invalid("expected 4 dot-separated tokens".to_owned())),
    };
    validate_type_name(type_name).map_err(|e| invalid(e.to_string()))?;
    validate_key(key).map_err(|e| invalid(e.to_string()))?;
    Ok((type_name, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert_eq!(
            validate_key("").unwrap_err().kind(),
            &SubjectErrorKind::EmptyKey
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            validate_key(&long).unwrap_err().kind(),
            &SubjectErrorKind::KeyTooLong { len: 129 }
        );
        assert!(validate_key(&long[1..]).is_ok());
        for (key, ch, index) in [
            ("a.b", '.', 1),
            ("*", '*', 0),
            ("x>", '>', 1),
            ("é", 'é', 0),
        ] {
            assert_eq!(
                validate_key(key).unwrap_err().kind(),
                &SubjectErrorKind::InvalidKeyChar { ch, index }
            );
        }
        assert!(validate_key("u-42:+_~!\"#$%&'()").is_ok());
    }

    #[test]
    fn subject_rules() {
        for bad in [
            "events.user.followed",
            "events.user.followed.",
            "events.user.followed.a.b",
            "event.user.followed.k",
            "events.User.followed.k",
            "events..followed.k",
            "events.user.followed.k k",
            "events",
            "",
        ] {
            let err = parse_event_subject(bad).unwrap_err();
            assert_eq!(
                err.kind(),
                &SubjectErrorKind::InvalidSubject(bad.to_owned()),
                "{bad}"
            );
        }
        assert!(matches!(
            event_subject("user", "k").unwrap_err().kind(),
            SubjectErrorKind::InvalidTypeName(_)
        ));
        assert!(matches!(
            event_subject("user.followed.x", "k").unwrap_err().kind(),
            SubjectErrorKind::InvalidTypeName(_)
        ));
    }
}
