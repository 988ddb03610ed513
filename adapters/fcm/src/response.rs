//! Response classification, pure: status, `Retry-After` and body → what the dispatcher should
//! do (PROTOCOLS.md §2.5).

use std::time::Duration;

use serde::Deserialize;
use tidings::{Accepted, PushError, Retry};

/// The least a `QUOTA_EXCEEDED` answer waits before a retry (PROTOCOLS.md §2.5: "minimum
/// initial delay 1 minute").
pub const MIN_QUOTA_DELAY: Duration = Duration::from_secs(60);

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

/// What an answer to `messages:send` means.
#[derive(Debug)]
pub enum Verdict {
    /// 200: accepted, with the message `name` as provider id.
    Accepted(Accepted),
    /// 401 `UNAUTHENTICATED` without an FCM error code: the access token was refused (expired
    /// or revoked); refresh it once and resend.
    RefreshToken,
    /// Any other failure, classified.
    Failed(PushError),
}

#[derive(Deserialize)]
struct SendSuccess {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ApiError,
}

#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
}

/// A decoded Google API error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FcmError {
    /// The canonical status (`NOT_FOUND`, `INVALID_ARGUMENT`, `UNAUTHENTICATED`, …).
    pub status: String,
    /// The `errorCode` of the `FcmError` detail (`UNREGISTERED`, …), if there is one.
    pub error_code: Option<String>,
    /// The human-readable message.
    pub message: String,
}

impl FcmError {
    /// Decodes an error body; an unreadable body gives an empty error.
    pub fn parse(body: &[u8]) -> FcmError {
        let body: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let error_code = body
            .error
            .details
            .iter()
            .find(|d| d.kind == FCM_ERROR_TYPE)
            .and_then(|d| d.error_code.clone());
        FcmError {
            status: body.error.status,
            error_code,
            message: body.error.message,
        }
    }

    /// The most specific reason: the FCM code, else the canonical status.
    fn reason(&self) -> Option<&str> {
        self.error_code
            .as_deref()
            .or((!self.status.is_empty()).then_some(self.status.as_str()))
    }

    /// Whether this is the "not a valid FCM registration token" case of `INVALID_ARGUMENT`
    /// (the only `INVALID_ARGUMENT` that condemns the token rather than the message).
    fn is_invalid_token(&self) -> bool {
        if self.error_code.as_deref() != Some("INVALID_ARGUMENT") {
            return false;
        }
        let message = self.message.to_ascii_lowercase();
        message.contains("registration token")
            && (message.contains("not a valid") || message.contains("invalid"))
    }
}

/// Parses `Retry-After` as whole seconds (what FCM sends); other forms count as absent.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Classifies one answer to `messages:send`.
///
/// | Answer | Verdict |
/// |---|---|
/// | 200 | accepted, `name` as provider message id |
/// | `UNREGISTERED` (404) | endpoint gone |
/// | `INVALID_ARGUMENT` (400) "not a valid FCM registration token" | endpoint gone |
/// | other `INVALID_ARGUMENT` / 400 (bad field, too big, reserved key, bad TTL) | rejected |
/// | `SENDER_ID_MISMATCH` (403), `THIRD_PARTY_AUTH_ERROR` (401), `PERMISSION_DENIED` (403), 404 without an FCM code (wrong project or URL) | misconfigured |
/// | 401 `UNAUTHENTICATED` without an FCM code | refresh the access token, resend once |
/// | `QUOTA_EXCEEDED` / 429 | throttled, after `max(Retry-After, 60 s)` |
/// | `UNAVAILABLE` (503), `INTERNAL` (500), other 5xx | unavailable, after `Retry-After` when given, else backoff |
/// | `UNSPECIFIED_ERROR` | rejected (FCM: not retryable) |
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> Verdict {
    if status == 200 {
        let name = serde_json::from_slice::<SendSuccess>(body)
            .ok()
            .and_then(|s| s.name);
        return Verdict::Accepted(Accepted {
            provider_message_id: name,
        });
    }
    let error = FcmError::parse(body);
    let after = parse_retry_after(retry_after);
    let text = if error.message.is_empty() {
        format!("FCM answered {status}")
    } else {
        format!("FCM answered {status}: {}", error.message)
    };
    let failed = |e: PushError| {
        Verdict::Failed(match error.reason() {
            Some(reason) => e.with_reason(reason),
            None => e,
        })
    };
    match error.error_code.as_deref() {
        Some("UNREGISTERED") => return failed(PushError::gone(text)),
        Some("INVALID_ARGUMENT") if error.is_invalid_token() => {
            return failed(PushError::gone(text))
        }
        Some("SENDER_ID_MISMATCH") | Some("THIRD_PARTY_AUTH_ERROR") | Some("APNS_AUTH_ERROR") => {
            return failed(PushError::misconfigured(text))
        }
        Some("QUOTA_EXCEEDED") => return failed(quota(text, after)),
        Some("UNAVAILABLE") | Some("INTERNAL") => return failed(unavailable(text, after)),
        Some("UNSPECIFIED_ERROR") => return failed(PushError::rejected(text)),
        _ => {}
    }
    let e = match status {
        401 if error.error_code.is_none() => return Verdict::RefreshToken,
        401 | 403 => PushError::misconfigured(text),
        404 => PushError::misconfigured(format!(
            "{text} (no such project or URL; check the project id and base URL)"
        )),
        429 => quota(text, after),
        408 => PushError::timeout(text),
        500..=599 => unavailable(text, after),
        _ => PushError::rejected(text),
    };
    failed(e)
}

fn quota(text: String, after: Option<Duration>) -> PushError {
    let delay = after.unwrap_or(MIN_QUOTA_DELAY).max(MIN_QUOTA_DELAY);
    PushError::throttled(text, Some(delay))
}

fn unavailable(text: String, after: Option<Duration>) -> PushError {
    let e = PushError::unavailable(text);
    match after {
        Some(d) => e.with_retry(Retry::After(d)),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tidings::PushErrorKind;

    use super::*;

    fn fcm_body(status: u16, canonical: &str, code: Option<&str>, message: &str) -> Vec<u8> {
        let details = match code {
            Some(c) => json!([{"@type": FCM_ERROR_TYPE, "errorCode": c}]),
            None => json!([]),
        };
        serde_json::to_vec(&json!({"error": {
            "code": status, "message": message, "status": canonical, "details": details,
        }}))
        .unwrap()
    }

    #[derive(Debug)]
    enum Want {
        Accepted(Option<&'static str>),
        Refresh,
        Failed(PushErrorKind, Retry, Option<&'static str>),
    }

    impl Want {
        fn describe(&self) -> String {
            match self {
                Want::Accepted(id) => format!("accepted {id:?}"),
                Want::Refresh => "refresh".to_owned(),
                Want::Failed(kind, retry, reason) => format!("{kind:?} {retry:?} {reason:?}"),
            }
        }
    }

    fn verdict(status: u16, retry_after: Option<&str>, body: &[u8]) -> String {
        match classify(status, retry_after, body) {
            Verdict::Accepted(a) => format!("accepted {:?}", a.provider_message_id),
            Verdict::RefreshToken => "refresh".to_owned(),
            Verdict::Failed(e) => format!("{:?} {:?} {:?}", e.kind(), e.retry(), e.reason()),
        }
    }

    /// PROTOCOLS.md §2.5, row by row.
    #[test]
    fn every_documented_answer_is_classified() {
        use PushErrorKind::*;
        let secs = Duration::from_secs;
        let bad_request = serde_json::to_vec(&json!({"error": {
            "code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid value at 'message.android.ttl'",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                         "fieldViolations": [{"field": "message.android.ttl"}]}],
        }}))
        .unwrap();
        // (case, status, Retry-After, body, expected)
        type Row = (&'static str, u16, Option<&'static str>, Vec<u8>, Want);
        let table: Vec<Row> = vec![
            (
                "200 accepted",
                200,
                None,
                br#"{"name":"projects/p/messages/0:1"}"#.to_vec(),
                Want::Accepted(Some("projects/p/messages/0:1")),
            ),
            (
                "UNREGISTERED",
                404,
                None,
                fcm_body(
                    404,
                    "NOT_FOUND",
                    Some("UNREGISTERED"),
                    "Requested entity was not found.",
                ),
                Want::Failed(EndpointGone, Retry::Never, Some("UNREGISTERED")),
            ),
            (
                "INVALID_ARGUMENT, invalid token",
                400,
                None,
                fcm_body(
                    400,
                    "INVALID_ARGUMENT",
                    Some("INVALID_ARGUMENT"),
                    "The registration token is not a valid FCM registration token",
                ),
                Want::Failed(EndpointGone, Retry::Never, Some("INVALID_ARGUMENT")),
            ),
            (
                "INVALID_ARGUMENT, reserved key",
                400,
                None,
                fcm_body(
                    400,
                    "INVALID_ARGUMENT",
                    Some("INVALID_ARGUMENT"),
                    "Invalid data payload key: from",
                ),
                Want::Failed(Rejected, Retry::Never, Some("INVALID_ARGUMENT")),
            ),
            (
                "INVALID_ARGUMENT, too big",
                400,
                None,
                fcm_body(
                    400,
                    "INVALID_ARGUMENT",
                    Some("INVALID_ARGUMENT"),
                    "Message is too big",
                ),
                Want::Failed(Rejected, Retry::Never, Some("INVALID_ARGUMENT")),
            ),
            (
                "400 BadRequest field violation",
                400,
                None,
                bad_request,
                Want::Failed(Rejected, Retry::Never, Some("INVALID_ARGUMENT")),
            ),
            (
                "SENDER_ID_MISMATCH",
                403,
                None,
                fcm_body(
                    403,
                    "PERMISSION_DENIED",
                    Some("SENDER_ID_MISMATCH"),
                    "SenderId mismatch",
                ),
                Want::Failed(Misconfigured, Retry::Backoff, Some("SENDER_ID_MISMATCH")),
            ),
            (
                "THIRD_PARTY_AUTH_ERROR",
                401,
                None,
                fcm_body(
                    401,
                    "UNAUTHENTICATED",
                    Some("THIRD_PARTY_AUTH_ERROR"),
                    "Auth error",
                ),
                Want::Failed(
                    Misconfigured,
                    Retry::Backoff,
                    Some("THIRD_PARTY_AUTH_ERROR"),
                ),
            ),
            (
                "PERMISSION_DENIED",
                403,
                None,
                fcm_body(403, "PERMISSION_DENIED", None, "Permission denied"),
                Want::Failed(Misconfigured, Retry::Backoff, Some("PERMISSION_DENIED")),
            ),
            (
                "UNAUTHENTICATED (expired access token)",
                401,
                None,
                fcm_body(
                    401,
                    "UNAUTHENTICATED",
                    None,
                    "Request had invalid authentication credentials.",
                ),
                Want::Refresh,
            ),
            (
                "QUOTA_EXCEEDED with Retry-After below a minute",
                429,
                Some("10"),
                fcm_body(
                    429,
                    "RESOURCE_EXHAUSTED",
                    Some("QUOTA_EXCEEDED"),
                    "Quota exceeded",
                ),
                Want::Failed(Throttled, Retry::After(secs(60)), Some("QUOTA_EXCEEDED")),
            ),
            (
                "QUOTA_EXCEEDED with Retry-After above a minute",
                429,
                Some("137"),
                fcm_body(
                    429,
                    "RESOURCE_EXHAUSTED",
                    Some("QUOTA_EXCEEDED"),
                    "Quota exceeded",
                ),
                Want::Failed(Throttled, Retry::After(secs(137)), Some("QUOTA_EXCEEDED")),
            ),
            (
                "QUOTA_EXCEEDED without Retry-After",
                429,
                None,
                fcm_body(
                    429,
                    "RESOURCE_EXHAUSTED",
                    Some("QUOTA_EXCEEDED"),
                    "Quota exceeded",
                ),
                Want::Failed(Throttled, Retry::After(secs(60)), Some("QUOTA_EXCEEDED")),
            ),
            (
                "UNAVAILABLE with Retry-After",
                503,
                Some("30"),
                fcm_body(503, "UNAVAILABLE", Some("UNAVAILABLE"), "Overloaded"),
                Want::Failed(Unavailable, Retry::After(secs(30)), Some("UNAVAILABLE")),
            ),
            (
                "UNAVAILABLE without Retry-After",
                503,
                None,
                fcm_body(503, "UNAVAILABLE", Some("UNAVAILABLE"), "Overloaded"),
                Want::Failed(Unavailable, Retry::Backoff, Some("UNAVAILABLE")),
            ),
            (
                "INTERNAL",
                500,
                None,
                fcm_body(500, "INTERNAL", Some("INTERNAL"), "Internal error"),
                Want::Failed(Unavailable, Retry::Backoff, Some("INTERNAL")),
            ),
            (
                "UNSPECIFIED_ERROR",
                500,
                None,
                fcm_body(500, "UNKNOWN", Some("UNSPECIFIED_ERROR"), "Unknown error."),
                Want::Failed(Rejected, Retry::Never, Some("UNSPECIFIED_ERROR")),
            ),
            (
                "404 without FCM code (wrong project)",
                404,
                None,
                fcm_body(404, "NOT_FOUND", None, "The requested URL was not found."),
                Want::Failed(Misconfigured, Retry::Backoff, Some("NOT_FOUND")),
            ),
            (
                "502 from a proxy, no JSON",
                502,
                None,
                b"<html>Bad Gateway</html>".to_vec(),
                Want::Failed(Unavailable, Retry::Backoff, None),
            ),
        ];
        for (name, status, retry_after, body, want) in table {
            assert_eq!(
                verdict(status, retry_after, &body),
                want.describe(),
                "{name}"
            );
        }
    }

    #[test]
    fn gone_is_never_retried_and_misconfigured_never_deactivates() {
        let Verdict::Failed(gone) = classify(
            404,
            None,
            &fcm_body(404, "NOT_FOUND", Some("UNREGISTERED"), "x"),
        ) else {
            panic!("UNREGISTERED must fail");
        };
        assert!(gone.endpoint_gone() && !gone.is_retryable());
        let Verdict::Failed(mismatch) = classify(
            403,
            None,
            &fcm_body(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), "x"),
        ) else {
            panic!("SENDER_ID_MISMATCH must fail");
        };
        assert!(mismatch.is_misconfigured() && !mismatch.endpoint_gone());
    }

    #[test]
    fn accepted_without_a_readable_name_has_no_provider_id() {
        assert_eq!(verdict(200, None, b"{}"), Want::Accepted(None).describe());
        assert_eq!(
            verdict(200, None, b"not json"),
            Want::Accepted(None).describe()
        );
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        assert_eq!(
            parse_retry_after(Some(" 42 ")),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
