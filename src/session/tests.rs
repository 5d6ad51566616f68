//! The session driven with protocol bytes, as the filter drives it: what reaches each peer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{encode, Algorithm, EncodingKey};
use serde_json::json;

use super::*;
use crate::codec::messages::{ErrorBody, ErrorExtra};
use crate::codec::primitives::write;
use crate::codec::{Event, Framing, Header, Opcode};
use crate::identity::{JwtSettings, JwtValidator};
use crate::policy::Policy;

const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"a secret shared by the tests and the validator";
const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

const POLICY: &str = r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
[roles.writer]
grant = [ { permissions = ["MODIFY"], on = "TABLE shop.orders" } ]
[[bind]]
role = "reader"
groups = ["analysts"]
[[bind]]
role = "writer"
principals = ["alice"]
"#;

fn secret_file() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "cql-session-secret-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, SECRET).unwrap();
    path
}

fn token(sub: &str, exp: u64) -> String {
    let claims = json!({ "sub": sub, "exp": exp, "groups": ["analysts"] });
    encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

struct Setup {
    login: bool,
    policy: bool,
    audit: bool,
    auth: AuthMode,
    certificate: Option<Identity>,
    stream_reuse: StreamReuse,
    topology: crate::topology::Topology,
    metrics: Option<Rc<crate::metrics::ServerMeter>>,
    policy_text: &'static str,
    quotas: Quotas,
    dry_run: bool,
    credentials: Option<&'static str>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            login: false,
            policy: true,
            audit: false,
            auth: AuthMode::Token,
            certificate: None,
            stream_reuse: StreamReuse::Refuse,
            topology: crate::topology::Topology::default(),
            metrics: None,
            policy_text: POLICY,
            quotas: Quotas::default(),
            dry_run: false,
            credentials: None,
        }
    }
}

impl Setup {
    fn session(self) -> Session {
        let secret = secret_file();
        let jwt = JwtValidator::load(&JwtSettings {
            secret: Some(secret.clone()),
            algorithms: vec!["HS256".into()],
            roles_claim: Some("groups".into()),
            ..JwtSettings::default()
        })
        .unwrap();
        let _ = std::fs::remove_file(secret);
        let config = Config {
            limits: Limits::default(),
            auth: self.auth,
            jwt: Some(jwt),
            generation: 1,
            upstream_login: self.login.then(|| UpstreamLogin {
                user: "svc_proxy".into(),
                password: "service-password".into(),
            }),
            policy: self
                .policy
                .then(|| Rc::new(Policy::parse(self.policy_text).unwrap())),
            audit: self
                .audit
                .then(|| Rc::new(crate::audit::Settings::default())),
            allow_unbound: false,
            stream_reuse: self.stream_reuse,
            topology: self.topology,
            metrics: self.metrics,
            quotas: self.quotas,
            dry_run: self.dry_run,
            upstream_credentials: self
                .credentials
                .map(|text| Rc::new(UpstreamCredentials::parse(text).unwrap())),
        };
        Session::new(
            Rc::new(config),
            Rc::new(RefCell::new(Shared::new(Capacities::default()))),
            self.certificate,
        )
    }
}

/// A frame as a peer reads it.
#[derive(Debug)]
struct Frame {
    header: Header,
    body: Vec<u8>,
}

impl Frame {
    fn error(&self) -> (i32, String) {
        assert_eq!(self.header.opcode, Opcode::Error, "{self:?}");
        let e = ErrorBody::decode(&self.body, self.header.version).unwrap();
        (e.code, e.message.to_string())
    }
}

/// One end of the connection: writes requests (or responses) and reads what it receives.
struct Peer {
    reader: FrameReader,
    framing: Framing,
}

impl Peer {
    fn new(receives: Direction, version: u8) -> Self {
        Peer {
            reader: FrameReader::new(receives, 1 << 24),
            framing: Framing::envelopes(version),
        }
    }

    fn start_segments(&mut self) {
        self.reader.start_segments(false);
        self.framing = Framing::v5_segments(false);
    }

    fn read(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let (used, event) = self.reader.next(bytes).unwrap();
            match event {
                Event::NeedMore => break,
                Event::Header(_) => self.reader.capture_body(),
                Event::Frame { header, body } => frames.push(Frame {
                    header,
                    body: body.unwrap_or_default().to_vec(),
                }),
                Event::SegmentEnd { .. } => {}
            }
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty());
        frames
    }

    fn write(&self, stream: i16, opcode: Opcode, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.framing.write_message(stream, opcode, body, &mut out);
        out
    }
}

fn query_body(text: &str, version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    write::long_string(&mut b, text);
    b.extend_from_slice(&1u16.to_be_bytes()); // ONE
    if version >= 5 {
        b.extend_from_slice(&0u32.to_be_bytes());
    } else {
        b.push(0);
    }
    b
}

fn prepare_body(text: &str, version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    write::long_string(&mut b, text);
    if version >= 5 {
        b.extend_from_slice(&0u32.to_be_bytes());
    }
    b
}

fn execute_body(id: &[u8], version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    write::short_bytes(&mut b, id);
    if version >= 5 {
        write::short_bytes(&mut b, b"meta");
    }
    b.extend_from_slice(&1u16.to_be_bytes());
    if version >= 5 {
        b.extend_from_slice(&0u32.to_be_bytes());
    } else {
        b.push(0);
    }
    b
}

fn auth_response_body(user: &str, password: &str) -> Vec<u8> {
    let mut token = vec![0];
    token.extend_from_slice(user.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    let mut b = Vec::new();
    write::bytes(&mut b, Some(&token));
    b
}

fn startup_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u16.to_be_bytes());
    write::string(&mut b, "CQL_VERSION");
    write::string(&mut b, "3.0.0");
    b
}

/// Cassandra's AUTHENTICATE body when it wants a password login.
fn password_authenticator() -> Vec<u8> {
    let mut class = Vec::new();
    write::string(
        &mut class,
        "org.apache.cassandra.auth.PasswordAuthenticator",
    );
    class
}

/// The time of the tests' calls at `unix_s`, on a monotonic clock at 0.
fn at(unix_s: u64) -> Now {
    Now {
        unix_ms: unix_s * 1000,
        monotonic_us: 0,
    }
}

/// Everything a session's output queue gave, polled until empty, as the I/O layer polls.
#[derive(Default)]
struct Outputs {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    audit: Vec<u8>,
    notices: Vec<String>,
    end: Option<Output>,
}

impl Outputs {
    fn poll(&mut self, session: &mut Session) {
        let mut buf = Vec::new();
        while let Some(output) = session.poll_output(&mut buf) {
            match output {
                Output::Send(C2S) => self.to_server.append(&mut buf),
                Output::Send(S2C) => self.to_client.append(&mut buf),
                Output::Audit => self.audit.append(&mut buf),
                Output::Notice(line) => self.notices.push(line),
                end => self.end = Some(end),
            }
        }
    }

    fn take(&mut self, flow: Direction) -> Vec<u8> {
        match flow {
            C2S => core::mem::take(&mut self.to_server),
            S2C => core::mem::take(&mut self.to_client),
        }
    }
}

/// A connection: the session between a client and a server, each reading what reaches it.
struct Wire {
    session: Session,
    client: Peer,
    server: Peer,
    version: u8,
    /// The time of the next call.
    now: Now,
    /// What the session gave and the test has not looked at yet.
    out: Outputs,
}

impl Wire {
    fn new(session: Session, version: u8) -> Self {
        Wire {
            session,
            client: Peer::new(S2C, version),
            server: Peer::new(C2S, version),
            version,
            now: at(NOW),
            out: Outputs::default(),
        }
    }

    /// Feeds bytes in one call at `self.now` and polls the output queue: what the session
    /// answered for the bytes, with the end of the connection if it queued one.
    fn feed(&mut self, from: Direction, bytes: &[u8]) -> Fed {
        let action = self.session.feed(from, bytes, self.now);
        self.out.poll(&mut self.session);
        match (self.out.end.take(), action) {
            (Some(Output::Refuse(violation)), _) => Fed::Refuse(violation),
            (Some(Output::Close(violation)), _) => Fed::Close(violation),
            (_, Action::Forward) => Fed::Forward,
            (_, Action::Replace) => Fed::Replace,
        }
    }

    /// The bytes the session gave toward `flow`'s peer since the last look.
    fn take(&mut self, flow: Direction) -> Vec<u8> {
        self.out.take(flow)
    }

    fn has_output(&self, flow: Direction) -> bool {
        match flow {
            C2S => !self.out.to_server.is_empty(),
            S2C => !self.out.to_client.is_empty(),
        }
    }

    fn take_notices(&mut self) -> Vec<String> {
        core::mem::take(&mut self.out.notices)
    }

    /// The connection ends at `self.now`.
    fn close(&mut self) {
        self.session.close(self.now);
        self.out.poll(&mut self.session);
    }

    /// Feeds bytes from one peer one byte at a time; returns what reached (server, client).
    fn send(&mut self, from: Direction, bytes: &[u8]) -> (Vec<Frame>, Vec<Frame>) {
        let mut to_server = Vec::new();
        let mut to_client = Vec::new();
        for byte in bytes.chunks(1) {
            match self.feed(from, byte) {
                Fed::Forward => match from {
                    C2S => to_server.extend_from_slice(byte),
                    S2C => to_client.extend_from_slice(byte),
                },
                Fed::Replace => {}
                other => panic!("unexpected {other:?}"),
            }
            to_server.extend(self.take(C2S));
            to_client.extend(self.take(S2C));
        }
        (self.server.read(&to_server), self.client.read(&to_client))
    }

    fn client_sends(
        &mut self,
        stream: i16,
        opcode: Opcode,
        body: &[u8],
    ) -> (Vec<Frame>, Vec<Frame>) {
        let bytes = self.client.write(stream, opcode, body);
        self.send(C2S, &bytes)
    }

    fn server_sends(
        &mut self,
        stream: i16,
        opcode: Opcode,
        body: &[u8],
    ) -> (Vec<Frame>, Vec<Frame>) {
        let bytes = self.server.write(stream, opcode, body);
        self.send(S2C, &bytes)
    }

    /// STARTUP, the server's READY, and the token: the client is authenticated.
    fn log_in(&mut self, token: &str) {
        let (up, down) = self.client_sends(1, Opcode::Startup, &startup_body());
        assert_eq!(up.len(), 1, "STARTUP reaches the server");
        assert!(down.is_empty());
        let (up, down) = self.server_sends(1, Opcode::Ready, &[]);
        assert!(up.is_empty());
        assert_eq!(down.len(), 1);
        assert_eq!(
            down[0].header.opcode,
            Opcode::Authenticate,
            "READY is replaced"
        );
        assert_eq!(down[0].header.stream, 1);
        self.both_start_segments();
        let (up, down) =
            self.client_sends(2, Opcode::AuthResponse, &auth_response_body("alice", token));
        assert!(up.is_empty(), "the token never reaches the server");
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].header.opcode, Opcode::AuthSuccess, "{:?}", down[0]);
    }

    /// STARTUP, and Cassandra's AUTHENTICATE for a password login; returns what reached the
    /// client.
    fn start_with_a_password_upstream(&mut self) -> Vec<Frame> {
        self.client_sends(1, Opcode::Startup, &startup_body());
        let (_, down) = self.server_sends(1, Opcode::Authenticate, &password_authenticator());
        down
    }

    fn both_start_segments(&mut self) {
        if self.version >= 5 {
            self.client.start_segments();
            self.server.start_segments();
        }
    }

    fn query(&mut self, stream: i16, text: &str) -> (Vec<Frame>, Vec<Frame>) {
        let body = query_body(text, self.version);
        self.client_sends(stream, Opcode::Query, &body)
    }
}

#[test]
fn a_valid_token_logs_in_and_allowed_queries_reach_the_server() {
    for version in [3, 4, 5] {
        let mut w = Wire::new(Setup::default().session(), version);
        w.log_in(&token("alice", NOW + 600));
        assert_eq!(
            w.session.identity().map(|i| i.principal.as_str()),
            Some("alice")
        );
        let (up, down) = w.query(3, "SELECT * FROM shop.orders");
        assert!(down.is_empty(), "v{version}: {down:?}");
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].header.stream, 3);
        assert_eq!(up[0].body, query_body("SELECT * FROM shop.orders", version));
        // The server's answer goes through as it came.
        let (_, down) = w.server_sends(3, Opcode::Result, &1i32.to_be_bytes());
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].header.opcode, Opcode::Result);
    }
}

#[test]
fn a_denied_query_is_answered_unauthorized_on_its_stream_and_the_next_one_passes() {
    for version in [4, 5] {
        let mut w = Wire::new(Setup::default().session(), version);
        w.log_in(&token("alice", NOW + 600));
        let (up, down) = w.query(7, "DELETE FROM shop.customers WHERE id = 1");
        assert!(
            up.is_empty(),
            "v{version}: a denied statement never reaches the server"
        );
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].header.stream, 7);
        assert_eq!(
            down[0].error(),
            (
                0x2100,
                "User alice has no MODIFY permission on <table shop.customers> or any of its parents"
                    .to_string()
            )
        );
        let (up, down) = w.query(8, "INSERT INTO shop.orders (id) VALUES (1)");
        assert!(down.is_empty());
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].header.stream, 8);
    }
}

#[test]
fn v5_segment_with_a_denied_envelope_is_reframed_without_it() {
    let mut w = Wire::new(Setup::default().session(), 5);
    w.log_in(&token("alice", NOW + 600));
    // One segment carrying three requests; the middle one is denied.
    let framing = Framing::v5_segments(false);
    let mut payload = Vec::new();
    for (stream, text) in [
        (10, "SELECT * FROM shop.orders"),
        (11, "DROP TABLE shop.orders"),
        (12, "SELECT * FROM shop.items"),
    ] {
        framing.write_envelope(stream, Opcode::Query, 0, &query_body(text, 5), &mut payload);
    }
    let mut segment = Vec::new();
    crate::codec::segment::write_segment(&payload, true, false, &mut segment);
    let (up, down) = w.send(C2S, &segment);
    let streams: Vec<i16> = up.iter().map(|f| f.header.stream).collect();
    assert_eq!(streams, [10, 12]);
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].header.stream, 11);
    assert_eq!(down[0].error().0, 0x2100);
}

#[test]
fn refused_tokens_get_an_authentication_error_with_the_reason() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.client_sends(1, Opcode::Startup, &startup_body());
    w.server_sends(1, Opcode::Ready, &[]);
    let expired = token("alice", NOW - 10);
    let (up, down) = w.client_sends(
        2,
        Opcode::AuthResponse,
        &auth_response_body("alice", &expired),
    );
    assert!(up.is_empty());
    let (code, message) = down[0].error();
    assert_eq!(code, 0x0100);
    assert!(message.contains("expired"), "{message}");
    assert!(!message.contains(&expired), "the token is not echoed");
    // Another try with a good token works.
    let (_, down) = w.client_sends(
        3,
        Opcode::AuthResponse,
        &auth_response_body("alice", &token("alice", NOW + 60)),
    );
    assert_eq!(down[0].header.opcode, Opcode::AuthSuccess);
}

#[test]
fn requests_before_authentication_are_a_protocol_error() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.client_sends(1, Opcode::Startup, &startup_body());
    w.server_sends(1, Opcode::Ready, &[]);
    let bytes = w.client.write(
        2,
        Opcode::Query,
        &query_body("SELECT * FROM shop.orders", 4),
    );
    let mut refused = None;
    for byte in bytes.chunks(1) {
        match w.feed(C2S, byte) {
            Fed::Replace => {}
            Fed::Refuse(violation) => {
                refused = Some((w.take(S2C), violation));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (reply, violation) = refused.expect("refused");
    assert!(!w.has_output(C2S), "nothing reaches the server");
    let frames = w.client.read(&reply);
    assert_eq!(frames[0].error().0, 0x000A);
    assert_eq!(frames[0].header.stream, 2);
    assert_eq!(
        violation.to_string(),
        "client sent QUERY before authentication"
    );
}

#[test]
fn with_a_password_authenticator_upstream_the_proxy_logs_in_with_the_service_credentials() {
    for version in [4, 5] {
        let mut w = Wire::new(
            Setup {
                login: true,
                ..Setup::default()
            }
            .session(),
            version,
        );
        let down = w.start_with_a_password_upstream();
        assert_eq!(down[0].header.opcode, Opcode::Authenticate);
        w.both_start_segments();
        let tok = token("alice", NOW + 600);
        let (up, down) =
            w.client_sends(2, Opcode::AuthResponse, &auth_response_body("alice", &tok));
        assert!(down.is_empty(), "the client waits for Cassandra's answer");
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].header.opcode, Opcode::AuthResponse);
        assert_eq!(up[0].header.stream, 2);
        assert_eq!(
            up[0].body,
            auth_response_body("svc_proxy", "service-password")
        );
        let (_, down) = w.server_sends(2, Opcode::AuthSuccess, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(down[0].header.opcode, Opcode::AuthSuccess, "v{version}");
        let (up, _) = w.query(3, "SELECT * FROM shop.orders");
        assert_eq!(up.len(), 1);
    }
}

#[test]
fn a_certificate_identity_needs_no_password() {
    let identity = Identity {
        principal: "etl".into(),
        groups: vec!["analysts".into()],
        attributes: vec![],
        expires_at: None,
        source: crate::identity::Source::Certificate,
    };
    // Cassandra without authentication: its READY goes to the client.
    let mut w = Wire::new(
        Setup {
            auth: AuthMode::Certificate,
            certificate: Some(identity.clone()),
            ..Setup::default()
        }
        .session(),
        5,
    );
    w.client_sends(1, Opcode::Startup, &startup_body());
    let (_, down) = w.server_sends(1, Opcode::Ready, &[]);
    assert_eq!(down[0].header.opcode, Opcode::Ready);
    w.both_start_segments();
    let (up, down) = w.query(2, "SELECT * FROM shop.orders");
    assert_eq!((up.len(), down.len()), (1, 0));

    // Cassandra with PasswordAuthenticator: the proxy logs in, the client gets READY.
    let mut w = Wire::new(
        Setup {
            auth: AuthMode::Certificate,
            login: true,
            certificate: Some(identity),
            ..Setup::default()
        }
        .session(),
        5,
    );
    w.client_sends(1, Opcode::Startup, &startup_body());
    let bytes = w
        .server
        .write(1, Opcode::Authenticate, &password_authenticator());
    assert_eq!(w.feed(S2C, &bytes), Fed::Replace);
    assert!(!w.has_output(S2C), "the client is not asked anything");
    // Cassandra speaks segments from its AUTHENTICATE on.
    w.server.start_segments();
    let bytes = w.take(C2S);
    let up = w.server.read(&bytes);
    assert_eq!(up[0].header.opcode, Opcode::AuthResponse);
    assert_eq!(
        up[0].body,
        auth_response_body("svc_proxy", "service-password")
    );
    // Cassandra answers in segments; the client, which sent only STARTUP, gets a plain READY.
    let mut seg = Vec::new();
    Framing::v5_segments(false).write_message(1, Opcode::AuthSuccess, &[0xff; 4], &mut seg);
    let (_, down) = w.send(S2C, &seg);
    assert_eq!(down[0].header.opcode, Opcode::Ready);
    w.client.start_segments();
    let (up, _) = w.query(2, "SELECT * FROM shop.orders");
    assert_eq!(up.len(), 1);
}

#[test]
fn mtls_without_a_certificate_is_refused() {
    let mut w = Wire::new(
        Setup {
            auth: AuthMode::Certificate,
            ..Setup::default()
        }
        .session(),
        4,
    );
    w.client_sends(1, Opcode::Startup, &startup_body());
    let bytes = w.server.write(1, Opcode::Ready, &[]);
    let action = w.feed(S2C, &bytes);
    let Fed::Refuse(_) = action else {
        panic!("{action:?}");
    };
    let reply = w.take(S2C);
    let (code, message) = w.client.read(&reply)[0].error();
    assert_eq!(code, 0x0100);
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn an_expired_token_is_refused_mid_session() {
    let mut w = Wire::new(
        Setup {
            policy: false,
            ..Setup::default()
        }
        .session(),
        4,
    );
    w.log_in(&token("alice", NOW + 5));
    let bytes = w.client.write(
        3,
        Opcode::Query,
        &query_body("SELECT * FROM shop.orders", 4),
    );
    w.now = at(NOW + 6);
    assert_eq!(w.feed(C2S, &bytes), Fed::Replace);
    assert!(!w.has_output(C2S));
    let bytes = w.take(S2C);
    let down = w.client.read(&bytes);
    let (code, message) = down[0].error();
    assert_eq!(code, 0x2100);
    assert!(message.contains("token expired"), "{message}");
}

#[test]
fn execute_is_authorized_from_the_registry_and_unknown_ids_are_unprepared() {
    for version in [4, 5] {
        let mut w = Wire::new(Setup::default().session(), version);
        w.log_in(&token("alice", NOW + 600));
        // An id the proxy never saw.
        let (up, down) = w.client_sends(4, Opcode::Execute, &execute_body(b"unknown-id", version));
        assert!(up.is_empty());
        assert_eq!(down[0].error().0, 0x2500);
        let e = ErrorBody::decode(&down[0].body, version).unwrap();
        assert_eq!(e.extra, ErrorExtra::Unprepared { id: b"unknown-id" });

        // PREPARE, RESULT Prepared, then EXECUTE by id.
        for (stream, text, id, allowed) in [
            (
                5,
                "SELECT * FROM shop.orders WHERE id = ?",
                &b"id-select"[..],
                true,
            ),
            (
                6,
                "UPDATE shop.customers SET name = ? WHERE id = ?",
                &b"id-update"[..],
                false,
            ),
        ] {
            let (up, down) = w.client_sends(stream, Opcode::Prepare, &prepare_body(text, version));
            if !allowed {
                assert!(up.is_empty(), "denied at PREPARE");
                assert_eq!(down[0].error().0, 0x2100);
                continue;
            }
            assert_eq!(up.len(), 1);
            let mut result = 4i32.to_be_bytes().to_vec();
            write::short_bytes(&mut result, id);
            if version >= 5 {
                write::short_bytes(&mut result, b"meta");
            }
            // Metadata: flags, column count, and no columns (enough for the proxy).
            result.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            w.server_sends(stream, Opcode::Result, &result);
            let (up, down) =
                w.client_sends(stream + 10, Opcode::Execute, &execute_body(id, version));
            assert_eq!(
                (up.len(), down.len()),
                (1, 0),
                "EXECUTE of a known, allowed id"
            );
        }
    }
}

#[test]
fn use_changes_the_keyspace_of_unqualified_names_once_the_server_confirms() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    let (up, _) = w.query(3, "USE shop");
    assert_eq!(
        up.len(),
        1,
        "USE is allowed to whoever holds a grant in the keyspace"
    );
    assert_eq!(w.session.keyspace(), None, "not before the server answers");
    let mut result = 3i32.to_be_bytes().to_vec();
    write::string(&mut result, "shop");
    w.server_sends(3, Opcode::Result, &result);
    assert_eq!(w.session.keyspace(), Some("shop"));
    let (up, _) = w.query(4, "SELECT * FROM orders");
    assert_eq!(up.len(), 1);
    let (up, down) = w.query(5, "DELETE FROM customers WHERE id = 1");
    assert!(up.is_empty());
    assert!(down[0].error().1.contains("<table shop.customers>"));
}

#[test]
fn a_batch_with_one_forbidden_child_is_denied_whole() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    let mut body = vec![0]; // LOGGED
    body.extend_from_slice(&2u16.to_be_bytes());
    for text in [
        "INSERT INTO shop.orders (id) VALUES (1)",
        "INSERT INTO shop.customers (id) VALUES (1)",
    ] {
        body.push(0);
        write::long_string(&mut body, text);
        body.extend_from_slice(&0u16.to_be_bytes());
    }
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(0);
    let (up, down) = w.client_sends(9, Opcode::Batch, &body);
    assert!(up.is_empty());
    assert!(down[0].error().1.contains("<table shop.customers>"));
}

#[test]
fn answers_wait_for_the_server_stream_to_reach_a_frame_boundary() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    // A large RESULT is on its way to the client when a denial happens.
    let rows = vec![7u8; 5000];
    let mut result = 2i32.to_be_bytes().to_vec();
    result.extend_from_slice(&rows);
    let bytes = w.server.write(20, Opcode::Result, &result);
    let (head, tail) = bytes.split_at(1000);
    assert_eq!(w.feed(S2C, head), Fed::Forward);
    let mut to_client = head.to_vec();
    let denied = w
        .client
        .write(21, Opcode::Query, &query_body("DROP KEYSPACE shop", 4));
    assert_eq!(w.feed(C2S, &denied), Fed::Replace);
    assert!(!w.has_output(S2C), "not inside the RESULT");
    assert_eq!(w.feed(S2C, tail), Fed::Replace);
    to_client.extend(w.take(S2C));
    let frames = w.client.read(&to_client);
    let streams: Vec<i16> = frames.iter().map(|f| f.header.stream).collect();
    assert_eq!(streams, [20, 21]);
    assert_eq!(frames[0].body, result);
}

#[test]
fn watching_sessions_forward_everything() {
    let mut s = Session::watching(Limits::default(), None);
    let client = Peer::new(S2C, 4);
    let bytes = client.write(0, Opcode::Query, &query_body("DROP KEYSPACE shop", 4));
    assert_eq!(s.feed(C2S, &bytes, at(NOW)), Action::Forward);
    assert_eq!(s.poll_output(&mut Vec::new()), None);
}

/// The audit lines a session wrote since the last look, parsed.
fn audit_lines(w: &mut Wire) -> Vec<serde_json::Value> {
    w.out.poll(&mut w.session);
    let text = core::mem::take(&mut w.out.audit);
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn audit_records_decisions_outcomes_and_execute_with_its_text() {
    for version in [4, 5] {
        let mut session = Setup {
            audit: true,
            ..Setup::default()
        }
        .session();
        session.open_audit(
            crate::audit::Peer {
                session: 9,
                client: "10.0.0.1:5000".into(),
                server: "10.0.0.2:9042".into(),
            },
            at(NOW),
        );
        let mut w = Wire::new(session, version);
        w.log_in(&token("alice", NOW + 600));
        let login = audit_lines(&mut w);
        assert_eq!(login.len(), 1);
        assert_eq!(login[0]["type"], "LOGIN_SUCCESS");
        assert_eq!(login[0]["roles"], json!(["reader", "writer"]));

        // Allowed: nothing until the response, which gives the outcome and the latency.
        w.now = Now {
            unix_ms: NOW * 1000 + 5,
            monotonic_us: 1_000,
        };
        w.query(3, "SELECT * FROM shop.orders WHERE id = 1");
        assert!(audit_lines(&mut w).is_empty());
        let mut error = 0x2200i32.to_be_bytes().to_vec();
        write::string(&mut error, "unconfigured table orders");
        w.now = Now {
            unix_ms: NOW * 1000 + 6,
            monotonic_us: 1_250,
        };
        w.server_sends(3, Opcode::Error, &error);
        let lines = audit_lines(&mut w);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0];
        assert_eq!(l["time"], "2027-01-15T08:00:00.005Z");
        assert_eq!(
            (l["type"].as_str(), l["table"].as_str()),
            (Some("SELECT"), Some("orders"))
        );
        assert_eq!(
            (l["decision"].as_str(), l["outcome"].as_str()),
            (Some("allow"), Some("error"))
        );
        assert_eq!(
            (l["error_code"].as_str(), l["latency_us"].as_u64()),
            (Some("0x2200"), Some(250))
        );
        assert_eq!(
            l["rule"],
            "role reader: grant SELECT on KEYSPACE shop (line 3)"
        );

        // Denied: at once, with the client's reason.
        w.query(4, "DELETE FROM shop.payments WHERE id = 1");
        let lines = audit_lines(&mut w);
        assert_eq!(lines[0]["decision"], "deny");
        assert!(lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no MODIFY permission"));

        // PREPARE learns its id from the RESULT; EXECUTE is recorded with the prepared text.
        let text = "SELECT * FROM shop.orders WHERE id = ?";
        w.client_sends(5, Opcode::Prepare, &prepare_body(text, version));
        let mut result = 4i32.to_be_bytes().to_vec();
        write::short_bytes(&mut result, b"\x01\x02");
        if version >= 5 {
            write::short_bytes(&mut result, b"meta");
        }
        result.extend_from_slice(&[0; 12]);
        w.server_sends(5, Opcode::Result, &result);
        w.client_sends(6, Opcode::Execute, &execute_body(b"\x01\x02", version));
        w.server_sends(6, Opcode::Result, &1i32.to_be_bytes());
        let lines = audit_lines(&mut w);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            (lines[0]["type"].as_str(), lines[0]["prepared_id"].as_str()),
            (Some("PREPARE_STATEMENT"), Some("0x0102"))
        );
        assert_eq!(
            (lines[1]["type"].as_str(), lines[1]["statement"].as_str()),
            (Some("SELECT"), Some(text))
        );
        assert_eq!(lines[1]["prepared_id"], "0x0102");

        // A request still waiting when the connection ends, then the summary.
        w.query(7, "SELECT * FROM shop.orders");
        w.close();
        let lines = audit_lines(&mut w);
        assert_eq!(lines[0]["outcome"], "no_response");
        assert_eq!(lines[1]["event"], "session");
        assert_eq!(
            (lines[1]["requests"].as_u64(), lines[1]["denied"].as_u64()),
            (Some(5), Some(1))
        );
    }
}

fn set_keyspace(name: &str) -> Vec<u8> {
    let mut result = 3i32.to_be_bytes().to_vec();
    write::string(&mut result, name);
    result
}

/// Feeds bytes in one call (a pipelined write); returns the action and what reached
/// (server, client).
fn feed_once(w: &mut Wire, from: Direction, bytes: &[u8]) -> (Fed, Vec<Frame>, Vec<Frame>) {
    let action = w.feed(from, bytes);
    let mut to_server = w.take(C2S);
    let mut to_client = w.take(S2C);
    if action == Fed::Forward {
        match from {
            C2S => to_server.extend_from_slice(bytes),
            S2C => to_client.extend_from_slice(bytes),
        }
    }
    let up = w.server.read(&to_server);
    let down = w.client.read(&to_client);
    (action, up, down)
}

/// QUERYs written one after the other, as a client pipelines them in one write.
fn pipelined(w: &Wire, queries: &[(i16, &str)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (stream, text) in queries {
        bytes.extend(
            w.client
                .write(*stream, Opcode::Query, &query_body(text, w.version)),
        );
    }
    bytes
}

#[test]
fn a_request_on_a_stream_in_flight_is_refused_and_ends_the_connection() {
    for version in [4, 5] {
        let mut w = Wire::new(Setup::default().session(), version);
        w.log_in(&token("alice", NOW + 600));
        let bytes = pipelined(
            &w,
            &[
                (7, "SELECT * FROM shop.orders"),
                (7, "SELECT * FROM shop.items"),
            ],
        );
        let (action, up, down) = feed_once(&mut w, C2S, &bytes);
        let Fed::Refuse(violation) = action else {
            panic!("v{version}: {action:?}");
        };
        assert!(
            violation
                .to_string()
                .contains("already has a request in flight"),
            "{violation}"
        );
        // v4 frames go on one by one; a v5 segment is refused whole.
        assert!(up.len() <= 1, "v{version}: {up:?}");
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].header.stream, 7);
        assert_eq!(down[0].error().0, 0x000A);
        // Nothing more goes on.
        let more = w.client.write(
            8,
            Opcode::Query,
            &query_body("SELECT * FROM shop.orders", version),
        );
        let (_, up, _) = feed_once(&mut w, C2S, &more);
        assert!(up.is_empty());
    }
}

#[test]
fn requests_behind_a_use_are_decided_in_the_keyspace_it_moved_to() {
    for version in [4, 5] {
        let mut w = Wire::new(Setup::default().session(), version);
        w.log_in(&token("alice", NOW + 600));
        // USE and an unqualified write in one write: the write waits for the USE's answer.
        let bytes = pipelined(
            &w,
            &[
                (1, "USE shop"),
                (2, "INSERT INTO customers (id) VALUES (1)"),
                (3, "INSERT INTO orders (id) VALUES (1)"),
            ],
        );
        let (action, up, down) = feed_once(&mut w, C2S, &bytes);
        assert_eq!(action, Fed::Replace);
        assert_eq!(up.len(), 1, "v{version}: only the USE goes on");
        assert_eq!(up[0].header.stream, 1);
        assert!(down.is_empty(), "v{version}: nothing is decided yet");
        assert!(
            w.session.queued_toward(C2S) > 0,
            "the waiting requests count"
        );

        let answer = w.server.write(1, Opcode::Result, &set_keyspace("shop"));
        let (_, up, down) = feed_once(&mut w, S2C, &answer);
        assert_eq!(w.session.keyspace(), Some("shop"));
        // Decided against shop: customers is denied, orders allowed.
        let streams: Vec<i16> = up.iter().map(|f| f.header.stream).collect();
        assert_eq!(streams, [3], "v{version}");
        assert_eq!(
            down.len(),
            2,
            "v{version}: the Set_keyspace, then the denial"
        );
        assert_eq!(down[0].header.stream, 1);
        assert_eq!(down[1].header.stream, 2);
        assert!(down[1].error().1.contains("<table shop.customers>"));
        assert_eq!(w.session.queued_toward(C2S), 0);
    }
}

#[test]
fn a_use_waits_for_the_requests_before_it() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    let (up, _) = w.query(1, "SELECT * FROM shop.orders");
    assert_eq!(up.len(), 1);
    // Cassandra runs a connection's requests concurrently: the USE waits until the SELECT
    // decided in the old keyspace is answered.
    let (up, _) = w.query(2, "USE shop");
    assert!(up.is_empty(), "the USE waits");
    let (up, _) = w.query(3, "SELECT * FROM orders");
    assert!(up.is_empty(), "and so does what follows it");
    let (up, down) = w.server_sends(1, Opcode::Result, &1i32.to_be_bytes());
    assert_eq!(down.len(), 1);
    assert_eq!(up.len(), 1, "the USE goes on once the SELECT is answered");
    assert_eq!(up[0].header.stream, 2);
    let (up, _) = w.server_sends(2, Opcode::Result, &set_keyspace("shop"));
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].header.stream, 3);
}

#[test]
fn an_execute_of_a_prepared_use_moves_the_keyspace() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    let (up, _) = w.client_sends(1, Opcode::Prepare, &prepare_body("USE shop", 4));
    assert_eq!(up.len(), 1);
    let mut prepared = 4i32.to_be_bytes().to_vec();
    write::short_bytes(&mut prepared, b"use-shop");
    prepared.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]); // no metadata
    prepared.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0]);
    w.server_sends(1, Opcode::Result, &prepared);
    let mut bytes = w
        .client
        .write(2, Opcode::Execute, &execute_body(b"use-shop", 4));
    bytes.extend(w.client.write(
        3,
        Opcode::Query,
        &query_body("DELETE FROM customers WHERE id = 1", 4),
    ));
    let (_, up, _) = feed_once(&mut w, C2S, &bytes);
    assert_eq!(up.len(), 1, "only the EXECUTE goes on");
    let answer = w.server.write(2, Opcode::Result, &set_keyspace("shop"));
    let (_, up, down) = feed_once(&mut w, S2C, &answer);
    assert_eq!(w.session.keyspace(), Some("shop"));
    assert!(up.is_empty());
    assert!(down[1].error().1.contains("<table shop.customers>"));
}

#[test]
fn failed_logins_end_the_connection_after_the_configured_attempts() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.client_sends(1, Opcode::Startup, &startup_body());
    w.server_sends(1, Opcode::Ready, &[]);
    let mut bytes = Vec::new();
    for stream in 2..50 {
        bytes.extend(w.client.write(
            stream,
            Opcode::AuthResponse,
            &auth_response_body("alice", "not-a-token"),
        ));
    }
    let (action, up, down) = feed_once(&mut w, C2S, &bytes);
    let Fed::Refuse(violation) = action else {
        panic!("{action:?}");
    };
    assert_eq!(
        violation.to_string(),
        "client failed to log in 3 times (cql_max_auth_attempts)"
    );
    assert!(up.is_empty());
    assert_eq!(down.len(), 3, "three refusals, then nothing");
    assert!(down.iter().all(|f| f.error().0 == 0x0100));
}

#[test]
fn an_identity_no_binding_names_is_refused_at_login() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.client_sends(1, Opcode::Startup, &startup_body());
    w.server_sends(1, Opcode::Ready, &[]);
    let claims = json!({ "sub": "mallory", "exp": NOW + 600, "groups": ["visitors"] });
    let unbound = encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let (up, down) = w.client_sends(
        2,
        Opcode::AuthResponse,
        &auth_response_body("mallory", &unbound),
    );
    assert!(up.is_empty());
    let (code, message) = down[0].error();
    assert_eq!(code, 0x0100);
    assert_eq!(
        message,
        "Authentication failed: no role is bound to principal mallory"
    );
    assert!(w.session.identity().is_none());
}

#[test]
fn a_refusal_after_login_waits_for_the_server_frame_in_progress() {
    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    let (up, _) = w.query(20, "SELECT * FROM shop.orders");
    assert_eq!(up.len(), 1);
    let mut result = 2i32.to_be_bytes().to_vec();
    result.extend_from_slice(&[7u8; 5000]);
    let bytes = w.server.write(20, Opcode::Result, &result);
    let (head, tail) = bytes.split_at(1000);
    assert_eq!(w.feed(S2C, head), Fed::Forward);
    let startup = w.client.write(21, Opcode::Startup, &startup_body());
    let Fed::Refuse(_) = w.feed(C2S, &startup) else {
        panic!("STARTUP after login is refused");
    };
    assert!(!w.session.is_drained(), "the refusal waits");
    assert!(!w.has_output(S2C), "not inside the RESULT");
    let mut to_client = head.to_vec();
    assert_eq!(w.feed(S2C, tail), Fed::Replace);
    to_client.extend(w.take(S2C));
    assert!(w.session.is_drained());
    let frames = w.client.read(&to_client);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].body, result);
    assert_eq!(frames[1].header.stream, 21);
    assert_eq!(frames[1].error().0, 0x000A);
}

#[test]
fn with_stream_reuse_wait_a_reused_stream_waits_for_its_earlier_answer() {
    for version in [4, 5] {
        let mut w = Wire::new(
            Setup {
                stream_reuse: StreamReuse::Wait,
                ..Setup::default()
            }
            .session(),
            version,
        );
        w.log_in(&token("alice", NOW + 600));
        let bytes = pipelined(
            &w,
            &[
                (7, "SELECT * FROM shop.orders"),
                (7, "SELECT * FROM shop.items"),
                (8, "SELECT * FROM shop.stock"),
            ],
        );
        let (action, up, down) = feed_once(&mut w, C2S, &bytes);
        assert_eq!(action, Fed::Replace, "v{version}");
        assert!(down.is_empty());
        assert_eq!(up.len(), 1, "v{version}: only the first goes on");
        let answer = w.server.write(7, Opcode::Result, &1i32.to_be_bytes());
        let (_, up, down) = feed_once(&mut w, S2C, &answer);
        assert_eq!(down.len(), 1);
        let streams: Vec<i16> = up.iter().map(|f| f.header.stream).collect();
        assert_eq!(
            streams,
            [7, 8],
            "v{version}: in order, once stream 7 is free"
        );
        assert_eq!(
            up[0].body,
            query_body("SELECT * FROM shop.items", version),
            "v{version}"
        );
    }
}

// Topology: the answers that name nodes reach the client naming proxies.

use crate::codec::segment::write_segments;
use crate::topology::Topology;
use std::net::SocketAddr;

const INET: u16 = 0x0010;
const VARCHAR: u16 = 0x000D;
const SET: u16 = 0x0022;

/// A Rows body of `system.<table>` with the columns rpc_address (inet), data_center (text)
/// and tokens (set<text>); `no_metadata`: as an EXECUTE that skipped it gets it.
fn node_rows(table: &str, rows: &[([u8; 4], &str)], no_metadata: bool) -> Vec<u8> {
    let mut b = 2i32.to_be_bytes().to_vec();
    if no_metadata {
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
    } else {
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        write::string(&mut b, "system");
        write::string(&mut b, table);
        node_columns(&mut b);
    }
    b.extend_from_slice(&(rows.len() as i32).to_be_bytes());
    for (ip, dc) in rows {
        write::bytes(&mut b, Some(ip));
        write::bytes(&mut b, Some(dc.as_bytes()));
        write::bytes(&mut b, Some(&token_set()));
    }
    b
}

/// The tokens cell of every row [`node_rows`] writes: {'-42'}.
fn token_set() -> Vec<u8> {
    let mut set = 1i32.to_be_bytes().to_vec();
    write::bytes(&mut set, Some(b"-42"));
    set
}

fn node_columns(b: &mut Vec<u8>) {
    node_columns_named(b, "rpc_address");
}

fn node_columns_named(b: &mut Vec<u8>, address: &str) {
    write::string(b, address);
    b.extend_from_slice(&INET.to_be_bytes());
    write::string(b, "data_center");
    b.extend_from_slice(&VARCHAR.to_be_bytes());
    write::string(b, "tokens");
    b.extend_from_slice(&SET.to_be_bytes());
    b.extend_from_slice(&VARCHAR.to_be_bytes());
}

/// The (rpc_address, data_center, tokens) cells of a body [`node_rows`] wrote, rewritten or not.
fn read_node_rows(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    use crate::codec::primitives::{bytes, int, string};
    let (mut i, kind) = int(body).unwrap();
    assert_eq!(kind, 2);
    let (r, flags) = int(i).unwrap();
    let (r, count) = int(r).unwrap();
    assert_eq!(count, 3);
    i = r;
    if flags & 4 == 0 {
        let (r, _) = string(i).unwrap();
        let (r, _) = string(r).unwrap();
        // 3 names with their types: inet, varchar, set<varchar>.
        let mut r = r;
        for extra in [0, 0, 2] {
            let (rest, _) = string(r).unwrap();
            r = &rest[2 + extra..];
        }
        i = r;
    }
    let (mut i, n) = int(i).unwrap();
    let mut rows = Vec::new();
    for _ in 0..n {
        let (r, a) = bytes(i).unwrap();
        let (r, d) = bytes(r).unwrap();
        let (r, t) = bytes(r).unwrap();
        rows.push((
            a.unwrap().to_vec(),
            d.unwrap().to_vec(),
            t.unwrap().to_vec(),
        ));
        i = r;
    }
    assert!(i.is_empty(), "nothing after the rows");
    rows
}

fn logged_in(version: u8, topology: Topology) -> Wire {
    let mut session = Setup {
        topology,
        ..Setup::default()
    }
    .session();
    session.set_local_address("127.0.0.2:9042".parse().unwrap());
    let mut w = Wire::new(session, version);
    w.log_in(&token("alice", NOW + 600));
    w
}

#[test]
fn system_local_names_the_proxy_and_other_answers_pass_as_they_came() {
    for version in [4, 5] {
        let mut w = logged_in(version, Topology::default());
        let (up, _) = w.query(3, "SELECT * FROM shop.items");
        assert_eq!(up.len(), 1);
        let (up, _) = w.query(4, "SELECT * FROM system.local WHERE key='local'");
        assert_eq!(up.len(), 1);
        // Both answers in one read: in v5 in one segment, which is then re-framed.
        let mut plain = 2i32.to_be_bytes().to_vec();
        plain.extend_from_slice(&[9; 3000]);
        let local = node_rows("local", &[([127, 0, 0, 1], "dc1")], false);
        let mut bytes = Vec::new();
        if version >= 5 {
            let mut envelopes = Vec::new();
            let framing = Framing::envelopes(5);
            framing.write_envelope(3, Opcode::Result, 0, &plain, &mut envelopes);
            framing.write_envelope(4, Opcode::Result, 0, &local, &mut envelopes);
            write_segments(&envelopes, false, &mut bytes);
        } else {
            bytes.extend(w.server.write(3, Opcode::Result, &plain));
            bytes.extend(w.server.write(4, Opcode::Result, &local));
        }
        for split in [1, bytes.len()] {
            let mut w = logged_in(version, Topology::default());
            w.query(3, "SELECT * FROM shop.items");
            w.query(4, "SELECT * FROM system.local WHERE key='local'");
            let mut to_client = Vec::new();
            for chunk in bytes.chunks(split) {
                if w.feed(S2C, chunk) == Fed::Forward {
                    to_client.extend_from_slice(chunk);
                }
                to_client.extend(w.take(S2C));
            }
            let frames = w.client.read(&to_client);
            assert_eq!(frames.len(), 2, "v{version}, chunks of {split}");
            assert_eq!(frames[0].header.stream, 3);
            assert_eq!(frames[0].body, plain, "an ordinary answer is not touched");
            assert_eq!(frames[1].header.stream, 4);
            let rows = read_node_rows(&frames[1].body);
            assert_eq!(rows.len(), 1);
            assert_eq!(
                rows[0].0,
                [127, 0, 0, 2],
                "the address the client connected to"
            );
            assert_eq!(rows[0].1, b"dc1");
        }
    }
}

#[test]
fn compressed_topology_answers_are_rewritten_and_compressed_again() {
    let mut w = Wire::new(
        {
            let mut s = Setup::default().session();
            s.set_local_address("127.0.0.2:9042".parse().unwrap());
            s
        },
        4,
    );
    let mut startup = Vec::new();
    startup.extend_from_slice(&2u16.to_be_bytes());
    write::string(&mut startup, "CQL_VERSION");
    write::string(&mut startup, "3.0.0");
    write::string(&mut startup, "COMPRESSION");
    write::string(&mut startup, "lz4");
    w.client_sends(1, Opcode::Startup, &startup);
    let lz4 = Framing::compressed(4, Compression::Lz4);
    w.client.framing = lz4;
    w.server.framing = lz4;
    w.client.reader.set_compression(Compression::Lz4);
    w.server.reader.set_compression(Compression::Lz4);
    w.server_sends(1, Opcode::Ready, &[]);
    let (_, down) = w.client_sends(
        2,
        Opcode::AuthResponse,
        &auth_response_body("alice", &token("alice", NOW + 600)),
    );
    assert_eq!(down[0].header.opcode, Opcode::AuthSuccess);
    w.query(
        5,
        "SELECT rpc_address, data_center, tokens FROM system.peers",
    );
    let peers = node_rows("peers", &[([10, 0, 1, 2], "dc1")], false);
    let (_, down) = w.server_sends(5, Opcode::Result, &peers);
    assert_eq!(down.len(), 1);
    assert!(down[0].header.flags.compression());
    assert!(
        read_node_rows(&down[0].body).is_empty(),
        "the proxy is the only node: no peers"
    );
}

#[test]
fn an_execute_without_metadata_is_rewritten_with_the_columns_of_its_prepare() {
    let mut w = logged_in(4, Topology::default());
    let text = "SELECT rpc_address, data_center, tokens FROM system.local";
    w.client_sends(6, Opcode::Prepare, &prepare_body(text, 4));
    let mut prepared = 4i32.to_be_bytes().to_vec();
    write::short_bytes(&mut prepared, b"local-id");
    // Bind metadata: no flags, no variables, no partition key.
    prepared.extend_from_slice(&0i32.to_be_bytes());
    prepared.extend_from_slice(&0i32.to_be_bytes());
    prepared.extend_from_slice(&0i32.to_be_bytes());
    // Result metadata.
    prepared.extend_from_slice(&1i32.to_be_bytes());
    prepared.extend_from_slice(&3i32.to_be_bytes());
    write::string(&mut prepared, "system");
    write::string(&mut prepared, "local");
    node_columns(&mut prepared);
    w.server_sends(6, Opcode::Result, &prepared);
    let (up, _) = w.client_sends(7, Opcode::Execute, &execute_body(b"local-id", 4));
    assert_eq!(up.len(), 1);
    let rows = node_rows("local", &[([10, 0, 1, 1], "dc1")], true);
    let (_, down) = w.server_sends(7, Opcode::Result, &rows);
    let rows = read_node_rows(&down[0].body);
    assert_eq!(rows[0].0, [127, 0, 0, 2]);
}

fn status_change(address: [u8; 4], port: i32) -> Vec<u8> {
    let mut b = Vec::new();
    write::string(&mut b, "STATUS_CHANGE");
    write::string(&mut b, "DOWN");
    b.push(4);
    b.extend_from_slice(&address);
    b.extend_from_slice(&port.to_be_bytes());
    b
}

fn register_body() -> Vec<u8> {
    let mut b = 3u16.to_be_bytes().to_vec();
    for event in ["TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE"] {
        write::string(&mut b, event);
    }
    b
}

#[test]
fn events_name_the_proxy_of_their_node_and_unmapped_nodes_are_not_passed_on() {
    let node = |s: &str| s.parse::<SocketAddr>().unwrap();
    let topology = Topology::Nodes {
        map: vec![
            (node("10.0.1.1:9042"), node("127.0.0.2:9042")),
            (node("10.0.1.2:9042"), node("127.0.0.3:9042")),
        ],
    };
    let mut w = logged_in(4, topology);
    let (up, _) = w.client_sends(8, Opcode::Register, &register_body());
    assert_eq!(up.len(), 1);
    w.server_sends(8, Opcode::Ready, &[]);
    let (_, down) = w.server_sends(-1, Opcode::Event, &status_change([10, 0, 1, 2], 9042));
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].body, status_change([127, 0, 0, 3], 9042));
    let (_, down) = w.server_sends(-1, Opcode::Event, &status_change([10, 0, 1, 9], 9042));
    assert!(down.is_empty(), "an unmapped node's event is not passed on");
    let notices = w.take_notices();
    assert!(
        notices.iter().any(|n| n.contains("10.0.1.9")),
        "{notices:?}"
    );
    // Peers: the unmapped one is left out, the mapped one names its proxy.
    w.query(9, "SELECT * FROM system.peers");
    let peers = node_rows(
        "peers",
        &[([10, 0, 1, 2], "dc2"), ([10, 0, 1, 9], "dc2")],
        false,
    );
    let (_, down) = w.server_sends(9, Opcode::Result, &peers);
    let rows = read_node_rows(&down[0].body);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, [127, 0, 0, 3]);
    assert_eq!(rows[0].1, b"dc2");
    assert_eq!(rows[0].2, token_set(), "tokens are kept");
    let notices = w.take_notices();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("system.peers") && n.contains("10.0.1.9")),
        "{notices:?}"
    );
}

#[test]
fn with_topology_off_rows_pass_as_they_came() {
    let mut w = logged_in(4, Topology::Off);
    w.query(4, "SELECT * FROM system.local");
    let local = node_rows("local", &[([10, 0, 1, 1], "dc1")], false);
    let (_, down) = w.server_sends(4, Opcode::Result, &local);
    assert_eq!(down[0].body, local);
}

#[test]
fn an_address_column_under_an_alias_names_the_proxy_too() {
    let mut w = logged_in(4, Topology::default());
    w.query(
        4,
        "SELECT rpc_address AS a, data_center, tokens FROM system.local",
    );
    let mut local = 2i32.to_be_bytes().to_vec();
    local.extend_from_slice(&1i32.to_be_bytes());
    local.extend_from_slice(&3i32.to_be_bytes());
    write::string(&mut local, "system");
    write::string(&mut local, "local");
    node_columns_named(&mut local, "a");
    local.extend_from_slice(&1i32.to_be_bytes());
    write::bytes(&mut local, Some(&[10, 0, 1, 1]));
    write::bytes(&mut local, Some(b"dc1"));
    write::bytes(&mut local, Some(&token_set()));
    let (_, down) = w.server_sends(4, Opcode::Result, &local);
    assert_eq!(read_node_rows(&down[0].body)[0].0, [127, 0, 0, 2]);
}

/// A server's counters in a zone of their own, and the zone to render.
fn metered() -> (crate::metrics::Zone, Rc<crate::metrics::ServerMeter>) {
    let words = crate::metrics::zone::leaked(100_000);
    let zone = crate::metrics::Zone::attach(words, 4, 4).unwrap();
    let meter = Rc::new(crate::metrics::ServerMeter::default());
    meter.bind(zone, zone.server_slot("test").unwrap());
    (zone, meter)
}

#[test]
fn a_session_counts_its_login_decisions_answers_latency_and_end() {
    let (zone, meter) = metered();
    let setup = Setup {
        metrics: Some(meter),
        ..Setup::default()
    };
    let mut w = Wire::new(setup.session(), 4);
    w.now = Now {
        unix_ms: NOW * 1000,
        monotonic_us: 1_000,
    };
    w.log_in(&token("alice", NOW + 600));
    // Allowed, answered 300 µs later; allowed, answered ReadTimeout; denied; unprepared.
    w.query(3, "SELECT * FROM shop.orders");
    w.now = Now {
        unix_ms: NOW * 1000,
        monotonic_us: 1_300,
    };
    w.server_sends(3, Opcode::Result, &1i32.to_be_bytes());
    w.query(4, "SELECT * FROM shop.orders");
    let mut timeout = 0x1200i32.to_be_bytes().to_vec();
    write::string(&mut timeout, "Operation timed out");
    timeout.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    w.server_sends(4, Opcode::Error, &timeout);
    let (up, _) = w.query(5, "DELETE FROM shop.customers WHERE id = 1");
    assert!(up.is_empty());
    w.client_sends(6, Opcode::Execute, &execute_body(b"unknown-id", 4));
    drop(w);

    let mut text = String::new();
    crate::metrics::render::render(&zone, &mut text);
    for line in [
        "cql_connections_total{server=\"test\"} 1",
        "cql_connections_open{server=\"test\"} 0",
        "cql_logins_total{server=\"test\",method=\"jwt\",outcome=\"success\"} 1",
        "cql_handshake_duration_seconds_count{server=\"test\",method=\"jwt\"} 1",
        "cql_requests_total{server=\"test\",category=\"query\",decision=\"allowed\"} 2",
        "cql_requests_total{server=\"test\",category=\"dml\",decision=\"denied\"} 1",
        "cql_requests_total{server=\"test\",category=\"error\",decision=\"unprepared\"} 1",
        "cql_unprepared_answers_total{server=\"test\"} 1",
        "cql_denied_requests_total{server=\"test\",reason=\"policy\"} 1",
        "cql_denials_total{server=\"test\",role=\"writer\",keyspace=\"shop\"} 1",
        "cql_upstream_responses_total{server=\"test\",outcome=\"result\"} 1",
        "cql_upstream_responses_total{server=\"test\",outcome=\"read_timeout\"} 1",
        "cql_upstream_response_duration_seconds_bucket{server=\"test\",le=\"0.00025\"} 1",
        "cql_upstream_response_duration_seconds_bucket{server=\"test\",le=\"0.0005\"} 2",
        "cql_upstream_response_duration_seconds_sum{server=\"test\"} 0.0003",
        "cql_cache_misses_total{server=\"test\",cache=\"token\"} 1",
        "cql_cache_misses_total{server=\"test\",cache=\"prepared\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
    }
}

#[test]
fn a_protocol_violation_is_counted_by_kind() {
    let (zone, meter) = metered();
    let session = Setup {
        metrics: Some(meter),
        ..Setup::default()
    }
    .session();
    let mut w = Wire::new(session, 4);
    let action = w.feed(C2S, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(action, Fed::Refuse(_) | Fed::Close(_)));
    let session = w.session;
    drop(session);
    let mut text = String::new();
    crate::metrics::render::render(&zone, &mut text);
    assert!(
        text.contains("cql_protocol_violations_total{server=\"test\",kind=\"invalid_stream\"} 1\n")
    );
    assert!(text.contains("cql_received_bytes_total{server=\"test\",from=\"client\"} 18\n"));
}

/// A region of zeroed words for a limit zone, alive as long as the test process.
fn limit_words(words: usize) -> &'static [core::sync::atomic::AtomicU64] {
    crate::metrics::zone::leaked(words)
}

fn rate_limit(name: &str, rate: &str, burst: u32) -> RateLimit {
    let zone = LimitZone::new(
        name.to_string(),
        crate::limits::KeyTemplate::parse("$cql_principal").unwrap(),
    );
    zone.bind(crate::limits::RateZone::create(limit_words(4096), 7).unwrap());
    RateLimit {
        zone: Rc::new(zone),
        rate: crate::limits::Rate::parse(rate).unwrap(),
        burst,
    }
}

fn count_zone(name: &str) -> Rc<LimitZone<crate::limits::CountZone>> {
    let zone = LimitZone::new(
        name.to_string(),
        crate::limits::KeyTemplate::parse("$cql_principal").unwrap(),
    );
    zone.bind(crate::limits::CountZone::create(limit_words(4096), 7).unwrap());
    Rc::new(zone)
}

/// Limits of one count cap over a zone of its own, and the zone.
fn one_cap(
    name: &str,
    counter: crate::limits::Counter,
    max: u32,
) -> (Rc<LimitZone<crate::limits::CountZone>>, Quotas) {
    let zone = count_zone(name);
    let quotas = Quotas {
        rates: Vec::new(),
        counts: vec![CountLimit {
            zone: zone.clone(),
            counter,
            max,
        }],
    };
    (zone, quotas)
}

/// Two sessions of one server share its limits, as two workers share a zone.
fn server_with(quotas: Quotas, dry_run: bool) -> (Rc<Config>, Rc<RefCell<Shared>>) {
    let session = Setup {
        quotas,
        dry_run,
        audit: true,
        ..Setup::default()
    }
    .session();
    (session.config.clone(), session.shared.clone())
}

fn audited(mut session: Session) -> Session {
    session.open_audit(
        crate::audit::Peer {
            session: 1,
            client: "10.0.0.1:5000".into(),
            server: "10.0.0.2:9042".into(),
        },
        at(NOW),
    );
    session
}

fn wire_of(server: &(Rc<Config>, Rc<RefCell<Shared>>), user: &str) -> Wire {
    let session = audited(Session::new(server.0.clone(), server.1.clone(), None));
    let mut w = Wire::new(session, 4);
    w.log_in(&token(user, NOW + 600));
    w
}

fn at_us(w: &mut Wire, us: u64) {
    w.now = Now {
        unix_ms: NOW * 1000,
        monotonic_us: us,
    };
}

#[test]
fn over_its_rate_an_identity_is_answered_overloaded_and_others_are_not() {
    let quotas = Quotas {
        rates: vec![rate_limit("per_user", "10r/s", 1)],
        counts: Vec::new(),
    };
    let server = server_with(quotas, false);
    let mut alice = wire_of(&server, "alice");
    let mut bob = wire_of(&server, "bob");
    at_us(&mut alice, 5_000_000);
    at_us(&mut bob, 5_000_000);
    // A burst of 1: two at once, then one per 100 ms.
    for stream in [3, 4] {
        let (up, down) = alice.query(stream, "SELECT * FROM shop.orders");
        assert_eq!((up.len(), down.len()), (1, 0), "stream {stream}");
        alice.server_sends(stream, Opcode::Result, &1i32.to_be_bytes());
    }
    let (up, down) = alice.query(5, "SELECT * FROM shop.orders");
    assert!(up.is_empty(), "a limited request never reaches the server");
    let (code, message) = down[0].error();
    assert_eq!(code, 0x1001, "Overloaded, which drivers back off from");
    assert!(
        message.starts_with("Rate limit exceeded for user alice: zone per_user allows 10r/s"),
        "{message}"
    );
    // Another identity has a budget of its own.
    let (up, _) = bob.query(3, "SELECT * FROM shop.orders");
    assert_eq!(up.len(), 1);
    // 100 ms later alice may go on.
    at_us(&mut alice, 5_100_000);
    let (up, down) = alice.query(6, "SELECT * FROM shop.orders");
    assert_eq!((up.len(), down.len()), (1, 0));
    let lines = audit_lines(&mut alice);
    let limited = lines
        .iter()
        .find(|l| l["stream"] == 5)
        .expect("the limited request is audited");
    assert_eq!(limited["decision"], "deny");
    assert!(limited["reason"]
        .as_str()
        .unwrap()
        .contains("Rate limit exceeded"));
}

#[test]
fn requests_in_flight_are_capped_across_connections_and_freed_by_answers_and_ends() {
    let (zone, quotas) = one_cap("inflight", crate::limits::Counter::InFlight, 2);
    let server = server_with(quotas, false);
    let mut one = wire_of(&server, "alice");
    let mut two = wire_of(&server, "alice");
    let key = zone.memory().unwrap().hash(b"alice");
    assert_eq!(one.query(3, "SELECT * FROM shop.orders").0.len(), 1);
    assert_eq!(two.query(3, "SELECT * FROM shop.orders").0.len(), 1);
    let (up, down) = two.query(4, "SELECT * FROM shop.orders");
    assert!(up.is_empty());
    let (code, message) = down[0].error();
    assert_eq!(code, 0x1001);
    assert!(
        message.starts_with("Too many requests in flight for user alice"),
        "{message}"
    );
    // A denied request takes nothing.
    let (up, down) = one.query(5, "DELETE FROM shop.customers WHERE id = 1");
    assert!(up.is_empty());
    assert_eq!(down[0].error().0, 0x2100);
    let memory = zone.memory().unwrap();
    assert_eq!(memory.current(key, crate::limits::Counter::InFlight), 2);
    // An answer frees one.
    one.server_sends(3, Opcode::Result, &1i32.to_be_bytes());
    assert_eq!(memory.current(key, crate::limits::Counter::InFlight), 1);
    assert_eq!(two.query(6, "SELECT * FROM shop.orders").0.len(), 1);
    // A connection that ends gives back what its unanswered requests held.
    drop(two);
    assert_eq!(memory.current(key, crate::limits::Counter::InFlight), 0);
}

#[test]
fn over_its_connection_cap_a_login_is_answered_overloaded_and_the_connection_ends() {
    let (_, quotas) = one_cap("conns", crate::limits::Counter::Connections, 1);
    let server = server_with(quotas, false);
    let first = wire_of(&server, "alice");
    let _bob = wire_of(&server, "bob");
    let mut second = Wire::new(Session::new(server.0.clone(), server.1.clone(), None), 4);
    second.client_sends(1, Opcode::Startup, &startup_body());
    second.server_sends(1, Opcode::Ready, &[]);
    let body = auth_response_body("alice", &token("alice", NOW + 600));
    let bytes = second.client.write(2, Opcode::AuthResponse, &body);
    let (action, up, down) = feed_once(&mut second, C2S, &bytes);
    assert!(matches!(action, Fed::Refuse(_)), "{action:?}");
    assert!(up.is_empty());
    let (code, message) = down[0].error();
    assert_eq!(code, 0x1001);
    assert!(
        message.starts_with("Too many connections for user alice: 1 open"),
        "{message}"
    );
    // Once the first connection ends, alice may connect again.
    drop(first);
    drop(second);
    let _again = wire_of(&server, "alice");
}

const GUARDED: &str = r#"
[roles.reader]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE shop" } ]
guardrails = { read_consistency = ["ONE", "LOCAL_QUORUM"], max_page_size = 100, max_statement_bytes = 64 }
[[bind]]
role = "reader"
principals = ["alice"]
"#;

fn query_paged(text: &str, consistency: u16, page_size: Option<i32>) -> Vec<u8> {
    let mut b = Vec::new();
    write::long_string(&mut b, text);
    b.extend_from_slice(&consistency.to_be_bytes());
    match page_size {
        Some(n) => {
            b.push(0x04);
            b.extend_from_slice(&n.to_be_bytes());
        }
        None => b.push(0),
    }
    b
}

#[test]
fn guardrails_refuse_with_invalid_and_a_dry_run_forwards_what_they_would_refuse() {
    for dry_run in [false, true] {
        let (zone, meter) = metered();
        let mut w = Wire::new(
            audited(
                Setup {
                    policy_text: GUARDED,
                    dry_run,
                    audit: true,
                    metrics: Some(meter),
                    ..Setup::default()
                }
                .session(),
            ),
            4,
        );
        w.log_in(&token("alice", NOW + 600));
        let select = "SELECT * FROM shop.orders";
        let refused = [
            (
                3,
                query_paged(select, 0x0005, Some(50)),
                "Guardrail read_consistency violated",
            ),
            (
                4,
                query_paged(select, 0x0001, Some(101)),
                "Guardrail max_page_size violated",
            ),
            (
                5,
                query_paged(select, 0x0001, None),
                "Guardrail max_page_size violated",
            ),
            (
                6,
                query_paged(
                    &format!("{select} WHERE id IN ({})", "1, ".repeat(20) + "1"),
                    1,
                    Some(5),
                ),
                "Guardrail max_statement_bytes violated",
            ),
            (
                7,
                query_body("DELETE FROM stock.items WHERE id = 1", 4),
                "has no MODIFY",
            ),
        ];
        for (stream, body, reason) in &refused {
            let (up, down) = w.client_sends(*stream, Opcode::Query, body);
            if dry_run {
                assert_eq!(
                    (up.len(), down.len()),
                    (1, 0),
                    "dry run forwards stream {stream}"
                );
                w.server_sends(*stream, Opcode::Result, &1i32.to_be_bytes());
            } else {
                assert!(up.is_empty(), "stream {stream}");
                let (code, message) = down[0].error();
                let expected = if *stream == 7 { 0x2100 } else { 0x2200 };
                assert_eq!(code, expected, "{message}");
                assert!(message.contains(reason), "{message}");
            }
        }
        let (up, _) = w.client_sends(8, Opcode::Query, &query_paged(select, 0x0006, Some(100)));
        assert_eq!(up.len(), 1, "LOCAL_QUORUM with a page of 100 is allowed");
        let lines = audit_lines(&mut w);
        for (stream, _, reason) in &refused {
            let line = lines.iter().find(|l| l["stream"] == *stream).unwrap();
            let decision = if dry_run { "would_deny" } else { "deny" };
            assert_eq!(line["decision"], decision, "{line}");
            assert!(line["reason"].as_str().unwrap().contains(reason), "{line}");
        }
        drop(w);
        let mut text = String::new();
        crate::metrics::render::render(&zone, &mut text);
        let (decision, family) = if dry_run {
            ("would_deny", "cql_would_deny_requests_total")
        } else {
            ("denied", "cql_denied_requests_total")
        };
        for line in [
            format!("cql_requests_total{{server=\"test\",category=\"query\",decision=\"{decision}\"}} 4"),
            format!("{family}{{server=\"test\",reason=\"guardrail\"}} 4"),
            format!("{family}{{server=\"test\",reason=\"policy\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
    }
}

#[test]
fn in_dry_run_a_limited_request_goes_on_and_a_bad_token_is_still_refused() {
    let quotas = Quotas {
        rates: vec![rate_limit("per_user", "1r/s", 0)],
        counts: Vec::new(),
    };
    let server = server_with(quotas, true);
    let mut w = wire_of(&server, "alice");
    at_us(&mut w, 9_000_000);
    for stream in [3, 4, 5] {
        let (up, down) = w.query(stream, "SELECT * FROM shop.orders");
        assert_eq!((up.len(), down.len()), (1, 0), "stream {stream}");
        w.server_sends(stream, Opcode::Result, &1i32.to_be_bytes());
    }
    let lines = audit_lines(&mut w);
    let decisions: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "request")
        .map(|l| l["decision"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(decisions, ["allow", "would_deny", "would_deny"]);
    // Logins are never dry-run.
    let mut forged = Wire::new(Session::new(server.0.clone(), server.1.clone(), None), 4);
    forged.client_sends(1, Opcode::Startup, &startup_body());
    forged.server_sends(1, Opcode::Ready, &[]);
    let (up, down) = forged.client_sends(
        2,
        Opcode::AuthResponse,
        &auth_response_body("alice", "not-a-token"),
    );
    assert!(up.is_empty());
    assert_eq!(down[0].error().0, 0x0100);
}

const ROLE_LOGINS: &str = r#"
[roles.shop_reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
upstream_login = "svc_shop_reader"
[[bind]]
role = "shop_reader"
principals = ["alice"]
[[bind]]
role = "shop_reader"
principals = ["carol"]
[roles.other]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
[[bind]]
role = "other"
principals = ["bob"]
"#;

#[test]
fn a_role_logs_in_to_cassandra_as_its_own_login_and_others_as_the_service() {
    for (user, login, password) in [
        ("alice", "svc_shop_reader", "reader-password"),
        ("bob", "svc_proxy", "service-password"),
    ] {
        let mut w = Wire::new(
            Setup {
                login: true,
                policy_text: ROLE_LOGINS,
                credentials: Some("# logins\nsvc_shop_reader:reader-password\n"),
                ..Setup::default()
            }
            .session(),
            4,
        );
        w.start_with_a_password_upstream();
        let tok = token(user, NOW + 600);
        let (up, _) = w.client_sends(2, Opcode::AuthResponse, &auth_response_body(user, &tok));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].body, auth_response_body(login, password), "{user}");
    }
}

const PREPARED_BY_ANOTHER: &str = r#"
[roles.strict]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
guardrails = { max_statement_bytes = 40 }
[roles.lax]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
[[bind]]
role = "strict"
principals = ["alice"]
[[bind]]
role = "lax"
principals = ["bob"]
"#;

#[test]
fn an_id_another_identity_prepared_is_bound_by_the_executing_identitys_guardrails() {
    let session = Setup {
        policy_text: PREPARED_BY_ANOTHER,
        ..Setup::default()
    }
    .session();
    let (config, shared) = (session.config.clone(), session.shared.clone());
    let long = "SELECT * FROM shop.orders WHERE id = ? AND day = ?";
    assert!(long.len() > 40);
    let mut bob = Wire::new(Session::new(config.clone(), shared.clone(), None), 4);
    bob.log_in(&token("bob", NOW + 600));
    let (up, _) = bob.client_sends(3, Opcode::Prepare, &prepare_body(long, 4));
    assert_eq!(up.len(), 1, "bob may prepare it");
    let mut prepared = Vec::new();
    prepared.extend_from_slice(&4i32.to_be_bytes());
    write::short_bytes(&mut prepared, b"long-id");
    prepared.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bob.server_sends(3, Opcode::Result, &prepared);
    let mut alice = Wire::new(Session::new(config, shared, None), 4);
    alice.log_in(&token("alice", NOW + 600));
    let (up, down) = alice.client_sends(4, Opcode::Execute, &execute_body(b"long-id", 4));
    assert!(up.is_empty(), "the executing identity's bound holds");
    let (code, message) = down[0].error();
    assert_eq!(code, 0x2200);
    assert!(
        message.starts_with("Guardrail max_statement_bytes violated"),
        "{message}"
    );
    let (up, _) = bob.client_sends(5, Opcode::Execute, &execute_body(b"long-id", 4));
    assert_eq!(up.len(), 1, "bob's roles do not bound it");
}

#[test]
fn a_login_cassandra_refused_and_tried_again_holds_one_connection() {
    let (zone, quotas) = one_cap("conns", crate::limits::Counter::Connections, 1);
    let mut w = Wire::new(
        Setup {
            login: true,
            quotas,
            ..Setup::default()
        }
        .session(),
        4,
    );
    let key = zone.memory().unwrap().hash(b"alice");
    let held = || {
        zone.memory()
            .unwrap()
            .current(key, crate::limits::Counter::Connections)
    };
    w.start_with_a_password_upstream();
    let tok = token("alice", NOW + 600);
    w.client_sends(2, Opcode::AuthResponse, &auth_response_body("alice", &tok));
    assert_eq!(held(), 1);
    let mut refused = 0x0100i32.to_be_bytes().to_vec();
    write::string(
        &mut refused,
        "Provided username svc_proxy and/or password are incorrect",
    );
    w.server_sends(2, Opcode::Error, &refused);
    // The client tries again on the same connection: still one connection of alice's.
    let (up, _) = w.client_sends(3, Opcode::AuthResponse, &auth_response_body("alice", &tok));
    assert_eq!(up.len(), 1, "the proxy logs in again");
    assert_eq!(held(), 1);
    drop(w);
    assert_eq!(held(), 0);
}

#[test]
fn a_client_that_has_not_logged_in_by_the_deadline_is_disconnected_and_one_that_has_is_not() {
    let session = Setup {
        audit: true,
        ..Setup::default()
    }
    .session();
    let mut w = Wire::new(audited(session), 4);
    w.client_sends(1, Opcode::Startup, &startup_body());
    w.session.handle_timeout(w.now);
    w.out.poll(&mut w.session);
    let Some(Output::Close(violation)) = w.out.end.take() else {
        panic!("no close: {:?}", w.out.end);
    };
    let ms = Limits::default().auth_timeout_ms;
    assert_eq!(violation.fault, Fault::AuthTimeout { ms });
    assert_eq!(
        violation.to_string(),
        format!("client did not authenticate within {ms} ms (cql_auth_timeout)")
    );
    let lines = audit_lines(&mut w);
    assert!(
        lines.iter().any(|l| l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cql_auth_timeout"))),
        "{lines:?}"
    );

    let mut w = Wire::new(Setup::default().session(), 4);
    w.log_in(&token("alice", NOW + 600));
    w.session.handle_timeout(w.now);
    w.out.poll(&mut w.session);
    assert_eq!(w.out.end, None);

    // Refused before STARTUP, by a client that never reads its refusal: the deadline still
    // ends the connection.
    let mut w = Wire::new(Setup::default().session(), 4);
    let bytes = w.client.write(
        1,
        Opcode::Query,
        &query_body("SELECT * FROM shop.orders", 4),
    );
    let Fed::Refuse(_) = w.feed(C2S, &bytes) else {
        panic!("QUERY before STARTUP is refused");
    };
    w.session.handle_timeout(w.now);
    w.out.poll(&mut w.session);
    let Some(Output::Close(violation)) = w.out.end.take() else {
        panic!("no close after the refusal: {:?}", w.out.end);
    };
    assert_eq!(violation.fault, Fault::AuthTimeout { ms });
}
