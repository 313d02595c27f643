//! AMQP 1.0 through `fe2o3-amqp`: any AMQP 1.0 broker, and Azure Service
//! Bus, with the CloudEvents AMQP binding in binary mode.
//!
//! Outbound, each event is a durable message on a sender link to its
//! address (one link per address, attached on first use): `message-id`
//! is the `ce-id`, `subject` the event type, `content-type`
//! `application/protobuf`, `creation-time` the store time, the body one
//! data section holding the protobuf payload byte for byte, and every
//! CloudEvents attribute a `cloudEvents:<name>` application property
//! (strings). The messages of a batch are transferred unsettled, without
//! waiting in between; the batch counts as sent when the broker settled
//! every one as accepted.
//!
//! Inbound, a receiver link on the source address, with link credit of
//! two batches and manual settlement: a message is accepted after the log
//! took it. Attributes are read from `cloudEvents:` and `cloudEvents_`
//! application properties, or the body is a structured-mode event
//! (`content-type: application/cloudevents+json`); the body is the data
//! sections joined, or an `amqp-value` string or binary.
//!
//! On Service Bus ([`crate::servicebus`]) the connection is TLS on port
//! 5671 with SASL ANONYMOUS, and every link is authorized first with a
//! SAS token for its entity put on `$cbs`; tokens last an hour, and the
//! connection is renewed (tokens put again) after 45 minutes. Elsewhere
//! the url's user and password are SASL PLAIN (ANONYMOUS without them),
//! and `amqps://` is TLS, verified against the system's root
//! certificates.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use backbone_schemas::{Headers, header_value, wire};
use bytes::Bytes;
use fe2o3_amqp::{
    Connection, Receiver, Sender, Session,
    connection::ConnectionHandle,
    link::{
        delivery::{Delivery, DeliveryInfo},
        receiver::CreditMode,
    },
    sasl_profile::SaslProfile,
    session::SessionHandle,
    types::{
        messaging::{
            ApplicationProperties, Body, Data, Header, Message, MessageId, Outcome, Properties,
        },
        primitives::{SimpleValue, Timestamp, Value},
    },
};
use fe2o3_amqp_cbs::{client::CbsClient, token::CbsToken};
use futures::FutureExt as _;
use serde_json::{Map, Value as Json, json};
use tokio::net::TcpStream;

use crate::{
    config::{BridgeConfig, BrokerKind},
    error::{BridgeError, BridgeErrorKind},
    inbound::Source,
    message::{
        AMQP_PREFIX, AMQP_PREFIX_ALT, Outgoing, Received, attribute_header, unix_millis_rfc3339,
    },
    outbound::Sink,
    servicebus::{self, ConnectionString},
};

/// How long connecting (TCP, TLS, SASL, open, begin, CBS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to settle a batch (links attached on
/// the way included); well within the log's ack wait.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a failed connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The AMQP port without TLS.
const AMQP_PORT: u16 = 5672;

/// Where and how to connect.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    tls: bool,
    user: Option<(String, String)>,
    /// Service Bus: links are authorized with SAS tokens over CBS.
    servicebus: Option<ConnectionString>,
}

impl Endpoint {
    fn of(config: &BridgeConfig) -> Result<Self, String> {
        if config.broker == BrokerKind::Servicebus {
            let connection = ConnectionString::parse(&config.url)?;
            return Ok(Self {
                host: connection.host.clone(),
                port: servicebus::AMQPS_PORT,
                tls: true,
                user: None,
                servicebus: Some(connection),
            });
        }
        let url = url::Url::parse(&config.url).map_err(|e| format!("the url: {e}"))?;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => return Err(format!("the url's scheme is {other}, not amqp or amqps")),
        };
        let host = url.host_str().ok_or("the url has no host")?.to_owned();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        Ok(Self {
            port: url.port().unwrap_or(if tls {
                servicebus::AMQPS_PORT
            } else {
                AMQP_PORT
            }),
            host,
            tls,
            user,
            servicebus: None,
        })
    }
}

fn error(config: &BridgeConfig, kind: BridgeErrorKind, e: impl std::fmt::Display) -> BridgeError {
    BridgeError::with_detail(kind, format!("bridge {}: AMQP 1.0: {e}", config.name))
}

/// The system's root certificates, loaded once.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
        let mut roots = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            return Err(
                "no root certificates found on this system (install ca-certificates)".into(),
            );
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

/// An open connection with one session.
struct Connected {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    cbs: Option<CbsClient>,
    since: Instant,
}

impl Connected {
    async fn open(config: &BridgeConfig, endpoint: &Endpoint) -> Result<Self, String> {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("{}:{}: {e}", endpoint.host, endpoint.port))?;
        let _ = tcp.set_nodelay(true);
        let profile = match &endpoint.user {
            Some((username, password)) => SaslProfile::Plain {
                username: username.clone(),
                password: password.clone(),
            },
            None => SaslProfile::Anonymous,
        };
        let builder = Connection::builder()
            .container_id(format!("backbone-{}", config.consumer_name()))
            .hostname(endpoint.host.as_str())
            .sasl_hostname(endpoint.host.as_str())
            .scheme("amqp")
            .sasl_profile(profile);
        let mut connection = if endpoint.tls {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| format!("{}: {e}", endpoint.host))?;
            let stream = tls_connector()?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", endpoint.host))?;
            builder.open_with_stream(stream).await
        } else {
            builder.open_with_stream(tcp).await
        }
        .map_err(|e| format!("opening the connection: {e}"))?;
        let mut session = Session::begin(&mut connection)
            .await
            .map_err(|e| format!("beginning a session: {e}"))?;
        let cbs = match endpoint.servicebus {
            Some(_) => Some(
                CbsClient::attach(&mut session)
                    .await
                    .map_err(|e| format!("attaching to $cbs: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            connection,
            session,
            cbs,
            since: Instant::now(),
        })
    }

    /// Service Bus: puts a fresh SAS token for `entity`, so a link to it
    /// may attach.
    async fn authorize(&mut self, endpoint: &Endpoint, entity: &str) -> Result<(), String> {
        let (Some(cbs), Some(connection)) = (&mut self.cbs, &endpoint.servicebus) else {
            return Ok(());
        };
        let audience = connection.audience(entity);
        let expiry = SystemTime::now() + servicebus::TOKEN_LIFETIME;
        let expiry_ms = expiry
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let token = CbsToken::new(
            connection.token(&audience, expiry),
            servicebus::SAS_TOKEN_TYPE,
            Timestamp::from_milliseconds(expiry_ms),
        );
        cbs.put_token(audience.clone(), token)
            .await
            .map_err(|e| format!("putting the SAS token for {audience}: {e}"))
    }

    /// Whether its tokens are due for renewal.
    fn stale(&self) -> bool {
        self.cbs.is_some() && self.since.elapsed() >= servicebus::TOKEN_RENEW_AFTER
    }

    async fn close(mut self) {
        let closing = async {
            if let Some(cbs) = self.cbs.take() {
                let _ = cbs.close().await;
            }
            let _ = self.session.end().await;
            let _ = self.connection.close().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

async fn connect(config: &BridgeConfig, endpoint: &Endpoint) -> Result<Connected, BridgeError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Connected::open(config, endpoint)).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(e)) => Err(error(config, BridgeErrorKind::Unreachable, e)),
        Err(_) => Err(error(
            config,
            BridgeErrorKind::Unreachable,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// The link name for `address`: unique on the connection, stable across
/// reconnects.
fn link_name(config: &BridgeConfig, address: &str) -> String {
    format!("{}:{address}", config.consumer_name())
}

/// Sends events over AMQP 1.0.
pub struct Amqp1Sink {
    config: BridgeConfig,
    endpoint: Endpoint,
    connected: Option<(Connected, HashMap<String, Sender>)>,
}

impl std::fmt::Debug for Amqp1Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp1Sink")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.connected.is_some())
            .finish()
    }
}

impl Amqp1Sink {
    /// A sink for `config`; connects on the first send.
    pub fn new(config: BridgeConfig) -> Result<Self, BridgeError> {
        let endpoint =
            Endpoint::of(&config).map_err(|e| error(&config, BridgeErrorKind::Config, e))?;
        Ok(Self {
            config,
            endpoint,
            connected: None,
        })
    }

    /// The AMQP 1.0 message of `event`.
    pub fn message(event: &Outgoing) -> Message<Data> {
        let mut application = ApplicationProperties::builder();
        for (name, value) in &event.attributes {
            application = application.insert(format!("{AMQP_PREFIX}{name}"), value.as_str());
        }
        let properties = Properties::builder()
            .message_id(MessageId::String(event.id.clone()))
            .subject(event.event_type.clone())
            .content_type(wire::CONTENT_TYPE_PROTOBUF)
            .creation_time(Timestamp::from_milliseconds(event.stored_ms as i64))
            .build();
        Message::builder()
            .header(Header::builder().durable(true).build())
            .properties(properties)
            .application_properties(application.build())
            .data(event.payload.to_vec())
            .build()
    }

    async fn transfer(
        config: &BridgeConfig,
        endpoint: &Endpoint,
        connected: &mut Connected,
        senders: &mut HashMap<String, Sender>,
        batch: &[Outgoing],
    ) -> Result<(), String> {
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            if !senders.contains_key(&event.address) {
                connected.authorize(endpoint, &event.address).await?;
                let sender = Sender::attach(
                    &mut connected.session,
                    link_name(config, &event.address),
                    event.address.clone(),
                )
                .await
                .map_err(|e| format!("attaching a sender to {}: {e}", event.address))?;
                senders.insert(event.address.clone(), sender);
            }
            let sender = senders.get_mut(&event.address).expect("attached above");
            let settled = sender
                .send_batchable(Self::message(event))
                .await
                .map_err(|e| format!("sending event {} to {}: {e}", event.id, event.address))?;
            pending.push((event, settled));
        }
        for (event, settled) in pending {
            match settled.await {
                Ok(Outcome::Accepted(_)) => {}
                Ok(other) => {
                    return Err(format!(
                        "{} did not accept event {}: {other:?}",
                        event.address, event.id
                    ));
                }
                Err(e) => return Err(format!("event {} to {}: {e}", event.id, event.address)),
            }
        }
        Ok(())
    }

    async fn disconnect(&mut self) {
        if let Some((connected, senders)) = self.connected.take() {
            drop(senders);
            connected.close().await;
        }
    }
}

#[async_trait]
impl Sink for Amqp1Sink {
    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), BridgeError> {
        if self.connected.as_ref().is_some_and(|(c, _)| c.stale()) {
            self.disconnect().await;
        }
        if self.connected.is_none() {
            let connected = connect(&self.config, &self.endpoint).await?;
            self.connected = Some((connected, HashMap::new()));
        }
        let Some((connected, senders)) = &mut self.connected else {
            unreachable!("connected above");
        };
        let sent = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            Self::transfer(&self.config, &self.endpoint, connected, senders, batch),
        )
        .await;
        let why = match sent {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => format!("not settled within {CONFIRM_TIMEOUT:?}"),
        };
        // Whatever state the links are in, start afresh.
        self.disconnect().await;
        Err(error(&self.config, BridgeErrorKind::NotConfirmed, why))
    }
}

/// Takes events from an AMQP 1.0 node (a queue, or a Service Bus
/// subscription).
pub struct Amqp1Source {
    config: BridgeConfig,
    endpoint: Endpoint,
    address: String,
    connected: Option<(Connected, Receiver)>,
    /// The link failed after the last batch was taken: the next receive
    /// starts afresh.
    broken: bool,
}

impl std::fmt::Debug for Amqp1Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Amqp1Source")
            .field("address", &self.address)
            .field("connected", &self.connected.is_some())
            .finish()
    }
}

impl Amqp1Source {
    /// A source for `config` (its `source` is the node address); connects
    /// on the first receive.
    pub fn new(config: BridgeConfig) -> Result<Self, BridgeError> {
        let endpoint =
            Endpoint::of(&config).map_err(|e| error(&config, BridgeErrorKind::Config, e))?;
        Ok(Self {
            address: config.source.clone().unwrap_or_default(),
            config,
            endpoint,
            connected: None,
            broken: false,
        })
    }

    async fn subscribe(&self) -> Result<(Connected, Receiver), BridgeError> {
        let mut connected = connect(&self.config, &self.endpoint).await?;
        let credit = u32::try_from(self.config.batch_size.saturating_mul(2)).unwrap_or(u32::MAX);
        let attaching = async {
            connected.authorize(&self.endpoint, &self.address).await?;
            Receiver::builder()
                .name(link_name(&self.config, &self.address))
                .source(self.address.clone())
                .credit_mode(CreditMode::Auto(credit))
                .auto_accept(false)
                .attach(&mut connected.session)
                .await
                .map_err(|e| format!("attaching a receiver to {}: {e}", self.address))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attaching).await {
            Ok(Ok(receiver)) => Ok((connected, receiver)),
            Ok(Err(e)) => {
                connected.close().await;
                Err(error(&self.config, BridgeErrorKind::Unreachable, e))
            }
            Err(_) => {
                connected.close().await;
                Err(error(
                    &self.config,
                    BridgeErrorKind::Unreachable,
                    "attaching the receiver timed out",
                ))
            }
        }
    }

    async fn disconnect(&mut self) {
        if let Some((connected, receiver)) = self.connected.take() {
            drop(receiver);
            connected.close().await;
        }
    }

    fn received(&self, delivery: Delivery<Body<Value>>) -> Received<DeliveryInfo> {
        let (info, message) = delivery.into_parts();
        let properties = message.properties.unwrap_or_default();
        let message_id = properties.message_id.as_ref().map(message_id_text);
        let content_type = properties.content_type.map(|s| s.0);
        let mut attributes = Headers::new();
        let mut table = Map::new();
        let mut params = HashMap::new();
        for (name, value) in message
            .application_properties
            .iter()
            .flat_map(|a| a.0.iter())
        {
            table.insert(name.clone(), simple_json(value));
            let Some(text) = simple_text(value) else {
                continue;
            };
            let attribute = name
                .strip_prefix(AMQP_PREFIX)
                .or_else(|| name.strip_prefix(AMQP_PREFIX_ALT));
            if let Some(header) = attribute.and_then(attribute_header) {
                attributes.append(header, header_value::encode(&text));
            }
            params.insert(name.clone(), text);
        }
        let address = properties
            .subject
            .clone()
            .or_else(|| properties.to.clone())
            .unwrap_or_else(|| self.address.clone());
        params.insert("routing_key".into(), address.clone());
        if let Some(id) = &message_id {
            params.insert("message_id".into(), id.clone());
        }
        let (section, body) = body_bytes(message.body);
        let mut all = Map::new();
        all.insert("source".into(), json!(self.address));
        all.insert("message_id".into(), json!(message_id));
        all.insert("subject".into(), json!(properties.subject));
        all.insert("to".into(), json!(properties.to));
        all.insert("content_type".into(), json!(content_type));
        all.insert("body_section".into(), json!(section));
        all.insert("application_properties".into(), Json::Object(table));
        Received {
            source: format!("{}:{}", self.config.broker, self.address),
            address,
            message_id,
            content_type,
            attributes,
            properties: all,
            params,
            body,
            ack: info,
        }
    }
}

/// A message id as text: strings as they are, others as their value.
fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid_text(u.as_ref()),
        MessageId::Binary(b) => hex::encode(b),
    }
}

fn uuid_text(bytes: &[u8]) -> String {
    let hex = hex::encode(bytes);
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The body's bytes and its section's kind: data sections joined, an
/// `amqp-value` string or binary as its bytes, anything else as its
/// printed value (a mapping then fails on it and the message is
/// dead-lettered with it).
fn body_bytes(body: Body<Value>) -> (&'static str, Bytes) {
    match body {
        Body::Data(sections) => {
            let mut joined = Vec::new();
            for Data(bytes) in sections {
                joined.extend_from_slice(&bytes);
            }
            ("data", Bytes::from(joined))
        }
        Body::Value(value) => match value.0 {
            Value::String(s) => ("amqp-value", Bytes::from(s.into_bytes())),
            Value::Binary(b) => ("amqp-value", Bytes::from(b.into_vec())),
            other => ("amqp-value", Bytes::from(format!("{other:?}").into_bytes())),
        },
        Body::Empty => ("empty", Bytes::new()),
        other => (
            "amqp-sequence",
            Bytes::from(format!("{other:?}").into_bytes()),
        ),
    }
}

/// An application property as text, when it is a string, symbol or
/// timestamp (as RFC 3339).
fn simple_text(value: &SimpleValue) -> Option<String> {
    match value {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.0.clone()),
        SimpleValue::Timestamp(t) => unix_millis_rfc3339(t.milliseconds()),
        _ => None,
    }
}

/// An application property as JSON, for a dead letter's record.
fn simple_json(value: &SimpleValue) -> Json {
    match value {
        SimpleValue::Null => Json::Null,
        SimpleValue::Bool(b) => json!(b),
        SimpleValue::Ubyte(n) => json!(n),
        SimpleValue::Ushort(n) => json!(n),
        SimpleValue::Uint(n) => json!(n),
        SimpleValue::Ulong(n) => json!(n),
        SimpleValue::Byte(n) => json!(n),
        SimpleValue::Short(n) => json!(n),
        SimpleValue::Int(n) => json!(n),
        SimpleValue::Long(n) => json!(n),
        SimpleValue::Float(n) => json!(n.into_inner()),
        SimpleValue::Double(n) => json!(n.into_inner()),
        SimpleValue::Timestamp(t) => json!(t.milliseconds()),
        SimpleValue::String(s) => json!(s),
        SimpleValue::Symbol(s) => json!(s.0),
        SimpleValue::Binary(b) => json!(hex::encode(b)),
        other => json!(format!("{other:?}")),
    }
}

#[async_trait]
impl Source for Amqp1Source {
    type Ack = DeliveryInfo;

    async fn receive(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<DeliveryInfo>>, BridgeError> {
        let renew = self.connected.as_ref().is_some_and(|(c, _)| c.stale());
        if self.broken || renew {
            self.broken = false;
            self.disconnect().await;
        }
        if self.connected.is_none() {
            self.connected = Some(self.subscribe().await?);
        }
        let Some((_, receiver)) = &mut self.connected else {
            unreachable!("connected above");
        };
        let first = match tokio::time::timeout(wait, receiver.recv::<Body<Value>>()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Ok(delivery)) => delivery,
            Ok(Err(e)) => {
                self.disconnect().await;
                return Err(error(&self.config, BridgeErrorKind::Unreachable, e));
            }
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max {
            match receiver.recv::<Body<Value>>().now_or_never() {
                Some(Ok(delivery)) => deliveries.push(delivery),
                None => break,
                // What was taken is handed on, then a new start.
                Some(Err(_)) => {
                    self.broken = true;
                    break;
                }
            }
        }
        Ok(deliveries.into_iter().map(|d| self.received(d)).collect())
    }

    async fn ack(&mut self, acks: Vec<DeliveryInfo>) -> Result<(), BridgeError> {
        let Some((_, receiver)) = &self.connected else {
            // The connection is gone: the broker delivers these again and
            // the log drops the copies.
            return Err(error(
                &self.config,
                BridgeErrorKind::Unreachable,
                "the connection closed before the accept",
            ));
        };
        if let Err(e) = receiver.accept_all(acks).await {
            self.broken = true;
            return Err(error(&self.config, BridgeErrorKind::Unreachable, e));
        }
        Ok(())
    }
}
