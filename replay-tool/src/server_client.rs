//! Going through a running `backbone-server` instead of the data
//! directory it holds.
//!
//! `status`, `dlq`, `rebuild`, `tail` and `audit` do
//! ([`locally_or_through_server`]); the other commands need the data
//! directory.
//!
//! The server is the one `--server URL` names, else the one whose
//! discovery file (`<data-dir>/server.json`, written while it serves) sits
//! in the data directory. With `--token` (or `BACKBONE_TOKEN`) requests
//! carry `Authorization: Bearer`; the server's admin routes need a token of
//! `admin` scope when the server has tokens configured.

use serde::de::DeserializeOwned;

use crate::{
    config::Settings,
    error::{CliError, CliResult},
};

/// The discovery file's name: `backbone_server::DISCOVERY_FILE`.
const DISCOVERY_FILE: &str = "server.json";

/// A running server to ask.
#[derive(Debug)]
pub(crate) struct ServerClient {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// Why a request to the server failed, with the server's error kind.
#[derive(Debug, thiserror::Error)]
#[error("server {url}: {message}")]
pub struct ServerFailure {
    /// The URL asked.
    pub url: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The server's error kind (`Unauthorized`, `Forbidden`, ...), when it
    /// answered one.
    pub kind: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl ServerClient {
    fn new(base: String, settings: &Settings) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            client: reqwest::Client::new(),
        }
    }

    /// The server `--server` names, if it does.
    pub(crate) fn explicit(settings: &Settings) -> Option<Self> {
        settings.server.clone().map(|url| Self::new(url, settings))
    }

    /// The server whose discovery file is in the data directory, if any.
    pub(crate) fn discovered(settings: &Settings) -> Option<Self> {
        let text = std::fs::read_to_string(settings.data_dir.join(DISCOVERY_FILE)).ok()?;
        let file: serde_json::Value = serde_json::from_str(&text).ok()?;
        let url = file["url"].as_str()?.to_owned();
        tracing::debug!(%url, "the data directory is held by a server; asking it");
        Some(Self::new(url, settings))
    }

    /// `GET path`, the answer's JSON as `T`.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.request(reqwest::Method::GET, path).await
    }

    /// `method path` without a body, the answer's JSON as `T`.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> CliResult<T> {
        self.send(method, path, None).await
    }

    /// `POST path` with a JSON body, the answer's JSON as `T`.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> CliResult<T> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// `GET path` as Server-Sent Events: each event's data as JSON, until
    /// the server ends the stream.
    pub(crate) async fn events(
        &self,
        path: &str,
    ) -> CliResult<impl futures::Stream<Item = CliResult<serde_json::Value>> + use<>> {
        use eventsource_stream::Eventsource as _;
        use futures::StreamExt as _;
        let (url, response) = self.call(reqwest::Method::GET, path, None, &[]).await?;
        Ok(response.bytes_stream().eventsource().map(move |event| {
            let event =
                event.map_err(|e| failure(&url, None, None, format!("event stream: {e}")))?;
            serde_json::from_str(&event.data)
                .map_err(|e| failure(&url, None, None, format!("event not JSON: {e}")))
        }))
    }

    /// `GET path?query` as NDJSON: each line as `T`, until the server ends
    /// the answer. A line `{"error": {"kind", "message"}}` is the server's
    /// failure after the answer started.
    pub(crate) async fn lines<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> CliResult<impl futures::Stream<Item = CliResult<T>> + use<T>> {
        use futures::StreamExt as _;
        let (url, response) = self.call(reqwest::Method::GET, path, None, query).await?;
        let chunks = response.bytes_stream();
        let state = (chunks, Vec::<u8>::new(), url);
        Ok(futures::stream::unfold(Some(state), |state| async move {
            let (mut chunks, mut buffer, url) = state?;
            loop {
                if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let item = parse_line(&url, &line);
                    let next = item.is_ok().then_some((chunks, buffer, url));
                    return Some((item, next));
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let cut = failure(&url, None, None, format!("answer cut: {e}"));
                        return Some((Err(cut), None));
                    }
                    None if buffer.is_empty() => return None,
                    None => {
                        let cut = failure(&url, None, None, "answer ends mid-line".into());
                        return Some((Err(cut), None));
                    }
                }
            }
        }))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> CliResult<T> {
        let (url, response) = self.call(method, path, body, &[]).await?;
        let status = Some(response.status().as_u16());
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| failure(&url, status, None, format!("not JSON: {e}")))?;
        serde_json::from_value(body)
            .map_err(|e| failure(&url, status, None, format!("unexpected answer: {e}")))
    }

    /// Sends a request; the URL and a successful response, or the
    /// server's error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        query: &[(&str, String)],
    ) -> CliResult<(String, reqwest::Response)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| failure(&url, None, None, format!("unreachable: {e}")))?;
        let response = check(&url, response).await?;
        Ok((url, response))
    }
}

/// One NDJSON line as `T`, or the failure it reports.
fn parse_line<T: DeserializeOwned>(url: &str, line: &[u8]) -> CliResult<T> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| failure(url, None, None, format!("line not JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        return Err(failure(
            url,
            Some(500),
            error["kind"].as_str().map(str::to_owned),
            error["message"].as_str().unwrap_or("no message").to_owned(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| failure(url, None, None, format!("unexpected line: {e}")))
}

fn failure(url: &str, status: Option<u16>, kind: Option<String>, message: String) -> CliError {
    CliError::Server(Box::new(ServerFailure {
        url: url.to_owned(),
        status,
        kind,
        message,
    }))
}

/// `response` when it is a success, else the server's error as a failure.
async fn check(url: &str, response: reqwest::Response) -> CliResult<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = &body["error"];
    Err(failure(
        url,
        Some(status.as_u16()),
        error["kind"].as_str().map(str::to_owned),
        error["message"].as_str().unwrap_or("no message").to_owned(),
    ))
}

/// Runs `local` on the data directory, or `remote` through a server: the
/// one `--server` names (then `local` never runs), else the one the data
/// directory's discovery file names when `local` finds the log or a store
/// held (exit code 5).
pub(crate) async fn locally_or_through_server<T>(
    settings: &Settings,
    local: impl Future<Output = CliResult<T>>,
    remote: impl AsyncFnOnce(&ServerClient) -> CliResult<T>,
) -> CliResult<T> {
    if let Some(server) = ServerClient::explicit(settings) {
        return remote(&server).await;
    }
    match local.await {
        Err(e) if e.exit_code() == crate::error::exit::LOCKED => {
            match ServerClient::discovered(settings) {
                Some(server) => remote(&server).await,
                None => Err(e),
            }
        }
        other => other,
    }
}
