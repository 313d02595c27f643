//! Message headers as they travel on the wire.
//!
//! NATS headers are a multimap of case-sensitive names to string values.
//! [`Headers`] keeps the order they were written in, which is the order they
//! go on the wire. Readers must not depend on order: JetStream (through
//! async-nats) returns stored headers as a map, so only the set of
//! `(name, value)` pairs is guaranteed to read back the same on every adapter.

use serde::{Deserialize, Serialize};

/// An ordered multimap of header names to values.
///
/// Names are compared case-sensitively, as NATS does. Insertion order is kept
/// for writing; compare headers read back from a broker as sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing every earlier value of `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        if let Some(first) = self.0.iter().position(|(n, _)| *n == name) {
            self.0[first].1 = value;
            let mut index = 0;
            self.0.retain(|(n, _)| {
                let keep = index <= first || *n != name;
                index += 1;
                keep
            });
        } else {
            self.0.push((name, value));
        }
    }

    /// Adds a value for `name`, keeping earlier values.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Removes every value of `name`; returns the first removed value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let first = self.get(name).map(str::to_owned);
        self.0.retain(|(n, _)| n != name);
        first
    }

    /// All `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of `(name, value)` pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        )
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_every_earlier_value_and_keeps_position() {
        let mut h: Headers = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        h.insert("a", "9");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("a", "9"), ("b", "2")]);
    }

    #[test]
    fn names_are_case_sensitive() {
        let mut h = Headers::new();
        h.append("Ce-Id", "x");
        assert_eq!(h.get("ce-id"), None);
        assert_eq!(h.get("Ce-Id"), Some("x"));
    }
}
