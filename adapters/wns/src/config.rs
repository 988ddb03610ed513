//! Configuration: credentials per app, allowed hosts, timeouts.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tidings::{AddressPolicy, AppId, Clock, SystemClock, ValidationError};

use crate::auth::LEGACY_TOKEN_URL;
use crate::client::WnsChannel;

/// The host WNS channel URIs live under (and its subdomains).
pub const DEFAULT_WNS_HOST: &str = "notify.windows.com";
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An app's WNS client credentials, for one of the two OAuth client-credentials flows
/// (PROTOCOLS.md §3.1). Serialized with a `flow` tag: `{"flow": "entra", "tenant": …}`.
///
/// `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "lowercase")]
pub enum WnsCredentials {
    /// Windows App SDK apps: an Entra ID (Azure AD) app registration; tokens from
    /// `login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, scope
    /// `https://wns.windows.com/.default`.
    Entra {
        /// The directory (tenant) id.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: String,
    },
    /// UWP / Store apps: the Package SID and secret from Partner Center; tokens from
    /// `login.live.com/accesstoken.srf`, scope `notify.windows.com`.
    Legacy {
        /// `ms-app://S-1-15-2-…`.
        package_sid: String,
        /// The client secret.
        client_secret: String,
    },
}

impl fmt::Debug for WnsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WnsCredentials::Entra {
                tenant, client_id, ..
            } => f
                .debug_struct("Entra")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            WnsCredentials::Legacy { package_sid, .. } => f
                .debug_struct("Legacy")
                .field("package_sid", package_sid)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

impl WnsCredentials {
    /// Entra ID credentials.
    pub fn entra(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        WnsCredentials::Entra {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// Legacy Package SID credentials.
    pub fn legacy(package_sid: impl Into<String>, client_secret: impl Into<String>) -> Self {
        WnsCredentials::Legacy {
            package_sid: package_sid.into(),
            client_secret: client_secret.into(),
        }
    }

    /// The token endpoint of the flow: `login.live.com` or the tenant's Entra endpoint.
    pub fn default_token_url(&self) -> String {
        match self {
            WnsCredentials::Entra { tenant, .. } => {
                format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
            }
            WnsCredentials::Legacy { .. } => LEGACY_TOKEN_URL.to_owned(),
        }
    }

    fn client_id(&self) -> &str {
        match self {
            WnsCredentials::Entra { client_id, .. } => client_id,
            WnsCredentials::Legacy { package_sid, .. } => package_sid,
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            WnsCredentials::Entra {
                tenant,
                client_id,
                client_secret,
            } => {
                let tenant_ok = !tenant.is_empty()
                    && tenant
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !tenant_ok {
                    return Err(ValidationError::new(
                        "tenant",
                        "must be a tenant id or domain (letters, digits, '-', '.')",
                    ));
                }
                if client_id.trim().is_empty() {
                    return Err(ValidationError::new("client_id", "must not be empty"));
                }
                if client_secret.is_empty() {
                    return Err(ValidationError::new("client_secret", "must not be empty"));
                }
            }
            WnsCredentials::Legacy {
                package_sid,
                client_secret,
            } => {
                if !package_sid.starts_with("ms-app://") {
                    return Err(ValidationError::new(
                        "package_sid",
                        "must be a Package SID (ms-app://S-1-15-2-…)",
                    ));
                }
                if client_secret.is_empty() {
                    return Err(ValidationError::new("client_secret", "must not be empty"));
                }
            }
        }
        Ok(())
    }
}

/// The WNS settings of one app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WnsAppConfig {
    /// The app (pushes pick their credentials by [`Push::app`](tidings::Push::app)).
    pub app: AppId,
    /// Its credentials.
    pub credentials: WnsCredentials,
    /// Overrides the flow's token endpoint (tests: the mock's); `None`: Microsoft's.
    #[serde(default)]
    pub token_url: Option<String>,
}

impl WnsAppConfig {
    /// Settings for `app` with `credentials`.
    pub fn new(app: impl Into<AppId>, credentials: WnsCredentials) -> Self {
        WnsAppConfig {
            app: app.into(),
            credentials,
            token_url: None,
        }
    }

    /// Sets the token endpoint.
    #[must_use]
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The token endpoint in use.
    pub fn effective_token_url(&self) -> String {
        self.token_url
            .clone()
            .unwrap_or_else(|| self.credentials.default_token_url())
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.app.as_str().trim().is_empty() {
            return Err(ValidationError::new("app", "must not be empty"));
        }
        self.credentials
            .validate()
            .map_err(|e| e.within("credentials"))?;
        if let Some(url) = &self.token_url {
            check_http_url(url, "token_url")?;
        }
        Ok(())
    }
}

/// The configuration of a [`WnsChannel`]; deserializable (durations in seconds), or built with
/// [`WnsChannel::builder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WnsConfig {
    /// One entry per app.
    pub apps: Vec<WnsAppConfig>,
    /// Hosts channel URIs may point at (exact or parent domain; default `notify.windows.com`).
    #[serde(default = "default_hosts")]
    pub wns_hosts: Vec<String>,
    /// Per-request timeout, seconds (default 10).
    #[serde(default = "default_timeout", with = "secs")]
    pub request_timeout: Duration,
    /// Speak HTTP/2 without negotiation (loopback mocks only: over HTTPS it is negotiated).
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// TEST ONLY: also accept `http(s)` channel URIs on `127.0.0.1`/`localhost`, so tests reach
    /// the loopback mock of `tidings-testkit`. Never set in production; it comes from the host's
    /// code or configuration, never from a channel URI.
    #[serde(default)]
    pub loopback_for_tests: bool,
}

fn default_hosts() -> Vec<String> {
    vec![DEFAULT_WNS_HOST.to_owned()]
}

fn default_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
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

impl Default for WnsConfig {
    fn default() -> Self {
        WnsConfig {
            apps: Vec::new(),
            wns_hosts: default_hosts(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            http2_prior_knowledge: false,
            loopback_for_tests: false,
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

impl WnsConfig {
    /// Checks everything that can be checked offline: at least one app, distinct app ids,
    /// credentials of the right shape, URLs, hosts, a positive timeout. Errors name the field,
    /// e.g. `apps[1].credentials.package_sid`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.apps.is_empty() {
            return Err(ValidationError::new("apps", "configure at least one app"));
        }
        if self.wns_hosts.is_empty() || self.wns_hosts.iter().any(|h| h.trim().is_empty()) {
            return Err(ValidationError::new(
                "wns_hosts",
                "must list at least one non-empty host",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ValidationError::new("request_timeout", "must be positive"));
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

    /// The client id (Package SID or Entra app id) of each app, for logs.
    pub(crate) fn client_id_of(app: &WnsAppConfig) -> &str {
        app.credentials.client_id()
    }
}

/// Builds a [`WnsChannel`].
#[derive(Debug)]
pub struct WnsChannelBuilder {
    pub(crate) config: WnsConfig,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for WnsChannelBuilder {
    fn default() -> Self {
        WnsChannelBuilder {
            config: WnsConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl WnsChannelBuilder {
    /// Starts from a deserialized configuration.
    pub fn from_config(config: WnsConfig) -> Self {
        WnsChannelBuilder {
            config,
            ..WnsChannelBuilder::default()
        }
    }

    /// Adds an app.
    #[must_use]
    pub fn app(mut self, app: WnsAppConfig) -> Self {
        self.config.apps.push(app);
        self
    }

    /// Adds an app with its credentials and Microsoft's token endpoint.
    #[must_use]
    pub fn credentials(self, app: impl Into<AppId>, credentials: WnsCredentials) -> Self {
        self.app(WnsAppConfig::new(app, credentials))
    }

    /// Per-request timeout (token requests included).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Takes the WNS hosts and the loopback test switch from the policy endpoints are
    /// registered with, so registration and send time check the same thing.
    #[must_use]
    pub fn address_policy(mut self, policy: &AddressPolicy) -> Self {
        self.config.wns_hosts = policy.wns_hosts.clone();
        self.config.loopback_for_tests = policy.loopback_for_tests;
        self
    }

    /// TEST ONLY: lets the channel reach loopback channel URIs (the `tidings-testkit` mock).
    #[must_use]
    pub fn allow_loopback_for_tests(mut self) -> Self {
        self.config.loopback_for_tests = true;
        self
    }

    /// HTTP/2 without negotiation on `http://` URIs (loopback mocks).
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

    /// Validates the configuration ([`WnsConfig::validate`]) and builds the channel. Needs no
    /// runtime and no network: access tokens are fetched on first use.
    pub fn build(self) -> Result<WnsChannel, ValidationError> {
        self.config.validate()?;
        WnsChannel::from_parts(self.config, self.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy() -> WnsCredentials {
        WnsCredentials::legacy("ms-app://S-1-15-2-1-2-3-4-5-6-7", "legacy-secret-value")
    }

    fn entra() -> WnsCredentials {
        WnsCredentials::entra("contoso.onmicrosoft.com", "app-id-1", "entra-secret-value")
    }

    fn config() -> WnsConfig {
        WnsConfig {
            apps: vec![
                WnsAppConfig::new("chat", legacy()),
                WnsAppConfig::new("shop", entra()),
            ],
            ..WnsConfig::default()
        }
    }

    #[test]
    fn config_deserializes_both_flows_with_defaults() {
        let json = serde_json::json!({
            "apps": [
                {"app": "chat", "credentials": {"flow": "legacy",
                  "package_sid": "ms-app://S-1-15-2-1", "client_secret": "s"}},
                {"app": "shop", "credentials": {"flow": "entra", "tenant": "t-1",
                  "client_id": "c", "client_secret": "s"}, "token_url": "http://127.0.0.1:9/t"},
            ],
            "request_timeout": 2.5,
        });
        let c: WnsConfig = serde_json::from_value(json).unwrap();
        c.validate().unwrap();
        assert_eq!(c.wns_hosts, vec!["notify.windows.com"]);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert!(!c.loopback_for_tests);
        assert_eq!(
            c.apps[0].effective_token_url(),
            "https://login.live.com/accesstoken.srf"
        );
        assert_eq!(c.apps[1].effective_token_url(), "http://127.0.0.1:9/t");
        assert_eq!(
            entra().default_token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn debug_hides_the_secrets() {
        let shown = format!("{:?} {:#?}", config(), legacy());
        assert!(!shown.contains("legacy-secret-value"), "{shown}");
        assert!(!shown.contains("entra-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn validation_names_the_faulty_field() {
        let cases: Vec<(&str, WnsConfig)> = vec![
            ("apps", WnsConfig::default()),
            (
                "request_timeout",
                WnsConfig {
                    request_timeout: Duration::ZERO,
                    ..config()
                },
            ),
            (
                "wns_hosts",
                WnsConfig {
                    wns_hosts: vec![],
                    ..config()
                },
            ),
            ("apps[0].credentials.package_sid", {
                let mut c = config();
                c.apps[0].credentials = WnsCredentials::legacy("S-1-15", "s");
                c
            }),
            ("apps[0].credentials.client_secret", {
                let mut c = config();
                c.apps[0].credentials = WnsCredentials::legacy("ms-app://S-1", "");
                c
            }),
            ("apps[1].credentials.tenant", {
                let mut c = config();
                c.apps[1].credentials = WnsCredentials::entra("a/b", "c", "s");
                c
            }),
            ("apps[1].token_url", {
                let mut c = config();
                c.apps[1].token_url = Some("ftp://x".into());
                c
            }),
            ("apps[2].app", {
                let mut c = config();
                c.apps.push(WnsAppConfig::new("chat", entra()));
                c
            }),
        ];
        for (field, c) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
    }

    #[test]
    fn the_address_policy_sets_hosts_and_the_test_switch() {
        let b = WnsChannelBuilder::default().address_policy(&AddressPolicy::default());
        assert!(!b.config.loopback_for_tests);
        let b = b.address_policy(&AddressPolicy::with_loopback_for_tests());
        assert!(b.config.loopback_for_tests);
        assert_eq!(b.config.wns_hosts, vec!["notify.windows.com"]);
    }
}
