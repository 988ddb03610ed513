//! Pure classification of a push service's answer (PROTOCOLS.md §4.1).
//!
//! | status | result |
//! |---|---|
//! | 2xx (201 Created, 202 Accepted with receipts) | accepted; `Location` is the provider message id |
//! | 404, 410 | endpoint gone: deactivate it |
//! | 413 | rejected (the message is too large for this service) |
//! | 429 | throttled, retry after `Retry-After` (seconds or HTTP date) or with backoff |
//! | 5xx | unavailable, retry after `Retry-After` or with backoff |
//! | 400, 401, 403 | misconfigured (VAPID or headers): retried with backoff, endpoint untouched |
//! | anything else (3xx: redirects are not followed, other 4xx) | rejected |

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tidings::{Accepted, PushError, Retry};

/// Longest `Retry-After` honoured; longer values are clamped (the dispatcher also stops at the
/// notification's expiry).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Classifies an answer. `body` is the (capped) response body, used only for the reason text;
/// `now` is the wall-clock time an HTTP-date `Retry-After` is measured from.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Accepted, PushError> {
    if status.is_success() {
        let location = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        return Ok(Accepted {
            provider_message_id: location,
        });
    }
    let reason = reason(status, body);
    let message = format!("push service answered {status}");
    let retry_after = retry_after(headers, now);
    let err = match status.as_u16() {
        404 | 410 => PushError::gone(message),
        413 => PushError::rejected(format!("{message}: the message is too large")),
        429 => PushError::throttled(message, retry_after),
        400 | 401 | 403 => PushError::misconfigured(format!(
            "{message}: check the VAPID key, subject and request headers"
        )),
        500..=599 => {
            let e = PushError::unavailable(message);
            match retry_after {
                Some(d) => e.with_retry(Retry::After(d)),
                None => e,
            }
        }
        300..=399 => PushError::rejected(format!("{message}: redirects are not followed")),
        _ => PushError::rejected(message),
    };
    Err(err.with_reason(reason))
}

/// The service's reason: JSON `reason` (Apple), `error`/`errno` (Mozilla autopush), otherwise
/// the status's canonical text.
fn reason(status: StatusCode, body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["reason", "error"].iter().find_map(|k| {
                v.get(k)
                    .and_then(|r| r.as_str())
                    .map(|s| s.chars().take(200).collect::<String>())
            })
        });
    from_json.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("unknown status")
            .to_owned()
    })
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), clamped to
/// [`MAX_RETRY_AFTER`]; a date in the past means "now" (zero).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::PushErrorKind;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().unwrap());
        }
        h
    }

    fn run(status: u16, pairs: &[(&'static str, &str)], body: &str) -> Result<Accepted, PushError> {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            body.as_bytes(),
            now(),
        )
    }

    #[test]
    fn accepted_answers_record_the_location_as_provider_id() {
        for status in [201, 202] {
            let a = run(status, &[("location", "https://push.example/m/1")], "").unwrap();
            assert_eq!(
                a.provider_message_id.as_deref(),
                Some("https://push.example/m/1")
            );
        }
        assert_eq!(run(201, &[], "").unwrap().provider_message_id, None);
    }

    #[test]
    fn every_status_maps_to_what_the_dispatcher_must_do() {
        use PushErrorKind::*;
        // (status, kind, retry, endpoint gone)
        let table: &[(u16, PushErrorKind, Retry, bool)] = &[
            (404, EndpointGone, Retry::Never, true),
            (410, EndpointGone, Retry::Never, true),
            (413, Rejected, Retry::Never, false),
            (429, Throttled, Retry::Backoff, false),
            (500, Unavailable, Retry::Backoff, false),
            (502, Unavailable, Retry::Backoff, false),
            (503, Unavailable, Retry::Backoff, false),
            (400, Misconfigured, Retry::Backoff, false),
            (401, Misconfigured, Retry::Backoff, false),
            (403, Misconfigured, Retry::Backoff, false),
            (405, Rejected, Retry::Never, false),
            (301, Rejected, Retry::Never, false),
            (307, Rejected, Retry::Never, false),
        ];
        for &(status, kind, retry, gone) in table {
            let e = run(status, &[], "").unwrap_err();
            assert_eq!(e.kind(), kind, "{status}");
            assert_eq!(e.retry(), retry, "{status}");
            assert_eq!(e.endpoint_gone(), gone, "{status}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_http_date_is_honoured() {
        let e = run(429, &[("retry-after", "120")], "").unwrap_err();
        assert_eq!(e.retry(), Retry::After(Duration::from_secs(120)));
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(90));
        let e = run(503, &[("retry-after", &date)], "").unwrap_err();
        assert_eq!(e.kind(), PushErrorKind::Unavailable);
        assert_eq!(e.retry(), Retry::After(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(90));
        let e = run(429, &[("retry-after", &past)], "").unwrap_err();
        assert_eq!(e.retry(), Retry::After(Duration::ZERO));
        let e = run(429, &[("retry-after", "soon")], "").unwrap_err();
        assert_eq!(e.retry(), Retry::Backoff, "unparseable: backoff");
        let e = run(429, &[("retry-after", "99999999")], "").unwrap_err();
        assert_eq!(e.retry(), Retry::After(MAX_RETRY_AFTER));
    }

    #[test]
    fn the_services_reason_is_kept() {
        let e = run(410, &[], r#"{"reason":"Unregistered"}"#).unwrap_err();
        assert_eq!(e.reason(), Some("Unregistered"));
        let e = run(
            404,
            &[],
            r#"{"code":404,"errno":102,"error":"Not Found","message":"x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason(), Some("Not Found"));
        let e = run(403, &[], "<html>nope</html>").unwrap_err();
        assert_eq!(e.reason(), Some("Forbidden"));
    }
}
