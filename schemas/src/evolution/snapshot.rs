//! [`SchemaSnapshot`]: the readable normal form of the schemas that
//! `schema.lock.json` stores.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind};
use serde::{Deserialize, Serialize};

use crate::registry::Registry;

/// The snapshot format written by this version of the crate.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Every message, enum and event of the `backbone.*` packages, in a stable,
/// diff-friendly form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSnapshot {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// Event types by type name.
    pub events: BTreeMap<String, EventShape>,
    /// Messages by protobuf full name (map entries are folded into fields).
    pub messages: BTreeMap<String, MessageShape>,
    /// Enums by protobuf full name.
    #[serde(default)]
    pub enums: BTreeMap<String, EnumShape>,
}

/// An event type as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventShape {
    /// The protobuf full name of its message.
    pub full_name: String,
    /// The proto name of its key field.
    pub key_field: String,
}

/// A message as locked: its fields sorted by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageShape {
    /// The fields, sorted by number.
    pub fields: Vec<FieldShape>,
}

/// One field as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldShape {
    /// The field number (the wire tag).
    pub number: u32,
    /// The proto field name (its JSON name derives from it).
    pub name: String,
    /// A scalar name (`string`, `int64`, ...), the full name of a message or
    /// enum, or `map<K, V>`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `singular`, `optional` (proto3 explicit presence), `repeated`, `map`
    /// or `oneof <name>`.
    pub label: String,
}

/// An enum as locked: value names to numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumShape {
    /// Value name to number.
    pub values: BTreeMap<String, i32>,
}

impl SchemaSnapshot {
    /// The snapshot of every `backbone.*` package in `registry`'s pool.
    pub fn of(registry: &Registry) -> SchemaSnapshot {
        let ours = |package: &str| package.starts_with("backbone.");
        let pool = registry.pool();
        let events = registry
            .event_types()
            .iter()
            .map(|t| {
                let shape = EventShape {
                    full_name: t.full_name.clone(),
                    key_field: t.key_field.clone(),
                };
                (t.type_name.clone(), shape)
            })
            .collect();
        let messages = pool
            .all_messages()
            .filter(|m| ours(m.package_name()) && !m.is_map_entry())
            .map(|m| {
                let mut fields: Vec<FieldShape> = m.fields().map(|f| field_shape(&f)).collect();
                fields.sort_by_key(|f| f.number);
                (m.full_name().to_owned(), MessageShape { fields })
            })
            .collect();
        let enums = pool
            .all_enums()
            .filter(|e| ours(e.package_name()))
            .map(|e| {
                let values = e
                    .values()
                    .map(|v| (v.name().to_owned(), v.number()))
                    .collect();
                (e.full_name().to_owned(), EnumShape { values })
            })
            .collect();
        SchemaSnapshot {
            format: SNAPSHOT_FORMAT,
            events,
            messages,
            enums,
        }
    }

    /// The snapshot of this crate's schemas (the global registry).
    pub fn current() -> SchemaSnapshot {
        Self::of(Registry::global())
    }

    /// The lock file's content: JSON with one line per event, field and enum
    /// value, in name (fields: number) order, and a trailing newline.
    pub fn to_json(&self) -> String {
        fn compact(value: &impl Serialize) -> String {
            serde_json::to_string(value).unwrap_or_default()
        }
        fn object<'a>(entries: impl Iterator<Item = (&'a String, String)>, indent: &str) -> String {
            let lines: Vec<String> = entries
                .map(|(name, value)| format!("{indent}  {}: {value}", compact(name)))
                .collect();
            if lines.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{\n{}\n{indent}}}", lines.join(",\n"))
            }
        }
        let events = object(self.events.iter().map(|(k, v)| (k, compact(v))), "  ");
        let messages = object(
            self.messages.iter().map(|(name, message)| {
                let fields: Vec<String> = message
                    .fields
                    .iter()
                    .map(|f| format!("        {}", compact(f)))
                    .collect();
                let list = if fields.is_empty() {
                    "[]".to_owned()
                } else {
                    format!("[\n{}\n      ]", fields.join(",\n"))
                };
                (name, format!("{{\n      \"fields\": {list}\n    }}"))
            }),
            "  ",
        );
        let enums = object(self.enums.iter().map(|(k, v)| (k, compact(v))), "  ");
        format!(
            "{{\n  \"format\": {},\n  \"events\": {events},\n  \"messages\": {messages},\n  \"enums\": {enums}\n}}\n",
            self.format
        )
    }

    /// Parses a lock file's content.
    pub fn from_json(json: &str) -> Result<SchemaSnapshot, serde_json::Error> {
        serde_json::from_str(json)
    }
}

fn field_shape(field: &FieldDescriptor) -> FieldShape {
    let label = if field.is_map() {
        "map".to_owned()
    } else if field.is_list() {
        "repeated".to_owned()
    } else {
        match field.containing_oneof() {
            Some(oneof) if oneof.is_synthetic() => "optional".to_owned(),
            Some(oneof) => format!("oneof {}", oneof.name()),
            None => "singular".to_owned(),
        }
    };
    let type_name = match field.kind() {
        Kind::Message(m) if field.is_map() => {
            let (key, value) = (m.map_entry_key_field(), m.map_entry_value_field());
            format!(
                "map<{}, {}>",
                kind_name(&key.kind()),
                kind_name(&value.kind())
            )
        }
        kind => kind_name(&kind),
    };
    FieldShape {
        number: field.number(),
        name: field.name().to_owned(),
        type_name,
        label,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(m) => return m.full_name().to_owned(),
        Kind::Enum(e) => return e.full_name().to_owned(),
    }
    .to_owned()
}
