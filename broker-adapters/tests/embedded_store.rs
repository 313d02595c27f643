//! The embedded log on disk: persistence across reopen, the directory lock,
//! corruption detection and the format version.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use backbone_broker::{
    Broker, ConnectErrorKind, ConsumerConfig, OutboundMessage, ReadErrorKind, ReadRequest,
    StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};
use futures::StreamExt;

const HOLD_ENV: &str = "BACKBONE_TEST_HOLD_STORE";

fn open(path: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(EmbeddedOptions {
        path: path.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

fn open_err(path: &Path) -> ConnectErrorKind {
    EmbeddedBroker::open(EmbeddedOptions {
        path: path.to_path_buf(),
        ..Default::default()
    })
    .unwrap_err()
    .kind()
    .clone()
}

async fn with_events(path: &Path, n: u64) -> EmbeddedBroker {
    let b = open(path);
    b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
    for i in 1..=n {
        b.publish(OutboundMessage::new(
            format!("events.a.{i}"),
            format!("payload-{i}"),
        ))
        .await
        .unwrap();
    }
    b
}

#[tokio::test]
async fn messages_streams_and_consumer_progress_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_events(dir.path(), 4).await;
    assert!(b.features().persistent);
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("proj"))
        .await
        .unwrap();
    let batch = c.fetch(3, Duration::from_millis(50)).await.unwrap();
    batch[0].ack().await.unwrap();
    batch[1].ack().await.unwrap();
    b.close().await.unwrap();
    drop((batch, c, b));

    let b = open(dir.path());
    let info = b.stream_info("EVENTS").await.unwrap();
    assert_eq!((info.messages, info.first_seq, info.last_seq), (4, 1, 4));
    assert_eq!(&b.get("EVENTS", 4).await.unwrap().payload[..], b"payload-4");
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("proj"))
        .await
        .unwrap();
    let again: Vec<(u64, u32)> = c
        .fetch(10, Duration::from_millis(50))
        .await
        .unwrap()
        .iter()
        .map(|d| (d.message.seq, d.delivery_count))
        .collect();
    assert_eq!(
        again,
        vec![(3, 2), (4, 1)],
        "acked never again; unacked redelivered"
    );
    assert_eq!(
        b.publish(OutboundMessage::new("events.a.5", "x"))
            .await
            .unwrap()
            .seq,
        5
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = EmbeddedBroker::open(EmbeddedOptions {
        path: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::Locked);
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "names the directory: {err}"
    );
    drop(first);
    open(dir.path());
}

/// Child side of [`another_process_holding_the_store_locks_it`]: ignored,
/// so a test run does not count it; the parent runs it with `--ignored`.
#[test]
#[ignore = "child process of another_process_holding_the_store_locks_it"]
fn hold_store_for_parent() {
    let path = std::env::var(HOLD_ENV).expect("run by the parent test, with the store path");
    let _held = open(Path::new(&path));
    println!("holding");
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn another_process_holding_the_store_locks_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hold_store_for_parent",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("holding")),
        "child opened the store"
    );
    assert_eq!(open_err(dir.path()), ConnectErrorKind::Locked);
    child.kill().unwrap();
    child.wait().unwrap();
    open(dir.path());
}

/// The segment file holding `EVENTS` (the only one of a small log).
fn segment_file(store: &Path) -> std::path::PathBuf {
    let dir = store.join("segments").join("EVENTS");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    files.pop().unwrap()
}

/// Flips the last byte of message `seq`'s frame, walking the frames as
/// `docs/embedded-log-format.md` describes them (16-byte segment header,
/// then `[value len u32][seq u64][header CRC u32][value]` per frame).
fn flip_last_byte_of_message(store: &Path, seq: u64) {
    let path = segment_file(store);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut at = 16;
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let found = u64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap());
        if found == seq {
            bytes[at + 16 + len - 1] ^= 0x01;
            break;
        }
        at += 16 + len;
    }
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test]
async fn a_damaged_entry_reads_as_corrupted_never_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let b = with_events(dir.path(), 3).await;
    b.close().await.unwrap();
    drop(b);
    flip_last_byte_of_message(dir.path(), 2);
    let b = open(dir.path());
    assert_eq!(
        b.get("EVENTS", 2).await.unwrap_err().kind(),
        &ReadErrorKind::Corrupted
    );
    let items: Vec<_> = b
        .read("EVENTS", ReadRequest::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().seq, 1);
    assert_eq!(
        items[1].as_ref().unwrap_err().kind(),
        &ReadErrorKind::Corrupted
    );
    assert_eq!(items[2].as_ref().unwrap().seq, 3);
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("c"))
        .await
        .unwrap();
    let delivered: Vec<u64> = c
        .fetch(10, Duration::from_millis(50))
        .await
        .unwrap()
        .iter()
        .map(|d| d.message.seq)
        .collect();
    assert_eq!(
        delivered,
        vec![1, 3],
        "the damaged entry is never delivered"
    );
    let exhausted = c.take_exhausted().await.unwrap();
    assert_eq!(
        exhausted,
        vec![backbone_broker::Exhausted {
            stream_seq: 2,
            deliveries: 0
        }]
    );
}

/// Writes `events` to a log at `store`, closes it, and returns its one
/// segment file with the file's bytes.
async fn closed_segment(store: &Path, events: u64) -> (std::path::PathBuf, Vec<u8>) {
    let b = with_events(store, events).await;
    b.close().await.unwrap();
    drop(b);
    let path = segment_file(store);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Offset of message `seq`'s frame in the single segment of `store`.
fn frame_offset(bytes: &[u8], seq: u64) -> usize {
    let mut at = 16;
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if u64::from_be_bytes(bytes[at + 4..at + 12].try_into().unwrap()) == seq {
            return at;
        }
        at += 16 + len;
    }
}

async fn read_all(b: &EmbeddedBroker) -> Vec<Result<u64, ReadErrorKind>> {
    b.read("EVENTS", ReadRequest::default())
        .await
        .unwrap()
        .map(|m| m.map(|m| m.seq).map_err(|e| e.kind().clone()))
        .collect()
        .await
}

#[tokio::test]
async fn a_torn_write_at_the_end_is_cut_and_the_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = closed_segment(dir.path(), 3).await;
    // The start of a fourth frame, as a kill -9 mid-write leaves it.
    let third = frame_offset(&bytes, 3);
    let torn: Vec<u8> = bytes[third..third + 20].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&path, &bytes).unwrap();

    let b = open(dir.path());
    let info = b.stream_info("EVENTS").await.unwrap();
    assert_eq!((info.messages, info.last_seq), (3, 3));
    let receipt = b
        .publish(OutboundMessage::new("events.a.4", "payload-4"))
        .await
        .unwrap();
    assert_eq!(receipt.seq, 4);
    assert_eq!(read_all(&b).await, vec![Ok(1), Ok(2), Ok(3), Ok(4)]);
    assert_eq!(&b.get("EVENTS", 4).await.unwrap().payload[..], b"payload-4");
}

#[tokio::test]
async fn a_damaged_frame_header_reads_as_corrupted_and_the_rest_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = closed_segment(dir.path(), 5).await;
    let second = frame_offset(&bytes, 2);
    bytes[second + 2] ^= 0x55; // its length
    std::fs::write(&path, &bytes).unwrap();

    let b = open(dir.path());
    assert_eq!(b.stream_info("EVENTS").await.unwrap().last_seq, 5);
    assert_eq!(
        read_all(&b).await,
        vec![Ok(1), Err(ReadErrorKind::Corrupted), Ok(3), Ok(4), Ok(5)]
    );
    assert_eq!(
        b.get("EVENTS", 2).await.unwrap_err().kind(),
        &ReadErrorKind::Corrupted
    );
    assert_eq!(
        b.publish(OutboundMessage::new("events.a.6", "x"))
            .await
            .unwrap()
            .seq,
        6
    );
}

#[tokio::test]
async fn a_full_purge_deletes_its_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        path: dir.path().to_path_buf(),
        segment_size: 256,
        ..Default::default()
    };
    let b = EmbeddedBroker::open(options.clone()).unwrap();
    let config = StreamConfig {
        deny_purge: false,
        ..StreamConfig::event_log()
    };
    b.ensure_stream(&config).await.unwrap();
    for i in 1..=40 {
        b.publish(OutboundMessage::new(format!("events.a.{i}"), "p"))
            .await
            .unwrap();
    }
    let segments = || {
        std::fs::read_dir(dir.path().join("segments/EVENTS"))
            .unwrap()
            .count()
    };
    assert!(segments() > 3, "small segments roll over");
    assert_eq!(b.purge("EVENTS", None).await.unwrap(), 40);
    assert_eq!(segments(), 1, "a full purge leaves one empty segment");
    drop(b);
    let b = EmbeddedBroker::open(options).unwrap();
    let info = b.stream_info("EVENTS").await.unwrap();
    assert_eq!((info.messages, info.last_seq), (0, 40));
    assert_eq!(
        b.publish(OutboundMessage::new("events.a.41", "p"))
            .await
            .unwrap()
            .seq,
        41
    );
    assert_eq!(read_all(&b).await, vec![Ok(41)]);
}

#[tokio::test]
async fn an_older_or_unknown_format_version_is_refused() {
    // 2: a store whose messages were sled entries (before segment files).
    for found in [2u8, 99] {
        let dir = tempfile::tempdir().unwrap();
        drop(with_events(dir.path(), 1).await);
        {
            // sled releases the dropped log's lock on a thread of its own.
            let db = backbone_core::release::retry_while_locked(
                || sled::open(dir.path()),
                |e| matches!(e, sled::Error::Io(_)),
            )
            .unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("format_version", &[found])
                .unwrap();
            db.flush().unwrap();
        }
        assert_eq!(
            open_err(dir.path()),
            ConnectErrorKind::UnsupportedFormat { found }
        );
    }
    assert_eq!(EmbeddedBroker::FORMAT_VERSION, 3);
}

#[tokio::test]
async fn oversized_messages_and_bad_subjects_are_refused_on_disk_too() {
    let dir = tempfile::tempdir().unwrap();
    let b = EmbeddedBroker::open(EmbeddedOptions {
        path: dir.path().to_path_buf(),
        max_payload: 100,
        ..Default::default()
    })
    .unwrap();
    b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
    let e = b
        .publish(OutboundMessage::new("events.a.1", vec![0u8; 200]))
        .await
        .unwrap_err();
    assert!(matches!(
        e.kind(),
        backbone_broker::PublishErrorKind::PayloadTooLarge { max: 100, .. }
    ));
    let e = b
        .publish(OutboundMessage::new("events.*", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &backbone_broker::PublishErrorKind::InvalidSubject);
    let e = b
        .publish(OutboundMessage::new("nowhere.x", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &backbone_broker::PublishErrorKind::NoStream);
}
