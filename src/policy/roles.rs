//! Which roles an identity holds: bindings matched against the identity's principal,
//! groups, attributes and source, closed over inheritance. Computed once per connection.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::identity::Identity;

use super::bits::Bits;
use super::model::{Binding, Guardrail, Model};

/// The roles of one identity, sorted and deduplicated, inherited roles included.
///
/// Cheap to clone (one reference count). [`RoleSet::id`] is a hash of the role names, the
/// same for equal sets whatever policy produced them; decision caches key on it.
/// `Display` lists the names separated by `,` (nothing for an empty set).
#[derive(Clone)]
pub struct RoleSet(Arc<Inner>);

struct Inner {
    names: Vec<Box<str>>,
    id: u64,
    /// The policy generation `resolved` belongs to.
    generation: u64,
    resolved: Resolved,
}

/// A role set in terms of one policy's role indices.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    /// The indices of the members' rules, in file order: all a decision has to look at.
    pub rules: Vec<u32>,
    /// The first member (by name) that is a superuser.
    pub superuser: Option<u32>,
    /// Per [`Guardrail::index`]: the first member (by name) refusing the feature.
    pub refusals: [Option<u32>; 4],
}

impl RoleSet {
    /// A set of no roles (an identity no binding matched). Every decision for it is a
    /// denial, except the system tables every identity may read.
    pub fn empty() -> RoleSet {
        RoleSet::build(Vec::new(), 0, Resolved::default())
    }

    fn build(names: Vec<Box<str>>, generation: u64, resolved: Resolved) -> RoleSet {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        names.hash(&mut h);
        RoleSet(Arc::new(Inner {
            id: h.finish(),
            names,
            generation,
            resolved,
        }))
    }

    /// The role names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.names.iter().map(|n| &**n)
    }

    pub fn len(&self) -> usize {
        self.0.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.names.is_empty()
    }

    pub fn contains(&self, role: &str) -> bool {
        self.0.names.binary_search_by(|n| (**n).cmp(role)).is_ok()
    }

    /// A stable hash of the role names, for cache keys.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Whether both hold the same roles.
    pub fn same_roles(&self, other: &RoleSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0.id == other.0.id && self.0.names == other.0.names)
    }

    /// The set in `model`'s terms: precomputed when the set came from that policy
    /// (`generation`), resolved by name otherwise (a set kept across a reload).
    pub(crate) fn resolve<'s>(
        &'s self,
        model: &Model,
        generation: u64,
    ) -> std::borrow::Cow<'s, Resolved> {
        if self.0.generation == generation {
            return std::borrow::Cow::Borrowed(&self.0.resolved);
        }
        let mut members = Bits::default();
        for name in &self.0.names {
            if let Some(&i) = model.by_name.get(&**name) {
                members.insert(i);
            }
        }
        std::borrow::Cow::Owned(resolved(model, members))
    }
}

fn resolved(model: &Model, members: Bits) -> Resolved {
    let mut r = Resolved::default();
    for i in members.iter() {
        let Some(role) = model.roles.get(i as usize) else {
            continue;
        };
        if r.superuser.is_none() && role.superuser.is_some() {
            r.superuser = Some(i);
        }
        for g in Guardrail::ALL {
            if r.refusals[g.index()].is_none() && role.refuses[g.index()].is_some() {
                r.refusals[g.index()] = Some(i);
            }
        }
    }
    r.rules = model
        .rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| members.contains(rule.role))
        .map(|(i, _)| i as u32)
        .collect();
    r
}

impl PartialEq for RoleSet {
    fn eq(&self, other: &RoleSet) -> bool {
        self.same_roles(other)
    }
}

impl Eq for RoleSet {}

impl Hash for RoleSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl fmt::Display for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.names.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// The roles `model` binds to `identity`.
pub(crate) fn roles_for(model: &Model, generation: u64, identity: &Identity) -> RoleSet {
    let mut members = Bits::default();
    for b in &model.bindings {
        if binds(b, identity) {
            members.union_with(&b.roles);
        }
    }
    let names = members
        .iter()
        .filter_map(|i| model.roles.get(i as usize).map(|r| r.name.as_str().into()))
        .collect();
    let resolved = resolved(model, members);
    RoleSet::build(names, generation, resolved)
}

/// Whether every selector of the binding matches (within a selector, any entry).
fn binds(b: &Binding, id: &Identity) -> bool {
    if let Some(source) = b.source {
        if source != id.source {
            return false;
        }
    }
    if !b.principals.is_empty() && !b.principals.iter().any(|g| g.matches(&id.principal)) {
        return false;
    }
    if !b.groups.is_empty()
        && !b
            .groups
            .iter()
            .any(|g| id.groups.iter().any(|have| g.matches(have)))
    {
        return false;
    }
    b.attributes.iter().all(|(name, values)| {
        id.attributes
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && values.iter().any(|g| g.matches(v)))
    })
}
