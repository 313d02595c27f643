//! The storage ceilings of the embedded path, measured in the same run as
//! Backbone on the same disk: what the embedded adapter and a read model
//! would cost if they did nothing but write their bytes.
//!
//! - [`file_append`]: the same message bytes (subject, headers, payload)
//!   appended to one plain file in length + CRC frames, with one
//!   `fdatasync` per write group of the size Backbone's publish groups
//!   have: the ceiling for the embedded log's durable batched publish.
//! - [`sled_writes`]: the key/value writes a rebuild of the benchmark read
//!   model makes (a read-modify-write count per conversation, the
//!   applied-event record per event, the checkpoint), applied to sled with
//!   the read-model store's settings in `apply_batch` groups of the
//!   rebuild's batch size, each flushed: the ceiling for a read model.
//!
//! Both prepare their input before the clock starts: building envelopes is
//! Backbone's work and is charged to Backbone, not to the baseline.

use std::{collections::BTreeMap, fs::OpenOptions, io::Write as _, path::Path, time::Instant};

use backbone_broker::OutboundMessage;

use super::{
    error::{BenchError, BenchErrorKind},
    report::Throughput,
    workload::{Workload, conversation},
};

/// The read-model store's key tags (`consumers/src/store.rs`): data keys
/// and the checkpoint key, and the applied-event record prefix
/// (`consumers/src/dedup.rs`).
const DATA_TAG: u8 = b'd';
const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";
const APPLIED_PREFIX: &[u8] = b"mapplied\x1f";

fn storage_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::with_detail(BenchErrorKind::Backbone, format!("raw storage: {e}"))
}

/// One message as the bytes a log keeps of it.
fn frame(message: &OutboundMessage) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.payload.len() + 256);
    body.extend_from_slice(message.subject.as_bytes());
    body.push(b'\n');
    for (name, value) in message.headers.iter() {
        body.extend_from_slice(name.as_bytes());
        body.push(b':');
        body.extend_from_slice(value.as_bytes());
        body.push(b'\n');
    }
    body.extend_from_slice(&message.payload);
    let mut framed = Vec::with_capacity(body.len() + 8);
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// Appends `events` of `workload`'s messages to a file in `dir`, syncing
/// once per `group` of them.
pub(crate) fn file_append(
    dir: &Path,
    workload: &Workload,
    events: u64,
    group: u64,
) -> Result<Throughput, BenchError> {
    let frames: Vec<Vec<u8>> = (0..events)
        .map(|n| frame(&workload.typed_message(n)))
        .collect();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw-append.log"))
        .map_err(storage_error)?;
    let group = usize::try_from(group.max(1)).unwrap_or(usize::MAX);
    let mut buffer = Vec::new();
    let started = Instant::now();
    for chunk in frames.chunks(group) {
        buffer.clear();
        for framed in chunk {
            buffer.extend_from_slice(framed);
        }
        file.write_all(&buffer).map_err(storage_error)?;
        file.sync_data().map_err(storage_error)?;
    }
    Ok(Throughput::new(events, started.elapsed()))
}

/// Applies the writes of a rebuild over `events` events to a fresh sled
/// database in `dir`, `batch` events per flushed `apply_batch`.
pub(crate) fn sled_writes(
    dir: &Path,
    events: u64,
    batch: u64,
    cache_capacity: u64,
) -> Result<Throughput, BenchError> {
    let ids: Vec<(Vec<u8>, Vec<u8>)> = (0..events)
        .map(|n| {
            let mut data = vec![DATA_TAG];
            data.extend_from_slice(b"conversation/");
            data.extend_from_slice(conversation(n).as_bytes());
            let mut applied = APPLIED_PREFIX.to_vec();
            applied.extend_from_slice(format!("{n:036}").as_bytes());
            (data, applied)
        })
        .collect();
    let db = sled::Config::new()
        .path(dir.join("raw-sled"))
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_capacity)
        .open()
        .map_err(storage_error)?;
    let started = Instant::now();
    let mut seq = 0u64;
    for group in ids.chunks(usize::try_from(batch.max(1)).unwrap_or(usize::MAX)) {
        let mut counts: BTreeMap<&[u8], u64> = BTreeMap::new();
        let mut batch = sled::Batch::default();
        for (data, applied) in group {
            seq += 1;
            let count = match counts.get(data.as_slice()) {
                Some(count) => *count,
                None => match db.get(data).map_err(storage_error)? {
                    Some(v) => serde_json::from_slice(&v).map_err(storage_error)?,
                    None => 0,
                },
            };
            counts.insert(data, count + 1);
            let mut record = [0u8; 16];
            record[..8].copy_from_slice(&seq.to_be_bytes());
            batch.insert(applied.as_slice(), &record);
        }
        for (key, count) in counts {
            let value = serde_json::to_vec(&count).map_err(storage_error)?;
            batch.insert(key, value);
        }
        batch.insert(CHECKPOINT_KEY, &seq.to_be_bytes());
        db.apply_batch(batch).map_err(storage_error)?;
        db.flush().map_err(storage_error)?;
    }
    Ok(Throughput::new(events, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_write_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let workload = Workload::new(128);
        let appended = file_append(dir.path(), &workload, 100, 32).unwrap();
        assert_eq!(appended.events, 100);
        let log = std::fs::read(dir.path().join("raw-append.log")).unwrap();
        assert!(log.len() > 100 * 128, "every frame holds its payload");
        let written = sled_writes(dir.path(), 100, 32, 1 << 20).unwrap();
        assert_eq!(written.events, 100);
        // sled releases the dropped database's lock on a thread of its own.
        let db = backbone_core::release::retry_while_locked(
            || sled::open(dir.path().join("raw-sled")),
            |e| matches!(e, sled::Error::Io(_)),
        )
        .unwrap();
        assert_eq!(
            db.get(CHECKPOINT_KEY).unwrap().unwrap().as_ref(),
            100u64.to_be_bytes()
        );
    }
}
