//! Every outcome of token validation, with keys made at test time.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use super::base64url::encode;
use super::test_keys::*;
use super::{JwtSettings, JwtValidator, Source, TokenError};

/// Settings with the default rules of these tests: issuer and audience checked.
fn settings(keys: Vec<std::path::PathBuf>) -> JwtSettings {
    JwtSettings {
        keys,
        issuers: vec![ISSUER.into()],
        audiences: vec![AUDIENCE.into()],
        ..JwtSettings::default()
    }
}

/// A validator for one PEM public key.
fn pem_validator(dir: &TempDir, key: &TestKey) -> JwtValidator {
    let path = dir.write("key.pem", &key.public_pem);
    JwtValidator::load(&settings(vec![path])).unwrap()
}

/// A validator for a JWKS of `keys`.
fn jwks_validator(dir: &TempDir, keys: &[Value]) -> JwtValidator {
    let path = dir.write("jwks.json", json!({ "keys": keys }).to_string());
    JwtValidator::load(&settings(vec![path])).unwrap()
}

fn with(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn attr<'a>(id: &'a super::Identity, name: &str) -> Vec<&'a str> {
    id.attributes
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn valid_rs256_and_ps256_with_one_rsa_key() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = pem_validator(&dir, key);
    for alg in [Algorithm::RS256, Algorithm::PS256, Algorithm::RS512] {
        let id = v.validate(&key.sign_as(alg, None, &claims()), NOW).unwrap();
        assert_eq!(id.principal, "alice");
        assert_eq!(id.source, Source::Token);
        assert_eq!(id.expires_at, Some(NOW + 600));
        assert!(id.groups.is_empty());
        assert_eq!(attr(&id, "iss"), [ISSUER]);
        assert_eq!(attr(&id, "aud"), [AUDIENCE]);
        assert_eq!(attr(&id, "email"), ["alice@example.com"]);
    }
}

#[test]
fn valid_es256_es384_eddsa() {
    let dir = TempDir::new();
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = fresh(alg);
        let v = pem_validator(&dir, &key);
        let id = v.validate(&key.sign(None, &claims()), NOW).unwrap();
        assert_eq!(id.principal, "alice", "{alg:?}");
        // The same keys from a JWKS.
        let v = jwks_validator(&dir, &[key.jwk("k1", None)]);
        v.validate(&key.sign(Some("k1"), &claims()), NOW).unwrap();
    }
}

#[test]
fn a_certificate_file_gives_its_public_key() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let pair = rcgen::KeyPair::from_pem(&key.private_pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["idp.example.com".into()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    let path = dir.write("idp.crt", cert.pem());
    let v = JwtValidator::load(&settings(vec![path])).unwrap();
    v.validate(&key.sign(None, &claims()), NOW).unwrap();
}

#[test]
fn hs256_only_with_a_configured_secret() {
    let dir = TempDir::new();
    let secret = b"0123456789abcdef0123456789abcdef-and-more";
    let path = dir.write("secret", [&secret[..], b"\n"].concat());
    let s = JwtSettings {
        secret: Some(path),
        ..settings(vec![])
    };
    let v = JwtValidator::load(&s).unwrap();
    let id = v
        .validate(&hmac_token(Algorithm::HS256, secret, &claims()), NOW)
        .unwrap();
    assert_eq!(id.principal, "alice");
    // 41 bytes: too short for HS384 (48) and HS512 (64), so those are not allowed.
    assert_eq!(
        v.validate(&hmac_token(Algorithm::HS512, secret, &claims()), NOW),
        Err(TokenError::AlgorithmNotAllowed {
            alg: "HS512".into()
        })
    );
    assert_eq!(
        v.validate(
            &hmac_token(
                Algorithm::HS256,
                b"another secret that is long enough",
                &claims()
            ),
            NOW
        ),
        Err(TokenError::BadSignature)
    );
    let short = dir.write("short", "too short");
    let err = JwtValidator::load(&JwtSettings {
        secret: Some(short.clone()),
        ..settings(vec![])
    })
    .unwrap_err();
    assert_eq!(
        err,
        format!(
            "the HMAC secret in \"{}\" is 9 bytes; at least 32 are required",
            short.display()
        )
    );
    let err = JwtValidator::load(&JwtSettings {
        secret: Some(dir.write("s2", secret)),
        algorithms: vec!["HS512".into()],
        ..settings(vec![])
    })
    .unwrap_err();
    assert!(err.starts_with("JWT algorithm HS512 needs an HMAC secret of at least 64 bytes"));
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let dir = TempDir::new();
    let key = rsa(0);
    let path = dir.write("key.pem", &key.public_pem);
    let strict = JwtValidator::load(&settings(vec![path.clone()])).unwrap();
    let lenient = JwtValidator::load(&JwtSettings {
        leeway: 30,
        ..settings(vec![path])
    })
    .unwrap();

    let expired = key.sign(None, &with(claims(), json!({"exp": NOW - 10})));
    assert_eq!(strict.validate(&expired, NOW), Err(TokenError::Expired));
    assert_eq!(
        lenient.validate(&expired, NOW).unwrap().expires_at,
        Some(NOW - 10)
    );
    assert_eq!(
        lenient.validate(&expired, NOW + 20),
        Err(TokenError::Expired)
    );
    // Accepted strictly before exp.
    let at_exp = key.sign(None, &with(claims(), json!({"exp": NOW})));
    assert_eq!(strict.validate(&at_exp, NOW), Err(TokenError::Expired));
    assert!(strict.validate(&at_exp, NOW - 1).is_ok());

    let early = key.sign(None, &with(claims(), json!({"nbf": NOW + 10})));
    assert_eq!(strict.validate(&early, NOW), Err(TokenError::NotYetValid));
    assert!(strict.validate(&early, NOW + 10).is_ok());
    assert!(lenient.validate(&early, NOW).is_ok());
    assert_eq!(
        lenient.validate(&early, NOW - 21),
        Err(TokenError::NotYetValid)
    );

    let no_exp = key.sign(None, &with(claims(), json!({"exp": null})));
    assert_eq!(
        strict.validate(&no_exp, NOW),
        Err(TokenError::MissingClaim {
            claim: "exp".into()
        })
    );
    let text_exp = key.sign(None, &with(claims(), json!({"exp": "tomorrow"})));
    assert_eq!(
        strict.validate(&text_exp, NOW),
        Err(TokenError::InvalidClaim {
            claim: "exp".into()
        })
    );
}

#[test]
fn audience_and_issuer() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = pem_validator(&dir, key);
    let check = |extra: Value| v.validate(&key.sign(None, &with(claims(), extra)), NOW);
    assert_eq!(
        check(json!({"aud": "other"})),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(
        check(json!({"aud": ["a", "b"]})),
        Err(TokenError::WrongAudience)
    );
    let id = check(json!({"aud": ["other", AUDIENCE]})).unwrap();
    assert_eq!(attr(&id, "aud"), ["other", AUDIENCE]);
    assert_eq!(
        check(json!({"aud": null})),
        Err(TokenError::MissingClaim {
            claim: "aud".into()
        })
    );
    assert_eq!(
        check(json!({"aud": 7})),
        Err(TokenError::InvalidClaim {
            claim: "aud".into()
        })
    );
    assert_eq!(
        check(json!({"iss": "https://evil.example.com/"})),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        check(json!({"iss": null})),
        Err(TokenError::MissingClaim {
            claim: "iss".into()
        })
    );
    // Not configured: not checked.
    let lax = JwtValidator::load(&JwtSettings {
        keys: vec![dir.write("k.pem", &key.public_pem)],
        ..JwtSettings::default()
    })
    .unwrap();
    let token = key.sign(None, &with(claims(), json!({"aud": "x", "iss": "y"})));
    assert!(lax.validate(&token, NOW).is_ok());
}

#[test]
fn bad_signatures() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = pem_validator(&dir, key);
    // Payload swapped for one that names another principal, signature kept.
    let token = key.sign(None, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = encode(
        with(claims(), json!({"sub": "admin"}))
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(v.validate(&tampered, NOW), Err(TokenError::BadSignature));
    // Signed by a key that is not configured.
    let other = rsa(1).sign(None, &claims());
    assert_eq!(v.validate(&other, NOW), Err(TokenError::BadSignature));
    // A forged token is refused for its signature before its claims are looked at.
    let expired_other = rsa(1).sign(None, &with(claims(), json!({"exp": 1})));
    assert_eq!(
        v.validate(&expired_other, NOW),
        Err(TokenError::BadSignature)
    );
    let ec = fresh(Algorithm::ES256);
    let v = pem_validator(&dir, &ec);
    let other = fresh(Algorithm::ES256).sign(None, &claims());
    assert_eq!(v.validate(&other, NOW), Err(TokenError::BadSignature));
}

#[test]
fn key_ids_and_rotation() {
    let dir = TempDir::new();
    let (old, new) = (rsa(0), rsa(1));
    let v = jwks_validator(
        &dir,
        &[old.jwk("2025", Some("RS256")), new.jwk("2026", None)],
    );
    assert!(v.validate(&old.sign(Some("2025"), &claims()), NOW).is_ok());
    assert!(v.validate(&new.sign(Some("2026"), &claims()), NOW).is_ok());
    // The kid picks the key: signed with the new key but naming the old one.
    assert_eq!(
        v.validate(&new.sign(Some("2025"), &claims()), NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        v.validate(&new.sign(Some("k9"), &claims()), NOW),
        Err(TokenError::UnknownKey {
            kid: Some("k9".into())
        })
    );
    assert_eq!(
        TokenError::UnknownKey {
            kid: Some("k9".into())
        }
        .to_string(),
        "token signed with unknown key id \"k9\""
    );
    // Without a kid, every key of the family is tried.
    assert!(v.validate(&new.sign(None, &claims()), NOW).is_ok());
    // The JWK's alg narrows its key: "2025" is RS256 only.
    assert_eq!(
        v.validate(&old.sign_as(Algorithm::PS256, Some("2025"), &claims()), NOW),
        Err(TokenError::BadSignature)
    );
    // No key of that family at all.
    let ec = fresh(Algorithm::ES256);
    assert_eq!(
        v.validate(&ec.sign(None, &claims()), NOW),
        Err(TokenError::AlgorithmNotAllowed {
            alg: "ES256".into()
        })
    );
}

#[test]
fn a_kid_without_match_falls_back_to_keys_without_kid() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = pem_validator(&dir, key);
    assert!(v
        .validate(&key.sign(Some("idp-key-1"), &claims()), NOW)
        .is_ok());
    let v = JwtValidator::load(&JwtSettings {
        algorithms: vec!["RS256".into(), "ES256".into()],
        ..settings(vec![dir.write("k.pem", &key.public_pem)])
    })
    .unwrap();
    let ec = fresh(Algorithm::ES256);
    assert_eq!(
        v.validate(&ec.sign(Some("e1"), &claims()), NOW),
        Err(TokenError::UnknownKey {
            kid: Some("e1".into())
        })
    );
    assert_eq!(
        v.validate(&ec.sign(None, &claims()), NOW),
        Err(TokenError::UnknownKey { kid: None })
    );
}

#[test]
fn alg_none_is_refused() {
    let dir = TempDir::new();
    let v = pem_validator(&dir, rsa(0));
    let err = v.validate(&unsigned_token(&claims()), NOW).unwrap_err();
    assert_eq!(err, TokenError::AlgorithmNotAllowed { alg: "none".into() });
    assert_eq!(err.to_string(), "token algorithm none is not allowed");
    for name in ["none", "None"] {
        let err = JwtValidator::load(&JwtSettings {
            algorithms: vec![name.into()],
            ..settings(vec![dir.write("k.pem", &rsa(0).public_pem)])
        })
        .unwrap_err();
        assert_eq!(
            err,
            "JWT algorithm \"none\" is never allowed: tokens must be signed"
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key_is_refused() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = pem_validator(&dir, key);
    let attack = hmac_token(Algorithm::HS256, key.public_pem.as_bytes(), &claims());
    let err = v.validate(&attack, NOW).unwrap_err();
    assert_eq!(
        err,
        TokenError::AlgorithmNotAllowed {
            alg: "HS256".into()
        }
    );
    assert_eq!(err.to_string(), "token algorithm HS256 is not allowed");
    // Also when HS256 is in the list: a configuration error without a secret.
    let pem = dir.write("k.pem", &key.public_pem);
    let err = JwtValidator::load(&JwtSettings {
        algorithms: vec!["RS256".into(), "HS256".into()],
        ..settings(vec![pem.clone()])
    })
    .unwrap_err();
    assert!(
        err.starts_with("JWT algorithm HS256 needs an HMAC secret file"),
        "{err}"
    );
    // The public key file as the secret is refused.
    let err = JwtValidator::load(&JwtSettings {
        secret: Some(pem.clone()),
        ..settings(vec![pem.clone()])
    })
    .unwrap_err();
    assert!(
        err.contains("a public key must never be used as a secret"),
        "{err}"
    );
    // With a real secret configured, the attack token does not verify.
    let v = JwtValidator::load(&JwtSettings {
        secret: Some(dir.write("secret", "a real secret of thirty-two bytes or more")),
        ..settings(vec![pem])
    })
    .unwrap();
    assert_eq!(v.validate(&attack, NOW), Err(TokenError::BadSignature));
}

#[test]
fn configured_algorithms_narrow_what_is_accepted() {
    let dir = TempDir::new();
    let key = rsa(0);
    let pem = dir.write("k.pem", &key.public_pem);
    let v = JwtValidator::load(&JwtSettings {
        algorithms: vec!["RS256".into()],
        ..settings(vec![pem.clone()])
    })
    .unwrap();
    assert!(v.validate(&key.sign(None, &claims()), NOW).is_ok());
    assert_eq!(
        v.validate(&key.sign_as(Algorithm::PS256, None, &claims()), NOW),
        Err(TokenError::AlgorithmNotAllowed {
            alg: "PS256".into()
        })
    );
    let err = JwtValidator::load(&JwtSettings {
        algorithms: vec!["ES256".into()],
        ..settings(vec![pem.clone()])
    })
    .unwrap_err();
    assert_eq!(
        err,
        "no configured JWT key can verify the allowed algorithms (ES256)"
    );
    let err = JwtValidator::load(&JwtSettings {
        algorithms: vec!["RS257".into()],
        ..settings(vec![pem])
    })
    .unwrap_err();
    assert!(err.starts_with("unknown JWT algorithm \"RS257\""), "{err}");
}

#[test]
fn required_claims() {
    let dir = TempDir::new();
    let key = rsa(0);
    let v = JwtValidator::load(&JwtSettings {
        required_claims: vec!["email".into(), "realm_access.roles".into()],
        ..settings(vec![dir.write("k.pem", &key.public_pem)])
    })
    .unwrap();
    let token = key.sign(None, &with(claims(), json!({"email": null})));
    let err = v.validate(&token, NOW).unwrap_err();
    assert_eq!(err.to_string(), "token lacks the claim \"email\"");
    let token = key.sign(None, &claims());
    assert_eq!(
        v.validate(&token, NOW),
        Err(TokenError::MissingClaim {
            claim: "realm_access.roles".into()
        })
    );
    let token = key.sign(
        None,
        &with(claims(), json!({"realm_access": {"roles": []}})),
    );
    assert!(v.validate(&token, NOW).is_ok());
}

#[test]
fn roles_and_principal_claims() {
    let dir = TempDir::new();
    let key = rsa(0);
    let pem = dir.write("k.pem", &key.public_pem);
    let v = JwtValidator::load(&JwtSettings {
        roles_claim: Some("realm_access.roles".into()),
        principal_claim: "preferred_username".into(),
        ..settings(vec![pem.clone()])
    })
    .unwrap();
    let token = key.sign(
        None,
        &with(
            claims(),
            json!({"preferred_username": "alice.smith", "realm_access": {"roles": ["analyst", "etl"]}}),
        ),
    );
    let id = v.validate(&token, NOW).unwrap();
    assert_eq!(id.principal, "alice.smith");
    assert_eq!(id.groups, ["analyst", "etl"]);
    assert_eq!(attr(&id, "sub"), ["alice"]);
    assert_eq!(
        v.validate(&key.sign(None, &claims()), NOW),
        Err(TokenError::MissingClaim {
            claim: "preferred_username".into()
        })
    );

    let v = JwtValidator::load(&JwtSettings {
        roles_claim: Some("groups".into()),
        ..settings(vec![pem])
    })
    .unwrap();
    let token = key.sign(None, &with(claims(), json!({"groups": "dba"})));
    assert_eq!(v.validate(&token, NOW).unwrap().groups, ["dba"]);
}

#[test]
fn malformed_tokens() {
    let dir = TempDir::new();
    let v = pem_validator(&dir, rsa(0));
    let good = rsa(0).sign(None, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let h = |v: Value| encode(v.to_string().as_bytes());
    for bad in [
        String::new(),
        "not a token".into(),
        "a.b".into(),
        format!("{good}.x"),
        format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", encode(b"{not json"), parts[1], parts[2]),
        format!("{}.{}.{}", h(json!(["RS256"])), parts[1], parts[2]),
        format!("{}.{}.{}", h(json!({"typ": "JWT"})), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            h(json!({"alg": "RS256", "kid": 7})),
            parts[1],
            parts[2]
        ),
    ] {
        assert_eq!(v.validate(&bad, NOW), Err(TokenError::Malformed), "{bad}");
    }
    assert_eq!(TokenError::Malformed.to_string(), "not a JWT");
    // A payload that is not a JSON object, correctly signed.
    let secret = b"0123456789abcdef0123456789abcdef";
    let v = JwtValidator::load(&JwtSettings {
        secret: Some(dir.write("s", secret)),
        ..JwtSettings::default()
    })
    .unwrap();
    let header = json!({"alg": "HS256"});
    for payload in [&b"[1,2]"[..], b"not json", b"\xff"] {
        let token = raw_hmac_token(Algorithm::HS256, secret, &header, payload);
        assert_eq!(v.validate(&token, NOW), Err(TokenError::Malformed));
    }
    let crit = json!({"alg": "HS256", "crit": ["exp"], "exp": 1});
    let token = raw_hmac_token(
        Algorithm::HS256,
        secret,
        &crit,
        claims().to_string().as_bytes(),
    );
    assert_eq!(v.validate(&token, NOW), Err(TokenError::CriticalHeader));
}

#[test]
fn key_file_errors_name_the_file() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.json");
    let err = JwtValidator::load(&settings(vec![missing.clone()])).unwrap_err();
    assert_eq!(
        err,
        format!(
            "cannot read JWT keys \"{}\": No such file or directory",
            missing.display()
        )
    );
    let garbage = dir.write("garbage.json", "this is not a key");
    let err = JwtValidator::load(&settings(vec![garbage.clone()])).unwrap_err();
    assert!(
        err.starts_with(&format!(
            "\"{}\" is not a JWKS document or PEM public key: ",
            garbage.display()
        )),
        "{err}"
    );
    let bad_json = dir.write("bad.json", "{\"keys\": [");
    let err = JwtValidator::load(&settings(vec![bad_json.clone()])).unwrap_err();
    assert!(
        err.starts_with(&format!("\"{}\" is not a JWKS", bad_json.display())),
        "{err}"
    );
    let private = dir.write("private.pem", &rsa(0).private_pem);
    let err = JwtValidator::load(&settings(vec![private])).unwrap_err();
    assert!(err.contains("holds a private key"), "{err}");
    let err = JwtValidator::load(&JwtSettings {
        secret: Some(dir.0.join("no-secret")),
        ..settings(vec![])
    })
    .unwrap_err();
    assert!(err.starts_with("cannot read JWT secret \""), "{err}");
    let err = JwtValidator::load(&settings(vec![])).unwrap_err();
    assert!(err.starts_with("no JWT key configured"), "{err}");
    let small =
        json!({"keys": [{"kty": "RSA", "kid": "tiny", "n": encode(&[0xc5; 128]), "e": "AQAB"}]});
    let err = JwtValidator::load(&settings(vec![dir.write("small.json", small.to_string())]))
        .unwrap_err();
    assert!(
        err.ends_with("key \"tiny\": RSA key of 1024 bits; at least 2048 are required"),
        "{err}"
    );
    let mismatch = json!({"keys": [rsa(0).jwk("r", Some("ES256"))]});
    let err =
        JwtValidator::load(&settings(vec![dir.write("m.json", mismatch.to_string())])).unwrap_err();
    assert!(
        err.ends_with("key \"r\": algorithm ES256 does not fit an RSA key"),
        "{err}"
    );
}

#[test]
fn jwks_entries_that_cannot_verify_are_skipped_with_a_note() {
    let dir = TempDir::new();
    let key = fresh(Algorithm::ES256);
    let mut enc = rsa(0).jwk("enc-1", Some("RS256"));
    enc["use"] = json!("enc");
    let p521 = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"});
    let oct = json!({"kty": "oct", "kid": "hmac", "k": encode(b"secret")});
    let oaep = {
        let mut k = rsa(1).jwk("oaep", None);
        k["alg"] = json!("RSA-OAEP");
        k.as_object_mut().unwrap().remove("use");
        k
    };
    let path = dir.write(
        "jwks.json",
        json!({"keys": [enc, p521, oct.clone(), oaep, key.jwk("sig-1", None)]}).to_string(),
    );
    let v = JwtValidator::load(&settings(vec![path])).unwrap();
    assert_eq!(v.notes().len(), 4, "{:?}", v.notes());
    assert!(v.notes()[0].ends_with("key \"enc-1\" skipped: its use is not \"sig\""));
    v.validate(&key.sign(Some("sig-1"), &claims()), NOW)
        .unwrap();
    // A file with nothing usable is an error.
    let only_oct = dir.write("oct.json", json!({"keys": [oct]}).to_string());
    let err = JwtValidator::load(&settings(vec![only_oct.clone()])).unwrap_err();
    assert_eq!(
        err,
        format!(
            "\"{}\" holds no key that can verify token signatures",
            only_oct.display()
        )
    );
}

#[test]
fn expired_helper_uses_the_leeway() {
    let dir = TempDir::new();
    let v = JwtValidator::load(&JwtSettings {
        leeway: 30,
        ..settings(vec![dir.write("k.pem", &rsa(0).public_pem)])
    })
    .unwrap();
    let id = v.validate(&rsa(0).sign(None, &claims()), NOW).unwrap();
    assert!(!v.expired(&id, NOW + 629));
    assert!(v.expired(&id, NOW + 630));
    assert_eq!(v.leeway(), 30);
}
