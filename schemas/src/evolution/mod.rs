//! The schema evolution guard.
//!
//! `schemas/schema.lock.json` is a [`SchemaSnapshot`] of the schemas as last
//! deliberately accepted. [`check`] compares it with the current schemas and
//! lists every [`BreakingChange`]; adding fields (with new numbers), messages,
//! enum values and event types is compatible. The crate's test suite runs the
//! check ([`lock::verify`]) and fails on breaking changes, and on a lock that
//! is merely out of date. See `docs/schema-evolution.md` for how to evolve an
//! event and update the lock.
//!
//! ```
//! use backbone_schemas::evolution::{self, SchemaSnapshot};
//!
//! let current = SchemaSnapshot::current();
//! let mut locked = current.clone();
//! locked.events.get_mut("user.followed").unwrap().key_field = "followee_id".into();
//! let changes = evolution::check(&locked, &current);
//! assert_eq!(changes.len(), 1);
//! assert_eq!(
//!     changes[0].to_string(),
//!     "event user.followed: key field changed from followee_id to follower_id",
//! );
//! ```

pub mod lock;
mod snapshot;

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

pub use snapshot::{
    EnumShape, EventShape, FieldShape, MessageShape, SNAPSHOT_FORMAT, SchemaSnapshot,
};

/// A change that breaks publishers or consumers built against the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum BreakingChange {
    /// An event type no longer exists.
    EventTypeRemoved {
        /// The removed type name.
        type_name: String,
    },
    /// An event message now declares another type name.
    EventTypeRenamed {
        /// The message's full name.
        full_name: String,
        /// The locked type name.
        old: String,
        /// The current type name.
        new: String,
    },
    /// An event type is now carried by another message.
    EventMessageChanged {
        /// The type name.
        type_name: String,
        /// The locked message full name.
        old: String,
        /// The current message full name.
        new: String,
    },
    /// An event type's key field changed.
    KeyFieldChanged {
        /// The type name.
        type_name: String,
        /// The locked key field.
        old: String,
        /// The current key field.
        new: String,
    },
    /// A (non-event) message no longer exists.
    MessageRemoved {
        /// The message full name.
        message: String,
    },
    /// A field no longer exists (neither its number nor its name).
    FieldRemoved {
        /// The message full name.
        message: String,
        /// The field name.
        name: String,
        /// The field number.
        number: u32,
    },
    /// A field name now has another number.
    FieldRenumbered {
        /// The message full name.
        message: String,
        /// The field name.
        name: String,
        /// The locked number.
        old: u32,
        /// The current number.
        new: u32,
    },
    /// A field number now has another name (breaks the JSON form).
    FieldRenamed {
        /// The message full name.
        message: String,
        /// The field number.
        number: u32,
        /// The locked name.
        old: String,
        /// The current name.
        new: String,
    },
    /// A field's type changed.
    FieldTypeChanged {
        /// The message full name.
        message: String,
        /// The field name.
        name: String,
        /// The locked type.
        old: String,
        /// The current type.
        new: String,
    },
    /// A field's label changed (singular, optional, repeated, map, oneof).
    FieldCardinalityChanged {
        /// The message full name.
        message: String,
        /// The field name.
        name: String,
        /// The locked label.
        old: String,
        /// The current label.
        new: String,
    },
    /// An enum no longer exists.
    EnumRemoved {
        /// The enum full name.
        name: String,
    },
    /// An enum value name no longer exists.
    EnumValueRemoved {
        /// The enum full name.
        enum_name: String,
        /// The value name.
        value: String,
    },
    /// An enum value name now has another number.
    EnumValueRenumbered {
        /// The enum full name.
        enum_name: String,
        /// The value name.
        value: String,
        /// The locked number.
        old: i32,
        /// The current number.
        new: i32,
    },
}

impl fmt::Display for BreakingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventTypeRemoved { type_name } => write!(f, "event {type_name}: removed"),
            Self::EventTypeRenamed {
                full_name,
                old,
                new,
            } => {
                write!(
                    f,
                    "message {full_name}: event type renamed from {old} to {new}"
                )
            }
            Self::EventMessageChanged {
                type_name,
                old,
                new,
            } => {
                write!(f, "event {type_name}: message changed from {old} to {new}")
            }
            Self::KeyFieldChanged {
                type_name,
                old,
                new,
            } => {
                write!(
                    f,
                    "event {type_name}: key field changed from {old} to {new}"
                )
            }
            Self::MessageRemoved { message } => write!(f, "message {message}: removed"),
            Self::FieldRemoved {
                message,
                name,
                number,
            } => {
                write!(f, "{message}.{name} (#{number}): removed")
            }
            Self::FieldRenumbered {
                message,
                name,
                old,
                new,
            } => {
                write!(f, "{message}.{name}: renumbered from {old} to {new}")
            }
            Self::FieldRenamed {
                message,
                number,
                old,
                new,
            } => {
                write!(f, "{message} field #{number}: renamed from {old} to {new}")
            }
            Self::FieldTypeChanged {
                message,
                name,
                old,
                new,
            } => {
                write!(f, "{message}.{name}: type changed from {old} to {new}")
            }
            Self::FieldCardinalityChanged {
                message,
                name,
                old,
                new,
            } => {
                write!(f, "{message}.{name}: label changed from {old} to {new}")
            }
            Self::EnumRemoved { name } => write!(f, "enum {name}: removed"),
            Self::EnumValueRemoved { enum_name, value } => {
                write!(f, "enum {enum_name}: value {value} removed")
            }
            Self::EnumValueRenumbered {
                enum_name,
                value,
                old,
                new,
            } => {
                write!(
                    f,
                    "enum {enum_name}: value {value} renumbered from {old} to {new}"
                )
            }
        }
    }
}

/// Every breaking change from `locked` to `current`, events first, then
/// messages and enums in name order. Empty when `current` only adds.
pub fn check(locked: &SchemaSnapshot, current: &SchemaSnapshot) -> Vec<BreakingChange> {
    let mut changes = Vec::new();
    check_events(locked, current, &mut changes);
    let event_messages: BTreeSet<&str> = locked
        .events
        .values()
        .map(|e| e.full_name.as_str())
        .collect();
    for (name, old) in &locked.messages {
        match current.messages.get(name) {
            Some(new) => check_fields(name, old, new, &mut changes),
            // A removed event message is reported as an event change.
            None if event_messages.contains(name.as_str()) => {}
            None => changes.push(BreakingChange::MessageRemoved {
                message: name.clone(),
            }),
        }
    }
    for (name, old) in &locked.enums {
        let Some(new) = current.enums.get(name) else {
            changes.push(BreakingChange::EnumRemoved { name: name.clone() });
            continue;
        };
        for (value, &number) in &old.values {
            match new.values.get(value) {
                None => changes.push(BreakingChange::EnumValueRemoved {
                    enum_name: name.clone(),
                    value: value.clone(),
                }),
                Some(&n) if n != number => changes.push(BreakingChange::EnumValueRenumbered {
                    enum_name: name.clone(),
                    value: value.clone(),
                    old: number,
                    new: n,
                }),
                Some(_) => {}
            }
        }
    }
    changes
}

fn check_events(locked: &SchemaSnapshot, current: &SchemaSnapshot, out: &mut Vec<BreakingChange>) {
    for (type_name, old) in &locked.events {
        match current.events.get(type_name) {
            Some(new) if new.full_name != old.full_name => {
                out.push(BreakingChange::EventMessageChanged {
                    type_name: type_name.clone(),
                    old: old.full_name.clone(),
                    new: new.full_name.clone(),
                });
            }
            Some(new) if new.key_field != old.key_field => {
                out.push(BreakingChange::KeyFieldChanged {
                    type_name: type_name.clone(),
                    old: old.key_field.clone(),
                    new: new.key_field.clone(),
                });
            }
            Some(_) => {}
            None => match current
                .events
                .iter()
                .find(|(_, e)| e.full_name == old.full_name)
            {
                Some((new_type, _)) => out.push(BreakingChange::EventTypeRenamed {
                    full_name: old.full_name.clone(),
                    old: type_name.clone(),
                    new: new_type.clone(),
                }),
                None => out.push(BreakingChange::EventTypeRemoved {
                    type_name: type_name.clone(),
                }),
            },
        }
    }
}

fn check_fields(
    message: &str,
    old: &MessageShape,
    new: &MessageShape,
    out: &mut Vec<BreakingChange>,
) {
    for field in &old.fields {
        let by_number = new.fields.iter().find(|f| f.number == field.number);
        let by_name = new.fields.iter().find(|f| f.name == field.name);
        let now = match (by_number, by_name) {
            (Some(same), _) if same.name == field.name => same,
            (_, Some(moved)) => {
                out.push(BreakingChange::FieldRenumbered {
                    message: message.to_owned(),
                    name: field.name.clone(),
                    old: field.number,
                    new: moved.number,
                });
                continue;
            }
            (Some(renamed), None) => {
                out.push(BreakingChange::FieldRenamed {
                    message: message.to_owned(),
                    number: field.number,
                    old: field.name.clone(),
                    new: renamed.name.clone(),
                });
                renamed
            }
            (None, None) => {
                out.push(BreakingChange::FieldRemoved {
                    message: message.to_owned(),
                    name: field.name.clone(),
                    number: field.number,
                });
                continue;
            }
        };
        if now.type_name != field.type_name {
            out.push(BreakingChange::FieldTypeChanged {
                message: message.to_owned(),
                name: field.name.clone(),
                old: field.type_name.clone(),
                new: now.type_name.clone(),
            });
        }
        if now.label != field.label {
            out.push(BreakingChange::FieldCardinalityChanged {
                message: message.to_owned(),
                name: field.name.clone(),
                old: field.label.clone(),
                new: now.label.clone(),
            });
        }
    }
}
