//! `demo`: the whole backbone in one command.
//!
//! 1. **publish**: the seed services (user, messaging, media, payment) as a
//!    deterministic simulation ([`crate::generator`]) publish `--events`
//!    events, a few of them poison refunds;
//! 2. **consume**: every read model runs as a durable consumer until it has
//!    caught up; billing dead-letters the poison refunds;
//! 3. **rebuild**: each read model is rebuilt from the log into a shadow
//!    copy, whose digest must equal the live one;
//! 4. **audit**: sample queries run through the audit index and by scanning
//!    the log, which must agree;
//!
//! then a summary is printed. Any failed verification exits 1. Without an
//! explicit `--data-dir` the demo uses a fresh temporary directory, removed
//! at the end; with one, the data stays for `status`, `tail`, `audit`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backbone_broker::{
    Broker, ConsumerErrorKind, OutboundMessage,
    stream::{DEAD_LETTER_STREAM, EVENT_STREAM},
};
use backbone_consumers::{
    Metrics, ProjectionRunner, RebuildOptions, RunReport, RuntimeConfig, models::READ_MODEL_NAMES,
    rebuild::shadow_path, shutdown_channel,
};
use clap::Args;
use serde_json::{Value, json};

use crate::backend;
use crate::cli::OutputFormat;
use crate::commands::audit::Query;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::generator::{Generator, poison_count};
use crate::progress::{Progress, rate};
use crate::read_models::{by_name, models_dir, open_store};

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Events to publish.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Seed of the simulation; the same seed publishes the same events.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Give up waiting for the consumers after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout_secs: u64,
}

/// The demo's durable consumer of read model `name`: prefixed, so a demo
/// against a shared server never touches a service's own durables.
fn durable(name: &str) -> String {
    format!("demo-{name}")
}

/// One phase's figures.
#[derive(Debug, Clone)]
struct Phase {
    name: &'static str,
    events: u64,
    elapsed: Duration,
}

/// Runs `demo`.
pub(crate) async fn run(settings: &Settings, args: DemoArgs) -> CliResult {
    if args.events == 0 {
        return Err(CliError::bad_input("--events must be at least 1"));
    }
    let temp = if settings.data_dir_explicit {
        None
    } else {
        Some(tempfile::tempdir()?)
    };
    let mut settings = settings.clone();
    if let Some(dir) = &temp {
        settings.data_dir = dir.path().to_path_buf();
    }
    eprintln!("data dir: {}", settings.data_dir.display());
    let broker = backend::connect(&settings).await?;
    backend::ensure_standard_streams(broker.as_ref()).await?;
    let result = demo(&broker, &settings, &args).await;
    broker.close().await?;
    drop(broker);
    result
}

async fn demo(broker: &Arc<dyn Broker>, settings: &Settings, args: &DemoArgs) -> CliResult {
    let mut phases = Vec::new();
    let mut failures = Vec::new();

    let (published, duplicates, phase) = publish(broker.as_ref(), args).await?;
    phases.push(phase);

    let (reports, phase) = consume(broker, settings, args).await?;
    phases.push(phase);

    let log_end = broker.stream_info(EVENT_STREAM).await?.last_seq;
    let mut digests = Vec::new();
    let started = Instant::now();
    let mut rebuilt_events = 0;
    for name in READ_MODEL_NAMES {
        let (live, rebuilt, events) = verify_rebuild(broker.as_ref(), settings, name).await?;
        rebuilt_events += events;
        if live != rebuilt {
            failures.push(format!(
                "{name}: rebuilt digest {rebuilt:016x} != live digest {live:016x}"
            ));
        }
        digests.push((name, live, rebuilt));
    }
    phases.push(Phase {
        name: "rebuild",
        events: rebuilt_events,
        elapsed: started.elapsed(),
    });

    let started = Instant::now();
    let audits = sample_audits(broker.as_ref(), settings, &mut failures).await?;
    phases.push(Phase {
        name: "audit",
        events: audits.iter().map(|(_, n)| *n as u64).sum(),
        elapsed: started.elapsed(),
    });

    let dead_letters = broker.stream_info(DEAD_LETTER_STREAM).await?.messages;
    let billing_rejected = reports
        .iter()
        .find(|(n, _)| *n == "billing")
        .map_or(0, |(_, r)| r.dead_lettered);
    let expected_poison = poison_count(args.events);
    let other_rejected: u64 = reports
        .iter()
        .filter(|(n, _)| *n != "billing")
        .map(|(_, r)| r.dead_lettered)
        .sum();
    if duplicates == 0 && other_rejected > 0 {
        failures.push(format!(
            "{other_rejected} valid event(s) were dead-lettered by read models other than billing"
        ));
    }
    if duplicates == 0 && billing_rejected != expected_poison {
        failures.push(format!(
            "billing dead-lettered {billing_rejected} event(s), expected the {expected_poison} poison refund(s)"
        ));
    }

    let summary = json!({
        "events_published": published,
        "duplicates": duplicates,
        "log_last_seq": log_end,
        "phases": phases.iter().map(|p| json!({
            "phase": p.name,
            "events": p.events,
            "seconds": p.elapsed.as_secs_f64(),
            "events_per_second": rate(p.events, p.elapsed).round() as u64,
        })).collect::<Vec<_>>(),
        "read_models": reports.iter().zip(&digests).map(|((name, r), (_, live, rebuilt))| json!({
            "read_model": name,
            "applied": r.applied,
            "dead_lettered": r.dead_lettered,
            "checkpoint": r.checkpoint,
            "live_digest": format!("{live:016x}"),
            "rebuilt_digest": format!("{rebuilt:016x}"),
            "verified": live == rebuilt,
        })).collect::<Vec<_>>(),
        "audit_queries": audits.iter().map(|(q, n)| json!({"query": q, "matches": n})).collect::<Vec<_>>(),
        "dead_letters": dead_letters,
        "poison_events": expected_poison,
        "failures": failures,
    });
    print_summary(&summary, settings.output);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Verification(failures.join("; ")))
    }
}

async fn publish(broker: &dyn Broker, args: &DemoArgs) -> CliResult<(u64, u64, Phase)> {
    let mut progress = Progress::start("publish", Some(args.events));
    let mut generator = Generator::new(args.seed, args.events);
    let (mut published, mut duplicates) = (0, 0);
    loop {
        let chunk: Vec<OutboundMessage> = generator
            .by_ref()
            .take(1000)
            .map(|e| {
                OutboundMessage::new(e.subject(), e.payload.clone())
                    .with_headers(e.headers())
                    .with_msg_id(e.id.to_string())
            })
            .collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len() as u64;
        for receipt in broker.publish_batch(chunk).await {
            if receipt?.duplicate {
                duplicates += 1;
            } else {
                published += 1;
            }
        }
        progress.advance(n);
    }
    let (events, elapsed) = progress.finish();
    if duplicates > 0 {
        eprintln!(
            "{duplicates} event(s) were already in the log (same seed within the duplicate window)"
        );
    }
    Ok((
        published,
        duplicates,
        Phase {
            name: "publish",
            events,
            elapsed,
        },
    ))
}

async fn consume(
    broker: &Arc<dyn Broker>,
    settings: &Settings,
    args: &DemoArgs,
) -> CliResult<(Vec<(&'static str, RunReport)>, Phase)> {
    let dir = models_dir(&settings.data_dir);
    std::fs::create_dir_all(&dir)?;
    let (trigger, shutdown) = shutdown_channel();
    let metrics = Metrics::new();
    let mut tasks = Vec::new();
    for name in READ_MODEL_NAMES {
        let store = open_store(&dir.join(name), "read model")?;
        if store.checkpoint()? == 0 {
            // A fresh store must not bind to a durable left by an earlier
            // run (it would skip what that run consumed).
            match broker.delete_consumer(EVENT_STREAM, &durable(name)).await {
                Err(e) if e.kind() != &ConsumerErrorKind::ConsumerNotFound => return Err(e.into()),
                _ => {}
            }
        }
        let runner = ProjectionRunner::new(
            broker.clone(),
            by_name(name)?,
            store,
            RuntimeConfig {
                fetch_wait: Duration::from_millis(200),
                ..RuntimeConfig::durable(durable(name))
            },
            &metrics,
        );
        let shutdown = trigger.subscribe();
        tasks.push((name, tokio::spawn(runner.run(shutdown))));
    }
    drop(shutdown);
    let total = broker.stream_info(EVENT_STREAM).await?.last_seq;
    let mut progress = Progress::start("consume", Some(total));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut reported = 0;
    loop {
        let mut slowest = u64::MAX;
        let mut caught_up = true;
        for name in READ_MODEL_NAMES {
            match broker.consumer_info(EVENT_STREAM, &durable(name)).await {
                Ok(info) => {
                    slowest = slowest.min(info.ack_floor_stream_seq);
                    caught_up &= info.num_pending == 0 && info.num_ack_pending == 0;
                }
                Err(e) if e.kind() == &ConsumerErrorKind::ConsumerNotFound => {
                    slowest = 0;
                    caught_up = false;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let done = slowest.min(total);
        progress.advance(done.saturating_sub(reported));
        reported = reported.max(done);
        if caught_up || tasks.iter().any(|(_, t)| t.is_finished()) {
            break;
        }
        if Instant::now() > deadline {
            trigger.trigger();
            return Err(CliError::failed(format!(
                "read models did not catch up within {}s",
                args.timeout_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    trigger.trigger();
    let mut reports = Vec::new();
    for (name, task) in tasks {
        let report = task
            .await
            .map_err(|e| CliError::failed(format!("{name} crashed: {e}")))?
            .map_err(|e| CliError::Run(e.context(format!("read model {name}"))))?;
        reports.push((name, report));
    }
    let (_, elapsed) = progress.finish();
    Ok((
        reports,
        Phase {
            name: "consume",
            events: total,
            elapsed,
        },
    ))
}

/// Rebuilds `name` into its shadow up to the live checkpoint; returns the
/// live digest, the rebuilt digest and the events read. The shadow is removed.
async fn verify_rebuild(
    broker: &dyn Broker,
    settings: &Settings,
    name: &'static str,
) -> CliResult<(u64, u64, u64)> {
    let dir = models_dir(&settings.data_dir);
    let (checkpoint, live) = {
        let store = open_store(&dir.join(name), "read model")?;
        (store.checkpoint()?, store.digest()?)
    };
    let _ = std::fs::remove_dir_all(shadow_path(&dir, name));
    let options = RebuildOptions {
        up_to: Some(checkpoint),
        swap: false,
        // Stands in for the demo's durable, whose redrives it applies.
        durable_name: Some(durable(name)),
        ..Default::default()
    };
    let model = by_name(name)?;
    let report = backbone_consumers::rebuild(broker, model.as_ref(), &dir, &options, &mut |_| {})
        .await
        .map_err(|e| CliError::Rebuild(e.context(format!("rebuilding {name}"))))?;
    std::fs::remove_dir_all(shadow_path(&dir, name))?;
    Ok((live, report.digest, checkpoint))
}

/// Sample audit queries, each run through the index and by scanning the log.
async fn sample_audits(
    broker: &dyn Broker,
    settings: &Settings,
    failures: &mut Vec<String>,
) -> CliResult<Vec<(String, usize)>> {
    use crate::commands::audit::AuditArgs;
    let samples = [
        (
            "--key u-1",
            AuditArgs {
                key: Some("u-1".into()),
                ..empty_audit()
            },
        ),
        (
            "--type payment.refunded --where amount_minor>10000",
            AuditArgs {
                event_type: Some("payment.refunded".into()),
                predicates: vec!["amount_minor>10000".into()],
                ..empty_audit()
            },
        ),
        (
            "--source payment-service --where currency=USD",
            AuditArgs {
                source: Some("payment-service".into()),
                predicates: vec!["currency=USD".into()],
                ..empty_audit()
            },
        ),
    ];
    let dir = models_dir(&settings.data_dir);
    let store = open_store(&dir.join("audit"), "audit index")?;
    let mut results = Vec::new();
    for (label, args) in samples {
        let query = Query::from_args(&args)?;
        let lookup = query
            .index_lookup(args.key.as_deref(), args.event_type.as_deref())
            .ok_or_else(|| CliError::failed("sample query without an index lookup"))?;
        let indexed = query.run_indexed(broker, &store, &lookup).await?;
        let scanned = query
            .run(crate::log_source::LogSource::Broker(broker))
            .await?;
        let seqs = |v: &[crate::event_view::EventView]| -> Vec<u64> {
            v.iter().map(|e| e.message.seq).collect()
        };
        if seqs(&indexed) != seqs(&scanned) {
            failures.push(format!(
                "audit {label}: index found {} event(s), log scan {}",
                indexed.len(),
                scanned.len()
            ));
        }
        results.push((label.to_owned(), scanned.len()));
    }
    Ok(results)
}

fn empty_audit() -> crate::commands::audit::AuditArgs {
    crate::commands::audit::AuditArgs {
        key: None,
        event_type: None,
        source: None,
        correlation_id: None,
        since: None,
        until: None,
        predicates: Vec::new(),
        limit: None,
    }
}

fn print_summary(summary: &Value, format: OutputFormat) {
    match format {
        OutputFormat::Table => {
            println!(
                "published {} event(s) ({} duplicate), log ends at seq {}",
                summary["events_published"], summary["duplicates"], summary["log_last_seq"]
            );
            println!("\nphases:");
            for p in summary["phases"].as_array().into_iter().flatten() {
                println!(
                    "  {:<8} {:>8} events  {:>8.2}s  {:>10} events/s",
                    p["phase"].as_str().unwrap_or_default(),
                    p["events"],
                    p["seconds"].as_f64().unwrap_or_default(),
                    p["events_per_second"]
                );
            }
            println!("\nread models:");
            for m in summary["read_models"].as_array().into_iter().flatten() {
                println!(
                    "  {:<14} applied {:>7}  dead-lettered {:>3}  digest {}  rebuild {}",
                    m["read_model"].as_str().unwrap_or_default(),
                    m["applied"],
                    m["dead_lettered"],
                    m["live_digest"].as_str().unwrap_or_default(),
                    if m["verified"] == true {
                        "matches"
                    } else {
                        "DIFFERS"
                    }
                );
            }
            println!("\naudit queries (index and log scan agree):");
            for q in summary["audit_queries"].as_array().into_iter().flatten() {
                println!(
                    "  {:<52} {} match(es)",
                    q["query"].as_str().unwrap_or_default(),
                    q["matches"]
                );
            }
            println!(
                "\ndead letters: {} (poison events published: {})",
                summary["dead_letters"], summary["poison_events"]
            );
            let failures = summary["failures"].as_array().map_or(0, Vec::len);
            if failures == 0 {
                println!("verification: OK");
            } else {
                println!("verification: FAILED");
            }
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(summary).unwrap_or_default()
        ),
        _ => println!("{summary}"),
    }
}
