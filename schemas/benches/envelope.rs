//! Micro-benchmarks of the wire contract: putting an event in an envelope
//! (subject, CloudEvents headers, protobuf payload), strict decoding, typed
//! access, and proto3 JSON transcoding. Run with
//! `cargo bench -p backbone-schemas --bench envelope`.

use std::hint::black_box;

use backbone_schemas::{
    Envelope, EventContext, messaging::v1::MessageReceived, payment::v1::PaymentReceived, sample,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let payment = sample::payment_received();
    group.bench_function("payment.received envelope+subject+headers", |b| {
        b.iter(|| {
            let envelope =
                Envelope::from_event(black_box(&payment), EventContext::new("payment-service"))
                    .expect("valid sample");
            black_box((envelope.subject(), envelope.headers(), envelope.payload))
        })
    });
    let message = sample::message_received();
    group.bench_function("message.received envelope+subject+headers", |b| {
        b.iter(|| {
            let envelope =
                Envelope::from_event(black_box(&message), EventContext::new("messaging-service"))
                    .expect("valid sample");
            black_box((envelope.subject(), envelope.headers(), envelope.payload))
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    let envelope = sample::sample_envelope(&sample::payment_received(), 6);
    let (subject, headers, payload) = (envelope.subject(), envelope.headers(), envelope.payload);
    group.bench_function("payment.received strict decode", |b| {
        b.iter(|| {
            Envelope::decode(
                black_box(&subject),
                black_box(&headers),
                black_box(&payload),
            )
        })
    });
    let decoded = Envelope::decode(&subject, &headers, &payload).expect("valid sample");
    group.bench_function("payment.received typed event", |b| {
        b.iter(|| black_box(&decoded).event::<PaymentReceived>())
    });
    let message = sample::sample_envelope(&sample::message_received(), 3);
    let (m_subject, m_headers, m_payload) = (message.subject(), message.headers(), message.payload);
    group.bench_function("message.received strict decode + typed", |b| {
        b.iter(|| {
            Envelope::decode(
                black_box(&m_subject),
                black_box(&m_headers),
                black_box(&m_payload),
            )
            .and_then(|e| e.event::<MessageReceived>())
        })
    });
    group.finish();
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1));
    let envelope = sample::sample_envelope(&sample::message_received(), 3);
    group.bench_function("message.received payload to proto3 JSON", |b| {
        b.iter(|| black_box(&envelope).payload_json())
    });
    let json = envelope.payload_json().expect("valid sample");
    group.bench_function("message.received proto3 JSON to envelope", |b| {
        b.iter(|| {
            Envelope::from_json(
                "message.received",
                black_box(&json),
                EventContext::new("cli"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, encode, decode, json);
criterion_main!(benches);
