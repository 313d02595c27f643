//! The JetStream scenarios against one server: Backbone's JetStream adapter
//! and the raw client take turns on the same work.

use std::sync::Arc;

use backbone_broker::{
    Broker, StreamConfig,
    jetstream::{JetStreamBroker, JetStreamOptions},
    stream::EVENT_STREAM,
};

use super::{
    error::{BenchError, BenchErrorKind},
    pipeline::{self, backbone_error},
    plan::Plan,
    raw::RawClient,
    report::{BenchReport, Comparison, Scenario, Skipped},
    server::FsyncPolicy,
    workload::Workload,
};

/// Runs publish, consume, rebuild and latency against the server at `url`.
pub(crate) async fn run(
    plan: &Plan,
    url: &str,
    fsync: FsyncPolicy,
    report: &mut BenchReport,
) -> Result<(), BenchError> {
    plan.progress(&format!("JetStream at {url}, fsync {fsync}"));
    let raw = RawClient::connect(url).await?;
    let broker = connect_backbone(url, plan.window).await?;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .map_err(backbone_error)?;
    let scratch = tempfile::tempdir().map_err(backbone_error)?;
    let deadline = plan.deadline();

    let mut published = 0;
    for &size in &plan.payload_sizes {
        let workload = Workload::new(size);
        let raw_figure = raw.publish(&workload, plan.events, plan.window).await?;
        let like_for_like = raw
            .publish_like_for_like(&workload, plan.events, plan.window)
            .await?;
        let backbone_figure =
            pipeline::publish_typed(broker.as_ref(), &workload, published, plan.events).await?;
        published += plan.events;
        for (scenario, raw_figure) in [
            (Scenario::Publish, raw_figure),
            (Scenario::PublishLikeForLike, like_for_like),
        ] {
            let mut comparison = Comparison::new(scenario, fsync, raw_figure, backbone_figure);
            comparison.payload_bytes = Some(size);
            comparison.window = Some(plan.window);
            record(plan, report, comparison);
        }
    }

    let raw_figure = raw
        .consume_and_ack(EVENT_STREAM, "bench-raw-consume", published, deadline)
        .await?;
    let backbone_figure = pipeline::consume_into_model(
        broker.clone(),
        &scratch.path().join("consume"),
        "bench-consume",
        published,
        deadline,
    )
    .await?;
    record(
        plan,
        report,
        Comparison::new(Scenario::ConsumeApply, fsync, raw_figure, backbone_figure),
    );

    let raw_figure = raw.ordered_read(EVENT_STREAM, published, deadline).await?;
    let backbone_figure =
        pipeline::rebuild_model(broker.as_ref(), &scratch.path().join("rebuild"), published)
            .await?;
    record(
        plan,
        report,
        Comparison::new(Scenario::Rebuild, fsync, raw_figure, backbone_figure),
    );

    for &rate in &plan.latency_rates {
        let events = plan.latency_events(rate);
        let durable = format!("bench-latency-{rate}");
        let measured = async {
            let backbone = pipeline::end_to_end_latency(
                broker.clone(),
                &scratch.path().join(&durable),
                &durable,
                rate,
                events,
            )
            .await?;
            let raw_latency = raw
                .latency(&format!("bench-raw-latency-{rate}"), rate, events)
                .await?;
            Ok::<_, BenchError>((backbone, raw_latency))
        }
        .await;
        let (backbone, raw_latency) = match measured {
            Ok((backbone, raw_latency)) => (
                backbone.summary("backbone", fsync, rate),
                raw_latency.summary("raw", fsync, rate),
            ),
            // A server that cannot sustain the rate (`sync_interval: always`
            // at 20k/s) saturates: record it, and skip the higher rates,
            // rather than lose the rest of the run.
            Err(e) if matches!(e.kind(), BenchErrorKind::Incomplete { .. }) => {
                plan.progress(&format!("latency at {rate}/s [{fsync}] saturated: {e}"));
                report.skipped.push(Skipped {
                    scenario: format!("latency at {rate}/s and above with fsync `{fsync}`"),
                    reason: format!("the server saturated: {e}"),
                });
                break;
            }
            Err(e) => return Err(e),
        };
        for latency in [backbone, raw_latency] {
            plan.progress(&format!(
                "latency {} at {rate}/s: p50 {} us, p99 {} us, p99.9 {} us",
                latency.path, latency.p50_us, latency.p99_us, latency.p999_us
            ));
            report.latencies.push(latency);
        }
    }
    broker.close().await.map_err(backbone_error)?;
    Ok(())
}

fn record(plan: &Plan, report: &mut BenchReport, comparison: Comparison) {
    plan.progress(&format!(
        "{} [{}]: raw {:.0} ev/s, Backbone {:.0} ev/s, ratio {:.2}",
        comparison.label(),
        comparison.fsync,
        comparison.raw.events_per_sec,
        comparison.backbone.events_per_sec,
        comparison.ratio
    ));
    report.comparisons.push(comparison);
}

/// Backbone's JetStream adapter on `url`, with `window` publishes in flight.
async fn connect_backbone(url: &str, window: usize) -> Result<Arc<dyn Broker>, BenchError> {
    let options = JetStreamOptions {
        urls: vec![url.to_owned()],
        name: Some("backbone-bench".into()),
        max_in_flight: window,
        ..Default::default()
    };
    let broker = JetStreamBroker::connect(options)
        .await
        .map_err(backbone_error)?;
    Ok(Arc::new(broker))
}
