//! `tail`: follow the event log live or from a point, decoded to JSON.

use std::collections::VecDeque;

use backbone_broker::{ReadRequest, ReadStart, stream::subject_matches};
use backbone_schemas::subject::{validate_key, validate_type_name};
use clap::Args;
use futures::StreamExt;

use crate::backend;
use crate::cli::OutputFormat;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::event_view::{EventView, parse_time};
use crate::log_source::LogSource;
use crate::output::{cell_text, reject_csv};
use crate::server_client::locally_or_through_server;

/// Arguments of `tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Start at this stream sequence.
    #[arg(long, conflicts_with_all = ["from_time", "last"])]
    pub(crate) from_seq: Option<u64>,
    /// Start at the first event stored at or after this RFC 3339 time.
    #[arg(long, conflicts_with = "last")]
    pub(crate) from_time: Option<String>,
    /// Start with the last N matching events.
    #[arg(long, value_name = "N")]
    pub(crate) last: Option<usize>,
    /// Only this event type, e.g. `payment.received`.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) event_type: Option<String>,
    /// Only this key (the last subject token).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Only subjects matching this pattern (`*` and `>` wildcards).
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Stop at the end of the log instead of waiting for new events.
    #[arg(long)]
    pub(crate) no_follow: bool,
}

/// The server-side subject filter for `--type` and `--key`.
pub(crate) fn type_key_filter(
    event_type: Option<&str>,
    key: Option<&str>,
) -> CliResult<Option<String>> {
    if let Some(t) = event_type {
        validate_type_name(t).map_err(CliError::bad_input)?;
        if backbone_schemas::Registry::global()
            .by_type_name(t)
            .is_none()
        {
            return Err(CliError::bad_input(format!("unknown event type {t:?}")));
        }
    }
    if let Some(k) = key {
        validate_key(k).map_err(CliError::bad_input)?;
    }
    Ok(match (event_type, key) {
        (None, None) => None,
        (t, k) => Some(format!(
            "events.{}.{}",
            t.unwrap_or("*.*"),
            k.unwrap_or("*")
        )),
    })
}

fn print_event(view: &EventView, format: OutputFormat) {
    match format {
        OutputFormat::Table => {
            let (key, data) = match &view.envelope {
                Ok(e) => (e.key.clone(), cell_text(&view.data)),
                Err(error) => (
                    view.message.subject.clone(),
                    format!("decode error: {error}"),
                ),
            };
            println!(
                "{:>8}  {:<20}  {:<14}  {data}",
                view.message.seq,
                view.event_type(),
                key
            );
        }
        OutputFormat::Json => match serde_json::to_string_pretty(&view.to_json()) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot render event {}: {e}", view.message.seq),
        },
        OutputFormat::Ndjson | OutputFormat::Csv => println!("{}", view.to_json()),
    }
}

/// Runs `tail`.
pub(crate) async fn run(settings: &Settings, args: TailArgs) -> CliResult {
    reject_csv(settings.output, "tail")?;
    let type_filter = type_key_filter(args.event_type.as_deref(), args.key.as_deref())?;
    let start = match (&args.from_seq, &args.from_time) {
        (Some(seq), _) => ReadStart::Sequence(*seq),
        (None, Some(t)) => ReadStart::Time(parse_time(t).map_err(CliError::BadInput)?),
        (None, None) => ReadStart::First,
    };
    let local = async {
        let broker = backend::connect(settings).await?;
        backend::require_event_log(broker.as_ref()).await?;
        let log = LogSource::Broker(broker.as_ref());
        let result = tail(log, &args, type_filter.clone(), start, settings.output).await;
        broker.close().await?;
        result
    };
    locally_or_through_server(settings, local, async |server| {
        tail(
            LogSource::Server(server),
            &args,
            type_filter.clone(),
            start,
            settings.output,
        )
        .await
    })
    .await
}

async fn tail(
    log: LogSource<'_>,
    args: &TailArgs,
    type_filter: Option<String>,
    start: ReadStart,
    format: OutputFormat,
) -> CliResult {
    // The subject pattern goes to the server when it is the only filter;
    // with --type/--key too, it is checked here on each message.
    let (server_filter, local_filter) = match (type_filter, args.subject.clone()) {
        (Some(t), s) => (Some(t), s),
        (None, s) => (s, None),
    };
    let wanted = |subject: &str| {
        local_filter
            .as_deref()
            .is_none_or(|p| subject_matches(p, subject))
    };
    let mut start = start;
    if let Some(n) = args.last {
        let end = log.last_seq().await?;
        let mut window = VecDeque::with_capacity(n.min(10_000));
        let request = ReadRequest {
            end_seq: Some(end),
            filter: server_filter.clone(),
            ..Default::default()
        };
        let mut messages = log.read(request).await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            if wanted(&message.subject) && n > 0 {
                if window.len() == n {
                    window.pop_front();
                }
                window.push_back(message);
            }
        }
        for message in window {
            print_event(&EventView::decode(message), format);
        }
        if args.no_follow {
            return Ok(());
        }
        start = ReadStart::Sequence(end + 1);
    }
    let request = ReadRequest {
        start,
        filter: server_filter,
        follow: !args.no_follow,
        ..Default::default()
    };
    let mut messages = log.read(request).await?;
    loop {
        tokio::select! {
            next = messages.next() => match next {
                Some(message) => {
                    let message = message?;
                    if wanted(&message.subject) {
                        print_event(&EventView::decode(message), format);
                    }
                }
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
