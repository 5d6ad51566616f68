//! Replays recorded CQL connections (tests/captures) through a proxy.
//!
//! The test plays both peers: a fake upstream that sends the recorded server bytes, and
//! a client that sends the recorded client bytes. Each side sends its next recorded read
//! only after it has received everything the other side sent before it, as in the
//! recording, so the proxy sees a causally correct conversation. Every recorded read is
//! further cut into writes of random sizes, down to a single byte.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which way a recorded read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    C2s,
    S2c,
}

/// One recorded connection.
pub struct Connection {
    pub session: String,
    pub conn: u32,
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    /// Recorded reads in arrival order: direction and length.
    pub chunks: Vec<(Dir, usize)>,
    /// Envelopes recorded per direction (frames.jsonl).
    pub c2s_frames: u64,
    pub s2c_frames: u64,
}

impl Connection {
    /// The protocol version byte the client opened with (low 7 bits).
    pub fn client_version(&self) -> u8 {
        self.c2s.first().map(|b| b & 0x7f).unwrap_or(0)
    }
}

pub fn captures_dir() -> PathBuf {
    super::repo_dir().join("tests/captures")
}

/// Every recorded session folder.
pub fn sessions() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(captures_dir())
        .expect("tests/captures exists")
        .filter_map(|e| {
            let e = e.ok()?;
            e.path()
                .join("chunks.jsonl")
                .exists()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Every connection of a recorded session.
pub fn connections(session: &str) -> Vec<Connection> {
    let dir = captures_dir().join(session);
    let chunks = jsonl(&dir.join("chunks.jsonl"));
    let frames = jsonl(&dir.join("frames.jsonl"));
    let mut conns: Vec<u32> = chunks
        .iter()
        .map(|c| c["conn"].as_u64().expect("conn") as u32)
        .collect();
    conns.sort();
    conns.dedup();
    conns
        .into_iter()
        .map(|conn| {
            let of_conn = |v: &&serde_json::Value| v["conn"].as_u64() == Some(conn as u64);
            let dir_of = |v: &serde_json::Value| match v["dir"].as_str() {
                Some("c2s") => Dir::C2s,
                _ => Dir::S2c,
            };
            let count = |d: Dir| {
                frames
                    .iter()
                    .filter(of_conn)
                    .filter(|f| dir_of(f) == d)
                    .count() as u64
            };
            Connection {
                session: session.to_string(),
                conn,
                c2s: fs::read(dir.join(format!("conn-{conn}.c2s.bin"))).expect("c2s.bin"),
                s2c: fs::read(dir.join(format!("conn-{conn}.s2c.bin"))).expect("s2c.bin"),
                chunks: chunks
                    .iter()
                    .filter(of_conn)
                    .map(|c| (dir_of(c), c["len"].as_u64().expect("len") as usize))
                    .collect(),
                c2s_frames: count(Dir::C2s),
                s2c_frames: count(Dir::S2c),
            }
        })
        .collect()
}

/// What each side received when a connection was replayed.
pub struct Received {
    /// What the fake upstream received (should equal the recorded client bytes).
    pub by_server: Vec<u8>,
    /// What the client received (should equal the recorded server bytes).
    pub by_client: Vec<u8>,
    /// The client's local port, to find the connection in the access log.
    pub client_port: u16,
}

/// An upstream that accepts one connection at a time and plays the server side.
pub struct FakeUpstream {
    listener: TcpListener,
    pub port: u16,
}

impl FakeUpstream {
    pub fn bind() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        let port = listener.local_addr().expect("addr").port();
        FakeUpstream { listener, port }
    }

    /// Replays `conn` through the proxy listening on `proxy_port`.
    pub fn replay(&self, conn: &Connection, proxy_port: u16, seed: u64) -> Received {
        self.replay_with(conn, proxy_port, seed, |_| {})
    }

    /// Like [`replay`](Self::replay), calling `midway` once half the recorded reads were played.
    pub fn replay_with(
        &self,
        conn: &Connection,
        proxy_port: u16,
        seed: u64,
        midway: impl FnOnce(usize) + Send + 'static,
    ) -> Received {
        let client = TcpStream::connect(("127.0.0.1", proxy_port)).expect("connect to proxy");
        let client_port = client.local_addr().expect("addr").port();
        let (server, _) = self.listener.accept().expect("proxy connects upstream");
        let chunks = conn.chunks.clone();
        let half = chunks.len() / 2;
        let (by_server, by_client) = thread::scope(|scope| {
            let server_side = scope.spawn(|| {
                play(
                    server,
                    Dir::S2c,
                    &chunks,
                    &conn.s2c,
                    conn.c2s.len(),
                    seed ^ 0x5eed,
                    None,
                )
            });
            let client_side = scope.spawn(|| {
                let midway: Midway = Box::new(midway);
                play(
                    client,
                    Dir::C2s,
                    &chunks,
                    &conn.c2s,
                    conn.s2c.len(),
                    seed,
                    Some((half, midway)),
                )
            });
            (
                server_side.join().expect("server side"),
                client_side.join().expect("client side"),
            )
        });
        Received {
            by_server,
            by_client,
            client_port,
        }
    }
}

/// Called once when the client side reaches a recorded read.
type Midway = Box<dyn FnOnce(usize) + Send>;

/// Plays one side: sends `mine` following the recorded reads, receives the other side's bytes.
fn play(
    mut stream: TcpStream,
    me: Dir,
    chunks: &[(Dir, usize)],
    mine: &[u8],
    theirs_len: usize,
    seed: u64,
    mut midway: Option<(usize, Midway)>,
) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut received = Vec::with_capacity(theirs_len);
    let mut theirs_before = 0usize;
    let mut sent = 0usize;
    for (index, &(dir, len)) in chunks.iter().enumerate() {
        if let Some((at, _)) = &midway {
            if index == *at {
                let (_, f) = midway.take().expect("midway once");
                f(index);
            }
        }
        if dir != me {
            theirs_before += len;
            continue;
        }
        read_until(&mut stream, &mut received, theirs_before);
        let chunk = &mine[sent..sent + len];
        let mut at = 0;
        while at < chunk.len() {
            let piece = random_piece(&mut rng).min(chunk.len() - at);
            stream
                .write_all(&chunk[at..at + piece])
                .expect("write to proxy");
            at += piece;
        }
        sent += len;
    }
    read_until(&mut stream, &mut received, theirs_len);
    let _ = stream.shutdown(Shutdown::Write);
    received
}

/// Write sizes: many tiny ones (down to a byte), some medium, a few large.
fn random_piece(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..10) {
        0..=2 => rng.gen_range(1..=8),
        3..=7 => rng.gen_range(9..=700),
        _ => rng.gen_range(701..=65536),
    }
}

fn read_until(stream: &mut TcpStream, received: &mut Vec<u8>, want: usize) {
    let mut buf = [0u8; 65536];
    while received.len() < want {
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed after {} of {} expected bytes",
                received.len(),
                want
            ),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading from proxy after {} of {} bytes: {e}",
                received.len(),
                want
            ),
        }
    }
}
