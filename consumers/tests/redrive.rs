//! Redrive semantics: a poison event dead-lettered by one consumer, its
//! cause fixed (the handler, or the data it lacked), the letter redriven:
//! that consumer applies it exactly once, every other consumer skips the
//! redrive, and rebuilds end in the live digests.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use backbone_broker::{
    Broker, ReadRequest, StoredMessage,
    memory::MemoryBroker,
    stream::{DEAD_LETTER_STREAM, EVENT_STREAM, StreamConfig},
};
use backbone_consumers::{
    HandlerError, ProjectionStore, RebuildOptions, apply_log,
    model::{ReadModel, typed},
    models::{self, audit::Audit, billing::Billing},
    redrive::redrive_message,
    transaction::{Transaction, key},
};
use backbone_schemas::{
    Envelope, Event,
    payment::v1::{PaymentReceived, PaymentRefunded},
};
use common::*;
use futures::StreamExt as _;

/// A billing-like model that counts how often it applied each event, and
/// rejects refund `r-poison` until it is "fixed".
#[derive(Debug)]
struct Counting {
    fixed: Arc<AtomicBool>,
}

impl ReadModel for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[PaymentReceived::TYPE, PaymentRefunded::TYPE]
    }

    fn apply(
        &self,
        _seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        if event.event_type == PaymentRefunded::TYPE {
            let refund: PaymentRefunded = typed(event)?;
            if refund.refund_id == "r-poison" && !self.fixed.load(Ordering::SeqCst) {
                return Err(HandlerError::permanent("refund handler bug"));
            }
        }
        let k = key(&[b"applied", event.id.to_string().as_bytes()]);
        let count: u64 = tx.get_json(&k)?.unwrap_or(0);
        tx.put_json(&k, &(count + 1));
        Ok(())
    }
}

fn applied_count(store: &ProjectionStore, id: &str) -> u64 {
    store
        .get_json(&key(&[b"applied", id.as_bytes()]))
        .unwrap()
        .unwrap_or(0)
}

async fn letters(broker: &dyn Broker) -> Vec<StoredMessage> {
    let mut read = broker
        .read(DEAD_LETTER_STREAM, ReadRequest::default())
        .await
        .unwrap();
    let mut all = Vec::new();
    while let Some(m) = read.next().await {
        all.push(m.unwrap());
    }
    all
}

/// Applies the whole log from scratch into a scratch store as `durable`.
async fn rebuilt_digest(
    broker: &dyn Broker,
    model: &dyn ReadModel,
    durable: &str,
) -> (u64, ProjectionStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path().join("scratch")).unwrap();
    let options = RebuildOptions {
        durable_name: Some(durable.to_owned()),
        ..Default::default()
    };
    let report = apply_log(broker, model, &store, &options, &mut |_| {})
        .await
        .unwrap();
    (report.digest, store, dir)
}

#[tokio::test]
async fn a_redrive_applies_once_to_its_consumer_and_never_to_the_others() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    // A short duplicate window, so the redrive is not swallowed as a duplicate.
    let mut log = StreamConfig::event_log();
    log.duplicate_window = Duration::from_millis(300);
    let poison = refund("u-1", "r-poison", "p-1", 10);
    let poison_id = poison.id.to_string();
    let events = vec![
        payment("u-1", "p-1", 100),
        poison,
        payment("u-2", "p-2", 50),
    ];
    publish_all(broker.as_ref(), &events).await;
    broker.ensure_stream(&log).await.unwrap();

    let fixed = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(Counting {
        fixed: fixed.clone(),
    });
    let audit = models::read_model("audit").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (billing_dir, audit_dir) = (dir.path().join("billing"), dir.path().join("audit"));

    let billing = run_until(
        broker.clone(),
        counting.clone(),
        &billing_dir,
        fast_config("billing"),
        3,
    )
    .await;
    assert_eq!(applied_count(&billing, &poison_id), 0);
    assert!(
        billing.is_fenced(&poison_id).unwrap(),
        "a dead-lettered event is fenced"
    );
    drop(billing);
    let audit_store = run_until(
        broker.clone(),
        audit.clone(),
        &audit_dir,
        fast_config("audit"),
        3,
    )
    .await;
    drop(audit_store);
    let dead = letters(broker.as_ref()).await;
    assert_eq!(dead.len(), 1);

    // The handler is fixed; the letter is redriven after the window.
    fixed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let receipt = broker
        .publish(redrive_message(&dead[0]).unwrap())
        .await
        .unwrap();
    assert!(!receipt.duplicate);
    assert_eq!(receipt.seq, 4);

    let billing = run_until(
        broker.clone(),
        counting.clone(),
        &billing_dir,
        fast_config("billing"),
        4,
    )
    .await;
    assert_eq!(
        applied_count(&billing, &poison_id),
        1,
        "billing applies the redrive once"
    );
    assert!(!billing.is_fenced(&poison_id).unwrap());
    let audit_store = run_until(
        broker.clone(),
        audit.clone(),
        &audit_dir,
        fast_config("audit"),
        4,
    )
    .await;
    let entry = Audit::by_id(&audit_store, &poison_id).unwrap().unwrap();
    assert_eq!(
        entry.seq, 2,
        "audit keeps the original and skips the redrive"
    );
    assert_eq!(audit_store.len(), {
        let (_, scratch, _dir) = rebuilt_digest(broker.as_ref(), audit.as_ref(), "audit").await;
        scratch.len()
    });

    // A second redrive of the same letter (after the window) changes nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = broker
        .publish(redrive_message(&dead[0]).unwrap())
        .await
        .unwrap();
    assert_eq!(again.seq, 5);
    let billing_live = {
        drop(billing);
        run_until(
            broker.clone(),
            counting.clone(),
            &billing_dir,
            fast_config("billing"),
            5,
        )
        .await
    };
    assert_eq!(applied_count(&billing_live, &poison_id), 1);
    let audit_live = {
        drop(audit_store);
        run_until(
            broker.clone(),
            audit.clone(),
            &audit_dir,
            fast_config("audit"),
            5,
        )
        .await
    };
    assert!(
        letters(broker.as_ref()).await.len() == 1,
        "nothing dead-lettered again"
    );

    // A rebuild with the fixed handler reproduces the live digests: the
    // original applies where it stands, both redrives are skipped.
    let (digest, scratch, _dir) =
        rebuilt_digest(broker.as_ref(), counting.as_ref(), "billing").await;
    assert_eq!(digest, billing_live.digest().unwrap());
    assert_eq!(applied_count(&scratch, &poison_id), 1);
    let (digest, _, _dir) = rebuilt_digest(broker.as_ref(), audit.as_ref(), "audit").await;
    assert_eq!(digest, audit_live.digest().unwrap());
    assert_eq!(
        letters(broker.as_ref()).await.len(),
        1,
        "rebuilds publish no letters"
    );
    let info = broker.stream_info(EVENT_STREAM).await.unwrap();
    assert_eq!(info.last_seq, 5);
}

#[tokio::test]
async fn a_rebuild_for_another_durable_skips_the_redrive() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let mut log = StreamConfig::event_log();
    log.duplicate_window = Duration::from_millis(100);
    let poison = refund("u-1", "r-poison", "p-1", 10);
    let poison_id = poison.id.to_string();
    publish_all(broker.as_ref(), &[payment("u-1", "p-1", 100), poison]).await;
    broker.ensure_stream(&log).await.unwrap();
    let fixed = Arc::new(AtomicBool::new(false));
    let counting = Counting { fixed };
    let dir = tempfile::tempdir().unwrap();
    run_until(
        broker.clone(),
        Arc::new(counting),
        &dir.path().join("b"),
        fast_config("billing"),
        2,
    )
    .await;
    let dead = letters(broker.as_ref()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker
        .publish(redrive_message(&dead[0]).unwrap())
        .await
        .unwrap();

    let counting = Counting {
        fixed: Arc::new(AtomicBool::new(true)),
    };
    // A second deployment (prefix "eu-") never dead-lettered it: it does not
    // apply the redrive addressed to "billing". Its own rebuild, fixed,
    // applies the original once.
    let (_, other, _d) = rebuilt_digest(broker.as_ref(), &counting, "eu-billing").await;
    assert_eq!(applied_count(&other, &poison_id), 1);
    // Without a durable name the rebuild stands in for the model's name.
    let options = RebuildOptions::default();
    assert_eq!(options.consumer_name(&counting), "counting");
}

/// The real billing model: a refund of a payment it does not know yet is
/// dead-lettered; once the payment arrived, the redriven refund applies. A
/// rebuild meets the original before the payment again, rejects and fences
/// it without a letter, and applies the redrive: the live state exactly.
#[tokio::test]
async fn billing_applies_a_redriven_refund_once_and_its_rebuild_matches() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let mut log = StreamConfig::event_log();
    log.duplicate_window = Duration::from_millis(200);
    let early = refund("u-1", "r-1", "p-1", 30);
    publish_all(broker.as_ref(), &[early, payment("u-1", "p-1", 100)]).await;
    // publish_all provisions the default two-minute window: shorten it.
    broker.ensure_stream(&log).await.unwrap();
    let billing = models::read_model("billing").unwrap();
    let audit = models::read_model("audit").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (billing_dir, audit_dir) = (dir.path().join("billing"), dir.path().join("audit"));
    let store = run_until(
        broker.clone(),
        billing.clone(),
        &billing_dir,
        fast_config("billing"),
        2,
    )
    .await;
    assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), 100);
    drop(store);
    drop(
        run_until(
            broker.clone(),
            audit.clone(),
            &audit_dir,
            fast_config("audit"),
            2,
        )
        .await,
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let dead = letters(broker.as_ref()).await;
    assert_eq!(dead.len(), 1);
    broker
        .publish(redrive_message(&dead[0]).unwrap())
        .await
        .unwrap();
    let store = run_until(
        broker.clone(),
        billing.clone(),
        &billing_dir,
        fast_config("billing"),
        3,
    )
    .await;
    assert_eq!(
        Billing::balance(&store, "u-1", "USD").unwrap(),
        70,
        "refunded once"
    );
    let audit_live = run_until(
        broker.clone(),
        audit.clone(),
        &audit_dir,
        fast_config("audit"),
        3,
    )
    .await;
    assert_eq!(audit_live.len(), {
        let (_, scratch, _d) = rebuilt_digest(broker.as_ref(), audit.as_ref(), "audit").await;
        scratch.len()
    });

    let (digest, scratch, _d) = rebuilt_digest(broker.as_ref(), billing.as_ref(), "billing").await;
    assert_eq!(digest, store.digest().unwrap());
    assert_eq!(Billing::balance(&scratch, "u-1", "USD").unwrap(), 70);
    let (digest, _, _d) = rebuilt_digest(broker.as_ref(), audit.as_ref(), "audit").await;
    assert_eq!(digest, audit_live.digest().unwrap());
    assert_eq!(
        letters(broker.as_ref()).await.len(),
        1,
        "rebuilds publish no letters"
    );
}
