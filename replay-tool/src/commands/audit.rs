//! `audit`: query the event log by key, type, source, correlation id, time
//! range and predicates on decoded fields.
//!
//! Fast path: when the `audit` read model exists in the data directory
//! (and no service holds it), its index finds the candidate sequences by
//! correlation id, key, source or type, the tool fetches just those, and
//! scans only the log after the index's checkpoint.
//!
//! Otherwise `--type` and `--key` become a server-side subject filter
//! (`events.<type>.<key>`) and `--since`/`--until` bound the read, so the
//! broker skips what cannot match. Either way source, correlation id, time
//! and `--where` predicates are checked here on decoded events, so both
//! paths return the same events.

use backbone_broker::{
    Broker, ReadRequest, ReadStart,
    stream::{EVENT_STREAM, subject_matches},
};
use backbone_consumers::{
    ProjectionStore, ReadModel as _, StoreErrorKind,
    models::{Audit, AuditQuery},
    rebuild::live_path,
};
use clap::Args;
use futures::StreamExt;

use crate::backend;
use crate::cli::OutputFormat;
use crate::commands::tail::type_key_filter;
use crate::config::Settings;
use crate::error::{CliError, CliResult};
use crate::event_view::{EVENT_COLUMNS, EventView, parse_time};
use crate::log_source::LogSource;
use crate::output::Records;
use crate::predicate::Predicate;
use crate::server_client::locally_or_through_server;

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only events with this key (the last subject token).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Only this event type, e.g. `payment.refunded`.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) event_type: Option<String>,
    /// Only events from this source (`ce-source`).
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// Only events of this workflow (`ce-correlationid`).
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
    /// Only events stored at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Only events stored at or before this RFC 3339 time.
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Predicate on a decoded field, e.g. `amount_minor>10000`; operators
    /// = != > >= < <= and ~ (contains); repeat to AND them.
    #[arg(long = "where", value_name = "PREDICATE")]
    pub(crate) predicates: Vec<String>,
    /// Stop after this many matches.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

/// A parsed, validated audit query.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    /// Server-side subject filter.
    pub(crate) filter: Option<String>,
    /// Read start.
    pub(crate) start: ReadStart,
    /// Read end (inclusive, by store time).
    pub(crate) end_time: Option<std::time::SystemTime>,
    /// Required source.
    pub(crate) source: Option<String>,
    /// Required correlation id.
    pub(crate) correlation_id: Option<String>,
    /// Field predicates, all required.
    pub(crate) predicates: Vec<Predicate>,
    /// Maximum matches.
    pub(crate) limit: Option<usize>,
}

impl Query {
    /// Validates the arguments of `audit`.
    pub(crate) fn from_args(args: &AuditArgs) -> CliResult<Self> {
        let predicates = args
            .predicates
            .iter()
            .map(|p| p.parse::<Predicate>().map_err(CliError::BadInput))
            .collect::<CliResult<Vec<_>>>()?;
        let since = args
            .since
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(CliError::BadInput)?;
        let until = args
            .until
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(CliError::BadInput)?;
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            return Err(CliError::bad_input("--until is before --since"));
        }
        Ok(Self {
            filter: type_key_filter(args.event_type.as_deref(), args.key.as_deref())?,
            start: since.map_or(ReadStart::First, ReadStart::Time),
            end_time: until,
            source: args.source.clone(),
            correlation_id: args.correlation_id.clone(),
            predicates,
            limit: args.limit,
        })
    }

    /// True when a decoded event satisfies the local parts of the query.
    pub(crate) fn matches(&self, view: &EventView) -> bool {
        let Ok(envelope) = &view.envelope else {
            return false;
        };
        if self.source.as_ref().is_some_and(|s| *s != envelope.source) {
            return false;
        }
        if let Some(c) = &self.correlation_id
            && envelope.correlation_id.as_ref() != Some(c)
        {
            return false;
        }
        self.predicates.iter().all(|p| p.matches(&view.data))
    }

    /// True when the stored message is inside the subject filter and the
    /// time range (what the slow path's read request enforces).
    fn in_range(&self, view: &EventView) -> bool {
        let m = &view.message;
        let after_start = match self.start {
            ReadStart::Time(t) => m.time >= t,
            ReadStart::Sequence(s) => m.seq >= s,
            ReadStart::First => true,
        };
        after_start
            && self.end_time.is_none_or(|end| m.time <= end)
            && self
                .filter
                .as_deref()
                .is_none_or(|f| subject_matches(f, &m.subject))
    }

    fn full(&self, found: &[EventView]) -> bool {
        self.limit.is_some_and(|l| found.len() >= l)
    }

    /// The audit-index lookup that narrows this query most, if any.
    pub(crate) fn index_lookup(
        &self,
        args_key: Option<&str>,
        args_type: Option<&str>,
    ) -> Option<AuditQuery> {
        if let Some(c) = &self.correlation_id {
            return Some(AuditQuery::Correlation(c.clone()));
        }
        if let Some(k) = args_key {
            return Some(AuditQuery::Key(k.to_owned()));
        }
        if let Some(s) = &self.source {
            return Some(AuditQuery::Source(s.clone()));
        }
        args_type.map(|t| AuditQuery::Type(t.to_owned()))
    }

    /// Runs the query by scanning the log from `start`.
    pub(crate) async fn scan(
        &self,
        log: LogSource<'_>,
        start: ReadStart,
        found: &mut Vec<EventView>,
    ) -> CliResult {
        let request = ReadRequest {
            start,
            end_time: self.end_time,
            filter: self.filter.clone(),
            ..Default::default()
        };
        let mut messages = log.read(request).await?;
        while !self.full(found) {
            let Some(message) = messages.next().await else {
                break;
            };
            let view = EventView::decode(message?);
            if self.in_range(&view) && self.matches(&view) {
                found.push(view);
            }
        }
        Ok(())
    }

    /// Runs the query against the log alone.
    pub(crate) async fn run(&self, log: LogSource<'_>) -> CliResult<Vec<EventView>> {
        let mut found = Vec::new();
        self.scan(log, self.start, &mut found).await?;
        Ok(found)
    }

    /// Runs the query through the audit index `lookup`, then scans the log
    /// after the index's checkpoint.
    pub(crate) async fn run_indexed(
        &self,
        broker: &dyn Broker,
        store: &ProjectionStore,
        lookup: &AuditQuery,
    ) -> CliResult<Vec<EventView>> {
        let checkpoint = store.checkpoint()?;
        let entries = Audit::query(store, lookup, usize::MAX)?;
        let mut found = Vec::new();
        for entry in entries {
            if self.full(&found) {
                break;
            }
            let view = EventView::decode(broker.get(EVENT_STREAM, entry.seq).await?);
            if self.in_range(&view) && self.matches(&view) {
                found.push(view);
            }
        }
        let after = match self.start {
            ReadStart::Sequence(s) => s.max(checkpoint + 1),
            _ => checkpoint + 1,
        };
        self.scan(
            LogSource::Broker(broker),
            ReadStart::Sequence(after),
            &mut found,
        )
        .await?;
        Ok(found)
    }
}

/// Prints audit results in `format`.
pub(crate) fn print(found: &[EventView], format: OutputFormat) -> CliResult {
    match format {
        OutputFormat::Json => {
            let all: Vec<_> = found.iter().map(EventView::to_json).collect();
            let text = serde_json::to_string_pretty(&all).map_err(CliError::failed)?;
            println!("{text}");
            Ok(())
        }
        OutputFormat::Ndjson => {
            for view in found {
                println!("{}", view.to_json());
            }
            Ok(())
        }
        OutputFormat::Table | OutputFormat::Csv => {
            let mut records = Records::new(EVENT_COLUMNS);
            for view in found {
                view.push_to(&mut records);
            }
            records.print(format)
        }
    }
}

/// Runs `audit`: on the data directory (through its audit index when
/// present), or through the server that holds it (a scan of the log).
pub(crate) async fn run(settings: &Settings, args: AuditArgs) -> CliResult {
    let query = Query::from_args(&args)?;
    let local = async {
        let broker = backend::connect(settings).await?;
        backend::require_event_log(broker.as_ref()).await?;
        let lookup = query.index_lookup(args.key.as_deref(), args.event_type.as_deref());
        let index = match &lookup {
            Some(_) => open_index(settings),
            None => None,
        };
        let found = match (&index, &lookup) {
            (Some(store), Some(lookup)) => {
                eprintln!("using the audit index ({})", store.path().display());
                query.run_indexed(broker.as_ref(), store, lookup).await
            }
            _ => query.run(LogSource::Broker(broker.as_ref())).await,
        };
        broker.close().await?;
        found
    };
    let found = locally_or_through_server(settings, local, async |server| {
        query.run(LogSource::Server(server)).await
    })
    .await?;
    print(&found, settings.output)?;
    eprintln!("{} matching event(s)", found.len());
    Ok(())
}

/// The audit read model's store, when present and not held by a service.
fn open_index(settings: &Settings) -> Option<ProjectionStore> {
    let path = live_path(&crate::read_models::models_dir(&settings.data_dir), "audit");
    if !path.exists() {
        return None;
    }
    match ProjectionStore::open(&path).and_then(|store| {
        store.check_layout(Audit.layout())?;
        Ok(store)
    }) {
        Ok(store) => Some(store),
        Err(e) if e.kind() == &StoreErrorKind::Locked => {
            eprintln!("audit index held by a running service; scanning the log instead");
            None
        }
        Err(e) => {
            eprintln!("audit index unusable ({e}); scanning the log instead");
            None
        }
    }
}
