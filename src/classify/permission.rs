//! Cassandra's permission names and small permission sets.

use std::fmt;

named_enum! {
    /// A permission as Cassandra names it (`org.apache.cassandra.auth.Permission`).
    ///
    /// `Display` prints Cassandra's spelling (`SELECT`, `MODIFY`, ..., `SELECT_MASKED`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Permission {
        Create => "CREATE",
        Alter => "ALTER",
        Drop => "DROP",
        Select => "SELECT",
        Modify => "MODIFY",
        Authorize => "AUTHORIZE",
        Describe => "DESCRIBE",
        Execute => "EXECUTE",
        Unmask => "UNMASK",
        SelectMasked => "SELECT_MASKED",
    }
    /// Every permission, in Cassandra's declaration order.
    ALL;
    /// The name as Cassandra spells it.
    fn as_str;
}

impl Permission {
    /// Parses Cassandra's spelling, case-insensitively (`select_masked`, `MODIFY`).
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    pub(crate) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of permissions (a bit set, `Copy`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub fn of(perms: &[Permission]) -> PermissionSet {
        let mut s = PermissionSet::EMPTY;
        for p in perms {
            s.insert(*p);
        }
        s
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members in Cassandra's declaration order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(
            Permission::from_name("select_masked"),
            Some(Permission::SelectMasked)
        );
        assert_eq!(Permission::from_name("READ"), None);
    }

    #[test]
    fn sets() {
        let s = PermissionSet::of(&[Permission::Select, Permission::Modify]);
        assert!(s.contains(Permission::Select));
        assert!(!s.contains(Permission::Drop));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Permission::Select, Permission::Modify]
        );
    }
}
