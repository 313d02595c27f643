//! Streams: create-or-update with a settings diff, info, listing, purge.

use serde::Deserialize;
use serde_json::json;

use super::{
    Shared,
    api::code,
    errors::stream_error,
    wire::{WireStreamInfo, WireStreamList, stream_config_json},
};
use crate::{
    error::{StreamError, StreamErrorKind},
    stream::{ProvisionOutcome, StreamConfig, StreamInfo},
};

/// Creates the stream or updates it to match `config`.
pub(crate) async fn ensure_stream(
    shared: &Shared,
    config: &StreamConfig,
) -> Result<ProvisionOutcome, StreamError> {
    validate(config)?;
    let existing = match wire_info(shared, &config.name).await {
        Ok(info) => info,
        Err(failure) if failure.code() == Some(code::STREAM_NOT_FOUND) => {
            shared
                .api
                .request::<WireStreamInfo>(
                    &format!("STREAM.CREATE.{}", config.name),
                    &stream_config_json(config),
                )
                .await
                .map_err(stream_error)?;
            return Ok(ProvisionOutcome::Created);
        }
        Err(failure) => return Err(stream_error(failure)),
    };
    let current = existing.config.to_config();
    let changed = current.changes_to(config)?;
    if changed.is_empty() {
        return Ok(ProvisionOutcome::Unchanged);
    }
    shared
        .api
        .request::<WireStreamInfo>(
            &format!("STREAM.UPDATE.{}", config.name),
            &stream_config_json(config),
        )
        .await
        .map_err(stream_error)?;
    Ok(ProvisionOutcome::Updated(changed))
}

fn validate(config: &StreamConfig) -> Result<(), StreamError> {
    let invalid = |detail: String| StreamError::with_detail(StreamErrorKind::InvalidConfig, detail);
    if !valid_name(&config.name) {
        return Err(invalid(format!(
            "stream name {:?} must be non-empty letters, digits, '-' or '_'",
            config.name
        )));
    }
    if config.subjects.is_empty() || config.subjects.iter().any(|s| !valid_pattern(s)) {
        return Err(invalid(format!(
            "stream {} needs valid subjects, got {:?}",
            config.name, config.subjects
        )));
    }
    if config.replicas == 0 {
        return Err(invalid("replicas must be at least 1".into()));
    }
    Ok(())
}

pub(crate) use backbone_core::subject::{valid_name, valid_pattern};

pub(crate) async fn wire_info(
    shared: &Shared,
    stream: &str,
) -> Result<WireStreamInfo, super::api::ApiFailure> {
    if !valid_name(stream) {
        return Err(super::api::ApiFailure::Api {
            status: 404,
            code: code::STREAM_NOT_FOUND,
            description: format!("invalid stream name {stream:?}"),
        });
    }
    shared
        .api
        .request(&format!("STREAM.INFO.{stream}"), &serde_json::Value::Null)
        .await
}

/// A stream's configuration and state.
pub(crate) async fn stream_info(shared: &Shared, stream: &str) -> Result<StreamInfo, StreamError> {
    wire_info(shared, stream)
        .await
        .map(|info| info.to_info())
        .map_err(stream_error)
}

/// Every stream, ordered by name.
pub(crate) async fn streams(shared: &Shared) -> Result<Vec<StreamInfo>, StreamError> {
    let mut all = Vec::new();
    loop {
        let page: WireStreamList = shared
            .api
            .request("STREAM.LIST", &json!({ "offset": all.len() }))
            .await
            .map_err(stream_error)?;
        let batch = page.streams.unwrap_or_default();
        let empty = batch.is_empty();
        all.extend(batch.iter().map(WireStreamInfo::to_info));
        if empty || all.len() >= page.total {
            break;
        }
    }
    all.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    Ok(all)
}

#[derive(Deserialize)]
struct PurgeResponse {
    #[serde(default)]
    purged: u64,
}

/// Purges `stream`, or only subjects matching `filter`.
pub(crate) async fn purge(
    shared: &Shared,
    stream: &str,
    filter: Option<&str>,
) -> Result<u64, StreamError> {
    let info = wire_info(shared, stream).await.map_err(stream_error)?;
    if info.config.deny_purge {
        return Err(StreamError::with_detail(
            StreamErrorKind::Denied,
            format!("stream {stream} has deny_purge set"),
        ));
    }
    let body = match filter {
        Some(f) if !valid_pattern(f) => {
            return Err(StreamError::with_detail(
                StreamErrorKind::InvalidConfig,
                format!("invalid purge filter {f:?}"),
            ));
        }
        Some(f) => json!({ "filter": f }),
        None => json!({}),
    };
    let response: PurgeResponse = shared
        .api
        .request(&format!("STREAM.PURGE.{stream}"), &body)
        .await
        .map_err(stream_error)?;
    Ok(response.purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_changes_are_immutable() {
        let current = StreamConfig::event_log();
        let wanted = StreamConfig {
            storage: crate::stream::StorageKind::Memory,
            ..StreamConfig::event_log()
        };
        let err = current.changes_to(&wanted).unwrap_err();
        assert_eq!(
            err.kind(),
            &StreamErrorKind::ImmutableSetting {
                setting: "storage".into()
            }
        );
    }

    #[test]
    fn diff_lists_changed_settings() {
        let current = StreamConfig::dead_letters();
        let wanted = StreamConfig {
            deny_delete: true,
            max_message_size: Some(1024),
            ..StreamConfig::dead_letters()
        };
        assert_eq!(
            current.changes_to(&wanted).unwrap(),
            vec!["max_message_size".to_owned(), "deny_delete".to_owned()]
        );
    }

    #[test]
    fn patterns_are_validated() {
        assert!(valid_pattern("events.>"));
        assert!(valid_pattern("events.*.x"));
        assert!(!valid_pattern("events.>.x"));
        assert!(!valid_pattern("events..x"));
        assert!(!valid_pattern(""));
        assert!(!valid_pattern("a b"));
    }
}
