//! Where `tail` and `audit` read the log: the broker itself, or the
//! running server that holds it (`GET /v1/admin/streams/{stream}/messages`,
//! the messages byte for byte), so both print the same either way.

use std::time::SystemTime;

use backbone_broker::{
    Broker, ReadRequest, ReadStart, StoredMessage, record::MessageRecord, stream::EVENT_STREAM,
};
use backbone_consumers::status::StatusReport;
use futures::{StreamExt as _, stream::BoxStream};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    error::{CliError, CliResult},
    server_client::ServerClient,
};

/// The log to read.
#[derive(Clone, Copy)]
pub(crate) enum LogSource<'a> {
    /// The broker (or the embedded log) itself.
    Broker(&'a dyn Broker),
    /// A server that holds it.
    Server(&'a ServerClient),
}

/// Messages of a read, in order.
pub(crate) type Messages = BoxStream<'static, CliResult<StoredMessage>>;

fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl LogSource<'_> {
    /// An ordered read of the event stream.
    pub(crate) async fn read(&self, request: ReadRequest) -> CliResult<Messages> {
        match self {
            Self::Broker(broker) => {
                let messages = broker.read(EVENT_STREAM, request).await?;
                Ok(messages.map(|m| m.map_err(CliError::from)).boxed())
            }
            Self::Server(server) => {
                let mut query = Vec::new();
                match request.start {
                    ReadStart::First => {}
                    ReadStart::Sequence(seq) => query.push(("from_seq", seq.to_string())),
                    ReadStart::Time(time) => query.push(("from_time", rfc3339(time))),
                }
                if let Some(seq) = request.end_seq {
                    query.push(("end_seq", seq.to_string()));
                }
                if let Some(time) = request.end_time {
                    query.push(("until", rfc3339(time)));
                }
                if let Some(filter) = request.filter {
                    query.push(("filter", filter));
                }
                if request.follow {
                    query.push(("follow", "true".to_owned()));
                }
                let path = format!("/v1/admin/streams/{EVENT_STREAM}/messages");
                let records = server.lines::<MessageRecord>(&path, &query).await?;
                Ok(records
                    .map(|record| {
                        StoredMessage::try_from(record?)
                            .map_err(|e| CliError::failed(e.to_string()))
                    })
                    .boxed())
            }
        }
    }

    /// The event stream's last sequence.
    pub(crate) async fn last_seq(&self) -> CliResult<u64> {
        match self {
            Self::Broker(broker) => Ok(broker.stream_info(EVENT_STREAM).await?.last_seq),
            Self::Server(server) => {
                let report: StatusReport = server.get("/v1/admin/status").await?;
                report
                    .streams
                    .iter()
                    .find(|s| s.stream == EVENT_STREAM)
                    .map(|s| s.last_seq)
                    .ok_or_else(|| CliError::failed("the server has no event stream"))
            }
        }
    }
}
