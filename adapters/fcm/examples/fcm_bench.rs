//! Throughput of `FcmChannel` against the loopback FCM mock: 30,000 pushes to 3,000
//! registration tokens.
//!
//! ```sh
//! cargo run --release -p tidings-fcm --example fcm_bench
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
use tidings_fcm::{FcmAppConfig, FcmChannel, ServiceAccountKey};
use tidings_testkit::bench::thread_cpu_secs;
use tidings_testkit::fcm::FcmMock;

const PUSHES: usize = 30_000;
const TOKENS: usize = 3_000;
const IN_FLIGHT: usize = 512;
const CLIENT_THREADS: &str = "fcm-client";
const MOCK_THREADS: &str = "fcm-mock";

fn push_to(app: &AppId, token: String, i: usize) -> Push {
    let now = Timestamp::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::new_random(),
        app: app.clone(),
        user: UserId::new(format!("user-{}", i % TOKENS)),
        installation_id: None,
        address: PushAddress::Fcm { token },
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

    let mock = mock_rt.block_on(FcmMock::start());
    mock.set_recording(false);
    let account = mock.service_account("bench-project");
    let key = ServiceAccountKey::from_json(&account.to_json()).unwrap();
    let app = AppId::new("bench");
    let channel = FcmChannel::builder()
        .app(FcmAppConfig::new(app.clone(), key))
        .base_url(mock.base_url())
        .http2_prior_knowledge(true)
        .build()
        .unwrap();

    let tokens: Vec<String> = (0..TOKENS).map(|t| format!("bench-token-{t:05}")).collect();
    let pushes: Vec<Push> = (0..PUSHES)
        .map(|i| push_to(&app, tokens[i % TOKENS].clone(), i))
        .collect();

    let (elapsed, cpu, mock_cpu, failures) = client_rt.block_on(async {
        // Warm up: the access token and the HTTP/2 connection.
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
        "fcm_bench: {PUSHES} pushes to {TOKENS} tokens in {:.3} s: {rate:.0} deliveries/s \
         ({failures} failed, {} requests reached the mock)",
        elapsed.as_secs_f64(),
        mock.request_count() - 1,
    );
    match cpu {
        Some(cpu) => println!(
            "fcm_bench: client CPU {:.2} s = {:.1} µs/delivery (1 client worker thread, 1 mock \
             worker thread)",
            cpu,
            cpu * 1e6 / PUSHES as f64
        ),
        None => println!("fcm_bench: client CPU not measured (no /proc)"),
    }
    if let Some(mock_cpu) = mock_cpu {
        println!(
            "fcm_bench: mock CPU {mock_cpu:.2} s = {:.1} µs/delivery; wall time not spent in \
             either is waiting for a core (check the load average)",
            mock_cpu * 1e6 / PUSHES as f64
        );
    }
    assert_eq!(failures, 0, "every push must be accepted");
    drop(mock_rt);
}
