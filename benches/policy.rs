//! Benchmarks of policy decisions with a realistic policy of ten roles
//! (`tests/policy/realistic.toml`): `cargo bench --bench policy`.
//!
//! Statements are classified once, outside the measurement: this measures the policy.
//! "cached" is the steady state of a worker (the decision cache holds the need); "uncached"
//! evaluates every rule each time (a cache of capacity 0).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ngx_stream_cql_module::classify::classify;
use ngx_stream_cql_module::identity::{Identity, Source};
use ngx_stream_cql_module::policy::{DecisionCache, Policy};

const POLICY: &str = include_str!("../tests/policy/realistic.toml");

const CASES: &[(&str, &str)] = &[
    (
        "select",
        "SELECT id, status, total FROM shop.orders WHERE id = ?",
    ),
    (
        "insert",
        "INSERT INTO shop.orders (id, customer, status, total) VALUES (?, ?, ?, ?)",
    ),
];

fn bench(c: &mut Criterion) {
    let policy = Policy::parse(POLICY).expect("the benchmark policy parses");
    let app = Identity {
        principal: "svc-shop".into(),
        groups: vec!["shop-app".into(), "employees".into()],
        attributes: vec![("iss".into(), "https://idp.example.com/".into())],
        expires_at: None,
        source: Source::Token,
    };
    let roles = policy.roles_for(&app);
    assert_eq!(roles.to_string(), "base,payments,shop_reader,shop_writer");

    let mut group = c.benchmark_group("policy");
    group.bench_function("roles_for", |b| {
        b.iter(|| policy.roles_for(black_box(&app)))
    });
    for (name, text) in CASES {
        let st = classify(text, None);
        let mut cache = DecisionCache::new(4096);
        assert!(
            policy
                .authorize("svc-shop", &roles, &st, &mut cache)
                .allowed
        );
        group.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| policy.authorize("svc-shop", black_box(&roles), black_box(&st), &mut cache))
        });
        let mut none = DecisionCache::new(0);
        group.bench_function(format!("{name}_uncached"), |b| {
            b.iter(|| policy.authorize("svc-shop", black_box(&roles), black_box(&st), &mut none))
        });
    }
    // The driver tables: no rule and no cache, the floor of a decision.
    let st = classify("SELECT * FROM system.local WHERE key = 'local'", None);
    let mut cache = DecisionCache::new(4096);
    group.bench_function("system_local", |b| {
        b.iter(|| policy.authorize("svc-shop", black_box(&roles), black_box(&st), &mut cache))
    });
    // A denial formats its reason: the cost of the unhappy path.
    let st = classify("DELETE FROM shop.audit_log WHERE id = ?", None);
    let mut cache = DecisionCache::new(4096);
    assert!(
        !policy
            .authorize("svc-shop", &roles, &st, &mut cache)
            .allowed
    );
    group.bench_function("delete_denied_cached", |b| {
        b.iter(|| policy.authorize("svc-shop", black_box(&roles), black_box(&st), &mut cache))
    });

    // A large policy (200 roles, 1,200 rules; the identity holds 10 roles): what the
    // cache saves when many rules apply.
    let large = Policy::parse(&large_policy()).expect("the large policy parses");
    let mut id = app.clone();
    id.groups = (0..10).map(|i| format!("g{}", i * 20)).collect();
    let roles = large.roles_for(&id);
    assert_eq!(roles.len(), 10);
    let st = classify("SELECT * FROM ks180.t4 WHERE id = ?", None);
    let mut cache = DecisionCache::new(4096);
    assert!(large.authorize("svc-shop", &roles, &st, &mut cache).allowed);
    group.bench_function("large_select_cached", |b| {
        b.iter(|| large.authorize("svc-shop", black_box(&roles), black_box(&st), &mut cache))
    });
    let mut none = DecisionCache::new(0);
    group.bench_function("large_select_uncached", |b| {
        b.iter(|| large.authorize("svc-shop", black_box(&roles), black_box(&st), &mut none))
    });
    group.finish();
}

/// Role `r{i}` may read tables `ks{i}.t0` to `ks{i}.t4` and not write `ks{i}.audit`;
/// group `g{i}` holds it.
fn large_policy() -> String {
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!("[roles.r{i}]\ngrant = [\n"));
        for t in 0..5 {
            text.push_str(&format!(
                "  {{ permissions = [\"SELECT\"], on = \"TABLE ks{i}.t{t}\" }},\n"
            ));
        }
        text.push_str(&format!(
            "]\ndeny = [ {{ permissions = [\"MODIFY\"], on = \"TABLE ks{i}.audit\" }} ]\n"
        ));
    }
    for i in 0..200 {
        text.push_str(&format!("[[bind]]\nrole = \"r{i}\"\ngroup = \"g{i}\"\n"));
    }
    text
}

criterion_group!(benches, bench);
criterion_main!(benches);
