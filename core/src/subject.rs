//! The subject grammar: stream and durable names, publish subjects,
//! subscription patterns, matching, and the overlap test that keeps each
//! subject in at most one stream. Every adapter validates with these, so a
//! subject one adapter refuses, every adapter refuses, with the same kind.

/// True for a valid stream or durable name: letters, digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && !token.chars().any(char::is_whitespace)
}

/// True for a concrete subject one may publish to: non-empty tokens, no
/// whitespace, no wildcard tokens.
pub fn valid_publish_subject(subject: &str) -> bool {
    subject
        .split('.')
        .all(|t| valid_token(t) && t != "*" && t != ">")
}

/// True for a subscription pattern: non-empty tokens without whitespace,
/// wildcards only as whole tokens (`a*` is refused, as JetStream refuses
/// it), `>` only last.
pub fn valid_pattern(pattern: &str) -> bool {
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        valid_token(t)
            && (t.len() == 1 || !t.contains(['*', '>']))
            && (*t != ">" || i + 1 == tokens.len())
    })
}

/// True when `subject` matches `pattern` (`*` one token, `>` the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    let mut pattern_tokens = pattern.split('.').peekable();
    while let Some(p) = pattern_tokens.next() {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return pattern_tokens.peek().is_none(),
            ("*", Some(_)) => {}
            (literal, Some(s)) if literal == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// True when some subject matches both patterns.
pub fn patterns_overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects_reject_wildcards_blanks_and_whitespace() {
        assert!(valid_publish_subject("events.user.registered.u-1"));
        for bad in [
            "",
            "events.>",
            "events.*.x",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a\tb",
        ] {
            assert!(!valid_publish_subject(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn patterns_allow_trailing_full_wildcard_only() {
        assert!(valid_pattern("events.>"));
        assert!(valid_pattern("events.*.x"));
        assert!(!valid_pattern("events.>.x"));
        assert!(!valid_pattern(""));
        assert!(!valid_pattern("events.a*"), "wildcards are whole tokens");
        assert!(!valid_pattern("events.a>"));
    }

    #[test]
    fn overlap_follows_wildcard_rules() {
        assert!(patterns_overlap("events.>", "events.user.*"));
        assert!(patterns_overlap("a.*", "*.b"));
        assert!(patterns_overlap("a.b", "a.b"));
        assert!(!patterns_overlap("events.>", "deadletter.>"));
        assert!(!patterns_overlap("a.*", "a.b.c"));
        assert!(!patterns_overlap("a.>", "a"));
        assert!(patterns_overlap(">", "a"));
    }

    #[test]
    fn names_are_restricted() {
        assert!(valid_name("EVENTS_1-a"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(""));
    }
}
