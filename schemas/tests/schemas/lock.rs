//! The committed `schema.lock.json` matches the current schemas.

use backbone_schemas::evolution::{
    SchemaSnapshot,
    lock::{self, LockErrorKind, LockStatus, UPDATE_ENV},
};

#[test]
fn schema_lock_is_current() {
    let path = lock::default_path();
    let current = SchemaSnapshot::current();
    let how = format!(
        "If the change is deliberate, update the lock and commit it:\n    \
         {UPDATE_ENV}=1 cargo test -p backbone-schemas schema_lock\n\
         (use {UPDATE_ENV}=breaking to accept breaking changes; read docs/schema-evolution.md first)"
    );
    match std::env::var(UPDATE_ENV).as_deref() {
        Ok(mode @ ("1" | "breaking")) => match lock::update(&path, &current, mode == "breaking") {
            Ok(accepted) => {
                for change in accepted {
                    eprintln!("accepted breaking change: {change}");
                }
                return;
            }
            Err(e) => panic!("{e}\nNot updating {}.\n{how}", path.display()),
        },
        Ok(other) => panic!("{UPDATE_ENV}={other:?}: expected 1 or breaking"),
        Err(_) => {}
    }
    match lock::verify(&path, &current) {
        Ok(LockStatus::UpToDate) => {}
        Ok(LockStatus::Compatible) => panic!(
            "{} is out of date: the schemas gained fields, messages or events \
             (compatible changes).\n{how}",
            path.display()
        ),
        Ok(LockStatus::Breaking(changes)) => {
            let list: Vec<String> = changes.iter().map(|c| format!("  - {c}")).collect();
            panic!(
                "BREAKING schema changes against {}:\n{}\n\
                 Consumers and stored events depend on the locked shape. Prefer adding a \
                 field or a new `v2` event type (docs/schema-evolution.md).\n{how}",
                path.display(),
                list.join("\n")
            )
        }
        Err(e) if e.kind() == &LockErrorKind::Missing => {
            panic!("{} does not exist.\n{how}", path.display())
        }
        Err(e) => panic!("{e}"),
    }
}
