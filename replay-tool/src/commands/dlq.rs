//! `dlq list|show|redrive|purge`: the dead-letter stream.
//!
//! # Redrive
//! A consumer skips every sequence at or below its checkpoint, so putting a
//! letter back means appending it to the event log as a NEW entry
//! ([`backbone_consumers::redrive::redrive_message`]): the original subject,
//! payload and CloudEvents headers, the `Backbone-Dlq-*` headers removed,
//! `Nats-Msg-Id` restored to the original event id (the wire contract
//! requires it to equal `ce-id`), plus `Backbone-Redrive-Consumer` (the
//! consumer that dead-lettered it) and `Backbone-Redrive-Of` (the letter's
//! sequence). Only that consumer applies the entry; every other consumer
//! skips it, so no read model applies the event twice.
//!
//! Because the id is the original one, the broker deduplicates a redrive
//! made within the event stream's duplicate window of the original publish
//! (or of an earlier redrive): the tool reports that letter as
//! `duplicate`, says how long the window is, and exits 1; a later redrive
//! succeeds. Redriving the same letter twice in quick succession is
//! therefore harmless.

use backbone_broker::{
    Broker, OutboundMessage, ReadRequest, StoredMessage,
    stream::{DEAD_LETTER_STREAM, EVENT_STREAM, StreamConfig},
};
use backbone_consumers::{
    dead_letter::{DLQ_CONSUMER, DLQ_SEQUENCE, LetterSummary},
    redrive::{REDRIVE_CONSUMER, REDRIVE_OF, redrive_message},
};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::event_view::EventView;
use crate::output::{Records, reject_csv};
use crate::server_client::{ServerClient, locally_or_through_server};

/// Arguments of `dlq`.
#[derive(Debug, Args)]
pub(crate) struct DlqArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: DlqAction,
}

/// The `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DlqAction {
    /// Every dead letter: consumer, original subject and sequence, error, time.
    List,
    /// One dead letter with its event decoded.
    Show {
        /// The letter's sequence in the DEADLETTER stream.
        seq: u64,
    },
    /// Append letters' events to the event log again, for the consumer
    /// that dead-lettered them only (see docs).
    Redrive {
        /// The letter's sequence in the DEADLETTER stream.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seq: Option<u64>,
        /// Every letter.
        #[arg(long)]
        all: bool,
    },
    /// Remove handled letters: all, or one consumer's.
    Purge {
        /// Only this consumer's letters.
        #[arg(long)]
        consumer: Option<String>,
    },
}

/// A dead letter's headers, parsed.
#[derive(Debug, Clone)]
struct Letter {
    message: StoredMessage,
}

impl Letter {
    fn header(&self, name: &str) -> Option<&str> {
        self.message.headers.get(name)
    }

    /// The original message as it stood in the event log.
    fn original(&self) -> CliResult<OutboundMessage> {
        let mut redrive = redrive_message(&self.message).map_err(CliError::bad_input)?;
        redrive.headers.remove(REDRIVE_CONSUMER);
        redrive.headers.remove(REDRIVE_OF);
        Ok(redrive)
    }

    fn summary(&self) -> LetterSummary {
        LetterSummary::of(&self.message)
    }
}

const LIST_COLUMNS: &[&str] = &[
    "seq",
    "consumer",
    "subject",
    "original_seq",
    "deliveries",
    "error",
    "time",
];

async fn letters(broker: &dyn Broker) -> CliResult<Vec<Letter>> {
    let mut messages = broker
        .read(DEAD_LETTER_STREAM, ReadRequest::default())
        .await?;
    let mut all = Vec::new();
    while let Some(message) = messages.next().await {
        all.push(Letter { message: message? });
    }
    Ok(all)
}

/// Runs `dlq`: on the data directory or the configured broker, or through
/// the running server that holds the data directory (or `--server`).
pub(crate) async fn run(settings: &Settings, args: DlqArgs) -> CliResult {
    reject_csv(settings.output, "dlq")?;
    let action = args.action;
    let local = async {
        let broker = backend::connect(settings).await?;
        backend::ensure_standard_streams(broker.as_ref()).await?;
        let result = dispatch(broker.as_ref(), settings, action.clone()).await;
        broker.close().await?;
        result
    };
    locally_or_through_server(settings, local, async |server| {
        remote(server, settings, action.clone()).await
    })
    .await
}

/// `dlq` through a server's admin routes.
async fn remote(server: &ServerClient, settings: &Settings, action: DlqAction) -> CliResult {
    match action {
        DlqAction::List => {
            let letters = remote_letters(server).await?;
            Records::from_rows(LIST_COLUMNS, &letters).print(settings.output)?;
            eprintln!("{} dead letter(s)", letters.len());
            Ok(())
        }
        DlqAction::Show { seq } => {
            let shown: Value = server.get(&format!("/v1/admin/dead-letters/{seq}")).await?;
            let text = serde_json::to_string_pretty(&shown).map_err(CliError::failed)?;
            println!("{text}");
            Ok(())
        }
        DlqAction::Redrive { seq, all } => {
            let chosen: Vec<u64> = match (seq, all) {
                (_, true) => remote_letters(server)
                    .await?
                    .iter()
                    .map(|l| l.seq)
                    .collect(),
                (Some(seq), false) => vec![seq],
                (None, false) => return Err(CliError::Usage("give a sequence or --all".into())),
            };
            let mut outcomes = Vec::new();
            for seq in chosen {
                let answer: Value = server
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/admin/dead-letters/{seq}/redrive"),
                    )
                    .await?;
                outcomes.push(Redriven {
                    letter: seq,
                    consumer: answer["consumer"].as_str().map(str::to_owned),
                    subject: answer["subject"].as_str().unwrap_or_default().to_owned(),
                    new_seq: answer["seq"].as_u64().unwrap_or_default(),
                    duplicate: answer["duplicate"].as_bool().unwrap_or_default(),
                });
            }
            report_redrives(&outcomes, settings, "2m unless the stream sets another")
        }
        DlqAction::Purge { consumer } => {
            let path = match &consumer {
                Some(c) => format!("/v1/admin/dead-letters?consumer={c}"),
                None => "/v1/admin/dead-letters".to_owned(),
            };
            let answer: Value = server.request(reqwest::Method::DELETE, &path).await?;
            println!(
                "purged {} dead letter(s)",
                answer["purged"].as_u64().unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// Every letter, following the server's pages.
async fn remote_letters(server: &ServerClient) -> CliResult<Vec<LetterSummary>> {
    let mut all = Vec::new();
    let mut path = "/v1/admin/dead-letters?limit=1000".to_owned();
    loop {
        let page: Value = server.get(&path).await?;
        let items: Vec<LetterSummary> = serde_json::from_value(page["items"].clone())
            .map_err(|e| CliError::failed(format!("unexpected answer from the server: {e}")))?;
        all.extend(items);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/admin/dead-letters?limit=1000&cursor={cursor}"),
            None => return Ok(all),
        }
    }
}

/// One redrive's outcome.
struct Redriven {
    letter: u64,
    consumer: Option<String>,
    subject: String,
    new_seq: u64,
    duplicate: bool,
}

/// Prints the outcomes; fails (exit 1) when the broker dropped some as
/// duplicates, saying when to retry.
fn report_redrives(outcomes: &[Redriven], settings: &Settings, window: &str) -> CliResult {
    let mut records = Records::new(&["letter", "consumer", "subject", "new_seq", "outcome"]);
    for o in outcomes {
        let outcome = if o.duplicate {
            "duplicate: within the duplicate window, retry later"
        } else {
            "redriven"
        };
        records.push(vec![
            json!(o.letter),
            json!(o.consumer),
            json!(o.subject),
            json!(o.new_seq),
            json!(outcome),
        ]);
    }
    records.print(settings.output)?;
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
    if duplicates > 0 {
        return Err(CliError::failed(format!(
            "{duplicates} letter(s) not redriven: their event id was published less than the \
             event stream's duplicate window ({window}) ago, so the broker dropped the redrive \
             as a duplicate; nothing changed: retry once {window} have passed since the event \
             was last published (its original publish or an earlier redrive)"
        )));
    }
    Ok(())
}

async fn dispatch(broker: &dyn Broker, settings: &Settings, action: DlqAction) -> CliResult {
    match action {
        DlqAction::List => {
            let summaries: Vec<LetterSummary> =
                letters(broker).await?.iter().map(Letter::summary).collect();
            let records = Records::from_rows(LIST_COLUMNS, &summaries);
            records.print(settings.output)?;
            eprintln!("{} dead letter(s)", records.len());
            Ok(())
        }
        DlqAction::Show { seq } => {
            let letter = Letter {
                message: broker.get(DEAD_LETTER_STREAM, seq).await?,
            };
            let original = letter.original()?;
            let view = EventView::decode(StoredMessage {
                stream: letter
                    .header(backbone_consumers::dead_letter::DLQ_STREAM)
                    .unwrap_or_default()
                    .to_owned(),
                seq: letter
                    .header(DLQ_SEQUENCE)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default(),
                subject: original.subject,
                headers: original.headers,
                ..letter.message.clone()
            });
            let object = json!({
                "letter": letter.summary(),
                "event": view.to_json(),
            });
            let text = serde_json::to_string_pretty(&object).map_err(CliError::failed)?;
            println!("{text}");
            Ok(())
        }
        DlqAction::Redrive { seq, all } => {
            let chosen = if all {
                letters(broker).await?
            } else {
                let seq = seq.ok_or_else(|| CliError::Usage("give a sequence or --all".into()))?;
                vec![Letter {
                    message: broker.get(DEAD_LETTER_STREAM, seq).await?,
                }]
            };
            redrive(broker, settings, &chosen).await
        }
        DlqAction::Purge { consumer } => {
            let filter = consumer
                .as_deref()
                .map(backbone_consumers::dead_letter::letters_of);
            ensure_letters_stream(broker).await?;
            let removed = broker.purge(DEAD_LETTER_STREAM, filter.as_deref()).await?;
            println!("purged {removed} dead letter(s)");
            Ok(())
        }
    }
}

async fn ensure_letters_stream(broker: &dyn Broker) -> CliResult {
    backend::ensure_exists(broker, &StreamConfig::dead_letters()).await
}

async fn redrive(broker: &dyn Broker, settings: &Settings, chosen: &[Letter]) -> CliResult {
    let mut outcomes = Vec::new();
    for letter in chosen {
        let entry = redrive_message(&letter.message).map_err(CliError::bad_input)?;
        let subject = entry.subject.clone();
        let receipt = broker.publish(entry).await?;
        outcomes.push(Redriven {
            letter: letter.message.seq,
            consumer: letter.header(DLQ_CONSUMER).map(str::to_owned),
            subject,
            new_seq: receipt.seq,
            duplicate: receipt.duplicate,
        });
    }
    let window = broker
        .stream_info(EVENT_STREAM)
        .await
        .map(|info| {
            humantime_serde::re::humantime::format_duration(info.config.duplicate_window)
                .to_string()
        })
        .unwrap_or_else(|_| "its duplicate window".to_owned());
    report_redrives(&outcomes, settings, &window)
}
