//! The token cache: hits skip verification, expired entries and entries of another
//! configuration generation are not used, the capacity holds.

use jsonwebtoken::Algorithm;
use serde_json::json;

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
    // Refusals are not cached; a success under the new generation is.
    assert!(cache.validate(&before, 2, &token, NOW).is_ok());
    assert_eq!(cache.len(), 1);
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
}
