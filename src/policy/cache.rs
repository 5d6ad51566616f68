//! The decision cache: per (policy generation, role set, check, resource), whether it is
//! allowed and which rule said so.
//!
//! The key holds hashes, not strings, so a lookup allocates nothing: the resource is
//! hashed with a per-cache random key (std's `RandomState`), so nobody can aim a table
//! name at another's entry. A hit is still verified against the stored resource and role
//! set, so a hash collision is a miss, never a wrong decision. A reloaded policy has a new
//! generation and never meets the old entries, which age out.

use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::classify::Resource;

use super::evaluate::{By, Check, Outcome};
use super::roles::RoleSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    roles: u64,
    check: u8,
    resource: u64,
}

struct Entry {
    roles: RoleSet,
    resource: Resource<'static>,
    allowed: bool,
    by: By,
}

/// A least-recently-used cache of per-need decisions. One per worker (or connection);
/// not shared between threads.
pub struct DecisionCache {
    lru: Option<LruCache<Key, Entry>>,
    hasher: RandomState,
    hits: u64,
    misses: u64,
}

impl DecisionCache {
    /// A cache of up to `capacity` decisions; 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        DecisionCache {
            lru: NonZeroUsize::new(capacity).map(LruCache::new),
            hasher: RandomState::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The number of cached decisions.
    pub fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, LruCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.cap().get())
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that had to evaluate the policy.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Forgets every decision.
    pub fn clear(&mut self) {
        if let Some(l) = &mut self.lru {
            l.clear();
        }
    }

    fn key(&self, generation: u64, roles: &RoleSet, check: Check, resource: &Resource<'_>) -> Key {
        Key {
            generation,
            roles: roles.id(),
            check: check.code(),
            resource: self.hasher.hash_one(resource),
        }
    }

    /// The cached decision, or `compute()`'s, stored for next time.
    pub(crate) fn get_or_compute(
        &mut self,
        generation: u64,
        roles: &RoleSet,
        check: Check,
        resource: &Resource<'_>,
        compute: impl FnOnce() -> Outcome,
    ) -> Outcome {
        if self.lru.is_none() {
            return compute();
        }
        let key = self.key(generation, roles, check, resource);
        if let Some(lru) = &mut self.lru {
            if let Some(e) = lru.get(&key) {
                if e.resource == *resource && e.roles.same_roles(roles) {
                    self.hits += 1;
                    return Outcome {
                        allowed: e.allowed,
                        by: e.by,
                    };
                }
            }
        }
        self.misses += 1;
        let outcome = compute();
        if let Some(lru) = &mut self.lru {
            lru.put(
                key,
                Entry {
                    roles: roles.clone(),
                    resource: resource.clone().into_owned(),
                    allowed: outcome.allowed,
                    by: outcome.by,
                },
            );
        }
        outcome
    }
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}
