//! Signature schemes, each verified in constant time.
//!
//! - Twilio (`X-Twilio-Signature`): base64 HMAC-SHA1, keyed with the account's auth token,
//!   over the full request URL followed by every POST parameter as `name` + `value`, sorted
//!   by name (then value).
//! - Timestamped HMAC-SHA256 for JSON providers: hex HMAC-SHA256 over `"{timestamp}.{body}"`
//!   with the raw body bytes, keyed with the clinic's webhook secret; the timestamp (Unix
//!   seconds) must be within a tolerance of now, so a captured request cannot be replayed
//!   later.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the signature is not in the expected format")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signed timestamp is {age_seconds} s away from now, beyond the tolerance")]
    Stale { age_seconds: i64 },
}

fn twilio_mac(auth_token: &[u8], url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token).expect(ANY_KEY_LENGTH);
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// HMAC's `new_from_slice` accepts a key of any length (it hashes long ones): it cannot fail.
const ANY_KEY_LENGTH: &str = "HMAC accepts keys of any length";

/// The `X-Twilio-Signature` Twilio would send.
pub fn twilio_sign(auth_token: &[u8], url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(twilio_mac(auth_token, url, params).finalize().into_bytes())
}

pub fn twilio_verify(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let expected = STANDARD
        .decode(header)
        .map_err(|_| SignatureError::Malformed)?;
    twilio_mac(auth_token, url, params)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn timestamped_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect(ANY_KEY_LENGTH);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The hex signature of `body` at `timestamp`.
pub fn timestamped_sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(
        timestamped_mac(secret, timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

/// Checks a timestamped signature (`sha256=` prefix allowed) against `now` (Unix seconds).
pub fn timestamped_verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let (timestamp, signature) = match (timestamp.map(str::trim), signature.map(str::trim)) {
        (Some(t), Some(s)) if !t.is_empty() && !s.is_empty() => (t, s),
        _ => return Err(SignatureError::Missing),
    };
    let timestamp: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    let expected = hex::decode(signature.strip_prefix("sha256=").unwrap_or(signature))
        .map_err(|_| SignatureError::Malformed)?;
    // The signature first: an attacker learns nothing about the clock from a forged request.
    timestamped_mac(secret, timestamp, body)
        .verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)?;
    let age_seconds = now.saturating_sub(timestamp);
    if age_seconds.abs() > tolerance_seconds {
        return Err(SignatureError::Stale { age_seconds });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's published example (their signature validation snippet).
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    fn example() -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn twilio_matches_the_published_example_whatever_the_parameter_order() {
        let mut p = example();
        assert_eq!(
            twilio_sign(b"12345", URL, &p),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        p.reverse();
        assert_eq!(
            twilio_verify(b"12345", URL, &p, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Ok(())
        );
    }

    #[test]
    fn twilio_refuses_anything_changed() {
        let good = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let mut tampered = example();
        tampered[2].1 = "9999".into();
        assert_eq!(
            twilio_verify(b"12345", URL, &tampered, good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_verify(b"54321", URL, &example(), good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_verify(b"12345", "https://mycompany.com/other", &example(), good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_verify(b"12345", URL, &example(), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            twilio_verify(b"12345", URL, &example(), Some("%%%")),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn timestamped_signatures_verify_within_the_tolerance_only() {
        let body = br#"{"message":{"type":"status-update"}}"#;
        let sig = timestamped_sign(b"whsec", 1_700_000_000, body);
        let ok = |ts: &str, s: &str, now: i64| {
            timestamped_verify(b"whsec", Some(ts), Some(s), body, now, 300)
        };
        assert_eq!(ok("1700000000", &sig, 1_700_000_100), Ok(()));
        assert_eq!(
            ok("1700000000", &format!("sha256={sig}"), 1_700_000_000),
            Ok(())
        );
        assert_eq!(
            ok("1700000000", &sig, 1_700_000_301),
            Err(SignatureError::Stale { age_seconds: 301 })
        );
        assert_eq!(
            ok("1700000000", &sig, 1_699_999_000),
            Err(SignatureError::Stale { age_seconds: -1000 })
        );
        assert_eq!(
            ok("1700000001", &sig, 1_700_000_000),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert_eq!(
            ok("soon", &sig, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            ok("1700000000", "zz", 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        let other = timestamped_verify(
            b"other-clinic",
            Some("1700000000"),
            Some(&sig),
            body,
            1_700_000_000,
            300,
        );
        assert_eq!(
            other,
            Err(SignatureError::Mismatch),
            "another clinic's secret does not verify"
        );
        let tampered = timestamped_verify(
            b"whsec",
            Some("1700000000"),
            Some(&sig),
            b"{}",
            1_700_000_000,
            300,
        );
        assert_eq!(tampered, Err(SignatureError::Mismatch));
        assert_eq!(
            timestamped_verify(b"whsec", None, Some(&sig), body, 0, 300),
            Err(SignatureError::Missing)
        );
    }
}
