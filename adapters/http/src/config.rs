//! [`HttpConfig`]: how the client API behaves.

use std::time::Duration;

use serde::Deserialize;
use tidings::ValidationError;

/// Largest page the core answers.
const MAX_PAGE: usize = 500;

/// How the client API behaves. Build it with [`HttpConfig::builder`] or deserialize it from
/// `{"body_limit": 65536, "retry_after_secs": 5, "default_page_size": 50, "max_bulk_ids": 500,
/// "server_url": "/tidings"}` (every member optional, unknown ones refused); both validate.
/// [`HttpConfig::default`] is valid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "HttpConfigBuilder")]
pub struct HttpConfig {
    pub(crate) body_limit: usize,
    pub(crate) retry_after: Duration,
    pub(crate) default_page_size: usize,
    pub(crate) max_bulk_ids: usize,
    pub(crate) server_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 64 * 1024,
            retry_after: Duration::from_secs(5),
            default_page_size: 50,
            max_bulk_ids: MAX_PAGE,
            server_url: None,
        }
    }
}

impl HttpConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> HttpConfigBuilder {
        HttpConfigBuilder::default()
    }

    /// Largest request body accepted, in bytes; larger ones get 413 (default 64 KiB).
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// What a 503 tells clients to wait in `Retry-After` (default 5 s).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Page size of history and change-feed requests that name no `limit` (default 50).
    pub fn default_page_size(&self) -> usize {
        self.default_page_size
    }

    /// Most notification ids one bulk state update may name (default 500).
    pub fn max_bulk_ids(&self) -> usize {
        self.max_bulk_ids
    }

    /// The URL the router is mounted at, as the OpenAPI document's server (default none).
    pub fn server_url(&self) -> Option<&str> {
        self.server_url.as_deref()
    }
}

/// Builds an [`HttpConfig`]; every setting is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfigBuilder {
    #[serde(default)]
    body_limit: Option<usize>,
    #[serde(default)]
    retry_after_secs: Option<u64>,
    #[serde(default)]
    default_page_size: Option<usize>,
    #[serde(default)]
    max_bulk_ids: Option<usize>,
    #[serde(default)]
    server_url: Option<String>,
}

impl HttpConfigBuilder {
    /// Largest request body accepted, in bytes (1 KiB to 16 MiB).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// `Retry-After` of 503 answers (1 s to 1 h, whole seconds).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after_secs = Some(after.as_secs());
        self
    }

    /// Page size when a request names no `limit` (1 to 500).
    #[must_use]
    pub fn default_page_size(mut self, size: usize) -> Self {
        self.default_page_size = Some(size);
        self
    }

    /// Most ids in one bulk state update (1 to 500).
    #[must_use]
    pub fn max_bulk_ids(mut self, n: usize) -> Self {
        self.max_bulk_ids = Some(n);
        self
    }

    /// Where the host mounts the router (e.g. `/tidings` or `https://api.example.com/tidings`),
    /// announced in the OpenAPI document.
    #[must_use]
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server_url = Some(url.into());
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<HttpConfig, ValidationError> {
        let defaults = HttpConfig::default();
        let body_limit = self.body_limit.unwrap_or(defaults.body_limit);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
            return Err(ValidationError::new(
                "body_limit",
                "must be 1 KiB to 16 MiB",
            ));
        }
        let retry_after = self
            .retry_after_secs
            .map_or(defaults.retry_after, Duration::from_secs);
        if retry_after.is_zero() || retry_after > Duration::from_secs(3600) {
            return Err(ValidationError::new("retry_after", "must be 1 s to 1 h"));
        }
        let default_page_size = self.default_page_size.unwrap_or(defaults.default_page_size);
        if !(1..=MAX_PAGE).contains(&default_page_size) {
            return Err(ValidationError::new(
                "default_page_size",
                "must be 1 to 500",
            ));
        }
        let max_bulk_ids = self.max_bulk_ids.unwrap_or(defaults.max_bulk_ids);
        if !(1..=MAX_PAGE).contains(&max_bulk_ids) {
            return Err(ValidationError::new("max_bulk_ids", "must be 1 to 500"));
        }
        if let Some(url) = &self.server_url {
            if url.trim().is_empty() {
                return Err(ValidationError::new("server_url", "must not be empty"));
            }
        }
        Ok(HttpConfig {
            body_limit,
            retry_after,
            default_page_size,
            max_bulk_ids,
            server_url: self.server_url,
        })
    }
}

impl TryFrom<HttpConfigBuilder> for HttpConfig {
    type Error = ValidationError;

    fn try_from(builder: HttpConfigBuilder) -> Result<Self, Self::Error> {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialized_config_is_validated() {
        let ok: HttpConfig =
            serde_json::from_str(r#"{"body_limit": 4096, "retry_after_secs": 2}"#).unwrap();
        assert_eq!(ok.body_limit(), 4096);
        assert_eq!(ok.retry_after(), Duration::from_secs(2));
        let err = serde_json::from_str::<HttpConfig>(r#"{"default_page_size": 0}"#).unwrap_err();
        assert!(err.to_string().contains("default_page_size"), "{err}");
        let err = serde_json::from_str::<HttpConfig>(r#"{"body_limt": 4096}"#).unwrap_err();
        assert!(err.to_string().contains("body_limt"), "{err}");
    }

    #[test]
    fn builder_refuses_a_zero_retry_after() {
        let err = HttpConfig::builder()
            .retry_after(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "retry_after");
    }
}
