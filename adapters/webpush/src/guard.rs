//! The SSRF guard: subscription endpoints come from clients, so before every send the URL is
//! checked (https, allowed host, no userinfo, no IP literal, default port), and at connect time
//! the resolved addresses are checked (no private, loopback, link-local or otherwise
//! non-public address, which also defeats DNS rebinding).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tidings::PushError;

/// A checked endpoint: the URL to post to and its origin (the VAPID `aud`).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The endpoint URL, as registered.
    pub url: String,
    /// `scheme://host[:port]`.
    pub origin: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path is a bearer capability: show the origin only.
        f.debug_struct("Target")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Reason attached to errors for endpoints the guard refuses.
pub const REFUSED_REASON: &str = "endpoint_refused";

/// Checks an endpoint URL. With `loopback_for_tests` (never in production), `http(s)` URLs on
/// `127.0.0.1`, `[::1]` or `localhost`, any port, are accepted too, so tests reach the loopback
/// mock of `tidings-testkit`.
pub fn check_endpoint(
    endpoint: &str,
    allowed_hosts: &[String],
    loopback_for_tests: bool,
) -> Result<Target, PushError> {
    let url = tidings::endpoint::check_push_url(endpoint, allowed_hosts, loopback_for_tests)
        .map_err(|why| {
            PushError::rejected(format!("endpoint refused: {why}")).with_reason(REFUSED_REASON)
        })?;
    Ok(Target {
        url: endpoint.to_owned(),
        origin: url.origin().ascii_serialization(),
    })
}

/// Whether `ip` is a public unicast address a push service may have.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata service
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let o = ip.octets();
        return is_public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        let o = ip.octets();
        return is_public_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
    // IPv4-compatible, ::/96
}

/// The addresses a name resolved to, if every one of them is allowed; a mix of public and
/// non-public answers is refused as a whole (a rebinding attempt).
pub fn filter_resolved(
    name: &str,
    addrs: Vec<SocketAddr>,
    allow_loopback: bool,
) -> Result<Vec<SocketAddr>, BlockedAddress> {
    let allowed = |a: &SocketAddr| is_public(a.ip()) || (allow_loopback && a.ip().is_loopback());
    if addrs.is_empty() || !addrs.iter().all(allowed) {
        return Err(BlockedAddress {
            name: name.to_owned(),
        });
    }
    Ok(addrs)
}

/// A name resolved to an address the guard refuses.
#[derive(Debug)]
pub struct BlockedAddress {
    name: String,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to a private, loopback, link-local or reserved address",
            self.name
        )
    }
}

impl std::error::Error for BlockedAddress {}

/// A DNS resolver (the system's, through Tokio) that refuses non-public addresses.
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    /// Accept loopback answers (tests only, with `loopback_for_tests`).
    pub allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs = filter_resolved(&host, addrs, allow_loopback)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        tidings::AddressPolicy::default().webpush_hosts
    }

    #[test]
    fn production_endpoints_on_allowed_hosts_pass() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/x",
            "https://web.push.apple.com/QGz",
            "https://wns2-by3p.notify.windows.com/w/?token=x",
            "https://fcm.googleapis.com:443/fcm/send/abc",
        ] {
            let t = check_endpoint(ok, &hosts(), false).unwrap();
            assert!(t.origin.starts_with("https://"), "{ok}");
            assert!(
                !t.origin.contains(":443"),
                "default port is not in the origin"
            );
        }
        let t = check_endpoint("https://fcm.googleapis.com/fcm/send/abc", &hosts(), false).unwrap();
        assert_eq!(t.origin, "https://fcm.googleapis.com");
    }

    #[test]
    fn ssrf_attempts_are_refused() {
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://attacker.example/push",
            "https://fcm.googleapis.com.attacker.example/push",
            "https://evilpush.apple.com/x",
            "https://user:pw@fcm.googleapis.com/x",
            "https://fcm.googleapis.com:8443/x",
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://0x7f.1/x",
            "https://localhost/x",
            "http://127.0.0.1:8080/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            let e = check_endpoint(bad, &hosts(), false).unwrap_err();
            assert_eq!(e.kind(), tidings::PushErrorKind::Rejected, "{bad}");
            assert!(!e.endpoint_gone(), "{bad}");
            assert_eq!(e.reason(), Some(REFUSED_REASON));
        }
        let long = format!(
            "https://fcm.googleapis.com/{}",
            "a".repeat(tidings::endpoint::MAX_ADDRESS_LEN)
        );
        assert!(check_endpoint(&long, &hosts(), false).is_err());
    }

    #[test]
    fn the_test_override_admits_loopback_only() {
        let t = check_endpoint("http://127.0.0.1:4000/push/a", &hosts(), true).unwrap();
        assert_eq!(t.origin, "http://127.0.0.1:4000");
        assert!(check_endpoint("http://localhost:4000/push/a", &hosts(), true).is_ok());
        assert!(check_endpoint("http://[::1]:4000/push/a", &hosts(), true).is_ok());
        for bad in [
            "http://10.0.0.1:4000/x",
            "http://169.254.169.254/x",
            "http://attacker.example/x",
        ] {
            assert!(check_endpoint(bad, &hosts(), true).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "142.250.74.106",
            "2a00:1450:4001:82b::200a",
            "::ffff:8.8.8.8",
            "1.1.1.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_name_with_any_private_answer_is_refused() {
        let public: SocketAddr = "142.250.74.106:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.7:0".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(filter_resolved("a", vec![public], false).is_ok());
        assert!(filter_resolved("a", vec![public, private], false).is_err());
        assert!(filter_resolved("a", vec![loopback], false).is_err());
        assert!(filter_resolved("a", vec![loopback], true).is_ok());
        assert!(filter_resolved("a", vec![private], true).is_err());
        assert!(filter_resolved("a", vec![], false).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let guarded = GuardedResolver {
            allow_loopback: false,
        };
        let err = match guarded.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<BlockedAddress>().is_some(), "{err}");
    }
}
