//! A cache for access tokens that channels fetch from an OAuth endpoint (FCM, WNS): one fetch at
//! a time, reused until shortly before it expires, replaced once when the provider refuses it.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{PushError, Retry};
use crate::time::{Clock, Timestamp};

/// Tokens are replaced this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// When a token that lives `expires_in` from `now` should be replaced: [`REFRESH_MARGIN`] before
/// it expires, or halfway through a lifetime shorter than twice the margin.
pub fn refresh_at(now: Timestamp, expires_in: Duration) -> Timestamp {
    if expires_in > REFRESH_MARGIN * 2 {
        now.plus(expires_in - REFRESH_MARGIN)
    } else {
        now.plus(expires_in / 2)
    }
}

struct Cached<T> {
    token: Arc<T>,
    refresh_at: Timestamp,
}

/// The current token of one credential, fetched by a single caller at a time.
///
/// `T` is whatever the channel sends (typically a ready `Authorization` header value); its
/// `Debug` should redact it. The cache's own `Debug` shows only when the token is replaced.
pub struct TokenCache<T> {
    clock: Arc<dyn Clock>,
    current: RwLock<Option<Cached<T>>>,
    refresh: tokio::sync::Mutex<()>,
}

impl<T> fmt::Debug for TokenCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("refresh_at", &self.refresh_at())
            .finish_non_exhaustive()
    }
}

impl<T> TokenCache<T> {
    /// An empty cache reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        TokenCache {
            clock,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// When the cached token will be replaced, if there is one.
    pub fn refresh_at(&self) -> Option<Timestamp> {
        self.read(|c| c.refresh_at)
    }

    fn read<R>(&self, f: impl FnOnce(&Cached<T>) -> R) -> Option<R> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    fn fresh(&self) -> Option<Arc<T>> {
        let now = self.clock.now();
        self.read(|c| (now < c.refresh_at).then(|| Arc::clone(&c.token)))
            .flatten()
    }

    /// A valid token: the cached one, or one from `fetch` (which yields the token and its
    /// lifetime). Concurrent callers wait for one fetch and share its result.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), E>>,
    {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _guard = self.refresh.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        self.store(fetch().await?)
    }

    /// A token other than `rejected`, which the provider refused: if another caller already
    /// replaced it, that replacement; otherwise one from `fetch`.
    pub async fn replace<F, Fut, E>(&self, rejected: &Arc<T>, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), E>>,
    {
        let _guard = self.refresh.lock().await;
        if let Some(token) = self.fresh().filter(|t| !Arc::ptr_eq(t, rejected)) {
            return Ok(token);
        }
        self.store(fetch().await?)
    }

    fn store<E>(&self, (token, expires_in): (T, Duration)) -> Result<Arc<T>, E> {
        let token = Arc::new(token);
        let cached = Cached {
            token: Arc::clone(&token),
            refresh_at: refresh_at(self.clock.now(), expires_in),
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(cached);
        Ok(token)
    }
}

/// An access token granted by an OAuth 2 token endpoint (RFC 6749 §5.1). Its `Debug` redacts
/// the token.
pub struct Grant {
    /// The access token (a secret: it goes only into an `Authorization` header).
    pub access_token: String,
    /// Its lifetime (`expires_in`; one hour when the endpoint leaves it out).
    pub expires_in: Duration,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Deserialize)]
struct GrantBody {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct GrantError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Reads a token endpoint's answer, sans IO: `status`, the delay its retry header asked for,
/// and the body. `endpoint` names it in error messages ("the FCM token endpoint").
///
/// 200 with an `access_token` is a [`Grant`]. A refused grant (400, 401: `invalid_grant`,
/// `invalid_client`, …) is a configuration fault, [`PushErrorKind::Misconfigured`] with the
/// OAuth `error` code as its reason; 429 is throttling and 5xx unavailability, both retried
/// (after `retry_after` when given); a 200 without a token is unavailability too.
///
/// [`PushErrorKind::Misconfigured`]: crate::PushErrorKind::Misconfigured
pub fn read_grant(
    endpoint: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Grant, PushError> {
    if status == 200 {
        let parsed: GrantBody = serde_json::from_slice(body).map_err(|e| {
            PushError::unavailable(format!("{endpoint} answered 200 without an access token"))
                .with_source(e)
        })?;
        return Ok(Grant {
            access_token: parsed.access_token,
            expires_in: Duration::from_secs(parsed.expires_in.unwrap_or(3600)),
        });
    }
    let e: GrantError = serde_json::from_slice(body).unwrap_or_default();
    let text = format!(
        "{endpoint} answered {status} {}: {}",
        e.error, e.error_description
    );
    let error = match status {
        429 => PushError::throttled(text, retry_after),
        500..=599 => {
            let e = PushError::unavailable(text);
            match retry_after {
                Some(d) => e.with_retry(Retry::After(d)),
                None => e,
            }
        }
        _ => PushError::misconfigured(text),
    };
    if e.error.is_empty() {
        Err(error)
    } else {
        Err(error.with_reason(e.error))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::time::ManualClock;

    #[test]
    fn token_answers_grant_or_say_whose_fault_the_refusal_is() {
        use crate::error::PushErrorKind;
        let read = |status, after: Option<u64>, body: &[u8]| {
            read_grant(
                "the token endpoint",
                status,
                after.map(Duration::from_secs),
                body,
            )
        };
        let grant = read(
            200,
            None,
            br#"{"access_token":"ya29.secret","expires_in":3599}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(grant.access_token, "ya29.secret");
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        assert!(
            !format!("{grant:?}").contains("ya29"),
            "Debug shows the token"
        );
        let default = read(200, None, br#"{"access_token":"t"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default.expires_in, Duration::from_secs(3600));
        let Err(empty) = read(200, None, b"{}") else {
            panic!("a 200 without a token was taken");
        };
        assert_eq!(empty.kind(), PushErrorKind::Unavailable);

        for (status, body, reason) in [
            (
                400,
                &br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#[..],
                "invalid_grant",
            ),
            (401, &br#"{"error":"invalid_client"}"#[..], "invalid_client"),
        ] {
            let Err(e) = read(status, None, body) else {
                panic!("a refusal was taken");
            };
            assert_eq!(e.kind(), PushErrorKind::Misconfigured, "{status}");
            assert_eq!(e.reason(), Some(reason));
            assert!(e.to_string().contains(&status.to_string()), "{e}");
        }
        let Err(busy) = read(503, Some(7), b"") else {
            panic!("a 503 was taken");
        };
        assert_eq!(busy.kind(), PushErrorKind::Unavailable);
        assert_eq!(busy.retry(), Retry::After(Duration::from_secs(7)));
        let Err(throttled) = read(429, None, b"not json") else {
            panic!("a 429 was taken");
        };
        assert_eq!(throttled.kind(), PushErrorKind::Throttled);
        assert_eq!(throttled.reason(), None);
    }

    #[test]
    fn tokens_are_replaced_five_minutes_before_expiry_or_halfway_when_short() {
        let t0 = Timestamp::from_secs(1_000);
        assert_eq!(
            refresh_at(t0, Duration::from_secs(3600)),
            Timestamp::from_secs(4_300)
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(300)),
            Timestamp::from_secs(1_150)
        );
    }

    #[tokio::test]
    async fn one_fetch_serves_concurrent_callers_until_refresh_time() {
        let clock = ManualClock::starting_2026();
        let cache = Arc::new(TokenCache::new(Arc::new(clock.clone())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let fetch = |n: Arc<AtomicUsize>| async move {
            let k = n.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>((format!("token-{k}"), Duration::from_secs(3600)))
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches) = (Arc::clone(&cache), Arc::clone(&fetches));
            tasks.push(tokio::spawn(async move {
                cache.get(|| fetch(fetches)).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), "token-0");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        clock.advance(Duration::from_secs(3300));
        assert_eq!(
            *cache.get(|| fetch(Arc::clone(&fetches))).await.unwrap(),
            "token-1"
        );
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_once() {
        let cache = TokenCache::new(Arc::new(ManualClock::starting_2026()));
        let first = cache
            .get(|| async { Ok::<_, ()>(("a".to_owned(), Duration::from_secs(3600))) })
            .await
            .unwrap();
        let second = cache
            .replace(&first, || async {
                Ok::<_, ()>(("b".to_owned(), Duration::from_secs(3600)))
            })
            .await
            .unwrap();
        assert_eq!(*second, "b");
        // A caller still holding the refused token gets the replacement, not a third fetch.
        let third = cache
            .replace(&first, || async {
                Ok::<_, ()>(("c".to_owned(), Duration::from_secs(3600)))
            })
            .await
            .unwrap();
        assert_eq!(*third, "b");
    }
}
