//! Shared helpers of the integration tests: event generators and runners.
#![allow(dead_code, unreachable_pub)]

use std::{path::Path, sync::Arc, time::Duration};

use backbone_broker::{
    Broker, OutboundMessage, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, RebuildOptions, RuntimeConfig, apply_log,
    model::ReadModel, shutdown_channel,
};
use backbone_schemas::{
    Envelope, Event, EventContext,
    payment::v1::{PaymentReceived, PaymentRefunded},
    user::v1::{UserFollowed, UserUnfollowed},
};

/// The embedded log in `<dir>/log`, default options.
pub fn embedded_log(dir: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(EmbeddedOptions {
        path: dir.join("log"),
        ..Default::default()
    })
    .unwrap()
}

/// A JetStream connection to the test server at `url`, default options.
pub async fn jetstream(url: String) -> JetStreamBroker {
    JetStreamBroker::connect(JetStreamOptions {
        urls: vec![url],
        ..Default::default()
    })
    .await
    .unwrap()
}

pub fn outbound(env: &Envelope) -> OutboundMessage {
    OutboundMessage {
        subject: env.subject(),
        headers: env.headers(),
        payload: env.payload.clone(),
        msg_id: Some(env.id.to_string()),
        expected_last_subject_seq: None,
    }
}

pub fn wrap<E: Event>(event: &E) -> Envelope {
    let ctx = EventContext::new("test").with_correlation_id(format!("corr-{}", event.key()));
    Envelope::from_event(event, ctx).unwrap()
}

pub fn follow(a: &str, b: &str) -> Envelope {
    wrap(&UserFollowed {
        follower_id: a.into(),
        followee_id: b.into(),
        followed_at: None,
    })
}

pub fn unfollow(a: &str, b: &str) -> Envelope {
    wrap(&UserUnfollowed {
        follower_id: a.into(),
        followee_id: b.into(),
        unfollowed_at: None,
    })
}

pub fn payment(user: &str, id: &str, amount: i64) -> Envelope {
    wrap(&PaymentReceived {
        payment_id: id.into(),
        user_id: user.into(),
        amount_minor: amount,
        currency: "USD".into(),
        ..Default::default()
    })
}

pub fn refund(user: &str, id: &str, payment: &str, amount: i64) -> Envelope {
    wrap(&PaymentRefunded {
        refund_id: id.into(),
        payment_id: payment.into(),
        user_id: user.into(),
        amount_minor: amount,
        currency: "USD".into(),
        ..Default::default()
    })
}

/// A deterministic mixed workload of `n` events from `seed` (a tiny LCG, so
/// no dependency): follows, unfollows, payments, valid and invalid refunds.
pub fn workload(n: usize, seed: u64) -> Vec<Envelope> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = format!("u-{}", next(8));
        let b = format!("u-{}", next(8));
        let e = match next(5) {
            0 | 1 if a != b => follow(&a, &b),
            2 if a != b => unfollow(&a, &b),
            3 => payment(&a, &format!("p-{i}"), 100 + next(900) as i64),
            _ => refund(
                &a,
                &format!("r-{i}"),
                &format!("p-{}", next(i as u64 + 1)),
                1 + next(400) as i64,
            ),
        };
        out.push(e);
    }
    out
}

pub async fn publish_all(broker: &dyn Broker, events: &[Envelope]) {
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let results = broker
        .publish_batch(events.iter().map(outbound).collect())
        .await;
    for r in results {
        r.unwrap();
    }
}

pub fn fast_config(name: &str) -> RuntimeConfig {
    RuntimeConfig {
        durable_name: name.to_owned(),
        batch_size: 32,
        fetch_wait: Duration::from_millis(100),
        ack_wait: Duration::from_secs(2),
        max_deliver: 4,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Default::default()
    }
}

/// Runs `model` on `store_dir` until its checkpoint reaches `target`.
pub async fn run_until(
    broker: Arc<dyn Broker>,
    model: Arc<dyn ReadModel>,
    store_dir: &Path,
    config: RuntimeConfig,
    target: u64,
) -> ProjectionStore {
    let store = ProjectionStore::open(store_dir).unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let runner = ProjectionRunner::new(broker, model, store.clone(), config, &Metrics::new());
    let handle = tokio::spawn(runner.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.checkpoint().unwrap() < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint stuck at {}",
            store.checkpoint().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    handle.await.unwrap().unwrap();
    store
}

/// The digest of `model` rebuilt from scratch up to `up_to`.
pub async fn scratch_digest(broker: &dyn Broker, model: &dyn ReadModel, up_to: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path()).unwrap();
    let options = RebuildOptions {
        up_to: Some(up_to),
        ..Default::default()
    };
    apply_log(broker, model, &store, &options, &mut |_| {})
        .await
        .unwrap()
        .digest
}

/// The stream sequence of the last of `events` (published from seq 1) that
/// `model` consumes: where its checkpoint ends.
pub fn last_seq_for(model: &dyn ReadModel, events: &[Envelope]) -> u64 {
    let types = model.event_types();
    events
        .iter()
        .rposition(|e| types.is_empty() || types.contains(&e.event_type.as_str()))
        .map_or(0, |i| i as u64 + 1)
}
