//! The log itself: deduplication, optimistic append, routing, random access,
//! ordered reads, stream state and purge rules.

use backbone_broker::{
    OutboundMessage, ProvisionOutcome, PublishErrorKind, ReadErrorKind, ReadRequest, ReadStart,
    StreamConfig, StreamErrorKind, message::MSG_ID_HEADER,
};

use crate::conformance::support::{
    Ctx, OrFail, Verdict, ensure, ensure_eq, expect_kind, index_of, publish_numbered, read_all,
};

/// A repeated message id is acknowledged as a duplicate and stored once.
pub(crate) async fn dedup_window(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("dedup").await?;
    let broker = ctx.broker().await;
    let message = OutboundMessage::new(stream.subject("k"), "once").with_msg_id("evt-1");
    let first = broker
        .publish(message.clone())
        .await
        .or_fail("first publish")?;
    ensure!(!first.duplicate, "first publish reported as duplicate");
    let second = broker
        .publish(message.clone())
        .await
        .or_fail("second publish")?;
    ensure!(
        second.duplicate,
        "same msg id not reported as duplicate: {second:?}"
    );
    ensure_eq!(second.stream, stream.name, "duplicate receipt stream");
    let in_batch = broker
        .publish_batch(vec![message.clone(), message.clone().with_msg_id("evt-2")])
        .await;
    ensure_eq!(in_batch.len(), 2, "batch results");
    let mut in_batch = in_batch.into_iter();
    let repeated = in_batch.next().into_iter().flatten().next();
    ensure!(
        repeated.as_ref().is_some_and(|r| r.duplicate),
        "msg id repeated in a batch not reported as duplicate: {repeated:?}"
    );
    let fresh = in_batch.next().into_iter().flatten().next();
    ensure!(
        fresh.as_ref().is_some_and(|r| !r.duplicate),
        "new msg id in a batch not stored: {fresh:?}"
    );
    let info = broker
        .stream_info(&stream.name)
        .await
        .or_fail("stream_info")?;
    ensure_eq!(info.messages, 2, "messages stored");
    let stored = broker.get(&stream.name, first.seq).await.or_fail("get")?;
    ensure_eq!(
        stored.headers.get(MSG_ID_HEADER),
        Some("evt-1"),
        "stored msg id header"
    );
    Ok(())
}

/// `expected_last_subject_seq` stores only on a match and reports the
/// subject's actual last sequence otherwise.
pub(crate) async fn expected_last_subject_seq(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("cas").await?;
    let broker = ctx.broker().await;
    let subject = stream.subject("account.a-1");
    publish_numbered(&*broker, 3, |_| stream.subject("other")).await?;
    let first = broker
        .publish(OutboundMessage::new(subject.clone(), "v1").expecting_last_subject_seq(0))
        .await
        .or_fail("append to an empty subject")?;
    expect_kind(
        broker
            .publish(OutboundMessage::new(subject.clone(), "stale").expecting_last_subject_seq(0))
            .await,
        PublishErrorKind::WrongLastSequence { actual: first.seq },
        "append expecting an empty subject",
    )?;
    let second = broker
        .publish(OutboundMessage::new(subject.clone(), "v2").expecting_last_subject_seq(first.seq))
        .await
        .or_fail("append after the last sequence")?;
    ensure!(second.seq > first.seq, "sequence did not increase");
    expect_kind(
        broker
            .publish(
                OutboundMessage::new(subject.clone(), "stale")
                    .expecting_last_subject_seq(first.seq),
            )
            .await,
        PublishErrorKind::WrongLastSequence { actual: second.seq },
        "append expecting an older sequence",
    )?;
    let last = broker
        .last_on_subject(&stream.name, &subject)
        .await
        .or_fail("last_on_subject")?;
    ensure_eq!(
        last.map(|m| m.payload),
        Some("v2".into()),
        "rejected appends stored nothing"
    );
    Ok(())
}

/// Subjects no stream captures fail with `NoStream`; malformed ones with
/// `InvalidSubject`. Nothing is stored.
pub(crate) async fn publish_routing_errors(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("route").await?;
    let broker = ctx.broker().await;
    expect_kind(
        broker
            .publish(OutboundMessage::new(
                format!("unrouted.{}.x", stream.name),
                "x",
            ))
            .await,
        PublishErrorKind::NoStream,
        "publish to an unrouted subject",
    )?;
    for bad in [
        String::new(),
        stream.subject("*"),
        stream.subject(">"),
        format!("{}..x", stream.prefix),
        stream.subject("has space"),
        format!("{}.", stream.prefix),
    ] {
        expect_kind(
            broker.publish(OutboundMessage::new(bad.clone(), "x")).await,
            PublishErrorKind::InvalidSubject,
            &format!("publish to {bad:?}"),
        )?;
    }
    let info = broker
        .stream_info(&stream.name)
        .await
        .or_fail("stream_info")?;
    ensure_eq!(info.messages, 0, "messages stored after rejected publishes");
    Ok(())
}

/// `get` returns the message of a sequence, `MessageNotFound` past the end
/// and `StreamNotFound` for a missing stream.
pub(crate) async fn get_by_seq(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("get").await?;
    let broker = ctx.broker().await;
    let receipts = publish_numbered(&*broker, 5, |i| stream.subject(&format!("k{i}"))).await?;
    for (i, receipt) in receipts.iter().enumerate() {
        let message = broker.get(&stream.name, receipt.seq).await.or_fail("get")?;
        ensure_eq!(message.seq, receipt.seq, "sequence of get");
        ensure_eq!(index_of(&message)?, i, "payload of get");
        ensure_eq!(
            message.subject,
            stream.subject(&format!("k{i}")),
            "subject of get"
        );
    }
    let past = receipts[4].seq + 1;
    expect_kind(
        broker.get(&stream.name, past).await,
        ReadErrorKind::MessageNotFound,
        "get past the end",
    )?;
    expect_kind(
        broker.get(&stream.name, 0).await,
        ReadErrorKind::MessageNotFound,
        "get sequence 0",
    )?;
    expect_kind(
        broker.get(&format!("{}_MISSING", stream.name), 1).await,
        ReadErrorKind::StreamNotFound,
        "get from a missing stream",
    )
}

/// `last_on_subject` gives the newest message of a subject, `None` if none.
pub(crate) async fn last_on_subject(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("last").await?;
    let broker = ctx.broker().await;
    let receipts =
        publish_numbered(&*broker, 9, |i| stream.subject(&format!("k{}", i % 3))).await?;
    for key in 0..3 {
        let last = broker
            .last_on_subject(&stream.name, &stream.subject(&format!("k{key}")))
            .await
            .or_fail("last_on_subject")?
            .ok_or_else(|| {
                crate::conformance::Failure::new(format!("no last message on k{key}"))
            })?;
        ensure_eq!(last.seq, receipts[6 + key].seq, "last sequence on k{key}");
        ensure_eq!(index_of(&last)?, 6 + key, "last payload on k{key}");
    }
    let none = broker
        .last_on_subject(&stream.name, &stream.subject("never"))
        .await
        .or_fail("last_on_subject of an empty subject")?;
    ensure!(
        none.is_none(),
        "an unused subject has a last message: {none:?}"
    );
    expect_kind(
        broker
            .last_on_subject(&format!("{}_MISSING", stream.name), &stream.subject("k0"))
            .await,
        ReadErrorKind::StreamNotFound,
        "last_on_subject of a missing stream",
    )
}

/// Ordered reads honour start sequence, end sequence and filter together.
pub(crate) async fn read_ranges(ctx: Ctx) -> Verdict {
    let stream = ctx.stream("range").await?;
    let broker = ctx.broker().await;
    let receipts =
        publish_numbered(&*broker, 20, |i| stream.subject(&format!("k{}", i % 2))).await?;
    let seq = |i: usize| receipts[i].seq;
    let all = read_all(&*broker, &stream.name, ReadRequest::default()).await?;
    ensure_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (0..20).map(seq).collect::<Vec<_>>(),
        "full read"
    );

    let window = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            start: ReadStart::Sequence(seq(5)),
            end_seq: Some(seq(9)),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(
        window.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (5..=9).map(seq).collect::<Vec<_>>(),
        "read 5..=9"
    );

    let odd = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            start: ReadStart::Sequence(seq(4)),
            end_seq: Some(seq(15)),
            filter: Some(stream.subject("k1")),
            ..Default::default()
        },
    )
    .await?;
    ensure_eq!(
        odd.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (4..=15).filter(|i| i % 2 == 1).map(seq).collect::<Vec<_>>(),
        "filtered read of k1 in 4..=15"
    );
    let past_end = read_all(
        &*broker,
        &stream.name,
        ReadRequest {
            start: ReadStart::Sequence(seq(19) + 1),
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        past_end.is_empty(),
        "read past the end returned {} messages",
        past_end.len()
    );
    let missing = broker
        .read(&format!("{}_MISSING", stream.name), ReadRequest::default())
        .await
        .map(|_| ());
    expect_kind(
        missing,
        ReadErrorKind::StreamNotFound,
        "read of a missing stream",
    )
}

/// Stream info counts messages and sequences; `streams` lists it;
/// `ensure_stream` is idempotent.
pub(crate) async fn stream_info_counts(ctx: Ctx) -> Verdict {
    let (config, stream) = ctx.stream_config("info", StreamConfig::default());
    let broker = ctx.broker().await;
    let created = broker
        .ensure_stream(&config)
        .await
        .or_fail("ensure_stream")?;
    ensure_eq!(created, ProvisionOutcome::Created, "first ensure_stream");
    let again = broker
        .ensure_stream(&config)
        .await
        .or_fail("ensure_stream again")?;
    ensure_eq!(again, ProvisionOutcome::Unchanged, "second ensure_stream");

    let empty = broker
        .stream_info(&stream.name)
        .await
        .or_fail("stream_info")?;
    ensure_eq!(
        (empty.messages, empty.first_seq, empty.last_seq),
        (0, 0, 0),
        "empty stream counts"
    );
    ensure_eq!(
        empty.config.subjects,
        config.subjects,
        "configured subjects"
    );
    ensure_eq!(
        empty.config.deny_purge,
        config.deny_purge,
        "configured deny_purge"
    );

    let receipts = publish_numbered(&*broker, 25, |i| stream.subject(&format!("k{i}"))).await?;
    let info = broker
        .stream_info(&stream.name)
        .await
        .or_fail("stream_info")?;
    ensure_eq!(info.messages, 25, "messages");
    ensure_eq!(info.first_seq, receipts[0].seq, "first sequence");
    ensure_eq!(info.last_seq, receipts[24].seq, "last sequence");
    ensure!(info.bytes > 0, "bytes of a non-empty stream is 0");
    ensure!(
        info.first_time.is_some() && info.last_time.is_some(),
        "missing first/last time"
    );
    ensure!(
        info.first_time <= info.last_time,
        "first time after last time"
    );
    ensure_eq!(info.consumers, 0, "consumers of a new stream");

    let listed = broker.streams().await.or_fail("streams")?;
    ensure!(
        listed.iter().any(|s| s.config.name == stream.name),
        "streams() misses {}",
        stream.name
    );
    ensure!(
        listed
            .windows(2)
            .all(|w| w[0].config.name < w[1].config.name),
        "streams() is not ordered by name"
    );
    expect_kind(
        broker
            .stream_info(&format!("{}_MISSING", stream.name))
            .await,
        StreamErrorKind::StreamNotFound,
        "stream_info of a missing stream",
    )
}

/// The event log configuration denies purge; a purgeable stream purges by
/// filter and entirely, keeping sequences going up.
pub(crate) async fn purge_rules(ctx: Ctx) -> Verdict {
    let log = ctx.stream_with("log", StreamConfig::event_log()).await?;
    let broker = ctx.broker().await;
    publish_numbered(&*broker, 3, |i| log.subject(&format!("k{i}"))).await?;
    expect_kind(
        broker.purge(&log.name, None).await,
        StreamErrorKind::Denied,
        "purge of the event log",
    )?;
    expect_kind(
        broker.purge(&log.name, Some(&log.subject("k0"))).await,
        StreamErrorKind::Denied,
        "filtered purge of the event log",
    )?;
    let info = broker.stream_info(&log.name).await.or_fail("stream_info")?;
    ensure_eq!(info.messages, 3, "event log messages after denied purges");

    let letters = ctx.stream_with("dlq", StreamConfig::dead_letters()).await?;
    let receipts =
        publish_numbered(&*broker, 6, |i| letters.subject(&format!("k{}", i % 2))).await?;
    let purged = broker
        .purge(&letters.name, Some(&letters.subject("k0")))
        .await
        .or_fail("filtered purge")?;
    ensure_eq!(purged, 3, "messages purged by filter");
    let left = read_all(&*broker, &letters.name, ReadRequest::default()).await?;
    ensure!(
        left.iter().all(|m| m.subject == letters.subject("k1")),
        "filtered purge left another subject"
    );
    let purged = broker.purge(&letters.name, None).await.or_fail("purge")?;
    ensure_eq!(purged, 3, "messages purged");
    let next = publish_numbered(&*broker, 1, |_| letters.subject("k0")).await?;
    ensure!(
        next[0].seq > receipts[5].seq,
        "sequence went back after purge: {}",
        next[0].seq
    );
    expect_kind(
        broker
            .purge(&format!("{}_MISSING", letters.name), None)
            .await,
        StreamErrorKind::StreamNotFound,
        "purge of a missing stream",
    )?;
    Ok(())
}
