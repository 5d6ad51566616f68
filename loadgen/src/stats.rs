//! Latency histograms, error counts and the process's own CPU time.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::conn::Failure;

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 10.0).round() / 100.0
}

/// p50/p90/p99/p99.9/max/mean in microseconds, and a percentile curve for plots.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    let mut curve = Vec::new();
    for k in 0..=40 {
        // 0, 25, 43.8, ... 99.999 %: evenly spaced in "number of nines".
        let q = 1.0 - 10f64.powf(-(k as f64) / 8.0);
        curve.push(json!([(q * 1e5).round() / 1e3, us(h.value_at_quantile(q))]));
    }
    json!({
        "p50": us(h.value_at_quantile(0.5)),
        "p90": us(h.value_at_quantile(0.9)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
        "mean": (h.mean() / 10.0).round() / 100.0,
        "count": h.len(),
        "percentiles": curve,
    })
}

/// Failures by kind, with a cap on how many kinds are kept apart.
#[derive(Default, Debug)]
pub struct Errors {
    pub total: u64,
    kinds: BTreeMap<String, u64>,
}

impl Errors {
    pub fn add(&mut self, f: &Failure) {
        self.total += 1;
        let key = f.key();
        if self.kinds.len() < 32 || self.kinds.contains_key(&key) {
            *self.kinds.entry(key).or_default() += 1;
        } else {
            *self.kinds.entry("(other kinds)".into()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: Errors) {
        self.total += other.total;
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
    }

    pub fn json(&self) -> Value {
        json!(self.kinds)
    }
}

/// This process's user+system CPU time, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 (1-based), so 11 and 12 here.
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks(),
        _ => 0.0,
    }
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux architecture the project builds for.
    100.0
}
