//! Throughput of `ApnsChannel` against the loopback APNs fake over TLS + HTTP/2 (token auth):
//! 30,000 pushes to 3,000 device tokens.
//!
//! ```sh
//! cargo run --release -p tidings-apns --example apns_bench
//! ```
//!
//! The mock and the client run on separate Tokio runtimes with named threads, so the client's
//! CPU time can be read from `/proc/self/task/*/stat` (Linux) apart from the mock's.

// A benchmark reports failures by panicking.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tidings::{
    ApnsEnvironment, AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId,
    Priority, Push, PushAddress, PushChannel, PushContent, Timestamp, UserId, VisualContent,
};
use tidings_apns::ApnsChannel;
use tidings_testkit::apns::{ApnsMock, ApnsSigningKey};
use tidings_testkit::bench::thread_cpu_secs;

const PUSHES: usize = 30_000;
const TOKENS: usize = 3_000;
const IN_FLIGHT: usize = 512;
const CLIENT_THREADS: &str = "apns-client";
const MOCK_THREADS: &str = "apns-mock";

fn push_to(app: &AppId, token: String, i: usize) -> Push {
    let now = Timestamp::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new_random(),
        app: app.clone(),
        user: UserId::new(format!("user-{}", i % TOKENS)),
        installation_id: None,
        address: PushAddress::Apns {
            token,
            environment: ApnsEnvironment::Production,
        },
        active: true,
        created_at: now,
        last_seen_at: now,
        address_expires_at: None,
        deactivation_reason: None,
    };
    Push {
        delivery_id: DeliveryId::new_random(),
        kind: DeliveryKind::Notification,
        app: app.clone(),
        endpoint: Arc::new(endpoint),
        notification_id: Some(NotificationId::new_random()),
        sequence: i as u64 + 1,
        priority: Priority::Normal,
        collapse_id: format!("n{i}"),
        group: None,
        display_ttl: None,
        expires_at: now.plus(Duration::from_secs(3600)),
        sent_at: now,
        attempt: 1,
        content: PushContent::Tap {
            alert: Some(VisualContent {
                title: "New message".into(),
                body: None,
            }),
        },
    }
}

fn main() {
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(MOCK_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap();

    let key = ApnsSigningKey::generate("BENCHTEAM1", "BENCHKEY01");
    let mock = mock_rt.block_on(
        ApnsMock::builder()
            .topic("com.example.bench")
            .key(&key)
            .start(),
    );
    mock.set_recording(false);
    let app = AppId::new("bench");
    let channel = ApnsChannel::builder()
        .token_auth(
            app.clone(),
            "com.example.bench",
            key.team_id(),
            key.key_id(),
            key.p8_pem(),
        )
        .base_url(mock.base_url())
        .trusted_ca_pem(mock.ca_pem())
        .build()
        .unwrap();

    // 32-byte device tokens, hex, as iOS issues them.
    let tokens: Vec<String> = (0..TOKENS).map(|t| format!("{t:064x}")).collect();
    let pushes: Vec<Push> = (0..PUSHES)
        .map(|i| push_to(&app, tokens[i % TOKENS].clone(), i))
        .collect();

    let (elapsed, cpu, mock_cpu, failures) = client_rt.block_on(async {
        // Warm up: the provider token, the TLS handshake and the HTTP/2 connection.
        channel.send(&pushes[0]).await.unwrap();
        let cpu_before = thread_cpu_secs(CLIENT_THREADS);
        let mock_before = thread_cpu_secs(MOCK_THREADS);
        let started = Instant::now();
        let failures = stream::iter(pushes.iter())
            .map(|p| channel.send(p))
            .buffer_unordered(IN_FLIGHT)
            .filter(|r| futures::future::ready(r.is_err()))
            .count()
            .await;
        let elapsed = started.elapsed();
        let cpu = thread_cpu_secs(CLIENT_THREADS)
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let mock_cpu = thread_cpu_secs(MOCK_THREADS)
            .zip(mock_before)
            .map(|(after, before)| after - before);
        (elapsed, cpu, mock_cpu, failures)
    });

    let rate = PUSHES as f64 / elapsed.as_secs_f64();
    println!(
        "apns_bench: {PUSHES} pushes to {TOKENS} tokens in {:.3} s: {rate:.0} deliveries/s \
         ({failures} failed, {} requests reached the mock)",
        elapsed.as_secs_f64(),
        mock.request_count() - 1,
    );
    match cpu {
        Some(cpu) => println!(
            "apns_bench: client CPU {:.2} s = {:.1} µs/delivery (1 client worker thread, 1 mock \
             worker thread)",
            cpu,
            cpu * 1e6 / PUSHES as f64
        ),
        None => println!("apns_bench: client CPU not measured (no /proc)"),
    }
    if let Some(mock_cpu) = mock_cpu {
        println!(
            "apns_bench: mock CPU {mock_cpu:.2} s = {:.1} µs/delivery; wall time not spent in \
             either is waiting for a core (check the load average)",
            mock_cpu * 1e6 / PUSHES as f64
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("apns_bench: load average {}", load.trim());
    }
    assert_eq!(failures, 0, "every push must be accepted");
    drop(mock_rt);
}
