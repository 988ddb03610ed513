//! Configuration: service accounts per app, endpoints, timeouts, flow control.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tidings::{AppId, Clock, SystemClock, ValidationError};

use crate::client::FcmChannel;
use crate::request::{is_reserved_data_key, OWN_KEYS};

/// FCM's production base URL.
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// Google's OAuth 2 token endpoint.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit of requests in flight per Firebase project.
pub const DEFAULT_MAX_CONCURRENT_PER_PROJECT: usize = 256;

/// A Google service-account key, as the JSON key file Firebase hands out describes it
/// (`project_id`, `client_email`, `private_key`, `token_uri`, …; other fields are ignored).
///
/// `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    /// The Firebase (Google Cloud) project id.
    pub project_id: String,
    /// The service account's e-mail: the assertion's issuer.
    pub client_email: String,
    /// The id of the key, sent as the assertion's `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_id: Option<String>,
    /// The RSA private key, PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key: String,
    /// Where access tokens come from (default Google's token endpoint).
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URI.to_owned()
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a service-account JSON key.
    pub fn from_json(text: &str) -> Result<Self, ValidationError> {
        serde_json::from_str(text).map_err(|e| {
            // serde_json's message names the field and position, never the value.
            ValidationError::new(
                "service_account",
                format!("is not a service-account key: {e}"),
            )
        })
    }

    /// Reads and parses a service-account JSON key file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ValidationError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ValidationError::new(
                "service_account",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_json(&text)
    }
}

/// The FCM settings of one app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmAppConfig {
    /// The app (pushes pick their credentials by [`Push::app`](tidings::Push::app)).
    pub app: AppId,
    /// Its Firebase project's service account.
    pub service_account: ServiceAccountKey,
    /// The Android notification channel visible notifications are posted to (the app must
    /// create it); `None`: the app's default channel.
    #[serde(default)]
    pub android_channel_id: Option<String>,
    /// Extra `data` entries sent with every push of the app. Keys must not be reserved by FCM
    /// (`from`, `message_type`, `google.*`, `gcm.*`) nor be one of Tidings' own keys.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

impl FcmAppConfig {
    /// Settings for `app` with `service_account` and nothing else.
    pub fn new(app: impl Into<AppId>, service_account: ServiceAccountKey) -> Self {
        FcmAppConfig {
            app: app.into(),
            service_account,
            android_channel_id: None,
            data: BTreeMap::new(),
        }
    }

    /// Sets the Android notification channel.
    #[must_use]
    pub fn android_channel_id(mut self, id: impl Into<String>) -> Self {
        self.android_channel_id = Some(id.into());
        self
    }

    /// Adds an extra `data` entry.
    #[must_use]
    pub fn data(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

/// The configuration of an [`FcmChannel`]; deserializable (durations in seconds), or built with
/// [`FcmChannel::builder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmConfig {
    /// One entry per app; several apps may share a Firebase project.
    pub apps: Vec<FcmAppConfig>,
    /// FCM's base URL (default `https://fcm.googleapis.com`; tests point it at a mock).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Overrides every service account's `token_uri` (tests); `None`: use the key's.
    #[serde(default)]
    pub token_uri: Option<String>,
    /// Per-request timeout, seconds (default 10).
    #[serde(default = "default_timeout", with = "secs")]
    pub request_timeout: Duration,
    /// Requests in flight per Firebase project (default 256).
    #[serde(default = "default_concurrency")]
    pub max_concurrent_per_project: usize,
    /// Requests per minute per Firebase project; `None` (default): unlimited. FCM's default
    /// quota is 600,000 a minute.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u64>,
    /// Speak HTTP/2 without negotiation on `http://` base URLs (loopback mocks); over HTTPS,
    /// HTTP/2 is negotiated anyway.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

fn default_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENT_PER_PROJECT
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

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            apps: Vec::new(),
            base_url: default_base_url(),
            token_uri: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_concurrent_per_project: DEFAULT_MAX_CONCURRENT_PER_PROJECT,
            rate_limit_per_minute: None,
            http2_prior_knowledge: false,
        }
    }
}

fn check_http_url(url: &str, field: &str) -> Result<(), ValidationError> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        Ok(_) => Err(ValidationError::new(
            field.to_owned(),
            "must be an http(s) URL with a host",
        )),
        Err(e) => Err(ValidationError::new(
            field.to_owned(),
            format!("is not a URL ({e})"),
        )),
    }
}

impl FcmConfig {
    /// Checks everything that can be checked without the network: at least one app, distinct
    /// app ids, project ids, e-mails, RSA private keys that parse, URLs, positive limits, data
    /// keys. Errors name the field, e.g. `apps[1].service_account.private_key`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.apps.is_empty() {
            return Err(ValidationError::new("apps", "configure at least one app"));
        }
        check_http_url(&self.base_url, "base_url")?;
        if let Some(uri) = &self.token_uri {
            check_http_url(uri, "token_uri")?;
        }
        if self.request_timeout.is_zero() {
            return Err(ValidationError::new("request_timeout", "must be positive"));
        }
        if self.max_concurrent_per_project == 0 {
            return Err(ValidationError::new(
                "max_concurrent_per_project",
                "must be positive",
            ));
        }
        if self.rate_limit_per_minute == Some(0) {
            return Err(ValidationError::new(
                "rate_limit_per_minute",
                "must be positive (or absent for no limit)",
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

impl FcmAppConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.app.as_str().trim().is_empty() {
            return Err(ValidationError::new("app", "must not be empty"));
        }
        let key = &self.service_account;
        let project_ok = !key.project_id.is_empty()
            && key.project_id.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':'
            });
        if !project_ok {
            return Err(ValidationError::new(
                "service_account.project_id",
                "must be a Firebase project id (letters, digits, '-', '.', ':')",
            ));
        }
        if !key.client_email.contains('@') {
            return Err(ValidationError::new(
                "service_account.client_email",
                "must be the service account's e-mail",
            ));
        }
        if jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).is_err() {
            return Err(ValidationError::new(
                "service_account.private_key",
                "must be an RSA private key in PEM",
            ));
        }
        check_http_url(&key.token_uri, "service_account.token_uri")?;
        if self
            .android_channel_id
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(ValidationError::new(
                "android_channel_id",
                "must not be empty",
            ));
        }
        for k in self.data.keys() {
            if k.is_empty() || is_reserved_data_key(k) {
                return Err(ValidationError::new(
                    format!("data.{k}"),
                    "is empty or reserved by FCM (from, message_type, google.*, gcm.*)",
                ));
            }
            if OWN_KEYS.contains(&k.as_str()) {
                return Err(ValidationError::new(
                    format!("data.{k}"),
                    "is one of the keys Tidings writes itself",
                ));
            }
        }
        Ok(())
    }
}

/// Builds an [`FcmChannel`].
#[derive(Debug)]
pub struct FcmChannelBuilder {
    pub(crate) config: FcmConfig,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for FcmChannelBuilder {
    fn default() -> Self {
        FcmChannelBuilder {
            config: FcmConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl FcmChannelBuilder {
    /// Starts from a deserialized configuration.
    pub fn from_config(config: FcmConfig) -> Self {
        FcmChannelBuilder {
            config,
            ..FcmChannelBuilder::default()
        }
    }

    /// Adds an app.
    #[must_use]
    pub fn app(mut self, app: FcmAppConfig) -> Self {
        self.config.apps.push(app);
        self
    }

    /// Adds an app with its service account and default settings.
    #[must_use]
    pub fn service_account(self, app: impl Into<AppId>, key: ServiceAccountKey) -> Self {
        self.app(FcmAppConfig::new(app, key))
    }

    /// FCM's base URL (tests: the mock's).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Overrides every service account's token URI.
    #[must_use]
    pub fn token_uri(mut self, uri: impl Into<String>) -> Self {
        self.config.token_uri = Some(uri.into());
        self
    }

    /// Per-request timeout.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Requests in flight per Firebase project.
    #[must_use]
    pub fn max_concurrent_per_project(mut self, n: usize) -> Self {
        self.config.max_concurrent_per_project = n;
        self
    }

    /// Requests per minute per Firebase project.
    #[must_use]
    pub fn rate_limit_per_minute(mut self, n: u64) -> Self {
        self.config.rate_limit_per_minute = Some(n);
        self
    }

    /// HTTP/2 without negotiation on `http://` base URLs.
    #[must_use]
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.config.http2_prior_knowledge = on;
        self
    }

    /// The clock access-token lifetimes are measured with (default the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the configuration ([`FcmConfig::validate`]) and builds the channel. Needs no
    /// runtime and no network: access tokens are fetched on first use.
    pub fn build(self) -> Result<FcmChannel, ValidationError> {
        self.config.validate()?;
        FcmChannel::from_parts(self.config, self.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tidings_testkit::fcm::ServiceAccount;

    fn account() -> ServiceAccount {
        ServiceAccount::generate("demo-project", DEFAULT_TOKEN_URI)
    }

    fn key() -> ServiceAccountKey {
        ServiceAccountKey::from_json(&account().to_json()).unwrap()
    }

    fn config() -> FcmConfig {
        FcmConfig {
            apps: vec![FcmAppConfig::new("chat", key())],
            ..FcmConfig::default()
        }
    }

    #[test]
    fn a_google_key_file_deserializes_and_validates() {
        let account = account();
        let parsed = ServiceAccountKey::from_json(&account.to_json()).unwrap();
        assert_eq!(parsed.project_id, "demo-project");
        assert_eq!(parsed.client_email, account.client_email());
        assert_eq!(
            parsed.private_key_id.as_deref(),
            Some(account.private_key_id())
        );
        assert_eq!(parsed.private_key, account.private_key_pem());
        assert_eq!(parsed.token_uri, DEFAULT_TOKEN_URI);
        config().validate().unwrap();
    }

    #[test]
    fn a_key_file_without_a_private_key_is_refused() {
        let e =
            ServiceAccountKey::from_json(r#"{"project_id":"p","client_email":"a@b"}"#).unwrap_err();
        assert_eq!(e.field(), "service_account");
        assert!(e.reason().contains("private_key"), "{e}");
    }

    #[test]
    fn config_deserializes_with_defaults_and_seconds() {
        let json = serde_json::json!({
            "apps": [{"app": "chat", "service_account": key(), "android_channel_id": "msgs"}],
            "request_timeout": 2.5,
            "rate_limit_per_minute": 600000,
        });
        let c: FcmConfig = serde_json::from_value(json).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert_eq!(c.max_concurrent_per_project, 256);
        assert_eq!(c.rate_limit_per_minute, Some(600_000));
        assert_eq!(c.apps[0].android_channel_id.as_deref(), Some("msgs"));
        c.validate().unwrap();
    }

    #[test]
    fn debug_hides_the_private_key() {
        let key = key();
        let shown = format!("{:?} {:#?}", key, config());
        let body_line = key.private_key.lines().nth(1).unwrap();
        assert!(!shown.contains(body_line), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn validation_names_the_faulty_field() {
        let cases: Vec<(&str, FcmConfig)> = vec![
            ("apps", FcmConfig::default()),
            (
                "base_url",
                FcmConfig {
                    base_url: "ftp://x".into(),
                    ..config()
                },
            ),
            (
                "request_timeout",
                FcmConfig {
                    request_timeout: Duration::ZERO,
                    ..config()
                },
            ),
            (
                "max_concurrent_per_project",
                FcmConfig {
                    max_concurrent_per_project: 0,
                    ..config()
                },
            ),
            (
                "rate_limit_per_minute",
                FcmConfig {
                    rate_limit_per_minute: Some(0),
                    ..config()
                },
            ),
            ("apps[0].service_account.private_key", {
                let mut c = config();
                c.apps[0].service_account.private_key = "not a key".into();
                c
            }),
            ("apps[0].service_account.project_id", {
                let mut c = config();
                c.apps[0].service_account.project_id = "a/b".into();
                c
            }),
            ("apps[0].service_account.client_email", {
                let mut c = config();
                c.apps[0].service_account.client_email = "nobody".into();
                c
            }),
            ("apps[0].data.from", {
                let mut c = config();
                c.apps[0].data.insert("from".into(), "x".into());
                c
            }),
            ("apps[0].data.google.x", {
                let mut c = config();
                c.apps[0].data.insert("google.x".into(), "x".into());
                c
            }),
            ("apps[0].data.sequence", {
                let mut c = config();
                c.apps[0].data.insert("sequence".into(), "x".into());
                c
            }),
            ("apps[1].app", {
                let mut c = config();
                c.apps.push(FcmAppConfig::new("chat", key()));
                c
            }),
        ];
        for (field, c) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
    }
}
