//! Benchmarks of the CQL statement classifier on typical statements:
//! `cargo bench --bench classify`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ngx_stream_cql_module::classify::classify;

const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "select_prepared",
        "SELECT id, name, email FROM demo.users WHERE id = ?",
        None,
    ),
    (
        "select_current_keyspace",
        "SELECT * FROM users WHERE id = ? LIMIT 10",
        Some("demo"),
    ),
    (
        "select_system_local",
        "SELECT peer, data_center, rack, tokens FROM system.peers_v2",
        None,
    ),
    (
        "insert_prepared",
        "INSERT INTO demo.users (id, name, email, created) VALUES (?, ?, ?, ?) USING TTL 86400",
        None,
    ),
    (
        "insert_literals",
        "INSERT INTO users (id, name, tags) VALUES (42, 'alice; DROP', {'a', 'b'})",
        Some("demo"),
    ),
    (
        "update_prepared",
        "UPDATE demo.users SET name = ?, email = ? WHERE id = ?",
        None,
    ),
    (
        "update_lwt",
        "UPDATE users SET balance = ? WHERE id = ? IF balance = ?",
        Some("demo"),
    ),
    ("delete", "DELETE FROM demo.users WHERE id = ?", None),
    (
        "batch_3",
        "BEGIN BATCH INSERT INTO demo.a (k, v) VALUES (?, ?); \
         UPDATE demo.b SET v = ? WHERE k = ?; DELETE FROM demo.a WHERE k = ?; APPLY BATCH",
        None,
    ),
    (
        "create_table",
        "CREATE TABLE IF NOT EXISTS demo.events (k int, c timeuuid, v text, \
         PRIMARY KEY ((k), c)) WITH CLUSTERING ORDER BY (c DESC)",
        None,
    ),
    ("grant", "GRANT SELECT ON demo.users TO reader", None),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    for (name, text, ks) in CASES {
        assert!(!classify(text, *ks).is_unparsed(), "{name} must classify");
        group.bench_function(*name, |b| {
            b.iter(|| classify(black_box(text), black_box(*ks)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
