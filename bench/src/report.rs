//! What a benchmark run measured, as written to `results.json`, and its
//! Markdown rendering for `docs/benchmarks.md`.

use std::{fmt::Write as _, time::Duration};

use serde::Serialize;

use super::{machine::Machine, server::FsyncPolicy};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchReport {
    /// Where and with what it ran.
    pub(crate) machine: Machine,
    /// The counts and rates used.
    pub(crate) settings: Settings,
    /// Backbone against the raw client, scenario by scenario.
    pub(crate) comparisons: Vec<Comparison>,
    /// Open-loop end-to-end latencies.
    pub(crate) latencies: Vec<Latency>,
    /// Throughputs without a raw counterpart (the embedded adapter).
    pub(crate) throughputs: Vec<Measured>,
    /// Peak resident memory of rebuilds of growing logs.
    pub(crate) rebuild_memory: Vec<MemoryPoint>,
    /// Audit index query latencies.
    pub(crate) audit: Vec<AuditQuery>,
    /// The nats-server spawned for each fsync policy (empty with an
    /// external server).
    pub(crate) servers: Vec<ServerUsed>,
    /// Scenarios not run, and why.
    pub(crate) skipped: Vec<Skipped>,
    /// Wall-clock length of the whole run, in seconds.
    pub(crate) total_seconds: f64,
}

/// The counts and rates a run used.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// Smoke mode: small counts, figures not meaningful.
    pub(crate) quick: bool,
    /// Events per throughput scenario.
    pub(crate) events: u64,
    /// Publishes in flight at once, raw and Backbone.
    pub(crate) window: usize,
    /// Payload sizes published, in bytes.
    pub(crate) payload_sizes: Vec<usize>,
    /// Open-loop rates, events per second.
    pub(crate) latency_rates: Vec<u64>,
    /// Seconds per open-loop rate.
    pub(crate) latency_seconds: f64,
    /// Log sizes of the memory scenario.
    pub(crate) memory_log_sizes: Vec<u64>,
}

/// Events over time.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Throughput {
    /// Events processed.
    pub(crate) events: u64,
    /// Seconds taken.
    pub(crate) seconds: f64,
    /// `events / seconds`.
    pub(crate) events_per_sec: f64,
}

impl Throughput {
    /// `events` processed in `elapsed`.
    pub(crate) fn new(events: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            events,
            seconds,
            events_per_sec: events as f64 / seconds,
        }
    }
}

/// The scenarios measured against the raw client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Scenario {
    /// Publish with pipelined acks, against a raw publish of subject and
    /// payload only.
    Publish,
    /// Publish with pipelined acks, against a raw publish of the same
    /// enveloped message: same headers, payload and work per event.
    PublishLikeForLike,
    /// Consume into a sled read model with checkpoint, against pull + ack.
    ConsumeApply,
    /// Rebuild a read model from the log, against an ordered-consumer read.
    Rebuild,
    /// Embedded durable batched publish, against appending the same bytes
    /// to a file with the same group commit.
    EmbeddedPublish,
    /// Embedded rebuild of a read model, against raw sled applying the same
    /// writes in the same groups.
    EmbeddedRebuild,
    /// Embedded rebuild with the default dedup horizon (every applied
    /// `ce-id` remembered), against the same rebuild with the horizon off:
    /// the cost of idempotency beyond the broker's duplicate window.
    DedupCost,
    /// One event per HTTP request to `backbone-server` on the embedded
    /// log, against publishing the same messages in-process one at a time,
    /// the same number in flight.
    HttpPublish,
    /// Batches of 100 structured CloudEvents per HTTP request, against
    /// in-process batches of 100.
    HttpPublishBatch,
    /// Signed payment-provider deliveries, one payment each, verified and
    /// mapped by the `payment-provider` webhook, against in-process publish
    /// one at a time.
    WebhookIngest,
    /// The outbound bridge to RabbitMQ (embedded log -> exchange, confirms),
    /// against lapin publishing the same messages with confirms.
    BridgeOutRabbitmq,
    /// The inbound bridge from a RabbitMQ queue into the embedded log,
    /// against lapin taking and acking the same messages.
    BridgeInRabbitmq,
    /// The outbound bridge to a Redis stream, against pipelined `XADD`s of
    /// the same entries.
    BridgeOutRedis,
    /// The inbound bridge from a Redis stream consumer group into the
    /// embedded log, against `XREADGROUP` + `XACK` of the same entries.
    BridgeInRedis,
    /// The outbound AMQP 1.0 bridge (RabbitMQ's plugin), against
    /// `fe2o3-amqp` sending the same messages, each settled.
    BridgeOutAmqp1,
    /// The inbound AMQP 1.0 bridge from a queue into the embedded log,
    /// against `fe2o3-amqp` receiving and accepting the same messages.
    BridgeInAmqp1,
}

impl Scenario {
    /// The ratio Backbone aims for.
    pub(crate) fn target_ratio(self) -> f64 {
        match self {
            Self::Publish => 0.75,
            Self::PublishLikeForLike => 0.9,
            Self::ConsumeApply => 0.8,
            Self::Rebuild => 0.8,
            Self::EmbeddedPublish | Self::EmbeddedRebuild => 0.5,
            Self::DedupCost => 0.9,
            Self::HttpPublish => 0.25,
            Self::HttpPublishBatch => 0.5,
            Self::WebhookIngest => 0.25,
            Self::BridgeOutRabbitmq | Self::BridgeOutRedis | Self::BridgeOutAmqp1 => 0.5,
            Self::BridgeInRabbitmq | Self::BridgeInRedis | Self::BridgeInAmqp1 => 0.3,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish (pipelined acks) vs raw without headers",
            Self::PublishLikeForLike => "publish (pipelined acks) vs raw like-for-like",
            Self::ConsumeApply => "consume -> read model",
            Self::Rebuild => "rebuild read model",
            Self::EmbeddedPublish => "embedded publish vs raw file append",
            Self::EmbeddedRebuild => "embedded rebuild vs raw sled",
            Self::DedupCost => "embedded rebuild with dedup horizon vs without",
            Self::HttpPublish => "HTTP publish (one event per request) vs in-process",
            Self::HttpPublishBatch => "HTTP publish (batches of 100) vs in-process",
            Self::WebhookIngest => "webhook ingest (signed, mapped, one event each) vs in-process",
            Self::BridgeOutRabbitmq => "bridge log -> RabbitMQ vs lapin publish with confirms",
            Self::BridgeInRabbitmq => "bridge RabbitMQ -> log vs lapin consume + ack",
            Self::BridgeOutRedis => "bridge log -> Redis stream vs pipelined XADD",
            Self::BridgeInRedis => "bridge Redis stream -> log vs XREADGROUP + XACK",
            Self::BridgeOutAmqp1 => "bridge log -> AMQP 1.0 vs fe2o3 send, settled",
            Self::BridgeInAmqp1 => "bridge AMQP 1.0 -> log vs fe2o3 receive + accept",
        }
    }
}

/// Backbone and the raw client on the same work, same server, same run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// What was measured.
    pub(crate) scenario: Scenario,
    /// The server's fsync policy.
    pub(crate) fsync: FsyncPolicy,
    /// Payload size in bytes, for publish.
    pub(crate) payload_bytes: Option<usize>,
    /// Publishes in flight, for publish.
    pub(crate) window: Option<usize>,
    /// The raw async-nats baseline.
    pub(crate) raw: Throughput,
    /// Backbone.
    pub(crate) backbone: Throughput,
    /// `backbone / raw` events per second.
    pub(crate) ratio: f64,
    /// The ratio aimed for.
    pub(crate) target_ratio: f64,
}

impl Comparison {
    /// Compares `backbone` with `raw` for `scenario`.
    pub(crate) fn new(
        scenario: Scenario,
        fsync: FsyncPolicy,
        raw: Throughput,
        backbone: Throughput,
    ) -> Self {
        Self {
            scenario,
            fsync,
            payload_bytes: None,
            window: None,
            raw,
            backbone,
            ratio: backbone.events_per_sec / raw.events_per_sec.max(1e-9),
            target_ratio: scenario.target_ratio(),
        }
    }

    /// A short label for tables and plots.
    pub(crate) fn label(&self) -> String {
        let mut label = self.scenario.label().to_owned();
        if let Some(size) = self.payload_bytes {
            let _ = write!(label, " {size} B");
        }
        label
    }
}

/// Open-loop latency at one rate, from scheduled send to observed effect.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    /// `backbone` (publish -> read model applied) or `raw` (publish -> pulled).
    pub(crate) path: &'static str,
    /// The server's fsync policy.
    pub(crate) fsync: FsyncPolicy,
    /// Scheduled events per second.
    pub(crate) rate_per_sec: u64,
    /// Events measured.
    pub(crate) samples: u64,
    /// Median, microseconds.
    pub(crate) p50_us: u64,
    /// 99th percentile, microseconds.
    pub(crate) p99_us: u64,
    /// 99.9th percentile, microseconds.
    pub(crate) p999_us: u64,
    /// Worst, microseconds.
    pub(crate) max_us: u64,
}

/// A throughput with a target in events per second.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measured {
    /// What was measured.
    pub(crate) name: String,
    /// The figure.
    pub(crate) throughput: Throughput,
    /// The target, events per second.
    pub(crate) target_events_per_sec: f64,
}

/// Peak resident memory while rebuilding a log of some size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryPoint {
    /// Which log was rebuilt.
    pub(crate) source: String,
    /// Events in the log.
    pub(crate) log_events: u64,
    /// Resident set of the rebuild process once the log is open, before the rebuild, MiB.
    pub(crate) rss_before_mib: f64,
    /// Peak resident set during the rebuild (VmHWM), MiB.
    pub(crate) peak_rss_mib: f64,
    /// How fast the rebuild went.
    pub(crate) throughput: Throughput,
}

/// One audit index query over a large log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AuditQuery {
    /// `key` or `correlation`.
    pub(crate) query: String,
    /// Events in the log.
    pub(crate) log_events: u64,
    /// Matches returned.
    pub(crate) matches: u64,
    /// Query time, milliseconds.
    pub(crate) millis: f64,
}

/// The nats-server binary one fsync policy's figures come from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerUsed {
    /// The policy.
    pub(crate) fsync: FsyncPolicy,
    /// The binary spawned.
    pub(crate) binary: String,
    /// Its `--version`.
    pub(crate) version: String,
}

/// A scenario that did not run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Skipped {
    /// Which.
    pub(crate) scenario: String,
    /// Why, in the words of the component that refused.
    pub(crate) reason: String,
}

impl BenchReport {
    /// A report with no figures yet.
    pub(crate) fn empty(machine: Machine, settings: Settings) -> Self {
        Self {
            machine,
            settings,
            comparisons: Vec::new(),
            latencies: Vec::new(),
            throughputs: Vec::new(),
            rebuild_memory: Vec::new(),
            audit: Vec::new(),
            servers: Vec::new(),
            skipped: Vec::new(),
            total_seconds: 0.0,
        }
    }

    /// Tables of every figure, for `docs/benchmarks.md`.
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Machine: {} x {}, {:.1} GiB RAM, Linux {}; {}; nats-server {}; async-nats {}; {}.\n",
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            m.rustc,
            m.nats_server,
            m.async_nats,
            m.profile
        );
        if let Some(load) = m.load {
            let _ = writeln!(
                md,
                "Load: {:.1} % of CPU time stolen by the hypervisor over the run; load average {:.2} at its end.\n",
                load.steal_percent, load.load_average_at_end
            );
        }
        if !self.servers.is_empty() {
            let servers: Vec<String> = self
                .servers
                .iter()
                .map(|s| {
                    format!(
                        "fsync `{}`: nats-server {} (`{}`)",
                        s.fsync, s.version, s.binary
                    )
                })
                .collect();
            let _ = writeln!(md, "Servers: {}.\n", servers.join("; "));
        }
        md.push_str("| scenario | fsync | raw ev/s | Backbone ev/s | ratio | target |\n");
        md.push_str("|---|---|---:|---:|---:|---:|\n");
        for c in &self.comparisons {
            let window = c
                .window
                .map(|w| format!(", window {w}"))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| {}{} | {} | {:.0} | {:.0} | {:.2}x | {} {}x |",
                c.label(),
                window,
                c.fsync,
                c.raw.events_per_sec,
                c.backbone.events_per_sec,
                c.ratio,
                mark(c.ratio >= c.target_ratio),
                c.target_ratio
            );
        }
        if !self.latencies.is_empty() {
            md.push_str("\n| latency path | fsync | rate/s | samples | p50 ms | p99 ms | p99.9 ms | max ms |\n");
            md.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
            for l in &self.latencies {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    l.path,
                    l.fsync,
                    l.rate_per_sec,
                    l.samples,
                    ms(l.p50_us),
                    ms(l.p99_us),
                    ms(l.p999_us),
                    ms(l.max_us)
                );
            }
        }
        if !self.throughputs.is_empty() {
            md.push_str("\n| throughput | events | ev/s | target ev/s |\n|---|---:|---:|---:|\n");
            for t in &self.throughputs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} {:.0} |",
                    t.name,
                    t.throughput.events,
                    t.throughput.events_per_sec,
                    mark(t.throughput.events_per_sec >= t.target_events_per_sec),
                    t.target_events_per_sec
                );
            }
        }
        if !self.rebuild_memory.is_empty() {
            md.push_str(
                "\n| rebuild memory | log events | RSS with the log open MiB | peak RSS MiB | ev/s |\n",
            );
            md.push_str("|---|---:|---:|---:|---:|\n");
            for p in &self.rebuild_memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.1} | {:.0} |",
                    p.source,
                    p.log_events,
                    p.rss_before_mib,
                    p.peak_rss_mib,
                    p.throughput.events_per_sec
                );
            }
        }
        if !self.audit.is_empty() {
            md.push_str("\n| audit query | log events | matches | ms |\n|---|---:|---:|---:|\n");
            for a in &self.audit {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2} |",
                    a.query, a.log_events, a.matches, a.millis
                );
            }
        }
        for s in &self.skipped {
            let _ = writeln!(md, "\nSkipped {}: {}", s.scenario, s.reason);
        }
        md
    }
}

fn mark(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
