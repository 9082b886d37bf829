use serde::{Deserialize, Serialize};
use std::fmt;

/// An organization's (a clinic's) name: trimmed, 1 to 200 characters (the schema's CHECK).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "Riverside Dental")]
pub struct OrgName(String);

pub const ORG_NAME_MAX_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an organization name is 1 to {ORG_NAME_MAX_CHARS} characters (not counting surrounding spaces)")]
pub struct OrgNameError;

impl OrgName {
    pub fn parse(input: &str) -> Result<Self, OrgNameError> {
        let trimmed = input.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > ORG_NAME_MAX_CHARS {
            return Err(OrgNameError);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgName {
    type Error = OrgNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OrgName> for String {
    fn from(value: OrgName) -> Self {
        value.0
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            OrgName::parse("  Clinic A ").map(String::from),
            Ok("Clinic A".into())
        );
        assert_eq!(OrgName::parse("   "), Err(OrgNameError));
        assert_eq!(OrgName::parse(""), Err(OrgNameError));
        assert!(OrgName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(OrgName::parse(&"é".repeat(201)), Err(OrgNameError));
    }
}
