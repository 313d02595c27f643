//! Mapping API failures to each operation's error kind.

use super::api::{ApiFailure, code};
use crate::error::{
    ConsumerError, ConsumerErrorKind, ReadError, ReadErrorKind, StreamError, StreamErrorKind,
};

fn is_permission(failure: &ApiFailure) -> bool {
    matches!(failure, ApiFailure::Api { status: 403, .. })
        || matches!(failure, ApiFailure::Api { description, .. } if description.contains("ermission"))
}

/// A failed stream request.
pub(crate) fn stream_error(failure: ApiFailure) -> StreamError {
    let kind = match &failure {
        ApiFailure::TimedOut => StreamErrorKind::TimedOut,
        ApiFailure::Unavailable | ApiFailure::NoResponders => StreamErrorKind::BrokerUnavailable,
        ApiFailure::PermissionDenied { .. } => StreamErrorKind::PermissionDenied,
        f if is_permission(f) => StreamErrorKind::PermissionDenied,
        ApiFailure::Api { code, status, .. } => match *code {
            code::STREAM_NOT_FOUND => StreamErrorKind::StreamNotFound,
            code::REPLICAS_NOT_SUPPORTED => StreamErrorKind::Unsupported,
            code::STREAM_INVALID_CONFIG | code::SUBJECTS_OVERLAP | code::STREAM_NAME_IN_USE => {
                StreamErrorKind::InvalidConfig
            }
            // Other refusals of the request are about the config; a server
            // that fails (out of resources, no quorum) is not.
            _ if *status >= 500 => StreamErrorKind::StorageFailure,
            _ => StreamErrorKind::InvalidConfig,
        },
        ApiFailure::Malformed(_) => StreamErrorKind::StorageFailure,
    };
    StreamError::with_detail(kind, failure.describe())
}

/// A failed read request.
pub(crate) fn read_error(failure: ApiFailure) -> ReadError {
    let kind = match &failure {
        ApiFailure::TimedOut => ReadErrorKind::TimedOut,
        ApiFailure::Unavailable | ApiFailure::NoResponders => ReadErrorKind::BrokerUnavailable,
        ApiFailure::PermissionDenied { .. } => ReadErrorKind::PermissionDenied,
        f if is_permission(f) => ReadErrorKind::PermissionDenied,
        ApiFailure::Api { code, .. } => match *code {
            code::STREAM_NOT_FOUND => ReadErrorKind::StreamNotFound,
            code::NO_MESSAGE_FOUND => ReadErrorKind::MessageNotFound,
            _ => ReadErrorKind::InvalidRequest,
        },
        ApiFailure::Malformed(_) => ReadErrorKind::Corrupted,
    };
    ReadError::with_detail(kind, failure.describe())
}

/// A failed consumer request.
pub(crate) fn consumer_error(failure: ApiFailure) -> ConsumerError {
    let kind = match &failure {
        ApiFailure::TimedOut => ConsumerErrorKind::TimedOut,
        ApiFailure::Unavailable | ApiFailure::NoResponders => ConsumerErrorKind::BrokerUnavailable,
        ApiFailure::PermissionDenied { .. } => ConsumerErrorKind::PermissionDenied,
        f if is_permission(f) => ConsumerErrorKind::PermissionDenied,
        ApiFailure::Api { code, status, .. } => match *code {
            code::STREAM_NOT_FOUND => ConsumerErrorKind::StreamNotFound,
            code::CONSUMER_NOT_FOUND => ConsumerErrorKind::ConsumerNotFound,
            // "JetStream system temporarily unavailable" (503, during a
            // leader election) and other server failures: worth a retry,
            // never a reason to change the config.
            _ if *status >= 500 => ConsumerErrorKind::BrokerUnavailable,
            _ => ConsumerErrorKind::InvalidConfig,
        },
        ApiFailure::Malformed(_) => ConsumerErrorKind::StorageFailure,
    };
    ConsumerError::with_detail(kind, failure.describe())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, code: u64) -> ApiFailure {
        ApiFailure::Api {
            status,
            code,
            description: "x".into(),
        }
    }

    #[test]
    fn a_consumer_request_during_an_election_is_worth_a_retry() {
        assert_eq!(
            consumer_error(failure(503, 10008)).kind(),
            &ConsumerErrorKind::BrokerUnavailable
        );
        assert_eq!(
            consumer_error(failure(400, 10012)).kind(),
            &ConsumerErrorKind::InvalidConfig
        );
    }

    #[test]
    fn a_failing_server_is_not_an_invalid_config() {
        // JetStream's "insufficient resources" comes with status 503.
        assert_eq!(
            stream_error(failure(503, 10023)).kind(),
            &StreamErrorKind::StorageFailure
        );
        assert_eq!(
            stream_error(failure(400, code::SUBJECTS_OVERLAP)).kind(),
            &StreamErrorKind::InvalidConfig
        );
        assert_eq!(
            stream_error(failure(400, 10999)).kind(),
            &StreamErrorKind::InvalidConfig
        );
    }

    fn api(code: u64, status: u16) -> ApiFailure {
        ApiFailure::Api {
            status,
            code,
            description: "x".into(),
        }
    }

    #[test]
    fn not_found_codes_map_to_not_found_kinds() {
        assert_eq!(
            stream_error(api(code::STREAM_NOT_FOUND, 404)).kind(),
            &StreamErrorKind::StreamNotFound
        );
        assert_eq!(
            read_error(api(code::NO_MESSAGE_FOUND, 404)).kind(),
            &ReadErrorKind::MessageNotFound
        );
        assert_eq!(
            consumer_error(api(code::CONSUMER_NOT_FOUND, 404)).kind(),
            &ConsumerErrorKind::ConsumerNotFound
        );
        assert_eq!(
            consumer_error(ApiFailure::Unavailable).kind(),
            &ConsumerErrorKind::BrokerUnavailable
        );
    }

    #[test]
    fn refused_request_subjects_map_to_permission_denied() {
        let refused = || ApiFailure::PermissionDenied {
            subject: "$JS.API.STREAM.PURGE.EVENTS".into(),
        };
        assert_eq!(
            stream_error(refused()).kind(),
            &StreamErrorKind::PermissionDenied
        );
        assert_eq!(
            read_error(refused()).kind(),
            &ReadErrorKind::PermissionDenied
        );
        assert_eq!(
            consumer_error(refused()).kind(),
            &ConsumerErrorKind::PermissionDenied
        );
    }
}
