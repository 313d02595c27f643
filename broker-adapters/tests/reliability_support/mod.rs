//! Shared by the reliability tests: a publisher that retries every message
//! with its id until acknowledged, a consumer that acks whatever it gets, and
//! the final audit of the log against what was acknowledged.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backbone_broker::{Broker, Consumer, OutboundMessage, ReadRequest, message::MSG_ID_HEADER};
use futures::StreamExt;

/// Run-wide counters and the set of acknowledged ids.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Message ids whose publish was acknowledged, with their sequence.
    pub acked: Mutex<BTreeMap<String, u64>>,
    /// Publish attempts that failed (and were retried with the same id).
    pub publish_errors: AtomicU64,
    /// Acknowledgements that were duplicates (a retry of a stored message).
    pub duplicate_acks: AtomicU64,
    /// Ids delivered to the consumer. Delivery, not a successful ack, is
    /// what counts: an ack whose reply is lost in a leader election may have
    /// been applied by the server, and the message is then never delivered
    /// again (an ambiguous ack is an error, not a loss).
    pub consumed: Mutex<BTreeSet<String>>,
    /// Fetch or ack calls that failed while the broker was away.
    pub consumer_errors: AtomicU64,
    /// Acks recorded after each kill (index = kill number), proving resume.
    pub acked_after_kill: Mutex<Vec<u64>>,
}

impl Ledger {
    /// Acknowledged ids so far.
    pub fn acked_count(&self) -> u64 {
        self.acked.lock().unwrap().len() as u64
    }
}

/// Publishes `events.user.registered.k-<n % 16>` messages with ids
/// `<prefix>-<n>`, one after another, retrying each with the same id until it
/// is acknowledged, until `stop` is set (the message in flight then gets up
/// to `drain` more time).
pub async fn publish_until(
    broker: Arc<dyn Broker>,
    prefix: String,
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
    drain: Duration,
) {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        let id = format!("{prefix}-{n}");
        let message = OutboundMessage::new(
            format!("events.user.registered.k-{}", n % 16),
            format!("payload of {id}"),
        )
        .with_msg_id(id.clone());
        let mut stop_seen: Option<Instant> = None;
        loop {
            match broker.publish(message.clone()).await {
                Ok(receipt) => {
                    if receipt.duplicate {
                        ledger.duplicate_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    ledger.acked.lock().unwrap().insert(id.clone(), receipt.seq);
                    break;
                }
                Err(_) => {
                    ledger.publish_errors.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Acquire) {
                        let since = *stop_seen.get_or_insert_with(Instant::now);
                        if since.elapsed() > drain {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        n += 1;
    }
}

/// Fetches and acks until `stop` is set, recording every delivered id.
pub async fn consume_until(
    consumer: Box<dyn Consumer>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
) {
    while !stop.load(Ordering::Acquire) {
        match consumer.fetch(200, Duration::from_millis(300)).await {
            Ok(batch) => {
                for delivery in batch {
                    if let Some(id) = delivery.message.headers.get(MSG_ID_HEADER) {
                        ledger.consumed.lock().unwrap().insert(id.to_owned());
                    }
                    if delivery.ack().await.is_err() {
                        ledger.consumer_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                ledger.consumer_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Fetches until nothing is pending (or `within` passes), acking everything.
pub async fn drain_consumer(consumer: &dyn Consumer, ledger: &Ledger, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let Ok(batch) = consumer.fetch(500, Duration::from_millis(500)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if batch.is_empty()
            && let Ok(info) = consumer.info().await
            && info.num_pending == 0
            && info.num_ack_pending == 0
        {
            return;
        }
        for delivery in batch {
            if let Some(id) = delivery.message.headers.get(MSG_ID_HEADER) {
                ledger.consumed.lock().unwrap().insert(id.to_owned());
            }
            let _ = delivery.ack().await;
        }
    }
}

/// What the log holds compared with what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Acknowledged publishes.
    pub acked: u64,
    /// Messages stored in the stream.
    pub stored: u64,
    /// Acknowledged ids missing from the stream: must be 0.
    pub lost: u64,
    /// Ids stored more than once (a retry the dedup window missed).
    pub duplicates: u64,
    /// Stored messages whose sequence differs from their receipt.
    pub moved: u64,
    /// Acknowledged ids the consumer never delivered: must be 0.
    pub not_consumed: u64,
    /// Of the `lost` ids, how many `Broker::get` of their acknowledged
    /// sequence then found (a read that ended early, not a loss).
    pub lost_found_by_get: u64,
    /// Of the `lost` ids, how many a second full read found.
    pub lost_found_by_reread: u64,
}

/// Reads the whole stream and compares it with the ledger.
///
/// Reads go through the JetStream API (`read`'s consumer and `get`'s
/// `STREAM.MSG.GET`), never direct get, so the stream leader answers. When
/// ids are missing, each is looked up again by its acknowledged sequence and
/// by a second full read, and the first of them are printed, so a failure
/// tells a read that ended early from a real loss.
pub async fn audit(broker: &dyn Broker, stream: &str, ledger: &Ledger) -> Audit {
    let (stored, stored_ids) = read_ids(broker, stream).await;
    let acked = ledger.acked.lock().unwrap().clone();
    let missing: Vec<(&String, &u64)> = acked
        .iter()
        .filter(|(id, _)| !stored_ids.contains_key(*id))
        .collect();
    let (mut lost_found_by_get, mut lost_found_by_reread) = (0, 0);
    if !missing.is_empty() {
        let (restored, reread) = read_ids(broker, stream).await;
        for (shown, (id, seq)) in missing.iter().enumerate() {
            let by_get = broker.get(stream, **seq).await;
            let found = by_get
                .as_ref()
                .is_ok_and(|m| m.headers.get(MSG_ID_HEADER) == Some(id.as_str()));
            lost_found_by_get += u64::from(found);
            lost_found_by_reread += u64::from(reread.contains_key(*id));
            if shown < 20 {
                eprintln!(
                    "missing {id} (acked at seq {seq}): get finds it: {found} ({:?}), \
                     second read ({restored} entries) finds it: {}",
                    by_get.as_ref().map(|m| m.seq).map_err(|e| e.kind().clone()),
                    reread.contains_key(*id)
                );
            }
        }
        eprintln!(
            "{} acked ids missing from the first read; {lost_found_by_get} found by get, \
             {lost_found_by_reread} by a second read",
            missing.len()
        );
    }
    let consumed = ledger.consumed.lock().unwrap().clone();
    let lost = acked
        .keys()
        .filter(|id| !stored_ids.contains_key(*id))
        .count() as u64;
    let moved = acked
        .iter()
        .filter(|(id, seq)| stored_ids.get(*id).is_some_and(|seqs| !seqs.contains(seq)))
        .count() as u64;
    Audit {
        acked: acked.len() as u64,
        stored,
        lost,
        duplicates: stored_ids.values().filter(|seqs| seqs.len() > 1).count() as u64,
        moved,
        not_consumed: acked.keys().filter(|id| !consumed.contains(*id)).count() as u64,
        lost_found_by_get,
        lost_found_by_reread,
    }
}

/// Reads the whole stream: entries read, and each msg id's sequences.
async fn read_ids(broker: &dyn Broker, stream: &str) -> (u64, BTreeMap<String, Vec<u64>>) {
    let mut stored_ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut stored = 0;
    let mut reader = broker
        .read(stream, ReadRequest::default())
        .await
        .expect("reading the stream");
    while let Some(message) = reader.next().await {
        let message = message.expect("every stored entry reads back");
        stored += 1;
        let id = message
            .headers
            .get(MSG_ID_HEADER)
            .unwrap_or_default()
            .to_owned();
        stored_ids.entry(id).or_default().push(message.seq);
    }
    (stored, stored_ids)
}

/// Prints one machine-readable line that `scripts/reliability` collects.
pub fn report(scenario: &str, rounds: u32, ledger: &Ledger, audit: &Audit) {
    println!(
        "RELIABILITY scenario={scenario} rounds={rounds} acked={} stored={} lost={} \
         duplicates={} not_consumed={} publish_errors={} duplicate_acks={} consumer_errors={}",
        audit.acked,
        audit.stored,
        audit.lost,
        audit.duplicates,
        audit.not_consumed,
        ledger.publish_errors.load(Ordering::Relaxed),
        ledger.duplicate_acks.load(Ordering::Relaxed),
        ledger.consumer_errors.load(Ordering::Relaxed),
    );
}

/// A deterministic pseudo-random duration in `[low, high)` from `seed`.
pub fn jitter(seed: u64, low: Duration, high: Duration) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let span = (high - low).as_millis().max(1) as u64;
    low + Duration::from_millis(x % span)
}

/// Rounds from the environment variable `var`, else `default`.
pub fn rounds_from_env(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
