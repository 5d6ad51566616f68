//! The Rust side of a server's configuration: the identity and policy directives, read and
//! checked when the configuration is loaded, so `nginx -t` reports every mistake with the
//! file and line of the directive.

use core::cell::RefCell;
use core::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::{
    ngx_command_t, ngx_conf_t, ngx_int_t, ngx_pool_cleanup_add, ngx_pool_t, ngx_str_t,
    ngx_stream_get_variable_index, NGX_ERROR, NGX_LOG_EMERG,
};
use ngx::ngx_conf_log_error;

use super::audit_log::{self, Sink};
use super::config::SrvConf;
use crate::audit::{Filter, Settings as AuditSettings};
use crate::classify::Category;
use crate::identity::{JwtSettings, JwtValidator};
use crate::policy::Policy;
use crate::session::{AuthMode, Capacities, Config, Limits, Shared, UpstreamLogin};

/// Each configuration load gets a new generation: cached tokens of old keys are not reused.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Directives of a `server` (or the `stream` block's defaults); `None` is unset.
#[derive(Default)]
pub struct Settings {
    auth: Option<AuthMode>,
    jwt_keys: Option<Vec<PathBuf>>,
    jwt_secret: Option<PathBuf>,
    jwt_algorithms: Option<Vec<String>>,
    jwt_issuers: Option<Vec<String>>,
    jwt_audiences: Option<Vec<String>>,
    jwt_leeway: Option<u64>,
    jwt_required_claims: Option<Vec<String>>,
    jwt_principal_claim: Option<String>,
    jwt_roles_claim: Option<String>,
    jwt_attribute_claims: Option<Vec<String>>,
    token_cache: Option<usize>,
    decision_cache: Option<usize>,
    prepared_cache: Option<usize>,
    upstream_login: Option<UpstreamLogin>,
    policy: Option<Rc<Policy>>,
    /// `cql_audit_log`: `Some(None)` is `off`.
    audit_log: Option<Option<Rc<Sink>>>,
    audit_categories: Option<Vec<Category>>,
    audit_exclude_categories: Option<Vec<Category>>,
    audit_keyspaces: Option<Vec<String>>,
    audit_exclude_keyspaces: Option<Vec<String>>,
    audit_denied_only: Option<bool>,
    audit_redact_literals: Option<bool>,

    /// Built when the server's configuration is merged.
    pub built: Option<Built>,
}

/// What sessions of a server use.
pub struct Built {
    pub config: Rc<Config>,
    /// Per worker: each worker process has its own copy after fork.
    pub shared: Rc<RefCell<Shared>>,
    /// `$ssl_client_verify` and `$ssl_client_raw_cert`, when certificates are accepted.
    pub certificate_variables: Option<(ngx_int_t, ngx_int_t)>,
    /// Where audit lines go, when the server has an audit log.
    pub audit: Option<Rc<Sink>>,
}

impl Settings {
    /// Allocates settings owned by `pool`: dropped when the pool is destroyed.
    pub(super) unsafe fn create(pool: *mut ngx_pool_t) -> Option<*mut Settings> {
        let cleanup = ngx_pool_cleanup_add(pool, 0);
        if cleanup.is_null() {
            return None;
        }
        let settings = Box::into_raw(Box::<Settings>::default());
        (*cleanup).handler = Some(drop_settings);
        (*cleanup).data = settings.cast();
        Some(settings)
    }

    /// Unset directives take the `stream` block's values.
    pub(super) fn inherit(&mut self, parent: &Settings) {
        fn take<T: Clone>(value: &mut Option<T>, parent: &Option<T>) {
            if value.is_none() {
                value.clone_from(parent);
            }
        }
        take(&mut self.auth, &parent.auth);
        take(&mut self.jwt_keys, &parent.jwt_keys);
        take(&mut self.jwt_secret, &parent.jwt_secret);
        take(&mut self.jwt_algorithms, &parent.jwt_algorithms);
        take(&mut self.jwt_issuers, &parent.jwt_issuers);
        take(&mut self.jwt_audiences, &parent.jwt_audiences);
        take(&mut self.jwt_leeway, &parent.jwt_leeway);
        take(&mut self.jwt_required_claims, &parent.jwt_required_claims);
        take(&mut self.jwt_principal_claim, &parent.jwt_principal_claim);
        take(&mut self.jwt_roles_claim, &parent.jwt_roles_claim);
        take(&mut self.jwt_attribute_claims, &parent.jwt_attribute_claims);
        take(&mut self.token_cache, &parent.token_cache);
        take(&mut self.decision_cache, &parent.decision_cache);
        take(&mut self.prepared_cache, &parent.prepared_cache);
        take(&mut self.upstream_login, &parent.upstream_login);
        take(&mut self.policy, &parent.policy);
        take(&mut self.audit_log, &parent.audit_log);
        take(&mut self.audit_categories, &parent.audit_categories);
        take(
            &mut self.audit_exclude_categories,
            &parent.audit_exclude_categories,
        );
        take(&mut self.audit_keyspaces, &parent.audit_keyspaces);
        take(
            &mut self.audit_exclude_keyspaces,
            &parent.audit_exclude_keyspaces,
        );
        take(&mut self.audit_denied_only, &parent.audit_denied_only);
        take(
            &mut self.audit_redact_literals,
            &parent.audit_redact_literals,
        );
    }

    fn jwt_settings(&self) -> JwtSettings {
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

    /// Checks the combination of directives and builds what sessions use.
    pub(super) unsafe fn build(
        &mut self,
        cf: *mut ngx_conf_t,
        limits: Limits,
        enabled: bool,
    ) -> Result<(), String> {
        if !enabled {
            return Ok(());
        }
        let auth = self.auth.unwrap_or_default();
        let wants_tokens = matches!(auth, AuthMode::Token | AuthMode::Any);
        let has_keys = self.jwt_keys.is_some() || self.jwt_secret.is_some();
        if wants_tokens && !has_keys {
            return Err(format!(
                "\"cql_auth {}\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\"",
                auth.name()
            ));
        }
        if auth == AuthMode::Off && self.policy.is_some() {
            return Err(
                "\"cql_policy\" needs \"cql_auth\": a policy decides for authenticated identities"
                    .to_string(),
            );
        }
        let jwt = if wants_tokens {
            Some(JwtValidator::load(&self.jwt_settings())?)
        } else {
            None
        };
        let certificate_variables = if matches!(auth, AuthMode::Certificate | AuthMode::Any) {
            let verify = variable_index(cf, "ssl_client_verify")?;
            let cert = variable_index(cf, "ssl_client_raw_cert")?;
            Some((verify, cert))
        } else {
            None
        };
        let defaults = Capacities::default();
        let capacities = Capacities {
            prepared: self.prepared_cache.unwrap_or(defaults.prepared),
            decisions: self.decision_cache.unwrap_or(defaults.decisions),
            tokens: self.token_cache.unwrap_or(defaults.tokens),
        };
        let sink = self.audit_log.clone().flatten();
        let audit = sink.as_ref().map(|sink| {
            let defaults = Filter::default();
            Rc::new(AuditSettings {
                format: sink.format,
                filter: Filter {
                    categories: self.audit_categories.clone(),
                    exclude_categories: self.audit_exclude_categories.clone().unwrap_or_default(),
                    keyspaces: self.audit_keyspaces.clone(),
                    exclude_keyspaces: self
                        .audit_exclude_keyspaces
                        .clone()
                        .unwrap_or(defaults.exclude_keyspaces),
                    denied_only: self.audit_denied_only.unwrap_or(false),
                },
                redact_literals: self.audit_redact_literals.unwrap_or(false),
            })
        });
        let config = Config {
            limits,
            auth,
            jwt,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            upstream_login: self.upstream_login.clone(),
            policy: self.policy.clone(),
            audit,
        };
        self.built = Some(Built {
            config: Rc::new(config),
            shared: Rc::new(RefCell::new(Shared::new(capacities))),
            certificate_variables,
            audit: sink,
        });
        Ok(())
    }

    /// Applies one directive; `args` excludes the directive's name.
    fn apply(&mut self, name: &str, args: &[&str], prefix: &Path) -> Result<(), String> {
        let duplicate = || Err("is duplicate".to_string());
        let path = |arg: &str| -> PathBuf {
            let p = Path::new(arg);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                prefix.join(p)
            }
        };
        let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        match name {
            "cql_auth" => {
                if self.auth.is_some() {
                    return duplicate();
                }
                self.auth = Some(match args {
                    ["off"] => AuthMode::Off,
                    ["jwt"] => AuthMode::Token,
                    ["mtls"] => AuthMode::Certificate,
                    ["any"] => AuthMode::Any,
                    [other] => {
                        return Err(format!(
                            "invalid value \"{other}\": expected off, jwt, mtls or any"
                        ))
                    }
                    _ => return Err("takes one value".to_string()),
                });
            }
            "cql_jwt_keys" => {
                let keys: Vec<PathBuf> = args.iter().map(|a| path(a)).collect();
                // Read now, so an unreadable or malformed file fails at this line.
                JwtValidator::load(&JwtSettings {
                    keys: keys.clone(),
                    ..JwtSettings::default()
                })?;
                self.jwt_keys.get_or_insert_with(Vec::new).extend(keys);
            }
            "cql_jwt_secret" => {
                if self.jwt_secret.is_some() {
                    return duplicate();
                }
                let file = path(args.first().copied().unwrap_or_default());
                std::fs::read(&file)
                    .map_err(|e| format!("cannot read JWT secret \"{}\": {e}", file.display()))?;
                self.jwt_secret = Some(file);
            }
            "cql_jwt_algorithms" => {
                for alg in args {
                    if alg.eq_ignore_ascii_case("none") {
                        return Err("the algorithm \"none\" is never allowed".to_string());
                    }
                }
                self.jwt_algorithms = Some(strings(args));
            }
            "cql_jwt_issuer" => self
                .jwt_issuers
                .get_or_insert_with(Vec::new)
                .extend(strings(args)),
            "cql_jwt_audience" => self
                .jwt_audiences
                .get_or_insert_with(Vec::new)
                .extend(strings(args)),
            "cql_jwt_require_claims" => self
                .jwt_required_claims
                .get_or_insert_with(Vec::new)
                .extend(strings(args)),
            "cql_jwt_leeway" => {
                if self.jwt_leeway.is_some() {
                    return duplicate();
                }
                self.jwt_leeway = Some(parse_seconds(args.first().copied().unwrap_or_default())?);
            }
            "cql_jwt_claim_principal" => {
                if self.jwt_principal_claim.is_some() {
                    return duplicate();
                }
                self.jwt_principal_claim = args.first().map(|a| a.to_string());
            }
            "cql_jwt_claim_roles" => {
                if self.jwt_roles_claim.is_some() {
                    return duplicate();
                }
                self.jwt_roles_claim = args.first().map(|a| a.to_string());
            }
            "cql_jwt_claim_attributes" => self
                .jwt_attribute_claims
                .get_or_insert_with(Vec::new)
                .extend(strings(args)),
            "cql_token_cache" | "cql_decision_cache" | "cql_prepared_cache" => {
                let n = parse_count(args.first().copied().unwrap_or_default())?;
                let slot = match name {
                    "cql_token_cache" => &mut self.token_cache,
                    "cql_decision_cache" => &mut self.decision_cache,
                    _ => &mut self.prepared_cache,
                };
                if slot.is_some() {
                    return duplicate();
                }
                *slot = Some(n);
            }
            "cql_upstream_auth" => {
                if self.upstream_login.is_some() {
                    return duplicate();
                }
                let [user, file] = args else {
                    return Err("takes a user name and a password file".to_string());
                };
                let file = path(file);
                let password = std::fs::read_to_string(&file).map_err(|e| {
                    format!("cannot read the password file \"{}\": {e}", file.display())
                })?;
                let password = password.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    return Err(format!("the password file \"{}\" is empty", file.display()));
                }
                self.upstream_login = Some(UpstreamLogin {
                    user: user.to_string(),
                    password,
                });
            }
            "cql_policy" => {
                if self.policy.is_some() {
                    return duplicate();
                }
                let file = path(args.first().copied().unwrap_or_default());
                self.policy = Some(Rc::new(Policy::load(&file)?));
            }
            "cql_audit_categories" | "cql_audit_exclude_categories" => {
                let slot = match name {
                    "cql_audit_categories" => &mut self.audit_categories,
                    _ => &mut self.audit_exclude_categories,
                };
                if slot.is_some() {
                    return duplicate();
                }
                let categories = args
                    .iter()
                    .map(|a| category(a))
                    .collect::<Result<Vec<_>, _>>()?;
                *slot = Some(categories);
            }
            "cql_audit_keyspaces" | "cql_audit_exclude_keyspaces" => {
                let slot = match name {
                    "cql_audit_keyspaces" => &mut self.audit_keyspaces,
                    _ => &mut self.audit_exclude_keyspaces,
                };
                if slot.is_some() {
                    return duplicate();
                }
                *slot = Some(match args {
                    ["none"] => Vec::new(),
                    _ => strings(args),
                });
            }
            "cql_audit_denied_only" | "cql_audit_redact_literals" => {
                let slot = match name {
                    "cql_audit_denied_only" => &mut self.audit_denied_only,
                    _ => &mut self.audit_redact_literals,
                };
                if slot.is_some() {
                    return duplicate();
                }
                *slot = Some(match args {
                    ["on"] => true,
                    ["off"] => false,
                    _ => return Err("takes on or off".to_string()),
                });
            }
            _ => return Err("is not a directive of this module".to_string()),
        }
        Ok(())
    }
}

unsafe extern "C" fn drop_settings(data: *mut c_void) {
    drop(Box::from_raw(data as *mut Settings));
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

/// An audit category by Cassandra's name (`QUERY`, `DML`, ...), in any case.
fn category(name: &str) -> Result<Category, String> {
    const ALL: [Category; 8] = [
        Category::Query,
        Category::Dml,
        Category::Ddl,
        Category::Dcl,
        Category::Auth,
        Category::Prepare,
        Category::Error,
        Category::Other,
    ];
    ALL.into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!(
                "invalid category \"{name}\": expected QUERY, DML, DDL, DCL, AUTH, PREPARE, ERROR or OTHER"
            )
        })
}

fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid number \"{value}\": expected 1 to 10000000 entries"
        )),
    }
}

unsafe fn variable_index(cf: *mut ngx_conf_t, name: &str) -> Result<ngx_int_t, String> {
    let mut s = ngx_str_t {
        len: name.len(),
        data: name.as_ptr() as *mut u8,
    };
    let index = ngx_stream_get_variable_index(cf, &mut s);
    if index == NGX_ERROR as ngx_int_t {
        return Err(format!(
            "the variable \"${name}\" is needed to read client certificates (stream ssl module)"
        ));
    }
    Ok(index)
}

/// The handler of every directive kept in [`Settings`]: errors are reported with the
/// directive's file and line.
pub(super) unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut SrvConf);
    let Some(settings) = conf.settings.as_mut() else {
        return NGX_CONF_ERROR;
    };
    let args = (*cf).args;
    let words: Vec<&str> = if args.is_null() {
        Vec::new()
    } else {
        let elts = (*args).elts as *const ngx_str_t;
        (0..(*args).nelts)
            .map(|i| {
                let s = &*elts.add(i);
                if s.data.is_null() {
                    ""
                } else {
                    core::str::from_utf8(core::slice::from_raw_parts(s.data, s.len)).unwrap_or("")
                }
            })
            .collect()
    };
    let Some((name, rest)) = words.split_first() else {
        return NGX_CONF_ERROR;
    };
    if *name == "cql_audit_log" {
        if settings.audit_log.is_some() {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"cql_audit_log\" is duplicate");
            return NGX_CONF_ERROR;
        }
        return match audit_log::parse(cf, rest) {
            Ok(sink) => {
                settings.audit_log = Some(sink.map(Rc::new));
                NGX_CONF_OK
            }
            Err(message) if message.is_empty() => NGX_CONF_ERROR,
            Err(message) => {
                ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"cql_audit_log\" {}", message);
                NGX_CONF_ERROR
            }
        };
    }
    let prefix = conf_prefix(cf);
    match settings.apply(name, rest, &prefix) {
        Ok(()) => NGX_CONF_OK,
        Err(message) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"{}\" {}", name, message);
            NGX_CONF_ERROR
        }
    }
}

/// The folder relative paths are read from: NGINX's configuration prefix.
unsafe fn conf_prefix(cf: *mut ngx_conf_t) -> PathBuf {
    let cycle = (*cf).cycle;
    if cycle.is_null() {
        return PathBuf::new();
    }
    let p = &(*cycle).conf_prefix;
    if p.data.is_null() {
        return PathBuf::new();
    }
    let bytes = core::slice::from_raw_parts(p.data, p.len);
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}
