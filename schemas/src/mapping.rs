//! [`Mapping`]: how another system's JSON becomes events, declared in
//! TOML with JSON pointers (RFC 6901). The server's webhooks map provider
//! deliveries with it, the inbound bridges legacy message payloads.
//!
//! ```toml
//! [[events]]
//! type = "message.received"                  # the event type produced
//! each = "/entry/*/changes/*/value/messages/*"  # fan-out: `*` walks an array
//! id = "/id"                                 # the provider's id of the item
//! when = [{ pointer = "/type", equals = "text" }]   # or { pointer = "/x", exists = true }
//! [events.fields]                            # proto3 JSON field = source
//! conversationId = "/from"                   # a pointer into the item
//! "processed.url" = "/url"                   # dots: a nested message's field
//! channel = { value = "CHANNEL_WHATSAPP" }   # a constant
//! receivedAt = { pointer = "/timestamp", format = "unix_seconds" }
//! userId = { query = "user_id" }             # the callback URL's query
//! ```
//!
//! A source is a pointer into the item (a plain string, or `pointer`),
//! into the whole delivery (`root`), a parameter of the delivery
//! (`query`: the webhook request's query string; a bridged message's
//! routing key, message id and string headers), or a constant (`value`); `format = "text"` turns a number
//! into its decimal text (proto string fields), `"unix_seconds"` a Unix
//! time into RFC 3339. A source that is absent leaves the field unset.
//! Items that fail a `when` condition produce nothing; a delivery matching
//! no mapping produces no event (a webhook answers 200, so providers stop
//! retrying deliveries Backbone has no use for: status updates, pings; a
//! bridge acknowledges the message).
//!
//! Each event's `ce-id` is a UUIDv5 of the caller's namespace (the webhook
//! or bridge), the event type, the provider's id and, for a fan-out, the
//! item's position: the same delivery retried gives the same ids, and the
//! broker drops the copies.

use std::collections::{BTreeMap, HashMap};

use crate::Registry;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// The events a delivery produces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The events a delivery produces.
    pub events: Vec<EventMapping>,
}

/// One kind of event a delivery produces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMapping {
    /// The event type, e.g. `message.received`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// A pointer whose `*` segments walk arrays: one event per item. The
    /// whole delivery when absent.
    #[serde(default)]
    pub each: Option<String>,
    /// The provider's own id of the item (the idempotency key); several
    /// sources are joined, for ids only unique together (a pack's id and
    /// revision).
    pub id: Sources,
    /// Conditions every item must meet.
    #[serde(default)]
    pub when: Vec<Condition>,
    /// Proto3 JSON field name to source.
    pub fields: BTreeMap<String, Source>,
}

/// One source or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    /// One source.
    One(Source),
    /// Several, all required, joined with `/`.
    Many(Vec<Source>),
}

impl Sources {
    fn as_slice(&self) -> &[Source] {
        match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(s) => s,
        }
    }

    /// Every source's text, joined; `None` when one is absent.
    fn text(&self, item: &Value, delivery: &Delivery<'_>) -> Option<String> {
        let parts: Option<Vec<String>> = self
            .as_slice()
            .iter()
            .map(|s| s.resolve(item, delivery).as_ref().and_then(text))
            .collect();
        parts.filter(|p| !p.is_empty()).map(|p| p.join("/"))
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A pointer into the item.
    Pointer(String),
    /// A source with options.
    Spec(SourceSpec),
}

/// A source with options: exactly one of `pointer`, `root`, `query`,
/// `value`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A pointer into the item.
    pub pointer: Option<String>,
    /// A pointer into the whole delivery.
    pub root: Option<String>,
    /// A query parameter of the request.
    pub query: Option<String>,
    /// A constant.
    pub value: Option<Value>,
    /// How to convert what was found.
    pub format: Option<Format>,
}

/// A conversion of a source's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Numbers and booleans as their text.
    Text,
    /// A Unix time in seconds (number or text) as RFC 3339.
    UnixSeconds,
}

/// An item's value at `pointer` (or the delivery's at `root`) must equal
/// `equals`, or (with `exists`) be present or absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A pointer into the item.
    pub pointer: Option<String>,
    /// A pointer into the whole delivery.
    pub root: Option<String>,
    /// The value required.
    pub equals: Option<Value>,
    /// Whether a value must be there (`true`) or not (`false`).
    pub exists: Option<bool>,
}

/// What one delivery is read against.
pub struct Delivery<'a> {
    /// The JSON delivered.
    pub body: &'a Value,
    /// What `query` sources read.
    pub query: &'a HashMap<String, String>,
}

/// Why a delivery could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmappable {
    /// The event type whose mapping failed.
    pub event_type: String,
    /// Why.
    pub reason: String,
}

impl Source {
    fn resolve(&self, item: &Value, delivery: &Delivery<'_>) -> Option<Value> {
        let (found, format) = match self {
            Self::Pointer(p) => (item.pointer(p).cloned(), None),
            Self::Spec(spec) => {
                let found = if let Some(p) = &spec.pointer {
                    item.pointer(p).cloned()
                } else if let Some(p) = &spec.root {
                    delivery.body.pointer(p).cloned()
                } else if let Some(q) = &spec.query {
                    delivery.query.get(q).map(|v| json!(v))
                } else {
                    spec.value.clone()
                };
                (found, spec.format)
            }
        };
        let found = found.filter(|v| !v.is_null())?;
        match format {
            None => Some(found),
            Some(Format::Text) => Some(json!(text(&found)?)),
            Some(Format::UnixSeconds) => {
                let secs: i64 = text(&found)?.parse().ok()?;
                let time = OffsetDateTime::from_unix_timestamp(secs).ok()?;
                Some(json!(time.format(&Rfc3339).ok()?))
            }
        }
    }

    fn problem(&self) -> Option<&'static str> {
        match self {
            Self::Pointer(_) => None,
            Self::Spec(s) => {
                let given = [
                    s.pointer.is_some(),
                    s.root.is_some(),
                    s.query.is_some(),
                    s.value.is_some(),
                ];
                (given.iter().filter(|g| **g).count() != 1)
                    .then_some("a source takes exactly one of pointer, root, query, value")
            }
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Condition {
    fn holds(&self, item: &Value, delivery: &Delivery<'_>) -> bool {
        let found = match (&self.pointer, &self.root) {
            (Some(p), _) => item.pointer(p),
            (None, Some(p)) => delivery.body.pointer(p),
            (None, None) => None,
        };
        match (&self.equals, self.exists) {
            (Some(equals), _) => found == Some(equals),
            (None, Some(exists)) => found.is_some_and(|v| !v.is_null()) == exists,
            (None, None) => false,
        }
    }

    fn problem(&self) -> Option<&'static str> {
        let places = usize::from(self.pointer.is_some()) + usize::from(self.root.is_some());
        let tests = usize::from(self.equals.is_some()) + usize::from(self.exists.is_some());
        (places != 1 || tests != 1)
            .then_some("a condition takes one of pointer, root and one of equals, exists")
    }
}

/// Every value `each` reaches, with its position (the array indexes its
/// `*` segments took).
fn expand<'v>(root: &'v Value, each: Option<&str>) -> Vec<(String, &'v Value)> {
    let Some(each) = each else {
        return vec![(String::new(), root)];
    };
    let parts: Vec<&str> = each.split("/*").collect();
    let mut current = vec![(String::new(), root)];
    for (i, part) in parts.iter().enumerate() {
        current = current
            .into_iter()
            .filter_map(|(at, v)| v.pointer(part).map(|v| (at, v)))
            .collect();
        if i + 1 < parts.len() {
            current = current
                .into_iter()
                .flat_map(|(at, v)| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(move |(n, item)| (format!("{at}/{n}"), item))
                })
                .collect();
        }
    }
    current
}

/// Inserts `value` at `path`, whose dots name nested messages
/// (`processed.url`).
fn insert_path(data: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            data.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let nested = data
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(nested) = nested {
                insert_path(nested, rest, value);
            }
        }
    }
}

impl Mapping {
    /// Why the mapping is invalid, if it is: an unregistered event type, a
    /// field the event message does not have, a source with no or several
    /// places.
    pub fn problem(&self) -> Option<String> {
        let registry = Registry::global();
        for event in &self.events {
            let Some(registered) = registry.by_type_name(&event.event_type) else {
                return Some(format!("unknown event type {}", event.event_type));
            };
            for (field, source) in &event.fields {
                let descriptor = &registered.descriptor;
                let top = field.split('.').next().unwrap_or(field);
                if descriptor.get_field_by_json_name(top).is_none()
                    && descriptor.get_field_by_name(top).is_none()
                {
                    return Some(format!("{} has no field {field}", event.event_type));
                }
                if let Some(problem) = source.problem() {
                    return Some(format!("{}.{field}: {problem}", event.event_type));
                }
            }
            if let Some(problem) = event.id.as_slice().iter().find_map(Source::problem) {
                return Some(format!("{} id: {problem}", event.event_type));
            }
            if let Some(problem) = event.when.iter().find_map(Condition::problem) {
                return Some(format!("{} when: {problem}", event.event_type));
            }
        }
        None
    }

    /// The structured CloudEvents a delivery produces, in mapping order and
    /// item order, with `source` as `ce-source`; their ids are derived
    /// within `namespace` (e.g. `backbone-webhook/<name>`).
    pub fn events(
        &self,
        namespace: &str,
        source: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Vec<Value>, Unmappable> {
        let mut out = Vec::new();
        for mapping in &self.events {
            for (at, item) in expand(delivery.body, mapping.each.as_deref()) {
                if !mapping.when.iter().all(|c| c.holds(item, delivery)) {
                    continue;
                }
                let unmappable = |reason: String| Unmappable {
                    event_type: mapping.event_type.clone(),
                    reason,
                };
                let provider_id = mapping
                    .id
                    .text(item, delivery)
                    .ok_or_else(|| unmappable(format!("no provider id at item {at:?}")))?;
                let mut data = Map::new();
                for (field, source) in &mapping.fields {
                    if let Some(value) = source.resolve(item, delivery) {
                        insert_path(&mut data, field, value);
                    }
                }
                let name = format!("{namespace}/{}/{provider_id}#{at}", mapping.event_type);
                let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes());
                out.push(json!({
                    "specversion": "1.0",
                    "id": id.to_string(),
                    "source": source,
                    "type": mapping.event_type,
                    "data": Value::Object(data),
                }));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_walk_arrays_and_keep_positions() {
        let body = json!({"a": [{"b": [1, 2]}, {"b": [3]}, {"c": 4}]});
        let found: Vec<(String, Value)> = expand(&body, Some("/a/*/b/*"))
            .into_iter()
            .map(|(at, v)| (at, v.clone()))
            .collect();
        assert_eq!(
            found,
            [
                ("/0/0".into(), json!(1)),
                ("/0/1".into(), json!(2)),
                ("/1/0".into(), json!(3))
            ]
        );
        assert_eq!(expand(&body, None).len(), 1);
        assert!(expand(&body, Some("/nope/*")).is_empty());
    }

    #[test]
    fn formats_convert_and_absent_sources_are_none() {
        let query = HashMap::from([("user_id".to_owned(), "u-1".to_owned())]);
        let body = json!({"t": "1733220000", "n": 42});
        let delivery = Delivery {
            body: &body,
            query: &query,
        };
        let spec = |pointer: &str, format| {
            Source::Spec(SourceSpec {
                pointer: Some(pointer.into()),
                root: None,
                query: None,
                value: None,
                format,
            })
        };
        assert_eq!(
            spec("/t", Some(Format::UnixSeconds)).resolve(&body, &delivery),
            Some(json!("2024-12-03T10:00:00Z"))
        );
        assert_eq!(
            spec("/n", Some(Format::Text)).resolve(&body, &delivery),
            Some(json!("42"))
        );
        assert_eq!(spec("/missing", None).resolve(&body, &delivery), None);
        let query_source = Source::Spec(SourceSpec {
            pointer: None,
            root: None,
            query: Some("user_id".into()),
            value: None,
            format: None,
        });
        assert_eq!(query_source.resolve(&body, &delivery), Some(json!("u-1")));
    }
}
