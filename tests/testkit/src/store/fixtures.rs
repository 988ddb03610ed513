//! Test data: ids, valid push addresses per platform, endpoints and notifications.
//!
//! Everything here is valid by the rules of [`PushAddress::validate`] and the fanout engine, and
//! every id is fresh and random, so tests built from these fixtures never collide with each
//! other even on a shared store. Times are fixed offsets from [`T0`] so results are reproducible.

use std::time::Duration;

use tidings::{
    AddressPolicy, ApnsEnvironment, AppId, Endpoint, EndpointId, FallbackPolicy, Notification,
    NotificationId, NotificationState, Platform, PlatformSet, Priority, PushAddress, ReadState,
    Status, UserAction, UserId, VisualContent,
};

/// 2026-01-01T00:00:00Z: the fixed point every case's times are offsets of.
pub const T0: tidings::Timestamp = tidings::Timestamp::from_secs(1_767_225_600);

/// RFC 8291 Appendix A's receiver public key: a valid uncompressed P-256 point.
pub const WEBPUSH_P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";

/// RFC 8291 Appendix A's 16-byte authentication secret.
pub const WEBPUSH_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

/// How long a fixture notification lives: 7 days.
pub const NOTIFICATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// [`T0`] plus `secs` seconds.
pub fn at(secs: u64) -> tidings::Timestamp {
    T0.plus(Duration::from_secs(secs))
}

/// 32 random lowercase hex digits.
fn random_hex() -> String {
    NotificationId::new_random().as_uuid().simple().to_string()
}

/// A fresh app id, `app-<random>`.
pub fn app() -> AppId {
    AppId::new(format!("app-{}", random_hex()))
}

/// A fresh user id, `user-<random>`.
pub fn user() -> UserId {
    UserId::new(format!("user-{}", random_hex()))
}

/// A fresh APNs address: a 64-hex-digit production device token.
pub fn apns_address() -> PushAddress {
    valid(PushAddress::Apns {
        token: format!("{}{}", random_hex(), random_hex()),
        environment: ApnsEnvironment::Production,
    })
}

/// A fresh FCM registration token.
pub fn fcm_address() -> PushAddress {
    valid(PushAddress::Fcm {
        token: format!("fcm-{}:APA91b{}", random_hex(), random_hex()),
    })
}

/// A fresh WNS channel URI on `*.notify.windows.com`.
pub fn wns_address() -> PushAddress {
    valid(PushAddress::Wns {
        channel_uri: format!(
            "https://db5p.notify.windows.com/?token=AwYAAAD{}",
            random_hex()
        ),
    })
}

/// A fresh Web Push subscription on FCM's push service, with RFC 8291's example keys.
pub fn webpush_address() -> PushAddress {
    valid(PushAddress::WebPush {
        endpoint: format!("https://fcm.googleapis.com/fcm/send/{}", random_hex()),
        p256dh: WEBPUSH_P256DH.to_owned(),
        auth: WEBPUSH_AUTH.to_owned(),
    })
}

/// A fresh address on `platform`.
pub fn address(platform: Platform) -> PushAddress {
    match platform {
        Platform::Apns => apns_address(),
        Platform::Fcm => fcm_address(),
        Platform::Wns => wns_address(),
        Platform::WebPush => webpush_address(),
    }
}

fn valid(address: PushAddress) -> PushAddress {
    match address.validate(&AddressPolicy::default()) {
        Ok(a) => a,
        Err(e) => panic!("fixture address is invalid: {e}"),
    }
}

/// An active endpoint with a fresh id, registered (and last seen) at `at`.
pub fn endpoint_with(
    app: &AppId,
    user: &UserId,
    address: PushAddress,
    at: tidings::Timestamp,
) -> Endpoint {
    Endpoint {
        id: EndpointId::new_random(),
        app: app.clone(),
        user: user.clone(),
        installation_id: None,
        address,
        active: true,
        created_at: at,
        last_seen_at: at,
        address_expires_at: None,
        deactivation_reason: None,
    }
}

/// An active endpoint on `platform` with a fresh address, registered at [`T0`].
pub fn endpoint(app: &AppId, user: &UserId, platform: Platform) -> Endpoint {
    endpoint_with(app, user, address(platform), T0)
}

/// An unread, active notification for `user` of `app` created at `created_at`: a fresh id and
/// app notification id, a title and body, every platform targeted, expiring
/// [`NOTIFICATION_LIFETIME`] later, sequence 0 (the store assigns it).
pub fn notification(app: &AppId, user: &UserId, created_at: tidings::Timestamp) -> Notification {
    Notification {
        id: NotificationId::new_random(),
        app: app.clone(),
        user: user.clone(),
        app_notification_id: format!("order-{}", random_hex()),
        group: None,
        priority: Priority::Normal,
        created_at,
        expires_at: created_at.plus(NOTIFICATION_LIFETIME),
        display_ttl: None,
        visual: Some(VisualContent {
            title: "Your order shipped".to_owned(),
            body: Some("It arrives on Tuesday.".to_owned()),
        }),
        raw: None,
        targets: PlatformSet::ALL,
        fallback: None,
        state: NotificationState {
            read: ReadState::Unread,
            action: UserAction::None,
            status: Status::Active,
            changed_at: created_at,
        },
        sequence: 0,
    }
}

/// [`notification`] with raw content and an iOS raw-to-visual fallback after `delay`.
pub fn notification_with_fallback(
    app: &AppId,
    user: &UserId,
    created_at: tidings::Timestamp,
    delay: Duration,
) -> Notification {
    let mut n = notification(app, user, created_at);
    n.raw = Some(r#"{"order":"A-1042","status":"shipped"}"#.to_owned());
    n.fallback = Some(FallbackPolicy {
        delay,
        visual: VisualContent {
            title: "Your order shipped".to_owned(),
            body: None,
        },
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_addresses_pass_validation_and_differ() {
        for p in Platform::ALL {
            let a = address(p);
            let b = address(p);
            assert_eq!(a.platform(), p);
            assert_ne!(a.key(), b.key(), "two fixture addresses on {p} share a key");
            assert_eq!(a.clone().validate(&AddressPolicy::default()).ok(), Some(a));
        }
    }

    #[test]
    fn fixture_notification_is_alive_for_its_lifetime() {
        let n = notification(&app(), &user(), T0);
        assert!(!n.is_expired(at(3600)));
        assert!(n.is_expired(T0.plus(NOTIFICATION_LIFETIME)));
    }
}
