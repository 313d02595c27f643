//! Reading Backbone's custom event options out of a descriptor pool.
//!
//! `proto/backbone/options.proto` defines a message option
//! `(backbone.event).type` and a field option `(backbone.key)`. This file is
//! compiled twice: by `build.rs` (through `#[path]`), which generates the
//! [`Event`](crate::Event) implementations, and by the library, whose
//! [`Registry`](crate::Registry) is built from the same function. Build-time
//! code and the runtime registry therefore cannot disagree.

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor, Value};

/// Full name of the message option that marks an event.
pub(crate) const EVENT_OPTION: &str = "backbone.event";
/// Full name of the field option that marks the key field.
pub(crate) const KEY_OPTION: &str = "backbone.key";

/// One event message as declared by its options.
#[derive(Debug, Clone)]
pub(crate) struct EventSpec {
    /// `<domain>.<name>`, e.g. `user.followed`.
    pub(crate) type_name: String,
    /// The protobuf full name, e.g. `backbone.user.v1.UserFollowed`.
    pub(crate) full_name: String,
    /// The proto name of the key field, e.g. `follower_id`.
    pub(crate) key_field: String,
    /// The message descriptor.
    pub(crate) descriptor: MessageDescriptor,
}

/// Checks an event type name: two non-empty dot-separated segments of
/// lowercase ASCII letters, digits and `_`.
pub(crate) fn check_type_name(name: &str) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    let segment_ok = |s: &&str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if segments.len() == 2 && segments.iter().all(segment_ok) {
        Ok(())
    } else {
        Err(format!(
            "event type {name:?} is not `<domain>.<name>` of lowercase [a-z0-9_]"
        ))
    }
}

/// Every event declared in `pool`, sorted by type name.
///
/// Fails when an event's options are inconsistent: a bad or duplicate type
/// name, no key field or more than one, a key field that is not a singular
/// `string`, a nested event message, or a key option outside an event.
pub(crate) fn event_specs(pool: &DescriptorPool) -> Result<Vec<EventSpec>, String> {
    let event_ext = pool
        .get_extension_by_name(EVENT_OPTION)
        .ok_or_else(|| format!("option ({EVENT_OPTION}) is not defined in the descriptor set"))?;
    let key_ext = pool
        .get_extension_by_name(KEY_OPTION)
        .ok_or_else(|| format!("option ({KEY_OPTION}) is not defined in the descriptor set"))?;

    let mut specs: Vec<EventSpec> = Vec::new();
    for message in pool.all_messages() {
        let full_name = message.full_name().to_owned();
        let key_fields: Vec<_> = message
            .fields()
            .filter(|f| {
                matches!(
                    f.options().get_extension(&key_ext).as_ref(),
                    Value::Bool(true)
                )
            })
            .collect();
        let options = message.options();
        if !options.has_extension(&event_ext) {
            if !key_fields.is_empty() {
                return Err(format!(
                    "{full_name} marks a key field but has no ({EVENT_OPTION}) option"
                ));
            }
            continue;
        }
        let type_name = match options.get_extension(&event_ext).as_ref() {
            Value::Message(m) => m
                .get_field_by_name("type")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            _ => String::new(),
        };
        check_type_name(&type_name).map_err(|e| format!("{full_name}: {e}"))?;
        if message.parent_message().is_some() {
            return Err(format!("{full_name}: an event message must be top-level"));
        }
        let key = match key_fields.as_slice() {
            [one] => one,
            [] => return Err(format!("{full_name}: no field has [({KEY_OPTION}) = true]")),
            _ => {
                return Err(format!(
                    "{full_name}: more than one field has ({KEY_OPTION})"
                ));
            }
        };
        if key.kind() != Kind::String || key.is_list() || key.supports_presence() {
            return Err(format!(
                "{full_name}: key field `{}` must be a singular `string` (not repeated, optional or in a oneof)",
                key.name()
            ));
        }
        if let Some(other) = specs.iter().find(|s| s.type_name == type_name) {
            return Err(format!(
                "event type {type_name:?} is declared by both {} and {full_name}",
                other.full_name
            ));
        }
        specs.push(EventSpec {
            type_name,
            full_name,
            key_field: key.name().to_owned(),
            descriptor: message.clone(),
        });
    }
    specs.sort_by(|a, b| a.type_name.cmp(&b.type_name));
    Ok(specs)
}
