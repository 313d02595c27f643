//! Reading the log: single messages, the last on a subject, and ordered
//! reads that walk the log in bounded chunks and may follow new messages.

use std::{collections::VecDeque, sync::Arc, time::SystemTime};

use futures::StreamExt;
use tokio::sync::Notify;

use super::{
    codec,
    core::{CHUNK, Core},
    storage::{Log, Storage, StorageError},
    subject::valid_pattern,
};
use crate::{
    error::{Error, ReadError, ReadErrorKind},
    message::StoredMessage,
    stream::{MessageStream, ReadRequest, ReadStart, subject_matches},
};

fn storage_failure(e: StorageError) -> ReadError {
    Error::with_source(ReadErrorKind::StorageFailure, e)
}

fn not_found(stream: &str) -> ReadError {
    Error::with_detail(
        ReadErrorKind::StreamNotFound,
        format!("no stream {stream:?}"),
    )
}

/// Decodes a stored entry, turning damage into a `Corrupted` error.
fn decode(stream: &str, seq: u64, value: &[u8]) -> Result<StoredMessage, ReadError> {
    codec::decode_message(stream, seq, value).map_err(|c| {
        Error::with_detail(
            ReadErrorKind::Corrupted,
            format!("{stream} message {seq}: {}", c.0),
        )
    })
}

impl<S: Storage> Core<S> {
    fn msgs_tree(&self, stream: &str) -> Result<(S::Log, Arc<Notify>), ReadError> {
        let streams = self.lock();
        let rt = streams.get(stream).ok_or_else(|| not_found(stream))?;
        Ok((rt.msgs.clone(), rt.notify.clone()))
    }

    /// [`crate::Broker::get`].
    pub(crate) fn get_message(&self, stream: &str, seq: u64) -> Result<StoredMessage, ReadError> {
        let (msgs, _) = self.msgs_tree(stream)?;
        match msgs.get(seq).map_err(storage_failure)? {
            Some(value) => decode(stream, seq, &value),
            None => Err(Error::with_detail(
                ReadErrorKind::MessageNotFound,
                format!("{stream} has no message {seq}"),
            )),
        }
    }

    /// [`crate::Broker::last_on_subject`].
    pub(crate) fn last_message_on(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, ReadError> {
        let seq = {
            let mut streams = self.lock();
            let rt = streams.get_mut(stream).ok_or_else(|| not_found(stream))?;
            self.ensure_indexes(rt).map_err(storage_failure)?;
            rt.subject_index.last(subject)
        };
        if seq == 0 {
            return Ok(None);
        }
        match self.get_message(stream, seq) {
            Err(e) if *e.kind() == ReadErrorKind::MessageNotFound => Ok(None),
            other => other.map(Some),
        }
    }

    /// [`crate::Broker::read`].
    pub(crate) fn read_stream(
        self: &Arc<Self>,
        stream: &str,
        request: ReadRequest,
    ) -> Result<MessageStream, ReadError> {
        if let Some(f) = request.filter.as_deref().filter(|f| !valid_pattern(f)) {
            return Err(Error::with_detail(
                ReadErrorKind::InvalidRequest,
                format!("invalid filter {f:?}"),
            ));
        }
        let (start, last_seq) = {
            let streams = self.lock();
            let rt = streams.get(stream).ok_or_else(|| not_found(stream))?;
            let start = match request.start {
                ReadStart::First => rt.first_seq,
                ReadStart::Sequence(seq) => seq.max(1),
                ReadStart::Time(time) => self
                    .seek_time(rt, time)
                    .map_err(|e| Error::with_detail(ReadErrorKind::Corrupted, e.0))?,
            };
            (start, rt.counters.last_seq)
        };
        if request.end_seq.is_some_and(|end| end < start)
            && matches!(request.start, ReadStart::Sequence(_))
        {
            return Err(Error::with_detail(
                ReadErrorKind::InvalidRequest,
                format!("end sequence {:?} is before start {start}", request.end_seq),
            ));
        }
        let end_seq = match (request.end_seq, request.follow) {
            (Some(end), _) => end,
            (None, true) => u64::MAX,
            (None, false) => last_seq,
        };
        let cursor = ReadCursor {
            core: Arc::clone(self),
            stream: stream.to_owned(),
            next: start,
            end_seq,
            end_time: request.end_time,
            filter: request.filter,
            follow: request.follow,
            buffer: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(cursor, |mut c| async move {
            let item = c.next_item().await?;
            Some((item, c))
        })
        .boxed())
    }
}

/// The position of an ordered read.
struct ReadCursor<S: Storage> {
    core: Arc<Core<S>>,
    stream: String,
    next: u64,
    end_seq: u64,
    end_time: Option<SystemTime>,
    filter: Option<String>,
    follow: bool,
    buffer: VecDeque<Result<StoredMessage, ReadError>>,
    done: bool,
}

impl<S: Storage> ReadCursor<S> {
    async fn next_item(&mut self) -> Option<Result<StoredMessage, ReadError>> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            if self.done || self.next > self.end_seq {
                return None;
            }
            let (msgs, notify) = match self.core.msgs_tree(&self.stream) {
                Ok(handles) => handles,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let chunk = match msgs.scan(self.next, CHUNK) {
                Ok(chunk) => chunk,
                Err(e) => {
                    self.done = true;
                    return Some(Err(storage_failure(e)));
                }
            };
            if chunk.is_empty() {
                if !self.follow {
                    return None;
                }
                notified.await;
                continue;
            }
            self.take_chunk(chunk);
        }
    }

    fn take_chunk(&mut self, chunk: Vec<(u64, bytes::Bytes)>) {
        for (seq, value) in chunk {
            if seq > self.end_seq {
                self.done = true;
                return;
            }
            self.next = seq + 1;
            match decode(&self.stream, seq, &value) {
                Err(e) => self.buffer.push_back(Err(e)),
                Ok(m) if self.end_time.is_some_and(|end| m.time > end) => {
                    self.done = true;
                    return;
                }
                Ok(m) => {
                    if self
                        .filter
                        .as_deref()
                        .is_none_or(|f| subject_matches(f, &m.subject))
                    {
                        self.buffer.push_back(Ok(m));
                    }
                }
            }
        }
    }
}
