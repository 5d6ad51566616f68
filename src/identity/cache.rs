//! Validated tokens, remembered until they expire, so that a reconnect storm of clients with
//! the same token costs a hash and a lookup rather than a signature check each.

use std::num::NonZeroUsize;

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::{Identity, JwtValidator, TokenError};

/// An identity and the configuration generation that validated it.
struct Entry {
    generation: u64,
    identity: Identity,
}

/// A bounded LRU of SHA-256(token) to identity. Keys are digests, so the cache holds no
/// token. Only successes are cached: a refused token is checked again each time.
pub struct TokenCache {
    /// `None` when the capacity is 0: caching is off.
    entries: Option<LruCache<[u8; 32], Entry>>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 turns caching off).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: NonZeroUsize::new(capacity).map(LruCache::new),
        }
    }

    /// Validated tokens are cached until they expire, so a reconnect storm costs a lookup,
    /// not a signature check. `generation` changes when the configuration is reloaded (keys
    /// may have rotated): entries of another generation are not used.
    pub fn validate(
        &mut self,
        validator: &JwtValidator,
        generation: u64,
        token: &str,
        now: u64,
    ) -> Result<Identity, TokenError> {
        let Some(entries) = &mut self.entries else {
            return validator.validate(token, now);
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(e) = entries.get(&key) {
            if e.generation == generation && !validator.expired(&e.identity, now) {
                return Ok(e.identity.clone());
            }
            entries.pop(&key);
        }
        let identity = validator.validate(token, now)?;
        entries.put(
            key,
            Entry {
                generation,
                identity: identity.clone(),
            },
        );
        Ok(identity)
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    /// True when no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
