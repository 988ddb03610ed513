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

use tidings::{ApnsEnvironment, AppId, PushAddress, PushChannel};
use tidings_apns::ApnsChannel;
use tidings_testkit::apns::{ApnsMock, ApnsSigningKey};
use tidings_testkit::bench::{self, Labels, Runtimes};

const PUSHES: usize = 30_000;
const TOKENS: usize = 3_000;
const IN_FLIGHT: usize = 512;

fn main() {
    let runtimes = Runtimes::new("apns");

    let key = ApnsSigningKey::generate("BENCHTEAM1", "BENCHKEY01");
    let mock = runtimes.mock().block_on(
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
    let tokens: Vec<PushAddress> = (0..TOKENS)
        .map(|t| PushAddress::Apns {
            token: format!("{t:064x}"),
            environment: ApnsEnvironment::Production,
        })
        .collect();
    let pushes = bench::pushes(&app, &tokens, PUSHES);

    // Warm up with one push: the provider token, the TLS handshake and the HTTP/2 connection.
    let report = runtimes.run(PUSHES, IN_FLIGHT, 1, |i| channel.send(&pushes[i]));
    let labels = Labels {
        bench: "apns_bench",
        variant: None,
        addresses: TOKENS,
        address_noun: "tokens",
        wait_note: true,
    };
    bench::print_report(&report, &labels, mock.request_count());
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("apns_bench: load average {}", load.trim());
    }
    assert_eq!(report.failures, 0, "every push must be accepted");
}
