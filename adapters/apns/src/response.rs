//! Classification, pure: one APNs answer (status, `apns-id`, `retry-after`, body) becomes an
//! [`Accepted`] or a [`PushError`] whose kind tells the dispatcher what to do
//! (PROTOCOLS.md §1.6, §7 items 1–2).

use std::time::Duration;

use serde::Deserialize;
use tidings::{Accepted, PushError, PushErrorKind, Retry};

/// What to do with one answer.
#[derive(Debug)]
pub enum Verdict {
    /// APNs accepted the push (accepted is not delivered).
    Accepted(Accepted),
    /// 403 `ExpiredProviderToken`: sign a new provider token and resend once.
    RefreshToken,
    /// The push failed; the error's kind and retry say what happens next.
    Failed(PushError),
}

/// The answer of one request, as the classifier needs it.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// HTTP status.
    pub status: u16,
    /// The `apns-id` response header (echo of ours, or APNs' own).
    pub apns_id: Option<&'a str>,
    /// The `retry-after` header, if any (APNs does not document one; honoured when present).
    pub retry_after: Option<&'a str>,
    /// Response body (`{"reason": …, "timestamp": …}` on errors).
    pub body: &'a [u8],
}

/// Classification settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// The least time to wait before retrying after a 5xx (Apple: "after 15 minutes"); zero
    /// lets the dispatcher's backoff decide.
    pub server_error_floor: Duration,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            server_error_floor: DEFAULT_SERVER_ERROR_FLOOR,
        }
    }
}

/// Default floor of the retry delay after a 5xx: 15 minutes (PROTOCOLS.md §7 item 3).
pub const DEFAULT_SERVER_ERROR_FLOOR: Duration = Duration::from_secs(15 * 60);

/// An APNs error body.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// The reason string (`Unregistered`, `BadDeviceToken`, …); empty when absent.
    #[serde(default)]
    pub reason: String,
    /// With 410: when APNs learnt the token stopped being valid, ms since the UNIX epoch.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

impl ErrorBody {
    /// Decodes an error body; an unreadable body gives an empty one.
    pub fn parse(body: &[u8]) -> ErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// Parses `retry-after` as whole seconds; other forms count as absent.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Classifies one answer.
///
/// | Answer | Verdict |
/// |---|---|
/// | 200 | accepted, `apns-id` as provider message id |
/// | 410 `Unregistered`, `ExpiredToken` | endpoint gone (the 410 `timestamp` goes in the message) |
/// | 400 `BadDeviceToken`, `DeviceTokenNotForTopic` | endpoint gone (for this environment/topic) |
/// | 400 `BadCollapseId`, `BadExpirationDate`, `BadMessageId`, `BadPriority`, `DuplicateHeaders`, `InvalidPushType`, `MissingDeviceToken`, `PayloadEmpty`, 403 `Forbidden`, 405, other 4xx | rejected |
/// | 400 `BadTopic`, `MissingTopic`, `TopicDisallowed`, 404 `BadPath`, 403 `BadCertificate`, `BadCertificateEnvironment`, `InvalidProviderToken`, `MissingProviderToken`, `BadEnvironmentKeyIdInToken` | misconfigured |
/// | 403 `ExpiredProviderToken` | re-sign the provider token, resend once |
/// | 403 `UnrelatedKeyIdInToken`, 400 `IdleTimeout` | unavailable, backoff (new connection) |
/// | 413 `PayloadTooLarge` | payload too large |
/// | 429 `TooManyRequests` | throttled, after `retry-after` when given, else backoff |
/// | 429 `TooManyProviderTokenUpdates` | throttled, backoff (and an error log: a token-cache bug) |
/// | 500, 503 `ServiceUnavailable`/`Shutdown`, other 5xx | unavailable, after max(`retry-after`, floor) |
pub fn classify(answer: Answer<'_>, options: ClassifyOptions) -> Verdict {
    if answer.status == 200 {
        return Verdict::Accepted(Accepted {
            provider_message_id: answer.apns_id.map(str::to_owned),
        });
    }
    let body = ErrorBody::parse(answer.body);
    let after = parse_retry_after(answer.retry_after);
    let status = answer.status;
    let text = if body.reason.is_empty() {
        format!("APNs answered {status}")
    } else {
        format!("APNs answered {status} {}", body.reason)
    };
    let e = match (status, body.reason.as_str()) {
        (410, _) => {
            let text = match body.timestamp {
                Some(ms) => format!("{text}; the token is invalid since {ms} ms after the epoch"),
                None => text,
            };
            PushError::gone(text)
        }
        (400, "BadDeviceToken") => PushError::gone(format!(
            "{text} (malformed, or a token of the other environment)"
        )),
        (400, "DeviceTokenNotForTopic") => {
            PushError::gone(format!("{text} (the token belongs to another topic)"))
        }
        (400, "BadTopic" | "MissingTopic" | "TopicDisallowed") => {
            PushError::misconfigured(format!("{text}: check the app's topic (bundle id)"))
        }
        (400, "IdleTimeout") => PushError::unavailable(text),
        (403, "ExpiredProviderToken") => return Verdict::RefreshToken,
        (403, "UnrelatedKeyIdInToken") => PushError::unavailable(text),
        (403, "Forbidden") => PushError::rejected(text),
        (403, _) => PushError::misconfigured(text),
        (404, _) => PushError::misconfigured(format!("{text}: check the APNs base URL")),
        (413, _) => PushError::new(PushErrorKind::PayloadTooLarge, text),
        (429, "TooManyProviderTokenUpdates") => {
            tracing::error!("APNs refused a provider token update: tokens change too often");
            PushError::throttled(text, None)
        }
        (429, _) => PushError::throttled(text, after),
        (500..=599, _) => {
            let wait = after
                .unwrap_or(Duration::ZERO)
                .max(options.server_error_floor);
            let e = PushError::unavailable(text);
            if wait.is_zero() {
                e
            } else {
                e.with_retry(Retry::After(wait))
            }
        }
        _ => PushError::rejected(text),
    };
    Verdict::Failed(if body.reason.is_empty() {
        e
    } else {
        e.with_reason(body.reason)
    })
}

#[cfg(test)]
mod tests {
    use tidings::PushErrorKind::*;

    use super::*;

    fn body(reason: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "reason": reason })).unwrap()
    }

    fn verdict(status: u16, retry_after: Option<&str>, body: &[u8], floor: Duration) -> String {
        let answer = Answer {
            status,
            apns_id: Some("6a1c3c5e-0000-4000-8000-000000000001"),
            retry_after,
            body,
        };
        match classify(
            answer,
            ClassifyOptions {
                server_error_floor: floor,
            },
        ) {
            Verdict::Accepted(a) => format!("accepted {:?}", a.provider_message_id),
            Verdict::RefreshToken => "refresh".to_owned(),
            Verdict::Failed(e) => format!("{:?} {:?} {:?}", e.kind(), e.retry(), e.reason()),
        }
    }

    fn failed(kind: PushErrorKind, retry: Retry, reason: &str) -> String {
        format!("{kind:?} {retry:?} {:?}", Some(reason))
    }

    /// PROTOCOLS.md §1.6, row by row.
    #[test]
    fn every_documented_status_and_reason_is_classified() {
        let floor = DEFAULT_SERVER_ERROR_FLOOR;
        let never = Retry::Never;
        let backoff = Retry::Backoff;
        let table: Vec<(u16, &str, String)> = vec![
            (
                400,
                "BadCollapseId",
                failed(Rejected, never, "BadCollapseId"),
            ),
            (
                400,
                "BadDeviceToken",
                failed(EndpointGone, never, "BadDeviceToken"),
            ),
            (
                400,
                "BadExpirationDate",
                failed(Rejected, never, "BadExpirationDate"),
            ),
            (400, "BadMessageId", failed(Rejected, never, "BadMessageId")),
            (400, "BadPriority", failed(Rejected, never, "BadPriority")),
            (400, "BadTopic", failed(Misconfigured, backoff, "BadTopic")),
            (
                400,
                "DeviceTokenNotForTopic",
                failed(EndpointGone, never, "DeviceTokenNotForTopic"),
            ),
            (
                400,
                "DuplicateHeaders",
                failed(Rejected, never, "DuplicateHeaders"),
            ),
            (
                400,
                "IdleTimeout",
                failed(Unavailable, backoff, "IdleTimeout"),
            ),
            (
                400,
                "InvalidPushType",
                failed(Rejected, never, "InvalidPushType"),
            ),
            (
                400,
                "MissingDeviceToken",
                failed(Rejected, never, "MissingDeviceToken"),
            ),
            (
                400,
                "MissingTopic",
                failed(Misconfigured, backoff, "MissingTopic"),
            ),
            (400, "PayloadEmpty", failed(Rejected, never, "PayloadEmpty")),
            (
                400,
                "TopicDisallowed",
                failed(Misconfigured, backoff, "TopicDisallowed"),
            ),
            (
                403,
                "BadCertificate",
                failed(Misconfigured, backoff, "BadCertificate"),
            ),
            (
                403,
                "BadCertificateEnvironment",
                failed(Misconfigured, backoff, "BadCertificateEnvironment"),
            ),
            (403, "ExpiredProviderToken", "refresh".to_owned()),
            (
                403,
                "InvalidProviderToken",
                failed(Misconfigured, backoff, "InvalidProviderToken"),
            ),
            (
                403,
                "MissingProviderToken",
                failed(Misconfigured, backoff, "MissingProviderToken"),
            ),
            (
                403,
                "UnrelatedKeyIdInToken",
                failed(Unavailable, backoff, "UnrelatedKeyIdInToken"),
            ),
            (
                403,
                "BadEnvironmentKeyIdInToken",
                failed(Misconfigured, backoff, "BadEnvironmentKeyIdInToken"),
            ),
            (403, "Forbidden", failed(Rejected, never, "Forbidden")),
            (404, "BadPath", failed(Misconfigured, backoff, "BadPath")),
            (
                405,
                "MethodNotAllowed",
                failed(Rejected, never, "MethodNotAllowed"),
            ),
            (
                410,
                "Unregistered",
                failed(EndpointGone, never, "Unregistered"),
            ),
            (
                410,
                "ExpiredToken",
                failed(EndpointGone, never, "ExpiredToken"),
            ),
            (
                413,
                "PayloadTooLarge",
                failed(PayloadTooLarge, never, "PayloadTooLarge"),
            ),
            (
                429,
                "TooManyProviderTokenUpdates",
                failed(Throttled, backoff, "TooManyProviderTokenUpdates"),
            ),
            (
                429,
                "TooManyRequests",
                failed(Throttled, backoff, "TooManyRequests"),
            ),
            (
                500,
                "InternalServerError",
                failed(Unavailable, Retry::After(floor), "InternalServerError"),
            ),
            (
                503,
                "ServiceUnavailable",
                failed(Unavailable, Retry::After(floor), "ServiceUnavailable"),
            ),
            (
                503,
                "Shutdown",
                failed(Unavailable, Retry::After(floor), "Shutdown"),
            ),
        ];
        for (status, reason, want) in table {
            assert_eq!(
                verdict(status, None, &body(reason), floor),
                want,
                "{status} {reason}"
            );
        }
    }

    #[test]
    fn accepted_push_returns_the_apns_id() {
        assert_eq!(
            verdict(200, None, b"", Duration::ZERO),
            "accepted Some(\"6a1c3c5e-0000-4000-8000-000000000001\")"
        );
    }

    #[test]
    fn too_many_requests_honours_retry_after() {
        assert_eq!(
            verdict(429, Some("137"), &body("TooManyRequests"), Duration::ZERO),
            failed(
                Throttled,
                Retry::After(Duration::from_secs(137)),
                "TooManyRequests"
            )
        );
    }

    #[test]
    fn server_errors_wait_at_least_the_floor_and_longer_when_told() {
        let floor = Duration::from_secs(60);
        assert_eq!(
            verdict(503, Some("10"), &body("ServiceUnavailable"), floor),
            failed(Unavailable, Retry::After(floor), "ServiceUnavailable")
        );
        assert_eq!(
            verdict(503, Some("600"), &body("ServiceUnavailable"), floor),
            failed(
                Unavailable,
                Retry::After(Duration::from_secs(600)),
                "ServiceUnavailable"
            )
        );
        assert_eq!(
            verdict(502, None, b"<html>Bad Gateway</html>", Duration::ZERO),
            "Unavailable Backoff None",
            "without a floor a proxy's 5xx is left to the dispatcher's backoff"
        );
    }

    #[test]
    fn unregistered_keeps_the_apple_timestamp_in_the_message() {
        let answer = Answer {
            status: 410,
            apns_id: None,
            retry_after: None,
            body: br#"{"reason":"Unregistered","timestamp":1767225600000}"#,
        };
        let Verdict::Failed(e) = classify(answer, ClassifyOptions::default()) else {
            panic!("410 must fail");
        };
        assert!(e.endpoint_gone() && !e.is_retryable());
        assert!(e.message().contains("1767225600000"), "{e}");
    }

    #[test]
    fn misconfiguration_never_deactivates_and_unknown_4xx_is_rejected() {
        for reason in ["InvalidProviderToken", "BadCertificate"] {
            let Verdict::Failed(e) = classify(
                Answer {
                    status: 403,
                    apns_id: None,
                    retry_after: None,
                    body: &body(reason),
                },
                ClassifyOptions::default(),
            ) else {
                panic!("{reason} must fail");
            };
            assert!(e.is_misconfigured() && !e.endpoint_gone(), "{reason}");
        }
        assert_eq!(
            verdict(418, None, b"", Duration::ZERO),
            "Rejected Never None"
        );
    }
}
