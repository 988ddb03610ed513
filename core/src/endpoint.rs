//! Endpoints: one app instance on one device, and the push address that reaches it.
//!
//! Push addresses come from clients, so every one is validated before it is stored
//! ([`PushAddress::validate`]): an attacker must not be able to make the server send requests to
//! a host of their choosing (SSRF).

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::id::{AppId, EndpointId, UserId};
use crate::platform::Platform;
use crate::time::Timestamp;

/// Longest push address (token or URL) accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 2048;

/// APNs environment of a device token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApnsEnvironment {
    /// `api.push.apple.com`.
    Production,
    /// `api.sandbox.push.apple.com` (development builds).
    Sandbox,
}

impl ApnsEnvironment {
    /// `production` or `sandbox`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApnsEnvironment::Production => "production",
            ApnsEnvironment::Sandbox => "sandbox",
        }
    }
}

/// Where a push for one endpoint goes, per platform.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
pub enum PushAddress {
    /// An APNs device token (hex) and its environment.
    Apns {
        /// Hex device token, stored lowercase.
        token: String,
        /// Production or sandbox.
        environment: ApnsEnvironment,
    },
    /// An FCM registration token.
    Fcm {
        /// The registration token.
        token: String,
    },
    /// A WNS channel URI.
    Wns {
        /// `https://*.notify.windows.com/...`
        channel_uri: String,
    },
    /// A Web Push subscription.
    #[serde(rename = "webpush")]
    WebPush {
        /// The push service URL the browser gave.
        endpoint: String,
        /// The browser's P-256 public key, uncompressed (65 bytes), base64url without padding.
        p256dh: String,
        /// The 16-byte authentication secret, base64url without padding.
        auth: String,
    },
}

impl PushAddress {
    /// The platform this address belongs to.
    pub fn platform(&self) -> Platform {
        match self {
            PushAddress::Apns { .. } => Platform::Apns,
            PushAddress::Fcm { .. } => Platform::Fcm,
            PushAddress::Wns { .. } => Platform::Wns,
            PushAddress::WebPush { .. } => Platform::WebPush,
        }
    }

    /// The identity of the address within an app: two registrations with the same key are the
    /// same device, so the second one moves the endpoint (see [`Store::upsert_endpoint`]).
    ///
    /// [`Store::upsert_endpoint`]: crate::Store::upsert_endpoint
    pub fn key(&self) -> String {
        match self {
            PushAddress::Apns { token, environment } => {
                format!("apns:{}:{token}", environment.as_str())
            }
            PushAddress::Fcm { token } => format!("fcm:{token}"),
            PushAddress::Wns { channel_uri } => format!("wns:{channel_uri}"),
            PushAddress::WebPush { endpoint, .. } => format!("webpush:{endpoint}"),
        }
    }

    /// Checks the address against `policy` and returns it in normal form (APNs tokens in
    /// lowercase, Web Push keys in unpadded base64url). Errors name the field, e.g.
    /// `address.token` or `address.p256dh`.
    pub fn validate(self, policy: &AddressPolicy) -> Result<PushAddress, ValidationError> {
        self.validate_inner(policy).map_err(|e| e.within("address"))
    }

    fn validate_inner(self, policy: &AddressPolicy) -> Result<PushAddress, ValidationError> {
        match self {
            PushAddress::Apns { token, environment } => {
                let token = token.trim().to_ascii_lowercase();
                if token.is_empty() || token.len() > 512 {
                    return Err(ValidationError::new("token", "must be 1 to 512 hex digits"));
                }
                if !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ValidationError::new(
                        "token",
                        "an APNs device token is an even number of hex digits",
                    ));
                }
                Ok(PushAddress::Apns { token, environment })
            }
            PushAddress::Fcm { token } => {
                if token.is_empty() || token.len() > 4096 {
                    return Err(ValidationError::new(
                        "token",
                        "must be 1 to 4096 characters",
                    ));
                }
                if !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ValidationError::new(
                        "token",
                        "an FCM registration token has no spaces or control characters",
                    ));
                }
                Ok(PushAddress::Fcm { token })
            }
            PushAddress::Wns { channel_uri } => {
                check_push_url(&channel_uri, &policy.wns_hosts, policy.loopback_for_tests)
                    .map_err(|r| ValidationError::new("channel_uri", r))?;
                Ok(PushAddress::Wns { channel_uri })
            }
            PushAddress::WebPush {
                endpoint,
                p256dh,
                auth,
            } => {
                check_push_url(&endpoint, &policy.webpush_hosts, policy.loopback_for_tests)
                    .map_err(|r| ValidationError::new("endpoint", r))?;
                let key = decode_b64url(&p256dh)
                    .ok_or_else(|| ValidationError::new("p256dh", "must be base64url"))?;
                if key.len() != 65 || key[0] != 0x04 {
                    return Err(ValidationError::new(
                        "p256dh",
                        "must be an uncompressed P-256 point (65 bytes starting with 0x04)",
                    ));
                }
                if p256::PublicKey::from_sec1_bytes(&key).is_err() {
                    return Err(ValidationError::new("p256dh", "is not a point on P-256"));
                }
                let secret = decode_b64url(&auth)
                    .ok_or_else(|| ValidationError::new("auth", "must be base64url"))?;
                if secret.len() != 16 {
                    return Err(ValidationError::new("auth", "must be exactly 16 bytes"));
                }
                Ok(PushAddress::WebPush {
                    endpoint,
                    p256dh: URL_SAFE_NO_PAD.encode(&key),
                    auth: URL_SAFE_NO_PAD.encode(&secret),
                })
            }
        }
    }
}

fn decode_b64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

/// Checks a client-supplied push URL and returns it parsed: https, no user information, the
/// default port, a host name (not an IP literal, in any notation) on `allowed` (exact or
/// dot-anchored suffix, see [`host_allowed`]), at most [`MAX_ADDRESS_LEN`] bytes. With
/// `loopback_for_tests` (never in production), `http(s)` URLs on `127.0.0.1`, `[::1]` or
/// `localhost`, any port, pass too, so tests reach `tidings-testkit`'s loopback fakes.
///
/// Registration checks every address with it, and channels check again before each send. The
/// error is the reason, in words.
pub fn check_push_url(
    text: &str,
    allowed: &[String],
    loopback_for_tests: bool,
) -> Result<url::Url, String> {
    if text.len() > MAX_ADDRESS_LEN {
        return Err(format!("must be at most {MAX_ADDRESS_LEN} bytes"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user information".into());
    }
    let loopback = loopback_for_tests && matches!(url.scheme(), "http" | "https");
    let host = match url.host() {
        Some(url::Host::Domain(h)) => h.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) if loopback && ip.is_loopback() => return Ok(url),
        Some(url::Host::Ipv6(ip)) if loopback && ip.is_loopback() => return Ok(url),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => {
            return Err("must name a host, not an IP address".into())
        }
        None => return Err("must have a host".into()),
    };
    if loopback && host == "localhost" {
        return Ok(url);
    }
    // A domain that parses as an IP address in another notation (e.g. "0x7f.1") is refused too.
    if host.trim_end_matches('.').parse::<IpAddr>().is_ok() {
        return Err("must name a host, not an IP address".into());
    }
    if url.scheme() != "https" {
        return Err("must use https".into());
    }
    if url.port().is_some_and(|p| p != 443) {
        return Err("must use the default https port".into());
    }
    if !host_allowed(&host, allowed) {
        return Err(format!("host {host} is not an allowed push service"));
    }
    Ok(url)
}

/// Whether `host` equals an allowed host or is a subdomain of one (dot-anchored, so
/// `evilnotify.windows.com` does not match `notify.windows.com`).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.');
    allowed.iter().any(|a| {
        let a = a.trim_start_matches("*.").trim_end_matches('.');
        host.eq_ignore_ascii_case(a)
            || (host.len() > a.len()
                && host[host.len() - a.len()..].eq_ignore_ascii_case(a)
                && host.as_bytes()[host.len() - a.len() - 1] == b'.')
    })
}

/// Which hosts client-supplied push URLs may point at.
///
/// The defaults follow PROTOCOLS.md §4.6 (Web Push: FCM, Mozilla, Apple, Windows push services)
/// and §3 (WNS: `notify.windows.com` and its subdomains).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPolicy {
    /// Allowed Web Push service hosts (exact or parent domain).
    pub webpush_hosts: Vec<String>,
    /// Allowed WNS hosts (exact or parent domain).
    pub wns_hosts: Vec<String>,
    /// Accept `http(s)://127.0.0.1` and `localhost` URLs, so tests can reach the loopback mocks
    /// of `tidings-testkit`. Never set in production: it is set only by the host's code, never by
    /// anything a client sends.
    #[serde(default)]
    pub loopback_for_tests: bool,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy {
            webpush_hosts: vec![
                "fcm.googleapis.com".into(),
                "android.googleapis.com".into(),
                "push.services.mozilla.com".into(),
                "push.apple.com".into(),
                "notify.windows.com".into(),
            ],
            wns_hosts: vec!["notify.windows.com".into()],
            loopback_for_tests: false,
        }
    }
}

impl AddressPolicy {
    /// The default policy plus loopback URLs, for tests against `tidings-testkit`'s mocks.
    pub fn with_loopback_for_tests() -> Self {
        AddressPolicy {
            loopback_for_tests: true,
            ..AddressPolicy::default()
        }
    }
}

impl fmt::Debug for PushAddress {
    /// Tokens, URLs and keys are secrets that reach a device: `Debug` shows only the platform and
    /// a short prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn short(s: &str) -> String {
            let head: String = s.chars().take(6).collect();
            format!("{head}…({} bytes)", s.len())
        }
        match self {
            PushAddress::Apns { token, environment } => f
                .debug_struct("Apns")
                .field("token", &short(token))
                .field("environment", environment)
                .finish(),
            PushAddress::Fcm { token } => {
                f.debug_struct("Fcm").field("token", &short(token)).finish()
            }
            PushAddress::Wns { channel_uri } => {
                let host = url::Url::parse(channel_uri)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned));
                f.debug_struct("Wns").field("host", &host).finish()
            }
            PushAddress::WebPush { endpoint, .. } => {
                let host = url::Url::parse(endpoint)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned));
                f.debug_struct("WebPush")
                    .field("host", &host)
                    .field("keys", &"<redacted>")
                    .finish()
            }
        }
    }
}

/// What a device registers: its push address, for a user of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRegistration {
    /// The app.
    pub app: AppId,
    /// The user the device belongs to now.
    pub user: UserId,
    /// A client-chosen id for the app installation; re-registering with the same id and a new
    /// address replaces the old address instead of adding a second endpoint.
    #[serde(default)]
    pub installation_id: Option<String>,
    /// Where pushes go.
    pub address: PushAddress,
    /// When the push address itself expires (WNS channels last 30 days), if known.
    #[serde(default)]
    pub address_expires_at: Option<Timestamp>,
}

impl EndpointRegistration {
    /// A registration without installation id or address expiry.
    pub fn new(app: impl Into<AppId>, user: impl Into<UserId>, address: PushAddress) -> Self {
        EndpointRegistration {
            app: app.into(),
            user: user.into(),
            installation_id: None,
            address,
            address_expires_at: None,
        }
    }

    /// Sets the installation id.
    #[must_use]
    pub fn installation_id(mut self, id: impl Into<String>) -> Self {
        self.installation_id = Some(id.into());
        self
    }
}

/// A registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// The app.
    pub app: AppId,
    /// The user it belongs to.
    pub user: UserId,
    /// The client-chosen installation id, if any.
    pub installation_id: Option<String>,
    /// Where pushes go.
    pub address: PushAddress,
    /// Whether pushes are sent to it; `false` once the provider said it is gone.
    pub active: bool,
    /// When it was first registered.
    pub created_at: Timestamp,
    /// When it last registered or refreshed.
    pub last_seen_at: Timestamp,
    /// When the push address expires, if known.
    pub address_expires_at: Option<Timestamp>,
    /// Why it was deactivated (a provider reason such as `Unregistered`).
    pub deactivation_reason: Option<String>,
}

impl Endpoint {
    /// The endpoint's platform.
    pub fn platform(&self) -> Platform {
        self.address.platform()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webpush(endpoint: &str) -> PushAddress {
        // A valid point: the RFC 8291 Appendix A receiver key.
        PushAddress::WebPush {
            endpoint: endpoint.into(),
            p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
            auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
        }
    }

    #[test]
    fn allowlist_is_dot_anchored() {
        let allowed = vec!["notify.windows.com".to_string()];
        assert!(host_allowed("notify.windows.com", &allowed));
        assert!(host_allowed("db5.notify.windows.com", &allowed));
        assert!(!host_allowed("evilnotify.windows.com", &allowed));
        assert!(!host_allowed("notify.windows.com.evil.net", &allowed));
    }

    #[test]
    fn wns_uri_must_be_https_on_notify_windows_com() {
        let p = AddressPolicy::default();
        let ok = PushAddress::Wns {
            channel_uri: "https://db5p.notify.windows.com/?token=AwYAAAB".into(),
        };
        assert!(ok.validate(&p).is_ok());
        for bad in [
            "http://db5p.notify.windows.com/?token=x",
            "https://evil.example.com/?token=x",
            "https://user:pw@db5p.notify.windows.com/?token=x",
            "https://db5p.notify.windows.com:8443/?token=x",
            "https://127.0.0.1/?token=x",
        ] {
            let e = PushAddress::Wns {
                channel_uri: bad.into(),
            }
            .validate(&p)
            .unwrap_err();
            assert_eq!(e.field(), "address.channel_uri", "{bad}");
        }
    }

    #[test]
    fn webpush_refuses_ip_literals_and_unknown_hosts() {
        let p = AddressPolicy::default();
        assert!(webpush("https://fcm.googleapis.com/fcm/send/abc")
            .validate(&p)
            .is_ok());
        assert!(
            webpush("https://updates.push.services.mozilla.com/wpush/v2/x")
                .validate(&p)
                .is_ok()
        );
        for bad in [
            "https://10.0.0.1/push",
            "https://[::1]/push",
            "https://169.254.169.254/latest",
            "https://attacker.example/push",
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://localhost/push",
        ] {
            let e = webpush(bad).validate(&p).unwrap_err();
            assert_eq!(e.field(), "address.endpoint", "{bad}");
        }
    }

    #[test]
    fn webpush_keys_are_checked() {
        let p = AddressPolicy::default();
        let PushAddress::WebPush { endpoint, auth, .. } = webpush("https://fcm.googleapis.com/x")
        else {
            unreachable!()
        };
        let mut off_curve = vec![4u8; 65];
        off_curve[1] = 1;
        let e = PushAddress::WebPush {
            endpoint: endpoint.clone(),
            p256dh: URL_SAFE_NO_PAD.encode(&off_curve),
            auth: auth.clone(),
        }
        .validate(&p)
        .unwrap_err();
        assert_eq!(e.field(), "address.p256dh");
        let e = webpush("https://fcm.googleapis.com/x");
        let PushAddress::WebPush { p256dh, .. } = e else {
            unreachable!()
        };
        let e = PushAddress::WebPush {
            endpoint,
            p256dh,
            auth: URL_SAFE_NO_PAD.encode([1u8; 15]),
        }
        .validate(&p)
        .unwrap_err();
        assert_eq!(e.field(), "address.auth");
    }

    #[test]
    fn apns_token_must_be_hex_and_is_lowercased() {
        let p = AddressPolicy::default();
        let a = PushAddress::Apns {
            token: "ABCDEF01".into(),
            environment: ApnsEnvironment::Sandbox,
        }
        .validate(&p)
        .unwrap();
        assert_eq!(a.key(), "apns:sandbox:abcdef01");
        let e = PushAddress::Apns {
            token: "not-hex!".into(),
            environment: ApnsEnvironment::Production,
        }
        .validate(&p)
        .unwrap_err();
        assert_eq!(e.field(), "address.token");
    }

    #[test]
    fn debug_hides_tokens() {
        let a = PushAddress::Fcm {
            token: "secret-registration-token-value".into(),
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("registration-token-value"), "{shown}");
    }
}
