//! Where consumers and reads start, and which subjects they see.

use std::time::Duration;

use backbone_broker::{
    ConsumerConfig, ConsumerErrorKind, DeliverPolicy, ReadErrorKind, ReadRequest, ReadStart,
    StoredMessage, StreamConfig, StreamErrorKind,
};

use crate::conformance::support::{
    Ctx, OrFail, Verdict, ensure, ensure_eq, expect_kind, expect_nothing, publish_numbered,
    read_all, receive_acking, seqs,
};

fn message_seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// `ByStartTime` and `ReadStart::Time` start at the first message stored at
/// or after the time.
pub(crate) async fn start_by_time(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("bytime").await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 5, |i| stream.subject(&format!("early{i}"))).await?;
    // Stored times come from the broker's clock; a gap keeps the batches apart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = publish_numbered(&*broker, 5, |i| stream.subject(&format!("late{i}"))).await?;
    let later_seqs: Vec<u64> = later.iter().map(|r| r.seq).collect();
    let start = broker
        .get(&stream.name, later[0].seq)
        .await
        .or_fail("get")?
        .time;

    let read = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            start: ReadStart::Time(start),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(
        message_seqs(&read),
        later_seqs,
        "read from the time of the later batch"
    );

    let config = ConsumerConfig {
        deliver_policy: DeliverPolicy::ByStartTime(start),
        ..ConsumerConfig::durable(ctx.durable("bytime"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let got = receive_acking(&*consumer, 5).await?;
    ensure_eq!(
        seqs(&got),
        later_seqs,
        "consumer from the time of the later batch"
    );
    expect_nothing(&*consumer, "only the later batch is at or after the time").await?;

    let until = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            end_time: Some(start - Duration::from_millis(150)),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(until.len(), 5, "read ending before the later batch");
    Ok(())
}

/// `ByStartSequence` and `ReadStart::Sequence` start at that sequence;
/// `DeliverPolicy::New` only gets later messages.
pub(crate) async fn start_by_sequence(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("byseq").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 10, |i| stream.subject(&format!("k{i}"))).await?;
    let from = receipts[6].seq;
    let expected: Vec<u64> = receipts[6..].iter().map(|r| r.seq).collect();
    let config = ConsumerConfig {
        deliver_policy: DeliverPolicy::ByStartSequence(from),
        ..ConsumerConfig::durable(ctx.durable("byseq"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let got = receive_acking(&*consumer, expected.len()).await?;
    ensure_eq!(seqs(&got), expected, "consumer from sequence {from}");
    expect_nothing(&*consumer, "nothing precedes the start sequence").await?;

    let read = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            start: ReadStart::Sequence(from),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(message_seqs(&read), expected, "read from sequence {from}");

    let config = ConsumerConfig {
        deliver_policy: DeliverPolicy::New,
        ..ConsumerConfig::durable(ctx.durable("new"))
    };
    let fresh = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    expect_nothing(&*fresh, "DeliverPolicy::New skips stored messages").await?;
    let newer = publish_numbered(&*broker, 2, |i| stream.subject(&format!("n{i}"))).await?;
    let got = receive_acking(&*fresh, 2).await?;
    ensure_eq!(
        seqs(&got),
        newer.iter().map(|r| r.seq).collect::<Vec<_>>(),
        "messages after creation"
    );
    Ok(())
}

/// A consumer's filter and a read's filter see only matching subjects, with
/// wildcards, and report the right pending count.
pub(crate) async fn filters(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("filter").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 30, |i| {
        let kind = ["user.followed", "user.unfollowed", "payment.received"][i % 3];
        stream.subject(&format!("{kind}.u{}", i % 4))
    })
    .await?;
    let pattern = stream.subject("user.*.u1");
    let expected: Vec<u64> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2 && i % 4 == 1)
        .map(|(_, r)| r.seq)
        .collect();
    let config = ConsumerConfig {
        filter_subjects: vec![pattern.clone()],
        ..ConsumerConfig::durable(ctx.durable("filter"))
    };
    let consumer = broker
        .consumer(&stream.name, config)
        .await
        .or_fail("consumer")?;
    let info = consumer.info().await.or_fail("info")?;
    ensure_eq!(
        info.num_pending,
        expected.len() as u64,
        "pending of the filtered consumer"
    );
    let got = receive_acking(&*consumer, expected.len()).await?;
    ensure_eq!(seqs(&got), expected, "filtered consumer {pattern}");
    expect_nothing(&*consumer, "nothing else matches the filter").await?;

    let read = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            filter: Some(pattern.clone()),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(message_seqs(&read), expected, "filtered read {pattern}");

    let payments = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            filter: Some(stream.subject("payment.>")),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(payments.len(), 10, "read filtered on payment.>");
    ensure!(
        payments
            .iter()
            .all(|m| m.subject.starts_with(&stream.subject("payment."))),
        "payment.> read leaked another subject"
    );
    Ok(())
}

/// Several filter subjects work where the broker claims the feature, and
/// fail with `Unsupported` (not silently ignored) where it does not.
pub(crate) async fn multiple_filter_subjects(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("multi").await?;
    let broker = ctx.broker().await;
    let receipts =
        publish_numbered(&*broker, 12, |i| stream.subject(&format!("k{}", i % 3))).await?;
    let config = ConsumerConfig {
        filter_subjects: vec![stream.subject("k0"), stream.subject("k2")],
        ..ConsumerConfig::durable(ctx.durable("multi"))
    };
    let result = broker.consumer(&stream.name, config).await;
    if !broker.features().multiple_filter_subjects {
        return expect_kind(
            result.map(|c| c.name().to_owned()),
            ConsumerErrorKind::Unsupported,
            "two filters",
        );
    }
    let consumer = result.or_fail("consumer with two filters")?;
    let expected: Vec<u64> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, r)| r.seq)
        .collect();
    let got = receive_acking(&*consumer, expected.len()).await?;
    ensure_eq!(seqs(&got), expected, "messages of k0 and k2");
    expect_nothing(&*consumer, "k1 is filtered out").await
}

/// Consumers of a missing stream fail with `StreamNotFound`; unknown
/// durables with `ConsumerNotFound`.
pub(crate) async fn consumer_errors(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("cerr").await?;
    let broker = ctx.broker().await;
    let missing = format!("{}_MISSING", stream.name);
    expect_kind(
        broker
            .consumer(&missing, ConsumerConfig::durable(ctx.durable("cerr")))
            .await
            .map(|c| c.name().to_owned()),
        ConsumerErrorKind::StreamNotFound,
        "consumer on a missing stream",
    )?;
    expect_kind(
        broker
            .consumer_info(&stream.name, &ctx.durable("nobody"))
            .await,
        ConsumerErrorKind::ConsumerNotFound,
        "consumer_info of an unknown durable",
    )?;
    expect_kind(
        broker
            .delete_consumer(&stream.name, &ctx.durable("nobody"))
            .await,
        ConsumerErrorKind::ConsumerNotFound,
        "delete of an unknown durable",
    )?;
    expect_kind(
        broker
            .consumer(&stream.name, ConsumerConfig::durable("bad name.with*chars"))
            .await
            .map(|c| c.name().to_owned()),
        ConsumerErrorKind::InvalidConfig,
        "consumer with an invalid durable name",
    )
}

/// One subject grammar for every adapter: a pattern with a wildcard inside
/// a token (`a*`), a `>` before the end, or whitespace is refused with the
/// same kind everywhere: `InvalidConfig` for a stream's subjects and a
/// consumer's filter, `InvalidRequest` for a read's filter. Turning an
/// immutable log's `deny_delete` off is `ImmutableSetting` everywhere.
pub(crate) async fn subject_rules_are_shared(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("rules").await?;
    let broker = ctx.broker().await;
    for bad in [
        stream.subject("a*"),
        stream.subject("a>"),
        format!("{}.>.x", stream.prefix),
        stream.subject("a b"),
    ] {
        expect_kind(
            broker
                .ensure_stream(&StreamConfig {
                    name: format!("{}_BAD", stream.name),
                    subjects: vec![bad.clone()],
                    ..StreamConfig::default()
                })
                .await,
            StreamErrorKind::InvalidConfig,
            &format!("stream on {bad:?}"),
        )?;
        expect_kind(
            broker
                .consumer(
                    &stream.name,
                    ConsumerConfig {
                        filter_subjects: vec![bad.clone()],
                        ..ConsumerConfig::durable(ctx.durable("rules"))
                    },
                )
                .await
                .map(|c| c.name().to_owned()),
            ConsumerErrorKind::InvalidConfig,
            &format!("consumer filtering {bad:?}"),
        )?;
        expect_kind(
            broker
                .read(
                    &stream.name,
                    ReadRequest {
                        filter: Some(bad.clone()),
                        ..Default::default()
                    },
                )
                .await
                .map(|_| ()),
            ReadErrorKind::InvalidRequest,
            &format!("read filtering {bad:?}"),
        )?;
    }
    let (immutable, _) = ctx.stream_config(
        "immutable",
        StreamConfig {
            deny_delete: true,
            ..StreamConfig::default()
        },
    );
    broker
        .ensure_stream(&immutable)
        .await
        .or_fail("ensure the immutable stream")?;
    expect_kind(
        broker
            .ensure_stream(&StreamConfig {
                deny_delete: false,
                ..immutable
            })
            .await,
        StreamErrorKind::ImmutableSetting {
            setting: "deny_delete".into(),
        },
        "turning deny_delete off",
    )
}
