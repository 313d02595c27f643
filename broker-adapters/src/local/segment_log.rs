//! A stream's messages in append-only segment files: the embedded log's
//! message store (format version 3, `docs/embedded-log-format.md`).
//!
//! A publish group is one `pwrite` of frames encoded once
//! ([`LogBatch`]) and, for its receipt, one `fdatasync`: no per-message
//! tree insert. Segments hold dense sequences, so a sparse index (the
//! offset of every [`POINT_EVERY`]-th frame, kept in memory and as hints in
//! the sled tree `idx/<stream>`) finds any sequence with one short forward
//! read. Purges are metadata in sled (`gone/<stream>`): tombstones for a
//! filtered purge, a floor for a full one (whose segments are deleted).
//! On open every segment's tail after its last index point is read again;
//! a torn frame at the end of the last segment (a crash mid-write) is cut.

use std::{
    collections::BTreeSet,
    fs::{self, File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;

use super::{
    codec::{self, FRAME_HEADER},
    storage::{Log, LogBatch, StorageError},
};

/// The first bytes of every segment file.
const MAGIC: &[u8; 4] = b"BBLG";
/// The format version in a segment header (the store's, see `core.rs`).
const SEGMENT_VERSION: u8 = 3;
/// Bytes of a segment header: magic, version, 3 zero bytes, first sequence.
pub(crate) const SEGMENT_HEADER: u64 = 16;
/// Frames between two index points.
pub(crate) const POINT_EVERY: u64 = 64;
/// Bytes read from a segment per call while scanning.
const READ_BLOCK: usize = 64 * 1024;
/// Key of the full-purge floor in `gone/<stream>` (tombstone keys are 8 bytes).
const FLOOR_KEY: &[u8] = b"floor";

fn io(what: impl std::fmt::Display, e: std::io::Error) -> StorageError {
    StorageError(format!("{what}: {e}"))
}

fn sled_error(e: sled::Error) -> StorageError {
    StorageError(format!("sled: {e}"))
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Sequence of its first frame.
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes of valid data (header and whole frames).
    len: u64,
    /// Offset of frame `first + i * POINT_EVERY`, for each `i` reached.
    points: Vec<u64>,
}

impl Segment {
    fn file_name(first: u64) -> String {
        format!("{first:020}.seg")
    }

    fn create(dir: &Path, first: u64) -> Result<Self, StorageError> {
        let path = dir.join(Self::file_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io(path.display(), e))?;
        let mut header = [0u8; SEGMENT_HEADER as usize];
        header[..4].copy_from_slice(MAGIC);
        header[4] = SEGMENT_VERSION;
        header[8..].copy_from_slice(&first.to_be_bytes());
        file.write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| io(path.display(), e))?;
        sync_dir(dir)?;
        Ok(Self {
            first,
            path,
            file: Arc::new(file),
            len: SEGMENT_HEADER,
            points: Vec::new(),
        })
    }

    fn open(path: PathBuf, first: u64) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(path.display(), e))?;
        let len = file.metadata().map_err(|e| io(path.display(), e))?.len();
        let mut header = [0u8; SEGMENT_HEADER as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io(path.display(), e))?;
        if &header[..4] != MAGIC
            || header[4] != SEGMENT_VERSION
            || header[8..] != first.to_be_bytes()
        {
            return Err(StorageError(format!(
                "{} is not a version {SEGMENT_VERSION} segment starting at {first}",
                path.display()
            )));
        }
        Ok(Self {
            first,
            path,
            file: Arc::new(file),
            len,
            points: Vec::new(),
        })
    }

    fn read(&self, offset: u64, want: usize) -> Result<Vec<u8>, StorageError> {
        let n = usize::try_from(self.len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(want);
        let mut buf = vec![0; n];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| io(self.path.display(), e))?;
        Ok(buf)
    }

    /// The frame header at `offset`, if whole and intact: value length, sequence.
    fn header_at(&self, offset: u64) -> Option<(usize, u64)> {
        if offset + FRAME_HEADER as u64 > self.len {
            return None;
        }
        let mut header = [0u8; FRAME_HEADER];
        self.file.read_exact_at(&mut header, offset).ok()?;
        let (len, seq) = codec::parse_frame_header(&header)?;
        (offset + (FRAME_HEADER + len) as u64 <= self.len).then_some((len, seq))
    }

    /// The next intact frame after a damaged one at `offset` whose sequence
    /// lies in `(after, before)`: a byte-wise search, only run on damage.
    fn resync(&self, offset: u64, after: u64, before: u64) -> Option<(u64, u64)> {
        let mut base = offset + 1;
        while base + FRAME_HEADER as u64 <= self.len {
            let block = self.read(base, READ_BLOCK).ok()?;
            let last = block.len().checked_sub(FRAME_HEADER)?;
            for at in 0..=last {
                let Some((len, seq)) = codec::parse_frame_header(&block[at..]) else {
                    continue;
                };
                let frame_at = base + at as u64;
                if seq > after && seq < before && frame_at + (FRAME_HEADER + len) as u64 <= self.len
                {
                    return Some((frame_at, seq));
                }
            }
            // Overlap by a header, so one split across blocks is seen.
            base += (last + 1) as u64;
        }
        None
    }

    /// True when `seq` is the frame the next index point is for.
    fn is_next_point(&self, seq: u64) -> bool {
        seq - self.first == self.points.len() as u64 * POINT_EVERY
    }

    /// Where to start reading for `seq`: the nearest index point at or
    /// before it (offset, sequence).
    fn start_for(&self, seq: u64) -> (u64, u64) {
        let wanted = usize::try_from((seq - self.first) / POINT_EVERY).unwrap_or(usize::MAX);
        match self
            .points
            .len()
            .checked_sub(1)
            .map(|last| wanted.min(last))
        {
            Some(i) => (self.points[i], self.first + i as u64 * POINT_EVERY),
            None => (SEGMENT_HEADER, self.first),
        }
    }

    /// Reads the frames after the last index point to the end of the data,
    /// adding index points and stepping over damaged frames; returns the
    /// sequence after the last whole frame and the offset after it.
    fn walk_tail(&mut self) -> (u64, u64) {
        let (mut offset, mut seq) = match self.points.last() {
            Some(&o) => (o, self.first + (self.points.len() as u64 - 1) * POINT_EVERY),
            None => (SEGMENT_HEADER, self.first),
        };
        let mut end = (seq, offset);
        loop {
            match self.header_at(offset) {
                Some((len, found)) if found == seq => {
                    if self.is_next_point(seq) {
                        self.points.push(offset);
                    }
                    offset += (FRAME_HEADER + len) as u64;
                    seq += 1;
                    end = (seq, offset);
                }
                _ => match self.resync(offset, seq.saturating_sub(1), u64::MAX) {
                    Some((at, found)) if found >= seq => (offset, seq) = (at, found),
                    _ => return end,
                },
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir.display(), e))
}

/// What a scan and an append share.
#[derive(Debug)]
struct State {
    /// In sequence order; the last one takes appends.
    segments: Vec<Segment>,
    /// Sequences removed by filtered purges.
    gone: BTreeSet<u64>,
    /// Every sequence below it is purged.
    floor: u64,
    next_seq: u64,
    /// An append failed; appends are refused until the store is reopened
    /// (the open cuts what was written).
    broken: bool,
}

impl State {
    /// The end (exclusive) of segment `i`'s sequences.
    fn end_of(&self, i: usize) -> u64 {
        self.segments
            .get(i + 1)
            .map_or(self.next_seq, |next| next.first)
    }

    /// The segment holding `seq`.
    fn segment_of(&self, seq: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.first <= seq);
        i.checked_sub(1)
    }

    /// Frames of segment `i` from `from`, until `out` holds `limit` or the
    /// segment ends; returns the next sequence to read.
    fn scan_segment(
        &self,
        i: usize,
        from: u64,
        limit: usize,
        out: &mut Vec<(u64, Bytes)>,
    ) -> Result<u64, StorageError> {
        let segment = &self.segments[i];
        let end = self.end_of(i);
        let (mut offset, mut seq) = segment.start_for(from);
        let mut block = Bytes::new();
        let mut block_at = offset;
        while seq < end && out.len() < limit {
            let header_end = offset + FRAME_HEADER as u64;
            if header_end > block_at + block.len() as u64 {
                block_at = offset;
                block = Bytes::from(segment.read(offset, READ_BLOCK)?);
            }
            let at = (offset - block_at) as usize;
            let intact = block
                .get(at..at + FRAME_HEADER)
                .and_then(codec::parse_frame_header)
                .filter(|&(len, found)| found == seq && header_end + len as u64 <= segment.len);
            let Some((len, _)) = intact else {
                // Damaged: every sequence up to the next intact frame reads
                // as corrupted, never as missing.
                let next = segment
                    .resync(offset, seq, end)
                    .unwrap_or((segment.len, end));
                while seq < next.1 && out.len() < limit {
                    if seq >= from && !self.gone.contains(&seq) {
                        out.push((seq, Bytes::new()));
                    }
                    seq += 1;
                }
                offset = next.0;
                block = Bytes::new();
                continue;
            };
            let frame_end = header_end + len as u64;
            if frame_end > block_at + block.len() as u64 {
                block_at = offset;
                block = Bytes::from(segment.read(offset, READ_BLOCK.max(FRAME_HEADER + len))?);
            }
            if seq >= from && !self.gone.contains(&seq) {
                let start = (header_end - block_at) as usize;
                out.push((seq, block.slice(start..start + len)));
            }
            offset = frame_end;
            seq += 1;
        }
        Ok(seq)
    }
}

/// The segment files of one stream; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SegmentLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// A segment is closed and a new one started once it passes this size.
    segment_bytes: u64,
    points: sled::Tree,
    gone: sled::Tree,
    state: RwLock<State>,
    /// Appended since the last [`SegmentLog::sync`].
    dirty: AtomicBool,
}

impl SegmentLog {
    /// Opens the log of one stream in `dir` (created if needed), its index
    /// hints in `points` and its purges in `gone`; a new log starts at
    /// `next_seq`; segments end once they pass `segment_bytes`.
    pub(crate) fn open(
        dir: PathBuf,
        segment_bytes: u64,
        points: sled::Tree,
        gone: sled::Tree,
        next_seq: u64,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(&dir).map_err(|e| io(dir.display(), e))?;
        let mut floor = 0;
        let mut tombstones = BTreeSet::new();
        for kv in gone.iter() {
            let (key, value) = kv.map_err(sled_error)?;
            if &*key == FLOOR_KEY {
                floor = codec::decode_u64(&value)
                    .map_err(|c| StorageError(format!("purge floor: {}", c.0)))?;
            } else if let Ok(seq) = codec::key_seq(&key) {
                tombstones.insert(seq);
            }
        }
        let mut firsts = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io(dir.display(), e))? {
            let entry = entry.map_err(|e| io(dir.display(), e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut segments = firsts
            .into_iter()
            .map(|first| Segment::open(dir.join(Segment::file_name(first)), first))
            .collect::<Result<Vec<_>, _>>()?;
        if segments.is_empty() {
            segments.push(Segment::create(&dir, next_seq.max(floor).max(1))?);
        }
        for kv in points.iter() {
            let (key, value) = kv.map_err(sled_error)?;
            let (Ok(seq), Ok(offset)) = (codec::key_seq(&key), codec::decode_u64(&value)) else {
                continue;
            };
            let i = segments.partition_point(|s| s.first <= seq);
            if let Some(segment) = i.checked_sub(1).map(|i| &mut segments[i])
                && segment.is_next_point(seq)
                && segment.header_at(offset).is_some_and(|(_, s)| s == seq)
            {
                segment.points.push(offset);
            }
        }
        let log = Self {
            inner: Arc::new(Inner {
                dir,
                segment_bytes,
                points,
                gone,
                state: RwLock::new(State {
                    segments,
                    gone: tombstones,
                    floor,
                    next_seq: 0,
                    broken: false,
                }),
                dirty: AtomicBool::new(false),
            }),
        };
        log.recover()?;
        Ok(log)
    }

    /// Re-reads every segment's tail; cuts a torn frame off the last one;
    /// deletes segments a full purge left behind.
    fn recover(&self) -> Result<(), StorageError> {
        let mut state = self.write();
        let count = state.segments.len();
        let mut next_seq = 0;
        for (i, segment) in state.segments.iter_mut().enumerate() {
            let known = segment.points.len();
            let (seq, end) = segment.walk_tail();
            for (n, offset) in segment.points.iter().enumerate().skip(known) {
                let point = segment.first + n as u64 * POINT_EVERY;
                self.inner
                    .points
                    .insert(codec::seq_key(point), codec::encode_u64(*offset))
                    .map_err(sled_error)?;
            }
            if i + 1 == count {
                // Bytes past the last whole frame, with no intact frame
                // after them (the walk steps over damage): a torn write.
                if end < segment.len {
                    tracing::warn!(
                        segment = %segment.path.display(),
                        cut = segment.len - end,
                        "cutting an incomplete write off the end of the log"
                    );
                    segment
                        .file
                        .set_len(end)
                        .and_then(|()| segment.file.sync_data())
                        .map_err(|e| io(segment.path.display(), e))?;
                    segment.len = end;
                }
                next_seq = seq;
            }
        }
        state.next_seq = next_seq.max(state.floor);
        let floor = state.floor;
        while state.segments.len() > 1 && state.end_of(0) <= floor {
            let segment = state.segments.remove(0);
            fs::remove_file(&segment.path).map_err(|e| io(segment.path.display(), e))?;
        }
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Makes every append so far durable (`fdatasync` of the segment
    /// appended to; a segment is synced when it is closed).
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        if !self.inner.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let (file, path) = {
            let state = self.read();
            let active = state.segments.last().expect("a log has a segment");
            (active.file.clone(), active.path.clone())
        };
        file.sync_data().map_err(|e| {
            self.inner.dirty.store(true, Ordering::SeqCst);
            io(path.display(), e)
        })
    }

    fn remove_points_before(&self, seq: u64) -> Result<(), StorageError> {
        for kv in self.inner.points.range(..codec::seq_key(seq)) {
            let (key, _) = kv.map_err(sled_error)?;
            self.inner.points.remove(key).map_err(sled_error)?;
        }
        Ok(())
    }
}

impl Log for SegmentLog {
    fn append(&self, batch: &LogBatch) -> Result<(), StorageError> {
        let Some(&(first_seq, _)) = batch.values.first() else {
            return Ok(());
        };
        let mut state = self.write();
        if state.broken {
            return Err(StorageError(format!(
                "an earlier write to {} failed; reopen the store",
                self.inner.dir.display()
            )));
        }
        let active = state.segments.last().expect("a log has a segment");
        if active.len > SEGMENT_HEADER
            && active.len + batch.frames.len() as u64 > self.inner.segment_bytes
        {
            active
                .file
                .sync_data()
                .map_err(|e| io(active.path.display(), e))?;
            let segment = Segment::create(&self.inner.dir, first_seq)?;
            state.segments.push(segment);
        }
        let active = state.segments.last_mut().expect("a log has a segment");
        let offset = active.len;
        if let Err(e) = active.file.write_all_at(&batch.frames, offset) {
            // The engine has counted these messages; the log is not written
            // to again until a reopen counts from the log itself.
            let _ = active.file.set_len(offset);
            let err = io(active.path.display(), e);
            state.broken = true;
            return Err(err);
        }
        let mut new_points = Vec::new();
        for (seq, value) in &batch.values {
            if active.is_next_point(*seq) {
                let at = offset + (value.start - FRAME_HEADER) as u64;
                active.points.push(at);
                new_points.push((*seq, at));
            }
        }
        active.len = offset + batch.frames.len() as u64;
        state.next_seq = batch.values.last().map_or(first_seq, |(s, _)| s + 1);
        drop(state);
        self.inner.dirty.store(true, Ordering::SeqCst);
        // Hints: lost ones are found again by the open's tail walk.
        for (seq, at) in new_points {
            self.inner
                .points
                .insert(codec::seq_key(seq), codec::encode_u64(at))
                .map_err(sled_error)?;
        }
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .scan(seq, 1)?
            .into_iter()
            .next()
            .filter(|(s, _)| *s == seq)
            .map(|(_, v)| v))
    }

    fn scan(&self, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StorageError> {
        let state = self.read();
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut seq = from.max(state.floor);
        while out.len() < limit && seq < state.next_seq {
            let Some(i) = state.segment_of(seq) else {
                seq = state.segments[0].first;
                continue;
            };
            seq = state.scan_segment(i, seq, limit, &mut out)?;
        }
        Ok(out)
    }

    fn remove(&self, seqs: &[u64]) -> Result<(), StorageError> {
        let mut state = self.write();
        for &seq in seqs {
            self.inner
                .gone
                .insert(codec::seq_key(seq), codec::seal(&[]))
                .map_err(sled_error)?;
            state.gone.insert(seq);
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StorageError> {
        let mut state = self.write();
        let floor = state.next_seq;
        self.inner
            .gone
            .insert(FLOOR_KEY, codec::encode_u64(floor))
            .map_err(sled_error)?;
        // The floor is durable before any file goes, so a crash half-way
        // leaves a purge that is whole on the next open.
        self.inner.gone.flush().map_err(sled_error)?;
        let fresh = Segment::create(&self.inner.dir, floor)?;
        for segment in std::mem::replace(&mut state.segments, vec![fresh]) {
            if segment.first != floor {
                fs::remove_file(&segment.path).map_err(|e| io(segment.path.display(), e))?;
            }
        }
        for seq in std::mem::take(&mut state.gone) {
            self.inner
                .gone
                .remove(codec::seq_key(seq))
                .map_err(sled_error)?;
        }
        state.floor = floor;
        drop(state);
        self.remove_points_before(floor)
    }

    fn next_seq(&self) -> u64 {
        self.read().next_seq
    }
}
