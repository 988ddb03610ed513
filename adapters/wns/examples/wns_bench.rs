//! Throughput of `WnsChannel` against the loopback WNS mock: 30,000 pushes to 3,000 channel
//! URIs.
//!
//! ```sh
//! cargo run --release -p tidings-wns --example wns_bench            # HTTP/1.1 connection pool
//! cargo run --release -p tidings-wns --example wns_bench -- --h2    # HTTP/2 prior knowledge
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
    AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId, Priority, Push,
    PushAddress, PushChannel, PushContent, Timestamp, UserId, VisualContent,
};
use tidings_testkit::bench::{load_average, thread_cpu_secs};
use tidings_testkit::wns::WnsMock;
use tidings_wns::{WnsAppConfig, WnsChannel, WnsCredentials};

const PUSHES: usize = 30_000;
const CHANNELS: usize = 3_000;
const IN_FLIGHT: usize = 256;
const CLIENT_THREADS: &str = "wns-client";
const MOCK_THREADS: &str = "wns-mock";

fn push_to(app: &AppId, channel_uri: String, i: usize) -> Push {
    let now = Timestamp::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new_random(),
        app: app.clone(),
        user: UserId::new(format!("user-{}", i % CHANNELS)),
        installation_id: None,
        address: PushAddress::Wns { channel_uri },
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
    let h2 = std::env::args().any(|a| a == "--h2");
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

    let mock = mock_rt.block_on(WnsMock::start());
    mock.set_recording(false);
    let creds = mock.register_app();
    let app = AppId::new("bench");
    let channel = WnsChannel::builder()
        .app(
            WnsAppConfig::new(
                app.clone(),
                WnsCredentials::legacy(creds.client_id.clone(), creds.client_secret.clone()),
            )
            .token_url(creds.token_url.clone()),
        )
        .allow_loopback_for_tests()
        .http2_prior_knowledge(h2)
        .build()
        .unwrap();

    let uris: Vec<String> = (0..CHANNELS).map(|_| mock.channel_uri(&creds)).collect();
    let pushes: Vec<Push> = (0..PUSHES)
        .map(|i| push_to(&app, uris[i % CHANNELS].clone(), i))
        .collect();

    let load_before = load_average();
    let (elapsed, cpu, mock_cpu, failures) = client_rt.block_on(async {
        // Warm up: the access token and the connections.
        let warm = stream::iter(pushes.iter().take(IN_FLIGHT))
            .map(|p| channel.send(p))
            .buffer_unordered(IN_FLIGHT)
            .filter(|r| futures::future::ready(r.is_err()))
            .count()
            .await;
        assert_eq!(warm, 0, "warm-up pushes must be accepted");
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
        "wns_bench ({}): {PUSHES} pushes to {CHANNELS} channel URIs in {:.3} s: {rate:.0} \
         deliveries/s ({failures} failed, {} requests reached the mock)",
        if h2 { "HTTP/2" } else { "HTTP/1.1" },
        elapsed.as_secs_f64(),
        mock.request_count() as usize - IN_FLIGHT,
    );
    match cpu {
        Some(cpu) => println!(
            "wns_bench: client CPU {:.2} s = {:.1} µs/delivery (1 client worker thread, 1 mock \
             worker thread)",
            cpu,
            cpu * 1e6 / PUSHES as f64
        ),
        None => println!("wns_bench: client CPU not measured (no /proc)"),
    }
    if let Some(mock_cpu) = mock_cpu {
        println!(
            "wns_bench: mock CPU {mock_cpu:.2} s = {:.1} µs/delivery",
            mock_cpu * 1e6 / PUSHES as f64
        );
    }
    println!(
        "wns_bench: load average before {load_before}, after {}",
        load_average()
    );
    assert_eq!(failures, 0, "every push must be accepted");
    drop(mock_rt);
}
