//! The error shape shared by every Backbone crate.
//!
//! Following async-nats, each operation has its own kind enum and its error is
//! `Error<ThatKind>`. Kinds are `PartialEq`, so tests assert the kind rather
//! than matching on message text, and callers branch on `error.kind()`.

use std::fmt;

/// A boxed underlying cause.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of one operation: a kind to branch on, plus optional detail.
pub struct Error<Kind> {
    kind: Kind,
    detail: Option<String>,
    source: Option<Source>,
}

impl<Kind> Error<Kind> {
    /// An error of `kind` with no further detail.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            detail: None,
            source: None,
        }
    }

    /// An error of `kind` with a human-readable detail.
    pub fn with_detail(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
            source: None,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(kind: Kind, source: impl Into<Source>) -> Self {
        Self {
            kind,
            detail: None,
            source: Some(source.into()),
        }
    }

    /// Adds a human-readable detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Says where the error happened, in front of any detail it already
    /// carries (which [`Error::detail`] would replace).
    pub fn context(mut self, context: impl Into<String>) -> Self {
        let context = context.into();
        self.detail = Some(match self.detail.take() {
            Some(detail) => format!("{context}: {detail}"),
            None => context,
        });
        self
    }

    /// What went wrong, to branch on.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The detail text, if any.
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The underlying cause, if any, giving up this error.
    pub fn into_source(self) -> Option<Source> {
        self.source
    }

    /// Converts into an error of another kind, keeping detail and source.
    pub fn map_kind<Other>(self, f: impl FnOnce(Kind) -> Other) -> Error<Other> {
        Error {
            kind: f(self.kind),
            detail: self.detail,
            source: self.source,
        }
    }
}

impl<Kind: fmt::Display> fmt::Display for Error<Kind> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl<Kind: fmt::Debug> fmt::Debug for Error<Kind> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Error");
        s.field("kind", &self.kind);
        if let Some(detail) = &self.detail {
            s.field("detail", detail);
        }
        if let Some(source) = &self.source {
            s.field("source", source);
        }
        s.finish()
    }
}

impl<Kind: fmt::Display + fmt::Debug> std::error::Error for Error<Kind> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl<Kind> From<Kind> for Error<Kind> {
    fn from(kind: Kind) -> Self {
        Self::new(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Kind {
        Broken,
    }

    impl fmt::Display for Kind {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("broken")
        }
    }

    #[test]
    fn context_keeps_the_detail_it_is_put_in_front_of() {
        let e = Error::with_detail(Kind::Broken, "event 7").context("rebuilding audit");
        assert_eq!(e.detail_text(), Some("rebuilding audit: event 7"));
        assert_eq!(e.kind(), &Kind::Broken);
        let bare = Error::new(Kind::Broken).context("rebuilding audit");
        assert_eq!(bare.detail_text(), Some("rebuilding audit"));
    }

    #[test]
    fn display_joins_kind_detail_and_source() {
        let io = std::io::Error::other("disk gone");
        let err = Error::with_source(Kind::Broken, io).detail("while writing");
        assert_eq!(err.kind(), &Kind::Broken);
        assert_eq!(err.to_string(), "broken: while writing: disk gone");
    }
}
