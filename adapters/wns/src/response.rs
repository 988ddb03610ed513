//! Classification, pure: what a WNS answer means for the delivery and the endpoint
//! (PROTOCOLS.md §3.4–3.5).

use std::time::Duration;

use tidings::{Accepted, PushError};

/// The response headers that matter, read from a WNS answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WnsResponse {
    /// The HTTP status.
    pub status: u16,
    /// `X-WNS-Status` (or the older `X-WNS-NotificationStatus`), lowercase.
    pub wns_status: Option<String>,
    /// `X-WNS-Msg-ID`: the provider's message id.
    pub msg_id: Option<String>,
    /// `X-WNS-CONTINUE-AFTER`, as sent.
    pub continue_after: Option<String>,
    /// `X-WNS-DeviceConnectionStatus`, lowercase.
    pub device_status: Option<String>,
    /// `X-WNS-Error-Description`.
    pub error_description: Option<String>,
}

impl WnsResponse {
    /// Reads the WNS headers of an answer with `status`.
    pub fn from_headers(status: u16, headers: &http::HeaderMap) -> WnsResponse {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        WnsResponse {
            status,
            wns_status: get("x-wns-status")
                .or_else(|| get("x-wns-notificationstatus"))
                .map(|s| s.to_ascii_lowercase()),
            msg_id: get("x-wns-msg-id"),
            continue_after: get("x-wns-continue-after"),
            device_status: get("x-wns-deviceconnectionstatus").map(|s| s.to_ascii_lowercase()),
            error_description: get("x-wns-error-description"),
        }
    }
}

/// What to do with an answer.
#[derive(Debug)]
pub enum Verdict {
    /// WNS accepted the push (accepted is not delivered).
    Accepted(Accepted),
    /// The access token was refused (401): fetch a new one and resend once.
    RefreshToken,
    /// The push failed.
    Failed(PushError),
}

/// Parses `X-WNS-CONTINUE-AFTER` as whole seconds; other forms count as absent.
pub fn parse_continue_after(value: Option<&str>) -> Option<Duration> {
    value
        .map(str::trim)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Classifies one answer of a channel URI.
///
/// | Answer | Verdict | reason |
/// |---|---|---|
/// | 200, `X-WNS-Status: received` (or absent) | accepted, `X-WNS-Msg-ID` as provider id | — |
/// | 200 `dropped`, device `disconnected`/`tempdisconnected` | `Unavailable`, backoff (a toast to an offline device is dropped; try again later) | `dropped` |
/// | 200 `dropped` otherwise | `Rejected` (the user or app refused it; never counted as accepted) | `dropped` |
/// | 200 `channelthrottled`, 406 | `Throttled`, after `X-WNS-CONTINUE-AFTER` when given, else backoff | `channelthrottled` |
/// | 400, 405 | `Rejected` (a bug on our side) | `bad_request`, `method_not_allowed` |
/// | 401 | refresh the access token, resend once | — |
/// | 403 | `Misconfigured` (token of another app) | `forbidden` |
/// | 404 | `EndpointGone` (channel URI unknown) | `channel_not_found` |
/// | 410 | `EndpointGone` (channel expired) | `channel_expired` |
/// | 413 | `Rejected` (over 5000 bytes; normally caught before sending) | `payload_too_large` |
/// | 408 | `Timeout` | `timeout` |
/// | 429 | `Throttled` (like 406) | `throttled` |
/// | 500, 503, other 5xx | `Unavailable`, backoff (after `X-WNS-CONTINUE-AFTER` if given) | `internal_error`, `service_unavailable`, `server_error` |
/// | other | `Rejected` | `http_<status>` |
pub fn classify(r: &WnsResponse) -> Verdict {
    let after = parse_continue_after(r.continue_after.as_deref());
    let text = |what: &str| match &r.error_description {
        Some(d) => format!("WNS answered {} ({what}): {d}", r.status),
        None => format!("WNS answered {} ({what})", r.status),
    };
    let e = match r.status {
        200 => match r.wns_status.as_deref() {
            None | Some("received") => {
                return Verdict::Accepted(Accepted {
                    provider_message_id: r.msg_id.clone(),
                })
            }
            Some("channelthrottled") => PushError::throttled(text("channel throttled"), after)
                .with_reason("channelthrottled"),
            Some("dropped") => {
                let offline = matches!(
                    r.device_status.as_deref(),
                    Some("disconnected" | "tempdisconnected" | "tempconnected")
                );
                if offline {
                    PushError::unavailable(text("dropped: the device is offline"))
                        .with_reason("dropped")
                } else {
                    PushError::rejected(text("dropped by the device or the user"))
                        .with_reason("dropped")
                }
            }
            Some(other) => PushError::unavailable(text(&format!("unknown X-WNS-Status {other}")))
                .with_reason(other.to_owned()),
        },
        401 => return Verdict::RefreshToken,
        400 => PushError::rejected(text("bad request")).with_reason("bad_request"),
        403 => PushError::misconfigured(text(
            "the access token is not authorized for this channel; check the app's credentials",
        ))
        .with_reason("forbidden"),
        404 => PushError::gone(text("channel URI unknown")).with_reason("channel_not_found"),
        405 => PushError::rejected(text("method not allowed")).with_reason("method_not_allowed"),
        406 => PushError::throttled(text("throttled"), after).with_reason("channelthrottled"),
        408 => PushError::timeout(text("timeout")).with_reason("timeout"),
        410 => PushError::gone(text("channel expired")).with_reason("channel_expired"),
        413 => PushError::rejected(text("payload too large")).with_reason("payload_too_large"),
        429 => PushError::throttled(text("throttled"), after).with_reason("throttled"),
        500..=599 => {
            let reason = match r.status {
                500 => "internal_error",
                503 => "service_unavailable",
                _ => "server_error",
            };
            let e = PushError::unavailable(text(reason)).with_reason(reason);
            match after {
                Some(d) => e.with_retry(tidings::Retry::After(d)),
                None => e,
            }
        }
        other => {
            PushError::rejected(text("unexpected status")).with_reason(format!("http_{other}"))
        }
    };
    Verdict::Failed(e)
}

#[cfg(test)]
mod tests {
    use tidings::{PushErrorKind, Retry};

    use super::*;

    fn answer(status: u16, wns_status: Option<&str>, continue_after: Option<&str>) -> WnsResponse {
        WnsResponse {
            status,
            wns_status: wns_status.map(Into::into),
            msg_id: Some("5A5A000000000001".into()),
            continue_after: continue_after.map(Into::into),
            device_status: Some("connected".into()),
            error_description: Some("described".into()),
        }
    }

    fn verdict(r: &WnsResponse) -> String {
        match classify(r) {
            Verdict::Accepted(a) => format!("accepted {:?}", a.provider_message_id),
            Verdict::RefreshToken => "refresh".to_owned(),
            Verdict::Failed(e) => format!("{:?} {:?} {:?}", e.kind(), e.retry(), e.reason()),
        }
    }

    fn failed(kind: PushErrorKind, retry: Retry, reason: &str) -> String {
        format!("{kind:?} {retry:?} {:?}", Some(reason))
    }

    /// PROTOCOLS.md §3.4–3.5, row by row.
    #[test]
    fn every_documented_answer_is_classified() {
        use PushErrorKind::*;
        let secs = Duration::from_secs;
        let accepted = "accepted Some(\"5A5A000000000001\")".to_owned();
        let mut offline = answer(200, Some("dropped"), None);
        offline.device_status = Some("disconnected".into());
        let mut temp_offline = answer(200, Some("dropped"), None);
        temp_offline.device_status = Some("tempdisconnected".into());
        let table: Vec<(&str, WnsResponse, String)> = vec![
            (
                "200 received",
                answer(200, Some("received"), None),
                accepted.clone(),
            ),
            (
                "200 without X-WNS-Status",
                answer(200, None, None),
                accepted,
            ),
            (
                "200 dropped, device connected",
                answer(200, Some("dropped"), None),
                failed(Rejected, Retry::Never, "dropped"),
            ),
            (
                "200 dropped, device offline",
                offline,
                failed(Unavailable, Retry::Backoff, "dropped"),
            ),
            (
                "200 dropped, device temporarily offline",
                temp_offline,
                failed(Unavailable, Retry::Backoff, "dropped"),
            ),
            (
                "200 channelthrottled with continue-after",
                answer(200, Some("channelthrottled"), Some("30")),
                failed(Throttled, Retry::After(secs(30)), "channelthrottled"),
            ),
            (
                "200 channelthrottled without continue-after",
                answer(200, Some("channelthrottled"), None),
                failed(Throttled, Retry::Backoff, "channelthrottled"),
            ),
            (
                "400 bad headers",
                answer(400, None, None),
                failed(Rejected, Retry::Never, "bad_request"),
            ),
            (
                "401 token expired",
                answer(401, None, None),
                "refresh".into(),
            ),
            (
                "403 token of another app",
                answer(403, None, None),
                failed(Misconfigured, Retry::Backoff, "forbidden"),
            ),
            (
                "404 channel unknown",
                answer(404, None, None),
                failed(EndpointGone, Retry::Never, "channel_not_found"),
            ),
            (
                "405 wrong method",
                answer(405, None, None),
                failed(Rejected, Retry::Never, "method_not_allowed"),
            ),
            (
                "406 throttled with continue-after",
                answer(406, Some("channelthrottled"), Some("137")),
                failed(Throttled, Retry::After(secs(137)), "channelthrottled"),
            ),
            (
                "406 throttled without continue-after",
                answer(406, None, None),
                failed(Throttled, Retry::Backoff, "channelthrottled"),
            ),
            (
                "406 with a non-numeric continue-after",
                answer(406, None, Some("soon")),
                failed(Throttled, Retry::Backoff, "channelthrottled"),
            ),
            (
                "410 channel expired",
                answer(410, None, None),
                failed(EndpointGone, Retry::Never, "channel_expired"),
            ),
            (
                "413 payload too large",
                answer(413, None, None),
                failed(Rejected, Retry::Never, "payload_too_large"),
            ),
            (
                "500 internal failure",
                answer(500, None, None),
                failed(Unavailable, Retry::Backoff, "internal_error"),
            ),
            (
                "503 unavailable",
                answer(503, None, None),
                failed(Unavailable, Retry::Backoff, "service_unavailable"),
            ),
            (
                "503 with continue-after",
                answer(503, None, Some("12")),
                failed(Unavailable, Retry::After(secs(12)), "service_unavailable"),
            ),
            (
                "502 from a proxy",
                answer(502, None, None),
                failed(Unavailable, Retry::Backoff, "server_error"),
            ),
            (
                "429",
                answer(429, None, Some("9")),
                failed(Throttled, Retry::After(secs(9)), "throttled"),
            ),
            (
                "418 unexpected",
                answer(418, None, None),
                failed(Rejected, Retry::Never, "http_418"),
            ),
        ];
        for (name, r, want) in table {
            assert_eq!(verdict(&r), want, "{name}");
        }
    }

    #[test]
    fn gone_is_final_and_misconfigured_keeps_the_endpoint() {
        let Verdict::Failed(gone) = classify(&answer(410, None, None)) else {
            panic!("410 must fail");
        };
        assert!(gone.endpoint_gone() && !gone.is_retryable());
        let Verdict::Failed(forbidden) = classify(&answer(403, None, None)) else {
            panic!("403 must fail");
        };
        assert!(forbidden.is_misconfigured() && !forbidden.endpoint_gone());
    }

    #[test]
    fn dropped_is_never_accepted() {
        for device in [None, Some("connected"), Some("disconnected")] {
            let mut r = answer(200, Some("dropped"), None);
            r.device_status = device.map(Into::into);
            assert!(
                matches!(classify(&r), Verdict::Failed(_)),
                "dropped with device {device:?}"
            );
        }
    }

    #[test]
    fn headers_are_read_case_insensitively_and_the_old_status_name_too() {
        let mut h = http::HeaderMap::new();
        h.insert("X-WNS-NotificationStatus", "Dropped".parse().unwrap());
        h.insert("X-WNS-Msg-ID", "1A2B".parse().unwrap());
        h.insert("X-WNS-CONTINUE-AFTER", "60".parse().unwrap());
        h.insert(
            "X-WNS-DeviceConnectionStatus",
            "Disconnected".parse().unwrap(),
        );
        let r = WnsResponse::from_headers(200, &h);
        assert_eq!(r.wns_status.as_deref(), Some("dropped"));
        assert_eq!(r.msg_id.as_deref(), Some("1A2B"));
        assert_eq!(
            parse_continue_after(r.continue_after.as_deref()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(r.device_status.as_deref(), Some("disconnected"));
    }

    #[test]
    fn the_error_description_is_in_the_message() {
        let Verdict::Failed(e) = classify(&answer(400, None, None)) else {
            panic!("400 must fail");
        };
        assert!(e.message().contains("described"), "{e}");
    }
}
