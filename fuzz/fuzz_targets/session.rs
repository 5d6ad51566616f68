//! Fuzzes the gate: a session with token authentication and a policy, fed chunks from both
//! peers. Half of the inputs start with a valid handshake (STARTUP, READY, a valid token), so
//! the bytes that follow reach request authorization, prepared ids, re-framing and the
//! audit records of requests and responses. A quarter of the inputs script a client and a
//! model Cassandra instead ([`session_model`]): pipelined requests that reuse stream ids and
//! change keyspaces, checked against the keyspace the server runs each request in; in half
//! of those a reused stream id waits for its earlier answer (`cql_stream_reuse wait`).
#![no_main]
use std::cell::RefCell;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::audit;
use ngx_stream_cql_module::codec::segment::write_segment;
use ngx_stream_cql_module::codec::{Framing, Opcode};
use ngx_stream_cql_module::policy::Policy;
use ngx_stream_cql_module::session::{
    AuthMode, Capacities, Config, CountLimit, Direction, LimitZone, Limits, Quotas,
    Now, RateLimit, Session, Shared, StreamReuse,
};
use ngx_stream_cql_module::topology::Topology;

#[path = "common.rs"]
mod common;
#[path = "session_model.rs"]
mod session_model;

const POLICY: &str = r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE ks" } ]
guardrails = { read_consistency = ["ONE", "LOCAL_ONE"], write_consistency = ["ONE"], max_page_size = 100, max_batch_statements = 4, max_batch_bytes = 2048, max_statement_bytes = 512 }
[[bind]]
role = "reader"
groups = ["g"]
"#;

/// A server's counters in a zone of the fuzzer's own (a static: the leak checker sees no
/// leak), shared by every configuration.
fn meter() -> Rc<ngx_stream_cql_module::metrics::ServerMeter> {
    use core::sync::atomic::AtomicU64;
    use ngx_stream_cql_module::metrics::{ServerMeter, Zone};
    static WORDS: [AtomicU64; 40_000] = [const { AtomicU64::new(0) }; 40_000];
    let meter = Rc::new(ServerMeter::default());
    if let Some(zone) = Zone::attach(&WORDS, 4, 4) {
        if let Some(slot) = zone.server_slot("fuzz") {
            meter.bind(zone, slot);
        }
    }
    meter
}

/// Limits of every kind over zones of the fuzzer's own (statics, as the metrics zone): a
/// rate that the inputs exceed, and caps of connections and requests in flight.
fn quotas() -> Quotas {
    use core::sync::atomic::AtomicU64;
    use ngx_stream_cql_module::limits::{CountZone, Counter, KeyTemplate, Rate, RateZone};
    static RATE_WORDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];
    static COUNT_WORDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];
    let key = |text: &str| KeyTemplate::parse(text).expect("key");
    let rate = LimitZone::new("rate".into(), key("$cql_principal:$cql_roles"));
    if let Some(zone) = RateZone::attach(&RATE_WORDS).or_else(|| RateZone::create(&RATE_WORDS, 1)) {
        rate.bind(zone);
    }
    let counts = Rc::new(LimitZone::new("counts".into(), key("$cql_principal")));
    if let Some(zone) =
        CountZone::attach(&COUNT_WORDS).or_else(|| CountZone::create(&COUNT_WORDS, 1))
    {
        counts.bind(zone);
    }
    Quotas {
        rates: vec![RateLimit {
            zone: Rc::new(rate),
            rate: Rate::parse("10r/s").expect("rate"),
            burst: 3,
        }],
        counts: vec![
            CountLimit {
                zone: counts.clone(),
                counter: Counter::Connections,
                max: 2,
            },
            CountLimit {
                zone: counts,
                counter: Counter::InFlight,
                max: 3,
            },
        ],
    }
}

/// A session with an audit log (literals masked or not), so records are built and formatted
/// for whatever the fuzzer makes of requests and responses. The configurations are built
/// once: a run costs the session, not loading keys and parsing the policy.
fn session(redact_literals: bool, model: bool, wait: bool) -> Session {
    thread_local! {
        static CONFIGS: Vec<Rc<Config>> = (0..8)
            .map(|i| {
                let policy = if i & 2 != 0 { session_model::POLICY } else { POLICY };
                Rc::new(Config {
                    limits: Limits::default(),
                    auth: AuthMode::Token,
                    jwt: Some(common::validator()),
                    generation: 1,
                    upstream_login: None,
                    policy: Some(Rc::new(Policy::parse(policy).expect("policy"))),
                    audit: Some(Rc::new(audit::Settings {
                        redact_literals: i & 1 != 0,
                        ..audit::Settings::default()
                    })),
                    allow_unbound: false,
                    stream_reuse: if i & 4 != 0 { StreamReuse::Wait } else { StreamReuse::Refuse },
                    // Both layouts that rewrite answers, so held topology answers and events
                    // are fuzzed too.
                    topology: if i & 1 != 0 {
                        Topology::Nodes {
                            map: vec![(
                                "127.0.0.1:9042".parse().expect("address"),
                                "127.0.0.2:9042".parse().expect("address"),
                            )],
                        }
                    } else {
                        Topology::default()
                    },
                    // Counted into a zone, so every metrics path runs too.
                    metrics: Some(meter()),
                    // Every limit, enforced or in dry run (not with the model, which checks
                    // that nothing the policy denies reaches the server).
                    quotas: quotas(),
                    dry_run: i & 1 != 0 && i & 2 == 0,
                    upstream_credentials: None,
                })
            })
            .collect();
    }
    let index = usize::from(redact_literals) | usize::from(model) << 1 | usize::from(wait) << 2;
    let config = CONFIGS.with(|c| c[index].clone());
    let small = Capacities {
        prepared: 64,
        prepared_bytes: 1 << 20,
        decisions: 64,
        tokens: 16,
    };
    let mut s = Session::new(config, Rc::new(RefCell::new(Shared::new(small))), None);
    s.set_local_address("127.0.0.2:9042".parse().expect("address"));
    s.open_audit(audit::Peer::default(), now());
    s
}

/// The token of the handshake, minted once.
fn token() -> String {
    thread_local! {
        static TOKEN: String = common::token(
            &serde_json::json!({"sub": "fuzz", "exp": common::NOW + 60, "groups": ["g"]}),
        );
    }
    TOKEN.with(Clone::clone)
}

/// The time of the target's calls.
fn now() -> Now {
    Now {
        unix_ms: common::NOW * 1000,
        monotonic_us: 0,
    }
}

/// Feeds bytes and polls what the session gives; whether the connection goes on.
fn feed(s: &mut Session, from: Direction, bytes: &[u8]) -> bool {
    let _ = s.feed(from, bytes, now());
    !session_model::poll(s).ended
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let version = if ctl & 1 == 0 { 4 } else { 5 };
    let model = ctl & 0x0A == 0x0A;
    let mut s = session(ctl & 4 != 0, model, ctl & 0x10 != 0);
    let mut segments = false;
    if ctl & 2 != 0 {
        let f = Framing::envelopes(version);
        let mut b = Vec::new();
        f.write_startup(1, &[("CQL_VERSION", "3.0.0")], &mut b);
        feed(&mut s, Direction::ClientToServer, &b);
        b.clear();
        f.write_ready(1, &mut b);
        feed(&mut s, Direction::ServerToClient, &b);
        segments = version == 5;
        let f = if segments {
            Framing::v5_segments(false)
        } else {
            f
        };
        let tok = token();
        b.clear();
        f.write_auth_response_plain(2, "fuzz", &tok, &mut b);
        feed(&mut s, Direction::ClientToServer, &b);
        if model {
            session_model::play(&mut s, version, rest, now());
            s.close(now());
            session_model::poll(&mut s);
            return;
        }
    }
    // Chunks: a control byte (direction, wrap as a frame, length) then the bytes.
    while let Some((&c, tail)) = rest.split_first() {
        let n = usize::from(c >> 2).min(tail.len()) * 4;
        let n = n.min(tail.len());
        let (chunk, t) = tail.split_at(n);
        rest = t;
        let from = if c & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let mut bytes = chunk.to_vec();
        if c & 2 != 0 && from == Direction::ClientToServer {
            // A request frame whose body is the chunk, with an opcode from its first byte.
            let opcode = match chunk.first().copied().unwrap_or(0) % 4 {
                0 => Opcode::Query,
                1 => Opcode::Prepare,
                2 => Opcode::Execute,
                _ => Opcode::Batch,
            };
            let mut env = Vec::new();
            Framing::envelopes(version).write_envelope(
                3,
                opcode,
                0,
                chunk.get(1..).unwrap_or(&[]),
                &mut env,
            );
            bytes.clear();
            if segments {
                write_segment(&env, true, false, &mut bytes);
            } else {
                bytes = env;
            }
        }
        if !feed(&mut s, from, &bytes) {
            break;
        }
    }
    s.close(now());
    session_model::poll(&mut s);
});
