//! The per-connection session state machine. No NGINX types.
//!
//! The NGINX filter feeds a [`Session`] with the bytes of both directions, in whatever
//! chunks NGINX hands over, and does what each call answers ([`Action`]). The session
//! follows the CQL framing of both directions with one [`FrameReader`] each: it learns
//! the protocol version from the first frame, the negotiated compression from STARTUP,
//! switches to v5 segment framing when a peer is sent READY or AUTHENTICATE, and counts
//! frames and segments per direction and opcode.
//!
//! # Pass-through and rewriting
//!
//! Without `cql_auth` the session only watches: every chunk is forwarded as it came
//! ([`Action::Forward`]). With it, the session is the gate:
//!
//! * Client bytes are held until the request they carry is whole and decided, then copied
//!   to the output toward the server ([`Action::Replace`]); a denied request is not
//!   forwarded and the client gets an ERROR on the same stream id. In v5 a segment is held
//!   until its CRC32 verified, and a segment that loses an envelope is re-framed.
//! * During the handshake the server's answers are held too, because the proxy answers
//!   the client itself (AUTHENTICATE, AUTH_SUCCESS, READY) and logs in to Cassandra with
//!   service credentials ([`handshake`]).
//! * Afterwards server bytes are forwarded as they came, read in place; only the few
//!   responses a decision depends on (RESULT Prepared, Set_keyspace) are decoded. A reply of
//!   the proxy's own waits until the server's stream toward the client is between frames
//!   (between segments in v5), so it never lands inside a response.
//! * The answers that tell a driver where the nodes are (a SELECT on `system.local` or
//!   `system.peers(_v2)`) and, after a REGISTER, topology and status events are held whole
//!   and rewritten to name proxy addresses (`cql_topology`, [`cluster`]); while one is due
//!   the server's stream is read frame by frame, the other frames going on as they came.
//!
//! # Order and back-pressure
//!
//! A stream id names one request at a time, and a keyspace change is a barrier that the
//! requests behind it wait for ([`pipeline`]), so the keyspace a request is decided against
//! is the one Cassandra runs it in. What the session holds and queues is reported by
//! [`Session::queued`]: the I/O layer stops feeding a peer's bytes while that is above
//! `cql_max_queued_size`, as NGINX stops reading a peer whose bytes it cannot send on.
//!
//! What goes out is taken with [`Session::take_output`] after every call.

// A worker must never panic on a peer's bytes: with `panic = "abort"` a panic kills it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod audit;
mod cluster;
mod config;
mod counters;
mod handshake;
mod metrics;
mod pipeline;
mod prepared;
mod quotas;
mod requests;
mod unit;

pub use config::{
    AuthMode, Capacities, Config, Limits, Shared, StreamReuse, UpstreamCredentials, UpstreamLogin,
};
pub use counters::{Counters, DirectionCounters};
pub use prepared::{Prepared, PreparedRegistry};
pub use quotas::{CountLimit, LimitZone, Quotas, RateLimit};

use core::cell::RefCell;
use core::fmt;
use std::rc::Rc;

use crate::codec::header::HEADER_LEN;
use crate::codec::messages::{codes, strip_prefixes, ResultBody};
pub use crate::codec::Direction;
use crate::codec::{encode, CodecError, Compression, Event, FrameReader, Framing, Header, Opcode};
use crate::identity::Identity;
use crate::policy::RoleSet;

use crate::topology::{Memo as TopologyMemo, Table};
use std::net::SocketAddr;

use audit::{AuditLog, Clock};
use handshake::AuthState;
use pipeline::{Keep, Queue, Streams, Waiting};
use unit::Unit;

/// What the filter must do with the bytes it just fed.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Pass them on, unchanged.
    Forward,
    /// They were taken in: what goes on toward the peer instead (possibly nothing yet) is in
    /// [`Session::take_output`].
    Replace,
    /// Drop them and end the connection once the client has been sent what the session
    /// queued for it ([`Session::take_output`]), which ends with the refusal: the answer to
    /// a protocol version the proxy does not speak, so that drivers step down, or to a
    /// message the connection's state does not allow. A refusal waits for the server's
    /// response in progress to end ([`Session::is_drained`]); until then the session still
    /// takes the server's bytes.
    Refuse(Violation),
    /// End the connection; the reason goes to the error log.
    Close(Violation),
}

/// Why a connection is ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which peer sent the offending bytes.
    pub from: Direction,
    pub fault: Fault,
}

/// What was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The bytes are not a valid CQL stream.
    Codec(CodecError),
    /// A message the connection's state does not allow, e.g. QUERY before authentication.
    Unexpected { opcode: Opcode, state: &'static str },
    /// An AUTH_RESPONSE above the configured cap.
    AuthResponseTooLarge { length: u32, max: u32 },
    /// The upstream asks for something the proxy cannot give.
    Upstream(&'static str),
    /// The client does not present what `cql_auth` requires.
    Identity(&'static str),
    /// A request on a stream id whose earlier request has not been answered.
    StreamInFlight { opcode: Opcode, stream: i16 },
    /// A request on a negative stream id (reserved for the server's events).
    NegativeStream { opcode: Opcode, stream: i16 },
    /// The client failed to log in `cql_max_auth_attempts` times.
    TooManyLogins { attempts: u32 },
    /// The client did not log in within `cql_auth_timeout`.
    AuthTimeout { ms: u64 },
    /// An identity the policy gives no role, refused at login.
    Unbound,
    /// An identity over its connection cap (`cql_limit_conn`), refused at login.
    ConnectionLimit,
}

impl Violation {
    fn codec(from: Direction, error: CodecError) -> Self {
        Violation {
            from,
            fault: Fault::Codec(error),
        }
    }

    /// Whether this is a client probing for a protocol version, as drivers do when they
    /// negotiate (v1, v2, v6 or the DSE versions 0x41 and 0x42), rather than a stream that
    /// is not CQL at all.
    pub fn is_version_probe(&self) -> bool {
        matches!(
            self.fault,
            Fault::Codec(CodecError::UnsupportedVersion {
                version: 1 | 2 | 6 | 0x41 | 0x42
            })
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = match self.from {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "upstream",
        };
        match &self.fault {
            Fault::Codec(CodecError::UnsupportedVersion { version }) => write!(
                f,
                "{peer} sent protocol version {version}, which is not CQL v3, v4 or v5"
            ),
            Fault::Codec(error) => write!(f, "{peer} sent an invalid CQL stream: {error}"),
            Fault::Unexpected { opcode, state } => {
                write!(f, "{peer} sent {} {state}", opcode.name())
            }
            Fault::AuthResponseTooLarge { length, max } => write!(
                f,
                "{peer} sent an AUTH_RESPONSE of {length} bytes, above the limit of {max}"
            ),
            Fault::Upstream(what) | Fault::Identity(what) => write!(f, "{what}"),
            Fault::StreamInFlight { opcode, stream } => write!(
                f,
                "{peer} sent {} on stream {stream}, which already has a request in flight",
                opcode.name()
            ),
            Fault::NegativeStream { opcode, stream } => write!(
                f,
                "{peer} sent {} on stream {stream}; negative stream ids are the server's",
                opcode.name()
            ),
            Fault::TooManyLogins { attempts } => write!(
                f,
                "{peer} failed to log in {attempts} times (cql_max_auth_attempts)"
            ),
            Fault::AuthTimeout { ms } => write!(
                f,
                "{peer} did not authenticate within {ms} ms (cql_auth_timeout)"
            ),
            Fault::Unbound => write!(f, "{peer} identity has no role in the policy"),
            Fault::ConnectionLimit => write!(
                f,
                "{peer} identity is over its connection limit (cql_limit_conn)"
            ),
        }
    }
}

/// A request waiting for its response, by stream id.
enum Pending {
    /// A PREPARE: its RESULT Prepared names the id of this statement.
    Prepare(Rc<Prepared>),
    /// A keyspace change (QUERY USE, or EXECUTE of a prepared USE): its RESULT Set_keyspace
    /// changes the connection's keyspace.
    Use,
    /// A SELECT on a system table whose rows name nodes: its RESULT is held and rewritten
    /// (`cql_topology`). An EXECUTE carries its prepared statement, whose result columns
    /// stand in for a result sent without metadata.
    Topology {
        table: Table,
        prepared: Option<Rc<Prepared>>,
    },
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

    /// Bytes toward the server, replacing client bytes, and the proxy's own requests.
    to_server: Vec<u8>,
    /// Bytes toward the client: replaced server bytes, and the proxy's own answers.
    to_client: Vec<u8>,
    /// The proxy's answers waiting for the server's stream to reach a frame boundary.
    deferred: Vec<u8>,
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
    /// Lines for NGINX's error log (rows left out of a topology answer, and why).
    notices: Vec<String>,
    /// The handshake just ended: the buffers it grew are freed once nothing is held.
    release_after_login: bool,

    /// Requests decided (allowed or denied) and denied.
    requests: u64,
    denied: u64,
    /// The audit trail, when the server has an audit log.
    audit: Option<Box<AuditLog>>,
    clock: Clock,
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
            to_server: Vec::new(),
            to_client: Vec::new(),
            deferred: Vec::new(),
            client_unit: Unit::default(),
            server_unit: Unit::default(),
            scratch: Vec::new(),
            local: None,
            topology_events: false,
            topology_memo: TopologyMemo::default(),
            server_passing: false,
            server_rewrite: false,
            notices: Vec::new(),
            release_after_login: false,
            requests: 0,
            denied: 0,
            audit: None,
            clock: Clock::default(),
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

    /// Lines for NGINX's error log since the last call, if any (rows a topology rewrite left
    /// out, answers it could not rewrite).
    pub fn take_notices(&mut self) -> Option<Vec<String>> {
        if self.notices.is_empty() {
            None
        } else {
            Some(core::mem::take(&mut self.notices))
        }
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

    /// Takes the bytes waiting to go on in `flow` (toward the server for
    /// [`Direction::ClientToServer`]), leaving `spare` (emptied) in their place, so buffers
    /// are reused rather than allocated per call.
    pub fn take_output(&mut self, flow: Direction, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        let out = match flow {
            Direction::ClientToServer => &mut self.to_server,
            Direction::ServerToClient => &mut self.to_client,
        };
        core::mem::replace(out, spare)
    }

    /// Whether bytes wait to go on in `flow`.
    pub fn has_output(&self, flow: Direction) -> bool {
        match flow {
            Direction::ClientToServer => !self.to_server.is_empty(),
            Direction::ServerToClient => !self.to_client.is_empty(),
        }
    }

    /// Reads bytes that arrived from one peer and says what to do with them. `now` is the
    /// current Unix time in seconds (token expiry).
    pub fn feed(&mut self, from: Direction, input: &[u8], now: u64) -> Action {
        self.meter_bytes(from, input.len());
        let mut action = self.feed_bytes(from, input, now);
        if matches!(action, Action::Forward | Action::Replace) && !self.parked.is_empty() {
            if from == Direction::ServerToClient && action == Action::Forward {
                // Answers to what is released go after these bytes, not before them.
                self.to_client.extend_from_slice(input);
                action = Action::Replace;
            }
            // An answer came in, or a segment was verified: what waited may go on.
            if let Err(refusal) = self.release_parked(now) {
                action = refusal;
            }
        }
        if self.release_after_login {
            self.release_handshake_buffers();
        }
        if let Action::Refuse(violation) | Action::Close(violation) = &action {
            self.meter_violation(violation);
            // Drivers probe versions at every connect: that is not worth a record.
            if self.audit.is_some() && !violation.is_version_probe() {
                self.audit_violation(violation.to_string());
            }
        }
        action
    }

    /// After the handshake: its frames (a token, the server's answers) grew buffers that
    /// requests rarely need; an idle connection should not keep them. Buffers in use stay,
    /// and are freed at the next call.
    fn release_handshake_buffers(&mut self) {
        if !self.client_unit.is_empty() || !self.server_unit.is_empty() {
            return;
        }
        self.release_after_login = false;
        self.client.release_buffers();
        self.server.release_buffers();
        self.client_unit.release();
        self.server_unit.release();
        self.scratch = Vec::new();
        if self.deferred.is_empty() {
            self.deferred = Vec::new();
        }
    }

    /// The handshake deadline (`cql_auth_timeout`) passed: if the client has not logged in
    /// yet, the connection ends for this violation (audited); `None` if it has.
    pub fn auth_timed_out(&mut self) -> Option<Violation> {
        if matches!(self.auth, AuthState::PassThrough | AuthState::Authenticated) {
            return None;
        }
        let violation = Violation {
            from: Direction::ClientToServer,
            fault: Fault::AuthTimeout {
                ms: self.config.limits.auth_timeout_ms,
            },
        };
        self.meter_violation(&violation);
        self.audit_violation(violation.to_string());
        self.closing = true;
        Some(violation)
    }

    /// How long the client has to log in, in milliseconds, if the proxy authenticates and
    /// a deadline is configured.
    pub fn auth_deadline_ms(&self) -> Option<u64> {
        let ms = self.config.limits.auth_timeout_ms;
        (self.auth != AuthState::PassThrough && ms > 0).then_some(ms)
    }

    /// Whether the client has logged in (or the proxy does not authenticate).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.auth, AuthState::PassThrough | AuthState::Authenticated)
    }

    /// Bytes the session holds or has queued toward `flow`'s peer: toward the server, client
    /// messages waiting behind a keyspace change and output not yet taken; toward the
    /// client, the proxy's answers waiting for a frame boundary and output not yet taken.
    /// The I/O layer adds what it has handed to NGINX and not yet sent, and stops feeding a
    /// peer while that is at [`Session::max_queued`].
    pub fn queued_toward(&self, flow: Direction) -> usize {
        match flow {
            Direction::ClientToServer => self.parked.bytes().saturating_add(self.to_server.len()),
            Direction::ServerToClient => self.deferred.len().saturating_add(self.to_client.len()),
        }
    }

    /// `cql_max_queued_size`.
    pub fn max_queued(&self) -> usize {
        self.config.limits.max_queued
    }

    /// After [`Action::Refuse`]: whether the refusal has left the session (it may wait for
    /// the end of the server's response in progress).
    pub fn is_drained(&self) -> bool {
        self.deferred.is_empty()
    }

    fn feed_bytes(&mut self, from: Direction, input: &[u8], now: u64) -> Action {
        if self.closing {
            // Refused: nothing more goes on, but the server's response in progress ends
            // before the refusal that waits for it.
            return match from {
                Direction::ServerToClient if !self.deferred.is_empty() => {
                    self.feed_interleaving(input, now)
                }
                _ => Action::Replace,
            };
        }
        if self.auth == AuthState::PassThrough {
            return self.feed_watching(from, input, now);
        }
        match from {
            Direction::ClientToServer => self.feed_held(from, input, now),
            Direction::ServerToClient
                if self.auth.holds_server()
                    || !self.server_unit.is_empty()
                    || self.server_passing
                    || (self.topology_window() && self.server.at_boundary()) =>
            {
                self.feed_held(from, input, now)
            }
            Direction::ServerToClient if !self.deferred.is_empty() => {
                self.feed_interleaving(input, now)
            }
            Direction::ServerToClient => self.feed_watching(from, input, now),
        }
    }

    /// Follows the framing without changing anything: every chunk goes on as it came. Should
    /// a topology answer or event be due at a frame boundary, the bytes read so far go on
    /// copied and the rest is held frame by frame.
    fn feed_watching(&mut self, from: Direction, mut input: &[u8], now: u64) -> Action {
        let whole = input;
        loop {
            if from == Direction::ServerToClient
                && self.server.at_boundary()
                && self.topology_window()
            {
                let seen = whole.len() - input.len();
                self.to_client
                    .extend_from_slice(whole.get(..seen).unwrap_or_default());
                return self.feed_held(from, input, now);
            }
            if input.is_empty() && self.reader(from).at_boundary() {
                return Action::Forward;
            }
            // A whole frame whose body no one reads: seen without the reader.
            if let Some(header) = self.reader(from).whole_frame(input) {
                if !self.wants_body(from, &header, false) {
                    self.learn_version(&header);
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_frame(from, &header, false);
                    input = input
                        .get(HEADER_LEN + header.length as usize..)
                        .unwrap_or_default();
                    continue;
                }
            }
            let reader = match from {
                Direction::ClientToServer => &mut self.client,
                Direction::ServerToClient => &mut self.server,
            };
            let (used, step) = match reader.next(input) {
                Ok((used, event)) => (used, Step::of(event, &mut self.scratch)),
                Err(error) => return self.refuse(Violation::codec(from, error)),
            };
            input = input.get(used..).unwrap_or_default();
            match step {
                Step::NeedMore => return Action::Forward,
                Step::Header(header) => self.on_header(from, &header, false),
                Step::Frame(header, captured) => {
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_frame(from, &header, captured);
                }
                Step::Segment => self.counters.of_mut(from).segments += 1,
            }
        }
    }

    /// Server bytes after the handshake while answers of the proxy's own wait: the bytes
    /// are copied through, and the waiting answers inserted at the first frame boundary.
    fn feed_interleaving(&mut self, mut input: &[u8], now: u64) -> Action {
        let from = Direction::ServerToClient;
        loop {
            if self.server.at_boundary() && !self.deferred.is_empty() {
                self.to_client.append(&mut self.deferred);
            }
            if self.closing && self.deferred.is_empty() {
                return Action::Replace;
            }
            if !self.closing && self.server.at_boundary() && self.topology_window() {
                return self.feed_held(from, input, now);
            }
            let (used, step) = match self.server.next(input) {
                Ok((used, event)) => (used, Step::of(event, &mut self.scratch)),
                Err(error) => return Action::Close(Violation::codec(from, error)),
            };
            self.to_client
                .extend_from_slice(input.get(..used).unwrap_or_default());
            input = input.get(used..).unwrap_or_default();
            match step {
                Step::NeedMore => return Action::Replace,
                Step::Header(header) => self.on_header(from, &header, false),
                Step::Frame(header, captured) => {
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_frame(from, &header, captured);
                }
                Step::Segment => self.counters.of_mut(from).segments += 1,
            }
        }
    }

    /// Holds the bytes of each frame (each run of segments in v5) until it is whole and
    /// decided, then copies it on, drops it, or re-frames its segment without it.
    fn feed_held(&mut self, from: Direction, mut input: &[u8], now: u64) -> Action {
        loop {
            if input.is_empty() && self.reader(from).at_boundary() {
                return Action::Replace;
            }
            if from == Direction::ClientToServer {
                match self.whole_request(input, now) {
                    Some(Ok(used)) => {
                        input = input.get(used..).unwrap_or_default();
                        continue;
                    }
                    Some(Err(action)) => return action,
                    None => {}
                }
            }
            let reader = match from {
                Direction::ClientToServer => &mut self.client,
                Direction::ServerToClient => &mut self.server,
            };
            let (used, step) = match reader.next(input) {
                Ok((used, event)) => (used, Step::of(event, &mut self.scratch)),
                Err(error) => return self.refuse(Violation::codec(from, error)),
            };
            let bytes = input.get(..used).unwrap_or_default();
            match from {
                Direction::ServerToClient if self.server_passing => {
                    self.to_client.extend_from_slice(bytes)
                }
                Direction::ClientToServer => self.client_unit.hold(bytes),
                Direction::ServerToClient => self.server_unit.hold(bytes),
            }
            input = input.get(used..).unwrap_or_default();
            match step {
                Step::NeedMore => return Action::Replace,
                Step::Header(header)
                    if from == Direction::ServerToClient && self.watches_frames() =>
                {
                    self.on_watched_header(&header);
                }
                Step::Header(header) => {
                    if let Err(refusal) = self.check_header(from, &header) {
                        return refusal;
                    }
                    self.on_header(from, &header, true);
                }
                Step::Frame(header, captured)
                    if from == Direction::ServerToClient && self.watches_frames() =>
                {
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_response(&header, captured);
                }
                Step::Frame(header, _) => {
                    self.counters.of_mut(from).count(header.opcode);
                    let body = core::mem::take(&mut self.scratch);
                    let kept = match from {
                        Direction::ClientToServer => self.on_client_frame(&header, &body, now),
                        Direction::ServerToClient => self
                            .on_held_response(&header, &body)
                            .map(|keep| if keep { Keep::Forward } else { Keep::Drop }),
                    };
                    let in_segments = self.reader(from).in_segments();
                    match kept {
                        Ok(Keep::Forward) => {
                            let (unit, out) = self.unit_and_output(from);
                            unit.frame_done(&header, &body, true, in_segments, out);
                            self.scratch = body;
                        }
                        Ok(Keep::Drop) => {
                            let (unit, out) = self.unit_and_output(from);
                            unit.frame_done(&header, &body, false, in_segments, out);
                            self.scratch = body;
                        }
                        Ok(Keep::Park { decided }) => self.park(header, body, decided),
                        Err(refusal) => {
                            self.scratch = body;
                            return refusal;
                        }
                    }
                    if self.closing {
                        return Action::Replace;
                    }
                    self.after_frame(from, &header);
                }
                Step::Segment => {
                    self.counters.of_mut(from).segments += 1;
                    if self.reader(from).at_boundary() {
                        let lz4 = self.compression == Compression::Lz4;
                        let (unit, out) = self.unit_and_output(from);
                        unit.run_done(lz4, out);
                        if from == Direction::ClientToServer {
                            self.parked.seal();
                        }
                    }
                }
            }
            if from == Direction::ServerToClient
                && self.server_unit.is_empty()
                && self.server.at_boundary()
            {
                self.to_client.append(&mut self.deferred);
            }
        }
    }

    /// v3/v4: a client frame that `input` holds whole and uncompressed is decided from the
    /// input itself, without the reader buffering its body or the unit holding its bytes;
    /// returns the bytes it took, or what ends the connection. `None`: the usual path.
    fn whole_request(&mut self, input: &[u8], now: u64) -> Option<Result<usize, Action>> {
        if !self.client_unit.is_empty() {
            return None;
        }
        let header = self.client.whole_frame(input)?;
        if header.flags.compression() {
            return None;
        }
        let from = Direction::ClientToServer;
        let end = HEADER_LEN + header.length as usize;
        let (frame, body) = (input.get(..end)?, input.get(HEADER_LEN..end)?);
        if let Err(refusal) = self.check_header(from, &header) {
            return Some(Err(refusal));
        }
        self.learn_version(&header);
        self.counters.of_mut(from).count(header.opcode);
        match self.on_client_frame(&header, body, now) {
            Ok(Keep::Forward) => self.to_server.extend_from_slice(frame),
            Ok(Keep::Drop) => {}
            Ok(Keep::Park { decided }) => {
                self.client_unit.hold(frame);
                self.park(header, body.to_vec(), decided);
            }
            Err(refusal) => return Some(Err(refusal)),
        }
        if self.closing {
            return Some(Err(Action::Replace));
        }
        self.after_frame(from, &header);
        Some(Ok(end))
    }

    fn reader(&self, from: Direction) -> &FrameReader {
        match from {
            Direction::ClientToServer => &self.client,
            Direction::ServerToClient => &self.server,
        }
    }

    fn unit_and_output(&mut self, from: Direction) -> (&mut Unit, &mut Vec<u8>) {
        match from {
            Direction::ClientToServer => (&mut self.client_unit, &mut self.to_server),
            Direction::ServerToClient => (&mut self.server_unit, &mut self.to_client),
        }
    }

    /// A client's first frame in a version the proxy does not speak is answered as
    /// Cassandra does: ERROR 0x000A on stream 0 naming the supported versions.
    fn refuse(&mut self, violation: Violation) -> Action {
        match violation.fault {
            Fault::Codec(CodecError::UnsupportedVersion { version })
                if violation.from == Direction::ClientToServer && self.version.is_none() =>
            {
                encode::write_unsupported_version(version, &mut self.to_client);
                self.closing = true;
                Action::Refuse(violation)
            }
            _ => Action::Close(violation),
        }
    }

    /// Refuses a client message with an error on its stream, then ends the connection. The
    /// error waits, like every answer of the proxy's own, for the server's stream toward the
    /// client to be between frames.
    fn refuse_message(&mut self, stream: i16, code: i32, message: &str, fault: Fault) -> Action {
        self.answer_client(|f, out| f.write_error(stream, code, message, out));
        self.end_after_answer(fault)
    }

    /// Ends the connection once what is queued for the client (an answer that says why)
    /// has reached it.
    fn end_after_answer(&mut self, fault: Fault) -> Action {
        self.closing = true;
        Action::Refuse(Violation {
            from: Direction::ClientToServer,
            fault,
        })
    }

    /// Checks a header before its body is read: what the handshake allows, and the cap on
    /// AUTH_RESPONSE.
    fn check_header(&mut self, from: Direction, header: &Header) -> Result<(), Action> {
        if from != Direction::ClientToServer {
            return Ok(());
        }
        if let Some(state) = self.auth.refuses(header.opcode) {
            let message = format!("Unexpected message {} {state}", header.opcode.name());
            return Err(self.refuse_message(
                header.stream,
                codes::PROTOCOL_ERROR,
                &message,
                Fault::Unexpected {
                    opcode: header.opcode,
                    state,
                },
            ));
        }
        if self.auth == AuthState::Authenticated && !header.is_response {
            if header.stream < 0 {
                let message = format!(
                    "Invalid stream id {}: requests use stream ids from 0",
                    header.stream
                );
                return Err(self.refuse_message(
                    header.stream,
                    codes::PROTOCOL_ERROR,
                    &message,
                    Fault::NegativeStream {
                        opcode: header.opcode,
                        stream: header.stream,
                    },
                ));
            }
            let reused =
                self.streams.contains(header.stream) || self.parked_streams.contains(header.stream);
            if reused && self.config.stream_reuse == StreamReuse::Refuse {
                let message = format!(
                    "Stream {} already has a request in flight: wait for its answer before reusing the stream id",
                    header.stream
                );
                return Err(self.refuse_message(
                    header.stream,
                    codes::PROTOCOL_ERROR,
                    &message,
                    Fault::StreamInFlight {
                        opcode: header.opcode,
                        stream: header.stream,
                    },
                ));
            }
        }
        let max = self.config.limits.max_auth_response_size;
        if header.opcode == Opcode::AuthResponse && header.length > max {
            return Err(self.refuse_message(
                header.stream,
                codes::PROTOCOL_ERROR,
                "AUTH_RESPONSE too large",
                Fault::AuthResponseTooLarge {
                    length: header.length,
                    max,
                },
            ));
        }
        Ok(())
    }

    /// Learns the version, and asks for the bodies the session reads: STARTUP (compression),
    /// every request and handshake answer while holding, and responses to pending requests.
    fn on_header(&mut self, from: Direction, header: &Header, holding: bool) {
        self.learn_version(header);
        if self.wants_body(from, header, holding) {
            match from {
                Direction::ClientToServer => self.client.capture_body(),
                Direction::ServerToClient => self.server.capture_body(),
            }
        }
    }

    /// The connection speaks the version of its first frame.
    fn learn_version(&mut self, header: &Header) {
        if self.version.is_none() {
            self.version = Some(header.version);
        }
    }

    /// Whether the session reads the body of a frame: STARTUP (compression), every request
    /// and handshake answer while holding, responses to pending requests.
    fn wants_body(&self, from: Direction, header: &Header, holding: bool) -> bool {
        match from {
            Direction::ClientToServer => {
                header.opcode == Opcode::Startup
                    || (holding
                        && (self.client.in_segments() || self.needs_request_body(header.opcode)))
            }
            Direction::ServerToClient => {
                (holding && (self.server.in_segments() || header.length <= 64 * 1024))
                    || (header.opcode == Opcode::Result && self.is_pending(header.stream))
                    || (header.opcode == Opcode::Error
                        && (self.audit_awaits(header.stream)
                            || (self.streams.contains(header.stream) && self.meter().is_some())))
            }
        }
    }

    /// A whole frame seen while only watching.
    fn on_watched_frame(&mut self, from: Direction, header: &Header, captured: bool) {
        if from == Direction::ClientToServer && header.opcode == Opcode::Startup && captured {
            let body = core::mem::take(&mut self.scratch);
            self.on_startup(header, &body);
            self.scratch = body;
        }
        if from == Direction::ServerToClient {
            let body = core::mem::take(&mut self.scratch);
            self.on_response(header, captured.then_some(&body[..]));
            self.scratch = body;
        }
        self.after_frame(from, header);
    }

    /// Framing changes that follow a frame.
    fn after_frame(&mut self, from: Direction, header: &Header) {
        let answers_startup = matches!(header.opcode, Opcode::Ready | Opcode::Authenticate);
        if from == Direction::ServerToClient && !self.server_started && answers_startup {
            self.server_started = true;
            if header.version >= 5 {
                self.server
                    .start_segments(self.compression == Compression::Lz4);
            }
            if self.auth == AuthState::PassThrough {
                // The client sees this very answer: it switches too.
                self.client_started = true;
                if header.version >= 5 {
                    self.client
                        .start_segments(self.compression == Compression::Lz4);
                }
                if header.opcode == Opcode::Ready {
                    self.open_limits();
                }
            }
        }
        if from == Direction::ServerToClient
            && header.opcode == Opcode::AuthSuccess
            && self.auth == AuthState::PassThrough
        {
            self.open_limits();
        }
    }

    /// The client was sent READY or AUTHENTICATE by the proxy: in v5 it speaks segments now.
    fn client_started(&mut self) {
        if !self.client_started {
            self.client_started = true;
            if self.version.unwrap_or(0) >= 5 {
                self.client
                    .start_segments(self.compression == Compression::Lz4);
            }
        }
    }

    /// After authentication, frames may be as large as `max_frame_size`.
    fn open_limits(&mut self) {
        self.client.set_max_body(self.config.limits.max_frame_size);
        self.server.set_max_body(self.config.limits.max_frame_size);
    }

    /// STARTUP names the compression both directions use afterwards.
    fn on_startup(&mut self, header: &Header, body: &[u8]) {
        self.compression = startup_compression(body);
        if header.version < 5 {
            self.client.set_compression(self.compression);
            self.server.set_compression(self.compression);
        }
    }

    /// How the proxy writes to the client right now.
    fn client_framing(&self) -> Framing {
        self.framing(self.client_started)
    }

    fn framing(&self, started: bool) -> Framing {
        let version = self.version.unwrap_or(4);
        if version >= 5 {
            if started {
                Framing::v5_segments(self.compression == Compression::Lz4)
            } else {
                Framing::envelopes(version)
            }
        } else if self.compression != Compression::None {
            Framing::compressed(version, self.compression)
        } else {
            Framing::envelopes(version)
        }
    }

    /// Queues an answer of the proxy's own to the client: at once when the server's stream
    /// toward the client is between frames, else as soon as it is.
    fn answer_client(&mut self, write: impl FnOnce(&Framing, &mut Vec<u8>)) {
        let framing = self.client_framing();
        // Held server bytes go out in whole frames; watched ones as they came.
        let at_boundary =
            self.auth.holds_server() || !self.server_unit.is_empty() || self.server.at_boundary();
        if at_boundary && self.deferred.is_empty() {
            write(&framing, &mut self.to_client);
        } else {
            write(&framing, &mut self.deferred);
        }
    }

    fn is_pending(&self, stream: i16) -> bool {
        self.pending.iter().any(|(s, _)| *s == stream)
    }

    fn take_pending(&mut self, stream: i16) -> Option<Pending> {
        let i = self.pending.iter().position(|(s, _)| *s == stream)?;
        Some(self.pending.swap_remove(i).1)
    }

    /// A response, whether forwarded as it came or held: completes a pending request, and
    /// the audit record of its request.
    fn on_response(&mut self, header: &Header, body: Option<&[u8]>) {
        if !header.is_response || header.opcode == Opcode::Event {
            return;
        }
        if let Some((forwarded_us, holds)) = self.streams.remove(header.stream) {
            if holds {
                self.release_request();
            }
            self.meter_response(header, body, forwarded_us);
        }
        if self.keyspace_change == Some(header.stream) {
            self.keyspace_change = None;
        }
        let mut prepared_id = None;
        if !self.pending.is_empty() {
            if let Some(pending) = self.take_pending(header.stream) {
                prepared_id = self.complete_pending(pending, header, body);
            }
        }
        if self.audit.is_some() {
            self.audit_response(header, body, prepared_id);
        }
    }

    /// A prepared SELECT on a system table the proxy rewrites keeps the result columns its
    /// PREPARE's answer announced: its EXECUTE results may come without them.
    fn with_result_columns(
        &self,
        prepared: Rc<Prepared>,
        body: &[u8],
        version: u8,
    ) -> Rc<Prepared> {
        if self.topology_table(&prepared.statement).is_none() {
            return prepared;
        }
        match crate::topology::Columns::from_prepared(body, version) {
            Ok(Some(columns)) => {
                let mut owned = Rc::unwrap_or_clone(prepared);
                owned.columns = Some(columns);
                Rc::new(owned)
            }
            _ => prepared,
        }
    }

    /// Learns what a PREPARE or USE did from its RESULT; returns a prepared id.
    fn complete_pending<'b>(
        &mut self,
        pending: Pending,
        header: &Header,
        body: Option<&'b [u8]>,
    ) -> Option<&'b [u8]> {
        let (Opcode::Result, Some(body)) = (header.opcode, body) else {
            return None;
        };
        let (_, body) = strip_prefixes(header, body).ok()?;
        match (pending, ResultBody::decode(body, header.version)) {
            (Pending::Prepare(prepared), Ok(ResultBody::Prepared { id, .. })) => {
                let prepared = self.with_result_columns(prepared, body, header.version);
                let mut shared = self.shared.borrow_mut();
                let before = shared.prepared.stats();
                shared.prepared.insert(id, prepared);
                let after = shared.prepared.stats();
                drop(shared);
                self.meter_cache(crate::metrics::Cache::Prepared, before, after);
                Some(id)
            }
            (Pending::Use, Ok(ResultBody::SetKeyspace(keyspace))) => {
                self.keyspace = Some(keyspace.to_string());
                None
            }
            _ => None,
        }
    }
}

/// What an [`Event`] means to the session, without borrowing the reader: a captured body
/// is copied into the session's scratch buffer.
enum Step {
    NeedMore,
    Header(Header),
    /// A whole frame; whether its body was captured (into the scratch buffer).
    Frame(Header, bool),
    Segment,
}

impl Step {
    fn of(event: Event<'_>, scratch: &mut Vec<u8>) -> Step {
        match event {
            Event::NeedMore => Step::NeedMore,
            Event::Header(header) => Step::Header(header),
            Event::Frame { header, body } => {
                scratch.clear();
                if let Some(body) = body {
                    scratch.extend_from_slice(body);
                }
                Step::Frame(header, body.is_some())
            }
            Event::SegmentEnd { .. } => Step::Segment,
        }
    }
}

/// The compression a STARTUP body asks for; none if it names none or cannot be read
/// (the server will refuse such a STARTUP itself).
fn startup_compression(body: &[u8]) -> Compression {
    match crate::codec::messages::Startup::decode(body) {
        Ok(startup) => match startup.compression() {
            Some(name) if name.eq_ignore_ascii_case("lz4") => Compression::Lz4,
            Some(name) if name.eq_ignore_ascii_case("snappy") => Compression::Snappy,
            _ => Compression::None,
        },
        Err(_) => Compression::None,
    }
}

#[cfg(test)]
mod tests;
