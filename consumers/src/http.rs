//! A minimal HTTP responder for `/healthz` and `/metrics`: one request per
//! connection, `GET` only, enough for probes and Prometheus scrapes.
//!
//! `/healthz` answers `200` while every runner is running and none is stuck
//! failing ([`crate::health`]), `503` otherwise; the body is the JSON
//! [`crate::HealthReport`], naming each unhealthy runner and its last error.

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::{metrics::Metrics, shutdown::Shutdown};

const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves `/healthz` and `/metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Metrics, mut shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = respond(stream, &metrics).await {
                        tracing::debug!(error = %e, "metrics connection failed");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/healthz") => {
            let report = metrics.health().report();
            let status = if report.healthy {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let body = serde_json::to_string(&report).unwrap_or_default() + "\n";
            (status, "application/json", body)
        }
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::shutdown_channel;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        metrics.consumer("billing");
        let (trigger, shutdown) = shutdown_channel();
        let server = tokio::spawn(serve(listener, metrics.clone(), shutdown));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
        metrics.health().register("billing", "billing");
        metrics
            .health()
            .stopped("billing", Some("store failed".into()));
        let unhealthy = get(addr, "/healthz").await;
        assert!(unhealthy.starts_with("HTTP/1.1 503"), "{unhealthy}");
        let body = unhealthy.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["unhealthy"][0]["name"], "billing");
        assert_eq!(json["unhealthy"][0]["error"], "store failed");
        assert!(
            get(addr, "/metrics")
                .await
                .contains("backbone_events_applied_total{consumer=\"billing\"} 0")
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        trigger.trigger();
        server.await.unwrap();
    }
}
