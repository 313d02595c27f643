//! `schemas list|check`: the registered event types, and the breaking-change
//! check of the current schemas against the committed lock file.

use std::path::PathBuf;

use backbone_schemas::Registry;
use backbone_schemas::evolution::{
    SchemaSnapshot,
    lock::{self, LockStatus},
};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::OutputFormat;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::output::{Records, reject_csv};

/// Arguments of `schemas`.
#[derive(Debug, Args)]
pub(crate) struct SchemasArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: SchemasAction,
}

/// The `schemas` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SchemasAction {
    /// Every event type: type name, protobuf message, key field.
    List,
    /// Print the current schemas as a lock-file snapshot (JSON).
    Snapshot,
    /// Compare the schemas built into this tool with the lock file; exit 1
    /// on a breaking change.
    Check {
        /// The lock file [default: schemas/schema.lock.json of the source tree].
        #[arg(long)]
        lock: Option<PathBuf>,
    },
}

/// Runs `schemas`.
pub(crate) async fn run(settings: &Settings, args: SchemasArgs) -> CliResult {
    reject_csv(settings.output, "schemas")?;
    match args.action {
        SchemasAction::List => list(settings.output),
        SchemasAction::Snapshot => {
            println!("{}", SchemaSnapshot::current().to_json());
            Ok(())
        }
        SchemasAction::Check { lock } => check(settings.output, lock),
    }
}

fn list(format: OutputFormat) -> CliResult {
    let mut records = Records::new(&["type", "message", "key_field", "subject"]);
    for t in Registry::global().event_types() {
        records.push(vec![
            json!(t.type_name),
            json!(t.full_name),
            json!(t.key_field),
            json!(format!("events.{}.<{}>", t.type_name, t.key_field)),
        ]);
    }
    records.print(format)
}

fn check(format: OutputFormat, lock_path: Option<PathBuf>) -> CliResult {
    let path = lock_path.unwrap_or_else(lock::default_path);
    let status = lock::verify(&path, &SchemaSnapshot::current())?;
    let (verdict, changes) = match &status {
        LockStatus::UpToDate => ("up-to-date", Vec::new()),
        LockStatus::Compatible => ("compatible", Vec::new()),
        LockStatus::Breaking(changes) => ("breaking", changes.clone()),
    };
    match format {
        OutputFormat::Table => {
            println!("lock: {}", path.display());
            match &status {
                LockStatus::UpToDate => println!("schemas match the lock"),
                LockStatus::Compatible => println!(
                    "schemas only add to the lock (compatible); update the lock with \
                     {}=1 cargo test -p backbone-schemas",
                    lock::UPDATE_ENV
                ),
                LockStatus::Breaking(changes) => {
                    println!("{} breaking change(s):", changes.len());
                    for change in changes {
                        println!("  - {change}");
                    }
                }
            }
        }
        _ => println!(
            "{}",
            json!({"lock": path.display().to_string(), "status": verdict, "breaking": changes})
        ),
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(CliError::Verification(format!(
            "{} breaking schema change(s) against {}",
            changes.len(),
            path.display()
        )))
    }
}
