//! `status`: streams, durable consumers and their lag, dead-letter depth,
//! and the checkpoint of every read model in the data directory.

use backbone_broker::{Broker, stream::DEAD_LETTER_STREAM};
use clap::Args;
use serde_json::{Value, json};

use crate::backend;
use crate::cli::OutputFormat;
use crate::config::Settings;
use crate::error::CliResult;
use crate::event_view::format_time;
use crate::output::{Records, reject_csv};
use crate::read_models;

/// Arguments of `status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {}

/// Runs `status`.
pub(crate) async fn run(settings: &Settings, _args: StatusArgs) -> CliResult {
    reject_csv(settings.output, "status")?;
    let broker = backend::connect(settings).await?;
    backend::require_event_log(broker.as_ref()).await?;
    let result = collect(broker.as_ref(), settings).await;
    broker.close().await?;
    let (streams, consumers, models, dead_letters) = result?;
    match settings.output {
        OutputFormat::Table => {
            println!("streams:");
            streams.print(OutputFormat::Table)?;
            println!("\nconsumers:");
            consumers.print(OutputFormat::Table)?;
            println!("\nread models ({}):", settings.data_dir.display());
            models.print(OutputFormat::Table)?;
            println!("\ndead letters: {dead_letters}");
        }
        format => {
            let to_json = |r: &Records| -> CliResult<Value> {
                let mut out = Vec::new();
                r.write(OutputFormat::Json, &mut out)?;
                Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
            };
            let all = json!({
                "streams": to_json(&streams)?,
                "consumers": to_json(&consumers)?,
                "read_models": to_json(&models)?,
                "dead_letters": dead_letters,
            });
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else {
                println!("{all}");
            }
        }
    }
    Ok(())
}

async fn collect(
    broker: &dyn Broker,
    settings: &Settings,
) -> CliResult<(Records, Records, Records, u64)> {
    let mut streams = Records::new(&[
        "stream",
        "subjects",
        "messages",
        "bytes",
        "first_seq",
        "last_seq",
        "last_time",
    ]);
    let mut consumers = Records::new(&[
        "stream",
        "consumer",
        "delivered",
        "ack_floor",
        "lag",
        "ack_pending",
        "redelivered",
    ]);
    let mut dead_letters = 0;
    for info in broker.streams().await? {
        if info.config.name == DEAD_LETTER_STREAM {
            dead_letters = info.messages;
        }
        streams.push(vec![
            json!(info.config.name),
            json!(info.config.subjects.join(",")),
            json!(info.messages),
            json!(info.bytes),
            json!(info.first_seq),
            json!(info.last_seq),
            info.last_time
                .map_or(Value::Null, |t| json!(format_time(t))),
        ]);
        for c in broker.consumers(&info.config.name).await? {
            consumers.push(vec![
                json!(c.stream),
                json!(c.name),
                json!(c.delivered_stream_seq),
                json!(c.ack_floor_stream_seq),
                json!(c.num_pending),
                json!(c.num_ack_pending),
                json!(c.num_redelivered),
            ]);
        }
    }
    let models = read_models::checkpoints(&settings.data_dir);
    Ok((streams, consumers, models, dead_letters))
}
