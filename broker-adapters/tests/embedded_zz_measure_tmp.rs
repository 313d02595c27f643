//! Temporary throughput measurement (deleted after use).
use backbone_broker::{
    Broker, OutboundMessage, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure() {
    let dir = tempfile::tempdir_in("/work").unwrap();
    let b = EmbeddedBroker::open(EmbeddedOptions {
        path: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
    let total = 200_000u64;
    let start = Instant::now();
    let mut n = 0;
    while n < total {
        let batch: Vec<_> = (0..1000)
            .map(|i| {
                OutboundMessage::new(
                    format!("events.user.registered.u-{}", n + i),
                    vec![7u8; 300],
                )
                .with_msg_id(format!("id-{}", n + i))
            })
            .collect();
        for r in b.publish_batch(batch).await {
            r.unwrap();
        }
        n += 1000;
    }
    let el = start.elapsed();
    println!(
        "batch: {} events in {:?} = {:.0}/s",
        total,
        el,
        total as f64 / el.as_secs_f64()
    );
    let start = Instant::now();
    let b = std::sync::Arc::new(b);
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                b.publish(OutboundMessage::new(
                    format!("events.x.{t}-{i}"),
                    vec![1u8; 300],
                ))
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = start.elapsed();
    println!(
        "concurrent singles: 12800 in {:?} = {:.0}/s",
        el,
        12800.0 / el.as_secs_f64()
    );
    let start = Instant::now();
    use futures::StreamExt;
    let c = b
        .read("EVENTS", Default::default())
        .await
        .unwrap()
        .count()
        .await;
    println!("read {c} in {:?}", start.elapsed());
}
