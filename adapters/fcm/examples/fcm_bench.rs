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

use tidings::{AppId, PushAddress, PushChannel};
use tidings_fcm::{FcmAppConfig, FcmChannel, ServiceAccountKey};
use tidings_testkit::bench::{self, Labels, Runtimes};
use tidings_testkit::fcm::FcmMock;

const PUSHES: usize = 30_000;
const TOKENS: usize = 3_000;
const IN_FLIGHT: usize = 512;

fn main() {
    let runtimes = Runtimes::new("fcm");

    let mock = runtimes.mock().block_on(FcmMock::start());
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

    let tokens: Vec<PushAddress> = (0..TOKENS)
        .map(|t| PushAddress::Fcm {
            token: format!("bench-token-{t:05}"),
        })
        .collect();
    let pushes = bench::pushes(&app, &tokens, PUSHES);

    // Warm up with one push: the access token and the HTTP/2 connection.
    let report = runtimes.run(PUSHES, IN_FLIGHT, 1, |i| channel.send(&pushes[i]));
    let labels = Labels {
        bench: "fcm_bench",
        variant: None,
        addresses: TOKENS,
        address_noun: "tokens",
        wait_note: true,
    };
    bench::print_report(&report, &labels, mock.request_count());
    assert_eq!(report.failures, 0, "every push must be accepted");
}
