//! Durability across close and restart of the broker.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConsumerConfig, OutboundMessage, PublishErrorKind, PublishReceipt, ReadRequest,
    message::MSG_ID_HEADER,
};

use crate::conformance::{
    harness::Harness,
    support::{
        Ctx, Failure, OrFail, Verdict, ensure, ensure_eq, expect_kind, expect_nothing, index_of,
        payload_of, read_all, receive_acking, seqs,
    },
};

const RESTART_TOTAL: usize = 10_000;
const RESTART_CHUNK: usize = 250;
const RESTART_PATIENCE: Duration = Duration::from_secs(90);

/// `close` waits for everything published, then refuses further publishes;
/// on a restartable harness every message is there after reopening.
pub(crate) async fn publisher_close_loses_nothing(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 1000;
    let stream = ctx.stream("close").await?;
    let broker = ctx.broker().await;
    let id_of = |i: usize| format!("close-{i}");
    let messages = (0..MESSAGES)
        .map(|i| {
            OutboundMessage::new(stream.subject(&format!("k{}", i % 10)), payload_of(i))
                .with_msg_id(id_of(i))
        })
        .collect();
    let receipts = broker
        .publish_batch(messages)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .or_fail("publish_batch")?;
    broker.close().await.or_fail("close")?;
    expect_kind(
        broker
            .publish(OutboundMessage::new(stream.subject("late"), "late"))
            .await,
        PublishErrorKind::BrokerUnavailable,
        "publish after close",
    )?;
    drop(broker);
    if !ctx.harness().features().restartable {
        return Ok(());
    }
    ensure!(
        ctx.harness().restart().await,
        "harness claims restartable but did not restart"
    );
    let reopened = ctx.broker().await;
    let stored = read_all(&*reopened, &stream.name, ReadRequest::default()).await?;
    ensure_eq!(stored.len(), MESSAGES, "messages after close and reopen");
    for (i, (message, receipt)) in stored.iter().zip(&receipts).enumerate() {
        ensure_eq!(message.seq, receipt.seq, "sequence of message {i}");
        ensure_eq!(index_of(message)?, i, "payload of message {i}");
        let id = id_of(i);
        ensure_eq!(
            message.headers.get(MSG_ID_HEADER),
            Some(id.as_str()),
            "msg id of message {i}"
        );
    }
    Ok(())
}

/// Acknowledged messages and a durable's acks survive a restart, and so
/// does the duplicate window.
pub(crate) async fn durable_survives_restart(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("durable").await?;
    let durable = ctx.durable("durable");
    let receipts = {
        let broker = ctx.broker().await;
        let messages = (0..10)
            .map(|i| {
                OutboundMessage::new(stream.subject(&format!("k{i}")), payload_of(i))
                    .with_msg_id(format!("dur-{i}"))
            })
            .collect();
        let receipts = broker
            .publish_batch(messages)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .or_fail("publish_batch")?;
        let consumer = broker
            .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
            .await
            .or_fail("consumer")?;
        receive_acking(&*consumer, 4).await?;
        receipts
    };
    ensure!(
        ctx.harness().restart().await,
        "harness claims restartable but did not restart"
    );
    let broker = ctx.broker().await;
    let info = broker
        .stream_info(&stream.name)
        .await
        .or_fail("stream_info after restart")?;
    ensure_eq!(info.messages, 10, "messages after restart");
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(durable))
        .await
        .or_fail("rebind after restart")?;
    let rest = receive_acking(&*consumer, 6).await?;
    ensure_eq!(
        seqs(&rest),
        receipts[4..].iter().map(|r| r.seq).collect::<Vec<_>>(),
        "unacked messages after restart"
    );
    expect_nothing(&*consumer, "acked messages stay acked across a restart").await?;
    let again = broker
        .publish(OutboundMessage::new(stream.subject("k0"), payload_of(0)).with_msg_id("dur-0"))
        .await
        .or_fail("republish after restart")?;
    ensure!(
        again.duplicate,
        "msg id forgotten across restart: {again:?}"
    );
    Ok(())
}

/// 10k publishes while the broker restarts twice: retrying failed publishes
/// with the same msg id leaves every message stored exactly once, each
/// acknowledged one at its acknowledged sequence.
pub(crate) async fn restart_during_publishes_loses_nothing(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("restart").await?;
    let progress = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let harness = ctx.harness_arc();
        let progress = Arc::clone(&progress);
        let stream = stream.clone();
        tokio::spawn(async move {
            publish_all_retrying(&*harness, &progress, |i| {
                OutboundMessage::new(stream.subject(&format!("k{}", i % 16)), payload_of(i))
                    .with_msg_id(format!("{}-{i}", stream.name))
            })
            .await
        })
    };
    let mut restarts = 0;
    for threshold in [RESTART_TOTAL * 3 / 10, RESTART_TOTAL * 7 / 10] {
        // The publisher enforces the deadline and reports why it stalled.
        while progress.load(Ordering::Relaxed) < threshold && !publisher.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if publisher.is_finished() {
            break;
        }
        ensure!(
            ctx.harness().restart().await,
            "harness claims restartable but did not restart"
        );
        restarts += 1;
    }
    let acked = publisher.await.or_fail("publisher task")??;
    ensure_eq!(restarts, 2, "restarts during publishing");

    let broker = ctx.broker().await;
    let stored = read_all(&*broker, &stream.name, ReadRequest::default()).await?;
    let mut by_index: BTreeMap<usize, u64> = BTreeMap::new();
    for message in &stored {
        let index = index_of(message)?;
        let id = format!("{}-{index}", stream.name);
        ensure_eq!(
            message.headers.get(MSG_ID_HEADER),
            Some(id.as_str()),
            "msg id of seq {}",
            message.seq
        );
        if let Some(earlier) = by_index.insert(index, message.seq) {
            return Err(Failure::new(format!(
                "message {index} stored twice, at {earlier} and {}",
                message.seq
            )));
        }
    }
    ensure_eq!(by_index.len(), RESTART_TOTAL, "distinct messages stored");
    for (index, receipt) in acked.iter().enumerate() {
        if !receipt.duplicate {
            ensure_eq!(
                by_index.get(&index).copied(),
                Some(receipt.seq),
                "acknowledged sequence of message {index}"
            );
        }
    }
    Ok(())
}

/// Publishes messages `0..RESTART_TOTAL` in chunks, retrying failures with the
/// same message (and msg id) on a fresh broker handle until acknowledged.
/// The handle is only replaced after a failure, as a service would. Every
/// failure must be transient (`TimedOut` or `BrokerUnavailable`).
async fn publish_all_retrying(
    harness: &dyn Harness,
    progress: &AtomicUsize,
    message_of: impl Fn(usize) -> OutboundMessage,
) -> Result<Vec<PublishReceipt>, Failure> {
    let deadline = Instant::now() + RESTART_PATIENCE;
    let mut receipts: Vec<Option<PublishReceipt>> = vec![None; RESTART_TOTAL];
    let mut last_error = None;
    let mut retried = 0usize;
    // Kept across batches, so a restart hits publishes in flight.
    let mut broker: Option<Arc<dyn Broker>> = None;
    for chunk_start in (0..RESTART_TOTAL).step_by(RESTART_CHUNK) {
        let mut pending: Vec<usize> =
            (chunk_start..(chunk_start + RESTART_CHUNK).min(RESTART_TOTAL)).collect();
        while !pending.is_empty() {
            ensure!(
                Instant::now() < deadline,
                "messages {pending:?} not acknowledged within {RESTART_PATIENCE:?}; last error {last_error:?}"
            );
            let handle = match &broker {
                Some(handle) => Arc::clone(handle),
                None => harness.broker().await,
            };
            broker = Some(Arc::clone(&handle));
            let messages = pending.iter().map(|&i| message_of(i)).collect();
            let results = handle.publish_batch(messages).await;
            drop(handle);
            ensure_eq!(results.len(), pending.len(), "results of publish_batch");
            let mut failed = Vec::new();
            for (index, result) in pending.iter().copied().zip(results) {
                match result {
                    Ok(receipt) => receipts[index] = Some(receipt),
                    Err(error) => {
                        // The stream captures every subject published here,
                        // so e.g. `NoStream` would send a service looking for
                        // a configuration error that is not there.
                        ensure!(
                            matches!(
                                error.kind(),
                                PublishErrorKind::TimedOut | PublishErrorKind::BrokerUnavailable
                            ),
                            "message {index} failed with {error:?}; while the broker restarts only TimedOut or BrokerUnavailable may occur"
                        );
                        last_error = Some(error);
                        retried += 1;
                        failed.push(index);
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                // The handle may belong to the stopped broker: let it go (an
                // embedded store cannot reopen while it is held) and ask anew.
                broker = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        progress.store(chunk_start + RESTART_CHUNK, Ordering::Relaxed);
    }
    // Shows (with --nocapture) that the restarts really interrupted publishing.
    println!(
        "{retried} publishes failed during the restarts and were retried; last error {last_error:?}"
    );
    Ok(receipts.into_iter().flatten().collect())
}
