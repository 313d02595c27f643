//! Model-based test: random publishes (with duplicate ids and expected
//! sequences), batches, gets, reads, purges and (embedded) reopens, with and
//! without a close, against a plain `Vec` model, on the in-memory and the
//! embedded adapter. The embedded log runs on tiny segments, so segment
//! roll-overs, index points and purges across segments are all exercised.

use std::collections::HashMap;

use backbone_broker::{
    Broker, OutboundMessage, PublishErrorKind, ReadErrorKind, ReadRequest, ReadStart, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    memory::MemoryBroker,
};
use futures::StreamExt;
use proptest::prelude::*;

const SUBJECTS: [&str; 4] = ["events.a.1", "events.a.2", "events.b.1", "events.b.2"];
const FILTERS: [&str; 3] = ["events.a.*", "events.*.1", "events.>"];

#[derive(Debug, Clone)]
struct Publish {
    subject: usize,
    id: Option<u8>,
    expected: Option<u64>,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Publish(Publish),
    Batch(Vec<Publish>),
    Get(u64),
    Read {
        start: u64,
        filter: Option<usize>,
    },
    Purge(Option<usize>),
    /// Close, drop and open the store again (memory: nothing).
    Reopen,
    /// Drop and open the store again without a close.
    DropAndOpen,
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        0..SUBJECTS.len(),
        proptest::option::of(0u8..8),
        proptest::option::weighted(0.2, 0u64..6),
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(subject, id, expected, payload)| Publish {
            subject,
            id,
            expected,
            payload,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => publish().prop_map(Op::Publish),
        1 => proptest::collection::vec(publish(), 1..6).prop_map(Op::Batch),
        2 => (0u64..30).prop_map(Op::Get),
        1 => (0u64..30, proptest::option::of(0..FILTERS.len())).prop_map(|(start, filter)| Op::Read { start, filter }),
        1 => proptest::option::weighted(0.7, 0..FILTERS.len()).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
        1 => Just(Op::DropAndOpen),
    ]
}

/// The log as a list: index + 1 is the sequence; `None` once purged.
#[derive(Default)]
struct Model {
    log: Vec<Option<(usize, Vec<u8>)>>,
    ids: HashMap<u8, u64>,
}

impl Model {
    fn publish(&mut self, p: &Publish) -> Result<(u64, bool), PublishErrorKind> {
        if let Some(seq) = p.id.and_then(|id| self.ids.get(&id)) {
            return Ok((*seq, true));
        }
        if let Some(expected) = p.expected {
            let actual = self
                .log
                .iter()
                .rposition(|m| m.as_ref().is_some_and(|(s, _)| *s == p.subject))
                .map_or(0, |i| i as u64 + 1);
            if actual != expected {
                return Err(PublishErrorKind::WrongLastSequence { actual });
            }
        }
        self.log.push(Some((p.subject, p.payload.clone())));
        let seq = self.log.len() as u64;
        if let Some(id) = p.id {
            self.ids.insert(id, seq);
        }
        Ok((seq, false))
    }

    fn purge(&mut self, filter: Option<usize>) -> u64 {
        let mut purged = 0;
        for entry in &mut self.log {
            if entry.as_ref().is_some_and(|(s, _)| {
                filter.is_none_or(|f| {
                    backbone_broker::stream::subject_matches(FILTERS[f], SUBJECTS[*s])
                })
            }) {
                *entry = None;
                purged += 1;
            }
        }
        purged
    }

    /// An open forgets the ids of purged messages (it rebuilds the window
    /// from the log).
    fn reopened(&mut self) {
        let log = &self.log;
        self.ids.retain(|_, seq| log[(*seq - 1) as usize].is_some());
    }

    fn live(&self) -> u64 {
        self.log.iter().filter(|m| m.is_some()).count() as u64
    }
}

/// Opens the broker under test again; `None` for the in-memory one.
type Reopen<'a> = Option<&'a dyn Fn() -> Box<dyn Broker>>;

fn outbound(p: &Publish) -> OutboundMessage {
    let mut m = OutboundMessage::new(SUBJECTS[p.subject], p.payload.clone());
    m.msg_id = p.id.map(|id| format!("id-{id}"));
    m.expected_last_subject_seq = p.expected;
    m
}

fn check(
    r: Result<backbone_broker::PublishReceipt, backbone_broker::PublishError>,
    expected: Result<(u64, bool), PublishErrorKind>,
) {
    match (r, expected) {
        (Ok(r), Ok((seq, dup))) => assert_eq!((r.seq, r.duplicate), (seq, dup)),
        (Err(e), Err(kind)) => assert_eq!(e.kind(), &kind),
        (got, want) => panic!("got {got:?}, model says {want:?}"),
    }
}

async fn run(mut broker: Box<dyn Broker>, reopen: Reopen<'_>, ops: &[Op]) {
    let config = StreamConfig {
        deny_purge: false,
        ..StreamConfig::event_log()
    };
    broker.ensure_stream(&config).await.unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Publish(p) => check(broker.publish(outbound(p)).await, model.publish(p)),
            Op::Batch(ps) => {
                let results = broker
                    .publish_batch(ps.iter().map(outbound).collect())
                    .await;
                assert_eq!(results.len(), ps.len());
                for (r, p) in results.into_iter().zip(ps) {
                    check(r, model.publish(p));
                }
            }
            Op::Get(seq) => match (
                broker.get("EVENTS", *seq).await,
                model
                    .log
                    .get((*seq as usize).wrapping_sub(1))
                    .and_then(Option::as_ref),
            ) {
                (Ok(m), Some((subject, payload))) => {
                    assert_eq!(
                        (m.subject.as_str(), &m.payload[..]),
                        (SUBJECTS[*subject], &payload[..])
                    );
                }
                (Err(e), None) => assert_eq!(e.kind(), &ReadErrorKind::MessageNotFound),
                (got, want) => panic!("get {seq}: got {got:?}, model has {want:?}"),
            },
            Op::Read { start, filter } => {
                let request = ReadRequest {
                    start: ReadStart::Sequence(*start),
                    filter: filter.map(|f| FILTERS[f].to_owned()),
                    ..Default::default()
                };
                let got: Vec<u64> = broker
                    .read("EVENTS", request)
                    .await
                    .unwrap()
                    .map(|m| m.unwrap().seq)
                    .collect()
                    .await;
                let want: Vec<u64> = model
                    .log
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| m.as_ref().map(|(s, _)| (i as u64 + 1, *s)))
                    .filter(|(seq, s)| {
                        *seq >= *start
                            && filter.is_none_or(|f| {
                                backbone_broker::stream::subject_matches(FILTERS[f], SUBJECTS[*s])
                            })
                    })
                    .map(|(seq, _)| seq)
                    .collect();
                assert_eq!(got, want);
            }
            Op::Purge(filter) => {
                let purged = broker
                    .purge("EVENTS", filter.map(|f| FILTERS[f]))
                    .await
                    .unwrap();
                assert_eq!(purged, model.purge(*filter));
            }
            Op::Reopen | Op::DropAndOpen => {
                let Some(reopen) = reopen else { continue };
                if matches!(op, Op::Reopen) {
                    broker.close().await.unwrap();
                }
                drop(broker);
                broker = reopen();
                model.reopened();
            }
        }
        let info = broker.stream_info("EVENTS").await.unwrap();
        assert_eq!(
            (info.messages, info.last_seq),
            (model.live(), model.log.len() as u64),
            "after {op:?}"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(run(Box::new(MemoryBroker::new()), None, &ops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn embedded_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Box<dyn Broker> {
            Box::new(EmbeddedBroker::open(EmbeddedOptions {
                path: dir.path().to_path_buf(),
                segment_size: 300,
                ..Default::default()
            }).unwrap())
        };
        runtime().block_on(run(open(), Some(&open), &ops));
    }
}
