//! The embedded adapter (sled log, no server): durable batched publish,
//! ordered replay, rebuild, and peak memory of rebuilds as the log grows.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};

use backbone_consumers::{
    ProjectionStore, StoreOptions,
    models::{Audit, AuditQuery as IndexQuery},
    rebuild::{RebuildOptions, apply_log},
};

use super::{
    error::BenchError,
    own_process,
    pipeline::{self, PUBLISH_CHUNK, backbone_error},
    plan::Plan,
    raw_storage,
    report::{AuditQuery, BenchReport, Comparison, Measured, Scenario, Throughput},
    server::FsyncPolicy,
    workload::{Workload, conversation, correlation},
};

/// Target of the embedded adapter's durable batched publish, events/s.
const PUBLISH_TARGET: f64 = 200_000.0;
/// Target of the embedded adapter's ordered replay, events/s.
const REPLAY_TARGET: f64 = 500_000.0;
/// Target of a rebuild, events/s (2-core machine).
const REBUILD_TARGET: f64 = 150_000.0;
/// Target of the audit index build, events/s.
const AUDIT_TARGET: f64 = 100_000.0;
/// Most audit matches returned by one query.
const AUDIT_LIMIT: usize = 100_000;

/// Runs the embedded scenarios in a temporary directory.
pub(crate) async fn run(plan: &Plan, report: &mut BenchReport) -> Result<(), BenchError> {
    let scratch = tempfile::tempdir().map_err(backbone_error)?;
    let broker = open(&scratch.path().join("log")).await?;
    let workload = Workload::new(128);

    let publish = pipeline::publish_typed(broker.as_ref(), &workload, 0, plan.events).await?;
    measured(
        plan,
        report,
        "embedded publish (batched, durable) 128 B",
        publish,
        PUBLISH_TARGET,
    );
    let appended = raw_storage::file_append(scratch.path(), &workload, plan.events, PUBLISH_CHUNK)?;
    compared(plan, report, Scenario::EmbeddedPublish, appended, publish);
    let replay = pipeline::replay(broker.as_ref(), plan.events).await?;
    measured(
        plan,
        report,
        "embedded replay (ordered read)",
        replay,
        REPLAY_TARGET,
    );
    let rebuild = pipeline::rebuild_model(
        broker.as_ref(),
        &scratch.path().join("rebuild"),
        plan.events,
    )
    .await?;
    measured(
        plan,
        report,
        "embedded rebuild read model",
        rebuild,
        REBUILD_TARGET,
    );
    let written = raw_storage::sled_writes(
        scratch.path(),
        plan.events,
        RebuildOptions::default().batch_size as u64,
        StoreOptions::default().cache_capacity,
    )?;
    compared(plan, report, Scenario::EmbeddedRebuild, written, rebuild);
    let without_dedup = pipeline::rebuild_model_with(
        broker.as_ref(),
        &scratch.path().join("rebuild-without-dedup"),
        plan.events,
        &RebuildOptions {
            dedup_horizon: Duration::ZERO,
            ..Default::default()
        },
    )
    .await?;
    compared(plan, report, Scenario::DedupCost, without_dedup, rebuild);

    let mut logged = plan.events;
    let mut broker = broker;
    let log = scratch.path().join("log");
    for (i, &size) in plan.memory_log_sizes.iter().enumerate() {
        if size > logged {
            pipeline::publish_typed(broker.as_ref(), &workload, logged, size - logged).await?;
            logged = size;
        }
        // The child opens the log: this process lets go of it meanwhile.
        broker.close().await.map_err(backbone_error)?;
        drop(broker);
        let point = own_process::measure(&log, &scratch.path().join(format!("memory-{i}")))?;
        broker = open(&log).await?;
        plan.progress(&format!(
            "rebuild of {} events in its own process: peak RSS {:.1} MiB (after opening the log {:.1} MiB), {:.0} ev/s",
            point.log_events,
            point.peak_rss_mib,
            point.rss_before_mib,
            point.throughput.events_per_sec
        ));
        report.rebuild_memory.push(point);
    }
    audit_queries(
        plan,
        broker.as_ref(),
        &scratch.path().join("audit"),
        logged,
        report,
    )
    .await?;
    broker.close().await.map_err(backbone_error)?;
    Ok(())
}

/// Builds the audit index over the whole log, then times a key and a
/// correlation query on it.
async fn audit_queries(
    plan: &Plan,
    broker: &dyn Broker,
    dir: &Path,
    logged: u64,
    report: &mut BenchReport,
) -> Result<(), BenchError> {
    let store = ProjectionStore::open(dir).map_err(backbone_error)?;
    let started = Instant::now();
    let built = apply_log(
        broker,
        &Audit,
        &store,
        &RebuildOptions::default(),
        &mut |_| {},
    )
    .await
    .map_err(backbone_error)?;
    let build = Throughput::new(built.applied, started.elapsed());
    measured(
        plan,
        report,
        "embedded audit index build",
        build,
        AUDIT_TARGET,
    );
    let middle = logged / 2;
    let queries = [
        ("key", IndexQuery::Key(conversation(middle))),
        ("correlation", IndexQuery::Correlation(correlation(middle))),
    ];
    for (name, query) in queries {
        let started = Instant::now();
        let matches = Audit::query(&store, &query, AUDIT_LIMIT).map_err(backbone_error)?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        plan.progress(&format!(
            "audit {name} query: {} matches in {millis:.2} ms",
            matches.len()
        ));
        report.audit.push(AuditQuery {
            query: name.to_owned(),
            log_events: logged,
            matches: matches.len() as u64,
            millis,
        });
    }
    Ok(())
}

pub(crate) fn measured(
    plan: &Plan,
    report: &mut BenchReport,
    name: &str,
    throughput: Throughput,
    target: f64,
) {
    plan.progress(&format!(
        "{name}: {:.0} ev/s (target {target:.0})",
        throughput.events_per_sec
    ));
    report.throughputs.push(Measured {
        name: name.to_owned(),
        throughput,
        target_events_per_sec: target,
    });
}

pub(crate) fn compared(
    plan: &Plan,
    report: &mut BenchReport,
    scenario: Scenario,
    raw: Throughput,
    backbone: Throughput,
) {
    let comparison = Comparison::new(scenario, FsyncPolicy::EmbeddedGroupCommit, raw, backbone);
    plan.progress(&format!(
        "{}: raw {:.0} ev/s, Backbone {:.0} ev/s, {:.2}x (target {:.2}x)",
        comparison.label(),
        raw.events_per_sec,
        backbone.events_per_sec,
        comparison.ratio,
        comparison.target_ratio
    ));
    report.comparisons.push(comparison);
}

/// Opens an embedded log at `dir` with the event stream provisioned.
/// The embedded log in `dir`, with the event stream.
pub(crate) async fn open(dir: &Path) -> Result<Arc<dyn Broker>, BenchError> {
    let options = EmbeddedOptions {
        path: dir.to_path_buf(),
        ..Default::default()
    };
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::open(options).map_err(backbone_error)?);
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .map_err(backbone_error)?;
    Ok(broker)
}
