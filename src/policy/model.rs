//! The compiled policy: roles with their inheritance closures, guardrails and superuser
//! status, a flat list of grant and deny rules, and the bindings. Built once from the
//! parsed [`Document`], checked on the way (unknown permissions and roles, inapplicable
//! permissions, inheritance cycles), then never changed.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use crate::classify::{Permission, PermissionSet};
use crate::identity::Source;

use super::bits::Bits;
use super::error::{line_of, PolicyError};
use super::format::{
    entries, nonempty_entries, BindSpec, Document, GuardrailSpec, Names, RoleSpec, RuleSpec,
};
use super::glob::Glob;
use super::guard::RoleGuards;
use super::resource::Pattern;

/// A feature a role can refuse with `guardrails = { ... = false }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guardrail {
    /// `SELECT ... ALLOW FILTERING` (classifier flag ALLOW_FILTERING).
    AllowFiltering,
    /// `BEGIN UNLOGGED BATCH` (flag UNLOGGED_BATCH).
    UnloggedBatch,
    /// `TRUNCATE` (kind Truncate).
    Truncate,
    /// Lightweight transactions: `IF NOT EXISTS`, `IF EXISTS`, `IF cond` on writes, or a
    /// batch holding one (flag CONDITIONAL).
    Lwt,
}

impl Guardrail {
    pub const ALL: [Guardrail; 4] = [
        Guardrail::AllowFiltering,
        Guardrail::UnloggedBatch,
        Guardrail::Truncate,
        Guardrail::Lwt,
    ];

    /// The key in `guardrails = { ... }`.
    pub fn key(self) -> &'static str {
        match self {
            Guardrail::AllowFiltering => "allow_filtering",
            Guardrail::UnloggedBatch => "unlogged_batch",
            Guardrail::Truncate => "truncate",
            Guardrail::Lwt => "lwt",
        }
    }

    /// The feature as a denial names it: "may not use ALLOW FILTERING".
    pub fn feature(self) -> &'static str {
        match self {
            Guardrail::AllowFiltering => "ALLOW FILTERING",
            Guardrail::UnloggedBatch => "UNLOGGED BATCH",
            Guardrail::Truncate => "TRUNCATE",
            Guardrail::Lwt => "lightweight transactions (IF ...)",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One role.
#[derive(Debug)]
pub struct Role {
    pub name: String,
    /// This role and every role it inherits, directly or not.
    pub closure: Bits,
    /// Per [`Guardrail::index`]: the rule text when this role refuses the feature.
    pub refuses: [Option<Box<str>>; 4],
    /// The rule text when the role is a superuser.
    pub superuser: Option<Box<str>>,
    /// The request bounds this role sets itself (consistency levels, page and batch sizes).
    pub guards: Arc<RoleGuards>,
    /// The login toward Cassandra for holders of this role.
    pub upstream_login: Option<Box<str>>,
}

/// One grant or deny rule of one role on one resource pattern.
#[derive(Debug)]
pub struct Rule {
    pub role: u32,
    pub deny: bool,
    pub permissions: PermissionSet,
    pub pattern: Pattern,
    /// `role writer: deny MODIFY on TABLE demo.audit (line 8)`: the text decisions cite.
    pub text: Box<str>,
}

/// One `[[bind]]`: when every selector given matches an identity, it gets `roles`.
#[derive(Debug)]
pub struct Binding {
    /// The bound roles with everything they inherit.
    pub roles: Bits,
    pub principals: Vec<Glob>,
    pub groups: Vec<Glob>,
    /// Attribute name (compared case-insensitively) and the values that match.
    pub attributes: Vec<(String, Vec<Glob>)>,
    pub source: Option<Source>,
}

/// The compiled policy.
#[derive(Debug, Default)]
pub struct Model {
    /// Sorted by name; a role's index is its position.
    pub roles: Vec<Role>,
    pub by_name: HashMap<String, u32>,
    /// Role indices in the order their `[roles.NAME]` tables appear in the file.
    pub file_order: Vec<u32>,
    /// In file order: roles by name, then per role its grants and its denies.
    pub rules: Vec<Rule>,
    pub bindings: Vec<Binding>,
}

/// Role names may hold letters, digits, `_`, `-`, `.` and `@` (they appear in rule texts,
/// audit lines and comma-separated role lists).
fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

impl Model {
    /// Parses and checks a policy text.
    pub fn compile(text: &str) -> Result<Model, PolicyError> {
        let doc: Document = toml::from_str(text).map_err(|e| PolicyError::from_toml(text, &e))?;
        let err = |span: Range<usize>, msg: String| PolicyError::at(text, span, msg);

        let mut model = Model::default();
        for (i, name) in doc.roles.keys().enumerate() {
            if !valid_role_name(name.get_ref()) {
                return Err(err(
                    name.span(),
                    format!(
                        "role name {:?} may hold only letters, digits, '_', '-', '.' and '@'",
                        name.get_ref()
                    ),
                ));
            }
            let index = u32::try_from(i).map_err(|_| err(name.span(), "too many roles".into()))?;
            model.by_name.insert(name.get_ref().clone(), index);
        }

        // The document's map sorts roles by name; the file's order is their keys' order.
        let mut starts: Vec<(usize, u32)> = Vec::with_capacity(doc.roles.len());
        for (i, name) in doc.roles.keys().enumerate() {
            starts.push((name.span().start, i as u32));
        }
        starts.sort_unstable();
        model.file_order = starts.into_iter().map(|(_, i)| i).collect();

        let inherits = model.inheritance(text, &doc)?;
        for (i, (name, spec)) in doc.roles.iter().enumerate() {
            let role = model.role(text, i as u32, name.get_ref(), spec.get_ref(), &inherits)?;
            model.roles.push(role);
        }
        for (i, (name, spec)) in doc.roles.iter().enumerate() {
            let spec = spec.get_ref();
            for (rules, deny) in [(&spec.grant, false), (&spec.deny, true)] {
                for rule in rules {
                    model.add_rules(text, i as u32, name.get_ref(), rule, deny)?;
                }
            }
        }
        for bind in &doc.bind {
            let binding = model.binding(text, bind)?;
            model.bindings.push(binding);
        }
        Ok(model)
    }

    fn role_index(
        &self,
        text: &str,
        name: &str,
        span: Range<usize>,
        context: &str,
    ) -> Result<u32, PolicyError> {
        self.by_name.get(name).copied().ok_or_else(|| {
            PolicyError::at(text, span, format!("unknown role {name:?} in {context}"))
        })
    }

    /// Each role's direct parents, checked for unknown names and cycles.
    fn inheritance(&self, text: &str, doc: &Document) -> Result<Vec<Vec<u32>>, PolicyError> {
        let mut parents: Vec<Vec<u32>> = Vec::with_capacity(doc.roles.len());
        let mut spans: Vec<Vec<Range<usize>>> = Vec::with_capacity(doc.roles.len());
        for spec in doc.roles.values() {
            let mut ps = Vec::new();
            let mut ss = Vec::new();
            if let Some(inherit) = &spec.get_ref().inherit {
                for (name, span) in entries(inherit) {
                    ps.push(self.role_index(text, name, span.clone(), "inherit")?);
                    ss.push(span);
                }
            }
            parents.push(ps);
            spans.push(ss);
        }
        // Kahn's algorithm: roles left over sit on or behind a cycle.
        let n = parents.len();
        let mut pending: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (child, ps) in parents.iter().enumerate() {
            for &p in ps {
                if let Some(c) = children.get_mut(p as usize) {
                    c.push(child);
                }
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&r| pending[r] == 0).collect();
        let mut done = vec![false; n];
        while let Some(r) = ready.pop() {
            done[r] = true;
            for &c in &children[r] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.push(c);
                }
            }
        }
        if let Some(start) = (0..n).find(|&r| !done[r]) {
            // Walk undone parents until a role repeats: that is a cycle.
            let mut path = vec![start];
            let mut via: Vec<Range<usize>> = Vec::new();
            let mut cur = start;
            // Every undone role has an undone parent, so the walk ends at a repeat.
            while let Some(k) = parents[cur].iter().position(|&p| !done[p as usize]) {
                let next = parents[cur][k] as usize;
                via.push(spans[cur][k].clone());
                if let Some(at) = path.iter().position(|&r| r == next) {
                    let all: Vec<&str> = doc.roles.keys().map(|k| k.get_ref().as_str()).collect();
                    let names: Vec<&str> = path[at..]
                        .iter()
                        .chain(std::iter::once(&next))
                        .map(|&r| all.get(r).copied().unwrap_or("?"))
                        .collect();
                    let span = via.get(at).cloned().unwrap_or(0..0);
                    return Err(PolicyError::at(
                        text,
                        span,
                        format!("inheritance cycle: {}", names.join(" -> ")),
                    ));
                }
                path.push(next);
                cur = next;
            }
            return Err(PolicyError::at(text, 0..0, "inheritance cycle"));
        }
        Ok(parents)
    }

    fn role(
        &self,
        text: &str,
        index: u32,
        name: &str,
        spec: &RoleSpec,
        parents: &[Vec<u32>],
    ) -> Result<Role, PolicyError> {
        // The closure, by walking parents (the graph is acyclic here).
        let mut closure = Bits::default();
        let mut stack = vec![index];
        while let Some(r) = stack.pop() {
            if closure.contains(r) {
                continue;
            }
            closure.insert(r);
            if let Some(ps) = parents.get(r as usize) {
                stack.extend(ps.iter().copied());
            }
        }
        let mut refuses: [Option<Box<str>>; 4] = Default::default();
        let g = spec.guardrails.as_ref();
        let empty = GuardrailSpec::default();
        let g = g.unwrap_or(&empty);
        for (guardrail, setting) in [
            (Guardrail::AllowFiltering, &g.allow_filtering),
            (Guardrail::UnloggedBatch, &g.unlogged_batch),
            (Guardrail::Truncate, &g.truncate),
            (Guardrail::Lwt, &g.lwt),
        ] {
            if let Some(s) = setting {
                if !*s.get_ref() {
                    refuses[guardrail.index()] = Some(
                        format!(
                            "role {name}: guardrail {} = false (line {})",
                            guardrail.key(),
                            line_of(text, s.span().start)
                        )
                        .into(),
                    );
                }
            }
        }
        let guards = Arc::new(RoleGuards::compile(text, name, g)?);
        let upstream_login = match &spec.upstream_login {
            None => None,
            Some(login) => {
                let l = login.get_ref();
                if l.is_empty() {
                    return Err(PolicyError::at(
                        text,
                        login.span(),
                        "upstream_login is empty: name a Cassandra login",
                    ));
                }
                if l.chars().any(|c| c == ':' || c.is_control()) {
                    return Err(PolicyError::at(
                        text,
                        login.span(),
                        format!("upstream_login {l:?} may not hold ':' or control characters"),
                    ));
                }
                Some(l.as_str().into())
            }
        };
        let superuser = spec.superuser.as_ref().filter(|s| *s.get_ref()).map(|s| {
            format!(
                "role {name}: superuser (line {})",
                line_of(text, s.span().start)
            )
            .into()
        });
        Ok(Role {
            name: name.to_string(),
            closure,
            refuses,
            superuser,
            guards,
            upstream_login,
        })
    }

    fn add_rules(
        &mut self,
        text: &str,
        role: u32,
        role_name: &str,
        rule: &Spanned<RuleSpec>,
        deny: bool,
    ) -> Result<(), PolicyError> {
        let spec = rule.get_ref();
        let perms = nonempty_entries(
            text,
            &spec.permissions,
            "no permissions: name at least one (SELECT, MODIFY, ..., or ALL)",
        )?;
        let ons = nonempty_entries(
            text,
            &spec.on,
            "no resource: name at least one (KEYSPACE ks, TABLE ks.t, ...)",
        )?;
        for (on, on_span) in ons {
            let pattern =
                Pattern::parse(on).map_err(|m| PolicyError::at(text, on_span.clone(), m))?;
            let applicable = pattern.applicable();
            let mut permissions = PermissionSet::EMPTY;
            let mut all = false;
            for (name, span) in &perms {
                let upper = name.trim().to_ascii_uppercase();
                if upper == "ALL" || upper == "ALL PERMISSIONS" {
                    all = true;
                    for p in applicable.iter() {
                        permissions.insert(p);
                    }
                    continue;
                }
                let p = Permission::from_name(name.trim()).ok_or_else(|| {
                    PolicyError::at(text, span.clone(), format!("unknown permission {name:?}"))
                })?;
                if !applicable.contains(p) {
                    let can: Vec<&str> = applicable.iter().map(Permission::as_str).collect();
                    return Err(PolicyError::at(
                        text,
                        span.clone(),
                        format!(
                            "permission {p} does not apply to {pattern} (applicable: {})",
                            can.join(", ")
                        ),
                    ));
                }
                permissions.insert(p);
            }
            let shown = if all {
                "ALL".to_string()
            } else {
                permissions
                    .iter()
                    .map(Permission::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let text_of_rule = format!(
                "role {role_name}: {} {shown} on {pattern} (line {})",
                if deny { "deny" } else { "grant" },
                line_of(text, on_span.start)
            );
            self.rules.push(Rule {
                role,
                deny,
                permissions,
                pattern,
                text: text_of_rule.into(),
            });
        }
        Ok(())
    }

    fn binding(&self, text: &str, bind: &Spanned<BindSpec>) -> Result<Binding, PolicyError> {
        let spec = bind.get_ref();
        let at = |span: Range<usize>, msg: String| PolicyError::at(text, span, msg);
        let Some(role_names) = &spec.role else {
            return Err(at(
                bind.span(),
                "bind needs role = \"name\" (or roles = [...])".into(),
            ));
        };
        let mut roles = Bits::default();
        let names = nonempty_entries(text, role_names, "bind names no role")?;
        for (name, span) in names {
            let i = self.role_index(text, name, span, "bind")?;
            if let Some(role) = self.roles.get(i as usize) {
                roles.union_with(&role.closure);
            }
        }
        let globs =
            |names: Option<&Spanned<Names>>, what: &str| -> Result<Vec<Glob>, PolicyError> {
                let Some(names) = names else {
                    return Ok(Vec::new());
                };
                let list = nonempty_entries(text, names, format!("empty {what} list"))?;
                list.into_iter()
                    .map(|(s, span)| {
                        if s.is_empty() {
                            Err(at(span, format!("empty {what}")))
                        } else {
                            Ok(Glob::new(s))
                        }
                    })
                    .collect()
            };
        let principals = globs(spec.principal.as_ref(), "principal")?;
        let groups = globs(spec.group.as_ref(), "group")?;
        let mut attributes = Vec::new();
        if let Some(attrs) = &spec.attributes {
            for (name, values) in attrs {
                if name.is_empty() {
                    return Err(at(values.span(), "empty attribute name".into()));
                }
                attributes.push((name.clone(), globs(Some(values), "attribute value")?));
            }
        }
        let source = match &spec.source {
            None => None,
            Some(s) => match s.get_ref().to_ascii_lowercase().as_str() {
                "token" | "jwt" => Some(Source::Token),
                "certificate" | "cert" | "mtls" => Some(Source::Certificate),
                other => {
                    return Err(at(
                        s.span(),
                        format!("unknown source {other:?}: expected \"token\" or \"certificate\""),
                    ))
                }
            },
        };
        if principals.is_empty() && groups.is_empty() && attributes.is_empty() && source.is_none() {
            return Err(at(
                bind.span(),
                "bind matches nobody: give principal, group, attributes or source \
                 (principal = \"*\" binds every identity)"
                    .into(),
            ));
        }
        Ok(Binding {
            roles,
            principals,
            groups,
            attributes,
            source,
        })
    }
}
