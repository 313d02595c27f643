//! `status`: streams, durable consumers and their lag, dead-letter depth,
//! and the checkpoint of every read model in the data directory.
//!
//! While a `backbone-server` holds the data directory (its discovery file
//! is there), or with `--server`, the same report comes from the server's
//! `GET /v1/admin/status` instead of exiting 5.

use backbone_consumers::status::{StatusReport, read_model_rows};
use clap::Args;

use crate::backend;
use crate::cli::OutputFormat;
use crate::config::Settings;
use crate::error::CliResult;
use crate::output::{Records, reject_csv};
use crate::server_client::locally_or_through_server;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {}

const STREAM_COLUMNS: [&str; 7] = [
    "stream",
    "subjects",
    "messages",
    "bytes",
    "first_seq",
    "last_seq",
    "last_time",
];
const CONSUMER_COLUMNS: [&str; 7] = [
    "stream",
    "consumer",
    "delivered",
    "ack_floor",
    "lag",
    "ack_pending",
    "redelivered",
];
const READ_MODEL_COLUMNS: [&str; 4] = ["read_model", "checkpoint", "entries", "state"];

/// Runs `status`.
pub(crate) async fn run(settings: &Settings, _args: StatusArgs) -> CliResult {
    reject_csv(settings.output, "status")?;
    let report = locally_or_through_server(settings, local(settings), async |server| {
        server.get("/v1/admin/status").await
    })
    .await?;
    print(&report, settings)
}

/// The report from the data directory and the configured broker.
async fn local(settings: &Settings) -> CliResult<StatusReport> {
    let broker = backend::connect(settings).await?;
    backend::require_event_log(broker.as_ref()).await?;
    let rows = read_model_rows(&settings.data_dir, |_| None);
    let report = StatusReport::collect(broker.as_ref(), rows).await;
    broker.close().await?;
    Ok(report?)
}

fn print(report: &StatusReport, settings: &Settings) -> CliResult {
    match settings.output {
        OutputFormat::Table => {
            println!("streams:");
            Records::from_rows(&STREAM_COLUMNS, &report.streams).print(OutputFormat::Table)?;
            println!("\nconsumers:");
            Records::from_rows(&CONSUMER_COLUMNS, &report.consumers).print(OutputFormat::Table)?;
            println!("\nread models ({}):", settings.data_dir.display());
            Records::from_rows(&READ_MODEL_COLUMNS, &report.read_models)
                .print(OutputFormat::Table)?;
            println!("\ndead letters: {}", report.dead_letters);
        }
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(report).unwrap_or_default()
            );
        }
        _ => println!("{}", serde_json::to_string(report).unwrap_or_default()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use backbone_consumers::status::{ConsumerRow, ReadModelRow, StreamRow};
    use serde::Serialize;
    use serde_json::Value;

    use super::*;

    /// Every column is a field of its row, in the field order, so the
    /// table and the JSON show the same things.
    #[test]
    fn columns_are_the_rows_fields_in_order() {
        fn keys<T: Serialize>(row: T) -> Vec<String> {
            let Value::Object(map) = serde_json::to_value(row).unwrap() else {
                panic!("a row is an object");
            };
            let mut keys: Vec<String> = map.keys().cloned().collect();
            keys.sort();
            keys
        }
        fn sorted(columns: &[&str]) -> Vec<String> {
            let mut c: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            c.sort();
            c
        }
        let stream = StreamRow {
            stream: "EVENTS".into(),
            subjects: "events.>".into(),
            messages: 1,
            bytes: 1,
            first_seq: 1,
            last_seq: 1,
            last_time: None,
        };
        let consumer = ConsumerRow {
            stream: "EVENTS".into(),
            consumer: "billing".into(),
            delivered: 1,
            ack_floor: 1,
            lag: 0,
            ack_pending: 0,
            redelivered: 0,
        };
        let model = ReadModelRow {
            read_model: "billing".into(),
            checkpoint: None,
            entries: None,
            state: "absent".into(),
        };
        assert_eq!(keys(stream), sorted(&STREAM_COLUMNS));
        assert_eq!(keys(consumer), sorted(&CONSUMER_COLUMNS));
        assert_eq!(keys(model), sorted(&READ_MODEL_COLUMNS));
    }
}
