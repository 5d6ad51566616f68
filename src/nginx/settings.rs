//! The Rust side of a server's configuration: the identity and policy directives, read and
//! checked when the configuration is loaded, so `nginx -t` reports every mistake with the
//! file and line of the directive.

use core::cell::RefCell;
use core::ffi::{c_char, c_void};
use std::net::SocketAddr;
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
use super::config::{self, At, SrvConf};
use crate::audit::{Filter, Settings as AuditSettings};
use crate::classify::Category;
use crate::identity::{JwtSettings, JwtValidator};
use crate::policy::Policy;
// MAX_COUNT: the largest cap of `cql_limit_conn` and `cql_limit_in_flight`.
use crate::limits::{Counter, MAX_COUNT};
use crate::session::{
    AuthMode, Capacities, Config, CountLimit, Limits, Quotas, RateLimit, Shared, StreamReuse,
    UpstreamCredentials, UpstreamLogin,
};
use crate::topology::Topology;

/// Each configuration load gets a new generation: cached tokens of old keys are not reused.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A directive's value and where it was read, for messages about combinations.
#[derive(Clone, Debug)]
pub(super) struct Located<T> {
    pub value: T,
    pub at: At,
}

/// Why a server's configuration is refused, and which directive to point at (`None`: the
/// line NGINX is reading).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub message: String,
    pub at: Option<At>,
}

impl Refusal {
    fn new(at: Option<&At>, message: String) -> Refusal {
        Refusal {
            message,
            at: at.cloned(),
        }
    }
}

/// What directives are read against.
pub(super) struct Reading<'a> {
    /// NGINX's configuration prefix: relative file names are read from it.
    pub prefix: &'a Path,
    /// Where the directive is.
    pub at: At,
    /// NGINX's size syntax (`16k`, `32m`).
    pub parse_size: fn(&str) -> Option<usize>,
}

impl Reading<'_> {
    /// `value`, read at this directive.
    fn locate<T>(&self, value: T) -> Located<T> {
        Located {
            value,
            at: self.at.clone(),
        }
    }
}

/// The largest `burst=` of `cql_limit_req`.
const MAX_BURST: u32 = 1_000_000;

/// Bounds of the `size=` of `cql_prepared_cache`.
const MIN_PREPARED_BYTES: usize = 1024 * 1024;
const MAX_PREPARED_BYTES: usize = 1024 * 1024 * 1024;

/// Directives of a `server` (or the `stream` block's defaults); `None` is unset.
#[derive(Default)]
pub struct Settings {
    /// Where the block (`server {` or `stream {`) begins.
    pub(super) block_at: Option<At>,
    /// The block's first `cql_*` directive other than `cql`, and where it is.
    first_directive: Option<Located<String>>,
    auth: Option<Located<AuthMode>>,
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
    /// The `size=` of `cql_prepared_cache`.
    prepared_bytes: Option<usize>,
    upstream_login: Option<UpstreamLogin>,
    /// `cql_policy`: `None` inside is `off`.
    policy: Option<Located<Option<Rc<Policy>>>>,
    allow_unbound: Option<Located<bool>>,
    stream_reuse: Option<StreamReuse>,
    /// `cql_topology`.
    topology: Option<Located<Layout>>,
    /// `cql_topology_node`: each node's address and the proxy address that fronts it.
    topology_nodes: Option<Located<Vec<(SocketAddr, SocketAddr)>>>,
    /// `cql_audit_log`: `Some(None)` is `off`.
    audit_log: Option<Option<Rc<Sink>>>,
    audit_categories: Option<Vec<Category>>,
    audit_exclude_categories: Option<Vec<Category>>,
    audit_keyspaces: Option<Vec<String>>,
    audit_exclude_keyspaces: Option<Vec<String>>,
    audit_denied_only: Option<bool>,
    audit_redact_literals: Option<bool>,
    /// `cql_limit_req`: zones and bursts, where the first is.
    limit_req: Option<Located<Vec<(String, u32)>>>,
    /// `cql_limit_conn` and `cql_limit_in_flight`: zones, what they count, and the caps.
    limit_counts: Option<Located<Vec<(String, Counter, u32)>>>,
    dry_run: Option<Located<bool>>,
    /// `cql_upstream_credentials`: the logins, and the file they were read from.
    upstream_credentials: Option<Located<(Rc<UpstreamCredentials>, PathBuf)>>,

    /// The server's counters, bound to the metrics zone once it exists.
    pub meter: Rc<crate::metrics::ServerMeter>,
    /// Built when the server's configuration is merged.
    pub built: Option<Built>,
}

/// `cql_topology`: how the cluster is presented to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Layout {
    Off,
    /// The proxy is the cluster; the addresses of every proxy instance that stands for it.
    Proxy(Vec<SocketAddr>),
    /// One proxy address per node, mapped by `cql_topology_node`.
    Nodes,
}

/// An `IP:PORT` of `cql_topology` or `cql_topology_node`; names are not resolved (drivers
/// are handed addresses, and a name could resolve differently later).
fn socket_address(arg: &str) -> Result<SocketAddr, String> {
    arg.parse().map_err(|_| {
        format!(
            "invalid address \"{arg}\": expected IP:PORT, e.g. 10.0.0.1:9042 or [2001:db8::1]:9042"
        )
    })
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
    /// The variables the limit keys use besides the identity's, by name and index.
    pub key_variables: Vec<(String, ngx_int_t)>,
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

    /// Notes a directive of this block, for [`Settings::needs_cql_on`].
    pub(super) fn note_directive(&mut self, name: &str, at: At) {
        if self.first_directive.is_none() {
            self.first_directive = Some(Located {
                value: name.to_string(),
                at,
            });
        }
    }

    /// A `cql_*` directive acts only with `cql on`: a server without it that has one of its
    /// own, or inherits one from the `stream` block without saying `cql off`, would pass CQL
    /// through unchecked while its configuration says otherwise. Checked before
    /// [`Settings::inherit`]; `says_cql`: the server has a `cql` directive of its own.
    pub(super) fn needs_cql_on(
        &self,
        enabled: bool,
        says_cql: bool,
        parent: &Settings,
    ) -> Result<(), Refusal> {
        if enabled {
            return Ok(());
        }
        if let Some(own) = &self.first_directive {
            return Err(Refusal::new(
                Some(&own.at),
                format!(
                    "\"{}\" needs \"cql on\"; without it this server passes CQL through unchecked",
                    own.value
                ),
            ));
        }
        match &parent.first_directive {
            Some(inherited) if !says_cql => Err(Refusal::new(
                self.block_at.as_ref(),
                format!(
                    "\"{}\" needs \"cql on\"; without it this server passes CQL through unchecked \
                     (\"{}\" is inherited from {}; say \"cql off\" in the server if that is meant)",
                    inherited.value, inherited.value, inherited.at
                ),
            )),
            _ => Ok(()),
        }
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
        take(&mut self.prepared_bytes, &parent.prepared_bytes);
        take(&mut self.upstream_login, &parent.upstream_login);
        take(&mut self.policy, &parent.policy);
        take(&mut self.allow_unbound, &parent.allow_unbound);
        take(&mut self.stream_reuse, &parent.stream_reuse);
        take(&mut self.topology, &parent.topology);
        take(&mut self.topology_nodes, &parent.topology_nodes);
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
        take(&mut self.limit_req, &parent.limit_req);
        take(&mut self.limit_counts, &parent.limit_counts);
        take(&mut self.dry_run, &parent.dry_run);
        take(&mut self.upstream_credentials, &parent.upstream_credentials);
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

    /// Directives that cannot work together, or that would let every identity through
    /// without the configuration saying so.
    pub(super) fn check_combination(&self) -> Result<(), Refusal> {
        let auth = self.auth();
        let auth_at = self.auth.as_ref().map(|a| &a.at);
        let wants_tokens = matches!(auth, AuthMode::Token | AuthMode::Any);
        let has_keys = self.jwt_keys.is_some() || self.jwt_secret.is_some();
        if wants_tokens && !has_keys {
            return Err(Refusal::new(
                auth_at,
                format!(
                    "\"cql_auth {}\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\"",
                    auth.name()
                ),
            ));
        }
        let policy_file = self.policy.as_ref().is_some_and(|p| p.value.is_some());
        if auth == AuthMode::Off && policy_file {
            return Err(Refusal::new(
                self.policy.as_ref().map(|p| &p.at),
                "\"cql_policy\" needs \"cql_auth\": a policy decides for authenticated identities"
                    .to_string(),
            ));
        }
        if auth != AuthMode::Off && self.policy.is_none() {
            return Err(Refusal::new(
                auth_at,
                "\"cql_auth\" needs \"cql_policy\": without a policy every authenticated identity \
                 may run any statement; say \"cql_policy off\" to authenticate only"
                    .to_string(),
            ));
        }
        self.check_topology(auth)?;
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

    /// `cql_topology nodes` needs its map; a map without it, or a layout without the gate
    /// that rewrites, would not do what it says.
    fn check_topology(&self, auth: AuthMode) -> Result<(), Refusal> {
        let layout = self.topology.as_ref();
        if let Some(layout) = layout.filter(|l| l.value != Layout::Off) {
            if auth == AuthMode::Off {
                return Err(Refusal::new(
                    Some(&layout.at),
                    "\"cql_topology\" needs \"cql_auth\": without it the proxy only watches and \
                     rewrites no answer"
                        .to_string(),
                ));
            }
        }
        match (layout.map(|l| &l.value), &self.topology_nodes) {
            (Some(Layout::Nodes), None) => Err(Refusal::new(
                layout.map(|l| &l.at),
                "\"cql_topology nodes\" needs \"cql_topology_node\": without a map every peer \
                 would be left out"
                    .to_string(),
            )),
            (None, Some(nodes)) => Err(Refusal::new(
                Some(&nodes.at),
                "\"cql_topology_node\" needs \"cql_topology nodes\"".to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// The topology sessions present: nothing is rewritten without the gate.
    fn topology(&self, auth: AuthMode) -> Topology {
        if auth == AuthMode::Off {
            return Topology::Off;
        }
        match self.topology.as_ref().map(|l| &l.value) {
            None => Topology::default(),
            Some(Layout::Off) => Topology::Off,
            Some(Layout::Proxy(instances)) => Topology::Proxy {
                instances: instances.clone(),
            },
            Some(Layout::Nodes) => Topology::Nodes {
                map: self
                    .topology_nodes
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_default(),
            },
        }
    }

    fn auth(&self) -> AuthMode {
        self.auth.as_ref().map(|a| a.value).unwrap_or_default()
    }

    /// Checks the combination of directives and builds what sessions use.
    pub(super) unsafe fn build(
        &mut self,
        cf: *mut ngx_conf_t,
        limits: Limits,
        enabled: bool,
    ) -> Result<(), Refusal> {
        if !enabled {
            return Ok(());
        }
        self.check_combination()?;
        let auth = self.auth();
        let auth_at = self.auth.as_ref().map(|a| a.at.clone());
        let refused = |message: String| Refusal {
            message,
            at: auth_at.clone(),
        };
        let jwt = if matches!(auth, AuthMode::Token | AuthMode::Any) {
            Some(JwtValidator::load(&self.jwt_settings()).map_err(refused)?)
        } else {
            None
        };
        let certificate_variables = if matches!(auth, AuthMode::Certificate | AuthMode::Any) {
            let verify = variable_index(cf, "ssl_client_verify").map_err(refused)?;
            let cert = variable_index(cf, "ssl_client_raw_cert").map_err(refused)?;
            Some((verify, cert))
        } else {
            None
        };
        let defaults = Capacities::default();
        let capacities = Capacities {
            prepared: self.prepared_cache.unwrap_or(defaults.prepared),
            prepared_bytes: self.prepared_bytes.unwrap_or(defaults.prepared_bytes),
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
        let quotas = self.quotas(cf, auth)?;
        let mut key_variables = Vec::new();
        for name in quotas.connection_variables() {
            // NGINX refuses an unknown variable when it initialises the variables.
            let index =
                variable_index_for(cf, name, "by a limit key").map_err(|message| Refusal {
                    message,
                    at: self.limit_req.as_ref().map(|l| l.at.clone()),
                })?;
            key_variables.push((name.to_string(), index));
        }
        let policy = self.policy.as_ref().and_then(|p| p.value.clone());
        self.check_upstream_logins(policy.as_deref())?;
        let dry_run = self.dry_run.as_ref().is_some_and(|d| d.value);
        let config = Config {
            limits,
            auth,
            jwt,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            upstream_login: self.upstream_login.clone(),
            policy,
            audit,
            allow_unbound: self.allow_unbound.as_ref().is_some_and(|a| a.value),
            stream_reuse: self.stream_reuse.unwrap_or_default(),
            topology: self.topology(auth),
            metrics: Some(self.meter.clone()),
            quotas,
            dry_run,
            upstream_credentials: self
                .upstream_credentials
                .as_ref()
                .map(|c| c.value.0.clone()),
        };
        self.built = Some(Built {
            config: Rc::new(config),
            shared: Rc::new(RefCell::new(Shared::new(capacities))),
            certificate_variables,
            audit: sink,
            key_variables,
        });
        Ok(())
    }

    /// The server's limits, their zones found among those the `stream` block declares.
    unsafe fn quotas(&self, cf: *mut ngx_conf_t, auth: AuthMode) -> Result<Quotas, Refusal> {
        let mut quotas = Quotas::default();
        if self.limit_req.is_none() && self.limit_counts.is_none() {
            if let Some(dry) = self.dry_run.as_ref().filter(|d| d.value) {
                if auth == AuthMode::Off {
                    return Err(Refusal::new(
                        Some(&dry.at),
                        "\"cql_dry_run\" needs \"cql_auth\": without it the proxy decides nothing"
                            .to_string(),
                    ));
                }
            }
            return Ok(quotas);
        }
        let first = self
            .limit_req
            .as_ref()
            .map(|l| &l.at)
            .or(self.limit_counts.as_ref().map(|l| &l.at));
        if auth == AuthMode::Off {
            return Err(Refusal::new(
                first,
                "the cql_limit_* directives need \"cql_auth\": the limits are per identity"
                    .to_string(),
            ));
        }
        let ctx = (*cf).ctx as *mut ngx::ffi::ngx_stream_conf_ctx_t;
        let Some(main) = super::metrics_zone::main_conf_of(ctx) else {
            return Err(Refusal::new(first, "no stream configuration".to_string()));
        };
        if let Some(reqs) = &self.limit_req {
            for (zone, burst) in &reqs.value {
                let Some((limit, rate)) = main.limits.rate(zone) else {
                    return Err(Refusal::new(
                        Some(&reqs.at),
                        format!("\"cql_limit_req\": unknown zone \"{zone}\": declare it with cql_limit_req_zone in the stream block"),
                    ));
                };
                if *burst > rate.max_burst() {
                    return Err(Refusal::new(
                        Some(&reqs.at),
                        format!(
                            "\"cql_limit_req\": burst={burst} of zone \"{zone}\" is too large \
                             for its rate {rate}: at most {}",
                            rate.max_burst()
                        ),
                    ));
                }
                quotas.rates.push(RateLimit {
                    zone: limit,
                    rate,
                    burst: *burst,
                });
            }
        }
        if let Some(counts) = &self.limit_counts {
            for (zone, counter, max) in &counts.value {
                let Some(limit) = main.limits.count(zone) else {
                    let directive = match counter {
                        Counter::Connections => "cql_limit_conn",
                        Counter::InFlight => "cql_limit_in_flight",
                    };
                    return Err(Refusal::new(
                        Some(&counts.at),
                        format!("\"{directive}\": unknown zone \"{zone}\": declare it with cql_limit_conn_zone in the stream block"),
                    ));
                };
                quotas.counts.push(CountLimit {
                    zone: limit,
                    counter: *counter,
                    max: *max,
                });
            }
        }
        Ok(quotas)
    }

    /// Every login the policy's roles name is in `cql_upstream_credentials`: a role whose
    /// login could not be used would have to fall back to the service login, which the
    /// policy says it must not.
    fn check_upstream_logins(&self, policy: Option<&Policy>) -> Result<(), Refusal> {
        let Some(policy) = policy else {
            return Ok(());
        };
        let policy_at = self.policy.as_ref().map(|p| &p.at);
        for (role, login) in policy.upstream_logins() {
            match &self.upstream_credentials {
                None => {
                    return Err(Refusal::new(
                        policy_at,
                        format!(
                            "role {role} of the policy logs in to Cassandra as \"{login}\": its \
                             password needs \"cql_upstream_credentials\""
                        ),
                    ))
                }
                Some(credentials) if credentials.value.0.get(login).is_none() => {
                    return Err(Refusal::new(
                        Some(&credentials.at),
                        format!(
                            "\"{}\" has no login \"{login}\", which role {role} of the policy \
                             logs in to Cassandra as",
                            credentials.value.1.display()
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Applies one directive; `args` excludes the directive's name.
    fn apply(&mut self, name: &str, args: &[&str], reading: &Reading) -> Result<(), String> {
        let duplicate = || Err("is duplicate".to_string());
        let path = |arg: &str| -> PathBuf {
            let p = Path::new(arg);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                reading.prefix.join(p)
            }
        };
        let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        match name {
            "cql_auth" => {
                if self.auth.is_some() {
                    return duplicate();
                }
                self.auth = Some(reading.locate(match args {
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
                }));
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
            "cql_token_cache" | "cql_decision_cache" => {
                let n = parse_count(args.first().copied().unwrap_or_default())?;
                let slot = match name {
                    "cql_token_cache" => &mut self.token_cache,
                    _ => &mut self.decision_cache,
                };
                if slot.is_some() {
                    return duplicate();
                }
                *slot = Some(n);
            }
            "cql_prepared_cache" => {
                if self.prepared_cache.is_some() {
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
                            .ok_or_else(|| {
                                format!("invalid size \"{value}\": expected 1m to 1024m")
                            })?,
                    );
                }
                self.prepared_cache = Some(entries);
                self.prepared_bytes = bytes;
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
            "cql_limit_req" => {
                let mut zone = None;
                let mut burst = 0;
                for arg in args {
                    if let Some(name) = arg.strip_prefix("zone=").filter(|n| !n.is_empty()) {
                        zone = Some(name.to_string());
                    } else if let Some(n) = arg.strip_prefix("burst=") {
                        burst = n
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n <= MAX_BURST)
                            .ok_or_else(|| {
                                format!("invalid burst \"{n}\": expected 0 to {MAX_BURST}")
                            })?;
                    } else {
                        return Err(format!("invalid parameter \"{arg}\""));
                    }
                }
                let Some(zone) = zone else {
                    return Err("takes zone=name [burst=N]".to_string());
                };
                let reqs = self
                    .limit_req
                    .get_or_insert_with(|| reading.locate(Vec::new()));
                if reqs.value.iter().any(|(z, _)| *z == zone) {
                    return Err(format!("names zone \"{zone}\" twice"));
                }
                reqs.value.push((zone, burst));
            }
            "cql_limit_conn" | "cql_limit_in_flight" => {
                let [zone, max] = args else {
                    return Err("takes a zone and a number".to_string());
                };
                let max = max
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        format!("invalid number \"{max}\": expected 1 to {MAX_COUNT}")
                    })?;
                let counter = match name {
                    "cql_limit_conn" => Counter::Connections,
                    _ => Counter::InFlight,
                };
                let counts = self
                    .limit_counts
                    .get_or_insert_with(|| reading.locate(Vec::new()));
                if counts
                    .value
                    .iter()
                    .any(|(z, c, _)| z == zone && *c == counter)
                {
                    return Err(format!("names zone \"{zone}\" twice"));
                }
                counts.value.push((zone.to_string(), counter, max));
            }
            "cql_dry_run" => {
                if self.dry_run.is_some() {
                    return duplicate();
                }
                self.dry_run = Some(reading.locate(on_off(args)?));
            }
            "cql_upstream_credentials" => {
                if self.upstream_credentials.is_some() {
                    return duplicate();
                }
                let file = path(args.first().copied().unwrap_or_default());
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    format!(
                        "cannot read the credentials file \"{}\": {e}",
                        file.display()
                    )
                })?;
                let credentials = UpstreamCredentials::parse(&text)
                    .map_err(|e| format!("\"{}\" {e}", file.display()))?;
                self.upstream_credentials = Some(reading.locate((Rc::new(credentials), file)));
            }
            "cql_policy" => {
                if self.policy.is_some() {
                    return duplicate();
                }
                self.policy = Some(reading.locate(match args {
                    ["off"] => None,
                    [file] => Some(Rc::new(Policy::load(&path(file))?)),
                    _ => return Err("takes a file or off".to_string()),
                }));
            }
            "cql_allow_unbound_identities" => {
                if self.allow_unbound.is_some() {
                    return duplicate();
                }
                self.allow_unbound = Some(reading.locate(on_off(args)?));
            }
            "cql_stream_reuse" => {
                if self.stream_reuse.is_some() {
                    return duplicate();
                }
                self.stream_reuse = Some(match args {
                    ["refuse"] => StreamReuse::Refuse,
                    ["wait"] => StreamReuse::Wait,
                    [other] => {
                        return Err(format!(
                            "invalid value \"{other}\": expected refuse or wait"
                        ))
                    }
                    _ => return Err("takes one value".to_string()),
                });
            }
            "cql_topology" => {
                if self.topology.is_some() {
                    return duplicate();
                }
                if let [layout @ ("off" | "nodes"), _, ..] = args {
                    return Err(format!("\"{layout}\" takes no addresses"));
                }
                let layout = match args {
                    ["off"] => Layout::Off,
                    ["nodes"] => Layout::Nodes,
                    ["proxy", addresses @ ..] => {
                        let mut instances = Vec::with_capacity(addresses.len());
                        for arg in addresses {
                            let address = socket_address(arg)?;
                            if instances.contains(&address) {
                                return Err(format!("lists {address} twice"));
                            }
                            instances.push(address);
                        }
                        Layout::Proxy(instances)
                    }
                    [other, ..] => {
                        return Err(format!(
                            "invalid value \"{other}\": expected off, proxy or nodes"
                        ))
                    }
                    [] => return Err("takes a value".to_string()),
                };
                self.topology = Some(reading.locate(layout));
            }
            "cql_topology_node" => {
                let [node, proxy] = args else {
                    return Err(
                        "takes a node's address and the proxy address that fronts it".to_string(),
                    );
                };
                let (node, proxy) = (socket_address(node)?, socket_address(proxy)?);
                let nodes = self
                    .topology_nodes
                    .get_or_insert_with(|| reading.locate(Vec::new()));
                if nodes.value.iter().any(|(n, _)| *n == node) {
                    return Err(format!("maps node {node} twice"));
                }
                if let Some((other, _)) = nodes.value.iter().find(|(_, p)| *p == proxy) {
                    return Err(format!(
                        "maps {proxy} to node {node}, but it fronts node {other} already"
                    ));
                }
                nodes.value.push((node, proxy));
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
                *slot = Some(on_off(args)?);
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

/// The index of a variable NGINX evaluates for the module; `Err`: it cannot, and why it is
/// needed.
unsafe fn variable_index_for(
    cf: *mut ngx_conf_t,
    name: &str,
    needed: &str,
) -> Result<ngx_int_t, String> {
    let mut s = ngx_str_t {
        len: name.len(),
        data: name.as_ptr() as *mut u8,
    };
    let index = ngx_stream_get_variable_index(cf, &mut s);
    if index == NGX_ERROR as ngx_int_t {
        return Err(format!("the variable \"${name}\" is needed {needed}"));
    }
    Ok(index)
}

/// A variable client certificates are read from.
unsafe fn variable_index(cf: *mut ngx_conf_t, name: &str) -> Result<ngx_int_t, String> {
    variable_index_for(cf, name, "to read client certificates (stream ssl module)")
}

/// The value of a directive that takes `on` or `off`.
fn on_off(args: &[&str]) -> Result<bool, String> {
    match args {
        ["on"] => Ok(true),
        ["off"] => Ok(false),
        _ => Err("takes on or off".to_string()),
    }
}

/// The handler of every directive kept in [`Settings`]: errors are reported with the
/// directive's file and line.
/// The words of the directive NGINX is reading, its name first (text that is not UTF-8 reads
/// as empty, which no directive accepts).
pub(super) unsafe fn args(cf: *mut ngx_conf_t) -> Vec<String> {
    let args = (*cf).args;
    if args.is_null() {
        return Vec::new();
    }
    let elts = (*args).elts as *const ngx_str_t;
    (0..(*args).nelts)
        .map(|i| {
            let s = &*elts.add(i);
            if s.data.is_null() {
                String::new()
            } else {
                let bytes = core::slice::from_raw_parts(s.data, s.len);
                core::str::from_utf8(bytes).unwrap_or("").to_string()
            }
        })
        .collect()
}

pub(super) unsafe extern "C" fn set_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let conf = &mut *(conf as *mut SrvConf);
    let Some(settings) = conf.settings.as_mut() else {
        return NGX_CONF_ERROR;
    };
    let args = args(cf);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some((name, rest)) = words.split_first() else {
        return NGX_CONF_ERROR;
    };
    let at = config::At::current(cf);
    settings.note_directive(name, at.clone());
    if *name == "cql_audit_log" {
        if settings.audit_log.is_some() {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "\"cql_audit_log\" is duplicate");
            return NGX_CONF_ERROR;
        }
        return match audit_log::parse(cf, rest, at) {
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
    let reading = Reading {
        prefix: &prefix,
        at,
        parse_size: config::parse_size,
    };
    match settings.apply(name, rest, &reading) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize) -> At {
        At(format!("nginx.conf:{line}"))
    }

    /// `16k` and `32m`, as NGINX reads sizes (enough for these tests).
    fn size(value: &str) -> Option<usize> {
        let (digits, scale) = match value.as_bytes().last() {
            Some(b'k') => (&value[..value.len() - 1], 1024),
            Some(b'm') => (&value[..value.len() - 1], 1024 * 1024),
            _ => (value, 1),
        };
        digits.parse::<usize>().ok().map(|n| n * scale)
    }

    /// Settings of `directives`, one `(name, args)` a line from line 1.
    fn settings(directives: &[(&str, &[&str])]) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (line, (name, args)) in directives.iter().enumerate() {
            let reading = Reading {
                prefix: Path::new("/"),
                at: at(line + 1),
                parse_size: size,
            };
            settings.note_directive(name, reading.at.clone());
            settings
                .apply(name, args, &reading)
                .map_err(|e| format!("\"{name}\" {e}"))?;
        }
        Ok(settings)
    }

    fn policy() -> Located<Option<Rc<Policy>>> {
        Located {
            value: Some(Rc::new(Policy::parse("[roles.reader]\n").unwrap())),
            at: at(9),
        }
    }

    fn secret() -> (&'static str, &'static [&'static str]) {
        // Read when applied: any readable file will do.
        ("cql_jwt_secret", &["/proc/self/cmdline"])
    }

    #[test]
    fn a_cql_directive_needs_cql_on() {
        let own = settings(&[("cql_auth", &["jwt"])]).unwrap();
        let none = Settings {
            block_at: Some(at(1)),
            ..Settings::default()
        };
        let refusal = own.needs_cql_on(false, false, &none).unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                message: "\"cql_auth\" needs \"cql on\"; without it this server passes CQL \
                          through unchecked"
                    .to_string(),
                at: Some(at(1)),
            }
        );
        // `cql off` in the server does not excuse its own directives.
        assert!(own.needs_cql_on(false, true, &none).is_err());
        assert!(own.needs_cql_on(true, true, &none).is_ok());

        // Inherited from the stream block: refused at the server, naming the directive.
        // cql_max_frame_size is kept in the C part; its handler notes it all the same.
        let mut parent = settings(&[]).unwrap();
        parent.note_directive("cql_max_frame_size", at(1));
        parent.note_directive("cql_auth", at(2));
        let server = Settings {
            block_at: Some(at(7)),
            ..Settings::default()
        };
        let refusal = server.needs_cql_on(false, false, &parent).unwrap_err();
        assert_eq!(refusal.at, Some(at(7)));
        assert!(
            refusal.message.starts_with(
                "\"cql_max_frame_size\" needs \"cql on\"; without it this server passes CQL \
                 through unchecked (\"cql_max_frame_size\" is inherited from nginx.conf:1;"
            ),
            "{}",
            refusal.message
        );
        // A server that says `cql off` means it; one that inherits `cql on` is checked.
        assert!(server.needs_cql_on(false, true, &parent).is_ok());
        assert!(server.needs_cql_on(true, false, &parent).is_ok());
        // Nothing to act on: nothing to refuse.
        assert!(server.needs_cql_on(false, false, &none).is_ok());
    }

    #[test]
    fn authentication_needs_a_policy_or_says_it_has_none() {
        let auth = ("cql_auth", &["jwt"][..]);
        let refusal = settings(&[auth, secret()])
            .unwrap()
            .check_combination()
            .unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                message: "\"cql_auth\" needs \"cql_policy\": without a policy every \
                          authenticated identity may run any statement; say \"cql_policy off\" \
                          to authenticate only"
                    .to_string(),
                at: Some(at(1)),
            }
        );
        let mut only = settings(&[auth, secret(), ("cql_policy", &["off"])]).unwrap();
        assert!(only.check_combination().is_ok());
        only.policy = Some(policy());
        assert!(only.check_combination().is_ok());
        // Keys are asked for first, as before.
        let refusal = settings(&[auth]).unwrap().check_combination().unwrap_err();
        assert_eq!(
            refusal.message,
            "\"cql_auth jwt\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\""
        );
        // Without authentication, no policy is needed, and `cql_policy off` is harmless.
        assert!(settings(&[]).unwrap().check_combination().is_ok());
        assert!(settings(&[("cql_policy", &["off"])])
            .unwrap()
            .check_combination()
            .is_ok());
        let policy_only = Settings {
            policy: Some(policy()),
            ..Settings::default()
        };
        let refusal = policy_only.check_combination().unwrap_err();
        assert!(refusal
            .message
            .starts_with("\"cql_policy\" needs \"cql_auth\""));
        assert_eq!(refusal.at, Some(at(9)));
    }

    #[test]
    fn unbound_identities_are_allowed_only_against_a_policy() {
        let base: [(&str, &[&str]); 2] = [("cql_auth", &["jwt"]), secret()];
        let mut on = settings(&[
            base[0],
            base[1],
            ("cql_policy", &["off"]),
            ("cql_allow_unbound_identities", &["on"]),
        ])
        .unwrap();
        let refusal = on.check_combination().unwrap_err();
        assert_eq!(refusal.at, Some(at(4)));
        assert!(
            refusal
                .message
                .starts_with("\"cql_allow_unbound_identities on\" needs a \"cql_policy\" file"),
            "{}",
            refusal.message
        );
        on.policy = Some(policy());
        assert!(on.check_combination().is_ok());
        let off = settings(&[
            base[0],
            base[1],
            ("cql_policy", &["off"]),
            ("cql_allow_unbound_identities", &["off"]),
        ])
        .unwrap();
        assert!(off.check_combination().is_ok());
        assert_eq!(
            settings(&[("cql_allow_unbound_identities", &["yes"])]).err(),
            Some("\"cql_allow_unbound_identities\" takes on or off".to_string())
        );
    }

    #[test]
    fn the_prepared_cache_is_bounded_by_entries_and_bytes() {
        let s = settings(&[("cql_prepared_cache", &["5000", "size=64m"])]).unwrap();
        assert_eq!(
            (s.prepared_cache, s.prepared_bytes),
            (Some(5000), Some(64 << 20))
        );
        let s = settings(&[("cql_prepared_cache", &["5000"])]).unwrap();
        assert_eq!((s.prepared_cache, s.prepared_bytes), (Some(5000), None));
        for (args, reason) in [
            (&["5000", "64m"][..], "invalid parameter \"64m\""),
            (
                &["5000", "size=512k"],
                "invalid size \"512k\": expected 1m to 1024m",
            ),
            (
                &["5000", "size=2048m"],
                "invalid size \"2048m\": expected 1m to 1024m",
            ),
            (
                &["5000", "size=lots"],
                "invalid size \"lots\": expected 1m to 1024m",
            ),
            (
                &["0"],
                "invalid number \"0\": expected 1 to 10000000 entries",
            ),
        ] {
            assert_eq!(
                settings(&[("cql_prepared_cache", args)]).err(),
                Some(format!("\"cql_prepared_cache\" {reason}")),
                "{args:?}"
            );
        }
        assert_eq!(
            settings(&[
                ("cql_prepared_cache", &["10"]),
                ("cql_prepared_cache", &["20"])
            ])
            .err(),
            Some("\"cql_prepared_cache\" is duplicate".to_string())
        );
    }

    #[test]
    fn a_policy_may_be_switched_off_in_a_server() {
        let mut server = settings(&[("cql_policy", &["off"])]).unwrap();
        let parent = Settings {
            policy: Some(policy()),
            ..Settings::default()
        };
        server.inherit(&parent);
        assert!(server.policy.as_ref().is_some_and(|p| p.value.is_none()));
        assert_eq!(
            settings(&[("cql_policy", &["a", "b"])]).err(),
            Some("\"cql_policy\" takes a file or off".to_string())
        );
    }
}
