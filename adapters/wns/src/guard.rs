//! The SSRF guard, checked again before every send (PROTOCOLS.md §3.6): channel URIs come from
//! clients, and Microsoft requires servers to post only to `notify.windows.com`.
//!
//! A channel URI is used only if it is `https`, on an allowed host (by default
//! `notify.windows.com` or a subdomain: parsed host, dot-anchored suffix), with the very rules of
//! [`tidings::endpoint::check_push_url`] (registration uses them too), with no user information, on the
//! default port, and names a host rather than an IP address. The test-only override accepts
//! `http(s)` URIs on `127.0.0.1`/`localhost` too; it comes from the channel's configuration,
//! never from the URI.

use tidings::PushError;

/// Checks `uri` against `allowed_hosts`; with `loopback_for_tests`, loopback URIs pass too.
/// Returns the parsed URL, or why it was refused.
pub fn check_channel_uri(
    uri: &str,
    allowed_hosts: &[String],
    loopback_for_tests: bool,
) -> Result<url::Url, String> {
    // The same rules as at registration (core's `PushAddress::validate`), applied again here.
    tidings::endpoint::check_push_url(uri, allowed_hosts, loopback_for_tests)
        .map_err(|reason| format!("the channel URI {reason}"))
}

/// [`check_channel_uri`] as a push error: a refused URI is rejected (never sent to), and the
/// endpoint is left alone (it was accepted at registration, so the configuration changed).
pub(crate) fn guard(
    uri: &str,
    allowed_hosts: &[String],
    loopback_for_tests: bool,
) -> Result<url::Url, PushError> {
    check_channel_uri(uri, allowed_hosts, loopback_for_tests).map_err(|reason| {
        PushError::rejected(format!("refused to send: {reason}")).with_reason("ssrf_guard")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["notify.windows.com".into()]
    }

    #[test]
    fn wns_hosts_over_https_pass() {
        for ok in [
            "https://db5p.notify.windows.com/?token=AwYAAAB",
            "https://wns2-by3p.notify.windows.com/w/?token=BQYAAA",
            "https://notify.windows.com/?token=x",
            "https://DB5P.Notify.Windows.COM:443/?token=x",
        ] {
            assert!(check_channel_uri(ok, &hosts(), false).is_ok(), "{ok}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "http://db5p.notify.windows.com/?token=x",
            "https://evilnotify.windows.com/?token=x",
            "https://notify.windows.com.evil.net/?token=x",
            "https://evil.example/notify.windows.com/?token=x",
            "https://user:pw@db5p.notify.windows.com/?token=x",
            "https://user@db5p.notify.windows.com/?token=x",
            "https://db5p.notify.windows.com:8443/?token=x",
            "https://127.0.0.1/?token=x",
            "http://127.0.0.1:8080/w/?token=x",
            "https://[::1]/?token=x",
            "https://169.254.169.254/latest",
            "http://localhost:1234/w/?token=x",
            "ftp://db5p.notify.windows.com/",
            "not a url",
        ] {
            assert!(check_channel_uri(bad, &hosts(), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_test_override_admits_loopback_only() {
        assert!(check_channel_uri("http://127.0.0.1:4000/w/?token=x", &hosts(), true).is_ok());
        assert!(check_channel_uri("http://localhost:4000/w/?token=x", &hosts(), true).is_ok());
        for still_bad in [
            "http://10.0.0.1/w/?token=x",
            "https://169.254.169.254/latest",
            "https://evil.example/?token=x",
            "http://user@127.0.0.1:4000/w/",
            "file://127.0.0.1/etc/passwd",
        ] {
            assert!(
                check_channel_uri(still_bad, &hosts(), true).is_err(),
                "{still_bad}"
            );
        }
    }

    #[test]
    fn refusals_are_rejections_not_deactivations() {
        let e = guard("https://evil.example/", &hosts(), false).unwrap_err();
        assert_eq!(e.kind(), tidings::PushErrorKind::Rejected);
        assert!(!e.endpoint_gone());
        assert_eq!(e.reason(), Some("ssrf_guard"));
    }
}
