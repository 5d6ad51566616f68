//! The gate between a scripted client and a model Cassandra: the client pipelines QUERY,
//! PREPARE and EXECUTE requests (USE among them) on a few stream ids, so ids are reused and
//! keyspaces change with requests in flight; the model server runs what reaches it in any
//! order, in the keyspace it is in when it runs each request, as Cassandra may. Invariants:
//! - every statement the server runs, in the keyspace the server runs it in, is one the
//!   policy allows (the keyspace decided is the keyspace the server was told);
//! - no request reaches the server on a stream id that has one there already;
//! - what reaches the client is valid CQL, and never names a node the topology does not map
//!   (the model answers `system.peers` with a mapped node and an unmapped one).
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use ngx_stream_cql_module::classify::{classify, Kind};
use ngx_stream_cql_module::codec::messages::{strip_prefixes, Execute, Prepare, Query};
use ngx_stream_cql_module::codec::primitives::write;
use ngx_stream_cql_module::codec::segment::write_segment;
use ngx_stream_cql_module::codec::{Direction, Event, FrameReader, Framing, Header, Opcode};
use ngx_stream_cql_module::policy::{DecisionCache, Policy, RoleSet};
use ngx_stream_cql_module::session::{Action, Now, Output, Session};

/// The statements the client may send.
const TEXTS: [&str; 10] = [
    PEERS,
    "SELECT * FROM t",
    "INSERT INTO t (k) VALUES (1)",
    "DELETE FROM t WHERE k = 1",
    "SELECT * FROM other",
    "SELECT * FROM ks1.t",
    "SELECT * FROM ks2.other",
    "USE ks1",
    "USE ks2",
    "USE ks3",
];
const PEERS: &str = "SELECT * FROM system.peers";

/// A node no `cql_topology_node` maps, as its 16 address bytes: they never reach the client.
const HIDDEN: [u8; 16] = [0xfd, 0, 0xc0, 0x1d, 0xca, 0xfe, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];

/// The model's answer to `SELECT * FROM system.peers`: a node the fuzzed layouts map
/// (127.0.0.1:9042) and one none does.
fn peers_rows(out: &mut Vec<u8>) {
    out.extend_from_slice(&2i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&3i32.to_be_bytes());
    write::string(out, "system");
    write::string(out, "peers");
    for (name, kind) in [("peer", 0x10u16), ("rpc_address", 0x10), ("data_center", 0x0D)] {
        write::string(out, name);
        out.extend_from_slice(&kind.to_be_bytes());
    }
    out.extend_from_slice(&2i32.to_be_bytes());
    for address in [&[127u8, 0, 0, 1][..], &HIDDEN[..]] {
        write::bytes(out, Some(address));
        write::bytes(out, Some(address));
        write::bytes(out, Some(b"dc1"));
    }
}

const KEYSPACES: [Option<&str>; 3] = [None, Some("ks1"), Some("ks2")];

/// The policy of the model: all of ks1, and one table of ks2 (so USE ks2 is allowed).
pub const POLICY: &str = r#"
[roles.app]
grant = [
    { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE ks1" },
    { permissions = ["SELECT"], on = "TABLE ks2.other" },
]
[[bind]]
role = "app"
groups = ["g"]
"#;

/// The id Cassandra gives a statement prepared in a keyspace (an MD5 of both there).
fn prepared_id(keyspace: Option<&str>, text: &str) -> Vec<u8> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    keyspace.hash(&mut h);
    text.hash(&mut h);
    h.finish().to_be_bytes().to_vec()
}

struct Server {
    reader: FrameReader,
    framing: Framing,
    version: u8,
    /// Requests received and not answered yet.
    inflight: Vec<(Header, Vec<u8>)>,
    keyspace: Option<String>,
    /// Prepared ids, with the text and the keyspace they were prepared in.
    prepared: HashMap<Vec<u8>, (String, Option<String>)>,
    policy: Rc<Policy>,
    principal: String,
    roles: RoleSet,
    decisions: DecisionCache,
}

impl Server {
    /// Reads what the proxy sent on.
    fn receive(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (used, event) = self.reader.next(bytes).expect("the proxy sends valid CQL");
            match event {
                Event::NeedMore => break,
                Event::Header(_) => self.reader.capture_body(),
                Event::Frame { header, body } => {
                    let body = body.unwrap_or_default().to_vec();
                    assert!(
                        !self.inflight.iter().any(|(h, _)| h.stream == header.stream),
                        "a request reached the server on stream {}, which has one in flight",
                        header.stream
                    );
                    self.inflight.push((header, body));
                }
                Event::SegmentEnd { .. } => {}
            }
            bytes = &bytes[used..];
        }
    }

    /// Runs a statement in the server's keyspace as it is now.
    fn run(&mut self, text: &str, keyspace: Option<&str>, what: &str) -> Option<String> {
        let statement = classify(text, keyspace);
        if statement.kind == Kind::Use {
            return statement.keyspace.as_deref().map(str::to_string);
        }
        let decision =
            self.policy
                .authorize(&self.principal, &self.roles, &statement, &mut self.decisions);
        assert!(
            decision.allowed,
            "the server ran {what} {text:?} in keyspace {keyspace:?}, which the policy denies: {}",
            decision.reason
        );
        None
    }

    /// Answers the in-flight request `i`, running it now.
    fn answer(&mut self, i: usize, out: &mut Vec<u8>) {
        if self.inflight.is_empty() {
            return;
        }
        let (header, body) = self.inflight.remove(i % self.inflight.len());
        let body = match strip_prefixes(&header, &body) {
            Ok((_, rest)) => rest.to_vec(),
            Err(_) => body,
        };
        let mut result = Vec::new();
        match header.opcode {
            Opcode::Query => {
                let Ok(q) = Query::decode(&body, self.version) else {
                    return;
                };
                let keyspace = q.params.keyspace.map(str::to_string).or(self.keyspace.clone());
                let text = q.query.to_string();
                if text == PEERS {
                    peers_rows(&mut result);
                    self.framing
                        .write_message(header.stream, Opcode::Result, &result, out);
                    return;
                }
                match self.run(&text, keyspace.as_deref(), "QUERY") {
                    Some(target) => {
                        self.keyspace = Some(target.clone());
                        result.extend_from_slice(&3i32.to_be_bytes());
                        write::string(&mut result, &target);
                    }
                    None => result.extend_from_slice(&1i32.to_be_bytes()),
                }
            }
            Opcode::Prepare => {
                let Ok(p) = Prepare::decode(&body, self.version) else {
                    return;
                };
                let keyspace = p.keyspace.map(str::to_string).or(self.keyspace.clone());
                let id = prepared_id(keyspace.as_deref(), p.query);
                self.prepared.insert(id.clone(), (p.query.to_string(), keyspace));
                result.extend_from_slice(&4i32.to_be_bytes());
                write::short_bytes(&mut result, &id);
                if self.version >= 5 {
                    write::short_bytes(&mut result, b"meta");
                }
                result.extend_from_slice(&[0; 12]);
                result.extend_from_slice(&[0; 8]);
            }
            Opcode::Execute => {
                let Ok(e) = Execute::decode(&body, self.version) else {
                    return;
                };
                let Some((text, keyspace)) = self.prepared.get(e.id).cloned() else {
                    self.framing
                        .write_unprepared(header.stream, e.id, "unknown id", out);
                    return;
                };
                if text == PEERS {
                    peers_rows(&mut result);
                    self.framing
                        .write_message(header.stream, Opcode::Result, &result, out);
                    return;
                }
                match self.run(&text, keyspace.as_deref(), "EXECUTE of") {
                    Some(target) => {
                        self.keyspace = Some(target.clone());
                        result.extend_from_slice(&3i32.to_be_bytes());
                        write::string(&mut result, &target);
                    }
                    None => result.extend_from_slice(&1i32.to_be_bytes()),
                }
            }
            _ => result.extend_from_slice(&1i32.to_be_bytes()),
        }
        self.framing
            .write_message(header.stream, Opcode::Result, &result, out);
    }
}

fn query_body(text: &str, version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    write::long_string(&mut b, text);
    b.extend_from_slice(&1u16.to_be_bytes());
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

/// Plays `script` between a client and the model server through `s`, which has just logged
/// the client in (`segments`: v5 framing from now on).
pub fn play(s: &mut Session, version: u8, mut script: &[u8], now: Now) {
    thread_local! {
        static MODEL_POLICY: Rc<Policy> = Rc::new(Policy::parse(POLICY).expect("policy"));
    }
    let policy = MODEL_POLICY.with(Rc::clone);
    let Some(identity) = s.identity().cloned() else {
        return;
    };
    let segments = version >= 5;
    let mut reader = FrameReader::new(Direction::ClientToServer, 1 << 24);
    let framing = if segments {
        reader.start_segments(false);
        Framing::v5_segments(false)
    } else {
        Framing::envelopes(version)
    };
    let roles = policy.roles_for(&identity);
    let mut server = Server {
        reader,
        framing,
        version,
        inflight: Vec::new(),
        keyspace: None,
        prepared: HashMap::new(),
        policy,
        principal: identity.principal.clone(),
        roles,
        decisions: DecisionCache::new(64),
    };
    // What the client reads: it must stay valid CQL.
    let mut client = FrameReader::new(Direction::ServerToClient, 1 << 24);
    if segments {
        client.start_segments(false);
    }
    // Envelopes the client has written and not yet sent.
    let mut pending: Vec<u8> = Vec::new();
    let env = Framing::envelopes(version);
    while let Some((&op, rest)) = script.split_first() {
        let (&arg, rest) = rest.split_first().unwrap_or((&0, &[]));
        script = rest;
        let stream = i16::from(arg & 3);
        let pick = usize::from(arg >> 2);
        let mut to_session: Option<(Direction, Vec<u8>)> = None;
        match op % 8 {
            0 | 1 => env.write_envelope(
                stream,
                Opcode::Query,
                0,
                &query_body(TEXTS[pick % TEXTS.len()], version),
                &mut pending,
            ),
            2 => env.write_envelope(
                stream,
                Opcode::Prepare,
                0,
                &prepare_body(TEXTS[pick % TEXTS.len()], version),
                &mut pending,
            ),
            3 => {
                // Any id Cassandra could have made, known to the proxy or not.
                let keyspace = KEYSPACES[pick % KEYSPACES.len()];
                let id = prepared_id(keyspace, TEXTS[(pick / 3) % TEXTS.len()]);
                env.write_envelope(stream, Opcode::Execute, 0, &execute_body(&id, version), &mut pending);
            }
            4 | 5 => {
                // The client sends what it wrote, in one segment (v5) and in chunks.
                let bytes = if segments {
                    let mut b = Vec::new();
                    if !pending.is_empty() {
                        write_segment(&pending, true, false, &mut b);
                    }
                    pending.clear();
                    b
                } else {
                    core::mem::take(&mut pending)
                };
                to_session = Some((Direction::ClientToServer, bytes));
            }
            _ => {
                let mut answer = Vec::new();
                server.answer(pick, &mut answer);
                to_session = Some((Direction::ServerToClient, answer));
            }
        }
        let Some((from, bytes)) = to_session else {
            continue;
        };
        let chunk = usize::from(arg % 7) * 9 + 1;
        for piece in bytes.chunks(chunk) {
            let action = s.feed(from, piece, now);
            let Polled {
                mut up,
                mut down,
                ended,
            } = poll(s);
            if action == Action::Forward && from == Direction::ClientToServer {
                up.extend_from_slice(piece);
            }
            server.receive(&up);
            if action == Action::Forward && from == Direction::ServerToClient {
                down.extend_from_slice(piece);
            }
            assert!(
                !down.windows(HIDDEN.len()).any(|w| w == HIDDEN),
                "an unmapped node's address reached the client"
            );
            let mut rest = &down[..];
            while !rest.is_empty() {
                let (used, event) = client.next(rest).expect("the client receives valid CQL");
                if matches!(event, Event::NeedMore) {
                    break;
                }
                rest = &rest[used..];
            }
            if ended {
                return;
            }
        }
    }
}

/// What the session gave after a call, polled as the filter polls it: the bytes toward the
/// server and toward the client, and whether the connection ended. Every audit write is
/// whole lines.
#[derive(Default)]
pub struct Polled {
    pub up: Vec<u8>,
    pub down: Vec<u8>,
    pub ended: bool,
}

pub fn poll(s: &mut Session) -> Polled {
    let mut polled = Polled::default();
    let mut buf = Vec::new();
    while let Some(output) = s.poll_output(&mut buf) {
        match output {
            Output::Send(Direction::ClientToServer) => polled.up.append(&mut buf),
            Output::Send(Direction::ServerToClient) => polled.down.append(&mut buf),
            Output::Audit => assert!(buf.ends_with(b"\n")),
            Output::Notice(_) => {}
            Output::Refuse(_) | Output::Close(_) => polled.ended = true,
        }
    }
    polled
}
