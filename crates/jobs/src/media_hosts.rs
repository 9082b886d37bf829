//! Where a clinic's provider credentials may go. The worker downloads whatever recording URL
//! a clinic's voice platform signs: Twilio's own media, but also Vapi's storage, or a host the
//! clinic (or whoever controls its platform account) chose. The clinic's Twilio account SID and
//! auth token are sent only to Twilio's own media hosts, matched exactly, over https.

use reqwest::Url;

/// Twilio serves recording media at
/// `https://api.twilio.com/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}`.
pub const TWILIO_MEDIA_HOSTS: &str = "api.twilio.com";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a host or host:port")]
pub struct HostListError(pub String);

/// A list of hosts, each `host` (on the scheme's default port) or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaHosts(Vec<(String, Option<u16>)>);

impl MediaHosts {
    /// A comma-separated list, e.g. `api.twilio.com,api.dublin.ie1.twilio.com`. Empty: no host
    /// ever gets credentials.
    pub fn parse(list: &str) -> Result<Self, HostListError> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_entry)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Twilio's documented media host.
    pub fn twilio() -> Self {
        Self(vec![(TWILIO_MEDIA_HOSTS.to_owned(), None)])
    }

    /// Whether credentials may be sent to `url`: https (or http too when `allow_http`, for
    /// development and tests), and its host and port on the list.
    pub fn allows(&self, url: &Url, allow_http: bool) -> bool {
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        let Some(host) = url.host_str() else {
            return false;
        };
        scheme_ok
            && self.0.iter().any(|(h, port)| {
                h.eq_ignore_ascii_case(host)
                    && match port {
                        None => url.port().is_none(),
                        Some(p) => url.port_or_known_default() == Some(*p),
                    }
            })
    }
}

impl Default for MediaHosts {
    fn default() -> Self {
        Self::twilio()
    }
}

fn parse_entry(entry: &str) -> Result<(String, Option<u16>), HostListError> {
    let bad = || HostListError(entry.to_owned());
    if entry.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    // Parsed as a URL so the host is normalised the way the download URL's is.
    let url = Url::parse(&format!("https://{entry}/")).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?.to_owned();
    // `Url` hides an explicit :443 on https; it still means "this port only".
    let explicit = !entry.ends_with(']') && entry.contains(':');
    let port = match url.port() {
        Some(p) => Some(p),
        None if explicit => Some(443),
        None => None,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().expect("url")
    }

    #[test]
    fn only_listed_hosts_over_https_get_credentials() {
        let hosts = MediaHosts::twilio();
        assert!(hosts.allows(
            &url("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"),
            false
        ));
        assert!(hosts.allows(&url("https://API.Twilio.com/x"), false));
        for other in [
            "http://api.twilio.com/x",
            "https://api.twilio.com:8443/x",
            "https://api.twilio.com.evil.example/x",
            "https://evil.example/api.twilio.com/x",
            "https://storage.vapi.ai/x.wav",
            "https://twilio.com/x",
            "https://x.api.twilio.com/x",
        ] {
            assert!(!hosts.allows(&url(other), false), "{other}");
        }
        assert!(hosts.allows(&url("http://api.twilio.com/x"), true));
    }

    #[test]
    fn entries_may_name_a_port() {
        let hosts = MediaHosts::parse(" 127.0.0.1:4000 , media.example:443,[::1]").expect("list");
        assert!(hosts.allows(&url("http://127.0.0.1:4000/x"), true));
        assert!(!hosts.allows(&url("http://127.0.0.1:4001/x"), true));
        assert!(!hosts.allows(&url("http://localhost:4000/x"), true));
        assert!(hosts.allows(&url("https://media.example/x"), false));
        assert!(!hosts.allows(&url("https://media.example:8443/x"), false));
        assert!(hosts.allows(&url("https://[::1]/x"), false));
        assert!(MediaHosts::parse("").expect("empty").0.is_empty());
        for bad in [
            "https://api.twilio.com",
            "a/b",
            "user@host",
            "host:port",
            "a b",
        ] {
            assert!(MediaHosts::parse(bad).is_err(), "{bad}");
        }
    }
}
