//! Going through a running `backbone-server` instead of the data
//! directory it holds.
//!
//! `status` and `dlq` do; the other commands need the data directory.
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
        let url = format!("{}{path}", self.base);
        let failure = |status, kind, message: String| {
            CliError::Server(Box::new(ServerFailure {
                url: url.clone(),
                status,
                kind,
                message,
            }))
        };
        let mut request = self.client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| failure(None, None, format!("unreachable: {e}")))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| failure(Some(status.as_u16()), None, format!("not JSON: {e}")))?;
        if !status.is_success() {
            let error = &body["error"];
            let kind = error["kind"].as_str().map(str::to_owned);
            let message = error["message"].as_str().unwrap_or("no message").to_owned();
            return Err(failure(Some(status.as_u16()), kind, message));
        }
        serde_json::from_value(body).map_err(|e| {
            failure(
                Some(status.as_u16()),
                None,
                format!("unexpected answer: {e}"),
            )
        })
    }
}
