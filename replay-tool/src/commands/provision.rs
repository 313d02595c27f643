//! `provision`: apply a declarative TOML description of streams and
//! consumers, idempotently, showing what changes.
//!
//! ```toml
//! [[streams]]
//! name = "EVENTS"
//! subjects = ["events.>"]
//! deny_delete = true
//! deny_purge = true
//! duplicate_window = "2m"   # humantime: "90s", "2m", "1h"
//!
//! [[consumers]]
//! stream = "EVENTS"
//! durable_name = "billing"
//! filter_subjects = ["events.payment.*.*"]
//! ack_wait = "30s"
//! max_deliver = 5
//! max_ack_pending = 256
//! ```
//!
//! Stream keys are those of `StreamConfig` (unset keys take its defaults).
//! A consumer that exists is bound, which updates the settings a live
//! consumer may change; its start position is never changed.

use std::path::PathBuf;
use std::time::Duration;

use backbone_broker::{
    Broker, ConsumerConfig, ConsumerErrorKind, ProvisionOutcome, StreamConfig, StreamErrorKind,
};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

use crate::backend;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::output::{Records, reject_csv};

/// Arguments of `provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// The TOML description (see replay-tool/examples/provision.toml).
    pub(crate) file: PathBuf,
    /// Show the changes without applying them.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// The provisioning file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Plan {
    #[serde(default)]
    streams: Vec<StreamConfig>,
    #[serde(default)]
    consumers: Vec<ConsumerSpec>,
}

/// One durable consumer in the provisioning file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerSpec {
    stream: String,
    durable_name: String,
    description: Option<String>,
    #[serde(default)]
    filter_subjects: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    ack_wait: Option<Duration>,
    max_deliver: Option<u32>,
    max_ack_pending: Option<usize>,
}

impl ConsumerSpec {
    fn config(&self) -> ConsumerConfig {
        let defaults = ConsumerConfig::default();
        ConsumerConfig {
            durable_name: self.durable_name.clone(),
            description: self.description.clone(),
            filter_subjects: self.filter_subjects.clone(),
            ack_wait: self.ack_wait.unwrap_or(defaults.ack_wait),
            max_deliver: self.max_deliver,
            max_ack_pending: self.max_ack_pending.unwrap_or(defaults.max_ack_pending),
            ..defaults
        }
    }
}

/// Reads and checks a provisioning file.
pub(crate) fn read_plan(path: &PathBuf) -> CliResult<Plan> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", path.display())))?;
    let plan: Plan = toml::from_str(&text)
        .map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    for stream in &plan.streams {
        if stream.name.is_empty() || stream.subjects.is_empty() {
            return Err(CliError::bad_input(format!(
                "{}: every stream needs a name and at least one subject",
                path.display()
            )));
        }
    }
    Ok(plan)
}

/// A setting's value as people read it: strings (names, durations such as
/// `2m`) without JSON quotes, absent values as `none`.
fn readable(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

/// The settings of `wanted` that differ from `current`, as `name: old -> new`
/// (durations in humantime form: `duplicate_window: 2m -> 1m`).
fn stream_diff(current: &StreamConfig, wanted: &StreamConfig) -> Vec<String> {
    let as_json = |c: &StreamConfig| serde_json::to_value(c).unwrap_or_default();
    let (old, new) = (as_json(current), as_json(wanted));
    let mut changes = Vec::new();
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        for (key, value) in new {
            let before = old.get(key).cloned().unwrap_or_default();
            if before != *value {
                changes.push(format!(
                    "{key}: {} -> {}",
                    readable(&before),
                    readable(value)
                ));
            }
        }
    }
    changes
}

/// Runs `provision`.
pub(crate) async fn run(settings: &Settings, args: ProvisionArgs) -> CliResult {
    reject_csv(settings.output, "provision")?;
    let plan = read_plan(&args.file)?;
    let broker = backend::connect(settings).await?;
    let result = apply(broker.as_ref(), &plan, args.dry_run).await;
    broker.close().await?;
    let records = result?;
    records.print(settings.output)?;
    if args.dry_run {
        eprintln!("dry run: nothing was changed");
    }
    Ok(())
}

async fn apply(broker: &dyn Broker, plan: &Plan, dry_run: bool) -> CliResult<Records> {
    let mut records = Records::new(&["kind", "name", "action", "changes"]);
    for wanted in &plan.streams {
        let (action, changes) = match broker.stream_info(&wanted.name).await {
            Ok(info) => {
                let changes = stream_diff(&info.config, wanted);
                let action = if changes.is_empty() {
                    "unchanged"
                } else {
                    "update"
                };
                (action, changes)
            }
            Err(e) if e.kind() == &StreamErrorKind::StreamNotFound => ("create", Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let action = if dry_run || action == "unchanged" {
            action.to_owned()
        } else {
            match broker.ensure_stream(wanted).await? {
                ProvisionOutcome::Created => "created".to_owned(),
                ProvisionOutcome::Updated(_) => "updated".to_owned(),
                ProvisionOutcome::Unchanged => "unchanged".to_owned(),
            }
        };
        records.push(vec![
            json!("stream"),
            json!(wanted.name),
            json!(action),
            json!(changes.join("; ")),
        ]);
    }
    for spec in &plan.consumers {
        let exists = match broker.consumer_info(&spec.stream, &spec.durable_name).await {
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    ConsumerErrorKind::ConsumerNotFound | ConsumerErrorKind::StreamNotFound
                ) =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        let action = match (exists, dry_run) {
            (true, true) => "exists",
            (false, true) => "create",
            (true, false) => {
                broker.consumer(&spec.stream, spec.config()).await?;
                "bound"
            }
            (false, false) => {
                broker.consumer(&spec.stream, spec.config()).await?;
                "created"
            }
        };
        records.push(vec![
            json!("consumer"),
            json!(format!("{}/{}", spec.stream, spec.durable_name)),
            json!(action),
            json!(spec.filter_subjects.join(",")),
        ]);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/provision.toml"
        ));
        let plan = read_plan(&path).unwrap();
        assert_eq!(plan.streams[0], {
            let mut events = StreamConfig::event_log();
            events.duplicate_window = Duration::from_secs(120);
            events
        });
        assert!(plan.streams.iter().any(|s| s.name == "DEADLETTER"));
    }

    #[test]
    fn diff_names_changed_settings() {
        let mut wanted = StreamConfig::event_log();
        wanted.duplicate_window = Duration::from_secs(60);
        let changes = stream_diff(&StreamConfig::event_log(), &wanted);
        assert_eq!(changes, vec!["duplicate_window: 2m -> 1m".to_owned()]);
        wanted.description = Some("log".into());
        wanted.duplicate_window = Duration::from_secs(90);
        let changes = stream_diff(&StreamConfig::event_log(), &wanted);
        assert!(
            changes.contains(&"duplicate_window: 2m -> 1m 30s".to_owned()),
            "{changes:?}"
        );
    }

    fn plan_error(text: &str) -> CliError {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, text).unwrap();
        read_plan(&path).unwrap_err()
    }

    #[test]
    fn durations_must_be_humantime_strings() {
        let integer = "[[streams]]\nname = \"S\"\nsubjects = [\"s.>\"]\nduplicate_window = 120\n";
        assert_eq!(plan_error(integer).exit_code(), 3);
        let old_key = "[[consumers]]\nstream = \"S\"\ndurable_name = \"d\"\nack_wait_secs = 30\n";
        assert_eq!(plan_error(old_key).exit_code(), 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(
            &path,
            "[[consumers]]\nstream = \"S\"\ndurable_name = \"d\"\nack_wait = \"45s\"\n",
        )
        .unwrap();
        let plan = read_plan(&path).unwrap();
        assert_eq!(plan.consumers[0].config().ack_wait, Duration::from_secs(45));
    }
}
