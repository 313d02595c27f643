//! The universal publish/subscribe scenarios, after Watermill's test suite.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use backbone_broker::{ConsumerConfig, OutboundMessage};
use backbone_schemas::Headers;
use bytes::Bytes;

use crate::conformance::{
    harness::Harness,
    support::{
        Ctx, OrFail, Verdict, ensure, ensure_eq, expect_nothing, index_of, publish_numbered,
        receive, receive_acking, seqs,
    },
};

/// Payload bytes and every header (order, case, repeats) arrive unchanged.
pub(crate) async fn publish_subscribe_headers_intact(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("hdr").await?;
    let broker = ctx.broker().await;
    let headers: Headers = [
        ("ce-id", "0190a0b2-0000-7000-8000-000000000001"),
        ("ce-type", "user.followed"),
        ("X-Case", "MiXeD"),
        ("x-case", "lower"),
        ("repeated", "first"),
        ("repeated", "second"),
        ("empty", ""),
        ("spaces", "a value  with  spaces"),
    ]
    .into_iter()
    .collect();
    let payload = Bytes::from((0..=255u8).chain([0, 0, 255]).collect::<Vec<u8>>());
    let subject = stream.subject("user.followed.u-42");
    let outbound = OutboundMessage {
        subject: subject.clone(),
        headers: headers.clone(),
        payload: payload.clone(),
        ..Default::default()
    };
    let receipt = broker.publish(outbound.clone()).await.or_fail("publish")?;
    ensure_eq!(receipt.stream, stream.name, "receipt stream");
    ensure!(!receipt.duplicate, "first publish reported as duplicate");

    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("hdr")))
        .await
        .or_fail("consumer")?;
    let delivery = receive_acking(&*consumer, 1).await?.remove(0);
    let message = &delivery.message;
    ensure_eq!(message.subject, subject, "delivered subject");
    ensure_eq!(message.payload, payload, "delivered payload");
    ensure_same_headers(
        ctx.harness(),
        &message.headers,
        &outbound.stored_headers(),
        "delivered",
    )?;
    ensure_eq!(message.seq, receipt.seq, "delivered sequence");
    ensure_eq!(message.stream, stream.name, "delivered stream");
    ensure_eq!(delivery.delivery_count, 1, "first delivery count");

    let got = broker.get(&stream.name, receipt.seq).await.or_fail("get")?;
    ensure_same_headers(
        ctx.harness(),
        &got.headers,
        &outbound.stored_headers(),
        "read by get",
    )?;
    ensure_eq!(got.payload, payload, "payload read by get");
    Ok(())
}

/// Checks `got` against `sent`: the same pairs with each name's values in
/// order, and in exactly the same order where the harness claims it.
fn ensure_same_headers(harness: &dyn Harness, got: &Headers, sent: &Headers, how: &str) -> Verdict {
    if harness.features().preserves_header_order {
        ensure_eq!(got, sent, "headers {how}");
        return Ok(());
    }
    // A stable sort by name keeps each name's values in their own order.
    let by_name = |headers: &Headers| {
        let mut pairs: Vec<(String, String)> = headers.clone().into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
    };
    ensure_eq!(
        by_name(got),
        by_name(sent),
        "headers {how} (grouped by name)"
    );
    Ok(())
}

/// Several durables consume the same stream at once; each gets everything.
pub(crate) async fn concurrent_subscribe(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 200;
    const DURABLES: usize = 5;
    let stream = ctx.stream("csub").await?;
    let broker = ctx.broker().await;
    let mut tasks = Vec::new();
    for d in 0..DURABLES {
        let broker = Arc::clone(&broker);
        let name = stream.name.clone();
        let durable = ctx.durable(&format!("csub{d}"));
        tasks.push(tokio::spawn(async move {
            let consumer = broker
                .consumer(&name, ConsumerConfig::durable(durable))
                .await
                .or_fail("consumer")?;
            let got = receive_acking(&*consumer, MESSAGES).await?;
            expect_nothing(&*consumer, "every message was acked").await?;
            Ok::<_, crate::conformance::Failure>(seqs(&got))
        }));
    }
    let receipts = publish_numbered(&*broker, MESSAGES, |i| {
        stream.subject(&format!("k{}", i % 7))
    })
    .await?;
    let published: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    for (d, task) in tasks.into_iter().enumerate() {
        let got = task.await.or_fail("consumer task")??;
        ensure_eq!(got, published, "sequences received by durable {d}");
    }
    Ok(())
}

/// Publishers on many subjects at once; a consumer per subject gets exactly
/// its subject's messages, in publish order.
pub(crate) async fn many_subjects_concurrently(ctx: Ctx) -> Verdict {
    const SUBJECTS: usize = 12;
    const PER_SUBJECT: usize = 40;
    let stream = ctx.stream("many").await?;
    let broker = ctx.broker().await;
    let mut publishers = Vec::new();
    for s in 0..SUBJECTS {
        let broker = Arc::clone(&broker);
        let subject = stream.subject(&format!("s{s}"));
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_SUBJECT {
                let message = OutboundMessage::new(subject.clone(), i.to_string());
                broker.publish(message).await.or_fail("publish")?;
            }
            Ok::<_, crate::conformance::Failure>(())
        }));
    }
    for task in publishers {
        task.await.or_fail("publisher task")??;
    }
    let mut consumers = Vec::new();
    for s in 0..SUBJECTS {
        let broker = Arc::clone(&broker);
        let name = stream.name.clone();
        let subject = stream.subject(&format!("s{s}"));
        let config = ConsumerConfig {
            filter_subjects: vec![subject.clone()],
            ..ConsumerConfig::durable(ctx.durable(&format!("many{s}")))
        };
        consumers.push(tokio::spawn(async move {
            let consumer = broker.consumer(&name, config).await.or_fail("consumer")?;
            let got = receive_acking(&*consumer, PER_SUBJECT).await?;
            for delivery in &got {
                ensure_eq!(delivery.message.subject, subject, "filtered subject");
            }
            let order = got
                .iter()
                .map(|d| index_of(&d.message))
                .collect::<Result<Vec<_>, _>>()?;
            ensure_eq!(
                order,
                (0..PER_SUBJECT).collect::<Vec<_>>(),
                "order on {subject}"
            );
            expect_nothing(&*consumer, "the subject was fully consumed").await
        }));
    }
    for task in consumers {
        task.await.or_fail("consumer task")??;
    }
    Ok(())
}

/// Messages of one subject are delivered in publish order, even interleaved
/// with other subjects.
pub(crate) async fn per_subject_order(ctx: Ctx) -> Verdict {
    const KEYS: usize = 10;
    const MESSAGES: usize = 500;
    let stream = ctx.stream("order").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, MESSAGES, |i| {
        stream.subject(&format!("key{}", i % KEYS))
    })
    .await?;
    ensure!(
        receipts.windows(2).all(|w| w[0].seq < w[1].seq),
        "publish_batch receipts are not in increasing sequence order"
    );
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("order")))
        .await
        .or_fail("consumer")?;
    let got = receive_acking(&*consumer, MESSAGES).await?;
    let mut last_per_key = [None::<usize>; KEYS];
    for delivery in &got {
        let index = index_of(&delivery.message)?;
        let key = index % KEYS;
        ensure_eq!(
            delivery.message.subject,
            stream.subject(&format!("key{key}")),
            "subject of {index}"
        );
        if let Some(previous) = last_per_key[key] {
            ensure!(
                previous < index,
                "key{key}: message {index} delivered after {previous}"
            );
        }
        last_per_key[key] = Some(index);
    }
    Ok(())
}

/// Consumers on different subjects of one stream see nothing of the others.
pub(crate) async fn subject_isolation(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("iso").await?;
    let other = ctx.stream("isoother").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 10, |i| stream.subject(&format!("a.{i}"))).await?;
    publish_numbered(&*broker, 10, |i| stream.subject(&format!("b.{i}"))).await?;
    publish_numbered(&*broker, 10, |i| other.subject(&format!("a.{i}"))).await?;

    let config = ConsumerConfig {
        filter_subjects: vec![stream.subject("a.>")],
        ..ConsumerConfig::durable(ctx.durable("iso"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let got = receive_acking(&*consumer, 10).await?;
    for delivery in &got {
        ensure!(
            delivery.message.subject.starts_with(&stream.subject("a.")),
            "filter a.> leaked {}",
            delivery.message.subject
        );
        ensure_eq!(delivery.message.stream, stream.name, "stream of a delivery");
    }
    expect_nothing(&*consumer, "only 10 messages match the filter").await?;

    let whole = broker
        .consumer(&other.name, ConsumerConfig::durable(ctx.durable("isoall")))
        .await
        .or_fail("consumer on the other stream")?;
    let got = receive_acking(&*whole, 10).await?;
    ensure!(
        got.iter()
            .all(|d| d.message.subject.starts_with(&other.prefix)),
        "the other stream delivered a foreign subject"
    );
    expect_nothing(&*whole, "the other stream holds 10 messages").await
}

/// A consumer created after the messages were published gets all of them.
pub(crate) async fn new_subscriber_receives_old_events(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("old").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 50, |i| stream.subject(&format!("k{i}"))).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let consumer = broker
        .consumer(&stream.name, ConsumerConfig::durable(ctx.durable("late")))
        .await
        .or_fail("consumer")?;
    let got = receive_acking(&*consumer, 50).await?;
    ensure_eq!(
        seqs(&got),
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        "sequences received by the late consumer"
    );
    Ok(())
}

/// Two durables (consumer groups) with two workers each: every group gets
/// every message, shared among its workers.
pub(crate) async fn consumer_groups_each_get_everything(ctx: Ctx) -> Verdict {
    const MESSAGES: usize = 300;
    const WORKERS: usize = 2;
    let stream = ctx.stream("groups").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, MESSAGES, |i| {
        stream.subject(&format!("k{}", i % 5))
    })
    .await?;
    let all: BTreeSet<u64> = receipts.iter().map(|r| r.seq).collect();
    for group in ["billing", "search"] {
        let durable = ctx.durable(group);
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let consumer = broker
                .consumer(&stream.name, ConsumerConfig::durable(durable.clone()))
                .await
                .or_fail("bind worker")?;
            workers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut idle_rounds = 0;
                while idle_rounds < 3 {
                    let batch = consumer
                        .fetch(25, Duration::from_millis(500))
                        .await
                        .or_fail("fetch")?;
                    if batch.is_empty() {
                        idle_rounds += 1;
                    }
                    for delivery in batch {
                        delivery.ack().await.or_fail("ack")?;
                        seen.push(delivery.message.seq);
                    }
                }
                Ok::<_, crate::conformance::Failure>(seen)
            }));
        }
        let mut union = BTreeSet::new();
        for task in workers {
            union.extend(task.await.or_fail("worker task")??);
        }
        ensure_eq!(union, all, "sequences seen by group {group}");
        let info = broker
            .consumer_info(&stream.name, &durable)
            .await
            .or_fail("consumer_info")?;
        ensure_eq!(info.num_pending, 0, "group {group} pending");
        ensure_eq!(info.num_ack_pending, 0, "group {group} ack pending");
    }
    let listed: Vec<String> = broker
        .consumers(&stream.name)
        .await
        .or_fail("consumers")?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut expected = vec![ctx.durable("billing"), ctx.durable("search")];
    expected.sort();
    ensure_eq!(listed, expected, "consumers listed by name");
    Ok(())
}

/// A consumer without acks yet keeps its deliveries unacknowledged.
pub(crate) async fn unacked_stay_pending(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("unacked").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 3, |i| stream.subject(&format!("k{i}"))).await?;
    let consumer = broker
        .consumer(
            &stream.name,
            ConsumerConfig::durable(ctx.durable("unacked")),
        )
        .await
        .or_fail("consumer")?;
    let got = receive(&*consumer, 3, false).await?;
    let info = consumer.info().await.or_fail("info")?;
    ensure_eq!(info.num_ack_pending, 3, "ack pending before any ack");
    ensure_eq!(info.num_pending, 0, "pending after all were delivered");
    for delivery in &got {
        delivery.ack().await.or_fail("ack")?;
    }
    let info = consumer.info().await.or_fail("info")?;
    ensure_eq!(info.num_ack_pending, 0, "ack pending after acks");
    ensure_eq!(
        info.ack_floor_stream_seq,
        got[2].message.seq,
        "ack floor after acks"
    );
    Ok(())
}
