use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number in E.164 form (`+` then 7 to 15 digits, no leading zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "+14155550123")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a phone number in E.164 form, e.g. +14155550123")]
pub struct PhoneNumberError(String);

impl PhoneNumber {
    /// Accepts common punctuation (spaces, dashes, dots, parentheses) and a `00` international
    /// prefix, and normalises to E.164.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let err = || PhoneNumberError(input.to_owned());
        let trimmed = input.trim();
        let rest = if let Some(r) = trimmed.strip_prefix('+') {
            r
        } else if let Some(r) = trimmed.strip_prefix("00") {
            r
        } else {
            return Err(err());
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(err()),
            }
        }
        if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(err());
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_e164() {
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-0123").map(String::from),
            Ok("+14155550123".into())
        );
        assert_eq!(
            PhoneNumber::parse("0044 20 7946 0958").map(String::from),
            Ok("+442079460958".into())
        );
    }

    #[test]
    fn rejects_what_is_not_e164() {
        for bad in [
            "4155550123",
            "+0123456789",
            "+1 415 CALL NOW",
            "+12",
            "+1234567890123456",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
