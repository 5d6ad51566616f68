//! The workloads: data set-up, pipelined prepared requests (small reads and writes, or
//! large partitions), handshakes, idle connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::conn::{server_error, Conn, Failure};
use crate::frame;
use crate::stats::{self, Errors};

const READ_CQL: &str = "SELECT v FROM shop.bench_kv WHERE id = ?";
const WRITE_CQL: &str = "INSERT INTO shop.bench_kv (id, v) VALUES (?, ?)";
const LARGE_CQL: &str = "SELECT c, v FROM shop.bench_blobs WHERE p = ?";
const LARGE_INSERT_CQL: &str = "INSERT INTO shop.bench_blobs (p, c, v) VALUES (?, ?, ?)";

#[derive(Clone, Copy, Debug)]
pub struct DataSpec {
    pub keys: u32,
    pub value_size: usize,
    pub large_partitions: u32,
    pub large_rows: u32,
    pub large_value: usize,
}

/// xorshift64*: a fast generator for keys and the read/write mix.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n.max(1))) >> 32) as u32
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The CPU time of other processes (the NGINX worker, the server) over a window.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    pub pids: Vec<u32>,
}

/// utime+stime (from /proc/PID/stat, 10 ms ticks) and run time (from the schedstat of each
/// of its threads, nanoseconds) of a process, in seconds.
fn proc_cpu(pid: u32) -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // schedstat is per thread: add up the process's threads.
    let mut sched = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        sched += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e9;
    }
    Some(((utime + stime) / 100.0, sched, stime / 100.0))
}

impl Watch {
    fn sample(&self) -> Vec<Option<(f64, f64, f64)>> {
        let mut v: Vec<_> = self.pids.iter().map(|&p| proc_cpu(p)).collect();
        v.push(Some((stats::cpu_seconds(), f64::NAN, f64::NAN)));
        v
    }

    /// `{"PID": {"cpu_s": utime+stime, "sys_s": stime, "run_s": schedstat}, ..., "self": {...}}`.
    fn delta(
        &self,
        before: &[Option<(f64, f64, f64)>],
        after: &[Option<(f64, f64, f64)>],
    ) -> Value {
        let mut m = serde_json::Map::new();
        let names = self
            .pids
            .iter()
            .map(|p| p.to_string())
            .chain(std::iter::once("self".to_string()));
        for (i, name) in names.enumerate() {
            let v = match (
                before.get(i).copied().flatten(),
                after.get(i).copied().flatten(),
            ) {
                (Some((c0, r0, s0)), Some((c1, r1, s1))) => {
                    let run = r1 - r0;
                    let sys = s1 - s0;
                    json!({
                        "cpu_s": round6(c1 - c0),
                        "sys_s": if sys.is_finite() { Value::from(round6(sys)) } else { Value::Null },
                        "run_s": if run.is_finite() { Value::from(round6(run)) } else { Value::Null },
                    })
                }
                _ => Value::Null,
            };
            m.insert(name, v);
        }
        Value::Object(m)
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn failure(e: Failure) -> String {
    e.key()
}

/// Keyspace, tables and data: small rows 0..keys and large partitions of
/// large_rows x large_value bytes.
pub async fn setup(addr: String, d: DataSpec) -> Result<Value, String> {
    let started = Instant::now();
    let mut c = Conn::open(&addr, None).await.map_err(failure)?;
    for q in [
        "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = \
         {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE IF NOT EXISTS shop.bench_kv (id int PRIMARY KEY, v blob)",
        "CREATE TABLE IF NOT EXISTS shop.bench_blobs (p int, c int, v blob, PRIMARY KEY (p, c))",
    ] {
        c.query(q).await.map_err(failure)?;
    }
    let mut rng = Rng::new(0x5eed);
    let small = c.prepare(WRITE_CQL).await.map_err(failure)?;
    let mut value = vec![0u8; d.value_size];
    let mut rows = Vec::new();
    for k in 0..d.keys {
        rng.fill(&mut value);
        rows.push(vec![(k as i32).to_be_bytes().to_vec(), value.clone()]);
    }
    execute_all(&mut c, &small, &rows, 64).await?;
    let large = c.prepare(LARGE_INSERT_CQL).await.map_err(failure)?;
    let mut blob = vec![0u8; d.large_value];
    let mut large_bytes = 0u64;
    for p in 0..d.large_partitions {
        let mut rows = Vec::new();
        for r in 0..d.large_rows {
            rng.fill(&mut blob);
            large_bytes += blob.len() as u64;
            rows.push(vec![
                (p as i32).to_be_bytes().to_vec(),
                (r as i32).to_be_bytes().to_vec(),
                blob.clone(),
            ]);
        }
        execute_all(&mut c, &large, &rows, 4).await?;
    }
    Ok(json!({
        "workload": "setup",
        "small_rows": d.keys,
        "value_size": d.value_size,
        "large_partitions": d.large_partitions,
        "large_partition_bytes": large_bytes / u64::from(d.large_partitions.max(1)),
        "seconds": started.elapsed().as_secs_f64(),
        "errors": 0,
    }))
}

/// EXECUTE `id` once per row, `depth` at a time; any error fails the set-up.
async fn execute_all(
    c: &mut Conn,
    id: &[u8],
    rows: &[Vec<Vec<u8>>],
    depth: usize,
) -> Result<(), String> {
    for chunk in rows.chunks(depth) {
        let mut out = Vec::new();
        for (i, row) in chunk.iter().enumerate() {
            let values: Vec<&[u8]> = row.iter().map(Vec::as_slice).collect();
            frame::put_execute(&mut out, i as i16 + 1, id, &values);
        }
        c.write(&out).await.map_err(failure)?;
        let mut left = chunk.len();
        while left > 0 {
            while let Some(f) = c.next_frame().map_err(failure)? {
                if f.header.stream <= 0 {
                    continue;
                }
                left -= 1;
                if f.header.opcode != frame::OP_RESULT {
                    let body = f.body.map(|r| c.body(r)).unwrap_or(&[]);
                    return Err(format!("set-up insert: {}", server_error(f.header, body)));
                }
            }
            if left > 0 {
                c.fill().await.map_err(failure)?;
            }
        }
    }
    Ok(())
}

pub struct PipelineSpec {
    pub addr: String,
    pub auth: Option<(String, String)>,
    /// Large partitions instead of small reads and writes.
    pub large: bool,
    pub connections: usize,
    pub depth: usize,
    pub duration: f64,
    pub warmup: f64,
    pub write_ratio: f64,
    /// A fixed number of requests (shared out among the connections, each sending its share
    /// then waiting for every answer) instead of the timed warm-up and window: every request
    /// is measured, and the window is the time they took.
    pub requests: Option<u64>,
    pub data: DataSpec,
    pub seed: u64,
    pub watch: Watch,
}

struct Prepared {
    read: Vec<u8>,
    write: Vec<u8>,
    large: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Large,
}

struct Outcome {
    all: Histogram<u64>,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    /// Responses in the measured window (and their result body bytes).
    measured: u64,
    result_bytes: u64,
    /// Every response, warm-up included.
    responses: u64,
    errors: Errors,
    bytes_in: u64,
    bytes_out: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            all: stats::histogram(),
            reads: stats::histogram(),
            writes: stats::histogram(),
            measured: 0,
            result_bytes: 0,
            responses: 0,
            errors: Errors::default(),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    fn merge(&mut self, o: Outcome) {
        let _ = self.all.add(&o.all);
        let _ = self.reads.add(&o.reads);
        let _ = self.writes.add(&o.writes);
        self.measured += o.measured;
        self.result_bytes += o.result_bytes;
        self.responses += o.responses;
        self.errors.merge(o.errors);
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

async fn open_prepared(spec: &PipelineSpec) -> Result<(Conn, Prepared), Failure> {
    let auth = spec.auth.as_ref().map(|(u, t)| (u.as_str(), t.as_str()));
    let mut c = Conn::open(&spec.addr, auth).await?;
    let p = if spec.large {
        Prepared {
            read: Vec::new(),
            write: Vec::new(),
            large: c.prepare(LARGE_CQL).await?,
        }
    } else {
        Prepared {
            read: c.prepare(READ_CQL).await?,
            write: c.prepare(WRITE_CQL).await?,
            large: Vec::new(),
        }
    };
    Ok((c, p))
}

/// Opens every connection (handshake, PREPARE), then runs warm-up and the measured window.
pub async fn pipeline(spec: PipelineSpec) -> Result<Value, String> {
    let spec = Arc::new(spec);
    let mut opening = Vec::new();
    for _ in 0..spec.connections {
        let s = spec.clone();
        opening.push(tokio::spawn(async move { open_prepared(&s).await }));
    }
    let mut conns = Vec::new();
    let mut errors = Errors::default();
    for h in opening {
        match h.await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => errors.add(&e),
            Err(e) => errors.add(&Failure::Io(format!("task failed: {e}"))),
        }
    }
    if conns.is_empty() {
        return Err(format!("no connection could be opened: {}", errors.json()));
    }
    let opened = conns.len() as u64;
    let (t_start, t_end) = match spec.requests {
        // Counted: no warm-up, and no end but the last answer.
        Some(_) => (
            Instant::now(),
            Instant::now() + Duration::from_secs(365 * 86_400),
        ),
        None => {
            let t_start = Instant::now() + Duration::from_secs_f64(spec.warmup);
            (t_start, t_start + Duration::from_secs_f64(spec.duration))
        }
    };
    let cpu0 = spec.requests.map(|_| spec.watch.sample());
    let mut running = Vec::new();
    for (i, (c, p)) in conns.into_iter().enumerate() {
        let s = spec.clone();
        let quota = spec.requests.map(|n| share(n, opened, i as u64));
        running.push(tokio::spawn(run_conn(c, p, s, i, t_start, t_end, quota)));
    }
    let cpu0 = match cpu0 {
        Some(sample) => sample,
        None => {
            tokio::time::sleep_until(t_start.into()).await;
            spec.watch.sample()
        }
    };
    if spec.requests.is_none() {
        tokio::time::sleep_until(t_end.into()).await;
    }
    let mut cpu1 = spec.watch.sample();
    let mut total = Outcome::new();
    total.errors = errors;
    for h in running {
        match h.await {
            Ok(o) => total.merge(o),
            Err(e) => total.errors.add(&Failure::Io(format!("task failed: {e}"))),
        }
    }
    let measured_window = match spec.requests {
        Some(_) => {
            cpu1 = spec.watch.sample();
            t_start.elapsed().as_secs_f64()
        }
        None => spec.duration,
    };
    let rps = total.measured as f64 / measured_window;
    let mut report = json!({
        "workload": if spec.large { "large" } else { "rw" },
        "addr": spec.addr,
        "authenticated": spec.auth.is_some(),
        "connections": spec.connections,
        "depth": spec.depth,
        "requests_asked": spec.requests,
        "warmup_s": if spec.requests.is_some() { 0.0 } else { spec.warmup },
        "duration_s": measured_window,
        "requests": total.measured,
        "rps": (rps * 10.0).round() / 10.0,
        "responses_total": total.responses,
        "latency_us": stats::latency_json(&total.all),
        "bytes_in": total.bytes_in,
        "bytes_out": total.bytes_out,
        "cpu": spec.watch.delta(&cpu0, &cpu1),
        "errors": total.errors.total,
        "error_kinds": total.errors.json(),
    });
    if spec.large {
        report["result_bytes"] = json!(total.result_bytes);
        report["mib_per_s"] = json!(
            ((total.result_bytes as f64 / 1048576.0 / measured_window) * 100.0).round() / 100.0
        );
        report["result_mib_each"] = json!(if total.measured > 0 {
            total.result_bytes as f64 / total.measured as f64 / 1048576.0
        } else {
            0.0
        });
    } else {
        report["write_ratio"] = json!(spec.write_ratio);
        report["reads"] = json!(total.reads.len());
        report["writes"] = json!(total.writes.len());
        report["read_latency_us"] = stats::latency_json(&total.reads);
        report["write_latency_us"] = stats::latency_json(&total.writes);
    }
    Ok(report)
}

/// Connection `index`'s share of `total` requests spread over `connections`: the remainder
/// goes one each to the first connections.
fn share(total: u64, connections: u64, index: u64) -> u64 {
    let connections = connections.max(1);
    total / connections + u64::from(index < total % connections)
}

async fn run_conn(
    mut c: Conn,
    p: Prepared,
    spec: Arc<PipelineSpec>,
    index: usize,
    t_start: Instant,
    t_end: Instant,
    quota: Option<u64>,
) -> Outcome {
    let mut o = Outcome::new();
    let depth = spec.depth;
    // Requests this connection may still send, and those sent but not answered yet.
    let mut left = quota.unwrap_or(u64::MAX);
    let mut in_flight = 0u64;
    let mut rng = Rng::new(spec.seed ^ ((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let mut value = vec![0u8; spec.data.value_size];
    rng.fill(&mut value);
    let mut sent = vec![t_start; depth];
    let mut kinds = vec![Kind::Read; depth];
    let mut out = Vec::with_capacity(depth * (64 + spec.data.value_size));
    let mut reissue: Vec<usize> = Vec::with_capacity(depth);

    let issue = |out: &mut Vec<u8>, rng: &mut Rng, s: usize| -> Kind {
        if spec.large {
            let part = rng.below(spec.data.large_partitions) as i32;
            frame::put_execute(out, s as i16, &p.large, &[&part.to_be_bytes()]);
            Kind::Large
        } else {
            let key = (rng.below(spec.data.keys) as i32).to_be_bytes();
            if rng.unit() < spec.write_ratio {
                frame::put_execute(out, s as i16, &p.write, &[&key, &value]);
                Kind::Write
            } else {
                frame::put_execute(out, s as i16, &p.read, &[&key]);
                Kind::Read
            }
        }
    };
    for (s, kind) in kinds.iter_mut().enumerate() {
        if left == 0 {
            break;
        }
        *kind = issue(&mut out, &mut rng, s);
        reissue.push(s);
        left -= 1;
        in_flight += 1;
    }
    'run: loop {
        if quota.is_some() && left == 0 && in_flight == 0 {
            break;
        }
        if !out.is_empty() {
            let t = Instant::now();
            for &s in &reissue {
                sent[s] = t;
            }
            reissue.clear();
            if let Err(e) = c.write(&out).await {
                o.errors.add(&e);
                break;
            }
            out.clear();
        }
        if let Err(e) = c.fill().await {
            o.errors.add(&e);
            break;
        }
        let now = Instant::now();
        let measuring = now >= t_start && now < t_end;
        loop {
            let f = match c.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    o.errors.add(&e);
                    break 'run;
                }
            };
            let h = f.header;
            if h.stream < 0 {
                continue; // an event
            }
            let s = h.stream as usize;
            if s >= depth {
                o.errors.add(&Failure::Protocol(format!(
                    "a response on stream {s}, which no request used"
                )));
                break 'run;
            }
            o.responses += 1;
            in_flight = in_flight.saturating_sub(1);
            match h.opcode {
                frame::OP_RESULT => {
                    if let (Kind::Read, Some(r)) = (kinds[s], f.body.clone()) {
                        let rows =
                            frame::message_body(h.flags, c.body(r)).and_then(frame::rows_count);
                        match rows {
                            Ok(1) => {}
                            Ok(n) => o.errors.add(&Failure::Protocol(format!(
                                "a read returned {n} rows, not 1 (is the data set up?)"
                            ))),
                            Err(e) => o.errors.add(&Failure::Protocol(e)),
                        }
                    }
                }
                frame::OP_ERROR => {
                    let body = f.body.map(|r| c.body(r)).unwrap_or(&[]);
                    let e = match frame::message_body(h.flags, body) {
                        Ok(b) => server_error(h, b),
                        Err(e) => Failure::Protocol(e),
                    };
                    o.errors.add(&e);
                }
                op => o.errors.add(&Failure::Protocol(format!(
                    "opcode 0x{op:02X} in answer to EXECUTE"
                ))),
            }
            if measuring {
                let lat = now - sent[s];
                stats::record(&mut o.all, lat);
                match kinds[s] {
                    Kind::Read => stats::record(&mut o.reads, lat),
                    Kind::Write => stats::record(&mut o.writes, lat),
                    Kind::Large => {}
                }
                o.measured += 1;
                if h.opcode == frame::OP_RESULT {
                    o.result_bytes += u64::from(h.length);
                }
            }
            if now < t_end && left > 0 {
                kinds[s] = issue(&mut out, &mut rng, s);
                reissue.push(s);
                left -= 1;
                in_flight += 1;
            }
        }
        if now >= t_end {
            break;
        }
    }
    o.bytes_in = c.bytes_in;
    o.bytes_out = c.bytes_out;
    o
}

pub struct HandshakeSpec {
    pub addr: String,
    pub user: String,
    /// Empty: no credentials (a server that asks fails the handshake).
    pub tokens: Vec<String>,
    pub cold: bool,
    pub count: usize,
    pub concurrency: usize,
    pub watch: Watch,
}

/// `count` handshakes on `concurrency` loops; each connection is closed once ready.
pub async fn handshakes(spec: HandshakeSpec) -> Result<Value, String> {
    let spec = Arc::new(spec);
    if !spec.cold {
        // The first presentation of the cached token is not a cached handshake.
        let token = spec
            .tokens
            .first()
            .map(|t| (spec.user.as_str(), t.as_str()));
        Conn::open(&spec.addr, token).await.map_err(failure)?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = spec.watch.sample();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (spec, next) = (spec.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = stats::histogram();
            let mut errors = Errors::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= spec.count {
                    break;
                }
                let token = spec
                    .tokens
                    .get(if spec.cold { i } else { 0 })
                    .map(|t| (spec.user.as_str(), t.as_str()));
                let t = Instant::now();
                match Conn::open(&spec.addr, token).await {
                    Ok(c) => {
                        drop(c);
                        stats::record(&mut h, t.elapsed());
                    }
                    Err(e) => errors.add(&e),
                }
            }
            (h, errors)
        }));
    }
    let mut hist = stats::histogram();
    let mut errors = Errors::default();
    for t in tasks {
        match t.await {
            Ok((h, e)) => {
                let _ = hist.add(&h);
                errors.merge(e);
            }
            Err(e) => errors.add(&Failure::Io(format!("task failed: {e}"))),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = spec.watch.sample();
    let ok = hist.len();
    Ok(json!({
        "workload": "handshakes",
        "addr": spec.addr,
        "tokens": if spec.tokens.is_empty() { "none" } else if spec.cold { "cold" } else { "cached" },
        "count": spec.count,
        "concurrency": spec.concurrency,
        "completed": ok,
        "seconds": elapsed,
        "per_s": ((ok as f64 / elapsed) * 10.0).round() / 10.0,
        "latency_us": stats::latency_json(&hist),
        "cpu": spec.watch.delta(&cpu0, &cpu1),
        "errors": errors.total,
        "error_kinds": errors.json(),
    }))
}

/// Opens `n` connections (authenticated when asked), prints `{"ready":...}` and holds them.
pub async fn idle(
    addr: String,
    auth: Option<(String, String)>,
    n: usize,
    concurrency: usize,
    hold: Option<f64>,
) -> Result<Value, String> {
    let started = Instant::now();
    let shared = Arc::new((addr, auth, AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let (addr, auth, next) = &*shared;
            let auth = auth.as_ref().map(|(u, t)| (u.as_str(), t.as_str()));
            let mut conns = Vec::new();
            let mut errors = Errors::default();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                match Conn::open(addr, auth).await {
                    Ok(c) => conns.push(c),
                    Err(e) => errors.add(&e),
                }
            }
            (conns, errors)
        }));
    }
    let mut conns = Vec::new();
    let mut errors = Errors::default();
    for t in tasks {
        match t.await {
            Ok((c, e)) => {
                conns.extend(c);
                errors.merge(e);
            }
            Err(e) => errors.add(&Failure::Io(format!("task failed: {e}"))),
        }
    }
    let mut report = json!({
        "workload": "idle",
        "ready": true,
        "connections": conns.len(),
        "open_seconds": started.elapsed().as_secs_f64(),
        "errors": errors.total,
        "error_kinds": errors.json(),
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{report}");
        let _ = out.flush();
    }
    match hold {
        Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
        None => {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    }
    report["ready"] = json!(false);
    report["held_seconds"] = json!(started.elapsed().as_secs_f64());
    drop(conns);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, connections) in [(20_000, 16), (7, 3), (2, 5), (1, 1), (256, 256)] {
            let shares: Vec<u64> = (0..connections)
                .map(|i| share(total, connections, i))
                .collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            let (lo, hi) = (shares.iter().min(), shares.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{shares:?}");
        }
    }
}
