//! The decision cache: per (policy generation, role set, check, resource), whether it is
//! allowed and which rule said so.
//!
//! The key holds hashes, not strings, so a lookup allocates nothing. The resource is
//! hashed once, with a fast multiply-rotate hash seeded at random per cache, and the key's
//! own hash is that value mixed with the rest (the map does not hash again). A hit is
//! verified against the stored resource and role set, so a collision is a miss, never a
//! wrong decision. A reloaded policy has a new generation and never meets the old
//! entries, which age out.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::classify::Resource;

use super::evaluate::{By, Check, Outcome};
use super::roles::RoleSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    generation: u64,
    roles: u64,
    check: u8,
    resource: u64,
    /// All of the above mixed: the map's hash.
    mixed: u64,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.mixed);
    }
}

/// The map's hasher: the key's `mixed` value as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in anyway.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A fast seeded hash of a resource's names, 8 bytes at a time.
struct Fast(u64);

impl Hasher for Fast {
    fn finish(&self) -> u64 {
        fmix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(w))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0 ^ u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(K).rotate_left(29);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(29);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_isize(&mut self, v: isize) {
        self.write_u64(v as u64);
    }
}

/// Murmur3's finaliser: every input bit reaches every output bit.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
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
    lru: Option<LruCache<Key, Entry, BuildHasherDefault<PassThrough>>>,
    seed: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl DecisionCache {
    /// A cache of up to `capacity` decisions; 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        DecisionCache {
            lru: NonZeroUsize::new(capacity)
                .map(|cap| LruCache::with_hasher(cap, BuildHasherDefault::default())),
            seed: RandomState::new().hash_one(0x5eed_u64),
            hits: 0,
            misses: 0,
            evictions: 0,
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

    /// Lookups, and decisions evicted to make room.
    pub fn stats(&self) -> crate::metrics::CacheStats {
        crate::metrics::CacheStats {
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
        }
    }

    /// Forgets every decision.
    pub fn clear(&mut self) {
        if let Some(l) = &mut self.lru {
            l.clear();
        }
    }

    fn key(&self, generation: u64, roles: &RoleSet, check: Check, resource: &Resource<'_>) -> Key {
        let mut h = Fast(self.seed);
        resource.hash(&mut h);
        let resource = h.finish();
        let roles = roles.id();
        let check = check.code();
        let mixed = fmix(
            resource
                ^ roles.rotate_left(17)
                ^ generation.wrapping_mul(K)
                ^ u64::from(check).rotate_left(47),
        );
        Key {
            generation,
            roles,
            check,
            resource,
            mixed,
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
            let evicted = lru.push(
                key,
                Entry {
                    roles: roles.clone(),
                    resource: resource.clone().into_owned(),
                    allowed: outcome.allowed,
                    by: outcome.by,
                },
            );
            if evicted.is_some_and(|(old, _)| old != key) {
                self.evictions += 1;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow::Borrowed as B;

    fn table(t: &'static str) -> Resource<'static> {
        Resource::Table {
            keyspace: B("demo"),
            table: B(t),
        }
    }

    const ALLOW: Outcome = Outcome {
        allowed: true,
        by: By::Default,
    };
    const DENY: Outcome = Outcome {
        allowed: false,
        by: By::Default,
    };

    #[test]
    fn a_colliding_entry_is_a_miss_not_a_decision() {
        let mut cache = DecisionCache::new(8);
        let roles = RoleSet::empty();
        let check = Check::Permission(crate::classify::Permission::Select);
        let (open, secret) = (table("open"), table("secret"));
        // Plant the entry for `open` under the key of `secret`, as a hash collision would.
        let key = cache.key(1, &roles, check, &secret);
        if let Some(lru) = &mut cache.lru {
            lru.put(
                key,
                Entry {
                    roles: roles.clone(),
                    resource: open.clone(),
                    allowed: true,
                    by: By::Default,
                },
            );
        }
        let mut computed = false;
        let out = cache.get_or_compute(1, &roles, check, &secret, || {
            computed = true;
            DENY
        });
        assert!(computed);
        assert_eq!(out, DENY);
        assert_eq!((cache.hits(), cache.misses()), (0, 1));
        // The real entry for `secret` replaced the planted one and now hits.
        let out = cache.get_or_compute(1, &roles, check, &secret, || ALLOW);
        assert_eq!(out, DENY);
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn keys_separate_generations_checks_and_resources() {
        let cache = DecisionCache::new(8);
        let roles = RoleSet::empty();
        let select = Check::Permission(crate::classify::Permission::Select);
        let modify = Check::Permission(crate::classify::Permission::Modify);
        let a = cache.key(1, &roles, select, &table("a"));
        assert_eq!(a, cache.key(1, &roles, select, &table("a")));
        assert_ne!(a, cache.key(2, &roles, select, &table("a")));
        assert_ne!(a, cache.key(1, &roles, modify, &table("a")));
        assert_ne!(a, cache.key(1, &roles, select, &table("b")));
        assert_ne!(a.mixed, cache.key(1, &roles, select, &table("b")).mixed);
    }
}
