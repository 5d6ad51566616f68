//! The token cache: hits skip verification, expired entries and entries of another
//! configuration generation are not used, the capacity holds; refusals are answered from the
//! cache for a while, except for tokens not yet valid, and do not push out validated tokens.

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::cache::REFUSAL_TTL;
use super::test_keys::*;
use super::{JwtSettings, JwtValidator, TokenCache, TokenError};

fn validator(dir: &TempDir, key: &TestKey) -> JwtValidator {
    JwtValidator::load(&JwtSettings {
        keys: vec![dir.write(&format!("{:?}.pem", key.alg), &key.public_pem)],
        ..JwtSettings::default()
    })
    .unwrap()
}

#[test]
fn a_hit_returns_the_identity_without_verifying_again() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let right = validator(&dir, &key);
    // A validator whose key would refuse the token: a hit never asks it.
    let wrong = validator(&dir, &fresh(Algorithm::EdDSA));
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    let first = cache.validate(&right, 1, &token, NOW).unwrap();
    assert_eq!(cache.len(), 1);
    let again = cache.validate(&wrong, 1, &token, NOW + 1).unwrap();
    assert_eq!(again, first);
    assert_eq!(cache.len(), 1);
}

#[test]
fn an_expired_entry_is_dropped() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let v = validator(&dir, &key);
    let token = key.sign(None, &json!({"sub": "alice", "exp": NOW + 100}));
    let mut cache = TokenCache::new(16);
    assert!(cache.validate(&v, 1, &token, NOW).is_ok());
    assert!(cache.validate(&v, 1, &token, NOW + 99).is_ok());
    assert_eq!(
        cache.validate(&v, 1, &token, NOW + 100),
        Err(TokenError::Expired)
    );
    assert_eq!(cache.len(), 0);
}

#[test]
fn another_generation_is_not_used() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let before = validator(&dir, &key);
    // After a reload, the key was rotated away.
    let after = validator(&dir, &fresh(Algorithm::ES256));
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    assert!(cache.validate(&before, 1, &token, NOW).is_ok());
    assert_eq!(
        cache.validate(&after, 2, &token, NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.refusals(), 1);
    // The refusal belongs to generation 2 too: the next one checks again.
    assert!(cache.validate(&before, 3, &token, NOW).is_ok());
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.refusals(), 0);
}

#[test]
fn capacity_is_bounded_and_zero_turns_caching_off() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::EdDSA);
    let v = validator(&dir, &key);
    let mut cache = TokenCache::new(2);
    for user in ["a", "b", "c"] {
        let token = key.sign(None, &json!({"sub": user, "exp": NOW + 100}));
        assert_eq!(cache.validate(&v, 1, &token, NOW).unwrap().principal, user);
    }
    assert_eq!(cache.len(), 2);
    let mut off = TokenCache::new(0);
    let token = key.sign(None, &claims());
    assert!(off.validate(&v, 1, &token, NOW).is_ok());
    assert!(off.is_empty());
    assert_eq!(
        off.validate(&v, 1, "not.a.token", NOW),
        Err(TokenError::Malformed)
    );
    assert_eq!(off.refusals(), 0);
}

#[test]
fn a_repeated_refusal_is_answered_without_verifying_again() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let right = validator(&dir, &key);
    // The first check is made by a validator that refuses the token; had the second one
    // verified again, it would have accepted it.
    let wrong = validator(&dir, &fresh(Algorithm::ES256));
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    assert_eq!(
        cache.validate(&wrong, 1, &token, NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(cache.refusals(), 1);
    assert_eq!(
        cache.validate(&right, 1, &token, NOW + 1),
        Err(TokenError::BadSignature)
    );
    assert_eq!((cache.len(), cache.refusals()), (0, 1));
}

#[test]
fn a_refusal_is_answered_with_the_same_error() {
    let dir = TempDir::new();
    let v = validator(&dir, &fresh(Algorithm::EdDSA));
    let token = unsigned_token(&claims());
    let mut cache = TokenCache::new(16);
    let first = cache.validate(&v, 1, &token, NOW);
    assert_eq!(
        first,
        Err(TokenError::AlgorithmNotAllowed { alg: "none".into() })
    );
    assert_eq!(cache.validate(&v, 1, &token, NOW + 1), first);
    assert_eq!(cache.refusals(), 1);
}

#[test]
fn a_refusal_expires_after_its_time() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let right = validator(&dir, &key);
    let wrong = validator(&dir, &fresh(Algorithm::ES256));
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    assert!(cache.validate(&wrong, 1, &token, NOW).is_err());
    assert_eq!(
        cache.validate(&right, 1, &token, NOW + REFUSAL_TTL - 1),
        Err(TokenError::BadSignature)
    );
    let identity = cache
        .validate(&right, 1, &token, NOW + REFUSAL_TTL)
        .unwrap();
    assert_eq!(identity.principal, "alice");
    assert_eq!((cache.len(), cache.refusals()), (1, 0));
}

#[test]
fn a_refusal_does_not_outlive_a_clock_that_went_back() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let right = validator(&dir, &key);
    let wrong = validator(&dir, &fresh(Algorithm::ES256));
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    assert!(cache.validate(&wrong, 1, &token, NOW).is_err());
    assert!(cache.validate(&right, 1, &token, NOW - 1).is_ok());
}

#[test]
fn a_token_not_yet_valid_is_accepted_when_its_time_comes() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let v = validator(&dir, &key);
    let token = key.sign(
        None,
        &json!({"sub": "alice", "nbf": NOW + 10, "exp": NOW + 600}),
    );
    let mut cache = TokenCache::new(16);
    assert_eq!(
        cache.validate(&v, 1, &token, NOW),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(cache.refusals(), 0);
    assert_eq!(
        cache.validate(&v, 1, &token, NOW + 9),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        cache.validate(&v, 1, &token, NOW + 10).unwrap().principal,
        "alice"
    );
    assert_eq!((cache.len(), cache.refusals()), (1, 0));
}

#[test]
fn an_expired_token_stays_refused() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let v = validator(&dir, &key);
    let token = key.sign(None, &json!({"sub": "alice", "exp": NOW}));
    let mut cache = TokenCache::new(16);
    assert_eq!(cache.validate(&v, 1, &token, NOW), Err(TokenError::Expired));
    assert_eq!(cache.refusals(), 1);
    assert_eq!(
        cache.validate(&v, 1, &token, NOW + 1),
        Err(TokenError::Expired)
    );
}

#[test]
fn a_refusal_of_another_generation_is_not_used() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    // Before the reload the signing key was not configured yet.
    let before = validator(&dir, &fresh(Algorithm::ES256));
    let after = validator(&dir, &key);
    let token = key.sign(None, &claims());
    let mut cache = TokenCache::new(16);
    assert_eq!(
        cache.validate(&before, 1, &token, NOW),
        Err(TokenError::BadSignature)
    );
    assert!(cache.validate(&after, 2, &token, NOW).is_ok());
    assert_eq!((cache.len(), cache.refusals()), (1, 0));
}

#[test]
fn validated_tokens_survive_a_flood_of_forged_ones() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::EdDSA);
    let right = validator(&dir, &key);
    let forger = fresh(Algorithm::EdDSA);
    let mut cache = TokenCache::new(16);
    let good: Vec<String> = (0..16)
        .map(|i| key.sign(None, &json!({"sub": format!("u{i}"), "exp": NOW + 600})))
        .collect();
    for token in &good {
        assert!(cache.validate(&right, 1, token, NOW).is_ok());
    }
    for i in 0..200 {
        let forged = forger.sign(None, &json!({"sub": format!("f{i}"), "exp": NOW + 600}));
        assert_eq!(
            cache.validate(&right, 1, &forged, NOW),
            Err(TokenError::BadSignature)
        );
    }
    assert_eq!(cache.len(), 16);
    assert_eq!(cache.refusals(), 16, "refusals are bounded on their own");
    // Every good token is still a hit: a validator that would refuse them is not asked.
    let wrong = validator(&dir, &forger);
    for (i, token) in good.iter().enumerate() {
        let identity = cache.validate(&wrong, 1, token, NOW + 1).unwrap();
        assert_eq!(identity.principal, format!("u{i}"));
    }
}
