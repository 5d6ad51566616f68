//! cql-loadgen: a pipelined CQL (native protocol v4) load generator for the end-to-end
//! benchmark. It speaks to the development server directly or through NGINX (with or
//! without ngx_stream_cql_module), authenticates with a token when asked, and prints one
//! JSON object with throughput, latency percentiles, bytes and errors on stdout.

mod conn;
mod frame;
mod stats;
mod tokens;
mod workload;

use std::collections::HashMap;
use std::io::Write;

use serde_json::{Map, Value};

const USAGE: &str = "\
usage: cql-loadgen COMMAND --addr HOST:PORT [options]

Commands (each prints one JSON object on stdout; errors are counted, reported in it,
and make the exit status 3):
  setup       create keyspace shop, tables shop.bench_kv (small rows) and shop.bench_blobs
              (large partitions) and fill them
                --keys 10000 --value-size 64 --large-partitions 8 --large-rows 16
                --large-value 65536
  rw          prepared small reads and writes, pipelined, on every connection
                --connections 16 --depth 8 --duration 5 --warmup 1 --write-ratio 0.2
                --keys 10000 --value-size 64
              --requests N: exactly N requests (shared out among the connections, no
              warm-up, each connection waits for its answers) instead of a timed window
  large       prepared SELECT of a whole large partition (large-rows x large-value bytes)
                --connections 2 --depth 2 --duration 5 --warmup 1 --large-partitions 8
                --requests N as for rw
  handshakes  connect, STARTUP, AUTH_RESPONSE with a token when asked, close
                --count 2000 --concurrency 16 --tokens cold|cached
              cold: every handshake presents a token never presented before (needs
              --count distinct tokens: --tokens-file or --mint-key); cached: the same token
  idle        open --connections N authenticated connections (--concurrency 64), print a
              line {\"ready\":...} and hold them until stdin closes or --hold SECONDS pass
  mint        print --count N distinct tokens, one a line (needs --mint-key)

Credentials (given when the server or proxy answers STARTUP with AUTHENTICATE):
  --user NAME (default bench)  --token TOKEN | --tokens-file FILE (one token a line) |
  --mint-key KEY.pem [--mint-kid KID (default: file name without .key)] [--mint-alg RS256]
  [--mint-claims JSON (iss, aud, sub, groups...)] [--mint-ttl 3600]

Other: --threads N (runtime threads; 1, the default, runs a single-threaded runtime)
       --seed N
       --watch-pid PID (repeatable): report the CPU time (utime+stime and schedstat run
       time) PID spent during the measured window, as \"cpu\": {\"PID\": ...}";

/// Command-line options: `--name value`, `--name=value`.
struct Opts {
    values: HashMap<String, Vec<String>>,
}

const KNOWN: &[&str] = &[
    "addr",
    "keys",
    "value-size",
    "large-partitions",
    "large-rows",
    "large-value",
    "connections",
    "depth",
    "duration",
    "warmup",
    "write-ratio",
    "requests",
    "count",
    "concurrency",
    "tokens",
    "hold",
    "user",
    "token",
    "tokens-file",
    "mint-key",
    "mint-kid",
    "mint-alg",
    "mint-claims",
    "mint-ttl",
    "threads",
    "seed",
    "watch-pid",
];

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (
                    name.to_string(),
                    it.next()
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                ),
            };
            if !KNOWN.contains(&name.as_str()) {
                return Err(format!("unknown option --{name}"));
            }
            values.entry(name).or_default().push(value);
        }
        Ok(Opts { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not a valid number")),
        }
    }

    fn mint_spec(&self) -> Result<Option<tokens::MintSpec>, String> {
        let Some(key) = self.get("mint-key") else {
            return Ok(None);
        };
        let claims = match self.get("mint-claims") {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err("--mint-claims must be a JSON object".into()),
                Err(e) => return Err(format!("--mint-claims is not JSON: {e}")),
            },
        };
        tokens::MintSpec::from_key_file(
            key,
            self.get("mint-kid").map(String::from),
            self.get("mint-alg").unwrap_or("RS256"),
            claims,
            self.num("mint-ttl", 3600u64)?,
        )
        .map(Some)
    }

    /// `count` tokens: from --token, --tokens-file or minted; empty when none is configured.
    fn tokens(&self, count: usize) -> Result<Vec<String>, String> {
        if let Some(t) = self.get("token") {
            return Ok(vec![t.to_string()]);
        }
        if let Some(path) = self.get("tokens-file") {
            let t = tokens::read_tokens(path)?;
            if t.is_empty() {
                return Err(format!("{path} holds no token"));
            }
            return Ok(t);
        }
        match self.mint_spec()? {
            Some(spec) => {
                let prefix = format!("{}-{}", std::process::id(), seed_from_clock());
                spec.mint(count, &prefix)
            }
            None => Ok(Vec::new()),
        }
    }
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return;
    }
    let code = match Opts::parse(&args[1..]).and_then(|o| run(command, &o)) {
        Ok(report) => {
            let errors = report
                .get("errors")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{report}");
            let _ = out.flush();
            if errors > 0 {
                eprintln!(
                    "cql-loadgen {command}: {errors} ERRORS: {}",
                    report.get("error_kinds").unwrap_or(&Value::Null)
                );
                3
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("cql-loadgen: {e}\n(cql-loadgen --help for usage)");
            2
        }
    };
    std::process::exit(code);
}

fn run(command: &str, o: &Opts) -> Result<Value, String> {
    let threads: usize = o.num("threads", 1)?;
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let addr = o.required("addr")?.to_string();
    let user = o.get("user").unwrap_or("bench").to_string();
    let seed: u64 = o.num("seed", seed_from_clock())?;
    let watch = workload::Watch {
        pids: o
            .values
            .get("watch-pid")
            .map(|v| {
                v.iter()
                    .map(|p| p.parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|_| "--watch-pid needs a process id".to_string())?
            .unwrap_or_default(),
    };
    let data = workload::DataSpec {
        keys: o.num("keys", 10_000)?,
        value_size: o.num("value-size", 64)?,
        large_partitions: o.num("large-partitions", 8)?,
        large_rows: o.num("large-rows", 16)?,
        large_value: o.num("large-value", 65_536)?,
    };
    match command {
        "mint" => {
            let count: usize = o.num("count", 1)?;
            let spec = o.mint_spec()?.ok_or("mint needs --mint-key")?;
            let t = spec.mint(count, &format!("{}", seed_from_clock()))?;
            let mut out = std::io::stdout().lock();
            for tok in &t {
                let _ = writeln!(out, "{tok}");
            }
            let _ = out.flush();
            std::process::exit(0);
        }
        "setup" => rt.block_on(workload::setup(addr, data)),
        "rw" | "large" => {
            let token = o.tokens(1)?.into_iter().next();
            let spec = workload::PipelineSpec {
                addr,
                auth: token.map(|t| (user, t)),
                large: command == "large",
                connections: o.num("connections", if command == "large" { 2 } else { 16 })?,
                depth: o.num("depth", if command == "large" { 2 } else { 8 })?,
                duration: o.num("duration", 5.0)?,
                warmup: o.num("warmup", 1.0)?,
                write_ratio: o.num("write-ratio", 0.2)?,
                requests: match o.get("requests") {
                    None => None,
                    Some(_) => Some(o.num("requests", 0u64)?),
                },
                data,
                seed,
                watch,
            };
            if spec.depth == 0 || spec.depth > 32_768 || spec.connections == 0 {
                return Err("--connections must be > 0 and --depth in 1..=32768".into());
            }
            if spec.requests == Some(0) {
                return Err("--requests must be > 0".into());
            }
            rt.block_on(workload::pipeline(spec))
        }
        "handshakes" => {
            let count: usize = o.num("count", 2000)?;
            let mode = o.get("tokens").unwrap_or("cached");
            let cold = match mode {
                "cold" => true,
                "cached" => false,
                other => return Err(format!("--tokens {other:?}: cold or cached")),
            };
            let mint_started = std::time::Instant::now();
            let tokens = o.tokens(if cold { count } else { 1 })?;
            let mint_seconds = mint_started.elapsed().as_secs_f64();
            if cold && !tokens.is_empty() && tokens.len() < count {
                return Err(format!(
                    "cold handshakes need {count} distinct tokens, {} given",
                    tokens.len()
                ));
            }
            let spec = workload::HandshakeSpec {
                addr,
                user,
                tokens,
                cold,
                count,
                concurrency: o.num("concurrency", 16)?,
                watch,
            };
            let mut report = rt.block_on(workload::handshakes(spec))?;
            report["mint_seconds"] = Value::from(mint_seconds);
            Ok(report)
        }
        "idle" => {
            let token = o.tokens(1)?.into_iter().next();
            let hold = match o.get("hold") {
                Some(v) => Some(
                    v.parse::<f64>()
                        .map_err(|_| format!("--hold {v:?} is not a number"))?,
                ),
                None => None,
            };
            rt.block_on(workload::idle(
                addr,
                token.map(|t| (user, t)),
                o.num("connections", 1000)?,
                o.num("concurrency", 64)?,
                hold,
            ))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}
