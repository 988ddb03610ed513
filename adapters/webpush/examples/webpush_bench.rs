//! Web Push benchmark: RFC 8291 encryptions per second on one core next to the floor (one P-256
//! key generation plus one ECDH agreement, measured in the same run), then deliveries per second
//! and client CPU per delivery to the loopback Web Push fake of `tidings-testkit`.
//!
//! ```text
//! cargo run --release -p tidings-webpush --example webpush_bench
//! ```
//!
//! The fake runs in a child process (this same binary with `--mock`), so the CPU time this
//! process reports is the client's alone. The fake verifies VAPID on every request; decryption is
//! checked on a sample first and then turned off so the fake does not compete for the cores
//! (one ECDH per push on the receiving side costs as much as the sender's encryption).

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use tidings::{AddressPolicy, Endpoint, PushAddress, PushChannel, PushContent, VisualContent};
use tidings_testkit::bench;
use tidings_testkit::channel::{endpoint_for, push_to};
use tidings_testkit::webpush::{VapidKey, WebPushMock};
use tidings_webpush::crypto::{encrypt, SubscriptionKeys};
use tidings_webpush::{request, WebPushChannel};

type Res<T> = Result<T, Box<dyn Error>>;

const SUBSCRIPTIONS: usize = 3_000;
const PUSHES: usize = 30_000;
const CONCURRENCY: usize = 128;
const CRYPTO_ROUNDS: usize = 20_000;

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--mock") {
        return serve_mock();
    }
    crypto_bench()?;
    delivery_bench()
}

/// A shoulder-tap push for `endpoint`, as the dispatcher renders it.
fn tap(endpoint: &Endpoint) -> tidings::Push {
    push_to(
        endpoint,
        PushContent::Tap {
            alert: Some(VisualContent {
                title: "New notification".into(),
                body: None,
            }),
        },
    )
}

fn crypto_bench() -> Res<()> {
    let browser = PrivateKey::generate(&ECDH_P256).map_err(|_| "keygen")?;
    let ua_public = browser.compute_public_key().map_err(|_| "public key")?;
    let keys = SubscriptionKeys::new(ua_public.as_ref(), &[7u8; 16])?;
    let endpoint = endpoint_for(
        &"bench".into(),
        PushAddress::WebPush {
            endpoint: "https://fcm.googleapis.com/fcm/send/bench".into(),
            p256dh: String::new(),
            auth: String::new(),
        },
    );
    let plaintext = request::render(&tap(&endpoint));

    // Warm up, then alternate the two measurements so load on the shared machine hits both.
    let mut floor = Duration::ZERO;
    let mut full = Duration::ZERO;
    let rounds = 4;
    for round in 0..=rounds {
        let started = Instant::now();
        for _ in 0..CRYPTO_ROUNDS / rounds {
            let ephemeral = PrivateKey::generate(&ECDH_P256).map_err(|_| "keygen")?;
            agreement::agree(
                &ephemeral,
                UnparsedPublicKey::new(&ECDH_P256, ua_public.as_ref()),
                "ecdh",
                |secret| Ok(secret[0]),
            )?;
        }
        let f = started.elapsed();
        let started = Instant::now();
        for _ in 0..CRYPTO_ROUNDS / rounds {
            std::hint::black_box(encrypt(&keys, &plaintext)?);
        }
        let e = started.elapsed();
        if round > 0 {
            floor += f;
            full += e;
        }
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / CRYPTO_ROUNDS as f64;
    println!(
        "encryption ({} B plaintext, one core): {:.1} µs each = {:.0}/s",
        plaintext.len(),
        per(full),
        1e6 / per(full)
    );
    println!(
        "floor (P-256 keygen + ECDH):           {:.1} µs each = {:.0}/s",
        per(floor),
        1e6 / per(floor)
    );
    println!(
        "encryption / floor:                    {:.2}",
        per(full) / per(floor)
    );
    Ok(())
}

/// Child process: the fake, with `SUBSCRIPTIONS` subscriptions printed as `endpoint p256dh
/// auth` lines, then `ready <origin>`; `decrypt off` on stdin turns decryption off; it exits
/// when stdin closes.
fn serve_mock() -> Res<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mock = WebPushMock::start().await;
        mock.set_recording(false);
        let mut out = std::io::stdout().lock();
        for _ in 0..SUBSCRIPTIONS {
            let s = mock.subscription();
            writeln!(out, "{} {} {}", s.endpoint(), s.p256dh(), s.auth())?;
        }
        writeln!(out, "ready {}", mock.origin())?;
        out.flush()?;
        drop(out);
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin());
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await?;
            if n == 0 {
                return Ok(());
            }
            if line.trim() == "decrypt off" {
                mock.set_decrypting(false);
            }
        }
    })
}

fn delivery_bench() -> Res<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--mock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let app: tidings::AppId = "bench".into();
    let mut endpoints = Vec::with_capacity(SUBSCRIPTIONS);
    for line in stdout.lines() {
        let line = line?;
        if line.starts_with("ready ") {
            break;
        }
        let mut parts = line.split(' ');
        let (Some(endpoint), Some(p256dh), Some(auth)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad line from the mock: {line}").into());
        };
        endpoints.push(endpoint_for(
            &app,
            PushAddress::WebPush {
                endpoint: endpoint.into(),
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        ));
    }
    if endpoints.len() != SUBSCRIPTIONS {
        return Err("the mock did not start".into());
    }
    let vapid = VapidKey::generate();
    let channel = WebPushChannel::builder()
        .vapid(app, vapid.pkcs8_pem(), "mailto:bench@example.com")
        .address_policy(AddressPolicy::with_loopback_for_tests())
        .build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Correctness sample with decryption on: every body must decrypt and pass VAPID.
        for e in endpoints.iter().take(50) {
            channel.send(&tap(e)).await?;
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    writeln!(stdin, "decrypt off")?;
    stdin.flush()?;

    let mock_pid = child.id();
    let report = bench::measure(
        PUSHES,
        || bench::process_cpu_secs(std::process::id()),
        || bench::process_cpu_secs(mock_pid),
        || {
            runtime.block_on(bench::spawn_all(PUSHES, CONCURRENCY, move |i| {
                let channel = channel.clone();
                let push = tap(&endpoints[i % SUBSCRIPTIONS]);
                async move { channel.send(&push).await }
            }))
        },
    );
    drop(stdin);
    let _ = child.wait();
    let no_proc = "no /proc: CPU time not measured";
    let cpu = report.client_cpu_micros_per_delivery().ok_or(no_proc)?;
    let mock_cpu = report.mock_cpu_micros_per_delivery().ok_or(no_proc)?;
    let failures = report.failures;

    println!(
        "deliveries: {PUSHES} pushes to {SUBSCRIPTIONS} subscriptions, {CONCURRENCY} in flight, \
         {failures} failed: {:.2} s = {:.0}/s; client CPU {cpu:.0} µs per delivery \
         (the fake: {mock_cpu:.0} µs per request)",
        report.wall.as_secs_f64(),
        report.deliveries_per_sec(),
    );
    if failures > 0 {
        return Err(format!("{failures} pushes failed").into());
    }
    Ok(())
}
