//! Configuration: credentials and topic per app, hosts, trust, timeouts, token lifetime.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tidings::{AppId, Clock, SystemClock, ValidationError};

use crate::client::ApnsChannel;
use crate::response::DEFAULT_SERVER_ERROR_FLOOR;

/// APNs' production base URL.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// APNs' development (sandbox) base URL.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default age at which a provider token is replaced: 50 minutes.
pub const DEFAULT_TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);
/// Shortest allowed token refresh: APNs refuses token changes more often than every 20 minutes.
pub const MIN_TOKEN_REFRESH: Duration = Duration::from_secs(20 * 60);
/// Longest allowed token refresh: APNs refuses tokens older than an hour.
pub const MAX_TOKEN_REFRESH: Duration = Duration::from_secs(60 * 60);

/// How an app authenticates to APNs. `Debug` never shows a private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApnsCredentials {
    /// Token-based: provider tokens (ES256 JWT) signed with a `.p8` key.
    Token {
        /// The 10-character team id (the token's `iss`).
        team_id: String,
        /// The 10-character key id (the token's `kid`).
        key_id: String,
        /// The `.p8` file's content: a PKCS#8 P-256 private key, PEM.
        private_key: String,
    },
    /// Certificate-based: a TLS client identity, the private key and certificate (chain) in
    /// one PEM document.
    Certificate {
        /// Private key and certificate, PEM.
        identity_pem: String,
    },
}

impl fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApnsCredentials::Token {
                team_id, key_id, ..
            } => f
                .debug_struct("Token")
                .field("team_id", team_id)
                .field("key_id", key_id)
                .field("private_key", &"<redacted>")
                .finish(),
            ApnsCredentials::Certificate { .. } => f
                .debug_struct("Certificate")
                .field("identity_pem", &"<redacted>")
                .finish(),
        }
    }
}

impl ApnsCredentials {
    /// Token auth with the `.p8` key read from `path`.
    pub fn token_from_file(
        team_id: impl Into<String>,
        key_id: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, ValidationError> {
        let path = path.as_ref();
        let private_key = std::fs::read_to_string(path).map_err(|e| {
            ValidationError::new(
                "credentials.private_key",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Ok(ApnsCredentials::Token {
            team_id: team_id.into(),
            key_id: key_id.into(),
            private_key,
        })
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            ApnsCredentials::Token {
                team_id,
                key_id,
                private_key,
            } => {
                for (field, v) in [("team_id", team_id), ("key_id", key_id)] {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(ValidationError::new(
                            field,
                            "must be letters and digits (10 characters from the developer account)",
                        ));
                    }
                }
                if jsonwebtoken::EncodingKey::from_ec_pem(private_key.as_bytes()).is_err() {
                    return Err(ValidationError::new(
                        "private_key",
                        "must be the .p8 key: a P-256 private key in PEM",
                    ));
                }
            }
            ApnsCredentials::Certificate { identity_pem } => {
                if crate::transport::parse_identity(identity_pem).is_none() {
                    return Err(ValidationError::new(
                        "identity_pem",
                        "must hold a private key and a certificate in PEM",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The APNs settings of one app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApnsAppConfig {
    /// The app (pushes pick their credentials by [`Push::app`](tidings::Push::app)).
    pub app: AppId,
    /// The bundle id (`apns-topic` before the push type's suffix).
    pub topic: String,
    /// How it authenticates.
    pub credentials: ApnsCredentials,
    /// `aps.sound` of visible alerts (default `"default"`); `None`: silent alerts.
    #[serde(default = "default_sound")]
    pub sound: Option<String>,
}

fn default_sound() -> Option<String> {
    Some("default".to_owned())
}

impl ApnsAppConfig {
    /// Settings for `app` with bundle id `topic` and `credentials`.
    pub fn new(
        app: impl Into<AppId>,
        topic: impl Into<String>,
        credentials: ApnsCredentials,
    ) -> Self {
        ApnsAppConfig {
            app: app.into(),
            topic: topic.into(),
            credentials,
            sound: default_sound(),
        }
    }

    /// Sets the alert sound (`None`: silent alerts).
    #[must_use]
    pub fn sound(mut self, sound: Option<String>) -> Self {
        self.sound = sound;
        self
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.app.as_str().trim().is_empty() {
            return Err(ValidationError::new("app", "must not be empty"));
        }
        if self.topic.is_empty()
            || !self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            return Err(ValidationError::new(
                "topic",
                "must be a bundle id (letters, digits, '.', '-', '_')",
            ));
        }
        self.credentials
            .validate()
            .map_err(|e| e.within("credentials"))
    }
}

/// The configuration of an [`ApnsChannel`]; deserializable (durations in seconds), or built with
/// [`ApnsChannel::builder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApnsConfig {
    /// One entry per app; each has its own credentials and topic.
    pub apps: Vec<ApnsAppConfig>,
    /// Base URL for production tokens (default `https://api.push.apple.com`).
    #[serde(default = "default_production")]
    pub production_url: String,
    /// Base URL for sandbox tokens (default `https://api.sandbox.push.apple.com`).
    #[serde(default = "default_sandbox")]
    pub sandbox_url: String,
    /// An extra CA certificate (PEM) to trust besides the system's (tests: the fake's CA).
    #[serde(default)]
    pub trusted_ca_pem: Option<String>,
    /// Per-request timeout, seconds (default 10).
    #[serde(default = "default_timeout", with = "secs")]
    pub request_timeout: Duration,
    /// Age at which a provider token is replaced, seconds (20 to 60 minutes; default 50).
    #[serde(default = "default_refresh", with = "secs")]
    pub token_refresh: Duration,
    /// Least wait before retrying after a 5xx, seconds (default 900; 0: the dispatcher's
    /// backoff).
    #[serde(default = "default_floor", with = "secs")]
    pub server_error_floor: Duration,
}

fn default_production() -> String {
    PRODUCTION_URL.to_owned()
}
fn default_sandbox() -> String {
    SANDBOX_URL.to_owned()
}
fn default_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_refresh() -> Duration {
    DEFAULT_TOKEN_REFRESH
}
fn default_floor() -> Duration {
    DEFAULT_SERVER_ERROR_FLOOR
}

mod secs {
    use super::*;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            apps: Vec::new(),
            production_url: default_production(),
            sandbox_url: default_sandbox(),
            trusted_ca_pem: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token_refresh: DEFAULT_TOKEN_REFRESH,
            server_error_floor: DEFAULT_SERVER_ERROR_FLOOR,
        }
    }
}

fn check_url(url: &str, field: &'static str) -> Result<(), ValidationError> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(()),
        Ok(_) => Err(ValidationError::new(
            field,
            "must be an https URL with a host (APNs is HTTP/2 over TLS)",
        )),
        Err(e) => Err(ValidationError::new(field, format!("is not a URL ({e})"))),
    }
}

impl ApnsConfig {
    /// Checks everything that can be checked without the network: at least one app, distinct
    /// app ids, bundle ids, keys and certificates that parse, URLs, the CA, limits. Errors name
    /// the field, e.g. `apps[1].credentials.private_key`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.apps.is_empty() {
            return Err(ValidationError::new("apps", "configure at least one app"));
        }
        check_url(&self.production_url, "production_url")?;
        check_url(&self.sandbox_url, "sandbox_url")?;
        if let Some(ca) = &self.trusted_ca_pem {
            if crate::transport::parse_certificates(ca).is_none() {
                return Err(ValidationError::new(
                    "trusted_ca_pem",
                    "must be a certificate in PEM",
                ));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(ValidationError::new("request_timeout", "must be positive"));
        }
        if !(MIN_TOKEN_REFRESH..=MAX_TOKEN_REFRESH).contains(&self.token_refresh) {
            return Err(ValidationError::new(
                "token_refresh",
                "must be between 20 and 60 minutes (1200 to 3600 seconds)",
            ));
        }
        let mut seen = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}]");
            app.validate().map_err(|e| e.within(&at))?;
            if !seen.insert(&app.app) {
                return Err(ValidationError::new(
                    format!("{at}.app"),
                    format!("app {} is configured twice", app.app),
                ));
            }
        }
        Ok(())
    }
}

/// Builds an [`ApnsChannel`].
#[derive(Debug)]
pub struct ApnsChannelBuilder {
    pub(crate) config: ApnsConfig,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for ApnsChannelBuilder {
    fn default() -> Self {
        ApnsChannelBuilder {
            config: ApnsConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl ApnsChannelBuilder {
    /// Starts from a deserialized configuration.
    pub fn from_config(config: ApnsConfig) -> Self {
        ApnsChannelBuilder {
            config,
            ..ApnsChannelBuilder::default()
        }
    }

    /// Adds an app.
    #[must_use]
    pub fn app(mut self, app: ApnsAppConfig) -> Self {
        self.config.apps.push(app);
        self
    }

    /// Adds an app with token auth (`.p8` key content) and default settings.
    #[must_use]
    pub fn token_auth(
        self,
        app: impl Into<AppId>,
        topic: impl Into<String>,
        team_id: impl Into<String>,
        key_id: impl Into<String>,
        p8_pem: impl Into<String>,
    ) -> Self {
        self.app(ApnsAppConfig::new(
            app,
            topic,
            ApnsCredentials::Token {
                team_id: team_id.into(),
                key_id: key_id.into(),
                private_key: p8_pem.into(),
            },
        ))
    }

    /// Adds an app with certificate auth (key and certificate PEM) and default settings.
    #[must_use]
    pub fn certificate_auth(
        self,
        app: impl Into<AppId>,
        topic: impl Into<String>,
        identity_pem: impl Into<String>,
    ) -> Self {
        self.app(ApnsAppConfig::new(
            app,
            topic,
            ApnsCredentials::Certificate {
                identity_pem: identity_pem.into(),
            },
        ))
    }

    /// Sends both environments to `url` (tests: the fake's base URL).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.config.production_url = url.clone();
        self.config.sandbox_url = url;
        self
    }

    /// The production base URL.
    #[must_use]
    pub fn production_url(mut self, url: impl Into<String>) -> Self {
        self.config.production_url = url.into();
        self
    }

    /// The sandbox base URL.
    #[must_use]
    pub fn sandbox_url(mut self, url: impl Into<String>) -> Self {
        self.config.sandbox_url = url.into();
        self
    }

    /// Trusts one more CA certificate (PEM), e.g. a loopback fake's.
    #[must_use]
    pub fn trusted_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.trusted_ca_pem = Some(pem.into());
        self
    }

    /// Per-request timeout.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Age at which provider tokens are replaced (20 to 60 minutes).
    #[must_use]
    pub fn token_refresh(mut self, age: Duration) -> Self {
        self.config.token_refresh = age;
        self
    }

    /// Least wait before retrying after a 5xx.
    #[must_use]
    pub fn server_error_floor(mut self, floor: Duration) -> Self {
        self.config.server_error_floor = floor;
        self
    }

    /// The clock provider tokens and `apns-expiration` are computed with (default the system
    /// clock; give it the same clock as `Tidings`).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the configuration ([`ApnsConfig::validate`]) and builds the channel. Needs no
    /// runtime and no network: connections open and tokens are signed on first use.
    pub fn build(self) -> Result<ApnsChannel, ValidationError> {
        self.config.validate()?;
        ApnsChannel::from_parts(self.config, self.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tidings_testkit::apns::ApnsSigningKey;

    fn token() -> (ApnsSigningKey, ApnsCredentials) {
        let key = ApnsSigningKey::generate("TEAM123456", "KEY1234567");
        let creds = ApnsCredentials::Token {
            team_id: key.team_id().into(),
            key_id: key.key_id().into(),
            private_key: key.p8_pem(),
        };
        (key, creds)
    }

    fn config() -> ApnsConfig {
        ApnsConfig {
            apps: vec![ApnsAppConfig::new("chat", "com.example.chat", token().1)],
            ..ApnsConfig::default()
        }
    }

    #[test]
    fn config_deserializes_with_defaults_and_seconds() {
        let (_, creds) = token();
        let json = serde_json::json!({
            "apps": [{"app": "chat", "topic": "com.example.chat", "credentials": creds}],
            "request_timeout": 2.5,
            "token_refresh": 1800,
        });
        let c: ApnsConfig = serde_json::from_value(json).unwrap();
        assert_eq!(c.production_url, PRODUCTION_URL);
        assert_eq!(c.sandbox_url, SANDBOX_URL);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert_eq!(c.token_refresh, Duration::from_secs(1800));
        assert_eq!(c.server_error_floor, DEFAULT_SERVER_ERROR_FLOOR);
        assert_eq!(c.apps[0].sound.as_deref(), Some("default"));
        c.validate().unwrap();
    }

    #[test]
    fn debug_hides_private_keys_and_identities() {
        let (key, creds) = token();
        let mut c = ApnsConfig {
            apps: vec![ApnsAppConfig::new("chat", "com.example.chat", creds)],
            ..ApnsConfig::default()
        };
        let identity = ApnsSigningKey::generate("TEAM123456", "KEY7654321").p8_pem();
        c.apps.push(ApnsAppConfig::new(
            "mail",
            "com.example.mail",
            ApnsCredentials::Certificate {
                identity_pem: identity.clone(),
            },
        ));
        let shown = format!("{c:?} {c:#?}");
        for pem in [key.p8_pem(), identity] {
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!shown.contains(line), "{shown}");
            }
        }
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("KEY1234567"), "key ids are not secret");
    }

    #[test]
    fn validation_names_the_faulty_field() {
        let cases: Vec<(&str, ApnsConfig)> = vec![
            ("apps", ApnsConfig::default()),
            (
                "production_url",
                ApnsConfig {
                    production_url: "http://api.push.apple.com".into(),
                    ..config()
                },
            ),
            (
                "sandbox_url",
                ApnsConfig {
                    sandbox_url: "not a url".into(),
                    ..config()
                },
            ),
            (
                "trusted_ca_pem",
                ApnsConfig {
                    trusted_ca_pem: Some("nope".into()),
                    ..config()
                },
            ),
            (
                "request_timeout",
                ApnsConfig {
                    request_timeout: Duration::ZERO,
                    ..config()
                },
            ),
            (
                "token_refresh",
                ApnsConfig {
                    token_refresh: Duration::from_secs(600),
                    ..config()
                },
            ),
            (
                "token_refresh",
                ApnsConfig {
                    token_refresh: Duration::from_secs(3601),
                    ..config()
                },
            ),
            ("apps[0].topic", {
                let mut c = config();
                c.apps[0].topic = "com example".into();
                c
            }),
            ("apps[0].credentials.private_key", {
                let mut c = config();
                c.apps[0].credentials = ApnsCredentials::Token {
                    team_id: "TEAM123456".into(),
                    key_id: "KEY1234567".into(),
                    private_key: "not a key".into(),
                };
                c
            }),
            ("apps[0].credentials.team_id", {
                let mut c = config();
                c.apps[0].credentials = ApnsCredentials::Token {
                    team_id: String::new(),
                    key_id: "KEY1234567".into(),
                    private_key: token().0.p8_pem(),
                };
                c
            }),
            ("apps[0].credentials.identity_pem", {
                let mut c = config();
                c.apps[0].credentials = ApnsCredentials::Certificate {
                    identity_pem: "no".into(),
                };
                c
            }),
            ("apps[1].app", {
                let mut c = config();
                c.apps
                    .push(ApnsAppConfig::new("chat", "com.example.other", token().1));
                c
            }),
        ];
        for (field, c) in cases {
            let e = c
                .validate()
                .err()
                .unwrap_or_else(|| panic!("{field} was accepted"));
            assert_eq!(e.field(), field, "{e}");
        }
    }
}
