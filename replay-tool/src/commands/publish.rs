//! `publish`: JSON in, validated protobuf events out.
//!
//! Every input is validated before anything is published: one bad line
//! fails the whole run with every problem listed by line number, and
//! nothing is published. Once validated, events are published in input
//! order and each line's sequence is printed.

use std::io::Read;
use std::path::PathBuf;

use backbone_broker::OutboundMessage;
use backbone_schemas::{Envelope, EventContext};
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::output::{Records, reject_csv};

/// Arguments of `publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Event type of the single event given with --json.
    #[arg(long = "type", value_name = "TYPE", requires = "json")]
    pub(crate) event_type: Option<String>,
    /// The event's data as proto3 JSON (with --type).
    #[arg(long, requires = "event_type", conflicts_with = "file")]
    pub(crate) json: Option<String>,
    /// NDJSON file of `{"type", "data", "source"?, "correlation_id"?}` lines;
    /// `-` or no --json reads standard input.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Source of events that do not name one.
    #[arg(long, default_value = "replay-tool")]
    pub(crate) source: String,
    /// Correlation id of events that do not name one.
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
}

/// One NDJSON input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(rename = "type")]
    event_type: String,
    data: Value,
    source: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

fn envelope_of(line: InputLine, args: &PublishArgs) -> Result<Envelope, String> {
    let mut ctx = EventContext::new(line.source.unwrap_or_else(|| args.source.clone()));
    ctx.correlation_id = line.correlation_id.or_else(|| args.correlation_id.clone());
    ctx.causation_id = line.causation_id;
    Envelope::from_json(&line.event_type, &line.data, ctx).map_err(|e| e.to_string())
}

/// Parses and validates every input; the error lists every bad line.
fn validate(args: &PublishArgs, input: &str) -> CliResult<Vec<Envelope>> {
    if let (Some(t), Some(j)) = (&args.event_type, &args.json) {
        let data: Value = serde_json::from_str(j)
            .map_err(|e| CliError::bad_input(format!("--json is not valid JSON: {e}")))?;
        let line = InputLine {
            event_type: t.clone(),
            data,
            source: None,
            correlation_id: None,
            causation_id: None,
        };
        return envelope_of(line, args)
            .map(|e| vec![e])
            .map_err(CliError::BadInput);
    }
    let mut envelopes = Vec::new();
    let mut problems = Vec::new();
    for (index, text) in input.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<InputLine>(text)
            .map_err(|e| format!("not a valid input line: {e}"))
            .and_then(|line| envelope_of(line, args));
        match parsed {
            Ok(envelope) => envelopes.push(envelope),
            Err(problem) => problems.push(format!("line {}: {problem}", index + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::BadInput(format!(
            "{} of {} lines are invalid; nothing was published\n  {}",
            problems.len(),
            problems.len() + envelopes.len(),
            problems.join("\n  ")
        )));
    }
    if envelopes.is_empty() {
        return Err(CliError::bad_input("no events in the input"));
    }
    Ok(envelopes)
}

fn read_input(args: &PublishArgs) -> CliResult<String> {
    if args.json.is_some() {
        return Ok(String::new());
    }
    match &args.file {
        Some(path) if path.as_os_str() != "-" => std::fs::read_to_string(path)
            .map_err(|e| CliError::bad_input(format!("cannot read {}: {e}", path.display()))),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::bad_input(format!("cannot read standard input: {e}")))?;
            Ok(text)
        }
    }
}

/// Runs `publish`.
pub(crate) async fn run(settings: &Settings, args: PublishArgs) -> CliResult {
    reject_csv(settings.output, "publish")?;
    let envelopes = validate(&args, &read_input(&args)?)?;
    let broker = backend::connect(settings).await?;
    backend::ensure_standard_streams(broker.as_ref()).await?;
    let messages: Vec<OutboundMessage> = envelopes
        .iter()
        .map(|e| {
            OutboundMessage::new(e.subject(), e.payload.clone())
                .with_headers(e.headers())
                .with_msg_id(e.id.to_string())
        })
        .collect();
    let receipts = broker.publish_batch(messages).await;
    let mut records = Records::new(&["line", "seq", "subject", "id", "duplicate"]);
    let mut failure = None;
    for (index, (envelope, receipt)) in envelopes.iter().zip(receipts).enumerate() {
        match receipt {
            Ok(r) => records.push(vec![
                json!(index + 1),
                json!(r.seq),
                json!(envelope.subject()),
                json!(envelope.id.to_string()),
                json!(r.duplicate),
            ]),
            Err(e) => {
                eprintln!("event {}: not published: {e}", index + 1);
                failure.get_or_insert(e);
            }
        }
    }
    records.print(settings.output)?;
    broker.close().await?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
