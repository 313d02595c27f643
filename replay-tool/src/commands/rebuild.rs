//! `rebuild <read-model>`: re-apply the log into a shadow copy of a read
//! model and swap it in atomically.
//!
//! - The shadow (`<name>.rebuild`) commits its checkpoint every batch, so an
//!   interrupted rebuild resumes where it stopped when run again.
//! - `--from-seq`/`--from-time` start a fresh shadow at that point of the
//!   log (events before it are not applied); `--to-seq` stops early.
//! - `--verify` rebuilds up to the live model's checkpoint, compares the
//!   digests and swaps only when they are equal; a mismatch keeps both
//!   stores untouched and exits 1.
//! - Only projections are rebuilt: reactors (side effects) are never run.
//! - A live store held by a running service fails with exit code 5 before
//!   anything is written, unless that service is a `backbone-server`
//!   found from the data directory (or named by `--server`): then the
//!   server rebuilds it (`POST /v1/admin/rebuilds`, with `--verify` and
//!   `--batch-size`) and its progress events drive the progress bar.

use backbone_broker::{Broker, ReadRequest, ReadStart, stream::EVENT_STREAM};
use backbone_consumers::{
    ReadModel, RebuildOptions, RebuildProgress,
    rebuild::{live_path, shadow_path},
};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend;
use crate::cli::OutputFormat;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::event_view::parse_time;
use crate::output::reject_csv;
use crate::progress::Progress;
use crate::read_models::{by_name, models_dir, open_store};
use crate::server_client::{ServerClient, locally_or_through_server};

/// Arguments of `rebuild`.
#[derive(Debug, Args)]
pub(crate) struct RebuildArgs {
    /// The read model: notifications, billing, gallery, inbox or audit.
    pub(crate) read_model: String,
    /// Start a fresh rebuild at this stream sequence.
    #[arg(long, conflicts_with = "from_time")]
    pub(crate) from_seq: Option<u64>,
    /// Start a fresh rebuild at the first event stored at or after this time.
    #[arg(long)]
    pub(crate) from_time: Option<String>,
    /// Last stream sequence to apply [default: the end of the log].
    #[arg(long)]
    pub(crate) to_seq: Option<u64>,
    /// Show how many events would be applied, and which range, then stop.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Rebuild up to the live checkpoint and swap only if the digests match.
    #[arg(long, conflicts_with = "to_seq")]
    pub(crate) verify: bool,
    /// Events applied per commit.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: usize,
    /// The service's durable consumer of this model (durable_prefix +
    /// name): deleted after the swap, and the consumer whose redriven dead
    /// letters the rebuild applies [default: the read model's name].
    #[arg(long, value_name = "NAME")]
    pub(crate) durable: Option<String>,
    /// The service's `dedup_horizon`: copies of an applied event (same
    /// `ce-id`) stored within it are skipped, as the service skipped them
    /// ("36h", "7d"; "0s" turns the index off) [default: 24h, the
    /// service's default].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) dedup_horizon: Option<std::time::Duration>,
}

/// The sequence a fresh shadow starts at.
async fn start_seq(broker: &dyn Broker, args: &RebuildArgs) -> CliResult<u64> {
    if let Some(seq) = args.from_seq {
        return Ok(seq.max(1));
    }
    let Some(text) = &args.from_time else {
        return Ok(1);
    };
    let time = parse_time(text).map_err(CliError::BadInput)?;
    let request = ReadRequest {
        start: ReadStart::Time(time),
        ..Default::default()
    };
    let mut messages = broker.read(EVENT_STREAM, request).await?;
    match messages.next().await {
        Some(message) => Ok(message?.seq),
        None => Ok(broker.stream_info(EVENT_STREAM).await?.last_seq + 1),
    }
}

/// Runs `rebuild`.
pub(crate) async fn run(settings: &Settings, args: RebuildArgs) -> CliResult {
    reject_csv(settings.output, "rebuild")?;
    let model = by_name(&args.read_model)?;
    if let (Some(from), Some(to)) = (args.from_seq, args.to_seq)
        && to < from
    {
        return Err(CliError::bad_input("--to-seq is before --from-seq"));
    }
    let local = async {
        let broker = backend::connect(settings).await?;
        backend::ensure_standard_streams(broker.as_ref()).await?;
        let result = rebuild(broker.as_ref(), model.as_ref(), settings, &args).await;
        broker.close().await?;
        result
    };
    locally_or_through_server(settings, local, async |server| {
        remote(server, settings, &args).await
    })
    .await
}

/// `rebuild` by the server that runs the model (`POST /v1/admin/rebuilds`),
/// following its progress events.
async fn remote(server: &ServerClient, settings: &Settings, args: &RebuildArgs) -> CliResult {
    let local_only = [
        (args.from_seq.is_some(), "--from-seq"),
        (args.from_time.is_some(), "--from-time"),
        (args.to_seq.is_some(), "--to-seq"),
        (args.dry_run, "--dry-run"),
        (args.durable.is_some(), "--durable"),
        (args.dedup_horizon.is_some(), "--dedup-horizon"),
    ];
    if let Some((_, flag)) = local_only.iter().find(|(given, _)| *given) {
        return Err(CliError::Usage(format!(
            "{flag} needs the data directory: the server rebuilds to its live checkpoint \
             with its own durable and dedup horizon; stop the server to use {flag}"
        )));
    }
    let name = &args.read_model;
    let request =
        json!({ "model": name, "verify": args.verify, "batch_size": args.batch_size.max(1) });
    let mut state: Value = server.post("/v1/admin/rebuilds", &request).await?;
    eprintln!("rebuilding {name} in the running server");
    let mut progress = Progress::start(format!("rebuild {name}"), None);
    let mut events = std::pin::pin!(
        server
            .events(&format!("/v1/admin/rebuilds/{name}/events"))
            .await?
    );
    let mut shown = 0u64;
    while let Some(next) = events.next().await {
        state = next?;
        let seq = state["current_seq"].as_u64().unwrap_or_default();
        progress.advance(seq.saturating_sub(shown));
        shown = shown.max(seq);
    }
    progress.finish();
    let field = |name: &str| state[name].as_u64().unwrap_or_default();
    match state["phase"].as_str() {
        Some("done") => print_summary(
            settings,
            &Summary {
                read_model: name,
                applied: field("applied"),
                rejected: field("rejected"),
                checkpoint: field("current_seq"),
                digest: state["digest"].as_str().unwrap_or_default(),
                verified: args.verify,
                seconds: state["seconds"].as_f64().unwrap_or_default(),
            },
        ),
        _ => {
            let failure = &state["failure"];
            let message = failure["message"]
                .as_str()
                .unwrap_or("the event stream ended early");
            Err(match failure["kind"].as_str() {
                Some("VerifyMismatch") => CliError::Verification(format!("{name}: {message}")),
                _ => CliError::failed(format!("{name}: the server's rebuild failed: {message}")),
            })
        }
    }
}

/// What a finished rebuild prints.
struct Summary<'a> {
    read_model: &'a str,
    applied: u64,
    rejected: u64,
    checkpoint: u64,
    digest: &'a str,
    verified: bool,
    seconds: f64,
}

fn print_summary(settings: &Settings, s: &Summary<'_>) -> CliResult {
    match settings.output {
        OutputFormat::Table => println!(
            "rebuilt {}: {} applied, {} rejected, checkpoint {}, digest {}{}",
            s.read_model,
            s.applied,
            s.rejected,
            s.checkpoint,
            s.digest,
            if s.verified {
                " (matches the live digest)"
            } else {
                ""
            }
        ),
        _ => println!(
            "{}",
            json!({
                "read_model": s.read_model,
                "applied": s.applied,
                "rejected": s.rejected,
                "checkpoint": s.checkpoint,
                "digest": s.digest,
                "verified": s.verified,
                "seconds": s.seconds,
            })
        ),
    }
    Ok(())
}

async fn rebuild(
    broker: &dyn Broker,
    model: &dyn ReadModel,
    settings: &Settings,
    args: &RebuildArgs,
) -> CliResult {
    let dir = models_dir(&settings.data_dir);
    std::fs::create_dir_all(&dir)?;
    let live = live_path(&dir, model.name());
    let shadow = shadow_path(&dir, model.name());
    let live_state = if live.exists() {
        let store = open_store(&live, "live read model")?;
        Some((store.checkpoint()?, store.digest()?))
    } else {
        None
    };
    let last_seq = broker.stream_info(EVENT_STREAM).await?.last_seq;
    let target = if args.verify {
        live_state.map_or(0, |(checkpoint, _)| checkpoint)
    } else {
        args.to_seq.unwrap_or(last_seq).min(last_seq)
    };
    let (from, resumed) = {
        let store = open_store(&shadow, "rebuild shadow")?;
        let checkpoint = store.checkpoint()?;
        if checkpoint > 0 {
            (checkpoint + 1, true)
        } else {
            let start = start_seq(broker, args).await?;
            if start > 1 && !args.dry_run {
                store.commit(store.transaction(), start - 1)?;
            }
            (start, false)
        }
    };
    if args.dry_run {
        if !resumed {
            let _ = std::fs::remove_dir_all(&shadow);
        }
        let events = (target + 1).saturating_sub(from);
        let plan = json!({
            "read_model": model.name(),
            "from_seq": from,
            "to_seq": target,
            "events": events,
            "resumes_interrupted_rebuild": resumed,
            "live_checkpoint": live_state.map(|(c, _)| c),
        });
        match settings.output {
            OutputFormat::Table => println!(
                "would rebuild {} from seq {from} to {target}: {events} event(s){}",
                model.name(),
                if resumed {
                    " (resuming an interrupted rebuild)"
                } else {
                    ""
                }
            ),
            _ => println!("{plan}"),
        }
        return Ok(());
    }
    if resumed {
        eprintln!(
            "resuming the interrupted rebuild of {} at seq {from}",
            model.name()
        );
    }
    let mut progress = Progress::start(
        format!("rebuild {}", model.name()),
        Some((target + 1).saturating_sub(from)),
    );
    let mut last_done = 0u64;
    let mut report_progress = |p: RebuildProgress| {
        let done = (p.current_seq + 1).saturating_sub(from);
        progress.advance(done.saturating_sub(last_done));
        last_done = done;
    };
    let options = RebuildOptions {
        up_to: Some(target),
        batch_size: args.batch_size.max(1),
        swap: false,
        durable_name: Some(
            args.durable
                .clone()
                .unwrap_or_else(|| model.name().to_owned()),
        ),
        dedup_horizon: args
            .dedup_horizon
            .unwrap_or(backbone_consumers::dedup::DEFAULT_HORIZON),
        ..Default::default()
    };
    let report =
        backbone_consumers::rebuild(broker, model, &dir, &options, &mut report_progress).await?;
    let (_, elapsed) = progress.finish();
    if args.verify {
        let (_, live_digest) = live_state.unwrap_or((0, empty_digest()));
        if live_digest != report.digest {
            return Err(CliError::Verification(format!(
                "{}: rebuilt digest {:016x} != live digest {:016x} at seq {target}; \
                 the live store is unchanged and the shadow kept at {}",
                model.name(),
                report.digest,
                live_digest,
                shadow.display()
            )));
        }
    }
    // The shadow is complete: swap it in (a second call finds nothing left
    // to apply and only swaps).
    let swap = RebuildOptions {
        swap: true,
        ..options
    };
    let swapped = backbone_consumers::rebuild(broker, model, &dir, &swap, &mut |_| {}).await?;
    print_summary(
        settings,
        &Summary {
            read_model: model.name(),
            applied: report.applied,
            rejected: report.rejected,
            checkpoint: swapped.checkpoint,
            digest: &format!("{:016x}", swapped.digest),
            verified: args.verify,
            seconds: elapsed.as_secs_f64(),
        },
    )
}

/// The digest of an empty model, for verifying against a missing live store.
fn empty_digest() -> u64 {
    backbone_consumers::digest::Digest::new().finish()
}
