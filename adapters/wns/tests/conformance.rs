//! The channel conformance suite of `tidings-testkit`, run on `WnsChannel` against the WNS fake
//! (legacy flow, the harness's credentials).

mod common;

use tidings_testkit::channel::ChannelOptions;
use tidings_testkit::wns::WnsHarness;
use tidings_wns::WnsChannel;

fn channel(h: &WnsHarness, o: ChannelOptions) -> WnsChannel {
    WnsChannel::builder()
        .app(common::app_config(h.app().as_str(), h.credentials()))
        .address_policy(&WnsHarness::address_policy())
        .request_timeout(o.timeout)
        .build()
        .expect("a valid WNS configuration")
}

tidings_testkit::channel_conformance!(WnsHarness, channel);
