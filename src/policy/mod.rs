//! What an identity may do: a role-based policy that mirrors Cassandra's permission model,
//! written in TOML. Plain Rust, no NGINX types.
//!
//! # API
//!
//! ```
//! use ngx_stream_cql_module::classify::classify;
//! use ngx_stream_cql_module::identity::{Identity, Source};
//! use ngx_stream_cql_module::policy::{DecisionCache, Policy};
//!
//! let policy = Policy::parse(r#"
//!     [roles.reader]
//!     grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
//!     [[bind]]
//!     role = "reader"
//!     groups = ["analysts"]
//! "#).unwrap();
//! let alice = Identity {
//!     principal: "alice".into(),
//!     groups: vec!["analysts".into()],
//!     attributes: vec![],
//!     expires_at: None,
//!     source: Source::Token,
//! };
//! let roles = policy.roles_for(&alice); // once per connection
//! assert_eq!(roles.to_string(), "reader");
//! let mut cache = DecisionCache::new(4096); // one per worker
//!
//! let st = classify("SELECT * FROM users WHERE id = 1", Some("demo"));
//! let d = policy.authorize("alice", &roles, &st, &mut cache);
//! assert!(d.allowed);
//! assert_eq!(d.rule, "role reader: grant SELECT on KEYSPACE demo (line 3)");
//!
//! let st = classify("DELETE FROM demo.users WHERE id = 1", None);
//! let d = policy.authorize("alice", &roles, &st, &mut cache);
//! assert!(!d.allowed);
//! assert_eq!(d.reason, "User alice has no MODIFY permission on <table demo.users> or any of its parents");
//! ```
//!
//! [`Policy::parse`] / [`Policy::load`] read a policy (errors name the line, and for a file
//! the file); [`Policy::roles_for`] gives an identity's [`RoleSet`]; [`Policy::authorize`]
//! decides one statement into a [`Decision`] (allowed, Cassandra-worded reason, the rule
//! that decided), through a [`DecisionCache`]. A BATCH's needs are the union of its
//! children's and its flags include theirs, so authorizing the batch decides all of it;
//! authorizing each child as well tells which child a denial concerns.
//! [`Policy::explain`] decides every need on its own, for tools.
//!
//! # The format
//!
//! ```toml
//! [roles.reader]
//! grant = [ { permissions = ["SELECT"], on = "KEYSPACE demo" } ]
//!
//! [roles.writer]
//! inherit = ["reader"]
//! grant = [ { permissions = ["MODIFY"], on = "TABLE demo.*" } ]
//! deny  = [ { permissions = ["MODIFY"], on = "TABLE demo.audit" } ]
//! guardrails = { allow_filtering = false, unlogged_batch = false, truncate = false }
//!
//! [roles.admin]
//! superuser = true
//!
//! [[bind]]
//! role = "writer"
//! groups = ["etl"]
//!
//! [[bind]]
//! role = "reader"
//! attributes = { uri = "spiffe://example.org/ns/etl/*" }
//! ```
//!
//! `[roles.NAME]` (names: letters, digits, `_`, `-`, `.`, `@`) may hold:
//! - `grant`, `deny`: lists of `{ permissions = [...], on = "RESOURCE" }`. `permissions`
//!   are Cassandra's names (`SELECT`, `MODIFY`, `CREATE`, `ALTER`, `DROP`, `AUTHORIZE`,
//!   `DESCRIBE`, `EXECUTE`, `UNMASK`, `SELECT_MASKED`, any case) or `ALL`, which means every
//!   permission that applies to the resource, as in `GRANT ALL`. `on` is one resource or a
//!   list of them. A permission that does not apply to the resource (CREATE on a TABLE:
//!   Cassandra asks CREATE on the keyspace) is an error, as in Cassandra's GRANT.
//! - `inherit`: roles whose rules, guardrails and superuser status this role also holds.
//! - `guardrails`: `allow_filtering`, `unlogged_batch`, `truncate`, `lwt` (conditional
//!   writes: `IF NOT EXISTS`, `IF EXISTS`, `IF cond`); `false` refuses the feature to
//!   every holder of the role, whatever their other roles (guardrails only restrict);
//!   `true`, the default, says nothing. Bounds on what requests ask:
//!   `read_consistency = ["LOCAL_ONE", "LOCAL_QUORUM"]` (SELECT) and `write_consistency`
//!   (INSERT, UPDATE, DELETE, BATCH), the levels allowed (Cassandra's names, any case);
//!   `max_page_size` (an unpaged SELECT is refused too), `max_batch_statements`,
//!   `max_batch_bytes`, `max_statement_bytes` (positive integers). With several roles,
//!   every role's bounds apply. [`Policy::guards`] gives an identity's bounds once per
//!   login; a refusal ([`GuardRefusal`]) reads as Cassandra's own guardrails do:
//!   `Guardrail max_page_size violated: page size 10000 is above the limit 5000 of role
//!   reader`, and names the rule (`role reader: guardrail max_page_size = 5000 (line 4)`).
//! - `upstream_login = "svc_shop_reader"`: the login the proxy uses toward Cassandra for
//!   holders of the role (its password comes from the server's credentials file, never
//!   from the policy; no `:` or control characters). An identity gets the login of the
//!   first role, in the file's order of `[roles.NAME]` tables, among its roles (inherited
//!   ones included) that names one ([`Policy::upstream_login`]); none: the server's
//!   service login.
//! - `superuser = true`: every permission on every resource, except what a deny rule of
//!   the identity's roles refuses, and the statements Cassandra keeps for superusers
//!   (triggers, `CREATE ROLE ... SUPERUSER = true`), which are denied to everyone else.
//! - `description`: free text.
//!
//! Resources are written as in Cassandra's GRANT: `ALL KEYSPACES`, `KEYSPACE ks`,
//! `TABLE ks.t`, `ALL FUNCTIONS`, `ALL FUNCTIONS IN KEYSPACE ks`, `FUNCTION ks.f` (every
//! overload) or `FUNCTION ks.f(int, text)` (one), `ALL ROLES`, `ROLE r`, `ALL MBEANS`,
//! `MBEAN 'name'`. Names follow CQL: unquoted ones fold to lower case, `"Quoted"` ones keep
//! it. `*` in a name matches any run of characters: `KEYSPACE tenant_*`,
//! `TABLE demo.audit_*`, `TABLE *.events`.
//!
//! `[[bind]]` gives `role` (or `roles = [...]`) to identities. Its selectors, each a
//! string or a list of patterns (`*` wildcard, case-sensitive):
//! - `principal` / `principals`: the identity's principal (`"alice"`, `"svc-*"`);
//! - `group` / `groups`: any of the identity's groups (token roles claim, certificate O/OU);
//! - `attributes = { name = "pattern", ... }`: the identity has an attribute of that name
//!   (case-insensitive) with a matching value (`uri`, `email`, `iss`, `dns`, ...);
//! - `source = "token"` or `"certificate"`.
//!
//! A binding applies when every selector it gives matches (and, within a list, any
//! entry); one with no selector is an error (`principal = "*"` binds everyone). An
//! identity's roles are the union of its bindings' roles and everything they inherit.
//!
//! Unknown fields, unknown permissions or roles, inheritance cycles and malformed
//! resources are errors with the line and column.
//!
//! # Decisions
//!
//! A statement is allowed when each of its needs (classifier: a permission on a resource)
//! is allowed, it is not superuser-only without a superuser role, and no guardrail of the
//! identity's roles refuses a feature it uses. Per need, over the identity's roles:
//! 1. The tables drivers read at connect time (`system.local`, `system.peers`,
//!    `system.peers_v2`, every table of `system_schema` and `system_virtual_schema`) are
//!    readable by every identity, and those keyspaces may be `USE`d and `DESCRIBE`d;
//!    no grant is needed and no deny rule applies (drivers cannot connect otherwise).
//! 2. A deny rule naming the permission on the resource or one of its parents denies,
//!    whatever any grant says (deny overrides allow).
//! 3. A grant of the permission on the resource or one of its parents allows. The
//!    hierarchy is Cassandra's: all keyspaces > keyspace > table; all functions >
//!    functions in a keyspace > function; all roles > role.
//! 4. A superuser role allows.
//! 5. Otherwise the need is denied (default deny).
//!
//! DESCRIBE needs on keyspaces, tables and functions (`DESCRIBE ...` statements) are met
//! by a grant of any permission on the resource or a parent; `USE ks` also by any grant
//! inside the keyspace (a table, a function), because drivers `USE` their keyspace before
//! their first query. A deny rule blocks them only if it names DESCRIBE (or ALL).
//! DESCRIBE on `ALL ROLES` (LIST ROLES, LIST USERS, LIST SUPERUSERS) is Cassandra's own
//! permission and needs its grant (or a superuser role).
//!
//! Two LIST statements are decided, as in Cassandra, from who the identity is rather than
//! from grants, before any rule (deny rules included):
//! - LIST PERMISSIONS (`CassandraAuthorizer.list`): allowed to an identity holding a
//!   superuser role; otherwise only with `OF r` where `r` is the identity's principal or one
//!   of its roles (inherited ones included). Denials read `You are not authorized to view
//!   bob's permissions` (`everyone's` without `OF`), also for an identity with DESCRIBE on
//!   all roles.
//! - LIST ROLES OF r, where `r` is the principal or one of its roles: allowed (Cassandra
//!   lets every role list the roles granted to itself and to its roles). Without `OF`,
//!   Cassandra shows a caller without DESCRIBE on all roles only its own roles; the proxy
//!   cannot narrow the answer, so that needs the grant. A denied `OF r` reads `You are not
//!   authorized to view roles granted to r`, LIST SUPERUSERS `You are not authorized to view
//!   superuser details`.
//!
//! Unparsed statements are denied. Denials read like Cassandra's: `User alice has no
//! MODIFY permission on <table demo.users> or any of its parents`, and the decision names
//! the rule (`role writer: deny MODIFY on TABLE demo.audit (line 8)`) for the audit log.
//!
//! # Cache
//!
//! Every loaded policy gets a new generation number. [`DecisionCache`] keys per-need
//! decisions by (generation, role set id, permission, hash of the resource), so a lookup
//! allocates nothing, a hit is verified against the stored resource, and a reloaded
//! policy never sees the old policy's decisions.

mod bits;
mod cache;
mod error;
mod evaluate;
mod format;
mod glob;
mod guard;
mod model;
mod resource;
mod roles;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::classify::Statement;
use crate::identity::Identity;

pub use cache::DecisionCache;
pub use error::PolicyError;
pub use evaluate::Decision;
pub use guard::{GuardRefusal, Guards};
pub use roles::RoleSet;

use evaluate::{By, Check, Outcome};
use model::{Model, Role};

/// Generation numbers of loaded policies; 0 is never given (an empty [`RoleSet`] has it).
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A loaded policy. Immutable; a reload builds a new one (with a new generation).
#[derive(Debug)]
pub struct Policy {
    generation: u64,
    model: Model,
}

/// One need decided on its own, for tools ([`Policy::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedExplanation {
    /// `MODIFY <table demo.users>`
    pub need: String,
    pub allowed: bool,
    /// The rule that decided it.
    pub rule: String,
}

/// Every need of a statement decided on its own, and the statement's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub needs: Vec<NeedExplanation>,
    pub decision: Decision,
}

impl Policy {
    /// Parses a policy text. Errors carry the 1-based line and column and the reason.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let model = Model::compile(text)?;
        Ok(Policy {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            model,
        })
    }

    /// Reads and parses a file. Errors read `"/etc/nginx/cql/policy.toml", line 12: unknown
    /// permission "SELEC"` or `cannot read policy "/path": No such file or directory`.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut why = e.to_string();
            if let Some(i) = why.find(" (os error") {
                why.truncate(i);
            }
            format!("cannot read policy \"{}\": {why}", path.display())
        })?;
        Policy::parse(&text)
            .map_err(|e| format!("\"{}\", line {}: {}", path.display(), e.line, e.message))
    }

    /// This policy's generation: unique among the policies of this process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The names of the roles the policy defines, sorted.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.model.roles.iter().map(|r| r.name.as_str())
    }

    /// The members of `roles` in the order the policy file defines them (`[roles.NAME]`
    /// tables), as `$cql_roles` lists them. Names this policy does not define (a set kept
    /// across a reload) are left out.
    pub fn roles_in_policy_order<'a>(
        &'a self,
        roles: &'a RoleSet,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.in_policy_order(roles).map(|r| r.name.as_str())
    }

    fn in_policy_order<'a>(&'a self, roles: &'a RoleSet) -> impl Iterator<Item = &'a Role> + 'a {
        self.model
            .file_order
            .iter()
            .filter_map(|&i| self.model.roles.get(i as usize))
            .filter(move |r| roles.contains(&r.name))
    }

    /// The request bounds of an identity holding `roles` (consistency levels, page size,
    /// batch and statement sizes): every bound of every role, in policy order. Empty when
    /// no role sets one. Computed once per login.
    pub fn guards(&self, roles: &RoleSet) -> Guards {
        Guards::new(
            self.in_policy_order(roles)
                .filter(|r| !r.guards.is_empty())
                .map(|r| r.guards.clone())
                .collect(),
        )
    }

    /// Every guardrail of the roles in `roles` as its rule text, by role in policy order:
    /// the refused features (`role strict: guardrail lwt = false (line 4)`), then the
    /// request bounds (`role reader: guardrail max_page_size = 5000 (line 5)`). For tools.
    pub fn guardrail_rules(&self, roles: &RoleSet) -> Vec<String> {
        let mut out = Vec::new();
        for role in self.in_policy_order(roles) {
            out.extend(role.refuses.iter().flatten().map(|r| r.to_string()));
            out.extend(role.guards.rules().map(str::to_string));
        }
        out
    }

    /// The login the proxy uses toward Cassandra for an identity holding `roles`. Of the
    /// identity's roles (held directly or by inheritance) that name an `upstream_login`,
    /// one that another of them inherits gives way to it (a `migrate` role that inherits
    /// `read` logs in as `migrate`); of those left, the first in the policy file's order
    /// wins. `None`: the server's service login.
    pub fn upstream_login(&self, roles: &RoleSet) -> Option<&str> {
        self.upstream_login_of(roles).map(|(_, login)| login)
    }

    /// [`Policy::upstream_login`], with the role that names it.
    pub fn upstream_login_of(&self, roles: &RoleSet) -> Option<(&str, &str)> {
        let candidates: Vec<(u32, &Role)> = self
            .model
            .file_order
            .iter()
            .filter_map(|&i| Some((i, self.model.roles.get(i as usize)?)))
            .filter(|(_, r)| roles.contains(&r.name) && r.upstream_login.is_some())
            .collect();
        candidates
            .iter()
            .find(|(i, _)| {
                !candidates
                    .iter()
                    .any(|(j, other)| j != i && other.closure.contains(*i))
            })
            .and_then(|(_, r)| Some((r.name.as_str(), r.upstream_login.as_deref()?)))
    }

    /// Every role that names an `upstream_login`, with it, in the policy file's order: the
    /// logins a credentials file must hold.
    pub fn upstream_logins(&self) -> impl Iterator<Item = (&str, &str)> {
        self.model.file_order.iter().filter_map(|&i| {
            let role = self.model.roles.get(i as usize)?;
            Some((role.name.as_str(), role.upstream_login.as_deref()?))
        })
    }

    /// The roles bound to an identity (sorted, deduplicated, inherited ones included).
    /// Computed once per connection.
    pub fn roles_for(&self, identity: &Identity) -> RoleSet {
        roles::roles_for(&self.model, self.generation, identity)
    }

    /// Decides one statement (a BATCH as a whole: its needs and flags cover its
    /// children). `principal` only words the denial. Allocates nothing on a cached
    /// allowance but the decision's rule text.
    pub fn authorize(
        &self,
        principal: &str,
        roles: &RoleSet,
        statement: &Statement<'_>,
        cache: &mut DecisionCache,
    ) -> Decision {
        self.decide(principal, roles, statement, cache, true)
    }

    /// [`Policy::authorize`] for a caller that does not record which rule allowed a
    /// statement (no audit log): an allowance has an empty `rule`, and a cached one
    /// allocates nothing. Denials are worded in full.
    pub fn authorize_quietly(
        &self,
        principal: &str,
        roles: &RoleSet,
        statement: &Statement<'_>,
        cache: &mut DecisionCache,
    ) -> Decision {
        self.decide(principal, roles, statement, cache, false)
    }

    fn decide(
        &self,
        principal: &str,
        roles: &RoleSet,
        statement: &Statement<'_>,
        cache: &mut DecisionCache,
        rule: bool,
    ) -> Decision {
        if statement.is_unparsed() || statement.needs.is_empty() {
            return evaluate::unparsed(statement);
        }
        let resolved = roles.resolve(&self.model, self.generation);
        if let Some(d) =
            evaluate::decided_by_caller(&self.model, principal, roles, &resolved, statement)
        {
            return d;
        }
        let mut first = None;
        let mut more = Vec::new();
        for need in &statement.needs {
            let check = Check::for_need(statement.kind, need);
            let outcome = match evaluate::baseline(check, &need.resource) {
                Some(by) => Outcome { allowed: true, by },
                None => cache.get_or_compute(self.generation, roles, check, &need.resource, || {
                    evaluate::decide(&self.model, &resolved, check, &need.resource)
                }),
            };
            if !outcome.allowed {
                return evaluate::need_denied(
                    &self.model,
                    principal,
                    statement,
                    need,
                    check,
                    outcome.by,
                );
            }
            if first.is_none() {
                first = Some(outcome.by);
            } else {
                more.push(outcome.by);
            }
        }
        if let Some(denied) =
            evaluate::statement_checks(&self.model, principal, &resolved, statement)
        {
            return denied;
        }
        if !rule {
            return Decision {
                allowed: true,
                reason: String::new(),
                rule: String::new(),
            };
        }
        evaluate::allowed(&self.model, first.unwrap_or(By::Default), &more)
    }

    /// Decides every need of a statement on its own (without a cache), and the statement.
    pub fn explain(
        &self,
        principal: &str,
        roles: &RoleSet,
        statement: &Statement<'_>,
    ) -> Explanation {
        let resolved = roles.resolve(&self.model, self.generation);
        if let Some(decision) =
            evaluate::decided_by_caller(&self.model, principal, roles, &resolved, statement)
        {
            let needs = statement
                .needs
                .iter()
                .map(|need| NeedExplanation {
                    need: need.to_string(),
                    allowed: decision.allowed,
                    rule: decision.rule.clone(),
                })
                .collect();
            return Explanation { needs, decision };
        }
        let needs = statement
            .needs
            .iter()
            .map(|need| {
                let check = Check::for_need(statement.kind, need);
                let outcome = match evaluate::baseline(check, &need.resource) {
                    Some(by) => Outcome { allowed: true, by },
                    None => evaluate::decide(&self.model, &resolved, check, &need.resource),
                };
                NeedExplanation {
                    need: need.to_string(),
                    allowed: outcome.allowed,
                    rule: evaluate::rule_text(&self.model, outcome.by, check, &need.resource),
                }
            })
            .collect();
        let decision = self.authorize(principal, roles, statement, &mut DecisionCache::new(0));
        Explanation { needs, decision }
    }
}
