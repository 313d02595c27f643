//! The server's version and the features it implies.

use std::fmt;

/// A nats-server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// The oldest server Backbone supports: Debian's package.
    pub const FLOOR: Self = Self::new(2, 9, 10);
    /// The first server with consumers on several filter subjects.
    pub const MULTIPLE_FILTERS: Self = Self::new(2, 10, 0);
    /// The first server that reads a reason after `+TERM` (earlier ones
    /// only recognise a bare `+TERM`).
    pub const TERM_REASON: Self = Self::new(2, 10, 0);

    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `2.9.10`, `v2.10.4` or `2.11.0-beta.1` (the suffix is ignored);
    /// `None` when the text has no numeric `major.minor`.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let mut parts = core.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// True when the server accepts consumers with several filter subjects.
    pub fn supports_multiple_filters(self) -> bool {
        self >= Self::MULTIPLE_FILTERS
    }

    /// True when the server takes a reason with `+TERM`.
    pub fn supports_term_reason(self) -> bool {
        self >= Self::TERM_REASON
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerVersion;

    #[test]
    fn parses_release_and_prerelease_versions() {
        assert_eq!(
            ServerVersion::parse("2.9.10"),
            Some(ServerVersion::new(2, 9, 10))
        );
        assert_eq!(
            ServerVersion::parse("v2.10.4"),
            Some(ServerVersion::new(2, 10, 4))
        );
        assert_eq!(
            ServerVersion::parse("2.11.0-beta.1"),
            Some(ServerVersion::new(2, 11, 0))
        );
        assert_eq!(ServerVersion::parse("nonsense"), None);
    }

    #[test]
    fn multiple_filters_start_at_2_10() {
        assert!(!ServerVersion::FLOOR.supports_multiple_filters());
        assert!(ServerVersion::new(2, 10, 0).supports_multiple_filters());
        assert!(ServerVersion::new(3, 0, 0).supports_multiple_filters());
    }
}
