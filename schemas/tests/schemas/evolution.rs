//! The evolution check on synthetic snapshots: every breaking kind is
//! detected, additions pass.

use backbone_schemas::evolution::{
    BreakingChange, EnumShape, EventShape, FieldShape, MessageShape, SNAPSHOT_FORMAT,
    SchemaSnapshot, check,
    lock::{self, LockErrorKind, LockStatus},
};

const MSG: &str = "backbone.demo.v1.ThingHappened";
const PART: &str = "backbone.demo.v1.Part";
const COLOR: &str = "backbone.demo.v1.Color";

fn field(number: u32, name: &str, type_name: &str, label: &str) -> FieldShape {
    FieldShape {
        number,
        name: name.into(),
        type_name: type_name.into(),
        label: label.into(),
    }
}

/// A small locked schema: one event, one helper message, one enum.
fn locked() -> SchemaSnapshot {
    let mut s = SchemaSnapshot {
        format: SNAPSHOT_FORMAT,
        ..Default::default()
    };
    s.events.insert(
        "demo.thing_happened".into(),
        EventShape {
            full_name: MSG.into(),
            key_field: "thing_id".into(),
        },
    );
    s.messages.insert(
        MSG.into(),
        MessageShape {
            fields: vec![
                field(1, "thing_id", "string", "singular"),
                field(2, "count", "int64", "singular"),
                field(3, "tags", "string", "repeated"),
                field(4, "part", PART, "singular"),
                field(5, "color", COLOR, "singular"),
            ],
        },
    );
    s.messages.insert(
        PART.into(),
        MessageShape {
            fields: vec![field(1, "name", "string", "singular")],
        },
    );
    s.enums.insert(
        COLOR.into(),
        EnumShape {
            values: [("COLOR_UNSPECIFIED".into(), 0), ("COLOR_RED".into(), 1)].into(),
        },
    );
    s
}

fn fields(s: &mut SchemaSnapshot) -> &mut Vec<FieldShape> {
    &mut s.messages.get_mut(MSG).unwrap().fields
}

fn changes(edit: impl FnOnce(&mut SchemaSnapshot)) -> Vec<BreakingChange> {
    let mut current = locked();
    edit(&mut current);
    check(&locked(), &current)
}

#[test]
fn field_removed() {
    assert_eq!(
        changes(|s| fields(s).retain(|f| f.name != "count")),
        [BreakingChange::FieldRemoved {
            message: MSG.into(),
            name: "count".into(),
            number: 2
        }]
    );
}

#[test]
fn field_renumbered() {
    assert_eq!(
        changes(|s| fields(s)[1].number = 9),
        [BreakingChange::FieldRenumbered {
            message: MSG.into(),
            name: "count".into(),
            old: 2,
            new: 9
        }]
    );
}

#[test]
fn field_renamed() {
    assert_eq!(
        changes(|s| fields(s)[1].name = "total".into()),
        [BreakingChange::FieldRenamed {
            message: MSG.into(),
            number: 2,
            old: "count".into(),
            new: "total".into(),
        }]
    );
}

#[test]
fn field_type_changed() {
    assert_eq!(
        changes(|s| fields(s)[1].type_name = "int32".into()),
        [BreakingChange::FieldTypeChanged {
            message: MSG.into(),
            name: "count".into(),
            old: "int64".into(),
            new: "int32".into(),
        }]
    );
}

#[test]
fn field_cardinality_changed() {
    assert_eq!(
        changes(|s| fields(s)[2].label = "singular".into()),
        [BreakingChange::FieldCardinalityChanged {
            message: MSG.into(),
            name: "tags".into(),
            old: "repeated".into(),
            new: "singular".into(),
        }]
    );
}

#[test]
fn event_type_removed() {
    assert_eq!(
        changes(|s| {
            s.events.clear();
            s.messages.remove(MSG);
        }),
        [BreakingChange::EventTypeRemoved {
            type_name: "demo.thing_happened".into()
        }]
    );
}

#[test]
fn event_type_renamed() {
    assert_eq!(
        changes(|s| {
            let shape = s.events.remove("demo.thing_happened").unwrap();
            s.events.insert("demo.thing_occurred".into(), shape);
        }),
        [BreakingChange::EventTypeRenamed {
            full_name: MSG.into(),
            old: "demo.thing_happened".into(),
            new: "demo.thing_occurred".into(),
        }]
    );
}

#[test]
fn event_message_changed() {
    assert_eq!(
        changes(|s| s.events.get_mut("demo.thing_happened").unwrap().full_name = PART.into()),
        [BreakingChange::EventMessageChanged {
            type_name: "demo.thing_happened".into(),
            old: MSG.into(),
            new: PART.into(),
        }]
    );
}

#[test]
fn key_field_changed() {
    assert_eq!(
        changes(|s| s.events.get_mut("demo.thing_happened").unwrap().key_field = "count".into()),
        [BreakingChange::KeyFieldChanged {
            type_name: "demo.thing_happened".into(),
            old: "thing_id".into(),
            new: "count".into(),
        }]
    );
}

#[test]
fn messages_and_enums_removed_or_changed() {
    assert_eq!(
        changes(|s| {
            s.messages.remove(PART);
        }),
        [BreakingChange::MessageRemoved {
            message: PART.into()
        }]
    );
    assert_eq!(
        changes(|s| {
            s.enums.remove(COLOR);
        }),
        [BreakingChange::EnumRemoved { name: COLOR.into() }]
    );
    assert_eq!(
        changes(|s| {
            let values = &mut s.enums.get_mut(COLOR).unwrap().values;
            values.remove("COLOR_RED");
        }),
        [BreakingChange::EnumValueRemoved {
            enum_name: COLOR.into(),
            value: "COLOR_RED".into()
        }]
    );
    assert_eq!(
        changes(|s| {
            s.enums
                .get_mut(COLOR)
                .unwrap()
                .values
                .insert("COLOR_RED".into(), 2);
        }),
        [BreakingChange::EnumValueRenumbered {
            enum_name: COLOR.into(),
            value: "COLOR_RED".into(),
            old: 1,
            new: 2,
        }]
    );
}

#[test]
fn additions_are_compatible() {
    let mut current = locked();
    fields(&mut current).push(field(6, "note", "string", "optional"));
    fields(&mut current).push(field(7, "labels", "map<string, string>", "map"));
    current.events.insert(
        "demo.thing_vanished".into(),
        EventShape {
            full_name: "backbone.demo.v1.ThingVanished".into(),
            key_field: "thing_id".into(),
        },
    );
    current.messages.insert(
        "backbone.demo.v1.ThingVanished".into(),
        MessageShape {
            fields: vec![field(1, "thing_id", "string", "singular")],
        },
    );
    current
        .enums
        .get_mut(COLOR)
        .unwrap()
        .values
        .insert("COLOR_BLUE".into(), 2);
    assert_eq!(check(&locked(), &current), []);
    assert_eq!(lock::status(&locked(), &current), LockStatus::Compatible);
    assert_eq!(lock::status(&locked(), &locked()), LockStatus::UpToDate);
}

#[test]
fn the_real_schemas_snapshot_is_stable_and_self_compatible() {
    let current = SchemaSnapshot::current();
    assert_eq!(current.events.len(), 12);
    assert_eq!(check(&current, &current), []);
    let reparsed = SchemaSnapshot::from_json(&current.to_json()).unwrap();
    assert_eq!(reparsed, current);
    let refund = &current.messages["backbone.payment.v1.PaymentRefunded"].fields;
    assert_eq!(refund[3], field(4, "amount_minor", "int64", "singular"));
    let media = &current.messages["backbone.common.v1.MediaRef"].fields;
    assert_eq!(media[0], field(1, "url", "string", "oneof location"));
}

#[test]
fn lock_update_refuses_breaking_changes_unless_allowed() {
    let dir = std::env::temp_dir().join(format!("backbone-lock-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(lock::LOCK_FILE);
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        lock::verify(&path, &locked()).unwrap_err().kind(),
        &LockErrorKind::Missing
    );
    assert_eq!(lock::update(&path, &locked(), false).unwrap(), []);
    let mut broken = locked();
    fields(&mut broken).pop();
    let err = lock::update(&path, &broken, false).unwrap_err();
    assert!(matches!(err.kind(), LockErrorKind::Breaking(c) if c.len() == 1));
    assert_eq!(
        lock::read(&path).unwrap(),
        locked(),
        "a refused update writes nothing"
    );
    assert_eq!(lock::update(&path, &broken, true).unwrap().len(), 1);
    assert_eq!(lock::verify(&path, &broken).unwrap(), LockStatus::UpToDate);
    std::fs::write(&path, "{").unwrap();
    assert_eq!(
        lock::read(&path).unwrap_err().kind(),
        &LockErrorKind::Malformed
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
