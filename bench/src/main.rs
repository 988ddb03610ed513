//! The foundation benchmark: USERS users × 3 endpoints × 10 notifications through `MemoryStore`
//! and channels that accept instantly — send, dispatch and outcome recording, end to end.
//!
//! `cargo run --release -p tidings-bench` (default 10,000 users = 300,000 deliveries);
//! `-- --users 2500` for a smaller run. Prints deliveries/s and peak memory.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings::{
    ApnsEnvironment, App, DispatcherConfig, EndpointRegistration, NewNotification, Platform,
    PushAddress, SystemClock, Tidings,
};
use tidings_memory::{MemoryStore, RecordingChannel};

const ENDPOINTS_PER_USER: usize = 3;
const NOTIFICATIONS_PER_USER: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let users = parse_users()?;
    let expected = users * ENDPOINTS_PER_USER * NOTIFICATIONS_PER_USER;
    let channels = [Platform::Apns, Platform::Fcm, Platform::Wns].map(RecordingChannel::counting);
    let mut builder = Tidings::builder()
        .store(MemoryStore::new())
        .clock(SystemClock)
        .app(App::new("bench"));
    for c in &channels {
        builder = builder.channel(c.clone());
    }
    let tidings = builder.build()?;

    let rss_start = memory_kib("VmRSS:");
    for u in 0..users {
        let user = format!("user-{u}");
        let addresses = [
            PushAddress::Apns {
                token: format!("{u:064x}"),
                environment: ApnsEnvironment::Production,
            },
            PushAddress::Fcm {
                token: format!("fcm-{u}"),
            },
            PushAddress::Wns {
                channel_uri: format!("https://db5p.notify.windows.com/?token={u}"),
            },
        ];
        for address in addresses {
            tidings
                .register_endpoint(EndpointRegistration::new("bench", user.as_str(), address))
                .await?;
        }
    }

    let config = DispatcherConfig {
        batch_size: 1024,
        concurrency_per_channel: 4096,
        ..DispatcherConfig::default()
    };
    let started = Instant::now();
    // Senders and dispatchers run at the same time, as in a live host.
    let senders: Vec<_> = (0..2)
        .map(|s| {
            let tidings = tidings.clone();
            tokio::spawn(async move {
                for u in (s..users).step_by(2) {
                    let user = format!("user-{u}");
                    for i in 0..NOTIFICATIONS_PER_USER {
                        let n = NewNotification::new("bench", user.as_str(), format!("n{i}"))
                            .title("Benchmark")
                            .body("A notification body of a typical length for a chat message.");
                        tidings.send(n).await?;
                    }
                }
                Ok::<_, tidings::Error>(())
            })
        })
        .collect();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dispatchers: Vec<_> = (0..2)
        .map(|_| {
            let dispatcher = tidings.dispatcher_with(config.clone())?;
            let accepted = accepted.clone();
            Ok(tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                while accepted.load(Relaxed) < expected {
                    let report = dispatcher.run_once().await?;
                    accepted.fetch_add(report.accepted, Relaxed);
                    if report.leased == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok::<_, tidings::Error>(())
            }))
        })
        .collect::<Result<_, tidings::ValidationError>>()?;
    let mut send_done = Duration::ZERO;
    for s in senders {
        s.await??;
        send_done = started.elapsed();
    }
    for d in dispatchers {
        d.await??;
    }
    let elapsed = started.elapsed();
    let pushed: usize = channels.iter().map(RecordingChannel::len).sum();
    assert_eq!(pushed, expected, "every delivery pushed exactly once");

    let rss_end = memory_kib("VmRSS:");
    let peak = memory_kib("VmHWM:");
    let notifications = users * NOTIFICATIONS_PER_USER;
    println!("users={users} notifications={notifications} deliveries={expected}");
    println!("send phase finished after {:.3} s", send_done.as_secs_f64());
    println!(
        "end to end: {:.3} s, {:.0} deliveries/s",
        elapsed.as_secs_f64(),
        expected as f64 / elapsed.as_secs_f64()
    );
    match (peak, rss_start, rss_end) {
        (Some(peak), Some(start), Some(end)) => println!(
            "peak memory {:.1} MiB; retained by the store {:.1} MiB = {:.0} bytes per stored notification",
            peak as f64 / 1024.0,
            end.saturating_sub(start) as f64 / 1024.0,
            (end.saturating_sub(start) * 1024) as f64 / notifications as f64
        ),
        _ => println!("peak memory: unavailable on this platform (reads /proc/self/status)"),
    }
    Ok(())
}

fn parse_users() -> Result<usize, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut users = 10_000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--users" => {
                users = args.next().ok_or("--users needs a number")?.parse()?;
            }
            other => return Err(format!("unknown argument {other:?}; usage: [--users N]").into()),
        }
    }
    if users == 0 {
        return Err("--users must be positive".into());
    }
    Ok(users)
}

/// A `/proc/self/status` field in KiB (Linux only).
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
