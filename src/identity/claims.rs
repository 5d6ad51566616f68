//! The claims of a token whose signature verified: time window, issuer, audience, required
//! claims, and the identity they describe (principal, roles, attributes).

use serde_json::{Map, Value};

use super::{Identity, Source, TokenError};

/// Claims copied into [`Identity::attributes`] when present as text (`aud` also as a list of
/// text, `email_verified` as a boolean), for policies to bind roles on.
const ATTRIBUTE_CLAIMS: [&str; 7] = [
    "iss",
    "sub",
    "azp",
    "client_id",
    "email",
    "preferred_username",
    "email_verified",
];

/// What the configuration asks of a token's claims.
#[derive(Clone, Debug)]
pub(crate) struct ClaimRules {
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: u64,
    pub(crate) required: Vec<String>,
    pub(crate) principal: String,
    pub(crate) roles: Option<String>,
    /// Configured claims copied into the attributes after the standard ones.
    pub(crate) attributes: Vec<String>,
}

/// The claim `name`: the top-level claim of that exact name if there is one (names such as
/// `https://example.com/roles` contain dots), otherwise the dotted path through nested objects
/// (`realm_access.roles`). A JSON `null` counts as absent.
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let found = match claims.get(name) {
        Some(v) => Some(v),
        None if name.contains('.') => {
            let mut parts = name.split('.');
            let first = parts.next()?;
            parts.try_fold(claims.get(first)?, |v, part| v.as_object()?.get(part))
        }
        None => None,
    };
    found.filter(|v| !v.is_null())
}

/// A NumericDate claim (RFC 7519 §2) in whole seconds: `Ok(None)` when absent, an error when
/// not a non-negative number.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    let Some(v) = lookup(claims, name) else {
        return Ok(None);
    };
    let invalid = || TokenError::InvalidClaim { claim: name.into() };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    match v.as_f64() {
        // Fractional seconds are allowed; the float-to-int cast saturates.
        Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f.floor() as u64)),
        _ => Err(invalid()),
    }
}

/// The text values of a claim that may be one string or an array of strings.
fn strings<'a>(v: &'a Value, name: &str) -> Result<Vec<&'a str>, TokenError> {
    let invalid = || TokenError::InvalidClaim { claim: name.into() };
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

/// True when `exp` (with `leeway` seconds of grace) has passed at `now`: a token is accepted
/// strictly before its expiry time (RFC 7519 §4.1.4).
pub(crate) fn expired(exp: u64, leeway: u64, now: u64) -> bool {
    exp.saturating_add(leeway) <= now
}

impl ClaimRules {
    /// Checks the claims of a token whose signature verified and returns its identity.
    /// `exp` is always required.
    pub(crate) fn identity(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<Identity, TokenError> {
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim {
            claim: "exp".into(),
        })?;
        if expired(exp, self.leeway, now) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now.saturating_add(self.leeway) < nbf {
                return Err(TokenError::NotYetValid);
            }
        }
        if !self.issuers.is_empty() {
            let iss = lookup(claims, "iss").ok_or_else(|| TokenError::MissingClaim {
                claim: "iss".into(),
            })?;
            let iss = iss.as_str().ok_or_else(|| TokenError::InvalidClaim {
                claim: "iss".into(),
            })?;
            if !self.issuers.iter().any(|i| i == iss) {
                return Err(TokenError::WrongIssuer);
            }
        }
        if !self.audiences.is_empty() {
            let aud = lookup(claims, "aud").ok_or_else(|| TokenError::MissingClaim {
                claim: "aud".into(),
            })?;
            if !strings(aud, "aud")?
                .iter()
                .any(|a| self.audiences.iter().any(|x| x == a))
            {
                return Err(TokenError::WrongAudience);
            }
        }
        for name in &self.required {
            if lookup(claims, name).is_none() {
                return Err(TokenError::MissingClaim {
                    claim: name.clone(),
                });
            }
        }
        let principal = match lookup(claims, &self.principal) {
            None => {
                return Err(TokenError::MissingClaim {
                    claim: self.principal.clone(),
                })
            }
            Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => {
                s.clone()
            }
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: self.principal.clone(),
                })
            }
        };
        let mut groups: Vec<String> = Vec::new();
        if let Some(name) = &self.roles {
            if let Some(v) = lookup(claims, name) {
                for role in strings(v, name)? {
                    if !groups.iter().any(|g| g == role) {
                        groups.push(role.to_string());
                    }
                }
            }
        }
        Ok(Identity {
            principal,
            groups,
            attributes: self.attributes(claims),
            expires_at: Some(exp),
            source: Source::Token,
        })
    }
}

impl ClaimRules {
    /// The attributes a policy may bind roles on: the standard claims (see
    /// [`ATTRIBUTE_CLAIMS`]), then each configured claim present as text, number or boolean
    /// (an array gives one pair per such element; objects are skipped).
    fn attributes(&self, claims: &Map<String, Value>) -> Vec<(String, String)> {
        let mut out = attributes(claims);
        for name in &self.attributes {
            if ATTRIBUTE_CLAIMS.contains(&name.as_str()) {
                continue;
            }
            let mut add = |v: &Value| match v {
                Value::String(s) => out.push((name.clone(), s.clone())),
                Value::Number(n) => out.push((name.clone(), n.to_string())),
                Value::Bool(b) => out.push((name.clone(), b.to_string())),
                _ => {}
            };
            match lookup(claims, name) {
                Some(Value::Array(items)) => items.iter().for_each(&mut add),
                Some(v) => add(v),
                None => {}
            }
        }
        out
    }
}

/// The standard attributes (see [`ATTRIBUTE_CLAIMS`]), in that order, with one `aud` pair
/// per audience after `iss`.
fn attributes(claims: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ATTRIBUTE_CLAIMS {
        match claims.get(name) {
            Some(Value::String(s)) => out.push((name.to_string(), s.clone())),
            Some(Value::Bool(b)) if name == "email_verified" => {
                out.push((name.to_string(), b.to_string()))
            }
            _ => {}
        }
        if name == "iss" {
            if let Some(aud) = claims.get("aud") {
                for a in strings(aud, "aud").unwrap_or_default() {
                    out.push(("aud".to_string(), a.to_string()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            issuers: vec![],
            audiences: vec![],
            leeway: 0,
            required: vec![],
            principal: "sub".into(),
            roles: None,
            attributes: vec![],
        }
    }

    #[test]
    fn lookup_prefers_exact_names_then_paths() {
        let c = obj(json!({
            "https://example.com/roles": ["a"],
            "realm_access": {"roles": ["x", "y"]},
            "n": null,
            "deep": {"a": {"b": "c"}}
        }));
        assert_eq!(lookup(&c, "https://example.com/roles"), Some(&json!(["a"])));
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["x", "y"])));
        assert_eq!(lookup(&c, "deep.a.b"), Some(&json!("c")));
        assert_eq!(lookup(&c, "deep.a.b.c"), None);
        assert_eq!(lookup(&c, "deep.x"), None);
        assert_eq!(lookup(&c, "n"), None);
        assert_eq!(lookup(&c, "."), None);
    }

    #[test]
    fn numeric_dates() {
        let c = obj(json!({"a": 10, "b": 10.9, "c": -1, "d": "10", "e": 1e300}));
        assert_eq!(numeric_date(&c, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(&c, "zz"), Ok(None));
        assert_eq!(numeric_date(&c, "e"), Ok(Some(u64::MAX)));
        for bad in ["c", "d"] {
            assert_eq!(
                numeric_date(&c, bad),
                Err(TokenError::InvalidClaim { claim: bad.into() })
            );
        }
    }

    #[test]
    fn exp_is_exclusive_and_saturates() {
        assert!(!expired(100, 0, 99));
        assert!(expired(100, 0, 100));
        assert!(!expired(100, 5, 104));
        assert!(expired(100, 5, 105));
        assert!(!expired(u64::MAX, u64::MAX, u64::MAX - 1));
    }

    #[test]
    fn principal_must_be_text_without_control_characters() {
        for sub in [json!(""), json!(7), json!(["a"]), json!("a\nb")] {
            let c = obj(json!({"exp": 100, "sub": sub}));
            assert_eq!(
                rules().identity(&c, 0),
                Err(TokenError::InvalidClaim {
                    claim: "sub".into()
                })
            );
        }
    }

    #[test]
    fn roles_of_the_wrong_type_are_refused_and_duplicates_dropped() {
        let mut r = rules();
        r.roles = Some("groups".into());
        let c = obj(json!({"exp": 100, "sub": "a", "groups": ["x", 1]}));
        assert_eq!(
            r.identity(&c, 0),
            Err(TokenError::InvalidClaim {
                claim: "groups".into()
            })
        );
        let c = obj(json!({"exp": 100, "sub": "a", "groups": ["x", "y", "x"]}));
        assert_eq!(r.identity(&c, 0).unwrap().groups, ["x", "y"]);
        let c = obj(json!({"exp": 100, "sub": "a"}));
        assert!(r.identity(&c, 0).unwrap().groups.is_empty());
    }

    #[test]
    fn attributes_in_order() {
        let c = obj(json!({
            "exp": 100, "sub": "alice", "iss": "https://idp", "aud": ["a", "b"],
            "email": "alice@example.com", "email_verified": true, "azp": "cli", "other": "x"
        }));
        let attrs = rules().identity(&c, 0).unwrap().attributes;
        let want = [
            ("iss", "https://idp"),
            ("aud", "a"),
            ("aud", "b"),
            ("sub", "alice"),
            ("azp", "cli"),
            ("email", "alice@example.com"),
            ("email_verified", "true"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(attrs, want);
    }

    #[test]
    fn configured_claims_become_attributes() {
        let mut r = rules();
        r.attributes = vec![
            "pipeline_slug".into(),
            "build.number".into(),
            "tags".into(),
            "pr".into(),
            "obj".into(),
            "absent".into(),
            "sub".into(),
        ];
        let c = obj(json!({
            "exp": 100, "sub": "s", "pipeline_slug": "shop-deploy", "build": {"number": 42},
            "tags": ["a", 1, {"x": 1}], "pr": false, "obj": {"a": "b"}
        }));
        let attrs = r.identity(&c, 0).unwrap().attributes;
        let want = [
            ("sub", "s"),
            ("pipeline_slug", "shop-deploy"),
            ("build.number", "42"),
            ("tags", "a"),
            ("tags", "1"),
            ("pr", "false"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(attrs, want);
    }
}
