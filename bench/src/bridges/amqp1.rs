//! The AMQP 1.0 bridges through RabbitMQ's `rabbitmq_amqp1_0` plugin,
//! against `fe2o3-amqp` (the bridge's own client) doing the broker's side
//! of the same work:
//!
//! - **outbound**: the bridge sends to `/exchange/events/<type>` until
//!   every transfer is settled; raw: the same messages on one link per
//!   type, a batch transferred unsettled and then awaited.
//! - **inbound**: the bridge takes a queue into the embedded log; raw: a
//!   receiver with the same credit takes and accepts the same messages,
//!   storing nothing.

use std::{collections::HashMap, time::Instant};

use backbone_bridges::{BridgeConfig, BrokerKind, Direction, amqp1::Amqp1Sink, message::Outgoing};
use backbone_schemas::Envelope;
use backbone_testkit::RabbitMq;
use fe2o3_amqp::{
    Connection, Receiver, Sender, Session,
    connection::ConnectionHandle,
    link::receiver::CreditMode,
    session::SessionHandle,
    types::{
        messaging::{Body, Outcome},
        primitives::Value,
    },
};

use super::{
    BATCH, DEADLINE, Plan, Scenario, bridge, bridge_into, broker_error, declare, rabbit_channel,
    record,
};
use crate::{error::BenchError, report::BenchReport, report::Throughput};

/// Runs both directions against `rabbit`.
pub(super) async fn run(
    plan: &Plan,
    report: &mut BenchReport,
    rabbit: &RabbitMq,
    events: &[Envelope],
) -> Result<(), BenchError> {
    let out = outbound(rabbit, events).await?;
    record(plan, report, Scenario::BridgeOutAmqp1, out);
    let into = inbound(rabbit, events).await?;
    record(plan, report, Scenario::BridgeInAmqp1, into);
    Ok(())
}

fn url(rabbit: &RabbitMq) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}", rabbit.port())
}

async fn session(
    rabbit: &RabbitMq,
) -> Result<(ConnectionHandle<()>, SessionHandle<()>), BenchError> {
    let mut connection = Connection::open("backbone-bench", url(rabbit).as_str())
        .await
        .map_err(broker_error)?;
    let session = Session::begin(&mut connection)
        .await
        .map_err(broker_error)?;
    Ok((connection, session))
}

/// `event` as the outbound bridge maps it, addressed to `address`.
fn outgoing(event: &Envelope, address: String) -> Outgoing {
    let headers = event.headers();
    Outgoing {
        seq: 0,
        id: event.id.to_string(),
        event_type: event.event_type.clone(),
        address,
        attributes: Outgoing::attributes_of(&headers),
        headers,
        payload: event.payload.clone(),
        stored_ms: 0,
    }
}

/// Sends `events` to `address_of(event)`, one link per address, a batch
/// at a time, each settled accepted.
async fn send_settled(
    session: &mut SessionHandle<()>,
    address_of: impl Fn(&Envelope) -> String,
    events: &[Envelope],
) -> Result<(), BenchError> {
    let mut senders: HashMap<String, Sender> = HashMap::new();
    for chunk in events.chunks(BATCH) {
        let mut settled = Vec::with_capacity(chunk.len());
        for event in chunk {
            let address = address_of(event);
            if !senders.contains_key(&address) {
                let sender = Sender::attach(session, format!("bench-{address}"), address.clone())
                    .await
                    .map_err(broker_error)?;
                senders.insert(address.clone(), sender);
            }
            let message = Amqp1Sink::message(&outgoing(event, address.clone()));
            let sender = senders.get_mut(&address).expect("attached above");
            settled.push(sender.send_batchable(message).await.map_err(broker_error)?);
        }
        for outcome in settled {
            match outcome.await.map_err(broker_error)? {
                Outcome::Accepted(_) => {}
                other => return Err(broker_error(format!("not accepted: {other:?}"))),
            }
        }
    }
    for (_, sender) in senders {
        let _ = sender.close().await;
    }
    Ok(())
}

async fn outbound(
    rabbit: &RabbitMq,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let (_amqp091, channel) = rabbit_channel(rabbit).await?;
    declare(&channel, "bench-amqp1-downstream", true).await?;
    let (mut connection, mut session) = session(rabbit).await?;
    let address = |e: &Envelope| format!("/exchange/events/{}", e.event_type);
    // A first pass warms the node for both; the second is timed.
    send_settled(&mut session, address, events).await?;
    super::purge(&channel, "bench-amqp1-downstream").await?;
    let started = Instant::now();
    send_settled(&mut session, address, events).await?;
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    let _ = session.end().await;
    let _ = connection.close().await;
    super::purge(&channel, "bench-amqp1-downstream").await?;
    let config = BridgeConfig {
        address: Some("/exchange/events/{type}".into()),
        ..bridge(
            "bench-amqp1-out",
            Direction::Outbound,
            BrokerKind::Amqp1,
            url(rabbit),
        )
    };
    let bridged = bridge_into(events, config, events.len()).await?;
    super::purge(&channel, "bench-amqp1-downstream").await?;
    Ok((raw, bridged))
}

async fn inbound(
    rabbit: &RabbitMq,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let (_amqp091, channel) = rabbit_channel(rabbit).await?;
    declare(&channel, "bench-amqp1-raw-in", false).await?;
    declare(&channel, "bench-amqp1-in", false).await?;
    let (mut connection, mut session) = session(rabbit).await?;
    send_settled(
        &mut session,
        |_| "/amq/queue/bench-amqp1-raw-in".into(),
        events,
    )
    .await?;
    send_settled(&mut session, |_| "/amq/queue/bench-amqp1-in".into(), events).await?;
    let credit = u32::try_from(2 * BATCH).unwrap_or(u32::MAX);
    let started = Instant::now();
    let mut receiver = Receiver::builder()
        .name("bench-raw")
        .source("/amq/queue/bench-amqp1-raw-in")
        .credit_mode(CreditMode::Auto(credit))
        .auto_accept(false)
        .attach(&mut session)
        .await
        .map_err(broker_error)?;
    let mut taken = 0;
    let mut batch = Vec::with_capacity(BATCH);
    while taken < events.len() {
        let delivery = tokio::time::timeout(DEADLINE, receiver.recv::<Body<Value>>())
            .await
            .map_err(broker_error)?
            .map_err(broker_error)?;
        taken += 1;
        batch.push(delivery);
        if batch.len() == BATCH || taken == events.len() {
            receiver
                .accept_all(std::mem::take(&mut batch))
                .await
                .map_err(broker_error)?;
        }
    }
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    let _ = receiver.close().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    let config = BridgeConfig {
        source: Some("/amq/queue/bench-amqp1-in".into()),
        ..bridge(
            "bench-amqp1-in",
            Direction::Inbound,
            BrokerKind::Amqp1,
            url(rabbit),
        )
    };
    let bridged = bridge_into(&[], config, events.len()).await?;
    Ok((raw, bridged))
}
