//! The session's cost per request, without NGINX: a logged-in connection sends a prepared
//! point read (EXECUTE) and gets its small RESULT, through `Session::feed` as the filter
//! feeds it, gate without audit, with a per-identity rate limit that no request reaches
//! (`cql_limit_req`), with metrics counted into a zone (`cql_metrics_zone`), and with a JSON
//! audit line per request:
//! `cargo bench --bench session`. Before measuring, each case prints the heap allocations
//! one request costs (a counting allocator), the figure to keep at zero on the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ngx_stream_cql_module::audit;
use ngx_stream_cql_module::codec::primitives::write;
use ngx_stream_cql_module::codec::{Framing, Opcode};
use ngx_stream_cql_module::identity::{JwtSettings, JwtValidator};
use ngx_stream_cql_module::limits::{KeyTemplate, Rate, RateVerdict, RateZone};
use ngx_stream_cql_module::metrics::{ServerMeter, Zone};
use ngx_stream_cql_module::policy::Policy;
use ngx_stream_cql_module::session::{
    AuthMode, Capacities, Config, Direction, LimitZone, Limits, Now, Output, Quotas, RateLimit,
    Session, Shared,
};

/// Counts allocations, so a case can say what one request allocates.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed.
static LIVE: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &[u8] = b"a benchmark secret of at least thirty-two bytes";
const NOW: u64 = 1_800_000_000;
const POLICY: &str = r#"
[roles.app]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE shop" } ]
[[bind]]
role = "app"
groups = ["shop-app"]
"#;
const TEXT: &str = "SELECT v FROM shop.bench_kv WHERE id = ?";
const ID: &[u8] = b"0123456789abcdef";

/// What a case turns on besides the gate.
#[derive(Clone, Copy)]
struct Case {
    audit: bool,
    metrics: bool,
    /// The region of the rate zone of a limit per identity that no request reaches.
    limits: Option<&'static [AtomicU64]>,
}

/// The gate alone.
const GATE: Case = Case {
    audit: false,
    metrics: false,
    limits: None,
};

/// The rate limit of `cql_limit_req_zone $cql_principal zone=bench:1m rate=1000000r/s;` and
/// `cql_limit_req zone=bench burst=1000000;`: one request every microsecond per identity,
/// far more than one connection sends, so every request is counted and none refused.
const RATE: &str = "1000000r/s";
const BURST: u32 = 1_000_000;

/// The region of a rate zone of 1 MiB (`zone=bench:1m`).
fn rate_region() -> &'static [AtomicU64] {
    Box::leak(
        (0..RateZone::words_for_bytes(1 << 20))
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// A server's rate limit per identity, its zone laid out over `words` and bound, as
/// `cql_limit_req_zone` binds it.
fn quotas(words: &'static [AtomicU64]) -> Quotas {
    let zone = Rc::new(LimitZone::new(
        "bench".into(),
        KeyTemplate::parse("$cql_principal").expect("a key"),
    ));
    zone.bind(RateZone::create(words, 0x5eed).expect("a rate zone"));
    Quotas {
        rates: vec![RateLimit {
            zone,
            rate: Rate::parse(RATE).expect("a rate"),
            burst: BURST,
        }],
        counts: vec![],
    }
}

/// A server's counters bound to a zone of their own, as `cql_metrics_zone` binds them.
fn meter() -> Rc<ServerMeter> {
    let words: &'static [AtomicU64] = Box::leak(
        (0..200_000)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let zone = Zone::attach(words, 32, 32).expect("a zone");
    let meter = Rc::new(ServerMeter::default());
    meter.bind(zone, zone.server_slot("127.0.0.1:9042").expect("a slot"));
    meter
}

fn config(case: Case) -> Rc<Config> {
    let secret = std::env::temp_dir().join(format!("cql-bench-secret-{}", std::process::id()));
    std::fs::write(&secret, SECRET).expect("write the secret");
    let jwt = JwtValidator::load(&JwtSettings {
        secret: Some(secret.clone()),
        algorithms: vec!["HS256".into()],
        roles_claim: Some("groups".into()),
        ..JwtSettings::default()
    })
    .expect("validator");
    let _ = std::fs::remove_file(secret);
    Rc::new(Config {
        limits: Limits::default(),
        auth: AuthMode::Token,
        jwt: Some(jwt),
        generation: 1,
        upstream_login: None,
        policy: Some(Rc::new(Policy::parse(POLICY).expect("policy"))),
        audit: case.audit.then(|| Rc::new(audit::Settings::default())),
        allow_unbound: false,
        stream_reuse: Default::default(),
        topology: Default::default(),
        metrics: case.metrics.then(meter),
        quotas: case.limits.map(quotas).unwrap_or_default(),
        ..Config::default()
    })
}

/// The monotonic clock of the feeds, in microseconds: it moves [`STEP_US`] a call.
static MONOTONIC: AtomicU64 = AtomicU64::new(0);
/// 14 µs a request (EXECUTE and RESULT), 14 intervals of the rate limit.
const STEP_US: u64 = 7;

fn feed(s: &mut Session, from: Direction, bytes: &[u8], spare: &mut [Vec<u8>; 2]) {
    // The filter reads the clock once a call, as the time goes on, and polls the output
    // queue after it with a buffer of its own.
    let now = Now {
        unix_ms: NOW * 1000,
        monotonic_us: MONOTONIC.fetch_add(STEP_US, Ordering::Relaxed),
    };
    let _ = s.feed(from, bytes, now);
    while let Some(output) = s.poll_output(&mut spare[0]) {
        match output {
            Output::Send(_) | Output::Audit => {
                black_box(&spare[0]);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A session logged in with a token, the statement prepared.
fn logged_in(case: Case) -> (Session, [Vec<u8>; 2]) {
    let mut s = Session::new(
        config(case),
        Rc::new(RefCell::new(Shared::new(Capacities::default()))),
        None,
    );
    let mut spare = [Vec::new(), Vec::new()];
    log_in(&mut s, case.audit, &mut spare);
    (s, spare)
}

/// Logs `s` in and prepares the statement, then one request: the connection is idle.
fn idle(s: &mut Session, audit: bool, spare: &mut [Vec<u8>; 2], up: &[u8], down: &[u8]) {
    log_in(s, audit, spare);
    feed(s, Direction::ClientToServer, up, spare);
    feed(s, Direction::ServerToClient, down, spare);
}

fn log_in(s: &mut Session, audit: bool, spare: &mut [Vec<u8>; 2]) {
    if audit {
        s.open_audit(
            audit::Peer::default(),
            Now {
                unix_ms: NOW * 1000,
                monotonic_us: 0,
            },
        );
    }
    let f = Framing::envelopes(4);
    let mut b = Vec::new();
    f.write_startup(1, &[("CQL_VERSION", "3.0.0")], &mut b);
    feed(s, Direction::ClientToServer, &b, spare);
    b.clear();
    f.write_ready(1, &mut b);
    feed(s, Direction::ServerToClient, &b, spare);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "svc-bench", "exp": NOW + 3600, "groups": ["shop-app"]}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("token");
    b.clear();
    f.write_auth_response_plain(2, "svc-bench", &token, &mut b);
    feed(s, Direction::ClientToServer, &b, spare);
    assert!(s.is_authenticated());
    let mut prepare = Vec::new();
    write::long_string(&mut prepare, TEXT);
    b.clear();
    f.write_envelope(3, Opcode::Prepare, 0, &prepare, &mut b);
    feed(s, Direction::ClientToServer, &b, spare);
    let mut prepared = 4i32.to_be_bytes().to_vec();
    write::short_bytes(&mut prepared, ID);
    prepared.extend_from_slice(&[0; 20]);
    b.clear();
    f.write_envelope(3, Opcode::Result, 0, &prepared, &mut b);
    feed(s, Direction::ServerToClient, &b, spare);
}

/// One EXECUTE of the prepared read and its one-row RESULT, on stream 5.
fn request() -> (Vec<u8>, Vec<u8>) {
    let f = Framing::envelopes(4);
    let mut execute = Vec::new();
    write::short_bytes(&mut execute, ID);
    execute.extend_from_slice(&1u16.to_be_bytes()); // ONE
    execute.push(0x01); // values
    execute.extend_from_slice(&1u16.to_be_bytes());
    write::bytes(&mut execute, Some(&42i32.to_be_bytes()));
    let mut up = Vec::new();
    f.write_envelope(5, Opcode::Execute, 0, &execute, &mut up);
    let mut rows = 2i32.to_be_bytes().to_vec();
    rows.extend_from_slice(&4i32.to_be_bytes()); // No_metadata
    rows.extend_from_slice(&1i32.to_be_bytes());
    rows.extend_from_slice(&1i32.to_be_bytes());
    write::bytes(&mut rows, Some(&[b'v'; 64]));
    let mut down = Vec::new();
    f.write_envelope(5, Opcode::Result, 0, &rows, &mut down);
    (up, down)
}

/// No request of a case was refused (a rate limit that is hit measures refusals, not the
/// cost of counting), and with a rate limit, the last request was counted: the identity's
/// bucket holds it, so one more at the same time without a burst is over the rate.
fn assert_counted(s: &Session, case: Case, what: &str) {
    assert_eq!(s.denied(), 0, "{what}: requests were refused");
    let Some(words) = case.limits else {
        return;
    };
    let zone = RateZone::attach(words).expect("the rate zone");
    let principal = s.identity().expect("logged in").principal.as_bytes();
    // The EXECUTE's time: the RESULT came one step after it.
    let last = MONOTONIC.load(Ordering::Relaxed) - 2 * STEP_US;
    let rate = Rate::parse(RATE).expect("a rate");
    assert!(
        matches!(
            zone.acquire(zone.hash(principal), &rate, 0, last),
            RateVerdict::Limited { .. }
        ),
        "{what}: the rate limit counted no request"
    );
}

/// `CQL_BENCH_REQUESTS=N`: runs N requests of the case `CQL_BENCH_AUDIT=1`,
/// `CQL_BENCH_METRICS=1` and `CQL_BENCH_LIMITS=1` (the rate limit no request reaches)
/// choose and exits, for an exact instruction count under `valgrind --tool=callgrind` (the
/// difference of two N).
fn fixed_run() -> bool {
    let Some(n) = std::env::var("CQL_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    let (up, down) = request();
    let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let case = Case {
        audit: on("CQL_BENCH_AUDIT"),
        metrics: on("CQL_BENCH_METRICS"),
        limits: on("CQL_BENCH_LIMITS").then(rate_region),
    };
    let (mut s, mut spare) = logged_in(case);
    for _ in 0..n {
        feed(&mut s, Direction::ClientToServer, &up, &mut spare);
        feed(&mut s, Direction::ServerToClient, &down, &mut spare);
    }
    assert_counted(&s, case, "CQL_BENCH_REQUESTS");
    true
}

fn bench(c: &mut Criterion) {
    if fixed_run() {
        return;
    }
    let (up, down) = request();
    // What an idle logged-in connection holds: its session on the heap and what it owns,
    // after one request (the shared caches are counted apart, per worker).
    for audit in [false, true] {
        let shared = Rc::new(RefCell::new(Shared::new(Capacities::default())));
        let config = config(Case { audit, ..GATE });
        // A first connection fills the worker's caches (token, prepared id, decision).
        let mut first = Session::new(config.clone(), shared.clone(), None);
        idle(&mut first, audit, &mut [Vec::new(), Vec::new()], &up, &down);
        let before = LIVE.load(Ordering::Relaxed);
        let mut s = Box::new(Session::new(config, shared, None));
        let mut spare = [Vec::new(), Vec::new()];
        idle(&mut s, audit, &mut spare, &up, &down);
        let held = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "session/idle{}: {held} bytes per logged-in idle connection (Session is {} bytes)",
            if audit { "_audit" } else { "" },
            size_of::<Session>()
        );
        black_box(s);
    }
    let mut group = c.benchmark_group("session");
    for (name, case) in [
        ("execute_gate", GATE),
        (
            "execute_gate_limits",
            Case {
                limits: Some(rate_region()),
                ..GATE
            },
        ),
        (
            "execute_gate_metrics",
            Case {
                metrics: true,
                ..GATE
            },
        ),
        (
            "execute_gate_audit",
            Case {
                audit: true,
                ..GATE
            },
        ),
    ] {
        let (mut s, mut spare) = logged_in(case);
        // Warm: buffers reach their steady size.
        for _ in 0..100 {
            feed(&mut s, Direction::ClientToServer, &up, &mut spare);
            feed(&mut s, Direction::ServerToClient, &down, &mut spare);
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..1000 {
            feed(&mut s, Direction::ClientToServer, &up, &mut spare);
            feed(&mut s, Direction::ServerToClient, &down, &mut spare);
        }
        let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 1000.0;
        println!("session/{name}: {per_request:.1} heap allocations per request");
        group.bench_function(name, |b| {
            b.iter(|| {
                feed(
                    &mut s,
                    Direction::ClientToServer,
                    black_box(&up),
                    &mut spare,
                );
                feed(
                    &mut s,
                    Direction::ServerToClient,
                    black_box(&down),
                    &mut spare,
                );
            })
        });
        assert_counted(&s, case, name);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
