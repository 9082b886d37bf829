//! Who may change a membership, and the one invariant of membership: an org always keeps at
//! least one owner.

use crate::Role;

/// A change to one membership of an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// A new member with this role.
    Add(Role),
    /// An existing member's role, from one to another.
    SetRole { from: Role, to: Role },
    /// An existing member (with this role) leaves.
    Remove { role: Role },
}

/// Why a change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MemberRefusal {
    #[error("your role does not allow this change")]
    RoleTooLow,
    #[error("an organization must keep at least one owner")]
    LastOwner,
}

/// Admins (and owners) manage members; only owners grant or revoke `owner`; anyone may leave;
/// and a change that would leave the org without an owner is refused. `on_self` says whether
/// the actor changes their own membership; `other_owners` counts the owners other than the
/// member changed (the caller must hold them still, e.g. locked, until the change commits).
pub fn check_member_change(
    actor: Role,
    on_self: bool,
    change: MemberChange,
    other_owners: usize,
) -> Result<(), MemberRefusal> {
    let touches_owner = match change {
        MemberChange::Add(role) => role == Role::Owner,
        MemberChange::SetRole { from, to } => from == Role::Owner || to == Role::Owner,
        // Leaving is always allowed to oneself; removing an owner is for owners.
        MemberChange::Remove { role } => role == Role::Owner && !on_self,
    };
    let leaving = on_self && matches!(change, MemberChange::Remove { .. });
    if !(actor.is_admin() || leaving) || (touches_owner && actor != Role::Owner) {
        return Err(MemberRefusal::RoleTooLow);
    }
    let loses_an_owner = match change {
        MemberChange::Add(_) => false,
        MemberChange::SetRole { from, to } => from == Role::Owner && to != Role::Owner,
        MemberChange::Remove { role } => role == Role::Owner,
    };
    if loses_an_owner && other_owners == 0 {
        return Err(MemberRefusal::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberChange::*;
    use MemberRefusal::*;
    use Role::*;

    #[test]
    fn admins_manage_members_but_only_owners_manage_owners() {
        assert_eq!(check_member_change(Admin, false, Add(Staff), 1), Ok(()));
        assert_eq!(
            check_member_change(Admin, false, Add(Owner), 1),
            Err(RoleTooLow)
        );
        assert_eq!(check_member_change(Owner, false, Add(Owner), 1), Ok(()));
        assert_eq!(
            check_member_change(Staff, false, Add(Staff), 1),
            Err(RoleTooLow)
        );
        let promote = SetRole {
            from: Admin,
            to: Owner,
        };
        assert_eq!(
            check_member_change(Admin, false, promote, 1),
            Err(RoleTooLow)
        );
        assert_eq!(check_member_change(Owner, false, promote, 1), Ok(()));
        let demote = SetRole {
            from: Owner,
            to: Admin,
        };
        assert_eq!(
            check_member_change(Admin, false, demote, 1),
            Err(RoleTooLow)
        );
        assert_eq!(check_member_change(Owner, false, demote, 1), Ok(()));
        assert_eq!(
            check_member_change(Admin, false, Remove { role: Owner }, 1),
            Err(RoleTooLow)
        );
        assert_eq!(
            check_member_change(Admin, false, Remove { role: Staff }, 1),
            Ok(())
        );
    }

    #[test]
    fn anyone_may_leave_but_staff_change_nothing_else() {
        assert_eq!(
            check_member_change(Staff, true, Remove { role: Staff }, 1),
            Ok(())
        );
        assert_eq!(
            check_member_change(Owner, true, Remove { role: Owner }, 1),
            Ok(())
        );
        let promote_self = SetRole {
            from: Staff,
            to: Admin,
        };
        assert_eq!(
            check_member_change(Staff, true, promote_self, 1),
            Err(RoleTooLow)
        );
        assert_eq!(
            check_member_change(Staff, false, Remove { role: Staff }, 1),
            Err(RoleTooLow)
        );
    }

    #[test]
    fn the_last_owner_can_neither_be_demoted_nor_removed() {
        let demote = SetRole {
            from: Owner,
            to: Staff,
        };
        assert_eq!(check_member_change(Owner, true, demote, 0), Err(LastOwner));
        assert_eq!(
            check_member_change(Owner, true, Remove { role: Owner }, 0),
            Err(LastOwner)
        );
        assert_eq!(
            check_member_change(Owner, false, Remove { role: Owner }, 0),
            Err(LastOwner)
        );
        assert_eq!(check_member_change(Owner, true, demote, 1), Ok(()));
        let owner_stays = SetRole {
            from: Owner,
            to: Owner,
        };
        assert_eq!(check_member_change(Owner, true, owner_stays, 0), Ok(()));
    }
}
