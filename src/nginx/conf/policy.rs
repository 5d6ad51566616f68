//! `cql_policy` and how its decisions are kept: `cql_allow_unbound_identities`,
//! `cql_stream_reuse`, `cql_decision_cache` and `cql_prepared_cache`. The policy file is read
//! and checked when the directive is.

use std::rc::Rc;

use ngx::ffi::{ngx_command_t, NGX_CONF_TAKE1, NGX_CONF_TAKE12};
use ngx::ngx_string;

use super::{
    duplicate, inherit, on_off, one_of, parse_count, setting, At, Located, Reading, Refusal,
};
use crate::policy::Policy;
use crate::session::{AuthMode, StreamReuse};

/// Bounds of the `size=` of `cql_prepared_cache`.
const MIN_PREPARED_BYTES: usize = 1024 * 1024;
const MAX_PREPARED_BYTES: usize = 1024 * 1024 * 1024;

/// The policy directives of a block; `None` is unset.
#[derive(Default)]
pub(super) struct PolicyConf {
    /// `cql_policy`: `None` inside is `off`.
    pub file: Option<Located<Option<Rc<Policy>>>>,
    pub allow_unbound: Option<Located<bool>>,
    pub stream_reuse: Option<StreamReuse>,
    pub decision_cache: Option<usize>,
    pub prepared_cache: Option<usize>,
    /// The `size=` of `cql_prepared_cache`.
    pub prepared_bytes: Option<usize>,
}

pub(super) const COMMANDS: [ngx_command_t; 5] = [
    setting(ngx_string!("cql_policy"), NGX_CONF_TAKE1, set_policy),
    setting(
        ngx_string!("cql_allow_unbound_identities"),
        NGX_CONF_TAKE1,
        set_allow_unbound_identities,
    ),
    setting(
        ngx_string!("cql_stream_reuse"),
        NGX_CONF_TAKE1,
        set_stream_reuse,
    ),
    setting(
        ngx_string!("cql_decision_cache"),
        NGX_CONF_TAKE1,
        set_decision_cache,
    ),
    setting(
        ngx_string!("cql_prepared_cache"),
        NGX_CONF_TAKE12,
        set_prepared_cache,
    ),
];

setting_handlers! {
    set_policy => policy: policy;
    set_allow_unbound_identities => policy: allow_unbound_identities;
    set_stream_reuse => policy: stream_reuse;
    set_decision_cache => policy: decision_cache;
    set_prepared_cache => policy: prepared_cache;
}

/// `cql_policy file | off`
pub(super) fn policy(
    conf: &mut PolicyConf,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    if conf.file.is_some() {
        return duplicate();
    }
    conf.file = Some(reading.locate(match args {
        ["off"] => None,
        [file] => Some(Rc::new(Policy::load(&reading.path(file))?)),
        _ => return Err("takes a file or off".to_string()),
    }));
    Ok(())
}

/// `cql_allow_unbound_identities on | off`
pub(super) fn allow_unbound_identities(
    conf: &mut PolicyConf,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    if conf.allow_unbound.is_some() {
        return duplicate();
    }
    conf.allow_unbound = Some(reading.locate(on_off(args)?));
    Ok(())
}

/// `cql_stream_reuse refuse | wait`
fn stream_reuse(conf: &mut PolicyConf, args: &[&str], _: &Reading) -> Result<(), String> {
    if conf.stream_reuse.is_some() {
        return duplicate();
    }
    conf.stream_reuse = Some(one_of(
        args,
        &[("refuse", StreamReuse::Refuse), ("wait", StreamReuse::Wait)],
    )?);
    Ok(())
}

/// `cql_decision_cache entries`
fn decision_cache(conf: &mut PolicyConf, args: &[&str], _: &Reading) -> Result<(), String> {
    let n = parse_count(args.first().copied().unwrap_or_default())?;
    if conf.decision_cache.is_some() {
        return duplicate();
    }
    conf.decision_cache = Some(n);
    Ok(())
}

/// `cql_prepared_cache entries [size=SIZE]`
pub(super) fn prepared_cache(
    conf: &mut PolicyConf,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    if conf.prepared_cache.is_some() {
        return duplicate();
    }
    let (count, options) = args.split_first().unwrap_or((&"", &[]));
    let entries = parse_count(count)?;
    let mut bytes = None;
    for option in options {
        let Some(value) = option.strip_prefix("size=") else {
            return Err(format!("invalid parameter \"{option}\""));
        };
        if bytes.is_some() {
            return Err("has size= twice".to_string());
        }
        bytes = Some(
            (reading.parse_size)(value)
                .filter(|size| (MIN_PREPARED_BYTES..=MAX_PREPARED_BYTES).contains(size))
                .ok_or_else(|| format!("invalid size \"{value}\": expected 1m to 1024m"))?,
        );
    }
    conf.prepared_cache = Some(entries);
    conf.prepared_bytes = bytes;
    Ok(())
}

impl PolicyConf {
    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &PolicyConf) {
        inherit(&mut self.file, &parent.file);
        inherit(&mut self.allow_unbound, &parent.allow_unbound);
        inherit(&mut self.stream_reuse, &parent.stream_reuse);
        inherit(&mut self.decision_cache, &parent.decision_cache);
        inherit(&mut self.prepared_cache, &parent.prepared_cache);
        inherit(&mut self.prepared_bytes, &parent.prepared_bytes);
    }

    /// The policy, if `cql_policy` names a file.
    pub(super) fn policy(&self) -> Option<Rc<Policy>> {
        self.file.as_ref().and_then(|p| p.value.clone())
    }

    /// Where `cql_policy` is, if the block has one.
    pub(super) fn at(&self) -> Option<&At> {
        self.file.as_ref().map(|p| &p.at)
    }

    /// Whether unbound identities may log in.
    pub(super) fn allows_unbound(&self) -> bool {
        self.allow_unbound.as_ref().is_some_and(|a| a.value)
    }

    /// A policy decides for authenticated identities; authentication without one says so
    /// (`cql_policy off`).
    pub(super) fn check_auth(&self, auth: AuthMode, auth_at: Option<&At>) -> Result<(), Refusal> {
        let policy_file = self.file.as_ref().is_some_and(|p| p.value.is_some());
        if auth == AuthMode::Off && policy_file {
            return Err(Refusal::new(
                self.at(),
                "\"cql_policy\" needs \"cql_auth\": a policy decides for authenticated identities"
                    .to_string(),
            ));
        }
        if auth != AuthMode::Off && self.file.is_none() {
            return Err(Refusal::new(
                auth_at,
                "\"cql_auth\" needs \"cql_policy\": without a policy every authenticated identity \
                 may run any statement; say \"cql_policy off\" to authenticate only"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Only a policy file refuses a login for want of a role.
    pub(super) fn check_unbound(&self) -> Result<(), Refusal> {
        let policy_file = self.file.as_ref().is_some_and(|p| p.value.is_some());
        if let Some(allow) = self.allow_unbound.as_ref().filter(|a| a.value) {
            if !policy_file {
                return Err(Refusal::new(
                    Some(&allow.at),
                    "\"cql_allow_unbound_identities on\" needs a \"cql_policy\" file: without one \
                     no login is refused for want of a role"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }
}
