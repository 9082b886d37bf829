//! Signature schemes, each verified in constant time.
//!
//! - Twilio (`X-Twilio-Signature`): base64 HMAC-SHA1, keyed with the account's auth token,
//!   over the full request URL followed by every POST parameter as `name` + `value`, sorted
//!   by name (then value).
//! - Vapi's credentials (X-Vapi-Secret, bearer, HMAC): [`crate::vapi_auth`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

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
}
