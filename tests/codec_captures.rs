//! Replays the real Cassandra traffic in `tests/captures/` through the codec.
//!
//! For every session, connection and direction, the recorded reads are replayed in their global
//! arrival order, each cut again into random pieces (runs of 1-byte pieces included; seeded, so a
//! failure reproduces), through one `FrameReader` per direction. The framing switches are driven
//! the way the session drives them: v4 STARTUP with COMPRESSION sets the compression of both
//! readers after STARTUP; in v5 the server's READY or AUTHENTICATE starts segment framing in both
//! directions. The frames, segments and decoded bodies must equal `frames.jsonl` and
//! `segments.jsonl`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ngx_stream_cql_module::codec::header::{parse_header_raw, HEADER_LEN};
use ngx_stream_cql_module::codec::messages::Startup;
use ngx_stream_cql_module::codec::{
    CodecError, Compression, Direction, Event, FrameReader, Header, Opcode,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SEEDS: [u64; 4] = [1, 7, 42, 20261121];

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn sessions() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("captures folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("frames.jsonl").exists())
        .collect();
    v.sort();
    assert!(
        v.len() >= 11,
        "expected the 11 capture sessions, found {}",
        v.len()
    );
    v
}

fn jsonl(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::ClientToServer => "c2s",
        Direction::ServerToClient => "s2c",
    }
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// What the reader produced for one envelope, in the shape of a frames.jsonl line.
fn frame_json(h: &Header, place: Value) -> Value {
    let mut v = json!({
        "version": h.version,
        "is_response": h.is_response,
        "flags": h.flags.0,
        "stream": h.stream,
        "opcode": h.opcode as u8,
        "opcode_name": h.opcode.name(),
        "body_length": h.length,
    });
    if let (Some(o), Some(p)) = (v.as_object_mut(), place.as_object()) {
        for (k, x) in p {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

const FRAME_KEYS: [&str; 14] = [
    "framing",
    "offset",
    "end",
    "segment_index",
    "last_segment_index",
    "offset_in_payload",
    "version",
    "is_response",
    "flags",
    "stream",
    "opcode",
    "opcode_name",
    "body_length",
    "uncompressed_body_length",
];

const SEGMENT_KEYS: [&str; 6] = [
    "offset",
    "end",
    "header_length",
    "payload_length",
    "self_contained",
    "compressed",
];

fn project(v: &Value, keys: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            m.insert((*k).to_string(), x.clone());
        }
    }
    Value::Object(m)
}

/// Per connection and direction.
struct Side {
    reader: FrameReader,
    bin: Vec<u8>,
    pos: usize,
    frames: Vec<Value>,
    segments: Vec<Value>,
    /// (header position, segment index, offset in payload) of the envelope in progress.
    pending: Option<(usize, usize, Option<u32>)>,
    /// Frames waiting for the end of their last segment.
    awaiting_end: Vec<usize>,
    seg_start: usize,
    in_segments: bool,
    lz4_segments: bool,
}

struct Conn {
    sides: [Side; 2],
    version: Option<u8>,
    compression: Compression,
    refused: Option<u8>,
}

/// Cuts `len` bytes into random pieces: runs of 1-byte pieces, small pieces and large ones.
fn pieces(rng: &mut StdRng, len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        match rng.gen_range(0..10) {
            0..=2 => {
                let run = rng.gen_range(1..=64).min(left);
                out.extend(std::iter::repeat_n(1, run));
                left -= run;
            }
            3..=6 => {
                let n = rng.gen_range(1..=32).min(left);
                out.push(n);
                left -= n;
            }
            _ => {
                let n = rng.gen_range(1..=left);
                out.push(n);
                left -= n;
            }
        }
    }
    out
}

fn check_detail_errors(
    session: &str,
    conn: u64,
    dir: Direction,
    idx: usize,
    r: Result<(), String>,
) {
    if let Err(e) = r {
        panic!("{session} conn {conn} {} frame #{idx}: {e}", dir_name(dir));
    }
}

/// Feeds one piece of one direction, handling events and driving the framing switches.
fn feed(session: &str, conn_no: u64, conn: &mut Conn, dir: Direction, piece: &[u8]) {
    let di = dir_index(dir);
    let mut off = 0;
    loop {
        let side = &mut conn.sides[di];
        let input = piece.get(off..).unwrap_or_default();
        let (n, ev) = match side.reader.next(input) {
            Ok(x) => x,
            Err(CodecError::UnsupportedVersion { version }) if dir == Direction::ClientToServer => {
                conn.refused = Some(version);
                return;
            }
            Err(e) => panic!(
                "{session} conn {conn_no} {}: error at byte {}: {e}",
                dir_name(dir),
                side.pos + off
            ),
        };
        off += n;
        side.pos += n;
        let pos = side.pos;
        // Actions to perform after the event borrow ends.
        let mut startup_compression: Option<Compression> = None;
        let mut start_segments = false;
        match ev {
            Event::NeedMore => {
                assert_eq!(off, piece.len(), "NeedMore must mean all consumed");
                return;
            }
            Event::Header(h) => {
                assert!(side.pending.is_none(), "two headers without a frame");
                let seg_index = side.segments.len();
                side.pending = Some((pos, seg_index, side.reader.envelope_offset_in_payload()));
                assert_eq!(h.is_response, dir == Direction::ServerToClient);
                side.reader.capture_body();
            }
            Event::Frame { header, body } => {
                let (hpos, seg_index, off_in_payload) =
                    side.pending.take().expect("frame without header");
                let body = body.expect("captured body");
                let place = if side.in_segments {
                    let mut p = json!({"framing": "v5-segment", "segment_index": seg_index});
                    if let Some(o) = off_in_payload {
                        p["offset_in_payload"] = json!(o);
                    }
                    p
                } else {
                    let mut p =
                        json!({"framing": "envelope", "offset": hpos - HEADER_LEN, "end": pos});
                    if header.flags.compression() {
                        p["uncompressed_body_length"] = json!(body.len());
                    }
                    p
                };
                let mut fj = frame_json(&header, place);
                let idx = side.frames.len();
                let detail = details::decode(&header, body);
                fj["__detail"] = match detail {
                    Ok(d) => d,
                    Err(e) => json!({"__error": e}),
                };
                side.frames.push(fj);
                if side.in_segments {
                    side.awaiting_end.push(idx);
                }
                let _ = idx;
                if header.opcode == Opcode::Startup && dir == Direction::ClientToServer {
                    let s = Startup::decode(body).expect("STARTUP decodes");
                    startup_compression = Some(
                        s.compression()
                            .and_then(Compression::from_startup_option)
                            .unwrap_or(Compression::None),
                    );
                }
                if conn.version.is_none() {
                    conn.version = Some(header.version);
                }
                if dir == Direction::ServerToClient
                    && header.version >= 5
                    && !side.in_segments
                    && matches!(header.opcode, Opcode::Ready | Opcode::Authenticate)
                {
                    start_segments = true;
                }
            }
            Event::SegmentEnd {
                self_contained,
                payload_len,
                compressed,
            } => {
                let index = side.segments.len();
                let hl = if side.lz4_segments { 5 } else { 3 };
                side.segments.push(json!({
                    "offset": side.seg_start,
                    "end": pos,
                    "header_length": hl,
                    "payload_length": payload_len,
                    "self_contained": self_contained,
                    "compressed": compressed,
                }));
                for fi in side.awaiting_end.drain(..) {
                    let f = &mut side.frames[fi];
                    let first = f["segment_index"].as_u64().unwrap_or(0) as usize;
                    f["end"] = json!(pos);
                    f["offset"] = side.segments[first]["offset"].clone();
                    if first != index {
                        f["last_segment_index"] = json!(index);
                    }
                }
                side.seg_start = pos;
            }
        }
        if let Some(c) = startup_compression {
            conn.compression = c;
            if conn.version.unwrap_or(0) < 5 && c != Compression::None {
                for s in conn.sides.iter_mut() {
                    s.reader.set_compression(c);
                }
            }
        }
        if start_segments {
            let lz4 = conn.compression == Compression::Lz4;
            for s in conn.sides.iter_mut() {
                s.reader.start_segments(lz4);
                s.in_segments = true;
                s.lz4_segments = lz4;
                s.seg_start = s.pos;
            }
        }
    }
}

/// Walks the server's reply on a refused connection with the version-agnostic header parser.
fn walk_raw(bin: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bin.len() {
        let hb: [u8; HEADER_LEN] = bin[pos..pos + HEADER_LEN].try_into().unwrap();
        let h = parse_header_raw(&hb).unwrap();
        let end = pos + HEADER_LEN + h.length as usize;
        let body = &bin[pos + HEADER_LEN..end];
        let mut fj = frame_json(
            &h,
            json!({"framing": "envelope", "offset": pos, "end": end}),
        );
        fj["__detail"] = details::decode(&h, body).unwrap_or_else(|e| json!({"__error": e}));
        out.push(fj);
        pos = end;
    }
    out
}

fn run_session(dir: &Path, seed: u64) -> (usize, usize) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let chunks = jsonl(&dir.join("chunks.jsonl"));
    let frames = jsonl(&dir.join("frames.jsonl"));
    let segments = jsonl(&dir.join("segments.jsonl"));
    let mut rng = StdRng::seed_from_u64(seed ^ name.len() as u64);
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    for c in &chunks {
        let conn_no = c["conn"].as_u64().unwrap();
        let conn = conns.entry(conn_no).or_insert_with(|| {
            let side = |d: Direction| Side {
                reader: FrameReader::new(d, 256 << 20),
                bin: std::fs::read(dir.join(format!("conn-{conn_no}.{}.bin", dir_name(d))))
                    .unwrap_or_default(),
                pos: 0,
                frames: Vec::new(),
                segments: Vec::new(),
                pending: None,
                awaiting_end: Vec::new(),
                seg_start: 0,
                in_segments: false,
                lz4_segments: false,
            };
            Conn {
                sides: [
                    side(Direction::ClientToServer),
                    side(Direction::ServerToClient),
                ],
                version: None,
                compression: Compression::None,
                refused: None,
            }
        });
        let d = if c["dir"] == "c2s" {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let offset = c["offset"].as_u64().unwrap() as usize;
        let len = c["len"].as_u64().unwrap() as usize;
        if conn.refused.is_some() {
            continue;
        }
        assert_eq!(
            conn.sides[dir_index(d)].pos,
            offset,
            "{name}: chunks are contiguous"
        );
        let data = conn.sides[dir_index(d)].bin[offset..offset + len].to_vec();
        let mut at = 0;
        for p in pieces(&mut rng, len) {
            feed(&name, conn_no, conn, d, &data[at..at + p]);
            at += p;
            if conn.refused.is_some() {
                break;
            }
        }
    }

    let mut n_frames = 0;
    let mut n_segments = 0;
    for (conn_no, conn) in conns.iter_mut() {
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            let want_frames: Vec<&Value> = {
                let mut v: Vec<&Value> = frames
                    .iter()
                    .filter(|f| f["conn"].as_u64() == Some(*conn_no) && f["dir"] == dir_name(d))
                    .collect();
                v.sort_by_key(|f| {
                    (
                        f["offset"].as_u64().unwrap(),
                        f["offset_in_payload"].as_u64().unwrap_or(0),
                    )
                });
                v
            };
            let side = &mut conn.sides[dir_index(d)];
            let got_frames: Vec<Value> = if let Some(version) = conn.refused {
                if d == Direction::ClientToServer {
                    // The client's envelope is refused at its first byte with its version.
                    assert_eq!(want_frames.len(), 1);
                    assert_eq!(want_frames[0]["version"].as_u64(), Some(u64::from(version)));
                    assert_eq!(side.pos, 0);
                    n_frames += 1;
                    continue;
                }
                walk_raw(&side.bin)
            } else {
                assert_eq!(
                    side.pos,
                    side.bin.len(),
                    "{name} conn {conn_no} {}: every byte consumed",
                    dir_name(d)
                );
                assert!(side.reader.at_boundary());
                assert!(side.pending.is_none() && side.awaiting_end.is_empty());
                std::mem::take(&mut side.frames)
            };
            assert_eq!(
                got_frames.len(),
                want_frames.len(),
                "{name} conn {conn_no} {}: frame count",
                dir_name(d)
            );
            for (i, (g, w)) in got_frames.iter().zip(&want_frames).enumerate() {
                let mut gp = project(g, &FRAME_KEYS);
                let wp = project(w, &FRAME_KEYS);
                // Offsets inside lz4-compressed payloads are those of the decompressed payload.
                if wp.get("offset_in_payload").is_none() {
                    gp.as_object_mut().unwrap().remove("offset_in_payload");
                }
                assert_eq!(gp, wp, "{name} conn {conn_no} {} frame #{i}", dir_name(d));
                check_detail_errors(&name, *conn_no, d, i, details::compare(&g["__detail"], w));
            }
            n_frames += got_frames.len();

            let want_segs: Vec<Value> = segments
                .iter()
                .filter(|s| s["conn"].as_u64() == Some(*conn_no) && s["dir"] == dir_name(d))
                .map(|s| {
                    assert_eq!(s["crc24_ok"], true);
                    assert_eq!(s["crc32_ok"], true);
                    let mut p = project(s, &SEGMENT_KEYS);
                    p["compressed"] = json!(s["uncompressed_length"].as_u64().unwrap_or(0) > 0);
                    p
                })
                .collect();
            let got_segs: Vec<Value> = side
                .segments
                .iter()
                .map(|s| project(s, &SEGMENT_KEYS))
                .collect();
            assert_eq!(
                got_segs,
                want_segs,
                "{name} conn {conn_no} {}: segments",
                dir_name(d)
            );
            n_segments += got_segs.len();
        }
    }
    (n_frames, n_segments)
}

#[test]
fn every_capture_replays_exactly_in_random_chunks() {
    for seed in SEEDS {
        let mut total = (0, 0);
        for s in sessions() {
            let (f, g) = run_session(&s, seed);
            total.0 += f;
            total.1 += g;
        }
        assert_eq!(
            total,
            (956, 337),
            "seed {seed}: frames and segments over all sessions"
        );
    }
}

/// Typed decoding of captured bodies into the `detail` shape of frames.jsonl.
mod details {
    use ngx_stream_cql_module::codec::messages::{
        BatchStatement, ErrorBody, EventBody, Message, QueryParams, ResultBody, SaslPlain,
        SchemaChange, Values,
    };
    use ngx_stream_cql_module::codec::primitives::Value as CqlValue;
    use ngx_stream_cql_module::codec::{Header, Opcode};
    use serde_json::{json, Map, Value};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn uuid(b: &[u8; 16]) -> String {
        let h = hex(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn values(v: &Values<'_>) -> Value {
        Value::Array(
            v.iter()
                .map(|(_, x)| match x {
                    CqlValue::Bytes(b) => json!(b.len()),
                    CqlValue::Null => json!("null"),
                    CqlValue::Unset => json!("unset"),
                })
                .collect(),
        )
    }

    fn params(m: &mut Map<String, Value>, p: &QueryParams<'_>) {
        m.insert("consistency".into(), json!(p.consistency.name()));
        m.insert("query_flags".into(), json!(p.flags));
        if p.flags & 0x01 != 0 {
            m.insert("values".into(), values(&p.values));
        }
        if let Some(x) = p.page_size {
            m.insert("page_size".into(), json!(x));
        }
        if let Some(x) = p.paging_state {
            m.insert("paging_state".into(), json!(hex(x)));
        }
        if let Some(x) = p.serial_consistency {
            m.insert("serial_consistency".into(), json!(x.name()));
        }
        if let Some(x) = p.timestamp {
            m.insert("timestamp".into(), json!(x));
        }
        if let Some(x) = p.keyspace {
            m.insert("keyspace".into(), json!(x));
        }
    }

    fn schema(m: &mut Map<String, Value>, sc: &SchemaChange<'_>) {
        m.insert("change_type".into(), json!(sc.change_type));
        m.insert("target".into(), json!(sc.target));
        m.insert("keyspace".into(), json!(sc.keyspace));
        if let Some(n) = sc.name {
            m.insert("name".into(), json!(n));
        }
    }

    /// Decodes a body with the codec's typed decoders into a frames.jsonl-like `detail`, plus the
    /// prefixes under `__prefix`.
    pub fn decode(h: &Header, body: &[u8]) -> Result<Value, String> {
        let (prefix, msg) = Message::decode(h, body).map_err(|e| e.to_string())?;
        let mut m = Map::new();
        match msg {
            Message::Startup(s) => {
                let o: Map<String, Value> = s
                    .options
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                m.insert("options".into(), Value::Object(o));
            }
            Message::Supported(s) => {
                let o: Map<String, Value> = s
                    .options
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.iter().collect::<Vec<_>>())))
                    .collect();
                m.insert("options".into(), Value::Object(o));
            }
            Message::Ready | Message::Options => {}
            Message::Authenticate(a) => {
                m.insert("authenticator".into(), json!(a.authenticator));
            }
            Message::AuthResponse(t) | Message::AuthChallenge(t) | Message::AuthSuccess(t) => {
                let tok = t.token.map(|b| String::from_utf8_lossy(b).to_string());
                m.insert("token".into(), json!(tok));
                if h.opcode == Opcode::AuthResponse {
                    let p =
                        SaslPlain::parse(t.token.unwrap_or_default()).map_err(|e| e.to_string())?;
                    m.insert("__sasl_user".into(), json!(p.username));
                }
            }
            Message::Register(r) => {
                m.insert("events".into(), json!(r.events.iter().collect::<Vec<_>>()));
            }
            Message::Query(q) => {
                m.insert("query".into(), json!(q.query));
                params(&mut m, &q.params);
            }
            Message::Prepare(p) => {
                m.insert("query".into(), json!(p.query));
                if h.version >= 5 {
                    m.insert("prepare_flags".into(), json!(p.flags));
                }
                if let Some(k) = p.keyspace {
                    m.insert("keyspace".into(), json!(k));
                }
            }
            Message::Execute(e) => {
                m.insert("prepared_id".into(), json!(hex(e.id)));
                if let Some(r) = e.result_metadata_id {
                    m.insert("result_metadata_id".into(), json!(hex(r)));
                }
                params(&mut m, &e.params);
            }
            Message::Batch(b) => {
                m.insert("batch_type".into(), json!(b.batch_type.name()));
                m.insert("child_count".into(), json!(b.children.len()));
                let kids: Vec<Value> = b
                    .children
                    .iter()
                    .map(|c| match c.statement {
                        BatchStatement::Query(q) => {
                            json!({"kind": "query", "query": q, "values": values(&c.values)})
                        }
                        BatchStatement::Prepared(id) => {
                            json!({"kind": "prepared", "prepared_id": hex(id), "values": values(&c.values)})
                        }
                    })
                    .collect();
                assert_eq!(kids.len(), b.children.len());
                m.insert("children".into(), Value::Array(kids));
                m.insert("consistency".into(), json!(b.consistency.name()));
                m.insert("query_flags".into(), json!(b.flags));
                if let Some(x) = b.serial_consistency {
                    m.insert("serial_consistency".into(), json!(x.name()));
                }
                if let Some(x) = b.timestamp {
                    m.insert("timestamp".into(), json!(x));
                }
                if let Some(x) = b.keyspace {
                    m.insert("keyspace".into(), json!(x));
                }
            }
            Message::Result(r) => {
                m.insert("result_kind".into(), json!(r.kind_name()));
                match r {
                    ResultBody::SetKeyspace(k) => {
                        m.insert("keyspace".into(), json!(k));
                    }
                    ResultBody::Prepared {
                        id,
                        result_metadata_id,
                    } => {
                        m.insert("prepared_id".into(), json!(hex(id)));
                        if let Some(r) = result_metadata_id {
                            m.insert("result_metadata_id".into(), json!(hex(r)));
                        }
                    }
                    ResultBody::SchemaChange(sc) => schema(&mut m, &sc),
                    ResultBody::Void | ResultBody::Rows => {}
                }
            }
            Message::Error(ErrorBody { code, message, .. }) => {
                m.insert("error_code".into(), json!(format!("0x{code:04x}")));
                m.insert(
                    "error_name".into(),
                    json!(ngx_stream_cql_module::codec::messages::codes::name(code)),
                );
                m.insert("message".into(), json!(message));
            }
            Message::Event(e) => {
                m.insert("event_type".into(), json!(e.event_type()));
                if let EventBody::SchemaChange(sc) = e {
                    schema(&mut m, &sc);
                }
            }
        }
        let mut p = Map::new();
        if let Some(t) = prefix.tracing_id {
            p.insert("tracing_id".into(), json!(uuid(&t)));
        }
        if let Some(w) = prefix.warnings {
            p.insert("warnings".into(), json!(w.iter().collect::<Vec<_>>()));
        }
        if let Some(c) = prefix.custom_payload {
            p.insert(
                "custom_payload_keys".into(),
                json!(c.keys().collect::<Vec<_>>()),
            );
        }
        m.insert("__prefix".into(), Value::Object(p));
        Ok(Value::Object(m))
    }

    /// Fields that must be decoded whenever the reference has them.
    const REQUIRED: [&str; 15] = [
        "options",
        "authenticator",
        "token",
        "events",
        "query",
        "prepared_id",
        "result_metadata_id",
        "keyspace",
        "error_code",
        "message",
        "result_kind",
        "batch_type",
        "children",
        "event_type",
        "query_flags",
    ];

    /// Compares the decoded detail with the reference frame: every decoded field must equal the
    /// reference, the key fields must be decoded when the reference has them, and the prefixes
    /// must equal the frame's `tracing_id`, `warnings` and `custom_payload_keys`.
    pub fn compare(got: &Value, want_frame: &Value) -> Result<(), String> {
        if let Some(e) = got.get("__error") {
            return Err(format!("decoding failed: {e}"));
        }
        let want = &want_frame["detail"];
        let obj = got.as_object().ok_or("no detail")?;
        for (k, v) in obj {
            if k == "__prefix" {
                for pk in ["tracing_id", "warnings", "custom_payload_keys"] {
                    if v.get(pk) != want_frame.get(pk) {
                        return Err(format!(
                            "{pk}: got {:?}, want {:?}",
                            v.get(pk),
                            want_frame.get(pk)
                        ));
                    }
                }
                continue;
            }
            if k == "__sasl_user" {
                let tok = want["token"].as_str().unwrap_or("");
                let user = tok.split('\0').nth(1).unwrap_or("");
                if v != user {
                    return Err(format!("SASL user: got {v}, want {user}"));
                }
                continue;
            }
            if want.get(k) != Some(v) {
                return Err(format!("detail {k}: got {v}, want {:?}", want.get(k)));
            }
        }
        for k in REQUIRED {
            if want.get(k).is_some() && obj.get(k).is_none() {
                return Err(format!("detail {k} not decoded"));
            }
        }
        Ok(())
    }
}

/// Writes fuzz seeds from the captures into `fuzz/corpus/{envelope,segment,bodies}/`. Run with
/// `cargo test --test codec_captures -- --ignored write_fuzz_seeds` before `cargo fuzz run`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for t in ["envelope", "segment", "bodies"] {
        std::fs::create_dir_all(root.join(t)).unwrap();
    }
    let mut n = 0;
    for s in sessions() {
        let name = s.file_name().unwrap().to_string_lossy().to_string();
        let frames = jsonl(&s.join("frames.jsonl"));
        let segments = jsonl(&s.join("segments.jsonl"));
        let conns: std::collections::BTreeSet<u64> =
            frames.iter().map(|f| f["conn"].as_u64().unwrap()).collect();
        for conn in conns {
            for d in ["c2s", "s2c"] {
                let bin = std::fs::read(s.join(format!("conn-{conn}.{d}.bin"))).unwrap();
                let ctl_dir = u8::from(d == "s2c");
                let first_seg = segments
                    .iter()
                    .find(|g| g["conn"].as_u64() == Some(conn) && g["dir"] == d)
                    .map(|g| g["offset"].as_u64().unwrap() as usize);
                let lz4 = name.contains("lz4");
                let snappy = name.contains("snappy");
                // Envelope seeds: the legacy part of the stream, capped at 64 KiB.
                let legacy_end = first_seg.unwrap_or(bin.len()).min(65536);
                let comp = if lz4 {
                    1u8
                } else if snappy {
                    2
                } else {
                    0
                };
                let mut seed = vec![ctl_dir | 2 | (comp << 2) | 0x10, 3];
                seed.extend_from_slice(&bin[..legacy_end]);
                std::fs::write(root.join(format!("envelope/{name}-{conn}-{d}")), &seed).unwrap();
                // Segment seeds: the segment part of the stream, capped at 64 KiB.
                if let Some(start) = first_seg {
                    let end = bin.len().min(start + 65536);
                    let mut seed = vec![u8::from(lz4) | (ctl_dir << 1) | 0x80 | (5 << 3)];
                    seed.extend_from_slice(&bin[start..end]);
                    std::fs::write(root.join(format!("segment/{name}-{conn}-{d}")), &seed).unwrap();
                }
                // Body seeds: uncompressed envelopes whose body lies in the file.
                for (i, f) in frames
                    .iter()
                    .filter(|f| f["conn"].as_u64() == Some(conn) && f["dir"] == d)
                    .enumerate()
                {
                    let len = f["body_length"].as_u64().unwrap() as usize;
                    if f["flags"].as_u64().unwrap() & 1 != 0 || len > 4096 {
                        continue;
                    }
                    let off = f["offset"].as_u64().unwrap() as usize;
                    let start = if f["framing"] == "envelope" {
                        off + 9
                    } else if f["offset_in_payload"].as_u64() == Some(0) && !lz4 {
                        off + 6 + 9
                    } else {
                        continue;
                    };
                    let Some(body) = bin.get(start..start + len) else {
                        continue;
                    };
                    let version = f["version"].as_u64().unwrap() as u8;
                    if !(3..=5).contains(&version) {
                        continue;
                    }
                    let op = f["opcode"].as_u64().unwrap() as u8;
                    let mut seed = vec![
                        op | ((version - 3) << 5),
                        f["flags"].as_u64().unwrap() as u8,
                    ];
                    seed.extend_from_slice(body);
                    std::fs::write(root.join(format!("bodies/{name}-{conn}-{d}-{i}")), &seed)
                        .unwrap();
                    n += 1;
                }
            }
        }
    }
    assert!(n > 500, "{n} body seeds");
}
