//! Benchmarks of the per-key limits: `cargo bench --bench limits`.
//!
//! What a limit costs a request it never refuses: one rate bucket's compare-and-swap, and
//! a count zone's acquire and release around a request in flight. Hashing and rendering a
//! key happen once per connection, at login.

use core::sync::atomic::AtomicU64;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ngx_stream_cql_module::limits::{
    CountVerdict, CountZone, Counter, IdentityValues, KeyTemplate, Rate, RateVerdict, RateZone,
};

/// A region of 1 MiB, as a zone of `zone=NAME:1m` holds.
fn region() -> &'static [AtomicU64] {
    Box::leak((0..(1 << 17)).map(|_| AtomicU64::new(0)).collect())
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("limits");

    let rates = RateZone::create(region(), 0x5eed).expect("rate zone");
    let rate = Rate::parse("1000r/s").expect("rate");
    let interval = rate.interval_us();
    let hash = rates.hash(b"svc-shop");
    // Requests at the rate exactly: every one is allowed.
    let mut now = 1_000_000_000;
    group.bench_function("rate_allowed", |b| {
        b.iter(|| {
            now += interval;
            let verdict = rates.acquire(black_box(hash), &rate, 10, now);
            debug_assert_eq!(verdict, RateVerdict::Allowed);
            verdict
        })
    });
    // Over the rate: the refusal leaves the bucket as it is.
    let limited = rates.hash(b"svc-batch");
    for _ in 0..11 {
        rates.acquire(limited, &rate, 10, now);
    }
    group.bench_function("rate_limited", |b| {
        b.iter(|| rates.acquire(black_box(limited), &rate, 10, now))
    });

    let counts = CountZone::create(region(), 0x5eed).expect("count zone");
    let hash = counts.hash(b"svc-shop");
    // The connection's own count, held while its requests come and go.
    let CountVerdict::Held(_) = counts.acquire(hash, Counter::Connections, 100) else {
        panic!("the connection is counted");
    };
    group.bench_function("in_flight_acquire_release", |b| {
        b.iter(|| {
            if let CountVerdict::Held(slot) = counts.acquire(black_box(hash), Counter::InFlight, 64)
            {
                counts.release(slot, Counter::InFlight);
            }
        })
    });

    // Once per connection: the key and its hash.
    let key = KeyTemplate::parse("$cql_principal/$remote_addr").expect("key");
    let identity = IdentityValues {
        principal: "svc-shop@example.com",
        roles: &["shop_reader", "shop_writer"],
        auth_method: "token",
    };
    let address: &[u8] = b"10.1.2.3";
    let mut out = Vec::with_capacity(64);
    group.bench_function("key_render_hash", |b| {
        b.iter(|| {
            key.render(black_box(&identity), &[address], &mut out);
            rates.hash(&out)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
