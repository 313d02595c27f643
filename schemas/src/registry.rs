//! The runtime registry of event types, built from the embedded descriptor set.
//!
//! The registry knows every event type without depending on the generated
//! Rust types, so tools (`tail`, `audit`, `publish`) can decode, print and
//! build any event from its type name alone:
//!
//! ```
//! use backbone_schemas::Registry;
//! use serde_json::json;
//!
//! let registry = Registry::global();
//! let followed = registry.by_type_name("user.followed").unwrap();
//! assert_eq!(followed.full_name, "backbone.user.v1.UserFollowed");
//! assert_eq!(followed.key_field, "follower_id");
//!
//! let payload = followed
//!     .json_to_payload(&json!({"followerId": "u-42", "followeeId": "u-7"}))
//!     .unwrap();
//! let message = followed.decode(&payload).unwrap();
//! assert_eq!(followed.key_of(&message), "u-42");
//! assert_eq!(
//!     followed.payload_to_json(&payload).unwrap(),
//!     json!({"followerId": "u-42", "followeeId": "u-7"}),
//! );
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::error::Error;
use crate::options;

/// The compiled descriptor set of every `.proto` file in `schemas/proto`
/// (with imports, custom options and source comments), as produced by
/// `build.rs`: an encoded `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/backbone.fds.bin"));

/// An error building the registry or transcoding a payload.
pub type RegistryError = Error<RegistryErrorKind>;

/// What went wrong in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The bytes are not a valid, self-contained `FileDescriptorSet`.
    InvalidDescriptorSet,
    /// The `(backbone.event)` / `(backbone.key)` options are inconsistent.
    InvalidEventOptions,
    /// No event has this type name.
    UnknownType(String),
    /// The payload is not a protobuf encoding of the event message.
    PayloadNotDecodable,
    /// The JSON is not a proto3 JSON encoding of the event message.
    InvalidJson,
}

impl fmt::Display for RegistryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDescriptorSet => f.write_str("invalid file descriptor set"),
            Self::InvalidEventOptions => f.write_str("invalid event options"),
            Self::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            Self::PayloadNotDecodable => {
                f.write_str("payload does not decode as the event message")
            }
            Self::InvalidJson => f.write_str("JSON does not match the event message"),
        }
    }
}

/// One event type: its names, key field and message descriptor.
#[derive(Debug, Clone)]
pub struct EventType {
    /// `<domain>.<name>`, e.g. `"payment.received"`.
    pub type_name: String,
    /// The protobuf full name, e.g. `"backbone.payment.v1.PaymentReceived"`.
    pub full_name: String,
    /// The proto name of the key field, e.g. `"user_id"`.
    pub key_field: String,
    /// The message descriptor, for dynamic decoding.
    pub descriptor: MessageDescriptor,
}

impl EventType {
    /// Decodes a protobuf payload of this event type.
    pub fn decode(&self, payload: &[u8]) -> Result<DynamicMessage, RegistryError> {
        DynamicMessage::decode(self.descriptor.clone(), payload)
            .map_err(|e| RegistryError::with_source(RegistryErrorKind::PayloadNotDecodable, e))
    }

    /// The key field's value in a decoded message.
    pub fn key_of(&self, message: &DynamicMessage) -> String {
        message
            .get_field_by_name(&self.key_field)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The canonical proto3 JSON form of a message: lowerCamelCase field
    /// names, 64-bit integers as strings, default values omitted, timestamps
    /// as RFC 3339 strings.
    pub fn to_json(&self, message: &DynamicMessage) -> serde_json::Value {
        serde_json::to_value(message).unwrap_or(serde_json::Value::Null)
    }

    /// Decodes a protobuf payload and renders it as proto3 JSON.
    pub fn payload_to_json(&self, payload: &[u8]) -> Result<serde_json::Value, RegistryError> {
        Ok(self.to_json(&self.decode(payload)?))
    }

    /// Parses proto3 JSON (lowerCamelCase or proto field names; unknown
    /// fields are errors) into a message of this type.
    pub fn from_json(&self, json: &serde_json::Value) -> Result<DynamicMessage, RegistryError> {
        DynamicMessage::deserialize(self.descriptor.clone(), json)
            .map_err(|e| RegistryError::with_source(RegistryErrorKind::InvalidJson, e))
    }

    /// Parses proto3 JSON and encodes it as the protobuf payload.
    pub fn json_to_payload(&self, json: &serde_json::Value) -> Result<Vec<u8>, RegistryError> {
        Ok(self.from_json(json)?.encode_to_vec())
    }
}

/// Every event type of a descriptor set.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: DescriptorPool,
    types: Vec<EventType>,
    by_type_name: HashMap<String, usize>,
    by_full_name: HashMap<String, usize>,
}

impl Registry {
    /// The registry of this crate's schemas, built once from
    /// [`FILE_DESCRIPTOR_SET`].
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Registry::from_descriptor_set(FILE_DESCRIPTOR_SET)
                .expect("the embedded descriptor set was validated by build.rs")
        })
    }

    /// Builds a registry from an encoded `FileDescriptorSet` that contains
    /// `backbone/options.proto` and every file it needs.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Registry, RegistryError> {
        let pool = DescriptorPool::decode(bytes)
            .map_err(|e| RegistryError::with_source(RegistryErrorKind::InvalidDescriptorSet, e))?;
        Self::from_pool(pool)
    }

    /// Builds a registry from a descriptor pool.
    pub fn from_pool(pool: DescriptorPool) -> Result<Registry, RegistryError> {
        let specs = options::event_specs(&pool)
            .map_err(|e| RegistryError::with_detail(RegistryErrorKind::InvalidEventOptions, e))?;
        let types: Vec<EventType> = specs
            .into_iter()
            .map(|s| EventType {
                type_name: s.type_name,
                full_name: s.full_name,
                key_field: s.key_field,
                descriptor: s.descriptor,
            })
            .collect();
        let by_type_name = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.type_name.clone(), i))
            .collect();
        let by_full_name = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.full_name.clone(), i))
            .collect();
        Ok(Registry {
            pool,
            types,
            by_type_name,
            by_full_name,
        })
    }

    /// The descriptor pool, for messages that are not events.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Every event type, sorted by type name.
    pub fn event_types(&self) -> &[EventType] {
        &self.types
    }

    /// The event type named `type_name`, e.g. `"user.followed"`.
    pub fn by_type_name(&self, type_name: &str) -> Option<&EventType> {
        self.by_type_name.get(type_name).map(|&i| &self.types[i])
    }

    /// The event type whose message is `full_name`, e.g.
    /// `"backbone.user.v1.UserFollowed"`.
    pub fn by_full_name(&self, full_name: &str) -> Option<&EventType> {
        self.by_full_name.get(full_name).map(|&i| &self.types[i])
    }

    /// The event type named `type_name`, or an `UnknownType` error.
    pub fn require(&self, type_name: &str) -> Result<&EventType, RegistryError> {
        self.by_type_name(type_name)
            .ok_or_else(|| RegistryError::new(RegistryErrorKind::UnknownType(type_name.to_owned())))
    }

    /// Decodes a protobuf payload of event type `type_name`.
    pub fn decode(&self, type_name: &str, payload: &[u8]) -> Result<DynamicMessage, RegistryError> {
        self.require(type_name)?.decode(payload)
    }

    /// Renders a protobuf payload of event type `type_name` as proto3 JSON.
    pub fn payload_to_json(
        &self,
        type_name: &str,
        payload: &[u8],
    ) -> Result<serde_json::Value, RegistryError> {
        self.require(type_name)?.payload_to_json(payload)
    }

    /// Encodes proto3 JSON of event type `type_name` as a protobuf payload.
    pub fn json_to_payload(
        &self,
        type_name: &str,
        json: &serde_json::Value,
    ) -> Result<Vec<u8>, RegistryError> {
        self.require(type_name)?.json_to_payload(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::GENERATED_EVENTS;

    #[test]
    fn registry_matches_the_generated_event_impls() {
        let registry = Registry::global();
        let listed: Vec<_> = registry
            .event_types()
            .iter()
            .map(|t| {
                (
                    t.type_name.as_str(),
                    t.full_name.as_str(),
                    t.key_field.as_str(),
                )
            })
            .collect();
        assert_eq!(listed, GENERATED_EVENTS);
        for t in registry.event_types() {
            assert_eq!(
                registry.by_full_name(&t.full_name).unwrap().type_name,
                t.type_name
            );
        }
    }

    #[test]
    fn unknown_types_and_bad_sets_are_typed_errors() {
        let registry = Registry::global();
        let err = registry.decode("user.exploded", b"").unwrap_err();
        assert_eq!(
            err.kind(),
            &RegistryErrorKind::UnknownType("user.exploded".into())
        );
        let err = Registry::from_descriptor_set(b"\xff\xff").unwrap_err();
        assert_eq!(err.kind(), &RegistryErrorKind::InvalidDescriptorSet);
        let err = registry
            .payload_to_json("user.followed", b"\x0a\x05")
            .unwrap_err();
        assert_eq!(err.kind(), &RegistryErrorKind::PayloadNotDecodable);
        let err = registry
            .json_to_payload("user.followed", &serde_json::json!({"nope": 1}))
            .unwrap_err();
        assert_eq!(err.kind(), &RegistryErrorKind::InvalidJson);
    }
}
