//! The cost of the audit log per request: `cargo bench --bench audit`.
//!
//! A gated session (token login, the ten-role policy of `tests/policy/realistic.toml`) is
//! fed one request and its RESULT per iteration, with and without an audit log; the
//! difference is what auditing adds to a request: drafting the record, keeping it until the
//! response, and formatting its line (JSON or Cassandra's format). Writing the line to a
//! file is NGINX's `write()` and is not included. `request_*` is a QUERY (its statement is
//! rendered for each line), `execute_*` an EXECUTE of a prepared id (rendered at the first
//! one, then copied). Before the runs, the heap allocations of one request are counted and
//! printed (`allocations per request`).
//!
//! `escape/*` (`cargo bench --bench audit -- escape`): the line writer's JSON string escaper
//! against `serde_json::to_writer` (its `Serializer` with the compact formatter, the crate's
//! public way to write one escaped string), each appending to a reused buffer, on the values
//! a line holds: a principal, a statement with quotes and a line break, a long one with
//! non-ASCII text, and a string of control characters.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ngx_stream_cql_module::audit::{self, Format, Peer};
use ngx_stream_cql_module::codec::{encode::Framing, Opcode};
use ngx_stream_cql_module::identity::{JwtSettings, JwtValidator};
use ngx_stream_cql_module::policy::Policy;
use ngx_stream_cql_module::session::{
    Action, AuthMode, Capacities, Config, Direction, Now, Output, Session, Shared,
};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const POLICY: &str = include_str!("../tests/policy/realistic.toml");
const SECRET: &str = "an HMAC secret of at least thirty-two bytes for the bench";
const NOW: u64 = 1_800_000_000;

fn config(audit: Option<Format>) -> Rc<Config> {
    let dir = std::env::temp_dir().join(format!("cql-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let jwt = JwtValidator::load(&JwtSettings {
        secret: Some(secret),
        algorithms: vec!["HS256".into()],
        roles_claim: Some("groups".into()),
        ..JwtSettings::default()
    })
    .unwrap();
    Rc::new(Config {
        auth: AuthMode::Token,
        jwt: Some(jwt),
        policy: Some(Rc::new(Policy::parse(POLICY).unwrap())),
        audit: audit.map(|format| {
            Rc::new(audit::Settings {
                format,
                ..audit::Settings::default()
            })
        }),
        ..Config::default()
    })
}

fn token() -> String {
    let claims = serde_json::json!({"sub": "svc-shop", "groups": ["shop-app"], "exp": NOW + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A v4 QUERY of `text` at consistency ONE with no values.
fn query(stream: i16, text: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(text.len() as i32).to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(0);
    let mut out = Vec::new();
    Framing::envelopes(4).write_message(stream, Opcode::Query, &body, &mut out);
    out
}

/// A v4 EXECUTE of `id` at consistency ONE with no values.
fn execute(stream: i16, id: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(0);
    let mut out = Vec::new();
    Framing::envelopes(4).write_message(stream, Opcode::Execute, &body, &mut out);
    out
}

/// The prepared id of the bench's statement (an MD5's length).
const ID: &[u8] = b"\x9a\x41\x07\xc3\x5e\x10\x6b\xd2\x88\x0f\x3c\xe4\x71\x2a\xb5\x66";

/// Prepares `text` on `s` as [`ID`], the server answering RESULT Prepared.
fn prepare(s: &mut Session, text: &str) {
    let f = Framing::envelopes(4);
    let mut body = Vec::new();
    body.extend_from_slice(&(text.len() as i32).to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    let mut buf = Vec::new();
    f.write_message(2, Opcode::Prepare, &body, &mut buf);
    let _ = s.feed(Direction::ClientToServer, &buf, at());
    drain(s);
    let mut result = 4i32.to_be_bytes().to_vec();
    result.extend_from_slice(&(ID.len() as u16).to_be_bytes());
    result.extend_from_slice(ID);
    result.extend_from_slice(&[0; 12]);
    buf.clear();
    f.write_message(2, Opcode::Result, &result, &mut buf);
    let _ = s.feed(Direction::ServerToClient, &buf, at());
    drain(s);
}

/// The time of the bench's calls.
fn at() -> Now {
    Now {
        unix_ms: NOW * 1000,
        monotonic_us: 0,
    }
}

/// Polls everything `s` gives; returns the bytes toward the client.
fn drain(s: &mut Session) -> Vec<u8> {
    let (mut buf, mut to_client) = (Vec::new(), Vec::new());
    while let Some(output) = s.poll_output(&mut buf) {
        if output == Output::Send(Direction::ServerToClient) {
            to_client.append(&mut buf);
        }
    }
    to_client
}

/// A logged-in session of `config`.
fn session(config: Rc<Config>) -> Session {
    let shared = Rc::new(RefCell::new(Shared::new(Capacities::default())));
    let mut s = Session::new(config, shared, None);
    s.open_audit(
        Peer {
            session: 1,
            client: "127.0.0.1:50000".into(),
            server: "127.0.0.1:9042".into(),
        },
        at(),
    );
    let f = Framing::envelopes(4);
    let mut buf = Vec::new();
    f.write_startup(0, &[("CQL_VERSION", "3.0.0")], &mut buf);
    let _ = s.feed(Direction::ClientToServer, &buf, at());
    drain(&mut s);
    buf.clear();
    f.write_ready(0, &mut buf);
    let _ = s.feed(Direction::ServerToClient, &buf, at());
    drain(&mut s);
    buf.clear();
    f.write_auth_response_plain(0, "svc-shop", &token(), &mut buf);
    let _ = s.feed(Direction::ClientToServer, &buf, at());
    let answer = drain(&mut s);
    assert_eq!(
        answer.get(4),
        Some(&(Opcode::AuthSuccess as u8)),
        "logged in"
    );
    s
}

fn bench(c: &mut Criterion) {
    let text = "SELECT id, status, total FROM shop.orders WHERE id = ?";
    let mut response = Vec::new();
    // RESULT Void: the smallest response; the audit cost does not depend on its size.
    Framing::envelopes(4).write_message(5, Opcode::Result, &1i32.to_be_bytes(), &mut response);
    let mut group = c.benchmark_group("audit");
    for (kind, request) in [
        (
            "request",
            query(5, "SELECT id, status, total FROM shop.orders WHERE id = 42"),
        ),
        ("execute", execute(5, ID)),
    ] {
        for (name, format) in [
            ("off", None),
            ("json", Some(Format::Json)),
            ("cassandra", Some(Format::Cassandra)),
        ] {
            let mut s = session(config(format));
            prepare(&mut s, text);
            let mut spare = Vec::new();
            let mut written = 0usize;
            let round = |s: &mut Session, spare: &mut Vec<u8>, written: &mut usize| {
                let action = s.feed(Direction::ClientToServer, black_box(&request), at());
                debug_assert_eq!(action, Action::Replace);
                while let Some(output) = s.poll_output(spare) {
                    debug_assert_eq!(output, Output::Send(Direction::ClientToServer));
                }
                let action = s.feed(Direction::ServerToClient, black_box(&response), at());
                debug_assert_eq!(action, Action::Forward);
                while let Some(output) = s.poll_output(spare) {
                    debug_assert_eq!(output, Output::Audit);
                    *written += spare.len();
                }
            };
            // Warm (buffers grown, the prepared statement rendered), then count.
            for _ in 0..100 {
                round(&mut s, &mut spare, &mut written);
            }
            const COUNTED: usize = 1000;
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let lines_before = written;
            for _ in 0..COUNTED {
                round(&mut s, &mut spare, &mut written);
            }
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            eprintln!(
                "audit/{kind}_{name}: {:.2} allocations per request, {} bytes of audit line",
                allocations as f64 / COUNTED as f64,
                (written - lines_before) / COUNTED
            );
            group.bench_function(format!("{kind}_{name}"), |b| {
                b.iter(|| round(&mut s, &mut spare, &mut written))
            });
            assert!(format.is_none() || written > 0, "lines were written");
        }
    }
    group.finish();
}

/// The strings of the escape benchmark: (name, value).
fn escape_inputs() -> Vec<(&'static str, String)> {
    let principal = "organization:acme-inc:pipeline:shop:ref:refs/heads/main:commit:\
                     9f31820c4b7e2d1a0f5e6b3c8d9a7f2e1b0c4d5e:step:migrate"
        .to_string();
    let statement = "INSERT INTO shop.orders (id, customer, status, note, total) VALUES \
                     (?, 'acme-inc', 'paid', 'the \"express\" option, one gift wrap', 129.90)\n\
                     USING TTL 604800 AND TIMESTAMP 1795253400123000 IF NOT EXISTS;"
        .to_string();
    assert_eq!(statement.len(), 200);
    let row = "INSERT INTO shop.reviews (id, author, body) VALUES (uuid(), 'Zoë Ångström', \
               'Très bon café, livré à l’heure — merci ! 東京から 🚀');\n";
    let mut long = String::new();
    while long.len() + row.len() <= 2048 {
        long.push_str(row);
    }
    for c in "pad é".chars().cycle() {
        if long.len() + c.len_utf8() > 2048 {
            break;
        }
        long.push(c);
    }
    let controls: String = (0u8..0x20).cycle().take(256).map(char::from).collect();
    vec![
        ("principal", principal),
        ("statement_200b", statement),
        ("statement_2k_utf8", long),
        ("controls", controls),
    ]
}

fn escape(c: &mut Criterion) {
    let mut group = c.benchmark_group("escape");
    for (name, value) in escape_inputs() {
        let mut out = Vec::new();
        audit::json_string(&mut out, &value);
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, value, "{name}: the escaped string reads back");
        group.throughput(Throughput::Bytes(value.len() as u64));
        group.bench_function(format!("{name}_module"), |b| {
            b.iter(|| {
                out.clear();
                audit::json_string(&mut out, black_box(&value));
                black_box(out.len())
            })
        });
        group.bench_function(format!("{name}_serde_json"), |b| {
            b.iter(|| {
                out.clear();
                serde_json::to_writer(&mut out, black_box(value.as_str())).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, escape);
criterion_main!(benches);
