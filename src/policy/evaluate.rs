//! Deciding a statement: every need allowed (by the system-table baseline, a grant, or a
//! superuser role, and no deny rule), then no superuser-only statement without a
//! superuser, then no guardrail refusing. Denials are worded like Cassandra's.

use std::borrow::Cow;

use crate::classify::{Flags, Kind, Need, Permission, Resource, Statement};

use super::model::{Guardrail, Model};
use super::roles::{Resolved, RoleSet};

/// The outcome of one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why it was denied, worded like Cassandra for the client's ERROR message:
    /// `User alice has no MODIFY permission on <table demo.users> or any of its parents`.
    /// Empty when allowed.
    pub reason: String,
    /// Which rule decided, for the audit log: `role writer: deny MODIFY on TABLE demo.audit
    /// (line 8)`, `system table readable by every identity`, `default deny: no grant of
    /// MODIFY on <table demo.users> or its parents`. Several rules (one per need) are joined
    /// by `; `.
    pub rule: String,
}

impl Decision {
    fn deny(reason: String, rule: String) -> Decision {
        Decision {
            allowed: false,
            reason,
            rule,
        }
    }

    fn allow(rule: String) -> Decision {
        Decision {
            allowed: true,
            reason: String::new(),
            rule,
        }
    }
}

/// What is asked of the rules for one need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// The permission itself, on the resource or a parent.
    Permission(Permission),
    /// DESCRIBE of a data or function resource: a grant of any permission on it or a
    /// parent will do (whoever may use a table may see it).
    DescribeAny,
    /// `USE ks`: any grant on the keyspace, a parent, or anything inside it (drivers `USE`
    /// the keyspace they were configured with before their first query).
    UseKeyspace,
}

impl Check {
    pub(crate) fn for_need(kind: Kind, need: &Need<'_>) -> Check {
        if need.permission != Permission::Describe {
            return Check::Permission(need.permission);
        }
        match need.resource {
            Resource::Keyspace(_) if kind == Kind::Use => Check::UseKeyspace,
            Resource::AllKeyspaces
            | Resource::Keyspace(_)
            | Resource::Table { .. }
            | Resource::AllFunctions
            | Resource::KeyspaceFunctions(_)
            | Resource::Function { .. } => Check::DescribeAny,
            // LIST ROLES: Cassandra's own DESCRIBE on <all roles>.
            _ => Check::Permission(Permission::Describe),
        }
    }

    /// A small number for cache keys.
    pub(crate) fn code(self) -> u8 {
        match self {
            Check::Permission(p) => p as u8,
            Check::DescribeAny => 64,
            Check::UseKeyspace => 65,
        }
    }
}

/// Which rule decided one need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum By {
    /// `model.rules[i]`, a grant or a deny.
    Rule(u32),
    /// A superuser role (index).
    Superuser(u32),
    /// The driver tables every identity may read.
    SystemTable,
    /// USE or DESCRIBE of a system keyspace whose tables every identity may read.
    SystemKeyspace,
    /// Nothing granted it.
    Default,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub allowed: bool,
    pub by: By,
}

/// The keyspaces whose tables drivers read at connect time.
fn system_keyspace(ks: &str) -> bool {
    matches!(ks, "system" | "system_schema" | "system_virtual_schema")
}

/// The tables drivers read at connect time: readable by every identity, with no grant and
/// whatever deny rules say (without them no driver connects).
fn system_table(ks: &str, table: &str) -> bool {
    match ks {
        "system" => matches!(table, "local" | "peers" | "peers_v2"),
        "system_schema" | "system_virtual_schema" => true,
        _ => false,
    }
}

/// The baseline every identity has, before any rule.
pub(crate) fn baseline(check: Check, resource: &Resource<'_>) -> Option<By> {
    match (check, resource) {
        (
            Check::Permission(Permission::Select) | Check::DescribeAny,
            Resource::Table { keyspace, table },
        ) if system_table(keyspace, table) => Some(By::SystemTable),
        (Check::DescribeAny | Check::UseKeyspace, Resource::Keyspace(ks))
            if system_keyspace(ks) =>
        {
            Some(By::SystemKeyspace)
        }
        _ => None,
    }
}

/// Evaluates the rules for one need: the first deny rule that applies wins; otherwise the
/// first grant; otherwise a superuser role; otherwise the default denial.
pub(crate) fn decide(
    model: &Model,
    roles: &Resolved,
    check: Check,
    resource: &Resource<'_>,
) -> Outcome {
    let mut allow: Option<u32> = None;
    for &i in &roles.rules {
        let Some(rule) = model.rules.get(i as usize) else {
            continue;
        };
        if rule.deny {
            let names = match check {
                Check::Permission(p) => rule.permissions.contains(p),
                Check::DescribeAny | Check::UseKeyspace => {
                    rule.permissions.contains(Permission::Describe)
                }
            };
            if names && rule.pattern.covers(resource) {
                return Outcome {
                    allowed: false,
                    by: By::Rule(i),
                };
            }
        } else if allow.is_none() {
            let applies = match (check, resource) {
                (Check::Permission(p), _) => {
                    rule.permissions.contains(p) && rule.pattern.covers(resource)
                }
                (Check::UseKeyspace, Resource::Keyspace(ks)) => rule.pattern.reaches_keyspace(ks),
                (Check::DescribeAny | Check::UseKeyspace, _) => rule.pattern.covers(resource),
            };
            if applies {
                allow = Some(i);
            }
        }
    }
    if let Some(i) = allow {
        return Outcome {
            allowed: true,
            by: By::Rule(i),
        };
    }
    if let Some(r) = roles.superuser {
        return Outcome {
            allowed: true,
            by: By::Superuser(r),
        };
    }
    Outcome {
        allowed: false,
        by: By::Default,
    }
}

/// The rule text for an outcome.
pub(crate) fn rule_text(model: &Model, by: By, check: Check, resource: &Resource<'_>) -> String {
    match by {
        By::Rule(i) => model
            .rules
            .get(i as usize)
            .map_or_else(String::new, |r| String::from(&*r.text)),
        By::Superuser(r) => model
            .roles
            .get(r as usize)
            .and_then(|r| r.superuser.as_deref())
            .unwrap_or("superuser")
            .to_string(),
        By::SystemTable => "system table readable by every identity".to_string(),
        By::SystemKeyspace => "system keyspace visible to every identity".to_string(),
        By::Default => match check {
            Check::Permission(p) => {
                format!("default deny: no grant of {p} on {resource} or its parents")
            }
            Check::DescribeAny => {
                format!("default deny: no grant of any permission on {resource} or its parents")
            }
            Check::UseKeyspace => {
                format!("default deny: no grant on {resource}, its parents or anything in it")
            }
        },
    }
}

/// Cassandra's denial: `User alice has no MODIFY permission on <table demo.users> or any
/// of its parents`.
pub(crate) fn no_permission(principal: &str, need: &Need<'_>) -> String {
    format!(
        "User {principal} has no {} permission on {} or any of its parents",
        need.permission, need.resource
    )
}

/// The statements Cassandra decides from who the caller is rather than from grants, decided
/// before (and instead of) their needs; `None` for every other statement. Never cached: the
/// decision depends on the principal, which decision caches do not key on.
///
/// - LIST PERMISSIONS, as `CassandraAuthorizer.list`: a superuser role may view anyone's
///   permissions; otherwise only the `OF` role's, when it is the principal or one of the
///   identity's roles (inherited ones included, as Cassandra counts granted roles).
///   Without `OF` (everyone's permissions) only a superuser. Grants and deny rules play no
///   part, as no permission does in Cassandra.
/// - LIST ROLES OF r, when r is the principal or one of the identity's roles: allowed, as
///   Cassandra's `ListRolesStatement` lets every role list the roles granted to itself and
///   to the roles it holds. Other LIST ROLES are decided by their DESCRIBE on all roles.
pub(crate) fn decided_by_caller(
    model: &Model,
    principal: &str,
    roles: &RoleSet,
    resolved: &Resolved,
    statement: &Statement<'_>,
) -> Option<Decision> {
    let own = |role: &str| {
        if role == principal {
            Some(format!("{role} is the identity's principal"))
        } else if roles.contains(role) {
            Some(format!("{role} is a role of the identity"))
        } else {
            None
        }
    };
    match (statement.kind, statement.role.as_deref()) {
        (Kind::ListPermissions, whose) => Some(match (resolved.superuser, whose) {
            (Some(r), _) => Decision::allow(rule_text(
                model,
                By::Superuser(r),
                Check::Permission(Permission::Describe),
                &Resource::AllRoles,
            )),
            (None, Some(role)) => match own(role) {
                Some(why) => Decision::allow(format!("own permissions: {why}")),
                None => Decision::deny(
                    format!("You are not authorized to view {role}'s permissions"),
                    format!(
                        "permissions of another role: {role} is neither the identity's \
                         principal nor one of its roles, and no role of the identity is a \
                         superuser"
                    ),
                ),
            },
            (None, None) => Decision::deny(
                "You are not authorized to view everyone's permissions".to_string(),
                "everyone's permissions: no role of the identity is a superuser".to_string(),
            ),
        }),
        (Kind::ListRoles, Some(role)) => {
            own(role).map(|why| Decision::allow(format!("own roles: {why}")))
        }
        _ => None,
    }
}

/// After the needs: statements Cassandra keeps for superusers, then guardrails.
pub(crate) fn statement_checks(
    model: &Model,
    principal: &str,
    roles: &Resolved,
    statement: &Statement<'_>,
) -> Option<Decision> {
    if statement.flags.contains(Flags::SUPERUSER_ONLY) && roles.superuser.is_none() {
        return Some(Decision::deny(
            format!(
                "Only superusers are allowed to perform {} queries",
                statement.operation.as_str().replace('_', " ")
            ),
            "superuser only: no role of the identity is a superuser".to_string(),
        ));
    }
    for g in Guardrail::ALL {
        let used = match g {
            Guardrail::AllowFiltering => statement.flags.contains(Flags::ALLOW_FILTERING),
            Guardrail::UnloggedBatch => statement.flags.contains(Flags::UNLOGGED_BATCH),
            Guardrail::Truncate => statement.kind == Kind::Truncate,
            Guardrail::Lwt => statement.flags.contains(Flags::CONDITIONAL),
        };
        if !used {
            continue;
        }
        if let Some(r) = roles.refusals[g.index()] {
            let role = model.roles.get(r as usize);
            let name = role.map_or("?", |r| r.name.as_str());
            let rule = role
                .and_then(|r| r.refuses[g.index()].as_deref())
                .unwrap_or("guardrail");
            return Some(Decision::deny(
                format!(
                    "User {principal} may not use {} (guardrail of role {name})",
                    g.feature()
                ),
                rule.to_string(),
            ));
        }
    }
    None
}

/// The denial for an unparsed statement.
pub(crate) fn unparsed(statement: &Statement<'_>) -> Decision {
    let why: Cow<'_, str> = match &statement.unparsed {
        Some(r) => Cow::Borrowed(r),
        None => Cow::Borrowed("it needs no permission"),
    };
    Decision::deny(
        format!("statement could not be parsed: {why}"),
        "unparsed statements are denied".to_string(),
    )
}

/// The denial of one need, worded as Cassandra words it for the statement: `User alice has
/// no MODIFY permission on <table demo.users> or any of its parents`, and for the LIST
/// statements that Cassandra words on their own, their sentence (`You are not authorized to
/// view roles granted to bob`, `You are not authorized to view superuser details`).
pub(crate) fn need_denied(
    model: &Model,
    principal: &str,
    statement: &Statement<'_>,
    need: &Need<'_>,
    check: Check,
    by: By,
) -> Decision {
    let reason = match (statement.kind, statement.role.as_deref()) {
        (Kind::ListRoles, Some(role)) => {
            format!("You are not authorized to view roles granted to {role}")
        }
        (Kind::ListSuperusers, _) => "You are not authorized to view superuser details".to_string(),
        _ => no_permission(principal, need),
    };
    Decision::deny(reason, rule_text(model, by, check, &need.resource))
}

/// An allowed decision citing the rules that allowed each need, each once, in order.
pub(crate) fn allowed(model: &Model, first: By, more: &[By]) -> Decision {
    // `Check` and resource matter only for the default denial, never for an allowance.
    let text = |by| rule_text(model, by, Check::DescribeAny, &Resource::AllKeyspaces);
    let mut rule = text(first);
    for (i, &by) in more.iter().enumerate() {
        if by != first && !more[..i].contains(&by) {
            rule.push_str("; ");
            rule.push_str(&text(by));
        }
    }
    Decision {
        allowed: true,
        reason: String::new(),
        rule,
    }
}
