//! The channel conformance suite of `tidings-testkit`, against its Web Push fake (which verifies
//! VAPID and decrypts every body).

use tidings_testkit::channel::ChannelOptions;
use tidings_testkit::webpush::WebPushHarness;
use tidings_webpush::WebPushChannel;

fn channel(h: &WebPushHarness, o: ChannelOptions) -> WebPushChannel {
    WebPushChannel::builder()
        .vapid(h.app(), h.vapid_key().pkcs8_pem(), h.subject())
        .address_policy(WebPushHarness::address_policy())
        .timeout(o.timeout)
        .build()
        .expect("a valid channel configuration")
}

tidings_testkit::channel_conformance!(WebPushHarness, channel);
