//! The benchmark harness in quick mode against spawned nats-servers: every
//! scenario runs end to end and writes its results, so the harness never
//! rots. Speed is not asserted.

use clap::Parser;

use super::report::Scenario;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: super::BenchArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_run_measures_every_scenario_and_writes_results() {
    let out = tempfile::tempdir().unwrap();
    let cli = Cli::parse_from([
        "bench".as_ref(),
        "--quick".as_ref(),
        "--out-dir".as_ref(),
        out.path().as_os_str(),
    ]);
    let report = super::run(&cli.bench).await.unwrap();

    assert!(report.settings.quick);
    let scenarios: Vec<_> = report.comparisons.iter().map(|c| c.scenario).collect();
    for scenario in [
        Scenario::Publish,
        Scenario::PublishLikeForLike,
        Scenario::ConsumeApply,
        Scenario::Rebuild,
        Scenario::EmbeddedPublish,
        Scenario::EmbeddedRebuild,
        Scenario::DedupCost,
        Scenario::HttpPublish,
        Scenario::HttpPublishBatch,
        Scenario::WebhookIngest,
        Scenario::BridgeOutRabbitmq,
        Scenario::BridgeInRabbitmq,
        Scenario::BridgeOutRedis,
        Scenario::BridgeInRedis,
        Scenario::BridgeOutAmqp1,
        Scenario::BridgeInAmqp1,
    ] {
        assert!(
            scenarios.contains(&scenario),
            "{scenario:?} missing: {scenarios:?}"
        );
    }
    assert!(
        report
            .comparisons
            .iter()
            .all(|c| c.raw.events > 0 && c.backbone.events > 0)
    );
    let http_latency = 2;
    assert_eq!(
        report.latencies.len(),
        http_latency
            + 2 * 3
                * report
                    .comparisons
                    .iter()
                    .filter(|c| c.scenario == Scenario::Rebuild)
                    .count()
    );
    // Embedded publish, replay, rebuild, audit index; HTTP single; the
    // six bridge directions.
    assert_eq!(report.throughputs.len(), 5 + 6);
    assert_eq!(report.audit.len(), 2);
    assert!(
        report.audit.iter().all(|a| a.matches > 0),
        "{:?}",
        report.audit
    );
    assert_eq!(report.rebuild_memory.len(), 3);
    assert_eq!(report.servers.len(), 2, "{:?}", report.servers);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(json["settings"]["quick"], true);
    let svg = std::fs::read_to_string(out.path().join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(
        std::fs::read_to_string(out.path().join("results.md"))
            .unwrap()
            .contains("| scenario |")
    );
}
