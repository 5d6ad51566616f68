//! The policy file as TOML gives it (serde, every table with `deny_unknown_fields`), with
//! the byte spans of the values that later checks report on. [`super::model`] turns it
//! into the compiled policy.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::error::PolicyError;

/// The whole file: `[roles.NAME]` tables and `[[bind]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    #[serde(default)]
    pub roles: BTreeMap<Spanned<String>, Spanned<RoleSpec>>,
    #[serde(default)]
    pub bind: Vec<Spanned<BindSpec>>,
}

/// `[roles.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Roles whose grants, denies and guardrails this role also holds.
    #[serde(default)]
    pub inherit: Option<Spanned<Names>>,
    #[serde(default)]
    pub grant: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    pub deny: Vec<Spanned<RuleSpec>>,
    #[serde(default)]
    pub guardrails: Option<GuardrailSpec>,
    /// Every permission on every resource (deny rules still apply), and the statements
    /// Cassandra keeps for superusers.
    #[serde(default)]
    pub superuser: Option<Spanned<bool>>,
    /// The login the proxy uses toward Cassandra for holders of this role (its password
    /// comes from the server's credentials file, never from the policy).
    #[serde(default)]
    pub upstream_login: Option<Spanned<String>>,
    /// Free text for people; not used in decisions.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
}

/// `{ permissions = [...], on = "..." }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(alias = "permission")]
    pub permissions: Spanned<Names>,
    pub on: Spanned<Names>,
}

/// `guardrails = { allow_filtering = false, max_page_size = 5000, ... }`: `false` refuses
/// the feature; the lists and numbers bound what requests may ask.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSpec {
    pub allow_filtering: Option<Spanned<bool>>,
    pub unlogged_batch: Option<Spanned<bool>>,
    pub truncate: Option<Spanned<bool>>,
    pub lwt: Option<Spanned<bool>>,
    /// The consistency levels SELECTs may use.
    pub read_consistency: Option<Spanned<Names>>,
    /// The consistency levels INSERT, UPDATE, DELETE and BATCH may use.
    pub write_consistency: Option<Spanned<Names>>,
    pub max_page_size: Option<Spanned<i64>>,
    pub max_batch_statements: Option<Spanned<i64>>,
    pub max_batch_bytes: Option<Spanned<i64>>,
    pub max_statement_bytes: Option<Spanned<i64>>,
}

/// `[[bind]]`: which identities get which roles. Every selector given must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindSpec {
    #[serde(alias = "roles")]
    pub role: Option<Spanned<Names>>,
    #[serde(alias = "principals")]
    pub principal: Option<Spanned<Names>>,
    #[serde(alias = "groups")]
    pub group: Option<Spanned<Names>>,
    #[serde(alias = "attribute")]
    pub attributes: Option<BTreeMap<String, Spanned<Names>>>,
    pub source: Option<Spanned<String>>,
}

/// A string or an array of strings (`role = "reader"` or `roles = ["reader", "writer"]`).
/// Each entry keeps its span; a single string takes the span of the value.
#[derive(Debug)]
pub enum Names {
    One(String),
    Many(Vec<Spanned<String>>),
}

/// Every entry of `names` with its byte span.
pub fn entries(names: &Spanned<Names>) -> Vec<(&str, std::ops::Range<usize>)> {
    match names.get_ref() {
        Names::One(s) => vec![(s.as_str(), names.span())],
        Names::Many(v) => v.iter().map(|s| (s.get_ref().as_str(), s.span())).collect(),
    }
}

/// Every entry of `names` with its byte span; none at all is an error at `names`, worded
/// `empty`.
pub fn nonempty_entries<'n>(
    text: &str,
    names: &'n Spanned<Names>,
    empty: impl Into<String>,
) -> Result<Vec<(&'n str, std::ops::Range<usize>)>, PolicyError> {
    let list = entries(names);
    if list.is_empty() {
        return Err(PolicyError::at(text, names.span(), empty));
    }
    Ok(list)
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Names, E> {
                Ok(Names::One(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Names, E> {
                Ok(Names::One(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    v.push(s);
                }
                Ok(Names::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}
