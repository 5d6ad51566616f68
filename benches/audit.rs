//! The cost of the audit log per request: `cargo bench --bench audit`.
//!
//! A gated session (token login, the ten-role policy of `tests/policy/realistic.toml`) is
//! fed one QUERY and its RESULT per iteration, with and without an audit log; the
//! difference is what auditing adds to a request: drafting the record, keeping it until the
//! response, and formatting its line (JSON or Cassandra's format). Writing the line to a
//! file is NGINX's `write()` and is not included.

use std::cell::RefCell;
use std::rc::Rc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ngx_stream_cql_module::audit::{self, Format, Peer};
use ngx_stream_cql_module::codec::{encode::Framing, Opcode};
use ngx_stream_cql_module::identity::{JwtSettings, JwtValidator};
use ngx_stream_cql_module::policy::Policy;
use ngx_stream_cql_module::session::{
    Action, AuthMode, Capacities, Config, Direction, Session, Shared,
};

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
        NOW * 1000,
        0,
    );
    let f = Framing::envelopes(4);
    let mut buf = Vec::new();
    f.write_startup(0, &[("CQL_VERSION", "3.0.0")], &mut buf);
    let _ = s.feed(Direction::ClientToServer, &buf, NOW);
    let _ = s.take_output(Direction::ClientToServer, Vec::new());
    buf.clear();
    f.write_ready(0, &mut buf);
    let _ = s.feed(Direction::ServerToClient, &buf, NOW);
    let _ = s.take_output(Direction::ServerToClient, Vec::new());
    buf.clear();
    f.write_auth_response_plain(0, "svc-shop", &token(), &mut buf);
    let _ = s.feed(Direction::ClientToServer, &buf, NOW);
    let answer = s.take_output(Direction::ServerToClient, Vec::new());
    assert_eq!(
        answer.get(4),
        Some(&(Opcode::AuthSuccess as u8)),
        "logged in"
    );
    s.drain_audit(|_| {});
    s
}

fn bench(c: &mut Criterion) {
    let request = query(5, "SELECT id, status, total FROM shop.orders WHERE id = 42");
    let mut response = Vec::new();
    // RESULT Void: the smallest response; the audit cost does not depend on its size.
    Framing::envelopes(4).write_message(5, Opcode::Result, &1i32.to_be_bytes(), &mut response);
    let mut group = c.benchmark_group("audit");
    for (name, format) in [
        ("off", None),
        ("json", Some(Format::Json)),
        ("cassandra", Some(Format::Cassandra)),
    ] {
        let mut s = session(config(format));
        let mut spare = Vec::new();
        let mut written = 0usize;
        group.bench_function(format!("request_{name}"), |b| {
            b.iter(|| {
                let action = s.feed(Direction::ClientToServer, black_box(&request), NOW);
                debug_assert_eq!(action, Action::Replace);
                spare = s.take_output(Direction::ClientToServer, core::mem::take(&mut spare));
                let action = s.feed(Direction::ServerToClient, black_box(&response), NOW);
                debug_assert_eq!(action, Action::Forward);
                s.drain_audit(|lines| written += lines.len());
            })
        });
        assert!(format.is_none() || written > 0, "lines were written");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
