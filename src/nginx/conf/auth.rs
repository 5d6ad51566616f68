//! `cql_auth` and what it needs: the `cql_jwt_*` directives that say which tokens are good
//! and what they carry, `cql_token_cache`, and the logins the proxy uses toward Cassandra
//! (`cql_upstream_auth`, `cql_upstream_credentials`). Files are read when the directive is,
//! so an unreadable or malformed one fails at its line.

use std::path::PathBuf;
use std::rc::Rc;

use ngx::ffi::{ngx_command_t, NGX_CONF_1MORE, NGX_CONF_TAKE1, NGX_CONF_TAKE2};
use ngx::ngx_string;

use super::{duplicate, inherit, one_of, parse_count, setting, strings, Located, Reading, Refusal};
use crate::identity::{JwtSettings, JwtValidator};
use crate::session::{AuthMode, UpstreamCredentials, UpstreamLogin};

/// The authentication directives of a block; `None` is unset.
#[derive(Default)]
pub(super) struct AuthConf {
    pub mode: Option<Located<AuthMode>>,
    pub jwt_keys: Option<Vec<PathBuf>>,
    pub jwt_secret: Option<PathBuf>,
    pub jwt_algorithms: Option<Vec<String>>,
    pub jwt_issuers: Option<Vec<String>>,
    pub jwt_audiences: Option<Vec<String>>,
    pub jwt_leeway: Option<u64>,
    pub jwt_required_claims: Option<Vec<String>>,
    pub jwt_principal_claim: Option<String>,
    pub jwt_roles_claim: Option<String>,
    pub jwt_attribute_claims: Option<Vec<String>>,
    pub token_cache: Option<usize>,
    pub upstream_login: Option<UpstreamLogin>,
    /// `cql_upstream_credentials`: the logins, and the file they were read from.
    pub upstream_credentials: Option<Located<(Rc<UpstreamCredentials>, PathBuf)>>,
}

pub(super) const COMMANDS: [ngx_command_t; 14] = [
    setting(ngx_string!("cql_auth"), NGX_CONF_TAKE1, set_auth),
    setting(ngx_string!("cql_jwt_keys"), NGX_CONF_1MORE, set_jwt_keys),
    setting(
        ngx_string!("cql_jwt_secret"),
        NGX_CONF_TAKE1,
        set_jwt_secret,
    ),
    setting(
        ngx_string!("cql_jwt_algorithms"),
        NGX_CONF_1MORE,
        set_jwt_algorithms,
    ),
    setting(
        ngx_string!("cql_jwt_issuer"),
        NGX_CONF_1MORE,
        set_jwt_issuer,
    ),
    setting(
        ngx_string!("cql_jwt_audience"),
        NGX_CONF_1MORE,
        set_jwt_audience,
    ),
    setting(
        ngx_string!("cql_jwt_leeway"),
        NGX_CONF_TAKE1,
        set_jwt_leeway,
    ),
    setting(
        ngx_string!("cql_jwt_require_claims"),
        NGX_CONF_1MORE,
        set_jwt_require_claims,
    ),
    setting(
        ngx_string!("cql_jwt_claim_principal"),
        NGX_CONF_TAKE1,
        set_jwt_claim_principal,
    ),
    setting(
        ngx_string!("cql_jwt_claim_roles"),
        NGX_CONF_TAKE1,
        set_jwt_claim_roles,
    ),
    setting(
        ngx_string!("cql_jwt_claim_attributes"),
        NGX_CONF_1MORE,
        set_jwt_claim_attributes,
    ),
    setting(
        ngx_string!("cql_token_cache"),
        NGX_CONF_TAKE1,
        set_token_cache,
    ),
    setting(
        ngx_string!("cql_upstream_auth"),
        NGX_CONF_TAKE2,
        set_upstream_auth,
    ),
    setting(
        ngx_string!("cql_upstream_credentials"),
        NGX_CONF_TAKE1,
        set_upstream_credentials,
    ),
];

setting_handlers! {
    set_auth => auth: auth;
    set_jwt_keys => auth: jwt_keys;
    set_jwt_secret => auth: jwt_secret;
    set_jwt_algorithms => auth: jwt_algorithms;
    set_jwt_issuer => auth: jwt_issuer;
    set_jwt_audience => auth: jwt_audience;
    set_jwt_leeway => auth: jwt_leeway;
    set_jwt_require_claims => auth: jwt_require_claims;
    set_jwt_claim_principal => auth: jwt_claim_principal;
    set_jwt_claim_roles => auth: jwt_claim_roles;
    set_jwt_claim_attributes => auth: jwt_claim_attributes;
    set_token_cache => auth: token_cache;
    set_upstream_auth => auth: upstream_auth;
    set_upstream_credentials => auth: upstream_credentials;
}

/// `cql_auth off | jwt | mtls | any`
pub(super) fn auth(conf: &mut AuthConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    if conf.mode.is_some() {
        return duplicate();
    }
    let mode = one_of(
        args,
        &[
            ("off", AuthMode::Off),
            ("jwt", AuthMode::Token),
            ("mtls", AuthMode::Certificate),
            ("any", AuthMode::Any),
        ],
    )?;
    conf.mode = Some(reading.locate(mode));
    Ok(())
}

/// `cql_jwt_keys file ...`: JWKS or PEM files, read now.
fn jwt_keys(conf: &mut AuthConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    let keys: Vec<PathBuf> = args.iter().map(|a| reading.path(a)).collect();
    // Read now, so an unreadable or malformed file fails at this line.
    JwtValidator::load(&JwtSettings {
        keys: keys.clone(),
        ..JwtSettings::default()
    })?;
    conf.jwt_keys.get_or_insert_with(Vec::new).extend(keys);
    Ok(())
}

/// `cql_jwt_secret file`: the HMAC secret, read now.
pub(super) fn jwt_secret(
    conf: &mut AuthConf,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    if conf.jwt_secret.is_some() {
        return duplicate();
    }
    let file = reading.path(args.first().copied().unwrap_or_default());
    std::fs::read(&file)
        .map_err(|e| format!("cannot read JWT secret \"{}\": {e}", file.display()))?;
    conf.jwt_secret = Some(file);
    Ok(())
}

/// `cql_jwt_algorithms alg ...`: never `none`.
fn jwt_algorithms(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    for alg in args {
        if alg.eq_ignore_ascii_case("none") {
            return Err("the algorithm \"none\" is never allowed".to_string());
        }
    }
    conf.jwt_algorithms = Some(strings(args));
    Ok(())
}

/// `cql_jwt_issuer issuer ...`
fn jwt_issuer(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    conf.jwt_issuers
        .get_or_insert_with(Vec::new)
        .extend(strings(args));
    Ok(())
}

/// `cql_jwt_audience audience ...`
fn jwt_audience(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    conf.jwt_audiences
        .get_or_insert_with(Vec::new)
        .extend(strings(args));
    Ok(())
}

/// `cql_jwt_require_claims claim ...`
fn jwt_require_claims(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    conf.jwt_required_claims
        .get_or_insert_with(Vec::new)
        .extend(strings(args));
    Ok(())
}

/// `cql_jwt_leeway time`
fn jwt_leeway(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    if conf.jwt_leeway.is_some() {
        return duplicate();
    }
    conf.jwt_leeway = Some(parse_seconds(args.first().copied().unwrap_or_default())?);
    Ok(())
}

/// `cql_jwt_claim_principal claim`
fn jwt_claim_principal(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    if conf.jwt_principal_claim.is_some() {
        return duplicate();
    }
    conf.jwt_principal_claim = args.first().map(|a| a.to_string());
    Ok(())
}

/// `cql_jwt_claim_roles claim`
fn jwt_claim_roles(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    if conf.jwt_roles_claim.is_some() {
        return duplicate();
    }
    conf.jwt_roles_claim = args.first().map(|a| a.to_string());
    Ok(())
}

/// `cql_jwt_claim_attributes claim ...`
fn jwt_claim_attributes(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    conf.jwt_attribute_claims
        .get_or_insert_with(Vec::new)
        .extend(strings(args));
    Ok(())
}

/// `cql_token_cache entries`
fn token_cache(conf: &mut AuthConf, args: &[&str], _: &Reading) -> Result<(), String> {
    let n = parse_count(args.first().copied().unwrap_or_default())?;
    if conf.token_cache.is_some() {
        return duplicate();
    }
    conf.token_cache = Some(n);
    Ok(())
}

/// `cql_upstream_auth user password_file`: the service login toward Cassandra.
fn upstream_auth(conf: &mut AuthConf, args: &[&str], reading: &Reading) -> Result<(), String> {
    if conf.upstream_login.is_some() {
        return duplicate();
    }
    let [user, file] = args else {
        return Err("takes a user name and a password file".to_string());
    };
    let file = reading.path(file);
    let password = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read the password file \"{}\": {e}", file.display()))?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(format!("the password file \"{}\" is empty", file.display()));
    }
    conf.upstream_login = Some(UpstreamLogin {
        user: user.to_string(),
        password,
    });
    Ok(())
}

/// `cql_upstream_credentials file`: the logins the policy's roles use toward Cassandra.
fn upstream_credentials(
    conf: &mut AuthConf,
    args: &[&str],
    reading: &Reading,
) -> Result<(), String> {
    if conf.upstream_credentials.is_some() {
        return duplicate();
    }
    let file = reading.path(args.first().copied().unwrap_or_default());
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "cannot read the credentials file \"{}\": {e}",
            file.display()
        )
    })?;
    let credentials =
        UpstreamCredentials::parse(&text).map_err(|e| format!("\"{}\" {e}", file.display()))?;
    conf.upstream_credentials = Some(reading.locate((Rc::new(credentials), file)));
    Ok(())
}

impl AuthConf {
    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &AuthConf) {
        inherit(&mut self.mode, &parent.mode);
        inherit(&mut self.jwt_keys, &parent.jwt_keys);
        inherit(&mut self.jwt_secret, &parent.jwt_secret);
        inherit(&mut self.jwt_algorithms, &parent.jwt_algorithms);
        inherit(&mut self.jwt_issuers, &parent.jwt_issuers);
        inherit(&mut self.jwt_audiences, &parent.jwt_audiences);
        inherit(&mut self.jwt_leeway, &parent.jwt_leeway);
        inherit(&mut self.jwt_required_claims, &parent.jwt_required_claims);
        inherit(&mut self.jwt_principal_claim, &parent.jwt_principal_claim);
        inherit(&mut self.jwt_roles_claim, &parent.jwt_roles_claim);
        inherit(&mut self.jwt_attribute_claims, &parent.jwt_attribute_claims);
        inherit(&mut self.token_cache, &parent.token_cache);
        inherit(&mut self.upstream_login, &parent.upstream_login);
        inherit(&mut self.upstream_credentials, &parent.upstream_credentials);
    }

    /// `cql_auth`, or its default.
    pub(super) fn mode(&self) -> AuthMode {
        self.mode.as_ref().map(|a| a.value).unwrap_or_default()
    }

    /// Where `cql_auth` is, if the block has one.
    pub(super) fn at(&self) -> Option<&super::At> {
        self.mode.as_ref().map(|a| &a.at)
    }

    /// Tokens need keys to check them with.
    pub(super) fn check_keys(&self) -> Result<(), Refusal> {
        let auth = self.mode();
        let wants_tokens = matches!(auth, AuthMode::Token | AuthMode::Any);
        let has_keys = self.jwt_keys.is_some() || self.jwt_secret.is_some();
        if wants_tokens && !has_keys {
            return Err(Refusal::new(
                self.at(),
                format!(
                    "\"cql_auth {}\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\"",
                    auth.name()
                ),
            ));
        }
        Ok(())
    }

    /// What tokens are checked against.
    pub(super) fn jwt_settings(&self) -> JwtSettings {
        let defaults = JwtSettings::default();
        JwtSettings {
            keys: self.jwt_keys.clone().unwrap_or_default(),
            secret: self.jwt_secret.clone(),
            algorithms: self.jwt_algorithms.clone().unwrap_or_default(),
            issuers: self.jwt_issuers.clone().unwrap_or_default(),
            audiences: self.jwt_audiences.clone().unwrap_or_default(),
            leeway: self.jwt_leeway.unwrap_or(defaults.leeway),
            required_claims: self.jwt_required_claims.clone().unwrap_or_default(),
            principal_claim: self
                .jwt_principal_claim
                .clone()
                .unwrap_or(defaults.principal_claim),
            roles_claim: self.jwt_roles_claim.clone().or(defaults.roles_claim),
            attribute_claims: self.jwt_attribute_claims.clone().unwrap_or_default(),
        }
    }
}

/// `30s`, `2m`, `1h` or plain seconds, as NGINX writes times.
fn parse_seconds(value: &str) -> Result<u64, String> {
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid time \"{value}\""))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("invalid time \"{value}\": use s, m or h")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("invalid time \"{value}\""))
}
