//! Cassandra's resources (data, functions, roles, mbeans) and how they nest.

use std::borrow::Cow;
use std::fmt;

use super::permission::{Permission, PermissionSet};

/// A resource as Cassandra's authorizer sees it.
///
/// Names are already resolved: unquoted names folded to lower case, quoted names unescaped,
/// and the keyspace filled in from the connection's current keyspace when the statement did
/// not name one. They borrow from the statement text (or the current keyspace) unless folding
/// or unescaping changed them.
///
/// `Display` prints Cassandra's own wording, as in its denial message
/// (`<table demo.users>`, `<all functions in demo>`, `<role alice>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    /// `<all keyspaces>`
    AllKeyspaces,
    /// `<keyspace ks>`
    Keyspace(Cow<'a, str>),
    /// `<table ks.t>` (tables and materialized views)
    Table {
        keyspace: Cow<'a, str>,
        table: Cow<'a, str>,
    },
    /// `<all functions>`
    AllFunctions,
    /// `<all functions in ks>`
    KeyspaceFunctions(Cow<'a, str>),
    /// `<function ks.f(int, text)>`: `args` is the argument type list as Cassandra prints it
    /// (lower-case CQL types joined by ", "), or `None` when the statement does not give it
    /// (a call site, `DROP FUNCTION f` without types, `DESCRIBE FUNCTION f`): then it stands for
    /// every overload of that name and prints as `<function ks.f>`.
    Function {
        keyspace: Cow<'a, str>,
        name: Cow<'a, str>,
        args: Option<Cow<'a, str>>,
    },
    /// `<all roles>`
    AllRoles,
    /// `<role r>`
    Role(Cow<'a, str>),
    /// `<all mbeans>`
    AllMbeans,
    /// `<mbean name>` (one MBean or, with `MBEANS`, a pattern)
    Mbean(Cow<'a, str>),
}

impl<'a> Resource<'a> {
    /// The resource one level up (`<table ks.t>` → `<keyspace ks>` → `<all keyspaces>`), or
    /// `None` at a root. A grant on a parent covers its children, as in Cassandra.
    pub fn parent(&self) -> Option<Resource<'a>> {
        match self {
            Resource::AllKeyspaces
            | Resource::AllFunctions
            | Resource::AllRoles
            | Resource::AllMbeans => None,
            Resource::Keyspace(_) => Some(Resource::AllKeyspaces),
            Resource::Table { keyspace, .. } => Some(Resource::Keyspace(keyspace.clone())),
            Resource::KeyspaceFunctions(_) => Some(Resource::AllFunctions),
            Resource::Function { keyspace, .. } => {
                Some(Resource::KeyspaceFunctions(keyspace.clone()))
            }
            Resource::Role(_) => Some(Resource::AllRoles),
            Resource::Mbean(_) => Some(Resource::AllMbeans),
        }
    }

    /// Whether `self` is `other` or one of its parents.
    pub fn covers(&self, other: &Resource<'_>) -> bool {
        let mut cur: Option<Resource<'_>> = Some(other.clone());
        while let Some(r) = cur {
            if self.same_as(&r) {
                return true;
            }
            cur = r.parent();
        }
        false
    }

    fn same_as(&self, other: &Resource<'_>) -> bool {
        use Resource::*;
        match (self, other) {
            (AllKeyspaces, AllKeyspaces)
            | (AllFunctions, AllFunctions)
            | (AllRoles, AllRoles)
            | (AllMbeans, AllMbeans) => true,
            (Keyspace(a), Keyspace(b))
            | (KeyspaceFunctions(a), KeyspaceFunctions(b))
            | (Role(a), Role(b))
            | (Mbean(a), Mbean(b)) => a == b,
            (
                Table {
                    keyspace: k1,
                    table: t1,
                },
                Table {
                    keyspace: k2,
                    table: t2,
                },
            ) => k1 == k2 && t1 == t2,
            (
                Function {
                    keyspace: k1,
                    name: n1,
                    args: a1,
                },
                Function {
                    keyspace: k2,
                    name: n2,
                    args: a2,
                },
            ) => k1 == k2 && n1 == n2 && (a1.is_none() || a1 == a2),
            _ => false,
        }
    }

    /// The permissions Cassandra lets one grant on this resource (`applicablePermissions()`);
    /// `GRANT ALL` means all of these.
    pub fn applicable_permissions(&self) -> PermissionSet {
        use Permission::*;
        match self {
            Resource::AllKeyspaces | Resource::Keyspace(_) => PermissionSet::of(&[
                Create,
                Alter,
                Drop,
                Select,
                Modify,
                Authorize,
                Unmask,
                SelectMasked,
            ]),
            Resource::Table { .. } => {
                PermissionSet::of(&[Alter, Drop, Select, Modify, Authorize, Unmask, SelectMasked])
            }
            Resource::AllFunctions | Resource::KeyspaceFunctions(_) => {
                PermissionSet::of(&[Create, Alter, Drop, Authorize, Execute])
            }
            Resource::Function { .. } => PermissionSet::of(&[Alter, Drop, Authorize, Execute]),
            Resource::AllRoles => PermissionSet::of(&[Create, Alter, Drop, Authorize, Describe]),
            Resource::Role(_) => PermissionSet::of(&[Alter, Drop, Authorize]),
            Resource::AllMbeans | Resource::Mbean(_) => {
                PermissionSet::of(&[Authorize, Describe, Execute, Modify, Select])
            }
        }
    }

    /// The keyspace this resource lies in, if any.
    pub fn keyspace(&self) -> Option<&str> {
        match self {
            Resource::Keyspace(k)
            | Resource::Table { keyspace: k, .. }
            | Resource::KeyspaceFunctions(k)
            | Resource::Function { keyspace: k, .. } => Some(k),
            _ => None,
        }
    }

    /// Copies borrowed names so the resource outlives the statement text.
    pub fn into_owned(self) -> Resource<'static> {
        fn o(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        match self {
            Resource::AllKeyspaces => Resource::AllKeyspaces,
            Resource::Keyspace(k) => Resource::Keyspace(o(k)),
            Resource::Table { keyspace, table } => Resource::Table {
                keyspace: o(keyspace),
                table: o(table),
            },
            Resource::AllFunctions => Resource::AllFunctions,
            Resource::KeyspaceFunctions(k) => Resource::KeyspaceFunctions(o(k)),
            Resource::Function {
                keyspace,
                name,
                args,
            } => Resource::Function {
                keyspace: o(keyspace),
                name: o(name),
                args: args.map(o),
            },
            Resource::AllRoles => Resource::AllRoles,
            Resource::Role(r) => Resource::Role(o(r)),
            Resource::AllMbeans => Resource::AllMbeans,
            Resource::Mbean(m) => Resource::Mbean(o(m)),
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::AllKeyspaces => f.write_str("<all keyspaces>"),
            Resource::Keyspace(k) => write!(f, "<keyspace {k}>"),
            Resource::Table { keyspace, table } => write!(f, "<table {keyspace}.{table}>"),
            Resource::AllFunctions => f.write_str("<all functions>"),
            Resource::KeyspaceFunctions(k) => write!(f, "<all functions in {k}>"),
            Resource::Function {
                keyspace,
                name,
                args: Some(args),
            } => write!(f, "<function {keyspace}.{name}({args})>"),
            Resource::Function {
                keyspace,
                name,
                args: None,
            } => write!(f, "<function {keyspace}.{name}>"),
            Resource::AllRoles => f.write_str("<all roles>"),
            Resource::Role(r) => write!(f, "<role {r}>"),
            Resource::AllMbeans => f.write_str("<all mbeans>"),
            Resource::Mbean(m) => write!(f, "<mbean {m}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    #[test]
    fn display_like_cassandra() {
        let t = Resource::Table {
            keyspace: b("demo"),
            table: b("users"),
        };
        assert_eq!(t.to_string(), "<table demo.users>");
        assert_eq!(Resource::AllKeyspaces.to_string(), "<all keyspaces>");
        assert_eq!(Resource::Keyspace(b("demo")).to_string(), "<keyspace demo>");
        assert_eq!(Resource::AllFunctions.to_string(), "<all functions>");
        assert_eq!(
            Resource::KeyspaceFunctions(b("demo")).to_string(),
            "<all functions in demo>"
        );
        let f = Resource::Function {
            keyspace: b("demo"),
            name: b("f"),
            args: Some(b("int")),
        };
        assert_eq!(f.to_string(), "<function demo.f(int)>");
        assert_eq!(Resource::AllRoles.to_string(), "<all roles>");
        assert_eq!(Resource::Role(b("alice")).to_string(), "<role alice>");
    }

    #[test]
    fn nesting() {
        let t = Resource::Table {
            keyspace: b("demo"),
            table: b("users"),
        };
        assert_eq!(t.parent(), Some(Resource::Keyspace(b("demo"))));
        assert!(Resource::AllKeyspaces.covers(&t));
        assert!(Resource::Keyspace(b("demo")).covers(&t));
        assert!(!Resource::Keyspace(b("other")).covers(&t));
        assert!(!Resource::AllFunctions.covers(&t));
        let f = Resource::Function {
            keyspace: b("demo"),
            name: b("f"),
            args: Some(b("int")),
        };
        assert!(Resource::KeyspaceFunctions(b("demo")).covers(&f));
        assert!(Resource::AllFunctions.covers(&f));
        assert!(Resource::AllRoles.covers(&Resource::Role(b("x"))));
    }

    #[test]
    fn applicable() {
        let t = Resource::Table {
            keyspace: b("demo"),
            table: b("users"),
        };
        assert!(!t.applicable_permissions().contains(Permission::Create));
        assert!(Resource::AllRoles
            .applicable_permissions()
            .contains(Permission::Describe));
        assert!(!Resource::Role(b("r"))
            .applicable_permissions()
            .contains(Permission::Describe));
    }
}
