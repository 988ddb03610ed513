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

use tidings::{AppId, PushAddress, PushChannel};
use tidings_testkit::bench::{self, load_average, Labels, Runtimes};
use tidings_testkit::wns::WnsMock;
use tidings_wns::{WnsAppConfig, WnsChannel, WnsCredentials};

const PUSHES: usize = 30_000;
const CHANNELS: usize = 3_000;
const IN_FLIGHT: usize = 256;

fn main() {
    let h2 = std::env::args().any(|a| a == "--h2");
    let runtimes = Runtimes::new("wns");

    let mock = runtimes.mock().block_on(WnsMock::start());
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

    let uris: Vec<PushAddress> = (0..CHANNELS)
        .map(|_| PushAddress::Wns {
            channel_uri: mock.channel_uri(&creds),
        })
        .collect();
    let pushes = bench::pushes(&app, &uris, PUSHES);

    let load_before = load_average();
    // Warm up with one push per slot in flight: the access token and the connections.
    let report = runtimes.run(PUSHES, IN_FLIGHT, IN_FLIGHT, |i| channel.send(&pushes[i]));
    let labels = Labels {
        bench: "wns_bench",
        variant: Some(if h2 { "HTTP/2" } else { "HTTP/1.1" }),
        addresses: CHANNELS,
        address_noun: "channel URIs",
        wait_note: false,
    };
    bench::print_report(&report, &labels, mock.request_count());
    println!(
        "wns_bench: load average before {load_before}, after {}",
        load_average()
    );
    assert_eq!(report.failures, 0, "every push must be accepted");
}
