//! Kill -9 acceptance test of the embedded log.
//!
//! A child process (this test binary, switched by an environment variable)
//! publishes batches and single events concurrently and prints every
//! acknowledged `seq id` line. The parent kills it with SIGKILL at a random
//! moment after it reported the store open (every fifth round: at a random
//! moment during the open itself, while it recovers), reopens the store and
//! checks that every acknowledged event is there with its bytes, that
//! sequences are dense and that every stored entry passes its checksum.
//! `BACKBONE_CRASH_ROUNDS` sets the rounds (5).

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use backbone_broker::{
    Broker, OutboundMessage, ReadRequest, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};
use futures::StreamExt;

const CHILD_ENV: &str = "BACKBONE_TEST_CRASH_CHILD";
const ROUND_ENV: &str = "BACKBONE_TEST_CRASH_ROUND";
/// Printed by the child once the store is open, the stream exists and a
/// first publish was acknowledged.
const READY: &str = "ready";

fn payload_of(id: &str) -> Vec<u8> {
    format!("{id}:").repeat(1 + id.len() % 7).into_bytes()
}

fn random_below(n: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() % n
}

fn open(path: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(EmbeddedOptions {
        path: path.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

fn report(out: &Mutex<std::io::Stdout>, seq: u64, id: &str) {
    let mut out = out.lock().unwrap();
    writeln!(out, "{seq} {id}").unwrap();
    out.flush().unwrap();
}

/// Child side: publishes until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_publisher() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round = std::env::var(ROUND_ENV).unwrap_or_default();
    let broker = Arc::new(open(Path::new(&path)));
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // The first publish loads the stream's dedup window and subject index
    // from the log's tail, which takes longer as the log grows: ready once
    // it is acknowledged.
    let first = format!("r{round}-first");
    let receipt = broker
        .publish(
            OutboundMessage::new("events.single.first", payload_of(&first)).with_msg_id(&first),
        )
        .await
        .unwrap();
    report(&out, receipt.seq, &first);
    writeln!(out.lock().unwrap(), "{READY}").unwrap();
    let singles = {
        let (broker, out, round) = (broker.clone(), out.clone(), round.clone());
        tokio::spawn(async move {
            for n in 0u64.. {
                let id = format!("r{round}-s{n}");
                let message = OutboundMessage::new(format!("events.single.{n}"), payload_of(&id))
                    .with_msg_id(&id);
                let receipt = broker.publish(message).await.unwrap();
                report(&out, receipt.seq, &id);
            }
        })
    };
    for n in 0u64.. {
        let size = 1 + (n * 37 % 300) as usize;
        let ids: Vec<String> = (0..size).map(|i| format!("r{round}-b{n}-{i}")).collect();
        let messages = ids
            .iter()
            .map(|id| {
                OutboundMessage::new(format!("events.batch.{n}"), payload_of(id)).with_msg_id(id)
            })
            .collect();
        for (id, result) in ids.iter().zip(broker.publish_batch(messages).await) {
            report(&out, result.unwrap().seq, id);
        }
    }
    singles.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let rounds: u32 = std::env::var("BACKBONE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_publisher",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness prints the test name on the same line.
                if line.ends_with(READY) {
                    let _ = ready_tx.send(());
                }
                let mut parts = line.split(' ');
                if let (Some(seq), Some(id), None) = (parts.next(), parts.next(), parts.next())
                    && let Ok(seq) = seq.parse::<u64>()
                {
                    acked.push((seq, id.to_owned()));
                }
            }
            acked
        });
        // Opening replays the log tail into the in-memory indexes; its time
        // grows with the log, so the kill is timed from the end of the open.
        let during_open = round % 5 == 4;
        if during_open {
            tokio::time::sleep(Duration::from_millis(random_below(300))).await;
        } else {
            tokio::task::block_in_place(|| ready_rx.recv_timeout(Duration::from_secs(120)))
                .expect("the child opens the store");
            tokio::time::sleep(Duration::from_millis(100 + random_below(900))).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(
            during_open || !acked.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        acknowledged.extend(acked);
        verify(dir.path(), &acknowledged).await;
    }
}

async fn verify(path: &Path, acknowledged: &[(u64, String)]) {
    let broker = open(path);
    let info = broker.stream_info("EVENTS").await.unwrap();
    let mut expected_seq = 1;
    let mut all = broker.read("EVENTS", ReadRequest::default()).await.unwrap();
    while let Some(item) = all.next().await {
        let message = item.expect("every stored entry passes its checksum");
        assert_eq!(message.seq, expected_seq, "sequences are dense");
        expected_seq += 1;
    }
    assert_eq!(expected_seq - 1, info.last_seq);
    assert_eq!(info.messages, info.last_seq);
    for (seq, id) in acknowledged {
        let message = broker.get("EVENTS", *seq).await.unwrap();
        assert_eq!(
            message.headers.get("Nats-Msg-Id"),
            Some(id.as_str()),
            "seq {seq}"
        );
        assert_eq!(&message.payload[..], &payload_of(id)[..], "seq {seq}");
    }
    drop(all);
    broker.close().await.unwrap();
}
