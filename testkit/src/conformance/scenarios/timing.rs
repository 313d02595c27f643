//! Settling over time: progress extends the ack wait, backoff spaces out
//! redeliveries.

use std::time::{Duration, Instant};

use backbone_broker::ConsumerConfig;

use crate::conformance::support::{
    Ctx, OrFail, Verdict, ensure, ensure_eq, expect_nothing, publish_numbered, receive_one,
};

/// A delivery kept alive with `in_progress` well past its `ack_wait` is not
/// redelivered; once acked it never comes back.
pub(crate) async fn in_progress_extends_ack_wait(ctx: Ctx) -> Verdict {
    const ACK_WAIT: Duration = Duration::from_secs(1);
    const KEPT_ALIVE: Duration = Duration::from_secs(3);
    let stream = ctx.stream("progress").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let config = ConsumerConfig {
        ack_wait: ACK_WAIT,
        ..ConsumerConfig::durable(ctx.durable("progress"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let delivery = receive_one(&*consumer).await?;
    ensure_eq!(delivery.delivery_count, 1, "first delivery count");
    let started = Instant::now();
    // Each round reports progress, then watches for a redelivery for less
    // than half the ack wait: the ack wait never runs out between reports.
    while started.elapsed() < KEPT_ALIVE {
        delivery.in_progress().await.or_fail("in_progress")?;
        expect_nothing(&*consumer, "a delivery kept alive with in_progress").await?;
    }
    delivery.ack().await.or_fail("ack after progress")?;
    tokio::time::sleep(ACK_WAIT + Duration::from_millis(200)).await;
    expect_nothing(&*consumer, "the message was acked after its progress").await
}

/// Unacked deliveries come back after the backoff delays (lower bounds
/// only), not after `ack_wait`, and stop at `max_deliver`.
pub(crate) async fn backoff_delays_honoured(ctx: Ctx) -> Verdict {
    const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
    let stream = ctx.stream("backoff").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let config = ConsumerConfig {
        backoff: BACKOFF.to_vec(),
        // JetStream requires more deliveries than backoff entries.
        max_deliver: Some(3),
        // Longer than the scenario may wait: only the backoff can redeliver.
        ack_wait: Duration::from_secs(60),
        ..ConsumerConfig::durable(ctx.durable("backoff"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let first = receive_one(&*consumer).await?;
    ensure_eq!(first.delivery_count, 1, "first delivery count");
    let mut delivered_at = Instant::now();
    for (attempt, delay) in (2u32..).zip(BACKOFF) {
        let again = receive_one(&*consumer).await?;
        let waited = delivered_at.elapsed();
        delivered_at = Instant::now();
        ensure_eq!(again.message.seq, first.message.seq, "redelivered sequence");
        ensure_eq!(again.delivery_count, attempt, "delivery count");
        // Allow for the broker's clock starting the delay a little before ours.
        ensure!(
            waited >= delay.mul_f64(0.75),
            "delivery {attempt} came {waited:?} after the last one; the backoff is {delay:?}"
        );
    }
    tokio::time::sleep(BACKOFF[1]).await;
    expect_nothing(&*consumer, "max_deliver was reached").await
}
