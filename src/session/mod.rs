//! The per-connection session: a sans-IO state machine, no NGINX types.
//!
//! The I/O layer (the NGINX filter) drives a [`Session`] the way quinn-proto's and rustls's
//! connections are driven: it feeds the bytes of either peer, in whatever chunks NGINX
//! hands over, with one [`Now`] read per call ([`Session::feed`]; also
//! [`Session::handle_timeout`], [`Session::open_audit`], [`Session::close`]), then polls one
//! queue of what leaves the session ([`Session::poll_output`]): bytes toward either peer,
//! audit lines, error-log lines, and the end of the connection with its reason. What
//! [`Session::feed`] answers says only whether the bytes just fed go on as they came
//! ([`Action::Forward`]) or were taken in ([`Action::Replace`]).
//!
//! # Rooms
//!
//! * [`transport`]: both directions' framing (frame readers, v5 segments and the units
//!   that re-frame them), watched, held or interleaved bytes, and the deferral of the
//!   proxy's own answers to a frame boundary of the server's stream.
//! * [`admission`]: what a client frame may be, checked on its header, and how a refusal
//!   ends the connection.
//! * [`handshake`]: STARTUP to READY, the identity from a token or a certificate, the
//!   proxy's own login to Cassandra.
//! * [`pipeline`] and [`requests`]: the gate. Stream ids name one request at a time, a
//!   keyspace change is a barrier the requests behind it wait for, every request is
//!   classified and decided against the policy ([`quotas`]: limits and guardrails).
//! * [`responses`]: what a RESULT teaches (a prepared id, a keyspace), and the end of a
//!   request's stream; [`cluster`]: topology answers and events rewritten to name the
//!   proxy.
//! * [`audit`], [`metrics`]: the records and counters of all of it; [`outbox`]: the
//!   queue the I/O layer polls.
//!
//! # Pass-through and rewriting
//!
//! Without `cql_auth` the session only watches: every chunk is forwarded as it came. With
//! it, the session is the gate: client bytes are held until the request they carry is
//! whole and decided, then copied on toward the server; a denied request is not forwarded
//! and the client gets an ERROR on the same stream id. Server bytes are forwarded as they
//! came after the handshake; only the few responses a decision depends on are decoded,
//! and topology answers and events are held whole and rewritten (`cql_topology`).
//!
//! # Order and back-pressure
//!
//! What the session holds and queues is reported by [`Session::queued_toward`]: the I/O
//! layer stops feeding a peer's bytes while that is above `cql_max_queued_size`, as NGINX
//! stops reading a peer whose bytes it cannot send on.

// A worker must never panic on a peer's bytes: with `panic = "abort"` a panic kills it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admission;
mod audit;
mod cluster;
mod config;
mod counters;
mod handshake;
mod metrics;
mod outbox;
mod pipeline;
mod prepared;
mod quotas;
mod requests;
mod responses;
mod transport;
mod unit;
mod violation;

pub use config::{
    AuthMode, Capacities, Config, Limits, Shared, StreamReuse, UpstreamCredentials, UpstreamLogin,
};
pub use counters::{Counters, DirectionCounters};
pub use outbox::Output;
pub use prepared::{Prepared, PreparedRegistry};
pub use quotas::{CountLimit, LimitZone, Quotas, RateLimit};
pub use violation::{Fault, Violation};

use core::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

pub use crate::codec::Direction;
use crate::codec::{Compression, FrameReader};
use crate::identity::Identity;
use crate::policy::RoleSet;
use crate::topology::Memo as TopologyMemo;

use audit::AuditLog;
use handshake::AuthState;
use outbox::Outbox;
use pipeline::{Queue, Streams, Waiting};
use responses::Pending;
use unit::Unit;

/// What the I/O layer does with the bytes it just fed.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Pass them on, unchanged.
    Forward,
    /// They were taken in: what goes on instead, if anything, is polled
    /// ([`Session::poll_output`]).
    Replace,
}

/// The time of a call, read once by the I/O layer for everything the call does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, milliseconds since the Unix epoch: audit records, token expiry.
    pub unix_ms: u64,
    /// A monotonic clock that every worker process reads the same, in microseconds:
    /// latencies and rate limits (0 when [`Session::reads_monotonic_clock`] says the
    /// session does not read it).
    pub monotonic_us: u64,
}

impl Now {
    /// The wall clock in whole seconds, as token expiry counts it.
    fn unix_s(self) -> u64 {
        self.unix_ms / 1000
    }
}

/// What the transport and the gate answer for the bytes they read: the I/O layer's
/// [`Action`], or the end of the connection, which [`Session::feed`] queues.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(super) enum Fed {
    Forward,
    Replace,
    /// Drop the bytes and end the connection once the client has been sent what the
    /// session queued for it, which ends with the refusal (the answer to a protocol version
    /// the proxy does not speak, so that drivers step down, or to a message the
    /// connection's state does not allow).
    Refuse(Violation),
    /// End the connection now.
    Close(Violation),
}

/// The state of one proxied CQL connection.
pub struct Session {
    config: Rc<Config>,
    shared: Rc<RefCell<Shared>>,
    client: FrameReader,
    server: FrameReader,
    version: Option<u8>,
    /// Compression the client asked for in STARTUP.
    compression: Compression,
    /// The server answered STARTUP (READY or AUTHENTICATE).
    server_started: bool,
    /// The client was sent READY or AUTHENTICATE: in v5, segments from now on.
    client_started: bool,
    counters: Counters,

    auth: AuthState,
    /// The verified TLS client certificate's identity, if NGINX verified one.
    certificate: Option<Identity>,
    identity: Option<Identity>,
    roles: Option<RoleSet>,
    /// The keyspace of the connection, from the last RESULT Set_keyspace.
    keyspace: Option<String>,
    pending: Vec<(i16, Pending)>,
    /// Streams with a request at the server, once authenticated.
    streams: Streams,
    /// Streams of the client messages in `parked`.
    parked_streams: Waiting,
    /// The stream of the keyspace change Cassandra has not answered yet.
    keyspace_change: Option<i16>,
    /// Client messages waiting behind that keyspace change.
    parked: Queue,
    /// A refusal was queued: the connection ends once it reached the client.
    closing: bool,
    /// Failed logins on this connection.
    failed_logins: u32,

    /// What leaves the session, polled by the I/O layer.
    out: Outbox,
    client_unit: Unit,
    server_unit: Unit,
    /// The body of the frame being decided (copied: the reader's buffer is reused).
    scratch: Vec<u8>,

    /// The proxy address the client connected to (`system.local` names it).
    local: Option<SocketAddr>,
    /// The client registered for TOPOLOGY_CHANGE or STATUS_CHANGE events.
    topology_events: bool,
    /// What the rewriter learnt from the connection's last `system.local` row.
    topology_memo: TopologyMemo,
    /// v3/v4: the server frame in progress goes on as it comes, copied, while the session
    /// watches the connection frame by frame.
    server_passing: bool,
    /// The server frame in progress is a topology answer or event: held and rewritten.
    server_rewrite: bool,
    /// The handshake just ended: the buffers it grew are freed once nothing is held.
    release_after_login: bool,

    /// Requests decided (allowed or denied) and denied.
    requests: u64,
    denied: u64,
    /// The audit trail, when the server has an audit log.
    audit: Option<Box<AuditLog>>,
    /// The time of the call in progress.
    clock: Now,
    /// When the client's first byte came (monotonic µs): the handshake's start.
    first_byte_us: Option<u64>,
    /// The audit category of the request being decided, for the metrics.
    request_category: crate::classify::Category,
    /// The server's counters, when they count into a zone (bound before any session).
    meter: Option<Rc<crate::metrics::ServerMeter>>,

    /// The guardrails of the identity's roles, from its login on.
    guards: crate::policy::Guards,
    /// The identity's keys in the limit zones, and what it holds there.
    held: quotas::Held,
    /// Variables of the connection the limit keys use (`$remote_addr`, ...), by name.
    connection_variables: Vec<(String, Vec<u8>)>,
    /// The request just decided holds requests in flight of the in-flight caps.
    holds_request: bool,
    /// Dry run: the first refusal of the request being decided, which it is forwarded with.
    would_deny: Option<requests::Refusal>,
    /// The Cassandra login the proxy logged in with for this connection (a role's, or the
    /// service's).
    upstream_user: Option<String>,
}

impl Session {
    /// A session that only watches (no `cql_auth`): it decides nothing, so it gets caches
    /// of its own that hold nothing rather than allocating worker-sized ones. It still counts
    /// its connection, bytes and violations into `metrics`.
    pub fn watching(limits: Limits, metrics: Option<Rc<crate::metrics::ServerMeter>>) -> Self {
        let config = Config {
            limits,
            metrics,
            ..Config::default()
        };
        let nothing = Capacities {
            prepared: 0,
            prepared_bytes: 0,
            decisions: 0,
            tokens: 0,
        };
        Session::new(
            Rc::new(config),
            Rc::new(RefCell::new(Shared::new(nothing))),
            None,
        )
    }

    /// A session of a server configured with `config`. `certificate` is the identity of the
    /// TLS client certificate NGINX verified, if any.
    pub fn new(
        config: Rc<Config>,
        shared: Rc<RefCell<Shared>>,
        certificate: Option<Identity>,
    ) -> Self {
        let limits = config.limits;
        let auth = if config.auth == AuthMode::Off {
            AuthState::PassThrough
        } else {
            AuthState::Startup
        };
        let meter = config.metrics.clone().filter(|m| m.is_bound());
        let session = Session {
            meter,
            config,
            shared,
            client: FrameReader::new(Direction::ClientToServer, limits.max_handshake_frame_size),
            server: FrameReader::new(Direction::ServerToClient, limits.max_handshake_frame_size),
            version: None,
            compression: Compression::None,
            server_started: false,
            client_started: false,
            counters: Counters::default(),
            auth,
            certificate,
            identity: None,
            roles: None,
            keyspace: None,
            pending: Vec::new(),
            streams: Streams::default(),
            parked_streams: Waiting::default(),
            keyspace_change: None,
            parked: Queue::default(),
            closing: false,
            failed_logins: 0,
            out: Outbox::default(),
            client_unit: Unit::default(),
            server_unit: Unit::default(),
            scratch: Vec::new(),
            local: None,
            topology_events: false,
            topology_memo: TopologyMemo::default(),
            server_passing: false,
            server_rewrite: false,
            release_after_login: false,
            requests: 0,
            denied: 0,
            audit: None,
            clock: Now::default(),
            first_byte_us: None,
            request_category: crate::classify::Category::Other,
            guards: crate::policy::Guards::default(),
            held: quotas::Held::default(),
            connection_variables: Vec::new(),
            holds_request: false,
            would_deny: None,
            upstream_user: None,
        };
        if let Some(meter) = session.meter() {
            meter.connection_opened();
        }
        session
    }

    /// The proxy address the client connected to, which `system.local` names in the
    /// `proxy` layout of `cql_topology`.
    pub fn set_local_address(&mut self, address: SocketAddr) {
        self.local = Some(address);
    }

    /// The protocol version of the connection, once its first frame was seen.
    pub fn protocol_version(&self) -> Option<u8> {
        self.version
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The authenticated identity, once the handshake succeeded.
    pub fn identity(&self) -> Option<&Identity> {
        match self.auth {
            AuthState::Authenticated => self.identity.as_ref(),
            _ => None,
        }
    }

    /// The connection's current keyspace.
    pub fn keyspace(&self) -> Option<&str> {
        self.keyspace.as_deref()
    }

    /// Requests decided so far (QUERY, PREPARE, EXECUTE, BATCH), allowed or not.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests denied so far.
    pub fn denied(&self) -> u64 {
        self.denied
    }

    /// How the client authenticated: `jwt` or `mtls`, once it did.
    pub fn auth_method(&self) -> Option<&'static str> {
        self.identity()
            .map(|identity| identity.source.auth_method())
    }

    /// The roles the policy gives the authenticated identity, in the policy file's order.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.identity()
            .and(self.config.policy.as_deref().zip(self.roles.as_ref()))
            .into_iter()
            .flat_map(|(policy, roles)| policy.roles_in_policy_order(roles))
    }

    /// Reads bytes that arrived from one peer at `now`, and says whether they go on as they
    /// came. Everything else the call produced is polled with [`Session::poll_output`].
    pub fn feed(&mut self, from: Direction, input: &[u8], now: Now) -> Action {
        self.advance(now);
        self.meter_bytes(from, input.len());
        let unix_s = now.unix_s();
        let mut fed = self.feed_bytes(from, input, unix_s);
        if matches!(fed, Fed::Forward | Fed::Replace) && !self.parked.is_empty() {
            if from == Direction::ServerToClient && fed == Fed::Forward {
                // Answers to what is released go after these bytes, not before them.
                self.out.to_client.extend_from_slice(input);
                fed = Fed::Replace;
            }
            // An answer came in, or a segment was verified: what waited may go on.
            if let Err(refusal) = self.release_parked(unix_s) {
                fed = refusal;
            }
        }
        if self.release_after_login {
            self.release_handshake_buffers();
        }
        match fed {
            Fed::Forward => Action::Forward,
            Fed::Replace => Action::Replace,
            Fed::Refuse(violation) => {
                self.end(Output::Refuse(violation));
                Action::Replace
            }
            Fed::Close(violation) => {
                self.end(Output::Close(violation));
                Action::Replace
            }
        }
    }

    /// A timer of the session's ran out at `now`: the handshake deadline
    /// ([`Session::auth_deadline_ms`]). A client that has not logged in yet is disconnected
    /// ([`Output::Close`], audited), also while a refusal of it waits to be sent.
    pub fn handle_timeout(&mut self, now: Now) {
        self.advance(now);
        // A refusal that has not reached the client yet (a client that does not read) is
        // cut short too.
        if self.is_authenticated() {
            return;
        }
        let violation = Violation {
            from: Direction::ClientToServer,
            fault: Fault::AuthTimeout {
                ms: self.config.limits.auth_timeout_ms,
            },
        };
        self.end(Output::Close(violation));
    }

    /// The next thing to leave the session, if any. `buf` lends the session an empty buffer
    /// for bytes: after [`Output::Send`] or [`Output::Audit`] it holds them and the
    /// session keeps the buffer it had (so buffers are swapped, not allocated per call).
    /// Poll until `None` after every call that feeds or reads the clock.
    #[inline]
    pub fn poll_output(&mut self, buf: &mut Vec<u8>) -> Option<Output> {
        buf.clear();
        let lines = self.audit.as_mut().map(|log| log.lines_mut());
        self.out.poll(buf, lines)
    }

    /// Whether the session reads [`Now::monotonic_us`]: it measures latencies (audit,
    /// metrics) or limits rates. The I/O layer need not read that clock for a session that
    /// does not, and may pass 0.
    pub fn reads_monotonic_clock(&self) -> bool {
        self.audit.is_some() || self.meter().is_some() || !self.config.quotas.rates.is_empty()
    }

    /// How long the client has to log in, in milliseconds, if the proxy authenticates and
    /// a deadline is configured: the I/O layer calls [`Session::handle_timeout`] then.
    pub fn auth_deadline_ms(&self) -> Option<u64> {
        let ms = self.config.limits.auth_timeout_ms;
        (self.auth != AuthState::PassThrough && ms > 0).then_some(ms)
    }

    /// Whether the client has logged in (or the proxy does not authenticate).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.auth, AuthState::PassThrough | AuthState::Authenticated)
    }

    /// Bytes the session holds or has queued toward `flow`'s peer: toward the server, client
    /// messages waiting behind a keyspace change and output not yet polled; toward the
    /// client, the proxy's answers waiting for a frame boundary and output not yet polled.
    /// The I/O layer adds what it has handed to NGINX and not yet sent, and stops feeding a
    /// peer while that is at [`Session::max_queued`].
    pub fn queued_toward(&self, flow: Direction) -> usize {
        match flow {
            Direction::ClientToServer => {
                self.parked.bytes().saturating_add(self.out.to_server.len())
            }
            Direction::ServerToClient => self.out.toward_client(),
        }
    }

    /// `cql_max_queued_size`.
    pub fn max_queued(&self) -> usize {
        self.config.limits.max_queued
    }

    /// After [`Output::Refuse`]: whether the refusal has left the session (it may wait for
    /// the end of the server's response in progress, whose bytes the session still takes).
    pub fn is_drained(&self) -> bool {
        self.out.deferred.is_empty()
    }

    /// The clock of the call in progress.
    fn advance(&mut self, now: Now) {
        self.clock = now;
        if self.first_byte_us.is_none() {
            self.first_byte_us = Some(now.monotonic_us);
        }
    }

    /// The connection ends (a refusal once it reached the client, or at once): nothing more
    /// goes toward the server, and the reason is counted and audited.
    fn end(&mut self, end: Output) {
        if let Output::Refuse(violation) | Output::Close(violation) = &end {
            self.meter_violation(violation);
            // Drivers probe versions at every connect: that is not worth a record.
            if self.audit.is_some() && !violation.is_version_probe() {
                self.audit_violation(violation.to_string());
            }
        }
        self.closing = true;
        self.out.end(end);
    }
}

#[cfg(test)]
mod tests;
