//! Max-deliveries advisories: how a consumer learns which messages ran out
//! of deliveries, for `take_exhausted`.

use std::sync::{Arc, Mutex};

use async_nats::Client;
use futures::StreamExt as _;
use serde::Deserialize;

use crate::{
    consumer::Exhausted,
    error::{ConsumerError, ConsumerErrorKind},
};

#[derive(Deserialize)]
struct MaxDeliveriesAdvisory {
    stream_seq: u64,
    deliveries: u32,
}

/// Collects max-deliveries advisories for this consumer in the background.
pub(crate) async fn watch_exhausted(
    client: &Client,
    stream: &str,
    name: &str,
    into: Arc<Mutex<Vec<Exhausted>>>,
) -> Result<tokio::task::JoinHandle<()>, ConsumerError> {
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{name}");
    let mut subscription = client
        .subscribe(subject)
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::BrokerUnavailable, e))?;
    // The subscription must be registered before the first fetch can
    // exhaust anything, so flush it to the server now.
    client
        .flush()
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::BrokerUnavailable, e))?;
    Ok(tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if let Ok(advisory) = serde_json::from_slice::<MaxDeliveriesAdvisory>(&message.payload)
                && let Ok(mut list) = into.lock()
            {
                list.push(Exhausted {
                    stream_seq: advisory.stream_seq,
                    deliveries: advisory.deliveries,
                });
            }
        }
    }))
}
