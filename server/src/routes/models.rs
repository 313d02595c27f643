//! `GET /v1/models/...`: the read models' queries, JSON out.
//!
//! Each read model the server runs answers its own routes; a model this
//! server does not run answers 404 `UnknownReadModel`. Lists are pages:
//! `?limit=` (1-1000, default 100) and `?cursor=` (the `next_cursor` of the
//! previous page, absent on the last page). A cursor is a position in the
//! list's order, not an offset, so a page does not shift when events arrive
//! between requests. A single thing that does not exist (a payment, a pack,
//! a conversation, an audited event) is 404 `NotFound`; a user with no
//! followers has an empty list, which is the model's answer.

use std::{fmt::Display, str::FromStr, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    routing::get,
};
use backbone_consumers::{
    ProjectionStore, StoreError,
    models::{Audit, AuditQuery, Billing, Gallery, Inbox, Notifications},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{access::Principal, api_error::ApiError, app::AppState};

/// The read-model routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/notifications/users/{user}", get(follow_counts))
        .route(
            "/v1/models/notifications/users/{user}/followers",
            get(followers),
        )
        .route(
            "/v1/models/notifications/users/{user}/following",
            get(following),
        )
        .route("/v1/models/notifications/users/{user}/feed", get(feed))
        .route("/v1/models/billing/users/{user}/balances", get(balances))
        .route("/v1/models/billing/users/{user}/ledger", get(ledger))
        .route("/v1/models/billing/payments/{payment}", get(payment))
        .route("/v1/models/gallery/users/{user}/images", get(images))
        .route("/v1/models/gallery/users/{user}/tune", get(latest_tune))
        .route("/v1/models/gallery/packs/{pack}", get(pack))
        .route(
            "/v1/models/inbox/users/{user}/conversations",
            get(conversations),
        )
        .route("/v1/models/inbox/users/{user}/unread", get(unread))
        .route(
            "/v1/models/inbox/conversations/{conversation}",
            get(conversation),
        )
        .route("/v1/models/audit/events", get(audit_events))
        .route("/v1/models/audit/events/{id}", get(audit_event))
        .route_layer(axum::middleware::from_fn(read_scope))
}

/// 403 unless the request's token may read the model its path names
/// (`/v1/models/<model>/...`; the list filters instead).
async fn read_scope(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let model = request.uri().path().split('/').nth(3).map(str::to_owned);
    let principal = request.extensions().get::<Principal>().cloned();
    match (model, principal) {
        (Some(model), Some(principal)) => match principal.check_read(&model) {
            Ok(()) => next.run(request).await,
            Err(e) => e.into_response(),
        },
        _ => next.run(request).await,
    }
}

/// The largest page.
pub(crate) const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Paging {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl Paging {
    /// The page size asked for, 1 to [`MAX_LIMIT`].
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            limit @ 1..=MAX_LIMIT => Ok(limit),
            _ => Err(ApiError::invalid_query(format!(
                "limit must be 1 to {MAX_LIMIT}"
            ))),
        }
    }

    /// The cursor, as the list's key type.
    pub(crate) fn cursor<K: FromStr>(&self) -> Result<Option<K>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| c.parse().map_err(|_| invalid_cursor()))
            .transpose()
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    items: Vec<T>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Which way a list is sorted by its cursor key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Ascending,
    Descending,
}

/// The page of `items` (sorted by `key` in `order`) after the cursor.
fn page<T, K>(
    items: Vec<T>,
    paging: &Paging,
    order: Order,
    key: impl Fn(&T) -> K,
) -> Result<Json<Page<T>>, ApiError>
where
    K: Ord + FromStr + Display,
{
    let limit = paging.limit()?;
    let start = match paging.cursor::<K>()? {
        None => 0,
        Some(after) => items.partition_point(|item| match order {
            Order::Ascending => key(item) <= after,
            Order::Descending => key(item) >= after,
        }),
    };
    let rest = items.len() - start;
    let items: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next_cursor = (rest > limit)
        .then(|| items.last().map(|last| key(last).to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

fn invalid_cursor() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidCursor",
        "the cursor is not one this list gave out",
    )
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "StoreFailure",
        e.to_string(),
    )
}

/// The paging parameters, or 400 `InvalidQuery`.
pub(crate) fn paging(query: Result<Query<Paging>, QueryRejection>) -> Result<Paging, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid_query(e.body_text()))
}

impl AppState {
    /// The store of read model `name`, when this server runs it.
    fn model(&self, name: &str) -> Result<ProjectionStore, ApiError> {
        if let Some(store) = self.runners.store(name) {
            return Ok(store);
        }
        if self.runners.spec(name).is_some() {
            // A rebuild is swapping the store in.
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Rebuilding",
                format!("the read model {name} is being swapped for its rebuild"),
            )
            .with("model", name)
            .retry_after(crate::api_error::RETRY_AFTER));
        }
        Err(ApiError::unknown_read_model(name))
    }
}

fn found<T: Serialize>(value: Option<T>, what: &str) -> Result<Json<T>, ApiError> {
    value
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no such {what}")))
}

type State_ = State<Arc<AppState>>;
pub(crate) type PagingQuery = Result<Query<Paging>, QueryRejection>;

/// `GET /v1/models`: the read models this server runs, with checkpoints.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "queries",
    summary = "The read models this server runs, with checkpoints",
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn list(
    State(state): State_,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let mut models = Vec::new();
    let stores = state.runners.stores();
    let readable = stores
        .iter()
        .filter(|(name, _)| principal.check_read(name).is_ok());
    for (name, store) in readable {
        let checkpoint = store.checkpoint().map_err(store_error)?;
        models.push(json!({ "name": name, "checkpoint": checkpoint }));
    }
    Ok(Json(json!({ "models": models })))
}

#[utoipa::path(
    get,
    path = "/v1/models/notifications/users/{user}",
    tag = "queries",
    summary = "Follower and following counts",
    params(("user" = String, Path, description = "The user id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn follow_counts(
    State(state): State_,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.model("notifications")?;
    let followers = Notifications::follower_count(&store, &user).map_err(store_error)?;
    let following = Notifications::following_count(&store, &user).map_err(store_error)?;
    Ok(Json(
        json!({ "user": user, "followers": followers, "following": following }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/models/notifications/users/{user}/followers",
    tag = "queries",
    summary = "Followers of a user, sorted, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn followers(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<String>>, ApiError> {
    let items =
        Notifications::followers(&state.model("notifications")?, &user).map_err(store_error)?;
    page(items, &paging(q)?, Order::Ascending, Clone::clone)
}

#[utoipa::path(
    get,
    path = "/v1/models/notifications/users/{user}/following",
    tag = "queries",
    summary = "Users a user follows, sorted, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn following(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<String>>, ApiError> {
    let items =
        Notifications::following(&state.model("notifications")?, &user).map_err(store_error)?;
    page(items, &paging(q)?, Order::Ascending, Clone::clone)
}

#[utoipa::path(
    get,
    path = "/v1/models/notifications/users/{user}/feed",
    tag = "queries",
    summary = "A user's feed, newest first, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn feed(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<backbone_consumers::models::notifications::FeedItem>>, ApiError> {
    let items = Notifications::feed(&state.model("notifications")?, &user, usize::MAX)
        .map_err(store_error)?;
    page(items, &paging(q)?, Order::Descending, |i| i.seq)
}

#[utoipa::path(
    get,
    path = "/v1/models/billing/users/{user}/balances",
    tag = "queries",
    summary = "A user's balances by currency",
    params(("user" = String, Path, description = "The user id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn balances(
    State(state): State_,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let balances = Billing::balances(&state.model("billing")?, &user).map_err(store_error)?;
    let balances: Vec<Value> = balances
        .into_iter()
        .map(|(currency, minor)| json!({ "currency": currency, "balance_minor": minor }))
        .collect();
    Ok(Json(json!({ "user": user, "balances": balances })))
}

#[utoipa::path(
    get,
    path = "/v1/models/billing/users/{user}/ledger",
    tag = "queries",
    summary = "A user's ledger, oldest first, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn ledger(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<backbone_consumers::models::billing::LedgerEntry>>, ApiError> {
    let items = Billing::ledger(&state.model("billing")?, &user).map_err(store_error)?;
    page(items, &paging(q)?, Order::Ascending, |e| e.seq)
}

#[utoipa::path(
    get,
    path = "/v1/models/billing/payments/{payment}",
    tag = "queries",
    summary = "A payment's record",
    params(("payment" = String, Path, description = "The payment id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn payment(
    State(state): State_,
    Path(payment): Path<String>,
) -> Result<Json<backbone_consumers::models::billing::PaymentRecord>, ApiError> {
    found(
        Billing::payment(&state.model("billing")?, &payment).map_err(store_error)?,
        "payment",
    )
}

#[utoipa::path(
    get,
    path = "/v1/models/gallery/users/{user}/images",
    tag = "queries",
    summary = "A user's processed images, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn images(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<backbone_consumers::models::gallery::ImageSummary>>, ApiError> {
    let items = Gallery::images(&state.model("gallery")?, &user).map_err(store_error)?;
    page(items, &paging(q)?, Order::Ascending, |i| i.image_id.clone())
}

#[utoipa::path(
    get,
    path = "/v1/models/gallery/users/{user}/tune",
    tag = "queries",
    summary = "A user's latest tune",
    params(("user" = String, Path, description = "The user id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn latest_tune(
    State(state): State_,
    Path(user): Path<String>,
) -> Result<Json<backbone_consumers::models::gallery::TuneSummary>, ApiError> {
    found(
        Gallery::latest_tune(&state.model("gallery")?, &user).map_err(store_error)?,
        "tune",
    )
}

#[utoipa::path(
    get,
    path = "/v1/models/gallery/packs/{pack}",
    tag = "queries",
    summary = "A pack's images and revision",
    params(("pack" = String, Path, description = "The pack id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn pack(
    State(state): State_,
    Path(pack): Path<String>,
) -> Result<Json<backbone_consumers::models::gallery::PackSummary>, ApiError> {
    found(
        Gallery::pack_of(&state.model("gallery")?, &pack).map_err(store_error)?,
        "pack",
    )
}

#[utoipa::path(
    get,
    path = "/v1/models/inbox/users/{user}/conversations",
    tag = "queries",
    summary = "A user's conversations, most recent first, paged",
    params(("user" = String, Path, description = "The user id"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn conversations(
    State(state): State_,
    Path(user): Path<String>,
    q: PagingQuery,
) -> Result<Json<Page<backbone_consumers::models::inbox::Conversation>>, ApiError> {
    let items = Inbox::conversations(&state.model("inbox")?, &user).map_err(store_error)?;
    page(items, &paging(q)?, Order::Descending, |c| c.last_seq)
}

#[utoipa::path(
    get,
    path = "/v1/models/inbox/users/{user}/unread",
    tag = "queries",
    summary = "A user's unread messages",
    params(("user" = String, Path, description = "The user id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn unread(
    State(state): State_,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let unread = Inbox::unread(&state.model("inbox")?, &user).map_err(store_error)?;
    Ok(Json(json!({ "user": user, "unread": unread })))
}

#[utoipa::path(
    get,
    path = "/v1/models/inbox/conversations/{conversation}",
    tag = "queries",
    summary = "One conversation",
    params(("conversation" = String, Path, description = "The conversation id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn conversation(
    State(state): State_,
    Path(conversation): Path<String>,
) -> Result<Json<backbone_consumers::models::inbox::Conversation>, ApiError> {
    found(
        Inbox::conversation(&state.model("inbox")?, &conversation).map_err(store_error)?,
        "conversation",
    )
}

/// `?key=|type=|source=|correlation=` or `?from=&to=` (RFC 3339), with
/// `limit` and `cursor`: the `replay-tool audit` lookups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    key: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    source: Option<String>,
    correlation: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl AuditParams {
    fn query(&self) -> Result<AuditQuery, ApiError> {
        let lookups = [
            self.key.clone().map(AuditQuery::Key),
            self.event_type.clone().map(AuditQuery::Type),
            self.source.clone().map(AuditQuery::Source),
            self.correlation.clone().map(AuditQuery::Correlation),
        ];
        let mut lookups = lookups.into_iter().flatten();
        let time = (self.from.is_some() || self.to.is_some()).then(|| {
            let ms = |t: &Option<String>, default: i64| match t {
                None => Ok(default),
                Some(t) => {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                        .map_err(|_| {
                            ApiError::invalid_query(format!("{t:?} is not an RFC 3339 time"))
                        })
                }
            };
            Ok::<_, ApiError>(AuditQuery::TimeRange {
                from_ms: ms(&self.from, i64::MIN)?,
                to_ms: ms(&self.to, i64::MAX)?,
            })
        });
        match (lookups.next(), lookups.next(), time) {
            (Some(lookup), None, None) => Ok(lookup),
            (None, None, Some(range)) => range,
            _ => Err(ApiError::invalid_query(
                "give exactly one of key, type, source, correlation, or a from/to range",
            )),
        }
    }

    /// The cursor: `<time_ms>.<seq>` of the last entry of the previous page.
    fn after(&self) -> Result<Option<(i64, u64)>, ApiError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let (ms, seq) = cursor.split_once('.').ok_or_else(invalid_cursor)?;
        match (ms.parse(), seq.parse()) {
            (Ok(ms), Ok(seq)) => Ok(Some((ms, seq))),
            _ => Err(invalid_cursor()),
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/models/audit/events",
    tag = "queries",
    summary = "Audited events by key, type, source, correlation or time range, paged",
    params(("key" = Option<String>, Query, description = "Subject key"), ("type" = Option<String>, Query, description = "Event type"), ("source" = Option<String>, Query, description = "ce-source"), ("correlation" = Option<String>, Query, description = "Correlation id"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive"), ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn audit_events(
    State(state): State_,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Page<backbone_consumers::models::audit::AuditEntry>>, ApiError> {
    let Query(params) = q.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let limit = Paging {
        limit: params.limit,
        cursor: None,
    }
    .limit()?;
    let store = state.model("audit")?;
    let mut items = Audit::query_after(&store, &params.query()?, params.after()?, limit + 1)
        .map_err(store_error)?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|e| format!("{}.{}", e.time_ms, e.seq))
    });
    Ok(Json(Page {
        items,
        next_cursor: next_cursor.flatten(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/models/audit/events/{id}",
    tag = "queries",
    summary = "One audited event by ce-id",
    params(("id" = String, Path, description = "The event's ce-id")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn audit_event(
    State(state): State_,
    Path(id): Path<String>,
) -> Result<Json<backbone_consumers::models::audit::AuditEntry>, ApiError> {
    found(
        Audit::by_id(&state.model("audit")?, &id).map_err(store_error)?,
        "event",
    )
}
