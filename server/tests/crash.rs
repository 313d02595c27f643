//! Crash safety: the server killed at random points (kill -9 of a real
//! child process for the embedded log and JetStream; an aborted task for the
//! in-memory adapter) ends with exactly the read model a from-scratch
//! rebuild gives: nothing lost, nothing applied twice. Also: SIGTERM during a
//! busy run exits 0 within the grace time with a committed checkpoint.
//!
//! `BACKBONE_CRASH_TRIALS` sets the number of kills per adapter (default 20).

#[path = "../../consumers/tests/common/mod.rs"]
mod common;
mod support;

use std::{
    path::Path,
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    jetstream::{JetStreamBroker, JetStreamOptions},
    memory::MemoryBroker,
    stream::DEAD_LETTER_STREAM,
};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, layout::read_models_dir, models, shutdown_channel,
};
use backbone_testkit::{NatsServer, free_port};
use common::*;

const MODELS: [&str; 3] = ["notifications", "billing", "audit"];

fn trials() -> u64 {
    std::env::var("BACKBONE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Random-enough kill delays without a dependency.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(20 + (state >> 33) % 400)
    })
}

fn write_config(dir: &Path, backend: &str, grace_secs: u64) -> std::path::PathBuf {
    let path = dir.join("consumer.toml");
    let text = format!(
        "data_dir = {:?}\nmodels = {:?}\nbatch_size = 16\nfetch_wait = \"100ms\"\nack_wait = \"1s\"\nmax_deliver = 1000\n\
         grace_time = \"{grace_secs}s\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{backend}",
        dir.join("data"),
        MODELS,
        free_port(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Where the children's warnings go: beside their config, appended run
/// after run, and shown when no child ever committed.
fn child_log(config: &Path) -> std::path::PathBuf {
    config.with_file_name("consumer.log")
}

fn spawn_consumer(config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(child_log(config))
        .unwrap();
    support::spawn(config, log)
}

fn kill_at_random_points(config: &Path, seed: u64) {
    for delay in delays(seed).take(trials() as usize) {
        let mut child = spawn_consumer(config);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // On a loaded machine every random point may fall before the first
    // commit, and the run would prove nothing: kill later, doubling the
    // delay, until some model has committed (checked between kills, since
    // a running child holds the stores).
    let stores = read_models_dir(&config.parent().unwrap().join("data"));
    let mut delay = Duration::from_millis(500);
    while !MODELS.iter().any(|name| {
        ProjectionStore::open(stores.join(name)).is_ok_and(|s| s.checkpoint().unwrap() > 0)
    }) {
        if delay >= Duration::from_secs(60) {
            let log = std::fs::read_to_string(child_log(config)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "no consumer ever committed; the children's last warnings:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let mut child = spawn_consumer(config);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        delay *= 2;
    }
}

/// Finishes every model in process and compares it with a scratch rebuild.
async fn assert_exact(broker: Arc<dyn Broker>, data: &Path, events: &[Envelope]) {
    let before: u64 = MODELS
        .iter()
        .map(|name| ProjectionStore::open(data.join(name)).map_or(0, |s| s.checkpoint().unwrap()))
        .sum();
    assert!(
        before > 0,
        "the killed consumers committed nothing: the test proves nothing"
    );
    for name in MODELS {
        let model = models::read_model(name).unwrap();
        let target = last_seq_for(model.as_ref(), events);
        let mut config = fast_config(name);
        config.ack_wait = Duration::from_secs(1);
        config.max_deliver = 1000;
        let store = run_until(
            broker.clone(),
            model.clone(),
            &data.join(name),
            config,
            target,
        )
        .await;
        let expected = scratch_digest(broker.as_ref(), model.as_ref(), target).await;
        assert_eq!(
            store.digest().unwrap(),
            expected,
            "read model {name} differs from a rebuild"
        );
    }
    // Kills are not handler failures: the invalid refunds of the workload
    // are the only dead letters (only billing rejects any event).
    let letters = broker
        .stream_info(DEAD_LETTER_STREAM)
        .await
        .unwrap()
        .messages;
    let dir = tempfile::tempdir().unwrap();
    let scratch = ProjectionStore::open(dir.path()).unwrap();
    let options = backbone_consumers::RebuildOptions {
        up_to: Some(events.len() as u64),
        ..Default::default()
    };
    let billing = models::read_model("billing").unwrap();
    let rejected = backbone_consumers::apply_log(
        broker.as_ref(),
        billing.as_ref(),
        &scratch,
        &options,
        &mut |_| {},
    )
    .await
    .unwrap()
    .rejected;
    assert_eq!(
        letters, rejected,
        "dead letters other than the invalid events"
    );
}

use backbone_schemas::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_consumer_killed_with_sigkill_ends_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let events = workload(400, 11);
    {
        let broker = EmbeddedBroker::open(EmbeddedOptions {
            path: log.clone(),
            ..Default::default()
        })
        .unwrap();
        publish_all(&broker, &events).await;
        broker.close().await.unwrap();
    }
    let config = write_config(
        dir.path(),
        &format!("[backend]\nkind = \"embedded\"\npath = {log:?}\n"),
        5,
    );
    tokio::task::spawn_blocking(move || kill_at_random_points(&config, 1))
        .await
        .unwrap();
    let broker: Arc<dyn Broker> = Arc::new(
        EmbeddedBroker::open(EmbeddedOptions {
            path: log,
            ..Default::default()
        })
        .unwrap(),
    );
    assert_exact(broker, &read_models_dir(&dir.path().join("data")), &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_consumer_killed_with_sigkill_ends_exact() {
    let server = NatsServer::new();
    let dir = tempfile::tempdir().unwrap();
    let events = workload(400, 12);
    let options = JetStreamOptions {
        urls: vec![server.url()],
        ..Default::default()
    };
    let broker: Arc<dyn Broker> = Arc::new(JetStreamBroker::connect(options).await.unwrap());
    publish_all(broker.as_ref(), &events).await;
    let config = write_config(
        dir.path(),
        &format!(
            "[backend]\nkind = \"jetstream\"\nurls = [{:?}]\n",
            server.url()
        ),
        5,
    );
    tokio::task::spawn_blocking(move || kill_at_random_points(&config, 2))
        .await
        .unwrap();
    assert_exact(broker, &read_models_dir(&dir.path().join("data")), &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_consumer_aborted_at_random_points_ends_exact() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = workload(400, 13);
    publish_all(broker.as_ref(), &events).await;
    let data = tempfile::tempdir().unwrap();
    for delay in delays(3).take(trials() as usize) {
        let mut handles = Vec::new();
        for name in MODELS {
            let store = ProjectionStore::open(data.path().join(name)).unwrap();
            let mut config = fast_config(name);
            config.ack_wait = Duration::from_secs(1);
            config.max_deliver = 1000;
            let runner = ProjectionRunner::new(
                broker.clone(),
                models::read_model(name).unwrap(),
                store,
                config,
                &Metrics::new(),
            );
            let (_trigger, shutdown) = shutdown_channel();
            handles.push(tokio::spawn(async move {
                let _keep = _trigger;
                runner.run(shutdown).await
            }));
        }
        tokio::time::sleep(delay / 4).await;
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
    assert_exact(broker, data.path(), &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_busy_run_exits_zero_with_a_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let events = workload(3000, 14);
    {
        let broker = EmbeddedBroker::open(EmbeddedOptions {
            path: log.clone(),
            ..Default::default()
        })
        .unwrap();
        publish_all(&broker, &events).await;
        broker.close().await.unwrap();
    }
    let grace = 5;
    let config = write_config(
        dir.path(),
        &format!("[backend]\nkind = \"embedded\"\npath = {log:?}\n"),
        grace,
    );
    let mut child = spawn_consumer(&config);
    let data = dir.path().join("data");
    let metrics_port = metrics_port(&config);
    let started = Instant::now();
    while applied_so_far(metrics_port).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the service applied nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(grace + 1),
            "no exit within the grace time"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    let broker = EmbeddedBroker::open(EmbeddedOptions {
        path: log,
        ..Default::default()
    })
    .unwrap();
    let mut progressed = 0;
    for name in MODELS {
        let model = models::read_model(name).unwrap();
        let store = ProjectionStore::open(read_models_dir(&data).join(name)).unwrap();
        let checkpoint = store.checkpoint().unwrap();
        progressed += checkpoint;
        let expected = scratch_digest(&broker, model.as_ref(), checkpoint).await;
        assert_eq!(
            store.digest().unwrap(),
            expected,
            "{name} at checkpoint {checkpoint}"
        );
    }
    assert!(progressed > 0, "nothing was committed before SIGTERM");
}

fn metrics_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen")).unwrap();
    line.trim_end_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Events applied so far, summed over consumers, read from `/metrics`.
async fn applied_so_far(port: u16) -> u64 {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let body = response.text().await.unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("backbone_events_applied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
