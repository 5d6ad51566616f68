//! The token cache: hits skip verification, expired entries and entries of another
//! configuration generation are not used, the capacity holds; refusals are answered from the
//! cache for a while, except for tokens not yet valid, and do not push out validated tokens.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::cache::REFUSAL_TTL;
use super::test_keys::*;
use super::{Identity, JwtSettings, JwtValidator, TokenCache, TokenError};

fn validator(dir: &TempDir, key: &TestKey) -> JwtValidator {
    JwtValidator::load(&JwtSettings {
        keys: vec![dir.write(&format!("{:?}.pem", key.alg), &key.public_pem)],
        ..JwtSettings::default()
    })
    .unwrap()
}

/// What a test starts from: a folder for key files, a signing key, a token signed with it, and
/// an empty cache of 16 tokens.
struct Setup {
    dir: TempDir,
    key: TestKey,
    token: String,
    cache: TokenCache,
}

impl Setup {
    /// A key of `alg`, and a token with the [`claims`] of alice signed with it.
    fn new(alg: Algorithm) -> Setup {
        Setup::signing(alg, &claims())
    }

    /// A key of `alg`, and a token with `claims` signed with it.
    fn signing(alg: Algorithm, claims: &Value) -> Setup {
        let key = fresh(alg);
        Setup {
            dir: TempDir::new(),
            token: key.sign(None, claims),
            key,
            cache: TokenCache::new(16),
        }
    }

    /// A validator that trusts the key.
    fn trusting(&self) -> JwtValidator {
        validator(&self.dir, &self.key)
    }

    /// A validator that trusts another key of `alg`, and so refuses what the key signs.
    fn refusing(&self, alg: Algorithm) -> JwtValidator {
        validator(&self.dir, &fresh(alg))
    }

    /// A validator that trusts the key, and one that trusts another key of its algorithm
    /// instead.
    fn right_and_wrong(&self) -> (JwtValidator, JwtValidator) {
        (self.trusting(), self.refusing(self.key.alg))
    }

    /// What the cache answers for the token, checked by `v` in configuration generation
    /// `generation` at `now`.
    fn validate(
        &mut self,
        v: &JwtValidator,
        generation: u64,
        now: u64,
    ) -> Result<Identity, TokenError> {
        self.cache.validate(v, generation, &self.token, now)
    }
}

#[test]
fn a_hit_returns_the_identity_without_verifying_again() {
    let mut s = Setup::new(Algorithm::ES256);
    let right = s.trusting();
    // A validator whose key would refuse the token: a hit never asks it.
    let wrong = s.refusing(Algorithm::EdDSA);
    let first = s.validate(&right, 1, NOW).unwrap();
    assert_eq!(s.cache.len(), 1);
    let again = s.validate(&wrong, 1, NOW + 1).unwrap();
    assert_eq!(again, first);
    assert_eq!(s.cache.len(), 1);
}

#[test]
fn an_expired_entry_is_dropped() {
    let mut s = Setup::signing(Algorithm::ES256, &json!({"sub": "alice", "exp": NOW + 100}));
    let v = s.trusting();
    assert!(s.validate(&v, 1, NOW).is_ok());
    assert!(s.validate(&v, 1, NOW + 99).is_ok());
    assert_eq!(s.validate(&v, 1, NOW + 100), Err(TokenError::Expired));
    assert_eq!(s.cache.len(), 0);
}

#[test]
fn another_generation_is_not_used() {
    let mut s = Setup::new(Algorithm::ES256);
    // After a reload, the key was rotated away.
    let (before, after) = s.right_and_wrong();
    assert!(s.validate(&before, 1, NOW).is_ok());
    assert_eq!(s.validate(&after, 2, NOW), Err(TokenError::BadSignature));
    assert_eq!(s.cache.len(), 0);
    assert_eq!(s.cache.refusals(), 1);
    // The refusal belongs to generation 2 too: the next one checks again.
    assert!(s.validate(&before, 3, NOW).is_ok());
    assert_eq!(s.cache.len(), 1);
    assert_eq!(s.cache.refusals(), 0);
}

#[test]
fn capacity_is_bounded_and_zero_turns_caching_off() {
    let s = Setup::new(Algorithm::EdDSA);
    let v = s.trusting();
    let mut cache = TokenCache::new(2);
    for user in ["a", "b", "c"] {
        let token = s.key.sign(None, &json!({"sub": user, "exp": NOW + 100}));
        assert_eq!(cache.validate(&v, 1, &token, NOW).unwrap().principal, user);
    }
    assert_eq!(cache.len(), 2);
    let mut off = TokenCache::new(0);
    assert!(off.validate(&v, 1, &s.token, NOW).is_ok());
    assert!(off.is_empty());
    assert_eq!(
        off.validate(&v, 1, "not.a.token", NOW),
        Err(TokenError::Malformed)
    );
    assert_eq!(off.refusals(), 0);
}

#[test]
fn a_repeated_refusal_is_answered_without_verifying_again() {
    let mut s = Setup::new(Algorithm::ES256);
    // The first check is made by a validator that refuses the token; had the second one
    // verified again, it would have accepted it.
    let (right, wrong) = s.right_and_wrong();
    assert_eq!(s.validate(&wrong, 1, NOW), Err(TokenError::BadSignature));
    assert_eq!(s.cache.refusals(), 1);
    assert_eq!(
        s.validate(&right, 1, NOW + 1),
        Err(TokenError::BadSignature)
    );
    assert_eq!((s.cache.len(), s.cache.refusals()), (0, 1));
}

#[test]
fn a_refusal_is_answered_with_the_same_error() {
    let mut s = Setup::new(Algorithm::EdDSA);
    let v = s.trusting();
    s.token = unsigned_token(&claims());
    let first = s.validate(&v, 1, NOW);
    assert_eq!(
        first,
        Err(TokenError::AlgorithmNotAllowed { alg: "none".into() })
    );
    assert_eq!(s.validate(&v, 1, NOW + 1), first);
    assert_eq!(s.cache.refusals(), 1);
}

#[test]
fn a_refusal_expires_after_its_time() {
    let mut s = Setup::new(Algorithm::ES256);
    let (right, wrong) = s.right_and_wrong();
    assert!(s.validate(&wrong, 1, NOW).is_err());
    assert_eq!(
        s.validate(&right, 1, NOW + REFUSAL_TTL - 1),
        Err(TokenError::BadSignature)
    );
    let identity = s.validate(&right, 1, NOW + REFUSAL_TTL).unwrap();
    assert_eq!(identity.principal, "alice");
    assert_eq!((s.cache.len(), s.cache.refusals()), (1, 0));
}

#[test]
fn a_refusal_does_not_outlive_a_clock_that_went_back() {
    let mut s = Setup::new(Algorithm::ES256);
    let (right, wrong) = s.right_and_wrong();
    assert!(s.validate(&wrong, 1, NOW).is_err());
    assert!(s.validate(&right, 1, NOW - 1).is_ok());
}

#[test]
fn a_token_not_yet_valid_is_accepted_when_its_time_comes() {
    let mut s = Setup::signing(
        Algorithm::ES256,
        &json!({"sub": "alice", "nbf": NOW + 10, "exp": NOW + 600}),
    );
    let v = s.trusting();
    assert_eq!(s.validate(&v, 1, NOW), Err(TokenError::NotYetValid));
    assert_eq!(s.cache.refusals(), 0);
    assert_eq!(s.validate(&v, 1, NOW + 9), Err(TokenError::NotYetValid));
    assert_eq!(s.validate(&v, 1, NOW + 10).unwrap().principal, "alice");
    assert_eq!((s.cache.len(), s.cache.refusals()), (1, 0));
}

#[test]
fn an_expired_token_stays_refused() {
    let mut s = Setup::signing(Algorithm::ES256, &json!({"sub": "alice", "exp": NOW}));
    let v = s.trusting();
    assert_eq!(s.validate(&v, 1, NOW), Err(TokenError::Expired));
    assert_eq!(s.cache.refusals(), 1);
    assert_eq!(s.validate(&v, 1, NOW + 1), Err(TokenError::Expired));
}

#[test]
fn a_refusal_of_another_generation_is_not_used() {
    let mut s = Setup::new(Algorithm::ES256);
    // Before the reload the signing key was not configured yet.
    let before = s.refusing(Algorithm::ES256);
    let after = s.trusting();
    assert_eq!(s.validate(&before, 1, NOW), Err(TokenError::BadSignature));
    assert!(s.validate(&after, 2, NOW).is_ok());
    assert_eq!((s.cache.len(), s.cache.refusals()), (1, 0));
}

#[test]
fn validated_tokens_survive_a_flood_of_forged_ones() {
    let mut s = Setup::new(Algorithm::EdDSA);
    let right = s.trusting();
    let forger = fresh(Algorithm::EdDSA);
    let good: Vec<String> = (0..16)
        .map(|i| {
            s.key
                .sign(None, &json!({"sub": format!("u{i}"), "exp": NOW + 600}))
        })
        .collect();
    for token in &good {
        assert!(s.cache.validate(&right, 1, token, NOW).is_ok());
    }
    for i in 0..200 {
        let forged = forger.sign(None, &json!({"sub": format!("f{i}"), "exp": NOW + 600}));
        assert_eq!(
            s.cache.validate(&right, 1, &forged, NOW),
            Err(TokenError::BadSignature)
        );
    }
    assert_eq!(s.cache.len(), 16);
    assert_eq!(s.cache.refusals(), 16, "refusals are bounded on their own");
    // Every good token is still a hit: a validator that would refuse them is not asked.
    let wrong = validator(&s.dir, &forger);
    for (i, token) in good.iter().enumerate() {
        let identity = s.cache.validate(&wrong, 1, token, NOW + 1).unwrap();
        assert_eq!(identity.principal, format!("u{i}"));
    }
}
