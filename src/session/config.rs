//! What a session is configured with, and the state all sessions of a worker share.

use std::rc::Rc;

use crate::identity::{JwtValidator, TokenCache};
use crate::policy::{DecisionCache, Policy};

use super::prepared::PreparedRegistry;

/// Explicit limits of a session; all configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted once the connection is past its handshake.
    pub max_frame_size: u32,
    /// Largest frame body accepted before that (OPTIONS, STARTUP, authentication).
    pub max_handshake_frame_size: u32,
    /// Largest AUTH_RESPONSE body the proxy reads a token from.
    pub max_auth_response_size: u32,
    /// Failed logins a connection may make before it is closed (`cql_max_auth_attempts`).
    pub max_auth_attempts: u32,
    /// How long a client has from its first byte to a successful login (`cql_auth_timeout`),
    /// in milliseconds; 0: no deadline.
    pub auth_timeout_ms: u64,
    /// Bytes the proxy may have queued toward either peer (its own answers, requests it
    /// copied, requests waiting behind a keyspace change) before it stops reading the peer
    /// that sends them (`cql_max_queued_size`).
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 * 1024 * 1024,
            max_handshake_frame_size: 64 * 1024,
            max_auth_response_size: 16 * 1024,
            max_auth_attempts: 3,
            auth_timeout_ms: 10_000,
            max_queued: 256 * 1024,
        }
    }
}

/// Which identities a server accepts (`cql_auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication by the proxy: the handshake passes through to Cassandra.
    #[default]
    Off,
    /// A JWT sent as the password of the CQL handshake.
    Token,
    /// The TLS client certificate NGINX verified.
    Certificate,
    /// A verified certificate when the client presents one, else a token.
    Any,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Token => "jwt",
            AuthMode::Certificate => "mtls",
            AuthMode::Any => "any",
        }
    }
}

/// Service credentials the proxy logs in to Cassandra with (`cql_upstream_auth`).
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamLogin {
    pub user: String,
    pub password: String,
}

impl core::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("UpstreamLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Everything a server block configures for its sessions. Built when the configuration is
/// loaded; shared, read-only, by all connections of the server.
#[derive(Default)]
pub struct Config {
    pub limits: Limits,
    pub auth: AuthMode,
    /// Token validation; required when `auth` accepts tokens.
    pub jwt: Option<JwtValidator>,
    /// Changes with every configuration load, so cached tokens of old keys are not used.
    pub generation: u64,
    pub upstream_login: Option<UpstreamLogin>,
    /// Authorization of every statement; `None` lets every authenticated identity through.
    pub policy: Option<Rc<Policy>>,
    /// What the audit log records, and how; `None`: no audit log.
    pub audit: Option<Rc<crate::audit::Settings>>,
    /// Logins of identities no policy binding gives a role are accepted
    /// (`cql_allow_unbound_identities on`); by default they are refused.
    pub allow_unbound: bool,
    /// What a request on a stream id with a request in flight gets (`cql_stream_reuse`).
    pub stream_reuse: StreamReuse,
    /// How the cluster is presented to clients (`cql_topology`): the rows of system.local
    /// and system.peers(_v2), and topology events, rewritten to name proxy addresses.
    pub topology: crate::topology::Topology,
    /// The server's counters (`cql_metrics_zone`); they count nothing until bound to a zone.
    pub metrics: Option<Rc<crate::metrics::ServerMeter>>,
    /// Per-identity limits (`cql_limit_req`, `cql_limit_conn`, `cql_limit_in_flight`).
    pub quotas: super::Quotas,
    /// `cql_dry_run on`: what the policy, the guardrails and the limits would refuse goes on,
    /// audited and counted as `would_deny`. Logins are refused either way.
    pub dry_run: bool,
    /// Logins a policy's roles name (`upstream_login`), with their passwords
    /// (`cql_upstream_credentials`).
    pub upstream_credentials: Option<Rc<UpstreamCredentials>>,
}

/// `cql_upstream_credentials FILE`: Cassandra logins by name.
#[derive(Default)]
pub struct UpstreamCredentials {
    logins: Vec<UpstreamLogin>,
}

impl UpstreamCredentials {
    /// `name:password` lines; `#` begins a comment line, blank lines are skipped, the
    /// password is the rest of the line after the first `:`.
    pub fn parse(text: &str) -> Result<UpstreamCredentials, String> {
        let mut logins: Vec<UpstreamLogin> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(format!("line {}: expected name:password", n + 1));
            };
            let user = user.trim();
            if user.is_empty() || password.is_empty() {
                return Err(format!("line {}: expected name:password", n + 1));
            }
            if logins.iter().any(|l| l.user == user) {
                return Err(format!("line {}: login \"{user}\" is duplicate", n + 1));
            }
            logins.push(UpstreamLogin {
                user: user.to_string(),
                password: password.to_string(),
            });
        }
        Ok(UpstreamCredentials { logins })
    }

    pub fn get(&self, user: &str) -> Option<&UpstreamLogin> {
        self.logins.iter().find(|l| l.user == user)
    }
}

/// `cql_stream_reuse`: a request on a stream id whose earlier request is not answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamReuse {
    /// A protocol violation: ERROR 0x000A on that stream, then the connection ends.
    #[default]
    Refuse,
    /// It waits in the proxy until the earlier answer is in, then is decided: for clients
    /// that reuse the stream id of a request they gave up on.
    Wait,
}

/// Capacities of the worker-wide caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub prepared: usize,
    /// Bytes the prepared registry may hold (statement texts and classified statements).
    pub prepared_bytes: usize,
    pub decisions: usize,
    pub tokens: usize,
}

impl Default for Capacities {
    fn default() -> Self {
        Capacities {
            prepared: 10_000,
            prepared_bytes: 32 * 1024 * 1024,
            decisions: 4096,
            tokens: 1024,
        }
    }
}

/// State shared by all sessions of one server block in one worker process.
pub struct Shared {
    /// Prepared ids seen in RESULT Prepared, with the statements they were prepared from.
    pub prepared: PreparedRegistry,
    pub decisions: DecisionCache,
    pub tokens: TokenCache,
}

impl Shared {
    pub fn new(capacities: Capacities) -> Self {
        Shared {
            prepared: PreparedRegistry::new(capacities.prepared, capacities.prepared_bytes),
            decisions: DecisionCache::new(capacities.decisions),
            tokens: TokenCache::new(capacities.tokens),
        }
    }
}
