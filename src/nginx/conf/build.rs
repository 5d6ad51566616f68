//! A server's settings: the groups' directives together, checked in combination when the
//! server is merged (so `nginx -t` names the directive that does not fit), and built into
//! what its sessions use.

use core::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use ngx::ffi::{
    ngx_conf_t, ngx_int_t, ngx_str_t, ngx_stream_conf_ctx_t, ngx_stream_get_variable_index,
    NGX_ERROR,
};

use super::super::audit_log::Sink;
use super::audit::AuditConf;
use super::auth::AuthConf;
use super::policy::PolicyConf;
use super::quotas::QuotasConf;
use super::topology::TopologyConf;
use super::{zones, At, Located, Refusal};
use crate::identity::JwtValidator;
use crate::policy::Policy;
use crate::session::{AuthMode, Capacities, Config, Limits, Shared};

/// Each configuration load gets a new generation: cached tokens of old keys are not reused.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Directives of a `server` (or the `stream` block's defaults), by group.
#[derive(Default)]
pub struct Settings {
    /// Where the block (`server {` or `stream {`) begins.
    pub(super) block_at: Option<At>,
    /// The block's first `cql_*` directive other than `cql`, and where it is.
    first_directive: Option<Located<String>>,
    pub(super) auth: AuthConf,
    pub(super) policy: PolicyConf,
    pub(super) topology: TopologyConf,
    pub(super) audit: AuditConf,
    pub(super) quotas: QuotasConf,

    /// The server's counters, bound to the metrics zone once it exists.
    pub meter: Rc<crate::metrics::ServerMeter>,
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
    /// The variables the limit keys use besides the identity's, by name and index.
    pub key_variables: Vec<(String, ngx_int_t)>,
}

impl Settings {
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
        self.auth.inherit(&parent.auth);
        self.policy.inherit(&parent.policy);
        self.topology.inherit(&parent.topology);
        self.audit.inherit(&parent.audit);
        self.quotas.inherit(&parent.quotas);
    }

    /// Directives that cannot work together, or that would let every identity through
    /// without the configuration saying so.
    pub(super) fn check_combination(&self) -> Result<(), Refusal> {
        let auth = self.auth.mode();
        self.auth.check_keys()?;
        self.policy.check_auth(auth, self.auth.at())?;
        self.topology.check(auth)?;
        self.policy.check_unbound()
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
        let auth = self.auth.mode();
        let auth_at = self.auth.at().cloned();
        let refused = |message: String| Refusal {
            message,
            at: auth_at.clone(),
        };
        let jwt = if matches!(auth, AuthMode::Token | AuthMode::Any) {
            Some(JwtValidator::load(&self.auth.jwt_settings()).map_err(refused)?)
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
            prepared: self.policy.prepared_cache.unwrap_or(defaults.prepared),
            prepared_bytes: self
                .policy
                .prepared_bytes
                .unwrap_or(defaults.prepared_bytes),
            decisions: self.policy.decision_cache.unwrap_or(defaults.decisions),
            tokens: self.auth.token_cache.unwrap_or(defaults.tokens),
        };
        let sink = self.audit.sink();
        let audit = sink.as_ref().map(|sink| Rc::new(self.audit.settings(sink)));
        let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
        let zones = zones::main_conf_of(ctx).map(|main| &main.limits);
        let quotas = self.quotas.quotas(zones, auth)?;
        let mut key_variables = Vec::new();
        for name in quotas.connection_variables() {
            // NGINX refuses an unknown variable when it initialises the variables.
            let index =
                variable_index_for(cf, name, "by a limit key").map_err(|message| Refusal {
                    message,
                    at: self.quotas.limit_req_at().cloned(),
                })?;
            key_variables.push((name.to_string(), index));
        }
        let policy = self.policy.policy();
        self.check_upstream_logins(policy.as_deref())?;
        let config = Config {
            limits,
            auth,
            jwt,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            upstream_login: self.auth.upstream_login.clone(),
            policy,
            audit,
            allow_unbound: self.policy.allows_unbound(),
            stream_reuse: self.policy.stream_reuse.unwrap_or_default(),
            topology: self.topology.presented(auth),
            metrics: Some(self.meter.clone()),
            quotas,
            dry_run: self.quotas.is_dry_run(),
            upstream_credentials: self
                .auth
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

    /// Every login the policy's roles name is in `cql_upstream_credentials`: a role whose
    /// login could not be used would have to fall back to the service login, which the
    /// policy says it must not.
    fn check_upstream_logins(&self, policy: Option<&Policy>) -> Result<(), Refusal> {
        let Some(policy) = policy else {
            return Ok(());
        };
        let policy_at = self.policy.at();
        for (role, login) in policy.upstream_logins() {
            match &self.auth.upstream_credentials {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{auth, policy, Reading};
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

    /// A directive as its handler reads it: its name and its group's reader.
    #[derive(Clone, Copy)]
    struct Directive(
        &'static str,
        fn(&mut Settings, &[&str], &Reading) -> Result<(), String>,
    );

    const CQL_AUTH: Directive =
        Directive("cql_auth", |s, args, r| auth::auth(&mut s.auth, args, r));
    const CQL_JWT_SECRET: Directive = Directive("cql_jwt_secret", |s, args, r| {
        auth::jwt_secret(&mut s.auth, args, r)
    });
    const CQL_POLICY: Directive = Directive("cql_policy", |s, args, r| {
        policy::policy(&mut s.policy, args, r)
    });
    const CQL_ALLOW_UNBOUND_IDENTITIES: Directive =
        Directive("cql_allow_unbound_identities", |s, args, r| {
            policy::allow_unbound_identities(&mut s.policy, args, r)
        });
    const CQL_PREPARED_CACHE: Directive = Directive("cql_prepared_cache", |s, args, r| {
        policy::prepared_cache(&mut s.policy, args, r)
    });

    /// Settings of `directives`, one `(directive, args)` a line from line 1, read as their
    /// handlers read them.
    fn settings(directives: &[(Directive, &[&str])]) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (line, (Directive(name, read), args)) in directives.iter().enumerate() {
            let reading = Reading {
                prefix: Path::new("/"),
                at: at(line + 1),
                parse_size: size,
            };
            settings.note_directive(name, reading.at.clone());
            read(&mut settings, args, &reading).map_err(|e| format!("\"{name}\" {e}"))?;
        }
        Ok(settings)
    }

    fn policy() -> Located<Option<Rc<Policy>>> {
        Located {
            value: Some(Rc::new(Policy::parse("[roles.reader]\n").unwrap())),
            at: at(9),
        }
    }

    /// Settings whose only directive is a policy file, read at line 9.
    fn policy_only() -> Settings {
        Settings {
            policy: PolicyConf {
                file: Some(policy()),
                ..PolicyConf::default()
            },
            ..Settings::default()
        }
    }

    fn secret() -> (Directive, &'static [&'static str]) {
        // Read when applied: any readable file will do.
        (CQL_JWT_SECRET, &["/proc/self/cmdline"])
    }

    #[test]
    fn a_cql_directive_needs_cql_on() {
        let own = settings(&[(CQL_AUTH, &["jwt"])]).unwrap();
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
        let auth = (CQL_AUTH, &["jwt"][..]);
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
        let mut only = settings(&[auth, secret(), (CQL_POLICY, &["off"])]).unwrap();
        assert!(only.check_combination().is_ok());
        only.policy.file = Some(policy());
        assert!(only.check_combination().is_ok());
        // Keys are asked for first, as before.
        let refusal = settings(&[auth]).unwrap().check_combination().unwrap_err();
        assert_eq!(
            refusal.message,
            "\"cql_auth jwt\" needs \"cql_jwt_keys\" or \"cql_jwt_secret\""
        );
        // Without authentication, no policy is needed, and `cql_policy off` is harmless.
        assert!(settings(&[]).unwrap().check_combination().is_ok());
        assert!(settings(&[(CQL_POLICY, &["off"])])
            .unwrap()
            .check_combination()
            .is_ok());
        let refusal = policy_only().check_combination().unwrap_err();
        assert!(refusal
            .message
            .starts_with("\"cql_policy\" needs \"cql_auth\""));
        assert_eq!(refusal.at, Some(at(9)));
    }

    #[test]
    fn unbound_identities_are_allowed_only_against_a_policy() {
        let base: [(Directive, &[&str]); 2] = [(CQL_AUTH, &["jwt"]), secret()];
        let mut on = settings(&[
            base[0],
            base[1],
            (CQL_POLICY, &["off"]),
            (CQL_ALLOW_UNBOUND_IDENTITIES, &["on"]),
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
        on.policy.file = Some(policy());
        assert!(on.check_combination().is_ok());
        let off = settings(&[
            base[0],
            base[1],
            (CQL_POLICY, &["off"]),
            (CQL_ALLOW_UNBOUND_IDENTITIES, &["off"]),
        ])
        .unwrap();
        assert!(off.check_combination().is_ok());
        assert_eq!(
            settings(&[(CQL_ALLOW_UNBOUND_IDENTITIES, &["yes"])]).err(),
            Some("\"cql_allow_unbound_identities\" takes on or off".to_string())
        );
    }

    #[test]
    fn the_prepared_cache_is_bounded_by_entries_and_bytes() {
        let s = settings(&[(CQL_PREPARED_CACHE, &["5000", "size=64m"])]).unwrap();
        assert_eq!(
            (s.policy.prepared_cache, s.policy.prepared_bytes),
            (Some(5000), Some(64 << 20))
        );
        let s = settings(&[(CQL_PREPARED_CACHE, &["5000"])]).unwrap();
        assert_eq!(
            (s.policy.prepared_cache, s.policy.prepared_bytes),
            (Some(5000), None)
        );
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
                settings(&[(CQL_PREPARED_CACHE, args)]).err(),
                Some(format!("\"cql_prepared_cache\" {reason}")),
                "{args:?}"
            );
        }
        assert_eq!(
            settings(&[(CQL_PREPARED_CACHE, &["10"]), (CQL_PREPARED_CACHE, &["20"])]).err(),
            Some("\"cql_prepared_cache\" is duplicate".to_string())
        );
    }

    #[test]
    fn a_policy_may_be_switched_off_in_a_server() {
        let mut server = settings(&[(CQL_POLICY, &["off"])]).unwrap();
        server.inherit(&policy_only());
        assert!(server
            .policy
            .file
            .as_ref()
            .is_some_and(|p| p.value.is_none()));
        assert_eq!(
            settings(&[(CQL_POLICY, &["a", "b"])]).err(),
            Some("\"cql_policy\" takes a file or off".to_string())
        );
    }
}
