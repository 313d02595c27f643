//! Publishing over HTTP: the `backbone-server` binary on the embedded log,
//! a process of its own, against publishing the same messages into the
//! same kind of log in this process, with the same number in flight; and
//! webhook ingest (signed payment-provider deliveries, verified and
//! mapped) against the same in-process baseline.
//!
//! The HTTP client (the load generator) runs in this process, on the same
//! cores as the server: on a small machine its CPU counts against the
//! server, so the figures are a floor.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{Broker, OutboundMessage};
use base64::Engine as _;
use futures::{StreamExt as _, stream};
use hmac::{Hmac, Mac as _};
use reqwest::Client;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    embedded,
    error::{BenchError, BenchErrorKind},
    latency::{Recorder, Schedule},
    pipeline::backbone_error,
    plan::Plan,
    report::{BenchReport, Scenario, Throughput},
    server::FsyncPolicy,
    workload::Workload,
};

/// Requests in flight, HTTP and in-process alike.
const IN_FLIGHT: usize = 64;
/// Events per batch request.
const BATCH: usize = 100;
/// Target of single-event HTTP publish, events/s.
const SINGLE_TARGET: f64 = 10_000.0;
/// The webhook's signing secret.
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
/// The open-loop rate whose p99 is the latency target.
const LATENCY_RATE: u64 = 5_000;

/// Runs the HTTP publish scenarios.
pub(crate) async fn run(plan: &Plan, report: &mut BenchReport) -> Result<(), BenchError> {
    let events = (plan.events / 4).max(BATCH as u64);
    let workload = Workload::new(128);
    let messages: Vec<OutboundMessage> = (0..events).map(|n| workload.typed_message(n)).collect();

    let raw_dir = tempfile::tempdir().map_err(backbone_error)?;
    let raw_broker = embedded::open(&raw_dir.path().join("log")).await?;
    let raw_single = in_process_single(raw_broker.as_ref(), &messages).await?;
    let raw_batch =
        in_process_batches(raw_broker.as_ref(), &messages_again(&workload, events)).await?;

    let server = HttpServer::start().await?;
    let single = server.publish_single(&messages).await?;
    embedded::compared(plan, report, Scenario::HttpPublish, raw_single, single);
    embedded::measured(
        plan,
        report,
        "HTTP publish, one event per request",
        single,
        SINGLE_TARGET,
    );
    let batch = server
        .publish_batches(&messages_again(&workload, events))
        .await?;
    embedded::compared(plan, report, Scenario::HttpPublishBatch, raw_batch, batch);
    let webhooks = server.ingest_webhooks(events).await?;
    embedded::compared(plan, report, Scenario::WebhookIngest, raw_single, webhooks);

    let latency_events = plan.latency_events(LATENCY_RATE);
    let in_process =
        in_process_open_loop(raw_broker.clone(), &workload, latency_events, events * 4).await?;
    report.latencies.push(in_process.summary(
        "in-process publish -> ack",
        FsyncPolicy::EmbeddedGroupCommit,
        LATENCY_RATE,
    ));
    let latency = server
        .open_loop(&workload, LATENCY_RATE, latency_events, events * 2)
        .await?;
    let summary = latency.summary(
        "http publish -> 201",
        FsyncPolicy::EmbeddedGroupCommit,
        LATENCY_RATE,
    );
    plan.progress(&format!(
        "HTTP publish at {LATENCY_RATE}/s: p50 {:.2} ms, p99 {:.2} ms (target p99 <= 10 ms)",
        summary.p50_us as f64 / 1000.0,
        summary.p99_us as f64 / 1000.0
    ));
    report.latencies.push(summary);
    server.stop().await
}

/// The same events again with fresh ids, so the broker does not drop them as
/// duplicates of the first pass.
fn messages_again(workload: &Workload, events: u64) -> Vec<OutboundMessage> {
    (events..2 * events)
        .map(|n| workload.typed_message(n))
        .collect()
}

/// The open-loop baseline: the same events published in-process when due,
/// timed until the log acknowledges them.
async fn in_process_open_loop(
    broker: Arc<dyn Broker>,
    workload: &Workload,
    count: u64,
    first: u64,
) -> Result<Recorder, BenchError> {
    let schedule = Schedule::new(LATENCY_RATE);
    let recorder = Recorder::new(schedule)?;
    let mut tasks = tokio::task::JoinSet::new();
    schedule
        .drive(count, |n| {
            let (broker, recorder) = (broker.clone(), recorder.clone());
            let message = workload.typed_message(first + n);
            tasks.spawn(async move {
                if broker.publish(message).await.is_ok() {
                    recorder.observed(n);
                }
            });
        })
        .await;
    while tasks.join_next().await.is_some() {}
    if recorder.count() < count {
        return Err(BenchError::new(BenchErrorKind::Incomplete {
            expected: count,
            seen: recorder.count(),
        }));
    }
    Ok(recorder)
}

async fn in_process_single(
    broker: &dyn Broker,
    messages: &[OutboundMessage],
) -> Result<Throughput, BenchError> {
    let started = Instant::now();
    let mut results = stream::iter(messages.iter().cloned())
        .map(|m| broker.publish(m))
        .buffer_unordered(IN_FLIGHT);
    while let Some(result) = results.next().await {
        result.map_err(backbone_error)?;
    }
    Ok(Throughput::new(messages.len() as u64, started.elapsed()))
}

async fn in_process_batches(
    broker: &dyn Broker,
    messages: &[OutboundMessage],
) -> Result<Throughput, BenchError> {
    let started = Instant::now();
    let mut results = stream::iter(messages.chunks(BATCH))
        .map(|chunk| broker.publish_batch(chunk.to_vec()))
        .buffer_unordered(IN_FLIGHT / 4);
    while let Some(batch) = results.next().await {
        for result in batch {
            result.map_err(backbone_error)?;
        }
    }
    Ok(Throughput::new(messages.len() as u64, started.elapsed()))
}

/// `backbone-server` (the release binary beside this one, a process of its
/// own as in production) on a fresh embedded log, publishing only (no read
/// model competes for the CPU).
struct HttpServer {
    base: String,
    url: String,
    client: Client,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

/// The `backbone-server` binary of the same build as this one: beside it
/// (`target/release/`, as `scripts/bench` builds both), or one directory up
/// when this is a test binary in `target/<profile>/deps/`.
fn server_binary() -> Result<std::path::PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(backbone_error)?;
    let beside = exe.with_file_name("backbone-server");
    let above = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("backbone-server"));
    [Some(beside.clone()), above]
        .into_iter()
        .flatten()
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            BenchError::with_detail(
                BenchErrorKind::Backbone,
                format!(
                    "{} is missing: build it with `cargo build --release -p backbone-server` \
                     (scripts/bench does)",
                    beside.display()
                ),
            )
        })
}

impl HttpServer {
    async fn start() -> Result<Self, BenchError> {
        let dir = tempfile::tempdir().map_err(backbone_error)?;
        let secret = dir.path().join("webhook.secret");
        std::fs::write(&secret, WEBHOOK_SECRET).map_err(backbone_error)?;
        let data = dir.path().join("data");
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\nmodels = []\n[http]\nlisten = \"127.0.0.1:0\"\nmax_in_flight = 4096\n\
                 [[webhooks]]\nname = \"payments\"\nmapping = \"payment-provider\"\nsecret_file = {secret:?}\n"
            ),
        )
        .map_err(backbone_error)?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).map_err(backbone_error)?;
        let mut child = std::process::Command::new(server_binary()?)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(backbone_error)?;
        // The server names its address in the discovery file once it serves.
        let discovery = data.join(backbone_server::DISCOVERY_FILE);
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            if let Ok(text) = std::fs::read_to_string(&discovery)
                && let Ok(file) = serde_json::from_str::<Value>(&text)
                && let Some(url) = file["url"].as_str()
            {
                break url.to_owned();
            }
            let exited = child.try_wait().map_err(backbone_error)?;
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(BenchError::with_detail(
                    BenchErrorKind::Backbone,
                    format!("backbone-server did not start ({exited:?}): {log}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let url = format!("{base}/v1/events");
        let client = Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .map_err(backbone_error)?;
        Ok(Self {
            base,
            url,
            client,
            child,
            _dir: dir,
        })
    }

    /// A binary-mode request carrying `message`'s attributes as `ce-*`
    /// headers and its protobuf payload as the body.
    fn binary(&self, message: &OutboundMessage) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/protobuf");
        for (name, value) in message.headers.iter() {
            if name.starts_with("ce-") || name == "traceparent" {
                request = request.header(name, value);
            }
        }
        request.body(message.payload.clone())
    }

    async fn send(request: reqwest::RequestBuilder) -> Result<(), BenchError> {
        let response = request.send().await.map_err(backbone_error)?;
        if response.status().is_success() {
            Ok(())
        } else {
            let detail = format!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            Err(BenchError::with_detail(BenchErrorKind::Backbone, detail))
        }
    }

    async fn publish_single(&self, messages: &[OutboundMessage]) -> Result<Throughput, BenchError> {
        let started = Instant::now();
        let mut results = stream::iter(messages)
            .map(|m| Self::send(self.binary(m)))
            .buffer_unordered(IN_FLIGHT);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(Throughput::new(messages.len() as u64, started.elapsed()))
    }

    async fn publish_batches(
        &self,
        messages: &[OutboundMessage],
    ) -> Result<Throughput, BenchError> {
        let bodies: Vec<String> = messages
            .chunks(BATCH)
            .map(|chunk| Value::Array(chunk.iter().map(structured).collect()).to_string())
            .collect();
        let started = Instant::now();
        let mut results = stream::iter(bodies)
            .map(|body| {
                Self::send(
                    self.client
                        .post(&self.url)
                        .header("content-type", "application/cloudevents-batch+json")
                        .body(body),
                )
            })
            .buffer_unordered(IN_FLIGHT / 4);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(Throughput::new(messages.len() as u64, started.elapsed()))
    }

    /// `count` signed payment-provider deliveries of one payment each, to
    /// the `payment-provider` webhook.
    async fn ingest_webhooks(&self, count: u64) -> Result<Throughput, BenchError> {
        let url = format!("{}/v1/webhooks/payments", self.base);
        let deliveries: Vec<(String, String)> = (0..count)
            .map(|n| {
                let body = json!({"id": format!("evt_{n:012}"), "type": "payment.succeeded", "created": 1764756000,
                    "data": {"id": format!("pi_{n}"), "payment_id": format!("pay-{n}"), "amount": 1999, "currency": "EUR",
                             "metadata": {"user_id": format!("u-{}", n % 1000), "sku": "pack-40"}}})
                .to_string();
                let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("any key length");
                mac.update(body.as_bytes());
                (format!("sha256={}", hex::encode(mac.finalize().into_bytes())), body)
            })
            .collect();
        let started = Instant::now();
        let mut results = stream::iter(deliveries)
            .map(|(signature, body)| {
                Self::send(
                    self.client
                        .post(&url)
                        .header("x-signature", signature)
                        .body(body),
                )
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(Throughput::new(count, started.elapsed()))
    }

    /// Open loop at `rate`: each request is sent when due, and timed from
    /// its scheduled send until its 201 arrives.
    async fn open_loop(
        &self,
        workload: &Workload,
        rate: u64,
        count: u64,
        first: u64,
    ) -> Result<Recorder, BenchError> {
        let schedule = Schedule::new(rate);
        let recorder = Recorder::new(schedule)?;
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        schedule
            .drive(count, |n| {
                let request = self.binary(&workload.typed_message(first + n));
                let (recorder, failures) = (recorder.clone(), failures.clone());
                tasks.spawn(async move {
                    match Self::send(request).await {
                        Ok(()) => recorder.observed(n),
                        Err(_) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            })
            .await;
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
        if drained.is_err() || failed > 0 {
            return Err(BenchError::new(BenchErrorKind::Incomplete {
                expected: count,
                seen: recorder.count(),
            }));
        }
        Ok(recorder)
    }

    /// SIGTERM, and the exit status of a clean stop.
    async fn stop(mut self) -> Result<(), BenchError> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .map_err(backbone_error)?
            .map_err(backbone_error)?;
        if status.success() {
            Ok(())
        } else {
            Err(BenchError::with_detail(
                BenchErrorKind::Backbone,
                format!("backbone-server exited with {status}"),
            ))
        }
    }
}

/// `message` as a structured-mode CloudEvent with its protobuf payload in
/// `data_base64`.
fn structured(message: &OutboundMessage) -> Value {
    let mut event = serde_json::Map::new();
    for (name, value) in message.headers.iter() {
        if let Some(attribute) = name.strip_prefix("ce-") {
            event.insert(attribute.to_owned(), json!(value));
        }
    }
    let data = base64::engine::general_purpose::STANDARD.encode(&message.payload);
    event.insert("data_base64".into(), json!(data));
    Value::Object(event)
}
