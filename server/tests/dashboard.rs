//! The dashboard in headless Chromium (Debian's `chromium` through its
//! `chromedriver`), against the real `backbone-server` process: the page
//! shows the stream's count and it changes as events are published; a
//! dead letter appears with a redrive button, and clicking it redrives the
//! letter (billing then applies the event); a rebuild started from the
//! page runs to `done` with equal digests. The screenshot is kept in the
//! test's target directory (`dashboard.png`).

mod support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backbone_testkit::free_port;
use fantoccini::{ClientBuilder, Locator};
use reqwest::Client;
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event, short_duplicate_window};

/// `$CHROMIUM_BIN` and `$CHROMEDRIVER_BIN` (`scripts/ensure-chromium`
/// finds or installs them), else where Debian puts them.
fn binaries() -> (String, String) {
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver =
        std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    (chromium, driver)
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn publish(client: &Client, server: &ServerProcess, event: Value) {
    let response = client
        .post(server.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

fn follow(n: usize) -> Value {
    cloud_event(
        "user.followed",
        json!({"followerId": format!("u-{n}"), "followeeId": "u-0"}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_counts_change_and_redrives_a_dead_letter() {
    let (chromium, chromedriver) = binaries();
    for binary in [&chromium, &chromedriver] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: run scripts/ensure-chromium (scripts/test does), or set CHROMIUM_BIN and CHROMEDRIVER_BIN"
        );
    }
    let server =
        ServerProcess::start_prepared("models = [\"billing\"]\n", short_duplicate_window).await;
    let http = Client::new();
    for n in 0..3 {
        publish(&http, &server, follow(n)).await;
    }

    let port = free_port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let browser = loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(browser) => break browser,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver never answered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    browser.goto(&server.url("/")).await.unwrap();

    let messages = "#stream-EVENTS td[data-field=messages]";
    let wait_text = |selector: &'static str, wanted: String| {
        let browser = browser.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = match browser.find(Locator::Css(selector)).await {
                    Ok(element) => element.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                if text.contains(&wanted) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{selector}: {text:?}, waiting for {wanted:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let click = |selector: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .find(Locator::Css(selector))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    wait_text(messages, "3".into()).await;
    for n in 3..5 {
        publish(&http, &server, follow(n)).await;
    }
    wait_text(messages, "5".into()).await;

    // A refund of an unknown payment: billing dead-letters it.
    publish(
        &http,
        &server,
        cloud_event(
            "payment.refunded",
            json!({"refundId": "r-1", "paymentId": "p-late", "userId": "u-1",
            "amountMinor": "30", "currency": "EUR"}),
        ),
    )
    .await;
    wait_text("#dead-letter-count", "1".into()).await;
    publish(
        &http,
        &server,
        cloud_event(
            "payment.received",
            json!({"paymentId": "p-late", "userId": "u-1", "amountMinor": "100",
            "currency": "EUR"}),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    click("button[data-redrive]").await;
    wait_text("#message", "redriven for billing".into()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let balances = server
            .get_json("/v1/models/billing/users/u-1/balances")
            .await;
        if balances["balances"] == json!([{"currency": "EUR", "balance_minor": 70}]) {
            break;
        }
        assert!(Instant::now() < deadline, "{balances}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_text("#health", "healthy".into()).await;

    // A rebuild from the page: its row goes to done, with equal digests.
    let select = browser.find(Locator::Css("#rebuild-model")).await.unwrap();
    select.select_by_value("billing").await.unwrap();
    click("#rebuild-start").await;
    wait_text("#rebuild-billing td[data-field=phase]", "done".into()).await;
    let rebuilt = server.get_json("/v1/admin/rebuilds/billing").await;
    assert_eq!(rebuilt["verify"], true, "{rebuilt}");
    assert_eq!(rebuilt["digest"], rebuilt["live_digest"], "{rebuilt}");
    wait_text("#health", "healthy".into()).await;

    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("dashboard screenshot: {}", artifact.display());
    browser.close().await.unwrap();
    drop(driver);
}
