//! An AMQP 1.0 client for the tests (`fe2o3-amqp`, as the bridge uses),
//! talking to RabbitMQ's `rabbitmq_amqp1_0` plugin.

use std::{collections::BTreeSet, time::Duration};

use backbone_schemas::{Envelope, wire};
use backbone_testkit::RabbitMq;
use fe2o3_amqp::{
    Connection, Receiver, Sender, Session,
    connection::ConnectionHandle,
    session::SessionHandle,
    types::{
        messaging::{ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties},
        primitives::{SimpleValue, Value},
    },
};

/// A connection with one session to `rabbit`'s AMQP 1.0 listener.
pub struct Amqp1Client {
    connection: ConnectionHandle<()>,
    /// The session links attach to.
    pub session: SessionHandle<()>,
}

impl Amqp1Client {
    /// Connects as guest.
    pub async fn connect(rabbit: &RabbitMq) -> Self {
        let url = format!("amqp://guest:guest@127.0.0.1:{}", rabbit.port());
        let mut connection = Connection::open("backbone-test", url.as_str())
            .await
            .unwrap();
        let session = Session::begin(&mut connection).await.unwrap();
        Self {
            connection,
            session,
        }
    }

    /// Sends `messages` to `address`, each accepted.
    pub async fn send(&mut self, address: &str, messages: Vec<Message<Data>>) {
        let mut sender = Sender::attach(&mut self.session, format!("test-to-{address}"), address)
            .await
            .unwrap();
        let mut settled = Vec::new();
        for message in messages {
            settled.push(sender.send_batchable(message).await.unwrap());
        }
        for outcome in settled {
            assert!(matches!(outcome.await.unwrap(), Outcome::Accepted(_)));
        }
        // RabbitMQ 3.10 answers a closing detach as a plain one (IllegalState).
        let _ = sender.close().await;
    }

    /// Takes messages from `address` until `count` distinct message ids
    /// arrived (or `quiet` passes without one); every message, in order.
    pub async fn take(
        &mut self,
        address: &str,
        count: usize,
        quiet: Duration,
    ) -> Vec<Message<Body<Value>>> {
        let mut receiver =
            Receiver::attach(&mut self.session, format!("test-from-{address}"), address)
                .await
                .unwrap();
        let mut out = Vec::new();
        let mut ids = BTreeSet::new();
        while ids.len() < count {
            let Ok(Ok(delivery)) =
                tokio::time::timeout(quiet, receiver.recv::<Body<Value>>()).await
            else {
                break;
            };
            receiver.accept(&delivery).await.unwrap();
            let message = delivery.into_message();
            ids.insert(message_id(&message));
            out.push(message);
        }
        let _ = receiver.close().await;
        out
    }

    /// Closes the session and the connection.
    pub async fn close(mut self) {
        let _ = self.session.end().await;
        let _ = self.connection.close().await;
    }
}

/// A message's id as text.
pub fn message_id<B>(message: &Message<B>) -> String {
    match message
        .properties
        .as_ref()
        .and_then(|p| p.message_id.as_ref())
    {
        Some(MessageId::String(id)) => id.clone(),
        other => panic!("message id {other:?}"),
    }
}

/// A string application property.
pub fn property<B>(message: &Message<B>, name: &str) -> Option<String> {
    match message.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A message's data sections joined.
pub fn data(message: &Message<Body<Value>>) -> Vec<u8> {
    match &message.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.to_vec()).collect(),
        other => panic!("not a data body: {other:?}"),
    }
}

/// The binary-mode AMQP 1.0 form of `event` (as another producer writes
/// it), with `body` as its data.
pub fn binary_message(event: &Envelope, body: &[u8]) -> Message<Data> {
    let mut application = ApplicationProperties::builder();
    for (name, value) in [
        ("specversion", "1.0".to_owned()),
        ("id", event.id.to_string()),
        ("source", event.source.clone()),
        ("type", event.event_type.clone()),
    ] {
        application = application.insert(format!("cloudEvents:{name}"), value);
    }
    Message::builder()
        .properties(
            Properties::builder()
                .message_id(MessageId::String(event.id.to_string()))
                .content_type(wire::CONTENT_TYPE_PROTOBUF)
                .build(),
        )
        .application_properties(application.build())
        .data(body.to_vec())
        .build()
}

/// A message with `body` and nothing else.
pub fn bare_message(body: &[u8]) -> Message<Data> {
    Message::builder().data(body.to_vec()).build()
}
