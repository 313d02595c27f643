//! At-least-once delivery: acks, naks, redelivery, ack wait, max deliver.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{AckErrorKind, ConsumerConfig, Exhausted};

use crate::conformance::support::{
    Ctx, Failure, OrFail, PATIENCE, Verdict, ensure, ensure_eq, expect_kind, expect_nothing,
    publish_numbered, receive, receive_acking, receive_one, seqs,
};

/// A nakked message comes back, same content, delivery count 2.
pub(crate) async fn redelivery_after_nak(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("nak").await?;
    let broker = ctx.broker().await;
    let receipt = publish_numbered(&*broker, 1, |_| stream.subject("k"))
        .await?
        .remove(0);
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("nak")))
        .await
        .or_fail("consumer")?;
    let first = receive_one(&*consumer).await?;
    ensure_eq!(first.delivery_count, 1, "first delivery count");
    first.nak(None).await.or_fail("nak")?;
    let again = receive_one(&*consumer).await?;
    ensure_eq!(again.message.seq, receipt.seq, "redelivered sequence");
    ensure_eq!(again.message, first.message, "redelivered message");
    ensure_eq!(again.delivery_count, 2, "redelivery count");
    again.ack().await.or_fail("ack")?;
    expect_nothing(&*consumer, "the message was acked").await
}

/// With `max_ack_pending = 1` the next message waits for the current ack,
/// and messages come in stream order.
pub(crate) async fn no_next_before_ack(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("strict").await?;
    let broker = ctx.broker().await;
    let receipts =
        publish_numbered(&*broker, 5, |i| stream.subject(&format!("k{}", i % 2))).await?;
    let config = ConsumerConfig {
        max_ack_pending: 1,
        ..ConsumerConfig::durable(ctx.durable("strict"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    for receipt in &receipts {
        let batch = consumer
            .fetch(10, Duration::from_secs(2))
            .await
            .or_fail("fetch")?;
        ensure_eq!(
            seqs(&batch),
            vec![receipt.seq],
            "one delivery in stream order"
        );
        expect_nothing(&*consumer, "the current message is not acked yet").await?;
        batch[0].ack().await.or_fail("ack")?;
    }
    expect_nothing(&*consumer, "every message was acked").await
}

/// Dropping a consumer midway and binding the durable again continues with
/// exactly the messages not yet acked.
pub(crate) async fn continue_after_consumer_close(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 60;
    let stream = ctx.stream("cont").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, MESSAGES, |i| {
        stream.subject(&format!("k{}", i % 3))
    })
    .await?;
    let durable = ctx.durable("cont");
    let mut acked = Vec::new();
    for round in 0..3 {
        let consumer = broker
            .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
            .await
            .or_fail("bind")?;
        ensure_eq!(consumer.name(), durable, "bound durable name");
        let got = receive_acking(&*consumer, 20).await?;
        ensure_eq!(
            seqs(&got),
            receipts[round * 20..(round + 1) * 20]
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            "round {round} continues where the last consumer stopped"
        );
        acked.extend(seqs(&got));
    }
    let last = broker
        .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
        .await
        .or_fail("bind")?;
    expect_nothing(&*last, "every message was acked by earlier consumers").await?;
    ensure_eq!(acked.len(), MESSAGES, "messages acked over three consumers");
    Ok(())
}

/// Many consumers on one durable dropped at once, some with deliveries
/// unacked: a later consumer gets every unacked message, nothing is lost.
pub(crate) async fn concurrent_close(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 100;
    const WORKERS: usize = 5;
    let stream = ctx.stream("cclose").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, MESSAGES, |i| {
        stream.subject(&format!("k{}", i % 4))
    })
    .await?;
    let all: BTreeSet<u64> = receipts.iter().map(|r| r.seq).collect();
    let config = ConsumerConfig {
        ack_wait: Duration::from_secs(2),
        ..ConsumerConfig::durable(ctx.durable("cclose"))
    };
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let broker = Arc::clone(&broker);
        let name = stream.name.clone();
        let config = config.clone();
        workers.push(tokio::spawn(async move {
            let consumer = broker.consumer(&name, config).await.or_fail("bind")?;
            let batch = consumer
                .fetch(8, Duration::from_secs(2))
                .await
                .or_fail("fetch")?;
            let mut acked = Vec::new();
            for (i, delivery) in batch.iter().enumerate() {
                // Every other delivery stays unacked when the consumer goes away.
                if i % 2 == 0 {
                    delivery.ack().await.or_fail("ack")?;
                    acked.push(delivery.message.seq);
                }
            }
            drop(batch);
            drop(consumer);
            Ok::<_, Failure>(acked)
        }));
    }
    let mut acked = BTreeSet::new();
    for task in workers {
        acked.extend(task.await.or_fail("worker task")??);
    }
    let rest: BTreeSet<u64> = all.difference(&acked).copied().collect();
    let last = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("rebind")?;
    let got = receive_acking(&*last, rest.len()).await?;
    let got: BTreeSet<u64> = seqs(&got).into_iter().collect();
    ensure_eq!(got, rest, "messages not acked before the close");
    Ok(())
}

/// Naks along the way do not stop the consumer: every message is eventually
/// acked, each after exactly one redelivery.
pub(crate) async fn continue_after_errors(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 30;
    let stream = ctx.stream("errs").await?;
    let broker = ctx.broker().await;
    let receipts =
        publish_numbered(&*broker, MESSAGES, |i| stream.subject(&format!("k{i}"))).await?;
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("errs")))
        .await
        .or_fail("consumer")?;
    let mut acked = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while acked.len() < MESSAGES {
        ensure!(
            Instant::now() < deadline,
            "only {} of {MESSAGES} acked in time",
            acked.len()
        );
        for delivery in consumer
            .fetch(10, Duration::from_secs(1))
            .await
            .or_fail("fetch")?
        {
            let seq = delivery.message.seq;
            if seq % 3 == 0 && delivery.delivery_count == 1 {
                delivery.nak(None).await.or_fail("nak")?;
            } else {
                let expected = if seq % 3 == 0 { 2 } else { 1 };
                ensure_eq!(delivery.delivery_count, expected, "delivery count of {seq}");
                delivery.ack().await.or_fail("ack")?;
                ensure!(
                    acked.insert(seq),
                    "sequence {seq} delivered again after its ack"
                );
            }
        }
    }
    ensure_eq!(
        acked,
        receipts.iter().map(|r| r.seq).collect::<BTreeSet<_>>(),
        "acked sequences"
    );
    let info = consumer.info().await.or_fail("info")?;
    ensure_eq!(info.num_ack_pending, 0, "ack pending at the end");
    ensure_eq!(info.num_pending, 0, "pending at the end");
    Ok(())
}

/// `nak` with a delay is not redelivered before the delay (lower bound only).
pub(crate) async fn nak_delay_honoured(ctx: Ctx) -> Verdict {
    const DELAY: Duration = Duration::from_secs(2);
    let stream = ctx.stream("nakdelay").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let consumer = broker
        .consumer(
            &stream.name,
            ConsumerConfig::durable(ctx.durable("nakdelay")),
        )
        .await
        .or_fail("consumer")?;
    let first = receive_one(&*consumer).await?;
    let nakked_at = Instant::now();
    first.nak(Some(DELAY)).await.or_fail("nak with delay")?;
    let again = receive_one(&*consumer).await?;
    let waited = nakked_at.elapsed();
    ensure_eq!(again.message.seq, first.message.seq, "redelivered sequence");
    ensure_eq!(
        again.delivery_count,
        2,
        "redelivery count {waited:?} after the nak"
    );
    // Allow for the broker's clock starting the delay a little before ours.
    ensure!(
        waited >= DELAY.mul_f64(0.75),
        "redelivered {waited:?} after a nak delayed by {DELAY:?}"
    );
    again.ack().await.or_fail("ack")
}

/// An unacked delivery comes back after `ack_wait`, delivery count 2.
pub(crate) async fn ack_wait_redelivery(ctx: Ctx) -> Verdict {
    const ACK_WAIT: Duration = Duration::from_secs(1);
    let stream = ctx.stream("ackwait").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let config = ConsumerConfig {
        ack_wait: ACK_WAIT,
        ..ConsumerConfig::durable(ctx.durable("ackwait"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let first = receive_one(&*consumer).await?;
    let delivered_at = Instant::now();
    ensure_eq!(first.delivery_count, 1, "first delivery count");
    let again = receive_one(&*consumer).await?;
    let waited = delivered_at.elapsed();
    ensure_eq!(again.message.seq, first.message.seq, "redelivered sequence");
    ensure_eq!(again.delivery_count, 2, "delivery count after ack_wait");
    ensure!(
        waited >= ACK_WAIT.mul_f64(0.5),
        "redelivered {waited:?} after delivery with ack_wait {ACK_WAIT:?}"
    );
    again.ack().await.or_fail("ack")?;
    expect_nothing(&*consumer, "the redelivery was acked").await
}

/// A message that runs out of deliveries is not delivered again and is
/// reported by `take_exhausted`, once.
pub(crate) async fn max_deliver_exhausted_reported(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("maxdel").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 2, |i| stream.subject(&format!("k{i}"))).await?;
    let config = ConsumerConfig {
        max_deliver: Some(2),
        ack_wait: Duration::from_secs(1),
        max_ack_pending: 1,
        ..ConsumerConfig::durable(ctx.durable("maxdel"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    for attempt in 1..=2 {
        let delivery = receive_one(&*consumer).await?;
        ensure_eq!(
            delivery.message.seq,
            receipts[0].seq,
            "attempt {attempt} sequence"
        );
        ensure_eq!(
            delivery.delivery_count,
            attempt,
            "attempt {attempt} delivery count"
        );
        delivery.nak(None).await.or_fail("nak")?;
    }
    // The poison message no longer blocks: the next one arrives.
    let next = receive_one(&*consumer).await?;
    ensure_eq!(
        next.message.seq,
        receipts[1].seq,
        "message after the exhausted one"
    );
    next.ack().await.or_fail("ack")?;

    let deadline = Instant::now() + PATIENCE;
    let mut reported = Vec::new();
    while reported.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "take_exhausted never reported the message"
        );
        expect_nothing(&*consumer, "the exhausted message must not come back").await?;
        reported = consumer.take_exhausted().await.or_fail("take_exhausted")?;
    }
    let expected = vec![Exhausted {
        stream_seq: receipts[0].seq,
        deliveries: 2,
    }];
    ensure_eq!(reported, expected, "exhausted report");
    expect_nothing(&*consumer, "the exhausted message must not come back").await?;
    let again = consumer.take_exhausted().await.or_fail("take_exhausted")?;
    ensure!(
        again.is_empty(),
        "exhausted message reported twice: {again:?}"
    );
    Ok(())
}

/// A durable bound again (same name) does
/// not redeliver acked messages; a deleted and recreated one starts over.
pub(crate) async fn recreated_durable_skips_acked(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("recreate").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 10, |i| stream.subject(&format!("k{i}"))).await?;
    let durable = ctx.durable("recreate");
    {
        let consumer = broker
            .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
            .await
            .or_fail("consumer")?;
        receive_acking(&*consumer, 6).await?;
    }
    let rebound = broker
        .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
        .await
        .or_fail("rebind")?;
    let rest = receive_acking(&*rebound, 4).await?;
    ensure_eq!(
        seqs(&rest),
        receipts[6..].iter().map(|r| r.seq).collect::<Vec<_>>(),
        "messages after rebinding"
    );
    expect_nothing(&*rebound, "acked messages must not be redelivered").await?;
    let info = broker
        .consumer_info(&stream.name, &durable)
        .await
        .or_fail("consumer_info")?;
    ensure_eq!(info.ack_floor_stream_seq, receipts[9].seq, "ack floor");
    ensure_eq!(
        info.delivered_stream_seq,
        receipts[9].seq,
        "delivered sequence"
    );

    broker
        .delete_consumer(&stream.name, &durable)
        .await
        .or_fail("delete_consumer")?;
    let fresh = broker
        .consumer(&stream.name, ConsumerConfig::durable(durable))
        .await
        .or_fail("recreate after delete")?;
    let all = receive_acking(&*fresh, 10).await?;
    ensure_eq!(
        seqs(&all),
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        "a deleted durable starts over"
    );
    Ok(())
}

/// `term` gives a message up for good.
pub(crate) async fn term_never_redelivers(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("term").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let config = ConsumerConfig {
        ack_wait: Duration::from_secs(1),
        ..ConsumerConfig::durable(ctx.durable("term"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let delivery = receive_one(&*consumer).await?;
    delivery.term("poison").await.or_fail("term")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect_nothing(&*consumer, "a termed message is never redelivered").await?;
    let exhausted = consumer.take_exhausted().await.or_fail("take_exhausted")?;
    ensure!(
        exhausted.is_empty(),
        "a termed message reported as exhausted: {exhausted:?}"
    );
    Ok(())
}

/// Settling a delivery twice fails with `NotPending`.
pub(crate) async fn double_ack_not_pending(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("dblack").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 1, |_| stream.subject("k")).await?;
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("dblack")))
        .await
        .or_fail("consumer")?;
    let delivery = receive(&*consumer, 1, false).await?.remove(0);
    delivery.ack().await.or_fail("first ack")?;
    expect_kind(delivery.ack().await, AckErrorKind::NotPending, "second ack")?;
    expect_kind(
        delivery.nak(None).await,
        AckErrorKind::NotPending,
        "nak after ack",
    )
}
