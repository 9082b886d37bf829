use crate::UnknownVariant;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// A member's role in an org. Ordered by power: `Staff < Admin < Owner`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Staff,
    Admin,
    Owner,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Admin actions are open to admins and owners.
    pub fn is_admin(self) -> bool {
        self >= Role::Admin
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownVariant;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "staff" => Ok(Role::Staff),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "owner, admin, staff",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_by_power_and_parse_back() {
        assert!(Role::Owner.is_admin() && Role::Admin.is_admin() && !Role::Staff.is_admin());
        for role in [Role::Staff, Role::Admin, Role::Owner] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
