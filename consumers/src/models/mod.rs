//! The seed services' read models and the registry of them by name.

pub mod audit;
pub mod billing;
pub mod gallery;
pub mod inbox;
pub mod notifications;
#[cfg(test)]
pub(crate) mod testing;

use std::{fmt, sync::Arc};

pub use audit::{Audit, AuditEntry, AuditQuery};
pub use billing::Billing;
pub use gallery::Gallery;
pub use inbox::Inbox;
pub use notifications::Notifications;

use crate::model::ReadModel;

/// The names of every read model, in registry order.
pub const READ_MODEL_NAMES: [&str; 5] = ["notifications", "billing", "gallery", "inbox", "audit"];

/// The read model called `name`.
pub fn read_model(name: &str) -> Option<Arc<dyn ReadModel>> {
    Some(match name {
        "notifications" => Arc::new(Notifications),
        "billing" => Arc::new(Billing),
        "gallery" => Arc::new(Gallery),
        "inbox" => Arc::new(Inbox),
        "audit" => Arc::new(Audit),
        _ => return None,
    })
}

/// A read model name that is not in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownReadModel(pub String);

impl fmt::Display for UnknownReadModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown read model {:?}; known: {}, or all",
            self.0,
            READ_MODEL_NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownReadModel {}

/// The read models named in `names`; `all` stands for every one.
pub fn resolve(names: &[String]) -> Result<Vec<Arc<dyn ReadModel>>, UnknownReadModel> {
    let mut out: Vec<Arc<dyn ReadModel>> = Vec::new();
    for name in names {
        let wanted: Vec<&str> = if name == "all" {
            READ_MODEL_NAMES.to_vec()
        } else {
            vec![name.as_str()]
        };
        for n in wanted {
            let model = read_model(n).ok_or_else(|| UnknownReadModel(n.to_owned()))?;
            if !out.iter().any(|m| m.name() == model.name()) {
                out.push(model);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_resolves_names_and_all() {
        for name in READ_MODEL_NAMES {
            assert_eq!(read_model(name).unwrap().name(), name);
        }
        assert_eq!(resolve(&["all".into(), "billing".into()]).unwrap().len(), 5);
        assert_eq!(
            resolve(&["nope".into()]).unwrap_err(),
            UnknownReadModel("nope".into())
        );
    }
}
