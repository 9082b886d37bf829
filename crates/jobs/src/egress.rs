//! Where the worker may download from. A recording URL arrives in a signed webhook, but the
//! clinic chooses what its provider signs: without this guard a clinic could make the worker
//! fetch an internal address (a cloud metadata service, a database port) and read the answer
//! back as its "recording". Public addresses only, checked where the connection is made (the
//! resolver), for IP literals, and on every redirect (`download::get` follows them by hand).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is on the public internet (not loopback, private, link-local, CGNAT,
/// unique-local, multicast, documentation or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (b & 0xC0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let [s0, s1, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || (s0 == 0x2001 && s1 == 0x0db8))
        }
    }
}

/// Refuses a URL that is not http(s) or that names a non-public IP literal (host names are
/// checked by [`PublicOnly`] when they are resolved).
pub fn check_url(url: &reqwest::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the {} scheme is not allowed", url.scheme()));
    }
    let literal = match url.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if is_public(literal) {
        Ok(())
    } else {
        Err(format!("{literal} is not a public address"))
    }
}

/// A resolver that only ever hands out public addresses.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn urls_with_private_literals_or_other_schemes_are_refused() {
        for bad in [
            "http://127.0.0.1:8080/x.wav",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "ftp://example.com/x",
        ] {
            assert!(check_url(&bad.parse().expect("url")).is_err(), "{bad}");
        }
        for good in [
            "https://api.twilio.com/2010-04-01/Recordings/RE1.wav",
            "http://93.184.216.34/x",
        ] {
            assert!(check_url(&good.parse().expect("url")).is_ok(), "{good}");
        }
    }
}
