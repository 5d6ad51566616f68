//! OIDC access tokens (JWT, RFC 7519) checked against keys from the configuration: the
//! signature with a key chosen by `kid` and algorithm, then expiry, issuer, audience and
//! required claims, and the identity the claims describe.
//!
//! Only keys from configured files are used: header parameters that point at other keys
//! (`jku`, `x5u`, `jwk`, `x5c`) are ignored. `alg: none` is always refused, and HMAC
//! algorithms are accepted only with a configured secret, which is never a public key, so a
//! token "signed" with a public key as HMAC secret (algorithm confusion) does not verify.

use std::fmt;
use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::base64url;
use super::claims::{self, ClaimRules};
use super::keys::{self, KeyType, VerifyKey};
use super::Identity;

pub use super::error::TokenError;

/// What the configuration says about tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// JWKS documents (several keys, chosen by `kid`) or PEM public key / certificate files
    /// (RSA, EC P-256/P-384, Ed25519), told apart by content.
    pub keys: Vec<PathBuf>,
    /// The HMAC secret file. HS256/384/512 are accepted only when this is set.
    pub secret: Option<PathBuf>,
    /// Allowed algorithms by name. Empty: every algorithm the configured keys can verify
    /// (the asymmetric ones of the key files, and the HMAC ones when a secret is set).
    /// `none` is a configuration error.
    pub algorithms: Vec<String>,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the token's `aud` may be a string or an array); empty: not
    /// checked.
    pub audiences: Vec<String>,
    /// Seconds of grace for `exp` and `nbf`, for clocks that differ.
    pub leeway: u64,
    /// Claims that must be present (`exp` always is); dotted paths allowed.
    pub required_claims: Vec<String>,
    /// The claim that names the principal; dotted paths allowed.
    pub principal_claim: String,
    /// The claim that lists roles or groups, e.g. `groups` or `realm_access.roles`: a string
    /// or an array of strings.
    pub roles_claim: Option<String>,
    /// Further claims copied into the identity's attributes under their own name, for
    /// policies to bind roles on (e.g. `pipeline_slug`, `branchName`); dotted paths allowed.
    /// A string, number or boolean gives one attribute, an array one per element.
    pub attribute_claims: Vec<String>,
}

impl Default for JwtSettings {
    fn default() -> JwtSettings {
        JwtSettings {
            keys: Vec::new(),
            secret: None,
            algorithms: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: 0,
            required_claims: Vec::new(),
            principal_claim: "sub".into(),
            roles_claim: None,
            attribute_claims: Vec::new(),
        }
    }
}

/// Checks tokens against the keys and rules of one configuration. Built once at
/// configuration time; `validate` does no I/O and reads no clock.
pub struct JwtValidator {
    keys: Vec<VerifyKey>,
    /// Algorithms a token may name.
    allowed: Vec<Algorithm>,
    rules: ClaimRules,
    notes: Vec<String>,
}

/// Every algorithm name `jsonwebtoken` verifies, for messages.
const KNOWN: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512";

impl JwtValidator {
    /// Reads every key file now. Errors name the file and the reason, e.g.
    /// `cannot read JWT keys "/etc/x/jwks.json": No such file or directory` or
    /// `"/etc/x/jwks.json" is not a JWKS document or PEM public key: ...`.
    pub fn load(settings: &JwtSettings) -> Result<JwtValidator, String> {
        if settings.principal_claim.is_empty() {
            return Err("the JWT principal claim name is empty".into());
        }
        let mut listed = Vec::new();
        for name in &settings.algorithms {
            if name.eq_ignore_ascii_case("none") {
                return Err(
                    "JWT algorithm \"none\" is never allowed: tokens must be signed".into(),
                );
            }
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("unknown JWT algorithm \"{name}\" (known: {KNOWN})"))?;
            if !listed.contains(&alg) {
                listed.push(alg);
            }
        }
        let mut keys = Vec::new();
        let mut notes = Vec::new();
        for path in &settings.keys {
            keys::load_key_file(path, &mut keys, &mut notes)?;
        }
        if let Some(path) = &settings.secret {
            let secret = keys::load_secret(path)?;
            for &alg in &listed {
                if keys::key_type_of(alg) == KeyType::Hmac && !secret.algorithms.contains(&alg) {
                    return Err(format!(
                        "JWT algorithm {alg:?} needs an HMAC secret of at least {} bytes; \"{}\" is shorter",
                        keys::hmac_min_bytes(alg),
                        path.display()
                    ));
                }
            }
            keys.push(secret);
        } else if let Some(alg) = listed
            .iter()
            .find(|&&a| keys::key_type_of(a) == KeyType::Hmac)
        {
            return Err(format!(
                "JWT algorithm {alg:?} needs an HMAC secret file; HMAC is never verified with a public key"
            ));
        }
        if keys.is_empty() {
            return Err(
                "no JWT key configured: give a JWKS or PEM public key file, or an HMAC secret file"
                    .into(),
            );
        }
        let allowed = if listed.is_empty() {
            let mut all: Vec<Algorithm> = Vec::new();
            for k in &keys {
                for a in &k.algorithms {
                    if !all.contains(a) {
                        all.push(*a);
                    }
                }
            }
            all
        } else {
            listed
        };
        for k in &mut keys {
            k.algorithms.retain(|a| allowed.contains(a));
        }
        if keys.iter().all(|k| k.algorithms.is_empty()) {
            let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            return Err(format!(
                "no configured JWT key can verify the allowed algorithms ({})",
                names.join(" ")
            ));
        }
        Ok(JwtValidator {
            keys,
            allowed,
            rules: ClaimRules {
                issuers: settings.issuers.clone(),
                audiences: settings.audiences.clone(),
                leeway: settings.leeway,
                required: settings.required_claims.clone(),
                principal: settings.principal_claim.clone(),
                roles: settings.roles_claim.clone(),
                attributes: settings.attribute_claims.clone(),
            },
            notes,
        })
    }

    /// Validates `token` at `now` (unix seconds). On success: the identity with principal,
    /// groups (the roles claim), attributes (`iss`, each `aud`, `sub`, `email`, ...),
    /// `expires_at` = `exp`, source [`Source::Token`](super::Source::Token).
    ///
    /// The signature is checked before any claim, so a forged token learns nothing about
    /// which claims would be accepted.
    pub fn validate(&self, token: &str, now: u64) -> Result<Identity, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = base64url::decode(header_b64)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        let header = header.as_object().ok_or(TokenError::Malformed)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(TokenError::Malformed)?;
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.allowed.contains(a))
            .ok_or_else(|| TokenError::algorithm_not_allowed(alg_name))?;
        if header.contains_key("crit") {
            return Err(TokenError::CriticalHeader);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };

        // The signed message is `header.payload`, the token up to its second '.'.
        let message = &token.as_bytes()[..header_b64.len() + 1 + payload.len()];
        // The keys to try, among those used for `alg`: the ones the token's kid names; for a
        // kid no key has, the keys without a kid (PEM keys, the secret); without kid, all.
        let by_kid = kid.is_some() && self.keys.iter().any(|k| k.kid.as_deref() == kid);
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&alg)
                && match kid {
                    _ if by_kid => k.kid.as_deref() == kid,
                    Some(_) => k.kid.is_none(),
                    None => true,
                }
        });
        let mut tried = false;
        let mut verified = false;
        for key in candidates {
            tried = true;
            match jsonwebtoken::crypto::verify(signature, message, &key.key, alg) {
                Ok(true) => {
                    verified = true;
                    break;
                }
                Ok(false) => {}
                Err(_) => return Err(TokenError::Malformed),
            }
        }
        if !tried && !by_kid {
            return Err(TokenError::unknown_key(kid));
        }
        if !verified {
            return Err(TokenError::BadSignature);
        }

        let claims: Value = base64url::decode(payload)
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(TokenError::Malformed)?;
        let claims = claims.as_object().ok_or(TokenError::Malformed)?;
        self.rules.identity(claims, now)
    }

    /// True when `identity` (from [`validate`](Self::validate)) has expired at `now`, with the
    /// configured leeway: for enforcing expiry during a session and in caches.
    pub fn expired(&self, identity: &Identity, now: u64) -> bool {
        identity
            .expires_at
            .is_some_and(|exp| claims::expired(exp, self.rules.leeway, now))
    }

    /// The configured leeway in seconds.
    pub fn leeway(&self) -> u64 {
        self.rules.leeway
    }

    /// JWKS entries that were skipped, and why (encryption keys, unsupported curves or
    /// algorithms, symmetric keys), for a notice in the error log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

impl fmt::Debug for JwtValidator {
    /// Key ids and algorithms only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(Option<&str>, &[Algorithm])> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithms.as_slice()))
            .collect();
        f.debug_struct("JwtValidator")
            .field("keys", &keys)
            .field("allowed", &self.allowed)
            .field("rules", &self.rules)
            .finish()
    }
}
