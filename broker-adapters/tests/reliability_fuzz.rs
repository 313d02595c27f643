//! Mutation fuzzing of what arrives from the wire: `Envelope::decode` on
//! arbitrary subject, headers and payload, and JSON -> protobuf transcoding
//! (`Envelope::from_json`, `Registry::json_to_payload`).
//!
//! A stable-Rust fuzzer (no sanitizer build, see docs/reliability.md): each
//! run mutates the sample events of every type — subject tokens, header
//! names and values, payload bytes, JSON values — plus fully random inputs,
//! for a time budget. Invariants: nothing panics; a bad input is a typed
//! error; whatever decodes re-encodes to itself (no input is half-accepted).
//!
//! `BACKBONE_FUZZ_SECONDS` sets the budget per target (default 3);
//! `BACKBONE_FUZZ_SEED` replays a run (the seed is printed).

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant, SystemTime},
};

use backbone_schemas::{Envelope, EventContext, Headers, Registry, sample::sample_events};
use serde_json::Value;

/// xorshift64*: small, fast and reproducible from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Short strings biased towards characters the decoders treat specially.
    fn text(&mut self, max: usize) -> String {
        const SPECIAL: &[&str] = &[
            ".", "*", ">", " ", "\t", "\r\n", "%", "%2E", "%ZZ", "\u{0}", "é", "\u{202e}",
            "events", "user", "1.0", "proto:", "-", "00-",
        ];
        let len = self.below(max + 1);
        let mut out = String::new();
        for _ in 0..len {
            if self.chance(3) {
                out.push_str(SPECIAL[self.below(SPECIAL.len())]);
            } else {
                out.push(char::from(0x20 + (self.next() % 0x5f) as u8));
            }
        }
        out
    }
}

fn budget() -> Duration {
    let seconds = std::env::var("BACKBONE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

fn seed() -> u64 {
    std::env::var("BACKBONE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

fn mutate_subject(rng: &mut Rng, subject: &str) -> String {
    let mut tokens: Vec<String> = subject.split('.').map(str::to_owned).collect();
    match rng.below(6) {
        0 => return rng.text(40),
        1 => {
            let i = rng.below(tokens.len());
            tokens[i] = rng.text(12);
        }
        2 => {
            let i = rng.below(tokens.len());
            tokens.remove(i);
        }
        3 => tokens.push(rng.text(8)),
        4 => {
            let other = sample_events();
            let (_, envelope) = &other[rng.below(other.len())];
            return envelope.subject();
        }
        _ => {}
    }
    tokens.join(".")
}

fn mutate_headers(rng: &mut Rng, headers: &Headers) -> Headers {
    let mut entries: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    for _ in 0..=rng.below(3) {
        if entries.is_empty() {
            entries.push((rng.text(10), rng.text(20)));
            continue;
        }
        let i = rng.below(entries.len());
        match rng.below(7) {
            0 => {
                entries.remove(i);
            }
            1 => entries[i].1 = rng.text(40),
            2 => {
                let copy = entries[i].clone();
                entries.push(copy);
            }
            3 => entries[i].0 = entries[i].0.to_uppercase(),
            4 => entries.push((rng.text(12), rng.text(30))),
            5 => {
                let mut value = entries[i].1.clone().into_bytes();
                if !value.is_empty() {
                    let at = rng.below(value.len());
                    value[at] = value[at].wrapping_add(1 + rng.below(200) as u8);
                }
                entries[i].1 = String::from_utf8_lossy(&value).into_owned();
            }
            _ => {
                let keep = rng.below(entries[i].1.chars().count() + 1);
                entries[i].1 = entries[i].1.chars().take(keep).collect();
            }
        }
    }
    let mut out = Headers::new();
    for (name, value) in entries {
        out.append(name, value);
    }
    out
}

fn mutate_payload(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    match rng.below(5) {
        0 => return rng.bytes(64),
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 => bytes.extend(rng.bytes(16)),
        _ => {
            for _ in 0..=rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
    }
    bytes
}

/// Decodes one input; whatever decodes must re-encode to itself.
fn check_decode(subject: &str, headers: &Headers, payload: &[u8]) {
    if let Ok(envelope) = Envelope::decode(subject, headers, payload) {
        let again = Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload)
            .expect("a decoded envelope re-encodes to a valid message");
        assert_eq!(again, envelope, "re-encoding is stable");
        assert_eq!(envelope.subject(), subject, "decoded from its own subject");
    }
}

#[test]
fn envelope_decode_survives_arbitrary_input() {
    let seed = seed();
    let mut rng = Rng(seed);
    let seeds = sample_events();
    let deadline = Instant::now() + budget();
    let (mut runs, mut accepted) = (0u64, 0u64);
    while Instant::now() < deadline {
        let (_, envelope) = &seeds[rng.below(seeds.len())];
        let (subject, headers, payload) = if rng.chance(10) {
            let mut headers = Headers::new();
            for _ in 0..rng.below(10) {
                headers.append(rng.text(16), rng.text(40));
            }
            (rng.text(60), headers, rng.bytes(128))
        } else {
            let mut subject = envelope.subject();
            let mut headers = envelope.headers();
            let mut payload = envelope.payload.to_vec();
            if rng.chance(2) {
                subject = mutate_subject(&mut rng, &subject);
            }
            if rng.chance(2) {
                headers = mutate_headers(&mut rng, &headers);
            }
            if rng.chance(2) {
                payload = mutate_payload(&mut rng, &payload);
            }
            (subject, headers, payload)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            check_decode(&subject, &headers, &payload)
        }));
        assert!(
            outcome.is_ok(),
            "seed {seed}, run {runs}: failed on subject {subject:?}, headers {headers:?}, payload {payload:?}"
        );
        if Envelope::decode(&subject, &headers, &payload).is_ok() {
            accepted += 1;
        }
        runs += 1;
    }
    println!("FUZZ target=envelope_decode seed={seed} runs={runs} accepted={accepted}");
    assert!(runs > 0);
}

fn mutate_json(rng: &mut Rng, value: &mut Value, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && depth < 4 && !rng.chance(4) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if rng.chance(6) {
                map.remove(key);
            } else if rng.chance(6) {
                map.insert(rng.text(10), random_json(rng, 2));
            } else if let Some(inner) = map.get_mut(key) {
                mutate_json(rng, inner, depth + 1);
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 4 && !rng.chance(4) => {
            let i = rng.below(items.len());
            mutate_json(rng, &mut items[i], depth + 1);
        }
        _ => *value = random_json(rng, 2),
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => Value::from(rng.next() as i64),
        3 => Value::from(f64::from_bits(rng.next())).clone(),
        4 => Value::String(rng.text(30)),
        5 => Value::String(
            [
                "1e400",
                "-0",
                "NaN",
                "Infinity",
                "18446744073709551616",
                "AAAA",
                "2026-13-45T25:61:00Z",
            ][rng.below(7)]
            .into(),
        ),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| (rng.text(8), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Transcodes one JSON input; whatever encodes must round-trip.
fn check_json(type_name: &str, json: &Value) {
    if let Ok(envelope) = Envelope::from_json(type_name, json, EventContext::new("fuzz")) {
        let canonical = envelope.payload_json().expect("an encoded event decodes");
        let again = Envelope::from_json(type_name, &canonical, EventContext::new("fuzz"))
            .expect("canonical JSON encodes again");
        assert_eq!(again.payload, envelope.payload, "JSON round trip is stable");
        assert_eq!(again.key, envelope.key);
    }
    let registry = Registry::global();
    if let Ok(payload) = registry.json_to_payload(type_name, json) {
        registry
            .payload_to_json(type_name, &payload)
            .expect("an encoded payload decodes");
    }
}

#[test]
fn json_transcoding_survives_arbitrary_input() {
    let seed = seed() ^ 0x5EED;
    let mut rng = Rng(seed);
    let seeds: Vec<(String, Value)> = sample_events()
        .into_iter()
        .map(|(t, e)| (t.to_owned(), e.payload_json().expect("sample JSON")))
        .collect();
    let deadline = Instant::now() + budget();
    let (mut runs, mut accepted) = (0u64, 0u64);
    while Instant::now() < deadline {
        let (type_name, mut json) = seeds[rng.below(seeds.len())].clone();
        let type_name = match rng.below(12) {
            0 => rng.text(20),
            1 => seeds[rng.below(seeds.len())].0.clone(),
            _ => type_name,
        };
        for _ in 0..=rng.below(3) {
            mutate_json(&mut rng, &mut json, 0);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| check_json(&type_name, &json)));
        assert!(
            outcome.is_ok(),
            "seed {seed}, run {runs}: failed on type {type_name:?}, json {json}"
        );
        if Envelope::from_json(&type_name, &json, EventContext::new("fuzz")).is_ok() {
            accepted += 1;
        }
        runs += 1;
    }
    println!("FUZZ target=json_transcode seed={seed} runs={runs} accepted={accepted}");
    assert!(runs > 0);
}
