//! Validated tokens, remembered until they expire, so that a reconnect storm of clients with
//! the same token costs a hash and a lookup rather than a signature check each; and refused
//! tokens, remembered for [`REFUSAL_TTL`], so that a client repeating a forged token does not
//! make the worker check a signature each time either.

use std::num::NonZeroUsize;

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::{Identity, JwtValidator, TokenError};

/// How long (seconds) a refused token is answered from the cache with the same error. Short,
/// so that the reason a client sees is never stale for long (a token refused as being of the
/// wrong issuer is, a minute later, also expired); long enough that repeating a token costs
/// one signature check a minute rather than one per attempt.
pub const REFUSAL_TTL: u64 = 60;

/// The fewest refusals remembered when caching is on, however small the capacity.
const MIN_REFUSALS: usize = 16;

/// SHA-256 of a token: the cache holds digests, never a token.
type Key = [u8; 32];

/// An identity and the configuration generation that validated it.
struct Entry {
    generation: u64,
    identity: Identity,
}

/// Why a token was refused, by which configuration generation, and when.
struct Refusal {
    generation: u64,
    /// Unix seconds of the check.
    at: u64,
    error: TokenError,
}

impl Refusal {
    /// True while the refusal may answer for `generation` at `now`. A clock that went back
    /// makes it stale rather than longer-lived.
    fn holds(&self, generation: u64, now: u64) -> bool {
        self.generation == generation && now >= self.at && now - self.at < REFUSAL_TTL
    }
}

/// Two bounded LRUs keyed by SHA-256(token): validated tokens, and refused ones.
///
/// Refusals have an LRU of their own, a quarter of the capacity (at least [`MIN_REFUSALS`]):
/// forged tokens cost their sender nothing to make, so a client flooding distinct ones only
/// pushes out other refusals, never the identities of good clients. (Distinct tokens each
/// cost a check whatever the cache does; what the refusals save is the repeats.)
struct Lrus {
    validated: LruCache<Key, Entry>,
    refused: LruCache<Key, Refusal>,
}

/// Validated and refused tokens, bounded in entries (see [`TokenCache::new`]).
pub struct TokenCache {
    /// `None` when the capacity is 0: caching is off.
    lrus: Option<Lrus>,
    stats: crate::metrics::CacheStats,
}

impl TokenCache {
    /// A cache of at most `capacity` validated tokens and `capacity / 4` refused ones (at
    /// least 16); 0 turns caching off, of refusals too.
    pub fn new(capacity: usize) -> Self {
        let lrus = NonZeroUsize::new(capacity).map(|validated| {
            let refused =
                NonZeroUsize::new((capacity / 4).max(MIN_REFUSALS)).unwrap_or(NonZeroUsize::MIN);
            Lrus {
                validated: LruCache::new(validated),
                refused: LruCache::new(refused),
            }
        });
        TokenCache {
            lrus,
            stats: crate::metrics::CacheStats::default(),
        }
    }

    /// Validated tokens are cached until they expire, so a reconnect storm costs a lookup,
    /// not a signature check. Refused tokens are answered with the same error for
    /// [`REFUSAL_TTL`] seconds, except that a token not yet valid is checked again each time.
    /// `generation` changes when the configuration is reloaded (keys may have rotated, issuers
    /// and audiences changed): entries of another generation are not used.
    pub fn validate(
        &mut self,
        validator: &JwtValidator,
        generation: u64,
        token: &str,
        now: u64,
    ) -> Result<Identity, TokenError> {
        let Some(lrus) = &mut self.lrus else {
            return validator.validate(token, now);
        };
        let stats = &mut self.stats;
        let key: Key = Sha256::digest(token.as_bytes()).into();
        if let Some(e) = lrus.validated.get(&key) {
            if e.generation == generation && !validator.expired(&e.identity, now) {
                stats.hits += 1;
                return Ok(e.identity.clone());
            }
            lrus.validated.pop(&key);
        }
        if let Some(r) = lrus.refused.get(&key) {
            if r.holds(generation, now) {
                stats.hits += 1;
                return Err(r.error.clone());
            }
            lrus.refused.pop(&key);
        }
        stats.misses += 1;
        match validator.validate(token, now) {
            Ok(identity) => {
                let entry = Entry {
                    generation,
                    identity: identity.clone(),
                };
                if lrus
                    .validated
                    .push(key, entry)
                    .is_some_and(|(k, _)| k != key)
                {
                    stats.evictions += 1;
                }
                Ok(identity)
            }
            Err(error) => {
                if remembered(&error) {
                    let refusal = Refusal {
                        generation,
                        at: now,
                        error: error.clone(),
                    };
                    if lrus
                        .refused
                        .push(key, refusal)
                        .is_some_and(|(k, _)| k != key)
                    {
                        stats.evictions += 1;
                    }
                }
                Err(error)
            }
        }
    }

    /// Lookups answered from the cache (validated or refused), tokens checked, and entries
    /// evicted to make room.
    pub fn stats(&self) -> crate::metrics::CacheStats {
        self.stats
    }

    /// How many validated tokens are cached.
    pub fn len(&self) -> usize {
        self.lrus.as_ref().map_or(0, |l| l.validated.len())
    }

    /// True when no validated token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many refused tokens are remembered.
    pub fn refusals(&self) -> usize {
        self.lrus.as_ref().map_or(0, |l| l.refused.len())
    }
}

/// Whether a refusal may answer for the same token later in the same configuration
/// generation. Every reason is a property of the token and the configuration, except that
/// time passes: an expired token stays expired, but a token that is not yet valid becomes
/// valid at its `nbf`, so it is checked again each time (its signature verified, so only a
/// holder of a signing key can make such tokens).
fn remembered(error: &TokenError) -> bool {
    match error {
        TokenError::NotYetValid => false,
        TokenError::Malformed
        | TokenError::CriticalHeader
        | TokenError::Expired
        | TokenError::WrongAudience
        | TokenError::WrongIssuer
        | TokenError::BadSignature
        | TokenError::UnknownKey { .. }
        | TokenError::AlgorithmNotAllowed { .. }
        | TokenError::MissingClaim { .. }
        | TokenError::InvalidClaim { .. } => true,
    }
}
